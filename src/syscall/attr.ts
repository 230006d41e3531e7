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
  MAP_DELETE_ELEM: 3,
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

/** MAP_CREATE: map_type 0 … map_extra u64 at 64. */
export const MapCreate = {
  map_type: 0, key_size: 4, value_size: 8, max_entries: 12, map_flags: 16, inner_map_fd: 20,
  numa_node: 24, map_name: 28, map_name_len: 16, map_ifindex: 44, btf_fd: 48, btf_key_type_id: 52,
  btf_value_type_id: 56, btf_vmlinux_value_type_id: 60, map_extra: 64, SIZE: 72,
} as const;

/** MAP_{LOOKUP,UPDATE,DELETE}_ELEM, GET_NEXT_KEY (value = next_key), LOOKUP_AND_DELETE, FREEZE. */
export const MapElem = { map_fd: 0, key: 8, value: 16, flags: 24, SIZE: 32, FREEZE_SIZE: 4 } as const;

/** MAP_*_BATCH. */
export const MapBatch = {
  in_batch: 0, out_batch: 8, keys: 16, values: 24, count: 32, map_fd: 36, elem_flags: 40, flags: 48, SIZE: 56,
} as const;

/** OBJ_PIN / OBJ_GET. */
export const ObjPin = { pathname: 0, bpf_fd: 8, file_flags: 12, SIZE: 16 } as const;

/** *_GET_FD_BY_ID. */
export const GetFdById = { id: 0, next_id: 4, open_flags: 8, SIZE: 12 } as const;

/** OBJ_GET_INFO_BY_FD. */
export const InfoByFd = { bpf_fd: 0, info_len: 4, info: 8, SIZE: 16 } as const;

/** BTF_LOAD. */
export const BtfLoad = { btf: 0, log_buf: 8, btf_size: 16, log_size: 20, log_level: 24, SIZE: 28 } as const;

/** struct bpf_map_info (kernel 6.18 layout; older kernels copy a prefix and zero the rest). */
export const MapInfo = {
  type: 0, id: 4, key_size: 8, value_size: 12, max_entries: 16, map_flags: 20, name: 24, name_len: 16,
  ifindex: 40, btf_vmlinux_value_type_id: 44, netns_dev: 48, netns_ino: 56, btf_id: 64,
  btf_key_type_id: 68, btf_value_type_id: 72, btf_vmlinux_id: 76, map_extra: 80, SIZE: 104,
} as const;

/** struct bpf_btf_info. */
export const BtfInfo = { btf: 0, btf_size: 8, id: 12, name: 16, name_len: 24, kernel_btf: 28, SIZE: 32 } as const;

/** struct bpf_prog_info / bpf_link_info: only the leading fields we report. */
export const ProgInfo = { type: 0, id: 4, tag: 8, nr_map_ids: 52, map_ids: 56, name: 64, name_len: 16, SIZE: 80 } as const;
export const LinkInfo = { type: 0, id: 4, prog_id: 8, SIZE: 16 } as const;

/** Map flags (include/uapi/linux/bpf.h). */
export const MapFlag = {
  NO_PREALLOC: 1 << 0,
  NO_COMMON_LRU: 1 << 1,
  NUMA_NODE: 1 << 2,
  RDONLY: 1 << 3,
  WRONLY: 1 << 4,
  STACK_BUILD_ID: 1 << 5,
  ZERO_SEED: 1 << 6,
  RDONLY_PROG: 1 << 7,
  WRONLY_PROG: 1 << 8,
  CLONE: 1 << 9,
  MMAPABLE: 1 << 10,
  PRESERVE_ELEMS: 1 << 11,
  INNER_MAP: 1 << 12,
  LINK: 1 << 13,
  PATH_FD: 1 << 14,
  VTYPE_BTF_OBJ_FD: 1 << 15,
  TOKEN_FD: 1 << 16,
  SEGV_ON_FAULT: 1 << 17,
  NO_USER_CONV: 1 << 18,
} as const;

/** Element update flags. */
export const ElemFlag = { ANY: 0, NOEXIST: 1, EXIST: 2, LOCK: 4 } as const;

export const BPF_OBJ_NAME_LEN = 16;
