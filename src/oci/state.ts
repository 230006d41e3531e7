/**
 * OCI runtime-spec state (the JSON a runtime writes on a hook's stdin) and bpfcr's annotations.
 *
 * Pure parsing, no imports beyond the language: hook-main.ts loads this on every container start,
 * so it must stay cheap. Every error is one line that says what is wrong and where.
 */

/** runtime-spec "State" (config.md / runtime.md#state). */
export interface OciState {
  ociVersion: string;
  id: string;
  status: string;
  /** absent at poststop (podman runs it after the container's processes are gone) */
  pid?: number;
  bundle: string;
  annotations: Record<string, string>;
}

export class StateError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'StateError';
  }
}

/** Largest state document accepted (annotations included). */
export const MAX_STATE_BYTES = 1 << 20;

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/** Parse the state JSON a runtime passes on stdin. Throws StateError (one line). */
export function parseState(text: string): OciState {
  if (text.length > MAX_STATE_BYTES) throw new StateError(`OCI state on stdin: larger than ${MAX_STATE_BYTES} bytes`);
  if (text.trim() === '') throw new StateError('OCI state on stdin: empty (a hook expects the runtime-spec state JSON on stdin)');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new StateError(`OCI state on stdin: not valid JSON: ${oneLine((e as Error).message)}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new StateError(`OCI state on stdin: expected a JSON object, got ${Array.isArray(raw) ? 'an array' : raw === null ? 'null' : typeof raw}`);
  }
  const o = raw as Record<string, unknown>;
  const str = (k: string, required: boolean): string | undefined => {
    const v = o[k];
    if (v === undefined && !required) return undefined;
    if (typeof v !== 'string' || v === '') throw new StateError(`OCI state on stdin: "${k}" must be a non-empty string, got ${JSON.stringify(v) ?? 'nothing'}`);
    return v;
  };
  const ociVersion = str('ociVersion', true)!;
  const id = str('id', true)!;
  const status = str('status', true)!;
  const bundle = str('bundle', true)!;
  if (!bundle.startsWith('/')) throw new StateError(`OCI state on stdin: "bundle" must be an absolute path, got ${JSON.stringify(bundle)}`);
  let pid: number | undefined;
  if (o['pid'] !== undefined && o['pid'] !== 0) {
    const p = o['pid'];
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 0) throw new StateError(`OCI state on stdin: "pid" must be a positive integer, got ${JSON.stringify(p)}`);
    pid = p;
  }
  const annotations: Record<string, string> = {};
  const a = o['annotations'];
  if (a !== undefined && a !== null) {
    if (typeof a !== 'object' || Array.isArray(a)) throw new StateError(`OCI state on stdin: "annotations" must be an object of strings, got ${Array.isArray(a) ? 'an array' : typeof a}`);
    for (const [k, v] of Object.entries(a as Record<string, unknown>)) {
      if (typeof v !== 'string') throw new StateError(`OCI state on stdin: annotation "${k}" must be a string, got ${JSON.stringify(v)}`);
      annotations[k] = v;
    }
  }
  return { ociVersion, id, status, ...(pid !== undefined ? { pid } : {}), bundle, annotations };
}

// ---------------------------------------------------------------------------------------------
// Annotations

export const ANNOTATION_PREFIX = 'io.bpfcr.';
export const A_PINS = 'io.bpfcr.pins';
export const A_SAVE = 'io.bpfcr.save-on-stop';
export const A_RESTORE = 'io.bpfcr.restore-from';
export const A_ON_EXISTING = 'io.bpfcr.on-existing';
/** Annotations this part knows; others under io.bpfcr. only draw a warning (other parts may use them). */
export const KNOWN_ANNOTATIONS = [A_PINS, A_SAVE, A_RESTORE, A_ON_EXISTING] as const;

/** Host directory every save-on-stop / restore-from path must be under. */
export const STATE_DIR = '/var/lib/bpfcr/state';

/**
 * State files of bpfcr before issue 8 (and pins files of checkpoints taken then): a tar whose first
 * member was bpfcr-oci.json, followed by the archive under bpfcr/. No longer read by the hooks;
 * the archive reader reports such a file as "not a bpfcr archive: first member is bpfcr-oci.json".
 */
export const LEGACY_SIDECAR = 'bpfcr-oci.json';
export function isLegacyStateFile(e: unknown): boolean {
  return /not a bpfcr archive: first member is bpfcr-oci\.json,/.test(String((e as Error | undefined)?.message ?? ''));
}

export type OnExisting = 'replace' | 'keep';

export interface BpfcrAnnotations {
  /** container paths (absolute, normalized, deduplicated, in annotation order) */
  pins: string[];
  /** host path under STATE_DIR */
  saveOnStop?: string;
  restoreFrom?: string;
  /** what prestart does with a pin that already exists on the host (default replace) */
  onExisting: OnExisting;
  /** io.bpfcr.* keys this part does not know (warned about, not fatal) */
  unknown: string[];
}

/** True when any annotation key starts with io.bpfcr. (the opt-in). */
export function hasBpfcrAnnotation(annotations: Record<string, string>): boolean {
  for (const k in annotations) if (k.startsWith(ANNOTATION_PREFIX)) return true;
  return false;
}

const MAX_PATH = 4096;
const COMPONENT_MAX = 255;

/**
 * Problem with an absolute path meant literally (no ".", "..", empty components, trailing "/",
 * control characters), or undefined when it is fine.
 */
export function absolutePathProblem(p: string): string | undefined {
  if (!p.startsWith('/')) return 'not an absolute path';
  if (p.length > MAX_PATH) return `longer than ${MAX_PATH} characters`;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(p)) return 'contains control characters';
  if (p === '/') return 'is the root directory';
  const parts = p.slice(1).split('/');
  for (const c of parts) {
    if (c === '') return 'has an empty component ("//" or a trailing "/")';
    if (c === '.' || c === '..') return `has a "${c}" component`;
    if (c.length > COMPONENT_MAX) return `has a component longer than ${COMPONENT_MAX} characters`;
  }
  return undefined;
}

/** Components of a path absolutePathProblem() accepted. */
export function components(p: string): string[] {
  return p.slice(1).split('/');
}

/** `p` equals `root` or lies under it (component-wise, not string prefix). */
export function isUnder(p: string, root: string): boolean {
  return p === root || p.startsWith(root.endsWith('/') ? root : root + '/');
}

/** Relative part of `p` under `root` ('' when equal). Caller checked isUnder(). */
export function relativeTo(p: string, root: string): string {
  if (p === root) return '';
  return p.slice(root === '/' ? 1 : root.length + 1);
}

const STATE_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
const STATE_SUFFIXES = ['.tar', '.tar.gz', '.tgz'];

/**
 * Validate a save-on-stop / restore-from value: a host path under STATE_DIR, every component a
 * plain name (letters, digits, ._- ; not starting with a dot), ending in .tar, .tar.gz or .tgz.
 * The annotation comes from the container's definition, which may be untrusted: anything that
 * could reach outside the state directory is refused here, and the file is later opened with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) below the state directory.
 */
export function statePathProblem(p: string): string | undefined {
  const abs = absolutePathProblem(p);
  if (abs) return abs;
  if (!isUnder(p, STATE_DIR) || p === STATE_DIR) return `must be a file under ${STATE_DIR}/`;
  const rel = relativeTo(p, STATE_DIR).split('/');
  for (const c of rel) {
    if (!STATE_NAME_RE.test(c)) return `component ${JSON.stringify(c)} must be letters, digits, ".", "_" or "-" and not start with "."`;
  }
  if (!STATE_SUFFIXES.some((s) => p.endsWith(s))) return `must end in ${STATE_SUFFIXES.join(', ')}`;
  return undefined;
}

export class AnnotationError extends Error {
  constructor(key: string, value: string, msg: string) {
    super(`annotation ${key}=${JSON.stringify(value)}: ${msg}`);
    this.name = 'AnnotationError';
  }
}

/** Parse and validate the io.bpfcr.* annotations. Throws AnnotationError (one line). */
export function parseAnnotations(annotations: Record<string, string>): BpfcrAnnotations {
  const out: BpfcrAnnotations = { pins: [], onExisting: 'replace', unknown: [] };
  for (const [k, v] of Object.entries(annotations)) {
    if (!k.startsWith(ANNOTATION_PREFIX)) continue;
    switch (k) {
      case A_PINS: {
        const seen = new Set<string>();
        const items = v.split(',').map((s) => s.trim());
        if (items.every((s) => s === '')) throw new AnnotationError(k, v, 'lists no path (expected /sys/fs/bpf/app[,...])');
        for (const item of items) {
          if (item === '') continue;
          const problem = absolutePathProblem(item);
          if (problem) throw new AnnotationError(k, v, `pin path ${JSON.stringify(item)} ${problem}`);
          if (!seen.has(item)) {
            seen.add(item);
            out.pins.push(item);
          }
        }
        break;
      }
      case A_SAVE:
      case A_RESTORE: {
        const problem = statePathProblem(v);
        if (problem) throw new AnnotationError(k, v, problem);
        if (k === A_SAVE) out.saveOnStop = v;
        else out.restoreFrom = v;
        break;
      }
      case A_ON_EXISTING:
        if (v !== 'replace' && v !== 'keep') throw new AnnotationError(k, v, 'must be "replace" (default) or "keep"');
        out.onExisting = v;
        break;
      default:
        out.unknown.push(k);
    }
  }
  if ((out.saveOnStop || out.restoreFrom) && out.pins.length === 0) {
    const key = out.saveOnStop ? A_SAVE : A_RESTORE;
    throw new AnnotationError(key, (out.saveOnStop ?? out.restoreFrom)!, `needs ${A_PINS}=/container/pin/path[,...] to say which pins to carry`);
  }
  return out;
}
