/**
 * `bpfcr doctor` (issue 13): on this host (installed by ./install.sh) every check passes; each
 * check, broken on purpose by pointing it at a broken copy (a flag or PATH, never the host's own
 * files), fails (or warns, for what is optional), exit 1, and the last line names it.
 */
import test from 'ava';
import { execa } from 'execa';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpfcr, CLI, freshBpffs, requireRoot, ROOT, tempDir } from '../helpers/env.js';

test.before(() => requireRoot());

interface Check { name: string; status: 'ok' | 'warn' | 'fail'; detail: string; fix?: string }
interface Report { ok: boolean; failed: string[]; warnings: string[]; checks: Check[] }

const ALL = ['root', 'code-cache', 'bpf', 'batch-ops', 'btf', 'bpffs', 'staging', 'config', 'criu', 'criu-patches', 'plugin', 'action-script', 'oci-hooks', 'runc', 'podman', 'containerd', 'tracefs', 'libbpf'];

async function doctor(args: string[], env: Record<string, string> = {}): Promise<{ exitCode: number; report: Report; text: string }> {
  const j = await bpfcr(['doctor', '--json', ...args], { env });
  const h = await bpfcr(['doctor', ...args], { env });
  t0.is(j.exitCode, h.exitCode);
  return { exitCode: j.exitCode, report: JSON.parse(j.stdout) as Report, text: h.stdout };
}

/** ava's assertions for the helper (set per test) */
let t0: { is: (a: unknown, b: unknown, m?: string) => void };

const check = (r: Report, name: string): Check => r.checks.find((c) => c.name === name)!;

/** `name` failed, alone among the checks that pass on this host, with a fix, and the last line says so. */
function failsAlone(t: { is: Function; deepEqual: Function; truthy: Function; regex: Function }, res: { exitCode: number; report: Report; text: string }, name: string, detail: RegExp): void {
  t.is(res.exitCode, 1, res.text);
  t.deepEqual(res.report.failed, [name]);
  t.is(res.report.ok, false);
  t.regex(check(res.report, name).detail, detail);
  t.truthy(check(res.report, name).fix);
  t.regex(res.text, new RegExp(`^FAIL +${name} .* — fix: `, 'm'));
  t.regex(res.text.trim().split('\n').at(-1)!, new RegExp(`^doctor: 1 problem\\(s\\): ${name}`));
}

