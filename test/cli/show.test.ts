/**
 * `bpfcr show` (issue 13): a map's entries out of an archive, checked against bpftool's own
 * `map dump -j` of the very maps that were dumped (still alive, held by bpfholder or this process):
 * the hex key/value arrays byte for byte, and `formatted` — every BTF kind, decoded — field for
 * field. Also: every input bpfcr reads (CRIU image dir, podman-style export, --pins), map by index,
 * jq filters written for bpftool, and archives that are damaged or lie.
 */
import test from 'ava';
import { execa } from 'execa';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeHeader } from '../../src/archive/format.js';
import { openArchiveWriter } from '../../src/archive/writer.js';
import { BtfBuilder } from '../../src/btf/build.js';
import { bpfcr, requireRoot, startHolder, tempDir, type Holder } from '../helpers/env.js';
import { createRichMaps } from '../helpers/rich-btf.js';

test.before(() => requireRoot());

type Entry = { key?: string[]; value?: string[]; values?: unknown[]; formatted?: unknown };

/** bpftool's view of a live map. */
async function bpftoolDump(id: number): Promise<Entry[]> {
  return JSON.parse((await execa('bpftool', ['map', 'dump', 'id', String(id), '-j'])).stdout) as Entry[];
}

/** Entries in key order: bpftool walks get_next_key, a dump walks batches. */
function byKey(es: Entry[]): Entry[] {
  return [...es].sort((a, b) => (a.key ?? []).join().localeCompare((b.key ?? []).join()));
}

