/** The pre-restore decision (src/criu/decide.ts) as a table: facts in, mode/reason or refusal out. */
import test from 'ava';
import { decideRestore, RestoreRefused, type Mode, type ProgramMode, type RestoreFacts } from '../../src/criu/decide.js';
import type { TakenObject } from '../../src/criu/record.js';

const map = (id: number, criuId: number, extra: Partial<TakenObject> = {}): TakenObject =>
  ({ criuId, kind: 'map', id, type: '1', pin: `/s/k/map-${criuId}`, name: `m${id}`, ...extra });
const prog = (id: number, mapIds?: number[]): TakenObject =>
  ({ criuId: 100 + id, kind: 'prog', id, type: '17', pin: `/s/k/prog-${100 + id}`, name: `p${id}`, tag: 'abcd', ...(mapIds ? { mapIds } : {}) });

function facts(over: Partial<RestoreFacts> = {}): RestoreFacts {
  return {
    objects: [map(1, 3), map(2, 4), map(2, 5) /* a second fd of map 2 */],
    sameHost: true, otherHost: 'the checkpoint was taken on host a, this is b', leaveRunning: false,
    pinHolds: () => true, heldBy: () => undefined,
    ...over,
  };
}

const cases: { name: string; f: Partial<RestoreFacts>; mode: Mode; why?: RegExp }[] = [
  { name: 'same host, pins intact, nobody holds them: reuse', f: {}, mode: 'reuse' },
  { name: 'another host: copy', f: { sameHost: false }, mode: 'copy', why: /taken on host a/ },
  { name: 'leave-running: copy', f: { leaveRunning: true }, mode: 'copy', why: /--leave-running/ },
  { name: 'another restore in flight: copy', f: { claimedBy: 4242 }, mode: 'copy', why: /criu pid 4242/ },
  { name: 'a pin gone: copy, naming the map', f: { pinHolds: (o) => o.id !== 2 }, mode: 'copy', why: /staged map 2 "m2" .* is gone \(\/s\/k\/map-[45]: bpfcr gc/ },
  { name: 'a map still held: copy, naming map and pid', f: { heldBy: () => ({ id: 1, pid: 77 }) }, mode: 'copy', why: /map 1 is still held by pid 77/ },
  { name: 'no maps at all: none', f: { objects: [] }, mode: 'none' },
  { name: 'the first reason wins: another host before leave-running', f: { sameHost: false, leaveRunning: true }, mode: 'copy', why: /host/ },
  { name: 'a program that uses no map of the checkpoint comes back with copied maps', f: { objects: [map(1, 3), prog(9, [55])], sameHost: true, leaveRunning: true }, mode: 'copy', why: /--leave-running/ },
];
for (const c of cases) {
  test(`decision: ${c.name}`, (t) => {
    const d = decideRestore(facts(c.f));
    t.is(d.mode, c.mode);
    if (c.why) t.regex(d.why, c.why);
    else t.is(d.why, '');
  });
}

test('decision: expensive facts are asked only when needed', (t) => {
  let pinChecks = 0;
  let holderScans = 0;
  decideRestore(facts({ sameHost: false, pinHolds: () => { pinChecks++; return true; }, heldBy: () => { holderScans++; return undefined; } }));
  t.is(pinChecks + holderScans, 0, 'another host: no pin checked, no /proc scanned');
  decideRestore(facts({ pinHolds: (o) => { pinChecks++; return o.id !== 1; }, heldBy: () => { holderScans++; return undefined; } }));
  t.is(holderScans, 0, 'a pin is gone: no /proc scan');
  t.is(pinChecks, 1, 'stops at the first gone pin, and checks each map once (not per fd)');
});

/** a program whose BPF ELF object was found at dump and stored in the archive */
const withObject = (o: TakenObject): TakenObject => ({ ...o, object: { sha256: 'ab', size: 1, pid: 1, file: '/proc/1/exe', offset: 0, function: o.name!, section: 'raw_tp/x', member: 'objects/ab.bpf.o' } });

const link = (id: number, progId: number, target: NonNullable<TakenObject['target']>): TakenObject =>
  ({ criuId: 200 + id, kind: 'link', id, type: target.kind, pin: `/s/k/link-${200 + id}`, name: `p${progId}`, progId, target });

const programCases: { name: string; f: Partial<RestoreFacts>; programs: ProgramMode; why?: RegExp }[] = [
  { name: 'same host, staged: handed back', f: { objects: [map(1, 3), prog(9, [1])] }, programs: 'handback' },
  { name: 'no programs: none', f: {}, programs: 'none' },
  { name: 'another host: reloaded', f: { objects: [map(1, 3), withObject(prog(9, [1]))], sameHost: false }, programs: 'reload', why: /taken on host a/ },
  { name: 'its pin gone: reloaded', f: { objects: [withObject(prog(9, []))], pinHolds: (o) => o.kind !== 'prog' }, programs: 'reload', why: /staged program 9 "p9" .* is gone \(\/s\/k\/prog-109: bpfcr gc/ },
  { name: 'its maps copied: reloaded against the copies', f: { objects: [map(1, 3), withObject(prog(9, [1]))], leaveRunning: true }, programs: 'reload', why: /uses map\(s\) 1, which are recreated as copies \(the checkpoint was taken with --leave-running\)/ },
  { name: 'links re-created elsewhere: raw_tp, tracing, tracepoint perf event, a placed cgroup', f: { objects: [withObject(link(1, 9, { kind: 'raw_tracepoint', name: 'sys_enter' })), withObject(link(2, 9, { kind: 'perf_event', perfType: 'tracepoint', name: 'sys_enter_getppid' })), withObject(link(3, 9, { kind: 'cgroup', cgroupId: '5', attachType: 2, place: { inContainer: '', path: '/c' } })), withObject(link(4, 9, { kind: 'tracing', attachType: 24 }))], sameHost: false }, programs: 'reload', why: /host a/ },
  { name: 'one of two gone: both reloaded (one object, one consistent set)', f: { objects: [map(1, 3), withObject(prog(8, [1])), withObject(prog(9, [1]))], pinHolds: (o) => o.id !== 9 }, programs: 'reload', why: /program 9/ },
];
for (const c of programCases) {
  test(`programs: ${c.name}`, (t) => {
    const d = decideRestore(facts(c.f));
    t.is(d.programs, c.programs);
    if (c.why) t.regex(d.programsWhy, c.why);
    else t.is(d.programsWhy, '');
  });
}

const refusals: { name: string; f: Partial<RestoreFacts>; msg: RegExp }[] = [
  { name: 'program on another host without its object', f: { objects: [map(1, 3), prog(9, [1])], sameHost: false }, msg: /cannot restore program 9 "p9" \(type 17, tag abcd\): the staged program cannot be handed back \(the checkpoint was taken on host a, this is b\), and no BPF ELF object with a function named "p9" was found/ },
  { name: 'program whose pin is gone, without its object', f: { objects: [prog(9, [])], pinHolds: (o) => o.kind !== 'prog' }, msg: /\(the staged program 9 "p9" .* is gone \(\/s\/k\/prog-109: bpfcr gc.*\), and no BPF ELF object/ },
  { name: 'program that uses copied maps, without its object', f: { objects: [map(1, 3), prog(9, [1])], leaveRunning: true }, msg: /uses map\(s\) 1, which are recreated as copies \(the checkpoint was taken with --leave-running\)\), and no BPF ELF object/ },
  { name: 'program whose maps are unknown while maps are copied, without its object', f: { objects: [map(1, 3), prog(9)], heldBy: () => ({ id: 1, pid: 5 }) }, msg: /the maps program 9 "p9" .* uses are unknown/ },
  { name: 'an xdp link on another host: refused before anything is created, naming link, program, interface and why', f: { objects: [withObject(link(7, 9, { kind: 'xdp', ifindex: 2, ifname: 'eth0' }))], sameHost: false }, msg: /^cannot restore link 7 \(xdp, program 9\) of program "p9": the staged link cannot be handed back \(the checkpoint was taken on host a, this is b\), and re-creating xdp links is not supported: the target \(interface eth0\) is in the container's network namespace/ },
  { name: 'a cgroup link whose cgroup was not found at dump', f: { objects: [withObject(link(7, 9, { kind: 'cgroup', cgroupId: '77', attachType: 0 }))], sameHost: false }, msg: /link 7 .* its cgroup \(id 77\) was not found at dump/ },
  { name: 'a kprobe perf link', f: { objects: [withObject(link(7, 9, { kind: 'perf_event', perfType: 'kprobe', name: 'do_sys_open' }))], sameHost: false }, msg: /re-creating kprobe links is not supported \(do_sys_open\)/ },
  { name: 'one program with its object, one without: refused naming the one without', f: { objects: [withObject(prog(8, [])), prog(9, [])], sameHost: false }, msg: /cannot restore program 9 "p9"/ },
];
for (const r of refusals) {
  test(`refusal: ${r.name}`, (t) => {
    const e = t.throws(() => decideRestore(facts(r.f)), { instanceOf: RestoreRefused });
    t.regex(e!.message, r.msg);
  });
}
