// Build step after tsc: bundle dist/src into one CommonJS file, dist/bundle/bpfcr.cjs, and make its V8
// code cache (src/cli/load.cts says why; docs/performance.md has the figures). koffi stays outside:
// it is a native addon, loaded with require at the first syscall.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';

rmSync('dist/bundle', { recursive: true, force: true });
await build({
  entryPoints: ['dist/src/bundle.js'],
  outfile: 'dist/bundle/bpfcr.cjs',
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: ['koffi'],
  // modules find koffi and bpfcr's own files from import.meta.url: in the bundle, the bundle's file
  define: { 'import.meta.url': '__bpfcrModuleUrl' },
  banner: { js: "var __bpfcrModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
});
// in a Node of its own, without flags: V8 uses a cache only under the flags it was made with
const env = { ...process.env };
delete env.NODE_OPTIONS;
execFileSync(process.execPath, ['-e', "require('./dist/src/cli/load.cjs').buildCodeCache().catch((e) => { console.error('bpfcr build: code cache: ' + e.message); process.exit(1); })"], { stdio: 'inherit', env });
