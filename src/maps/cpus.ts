import { readFileSync } from 'node:fs';

/**
 * What restore does when per-CPU values were dumped on a host with another possible-CPU count
 * (config percpu.cpu_mismatch): refuse, or re-lay them with remapPerCpuValues.
 */
export type CpuMismatch = 'error' | 'zero-fill';

/**
 * Number of CPUs in a kernel CPU list ("0-3,5,7-8" → 7): the set bits, as the kernel's
 * num_possible_cpus() (cpumask_weight) and libbpf's libbpf_num_possible_cpus() count them.
 * Per-CPU map values hold one slot per possible CPU, so with holes in the list ("0,2-3") the
 * highest id + 1 would be wrong.
 */
export function parseCpuList(text: string): number {
  const ranges: [number, number][] = [];
  for (const part of text.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`cannot parse CPU list "${text.trim()}"`);
    const lo = Number(m[1]);
    const hi = Number(m[2] ?? m[1]);
    if (hi < lo) throw new Error(`cannot parse CPU list "${text.trim()}": range ${part.trim()} is reversed`);
    ranges.push([lo, hi]);
  }
  // Count each CPU once even if ranges overlap.
  ranges.sort((a, b) => a[0] - b[0]);
  let n = 0;
  let next = 0; // first id not yet counted
  for (const [lo, hi] of ranges) {
    const from = Math.max(lo, next);
    if (hi >= from) n += hi - from + 1;
    next = Math.max(next, hi + 1);
  }
  return n;
}

let cached: number | undefined;
/** Possible CPUs of this host (/sys/devices/system/cpu/possible): the one count every layer uses. */
export function possibleCpus(): number {
  cached ??= parseCpuList(readFileSync('/sys/devices/system/cpu/possible', 'utf8'));
  return cached;
}

/** Per-CPU maps carry round_up(value_size, 8) bytes per possible CPU. */
export function valueStride(valueSize: number, percpu: boolean, cpus: number): number {
  return percpu ? Math.ceil(valueSize / 8) * 8 * cpus : valueSize;
}

/**
 * Re-lay per-CPU values dumped on a host with `from` possible CPUs for a host with `to`:
 * slot i (the i-th possible CPU, as the kernel lays them out) keeps its value for i < min(from, to);
 * slots the source did not have start zeroed; slots the destination lacks are dropped.
 * (percpu.cpu_mismatch: zero-fill)
 */
export function remapPerCpuValues(values: Buffer, n: number, valueSize: number, from: number, to: number): Buffer {
  const slot = Math.ceil(valueSize / 8) * 8;
  const inStride = slot * from;
  const outStride = slot * to;
  if (values.length !== n * inStride) throw new Error(`per-CPU values: expected ${n * inStride} bytes, got ${values.length}`);
  const out = Buffer.alloc(n * outStride);
  const keep = Math.min(from, to) * slot;
  for (let i = 0; i < n; i++) values.copy(out, i * outStride, i * inStride, i * inStride + keep);
  return out;
}
