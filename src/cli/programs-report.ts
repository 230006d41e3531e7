/**
 * The programs and links of a CRIU checkpoint, as `bpfcr inspect` reports them from its
 * bpfcr-checkpoint.json (src/criu/record.ts): each program with what it is attached to (through the
 * checkpoint's links and perf events) and where its BPF ELF object was found at dump, or that it was
 * not; links whose program is not among the checkpoint's programs on their own. An object stored in
 * the map archive (member objects/<sha256>.bpf.o) is reported as such.
 *
 * The record is a file: every string from it is escaped before it reaches a terminal (termSafe).
 */
import type { CheckpointRecord, ProgramObject, TakenObject } from '../criu/record.js';
import type { MemberCheck } from '../archive/verify.js';
import { attachTypeName, progTypeName, type BtfTarget, type LinkTargetT } from '../programs/info.js';
import { table } from './command.js';
import { termSafe } from '../archive/names.js';

/** Tracing attach types by the libbpf section prefix that loads them ("fentry/do_unlinkat"). */
const TRACING_KINDS: Record<string, string> = {
  trace_raw_tp: 'tp_btf', trace_fentry: 'fentry', trace_fexit: 'fexit', modify_return: 'fmod_ret',
  lsm_mac: 'lsm', lsm_cgroup: 'lsm_cgroup', trace_iter: 'iter',
};

const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

function btfName(t: BtfTarget | undefined): string {
  if (!t || typeof t !== 'object') return '?';
  const name = str(t.name);
  if (!name) return `BTF type ${str(t.typeId)}${t.objId ? ` of BTF object ${str(t.objId)}` : ''}`;
  const mod = str(t.btf);
  return `${name}${mod && mod !== 'vmlinux' ? ` [${mod}]` : ''}`;
}

/**
 * What a link is attached to, one line: "raw_tp sys_enter", "tracing fentry do_unlinkat",
 * "perf_event tracepoint sys_enter_getppid", "cgroup cgroup_inet_ingress <container>", "xdp dev eth0", …
 * (unescaped: termSafe it for a terminal).
 */
export function targetText(t: LinkTargetT | undefined): string {
  if (!t || typeof t !== 'object' || typeof t.kind !== 'string') return '?';
  switch (t.kind) {
    case 'raw_tracepoint':
      return `raw_tp ${str(t.name) || '?'}`;
    case 'tracing': {
      if (t.targetProgId !== undefined || t.targetBtfId !== undefined)
        return `tracing freplace program ${str(t.targetProgId)} BTF type ${str(t.targetBtfId)}`;
      const at = attachTypeName(t.attachType);
      const kind = TRACING_KINDS[at] ?? at;
      let name = btfName(t.target);
      // tp_btf targets are the tracepoint's typedef "btf_trace_<tracepoint>"
      if (at === 'trace_raw_tp' && t.target?.kind === 'typedef') name = name.replace(/^btf_trace_/, '');
      return `tracing ${kind} ${name}`;
    }
    case 'cgroup': {
      // where a restore re-creates it: "<container>" (its own cgroup), "<container>/sub", or a host path
      const p = t.place && typeof t.place === 'object' ? t.place : undefined;
      const where = typeof p?.inContainer === 'string' ? `<container>${p.inContainer ? `/${str(p.inContainer)}` : ''}`
        : typeof p?.path === 'string' ? str(p.path) : `id ${str(t.cgroupId)}`;
      return `cgroup ${attachTypeName(t.attachType)} ${where}`;
    }
    case 'netns':
      return `netns ${str(t.netnsIno)} ${attachTypeName(t.attachType)}`;
    case 'xdp':
      return `xdp ${t.ifname ? `dev ${str(t.ifname)}` : `ifindex ${str(t.ifindex)}`}`;
    case 'tcx':
    case 'netkit':
      return `${t.kind} ${t.ifname ? `dev ${str(t.ifname)}` : `ifindex ${str(t.ifindex)}`} ${attachTypeName(t.attachType)}`;
    case 'perf_event': {
      const probe = t.perfType === 'kprobe' || t.perfType === 'kretprobe' || t.perfType === 'uprobe' || t.perfType === 'uretprobe';
      const off = probe && t.offset ? `+0x${t.offset.toString(16)}` : '';
      return `perf_event ${str(t.perfType) || '?'}${t.name ? ` ${str(t.name)}${off}` : ''}`;
    }
    case 'netfilter':
      return `netfilter pf ${str(t.pf)} hook ${str(t.hooknum)} priority ${str(t.priority)}${t.flags ? ` flags 0x${t.flags.toString(16)}` : ''}`;
    case 'struct_ops':
      return `struct_ops map ${str(t.mapId)}`;
    case 'sockmap':
      return `sockmap map ${str(t.mapId)} ${attachTypeName(t.attachType)}`;
    case 'iter':
    case 'kprobe_multi':
    case 'uprobe_multi':
      return t.kind;
    default:
      return `link type ${str((t as { type?: unknown }).type) || str(t.kind)}`;
  }
}

