/**
 * Verification against manifest.json (docs/archive-format.md section 8): what was met (names,
 * digests, order) is compared with what the manifest lists. A content problem (rules 5 and 6) is
 * thrown at once, or collected per member for verifyArchive/`bpfcr inspect`.
 */
import {
  ArchiveError,
  HEADER_MEMBER,
  MANIFEST_MEMBER,
  parseManifest,
  type ArchiveErrorCode,
  type ArchiveHeader,
  type Manifest,
  type MemberDigest,
} from './format.js';
import { memberNameProblem } from './names.js';

export interface MemberCheck {
  name: string;
  /** Size and SHA-256 from the manifest (for unlisted members: what was found). */
  size: number;
  sha256: string;
  ok: boolean;
  problem?: 'sha256 mismatch' | 'size mismatch' | 'missing' | 'not listed in manifest';
  actualSize?: number;
  actualSha256?: string;
}

export function incompleteError(label: string): ArchiveError {
  return new ArchiveError(`archive ${label} is incomplete: no ${MANIFEST_MEMBER} (truncated or interrupted dump?)`, {
    code: 'INCOMPLETE',
    archive: label,
  });
}

export function archiveError(label: string, msg: string, code: ArchiveErrorCode, member?: string): ArchiveError {
  return new ArchiveError(member ? `archive ${label}: member ${member}: ${msg}` : `archive ${label}: ${msg}`, {
    code,
    archive: label,
    ...(member === undefined ? {} : { member }),
  });
}

export class ManifestCheck {
  #manifest: Manifest | undefined;
  /** Manifest order, header excluded. */
  #order: string[] = [];
  #byName = new Map<string, MemberDigest>();
  #names = new Set<string>(); // every member name met (duplicates)
  #seen = new Map<string, MemberDigest>();
  #seenOrder: string[] = [];
  #problems = new Map<string, MemberCheck>();

  /** `collect`: report content problems in results() instead of throwing them. */
  constructor(
    readonly label: string,
    readonly collect: boolean,
  ) {}

  get manifest(): Manifest | undefined {
    return this.#manifest;
  }

  /** Members the manifest lists, in its order, header excluded (empty before the manifest). */
  get order(): readonly string[] {
    return this.#order;
  }

  /** Listed in the manifest (false before it is known). */
  listed(name: string): boolean {
    return this.#byName.has(name);
  }

  /** The listed members by name (empty before the manifest). */
  get listing(): ReadonlyMap<string, MemberDigest> {
    return this.#byName;
  }

  seen(name: string): boolean {
    return this.#seen.has(name);
  }

  /** A member name met in the archive: refuses the second occurrence. */
  met(name: string): void {
    if (this.#names.has(name)) throw archiveError(this.label, 'duplicate member', 'FORMAT', name);
    this.#names.add(name);
  }

  /** Parse manifest.json (compared with the members by earlier() and final()). */
  parse(buf: Buffer, header: ArchiveHeader): Manifest {
    const m = parseManifest(buf, header, this.label, memberNameProblem);
    this.#manifest = m;
    for (const d of m.members) this.#byName.set(d.name, d);
    this.#order = m.members.map((d) => d.name).filter((n) => n !== HEADER_MEMBER);
    return m;
  }

  /** A content problem: collected by verifyArchive, thrown otherwise. */
  #problem(check: MemberCheck, err: ArchiveError): void {
    if (!this.collect) throw err;
    this.#problems.set(check.name, check);
  }

  /** A member's body is complete: compare it with the manifest if that is known. */
  record(d: MemberDigest): void {
    this.#seen.set(d.name, d);
    this.#seenOrder.push(d.name);
    const exp = this.#byName.get(d.name);
    if (exp) this.#compare(exp, d);
    else if (this.#problems.has(d.name)) this.#problems.set(d.name, { ...this.#problems.get(d.name)!, size: d.size, sha256: d.sha256 });
  }

  #sizeError(exp: MemberDigest, size: number): ArchiveError {
    return archiveError(this.label, `size mismatch (${MANIFEST_MEMBER}: ${exp.size} bytes, archive: ${size} bytes)`, 'CHECKSUM', exp.name);
  }

  /** A member about to be read: refuse it at once when its size is not the listed one. */
  expectSize(name: string, size: number): void {
    const exp = this.#byName.get(name);
    if (exp && exp.size !== size) throw this.#sizeError(exp, size);
  }

  #compare(exp: MemberDigest, d: MemberDigest): void {
    if (exp.size !== d.size)
      this.#problem(
        { ...exp, ok: false, problem: 'size mismatch', actualSize: d.size, actualSha256: d.sha256 },
        this.#sizeError(exp, d.size),
      );
    else if (exp.sha256 !== d.sha256)
      this.#problem(
        { ...exp, ok: false, problem: 'sha256 mismatch', actualSize: d.size, actualSha256: d.sha256 },
        archiveError(this.label, 'sha256 mismatch', 'CHECKSUM', d.name),
      );
  }

  unlisted(name: string, size: number, sha256 = ''): void {
    this.#problem(
      { name, size, sha256, ok: false, problem: 'not listed in manifest' },
      archiveError(this.label, `not listed in ${MANIFEST_MEMBER}`, 'MANIFEST', name),
    );
  }

  /** A listed member is not in the archive. */
  missing(name: string): void {
    this.#problem(
      { ...this.#byName.get(name)!, ok: false, problem: 'missing' },
      archiveError(this.label, `listed in ${MANIFEST_MEMBER} but missing from the archive`, 'MANIFEST', name),
    );
  }

  /**
   * Check the members met before the manifest against it: those completed, and `spooled` ones
   * (set aside, not yet completed). `unlistedToo`: also refuse completed ones it does not list.
   */
  earlier(spooled: Iterable<[string, { size: number; sha256: string }]>, unlistedToo: boolean): void {
    for (const [name, d] of this.#seen) {
      const exp = this.#byName.get(name);
      if (exp) this.#compare(exp, d);
    }
    for (const [name, s] of spooled) if (!this.#byName.has(name)) this.unlisted(name, s.size, s.sha256);
    if (unlistedToo) for (const [name, d] of this.#seen) if (!this.#byName.has(name)) this.unlisted(name, d.size, d.sha256);
  }

  /** At the end of the archive: everything against the manifest. `inOrder`: members must follow it. */
  final(inOrder: boolean): Manifest {
    const manifest = this.#manifest;
    if (!manifest) throw incompleteError(this.label);
    for (const d of manifest.members) if (!this.#seen.has(d.name) && !this.#problems.has(d.name)) this.missing(d.name);
    for (const [name, s] of this.#seen) if (!this.#byName.has(name) && !this.#problems.has(name)) this.unlisted(name, s.size, s.sha256);
    for (const d of manifest.members) {
      const s = this.#seen.get(d.name);
      if (s && !this.#problems.has(d.name)) this.#compare(d, s);
    }
    if (inOrder && this.#problems.size === 0) {
      const want = manifest.members.map((d) => d.name);
      const i = want.findIndex((n, k) => this.#seenOrder[k] !== n);
      if (i !== -1) throw archiveError(this.label, `out of order (${MANIFEST_MEMBER} lists it at position ${i})`, 'FORMAT', want[i]);
    }
    return manifest;
  }

  /** Per-member results (verifyArchive): every manifest member, then any unlisted ones. */
  results(): MemberCheck[] {
    const out: MemberCheck[] = [];
    for (const d of this.#manifest!.members) out.push(this.#problems.get(d.name) ?? { ...d, ok: true });
    for (const [name, p] of this.#problems) if (!this.#byName.has(name)) out.push(p);
    return out;
  }
}
