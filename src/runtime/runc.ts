/** runc, by hand or under podman (conmon / podman run runc with its default root). */
import type { Runtime } from './types.js';

export const runc: Runtime = {
  name: 'runc',
  stateRoots() {
    const extra = process.env['BPFCR_RUNC_ROOT'];
    return [...(extra ? [extra] : []), '/run/runc'];
  },
  // anything that is not another runtime's runc parent: podman, conmon, a shell, a test
  isRuncParent: () => true,
};
