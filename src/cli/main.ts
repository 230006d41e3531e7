/**
 * bpfcr CLI entry. Commands are imported lazily so `--help`, usage errors and the no-op hook
 * paths pay only for what they use.
 */
import { endOnClosedPipe } from './pipe.js';
import { termSafe } from '../archive/names.js';
import { debugStack, failureLine } from '../failure.js';
import { UsageError, type Command } from './command.js';

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  dump: { summary: 'dump BPF maps held by processes into an archive', load: async () => (await import('./commands/dump.js')).dumpCommand },
  restore: { summary: 'recreate and pin the maps of an archive', load: async () => (await import('./commands/restore.js')).restoreCommand },
  inspect: { summary: 'list the maps in an archive and verify checksums', load: async () => (await import('./commands/inspect.js')).inspectCommand },
  diff: { summary: 'compare the maps of two archives, or of an archive and live processes', load: async () => (await import('./commands/diff.js')).diffCommand },
  show: { summary: "print a map's entries from an archive (decoded by BTF)", load: async () => (await import('./commands/show.js')).showCommand },
  hook: { summary: 'run an OCI hook stage (prestart|poststop) by hand, state JSON on stdin', load: async () => (await import('./commands/hook.js')).hookCommand },
  doctor: { summary: 'check that this host has everything bpfcr needs, and say what to fix', load: async () => (await import('./commands/doctor.js')).doctorCommand },
  gc: { summary: 'remove staged CRIU checkpoint objects (bpffs staging area)', load: async () => (await import('./commands/gc.js')).gcCommand },
  demo: { summary: 'prove the installation: podman checkpoint/restore of a container holding BPF maps', load: async () => (await import('./commands/demo.js')).demoCommand },
  'criu-action': { summary: 'CRIU action script (run by hooks/checkpoint; see docs/criu.md)', load: async () => (await import('./commands/criu-action.js')).criuActionCommand },
};

/**
 * Commands that touch maps put back, first, the values of any interrupted QUEUE/STACK dump
 * (maps/queue-journal.ts): a dump killed while it had them taken out must not leave them out.
 * `hook` and `criu-action` do it once they know they have work, `gc` itself (it has --dry-run).
 */
const RECOVER_FIRST = new Set(['dump', 'restore', 'demo', 'diff']);

function mainUsage(): string {
  const names = Object.keys(COMMANDS);
  const w = Math.max(...names.map((n) => n.length));
  return `Usage: bpfcr COMMAND [options]

Checkpoint/restore of eBPF map state for Linux containers.

Commands:
${names.map((n) => `  ${n.padEnd(w)}  ${COMMANDS[n]!.summary}`).join('\n')}

Run 'bpfcr COMMAND --help' for a command's options.
`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainUsage());
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-V') {
    const { toolVersion } = await import('../version.js');
    process.stdout.write(`bpfcr ${toolVersion()}\n`);
    return 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`bpfcr: unknown command "${termSafe(name)}"\n${mainUsage()}`);
    return 2;
  }
  const cmd = await entry.load();
  if (RECOVER_FIRST.has(name) && !rest.some((a) => a === '-h' || a === '--help')) {
    const { recoverQueueJournals } = await import('../maps/queue-journal.js');
    for (const line of recoverQueueJournals()) process.stderr.write(`bpfcr: ${termSafe(line)}\n`);
  }
  // `bpfcr … | head`: a reader that goes away ends the output, not with an EPIPE stack
  endOnClosedPipe();
  // A command whose promise never settles (a stream that never ends) must not exit 0.
  process.exitCode = 1;
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`bpfcr ${name}: ${termSafe(e.message)}\nRun 'bpfcr ${name} --help' for usage.\n`);
      return 2;
    }
    process.stderr.write(failureLine(`bpfcr ${name}`, e) + '\n');
    process.stderr.write(debugStack(e) ?? '');
    return 1;
  }
}

/**
 * The whole CLI run, as bin/bpfcr (dist/src/cli/bpfcr.cjs) starts it: exit status in process.exitCode.
 */
export function runCli(argv: string[]): void {
  // Exit through process.exit on SIGINT/SIGTERM so the archive layer's exit handlers remove any
  // OUT.partial-* output: an interrupted dump must not leave something that looks like an archive.
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(sig, () => {
      process.stderr.write(`bpfcr: interrupted (${sig}), nothing was completed\n`);
      process.exit(code);
    });
  }
  main(argv).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => { process.stderr.write(failureLine('bpfcr', e) + '\n' + (debugStack(e) ?? '')); process.exitCode = 1; },
  );
}
