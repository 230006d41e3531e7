/**
 * Thin typed wrappers over bpf(2), one per command, through koffi → libc syscall().
 *
 * Attrs are raw Buffers (never koffi structs): the kernel writes results back into the attr
 * (count, out_batch, info_len) and a koffi struct argument would be a copy. Pointer fields get
 * koffi.address(buffer). Failures throw BpfError carrying the command and errno name.
 */
import { closeSync } from 'node:fs';
import {
  BpfCmd, type BpfCmdName, MapCreate, MapElem, MapBatch, ObjPin, GetFdById, InfoByFd, BtfLoad,
  MapInfo, BtfInfo, ProgInfo, LinkInfo, BPF_OBJ_NAME_LEN,
} from './attr.js';
import { BpfError, ENOENT } from './errors.js';
import { libc, type Koffi } from './libc.js';

const SYS_bpf = 321; // x86-64

type RawSyscall = (nr: number, cmd: number, attr: Buffer, size: number) => number;
let rawSyscall: RawSyscall | undefined;
let koffi: Koffi | undefined;

type AsyncSyscall = (nr: number, cmd: number, attr: Buffer, size: number, cb: (err: unknown, r: number) => void) => void;
let asyncSyscall: AsyncSyscall | undefined;

function sys(): RawSyscall {
  if (!rawSyscall) {
    const l = libc();
    koffi = l.koffi;
    // Fixed-argument declaration: on x86-64 it is ABI-compatible with variadic syscall() and faster.
    const f = l.libc.func('long syscall(long, int, void *, uint32)');
    rawSyscall = f as unknown as RawSyscall;
    asyncSyscall = (f as unknown as { async: AsyncSyscall }).async;
  }
  return rawSyscall;
}

/**
 * The same call on one of koffi's worker threads: the kernel copies while this thread goes on
 * (hashing and writing the previous chunk). errno is not carried back from the worker, so a
 * negative result is only "failed": callers of read-only commands repeat the call to learn why.
 */
function callAsync(name: BpfCmdName, attr: Buffer, size: number): Promise<number> {
  sys();
  return new Promise((resolve, reject) => {
    asyncSyscall!(SYS_bpf, BpfCmd[name], attr, size, (err, r) => (err ? reject(err) : resolve(Number(r))));
  });
}

/** Address of a buffer's first byte, for pointer fields of an attr (0 for null). */
export function addr(buf: Buffer | null | undefined): bigint {
  if (!buf) return 0n;
  sys();
  return koffi!.address(buf) as bigint;
}

function call(name: BpfCmdName, attr: Buffer, size: number, context?: string): number {
  const r = sys()(SYS_bpf, BpfCmd[name], attr, size);
  if (r < 0) throw new BpfError(`BPF_${name}`, koffi!.errno(), context);
  return r;
}

/** Like call() but returns -errno instead of throwing: for loops where ENOENT is the normal end. */
function tryCall(name: BpfCmdName, attr: Buffer, size: number): number {
  const r = sys()(SYS_bpf, BpfCmd[name], attr, size);
  return r < 0 ? -koffi!.errno() : r;
}

