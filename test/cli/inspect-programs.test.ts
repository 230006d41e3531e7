/**
 * `bpfcr inspect` of a CRIU checkpoint lists its programs and links (bpfcr-checkpoint.json) after
 * the maps: from the image dir, from the bpfcr.tar in it, and from a podman export holding both
 * under checkpoint/. The map archive is a real `bpfcr dump` of a map made with bpftool (plus an
 * objects/<sha256>.bpf.o member, as post-dump stores a program's ELF object); the record is
 * written here in the shapes of src/criu/record.ts.
 */
import test from 'ava';
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HEADER_KEYS } from '../../src/archive/format.js';
import { openArchiveReader } from '../../src/archive/reader.js';
import { openArchiveWriter } from '../../src/archive/writer.js';
import type { CheckpointRecord, TakenObject } from '../../src/criu/record.js';
import { objectMember, targetText } from '../../src/cli/programs-report.js';
import { termSafe } from '../../src/archive/names.js';
import { bpfcr, freshBpffs, tempDir } from '../helpers/env.js';

/** A BPF ELF object's bytes as far as the record and the archive care: hashed, stored. */
const ELF = Buffer.concat([Buffer.from('\x7fELF\x02\x01\x01', 'latin1'), Buffer.alloc(249, 7)]);
const ELF_SHA = createHash('sha256').update(ELF).digest('hex');

function record(objects: TakenObject[]): CheckpointRecord {
  return {
    format: 'bpfcr-criu', version: 1, key: '0123456789abcdef', created: '2026-12-01T10:00:00.000Z',
    host: { bootId: '5e0c1d7e-0000-4000-8000-000000000001', hostname: 'node-a', kernel: '6.18.44' }, leaveRunning: false, archive: 'bpfcr.tar',
    objects,
  };
}

/** Two programs (the first with its object found, the second without), a raw_tp link and a perf_event link. */
function objects(name2 = 'on_getppid'): TakenObject[] {
  return [
    { criuId: 3, kind: 'map', id: 7001, type: 'hash', pin: '/sys/fs/bpf/s/map-3', name: 'ip_counts', archiveIndex: 0 },
    {
      criuId: 5, kind: 'prog', id: 101, type: '17', pin: '/sys/fs/bpf/s/prog-5', name: 'handle_enter', tag: '0011223344556677', mapIds: [7001],
      object: { sha256: ELF_SHA, member: objectMember(ELF_SHA), size: ELF.length, pid: 1234, file: '/proc/1234/exe', offset: 0x12000, function: 'handle_enter', section: 'raw_tp/sys_enter' },
    },
    { criuId: 6, kind: 'prog', id: 102, type: '5', pin: '/sys/fs/bpf/s/prog-6', name: name2, tag: '8899aabbccddeeff', mapIds: [] },
    {
      criuId: 7, kind: 'link', id: 201, type: 'raw_tracepoint', pin: '/sys/fs/bpf/s/link-7', progId: 101, name: 'handle_enter', tag: '0011223344556677',
      target: { kind: 'raw_tracepoint', name: 'sys_enter' },
    },
    {
      criuId: 8, kind: 'link', id: 202, type: 'perf_event', pin: '/sys/fs/bpf/s/link-8', progId: 102, name: name2, tag: '8899aabbccddeeff',
      target: { kind: 'perf_event', perfType: 'tracepoint', name: 'sys_enter_getppid' },
    },
    { criuId: 9, kind: 'perf', id: 102, type: 'sys_enter_getppid', pin: '-', progId: 102, tracepoint: 'sys_enter_getppid' },
  ];
}

/**
 * A real map archive at `out`: `bpfcr dump` of a hash map made with bpftool, rewritten with
 * `extra` members added (all verified by inspect like any member).
 */
