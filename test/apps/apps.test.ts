/**
 * The libbpf fixture apps run on the host (no container): their BPF globals, maps, ring buffer
 * and attachments really work, and they hold the mmapped maps and fds that checkpoint/restore
 * of real eBPF apps has to deal with.
 */
import test from 'ava';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { chmodSync, copyFileSync, readdirSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { requireRoot, tempDir } from '../helpers/env.js';
import { APPS_DIR, bpfMapVmas, ensureApps, ensureTracefs, readStatus, startApp, waitStatus, type RunningApp } from '../helpers/apps.js';

test.before(async () => {
  requireRoot();
  await ensureApps();
  await ensureTracefs();
});

/** A temp dir and a started app, both gone after the test whatever happens. */
function run(t: { teardown: (fn: () => Promise<void> | void) => void }, name: string, args: string[] = []): { app: RunningApp; dir: string } {
  const dir = tempDir('bpfcr-apps-');
  // a unique comm: other counters on this host (e.g. in containers) must not feed this one's BPF
  const app = startApp(name, join(dir, 'status'), args, { comm: `${name.slice(0, 4)}-${randomBytes(4).toString('hex')}` });
  t.teardown(async () => {
    await app.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  return { app, dir };
}

/** A temp dir removed after the test. */
function dir0(t: { teardown: (fn: () => void) => void }): string {
  const d = tempDir('bpfcr-apps-');
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function fdTargets(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ''; } });
}

function tcpAnswer(port: number): Promise<string> {
  return new Promise((res, rej) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    s.setTimeout(5000, () => { s.destroy(); rej(new Error(`no answer on 127.0.0.1:${port} within 5 s (got ${JSON.stringify(got)})`)); });
    s.on('data', (d) => { got += d.toString(); });
    s.on('end', () => res(got));
    s.on('error', rej);
  });
}

function udpAnswer(port: number): Promise<string> {
  return new Promise((res, rej) => {
    const s = createSocket('udp4');
    const timer = setTimeout(() => { s.close(); rej(new Error(`no UDP answer from 127.0.0.1:${port} within 5 s`)); }, 5000);
    s.on('message', (m) => { clearTimeout(timer); s.close(); res(m.toString()); });
    s.on('error', (e) => { clearTimeout(timer); s.close(); rej(e); });
    s.send('hi', port, '127.0.0.1');
  });
}

test.serial('counter: BPF counts its own syscalls, sees user_seq, and both tracepoints fire', async (t) => {
  const { app, dir } = run(t, 'counter', ['--interval-ms', '20']);
  const s = await waitStatus(join(dir, 'status'), (x) => x.tick! >= 10, 10_000, 'counter tick >= 10', app);
  t.is(s.pid, app.pid, 'pid is getpid() of the process we started');
  t.is(s.step, 1, '.data step starts at its initial value');
  t.true(s.hits! >= 10 * 3, `raw_tp/sys_enter: several syscalls per tick counted (hits=${s.hits})`);
  t.is(s.user_seq, s.tick, 'user space bumps .bss user_seq once per tick');
  t.is(s.seen_seq, s.user_seq, 'BPF copied user_seq into seen_seq (syscalls follow the bump)');
  t.is(s.tp_hits, s.tick, 'tracepoint syscalls/sys_enter_getppid fired once per tick (one getppid per tick)');
  t.true(s.counts! >= 3, `the counts hash map has an entry per syscall number seen (counts=${s.counts})`);
  t.true(s.counts_sum! >= s.tick!, 'counts values grow with the syscalls');
  const later = await waitStatus(join(dir, 'status'), (x) => x.tick! >= s.tick! + 5, 10_000, 'counter 5 more ticks', app);
  t.true(later.hits! > s.hits! && later.tp_hits! > s.tp_hits! && later.counts_sum! > s.counts_sum!, 'counters keep rising');
  t.is(later.seen_seq, later.user_seq);
});

