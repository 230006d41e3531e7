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
import { hasBpfcrAnnotation, MAX_STATE_BYTES, parseState, type OciState } from './state.js';

export const DEFAULT_HOOK_LOG = '/var/log/bpfcr/oci-hooks.log';

export function readStdin(): string {
  if (process.stdin.isTTY) throw new Error('expects the OCI runtime-spec state JSON on stdin (it is a terminal)');
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(65536);
  let total = 0;
  // stop just past the limit: parseState reports "larger than"
  while (total <= MAX_STATE_BYTES) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') continue; // a non-blocking pipe (rare): keep polling
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

/** Run STAGE (argv[0]) for the state text (read from stdin when not given). */
export async function hookMain(argv: string[], stateText?: string): Promise<number> {
  const stage = argv[0];
  const logFile = process.env['BPFCR_HOOK_LOG'] ?? DEFAULT_HOOK_LOG;
  if (stage !== 'prestart' && stage !== 'poststop') {
    process.stderr.write(`bpfcr hook: usage: hook-main.js prestart|poststop < state.json (got ${stage === undefined ? 'no stage' : JSON.stringify(stage)})\n`);
    return 2;
  }
  let state: OciState;
  try {
    state = parseState(stateText ?? readStdin());
  } catch (e) {
    const msg = `bpfcr ${stage}: ${(e as Error).message}`;
    process.stderr.write(msg + '\n');
    logLine(logFile || undefined, msg);
    return 1;
  }
  if (!hasBpfcrAnnotation(state.annotations)) return 0;

  const tag = `bpfcr ${stage} ${state.id.slice(0, 12)}`;
  const say = (level: string, msg: string): void => {
    const line = `${tag}: ${level}${msg}`;
    process.stderr.write(line + '\n');
    logLine(logFile || undefined, line);
  };
  try {
    const { runHook } = await import('./hooks.js');
    await runHook(stage, state, { info: (m) => say('', m), warn: (m) => say('warning: ', m) });
    return 0;
  } catch (e) {
    say('error: ', (e as Error).message);
    if (process.env['BPFCR_DEBUG'] && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}
