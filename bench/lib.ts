/**
 * What the whole-process benchmarks share: timing a command (wall here, CPU and peak RSS from GNU
 * time), medians, and a bpfholder process holding a map.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
export const HOLDER = join(ROOT, 'build/bpfholder');
/** The measured processes run at BENCH_NICE (default -10): other jobs on the machine add less noise. */
export const NICE = ['nice', '-n', process.env['BENCH_NICE'] ?? '-10'];

export interface Run { ms: number; cpuMs: number; rssMB: number }

/** Run `cmd args` (niced, under GNU time, after a sync); throws with its stderr when it fails. */
export function timed(cmd: string, args: string[]): Run {
  spawnSync('sync');
  const t0 = process.hrtime.bigint();
  const r = spawnSync(NICE[0]!, [...NICE.slice(1), '/usr/bin/time', '-f', '%U %S %M', cmd, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, BPFCR_CONFIG: '' },
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const err = r.stderr.toString().trim();
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${err}`);
  const [user, sys, kib] = err.split('\n').pop()!.split(' ').map(Number) as [number, number, number];
  return { ms, cpuMs: (user + sys) * 1000, rssMB: kib / 1024 };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** `bpfholder hold SPEC` until READY: its pid and the map's id. */
export async function hold(spec: string): Promise<{ pid: number; id: number; kill: () => void }> {
  const child = spawn(HOLDER, ['hold', spec], { stdio: ['ignore', 'pipe', 'inherit'] });
  let id = 0;
  await new Promise<void>((res, rej) => {
    child.once('exit', (c) => rej(new Error(`bpfholder exited ${c}`)));
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (l.startsWith('{')) id = (JSON.parse(l) as { id: number }).id;
      if (l === 'READY') res();
    });
  });
  return { pid: child.pid!, id, kill: () => child.kill('SIGKILL') };
}

/** The usual columns of a variant's runs: median wall ms, min, max, median CPU ms, median peak RSS MB. */
export function statCells(rs: Run[], wallDigits = 0): string[] {
  const ms = rs.map((r) => r.ms);
  return [median(ms).toFixed(wallDigits), Math.min(...ms).toFixed(0), Math.max(...ms).toFixed(0),
    median(rs.map((r) => r.cpuMs)).toFixed(0), median(rs.map((r) => r.rssMB)).toFixed(1)];
}

/** A row formatter: each cell padded to its column's width (10 past the given ones). */
export function columns(widths: number[]): (cells: (string | number)[]) => string {
  return (cells) => cells.map((x, i) => String(x).padEnd(widths[i] ?? 10)).join('');
}

/** BENCH_CLIS='name=path/to/bpfcr.cjs,…' (default: this build as `bpfcr`). */
export function benchClis(): [string, string][] {
  return (process.env['BENCH_CLIS'] ?? `bpfcr=${join(ROOT, 'dist/src/cli/bpfcr.cjs')}`)
    .split(',')
    .map((kv) => {
      const i = kv.indexOf('=');
      return [kv.slice(0, i), resolve(kv.slice(i + 1))];
    });
}

/** A temporary work dir with a fresh bpffs mounted at WORK/fs, for `fn`; both gone afterwards. */
export async function withWorkDir(prefix: string, fn: (work: string, fs: string) => Promise<void>): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), prefix));
  const fs = join(work, 'fs');
  execFileSync('mkdir', [fs]);
  execFileSync('mount', ['-t', 'bpf', 'bpf', fs]);
  try {
    await fn(work, fs);
  } finally {
    spawnSync('umount', [fs]);
    rmSync(work, { recursive: true, force: true });
  }
}

/** Run a benchmark's main: a failure is its message and exit status 1. */
export function runMain(main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