test.serial('counter: the control file sets .data step and hits then grow by multiples of it', async (t) => {
  const { app, dir } = run(t, 'counter', ['--interval-ms', '20', '--control', join(dir0(t), 'absent')]);
  // (an absent control file is fine: the step stays 1)
  await waitStatus(join(dir, 'status'), (x) => x.tick! >= 3, 10_000, 'counter running', app);
  t.is(readStatus(join(dir, 'status')).step, 1);

  const ctl = join(dir, 'control');
  const { app: app2, dir: dir2 } = run(t, 'counter', ['--interval-ms', '20', '--control', ctl]);
  const status = join(dir2, 'status');
  await waitStatus(status, (x) => x.tick! >= 3, 10_000, 'second counter running', app2);
  // control written atomically (tmp + rename): the app must never read half a number
  const setControl = (v: string): void => { writeFileSync(`${ctl}.tmp`, v); renameSync(`${ctl}.tmp`, ctl); };
  setControl('garbage\n');
  await waitStatus(status, (x) => x.tick! >= 6, 10_000, 'ticks after a garbled control file', app2);
  t.is(readStatus(status).step, 1, 'an invalid control file leaves step alone');

  const STEP = 997;
  setControl(`${STEP}\n`);
  // the first tick with the new step still counted a few syscalls at the old step: start after it
  const first = await waitStatus(status, (x) => x.step === STEP, 10_000, `step=${STEP}`, app2);
  const a = await waitStatus(status, (x) => x.tick! > first.tick!, 10_000, 'one full tick at the new step', app2);
  const b = await waitStatus(status, (x) => x.tick! >= a.tick! + 5, 10_000, '5 more ticks', app2);
  const dHits = b.hits! - a.hits!;
  t.is(dHits % STEP, 0, `hits grow by multiples of step (Δhits=${dHits})`);
  t.true(dHits / STEP >= b.tick! - a.tick!, `at least one counted syscall per tick (Δhits/step=${dHits / STEP})`);
  t.is(app2.pid, b.pid);
});

test.serial('counter: holds mmapped .rodata/.data/.bss and btf, prog, link, perf_event fds', async (t) => {
  const { app, dir } = run(t, 'counter');
  await waitStatus(join(dir, 'status'), (x) => x.tick! >= 2, 10_000, 'counter running', app);
  const vmas = bpfMapVmas(app.pid);
  t.true(vmas.length >= 3, `three internal maps mmapped:\n${vmas.join('\n')}`);
  t.true(vmas.some((l) => / r--s /.test(l)), '.rodata is mapped read-only (frozen)');
  t.true(vmas.filter((l) => / rw-s /.test(l)).length >= 2, '.data and .bss are mapped read-write');
  const fds = fdTargets(app.pid);
  const n = (x: string): number => fds.filter((f) => f === x).length;
  t.true(n('anon_inode:btf') >= 1, fds.join(' '));
  t.is(n('anon_inode:bpf-prog'), 2, fds.join(' '));
  t.is(n('anon_inode:bpf-map'), 4, 'counts, .rodata, .data, .bss');
  t.true(n('anon_inode:bpf_link') >= 1, fds.join(' '));
  t.is(n('anon_inode:[perf_event]'), 1, 'the tracepoint is attached through a perf event');
});

test.serial('counter --no-tp: no tracepoint, no perf_event fd, the raw tracepoint still counts', async (t) => {
  const { app, dir } = run(t, 'counter', ['--interval-ms', '20', '--no-tp']);
  const s = await waitStatus(join(dir, 'status'), (x) => x.tick! >= 5, 10_000, 'counter --no-tp running', app);
  t.is(s.tp_hits, 0);
  t.true(s.hits! > 0);
  t.false(fdTargets(app.pid).includes('anon_inode:[perf_event]'));
});

