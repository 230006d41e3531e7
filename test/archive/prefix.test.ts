import test from 'ava';
import { cpSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { ArchiveError, HEADER_MEMBER, MANIFEST_MEMBER } from '../../src/archive/format.js';
import { openArchiveReader, verifyArchive } from '../../src/archive/reader.js';
import { openArchiveWriter } from '../../src/archive/writer.js';
import { HEADER, bytes, concat, handTar, readAll, sampleMembers, tempDir, writeSample, zstdCompress, type HandEntry } from './helpers.js';

const PREFIX = 'checkpoint/bpfcr/';

/** Entries for `dir` the way podman's export walks it: lexical order, directory entries included. */
function walkEntries(dir: string, prefix: string): HandEntry[] {
  const out: HandEntry[] = [];
  const visit = (abs: string, rel: string): void => {
    for (const n of readdirSync(abs).sort()) {
      const a = join(abs, n);
      const r = `${rel}${n}`;
      if (statSync(a).isDirectory()) {
        out.push({ name: `${r}/`, type: 'directory' });
        visit(a, `${r}/`);
      } else out.push({ name: r, data: readFileSync(a) });
    }
  };
  visit(dir, prefix);
  return out;
}

/** A podman-like checkpoint export holding our directory-form archive under checkpoint/bpfcr/. */
function podmanEntries(archiveDir: string, extra: HandEntry[] = []): HandEntry[] {
  return [
    { name: 'checkpoint/', type: 'directory' },
    { name: 'checkpoint/bpfcr/', type: 'directory' },
    ...walkEntries(archiveDir, PREFIX),
    ...extra,
    { name: 'checkpoint/inventory.img', data: bytes(300, 9) },
    { name: 'checkpoint/pages-1.img', data: bytes(1 << 20, 8) },
    { name: 'config.dump', data: '{"id":"abc"}' },
    { name: 'rootfs-diff/', type: 'directory' },
    { name: 'rootfs-diff/etc/passwd-link', type: 'symlink', linkname: '/etc/passwd' },
    { name: 'rootfs-diff/../../escape', data: 'outside the prefix: ignored' },
    { name: 'spec.dump', data: '{}' },
  ];
}

async function sampleDir(parent: string): Promise<string> {
  const dir = join(parent, 'src-ckpt');
  await writeSample(await openArchiveWriter(dir, HEADER));
  return dir;
}

test('prefix: reads our archive from a zstd podman-style export, in manifest order, spooling out-of-order members', async (t) => {
  const tmp = tempDir();
  try {
    const src = await sampleDir(tmp.dir);
    const entries = podmanEntries(src);
    // the container stores data chunks before meta.json and manifest.json before maps/
    const names = entries.map((e) => e.name);
    t.true(names.indexOf(`${PREFIX}maps/0000/data-000000.bin`) < names.indexOf(`${PREFIX}maps/0000/meta.json`));
    t.true(names.indexOf(`${PREFIX}${MANIFEST_MEMBER}`) < names.indexOf(`${PREFIX}maps/0000/meta.json`));
    const exp = join(tmp.dir, 'export.tar.zst');
    writeFileSync(exp, zstdCompress(await handTar(entries)));

    const spool = join(tmp.dir, 'spool');
    mkdirSync(spool);
    for (const prefix of [PREFIX, 'checkpoint/bpfcr', './checkpoint/bpfcr/']) {
      const r = await openArchiveReader(exp, { prefix, spoolDir: spool });
      t.deepEqual(r.format, { kind: 'tar', compression: 'zstd' });
      t.deepEqual(r.header, HEADER);
      const it = r.members();
      const first = (await it.next()).value!;
      t.is(first.name, 'btf/12.btf');
      t.is(readdirSync(spool).length, 1, 'members met before manifest.json were spooled');
      t.not(r.manifest, undefined, 'manifest known once met');
      t.true((await first.read()).equals(bytes(3000, 1)));
      const got = await readAll(r);
      got.names.unshift(first.name);
      got.data.set(first.name, bytes(3000, 1));
      const want = sampleMembers();
      t.deepEqual(got.names, want.map((m) => m.name), 'manifest order, not container order');
      for (const m of want) t.true(got.data.get(m.name)!.equals(concat(m)), m.name);
      const manifest = await r.finish();
      t.is(manifest.members.length, want.length + 1);
      t.deepEqual(readdirSync(spool), [], 'spool removed');
    }

    const v = await verifyArchive(exp, { prefix: PREFIX });
    t.true(v.ok);
    t.is(v.members.length, sampleMembers().length + 1);

    // without the prefix this is not a bpfcr archive
    await t.throwsAsync(openArchiveReader(exp), {
      message: /not a bpfcr archive: first member is checkpoint\/bpfcr\/bpfcr-archive\.json, expected bpfcr-archive\.json/,
    });
    await t.throwsAsync(openArchiveReader(exp, { prefix: 'checkpoint/other/' }), {
      message: /is empty or not a bpfcr archive \(no bpfcr-archive\.json under prefix checkpoint\/other\/\)/,
    });
  } finally {
    tmp.cleanup();
  }
});

test('prefix: an embedded archive in native order (manifest last) also reads', async (t) => {
  const tmp = tempDir();
  try {
    const tarPath = join(tmp.dir, 'a.tar');
    await writeSample(await openArchiveWriter(tarPath, HEADER));
    // re-wrap every entry of our own tar under the prefix, in its order, between foreign entries
    const entries: HandEntry[] = [
      { name: 'other/', type: 'directory' },
      { name: 'other/file', data: 'x' },
    ];
    const ex = tar.extract();
    const reading = (async () => {
      for await (const e of ex) {
        const chunks: Buffer[] = [];
        for await (const c of e) chunks.push(c as Buffer);
        entries.push({ name: `${PREFIX}${e.header.name}`, data: Buffer.concat(chunks) });
      }
    })();
    ex.end(readFileSync(tarPath));
    await reading;
    t.is(entries[2]!.name, `${PREFIX}${HEADER_MEMBER}`);
    t.is(entries[entries.length - 1]!.name, `${PREFIX}${MANIFEST_MEMBER}`);
    entries.push({ name: 'z-last', data: 'y' });
    const wrapped = join(tmp.dir, 'wrapped.tgz');
    writeFileSync(wrapped, gzipSync(await handTar(entries)));
    const spool = join(tmp.dir, 'spool');
    mkdirSync(spool);
    const r = await openArchiveReader(wrapped, { prefix: PREFIX, spoolDir: spool });
    const got = await readAll(r);
    t.deepEqual(got.names, sampleMembers().map((m) => m.name));
    await r.finish();
    t.deepEqual(readdirSync(spool), []);
  } finally {
    tmp.cleanup();
  }
});

test('prefix: symlinks, bad names and corruption inside the prefix are refused naming the member', async (t) => {
  const tmp = tempDir();
  try {
    const src = await sampleDir(tmp.dir);
    const p = join(tmp.dir, 'x.tar.zst');

    writeFileSync(p, zstdCompress(await handTar(podmanEntries(src, [{ name: `${PREFIX}maps/0000/evil`, type: 'symlink', linkname: '/etc/shadow' }]))));
    await t.throwsAsync(
      (async () => {
        const r = await openArchiveReader(p, { prefix: PREFIX });
        await readAll(r);
        await r.finish();
      })(),
      { instanceOf: ArchiveError, message: /member maps\/0000\/evil: refusing symlink to \/etc\/shadow/ },
    );

    writeFileSync(p, zstdCompress(await handTar(podmanEntries(src, [{ name: `${PREFIX}../../../etc/x`, data: 'x' }]))));
    await t.throwsAsync(
      (async () => {
        const r = await openArchiveReader(p, { prefix: PREFIX });
        await readAll(r);
      })(),
      { message: /member \.\.\/\.\.\/\.\.\/etc\/x: unsafe name/ },
    );

    // flip a byte in a spooled data member
    const entries = podmanEntries(src).map((e) => {
      if (e.name !== `${PREFIX}maps/0000/data-000000.bin`) return e;
      const d = Buffer.from(e.data as Buffer);
      d[5]! ^= 1;
      return { ...e, data: d };
    });
    writeFileSync(p, zstdCompress(await handTar(entries)));
    await t.throwsAsync(
      (async () => {
        const r = await openArchiveReader(p, { prefix: PREFIX });
        await readAll(r);
        await r.finish();
      })(),
      { message: `archive ${p}: member maps/0000/data-000000.bin: sha256 mismatch` },
    );
    const v = await verifyArchive(p, { prefix: PREFIX });
    t.deepEqual(v.members.filter((m) => !m.ok).map((m) => m.name), ['maps/0000/data-000000.bin']);

    // no manifest under the prefix
    writeFileSync(p, zstdCompress(await handTar(podmanEntries(src).filter((e) => e.name !== `${PREFIX}${MANIFEST_MEMBER}`))));
    const r = await openArchiveReader(p, { prefix: PREFIX });
    t.deepEqual((await readAll(r)).names, [], 'nothing can be ordered without the manifest');
    await t.throwsAsync(r.finish(), { message: `archive ${p} is incomplete: no manifest.json (truncated or interrupted dump?)` });
  } finally {
    tmp.cleanup();
  }
});

test('prefix on a directory source reads the subdirectory; a symlinked prefix component is refused', async (t) => {
  const tmp = tempDir();
  try {
    const src = await sampleDir(tmp.dir);
    const root = join(tmp.dir, 'extracted');
    mkdirSync(join(root, 'checkpoint'), { recursive: true });
    cpSync(src, join(root, 'checkpoint', 'bpfcr'), { recursive: true });
    const r = await openArchiveReader(root, { prefix: PREFIX });
    t.is(r.format.kind, 'dir');
    t.deepEqual((await readAll(r)).names, sampleMembers().map((m) => m.name));
    await r.finish();

    const root2 = join(tmp.dir, 'extracted2');
    mkdirSync(root2);
    symlinkSync(join(root, 'checkpoint'), join(root2, 'checkpoint'));
    await t.throwsAsync(openArchiveReader(root2, { prefix: PREFIX }), { message: /prefix component checkpoint is a symlink; refusing it/ });
    await t.throwsAsync(openArchiveReader(root, { prefix: '../x' }), { message: /invalid archive prefix/ });
  } finally {
    tmp.cleanup();
  }
});
