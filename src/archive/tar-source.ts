/**
 * Tar source: the regular-file entries of a (decompressed) tar, parsed by tar-stream, with the
 * rules of docs/archive-format.md sections 3, 4 and 7 (entry types, names, prefix).
 */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ArchiveError, HEADER_MEMBER, MAX_HEADER_BYTES, errorMessage } from './format.js';
import type { Body, RawMember } from './member.js';
import { memberNameProblem, printable } from './names.js';
import type { MemberSource, SourceStart } from './member-source.js';
import { archiveError } from './verify.js';
import type { Compression } from './writer.js';

type TarStreamModule = typeof import('tar-stream');
interface TarEntry extends AsyncIterable<Buffer> {
  header: { name: string; size?: number | undefined; type?: string | null | undefined; linkname?: string | null | undefined };
}

/** tar-stream, loaded only when an archive is read (it is not needed for writing). */
export async function loadTarStream(): Promise<TarStreamModule> {
  const tar = (await import('tar-stream')) as unknown as TarStreamModule & { default?: TarStreamModule };
  return typeof tar.extract === 'function' ? tar : tar.default!;
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

/** A tar entry of any type, as TarSource.entry() returns it. */
export interface TarEntryInfo {
  name: string;
  /** tar-stream's type: 'file', 'directory', 'symlink', 'link', … */
  type: string;
  size: number;
  linkname: string;
  body: Body;
  /** Skip the body (hashing nothing). */
  drain(): Promise<void>;
}

export class TarSource implements MemberSource {
  readonly format: MemberSource['format'];
  readonly order: MemberSource['order'];
  readonly #label: string;
  readonly #prefix: string | undefined;
  readonly #raw: Readable;
  readonly #extract: ReturnType<TarStreamModule['extract']>;
  readonly #it: AsyncIterator<TarEntry>;
  #rawError: unknown;
  #current: string | undefined;
  #closed = false;

  constructor(tar: TarStreamModule, raw: Readable, label: string, prefix: string | undefined, compression: Compression) {
    this.format = { kind: 'tar', compression };
    // a bpfcr tar of its own is in archive order; under a prefix the container tar decides
    this.order = prefix === undefined ? 'native' : 'any';
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
    // a decompressor may have failed before anyone listened: its stream still holds the error
    const root = this.#rawError ?? this.#raw.errored ?? e;
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

  async start(): Promise<SourceStart> {
    const first = await this.next();
    const where = this.#prefix !== undefined ? ` under prefix ${this.#prefix}` : '';
    const err = (msg: string, member?: string): ArchiveError =>
      archiveError(this.#label, msg, 'FORMAT', member);
    if (!first) throw err(`is empty or not a bpfcr archive (no ${HEADER_MEMBER}${where})`);
    if (first.name !== HEADER_MEMBER)
      throw err(`not a bpfcr archive: first member${where} is ${printable(first.name)}, expected ${HEADER_MEMBER}`);
    if (first.size > MAX_HEADER_BYTES) throw err(`${first.size} bytes is too large`, HEADER_MEMBER);
    return { header: first };
  }

  /**
   * The next tar entry of any type — its name with leading './' removed, nothing checked — or
   * null at the end; read errors come classified. next() builds on it; a podman export is read with
   * it (src/cli/autoprefix.ts). Drain or consume `body` before asking for the next entry.
   */
  async entry(): Promise<TarEntryInfo | null> {
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
    this.#current = name;
    return {
      name,
      type: h.type ?? 'unknown',
      size: h.size ?? 0,
      linkname: h.linkname ?? '',
      body: new TarBody(entry, this.classify),
      drain: () => this.#drain(entry),
    };
  }

  async next(): Promise<RawMember | null> {
    for (;;) {
      const e = await this.entry();
      if (!e) return null;
      let name = e.name;
      if (this.#prefix !== undefined) {
        if (!name.startsWith(this.#prefix)) {
          await e.drain();
          continue;
        }
        name = name.slice(this.#prefix.length);
      }
      this.#current = name;
      if (e.type === 'directory') {
        const dir = name.replace(/\/+$/, '');
        if (dir !== '' && dir !== '.') this.#checkName(dir);
        await e.drain();
        continue;
      }
      if (name === '') {
        await e.drain();
        continue;
      }
      if (e.type !== 'file' && e.type !== 'contiguous-file') {
        const what =
          e.type === 'symlink' || e.type === 'link'
            ? `${e.type === 'link' ? 'hard link' : 'symlink'} to ${printable(e.linkname)}`
            : `${e.type} entry`;
        throw new ArchiveError(
          `archive ${this.#label}: member ${printable(name)}: refusing ${what} (only regular files are allowed)`,
          { code: 'UNSAFE', archive: this.#label, member: name },
        );
      }
      this.#checkName(name);
      return { name, size: e.size, body: e.body };
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

  /** Stop reading; resolves once the input is closed (its file descriptor, a decompressor). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#extract.destroy();
    const raw = this.#raw;
    // 'close', not the end of the data: a file descriptor is closed only after that
    const closed = raw.closed ? Promise.resolve() : new Promise((r) => raw.once('close', r));
    raw.destroy();
    await closed;
  }
}
