/**
 * `bpfcr inspect` / `bpfcr restore` given a podman checkpoint export as it is, laid out like
 * podman 4.3.1 writes it (seen on the test machine): unsorted members, artifacts/ first, the CRIU
 * image dir under checkpoint/ holding bpfcr.tar (the held maps) and bpfcr-pins.tar (the
 * io.bpfcr.pins maps, with oci/pins.json), both plain bpfcr archives; zstd-compressed.
 * No podman needed: the export is built here from `bpfcr dump` and poststop hook output.
 */
import test from 'ava';
import { execa } from 'execa';
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpfcr, describe, withScenario, type Holder } from '../helpers/env.js';
import { makeBundle, runHookShim, stateFile, stateJson } from '../helpers/oci.js';

const SPECS = ['hash:e_hash:entries=30', 'array:e_array:max=8,entries=8', 'lru_hash:e_lru:entries=5'];

/** bpfcr-pins.tar as post-dump writes it (the same format as a save-on-stop state file): e_hash pinned in bpffs/app. */
async function pinsFile(holder: Holder, bpffs: string, out: string): Promise<void> {
  mkdirSync(join(bpffs, 'app'));
  await execa('bpftool', ['map', 'pin', 'id', String(holder.byName('e_hash').id), join(bpffs, 'app/e_hash')]);
  const st = stateFile('export');
  const b = makeBundle([{ destination: '/sys/fs/bpf/app', source: join(bpffs, 'app') }]);
  try {
    const r = await runHookShim('poststop', stateJson(b, { 'io.bpfcr.pins': '/sys/fs/bpf/app', 'io.bpfcr.save-on-stop': st.path }));
    if (r.exitCode !== 0) throw new Error(r.stderr);
    cpSync(st.path, out);
  } finally {
    st.cleanup();
    b.cleanup();
  }
}

async function makeExport(work: string, holder: Holder, bpffs: string, layout: 'nested' | 'dir'): Promise<string> {
  const holderPid = holder.pid;
  const root = join(work, `export-${layout}`);
  mkdirSync(join(root, 'artifacts'), { recursive: true });
  mkdirSync(join(root, 'checkpoint'));
  writeFileSync(join(root, 'devshm-checkpoint.tar'), Buffer.alloc(1536));
  writeFileSync(join(root, 'config.dump'), '{}');
  writeFileSync(join(root, 'checkpoint/inventory.img'), Buffer.alloc(86, 1));
  if (layout === 'nested') {
    const d = await bpfcr(['dump', '--pid', String(holderPid), '-o', join(root, 'checkpoint/bpfcr.tar')]);
    if (d.exitCode !== 0) throw new Error(d.stderr);
    await pinsFile(holder, bpffs, join(root, 'checkpoint/bpfcr-pins.tar'));
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
      const exported = await makeExport(work, holder, fs.dir, layout);
      const ins = await bpfcr(['inspect', exported]);
      t.is(ins.exitCode, 0, ins.stderr);
      t.regex(ins.stdout, /maps held by the checkpointed processes/);
      for (const s of SPECS) t.regex(ins.stdout, new RegExp(`\\s${s.split(':')[1]}\\s`));
      t.regex(ins.stdout, /all checksums ok/);
      const js = await bpfcr(['inspect', '--json', exported]);
      t.is(js.exitCode, 0, js.stderr);
      const parsed = JSON.parse(js.stdout) as { parts: { what: string; ok: boolean; members: { name: string }[] }[] };
      if (layout === 'nested') {
        t.regex(ins.stdout, /== podman checkpoint export .*, checkpoint\/bpfcr-pins\.tar: maps pinned under the container's io\.bpfcr\.pins\n.*\n#.*\n0\s+e_hash\s/);
        t.deepEqual(parsed.parts.map((p) => [p.what, p.ok]), [['maps', true], ['pins', true]]);
        t.true(parsed.parts[1]!.members.some((m) => m.name === 'oci/pins.json'), 'the pins part carries oci/pins.json');
      } else {
        t.deepEqual(parsed.parts.map((p) => [p.what, p.ok]), [['maps', true]]);
      }

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