async function showJson(t: { is: (a: unknown, b: unknown, m?: string) => void }, args: string[]): Promise<Entry[]> {
  const r = await bpfcr(['show', ...args, '--json']);
  t.is(r.exitCode, 0, `show ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Entry[];
}

let holder: Holder;
let work: string;
let archive: string;

test.before(async () => {
  holder = await startHolder(['hold',
    'hash:plain:entries=20', 'hash:typed:entries=20,btf=1', 'percpu_hash:pc:entries=5,btf=1', 'percpu_array:pa:entries=3',
    'lru_hash:lru:entries=7', 'lpm_trie:routes:entries=6,key=8,flags=1', 'queue:jobs:entries=4', 'stack:st:entries=3', 'array_of_maps:outer:entries=2',
  ]);
  work = tempDir();
  archive = join(work, 'maps.tar.zst');
  const r = await bpfcr(['dump', '--pid', String(holder.pid), '-o', archive]);
  if (r.exitCode !== 0) throw new Error(r.stderr);
});

test.after.always(async () => {
  await holder?.kill();
  if (work) rmSync(work, { recursive: true, force: true });
});

test.serial('--json is what bpftool map dump -j prints for the same live maps (hex bytes, per-CPU values, BTF-formatted)', async (t) => {
  for (const name of ['plain', 'typed', 'pc', 'pa', 'lru', 'routes']) {
    const ours = await showJson(t, [archive, name]);
    const theirs = await bpftoolDump(holder.byName(name).id);
    t.true(theirs.length > 0, name);
    t.deepEqual(byKey(ours), byKey(theirs), `${name}: show --json = bpftool map dump -j`);
  }
  // formatted only where the map has BTF, exactly as bpftool
  t.truthy((await showJson(t, [archive, 'typed']))[0]!.formatted);
  t.is((await showJson(t, [archive, 'plain']))[0]!.formatted, undefined);
});

test.serial('map-in-map: the value is the inner map id bpftool shows, plus the inner map by name and index', async (t) => {
  const ours = byKey(await showJson(t, [archive, 'outer'])) as (Entry & { inner_map_name: string; inner_map_index: number; inner_map_id: number })[];
  const theirs = byKey(await bpftoolDump(holder.byName('outer').id));
  t.deepEqual(ours.map((e) => ({ key: e.key, value: e.value })), theirs.map((e) => ({ key: e.key, value: e.value })));
  t.deepEqual(ours.map((e) => e.inner_map_name), ['outer_0', 'outer_1']);
  const r = await bpfcr(['show', archive, 'outer']);
  t.regex(r.stdout, /^key: 00 00 00 00 {2}inner map: outer_0 \(map \d+, id \d+\)$/m);
});

test.serial('QUEUE/STACK values in push order, without a key; by index as well as by name', async (t) => {
  const inspect = JSON.parse((await bpfcr(['inspect', archive, '--json'])).stdout) as { manifest: { maps: { index: number; name: string }[] } };
  const jobs = inspect.manifest.maps.find((m) => m.name === 'jobs')!;
  const byName = await showJson(t, [archive, 'jobs']);
  t.deepEqual(await showJson(t, [archive, String(jobs.index)]), byName);
  t.is(byName.length, 4);
  t.true(byName.every((e) => e.key === undefined && e.value!.length === 8));
  // bpftool pops a queue oldest first: the same order, without touching our archive
  const popped: string[][] = [];
  const id = String(holder.byName('jobs').id);
  for (let i = 0; i < 4; i++) popped.push((JSON.parse((await execa('bpftool', ['map', 'peek', 'id', id, '-j'])).stdout) as Entry).value!);
  t.deepEqual(byName[0]!.value, popped[0]);
  const text = await bpfcr(['show', archive, 'st']);
  t.regex(text.stdout, /values in push order \(oldest first\)/);
  t.is(text.stdout.split('\n').filter((l) => l.startsWith('value: ')).length, 3);
});

test.serial('every BTF kind decodes as bpftool decodes it: ints by sign, bitfields, enums, structs, unions, arrays, strings, DATASEC, per-CPU', async (t) => {
  const rich = createRichMaps();
  t.teardown(() => rich.close());
  const out = join(work, 'rich.tar');
  const d = await bpfcr(['dump', ...Object.values(rich.ids).flatMap((id) => ['--map-id', String(id)]), '-o', out]);
  t.is(d.exitCode, 0, d.stderr);
  for (const [name, id] of [['rich', rich.ids.rich], ['rich.bss', rich.ids.bss], ['rich_pcpu', rich.ids.pcpu]] as const) {
    const ours = await showJson(t, [out, name]);
    const theirs = await bpftoolDump(id);
    t.deepEqual(byKey(ours), byKey(theirs), `${name}: formatted as bpftool formats it`);
  }
  // the values the fixture wrote, spelled out (so a shared mistake with bpftool cannot hide)
  const a = (await showJson(t, [out, 'rich'])).find((e) => (e.formatted as { key: { id: number } }).key.id === -5)!;
  t.like(a.formatted as object, {
    key: { id: -5, port: 80 },
    value: {
      s: -123456, flags: '0x5', mode: '0x11', neg: '0xd', name: 'abc', col: 'BLUE', lvl: 'LOW', ok: true,
      grid: [[1, -2, 3], [-4, 5, -6]], in: { a: 0xdeadbeef, b: -7, c: 200 }, u: { x: -1, y: 4294967295 },
      big: 'HUGE', ci: 42, '': { p: 7 }, wide: '0x10000000000000000000000005', ptr: 0x1234,
    },
  });
  // a u64 beyond 2^53 is printed as its exact digits, as bpftool prints it
  const raw = (await bpfcr(['show', out, 'rich', '--json'])).stdout;
  t.regex(raw, /"big64":18446744073709551615,"sneg":-4611686018427387904,/);
  const b = (await showJson(t, [out, 'rich'])).find((e) => (e.formatted as { key: { id: number } }).key.id === 7)!;
  t.like(b.formatted as object, { value: { name: [1, 2, 3, 4, 5, 6, 7, 8], col: 7, lvl: 5, big: 3, ok: false } });
  // people get the same, one line per entry
  const text = (await bpfcr(['show', out, 'rich'])).stdout;
  t.regex(text, /^key: \{id: -5, port: 80\} {2}value: \{s: -123456, flags: "0x5", mode: "0x11", neg: "0xd", name: "abc", col: "BLUE", lvl: "LOW", ok: true, grid: \[\[1, -2, 3\], \[-4, 5, -6\]\], /m);
  t.regex((await bpfcr(['show', out, 'rich.bss'])).stdout, /value: \{\.bss: \[\{hits: 123456789012\}, \{flag: -9\}\]\}/);
  t.regex((await bpfcr(['show', out, 'rich_pcpu'])).stdout, /^key: -1\n {2}cpu 0: \{n: -1000, tag: "c0"\}\n {2}cpu 1: \{n: -1001, tag: "c1"\}$/m);
});

test.serial('a jq filter written for bpftool gives the same answer on show --json', async (t) => {
  const rich = createRichMaps();
  t.teardown(() => rich.close());
  const out = join(work, 'rich-jq.tar');
  t.is((await bpfcr(['dump', '--map-id', String(rich.ids.rich), '-o', out])).exitCode, 0);
  const filter = '[.[] | select(.formatted.value.col == "BLUE") | .formatted.key.port]';
  const ours = await execa('jq', ['-c', filter], { input: (await bpfcr(['show', out, 'rich', '--json'])).stdout });
  const theirs = await execa('jq', ['-c', filter], { input: (await execa('bpftool', ['map', 'dump', 'id', String(rich.ids.rich), '-j'])).stdout });
  t.is(ours.stdout, '[80]');
  t.is(ours.stdout, theirs.stdout);
});

test.serial('a CRIU image dir, a podman-style export (zstd tar with checkpoint/bpfcr.tar) and --pins read like the archive itself', async (t) => {
  const plainTar = join(work, 'plain.tar');
  t.is((await bpfcr(['dump', '--pid', String(holder.pid), '-o', plainTar])).exitCode, 0);
  const expected = await showJson(t, [plainTar, 'typed']);
  // CRIU image dir: bpfcr.tar beside CRIU's images; bpfcr-pins.tar for the io.bpfcr.pins maps
  const image = join(work, 'image');
  mkdirSync(join(image, 'checkpoint'), { recursive: true });
  copyFileSync(plainTar, join(image, 'bpfcr.tar'));
  copyFileSync(plainTar, join(image, 'bpfcr-pins.tar'));
  writeFileSync(join(image, 'inventory.img'), 'criu');
  t.deepEqual(await showJson(t, [image, 'typed']), expected);
  t.deepEqual(await showJson(t, [image, 'typed', '--pins']), expected);
  // podman container checkpoint --export: a zstd tar whose checkpoint/ is the image dir
  const exp = join(work, 'export');
  mkdirSync(join(exp, 'checkpoint'), { recursive: true });
  copyFileSync(plainTar, join(exp, 'checkpoint', 'bpfcr.tar'));
  writeFileSync(join(exp, 'config.dump'), '{}');
  writeFileSync(join(exp, 'checkpoint', 'inventory.img'), 'criu');
  const tarFile = join(work, 'export.tar');
  await execa('tar', ['-C', exp, '-cf', tarFile, 'config.dump', 'checkpoint']);
  await execa('zstd', ['-q', '-f', tarFile, '-o', `${tarFile}.zst`]);
  t.deepEqual(await showJson(t, [`${tarFile}.zst`, 'typed']), expected);
  const noPins = await bpfcr(['show', `${tarFile}.zst`, 'typed', '--pins']);
  t.is(noPins.exitCode, 1);
  t.regex(noPins.stderr, /no bpfcr-pins\.tar .* in it/);
  // stdin: a plain tar
  const stdin = await bpfcr(['show', '-', 'typed', '--json'], { input: readFileSync(plainTar) });
  t.deepEqual(JSON.parse(stdin.stdout), expected);
});

test.serial('errors: a map the archive lacks, a damaged member, bad usage — one line each', async (t) => {
  const missing = await bpfcr(['show', archive, 'nosuch']);
  t.is(missing.exitCode, 1);
  t.regex(missing.stderr, /^bpfcr show: .*maps\.tar\.zst: no map named 'nosuch' \(it has maps 0 'plain', 1 'typed', /);
  t.is((await bpfcr(['show', archive, '99'])).exitCode, 1);
  t.is((await bpfcr(['show', archive])).exitCode, 2);
  // a directory archive with one data byte changed: the checksum names the member
  const dir = join(work, 'dir-form');
  t.is((await bpfcr(['dump', '--pid', String(holder.pid), '-o', `${dir}/`])).exitCode, 0);
  const chunk = join(dir, 'maps', '0001', 'data-000000.bin');
  const b = readFileSync(chunk);
  b[b.length - 1] ^= 0xff;
  writeFileSync(chunk, b);
  const bad = await bpfcr(['show', dir, 'typed']);
  t.is(bad.exitCode, 1);
  t.regex(bad.stderr, /maps\/0001\/data-000000\.bin/);
  t.is(bad.stderr.trim().split('\n').length, 1);
});

test.serial('BTF an archive carries but that lies (a truncated type section): hex, a warning, exit 1', async (t) => {
  const path = join(work, 'lying.tar');
  const meta = {
    index: 0, id: 7, name: 'liar', type: 'hash', typeId: 1, keySize: 4, valueSize: 8, maxEntries: 4, flags: 0, mapExtra: '0',
    frozen: false, policy: 'content', btf: { id: 9, keyTypeId: 1, valueTypeId: 2 }, layout: 'kv', valueStride: 8, top: true, refs: [],
  };
  const w = await openArchiveWriter(path, makeHeader({ tool: { name: 'bpfcr', version: '0.1.0' }, possibleCpus: 2 }));
  // a STRUCT that says it has 500 members, in a type section that holds one
  const b = new BtfBuilder();
  b.struct('s', 8, [['x', 0, 0]]);
  const btf = b.blob();
  btf.writeUInt32LE((4 << 24) | 500, 24 + 4);
  await w.addMember('btf/9.btf', btf);
  await w.addMember('maps/0000/meta.json', Buffer.from(JSON.stringify(meta)));
  await w.addMember('maps/0000/data-000000.bin', Buffer.from('0100000002000000aabbccdd', 'hex'));
  await w.finish({ maps: [{ ...meta, entries: 1, chunks: 1 }], btf: [9] });
  const r = await bpfcr(['show', path, 'liar', '--json']);
  t.is(r.exitCode, 1);
  t.deepEqual(JSON.parse(r.stdout), [{ key: ['0x01', '0x00', '0x00', '0x00'], value: ['0x02', '0x00', '0x00', '0x00', '0xaa', '0xbb', '0xcc', '0xdd'] }]);
  t.regex(r.stderr, /^bpfcr show: .*lying\.tar: map 0 'liar' \(hash\): BTF not used: btf\/9\.btf: /);
  t.notRegex(r.stderr, /internal error/);
});
