/**
 * Debian's libbpf (libbpf.so.1, package libbpf1) through koffi: open a BPF ELF object from memory,
 * reuse existing maps by fd, load only some of its programs, attach them. Only what reloading an
 * application's own object needs (src/programs/reload.ts); libbpf does the ELF parsing, CO-RE
 * relocations against this kernel's BTF, map/global-data relocations and the per-section program
 * type and attach type — exactly as when the application loaded it.
 *
 * libbpf 1.x returns NULL / a negative errno and sets errno; its messages go to stderr (in a CRIU
 * action: CRIU's log). Loaded lazily: most bpfcr runs never reload a program.
 */
import { libc } from '../syscall/libc.js';

type Ptr = unknown;
interface Api {
  open_mem(buf: Buffer, size: number, opts: Buffer): Ptr;
  close(obj: Ptr): void;
  load(obj: Ptr): number;
  next_map(obj: Ptr, prev: Ptr): Ptr;
  map_name(map: Ptr): string;
  map_type(map: Ptr): number;
  map_reuse_fd(map: Ptr, fd: number): number;
  next_program(obj: Ptr, prev: Ptr): Ptr;
  prog_name(prog: Ptr): string;
  prog_section(prog: Ptr): string;
  prog_set_autoload(prog: Ptr, on: boolean): number;
  prog_set_expected_attach_type(prog: Ptr, type: number): number;
  prog_fd(prog: Ptr): number;
  attach(prog: Ptr): Ptr;
  attach_raw_tracepoint(prog: Ptr, name: string): Ptr;
  attach_tracepoint(prog: Ptr, category: string, name: string): Ptr;
  attach_cgroup(prog: Ptr, cgroupFd: number): Ptr;
  link_fd(link: Ptr): number;
  link_disconnect(link: Ptr): void;
  link_destroy(link: Ptr): number;
  errno(): number;
  address(b: Buffer): bigint;
}

let api: Api | undefined;

function lib(): Api {
  if (api) return api;
  const { koffi } = libc();
  let l: ReturnType<typeof koffi.load>;
  try {
    l = koffi.load('libbpf.so.1');
  } catch (e) {
    throw new Error(`cannot load libbpf.so.1 (apt-get install libbpf1): ${(e as Error).message}`);
  }
  const f = (sig: string): any => l.func(sig); // eslint-disable-line @typescript-eslint/no-explicit-any
  api = {
    open_mem: f('void *bpf_object__open_mem(const void *buf, size_t size, const void *opts)'),
    close: f('void bpf_object__close(void *obj)'),
    load: f('int bpf_object__load(void *obj)'),
    next_map: f('void *bpf_object__next_map(const void *obj, const void *map)'),
    map_name: f('const char *bpf_map__name(const void *map)'),
    map_type: f('int bpf_map__type(const void *map)'),
    map_reuse_fd: f('int bpf_map__reuse_fd(void *map, int fd)'),
    next_program: f('void *bpf_object__next_program(const void *obj, void *prog)'),
    prog_name: f('const char *bpf_program__name(const void *prog)'),
    prog_section: f('const char *bpf_program__section_name(const void *prog)'),
    prog_set_autoload: f('int bpf_program__set_autoload(void *prog, bool autoload)'),
    prog_set_expected_attach_type: f('int bpf_program__set_expected_attach_type(void *prog, int type)'),
    prog_fd: f('int bpf_program__fd(const void *prog)'),
    attach: f('void *bpf_program__attach(const void *prog)'),
    attach_raw_tracepoint: f('void *bpf_program__attach_raw_tracepoint(const void *prog, const char *name)'),
    attach_tracepoint: f('void *bpf_program__attach_tracepoint(const void *prog, const char *category, const char *name)'),
    attach_cgroup: f('void *bpf_program__attach_cgroup(const void *prog, int cgroup_fd)'),
    link_fd: f('int bpf_link__fd(const void *link)'),
    link_disconnect: f('void bpf_link__disconnect(void *link)'),
    link_destroy: f('int bpf_link__destroy(void *link)'),
    errno: () => koffi.errno(),
    address: (b) => koffi.address(b) as bigint,
  };
  return api;
}

/** size of struct bpf_object_open_opts in libbpf 1.1 (checked against <bpf/libbpf.h>) and the object_name field */
const OPEN_OPTS_SIZE = 80;
const OPEN_OPTS_OBJECT_NAME = 8;

