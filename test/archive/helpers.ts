/** Shared helpers for the archive tests. */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { MANIFEST_DIGEST_KEY, makeHeader, manifestDigest, type ArchiveHeader } from '../../src/archive/format.js';
import type { ArchiveReader } from '../../src/archive/reader.js';
import type { ArchiveWriter } from '../../src/archive/writer.js';

export const HEADER: ArchiveHeader = makeHeader({
  tool: { name: 'bpfcr-test', version: '0.0.0' },
  created: '2024-05-01T12:00:00.000Z',
  kernel: '6.1.0-test',
  hostname: 'testhost',
  possibleCpus: 4,
});

export interface TempDir {
  dir: string;
  cleanup(): void;
}

export function tempDir(): TempDir {
  const dir = mkdtempSync(join(tmpdir(), 'bpfcr-archive-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic pseudo-random bytes. */
export function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

export interface SampleMember {
  name: string;
  data: Buffer[];
}

/** A representative set of members: BTF blob, two maps with meta + chunks, an empty chunk, a long name. */
export function sampleMembers(): SampleMember[] {
  const long = `x/${'l'.repeat(150)}/${'n'.repeat(40)}.bin`; // needs the ustar prefix field
  const veryLong = `y${'v'.repeat(180)}.bin`; // no slash: needs a pax header
  return [
    { name: 'btf/12.btf', data: [bytes(3000, 1)] },
    { name: 'maps/0000/meta.json', data: [Buffer.from(JSON.stringify({ index: 0, name: 'flows' }))] },
    { name: 'maps/0000/data-000000.bin', data: [bytes(70_000, 2), bytes(140_000, 3)] },
    { name: 'maps/0000/data-000001.bin', data: [bytes(512, 4)] },
    { name: 'maps/0001/meta.json', data: [Buffer.from(JSON.stringify({ index: 1, name: 'q' }))] },
    { name: 'maps/0001/data-000000.bin', data: [] },
    { name: long, data: [bytes(10, 5)] },
    { name: veryLong, data: [bytes(1, 6)] },
  ];
}

export const BODY = { maps: [{ index: 0 }, { index: 1 }], btf: [12] };

export function concat(m: SampleMember): Buffer {
  return Buffer.concat(m.data);
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export async function writeSample(w: ArchiveWriter, members = sampleMembers()): Promise<void> {
  for (const m of members) await w.addMember(m.name, m.data.length === 1 ? m.data[0]! : m.data);
  await w.finish(BODY);
}

export interface ReadBack {
  names: string[];
  data: Map<string, Buffer>;
}

export async function readAll(r: ArchiveReader): Promise<ReadBack> {
  const names: string[] = [];
  const data = new Map<string, Buffer>();
  for await (const m of r.members()) {
    names.push(m.name);
    const b = await m.read();
    if (b.length !== m.size) throw new Error(`member ${m.name}: read ${b.length} bytes, size ${m.size}`);
    data.set(m.name, b);
  }
  return { names, data };
}

export interface HandEntry {
  name: string;
  type?: tar.Header['type'];
  data?: Buffer | string;
  linkname?: string;
}

/** Build a tar by hand with tar-stream (for malformed / hostile archives). */
export async function handTar(entries: HandEntry[], opts: { end?: boolean } = {}): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const type = e.type ?? 'file';
      const data = e.data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data);
      const h: Partial<tar.Header> & { name: string } = { name: e.name, type, mode: type === 'directory' ? 0o700 : 0o600 };
      if (e.linkname !== undefined) h.linkname = e.linkname;
      const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
      if (type === 'file' || type === 'contiguous-file') pack.entry(h, data, cb);
      else pack.entry(h, cb);
    });
  }
  pack.finalize();
  await done;
  const out = Buffer.concat(chunks);
  return opts.end === false ? out.subarray(0, out.length - 1024) : out;
}

/** JSON member helpers for hand-made archives. */
export function headerJson(h: Record<string, unknown> = HEADER as unknown as Record<string, unknown>): Buffer {
  return Buffer.from(JSON.stringify(h, null, 2) + '\n');
}

/** A manifest as the writer makes it (with its own checksum from format version 2 on). */
export function manifestJson(
  members: { name: string; data: Buffer }[],
  extra: Record<string, unknown> = {},
  h: Record<string, unknown> = HEADER as unknown as Record<string, unknown>,
): Buffer {
  const m: Record<string, unknown> = {
    ...h,
    ...extra,
    members: members.map((x) => ({ name: x.name, size: x.data.length, sha256: sha256(x.data) })),
  };
  return Buffer.from(JSON.stringify(typeof h.version === 'number' && h.version >= 2 ? { ...m, [MANIFEST_DIGEST_KEY]: manifestDigest(m) } : m));
}

export function zstdCompress(b: Buffer): Buffer {
  const r = spawnSync('zstd', ['-q', '-c', '-3'], { input: b, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr}`);
  return r.stdout;
}

/** Collect everything written to a stream. */
export function sink(): { stream: PassThrough; done: Promise<Buffer> } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<Buffer>((resolve, reject) => {
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
  return { stream, done };
}

export function streamOf(b: Buffer, chunk = 7777): Readable {
  const s = new PassThrough();
  (async () => {
    for (let i = 0; i < b.length; i += chunk) {
      if (!s.write(b.subarray(i, i + chunk))) await new Promise((r) => s.once('drain', r));
    }
    s.end();
  })().catch((e) => s.destroy(e));
  return s;
}

/** Names in `dir` that look like leftovers of an interrupted write. */
export function partials(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.includes('.partial-'));
}

/** Offset of a tar member's body (plain ustar names only). */
export function memberOffset(tarBuf: Buffer, name: string): number {
  for (let off = 0; off + 512 <= tarBuf.length; ) {
    const n = tarBuf.subarray(off, off + 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(tarBuf.subarray(off + 124, off + 136).toString('utf8').replace(/\0.*$/s, '').trim() || '0', 8);
    if (n === name) return off + 512;
    off += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`member ${name} not in tar`);
}
