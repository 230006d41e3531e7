/**
 * Local-storage maps (TASK/SK/CGRP/INODE_STORAGE) through podman: `bpfholder storage` (its values for
 * its own task and two children, a unix socketpair and a TCP listener, its cgroup v2, an open file)
 * checkpointed with --export, removed, the host wiped (bpfcr gc --all), restored with --import: every
 * value identical, written back on the restored owners at CRIU's post-restore. Installed copy of
 * bpfcr + patched CRIU: see helpers/podman-criu.ts.
 */
import test from 'ava';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { bpfcr, requireRoot, tempDir } from '../helpers/env.js';
import { readStatus, waitStatus, type Status } from '../helpers/apps.js';
import { requireInstalledCheckout } from '../helpers/podman-criu.js';
import { cleanupContainers, Podman, requirePodman, runContainer, testImage } from '../helpers/podman.js';
import { cgroup2Root } from '../../src/runtime/cgroup.js';

test.before(async () => {
  requireRoot();
  await requirePodman();
  requireInstalledCheckout();
  await testImage();
});
test.after.always(() => cleanupContainers());

const pm = new Podman();

/** Every value bpfholder storage sets, by status key (-1 in the status: no value for that owner). */
const EXPECTED: Status = { task0: 1001, task1: 1002, task2: 1003, sk0: 2001, sk1: 2002, tcp: 2003, cgrp: 3001, inode: 4001 };
const values = (s: Status): Status => Object.fromEntries(Object.keys(EXPECTED).map((k) => [k, s[k]!]));

async function initPid(name: string): Promise<number> {
  return Number((await pm.run(['inspect', '-f', '{{.State.Pid}}', name])).stdout.trim());
}

test.serial('local storage of tasks, sockets, a cgroup and a file: export → rm → gc --all → restore --import, every value identical', async (t) => {
  t.timeout(180_000);
  const work = tempDir('bpfcr-podman-storage-');
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const out = join(work, 'out');
  mkdirSync(out);
  const port = 30000 + (process.pid % 10000);
  const c = await runContainer(pm, {
    // the holder keys cgroup storage by its cgroup v2: the host's hierarchy bound read-only
    volumes: [`${out}:/out`, `${cgroup2Root()}:/host-cgroup2:ro`],
    cmd: ['/bin/bpfholder', 'storage', '--status', '/out/status', '--port', String(port), '--file', '/tmp/owned-file', '--cgroup-root', '/host-cgroup2'],
  });
  t.teardown(() => c.remove());
  const status = join(out, 'status');
  const before = await waitStatus(status, (s) => (s['tick'] ?? 0) >= 3, 30_000, 'bpfholder storage to set its values');
  t.deepEqual(values(before), EXPECTED, 'every owner has its value before the checkpoint');

  const exported = join(work, 'storage.tar.zst');
  const pid = await initPid(c.name);
  await pm.run(['container', 'checkpoint', '--export', exported, c.name]);
  for (let i = 0; i < 200 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 25));
  const ins = await bpfcr(['inspect', exported]);
  t.is(ins.exitCode, 0, ins.stderr);
  t.regex(ins.stdout, /ls_task: carried 3 value\(s\), one per task owner; 0 entries of task owners outside the checkpointed processes left behind/, ins.stdout);
  t.regex(ins.stdout, /ls_sk: carried 3 value\(s\), one per socket owner; entries of other socket owners not counted: /);
  t.regex(ins.stdout, /ls_cgrp: carried 1 value\(s\), one per cgroup owner; 0 entries of cgroup owners outside/);
  t.regex(ins.stdout, /ls_inode: carried 1 value\(s\), one per file owner; entries of other file owners not counted: /);

  await pm.run(['rm', '-f', '-t', '0', c.name]);
  const gc = await bpfcr(['gc', '--all']);
  t.is(gc.exitCode, 0, gc.stderr);
  t.deepEqual(existsSync('/sys/fs/bpf/bpfcr') ? readdirSync('/sys/fs/bpf/bpfcr') : [], []);
  rmSync(status, { force: true });
  const r = await pm.run(['container', 'restore', '--import', exported], { reject: false });
  t.is(r.exitCode, 0, r.stderr);
  const after = await waitStatus(status, (s) => (s['tick'] ?? 0) > (before['tick'] ?? 0), 30_000, 'the restored holder to read its values back');
  t.deepEqual(values(after), EXPECTED, `every value is back on its restored owner: ${JSON.stringify(readStatus(status))}`);
  t.not(await initPid(c.name), 0);
});
