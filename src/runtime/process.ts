/**
 * Processes, as /proc shows them: identity (pid + start time, so a recycled pid is never mistaken for
 * the process we saw), trees, command lines and parents. Used by the runtime adapters, the CRIU glue
 * and the OCI hooks. Plain fs calls only: cheap to import from hooks and CRIU actions.
 */
import { readdirSync, readFileSync } from 'node:fs';

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
