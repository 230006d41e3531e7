/**
 * src/programs: naming BTF types of the running kernel (/sys/kernel/btf/vmlinux), and finding the
 * BPF ELF object a skeleton app embeds (build/apps/counter holds build/apps/counter.bpf.o).
 */
import test from 'ava';
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Btf, kernelBtf } from '../../src/programs/btf.js';
import { findBpfObjects, programNameMatches, scanProcessFiles } from '../../src/programs/objects.js';
import { APPS_DIR, ensureApps } from '../helpers/apps.js';

test.before(async () => {
  await ensureApps();
});

test('BTF: a vmlinux function and a tracepoint type are named by their id', async (t) => {
  const btf = kernelBtf();
  t.true(btf.count > 1000, `vmlinux BTF has ${btf.count} types`);
  t.is(kernelBtf(), btf, 'cached');
  const fn = btf.find('do_unlinkat', 'func');
  const tp = btf.find('btf_trace_sched_switch', 'typedef');
  t.truthy(fn);
  t.truthy(tp);
  t.deepEqual(btf.type(fn!), { id: fn!, kind: 'func', name: 'do_unlinkat' });
  t.deepEqual(btf.type(tp!), { id: tp!, kind: 'typedef', name: 'btf_trace_sched_switch' });
  t.is(btf.type(btf.count + 1), undefined);
  // the same ids as bpftool's dump, when bpftool is there
  const dump = await execa('bpftool', ['btf', 'dump', 'file', '/sys/kernel/btf/vmlinux'], { reject: false, maxBuffer: 1 << 30 }).catch(() => undefined);
  if (dump?.exitCode === 0) {
    t.regex(dump.stdout, new RegExp(`^\\[${fn}\\] FUNC 'do_unlinkat' `, 'm'));
    t.regex(dump.stdout, new RegExp(`^\\[${tp}\\] TYPEDEF 'btf_trace_sched_switch' `, 'm'));
  }
});

test('BTF: not BTF, or truncated, is refused', (t) => {
  t.throws(() => new Btf(Buffer.alloc(32)), { message: /not BTF/ });
  const head = readFileSync('/sys/kernel/btf/vmlinux').subarray(0, 4096);
  t.throws(() => new Btf(head), { message: /truncated/ });
});

test('ELF scan: the skeleton object embedded in build/apps/counter is counter.bpf.o, byte for byte', (t) => {
  const bin = readFileSync(join(APPS_DIR, 'counter'));
  const ref = readFileSync(join(APPS_DIR, 'counter.bpf.o'));
  const objs = findBpfObjects(bin);
  t.is(objs.length, 1, JSON.stringify(objs.map((o) => [o.offset, o.size])));
  const o = objs[0]!;
  t.is(o.size, ref.length);
  t.true(bin.subarray(o.offset, o.offset + o.size).equals(ref), 'byte-identical');
  const [whole] = findBpfObjects(ref);
  t.is(whole?.offset, 0);
  t.is(whole?.sha256, o.sha256);
  t.deepEqual([...o.programNames].sort(), ['on_getppid', 'on_sys_enter']);
  t.deepEqual(o.programs.find((p) => p.name === 'on_sys_enter')?.section, 'raw_tp/sys_enter');
  t.deepEqual(o.programs.find((p) => p.name === 'on_getppid')?.section, 'tracepoint/syscalls/sys_enter_getppid');
});

test('ELF scan: stray magic, other machines and truncated objects are skipped', (t) => {
  const ref = readFileSync(join(APPS_DIR, 'counter.bpf.o'));
  const x86 = Buffer.from(ref);
  x86.writeUInt16LE(62, 18); // EM_X86_64
  const buf = Buffer.concat([Buffer.from('\x7fELF junk', 'latin1'), x86, Buffer.alloc(3), ref, ref.subarray(0, ref.length - 1)]);
  const objs = findBpfObjects(buf);
  t.deepEqual(objs.map((o) => o.offset), [9 + x86.length + 3]);
});

test('ELF scan: a process whose executable embeds no object yields nothing', (t) => {
  t.deepEqual(scanProcessFiles([process.pid]), []);
});

test('program names: the kernel keeps 15 characters', (t) => {
  t.true(programNameMatches('on_sys_enter', 'on_sys_enter'));
  t.false(programNameMatches('on_sys_enter', 'on_sys_enter2'));
  t.true(programNameMatches('handle_very_lon', 'handle_very_long_name'));
});
