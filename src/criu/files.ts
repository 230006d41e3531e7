/**
 * Files bpfcr keeps in a CRIU image directory, and their formats.
 *
 *   bpfcr-key             plugin: checkpoint key (names the staging subdirectory)
 *   bpfcr-taken.txt       plugin: "<criu id> <kind> <object id> <type> <pin path>" per BPF fd it took
 *                         (kind map|prog|link; btf and perf are recorded with pin "-"), and
 *                         "vma map <map id> <type> <pin path>" per BPF map mmapped by the tasks
 *   bpfcr.tar             post-dump: the maps' contents (a bpfcr archive; a plain tar is ~40 ms faster
 *                         to write than a directory archive of small members, on the checkpoint's
 *                         critical path)
 *   bpfcr-checkpoint.json post-dump: what was taken, from which host; written last (= post-dump done)
 *   bpfcr-restore.txt     pre-restore: "<criu id> <kind> <object id>" the plugin hands back (kind
 *                         map|prog|link|btf by id; "btf-load <old id>": load bpfcr-btf-<old id>.raw;
 *                         "perf <tracepoint id>": a stand-in perf event), "vma <old map id> <new map id>"
 *   bpfcr-btf-<id>.raw    pre-restore: a BTF blob the plugin loads itself (no restored map keeps it alive)
 *   bpfcr-cleanup.txt     pre-restore → the plugin's fini: "f <path>" to unlink, "d <dir>" to rmdir if empty
 *   bpfcr-restore.owner   pre-restore: "<criu pid> <start time>" of the restore it was done for
 *   .bpfcr-warm-<pid>/    the post-dump worker's (actions.ts warm(): lock, go, result) during a dump
 *
 * hooks/checkpoint reads the same names in sh (fast paths); keep them in sync.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { BpfKind } from './proc.js';

/** What the plugin takes: BPF objects it pins, plus BTF and perf event fds it only records. */
export type TakenKind = BpfKind | 'btf' | 'perf';
/** What bpfcr-restore.txt hands back. */
export type RestoreKind = TakenKind | 'btf-load';

export const KEY_FILE = 'bpfcr-key';
export const TAKEN_FILE = 'bpfcr-taken.txt';
export const ARCHIVE = 'bpfcr.tar';
export const INFO_FILE = 'bpfcr-checkpoint.json';
export const RESTORE_FILE = 'bpfcr-restore.txt';
export const CLEANUP_FILE = 'bpfcr-cleanup.txt';
export const OWNER_FILE = 'bpfcr-restore.owner';
/** pre-restore → post-restore: the local-storage maps whose values go back on the restored owners */
export const STORAGE_FILE = 'bpfcr-storage.txt';
/** The staging root for the plugin (written at pre-dump from the config; read by bpfcr_plugin.c). */
export const STAGING_FILE = 'bpfcr-staging';
/**
 * Why pre-restore failed: it runs beside CRIU (hooks/checkpoint), so the plugin and post-restore, which
 * wait for it on .bpfcr-pre-restore.lock, fail the restore with this line.
 */
export const RESTORE_ERROR_FILE = 'bpfcr-restore.error';
/** The same for pre-dump, which runs beside CRIU's dump (read by bpfcr_plugin.c). */
export const DUMP_ERROR_FILE = 'bpfcr-dump.error';

/** Everything a new dump into a reused image directory must not inherit. */
export const DUMP_STATE = [KEY_FILE, TAKEN_FILE, ARCHIVE, 'bpfcr', INFO_FILE, RESTORE_FILE, CLEANUP_FILE, OWNER_FILE, STORAGE_FILE, 'bpfcr-pins.tar', RESTORE_ERROR_FILE, '.bpfcr-pre-restore.lock'];

/** The BTF blob pre-restore leaves for the plugin to load. */
export const btfHandoff = (oldId: number): string => `bpfcr-btf-${oldId}.raw`;
export const NO_PIN = '-';

export interface Taken {
  /** CRIU's file id (decimal); 0 for a mapping (vma) */
  criuId: number;
  kind: TakenKind;
  /**
   * map_id / prog_id / link_id / btf_id at dump time; perf: the program attached to the event's
   * tracepoint (0 when none)
   */
  id: number;
  /** map_type / prog_type number, the link type name, perf: the tracepoint name ("-": none) */
  type: string;
  /** staging pin the plugin made ("-" for btf and perf: not pinnable) */
  pin: string;
  /** a map the tasks mmap (taken by the plugin's VMA hook, not from an fd) */
  vma?: true;
}

export function readText(dir: string, name: string): string | undefined {
  try {
    return readFileSync(join(dir, name), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${name} in the image dir: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

export function has(dir: string, name: string): boolean {
  return existsSync(join(dir, name));
}

const KEY_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;

export function readKey(dir: string): string {
  const text = readText(dir, KEY_FILE);
  if (text === undefined) throw new Error(`${KEY_FILE} is missing from the image dir (written by the bpfcr CRIU plugin at dump)`);
  const key = text.split('\n')[0]!.trim();
  if (!KEY_RE.test(key)) throw new Error(`${KEY_FILE} in the image dir holds a bad key ${JSON.stringify(key)}`);
  return key;
}

export function parseTaken(text: string): Taken[] {
  const out: Taken[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const f = line.trim().split(/\s+/);
    const vma = f[0] === 'vma';
    const [criuId, kind, id, type] = [vma ? 0 : Number(f[0]), f[1], Number(f[2]), f[3]];
    const pin = f.slice(4).join(' ');
    const pinned = kind === 'map' || kind === 'prog' || kind === 'link';
    if (f.length < 5 || !Number.isInteger(criuId) || (!vma && criuId <= 0) || !Number.isInteger(id) || id < 0 ||
        (vma && kind !== 'map') || (id === 0 && kind !== 'perf') ||
        (pinned ? !pin.startsWith('/') : (kind !== 'btf' && kind !== 'perf') || pin !== NO_PIN)) {
      throw new Error(`${TAKEN_FILE} line ${i + 1}: cannot parse ${JSON.stringify(line)}`);
    }
    out.push({ criuId, kind: kind as TakenKind, id, type: type!, pin, ...(vma ? { vma: true as const } : {}) });
  });
  return out;
}

export function readTaken(dir: string): Taken[] | undefined {
  const text = readText(dir, TAKEN_FILE);
  return text === undefined ? undefined : parseTaken(text);
}

/** Write a file in the image dir atomically (temp file + rename), so a reader never sees half. */
export function writeAtomic(dir: string, name: string, data: string): void {
  const tmp = join(dir, `.${name}.tmp-${process.pid}`);
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, name));
}

export function remove(dir: string, name: string): void {
  rmSync(join(dir, name), { recursive: true, force: true });
}

export type RestoreLine =
  | { criuId: number; kind: RestoreKind; id: number }
  | { vma: true; oldId: number; newId: number };

/** Lines of bpfcr-restore.txt, in the plugin's format. */
export function formatRestore(lines: RestoreLine[]): string {
  return lines.map((l) => ('vma' in l ? `vma ${l.oldId} ${l.newId}\n` : `${l.criuId} ${l.kind} ${l.id}\n`)).join('');
}

export interface CleanupStep { op: 'f' | 'd'; path: string }

export function formatCleanup(steps: CleanupStep[]): string {
  return steps.map((s) => `${s.op} ${s.path}\n`).join('');
}

/** hooks/checkpoint's warm worker directory for the dump criu process `cpid` runs. */
export function warmDir(dir: string, cpid: number): string {
  return join(dir, `.bpfcr-warm-${cpid}`);
}
