/**
 * The manifest that protects itself (format version 2: manifestSha256 over its canonical form),
 * and the manifest known before the members (ReaderOptions.manifestFirst).
 */
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ArchiveError, HEADER_MEMBER, MANIFEST_DIGEST_KEY, MANIFEST_MEMBER, canonicalJson, manifestDigest } from '../../src/archive/format.js';
import { openArchiveReader, verifyArchive } from '../../src/archive/reader.js';
import { openArchiveWriter } from '../../src/archive/writer.js';
import { BODY, HEADER, handTar, headerJson, manifestJson, memberOffset, readAll, sampleMembers, streamOf, tempDir, writeSample, zstdCompress } from './helpers.js';

async function drain(path: string, opts = {}): Promise<void> {
  const r = await openArchiveReader(path, opts);
  try {
    await readAll(r);
    await r.finish();
  } finally {
    await r.close();
  }
}

test('canonical form: key order and whitespace do not count, values do', (t) => {
  t.is(canonicalJson({ b: [1, { d: 'x', c: null }], a: true }), '{"a":true,"b":[1,{"c":null,"d":"x"}]}');
  const m = { format: 'bpfcr-archive', members: [{ name: 'a', size: 1 }], maps: [] };
  t.is(manifestDigest(m), manifestDigest(JSON.parse(JSON.stringify(m, null, 3))));
  t.is(manifestDigest({ ...m, [MANIFEST_DIGEST_KEY]: 'ignored' }), manifestDigest(m));
  t.not(manifestDigest(m), manifestDigest({ ...m, maps: [0] }));
});

test('the writer records manifestSha256; a changed byte in any manifest field is refused, a reformatted manifest is not', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'a.tar');
    const manifest = await writeSample(await openArchiveWriter(out, HEADER)).then(async () => (await verifyArchive(out)).manifest);
    t.regex(String(manifest[MANIFEST_DIGEST_KEY]), /^[0-9a-f]{64}$/);
    const tar = readFileSync(out);
    const at = memberOffset(tar, MANIFEST_MEMBER);
    const text = tar.subarray(at).toString('latin1');
    // a digit of the engine's body, a header field, a member's size: each its own kind of lie
    for (const needle of ['"index": 1', '"hostname": "testhost', '"size": 512']) {
      const bad = Buffer.from(tar);
      const i = at + text.indexOf(needle) + needle.length - 1;
      bad[i]! += 1; // 1 → 2, t → u, 2 → 3
      const p = join(tmp.dir, 'bad.tar');
      writeFileSync(p, bad);
      const e = await t.throwsAsync(drain(p), { instanceOf: ArchiveError }, needle);
      t.is(e!.code, 'CHECKSUM', needle);
      t.is(e!.message, `archive ${p}: member ${MANIFEST_MEMBER}: checksum mismatch: its manifestSha256 does not match its content (corrupted or edited manifest)`, needle);
      await t.throwsAsync(verifyArchive(p), { message: /checksum mismatch/ }, needle);
    }
    // the directory form with the manifest re-indented and its keys reordered: the same value
    const dir = join(tmp.dir, 'd');
    await writeSample(await openArchiveWriter(`${dir}/`, HEADER));
    const m = JSON.parse(readFileSync(join(dir, MANIFEST_MEMBER), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, MANIFEST_MEMBER), JSON.stringify(Object.fromEntries(Object.entries(m).reverse()), null, '\t'));
    await t.notThrowsAsync(drain(dir));
  } finally {
    tmp.cleanup();
  }
});

test('version 2 requires the checksum; version 1 (written before it existed) is read without one', async (t) => {
  const tmp = tempDir();
  try {
    const members = sampleMembers().slice(0, 4).map((m) => ({ name: m.name, data: Buffer.concat(m.data) }));
    const h2 = HEADER as unknown as Record<string, unknown>;
    const all2 = [{ name: HEADER_MEMBER, data: headerJson(h2) }, ...members];
    const without = JSON.parse(manifestJson(all2, BODY).toString()) as Record<string, unknown>;
    delete without[MANIFEST_DIGEST_KEY];
    const p2 = join(tmp.dir, 'v2.tar');
    writeFileSync(p2, await handTar([...all2, { name: MANIFEST_MEMBER, data: JSON.stringify(without) }]));
    await t.throwsAsync(drain(p2), { message: `archive ${p2}: member ${MANIFEST_MEMBER}: manifestSha256 is missing or not 64 lower-case hex digits (required from format version 2)` });
    const h1 = { ...h2, version: 1 };
    const all1 = [{ name: HEADER_MEMBER, data: headerJson(h1) }, ...members];
    const p1 = join(tmp.dir, 'v1.tar');
    writeFileSync(p1, await handTar([...all1, { name: MANIFEST_MEMBER, data: manifestJson(all1, BODY, h1) }]));
    t.false(readFileSync(p1).includes(MANIFEST_DIGEST_KEY));
    await t.notThrowsAsync(drain(p1));
    t.is((await verifyArchive(p1)).header.version, 1);
  } finally {
    tmp.cleanup();
  }
});

test('manifestFirst: a tar file (plain, gzip, zstd) has its manifest at open; a member whose size differs from its listing is refused before it is read; a stream has none until the end', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'a.tar');
    await writeSample(await openArchiveWriter(out, HEADER));
    const tar = readFileSync(out);
    for (const [name, data] of [['a.tar', tar], ['a.tgz', gzipSync(tar)], ['a.tzst', zstdCompress(tar)]] as const) {
      const p = join(tmp.dir, `copy-${name}`);
      writeFileSync(p, data);
      const r = await openArchiveReader(p, { manifestFirst: true });
      t.truthy(r.manifest, name);
      t.deepEqual(r.manifest?.['btf'], BODY.btf, name);
      await readAll(r);
      await t.notThrowsAsync(r.finish(), name);
      const plain = await openArchiveReader(p);
      t.is(plain.manifest, undefined, `${name}: without the option, the end as before`);
      await plain.close();
    }
    const fromStream = await openArchiveReader(streamOf(tar), { manifestFirst: true });
    t.is(fromStream.manifest, undefined, 'a stream cannot be read twice: its manifest comes at its end');
    await readAll(fromStream);
    t.truthy((await fromStream.finish())[MANIFEST_DIGEST_KEY]);
    // a chunk's tar header claims one more block: refused at the member, before its body is read
    const bigger = Buffer.from(tar);
    const h = memberOffset(bigger, 'maps/0001/meta.json') - 512;
    bigger.write('00000001000\0', h + 124, 'latin1'); // 512 bytes instead of its real size
    let sum = 0;
    bigger.fill(0x20, h + 148, h + 156);
    for (let i = h; i < h + 512; i++) sum += bigger[i]!;
    bigger.write(`${sum.toString(8).padStart(6, '0')}\0 `, h + 148, 'latin1');
    const p = join(tmp.dir, 'bigger.tar');
    writeFileSync(p, bigger);
    const r = await openArchiveReader(p, { manifestFirst: true });
    const seen: string[] = [];
    const e = await t.throwsAsync(
      (async () => {
        for await (const m of r.members()) seen.push(m.name);
      })(),
      { instanceOf: ArchiveError },
    );
    t.regex(e!.message, /member maps\/0001\/meta\.json: size mismatch \(manifest\.json: \d+ bytes, archive: 512 bytes\)$/);
    t.false(seen.includes('maps/0001/meta.json'), 'never handed out');
    await r.close();
  } finally {
    tmp.cleanup();
  }
});
