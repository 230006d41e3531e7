import { readFileSync } from 'node:fs';

/**
 * Number of possible CPUs as the kernel sizes per-CPU values: highest id in
 * /sys/devices/system/cpu/possible + 1 (libbpf's libbpf_num_possible_cpus does the same).
 */
export function parseCpuList(text: string): number {
  let max = -1;
  for (const part of text.trim().split(',')) {
    if (!part) continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`cannot parse CPU list "${text.trim()}"`);
    max = Math.max(max, Number(m[2] ?? m[1]));
  }
  if (max < 0) throw new Error(`empty CPU list "${text.trim()}"`);
  return max + 1;
}

let cached: number | undefined;
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
 * CPU i keeps its value for i < min(from, to); CPUs the source did not have start zeroed;
 * values of CPUs the destination lacks are dropped. (percpu.cpu_mismatch: zero-fill)
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
