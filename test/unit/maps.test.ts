import test from 'ava';
import { BPF_ANON_INODE_KINDS, parseFdinfo, bpfKindOfLink } from '../../src/maps/fdinfo.js';
import { parseCpuList, remapPerCpuValues, valueStride } from '../../src/maps/cpus.js';
import { allMapTypes, mapTypeById, mapTypeByName } from '../../src/maps/types.js';
import { parseMapMember, chunkMember, metaMember } from '../../src/maps/meta.js';
import { hasBatchOp } from '../../src/maps/strategies/keyed.js';
import { LAYOUTS, strategyFor, strategyForLayout } from '../../src/maps/strategies/index.js';
import { BpfError, ENOTSUPP } from '../../src/syscall/errors.js';
import { pinNames } from '../../src/cli/commands/restore.js';
import { validateMeta } from '../../src/engine/validate.js';

test('fdinfo of a map fd parses into fields', (t) => {
  const text = 'pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t1\nkey_size:\t8\nvalue_size:\t16\nmax_entries:\t1024\nmap_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t90112\nmap_id:\t42\nfrozen:\t1\n';
  const f = parseFdinfo(text);
  t.is(f['map_id'], '42');
  t.is(f['frozen'], '1');
  t.is(f['map_flags'], '0x0');
  t.is(f['max_entries'], '1024');
});

test('anon inode names map to BPF object kinds', (t) => {
  t.is(bpfKindOfLink('anon_inode:bpf-map'), 'map');
  t.is(bpfKindOfLink('anon_inode:bpf-prog'), 'prog');
  t.is(bpfKindOfLink('anon_inode:bpf_link'), 'link', 'a link fd as BPF_LINK_CREATE made it');
  t.is(bpfKindOfLink('anon_inode:bpf-link'), 'link', 'a link fd from BPF_LINK_GET_FD_BY_ID');
  t.is(bpfKindOfLink('anon_inode:btf'), undefined);
  t.is(bpfKindOfLink('socket:[123]'), undefined);
  t.is(bpfKindOfLink('constructor'), undefined, 'no Object.prototype keys');
  t.deepEqual(Object.keys(BPF_ANON_INODE_KINDS).sort(), ['anon_inode:bpf-link', 'anon_inode:bpf-map', 'anon_inode:bpf-prog', 'anon_inode:bpf_link']);
});

test('possible CPU list → count is the number of CPUs listed (set bits), as the kernel and libbpf count', (t) => {
  t.is(parseCpuList('0-1\n'), 2);
  t.is(parseCpuList('0'), 1);
  t.is(parseCpuList('0,2-3'), 3, 'a hole is not a CPU');
  t.is(parseCpuList('0,2-5,7'), 6);
  t.is(parseCpuList('0-3,5,7-8'), 7);
  t.is(parseCpuList('4-7'), 4);
  t.is(parseCpuList('0-3,2-5'), 6, 'overlapping ranges count each CPU once');
  t.throws(() => parseCpuList('abc'), { message: /cannot parse CPU list/ });
  t.throws(() => parseCpuList(''), { message: /cannot parse CPU list/ });
  t.throws(() => parseCpuList('3-1'), { message: /reversed/ });
  t.is(valueStride(12, true, 3), 48);
  t.is(valueStride(12, false, 3), 12);
});