/** Where a program's BPF ELF object was found, or "not found" (unescaped). */
export function objectText(o: ProgramObject | undefined, inArchive: 'ok' | 'failed' | undefined): string {
  if (!o || typeof o !== 'object') return 'not found';
  const off = num(o.offset);
  const how = o.found === 'open' ? 'open file' : o.found === 'mapped' && !off ? 'mapped file' : 'embedded in';
  const where = `${how} ${str(o.file) || '?'}${off ? ` @0x${off.toString(16)}` : ''} (sha256 ${str(o.sha256).slice(0, 12)})`;
  const section = o.section ? `, section ${str(o.section)}` : '';
  const archived = inArchive === 'ok' ? 'in archive; ' : inArchive === 'failed' ? 'in archive (FAILED verification); ' : '';
  return `${archived}${where}${section}`;
}

/** The archive member a post-dump stores a program's BPF ELF object under (ProgramObject.member says so too). */
export const objectMember = (sha256: string): string => `objects/${sha256}.bpf.o`;

export interface ProgramEntry {
  id: number;
  name: string;
  /** prog_type number and its name */
  type: number | undefined;
  typeName: string;
  tag: string;
  /** what it is attached to, one line each (links first, then perf events of no listed link) */
  attached: string[];
  /** the checkpoint's links of this program */
  links: number[];
  expectedAttachType?: number;
  attachBtf?: BtfTarget;
  object: ProgramObject | null;
  objectFound: boolean;
  objectInArchive: boolean;
  objectText: string;
}

export interface LinkEntry {
  id: number;
  /** link type name, from fdinfo */
  type: string;
  progId: number | undefined;
  /** its program is one of the checkpoint's programs */
  programListed: boolean;
  name: string;
  tag: string;
  target: LinkTargetT | null;
  attached: string;
  object: ProgramObject | null;
  objectFound: boolean;
  objectInArchive: boolean;
  objectText: string;
}

export interface ProgramsReport {
  programs: ProgramEntry[];
  links: LinkEntry[];
  /** programs (listed ones, and those only known through a link) whose BPF object was found */
  objectsFound: number;
}

/**
 * The report of a checkpoint record. `members`: the map archive's members (verifyArchive), to tell
 * which objects it stores.
 */
