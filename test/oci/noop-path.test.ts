/**
 * The hooks run on every container start/stop they are registered for: a container without
 * io.bpfcr.* annotations must cost about one bare Node start. The time itself is measured by
 * bench/hook-latency.ts (never a timed assertion here); this checks what the no-op path loads.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/env.js';

const ENTRY = join(ROOT, 'dist/src/oci/hook-main.cjs');

test('the no-op path loads nothing but node:fs and node:tty (no koffi, yaml, tar-stream, execa)', (t) => {
  const js = readFileSync(ENTRY, 'utf8');
  const at = [...js.matchAll(/}\s*else\s*{/g)].at(-1)!.index; // the entry's last branch: the full path
  const [fast, slow] = [js.slice(0, at), js.slice(at)];
  const requires = (code: string): string[] => [...code.matchAll(/require\((['"])([^'"]+)\1\)/g)].map((m) => m[2]!).sort();
  t.deepEqual(requires(fast!), ['node:fs', 'node:tty']);
  t.deepEqual(requires(slow!), ['../cli/load.cjs'], 'everything else comes from the bundle, loaded on the full path only');
  t.notRegex(js.replace(/\/\/.*$/gm, ''), /process\.stdin/, 'process.stdin builds a stream (~4 ms): the entry uses fd 0 directly');
});

/** Run the hook entry on a state; the run log tells whether the full path (hook-run.ts) ran. */
function hook(stage: string, annotations: Record<string, string>): { status: number | null; stderr: string; log: string } {
  const dir = mkdtempSync(join(tmpdir(), 'bpfcr-noop-'));
  try {
    const state = { ociVersion: '1.0.2', id: 'noop-test', status: stage === 'prestart' ? 'created' : 'stopped', pid: 0, bundle: join(dir, 'no-bundle'), annotations };
    const r = spawnSync(process.execPath, [ENTRY, stage], { input: JSON.stringify(state), encoding: 'utf8', env: { ...process.env, BPFCR_LOG_DIR: dir, BPFCR_HOOK_LOG: join(dir, 'hooks.log') } });
    const log = readdirSync(dir).filter((f) => f.endsWith('.log')).map((f) => readFileSync(join(dir, f), 'utf8')).join('');
    return { status: r.status, stderr: r.stderr, log };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('poststop takes the no-op path for annotations it does nothing for, and the full path for save-on-stop or an unknown key', (t) => {
  const quick = hook('poststop', { 'io.bpfcr.pins': '/sys/fs/bpf/app', 'io.bpfcr.restore-from': '/var/lib/bpfcr/state/x.tar', 'io.bpfcr.on-existing': 'keep' });
  t.is(quick.status, 0, quick.stderr);
  t.is(quick.log, '', 'hook-run.ts did not run');
  const unknown = hook('poststop', { 'io.bpfcr.pins': '/sys/fs/bpf/app', 'io.bpfcr.save-on-stp': '/var/lib/bpfcr/state/x.tar' });
  t.regex(unknown.log, /unknown annotation io\.bpfcr\.save-on-stp/, 'a typo is still reported');
  const prestart = hook('prestart', { 'io.bpfcr.pins': '/sys/fs/bpf/app' });
  t.regex(prestart.log, /hook prestart/, 'prestart checks the annotations of an annotated container');
});
