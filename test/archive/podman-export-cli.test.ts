/**
 * `bpfcr inspect` / `bpfcr restore` given a podman checkpoint export as it is, laid out like
 * podman 4.3.1 writes it (seen on the test machine): unsorted members, artifacts/ first, the CRIU
 * image dir under checkpoint/ holding bpfcr.tar (the held maps, a nested plain tar) and
 * bpfcr-pins.tar (the io.bpfcr.pins state file, its archive under bpfcr/); zstd-compressed.
 * No podman needed: the export is built here from `bpfcr dump` output.
 */
import test from 'ava';
import { execa } from 'execa';
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpfcr, describe, withScenario } from '../helpers/env.js';

const SPECS = ['hash:e_hash:entries=30', 'array:e_array:max=8,entries=8', 'lru_hash:e_lru:entries=5'];

async function makeExport(work: string, holderPid: number, layout: 'nested' | 'dir'): Promise<string> {
  const root = join(work, `export-${layout}`);
  mkdirSync(join(root, 'artifacts'), { recursive: true });
  mkdirSync(join(root, 'checkpoint'));
  writeFileSync(join(root, 'devshm-checkpoint.tar'), Buffer.alloc(1536));
  writeFileSync(join(root, 'config.dump'), '{}');
  writeFileSync(join(root, 'checkpoint/inventory.img'), Buffer.alloc(86, 1));
  if (layout === 'nested') {
    const d = await bpfcr(['dump', '--pid', String(holderPid), '-o', join(root, 'checkpoint/bpfcr.tar')]);
    if (d.exitCode !== 0) throw new Error(d.stderr);
  } else {
    const d = await bpfcr(['dump', '--pid', String(holderPid), '-o', join(work, 'dirform')]);
    if (d.exitCode !== 0) throw new Error(d.stderr);
    cpSync(join(work, 'dirform'), join(root, 'checkpoint/bpfcr'), { recursive: true });
  }
  const out = join(work, `${layout}.tar.zst`);
  // podman's member order: artifacts/, devshm-checkpoint.tar, config.dump, checkpoint/… (top level
  // not sorted; inside a directory podman walks lexically, so bpfcr-archive.json leads checkpoint/bpfcr/,
  // which the reader requires under a prefix)
  await execa('tar', ['-C', root, '--zstd', '--sort=name', '-cf', out, 'artifacts', 'devshm-checkpoint.tar', 'config.dump', 'checkpoint']);
  const first = (await execa('tar', ['--zstd', '-tf', out])).stdout.split('\n')[0];
  if (first !== 'artifacts/') throw new Error(`first member ${first}`);
  return out;
}

for (const layout of ['nested', 'dir'] as const) {
  test.serial(`inspect and restore read a podman export as it is (${layout === 'nested' ? 'checkpoint/bpfcr.tar' : 'checkpoint/bpfcr/'}, artifacts/ first, zstd)`, async (t) => {
    await withScenario(['hold', ...SPECS], async ({ holder, work, fs }) => {
      const exported = await makeExport(work, holder.pid, layout);
      const ins = await bpfcr(['inspect', exported]);
      t.is(ins.exitCode, 0, ins.stderr);
      t.regex(ins.stdout, /maps held by the checkpointed processes/);
      for (const s of SPECS) t.regex(ins.stdout, new RegExp(`\\s${s.split(':')[1]}\\s`));
      t.regex(ins.stdout, /all checksums ok/);
      const js = await bpfcr(['inspect', '--json', exported]);
      t.is(js.exitCode, 0, js.stderr);
      const parsed = JSON.parse(js.stdout) as { parts: { what: string; ok: boolean }[] };
      t.deepEqual(parsed.parts.map((p) => [p.what, p.ok]), [['maps', true]]);

      const pins = join(fs.dir, 'r');
      const r = await bpfcr(['restore', exported, '--pin-dir', pins]);
      t.is(r.exitCode, 0, r.stderr);
      t.deepEqual(readdirSync(pins).sort(), ['e_array', 'e_hash', 'e_lru']);
      for (const m of holder.maps) t.deepEqual(await describe({ pin: join(pins, m.name) }), await describe({ id: m.id }), m.name);
      rmSync(pins, { recursive: true });
      // no temporary copy of the nested archive is left behind
      t.deepEqual(readdirSync('/tmp').filter((n) => n.startsWith('bpfcr-export-')), []);
    });
  });
}

test.serial('inspect of a tar that is neither a bpfcr archive nor a podman export with bpfcr data says so', async (t) => {
  await withScenario(['hold', 'hash:x:entries=1'], async ({ work }) => {
    mkdirSync(join(work, 'c/checkpoint'), { recursive: true });
    writeFileSync(join(work, 'c/checkpoint/inventory.img'), 'x');
    writeFileSync(join(work, 'c/config.dump'), '{}');
    const f = join(work, 'plain.tar.zst');
    await execa('tar', ['-C', join(work, 'c'), '--zstd', '-cf', f, 'config.dump', 'checkpoint']);
    const r = await bpfcr(['inspect', f]);
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /not a bpfcr archive: first member is config\.dump/);
  });
});
