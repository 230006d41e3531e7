/**
 * save-on-stop / restore-from state files, and the pins file of a CRIU checkpoint (bpfcr-pins.tar).
 *
 * Both are plain bpfcr archives (docs/archive-format.md): the engine's members for the pinned
 * maps, plus one member of the OCI hooks' own, written right after the header:
 *   oci/pins.json   which container path each pinned map had (by its map id at dump time), the
 *                   owners and modes of pins and directories, what was skipped
 * The manifest covers it like every member; the engine's restore skips it (a name it does not
 * know) and still verifies it. `bpfcr inspect FILE` reads a state file like any archive.
 *
 * Reading is two passes over one open file: oci/pins.json first (it leads the archive, so this
 * reads a few KiB), to plan the pins before any map is created; then the engine's restore, which
 * verifies every member — oci/pins.json included — against the manifest before the hook pins
 * anything. When no map is needed, verify() checks the archive instead. Both passes read the same
 * inode (state files are only ever replaced by rename).
 *
 * Paths come from annotations (untrusted): state.ts already limited them to plain names under
 * STATE_DIR, and every component is opened here with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) from the state directory, so a symlink planted there cannot redirect a
 * write or a read. Files are written 0600 under a temporary name, fsynced and renamed.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, createWriteStream, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { makeHeader } from '../archive/format.js';
import { openArchiveReader } from '../archive/reader.js';
import { openArchiveWriter, type StreamTarget } from '../archive/writer.js';
import { possibleCpus } from '../maps/cpus.js';
import { processToken, tokenAlive } from '../runtime/process.js';
import {
  AT_FDCWD, O_CREAT, O_DIRECTORY, O_EXCL, O_PATH, O_RDONLY, O_WRONLY, RESOLVE_NO_MAGICLINKS, RESOLVE_STRICT,
  closeQuiet, fdPath, openat2,
} from '../syscall/fs.js';
import { toolVersion } from '../version.js';
import type { Collected, SavedDir, SavedPin, Skipped } from './pins.js';
import { openComponent, statFd, walkBeneath } from './resolve.js';
import { absolutePathProblem, isLegacyStateFile, relativeTo, STATE_DIR, statePathProblem } from './state.js';

/** The OCI hooks' member of a state file. */
export const PINS_MEMBER = 'oci/pins.json';
export const PINS_FORMAT = 'bpfcr-oci-pins';
export const PINS_VERSION = 1;
const MAX_PINS_BYTES = 16 << 20;

/** Content of oci/pins.json. */
export interface PinsRecord {
  format: typeof PINS_FORMAT;
  version: number;
  created: string;
  container: { id: string; pins: string[] };
  pins: SavedPin[];
  dirs: SavedDir[];
  skipped: Skipped[];
  /** the token of the save's marker (FILE.saving, below): tells a finished save from an unfinished one */
  saveToken?: string;
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
    throw new Error(`state directory ${STATE_DIR}: ${(e as Error).message}`, { cause: e });
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
  return new Error(msg.includes(path) || msg.startsWith('refusing') ? msg : `state file ${path}: ${msg}`, { cause: e });
}

// ---------------------------------------------------------------------------------------------
// Writing

/** oci/pins.json for the pins collected from a container's io.bpfcr.pins. */
export function pinsRecord(containerId: string, declared: readonly string[], got: Collected): PinsRecord {
  return {
    format: PINS_FORMAT, version: PINS_VERSION, created: new Date().toISOString(),
    container: { id: containerId, pins: [...declared] },
    pins: got.pins.map(({ path, mapId, mode, uid, gid }) => ({ path, mapId, mode, uid, gid })),
    dirs: got.dirs, skipped: got.skipped,
  };
}

/** "map id 12" in an engine message → "map id 12 (pinned at /sys/fs/bpf/app/x)". */
function namePins(msg: string, byId: Map<number, string[]>): string {
  return msg.replace(/\bmap id (\d+)\b/g, (all, id: string) => {
    const paths = byId.get(Number(id));
    return paths ? `${all} (pinned at ${paths.join(', ')})` : all;
  });
}

export interface Saved {
  /** distinct pinned maps */
  pinned: number;
  /** maps in the archive (pinned ones and their inner maps) */
  maps: number;
  entries: number;
}

/**
 * Dump the collected pins' maps into a state file: the path's directory is opened strictly below
 * STATE_DIR, or `loc` is given (a CRIU image dir, see openDirLoc). An empty `got` writes an
 * archive with no maps (a later start then restores nothing, rather than an older state).
 */
