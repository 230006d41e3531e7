/**
 * union bpf_attr and struct bpf_*_info layouts (x86-64 / any LP64 little-endian), in one place.
 *
 * Each command gets the size up to the end of the last field we use (as libbpf's
 * offsetofend does): the kernel rejects non-zero bytes beyond what it knows, and a
 * larger size on an older kernel would fail with E2BIG.
 */

export const BpfCmd = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  MAP_GET_NEXT_KEY: 4,
  OBJ_PIN: 6,
  OBJ_GET: 7,
  PROG_GET_FD_BY_ID: 13,
  MAP_GET_FD_BY_ID: 14,
  OBJ_GET_INFO_BY_FD: 15,
  BTF_LOAD: 18,
  BTF_GET_FD_BY_ID: 19,
  MAP_LOOKUP_AND_DELETE_ELEM: 21,
  MAP_FREEZE: 22,
  MAP_LOOKUP_BATCH: 24,
  MAP_UPDATE_BATCH: 26,
  LINK_GET_FD_BY_ID: 30,
} as const;
export type BpfCmdName = keyof typeof BpfCmd;

/**
 * offsetofend: where a field of `width` bytes at `offset` ends. A command's attr size is the end
 * of the last field its wrapper in bpf.ts writes; offsets not listed here are never written.
 * Lower-case keys are field offsets (checked against <linux/bpf.h> by test/unit/attr.test.ts),
 * upper-case keys are sizes.
 */
const end = (offset: number, width: number): number => offset + width;

/** MAP_CREATE: every field up to map_extra is written. */
export const MapCreate = {
  map_type: 0, key_size: 4, value_size: 8, max_entries: 12, map_flags: 16, inner_map_fd: 20,
  numa_node: 24, map_name: 28, map_ifindex: 44, btf_fd: 48, btf_key_type_id: 52,
  btf_value_type_id: 56, btf_vmlinux_value_type_id: 60, map_extra: 64,
  SIZE: end(64, 8),
} as const;

/**
 * MAP_{LOOKUP,UPDATE}_ELEM, GET_NEXT_KEY (value = next_key), LOOKUP_AND_DELETE: flags (at 24)
 * is always 0 here, so it is left out. FREEZE uses map_fd alone.
 */
export const MapElem = { map_fd: 0, key: 8, value: 16, SIZE: end(16, 8), FREEZE_SIZE: end(0, 4) } as const;

/** MAP_{LOOKUP,UPDATE}_BATCH: elem_flags (40) and flags (48) are always 0, so they are left out. */
export const MapBatch = {
  in_batch: 0, out_batch: 8, keys: 16, values: 24, count: 32, map_fd: 36, SIZE: end(36, 4),
} as const;

/** OBJ_PIN (pathname, bpf_fd) / OBJ_GET (pathname, file_flags). */
export const ObjPin = { pathname: 0, bpf_fd: 8, file_flags: 12, PIN_SIZE: end(8, 4), GET_SIZE: end(12, 4) } as const;

/** *_GET_FD_BY_ID: the id (map_id / prog_id / link_id / btf_id share offset 0). */
export const GetFdById = { id: 0, SIZE: end(0, 4) } as const;

/** OBJ_GET_INFO_BY_FD. */
export const InfoByFd = { bpf_fd: 0, info_len: 4, info: 8, SIZE: end(8, 8) } as const;

/** BTF_LOAD: btf + btf_size; the retry for the verifier log adds the log fields. */
export const BtfLoad = {
  btf: 0, btf_log_buf: 8, btf_size: 16, btf_log_size: 20, btf_log_level: 24,
  SIZE: end(16, 4), LOG_SIZE: end(24, 4),
} as const;

/**
 * Info structs: SIZE (the info_len we pass) ends at the last field we read. The kernel copies
 * min(its size, info_len), so an older kernel leaves newer fields zero.
 */
export const MapInfo = {
  type: 0, id: 4, key_size: 8, value_size: 12, max_entries: 16, map_flags: 20, name: 24,
  ifindex: 40, btf_id: 64, btf_key_type_id: 68, btf_value_type_id: 72, map_extra: 80, SIZE: end(80, 8),
} as const;

/** struct bpf_btf_info. */
export const BtfInfo = { btf: 0, btf_size: 8, SIZE: end(8, 4) } as const;

/** struct bpf_prog_info / bpf_link_info: only the leading fields we report. */
export const ProgInfo = { type: 0, id: 4, tag: 8, nr_map_ids: 52, map_ids: 56, name: 64, SIZE: end(64, 16) } as const;
export const LinkInfo = { type: 0, id: 4, prog_id: 8, SIZE: end(8, 4) } as const;
/** struct bpf_prog_info: the program's BTF and its func_info records ({insn_off, type_id} each). */
export const ProgFuncInfo = { btf_id: 128, func_info_rec_size: 132, func_info: 136, nr_func_info: 144, SIZE: end(144, 4) } as const;

export const BPF_OBJ_NAME_LEN = 16;

/*
 * Fields of newer kernels than the uapi header here (6.1): laid out by hand, each table sized to the
 * end of its last field. Kept out of the tables test/unit/attr.test.ts checks against the header.
 */

/** struct bpf_prog_info: a tracing/ext/lsm program's attach target (BTF object id + type id in it). */
export const ProgAttach = { attach_btf_obj_id: 220, attach_btf_id: 224, SIZE: end(224, 4) } as const;

/** struct bpf_btf_info with its name: "vmlinux" or the module's name for kernel BTF. */
export const BtfNameInfo = { id: 12, name: 16, name_len: 24, kernel_btf: 28, SIZE: end(28, 4) } as const;

/**
 * struct bpf_link_info's union (at 16), per link type (enum bpf_link_type). perf_event (6.6+): type,
 * then for uprobe/kprobe/tracepoint a name pointer (file_name / func_name / tp_name) at 24, its
 * buffer length at 32 and (uprobe, kprobe) an offset at 36. tcx (6.6+) and netkit (6.7+): ifindex,
 * attach_type. netfilter (6.4+): pf, hooknum, priority, flags. sockmap (6.10+): map_id, attach_type.
 */
export const LinkTarget = {
  raw_tp_name: 16, raw_tp_name_len: 24,
  tracing_attach_type: 16, tracing_target_obj_id: 20, tracing_target_btf_id: 24,
  cgroup_id: 16, cgroup_attach_type: 24,
  netns_ino: 16, netns_attach_type: 20,
  xdp_ifindex: 16,
  perf_type: 16, perf_name: 24, perf_name_len: 32, perf_offset: 36,
  tcx_ifindex: 16, tcx_attach_type: 20,
  netfilter_pf: 16, netfilter_hooknum: 20, netfilter_priority: 24, netfilter_flags: 28,
  struct_ops_map_id: 16, sockmap_map_id: 16, sockmap_attach_type: 20,
  SIZE: end(36, 4),
} as const;