export function programsReport(rec: CheckpointRecord, members: MemberCheck[] = []): ProgramsReport {
  const stored = new Map(members.map((m) => [m.name, m]));
  /** stored, and verified: its checksum matches the manifest, which matches the name */
  const objectState = (o: ProgramObject | undefined): 'ok' | 'failed' | undefined => {
    if (!o || typeof o.sha256 !== 'string') return undefined;
    const m = stored.get(typeof o.member === 'string' && o.member ? o.member : objectMember(o.sha256));
    return m === undefined ? undefined : m.ok && m.sha256 === o.sha256 ? 'ok' : 'failed';
  };
  const objects = rec.objects.filter((o): o is TakenObject => !!o && typeof o === 'object');
  const progs = objects.filter((o) => o.kind === 'prog');
  const progIds = new Set(progs.map((o) => o.id));

  const links: LinkEntry[] = objects.filter((o) => o.kind === 'link').map((o) => {
    const state = objectState(o.object);
    return {
      id: o.id, type: str(o.type), progId: num(o.progId), programListed: o.progId !== undefined && progIds.has(o.progId),
      name: str(o.name), tag: str(o.tag), target: o.target ?? null, attached: o.target ? targetText(o.target) : '?',
      object: o.object ?? null, objectFound: !!o.object, objectInArchive: state === 'ok', objectText: objectText(o.object, state),
    };
  });

  const programs: ProgramEntry[] = progs.map((o) => {
    const mine = links.filter((l) => l.progId === o.id);
    const attached = mine.map((l) => l.attached);
    for (const p of objects) {
      if (p.kind !== 'perf' || p.progId !== o.id || !p.tracepoint) continue;
      const t = `perf_event tracepoint ${str(p.tracepoint)}`;
      if (!attached.includes(t)) attached.push(t);
    }
    const state = objectState(o.object);
    const type = num(Number(o.type));
    const e: ProgramEntry = {
      id: o.id, name: str(o.name), type: Number.isInteger(type) ? type : undefined, typeName: progTypeName(o.type), tag: str(o.tag),
      attached, links: mine.map((l) => l.id),
      object: o.object ?? null, objectFound: !!o.object, objectInArchive: state === 'ok', objectText: objectText(o.object, state),
    };
    if (o.expectedAttachType !== undefined) e.expectedAttachType = o.expectedAttachType;
    if (o.attachBtf) e.attachBtf = o.attachBtf;
    return e;
  });

  const found = new Set<number>();
  for (const p of programs) if (p.objectFound) found.add(p.id);
  for (const l of links) if (!l.programListed && l.objectFound) found.add(l.progId ?? -l.id);
  return { programs, links, objectsFound: found.size };
}

/**
 * The human form: a PROGRAMS table, a LINKS table of the links whose program is not listed (when
 * there are any), and "N program(s), M link(s); K with their BPF object found".
 */
export function renderPrograms(r: ProgramsReport): string {
  let out = '';
  if (r.programs.length) {
    out += table(
      ['ID', 'NAME', 'TYPE', 'TAG', 'ATTACHED', 'OBJECT'],
      r.programs.map((p) => [
        String(p.id), termSafe(p.name) || '-', termSafe(p.typeName), termSafe(p.tag) || '-',
        p.attached.length ? p.attached.map(termSafe).join(', ') : '-', termSafe(p.objectText),
      ]),
    );
  }
  const unlisted = r.links.filter((l) => !l.programListed);
  if (unlisted.length) {
    out += table(
      ['LINK', 'TYPE', 'PROGRAM', 'TAG', 'ATTACHED', 'OBJECT'],
      unlisted.map((l) => [
        String(l.id), termSafe(l.type) || '-',
        l.progId ? `${l.progId}${l.name ? ` ${termSafe(l.name)}` : ''}` : '-', termSafe(l.tag) || '-',
        termSafe(l.attached), termSafe(l.objectText),
      ]),
    );
  }
  out += `${r.programs.length} program(s), ${r.links.length} link(s); ${r.objectsFound} with their BPF object found\n`;
  return out;
}

/** The JSON form: `programs` and `links` (raw strings: jsonText escapes them). */
export function programsJson(r: ProgramsReport): { programs: ProgramEntry[]; links: LinkEntry[]; objectsFound: number } {
  return { programs: r.programs, links: r.links, objectsFound: r.objectsFound };
}

/**
 * JSON.stringify(v, null, 2) with every character termSafe escapes written as a JSON \uNNNN
 * escape: JSON.stringify escapes C0 controls only, DEL, C1 controls and bidirectional overrides
 * would reach the terminal raw. (Outside strings JSON has no such characters.)
 */
export function jsonText(v: unknown): string {
  return JSON.stringify(v, null, 2).replace(/[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
