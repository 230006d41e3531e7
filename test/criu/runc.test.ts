/**
 * End to end through real runc 1.1 + CRIU 4 + the bpfcr plugin + hooks/checkpoint: containers
 * holding every content map type are checkpointed and restored, and every map is compared through
 * bpfholder describe (C, get_next_key + lookup, no bpfcr code).
 */
import test from 'ava';
import { execa } from 'execa';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, requireRoot } from '../helpers/env.js';
import {
  bpfcr, bundle, CONTAINER_SPECS, Container, criuLog, ensureCriuSetup, HOOK, stagedEntries, suite, waitGone, type Suite,
} from './runc.js';

let s: Suite;
let mainBundle: string;
const containers: Container[] = [];

test.before(async () => {
  requireRoot();
  await ensureCriuSetup();
  s = await suite();
  mainBundle = await bundle(s, 'all', CONTAINER_SPECS);
});

test.afterEach.always(async () => {
  while (containers.length) await containers.pop()!.destroy();
});

test.after.always(async () => {
  while (containers.length) await containers.pop()!.destroy();
  await s?.cleanup();
});

let seq = 0;
function container(bundleDir = mainBundle, name = `bpfcr-t${process.pid}-${++seq}`): Container {
  const c = new Container(s, name, bundleDir);
  containers.push(c);
  return c;
}

async function describeAll(ids: Map<string, number>): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (const [name, id] of ids) out.set(name, await describe({ id }));
  return out;
}

function imageDir(name: string): string {
  return join(s.dir, `img-${name}-${++seq}`);
}

/** what a failed runc call said, with the end of CRIU's log */
function why(res: object, dir: string, which: 'dump' | 'restore'): string {
  const r = res as { stderr?: unknown; exitCode?: number | null; code?: number | null };
  const log = criuLog(dir, which).split('\n').filter((l) => /Error|bpfcr/.test(l)).slice(-15).join('\n');
  return `exit ${r.exitCode ?? r.code}: ${String(r.stderr ?? '').trim()}\n${log}`;
}

