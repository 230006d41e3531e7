/** Types whose contents cannot be carried (policy `empty`): recreated from metadata alone. */
import type { Strategy } from './strategy.js';

/** No data members. */
export const metadataOnlyStrategy: Strategy<'none'> = {
  layout: 'none',
  valueStride: (_type, valueSize) => valueSize,
  async dump(_map, _env, begin) {
    await begin({});
    return 0;
  },
  restoreChunk(_fd, meta) {
    throw new Error(`map ${meta.name} has layout none but the archive holds data for it`);
  },
};
