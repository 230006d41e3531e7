import { constants } from 'node:os';

/** errno numbers → names, including the kernel-internal ones bpf(2) leaks to user space. */
const ERRNO_NAMES = new Map<number, string>();
for (const [name, num] of Object.entries(constants.errno)) ERRNO_NAMES.set(num, name);
// include/linux/errno.h: never in libc headers, but bpf(2) returns them (e.g. a batch op a map type lacks).
ERRNO_NAMES.set(524, 'ENOTSUPP');
ERRNO_NAMES.set(515, 'ENOIOCTLCMD');

export const ENOENT = constants.errno.ENOENT;
export const ENOSPC = constants.errno.ENOSPC;
export const ENOTSUPP = 524;

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/** A failed bpf(2) call: carries the command and the errno, so callers can branch on errno and
 *  operators read e.g. "BPF_MAP_CREATE failed: EPERM (Operation not permitted)". */
export class BpfError extends Error {
  readonly command: string;
  readonly errno: number;
  readonly code: string;
  constructor(command: string, errno: number, context?: string) {
    const code = errnoName(errno);
    super(`${command}${context ? ` (${context})` : ''} failed: ${code}${describe(errno)}`);
    this.name = 'BpfError';
    this.command = command;
    this.errno = errno;
    this.code = code;
  }
}

function describe(errno: number): string {
  if (errno === ENOTSUPP) return ' (operation not supported for this map type)';
  if (errno === constants.errno.EPERM) return ' (Operation not permitted: bpfcr needs root / CAP_SYS_ADMIN+CAP_BPF)';
  return '';
}

export function isBpfErrno(err: unknown, ...errnos: number[]): err is BpfError {
  return err instanceof BpfError && errnos.includes(err.errno);
}
