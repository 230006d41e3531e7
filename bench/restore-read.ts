/**
 * Restore read path A/B: whole-process `bpfcr restore F.tar --pin-dir D` of a 1M-entry HASH map
 * (8 B keys, 16 B values) for one or more bpfcr builds, next to the C batch loop doing the same
 * BPF_MAP_UPDATE_BATCH calls (build/batchloop restore). docs/archive-format.md, "Implementation
 * notes", has the figures.
 *
 *   BENCH_CLIS='before=/tmp/old/dist/src/cli/bpfcr.cjs,after=dist/src/cli/bpfcr.cjs' node dist/bench/restore-read.js
 *
 * Runs are interleaved (the order rotates every round), each into a fresh pin directory on one
 * bpffs that is emptied (untimed) after the run; the measured processes run at BENCH_NICE
 * (default -10) so that other jobs on the machine add less noise. Wall time is measured here, CPU
 * (user + sys) and peak RSS by GNU time.
 *
 * Environment: BENCH_RUNS (default 9), BENCH_ENTRIES (default 1048576), BENCH_CLIS (default
 * this build), BENCH_COMPRESSION (tar | tar.zst | tar.gz, default tar).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { benchClis, columns, hold, median, ROOT, runMain, statCells, timed, withWorkDir, type Run } from './lib.js';

const BATCHLOOP = join(ROOT, 'build/batchloop');
const RUNS = Number(process.env['BENCH_RUNS'] ?? 9);
const ENTRIES = Number(process.env['BENCH_ENTRIES'] ?? 1048576);
const EXT = process.env['BENCH_COMPRESSION'] ?? 'tar';
const CLIS = benchClis();

runMain(() => withWorkDir('bpfcr-restore-bench-', async (work, fs) => {
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
  const fmt = columns(W);
  console.log(fmt(['variant', 'wall ms', 'min', 'max', 'cpu ms', 'RSS MB', `paired Δ vs ${variants[0]![0]} (median of per-round differences)`]));
  const first = runs.get(variants[0]![0])!;
  for (const [name] of variants) {
    const rs = runs.get(name)!;
    const d = median(rs.map((r, i) => r.ms - first[i]!.ms));
    console.log(fmt([name, ...statCells(rs, 1), rs === first ? '' : `${d >= 0 ? '+' : ''}${d.toFixed(1)} ms`]));
  }
}));
