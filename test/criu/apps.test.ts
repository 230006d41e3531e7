/**
 * Real libbpf applications (test/fixtures/apps: skeleton apps with mmapped .bss/.data/.rodata, a ring
 * buffer, a hash map, a raw-tracepoint link, a tracepoint perf-event link, their BTF fd, a TCP/UDP
 * socket) through runc checkpoint/restore + the patched CRIU + the bpfcr plugin and action script.
 * Also: an mmapped map whose fd the process closed, a dump that fails late, and a wiped host.
 */
import test from 'ava';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, requireRoot } from '../helpers/env.js';
import { APPS_DIR, ensureApps, ensureTracefs, waitStatus, TRACEFS } from '../helpers/apps.js';
import { bpfFds, counterContinues, counterWarm, ringContinues, ringWarm, sockContinues, sockWarm, tailContinues, tailWarm } from '../helpers/app-checks.js';
import { cgroup2Root } from '../../src/runtime/cgroup.js';
import { bpfcr, bundle, Container, criuLog, ensureCriuSetup, stagedEntries, suite, waitGone, type Suite } from './runc.js';
import { execa } from 'execa';

let s: Suite;
const containers: Container[] = [];
let seq = 0;

test.before(async () => {
  requireRoot();
  await ensureCriuSetup();
  await ensureApps();
  await ensureTracefs();
  s = await suite();
});
test.afterEach.always(async () => {
  while (containers.length) await containers.pop()!.destroy();
});
test.after.always(async () => {
  while (containers.length) await containers.pop()!.destroy();
  await s?.cleanup();
});

/** A container running build/apps/APP with its status (and control) file in a host dir bound at /out. */
async function appContainer(app: 'counter' | 'ringtrace' | 'tailcall' | 'sockwatch', args: string[] = []): Promise<{ c: Container; status: string; control: string; out: string }> {
  const name = `bpfcr-app${process.pid}-${++seq}`;
  const out = join(s.dir, `out-${name}`);
  mkdirSync(out);
  // sockwatch loads its object from a file it keeps open, and attaches to its cgroup v2 (the host's
  // cgroup2 hierarchy bound read-only, as agents that attach to cgroups have it)
  const sockwatch = app === 'sockwatch' ? ['--object', '/bin/sockwatch.bpf.o', '--cgroup-root', '/host-cgroup2'] : [];
  const b = await bundle(s, name, [], [`/bin/${app}`, '--status', '/out/status', ...(app === 'counter' ? ['--control', '/out/control'] : []), ...sockwatch, ...args], {
    files: [join(APPS_DIR, app), ...(app === 'sockwatch' ? [join(APPS_DIR, 'sockwatch.bpf.o')] : [])],
    mounts: [
      { destination: '/out', source: out, type: 'bind', options: ['rbind', 'rw'] },
      { destination: TRACEFS, source: TRACEFS, type: 'bind', options: ['rbind', 'rw'] },
      ...(app === 'sockwatch' ? [{ destination: '/host-cgroup2', source: cgroup2Root(), type: 'bind', options: ['rbind', 'ro'] }] : []),
    ],
  });
  const c = new Container(s, name, b);
  containers.push(c);
  await c.startPlain();
  return { c, status: join(out, 'status'), control: join(out, 'control'), out };
}

function why(res: object, dir: string, which: 'dump' | 'restore'): string {
  const r = res as { stderr?: unknown; exitCode?: number | null; code?: number | null };
  const log = criuLog(dir, which).split('\n').filter((l) => /Error|bpfcr/.test(l)).slice(-20).join('\n');
  return `exit ${r.exitCode ?? r.code}: ${String(r.stderr ?? '').trim()}\n${log}`;
}

const imageDir = (tag: string): string => join(s.dir, `img-${tag}-${++seq}`);

