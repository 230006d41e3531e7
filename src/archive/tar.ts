/**
 * Minimal POSIX ustar (+ pax for long names/sizes) encoder for regular-file entries, and the few
 * layout decoders the read side needs besides tar-stream (readahead.ts, tar-scan.ts).
 * Reading uses tar-stream; writing is done here. Measured against tar-stream's pack() in whole
 * `bpfcr dump` runs: the same archive, but loading tar-stream costs the dump 10–20 ms of CPU
 * (+3–4% wall on a 1M-entry map) on a path that otherwise never loads it.
 * Figures and decision: docs/archive-format.md, "Implementation notes".
 */

export const BLOCK = 512;
/** Two zero blocks end a tar archive. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);
const ZEROS: Buffer = Buffer.alloc(BLOCK);
const MAX_USTAR_SIZE = 0o77777777777; // 11 octal digits

function writeOctal(buf: Buffer, off: number, len: number, value: number): void {
  // len-1 octal digits followed by NUL
  const s = Math.trunc(value).toString(8);
  if (s.length > len - 1) throw new RangeError(`tar: value ${value} does not fit ${len - 1} octal digits`);
  buf.write(s.padStart(len - 1, '0'), off, len - 1, 'ascii');
  buf[off + len - 1] = 0;
}

function ustarBlock(
  name: string,
  prefix: string,
  size: number,
  mode: number,
  mtime: number,
  typeflag: string,
): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, 'utf8');
  writeOctal(b, 100, 8, mode);
  writeOctal(b, 108, 8, 0); // uid
  writeOctal(b, 116, 8, 0); // gid
  writeOctal(b, 124, 12, size);
  writeOctal(b, 136, 12, mtime);
  b.write(typeflag, 156, 1, 'ascii');
  b.write('ustar\0', 257, 6, 'ascii');
  b.write('00', 263, 2, 'ascii');
  writeOctal(b, 329, 8, 0); // devmajor
  writeOctal(b, 337, 8, 0); // devminor
  if (prefix) b.write(prefix, 345, 155, 'utf8');
  // checksum: sum of all bytes with the checksum field counted as spaces
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  writeOctal(b, 148, 7, sum); // 6 digits + NUL
  b[155] = 0x20;
  return b;
}

/** Split a name into ustar (prefix, name), or undefined if it does not fit. */
function splitUstar(name: string): [string, string] | undefined {
  if (Buffer.byteLength(name) !== name.length) return undefined; // non-ASCII → pax
  if (name.length <= 100) return ['', name];
  // prefix ≤ 155, name ≤ 100, split at a slash
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    if (i > 155) break;
    const rest = name.length - i - 1;
    if (rest <= 100 && rest > 0) return [name.slice(0, i), name.slice(i + 1)];
  }
  return undefined;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body);
  let digits = 1;
  while (String(bodyLen + digits).length !== digits) digits++;
  return `${bodyLen + digits}${body}`;
}

/** Bytes of zero padding after a body of `size` bytes. */
export function padding(size: number): Buffer | undefined {
  const r = size % BLOCK;
  return r === 0 ? undefined : ZEROS.subarray(0, BLOCK - r);
}

/**
 * Header block(s) for a regular file `name` of `size` bytes (mode 0600, uid/gid 0, mtime in seconds).
 * Uses a pax extended header when the name does not fit ustar or the size exceeds 8 GiB.
 */
export function fileHeader(name: string, size: number, mtime: number, mode = 0o600): Buffer {
  const split = splitUstar(name);
  const bigSize = size > MAX_USTAR_SIZE;
  if (split && !bigSize) return ustarBlock(split[1], split[0], size, mode, mtime, '0');
  let pax = '';
  if (!split) pax += paxRecord('path', name);
  if (bigSize) pax += paxRecord('size', String(size));
  const paxBuf = Buffer.from(pax, 'utf8');
  const base = name.slice(name.lastIndexOf('/') + 1);
  const paxName = `PaxHeaders/${base}`.slice(0, 100);
  const parts = [ustarBlock(paxName, '', paxBuf.length, mode, mtime, 'x'), paxBuf];
  const pad = padding(paxBuf.length);
  if (pad) parts.push(pad);
  // Fallback ustar header: truncated name (the pax path wins for every pax-aware reader).
  const fallback = split ?? ['', name.slice(0, 100)];
  parts.push(ustarBlock(fallback[1], fallback[0], bigSize ? 0 : size, mode, mtime, '0'));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// layout decoding (hints for readahead.ts and tar-scan.ts; tar-stream parses the real thing)

/** `n` rounded up to whole blocks. */
export function padded(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}

/** Numeric header field: octal text (NUL/space terminated) or GNU base-256. undefined if malformed. */
export function numField(b: Buffer, off: number, len: number): number | undefined {
  if (b[off]! & 0x80) {
    // base-256, positive only
    if (b[off] !== 0x80) return undefined;
    let v = 0;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + b[i]!;
    return Number.isSafeInteger(v) ? v : undefined;
  }
  let i = off;
  const end = off + len;
  while (i < end && b[i] === 0x20) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) return undefined;
    v = v * 8 + (c - 0x30);
    digits++;
  }
  return digits > 0 ? v : undefined;
}

/** Value of the `key` record of a pax extended header body, if any. */
export function paxValue(body: Buffer, key: string): string | undefined {
  const text = body.toString('utf8');
  const m = new RegExp(`(?:^|\\n)\\d+ ${key}=([^\\n]*)\\n`).exec(text);
  return m ? m[1] : undefined;
}

/** The `size` record of a pax extended header body, if any. */
export function paxSize(body: Buffer): number | undefined {
  const v = paxValue(body, 'size');
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}
