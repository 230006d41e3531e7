/**
 * Per-checkpoint locks and in-flight restore markers under the run dir (/run/bpfcr, tmpfs: nothing
 * survives a reboot, and neither do the staged BPF objects they protect).
 *
 *   <run>/<key>.lock              flock(2)ed by every action and gc while they touch checkpoint <key>
 *   <run>/<key>.restore-<pid>     a restore in flight: "<criu pid> <start time> reuse|copy",
 *                                 created at pre-restore, removed at post-restore (last cleanup step)
 *
 * flock is released by the kernel when the process dies, so a crashed action never leaves a stuck
 * lock; markers name their criu process, so stale ones are recognised and dropped.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { runDir } from '../paths.js';
import { tokenAlive } from '../runtime/process.js';



type FlockFn = (fd: number, op: number) => number;
let flockFn: FlockFn | undefined;
let errnoFn: (() => number) | undefined;
function flock(): FlockFn {
  if (!flockFn) {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    flockFn = koffi.load('libc.so.6').func('int flock(int, int)') as unknown as FlockFn;
    errnoFn = () => koffi.errno();
  }
  return flockFn;
}
const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;
const EINTR = 4;

export interface Lock {
  release(): void;
  /** unlink the lock file, then release: for the last step of a checkpoint's work (waiters retry) */
  releaseAndRemove(): void;
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Take the exclusive lock of checkpoint `key`. Waits up to timeoutMs (then throws, naming the
 * lock); timeoutMs 0 = try once and return undefined if another process holds it.
 */
export function lockKey(key: string, timeoutMs = 60_000): Lock | undefined {
  const dir = runDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `${key}.lock`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const fd = openSync(path, 'a', 0o600);
    let locked = false;
    try {
      const r = flock()(fd, LOCK_EX | LOCK_NB);
      if (r === 0) {
        // gc may have unlinked the file between our open and flock: then this lock guards nothing.
        let same = false;
        try { same = statSync(path).ino === fstatSync(fd).ino; } catch { /* unlinked */ }
        if (same) {
          locked = true;
          return {
            release: () => closeSync(fd),
            releaseAndRemove: () => { unlinkQuiet(path); closeSync(fd); },
          };
        }
      } else {
        const e = errnoFn!();
        if (e !== EWOULDBLOCK && e !== EINTR) throw new Error(`flock ${path}: errno ${e}`);
      }
    } finally {
      if (!locked) closeSync(fd);
    }
    if (timeoutMs === 0) return undefined;
    if (Date.now() > deadline) throw new Error(`checkpoint ${key} stays locked by another bpfcr process (${path}) after ${timeoutMs / 1000}s`);
    sleep(20);
  }
}

/** Run fn under the key lock; `last`: remove the lock file afterwards (no step of ours follows). */
export async function withKeyLock<T>(key: string, fn: () => Promise<T> | T, last = false): Promise<T> {
  const lock = lockKey(key)!;
  try {
    return await fn();
  } finally {
    if (last) lock.releaseAndRemove();
    else lock.release();
  }
}

export interface RestoreMarker { path: string; criuPid: number; token: string; mode: string; alive: boolean }

export function markerPath(key: string, criuPid: number): string {
  return join(runDir(), `${key}.restore-${criuPid}`);
}

/** In-flight restore markers of checkpoint `key` (alive = its criu process still runs). */
export function restoreMarkers(key: string): RestoreMarker[] {
  const dir = runDir();
  let names: string[];
  try { names = readdirSync(dir); } catch { return []; }
  const prefix = `${key}.restore-`;
  const out: RestoreMarker[] = [];
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const path = join(dir, n);
    let text = '';
    try { text = readFileSync(path, 'utf8'); } catch { continue; }
    const [pid, st, mode] = text.trim().split(/\s+/);
    const token = `${pid} ${st}`;
    out.push({ path, criuPid: Number(pid), token, mode: mode ?? '', alive: tokenAlive(token) });
  }
  return out;
}

/** Lock files and markers of every key (for gc). */
export function runEntries(): { key: string; path: string }[] {
  let names: string[];
  try { names = readdirSync(runDir()); } catch { return []; }
  return names.flatMap((n) => {
    const m = /^(.+?)\.(lock|restore-\d+)$/.exec(n);
    return m ? [{ key: m[1]!, path: join(runDir(), n) }] : [];
  });
}

export function unlinkQuiet(path: string): void {
  try { unlinkSync(path); } catch { /* gone */ }
}