test.serial('counter app (globals, hash map, raw_tp link, tracepoint perf link, BTF fd, TCP+UDP sockets): runc checkpoint → restore, same host', async (t) => {
  t.timeout(180_000);
  const port = 20000 + (process.pid % 10000);
  const { c, status, control } = await appContainer('counter', ['--listen', String(port)]);
  const before = await counterWarm(status);
  const pid = await c.pid();
  const fds = bpfFds(pid);
  t.deepEqual(Object.values(fds).sort(), ['btf', 'link', 'link', 'map', 'map', 'map', 'map', 'perf', 'prog', 'prog'], JSON.stringify(fds));
  const dir = imageDir('counter');
  const ck = await c.checkpoint(dir, ['--tcp-established']);
  t.is(ck.exitCode, 0, why(ck, dir, 'dump'));
  const log = criuLog(dir, 'dump');
  t.regex(log, /bpfcr: pid \d+: mapping 0x[0-9a-f]+-0x[0-9a-f]+ \(offset 0\) is map \d+/, 'the plugin claimed the mmapped maps');
  const taken = readFileSync(join(dir, 'bpfcr-taken.txt'), 'utf8');
  t.is((taken.match(/^vma map /gm) ?? []).length, 3, `.bss, .data, .rodata mapped:\n${taken}`);
  t.regex(taken, /^\d+ btf \d+ - -$/m, 'the BTF fd');
  t.regex(taken, /^\d+ perf \d+ sys_enter_getppid -$/m, 'the perf event fd, with its tracepoint');
  await waitGone(pid);
  const last = await waitStatus(status, () => true, 1000, 'the last status before the dump');

  const r = await c.restore(dir);
  t.is(r.code, 0, why(r, dir, 'restore'));
  t.regex(criuLog(dir, 'restore'), /reusing \d+ staged map\(s\) \(zero copy\)/);
  await counterContinues(t, status, control, last, 'runc restore');
  t.deepEqual(bpfFds(await c.pid()), fds, 'every map, program, link, BTF and perf-event fd is back at its number');
  // (runc gives the container a network namespace with lo down: podman's suite connects to the listener)
  t.deepEqual(stagedEntries(s.staging), [], 'nothing left staged');
  t.true(before['hits']! <= last['hits']!);
});

test.serial('ringtrace app (ring buffer consumer + producer pages, tp_btf links, epoll on the ring): runc checkpoint → restore, same host', async (t) => {
  t.timeout(180_000);
  const { c, status } = await appContainer('ringtrace');
  await ringWarm(status);
  const pid = await c.pid();
  const dir = imageDir('ring');
  const ck = await c.checkpoint(dir);
  t.is(ck.exitCode, 0, why(ck, dir, 'dump'));
  const taken = readFileSync(join(dir, 'bpfcr-taken.txt'), 'utf8');
  t.is((taken.match(/^vma map /gm) ?? []).length, 2, `the ring buffer and .bss, each once:\n${taken}`);
  await waitGone(pid);
  const last = await waitStatus(status, () => true, 1000, 'the last status');
  const r = await c.restore(dir);
  t.is(r.code, 0, why(r, dir, 'restore'));
  await ringContinues(t, status, last, 'runc restore');
  t.deepEqual(stagedEntries(s.staging), []);
});

/** runc checkpoint of `c` into a new image dir, which it returns; asserts success, waits until the task is gone. */
async function checkpointed(t: import('ava').ExecutionContext, c: Container, tag: string): Promise<string> {
  const pid = await c.pid();
  const dir = imageDir(tag);
  const ck = await c.checkpoint(dir);
  t.is(ck.exitCode, 0, why(ck, dir, 'dump'));
  await waitGone(pid);
  return dir;
}

/** Is any of these program/link ids still alive in the kernel? */
async function alive(kind: 'prog' | 'link', ids: number[]): Promise<number[]> {
  const r = await execa('bpftool', [kind, 'show', '--json'], { reject: false });
  const live = new Set((JSON.parse(r.stdout || '[]') as { id: number }[]).map((x) => x.id));
  return ids.filter((id) => live.has(id));
}

