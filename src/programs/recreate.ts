/**
 * Which link kinds a restore elsewhere re-creates (src/programs/reload.ts), and why the others are
 * not: a pure table, so pre-restore refuses before it creates anything (src/criu/decide.ts), and the
 * reasons are the ones operators read in the refusal and in the README.
 */
import type { LinkTargetT } from './info.js';

/** undefined when reload.ts re-creates links of this kind on this target; else why not (one clause). */
export function whyNotRecreated(t: LinkTargetT | undefined): string | undefined {
  if (!t) return 'its target was not recorded at dump';
  switch (t.kind) {
    case 'raw_tracepoint': case 'tracing': return undefined;
    case 'cgroup': return t.place?.path ? undefined : `its cgroup (id ${t.cgroupId}) was not found at dump`;
    case 'perf_event':
      if (t.perfType === 'tracepoint') return t.name ? undefined : 'its tracepoint name was not recorded';
      return t.perfType === 'kprobe' || t.perfType === 'kretprobe'
        ? `re-creating kprobe links is not supported (${t.name ?? '?'})`
        : `re-creating perf-event links of type ${t.perfType} is not supported (tracepoints are)`;
    case 'xdp': case 'tcx': case 'netkit': case 'netns':
      return `re-creating ${t.kind} links is not supported: the target (${'ifname' in t && t.ifname ? `interface ${t.ifname}` : t.kind === 'netns' ? 'the network namespace itself' : `ifindex ${t.ifindex}`}) is in the container's network namespace, which is created after pre-restore reloads the programs`;
    case 'struct_ops': return 'struct_ops links are not supported: the struct_ops map is registered with a kernel subsystem, not carried';
    case 'sockmap': return 'sockmap links are not supported: the sockets in the map are not carried';
    case 'netfilter': return `re-creating netfilter links is not supported (pf ${t.pf}, hook ${t.hooknum})`;
    default: return `re-creating ${t.kind} links is not supported`;
  }
}
