/**
 * The per-family strategy table. Adding a map type = a row in ../types.ts (family, default
 * policy) plus, for a new family, one module here and its row below: the strategy declares its
 * layout and value stride, and the layouts an archive may name follow from this table.
 */
import type { Family, Policy } from '../types.js';
import { keyedStrategy } from './keyed.js';
import { localStorageStrategy } from './local-storage.js';
import { mapInMapStrategy } from './map-in-map.js';
import { metadataOnlyStrategy } from './metadata-only.js';
import { queueStrategy } from './queue.js';
import type { Strategy } from './strategy.js';

const BY_FAMILY = {
  'keyed': keyedStrategy,
  'queue': queueStrategy,
  'map-in-map': mapInMapStrategy,
  'metadata-only': metadataOnlyStrategy,
  'local-storage': localStorageStrategy,
} as const satisfies Record<Family, Strategy>;

/** How a map's data members are laid out (meta.json `layout`): one per strategy. */
export type Layout = (typeof BY_FAMILY)[Family]['layout'];

const BY_LAYOUT: ReadonlyMap<string, Strategy<Layout>> = new Map(Object.values(BY_FAMILY).map((s) => [s.layout, s]));

/** Every layout a meta.json may name. */
export const LAYOUTS: readonly Layout[] = [...BY_LAYOUT.keys()] as Layout[];

/** The strategy a map is dumped with under a (non-refuse) policy. */
export function strategyFor(family: Family, policy: Exclude<Policy, 'refuse'>): Strategy<Layout> {
  // policy empty keeps the map's metadata only, whatever its family
  return policy === 'empty' ? metadataOnlyStrategy : BY_FAMILY[family];
}

export function strategyForLayout(layout: string): Strategy<Layout> | undefined {
  return BY_LAYOUT.get(layout);
}

export type { Strategy } from './strategy.js';
