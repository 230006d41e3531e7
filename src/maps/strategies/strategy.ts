import type { MapInfoT } from '../../syscall/bpf.js';
import type { MapTypeInfo } from '../types.js';
import type { OwnerKind, OwnerResolver, OwnerSource } from '../owners.js';

/**
 * The inner map an ARRAY/HASH_OF_MAPS is created with (MAP_CREATE's inner_map_fd): learned from
 * an inner map at dump time, or from config inner_templates for an empty outer map.
 */
export interface InnerTemplate { type: number; keySize: number; valueSize: number; maxEntries: number; flags: number }

/** A live map being dumped: our own fd to it plus what the kernel said about it. */
export interface LiveMap {
  fd: number;
  info: MapInfoT;
  type: MapTypeInfo;
  label: string;
  /** bytes per value as the syscalls return it (per-CPU: round_up(value_size, 8) × CPUs) */
  valueStride: number;
}

/** Writes one data member (parts are concatenated). */
export interface ChunkSink {
  write(parts: Buffer[]): Promise<void>;
}

export interface DumpEnv {
  /** maximum bytes per data member */
  chunkBytes: number;
  /** skip batch ops and walk with get_next_key + lookup (tests, broken batch support) */
  forceIterate: boolean;
  /** map-in-map: make sure inner map `id` is in the archive; returns its archive index */
  innerMap(id: number, outer: LiveMap): Promise<{ index: number; template: InnerTemplate }>;
  /** a configured inner-map template for an outer map that is empty */
  innerTemplate(outer: LiveMap): InnerTemplate | undefined;
  /** local-storage maps: the owners of the dumped process tree (absent: no tree, nothing carried) */
  owners?: OwnerSource;
}

/** What a local-storage map's dump found (meta.json `owners`). */
export interface OwnersSummary {
  kind: OwnerKind;
  /** entries carried (one per owner of the tree that had a value) */
  carried: number;
  /** entries of owners outside the tree, where the kernel lets bpfcr enumerate those owners */
  leftBehind?: number;
  /** why the entries left behind could not be counted */
  leftBehindWhy?: string;
}

/** What a strategy adds to the map's meta before its data is written. */
export interface MetaExtra {
  innerTemplate?: InnerTemplate;
  owners?: OwnersSummary;
}

/**
 * What restoreChunk reads of the map's meta.json (MapMeta, ../meta.ts, has these among its
 * fields): the map's name and type, and the sizes its data members were written with.
 */
export interface RestoreMeta {
  name: string;
  typeId: number;
  keySize: number;
  valueSize: number;
  /** bytes per value in the data members (MapMeta.valueStride) */
  valueStride: number;
}

export interface RestoreEnv {
  localCpus: number;
  archiveCpus: number;
  forceIterate: boolean;
  /** fd of an already recreated map, by archive index (map-in-map values) */
  innerFd(index: number): number;
  /**
   * Hand over kernel work still running on a worker thread (batch updates): the engine awaits it
   * before the next member is applied, the map is frozen or used, so reading and verifying the next
   * member overlaps it. Absent: the strategy does its work synchronously.
   */
  inFlight?(work: Promise<void>): void;
  /**
   * local-storage maps: the owners of the restored tree. Absent before the tasks exist (CRIU's
   * pre-restore, `bpfcr restore`): the map is created and its values are written later, or not.
   */
  owner?: OwnerResolver;
}

/**
 * One family of map types: how its contents are read and written back, and how its data members
 * are laid out. `L` is the layout's name as meta.json records it (restore picks the strategy by
 * it); the list of layouts an archive may name is derived from the strategy table (index.ts).
 */
export interface Strategy<L extends string = string> {
  layout: L;
  /**
   * Bytes per value in this layout's data members for a map of `type` with `valueSize`, dumped on
   * a host with `cpus` possible CPUs. Recorded as meta.json's valueStride at dump, checked against
   * the archive's CPU count at restore.
   */
  valueStride(type: MapTypeInfo, valueSize: number, cpus: number): number;
  /**
   * Read the map's contents. Call `begin` exactly once, before the first chunk, to have the
   * meta written (map-in-map needs to dump inner maps first, so the strategy decides when).
   * Returns the number of entries dumped.
   */
  dump(map: LiveMap, env: DumpEnv, begin: (extra: MetaExtra) => Promise<ChunkSink>): Promise<number>;
  /** Write one data member back into the new map; returns the entries it held. */
  restoreChunk(fd: number, meta: RestoreMeta, chunk: Buffer, env: RestoreEnv): number;
}
