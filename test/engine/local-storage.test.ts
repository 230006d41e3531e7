/**
 * Local-storage maps outside CRIU: the owners of a process tree (src/maps/owners.ts) found and found
 * again by reference, the "owners" data layout, and `bpfcr dump`/`restore` of a real holder (dump
 * carries one value per owner of the dumped process; restore recreates the maps and says their
 * values were not written: only a CRIU restore brings their owners back).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { bpfcr, freshBpffs, HOLDER, requireRoot } from '../helpers/env.js';
import { waitStatus } from '../helpers/apps.js';
import { ownerRecords } from '../../src/maps/strategies/local-storage.js';
import { RestoredOwners, TreeOwners } from '../../src/maps/owners.js';
import { parseStorage } from '../../src/criu/storage.js';
import { cgroup2Root } from '../../src/runtime/cgroup.js';

test.before(() => requireRoot());

const record = (ref: string, value: Buffer): Buffer => {
  const head = Buffer.alloc(2);
  head.writeUInt16LE(Buffer.byteLength(ref));
  return Buffer.concat([head, Buffer.from(ref), value]);
};

test('owners layout: records parse back; truncated or oversized ones are refused naming the record', (t) => {
  const v = Buffer.from('0102030405060708', 'hex');
  const chunk = Buffer.concat([record('task 1', v), record('socket 1 3', v)]);
  t.deepEqual(ownerRecords(chunk, 8).map((r) => [r.ref, r.value.toString('hex')]), [['task 1', v.toString('hex')], ['socket 1 3', v.toString('hex')]]);
  t.throws(() => ownerRecords(chunk.subarray(0, chunk.length - 1), 8), { message: /record 2: bad reference length 10 at byte 16/ });
  t.throws(() => ownerRecords(Buffer.concat([chunk, Buffer.from([7])]), 8), { message: /record 3: truncated at byte 36/ });
  const zero = Buffer.alloc(10);
  t.throws(() => ownerRecords(zero, 8), { message: /record 1: bad reference length 0/ });
});

test('bpfcr-storage.txt lines: "<index> <map id>", anything else refused naming the line', (t) => {
  t.deepEqual(parseStorage('0 17\n3 42\n'), [{ index: 0, id: 17 }, { index: 3, id: 42 }]);
  t.throws(() => parseStorage('0 17\n3 x\n'), { message: /bpfcr-storage\.txt line 2: cannot parse "3 x"/ });
});

test('owners of a tree: this process\'s tasks, sockets and files by reference, found again by the same reference', async (t) => {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const dir = mkdtempSync(join(tmpdir(), 'bpfcr-owners-'));
  const file = openSync(join(dir, 'f'), 'w');
  const tree = new TreeOwners([process.pid]);
  const again = new RestoredOwners([process.pid]);
  try {
    const tasks = tree.of('task').map((o) => o.ref);
    t.true(tasks.includes(`task ${process.pid}`), `this process (not in a pid namespace of its own) is "task ${process.pid}": ${tasks.slice(0, 3).join(', ')}`);
    t.true(tasks.length > 1, 'its threads too');
    const files = tree.of('file').map((o) => o.ref);
    t.true(files.includes(`file ${process.pid} ${file}`), files.join(', '));
    t.true(tree.of('socket').length >= 1, 'the listening socket');
    for (const ref of [`task ${process.pid}`, `file ${process.pid} ${file}`, tree.of('socket')[0]!.ref]) closeSync(again.open(ref));
    t.throws(() => again.open(`socket ${process.pid} ${file}`), { message: new RegExp(`^owner "socket ${process.pid} ${file}": fd ${file} is not a socket in the restored process`) });
    t.throws(() => again.open('task 999999999'), { message: /^owner "task 999999999": no restored task has pid 999999999 in the container/ });
    t.throws(() => again.open('cgroup /../..'), { message: /climbs out of the container's cgroup/ });
    t.throws(() => again.open('pid 1'), { message: /^owner "pid 1" is not an owner reference/ });
  } finally {
    tree.close();
    again.close();
    closeSync(file);
    rmSync(dir, { recursive: true, force: true });
    server.close();
  }
});

test('bpfcr dump/restore of a local-storage holder: one value per owner of the dumped process, the rest counted or said why; restore recreates the maps and says the values wait for their owners', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'bpfcr-ls-'));
  const fs = await freshBpffs();
  const child = spawn(HOLDER, ['storage', '--status', join(work, 'status'), '--file', join(work, 'owned'), '--cgroup-root', cgroup2Root()], { stdio: 'ignore' });
  t.teardown(async () => { child.kill('SIGKILL'); rmSync(work, { recursive: true, force: true }); await fs.cleanup(); });
  await waitStatus(join(work, 'status'), (s) => (s['tick'] ?? 0) >= 2, 10_000, 'bpfholder storage');
  const archive = join(work, 'ls.tar');
  const d = await bpfcr(['dump', '--pid', String(child.pid), '-o', archive]);
  t.is(d.exitCode, 0, d.stderr);
  const ins = await bpfcr(['inspect', archive]);
  // the holder's two children are not dumped (--pid names one process): their entries stay behind
  t.regex(ins.stdout, /ls_task: carried 1 value\(s\), one per task owner; 2 entries of task owners outside the checkpointed processes left behind/, ins.stdout);
  t.regex(ins.stdout, /ls_sk: carried 3 value\(s\)/);
  t.regex(ins.stdout, /ls_inode: carried 1 value\(s\), one per file owner/);
  const j = JSON.parse((await bpfcr(['inspect', archive, '--json'])).stdout) as { manifest: { maps: { name: string; owners?: { kind: string; carried: number } }[] } };
  t.deepEqual(j.manifest.maps.map((m) => [m.name, m.owners?.kind, m.owners?.carried]), [['ls_task', 'task', 1], ['ls_sk', 'socket', 3], ['ls_cgrp', 'cgroup', 1], ['ls_inode', 'file', 1]]);
  const r = await bpfcr(['restore', archive, '--pin-dir', fs.dir]);
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stderr, /bpfcr restore: ls_sk: created without its 3 value\(s\): they belong to the dumped tasks, sockets, files and cgroups, which only a CRIU restore of those processes brings back/);
  const info = JSON.parse((await execa('bpftool', ['map', 'show', 'pinned', join(fs.dir, 'ls_task'), '--json'])).stdout) as { type: string };
  t.is(info.type, 'task_storage');
  t.is(readFileSync(join(work, 'status'), 'utf8').includes('task0=1001'), true, 'the holder still has its own values (dump reads, never moves)');
});
