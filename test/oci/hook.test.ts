/**
 * The hook shims (hooks/prestart, hooks/poststop) run as podman runs them — empty environment,
 * state JSON on stdin — against a real bpffs and a bundle whose config.json bind-mounts it.
 * Maps are compared with bpfholder describe (independent of bpfcr).
 */
import test from 'ava';
import { execa } from 'execa';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { bpfcr, describe, freshBpffs, requireRoot, startHolder } from '../helpers/env.js';
import { makeBundle, runHookShim, stateFile, stateJson } from '../helpers/oci.js';

test.before(() => requireRoot());

for (const stage of ['prestart', 'poststop'] as const) {
  test.serial(`${stage}: malformed state JSON → one clear line on stderr, exit 1`, async (t) => {
    const cases: [string, RegExp][] = [
      ['{"ociVersion": "1.0.2", "id": ', /not valid JSON/],
      ['', /empty \(a hook expects the runtime-spec state JSON on stdin\)/],
      ['[]', /expected a JSON object, got an array/],
      ['{"ociVersion":"1.0.2","id":"x","status":"stopped"}', /"bundle" must be a non-empty string/],
      ['{"ociVersion":"1.0.2","id":"x","status":"stopped","bundle":"/b","annotations":{"io.bpfcr.pins":7}}', /annotation "io.bpfcr.pins" must be a string/],
    ];
    for (const [input, re] of cases) {
      const r = await runHookShim(stage, input);
      t.is(r.exitCode, 1, input);
      t.regex(r.stderr, new RegExp(`^bpfcr ${stage}: OCI state on stdin: `), input);
      t.regex(r.stderr, re, input);
      t.is(r.stderr.split('\n').length, 1, 'one line');
      t.is(r.stdout, '');
    }
  });

  test.serial(`${stage}: no io.bpfcr.* annotation → exit 0, no output, nothing touched`, async (t) => {
    const noAnn = { ociVersion: '1.0.2', id: 'f'.repeat(64), status: stage === 'prestart' ? 'creating' : 'stopped', bundle: '/nonexistent/bundle', annotations: { 'io.container.manager': 'libpod', 'io.bpfcrx': 'not ours' } };
    for (const input of [JSON.stringify(noAnn), JSON.stringify({ ...noAnn, annotations: undefined }), JSON.stringify({ ...noAnn, pid: 1234 })]) {
      const r = await runHookShim(stage, input);
      t.is(r.exitCode, 0, r.stderr);
      t.is(r.stdout, '');
      t.is(r.stderr, '');
    }
  });

  test.serial(`${stage}: an annotation the container may not use is refused, naming it`, async (t) => {
    const b = makeBundle([]);
    t.teardown(() => b.cleanup());
    const r = await runHookShim(stage, stateJson(b, { 'io.bpfcr.pins': '/sys/fs/bpf/app', [stage === 'poststop' ? 'io.bpfcr.save-on-stop' : 'io.bpfcr.restore-from']: '/etc/cron.d/x.tar' }));
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /error: annotation io\.bpfcr\.(save-on-stop|restore-from)="\/etc\/cron\.d\/x\.tar": must be a file under \/var\/lib\/bpfcr\/state\//);
    t.false(existsSync('/etc/cron.d/x.tar'));
  });
}

test.serial('hook-run reports to the log file given by BPFCR_HOOK_LOG', async (t) => {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const log = join(fs.dir, '..', `bpfcr-hooklog-${process.pid}.log`);
  t.teardown(() => rmSync(log, { force: true }));
  const r = await runHookShim('poststop', '{"nope"', { BPFCR_HOOK_LOG: log });
  t.is(r.exitCode, 1);
  const { readFileSync } = await import('node:fs');
  t.regex(readFileSync(log, 'utf8'), /^\d{4}-\d\d-\d\dT[\d:.]+Z bpfcr poststop: OCI state on stdin: not valid JSON/);
});

/** describe every pin under dir (relative path → canonical JSON), plus owner and mode. */
async function snapshot(dir: string, rel = ''): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    const st = statSync(join(dir, r));
    if (st.isDirectory()) {
      out.set(`${r}/`, { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
      for (const [k, v] of await snapshot(dir, r)) out.set(k, v);
    } else {
      out.set(r, { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, map: await describe({ pin: join(dir, r) }) });
    }
  }
  return out;
}

const APP_SPECS = ['hash:counters:entries=40,btf=1', 'array:cfg:frozen=1', 'lru_hash:lru', 'hash_of_maps:hom:entries=2', 'queue:q:entries=5'];
const SUB_SPECS = ['percpu_array:pcpu', 'lpm_trie:routes'];

