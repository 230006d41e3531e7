import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ArchiveError, HEADER_MEMBER, MANIFEST_MEMBER } from '../../src/archive/format.js';
import { openArchiveReader, verifyArchive } from '../../src/archive/reader.js';
import { openArchiveWriter, outputFormatForPath, type Compression } from '../../src/archive/writer.js';
import {
  BODY,
  HEADER,
  bytes,
  concat,
  readAll,
  sampleMembers,
  sha256,
  sink,
  streamOf,
  tempDir,
  writeSample,
} from './helpers.js';

const KINDS: { file: string; kind: 'tar' | 'dir'; compression: Compression; magic?: number[] }[] = [
  { file: 'a.tar', kind: 'tar', compression: 'none' },
  { file: 'a.tgz', kind: 'tar', compression: 'gzip', magic: [0x1f, 0x8b] },
  { file: 'a.tar.gz', kind: 'tar', compression: 'gzip', magic: [0x1f, 0x8b] },
  { file: 'a.tar.zst', kind: 'tar', compression: 'zstd', magic: [0x28, 0xb5, 0x2f, 0xfd] },
  { file: 'ckpt', kind: 'dir', compression: 'none' },
  { file: 'ckpt.d/', kind: 'dir', compression: 'none' },
];

for (const k of KINDS) {
  test(`round trip: ${k.file}`, async (t) => {
    const tmp = tempDir();
    try {
      const out = join(tmp.dir, k.file);
      const w = await openArchiveWriter(out, HEADER);
      t.deepEqual(w.format, { kind: k.kind, compression: k.compression });
      t.false(statSync(tmp.dir).isFile());
      await writeSample(w);
      const outPath = out.replace(/\/$/, '');
      const st = statSync(outPath);
      t.is(st.isDirectory(), k.kind === 'dir');
      if (k.magic) t.deepEqual([...readFileSync(outPath).subarray(0, k.magic.length)], k.magic);

      const r = await openArchiveReader(outPath);
      t.deepEqual(r.format, { kind: k.kind, compression: k.compression });
      t.deepEqual(r.header, HEADER);
      const got = await readAll(r);
      const want = sampleMembers();
      t.deepEqual(got.names, want.map((m) => m.name));
      for (const m of want) t.true(got.data.get(m.name)!.equals(concat(m)), m.name);
      const manifest = await r.finish();
      t.deepEqual(manifest.maps, BODY.maps);
      t.deepEqual(manifest.btf, BODY.btf);
      t.is(manifest.hostname, HEADER.hostname);
      t.deepEqual(
        manifest.members.map((d) => d.name),
        [HEADER_MEMBER, ...want.map((m) => m.name)],
      );
      for (const m of want) {
        const d = manifest.members.find((x) => x.name === m.name)!;
        t.is(d.size, concat(m).length);
        t.is(d.sha256, sha256(concat(m)));
      }
      t.deepEqual(manifest.members, w.members);

      const v = await verifyArchive(outPath);
      t.true(v.ok);
      t.is(v.members.length, want.length + 1);
      t.true(v.members.every((m) => m.ok));
    } finally {
      tmp.cleanup();
    }
  });
}

for (const compression of ['none', 'gzip', 'zstd'] as const) {
  test(`round trip through a stream target (${compression}) and a Readable source`, async (t) => {
    const s = sink();
    const w = await openArchiveWriter({ stream: s.stream, compression }, HEADER);
    t.is(w.path, undefined);
    await writeSample(w);
    const buf = await s.done;
    const r = await openArchiveReader(streamOf(buf), { label: 'mem' });
    t.is(r.format.compression, compression);
    const got = await readAll(r);
    t.deepEqual(got.names, sampleMembers().map((m) => m.name));
    await r.finish();
  });
}

