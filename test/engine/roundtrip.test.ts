/**
 * Dump a live process holding every content-carrying map type, kill it, restore into a fresh
 * bpffs, and compare every map — metadata and contents — through bpfholder describe, a C
 * program that reads maps with get_next_key/lookup and shares no code with bpfcr.
 */
import test from 'ava';
import { execa } from 'execa';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTENT_SPECS } from '../helpers/specs.js';
import { withScenario, CLI, bpfcr, describe, freshBpffs, requireRoot, startHolder, tempDir } from '../helpers/env.js';

const ALL_CONTENT_SPECS = CONTENT_SPECS;

test.before(() => requireRoot());

for (const fmt of ['tar', 'tar.gz', 'tar.zst', 'dir']) {
  test.serial(`every content map type round-trips through .${fmt}, checked independently`, async (t) => {
    await withScenario(['hold', ...ALL_CONTENT_SPECS], async ({ holder, work, fs }) => {
      const before = new Map<string, unknown>();
      for (const m of holder.maps) before.set(m.name, await describe({ id: m.id }));
      const out = join(work, fmt === 'dir' ? 'ckpt' : `ckpt.${fmt}`);
      const d = await bpfcr(['dump', '--pid', String(holder.pid), '-o', out]);
      t.is(d.exitCode, 0, d.stderr);
      t.regex(d.stderr, new RegExp(`dumped ${holder.maps.length + 6} map\\(s\\)`)); // + 3 + 3 inner maps

      // Dumping queue/stack pops and pushes back: the live maps must be unchanged.
      for (const name of ['c_queue', 'c_stack']) t.deepEqual(await describe({ id: holder.byName(name).id }), before.get(name), name);

      const mode = statSync(fmt === 'dir' ? join(out, 'manifest.json') : out).mode & 0o777;
      t.is(mode, 0o600, 'checkpoint data is written 0600');
      await holder.kill();

      const pinDir = join(fs.dir, 'restored');
      const r = await bpfcr(['restore', out, '--pin-dir', pinDir]);
      t.is(r.exitCode, 0, r.stderr);
      t.deepEqual(readdirSync(pinDir).sort(), holder.maps.map((m) => m.name).sort(), 'inner maps are not pinned');
      for (const m of holder.maps) {
        t.deepEqual(await describe({ pin: join(pinDir, m.name) }), before.get(m.name), `map ${m.name} (${m.type})`);
      }
    });
  });
}

test.serial('BTF ids and frozen state survive; writes to the restored frozen map are refused', async (t) => {
  await withScenario(['hold', 'hash:b_btf:btf=1,key=4,value=8,entries=10,max=16', 'array:b_frozen:frozen=1,max=8,entries=8'], async ({ holder, work, fs }) => {
    const out = join(work, 'x.tar');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', out])).exitCode, 0);
    await holder.kill();
    const r = await bpfcr(['restore', out, '--pin-dir', fs.dir]);
    t.is(r.exitCode, 0, r.stderr);
    const btf = await describe({ pin: join(fs.dir, 'b_btf') });
    t.truthy(btf['btf'], 'restored map has BTF');
    t.not((btf['btf'] as { key_type_id: number }).key_type_id, 0);
    const show = await execa('bpftool', ['-j', 'map', 'show', 'pinned', join(fs.dir, 'b_btf')]);
    t.true((JSON.parse(show.stdout) as { btf_id?: number }).btf_id! > 0, 'bpftool sees a btf_id');
    const frozen = await describe({ pin: join(fs.dir, 'b_frozen') });
    t.is(frozen['frozen'], 1);
    const upd = await execa('bpftool', ['map', 'update', 'pinned', join(fs.dir, 'b_frozen'), 'key', '0', '0', '0', '0', 'value', ...Array(8).fill('1')], { reject: false });
    t.not(upd.exitCode, 0, 'update of a frozen map must fail');
    t.regex(upd.stderr, /Operation not permitted|EPERM/);
  });
});

test.serial('forced get_next_key fallback dumps the same contents as batch', async (t) => {
  const specs = ['hash:f_hash:entries=300,max=512', 'percpu_hash:f_pcpu:entries=30,max=64', 'array:f_arr:max=64', 'lru_hash:f_lru:entries=40,max=64'];
  await withScenario(['hold', ...specs], async ({ holder, work, fs }) => {
    const before = new Map<string, unknown>();
    for (const m of holder.maps) before.set(m.name, await describe({ id: m.id }));
    const out = join(work, 'iter.tar');
    const d = await bpfcr(['dump', '-p', String(holder.pid), '-o', out, '--iterate']);
    t.is(d.exitCode, 0, d.stderr);
    await holder.kill();
    const r = await bpfcr(['restore', out, '--pin-dir', fs.dir, '--iterate']);
    t.is(r.exitCode, 0, r.stderr);
    for (const m of holder.maps) t.deepEqual(await describe({ pin: join(fs.dir, m.name) }), before.get(m.name), m.name);
  });
});

