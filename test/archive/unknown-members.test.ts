/**
 * Member names the reader's consumer does not know (docs/archive-format.md section 9: new member
 * names are a compatible addition) are skipped by members() but still hashed and verified.
 */
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openArchiveReader, verifyArchive, type ReaderOptions } from '../../src/archive/reader.js';
import { openArchiveWriter } from '../../src/archive/writer.js';
import { HEADER, bytes, handTar, memberOffset, tempDir } from './helpers.js';

async function inTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const tmp = tempDir();
  try {
    await fn(tmp.dir);
  } finally {
    tmp.cleanup();
  }
}

const FUTURE = 'x-future/thing';
const known: ReaderOptions['known'] = (name) => name.startsWith('btf/') || name.startsWith('maps/');

async function withFuture(out: string): Promise<void> {
  const w = await openArchiveWriter(out, HEADER);
  await w.addMember('btf/1.btf', bytes(100, 1));
  await w.addMember(FUTURE, bytes(5000, 2));
  await w.addMember('maps/0000/meta.json', Buffer.from('{"index":0}'));
  await w.addMember('maps/0000/data-000000.bin', bytes(3000, 3));
  await w.finish({ maps: [{ index: 0 }] });
}

async function names(path: string, opts: ReaderOptions): Promise<string[]> {
  const r = await openArchiveReader(path, opts);
  try {
    const out: string[] = [];
    for await (const m of r.members()) {
      await m.read();
      out.push(m.name);
    }
    await r.finish();
    return out;
  } finally {
    await r.close();
  }
}

for (const form of ['tar', 'dir'] as const) {
  test(`${form}: an unknown member is skipped, verified, and listed by verifyArchive`, (t) =>
    inTemp(async (dir) => {
      const out = join(dir, form === 'tar' ? 'a.tar' : 'a.d');
      await withFuture(out);
      t.deepEqual(await names(out, { known }), ['btf/1.btf', 'maps/0000/meta.json', 'maps/0000/data-000000.bin']);
      t.deepEqual(await names(out, {}), ['btf/1.btf', FUTURE, 'maps/0000/meta.json', 'maps/0000/data-000000.bin']);
      const v = await verifyArchive(out);
      t.true(v.ok);
      t.true(v.members.some((m) => m.name === FUTURE && m.ok));
    }));
}

test('tar: a corrupted unknown member still fails verification, naming it', (t) =>
  inTemp(async (dir) => {
    const out = join(dir, 'a.tar');
    await withFuture(out);
    const buf = readFileSync(out);
    buf[memberOffset(buf, FUTURE) + 10]! ^= 0xff;
    writeFileSync(out, buf);
    await t.throwsAsync(names(out, { known }), { message: `archive ${out}: member ${FUTURE}: sha256 mismatch` });
    const v = await verifyArchive(out);
    t.false(v.ok);
    t.deepEqual(v.members.filter((m) => !m.ok).map((m) => [m.name, m.problem]), [[FUTURE, 'sha256 mismatch']]);
  }));

test('dir: a corrupted unknown member is refused when met, naming it', (t) =>
  inTemp(async (dir) => {
    const out = join(dir, 'a.d');
    await withFuture(out);
    const file = join(out, FUTURE);
    const body = readFileSync(file);
    body[0]! ^= 0xff;
    writeFileSync(file, body);
    await t.throwsAsync(names(out, { known }), { message: `archive ${out}: member ${FUTURE}: sha256 mismatch` });
  }));

test('under a prefix, members in lexical order: the unknown member is skipped and still verified', (t) =>
  inTemp(async (dir) => {
    const arch = join(dir, 'a.d');
    await withFuture(arch);
    // a container tar that stores the directory archive lexically (as podman does)
    const members = ['bpfcr-archive.json', 'btf/1.btf', 'manifest.json', 'maps/0000/data-000000.bin', 'maps/0000/meta.json', FUTURE];
    const out = join(dir, 'export.tar');
    writeFileSync(out, await handTar(members.map((name) => ({ name: `ckpt/bpfcr/${name}`, data: readFileSync(join(arch, name)) }))));
    t.deepEqual(await names(out, { known, prefix: 'ckpt/bpfcr/' }), ['btf/1.btf', 'maps/0000/meta.json', 'maps/0000/data-000000.bin']);
    t.true((await verifyArchive(out, { prefix: 'ckpt/bpfcr/' })).ok);
  }));
