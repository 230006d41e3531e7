/**
 * Archive reader: streams the members of a bpfcr archive (tar, tar.gz, tar.zst, directory, stdin
 * or a Readable), hashing every byte, and verifies everything against manifest.json.
 * See docs/archive-format.md. The parts: source.ts (opening the input, detecting compression),
 * member-source.ts (what a source offers), tar-source.ts / dir-source.ts (the two forms),
 * member.ts (member bodies and hashing), spool.ts (manifest order under a prefix), verify.ts
 * (the manifest check).
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { MANIFEST_MEMBER, MAX_MANIFEST_BYTES, HEADER_MEMBER, parseHeader, type ArchiveHeader, type Manifest, type MemberDigest } from './format.js';
import { MemberImpl, type ArchiveMember, type MemberContext, type RawMember } from './member.js';
import type { MemberSource } from './member-source.js';
import { normalizePrefix, openSource, prereadManifest, type ArchiveSource } from './source.js';
import { Spool } from './spool.js';
import { ManifestCheck, archiveError, incompleteError, type MemberCheck } from './verify.js';
import type { Compression } from './writer.js';

export type { ArchiveMember } from './member.js';
export { detectCompression, type ArchiveSource } from './source.js';
export type { MemberCheck } from './verify.js';

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
  /**
   * The member names the consumer knows. members() yields only these; any other member — a name
   * a newer bpfcr added (docs/archive-format.md section 9) — is skipped: still hashed and verified
   * against the manifest like every member, never read into memory, never spooled. Default: all.
   */
  known?: (name: string) => boolean;
  /**
   * Have `manifest` before the first member also for a bpfcr tar *file*, where manifest.json is
   * the last member: it is found by a walk of the tar headers first (tar-scan.ts; a compressed file
   * is decompressed once more for it), so every member is checked against the manifest before it is
   * handed out and the consumer can plan with it (restore checks all maps before creating any).
   * The manifest.json met at the end must be byte-identical. Not possible for stdin and streams.
   */
  manifestFirst?: boolean;
}

export interface ArchiveReader {
  readonly label: string;
  readonly format: { kind: 'tar' | 'dir'; compression: Compression };
  /** The validated header (first member). */
  readonly header: ArchiveHeader;
  /**
   * The manifest once read (parsed and checked against its own checksum, members not yet
   * verified): directories, and tar files with `manifestFirst`, at open; other native tars when
   * members() has ended (it is the last member); under a prefix before the first member is
   * yielded. finish() returns it verified.
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

export interface VerifyResult {
  ok: boolean;
  header: ArchiveHeader;
  manifest: Manifest;
  format: { kind: 'tar' | 'dir'; compression: Compression };
  /** One entry per manifest member (header included), then any unlisted members. */
  members: MemberCheck[];
}

const DEFAULT_MAX_MEMBER = 256 << 20;

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then((st) => st.isFile(), () => false);
}

