/**
 * /proc helpers for the CRIU glue: process identity (pid + start time, so a recycled pid is never
 * mistaken for the process we saw), process trees, who holds which BPF object, and ancestors'
 * command lines. Plain fs calls only: no native modules, cheap to import.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot), or undefined if gone. */
export function startTime(pid: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm (field 2) may contain spaces and parentheses: fields 3.. follow the LAST ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return rest[19];
}

/** "<pid> <start time>": names one process for as long as it lives; '' if it is gone. */
export function processToken(pid: number): string {
  const st = startTime(pid);
  return st === undefined ? '' : `${pid} ${st}`;
}

/** Is the process named by a processToken() still the same live process? */
export function tokenAlive(token: string): boolean {
  const [pid, st] = token.trim().split(/\s+/);
  if (!pid || !st || !/^\d+$/.test(pid)) return false;
  return startTime(Number(pid)) === st;
}

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

/** pid and all its descendants (through every thread's children list). */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const seen = new Set<number>();
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop()!;
    if (seen.has(p)) continue;
    seen.add(p);
    out.push(p);
    let tids: string[];
    try { tids = readdirSync(`/proc/${p}/task`); } catch { continue; }
    for (const tid of tids) {
      let kids: string;
      try { kids = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8'); } catch { continue; }
      for (const k of kids.split(' ')) if (k.trim()) todo.push(Number(k));
    }
  }
  return out;
}

export type BpfKind = 'map' | 'prog' | 'link';

const LINK_OF: Record<string, BpfKind> = {
  'anon_inode:bpf-map': 'map',
  'anon_inode:bpf-prog': 'prog',
  'anon_inode:bpf_link': 'link',
  'anon_inode:bpf-link': 'link',
};

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
      const kind = LINK_OF[target];
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

/** argv of a process ([] if gone). */
export function argv(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
  } catch {
    return [];
  }
}

export function parentPid(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Was this dump asked to leave the tasks running? CRIU does not tell action scripts, so look at
 * the command lines of criu and the tools above it: `criu dump -R/--leave-running`,
 * `runc checkpoint --leave-running`, `podman container checkpoint -R/--leave-running`.
 * (Over RPC, criu's own argv is "swrk N"; runc's and podman's argv still carry the flag.)
 */
export function dumpLeavesRunning(criu: number): boolean {
  let pid: number | undefined = criu;
  for (let depth = 0; pid && pid > 1 && depth < 5; depth++, pid = parentPid(pid)) {
    const args = argv(pid);
    if (args.some((a) => a === '--leave-running' || a === '--leave-running=true')) return true;
    if (args.includes('-R') && (args.includes('dump') || args.includes('checkpoint'))) return true;
  }
  return false;
}
