/**
 * Archives that lie beneath valid checksums (issue 11): a real dump changed the way an attacker
 * would, every checksum recomputed (test/helpers/forge.ts). Restore must refuse each in one line
 * naming what is wrong — and, where the manifest is known first (a file), before it creates any
 * map or loads any BTF: strace shows bpf(2) was never asked to.
 */
import test from 'ava';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MANIFEST_MEMBER } from '../../src/archive/format.js';
import type { MapMeta, MapRecord } from '../../src/maps/meta.js';
import { handTar, headerJson, manifestJson } from '../archive/helpers.js';
import { cliBpfCalls, forge, readArchive, type Parsed } from '../helpers/forge.js';
import { bpfcr, describe, requireRoot, withScenario, type Scenario } from '../helpers/env.js';

test.before(() => requireRoot());

/** Dump the holder's maps and read the dump back for forging. */
async function dumped(s: Scenario): Promise<Parsed> {
  const out = join(s.work, 'orig.tar');
  const d = await bpfcr(['dump', '-p', String(s.holder.pid), '-o', out]);
  if (d.exitCode !== 0) throw new Error(d.stderr);
  return readArchive(out);
}

function save(s: Scenario, name: string, data: Buffer): string {
  const p = join(s.work, name);
  writeFileSync(p, data);
  return p;
}

const created = (bpf: string[]): string[] => bpf.filter((c) => c === 'BPF_MAP_CREATE' || c === 'BPF_BTF_LOAD');

test.serial('memory disclosure: a per-CPU map whose values are laid out as 4-byte inner-map refs is refused before any map is created', async (t) => {
  await withScenario(['hold', 'array:hd_inner:max=4,entries=4', 'percpu_array:hd_pc:max=4,entries=4'], async (s) => {
    const p = await dumped(s);
    // The per-CPU map's data rewritten as the kv-mapref layout: 4-byte values (archive index 0),
    // stride = value_size. The kernel reads round_up(8, 8) × CPUs bytes per value: restoring it as
    // given would copy bpfcr's own memory past the 4-byte buffer into the map.
    const pc = p.members.find((m) => m.name.endsWith('meta.json') && JSON.parse(m.data.toString()).name === 'hd_pc')!;
    const index = (JSON.parse(pc.data.toString()) as MapMeta).index;
    const forged = save(s, 'f.tar', await forge(p, {
      meta: (m) => (m.index === index ? { ...m, layout: 'kv-mapref', valueStride: m.valueSize } : m),
      data: (name, data, m) => {
        if (m.index !== index) return data;
        const keys = Buffer.alloc(16);
        for (let i = 0; i < 4; i++) keys.writeUInt32LE(i, 4 * i);
        return Buffer.concat([keys, Buffer.alloc(16)]); // values: inner map index 0
      },
    }));
    const pin = join(s.fs.dir, 'p');
    const r = await cliBpfCalls(['restore', forged, '--pin-dir', pin], { work: s.work });
    t.is(r.exitCode, 1, r.stdout);
    t.regex(r.stderr, /^bpfcr restore: manifest\.json: maps\[\d\]: invalid layout kv-mapref for a PERCPU_ARRAY map with policy content \(expected kv\)$/);
    t.deepEqual(created(r.bpf), [], 'no map created, no BTF loaded');
    t.false(existsSync(pin));
  });
});

test.serial('possibleCpus beyond what Linux supports (8192) is refused by restore and inspect', async (t) => {
  await withScenario(['hold', 'hash:hc_h:entries=3,max=4'], async (s) => {
    const p = await dumped(s);
    const forged = save(s, 'f.tar', await forge(p, { header: (h) => ({ ...h, possibleCpus: 1_000_000 }) }));
    for (const args of [['restore', forged, '--pin-dir', join(s.fs.dir, 'p')], ['inspect', forged]]) {
      const r = await bpfcr(args);
      t.is(r.exitCode, 1, args[0]);
      t.regex(r.stderr, /member bpfcr-archive\.json: possibleCpus 1000000 is more than Linux supports \(8192\)$/, args[0]);
    }
  });
});

test.serial('an array whose data is absent (max_entries raised, data kept) is refused before any map is created', async (t) => {
  await withScenario(['hold', 'hash:ha_h:entries=3,max=4', 'array:ha_a:max=4,entries=4'], async (s) => {
    const p = await dumped(s);
    const forged = save(s, 'f.tar', await forge(p, { meta: (m) => (m.name === 'ha_a' ? { ...m, maxEntries: 1 << 28 } : m) }));
    const r = await cliBpfCalls(['restore', forged, '--pin-dir', join(s.fs.dir, 'p')], { work: s.work });
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /'ha_a' \(ARRAY\)\): an array's dump holds all its 268435456 elements, the archive has 4$/);
    t.deepEqual(created(r.bpf), []);
    // entries against data: a record claiming more entries than its data members hold
    const lying = save(s, 'g.tar', await forge(p, { records: (rs) => rs.map((x) => (x.name === 'ha_h' ? { ...x, entries: 4 } : x)) }));
    const g = await cliBpfCalls(['restore', lying, '--pin-dir', join(s.fs.dir, 'p')], { work: s.work });
    t.is(g.exitCode, 1);
    t.regex(g.stderr, /'ha_h' \(HASH\)\): 4 entries of 12 bytes do not match its data members \(36 bytes\)$/);
    t.deepEqual(created(g.bpf), []);
  });
});

