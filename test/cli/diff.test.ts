/**
 * `bpfcr diff` (issue 13): archives of live maps changed in between by bpftool (never by bpfcr),
 * compared with each other and with the live maps themselves (--pid). Exit 0 same, 1 differ,
 * 2 usage or error.
 */
import test from 'ava';
import { execa } from 'execa';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { bpfcr, requireRoot, startHolder, tempDir } from '../helpers/env.js';

test.before(() => requireRoot());

interface MapDiff {
  name: string; status: string; metadata: { field: string; a: unknown; b: unknown }[];
  counts: { added: number; removed: number; changed: number; same: number };
  added: { key?: string[]; value?: string[]; formatted?: { key: number } }[];
  removed: { key?: string[]; position?: number }[];
  changed: { a: { formatted?: { key: number; value: unknown } }; b: { formatted?: { key: number; value: unknown } } }[];
}

const u32 = (n: number): string[] => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24].map(String);

async function bpftool(...args: string[]): Promise<void> {
  await execa('bpftool', ['map', ...args]);
}

test.serial('archive vs archive and archive vs live: added, removed, changed entries; QUEUE pops; exit 1, then 0 when equal', async (t) => {
  const h = await startHolder(['hold', 'hash:flows:entries=50,btf=1', 'queue:jobs:entries=5', 'percpu_array:stats:entries=4', 'hash_of_maps:tenants:entries=2']);
  const work = tempDir();
  t.teardown(async () => { await h.kill(); rmSync(work, { recursive: true, force: true }); });
  const a = join(work, 'a.tar');
  t.is((await bpfcr(['dump', '--pid', String(h.pid), '-o', a])).exitCode, 0);

  const same = await bpfcr(['diff', a, a]);
  t.is(same.exitCode, 0, same.stderr);
  t.regex(same.stdout, /^same: 6 map\(s\), no difference$/m);
  const live0 = await bpfcr(['diff', a, '--pid', String(h.pid)]);
  t.is(live0.exitCode, 0, live0.stdout + live0.stderr);

  const flows = String(h.byName('flows').id);
  await bpftool('update', 'id', flows, 'key', ...u32(1000), 'value', ...Array(8).fill('7'));
  await bpftool('update', 'id', flows, 'key', ...u32(3), 'value', ...Array(8).fill('9'));
  await bpftool('delete', 'id', flows, 'key', ...u32(4));
  await bpftool('pop', 'id', String(h.byName('jobs').id));
  await execa('bpftool', ['map', 'push', 'id', String(h.byName('jobs').id), 'value', ...Array(8).fill('5')]);
  await bpftool('update', 'id', String(h.byName('stats').id), 'key', ...u32(2), 'value', ...Array(8).fill('1'));

  const b = join(work, 'b.tar.zst');
  t.is((await bpfcr(['dump', '--pid', String(h.pid), '-o', b])).exitCode, 0);
  for (const args of [[a, b], [a, '--pid', String(h.pid)]]) {
    const r = await bpfcr(['diff', ...args, '--json']);
    t.is(r.exitCode, 1, r.stderr);
    const d = JSON.parse(r.stdout) as { same: boolean; maps: MapDiff[] };
    t.false(d.same);
    const m = (n: string): MapDiff => d.maps.find((x) => x.name === n)!;
    t.deepEqual(m('flows').counts, { added: 1, removed: 1, changed: 1, same: 48 });
    t.is(m('flows').added[0]!.formatted!.key, 1000);
    t.deepEqual(m('flows').removed[0]!.key, ['0x04', '0x00', '0x00', '0x00']);
    t.deepEqual(m('flows').changed[0]!.b.formatted, { key: 3, value: { v: [9, 9, 9, 9, 9, 9, 9, 9] } });
    // a queue popped once and pushed once: one removed at the front, four kept, one added at the back
    t.deepEqual(m('jobs').counts, { added: 1, removed: 1, changed: 0, same: 4 });
    t.is(m('jobs').removed[0]!.position, 0);
    t.deepEqual(m('stats').counts, { added: 0, removed: 0, changed: 1, same: 15 }, 'a per-CPU array: every slot exists');
    for (const n of ['tenants', 'tenants_0', 'tenants_1']) t.is(m(n).status, 'same', `${n}: inner maps compare by name, not by id`);
  }
  const text = await bpfcr(['diff', a, b]);
  t.is(text.exitCode, 1);
  t.regex(text.stdout, /^map \d+ 'flows' \(hash\): 1 added, 1 removed, 1 changed, 48 same$/m);
  t.regex(text.stdout, /^ {2}\+ key: 1000 {2}value: \{v: \[7, 7, 7, 7, 7, 7, 7, 7\]\}$/m);
  t.regex(text.stdout, /^ {2}- key: 4 {2}value: /m);
  t.regex(text.stdout, /^ {2}> key: 3 {2}value: \{v: \[9, 9, 9, 9, 9, 9, 9, 9\]\}$/m);
  t.regex(text.stdout, /^differ: 3 of 6 map\(s\)$/m);
  // B against itself once more: equal again
  t.is((await bpfcr(['diff', b, '--pid', String(h.pid)])).exitCode, 0);
});

