/**
 * The run log (issue 13, src/log/runlog.ts): one escaped line per hook or CRIU action run, a file
 * 0600 in a directory only its owner writes, rotated at its size cap, and never opened through a
 * symlink, a hard link or a FIFO. Logging never throws: it says why it did not write.
 */
import test from 'ava';
import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { formatRun, imageDirContainer, loggedRun, logRun, LOG_FILE } from '../../src/log/runlog.js';
import { tempDir } from '../helpers/env.js';

const NOW = new Date('2026-12-01T11:14:04.900Z');

function setup(t: { teardown(f: () => void): void }): { root: string; dir: string; log: string } {
  const root = tempDir('bpfcr-runlog-');
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'log');
  return { root, dir, log: join(dir, LOG_FILE) };
}

test('one line: what, container, result, time, maps, entries; the directory is created 0700, the file 0600', (t) => {
  const { dir, log } = setup(t);
  t.is(logRun({ what: 'criu-action post-dump', container: '3f2a9c1d0b7e', ms: 52.4, result: 'ok', maps: 7, entries: 46 }, { dir, now: NOW }), undefined);
  t.is(readFileSync(log, 'utf8'), `2026-12-01T11:14:04.900Z what="criu-action post-dump" container=3f2a9c1d0b7e result=ok ms=52 maps=7 entries=46 pid=${process.pid}\n`);
  t.is(statSync(dir).mode & 0o777, 0o700);
  t.is(statSync(log).mode & 0o777, 0o600);
});

test('names a container controls cannot break the line or reach the terminal raw', (t) => {
  const line = formatRun({ what: 'hook prestart', container: 'evil\n2026 what=fake\x1b[2J"\\', ms: 1, result: 'error', detail: 'first line\nsecond line' }, NOW, 1);
  t.is(line, '2026-12-01T11:14:04.900Z what="hook prestart" container="evil\\x0a2026 what=fake\\x1b[2J\\"\\\\" result=error ms=1 pid=1 detail="first line"');
  t.false(/[\x00-\x1f\x7f-\x9f]/.test(line));
});

test('rotation: past the cap the log becomes bpfcr.log.1 (replacing the older one), so it takes at most about twice the cap', (t) => {
  const { dir, log } = setup(t);
  for (let i = 0; i < 40; i++) t.is(logRun({ what: `run ${i}`, ms: i, result: 'ok' }, { dir, maxBytes: 1000 }), undefined);
  const cur = readFileSync(log, 'utf8');
  const old = readFileSync(`${log}.1`, 'utf8');
  t.true(cur.length <= 1000 && old.length <= 1000);
  t.regex(cur, /what="run 39"/);
  t.notRegex(cur + old, /what="run 0" /, 'the oldest lines went with an earlier rotation');
  const lines = (old + cur).trim().split('\n');
  t.deepEqual(lines.map((l) => Number(/what="run (\d+)"/.exec(l)![1])), lines.map((_, i) => 40 - lines.length + i), 'no line lost between the two files');
  t.is(statSync(`${log}.1`).mode & 0o777, 0o600);
});

test('never through a symlink, a hard link or a FIFO; not in a directory others can write; never throws', (t) => {
  const { root, dir, log } = setup(t);
  mkdirSync(dir, { mode: 0o700 });
  const victim = join(root, 'victim');
  writeFileSync(victim, 'precious\n');
  symlinkSync(victim, log);
  t.regex(logRun({ what: 'x', ms: 1, result: 'ok' }, { dir })!, /cannot write the run log .*bpfcr\.log: ELOOP/);
  rmSync(log);
  linkSync(victim, log);
  t.regex(logRun({ what: 'x', ms: 1, result: 'ok' }, { dir })!, /is not a regular file with one link/);
  t.is(readFileSync(victim, 'utf8'), 'precious\n');
  rmSync(log);
  execFileSync('mkfifo', [log]);
  t.regex(logRun({ what: 'x', ms: 1, result: 'ok' }, { dir })!, /ENXIO|not a regular file/, 'a FIFO without reader: refused at once, not waited on');
  rmSync(log);
  chmodSync(dir, 0o777);
  t.regex(logRun({ what: 'x', ms: 1, result: 'ok' }, { dir })!, /writable by others/);
  chmodSync(dir, 0o700);
  const linkDir = join(root, 'linkdir');
  symlinkSync(dir, linkDir);
  t.regex(logRun({ what: 'x', ms: 1, result: 'ok' }, { dir: linkDir })!, /is not a directory \(a symlink\?\)/);
  // an existing log another mode made: put back to 0600
  writeFileSync(log, 'old line\n', { mode: 0o644 });
  chmodSync(log, 0o644);
  t.is(logRun({ what: 'x', ms: 1, result: 'ok' }, { dir }), undefined);
  t.is(statSync(log).mode & 0o777, 0o600);
  t.is(readFileSync(log, 'utf8').split('\n').length, 3);
});

test('loggedRun: time and outcome of a run, its error logged and rethrown; BPFCR_LOG_DIR= turns the log off', async (t) => {
  const { dir, log } = setup(t);
  const r = await loggedRun('hook poststop', 'c1', async () => ({ maps: 2, entries: 9 }), (x) => ({ ...x, detail: 'saved 2 pin(s)' }), { dir });
  t.deepEqual(r, { maps: 2, entries: 9 });
  await t.throwsAsync(loggedRun('criu-action pre-restore', 'c2', async () => { throw new Error('map id 3: gone'); }, undefined, { dir }), { message: 'map id 3: gone' });
  await loggedRun('hook prestart', 'c3', async () => undefined, undefined, { dir });
  const lines = readFileSync(log, 'utf8').trim().split('\n');
  t.regex(lines[0]!, /what="hook poststop" container=c1 result=ok ms=\d+ maps=2 entries=9 pid=\d+ detail="saved 2 pin\(s\)"$/);
  t.regex(lines[1]!, /what="criu-action pre-restore" container=c2 result=error ms=\d+ pid=\d+ detail="map id 3: gone"$/);
  t.regex(lines[2]!, /container=c3 result="nothing to do"/);
  const off = join(dir, 'off');
  const saved = process.env['BPFCR_LOG_DIR'];
  process.env['BPFCR_LOG_DIR'] = '';
  t.teardown(() => { if (saved === undefined) delete process.env['BPFCR_LOG_DIR']; else process.env['BPFCR_LOG_DIR'] = saved; });
  t.is(logRun({ what: 'x', ms: 1, result: 'ok' }), undefined);
  t.false(existsSync(off));
});

test('the container of a CRIU image dir: podman\'s id from the path behind the /proc fd link, else the directory', (t) => {
  const { root } = setup(t);
  const id = 'ab'.repeat(32);
  const dir = join(root, 'overlay-containers', id, 'userdata', 'checkpoint');
  mkdirSync(dir, { recursive: true });
  const link = join(root, 'fd-link');
  symlinkSync(dir, link);
  t.is(imageDirContainer(link), id.slice(0, 12));
  t.is(imageDirContainer(root), root);
});
