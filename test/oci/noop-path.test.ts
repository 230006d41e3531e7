/**
 * The hooks run on every container start/stop they are registered for: a container without
 * io.bpfcr.* annotations must cost about one bare Node start. The time itself is measured by
 * bench/hook-latency.ts (never a timed assertion here); this checks what the no-op path loads.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/env.js';

const ENTRY = join(ROOT, 'dist/src/oci/hook-main.cjs');

test('the no-op path loads nothing but node:fs and node:tty (no koffi, yaml, tar-stream, execa)', (t) => {
  const js = readFileSync(ENTRY, 'utf8');
  const requires = [...js.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]).sort();
  t.deepEqual(requires, ['node:fs', 'node:tty']);
  const imports = [...js.matchAll(/import\((['"])([^'"]+)\1\)/g)].map((m) => m[2]);
  t.deepEqual(imports, ['./hook-run.js'], 'everything else is behind one dynamic import');
  t.notRegex(js.replace(/\/\/.*$/gm, ''), /process\.stdin/, 'process.stdin builds a stream (~4 ms): the entry uses fd 0 directly');
});
