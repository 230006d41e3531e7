/**
 * A hook stage from start to end: read the state on stdin (unless given), validate it, and run
 * hooks.ts when the container carries io.bpfcr.* annotations. Used by hook-main.ts (after its fast
 * no-annotation check) and by `bpfcr hook`.
 *
 * Exit status: 0 done (or nothing to do), 1 failure (one line on stderr: the runtime shows it),
 * 2 usage. Messages also go to /var/log/bpfcr/oci-hooks.log ($BPFCR_HOOK_LOG; empty = off):
 * podman runs poststop hooks where their output is not shown.
 */
import { appendFileSync, mkdirSync, readSync } from 'node:fs';
import { isatty } from 'node:tty';
import { termSafe } from '../archive/names.js';
import { debugStack, failureLine } from '../failure.js';
import { hasBpfcrAnnotation, MAX_STATE_BYTES, parseState, type OciState } from './state.js';

export const DEFAULT_HOOK_LOG = '/var/log/bpfcr/oci-hooks.log';

/**
 * The whole of stdin (`prefix`: what hook-main.cts already read of it). A runtime may hand over a
 * non-blocking pipe: where a read would block (EAGAIN), wait in poll(2) for data or EOF, as a
 * blocking read would, instead of asking again at once (which spun a CPU for as long as the
 * writer kept the pipe open).
 */
export async function readStdin(prefix?: Buffer): Promise<string> {
  // isatty(0), not process.stdin.isTTY: building process.stdin for a pipe sets O_NONBLOCK on its
  // file description (which the runtime that handed it over may share)
  if (isatty(0)) throw new Error('expects the OCI runtime-spec state JSON on stdin (it is a terminal)');
  const chunks: Buffer[] = prefix?.length ? [prefix] : [];
  const buf = Buffer.allocUnsafe(65536);
  let total = prefix?.length ?? 0;
  // stop just past the limit: parseState reports "larger than"
  while (total <= MAX_STATE_BYTES) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') {
        const { waitReadable } = await import('../syscall/fs.js');
        if (waitReadable(0)) continue;
        break; // stdin is not open: treated as empty
      }
      if (code === 'EOF') break;
      if (code === 'EBADF' || code === 'EINVAL') break; // stdin closed: treated as empty
      throw new Error(`cannot read stdin: ${code ?? String(e)}`);
    }
    if (n === 0) break;
    total += n;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString('utf8');
}

function logLine(file: string | undefined, line: string): void {
  if (!file) return;
  try {
    appendFileSync(file, `${new Date().toISOString()} ${line}\n`, { mode: 0o640 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      try {
        mkdirSync(file.slice(0, file.lastIndexOf('/')) || '/', { recursive: true, mode: 0o750 });
        appendFileSync(file, `${new Date().toISOString()} ${line}\n`, { mode: 0o640 });
      } catch { /* logging is best effort */ }
    }
  }
}

/**
 * Run STAGE (argv[0]) for the state text (read from stdin when not given; `stdinPrefix`: what
 * hook-main.cts read of stdin before a read would have blocked).
 */
export async function hookMain(argv: string[], stateText?: string, stdinPrefix?: Buffer): Promise<number> {
  const stage = argv[0];
  const logFile = process.env['BPFCR_HOOK_LOG'] ?? DEFAULT_HOOK_LOG;
  if (stage !== 'prestart' && stage !== 'poststop') {
    process.stderr.write(`bpfcr hook: usage: hook-main.js prestart|poststop < state.json (got ${stage === undefined ? 'no stage' : JSON.stringify(stage)})\n`);
    return 2;
  }
  let state: OciState;
  try {
    state = parseState(stateText ?? await readStdin(stdinPrefix));
  } catch (e) {
    const msg = failureLine(`bpfcr ${stage}`, e);
    process.stderr.write(msg + '\n');
    logLine(logFile || undefined, msg);
    (await import('../log/runlog.js')).logRun({ what: `hook ${stage}`, ms: 0, result: 'error', detail: msg });
    return 1;
  }
  if (!hasBpfcrAnnotation(state.annotations)) return 0;

  const tag = `bpfcr ${stage} ${termSafe(state.id.slice(0, 12))}`;
  // every line is escaped: messages quote the container's names (pin paths, annotations)
  const emit = (line: string): void => {
    process.stderr.write(line + '\n');
    logLine(logFile || undefined, line);
  };
  const say = (level: string, msg: string): void => emit(`${tag}: ${level}${termSafe(msg)}`);
  try {
    const [{ runHook }, { recoverQueueJournals }] = await Promise.all([import('./hooks.js'), import('../maps/queue-journal.js')]);
    // values an interrupted queue/stack dump took out go back before this hook touches maps
    for (const line of recoverQueueJournals()) say('', line);
    // one line per run in the run log (src/log/runlog.ts): what, which container, how long, how it ended
    const { loggedRun } = await import('../log/runlog.js');
    await loggedRun(`hook ${stage}`, state.id.slice(0, 12), () => runHook(stage, state, { info: (m) => say('', m), warn: (m) => say('warning: ', m) }),
      (o) => ({ detail: o!.summary, ...(o!.pins ? { maps: o!.pins.length } : {}) }));
    return 0;
  } catch (e) {
    emit(failureLine(`${tag}: error`, e));
    process.stderr.write(debugStack(e) ?? '');
    return 1;
  }
}
