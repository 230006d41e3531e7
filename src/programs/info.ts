/**
 * What a program and a link are attached to, as the kernel reports it (BPF_OBJ_GET_INFO_BY_FD):
 * program name/type/tag and the BTF target of a tracing program; link type and target (raw
 * tracepoint name, tracing target by BTF name, perf-event tracepoint/kprobe/uprobe, cgroup, netns,
 * xdp/tcx/netkit interface, …). Fields the running kernel does not know read as zero.
 */
import { BtfNameInfo, LinkTarget as L, ProgAttach, ProgFuncInfo, ProgInfo } from '../syscall/attr.js';
import { addr, btfGetFdById, btfRaw, closeFd, linkGetFdById, objInfo, progGetFdById } from '../syscall/bpf.js';
import { Btf, kernelBtf } from './btf.js';

export const LINK_TYPES = [
  'unspec', 'raw_tracepoint', 'tracing', 'cgroup', 'iter', 'netns', 'xdp', 'perf_event', 'kprobe_multi',
  'struct_ops', 'netfilter', 'tcx', 'uprobe_multi', 'netkit', 'sockmap',
] as const;
/** enum bpf_prog_type, named as bpftool names them. */
export const PROG_TYPES = [
  'unspec', 'socket_filter', 'kprobe', 'sched_cls', 'sched_act', 'tracepoint', 'xdp', 'perf_event',
  'cgroup_skb', 'cgroup_sock', 'lwt_in', 'lwt_out', 'lwt_xmit', 'sock_ops', 'sk_skb', 'cgroup_device',
  'sk_msg', 'raw_tracepoint', 'cgroup_sock_addr', 'lwt_seg6local', 'lirc_mode2', 'sk_reuseport',
  'flow_dissector', 'cgroup_sysctl', 'raw_tracepoint_writable', 'cgroup_sockopt', 'tracing',
  'struct_ops', 'ext', 'lsm', 'sk_lookup', 'syscall', 'netfilter',
] as const;

/** enum bpf_attach_type, named as bpftool names them. */
export const ATTACH_TYPES = [
  'cgroup_inet_ingress', 'cgroup_inet_egress', 'cgroup_inet_sock_create', 'cgroup_sock_ops',
  'sk_skb_stream_parser', 'sk_skb_stream_verdict', 'cgroup_device', 'sk_msg_verdict', 'cgroup_inet4_bind',
  'cgroup_inet6_bind', 'cgroup_inet4_connect', 'cgroup_inet6_connect', 'cgroup_inet4_post_bind',
  'cgroup_inet6_post_bind', 'cgroup_udp4_sendmsg', 'cgroup_udp6_sendmsg', 'lirc_mode2', 'flow_dissector',
  'cgroup_sysctl', 'cgroup_udp4_recvmsg', 'cgroup_udp6_recvmsg', 'cgroup_getsockopt', 'cgroup_setsockopt',
  'trace_raw_tp', 'trace_fentry', 'trace_fexit', 'modify_return', 'lsm_mac', 'trace_iter',
  'cgroup_inet4_getpeername', 'cgroup_inet6_getpeername', 'cgroup_inet4_getsockname',
  'cgroup_inet6_getsockname', 'xdp_devmap', 'cgroup_inet_sock_release', 'xdp_cpumap', 'sk_lookup', 'xdp',
  'sk_skb_verdict', 'sk_reuseport_select', 'sk_reuseport_select_or_migrate', 'perf_event',
  'trace_kprobe_multi', 'lsm_cgroup', 'struct_ops', 'netfilter', 'tcx_ingress', 'tcx_egress',
  'trace_uprobe_multi', 'cgroup_unix_connect', 'cgroup_unix_sendmsg', 'cgroup_unix_recvmsg',
  'cgroup_unix_getpeername', 'cgroup_unix_getsockname', 'netkit_primary', 'netkit_peer',
  'trace_kprobe_session', 'trace_uprobe_session',
] as const;

/** "sched_cls" for 3; the number itself when it is not one this bpfcr knows. */
export function progTypeName(type: string | number | undefined): string {
  if (type === undefined || type === '') return '-';
  const n = Number(type);
  return Number.isInteger(n) && n >= 0 ? PROG_TYPES[n] ?? String(type) : String(type);
}

export function attachTypeName(n: number): string {
  return ATTACH_TYPES[n] ?? `attach type ${n}`;
}

const PERF_TYPES = ['unspec', 'uprobe', 'uretprobe', 'kprobe', 'kretprobe', 'tracepoint', 'event'] as const;
const BPF_PROG_TYPE_EXT = 28;
const NAME_MAX = 512; // KSYM_NAME_LEN; tracepoint names and paths beyond it come back truncated

function cStr(b: Buffer): string {
  const z = b.indexOf(0);
  return b.toString('utf8', 0, z < 0 ? b.length : z);
}

