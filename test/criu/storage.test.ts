/**
 * Local-storage maps (TASK/SK/CGRP/INODE_STORAGE) through runc checkpoint/restore + the patched CRIU:
 * `bpfholder storage` sets a value for its own task and two children, a unix socketpair and a TCP
 * listener, its cgroup v2 and an open file. Entries die with their owners at the dump, so even a
 * zero-copy restore gets its values from the archive: written on the restored owners at CRIU's
 * post-restore, before the tasks run. Same host, and a wiped host (maps recreated from the image).
 */
import test from 'ava';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { requireRoot } from '../helpers/env.js';
import { waitStatus, type Status } from '../helpers/apps.js';
import { bpfcr, bundle, Container, criuLog, ensureCriuSetup, stagedEntries, suite, waitGone, type Suite } from './runc.js';
import { cgroup2Root } from '../../src/runtime/cgroup.js';

let s: Suite;
const containers: Container[] = [];
let seq = 0;

test.before(async () => {
  requireRoot();
  await ensureCriuSetup();
  s = await suite();
});
test.afterEach.always(async () => {
  while (containers.length) await containers.pop()!.destroy();
});
test.after.always(async () => {
  await s?.cleanup();
});

const EXPECTED: Status = { task0: 1001, task1: 1002, task2: 1003, sk0: 2001, sk1: 2002, tcp: 2003, cgrp: 3001, inode: 4001 };
const values = (st: Status): Status => Object.fromEntries(Object.keys(EXPECTED).map((k) => [k, st[k]!]));

async function holder(): Promise<{ c: Container; status: string }> {
  const name = `bpfcr-ls${process.pid}-${++seq}`;
  const out = join(s.dir, `out-${name}`);
  mkdirSync(out);
  const port = 31000 + ((process.pid + seq) % 9000);
  const b = await bundle(s, name, [], ['/bin/bpfholder', 'storage', '--status', '/out/status', '--port', String(port), '--file', '/out/owned-file', '--cgroup-root', '/host-cgroup2'], {
    mounts: [
      { destination: '/out', source: out, type: 'bind', options: ['rbind', 'rw'] },
      { destination: '/host-cgroup2', source: cgroup2Root(), type: 'bind', options: ['rbind', 'ro'] },
    ],
  });
  const c = new Container(s, name, b);
  containers.push(c);
  await c.startPlain();
  return { c, status: join(out, 'status') };
}

for (const wiped of [false, true]) {
  test.serial(`local storage of tasks, sockets, a cgroup and a file: runc checkpoint → ${wiped ? 'bpfcr gc --all → ' : ''}restore, every value back on its restored owner`, async (t) => {
    t.timeout(120_000);
    const { c, status } = await holder();
    const before = await waitStatus(status, (x) => (x['tick'] ?? 0) >= 3, 30_000, 'bpfholder storage to set its values');
    t.deepEqual(values(before), EXPECTED, 'every owner has its value before the checkpoint');
    const pid = await c.pid();
    const dir = join(s.dir, `img-ls-${++seq}`);
    const ck = await c.checkpoint(dir, ['--tcp-established']);
    t.is(ck.exitCode, 0, `${ck.stderr}\n${criuLog(dir, 'dump').split('\n').filter((l) => /Error|bpfcr/.test(l)).slice(-15).join('\n')}`);
    await waitGone(pid);
    if (wiped) t.is((await bpfcr(s, ['gc', '--all'])).exitCode, 0);
    rmSync(status, { force: true });
    const r = await c.restore(dir);
    const log = criuLog(dir, 'restore');
    t.is(r.code, 0, `${r.stderr}\n${log.split('\n').filter((l) => /Error|bpfcr/.test(l)).slice(-15).join('\n')}`);
    t.regex(log, /post-restore: wrote 8 local-storage value\(s\) of 4 map\(s\)/);
    t.regex(log, wiped ? /recreated 4 map\(s\) from bpfcr\.tar/ : /reusing 4 staged map\(s\) \(zero copy\)/);
    const after = await waitStatus(status, (x) => (x['tick'] ?? 0) > (before['tick'] ?? 0), 30_000, 'the restored holder to read its values back');
    t.deepEqual(values(after), EXPECTED, `every value is back: ${readFileSync(status, 'utf8')}`);
    t.deepEqual(stagedEntries(s.staging), [], 'nothing left staged');
  });
}
