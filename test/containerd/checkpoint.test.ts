/**
 * containerd as a second client of the CRIU path: real containerd 1.6 (`ctr`), its
 * containerd-shim-runc-v2, runc, CRIU, and the installed bpfcr plugin and action script (= this
 * checkout, helpers/podman-criu.ts). A task whose process holds a map of every content type the
 * engine carries (as fds), in a container that also declares io.bpfcr.pins over a bind-mounted
 * host bpffs dir:
 *   ctr containers checkpoint --task --rw → the task keeps running, and bpfcr saw that
 *   (src/runtime: the shim's `runc checkpoint` carries --leave-running) → the checkpoint image's
 *   CRIU layer carries bpfcr.tar and bpfcr-pins.tar (the container found through containerd's runc
 *   root) → task and container deleted, staging wiped (bpfcr gc --all) → ctr containers restore
 *   --live --rw → every held map identical (bpfholder describe through the restored process's fds),
 *   as copies (new ids), and nothing left staged.
 */
import test from 'ava';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { bpfcr, describe, freshBpffs, requireRoot } from '../helpers/env.js';
import {
  checkpoint, checkpointImageDir, checkpointRef, cleanupContainerd, containerdTestImage, containerId, ensureContainerd,
  removeContainer, restore, runTask, taskPid, waitInRoot,
} from '../helpers/containerd.js';
import { describeHeld, heldMapIds, requireInstalledCheckout } from '../helpers/podman-criu.js';
import { CONTAINER_SPECS } from '../criu/runc.js';

test.before(async () => {
  requireRoot();
  await ensureContainerd();
  requireInstalledCheckout();
  await containerdTestImage();
});
test.after.always(() => cleanupContainerd());

function staged(): string[] {
  const root = '/sys/fs/bpf/bpfcr';
  return existsSync(root) ? readdirSync(root) : [];
}

/** a first holder pins two maps under /pins and exits; then init becomes the holder of every type */
const APP = [
  '/bin/bpfholder hold --pin-dir /pins hash:p_hash:entries=40,btf=1 lru_hash:p_lru:entries=20 > /pins.out &',
  'P=$!; while ! /bin/busybox grep -q READY /pins.out; do sleep 0.1; done; kill $P; wait $P',
  `exec /bin/bpfholder hold ${CONTAINER_SPECS.join(' ')} > /holder.out`,
].join('\n');

test.serial('ctr checkpoint --task / restore --live carries every held map type; the pins go into the checkpoint', async (t) => {
  t.timeout(180_000);
  const fs = await freshBpffs();
  t.teardown(() => fs.cleanup());
  // a subdirectory: a bpffs root also holds the kernel's maps.debug / progs.debug, which are no pins
  const app = join(fs.dir, 'app');
  mkdirSync(app);
  const id = containerId();
  const ref = checkpointRef();
  t.teardown(() => removeContainer(id));

  const pid = await runTask(id, ['/bin/sh', '-c', APP], {
    binds: [{ source: app, destination: '/pins' }],
    annotations: { 'io.bpfcr.pins': '/pins' },
  });
  await waitInRoot(pid, '/holder.out', 'READY');
  const before = await describeHeld(pid);
  t.is(Object.keys(before).length, CONTAINER_SPECS.length, JSON.stringify(Object.keys(before)));
  const idsBefore = new Set(heldMapIds(pid).values());

  const ck = await checkpoint(id, ref);
  t.is(ck.exitCode, 0, ck.stderr);
  t.is(await taskPid(id), pid, 'ctr containers checkpoint --task leaves the task running');

  const img = await checkpointImageDir(ref);
  t.teardown(() => rmSync(img, { recursive: true, force: true }));
  for (const f of ['bpfcr.tar', 'bpfcr-pins.tar', 'bpfcr-checkpoint.json']) t.true(existsSync(join(img, f)), `${f} in the checkpoint image's CRIU layer`);
  const rec = JSON.parse(readFileSync(join(img, 'bpfcr-checkpoint.json'), 'utf8')) as { leaveRunning?: boolean };
  t.is(rec.leaveRunning, true, 'the leave-running dump under containerd-shim-runc-v2 was recognised');
  const pinsIns = await bpfcr(['inspect', join(img, 'bpfcr-pins.tar')]);
  t.is(pinsIns.exitCode, 0, pinsIns.stderr);
  t.regex(pinsIns.stdout, /\sp_hash\s[\s\S]*\sp_lru\s/, 'the pins under io.bpfcr.pins were saved (container found in containerd\'s runc root)');
  const pinsBefore = { p_hash: await describe({ pin: join(app, 'p_hash') }), p_lru: await describe({ pin: join(app, 'p_lru') }) };

  await removeContainer(id);
  const gc = await bpfcr(['gc', '--all']);
  t.is(gc.exitCode, 0, gc.stderr);
  t.deepEqual(staged(), [], 'nothing staged after bpfcr gc --all');

  const rs = await restore(id, ref);
  t.is(rs.exitCode, 0, rs.stderr);
  const pid2 = await taskPid(id);
  t.deepEqual(await describeHeld(pid2), before, 'every held map identical after restore');
  const idsAfter = [...heldMapIds(pid2).values()];
  t.true(idsAfter.every((i) => !idsBefore.has(i)), 'the restored maps are copies (the checkpoint left the task running)');
  t.deepEqual({ p_hash: await describe({ pin: join(app, 'p_hash') }), p_lru: await describe({ pin: join(app, 'p_lru') }) }, pinsBefore, 'host pins untouched');
  t.deepEqual(staged(), [], 'the restore leaves nothing staged');
});

test.serial('a containerd task that holds no map but declares io.bpfcr.pins: the pins still go into the checkpoint', async (t) => {
  // post-dump with no BPF fd in the dump is decided in shell: hooks/checkpoint's pins_annotated()
  // must find the container in containerd's runc root (/run/containerd/runc/<namespace>)
  t.timeout(120_000);
  const fs = await freshBpffs();
  t.teardown(() => fs.cleanup());
  const app = join(fs.dir, 'app');
  mkdirSync(app);
  const id = containerId('pins');
  const ref = checkpointRef('pins');
  t.teardown(() => removeContainer(id));
  const pid = await runTask(id, ['/bin/sh', '-c', [
    '/bin/bpfholder hold --pin-dir /pins queue:q_only:entries=6 > /pins.out &',
    'P=$!; while ! /bin/busybox grep -q READY /pins.out; do sleep 0.1; done; kill $P; wait $P',
    'echo READY > /ready; exec sleep 1000',
  ].join('\n')], { binds: [{ source: app, destination: '/pins' }], annotations: { 'io.bpfcr.pins': '/pins' } });
  await waitInRoot(pid, '/ready', 'READY');
  t.deepEqual(heldMapIds(pid).size, 0, 'the task holds no map');
  const ck = await checkpoint(id, ref);
  t.is(ck.exitCode, 0, ck.stderr);
  const img = await checkpointImageDir(ref);
  t.teardown(() => rmSync(img, { recursive: true, force: true }));
  t.false(existsSync(join(img, 'bpfcr.tar')), 'no held maps: no bpfcr.tar');
  const ins = await bpfcr(['inspect', join(img, 'bpfcr-pins.tar')]);
  t.is(ins.exitCode, 0, ins.stderr || `no bpfcr-pins.tar in ${readdirSync(img).join(' ')}`);
  t.regex(ins.stdout, /\sq_only\s+queue\s/);
});
