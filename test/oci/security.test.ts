/**
 * A container can write to its bind-mounted bpffs directory, and bpffs supports symlinks: every
 * planted symlink must be refused (naming the path), never followed onto a host pin or a host
 * directory. Also: mount sources that are not on a bpffs, and symlinks in the state directory.
 */
import test from 'ava';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, freshBpffs, requireRoot, startHolder, tempDir } from '../helpers/env.js';
import { makeBundle, runHookShim, STATE_DIR, stateFile, stateJson } from '../helpers/oci.js';

test.before(() => requireRoot());

/** A host bpffs with a host-only pin (secret), a host-only dir (hostdir) and the container's app/. */
async function setup(t: { teardown(fn: () => unknown): void }) {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const app = join(fs.dir, 'app');
  mkdirSync(app);
  mkdirSync(join(fs.dir, 'hostdir'));
  const h = await startHolder(['hold', '--pin-dir', fs.dir, 'hash:secret:entries=3']);
  await h.kill();
  const secret = await describe({ pin: join(fs.dir, 'secret') });
  const st = stateFile('sec');
  t.teardown(st.cleanup);
  const b = makeBundle([{ destination: '/sys/fs/bpf/app', source: app }]);
  t.teardown(() => b.cleanup());
  return { fs: fs.dir, app, secret, st, b };
}

const save = (st: { path: string }, pins: string) => ({ 'io.bpfcr.pins': pins, 'io.bpfcr.save-on-stop': st.path });
const restore = (st: { path: string }, pins: string) => ({ 'io.bpfcr.pins': pins, 'io.bpfcr.restore-from': st.path });

test.serial('poststop refuses a planted symlink to a host pin (annotated path), naming it', async (t) => {
  const s = await setup(t);
  symlinkSync('../secret', join(s.app, 'evil'));
  t.true(lstatSync(join(s.app, 'evil')).isSymbolicLink(), 'bpffs holds the symlink');
  const r = await runHookShim('poststop', stateJson(s.b, save(s.st, '/sys/fs/bpf/app/evil')));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, new RegExp(`error: refusing /sys/fs/bpf/app/evil \\(host ${s.app}/evil\\): it is a symlink; bpfcr never follows symlinks in a container-writable bpffs`));
  t.false(existsSync(s.st.path), 'no state written');
});

test.serial('poststop refuses a symlink met while walking a pin directory, and an absolute one', async (t) => {
  const s = await setup(t);
  const h = await startHolder(['hold', '--pin-dir', s.app, 'hash:legit']);
  await h.kill();
  symlinkSync('../secret', join(s.app, 'zz_evil'));
  let r = await runHookShim('poststop', stateJson(s.b, save(s.st, '/sys/fs/bpf/app')));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /refusing \/sys\/fs\/bpf\/app\/zz_evil \(host .*\/app\/zz_evil\): it is a symlink/);
  t.false(existsSync(s.st.path));
  rmSync(join(s.app, 'zz_evil'));
  symlinkSync(join(s.fs, 'secret'), join(s.app, 'abs'));
  r = await runHookShim('poststop', stateJson(s.b, save(s.st, '/sys/fs/bpf/app')));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /refusing \/sys\/fs\/bpf\/app\/abs .*it is a symlink/);
  t.false(existsSync(s.st.path));
});

test.serial('poststop refuses a symlinked directory on the way to a pin', async (t) => {
  const s = await setup(t);
  symlinkSync('..', join(s.app, 'up'));
  const r = await runHookShim('poststop', stateJson(s.b, save(s.st, '/sys/fs/bpf/app/up/secret')));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /refusing \/sys\/fs\/bpf\/app\/up \(host .*\/app\/up\): it is a symlink/);
  t.false(existsSync(s.st.path));
});

