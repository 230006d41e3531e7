/**
 * bpfcr-checkpoint.json: what the plugin took at a dump and where it came from. Written by
 * post-dump after the map archive, so its presence means "post-dump completed".
 */
import { readFileSync } from 'node:fs';
import { hostname, release } from 'node:os';
import { join } from 'node:path';
import { INFO_FILE } from './files.js';
import type { TakenKind } from './files.js';
import type { BtfTarget, LinkTargetT } from '../programs/info.js';

export const RECORD_FORMAT = 'bpfcr-criu';
export const RECORD_VERSION = 1;

export interface HostId {
  bootId: string; hostname: string;
  /** uname -r: on the same kernel a reloaded program must have the recorded tag */
  kernel?: string;
}

export interface TakenObject {
  /** CRIU's file id; 0 for a mapping */
  criuId: number;
  kind: TakenKind;
  /** a map the tasks mmap (its VMAs are restored onto the map pre-restore chooses) */
  vma?: true;
  /** object id at dump time */
  id: number;
  /** map_type / prog_type number or link type name, from fdinfo */
  type: string;
  pin: string;
  /** maps: name and index in the bpfcr.tar archive */
  name?: string;
  archiveIndex?: number;
  /** programs: tag; ids of the maps it uses (undefined when they could not be read) */
  tag?: string;
  mapIds?: number[];
  /** links: program id; perf: the program attached to the event's tracepoint */
  progId?: number;
  /** maps: their BTF object's id at dump time */
  btfId?: number;
  /** perf: the tracepoint the event is open on */
  tracepoint?: string;
  /**
   * programs: the expected attach type (enum bpf_attach_type). The kernel does not report it for a
   * program: taken from the attach_type of a taken link of it that has one (tracing, cgroup, netns,
   * tcx, netkit, sockmap); absent otherwise (the object's section names it for libbpf).
   */
  expectedAttachType?: number;
  /** programs and links (for their program): BTF func info, the program's functions by full name, itself first */
  funcs?: string[];
  /** programs: the BTF type a tracing/ext/lsm program was loaded for (prog info attach_btf_*) */
  attachBtf?: BtfTarget;
  /** links: what the link is attached to, as the kernel reports it */
  target?: LinkTargetT;
  /** tail-call maps: [slot, program id at dump] of every filled slot (re-filled with the restored programs) */
  progArray?: [number, number][];
  /** programs and links (for their program): the BPF ELF object with a function of the program's name */
  object?: ProgramObject;
}

/** Where a program's BPF ELF object was found at dump; the object itself is the archive's `member`. */
export interface ProgramObject {
  sha256: string;
  /** the archive member holding it (objects/<sha256>.bpf.o) */
  member?: string;
  size: number;
  /** the process and file it was found in: "/proc/<pid>/exe" or a path from /proc/<pid>/maps */
  pid: number;
  file: string;
  /** where the object starts in that file */
  offset: number;
  /** how the file was found: the executable, a mapped file, or a file the process has open */
  found?: 'exe' | 'mapped' | 'open';
  /** the object's function and its section ("raw_tp/sys_enter") */
  function: string;
  section: string;
}

export interface CheckpointRecord {
  format: typeof RECORD_FORMAT;
  version: number;
  key: string;
  created: string;
  host: HostId;
  /** the dump left the tasks running: the staged objects stay in use, never reuse them */
  leaveRunning: boolean;
  init?: { pid: number; token: string };
  /** maps archive (relative to the image dir), absent when no map was taken */
  archive?: string;
  objects: TakenObject[];
}

export function hostId(): HostId {
  let bootId = '';
  try { bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(); } catch { /* unknown */ }
  return { bootId, hostname: hostname(), kernel: release() };
}

export function readRecord(imageDir: string): CheckpointRecord | undefined {
  let text: string;
  try {
    text = readFileSync(join(imageDir, INFO_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let rec: CheckpointRecord;
  try {
    rec = JSON.parse(text) as CheckpointRecord;
  } catch (e) {
    throw new Error(`${INFO_FILE} in the image dir is not valid JSON: ${(e as Error).message}`);
  }
  if (rec?.format !== RECORD_FORMAT || typeof rec.version !== 'number' || !Array.isArray(rec.objects) || !rec.host) {
    throw new Error(`${INFO_FILE} in the image dir is not a ${RECORD_FORMAT} record`);
  }
  if (rec.version > RECORD_VERSION) {
    throw new Error(`${INFO_FILE} has version ${rec.version}; this bpfcr reads up to ${RECORD_VERSION}: upgrade bpfcr`);
  }
  return rec;
}

/** "prog socket_filter 'name' (tag …, id 7)" style labels for messages. */
export function objectLabel(o: TakenObject): string {
  switch (o.kind) {
    case 'map': return `map ${o.id}${o.name ? ` "${o.name}"` : ''} (type ${o.type}${o.vma ? ', mmapped' : ''})`;
    case 'prog': return `program ${o.id}${o.name ? ` "${o.name}"` : ''} (type ${o.type}${o.tag ? `, tag ${o.tag}` : ''})`;
    case 'link': return `link ${o.id} (${o.type}${o.progId ? `, program ${o.progId}` : ''})`;
    case 'btf': return `BTF object ${o.id} (CRIU file ${o.criuId})`;
    case 'perf': return `perf event (CRIU file ${o.criuId}${o.tracepoint ? `, tracepoint ${o.tracepoint}` : ''})`;
  }
}
