/**
 * What a restore may cost (config restore.memory_budget / restore.host_memory_budget, restore's
 * --memory-budget / --host-memory-budget). An archive's metadata alone decides how much kernel
 * memory its maps take — a 10 KB archive can describe terabytes of preallocated maps — so restore
 * estimates it from the metadata and refuses, before the first map is created, what does not fit.
 *
 * The estimates (documented in config/config.yaml and docs/archive-format.md section 11):
 * - a map: max_entries × (key_size + value bytes + MAP_ELEMENT_OVERHEAD), value bytes being
 *   round_up(value_size, 8) × this host's possible CPUs for per-CPU maps; a ring buffer its
 *   max_entries bytes, an arena max_entries pages. An upper bound for preallocated hash maps (the
 *   kernel's own figure, fdinfo memlock, for a 1M-entry 8/16 B hash map on 6.18: 88 B/element,
 *   charged 104) and generous for arrays (8 B/element for a 4/8 B array, charged 92);
 * - an inner-map template: the same (it exists while its outer map is created);
 * - a BTF object: twice its blob (the kernel keeps the blob and its parsed types).
 * Host memory: the largest member held at once (a data chunk together with its per-CPU re-layout
 * when CPU counts differ, a BTF blob) plus manifest.json.
 */
import { type Config } from '../config/config.js';
import { formatSize } from '../config/size.js';
import type { MapMeta } from '../maps/meta.js';
import { valueStride } from '../maps/cpus.js';
import { mapTypeById } from '../maps/types.js';

/** Bytes per element the kernel adds to key and value (hash element header and bucket), rounded up. */
export const MAP_ELEMENT_OVERHEAD = 80;
/** The kernel refuses a larger BTF blob (BTF_MAX_SIZE in kernel/bpf/btf.c). */
export const BTF_MAX_SIZE = 16 << 20;
const PAGE = 4096;

type Shape = Pick<MapMeta, 'typeId' | 'keySize' | 'valueSize' | 'maxEntries'>;

/** Estimated kernel memory of a map of this shape created on a host with `cpus` possible CPUs. */
export function mapKernelBytes(m: Shape, cpus: number): number {
  const t = mapTypeById(m.typeId);
  if (t.maxEntriesUnit === 'bytes') return m.maxEntries + PAGE;
  if (t.maxEntriesUnit === 'pages') return m.maxEntries * PAGE;
  return m.maxEntries * (m.keySize + valueStride(m.valueSize, t.percpu, cpus) + MAP_ELEMENT_OVERHEAD);
}

export function btfKernelBytes(size: number): number {
  return 2 * size;
}

/** A sum of estimates, remembering its largest part for the message. */
export class Tally {
  total = 0;
  count = 0;
  largest: { what: string; bytes: number } | undefined;
  add(what: string, bytes: number): void {
    this.total += bytes;
    this.count++;
    if (!this.largest || bytes > this.largest.bytes) this.largest = { what, bytes };
  }
  /** The largest part only (host memory: members are held one at a time). */
  max(what: string, bytes: number): void {
    if (!this.largest || bytes > this.largest.bytes) this.largest = { what, bytes };
    this.total = Math.max(this.total, bytes);
  }
}

const CONFIG_HINT = (cfg: Config): string => (cfg.source === 'built-in defaults' ? '/etc/bpfcr/config.yaml' : cfg.source);

/**
 * Refuse, in one line, a restore whose kernel-memory estimate is over the budget. `sofar`: the
 * tally covers only the maps met so far (an archive read from a stream: its maps are charged as
 * they come, so the budget still holds at any moment).
 */
export function checkKernelBudget(label: string, t: Tally, cfg: Config, sofar = false): void {
  if (t.total <= cfg.memoryBudget) return;
  const largest = t.largest ? `; the largest, ${t.largest.what}: ${formatSize(t.largest.bytes)}` : '';
  throw new Error(
    `archive ${label}: restoring it needs ${sofar ? 'at least ' : ''}an estimated ${formatSize(t.total)} of kernel memory ` +
      `(${t.count} map(s), inner-map template(s) and BTF object(s)${sofar ? ' so far' : ''}${largest}), more than the restore memory budget of ${formatSize(cfg.memoryBudget)}; ` +
      `raise it with --memory-budget SIZE or restore.memory_budget in ${CONFIG_HINT(cfg)}`,
  );
}

/** Refuse, in one line, a member that would make bpfcr hold more memory than the host budget. */
export function checkHostBudget(label: string, t: Tally, cfg: Config): void {
  if (t.total <= cfg.hostMemoryBudget) return;
  const largest = t.largest ? ` (${t.largest.what}: ${formatSize(t.largest.bytes)})` : '';
  throw new Error(
    `archive ${label}: restoring it needs an estimated ${formatSize(t.total)} of memory in bpfcr${largest}, more than the ` +
      `host memory budget of ${formatSize(cfg.hostMemoryBudget)}; raise it with --host-memory-budget SIZE or ` +
      `restore.host_memory_budget in ${CONFIG_HINT(cfg)}`,
  );
}
