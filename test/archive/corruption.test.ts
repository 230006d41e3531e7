import test from 'ava';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ArchiveError, HEADER_MEMBER, MANIFEST_MEMBER } from '../../src/archive/format.js';
import { openArchiveReader, verifyArchive } from '../../src/archive/reader.js';
import { openArchiveWriter } from '../../src/archive/writer.js';
import {
  HEADER,
  bytes,
  handTar,
  headerJson,
  manifestJson,
  memberOffset,
  readAll,
  tempDir,
  writeSample,
  zstdCompress,
} from './helpers.js';

const DATA = 'maps/0000/data-000000.bin';

async function drain(path: string): Promise<void> {
  const r = await openArchiveReader(path);
  await readAll(r);
  await r.finish();
}

async function sampleTar(dir: string): Promise<Buffer> {
  const out = join(dir, 'a.tar');
  await writeSample(await openArchiveWriter(out, HEADER));
  return readFileSync(out);
}

test('a tar cut in the middle of a member is incomplete, naming the member', async (t) => {
  const tmp = tempDir();
  try {
    const tar = await sampleTar(tmp.dir);
    const cut = join(tmp.dir, 'cut.tar');
    writeFileSync(cut, tar.subarray(0, memberOffset(tar, DATA) + 1000));
    const e = await t.throwsAsync(drain(cut), { instanceOf: ArchiveError });
    t.is(e!.code, 'INCOMPLETE');
    t.regex(e!.message, new RegExp(`^archive ${cut} is incomplete: .*member maps/0000/data-000000\\.bin`));
    await t.throwsAsync(verifyArchive(cut), { message: /is incomplete/ });
  } finally {
    tmp.cleanup();
  }
});

test('a tar cut between members (no manifest) is incomplete: no manifest.json', async (t) => {
  const tmp = tempDir();
  try {
    const tar = await sampleTar(tmp.dir);
    const cut = join(tmp.dir, 'cut.tar');
    writeFileSync(cut, tar.subarray(0, memberOffset(tar, MANIFEST_MEMBER) - 512));
    const r = await openArchiveReader(cut);
    const got = await readAll(r); // every member present is yielded...
    t.is(got.names.length, 8);
    t.is(r.manifest, undefined);
    // ...and finish() refuses the archive
    const err = await t.throwsAsync(r.finish(), { instanceOf: ArchiveError });
    t.is(err!.message, `archive ${cut} is incomplete: no manifest.json (truncated or interrupted dump?)`);
    t.is(err!.code, 'INCOMPLETE');
    await t.throwsAsync(verifyArchive(cut), { message: /is incomplete: no manifest\.json/ });
  } finally {
    tmp.cleanup();
  }
});

test('truncated .tar.zst and .tar.gz are reported as incomplete', async (t) => {
  const tmp = tempDir();
  try {
    for (const name of ['a.tar.zst', 'a.tar.gz']) {
      const out = join(tmp.dir, name);
      await writeSample(await openArchiveWriter(out, HEADER));
      const buf = readFileSync(out);
      const cut = join(tmp.dir, `cut-${name}`);
      writeFileSync(cut, buf.subarray(0, Math.floor(buf.length * 0.6)));
      await t.throwsAsync(drain(cut), { instanceOf: ArchiveError, message: /is incomplete/ }, name);
    }
  } finally {
    tmp.cleanup();
  }
});

test('a flipped byte in a data member: sha256 mismatch naming the member (tar)', async (t) => {
  const tmp = tempDir();
  try {
    const tar = await sampleTar(tmp.dir);
    tar[memberOffset(tar, DATA) + 3]! ^= 0xff;
    const bad = join(tmp.dir, 'bad.tar');
    writeFileSync(bad, tar);
    const r = await openArchiveReader(bad);
    await readAll(r); // content problems in a tar surface at finish()
    const e = await t.throwsAsync(r.finish(), { instanceOf: ArchiveError });
    t.is(e!.message, `archive ${bad}: member ${DATA}: sha256 mismatch`);
    t.is(e!.code, 'CHECKSUM');
    t.is(e!.member, DATA);

    const v = await verifyArchive(bad);
    t.false(v.ok);
    const failed = v.members.filter((m) => !m.ok);
    t.deepEqual(failed.map((m) => [m.name, m.problem]), [[DATA, 'sha256 mismatch']]);
    t.is(failed[0]!.actualSize, failed[0]!.size);
    t.not(failed[0]!.actualSha256, failed[0]!.sha256);
  } finally {
    tmp.cleanup();
  }
});