test('stdout → stdin: "-" writes a plain tar to stdout, "-" reads it from stdin', async (t) => {
  const tmp = tempDir();
  try {
    const writer = new URL('../../src/archive/writer.js', import.meta.url).href;
    const reader = new URL('../../src/archive/reader.js', import.meta.url).href;
    const wjs = join(tmp.dir, 'w.mjs');
    const rjs = join(tmp.dir, 'r.mjs');
    writeFileSync(
      wjs,
      `import { openArchiveWriter } from ${JSON.stringify(writer)};
const w = await openArchiveWriter('-', ${JSON.stringify(HEADER)});
for (let i = 0; i < 20; i++) await w.addMember('maps/0000/data-' + String(i).padStart(6, '0') + '.bin', Buffer.alloc(1 << 20, i));
await w.finish({ maps: [] });
`,
    );
    writeFileSync(
      rjs,
      `import { openArchiveReader } from ${JSON.stringify(reader)};
import { createHash } from 'node:crypto';
const r = await openArchiveReader('-');
const out = [];
for await (const m of r.members()) { const b = await m.read(); out.push([m.name, b.length, b[0], b[b.length - 1]]); }
const man = await r.finish();
process.stdout.write(JSON.stringify({ out, n: man.members.length, fmt: r.format }));
`,
    );
    const result = await new Promise<string>((resolve, reject) => {
      const w = spawn(process.execPath, [wjs], { stdio: ['ignore', 'pipe', 'inherit'] });
      const r = spawn(process.execPath, [rjs], { stdio: ['pipe', 'pipe', 'pipe'] });
      w.stdout.pipe(r.stdin);
      let out = '';
      let err = '';
      r.stdout.on('data', (c) => (out += c));
      r.stderr.on('data', (c) => (err += c));
      r.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`reader exited ${code}: ${err}`))));
      w.on('close', (code) => {
        if (code !== 0) reject(new Error(`writer exited ${code}`));
      });
    });
    const res = JSON.parse(result) as { out: [string, number, number, number][]; n: number; fmt: unknown };
    t.is(res.out.length, 20);
    t.deepEqual(res.out[7], ['maps/0000/data-000007.bin', 1 << 20, 7, 7]);
    t.is(res.n, 21);
    t.deepEqual(res.fmt, { kind: 'tar', compression: 'none' });
  } finally {
    tmp.cleanup();
  }
});

test('GNU tar reads our tar (names incl. ustar prefix and pax), and its extraction reads back as a directory', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'a.tar');
    await writeSample(await openArchiveWriter(out, HEADER));
    const listed = execFileSync('tar', ['-tf', out], { encoding: 'utf8' }).trim().split('\n');
    t.deepEqual(listed, [HEADER_MEMBER, ...sampleMembers().map((m) => m.name), MANIFEST_MEMBER]);
    const x = join(tmp.dir, 'x');
    mkdirSync(x);
    execFileSync('tar', ['-xf', out, '-C', x]);
    const r = await openArchiveReader(x);
    const got = await readAll(r);
    t.deepEqual(got.names, sampleMembers().map((m) => m.name));
    await r.finish();
  } finally {
    tmp.cleanup();
  }
});

test('a member can be streamed, partially read, or skipped; skipped members are still verified', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'a.tar.zst');
    await writeSample(await openArchiveWriter(out, HEADER));
    const r = await openArchiveReader(out);
    let n = 0;
    for await (const m of r.members()) {
      n++;
      if (m.name === 'maps/0000/data-000000.bin') {
        const s = m.stream();
        const first = (await s[Symbol.asyncIterator]().next()).value as Buffer;
        t.true(first.length > 0);
        const whole = Buffer.concat([bytes(70_000, 2), bytes(140_000, 3)]);
        t.true(first.equals(whole.subarray(0, first.length)));
        // abandon the rest: the reader drains it
      } else if (m.name === 'btf/12.btf') {
        const chunks: Buffer[] = [];
        for await (const c of m.stream()) chunks.push(c as Buffer);
        t.true(Buffer.concat(chunks).equals(bytes(3000, 1)));
        await t.throwsAsync(m.read(), { message: /already consumed/ });
      }
      // others: not touched at all
    }
    t.is(n, sampleMembers().length);
    const manifest = await r.finish();
    t.is(manifest.members.length, n + 1);
  } finally {
    tmp.cleanup();
  }
});

test('leaving the loop early, finish() still reads and verifies the rest', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'a.tar.gz');
    await writeSample(await openArchiveWriter(out, HEADER));
    const r = await openArchiveReader(out);
    for await (const m of r.members()) {
      t.is(m.name, 'btf/12.btf');
      break;
    }
    const manifest = await r.finish();
    t.is(manifest.members.length, sampleMembers().length + 1);
  } finally {
    tmp.cleanup();
  }
});

