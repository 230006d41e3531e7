/**
 * The hooks read the runtime-spec state from a stdin that may be non-blocking (a runtime's pipe, or
 * one that something switched to O_NONBLOCK) and whose writer may take its time: they must wait
 * for the data without spinning a CPU, and lose nothing read before a read would have blocked
 * (issue 11). Run as podman runs them (the hook shims), and as `bpfcr hook`.
 */
import test from 'ava';
import { closeSync, constants, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { libc } from '../../src/syscall/libc.js';
import { CLI, requireRoot, ROOT, tempDir } from '../helpers/env.js';

test.before(() => requireRoot());

/** CPU seconds (user + system) a live process has used, from /proc/PID/stat. */
function cpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

const NOT_OURS = JSON.stringify({ ociVersion: '1.0.2', id: 'c'.repeat(64), status: 'creating', bundle: '/nonexistent/bundle', annotations: { 'io.container.manager': 'libpod' } });

/** fcntl(fd, F_SETFL, flags | O_NONBLOCK) (Node has no fcntl). */
function setNonBlocking(fd: number): void {
  const { libc: lib } = libc();
  const fcntl = lib.func('int fcntl(int, int, int)') as unknown as (fd: number, cmd: number, arg: number) => number;
  const F_GETFL = 3;
  const F_SETFL = 4;
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | constants.O_NONBLOCK) !== 0) throw new Error('fcntl F_SETFL failed');
}

/**
 * Start `cmd` with stdin the read end of a FIFO, the write end held open here (`first` already
 * in it): a read finds no data and no EOF until `write`/`close`. The read end is made O_NONBLOCK
 * once the child runs (the open file description is shared; spawn itself clears O_NONBLOCK on a
 * child's stdio), so such a read fails with EAGAIN, as on a runtime's non-blocking pipe.
 */
function withNonBlockingStdin(cmd: string, args: string[], env: NodeJS.ProcessEnv, first = '') {
  const dir = tempDir('bpfcr-stdin-');
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const rfd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const wfd = openSync(fifo, constants.O_WRONLY);
  if (first) writeSync(wfd, first);
  const child = spawn(cmd, args, { stdio: [rfd, 'pipe', 'pipe'], env });
  setNonBlocking(rfd);
  closeSync(rfd);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  let open = true;
  return {
    pid: child.pid!,
    write: (s: string) => writeSync(wfd, s),
    close: () => { if (open) closeSync(wfd); open = false; },
    done: async () => ({ code: await exited, stderr }),
    cleanup: () => {
      if (open) closeSync(wfd);
      open = false;
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const how of ['hooks/prestart', 'bpfcr hook prestart'] as const) {
  test.serial(`${how}: a non-blocking stdin with no data yet is waited for without spinning, and nothing read is lost`, async (t) => {
    const [cmd, args] = how === 'hooks/prestart'
      ? [join(ROOT, 'hooks/prestart'), []]
      : [process.execPath, [CLI, 'hook', 'prestart']];
    // half the state at once (read before the first EAGAIN), the rest later: both halves must count
    const h = withNonBlockingStdin(cmd, args, { BPFCR_CONFIG: '', BPFCR_HOOK_LOG: '', PATH: process.env['PATH'] ?? '' }, NOT_OURS.slice(0, 40));
    t.teardown(h.cleanup);
    await sleep(300);
    const before = cpuSeconds(h.pid);
    await sleep(1500);
    const used = cpuSeconds(h.pid) - before;
    t.true(used < 0.3, `the hook used ${used.toFixed(2)} s of CPU in 1.5 s while waiting for stdin`);
    h.write(NOT_OURS.slice(40));
    h.close();
    const r = await h.done();
    t.is(r.code, 0, r.stderr);
    t.is(r.stderr, '');
  });
}

test.serial('hooks/poststop: malformed state on a slow non-blocking stdin is reported as such, once the writer closes', async (t) => {
  const h = withNonBlockingStdin(join(ROOT, 'hooks/poststop'), [], { BPFCR_CONFIG: '', BPFCR_HOOK_LOG: '' });
  t.teardown(h.cleanup);
  await sleep(300);
  h.write('{"ociVersion": "1.0.2", "id": ');
  await sleep(300);
  h.close();
  const r = await h.done();
  t.is(r.code, 1);
  t.regex(r.stderr, /^bpfcr poststop: OCI state on stdin: not valid JSON/);
  t.is(r.stderr.trim().split('\n').length, 1);
});
