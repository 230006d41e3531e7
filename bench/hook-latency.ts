/**
 * node dist/bench/hook-latency.js [runs] — no-op OCI hook latency (a container without io.bpfcr.*
 * annotations) against a bare `node -e 0`, interleaved runs, empty environment as podman gives
 * hooks. Goal (issue 4): ≤ 1.3× node -e 0.
 */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const N = Number(process.argv[2] ?? 25);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function main(): void {
  const state = JSON.stringify({
    ociVersion: '1.0.2', id: 'a'.repeat(64), status: 'stopped', bundle: '/var/lib/containers/storage/overlay-containers/x/userdata',
    annotations: { 'io.container.manager': 'libpod', 'io.kubernetes.cri-o.TTY': 'false', 'io.podman.annotations.autoremove': 'FALSE' },
  });
  const runs: Record<string, string[]> = {
    'node -e 0': [process.execPath, '-e', '0'],
    'hooks/poststop': [join(ROOT, 'hooks/poststop')],
    'hooks/prestart': [join(ROOT, 'hooks/prestart')],
  };
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(runs).map((k) => [k, []]));
  for (let i = 0; i < N + 2; i++) {
    for (const [name, [cmd, ...args]] of Object.entries(runs)) {
      const t0 = process.hrtime.bigint();
      const r = spawnSync(cmd!, args, { input: state, env: {} });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.status !== 0) throw new Error(`${name} exited ${r.status}: ${String(r.stderr)}`);
      if (i >= 2) times[name]!.push(ms); // first two rounds warm the page cache
    }
  }
  const base = median(times['node -e 0']!);
  for (const name of Object.keys(runs)) {
    const m = median(times[name]!);
    console.log(`${name}: median ${m.toFixed(1)} ms (min ${Math.min(...times[name]!).toFixed(1)}) = ${(m / base).toFixed(2)}× node -e 0`);
  }
}

main();
