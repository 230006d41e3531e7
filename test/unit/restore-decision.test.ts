/** The pre-restore decision (src/criu/decide.ts) as a table: facts in, mode/reason or refusal out. */
import test from 'ava';
import { decideRestore, RestoreRefused, type Mode, type RestoreFacts } from '../../src/criu/decide.js';
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

const refusals: { name: string; f: Partial<RestoreFacts>; msg: RegExp }[] = [
  { name: 'program on another host', f: { objects: [map(1, 3), prog(9, [1])], sameHost: false }, msg: /cannot restore program 9 "p9" \(type 17, tag abcd\): the checkpoint was taken on host a/ },
  { name: 'program whose pin is gone', f: { objects: [prog(9, [])], pinHolds: (o) => o.kind !== 'prog' }, msg: /its staging pin \/s\/k\/prog-109 is gone/ },
  { name: 'program that uses maps that must be copied', f: { objects: [map(1, 3), prog(9, [1])], leaveRunning: true }, msg: /uses map\(s\) 1, which must be recreated as copies \(the checkpoint was taken with --leave-running\)/ },
  { name: 'program whose maps are unknown while maps must be copied', f: { objects: [map(1, 3), prog(9)], heldBy: () => ({ id: 1, pid: 5 }) }, msg: /the maps the program uses are unknown/ },
];
for (const r of refusals) {
  test(`refusal: ${r.name}`, (t) => {
    const e = t.throws(() => decideRestore(facts(r.f)), { instanceOf: RestoreRefused });
    t.regex(e!.message, r.msg);
  });
}
