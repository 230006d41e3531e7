import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, unlinkSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ArchiveError, HEADER_MEMBER, MANIFEST_MEMBER } from '../../src/archive/format.js';
import { openArchiveReader, verifyArchive } from '../../src/archive/reader.js';
import { openArchiveWriter } from '../../src/archive/writer.js';
import { HEADER, bytes, handTar, headerJson, manifestJson, partials, readAll, sink, tempDir, writeSample } from './helpers.js';

async function hostile(entries: Parameters<typeof handTar>[0]): Promise<Buffer> {
  const h = headerJson();
  return handTar([{ name: HEADER_MEMBER, data: h }, ...entries, { name: MANIFEST_MEMBER, data: manifestJson([{ name: HEADER_MEMBER, data: h }]) }]);
}

async function consume(path: string): Promise<void> {
  const r = await openArchiveReader(path);
  await readAll(r);
  await r.finish();
}

test('tar entries that are not regular files are refused, naming the member', async (t) => {
  const tmp = tempDir();
  try {
    const cases: [Parameters<typeof handTar>[0][number], RegExp][] = [
      [{ name: 'maps/0000/meta.json', type: 'symlink', linkname: '/etc/passwd' }, /member maps\/0000\/meta\.json: refusing symlink to \/etc\/passwd \(only regular files are allowed\)/],
      [{ name: 'btf/1.btf', type: 'link', linkname: 'bpfcr-archive.json' }, /member btf\/1\.btf: refusing hard link to bpfcr-archive\.json/],
      [{ name: 'dev0', type: 'character-device' }, /member dev0: refusing character-device entry/],
      [{ name: 'pipe', type: 'fifo' }, /member pipe: refusing fifo entry/],
    ];
    for (const [entry, re] of cases) {
      const p = join(tmp.dir, 'h.tar');
      writeFileSync(p, await hostile([entry]));
      const e = await t.throwsAsync(consume(p), { instanceOf: ArchiveError, message: re });
      t.is(e!.code, 'UNSAFE');
      await t.throwsAsync(verifyArchive(p), { message: re });
    }
  } finally {
    tmp.cleanup();
  }
});

test('unsafe and invalid member names in a tar are refused', async (t) => {
  const tmp = tempDir();
  try {
    const cases: [string, RegExp][] = [
      ['../x', /member \.\.\/x: unsafe name: name contains a '\.\.' component/],
      ['maps/../../etc/cron.d/x', /member maps\/\.\.\/\.\.\/etc\/cron\.d\/x: unsafe name/],
      ['/etc/passwd', /member \/etc\/passwd: unsafe name: absolute name/],
      ['a\\b', /member a\\\\b: unsafe name: name contains a backslash/],
      ['sp ace', /member sp ace: invalid name/],
    ];
    for (const [name, re] of cases) {
      const p = join(tmp.dir, 'n.tar');
      writeFileSync(p, await hostile([{ name, data: 'x' }]));
      await t.throwsAsync(consume(p), { instanceOf: ArchiveError, message: re }, name);
    }
    // directory entries are ignored, but their names are checked too
    const p = join(tmp.dir, 'd.tar');
    writeFileSync(p, await hostile([{ name: 'maps/', type: 'directory' }]));
    await t.notThrowsAsync(consume(p));
    writeFileSync(p, await hostile([{ name: '../up/', type: 'directory' }]));
    await t.throwsAsync(consume(p), { message: /member \.\.\/up: unsafe name/ });
  } finally {
    tmp.cleanup();
  }
});

test('directory archive: a symlink planted in place of a member is refused', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'ckpt');
    await writeSample(await openArchiveWriter(out, HEADER));
    const secret = join(tmp.dir, 'secret');
    writeFileSync(secret, 'secret');
    const victim = join(out, 'maps/0000/data-000001.bin');
    unlinkSync(victim);
    symlinkSync(secret, victim);
    const e = await t.throwsAsync(openArchiveReader(out), { instanceOf: ArchiveError });
    t.is(e!.message, `archive ${out}: member maps/0000/data-000001.bin: is a symlink; refusing to follow it`);
    t.is(e!.code, 'UNSAFE');
    await t.throwsAsync(verifyArchive(out), { message: /is a symlink; refusing to follow it/ });
  } finally {
    tmp.cleanup();
  }
});

