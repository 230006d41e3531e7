/**
 * Issue 11, the hooks' side of "hostile input and faults":
 * - a pin behind a bind mount the container has read-only is never replaced nor created by
 *   prestart (the hooks write only where the container could), and the hook says so;
 * - a poststop save that fails or is killed leaves FILE.saving, and the next prestart refuses the
 *   older FILE instead of starting the container on it silently.
 * Run as podman runs the hooks (the shims, empty environment, state on stdin), on a real bpffs.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, freshBpffs, requireRoot, ROOT, startHolder } from '../helpers/env.js';
import { makeBundle, runHookShim, stateFile, stateJson } from '../helpers/oci.js';

test.before(() => requireRoot());

async function pinnedId(p: string): Promise<number> {
  return (JSON.parse((await execa('bpftool', ['-j', 'map', 'show', 'pinned', p])).stdout) as { id: number }).id;
}

test.serial('prestart leaves pins behind a read-only bind mount as they are (neither replaced nor created), and says so', async (t) => {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const ro = join(fs.dir, 'ro');
  const rw = join(fs.dir, 'rw');
  mkdirSync(ro);
  mkdirSync(rw);
  await (await startHolder(['hold', '--pin-dir', ro, 'hash:shared:entries=5', 'array:cfg'])).kill();
  await (await startHolder(['hold', '--pin-dir', rw, 'hash:own:entries=5'])).kill();
  const st = stateFile('robind');
  t.teardown(st.cleanup);
  // the same host directory, once read-write (to save it), then as the restoring container has it
  const pins = '/sys/fs/bpf/shared,/sys/fs/bpf/app';
  const ann = { 'io.bpfcr.pins': pins, 'io.bpfcr.save-on-stop': st.path, 'io.bpfcr.restore-from': st.path };
  const saver = makeBundle([{ destination: '/sys/fs/bpf/shared', source: ro }, { destination: '/sys/fs/bpf/app', source: rw }]);
  t.teardown(() => saver.cleanup());
  const saved = await runHookShim('poststop', stateJson(saver, ann));
  t.is(saved.exitCode, 0, saved.stderr);

  // the host changed the read-only side meanwhile: another map at `shared`, `cfg` gone
  const sharedBefore = await describe({ pin: join(ro, 'shared') });
  rmSync(join(ro, 'shared'));
  rmSync(join(ro, 'cfg'));
  await (await startHolder(['hold', '--pin-dir', ro, 'hash:shared:entries=9'])).kill();
  const hostShared = await pinnedId(join(ro, 'shared'));
  const ownId = await pinnedId(join(rw, 'own'));

  for (const options of [['rbind', 'ro'], ['rbind', 'rw', 'ro'], ['rro', 'rbind']]) {
    const b = makeBundle([{ destination: '/sys/fs/bpf/shared', source: ro, options }, { destination: '/sys/fs/bpf/app', source: rw }]);
    t.teardown(() => b.cleanup());
    const r = await runHookShim('prestart', stateJson(b, ann, 'creating'));
    t.is(r.exitCode, 0, r.stderr);
    t.regex(r.stderr, /warning: left 2 pin\(s\) as they are \(1 present, 1 missing\): behind a bind mount the container has read-only, where bpfcr does not write either: \/sys\/fs\/bpf\/shared\/cfg, \/sys\/fs\/bpf\/shared\/shared/, options.join(','));
    t.regex(r.stderr, /restored 3 pin\(s\) from .*: 0 created, 1 replaced, 0 kept, 2 left as they are \(read-only bind\)/);
    t.is(await pinnedId(join(ro, 'shared')), hostShared, 'the host\'s pin behind the ro bind is the same map');
    t.false(existsSync(join(ro, 'cfg')), 'nothing created behind the ro bind');
    t.not(await pinnedId(join(rw, 'own')), ownId, 'the read-write bind is restored as before');
  }
  t.notDeepEqual(await describe({ pin: join(ro, 'shared') }), sharedBefore);
  // a later `rw` wins over an earlier `ro`, as the runtime applies them
  const rwAgain = makeBundle([{ destination: '/sys/fs/bpf/shared', source: ro, options: ['rbind', 'ro', 'rw'] }, { destination: '/sys/fs/bpf/app', source: rw }]);
  t.teardown(() => rwAgain.cleanup());
  const r = await runHookShim('prestart', stateJson(rwAgain, ann, 'creating'));
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stderr, /1 created, 2 replaced, 0 kept;/);
  t.deepEqual(await describe({ pin: join(ro, 'shared') }), sharedBefore);
});

/**
 * A container whose io.bpfcr.pins dir holds maps pinned from `specs` (no process holds them),
 * saving to and restoring from one state file; its FILE.saving marker is removed afterwards too.
 */
async function savingContainer(t: ExecutionContext, tag: string, specs: string[]) {
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const app = join(fs.dir, 'app');
  mkdirSync(app);
  await (await startHolder(['hold', '--pin-dir', app, ...specs])).kill();
  const st = stateFile(tag);
  const marker = `${st.path}.saving`;
  t.teardown(() => { st.cleanup(); rmSync(marker, { force: true }); });
  const b = makeBundle([{ destination: '/sys/fs/bpf/app', source: app }]);
  t.teardown(() => b.cleanup());
  const ann = { 'io.bpfcr.pins': '/sys/fs/bpf/app', 'io.bpfcr.save-on-stop': st.path, 'io.bpfcr.restore-from': st.path };
  return { app, st, marker, b, ann };
}

