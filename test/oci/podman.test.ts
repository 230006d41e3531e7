/**
 * Stop/start carry-over with real podman + runc and this checkout's hooks registered through a
 * hooks.d directory: a container pins maps in a bind-mounted host bpffs directory; `podman stop`
 * runs poststop (save-on-stop), the host pins are wiped, `podman start` runs prestart
 * (restore-from), and the container's process finds its pins in place when it starts. Compared
 * with bpfholder describe (independent of bpfcr).
 */
import test from 'ava';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, freshBpffs, HOLDER, requireRoot } from '../helpers/env.js';
import { stateFile } from '../helpers/oci.js';
import { cleanupContainers, makeHooksDir, Podman, requirePodman, runContainer, testImage } from '../helpers/podman.js';

test.before(async () => {
  requireRoot();
  await requirePodman();
  await testImage();
});
test.after.always(() => cleanupContainers());

/** The container's program: first start creates and pins maps; later starts list what they find. */
const APP = [
  'if [ -e /sys/fs/bpf/app/counters ]; then',
  '  echo "START: pins present before the process ran:"; find /sys/fs/bpf/app | sort; echo "END"',
  '  exec sleep 100000',
  'fi',
  'mkdir -p /sys/fs/bpf/app/sub',
  '/bin/bpfholder hold --pin-dir /sys/fs/bpf/app/sub percpu_hash:pcpu:entries=12 queue:jobs:entries=6 &',
  'exec /bin/bpfholder hold --pin-dir /sys/fs/bpf/app hash:counters:entries=100,btf=1 array:cfg:frozen=1 lru_hash:conns:entries=30 hash_of_maps:tenants:entries=3 lpm_trie:routes:entries=9',
].join('\n');

const PINS = ['cfg', 'conns', 'counters', 'routes', 'sub/jobs', 'sub/pcpu', 'tenants'];

async function snapshot(dir: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const p of PINS) {
    const st = statSync(join(dir, p));
    out[p] = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, map: await describe({ pin: join(dir, p) }) };
  }
  return out;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

for (const wipeBy of ['rm', 'remount'] as const) {
  test.serial(`podman stop/start carries pinned maps over (host pins wiped by ${wipeBy})`, async (t) => {
    t.timeout(180_000);
    const fs = await freshBpffs();
    t.teardown(() => fs.cleanup());
    const app = join(fs.dir, 'app');
    mkdirSync(app);
    const hooks = makeHooksDir();
    t.teardown(() => rmSync(hooks.dir, { recursive: true, force: true }));
    const st = stateFile('podman');
    t.teardown(st.cleanup);
    const pm = new Podman({ hooksDir: hooks.dir });

    const c = await runContainer(pm, {
      volumes: [`${app}:/sys/fs/bpf/app`],
      annotations: { 'io.bpfcr.pins': '/sys/fs/bpf/app', 'io.bpfcr.save-on-stop': st.path, 'io.bpfcr.restore-from': st.path },
      cmd: ['/bin/sh', '-c', APP],
    });
    t.teardown(() => c.remove());
    await c.waitLog('READY');
    await waitFor('the pins', () => PINS.every((p) => existsSync(join(app, p))));
    t.regex(hooks.readLog(), /bpfcr prestart [0-9a-f]{12}: no saved state at .* \(first start\?\): nothing restored/);
    const before = await snapshot(app);

    await c.stop(0);
    await waitFor('the poststop hook', () => existsSync(st.path) && /saved 7 pin\(s\)/.test(hooks.readLog()));
    t.regex(hooks.readLog(), /bpfcr poststop [0-9a-f]{12}: saved 7 pin\(s\) of 7 map\(s\) \+ 3 inner, \d+ entries, from \/sys\/fs\/bpf\/app to /);
    t.is(statSync(st.path).mode & 0o777, 0o600);

    if (wipeBy === 'rm') {
      for (const n of readdirSync(app)) rmSync(join(app, n), { recursive: true });
    } else {
      // a fresh bpffs on the same host directory: every pin is gone for good
      await execa('umount', [fs.dir]);
      await execa('mount', ['-t', 'bpf', 'bpf', fs.dir]);
      mkdirSync(app);
    }
    t.deepEqual(readdirSync(app), []);

    await c.start();
    const logs = await c.waitLog('END');
    t.regex(hooks.readLog(), /bpfcr prestart [0-9a-f]{12}: restored 7 pin\(s\) from .*: 7 created, 0 replaced, 0 kept/);
    // the container's process saw every pin when it started
    for (const p of PINS) t.true(logs.includes(`/sys/fs/bpf/app/${p}\n`), `${p} present at process start`);
    t.deepEqual(await snapshot(app), before, 'identical maps (describe), owners and modes');
    const inside = await c.exec(['/bin/bpfholder', 'describe', '--summary', '--pin', '/sys/fs/bpf/app/sub/pcpu']);
    t.is(inside.exitCode, 0, inside.stderr);
    t.is(inside.stdout.trim(), (await execa(HOLDER, ['describe', '--summary', '--pin', join(app, 'sub/pcpu')])).stdout.trim(),
      'the container sees the restored map through its bind mount');
  });
}

test.serial('a container without io.bpfcr annotations is untouched by the always-registered hooks', async (t) => {
  t.timeout(120_000);
  const hooks = makeHooksDir({ always: true, trace: true });
  t.teardown(() => rmSync(hooks.dir, { recursive: true, force: true }));
  const pm = new Podman({ hooksDir: hooks.dir });
  const c = await runContainer(pm, { bpf: false, tmpfsSysFsBpf: false, cmd: ['/bin/sh', '-c', 'echo hello; exec sleep 100000'] });
  t.teardown(() => c.remove());
  await c.waitLog('hello');
  await c.stop(0);
  await c.start();
  await c.waitLog('hello', { count: 2 });
  await c.stop(0);
  await waitFor('the second poststop', () => hooks.runs().filter((r) => r === 'poststop').length >= 2);
  t.deepEqual(hooks.runs().filter((r) => r === 'prestart').length, 2, 'prestart ran at both starts');
  t.is(hooks.readLog(), '', 'the hooks said nothing');
});

test.serial('the annotation-matched registration does not run the hooks for a container without io.bpfcr annotations', async (t) => {
  t.timeout(120_000);
  const hooks = makeHooksDir({ trace: true });
  t.teardown(() => rmSync(hooks.dir, { recursive: true, force: true }));
  const pm = new Podman({ hooksDir: hooks.dir });
  const c = await runContainer(pm, { bpf: false, tmpfsSysFsBpf: false, annotations: { 'io.example.other': '1' }, cmd: ['/bin/sh', '-c', 'echo hello; exec sleep 100000'] });
  t.teardown(() => c.remove());
  await c.waitLog('hello');
  await c.stop(0);
  t.deepEqual(hooks.runs(), []);
});