function cString(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

export function closeFd(fd: number): void {
  try { closeSync(fd); } catch { /* already closed */ }
}

// ---------------------------------------------------------------------------------------------
// Maps

interface MapCreateParams {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name?: string;
  innerMapFd?: number;
  numaNode?: number;
  ifindex?: number;
  btfFd?: number;
  btfKeyTypeId?: number;
  btfValueTypeId?: number;
  btfVmlinuxValueTypeId?: number;
  mapExtra?: bigint;
}

export function mapCreate(p: MapCreateParams): number {
  const a = Buffer.alloc(MapCreate.SIZE);
  a.writeUInt32LE(p.type, MapCreate.map_type);
  a.writeUInt32LE(p.keySize, MapCreate.key_size);
  a.writeUInt32LE(p.valueSize, MapCreate.value_size);
  a.writeUInt32LE(p.maxEntries, MapCreate.max_entries);
  a.writeUInt32LE(p.flags >>> 0, MapCreate.map_flags);
  a.writeUInt32LE(p.innerMapFd ?? 0, MapCreate.inner_map_fd);
  a.writeUInt32LE(p.numaNode ?? 0, MapCreate.numa_node);
  if (p.name) Buffer.from(p.name, 'utf8').copy(a, MapCreate.map_name, 0, BPF_OBJ_NAME_LEN - 1);
  a.writeUInt32LE(p.ifindex ?? 0, MapCreate.map_ifindex);
  a.writeUInt32LE(p.btfFd ?? 0, MapCreate.btf_fd);
  a.writeUInt32LE(p.btfKeyTypeId ?? 0, MapCreate.btf_key_type_id);
  a.writeUInt32LE(p.btfValueTypeId ?? 0, MapCreate.btf_value_type_id);
  a.writeUInt32LE(p.btfVmlinuxValueTypeId ?? 0, MapCreate.btf_vmlinux_value_type_id);
  a.writeBigUInt64LE(p.mapExtra ?? 0n, MapCreate.map_extra);
  return call('MAP_CREATE', a, MapCreate.SIZE, p.name ? `map ${p.name}` : undefined);
}

/**
 * One attr for every single-element command: calls are synchronous and JS is single-threaded, so
 * reusing it is safe and keeps get_next_key/lookup walks free of per-element allocations.
 */
const ELEM_ATTR = Buffer.alloc(MapElem.SIZE);

function elemAttr(fd: number, key: Buffer | null, value: Buffer): Buffer {
  const a = ELEM_ATTR;
  a.writeUInt32LE(fd, MapElem.map_fd);
  a.writeBigUInt64LE(addr(key), MapElem.key);
  a.writeBigUInt64LE(addr(value), MapElem.value);
  return a;
}

/** An element command for which ENOENT is an answer (no such key, end of map, empty queue). */
function elemOrEnoent(name: BpfCmdName, fd: number, key: Buffer | null, value: Buffer): boolean {
  const r = tryCall(name, elemAttr(fd, key, value), MapElem.SIZE);
  if (r === -ENOENT) return false;
  if (r < 0) throw new BpfError(`BPF_${name}`, -r);
  return true;
}

/** Returns false when the key does not exist (ENOENT). */
export function mapLookupElem(fd: number, key: Buffer | null, value: Buffer): boolean {
  return elemOrEnoent('MAP_LOOKUP_ELEM', fd, key, value);
}

/** key null = push (QUEUE, STACK, BLOOM_FILTER). Flags BPF_ANY. */
export function mapUpdateElem(fd: number, key: Buffer | null, value: Buffer): void {
  call('MAP_UPDATE_ELEM', elemAttr(fd, key, value), MapElem.SIZE);
}

/** key null = first key. Returns false at the end of the map. */
export function mapGetNextKey(fd: number, key: Buffer | null, nextKey: Buffer): boolean {
  return elemOrEnoent('MAP_GET_NEXT_KEY', fd, key, nextKey);
}

/**
 * Element commands with a NULL key on one map, the value given by address: the QUEUE/STACK loops
 * (maps/queue-journal.ts) move millions of values that live in a mapped file, so nothing is
 * allocated per element and the attr is written once but for the value pointer.
 */
export class ValueOps {
  readonly #attr = Buffer.alloc(MapElem.SIZE);
  readonly #words = new Uint32Array(this.#attr.buffer, this.#attr.byteOffset, MapElem.SIZE / 4);

  constructor(fd: number) {
    this.#words[MapElem.map_fd / 4] = fd;
  }

  /** Point the value field at `address` (a user-space address: below 2^47, exact as a Number). */
  at(address: number): this {
    this.#words[MapElem.value / 4] = address % 0x1_0000_0000;
    this.#words[MapElem.value / 4 + 1] = Math.floor(address / 0x1_0000_0000);
    return this;
  }

  #orEnoent(name: BpfCmdName): boolean {
    const r = tryCall(name, this.#attr, MapElem.SIZE);
    if (r === -ENOENT) return false;
    if (r < 0) throw new BpfError(`BPF_${name}`, -r);
    return true;
  }

  /** The element a pop would return, left in place; false when empty. */
  peek(): boolean { return this.#orEnoent('MAP_LOOKUP_ELEM'); }
  /** Take the head (QUEUE) or top (STACK) out; false when empty. */
  pop(): boolean { return this.#orEnoent('MAP_LOOKUP_AND_DELETE_ELEM'); }
  /** Push (BPF_ANY: E2BIG when full). */
  push(): void {
    const r = tryCall('MAP_UPDATE_ELEM', this.#attr, MapElem.SIZE);
    if (r < 0) throw new BpfError('BPF_MAP_UPDATE_ELEM', -r);
  }
}

export function mapFreeze(fd: number): void {
  const a = Buffer.alloc(MapElem.FREEZE_SIZE);
  a.writeUInt32LE(fd, MapElem.map_fd);
  call('MAP_FREEZE', a, MapElem.FREEZE_SIZE);
}

export type BatchOp = 'lookup' | 'update';
const BATCH_CMD = { lookup: 'MAP_LOOKUP_BATCH', update: 'MAP_UPDATE_BATCH' } as const;

/**
 * Does the map's type implement batch op `op`? A batch call with count 0 answers without touching
 * the map: ENOTSUPP (thrown as BpfError) when the type lacks the op, success otherwise (the
 * kernel returns before reading keys or values). Other errnos are real failures.
 */
export function mapBatchProbe(fd: number, op: BatchOp): void {
  const a = Buffer.alloc(MapBatch.SIZE);
  a.writeUInt32LE(fd, MapBatch.map_fd);
  call(BATCH_CMD[op], a, MapBatch.SIZE, 'probe');
}

/**
 * BPF_MAP_LOOKUP_BATCH iterator state: one attr and one cursor pair, reused for every call so a
 * dump of millions of elements allocates nothing per batch.
 */
export class LookupBatch {
  private readonly attr = Buffer.alloc(MapBatch.SIZE);
  private readonly cursors: [Buffer, Buffer];
  private which = 0;
  private started = false;
  done = false;

  /** cursorSize: ≥ max(key_size, 4) (hash maps use a u32 bucket index). */
  constructor(fd: number, cursorSize: number) {
    const size = Math.max(cursorSize, 8);
    this.cursors = [Buffer.alloc(size), Buffer.alloc(size)];
    this.attr.writeUInt32LE(fd, MapBatch.map_fd);
  }

  /**
   * Fetch up to `count` elements into keys/values. Returns the number fetched (may be 0 with done
   * false only never: the kernel either copies ≥ 1 element, ends with ENOENT, or fails).
   * Throws BpfError ENOSPC (nothing copied: a bucket holds more than count) — retry with a larger
   * count — and ENOTSUPP when the map type has no batch support (see mapBatchProbe).
   */
  next(keys: Buffer, values: Buffer, count: number): number {
    if (this.done) return 0;
    const a = this.prepare(keys, values, count);
    const r = tryCall('MAP_LOOKUP_BATCH', a, MapBatch.SIZE);
    const got = a.readUInt32LE(MapBatch.count);
    if (r === -ENOENT) {
      // End of map; the final partial batch still counts.
      this.done = true;
      return got;
    }
    // On ENOSPC nothing was copied and the cursor did not move: the caller retries with a
    // larger count from the same state.
    if (r < 0) throw new BpfError('BPF_MAP_LOOKUP_BATCH', -r);
    return this.advance();
  }

  /** The attr for a lookup from the current cursor into keys/values. */
  private prepare(keys: Buffer, values: Buffer, count: number): Buffer {
    const a = this.attr;
    a.writeBigUInt64LE(this.started ? addr(this.cursors[this.which]) : 0n, MapBatch.in_batch);
    a.writeBigUInt64LE(addr(this.cursors[1 - this.which]), MapBatch.out_batch);
    a.writeBigUInt64LE(addr(keys), MapBatch.keys);
    a.writeBigUInt64LE(addr(values), MapBatch.values);
    a.writeUInt32LE(count, MapBatch.count);
    return a;
  }

  /** After a successful lookup: the out cursor becomes the next in cursor; the elements copied. */
  private advance(): number {
    this.started = true;
    this.which = 1 - this.which;
    return this.attr.readUInt32LE(MapBatch.count);
  }

  /**
   * next(), with the kernel's copy on a worker thread. A lookup moves nothing until it succeeds,
   * so a failed call (end of map, ENOSPC, an error: errno does not come back from the worker) is
   * made again synchronously from the same cursor, which gives the same result and its errno.
   */
  async nextAsync(keys: Buffer, values: Buffer, count: number): Promise<number> {
    if (this.done) return 0;
    const r = await callAsync('MAP_LOOKUP_BATCH', this.prepare(keys, values, count), MapBatch.SIZE);
    return r < 0 ? this.next(keys, values, count) : this.advance();
  }
}

/**
 * BPF_MAP_UPDATE_BATCH of `count` elements laid out back to back. Returns how many the kernel
 * processed; throws on error (the count processed before the error is on the BpfError message).
 */
export class UpdateBatch {
  private readonly attr = Buffer.alloc(MapBatch.SIZE);
  constructor(fd: number) {
    this.attr.writeUInt32LE(fd, MapBatch.map_fd);
  }
  update(keys: Buffer, values: Buffer, count: number): void {
    const a = this.attr;
    let done = 0;
    while (done < count) {
      const keySize = keys.length / count;
      const valueSize = values.length / count;
      a.writeBigUInt64LE(addr(keys) + BigInt(done * keySize), MapBatch.keys);
      a.writeBigUInt64LE(addr(values) + BigInt(done * valueSize), MapBatch.values);
      a.writeUInt32LE(count - done, MapBatch.count);
      const r = tryCall('MAP_UPDATE_BATCH', a, MapBatch.SIZE);
      const processed = a.readUInt32LE(MapBatch.count);
      if (r < 0) throw new BpfError('BPF_MAP_UPDATE_BATCH', -r, `after ${done + processed} of ${count} elements`);
      done += processed;
      if (processed === 0) throw new Error(`BPF_MAP_UPDATE_BATCH made no progress after ${done} of ${count} elements`);
    }
  }

  /**
   * update() with the kernel's work on a koffi worker thread (the caller reads and verifies the next
   * chunk meanwhile). The buffers must stay untouched until it settles. errno does not come back from
   * the worker: when the batch fails or stops short, the whole batch is applied again synchronously
   * (updates of the same keys to the same values, so repeating them is harmless) for the real error.
   */
  async updateAsync(keys: Buffer, values: Buffer, count: number): Promise<void> {
    const a = this.attr;
    a.writeBigUInt64LE(addr(keys), MapBatch.keys);
    a.writeBigUInt64LE(addr(values), MapBatch.values);
    a.writeUInt32LE(count, MapBatch.count);
    const r = await callAsync('MAP_UPDATE_BATCH', a, MapBatch.SIZE);
    if (r < 0 || a.readUInt32LE(MapBatch.count) !== count) this.update(keys, values, count);
  }
}

// ---------------------------------------------------------------------------------------------
// Objects: pin, get, ids

export function objPin(fd: number, path: string): void {
  const p = cString(path);
  const a = Buffer.alloc(ObjPin.PIN_SIZE);
  a.writeBigUInt64LE(addr(p), ObjPin.pathname);
  a.writeUInt32LE(fd, ObjPin.bpf_fd);
  call('OBJ_PIN', a, ObjPin.PIN_SIZE, path);
}

/** file_flags: 0, BPF_F_RDONLY or BPF_F_WRONLY. */
export function objGet(path: string, fileFlags = 0): number {
  const p = cString(path);
  const a = Buffer.alloc(ObjPin.GET_SIZE);
  a.writeBigUInt64LE(addr(p), ObjPin.pathname);
  a.writeUInt32LE(fileFlags, ObjPin.file_flags);
  return call('OBJ_GET', a, ObjPin.GET_SIZE, path);
}

function getFdById(cmd: 'MAP_GET_FD_BY_ID' | 'PROG_GET_FD_BY_ID' | 'LINK_GET_FD_BY_ID' | 'BTF_GET_FD_BY_ID', id: number, what: string): number {
  const a = Buffer.alloc(GetFdById.SIZE);
  a.writeUInt32LE(id, GetFdById.id);
  return call(cmd, a, GetFdById.SIZE, `${what} id ${id}`);
}
export const mapGetFdById = (id: number): number => getFdById('MAP_GET_FD_BY_ID', id, 'map');
export const progGetFdById = (id: number): number => getFdById('PROG_GET_FD_BY_ID', id, 'prog');
export const linkGetFdById = (id: number): number => getFdById('LINK_GET_FD_BY_ID', id, 'link');
export const btfGetFdById = (id: number): number => getFdById('BTF_GET_FD_BY_ID', id, 'btf');

/** OBJ_GET_INFO_BY_FD into `info` (its length is the info_len passed); returns the info_len the kernel wrote back. */
export function objInfo(fd: number, info: Buffer): number {
  const a = Buffer.alloc(InfoByFd.SIZE);
  a.writeUInt32LE(fd, InfoByFd.bpf_fd);
  a.writeUInt32LE(info.length, InfoByFd.info_len);
  a.writeBigUInt64LE(addr(info), InfoByFd.info);
  call('OBJ_GET_INFO_BY_FD', a, InfoByFd.SIZE, `fd ${fd}`);
  return a.readUInt32LE(InfoByFd.info_len);
}

function cName(buf: Buffer, off: number, len: number): string {
  const s = buf.subarray(off, off + len);
  const end = s.indexOf(0);
  return s.subarray(0, end < 0 ? len : end).toString('utf8');
}

export interface MapInfoT {
  type: number; id: number; keySize: number; valueSize: number; maxEntries: number; flags: number;
  name: string; ifindex: number; btfId: number; btfKeyTypeId: number; btfValueTypeId: number; mapExtra: bigint;
}

export function mapInfo(fd: number): MapInfoT {
  const b = Buffer.alloc(MapInfo.SIZE);
  objInfo(fd, b);
  return {
    type: b.readUInt32LE(MapInfo.type),
    id: b.readUInt32LE(MapInfo.id),
    keySize: b.readUInt32LE(MapInfo.key_size),
    valueSize: b.readUInt32LE(MapInfo.value_size),
    maxEntries: b.readUInt32LE(MapInfo.max_entries),
    flags: b.readUInt32LE(MapInfo.map_flags),
    name: cName(b, MapInfo.name, BPF_OBJ_NAME_LEN),
    ifindex: b.readUInt32LE(MapInfo.ifindex),
    btfId: b.readUInt32LE(MapInfo.btf_id),
    btfKeyTypeId: b.readUInt32LE(MapInfo.btf_key_type_id),
    btfValueTypeId: b.readUInt32LE(MapInfo.btf_value_type_id),
    mapExtra: b.readBigUInt64LE(MapInfo.map_extra),
  };
}

interface ProgInfoT { type: number; id: number; tag: string; name: string }
export function progInfo(fd: number): ProgInfoT {
  const b = Buffer.alloc(ProgInfo.SIZE);
  objInfo(fd, b);
  return {
    type: b.readUInt32LE(ProgInfo.type), id: b.readUInt32LE(ProgInfo.id),
    tag: b.subarray(ProgInfo.tag, ProgInfo.tag + 8).toString('hex'),
    name: cName(b, ProgInfo.name, BPF_OBJ_NAME_LEN),
  };
}

/** Ids of the maps a program uses: ask for the count, then fetch into a u32 array that fits. */
export function progMapIds(fd: number): number[] {
  const b = Buffer.alloc(ProgInfo.SIZE);
  objInfo(fd, b);
  const n = b.readUInt32LE(ProgInfo.nr_map_ids);
  if (n === 0) return [];
  const ids = Buffer.alloc(4 * n);
  b.fill(0);
  b.writeUInt32LE(n, ProgInfo.nr_map_ids);
  b.writeBigUInt64LE(addr(ids), ProgInfo.map_ids);
  objInfo(fd, b);
  const got = Math.min(n, b.readUInt32LE(ProgInfo.nr_map_ids));
  return Array.from({ length: got }, (_, i) => ids.readUInt32LE(4 * i));
}

interface LinkInfoT { type: number; id: number; progId: number }
export function linkInfo(fd: number): LinkInfoT {
  const b = Buffer.alloc(LinkInfo.SIZE);
  objInfo(fd, b);
  return { type: b.readUInt32LE(LinkInfo.type), id: b.readUInt32LE(LinkInfo.id), progId: b.readUInt32LE(LinkInfo.prog_id) };
}

/** Raw BTF blob of a BTF object: ask for the size first, then fetch into a buffer that fits. */
export function btfRaw(fd: number): Buffer {
  const info = Buffer.alloc(BtfInfo.SIZE);
  objInfo(fd, info);
  const size = info.readUInt32LE(BtfInfo.btf_size);
  const data = Buffer.alloc(size);
  info.fill(0);
  info.writeBigUInt64LE(addr(data), BtfInfo.btf);
  info.writeUInt32LE(size, BtfInfo.btf_size);
  objInfo(fd, info);
  return data;
}

/** BTF_LOAD; on failure retries once with the verifier log so the error says why. */
export function btfLoad(blob: Buffer, context?: string): number {
  const a = Buffer.alloc(BtfLoad.LOG_SIZE);
  a.writeBigUInt64LE(addr(blob), BtfLoad.btf);
  a.writeUInt32LE(blob.length, BtfLoad.btf_size);
  const r = tryCall('BTF_LOAD', a, BtfLoad.SIZE);
  if (r >= 0) return r;
  const log = Buffer.alloc(64 * 1024);
  a.writeBigUInt64LE(addr(log), BtfLoad.btf_log_buf);
  a.writeUInt32LE(log.length, BtfLoad.btf_log_size);
  a.writeUInt32LE(1, BtfLoad.btf_log_level);
  const r2 = tryCall('BTF_LOAD', a, BtfLoad.LOG_SIZE);
  if (r2 >= 0) return r2;
  const text = cName(log, 0, log.length).trim().split('\n').slice(-2).join(' | ');
  throw new BpfError('BPF_BTF_LOAD', -r2, [context, text].filter(Boolean).join(': '));
}
