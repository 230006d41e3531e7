/**
 * Tar writer A/B: whole-process `bpfcr dump` with the built-in ustar encoder vs a writer on
 * tar-stream's pack(), side by side (docs/archive-format.md, "Implementation notes").
 *
 *   node dist/bench/tar-writer.js
 *
 * The variant is chosen per run with BPFCR_TAR_WRITER=builtin|tar-stream (read by
 * src/archive/writer.ts; everything else — buffers, maxInFlightBytes window, atomic publish,
 * 0600 — is shared). Maps are held by build/bpfholder: HASH, 8 B keys, 16 B values.
 * Runs are interleaved (A B, then B A, ...) so that drift and other jobs on the machine hit both
 * variants alike; `sync` runs (untimed) before every run so writeback of the previous output does
 * not land in the next one. Wall time is measured here around the child (ns clock); user and
 * system CPU time (10 ms resolution) and peak RSS by GNU time. At 10M entries the run is mostly
 * the kernel's batch lookup (sys), whose run-to-run spread dwarfs the writer; user time is where
 * the two writers differ. "paired Δ" is the median over rounds of
 * (tar-stream − builtin) between the two adjacent runs of a round: less sensitive to load bursts
 * than the difference of the medians.
 *
 * Environment: BENCH_RUNS (default 9), BENCH_SIZES (default 1048576,10485760),
 * BENCH_KINDS (default tar,tar.zst), BENCH_CLI (default dist/src/cli/main.js),
 * BENCH_DIR (default os.tmpdir()), BENCH_NICE (default -10: niceness of the measured runs).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const HOLDER = join(ROOT, 'build/bpfholder');
const CLI = process.env['BENCH_CLI'] ?? join(ROOT, 'dist/src/cli/main.js');
const RUNS = Number(process.env['BENCH_RUNS'] ?? 9);
const SIZES = (process.env['BENCH_SIZES'] ?? '1048576,10485760').split(',').map(Number);
const KINDS = (process.env['BENCH_KINDS'] ?? 'tar,tar.zst').split(',');
const VARIANTS = ['builtin', 'tar-stream'] as const;
// Other jobs on a small machine make whole-process timings noisy; a raised priority for the
// measured process (same for both variants) cuts most of it. BENCH_NICE=0 turns it off.
const NICE = ['nice', '-n', process.env['BENCH_NICE'] ?? '-10'];
type Variant = (typeof VARIANTS)[number];

interface Run { ms: number; userMs: number; sysMs: number; rssMB: number; bytes: number }

function dumpOnce(pid: number, out: string, variant: Variant): Run {
  rmSync(out, { force: true });
  spawnSync('sync');
  const t0 = process.hrtime.bigint();
  const r = spawnSync(NICE[0]!, [...NICE.slice(1), '/usr/bin/time', '-f', '%U %S %M', process.execPath, CLI, 'dump', '--pid', String(pid), '-o', out], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, BPFCR_CONFIG: '', BPFCR_TAR_WRITER: variant },
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const err = r.stderr.toString().trim();
  if (r.status !== 0) throw new Error(`dump (${variant}) failed (${r.status}): ${err}`);
  const [user, sys, kib] = err.split('\n').pop()!.split(' ').map(Number) as [number, number, number];
  return { ms, userMs: user * 1000, sysMs: sys * 1000, rssMB: kib / 1024, bytes: statSync(out).size };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function hold(spec: string): Promise<{ pid: number; kill: () => void }> {
  const child = spawn(HOLDER, ['hold', spec], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res, rej) => {
    child.once('exit', (c) => rej(new Error(`bpfholder exited ${c}`)));
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (l === 'READY') res();
    });
  });
  return { pid: child.pid!, kill: () => child.kill('SIGKILL') };
}

function fmt(cells: (string | number)[], widths: number[]): string {
  return cells.map((c, i) => String(c).padEnd(widths[i] ?? 12)).join('');
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(process.env['BENCH_DIR'] ?? tmpdir(), 'bpfcr-tarw-'));
  const W = [16, 12, 11, 9, 9, 9, 9, 9, 12];
  console.log(`bpfcr dump, tar writer A/B: median of ${RUNS} interleaved whole-process runs (wall ms, peak RSS MB)\n`);
  console.log(fmt(['map / output', 'variant', 'wall ms', 'min', 'max', 'user ms', 'sys ms', 'RSS MB', 'output bytes'], W));
  try {
    for (const entries of SIZES) {
      const h = await hold(`hash:tarw:key=8,value=16,max=${entries},entries=${entries}`);
      try {
        const label = entries % 1048576 === 0 ? `${entries / 1048576}Mi` : entries >= 1e6 ? `${entries / 1e6}M` : String(entries);
        for (const kind of KINDS) {
          const runs: Record<Variant, Run[]> = { builtin: [], 'tar-stream': [] };
          const out = join(work, `out.${kind}`);
          dumpOnce(h.pid, out, 'builtin'); // warm-up (page cache, zstd binary), not counted
          for (let i = 0; i < RUNS; i++) {
            const order = i % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
            for (const v of order) runs[v].push(dumpOnce(h.pid, out, v));
          }
          const med: Record<string, number> = {};
          for (const v of VARIANTS) {
            const ms = runs[v].map((r) => r.ms);
            med[v] = median(ms);
            console.log(fmt([`${label} .${kind}`, v, med[v]!.toFixed(1), Math.min(...ms).toFixed(0), Math.max(...ms).toFixed(0),
              median(runs[v].map((r) => r.userMs)).toFixed(0), median(runs[v].map((r) => r.sysMs)).toFixed(0),
              median(runs[v].map((r) => r.rssMB)).toFixed(1), runs[v][0]!.bytes], W));
          }
          const sign = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;
          const d = med['tar-stream']! - med['builtin']!;
          const paired = median(runs.builtin.map((a, i) => runs['tar-stream'][i]!.ms - a.ms));
          const user = median(runs.builtin.map((a, i) => runs['tar-stream'][i]!.userMs - a.userMs));
          console.log(`${''.padEnd(W[0]!)}Δ tar-stream − builtin: medians ${sign(d)} ms (${sign((100 * d) / med['builtin']!)}%), ` +
            `paired ${sign(paired)} ms, user cpu paired ${sign(user)} ms`);
        }
      } finally {
        h.kill();
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
