/**
 * The CRIU plugin owns what it stages: at the end of a restore (fini) it runs the cleanup list
 * pre-restore wrote, only when that list was written for this very restore (owner = this criu's pid
 * and start time), only inside the checkpoint's staging dir on a bpffs (and its in-flight marker),
 * and after a failed restore only the copies that restore made. Run through a harness that stands
 * in for criu (test/criu/plugin-harness.c) against the real plugin, real pins on a real bpffs.
 */
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { requireRoot, ROOT } from '../helpers/env.js';
import { ensureCriuSetup, suite, type Suite } from './runc.js';

const PLUGIN = join(ROOT, 'build/bpfcr_plugin.so');
const HARNESS = join(ROOT, 'build/plugin-harness');
const STAGE_RESTORE = 2;
let s: Suite;

test.before(async () => {
  requireRoot();
  await ensureCriuSetup(); // builds the plugin against the patched CRIU header
  const inc = '/opt/bpfcr/criu/include/criu';
  const cc = await execa('cc', ['-O2', '-Wall', '-rdynamic', `-I${inc}`, '-o', HARNESS, join(ROOT, 'test/criu/plugin-harness.c'), '-ldl'], { reject: false });
  if (cc.exitCode !== 0) throw new Error(`cannot build the plugin harness (needs gcc and ${inc}/criu-plugin.h: run sudo npm test): ${cc.stderr}`);
  s = await suite();
});
test.after.always(async () => { await s?.cleanup(); });

let seq = 0;
interface Setup { img: string; run: string; keyDir: string; pins: { original: string; vma: string }; victim: string }

/** A staged checkpoint on the suite's bpffs: an original pin, a vma pin, a run dir, a victim file. */
async function staged(t: ExecutionContext): Promise<Setup> {
  const key = `k${process.pid}x${++seq}`;
  const img = join(s.dir, `img-${key}`);
  const run = join(s.dir, `run-${key}`);
  mkdirSync(img);
  mkdirSync(run);
  const keyDir = join(s.staging, key);
  mkdirSync(keyDir, { recursive: true });
  const pins = { original: join(keyDir, 'map-3'), vma: join(keyDir, 'vma-7') };
  for (const p of Object.values(pins)) await execa('bpftool', ['map', 'create', p, 'type', 'array', 'key', '4', 'value', '8', 'entries', '1', 'name', 'cleanup_t']);
  const victim = join(s.dir, `victim-${key}`);
  writeFileSync(victim, 'keep me');
  writeFileSync(join(img, 'bpfcr-key'), `${key}\n`);
  writeFileSync(join(img, 'bpfcr-staging'), `${s.staging}\n`);
  t.teardown(() => execa('rm', ['-rf', keyDir]).then(() => undefined, () => undefined));
  return { img, run, keyDir, pins, victim };
}

/** Run the plugin's init+fini(RESTORE, ret) as criu pid P: `list(P)` gives the cleanup list; owner names P unless told otherwise. */
async function finiRestore(x: Setup, ret: number, list: (pid: number) => string | Promise<string>, owner?: (pid: number, token: string) => string): Promise<string> {
  const child = spawn(HARNESS, [PLUGIN, x.img, String(STAGE_RESTORE), String(ret)], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, BPFCR_RUN_DIR: x.run } });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const pid = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (l) => resolve(Number(l)));
    child.once('exit', (c) => reject(new Error(`harness exited ${c}: ${stderr}`)));
  });
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const token = `${pid} ${st.slice(st.lastIndexOf(')') + 2).split(' ')[19]}`;
  writeFileSync(join(x.img, 'bpfcr-restore.owner'), `${owner ? owner(pid, token) : token}\n`);
  writeFileSync(join(x.img, 'bpfcr-cleanup.txt'), await list(pid));
  const code = await new Promise<number | null>((resolve) => { child.once('exit', resolve); child.stdin!.end('go\n'); });
  if (code !== 0) throw new Error(`harness exited ${code}: ${stderr}`);
  return stderr;
}

/**
 * RESTORE_EXT_FILE(fileId) through the harness as criu pid P, after `prepare()`, with bpfcr-restore.owner
 * naming P (as pre-restore signs it) unless `owner` is given.
 */
async function extFile(x: Setup, fileId: number, prepare: () => void, owner?: string): Promise<{ out: string; err: string }> {
  const child = spawn(HARNESS, [PLUGIN, x.img, String(STAGE_RESTORE), '0', String(fileId)], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, BPFCR_RUN_DIR: x.run } });
  let stderr = '';
  const lines: string[] = [];
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const rl = createInterface({ input: child.stdout! });
  const pid = await new Promise<number>((resolve, reject) => {
    rl.on('line', (l) => { if (lines.push(l) === 1) resolve(Number(l)); });
    child.once('exit', (c) => reject(new Error(`harness exited ${c}: ${stderr}`)));
  });
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  writeFileSync(join(x.img, 'bpfcr-restore.owner'), `${owner ?? `${pid} ${st.slice(st.lastIndexOf(')') + 2).split(' ')[19]}`}\n`);
  prepare();
  await new Promise((resolve) => { child.once('exit', resolve); child.stdin!.end('go\n'); });
  return { out: lines.slice(1).join('\n'), err: stderr };
}

