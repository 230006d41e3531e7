/** Members of a checkpoint's map archive, read for the CRIU glue (program objects, BTF, storage values). */
/**
 * The named members of an archive, read in one pass that verifies every member against the manifest
 * before returning (the kernel sees no byte of an unverified member).
 */
export async function readArchiveMembers(path: string, names: Set<string> | ((name: string) => boolean)): Promise<Map<string, Buffer>> {
  const wanted = typeof names === 'function' ? names : (n: string): boolean => names.has(n);
  const { openArchiveReader } = await import('../archive/reader.js');
  const out = new Map<string, Buffer>();
  const reader = await openArchiveReader(path, { maxMemberSize: 64 << 20 });
  try {
    for await (const m of reader.members()) {
      const data = await m.read();
      if (wanted(m.name)) out.set(m.name, data);
    }
    await reader.finish();
  } finally {
    await reader.close().catch(() => undefined);
  }
  return out;
}