/** fs/app with pinned maps (and fs/app/sub, owned 1000:1000 mode 0750), no process holding them. */
async function populate(app: string): Promise<void> {
  mkdirSync(join(app, 'sub'), { mode: 0o750 });
  chownSync(join(app, 'sub'), 1000, 1000);
  chmodSync(join(app, 'sub'), 0o750);
  const h1 = await startHolder(['hold', '--pin-dir', app, ...APP_SPECS]);
  const h2 = await startHolder(['hold', '--pin-dir', join(app, 'sub'), ...SUB_SPECS]);
  await h1.kill();
  await h2.kill();
  chmodSync(join(app, 'cfg'), 0o640);
  chownSync(join(app, 'cfg'), 1234, 4321);
}

function wipe(dir: string): void {
  for (const n of readdirSync(dir)) rmSync(join(dir, n), { recursive: true, force: true });
}

test.serial('poststop saves the pinned maps, prestart re-creates them at the same paths (owners, modes, dirs)', async (t) => {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const app = join(fs.dir, 'app');
  mkdirSync(app);
  await populate(app);
  const before = await snapshot(app);
  const st = stateFile('rt');
  t.teardown(st.cleanup);
  const b = makeBundle([{ destination: '/sys/fs/bpf/app', source: app }]);
  t.teardown(() => b.cleanup());
  const ann = { 'io.bpfcr.pins': '/sys/fs/bpf/app', 'io.bpfcr.save-on-stop': st.path, 'io.bpfcr.restore-from': st.path };

  // first start: nothing saved yet
  const first = await runHookShim('prestart', stateJson(b, ann, 'creating'));
  t.is(first.exitCode, 0, first.stderr);
  t.regex(first.stderr, /no saved state at .* \(first start\?\): nothing restored/);

  const save = await runHookShim('poststop', stateJson(b, ann));
  t.is(save.exitCode, 0, save.stderr);
  t.regex(save.stderr, new RegExp(`^bpfcr poststop ${b.id.slice(0, 12)}: saved 7 pin\\(s\\) of 7 map\\(s\\) \\+ 2 inner, \\d+ entries, from /sys/fs/bpf/app to ${st.path} in [\\d.]+s$`));
  t.is(statSync(st.path).mode & 0o777, 0o600, 'state file is 0600');
  // a plain bpfcr archive: inspect reads it as it is; oci/pins.json is a member the manifest covers
  const insp = await bpfcr(['inspect', st.path]);
  t.is(insp.exitCode, 0, insp.stderr);
  t.regex(insp.stdout, /all checksums ok/);
  const js = JSON.parse((await bpfcr(['inspect', '--json', st.path])).stdout) as { manifest: { members: { name: string }[] }; members: { name: string; ok: boolean }[] };
  t.deepEqual(js.manifest.members.slice(0, 2).map((m) => m.name), ['bpfcr-archive.json', 'oci/pins.json'], 'oci/pins.json right after the header');
  t.true(js.members.find((m) => m.name === 'oci/pins.json')!.ok);
  t.deepEqual(readdirSync('/var/lib/bpfcr/state').filter((n) => n.includes(`.${st.path.split('/').pop()}.tmp`)), [], 'no temp file left');

  wipe(app);
  const restored = await runHookShim('prestart', stateJson(b, ann, 'creating'));
  t.is(restored.exitCode, 0, restored.stderr);
  t.regex(restored.stderr, /restored 7 pin\(s\) from .*: 7 created, 0 replaced, 0 kept/);
  t.deepEqual(await snapshot(app), before, 'same maps, contents, owners and modes at the same paths');

  // pins already there: replaced by default (an upgraded container wants the saved state) ...
  const namesBefore = readdirSync(app);
  const again = await runHookShim('prestart', stateJson(b, ann, 'creating'));
  t.is(again.exitCode, 0, again.stderr);
  t.regex(again.stderr, /replaced 7 existing pin\(s\) with the saved maps \(io\.bpfcr\.on-existing=replace\): \/sys\/fs\/bpf\/app\/cfg, /);
  t.regex(again.stderr, /0 created, 7 replaced, 0 kept/);
  t.deepEqual(readdirSync(app), namesBefore, 'no temporary pin left behind');
  t.deepEqual(await snapshot(app), before);

  // ... or left alone with on-existing=keep; a missing one is still created
  rmSync(join(app, 'sub', 'routes'));
  const keep = await runHookShim('prestart', stateJson(b, { ...ann, 'io.bpfcr.on-existing': 'keep' }, 'creating'));
  t.is(keep.exitCode, 0, keep.stderr);
  t.regex(keep.stderr, /left 6 existing pin\(s\) alone \(io\.bpfcr\.on-existing=keep\)/);
  t.regex(keep.stderr, /1 created, 0 replaced, 6 kept/);
  t.deepEqual(await snapshot(app), before);
});

