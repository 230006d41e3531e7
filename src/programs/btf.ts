/**
 * BTF: the header, the type section (walked to find where each type starts) and the string
 * section. Base BTF (/sys/kernel/btf/vmlinux) and split BTF (a module's, whose ids and string
 * offsets continue the base's). type() names a type id (program and link names); detail() gives a
 * type's whole record (sizes, members, enumerators), which src/btf/ decodes map keys and values with.
 */
import { readFileSync } from 'node:fs';

const BTF_MAGIC = 0xeb9f;

/** BTF_KIND_* */
export const BtfKind = {
  INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, ENUM: 6, FWD: 7, TYPEDEF: 8, VOLATILE: 9, CONST: 10,
  RESTRICT: 11, FUNC: 12, FUNC_PROTO: 13, VAR: 14, DATASEC: 15, FLOAT: 16, DECL_TAG: 17, TYPE_TAG: 18, ENUM64: 19,
} as const;
const KIND_NAMES = Object.fromEntries(Object.entries(BtfKind).map(([k, v]) => [v, k.toLowerCase()])) as Record<number, string>;

/** Bytes that follow the 12-byte struct btf_type for a kind with vlen members. */
function extra(kind: number, vlen: number): number {
  switch (kind) {
    case BtfKind.INT: case BtfKind.VAR: case BtfKind.DECL_TAG: return 4;
    case BtfKind.ARRAY: return 12;
    case BtfKind.STRUCT: case BtfKind.UNION: case BtfKind.DATASEC: case BtfKind.ENUM64: return 12 * vlen;
    case BtfKind.ENUM: case BtfKind.FUNC_PROTO: return 8 * vlen;
    case BtfKind.PTR: case BtfKind.FWD: case BtfKind.TYPEDEF: case BtfKind.VOLATILE: case BtfKind.CONST:
    case BtfKind.RESTRICT: case BtfKind.FUNC: case BtfKind.FLOAT: case BtfKind.TYPE_TAG: return 0;
    default: throw new Error(`unknown BTF kind ${kind}`);
  }
}

export interface BtfType { id: number; kind: string; name: string }

/** A struct/union member; `bitSize` > 0 for a bitfield declared with kind_flag set. */
export interface BtfMember { name: string; type: number; bitOffset: number; bitSize: number }

/**
 * One type's full record (struct btf_type and what follows it). `size` for INT, STRUCT, UNION,
 * ENUM, ENUM64, DATASEC, FLOAT; `type` (the referenced id) for PTR, TYPEDEF, the modifiers, FUNC,
 * VAR, DECL_TAG, TYPE_TAG; the rest by kind.
 */
export interface BtfTypeDetail extends BtfType {
  kindId: number;
  kflag: boolean;
  size: number;
  type: number;
  /** INT: BTF_INT_SIGNED 1, CHAR 2, BOOL 4; the bit offset and the number of bits */
  int?: { encoding: number; offset: number; bits: number };
  array?: { type: number; indexType: number; nelems: number };
  members?: BtfMember[];
  /** ENUM (value sign-extended when kflag says signed, else unsigned) and ENUM64 */
  enumerators?: { name: string; value: bigint }[];
  /** DATASEC */
  vars?: { type: number; offset: number; size: number }[];
}

export class Btf {
  /** offset of each type (id firstId + i) in `data`, walked as far as asked (next: where to go on) */
  private readonly offsets: number[] = [];
  private next: number;
  private readonly typeEnd: number;
  private readonly strOff: number;
  private readonly strLen: number;
  readonly firstId: number;

  constructor(private readonly data: Buffer, readonly base?: Btf) {
    if (data.length < 24 || data.readUInt16LE(0) !== BTF_MAGIC) throw new Error('not BTF (little-endian) data');
    const hdrLen = data.readUInt32LE(4);
    const typeOff = hdrLen + data.readUInt32LE(8);
    const typeEnd = typeOff + data.readUInt32LE(12);
    this.strOff = hdrLen + data.readUInt32LE(16);
    this.strLen = data.readUInt32LE(20);
    if (typeEnd > data.length || this.strOff + this.strLen > data.length) throw new Error('truncated BTF data');
    this.firstId = base ? base.firstId + base.count : 1;
    this.next = typeOff;
    this.typeEnd = typeEnd;
  }

  /** Walk the type section until type index `i` (relative to firstId) is known, or to its end. */
  private walk(i: number): void {
    const d = this.data;
    while (this.offsets.length <= i && this.next < this.typeEnd) {
      const p = this.next;
      this.offsets.push(p);
      const info = d.readUInt32LE(p + 4);
      this.next = p + 12 + extra((info >>> 24) & 0x1f, info & 0xffff);
    }
  }

  get count(): number {
    this.walk(Infinity);
    return this.offsets.length;
  }

