/**
 * `podman container checkpoint --export` writes a (zstd) tar whose checkpoint/ directory is the
 * CRIU image dir. bpfcr's post-dump action puts there the maps the tasks hold (checkpoint/bpfcr.tar;
 * older versions: a directory archive under checkpoint/bpfcr/) and the container's io.bpfcr.pins
 * maps (checkpoint/bpfcr-pins.tar); both tars are plain bpfcr archives. Commands that read an
 * archive accept such an export as it is: when a file turns out not to be a bpfcr archive, it is
 * scanned once for those members (podman's member order is not sorted: artifacts/, config.dump, …
 * come first) and read from there; the two tars are copied to a private temporary directory,
 * removed afterwards. So is the checkpoint's record (checkpoint/bpfcr-checkpoint.json: its programs
 * and links, for `bpfcr inspect`), up to RECORD_MAX bytes.
 */
import { constants as fsc, mkdtempSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArchiveError, HEADER_MEMBER, errorMessage } from '../archive/format.js';
import { noRoom, trackPartial, untrackPartial, writeFully } from '../archive/io.js';
import { openTarFile } from '../archive/source.js';
import { BLOCK } from '../archive/tar.js';
import type { TarEntryInfo, TarSource } from '../archive/tar-source.js';
import { INFO_FILE } from '../criu/files.js';
import { isLegacyStateFile, LEGACY_SIDECAR } from '../oci/state.js';

export const PODMAN_EXPORT_PREFIX = 'checkpoint/bpfcr/';
const NESTED_MAPS = 'checkpoint/bpfcr.tar';
const NESTED_PINS = 'checkpoint/bpfcr-pins.tar';
const NESTED_RECORD = `checkpoint/${INFO_FILE}`;
/** Largest checkpoint record copied out of an export (a record is a few KiB per BPF object). */
export const RECORD_MAX = 4 << 20;

/** One bpfcr archive found in an export: a file to read and the prefix it sits under. */
export interface ExportPart { what: 'maps' | 'pins'; input: string; prefix?: string; member: string }

export interface ExportParts {
  parts: ExportPart[];
  /**
   * The checkpoint record, when the export has one: `dir` holds it as INFO_FILE (read it with
   * readRecord(dir)); `problem` instead when it was not copied (larger than RECORD_MAX).
   */
  record?: { member: string; dir?: string; problem?: string };
  cleanup(): void;
}

/**
 * Copy a nested archive out of the export into `file`, having checked first what can be checked
 * before it takes any disk space: that it starts like a bpfcr tar (a header block naming
 * bpfcr-archive.json, or an extended header that may), and that its size fits where it goes.
 * Failures name the export, the member and the temporary directory.
 */
async function extractNested(path: string, e: TarEntryInfo, tmp: string, file: string): Promise<void> {
  const where = `archive ${path}: member ${e.name}`;
  const full = await noRoom(tmp, e.size);
  if (full) throw new Error(`${where}: ${e.size} bytes do not fit in ${tmp} (${full}); set TMPDIR to a directory with more room`);
  const first: Buffer[] = [];
  let have = 0;
  for (let c = await e.body.pull(); c !== null && (first.push(c), (have += c.length) < BLOCK); c = await e.body.pull()) {
    /* the first header block */
  }
  const head = Buffer.concat(first);
  const name = head.subarray(0, 100).toString('latin1').replace(/\0.*$/s, '').replace(/^(\.\/)+/, '');
  if (head.length < BLOCK || (name !== HEADER_MEMBER && !['x', 'g'].includes(String.fromCharCode(head[156]!))))
    throw new Error(`${where}: not a bpfcr archive (it does not start with ${HEADER_MEMBER})`);
  await copyOut(path, e, tmp, file, head);
}

/** The rest of an entry's body (after `first`) into a new 0600 file; failures name export, member and directory. */
async function copyOut(path: string, e: TarEntryInfo, tmp: string, file: string, first?: Buffer): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    if (first) await writeFully(fh, first);
    for (let c = await e.body.pull(); c !== null; c = await e.body.pull()) await writeFully(fh, c);
  } catch (err) {
    if (err instanceof ArchiveError) throw err; // the export's own problem, named already
    throw new Error(`archive ${path}: member ${e.name}: cannot copy it (${e.size} bytes) into ${tmp}: ${errorMessage(err)}; set TMPDIR to a directory with more room`, { cause: err });
  } finally {
    await fh?.close().catch(() => {});
  }
}