function withFd<T>(fd: number, f: (fd: number) => T): T {
  try { return f(fd); } finally { closeFd(fd); }
}

/** A BTF type the kernel names as an attach target. */
export interface BtfTarget {
  /** BTF object id at dump time */
  objId: number;
  typeId: number;
  /** "vmlinux" or the module the BTF object belongs to ('' when not kernel BTF) */
  btf?: string;
  /** the type's name ("do_unlinkat", "btf_trace_sched_switch", …) and kind ("func", "typedef") */
  name?: string;
  kind?: string;
}

export interface ProgramDetails {
  id: number; name: string; type: number; tag: string;
  /** tracing/ext/lsm programs: the BTF type they were loaded for */
  attachBtf?: BtfTarget;
  /**
   * BTF func info: the program's functions by their full names, the program itself first (the
   * kernel's program name is cut at 15 characters; this one is not). Absent without BTF.
   */
  funcs?: string[];
}

/** The names of the FUNC types of a program's func_info records, in instruction order ([] without BTF). */
function programFuncs(fd: number): string[] {
  const b = Buffer.alloc(ProgFuncInfo.SIZE);
  objInfo(fd, b);
  const btfId = b.readUInt32LE(ProgFuncInfo.btf_id);
  const n = b.readUInt32LE(ProgFuncInfo.nr_func_info);
  const recSize = b.readUInt32LE(ProgFuncInfo.func_info_rec_size);
  if (!btfId || !n || recSize < 8) return [];
  const recs = Buffer.alloc(n * recSize);
  b.fill(0);
  b.writeUInt32LE(n, ProgFuncInfo.nr_func_info);
  b.writeUInt32LE(recSize, ProgFuncInfo.func_info_rec_size);
  b.writeBigUInt64LE(addr(recs), ProgFuncInfo.func_info);
  objInfo(fd, b);
  const btf = new Btf(withFd(btfGetFdById(btfId), btfRaw));
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const t = btf.type(recs.readUInt32LE(i * recSize + 4));
    out.push(t?.name ?? '');
  }
  return out;
}

export function programDetails(id: number): ProgramDetails {
  return withFd(progGetFdById(id), (fd) => {
    const b = Buffer.alloc(Math.max(ProgInfo.SIZE, ProgAttach.SIZE));
    objInfo(fd, b);
    const nameEnd = b.indexOf(0, ProgInfo.name);
    const p: ProgramDetails = {
      id: b.readUInt32LE(ProgInfo.id), type: b.readUInt32LE(ProgInfo.type),
      tag: b.subarray(ProgInfo.tag, ProgInfo.tag + 8).toString('hex'),
      name: b.toString('utf8', ProgInfo.name, nameEnd < 0 || nameEnd > ProgInfo.name + 16 ? ProgInfo.name + 16 : nameEnd),
    };
    const objId = b.readUInt32LE(ProgAttach.attach_btf_obj_id);
    const typeId = b.readUInt32LE(ProgAttach.attach_btf_id);
    if (typeId) p.attachBtf = p.type === BPF_PROG_TYPE_EXT ? { objId, typeId } : resolveBtf(objId, typeId);
    try {
      const funcs = programFuncs(fd);
      if (funcs.length) p.funcs = funcs;
    } catch { /* no readable BTF: the kernel's name stands */ }
    return p;
  });
}

/** Name of kernel BTF object `objId` ("vmlinux" / module name), '' when it is not kernel BTF. */
export function btfObjectName(objId: number): string {
  return withFd(btfGetFdById(objId), (fd) => {
    const name = Buffer.alloc(64);
    const b = Buffer.alloc(BtfNameInfo.SIZE);
    b.writeBigUInt64LE(addr(name), BtfNameInfo.name);
    b.writeUInt32LE(name.length, BtfNameInfo.name_len);
    objInfo(fd, b);
    return b.readUInt32LE(BtfNameInfo.kernel_btf) ? cStr(name) : '';
  });
}

/** Resolve type `typeId` of BTF object `objId` by name through /sys/kernel/btf (best effort). */
export function resolveBtf(objId: number, typeId: number): BtfTarget {
  const t: BtfTarget = { objId, typeId };
  try {
    // object id 0: the kernel reports vmlinux's BTF as no object on some paths
    const btf = objId ? btfObjectName(objId) : 'vmlinux';
    t.btf = btf;
    if (btf) {
      const ty = kernelBtf(btf).type(typeId);
      if (ty) { t.name = ty.name; t.kind = ty.kind; }
    }
  } catch { /* unnamed */ }
  return t;
}

/** Where a link's cgroup is, in terms that survive a migration (src/programs/targets.ts). */
export interface CgroupPlace {
  /** path below the container's cgroup ('' = the container's own cgroup), when inside it */
  inContainer?: string;
  /** path in the cgroup2 hierarchy at dump ("/libpod_parent/libpod-…/x") */
  path?: string;
}

