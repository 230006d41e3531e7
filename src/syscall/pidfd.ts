/**
 * pidfd_open(2) and pidfd_getfd(2): the handles local-storage maps are keyed by from user space (a
 * task storage entry is looked up and updated by pidfd; socket and inode storage by an fd of the
 * socket or file, which pidfd_getfd copies out of the process that holds it). Thin wrappers;
 * errors are FsErrors naming the pid and fd.
 */
import { FsError } from './fs.js';
import { libc, type Koffi } from './libc.js';

const SYS_pidfd_open = 434;
const SYS_pidfd_getfd = 438;
/** pidfd_open flag (6.9+): a pidfd of this thread rather than of its thread group */
export const PIDFD_THREAD = 0o200;

type RawSyscall = (nr: number, a: number, b: number, c: number) => number;
let raw: RawSyscall | undefined;
let koffi: Koffi | undefined;

function sys(): RawSyscall {
  if (!raw) {
    const l = libc();
    koffi = l.koffi;
    // Fixed-argument declaration of the variadic syscall(): ABI-compatible on x86-64.
    raw = l.libc.func('long syscall(long, int, unsigned int, unsigned int)') as unknown as RawSyscall;
  }
  return raw;
}

export function pidfdOpen(pid: number, flags = 0): number {
  const r = sys()(SYS_pidfd_open, pid, flags, 0);
  if (r < 0) throw new FsError('pidfd_open', koffi!.errno(), `pid ${pid}`);
  return r;
}

/** A copy (in this process, close-on-exec) of fd `targetFd` of the process behind `pidfd`. */
export function pidfdGetfd(pidfd: number, targetFd: number, what: string): number {
  const r = sys()(SYS_pidfd_getfd, pidfd, targetFd, 0);
  if (r < 0) throw new FsError('pidfd_getfd', koffi!.errno(), what);
  return r;
}
