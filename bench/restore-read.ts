/**
 * Restore read path A/B: whole-process `bpfcr restore F.tar --pin-dir D` of a 1M-entry HASH map
 * (8 B keys, 16 B values) for one or more bpfcr builds, next to the C batch loop doing the same
 * BPF_MAP_UPDATE_BATCH calls (build/batchloop restore). docs/archive-format.md, "Implementation
 * notes", has the figures.
 *
 *   BENCH_CLIS='before=/tmp/old/dist/src/cli/main.js,after=dist/src/cli/main.js' node dist/bench/restore-read.js
 *
 * Runs are interleaved (the order rotates every round), each into a fresh pin directory on one
 * bpffs that is emptied (untimed) after the run; the measured processes run at BENCH_NICE
 * (default -10) so that other jobs on the machine add less noise. Wall time is measured here, CPU
 * (user + sys) and peak RSS by GNU time.
 *
 * Environment: BENCH_RUNS (default 9), BENCH_ENTRIES (default 1048576), BENCH_CLIS (default
 * this build), BENCH_COMPRESSION (tar | tar.zst | tar.gz, default tar).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const HOLDER = join(ROOT, 'build/bpfholder');
const BATCHLOOP = join(ROOT, 'build/batchloop');
const RUNS = Number(process.env['BENCH_RUNS'] ?? 9);
const ENTRIES = Number(process.env['BENCH_ENTRIES'] ?? 1048576);
const EXT = process.env['BENCH_COMPRESSION'] ?? 'tar';
const NICE = ['nice', '-n', process.env['BENCH_NICE'] ?? '-10'];
const CLIS: [string, string][] = (process.env['BENCH_CLIS'] ?? `bpfcr=${join(ROOT, 'dist/src/cli/main.js')}`)
  .split(',')
  .map((kv) => {
    const i = kv.indexOf('=');
    return [kv.slice(0, i), resolve(kv.slice(i + 1))];
  });

interface Run { ms: number; cpuMs: number; rssMB: number }

function timed(cmd: string, args: string[]): Run {
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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function hold(spec: string): Promise<{ pid: number; id: number; kill: () => void }> {
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

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'bpfcr-restore-bench-'));
  const fs = join(work, 'fs');
  execFileSync('mkdir', [fs]);
  execFileSync('mount', ['-t', 'bpf', 'bpf', fs]);
  try {
    const archive = join(work, `big.${EXT}`);
    const h = await hold(`hash:big:key=8,value=16,max=${ENTRIES},entries=${ENTRIES}`);
    try {
      execFileSync(process.execPath, [CLIS[0]![1], 'dump', '--pid', String(h.pid), '-o', archive], { env: { ...process.env, BPFCR_CONFIG: '' }, stdio: 'ignore' });
      execFileSync(BATCHLOOP, ['dump', String(h.id), join(work, 'big.raw')], { stdio: 'ignore' });
    } finally {
      h.kill();
    }
    const variants: [string, (pin: string) => Run][] = [
      ...CLIS.map(([name, cli]): [string, (pin: string) => Run] => [name, (pin) => timed(process.execPath, [cli, 'restore', archive, '--pin-dir', pin])]),
      ['C batchloop', (pin) => timed(BATCHLOOP, ['restore', join(work, 'big.raw'), join(pin + '-c')])],
    ];
    const runs = new Map<string, Run[]>(variants.map(([n]) => [n, []]));
    const clean = (): void => void spawnSync('sh', ['-c', `rm -rf ${fs}/*`]);
    variants[0]![1](join(fs, 'warm')); // page cache, not counted
    clean();
    for (let i = 0; i < RUNS; i++) {
      for (let k = 0; k < variants.length; k++) {
        const [name, run] = variants[(i + k) % variants.length]!;
        runs.get(name)!.push(run(join(fs, `r${i}-${k}`)));
        clean();
      }
    }
    console.log(`bpfcr restore of a ${ENTRIES}-entry HASH (8 B keys, 16 B values) from .${EXT}: median of ${RUNS} interleaved whole-process runs\n`);
    const W = [16, 11, 8, 8, 9, 9, 10];
    const fmt = (c: (string | number)[]): string => c.map((x, i) => String(x).padEnd(W[i] ?? 10)).join('');
    console.log(fmt(['variant', 'wall ms', 'min', 'max', 'cpu ms', 'RSS MB', `paired Δ vs ${variants[0]![0]} (median of per-round differences)`]));
    const first = runs.get(variants[0]![0])!;
    for (const [name] of variants) {
      const rs = runs.get(name)!;
      const ms = rs.map((r) => r.ms);
      const d = median(rs.map((r, i) => r.ms - first[i]!.ms));
      console.log(fmt([name, median(ms).toFixed(1), Math.min(...ms).toFixed(0), Math.max(...ms).toFixed(0),
        median(rs.map((r) => r.cpuMs)).toFixed(0), median(rs.map((r) => r.rssMB)).toFixed(1), rs === first ? '' : `${d >= 0 ? '+' : ''}${d.toFixed(1)} ms`]));
    }
  } finally {
    spawnSync('umount', [fs]);
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
