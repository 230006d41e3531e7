/**
 * Live maps whose keys and values have every BTF kind `bpfcr show` decodes (signed and unsigned
 * ints, bitfields, enums and enum64, typedef/const, nested and anonymous structs, unions, char and
 * multi-dimensional arrays, 128-bit ints, pointers, a DATASEC like libbpf's .bss, per-CPU values),
 * created in this process through bpf(2) with a hand-written BTF blob (src/btf/build.ts) and filled
 * with known bytes. bpftool is the oracle for how they decode.
 */
import { btfLoad, closeFd, mapCreate, mapInfo, mapUpdateElem } from '../../src/syscall/bpf.js';
import { possibleCpus } from '../../src/maps/cpus.js';
import { BtfBuilder, INT_BOOL, INT_SIGNED } from '../../src/btf/build.js';

export interface RichMaps { ids: Record<'rich' | 'bss' | 'pcpu', number>; close(): void }

const HASH = 1;
const ARRAY = 2;
const PERCPU_HASH = 5;

/** The BTF: returns the blob and the type ids the maps use. */
function richBtf(): { blob: Buffer; key: number; value: number; bss: number; pcKey: number; pcValue: number } {
  const b = new BtfBuilder();
  const int = b.int('int', 4, INT_SIGNED);
  const uint = b.int('unsigned int', 4);
  const char = b.int('char', 1, INT_SIGNED); // as clang emits it
  const ll = b.int('long long', 8, INT_SIGNED);
  const ull = b.int('unsigned long long', 8);
  const bool = b.int('_Bool', 1, INT_BOOL);
  const short = b.int('short', 2, INT_SIGNED);
  const uchar = b.int('unsigned char', 1);
  const u128 = b.int('unsigned __int128', 16, 0, 128);
  const color = b.enum('color', 4, [['RED', 0], ['GREEN', 1], ['BLUE', 2]]);
  const level = b.enum('level', 1, [['LOW', -1], ['HIGH', 1]], true);
  const big = b.enum64('big', 8, [['HUGE', 1n << 40n], ['TINY', 1n]]);
  const u32t = b.typedef('u32_t', uint);
  const cint = b.const(int);
  const name = b.array(char, uint, 8);
  const row = b.array(short, uint, 3);
  const grid = b.array(row, uint, 2);
  const inner = b.struct('inner', 8, [['a', u32t, 0], ['b', short, 32], ['c', uchar, 48]]);
  const un = b.struct('u', 8, [['x', ll, 0], ['y', uint, 0]], true);
  const anon = b.struct('', 4, [['p', uint, 0]]);
  const ptr = b.ptr(int);
  const value = b.struct('value', 112, [
    ['s', int, 0, 0], ['flags', uint, 32, 3], ['mode', uint, 35, 5], ['neg', int, 40, 4],
    ['name', name, 64, 0], ['col', color, 128, 0], ['lvl', level, 160, 0], ['ok', bool, 168, 0],
    ['grid', grid, 176, 0], ['in', inner, 320, 0], ['u', un, 384, 0], ['big', big, 448, 0],
    ['big64', ull, 512, 0], ['sneg', ll, 576, 0], ['ci', cint, 640, 0], ['', anon, 672, 0],
    ['wide', u128, 704, 0], ['ptr', ptr, 832, 0],
  ]);
  const key = b.struct('key', 8, [['id', int, 0], ['port', uint, 32]]);
  const hits = b.variable('hits', ull);
  const flag = b.variable('flag', int);
  const bss = b.datasec('.bss', 16, [[hits, 0, 8], [flag, 8, 4]]);
  const tag = b.array(char, uint, 4);
  const pcValue = b.struct('pc', 16, [['n', ll, 0], ['tag', tag, 64]]);
  return { blob: b.blob(), key, value, bss, pcKey: int, pcValue };
}

