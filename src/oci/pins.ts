/**
 * bpfcr's one pinner (pinObjects, and PinDir for a host directory), and the pinned maps of a
 * container: found through its bind mounts (poststop) and pinned back at their original container
 * paths (prestart). All path work goes through resolve.ts: strict openat2 walks, then
 * /proc/self/fd paths for the bpf(2) and fs calls. `bpfcr restore --pin-dir`, the OCI hooks and
 * the CRIU copies all pin through here; the engine only hands out fds.
 */
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, readlinkSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { bpfKindOfLink } from '../maps/fdinfo.js';
import { closeFd, mapInfo, objGet, objPin } from '../syscall/bpf.js';
import { ENOENT, isBpfErrno } from '../syscall/errors.js';
import { closeQuiet, EEXIST, fdPath, O_PATH } from '../syscall/fs.js';
import { hostLocation, isReadOnly, type OciMount } from './mounts.js';
import {
  describeWhere, dupPath, isBpffsFd, openComponent, openHostPath, openMountSource, statFd, walkBeneath, whereOf,
  type OpenedMount, type Where,
} from './resolve.js';
import { isUnder } from './state.js';

export interface Attrs { mode: number; uid: number; gid: number }
export interface SavedPin extends Attrs { path: string; mapId: number }
export interface SavedDir extends Attrs { path: string }
export interface Skipped { path: string; why: string }

export interface CollectedPin extends SavedPin {
  /** map fd, held until the dump is written (closeCollected) */
  fd: number;
  host: string;
}

export interface Collected {
  pins: CollectedPin[];
  dirs: SavedDir[];
  skipped: Skipped[];
  /** annotated roots that do not exist (nothing saved for them) */
  missing: string[];
}

/** Bounds on a directory walk of a container-writable tree. */
export const MAX_DEPTH = 32;
export const MAX_OBJECTS = 100_000;

function attrsOf(fd: number): Attrs {
  const st = statFd(fd);
  return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
}