/**
 * The bpfcr archives inside a podman checkpoint export, or undefined when `path` is no such
 * export (no checkpoint/ member holding bpfcr data). Read through the archive layer, so a corrupt
 * or truncated export fails in one line naming it; the temporary directory is removed on any
 * failure and at exit.
 */
export async function podmanExportParts(path: string): Promise<ExportParts | undefined> {
  let tmp: string | undefined;
  const tmpDir = (): string => {
    if (!tmp) {
      tmp = mkdtempSync(join(tmpdir(), 'bpfcr-export-'));
      trackPartial(tmp);
    }
    return tmp;
  };
  const cleanup = (): void => {
    if (!tmp) return;
    rmSync(tmp, { recursive: true, force: true });
    untrackPartial(tmp);
  };
  const parts: ExportPart[] = [];
  let record: ExportParts['record'];
  let sawCheckpoint = false;
  let src: TarSource | undefined;
  try {
    src = await openTarFile(path, path, {});
    for (let e = await src.entry(); e !== null; e = await src.entry()) {
      const name = e.name;
      if (name.startsWith('checkpoint/')) sawCheckpoint = true;
      if (e.type === 'file' && (name === NESTED_MAPS || name === NESTED_PINS)) {
        const file = join(tmpDir(), name === NESTED_MAPS ? 'maps.tar' : 'pins.tar');
        await extractNested(path, e, tmpDir(), file);
        parts.push({ what: name === NESTED_MAPS ? 'maps' : 'pins', input: file, member: name });
        continue;
      }
      if (e.type === 'file' && name === NESTED_RECORD && !record) {
        if (e.size > RECORD_MAX) {
          record = { member: name, problem: `${e.size} bytes, more than the ${RECORD_MAX} read` };
        } else {
          await copyOut(path, e, tmpDir(), join(tmpDir(), INFO_FILE));
          record = { member: name, dir: tmpDir() };
          continue;
        }
      }
      if (name === `${PODMAN_EXPORT_PREFIX}bpfcr-archive.json`) parts.push({ what: 'maps', input: path, prefix: PODMAN_EXPORT_PREFIX, member: PODMAN_EXPORT_PREFIX });
      await e.drain();
    }
  } catch (e) {
    cleanup();
    throw e;
  } finally {
    await src?.close();
  }
  if (!sawCheckpoint || (parts.length === 0 && !record)) {
    cleanup();
    return undefined;
  }
  parts.sort((a, b) => (a.what === b.what ? 0 : a.what === 'maps' ? -1 : 1));
  return { parts, ...(record ? { record } : {}), cleanup };
}

/**
 * A state file (or checkpoint pins file) of a bpfcr before issue 8 read as an archive: say what it
 * is and how to read it, in one line naming it. Other errors pass unchanged.
 */
export function legacyHint(e: unknown, label: string): unknown {
  if (!isLegacyStateFile(e)) return e;
  return new Error(`${label}: a state file of an older bpfcr (${LEGACY_SIDECAR}, then its archive under bpfcr/): read it with --prefix bpfcr/`);
}

/**
 * Run `run` on INPUT; when INPUT is not a bpfcr archive but a podman checkpoint export, run it on
 * the export's map archive (the maps the checkpointed tasks held) instead.
 */
export async function withAutoPrefix<T>(input: string, prefix: string | undefined, run: (prefix: string | undefined, input: string) => Promise<T>): Promise<T> {
  if (prefix !== undefined || input === '-') return run(prefix, input);
  try {
    return await run(undefined, input);
  } catch (e) {
    if (!/not a bpfcr archive: first member is /.test((e as Error).message)) throw e;
    if (isLegacyStateFile(e)) throw legacyHint(e, input);
    const found = await podmanExportParts(input);
    const maps = found?.parts.find((p) => p.what === 'maps');
    if (!found || !maps) {
      found?.cleanup();
      throw e;
    }
    try {
      return await run(maps.prefix, maps.input);
    } finally {
      found.cleanup();
    }
  }
}
