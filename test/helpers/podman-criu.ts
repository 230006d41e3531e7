/**
 * podman checkpoint/restore plumbing for tests: the CRIU side under podman, maps held by a
 * container's processes (seen from the host through /proc), and the installed copy check.
 *
 * Why the installed copy: podman runs runc (and runc runs criu) with almost no environment, and
 * CRIU finds the action script only through /etc/criu/default.conf, which names the
 * installed /usr/local/lib/bpfcr/hooks/checkpoint. So these tests need the installed bpfcr to be
 * this checkout's build: scripts/test-setup-podman.sh (npm test's pretest) runs install.sh.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { bpfKindOfLink } from '../../src/maps/fdinfo.js';
import { describe, ROOT } from './env.js';

export const INSTALLED = '/usr/local/lib/bpfcr';

function treeHash(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string, rel: string): void => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p, `${rel}/${n}`);
      else if (n.endsWith('.js') || n.endsWith('.cjs')) h.update(`${rel}/${n}\0`).update(readFileSync(p));
    }
  };
  walk(dir, '');
  return h.digest('hex');
}

/** Fail (never skip) when CRIU under podman would run another bpfcr than this checkout's. */
export function requireInstalledCheckout(): void {
  const hint = 'run `sudo npm test` (its pretest runs scripts/test-setup-podman.sh → ./install.sh --no-demo) or `sudo ./install.sh --no-demo`';
  const conf = existsSync('/etc/criu/default.conf') ? readFileSync('/etc/criu/default.conf', 'utf8') : '';
  if (!conf.includes(`action-script ${INSTALLED}/hooks/checkpoint`)) throw new Error(`/etc/criu/default.conf does not name ${INSTALLED}/hooks/checkpoint: ${hint}`);
  if (!existsSync(join(INSTALLED, 'dist/src')) || treeHash(join(INSTALLED, 'dist/src')) !== treeHash(join(ROOT, 'dist/src'))) {
    throw new Error(`the installed bpfcr (${INSTALLED}/dist) is not this checkout's build, and podman's CRIU runs the installed action script: ${hint}`);
  }
  const strip = (s: string): string => s.replace(/^NODE=.*$/m, 'NODE=');
  if (strip(readFileSync(join(INSTALLED, 'hooks/checkpoint'), 'utf8')).trim() !== strip(readFileSync(join(ROOT, 'hooks/checkpoint'), 'utf8')).trim()) {
    throw new Error(`${INSTALLED}/hooks/checkpoint differs from this checkout's hooks/checkpoint: ${hint}`);
  }
}

/** The process tree under `pid` (pid first, then children depth-first, in pid order). */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number): void => {
    out.push(p);
    const kids: number[] = [];
    let tasks: string[] = [];
    try { tasks = readdirSync(`/proc/${p}/task`); } catch { return; }
    for (const t of tasks) {
      try {
        for (const k of readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim().split(/\s+/)) if (k) kids.push(Number(k));
      } catch { /* gone */ }
    }
    for (const k of kids.sort((a, b) => a - b)) visit(k);
  };
  visit(pid);
  return out;
}

/** Maps the processes under `pid` hold: "<process index in the tree>:fd <n>" → map id. */
export function heldMapIds(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  processTree(pid).forEach((p, i) => {
    let fds: string[] = [];
    try { fds = readdirSync(`/proc/${p}/fd`); } catch { return; }
    for (const fd of fds.sort((a, b) => Number(a) - Number(b))) {
      let link = '';
      try { link = readlinkSync(`/proc/${p}/fd/${fd}`); } catch { continue; }
      if (bpfKindOfLink(link) !== 'map') continue;
      const m = /^map_id:\s*(\d+)$/m.exec(readFileSync(`/proc/${p}/fdinfo/${fd}`, 'utf8'));
      if (m) out.set(`process ${i}: fd ${fd}`, Number(m[1]));
    }
  });
  return out;
}

/** bpfholder describe of every map the processes under `pid` hold, keyed as heldMapIds. */
export async function describeHeld(pid: number): Promise<Record<string, Record<string, unknown>>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [k, id] of heldMapIds(pid)) out[k] = await describe({ id });
  return out;
}