/** Open mount sources, one per host source path, closed together. */
class MountCache {
  readonly #open = new Map<string, OpenedMount>();
  constructor(private readonly mounts: readonly OciMount[]) {}
  locate(containerPath: string): { m: OpenedMount; rel: string[] } {
    const loc = hostLocation(containerPath, this.mounts);
    const key = `${loc.mount.destination}\0${loc.source}`;
    let m = this.#open.get(key);
    if (!m) {
      m = openMountSource(loc);
      this.#open.set(key, m);
    }
    return { m, rel: loc.rel ? loc.rel.split('/') : [] };
  }
  close(): void {
    for (const m of this.#open.values()) closeQuiet(m.fd);
    this.#open.clear();
  }
}

/**
 * Every pinned map under the annotated roots (a root may be a directory of pins, walked
 * recursively, or one pin). Symlinks anywhere are refused (UnsafePathError naming the path);
 * pinned programs and links are skipped (they cannot be carried). Throws with nothing held.
 */
export function collectPins(roots: readonly string[], mounts: readonly OciMount[]): Collected {
  const out: Collected = { pins: [], dirs: [], skipped: [], missing: [] };
  const seen = new Set<string>();
  const cache = new MountCache(mounts);
  let objects = 0;

  const visit = (fd: number, w: Where, depth: number): void => {
    if (seen.has(w.container)) return;
    seen.add(w.container);
    if (++objects > MAX_OBJECTS) throw new Error(`more than ${MAX_OBJECTS} entries under ${roots.join(', ')}: refusing to walk further`);
    const st = statFd(fd);
    if (st.isDirectory()) {
      if (depth > MAX_DEPTH) throw new Error(`${describeWhere(w)}: directories nested deeper than ${MAX_DEPTH}`);
      out.dirs.push({ path: w.container, ...attrsOf(fd) });
      let names: string[];
      try {
        names = readdirSync(fdPath(fd)).sort();
      } catch (e) {
        throw new Error(`${describeWhere(w)}: cannot list: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
      for (const name of names) {
        const cw: Where = { container: `${w.container}/${name}`, host: `${w.host}/${name}` };
        const child = openComponent(fd, name, cw);
        try {
          visit(child, cw, depth + 1);
        } finally {
          closeQuiet(child);
        }
      }
      return;
    }
    if (!st.isFile()) {
      out.skipped.push({ path: w.container, why: 'not a BPF object' });
      return;
    }
    let obj: number;
    try {
      obj = objGet(fdPath(fd));
    } catch (e) {
      // a bpffs root holds files the kernel made that are no pinned object (maps.debug and
      // progs.debug, bpf_preload's iterators): BPF_OBJ_GET gives ENOENT for them
      if (isBpfErrno(e, ENOENT)) {
        out.skipped.push({ path: w.container, why: 'not a BPF object' });
        return;
      }
      throw new Error(`${describeWhere(w)}: cannot open the pinned object: ${(e as Error).message}`, { cause: e });
    }
    let kind: string | undefined;
    try { kind = bpfKindOfLink(readlinkSync(fdPath(obj))); } catch { kind = undefined; }
    if (kind !== 'map') {
      closeFd(obj);
      out.skipped.push({ path: w.container, why: `a pinned ${kind ?? 'object'} (only maps are carried)` });
      return;
    }
    try {
      out.pins.push({ path: w.container, host: w.host, mapId: mapInfo(obj).id, ...attrsOf(fd), fd: obj });
    } catch (e) {
      closeFd(obj);
      throw e;
    }
  };

  try {
    for (const root of roots) {
      const { m, rel } = cache.locate(root);
      let fd: number;
      try {
        fd = walkBeneath(m, rel);
      } catch (e) {
        if ((e as { code?: string }).code === 'ENOENT') {
          out.missing.push(root);
          continue;
        }
        throw e;
      }
      try {
        visit(fd, whereOf(m, rel), 0);
      } finally {
        closeQuiet(fd);
      }
    }
    return out;
  } catch (e) {
    closeCollected(out);
    throw e;
  } finally {
    cache.close();
  }
}

export function closeCollected(c: Collected): void {
  for (const p of c.pins) closeFd(p.fd);
}

// ---------------------------------------------------------------------------------------------
// Restore side

/** 'read-only': behind a bind mount the container has read-only: left as it is (leaveReadOnly). */
export type PinOutcome = 'created' | 'replaced' | 'kept' | 'read-only';

export interface PlannedPin {
  pin: SavedPin;
  where: Where;
  exists: boolean;
  /** the bind mount that decides (the last covering the path) is read-only to the container */
  readOnly: boolean;
}

export interface PinResult { path: string; host: string; outcome: PinOutcome; mapId?: number }

/**
 * Check every saved pin before anything is created: it must lie under one of the container's
 * declared pin roots, below a bind mount of a host bpffs directory, reachable without symlinks;
 * an existing object at its place must be a pinned object (not a directory).
 */
export function planPins(saved: readonly SavedPin[], declaredRoots: readonly string[], mounts: readonly OciMount[], stateLabel: string): PlannedPin[] {
  const cache = new MountCache(mounts);
  try {
    return saved.map((pin) => {
      if (!declaredRoots.some((r) => isUnder(pin.path, r))) {
        throw new Error(`${stateLabel} holds a pin at ${pin.path}, which is not under this container's io.bpfcr.pins (${declaredRoots.join(', ')}); add it to io.bpfcr.pins, or move ${stateLabel} away to start without it`);
      }
      const { m, rel } = cache.locate(pin.path);
      const where = whereOf(m, rel);
      if (rel.length === 0) {
        throw new Error(`pin path ${pin.path} is itself the bind mount (a single pinned file); bind-mount its directory instead so a new pin can be created there`);
      }
      let exists = false;
      let parent: number | undefined;
      try {
        parent = walkBeneath(m, rel.slice(0, -1));
      } catch (e) {
        if ((e as { code?: string }).code !== 'ENOENT') throw e;
      }
      if (parent !== undefined) {
        try {
          const fd = openComponent(parent, rel[rel.length - 1]!, where);
          try {
            const st = statFd(fd);
            if (st.isDirectory()) throw new Error(`${describeWhere(where)}: a directory is in the way of the saved pin`);
            exists = true;
          } finally {
            closeQuiet(fd);
          }
        } catch (e) {
          if ((e as { code?: string }).code !== 'ENOENT') throw e;
        } finally {
          closeQuiet(parent);
        }
      }
      return { pin, where, exists, readOnly: isReadOnly(m.loc.mount) };
    });
  } finally {
    cache.close();
  }
}

/**
 * Pins behind a read-only bind mount are left as they are, present or missing: the hooks write
 * only where the container itself could (docs/oci-hooks.md "Security rules"), and a container with
 * a read-only view of host pins must not have them replaced or planted by its own state file or
 * checkpoint. Returns the others, the results for these and the one line that says so.
 */
export function leaveReadOnly(plan: readonly PlannedPin[]): { writable: PlannedPin[]; left: PinResult[]; message?: string } {
  const ro = plan.filter((p) => p.readOnly);
  const left = ro.map((p): PinResult => ({ path: p.pin.path, host: p.where.host, outcome: 'read-only' }));
  return {
    writable: plan.filter((p) => !p.readOnly),
    left,
    ...(ro.length ? { message: `left ${ro.length} pin(s) as they are (${ro.filter((p) => p.exists).length} present, ${ro.filter((p) => !p.exists).length} missing): behind a bind mount the container has read-only, where bpfcr does not write either: ${ro.map((p) => p.pin.path).join(', ')}` } : {}),
  };
}

function applyAttrs(fd: number, a: Attrs, w: Where): void {
  try {
    chownSync(fdPath(fd), a.uid, a.gid);
    chmodSync(fdPath(fd), a.mode);
  } catch (e) {
    throw new Error(`${labelOf(w)}: cannot set owner ${a.uid}:${a.gid} mode ${a.mode.toString(8)}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

/** A host path names itself; a container path names its host counterpart too. */
function labelOf(w: Where): string {
  return w.container === w.host ? w.host : describeWhere(w);
}

// ---------------------------------------------------------------------------------------------
// The pinner

/** One object to pin as `name` in the directory `dirFd` (an O_PATH fd opened by resolve.ts). */
export interface PinTarget {
  fd: number;
  dirFd: number;
  name: string;
  /** its final path, for messages */
  where: Where;
  /** owner and mode, set before the pin appears under its final name (replace mode) */
  attrs?: Attrs;
}

/**
 * Pin every target, all or nothing; bpf(2) and the fs calls get /proc/self/fd/<dir>/<name> paths.
 * - `replace`: two phases. Every object is first pinned under a temporary name next to its final
 *   place (bpffs names cannot hold a dot, hence no dotfile), with its owner and mode; only when all
 *   of them are in place are they renamed over the final names (rename replaces an existing pin
 *   atomically, and never follows a symlink planted there). A failure in the first phase removes
 *   every temporary pin.
 * - `exclusive`: pinned at the final names directly; an existing name fails the call (OBJ_PIN
 *   creates, never replaces: EEXIST, reported with code 'EEXIST'), and every pin it made is removed.
 */
export function pinObjects(targets: readonly PinTarget[], mode: 'replace' | 'exclusive'): void {
  const staged: { t: PinTarget; at: string }[] = [];
  let ok = false;
  try {
    targets.forEach((t, i) => {
      const at = mode === 'replace' ? `bpfcr_new_${process.pid}_${i}` : t.name;
      try {
        objPin(t.fd, fdPath(t.dirFd, at));
      } catch (e) {
        if (isBpfErrno(e, EEXIST)) throw Object.assign(new Error(`pin path ${labelOf(t.where)} already exists`), { code: 'EEXIST' });
        throw new Error(`${labelOf(t.where)}: cannot pin: ${(e as Error).message}`, { cause: e });
      }
      staged.push({ t, at });
      if (!t.attrs) return;
      const pfd = openComponent(t.dirFd, at, t.where, O_PATH);
      try {
        applyAttrs(pfd, t.attrs, t.where);
      } finally {
        closeQuiet(pfd);
      }
    });
    if (mode === 'replace') {
      for (const s of staged) {
        try {
          renameSync(fdPath(s.t.dirFd, s.at), fdPath(s.t.dirFd, s.t.name));
        } catch (e) {
          throw new Error(`${labelOf(s.t.where)}: cannot put the restored pin in place: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
        }
      }
    }
    ok = true;
  } finally {
    // a rename that already happened took its temporary name away: that pin stays in place
    if (!ok) for (const s of staged) unpinQuiet(s.t.dirFd, s.at);
  }
}

