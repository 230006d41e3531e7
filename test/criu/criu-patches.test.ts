/**
 * The CRIU patch series (src/criu-patches) with the CRIU that scripts/provision-criu.sh builds, run as
 * `criu` from PATH: no libbpf in it, TCP/UDP sockets dump on Linux >= 6.16 (SO_PASSCRED/SO_PASSSEC), and the
 * DUMP_VMA/RESTORE_VMA plugin hooks carry mmapped BPF maps (a BPF_F_MMAPABLE array and a ring buffer,
 * mapped as two adjacent VMAs of one anon inode) through a dump and a restore, with a tiny test plugin
 * (src/criu-patches/test/vma-plugin.c) loaded with --libdir instead of the installed plugins.
 */
import test from 'ava';
import { execa } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { ROOT, tempDir } from '../helpers/env.js';

const SRC = join(ROOT, 'src/criu-patches/test');
const PREFIX = process.env['BPFCR_CRIU_PREFIX'] ?? '/opt/bpfcr/criu';
const WRAPPER = process.env['BPFCR_CRIU_WRAPPER'] ?? '/usr/local/sbin/criu';

let dir = '';
let bpffs = '';
let bin = { mmapMap: '', inetSockets: '', pluginDir: '', emptyDir: '' };
const pids: number[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the CRIU patch tests run as root (criu, bpf(2), bpffs): run them with sudo');
  // the patched CRIU (a no-op when it is built from the current patches already)
  const p = await execa('bash', [join(ROOT, 'scripts/provision-criu.sh')], { reject: false, all: true });
  if (p.exitCode !== 0) throw new Error(`scripts/provision-criu.sh failed:\n${p.all}`);
  dir = tempDir('bpfcr-criu-patches-');
  bpffs = join(dir, 'bpffs');
  mkdirSync(bpffs);
  await execa('mount', ['-t', 'bpf', 'bpf', bpffs]);
  bin = { mmapMap: join(dir, 'mmap-map'), inetSockets: join(dir, 'inet-sockets'), pluginDir: join(dir, 'plugins'), emptyDir: join(dir, 'no-plugins') };
  mkdirSync(bin.pluginDir);
  mkdirSync(bin.emptyDir);
  const cflags = ['-O2', '-Wall', '-Wextra', '-Wno-unused-parameter', '-Werror'];
  const inc = process.env['BPFCR_CRIU_INCLUDE'] ?? join(PREFIX, 'include/criu');
  await execa('cc', [...cflags, '-o', bin.mmapMap, join(SRC, 'mmap-map.c')]);
  await execa('cc', [...cflags, '-o', bin.inetSockets, join(SRC, 'inet-sockets.c')]);
  await execa('cc', [...cflags, '-shared', '-fPIC', `-I${inc}`, '-o', join(bin.pluginDir, 'vma-test.so'), join(SRC, 'vma-plugin.c')]);
});

test.after.always(async () => {
  for (const pid of pids) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  if (bpffs) await execa('umount', [bpffs], { reject: false });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Start a test program detached (own session), stdin/stdout /dev/null, stderr into a file. */
function start(cmd: string, args: string[], stderrFile: string): { child: ChildProcess; exited: Promise<number | null> } {
  const err = openSync(stderrFile, 'a');
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'ignore', err] });
  closeSync(err);
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  pids.push(child.pid!);
  return { child, exited };
}

async function waitFor(path: string, ms = 5000): Promise<string> {
  for (let t = 0; t < ms; t += 20) {
    if (existsSync(path)) return readFileSync(path, 'utf8');
    await sleep(20);
  }
  throw new Error(`${path} did not appear`);
}

const alive = (pid: number): boolean => {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
};

/** `criu` from PATH, without /etc/criu/default.conf (whose bpfcr action script is not under test here). */
function criu(args: string[], env: Record<string, string> = {}) {
  return execa('criu', [args[0]!, '--no-default-config', ...args.slice(1)], { reject: false, all: true, env: { ...process.env, ...env } });
}

/** A task killed by a failed restore is reaped by init, which takes a moment here: wait until its pid is free. */
async function waitGone(pid: number, ms = 5000): Promise<void> {
  for (let t = 0; t < ms && existsSync(`/proc/${pid}`); t += 50) await sleep(50);
}
const log = (imgDir: string, name: string): string => {
  try { return readFileSync(join(imgDir, name), 'utf8'); } catch { return ''; }
};
const tail = (s: string): string => s.split('\n').slice(-25).join('\n');

