/**
 * The project's own libbpf fixture apps (test/fixtures/apps, built by scripts/build-apps.sh into
 * build/apps): building them, running them, and reading the one-line `key=value` status file
 * each app rewrites every tick.
 */
import { execa } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ROOT } from './env.js';

export const APPS_DIR = join(ROOT, 'build/apps');
const BUILD = join(ROOT, 'scripts/build-apps.sh');
export const TRACEFS = '/sys/kernel/tracing';

export type Status = Record<string, number>;

/** Build (or confirm up to date) every app; throws with the script's output and how to rerun it. */
export async function ensureApps(): Promise<void> {
  const r = await execa('bash', [BUILD], { cwd: ROOT, reject: false, all: true });
  if (r.exitCode !== 0) {
    throw new Error(`building the fixture apps failed (exit ${r.exitCode}); rerun: bash ${BUILD}\n${String(r.all ?? '').trim()}`);
  }
}

/** Mount tracefs on /sys/kernel/tracing unless it is there (tracepoint attachment needs it). */
export async function ensureTracefs(): Promise<void> {
  const mounted = readFileSync('/proc/self/mounts', 'utf8').split('\n')
    .some((l) => { const f = l.split(' '); return f[1] === TRACEFS && f[2] === 'tracefs'; });
  if (mounted) return;
  mkdirSync(TRACEFS, { recursive: true });
  await execa('mount', ['-t', 'tracefs', 'tracefs', TRACEFS]);
}

/** Parse an app's status line (`pid=1 tick=2 …`); throws naming the file if missing or garbled. */
export function readStatus(path: string): Status {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`status ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  const line = text.trim();
  if (!line || line.includes('\n')) throw new Error(`status ${path}: expected one line, got ${JSON.stringify(text)}`);
  const out: Status = {};
  for (const pair of line.split(/\s+/)) {
    const m = /^([a-z_][a-z0-9_]*)=(-?\d+)$/.exec(pair);
    if (!m) throw new Error(`status ${path}: garbled pair ${JSON.stringify(pair)} in ${JSON.stringify(line)}`);
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

/**
 * Poll the status file until pred(status) holds and return that status. A missing file counts as
 * "not yet"; on timeout, throw with `what`, the last status (or last read error). With `app`,
 * fail at once if that process has exited (with its exit code and stderr).
 */
export async function waitStatus(
  path: string, pred: (s: Status) => boolean, timeoutMs: number, what: string, app?: RunningApp,
): Promise<Status> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no status file yet';
  for (;;) {
    if (existsSync(path)) {
      try {
        const s = readStatus(path);
        if (pred(s)) return s;
        last = JSON.stringify(s);
      } catch (e) {
        last = (e as Error).message;
      }
    }
    if (app && (app.child.exitCode !== null || app.child.signalCode !== null)) {
      throw new Error(`waiting for ${what}: the app exited (${app.child.exitCode ?? app.child.signalCode}): ${app.stderr().trim()}; last status: ${last}`);
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last status: ${last}`);
    await sleep(50);
  }
}

export interface RunningApp {
  pid: number;
  child: ChildProcess;
  status: string;
  stderr: () => string;
  /** SIGTERM (the app's clean stop), SIGKILL if it lingers; resolves to the exit code or signal. */
  stop: (signal?: NodeJS.Signals) => Promise<number | string>;
}

/**
 * Start build/apps/NAME on the host with `--status STATUS` plus args. With `comm`, it runs through
 * a symlink of that name next to STATUS: the kernel names the task after the exec'd path, so the
 * counter (which filters events by its own comm) ignores other instances running on the host.
 */
export function startApp(name: string, status: string, args: string[] = [], opts: { comm?: string } = {}): RunningApp {
  let bin = join(APPS_DIR, name);
  if (opts.comm) {
    if (opts.comm.length > 15 || opts.comm.includes('/')) throw new Error(`comm ${opts.comm}: at most 15 characters, no slash`);
    const link = join(dirname(status), opts.comm);
    symlinkSync(bin, link);
    bin = link;
  }
  const child = spawn(bin, ['--status', status, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | string>((res) => child.once('exit', (code, sig) => res(code ?? sig ?? -1)));
  child.once('error', () => undefined);
  return {
    pid: child.pid ?? -1,
    child,
    status,
    stderr: () => err,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        const r = await exited;
        clearTimeout(timer);
        return r;
      }
      return exited;
    },
  };
}

/** /proc/PID/maps lines backed by BPF maps (mmapped .bss/.data/.rodata, ring buffer pages). */
export function bpfMapVmas(pid: number): string[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => l.endsWith('anon_inode:bpf-map'));
}
