import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import * as tar from 'tar-stream';
import { openArchiveReader } from '../../src/archive/reader.js';
import { TarReadAhead } from '../../src/archive/readahead.js';
import { openArchiveWriter } from '../../src/archive/writer.js';
import { HEADER, bytes, tempDir } from './helpers.js';

/** Every chunk a TarReadAhead over `path` produces, with its file offset. */
async function chunksOf(path: string, opts: { readAhead?: number; maxChunk?: number } = {}): Promise<{ off: number; buf: Buffer }[]> {
  const ra = new TarReadAhead(await open(path, 'r'), opts);
  const out: { off: number; buf: Buffer }[] = [];
  let off = 0;
  for await (const c of ra) {
    out.push({ off, buf: c as Buffer });
    off += (c as Buffer).length;
  }
  return out;
}

/** Body offset and size of every entry with data, as tar-stream parses the file. */
async function bodies(file: Buffer): Promise<{ name: string; off: number; size: number }[]> {
  const ex = tar.extract();
  const out: { name: string; off: number; size: number }[] = [];
  const done = (async () => {
    for await (const e of ex) {
      const h = e.header as tar.Header & { byteOffset: number };
      if ((h.size ?? 0) > 0 && h.type === 'file') out.push({ name: h.name, off: h.byteOffset, size: h.size! });
      e.resume();
    }
  })();
  ex.end(file);
  await done;
  return out;
}

/** A tar whose one file's size is only in its pax header (ustar size field 0). */
async function paxSizeTar(body: Buffer): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  pack.entry({ name: 'before', size: 3 }, Buffer.from('abc'));
  pack.entry({ name: 'big', size: body.length, pax: { size: String(body.length) } }, body);
  pack.entry({ name: 'after', size: 5 }, Buffer.from('after'));
  pack.finalize();
  await done;
  const out = Buffer.concat(chunks);
  // the ustar header of 'big' follows the pax header (block 2) and its one-block body (block 3)
  const h = out.subarray(4 * 512, 5 * 512);
  if (h[156] !== 0x30 || h.subarray(124, 136).toString('latin1').trim() === '') throw new Error('unexpected layout');
  h.write('00000000000\0', 124, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of h) sum += x;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return out;
}

test('read-ahead: a plain tar file is cut at entry boundaries, whatever wrote it (bpfcr, GNU tar gnu/pax/ustar)', async (t) => {
  const tmp = tempDir();
  try {
    // our writer: ustar prefix and pax names, empty members, a member over maxChunk
    const ours = join(tmp.dir, 'a.tar');
    const w = await openArchiveWriter(ours, HEADER);
    await w.addMember('btf/1.btf', bytes(3000, 1));
    await w.addMember(`x/${'l'.repeat(150)}/${'n'.repeat(40)}.bin`, bytes(70_000, 2));
    await w.addMember(`y${'v'.repeat(180)}.bin`, bytes(513, 3));
    await w.addMember('maps/0000/data-000000.bin', [bytes(1 << 20, 4), bytes((1 << 20) + 7, 5)]);
    await w.addMember('maps/0000/data-000001.bin', Buffer.alloc(0));
    await w.addMember('maps/0000/data-000002.bin', bytes(5 << 20, 6)); // > maxChunk below: several chunks
    await w.finish();

    // GNU tar in each format, with directories, long names (GNU 'L' records / pax) and a symlink
    const src = join(tmp.dir, 'src');
    const deep = join(src, 'd'.repeat(90), 'e'.repeat(90));
    mkdirSync(deep, { recursive: true });
    writeFileSync(join(src, 'small'), bytes(100, 7));
    writeFileSync(join(deep, `${'f'.repeat(120)}.bin`), bytes(300_000, 8));
    writeFileSync(join(src, 'aligned'), bytes(4096, 9));
    execFileSync('ln', ['-s', 'small', join(src, 'link')]);
    const files = [ours];
    for (const format of ['gnu', 'pax', 'ustar']) {
      const f = join(tmp.dir, `${format}.tar`);
      // ustar cannot store the long name: that format gets the short files only
      const what = format === 'ustar' ? ['small', 'aligned', 'link'] : ['.'];
      execFileSync('tar', [`--format=${format}`, '-cf', f, '-C', src, ...what]);
      files.push(f);
    }

    // a pax 'size' record overriding the ustar size field (what writers do for bodies ≥ 8 GiB)
    const paxed = join(tmp.dir, 'paxsize.tar');
    writeFileSync(paxed, await paxSizeTar(bytes(70_000, 10)));
    files.push(paxed);

    for (const f of files) {
      const file = readFileSync(f);
      const maxChunk = 2 << 20;
      const chunks = await chunksOf(f, { maxChunk });
      t.true(Buffer.concat(chunks.map((c) => c.buf)).equals(file), `${f}: chunks cover the file`);
      t.true(chunks.every((c) => c.buf.length <= Math.max(maxChunk, 1 << 20)), `${f}: bounded chunks`);
      const starts = new Set(chunks.map((c) => c.off));
      const ends = new Set(chunks.map((c) => c.off + c.buf.length));
      const entries = await bodies(file);
      t.true(entries.length >= 2, f);
      for (const e of entries) {
        // each body starts a chunk; a body that fits maxChunk (with padding and the next header) is in one chunk
        t.true(starts.has(e.off), `${f}: ${e.name} starts a chunk`);
        const padded = Math.ceil(e.size / 512) * 512;
        if (padded + 512 <= maxChunk) t.true(ends.has(e.off + padded + 512), `${f}: ${e.name} is one chunk`);
      }
    }
  } finally {
    tmp.cleanup();
  }
});

