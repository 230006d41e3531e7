/**
 * /etc/bpfcr/config.yaml: per-type and per-map policy overrides and restore options.
 * YAML only checks syntax, so every key and value is validated here with a message that names
 * the file and the key path.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { CpuMismatch } from '../maps/cpus.js';
import type { InnerTemplate } from '../maps/strategies/strategy.js';
import { mapTypeByName, type MapTypeInfo, type Policy } from '../maps/types.js';

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
}

export function defaultConfig(): Config {
  return {
    source: 'built-in defaults', typePolicy: new Map(), mapPolicy: new Map(), cpuMismatch: 'error',
    innerTemplates: new Map(), staging: '/sys/fs/bpf/bpfcr',
  };
}

export class ConfigError extends Error {
  constructor(source: string, path: string, msg: string) {
    super(`config ${source}: ${path ? `${path}: ` : ''}${msg}`);
    this.name = 'ConfigError';
  }
}

const POLICIES: readonly Policy[] = ['content', 'empty', 'refuse'];

/** Load the config named by --config, $BPFCR_CONFIG, or the default path if it exists. */
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
  const { parse, YAMLParseError } = await import('yaml');
  let doc: unknown;
  try {
    doc = parse(text, { maxAliasCount: 100 });
  } catch (e) {
    if (e instanceof YAMLParseError) {
      const pos = e.linePos?.[0];
      throw new ConfigError(p, pos ? `line ${pos.line} col ${pos.col}` : '', e.message.split('\n')[0]!);
    }
    throw e;
  }
  return parseConfig(doc, p);
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
    throw new ConfigError(source, path, `must be one of ${POLICIES.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as Policy;
}

function typeOf(name: string, source: string, path: string): MapTypeInfo {
  const t = mapTypeByName(name);
  if (!t) throw new ConfigError(source, path, `unknown map type "${name}"`);
  return t;
}

function uint(v: unknown, source: string, path: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new ConfigError(source, path, `must be an unsigned 32-bit integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Validate a parsed YAML document (exported for unit tests). */
export function parseConfig(doc: unknown, source: string): Config {
  const cfg = defaultConfig();
  cfg.source = source;
  if (doc === null || doc === undefined) return cfg;
  if (!isObj(doc)) throw new ConfigError(source, '', 'top level must be a mapping');
  checkKeys(doc, ['policy', 'percpu', 'inner_templates', 'staging'], source, '');

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
      if (m !== 'error' && m !== 'zero-fill') throw new ConfigError(source, 'percpu.cpu_mismatch', `must be "error" or "zero-fill", got ${JSON.stringify(m)}`);
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
