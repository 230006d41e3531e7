/**
 * Directory source: a directory-form archive (docs/archive-format.md section 5). Header and
 * manifest are read when it is opened; members are then opened one by one in manifest order,
 * without following symlinks, and must be the very files found when the tree was listed.
 */
import { constants as fsc } from 'node:fs';
import { lstat, open, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ArchiveError, HEADER_MEMBER, MANIFEST_MEMBER, MAX_HEADER_BYTES, MAX_MANIFEST_BYTES, errorMessage } from './format.js';
import { FileBody, type RawMember } from './member.js';
import { printable } from './names.js';
import type { MemberSource, SourceStart } from './member-source.js';
import { archiveError, incompleteError } from './verify.js';

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

export class DirSource implements MemberSource {
  readonly format = { kind: 'dir', compression: 'none' } as const;
  readonly order = 'manifest';
  readonly #root: string;
  readonly #label: string;
  #files: Map<string, WalkEntry> | undefined;
  #want: readonly string[] = [];
  #missing: (name: string) => void = () => {};
  #next = 0;

  private constructor(root: string, label: string) {
    this.#root = root;
    this.#label = label;
  }

  /** Open the archive at `root` (under `prefix`, each of whose components must be a real directory). */
  static async open(root: string, prefix: string | undefined, label: string): Promise<DirSource> {
    if (prefix) {
      let at = root;
      for (const part of prefix.slice(0, -1).split('/')) {
        at = join(at, part);
        let st;
        try {
          st = await lstat(at);
        } catch {
          throw archiveError(label, `is not a bpfcr archive: no directory ${prefix}`, 'FORMAT');
        }
        if (!st.isDirectory())
          throw archiveError(label, `prefix component ${part} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}; refusing it`, 'UNSAFE');
      }
      root = at;
    }
    return new DirSource(root, label);
  }

  /** Header and manifest: read when the archive is opened, so members can follow the manifest. */
  async start(): Promise<SourceStart> {
    const header = await this.#small(HEADER_MEMBER, MAX_HEADER_BYTES);
    if (header === 'missing') throw archiveError(this.#label, `is not a bpfcr archive (no ${HEADER_MEMBER} in the directory)`, 'FORMAT');
    const manifest = async (): Promise<RawMember> => {
      const m = await this.#small(MANIFEST_MEMBER, MAX_MANIFEST_BYTES);
      if (m === 'missing') throw incompleteError(this.#label);
      return m;
    };
    return { header, manifest };
  }

  async #small(name: string, limit: number): Promise<RawMember | 'missing'> {
    const o = await openMember(this.#root, name, this.#label);
    if (o === 'missing') return o;
    if (o.size > limit) {
      await o.fh.close();
      throw archiveError(this.#label, `${o.size} bytes exceeds the limit of ${limit}`, 'FORMAT', name);
    }
    return { name, size: o.size, body: this.#body(name, o) };
  }

  /**
   * Members will come in the manifest's `order`, absent ones are reported to `missing`. Lists the
   * tree (refusing symlinks and special files) and yields the files the manifest does not list, one
   * at a time, opened (those that vanished meanwhile are left out).
   */
  async *follow(listing: ReadonlyMap<string, unknown>, order: readonly string[], missing: (name: string) => void): AsyncGenerator<RawMember> {
    this.#want = order;
    this.#missing = missing;
    const files = await walk(this.#root, this.#label);
    files.delete(MANIFEST_MEMBER);
    this.#files = files;
    for (const name of files.keys()) {
      if (listing.has(name)) continue;
      const o = await openMember(this.#root, name, this.#label);
      if (o !== 'missing') yield { name, size: o.size, body: this.#body(name, o) };
    }
  }

  #body(name: string, o: { fh: FileHandle; size: number }): FileBody {
    return new FileBody(o.fh, o.size, () => archiveError(this.#label, 'changed while being read', 'IO', name));
  }

  async next(): Promise<RawMember | null> {
    while (this.#next < this.#want.length) {
      const name = this.#want[this.#next++]!;
      const o = await openMember(this.#root, name, this.#label);
      if (o === 'missing') {
        this.#missing(name);
        continue;
      }
      const w = this.#files?.get(name);
      if (!w || w.dev !== o.dev || w.ino !== o.ino) {
        await o.fh.close();
        throw archiveError(this.#label, 'changed while the archive was being read (replaced or moved)', 'UNSAFE', name);
      }
      return { name, size: o.size, body: this.#body(name, o) };
    }
    return null;
  }

  async close(): Promise<void> {}
}