test('per-CPU zero-fill remap keeps common CPUs and zeroes new ones', (t) => {
  // 2 elements, value_size 4 (slot 8), from 2 CPUs to 3.
  const from = Buffer.from([1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 3, 3, 3, 3, 0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0]);
  const out = remapPerCpuValues(from, 2, 4, 2, 3);
  t.is(out.length, 2 * 3 * 8);
  t.deepEqual([...out.subarray(0, 24)], [1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const down = remapPerCpuValues(from, 2, 4, 2, 1);
  t.deepEqual([...down], [1, 1, 1, 1, 0, 0, 0, 0, 3, 3, 3, 3, 0, 0, 0, 0]);
});

test('map type table: ids unique, names resolve both spellings, every type has a policy', (t) => {
  const ids = new Set(allMapTypes().map((m) => m.id));
  t.is(ids.size, allMapTypes().length);
  t.is(mapTypeByName('BPF_MAP_TYPE_LRU_HASH')?.id, 9);
  t.is(mapTypeByName('queue')?.family, 'queue');
  for (const m of allMapTypes()) {
    if (m.family === 'metadata-only') t.truthy(m.why, `${m.name} needs a reason`);
    else t.is(m.defaultPolicy, 'content');
  }
  t.is(mapTypeById(999).defaultPolicy, 'refuse');
});

test('member names round-trip', (t) => {
  t.deepEqual(parseMapMember(metaMember(3)), { index: 3 });
  t.deepEqual(parseMapMember(chunkMember(12, 7)), { index: 12, chunk: 7 });
  t.is(parseMapMember('maps/0001/../x'), undefined);
  t.is(parseMapMember('maps/1/meta.json'), undefined);
});

test('pin names: map name, numeric suffix only on clashes, unnamed → map_<id>', (t) => {
  const names = pinNames([
    { index: 0, name: 'flows', id: 10 }, { index: 1, name: 'flows', id: 11 },
    { index: 2, name: '', id: 12 }, { index: 3, name: 'other', id: 13 }, { index: 4, name: 'flows', id: 14 },
  ]);
  t.deepEqual([...names.values()], ['flows', 'flows_1', 'map_12', 'other', 'flows_2']);
});

const goodMeta = {
  index: 0, id: 5, name: 'm', type: 'hash', typeId: 1, keySize: 4, valueSize: 8, maxEntries: 16, flags: 0,
  mapExtra: '0', frozen: false, policy: 'content', btf: null, layout: 'kv', valueStride: 8, top: true, refs: [],
};

test('meta validation accepts a good record and names the bad field', (t) => {
  t.notThrows(() => validateMeta(goodMeta, 'member maps/0000/meta.json', 0, 2));
  t.throws(() => validateMeta({ ...goodMeta, name: '../../etc' }, 'member maps/0000/meta.json', 0, 2), { message: /member maps\/0000\/meta.json: invalid name/ });
  t.throws(() => validateMeta({ ...goodMeta, index: 2 }, 'maps/0000/meta.json', 0, 2), { message: /invalid index 2/ });
  t.throws(() => validateMeta({ ...goodMeta, type: 'array' }, 'x', 0, 2), { message: /invalid type/ });
  t.throws(() => validateMeta({ ...goodMeta, keySize: -1 }, 'x', 0, 2), { message: /invalid keySize/ });
  t.throws(() => validateMeta({ ...goodMeta, typeId: 26, type: 'struct_ops' }, 'x', 0, 2), { message: /cannot be recreated/ });
});

test('meta validation: layouts come from the strategy table, the stride from the layout\'s strategy', (t) => {
  for (const layout of LAYOUTS) t.is(strategyForLayout(layout)?.layout, layout);
  t.deepEqual([...LAYOUTS].sort(), ['kv', 'kv-mapref', 'none', 'owners', 'values']);
  // a local-storage map: layout owners, one value per owner; its owners summary is checked too
  const ls = { ...goodMeta, type: 'task_storage', typeId: 29, keySize: 4, valueSize: 8, maxEntries: 0, flags: 1, layout: 'owners', valueStride: 8 };
  t.notThrows(() => validateMeta({ ...ls, owners: { kind: 'task', carried: 3, leftBehind: 0 } }, 'x', 0, 2));
  t.throws(() => validateMeta({ ...ls, owners: { kind: 'pid', carried: 3 } }, 'x', 0, 2), { message: /invalid owners/ });
  t.throws(() => validateMeta({ ...ls, owners: { kind: 'task', carried: -1 } }, 'x', 0, 2), { message: /invalid owners/ });
  t.throws(() => validateMeta({ ...goodMeta, owners: { kind: 'task', carried: 1 } }, 'x', 0, 2), { message: /invalid owners/ });
  t.throws(() => validateMeta({ ...ls, layout: 'kv' }, 'x', 0, 2), { message: /invalid layout kv for a TASK_STORAGE map with policy content \(expected owners\)/ });
  t.throws(() => validateMeta({ ...goodMeta, layout: 'rows' }, 'x', 0, 2), { message: /invalid layout/ });
  // percpu_hash value 12 on a 2-CPU dump: round_up(12, 8) × 2
  const pc = { ...goodMeta, type: 'percpu_hash', typeId: 5, valueSize: 12, valueStride: 32 };
  t.notThrows(() => validateMeta(pc, 'x', 0, 2));
  t.throws(() => validateMeta(pc, 'x', 0, 3), { message: /invalid valueStride/ });
  t.throws(() => validateMeta({ ...goodMeta, valueStride: 16 }, 'x', 0, 2), { message: /invalid valueStride/ });
  // policy empty: metadata only, whatever the type, value_size per value
  t.notThrows(() => validateMeta({ ...pc, policy: 'empty', layout: 'none', valueStride: 12 }, 'x', 0, 2));
  t.is(strategyFor('keyed', 'empty').layout, 'none');
  t.is(strategyFor('keyed', 'content').valueStride(mapTypeByName('percpu_array')!, 4, 3), 24);
});

test('batch support is probed once per map type and op; only ENOTSUPP means unsupported', (t) => {
  // Type ids far from real ones: the cache is module-wide.
  let probes = 0;
  const supported = (): void => { probes++; };
  t.true(hasBatchOp(9001, 'lookup', supported));
  t.true(hasBatchOp(9001, 'lookup', supported));
  t.is(probes, 1, 'second map of the type is not probed again');
  t.true(hasBatchOp(9001, 'update', supported));
  t.is(probes, 2, 'each op is probed on its own');

  const lacks = (): void => { probes++; throw new BpfError('BPF_MAP_LOOKUP_BATCH', ENOTSUPP); };
  t.false(hasBatchOp(9002, 'lookup', lacks));
  t.false(hasBatchOp(9002, 'lookup', lacks));
  t.is(probes, 3);

  // EINVAL (or anything else) is a real failure: thrown, and nothing is cached.
  const einval = new BpfError('BPF_MAP_LOOKUP_BATCH', 22);
  t.is(einval.code, 'EINVAL');
  t.is(einval.errno, 22);
  t.throws(() => hasBatchOp(9003, 'lookup', () => { throw einval; }), { is: einval });
  t.true(hasBatchOp(9003, 'lookup', supported), 'a later probe still decides');
});

test('BpfError carries errno number and name, including kernel-internal ENOTSUPP', (t) => {
  const e = new BpfError('BPF_MAP_UPDATE_BATCH', ENOTSUPP, 'probe');
  t.is(e.errno, 524);
  t.is(e.code, 'ENOTSUPP');
  t.is(e.command, 'BPF_MAP_UPDATE_BATCH');
  t.regex(e.message, /^BPF_MAP_UPDATE_BATCH \(probe\) failed: ENOTSUPP/);
});
