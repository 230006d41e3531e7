/**
 * Every BPF map type, what user space can do with its contents, and bpfcr's default policy.
 * The strategy that moves a type's contents lives in strategies/ (one module per family).
 */

/** What to do with a map at dump time. */
export type Policy = 'content' | 'empty' | 'refuse';

/** How the contents of a family are read and written back (see strategies/index.ts). */
/**
 * local-storage: TASK/SK/INODE/CGRP_STORAGE, one value per owner, carried for the owners of the dumped
 * process tree (src/maps/owners.ts).
 */
export type Family = 'keyed' | 'queue' | 'map-in-map' | 'metadata-only' | 'local-storage';

export interface MapTypeInfo {
  id: number;
  /** lowercase name without the BPF_MAP_TYPE_ prefix, as bpftool prints it */
  name: string;
  family: Family;
  percpu: boolean;
  defaultPolicy: Policy;
  /** Why content cannot be carried (metadata-only family) — quoted in refusals. */
  why?: string;
  /** false when the type cannot be recreated from user space even empty. */
  recreatable?: boolean;
  /**
   * Flags the kernel adds to map_flags by itself and rejects in MAP_CREATE (DEVMAP sets
   * BPF_F_RDONLY_PROG on create, then reports it): cleared when recreating.
   */
  kernelSetFlags?: number;
  /**
   * Every key 0..max_entries-1 always exists (arrays): a dump of its contents holds exactly
   * max_entries elements, so an archive must carry the data for the memory the map takes.
   */
  dense?: boolean;
  /**
   * What max_entries counts when it is not elements (src/engine/budget.ts): bytes of a ring
   * buffer, pages of an arena.
   */
  maxEntriesUnit?: 'bytes' | 'pages';
}

const BPF_F_RDONLY_PROG = 1 << 7;

const REF = (what: string): string =>
  `its values are references to ${what} that cannot be recreated from a dump`;

const TABLE: MapTypeInfo[] = [
  { id: 1, name: 'hash', family: 'keyed', percpu: false, defaultPolicy: 'content' },
  { id: 2, name: 'array', family: 'keyed', percpu: false, defaultPolicy: 'content', dense: true },
  { id: 3, name: 'prog_array', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: REF('BPF programs') },
  { id: 4, name: 'perf_event_array', family: 'metadata-only', percpu: false, defaultPolicy: 'empty', why: 'it holds perf event fds; its contents are transient' },
  { id: 5, name: 'percpu_hash', family: 'keyed', percpu: true, defaultPolicy: 'content' },
  { id: 6, name: 'percpu_array', family: 'keyed', percpu: true, defaultPolicy: 'content', dense: true },
  { id: 7, name: 'stack_trace', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: 'stack ids are assigned by the kernel and cannot be written back' },
  { id: 8, name: 'cgroup_array', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: REF('cgroups') },
  { id: 9, name: 'lru_hash', family: 'keyed', percpu: false, defaultPolicy: 'content' },
  { id: 10, name: 'lru_percpu_hash', family: 'keyed', percpu: true, defaultPolicy: 'content' },
  { id: 11, name: 'lpm_trie', family: 'keyed', percpu: false, defaultPolicy: 'content' },
  { id: 12, name: 'array_of_maps', family: 'map-in-map', percpu: false, defaultPolicy: 'content' },
  { id: 13, name: 'hash_of_maps', family: 'map-in-map', percpu: false, defaultPolicy: 'content' },
  { id: 14, name: 'devmap', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: REF('network devices and XDP programs'), kernelSetFlags: BPF_F_RDONLY_PROG },
  { id: 15, name: 'sockmap', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: REF('sockets') },
  { id: 16, name: 'cpumap', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: REF('XDP programs') },
  { id: 17, name: 'xskmap', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: REF('AF_XDP sockets') },
  { id: 18, name: 'sockhash', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: REF('sockets') },
  { id: 19, name: 'cgroup_storage', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: 'its entries belong to attached programs and cgroups' },
  { id: 20, name: 'reuseport_sockarray', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: REF('sockets') },
  { id: 21, name: 'percpu_cgroup_storage', family: 'metadata-only', percpu: true, defaultPolicy: 'refuse', why: 'its entries belong to attached programs and cgroups' },
  { id: 22, name: 'queue', family: 'queue', percpu: false, defaultPolicy: 'content' },
  { id: 23, name: 'stack', family: 'queue', percpu: false, defaultPolicy: 'content' },
  { id: 24, name: 'sk_storage', family: 'local-storage', percpu: false, defaultPolicy: 'content' },
  { id: 25, name: 'devmap_hash', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: REF('network devices and XDP programs'), kernelSetFlags: BPF_F_RDONLY_PROG },
  { id: 26, name: 'struct_ops', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: 'it is a kernel struct of program pointers that must be re-registered', recreatable: false },
  { id: 27, name: 'ringbuf', family: 'metadata-only', percpu: false, defaultPolicy: 'empty', why: 'its contents are transient events', maxEntriesUnit: 'bytes' },
  { id: 28, name: 'inode_storage', family: 'local-storage', percpu: false, defaultPolicy: 'content' },
  { id: 29, name: 'task_storage', family: 'local-storage', percpu: false, defaultPolicy: 'content' },
  { id: 30, name: 'bloom_filter', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: 'its bits cannot be read (lookup is only a membership test)' },
  { id: 31, name: 'user_ringbuf', family: 'metadata-only', percpu: false, defaultPolicy: 'empty', why: 'its contents are transient events', maxEntriesUnit: 'bytes' },
  { id: 32, name: 'cgrp_storage', family: 'local-storage', percpu: false, defaultPolicy: 'content' },
  { id: 33, name: 'arena', family: 'metadata-only', percpu: false, defaultPolicy: 'refuse', why: 'its pages are reachable only through mmap by the owning program', maxEntriesUnit: 'pages' },
];

const BY_ID = new Map(TABLE.map((t) => [t.id, t]));
const BY_NAME = new Map(TABLE.map((t) => [t.name, t]));

export function mapTypeById(id: number): MapTypeInfo {
  return BY_ID.get(id) ?? {
    id, name: `type_${id}`, family: 'metadata-only', percpu: false, defaultPolicy: 'refuse',
    why: 'this map type is unknown to this version of bpfcr', recreatable: false,
  };
}

/** Accepts "hash", "HASH" or "BPF_MAP_TYPE_HASH". */
export function mapTypeByName(name: string): MapTypeInfo | undefined {
  return BY_NAME.get(name.toLowerCase().replace(/^bpf_map_type_/, ''));
}

export function allMapTypes(): readonly MapTypeInfo[] {
  return TABLE;
}
