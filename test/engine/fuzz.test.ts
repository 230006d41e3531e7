/**
 * The seeded mutation fuzz (test/helpers/fuzz.ts), briefly: a fixed seed, a few seconds. Run as its
 * own process, as bench/fuzz.ts runs it longer, so that an uncaught exception is the fuzz's to count
 * and not the test runner's. Any failure fails the test with the cases to replay.
 */
import test from 'ava';
import { execa } from 'execa';
import { join } from 'node:path';
import { ROOT, requireRoot } from '../helpers/env.js';
import type { FuzzReport } from '../helpers/fuzz.js';

test.before(() => requireRoot());

const SEED = 11;
const ITERATIONS = 120;

test.serial(`fuzz, seed ${SEED}: mutated archives (tar, gzip, zstd, directory, export), OCI state and annotations, state files, config: every case accepted or refused in one line, nothing left behind`, async (t) => {
  t.timeout(120_000);
  const r = await execa(process.execPath, [join(ROOT, 'dist/bench/fuzz.js'), '--seed', String(SEED), '--iterations', String(ITERATIONS), '--json'], {
    reject: false, env: { BPFCR_CONFIG: '' },
  });
  t.is(r.exitCode === 0 || r.exitCode === 1 ? '' : r.stderr, '', 'the fuzz ran to its end');
  const report = JSON.parse(r.stdout) as FuzzReport;
  t.deepEqual(report.cases, { archive: ITERATIONS, state: ITERATIONS, statefile: ITERATIONS, config: ITERATIONS });
  t.deepEqual(report.failures.map((f) => `${f.target} #${f.iteration} (${f.how}): ${f.problem}`), []);
  // the cases reached both sides: some inputs were still valid, most were refused
  for (const target of Object.keys(report.cases)) {
    t.true(report.accepted[target]! > 0 && report.accepted[target]! < ITERATIONS, `${target}: ${report.accepted[target]} accepted`);
  }
  t.log(`${Object.values(report.cases).reduce((a, b) => a + b, 0)} cases in ${report.ms} ms`);
});
