/**
 * Map keys and values decoded by their BTF types, the way `bpftool map dump -j` prints them in its
 * `formatted` field (bpftool's btf_dumper.c), so that jq filters written against bpftool work on
 * `bpfcr show --json` unchanged:
 *
 *   ints        numbers with their signedness (8/16/32/64 bits); 128-bit ints and every bitfield as
 *               a "0x…" hex string (bpftool does not sign-extend bitfields either); CHAR a
 *               one-character string; BOOL true/false
 *   enums       the enumerator's name, the number when no enumerator matches
 *   structs     objects by member name (unions: every member), arrays as arrays, a char array
 *               holding a NUL-terminated printable string as that string
 *   typedef, const, volatile, restrict, type_tag: the type they name; pointers as numbers;
 *   VAR {name: value}; DATASEC {section: [vars…]} (libbpf's .bss/.data/.rodata maps)
 *
 * Two deliberate differences: FLOAT is decoded as a number (bpftool prints "(unsupported-kind)"),
 * and an enum whose BTF says unsigned is compared and printed unsigned (bpftool reads every enum
 * as signed, so an unmatched 0xffffffff prints -1 there, 4294967295 here).
 *
 * The BTF and the bytes come from an archive: untrusted. Every read is bounds-checked, type chains
 * are depth-limited, and every failure is a BtfDecodeError naming the type, never a RangeError.
 */
import { BtfKind, type Btf, type BtfTypeDetail } from '../programs/btf.js';

/** An object whose member order (and repeated anonymous "" members) is kept as BTF has it. */
export class Fields {
  constructor(readonly entries: [string, Formatted][]) {}
}

/** A decoded value: JSON-like, with bigint for integers beyond 2^53. */
export type Formatted = boolean | number | bigint | string | Formatted[] | Fields;

export class BtfDecodeError extends Error {}

const INT_SIGNED = 1;
const INT_CHAR = 2;
const INT_BOOL = 4;
/** Deeper type chains than this are a loop in hostile BTF, not a real program's types. */
const MAX_DEPTH = 64;
/** Elements decoded per array at most: a value is at most a few MiB, but elements may be zero-sized. */
const MAX_ELEMS = 1 << 20;

const MODIFIERS: ReadonlySet<number> = new Set([BtfKind.TYPEDEF, BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT, BtfKind.TYPE_TAG]);