export type LinkTargetT =
  | { kind: 'raw_tracepoint'; name: string }
  | { kind: 'tracing'; attachType: number; target?: BtfTarget; targetProgId?: number; targetBtfId?: number }
  | { kind: 'cgroup'; cgroupId: string; attachType: number; place?: CgroupPlace }
  | { kind: 'netns'; netnsIno: number; attachType: number }
  | { kind: 'xdp'; ifindex: number; ifname?: string }
  | { kind: 'perf_event'; perfType: string; name?: string; offset?: number }
  | { kind: 'tcx' | 'netkit'; ifindex: number; attachType: number; ifname?: string }
  | { kind: 'netfilter'; pf: number; hooknum: number; priority: number; flags: number }
  | { kind: 'struct_ops'; mapId: number }
  | { kind: 'sockmap'; mapId: number; attachType: number }
  | { kind: 'iter' | 'kprobe_multi' | 'uprobe_multi' | 'unspec' | 'unknown'; type: number };

export interface LinkDetails { id: number; type: number; typeName: string; progId: number; target: LinkTargetT }

/** Second info call with a name buffer at `ptrOff` (length at `lenOff`): the name, '' when none. */
function infoName(fd: number, ptrOff: number, lenOff: number): string {
  const name = Buffer.alloc(NAME_MAX);
  const b = Buffer.alloc(L.SIZE);
  b.writeBigUInt64LE(addr(name), ptrOff);
  b.writeUInt32LE(name.length, lenOff);
  try { objInfo(fd, b); } catch { return ''; } // ENOSPC: longer than NAME_MAX
  return cStr(name);
}

export function linkDetails(id: number, progType?: number): LinkDetails {
  return withFd(linkGetFdById(id), (fd) => {
    const b = Buffer.alloc(L.SIZE);
    objInfo(fd, b);
    const type = b.readUInt32LE(0);
    const typeName = LINK_TYPES[type] ?? 'unknown';
    const u32 = (off: number) => b.readUInt32LE(off);
    let target: LinkTargetT;
    switch (typeName) {
      case 'raw_tracepoint':
        target = { kind: typeName, name: infoName(fd, L.raw_tp_name, L.raw_tp_name_len) };
        break;
      case 'tracing': {
        const attachType = u32(L.tracing_attach_type);
        const objId = u32(L.tracing_target_obj_id);
        const btfId = u32(L.tracing_target_btf_id);
        target = progType === BPF_PROG_TYPE_EXT
          ? { kind: typeName, attachType, targetProgId: objId, targetBtfId: btfId }
          : { kind: typeName, attachType, target: resolveBtf(objId, btfId) };
        break;
      }
      case 'cgroup':
        target = { kind: typeName, cgroupId: b.readBigUInt64LE(L.cgroup_id).toString(), attachType: u32(L.cgroup_attach_type) };
        break;
      case 'netns':
        target = { kind: typeName, netnsIno: u32(L.netns_ino), attachType: u32(L.netns_attach_type) };
        break;
      case 'xdp':
        target = { kind: typeName, ifindex: u32(L.xdp_ifindex) };
        break;
      case 'perf_event': {
        const pt = u32(L.perf_type);
        const perfType = PERF_TYPES[pt] ?? String(pt);
        target = { kind: typeName, perfType };
        if (pt >= 1 && pt <= 5) {
          const name = infoName(fd, L.perf_name, L.perf_name_len);
          if (name) target.name = name;
          if (pt <= 4) target.offset = u32(L.perf_offset);
        }
        break;
      }
      case 'tcx': case 'netkit':
        target = { kind: typeName, ifindex: u32(L.tcx_ifindex), attachType: u32(L.tcx_attach_type) };
        break;
      case 'netfilter':
        target = { kind: typeName, pf: u32(L.netfilter_pf), hooknum: u32(L.netfilter_hooknum), priority: b.readInt32LE(L.netfilter_priority), flags: u32(L.netfilter_flags) };
        break;
      case 'struct_ops':
        target = { kind: typeName, mapId: u32(L.struct_ops_map_id) };
        break;
      case 'sockmap':
        target = { kind: typeName, mapId: u32(L.sockmap_map_id), attachType: u32(L.sockmap_attach_type) };
        break;
      default:
        target = { kind: typeName === 'unspec' ? 'unspec' : typeName === 'iter' || typeName === 'kprobe_multi' || typeName === 'uprobe_multi' ? typeName : 'unknown', type };
    }
    return { id: u32(4), type, typeName, progId: u32(8), target };
  });
}

/** The attach type a link reports (tracing, cgroup, netns, tcx, netkit, sockmap), if any. */
export function linkAttachType(t: LinkTargetT): number | undefined {
  return 'attachType' in t ? t.attachType : undefined;
}
