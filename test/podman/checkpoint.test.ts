/**
 * podman container checkpoint --export / restore --import end to end, with real podman + runc +
 * CRIU + the bpfcr plugin and action script (installed copy = this checkout, see
 * helpers/podman-criu.ts) and this checkout's OCI hooks (hooks.d dir):
 *   - a container whose processes hold a map of every content type the engine carries (as fds)
 *     and which pins maps under its io.bpfcr.pins bind mount (pinned only, and pinned + held):
 *     checkpoint --export → rm -f → bpfcr gc --all → host pins wiped → restore --import: every
 *     map identical (bpfholder describe, from the host: held maps through the restored
 *     processes' /proc/PID/fdinfo map ids; pins through the host side of the bind mount);
 *   - `bpfcr inspect` of the export lists both archives;
 *   - a container with no annotation and no maps: checkpoint/restore work, the hooks say nothing.
 */
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpfcr, describe, freshBpffs, requireRoot, runLogFromNow, tempDir } from '../helpers/env.js';
import { describeHeld, heldMapIds, processTree, requireInstalledCheckout } from '../helpers/podman-criu.js';
import { cleanupContainers, makeHooksDir, Podman, requirePodman, runContainer, testImage } from '../helpers/podman.js';
import { CONTAINER_SPECS } from '../criu/runc.js';

/** A fresh bpffs with an app/ dir for the container's pins, a hooks dir, a work dir, and podman
 * using those hooks — all removed when the test ends. */
async function setup(t: ExecutionContext, prefix = 'bpfcr-podman-'): Promise<{ fs: { dir: string }; app: string; work: string; pm: Podman; hooks: ReturnType<typeof makeHooksDir> }> {
  const fs = await freshBpffs();
  t.teardown(() => fs.cleanup());
  const app = join(fs.dir, 'app');
  mkdirSync(app);
  const hooks = makeHooksDir();
  t.teardown(() => rmSync(hooks.dir, { recursive: true, force: true }));
  const work = tempDir(prefix);
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  return { fs, app, work, hooks, pm: new Podman({ hooksDir: hooks.dir }) };
}

test.before(async () => {
  requireRoot();
  await requirePodman();
  requireInstalledCheckout();
  await testImage();
});
test.after.always(() => cleanupContainers());

/** Every content type of the engine (test/criu's list, itself ALL_CONTENT_SPECS with explicit
 *  entries). c_mmap is only created with BPF_F_MMAPABLE: bpfholder never mmaps it (an mmapped
 *  BPF array cannot be dumped by CRIU at all). ringbuf/user_ringbuf are dumpable while not mmapped. */
const HELD = CONTAINER_SPECS;

/** pinned only (their holder is gone), and pinned + held by a second process */
const APP = [
  'mkdir -p /sys/fs/bpf/app/only /sys/fs/bpf/app/both',
  '/bin/bpfholder hold --pin-dir /sys/fs/bpf/app/only hash:p_hash:entries=40,btf=1 lru_hash:p_lru:entries=20 array_of_maps:p_aofm:entries=2,max=4,inner=array/key=4/value=8/max=8/entries=8 array:p_frozen:frozen=1 > /tmp/only.out &',
  'P=$!; while ! /bin/busybox grep -q READY /tmp/only.out; do sleep 0.1; done; kill $P; wait $P',
  '/bin/bpfholder hold --pin-dir /sys/fs/bpf/app/both percpu_hash:b_pcpu:entries=12 queue:b_queue:entries=6 &',
  `exec /bin/bpfholder hold ${HELD.join(' ')}`,
].join('\n');
const PINS = ['only/p_hash', 'only/p_lru', 'only/p_aofm', 'only/p_frozen', 'both/b_pcpu', 'both/b_queue'];

async function pinSnapshot(dir: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const p of PINS) out[p] = await describe({ pin: join(dir, p) });
  return out;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function initPid(pm: Podman, name: string): Promise<number> {
  return Number((await pm.run(['inspect', '-f', '{{.State.Pid}}', name])).stdout.trim());
}

