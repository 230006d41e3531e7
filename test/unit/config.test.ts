import test from 'ava';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, parseConfig, policyFor } from '../../src/config/config.js';
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
