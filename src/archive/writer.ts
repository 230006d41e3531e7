/**
 * Archive writer: streams named members into a tar (plain, gzip, zstd), a stream, or a directory.
 * See docs/archive-format.md.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, statSync } from 'node:fs';
import { chmod, lstat, mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import {
  ARCHIVE_VERSION,
  ArchiveError,
  HEADER_KEYS,
  HEADER_MEMBER,
  MANIFEST_DIGEST_KEY,
  MANIFEST_MEMBER,
  errorMessage,
  headerProblem,
  manifestDigest,
  type ArchiveHeader,
  type Manifest,
  type MemberDigest,
} from './format.js';
import {
  FileSink,
  findZstd,
  publish,
  spawnZstd,
  syncDir,
  trackPartial,
  untrackPartial,
  writevFully,
  zstdMissing,
  type ZstdProcess,
} from './io.js';
import { memberNameProblem, NameSet, RESERVED_NAMES } from './names.js';
import { END_OF_ARCHIVE, fileHeader, padding } from './tar.js';

export type Compression = 'none' | 'gzip' | 'zstd';

export interface OutputFormat {
  /** 'tar' = a single tar stream/file (possibly compressed); 'dir' = directory form. */
  kind: 'tar' | 'dir';
  compression: Compression;
}

export interface StreamTarget {
  stream: Writable;
  compression: Compression;
  /** Name used in error messages (default "<stream>"). */
  label?: string;
  /** End the stream in finish() (default true). */
  end?: boolean;
}

/** A file/directory path, '-' for stdout (plain tar), or a stream. */
export type WriterTarget = string | StreamTarget;
/** Alias of WriterTarget (the name the engine uses). */
export type ArchiveTarget = WriterTarget;

export interface WriterOptions {
  /** Replace an existing output (atomically for files). Default false: refuse. */
  overwrite?: boolean;
  /**
   * Compression level: gzip 1–9 (default 1: on map data level 6 compresses only ~1% smaller at
   * ~1/7 the speed), zstd 1–22 (default 3).
   */
  level?: number;
  /** fsync output before publishing it (default true). */
  fsync?: boolean;
  /** Path of the zstd executable (default: $BPFCR_ZSTD, $PATH, /usr/bin, ...). */
  zstdCommand?: string;
  /**
   * Bytes handed to a tar pipeline that may still be in flight when addMember resolves
   * (default 16 MiB). Lets the caller produce the next member while the previous is being
   * compressed/written, with bounded memory.
   */
  maxInFlightBytes?: number;
}

export interface ArchiveWriter {
  /** Output label used in messages (path, "<stdout>", or the stream label). */
  readonly label: string;
  readonly format: OutputFormat;
  /** Final output path (file or directory targets), undefined for streams. */
  readonly path: string | undefined;
  /**
   * Append a member. `data` buffers are written back to back; ownership passes to the writer:
   * do not modify them afterwards (the checksum is taken when this is called). Resolves when the
   * writer is ready for the next member (backpressure). Throws ArchiveError (code USAGE) for an
   * invalid, reserved or duplicate name without damaging the archive.
   */
  addMember(name: string, data: Buffer | Uint8Array | readonly (Buffer | Uint8Array)[]): Promise<void>;
  /**
   * Write manifest.json = {...header, ...body, members, manifestSha256}, flush, close and publish the output
   * atomically (a manifestSha256 in `body` is replaced: the writer computes it). On failure the
   * partial output is removed and the error rethrown.
   */
  finish(body?: Record<string, unknown>): Promise<Manifest>;
  /** Discard everything: remove partial output / destroy the stream. Idempotent; no-op after finish(). */
  abort(reason?: unknown): Promise<void>;
  /** Members written so far (header first). */
  readonly members: readonly MemberDigest[];
}

const TAR_SUFFIXES: [string, Compression][] = [
  ['.tar', 'none'],
  ['.tar.gz', 'gzip'],
  ['.tgz', 'gzip'],
  ['.tar.zst', 'zstd'],
  ['.tar.zstd', 'zstd'],
  ['.tzst', 'zstd'],
];
const REJECTED_SUFFIXES = [
  '.gz', '.zst', '.zstd', '.xz', '.txz', '.bz2', '.tbz', '.tbz2', '.lz4', '.lz', '.lzma', '.zip', '.7z', '.rar', '.cpio',
];

