/**
 * Real libbpf applications (test/fixtures/apps) under podman: checkpoint/restore on the same host
 * (zero copy), checkpoint --export → rm → restore --import, and a wiped host (bpfcr gc --all), where
 * the maps and globals come from the export and the programs are reloaded from the app's own object.
 * Installed copy of bpfcr + patched CRIU: see helpers/podman-criu.ts.
 */
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { bpfcr, requireRoot, tempDir } from '../helpers/env.js';
import { APPS_DIR, ensureApps, ensureTracefs, TRACEFS, waitStatus } from '../helpers/apps.js';
import { bpfFds, counterAccepts, counterContinues, counterWarm, ringContinues, ringWarm, sockContinues, sockWarm } from '../helpers/app-checks.js';
import { cgroup2Root, cgroupOf } from '../../src/runtime/cgroup.js';
import { requireInstalledCheckout } from '../helpers/podman-criu.js';
import { cleanupContainers, Podman, requirePodman, runContainer, testImage, type Container } from '../helpers/podman.js';

test.before(async () => {
  requireRoot();
  await requirePodman();
  requireInstalledCheckout();
  await ensureApps();
  await ensureTracefs();
  await testImage();
});
test.after.always(() => cleanupContainers());

const pm = new Podman();

function staged(): string[] {
  const root = '/sys/fs/bpf/bpfcr';
  return existsSync(root) ? readdirSync(root) : [];
}

async function initPid(name: string): Promise<number> {
  return Number((await pm.run(['inspect', '-f', '{{.State.Pid}}', name])).stdout.trim());
}

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 200 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 25));
}

/** The ids of the maps and programs process `pid` holds as fds (from fdinfo). */
function objectIds(pid: number): { map: number[]; prog: number[] } {
  const out = { map: [] as number[], prog: [] as number[] };
  for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
    let info = '';
    try { info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'); } catch { continue; }
    for (const k of ['map', 'prog'] as const) {
      const m = new RegExp(`^${k}_id:\\s*(\\d+)`, 'm').exec(info);
      if (m && !out[k].includes(Number(m[1]))) out[k].push(Number(m[1]));
    }
  }
  return out;
}

async function appContainer(t: ExecutionContext, app: 'counter' | 'ringtrace' | 'sockwatch', args: string[] = []): Promise<{ c: Container; status: string; control: string; work: string }> {
  const work = tempDir('bpfcr-podman-app-');
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const out = join(work, 'out');
  mkdirSync(out);
  const c = await runContainer(pm, {
    // sockwatch attaches to its cgroup v2: the host's cgroup2 hierarchy bound read-only, as agents have it
    volumes: [`${APPS_DIR}:/apps:ro`, `${out}:/out`, `${TRACEFS}:${TRACEFS}`, ...(app === 'sockwatch' ? [`${cgroup2Root()}:/host-cgroup2:ro`] : [])],
    cmd: [`/apps/${app}`, '--status', '/out/status', ...(app === 'counter' ? ['--control', '/out/control'] : []),
      ...(app === 'sockwatch' ? ['--object', '/apps/sockwatch.bpf.o', '--cgroup-root', '/host-cgroup2'] : []), ...args],
  });
  t.teardown(() => c.remove());
  return { c, status: join(out, 'status'), control: join(out, 'control'), work };
}

/** podman's own error plus the bpfcr lines of the container's CRIU restore log */
async function restoreLog(c: Container): Promise<string> {
  const dir = String((await pm.run(['inspect', '-f', '{{.StaticDir}}', c.name], { reject: false })).stdout).trim();
  try { return readFileSync(join(dir, 'restore.log'), 'utf8'); } catch { return ''; }
}

test.serial('counter app: podman checkpoint → restore on the same host (zero copy): counters continue, shared globals both ways, tracepoint + TCP still work', async (t) => {
  t.timeout(180_000);
  const port = 21000 + (process.pid % 10000);
  const { c, status, control } = await appContainer(t, 'counter', ['--listen', String(port)]);
  await counterWarm(status);
  const pid = await initPid(c.name);
  await pm.run(['container', 'checkpoint', '--tcp-established', c.name]);
  await waitGone(pid);
  const last = await waitStatus(status, () => true, 1000, 'the last status');
  await pm.run(['container', 'restore', '--keep', '--tcp-established', c.name]); // --keep: podman keeps restore.log
  await counterContinues(t, status, control, last, 'podman restore');
  await counterAccepts(t, await initPid(c.name), port, 'podman restore');
  t.regex(await restoreLog(c), /reusing \d+ staged map\(s\) \(zero copy\)/);
  t.deepEqual(staged(), [], 'nothing left staged');
});

