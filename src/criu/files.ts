/**
 * Files bpfcr keeps in a CRIU image directory, and their formats.
 *
 *   bpfcr-key             plugin: checkpoint key (names the staging subdirectory)
 *   bpfcr-taken.txt       plugin: "<criu id> <kind> <object id> <type> <pin path>" per BPF fd it took
 *   bpfcr.tar             post-dump: the maps' contents (a bpfcr archive; a plain tar is ~40 ms faster
 *                         to write than a directory archive of small members, on the checkpoint's
 *                         critical path)
 *   bpfcr-checkpoint.json post-dump: what was taken, from which host; written last (= post-dump done)
 *   bpfcr-restore.txt     pre-restore: "<criu id> <kind> <object id>" the plugin hands back
 *   bpfcr-cleanup.txt     pre-restore → post-restore: "f <path>" to unlink, "d <dir>" to rmdir if empty
 *   bpfcr-restore.owner   pre-restore: "<criu pid> <start time>" of the restore it was done for
 *   .bpfcr-warm-<pid>/    hooks/checkpoint's post-dump worker (lock, go, quit, result) during a dump
 *
 * hooks/checkpoint reads the same names in sh (fast paths); keep them in sync.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { BpfKind } from './proc.js';

export const KEY_FILE = 'bpfcr-key';
export const TAKEN_FILE = 'bpfcr-taken.txt';
export const ARCHIVE = 'bpfcr.tar';
export const INFO_FILE = 'bpfcr-checkpoint.json';
export const RESTORE_FILE = 'bpfcr-restore.txt';
export const CLEANUP_FILE = 'bpfcr-cleanup.txt';
export const OWNER_FILE = 'bpfcr-restore.owner';
/** The staging root for the plugin (written at pre-dump from the config; read by bpfcr_plugin.c). */
export const STAGING_FILE = 'bpfcr-staging';

/** Everything a new dump into a reused image directory must not inherit. */
export const DUMP_STATE = [KEY_FILE, TAKEN_FILE, ARCHIVE, 'bpfcr', INFO_FILE, RESTORE_FILE, CLEANUP_FILE, OWNER_FILE, 'bpfcr-pins.tar'];

export interface Taken {
  /** CRIU's file id (decimal) */
  criuId: number;
  kind: BpfKind;
  /** map_id / prog_id / link_id at dump time */
  id: number;
  /** map_type / prog_type number, or the link type name */
  type: string;
  /** staging pin the plugin made */
  pin: string;
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
    const [criuId, kind, id, type] = [Number(f[0]), f[1], Number(f[2]), f[3]];
    const pin = f.slice(4).join(' ');
    if (f.length < 5 || !Number.isInteger(criuId) || !Number.isInteger(id) || id <= 0 ||
        (kind !== 'map' && kind !== 'prog' && kind !== 'link') || !pin.startsWith('/')) {
      throw new Error(`${TAKEN_FILE} line ${i + 1}: cannot parse ${JSON.stringify(line)}`);
    }
    out.push({ criuId, kind, id, type: type!, pin });
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

/** Lines of bpfcr-restore.txt, in the plugin's format. */
export function formatRestore(lines: { criuId: number; kind: BpfKind; id: number }[]): string {
  return lines.map((l) => `${l.criuId} ${l.kind} ${l.id}\n`).join('');
}

export interface CleanupStep { op: 'f' | 'd'; path: string }

export function formatCleanup(steps: CleanupStep[]): string {
  return steps.map((s) => `${s.op} ${s.path}\n`).join('');
}

export function parseCleanup(text: string): CleanupStep[] {
  const out: CleanupStep[] = [];
  for (const line of text.split('\n')) {
    const m = /^([fd]) (\/.*)$/.exec(line);
    if (m) out.push({ op: m[1] as 'f' | 'd', path: m[2]! });
  }
  return out;
}
