/**
 * Where an archive's members come from. A path, '-' (stdin) or a Readable becomes a MemberSource
 * (member-source.ts): a directory source, or a tar source over the input decompressed as its
 * first bytes say (detectCompression: the one place that recognises compressed input).
 */
import { constants as fsc, createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { DirSource } from './dir-source.js';
import { ArchiveError, errorMessage } from './format.js';
import { findZstd, zstdDecompress, zstdMissing } from './io.js';
import { READ_CHUNK } from './member.js';
import type { MemberSource } from './member-source.js';
import { memberNameProblem } from './names.js';
import { TarReadAhead } from './readahead.js';
import { fileBytes, scanForManifest, streamBytes } from './tar-scan.js';
import { TarSource, loadTarStream } from './tar-source.js';
import type { Compression } from './writer.js';

/** A path (file: compression detected from its content; or a directory), '-' for stdin, or a Readable. */
export type ArchiveSource = string | Readable;

export interface SourceOptions {
  prefix?: string;
  zstdCommand?: string;
}

/** Number of leading bytes detectCompression looks at. */
export const MAGIC_BYTES = 6;
const MAGIC_GZIP = Buffer.from([0x1f, 0x8b]);
const MAGIC_ZSTD = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const MAGIC_XZ = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const MAGIC_BZIP2 = Buffer.from([0x42, 0x5a, 0x68]);

/**
 * The compression of a tar from its first MAGIC_BYTES bytes (by content, never by name):
 * gzip, zstd, or 'none' (parsed as a plain tar). xz and bzip2 are refused with a clear message.
 */
export function detectCompression(head: Buffer, label: string): Compression {
  if (head.subarray(0, 2).equals(MAGIC_GZIP)) return 'gzip';
  if (head.subarray(0, 4).equals(MAGIC_ZSTD)) return 'zstd';
  if (head.subarray(0, 6).equals(MAGIC_XZ) || head.subarray(0, 3).equals(MAGIC_BZIP2))
    throw new ArchiveError(`archive ${label}: xz/bzip2-compressed archives are not supported (use plain, gzip or zstd)`, {
      code: 'FORMAT',
      archive: label,
    });
  return 'none';
}

/** Wait for the first `n` bytes of a stream; returns them and a stream of the whole content. */
async function peekStream(src: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  const it = src[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const buffered: Buffer[] = [];
  let len = 0;
  let ended = false;
  while (len < n) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    const c = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    buffered.push(c);
    len += c.length;
  }
  const head = Buffer.concat(buffered);
  async function* all(): AsyncGenerator<Buffer> {
    if (head.length) yield head;
    if (ended) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    }
  }
  const stream = Readable.from(all(), { objectMode: false });
  stream.on('close', () => {
    if (!ended) src.destroy();
  });
  return { head, stream };
}

export function normalizePrefix(prefix: string | undefined): string | undefined {
  if (prefix === undefined) return undefined;
  let p = prefix;
  while (p.startsWith('./')) p = p.slice(2);
  p = p.replace(/\/+$/, '');
  if (p === '' || p === '.') return undefined;
  const problem = memberNameProblem(p);
  if (problem) throw new ArchiveError(`invalid archive prefix ${JSON.stringify(prefix)}: ${problem}`, { code: 'USAGE' });
  return `${p}/`;
}

/**
 * The tar inside an opened file or stream, decompressed as `compression` says. A plain tar file is
 * read ahead in entry-sized chunks (readahead.ts): reads stay in flight while the caller is busy,
 * and each member body reaches read() as one Buffer. A FileHandle passed in is owned by the result.
 */
async function decompressed(compression: Compression, input: Readable | FileHandle, label: string, opts: SourceOptions): Promise<Readable> {
  if (compression === 'zstd') {
    const cmd = findZstd(opts.zstdCommand);
    if (!cmd) {
      if (!(input instanceof Readable)) await input.close();
      throw zstdMissing(label, opts.zstdCommand);
    }
    if (input instanceof Readable) return zstdDecompress(cmd, input, label);
    try {
      return await zstdDecompress(cmd, input.fd, label);
    } finally {
      await input.close(); // zstd holds its own copy of the descriptor
    }
  }
  if (compression === 'none' && !(input instanceof Readable)) return new TarReadAhead(input);
  const stream =
    input instanceof Readable ? input : createReadStream('', { fd: input, highWaterMark: READ_CHUNK, autoClose: true });
  if (compression === 'none') return stream;
  const gunzip = createGunzip({ chunkSize: 256 << 10 });
  pipeline(stream, gunzip).catch(() => {});
  return gunzip;
}

