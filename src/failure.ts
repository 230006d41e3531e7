/**
 * How a failure reaches whoever runs bpfcr: one line, escaped (termSafe: a message may quote an
 * archive's or a container's names).
 *
 * An error bpfcr raised on purpose says what failed and names the thing (file, map, pid, member):
 * it is printed as it is. An error of the language or the runtime — TypeError, RangeError,
 * ReferenceError, SyntaxError (a JSON.parse nobody wrapped), … — is a bug in bpfcr, whatever input
 * provoked it: its message ("Cannot read properties of undefined (reading 'x')") means nothing to
 * an operator, so it is reported as an internal error, with how to get the stack trace. Wrappers
 * that add context keep the original as `cause`, and the whole chain is looked at.
 */
import { termSafe } from './archive/names.js';

const LANGUAGE_ERRORS = [TypeError, RangeError, ReferenceError, SyntaxError, EvalError, URIError];

/**
 * The bug behind `e`, if it is one: the language error in its `cause` chain, or a thrown value
 * that is no Error at all; undefined for a failure bpfcr reports on purpose.
 */
function bugIn(e: unknown): { name: string } | undefined {
  if (!(e instanceof Error)) return { name: typeof e };
  let x: unknown = e;
  for (let depth = 0; depth < 16 && x instanceof Error; depth++, x = x.cause) {
    if (LANGUAGE_ERRORS.some((C) => x instanceof C)) return x as Error;
  }
  return undefined;
}

export function isInternalError(e: unknown): boolean {
  return bugIn(e) !== undefined;
}

export const DEBUG_HINT = 'run again with BPFCR_DEBUG=1 for the stack trace, and report it';

/** "PREFIX: message" or "PREFIX: internal error: TypeError: … (a bug in bpfcr: …)", one line. */
export function failureLine(prefix: string, e: unknown): string {
  const raw = e instanceof Error ? e.message : String(e);
  const msg = termSafe(raw.trim().replace(/\s*\n\s*/g, ' / '));
  const bug = bugIn(e);
  if (!bug) return `${prefix}: ${msg}`;
  return `${prefix}: internal error: ${termSafe(bug.name)}: ${msg} (a bug in bpfcr: ${DEBUG_HINT})`;
}

/** The stack trace, when BPFCR_DEBUG asks for it. */
export function debugStack(e: unknown): string | undefined {
  return process.env['BPFCR_DEBUG'] && e instanceof Error && e.stack ? `${e.stack}\n` : undefined;
}
