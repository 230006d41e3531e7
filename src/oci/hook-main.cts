/**
 * Entry of the OCI hooks (hooks/prestart, hooks/poststop): `node hook-main.js STAGE` with the
 * runtime-spec state JSON on stdin.
 *
 * It runs on every container start/stop the hook is registered for (every container with the
 * `always` registration), so a container without io.bpfcr.* annotations must cost little more
 * than Node's own start: this module imports node:fs only, reads stdin, and exits 0 when the state
 * is plainly well-formed and carries no io.bpfcr.* key the stage acts on. Anything else (annotated,
 * or anything odd about the state) goes to hook-run.ts, which validates fully and reports precisely.
 *
 * CommonJS on purpose (.cts → .cjs): Node's CommonJS loader starts ~3 ms faster than its ESM
 * loader, a tenth of an empty Node start. The rest of bpfcr comes from the one-file bundle (cli/load.cts).
 */
import { readSync } from 'node:fs';
import { isatty } from 'node:tty';

/**
 * All of stdin as text; or, where a read fails or would block (EAGAIN: a non-blocking pipe whose
 * writer has not finished), the bytes read so far, which hook-run.ts goes on from (it waits for the
 * rest without spinning). Past 1 MiB too: hook-run.ts reports the size.
 */
function readAll(): { text: string } | { partial: Buffer } {
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(65536);
  let total = 0;
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch {
      return { partial: Buffer.concat(chunks) }; // EAGAIN, EBADF, …: hook-run.ts deals with it
    }
    if (n === 0) break;
    total += n;
    chunks.push(Buffer.from(buf.subarray(0, n)));
    if (total > 1 << 20) return { partial: Buffer.concat(chunks) };
  }
  return { text: Buffer.concat(chunks).toString('utf8') };
}

/**
 * io.bpfcr.* annotations poststop has nothing to do for: it acts on io.bpfcr.save-on-stop alone, and
 * prestart checked every annotation when the container started (a container's annotations do not
 * change). A container that only declares pins — podman stops one after every checkpoint — so costs a
 * stop no more than a container without annotations. (The names of state.ts, written out: this entry
 * loads nothing of bpfcr before it knows there is work.)
 */
const POSTSTOP_IGNORES = new Set(['io.bpfcr.pins', 'io.bpfcr.restore-from', 'io.bpfcr.on-existing']);

/**
 * True only for a well-formed state without any io.bpfcr.* annotation the stage acts on (the common
 * case: none at all).
 */
function plainlyNotOurs(text: string, stage: string): boolean {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return false;
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return false;
  const s = o as Record<string, unknown>;
  for (const k of ['ociVersion', 'id', 'status', 'bundle']) if (typeof s[k] !== 'string' || s[k] === '') return false;
  if (!(s['bundle'] as string).startsWith('/')) return false;
  if (s['pid'] !== undefined && !(Number.isInteger(s['pid']) && (s['pid'] as number) >= 0)) return false;
  const a = s['annotations'];
  if (a === undefined || a === null) return true;
  if (typeof a !== 'object' || Array.isArray(a)) return false;
  for (const k in a as Record<string, unknown>) {
    if (typeof (a as Record<string, unknown>)[k] !== 'string') return false;
    if (k.startsWith('io.bpfcr.') && !(stage === 'poststop' && POSTSTOP_IGNORES.has(k))) return false;
  }
  return true;
}

const stage = process.argv[2];
// isatty(0), not process.stdin.isTTY: touching process.stdin builds a stream (~4 ms)
const input = isatty(0) ? undefined : readAll();
const text = input && 'text' in input ? input.text : undefined;
if ((stage === 'prestart' || stage === 'poststop') && text !== undefined && plainlyNotOurs(text, stage)) {
  process.exitCode = 0;
} else {
  // Until hookMain settles the outcome is a failure: should Node's event loop ever run dry
  // first (a promise that never settles), the hook must not report success.
  let settled = false;
  process.exitCode = 1;
  process.on('exit', () => {
    if (!settled) process.stderr.write(`bpfcr ${stage ?? 'hook'}: internal error: ended before finishing (run with BPFCR_DEBUG=1 and report it)\n`);
  });
  // loaded here, not at the top: the no-annotation exit above needs none of it
  const { loadBundle } = require('../cli/load.cjs') as typeof import('../cli/load.cjs');
  loadBundle().hookRun().then(
    async ({ hookMain }) => {
      const code = await hookMain(process.argv.slice(2), text, input && 'partial' in input ? input.partial : undefined);
      settled = true;
      process.exitCode = code;
    },
    (e: unknown) => { settled = true; process.stderr.write(`bpfcr hook: ${String(e)}\n`); process.exitCode = 1; },
  );
}