function staged(): string[] {
  const root = '/sys/fs/bpf/bpfcr';
  return existsSync(root) ? readdirSync(root) : [];
}

test.serial('podman checkpoint --export / restore --import carries every held map type and the annotated pins', async (t) => {
  t.timeout(240_000);
  const { fs, app, work, pm, hooks } = await setup(t, 'bpfcr-podman-ckpt-');

  const c = await runContainer(pm, {
    volumes: [`${app}:/sys/fs/bpf/app`],
    annotations: { 'io.bpfcr.pins': '/sys/fs/bpf/app' },
    cmd: ['/bin/sh', '-c', APP],
  });
  t.teardown(() => c.remove());
  await c.waitLog('READY', { count: 2 });
  await waitFor('the pins', () => PINS.every((p) => existsSync(join(app, p))));
  const pid = await initPid(pm, c.name);
  const heldBefore = await describeHeld(pid);
  // init holds every HELD map (+ the inner maps of the map-in-maps are not fds), its child the two "both" maps
  t.is(Object.keys(heldBefore).length, HELD.length + 2, JSON.stringify(Object.keys(heldBefore)));
  const pinsBefore = await pinSnapshot(app);

  const exported = join(work, 'ckpt.tar.zst');
  const ckLog = runLogFromNow();
  await pm.run(['container', 'checkpoint', '--export', exported, c.name]);
  // the default staging root is in place: pre-dump is done in the shell, Node starts only as the post-dump worker
  t.notRegex(ckLog(), /what="criu-action pre-dump"/);
  t.regex(ckLog(), /what="criu-action post-dump" container=[0-9a-f]{12} result=ok .*maps=\d+/);
  const members = (await execa('tar', ['-I', 'zstd', '-tf', exported])).stdout.split('\n');
  for (const m of ['checkpoint/bpfcr.tar', 'checkpoint/bpfcr-pins.tar', 'checkpoint/bpfcr-checkpoint.json']) t.true(members.includes(m), `${m} in the export`);

  const ins = await bpfcr(['inspect', exported]);
  t.is(ins.exitCode, 0, ins.stderr);
  t.regex(ins.stdout, /checkpoint\/bpfcr\.tar: maps held by the checkpointed processes/);
  t.regex(ins.stdout, /checkpoint\/bpfcr-pins\.tar: maps pinned under the container's io\.bpfcr\.pins/);
  for (const spec of [...HELD, 'x:p_hash', 'x:p_aofm', 'x:b_queue']) t.regex(ins.stdout, new RegExp(`\\s${spec.split(':')[1]}\\s`), `inspect lists ${spec.split(':')[1]}`);
  t.regex(ins.stdout, /all checksums ok[\s\S]*all checksums ok/);

  // no trace left on the host: container gone, staged maps collected, pins wiped
  await pm.run(['rm', '-f', '-t', '0', c.name]);
  const gc = await bpfcr(['gc', '--all']);
  t.is(gc.exitCode, 0, gc.stderr);
  t.deepEqual(staged(), [], 'nothing staged after bpfcr gc --all');
  for (const n of readdirSync(app)) rmSync(join(app, n), { recursive: true });
  t.deepEqual(readdirSync(app), []);

  const runLog = runLogFromNow();
  const hookLog = hooks.readLog().length;
  await pm.run(['container', 'restore', '--import', exported]);
  // pre-restore re-creates the pins, and the prestart hook then exits without starting Node
  t.regex(runLog(), /what="criu-action pre-restore" container=[0-9a-f]{12} result=ok .*detail="restoring a checkpoint: 6 pin\(s\) in bpfcr-pins\.tar: 6 created \(2 map\(s\) shared with the restored tasks, 4 from the checkpoint's data\), 0 kept/);
  t.notRegex(runLog(), /what="hook prestart"/, 'the prestart hook had nothing left to do: no Node start');
  t.is(hooks.readLog().slice(hookLog), '', 'nor a word from it');
  const pid2 = await initPid(pm, c.name);
  t.deepEqual(await describeHeld(pid2), heldBefore, 'every held map identical (describe through the restored processes\' fds)');
  t.deepEqual(await pinSnapshot(app), pinsBefore, 'every pinned map identical');
  // a pinned map the tasks also hold is one map: pin and fd share its id
  const bothQueue = (await execa('bpftool', ['map', 'show', 'pinned', join(app, 'both/b_queue'), '--json'])).stdout;
  const heldIds = new Set<number>();
  for (const p of readdirSync(`/proc/${pid2}/task`)) for (const k of (await execa('cat', [`/proc/${pid2}/task/${p}/children`])).stdout.trim().split(/\s+/).filter(Boolean)) {
    for (const fd of readdirSync(`/proc/${k}/fdinfo`)) {
      const m = /^map_id:\s*(\d+)$/m.exec((await execa('cat', [`/proc/${k}/fdinfo/${fd}`])).stdout);
      if (m) heldIds.add(Number(m[1]));
    }
  }
  t.true(heldIds.has((JSON.parse(bothQueue) as { id: number }).id), 'the restored b_queue pin is the map the restored process holds');
  t.deepEqual(staged(), [], 'the restore leaves nothing staged');
  await pm.run(['rm', '-f', '-t', '0', c.name]);
});

test.serial('a container without annotations or maps: podman checkpoint/restore unaffected, hooks no-op', async (t) => {
  t.timeout(120_000);
  const hooks = makeHooksDir({ always: true, trace: true });
  t.teardown(() => rmSync(hooks.dir, { recursive: true, force: true }));
  const work = tempDir('bpfcr-podman-plain-');
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const pm = new Podman({ hooksDir: hooks.dir });
  const c = await runContainer(pm, { bpf: false, tmpfsSysFsBpf: false, cmd: ['/bin/sh', '-c', 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done'] });
  t.teardown(() => c.remove());
  await c.waitLog('tick 3');
  const exported = join(work, 'plain.tar.zst');
  await pm.run(['container', 'checkpoint', '--export', exported, c.name]);
  const members = (await execa('tar', ['-I', 'zstd', '-tf', exported])).stdout.split('\n');
  t.deepEqual(members.filter((m) => m.includes('bpfcr')), [], 'no bpfcr file in the export');
  await pm.run(['rm', '-f', '-t', '0', c.name]);
  await pm.run(['container', 'restore', '--import', exported]);
  const before = ((await c.logs()).match(/tick \d+/g) ?? []).length;
  await c.waitLog(/tick \d+/, { count: before + 3 });
  t.true(hooks.runs().filter((r) => r === 'prestart').length >= 2, `prestart ran at start and restore: ${hooks.runs().join(',')}`);
  t.is(hooks.readLog(), '', 'the hooks said nothing');
  const ins = await bpfcr(['inspect', exported]);
  t.not(ins.exitCode, 0);
  t.regex(ins.stderr, /not a bpfcr archive/);
});

test.serial('same host, pins still there: podman checkpoint/restore keeps the very same pinned maps (zero copy)', async (t) => {
  t.timeout(120_000);
  const { app, pm } = await setup(t);
  const c = await runContainer(pm, {
    volumes: [`${app}:/sys/fs/bpf/app`],
    annotations: { 'io.bpfcr.pins': '/sys/fs/bpf/app' },
    cmd: ['/bin/sh', '-c', APP],
  });
  t.teardown(() => c.remove());
  await c.waitLog('READY', { count: 2 });
  await waitFor('the pins', () => PINS.every((p) => existsSync(join(app, p))));
  const ids = async (): Promise<number[]> => {
    const out: number[] = [];
    for (const p of PINS) out.push((JSON.parse((await execa('bpftool', ['map', 'show', 'pinned', join(app, p), '--json'])).stdout) as { id: number }).id);
    return out;
  };
  const idsBefore = await ids();
  const pinsBefore = await pinSnapshot(app);
  const heldBefore = await describeHeld(await initPid(pm, c.name));
  await pm.run(['container', 'checkpoint', c.name]);
  const runLog = runLogFromNow();
  await pm.run(['container', 'restore', c.name]);
  t.regex(runLog(), /what="criu-action pre-restore" .*detail="restoring a checkpoint: 6 pin\(s\) in bpfcr-pins\.tar: 0 created .*, 6 kept \(still on the host\)/);
  t.deepEqual(await ids(), idsBefore, 'the pins hold the very same maps');
  t.deepEqual(await pinSnapshot(app), pinsBefore);
  t.deepEqual(await describeHeld(await initPid(pm, c.name)), heldBefore);
  await pm.run(['rm', '-f', '-t', '0', c.name]);
  await bpfcr(['gc', '--all']);
});

test.serial('a container that only pins maps (its processes hold no BPF fd): the pins still travel in the export', async (t) => {
  t.timeout(120_000);
  const { app, work, pm } = await setup(t, 'bpfcr-podman-pinonly-');
  const script = [
    '/bin/bpfholder hold --pin-dir /sys/fs/bpf/app hash:only_h:entries=25 percpu_array:only_pa:max=4,entries=4 > /tmp/o &',
    'P=$!; while ! /bin/busybox grep -q READY /tmp/o; do sleep 0.1; done; kill $P; wait $P',
    'echo PINNED; exec sleep 100000',
  ].join('\n');
  const c = await runContainer(pm, { volumes: [`${app}:/sys/fs/bpf/app`], annotations: { 'io.bpfcr.pins': '/sys/fs/bpf/app' }, cmd: ['/bin/sh', '-c', script] });
  t.teardown(() => c.remove());
  await c.waitLog('PINNED');
  const snap = async (): Promise<unknown[]> => [await describe({ pin: join(app, 'only_h') }), await describe({ pin: join(app, 'only_pa') })];
  const before = await snap();
  const exported = join(work, 'pinonly.tar.zst');
  await pm.run(['container', 'checkpoint', '--export', exported, c.name]);
  const members = (await execa('tar', ['-I', 'zstd', '-tf', exported])).stdout.split('\n');
  t.true(members.includes('checkpoint/bpfcr-pins.tar'));
  t.false(members.includes('checkpoint/bpfcr.tar'), 'no held maps');
  await pm.run(['rm', '-f', '-t', '0', c.name]);
  for (const n of readdirSync(app)) rmSync(join(app, n), { recursive: true });
  const runLog = runLogFromNow();
  await pm.run(['container', 'restore', '--import', exported]);
  // no map held: pre-restore starts Node for bpfcr-pins.tar alone
  t.regex(runLog(), /what="criu-action pre-restore" .*detail="restoring a checkpoint: 2 pin\(s\) in bpfcr-pins\.tar: 2 created \(0 map\(s\) shared with the restored tasks, 2 from the checkpoint's data\)/);
  t.notRegex(runLog(), /what="hook prestart"/);
  t.deepEqual(await snap(), before);
  await pm.run(['rm', '-f', '-t', '0', c.name]);

  // pre-restore runs beside CRIU; when it fails, CRIU does not let the tasks run (post-restore waits for
  // it): the same export with a damaged bpfcr-pins.tar is refused, naming it, and no pin appears
  for (const n of readdirSync(app)) rmSync(join(app, n), { recursive: true });
  const unpacked = join(work, 'unpacked');
  mkdirSync(unpacked);
  await execa('tar', ['-I', 'zstd', '-xf', exported, '-C', unpacked]);
  const pinsTar = join(unpacked, 'checkpoint/bpfcr-pins.tar');
  const bytes = readFileSync(pinsTar);
  const at = bytes.indexOf(Buffer.from('only_h')) + 2048; // inside the data after the first map's header
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(pinsTar, bytes);
  const damaged = join(work, 'damaged.tar.zst');
  await execa('tar', ['-I', 'zstd', '-cf', damaged, '-C', unpacked, '.']);
  const failLog = runLogFromNow();
  const r = await pm.run(['container', 'restore', '--import', damaged], { reject: false });
  t.not(r.exitCode, 0, 'the restore fails');
  t.regex(failLog(), /what="criu-action pre-restore" container=[0-9a-f]{12} result=error .*bpfcr-pins\.tar/);
  t.notRegex(failLog(), /\/proc\/\d+\/fd\//, 'the image dir as podman named it, not criu\'s fd');
  t.deepEqual(readdirSync(app), [], 'no pin half made');
  await pm.run(['rm', '-f', '-t', '0', c.name], { reject: false });
});

/** BTF object ids of the BTF fds the processes under `pid` hold. */
function heldBtfIds(pid: number): number[] {
  const out: number[] = [];
  for (const p of processTree(pid)) {
    for (const fd of readdirSync(`/proc/${p}/fd`)) {
      let link = '';
      try { link = readlinkSync(`/proc/${p}/fd/${fd}`); } catch { continue; }
      if (link !== 'anon_inode:btf') continue;
      const m = /^btf_id:\s*(\d+)$/m.exec(readFileSync(`/proc/${p}/fdinfo/${fd}`, 'utf8'));
      if (m) out.push(Number(m[1]));
    }
  }
  return out.sort((a, b) => a - b);
}

test.serial('a process holding maps with BTF and its BTF fds (as libbpf does): export → gc --all → import, every map identical, one BTF object per fd and map', async (t) => {
  t.timeout(180_000);
  const { work, pm } = await setup(t, 'bpfcr-podman-btf-');
  const specs = ['hash:k_btf:btf=1,keepbtf=1,key=4,value=8,entries=10,max=16', 'array:k_btf2:btf=1,keepbtf=1,max=8,entries=8', 'hash:k_plain:entries=5'];
  const c = await runContainer(pm, { cmd: ['/bin/bpfholder', 'hold', ...specs] });
  t.teardown(() => c.remove());
  await c.waitLog('READY');
  const pid = await initPid(pm, c.name);
  t.is(heldBtfIds(pid).length, 2, 'the holder keeps two BTF fds');
  const before = await describeHeld(pid);

  const exported = join(work, 'btf.tar.zst');
  await pm.run(['container', 'checkpoint', '--export', exported, c.name]);
  await pm.run(['rm', '-f', '-t', '0', c.name]);
  const gc = await bpfcr(['gc', '--all']);
  t.is(gc.exitCode, 0, gc.stderr);
  t.deepEqual(staged(), [], 'nothing staged after bpfcr gc --all');

  await pm.run(['container', 'restore', '--import', exported]);
  const pid2 = await initPid(pm, c.name);
  t.deepEqual(await describeHeld(pid2), before, 'every held map identical');
  const btfFds = heldBtfIds(pid2);
  t.is(btfFds.length, 2, 'the BTF fds came back');
  // one BTF object for the fd and the map that shared it: the restored maps' BTF ids are the fds' ones
  const mapBtf: number[] = [];
  for (const id of heldMapIds(pid2).values()) {
    const j = JSON.parse((await execa('bpftool', ['map', 'show', 'id', String(id), '--json'])).stdout) as { btf_id?: number };
    if (j.btf_id) mapBtf.push(j.btf_id);
  }
  t.deepEqual(mapBtf.sort((a, b) => a - b), btfFds, 'each BTF fd is the BTF object of its map');
  t.deepEqual(staged(), [], 'the restore leaves nothing staged');
  await pm.run(['rm', '-f', '-t', '0', c.name]);
});