test.serial('a map held by two processes is dumped once and records both holders; --map-id selects', async (t) => {
  const a = await startHolder(['hold', 'hash:shared:entries=5,max=8', 'array:only_a:max=4,entries=4']);
  const b = await startHolder(['hold-id', String(a.byName('shared').id)]);
  const work = tempDir();
  try {
    const out = join(work, 'two');
    const d = await bpfcr(['dump', '-p', `${a.pid},${b.pid}`, '-o', out]);
    t.is(d.exitCode, 0, d.stderr);
    const j = await bpfcr(['inspect', out, '--json']);
    t.is(j.exitCode, 0, j.stderr);
    const maps = (JSON.parse(j.stdout) as { manifest: { maps: { name: string; refs: { pid: number }[] }[] } }).manifest.maps;
    t.is(maps.length, 2);
    t.deepEqual(maps.find((m) => m.name === 'shared')!.refs.map((r) => r.pid).sort(), [a.pid, b.pid].sort());

    const byId = join(work, 'byid.tar');
    const s = await bpfcr(['dump', '--map-id', String(a.byName('only_a').id), '-o', byId]);
    t.is(s.exitCode, 0, s.stderr);
    const i = await bpfcr(['inspect', byId]);
    t.regex(i.stdout, /only_a/);
    t.notRegex(i.stdout, /shared/);
  } finally {
    await a.kill();
    await b.kill();
    rmSync(work, { recursive: true, force: true });
  }
});

test.serial('dump to stdout and restore from stdin', async (t) => {
  const holder = await startHolder(['hold', 'hash:s_hash:entries=20,max=32', 'queue:s_q:entries=4,max=8']);
  const fs = await freshBpffs();
  try {
    const before = await describe({ id: holder.byName('s_hash').id });
    const d = await execa(process.execPath, [CLI, 'dump', '-p', String(holder.pid), '-o', '-'], { encoding: 'buffer', env: { BPFCR_CONFIG: '' } });
    t.true(d.stdout.length > 1024);
    await holder.kill();
    const r = await bpfcr(['restore', '-', '--pin-dir', fs.dir], { input: Buffer.from(d.stdout) });
    t.is(r.exitCode, 0, r.stderr);
    t.deepEqual(await describe({ pin: join(fs.dir, 's_hash') }), before);
  } finally {
    await holder.kill();
    await fs.cleanup();
  }
});

test.serial('same-named maps pin with a numeric suffix; unnamed maps as map_<id>', async (t) => {
  await withScenario(['hold', 'hash:dup:entries=1,max=4', 'array:dup:max=4,entries=4', 'hash::entries=2,max=4'], async ({ holder, work, fs }) => {
    const out = join(work, 'n.tar');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', out])).exitCode, 0);
    const pinDir = join(fs.dir, 'pins');
    const r = await bpfcr(['restore', out, '--pin-dir', pinDir]);
    t.is(r.exitCode, 0, r.stderr);
    const unnamed = holder.maps.find((m) => m.name === '')!;
    t.deepEqual(readdirSync(pinDir).sort(), ['dup', 'dup_1', `map_${unnamed.id}`].sort());
  });
});

test.serial('a clash with an existing pin fails the restore, unpins what it pinned, leaves the existing pin alone', async (t) => {
  await withScenario(['hold', 'hash:c_a:entries=1,max=4', 'hash:c_b:entries=2,max=4'], async ({ holder, work, fs }) => {
    const out = join(work, 'c.tar');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', out])).exitCode, 0);
    const pinDir = join(fs.dir, 'pins');
    t.is((await bpfcr(['restore', out, '--pin-dir', pinDir])).exitCode, 0);
    rmSync(join(pinDir, 'c_a'));
    const ino = statSync(join(pinDir, 'c_b')).ino;
    const r = await bpfcr(['restore', out, '--pin-dir', pinDir]);
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /pin path .*pins\/c_b already exists: restore into an empty --pin-dir or remove it/);
    t.deepEqual(readdirSync(pinDir), ['c_b'], 'c_a, pinned before the clash, is gone again');
    t.is(statSync(join(pinDir, 'c_b')).ino, ino, 'the existing pin is untouched');
  });
});

