/**
 * TASK/SK/INODE/CGRP_STORAGE: one value per owner (task, socket, inode, cgroup), looked up and
 * written back by an fd of the owner (src/maps/owners.ts). The dump tries every owner of its kind in
 * the checkpointed tree; entries of owners outside it stay behind (counted where the kernel lets
 * those owners be enumerated). Values go back only once the owners exist again: in a CRIU restore,
 * at post-restore (src/criu/storage.ts); a plain `bpfcr restore` creates the map empty.
 */
import { closeSync } from 'node:fs';
import { mapLookupElem, mapUpdateElem } from '../../syscall/bpf.js';
import { ownerKindOf } from '../owners.js';
import type { Strategy } from './strategy.js';

/** Data members: records of u16 reference length, the owner reference (UTF-8), the value. */
export const MAX_REF = 4096;

/** Parse a data member into its records; throws naming the record on a malformed one. */
export function ownerRecords(chunk: Buffer, valueSize: number): { ref: string; value: Buffer }[] {
  const out: { ref: string; value: Buffer }[] = [];
  for (let p = 0; p < chunk.length;) {
    if (p + 2 > chunk.length) throw new Error(`record ${out.length + 1}: truncated at byte ${p}`);
    const len = chunk.readUInt16LE(p);
    if (len === 0 || len > MAX_REF || p + 2 + len + valueSize > chunk.length) throw new Error(`record ${out.length + 1}: bad reference length ${len} at byte ${p}`);
    out.push({ ref: chunk.toString('utf8', p + 2, p + 2 + len), value: chunk.subarray(p + 2 + len, p + 2 + len + valueSize) });
    p += 2 + len + valueSize;
  }
  return out;
}

export const localStorageStrategy: Strategy<'owners'> = {
  layout: 'owners',
  valueStride: (_type, valueSize) => valueSize,

  async dump(map, env, begin) {
    const kind = ownerKindOf(map.type.id);
    if (!kind) throw new Error(`map type ${map.type.name} has no owner kind`);
    const { valueSize } = map.info;
    const key = Buffer.alloc(4);
    const value = Buffer.alloc(valueSize);
    const has = (fd: number): boolean => {
      key.writeInt32LE(fd);
      return mapLookupElem(map.fd, key, value);
    };
    const records: Buffer[] = [];
    let leftBehind: number | string = 'the dump had no process tree (a map selected by pin or id): entries belong to owners that are not carried';
    if (env.owners) {
      for (const o of env.owners.of(kind)) {
        if (!has(o.fd)) continue;
        const ref = Buffer.from(o.ref);
        const head = Buffer.alloc(2);
        head.writeUInt16LE(ref.length);
        records.push(Buffer.concat([head, ref, value]));
      }
      let n = 0;
      const outside = env.owners.outside(kind, (fd) => { if (has(fd)) n++; });
      leftBehind = typeof outside === 'number' ? n : outside;
    }
    const sink = await begin({
      owners: { kind, carried: records.length, ...(typeof leftBehind === 'number' ? { leftBehind } : { leftBehindWhy: leftBehind }) },
    });
    let part: Buffer[] = [];
    let bytes = 0;
    for (const r of records) {
      if (bytes + r.length > env.chunkBytes && part.length) {
        await sink.write(part);
        part = [];
        bytes = 0;
      }
      part.push(r);
      bytes += r.length;
    }
    if (part.length) await sink.write(part);
    return records.length;
  },

  restoreChunk(fd, meta, chunk, env) {
    const records = ownerRecords(chunk, meta.valueSize);
    if (!env.owner) return records.length; // the owners do not exist yet: written at post-restore
    const key = Buffer.alloc(4);
    for (const r of records) {
      const owner = env.owner.open(r.ref);
      try {
        key.writeInt32LE(owner);
        mapUpdateElem(fd, key, r.value);
      } catch (e) {
        throw new Error(`the value of owner "${r.ref}": ${(e as Error).message}`);
      } finally {
        closeSync(owner);
      }
    }
    return records.length;
  },
};
