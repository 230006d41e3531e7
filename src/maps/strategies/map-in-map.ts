/**
 * ARRAY_OF_MAPS and HASH_OF_MAPS: a lookup from user space returns the inner map's id. Inner
 * maps are dumped as maps of their own (before the outer, so a one-pass restore has them), and
 * the outer's values are stored as u32 archive indexes, rewritten to the new inner fds on restore.
 *
 * The kernel does not expose the inner-map template the outer was created with; any inner map
 * matches it (the kernel checks type, sizes and flags on insert), so the first one stands in.
 * An empty outer map has none: its template must come from the config.
 */
import { mapGetNextKey, mapLookupElem, mapUpdateElem } from '../../syscall/bpf.js';
import { MapError } from '../map-error.js';
import type { InnerTemplate, Strategy } from './strategy.js';

/** Data members: n keys, then n u32 archive indexes of the inner maps. */
export const mapInMapStrategy: Strategy<'kv-mapref'> = {
  layout: 'kv-mapref',
  valueStride: (_type, valueSize) => valueSize,

  async dump(map, env, begin) {
    const { keySize, maxEntries } = map.info;
    const keys: Buffer[] = [];
    const innerIds: number[] = [];
    let cur = Buffer.alloc(keySize);
    let next = Buffer.alloc(keySize);
    const value = Buffer.alloc(4);
    let first = true;
    let steps = 0;
    while (mapGetNextKey(map.fd, first ? null : cur, next)) {
      first = false;
      if (++steps > 2 * maxEntries + 1024) throw new MapError(`${map.label}: get_next_key walk did not end: the map is being modified concurrently`);
      if (mapLookupElem(map.fd, next, value)) {
        keys.push(Buffer.from(next));
        innerIds.push(value.readUInt32LE(0));
      }
      [cur, next] = [next, cur];
    }

    const indexes = Buffer.alloc(4 * innerIds.length);
    let template: InnerTemplate | undefined;
    for (let i = 0; i < innerIds.length; i++) {
      const inner = await env.innerMap(innerIds[i]!, map);
      indexes.writeUInt32LE(inner.index, 4 * i);
      template ??= inner.template;
    }
    template ??= env.innerTemplate(map);
    if (!template) {
      throw new MapError(`${map.label} is empty, so its inner-map template cannot be learned from the kernel: add inner_templates.${map.info.name || '<name>'} to the config`);
    }
    const sink = await begin({ innerTemplate: template });
    const perChunk = Math.max(1, Math.floor(env.chunkBytes / (keySize + 4)));
    for (let i = 0; i < keys.length; i += perChunk) {
      const ks = keys.slice(i, i + perChunk);
      await sink.write([...ks, indexes.subarray(4 * i, 4 * (i + ks.length))]);
    }
    return keys.length;
  },

  restoreChunk(fd, meta, chunk, env) {
    const elem = meta.keySize + 4;
    if (chunk.length % elem !== 0) throw new Error(`data size ${chunk.length} is not a multiple of ${elem}`);
    const n = chunk.length / elem;
    const value = Buffer.alloc(4);
    for (let i = 0; i < n; i++) {
      value.writeUInt32LE(env.innerFd(chunk.readUInt32LE(n * meta.keySize + 4 * i)));
      mapUpdateElem(fd, chunk.subarray(i * meta.keySize, (i + 1) * meta.keySize), value);
    }
    return n;
  },
};