test.serial('counter app: podman checkpoint --export → rm → restore --import on the same host', async (t) => {
  t.timeout(180_000);
  const { c, status, control, work } = await appContainer(t, 'counter');
  await counterWarm(status);
  const exported = join(work, 'counter.tar.zst');
  const pid = await initPid(c.name);
  const fds = bpfFds(pid);
  await pm.run(['container', 'checkpoint', '--export', exported, c.name]);
  await waitGone(pid);
  const last = await waitStatus(status, () => true, 1000, 'the last status');
  const ins = await bpfcr(['inspect', exported]);
  t.is(ins.exitCode, 0, ins.stderr);
  t.regex(ins.stdout, /\.bss\s+array/);
  t.regex(ins.stdout, /\.rodata\s+array .* yes /, '.rodata frozen');
  await pm.run(['rm', '-f', '-t', '0', c.name]);
  await pm.run(['container', 'restore', '--import', exported]);
  await counterContinues(t, status, control, last, 'podman restore --import');
  t.deepEqual(bpfFds(await initPid(c.name)), fds, 'every BPF, BTF and perf-event fd is back at its number');
  t.deepEqual(staged(), []);
});

test.serial('ringtrace app: podman checkpoint --export → rm → restore --import: ring-buffer events keep arriving', async (t) => {
  t.timeout(180_000);
  const { c, status, work } = await appContainer(t, 'ringtrace');
  await ringWarm(status);
  const exported = join(work, 'ring.tar.zst');
  const pid = await initPid(c.name);
  await pm.run(['container', 'checkpoint', '--export', exported, c.name]);
  await waitGone(pid);
  const last = await waitStatus(status, () => true, 1000, 'the last status');
  await pm.run(['rm', '-f', '-t', '0', c.name]);
  await pm.run(['container', 'restore', '--import', exported]);
  await ringContinues(t, status, last, 'podman restore --import');
  t.deepEqual(staged(), []);
});

test.serial('a wiped host: export → rm → bpfcr gc --all → restore --import: maps from the export, programs reloaded from the app\'s own object, links re-created', async (t) => {
  t.timeout(180_000);
  const { c, status, control, work } = await appContainer(t, 'counter');
  await counterWarm(status);
  const exported = join(work, 'wiped.tar.zst');
  const pid = await initPid(c.name);
  const ids = objectIds(pid);
  t.true(ids.map.length >= 4 && ids.prog.length === 2, JSON.stringify(ids));
  await pm.run(['container', 'checkpoint', '--export', exported, c.name]);
  await waitGone(pid);
  const last = await waitStatus(status, () => true, 1000, 'the last status before the checkpoint');
  await pm.run(['rm', '-f', '-t', '0', c.name]);
  const gc = await bpfcr(['gc', '--all']);
  t.is(gc.exitCode, 0, gc.stderr);
  t.deepEqual(staged(), []);
  // the kernel frees objects shortly after their last reference goes (deferred work): give it a moment
  const left = async (): Promise<string[]> => {
    const live = (k: string): Promise<Set<number>> => execa('bpftool', [k, 'list', '--json']).then((r) => new Set((JSON.parse(r.stdout) as { id: number }[]).map((m) => m.id)));
    const [maps, progs] = await Promise.all([live('map'), live('prog')]);
    return [...ids.map.filter((id) => maps.has(id)).map((id) => `map ${id}`), ...ids.prog.filter((id) => progs.has(id)).map((id) => `prog ${id}`)];
  };
  for (let i = 0; i < 50 && (await left()).length; i++) await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(await left(), [], 'no map or program of the app left in the kernel');
  const r = await pm.run(['container', 'restore', '--import', exported], { reject: false });
  t.is(r.exitCode, 0, `${r.stderr}\n${(await restoreLog(c)).slice(-3000)}`);
  await counterContinues(t, status, control, last, 'podman restore --import on a wiped host');
  t.deepEqual(staged(), [], 'nothing staged after the restore');
});

test.serial('a cgroup link follows the container to its new cgroup: export → rm → gc --all → restore --import --name (new id, new cgroup)', async (t) => {
  t.timeout(180_000);
  const { c, status, work } = await appContainer(t, 'sockwatch');
  await sockWarm(status);
  const exported = join(work, 'sock.tar.zst');
  const pid = await initPid(c.name);
  const oldCgroup = cgroupOf(pid);
  await pm.run(['container', 'checkpoint', '--export', exported, c.name]);
  await waitGone(pid);
  const last = await waitStatus(status, () => true, 1000, 'the last status before the checkpoint');
  await pm.run(['rm', '-f', '-t', '0', c.name]);
  t.is((await bpfcr(['gc', '--all'])).exitCode, 0);
  const name = `${c.name}-moved`;
  t.teardown(() => pm.run(['rm', '-f', '-t', '0', name], { reject: false }).then(() => undefined));
  const r = await pm.run(['container', 'restore', '--import', exported, '--name', name], { reject: false });
  t.is(r.exitCode, 0, `${r.stderr}\n${(await restoreLog(c)).slice(-3000)}`);
  const newCgroup = cgroupOf(await initPid(name));
  t.not(newCgroup, oldCgroup, 'the restored container has a new cgroup');
  await sockContinues(t, status, last, 'podman restore --import --name on a wiped host');
  const att = await execa('bpftool', ['cgroup', 'show', join(cgroup2Root(), newCgroup), '--json']);
  t.regex(att.stdout, /"name":"on_sock_create"/, `the program is attached to the new cgroup ${newCgroup}`);
  t.deepEqual(staged(), [], 'nothing staged after the restore');
});