async function mapArchive(work: string, out: string, extra: { name: string; data: Buffer }[] = []): Promise<void> {
  const fs = await freshBpffs();
  try {
    const pin = join(fs.dir, 'ip_counts');
    await execa('bpftool', ['map', 'create', pin, 'type', 'hash', 'key', '4', 'value', '8', 'entries', '16', 'name', 'ip_counts']);
    const id = (JSON.parse((await execa('bpftool', ['-j', 'map', 'show', 'pinned', pin])).stdout) as { id: number }).id;
    await execa('bpftool', ['map', 'update', 'pinned', pin, 'key', '1', '0', '0', '0', 'value', '5', '0', '0', '0', '0', '0', '0', '0']);
    const dumped = join(work, 'dumped.tar');
    const d = await bpfcr(['dump', '-m', String(id), '-o', dumped]);
    if (d.exitCode !== 0) throw new Error(d.stderr);
    const r = await openArchiveReader(dumped);
    try {
      const w = await openArchiveWriter(out, r.header, { overwrite: true });
      for await (const m of r.members()) await w.addMember(m.name, await m.read());
      for (const m of extra) await w.addMember(m.name, m.data);
      const manifest = await r.finish();
      const body: Record<string, unknown> = { ...manifest };
      for (const k of [...HEADER_KEYS, 'members']) delete body[k];
      await w.finish(body);
    } finally {
      await r.close();
    }
    rmSync(dumped);
  } finally {
    await fs.cleanup();
  }
}

/** A CRIU image dir: bpfcr.tar (with the first program's object stored) and bpfcr-checkpoint.json. */
async function imageDir(work: string, objs = objects()): Promise<string> {
  const dir = join(work, 'images');
  mkdirSync(dir);
  writeFileSync(join(dir, 'inventory.img'), Buffer.alloc(86, 1));
  await mapArchive(work, join(dir, 'bpfcr.tar'), [{ name: objectMember(ELF_SHA), data: ELF }]);
  writeFileSync(join(dir, 'bpfcr-checkpoint.json'), JSON.stringify(record(objs), null, 1) + '\n');
  return dir;
}

/** A podman checkpoint export of `dir` (checkpoint/ = the image dir), artifacts/ first, zstd. */
async function podmanExport(work: string, dir: string): Promise<string> {
  const root = join(work, 'export');
  mkdirSync(join(root, 'artifacts'), { recursive: true });
  mkdirSync(join(root, 'checkpoint'));
  writeFileSync(join(root, 'config.dump'), '{}');
  for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(root, 'checkpoint', f));
  const out = join(work, 'export.tar.zst');
  await execa('tar', ['-C', root, '--zstd', '--sort=name', '-cf', out, 'artifacts', 'config.dump', 'checkpoint']);
  return out;
}

