import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/** Parse /proc/PID/fdinfo/FD ("key:\tvalue" lines) into a record. */
export function parseFdinfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

export type BpfObjectKind = 'map' | 'prog' | 'link';

/**
 * The names /proc/PID/fd links show for BPF object fds (anon_inode_getfd names in
 * kernel/bpf/syscall.c) → object kind. A link fd reads "bpf_link" as created by
 * BPF_LINK_CREATE but "bpf-link" when opened with BPF_LINK_GET_FD_BY_ID. The one TypeScript copy;
 * the CRIU plugin (src/criu-plugin/bpfcr_plugin.c) keeps the same list in C.
 */
export const BPF_ANON_INODE_KINDS: Readonly<Record<string, BpfObjectKind>> = {
  'anon_inode:bpf-map': 'map',
  'anon_inode:bpf-prog': 'prog',
  'anon_inode:bpf_link': 'link',
  'anon_inode:bpf-link': 'link',
};

/** Kind of BPF object an fd link target names, or undefined for anything else. */
export function bpfKindOfLink(target: string): BpfObjectKind | undefined {
  return Object.hasOwn(BPF_ANON_INODE_KINDS, target) ? BPF_ANON_INODE_KINDS[target] : undefined;
}

interface BpfFdRef {
  pid: number;
  fd: number;
  kind: BpfObjectKind;
  /** map_id / prog_id / link_id from fdinfo */
  id: number;
  fdinfo: Record<string, string>;
}

/**
 * Every BPF object fd of a process. Reads /proc/PID/fd (the links name the anon inode) and
 * fdinfo for the object id. fds that vanish while we look are skipped (the task may be live).
 */
export function listBpfFds(pid: number, kinds: readonly BpfObjectKind[] = ['map']): BpfFdRef[] {
  let entries: string[];
  try {
    entries = readdirSync(`/proc/${pid}/fd`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`pid ${pid}: no such process`);
    throw new Error(`pid ${pid}: cannot list /proc/${pid}/fd: ${code ?? String(e)}`);
  }
  const refs: BpfFdRef[] = [];
  for (const name of entries) {
    const fd = Number(name);
    let target: string;
    try { target = readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
    const kind = bpfKindOfLink(target);
    if (!kind || !kinds.includes(kind)) continue;
    let info: Record<string, string>;
    try { info = parseFdinfo(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8')); } catch { continue; }
    const id = Number(info[`${kind}_id`]);
    if (!Number.isInteger(id) || id <= 0) throw new Error(`pid ${pid} fd ${fd}: fdinfo has no ${kind}_id`);
    refs.push({ pid, fd, kind, id, fdinfo: info });
  }
  return refs.sort((a, b) => a.fd - b.fd);
}

/** The frozen flag is only exposed through fdinfo: read it from one of our own fds. */
export function isFrozen(ownFd: number): boolean {
  const info = parseFdinfo(readFileSync(`/proc/self/fdinfo/${ownFd}`, 'utf8'));
  return info['frozen'] === '1';
}