function bpfMapLines(pid: number): string[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => l.endsWith('anon_inode:bpf-map'));
}

async function peek(id: number): Promise<number> {
  return Number((await execa(bin.mmapMap, ['peek', String(id)])).stdout.trim());
}

function tcpRequest(port: number): Promise<string> {
  return new Promise((res, rej) => {
    let data = '';
    const s = net.connect(port, '127.0.0.1');
    s.setTimeout(3000, () => { s.destroy(); rej(new Error('tcp timeout')); });
    s.on('data', (d) => { data += d.toString(); });
    s.on('end', () => res(data.trim()));
    s.on('error', rej);
  });
}

async function udpSend(port: number): Promise<void> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((res, rej) => s.send('x', port, '127.0.0.1', (e) => (e ? rej(e) : res())));
  s.close();
}

test.serial('the criu on PATH is the provisioned build, without libbpf, plugins from /usr/lib/criu', async (t) => {
  const which = (await execa('sh', ['-c', 'command -v criu'])).stdout.trim();
  t.is(realpathSync(which), realpathSync(WRAPPER), 'criu on PATH is the provision-criu wrapper');
  t.regex(readFileSync(WRAPPER, 'utf8'), /bpfcr provision-criu/);
  t.regex((await execa('criu', ['--version'])).stdout, /Version: 4\.1\.1/);
  t.regex((await execa('criu', ['check'], { all: true })).all!, /Looks good/);
  const real = join(PREFIX, 'sbin/criu');
  t.notRegex((await execa('ldd', [real])).stdout, /libbpf/, 'not linked against libbpf');
  const image = readFileSync(real);
  // libbpf API that criu/bpfmap.c calls: present in a libbpf build, absent here
  t.false(image.includes('bpf_map_lookup_batch'), 'no bpfmap.c (libbpf) code in the binary');
  t.true(image.includes('/usr/lib/criu/'), 'plugin dir compiled in');
  const hdr = readFileSync(join(PREFIX, 'include/criu/criu-plugin.h'), 'utf8');
  t.regex(hdr, /CR_PLUGIN_HOOK__DUMP_VMA = 12/);
  t.regex(hdr, /CR_PLUGIN_HOOK__RESTORE_VMA = 13/);
});

