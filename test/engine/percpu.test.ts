/**
 * Per-CPU values depend on the host's possible-CPU count. An archive that claims another count
 * (built here by re-laying a real dump for a 4-CPU host) is refused by default and restored
 * with CPUs 0..n-1 kept under percpu.cpu_mismatch: zero-fill.
 */
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openArchiveReader } from '../../src/archive/reader.js';
import { openArchiveWriter } from '../../src/archive/writer.js';
import type { MapMeta, MapRecord } from '../../src/maps/meta.js';
import { possibleCpus } from '../../src/maps/cpus.js';
import { withScenario, bpfcr, describe, requireRoot } from '../helpers/env.js';

test.before(() => requireRoot());

/** Rewrite a dump as if taken on a host with `cpus` possible CPUs (extra CPUs hold 0xee bytes). */
async function relayForCpus(src: string, dst: string, cpus: number): Promise<void> {
  const local = possibleCpus();
  const r = await openArchiveReader(src);
  const w = await openArchiveWriter(dst, { ...r.header, possibleCpus: cpus });
  let meta: MapMeta | undefined;
  for await (const m of r.members()) {
    let data = await m.read();
    if (m.name.endsWith('meta.json')) {
      meta = JSON.parse(data.toString()) as MapMeta;
      if (meta.valueStride !== meta.valueSize) {
        meta.valueStride = (meta.valueStride / local) * cpus;
        data = Buffer.from(JSON.stringify(meta));
      }
    } else if (meta && m.name.includes('/data-') && meta.layout === 'kv' && meta.valueStride !== meta.valueSize) {
      const slot = meta.valueStride / cpus;
      const inStride = slot * local;
      const n = data.length / (meta.keySize + inStride);
      const out = Buffer.alloc(n * (meta.keySize + meta.valueStride), 0xee);
      data.copy(out, 0, 0, n * meta.keySize);
      for (let i = 0; i < n; i++) data.copy(out, n * meta.keySize + i * meta.valueStride, n * meta.keySize + i * inStride, n * meta.keySize + (i + 1) * inStride);
      data = out;
    }
    await w.addMember(m.name, data);
  }
  const manifest = await r.finish();
  const maps = (manifest['maps'] as MapRecord[]).map((mm) => (mm.valueStride !== mm.valueSize && mm.layout === 'kv' ? { ...mm, valueStride: (mm.valueStride / local) * cpus } : mm));
  await w.finish({ maps, btf: manifest['btf'] });
}

test.serial('per-CPU maps from a host with another CPU count: refused by default, zero-fill keeps common CPUs', async (t) => {
  await withScenario(['hold', 'percpu_hash:pc_hash:entries=20,max=32,value=12', 'percpu_array:pc_arr:max=8,entries=8', 'hash:pc_plain:entries=3,max=4'], async ({ holder, work, fs }) => {
    const before = new Map<string, unknown>();
    for (const m of holder.maps) before.set(m.name, await describe({ id: m.id }));
    const orig = join(work, 'orig.tar');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', orig])).exitCode, 0);
    await holder.kill();
    const other = join(work, 'other.tar');
    await relayForCpus(orig, other, possibleCpus() + 2);
    t.is((await bpfcr(['inspect', other])).exitCode, 0, 'the relaid archive is well-formed');

    const refused = await bpfcr(['restore', other, '--pin-dir', join(fs.dir, 'a')]);
    t.is(refused.exitCode, 1);
    t.regex(refused.stderr, new RegExp(`'pc_hash' \\(PERCPU_HASH\\): per-CPU values were dumped on a host with ${possibleCpus() + 2} possible CPUs, this host has ${possibleCpus()}; set percpu.cpu_mismatch: zero-fill`));

    const cfg = join(work, 'c.yaml');
    writeFileSync(cfg, 'percpu:\n  cpu_mismatch: zero-fill\n');
    const ok = await bpfcr(['restore', other, '--pin-dir', join(fs.dir, 'b'), '--config', cfg]);
    t.is(ok.exitCode, 0, ok.stderr);
    for (const m of holder.maps) t.deepEqual(await describe({ pin: join(fs.dir, 'b', m.name) }), before.get(m.name), m.name);
  });
});
