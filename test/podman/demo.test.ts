/**
 * `bpfcr demo` (what `sudo ./install.sh` ends with) from this checkout: real podman checkpoint
 * --export / restore --import of the demo container, every map compared by bpfholder describe.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { bpfcr, requireRoot } from '../helpers/env.js';
import { requireInstalledCheckout } from '../helpers/podman-criu.js';
import { requirePodman } from '../helpers/podman.js';

test.before(async () => {
  requireRoot();
  await requirePodman();
  requireInstalledCheckout();
  if (!existsSync('/usr/share/containers/oci/hooks.d/bpfcr-prestart.json')) throw new Error('bpfcr OCI hooks are not registered: run sudo ./install.sh --no-demo');
});

test.serial('bpfcr demo: every map identical after checkpoint --export, host wipe, restore --import', async (t) => {
  t.timeout(180_000);
  const r = await bpfcr(['demo']);
  t.is(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  t.regex(r.stdout, /MAP\s+HELD AS\s+TYPE\s+ENTRIES BEFORE\s+ENTRIES AFTER\s+IDENTICAL/);
  for (const m of ['flows', 'stats', 'routes', 'jobs', 'config', 'tenants', 'recent', 'sessions']) t.regex(r.stdout, new RegExp(`^${m}\\s.*\\syes$`, 'm'), m);
  t.notRegex(r.stdout, /\sNO$/m);
  t.regex(r.stdout, /all 8 maps identical/);
});

test('bpfcr demo --help', async (t) => {
  const r = await bpfcr(['demo', '--help']);
  t.is(r.exitCode, 0);
  t.regex(r.stdout, /Usage: bpfcr demo/);
  const bad = await bpfcr(['demo', 'extra']);
  t.is(bad.exitCode, 2);
});