test.serial('counter --listen: TCP and UDP on 127.0.0.1 answer "ok"', async (t) => {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const { app, dir } = run(t, 'counter', ['--interval-ms', '20', '--listen', String(port)]);
  const status = join(dir, 'status');
  const s = await waitStatus(status, (x) => x.tick! >= 1, 10_000, 'counter listening', app);
  t.is(s.listen, port);
  t.is(s.accepted, 0);
  t.is(await tcpAnswer(port), 'ok\n');
  t.is(await udpAnswer(port), 'ok\n');
  await waitStatus(status, (x) => x.accepted === 1 && x.udp === 1, 5000, 'accepted=1 udp=1', app);
  t.is(await tcpAnswer(port), 'ok\n');
  await waitStatus(status, (x) => x.accepted === 2, 5000, 'accepted=2', app);
});

test.serial('ringtrace: exec/exit events of its own children arrive through the ring buffer', async (t) => {
  const { app, dir } = run(t, 'ringtrace', ['--interval-ms', '30']);
  const status = join(dir, 'status');
  const s = await waitStatus(status, (x) => x.own_exec! >= 3 && x.own_exit! >= 3, 10_000, 'own_exec >= 3 and own_exit >= 3', app);
  t.is(s.pid, app.pid);
  t.is(s.drops, 0);
  t.true(s.events! >= s.own_exec! + s.own_exit!);
  const later = await waitStatus(status, (x) => x.own_exec! >= s.own_exec! + 3 && x.own_exit! >= s.own_exit! + 3, 10_000, 'more own events', app);
  t.true(later.events! > s.events!);

  const vmas = bpfMapVmas(app.pid);
  t.true(vmas.length >= 3, `ring buffer consumer + producer/data pages and .bss mmapped:\n${vmas.join('\n')}`);
  t.true(vmas.some((l) => / r--s 00001000 /.test(l)), 'producer page + data mapped read-only at page offset 1');
  const fds = fdTargets(app.pid);
  t.is(fds.filter((f) => f === 'anon_inode:bpf_link').length, 2, fds.join(' '));
  t.true(fds.includes('anon_inode:btf'));
  t.true(fds.includes('anon_inode:[eventpoll]'), 'ring_buffer__poll uses epoll');
});

test.serial('ringtrace --child: own events are counted by the child\'s comm', async (t) => {
  // a copy of `true` under a unique name: the exec'd task's comm is that name
  const dir = dir0(t);
  const comm = `rtch-${randomBytes(4).toString('hex')}`;
  const child = join(dir, comm);
  copyFileSync('/bin/true', child);
  chmodSync(child, 0o755);
  const { app, dir: d2 } = run(t, 'ringtrace', ['--interval-ms', '30', '--child', child]);
  const s = await waitStatus(join(d2, 'status'), (x) => x.own_exec! >= 3 && x.own_exit! >= 3, 10_000, `own events of ${comm}`, app);
  t.true(s.events! >= 6);
  // one child per tick, and nothing else on the host has this comm
  t.true(s.own_exec! <= s.tick! && s.own_exit! <= s.own_exec!, `own events never exceed the children spawned: ${JSON.stringify(s)}`);
});

test.serial('apps stop cleanly on SIGTERM and refuse bad arguments with one line and exit 1', async (t) => {
  for (const name of ['counter', 'ringtrace']) {
    const { app, dir } = run(t, name);
    await waitStatus(join(dir, 'status'), (x) => x.tick! >= 1, 10_000, `${name} running`, app);
    t.is(await app.stop('SIGTERM'), 0, `${name} exits 0 on SIGTERM`);
    t.is(app.stderr(), '');

    const noStatus = await execa(join(APPS_DIR, name), [], { reject: false });
    t.is(noStatus.exitCode, 1);
    t.is(noStatus.stderr, `${name}: --status PATH is required`);
    const bad = await execa(join(APPS_DIR, name), ['--status', join(dir, 's'), '--bogus'], { reject: false });
    t.is(bad.exitCode, 1);
    t.regex(bad.stderr, new RegExp(`^${name}: unknown argument --bogus`));
    t.notRegex(bad.stderr, /\n/);
  }
  const badPort = await execa(join(APPS_DIR, 'counter'), ['--status', '/tmp/x', '--listen', '0'], { reject: false });
  t.is(badPort.exitCode, 1);
  t.is(badPort.stderr, 'counter: --listen: not a port: 0');
});
