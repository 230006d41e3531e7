/**
 * Batch support against the real kernel: the zero-count probe says yes for the keyed map types
 * and ENOTSUPP (524) for a type without batch ops, and touches nothing; the keyed strategy then
 * reads and writes through the batch path with the trimmed attrs.
 */
import test from 'ava';
import { closeFd, mapBatchProbe, mapCreate, mapGetNextKey, mapLookupElem, mapUpdateElem } from '../../src/syscall/bpf.js';
import { BpfError, ENOTSUPP, isBpfErrno } from '../../src/syscall/errors.js';
import { keyedStrategy } from '../../src/maps/strategies/keyed.js';
import { mapTypeByName } from '../../src/maps/types.js';
import { mapInfo } from '../../src/syscall/bpf.js';
import type { MapMeta } from '../../src/maps/meta.js';

test.before(() => {
  if (process.getuid?.() !== 0) throw new Error('bpfcr tests need root (real bpf(2))');
});

const BPF_F_NO_PREALLOC = 1;

function create(type: string, keySize: number, valueSize: number, maxEntries: number, flags = 0): number {
  return mapCreate({ type: mapTypeByName(type)!.id, keySize, valueSize, maxEntries, flags, name: `t_${type}`.slice(0, 15) });
}

test('zero-count batch probe: supported for keyed types, ENOTSUPP for QUEUE, map untouched', (t) => {
  const keyed: [string, number, number][] = [['hash', 4, 0], ['array', 4, 0], ['lru_hash', 4, 0], ['percpu_hash', 4, 0], ['percpu_array', 4, 0], ['lpm_trie', 8, BPF_F_NO_PREALLOC]];
  for (const [type, keySize, flags] of keyed) {
    const fd = create(type, keySize, 8, 16, flags);
    try {
      t.notThrows(() => mapBatchProbe(fd, 'lookup'), `${type} lookup`);
      t.notThrows(() => mapBatchProbe(fd, 'update'), `${type} update`);
    } finally {
      closeFd(fd);
    }
  }
  const q = create('queue', 0, 8, 4);
  try {
    for (const op of ['lookup', 'update'] as const) {
      const e = t.throws(() => mapBatchProbe(q, op), { instanceOf: BpfError });
      t.true(isBpfErrno(e, ENOTSUPP), e?.message);
      t.is(e?.code, 'ENOTSUPP');
    }
  } finally {
    closeFd(q);
  }
  const h = create('hash', 4, 8, 16);
  try {
    mapBatchProbe(h, 'update');
    t.false(mapGetNextKey(h, null, Buffer.alloc(4)), 'a probe writes nothing');
  } finally {
    closeFd(h);
  }
});

test('keyed strategy round-trips a hash map through batch ops', async (t) => {
  const src = create('hash', 4, 8, 64);
  const dst = create('hash', 4, 8, 64);
  try {
    for (let i = 0; i < 40; i++) {
      const k = Buffer.alloc(4); k.writeUInt32LE(i);
      const v = Buffer.alloc(8); v.writeBigUInt64LE(BigInt(i) * 1000n);
      mapUpdateElem(src, k, v);
    }
    const info = mapInfo(src);
    const type = mapTypeByName('hash')!;
    const chunks: Buffer[] = [];
    const n = await keyedStrategy.dump(
      { fd: src, info, type, label: 'src', valueStride: 8 },
      { chunkBytes: 1 << 20, forceIterate: false, innerMap: () => Promise.reject(new Error('no')), innerTemplate: () => undefined },
      () => Promise.resolve({ write: (parts: Buffer[]) => { chunks.push(Buffer.concat(parts)); return Promise.resolve(); } }),
    );
    t.is(n, 40);
    const meta = { typeId: type.id, keySize: 4, valueSize: 8, valueStride: 8 } as MapMeta;
    const env = { localCpus: 1, archiveCpus: 1, forceIterate: false, innerFd: () => -1 };
    t.is(chunks.reduce((sum, c) => sum + keyedStrategy.restoreChunk(dst, meta, c, env), 0), 40);
    for (let i = 0; i < 40; i++) {
      const k = Buffer.alloc(4); k.writeUInt32LE(i);
      const v = Buffer.alloc(8);
      t.true(mapLookupElem(dst, k, v));
      t.is(v.readBigUInt64LE(0), BigInt(i) * 1000n);
    }
  } finally {
    closeFd(src);
    closeFd(dst);
  }
});