test.serial('prestart refuses to pin through a symlink planted at the pin path or on the way, and leaves nothing behind', async (t) => {
  const s = await setup(t);
  mkdirSync(join(s.app, 'sub'));
  const h = await startHolder(['hold', '--pin-dir', s.app, 'hash:m']);
  const h2 = await startHolder(['hold', '--pin-dir', join(s.app, 'sub'), 'array:n']);
  await h.kill();
  await h2.kill();
  const ok = await runHookShim('poststop', stateJson(s.b, save(s.st, '/sys/fs/bpf/app')));
  t.is(ok.exitCode, 0, ok.stderr);

  // the pin's own name is a symlink to a host location
  rmSync(join(s.app, 'm'));
  symlinkSync('../hostdir/m', join(s.app, 'm'));
  let r = await runHookShim('prestart', stateJson(s.b, restore(s.st, '/sys/fs/bpf/app'), 'creating'));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /refusing \/sys\/fs\/bpf\/app\/m \(host .*\/app\/m\): it is a symlink/);
  t.deepEqual(readdirSync(join(s.fs, 'hostdir')), [], 'nothing pinned on the host side');
  t.deepEqual(readdirSync(s.app).sort(), ['m', 'sub'], 'no temporary pins left');

  // a directory on the way is a symlink to a host directory
  rmSync(join(s.app, 'm'));
  rmSync(join(s.app, 'sub'), { recursive: true });
  symlinkSync('../hostdir', join(s.app, 'sub'));
  r = await runHookShim('prestart', stateJson(s.b, restore(s.st, '/sys/fs/bpf/app'), 'creating'));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /refusing \/sys\/fs\/bpf\/app\/sub \(host .*\/app\/sub\): it is a symlink/);
  t.deepEqual(readdirSync(join(s.fs, 'hostdir')), []);
  t.deepEqual(readdirSync(s.app), ['sub']);
  t.deepEqual(await describe({ pin: join(s.fs, 'secret') }), s.secret, 'the host pin is untouched');
});

test.serial('a bind mount source that is not on a bpffs, or is a symlink inside one, is refused', async (t) => {
  const s = await setup(t);
  const plain = tempDir('bpfcr-notbpf-');
  t.teardown(() => rmSync(plain, { recursive: true, force: true }));
  const bundle = (mounts: Parameters<typeof makeBundle>[0]) => {
    const b = makeBundle(mounts);
    t.teardown(() => b.cleanup());
    return b;
  };
  let r = await runHookShim('poststop', stateJson(bundle([{ destination: '/sys/fs/bpf/app', source: plain }]), save(s.st, '/sys/fs/bpf/app')));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, new RegExp(`pin path /sys/fs/bpf/app: its bind mount source ${plain} \\(mounted at /sys/fs/bpf/app\\) is not on a bpffs`));

  symlinkSync('hostdir', join(s.fs, 'link'));
  r = await runHookShim('poststop', stateJson(bundle([{ destination: '/sys/fs/bpf/app', source: join(s.fs, 'link') }]), save(s.st, '/sys/fs/bpf/app')));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /host path .*\/link is a symlink inside a bpffs/);

  const none = bundle([]);
  r = await runHookShim('poststop', stateJson(none, save(s.st, '/sys/fs/bpf/app')));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /pin path \/sys\/fs\/bpf\/app: inside a sysfs mount at \/sys, not a bind mount of a host bpffs directory/);
  r = await runHookShim('poststop', stateJson(none, save(s.st, '/opt/bpf')));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /pin path \/opt\/bpf: not inside any bind mount of the container/);
  t.false(existsSync(s.st.path));
});

test.serial('symlinks in the state directory are never followed', async (t) => {
  const s = await setup(t);
  const h = await startHolder(['hold', '--pin-dir', s.app, 'hash:m']);
  await h.kill();
  const outside = tempDir('bpfcr-victim-');
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  const victim = join(outside, 'victim.tar');
  writeFileSync(victim, 'precious');

  // restore-from through a symlink: refused
  symlinkSync(victim, s.st.path);
  let r = await runHookShim('prestart', stateJson(s.b, restore(s.st, '/sys/fs/bpf/app'), 'creating'));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, new RegExp(`refusing ${s.st.path}: it is a symlink`));

  // save-on-stop onto a symlink: the symlink is replaced, its target untouched
  r = await runHookShim('poststop', stateJson(s.b, save(s.st, '/sys/fs/bpf/app')));
  t.is(r.exitCode, 0, r.stderr);
  t.false(lstatSync(s.st.path).isSymbolicLink());
  t.is(readFileSync(victim, 'utf8'), 'precious');

  // a symlinked subdirectory of the state dir: refused
  const sub = join(STATE_DIR, `test-sublink-${process.pid}`);
  symlinkSync(outside, sub);
  t.teardown(() => rmSync(sub, { force: true }));
  const st2 = { path: join(sub, 'x.tar') };
  r = await runHookShim('poststop', stateJson(s.b, save(st2, '/sys/fs/bpf/app')));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, new RegExp(`refusing ${sub}: it is a symlink`));
  t.false(existsSync(join(outside, 'x.tar')));
});