test('read-ahead: each member of a plain tar reaches read() as one Buffer, not a concatenated copy', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'a.tar');
    const w = await openArchiveWriter(out, HEADER);
    const data = [bytes(3 << 20, 1), bytes(1 << 20, 2), bytes(8388600, 3)];
    for (let i = 0; i < data.length; i++) await w.addMember(`maps/0000/data-00000${i}.bin`, [data[i]!.subarray(0, 1000), data[i]!.subarray(1000)]);
    await w.finish();
    const r = await openArchiveReader(out);
    let i = 0;
    for await (const m of r.members()) {
      const b = await m.read();
      t.true(b.equals(data[i]!), m.name);
      // a view into the chunk read from the file (body, padding, next header), not a fresh copy
      t.true(b.buffer.byteLength > b.length, `${m.name}: not a concatenation`);
      i++;
    }
    t.is(i, data.length);
    await r.finish();
  } finally {
    tmp.cleanup();
  }
});

test('read-ahead: the next read is issued before a chunk is handed to the consumer', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'a.tar');
    const w = await openArchiveWriter(out, HEADER);
    // what restore reads: a small meta.json, then data chunks of up to 8 MiB (default options)
    await w.addMember('maps/0000/meta.json', bytes(300, 1));
    const chunk = bytes(8388600, 2);
    for (let i = 0; i < 3; i++) await w.addMember(`maps/0000/data-00000${i}.bin`, chunk.subarray(i));
    await w.addMember('maps/0000/data-000003.bin', bytes(72, 3));
    await w.finish();
    const file = readFileSync(out);
    // a file handle whose reads complete only when the test says so
    const calls: { pos: number; len: number }[] = [];
    const pending: (() => void)[] = [];
    let closed = false;
    const fh = {
      read(buf: Buffer, off: number, len: number, pos: number) {
        calls.push({ pos, len });
        return new Promise((resolve) => {
          pending.push(() => resolve({ bytesRead: file.copy(buf, off, pos, Math.min(pos + len, file.length)), buffer: buf }));
        });
      },
      async close() {
        closed = true;
      },
    };
    const ra = new TarReadAhead(fh as never);
    const seen: number[] = [];
    const got: Buffer[] = [];
    ra.on('data', (c: Buffer) => {
      seen.push(calls.length); // reads requested when the consumer gets chunk #got.length
      got.push(c);
    });
    const ended = new Promise((r) => ra.on('end', r));
    let ends = false;
    void ended.then(() => (ends = true));
    while (!ends) {
      const next = pending.shift();
      if (next) next();
      await new Promise((r) => setImmediate(r));
    }
    t.true(Buffer.concat(got).equals(file));
    // chunk k is the answer to read k; by the time it is delivered, read k+1 was already requested
    for (let k = 0; k < got.length; k++) t.true(seen[k]! >= k + 2, `chunk ${k}: ${seen[k]} reads requested`);
    await new Promise((r) => setImmediate(r));
    t.true(closed, 'file closed at the end');
  } finally {
    tmp.cleanup();
  }
});

test('read-ahead: memory stays bounded when nobody reads, and destroy() closes the file', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'a.tar');
    const w = await openArchiveWriter(out, HEADER);
    for (let i = 0; i < 12; i++) await w.addMember(`m/${i}.bin`, bytes(1 << 20, i));
    await w.finish();
    const fh = await open(out, 'r');
    const ra = new TarReadAhead(fh, { readAhead: 1 << 20, maxChunk: 2 << 20 });
    ra.read(0); // start reading, consume nothing
    await new Promise((r) => setTimeout(r, 200));
    t.true(ra.readableLength > 0);
    t.true(ra.readableLength < (1 << 20) + (2 << 20), `buffered ${ra.readableLength}`);
    ra.destroy();
    await new Promise((r) => ra.on('close', r));
    t.is(fh.fd, -1);
  } finally {
    tmp.cleanup();
  }
});

test('read-ahead: bytes that are not a tar still come through intact (tar-stream reports them)', async (t) => {
  const tmp = tempDir();
  try {
    const f = join(tmp.dir, 'junk.tar');
    const junk = bytes(3 << 20, 42);
    junk.fill(0, 0, 512); // a zero block first, then garbage
    writeFileSync(f, junk);
    t.true(Buffer.concat((await chunksOf(f)).map((c) => c.buf)).equals(junk));
    const g = join(tmp.dir, 'junk2.tar');
    writeFileSync(g, bytes(70_000, 43)); // garbage header: unparseable size
    t.true(Buffer.concat((await chunksOf(g)).map((c) => c.buf)).equals(readFileSync(g)));
    await t.throwsAsync(openArchiveReader(g), { message: /corrupt tar data|not a bpfcr archive/ });
  } finally {
    tmp.cleanup();
  }
});