/** Entry A: every field set, enums matching; entry B: enums that match nothing, a char array that is no string. */
function richValues(): [Buffer, Buffer][] {
  const a = Buffer.alloc(112);
  a.writeInt32LE(-123456, 0);
  a.writeUInt16LE(5 | (17 << 3) | (0xd << 8), 4); // flags:3 = 5, mode:5 = 17, neg:4 = -3
  a.write('abc', 8, 'latin1');
  a.writeUInt32LE(2, 16); // BLUE
  a.writeInt8(-1, 20); // LOW
  a.writeUInt8(1, 21);
  [1, -2, 3, -4, 5, -6].forEach((v, i) => a.writeInt16LE(v, 22 + 2 * i));
  a.writeUInt32LE(0xdeadbeef, 40);
  a.writeInt16LE(-7, 44);
  a.writeUInt8(200, 46);
  a.writeBigInt64LE(-1n, 48);
  a.writeBigUInt64LE(1n << 40n, 56); // HUGE
  a.writeBigUInt64LE((1n << 64n) - 1n, 64);
  a.writeBigInt64LE(-(1n << 62n), 72);
  a.writeInt32LE(42, 80);
  a.writeUInt32LE(7, 84);
  const wide = (1n << 100n) + 5n;
  a.writeBigUInt64LE(wide & ((1n << 64n) - 1n), 88);
  a.writeBigUInt64LE(wide >> 64n, 96);
  a.writeBigUInt64LE(0x1234n, 104);
  const b = Buffer.alloc(112);
  b.writeUInt32LE(7, 16);
  b.writeInt8(5, 20);
  b.writeBigUInt64LE(3n, 56);
  for (let i = 0; i < 8; i++) b[8 + i] = i + 1;
  const ka = Buffer.alloc(8);
  ka.writeInt32LE(-5, 0);
  ka.writeUInt32LE(80, 4);
  const kb = Buffer.alloc(8);
  kb.writeInt32LE(7, 0);
  kb.writeUInt32LE(65535, 4);
  return [[ka, a], [kb, b]];
}

/** Create and fill the maps; this process holds them until close(). */
export function createRichMaps(): RichMaps {
  const t = richBtf();
  const btf = btfLoad(t.blob, 'rich BTF');
  const fds: number[] = [];
  try {
    const rich = mapCreate({ type: HASH, keySize: 8, valueSize: 112, maxEntries: 8, flags: 0, name: 'rich', btfFd: btf, btfKeyTypeId: t.key, btfValueTypeId: t.value });
    fds.push(rich);
    for (const [k, v] of richValues()) mapUpdateElem(rich, k, v);
    // libbpf's .bss: an ARRAY of one element, no key type, a DATASEC value
    const bss = mapCreate({ type: ARRAY, keySize: 4, valueSize: 16, maxEntries: 1, flags: 0, name: 'rich.bss', btfFd: btf, btfKeyTypeId: 0, btfValueTypeId: t.bss });
    fds.push(bss);
    const bv = Buffer.alloc(16);
    bv.writeBigUInt64LE(123456789012n, 0);
    bv.writeInt32LE(-9, 8);
    mapUpdateElem(bss, Buffer.alloc(4), bv);
    const pcpu = mapCreate({ type: PERCPU_HASH, keySize: 4, valueSize: 16, maxEntries: 4, flags: 0, name: 'rich_pcpu', btfFd: btf, btfKeyTypeId: t.pcKey, btfValueTypeId: t.pcValue });
    fds.push(pcpu);
    const n = possibleCpus();
    for (const k of [-1, 3]) {
      const v = Buffer.alloc(16 * n);
      for (let c = 0; c < n; c++) {
        v.writeBigInt64LE(BigInt(k * 1000 - c), 16 * c);
        v.write(`c${c}`, 16 * c + 8, 'latin1');
      }
      const key = Buffer.alloc(4);
      key.writeInt32LE(k);
      mapUpdateElem(pcpu, key, v);
    }
    const ids = { rich: mapInfo(rich).id, bss: mapInfo(bss).id, pcpu: mapInfo(pcpu).id };
    return { ids, close: () => { for (const fd of fds.splice(0)) closeFd(fd); } };
  } catch (e) {
    for (const fd of fds) closeFd(fd);
    throw e;
  } finally {
    closeFd(btf);
  }
}