test('read() refuses members above maxMemberSize; stream() still works; stale members refuse reads', async (t) => {
  const s = sink();
  const w = await openArchiveWriter({ stream: s.stream, compression: 'none' }, HEADER);
  await w.addMember('big.bin', bytes(100_000, 9));
  await w.addMember('small.bin', bytes(10, 9));
  await w.finish();
  const buf = await s.done;
  const r = await openArchiveReader(Readable.from([buf]), { maxMemberSize: 50_000 });
  const it = r.members();
  const big = (await it.next()).value!;
  await t.throwsAsync(big.read(), { instanceOf: ArchiveError, message: /member big\.bin: .*too large/ });
  const chunks: Buffer[] = [];
  for await (const c of big.stream()) chunks.push(c as Buffer);
  t.true(Buffer.concat(chunks).equals(bytes(100_000, 9)));
  const small = (await it.next()).value!;
  t.is(small.name, 'small.bin');
  await t.throwsAsync(big.read(), { message: /no longer readable|already consumed/ });
  await r.finish();
});

test('output format from the path', (t) => {
  const tmp = tempDir();
  try {
    t.deepEqual(outputFormatForPath('x.tar'), { kind: 'tar', compression: 'none' });
    t.deepEqual(outputFormatForPath('x.TGZ'), { kind: 'tar', compression: 'gzip' });
    t.deepEqual(outputFormatForPath('x.tar.zst'), { kind: 'tar', compression: 'zstd' });
    t.deepEqual(outputFormatForPath('x.tzst'), { kind: 'tar', compression: 'zstd' });
    t.deepEqual(outputFormatForPath('checkpoint'), { kind: 'dir', compression: 'none' });
    t.deepEqual(outputFormatForPath('x.tar/'), { kind: 'dir', compression: 'none' });
    t.deepEqual(outputFormatForPath('ckpt.2024-05-01'), { kind: 'dir', compression: 'none' });
    const d = join(tmp.dir, 'exists.tar');
    mkdirSync(d);
    t.deepEqual(outputFormatForPath(d), { kind: 'dir', compression: 'none' });
    for (const bad of ['x.tar.xz', 'x.zip', 'x.gz', 'x.zst', 'x.tar.bz2'])
      t.throws(() => outputFormatForPath(bad), { instanceOf: ArchiveError, message: /unsupported output format/ });
  } finally {
    tmp.cleanup();
  }
});

test('an archive with no members besides header and manifest', async (t) => {
  const tmp = tempDir();
  try {
    for (const name of ['e.tar', 'e.tar.zst', 'edir']) {
      const out = join(tmp.dir, name);
      const w = await openArchiveWriter(out, HEADER);
      await w.finish();
      const r = await openArchiveReader(out);
      const got = await readAll(r);
      t.deepEqual(got.names, []);
      const m = await r.finish();
      t.deepEqual(m.members.map((d) => d.name), [HEADER_MEMBER]);
    }
  } finally {
    tmp.cleanup();
  }
});

test('many members with backpressure: a slow consumer bounds what is buffered', async (t) => {
  // A stream target whose consumer reads slowly: addMember must wait rather than queue everything.
  const s = sink();
  s.stream.pause();
  const w = await openArchiveWriter({ stream: s.stream, compression: 'none' }, HEADER, { maxInFlightBytes: 1 << 20 });
  const chunk = Buffer.alloc(1 << 20, 1);
  let resolved = 0;
  const writing = (async () => {
    for (let i = 0; i < 32; i++) {
      await w.addMember(`m/${i}.bin`, chunk);
      resolved++;
    }
    await w.finish();
  })();
  await new Promise((r) => setTimeout(r, 200));
  t.true(resolved < 8, `addMember resolved ${resolved} times without a consumer`);
  s.stream.resume();
  await writing;
  const buf = await s.done;
  t.true(buf.length > 32 << 20);
  const v = await verifyArchive(Readable.from([buf]));
  t.true(v.ok);
  t.is(v.members.length, 33);
});
