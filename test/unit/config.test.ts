import test from 'ava';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseConfig, policyFor } from '../../src/config/config.js';
import { formatSize, parseSize } from '../../src/config/size.js';
import { ROOT } from '../helpers/env.js';
import { mapTypeByName } from '../../src/maps/types.js';

test('policy resolution: per-map name beats per-type beats default', (t) => {
  const cfg = parseConfig({ policy: { types: { prog_array: 'empty', hash: 'refuse' }, maps: { keep: 'content' } } }, 'c.yaml');
  const hash = mapTypeByName('hash')!;
  const prog = mapTypeByName('prog_array')!;
  t.is(policyFor(cfg, hash, 'keep').policy, 'content');
  t.is(policyFor(cfg, hash, 'other').policy, 'refuse');
  t.regex(policyFor(cfg, hash, 'other').from, /policy.types.hash in c.yaml/);
  t.is(policyFor(cfg, prog, 'x').policy, 'empty');
  t.is(policyFor(cfg, mapTypeByName('sockmap')!, 'x').policy, 'refuse');
  t.is(policyFor(cfg, mapTypeByName('ringbuf')!, 'x').policy, 'empty');
});

test('config errors name the file and the key path', (t) => {
  t.throws(() => parseConfig({ policy: { types: { nosuch: 'empty' } } }, 'c.yaml'), { message: 'config c.yaml: policy.types.nosuch: unknown map type "nosuch"' });
  t.throws(() => parseConfig({ policy: { maps: { x: 'maybe' } } }, 'c.yaml'), { message: /policy.maps.x: must be one of content, empty, refuse/ });
  t.throws(() => parseConfig({ polcy: {} }, 'c.yaml'), { message: /polcy: unknown key/ });
  t.throws(() => parseConfig({ policy: { types: { prog_array: 'content' } } }, 'c.yaml'), { message: /content is impossible for PROG_ARRAY/ });
  t.throws(() => parseConfig({ policy: { types: { struct_ops: 'empty' } } }, 'c.yaml'), { message: /empty is impossible for STRUCT_OPS/ });
  t.throws(() => parseConfig({ percpu: { cpu_mismatch: 'sum' } }, 'c.yaml'), { message: /percpu.cpu_mismatch/ });
  t.throws(() => parseConfig({ inner_templates: { outer: { type: 'hash', key_size: 4 } } }, 'c.yaml'), { message: /inner_templates.outer.value_size/ });
});