/**
 * Output format for a path: trailing '/' or an existing directory → directory form; .tar, .tar.gz,
 * .tgz, .tar.zst, .tar.zstd, .tzst → tar; other compression/archive suffixes (.xz, .zip, .gz alone,
 * ...) → error; anything else (no recognised extension) → directory form.
 */
export function outputFormatForPath(path: string): OutputFormat {
  if (path.endsWith('/')) return { kind: 'dir', compression: 'none' };
  try {
    if (statSync(path).isDirectory()) return { kind: 'dir', compression: 'none' };
  } catch {
    /* does not exist */
  }
  const lower = basename(path).toLowerCase();
  for (const [suffix, compression] of TAR_SUFFIXES) if (lower.endsWith(suffix)) return { kind: 'tar', compression };
  for (const suffix of REJECTED_SUFFIXES)
    if (lower.endsWith(suffix))
      throw new ArchiveError(
        `archive ${path}: unsupported output format ${suffix} (use .tar, .tar.gz, .tgz, .tar.zst, or a directory)`,
        { code: 'USAGE', archive: path },
      );
  return { kind: 'dir', compression: 'none' };
}

function toBuffers(data: unknown, where: string): Buffer[] {
  const one = (d: unknown): Buffer => {
    if (Buffer.isBuffer(d)) return d;
    if (d instanceof Uint8Array) return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
    throw new ArchiveError(`${where}: data must be a Buffer or an array of Buffers`, { code: 'USAGE' });
  };
  return Array.isArray(data) ? data.map(one) : [one(data)];
}

type State = 'open' | 'failed' | 'finished' | 'aborted';

abstract class WriterBase implements ArchiveWriter {
  readonly label: string;
  abstract readonly format: OutputFormat;
  abstract readonly path: string | undefined;
  readonly members: MemberDigest[] = [];
  protected readonly header: ArchiveHeader;
  protected readonly mtime: number;
  protected readonly opts: WriterOptions;
  #names = new NameSet();
  #queue: Promise<void> = Promise.resolve();
  #state: State = 'open';
  #error: ArchiveError | undefined;

  constructor(label: string, header: ArchiveHeader, opts: WriterOptions) {
    this.label = label;
    this.header = header;
    this.opts = opts;
    this.mtime = Math.max(0, Math.floor(Date.parse(header.created) / 1000));
  }

  protected abstract writeMember(name: string, bufs: Buffer[], size: number): Promise<void>;
  protected abstract finishOutput(manifest: Buffer): Promise<void>;
  /** Abort step 1: unblock pending writes (destroy streams, kill zstd). */
  protected abstract teardownOutput(reason: Error): Promise<void>;
  /** Abort step 2, once no write is pending: remove the partial output. */
  protected abstract removeOutput(): Promise<void>;

  protected ioError(e: unknown, member?: string): ArchiveError {
    if (e instanceof ArchiveError) return e;
    const where = member ? `archive ${this.label}: member ${member}` : `archive ${this.label}`;
    return new ArchiveError(`${where}: write failed: ${errorMessage(e)}`, {
      code: 'IO',
      archive: this.label,
      ...(member === undefined ? {} : { member }),
      cause: e,
    });
  }

