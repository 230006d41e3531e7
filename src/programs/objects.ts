/**
 * BPF ELF objects embedded in a file (as `bpftool gen skeleton` embeds them in the application) or
 * making up a whole file (a .bpf.o): every "\x7fELF" whose header is ELF64 little-endian with
 * e_machine EM_BPF. Its extent comes from the section header table (the header table's end and the
 * furthest section's end); its programs are the FUNC symbols of its executable sections.
 */
import { createHash } from 'node:crypto';
import * as fsMod from 'node:fs';

const EM_BPF = 247;
const SHT_SYMTAB = 2;
const SHT_NOBITS = 8;
const SHF_EXECINSTR = 0x4;
const STT_FUNC = 2;
const EHDR_SIZE = 64;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;
const MAGIC = Buffer.from('\x7fELF', 'latin1');

export interface ObjectProgram { name: string; section: string }

export interface BpfObject {
  /** where the object starts in the file, and its size */
  offset: number;
  size: number;
  sha256: string;
  /** FUNC symbols in executable sections (programs and their subprograms) */
  programNames: string[];
  /** the same with their section ("raw_tp/sys_enter", ".text"), which tells libbpf how to load them */
  programs: ObjectProgram[];
}

interface Section { name: number; type: number; flags: bigint; offset: number; size: number; link: number; entsize: number }

function cStr(b: Buffer, off: number, end: number): string {
  const z = b.indexOf(0, off);
  return b.toString('latin1', off, z < 0 || z > end ? end : z);
}

/** The BPF object whose ELF header is at `at`, or undefined when it is not one (or does not fit). */
export function parseBpfObject(buf: Buffer, at: number): BpfObject | undefined {
  if (at + EHDR_SIZE > buf.length) return undefined;
  if (buf[at + 4] !== 2 || buf[at + 5] !== 1) return undefined; // ELFCLASS64, ELFDATA2LSB
  if (buf.readUInt16LE(at + 18) !== EM_BPF) return undefined;
  const shoff = Number(buf.readBigUInt64LE(at + 40));
  const shentsize = buf.readUInt16LE(at + 58);
  const shnum = buf.readUInt16LE(at + 60);
  const shstrndx = buf.readUInt16LE(at + 62);
  if (shnum === 0 || shentsize < SHDR_SIZE || shstrndx >= shnum) return undefined;
  let size = shoff + shnum * shentsize;
  if (at + size > buf.length) return undefined;
  const secs: Section[] = [];
  for (let i = 0; i < shnum; i++) {
    const p = at + shoff + i * shentsize;
    const s: Section = {
      name: buf.readUInt32LE(p), type: buf.readUInt32LE(p + 4), flags: buf.readBigUInt64LE(p + 8),
      offset: Number(buf.readBigUInt64LE(p + 24)), size: Number(buf.readBigUInt64LE(p + 32)),
      link: buf.readUInt32LE(p + 40), entsize: Number(buf.readBigUInt64LE(p + 56)),
    };
    secs.push(s);
    if (s.type !== SHT_NOBITS && s.type !== 0) size = Math.max(size, s.offset + s.size);
  }
  if (at + size > buf.length) return undefined;
  const obj = buf.subarray(at, at + size);
  const shstr = secs[shstrndx]!;
  const secName = (i: number): string => {
    const s = secs[i];
    return s ? cStr(obj, shstr.offset + s.name, shstr.offset + shstr.size) : '';
  };
  const programs: ObjectProgram[] = [];
  for (const sym of secs.filter((s) => s.type === SHT_SYMTAB)) {
    const str = secs[sym.link];
    if (!str) continue;
    const n = Math.floor(sym.size / (sym.entsize || SYM_SIZE));
    for (let i = 0; i < n; i++) {
      const p = sym.offset + i * (sym.entsize || SYM_SIZE);
      const info = obj[p + 4]!;
      const shndx = obj.readUInt16LE(p + 6);
      if ((info & 0xf) !== STT_FUNC) continue;
      const sec = secs[shndx];
      if (!sec || !(sec.flags & BigInt(SHF_EXECINSTR))) continue;
      programs.push({ name: cStr(obj, str.offset + obj.readUInt32LE(p), str.offset + str.size), section: secName(shndx) });
    }
  }
  return {
    offset: at, size, sha256: createHash('sha256').update(obj).digest('hex'),
    programNames: programs.map((p) => p.name), programs,
  };
}

