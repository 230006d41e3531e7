/**
 * QUEUE dump, before and after issue 11, side by side: a 1M-entry QUEUE (8 B values) held by
 * build/bpfholder, dumped whole-process by each bpfcr build (`bpfcr dump --map-id ID -o F.tar`):
 *
 *   time:  median wall / CPU / peak RSS of BENCH_RUNS interleaved runs;
 *   kill:  the dump SIGKILLed at 35 % of that build's median time (mid-dump), then one more run
 *          of the same build (`bpfcr gc`, which puts back what an interrupted dump took out of a
 *          queue, when the build knows how), then the entries the queue holds and whether they
 *          are the original values in their order (bpfholder describe: count and FNV-1a).
 *
 *   git archive <commit before issue 11> | tar -x -C /tmp/before && ln -s $PWD/node_modules /tmp/before/ \
 *     && (cd /tmp/before && npx tsc -p .)
 *   BENCH_CLIS='before=/tmp/before/dist/src/cli/bpfcr.cjs,after=dist/src/cli/bpfcr.cjs' node dist/bench/queue-dump.js
 *
 * Environment: BENCH_CLIS (default this build), BENCH_RUNS (default 5), BENCH_ENTRIES (default
 * 1000000), BENCH_NICE (default -10). Root, a bpffs mountable under /tmp.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { benchClis, columns, HOLDER, hold, median, runMain, statCells, timed, withWorkDir, type Run } from './lib.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 5);
const ENTRIES = Number(process.env['BENCH_ENTRIES'] ?? 1_000_000);
const CLIS = benchClis();
const SPEC = `queue:bench_q:entries=${ENTRIES},max=${ENTRIES},seed=11`;

function describe(id: number): { count: number; fnv1a64: string } {
  return JSON.parse(execFileSync(HOLDER, ['describe', '--summary', '--id', String(id)]).toString().split('\n')[0]!) as { count: number; fnv1a64: string };
}

/** Dump with `cli`, SIGKILL it after `ms`, run `cli gc` once: what the queue holds then. */
async function killed(cli: string, ms: number, staging: string, out: string): Promise<{ count: number; intact: boolean; gcSaid: string }> {
  const h = await hold(SPEC);
  try {
    const before = describe(h.id);
    const child = spawn(process.execPath, [cli, 'dump', '--map-id', String(h.id), '-o', out], { stdio: 'ignore', env: { ...process.env, BPFCR_CONFIG: '' } });
    const gone = new Promise((r) => child.once('exit', r));
    await new Promise((r) => setTimeout(r, ms));
    child.kill('SIGKILL');
    await gone;
    const gc = spawnSync(process.execPath, [cli, 'gc', '--all', '--staging', staging], { env: { ...process.env, BPFCR_CONFIG: '' } });
    const after = describe(h.id);
    const said = gc.stdout.toString().split('\n').find((l) => /put back|journal/.test(l)) ?? '(nothing about the queue)';
    return { count: after.count, intact: after.count === before.count && after.fnv1a64 === before.fnv1a64, gcSaid: said };
  } finally {
    h.kill();
  }
}

runMain(() => withWorkDir('bpfcr-queue-bench-', async (work, fs) => {
  const runs = new Map<string, Run[]>(CLIS.map(([n]) => [n, []]));
  const h = await hold(SPEC);
  try {
    for (let i = 0; i < RUNS; i++) {
      for (let k = 0; k < CLIS.length; k++) {
        const [name, cli] = CLIS[(i + k) % CLIS.length]!;
        const out = join(work, `${name}-${i}.tar`);
        runs.get(name)!.push(timed(process.execPath, [cli, 'dump', '--map-id', String(h.id), '-o', out]));
        rmSync(out, { force: true });
      }
    }
  } finally {
    h.kill();
  }
  console.log(`bpfcr dump --map-id of a ${ENTRIES}-entry QUEUE (8 B values): median of ${RUNS} interleaved whole-process runs; then one dump killed mid-way (SIGKILL at 35 % of the median) and one \`bpfcr gc\`\n`);
  const fmt = columns([10, 11, 9, 9, 9, 10, 14, 10]);
  console.log(fmt(['build', 'wall ms', 'min', 'max', 'cpu ms', 'RSS MB', 'killed at ms', 'entries after kill + gc', '']));
  const said: string[] = [];
  for (const [name, cli] of CLIS) {
    const rs = runs.get(name)!;
    const at = Math.round(median(rs.map((r) => r.ms)) * 0.35);
    const k = await killed(cli, at, fs, join(work, `${name}-killed.tar`));
    console.log(fmt([name, ...statCells(rs), at,
      `${k.count} ${k.intact ? '(all, in order)' : `(${ENTRIES - k.count} lost${k.count === ENTRIES ? ', order changed' : ''})`}`]));
    said.push(`${name} gc: ${k.gcSaid}`);
  }
  console.log(`\n${said.join('\n')}`);
}));