test.serial('gzip state files, a single annotated pin, an empty pin directory, a missing pin path', async (t) => {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const app = join(fs.dir, 'app');
  mkdirSync(app);
  const h = await startHolder(['hold', '--pin-dir', app, 'hash:one:entries=7', 'array:two']);
  await h.kill();
  const gz = stateFile('gz');
  const path = gz.path.replace(/\.tar$/, '.tar.gz');
  t.teardown(() => rmSync(path, { force: true }));
  const b = makeBundle([{ destination: '/sys/fs/bpf/app', source: app }]);
  t.teardown(() => b.cleanup());
  const one = { 'io.bpfcr.pins': '/sys/fs/bpf/app/one,/sys/fs/bpf/app/absent', 'io.bpfcr.save-on-stop': path, 'io.bpfcr.restore-from': path };
  const before = await describe({ pin: join(app, 'one') });
  const s = await runHookShim('poststop', stateJson(b, one));
  t.is(s.exitCode, 0, s.stderr);
  t.regex(s.stderr, /warning: pin path \/sys\/fs\/bpf\/app\/absent does not exist: nothing saved for it/);
  t.regex(s.stderr, /saved 1 pin\(s\) of 1 map\(s\)/);
  const { readFileSync } = await import('node:fs');
  t.is(readFileSync(path).subarray(0, 2).toString('hex'), '1f8b', 'gzip');
  wipe(app);
  const r = await runHookShim('prestart', stateJson(b, one, 'creating'));
  t.is(r.exitCode, 0, r.stderr);
  t.deepEqual(readdirSync(app), ['one']);
  t.deepEqual(await describe({ pin: join(app, 'one') }), before);
  // a state file is an archive like any other: `bpfcr restore` reads it (skipping oci/pins.json)
  const cli = await bpfcr(['restore', path, '--pin-dir', join(fs.dir, 'cli')]);
  t.is(cli.exitCode, 0, cli.stderr);
  t.deepEqual(await describe({ pin: join(fs.dir, 'cli', 'one') }), before);

  // an empty pin directory is saved as an empty state (a later start restores nothing, rather
  // than an older state)
  wipe(app);
  const all = { 'io.bpfcr.pins': '/sys/fs/bpf/app', 'io.bpfcr.save-on-stop': path, 'io.bpfcr.restore-from': path };
  const e = await runHookShim('poststop', stateJson(b, all));
  t.is(e.exitCode, 0, e.stderr);
  t.regex(e.stderr, /no pinned maps under \/sys\/fs\/bpf\/app: wrote an empty state/);
  const ei = await bpfcr(['inspect', path]);
  t.is(ei.exitCode, 0, ei.stderr);
  t.regex(ei.stdout, /^2 members, \d+ bytes: all checksums ok$/m, 'header and oci/pins.json, no map');
  const er = await runHookShim('prestart', stateJson(b, all, 'creating'));
  t.is(er.exitCode, 0, er.stderr);
  t.regex(er.stderr, /holds no pins .*: nothing restored/);
  t.deepEqual(readdirSync(app), []);
});

test.serial('a saved pin outside the restoring container\'s io.bpfcr.pins is refused before anything is created', async (t) => {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const app = join(fs.dir, 'app');
  mkdirSync(app);
  const h = await startHolder(['hold', '--pin-dir', app, 'hash:m1', 'hash:m2']);
  await h.kill();
  const st = stateFile('scope');
  t.teardown(st.cleanup);
  const b = makeBundle([{ destination: '/sys/fs/bpf/app', source: app }]);
  t.teardown(() => b.cleanup());
  const saved = await runHookShim('poststop', stateJson(b, { 'io.bpfcr.pins': '/sys/fs/bpf/app', 'io.bpfcr.save-on-stop': st.path }));
  t.is(saved.exitCode, 0, saved.stderr);
  wipe(app);
  const r = await runHookShim('prestart', stateJson(b, { 'io.bpfcr.pins': '/sys/fs/bpf/app/m1', 'io.bpfcr.restore-from': st.path }, 'creating'));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /holds a pin at \/sys\/fs\/bpf\/app\/m2, which is not under this container's io\.bpfcr\.pins \(\/sys\/fs\/bpf\/app\/m1\); add it to io\.bpfcr\.pins, or move .* away to start without it/);
  t.deepEqual(readdirSync(app), []);
});

test.serial('`bpfcr hook` runs a stage by hand', async (t) => {
  const r = await bpfcr(['hook', 'poststop'], { input: '{"ociVersion":"1","id":"x","status":"stopped","bundle":"/b"}', env: { BPFCR_HOOK_LOG: '' } });
  t.is(r.exitCode, 0, r.stderr);
  t.is(r.stderr, '');
  const bad = await bpfcr(['hook', 'prestart'], { input: 'nope', env: { BPFCR_HOOK_LOG: '' } });
  t.is(bad.exitCode, 1);
  t.regex(bad.stderr, /^bpfcr prestart: OCI state on stdin: not valid JSON/);
  const usage = await bpfcr(['hook', 'poststart'], { input: '' });
  t.is(usage.exitCode, 2);
  t.regex(usage.stderr, /hook needs a stage: prestart or poststop \(got "poststart"\)/);
  const help = await bpfcr(['--help']);
  t.regex(help.stdout, /\n {2}hook +run an OCI hook stage/);
});

