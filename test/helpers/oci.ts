/**
 * OCI hook plumbing without a container runtime: a bundle directory whose config.json has the
 * mounts a runtime would have, state JSON for it, and running the real hook shims (hooks/prestart,
 * hooks/poststop) the way podman does: empty environment, state on stdin.
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from './env.js';

export const STATE_DIR = '/var/lib/bpfcr/state';

export interface Bundle { dir: string; id: string; cleanup(): void }

/** A bundle dir with config.json holding `mounts` (destination → host source); cleanup() removes it. */
export function makeBundle(mounts: { destination: string; source: string; type?: string; options?: string[] }[]): Bundle {
  const dir = tempDir('bpfcr-bundle-');
  const cfg = {
    ociVersion: '1.0.2',
    root: { path: join(dir, 'rootfs') },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      ...mounts.map((m) => ({ type: m.type ?? 'bind', options: m.options ?? ['rbind', 'rw'], ...m })),
    ],
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  return { dir, id: randomBytes(32).toString('hex'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function stateJson(b: Bundle, annotations: Record<string, string>, status = 'stopped'): string {
  return JSON.stringify({ ociVersion: '1.0.2', id: b.id, status, bundle: b.dir, annotations });
}

export interface HookRun { exitCode: number; stdout: string; stderr: string }

/** Run hooks/STAGE with an empty environment (as podman runs hooks.d hooks) plus `env`. */
export async function runHookShim(stage: 'prestart' | 'poststop', input: string, env: Record<string, string> = {}): Promise<HookRun> {
  const r = await execa(join(ROOT, 'hooks', stage), [], {
    input, reject: false, stripFinalNewline: true, extendEnv: false,
    env: { BPFCR_CONFIG: '', BPFCR_HOOK_LOG: '', ...env },
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** A unique state file path under /var/lib/bpfcr/state, removed by cleanup(). */
export function stateFile(tag = 'oci'): { path: string; cleanup(): void } {
  mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 });
  const path = join(STATE_DIR, `test-${tag}-${process.pid}-${randomBytes(4).toString('hex')}.tar`);
  return { path, cleanup: () => rmSync(path, { force: true }) };
}

export function readIfExists(p: string): string | undefined {
  return existsSync(p) ? readFileSync(p, 'utf8') : undefined;
}