test.serial('checkpoint → bpfcr gc --all → restore: every map recreated from the image, contents identical', async (t) => {
  t.timeout(120_000);
  const c = container();
  await c.start();
  const pid = await c.pid();
  const ids = await c.ids();
  t.is(ids.size, CONTAINER_SPECS.length);
  const before = await describeAll(ids);

  const dir = imageDir('gc');
  const ck = await c.checkpoint(dir);
  t.is(ck.exitCode, 0, why(ck, dir, 'dump'));
  t.true(existsSync(join(dir, 'bpfcr.tar')), 'map archive in the image dir');
  const insp = await bpfcr(s, ['inspect', join(dir, 'bpfcr.tar')]);
  t.is(insp.exitCode, 0, String(insp.stderr));
  const rec = JSON.parse(readFileSync(join(dir, 'bpfcr-checkpoint.json'), 'utf8')) as { key: string; leaveRunning: boolean; objects: unknown[] };
  t.false(rec.leaveRunning);
  t.is(rec.objects.length, CONTAINER_SPECS.length);
  t.true(stagedEntries(s.staging).some((e) => e.startsWith(`${rec.key}/map-`)), 'plugin staged pins');
  t.regex(criuLog(dir, 'dump'), /bpfcr: post-dump: warm worker: ready \d+ ms after node started/, 'post-dump done by the worker started at pre-dump');
  // patch 0006: a freezing cgroup is checked again within milliseconds, not after 100 ms
  t.regex(criuLog(dir, 'dump'), /freezing processes: \d+ attempts done \(after \d+ quick checks\)/);
  t.deepEqual(readdirSync(dir).filter((n) => n.startsWith('.bpfcr-warm')), [], 'worker dir removed');
  await waitGone(pid);

  const gc = await bpfcr(s, ['gc', '--all']);
  t.is(gc.exitCode, 0, gc.stderr);
  t.regex(gc.stdout, new RegExp(`removed checkpoint ${rec.key} \\(${CONTAINER_SPECS.length} pin\\(s\\)`));
  t.deepEqual(stagedEntries(s.staging), []);

  const r = await c.restore(dir);
  t.is(r.code, 0, why(r, dir, 'restore'));
  const after = await c.ids();
  for (const [name, id] of after) t.not(id, ids.get(name), `${name}: a copy, not the original`);
  for (const [name, id] of after) t.deepEqual(await describe({ id }), before.get(name), `map ${name}`);
  t.regex(criuLog(dir, 'restore'), /bpfcr: pre-restore: checkpoint \S+: recreated 17 map\(s\) from bpfcr\.tar \(the staged map/);
  t.deepEqual(stagedEntries(s.staging), [], 'copies unpinned after post-restore');
  t.false(readdirSync('/run/bpfcr').some((n) => n.startsWith(`${rec.key}.restore-`)), 'in-flight marker removed');
});

test.serial('same host: checkpoint → restore hands back the very same maps (zero copy)', async (t) => {
  t.timeout(120_000);
  const c = container();
  await c.start();
  const pid = await c.pid();
  const ids = await c.ids();
  const before = await describeAll(ids);
  const dir = imageDir('same');
  const ck = await c.checkpoint(dir);
  t.is(ck.exitCode, 0, why(ck, dir, 'dump'));
  await waitGone(pid);

  const r = await c.restore(dir);
  t.is(r.code, 0, why(r, dir, 'restore'));
  t.deepEqual(await c.ids(), ids, 'same map ids');
  for (const [name, id] of ids) t.deepEqual(await describe({ id }), before.get(name), `map ${name}`);
  t.regex(criuLog(dir, 'restore'), /reusing 17 staged map\(s\) \(zero copy\)/);
  // hooks/checkpoint ran pre-dump and pre-restore beside CRIU; the plugin waited for each before its first object
  t.regex(criuLog(dir, 'dump'), /bpfcr: pre-dump ran beside CRIU: waited \d+ ms for it/);
  t.regex(criuLog(dir, 'dump'), /bpfcr: post-dump: warm worker: ready/, 'pre-dump\'s Node did post-dump\'s work');
  t.regex(criuLog(dir, 'restore'), /bpfcr: pre-restore ran beside CRIU: waited \d+ ms for it/);
  t.deepEqual(stagedEntries(s.staging), [], 'pins dropped once the restored task holds the maps');

  // and the restored container checkpoints and restores again
  const pid2 = await c.pid();
  const dir2 = imageDir('same2');
  const ck2 = await c.checkpoint(dir2, [], { BPFCR_NO_WARM: '1' });
  t.is(ck2.exitCode, 0, why(ck2, dir2, 'dump'));
  await waitGone(pid2);
  t.notRegex(criuLog(dir2, 'dump'), /warm worker/);
  t.regex(criuLog(dir2, 'dump'), /bpfcr: post-dump: checkpoint \S+: saved 17 map\(s\)/);
  const r2 = await c.restore(dir2);
  t.is(r2.code, 0, why(r2, dir2, 'restore'));
  t.deepEqual(await c.ids(), ids);
});

test.serial('--leave-running, then restore as a second container: original untouched, copy independent', async (t) => {
  t.timeout(120_000);
  const orig = container();
  await orig.start();
  const pid = await orig.pid();
  const ids = await orig.ids();
  const before = await describeAll(ids);
  const dir = imageDir('leave');
  const ck = await orig.checkpoint(dir, ['--leave-running']);
  t.is(ck.exitCode, 0, why(ck, dir, 'dump'));
  t.is(await orig.pid(), pid, 'original still running');
  t.deepEqual(await orig.ids(), ids);
  const rec = JSON.parse(readFileSync(join(dir, 'bpfcr-checkpoint.json'), 'utf8')) as { leaveRunning: boolean };
  t.true(rec.leaveRunning, 'post-dump noticed --leave-running');

  const copy = container(mainBundle, `${orig.name}-copy`);
  copy.maps = orig.maps;
  const r = await copy.restore(dir);
  t.is(r.code, 0, why(r, dir, 'restore'));
  const copyIds = await copy.ids();
  for (const [name, id] of copyIds) t.not(id, ids.get(name), `${name}: the copy has its own map`);
  for (const [name, id] of copyIds) t.deepEqual(await describe({ id }), before.get(name), `copy of ${name}`);
  t.regex(criuLog(dir, 'restore'), /recreated 17 map\(s\) from bpfcr\.tar \(the checkpoint was taken with --leave-running\)/);

  // write into the copy's hash map: the original's map must not change
  const key = ['0xef', '0xbe', '0xad', '0xde'];
  const value = ['1', '2', '3', '4', '5', '6', '7', '8'];
  await execa('bpftool', ['map', 'update', 'id', String(copyIds.get('c_hash')), 'key', ...key, 'value', ...value]);
  const copyHash = await describe({ id: copyIds.get('c_hash')! }) as { count: number };
  t.is(copyHash.count, (before.get('c_hash') as { count: number }).count + 1);
  t.deepEqual(await describe({ id: ids.get('c_hash')! }), before.get('c_hash'), 'original unchanged');
  // and the other way round
  await execa('bpftool', ['map', 'delete', 'id', String(ids.get('c_hash')), 'key', 'hex', '00', '00', '00', '00']);
  t.deepEqual(await describe({ id: copyIds.get('c_hash')! }), copyHash, 'copy unchanged by a write to the original');
  t.is(await orig.pid(), pid);
});

test.serial('a map whose policy is refuse fails runc checkpoint; the container keeps running with its maps', async (t) => {
  t.timeout(120_000);
  const b = await bundle(s, 'refuse', ['hash:r_hash:entries=20,max=32', 'cgroup_array:r_cgs']);
  const c = container(b);
  await c.start();
  const pid = await c.pid();
  const ids = await c.ids();
  const before = await describeAll(ids);
  // through the warm worker started at pre-dump, and without it (BPFCR_NO_WARM: post-dump starts Node)
  for (const env of [{}, { BPFCR_NO_WARM: '1' }] as Record<string, string>[]) {
    const dir = imageDir('refuse');
    const ck = await c.checkpoint(dir, [], env);
    t.not(ck.exitCode, 0, `runc checkpoint must fail (${JSON.stringify(env)})`);
    const log = criuLog(dir, 'dump');
    t.regex(log, /bpfcr criu-action: post-dump: refusing map id \d+ 'r_cgs' \(CGROUP_ARRAY\) held by pid \d+ fd \d+/, log.split('\n').filter((l) => l.includes('bpfcr')).join('\n'));
    const st = await c.state();
    t.is(st?.status, 'running');
    t.is(st?.pid, pid);
    t.deepEqual(await c.ids(), ids);
    for (const [name, id] of ids) t.deepEqual(await describe({ id }), before.get(name), `map ${name}`);
    t.deepEqual(stagedEntries(s.staging), [], 'the failed dump left no pins');
    t.false(existsSync(join(dir, 'bpfcr-checkpoint.json')));
    t.deepEqual(readdirSync(dir).filter((n) => n.startsWith('.bpfcr-warm')), []);
  }
});

test.serial('double action runs are harmless (CRIU runs a script named in an RPC config file twice; and by hand on a copy of the image dir)', async (t) => {
  t.timeout(120_000);
  const c = container();
  await c.start();
  const pid = await c.pid();
  const ids = await c.ids();
  const before = await describeAll(ids);
  const dir = imageDir('twice');
  const ck = await c.checkpoint(dir);
  t.is(ck.exitCode, 0, why(ck, dir, 'dump'));
  // CRIU ran post-dump more than once: exactly one saved the maps
  t.is(criuLog(dir, 'dump').match(/bpfcr: post-dump: checkpoint/g)?.length, 1);
  const copy = join(s.dir, `copy-${++seq}`);
  cpSync(dir, copy, { recursive: true });
  await waitGone(pid);

  // by hand, the "criu" these actions run for is a stand-in process (BPFCR_CRIU_PID), gone at the end
  const criu = spawn('sleep', ['600']);
  t.teardown(() => { criu.kill('SIGKILL'); });
  const env = (action: string) => ({ CRTOOLS_SCRIPT_ACTION: action, CRTOOLS_IMAGE_DIR: copy, BPFCR_CRIU_PID: String(criu.pid) });
  // post-dump again, from scratch, twice (the staged originals keep the maps alive)
  rmSync(join(copy, 'bpfcr.tar'));
  rmSync(join(copy, 'bpfcr-checkpoint.json'));
  const d1 = await bpfcr(s, ['criu-action'], env('post-dump'));
  t.is(d1.exitCode, 0, d1.stderr);
  const manifest = readFileSync(join(copy, 'bpfcr.tar'));
  const recMtime = statSync(join(copy, 'bpfcr-checkpoint.json')).mtimeMs;
  const d2 = await bpfcr(s, ['criu-action'], env('post-dump'));
  t.is(d2.exitCode, 0, d2.stderr);
  t.is(d2.stderr, '', 'second post-dump does nothing');
  t.deepEqual(readFileSync(join(copy, 'bpfcr.tar')), manifest);
  t.is(statSync(join(copy, 'bpfcr-checkpoint.json')).mtimeMs, recMtime);
  const d3 = await execa(HOOK, [], { reject: false, env: { ...process.env, ...s.env, ...env('post-dump') } });
  t.is(d3.exitCode, 0, d3.stderr);

  // the real restore takes the staged originals (zero copy) ...
  const r = await c.restore(dir);
  t.is(r.code, 0, why(r, dir, 'restore'));
  t.deepEqual(await c.ids(), ids);
  t.is(criuLog(dir, 'restore').match(/bpfcr: pre-restore: checkpoint/g)?.length, 1, 'pre-restore did its work once');

  // ... so pre-restore by hand on the copy must make copies, the same ones on every run
  const p1 = await bpfcr(s, ['criu-action'], env('pre-restore'));
  t.is(p1.exitCode, 0, p1.stderr);
  t.regex(p1.stderr, /recreated 17 map\(s\) from bpfcr\.tar \(the staged map \d+ "c_hash" \(type hash\) is gone/);
  const restoreTxt = readFileSync(join(copy, 'bpfcr-restore.txt'), 'utf8');
  const p2 = await bpfcr(s, ['criu-action'], env('pre-restore'));
  t.is(p2.exitCode, 0, p2.stderr);
  const p3 = await execa(HOOK, [], { reject: false, env: { ...process.env, ...s.env, ...env('pre-restore') } });
  t.is(p3.exitCode, 0, p3.stderr);
  t.is(readFileSync(join(copy, 'bpfcr-restore.txt'), 'utf8'), restoreTxt, 'decided once');
  const taken = readFileSync(join(copy, 'bpfcr-taken.txt'), 'utf8').trim().split('\n').map((l) => l.split(' '));
  const newIds = new Map(restoreTxt.trim().split('\n').map((l) => l.split(' ')).map(([criuId, , id]) => [criuId!, Number(id)]));
  for (const m of c.maps) {
    const criuId = taken.find((f) => Number(f[2]) === ids.get(m.name))![0]!;
    const id = newIds.get(criuId)!;
    t.not(id, ids.get(m.name));
    t.deepEqual(await describe({ id }), before.get(m.name), `staged copy of ${m.name}`);
  }
  t.true(stagedEntries(s.staging).length > 0);

  // no criu will finish this restore (the plugin's fini drops a restore's pins): once its "criu" is
  // gone, gc collects the copies of the abandoned restore
  const busy = await bpfcr(s, ['gc', '--all']);
  t.is(busy.exitCode, 0, busy.stderr);
  t.true(stagedEntries(s.staging).length > 0, 'a restore in flight is not collected');
  criu.kill('SIGKILL');
  await waitGone(criu.pid!);
  const gc = await bpfcr(s, ['gc', '--all']);
  t.is(gc.exitCode, 0, gc.stderr);
  t.deepEqual(stagedEntries(s.staging), []);
  t.deepEqual(await c.ids(), ids, 'the running container is unaffected');
});
