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
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { findZstd } from '../archive/io.js';
import { INFO_FILE } from '../criu/files.js';
import { isLegacyStateFile, LEGACY_SIDECAR } from '../oci/state.js';
import { MAGIC_BYTES, detectCompression } from '../archive/source.js';
import type { Compression } from '../archive/writer.js';

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

/** Compression of a tar file, detected as the archive reader does (by content). */
function compressionOf(path: string): Compression {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(MAGIC_BYTES);
    return detectCompression(head.subarray(0, readSync(fd, head, 0, MAGIC_BYTES, 0)), path);
  } finally {
    closeSync(fd);
  }
}

/** A decompressed stream of a (zstd|gzip|plain) tar file. */
function tarStreamOf(path: string): { stream: Readable; done: Promise<void> } {
  const compression = compressionOf(path);
  if (compression === 'zstd') {
    const zstd = findZstd();
    if (!zstd) throw new Error(`${path} is zstd-compressed and no zstd command was found (apt-get install zstd)`);
    const child = spawn(zstd, ['-dc', '--', path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const done = new Promise<void>((res, rej) => child.on('close', (code, sig) => (code === 0 || sig === 'SIGPIPE' ? res() : rej(new Error(`zstd -dc ${path}: ${err.trim() || `exit ${code}`}`)))));
    return { stream: child.stdout, done };
  }
  const raw = createReadStream(path);
  if (compression === 'gzip') return { stream: raw.pipe(createGunzip()), done: Promise.resolve() };
  return { stream: raw, done: Promise.resolve() };
}

/**
 * The bpfcr archives inside a podman checkpoint export, or undefined when `path` is no such
 * export (no checkpoint/ member holding bpfcr data).
 */
export async function podmanExportParts(path: string): Promise<ExportParts | undefined> {
  const mod = (await import('tar-stream')) as unknown as { extract?: () => unknown; default?: { extract: () => unknown } };
  const extractFn = (mod.extract ?? mod.default!.extract) as () => Writable & AsyncIterable<Readable & { header: { name: string; type: string; size?: number } }>;
  let tmp: string | undefined;
  const parts: ExportPart[] = [];
  let record: ExportParts['record'];
  let sawCheckpoint = false;
  const { stream, done } = tarStreamOf(path);
  const extract = extractFn();
  stream.pipe(extract);
  try {
    for await (const entry of extract) {
      const name = entry.header.name.replace(/^\.\//, '');
      if (name.startsWith('checkpoint/')) sawCheckpoint = true;
      if (entry.header.type === 'file' && (name === NESTED_MAPS || name === NESTED_PINS)) {
        tmp ??= mkdtempSync(join(tmpdir(), 'bpfcr-export-'));
        const file = join(tmp, name === NESTED_MAPS ? 'maps.tar' : 'pins.tar');
        await pipeline(entry, createWriteStream(file, { mode: 0o600 }));
        parts.push({ what: name === NESTED_MAPS ? 'maps' : 'pins', input: file, member: name });
        continue;
      }
      if (entry.header.type === 'file' && name === NESTED_RECORD && !record) {
        const size = entry.header.size ?? 0;
        if (size > RECORD_MAX) {
          record = { member: name, problem: `${size} bytes, more than the ${RECORD_MAX} read` };
        } else {
          tmp ??= mkdtempSync(join(tmpdir(), 'bpfcr-export-'));
          await pipeline(entry, createWriteStream(join(tmp, INFO_FILE), { mode: 0o600 }));
          record = { member: name, dir: tmp };
          continue;
        }
      }
      if (name === `${PODMAN_EXPORT_PREFIX}bpfcr-archive.json`) parts.push({ what: 'maps', input: path, prefix: PODMAN_EXPORT_PREFIX, member: PODMAN_EXPORT_PREFIX });
      entry.resume();
    }
    await done;
  } catch (e) {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const cleanup = (): void => { if (tmp) rmSync(tmp, { recursive: true, force: true }); };
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
