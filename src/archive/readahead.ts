/**
 * Read-ahead for plain tar files (docs/archive-format.md, "Implementation notes").
 *
 * A Readable over a tar file that
 *  - cuts the file at tar entry boundaries: each chunk is one entry's body, its padding and the
 *    next header block, so tar-stream hands a member body to the reader as a single Buffer
 *    (no concatenation copy in member.read());
 *  - keeps the next read in flight while the consumer works: the read of chunk N+1 is issued
 *    before chunk N is pushed, so libuv's thread pool reads it while the main thread is inside a
 *    long synchronous call (bpf(2) batch updates in restore) — a read issued later, from a
 *    callback, could not start until that call returns.
 *
 * The entry boundaries are only a hint: the chunks always cover the file contiguously from offset
 * 0 to EOF, and tar-stream still parses every byte. A header this code does not understand
 * (zero block, bad number, ...) just switches to fixed-size chunks up to EOF.
 *
 * Memory: a read starts only while less than `readAhead` bytes are buffered here (counting the
 * chunk about to be pushed), and reads at most `maxChunk` bytes, so this stream holds less than
 * readAhead + maxChunk (32 MiB by default); tar-stream holds one more chunk, the one it is parsing
 * (the caller's member body is a view into it). With bpfcr's ≤ 8 MiB data members that is, in
 * steady state, the member being applied plus the next one being read.
 */
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { BLOCK, numField, padded, paxSize } from './tar.js';
/** Chunk size once the entry layout is unknown (after the end-of-archive blocks, or garbage). */
const FALLBACK_CHUNK = 1 << 20;

export interface ReadAheadOptions {
  /**
   * High-water mark: no new read while this many bytes are buffered (default 16 MiB: more than one
   * 8 MiB data member with its header and padding, so that the read of the next member starts
   * before the current one is handed on).
   */
  readAhead?: number;
  /**
   * Largest single read (default 16 MiB, so that an 8 MiB data member with its header and padding
   * is one read); longer entry bodies arrive in several chunks.
   */
  maxChunk?: number;
}

export class TarReadAhead extends Readable {
  readonly #fh: FileHandle;
  readonly #maxChunk: number;
  /** File offset of the next read. */
  #pos = 0;
  /**
   * Bytes from #pos to the end of the next header block (body + padding + 512), or undefined once
   * the layout is unknown (fixed-size chunks).
   */
  #toHeaderEnd: number | undefined = BLOCK;
  /** Bytes of a pax 'x' body still to come in later chunks (its size record is then ignored). */
  #pendingPax: number | undefined;
  /** Size override for the next entry from a pax header. */
  #paxSize: number | undefined;
  #reading: Promise<void> | undefined;
  #eof = false;
  #closing = false;

  constructor(fh: FileHandle, opts: ReadAheadOptions = {}) {
    super({ highWaterMark: opts.readAhead ?? 16 << 20 });
    this.#fh = fh;
    this.#maxChunk = Math.max(BLOCK, opts.maxChunk ?? 16 << 20);
  }

  #nextLength(): number {
    if (this.#toHeaderEnd === undefined) return FALLBACK_CHUNK;
    return Math.min(this.#toHeaderEnd, this.#maxChunk);
  }

  /**
   * Start the next read unless one is running. From _read() Node has already checked its buffer
   * against the high-water mark; from #done() the same check is made here, counting the chunk
   * about to be pushed (`held`).
   */
  #pump(held: number): void {
    if (this.#reading || this.#eof || this.#closing || this.destroyed) return;
    if (held > 0 && this.readableLength + held >= this.readableHighWaterMark) return;
    const pos = this.#pos;
    const len = this.#nextLength();
    this.#pos += len;
    const buf = Buffer.allocUnsafe(len);
    this.#reading = this.#fh.read(buf, 0, len, pos).then(
      ({ bytesRead }) => this.#done(bytesRead === len ? buf : buf.subarray(0, bytesRead), len),
      (e: Error) => {
        this.#reading = undefined;
        if (!this.#closing) this.destroy(e);
      },
    );
  }

  #done(chunk: Buffer, wanted: number): void {
    this.#reading = undefined;
    if (this.#closing || this.destroyed) return;
    if (chunk.length === 0) {
      this.#eof = true;
      this.push(null);
      return;
    }
    if (chunk.length < wanted) {
      // short read: EOF, or a file that changed; tar-stream judges the bytes, we stop planning
      this.#pos -= wanted - chunk.length;
      this.#toHeaderEnd = undefined;
    } else {
      this.#plan(chunk);
    }
    // Issue the next read before the consumer sees this chunk: it may block the main thread.
    this.#pump(chunk.length);
    this.push(chunk);
  }

  /** After a full chunk: where is the next header block? */
  #plan(chunk: Buffer): void {
    const t = this.#toHeaderEnd;
    if (t === undefined) return;
    if (chunk.length < t) {
      // a body longer than maxChunk: keep going towards the header
      this.#toHeaderEnd = t - chunk.length;
      if (this.#pendingPax !== undefined) this.#pendingPax = Math.max(0, this.#pendingPax - chunk.length);
      return;
    }
    // chunk ends with a header block
    const h = chunk.subarray(chunk.length - BLOCK);
    const before = chunk.subarray(0, chunk.length - BLOCK); // previous body (+ padding)
    if (this.#pendingPax === 0) this.#pendingPax = undefined; // pax body spanned chunks: size record lost
    else if (this.#pendingPax !== undefined) {
      this.#paxSize = paxSize(before.subarray(0, this.#pendingPax));
      this.#pendingPax = undefined;
    }
    if (h.every((x) => x === 0)) {
      this.#toHeaderEnd = undefined; // end-of-archive blocks: read the rest plainly
      return;
    }
    const size = numField(h, 124, 12);
    if (size === undefined) {
      this.#toHeaderEnd = undefined;
      return;
    }
    const type = String.fromCharCode(h[156]!);
    let bodySize = size;
    if (type === 'x') {
      this.#pendingPax = size;
    } else if (type !== 'g' && type !== 'L' && type !== 'K') {
      if (this.#paxSize !== undefined) bodySize = this.#paxSize;
      this.#paxSize = undefined;
      if (type === '5') bodySize = 0; // as tar-stream: a directory entry has no body
    }
    this.#toHeaderEnd = padded(bodySize) + BLOCK;
  }

  override _read(): void {
    this.#pump(0);
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.#closing = true;
    const reading = this.#reading ?? Promise.resolve();
    reading
      .catch(() => {})
      .then(() => this.#fh.close())
      .then(
        () => cb(err),
        () => cb(err),
      );
  }
}
