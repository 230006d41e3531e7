/**
 * Link targets in terms that survive a migration: a cgroup by its path relative to the container's
 * cgroup (ids and host paths differ on another host), an interface by its name in the container's
 * network namespace (ifindexes differ). At dump the kernel reports a cgroup id and an ifindex; at
 * restore the new container's cgroup is the one runc put CRIU in (runc moves `criu swrk` into the
 * container's cgroups before it sends the restore request, so the action script inherits them).
 *
 * BPF attaches to cgroup v2 only (src/runtime/cgroup.ts finds its mount).
 */
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { cgroupBelow, cgroupId, cgroupOf, cgroupsBelow, openCgroup } from '../runtime/cgroup.js';
import { libc } from '../syscall/libc.js';
import type { CgroupPlace, LinkTargetT } from './info.js';

/** The path (relative to `below`, '' for itself) of the cgroup whose id is `id`, searched below cgroup path `below`. */
function findCgroup(below: string, id: bigint): string | undefined {
  return cgroupsBelow(below).find((rel) => cgroupId(join(below, rel)) === id);
}

/** Where cgroup `id` is, relative to the cgroup of `containerPid` when it is inside it. */
export function placeCgroup(id: string, containerPid: number): CgroupPlace {
  const container = cgroupOf(containerPid);
  const inside = findCgroup(container, BigInt(id));
  if (inside !== undefined) return { inContainer: inside, path: join(container, inside) };
  const anywhere = findCgroup('/', BigInt(id));
  return anywhere !== undefined ? { path: join('/', anywhere) } : {};
}

/**
 * An O_RDONLY fd of the cgroup a link is re-created on: below the new container's cgroup (the
 * cgroup of `criuPid`) when it was inside the old one, else the same path in this host's hierarchy.
 */
export function openCgroupTarget(place: CgroupPlace, criuPid: number): { fd: number; path: string } {
  const path = place.inContainer !== undefined ? cgroupBelow(cgroupOf(criuPid), place.inContainer) : place.path;
  if (path === undefined) throw new Error('the cgroup was not found at dump');
  return openCgroup(path);
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
