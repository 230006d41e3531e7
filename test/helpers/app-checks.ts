/**
 * What "the application came back" means for the fixture apps (test/fixtures/apps), checked the same
 * way after runc and podman restores:
 *   counter:   it keeps running and its counters continue (no reset); user space and the BPF program
 *              still share one memory through the restored mappings, both ways (user_seq written by user
 *              space is seen by BPF as seen_seq; hits written by BPF are read by user space; a new .data
 *              step written by user space changes what BPF adds); the perf-event tracepoint still fires
 *              (tp_hits); with --listen, its TCP socket still accepts.
 *   ringtrace: ring-buffer events keep arriving.
 *   sockwatch: the sockets its cgroup program counted continue (no reset), and keep up with the sockets
 *              the app creates: the cgroup link is attached to the container's cgroup again.
 *   tailcall:  its counters continue (no reset) and tail calls work again: the prog array's slot 1
 *              (filled by libbpf at load, emptied by the kernel when the map's last user fd closes)
 *              holds on_tail, so sys_enter events counted by on_enter reach on_tail and count there too.
 */
import type { ExecutionContext } from 'ava';
import { execa } from 'execa';
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { bpfKindOfLink } from '../../src/maps/fdinfo.js';
import { waitStatus, type Status } from './apps.js';

/** A counter snapshot worth comparing against: it has run a few ticks and seen events. */
export function counterWarm(status: string): Promise<Status> {
  return waitStatus(status, (s) => (s['tick'] ?? 0) >= 5 && (s['hits'] ?? 0) > 0 && (s['tp_hits'] ?? 0) > 0 && (s['counts'] ?? 0) > 0, 30_000, 'the counter app to warm up');
}

export async function counterContinues(t: ExecutionContext, status: string, control: string, before: Status, what: string): Promise<Status> {
  const s1 = await waitStatus(status, (s) => (s['tick'] ?? 0) >= (before['tick'] ?? 0) + 5, 30_000, `${what}: the counter app ticking again`);
  for (const k of ['hits', 'tp_hits', 'user_seq', 'seen_seq', 'counts_sum']) {
    t.true((s1[k] ?? 0) > (before[k] ?? 0), `${what}: ${k} continued from ${before[k]} (now ${s1[k]}), not reset`);
  }
  t.true(Math.abs((s1['user_seq'] ?? 0) - (s1['seen_seq'] ?? 0)) <= 1, `${what}: BPF sees user space's writes (user_seq ${s1['user_seq']}, seen_seq ${s1['seen_seq']})`);
  const step = 100_000 + (before['tick'] ?? 0);
  writeFileSync(control, `${step}\n`);
  const s2 = await waitStatus(status, (s) => s['step'] === step && (s['hits'] ?? 0) >= (s1['hits'] ?? 0) + step, 15_000, `${what}: BPF adding the new .data step ${step}`);
  t.is(s2['step'], step, `${what}: user space's .data write reached the BPF program`);
  return s2;
}

/** With counter --listen PORT: connect from inside the task's network namespace; it answers "ok". */
export async function counterAccepts(t: ExecutionContext, pid: number, port: number, what: string): Promise<void> {
  // podman 4.3 restores a --network none container into a fresh network namespace whose loopback is
  // down (CRIU does not own that namespace: runc passes it as external). The listener is there; bring
  // lo up (idempotent) the way podman does at `run`, then connect.
  await execa('nsenter', ['-t', String(pid), '-n', 'ip', 'link', 'set', 'lo', 'up']);
  const r = await execa('nsenter', ['-t', String(pid), '-n', '/bin/busybox', 'nc', '-w', '2', '127.0.0.1', String(port)], { reject: false, input: '' });
  t.is(String(r.stdout).trim(), 'ok', `${what}: the TCP listener answers after restore (${String(r.stderr).trim()})`);
}

