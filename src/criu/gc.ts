/**
 * Garbage collection of the staging area: one subdirectory per checkpoint key, holding the pins
 * the CRIU plugin made at dump and the copies pre-restore made. Pins are only an optimisation
 * (zero-copy restore on the same boot) plus what keeps programs/links restorable: the map
 * contents are in the checkpoint's image dir, so removing a checkpoint's pins never loses map data.
 */
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isOnBpffs } from '../engine/bpffs.js';
import { lockKey, restoreMarkers, runEntries, unlinkQuiet } from './lock.js';
import { removeStagingTree } from './staging.js';

export interface GcOptions {
  root: string;
  all: boolean;
  /** remove checkpoints whose newest entry is older than this (ms) */
  olderThanMs?: number;
  dryRun?: boolean;
  now?: number;
}

export interface GcEntry {
  key: string;
  path: string;
  pins: number;
  ageMs: number;
  action: 'removed' | 'kept' | 'skipped';
  reason?: string;
}

/** Number of pins and newest mtime in a staging subtree. */
function survey(path: string): { pins: number; newest: number } {
  let pins = 0;
  let newest = 0;
  const walk = (p: string): void => {
    const st = lstatSync(p);
    newest = Math.max(newest, st.mtimeMs);
    if (st.isDirectory()) for (const n of readdirSync(p)) walk(join(p, n));
    else pins++;
  };
  walk(path);
  return { pins, newest };
}

export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(text.trim());
  if (!m) throw new Error(`bad duration ${JSON.stringify(text)} (use e.g. 90s, 30m, 12h, 7d)`);
  const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 }[m[2] as 'ms'];
  return Number(m[1]) * unit;
}

export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${(s / 3600).toFixed(1)}h`;
  return `${(s / 86400).toFixed(1)}d`;
}

export function gc(opts: GcOptions): GcEntry[] {
  const now = opts.now ?? Date.now();
  let names: string[];
  try {
    names = readdirSync(opts.root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new Error(`cannot list staging root ${opts.root}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  if (!isOnBpffs(opts.root)) throw new Error(`staging root ${opts.root} is not on a bpffs: refusing to touch it`);

  const out: GcEntry[] = [];
  for (const key of names.sort()) {
    const path = join(opts.root, key);
    let st;
    try { st = lstatSync(path); } catch { continue; }
    if (!st.isDirectory()) continue; // not ours: bpfcr stages one directory per checkpoint
    if (!isOnBpffs(path)) {
      out.push({ key, path, pins: 0, ageMs: 0, action: 'skipped', reason: 'not on a bpffs (another filesystem is mounted there)' });
      continue;
    }
    const { pins, newest } = survey(path);
    const ageMs = now - newest;
    const entry: GcEntry = { key, path, pins, ageMs, action: 'kept' };
    out.push(entry);
    if (!opts.all && (opts.olderThanMs === undefined || ageMs < opts.olderThanMs)) {
      entry.reason = `younger than ${formatAge(opts.olderThanMs ?? 0)}`;
      continue;
    }
    const lock = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(key) ? lockKey(key, 0) : undefined;
    if (!lock) {
      entry.reason = 'in use (a CRIU action holds its lock)';
      continue;
    }
    try {
      const live = restoreMarkers(key).filter((m) => m.alive);
      if (live.length) {
        entry.reason = `a restore is in flight (criu pid ${live.map((m) => m.criuPid).join(', ')})`;
        continue;
      }
      if (opts.dryRun) {
        entry.reason = 'dry run';
        continue;
      }
      removeStagingTree(path);
      entry.action = 'removed';
      for (const r of runEntries()) if (r.key === key) unlinkQuiet(r.path); // lock file included: we hold it
    } finally {
      lock.release();
    }
  }
  if (!opts.dryRun) dropOrphanRunEntries(new Set(names));
  return out;
}

/** Lock files and dead restore markers of checkpoints that have nothing staged any more. */
function dropOrphanRunEntries(staged: Set<string>): void {
  const keys = new Set(runEntries().map((r) => r.key).filter((k) => !staged.has(k)));
  for (const key of keys) {
    if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(key)) continue;
    const lock = lockKey(key, 0);
    if (!lock) continue;
    try {
      if (restoreMarkers(key).some((m) => m.alive)) continue;
      for (const r of runEntries()) if (r.key === key) unlinkQuiet(r.path);
    } finally {
      lock.release();
    }
  }
}
