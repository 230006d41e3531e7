/**
 * Archive throughput: write + read back N members of 8 MiB for each output kind.
 * Not a test (no timing assertions): `node dist/test/archive/bench.js [members] [random|maplike] [fsync|nofsync]`
 */
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeHeader } from '../../src/archive/format.js';
import { openArchiveReader } from '../../src/archive/reader.js';
import { openArchiveWriter } from '../../src/archive/writer.js';

const CHUNK = 8 << 20;
const count = Number(process.argv[2] ?? 40);
const kind = process.argv[3] ?? 'random';
const fsync = (process.argv[4] ?? 'fsync') === 'fsync';

function makeChunk(i: number): Buffer {
  const b = Buffer.allocUnsafe(CHUNK);
  if (kind === 'random') {
    randomFillSync(b);
  } else {
    // map-like: 8-byte sequential keys, 24-byte values with a few varying bytes
    const n = CHUNK / 32;
    const keys = b.subarray(0, n * 8);
    const vals = b.subarray(n * 8);
    vals.fill(0);
    for (let k = 0; k < n; k++) {
      keys.writeBigUInt64LE(BigInt(i * n + k), k * 8);
      vals.writeUInt32LE((k * 2654435761) >>> 0, k * 24);
      vals.writeUInt16LE(k & 0xffff, k * 24 + 8);
    }
  }
  return b;
}

async function main(): Promise<void> {
  // distinct buffers (the writer takes ownership), generated up front so only the archive is timed
  const chunks = Array.from({ length: count }, (_, i) => makeChunk(i));
  const total = count * CHUNK;
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'bpfcr-bench-'));
  const header = makeHeader({ tool: { name: 'bpfcr-bench', version: '0' }, possibleCpus: 2 });
  console.log(`${count} members x 8 MiB = ${(total / 1e6).toFixed(0)} MB, data ${kind}, fsync ${fsync}`);
  try {
    for (const name of (process.env.BENCH_KINDS ?? 'a.tar,a.tar.gz,a.tar.zst,adir').split(',')) {
      const out = join(dir, name);
      const t0 = process.hrtime.bigint();
      const w = await openArchiveWriter(out, header, { fsync });
      for (let i = 0; i < count; i++) await w.addMember(`maps/0000/data-${String(i).padStart(6, '0')}.bin`, chunks[i]!);
      await w.finish({});
      const t1 = process.hrtime.bigint();
      const r = await openArchiveReader(out);
      let got = 0;
      for await (const m of r.members()) got += (await m.read()).length;
      await r.finish();
      const t2 = process.hrtime.bigint();
      if (got !== total) throw new Error(`read ${got} bytes, expected ${total}`);
      const size = name === 'adir' ? total : statSync(out).size;
      const wms = Number(t1 - t0) / 1e6;
      const rms = Number(t2 - t1) / 1e6;
      console.log(
        `${name.padEnd(10)} size ${(size / 1e6).toFixed(0).padStart(4)} MB  write ${(total / 1e3 / wms).toFixed(0).padStart(5)} MB/s (${wms.toFixed(0)} ms)  read+verify ${(total / 1e3 / rms).toFixed(0).padStart(5)} MB/s (${rms.toFixed(0)} ms)`,
      );
      rmSync(out, { recursive: true, force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
