/**
 * Archive reader: streams the members of a bpfcr archive (tar, tar.gz, tar.zst, directory, stdin
 * or a Readable), hashing every byte, and verifies everything against manifest.json.
 * See docs/archive-format.md.
 */
import { createHash } from 'node:crypto';
import { constants as fsc, createReadStream } from 'node:fs';
import { chmod, lstat, mkdtemp, open, readdir, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import {
  ArchiveError,
  HEADER_MEMBER,
  MANIFEST_MEMBER,
  MAX_HEADER_BYTES,
  MAX_MANIFEST_BYTES,
  errorMessage,
  parseHeader,
  parseManifest,
  type ArchiveErrorCode,
  type ArchiveHeader,
  type Manifest,
  type MemberDigest,
} from './format.js';
import { findZstd, trackPartial, untrackPartial, writeFully, zstdDecompress, zstdMissing } from './io.js';
import { memberNameProblem } from './names.js';
import { TarReadAhead } from './readahead.js';
import type { Compression } from './writer.js';

/** A path (file: compression detected from its content; or a directory), '-' for stdin, or a Readable. */
export type ArchiveSource = string | Readable;

export interface ReaderOptions {
  /**
   * Read the bpfcr archive found under this member prefix of a larger tar (e.g. 'checkpoint/bpfcr/'
   * in a podman checkpoint export), or under this subdirectory of a directory source. Entries
   * outside the prefix are skipped; the prefix is stripped from member names.
   */
  prefix?: string;
  /** Name used in error messages (default: the path, "<stdin>" or "<stream>"). */
  label?: string;
  /** Largest member read() accepts (default 256 MiB); use stream() for larger ones. */
  maxMemberSize?: number;
  /**
   * Yield members in manifest order even when the container tar stores them in another order
   * (only possible with `prefix`: such members are spooled to a private temporary directory under
   * `spoolDir`). Default true. verifyArchive() turns it off.
   */
  ordered?: boolean;
  /** Where out-of-order members are spooled (default os.tmpdir()). */
  spoolDir?: string;
  /** Path of the zstd executable (default: $BPFCR_ZSTD, $PATH, /usr/bin, ...). */
  zstdCommand?: string;
}

export interface ArchiveMember {
  readonly name: string;
  readonly size: number;
  /** The whole body. Rejects on a checksum mismatch when the manifest is already known. */
  read(): Promise<Buffer>;
  /** The body as a stream (use for very large members). */
  stream(): Readable;
}

export interface ArchiveReader {
  readonly label: string;
  readonly format: { kind: 'tar' | 'dir'; compression: Compression };
  /** The validated header (first member). */
  readonly header: ArchiveHeader;
  /**
   * The manifest once read (parsed, not yet verified): directories at open; native tars when
   * members() has ended (it is the last member); under a prefix wherever the container tar stored
   * it. finish() returns it verified.
   */
  readonly manifest: Manifest | undefined;
  /**
   * Every member after the header except manifest.json, in archive order (= manifest order).
   * An unconsumed member is drained (and hashed) when the iteration moves on. Leaving the loop
   * early does not close the reader: call finish() or close().
   */
  members(): AsyncGenerator<ArchiveMember, void, undefined>;
  /** Read to the end and verify everything against manifest.json; returns the manifest. */
  finish(): Promise<Manifest>;
  /** Release everything (subprocesses, files, spool). Idempotent. */
  close(): Promise<void>;
}

export interface MemberCheck {
  name: string;
  /** Size and SHA-256 from the manifest (for unlisted members: what was found). */
  size: number;
  sha256: string;
  ok: boolean;
  problem?: 'sha256 mismatch' | 'size mismatch' | 'missing' | 'not listed in manifest';
  actualSize?: number;
  actualSha256?: string;
}

export interface VerifyResult {
  ok: boolean;
  header: ArchiveHeader;
  manifest: Manifest;
  format: { kind: 'tar' | 'dir'; compression: Compression };
  /** One entry per manifest member (header included), then any unlisted members. */
  members: MemberCheck[];
}

const DEFAULT_MAX_MEMBER = 256 << 20;
const READ_CHUNK = 1 << 20;

function printable(name: string): string {
  return /^[\x21-\x7e]*$/.test(name) ? name : JSON.stringify(name).slice(1, -1);
}

// ---------------------------------------------------------------------------------------------
// member bodies

interface Body {
  /** Next chunk, or null at the end. */
  pull(): Promise<Buffer | null>;
  /** Whole body in one buffer (optional fast path). */
  readAll?(): Promise<Buffer>;
  /** Precomputed SHA-256 (spooled members). */
  readonly digest?: string;
  close?(): Promise<void>;
}

/** Reads a regular file opened by the caller; checks it has exactly `size` bytes. */
class FileBody implements Body {
  #fh: FileHandle | undefined;
  #pos = 0;
  readonly digest: string | undefined;
  constructor(
    fh: FileHandle,
    readonly size: number,
    readonly onSizeChange: () => ArchiveError,
    digest?: string,
    readonly after?: () => Promise<void>,
  ) {
    this.#fh = fh;
    this.digest = digest;
  }
  async #atEnd(): Promise<void> {
    const probe = Buffer.allocUnsafe(1);
    const { bytesRead } = await this.#fh!.read(probe, 0, 1, this.#pos);
    if (bytesRead !== 0) throw this.onSizeChange();
    await this.close();
  }
  async pull(): Promise<Buffer | null> {
    if (!this.#fh) return null;
    if (this.#pos >= this.size) {
      await this.#atEnd();
      return null;
    }
    const want = Math.min(READ_CHUNK, this.size - this.#pos);
    const buf = Buffer.allocUnsafe(want);
    const { bytesRead } = await this.#fh.read(buf, 0, want, this.#pos);
    if (bytesRead === 0) throw this.onSizeChange();
    this.#pos += bytesRead;
    return bytesRead === want ? buf : buf.subarray(0, bytesRead);
  }
  async readAll(): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(this.size - this.#pos);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await this.#fh!.read(buf, off, buf.length - off, this.#pos);
      if (bytesRead === 0) throw this.onSizeChange();
      off += bytesRead;
      this.#pos += bytesRead;
    }
    await this.#atEnd();
    return buf;
  }
  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    if (fh) {
      await fh.close().catch(() => {});
      await this.after?.();
    }
  }
}

