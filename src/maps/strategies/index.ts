/**
 * The per-family strategy table. Adding a map type = a row in ../types.ts (family, default
 * policy) plus, for a new family, one module here.
 */
import type { Family, Policy } from '../types.js';
import { keyedStrategy } from './keyed.js';
import { mapInMapStrategy } from './map-in-map.js';
import { metadataOnlyStrategy } from './metadata-only.js';
import { queueStrategy } from './queue.js';
import type { Strategy } from './strategy.js';

const BY_FAMILY: Record<Family, Strategy> = {
  'keyed': keyedStrategy,
  'queue': queueStrategy,
  'map-in-map': mapInMapStrategy,
  'metadata-only': metadataOnlyStrategy,
};

/** The strategy a map is dumped with under a (non-refuse) policy. */
export function strategyFor(family: Family, policy: Exclude<Policy, 'refuse'>): Strategy {
  return policy === 'empty' ? metadataOnlyStrategy : BY_FAMILY[family];
}

export function strategyForLayout(layout: string): Strategy | undefined {
  return Object.values(BY_FAMILY).find((s) => s.layout === layout);
}

export type { Strategy } from './strategy.js';
