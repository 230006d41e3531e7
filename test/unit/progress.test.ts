/**
 * Progress of long dumps and restores (issue 13): drawn in place on a terminal, silent on anything
 * else, a line per map with --verbose, nothing with --quiet. The reporter with a fake terminal and
 * clock, then the real CLI on a real 300k-entry map, under script(1) for a terminal.
 */
import test from 'ava';
import { execa } from 'execa';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { MapMeta } from '../../src/maps/meta.js';
import { formatBytes, ProgressReporter } from '../../src/cli/progress.js';
import { bpfcr, CLI, freshBpffs, requireRoot, startHolder, tempDir } from '../helpers/env.js';

const meta = (index: number, name: string, entries = 0): MapMeta & { entries: number } => ({
  index, id: 10 + index, name, type: 'hash', typeId: 1, keySize: 8, valueSize: 8, maxEntries: 1 << 20, flags: 0, mapExtra: '0',
  frozen: false, policy: 'content', btf: null, layout: 'kv', valueStride: 8, top: true, refs: [], entries,
});

function fake(isTTY: boolean): { out: { isTTY: boolean; write(s: string): boolean }; text: () => string; clock: { t: number } } {
  let text = '';
  const clock = { t: 0 };
  return { out: { isTTY, write: (s: string) => { text += s; return true; } }, text: () => text, clock };
}

test('on a terminal: entries, bytes, rate, then percentage and ETA once the plan is known; redrawn at most every 100 ms; wiped at the end', (t) => {
  const f = fake(true);
  const p = new ProgressReporter('restore', {}, f.out, () => f.clock.t);
  const cb = p.callback!;
  const plan = [meta(0, 'flows', 4000), meta(1, 'stats', 0)];
  f.clock.t = 1000;
  cb({ map: plan[0]!, bytes: 16000, plan }); // 1000 entries of 16 B, after 1 s
  t.is(f.text(), "\r\x1b[Kbpfcr restore: map 0 'flows': 1000 entries, 15.6 KiB, 15.6 KiB/s, 25%, ETA 3s");
  f.clock.t = 1050;
  cb({ map: plan[0]!, bytes: 16000, plan });
  t.is(f.text().split('\r').length, 2, 'not redrawn within 100 ms');
  f.clock.t = 2000;
  cb({ map: plan[0]!, bytes: 32000, plan });
  t.regex(f.text(), /\r\x1b\[Kbpfcr restore: map 0 'flows': 4000 entries, 62\.5 KiB, 31\.3 KiB\/s, 100%, ETA 0s$/);
  p.done();
  t.true(f.text().endsWith('\r\x1b[K'), 'the status line is wiped: the summary or table comes next');
});

test('not a terminal: no callback (the engine does nothing for it), no output; --verbose: a line per map anywhere; --quiet: nothing', (t) => {
  const f = fake(false);
  t.is(new ProgressReporter('dump', {}, f.out).callback, undefined);
  const q = fake(true);
  t.is(new ProgressReporter('dump', { quiet: true, verbose: true }, q.out).callback, undefined);
  const v = fake(false);
  const p = new ProgressReporter('dump', { verbose: true }, v.out, () => v.clock.t);
  p.callback!({ map: meta(0, 'a\x1b[2J'), bytes: 160 });
  v.clock.t = 500;
  p.callback!({ map: meta(1, 'b'), bytes: 32 });
  p.done();
  t.is(v.text(), "bpfcr dump: map 0 'a\\x1b[2J' (hash): 10 entries, 160 B in 0.50s\nbpfcr dump: map 1 'b' (hash): 2 entries, 32 B in 0.00s\n");
  t.is(formatBytes(3 * 1024 * 1024), '3.0 MiB');
});

test.serial('the CLI: progress on a terminal (script(1)), silence in a pipe, nothing but errors with --quiet', async (t) => {
  requireRoot();
  const h = await startHolder(['hold', 'hash:big:entries=300000,max=300000,key=8,value=16']);
  const work = tempDir();
  const fs = await freshBpffs();
  t.teardown(async () => { await h.kill(); await fs.cleanup(); rmSync(work, { recursive: true, force: true }); });
  const out = join(work, 'big.tar');
  const env = { ...process.env, BPFCR_CONFIG: '' };
  const tty = await execa('script', ['-qec', `${process.execPath} ${CLI} dump --pid ${h.pid} -o ${out}`, '/dev/null'], { env });
  t.regex(tty.stdout, /\r\x1b\[Kbpfcr dump: map 0 'big': \d+ entries, [\d.]+ MiB, [\d.]+ MiB\/s/);
  t.regex(tty.stdout, /bpfcr: dumped 1 map\(s\), 300000 entries/);
  const pipe = await bpfcr(['dump', '--pid', String(h.pid), '-o', out, '--force']);
  t.is(pipe.exitCode, 0);
  t.regex(pipe.stderr, /^bpfcr: dumped 1 map\(s\), 300000 entries, to .* in [\d.]+s$/, 'only the summary: no progress into a log');
  const quiet = await bpfcr(['dump', '--pid', String(h.pid), '-o', out, '--force', '--quiet']);
  t.is(quiet.exitCode, 0);
  t.is(quiet.stderr, '');
  const verbose = await bpfcr(['dump', '--pid', String(h.pid), '-o', out, '--force', '-v']);
  t.regex(verbose.stderr, /^bpfcr dump: map 0 'big' \(hash\): 300000 entries, 6\.9 MiB in [\d.]+s\n/);
  const restore = await execa('script', ['-qec', `${process.execPath} ${CLI} restore ${out} --pin-dir ${fs.dir}/r`, '/dev/null'], { env });
  t.regex(restore.stdout, /bpfcr restore: map 0 'big': \d+ entries, [\d.]+ MiB, [\d.]+ MiB\/s, \d+%, ETA \d+s/);
  t.regex(restore.stdout, /big +hash +300000/);
});
