/**
 * bpfcr archive format: constants, types, header/manifest validation.
 *
 * See docs/archive-format.md for the specification.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';

export const ARCHIVE_FORMAT = 'bpfcr-archive';
/**
 * Major format version written by this implementation; readers refuse larger values and read
 * every version from 1 (docs/archive-format.md section 9). Version 2 added the manifest's own
 * checksum (MANIFEST_DIGEST_KEY): in version 1 a changed byte inside manifest.json went unnoticed.
 */
export const ARCHIVE_VERSION = 2;

/**
 * The manifest's checksum of itself (version ≥ 2): the SHA-256 of the manifest's canonical JSON
 * form without this field (canonicalJson). Reserved: the engine cannot set it.
 */
export const MANIFEST_DIGEST_KEY = 'manifestSha256';

/**
 * Most possible CPUs a header may claim: Linux's NR_CPUS ceiling (8192, x86-64 MAXSMP). Per-CPU
 * data is laid out per possible CPU, so the count sizes every per-CPU stride the engine computes.
 */
export const MAX_POSSIBLE_CPUS = 8192;

/** Name of the first member (the header). */
export const HEADER_MEMBER = 'bpfcr-archive.json';
/** Name of the last member (the manifest). */
export const MANIFEST_MEMBER = 'manifest.json';

/** Largest header member a reader accepts. */
export const MAX_HEADER_BYTES = 1 << 20;
/** Largest manifest member a reader accepts. */
export const MAX_MANIFEST_BYTES = 64 << 20;

export interface ArchiveHeader {
  format: 'bpfcr-archive';
  /** Major format version (integer). */
  version: number;
  tool: { name: string; version: string };
  /** ISO 8601 timestamp of the dump. */
  created: string;
  /** `uname -r` of the dumping host. */
  kernel: string;
  hostname: string;
  /** Number of possible CPUs on the dumping host (size of per-CPU map values). */
  possibleCpus: number;
}

export interface MemberDigest {
  name: string;
  size: number;
  /** Lower-case hex SHA-256 of the member body. */
  sha256: string;
}

export interface Manifest extends ArchiveHeader {
  /** Every member except manifest.json itself, in archive order (header first). */
  members: MemberDigest[];
  [k: string]: unknown;
}

export type ArchiveErrorCode =
  | 'INCOMPLETE' // truncated / interrupted archive, no manifest
  | 'CHECKSUM' // sha256 or size mismatch
  | 'MANIFEST' // manifest does not match the archive (unlisted/missing members, header fields)
  | 'VERSION' // unsupported format version
  | 'FORMAT' // not a bpfcr archive, malformed JSON/tar, bad member names/types
  | 'UNSAFE' // symlink, hard link, device, path traversal
  | 'EXISTS' // output exists and overwrite was not requested
  | 'USAGE' // API misuse (bad member name, duplicate, writer closed, ...)
  | 'IO' // I/O or subprocess failure
  | 'TOOL'; // external tool (zstd) missing

export interface ArchiveErrorOptions {
  code?: ArchiveErrorCode;
  archive?: string;
  member?: string;
  cause?: unknown;
}

/** Every error thrown by the archive layer. Messages are one line and name the archive and member. */
export class ArchiveError extends Error {
  readonly code: ArchiveErrorCode;
  readonly archive: string | undefined;
  readonly member: string | undefined;

  constructor(message: string, opts: ArchiveErrorOptions = {}) {
    super(oneLine(message), opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ArchiveError';
    this.code = opts.code ?? 'FORMAT';
    this.archive = opts.archive;
    this.member = opts.member;
  }
}

/** Collapse whitespace runs containing newlines so messages stay on one line. */
export function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return oneLine(e.message);
  return oneLine(String(e));
}

/** Keys every header has; the manifest repeats them with equal values. */
export const HEADER_KEYS = ['format', 'version', 'tool', 'created', 'kernel', 'hostname', 'possibleCpus'] as const;

/**
 * Build a header: `tool` and `possibleCpus` are required (the CPU count is the engine's to know:
 * src/maps/cpus.ts); format/version/created/kernel/hostname are filled in (created = now, kernel =
 * os.release(), hostname = os.hostname()) unless given.
 */