test('YAML syntax errors carry the line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bpfcr-cfg-'));
  try {
    const p = join(dir, 'config.yaml');
    writeFileSync(p, 'policy:\n  types:\n    hash: [empty\n');
    await t.throwsAsync(loadConfig(p), { message: new RegExp(`config ${p}: line \\d+ col \\d+`) });
    writeFileSync(p, 'percpu:\n  cpu_mismatch: zero-fill\ninner_templates:\n  outer: {type: hash, key_size: 4, value_size: 8, max_entries: 16}\n');
    const cfg = await loadConfig(p);
    t.is(cfg.cpuMismatch, 'zero-fill');
    t.deepEqual(cfg.innerTemplates.get('outer'), { type: 1, keySize: 4, valueSize: 8, maxEntries: 16, flags: 0 });
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('restore budgets: sizes with binary units, "auto" for the kernel default, refused otherwise; the shipped config.yaml parses to the defaults', async (t) => {
  const d = parseConfig(null, 'c.yaml');
  t.is(d.memoryBudget, Math.min(4 * 2 ** 30, Math.floor(totalmem() / 2)));
  t.is(d.hostMemoryBudget, 256 * 2 ** 20);
  const cfg = parseConfig({ restore: { memory_budget: '1.5GiB', host_memory_budget: 1048576 } }, 'c.yaml');
  t.is(cfg.memoryBudget, 1.5 * 2 ** 30);
  t.is(cfg.hostMemoryBudget, 2 ** 20);
  t.is(parseConfig({ restore: { memory_budget: 'auto' } }, 'c.yaml').memoryBudget, d.memoryBudget);
  for (const [v, unit] of [['4G', 2 ** 32], ['512MiB', 2 ** 29], ['2 kb', 2048], ['1T', 2 ** 40]] as const) t.is(parseSize(v), unit, v);
  for (const v of ['-1', '0', 'lots', '4 GiBs', '1e9', '', null, 1.5]) t.is(parseSize(v), undefined, String(v));
  t.throws(() => parseConfig({ restore: { memory_budget: 'lots' } }, 'c.yaml'), { message: 'config c.yaml: restore.memory_budget: must be a size such as 4GiB, 512MiB or a number of bytes, got "lots"' });
  t.throws(() => parseConfig({ restore: { budget: 1 } }, 'c.yaml'), { message: /restore.budget: unknown key \(expected one of: memory_budget, host_memory_budget\)/ });
  t.is(formatSize(1536), '1.5 KiB');
  t.is(formatSize(3 * 2 ** 30), '3.0 GiB');
  const shipped = await loadConfig(join(ROOT, 'config/config.yaml'));
  t.is(shipped.memoryBudget, d.memoryBudget);
  t.is(shipped.hostMemoryBudget, d.hostMemoryBudget);
});

test('a config file from anywhere: keys and values with control characters are escaped in the one-line error; an alias bomb and YAML warnings are one-line errors or silent, never a stack or stray stderr', async (t) => {
  t.throws(() => parseConfig({ 'pol\u001b[2Jicy\r\n': {} }, 'c.yaml'), { message: /^config c\.yaml: pol\\x1b\[2Jicy\\x0d\\x0a: unknown key/ });
  t.throws(() => parseConfig({ inner_templates: { o: { type: 'a\nb' } } }, 'c.yaml'), { message: 'config c.yaml: inner_templates.o.type: unknown map type "a\\x0ab"' });
  const dir = mkdtempSync(join(tmpdir(), 'bpfcr-cfg-'));
  const warnings: string[] = [];
  const onWarning = (w: Error): void => { warnings.push(w.message); };
  process.on('warning', onWarning);
  try {
    const p = join(dir, 'config.yaml');
    const laughs = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 8; i++) laughs.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(', ')}]`);
    writeFileSync(p, `${laughs.join('\n')}\n`);
    const e = await t.throwsAsync(loadConfig(p), { instanceOf: ConfigError });
    t.regex(e!.message, /^config \S+: .*alias/i);
    t.notRegex(e!.message, /\n/);
    writeFileSync(p, 'percpu: &x: {cpu_mismatch: zero-fill}\n');
    await loadConfig(p).catch(() => undefined);
    await new Promise((r) => setImmediate(r));
    t.deepEqual(warnings, []);
  } finally {
    process.off('warning', onWarning);
    rmSync(dir, { recursive: true });
  }
});

test.serial('the parsed config is cached: a hit gives what parsing the file gives, an edit of the same size is seen', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bpfcr-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = join(dir, 'config.yaml');
  const saved = { config: process.env['BPFCR_CONFIG'], run: process.env['BPFCR_RUN_DIR'] };
  process.env['BPFCR_CONFIG'] = cfg;
  process.env['BPFCR_RUN_DIR'] = join(dir, 'run');
  try {
    const parsed = async (): Promise<unknown> => { rmSync(join(dir, 'run', 'config-cache.json'), { force: true }); return loadConfig(cfg); };
    writeFileSync(cfg, 'policy:\n  types:\n    prog_array: empty\nstaging: /sys/fs/bpf/elsewhere\n');
    const first = await loadConfig();
    t.true(existsSync(join(dir, 'run', 'config-cache.json')));
    t.is(statSync(join(dir, 'run', 'config-cache.json')).mode & 0o777, 0o600);
    t.is(first.staging, '/sys/fs/bpf/elsewhere');
    t.deepEqual(await loadConfig(), first, 'from the cache');
    t.deepEqual(await parsed(), first, 'the same as parsing the file');
    // same size, same second: only the text tells the edit
    writeFileSync(cfg, 'policy:\n  types:\n    prog_array: refuse\nstaging: /sys/fs/bpf/elsewherf\n');
    const edited = await loadConfig();
    t.is(edited.staging, '/sys/fs/bpf/elsewherf');
    t.deepEqual(edited, await parsed());
    writeFileSync(cfg, 'policy: [unclosed\n');
    await t.throwsAsync(loadConfig(), { message: /^config .*config\.yaml: line \d+/ });
    process.env['BPFCR_CONFIG'] = '';
    t.is((await loadConfig()).source, 'built-in defaults');
  } finally {
    for (const [k, v] of [['BPFCR_CONFIG', saved.config], ['BPFCR_RUN_DIR', saved.run]] as const) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  }
});
