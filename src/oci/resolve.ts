/**
 * Safe resolution of container pin paths on the host side of their bind mount.
 *
 * Trust model: the mount's host `source` was chosen by whoever started the container and is
 * resolved like runc resolved it, except that no symlink lying on a bpffs is followed (a bpffs
 * the container can write to may hold planted symlinks). Everything below the source is
 * container-writable and is walked one component at a time with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV); what is finally handed to a
 * path-based syscall is a /proc/self/fd/N path of the fd that was opened.
 */
import { mkdirSync, statSync, statfsSync, type Stats } from 'node:fs';
import { BPF_FS_MAGIC } from '../engine/bpffs.js';
import {
  AT_FDCWD, EEXIST, ELOOP, ENOENT, ENOTDIR, EXDEV, FsError, O_NOFOLLOW, O_PATH, RESOLVE_NO_MAGICLINKS, RESOLVE_STRICT,
  closeQuiet, errnoOf, fdPath, openat2,
} from '../syscall/fs.js';
import type { HostLocation } from './mounts.js';

export class UnsafePathError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'UnsafePathError';
  }
}

export function isBpffsFd(fd: number): boolean {
  try {
    return statfsSync(fdPath(fd)).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

export function statFd(fd: number): Stats {
  return statSync(fdPath(fd));
}

/**
 * O_PATH fd of a host path. Symlinks are followed (as the runtime did when it mounted it) except
 * one inside a bpffs directory, which is refused: a bpffs may be container-writable.
 */
export function openHostPath(path: string, what: string): number {
  if (!path.startsWith('/')) throw new Error(`${what}: host path ${path} is not absolute`);
  const parts = path.split('/').filter((c) => c !== '' && c !== '.');
  let fd = openat2(AT_FDCWD, '/', O_PATH, RESOLVE_NO_MAGICLINKS);
  let sofar = '';
  try {
    for (const c of parts) {
      sofar += '/' + c;
      if (c === '..') {
        // Lexical ".." would be ambiguous after a symlink; the runtime's source is normally clean.
        throw new Error(`${what}: host path ${path} has a ".." component`);
      }
      const onBpffs = isBpffsFd(fd);
      let next: number;
      try {
        next = openat2(fd, c, O_PATH | O_NOFOLLOW, RESOLVE_NO_MAGICLINKS);
      } catch (e) {
        if (errnoOf(e) === ENOENT) throw new Error(`${what}: host path ${sofar} does not exist`);
        throw new Error(`${what}: host path ${sofar}: ${(e as Error).message}`, { cause: e });
      }
      if (statFd(next).isSymbolicLink()) {
        closeQuiet(next);
        if (onBpffs) throw new UnsafePathError(`refusing ${what}: host path ${sofar} is a symlink inside a bpffs (bpfcr never follows symlinks there)`);
        try {
          next = openat2(fd, c, O_PATH, RESOLVE_NO_MAGICLINKS);
        } catch (e) {
          throw new Error(`${what}: host path ${sofar}: ${(e as Error).message}`, { cause: e });
        }
      }
      closeQuiet(fd);
      fd = next;
    }
    return fd;
  } catch (e) {
    closeQuiet(fd);
    throw e;
  }
}

/** Names for messages: the container path and its host counterpart. */
export interface Where {
  container: string;
  host: string;
}

export function describeWhere(w: Where): string {
  return `${w.container} (host ${w.host})`;
}

/** Turn an openat2 failure on one component into the message operators see. */
function componentError(e: unknown, w: Where): Error {
  const errno = errnoOf(e);
  if (errno === ELOOP) return new UnsafePathError(`refusing ${describeWhere(w)}: it is a symlink; bpfcr never follows symlinks in a container-writable bpffs`);
  if (errno === EXDEV) return new UnsafePathError(`refusing ${describeWhere(w)}: it is another mount (or escapes its bind mount); bpfcr stays on the bind-mounted bpffs`);
  if (errno === ENOTDIR) return new Error(`${describeWhere(w)}: a component on the way is not a directory`);
  if (errno === ENOENT) return Object.assign(new Error(`${describeWhere(w)}: does not exist`), { code: 'ENOENT' });
  return new Error(`${describeWhere(w)}: ${e instanceof FsError ? e.code : (e as Error).message}`, { cause: e });
}

/** One component below dirFd, strictly (no symlinks, no magic links, no mount crossing). */
export function openComponent(dirFd: number, name: string, w: Where, flags = O_PATH): number {
  if (name === '' || name === '.' || name === '..' || name.includes('/')) throw new Error(`${describeWhere(w)}: bad path component ${JSON.stringify(name)}`);
  let fd: number;
  try {
    // No O_NOFOLLOW: with O_PATH|O_NOFOLLOW openat2 would hand back an fd of the symlink itself;
    // without it, RESOLVE_NO_SYMLINKS makes a symlink in the last component fail with ELOOP too.
    fd = openat2(dirFd, name, flags, RESOLVE_STRICT);
  } catch (e) {
    throw componentError(e, w);
  }
  return fd;
}

/** A bind mount source opened for walking: O_PATH fd of a directory or file on a bpffs. */
export interface OpenedMount {
  loc: HostLocation;
  fd: number;
}

/** Open the host source of a container path's bind mount; refuse one that is not on a bpffs. */
export function openMountSource(loc: HostLocation): OpenedMount {
  const what = `pin path ${loc.containerPath}`;
  const fd = openHostPath(loc.source, `${what} (bind mount source)`);
  if (!isBpffsFd(fd)) {
    closeQuiet(fd);
    throw new Error(`${what}: its bind mount source ${loc.source} (mounted at ${loc.mount.destination}) is not on a bpffs; pins live on a bpffs (mount -t bpf bpf DIR)`);
  }
  return { loc, fd };
}

export interface WalkOptions {
  /** create missing directories (mode; the caller applies owners/modes it recorded) */
  createDirs?: boolean;
  dirMode?: number;
  /** called with each directory created, an O_PATH fd of it and of its parent (both closed by
   *  the walk afterwards: dup what you keep) and its name */
  onCreate?: (w: Where, fd: number, parentFd: number, name: string) => void;
}

/**
 * Walk `rel` (components below the mount source) and return an O_PATH fd of the result. Every
 * component is opened with openat2(RESOLVE_STRICT) from its parent's fd. With createDirs, missing
 * components are created as directories (mkdir through /proc/self/fd/<parent>/<name>: the kernel
 * creates exactly there and never follows a symlink in the last component).
 */
export function walkBeneath(m: OpenedMount, rel: string[], opts: WalkOptions = {}): number {
  const dest = m.loc.mount.destination;
  let fd = openat2(m.fd, '.', O_PATH, RESOLVE_STRICT);
  try {
    for (let i = 0; i < rel.length; i++) {
      const name = rel[i]!;
      const sub = rel.slice(0, i + 1).join('/');
      const w: Where = { container: `${dest === '/' ? '' : dest}/${sub}`, host: `${m.loc.source.replace(/\/+$/, '')}/${sub}` };
      let next: number;
      try {
        next = openComponent(fd, name, w);
      } catch (e) {
        if ((e as { code?: string }).code !== 'ENOENT' || !opts.createDirs) throw e;
        let created = false;
        try {
          mkdirSync(fdPath(fd, name), { mode: opts.dirMode ?? 0o700 });
          created = true;
        } catch (e2) {
          if (errnoOf(e2) !== EEXIST) throw new Error(`${describeWhere(w)}: cannot create directory: ${(e2 as NodeJS.ErrnoException).code ?? String(e2)}`);
        }
        next = openComponent(fd, name, w);
        if (created) {
          try {
            opts.onCreate?.(w, next, fd, name);
          } catch (e3) {
            closeQuiet(next);
            throw e3;
          }
        }
      }
      closeQuiet(fd);
      fd = next;
      if (i < rel.length - 1 && !statFd(fd).isDirectory()) throw new Error(`${describeWhere(w)}: not a directory`);
    }
    return fd;
  } catch (e) {
    closeQuiet(fd);
    throw e;
  }
}

/** A second O_PATH fd of the same directory. */
export function dupPath(fd: number): number {
  return openat2(fd, '.', O_PATH, RESOLVE_STRICT);
}

/** Where of a path below an opened mount. */
export function whereOf(m: OpenedMount, rel: string[]): Where {
  const dest = m.loc.mount.destination;
  const sub = rel.join('/');
  if (!sub) return { container: dest, host: m.loc.source };
  return { container: `${dest === '/' ? '' : dest}/${sub}`, host: `${m.loc.source.replace(/\/+$/, '')}/${sub}` };
}
