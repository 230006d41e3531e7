/**
 * save-on-stop / restore-from state files.
 *
 * A state file is a tar (optionally gzip) holding:
 *   bpfcr-oci.json   the sidecar: which container path each pinned map had, owners, modes
 *   bpfcr/...        a complete bpfcr archive of those maps (checksummed, manifest last);
 *                    `bpfcr inspect --prefix bpfcr/ FILE` verifies and lists it.
 * The engine writes the embedded archive into a stream; its members are re-packed under bpfcr/.
 *
 * Paths come from annotations (untrusted): state.ts already limited them to plain names under
 * STATE_DIR, and every component is opened here with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) from the state directory, so a symlink planted there cannot redirect a
 * write or a read. Files are written 0600 under a temporary name, fsynced and renamed.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, createReadStream, createWriteStream, fsyncSync, mkdirSync, openSync, readSync, renameSync, unlinkSync } from 'node:fs';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import type { StreamTarget } from '../archive/writer.js';
import {
  AT_FDCWD, O_CREAT, O_DIRECTORY, O_EXCL, O_PATH, O_RDONLY, O_WRONLY, RESOLVE_NO_MAGICLINKS, RESOLVE_STRICT,
  closeQuiet, fdPath, openat2,
} from '../syscall/fs.js';
import type { SavedDir, SavedPin, Skipped } from './pins.js';
import { openComponent, statFd, walkBeneath } from './resolve.js';
import { absolutePathProblem, relativeTo, STATE_DIR, statePathProblem } from './state.js';

export const SIDECAR_MEMBER = 'bpfcr-oci.json';
export const ARCHIVE_PREFIX = 'bpfcr/';
export const SIDECAR_FORMAT = 'bpfcr-oci-state';
export const SIDECAR_VERSION = 1;
const MAX_SIDECAR_BYTES = 16 << 20;

export interface Sidecar {
  format: typeof SIDECAR_FORMAT;
  version: number;
  created: string;
  container: { id: string; pins: string[] };
  /** number of maps in the embedded archive (0: no archive) */
  maps: number;
  pins: SavedPin[];
  dirs: SavedDir[];
  skipped: Skipped[];
}

// ---------------------------------------------------------------------------------------------
// The state directory

/** O_PATH fd of STATE_DIR (created 0700 when `create`); undefined when absent and not creating. */
function openStateDir(create: boolean): number | undefined {
  if (create) mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 });
  try {
    return openat2(AT_FDCWD, STATE_DIR, O_PATH | O_DIRECTORY, RESOLVE_NO_MAGICLINKS);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw new Error(`state directory ${STATE_DIR}: ${(e as Error).message}`);
  }
}

export interface StateLoc { dirFd: number; name: string }

/** Open (creating when asked) the directory holding `path`, strictly below STATE_DIR. */
function stateLoc(path: string, create: boolean): StateLoc | undefined {
  const problem = statePathProblem(path);
  if (problem) throw new Error(`state file ${path}: ${problem}`);
  const rel = relativeTo(path, STATE_DIR).split('/');
  const root = openStateDir(create);
  if (root === undefined) return undefined;
  try {
    const m = { loc: { containerPath: path, mount: { destination: STATE_DIR, options: [] }, source: STATE_DIR, rel: rel.join('/') }, fd: root };
    let dirFd: number;
    try {
      dirFd = walkBeneath(m, rel.slice(0, -1), create ? { createDirs: true, dirMode: 0o700 } : {});
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return undefined;
      throw rewordState(e, path);
    }
    return { dirFd, name: rel[rel.length - 1]! };
  } finally {
    closeQuiet(root);
  }
}

/** resolve.ts says "container path (host path)": for state files both are the host path. */
function rewordState(e: unknown, path: string): Error {
  const msg = (e as Error).message
    .replace(/ \(host [^)]*\)/, '')
    .replace('; bpfcr never follows symlinks in a container-writable bpffs', ` (bpfcr never follows symlinks under ${STATE_DIR})`);
  return new Error(msg.includes(path) || msg.startsWith('refusing') ? msg : `state file ${path}: ${msg}`);
}

// ---------------------------------------------------------------------------------------------
// Writing

type TarStream = typeof import('tar-stream');
async function tarStream(): Promise<TarStream> {
  const mod = (await import('tar-stream')) as unknown as TarStream & { default?: TarStream };
  return typeof mod.pack === 'function' ? mod : mod.default!;
}

/**
 * Write a state file atomically: sidecar first, then (when `dump` is given) the engine's archive
 * re-packed under bpfcr/. `dump` receives a StreamTarget to hand to the engine's dump().
 */
export async function writeStateFile(path: string, sidecar: Sidecar, dump?: (target: StreamTarget) => Promise<unknown>): Promise<void> {
  return writeStateFileAt(stateLoc(path, true)!, path, sidecar, dump);
}