/** Copies pre-restore made for criu `pid`, and its marker. */
async function copiesFor(x: Setup, pid: number): Promise<{ dir: string; pin: string; marker: string }> {
  const dir = join(x.keyDir, `r${pid}`);
  mkdirSync(dir);
  const pin = join(dir, 'map-3');
  await execa('bpftool', ['map', 'create', pin, 'type', 'array', 'key', '4', 'value', '8', 'entries', '1', 'name', 'cleanup_c']);
  const marker = join(x.run, `${x.keyDir.split('/').pop()}.restore-${pid}`);
  writeFileSync(marker, `${pid} 1 copy\n`);
  return { dir, pin, marker };
}

test.serial('after a restore the plugin drops the listed pins, the marker and the key dir; a path outside the staging dir is refused', async (t) => {
  const x = await staged(t);
  let copies: Awaited<ReturnType<typeof copiesFor>> | undefined;
  const err = await finiRestore(x, 0, async (pid) => {
    copies = await copiesFor(x, pid);
    return [`f ${x.pins.original}`, `f ${x.pins.vma}`, `f ${x.victim}`, `f ${join(x.keyDir, `r${pid}`, 'map-3')}`, `d ${join(x.keyDir, `r${pid}`)}`, `d ${x.keyDir}`, `f ${join(x.run, `${x.keyDir.split('/').pop()}.restore-${pid}`)}`, ''].join('\n');
  });
  t.truthy(copies);
  t.regex(err, new RegExp(`refusing to remove ${x.victim}: outside this checkpoint's staging dir`));
  t.true(existsSync(x.victim), 'the victim survives');
  for (const p of [x.pins.original, x.pins.vma, copies!.pin, copies!.marker]) t.false(existsSync(p), `${p} removed`);
  t.false(existsSync(x.keyDir), 'the empty key dir removed');
  t.false(existsSync(join(x.img, 'bpfcr-cleanup.txt')), 'the list is consumed');
  t.regex(err, /bpfcr: after the restore: removed 3 staged pin\(s\)/);
});

test.serial('after a failed restore only the copies it made (and its marker) go: the staged originals stay for the next try', async (t) => {
  const x = await staged(t);
  let copies: Awaited<ReturnType<typeof copiesFor>> | undefined;
  const err = await finiRestore(x, -1, async (pid) => {
    copies = await copiesFor(x, pid);
    return [`f ${join(x.keyDir, `r${pid}`, 'map-3')}`, `d ${join(x.keyDir, `r${pid}`)}`, `f ${x.pins.original}`, `d ${x.keyDir}`, `f ${join(x.run, `${x.keyDir.split('/').pop()}.restore-${pid}`)}`, ''].join('\n');
  });
  t.false(existsSync(copies!.pin));
  t.false(existsSync(copies!.dir));
  t.false(existsSync(copies!.marker));
  t.true(existsSync(x.pins.original), 'the staged original stays');
  t.true(existsSync(x.pins.vma));
  t.regex(err, /after a failed restore: removed 1 staged pin\(s\)/);
});

test.serial('a cleanup list not written for this restore (an imported image, another criu) is never acted upon', async (t) => {
  const x = await staged(t);
  for (const owner of [(pid: number) => `${pid} 1`, () => '1 1', () => '']) {
    const err = await finiRestore(x, 0, () => `f ${x.pins.original}\nd ${x.keyDir}\n`, owner);
    t.regex(err, /bpfcr-cleanup\.txt in the image dir was not written by this restore's pre-restore: not acting on it/);
    t.true(existsSync(x.pins.original), 'nothing removed');
  }
});

test.serial('RESTORE_EXT_FILE hands back only the kind of object the dump took for that file', async (t) => {
  const x = await staged(t);
  const id = (JSON.parse((await execa('bpftool', ['map', 'show', 'pinned', x.pins.original, '--json'])).stdout) as { id: number }).id;
  writeFileSync(join(x.img, 'bpfcr-taken.txt'), `5 map ${id} 2 ${x.pins.original}\n6 btf 99 - -\n`);
  const run = (restoreTxt: string, fileId: number, owner?: string): Promise<{ out: string; err: string }> =>
    extFile(x, fileId, () => writeFileSync(join(x.img, 'bpfcr-restore.txt'), restoreTxt), owner);
  const ok = await run(`5 map ${id}\n`, 5);
  t.regex(ok.out, /^fd \d+$/, ok.err);
  // lines this restore's pre-restore did not sign (an imported image, another criu) are not used
  for (const owner of ['1 1', '']) {
    const forged = await run(`5 map ${id}\n`, 5, owner);
    t.regex(forged.out, /^error -95$/);
    t.regex(forged.err, /bpfcr-restore\.txt in the image dir was not written by this restore's pre-restore \(bpfcr-restore\.owner\): not using it/);
  }
  // (checked before any object is opened: the id need not exist)
  const bad = await run('5 prog 1\n', 5);
  t.regex(bad.out, /^error -22$/);
  t.regex(bad.err, /file 5: bpfcr-restore\.txt says prog, but the dump took map for it \(bpfcr-taken\.txt\): refusing/);
  const noBtf = await run('7 btf-load 99\n', 7);
  t.regex(noBtf.out, /^error -22$/);
  t.regex(noBtf.err, /file 7: bpfcr-restore\.txt says btf-load, but the dump took nothing for it/);
});
