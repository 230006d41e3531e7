/**
 * The owners of local-storage entries (TASK/SK/INODE/CGRP_STORAGE maps) in a checkpointed process
 * tree, and the same owners again in the restored tree. User space cannot list such a map, but it
 * can look an entry up, and write one, by an fd of its owner: a pidfd (task), an fd of the socket
 * (sk), of the file (inode), of the cgroup directory (cgrp). The owners of a container are known —
 * its tasks, the sockets and files they hold, its cgroups — so each is tried.
 *
 * An owner is recorded as a reference that survives a restore and a migration:
 *   task <pid>          a task by its pid as the container sees it (innermost pid namespace; CRIU
 *                       restores the same pids there), threads included
 *   socket <pid> <fd>   the socket process <pid> holds as fd <fd> (CRIU restores fd numbers)
 *   file <pid> <fd>     the same for a regular file (its inode)
 *   cgroup /<path>      a cgroup v2 by its path below the container's cgroup ("/" = the container's)
 * An owner held by several fds is recorded once, by the first (lowest pid, then fd) that holds it.
 */
import { closeSync, fstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cgroupBelow, cgroupOf, cgroupsBelow, openCgroup } from '../runtime/cgroup.js';
import { PIDFD_THREAD, pidfdGetfd, pidfdOpen } from '../syscall/pidfd.js';

export type OwnerKind = 'task' | 'socket' | 'file' | 'cgroup';
export const OWNER_KINDS: readonly OwnerKind[] = ['task', 'socket', 'file', 'cgroup'];

const BY_MAP_TYPE: Record<number, OwnerKind> = { 24: 'socket', 28: 'file', 29: 'task', 32: 'cgroup' };

/** The owner kind of a local-storage map type (sk_storage 24, inode_storage 28, task_storage 29, cgrp_storage 32). */
export function ownerKindOf(mapType: number): OwnerKind | undefined {
  return BY_MAP_TYPE[mapType];
}

/** An owner of the checkpointed tree: its reference and an fd of it in this process. */
export interface Owner { ref: string; fd: number }

/** What the local-storage strategy asks of the checkpointed tree (src/maps/strategies/local-storage.ts). */
export interface OwnerSource {
  /** every owner of this kind in the tree (fds owned by the source) */
  of(kind: OwnerKind): Owner[];
  /**
   * Call `visit` with an fd of every owner of this kind outside the tree that the kernel lets bpfcr
   * enumerate, and return how many were visited; or, when they cannot be enumerated, why not.
   */
  outside(kind: OwnerKind, visit: (fd: number) => void): number | string;
  close(): void;
}

/** Where to find owners again at restore (RestoreEnv.owner): an fd of the owner a reference names. */
export interface OwnerResolver {
  /** an fd of the owner `ref` names (the caller closes it); throws naming `ref` when there is none */
  open(ref: string): number;
  close(): void;
}

/** The pid of thread `tid` of process `pid` in its innermost pid namespace (NSpid's last field). */
function nsPid(pid: number, tid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    const m = /^NSpid:\s*(.*)$/m.exec(status);
    const last = m?.[1]?.trim().split(/\s+/).pop();
    return last && /^\d+$/.test(last) ? Number(last) : undefined;
  } catch {
    return undefined;
  }
}

function threads(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).filter((t) => /^\d+$/.test(t)).map(Number).sort((a, b) => a - b);
  } catch {
    return [];
  }
}

/** A pidfd of a task: of the process for its leader, of the thread (PIDFD_THREAD) otherwise. */
function taskFd(pid: number, tid: number): number {
  return pidfdOpen(tid, tid === pid ? 0 : PIDFD_THREAD);
}

const closeAll = (fds: Iterable<number>): void => {
  for (const fd of fds) { try { closeSync(fd); } catch { /* closed */ } }
};

/** The owners of a checkpointed process tree (host pids; the first is the container's init). */
export class TreeOwners implements OwnerSource {
  private readonly pids: number[];
  private readonly cache = new Map<OwnerKind, Owner[]>();
  private readonly pidfds = new Map<number, number>();
  private readonly opened: number[] = [];

  constructor(pids: number[]) {
    this.pids = [...new Set(pids)];
  }

  private pidfd(pid: number): number {
    let fd = this.pidfds.get(pid);
    if (fd === undefined) {
      fd = pidfdOpen(pid);
      this.pidfds.set(pid, fd);
    }
    return fd;
  }

  private keep(ref: string, fd: number, out: Owner[]): void {
    this.opened.push(fd);
    out.push({ ref, fd });
  }

