/**
 * Programs and links through runc + CRIU: they cannot be recreated from a checkpoint, so they come
 * back only as the staged objects themselves (same host and boot, pins alive); otherwise the
 * restore fails with a message naming the program/link and why.
 */
import test from 'ava';
import { execa } from 'execa';
import { copyFileSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, describe, requireRoot } from '../helpers/env.js';
import { bpfcr, bundle, Container, criuLog, ensureCriuSetup, stagedEntries, suite, waitGone, type Suite } from './runc.js';

let s: Suite;
let b: string;
const containers: Container[] = [];
let seq = 0;

interface Obj { kind: 'map' | 'prog' | 'link'; name: string; fd: number; id: number }

test.before(async () => {
  requireRoot();
  await ensureCriuSetup();
  s = await suite();
  const bin = join(s.dir, 'progholder');
  await execa('cc', ['-O2', '-static', '-Wall', '-o', bin, join(ROOT, 'test/criu/progholder.c')]);
  b = await bundle(s, 'progs', [], ['/bin/progholder']);
  copyFileSync(bin, join(b, 'rootfs/bin/progholder'));
});

test.afterEach.always(async () => {
  while (containers.length) await containers.pop()!.destroy();
});

test.after.always(async () => {
  while (containers.length) await containers.pop()!.destroy();
  await s?.cleanup();
});

function container(name = `bpfcr-p${process.pid}-${++seq}`): Container {
  const c = new Container(s, name, b);
  containers.push(c);
  return c;
}

function objects(c: Container): Obj[] {
  return c.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Obj);
}

/** kind:name → id, from the container init's fdinfo (fd numbers survive CRIU) */
async function liveIds(c: Container, objs: Obj[]): Promise<Record<string, number>> {
  const pid = await c.pid();
  const out: Record<string, number> = {};
  for (const o of objs) {
    readlinkSync(`/proc/${pid}/fd/${o.fd}`);
    const m = new RegExp(`^${o.kind}_id:\\s*(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/fdinfo/${o.fd}`, 'utf8'));
    out[`${o.kind}:${o.name}`] = Number(m?.[1]);
  }
  return out;
}

function logLines(dir: string, which: 'dump' | 'restore'): string {
  return criuLog(dir, which).split('\n').filter((l) => /bpfcr|Error/.test(l)).slice(-12).join('\n');
}

test.serial('same host: programs, a link and a map come back as the very same objects', async (t) => {
  const c = container();
  await c.start();
  const objs = objects(c);
  t.deepEqual(objs.map((o) => o.kind), ['map', 'prog', 'prog', 'link']);
  const ids = await liveIds(c, objs);
  const pid = await c.pid();
  const dir = join(s.dir, `img-${++seq}`);
  const ck = await c.checkpoint(dir);
  t.is(ck.exitCode, 0, `${ck.stderr}\n${logLines(dir, 'dump')}`);
  const rec = JSON.parse(readFileSync(join(dir, 'bpfcr-checkpoint.json'), 'utf8')) as { objects: { kind: string; name?: string; tag?: string; mapIds?: number[]; progId?: number }[] };
  const sock = rec.objects.find((o) => o.name === 'p_sock')!;
  t.regex(sock.tag ?? '', /^[0-9a-f]{16}$/);
  t.deepEqual(sock.mapIds, [], 'program map ids recorded (bpftool)');
  t.is(rec.objects.find((o) => o.kind === 'link')!.progId, ids['prog:p_rawtp']);
  await waitGone(pid);

  const r = await c.restore(dir);
  t.is(r.code, 0, `${r.stderr}\n${logLines(dir, 'restore')}`);
  t.deepEqual(await liveIds(c, objs), ids);
  t.deepEqual(stagedEntries(s.staging), []);
});

test.serial('restore fails, naming the program, when its staged pin is gone (bpfcr gc) and it has no BPF ELF object to reload it from', async (t) => {
  const c = container();
  await c.start();
  const objs = objects(c);
  const pid = await c.pid();
  const ids = await liveIds(c, objs);
  const dir = join(s.dir, `img-${++seq}`);
  t.is((await c.checkpoint(dir)).exitCode, 0, logLines(dir, 'dump'));
  await waitGone(pid);
  t.is((await bpfcr(s, ['gc', '--all'])).exitCode, 0);
  const r = await c.restore(dir);
  t.not(r.code, 0);
  // progholder loads its programs from raw instructions: no BPF ELF object to reload them from
  t.regex(criuLog(dir, 'restore'), new RegExp(`bpfcr criu-action: pre-restore: cannot restore program ${ids['prog:p_sock']} "p_sock" \\(type 1, tag [0-9a-f]{16}\\): the staged program cannot be handed back \\(.* is gone \\(\\S+: bpfcr gc.*\\), and no BPF ELF object with a function named "p_sock" was found in the checkpointed processes' executables, mapped or open files`));
  t.regex(criuLog(dir, 'restore'), new RegExp(`bpfcr inspect ${dir}/bpfcr\\.tar, or bpfcr inspect on the podman export\\)`), 'points at the map data that survives');
  t.deepEqual(stagedEntries(s.staging), [], 'the failed restore left nothing staged');
});

test.serial('restore on "another host" fails naming the program; the checkpoint stays restorable here', async (t) => {
  const c = container();
  await c.start();
  const objs = objects(c);
  const pid = await c.pid();
  const ids = await liveIds(c, objs);
  const dir = join(s.dir, `img-${++seq}`);
  t.is((await c.checkpoint(dir)).exitCode, 0, logLines(dir, 'dump'));
  await waitGone(pid);
  const recPath = join(dir, 'bpfcr-checkpoint.json');
  const orig = readFileSync(recPath, 'utf8');
  const rec = JSON.parse(orig) as { host: { bootId: string; hostname: string } };
  rec.host = { bootId: '00000000-0000-0000-0000-000000000000', hostname: 'elsewhere' };
  writeFileSync(recPath, JSON.stringify(rec));
  const r = await c.restore(dir);
  t.not(r.code, 0);
  t.regex(criuLog(dir, 'restore'), new RegExp(`cannot restore program ${ids['prog:p_sock']} "p_sock" \\(type 1, tag [0-9a-f]{16}\\): the staged program cannot be handed back \\(the checkpoint was taken on host elsewhere, this is .*\\), and no BPF ELF object with a function named "p_sock"`));

  writeFileSync(recPath, orig);
  const r2 = await c.restore(dir);
  t.is(r2.code, 0, `${r2.stderr}\n${logLines(dir, 'restore')}`);
  t.deepEqual(await liveIds(c, objs), ids);
});

test.serial('--leave-running: the copy gets a new map and the (map-less) programs handed back', async (t) => {
  const c = container();
  await c.start();
  const objs = objects(c);
  const ids = await liveIds(c, objs);
  const dir = join(s.dir, `img-${++seq}`);
  t.is((await c.checkpoint(dir, ['--leave-running'])).exitCode, 0, logLines(dir, 'dump'));
  const copy = container(`${c.name}-copy`);
  copy.lines = c.lines;
  const r = await copy.restore(dir);
  t.is(r.code, 0, `${r.stderr}\n${logLines(dir, 'restore')}`);
  const copyIds = await liveIds(copy, objs);
  t.not(copyIds['map:p_map'], ids['map:p_map']);
  t.deepEqual(await describe({ id: copyIds['map:p_map']! }), await describe({ id: ids['map:p_map']! }));
  for (const k of ['prog:p_sock', 'prog:p_rawtp', 'link:sys_enter']) t.is(copyIds[k], ids[k], k);
  t.deepEqual(await liveIds(c, objs), ids, 'original untouched');
});