test.serial('during a CRIU restore (runtime `restore --image-path`), prestart keeps existing pins and creates only missing ones', async (t) => {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const app = join(fs.dir, 'app');
  mkdirSync(app);
  const h = await startHolder(['hold', '--pin-dir', app, 'hash:live:entries=4', 'array:gone']);
  await h.kill();
  const st = stateFile('criu');
  t.teardown(st.cleanup);
  const b = makeBundle([{ destination: '/sys/fs/bpf/app', source: app }]);
  t.teardown(() => b.cleanup());
  const ann = { 'io.bpfcr.pins': '/sys/fs/bpf/app', 'io.bpfcr.save-on-stop': st.path, 'io.bpfcr.restore-from': st.path };
  t.is((await runHookShim('poststop', stateJson(b, ann))).exitCode, 0);
  const { execa } = await import('execa');
  const pinnedId = async (p: string): Promise<number> => (JSON.parse((await execa('bpftool', ['-j', 'map', 'show', 'pinned', p])).stdout) as { id: number }).id;
  const liveBefore = await pinnedId(join(app, 'live'));
  rmSync(join(app, 'gone'));
  const { ROOT } = await import('../helpers/env.js');
  // bash stays the hook's parent (`; true`), with "restore --image-path DIR" in its argv, as runc has
  const r = await execa('bash', ['-c', `${join(ROOT, 'hooks/prestart')}; true`, 'runc', 'restore', '--image-path', '/x', 'id'], {
    input: stateJson(b, ann, 'creating'), extendEnv: false, env: { BPFCR_CONFIG: '', BPFCR_HOOK_LOG: '' }, reject: false,
  });
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stderr), /restoring a checkpoint \(bash restore\): existing pins are kept, only missing ones come from/);
  t.regex(String(r.stderr), /1 created, 0 replaced, 1 kept/);
  t.deepEqual(readdirSync(app).sort(), ['gone', 'live']);
  t.is(await pinnedId(join(app, 'live')), liveBefore, 'the very same map is still pinned');
});

test.serial('a pinned map the policy refuses fails poststop, naming its pin; no state file is left', async (t) => {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const app = join(fs.dir, 'app');
  mkdirSync(app);
  const h = await startHolder(['hold', '--pin-dir', app, 'hash:fine', 'prog_array:jumps']);
  await h.kill();
  const st = stateFile('refuse');
  t.teardown(st.cleanup);
  const b = makeBundle([{ destination: '/sys/fs/bpf/app', source: app }]);
  t.teardown(() => b.cleanup());
  const r = await runHookShim('poststop', stateJson(b, { 'io.bpfcr.pins': '/sys/fs/bpf/app', 'io.bpfcr.save-on-stop': st.path }));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /error: refusing map id \d+ \(pinned at \/sys\/fs\/bpf\/app\/jumps\) 'jumps' \(PROG_ARRAY\)/);
  t.false(existsSync(st.path));
  // FILE.saving stays, saying why, so that the next start does not go on without the state
  // (test/oci/faults.test.ts); nothing else does
  t.teardown(() => rmSync(`${st.path}.saving`, { force: true }));
  t.deepEqual(readdirSync('/var/lib/bpfcr/state').filter((n) => n.includes(st.path.split('/').pop()!)), [`${st.path.split('/').pop()!}.saving`], 'no temporary file left');
});

test.serial('io.bpfcr.pins naming a whole bpffs (its root holds the kernel\'s maps.debug/progs.debug): the maps are saved, those files skipped', async (t) => {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  t.true(existsSync(join(fs.dir, 'maps.debug')), 'a fresh bpffs root has the preload files here');
  await execa('bpftool', ['map', 'create', join(fs.dir, 'root_h'), 'type', 'hash', 'key', '4', 'value', '8', 'entries', '4', 'name', 'root_h']);
  const st = stateFile('root');
  t.teardown(st.cleanup);
  const b = makeBundle([{ destination: '/sys/fs/bpf', source: fs.dir }]);
  t.teardown(() => b.cleanup());
  const ann = { 'io.bpfcr.pins': '/sys/fs/bpf', 'io.bpfcr.save-on-stop': st.path };
  const save = await runHookShim('poststop', stateJson(b, ann));
  t.is(save.exitCode, 0, save.stderr);
  t.regex(save.stderr, /saved 1 pin\(s\) of 1 map\(s\)/);
});
