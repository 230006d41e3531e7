/**
 * Corrupt and oversized input through the CLI as operators run it (issue 11): every corrupt file is
 * one line on stderr naming it — never a stack trace — and nothing is left behind: no pin dir the
 * restore created, no temporary file. Disk limits apply before anything is written, and when the
 * disk is full the message names the archive, the member and the directory.
 */
import test from 'ava';
import { execa } from 'execa';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { CLI, bpfcr, requireRoot, tempDir, withScenario, type CliResult } from '../helpers/env.js';

test.before(() => requireRoot());

/** Deterministic, compressible filler (a CRIU pages image stand-in). */
function filler(n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = 0x61 + ((x >>> 16) & 7);
  }
  return b;
}

/** A podman-export look-alike: checkpoint/pages-1.img first, then what `files` names. */
async function exportOf(work: string, name: string, files: Record<string, Buffer>, compress: 'gzip' | 'zstd'): Promise<string> {
  const root = join(work, `${name}.d`);
  mkdirSync(join(root, 'checkpoint'), { recursive: true });
  writeFileSync(join(root, 'checkpoint/pages-1.img'), filler(3 << 20));
  for (const [f, data] of Object.entries(files)) {
    mkdirSync(join(root, f, '..'), { recursive: true });
    writeFileSync(join(root, f), data);
  }
  const out = join(work, `${name}.tar.${compress === 'gzip' ? 'gz' : 'zst'}`);
  await execa('tar', ['-C', root, compress === 'gzip' ? '-z' : '--zstd', '-cf', out, 'checkpoint/pages-1.img', ...Object.keys(files)]);
  return out;
}

/** One line, naming `file`, no stack trace. */
function oneLineNaming(t: import('ava').ExecutionContext, r: CliResult, file: string, what: string): void {
  t.is(r.exitCode, 1, `${what}: ${r.stdout}`);
  t.is(r.stderr.split('\n').length, 1, `${what}: one line: ${r.stderr}`);
  t.true(r.stderr.includes(file), `${what}: names ${file}: ${r.stderr}`);
  t.notRegex(r.stderr, /\n\s+at |node:events|Unhandled/, what);
}

