/**
 * Loads bpfcr's one-file bundle (dist/bundle/bpfcr.cjs, scripts/bundle.mjs) with V8's code cache.
 *
 * Why: every CRIU action and OCI hook is a Node start that a checkpoint or restore waits for. Loaded as
 * ~60 ES modules, bpfcr's dump of a small process took ~220 ms, of which ~45 ms is Node itself; the
 * bundle alone (one CommonJS file) ~185 ms, because V8 pre-parses all of it; the bundle with the code
 * cache ~110 ms (docs/performance.md). Node 20 has no compile cache of its own (module.enableCompileCache
 * is Node 22), so the cache is V8's, through vm.Script's cachedData.
 *
 * V8 accepts a cache for any source of the same length (it checks length, V8 version and flags, not
 * content): the cache file starts with the SHA-256 of the bundle it was made from, and is used only when
 * that matches. Without a usable cache (absent, stale, another Node) the bundle runs all the same, slower.
 * The cache is written only by the build (buildCodeCache), never while bpfcr runs for a container.
 */
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';

/** What the bundle exports (src/bundle.ts). */
export interface Bundle {
  runCli(argv: string[]): void;
  hookRun(): Promise<typeof import('../oci/hook-run.js')>;
  warmUp(): Promise<void>;
}

export const BUNDLE = join(__dirname, '../../bundle/bpfcr.cjs');
export const CODE_CACHE = `${BUNDLE}.cache`;
const HASH_BYTES = 32;

/** The code cache as this Node finds it. */
export type CacheUse = 'used' | 'absent' | 'stale' | 'rejected';

function compile(source: Buffer, cachedData: Buffer | undefined): Script {
  // the CommonJS wrapper, as Node's own loader applies it
  const wrapped = `(function (exports, require, module, __filename, __dirname) { ${source.toString('utf8')}\n})`;
  return new Script(wrapped, { filename: BUNDLE, ...(cachedData ? { cachedData } : {}) });
}

function run(script: Script): Bundle {
  const module = { exports: {} as Bundle };
  const fn = script.runInThisContext() as (e: unknown, r: NodeJS.Require, m: unknown, f: string, d: string) => void;
  fn(module.exports, createRequire(BUNDLE), module, BUNDLE, dirname(BUNDLE));
  return module.exports;
}

function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

/** The bundle compiled, with its code cache when the cache was made from this very bundle. */
function compileBundle(): { script: Script; cache: CacheUse } {
  const source = readFileSync(BUNDLE);
  let cachedData: Buffer | undefined;
  let cache: CacheUse = 'absent';
  try {
    const file = readFileSync(CODE_CACHE);
    if (file.length > HASH_BYTES && file.subarray(0, HASH_BYTES).equals(sha256(source))) cachedData = file.subarray(HASH_BYTES);
    else cache = 'stale';
  } catch { /* no cache: run without */ }
  const script = compile(source, cachedData);
  if (cachedData) cache = script.cachedDataRejected ? 'rejected' : 'used';
  return { script, cache };
}

export function loadBundle(): Bundle {
  return run(compileBundle().script);
}

/**
 * Whether this Node would use the code cache, without running the bundle (install.sh makes the cache
 * again when not; `bpfcr doctor` reports it): 'rejected' means another Node or V8 flags made it.
 */
export function codeCacheStatus(): CacheUse {
  return compileBundle().cache;
}

/**
 * Build step (scripts/bundle.mjs runs it in a plain `node` of the Node that will run bpfcr): load the
 * bundle without a cache, load the modules of the hot paths, and save what V8 compiled. Returns its size.
 */
export async function buildCodeCache(): Promise<number> {
  const source = readFileSync(BUNDLE);
  const script = compile(source, undefined);
  await run(script).warmUp();
  const data = Buffer.concat([sha256(source), script.createCachedData()]);
  const tmp = `${CODE_CACHE}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode: 0o644 });
  renameSync(tmp, CODE_CACHE);
  return data.length;
}