test('a flipped byte in a directory archive: read() of that member already fails', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'ckpt');
    await writeSample(await openArchiveWriter(out, HEADER));
    const f = join(out, DATA);
    const b = readFileSync(f);
    b[100]! ^= 1;
    writeFileSync(f, b);
    const r = await openArchiveReader(out);
    const e = await t.throwsAsync(readAll(r), { instanceOf: ArchiveError });
    t.is(e!.message, `archive ${out}: member ${DATA}: sha256 mismatch`);
    const v = await verifyArchive(out);
    t.false(v.ok);
    t.deepEqual(v.members.filter((m) => !m.ok).map((m) => m.name), [DATA]);
  } finally {
    tmp.cleanup();
  }
});

/** A hand-made archive: header, members, manifest (listing `listed`). */
async function handArchive(
  members: { name: string; data: Buffer }[],
  listed: { name: string; data: Buffer }[],
  opts: { header?: Record<string, unknown>; manifestHeader?: Record<string, unknown>; after?: { name: string; data: Buffer }[] } = {},
): Promise<Buffer> {
  const h = headerJson(opts.header);
  return handTar([
    { name: HEADER_MEMBER, data: h },
    ...members,
    { name: MANIFEST_MEMBER, data: manifestJson([{ name: HEADER_MEMBER, data: h }, ...listed], {}, opts.manifestHeader ?? opts.header) },
    ...(opts.after ?? []),
  ]);
}

const A = { name: 'a.bin', data: bytes(1000, 1) };
const B = { name: 'b.bin', data: bytes(2000, 2) };

test('a member missing from the manifest is refused; verify reports it', async (t) => {
  const tmp = tempDir();
  try {
    const p = join(tmp.dir, 'x.tar');
    writeFileSync(p, await handArchive([A, B], [A]));
    await t.throwsAsync(drain(p), { instanceOf: ArchiveError, message: `archive ${p}: member b.bin: not listed in manifest.json` });
    const v = await verifyArchive(p);
    t.false(v.ok);
    t.deepEqual(v.members.map((m) => [m.name, m.ok, m.problem]), [
      [HEADER_MEMBER, true, undefined],
      ['a.bin', true, undefined],
      ['b.bin', false, 'not listed in manifest'],
    ]);
  } finally {
    tmp.cleanup();
  }
});

test('a manifest member absent from the archive is refused; verify reports it', async (t) => {
  const tmp = tempDir();
  try {
    const p = join(tmp.dir, 'x.tar');
    writeFileSync(p, await handArchive([A], [A, B]));
    await t.throwsAsync(drain(p), {
      instanceOf: ArchiveError,
      message: `archive ${p}: member b.bin: listed in manifest.json but missing from the archive`,
    });
    const v = await verifyArchive(p);
    t.deepEqual(v.members.filter((m) => !m.ok).map((m) => [m.name, m.problem]), [['b.bin', 'missing']]);
  } finally {
    tmp.cleanup();
  }
});

test('a size that differs from the manifest is refused', async (t) => {
  const tmp = tempDir();
  try {
    const p = join(tmp.dir, 'x.tar');
    writeFileSync(p, await handArchive([A], [{ name: 'a.bin', data: bytes(999, 1) }]));
    await t.throwsAsync(drain(p), { message: /member a\.bin: size mismatch \(manifest\.json: 999 bytes, archive: 1000 bytes\)/ });
  } finally {
    tmp.cleanup();
  }
});

test('header version 99 is refused naming the version (tar and directory)', async (t) => {
  const tmp = tempDir();
  try {
    const h99 = { ...HEADER, version: 99 };
    const p = join(tmp.dir, 'v99.tar');
    writeFileSync(p, await handArchive([A], [A], { header: h99 }));
    const e = await t.throwsAsync(openArchiveReader(p), { instanceOf: ArchiveError });
    t.is(e!.code, 'VERSION');
    t.regex(e!.message, /^archive .*v99\.tar: format version 99 is not supported/);
    await t.throwsAsync(verifyArchive(p), { message: /format version 99/ });

    const d = join(tmp.dir, 'v99dir');
    mkdirSync(d);
    writeFileSync(join(d, HEADER_MEMBER), headerJson(h99));
    await t.throwsAsync(openArchiveReader(d), { message: /format version 99 is not supported/ });
  } finally {
    tmp.cleanup();
  }
});