async function tmpfs(dir: string, size: string): Promise<() => Promise<void>> {
  mkdirSync(dir, { recursive: true });
  await execa('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
  return async () => { await execa('umount', [dir]).catch(() => undefined); };
}

test.serial('truncated and corrupt .tar.zst/.tar.gz, and a corrupt gzip export look-alike: one line naming the file, no pin dir, no temporary files', async (t) => {
  await withScenario(['hold', 'hash:hi_h:entries=400,max=512', 'array:hi_a:max=64,entries=64'], async ({ holder, work, fs }) => {
    const cases: [string, Buffer][] = [];
    for (const ext of ['tar.zst', 'tar.gz']) {
      const out = join(work, `x.${ext}`);
      t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', out])).exitCode, 0);
      const b = readFileSync(out);
      cases.push([`trunc.${ext}`, b.subarray(0, Math.floor(b.length / 2))]);
      const c = Buffer.from(b);
      c.fill(0xff, Math.floor(c.length / 2), Math.floor(c.length / 2) + 8);
      cases.push([`corrupt.${ext}`, c]);
    }
    const plain = join(work, 'x.tar');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', plain])).exitCode, 0);
    for (const compress of ['gzip', 'zstd'] as const) {
      const exp = readFileSync(await exportOf(work, `exp-${compress}`, { 'checkpoint/bpfcr.tar': readFileSync(plain) }, compress));
      const c = Buffer.from(exp);
      c.fill(0xff, Math.floor(c.length * 0.6), Math.floor(c.length * 0.6) + 8);
      cases.push([`export-corrupt-${compress}.tar.${compress === 'gzip' ? 'gz' : 'zst'}`, c]);
    }
    const tmp = join(work, 'tmp');
    mkdirSync(tmp);
    for (const [name, data] of cases) {
      const file = join(work, name);
      writeFileSync(file, data);
      const pin = join(fs.dir, 'new');
      for (const args of [['restore', file, '--pin-dir', pin], ['inspect', file]]) {
        const r = await bpfcr(args, { env: { TMPDIR: tmp } });
        oneLineNaming(t, r, file, `${args[0]} ${name}`);
        t.false(existsSync(pin), `${name}: the pin dir restore created is removed`);
        t.deepEqual(readdirSync(tmp), [], `${name}: nothing left in TMPDIR`);
      }
    }
  });
});

test.serial('an export look-alike: a nested bpfcr.tar that is not one, or does not fit in TMPDIR, is refused before it is copied out', async (t) => {
  await withScenario(['hold', 'hash:hx_h:key=8,value=64,entries=60000,max=65536'], async ({ holder, work, fs }) => {
    const plain = join(work, 'x.tar');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', plain])).exitCode, 0);
    const tmp = join(work, 'tmp');
    const umount = await tmpfs(tmp, '1m');
    try {
      const junk = await exportOf(work, 'junk', { 'checkpoint/bpfcr.tar': filler(512 << 10) }, 'zstd');
      const j = await bpfcr(['restore', junk, '--pin-dir', join(fs.dir, 'p')], { env: { TMPDIR: tmp } });
      oneLineNaming(t, j, junk, 'junk');
      t.regex(j.stderr, /member checkpoint\/bpfcr\.tar: not a bpfcr archive \(it does not start with bpfcr-archive\.json\)$/);
      t.deepEqual(readdirSync(tmp), []);
      const big = await exportOf(work, 'big', { 'checkpoint/bpfcr.tar': readFileSync(plain) }, 'zstd');
      const b = await bpfcr(['restore', big, '--pin-dir', join(fs.dir, 'p')], { env: { TMPDIR: tmp } });
      oneLineNaming(t, b, big, 'big');
      t.regex(b.stderr, new RegExp(`member checkpoint/bpfcr\\.tar: \\d+ bytes do not fit in ${tmp}/bpfcr-export-\\w+ \\(only \\d+ bytes free\\); set TMPDIR to a directory with more room$`));
      t.deepEqual(readdirSync(tmp), []);
    } finally {
      await umount();
    }
  });
});

test.serial('an archive under a prefix: a member that cannot be spooled names the archive, the member and the directory; one over the host budget is refused before it is spooled', async (t) => {
  await withScenario(['hold', 'hash:hs_h:key=8,value=64,entries=60000,max=65536'], async ({ holder, work, fs }) => {
    const dir = join(work, 'dirform');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', `${dir}/`])).exitCode, 0);
    // the older export layout: the directory archive under checkpoint/bpfcr/, in lexical order,
    // so the map's data comes before its meta.json and must wait in the spool
    const root = join(work, 'exp');
    mkdirSync(join(root, 'checkpoint'), { recursive: true });
    await execa('cp', ['-r', dir, join(root, 'checkpoint/bpfcr')]);
    const exp = join(work, 'exp.tar.zst');
    await execa('tar', ['-C', root, '--zstd', '--sort=name', '-cf', exp, 'checkpoint']);
    const tmp = join(work, 'tmp');
    const umount = await tmpfs(tmp, '1m');
    try {
      const r = await bpfcr(['restore', exp, '--pin-dir', join(fs.dir, 'p')], { env: { TMPDIR: tmp } });
      oneLineNaming(t, r, exp, 'spool');
      t.regex(r.stderr, new RegExp(`member maps/0000/data-000000\\.bin: cannot spool it \\(\\d+ bytes\\) in ${tmp}/bpfcr-spool-\\w+: only \\d+ bytes free; set TMPDIR to a directory with more room$`));
      t.deepEqual(readdirSync(tmp), []);
      t.false(existsSync(join(fs.dir, 'p')));
    } finally {
      await umount();
    }
    const tmp2 = tempDir();
    try {
      const r = await bpfcr(['restore', exp, '--pin-dir', join(fs.dir, 'q'), '--host-memory-budget', '1MiB'], { env: { TMPDIR: tmp2 } });
      oneLineNaming(t, r, exp, 'budget');
      t.regex(r.stderr, /member maps\/0000\/data-000000\.bin: \d+ bytes is too large to read into memory \(limit 1048576\)$/);
      t.deepEqual(readdirSync(tmp2), [], 'refused before it was spooled');
      const ok = await bpfcr(['restore', exp, '--pin-dir', join(fs.dir, 'q')], { env: { TMPDIR: tmp2 } });
      t.is(ok.exitCode, 0, ok.stderr);
      t.deepEqual(readdirSync(tmp2), []);
    } finally {
      rmSync(tmp2, { recursive: true, force: true });
    }
  });
});

test.serial('SIGTERM during a restore removes the pin dir it created', async (t) => {
  await withScenario(['hold', 'hash:hg_h:entries=3,max=4'], async ({ holder, work, fs }) => {
    const out = join(work, 'x.tar');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', out])).exitCode, 0);
    const pin = join(fs.dir, 'deep', 'pins');
    // stdin stays open after the first half of the archive: the restore waits for the rest
    const child = spawn(process.execPath, [CLI, 'restore', '-', '--pin-dir', pin], { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, BPFCR_CONFIG: '' } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const tar = readFileSync(out);
    child.stdin.write(tar.subarray(0, 1024));
    const deadline = Date.now() + 10_000;
    while (!existsSync(pin) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    t.true(existsSync(pin), 'the restore created its pin dir');
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    t.is(await exited, 143);
    t.regex(stderr, /interrupted \(SIGTERM\)/);
    t.false(existsSync(join(fs.dir, 'deep')), 'every directory it created is gone');
  });
});