/** Wipe the host after a dump: `bpfcr gc --all`, then wait until none of the checkpoint's programs and links is left in the kernel. */
async function wipe(t: import('ava').ExecutionContext, dir: string): Promise<void> {
  const rec = JSON.parse(readFileSync(join(dir, 'bpfcr-checkpoint.json'), 'utf8')) as { objects: { kind: string; id: number }[] };
  const gc = await bpfcr(s, ['gc', '--all']);
  t.is(gc.exitCode, 0, gc.stderr);
  t.deepEqual(stagedEntries(s.staging), []);
  const ids = (k: string): number[] => rec.objects.filter((o) => o.kind === k).map((o) => o.id);
  for (let i = 0; i < 100 && ((await alive('prog', ids('prog'))).length || (await alive('link', ids('link'))).length); i++) await new Promise((r) => setTimeout(r, 50));
  t.deepEqual(await alive('prog', ids('prog')), [], 'no program of the app left in the kernel');
  t.deepEqual(await alive('link', ids('link')), [], 'no link of the app left in the kernel');
}

test.serial('counter app migrates across a wiped host (bpfcr gc --all): maps from the image, programs reloaded from the embedded object, links re-created', async (t) => {
  t.timeout(180_000);
  const { c, status, control } = await appContainer('counter');
  await counterWarm(status);
  const fds = bpfFds(await c.pid());
  const dir = await checkpointed(t, c, 'wiped');
  const last = await waitStatus(status, () => true, 1000, 'the last status before the dump');
  const ins = await bpfcr(s, ['inspect', join(dir, 'bpfcr.tar'), '--json']);
  t.is(ins.exitCode, 0, ins.stderr);
  const j = JSON.parse(ins.stdout) as { ok: boolean; manifest: { maps: { name: string; entries: number; frozen: boolean }[]; btf: number[] } };
  t.true(j.ok);
  const names = j.manifest.maps.map((m) => m.name);
  for (const re of [/\.bss$/, /\.data$/, /\.rodata$/, /^counts$/]) t.true(names.some((n) => re.test(n)), `${re.source} in the archive: ${names.join(', ')}`);
  t.true(j.manifest.maps.find((m) => m.name.endsWith('.rodata'))!.frozen, '.rodata is frozen');
  t.true(j.manifest.btf.length >= 1, "the app's BTF is in the archive");
  // inspect on the image dir: programs and links with their targets and their object, stored in the archive
  const progs = await bpfcr(s, ['inspect', dir]);
  t.is(progs.exitCode, 0, progs.stderr);
  t.regex(progs.stdout, /on_sys_enter\s+raw_tracepoint\s+[0-9a-f]{16}\s+raw_tp sys_enter\s+in archive; embedded in \/proc\/\d+\/exe/);
  t.regex(progs.stdout, /on_getppid\s+tracepoint\s+[0-9a-f]{16}\s+perf_event tracepoint sys_enter_getppid\s+in archive/);
  t.regex(progs.stdout, /2 program\(s\), 2 link\(s\); 2 with their BPF object found/);
  await wipe(t, dir);
  const r = await c.restore(dir);
  t.is(r.code, 0, why(r, dir, 'restore'));
  t.regex(criuLog(dir, 'restore'), /reloaded 2 program\(s\) and re-created 2 link\(s\) from 1 BPF object/);
  await counterContinues(t, status, control, last, 'runc restore on a wiped host');
  t.deepEqual(bpfFds(await c.pid()), fds, 'every map, program, link, BTF and perf-event fd is back at its number');
  t.deepEqual(stagedEntries(s.staging), [], 'nothing left staged');
});

test.serial('ringtrace app migrates across a wiped host: ring buffer and tp_btf links re-created, events flow again', async (t) => {
  t.timeout(180_000);
  const { c, status } = await appContainer('ringtrace');
  await ringWarm(status);
  const dir = await checkpointed(t, c, 'ring-wiped');
  const last = await waitStatus(status, () => true, 1000, 'the last status');
  await wipe(t, dir);
  const r = await c.restore(dir);
  t.is(r.code, 0, why(r, dir, 'restore'));
  await ringContinues(t, status, last, 'runc restore on a wiped host');
  t.deepEqual(stagedEntries(s.staging), []);
});

