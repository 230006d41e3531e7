/**
 * /proc helpers for the CRIU glue: which criu an action runs for, and who holds which BPF object.
 * (Process identity, trees and command lines are the runtime layer's: src/runtime/process.ts.)
 * Plain fs calls only: no native modules, cheap to import.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { bpfKindOfLink, type BpfObjectKind } from '../maps/fdinfo.js';

/**
 * The criu process an action runs for. CRTOOLS_IMAGE_DIR is /proc/<criu pid>/fd/<n>; a hand-made
 * environment (a plain directory) falls back to our parent, which is criu when criu runs us (or to
 * $BPFCR_CRIU_PID, which hooks/checkpoint sets for the worker it starts).
 */
export function criuPid(imageDir: string): number {
  const m = /^\/proc\/(\d+)\/fd\/\d+\/?$/.exec(imageDir);
  if (m) return Number(m[1]);
  const fromShim = Number(process.env['BPFCR_CRIU_PID']); // hooks/checkpoint's warm worker (run by hand)
  return Number.isInteger(fromShim) && fromShim > 0 ? fromShim : process.ppid;
}

export type BpfKind = BpfObjectKind;

export interface Holder { pid: number; fd: number }

/**
 * Which live processes hold an fd of any of the given objects. Scans /proc/<pid>/fd of every
 * process (readlink first, fdinfo only for BPF fds). Processes and fds that vanish are skipped.
 * Returns "kind:id" → holders; objects nobody holds are absent.
 */
export function liveHolders(wanted: { kind: BpfKind; id: number }[], excludePids: number[] = []): Map<string, Holder[]> {
  const want = new Set(wanted.map((w) => `${w.kind}:${w.id}`));
  const out = new Map<string, Holder[]>();
  if (want.size === 0) return out;
  const skip = new Set([process.pid, ...excludePids]);
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    const pid = Number(name);
    if (skip.has(pid)) continue;
    let fds: string[];
    try { fds = readdirSync(`/proc/${pid}/fd`); } catch { continue; }
    for (const fd of fds) {
      let target: string;
      try { target = readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
      const kind = bpfKindOfLink(target);
      if (!kind) continue;
      let info: string;
      try { info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'); } catch { continue; }
      const m = new RegExp(`^${kind}_id:\\s*(\\d+)`, 'm').exec(info);
      if (!m) continue;
      const key = `${kind}:${m[1]}`;
      if (!want.has(key)) continue;
      const list = out.get(key) ?? [];
      list.push({ pid, fd: Number(fd) });
      out.set(key, list);
    }
  }
  return out;
}

/** Was this dump asked to leave the tasks running? (the runtime adapter knows: src/runtime) */
export { dumpLeavesRunning } from '../runtime/index.js';
export { processToken, processTree, tokenAlive } from '../runtime/process.js';
