/**
 * The BTF value decoder (src/btf/dump.ts) on its own, for what bpftool cannot be asked about (it
 * prints "(unsupported-kind)" for FLOAT and has no CHAR arrays from clang) and for BTF that lies:
 * loops, impossible sizes, truncated records, names made to move a terminal's cursor. Every failure
 * must be a BtfDecodeError (one line, named type), never a RangeError (which bpfcr reports as a bug).
 */
import test from 'ava';
import { BtfDecodeError, BtfDumper, Fields, hexBytes, hexText, toJson, toText } from '../../src/btf/dump.js';
import { MapView } from '../../src/cli/map-contents.js';
import type { MapMeta } from '../../src/maps/meta.js';
import { Btf } from '../../src/programs/btf.js';
import { BtfBuilder, INT_CHAR, INT_SIGNED } from '../../src/btf/build.js';

test('CHAR ints: printable as a one-character string, others as the character of that code (bpftool: "\\u00XX")', (t) => {
  const b = new BtfBuilder();
  const c = b.int('char', 1, INT_CHAR);
  const d = new BtfDumper(new Btf(b.blob()));
  t.is(d.format(c, Buffer.from('A')), 'A');
  t.is(toJson(d.format(c, Buffer.from([1]))), '"\\u0001"');
  t.is(toJson(d.format(c, Buffer.from([0x9b]))), '"\\u009b"', 'a C1 control (CSI) is escaped, not written raw');
});

test('FLOAT as a number (bpftool cannot), 128-bit ints and bitfields as hex, u64 beyond 2^53 exact', (t) => {
  const b = new BtfBuilder();
  const f = b.float('double', 8);
  const f4 = b.float('float', 4);
  const u64 = b.int('u64', 8);
  const s3 = b.int('s3', 1, INT_SIGNED, 3); // a 3-bit signed int: a bitfield, printed unsigned like bpftool
  const d = new BtfDumper(new Btf(b.blob()));
  const x = Buffer.alloc(8);
  x.writeDoubleLE(-2.5);
  t.is(d.format(f, x), -2.5);
  const y = Buffer.alloc(4);
  y.writeFloatLE(0.5);
  t.is(d.format(f4, y), 0.5);
  x.writeBigUInt64LE((1n << 64n) - 2n);
  t.is(toJson(d.format(u64, x)), '18446744073709551614');
  t.is(d.format(s3, Buffer.from([0xff])), '0x7');
});

test('hostile BTF: loops, huge arrays, members past the value, truncated records fail as BtfDecodeError naming the type', (t) => {
  const b = new BtfBuilder();
  const int = b.int('int', 4, INT_SIGNED);
  const loop1 = b.typedef('a', 3); // 2 -> 3 -> 2
  b.typedef('b', loop1);
  const huge = b.array(int, int, 0x7fffffff);
  const far = b.struct('far', 8, [['x', int, 4096]]);
  const d = new BtfDumper(new Btf(b.blob()));
  for (const [id, data, re] of [
    [loop1, Buffer.alloc(4), /type chain deeper than/],
    [huge, Buffer.alloc(4), /array|elements|bytes/],
    [far, Buffer.alloc(8), /at byte 512 needs 4 byte\(s\), the value has 8/],
    [99, Buffer.alloc(4), /type 99 does not exist/],
  ] as const) {
    const e = t.throws(() => d.format(id, data));
    t.true(e instanceof BtfDecodeError, `${String(e)}`);
    t.regex(e!.message, re);
  }
  t.throws(() => d.size(loop1), { instanceOf: BtfDecodeError });
  // a STRUCT whose 500 members the type section does not hold
  const blob = new BtfBuilder();
  blob.struct('s', 4, [['x', 0, 0]]);
  const raw = blob.blob();
  raw.writeUInt32LE((4 << 24) | 500, 24 + 4);
  const e = t.throws(() => new BtfDumper(new Btf(raw)).format(1, Buffer.alloc(4)));
  t.true(e instanceof BtfDecodeError, String(e));
});

test('names from BTF reach JSON and the terminal escaped; anonymous members keep their place', (t) => {
  const b = new BtfBuilder();
  const int = b.int('int', 4, INT_SIGNED);
  const s = b.struct('evil', 8, [['x\x1b[2J\u202e', int, 0], ['', int, 32]]);
  const btf = b.blob();
  const d = new BtfDumper(new Btf(btf));
  const v = d.format(s, Buffer.from([1, 0, 0, 0, 2, 0, 0, 0]));
  t.true(v instanceof Fields);
  t.is(toJson(v), '{"x\\u001b[2J\\u202e":1,"":2}');
  const meta = {
    index: 0, id: 1, name: 'm', type: 'array', typeId: 2, keySize: 4, valueSize: 8, maxEntries: 1, flags: 0, mapExtra: '0', frozen: false,
    policy: 'content', btf: { id: 5, keyTypeId: int, valueTypeId: s }, layout: 'kv', valueStride: 8, top: true, refs: [],
  } as MapMeta;
  const view = new MapView(meta, { label: 'x', header: { possibleCpus: 2 } as never, metas: [meta], btf: new Map([[5, btf]]) });
  const line = view.text({ key: Buffer.alloc(4), value: Buffer.from([1, 0, 0, 0, 2, 0, 0, 0]) }).join('\n');
  t.is(line, 'key: 0  value: {x\\x1b[2J\\u202e: 1, (anon): 2}');
  t.is(toText(v), '{x\x1b[2J\u202e: 1, (anon): 2}', 'toText leaves escaping to the printer (termSafe)');
});

test('hex forms: bpftool JSON bytes and plain text', (t) => {
  t.is(toJson(hexBytes(Buffer.from([0, 0xab, 7]))), '["0x00","0xab","0x07"]');
  t.deepEqual(JSON.parse(JSON.stringify(hexBytes(Buffer.from([1])))), ['0x01']);
  t.is(hexText(Buffer.from([0, 0xab, 7])), '00 ab 07');
});
