/**
 * Where bpfcr's own files are. Code runs from two layouts — the per-module build
 * (dist/src/<dir>/x.js, used by unit tests) and the one-file bundle every command runs from
 * (dist/bundle/bpfcr.cjs, scripts/bundle.mjs) — so paths are found from the package root, never
 * relative to the module that asks.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The directory holding bpfcr's package.json: the checkout, or the installed copy (PREFIX/lib/bpfcr). */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6 && !existsSync(join(dir, 'package.json')); i++) dir = dirname(dir);
  return (root = dir);
}

/** The file that runs the bpfcr CLI (`node <it> COMMAND …`). */
export function cliEntry(): string {
  return join(packageRoot(), 'dist/src/cli/bpfcr.cjs');
}

/** bpfcr's run-time state (locks, in-flight markers, caches): root-only, on tmpfs. */
export function runDir(): string {
  return process.env['BPFCR_RUN_DIR'] || '/run/bpfcr';
}