  of(kind: OwnerKind): Owner[] {
    let owners = this.cache.get(kind);
    if (owners) return owners;
    owners = [];
    if (kind === 'task') {
      for (const pid of this.pids) {
        for (const tid of threads(pid)) {
          const ns = nsPid(pid, tid);
          if (ns === undefined) continue;
          try { this.keep(`task ${ns}`, taskFd(pid, tid), owners); } catch { /* exited meanwhile */ }
        }
      }
    } else if (kind === 'cgroup') {
      const init = this.pids[0];
      if (init !== undefined) {
        const container = cgroupOf(init);
        for (const rel of cgroupsBelow(container)) {
          try { this.keep(`cgroup /${rel}`, openCgroup(join(container, rel)).fd, owners); } catch { /* removed meanwhile */ }
        }
      }
    } else {
      const seen = new Set<string>();
      for (const pid of [...this.pids].sort((a, b) => a - b)) {
        const ns = nsPid(pid, pid);
        let fds: number[];
        try { fds = readdirSync(`/proc/${pid}/fd`).map(Number).sort((a, b) => a - b); } catch { continue; }
        for (const n of fds) {
          const via = `/proc/${pid}/fd/${n}`;
          let id: string;
          try {
            const link = readlinkSync(via);
            const sock = /^socket:\[(\d+)\]$/.exec(link);
            if (kind === 'socket') {
              if (!sock) continue;
              id = sock[1]!;
            } else {
              if (sock) continue;
              const st = statSync(via);
              if (!st.isFile()) continue;
              id = `${st.dev}:${st.ino}`;
            }
          } catch { continue; }
          if (seen.has(id) || ns === undefined) continue;
          seen.add(id);
          try { this.keep(`${kind} ${ns} ${n}`, pidfdGetfd(this.pidfd(pid), n, `fd ${n} of pid ${pid}`), owners); } catch { /* closed meanwhile */ }
        }
      }
    }
    this.cache.set(kind, owners);
    return owners;
  }

  outside(kind: OwnerKind, visit: (fd: number) => void): number | string {
    if (kind === 'task') {
      const inside = new Set(this.pids);
      let n = 0;
      for (const p of readdirSync('/proc')) {
        if (!/^\d+$/.test(p) || inside.has(Number(p))) continue;
        const pid = Number(p);
        for (const tid of threads(pid)) {
          let fd: number;
          try { fd = taskFd(pid, tid); } catch { continue; }
          try { visit(fd); n++; } finally { closeSync(fd); }
        }
      }
      return n;
    }
    if (kind === 'cgroup') {
      const init = this.pids[0];
      const container = init !== undefined ? cgroupOf(init) : undefined;
      let n = 0;
      for (const rel of cgroupsBelow('/')) {
        const path = join('/', rel);
        if (container && (path === container || path.startsWith(`${container}/`))) continue;
        let fd: number;
        try { fd = openCgroup(path).fd; } catch { continue; }
        try { visit(fd); n++; } finally { closeSync(fd); }
      }
      return n;
    }
    return kind === 'socket'
      ? "sockets outside the container are reachable only through the fds of every other process on the host (or a BPF iterator program over the map), which bpfcr does not open"
      : 'inodes cannot be listed: an inode storage entry is reachable only through an open file of it';
  }

  close(): void {
    closeAll(this.opened);
    closeAll(this.pidfds.values());
    this.opened.length = 0;
    this.pidfds.clear();
    this.cache.clear();
  }
}

const REF = /^(?:task (\d{1,10})|(socket|file) (\d{1,10}) (\d{1,10})|cgroup (\/[^\0]*))$/;

/** The owners of a restored process tree (host pids; the first is the container's init), by reference. */
export class RestoredOwners implements OwnerResolver {
  /** pid in the container → host pid and tid */
  private readonly tasks = new Map<number, { pid: number; tid: number }>();
  private readonly pidfds = new Map<number, number>();
  private readonly container: string | undefined;

  constructor(pids: number[]) {
    for (const pid of pids) {
      for (const tid of threads(pid)) {
        const ns = nsPid(pid, tid);
        if (ns !== undefined) this.tasks.set(ns, { pid, tid });
      }
    }
    this.container = pids[0] !== undefined ? cgroupOf(pids[0]) : undefined;
  }

  private task(ns: number, ref: string): { pid: number; tid: number } {
    const t = this.tasks.get(ns);
    if (!t) throw new Error(`owner "${ref}": no restored task has pid ${ns} in the container`);
    return t;
  }

  open(ref: string): number {
    const m = REF.exec(ref);
    if (!m) throw new Error(`owner ${JSON.stringify(ref)} is not an owner reference`);
    let fd: number;
    try {
      if (m[1] !== undefined) {
        const t = this.task(Number(m[1]), ref);
        fd = taskFd(t.pid, t.tid);
      } else if (m[2] !== undefined) {
        const t = this.task(Number(m[3]), ref);
        if (t.pid !== t.tid) throw new Error(`pid ${m[3]} is a thread, not a process`);
        let pidfd = this.pidfds.get(t.pid);
        if (pidfd === undefined) {
          pidfd = pidfdOpen(t.pid);
          this.pidfds.set(t.pid, pidfd);
        }
        fd = pidfdGetfd(pidfd, Number(m[4]), `fd ${m[4]} of pid ${t.pid}`);
        const st = fstatSync(fd);
        if (m[2] === 'socket' ? !st.isSocket() : !st.isFile()) {
          closeSync(fd);
          throw new Error(`fd ${m[4]} is not a ${m[2] === 'socket' ? 'socket' : 'regular file'} in the restored process`);
        }
      } else {
        if (this.container === undefined) throw new Error('no restored container to find cgroups in');
        fd = openCgroup(cgroupBelow(this.container, m[5]!)).fd;
      }
    } catch (e) {
      if ((e as Error).message.startsWith(`owner "${ref}"`)) throw e;
      throw new Error(`owner "${ref}": ${(e as Error).message}`);
    }
    return fd;
  }

  close(): void {
    closeAll(this.pidfds.values());
    this.pidfds.clear();
  }
}
