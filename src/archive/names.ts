/** Member-name rules shared by writer and reader (docs/archive-format.md, "Member names"). */
import { HEADER_MEMBER, MANIFEST_MEMBER } from './format.js';

export const MEMBER_NAME_RE = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
export const MAX_MEMBER_NAME = 200;

/** Why `name` is not a valid member name, or undefined if it is valid. */
export function memberNameProblem(name: string): string | undefined {
  if (typeof name !== 'string') return 'name is not a string';
  if (name.length === 0) return 'empty name';
  if (name.includes('\0')) return 'name contains NUL';
  if (name.includes('\\')) return 'name contains a backslash';
  if (name.startsWith('/')) return 'absolute name';
  if (name.length > MAX_MEMBER_NAME) return `name longer than ${MAX_MEMBER_NAME} characters`;
  for (const c of name.split('/')) {
    if (c === '..') return "name contains a '..' component";
    if (c === '.') return "name contains a '.' component";
  }
  if (!MEMBER_NAME_RE.test(name)) return 'name must match [A-Za-z0-9._-]+ components separated by single slashes';
  return undefined;
}

/** Names the archive writes itself; addMember refuses them. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([HEADER_MEMBER, MANIFEST_MEMBER]);

/**
 * Tracks names in an archive so that no name is used twice and no name is both a file and a
 * directory (`maps` and `maps/0001/meta.json`), which the directory form could not represent.
 */
export class NameSet {
  readonly #files = new Set<string>();
  readonly #dirs = new Set<string>();

  has(name: string): boolean {
    return this.#files.has(name);
  }

  /** Problem adding `name` (duplicate or file/directory clash), or undefined. */
  conflict(name: string): string | undefined {
    if (this.#files.has(name)) return 'duplicate member name';
    if (this.#dirs.has(name)) return 'name is already used as a directory by another member';
    let i = name.indexOf('/');
    while (i !== -1) {
      const dir = name.slice(0, i);
      if (this.#files.has(dir)) return `parent ${dir} is already a member (file)`;
      i = name.indexOf('/', i + 1);
    }
    return undefined;
  }

  add(name: string): void {
    this.#files.add(name);
    let i = name.indexOf('/');
    while (i !== -1) {
      this.#dirs.add(name.slice(0, i));
      i = name.indexOf('/', i + 1);
    }
  }
}

/**
 * A string as it may reach a terminal or a log line, whoever wrote it (an archive, a checkpoint
 * record, a container's pin names, an error message quoting any of them): C0/C1 control characters
 * and DEL as \xNN, line/paragraph separators and bidirectional overrides as \uNNNN, a backslash
 * doubled (so that an escape is never ambiguous). The one escaping function of every printer:
 * a name that could move the cursor, clear the screen or fake a second line never gets through.
 */
export function termSafe(s: string): string {
  return s.replace(/[\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    if (c === '\\') return '\\\\';
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** A member name in a one-line message: termSafe (the archive readers' name for it). */
export const printable = termSafe;