test.serial('tailcall app migrates across a wiped host: the prog_array is re-filled with the reloaded tail-call target', async (t) => {
  t.timeout(180_000);
  const { c, status } = await appContainer('tailcall');
  const before = await tailWarm(status);
  const dir = await checkpointed(t, c, 'tail-wiped');
  const rec = JSON.parse(readFileSync(join(dir, 'bpfcr-checkpoint.json'), 'utf8')) as { objects: { kind: string; name?: string; progArray?: [number, number][] }[] };
  t.is(rec.objects.find((o) => o.name === 'jmp')?.progArray?.length, 1, 'slot 1 of jmp recorded');
  await wipe(t, dir);
  const r = await c.restore(dir);
  t.is(r.code, 0, why(r, dir, 'restore'));
  await tailContinues(t, status, before, 'runc restore on a wiped host');
  t.deepEqual(stagedEntries(s.staging), []);
});

test.serial('sockwatch app (object loaded from an open .bpf.o file, cgroup link on its own cgroup) migrates across a wiped host: the cgroup link is re-created on the container\'s cgroup', async (t) => {
  t.timeout(180_000);
  const { c, status } = await appContainer('sockwatch');
  const before = await sockWarm(status);
  const dir = await checkpointed(t, c, 'sock-wiped');
  const rec = JSON.parse(readFileSync(join(dir, 'bpfcr-checkpoint.json'), 'utf8')) as { objects: { kind: string; funcs?: string[]; object?: { file: string }; target?: { kind: string; place?: { inContainer?: string } } }[] };
  const link = rec.objects.find((o) => o.kind === 'link');
  t.deepEqual(link?.target?.place?.inContainer, '', 'the link is on the container\'s own cgroup, recorded relative to it');
  t.is(link?.object?.file, '/bin/sockwatch.bpf.o', 'the object found through the open fd');
  t.deepEqual(link?.funcs, ['on_sock_create'], 'BTF func info recorded (full name)');
  const ins = await bpfcr(s, ['inspect', dir]);
  t.regex(ins.stdout, /on_sock_create\s+cgroup_sock\s+[0-9a-f]{16}\s+cgroup cgroup_inet_sock_create <container>\s+in archive; open file \/bin\/sockwatch\.bpf\.o/, ins.stdout);
  const last = await waitStatus(status, () => true, 1000, 'the last status');
  await wipe(t, dir);
  const r = await c.restore(dir);
  t.is(r.code, 0, why(r, dir, 'restore'));
  t.regex(criuLog(dir, 'restore'), /reloaded 1 program\(s\) and re-created 1 link\(s\) from 1 BPF object/);
  await sockContinues(t, status, last, 'runc restore on a wiped host');
  const pid = await c.pid();
  const cg = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'))!.slice(3);
  const att = await execa('bpftool', ['cgroup', 'show', join(cgroup2Root(), cg), '--json']);
  t.regex(att.stdout, /"attach_type":"(cgroup_inet_sock_create|sock_create)".*"name":"on_sock_create"/, `the program is attached to the restored container's cgroup ${cg}`);
  t.true(before['socks']! > 0);
  t.deepEqual(stagedEntries(s.staging), []);
});

