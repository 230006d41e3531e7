/**
 * The CRIU plugin's failures carry their real cause (issue 11): CRIU reports a hook's negative
 * return value as the errno, so a staging directory that cannot be created must say why (ENOTDIR,
 * EROFS, …), not ENOENT whatever happened; and a staging root that does not fit the plugin's
 * buffer is refused (EFBIG) rather than cut short into another path. Run against the plugin built
 * from this checkout (src/criu-plugin/build.sh, as install.sh does), through a harness that stands
 * in for criu (plugin-dump-harness.c), with a real map.
 */
import test from 'ava';
import { execa } from 'execa';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freshBpffs, requireRoot, ROOT, tempDir } from '../helpers/env.js';

const PLUGIN = join(ROOT, 'build/bpfcr_plugin.so');
const HARNESS = join(ROOT, 'build/plugin-dump-harness');

test.before(async () => {
  requireRoot();
  await execa('bash', [join(ROOT, 'src/criu-plugin/build.sh')]);
  const inc = ['/opt/bpfcr/criu/include/criu', '/usr/include/criu'].find((d) => existsSync(join(d, 'criu-plugin.h')));
  if (!inc) throw new Error('criu-plugin.h not found: run ./install.sh (it builds CRIU) first');
  await execa('cc', ['-O2', '-Wall', '-rdynamic', `-I${inc}`, '-o', HARNESS, join(ROOT, 'test/unit/plugin-dump-harness.c'), '-ldl']);
});

/** DUMP_EXT_FILE of a map with <image dir>/bpfcr-staging = stagingRoot: the hook's return value and stderr. */
async function dumpWithStaging(stagingRoot: string): Promise<{ ret: number; stderr: string }> {
  const img = tempDir('bpfcr-plugin-img-');
  try {
    writeFileSync(join(img, 'bpfcr-staging'), stagingRoot + '\n');
    const r = await execa(HARNESS, [PLUGIN, img], { reject: false });
    if (r.exitCode !== 0) throw new Error(`harness exited ${r.exitCode}: ${r.stderr}`);
    return { ret: Number(r.stdout.trim()), stderr: r.stderr };
  } finally {
    rmSync(img, { recursive: true, force: true });
  }
}

test.serial('a staging root that cannot be created fails with the real errno (ENOTDIR), not ENOENT', async (t) => {
  const dir = tempDir('bpfcr-plugin-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'file'), 'not a directory');
  const r = await dumpWithStaging(join(dir, 'file', 'staging'));
  t.is(r.ret, -20, r.stderr); // -ENOTDIR
  t.regex(r.stderr, /cannot create staging root .*file\/staging: Not a directory/);
});

test.serial("a checkpoint's staging dir that cannot be created fails with the real errno (EROFS)", async (t) => {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  mkdirSync(join(fs.dir, 'root'));
  await execa('mount', ['-o', 'remount,ro', fs.dir]);
  const r = await dumpWithStaging(join(fs.dir, 'root'));
  t.is(r.ret, -30, r.stderr); // -EROFS
  t.regex(r.stderr, /cannot create .*: Read-only file system/);
});

test.serial('a staging root too long for the plugin is refused (EFBIG), never cut short into another path', async (t) => {
  const r = await dumpWithStaging('/' + 'a'.repeat(5000));
  t.is(r.ret, -27, r.stderr); // -EFBIG
  t.regex(r.stderr, /cannot read bpfcr-staging in the image dir: File too large/);
});

test.serial('the harness works: a staging root on a bpffs takes the map (return 0)', async (t) => {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const r = await dumpWithStaging(join(fs.dir, 'staging'));
  t.is(r.ret, 0, r.stderr);
  t.regex(r.stderr, /dumped file 1: map id \d+/);
});