test.serial('metadata differences, maps only on one side, pairing by name whatever the index', async (t) => {
  const h1 = await startHolder(['hold', 'hash:keep:entries=3,max=16', 'array:gone:entries=2']);
  const h2 = await startHolder(['hold', 'array:fresh:entries=1', 'hash:keep:entries=3,max=32']);
  const work = tempDir();
  t.teardown(async () => { await h1.kill(); await h2.kill(); rmSync(work, { recursive: true, force: true }); });
  const a = join(work, 'a.tar');
  const b = join(work, 'b');
  t.is((await bpfcr(['dump', '--pid', String(h1.pid), '-o', a])).exitCode, 0);
  t.is((await bpfcr(['dump', '--pid', String(h2.pid), '-o', `${b}/`])).exitCode, 0);
  const r = await bpfcr(['diff', a, b, '--json']);
  t.is(r.exitCode, 1);
  const d = JSON.parse(r.stdout) as { maps: (MapDiff & { a?: { index: number }; b?: { index: number } })[] };
  const keep = d.maps.find((m) => m.name === 'keep')!;
  t.deepEqual(keep.metadata, [{ field: 'maxEntries', a: 16, b: 32 }]);
  t.deepEqual(keep.counts, { added: 0, removed: 0, changed: 0, same: 3 }, 'same contents (same seed), another max_entries');
  t.not(keep.a!.index, keep.b!.index);
  t.deepEqual(d.maps.filter((m) => m.status.startsWith('only')).map((m) => [m.name, m.status]).sort(), [['fresh', 'only-b'], ['gone', 'only-a']]);
  const text = await bpfcr(['diff', a, b]);
  t.regex(text.stdout, /^ {2}metadata maxEntries: 16 → 32$/m);
  t.regex(text.stdout, /^map \d 'gone' \(array\): only in a \(16 entries\)$/m);
});

test.serial('exit 2 for errors and usage, never 1 (which means "they differ")', async (t) => {
  const work = tempDir();
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const missing = await bpfcr(['diff', join(work, 'nope.tar'), join(work, 'nope2.tar')]);
  t.is(missing.exitCode, 2);
  t.regex(missing.stderr, /^bpfcr diff: archive .*nope\.tar: /);
  t.is((await bpfcr(['diff', join(work, 'x.tar')])).exitCode, 2);
  t.is((await bpfcr(['diff', 'a', 'b', '--pid', '1'])).exitCode, 2);
  const dead = await bpfcr(['diff', join(work, 'x.tar'), '--pid', '999999999']);
  t.is(dead.exitCode, 2);
});
