/**
 * What bpfcr prints (issue 11): strings from an archive reach the terminal escaped (one escaping
 * function, termSafe, for every printer); a bug in bpfcr is reported as an internal error with how
 * to get its stack, never as a bare TypeError message; messages name the flag that fixes them.
 */
import test from 'ava';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeHeader } from '../../src/archive/format.js';
import { termSafe } from '../../src/archive/names.js';
import { openArchiveWriter } from '../../src/archive/writer.js';
import { failureLine, isInternalError } from '../../src/failure.js';
import { bpfcr, requireRoot, startHolder, tempDir } from '../helpers/env.js';

test.before(() => requireRoot());

const EVIL = 'x\x1b]0;owned\x07\x1b[2J\r\u202e\x85';

/** An archive (valid checksums) whose header and manifest say what `edit` makes of them. */
async function craft(path: string, maps: unknown[], hostname = 'host'): Promise<void> {
  const w = await openArchiveWriter(path, makeHeader({ tool: { name: 'bpfcr', version: '0.1.0' }, possibleCpus: 2, hostname }));
  await w.finish({ maps: maps as never[], btf: [] });
}

test.serial('inspect escapes the names an archive carries (host name, map names, types)', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'evil.tar');
  const rec = { index: 0, id: 7, name: `m${EVIL}`, type: `hash${EVIL}`, typeId: 1, keySize: 4, valueSize: 8, maxEntries: 1, flags: 0, mapExtra: '0', frozen: false, policy: 'content', btf: null, layout: 'kv', valueStride: 8, top: true, refs: [], entries: 0, chunks: 0 };
  await craft(path, [rec], `h${EVIL}`);
  for (const args of [['inspect', path], ['inspect', '--json', path], ['restore', path, '--pin-dir', join(dir, 'pins')]]) {
    const r = await bpfcr(args);
    const out = r.stdout + r.stderr;
    t.false(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/.test(out), `${args[0]}: no control character reaches the terminal: ${JSON.stringify(out)}`);
  }
  const r = await bpfcr(['inspect', path]);
  t.regex(r.stdout, /on hx\\x1b\]0;owned\\x07\\x1b\[2J\\x0d\\u202e\\x85 /);
});

test('termSafe: control characters, DEL, C1, bidi overrides and backslashes are escaped; the rest is kept', (t) => {
  t.is(termSafe('a\x00b\x1b\x7f\x85\\\u202e é 日本'), 'a\\x00b\\x1b\\x7f\\x85\\\\\\u202e é 日本');
  t.is(termSafe('line1\nline2'), 'line1\\x0aline2', 'a message can never fake a second line');
});

test('failureLine: expected errors as they are; language errors, wrapped or not, as internal errors with the hint', (t) => {
  t.is(failureLine('bpfcr dump', new Error('map id 3: gone')), 'bpfcr dump: map id 3: gone');
  t.false(isInternalError(new Error('x', { cause: Object.assign(new Error('ENOENT'), { code: 'ENOENT' }) })));
  const bug = new TypeError("Cannot read properties of undefined (reading 'id')");
  t.is(failureLine('bpfcr dump', bug), "bpfcr dump: internal error: TypeError: Cannot read properties of undefined (reading 'id') (a bug in bpfcr: run again with BPFCR_DEBUG=1 for the stack trace, and report it)");
  t.regex(failureLine('bpfcr criu-action', new Error('post-dump: boom', { cause: bug })), /^bpfcr criu-action: internal error: TypeError: post-dump: boom \(a bug in bpfcr: /);
  t.regex(failureLine('bpfcr', 'thrown string'), /^bpfcr: internal error: string: thrown string/);
  t.is(failureLine('p', new Error('two\nlines\x1b')), 'p: two / lines\\x1b');
});

test.serial('an unexpected TypeError reaches the user as one "internal error" line with the hint, the stack with BPFCR_DEBUG', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'null-map.tar');
  await craft(path, [null]); // a manifest bpfcr itself never writes
  const r = await bpfcr(['inspect', path]);
  t.is(r.exitCode, 1);
  t.is(r.stderr.split('\n').length, 1, r.stderr);
  t.notRegex(r.stderr, /^bpfcr inspect: (Cannot read|[a-z]+ is not)/, 'never a bare language error');
  if (/TypeError/.test(r.stderr)) {
    t.regex(r.stderr, /^bpfcr inspect: internal error: TypeError: .* \(a bug in bpfcr: run again with BPFCR_DEBUG=1 for the stack trace, and report it\)$/);
    const dbg = await bpfcr(['inspect', path], { env: { BPFCR_DEBUG: '1' } });
    t.regex(dbg.stderr, /\n {4}at /, 'the stack trace');
  } else {
    t.regex(r.stderr, new RegExp(`^bpfcr inspect: .*${path}`), 'a validated manifest: a one-line error naming the archive');
  }
});

test.serial('dump onto an existing output names --force', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const h = await startHolder(['hold', 'hash:f:entries=3']);
  t.teardown(() => h.kill());
  const out = join(dir, 'x.tar');
  writeFileSync(out, 'there');
  const r = await bpfcr(['dump', '--pid', String(h.pid), '-o', out]);
  t.is(r.exitCode, 1);
  t.is(r.stderr, `bpfcr dump: archive ${out}: exists; use --force to replace it`);
  const f = await bpfcr(['dump', '--pid', String(h.pid), '-o', out, '--force']);
  t.is(f.exitCode, 0, f.stderr);
});
