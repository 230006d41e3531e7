import { statfsSync } from 'node:fs';

export const BPF_FS_MAGIC = 0xcafe4a11;

export function isOnBpffs(path: string): boolean {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}
