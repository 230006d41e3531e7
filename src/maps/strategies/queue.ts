/**
 * QUEUE and STACK: no keys, no get_next_key. The only way to read them is to pop everything
 * (LOOKUP_AND_DELETE with a NULL key) and push every value back, leaving the live map as it was;
 * queue-journal.ts does both so that a dump killed in between cannot lose a value. Values are
 * stored in push order (oldest first): a queue pops in push order, a stack pops newest first and
 * is reversed. Restore pushes them in stored order.
 */
import { addr, ValueOps } from '../../syscall/bpf.js';
import { dumpQueue } from '../queue-journal.js';
import type { Strategy } from './strategy.js';

/** Data members: n values in push order. */
export const queueStrategy: Strategy<'values'> = {
  layout: 'values',
  valueStride: (_type, valueSize) => valueSize,

  async dump(map, env, begin) {
    const sink = await begin({});
    const { valueSize } = map.info;
    const perChunk = Math.max(1, Math.floor(env.chunkBytes / Math.max(valueSize, 1)));
    return dumpQueue({ fd: map.fd, ...map.info }, map.label, perChunk, (part) => sink.write([part]));
  },

  restoreChunk(fd, meta, chunk) {
    if (chunk.length % meta.valueSize !== 0) {
      throw new Error(`data size ${chunk.length} is not a multiple of the value size ${meta.valueSize}`);
    }
    const n = chunk.length / meta.valueSize;
    // one attr for the whole chunk, pointed at each value in turn (the chunk stays alive meanwhile)
    const ops = new ValueOps(fd);
    const base = Number(addr(chunk));
    for (let i = 0; i < n; i++) ops.at(base + i * meta.valueSize).push();
    return n;
  },
};