export function makeHeader(
  partial: Pick<ArchiveHeader, 'tool' | 'possibleCpus'> & Partial<Omit<ArchiveHeader, 'format' | 'version'>>,
): ArchiveHeader {
  const header: ArchiveHeader = {
    format: ARCHIVE_FORMAT,
    version: ARCHIVE_VERSION,
    tool: { name: partial.tool.name, version: partial.tool.version },
    created: partial.created ?? new Date().toISOString(),
    kernel: partial.kernel ?? os.release(),
    hostname: partial.hostname ?? os.hostname(),
    possibleCpus: partial.possibleCpus,
  };
  const problem = headerProblem(header);
  if (problem) throw new ArchiveError(`invalid archive header: ${problem}`, { code: 'USAGE' });
  return header;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Structural problem with a header object (format/version excluded: see checkFormatVersion), or
 * undefined if it is fine. Unknown extra fields are allowed (forward compatibility).
 */
export function headerProblem(h: unknown): string | undefined {
  if (!isPlainObject(h)) return 'not a JSON object';
  if (h.format !== ARCHIVE_FORMAT) return `format is ${JSON.stringify(h.format)}, expected "${ARCHIVE_FORMAT}"`;
  if (typeof h.version !== 'number' || !Number.isSafeInteger(h.version) || h.version < 1)
    return `version ${JSON.stringify(h.version)} is not a positive integer`;
  const tool = h.tool;
  if (!isPlainObject(tool) || typeof tool.name !== 'string' || typeof tool.version !== 'string')
    return 'tool must be {name: string, version: string}';
  if (typeof h.created !== 'string' || Number.isNaN(Date.parse(h.created)))
    return `created ${JSON.stringify(h.created)} is not an ISO timestamp`;
  if (typeof h.kernel !== 'string') return 'kernel must be a string';
  if (typeof h.hostname !== 'string') return 'hostname must be a string';
  if (typeof h.possibleCpus !== 'number' || !Number.isSafeInteger(h.possibleCpus) || h.possibleCpus < 1)
    return `possibleCpus ${JSON.stringify(h.possibleCpus)} is not a positive integer`;
  if (h.possibleCpus > MAX_POSSIBLE_CPUS)
    return `possibleCpus ${h.possibleCpus} is more than Linux supports (${MAX_POSSIBLE_CPUS})`;
  return undefined;
}

/** Parse + validate the header member. `label` is the archive label used in messages. */
export function parseHeader(buf: Buffer, label: string): ArchiveHeader {
  const where = `archive ${label}: member ${HEADER_MEMBER}`;
  let h: unknown;
  try {
    h = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw new ArchiveError(`${where}: invalid JSON (${errorMessage(e)})`, {
      code: 'FORMAT',
      archive: label,
      member: HEADER_MEMBER,
    });
  }
  if (!isPlainObject(h) || h.format !== ARCHIVE_FORMAT) {
    const got = isPlainObject(h) ? JSON.stringify(h.format) : 'not an object';
    throw new ArchiveError(`archive ${label} is not a bpfcr archive (${HEADER_MEMBER} format is ${got})`, {
      code: 'FORMAT',
      archive: label,
      member: HEADER_MEMBER,
    });
  }
  if (typeof h.version === 'number' && Number.isSafeInteger(h.version) && h.version > ARCHIVE_VERSION) {
    throw new ArchiveError(
      `archive ${label}: format version ${h.version} is not supported (this bpfcr reads version ${ARCHIVE_VERSION}; upgrade bpfcr)`,
      { code: 'VERSION', archive: label, member: HEADER_MEMBER },
    );
  }
  const problem = headerProblem(h);
  if (problem)
    throw new ArchiveError(`${where}: ${problem}`, { code: 'FORMAT', archive: label, member: HEADER_MEMBER });
  return h as unknown as ArchiveHeader;
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => deepEqual(x, bb[i]));
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const ak = Object.keys(ao);
  if (ak.length !== Object.keys(bo).length) return false;
  return ak.every((k) => Object.prototype.hasOwnProperty.call(bo, k) && deepEqual(ao[k], bo[k]));
}