test.serial('a link whose target is missing on the restoring host refuses the restore in one line naming link, program and target; nothing staged is left', async (t) => {
  t.timeout(180_000);
  const { c, status } = await appContainer('counter');
  await counterWarm(status);
  const dir = await checkpointed(t, c, 'no-tracefs');
  await wipe(t, dir);
  // the tracepoint perf link needs tracefs to find its tracepoint again: without it, no target
  await execa('umount', [TRACEFS]);
  try {
    const r = await c.restore(dir);
    t.not(r.code, 0, 'restore refused');
    t.regex(criuLog(dir, 'restore'), /bpfcr criu-action: pre-restore: cannot re-create link \d+ \(perf, program \d+\) of program "on_getppid": tracepoint sys_enter_getppid is not in tracefs \(mount -t tracefs tracefs \/sys\/kernel\/tracing\)/, why(r, dir, 'restore'));
    // pre-restore ran beside CRIU: the plugin, waiting for it before the first object, failed the restore with its reason
    t.regex(criuLog(dir, 'restore'), /bpfcr: ERROR: pre-restore failed: cannot re-create link \d+ \(perf, program \d+\) of program "on_getppid"/);
  } finally {
    await ensureTracefs();
  }
  t.deepEqual(stagedEntries(s.staging), [], 'the programs reloaded before the refusal, and their copies dir, are gone');
});

test.serial('a map mmapped by a process that closed its fd is carried: checkpoint → gc --all → restore maps a copy with the same contents', async (t) => {
  t.timeout(120_000);
  const name = `bpfcr-mm${process.pid}-${++seq}`;
  const b = await bundle(s, name, ['array:mm_only:mmapable=1,mmap=2,max=64,entries=64', 'hash:mm_btf:btf=1,keepbtf=1,entries=7']);
  const c = new Container(s, name, b);
  containers.push(c);
  await c.start();
  const pid = await c.pid();
  const mm = JSON.parse(c.lines.find((l) => l.includes('"name":"mm_only","type"'))!) as { id: number };
  const addr = (JSON.parse(c.lines.find((l) => l.includes('"mmap"'))!) as { mmap: string }).mmap;
  const before = await describe({ id: mm.id });
  const dir = imageDir('mmonly');
  const ck = await c.checkpoint(dir);
  t.is(ck.exitCode, 0, why(ck, dir, 'dump'));
  await waitGone(pid);
  t.is((await bpfcr(s, ['gc', '--all'])).exitCode, 0);
  const r = await c.restore(dir);
  t.is(r.code, 0, why(r, dir, 'restore'));
  const pid2 = await c.pid();
  const vma = readFileSync(`/proc/${pid2}/maps`, 'utf8').split('\n').find((l) => l.startsWith(addr.replace(/^0x/, '')));
  t.truthy(vma, `the restored process maps a BPF map at ${addr}`);
  t.regex(vma ?? '', /rw-s .*anon_inode:bpf-map$/);
  const list = JSON.parse((await execa('bpftool', ['map', 'list', '--json'])).stdout) as { id: number; name: string }[];
  const copy = list.filter((m) => m.name === 'mm_only' && m.id !== mm.id);
  t.is(copy.length, 1, 'one new mm_only map');
  t.deepEqual(await describe({ id: copy[0]!.id }), before, 'same contents');
});

test.serial('a dump that fails after the plugin staged the maps leaves nothing under the staging root; the container keeps running', async (t) => {
  t.timeout(120_000);
  const name = `bpfcr-fail${process.pid}-${++seq}`;
  const b = await bundle(s, name, [], ['/bin/bpfholder', 'hold', '--io-uring', 'hash:f_hash:entries=5', 'array:f_mm:mmapable=1,mmap=1,max=8,entries=8']);
  const c = new Container(s, name, b);
  containers.push(c);
  await c.start();
  const dir = imageDir('fail');
  const ck = await c.checkpoint(dir);
  t.not(ck.exitCode, 0, 'the dump fails (io_uring fd)');
  const log = criuLog(dir, 'dump');
  t.regex(log, /bpfcr: pid \d+: mapping \S+ \(offset 0\) is map \d+ \(type 2\), pinned at /, 'the plugin had staged the mapped map before CRIU failed');
  t.regex(log, /bpfcr: dump failed: removed [1-9]\d* staged pin\(s\)/);
  t.deepEqual(stagedEntries(s.staging).filter((e) => e.includes('/')), [], 'no pin left');
  t.is((await c.state())?.status, 'running');
});
