/**
 * The run log: one line per hook or CRIU action bpfcr ran, in /var/log/bpfcr/bpfcr.log. Runtimes
 * swallow what hooks and action scripts print (podman shows a poststop hook's output nowhere, CRIU
 * buries it in its own log, which podman deletes with the checkpoint), so this is where an operator
 * finds what happened: what ran, for which container, how long it took, how many maps and entries,
 * and how it ended.
 *
 *   2026-12-01T11:14:04.900Z what="criu-action post-dump" container=3f2a9c1d0b7e result=ok ms=52 maps=7 entries=46 pid=1234
 *
 * key=value pairs (logfmt): values with spaces, quotes or anything a terminal would act on are
 * double-quoted, escaped by termSafe (backslash doubled, control characters as \xNN) with `"` as
 * `\"`, so a container's names can neither break a line nor fake one.
 *
 * Safety: the log lives in a directory only root can write (checked, never a symlink), the file is
 * opened with O_NOFOLLOW and must be a regular file with one link, and is kept 0600. At 1 MiB it is
 * renamed to bpfcr.log.1 (replacing the previous one), so the log takes at most ~2 MiB. Writing it
 * never fails a run: a problem is returned, for the caller to mention or ignore.
 */
import { closeSync, constants as fsc, fchmodSync, fstatSync, lstatSync, mkdirSync, openSync, realpathSync, renameSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { termSafe } from '../archive/names.js';

export const DEFAULT_LOG_DIR = '/var/log/bpfcr';
export const LOG_FILE = 'bpfcr.log';
export const DEFAULT_MAX_BYTES = 1 << 20;
/** Longest error text kept in a line: the first line of a message, not a dump of it. */
const MAX_ERROR = 1000;

export interface RunRecord {
  /** what ran: "hook prestart", "criu-action post-dump" */
  what: string;
  /** the container (id, or name when that is all there is) */
  container?: string | undefined;
  /** wall time of the run */
  ms: number;
  result: 'ok' | 'error' | 'nothing to do';
  maps?: number | undefined;
  entries?: number | undefined;
  /** one line on what happened ("restored 3 pin(s)"), or the error message */
  detail?: string | undefined;
}

export interface LogOptions {
  /** default $BPFCR_LOG_DIR, else /var/log/bpfcr; $BPFCR_LOG_DIR= (empty) turns the log off */
  dir?: string;
  maxBytes?: number;
  /** clock, for tests */
  now?: Date;
}

/** A value as logfmt writes it: bare when it is a plain token, else quoted and escaped. */
function value(v: string | number): string {
  if (typeof v === 'number') return String(v);
  if (/^[A-Za-z0-9._:/@+-]+$/.test(v)) return v;
  return `"${termSafe(v).replace(/"/g, '\\"')}"`;
}

/** The line for a record (no newline). */
export function formatRun(r: RunRecord, now = new Date(), pid = process.pid): string {
  const fields: [string, string | number | undefined][] = [
    ['what', r.what], ['container', r.container], ['result', r.result], ['ms', Math.round(r.ms)],
    ['maps', r.maps], ['entries', r.entries], ['pid', pid],
    ['detail', r.detail === undefined ? undefined : r.detail.split('\n')[0]!.slice(0, MAX_ERROR)],
  ];
  return `${now.toISOString()} ${fields.filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${value(v!)}`).join(' ')}`;
}

/**
 * The log directory, created 0700 if missing, refused unless it is a real directory of ours that
 * nobody else can write (then nobody else can put a symlink or a hard link in it).
 */
function logDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory (a symlink?)`);
  if (st.uid !== process.geteuid?.()) throw new Error(`${dir} is owned by uid ${st.uid}, not by us`);
  if (st.mode & 0o022) throw new Error(`${dir} is writable by others (mode ${(st.mode & 0o777).toString(8)})`);
}

/** Open the log for appending: never through a symlink, only a regular file with one link, 0600. */
function openLog(path: string): number {
  // O_NONBLOCK: a FIFO put there fails the open (ENXIO) instead of blocking the run forever
  const fd = openSync(path, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT | fsc.O_NOFOLLOW | fsc.O_NONBLOCK, 0o600);
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.nlink !== 1) throw new Error(`${path} is not a regular file with one link`);
    if ((st.mode & 0o777) !== 0o600) fchmodSync(fd, 0o600);
    return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/**
 * Append one line for `r`. Returns undefined when written, else why not (never throws: the run
 * it records must not fail because of its log).
 */
export function logRun(r: RunRecord, opts: LogOptions = {}): string | undefined {
  const dir = opts.dir ?? process.env['BPFCR_LOG_DIR'] ?? DEFAULT_LOG_DIR;
  if (!dir) return undefined; // turned off
  const path = join(dir, LOG_FILE);
  const line = Buffer.from(formatRun(r, opts.now) + '\n');
  const max = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  let fd: number | undefined;
  try {
    logDir(dir);
    fd = openLog(path);
    if (fstatSync(fd).size + line.length > max) {
      // Rotate, unless another writer did since we opened (the name is no longer our file):
      // then our fd is the old file, now .1, and we write to the new one.
      const ours = fstatSync(fd).ino;
      let current: number | undefined;
      try { current = statSync(path).ino; } catch { /* renamed away */ }
      if (current === ours) renameSync(path, `${path}.1`);
      closeSync(fd);
      fd = openLog(path);
    }
    // O_APPEND: one write per line, so concurrent runs never interleave within a line
    writeSync(fd, line);
    return undefined;
  } catch (e) {
    return `cannot write the run log ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Run `fn` and log it: its time, and how it ended (its error message on failure, rethrown).
 * `summarize` turns the result into maps/entries/detail; `undefined` from fn means nothing to do.
 */
export async function loggedRun<T>(
  what: string, container: string | undefined, fn: () => Promise<T>,
  summarize: (r: T) => Pick<RunRecord, 'maps' | 'entries' | 'detail'> = () => ({}), opts: LogOptions = {},
): Promise<T> {
  const start = performance.now();
  try {
    const res = await fn();
    logRun({ what, container, ms: performance.now() - start, result: res === undefined ? 'nothing to do' : 'ok', ...(res === undefined ? {} : summarize(res)) }, opts);
    return res;
  } catch (e) {
    logRun({ what, container, ms: performance.now() - start, result: 'error', detail: (e as Error)?.message ?? String(e) }, opts);
    throw e;
  }
}

/**
 * The container a CRIU action works for, from its image dir (CRTOOLS_IMAGE_DIR, a /proc/PID/fd/N
 * link): podman's is .../overlay-containers/<64-hex id>/userdata/checkpoint, so its id (12
 * characters, as podman prints it); elsewhere (runc, containerd) the directory itself.
 */
export function imageDirContainer(dir: string): string {
  let real = dir;
  try { real = realpathSync(dir); } catch { /* gone: the name given */ }
  return /(?:^|\/)([0-9a-f]{64})(?:\/|$)/.exec(real)?.[1]!.slice(0, 12) ?? real;
}
