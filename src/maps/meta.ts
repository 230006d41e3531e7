/**
 * How a map's data members are laid out: each strategy declares its own (strategies/, one per
 * family: kv, values, kv-mapref, none). Each data member (chunk) holds `n` whole elements.
 */
import type { Layout } from './strategies/index.js';
import type { InnerTemplate, OwnersSummary } from './strategies/strategy.js';

export type { Layout };

/** Per-map metadata: written as maps/NNNN/meta.json before the map's data members. */
export interface MapMeta {
  index: number;
  /** map id at dump time (ids are per boot: informational) */
  id: number;
  name: string;
  type: string;
  typeId: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** u64 as a decimal string (JSON numbers lose precision above 2^53) */
  mapExtra: string;
  frozen: boolean;
  policy: 'content' | 'empty';
  btf: { id: number; keyTypeId: number; valueTypeId: number } | null;
  layout: Layout;
  /** bytes per value in data members, as the map's strategy computes it (Strategy.valueStride):
   *  value_size, or round_up(value_size, 8) × possibleCpus for per-CPU maps */
  valueStride: number;
  /** ARRAY/HASH_OF_MAPS: the inner-map template the outer map is created with */
  innerTemplate?: InnerTemplate;
  /** local-storage maps (layout "owners"): whose entries were carried, and those left behind */
  owners?: OwnersSummary;
  /** true when a process fd or --map-id selected it (restore pins it); false for inner-only maps */
  top: boolean;
  /** every pid/fd that held the map at dump time */
  refs: { pid: number; fd: number }[];
}

/** The manifest's record of a map: its meta plus what the dump found. */
export interface MapRecord extends MapMeta {
  entries: number;
  chunks: number;
}

export const metaMember = (index: number): string => `maps/${String(index).padStart(4, '0')}/meta.json`;
export const chunkMember = (index: number, chunk: number): string =>
  `maps/${String(index).padStart(4, '0')}/data-${String(chunk).padStart(6, '0')}.bin`;
export const btfMember = (btfId: number): string => `btf/${btfId}.btf`;

const MEMBER_RE = /^maps\/(\d{4})\/(meta\.json|data-(\d{6})\.bin)$/;
export function parseMapMember(name: string): { index: number; chunk?: number } | undefined {
  const m = MEMBER_RE.exec(name);
  if (!m) return undefined;
  return m[3] === undefined ? { index: Number(m[1]) } : { index: Number(m[1]), chunk: Number(m[3]) };
}

export { mapLabel } from './map-error.js';