function unpinQuiet(dirFd: number, name: string): void {
  try { unlinkSync(fdPath(dirFd, name)); } catch { /* gone (renamed in place), or best effort */ }
}

/**
 * A host directory on a bpffs to pin in: `bpfcr restore --pin-dir DIR`, the CRIU copies. The path
 * is the operator's (or bpfcr's own): it is opened once as the runtime would resolve a bind mount
 * source (no symlink followed inside a bpffs) and every pin goes through that fd.
 */
export class PinDir {
  #fd: number;
  readonly #createdTop: string | undefined;
  readonly #pinned: string[] = [];

  private constructor(readonly path: string, fd: number, createdTop: string | undefined) {
    this.#fd = fd;
    this.#createdTop = createdTop;
  }

  /** Open DIR (with `create`, creating it and missing parents, mode 0700); refuse one not on a bpffs. */
  static open(path: string, opts: { create?: boolean } = {}): PinDir {
    const createdTop = opts.create ? mkdirMissing(path) : undefined;
    let fd: number | undefined;
    try {
      fd = openHostPath(path, `pin dir ${path}`);
      if (!statFd(fd).isDirectory()) throw new Error(`pin dir ${path}: exists and is not a directory`);
      if (!isBpffsFd(fd)) throw new Error(`pin dir ${path}: not on a bpffs (mount one with: mount -t bpf bpf /sys/fs/bpf)`);
      return new PinDir(path, fd, createdTop);
    } catch (e) {
      closeQuiet(fd);
      if (createdTop) removeCreated(path, createdTop);
      throw e;
    }
  }