export interface ObjMap { name: string; type: number; handle: Ptr }
export interface ObjProgram { name: string; section: string; handle: Ptr }

/** A libbpf bpf_object opened from memory. close() frees it (and closes the fds libbpf owns). */
export class BpfElfObject {
  private obj: Ptr;
  private readonly keep: Buffer[];

  private constructor(obj: Ptr, keep: Buffer[]) { this.obj = obj; this.keep = keep; }

  /** `name` becomes the object name (libbpf derives .rodata/.data/.bss map names from it). */
  static open(elf: Buffer, name: string): BpfElfObject {
    const a = lib();
    const nameBuf = Buffer.from(`${name}\0`);
    const opts = Buffer.alloc(OPEN_OPTS_SIZE);
    opts.writeBigUInt64LE(BigInt(OPEN_OPTS_SIZE), 0);
    opts.writeBigUInt64LE(a.address(nameBuf), OPEN_OPTS_OBJECT_NAME);
    const obj = a.open_mem(elf, elf.length, opts);
    if (!obj) throw new Error(`libbpf cannot open the BPF object ${name}: errno ${a.errno()}`);
    return new BpfElfObject(obj, [elf, nameBuf, opts]);
  }

  maps(): ObjMap[] {
    const a = lib();
    const out: ObjMap[] = [];
    for (let m = a.next_map(this.obj, null); m; m = a.next_map(this.obj, m)) out.push({ name: a.map_name(m), type: a.map_type(m), handle: m });
    return out;
  }

  programs(): ObjProgram[] {
    const a = lib();
    const out: ObjProgram[] = [];
    for (let p = a.next_program(this.obj, null); p; p = a.next_program(this.obj, p)) out.push({ name: a.prog_name(p), section: a.prog_section(p), handle: p });
    return out;
  }

  /** Use an existing map (by fd; libbpf dups it) instead of creating this one. */
  reuseMap(m: ObjMap, fd: number): void {
    const r = lib().map_reuse_fd(m.handle, fd);
    if (r < 0) throw new Error(`libbpf cannot reuse map fd ${fd} for the object's map ${m.name}: errno ${-r}`);
  }

  setAutoload(p: ObjProgram, on: boolean): void {
    lib().prog_set_autoload(p.handle, on);
  }

  /** Load for this attach type (enum bpf_attach_type) rather than the one the section implies. */
  setExpectedAttachType(p: ObjProgram, type: number): void {
    const r = lib().prog_set_expected_attach_type(p.handle, type);
    if (r < 0) throw new Error(`libbpf cannot set attach type ${type} on ${p.name}: errno ${-r}`);
  }

  /** Create the maps not reused and load the programs left to autoload (the kernel verifies them). */
  load(): void {
    const r = lib().load(this.obj);
    if (r < 0) throw new Error(`libbpf cannot load the object: errno ${-r} (libbpf's messages are above, in CRIU's log)`);
  }

  programFd(p: ObjProgram): number {
    return lib().prog_fd(p.handle);
  }

  /**
   * Attach as the section says (raw_tp/NAME, tp_btf/NAME, tracepoint/CAT/NAME, …), or to a raw
   * tracepoint / tracepoint / cgroup (a BPF link) given explicitly. Returns the link's fd, owned by the caller: the libbpf
   * link is disconnected (its destruction does not detach) and freed.
   */
  attach(p: ObjProgram, how?: { rawTracepoint: string } | { category: string; tracepoint: string } | { cgroupFd: number }): number {
    const a = lib();
    const link = !how ? a.attach(p.handle)
      : 'rawTracepoint' in how ? a.attach_raw_tracepoint(p.handle, how.rawTracepoint)
        : 'cgroupFd' in how ? a.attach_cgroup(p.handle, how.cgroupFd)
          : a.attach_tracepoint(p.handle, how.category, how.tracepoint);
    if (!link) throw new Error(`errno ${a.errno()}`);
    // disconnected, bpf_link__destroy() frees the struct but neither detaches nor closes the fd
    const fd = a.link_fd(link);
    a.link_disconnect(link);
    a.link_destroy(link);
    return fd;
  }

  close(): void {
    if (this.obj) lib().close(this.obj);
    this.obj = null;
    this.keep.length = 0;
  }
}