test.serial('many large maps over the kernel-memory budget: refused before the first map with what is needed and how to raise it; a larger budget restores them', async (t) => {
  t.timeout(120_000);
  const specs = ['hash:hb_1:key=4,value=8,max=1048576,entries=10', 'hash:hb_2:key=4,value=8,max=1048576,entries=10', 'hash:hb_3:key=4,value=8,max=1048576,entries=10'];
  await withScenario(['hold', ...specs], async (s) => {
    const out = join(s.work, 'big.tar');
    t.is((await bpfcr(['dump', '-p', String(s.holder.pid), '-o', out])).exitCode, 0);
    // 3 × 1M × (4 + 8 + 80) bytes = 276 MiB estimated; the archive itself is a few KiB
    const r = await cliBpfCalls(['restore', out, '--pin-dir', join(s.fs.dir, 'a'), '--memory-budget', '100MiB'], { work: s.work });
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /^bpfcr restore: archive \S+big\.tar: restoring it needs an estimated 276\.0 MiB of kernel memory \(3 map\(s\), inner-map template\(s\) and BTF object\(s\); the largest, map id \d+ 'hb_\d' \(HASH\): 92\.0 MiB\), more than the restore memory budget of 100\.0 MiB; raise it with --memory-budget SIZE or restore\.memory_budget in \/etc\/bpfcr\/config\.yaml$/);
    t.deepEqual(created(r.bpf), []);
    // the same budget from the config file
    const cfg = join(s.work, 'c.yaml');
    writeFileSync(cfg, 'restore:\n  memory_budget: 100MiB\n');
    const c = await bpfcr(['restore', out, '--pin-dir', join(s.fs.dir, 'b'), '--config', cfg]);
    t.is(c.exitCode, 1);
    t.regex(c.stderr, /more than the restore memory budget of 100\.0 MiB; raise it with --memory-budget SIZE or restore\.memory_budget in \S+c\.yaml$/);
    // from a pipe the manifest comes last: the maps are charged one by one, before each is created
    const piped = await cliBpfCalls(['restore', '-', '--pin-dir', join(s.fs.dir, 'c'), '--memory-budget', '100MiB'], { work: s.work, input: readFileSync(out) });
    t.is(piped.exitCode, 1);
    t.regex(piped.stderr, /needs at least an estimated 184\.0 MiB of kernel memory \(2 map\(s\), inner-map template\(s\) and BTF object\(s\) so far;/);
    t.is(created(piped.bpf).length, 1, 'only the first map, within the budget, was created');
    t.false(existsSync(join(s.fs.dir, 'c')));
    const ok = await bpfcr(['restore', out, '--pin-dir', join(s.fs.dir, 'd'), '--memory-budget', '1GiB']);
    t.is(ok.exitCode, 0, ok.stderr);
    t.deepEqual(await describe({ pin: join(s.fs.dir, 'd', 'hb_2') }), await describe({ id: s.holder.byName('hb_2').id }));
  });
});

test.serial('an inner-map template is charged to the budget: a 1 GiB template in a small archive is refused', async (t) => {
  await withScenario(['hold', 'array_of_maps:ht_o:entries=2,max=4,inner=array/key=4/value=8/max=4/entries=4'], async (s) => {
    const p = await dumped(s);
    // a template the kernel would allocate in full (an array) while the outer map is created
    const forged = save(s, 'f.tar', await forge(p, {
      meta: (m) => (m.innerTemplate ? { ...m, innerTemplate: { type: 2, keySize: 4, valueSize: 4096, maxEntries: 1 << 18, flags: 0 } } : m),
    }));
    const r = await cliBpfCalls(['restore', forged, '--pin-dir', join(s.fs.dir, 'p'), '--memory-budget', '512MiB'], { work: s.work });
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /the largest, the inner-map template of map id \d+ 'ht_o' \(ARRAY_OF_MAPS\): 1\.0 GiB\), more than the restore memory budget of 512\.0 MiB/);
    t.deepEqual(created(r.bpf), []);
  });
});

