/**
 * Restore is transactional: a corrupted or truncated archive is refused with a message naming
 * the member, and nothing stays pinned.
 */
import test from 'ava';
import { existsSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { withScenario, bpfcr, describe, requireRoot } from '../helpers/env.js';

test.before(() => requireRoot());

/** Offset of a tar member's body (ustar: 512-byte header; name at 0, size octal at 124). */
function memberOffset(tar: Buffer, name: string): number {
  for (let off = 0; off + 512 <= tar.length;) {
    const n = tar.subarray(off, off + 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(tar.subarray(off + 124, off + 136).toString('utf8').replace(/\0.*$/s, '').trim() || '0', 8);
    if (n === name) return off + 512;
    off += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`member ${name} not in tar`);
}

test.serial('a flipped byte in a data member: restore names the member and pins nothing', async (t) => {
  await withScenario(['hold', 'hash:i_a:entries=50,max=64', 'array:i_b:max=16', 'queue:i_q:entries=3,max=4'], async ({ holder, work, fs }) => {
    const out = join(work, 'c.tar');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', out])).exitCode, 0);
    const tar = readFileSync(out);
    const off = memberOffset(tar, 'maps/0001/data-000000.bin');
    tar[off + 3] ^= 0xff;
    writeFileSync(out, tar);
    const pinDir = join(fs.dir, 'new');
    const r = await bpfcr(['restore', out, '--pin-dir', pinDir]);
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /member maps\/0001\/data-000000\.bin: sha256 mismatch/);
    t.false(existsSync(pinDir), 'nothing pinned, the pin dir it created is removed');
    const i = await bpfcr(['inspect', out]);
    t.is(i.exitCode, 1);
    t.regex(i.stdout, /MISMATCH/);
  });
});

test.serial('a truncated archive is refused as incomplete and pins nothing', async (t) => {
  await withScenario(['hold', 'hash:t_a:entries=500,max=512', 'hash:t_b:entries=5,max=8'], async ({ holder, work, fs }) => {
    const out = join(work, 't.tar');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', out])).exitCode, 0);
    const tar = readFileSync(out);
    writeFileSync(out, tar.subarray(0, memberOffset(tar, 'manifest.json') - 512));
    const pinDir = join(fs.dir, 'pins');
    const r = await bpfcr(['restore', out, '--pin-dir', pinDir]);
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /incomplete: no manifest\.json/);
    t.false(existsSync(pinDir));
  });
});

test.serial('a 1M-entry hash map is streamed in chunks and restored identically', async (t) => {
  t.timeout(180_000);
  await withScenario(['hold', 'hash:big:key=8,value=16,max=1048576,entries=1048576'], async ({ holder, work, fs }) => {
    const id = holder.byName('big').id;
    const before = await describe({ id }, ['--summary']);
    const out = join(work, 'big.tar');
    const d = await bpfcr(['dump', '-p', String(holder.pid), '-o', out]);
    t.is(d.exitCode, 0, d.stderr);
    t.true(statSync(out).size > 24 * 1048576);
    const j = JSON.parse((await bpfcr(['inspect', out, '--json'])).stdout) as { members: { name: string; size: number }[] };
    const chunks = j.members.filter((m) => m.name.startsWith('maps/0000/data-'));
    t.true(chunks.length >= 3, `streamed as ${chunks.length} chunks`);
    t.true(chunks.every((c) => c.size <= 8 * 1024 * 1024));
    await holder.kill();
    const r = await bpfcr(['restore', out, '--pin-dir', fs.dir]);
    t.is(r.exitCode, 0, r.stderr);
    t.deepEqual(await describe({ pin: join(fs.dir, 'big') }, ['--summary']), before);
  });
});

test.serial('a member this bpfcr does not know (a newer writer\'s addition) is verified and skipped: restore and inspect work', async (t) => {
  const { openArchiveReader } = await import('../../src/archive/reader.js');
  const { openArchiveWriter } = await import('../../src/archive/writer.js');
  await withScenario(['hold', 'hash:u_a:entries=30,max=64', 'array:u_b:max=8,entries=8'], async ({ holder, work, fs }) => {
    const orig = join(work, 'orig.tar');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', orig])).exitCode, 0);
    // the same archive with x-future/thing between the header and the first map
    const out = join(work, 'future.tar');
    const r = await openArchiveReader(orig, {});
    const w = await openArchiveWriter(out, r.header);
    let added = false;
    for await (const m of r.members()) {
      const data = await m.read();
      if (!added) { await w.addMember('x-future/thing', Buffer.from('written by a newer bpfcr')); added = true; }
      await w.addMember(m.name, data);
    }
    const manifest = await r.finish();
    await r.close();
    // the engine's fields (maps, btf); the archive layer writes its own (format, members, …) itself
    await w.finish({ maps: manifest['maps'], btf: manifest['btf'] });
    const ins = await bpfcr(['inspect', out]);
    t.is(ins.exitCode, 0, ins.stderr);
    const pinDir = join(fs.dir, 'future');
    const res = await bpfcr(['restore', out, '--pin-dir', pinDir]);
    t.is(res.exitCode, 0, res.stderr);
    for (const n of ['u_a', 'u_b']) t.deepEqual(await describe({ pin: join(pinDir, n) }), await describe({ id: holder.byName(n).id }), n);
    // and a corrupted unknown member still fails the restore, naming it
    const tar = readFileSync(out);
    tar[memberOffset(tar, 'x-future/thing') + 2] ^= 0xff;
    writeFileSync(out, tar);
    const bad = await bpfcr(['restore', out, '--pin-dir', join(fs.dir, 'bad')]);
    t.is(bad.exitCode, 1);
    t.regex(bad.stderr, /member x-future\/thing: sha256 mismatch/);
    t.false(existsSync(join(fs.dir, 'bad')));
  });
});