test.serial('sockets: a TCP listener and a bound UDP socket dump and restore; SO_PASSCRED survives on a unix socket', async (t) => {
  const info = join(dir, 'inet.info');
  const img = join(dir, 'img-inet');
  mkdirSync(img);
  const p = start(bin.inetSockets, [info], join(dir, 'inet.err'));
  const [tcp, udp] = (await waitFor(info)).trim().split(' ').map(Number) as [number, number];
  await udpSend(udp);
  t.is(await tcpRequest(tcp), 'pong 1 passcred 1');

  const d = await criu(['dump', '-t', String(p.child.pid), '-D', img, '--shell-job', '--tcp-established', '-L', bin.emptyDir, '-v4', '-o', 'dump.log']);
  t.is(d.exitCode, 0, `criu dump failed:\n${d.all}\n${tail(log(img, 'dump.log'))}`);
  t.notRegex(log(img, 'dump.log'), /Can't get 1:1[67] opt/);
  await p.exited; // reaped: the pid is free for the restore

  const r = await criu(['restore', '-D', img, '--shell-job', '-d', '--tcp-established', '-L', bin.emptyDir, '-v4', '-o', 'restore.log']);
  t.is(r.exitCode, 0, `criu restore failed:\n${r.all}\n${tail(log(img, 'restore.log'))}`);
  t.true(alive(p.child.pid!), 'restored process runs');
  await udpSend(udp);
  t.is(await tcpRequest(tcp), 'pong 2 passcred 1', 'the restored listener accepts, the UDP socket receives, state kept');
});

test.serial('plugin hooks: mmapped BPF maps (array + two ring buffer VMAs) are claimed at dump and mapped again at restore', async (t) => {
  const info = join(dir, 'mmap.info');
  const img = join(dir, 'img-mmap');
  mkdirSync(img);
  const p = start(bin.mmapMap, ['run', info], join(dir, 'mmap.err'));
  const pid = p.child.pid!;
  const vmas = (await waitFor(info)).trim().split('\n').map((l) => l.split(' '));
  t.deepEqual(vmas.map((v) => v[2]), ['ring-consumer', 'ring-producer', 'array']);
  const arrayId = Number(vmas[2]![1]);
  const before = bpfMapLines(pid);
  const fdsBefore = readdirSync(`/proc/${pid}/fd`).sort();
  t.is(before.length, 3, before.join('\n'));
  await sleep(100);
  t.true((await peek(arrayId)) > 0, 'the task counts in the mmapped array');

  const env = { VMA_TEST_INFO: info, VMA_TEST_PIN: bpffs };
  const d = await criu(['dump', '-t', String(pid), '-D', img, '--shell-job', '-L', bin.pluginDir, '-v4', '-o', 'dump.log'], env);
  const dlog = log(img, 'dump.log');
  t.is(d.exitCode, 0, `criu dump failed:\n${d.all}\n${tail(dlog)}`);
  // each VMA claimed with its own start/end/pgoff, the ring buffer's two as well
  for (const l of before) {
    const [range, , off] = l.split(/\s+/) as [string, string, string];
    const [s, e] = range.split('-');
    const re = new RegExp(`Mapping 0x${s}-0x${e} pgoff ${Number.parseInt(off, 16) ? `0x${Number.parseInt(off, 16).toString(16)}` : '0'} of ${pid} \\(anon_inode:bpf-map\\) claimed by a plugin`);
    t.regex(dlog, re);
  }
  t.is(await p.exited, null, 'the dumped task was killed, not exited on a check');
  const atDump = await peek(arrayId); // kept alive by the plugin's pin
  await sleep(100);
  t.is(await peek(arrayId), atDump, 'nobody counts while the task is dumped');

  // a plugin that fails RESTORE_VMA fails the restore, with the mapping named
  const bad = await criu(['restore', '-D', img, '--shell-job', '-d', '-L', bin.pluginDir, '-v4', '-o', 'restore-refused.log'], { VMA_TEST_REFUSE: '1' });
  t.not(bad.exitCode, 0);
  t.regex(log(img, 'restore-refused.log'), /Plugin failed to restore mapping 0x[0-9a-f]+-0x[0-9a-f]+ \(id 0x[0-9a-f]+\) of \d+: -5/);
  await waitGone(pid);

  const r = await criu(['restore', '-D', img, '--shell-job', '-d', '-L', bin.pluginDir, '-v4', '-o', 'restore.log']);
  const rlog = log(img, 'restore.log');
  t.is(r.exitCode, 0, `criu restore failed:\n${r.all}\n${tail(rlog)}`);
  t.is((rlog.match(/Plugin restored mapping/g) ?? []).length, 3);
  t.deepEqual(bpfMapLines(pid), before, 'same addresses, protections and offsets');
  await sleep(300);
  t.true(alive(pid), 'restored task still runs (it exits when the mapping is not the memory it counted in)');
  const after = await peek(arrayId);
  t.true(after > atDump, `the restored task counts on in the same map (${atDump} -> ${after})`);
  t.deepEqual(readdirSync(`/proc/${pid}/fd`).sort(), fdsBefore, 'the fds RESTORE_VMA returned were closed');
});

test.serial('without a plugin that claims it, an mmapped BPF map fails the dump with a clear message and the task runs on', async (t) => {
  const info = join(dir, 'mmap2.info');
  const img = join(dir, 'img-noplugin');
  mkdirSync(img);
  const p = start(bin.mmapMap, ['run', info], join(dir, 'mmap2.err'));
  await waitFor(info);
  const d = await criu(['dump', '-t', String(p.child.pid), '-D', img, '--shell-job', '-L', bin.emptyDir, '-v4', '-o', 'dump.log']);
  t.not(d.exitCode, 0);
  t.regex(log(img, 'dump.log'), /No plugin handles mapping 0x[0-9a-f]+-0x[0-9a-f]+ of \d+ \(anon_inode:bpf-map, mode 600\)/);
  await sleep(100);
  t.true(alive(p.child.pid!), 'the task was resumed');
});
