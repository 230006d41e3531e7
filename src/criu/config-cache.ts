/**
 * The config for CRIU actions, without paying for the YAML parser on every checkpoint: importing
 * `yaml` and parsing /etc/bpfcr/config.yaml costs ~30-40 ms, about half of a Node start, on the
 * checkpoint's critical path. The parsed document is cached as JSON under the run dir (tmpfs,
 * root-only), keyed by the file's path, inode, size and mtime; it is validated by the config
 * module's own parseConfig() every time, so a cache hit yields exactly what loadConfig() would.
 */
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_CONFIG_PATH, defaultConfig, loadConfig, parseConfig, type Config } from '../config/config.js';
import { runDir } from './lock.js';

interface CacheEntry { path: string; ino: number; size: number; mtimeMs: number; doc: unknown }

export async function loadConfigCached(): Promise<Config> {
  // Same choice of file as loadConfig(): $BPFCR_CONFIG ('' = built-in defaults), else the default path.
  const fromEnv = process.env['BPFCR_CONFIG'];
  const path = fromEnv !== undefined ? fromEnv : DEFAULT_CONFIG_PATH;
  if (path === '') return defaultConfig();
  let st;
  try {
    st = statSync(path);
  } catch {
    return loadConfig(fromEnv !== undefined ? path : undefined); // missing file: loadConfig decides (and words the error)
  }
  const cacheFile = join(runDir(), 'config-cache.json');
  try {
    const c = JSON.parse(readFileSync(cacheFile, 'utf8')) as CacheEntry;
    if (c.path === path && c.ino === st.ino && c.size === st.size && c.mtimeMs === st.mtimeMs) return parseConfig(c.doc, path);
  } catch { /* no or stale cache */ }

  const config = await loadConfig(path); // throws the operator-facing error if the file is bad
  try {
    const { parse } = await import('yaml');
    const doc = JSON.parse(JSON.stringify(parse(readFileSync(path, 'utf8'), { maxAliasCount: 100 }) ?? null)) as unknown;
    parseConfig(doc, path); // only cache what survives the JSON round trip
    const entry: CacheEntry = { path, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, doc };
    mkdirSync(runDir(), { recursive: true, mode: 0o700 });
    const tmp = `${cacheFile}.${process.pid}`;
    writeFileSync(tmp, JSON.stringify(entry), { mode: 0o600 });
    renameSync(tmp, cacheFile);
  } catch { /* caching is best effort */ }
  return config;
}
