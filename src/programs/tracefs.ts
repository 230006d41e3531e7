/**
 * Tracepoints by name in tracefs (mounted on /sys/kernel/tracing, or under debugfs): their category
 * ("syscalls" for sys_enter_getppid), which libbpf's attach needs, and this host's id, which a perf
 * event is opened with. Ids differ between hosts and kernels; names do not.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const TRACEFS_EVENTS = ['/sys/kernel/tracing/events', '/sys/kernel/debug/tracing/events'];

export interface Tracepoint { category: string; id: number }

/** name → category and id, from the first tracefs that has any of them; names not found are absent. */
export function findTracepoints(names: string[]): Map<string, Tracepoint> {
  const out = new Map<string, Tracepoint>();
  for (const root of TRACEFS_EVENTS) {
    let categories: string[];
    try { categories = readdirSync(root); } catch { continue; }
    for (const name of names) {
      for (const category of categories) {
        try {
          const id = Number(readFileSync(join(root, category, name, 'id'), 'utf8'));
          if (id > 0) { out.set(name, { category, id }); break; }
        } catch { /* not in this category */ }
      }
    }
    if (out.size) break;
  }
  return out;
}
