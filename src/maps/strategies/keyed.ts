/**
 * HASH, LRU_HASH, PERCPU_HASH, LRU_PERCPU_HASH, ARRAY, PERCPU_ARRAY, LPM_TRIE: every element is
 * readable and writable by key. Dump with BPF_MAP_LOOKUP_BATCH straight into the chunk buffer
 * (no copy, no per-element allocation); a type whose kernel lacks the batch op, or a forced
 * fallback, walks with GET_NEXT_KEY + LOOKUP. Restore with UPDATE_BATCH, per element likewise.
 */
import {
  LookupBatch, UpdateBatch, mapBatchProbe, mapGetNextKey, mapLookupElem, mapUpdateElem, type BatchOp,
} from '../../syscall/bpf.js';
import { ENOSPC, ENOTSUPP, isBpfErrno } from '../../syscall/errors.js';
import { remapPerCpuValues, valueStride } from '../cpus.js';
import { MapError } from '../map-error.js';
import type { ChunkSink, DumpEnv, LiveMap, RestoreEnv, RestoreMeta, Strategy } from './strategy.js';

/** "typeId:op" → whether the kernel implements that batch op for that map type */
const batchSupport = new Map<string, boolean>();

/**
 * Whether map type `typeId` has batch op `op`, probed once per type and cached. The kernel
 * answers a batch command a type does not implement with ENOTSUPP (524), per type; any other
 * errno (EINVAL included) is a real failure of the probe and is thrown, not read as "no batch".
 * `probe` runs the op on a map of that type (mapBatchProbe).
 */
export function hasBatchOp(typeId: number, op: BatchOp, probe: () => void): boolean {
  const key = `${typeId}:${op}`;
  let known = batchSupport.get(key);
  if (known === undefined) {
    try {
      probe();
      known = true;
    } catch (e) {
      if (!isBpfErrno(e, ENOTSUPP)) throw e;
      known = false;
    }
    batchSupport.set(key, known);
  }
  return known;
}

/** A chunk being filled: n keys at the front, n values after room for `cap` keys. */
class KvChunk {
  readonly buf: Buffer;
  n = 0;
  constructor(readonly cap: number, readonly keySize: number, readonly stride: number) {
    this.buf = Buffer.allocUnsafe(cap * (keySize + stride));
  }
  get room(): number { return this.cap - this.n; }
  keySlot(i = this.n): Buffer { return this.buf.subarray(i * this.keySize, (i + 1) * this.keySize); }
  keysFrom(i = this.n): Buffer { return this.buf.subarray(i * this.keySize, this.cap * this.keySize); }
  valuesFrom(i = this.n): Buffer {
    const base = this.cap * this.keySize;
    return this.buf.subarray(base + i * this.stride, base + this.cap * this.stride);
  }
  valueSlot(i = this.n): Buffer {
    const base = this.cap * this.keySize;
    return this.buf.subarray(base + i * this.stride, base + (i + 1) * this.stride);
  }
  async flush(sink: ChunkSink): Promise<void> {
    if (this.n === 0) return;
    const base = this.cap * this.keySize;
    await sink.write([this.buf.subarray(0, this.n * this.keySize), this.buf.subarray(base, base + this.n * this.stride)]);
  }
}

function chunkCapacity(map: LiveMap, env: DumpEnv): number {
  const perElem = map.info.keySize + map.valueStride;
  return Math.max(1, Math.min(map.info.maxEntries || 1, Math.floor(env.chunkBytes / perElem)));
}

/**
 * Batch reads, pipelined: when a chunk is full, the kernel starts filling the next one on a koffi
 * worker thread while this thread hashes and writes the full one (two cores: the copy out of the
 * kernel and the archive's SHA-256 + write overlap instead of adding up). At most two chunks are
 * held, plus what the archive writer has in flight.
 */
