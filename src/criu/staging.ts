/**
 * The staging area: a directory on a host bpffs where the CRIU plugin pins the BPF objects of a
 * checkpoint (<root>/<key>/<kind>-<criu id>) and pre-restore pins recreated maps
 * (<root>/<key>/r<criu pid>/map-<old id>). Pins keep objects alive while no process holds them.
 */
import { createRequire } from 'node:module';
import { existsSync, lstatSync, mkdirSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isOnBpffs } from '../engine/bpffs.js';

/** node:child_process, loaded only when needed (start-up time matters in CRIU actions). */
function childProcess(): typeof import('node:child_process') {
  return createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process');
}

export const DEFAULT_STAGING = '/sys/fs/bpf/bpfcr';
export const BPFFS_MOUNTPOINT = '/sys/fs/bpf';

/** Where the plugin pins: $BPFCR_STAGING, else its compiled-in default (it reads no config file). */
export function pluginStagingRoot(): string {
  return process.env['BPFCR_STAGING'] || DEFAULT_STAGING;
}

/** Where bpfcr itself stages and collects: $BPFCR_STAGING, else config `staging`. */
export function stagingRoot(configStaging: string | undefined): string {
  return process.env['BPFCR_STAGING'] || configStaging || DEFAULT_STAGING;
}

function isDir(path: string): boolean {
  try { return lstatSync(path).isDirectory(); } catch { return false; }
}

function mountBpffs(dir: string): void {
  const mount = ['/usr/bin/mount', '/bin/mount', '/usr/sbin/mount', '/sbin/mount'].find((p) => existsSync(p)) ?? 'mount';
  try {
    childProcess().execFileSync(mount, ['-t', 'bpf', '-o', 'mode=700,nosuid,nodev,noexec', 'bpf', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`cannot mount a bpffs on ${dir}: ${err || (e as Error).message}`);
  }
}

/**
 * Make `root` an existing directory (mode 0700) on a bpffs: mount a bpffs on /sys/fs/bpf when the
 * root lies under it and none is mounted, or on the root itself when it lies elsewhere.
 * Returns the mount point it mounted, if any.
 */
export function ensureStagingRoot(root: string): { mounted?: string } {
  let mounted: string | undefined;
  let existing = root;
  while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
  if (!isOnBpffs(root) && !(existing !== root && isOnBpffs(existing))) {
    const under = root === BPFFS_MOUNTPOINT || root.startsWith(BPFFS_MOUNTPOINT + '/');
    const target = under ? BPFFS_MOUNTPOINT : root;
    if (!isOnBpffs(target) || !isDir(target)) {
      // the root may exist on the wrong filesystem: only a missing or empty dir becomes a mount point
      if (!under && isDir(root) && readdirSync(root).length > 0) {
        throw new Error(`staging root ${root} is not on a bpffs and is not empty: mount a bpffs there (mount -t bpf bpf ${root}) or choose another staging`);
      }
      mkdirSync(target, { recursive: true, mode: 0o700 });
      mountBpffs(target);
      mounted = target;
    }
  }
  if (!isDir(root)) mkdirSync(root, { recursive: true, mode: 0o700 });
  if (!isOnBpffs(root)) throw new Error(`staging root ${root} is not on a bpffs`);
  return mounted ? { mounted } : {};
}

/** mkdir -p on a bpffs, 0700. */
export function makeStagingDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!isOnBpffs(dir)) throw new Error(`${dir} is not on a bpffs`);
}

export interface Removed { pins: string[]; dirs: string[] }

/**
 * Remove a staging subtree (pins and directories), bottom up. Refuses anything not on a bpffs,
 * never follows symlinks out of the tree. Returns what it removed.
 */
export function removeStagingTree(path: string): Removed {
  const removed: Removed = { pins: [], dirs: [] };
  if (!existsSync(path)) return removed;
  if (!isOnBpffs(path)) throw new Error(`refusing to remove ${path}: not on a bpffs`);
  const walk = (p: string): void => {
    const st = lstatSync(p);
    if (st.isDirectory()) {
      for (const n of readdirSync(p)) walk(join(p, n));
      rmdirSync(p);
      removed.dirs.push(p);
    } else {
      unlinkSync(p);
      removed.pins.push(p);
    }
  };
  walk(path);
  return removed;
}

/** Unlink a pin if it exists (and is on a bpffs). */
export function unpin(path: string): boolean {
  if (!existsSync(path)) return false;
  if (!isOnBpffs(dirname(path))) throw new Error(`refusing to unlink ${path}: not on a bpffs`);
  try {
    unlinkSync(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** rmdir if empty; false when not empty or missing. */
export function rmdirIfEmpty(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}