/** A bigint as a number when that loses nothing. */
function num(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

export class BtfDumper {
  constructor(private readonly btf: Btf) {}

  #type(id: number): BtfTypeDetail {
    let t: BtfTypeDetail | undefined;
    try {
      t = this.btf.detail(id);
    } catch (e) {
      // a truncated or garbled type section: the parser's own message, as ours
      throw new BtfDecodeError(`type ${id}: ${(e as Error).message}`);
    }
    if (!t) throw new BtfDecodeError(`type ${id} does not exist`);
    return t;
  }

  /** Size in bytes of a value of type `id` (libbpf's btf__resolve_size). */
  size(id: number, depth = 0): number {
    if (depth > MAX_DEPTH) throw new BtfDecodeError(`type ${id}: type chain deeper than ${MAX_DEPTH}`);
    const t = this.#type(id);
    switch (t.kindId) {
      case BtfKind.INT: case BtfKind.STRUCT: case BtfKind.UNION: case BtfKind.ENUM: case BtfKind.ENUM64:
      case BtfKind.DATASEC: case BtfKind.FLOAT:
        return t.size;
      case BtfKind.PTR: return 8;
      case BtfKind.VAR: return this.size(t.type, depth + 1);
      case BtfKind.ARRAY: {
        const n = t.array!.nelems * this.size(t.array!.type, depth + 1);
        if (n > 0xffffffff) throw new BtfDecodeError(`type ${id}: array of ${n} bytes`);
        return n;
      }
      default:
        if (MODIFIERS.has(t.kindId)) return this.size(t.type, depth + 1);
        throw new BtfDecodeError(`type ${id} (${t.kind}) has no size`);
    }
  }

  /** The value of type `id` held in `data` (which must be the type's size). */
  format(id: number, data: Buffer): Formatted {
    return this.#do(id, 0, data, 0, 0);
  }

  #need(t: BtfTypeDetail, data: Buffer, off: number, len: number): void {
    if (off < 0 || off + len > data.length) {
      throw new BtfDecodeError(`type ${t.id} (${t.kind}${t.name ? ` ${t.name}` : ''}) at byte ${off} needs ${len} byte(s), the value has ${data.length}`);
    }
  }

  /** Type `id` at byte `off` of `data`, starting `bitOffset` (0–7) bits in (bpftool's btf_dumper_do_type). */
  #do(id: number, bitOffset: number, data: Buffer, off: number, depth: number): Formatted {
    if (depth > MAX_DEPTH) throw new BtfDecodeError(`type ${id}: type chain deeper than ${MAX_DEPTH}`);
    const t = this.#type(id);
    switch (t.kindId) {
      case BtfKind.INT: return this.#int(t, bitOffset, data, off);
      case BtfKind.STRUCT: case BtfKind.UNION: return this.#struct(t, data, off, depth);
      case BtfKind.ARRAY: return this.#array(t, data, off, depth);
      case BtfKind.ENUM: case BtfKind.ENUM64: return this.#enum(t, data, off);
      case BtfKind.PTR:
        this.#need(t, data, off, 8);
        return num(data.readBigUInt64LE(off));
      case BtfKind.FLOAT:
        this.#need(t, data, off, t.size);
        if (t.size === 4) return data.readFloatLE(off);
        if (t.size === 8) return data.readDoubleLE(off);
        return hexOf(data.subarray(off, off + t.size));
      case BtfKind.VAR:
        return new Fields([[t.name, this.#do(t.type, bitOffset, data, off, depth + 1)]]);
      case BtfKind.DATASEC: {
        const vars = t.vars!.map((v) => this.#do(v.type, 0, data, off + v.offset, depth + 1));
        return new Fields([[t.name, vars]]);
      }
      default:
        if (MODIFIERS.has(t.kindId)) return this.#do(t.type, bitOffset, data, off, depth + 1);
        throw new BtfDecodeError(`type ${id} (${t.kind}) cannot hold a map key or value`);
    }
  }

  #int(t: BtfTypeDetail, bitOffset: number, data: Buffer, off: number): Formatted {
    const { encoding, offset, bits } = t.int!;
    // bitfields (an offset, or a width that is no whole number of bytes) print as hex, as bpftool does
    if (bitOffset || offset || bits % 8 || ![8, 16, 32, 64, 128].includes(bits)) {
      const total = bitOffset + offset;
      return this.#bitfield(t, bits, total & 7, data, off + (total >> 3));
    }
    this.#need(t, data, off, bits / 8);
    if (bits === 128) return '0x' + ((data.readBigUInt64LE(off + 8) << 64n) | data.readBigUInt64LE(off)).toString(16);
    if (encoding & INT_BOOL) return data[off] !== 0;
    if (encoding & INT_CHAR) return String.fromCharCode(data[off]!);
    const signed = (encoding & INT_SIGNED) !== 0;
    switch (bits) {
      case 8: return signed ? data.readInt8(off) : data.readUInt8(off);
      case 16: return signed ? data.readInt16LE(off) : data.readUInt16LE(off);
      case 32: return signed ? data.readInt32LE(off) : data.readUInt32LE(off);
      default: return num(signed ? data.readBigInt64LE(off) : data.readBigUInt64LE(off));
    }
  }

  /** `bits` bits starting `bitOffset` (0–7) bits into byte `off`: unsigned, as "0x…" (bpftool's btf_dumper_bitfield). */
  #bitfield(t: BtfTypeDetail, bits: number, bitOffset: number, data: Buffer, off: number): string {
    if (bits === 0 || bits > 128) throw new BtfDecodeError(`type ${t.id} (${t.kind}): bitfield of ${bits} bits`);
    const bytes = (bitOffset + bits + 7) >> 3;
    this.#need(t, data, off, bytes);
    let v = 0n;
    for (let i = bytes - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[off + i]!);
    return '0x' + ((v >> BigInt(bitOffset)) & ((1n << BigInt(bits)) - 1n)).toString(16);
  }

  #struct(t: BtfTypeDetail, data: Buffer, off: number, depth: number): Fields {
    this.#need(t, data, off, t.size);
    return new Fields(t.members!.map((m): [string, Formatted] => {
      const at = off + (m.bitOffset >> 3);
      return [m.name, m.bitSize
        ? this.#bitfield(t, m.bitSize, m.bitOffset & 7, data, at)
        : this.#do(m.type, m.bitOffset & 7, data, at, depth + 1)];
    }));
  }

  #array(t: BtfTypeDetail, data: Buffer, off: number, depth: number): Formatted {
    const { type, nelems } = t.array!;
    if (nelems > MAX_ELEMS) throw new BtfDecodeError(`type ${t.id} (array): ${nelems} elements`);
    const str = this.#string(type, nelems, data, off, depth);
    if (str !== undefined) return str;
    const size = this.size(type, depth + 1);
    this.#need(t, data, off, size * nelems);
    const out: Formatted[] = [];
    for (let i = 0; i < nelems; i++) out.push(this.#do(type, 0, data, off + i * size, depth + 1));
    return out;
  }

  /**
   * A char array (elements char or 1-byte CHAR ints, through const/volatile but not typedefs) whose
   * bytes are printable up to a NUL: that string (bpftool's is_str_array); else undefined.
   */
  #string(elemId: number, nelems: number, data: Buffer, off: number, depth: number): string | undefined {
    if (nelems === 0) return undefined;
    let e = this.#type(elemId);
    for (let d = depth; e.kindId !== BtfKind.TYPEDEF && MODIFIERS.has(e.kindId); d++) {
      if (d > MAX_DEPTH) return undefined;
      e = this.#type(e.type);
    }
    if (e.kindId !== BtfKind.INT || e.size !== 1 || (!(e.int!.encoding & INT_CHAR) && e.name !== 'char')) return undefined;
    for (let i = 0; i < nelems && off + i < data.length; i++) {
      const c = data[off + i]!;
      if (c === 0) return data.toString('latin1', off, off + i);
      if (c <= 0x1f || c >= 0x7f) return undefined;
    }
    return undefined;
  }

  #enum(t: BtfTypeDetail, data: Buffer, off: number): Formatted {
    if (![1, 2, 4, 8].includes(t.size)) throw new BtfDecodeError(`type ${t.id} (${t.kind}): size ${t.size}`);
    this.#need(t, data, off, t.size);
    let v = 0n;
    for (let i = t.size - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[off + i]!);
    if (t.kflag) v = BigInt.asIntN(t.size * 8, v);
    const hit = t.enumerators!.find((e) => (t.kflag ? e.value : BigInt.asUintN(t.size * 8, e.value)) === v);
    return hit ? hit.name : num(v);
  }
}

