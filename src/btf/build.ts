/**
 * A BTF blob written type by type (the encoding of include/uapi/linux/btf.h, the one src/programs/btf.ts
 * reads): `bpfcr doctor` loads the smallest one to see BPF_BTF_LOAD work, and tests build maps whose
 * keys and values have every kind bpfcr decodes, without needing clang. The kernel validates a blob
 * at BPF_BTF_LOAD; this writes what it is told.
 */
const KIND = { INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, ENUM: 6, TYPEDEF: 8, VOLATILE: 9, CONST: 10, VAR: 14, DATASEC: 15, FLOAT: 16, ENUM64: 19 } as const;
export const INT_SIGNED = 1;
export const INT_CHAR = 2;
export const INT_BOOL = 4;

export class BtfBuilder {
  #words: number[] = [];
  #strings = ['\0'];
  #strLen = 1;
  #next = 1;

  #str(s: string): number {
    if (!s) return 0;
    const off = this.#strLen;
    this.#strings.push(s + '\0');
    this.#strLen += Buffer.byteLength(s) + 1;
    return off;
  }

  #type(name: string, kind: number, vlen: number, sizeOrType: number, extra: number[], kflag = false): number {
    this.#words.push(this.#str(name), ((kflag ? 1 : 0) << 31 | kind << 24 | vlen) >>> 0, sizeOrType, ...extra);
    return this.#next++;
  }

  int(name: string, size: number, encoding = 0, bits = size * 8): number {
    return this.#type(name, KIND.INT, 0, size, [(encoding << 24 | bits) >>> 0]);
  }

  ptr(to: number): number { return this.#type('', KIND.PTR, 0, to, []); }
  typedef(name: string, to: number): number { return this.#type(name, KIND.TYPEDEF, 0, to, []); }
  const(to: number): number { return this.#type('', KIND.CONST, 0, to, []); }
  volatile(to: number): number { return this.#type('', KIND.VOLATILE, 0, to, []); }
  float(name: string, size: number): number { return this.#type(name, KIND.FLOAT, 0, size, []); }

  array(elem: number, index: number, nelems: number): number {
    return this.#type('', KIND.ARRAY, 0, 0, [elem, index, nelems]);
  }

  /** members: [name, type, bit offset, bitfield size (kflag struct when any is given)] */
  struct(name: string, size: number, members: [string, number, number, number?][], union = false): number {
    const kflag = members.some((m) => m[3] !== undefined);
    const extra = members.flatMap(([n, t, off, bits]) => [this.#str(n), t, kflag ? ((bits ?? 0) << 24 | off) >>> 0 : off]);
    return this.#type(name, union ? KIND.UNION : KIND.STRUCT, members.length, size, extra, kflag);
  }

  enum(name: string, size: number, values: [string, number][], signed = false): number {
    return this.#type(name, KIND.ENUM, values.length, size, values.flatMap(([n, v]) => [this.#str(n), v >>> 0]), signed);
  }

  enum64(name: string, size: number, values: [string, bigint][], signed = false): number {
    return this.#type(name, KIND.ENUM64, values.length, size, values.flatMap(([n, v]) => [this.#str(n), Number(BigInt.asUintN(64, v) & 0xffffffffn), Number(BigInt.asUintN(64, v) >> 32n)]), signed);
  }

  /** linkage 1: global */
  variable(name: string, type: number): number { return this.#type(name, KIND.VAR, 0, type, [1]); }

  datasec(name: string, size: number, vars: [number, number, number][]): number {
    return this.#type(name, KIND.DATASEC, vars.length, size, vars.flat());
  }

  blob(): Buffer {
    const types = Buffer.alloc(this.#words.length * 4);
    this.#words.forEach((w, i) => types.writeUInt32LE(w >>> 0, i * 4));
    const strs = Buffer.from(this.#strings.join(''), 'utf8');
    const hdr = Buffer.alloc(24);
    hdr.writeUInt16LE(0xeb9f, 0);
    hdr.writeUInt8(1, 2); // version
    hdr.writeUInt32LE(24, 4); // hdr_len
    hdr.writeUInt32LE(0, 8); // type_off
    hdr.writeUInt32LE(types.length, 12);
    hdr.writeUInt32LE(types.length, 16); // str_off
    hdr.writeUInt32LE(strs.length, 20);
    return Buffer.concat([hdr, types, strs]);
  }
}