test('not a bpfcr archive: other first member, other format, empty input, garbage', async (t) => {
  const tmp = tempDir();
  try {
    const p1 = join(tmp.dir, 'other.tar');
    writeFileSync(p1, await handTar([{ name: 'README', data: 'hi' }, { name: HEADER_MEMBER, data: headerJson() }]));
    await t.throwsAsync(openArchiveReader(p1), { message: /not a bpfcr archive: first member is README, expected bpfcr-archive\.json/ });

    const p2 = join(tmp.dir, 'fmt.tar');
    writeFileSync(p2, await handTar([{ name: HEADER_MEMBER, data: JSON.stringify({ format: 'something-else', version: 1 }) }]));
    await t.throwsAsync(openArchiveReader(p2), { message: /is not a bpfcr archive \(bpfcr-archive\.json format is "something-else"\)/ });

    const p3 = join(tmp.dir, 'empty.tar');
    writeFileSync(p3, Buffer.alloc(0));
    await t.throwsAsync(openArchiveReader(p3), { message: /is empty or not a bpfcr archive/ });

    const p4 = join(tmp.dir, 'garbage.tar');
    writeFileSync(p4, bytes(4096, 3));
    await t.throwsAsync(openArchiveReader(p4), { instanceOf: ArchiveError, message: /corrupt tar data/ });

    const p5 = join(tmp.dir, 'badjson.tar.gz');
    writeFileSync(p5, gzipSync(await handTar([{ name: HEADER_MEMBER, data: '{nope' }])));
    await t.throwsAsync(openArchiveReader(p5), { message: /member bpfcr-archive\.json: invalid JSON/ });

    const p6 = join(tmp.dir, 'x.tar.xz');
    writeFileSync(p6, Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2]));
    await t.throwsAsync(openArchiveReader(p6), { message: /xz\/bzip2-compressed archives are not supported/ });

    await t.throwsAsync(openArchiveReader(join(tmp.dir, 'nope.tar')), { message: /cannot open: no such file/ });
  } finally {
    tmp.cleanup();
  }
});

test('duplicate members, members after the manifest, header/manifest disagreement', async (t) => {
  const tmp = tempDir();
  try {
    const dup = join(tmp.dir, 'dup.tar');
    writeFileSync(dup, await handArchive([A, A], [A]));
    await t.throwsAsync(drain(dup), { message: /member a\.bin: duplicate member/ });

    const after = join(tmp.dir, 'after.tar');
    writeFileSync(after, await handArchive([A], [A], { after: [B] }));
    await t.throwsAsync(drain(after), { message: /member b\.bin: follows manifest\.json, which must be the last member/ });

    const disagree = join(tmp.dir, 'disagree.tar');
    writeFileSync(disagree, await handArchive([A], [A], { manifestHeader: { ...HEADER, hostname: 'elsewhere' } }));
    await t.throwsAsync(drain(disagree), { message: /member manifest\.json: field hostname differs from bpfcr-archive\.json/ });

    const order = join(tmp.dir, 'order.tar');
    writeFileSync(order, await handArchive([B, A], [A, B]));
    await t.throwsAsync(drain(order), { message: /member a\.bin: out of order/ });
  } finally {
    tmp.cleanup();
  }
});

test('a flipped byte inside a .tar.zst frame is reported as corrupt', async (t) => {
  const tmp = tempDir();
  try {
    const tar = await handArchive([{ name: 'big.bin', data: bytes(200_000, 7) }], [{ name: 'big.bin', data: bytes(200_000, 7) }]);
    const z = zstdCompress(tar);
    z[Math.floor(z.length / 2)]! ^= 0x55;
    const p = join(tmp.dir, 'c.tar.zst');
    writeFileSync(p, z);
    const e = await t.throwsAsync(drain(p), { instanceOf: ArchiveError });
    t.regex(e!.message, /corrupt zstd data|sha256 mismatch|corrupt tar/);
  } finally {
    tmp.cleanup();
  }
});