test.serial('BTF: a blob larger than the kernel accepts is refused before it is read; BTF no map uses is not loaded; from a pipe, blobs held for later maps count against the host budget', async (t) => {
  await withScenario(['hold', 'hash:hbt_h:entries=3,max=4,btf=1'], async (s) => {
    const p = await dumped(s);
    const btfName = p.members.find((m) => m.name.startsWith('btf/'))!.name;
    const huge = save(s, 'huge.tar', await forge({ ...p, members: p.members.map((m) => (m.name === btfName ? { ...m, data: Buffer.alloc(17 << 20) } : m)) }));
    const r = await cliBpfCalls(['restore', huge, '--pin-dir', join(s.fs.dir, 'p')], { work: s.work });
    t.is(r.exitCode, 1);
    t.regex(r.stderr, new RegExp(`its BTF ${btfName.replace('.', '\\.')} is 17825792 bytes, more than the kernel accepts \\(16777216\\)$`));
    t.deepEqual(created(r.bpf), []);
    // unused BTF objects (a process's own, no map's): verified, never loaded from a file
    const unused = Array.from({ length: 3 }, (_, i) => ({ name: `btf/${9000 + i}.btf`, data: Buffer.alloc(6 << 20, i + 1) }));
    const extra = save(s, 'extra.tar', await forge(p, { add: unused }));
    const ok = await cliBpfCalls(['restore', extra, '--pin-dir', join(s.fs.dir, 'q')], { work: s.work });
    t.is(ok.exitCode, 0, ok.stderr);
    t.is(ok.bpf.filter((c) => c === 'BPF_BTF_LOAD').length, 1, 'only the map\'s BTF is loaded');
    // from a pipe nothing says which BTF a later map needs: blobs are held, within the host budget
    const piped = await bpfcr(['restore', '-', '--pin-dir', join(s.fs.dir, 'r'), '--host-memory-budget', '16MiB'], { input: readFileSync(extra) });
    t.is(piped.exitCode, 1);
    t.regex(piped.stderr, /^bpfcr restore: archive <stdin>: restoring it needs an estimated \d+\.\d MiB of memory in bpfcr \(member btf\/900\d\.btf and 2 BTF blob\(s\) waiting for their maps: \d+\.\d MiB\), more than the host memory budget of 16\.0 MiB; raise it with --host-memory-budget SIZE/);
  });
});

test.serial('the manifest protects itself: a byte changed in a field restore does not cross-check is refused; a version 1 archive (no such checksum) still restores', async (t) => {
  await withScenario(['hold', 'hash:hm_h:entries=3,max=4', 'queue:hm_q:entries=2,max=4'], async (s) => {
    const out = join(s.work, 'o.tar');
    t.is((await bpfcr(['dump', '-p', String(s.holder.pid), '-o', out])).exitCode, 0);
    const tar = readFileSync(out);
    // the holder's fd number recorded in the manifest's first map record: informational only
    const at = tar.indexOf('"fd": ', tar.lastIndexOf(`${MANIFEST_MEMBER}\0`)) + 6;
    t.true(at > 6);
    tar[at] = tar[at] === 0x39 ? 0x38 : tar[at]! + 1;
    const bad = save(s, 'bad.tar', tar);
    const r = await bpfcr(['restore', bad, '--pin-dir', join(s.fs.dir, 'p')]);
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /^bpfcr restore: archive \S+bad\.tar: member manifest\.json: checksum mismatch: its manifestSha256 does not match its content \(corrupted or edited manifest\)$/);
    const ins = await bpfcr(['inspect', bad]);
    t.is(ins.exitCode, 1);
    t.regex(ins.stderr, /manifest\.json: checksum mismatch/);

    // version 1, as bpfcr wrote it before: the same members, a manifest without its own checksum
    const p = await readArchive(out);
    const h = { ...p.header, version: 1 } as unknown as Record<string, unknown>;
    const all = [{ name: 'bpfcr-archive.json', data: headerJson(h) }, ...p.members];
    const { manifestSha256: _d, ...body } = p.manifest as unknown as Record<string, unknown>;
    const v1 = save(s, 'v1.tar', await handTar([...all, { name: MANIFEST_MEMBER, data: manifestJson(all, { maps: body['maps'], btf: body['btf'] }, h) }]));
    const ok = await bpfcr(['restore', v1, '--pin-dir', join(s.fs.dir, 'v1')]);
    t.is(ok.exitCode, 0, ok.stderr);
    t.deepEqual(await describe({ pin: join(s.fs.dir, 'v1', 'hm_h') }), await describe({ id: s.holder.byName('hm_h').id }));
    t.regex((await bpfcr(['inspect', v1])).stdout, /format bpfcr-archive v1,/);
  });
});

test.serial('meta.json and its manifest record must agree: a map created from one and checked against the other cannot differ', async (t) => {
  await withScenario(['hold', 'hash:hr_h:entries=3,max=4'], async (s) => {
    const p = await dumped(s);
    const forged = save(s, 'f.tar', await forge(p, { records: (rs) => rs.map((x): MapRecord => ({ ...x, maxEntries: 8 })) }));
    const r = await cliBpfCalls(['restore', forged, '--pin-dir', join(s.fs.dir, 'p')], { work: s.work });
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /^bpfcr restore: member maps\/0000\/meta\.json: differs from its record in manifest\.json \(maps\[0\]\)$/);
    t.deepEqual(created(r.bpf), []);
  });
});