/** A tar entry's data (tar-stream entry). */
class TarBody implements Body {
  readonly #it: AsyncIterator<Buffer>;
  readonly #classify: (e: unknown) => ArchiveError;
  constructor(entry: AsyncIterable<Buffer>, classify: (e: unknown) => ArchiveError) {
    this.#it = entry[Symbol.asyncIterator]();
    this.#classify = classify;
  }
  async pull(): Promise<Buffer | null> {
    try {
      const r = await this.#it.next();
      return r.done ? null : r.value;
    } catch (e) {
      throw this.#classify(e);
    }
  }
}

type MemberState = 'fresh' | 'claimed' | 'done' | 'stale';

class MemberImpl implements ArchiveMember {
  readonly #body: Body;
  readonly #hash = createHash('sha256');
  #bytes = 0;
  #state: MemberState = 'fresh';
  #ended = false;
  #error: unknown;
  #chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly name: string,
    readonly size: number,
    body: Body,
    private readonly ctx: {
      label: string;
      maxMemberSize: number;
      /** Called once the body is complete; may throw (checksum mismatch). */
      done: (d: MemberDigest) => void;
      /** Called on any failure. */
      failed: (e: unknown) => void;
    },
  ) {
    this.#body = body;
  }

  #err(msg: string, code: ArchiveErrorCode): ArchiveError {
    return new ArchiveError(`archive ${this.ctx.label}: member ${this.name}: ${msg}`, {
      code,
      archive: this.ctx.label,
      member: this.name,
    });
  }

  #finishBody(): void {
    if (this.#bytes !== this.size)
      throw this.#err(`size mismatch (expected ${this.size} bytes, got ${this.#bytes})`, 'CHECKSUM');
    this.#ended = true;
    this.#state = 'done';
    this.ctx.done({ name: this.name, size: this.#bytes, sha256: this.#body.digest ?? this.#hash.digest('hex') });
  }

  #account(c: Buffer): void {
    if (this.#body.digest === undefined) this.#hash.update(c);
    this.#bytes += c.length;
    if (this.#bytes > this.size) throw this.#err(`more data than its size (${this.size} bytes)`, 'CHECKSUM');
  }

  /** Serialised: next chunk or null. */
  #pull(): Promise<Buffer | null> {
    const p = this.#chain.then(async () => {
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) return null;
      try {
        const c = await this.#body.pull();
        if (c === null) {
          this.#finishBody();
          return null;
        }
        this.#account(c);
        return c;
      } catch (e) {
        this.#error = e;
        await this.#body.close?.();
        this.ctx.failed(e);
        throw e;
      }
    });
    this.#chain = p.catch(() => {});
    return p;
  }

  #claim(how: string): void {
    if (this.#state === 'fresh') {
      this.#state = 'claimed';
      return;
    }
    const why =
      this.#state === 'stale' ? 'no longer readable (the reader has moved on to the next member)' : 'body was already consumed';
    throw this.#err(`cannot ${how}: ${why}`, 'USAGE');
  }

  async read(): Promise<Buffer> {
    if (this.size > this.ctx.maxMemberSize && this.#state === 'fresh')
      throw this.#err(`${this.size} bytes is too large to read into memory (limit ${this.ctx.maxMemberSize}); use stream()`, 'USAGE');
    this.#claim('read');
    const body = this.#body;
    if (body.readAll) {
      const p = this.#chain.then(async () => {
        try {
          const buf = await body.readAll!();
          this.#account(buf);
          this.#finishBody();
          return buf;
        } catch (e) {
          this.#error = e;
          await body.close?.();
          this.ctx.failed(e);
          throw e;
        }
      });
      this.#chain = p.catch(() => {});
      return p;
    }
    const chunks: Buffer[] = [];
    for (let c = await this.#pull(); c !== null; c = await this.#pull()) chunks.push(c);
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#bytes);
  }

  stream(): Readable {
    this.#claim('stream');
    const self = this;
    return Readable.from(
      (async function* () {
        for (let c = await self.#pull(); c !== null; c = await self.#pull()) yield c;
      })(),
      { objectMode: false },
    );
  }

  /** Consume whatever is left (hashing it). */
  async drain(): Promise<void> {
    if (this.#state === 'fresh') this.#state = 'claimed';
    while ((await this.#pull()) !== null) {
      /* hash and discard */
    }
  }

  get complete(): boolean {
    return this.#ended;
  }

  markStale(): void {
    this.#state = 'stale';
  }

  async dispose(): Promise<void> {
    await this.#body.close?.();
  }
}

// ---------------------------------------------------------------------------------------------
// sources

interface RawMember {
  name: string;
  size: number;
  body: Body;
}

interface MemberSource {
  /** Next regular-file member (names validated, prefix stripped), or null at the end. */
  next(): Promise<RawMember | null>;
  close(): Promise<void>;
}

type TarStreamModule = typeof import('tar-stream');
interface TarEntry extends AsyncIterable<Buffer> {
  header: { name: string; size?: number | undefined; type?: string | null | undefined; linkname?: string | null | undefined };
}

class TarSource implements MemberSource {
  readonly #label: string;
  readonly #prefix: string | undefined;
  readonly #raw: Readable;
  readonly #extract: ReturnType<TarStreamModule['extract']>;
  readonly #it: AsyncIterator<TarEntry>;
  #rawError: unknown;
  #current: string | undefined;
  #closed = false;

  constructor(tar: TarStreamModule, raw: Readable, label: string, prefix: string | undefined) {
    this.#label = label;
    this.#prefix = prefix;
    this.#raw = raw;
    raw.on('error', (e) => {
      this.#rawError ??= e;
    });
    this.#extract = tar.extract();
    this.#it = (this.#extract as unknown as AsyncIterable<TarEntry>)[Symbol.asyncIterator]();
    pipeline(raw, this.#extract).catch(() => {});
  }

  /** Turn a low-level error into a one-line ArchiveError, preferring the decompressor's. */
  classify = (e: unknown): ArchiveError => {
    const root = this.#rawError ?? e;
    if (root instanceof ArchiveError) return root;
    if (e instanceof ArchiveError) return e;
    const msg = errorMessage(root);
    const code = (root as NodeJS.ErrnoException)?.code;
    const label = this.#label;
    const inMember = this.#current ? ` in member ${this.#current}` : '';
    if (code === 'Z_BUF_ERROR' || /unexpected end/i.test(msg))
      return new ArchiveError(`archive ${label} is incomplete: unexpected end of data${inMember} (truncated or interrupted dump?)`, {
        code: 'INCOMPLETE',
        archive: label,
        ...(this.#current ? { member: this.#current } : {}),
        cause: root,
      });
    if (typeof code === 'string' && code.startsWith('Z_'))
      return new ArchiveError(`archive ${label}: corrupt gzip data${inMember}: ${msg}`, { code: 'FORMAT', archive: label, cause: root });
    if (/invalid tar header|header exceeds/i.test(msg))
      return new ArchiveError(`archive ${label}: corrupt tar data${inMember || ' (not a tar archive?)'}: ${msg}`, {
        code: 'FORMAT',
        archive: label,
        cause: root,
      });
    return new ArchiveError(`archive ${label}: read failed${inMember}: ${msg}`, { code: 'IO', archive: label, cause: root });
  };

  async #drain(entry: TarEntry): Promise<void> {
    try {
      for await (const _ of entry) {
        /* skip */
      }
    } catch (e) {
      throw this.classify(e);
    }
  }

  async next(): Promise<RawMember | null> {
    for (;;) {
      let r: IteratorResult<TarEntry>;
      this.#current = undefined;
      try {
        r = await this.#it.next();
      } catch (e) {
        throw this.classify(e);
      }
      if (r.done) return null;
      const entry = r.value;
      const h = entry.header;
      let name = h.name;
      while (name.startsWith('./')) name = name.slice(2);
      if (this.#prefix !== undefined) {
        if (!name.startsWith(this.#prefix)) {
          await this.#drain(entry);
          continue;
        }
        name = name.slice(this.#prefix.length);
      }
      const type = h.type ?? 'unknown';
      if (type === 'directory') {
        const dir = name.replace(/\/+$/, '');
        if (dir !== '' && dir !== '.') this.#checkName(dir);
        await this.#drain(entry);
        continue;
      }
      if (name === '') {
        await this.#drain(entry);
        continue;
      }
      if (type !== 'file' && type !== 'contiguous-file') {
        const what =
          type === 'symlink' || type === 'link'
            ? `${type === 'link' ? 'hard link' : 'symlink'} to ${printable(h.linkname ?? '')}`
            : `${type} entry`;
        throw new ArchiveError(
          `archive ${this.#label}: member ${printable(name)}: refusing ${what} (only regular files are allowed)`,
          { code: 'UNSAFE', archive: this.#label, member: name },
        );
      }
      this.#checkName(name);
      this.#current = name;
      return { name, size: h.size ?? 0, body: new TarBody(entry, this.classify) };
    }
  }

  #checkName(name: string): void {
    const p = memberNameProblem(name);
    if (!p) return;
    const unsafe = /'\.\.'|absolute|backslash|NUL/.test(p);
    throw new ArchiveError(`archive ${this.#label}: member ${printable(name)}: ${unsafe ? 'unsafe' : 'invalid'} name: ${p}`, {
      code: unsafe ? 'UNSAFE' : 'FORMAT',
      archive: this.#label,
      member: name,
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#extract.destroy();
    this.#raw.destroy();
  }
}

interface WalkEntry {
  dev: number;
  ino: number;
  size: number;
}

/** Open a file inside a directory archive without following symlinks; must be a regular file. */
async function openMember(root: string, name: string, label: string): Promise<{ fh: FileHandle; dev: number; ino: number; size: number } | 'missing'> {
  let fh: FileHandle;
  try {
    fh = await open(join(root, name), fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
    if (code === 'ELOOP')
      throw new ArchiveError(`archive ${label}: member ${name}: is a symlink; refusing to follow it`, {
        code: 'UNSAFE',
        archive: label,
        member: name,
      });
    throw new ArchiveError(`archive ${label}: member ${name}: cannot open: ${errorMessage(e)}`, {
      code: 'IO',
      archive: label,
      member: name,
      cause: e,
    });
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw new ArchiveError(`archive ${label}: member ${name}: not a regular file`, { code: 'UNSAFE', archive: label, member: name });
  }
  return { fh, dev: st.dev, ino: st.ino, size: st.size };
}

async function readSmallFile(root: string, name: string, label: string, limit: number): Promise<Buffer | 'missing'> {
  const o = await openMember(root, name, label);
  if (o === 'missing') return o;
  try {
    if (o.size > limit)
      throw new ArchiveError(`archive ${label}: member ${name}: ${o.size} bytes exceeds the limit of ${limit}`, {
        code: 'FORMAT',
        archive: label,
        member: name,
      });
    const body = new FileBody(o.fh, o.size, () =>
      new ArchiveError(`archive ${label}: member ${name}: changed while being read`, { code: 'IO', archive: label, member: name }),
    );
    return await body.readAll();
  } finally {
    await o.fh.close().catch(() => {});
  }
}

/** Recursively list a directory archive; refuses symlinks and special files. Keys are member names. */
async function walk(root: string, label: string): Promise<Map<string, WalkEntry>> {
  const out = new Map<string, WalkEntry>();
  const visit = async (rel: string): Promise<void> => {
    const abs = rel ? join(root, rel) : root;
    const entries = await readdir(abs, { withFileTypes: true });
    for (const d of entries) {
      const name = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) {
        await visit(name);
        continue;
      }
      if (d.isSymbolicLink())
        throw new ArchiveError(`archive ${label}: member ${printable(name)}: is a symlink; refusing to follow it`, {
          code: 'UNSAFE',
          archive: label,
          member: name,
        });
      if (!d.isFile())
        throw new ArchiveError(`archive ${label}: member ${printable(name)}: not a regular file`, {
          code: 'UNSAFE',
          archive: label,
          member: name,
        });
      const st = await lstat(join(root, name));
      if (!st.isFile())
        throw new ArchiveError(`archive ${label}: member ${printable(name)}: not a regular file`, {
          code: 'UNSAFE',
          archive: label,
          member: name,
        });
      out.set(name, { dev: st.dev, ino: st.ino, size: st.size });
    }
  };
  await visit('');
  return out;
}

// ---------------------------------------------------------------------------------------------
// reader

interface OpenedTar {
  kind: 'tar';
  compression: Compression;
  raw: Readable;
}
interface OpenedDir {
  kind: 'dir';
  root: string;
}

const MAGIC_GZIP = Buffer.from([0x1f, 0x8b]);
const MAGIC_ZSTD = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const MAGIC_XZ = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const MAGIC_BZIP2 = Buffer.from([0x42, 0x5a, 0x68]);

function detect(head: Buffer, label: string): Compression {
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

function normalizePrefix(prefix: string | undefined): string | undefined {
  if (prefix === undefined) return undefined;
  let p = prefix;
  while (p.startsWith('./')) p = p.slice(2);
  p = p.replace(/\/+$/, '');
  if (p === '' || p === '.') return undefined;
  const problem = memberNameProblem(p);
  if (problem) throw new ArchiveError(`invalid archive prefix ${JSON.stringify(prefix)}: ${problem}`, { code: 'USAGE' });
  return `${p}/`;
}

async function openRaw(
  source: ArchiveSource,
  label: string,
  opts: ReaderOptions,
): Promise<OpenedTar | OpenedDir> {
  const decompress = async (compression: Compression, input: Readable | FileHandle): Promise<Readable> => {
    if (compression === 'zstd') {
      const cmd = findZstd(opts.zstdCommand);
      if (!cmd) throw zstdMissing(label, opts.zstdCommand);
      if (input instanceof Readable) return zstdDecompress(cmd, input, label);
      try {
        return await zstdDecompress(cmd, input.fd, label);
      } finally {
        await input.close(); // zstd holds its own copy of the descriptor
      }
    }
    // A plain tar file is read ahead in entry-sized chunks (readahead.ts): reads stay in flight
    // while the caller is busy, and each member body reaches read() as one Buffer.
    if (compression === 'none' && !(input instanceof Readable)) return new TarReadAhead(input);
    const stream =
      input instanceof Readable ? input : createReadStream('', { fd: input, highWaterMark: READ_CHUNK, autoClose: true });
    if (compression === 'none') return stream;
    const gunzip = createGunzip({ chunkSize: 256 << 10 });
    pipeline(stream, gunzip).catch(() => {});
    return gunzip;
  };

  let input: Readable;
  if (typeof source === 'string' && source !== '-') {
    let fh: FileHandle;
    try {
      fh = await open(source, fsc.O_RDONLY);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ArchiveError(
        `archive ${label}: cannot open: ${code === 'ENOENT' ? 'no such file or directory' : errorMessage(e)}`,
        { code: 'IO', archive: label, cause: e },
      );
    }
    const st = await fh.stat();
    if (st.isDirectory()) {
      await fh.close();
      return { kind: 'dir', root: source };
    }
    if (st.isFile()) {
      const head = Buffer.alloc(6);
      const { bytesRead } = await fh.read(head, 0, 6, 0);
      let compression: Compression;
      try {
        compression = detect(head.subarray(0, bytesRead), label);
      } catch (e) {
        await fh.close();
        throw e;
      }
      return { kind: 'tar', compression, raw: await decompress(compression, fh) };
    }
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
  const { head, stream } = await peekStream(input, 6);
  const compression = detect(head, label);
  return { kind: 'tar', compression, raw: await decompress(compression, stream) };
}

interface Expected {
  order: string[]; // manifest order, header excluded
  byName: Map<string, MemberDigest>;
}

class ReaderImpl implements ArchiveReader {
  readonly label: string;
  readonly format: { kind: 'tar' | 'dir'; compression: Compression };
  header!: ArchiveHeader;
  readonly #opts: ReaderOptions;
  readonly #collect: boolean;
  readonly #ordered: boolean; // tar native order (no prefix): header first, manifest last
  readonly #spoolWanted: boolean;
  #source: MemberSource | undefined;
  #manifest: Manifest | undefined;
  #expected: Expected | undefined;
  #nextIdx = 0; // next index into #expected.order to yield (ordered modes with a known manifest)
  #names = new Set<string>(); // every member name met (duplicates)
  #seen = new Map<string, MemberDigest>();
  #seenOrder: string[] = [];
  #problems = new Map<string, MemberCheck>();
  #current: MemberImpl | undefined;
  #ended = false;
  #manifestMet = false;
  #finishing = false;
  #failed: unknown;
  #closed = false;
  #spoolDir: string | undefined;
  #spooled = new Map<string, { path: string; size: number; sha256: string }>();
  #spoolCount = 0;
  #dirRoot: string | undefined;
  #dirFiles: Map<string, WalkEntry> | undefined;

  constructor(label: string, format: ReaderImpl['format'], opts: ReaderOptions, collect: boolean) {
    this.label = label;
    this.format = format;
    this.#opts = opts;
    this.#collect = collect;
    const prefix = normalizePrefix(opts.prefix);
    this.#ordered = format.kind === 'tar' && prefix === undefined;
    this.#spoolWanted = format.kind === 'tar' && prefix !== undefined && opts.ordered !== false;
  }

  get manifest(): Manifest | undefined {
    return this.#manifest;
  }

  #err(msg: string, code: ArchiveErrorCode, member?: string): ArchiveError {
    return new ArchiveError(member ? `archive ${this.label}: member ${member}: ${msg}` : `archive ${this.label}: ${msg}`, {
      code,
      archive: this.label,
      ...(member === undefined ? {} : { member }),
    });
  }

  #incomplete(): ArchiveError {
    return new ArchiveError(`archive ${this.label} is incomplete: no ${MANIFEST_MEMBER} (truncated or interrupted dump?)`, {
      code: 'INCOMPLETE',
      archive: this.label,
    });
  }

  #memberCtx() {
    return {
      label: this.label,
      maxMemberSize: this.#opts.maxMemberSize ?? DEFAULT_MAX_MEMBER,
      done: (d: MemberDigest) => this.#record(d),
      failed: (e: unknown) => this.#fail(e),
    };
  }

  /** A content problem: collected by verifyArchive, thrown otherwise. */
  #problem(check: MemberCheck, err: ArchiveError): void {
    if (!this.#collect) throw err;
    this.#problems.set(check.name, check);
  }

  #record(d: MemberDigest): void {
    this.#seen.set(d.name, d);
    this.#seenOrder.push(d.name);
    const exp = this.#expected?.byName.get(d.name);
    if (exp) this.#compare(exp, d);
    else if (this.#problems.has(d.name)) this.#problems.set(d.name, { ...this.#problems.get(d.name)!, size: d.size, sha256: d.sha256 });
  }

  #compare(exp: MemberDigest, d: MemberDigest): void {
    if (exp.size !== d.size)
      this.#problem(
        { ...exp, ok: false, problem: 'size mismatch', actualSize: d.size, actualSha256: d.sha256 },
        this.#err(`size mismatch (${MANIFEST_MEMBER}: ${exp.size} bytes, archive: ${d.size} bytes)`, 'CHECKSUM', d.name),
      );
    else if (exp.sha256 !== d.sha256)
      this.#problem(
        { ...exp, ok: false, problem: 'sha256 mismatch', actualSize: d.size, actualSha256: d.sha256 },
        this.#err('sha256 mismatch', 'CHECKSUM', d.name),
      );
  }

  #unlisted(name: string, size: number, sha256 = ''): void {
    this.#problem(
      { name, size, sha256, ok: false, problem: 'not listed in manifest' },
      this.#err(`not listed in ${MANIFEST_MEMBER}`, 'MANIFEST', name),
    );
  }

  #missing(d: MemberDigest): void {
    this.#problem(
      { ...d, ok: false, problem: 'missing' },
      this.#err(`listed in ${MANIFEST_MEMBER} but missing from the archive`, 'MANIFEST', d.name),
    );
  }

  #fail(e: unknown): void {
    if (this.#failed !== undefined) return;
    this.#failed = e;
    void this.close();
  }

  #check(): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#closed) throw this.#err('reader is closed', 'USAGE');
  }

  #setManifest(buf: Buffer): void {
    this.#parseManifest(buf);
    this.#checkEarlier();
  }

  #parseManifest(buf: Buffer): void {
    const m = parseManifest(buf, this.header, this.label, memberNameProblem);
    this.#manifest = m;
    const byName = new Map<string, MemberDigest>();
    for (const d of m.members) byName.set(d.name, d);
    this.#expected = { order: m.members.map((d) => d.name).filter((n) => n !== HEADER_MEMBER), byName };
  }

  /** Check the members met before the manifest against it. */
  #checkEarlier(): void {
    const byName = this.#expected!.byName;
    for (const [name, d] of this.#seen) {
      const exp = byName.get(name);
      if (exp) this.#compare(exp, d);
    }
    for (const [name, s] of this.#spooled) {
      if (!byName.has(name)) this.#unlisted(name, s.size, s.sha256);
    }
    if (!this.#spoolWanted) {
      for (const name of this.#seen.keys()) if (!byName.has(name)) this.#unlisted(name, this.#seen.get(name)!.size, this.#seen.get(name)!.sha256);
    }
  }

  // --- open ------------------------------------------------------------------------------

  async openTar(tar: TarStreamModule, raw: Readable): Promise<void> {
    const source = new TarSource(tar, raw, this.label, normalizePrefix(this.#opts.prefix));
    this.#source = source;
    const first = await source.next();
    const where = this.#opts.prefix ? ` under prefix ${normalizePrefix(this.#opts.prefix)}` : '';
    if (!first)
      throw this.#err(`is empty or not a bpfcr archive (no ${HEADER_MEMBER}${where})`, 'FORMAT');
    if (first.name !== HEADER_MEMBER)
      throw this.#err(`not a bpfcr archive: first member${where} is ${printable(first.name)}, expected ${HEADER_MEMBER}`, 'FORMAT');
    if (first.size > MAX_HEADER_BYTES) throw this.#err(`${first.size} bytes is too large`, 'FORMAT', HEADER_MEMBER);
    this.#names.add(HEADER_MEMBER);
    const m = new MemberImpl(HEADER_MEMBER, first.size, first.body, this.#memberCtx());
    this.#current = m;
    const buf = await m.read();
    this.header = parseHeader(buf, this.label);
  }

  async openDir(root: string): Promise<void> {
    const prefix = normalizePrefix(this.#opts.prefix);
    if (prefix) {
      let at = root;
      for (const part of prefix.slice(0, -1).split('/')) {
        at = join(at, part);
        let st;
        try {
          st = await lstat(at);
        } catch {
          throw this.#err(`is not a bpfcr archive: no directory ${prefix}`, 'FORMAT');
        }
        if (!st.isDirectory())
          throw this.#err(`prefix component ${part} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}; refusing it`, 'UNSAFE');
      }
      root = at;
    }
    this.#dirRoot = root;
    const hbuf = await readSmallFile(root, HEADER_MEMBER, this.label, MAX_HEADER_BYTES);
    if (hbuf === 'missing') throw this.#err(`is not a bpfcr archive (no ${HEADER_MEMBER} in the directory)`, 'FORMAT');
    this.header = parseHeader(hbuf, this.label);
    const mbuf = await readSmallFile(root, MANIFEST_MEMBER, this.label, MAX_MANIFEST_BYTES);
    if (mbuf === 'missing') throw this.#incomplete();
    this.#setManifest(mbuf);
    this.#names.add(HEADER_MEMBER);
    this.#record({ name: HEADER_MEMBER, size: hbuf.length, sha256: createHash('sha256').update(hbuf).digest('hex') });
    this.#manifestMet = true;
    const files = await walk(root, this.label);
    files.delete(MANIFEST_MEMBER);
    this.#dirFiles = files;
    for (const [name, st] of files) {
      if (this.#expected!.byName.has(name)) continue;
      if (!this.#collect) this.#unlisted(name, st.size);
      const o = await openMember(root, name, this.label);
      if (o === 'missing') continue;
      const m = new MemberImpl(name, o.size, this.#fileBody(name, o), { ...this.#memberCtx(), done: (d) => this.#unlisted(d.name, d.size, d.sha256) });
      await m.drain();
    }
    this.#source = { next: () => this.#nextDirMember(), close: async () => {} };
  }

  #fileBody(name: string, o: { fh: FileHandle; size: number }): FileBody {
    return new FileBody(o.fh, o.size, () => this.#err('changed while being read', 'IO', name));
  }

  async #nextDirMember(): Promise<RawMember | null> {
    const exp = this.#expected!;
    while (this.#nextIdx < exp.order.length) {
      const name = exp.order[this.#nextIdx++]!;
      const o = await openMember(this.#dirRoot!, name, this.label);
      if (o === 'missing') {
        this.#missing(exp.byName.get(name)!);
        continue;
      }
      const w = this.#dirFiles!.get(name);
      if (!w || w.dev !== o.dev || w.ino !== o.ino) {
        await o.fh.close();
        throw this.#err('changed while the archive was being read (replaced or moved)', 'UNSAFE', name);
      }
      return { name, size: o.size, body: this.#fileBody(name, o) };
    }
    return null;
  }

  // --- iteration ---------------------------------------------------------------------------

  async #spool(raw: RawMember): Promise<void> {
    if (!this.#spoolDir) {
      const base = this.#opts.spoolDir ?? tmpdir();
      this.#spoolDir = await mkdtemp(join(base, 'bpfcr-spool-'));
      trackPartial(this.#spoolDir);
      await chmod(this.#spoolDir, 0o700);
    }
    const path = join(this.#spoolDir, String(this.#spoolCount++));
    const fh = await open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    const hash = createHash('sha256');
    let size = 0;
    try {
      for (let c = await raw.body.pull(); c !== null; c = await raw.body.pull()) {
        hash.update(c);
        size += c.length;
        await writeFully(fh, c);
      }
    } finally {
      await fh.close();
    }
    if (size !== raw.size) throw this.#err(`size mismatch (expected ${raw.size} bytes, got ${size})`, 'CHECKSUM', raw.name);
    this.#spooled.set(raw.name, { path, size, sha256: hash.digest('hex') });
  }

  async #fromSpool(name: string): Promise<MemberImpl> {
    const s = this.#spooled.get(name)!;
    this.#spooled.delete(name);
    const fh = await open(s.path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    const body = new FileBody(
      fh,
      s.size,
      () => this.#err('spooled copy changed while being read', 'IO', name),
      s.sha256,
      () => unlink(s.path).catch(() => {}),
    );
    return new MemberImpl(name, s.size, body, this.#memberCtx());
  }

  /** Admit a raw member met in the stream (duplicate / unlisted / size checks). */
  #admit(raw: RawMember): void {
    if (this.#names.has(raw.name)) throw this.#err('duplicate member', 'FORMAT', raw.name);
    this.#names.add(raw.name);
    if (this.#ordered && this.#manifestMet)
      throw this.#err(`follows ${MANIFEST_MEMBER}, which must be the last member`, 'FORMAT', raw.name);
    if (this.#expected && !this.#expected.byName.has(raw.name)) this.#unlisted(raw.name, raw.size);
  }

  async #advance(): Promise<MemberImpl | null> {
    const prev = this.#current;
    if (prev) {
      if (!prev.complete) await prev.drain();
      prev.markStale();
      await prev.dispose();
      this.#current = undefined;
    }
    const src = this.#source!;
    for (;;) {
      // native tar: members() ends at manifest.json; finish() reads on (nothing may follow it)
      if (this.#ordered && this.#manifestMet && !this.#finishing) return null;
      // ordered prefix mode: yield the next expected member if it is spooled
      if (this.#spoolWanted && this.#expected) {
        const exp = this.#expected;
        while (this.#nextIdx < exp.order.length) {
          const want = exp.order[this.#nextIdx]!;
          if (this.#spooled.has(want)) {
            this.#nextIdx++;
            return (this.#current = await this.#fromSpool(want));
          }
          if (this.#ended) {
            this.#nextIdx++;
            if (!this.#seen.has(want)) this.#missing(exp.byName.get(want)!);
            continue;
          }
          break;
        }
      }
      if (this.#ended) return null;
      const raw = await src.next();
      if (!raw) {
        this.#ended = true; // without a manifest finish() reports the archive incomplete
        continue;
      }
      if (raw.name === MANIFEST_MEMBER && this.#source instanceof TarSource) {
        if (this.#manifestMet) throw this.#err('duplicate member', 'FORMAT', MANIFEST_MEMBER);
        if (raw.size > MAX_MANIFEST_BYTES) throw this.#err(`${raw.size} bytes is too large`, 'FORMAT', MANIFEST_MEMBER);
        this.#manifestMet = true;
        const m = new MemberImpl(MANIFEST_MEMBER, raw.size, raw.body, { ...this.#memberCtx(), done: () => {} });
        const buf = await m.read();
        if (this.#ordered) this.#parseManifest(buf); // compared with the members in finish()
        else this.#setManifest(buf);
        continue;
      }
      this.#admit(raw);
      if (this.#spoolWanted) {
        const exp = this.#expected;
        if (!exp || exp.order[this.#nextIdx] !== raw.name) {
          await this.#spool(raw);
          continue;
        }
        this.#nextIdx++;
      }
      return (this.#current = new MemberImpl(raw.name, raw.size, raw.body, this.#memberCtx()));
    }
  }

  async *members(): AsyncGenerator<ArchiveMember, void, undefined> {
    for (;;) {
      this.#check();
      let m: MemberImpl | null;
      try {
        m = await this.#advance();
      } catch (e) {
        this.#fail(e);
        throw e;
      }
      if (!m) return;
      yield m;
    }
  }

  async finish(): Promise<Manifest> {
    this.#check();
    this.#finishing = true;
    try {
      while ((await this.#advance()) !== null) {
        /* drain the rest */
      }
      const manifest = this.#manifest;
      if (!manifest) throw this.#incomplete();
      if (this.#ordered) this.#checkEarlier();
      const exp = this.#expected!;
      for (const d of manifest.members) {
        const s = this.#seen.get(d.name);
        if (!s) {
          if (!this.#problems.has(d.name)) this.#missing(d);
        }
      }
      for (const [name, s] of this.#seen) {
        if (!exp.byName.has(name) && !this.#problems.has(name)) this.#unlisted(name, s.size, s.sha256);
      }
      for (const d of manifest.members) {
        const s = this.#seen.get(d.name);
        if (s && !this.#problems.has(d.name)) this.#compare(d, s);
      }
      if (this.#ordered && this.#problems.size === 0) {
        const want = manifest.members.map((d) => d.name);
        const i = want.findIndex((n, k) => this.#seenOrder[k] !== n);
        if (i !== -1)
          throw this.#err(`out of order (${MANIFEST_MEMBER} lists it at position ${i})`, 'FORMAT', want[i]);
      }
      await this.close();
      return manifest;
    } catch (e) {
      this.#fail(e);
      throw e;
    }
  }

  /** verifyArchive: per-member results after finish(). */
  results(): MemberCheck[] {
    const out: MemberCheck[] = [];
    for (const d of this.#manifest!.members) out.push(this.#problems.get(d.name) ?? { ...d, ok: true });
    for (const [name, p] of this.#problems) if (!this.#expected!.byName.has(name)) out.push(p);
    return out;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#current?.dispose().catch(() => {});
    await this.#source?.close().catch(() => {});
    if (this.#spoolDir) {
      await rm(this.#spoolDir, { recursive: true, force: true }).catch(() => {});
      untrackPartial(this.#spoolDir);
    }
  }
}

async function openReader(source: ArchiveSource, opts: ReaderOptions, collect: boolean): Promise<ReaderImpl> {
  const label =
    opts.label ?? (typeof source === 'string' ? (source === '-' ? '<stdin>' : source) : '<stream>');
  normalizePrefix(opts.prefix); // validate early
  const raw = await openRaw(source, label, opts);
  if (raw.kind === 'dir') {
    const r = new ReaderImpl(label, { kind: 'dir', compression: 'none' }, opts, collect);
    try {
      const st = await stat(raw.root);
      if (!st.isDirectory()) throw new Error('not a directory');
      await r.openDir(raw.root);
    } catch (e) {
      await r.close();
      throw e;
    }
    return r;
  }
  const r = new ReaderImpl(label, { kind: 'tar', compression: raw.compression }, opts, collect);
  try {
    const tar = (await import('tar-stream')) as unknown as TarStreamModule & { default?: TarStreamModule };
    await r.openTar(typeof tar.extract === 'function' ? tar : tar.default!, raw.raw);
  } catch (e) {
    raw.raw.destroy();
    await r.close();
    throw e;
  }
  return r;
}

/**
 * Open an archive for reading. Reads and validates the header before returning.
 * Throws ArchiveError (one line, naming archive and member) on anything wrong.
 */
export async function openArchiveReader(source: ArchiveSource, opts: ReaderOptions = {}): Promise<ArchiveReader> {
  return openReader(source, opts, false);
}

/**
 * Read the whole archive and report every member's checksum state. Does not throw for content
 * problems (sha256/size mismatch, missing or unlisted members): they are reported per member with
 * ok=false. Throws ArchiveError for structural problems (not an archive, truncated/no manifest,
 * unsupported version, unsafe entries, malformed JSON).
 */
export async function verifyArchive(source: ArchiveSource, opts: ReaderOptions = {}): Promise<VerifyResult> {
  const r = await openReader(source, { ...opts, ordered: false }, true);
  try {
    for await (const _ of r.members()) {
      /* drained and hashed by the reader */
    }
    const manifest = await r.finish();
    const members = r.results();
    return { ok: members.every((m) => m.ok), header: r.header, manifest, format: r.format, members };
  } finally {
    await r.close();
  }
}