  private str(off: number): string {
    if (this.base) {
      const baseLen = this.base.strLen;
      if (off < baseLen) return this.base.str(off);
      off -= baseLen;
    }
    if (off >= this.strLen) throw new Error(`BTF string offset ${off} out of range`);
    const start = this.strOff + off;
    const end = this.data.indexOf(0, start);
    return this.data.toString('utf8', start, end < 0 ? this.strOff + this.strLen : end);
  }

  /** id of the first type of this BTF (not its base) named `name` (of `kind`, e.g. 'func'), if any. */
  find(name: string, kind?: string): number | undefined {
    for (let i = 0; i < this.count; i++) {
      const t = this.type(this.firstId + i)!;
      if (t.name === name && (kind === undefined || t.kind === kind)) return t.id;
    }
    return undefined;
  }

  /** type `id`: its kind and name ('' when anonymous); undefined when out of range. */
  type(id: number): BtfType | undefined {
    if (id < this.firstId) return this.base?.type(id);
    this.walk(id - this.firstId);
    const p = this.offsets[id - this.firstId];
    if (p === undefined) return undefined;
    const info = this.data.readUInt32LE(p + 4);
    const kind = (info >>> 24) & 0x1f;
    return { id, kind: KIND_NAMES[kind] ?? String(kind), name: this.str(this.data.readUInt32LE(p)) };
  }

  /** type `id` with everything its record says; undefined when out of range (0 is void: undefined). */
  detail(id: number): BtfTypeDetail | undefined {
    if (id < this.firstId) return this.base?.detail(id);
    const head = this.type(id);
    if (!head) return undefined;
    const d = this.data;
    const p = this.offsets[id - this.firstId]!;
    const info = d.readUInt32LE(p + 4);
    const kindId = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const kflag = (info >>> 31) === 1;
    const sizeOrType = d.readUInt32LE(p + 8);
    const out: BtfTypeDetail = { ...head, kindId, kflag, size: sizeOrType, type: sizeOrType };
    const q = p + 12;
    switch (kindId) {
      case BtfKind.INT: {
        const v = d.readUInt32LE(q);
        out.int = { encoding: (v >>> 24) & 0x0f, offset: (v >>> 16) & 0xff, bits: v & 0xff };
        break;
      }
      case BtfKind.ARRAY:
        out.array = { type: d.readUInt32LE(q), indexType: d.readUInt32LE(q + 4), nelems: d.readUInt32LE(q + 8) };
        break;
      case BtfKind.STRUCT: case BtfKind.UNION:
        out.members = [];
        for (let i = 0; i < vlen; i++) {
          const m = q + 12 * i;
          const off = d.readUInt32LE(m + 8);
          // kind_flag: the offset word packs bitfield size (top 8 bits) and bit offset (low 24)
          out.members.push({ name: this.str(d.readUInt32LE(m)), type: d.readUInt32LE(m + 4), bitOffset: kflag ? off & 0xffffff : off, bitSize: kflag ? off >>> 24 : 0 });
        }
        break;
      case BtfKind.ENUM:
        out.enumerators = [];
        for (let i = 0; i < vlen; i++) {
          const e = q + 8 * i;
          out.enumerators.push({ name: this.str(d.readUInt32LE(e)), value: BigInt(kflag ? d.readInt32LE(e + 4) : d.readUInt32LE(e + 4)) });
        }
        break;
      case BtfKind.ENUM64:
        out.enumerators = [];
        for (let i = 0; i < vlen; i++) {
          const e = q + 12 * i;
          const v = (BigInt(d.readUInt32LE(e + 8)) << 32n) | BigInt(d.readUInt32LE(e + 4));
          out.enumerators.push({ name: this.str(d.readUInt32LE(e)), value: kflag ? BigInt.asIntN(64, v) : v });
        }
        break;
      case BtfKind.DATASEC:
        out.vars = [];
        for (let i = 0; i < vlen; i++) {
          const v = q + 12 * i;
          out.vars.push({ type: d.readUInt32LE(v), offset: d.readUInt32LE(v + 4), size: d.readUInt32LE(v + 8) });
        }
        break;
    }
    return out;
  }
}

const SYSFS_BTF = '/sys/kernel/btf';
const cache = new Map<string, Btf>();

/** The running kernel's BTF: 'vmlinux' or a module's (split on vmlinux), from /sys/kernel/btf; cached. */
export function kernelBtf(name = 'vmlinux'): Btf {
  let b = cache.get(name);
  if (!b) {
    if (name.includes('/') || name.startsWith('.')) throw new Error(`bad kernel BTF name ${JSON.stringify(name)}`);
    const data = readFileSync(`${SYSFS_BTF}/${name}`);
    b = name === 'vmlinux' ? new Btf(data) : new Btf(data, kernelBtf('vmlinux'));
    cache.set(name, b);
  }
  return b;
}