  /** Pin each object as DIR/<name>, all or nothing, never over an existing name; returns the paths. */
  pin(items: readonly { fd: number; name: string }[]): string[] {
    const targets = items.map(({ fd, name }): PinTarget => {
      const path = join(this.path, name);
      return { fd, dirFd: this.#fd, name, where: { container: path, host: path } };
    });
    pinObjects(targets, 'exclusive');
    this.#pinned.push(...items.map((i) => i.name));
    return targets.map((t) => t.where.host);
  }

  /** Undo everything: unpin what pin() made, remove the directories open() created. Closes. */
  discard(): void {
    for (const name of this.#pinned.splice(0)) unpinQuiet(this.#fd, name);
    this.close();
    if (this.#createdTop) removeCreated(this.path, this.#createdTop);
  }

  /** Close the directory fd (the pins stay). Idempotent. */
  close(): void {
    closeQuiet(this.#fd);
    this.#fd = -1;
  }
}

/** mkdir -p DIR (mode 0700); returns the topmost directory created, so a failure can remove exactly that. */
function mkdirMissing(dir: string): string | undefined {
  try {
    lstatSync(dir);
    return undefined;
  } catch { /* missing */ }
  // Find the first missing ancestor so we know what to remove on failure.
  let top = dir;
  for (let p = dirname(dir); p !== top; top = p, p = dirname(p)) {
    try { lstatSync(p); break; } catch { /* missing */ }
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return top;
}

/** rmdir from `dir` up to and including `top` (only empty dirs go). */
function removeCreated(dir: string, top: string): void {
  for (let p = dir; ; p = dirname(p)) {
    try { rmdirSync(p); } catch { return; }
    if (p === top || p === dirname(p)) return;
  }
}

/**
 * Pin restored maps at their planned places, in one pinObjects call (replace mode: an existing pin
 * is replaced atomically). Missing directories on the way are created with their saved owner and
 * mode; a failure removes every temporary pin and created directory.
 */
export function pinAll(plan: readonly PlannedPin[], fdByOldId: ReadonlyMap<number, number>, dirs: readonly SavedDir[], mounts: readonly OciMount[]): PinResult[] {
  const dirAttrs = new Map(dirs.map((d) => [d.path, d] as const));
  const cache = new MountCache(mounts);
  const createdDirs: { parentFd: number; name: string }[] = [];
  const parents: number[] = [];
  let ok = false;
  try {
    const targets = plan.map((item): PinTarget => {
      const fd = fdByOldId.get(item.pin.mapId);
      if (fd === undefined) throw new Error(`the state file is inconsistent: its pin ${item.pin.path} names map id ${item.pin.mapId}, which its archive does not hold`);
      const { m, rel } = cache.locate(item.pin.path);
      const parentFd = walkBeneath(m, rel.slice(0, -1), {
        createDirs: true,
        onCreate: (w, dfd, pfd, name) => {
          // parent kept for a possible rollback rmdir
          createdDirs.push({ parentFd: dupPath(pfd), name });
          const a = dirAttrs.get(w.container);
          if (a) applyAttrs(dfd, a, w);
        },
      });
      parents.push(parentFd);
      return { fd, dirFd: parentFd, name: rel[rel.length - 1]!, where: item.where, attrs: item.pin };
    });
    pinObjects(targets, 'replace');
    ok = true;
    return plan.map((item) => ({ path: item.pin.path, host: item.where.host, outcome: item.exists ? 'replaced' : 'created' }));
  } finally {
    if (!ok) {
      for (const d of createdDirs.reverse()) {
        try { rmdirSync(fdPath(d.parentFd, d.name)); } catch { /* not empty or gone */ }
      }
    }
    for (const d of createdDirs) closeQuiet(d.parentFd);
    for (const p of parents) closeQuiet(p);
    cache.close();
  }
}