class ReaderImpl implements ArchiveReader {
  readonly label: string;
  readonly format: { kind: 'tar' | 'dir'; compression: Compression };
  header!: ArchiveHeader;
  readonly #opts: ReaderOptions;
  readonly #source: MemberSource;
  readonly #check: ManifestCheck;
  /** Under a prefix, in manifest order: where members met out of turn wait. */
  readonly #spool: Spool | undefined;
  readonly #known: (name: string) => boolean;
  #nextIdx = 0; // with #spool: next index into the manifest order to yield
  #current: MemberImpl | undefined;
  #ended = false;
  #manifestMet = false;
  /** SHA-256 of manifest.json as found before the members (manifestFirst) */
  #preread: string | undefined;
  #finishing = false;
  #failed: unknown;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(label: string, source: MemberSource, opts: ReaderOptions, collect: boolean) {
    this.label = label;
    this.format = source.format;
    this.#source = source;
    this.#opts = opts;
    this.#check = new ManifestCheck(label, collect);
    this.#known = opts.known ?? (() => true);
    this.#spool =
      source.order === 'any' && opts.ordered !== false
        ? new Spool(opts.spoolDir, (msg, code, member) => archiveError(label, msg, code, member))
        : undefined;
  }

  get manifest(): Manifest | undefined {
    return this.#check.manifest;
  }

  /** The rules of a native tar: header first, manifest last, members in manifest order. */
  get #native(): boolean {
    return this.#source.order === 'native';
  }

  get #maxMemberSize(): number {
    return this.#opts.maxMemberSize ?? DEFAULT_MAX_MEMBER;
  }

  #member(raw: RawMember, done?: (d: MemberDigest) => void): MemberImpl {
    const ctx: MemberContext = {
      label: this.label,
      maxMemberSize: this.#maxMemberSize,
      done: done ?? ((d) => this.#check.record(d)),
      failed: (e) => this.#fail(e),
    };
    return new MemberImpl(raw.name, raw.size, raw.body, ctx);
  }

  #fail(e: unknown): void {
    if (this.#failed !== undefined) return;
    this.#failed = e;
    void this.close();
  }

  #usable(): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#closed) throw archiveError(this.label, 'reader is closed', 'USAGE');
  }

  /** Read and parse manifest.json (which is not listed in itself). */
  async #readManifest(raw: RawMember): Promise<void> {
    if (this.#manifestMet) throw archiveError(this.label, 'duplicate member', 'FORMAT', MANIFEST_MEMBER);
    this.#manifestMet = true;
    const buf = await this.#member(raw, () => {}).read();
    if (this.#preread !== undefined) {
      // already parsed from the walk before the members: it must be the very same bytes
      if (sha256(buf) !== this.#preread)
        throw archiveError(this.label, 'differs from the manifest.json found before the members (the file changed while being read?)', 'CHECKSUM', MANIFEST_MEMBER);
      return;
    }
    this.#check.parse(buf, this.header);
    // a native tar's members are compared with it in finish(); elsewhere those met so far now
    if (!this.#native) this.#check.earlier(this.#spool?.entries() ?? [], this.#spool === undefined);
  }

  async open(): Promise<void> {
    const start = await this.#source.start();
    this.#check.met(HEADER_MEMBER);
    const h = this.#member(start.header, () => {});
    this.#current = h;
    const hbuf = await h.read();
    this.header = parseHeader(hbuf, this.label);
    if (start.manifest) await this.#readManifest(await start.manifest());
    this.#check.record({ name: HEADER_MEMBER, size: hbuf.length, sha256: sha256(hbuf) });
    const strays = this.#source.follow?.(this.#check.listing, this.#check.order, (name) => this.#check.missing(name));
    for await (const raw of strays ?? []) {
      if (!this.#check.collect) {
        await raw.body.close?.();
        this.#check.unlisted(raw.name, raw.size);
      }
      await this.#member(raw, (d) => this.#check.unlisted(d.name, d.size, d.sha256)).drain();
    }
  }

  /**
   * manifestFirst: the manifest.json of a native tar found before its members (source.ts
   * prereadManifest), checked now; the one met at the end must be these very bytes.
   */
  adopt(manifest: Buffer): void {
    this.#check.parse(manifest, this.header);
    this.#preread = sha256(manifest);
  }

  /**
   * Admit a member met in the archive (duplicate / unlisted / order checks). With the manifest
   * known, a member whose size differs from its listing is refused before a byte of it is read.
   */
  #admit(raw: RawMember): void {
    this.#check.met(raw.name);
    if (this.#native && this.#manifestMet)
      throw archiveError(this.label, `follows ${MANIFEST_MEMBER}, which must be the last member`, 'FORMAT', raw.name);
    if (this.#check.manifest && !this.#check.listed(raw.name)) this.#check.unlisted(raw.name, raw.size);
    if (!this.#check.collect) this.#check.expectSize(raw.name, raw.size);
  }

  /** With a spool: the next member in manifest order if it is spooled (reporting missing ones at the end). */
  async #fromSpool(spool: Spool): Promise<MemberImpl | null> {
    const order = this.#check.order;
    while (this.#nextIdx < order.length) {
      const want = order[this.#nextIdx]!;
      if (spool.has(want)) {
        this.#nextIdx++;
        return this.#member(await spool.take(want));
      }
      // a skipped member was hashed where it was met, or finish() reports it missing
      if (this.#ended || !this.#known(want)) {
        this.#nextIdx++;
        if (this.#ended && !this.#check.seen(want) && this.#known(want)) this.#check.missing(want);
        continue;
      }
      break;
    }
    return null;
  }

  async #advance(): Promise<MemberImpl | null> {
    const prev = this.#current;
    if (prev) {
      if (!prev.complete) await prev.drain();
      prev.markStale();
      await prev.dispose();
      this.#current = undefined;
    }
    for (;;) {
      // native tar: members() ends at manifest.json; finish() reads on (nothing may follow it)
      if (this.#native && this.#manifestMet && !this.#finishing) return null;
      if (this.#spool && this.#check.manifest) {
        const m = await this.#fromSpool(this.#spool);
        if (m) return (this.#current = m);
      }
      if (this.#ended) return null;
      const raw = await this.#source.next();
      if (!raw) {
        this.#ended = true; // without a manifest finish() reports the archive incomplete
        continue;
      }
      let handed: MemberImpl | undefined;
      try {
        handed = await this.#take(raw);
      } catch (e) {
        // a body refused before it was read still holds what the source opened (a directory
        // archive's file descriptor)
        await raw.body.close?.().catch(() => {});
        throw e;
      }
      if (handed) return (this.#current = handed);
    }
  }

  /** A member the source delivered: read (manifest), skipped, spooled, or handed out (returned). */
  async #take(raw: RawMember): Promise<MemberImpl | undefined> {
    if (raw.name === MANIFEST_MEMBER) {
      if (!this.#manifestMet && raw.size > MAX_MANIFEST_BYTES)
        throw archiveError(this.label, `${raw.size} bytes is too large`, 'FORMAT', MANIFEST_MEMBER);
      await this.#readManifest(raw);
      return undefined;
    }
    this.#admit(raw);
    if (!this.#known(raw.name)) {
      await this.#member(raw).drain();
      return undefined;
    }
    if (this.#spool) {
      if (!this.#check.manifest || this.#check.order[this.#nextIdx] !== raw.name) {
        // the limit read() would apply, applied before the member takes any disk space
        await this.#spool.put(raw, this.#maxMemberSize);
        return undefined;
      }
      this.#nextIdx++;
    }
    return this.#member(raw);
  }

  async *members(): AsyncGenerator<ArchiveMember, void, undefined> {
    for (;;) {
      this.#usable();
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
    this.#usable();
    this.#finishing = true;
    try {
      while ((await this.#advance()) !== null) {
        /* drain the rest */
      }
      // the manifest found before the members must still be there at the end (a file cut meanwhile)
      if (this.#preread !== undefined && !this.#manifestMet) throw incompleteError(this.label);
      if (this.#native && this.#check.manifest) this.#check.earlier([], true);
      const manifest = this.#check.final(this.#native);
      await this.close();
      return manifest;
    } catch (e) {
      this.#fail(e);
      throw e;
    }
  }

  /** verifyArchive: per-member results after finish(). */
  results(): MemberCheck[] {
    return this.#check.results();
  }

  /** Every call resolves once everything is released, also when a failure began closing it already. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      await this.#current?.dispose().catch(() => {});
      await this.#source.close().catch(() => {});
      await this.#spool?.close();
    })();
    return this.#closing;
  }
}

async function openReader(source: ArchiveSource, opts: ReaderOptions, collect: boolean): Promise<ReaderImpl> {
  const label =
    opts.label ?? (typeof source === 'string' ? (source === '-' ? '<stdin>' : source) : '<stream>');
  normalizePrefix(opts.prefix); // validate early
  const src = await openSource(source, label, opts);
  const r = new ReaderImpl(label, src, opts, collect);
  try {
    await r.open();
    // after the header said it is a bpfcr archive: a podman export is not walked for nothing
    if (opts.manifestFirst && src.order === 'native' && typeof source === 'string' && source !== '-' && (await isFile(source))) {
      const manifest = await prereadManifest(source, label, opts);
      if (manifest) r.adopt(manifest);
    }
  } catch (e) {
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
