#!/usr/bin/env node
/**
 * bpfcr CLI entry. Commands are imported lazily so `--help`, usage errors and the no-op hook
 * paths pay only for what they use.
 */
import { UsageError, type Command } from './command.js';

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  dump: { summary: 'dump BPF maps held by processes into an archive', load: async () => (await import('./commands/dump.js')).dumpCommand },
  restore: { summary: 'recreate and pin the maps of an archive', load: async () => (await import('./commands/restore.js')).restoreCommand },
  inspect: { summary: 'list the maps in an archive and verify checksums', load: async () => (await import('./commands/inspect.js')).inspectCommand },
  hook: { summary: 'run an OCI hook stage (prestart|poststop) by hand, state JSON on stdin', load: async () => (await import('./commands/hook.js')).hookCommand },
  gc: { summary: 'remove staged CRIU checkpoint objects (bpffs staging area)', load: async () => (await import('./commands/gc.js')).gcCommand },
  demo: { summary: 'prove the installation: podman checkpoint/restore of a container holding BPF maps', load: async () => (await import('./commands/demo.js')).demoCommand },
  'criu-action': { summary: 'CRIU action script (run by hooks/checkpoint; see docs/criu.md)', load: async () => (await import('./commands/criu-action.js')).criuActionCommand },
};

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
    process.stderr.write(`bpfcr: unknown command "${name}"\n${mainUsage()}`);
    return 2;
  }
  const cmd = await entry.load();
  // A command whose promise never settles (a stream that never ends) must not exit 0.
  process.exitCode = 1;
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`bpfcr ${name}: ${e.message}\nRun 'bpfcr ${name} --help' for usage.\n`);
      return 2;
    }
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`bpfcr ${name}: ${msg}\n`);
    if (process.env['BPFCR_DEBUG'] && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}

// Exit through process.exit on SIGINT/SIGTERM so the archive layer's exit handlers remove any
// OUT.partial-* output: an interrupted dump must not leave something that looks like an archive.
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(sig, () => {
    process.stderr.write(`bpfcr: interrupted (${sig}), nothing was completed\n`);
    process.exit(code);
  });
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => { process.stderr.write(`bpfcr: ${String(e)}\n`); process.exitCode = 1; },
);