test('directory archive: a symlinked subdirectory, a fifo, and unlisted files are refused', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'ckpt');
    await writeSample(await openArchiveWriter(out, HEADER));
    // maps/0001 → a copy elsewhere via symlink
    const elsewhere = join(tmp.dir, 'elsewhere');
    renameSync(join(out, 'maps/0001'), elsewhere);
    symlinkSync(elsewhere, join(out, 'maps/0001'));
    await t.throwsAsync(openArchiveReader(out), { message: /member maps\/0001: is a symlink; refusing to follow it/ });
    unlinkSync(join(out, 'maps/0001'));
    renameSync(elsewhere, join(out, 'maps/0001'));
    await t.notThrowsAsync(consume(out));

    const meta = join(out, 'maps/0001/meta.json');
    const saved = readFileSync(meta);
    unlinkSync(meta);
    execFileSync('mkfifo', [meta]);
    await t.throwsAsync(openArchiveReader(out), { message: /member maps\/0001\/meta\.json: not a regular file/ });
    unlinkSync(meta);
    writeFileSync(meta, saved);

    writeFileSync(join(out, 'maps/0001/extra.bin'), 'x');
    await t.throwsAsync(openArchiveReader(out), { message: `archive ${out}: member maps/0001/extra.bin: not listed in manifest.json` });
    const v = await verifyArchive(out);
    t.false(v.ok);
    t.deepEqual(v.members.filter((m) => !m.ok).map((m) => [m.name, m.problem, m.size]), [['maps/0001/extra.bin', 'not listed in manifest', 1]]);
    unlinkSync(join(out, 'maps/0001/extra.bin'));

    unlinkSync(join(out, 'btf/12.btf'));
    const r = await openArchiveReader(out);
    await t.throwsAsync(readAll(r), { message: `archive ${out}: member btf/12.btf: listed in manifest.json but missing from the archive` });
    const v2 = await verifyArchive(out);
    t.deepEqual(v2.members.filter((m) => !m.ok).map((m) => [m.name, m.problem]), [['btf/12.btf', 'missing']]);

    unlinkSync(join(out, MANIFEST_MEMBER));
    await t.throwsAsync(openArchiveReader(out), { message: `archive ${out} is incomplete: no manifest.json (truncated or interrupted dump?)` });
  } finally {
    tmp.cleanup();
  }
});

test('output files are 0600 and directories 0700 whatever the umask', async (t) => {
  const tmp = tempDir();
  const old = process.umask();
  try {
    for (const umask of [0o022, 0o000, 0o277]) {
      process.umask(umask);
      for (const name of ['a.tar', 'a.tar.gz', 'a.tar.zst']) {
        const out = join(tmp.dir, `${umask}-${name}`);
        await writeSample(await openArchiveWriter(out, HEADER));
        t.is(statSync(out).mode & 0o7777, 0o600, `${name} umask ${umask.toString(8)}`);
      }
      const dir = join(tmp.dir, `${umask}-dir`);
      await writeSample(await openArchiveWriter(dir, HEADER));
      const walk = (p: string): void => {
        const st = statSync(p);
        if (st.isDirectory()) {
          t.is(st.mode & 0o7777, 0o700, `${p} umask ${umask.toString(8)}`);
          for (const n of readdirSync(p)) walk(join(p, n));
        } else {
          t.is(st.mode & 0o7777, 0o600, `${p} umask ${umask.toString(8)}`);
        }
      };
      walk(dir);
    }
  } finally {
    process.umask(old);
    tmp.cleanup();
  }
});

