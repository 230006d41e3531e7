/**
 * The adapter each supported container runtime implements (runc.ts, containerd.ts); index.ts
 * lists them and finds containers and runc invocations through them.
 */

export type RuntimeName = 'runc' | 'containerd';

export interface Runtime {
  readonly name: RuntimeName;
  /** runc state roots this runtime uses: directories holding <container id>/state.json. */
  stateRoots(): string[];
  /** Is `argv` this runtime's process directly above runc (e.g. containerd-shim-runc-v2)? */
  isRuncParent(argv: string[]): boolean;
}
