/**
 * A minimal container root file system — static busybox, the static bpfholder, a few applet
 * links — packed as a tar for `podman import` (no registry is needed). Used by `bpfcr demo` and
 * by the podman test image.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface RootfsSpec {
  busybox: string;
  holder: string;
  /** busybox applets to link into /bin */
  applets: string[];
  /** extra files: path inside the rootfs → content */
  files?: Record<string, string>;
}

/** Build the rootfs under dir/rootfs and return the path of dir/rootfs.tar (owned by 0:0). */
export function writeRootfsTar(dir: string, spec: RootfsSpec): string {
  const root = join(dir, 'rootfs');
  for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp', 'etc', 'run']) mkdirSync(join(root, d), { recursive: true });
  chmodSync(join(root, 'tmp'), 0o1777);
  copyFileSync(spec.busybox, join(root, 'bin/busybox'));
  copyFileSync(spec.holder, join(root, 'bin/bpfholder'));
  chmodSync(join(root, 'bin/busybox'), 0o755);
  chmodSync(join(root, 'bin/bpfholder'), 0o755);
  for (const app of spec.applets) symlinkSync('busybox', join(root, 'bin', app));
  const files = { 'etc/passwd': 'root:x:0:0:root:/:/bin/sh\n', 'etc/group': 'root:x:0:\n', ...spec.files };
  for (const [path, content] of Object.entries(files)) writeFileSync(join(root, path), content);
  const tar = join(dir, 'rootfs.tar');
  const r = spawnSync('tar', ['-C', root, '--numeric-owner', '--owner=0', '--group=0', '-cf', tar, '.'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar of the rootfs failed: ${(r.stderr || String(r.error)).trim()}`);
  return tar;
}
