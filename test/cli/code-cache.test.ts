/**
 * The one-file bundle every bpfcr command runs from, and its V8 code cache (src/cli/load.cts): the
 * build makes a cache this Node uses; a cache that is not this bundle's is never used (V8 itself only
 * compares lengths), and without a usable one bpfcr runs all the same and doctor says what to do.
 */
import test from 'ava';
import { execa } from 'execa';
import { copyFileSync, cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from '../helpers/env.js';

/** A copy of the installed layout (package.json, dist/src, dist/bundle) in a temp dir. */
function copyOfPackage(): { root: string; cli: string; bundle: string; cache: string; loader: string; cleanup: () => void } {
  const root = tempDir('bpfcr-code-cache-');
  copyFileSync(join(ROOT, 'package.json'), join(root, 'package.json'));
  mkdirSync(join(root, 'dist'));
  cpSync(join(ROOT, 'dist/src'), join(root, 'dist/src'), { recursive: true });
  cpSync(join(ROOT, 'dist/bundle'), join(root, 'dist/bundle'), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'));
  const bundle = join(root, 'dist/bundle/bpfcr.cjs');
  return { root, cli: join(root, 'dist/src/cli/bpfcr.cjs'), bundle, cache: `${bundle}.cache`, loader: join(root, 'dist/src/cli/load.cjs'), cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** codeCacheStatus() in a Node of its own (as bpfcr would find the cache). */
async function status(loader: string): Promise<string> {
  return (await execa(process.execPath, ['-e', `process.stdout.write(require(${JSON.stringify(loader)}).codeCacheStatus())`])).stdout;
}

async function codeCacheCheck(cli: string): Promise<{ status: string; detail: string; fix?: string }> {
  const r = await execa(process.execPath, [cli, 'doctor', '--json'], { reject: false });
  const checks = (JSON.parse(r.stdout) as { checks: { name: string; status: string; detail: string; fix?: string }[] }).checks;
  return checks.find((c) => c.name === 'code-cache')!;
}

test('the build makes a code cache this Node uses', async (t) => {
  t.is(await status(join(ROOT, 'dist/src/cli/load.cjs')), 'used');
});

test.serial('a cache made for another bundle of the same length is not used; without a usable cache bpfcr runs, doctor warns', async (t) => {
  const p = copyOfPackage();
  t.teardown(p.cleanup);
  const version = (await execa(process.execPath, [p.cli, '--version'])).stdout;
  t.regex(version, /^bpfcr \d+\.\d+\.\d+$/);
  t.is(await status(p.loader), 'used', 'a copy of bundle and cache together is still the same bundle');
  t.is((await codeCacheCheck(p.cli)).status, 'ok');

  // one byte of the bundle changed, same length: V8 alone would take the old cache for it
  const src = readFileSync(p.bundle);
  const at = src.indexOf('Checkpoint/restore of eBPF map state');
  t.true(at > 0, 'the usage text is in the bundle');
  src[at] = 'c'.charCodeAt(0);
  writeFileSync(p.bundle, src);
  t.is(await status(p.loader), 'stale');
  const usage = await execa(process.execPath, [p.cli, '--help'], { reject: false });
  t.regex(usage.stdout, /^checkpoint\/restore of eBPF map state/m, 'the changed bundle runs');
  const stale = await codeCacheCheck(p.cli);
  t.is(stale.status, 'warn');
  t.regex(stale.detail, /was made from another build of the bundle: every bpfcr start .* is ~40 ms slower/);
  t.truthy(stale.fix);

  rmSync(p.cache);
  t.is(await status(p.loader), 'absent');
  t.is((await execa(process.execPath, [p.cli, '--version'])).stdout, version);
  t.regex((await codeCacheCheck(p.cli)).detail, /is missing/);

  // what install.sh does when the cache is not usable
  await execa(process.execPath, ['-e', `require(${JSON.stringify(p.loader)}).buildCodeCache()`]);
  t.is(await status(p.loader), 'used');
});