async function openFile(path: string, label: string): Promise<FileHandle> {
  try {
    return await open(path, fsc.O_RDONLY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ArchiveError(
      `archive ${label}: cannot open: ${code === 'ENOENT' ? 'no such file or directory' : errorMessage(e)}`,
      { code: 'IO', archive: label, cause: e },
    );
  }
}

/** The compression of an opened regular file, from its first bytes. */
async function fileCompression(fh: FileHandle, label: string): Promise<Compression> {
  const head = Buffer.alloc(MAGIC_BYTES);
  const { bytesRead } = await fh.read(head, 0, MAGIC_BYTES, 0);
  return detectCompression(head.subarray(0, bytesRead), label);
}

/**
 * A tar file (plain, gzip or zstd) as a TarSource: the bpfcr members under `prefix`, or every
 * entry of any tar through entry() (a podman export, src/cli/autoprefix.ts).
 */
export async function openTarFile(path: string, label: string, opts: SourceOptions): Promise<TarSource> {
  return tarOfFile(await openFile(path, label), label, opts);
}

/** openTarFile on a regular file already open (owns `fh`). */
async function tarOfFile(fh: FileHandle, label: string, opts: SourceOptions): Promise<TarSource> {
  let tar: Awaited<ReturnType<typeof loadTarStream>>;
  let compression: Compression;
  try {
    // tar-stream is loaded before the decompressor starts, so that its errors (a truncated
    // .tar.zst) always find the TarSource listening
    tar = await loadTarStream();
    compression = await fileCompression(fh, label);
  } catch (e) {
    await fh.close();
    throw e;
  }
  return new TarSource(tar, await decompressed(compression, fh, label, opts), label, normalizePrefix(opts.prefix), compression);
}

/**
 * The body of manifest.json of a bpfcr tar file, found before its members (tar-scan.ts), or
 * undefined when the walk does not find it (the reader then meets it at the end, as usual).
 */
export async function prereadManifest(path: string, label: string, opts: SourceOptions): Promise<Buffer | undefined> {
  let fh: FileHandle | undefined;
  let stream: Readable | undefined;
  try {
    fh = await openFile(path, label);
    const compression = await fileCompression(fh, label);
    if (compression === 'none') return await scanForManifest(fileBytes(fh));
    stream = await decompressed(compression, fh, label, opts);
    fh = undefined; // owned by the stream now
    stream.on('error', () => {}); // whatever went wrong, the real pass reports it
    return await scanForManifest(streamBytes(stream));
  } catch {
    return undefined;
  } finally {
    stream?.destroy();
    await fh?.close().catch(() => {});
  }
}

/** Open `source` (see ArchiveSource); `label` names it in errors. */
export async function openSource(source: ArchiveSource, label: string, opts: SourceOptions): Promise<MemberSource> {
  const prefix = normalizePrefix(opts.prefix);
  let input: Readable;
  if (typeof source === 'string' && source !== '-') {
    const fh = await openFile(source, label);
    const st = await fh.stat();
    if (st.isDirectory()) {
      await fh.close();
      return DirSource.open(source, prefix, label);
    }
    if (st.isFile()) return tarOfFile(fh, label, opts);
    input = createReadStream('', { fd: fh, highWaterMark: READ_CHUNK });
  } else if (source === '-') {
    if (process.stdin.isTTY)
      throw new ArchiveError('archive <stdin>: refusing to read an archive from a terminal', { code: 'USAGE', archive: label });
    input = process.stdin;
  } else if (source instanceof Readable || (typeof (source as Readable)?.pipe === 'function')) {
    input = source as Readable;
  } else {
    throw new ArchiveError(`archive ${label}: source must be a path, '-' or a Readable`, { code: 'USAGE', archive: label });
  }
  const tar = await loadTarStream();
  const { head, stream } = await peekStream(input, MAGIC_BYTES);
  let compression: Compression;
  try {
    compression = detectCompression(head, label);
  } catch (e) {
    stream.destroy();
    throw e;
  }
  return new TarSource(tar, await decompressed(compression, stream, label, opts), label, prefix, compression);
}
