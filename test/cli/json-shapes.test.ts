/**
 * `--json` on every command that prints (issue 13): one JSON document on stdout with the top-level
 * shape docs/cli-json.md documents, whatever the command. A field renamed or dropped fails here.
 */
import test from 'ava';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { bpfcr, freshBpffs, requireRoot, ROOT, startHolder, tempDir } from '../helpers/env.js';

test.before(() => requireRoot());

function keys(v: unknown): string[] {
  return Object.keys(v as object).sort();
}

test.serial('dump, restore, inspect, show, diff, doctor, gc: the documented shapes', async (t) => {
  const h = await startHolder(['hold', 'hash:flows:entries=5,btf=1', 'array_of_maps:outer:entries=1']);
  const work = tempDir();
  const fs = await freshBpffs();
  t.teardown(async () => { await h.kill(); await fs.cleanup(); rmSync(work, { recursive: true, force: true }); });
  const a = join(work, 'a.tar');
  const run = async (args: string[], code = 0): Promise<unknown> => {
    const r = await bpfcr([...args, '--json']);
    t.is(r.exitCode, code, `${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as unknown;
  };
  const dump = await run(['dump', '--pid', String(h.pid), '-o', a]) as { maps: unknown[] };
  t.deepEqual(keys(dump), ['entries', 'maps', 'output', 'seconds']);
  t.deepEqual(keys(dump.maps[0]), ['chunks', 'entries', 'id', 'index', 'name', 'policy', 'top', 'type']);
  const restore = await run(['restore', a, '--pin-dir', join(fs.dir, 'r')]) as { maps: unknown[] };
  t.deepEqual(keys(restore), ['maps']);
  t.deepEqual(keys(restore.maps.find((m) => (m as { top: boolean }).top)), ['entries', 'index', 'name', 'newId', 'oldId', 'pinPath', 'top', 'type']);
  t.deepEqual(keys(await run(['inspect', a])), ['manifest', 'members', 'ok']);
  const show = await run(['show', a, 'flows']) as unknown[];
  t.true(Array.isArray(show));
  t.deepEqual(keys(show[0]), ['formatted', 'key', 'value']);
  t.deepEqual(keys((await run(['show', a, 'outer']) as unknown[])[0]), ['inner_map_id', 'inner_map_index', 'inner_map_name', 'key', 'value']);
  const diff = await run(['diff', a, a]) as { maps: unknown[] };
  t.deepEqual(keys(diff), ['a', 'b', 'maps', 'same']);
  t.deepEqual(keys(diff.maps[0]), ['a', 'added', 'b', 'changed', 'counts', 'metadata', 'name', 'removed', 'status']);
  const doctor = await run(['doctor']) as { checks: unknown[] };
  t.deepEqual(keys(doctor), ['checks', 'failed', 'ok', 'warnings']);
  const gc = await run(['gc', '--all', '--dry-run', '--staging', fs.dir]);
  t.deepEqual(keys(gc), ['checkpoints', 'dryRun', 'pins', 'recovered', 'removed', 'root']);
  // every command named here is in the document
  const doc = readFileSync(join(ROOT, 'docs/cli-json.md'), 'utf8');
  for (const c of ['dump', 'restore', 'inspect', 'show', 'diff', 'doctor', 'gc']) t.regex(doc, new RegExp(`^## ${c}$`, 'm'));
});
