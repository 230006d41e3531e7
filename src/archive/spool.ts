/**
 * Spool for an archive embedded under a prefix (docs/archive-format.md section 7): members the
 * container tar stores before the manifest or ahead of their turn are copied, hashed on the way, to
 * a private temporary directory (0700), and read back from there in manifest order. It needs disk
 * space, not memory; each copy is removed once read, the directory on close().
 */
import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { chmod, mkdtemp, open, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArchiveError, errorMessage, type ArchiveErrorCode } from './format.js';
import { noRoom, trackPartial, untrackPartial, writeFully } from './io.js';
import { FileBody, type RawMember } from './member.js';

interface Spooled {
  path: string;
  size: number;
  sha256: string;
}

export class Spool {
  #dir: string | undefined;
  #files = new Map<string, Spooled>();
  #count = 0;

  /**
   * `base`: where the private directory is made (default os.tmpdir()); `error` builds the
   * reader's error for a member.
   */
  constructor(
    readonly base: string | undefined,
    readonly error: (msg: string, code: ArchiveErrorCode, member: string) => ArchiveError,
  ) {}

  has(name: string): boolean {
    return this.#files.has(name);
  }

  /** What is spooled and not yet taken: name, size, SHA-256. */
  entries(): Iterable<[string, Spooled]> {
    return this.#files.entries();
  }

  /**
   * Copy a member's body to the spool. Refused before anything is written when it is larger than
   * `limit` (what the reader will accept from it anyway) or than the free space where it would go;
   * a failure names the member and the directory.
   */
  async put(raw: RawMember, limit: number): Promise<void> {
    const base = this.base ?? tmpdir();
    if (raw.size > limit) throw this.error(`${raw.size} bytes is too large to read into memory (limit ${limit})`, 'FORMAT', raw.name);
    const where = (e: unknown): ArchiveError =>
      this.error(`cannot spool it (${raw.size} bytes) in ${this.#dir ?? base}: ${errorMessage(e)}; set TMPDIR to a directory with more room`, 'IO', raw.name);
    if (!this.#dir) {
      try {
        this.#dir = await mkdtemp(join(base, 'bpfcr-spool-'));
      } catch (e) {
        throw where(e);
      }
      trackPartial(this.#dir);
      await chmod(this.#dir, 0o700);
    }
    const full = await noRoom(this.#dir, raw.size);
    if (full) throw where(full);
    const path = join(this.#dir, String(this.#count++));
    const hash = createHash('sha256');
    let size = 0;
    let fh: Awaited<ReturnType<typeof open>> | undefined;
    try {
      fh = await open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
      for (let c = await raw.body.pull(); c !== null; c = await raw.body.pull()) {
        hash.update(c);
        size += c.length;
        await writeFully(fh, c);
      }
    } catch (e) {
      await fh?.close().catch(() => {});
      await unlink(path).catch(() => {});
      // the archive's own errors (the body ended early, ...) pass; file-system ones name the spool
      throw e instanceof ArchiveError ? e : where(e);
    }
    await fh.close();
    if (size !== raw.size) throw this.error(`size mismatch (expected ${raw.size} bytes, got ${size})`, 'CHECKSUM', raw.name);
    this.#files.set(raw.name, { path, size, sha256: hash.digest('hex') });
  }

  /** Take a spooled member back (its digest is the one computed when spooling). */
  async take(name: string): Promise<RawMember> {
    const s = this.#files.get(name)!;
    this.#files.delete(name);
    const fh = await open(s.path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    const body = new FileBody(
      fh,
      s.size,
      () => this.error('spooled copy changed while being read', 'IO', name),
      s.sha256,
      () => unlink(s.path).catch(() => {}),
    );
    return { name, size: s.size, body };
  }

  async close(): Promise<void> {
    if (!this.#dir) return;
    await rm(this.#dir, { recursive: true, force: true }).catch(() => {});
    untrackPartial(this.#dir);
  }
}
