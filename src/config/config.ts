/**
 * /etc/bpfcr/config.yaml: per-type and per-map policy overrides and restore options.
 * YAML only checks syntax, so every key and value is validated here with a message that names
 * the file and the key path.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { runDir } from '../paths.js';
import type { CpuMismatch } from '../maps/cpus.js';
import type { InnerTemplate } from '../maps/strategies/strategy.js';
import { mapTypeByName, type MapTypeInfo, type Policy } from '../maps/types.js';
import { termSafe } from '../archive/names.js';
import { parseSize } from './size.js';

export const DEFAULT_CONFIG_PATH = '/etc/bpfcr/config.yaml';

export interface Config {
  /** where the config came from, for messages ("built-in defaults" when no file) */
  source: string;
  typePolicy: Map<number, Policy>;
  mapPolicy: Map<string, Policy>;
  cpuMismatch: CpuMismatch;
  innerTemplates: Map<string, InnerTemplate>;
  /** bpffs directory for CRIU staging pins */
  staging: string;
  /** restore.memory_budget: estimated kernel memory one restore may create (src/engine/budget.ts) */
  memoryBudget: number;
  /** restore.host_memory_budget: memory bpfcr itself may hold for one restore */
  hostMemoryBudget: number;
}

/**
 * Default kernel-memory budget of a restore: what a restore may make the kernel allocate for the
 * maps of one archive. The smaller of 4 GiB (a 10M-entry 8/16 B hash map is estimated at 1.0 GiB)
 * and half of this host's RAM, so that an archive cannot exhaust a small host by its metadata.
 */
export function defaultMemoryBudget(): number {
  return Math.min(4 * 2 ** 30, Math.floor(totalmem() / 2));
}
/**
 * Default host-memory budget: bpfcr holds one member at a time (data chunks are ≤ 8 MiB when bpfcr
 * writes them, BTF blobs ≤ 16 MiB, a manifest a few KiB per map).
 */
export const DEFAULT_HOST_MEMORY_BUDGET = 256 * 2 ** 20;

export function defaultConfig(): Config {
  return {
    source: 'built-in defaults', typePolicy: new Map(), mapPolicy: new Map(), cpuMismatch: 'error',
    innerTemplates: new Map(), staging: '/sys/fs/bpf/bpfcr',
    memoryBudget: defaultMemoryBudget(), hostMemoryBudget: DEFAULT_HOST_MEMORY_BUDGET,
  };
}

export class ConfigError extends Error {
  /** `path`: the key path (keys are the file's words: escaped here); values in `msg` go through quote(). */
  constructor(source: string, path: string, msg: string) {
    super(`config ${termSafe(source)}: ${path ? `${termSafe(path)}: ` : ''}${msg}`);
    this.name = 'ConfigError';
  }
}

/** A value from the file as a message shows it: one line, nothing a terminal would act on. */
function quote(v: unknown): string {
  return typeof v === 'string' ? `"${termSafe(v)}"` : termSafe(JSON.stringify(v) ?? String(v));
}

const POLICIES: readonly Policy[] = ['content', 'empty', 'refuse'];

/**
 * Load the config named by --config, $BPFCR_CONFIG, or the default path if it exists.
 *
 * The parsed document is cached (cacheFile()): importing `yaml` and parsing the file took ~10–40 ms,
 * a good part of a Node start, in every CRIU action and OCI hook of a checkpoint. The cache holds the
 * file's text and is used only for that very text; its document goes through parseConfig() every
 * time, so a hit yields exactly what parsing the file yields.
 */