/** Every BPF object in `buf` (a whole file), in file order; objects do not overlap. */
export function findBpfObjects(buf: Buffer): BpfObject[] {
  const out: BpfObject[] = [];
  for (let at = buf.indexOf(MAGIC); at >= 0; ) {
    let o: BpfObject | undefined;
    try { o = parseBpfObject(buf, at); } catch { o = undefined; } // malformed: keep scanning
    if (o) out.push(o);
    at = buf.indexOf(MAGIC, o ? at + o.size : at + 1);
  }
  return out;
}

/**
 * Does a kernel program name (BPF_OBJ_NAME_LEN - 1 = 15 characters at most; longer ones are cut)
 * name this object function?
 */
export function programNameMatches(kernelName: string, functionName: string): boolean {
  return kernelName === functionName || (kernelName.length === 15 && functionName.startsWith(kernelName));
}

/** A file a process has as its executable, maps or has open, with the BPF objects in it. */
export interface ProcessFile {
  pid: number;
  /** "/proc/<pid>/exe", or the path /proc/<pid>/maps or /proc/<pid>/fd shows (in the process's mount namespace) */
  file: string;
  /** how it was found: the executable, a mapped file, or an open file */
  found: 'exe' | 'mapped' | 'open';
  /** with each object's bytes */
  objects: (BpfObject & { data: Buffer })[];
}

/** Files larger than this are not scanned (read whole into memory). */
const MAX_SCAN = 512 << 20;

/** Does the file start with the ELF header of a BPF object (a .bpf.o, not an executable embedding one)? */
function isBpfObjectFile(path: string): boolean {
  const head = Buffer.alloc(EHDR_SIZE);
  let fd: number | undefined;
  try {
    // regular files only: opening a FIFO or a device behind an fd could block or have effects
    if (!fsMod.statSync(path).isFile()) return false;
    fd = fsMod.openSync(path, fsMod.constants.O_RDONLY | fsMod.constants.O_NONBLOCK);
    return fsMod.readSync(fd, head, 0, EHDR_SIZE, 0) === EHDR_SIZE && head.subarray(0, 4).equals(MAGIC) && head.readUInt16LE(18) === EM_BPF;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fsMod.closeSync(fd);
  }
}

/**
 * The executables, mapped files and open BPF object files of `pids`, each file (device + inode)
 * scanned once, read through /proc (exe, map_files, fd: the process's own view, whatever its mount
 * namespace). An open file is read only when it is a BPF object itself (its ELF header says
 * EM_BPF): loaders that keep their .bpf.o open, not the logs and data files a process has open.
 * Only files holding at least one BPF object are returned. Unreadable files and vanished processes
 * are skipped.
 */
export function scanProcessFiles(pids: number[]): ProcessFile[] {
  const { readFileSync, readlinkSync, readdirSync, statSync } = fsMod;
  const seen = new Set<string>();
  const out: ProcessFile[] = [];
  const scan = (pid: number, file: string, via: string, found: ProcessFile['found']): void => {
    let key: string;
    try {
      const st = statSync(via);
      if (!st.isFile() || st.size > MAX_SCAN) return;
      key = `${st.dev}:${st.ino}`;
    } catch { return; }
    if (seen.has(key)) return;
    seen.add(key);
    let data: Buffer;
    try { data = readFileSync(via); } catch { return; }
    const objects = findBpfObjects(data);
    if (objects.length) out.push({ pid, file, found, objects: objects.map((o) => ({ ...o, data: Buffer.from(data.subarray(o.offset, o.offset + o.size)) })) });
  };
  for (const pid of pids) {
    scan(pid, `/proc/${pid}/exe`, `/proc/${pid}/exe`, 'exe');
    let maps: string;
    try { maps = readFileSync(`/proc/${pid}/maps`, 'utf8'); } catch { continue; }
    const done = new Set<string>();
    for (const line of maps.split('\n')) {
      // start-end perms offset dev inode   path
      const m = /^([0-9a-f]+-[0-9a-f]+) \S+ \S+ \S+ (\d+)\s+(\/.*)$/.exec(line);
      if (!m || m[2] === '0' || done.has(m[3]!)) continue;
      done.add(m[3]!);
      let via = `/proc/${pid}/map_files/${m[1]}`;
      try { readlinkSync(via); } catch { via = `/proc/${pid}/root${m[3]}`; }
      scan(pid, m[3]!, via, 'mapped');
    }
    let fds: string[];
    try { fds = readdirSync(`/proc/${pid}/fd`); } catch { continue; }
    for (const n of fds) {
      const via = `/proc/${pid}/fd/${n}`;
      if (!isBpfObjectFile(via)) continue;
      let file = via;
      try { file = readlinkSync(via); } catch { /* closed meanwhile */ }
      scan(pid, file, via, 'open');
    }
  }
  return out;
}