async function dumpBatch(map: LiveMap, env: DumpEnv, sink: ChunkSink): Promise<number> {
  const { keySize } = map.info;
  let cap = chunkCapacity(map, env);
  let chunk = new KvChunk(cap, keySize, map.valueStride);
  const cursor = new LookupBatch(map.fd, Math.max(keySize, 4));
  const read = (c: KvChunk): Promise<number> => cursor.nextAsync(c.keysFrom(), c.valuesFrom(), c.room);
  let pending: Promise<number> | undefined;
  let total = 0;
  while (!cursor.done || pending) {
    let got: number;
    try {
      got = await (pending ?? read(chunk));
    } catch (e) {
      pending = undefined;
      if (!isBpfErrno(e, ENOSPC)) throw e;
      // A whole hash bucket must fit: ship what we have, or grow an empty chunk.
      if (chunk.n > 0) {
        await chunk.flush(sink);
      } else {
        cap *= 2;
      }
      chunk = new KvChunk(cap, keySize, map.valueStride);
      continue;
    }
    pending = undefined;
    chunk.n += got;
    total += got;
    if (chunk.room === 0) {
      const full = chunk;
      // A new buffer, not a reused one: the full one may still be queued in the archive stream.
      chunk = new KvChunk(cap, keySize, map.valueStride);
      if (!cursor.done) {
        pending = read(chunk);
        pending.catch(() => undefined); // awaited (and its error handled) on the next turn
      }
      await full.flush(sink);
    }
  }
  await chunk.flush(sink);
  return total;
}

/**
 * GET_NEXT_KEY walk. On a hash map whose current key is deleted concurrently the kernel restarts
 * from the first bucket, so the walk is bounded: more steps than the map can hold means it is
 * being rewritten faster than we can read it.
 */
async function dumpIterate(map: LiveMap, env: DumpEnv, sink: ChunkSink): Promise<number> {
  const { keySize, maxEntries } = map.info;
  const cap = chunkCapacity(map, env);
  let chunk = new KvChunk(cap, keySize, map.valueStride);
  let cur = Buffer.alloc(keySize);
  let next = Buffer.alloc(keySize);
  let first = true;
  let steps = 0;
  const limit = 2 * maxEntries + 1024;
  let total = 0;
  while (mapGetNextKey(map.fd, first ? null : cur, next)) {
    first = false;
    if (++steps > limit) {
      throw new MapError(`${map.label}: get_next_key walk did not end after ${limit} steps: the map is being modified concurrently`);
    }
    if (mapLookupElem(map.fd, next, chunk.valueSlot())) {
      next.copy(chunk.buf, chunk.n * keySize);
      chunk.n++;
      total++;
      if (chunk.room === 0) {
        await chunk.flush(sink);
        chunk = new KvChunk(cap, keySize, map.valueStride);
      }
    }
    [cur, next] = [next, cur];
  }
  await chunk.flush(sink);
  return total;
}

function restoreKv(fd: number, meta: RestoreMeta, chunk: Buffer, env: RestoreEnv, valueBytes: (n: number, values: Buffer) => Buffer): number {
  const elem = meta.keySize + meta.valueStride;
  if (chunk.length % elem !== 0) {
    throw new Error(`data size ${chunk.length} is not a multiple of the element size ${elem}`);
  }
  const n = chunk.length / elem;
  if (n === 0) return 0;
  const keys = chunk.subarray(0, n * meta.keySize);
  const values = valueBytes(n, chunk.subarray(n * meta.keySize));
  const stride = values.length / n;
  if (!env.forceIterate && hasBatchOp(meta.typeId, 'update', () => mapBatchProbe(fd, 'update'))) {
    if (env.inFlight) env.inFlight(new UpdateBatch(fd).updateAsync(keys, values, n));
    else new UpdateBatch(fd).update(keys, values, n);
    return n;
  }
  for (let i = 0; i < n; i++) {
    mapUpdateElem(fd, keys.subarray(i * meta.keySize, (i + 1) * meta.keySize), values.subarray(i * stride, (i + 1) * stride));
  }
  return n;
}

/** Data members: n keys (key_size each), then n values (value stride each). */
export const keyedStrategy: Strategy<'kv'> = {
  layout: 'kv',
  // the syscalls read and write per-CPU values as one slot per possible CPU
  valueStride: (type, valueSize, cpus) => valueStride(valueSize, type.percpu, cpus),

  async dump(map, env, begin) {
    const sink = await begin({});
    if (!env.forceIterate && hasBatchOp(map.info.type, 'lookup', () => mapBatchProbe(map.fd, 'lookup'))) {
      return dumpBatch(map, env, sink);
    }
    return dumpIterate(map, env, sink);
  },

  restoreChunk(fd, meta, chunk, env) {
    // The engine refused a CPU-count mismatch up front unless percpu.cpu_mismatch allows it.
    const remap = meta.valueStride !== meta.valueSize && env.archiveCpus !== env.localCpus;
    return restoreKv(fd, meta, chunk, env, (n, values) =>
      remap ? remapPerCpuValues(values, n, meta.valueSize, env.archiveCpus, env.localCpus) : values);
  },
};

