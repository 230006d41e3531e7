/**
 * manifest.json of a bpfcr tar before its members (ReaderOptions.manifestFirst). In a tar the
 * manifest is the last member, yet restore must check every map the archive describes against
 * everything else — and against the memory budget — before it creates the first one. A plain tar
 * file is walked header to header with pread, skipping the bodies; a compressed one is
 * decompressed once more and its bodies discarded.
 *
 * The walk is only a hint, so it stays small: anything it does not understand ends it without a
 * manifest, and the reader compares the manifest.json it meets at the end with the bytes found here
 * (and every member with that listing), so a tar this walk reads differently from tar-stream cannot
 * slip anything past the reader.
 */
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { MANIFEST_MEMBER, MAX_MANIFEST_BYTES } from './format.js';
import { BLOCK, numField, padded, paxSize, paxValue } from './tar.js';

/** Sequential bytes: a file read at offsets, or a stream. */
interface ByteSource {
  /** `n` bytes, fewer only at the end. */
  read(n: number): Promise<Buffer>;
  skip(n: number): Promise<void>;
}

export function fileBytes(fh: FileHandle): ByteSource {
  let pos = 0;
  return {
    async read(n) {
      const buf = Buffer.alloc(n);
      let got = 0;
      while (got < n) {
        const { bytesRead } = await fh.read(buf, got, n - got, pos + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      pos += got;
      return buf.subarray(0, got);
    },
    async skip(n) {
      pos += n;
    },
  };
}

export function streamBytes(s: Readable): ByteSource {
  const it = s[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  // unread bytes, joined only when a read spans chunks (one copy, not one per chunk)
  let parts: Buffer[] = [];
  let have = 0;
  let ended = false;
  const more = async (): Promise<boolean> => {
    if (ended) return false;
    const r = await it.next();
    if (r.done) {
      ended = true;
      return false;
    }
    parts.push(r.value);
    have += r.value.length;
    return true;
  };
  return {
    async read(n) {
      while (have < n && (await more())) {
        /* gather */
      }
      const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
      const out = all.subarray(0, n);
      const rest = all.subarray(out.length);
      parts = rest.length ? [rest] : [];
      have = rest.length;
      return out;
    },
    async skip(n) {
      let left = n;
      for (;;) {
        while (left > 0 && parts.length) {
          const p = parts[0]!;
          const k = Math.min(left, p.length);
          if (k === p.length) parts.shift();
          else parts[0] = p.subarray(k);
          have -= k;
          left -= k;
        }
        if (left === 0 || !(await more())) return;
      }
    },
  };
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString('utf8');
}

/** Extended headers carry names and sizes only: a larger one is not a bpfcr tar. */
const MAX_EXTENDED = 64 << 10;

/** The body of the tar's regular-file entry manifest.json (at most MAX_MANIFEST_BYTES), if found. */
export async function scanForManifest(src: ByteSource): Promise<Buffer | undefined> {
  let paxPath: string | undefined;
  let paxLen: number | undefined;
  let longName: string | undefined;
  for (;;) {
    const h = await src.read(BLOCK);
    if (h.length < BLOCK || h.every((x) => x === 0)) return undefined;
    const size = numField(h, 124, 12);
    if (size === undefined) return undefined;
    const type = h[156] === 0 ? '0' : String.fromCharCode(h[156]!);
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      if (size > MAX_EXTENDED) return undefined;
      const body = await src.read(size);
      if (body.length < size) return undefined;
      await src.skip(padded(size) - size);
      if (type === 'x') {
        paxPath = paxValue(body, 'path');
        paxLen = paxSize(body);
      } else if (type === 'L') longName = cString(body);
      continue;
    }
    let name = longName ?? paxPath;
    if (name === undefined) {
      const base = cString(h.subarray(0, 100));
      const prefix = h.subarray(257, 262).toString('latin1') === 'ustar' ? cString(h.subarray(345, 500)) : '';
      name = prefix ? `${prefix}/${base}` : base;
    }
    const bodySize = type === '5' ? 0 : (paxLen ?? size);
    paxPath = paxLen = longName = undefined;
    while (name.startsWith('./')) name = name.slice(2);
    if (name === MANIFEST_MEMBER && (type === '0' || type === '7')) {
      if (bodySize > MAX_MANIFEST_BYTES) return undefined;
      const body = await src.read(bodySize);
      return body.length === bodySize ? body : undefined;
    }
    await src.skip(padded(bodySize));
  }
}