test.serial('a healthy host: every check ok, exit 0, one line per check', async (t) => {
  t0 = t;
  const r = await doctor([]);
  t.is(r.exitCode, 0, r.text);
  t.true(r.report.ok);
  t.deepEqual(r.report.checks.map((c) => c.name), ALL);
  // the staging area is shared with CRIU tests running meanwhile: a stale checkpoint of theirs warns
  t.deepEqual(r.report.checks.filter((c) => c.status !== 'ok' && !(c.name === 'staging' && c.status === 'warn')), []);
  t.is(r.text.trim().split('\n').length, ALL.length + 2); // header + checks + summary
  t.regex(r.text, /^ok +criu-patches +\/opt\/bpfcr\/criu\/sbin\/criu carries patches 0001-0006/m);
  t.regex(r.text, /^ok +plugin +\/usr\/lib\/criu\/bpfcr_plugin\.so: plugin "bpfcr", ABI 0\.2\.0 matches CRIU's, 14 hooks \(with the VMA hooks\)$/m);
  t.regex(r.text, /^doctor: everything bpfcr needs is here( \(warnings: staging\))?$/m);
});

test.serial('bpffs, staging, config: not a bpffs, a staging root on another filesystem, a broken config', async (t) => {
  t0 = t;
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  failsAlone(t, await doctor(['--bpffs', dir]), 'bpffs', /no bpffs on .*: nothing can be pinned or staged/);
  mkdirSync(join(dir, 'ckpt'));
  failsAlone(t, await doctor(['--staging', dir]), 'staging', /is not on a bpffs/);
  const cfg = join(dir, 'config.yaml');
  writeFileSync(cfg, 'policy:\n  types: [oops\n');
  failsAlone(t, await doctor(['--config', cfg]), 'config', /config\.yaml/);
});

test.serial('staging: a checkpoint nobody collected for two days is a warning with the gc command (exit 0)', async (t) => {
  t0 = t;
  const fs = await freshBpffs();
  t.teardown(() => fs.cleanup());
  mkdirSync(join(fs.dir, 'old-ckpt'));
  mkdirSync(join(fs.dir, 'new-ckpt'));
  const past = new Date(Date.now() - 2 * 86400e3);
  utimesSync(join(fs.dir, 'old-ckpt'), past, past);
  const r = await doctor(['--staging', fs.dir]);
  t.is(r.exitCode, 0, r.text);
  t.deepEqual(r.report.warnings, ['staging']);
  t.regex(check(r.report, 'staging').detail, /2 staged checkpoint\(s\), 0 pin\(s\); 1 untouched for more than 24\.0h \(old-ckpt, 2\.0d\)/);
  t.regex(check(r.report, 'staging').fix!, /^bpfcr gc --older-than 24\.0h --staging /);
  t.regex(r.text, /^doctor: everything bpfcr needs is here \(warnings: staging\)$/m);
});

test.serial('criu and its patches: missing, and a criu that runs but lacks the patches', async (t) => {
  t0 = t;
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  failsAlone(t, await doctor(['--criu', join(dir, 'criu')]), 'criu', /is not an executable file/);
  // a criu that answers like 4.1.1 and "Looks good", as Debian's unpatched build would
  const fake = join(dir, 'criu');
  writeFileSync(fake, '#!/bin/sh\ncase "$1" in --version) echo "Version: 4.1.1";; check) echo "Looks good.";; esac\n');
  chmodSync(fake, 0o755);
  const r = await doctor(['--criu', fake]);
  failsAlone(t, r, 'criu-patches', /lacks bpfcr's CRIU patches 0002 \(TCP\/UDP sockets on Linux >= 6\.16\), 0003 .*0004 .*0005/);
  t.is(check(r.report, 'criu').status, 'ok');
  // a wrapper like install.sh's, in front of a binary without the patches
  const wrapper = join(dir, 'criu-wrapper');
  writeFileSync(wrapper, `#!/bin/sh\nexec "/bin/true" "$@"\n`);
  chmodSync(wrapper, 0o755);
  const w = await doctor(['--criu', wrapper]);
  t.is(w.exitCode, 1);
  t.deepEqual(w.report.failed, ['criu', 'criu-patches']);
  t.regex(check(w.report, 'criu-patches').detail, /^\/bin\/true lacks/);
});

test.serial('plugin: missing, not a shared object, built without the VMA hooks, another ABI than CRIU', async (t) => {
  t0 = t;
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  failsAlone(t, await doctor(['--plugin-dir', dir]), 'plugin', /bpfcr_plugin\.so is missing/);
  writeFileSync(join(dir, 'bpfcr_plugin.so'), 'not an ELF file');
  failsAlone(t, await doctor(['--plugin-dir', dir]), 'plugin', /does not load/);
  // the real plugin source, compiled as against a CRIU header without the hooks (no -DBPFCR_HAVE_VMA_HOOKS)
  await execa('cc', ['-O2', '-shared', '-fPIC', '-I/opt/bpfcr/criu/include/criu', '-o', join(dir, 'bpfcr_plugin.so'), join(ROOT, 'src/criu-plugin/bpfcr_plugin.c')]);
  failsAlone(t, await doctor(['--plugin-dir', dir]), 'plugin', /built without the DUMP_VMA\/RESTORE_VMA hooks this CRIU has/);
  // the installed plugin against a CRIU whose plugin ABI is 1.2.0 (another major)
  const prefix = join(dir, 'criu');
  mkdirSync(join(prefix, 'include/criu'), { recursive: true });
  writeFileSync(join(prefix, 'include/criu/criu-plugin.h'), readFileSync('/opt/bpfcr/criu/include/criu/criu-plugin.h', 'utf8').replace(/(#define CRIU_PLUGIN_VERSION_MAJOR\s+)0/, '$11'));
  failsAlone(t, await doctor(['--criu-prefix', prefix]), 'plugin', /ABI 0\.2\.0, but CRIU's is 1\.2\.0/);
});

test.serial('action script and OCI hooks: not registered, pointing nowhere, invalid hooks.d JSON', async (t) => {
  t0 = t;
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const conf = join(dir, 'default.conf');
  writeFileSync(conf, 'tcp-established\n');
  failsAlone(t, await doctor(['--criu-conf', conf]), 'action-script', /registers no bpfcr action script/);
  writeFileSync(conf, `action-script ${join(dir, 'lib/bpfcr/hooks/checkpoint')}\n`);
  failsAlone(t, await doctor(['--criu-conf', conf]), 'action-script', /which is not an executable file/);
  const hooks = join(dir, 'hooks.d');
  mkdirSync(hooks);
  failsAlone(t, await doctor(['--hooks-dir', hooks]), 'oci-hooks', /no bpfcr-\*\.json in/);
  copyFileSync('/usr/share/containers/oci/hooks.d/bpfcr-poststop.json', join(hooks, 'bpfcr-poststop.json'));
  writeFileSync(join(hooks, 'bpfcr-prestart.json'), '{"version": "1.0.0", "hook": ');
  failsAlone(t, await doctor(['--hooks-dir', hooks]), 'oci-hooks', /bpfcr-prestart\.json: invalid JSON/);
  writeFileSync(join(hooks, 'bpfcr-prestart.json'), JSON.stringify({ version: '1.0.0', hook: { path: join(dir, 'nope') }, when: { always: true }, stages: ['prestart'] }));
  failsAlone(t, await doctor(['--hooks-dir', hooks]), 'oci-hooks', /bpfcr-prestart\.json: hook .*nope is not an executable file/);
});

test.serial('runtimes, tracefs, libbpf: runc not on PATH fails, no tracefs warns (no perf-event user), no libbpf fails', async (t) => {
  t0 = t;
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = await doctor([], { PATH: dir });
  t.is(r.exitCode, 1);
  t.deepEqual(r.report.failed, ['criu', 'runc']);
  t.deepEqual(r.report.warnings, ['podman', 'containerd']);
  t.regex(check(r.report, 'runc').detail, /is not on PATH/);
  const tr = await doctor(['--tracefs', dir]);
  t.is(tr.exitCode, 0);
  t.deepEqual(tr.report.warnings, ['tracefs']);
  t.regex(check(tr.report, 'tracefs').fix!, /^mount -t tracefs tracefs /);
  failsAlone(t, await doctor(['--libbpf', join(dir, 'libbpf.so.1')]), 'libbpf', /cannot load/);
});

test.serial('not root: root and bpf(2) fail, with what to do', async (t) => {
  // PATH=/nonexistent: no podman run as nobody (it would leave its per-user dirs in /tmp)
  const r = await execa('/usr/bin/setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'doctor', '--json'], { reject: false, env: { BPFCR_CONFIG: '', PATH: '/nonexistent' } });
  t.is(r.exitCode, 1);
  const report = JSON.parse(r.stdout) as Report;
  t.true(report.failed.includes('root') && report.failed.includes('bpf'), report.failed.join());
  t.regex(check(report, 'bpf').detail, /EPERM/);
  t.is(check(report, 'root').fix, 'sudo bpfcr doctor');
});
