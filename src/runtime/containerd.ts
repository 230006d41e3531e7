/**
 * containerd (1.6, Debian 12's package): `ctr` / the CRI plugin → containerd-shim-runc-v2 → runc
 * with `--root /run/containerd/runc/<namespace>` (the runc options' `root` in containerd's config
 * can move it; $BPFCR_CONTAINERD_RUNC_ROOT then names it). The bundle is
 * /run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>, runc's state labels name it.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Runtime } from './types.js';

export const containerd: Runtime = {
  name: 'containerd',
  stateRoots() {
    const base = process.env['BPFCR_CONTAINERD_RUNC_ROOT'] || '/run/containerd/runc';
    try {
      return readdirSync(base).map((ns) => join(base, ns)); // one runc root per namespace
    } catch {
      return [];
    }
  },
  isRuncParent: (argv) => argv.length > 0 && /(^|\/)containerd-shim(-runc-v[12])?$/.test(argv[0]!),
};
