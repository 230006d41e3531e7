/**
 * The entry of bpfcr's one-file bundle, dist/bundle/bpfcr.cjs (built by scripts/bundle.mjs, loaded
 * by src/cli/load.cts). Everything bpfcr runs — the CLI, the CRIU action, the OCI hooks — goes
 * through the bundle: one file and a V8 code cache instead of ~60 ES modules resolved, read and
 * compiled on every start (docs/performance.md has the figures).
 */
export { runCli } from './cli/main.js';

/** The OCI hooks' full path (hook-main.cts takes the fast no-annotation exit without the bundle). */
export const hookRun = (): Promise<typeof import('./oci/hook-run.js')> => import('./oci/hook-run.js');

/**
 * What the code cache is trained on (load.cts buildCodeCache): the modules of the paths whose start-up
 * a user waits for — the CRIU actions, dump/restore/inspect, the hooks. Loading runs only their
 * top-level code (declarations); functions not compiled here are compiled on first use, as without a cache.
 */
export async function warmUp(): Promise<void> {
  await Promise.all([
    import('./cli/commands/criu-action.js'), import('./criu/actions.js'), import('./criu/pre-dump.js'), import('./criu/storage.js'),
    import('./cli/commands/dump.js'), import('./cli/commands/restore.js'), import('./cli/commands/inspect.js'),
    import('./oci/hook-run.js'), import('./oci/hooks.js'),
  ]);
}