export async function saveState(path: string, record: PinsRecord, loc: StateLoc = stateLoc(path, true)!): Promise<Saved> {
  const byId = new Map<number, string[]>();
  for (const p of record.pins) byId.set(p.mapId, [...(byId.get(p.mapId) ?? []), p.path]);
  const extraMembers = [{ name: PINS_MEMBER, data: Buffer.from(JSON.stringify(record, null, 1) + '\n', 'utf8') }];
  const saved: Saved = { pinned: byId.size, maps: 0, entries: 0 };
  await writeAtomically(loc, path, async (target) => {
    if (byId.size === 0) {
      const w = await openArchiveWriter(target, makeHeader({ tool: { name: 'bpfcr', version: toolVersion() }, possibleCpus: possibleCpus() }), { fsync: false });
      try {
        for (const x of extraMembers) await w.addMember(x.name, x.data);
        await w.finish({ maps: [], btf: [] });
      } catch (e) {
        await w.abort(e).catch(() => undefined);
        throw e;
      }
      return;
    }
    const [{ dump }, { loadConfig }] = await Promise.all([import('../engine/dump.js'), import('../config/config.js')]);
    const config = await loadConfig();
    try {
      const res = await dump({ pids: [], mapIds: [...byId.keys()], output: target, config, extraMembers });
      saved.maps = res.maps.length;
      saved.entries = res.maps.reduce((a, m) => a + m.entries, 0);
    } catch (e) {
      // reported as is (naming the pins), not as a state file problem
      throw Object.assign(new Error(namePins((e as Error).message, byId), { cause: e }), { fromDump: true });
    }
  });
  return saved;
}

/** The directory of a state file kept outside STATE_DIR (a CRIU image dir): trusted path, O_PATH. */
export function openDirLoc(dir: string, name: string): StateLoc {
  return { dirFd: openSync(dir, O_PATH | O_DIRECTORY), name };
}

/**
 * Create loc.name atomically: `write` streams the archive into a 0600 temporary file (gzip for
 * .tar.gz/.tgz), which is fsynced and renamed into place. Closes loc.dirFd.
 */
