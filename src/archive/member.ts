/**
 * Member bodies and their hashing: a Body delivers a member's bytes (a tar entry, a file of a
 * directory archive, a spooled copy); MemberImpl is the ArchiveMember handed to the consumer, which
 * hashes every byte whether or not the consumer reads it, and reports the digest to the reader.
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ArchiveError, type ArchiveErrorCode, type MemberDigest } from './format.js';

export interface ArchiveMember {
  readonly name: string;
  readonly size: number;
  /** The whole body. Rejects on a checksum mismatch when the manifest is already known. */
  read(): Promise<Buffer>;
  /** The body as a stream (use for very large members). */
  stream(): Readable;
}

export const READ_CHUNK = 1 << 20;

export interface Body {
  /** Next chunk, or null at the end. */
  pull(): Promise<Buffer | null>;
  /** Whole body in one buffer (optional fast path). */
  readAll?(): Promise<Buffer>;
  /** Precomputed SHA-256 (spooled members). */
  readonly digest?: string;
  close?(): Promise<void>;
}

/** A member as a source delivers it: names validated, prefix stripped. */
export interface RawMember {
  name: string;
  size: number;
  body: Body;
}

/** Reads a regular file opened by the caller; checks it has exactly `size` bytes. */
export class FileBody implements Body {
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

type MemberState = 'fresh' | 'claimed' | 'done' | 'stale';

export interface MemberContext {
  label: string;
  maxMemberSize: number;
  /** Called once the body is complete; may throw (checksum mismatch). */
  done: (d: MemberDigest) => void;
  /** Called on any failure. */
  failed: (e: unknown) => void;
}

export class MemberImpl implements ArchiveMember {
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
    private readonly ctx: MemberContext,
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
