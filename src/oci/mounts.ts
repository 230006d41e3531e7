/**
 * Container path → host path, through the bundle's config.json `mounts`.
 *
 * At poststop the container's processes (and so /proc/PID/root) are gone; at prestart runc has
 * not pivoted into the rootfs yet. config.json is what both stages can read, and it says where
 * each container path comes from: a bind mount's `source` on the host.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { absolutePathProblem, isUnder, relativeTo } from './state.js';

export interface OciMount {
  destination: string;
  source?: string;
  type?: string;
  options: string[];
}

/** Largest config.json read (podman's are a few KiB). */
const MAX_CONFIG_BYTES = 16 << 20;

/** The `mounts` of BUNDLE/config.json, in order. Throws a one-line Error. */
export function readBundleMounts(bundle: string): OciMount[] {
  const path = join(bundle, 'config.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read the bundle's ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  if (text.length > MAX_CONFIG_BYTES) throw new Error(`${path}: larger than ${MAX_CONFIG_BYTES} bytes`);
  let cfg: unknown;
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not valid JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  return parseMounts(cfg, path);
}

export function parseMounts(cfg: unknown, where = 'config.json'): OciMount[] {
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new Error(`${where}: not a JSON object`);
  const m = (cfg as Record<string, unknown>)['mounts'];
  if (m === undefined) return [];
  if (!Array.isArray(m)) throw new Error(`${where}: "mounts" is not an array`);
  return m.map((x, i) => {
    if (typeof x !== 'object' || x === null) throw new Error(`${where}: mounts[${i}] is not an object`);
    const o = x as Record<string, unknown>;
    if (typeof o['destination'] !== 'string') throw new Error(`${where}: mounts[${i}].destination is not a string`);
    const options = Array.isArray(o['options']) ? (o['options'] as unknown[]).filter((s): s is string => typeof s === 'string') : [];
    return {
      destination: normalizeDestination(o['destination'] as string),
      ...(typeof o['source'] === 'string' ? { source: o['source'] as string } : {}),
      ...(typeof o['type'] === 'string' ? { type: o['type'] as string } : {}),
      options,
    };
  });
}

/** "/a//b/" → "/a/b" (runtimes accept both; we compare component-wise). */
function normalizeDestination(d: string): string {
  const parts = d.split('/').filter((c) => c !== '' && c !== '.');
  return '/' + parts.join('/');
}

export function isBindMount(m: OciMount): boolean {
  return m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind');
}

/**
 * Does the container see this mount read-only? As the runtime applies the options: the last of
 * `ro` / `rw` wins; `rro` (runc: recursively read-only) counts as `ro`.
 */
export function isReadOnly(m: OciMount): boolean {
  let ro = false;
  for (const o of m.options) {
    if (o === 'ro' || o === 'rro') ro = true;
    else if (o === 'rw' || o === 'rrw') ro = false;
  }
  return ro;
}

export interface HostLocation {
  /** the container path asked for */
  containerPath: string;
  mount: OciMount;
  /** the mount's host source (absolute) */
  source: string;
  /** path of containerPath below the mount's destination ('' = the mount itself) */
  rel: string;
}

/**
 * Where a container path lives on the host. The mount that decides is the last one in
 * config.json order whose destination covers the path (later mounts are mounted over earlier
 * ones). Refuses, with the reason, anything that is not below a bind mount of a host path.
 */
export function hostLocation(containerPath: string, mounts: readonly OciMount[]): HostLocation {
  const problem = absolutePathProblem(containerPath);
  if (problem) throw new Error(`pin path ${containerPath}: ${problem}`);
  let found: OciMount | undefined;
  for (const m of mounts) if (isUnder(containerPath, m.destination)) found = m;
  if (!found || found.destination === '/') {
    throw new Error(`pin path ${containerPath}: not inside any bind mount of the container (it would be in the container's own filesystem, which a bpffs pin cannot be): bind-mount a host bpffs directory there, e.g. -v /sys/fs/bpf/NAME:${containerPath}`);
  }
  if (found.type === 'bpf') {
    throw new Error(`pin path ${containerPath}: inside a private bpffs mounted at ${found.destination} in the container, which vanishes with the container; bind-mount a host bpffs directory instead (-v /sys/fs/bpf/NAME:${found.destination})`);
  }
  if (!isBindMount(found)) {
    throw new Error(`pin path ${containerPath}: inside a ${found.type ?? 'non-bind'} mount at ${found.destination}, not a bind mount of a host bpffs directory`);
  }
  const source = found.source;
  if (!source || !source.startsWith('/')) {
    throw new Error(`pin path ${containerPath}: the bind mount at ${found.destination} has no absolute host source (${JSON.stringify(source ?? null)})`);
  }
  return { containerPath, mount: found, source, rel: relativeTo(containerPath, found.destination) };
}
