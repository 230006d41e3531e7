/**
 * Link targets in terms that survive a migration: a cgroup by its path relative to the container's
 * cgroup (ids and host paths differ on another host), an interface by its name in the container's
 * network namespace (ifindexes differ). At dump the kernel reports a cgroup id and an ifindex; at
 * restore the new container's cgroup is the one runc put CRIU in (runc moves `criu swrk` into the
 * container's cgroups before it sends the restore request, so the action script inherits them).
 *
 * BPF attaches to cgroup v2 only: the cgroup2 mount is found in mountinfo (/sys/fs/cgroup on a
 * unified host, /sys/fs/cgroup/unified on a hybrid one).
 */
import { closeSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { libc } from '../syscall/libc.js';
import { openat2 } from '../syscall/fs.js';
import type { CgroupPlace, LinkTargetT } from './info.js';

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

/** Cgroups below `dir` searched for an id: enough for any container, bounded for a hostile one. */
const MAX_WALK = 10_000;

/** The path (relative to `root`, '' for `root` itself) of the cgroup whose id (inode) is `id`, searched below `root`. */
function findCgroup(root: string, id: bigint): string | undefined {
  const queue = [''];
  for (let seen = 0; queue.length && seen < MAX_WALK; seen++) {
    const rel = queue.shift()!;
    const dir = join(root, rel);
    try {
      if (statSync(dir, { bigint: true }).ino === id) return rel;
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) queue.push(join(rel, e.name));
    } catch { /* removed meanwhile */ }
  }
  return undefined;
}

/** Where cgroup `id` is, relative to the cgroup of `containerPid` when it is inside it. */
export function placeCgroup(id: string, containerPid: number): CgroupPlace {
  const root = cgroup2Root();
  const container = cgroupOf(containerPid);
  const inside = findCgroup(join(root, container), BigInt(id));
  if (inside !== undefined) return { inContainer: inside, path: join(container, inside) };
  const anywhere = findCgroup(root, BigInt(id));
  return anywhere !== undefined ? { path: join('/', anywhere) } : {};
}

/**
 * An O_RDONLY fd of the cgroup a link is re-created on: below the new container's cgroup (the
 * cgroup of `criuPid`) when it was inside the old one, else the same path in this host's hierarchy.
 * The path comes from the checkpoint: resolved beneath the cgroup2 root, no symlinks, no "..".
 */
export function openCgroupTarget(place: CgroupPlace, criuPid: number): { fd: number; path: string } {
  const root = cgroup2Root();
  const path = place.inContainer !== undefined ? join(cgroupOf(criuPid), place.inContainer) : place.path;
  if (path === undefined) throw new Error('the cgroup was not found at dump');
  const rel = relative('/', join('/', path));
  if (rel.split(sep).includes('..')) throw new Error(`cgroup path ${JSON.stringify(path)} escapes the cgroup hierarchy`);
  const RESOLVE_NO_SYMLINKS = 0x04;
  const RESOLVE_BENEATH = 0x08;
  const O_DIRECTORY = 0o200000;
  const dirfd = openSync(root, 'r');
  try {
    return { fd: openat2(dirfd, rel || '.', O_DIRECTORY, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), path: join('/', rel) };
  } catch (e) {
    throw new Error(`cgroup ${join('/', rel)} does not exist on this host (${(e as Error).message})`);
  } finally {
    closeSync(dirfd);
  }
}

type NetApi = { setns(fd: number, type: number): number; if_indextoname(i: number, b: Buffer): unknown };
let net: NetApi | undefined;

/**
 * The name of interface `ifindex` in the network namespace of `pid` ('' when it has none): this thread
 * enters the namespace and comes back (a network namespace is per thread, unlike a mount namespace).
 */
export function interfaceName(pid: number, ifindex: number): string {
  if (!net) {
    const l = libc().libc;
    net = { setns: l.func('int setns(int fd, int nstype)') as never, if_indextoname: l.func('char *if_indextoname(unsigned int ifindex, _Out_ char *ifname)') as never };
  }
  const CLONE_NEWNET = 0x40000000;
  const own = openSync('/proc/self/ns/net', 'r');
  let theirs: number | undefined;
  try {
    theirs = openSync(`/proc/${pid}/ns/net`, 'r');
    if (net.setns(theirs, CLONE_NEWNET) !== 0) return '';
    const name = Buffer.alloc(16);
    try {
      net.if_indextoname(ifindex, name);
    } finally {
      if (net.setns(own, CLONE_NEWNET) !== 0) throw new Error('cannot return to bpfcr\'s own network namespace');
    }
    const z = name.indexOf(0);
    return name.toString('utf8', 0, z < 0 ? 16 : z);
  } catch (e) {
    if ((e as Error).message.startsWith('cannot return')) throw e;
    return '';
  } finally {
    closeSync(own);
    if (theirs !== undefined) closeSync(theirs);
  }
}

/**
 * Add to a link target what a restore elsewhere needs (best effort: a target that cannot be placed
 * keeps only the kernel's ids, and a restore that must re-create it is refused naming it).
 */
export function locateTarget(t: LinkTargetT, containerPid: number): void {
  try {
    if (t.kind === 'cgroup') t.place = placeCgroup(t.cgroupId, containerPid);
    else if (t.kind === 'xdp' || t.kind === 'tcx' || t.kind === 'netkit') {
      const name = interfaceName(containerPid, t.ifindex);
      if (name) t.ifname = name;
    }
  } catch { /* unplaced */ }
}
