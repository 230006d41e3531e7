/**
 * Shared file mappings through koffi (Node has no mmap): the queue/stack dump journal
 * (maps/queue-journal.ts) lets the kernel write popped values straight into a file's pages, so a
 * value is on file the instant the pop returns, whatever happens to the process afterwards.
 */
import { libc, type Koffi } from './libc.js';
import { errnoName } from './errors.js';

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
/** koffi.view cannot cover more than 4 GiB (and aborts the process beyond): callers map windows. */
export const MAX_MAPPING = 2 ** 32;

type Mmap = (addr: null, len: number, prot: number, flags: number, fd: number, off: number) => unknown;
type Munmap = (addr: unknown, len: number) => number;
type Fallocate = (fd: number, off: number, len: number) => number;
let fns: { koffi: Koffi; mmap: Mmap; munmap: Munmap; fallocate: Fallocate } | undefined;

function load(): NonNullable<typeof fns> {
  if (!fns) {
    const l = libc();
    fns = {
      koffi: l.koffi,
      mmap: l.libc.func('void *mmap(void *, size_t, int, int, int, int64_t)') as unknown as Mmap,
      munmap: l.libc.func('int munmap(void *, size_t)') as unknown as Munmap,
      fallocate: l.libc.func('int posix_fallocate(int, int64_t, int64_t)') as unknown as Fallocate,
    };
  }
  return fns;
}

export interface Mapping {
  /** the mapped bytes; never touch it after unmap() (the memory is gone: SIGSEGV) */
  bytes: Uint8Array;
  /** address of bytes[0], for pointer fields of a bpf(2) attr */
  address: number;
  unmap(): void;
}

/** mmap(fd, offset, length) read-write MAP_SHARED; offset page-aligned, length ≤ MAX_MAPPING. */
export function mapShared(fd: number, offset: number, length: number): Mapping {
  if (length <= 0 || length > MAX_MAPPING) throw new RangeError(`mapShared: length ${length} out of range`);
  const f = load();
  const ptr = f.mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  const raw = f.koffi.address(ptr);
  if (raw === 0xffffffffffffffffn || raw === 0n) { // MAP_FAILED
    const errno = f.koffi.errno();
    throw Object.assign(new Error(`mmap of ${length} bytes failed: ${errnoName(errno)}`), { errno });
  }
  let live = true;
  return {
    bytes: new Uint8Array(f.koffi.view(ptr, length)),
    address: Number(raw), // user-space addresses fit in 47 bits: exact as a Number
    unmap: () => {
      if (live) f.munmap(ptr, length);
      live = false;
    },
  };
}

/**
 * Reserve the blocks of fd's first `length` bytes. A store into a shared mapping of a file hole
 * that the filesystem cannot back kills the process with SIGBUS, and a kernel write into it
 * fails with EFAULT after the kernel already acted: reserving first turns both into one ENOSPC.
 */
export function allocate(fd: number, length: number): void {
  const r = load().fallocate(fd, 0, length);
  if (r !== 0) throw Object.assign(new Error(`cannot reserve ${length} bytes: ${errnoName(r)}`), { errno: r, code: errnoName(r) });
}
