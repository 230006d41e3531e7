/**
 * src/runtime, without a daemon: the container whose init is a pid is found in runc's and in
 * containerd's runc roots (state.json as runc writes it), and the runtime command line running a
 * hook or a dump is parsed as the shim's runc is called (argv seen here with containerd 1.6.20).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dumpLeavesRunning, findContainer, restoreRunningHook } from '../../src/runtime/index.js';
import { tempDir } from '../helpers/env.js';

function state(root: string, id: string, pid: number, bundle: string): void {
  mkdirSync(join(root, id), { recursive: true });
  writeFileSync(join(root, id, 'state.json'), JSON.stringify({ id, init_process_pid: pid, config: { labels: [`bundle=${bundle}`, 'io.bpfcr.pins=/pins'] } }));
}

test.serial('findContainer: runc root and containerd per-namespace roots', (t) => {
  const dir = tempDir('bpfcr-runtime-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const saved = { r: process.env['BPFCR_RUNC_ROOT'], c: process.env['BPFCR_CONTAINERD_RUNC_ROOT'] };
  t.teardown(() => {
    for (const [k, v] of [['BPFCR_RUNC_ROOT', saved.r], ['BPFCR_CONTAINERD_RUNC_ROOT', saved.c]] as const) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  });
  process.env['BPFCR_RUNC_ROOT'] = join(dir, 'runc');
  process.env['BPFCR_CONTAINERD_RUNC_ROOT'] = join(dir, 'containerd');
  state(join(dir, 'runc'), 'plain', 999_991, '/b/plain');
  state(join(dir, 'containerd', 'k8s.io'), 'ctd', 999_992, '/run/containerd/io.containerd.runtime.v2.task/k8s.io/ctd');
  t.deepEqual(findContainer(999_991), { runtime: 'runc', id: 'plain', bundle: '/b/plain', initPid: 999_991 });
  t.deepEqual(findContainer(999_992), { runtime: 'containerd', id: 'ctd', bundle: '/run/containerd/io.containerd.runtime.v2.task/k8s.io/ctd', initPid: 999_992 });
  t.is(findContainer(999_993), undefined);
});

/** a process with the given argv (sh -c 'sleep' keeps ARGS in its argv), killed at teardown */
async function withArgv(args: string[], fn: (pid: number) => void): Promise<void> {
  const p = spawn('/bin/sh', ['-c', 'sleep 30', ...args], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 100));
  try { fn(p.pid!); } finally { p.kill('SIGKILL'); }
}

test.serial('the shim\'s runc command lines: restore image dir and bundle, leave-running', async (t) => {
  const root = ['runc', '--root', '/run/containerd/runc/default', '--log', '/x/log.json', '--log-format', 'json'];
  await withArgv([...root, 'restore', '--image-path', '/tmp/ctrd-checkpoint1', '--work-path', '/w', '--detach', '--pid-file', '/p', '-no-subreaper', '--bundle', '/b/web', 'web'], (pid) => {
    const r = restoreRunningHook(pid);
    t.is(r?.imageDir, '/tmp/ctrd-checkpoint1');
    t.is(r?.bundle, '/b/web');
    t.is(r?.command, 'restore');
  });
  await withArgv([...root, 'checkpoint', '--image-path', '/tmp/ctd-checkpoint1', '--work-path', '/w', '--file-locks', '--leave-running', 'web'], (pid) => {
    t.true(dumpLeavesRunning(pid));
    t.is(restoreRunningHook(pid), undefined, 'a checkpoint is no restore');
  });
  await withArgv([...root, 'checkpoint', '--image-path', '/tmp/ctd-checkpoint2', '--work-path', '/w', 'web'], (pid) => {
    t.false(dumpLeavesRunning(pid), 'ctr tasks checkpoint --exit: no --leave-running');
  });
});
