/**
 * cgroup v2 paths of processes, as the host sees them. BPF attaches to and keys storage by cgroup v2
 * only: its mount is found in mountinfo (/sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on
 * a hybrid one, as here).
 */
import { closeSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { openat2 } from '../syscall/fs.js';

/** Where the cgroup2 hierarchy is mounted in this (the host's) mount namespace. */
export function cgroup2Root(): string {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    // id parent major:minor root mountpoint options ... - fstype source superoptions
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (dash > 0 && f[dash + 1] === 'cgroup2' && f[3] === '/') return f[4]!;
  }
  throw new Error('no cgroup2 hierarchy is mounted on this host (BPF cgroup programs attach to cgroup v2 only)');
}

/** The cgroup v2 path of `pid` ("/libpod_parent/libpod-…"), as the host sees it. */
export function cgroupOf(pid: number | 'self'): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw new Error(`process ${pid} has no cgroup v2 path in /proc/${pid}/cgroup`);
  return line.slice(3);
}

/** Cgroups listed below a path at most: enough for any container, bounded for a hostile one. */
export const MAX_CGROUPS = 10_000;

/**
 * The cgroups at and below `path` (a cgroup v2 path, "/" for the root), breadth first, as paths
 * relative to it ('' first), at most MAX_CGROUPS. Cgroups removed meanwhile are skipped.
 */
export function cgroupsBelow(path: string): string[] {
  const root = join(cgroup2Root(), path);
  const out: string[] = [];
  const queue = [''];
  while (queue.length && out.length < MAX_CGROUPS) {
    const rel = queue.shift()!;
    let entries;
    try { entries = readdirSync(join(root, rel), { withFileTypes: true }); } catch { continue; }
    out.push(rel);
    for (const e of entries) if (e.isDirectory()) queue.push(join(rel, e.name));
  }
  return out;
}

/** The id of a cgroup (the inode of its directory, as BPF reports cgroup ids), or undefined when gone. */
export function cgroupId(path: string): bigint | undefined {
  try { return statSync(join(cgroup2Root(), path), { bigint: true }).ino; } catch { return undefined; }
}

/**
 * Cgroup path `rel` (from a checkpoint: "/", "/sub", "sub/x") below cgroup path `base`; throws when
 * it would climb out of `base` ("..").
 */
export function cgroupBelow(base: string, rel: string): string {
  if (rel.split('/').includes('..')) throw new Error(`cgroup path ${JSON.stringify(rel)} climbs out of the container's cgroup`);
  return join(base, rel);
}

/**
 * An O_RDONLY fd of cgroup `path` (a cgroup v2 path that may come from a checkpoint): resolved
 * beneath the cgroup2 root, no symlinks, no "..". Throws naming the path when it does not exist.
 */
export function openCgroup(path: string): { fd: number; path: string } {
  const rel = relative('/', join('/', path));
  if (rel.split(sep).includes('..')) throw new Error(`cgroup path ${JSON.stringify(path)} escapes the cgroup hierarchy`);
  const RESOLVE_NO_SYMLINKS = 0x04;
  const RESOLVE_BENEATH = 0x08;
  const O_DIRECTORY = 0o200000;
  const dirfd = openSync(cgroup2Root(), 'r');
  try {
    return { fd: openat2(dirfd, rel || '.', O_DIRECTORY, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), path: join('/', rel) };
  } catch (e) {
    throw new Error(`cgroup ${join('/', rel)} does not exist on this host (${(e as Error).message})`);
  } finally {
    closeSync(dirfd);
  }
}