async function inWork(fn: (work: string) => Promise<void>): Promise<void> {
  const work = tempDir('bpfcr-inspect-programs-');
  try {
    await fn(work);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The lines from the PROGRAMS table header on, columns separated by single spaces. */
function programLines(stdout: string): string[] {
  const lines = stdout.split('\n');
  const at = lines.findIndex((l) => l.startsWith('ID '));
  if (at < 0) return [];
  return lines.slice(at).map((l) => l.replace(/ {2,}/g, ' | ')).filter(Boolean);
}

const EXPECTED_LINES = [
  'ID | NAME | TYPE | TAG | ATTACHED | OBJECT',
  `101 | handle_enter | raw_tracepoint | 0011223344556677 | raw_tp sys_enter | in archive; embedded in /proc/1234/exe @0x12000 (sha256 ${ELF_SHA.slice(0, 12)}), section raw_tp/sys_enter`,
  '102 | on_getppid | tracepoint | 8899aabbccddeeff | perf_event tracepoint sys_enter_getppid | not found',
  '2 program(s), 2 link(s); 1 with their BPF object found',
];

interface JsonOut {
  programs: { id: number; name: string; typeName: string; tag: string; attached: string[]; links: number[]; objectFound: boolean; objectInArchive: boolean; object: { sha256: string } | null }[];
  links: { id: number; type: string; progId: number; programListed: boolean; attached: string; target: unknown }[];
  objectsFound: number;
  checkpoint: { key: string; host: { hostname: string } };
}

function checkJson(t: import('ava').ExecutionContext, j: JsonOut): void {
  t.deepEqual(j.programs.map((p) => [p.id, p.name, p.typeName, p.tag, p.attached, p.links, p.objectFound, p.objectInArchive]), [
    [101, 'handle_enter', 'raw_tracepoint', '0011223344556677', ['raw_tp sys_enter'], [201], true, true],
    [102, 'on_getppid', 'tracepoint', '8899aabbccddeeff', ['perf_event tracepoint sys_enter_getppid'], [202], false, false],
  ]);
  t.is(j.programs[0]!.object!.sha256, ELF_SHA);
  t.is(j.programs[1]!.object, null);
  t.deepEqual(j.links.map((l) => [l.id, l.type, l.progId, l.programListed, l.attached]), [
    [201, 'raw_tracepoint', 101, true, 'raw_tp sys_enter'],
    [202, 'perf_event', 102, true, 'perf_event tracepoint sys_enter_getppid'],
  ]);
  t.deepEqual(j.links[1]!.target, { kind: 'perf_event', perfType: 'tracepoint', name: 'sys_enter_getppid' });
  t.is(j.objectsFound, 1);
  t.is(j.checkpoint.key, '0123456789abcdef');
  t.is(j.checkpoint.host.hostname, 'node-a');
}

test.serial('inspect of a CRIU image dir and of its bpfcr.tar lists the maps, then the programs with their targets and objects', (t) =>
  inWork(async (work) => {
    const dir = await imageDir(work);
    for (const input of [dir, join(dir, 'bpfcr.tar')]) {
      const r = await bpfcr(['inspect', input]);
      t.is(r.exitCode, 0, r.stderr);
      t.regex(r.stdout, /\n0\s+ip_counts\s+hash\s+4\s+8\s+16\s+1\s/);
      t.regex(r.stdout, /all checksums ok\n/);
      t.true(r.stdout.indexOf('ip_counts') < r.stdout.indexOf('\nID '), 'the programs come after the maps');
      t.regex(r.stdout, /programs and links of the checkpointed processes\ncheckpoint 0123456789abcdef: taken 2026-12-01T10:00:00\.000Z on node-a \(kernel 6\.18\.44, boot 5e0c1d7e-/);
      t.deepEqual(programLines(r.stdout), EXPECTED_LINES, input);
      t.notRegex(r.stdout, /^LINK /m, 'every link is of a listed program');
    }
    const dirOut = await bpfcr(['inspect', dir]);
    t.regex(dirOut.stdout, /^== CRIU image dir .*, bpfcr\.tar: maps held by the checkpointed processes$/m);

    for (const input of [dir, join(dir, 'bpfcr.tar')]) {
      const js = await bpfcr(['inspect', '--json', input]);
      t.is(js.exitCode, 0, js.stderr);
      const j = JSON.parse(js.stdout) as JsonOut & { imageDir?: string; parts?: { what: string; ok: boolean; members: { name: string }[] }[]; ok?: boolean };
      checkJson(t, j);
      if (input === dir) {
        t.is(j.imageDir, dir);
        t.deepEqual(j.parts!.map((p) => [p.what, p.ok]), [['maps', true]]);
        t.true(j.parts![0]!.members.some((m) => m.name === objectMember(ELF_SHA)));
      } else {
        t.true(j.ok);
      }
    }
  }));

test.serial('inspect of a podman export reads checkpoint/bpfcr-checkpoint.json: the same programs and links', (t) =>
  inWork(async (work) => {
    const dir = await imageDir(work);
    const exported = await podmanExport(work, dir);
    const r = await bpfcr(['inspect', exported]);
    t.is(r.exitCode, 0, r.stderr);
    t.regex(r.stdout, /^== podman checkpoint export .*, checkpoint\/bpfcr\.tar: maps held by the checkpointed processes$/m);
    t.regex(r.stdout, /^== podman checkpoint export .*, checkpoint\/bpfcr-checkpoint\.json: programs and links of the checkpointed processes$/m);
    t.deepEqual(programLines(r.stdout), EXPECTED_LINES);
    const js = await bpfcr(['inspect', '--json', exported]);
    t.is(js.exitCode, 0, js.stderr);
    const j = JSON.parse(js.stdout) as JsonOut & { export: string; parts: { what: string; ok: boolean }[] };
    t.is(j.export, exported);
    t.deepEqual(j.parts.map((p) => [p.what, p.ok]), [['maps', true]]);
    checkJson(t, j);
    const fromDir = JSON.parse((await bpfcr(['inspect', '--json', dir])).stdout) as JsonOut;
    t.deepEqual({ programs: j.programs, links: j.links }, { programs: fromDir.programs, links: fromDir.links });
    t.deepEqual(readdirSync('/tmp').filter((n) => n.startsWith('bpfcr-export-')), [], 'no temporary copy left behind');
  }));

test.serial('a record larger than 4 MiB in an export, or not JSON, is not read: said on stderr, the maps still listed, exit 1', (t) =>
  inWork(async (work) => {
    const dir = await imageDir(work);
    writeFileSync(join(dir, 'bpfcr-checkpoint.json'), JSON.stringify({ ...record(objects()), pad: 'x'.repeat(4 << 20) }));
    const exported = await podmanExport(work, dir);
    const r = await bpfcr(['inspect', exported]);
    t.is(r.exitCode, 1);
    t.regex(r.stdout, /all checksums ok/);
    t.regex(r.stderr, /checkpoint\/bpfcr-checkpoint\.json: cannot read the checkpoint record: \d+ bytes, more than the 4194304 read/);
    t.notRegex(r.stdout, /^ID /m);
    t.deepEqual(readdirSync('/tmp').filter((n) => n.startsWith('bpfcr-export-')), []);
    // so is a record that is not JSON, in an image dir
    writeFileSync(join(dir, 'bpfcr-checkpoint.json'), '{"format": "bpfcr-criu", ');
    const d = await bpfcr(['inspect', dir]);
    t.is(d.exitCode, 1);
    t.regex(d.stdout, /all checksums ok/);
    t.regex(d.stderr, /^bpfcr inspect: .*\/images\/bpfcr-checkpoint\.json: the checkpoint record is not valid JSON: /);
  }));

test.serial('control characters in names from the record reach the terminal escaped (\\xNN), the JSON escaped too', (t) =>
  inWork(async (work) => {
    const evil = 'on_get\x01ppid\x1b[2J';
    const objs = objects(evil);
    (objs[4]!.target as { name: string }).name = 'sys_enter_getppid\r';
    objs.push({ criuId: 10, kind: 'link', id: 203, type: 'tracing', pin: '/sys/fs/bpf/s/link-10', progId: 150, name: 'exec\x7f', tag: '1111222233334444',
      target: { kind: 'tracing', attachType: 24, target: { objId: 1, typeId: 555, btf: 'vmlinux', name: 'do_unlinkat', kind: 'func' } } });
    const dir = await imageDir(work, objs);
    const r = await bpfcr(['inspect', dir]);
    t.is(r.exitCode, 0, r.stderr);
    t.false(/[\x00-\x08\x0b-\x1f\x7f]/.test(r.stdout), 'no raw control character in the output');
    t.regex(r.stdout, /^102\s+on_get\\x01ppid\\x1b\[2J\s+tracepoint\s+8899aabbccddeeff\s+perf_event tracepoint sys_enter_getppid\\x0d, perf_event tracepoint sys_enter_getppid\s+not found$/m);
    // a link whose program is not among the checkpoint's programs is listed on its own
    t.regex(r.stdout, /^LINK\s+TYPE\s+PROGRAM\s+TAG\s+ATTACHED\s+OBJECT\n203\s+tracing\s+150 exec\\x7f\s+1111222233334444\s+tracing fentry do_unlinkat\s+not found$/m);
    t.regex(r.stdout, /^2 program\(s\), 3 link\(s\); 1 with their BPF object found$/m);
    const js = await bpfcr(['inspect', '--json', dir]);
    t.false(/[\x00-\x1f\x7f]/.test(js.stdout.replace(/\n/g, '')), 'no raw control character in the JSON');
    const j = JSON.parse(js.stdout) as JsonOut;
    t.is(j.programs[1]!.name, evil);
    t.is(j.links[2]!.programListed, false);
    t.is(j.links[2]!.progId, 150);
  }));

test.serial('an objects/ member whose content is not the object named is not taken for it', (t) =>
  inWork(async (work) => {
    const dir = join(work, 'images');
    mkdirSync(dir);
    await mapArchive(work, join(dir, 'bpfcr.tar'), [{ name: objectMember(ELF_SHA), data: Buffer.from('another object') }]);
    writeFileSync(join(dir, 'bpfcr-checkpoint.json'), JSON.stringify(record(objects())));
    const r = await bpfcr(['inspect', dir]);
    t.is(r.exitCode, 0, r.stderr);
    t.regex(r.stdout, /^101 .* in archive \(FAILED verification\); embedded in \/proc\/1234\/exe /m);
    const j = JSON.parse((await bpfcr(['inspect', '--json', dir])).stdout) as JsonOut;
    t.deepEqual(j.programs.map((p) => [p.objectFound, p.objectInArchive]), [[true, false], [false, false]]);
  }));

test.serial('a plain bpfcr archive, and a bpfcr.tar without a record beside it, are listed as before', (t) =>
  inWork(async (work) => {
    const dir = join(work, 'plain');
    mkdirSync(dir);
    await mapArchive(work, join(dir, 'bpfcr.tar'));
    copyFileSync(join(dir, 'bpfcr.tar'), join(work, 'maps.tar'));
    for (const input of [join(work, 'maps.tar'), join(dir, 'bpfcr.tar')]) {
      const r = await bpfcr(['inspect', input]);
      t.is(r.exitCode, 0, r.stderr);
      t.deepEqual(r.stdout.split('\n').slice(1).map((l) => l.replace(/ {2,}/g, ' | ')), [
        '# | NAME | TYPE | KEY | VALUE | MAX | ENTRIES | FLAGS | BTF | FROZEN | ROLE | POLICY | CHECKSUM',
        '0 | ip_counts | hash | 4 | 8 | 16 | 1 | 0x0 | - | no | top | content | ok',
        r.stdout.split('\n').at(-1)!,
      ]);
      t.regex(r.stdout, /members, \d+ bytes: all checksums ok$/);
      const js = await bpfcr(['inspect', '--json', input]);
      t.deepEqual(Object.keys(JSON.parse(js.stdout) as object), ['ok', 'manifest', 'members']);
    }
    // an archive not named bpfcr.tar is a plain archive, whatever lies beside it
    writeFileSync(join(work, 'bpfcr-checkpoint.json'), JSON.stringify(record(objects())));
    t.notRegex((await bpfcr(['inspect', join(work, 'maps.tar')])).stdout, /^ID |program\(s\)|bpfcr-checkpoint/m);
  }));

test('link targets read as one line each', (t) => {
  t.is(targetText({ kind: 'raw_tracepoint', name: 'sys_enter' }), 'raw_tp sys_enter');
  t.is(targetText({ kind: 'tracing', attachType: 23, target: { objId: 1, typeId: 9, btf: 'vmlinux', name: 'btf_trace_sched_process_exec', kind: 'typedef' } }), 'tracing tp_btf sched_process_exec');
  t.is(targetText({ kind: 'tracing', attachType: 25, target: { objId: 40, typeId: 9, btf: 'nf_tables', name: 'nft_do_chain', kind: 'func' } }), 'tracing fexit nft_do_chain [nf_tables]');
  t.is(targetText({ kind: 'tracing', attachType: 24, targetProgId: 12, targetBtfId: 34 }), 'tracing freplace program 12 BTF type 34');
  t.is(targetText({ kind: 'perf_event', perfType: 'tracepoint', name: 'sys_enter_getppid' }), 'perf_event tracepoint sys_enter_getppid');
  t.is(targetText({ kind: 'perf_event', perfType: 'kprobe', name: 'do_sys_openat2', offset: 0 }), 'perf_event kprobe do_sys_openat2');
  t.is(targetText({ kind: 'perf_event', perfType: 'uprobe', name: '/usr/lib/libc.so.6', offset: 0x9a7c0 }), 'perf_event uprobe /usr/lib/libc.so.6+0x9a7c0');
  t.is(targetText({ kind: 'cgroup', cgroupId: '4242', attachType: 0 }), 'cgroup cgroup_inet_ingress id 4242');
  t.is(targetText({ kind: 'cgroup', cgroupId: '4242', attachType: 0, place: { inContainer: '', path: '/libpod_parent/libpod-1' } }), 'cgroup cgroup_inet_ingress <container>');
  t.is(targetText({ kind: 'cgroup', cgroupId: '4242', attachType: 2, place: { inContainer: 'web', path: '/libpod_parent/libpod-1/web' } }), 'cgroup cgroup_inet_sock_create <container>/web');
  t.is(targetText({ kind: 'cgroup', cgroupId: '1', attachType: 0, place: { path: '/' } }), 'cgroup cgroup_inet_ingress /');
  t.is(targetText({ kind: 'xdp', ifindex: 3, ifname: 'eth0' }), 'xdp dev eth0');
  t.is(targetText({ kind: 'netns', netnsIno: 4026531840, attachType: 36 }), 'netns 4026531840 sk_lookup');
  t.is(targetText({ kind: 'xdp', ifindex: 3 }), 'xdp ifindex 3');
  t.is(targetText({ kind: 'tcx', ifindex: 3, attachType: 46 }), 'tcx ifindex 3 tcx_ingress');
  t.is(targetText({ kind: 'netfilter', pf: 2, hooknum: 1, priority: -100, flags: 0 }), 'netfilter pf 2 hook 1 priority -100');
  t.is(targetText({ kind: 'struct_ops', mapId: 8 }), 'struct_ops map 8');
  t.is(targetText({ kind: 'iter', type: 4 }), 'iter');
  t.is(targetText({ kind: 'unknown', type: 99 }), 'link type 99');
  t.is(termSafe('a\x00b\x1b\x7f\x85\\\u202e'), 'a\\x00b\\x1b\\x7f\\x85\\\\\\u202e');
});