export function ringWarm(status: string): Promise<Status> {
  return waitStatus(status, (s) => (s['own_exec'] ?? 0) >= 3 && (s['own_exit'] ?? 0) >= 3, 30_000, 'ringtrace to see its children');
}

export async function ringContinues(t: ExecutionContext, status: string, before: Status, what: string): Promise<void> {
  const s = await waitStatus(status, (x) => (x['own_exec'] ?? 0) >= (before['own_exec'] ?? 0) + 5 && (x['tick'] ?? 0) > (before['tick'] ?? 0), 30_000, `${what}: ring-buffer events arriving again`);
  t.true((s['events'] ?? 0) > (before['events'] ?? 0), `${what}: events continued from ${before['events']} (now ${s['events']})`);
  t.is(s['drops'] ?? 0, 0, `${what}: no ring-buffer drops`);
}

/** A tailcall snapshot worth comparing against: on_enter has tail-called into on_tail. */
export function tailWarm(status: string): Promise<Status> {
  return waitStatus(status, (s) => (s['tail'] ?? 0) > 0, 30_000, 'the tailcall app to reach its tail-call target');
}

export async function tailContinues(t: ExecutionContext, status: string, before: Status, what: string): Promise<Status> {
  const s1 = await waitStatus(status, (s) => (s['tick'] ?? 0) > (before['tick'] ?? 0), 30_000, `${what}: the tailcall app ticking again`);
  for (const k of ['enter', 'tail']) {
    t.true((s1[k] ?? 0) >= (before[k] ?? 0), `${what}: ${k} continued from ${before[k]} (now ${s1[k]}), not reset`);
  }
  const s2 = await waitStatus(status, (s) => (s['tick'] ?? 0) >= (s1['tick'] ?? 0) + 5, 30_000, `${what}: the tailcall app ticking on`);
  const enter = (s2['enter'] ?? 0) - (s1['enter'] ?? 0);
  const tail = (s2['tail'] ?? 0) - (s1['tail'] ?? 0);
  t.true(enter > 0, `${what}: on_enter still fires (enter ${s1['enter']} -> ${s2['enter']})`);
  t.true(tail > 0, `${what}: tail calls work again (tail ${s1['tail']} -> ${s2['tail']}; 0 means slot 1 of jmp is empty)`);
  return s2;
}

/**
 * fd number → what it is, for the BPF-ish fds of a process: map, prog, link (created and reopened
 * links read differently: bpf_link / bpf-link), btf, perf. A restore must give each back at its number.
 */
export function bpfFds(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let link = '';
    try { link = readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
    const kind = bpfKindOfLink(link) ?? (link === 'anon_inode:btf' ? 'btf' : link === 'anon_inode:[perf_event]' ? 'perf' : undefined);
    if (kind) out[fd] = kind;
  }
  return out;
}

/** A sockwatch snapshot worth comparing against: the cgroup program has counted the app's sockets. */
export function sockWarm(status: string): Promise<Status> {
  return waitStatus(status, (s) => (s['tick'] ?? 0) >= 5 && (s['socks'] ?? 0) >= 5, 30_000, 'sockwatch to count its sockets');
}

export async function sockContinues(t: ExecutionContext, status: string, before: Status, what: string): Promise<void> {
  const s1 = await waitStatus(status, (s) => (s['tick'] ?? 0) >= (before['tick'] ?? 0) + 10, 30_000, `${what}: sockwatch ticking again`);
  t.true((s1['socks'] ?? 0) >= (before['socks'] ?? 0), `${what}: socks continued from ${before['socks']} (now ${s1['socks']}), not reset`);
  // every tick creates one socket: the re-created link counts each of them
  const made = (s1['made'] ?? 0) - (before['made'] ?? 0);
  const counted = (s1['socks'] ?? 0) - (before['socks'] ?? 0);
  t.true(counted >= made, `${what}: the cgroup program counted ${counted} of the ${made} sockets created since the dump`);
}
