/**
 * The interface every archive source implements (dir-source.ts, tar-source.ts): the members of an
 * archive as they come. source.ts picks and opens the source; reader.ts reads members through it.
 */
import type { RawMember } from './member.js';
import type { Compression } from './writer.js';

/**
 * The members of an archive, as they come. How they come is `order`:
 * - 'native': header first, then the members in archive order, manifest last (a bpfcr tar);
 * - 'any': header first, manifest anywhere after it (a bpfcr archive under a prefix of another tar);
 * - 'manifest': header and manifest are read when the source is opened, the members then follow
 *   the manifest's order (`follow`; a directory).
 */
export interface MemberSource {
  readonly format: { kind: 'tar' | 'dir'; compression: Compression };
  readonly order: 'native' | 'any' | 'manifest';
  /** The header member, refusing what is not a bpfcr archive; first call, once. */
  start(): Promise<SourceStart>;
  /**
   * ('manifest' order) From now on yield the members in the manifest's `order` and report absent
   * ones to `missing`; yields first what the source holds that the manifest does not list.
   */
  follow?(listing: ReadonlyMap<string, unknown>, order: readonly string[], missing: (name: string) => void): AsyncGenerator<RawMember>;
  /** Next regular-file member (names validated, prefix stripped), or null at the end. */
  next(): Promise<RawMember | null>;
  close(): Promise<void>;
}

export interface SourceStart {
  header: RawMember;
  /** The manifest, when the source has it before any member ('manifest' order). */
  manifest?: () => Promise<RawMember>;
}