for (const name of ['a.tar', 'a.tar.gz', 'a.tar.zst', 'ckpt']) {
  test(`abort leaves no output and no .partial-* (${name})`, async (t) => {
    const tmp = tempDir();
    try {
      const out = join(tmp.dir, name);
      const w = await openArchiveWriter(out, HEADER);
      await w.addMember('maps/0000/data-000000.bin', bytes(3 << 20, 1));
      t.deepEqual(partials(tmp.dir).length, 1, 'written to a .partial-* sibling while open');
      t.false(existsSync(out));
      await w.abort();
      t.deepEqual(readdirSync(tmp.dir), []);
      await w.abort(); // idempotent
      await t.throwsAsync(w.addMember('x', Buffer.alloc(1)), { message: /writer is already aborted/ });
    } finally {
      tmp.cleanup();
    }
  });
}

test('abort on a stream target destroys the stream; the partial tar is recognisably incomplete', async (t) => {
  const s = sink();
  const chunks: Buffer[] = [];
  s.stream.on('data', (c: Buffer) => chunks.push(c));
  const w = await openArchiveWriter({ stream: s.stream, compression: 'none' }, HEADER);
  await w.addMember('a.bin', bytes(100_000, 1));
  await w.abort(new Error('boom'));
  t.true(s.stream.destroyed);
  await t.throwsAsync(s.done, { message: 'boom' });
  const r = await openArchiveReader(
    (await import('node:stream')).Readable.from([Buffer.concat(chunks)]),
  );
  await readAll(r).catch(() => {});
  await t.throwsAsync(r.finish(), { message: /is incomplete/ });
});

test('an existing output is never overwritten unless asked; overwrite replaces it', async (t) => {
  const tmp = tempDir();
  try {
    for (const name of ['a.tar', 'a.tar.zst', 'ckpt']) {
      const out = join(tmp.dir, name);
      if (name === 'ckpt') {
        mkdirSync(out);
        writeFileSync(join(out, 'precious'), 'keep');
      } else writeFileSync(out, 'precious');
      const e = await t.throwsAsync(openArchiveWriter(out, HEADER), { instanceOf: ArchiveError });
      t.is(e!.code, 'EXISTS');
      t.is(e!.message, `archive ${out}: refusing to overwrite existing output (use the overwrite option)`);
      t.deepEqual(partials(tmp.dir), []);

      await writeSample(await openArchiveWriter(out, HEADER, { overwrite: true }));
      const r = await openArchiveReader(out);
      await readAll(r);
      await r.finish();
      t.deepEqual(partials(tmp.dir), []);
    }
    // output that appears while the dump runs is not clobbered either
    const late = join(tmp.dir, 'late.tar');
    const w = await openArchiveWriter(late, HEADER);
    await w.addMember('a.bin', Buffer.from('a'));
    writeFileSync(late, 'someone else');
    await t.throwsAsync(w.finish(), { message: /refusing to overwrite existing output/ });
    t.is(readFileSync(late, 'utf8'), 'someone else');
    t.deepEqual(partials(tmp.dir), []);

    const lateDir = join(tmp.dir, 'late-dir');
    const wd = await openArchiveWriter(lateDir, HEADER);
    mkdirSync(lateDir);
    writeFileSync(join(lateDir, 'x'), 'x');
    await t.throwsAsync(wd.finish(), { message: /refusing to overwrite existing output/ });
    t.deepEqual(readdirSync(lateDir), ['x']);
    t.deepEqual(partials(tmp.dir), []);
  } finally {
    tmp.cleanup();
  }
});