const SHA256_RE = /^[0-9a-f]{64}$/;

/**
 * A JSON value's canonical text, as RFC 8785 (JCS) defines it for what JSON.parse returns: object
 * keys sorted by UTF-16 code units, no whitespace, numbers and strings as JSON.stringify writes
 * them. Two texts that parse to the same value have the same canonical form, so a checksum over it
 * does not depend on formatting (and can be recomputed by other tools: `jq -cS` for bpfcr's
 * manifests, whose strings are ASCII and numbers integers).
 */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}

/** The manifest's checksum of itself: SHA-256 of its canonical form without MANIFEST_DIGEST_KEY. */
export function manifestDigest(m: Record<string, unknown>): string {
  const { [MANIFEST_DIGEST_KEY]: _self, ...rest } = m;
  return createHash('sha256').update(canonicalJson(rest)).digest('hex');
}

/**
 * Parse + validate the manifest against the header. Checks: JSON object, every header field equal,
 * members is an array of {name, size, sha256} with valid unique names, header listed, manifest not listed.
 */
export function parseManifest(
  buf: Buffer,
  header: ArchiveHeader,
  label: string,
  nameProblem: (name: string) => string | undefined,
): Manifest {
  const where = `archive ${label}: member ${MANIFEST_MEMBER}`;
  const fail = (msg: string, code: ArchiveErrorCode = 'MANIFEST'): never => {
    throw new ArchiveError(`${where}: ${msg}`, { code, archive: label, member: MANIFEST_MEMBER });
  };
  let m: unknown;
  try {
    m = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    return fail(`invalid JSON (${errorMessage(e)})`, 'FORMAT');
  }
  if (!isPlainObject(m)) return fail('not a JSON object', 'FORMAT');
  // First its own checksum (version ≥ 2; version 1 had none): a corrupted manifest is reported as
  // such, not as whichever member or field it happens to misdescribe.
  const own = m[MANIFEST_DIGEST_KEY];
  if (own !== undefined || header.version >= 2) {
    if (typeof own !== 'string' || !SHA256_RE.test(own)) return fail(`${MANIFEST_DIGEST_KEY} is missing or not 64 lower-case hex digits (required from format version 2)`, 'CHECKSUM');
    if (own !== manifestDigest(m)) return fail(`checksum mismatch: its ${MANIFEST_DIGEST_KEY} does not match its content (corrupted or edited manifest)`, 'CHECKSUM');
  }
  for (const k of Object.keys(header)) {
    if (!deepEqual((header as unknown as Record<string, unknown>)[k], m[k]))
      fail(`field ${k} differs from ${HEADER_MEMBER} (${JSON.stringify(m[k])} vs ${JSON.stringify((header as unknown as Record<string, unknown>)[k])})`);
  }
  const members = m.members;
  if (!Array.isArray(members)) return fail('members is not an array', 'FORMAT');
  const seen = new Set<string>();
  members.forEach((d: unknown, i: number) => {
    if (!isPlainObject(d)) fail(`members[${i}] is not an object`, 'FORMAT');
    const e = d as Record<string, unknown>;
    if (typeof e.name !== 'string') fail(`members[${i}].name is not a string`, 'FORMAT');
    const name = e.name as string;
    const p = nameProblem(name);
    if (p) fail(`members[${i}] ${JSON.stringify(name)}: ${p}`, 'FORMAT');
    if (name === MANIFEST_MEMBER) fail(`lists ${MANIFEST_MEMBER} itself`, 'FORMAT');
    if (seen.has(name)) fail(`lists member ${name} twice`, 'FORMAT');
    seen.add(name);
    if (typeof e.size !== 'number' || !Number.isSafeInteger(e.size) || e.size < 0)
      fail(`member ${name}: size ${JSON.stringify(e.size)} is not a non-negative integer`, 'FORMAT');
    if (typeof e.sha256 !== 'string' || !SHA256_RE.test(e.sha256))
      fail(`member ${name}: sha256 is not 64 lower-case hex digits`, 'FORMAT');
  });
  if (!seen.has(HEADER_MEMBER)) fail(`does not list ${HEADER_MEMBER}`, 'FORMAT');
  return m as unknown as Manifest;
}