test.serial('a failed poststop save makes the next prestart refuse the older state file until someone decides', async (t) => {
  const { app, st, marker, b, ann } = await savingContainer(t, 'rollback', ['hash:counters:entries=10']);

  const ok = await runHookShim('poststop', stateJson(b, ann));
  t.is(ok.exitCode, 0, ok.stderr);
  t.false(existsSync(marker), 'a save that worked leaves no marker');
  const v1 = await describe({ pin: join(app, 'counters') });

  // the application moves on, then a map appears that cannot be saved (stack_trace: refused)
  rmSync(join(app, 'counters'));
  await (await startHolder(['hold', '--pin-dir', app, 'hash:counters:entries=20', 'stack_trace:traces'])).kill();
  const failed = await runHookShim('poststop', stateJson(b, ann));
  t.is(failed.exitCode, 1);
  t.regex(failed.stderr, /error: refusing map id \d+ \(pinned at \/sys\/fs\/bpf\/app\/traces\) 'traces' \(STACK_TRACE\)/);
  t.regex(failed.stderr, /warning: .* is not up to date: the next start refuses it until .*\.saving is dealt with/);
  t.is(statSync(marker).mode & 0o777, 0o600);

  const refused = await runHookShim('prestart', stateJson(b, ann, 'creating'));
  t.is(refused.exitCode, 1, 'the container does not start on the older state');
  t.regex(refused.stderr, new RegExp(`error: refusing to restore: the last save into ${st.path} failed \\([^:]+:\\d\\d:[\\d.]+Z: refusing map id \\d+ \\(pinned at /sys/fs/bpf/app/traces\\) 'traces' \\(STACK_TRACE\\).*\\), so ${st.path} holds an older state \\(saved [^)]+\\) than the container had when it stopped; to start from that older state anyway remove ${st.path}\\.saving; to start without saved state move ${st.path} and ${st.path}\\.saving away$`));
  t.is(refused.stderr.split('\n').length, 1, 'one line');

  // the operator decides: the older state is what they want
  rmSync(marker);
  rmSync(join(app, 'counters'));
  const older = await runHookShim('prestart', stateJson(b, ann, 'creating'));
  t.is(older.exitCode, 0, older.stderr);
  t.deepEqual(await describe({ pin: join(app, 'counters') }), v1);

  // with no older state at all, a failed first save still stops a silent empty start
  rmSync(st.path);
  t.is((await runHookShim('poststop', stateJson(b, ann))).exitCode, 1);
  const none = await runHookShim('prestart', stateJson(b, ann, 'creating'));
  t.is(none.exitCode, 1);
  t.regex(none.stderr, /the last save into .* failed .*, so there is no older state in .*; to start without saved state remove .*\.saving$/);

  // a save that works again clears it
  rmSync(join(app, 'traces'));
  const again = await runHookShim('poststop', stateJson(b, ann));
  t.is(again.exitCode, 0, again.stderr);
  t.false(existsSync(marker));
  t.is((await runHookShim('prestart', stateJson(b, ann, 'creating'))).exitCode, 0);
});

test.serial('a poststop killed in the middle of its save makes the next prestart refuse the older state file', async (t) => {
  const { app, st, marker, b, ann } = await savingContainer(t, 'killed', ['hash:small:entries=10']);
  t.is((await runHookShim('poststop', stateJson(b, ann))).exitCode, 0);
  // a map big enough for the save to take a while, and the hook killed as a runtime's timeout would
  await (await startHolder(['hold', '--pin-dir', app, 'hash:big:entries=1000000,max=1000000'])).kill();
  const hook = spawn(join(ROOT, 'hooks/poststop'), [], { stdio: ['pipe', 'ignore', 'ignore'], env: { BPFCR_CONFIG: '', BPFCR_HOOK_LOG: '' } });
  hook.stdin.end(stateJson(b, ann));
  const gone = new Promise((r) => hook.once('exit', r));
  for (let i = 0; i < 400 && !existsSync(marker); i++) await new Promise((r) => setTimeout(r, 10));
  t.true(existsSync(marker), 'the marker is written before the save starts');
  hook.kill('SIGKILL');
  await gone;
  const r = await runHookShim('prestart', stateJson(b, ann, 'creating'));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /error: refusing to restore: the save into .* that started at \S+ never finished \(its hook was killed\), so .* holds an older state/);
  // the next save that works clears the marker and what the killed one left behind
  const temps = (): string[] => readdirSync('/var/lib/bpfcr/state').filter((n) => n.startsWith(`.${st.path.split('/').pop()}.`));
  const again = await runHookShim('poststop', stateJson(b, ann));
  t.is(again.exitCode, 0, again.stderr);
  t.false(existsSync(marker));
  t.deepEqual(temps(), [], 'no temporary file left');
});
