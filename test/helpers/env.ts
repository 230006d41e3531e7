/**
 * Shared test plumbing: the fixture binary, fresh bpffs mounts, and running the CLI as a real
 * process (the way operators and hooks run it).
 */
import { execa } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../../../..');
export const HOLDER = join(ROOT, 'build/bpfholder');
export const CLI = join(ROOT, 'dist/src/cli/bpfcr.cjs');

export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('bpfcr tests need root (real bpf(2), bpffs mounts): run `sudo npm test`');
  if (!existsSync(HOLDER)) throw new Error(`${HOLDER} missing: run \`npm test\` (its pretest builds it) or bash scripts/build-fixtures.sh`);
}

export function tempDir(prefix = 'bpfcr-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A private bpffs mounted on a fresh temp dir; unmounting it drops every pin in it. */
export async function freshBpffs(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = tempDir('bpfcr-bpffs-');
  await execa('mount', ['-t', 'bpf', 'bpf', dir]);
  return {
    dir,
    cleanup: async () => {
      await execa('umount', [dir]).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface HeldMap { name: string; type: string; id: number; fd: number }

export interface Holder {
  pid: number;
  maps: HeldMap[];
  byName(name: string): HeldMap;
  kill(): Promise<void>;
}

/** Start `bpfholder hold SPEC…` (or hold-id) and wait for READY. */
export async function startHolder(args: string[]): Promise<Holder> {
  const child: ChildProcess = spawn(HOLDER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const maps: HeldMap[] = [];
  const rl = createInterface({ input: child.stdout! });
  await new Promise<void>((res, rej) => {
    const onExit = (code: number | null): void => rej(new Error(`bpfholder ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
    child.once('exit', onExit);
    rl.on('line', (line) => {
      if (line === 'READY') { child.off('exit', onExit); res(); return; }
      if (line.startsWith('{')) maps.push(JSON.parse(line) as HeldMap);
    });
  });
  return {
    pid: child.pid!,
    maps,
    byName(name) {
      const m = maps.find((x) => x.name === name);
      if (!m) throw new Error(`holder has no map ${name}`);
      return m;
    },
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    },
  };
}

/** `bpfholder describe` — the independent view of a map (never bpfcr's own code). */
export async function describe(sel: { id?: number; pin?: string }, extra: string[] = []): Promise<Record<string, unknown>> {
  const args = ['describe', ...extra, ...(sel.id !== undefined ? ['--id', String(sel.id)] : ['--pin', sel.pin!])];
  const r = await execa(HOLDER, args);
  return JSON.parse(r.stdout.trim().split('\n')[0]!) as Record<string, unknown>;
}

export interface CliResult { exitCode: number; stdout: string; stderr: string }

/** Run the compiled CLI; BPFCR_CONFIG= keeps the host's /etc/bpfcr/config.yaml out of tests. */
export async function bpfcr(args: string[], opts: { input?: Buffer | string; env?: Record<string, string> } = {}): Promise<CliResult> {
  const r = await execa(process.execPath, [CLI, ...args], {
    reject: false, stripFinalNewline: true,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    env: { BPFCR_CONFIG: '', ...opts.env },
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export interface Scenario { holder: Holder; work: string; fs: { dir: string } }

/**
 * The common test shape: a holder process with maps, a temp dir and a fresh bpffs, all torn
 * down afterwards whatever happens.
 */
export async function withScenario(holderArgs: string[], fn: (s: Scenario) => Promise<void>): Promise<void> {
  const holder = await startHolder(holderArgs);
  const work = tempDir();
  const fs = await freshBpffs();
  try {
    await fn({ holder, work, fs });
  } finally {
    await holder.kill();
    await fs.cleanup();
    rmSync(work, { recursive: true, force: true });
  }
}

/** fn's promise, made once; a rejected one is dropped so that the next call tries again (so does reset()). */
export function onceRetryable<T>(fn: () => Promise<T>): (() => Promise<T>) & { reset(): void } {
  let memo: Promise<T> | undefined;
  const get = (): Promise<T> => {
    memo ??= fn();
    memo.catch(() => { memo = undefined; });
    return memo;
  };
  return Object.assign(get, { reset: () => { memo = undefined; } });
}

/**
 * The run log's lines written from now on (src/log/runlog.ts: what hooks and CRIU actions did, where
 * an operator looks). Follows one rotation (bpfcr.log → bpfcr.log.1).
 */
export function runLogFromNow(): () => string {
  const file = join(process.env['BPFCR_LOG_DIR'] || '/var/log/bpfcr', 'bpfcr.log');
  const size = (f: string): number => { try { return statSync(f).size; } catch { return 0; } };
  const read = (f: string, from: number): string => { try { return readFileSync(f).subarray(from).toString('utf8'); } catch { return ''; } };
  const start = size(file);
  return () => (size(file) >= start ? read(file, start) : read(`${file}.1`, start) + read(file, 0));
}