/** The directory of a state file kept outside STATE_DIR (a CRIU image dir): trusted path, O_PATH. */
export function openDirLoc(dir: string, name: string): StateLoc {
  return { dirFd: openSync(dir, O_PATH | O_DIRECTORY), name };
}

/** writeStateFile into an opened directory (closes loc.dirFd); `path` names it in messages. */
export async function writeStateFileAt(loc: StateLoc, path: string, sidecar: Sidecar, dump?: (target: StreamTarget) => Promise<unknown>): Promise<void> {
  const tmp = `.${loc.name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  let fd: number | undefined;
  let published = false;
  try {
    fd = openat2(loc.dirFd, tmp, O_WRONLY | O_CREAT | O_EXCL, RESOLVE_STRICT, 0o600);
    chmodSync(fdPath(fd), 0o600);
    const tar = await tarStream();
    const pack = tar.pack();
    const out = createWriteStream('', { fd, autoClose: false });
    const gzip = /\.(tar\.gz|tgz)$/.test(path);
    const src = pack as unknown as Readable;
    const written = gzip ? pipeline(src, createGzip({ level: 1 }), out) : pipeline(src, out);
    written.catch(() => undefined);
    const mtime = new Date(sidecar.created);
    const json = Buffer.from(JSON.stringify(sidecar, null, 1) + '\n', 'utf8');
    await new Promise<void>((res, rej) => pack.entry({ name: SIDECAR_MEMBER, size: json.length, mode: 0o600, mtime }, json, (e) => (e ? rej(e) : res())));
    if (dump) {
      const extract = tar.extract();
      extract.on('entry', (header, stream, next) => {
        const h = { ...header, name: ARCHIVE_PREFIX + header.name };
        if (h.pax && typeof h.pax === 'object') {
          // a pax path would win over the new name
          const pax = { ...(h.pax as Record<string, string>) };
          delete pax['path'];
          h.pax = pax;
        }
        const entry = pack.entry(h, (err) => (err ? extract.destroy(err) : next()));
        stream.pipe(entry);
      });
      // The engine's writer waits on stream.finished() of its target, which never settles for
      // tar-stream's (streamx) Writable: hand it a Node Writable that forwards, and whose final()
      // completes only once extract has consumed everything.
      const sink = new Writable({
        write(chunk: Buffer, _enc, cb) {
          if (extract.write(chunk)) cb();
          else extract.once('drain', () => cb());
        },
        final(cb) {
          extract.once('finish', () => cb());
          extract.once('error', (e: Error) => cb(e));
          (extract as unknown as { end(): void }).end();
        },
        destroy(err, cb) {
          (extract as unknown as { destroy(e?: Error): void }).destroy(err ?? undefined);
          cb(err);
        },
      });
      extract.on('error', (e: Error) => sink.destroy(e));
      try {
        await dump({ stream: sink, compression: 'none', label: path, end: true });
      } catch (e) {
        throw Object.assign(e as Error, { fromDump: true }); // reported as is, not as a state file problem
      }
    }
    pack.finalize();
    await written;
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(fdPath(loc.dirFd, tmp), fdPath(loc.dirFd, loc.name));
    published = true;
    try {
      const dfd = openSync(fdPath(loc.dirFd), O_RDONLY | O_DIRECTORY);
      try { fsyncSync(dfd); } finally { closeSync(dfd); }
    } catch { /* best effort */ }
  } catch (e) {
    throw (e as { fromDump?: boolean }).fromDump ? e : rewordState(e, path);
  } finally {
    closeQuiet(fd);
    if (!published) {
      try { unlinkSync(fdPath(loc.dirFd, tmp)); } catch { /* not created */ }
    }
    closeQuiet(loc.dirFd);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

export interface OpenedState {
  sidecar: Sidecar;
  /** read-only fd of the state file; `archivePath` is its /proc/self/fd path */
  fd: number;
  archivePath: string;
  close(): void;
}

/** Open a state file and read its sidecar; undefined when it does not exist. */
export async function openStateFile(path: string): Promise<OpenedState | undefined> {
  const loc = stateLoc(path, false);
  if (!loc) return undefined;
  return openStateFileAt(loc, path);
}

/** openStateFile in an opened directory (closes loc.dirFd); `path` names it in messages. */
export async function openStateFileAt(loc: StateLoc, path: string): Promise<OpenedState | undefined> {
  let fd: number | undefined;
  try {
    try {
      fd = openComponent(loc.dirFd, loc.name, { container: path, host: path }, O_RDONLY);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return undefined;
      throw e;
    }
    if (!statFd(fd).isFile()) throw new Error(`state file ${path}: not a regular file`);
    const sidecar = await readSidecar(fd, path);
    const f = fd;
    fd = undefined;
    return { sidecar, fd: f, archivePath: fdPath(f), close: () => closeQuiet(f) };
  } catch (e) {
    throw rewordState(e, path);
  } finally {
    closeQuiet(fd);
    closeQuiet(loc.dirFd);
  }
}

async function readSidecar(fd: number, path: string): Promise<Sidecar> {
  const head = Buffer.alloc(2);
  readSync(fd, head, 0, 2, 0);
  // A stream of its own open file (same inode, through the magic link): destroying a ReadStream
  // closes its fd whatever autoClose says, and `fd` must stay open for the archive reader.
  const raw = createReadStream('', { fd: openSync(fdPath(fd), 'r'), start: 0 });
  const gz = head[0] === 0x1f && head[1] === 0x8b;
  const source: Readable = gz ? raw.pipe(createGunzip()) : raw;
  const tar = await tarStream();
  const extract = tar.extract();
  source.pipe(extract as unknown as Writable);
  try {
    for await (const entry of extract as unknown as AsyncIterable<Readable & { header: { name: string; size?: number } }>) {
      if (entry.header.name !== SIDECAR_MEMBER) throw new Error(`first member is ${JSON.stringify(entry.header.name)}, not ${SIDECAR_MEMBER}: not a bpfcr state file`);
      if ((entry.header.size ?? 0) > MAX_SIDECAR_BYTES) throw new Error(`${SIDECAR_MEMBER} is larger than ${MAX_SIDECAR_BYTES} bytes`);
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (e) {
        throw new Error(`${SIDECAR_MEMBER}: not valid JSON: ${(e as Error).message.split('\n')[0]}`);
      }
      return validateSidecar(parsed);
    }
    throw new Error('empty archive: not a bpfcr state file');
  } catch (e) {
    throw new Error(`state file ${path}: ${(e as Error).message.replace(/\s+/g, ' ')}`);
  } finally {
    raw.destroy();
    if (gz) source.destroy();
    (extract as unknown as { destroy(): void }).destroy();
  }
}

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

export function validateSidecar(raw: unknown): Sidecar {
  const bad = (msg: string): never => { throw new Error(`${SIDECAR_MEMBER}: ${msg}`); };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad('not a JSON object');
  const o = raw as Record<string, unknown>;
  if (o['format'] !== SIDECAR_FORMAT) bad(`format is ${JSON.stringify(o['format'])}, expected ${SIDECAR_FORMAT}`);
  if (!isInt(o['version'], 1, Number.MAX_SAFE_INTEGER)) bad('version is not a positive integer');
  if ((o['version'] as number) > SIDECAR_VERSION) bad(`version ${String(o['version'])} is newer than this bpfcr understands (${SIDECAR_VERSION}); upgrade bpfcr`);
  if (!isInt(o['maps'], 0, 1 << 30)) bad('maps is not a count');
  const attrs = (x: Record<string, unknown>, where: string): void => {
    if (typeof x['path'] !== 'string') bad(`${where}.path is not a string`);
    const problem = absolutePathProblem(x['path'] as string);
    if (problem) bad(`${where}.path ${JSON.stringify(x['path'])} ${problem}`);
    if (!isInt(x['mode'], 0, 0o7777)) bad(`${where}.mode is not a permission mode`);
    if (!isInt(x['uid'], 0, 0xffffffff) || !isInt(x['gid'], 0, 0xffffffff)) bad(`${where}: uid/gid are not ids`);
  };
  const list = (k: string): Record<string, unknown>[] => {
    const v = o[k] ?? [];
    if (!Array.isArray(v)) bad(`${k} is not an array`);
    return (v as unknown[]).map((x, i) => {
      if (typeof x !== 'object' || x === null) bad(`${k}[${i}] is not an object`);
      return x as Record<string, unknown>;
    });
  };
  const pins = list('pins').map((p, i) => {
    attrs(p, `pins[${i}]`);
    if (!isInt(p['mapId'], 1, 0xffffffff)) bad(`pins[${i}].mapId is not a map id`);
    return { path: p['path'] as string, mapId: p['mapId'] as number, mode: p['mode'] as number, uid: p['uid'] as number, gid: p['gid'] as number };
  });
  const seen = new Set<string>();
  for (const p of pins) {
    if (seen.has(p.path)) bad(`pin ${p.path} is listed twice`);
    seen.add(p.path);
  }
  const dirs = list('dirs').map((d, i) => {
    attrs(d, `dirs[${i}]`);
    return { path: d['path'] as string, mode: d['mode'] as number, uid: d['uid'] as number, gid: d['gid'] as number };
  });
  const skipped = list('skipped').map((s) => ({ path: String(s['path']), why: String(s['why']) }));
  if (pins.length > 0 && o['maps'] === 0) bad('lists pins but holds no maps');
  const c = (o['container'] ?? {}) as Record<string, unknown>;
  return {
    format: SIDECAR_FORMAT, version: o['version'] as number, created: String(o['created'] ?? ''),
    container: { id: String(c['id'] ?? ''), pins: Array.isArray(c['pins']) ? (c['pins'] as unknown[]).map(String) : [] },
    maps: o['maps'] as number, pins, dirs, skipped,
  };
}