async function writeAtomically(loc: StateLoc, path: string, write: (target: StreamTarget) => Promise<void>): Promise<void> {
  removeStaleTemps(loc);
  const tmp = `.${loc.name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  let fd: number | undefined;
  let published = false;
  try {
    fd = openat2(loc.dirFd, tmp, O_WRONLY | O_CREAT | O_EXCL, RESOLVE_STRICT, 0o600);
    chmodSync(fdPath(fd), 0o600);
    const stream = createWriteStream('', { fd, autoClose: false });
    await write({ stream, compression: /\.(tar\.gz|tgz)$/.test(path) ? 'gzip' : 'none', label: path, end: true });
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
// The save marker: FILE.saving
//
// A poststop save that fails (a map refused, a full disk, the hook killed at its timeout) leaves
// the state file of the previous save in place, older than what the container had when it
// stopped; a prestart that applied it would roll the application back without anyone knowing.
// So every save first writes FILE.saving (0600, fsynced: it must survive what kills the hook),
// and removes it only once the new FILE is in place; a failure rewrites it with the reason.
// Prestart refuses FILE while FILE.saving is there (checkSaveMarker), unless FILE is the very save
// the marker announced (its oci/pins.json carries the marker's token: the hook died between the
// rename and the unlink). `.saving` never ends a state file name (state.ts), so no annotation can
// name a marker.

export const SAVING_SUFFIX = '.saving';

export interface SaveMarker {
  token: string;
  started: string;
  container: string;
  /** "<pid> <start time>" of the saving hook */
  owner: string;
  status: 'saving' | 'failed';
  failed?: string;
  reason?: string;
}

/** Write a small file atomically in loc's directory (temp, fsync, rename, directory fsync). */
function writeSmall(dirFd: number, name: string, data: string): void {
  const tmp = `.${name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fd = openat2(dirFd, tmp, O_WRONLY | O_CREAT | O_EXCL, RESOLVE_STRICT, 0o600);
  try {
    chmodSync(fdPath(fd), 0o600);
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(fdPath(dirFd, tmp), fdPath(dirFd, name));
  } catch (e) {
    try { unlinkSync(fdPath(dirFd, tmp)); } catch { /* gone */ }
    throw e;
  }
  try {
    const dfd = openSync(fdPath(dirFd), O_RDONLY | O_DIRECTORY);
    try { fsyncSync(dfd); } finally { closeSync(dfd); }
  } catch { /* best effort */ }
}

function withLoc<T>(path: string, create: boolean, fn: (loc: StateLoc) => T): T | undefined {
  let loc: StateLoc | undefined;
  try {
    loc = stateLoc(path, create);
  } catch (e) {
    throw rewordState(e, path);
  }
  if (!loc) return undefined;
  try {
    return fn(loc);
  } catch (e) {
    throw rewordState(e, path);
  } finally {
    closeQuiet(loc.dirFd);
  }
}

/** Announce a save into `path`: FILE.saving; returns its token (for the new oci/pins.json). */
export function beginSave(path: string, containerId: string): string {
  const marker: SaveMarker = {
    token: randomBytes(16).toString('hex'), started: new Date().toISOString(), container: containerId,
    owner: processToken(process.pid), status: 'saving',
  };
  withLoc(path, true, (loc) => writeSmall(loc.dirFd, loc.name + SAVING_SUFFIX, JSON.stringify(marker) + '\n'));
  return marker.token;
}

/** The save announced by `token` failed: FILE.saving says why (one line), for prestart to report. */
export function failSave(path: string, token: string, reason: string): void {
  const m = readSaveMarker(path);
  if (!m || m.token !== token) return; // another save took over
  const failed: SaveMarker = { ...m, status: 'failed', failed: new Date().toISOString(), reason: reason.replace(/\s+/g, ' ').slice(0, 2000) };
  withLoc(path, false, (loc) => writeSmall(loc.dirFd, loc.name + SAVING_SUFFIX, JSON.stringify(failed) + '\n'));
}

/** The save announced by `token` is in place: remove FILE.saving (unless another save owns it now). */
export function endSave(path: string, token: string): void {
  const m = readSaveMarker(path);
  if (!m || m.token !== token) return;
  removeSaveMarker(path);
}

function removeSaveMarker(path: string): void {
  withLoc(path, false, (loc) => {
    try { unlinkSync(fdPath(loc.dirFd, loc.name + SAVING_SUFFIX)); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
  });
}

/** FILE.saving, if there is one. A marker that cannot be read counts as a failed save. */
export function readSaveMarker(path: string): SaveMarker | undefined {
  return withLoc(path, false, (loc) => {
    let fd: number;
    try {
      fd = openComponent(loc.dirFd, loc.name + SAVING_SUFFIX, { container: path, host: path }, O_RDONLY);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      const text = readFileSync(fdPath(fd), 'utf8').slice(0, 1 << 16);
      const o = JSON.parse(text) as Partial<SaveMarker>;
      if (typeof o.token !== 'string' || (o.status !== 'saving' && o.status !== 'failed')) throw new Error('malformed');
      return { token: o.token, started: String(o.started ?? '?'), container: String(o.container ?? '?'), owner: String(o.owner ?? ''), status: o.status, ...(o.failed ? { failed: String(o.failed) } : {}), ...(o.reason ? { reason: String(o.reason) } : {}) };
    } catch {
      return { token: '', started: '?', container: '?', owner: '', status: 'failed', reason: `${path}${SAVING_SUFFIX} cannot be read` };
    } finally {
      closeQuiet(fd);
    }
  });
}

/**
 * Before prestart restores from `path`: throws (one line) while FILE.saving says the last save into
 * it failed or never finished; `record` is FILE's oci/pins.json when FILE exists. A marker whose
 * save did finish (FILE carries its token) is removed.
 */
export function checkSaveMarker(path: string, record: PinsRecord | undefined): void {
  const m = readSaveMarker(path);
  if (!m) return;
  if (record?.saveToken !== undefined && record.saveToken === m.token) {
    removeSaveMarker(path); // the hook died between putting FILE in place and removing the marker
    return;
  }
  const what = m.status === 'failed'
    ? `the last save into ${path} failed (${m.failed ?? m.started}: ${m.reason ?? 'no reason recorded'})`
    : tokenAlive(m.owner)
      ? `a save into ${path} is in progress (pid ${m.owner.split(' ')[0]}, since ${m.started})`
      : `the save into ${path} that started at ${m.started} never finished (its hook was killed)`;
  const older = record ? `${path} holds an older state (saved ${record.created})` : `there is no older state in ${path}`;
  const fix = record
    ? `to start from that older state anyway remove ${path}${SAVING_SUFFIX}; to start without saved state move ${path} and ${path}${SAVING_SUFFIX} away`
    : `to start without saved state remove ${path}${SAVING_SUFFIX}`;
  throw new Error(`refusing to restore: ${what}, so ${older} than the container had when it stopped; ${fix}`);
}

/**
 * Temporary files of earlier saves of loc.name whose writer is gone (a hook killed mid-save): they
 * are never read, but they are the map contents, and they would pile up.
 */
function removeStaleTemps(loc: StateLoc): void {
  const prefix = `.${loc.name}.tmp-`;
  let names: string[];
  try { names = readdirSync(fdPath(loc.dirFd)); } catch { return; }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const pid = Number(n.slice(prefix.length).split('-')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || pidAlive(pid)) continue;
    try { unlinkSync(fdPath(loc.dirFd, n)); } catch { /* gone meanwhile */ }
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

export interface OpenedState {
  /** oci/pins.json, read and validated; verified by restore() or verify() */
  record: PinsRecord;
  /** read-only fd of the state file; `archivePath` is its /proc/self/fd path, for the engine */
  fd: number;
  archivePath: string;
  /** Verify the whole archive against its manifest (when no restore() reads it). */
  verify(): Promise<void>;
  close(): void;
}

/** Open a state file and read its oci/pins.json; undefined when it does not exist. */
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
    const archivePath = fdPath(fd);
    const record = await readPinsRecord(archivePath, path);
    const f = fd;
    fd = undefined;
    return {
      record, fd: f, archivePath, close: () => closeQuiet(f),
      verify: async () => {
        const r = await openArchiveReader(archivePath, { label: path, known: () => false });
        try { await r.finish(); } finally { await r.close(); }
      },
    };
  } catch (e) {
    throw rewordState(e, path);
  } finally {
    closeQuiet(fd);
    closeQuiet(loc.dirFd);
  }
}

async function readPinsRecord(archivePath: string, path: string): Promise<PinsRecord> {
  let reader: Awaited<ReturnType<typeof openArchiveReader>> | undefined;
  try {
    reader = await openArchiveReader(archivePath, { label: path, known: (n) => n === PINS_MEMBER, maxMemberSize: MAX_PINS_BYTES });
    for await (const m of reader.members()) {
      let parsed: unknown;
      try {
        parsed = JSON.parse((await m.read()).toString('utf8'));
      } catch (e) {
        throw new Error(`${PINS_MEMBER}: not valid JSON: ${(e as Error).message.split('\n')[0]}`);
      }
      return validatePinsRecord(parsed);
    }
    throw new Error(`a bpfcr archive without ${PINS_MEMBER}: not a state file of the OCI hooks`);
  } catch (e) {
    if (isLegacyStateFile(e)) {
      throw new Error(`state file ${path} is in the format of an older bpfcr (bpfcr-oci.json, then an archive under bpfcr/), which this bpfcr no longer reads: move it away to start without it (its maps: bpfcr restore --prefix bpfcr/ ${path} --pin-dir DIR)`);
    }
    const msg = (e as Error).message.replace(/\s+/g, ' ');
    throw new Error(msg.includes(path) ? msg : `state file ${path}: ${msg}`, { cause: e });
  } finally {
    await reader?.close();
  }
}

// ---------------------------------------------------------------------------------------------
// oci/pins.json

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

export function validatePinsRecord(raw: unknown): PinsRecord {
  const bad = (msg: string): never => { throw new Error(`${PINS_MEMBER}: ${msg}`); };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad('not a JSON object');
  const o = raw as Record<string, unknown>;
  if (o['format'] !== PINS_FORMAT) bad(`format is ${JSON.stringify(o['format'])}, expected ${PINS_FORMAT}`);
  if (!isInt(o['version'], 1, Number.MAX_SAFE_INTEGER)) bad('version is not a positive integer');
  if ((o['version'] as number) > PINS_VERSION) bad(`version ${String(o['version'])} is newer than this bpfcr understands (${PINS_VERSION}); upgrade bpfcr`);
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
  const c = (o['container'] ?? {}) as Record<string, unknown>;
  if (o['saveToken'] !== undefined && typeof o['saveToken'] !== 'string') bad('saveToken is not a string');
  return {
    format: PINS_FORMAT, version: o['version'] as number, created: String(o['created'] ?? ''),
    container: { id: String(c['id'] ?? ''), pins: Array.isArray(c['pins']) ? (c['pins'] as unknown[]).map(String) : [] },
    pins, dirs, skipped,
    ...(typeof o['saveToken'] === 'string' ? { saveToken: o['saveToken'] } : {}),
  };
}