export async function loadConfig(path?: string): Promise<Config> {
  // BPFCR_CONFIG= (empty) means: built-in defaults, ignore /etc/bpfcr/config.yaml.
  const fromEnv = process.env['BPFCR_CONFIG'];
  const p = path ?? (fromEnv !== undefined ? fromEnv : existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined);
  if (!p) return defaultConfig();
  let text: string;
  try {
    text = readFileSync(p, 'utf8');
  } catch (e) {
    throw new ConfigError(p, '', `cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const cached = readCache(p, text);
  if (cached !== undefined) return parseConfig(cached, p);
  const { parse, YAMLParseError } = await import('yaml');
  let doc: unknown;
  try {
    // logLevel: warnings would reach stderr as multi-line process warnings; the document is
    // checked key by key below anyway
    doc = parse(text, { maxAliasCount: 100, logLevel: 'error' });
  } catch (e) {
    const pos = e instanceof YAMLParseError ? e.linePos?.[0] : undefined;
    // not only YAMLParseError: too many aliases (a "billion laughs" file) is a ReferenceError
    throw new ConfigError(p, pos ? `line ${pos.line} col ${pos.col}` : '', termSafe(String((e as Error).message ?? e).split('\n')[0]!));
  }
  const config = parseConfig(doc, p);
  writeCache(p, text, doc);
  return config;
}

/** The config cache: root-only run dir (tmpfs), one entry, the last file parsed. */
function cacheFile(): string {
  return join(runDir(), 'config-cache.json');
}

interface CacheEntry { path: string; text: string; doc: unknown }

function readCache(path: string, text: string): unknown {
  try {
    const c = JSON.parse(readFileSync(cacheFile(), 'utf8')) as CacheEntry;
    if (c.path === path && c.text === text) return c.doc;
  } catch { /* no cache, or not readable: parse */ }
  return undefined;
}

function writeCache(path: string, text: string, doc: unknown): void {
  try {
    const json = JSON.stringify({ path, text, doc } satisfies CacheEntry);
    // only what survives the JSON round trip (YAML has more types than JSON)
    if (!isDeepStrictEqual(JSON.parse(json).doc, doc)) return;
    mkdirSync(runDir(), { recursive: true, mode: 0o700 });
    const tmp = `${cacheFile()}.${process.pid}`;
    writeFileSync(tmp, json, { mode: 0o600 });
    renameSync(tmp, cacheFile());
  } catch { /* caching is best effort (not root, read-only /run) */ }
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKeys(obj: Record<string, unknown>, allowed: string[], source: string, path: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw new ConfigError(source, path ? `${path}.${k}` : k, `unknown key (expected one of: ${allowed.join(', ')})`);
  }
}

function policyOf(v: unknown, source: string, path: string): Policy {
  if (typeof v !== 'string' || !POLICIES.includes(v as Policy)) {
    throw new ConfigError(source, path, `must be one of ${POLICIES.join(', ')}, got ${quote(v)}`);
  }
  return v as Policy;
}

function typeOf(name: string, source: string, path: string): MapTypeInfo {
  const t = mapTypeByName(name);
  if (!t) throw new ConfigError(source, path, `unknown map type ${quote(name)}`);
  return t;
}

function uint(v: unknown, source: string, path: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new ConfigError(source, path, `must be an unsigned 32-bit integer, got ${quote(v)}`);
  }
  return v;
}

/** A budget: a byte count or a size with a binary unit ("4GiB", "512M"). */
export function size(v: unknown, source: string, path: string): number {
  const n = parseSize(v);
  if (n === undefined) throw new ConfigError(source, path, `must be a size such as 4GiB, 512MiB or a number of bytes, got ${quote(v)}`);
  return n;
}

/** Validate a parsed YAML document (exported for unit tests). */
export function parseConfig(doc: unknown, source: string): Config {
  const cfg = defaultConfig();
  cfg.source = source;
  if (doc === null || doc === undefined) return cfg;
  if (!isObj(doc)) throw new ConfigError(source, '', 'top level must be a mapping');
  checkKeys(doc, ['policy', 'percpu', 'inner_templates', 'staging', 'restore'], source, '');

  const policy = doc['policy'];
  if (policy !== undefined && policy !== null) {
    if (!isObj(policy)) throw new ConfigError(source, 'policy', 'must be a mapping');
    checkKeys(policy, ['types', 'maps'], source, 'policy');
    const types = policy['types'] ?? {};
    if (!isObj(types)) throw new ConfigError(source, 'policy.types', 'must be a mapping of map type → policy');
    for (const [name, v] of Object.entries(types)) {
      const path = `policy.types.${name}`;
      const t = typeOf(name, source, path);
      const pol = policyOf(v, source, path);
      checkPolicyPossible(t, pol, source, path);
      cfg.typePolicy.set(t.id, pol);
    }
    const maps = policy['maps'] ?? {};
    if (!isObj(maps)) throw new ConfigError(source, 'policy.maps', 'must be a mapping of map name → policy');
    for (const [name, v] of Object.entries(maps)) cfg.mapPolicy.set(name, policyOf(v, source, `policy.maps.${name}`));
  }

  const percpu = doc['percpu'];
  if (percpu !== undefined && percpu !== null) {
    if (!isObj(percpu)) throw new ConfigError(source, 'percpu', 'must be a mapping');
    checkKeys(percpu, ['cpu_mismatch'], source, 'percpu');
    const m = percpu['cpu_mismatch'];
    if (m !== undefined) {
      if (m !== 'error' && m !== 'zero-fill') throw new ConfigError(source, 'percpu.cpu_mismatch', `must be "error" or "zero-fill", got ${quote(m)}`);
      cfg.cpuMismatch = m;
    }
  }

  const inner = doc['inner_templates'];
  if (inner !== undefined && inner !== null) {
    if (!isObj(inner)) throw new ConfigError(source, 'inner_templates', 'must be a mapping of outer map name → template');
    for (const [name, v] of Object.entries(inner)) {
      const path = `inner_templates.${name}`;
      if (!isObj(v)) throw new ConfigError(source, path, 'must be a mapping');
      checkKeys(v, ['type', 'key_size', 'value_size', 'max_entries', 'flags'], source, path);
      if (typeof v['type'] !== 'string') throw new ConfigError(source, `${path}.type`, 'must be a map type name');
      cfg.innerTemplates.set(name, {
        type: typeOf(v['type'], source, `${path}.type`).id,
        keySize: uint(v['key_size'], source, `${path}.key_size`),
        valueSize: uint(v['value_size'], source, `${path}.value_size`),
        maxEntries: uint(v['max_entries'], source, `${path}.max_entries`),
        flags: v['flags'] === undefined ? 0 : uint(v['flags'], source, `${path}.flags`),
      });
    }
  }

  const restore = doc['restore'];
  if (restore !== undefined && restore !== null) {
    if (!isObj(restore)) throw new ConfigError(source, 'restore', 'must be a mapping');
    checkKeys(restore, ['memory_budget', 'host_memory_budget'], source, 'restore');
    if (restore['memory_budget'] !== undefined && restore['memory_budget'] !== 'auto')
      cfg.memoryBudget = size(restore['memory_budget'], source, 'restore.memory_budget');
    if (restore['host_memory_budget'] !== undefined)
      cfg.hostMemoryBudget = size(restore['host_memory_budget'], source, 'restore.host_memory_budget');
  }

  const staging = doc['staging'];
  if (staging !== undefined) {
    if (typeof staging !== 'string' || !staging.startsWith('/')) throw new ConfigError(source, 'staging', 'must be an absolute path');
    cfg.staging = staging;
  }
  return cfg;
}

/** `content` only exists for families that can carry contents; `empty` needs a recreatable type. */
export function checkPolicyPossible(t: MapTypeInfo, pol: Policy, source: string, path: string): void {
  if (pol === 'content' && t.family === 'metadata-only') {
    throw new ConfigError(source, path, `policy content is impossible for ${t.name.toUpperCase()}: ${t.why}; use empty or refuse`);
  }
  if (pol === 'empty' && t.recreatable === false) {
    throw new ConfigError(source, path, `policy empty is impossible for ${t.name.toUpperCase()}: ${t.why}`);
  }
}

/** Effective policy for a map: per-name override, then per-type override, then the type default. */
export function policyFor(cfg: Config, t: MapTypeInfo, mapName: string): { policy: Policy; from: string } {
  const byName = mapName ? cfg.mapPolicy.get(mapName) : undefined;
  if (byName) return { policy: byName, from: `policy.maps.${mapName} in ${cfg.source}` };
  const byType = cfg.typePolicy.get(t.id);
  if (byType) return { policy: byType, from: `policy.types.${t.name} in ${cfg.source}` };
  return { policy: t.defaultPolicy, from: 'the default for its type' };
}
