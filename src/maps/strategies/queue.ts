/**
 * QUEUE and STACK: no keys, no get_next_key. The only way to read them is to pop everything
 * (LOOKUP_AND_DELETE with a NULL key) — so the dump pushes every value straight back, leaving
 * the live map as it was. Values are stored in push order (oldest first): a queue pops in push
 * order, a stack pops newest first and is reversed. Restore pushes them in stored order.
 */
import { mapLookupAndDeleteElem, mapUpdateElem } from '../../syscall/bpf.js';
import { MapError } from '../map-error.js';
import type { Strategy } from './strategy.js';

/** Data members: n values in push order. */
export const queueStrategy: Strategy<'values'> = {
  layout: 'values',
  valueStride: (_type, valueSize) => valueSize,

  async dump(map, env, begin) {
    const sink = await begin({});
    const { valueSize, maxEntries } = map.info;
    const popped: Buffer[] = [];
    let buf = Buffer.allocUnsafe(valueSize);
    // Bounded: a program pushing while we pop must not keep us here forever.
    while (popped.length < maxEntries && mapLookupAndDeleteElem(map.fd, null, buf)) {
      popped.push(buf);
      buf = Buffer.allocUnsafe(valueSize);
    }
    const pushOrder = map.type.name === 'stack' ? popped.reverse() : popped;
    for (let i = 0; i < pushOrder.length; i++) {
      try {
        mapUpdateElem(map.fd, null, pushOrder[i]!);
      } catch (e) {
        throw new MapError(`${map.label}: could not push back value ${i + 1} of ${pushOrder.length} after reading it: ${(e as Error).message}`, { cause: e });
      }
    }
    const perChunk = Math.max(1, Math.floor(env.chunkBytes / Math.max(valueSize, 1)));
    for (let i = 0; i < pushOrder.length; i += perChunk) {
      const part = pushOrder.slice(i, i + perChunk);
      await sink.write(part);
    }
    return pushOrder.length;
  },

  restoreChunk(fd, meta, chunk) {
    if (chunk.length % meta.valueSize !== 0) {
      throw new Error(`data size ${chunk.length} is not a multiple of the value size ${meta.valueSize}`);
    }
    const n = chunk.length / meta.valueSize;
    for (let i = 0; i < n; i++) mapUpdateElem(fd, null, chunk.subarray(i * meta.valueSize, (i + 1) * meta.valueSize));
    return n;
  },
};
