/**
 * The long run of the seeded mutation fuzz (test/helpers/fuzz.ts): archives through restore (real
 * kernel, root), OCI state and annotations, state files, the config file.
 *
 *   node dist/bench/fuzz.js [--seed N] [--iterations N] [--targets archive,state,statefile,config] [--json] [--reasons]
 *
 * --iterations is per target (default 2000). Prints each target's cases and time, the cases per
 * second over the run, and every failure with what to replay it with (seed, target, case number,
 * mutation), and with --reasons how often each kind of refusal was met (what the cases reached);
 * exits 1 when there is a failure. The suite runs the same code briefly
 * (test/engine/fuzz.test.ts).
 */
import { parseArgs } from 'node:util';
import { fuzz, type FuzzReport } from '../test/helpers/fuzz.js';

function summary(r: FuzzReport): string {
  const cases = Object.values(r.cases).reduce((a, b) => a + b, 0);
  return `fuzz seed ${r.seed}: ${cases} cases in ${(r.ms / 1000).toFixed(1)} s (${Math.round(cases / (r.ms / 1000))} cases/s), ${r.failures.length} failure(s)`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { seed: { type: 'string' }, iterations: { type: 'string' }, targets: { type: 'string' }, json: { type: 'boolean' }, reasons: { type: 'boolean' } },
  });
  const seed = Number(values.seed ?? 1);
  const iterations = Number(values.iterations ?? 2000);
  if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(iterations) || iterations < 1) {
    process.stderr.write('usage: node dist/bench/fuzz.js [--seed N] [--iterations N] [--targets a,b] [--json]\n');
    return 2;
  }
  const log = values.json ? undefined : (s: string): void => { process.stdout.write(`${s}\n`); };
  const r = await fuzz({ seed, iterations, ...(values.targets ? { targets: values.targets.split(',') } : {}), ...(log ? { log } : {}) });
  if (values.json) process.stdout.write(JSON.stringify(r) + '\n');
  else {
    process.stdout.write(`${summary(r)}\n`);
    if (values.reasons) {
      for (const [target, byReason] of Object.entries(r.refusals)) {
        process.stdout.write(`${target}: refusals by reason\n`);
        for (const [why, n] of Object.entries(byReason).sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${String(n).padStart(5)}  ${why}\n`);
      }
    }
    for (const f of r.failures) process.stdout.write(`FAIL ${f.target} #${f.iteration} (${f.how}): ${f.problem}\n`);
  }
  return r.failures.length ? 1 : 0;
}

main().then(
  (code) => { process.exitCode = code; },
  (e: unknown) => { process.stderr.write(`fuzz: ${e instanceof Error ? e.stack : String(e)}\n`); process.exitCode = 2; },
);
