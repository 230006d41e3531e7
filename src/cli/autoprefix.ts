/**
 * `podman container checkpoint --export` writes a (zstd) tar whose checkpoint/ directory is the
 * CRIU image dir; bpfcr's post-dump action puts its archive at checkpoint/bpfcr/. Commands that
 * read an archive accept such an export as it is: when a file turns out not to be a bpfcr archive
 * but a tar whose first entry lies under checkpoint/, they read it again under that prefix.
 */
export const PODMAN_EXPORT_PREFIX = 'checkpoint/bpfcr/';

export async function withAutoPrefix<T>(input: string, prefix: string | undefined, run: (prefix: string | undefined) => Promise<T>): Promise<T> {
  if (prefix !== undefined || input === '-') return run(prefix);
  try {
    return await run(undefined);
  } catch (e) {
    if (!/not a bpfcr archive: first member is checkpoint\//.test((e as Error).message)) throw e;
    return run(PODMAN_EXPORT_PREFIX);
  }
}