test.serial('restore refuses a pin dir reached through a symlink inside a bpffs', async (t) => {
  await withScenario(['hold', 'hash:s_a:entries=1,max=4'], async ({ holder, work, fs }) => {
    const out = join(work, 's.tar');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', out])).exitCode, 0);
    mkdirSync(join(fs.dir, 'real'));
    symlinkSync(join(fs.dir, 'real'), join(fs.dir, 'link'));
    const r = await bpfcr(['restore', out, '--pin-dir', join(fs.dir, 'link')]);
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /link is a symlink inside a bpffs/);
    t.deepEqual(readdirSync(join(fs.dir, 'real')), []);
  });
});

test.serial('restore refuses a pin dir that is not on a bpffs and leaves nothing behind', async (t) => {
  const holder = await startHolder(['hold', 'hash:p:entries=1,max=4']);
  const work = tempDir();
  try {
    const out = join(work, 'p.tar');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', out])).exitCode, 0);
    const target = join(work, 'not-bpffs', 'sub');
    const r = await bpfcr(['restore', out, '--pin-dir', target]);
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /pin dir .*not-bpffs\/sub: not on a bpffs/);
    t.false(existsSync(join(work, 'not-bpffs')), 'the directories it created are removed');
  } finally {
    await holder.kill();
    rmSync(work, { recursive: true, force: true });
  }
});

test.serial('CLI: usage errors exit 2, --help exits 0, failures exit 1 with a one-line error', async (t) => {
  t.is((await bpfcr([])).exitCode, 2);
  t.is((await bpfcr(['frobnicate'])).exitCode, 2);
  for (const c of ['dump', 'restore', 'inspect']) {
    const h = await bpfcr([c, '--help']);
    t.is(h.exitCode, 0);
    t.regex(h.stdout, new RegExp(`Usage: bpfcr ${c}`));
  }
  t.is((await bpfcr(['dump', '-o', '/tmp/x.tar'])).exitCode, 2);
  t.is((await bpfcr(['dump', '--pid', 'abc', '-o', '/tmp/x.tar'])).exitCode, 2);
  t.is((await bpfcr(['restore', 'x.tar'])).exitCode, 2);
  const gone = await bpfcr(['dump', '--pid', '999999', '-o', '/tmp/never.tar']);
  t.is(gone.exitCode, 1);
  t.is(gone.stderr, 'bpfcr dump: pid 999999: no such process');
  t.false(existsSync('/tmp/never.tar'));
});

test.serial('a process holding every creatable map type: contents where carried, metadata for the rest', async (t) => {
  const emptyTypes = ['prog_array', 'devmap', 'devmap_hash', 'cpumap', 'sockmap', 'sockhash', 'reuseport_sockarray',
    'cgroup_array', 'xskmap', 'bloom_filter', 'stack_trace', 'sk_storage', 'inode_storage', 'task_storage', 'cgrp_storage',
    'cgroup_storage', 'percpu_cgroup_storage', 'arena'];
  // map names are at most 15 characters: e_ + the first 13 of the type
  await withScenario(['hold', ...ALL_CONTENT_SPECS, ...emptyTypes.map((ty) => `${ty}:e_${ty.slice(0, 13)}`)], async ({ holder, work, fs }) => {
    const carried = new Set(holder.maps.filter((m) => !emptyTypes.includes(m.type)).map((m) => m.name));
    const before = new Map<string, unknown>();
    for (const m of holder.maps) before.set(m.name, await describe({ id: m.id }, carried.has(m.name) ? [] : ['--meta-only']));
    const cfg = join(work, 'config.yaml');
    writeFileSync(cfg, `policy:\n  types:\n${emptyTypes.map((ty) => `    ${ty}: empty\n`).join('')}`);
    const out = join(work, 'all.tar.zst');
    const d = await bpfcr(['dump', '--pid', String(holder.pid), '-o', out, '--config', cfg]);
    t.is(d.exitCode, 0, d.stderr);
    await holder.kill();
    const pinDir = join(fs.dir, 'all');
    const r = await bpfcr(['restore', out, '--pin-dir', pinDir]);
    t.is(r.exitCode, 0, r.stderr);
    t.is(holder.maps.length, ALL_CONTENT_SPECS.length + emptyTypes.length);
    for (const m of holder.maps) {
      const after = await describe({ pin: join(pinDir, m.name) }, carried.has(m.name) ? [] : ['--meta-only']);
      t.deepEqual(after, before.get(m.name), `${m.name} (${m.type})`);
    }
  });
});
