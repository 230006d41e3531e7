/**
 * openat2(2) through koffi, for walking directories a container can write to without ever
 * following a symlink (bpffs supports symlinks) or crossing onto another mount.
 *
 * The pattern: open every component with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) relative to an O_PATH fd of a trusted directory, then
 * hand path-based syscalls (BPF_OBJ_GET/OBJ_PIN, chmod, rename, mkdir) a `/proc/self/fd/<fd>`
 * or `/proc/self/fd/<dirfd>/<name>` path: the kernel follows the magic link to exactly the inode
 * that was opened, so nothing swapped in meanwhile can redirect the call.
 */
import { libc, type Koffi } from './libc.js';
import { closeSync } from 'node:fs';
import { constants } from 'node:os';
import { errnoName } from './errors.js';

export { ENOENT } from './errors.js';

const SYS_openat2 = 437; // x86-64 (and every arch: openat2 has the same number everywhere)

export const AT_FDCWD = -100;

export const O_RDONLY = 0;
export const O_WRONLY = 0o1;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
const O_CLOEXEC = 0o2000000;
export const O_PATH = 0o10000000;

export const RESOLVE_NO_XDEV = 0x01;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;

/** What a container-writable tree is walked with. */
export const RESOLVE_STRICT = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;

/** A failed openat2: errno name in `code` (like Node's fs errors), path and dirfd in the message. */
export class FsError extends Error {
  readonly errno: number;
  readonly code: string;
  constructor(syscall: string, errno: number, path: string) {
    const code = errnoName(errno);
    super(`${syscall} ${path}: ${code}`);
    this.name = 'FsError';
    this.errno = errno;
    this.code = code;
  }
}

type RawOpenat2 = (nr: number, dirfd: number, path: string, how: Buffer, size: number) => number;
let rawOpenat2: RawOpenat2 | undefined;
let koffi: Koffi | undefined;

function sys(): RawOpenat2 {
  if (!rawOpenat2) {
    const l = libc();
    koffi = l.koffi;
    // Fixed-argument declaration of the variadic syscall(): ABI-compatible on x86-64.
    rawOpenat2 = l.libc.func('long syscall(long, int, const char *, void *, size_t)') as unknown as RawOpenat2;
  }
  return rawOpenat2;
}

/**
 * openat2(dirfd, path, {flags, mode, resolve}). Returns the fd; throws FsError (code ELOOP for a
 * symlink under RESOLVE_NO_SYMLINKS, EXDEV for an escape or a mount crossing, ENOENT, …).
 * O_CLOEXEC is always added.
 */
export function openat2(dirfd: number, path: string, flags: number, resolve: number, mode = 0): number {
  const how = Buffer.alloc(24); // struct open_how { u64 flags; u64 mode; u64 resolve; }
  how.writeBigUInt64LE(BigInt(flags | O_CLOEXEC), 0);
  how.writeBigUInt64LE(BigInt(mode), 8);
  how.writeBigUInt64LE(BigInt(resolve), 16);
  const r = sys()(SYS_openat2, dirfd, path, how, how.length);
  if (r < 0) throw new FsError('openat2', koffi!.errno(), path);
  return r;
}

/** The magic-link path the kernel resolves to exactly the inode behind `fd` (or a name in it). */
export function fdPath(fd: number, name?: string): string {
  return name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;
}

export function closeQuiet(fd: number | undefined): void {
  if (fd === undefined || fd < 0) return;
  try { closeSync(fd); } catch { /* already closed */ }
}

export const ELOOP = constants.errno.ELOOP;
export const EXDEV = constants.errno.EXDEV;
export const ENOTDIR = constants.errno.ENOTDIR;
export const EEXIST = constants.errno.EEXIST;

/** errno of an FsError or a Node fs error (0 when neither). */
export function errnoOf(e: unknown): number {
  if (e instanceof FsError) return e.errno;
  const n = (e as NodeJS.ErrnoException | undefined)?.errno;
  return typeof n === 'number' ? Math.abs(n) : 0;
}

type RawPoll = (fds: Buffer, nfds: number, timeout: number) => number;
let rawPoll: RawPoll | undefined;
const POLLIN = 0x1;

/**
 * Block until fd is readable, at EOF or in error (poll(2), no timeout): what a blocking read
 * would wait for, for an fd opened O_NONBLOCK (a read gives EAGAIN). Returns false when the fd is
 * not open (POLLNVAL).
 */
export function waitReadable(fd: number): boolean {
  if (!rawPoll) {
    const l = libc();
    koffi = l.koffi;
    rawPoll = l.libc.func('int poll(void *, unsigned long, int)') as unknown as RawPoll;
  }
  const pfd = Buffer.alloc(8); // struct pollfd { int fd; short events; short revents; }
  pfd.writeInt32LE(fd, 0);
  pfd.writeInt16LE(POLLIN, 4);
  for (;;) {
    const r = rawPoll(pfd, 1, -1);
    if (r >= 0) return (pfd.readInt16LE(6) & 0x20) === 0; // POLLNVAL
    const errno = koffi!.errno();
    if (errno !== constants.errno.EINTR) throw new FsError('poll', errno, `fd ${fd}`);
  }
}