  #usable(): void {
    if (this.#state === 'open') return;
    if (this.#state === 'failed' && this.#error) throw this.#error;
    throw new ArchiveError(`archive ${this.label}: writer is already ${this.#state}`, {
      code: 'USAGE',
      archive: this.label,
    });
  }

  #enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(() => {
      this.#usable();
      return fn();
    });
    this.#queue = p.then(
      () => {},
      (e) => {
        if (this.#state === 'open') {
          this.#state = 'failed';
          this.#error = e instanceof ArchiveError ? e : this.ioError(e);
        }
      },
    );
    return p;
  }

  /** Queue a member write (name already validated and reserved). */
  protected queueMember(name: string, bufs: Buffer[]): Promise<void> {
    const hash = createHash('sha256');
    let size = 0;
    for (const b of bufs) {
      hash.update(b);
      size += b.length;
    }
    this.members.push({ name, size, sha256: hash.digest('hex') });
    return this.#enqueue(async () => {
      try {
        await this.writeMember(name, bufs, size);
      } catch (e) {
        throw this.ioError(e, name);
      }
    });
  }

  /** Start: write the header member (called once by openArchiveWriter). */
  begin(): Promise<void> {
    this.#names.add(HEADER_MEMBER);
    const buf = Buffer.from(JSON.stringify(this.header, null, 2) + '\n', 'utf8');
    return this.queueMember(HEADER_MEMBER, [buf]);
  }

  addMember(name: string, data: Buffer | Uint8Array | readonly (Buffer | Uint8Array)[]): Promise<void> {
    try {
      this.#usable();
      const where = `archive ${this.label}: member ${String(name)}`;
      const problem = memberNameProblem(name);
      if (problem) throw new ArchiveError(`${where}: invalid name: ${problem}`, { code: 'USAGE', archive: this.label, member: name });
      if (RESERVED_NAMES.has(name))
        throw new ArchiveError(`${where}: name is reserved for the archive itself`, { code: 'USAGE', archive: this.label, member: name });
      const conflict = this.#names.conflict(name);
      if (conflict) throw new ArchiveError(`${where}: ${conflict}`, { code: 'USAGE', archive: this.label, member: name });
      const bufs = toBuffers(data, where);
      this.#names.add(name);
      return this.queueMember(name, bufs);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async finish(body: Record<string, unknown> = {}): Promise<Manifest> {
    this.#usable();
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new ArchiveError(`archive ${this.label}: manifest body must be a JSON object`, { code: 'USAGE', archive: this.label });
    for (const k of [...HEADER_KEYS, ...Object.keys(this.header), 'members'])
      if (Object.prototype.hasOwnProperty.call(body, k))
        throw new ArchiveError(`archive ${this.label}: manifest body must not set the reserved field ${k}`, {
          code: 'USAGE',
          archive: this.label,
        });
    try {
      return await this.#enqueue(async () => {
        let manifest: Manifest;
        let json: string;
        try {
          // the digest is over what readers will parse (undefined fields dropped, toJSON applied);
          // one in the body (a manifest copied from another archive) is replaced, never trusted
          const { [MANIFEST_DIGEST_KEY]: _old, ...rest } = body;
          const plain = JSON.parse(JSON.stringify({ ...this.header, ...rest, members: this.members })) as Manifest;
          manifest = { ...plain, [MANIFEST_DIGEST_KEY]: manifestDigest(plain) };
          json = JSON.stringify(manifest, null, 2) + '\n';
        } catch (e) {
          throw new ArchiveError(`archive ${this.label}: manifest body is not serialisable: ${errorMessage(e)}`, {
            code: 'USAGE',
            archive: this.label,
          });
        }
        try {
          await this.finishOutput(Buffer.from(json, 'utf8'));
        } catch (e) {
          throw this.ioError(e, MANIFEST_MEMBER);
        }
        this.#state = 'finished';
        return manifest;
      });
    } catch (e) {
      await this.abort(e);
      throw e;
    }
  }

  async abort(reason?: unknown): Promise<void> {
    if (this.#state === 'finished' || this.#state === 'aborted') return;
    this.#state = 'aborted';
    const err = reason instanceof Error ? reason : new ArchiveError(`archive ${this.label}: aborted`, { code: 'IO', archive: this.label });
    // Queued writes may be blocked on a stalled consumer: tear down first, let them fail, then clean up.
    await this.teardownOutput(err).catch(() => {});
    await this.#queue.catch(() => {});
    await this.removeOutput().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// tar (file or stream)

interface Chain {
  head: Writable;
  /** Rejects on the first error anywhere in the chain. */
  failure: Promise<never>;
  /** After head.end() (or without it when not ending): resolves when everything is flushed. */
  completion: () => Promise<void>;
  endHead: boolean;
  teardown(err: Error): Promise<void>;
}

class TarWriter extends WriterBase {
  readonly format: OutputFormat;
  readonly path: string | undefined;
  #chain: Chain | undefined;
  #fh: FileHandle | undefined;
  #partial: string | undefined;
  #inflight: { p: Promise<void>; bytes: number }[] = [];
  #inflightBytes = 0;
  #tornDown = false;
  readonly #maxInflight: number;

  constructor(label: string, header: ArchiveHeader, opts: WriterOptions, format: OutputFormat, path: string | undefined) {
    super(label, header, opts);
    this.format = format;
    this.path = path;
    this.#maxInflight = opts.maxInFlightBytes ?? 16 << 20;
  }

  async init(stream: StreamTarget | undefined): Promise<void> {
    const { compression } = this.format;
    let out: Writable;
    const extra: Promise<void>[] = [];
    let endDest = true;
    let zstd: ZstdProcess | undefined;
    const level = this.opts.level ?? (compression === 'gzip' ? 1 : 3);
    const maxLevel = compression === 'gzip' ? 9 : 22;
    if (compression !== 'none' && level > maxLevel)
      throw new ArchiveError(`archive ${this.label}: invalid ${compression} level ${level} (1-${maxLevel})`, {
        code: 'USAGE',
        archive: this.label,
      });
    const zstdCmd = compression === 'zstd' ? findZstd(this.opts.zstdCommand) : undefined;
    if (compression === 'zstd' && !zstdCmd) throw zstdMissing(this.label, this.opts.zstdCommand);

    if (stream) {
      out = stream.stream;
      endDest = stream.end ?? true;
    } else {
      const out0 = this.path!;
      this.#partial = `${out0}.partial-${randomBytes(6).toString('hex')}`;
      trackPartial(this.#partial);
      try {
        this.#fh = await open(this.#partial, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
        await this.#fh.chmod(0o600);
      } catch (e) {
        throw createError(this.label, e);
      }
      out = new FileSink(this.#fh);
    }

    let head: Writable;
    let completion: () => Promise<void>;
    if (compression === 'none') {
      head = out;
      completion = () => (stream && !endDest ? Promise.resolve() : finished(out));
    } else if (compression === 'gzip') {
      const gz = createGzip({ level, chunkSize: 1 << 20 });
      head = gz;
      const p = pipeline(gz, out, { end: endDest });
      p.catch(() => {});
      completion = () => p;
      extra.push(p);
    } else {
      const cmd = zstdCmd!;
      const args = ['-q', '-c', `-${level}`, '-T0'];
      if (level > 19) args.unshift('--ultra');
      const classify = (stderr: string, code: number | null, signal: NodeJS.Signals | null) =>
        new ArchiveError(`archive ${this.label}: zstd failed (${code ?? signal}): ${stderr || 'no message'}`, {
          code: 'IO',
          archive: this.label,
        });
      zstd = await spawnZstd(cmd, args, ['pipe', this.#fh ? this.#fh.fd : 'pipe', 'pipe'], this.label, classify);
      head = zstd.child.stdin!;
      const z = zstd;
      if (this.#fh) {
        completion = () => {
          z.ref();
          return z.done;
        };
      } else {
        const p = pipeline(zstd.child.stdout!, out, { end: endDest });
        p.catch(() => {});
        extra.push(p);
        completion = () => {
          z.ref();
          return Promise.all([z.done, p]).then(() => {});
        };
      }
      extra.push(zstd.done);
    }

    let fail!: (e: Error) => void;
    const failure = new Promise<never>((_, reject) => (fail = reject));
    failure.catch(() => {});
    out.on('error', (e: Error) => fail(e));
    if (head !== out)
      head.on('error', (e: Error) => {
        // prefer the compressor's own error (e.g. zstd's message over EPIPE)
        if (zstd) zstd.done.then(() => fail(e), fail);
        else fail(e);
      });
    const endHead = !(stream && compression === 'none' && !endDest);
    for (const p of extra) p.catch(fail);

    const fh = this.#fh;
    const z = zstd;
    this.#chain = {
      head,
      failure,
      completion,
      endHead,
      teardown: async (err: Error) => {
        z?.kill();
        if (head !== out) head.destroy();
        if (stream) {
          if (stream.stream !== process.stdout) stream.stream.destroy(err);
        } else out.destroy();
        if (z) await z.done.catch(() => {});
        await fh?.close().catch(() => {});
      },
    };
  }

  #write(bufs: Buffer[]): Promise<void> {
    const chain = this.#chain!;
    const head = chain.head;
    const p = new Promise<void>((resolve, reject) => {
      // A failed write (EPIPE when zstd died, ...) is reported with the chain's own error, which
      // says why (zstd's message, ENOSPC, ...), unless we are tearing down ourselves.
      const onError = (err: Error): void => {
        if (this.#tornDown) return reject(err);
        const t = setTimeout(() => reject(err), 2000);
        chain.failure.catch((e: unknown) => {
          clearTimeout(t);
          reject(e);
        });
      };
      bufs.forEach((b, i) => {
        if (i === bufs.length - 1) head.write(b, (err) => (err ? onError(err) : resolve()));
        else head.write(b);
      });
    });
    const raced = Promise.race([p, chain.failure]);
    raced.catch(() => {});
    return raced;
  }

  async #windowed(bufs: Buffer[], bytes: number): Promise<void> {
    // Chunks of several members are batched and compressed together: a failure is not attributable
    // to one member, so errors name the archive only.
    const p = this.#write(bufs).catch((e: unknown) => {
      throw this.ioError(e);
    });
    p.catch(() => {});
    this.#inflight.push({ p, bytes });
    this.#inflightBytes += bytes;
    while (this.#inflight.length > 0 && this.#inflightBytes > this.#maxInflight) {
      const x = this.#inflight.shift()!;
      this.#inflightBytes -= x.bytes;
      await x.p;
    }
  }

  async #drainAll(): Promise<void> {
    while (this.#inflight.length > 0) {
      const x = this.#inflight.shift()!;
      this.#inflightBytes -= x.bytes;
      await x.p;
    }
  }

  protected override async writeMember(name: string, bufs: Buffer[], size: number): Promise<void> {
    const parts = [fileHeader(name, size, this.mtime), ...bufs.filter((b) => b.length > 0)];
    const pad = padding(size);
    if (pad) parts.push(pad);
    await this.#windowed(parts, size + 512);
  }

  protected override async finishOutput(manifest: Buffer): Promise<void> {
    const chain = this.#chain!;
    const parts = [fileHeader(MANIFEST_MEMBER, manifest.length, this.mtime), manifest];
    const pad = padding(manifest.length);
    if (pad) parts.push(pad);
    parts.push(END_OF_ARCHIVE);
    await this.#windowed(parts, manifest.length);
    await this.#drainAll();
    if (chain.endHead) chain.head.end();
    await Promise.race([chain.completion(), chain.failure]);
    if (this.#fh) {
      if (this.opts.fsync !== false) await this.#fh.sync();
      await this.#fh.close();
      this.#fh = undefined;
      const out = this.path!;
      await publish(this.#partial!, out, false, this.opts.overwrite === true, () => existsError(this.label));
      untrackPartial(this.#partial!);
      if (this.opts.fsync !== false) await syncDir(dirname(out));
    }
  }

  protected override async teardownOutput(reason: Error): Promise<void> {
    this.#tornDown = true;
    if (this.#chain) await this.#chain.teardown(reason);
    else await this.#fh?.close().catch(() => {});
    this.#fh = undefined;
  }

  protected override async removeOutput(): Promise<void> {
    if (this.#partial) {
      await rm(this.#partial, { force: true });
      untrackPartial(this.#partial);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// directory form

class DirWriter extends WriterBase {
  readonly format: OutputFormat = { kind: 'dir', compression: 'none' };
  readonly path: string;
  readonly #partial: string;
  readonly #dirs = new Set<string>(['']);

  constructor(label: string, header: ArchiveHeader, opts: WriterOptions, path: string) {
    super(label, header, opts);
    this.path = path;
    this.#partial = `${path}.partial-${randomBytes(6).toString('hex')}`;
  }

  async init(): Promise<void> {
    trackPartial(this.#partial);
    try {
      await mkdir(this.#partial, { mode: 0o700 });
      await chmod(this.#partial, 0o700);
    } catch (e) {
      throw createError(this.label, e);
    }
  }

  async #ensureDir(rel: string): Promise<void> {
    if (this.#dirs.has(rel)) return;
    const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    await this.#ensureDir(parent);
    const abs = join(this.#partial, rel);
    await mkdir(abs, { mode: 0o700 });
    await chmod(abs, 0o700);
    this.#dirs.add(rel);
  }

  async #writeFile(name: string, bufs: Buffer[]): Promise<void> {
    const slash = name.lastIndexOf('/');
    if (slash !== -1) await this.#ensureDir(name.slice(0, slash));
    const fh = await open(
      join(this.#partial, name),
      fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW,
      0o600,
    );
    try {
      await fh.chmod(0o600);
      await writevFully(fh, bufs);
      if (this.opts.fsync !== false) await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  protected override writeMember(name: string, bufs: Buffer[]): Promise<void> {
    return this.#writeFile(name, bufs);
  }

  protected override async finishOutput(manifest: Buffer): Promise<void> {
    await this.#writeFile(MANIFEST_MEMBER, [manifest]);
    if (this.opts.fsync !== false) {
      const dirs = [...this.#dirs].sort((a, b) => b.length - a.length);
      for (const d of dirs) await syncDir(join(this.#partial, d));
    }
    await publish(this.#partial, this.path, true, this.opts.overwrite === true, () => existsError(this.label));
    untrackPartial(this.#partial);
    if (this.opts.fsync !== false) await syncDir(dirname(this.path));
  }

  protected override async teardownOutput(): Promise<void> {}

  protected override async removeOutput(): Promise<void> {
    await rm(this.#partial, { recursive: true, force: true, maxRetries: 3 });
    untrackPartial(this.#partial);
  }
}

// ---------------------------------------------------------------------------------------------

function existsError(label: string): ArchiveError {
  return new ArchiveError(`archive ${label}: refusing to overwrite existing output (use the overwrite option)`, {
    code: 'EXISTS',
    archive: label,
  });
}

function createError(label: string, e: unknown): ArchiveError {
  const code = (e as NodeJS.ErrnoException).code;
  const detail = code === 'ENOENT' ? 'parent directory does not exist' : errorMessage(e);
  return new ArchiveError(`archive ${label}: cannot create output: ${detail}`, { code: 'IO', archive: label, cause: e });
}

/**
 * Open an archive for writing and write the header as its first member.
 *
 * - `path`: format from the name (see outputFormatForPath); written to `<path>.partial-<random>`
 *   and renamed into place by finish(); refuses an existing output unless `overwrite`.
 * - `'-'`: plain tar to stdout (refused if stdout is a terminal).
 * - `{stream, compression}`: tar (optionally compressed) into the given stream.
 */
export async function openArchiveWriter(
  target: WriterTarget,
  header: ArchiveHeader,
  opts: WriterOptions = {},
): Promise<ArchiveWriter> {
  const label =
    typeof target === 'string' ? (target === '-' ? '<stdout>' : target) : (target.label ?? '<stream>');
  const problem = headerProblem(header);
  if (problem) throw new ArchiveError(`archive ${label}: invalid header: ${problem}`, { code: 'USAGE', archive: label });
  if (header.version !== ARCHIVE_VERSION)
    throw new ArchiveError(`archive ${label}: this bpfcr writes format version ${ARCHIVE_VERSION}, not ${header.version}`, {
      code: 'USAGE',
      archive: label,
    });
  const level = opts.level;
  if (level !== undefined && (!Number.isInteger(level) || level < 1 || level > 22))
    throw new ArchiveError(`archive ${label}: invalid compression level ${level}`, { code: 'USAGE', archive: label });

  let writer: TarWriter | DirWriter;
  if (typeof target === 'string' && target !== '-') {
    if (target === '') throw new ArchiveError('archive output path is empty', { code: 'USAGE' });
    const format = outputFormatForPath(target);
    const out = resolve(target.replace(/\/+$/, '') || '/');
    let exists = false;
    try {
      await lstat(out);
      exists = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw createError(label, e);
    }
    if (exists && !opts.overwrite) throw existsError(label);
    if (format.kind === 'dir') {
      const w = new DirWriter(label, header, opts, out);
      writer = w;
      try {
        await w.init();
      } catch (e) {
        await w.abort(e);
        throw e;
      }
    } else {
      const w = new TarWriter(label, header, opts, format, out);
      writer = w;
      try {
        await w.init(undefined);
      } catch (e) {
        await w.abort(e);
        throw e;
      }
    }
  } else {
    let st: StreamTarget;
    if (target === '-') {
      if (process.stdout.isTTY)
        throw new ArchiveError('archive <stdout>: refusing to write an archive to a terminal', { code: 'USAGE', archive: label });
      st = { stream: process.stdout, compression: 'none', label, end: false };
    } else {
      st = target as StreamTarget;
      if (!st || typeof st.stream?.write !== 'function')
        throw new ArchiveError(`archive ${label}: target must be a path, '-' or {stream, compression}`, { code: 'USAGE', archive: label });
      if (!['none', 'gzip', 'zstd'].includes(st.compression))
        throw new ArchiveError(`archive ${label}: unknown compression ${JSON.stringify(st.compression)}`, { code: 'USAGE', archive: label });
    }
    const w = new TarWriter(label, header, opts, { kind: 'tar', compression: st.compression }, undefined);
    writer = w;
    try {
      await w.init(st);
    } catch (e) {
      await w.abort(e);
      throw e;
    }
  }
  // header member; a failure here is fatal
  try {
    await writer.begin();
  } catch (e) {
    await writer.abort(e);
    throw e;
  }
  return writer;
}
