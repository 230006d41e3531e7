/**
 * Types whose contents cannot be carried: refused by default with a message naming pid, fd,
 * map id, name, type and the policy that would let it through; recreated empty under `empty`.
 */
import test from 'ava';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withScenario, bpfcr, describe, requireRoot, startHolder, tempDir } from '../helpers/env.js';

test.before(() => requireRoot());

/**
 * Every refuse-by-default type this kernel lets user space create without a program (local-storage
 * maps are carried per owner: test/engine/local-storage.test.ts).
 */
const REFUSED = [
  'prog_array', 'devmap', 'devmap_hash', 'cpumap', 'sockmap', 'sockhash', 'reuseport_sockarray',
  'cgroup_array', 'xskmap', 'bloom_filter', 'stack_trace',
];

for (const type of REFUSED) {
  test.serial(`${type}: refused by default, recreated empty with policy empty`, async (t) => {
    const name = `r_${type}`.slice(0, 15);
    await withScenario(['hold', `${type}:${name}`, 'hash:r_ok:entries=3,max=4'], async ({ holder, work, fs }) => {
      const m = holder.byName(name);
      const out = join(work, 'r.tar');
      const d = await bpfcr(['dump', '--pid', String(holder.pid), '-o', out]);
      t.is(d.exitCode, 1);
      t.regex(d.stderr, new RegExp(
        `^bpfcr dump: refusing map id ${m.id} '${name}' \\(${type.toUpperCase()}\\) held by pid ${holder.pid} fd ${m.fd}: .+ \\(policy refuse, the default for its type\\); ` +
        `policy "empty" would recreate it without contents: set policy.maps.${name}: empty or policy.types.${type}: empty in /etc/bpfcr/config.yaml$`));
      t.is(d.stderr.split('\n').length, 1, 'one line');
      t.false(existsSync(out), 'no archive is written');

      const cfg = join(work, 'config.yaml');
      writeFileSync(cfg, `policy:\n  types:\n    ${type}: empty\n`);
      const ok = await bpfcr(['dump', '--pid', String(holder.pid), '-o', out, '--config', cfg]);
      t.is(ok.exitCode, 0, ok.stderr);
      const before = await describe({ id: m.id }, ['--meta-only']);
      await holder.kill();
      const r = await bpfcr(['restore', out, '--pin-dir', fs.dir]);
      t.is(r.exitCode, 0, r.stderr);
      const after = await describe({ pin: join(fs.dir, name) }, ['--meta-only']);
      t.deepEqual(after, before, 'metadata identical');
    });
  });
}

test.serial('a per-map-name policy overrides the type policy', async (t) => {
  const holder = await startHolder(['hold', 'prog_array:keep_me', 'prog_array:drop_me']);
  const work = tempDir();
  try {
    const cfg = join(work, 'config.yaml');
    writeFileSync(cfg, 'policy:\n  types:\n    prog_array: empty\n  maps:\n    drop_me: refuse\n');
    const d = await bpfcr(['dump', '--pid', String(holder.pid), '-o', join(work, 'x.tar'), '--config', cfg]);
    t.is(d.exitCode, 1);
    t.regex(d.stderr, new RegExp(`refusing map id ${holder.byName('drop_me').id} 'drop_me' \\(PROG_ARRAY\\) .*policy refuse, policy.maps.drop_me in ${cfg}`));
  } finally {
    await holder.kill();
    rmSync(work, { recursive: true, force: true });
  }
});

test.serial('a content policy on a type that cannot carry content is a config error', async (t) => {
  const work = tempDir();
  try {
    const cfg = join(work, 'config.yaml');
    writeFileSync(cfg, 'policy:\n  types:\n    sockmap: content\n');
    const d = await bpfcr(['dump', '--pid', String(process.pid), '-o', join(work, 'x.tar'), '--config', cfg]);
    t.is(d.exitCode, 1);
    t.is(d.stderr, `bpfcr dump: config ${cfg}: policy.types.sockmap: policy content is impossible for SOCKMAP: its values are references to sockets that cannot be recreated from a dump; use empty or refuse`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test.serial('an empty map-in-map needs a configured inner template', async (t) => {
  await withScenario(['hold', 'hash_of_maps:empty_outer:entries=0,max=4,inner=hash/key=4/value=8/max=16'], async ({ holder, work, fs }) => {
    const m = holder.byName('empty_outer');
    const out = join(work, 'e.tar');
    const d = await bpfcr(['dump', '-p', String(holder.pid), '-o', out]);
    t.is(d.exitCode, 1);
    t.regex(d.stderr, new RegExp(`map id ${m.id} 'empty_outer' \\(HASH_OF_MAPS\\) is empty, so its inner-map template cannot be learned from the kernel: add inner_templates.empty_outer to the config`));
    t.false(existsSync(out));
    const cfg = join(work, 'c.yaml');
    writeFileSync(cfg, 'inner_templates:\n  empty_outer: {type: hash, key_size: 4, value_size: 8, max_entries: 16}\n');
    t.is((await bpfcr(['dump', '-p', String(holder.pid), '-o', out, '--config', cfg])).exitCode, 0);
    const r = await bpfcr(['restore', out, '--pin-dir', fs.dir]);
    t.is(r.exitCode, 0, r.stderr);
    t.deepEqual(await describe({ pin: join(fs.dir, 'empty_outer') }), await describe({ id: m.id }));
  });
});

test.serial('STRUCT_OPS is refused and no policy can let it through', async (t) => {
  const holder = await startHolder(['hold', 'struct_ops:r_sops']);
  const work = tempDir();
  try {
    const m = holder.byName('r_sops');
    const d = await bpfcr(['dump', '--pid', String(holder.pid), '-o', join(work, 's.tar')]);
    t.is(d.exitCode, 1);
    t.regex(d.stderr, new RegExp(`^bpfcr dump: refusing map id ${m.id} 'r_sops' \\(STRUCT_OPS\\) held by pid ${holder.pid} fd ${m.fd}: .*; no policy can carry it$`));
  } finally {
    await holder.kill();
    rmSync(work, { recursive: true, force: true });
  }
});
