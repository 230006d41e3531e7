import { mkdirSync, statfsSync, lstatSync, rmdirSync } from 'node:fs';
import { dirname } from 'node:path';

export const BPF_FS_MAGIC = 0xcafe4a11;

export function isOnBpffs(path: string): boolean {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Make sure `dir` exists (mode 0700 for what we create) and is on a bpffs. Returns the topmost
 * directory this call created, so a failed restore can remove exactly what it added.
 */
export function preparePinDir(dir: string): { createdTop?: string } {
  let createdTop: string | undefined;
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    st = undefined;
  }
  if (st && !st.isDirectory()) throw new Error(`pin dir ${dir}: exists and is not a directory`);
  if (!st) {
    // Find the first missing ancestor so we know what to remove on failure.
    let top = dir;
    for (let p = dirname(dir); p !== top; top = p, p = dirname(p)) {
      try { lstatSync(p); break; } catch { /* missing */ }
    }
    createdTop = top;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }
  if (!isOnBpffs(dir)) {
    if (createdTop) removeCreated(dir, createdTop);
    throw new Error(`pin dir ${dir}: not on a bpffs (mount one with: mount -t bpf bpf /sys/fs/bpf)`);
  }
  return createdTop ? { createdTop } : {};
}

/** rmdir from `dir` up to and including `top` (only empty dirs go). */
export function removeCreated(dir: string, top: string): void {
  for (let p = dir; ; p = dirname(p)) {
    try { rmdirSync(p); } catch { return; }
    if (p === top || p === dirname(p)) return;
  }
}
