/**
 * `sudo ./install.sh` is idempotent: npm test's pretest has already run it once, so this run is a
 * second one and must change nothing it installs (files compared by content and mode).
 */
import test from 'ava';
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, requireRoot } from '../helpers/env.js';

const INSTALLED = [
  '/usr/local/lib/bpfcr', '/usr/local/bin/bpfcr', '/etc/bpfcr/config.yaml', '/etc/criu/runc.conf', '/etc/criu/default.conf',
  '/usr/lib/criu/bpfcr_plugin.so', '/usr/local/sbin/criu', '/usr/share/containers/oci/hooks.d',
];

/** path → mode + content hash, for every file below the paths (node_modules included). */
function snapshot(paths: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (p: string): void => {
    const st = lstatSync(p);
    if (st.isDirectory()) { for (const e of readdirSync(p)) walk(join(p, e)); return; }
    const body = st.isSymbolicLink() ? `link:${readlinkSync(p)}` : createHash('sha256').update(readFileSync(p)).digest('hex');
    out.set(p, `${(st.mode & 0o7777).toString(8)} ${body}`);
  };
  for (const p of paths) if (existsSync(p)) walk(p);
  return out;
}

test.before(() => requireRoot());

test.serial('a second ./install.sh changes nothing and succeeds', async (t) => {
  t.timeout(300_000);
  const before = snapshot(INSTALLED);
  t.true(before.size > 100, 'the pretest installed bpfcr');
  const r = await execa(join(ROOT, 'install.sh'), ['--no-demo'], { reject: false, all: true });
  t.is(r.exitCode, 0, r.all);
  t.notRegex(String(r.all), /installed |registered |installing /, 'nothing is (re)installed');
  const after = snapshot(INSTALLED);
  const changed = [...new Set([...before.keys(), ...after.keys()])].filter((k) => before.get(k) !== after.get(k));
  t.deepEqual(changed, []);
});

test.serial('the action script is registered once, in default.conf only (runc.conf would run it twice more)', (t) => {
  const line = 'action-script /usr/local/lib/bpfcr/hooks/checkpoint';
  const lines = (f: string): string[] => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').map((l) => l.trim()) : []);
  t.is(lines('/etc/criu/default.conf').filter((l) => l === line).length, 1, '/etc/criu/default.conf names it once');
  t.deepEqual(lines('/etc/criu/runc.conf').filter((l) => l.includes('bpfcr/hooks/checkpoint')), [], '/etc/criu/runc.conf does not name it');
});