test('addMember validates names and keeps the archive usable', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'a.tar');
    const w = await openArchiveWriter(out, HEADER);
    await w.addMember('maps/0000/meta.json', Buffer.from('{}'));
    const bad: [string, RegExp][] = [
      ['../x', /invalid name: name contains a '\.\.' component/],
      ['/abs', /invalid name: absolute name/],
      ['a//b', /invalid name/],
      ['a/./b', /invalid name: name contains a '\.' component/],
      ['a\\b', /invalid name: name contains a backslash/],
      ['sp ace', /invalid name/],
      ['', /invalid name: empty name/],
      ['x'.repeat(201), /invalid name: name longer than 200 characters/],
      ['nul\0x', /invalid name: name contains NUL/],
      [MANIFEST_MEMBER, /name is reserved/],
      [HEADER_MEMBER, /name is reserved/],
      ['maps/0000/meta.json', /duplicate member name/],
      ['maps/0000', /already used as a directory/],
      ['maps/0000/meta.json/x', /parent maps\/0000\/meta\.json is already a member/],
    ];
    for (const [name, re] of bad) {
      const e = await t.throwsAsync(w.addMember(name, Buffer.from('x')), { instanceOf: ArchiveError, message: re }, name);
      t.is(e!.code, 'USAGE');
    }
    await t.throwsAsync(w.addMember('ok.bin', 'text' as unknown as Buffer), { message: /data must be a Buffer/ });
    await w.addMember('x'.repeat(200), Buffer.from('max length'));
    await t.throwsAsync(w.finish({ members: [] }), { message: /must not set the reserved field members/ });
    const manifest = await w.finish({});
    t.deepEqual(manifest.members.map((m) => m.name), [HEADER_MEMBER, 'maps/0000/meta.json', 'x'.repeat(200)]);
    const r = await openArchiveReader(out);
    t.deepEqual((await readAll(r)).names, ['maps/0000/meta.json', 'x'.repeat(200)]);
    await r.finish();
  } finally {
    tmp.cleanup();
  }
});

test('finish validates the body, and a finished writer refuses more work', async (t) => {
  const tmp = tempDir();
  try {
    const out = join(tmp.dir, 'a.tar');
    const w = await openArchiveWriter(out, HEADER);
    await t.throwsAsync(w.finish({ version: 2 }), { message: /reserved field version/ });
    await t.throwsAsync(w.finish([] as never), { message: /body must be a JSON object/ });
    await t.throwsAsync(w.finish({ n: 1n }), { message: /manifest body is not serialisable/ });
    t.false(existsSync(out));
    t.deepEqual(readdirSync(tmp.dir), [], 'a finish that failed after validation removes the partial output');
    const w2 = await openArchiveWriter(out, HEADER);
    await w2.finish({ note: 'x' });
    await t.throwsAsync(w2.addMember('a', Buffer.alloc(1)), { message: /already finished/ });
    await w2.abort(); // no-op after finish: the output stays
    t.true(existsSync(out));
  } finally {
    tmp.cleanup();
  }
});

test('writer refuses bad headers, unknown compression, and a missing zstd command', async (t) => {
  const tmp = tempDir();
  try {
    await t.throwsAsync(openArchiveWriter(join(tmp.dir, 'a.tar'), { ...HEADER, version: 1 }), { message: /writes format version 2, not 1/ });
    await t.throwsAsync(openArchiveWriter(join(tmp.dir, 'a.tar'), { ...HEADER, possibleCpus: 0 }), { message: /possibleCpus/ });
    await t.throwsAsync(openArchiveWriter({ stream: sink().stream, compression: 'lz4' as never }, HEADER), { message: /unknown compression "lz4"/ });
    await t.throwsAsync(openArchiveWriter(join(tmp.dir, 'nodir', 'a.tar'), HEADER), { message: /cannot create output: parent directory does not exist/ });
    const e = await t.throwsAsync(openArchiveWriter(join(tmp.dir, 'a.tar.zst'), HEADER, { zstdCommand: join(tmp.dir, 'no-zstd') }), {
      instanceOf: ArchiveError,
    });
    t.is(e!.code, 'TOOL');
    t.regex(e!.message, /needs the zstd command.*install the package zstd/);
    t.false(e!.message.includes('\n'));
    t.deepEqual(readdirSync(tmp.dir), []);
  } finally {
    tmp.cleanup();
  }
});
