/**
 * State files are plain bpfcr archives whose oci/pins.json the manifest covers: a changed byte in
 * it fails the hook (naming the member) before any pin is created, whether the maps are restored
 * or all pins are kept. A state file of an older bpfcr (bpfcr-oci.json + an archive under bpfcr/)
 * gets one line naming the file, from the hook and from `bpfcr inspect`.
 */
import test from 'ava';
import { execa } from 'execa';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpfcr, freshBpffs, requireRoot, startHolder, withScenario } from '../helpers/env.js';
import { makeBundle, runHookShim, stateFile, stateJson } from '../helpers/oci.js';

test.before(() => requireRoot());

test.serial('a changed byte in oci/pins.json fails prestart with a checksum error naming it; nothing is pinned', async (t) => {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const app = join(fs.dir, 'app');
  mkdirSync(app);
  const h = await startHolder(['hold', '--pin-dir', app, 'hash:m1:entries=3', 'hash:m2:entries=2']);
  await h.kill();
  const st = stateFile('tamper');
  t.teardown(st.cleanup);
  const b = makeBundle([{ destination: '/sys/fs/bpf/app', source: app }]);
  t.teardown(() => b.cleanup());
  const ann = { 'io.bpfcr.pins': '/sys/fs/bpf/app', 'io.bpfcr.save-on-stop': st.path, 'io.bpfcr.restore-from': st.path };
  const saved = await runHookShim('poststop', stateJson(b, ann));
  t.is(saved.exitCode, 0, saved.stderr);

  // keep mode with every pin present reads no map: the archive is still verified
  const pristine = readFileSync(st.path);
  const tamper = (from: string, to: string): void => {
    const tar = Buffer.from(pristine);
    const at = tar.indexOf(from);
    t.true(at > 0, from);
    tar.write(to, at);
    writeFileSync(st.path, tar, { mode: 0o600 });
  };
  tamper(b.id, `${b.id[0] === 'a' ? 'b' : 'a'}${b.id.slice(1)}`);
  const keep = await runHookShim('prestart', stateJson(b, { ...ann, 'io.bpfcr.on-existing': 'keep' }, 'creating'));
  t.is(keep.exitCode, 1);
  t.regex(keep.stderr, new RegExp(`error: archive ${st.path}: member oci/pins\\.json: sha256 mismatch`));
  t.is(keep.stderr.trim().split('\n').filter((l) => /error:/.test(l)).length, 1);

  // a pin path changed: planned from oci/pins.json, refused once restore verifies it
  tamper('"/sys/fs/bpf/app/m2"', '"/sys/fs/bpf/app/m3"');
  for (const n of readdirSync(app)) rmSync(join(app, n));
  const r = await runHookShim('prestart', stateJson(b, ann, 'creating'));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, new RegExp(`error: archive ${st.path}: member oci/pins\\.json: sha256 mismatch`));
  t.deepEqual(readdirSync(app), [], 'nothing pinned from a state file that fails verification');
});

test.serial('a state file of an older bpfcr: one line naming it (hook, inspect); --prefix bpfcr/ still reads its maps', async (t) => {
  await withScenario(['hold', 'hash:old:entries=4'], async ({ holder, work, fs }) => {
    const root = join(work, 'legacy');
    mkdirSync(root);
    const d = await bpfcr(['dump', '--pid', String(holder.pid), '-o', join(root, 'bpfcr/')]);
    t.is(d.exitCode, 0, d.stderr);
    writeFileSync(join(root, 'bpfcr-oci.json'), JSON.stringify({ format: 'bpfcr-oci-state', version: 1, maps: 1, pins: [] }));
    const st = stateFile('legacy');
    t.teardown(st.cleanup);
    await execa('tar', ['-C', root, '--sort=name', '-cf', st.path, 'bpfcr-oci.json', 'bpfcr']);
    t.is((await execa('tar', ['-tf', st.path])).stdout.split('\n')[0], 'bpfcr-oci.json');

    const app = join(fs.dir, 'app');
    mkdirSync(app);
    const b = makeBundle([{ destination: '/sys/fs/bpf/app', source: app }]);
    t.teardown(() => b.cleanup());
    const r = await runHookShim('prestart', stateJson(b, { 'io.bpfcr.pins': '/sys/fs/bpf/app', 'io.bpfcr.restore-from': st.path }, 'creating'));
    t.is(r.exitCode, 1);
    t.is(r.stderr.split('\n').length, 1, r.stderr);
    t.regex(r.stderr, new RegExp(`error: state file ${st.path} is in the format of an older bpfcr \\(bpfcr-oci\\.json, then an archive under bpfcr/\\), which this bpfcr no longer reads: move it away`));

    const ins = await bpfcr(['inspect', st.path]);
    t.is(ins.exitCode, 1);
    t.is(ins.stderr.split('\n').length, 1, ins.stderr);
    t.regex(ins.stderr, new RegExp(`${st.path}: a state file of an older bpfcr \\(bpfcr-oci\\.json, then its archive under bpfcr/\\): read it with --prefix bpfcr/`));
    const old = await bpfcr(['inspect', '--prefix', 'bpfcr/', st.path]);
    t.is(old.exitCode, 0, old.stderr);
    t.regex(old.stdout, /\sold\s/);
    const rs = await bpfcr(['restore', '--prefix', 'bpfcr/', st.path, '--pin-dir', join(fs.dir, 'r')]);
    t.is(rs.exitCode, 0, rs.stderr);
    t.deepEqual(readdirSync(join(fs.dir, 'r')), ['old']);
  });
});