/** JSON text that toJson() inserts as it is (hex arrays, rendered once from a table). */
export class RawJson {
  constructor(readonly text: string) {}
  toJSON(): unknown {
    return JSON.parse(this.text);
  }
}

const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const HEX_JSON = HEX2.map((h) => `"0x${h}"`);

/** Bytes as bpftool's JSON prints them: ["0x01","0x00",…]. */
export function hexBytes(b: Buffer): RawJson {
  const parts = new Array<string>(b.length);
  for (let i = 0; i < b.length; i++) parts[i] = HEX_JSON[b[i]!]!;
  return new RawJson(`[${parts.join(',')}]`);
}

/** Bytes as bpftool's plain output prints them: "01 00 00 00". */
export function hexText(b: Buffer): string {
  const parts = new Array<string>(b.length);
  for (let i = 0; i < b.length; i++) parts[i] = HEX2[b[i]!]!;
  return parts.join(' ');
}

function hexOf(b: Buffer): string {
  return '0x' + Buffer.from(b).reverse().toString('hex');
}

/**
 * JSON text of a Formatted value, or of any JSON-able value holding Formatted ones: compact,
 * bigints as plain numbers (as bpftool prints a u64), Fields in their order. Characters JSON leaves
 * raw but a terminal would act on (DEL, C1 controls, line separators, bidirectional overrides) are
 * \u-escaped, like every bpfcr JSON output (cli/programs-report.ts jsonText).
 */
export function toJson(v: unknown): string {
  switch (typeof v) {
    case 'bigint': return v.toString();
    case 'string': return str(v);
    case 'object': {
      if (v === null) return 'null';
      if (v instanceof RawJson) return v.text;
      let s: string;
      let first = true;
      if (Array.isArray(v)) {
        s = '[';
        for (const x of v) { s += (first ? '' : ',') + toJson(x); first = false; }
        return s + ']';
      }
      s = '{';
      if (v instanceof Fields) {
        for (const [k, x] of v.entries) { s += (first ? '' : ',') + str(k) + ':' + toJson(x); first = false; }
        return s + '}';
      }
      for (const k in v) {
        const x = (v as Record<string, unknown>)[k];
        if (x === undefined) continue;
        s += (first ? '' : ',') + str(k) + ':' + toJson(x);
        first = false;
      }
      return s + '}';
    }
    default: return JSON.stringify(v) ?? 'null';
  }
}

/** A JSON string: printable ASCII as it is (the common case, and fast), the rest escaped. */
function str(s: string): string {
  if (/^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/.test(s)) return `"${s}"`;
  return JSON.stringify(s).replace(/[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A Formatted value on one line for people: {a: 1, name: "x", v: [1, 2]} (the caller escapes it with termSafe). */
export function toText(v: Formatted): string {
  if (v instanceof Fields) return `{${v.entries.map(([k, x]) => `${k || '(anon)'}: ${toText(x)}`).join(', ')}}`;
  if (Array.isArray(v)) return `[${v.map(toText).join(', ')}]`;
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}
