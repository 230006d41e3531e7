/** The plugin ↔ action-script files (src/criu/files.ts): every line kind parses, bad lines are refused. */
import test from 'ava';
import { formatRestore, parseTaken } from '../../src/criu/files.js';

test('bpfcr-taken.txt: fds (map, prog, link, btf, perf) and mappings (vma) parse', (t) => {
  const text = [
    '6 map 31 1 /sys/fs/bpf/bpfcr/k/map-6',
    '7 prog 107 17 /sys/fs/bpf/bpfcr/k/prog-7',
    '8 link 90 raw_tracepoint /sys/fs/bpf/bpfcr/k/link-8',
    '9 btf 12 - -',
    '10 perf 44 sys_enter_getppid -',
    '11 perf 0 - -',
    'vma map 33 2 /sys/fs/bpf/bpfcr/k/vma-33',
    '',
  ].join('\n');
  t.deepEqual(parseTaken(text), [
    { criuId: 6, kind: 'map', id: 31, type: '1', pin: '/sys/fs/bpf/bpfcr/k/map-6' },
    { criuId: 7, kind: 'prog', id: 107, type: '17', pin: '/sys/fs/bpf/bpfcr/k/prog-7' },
    { criuId: 8, kind: 'link', id: 90, type: 'raw_tracepoint', pin: '/sys/fs/bpf/bpfcr/k/link-8' },
    { criuId: 9, kind: 'btf', id: 12, type: '-', pin: '-' },
    { criuId: 10, kind: 'perf', id: 44, type: 'sys_enter_getppid', pin: '-' },
    { criuId: 11, kind: 'perf', id: 0, type: '-', pin: '-' },
    { criuId: 0, kind: 'map', id: 33, type: '2', pin: '/sys/fs/bpf/bpfcr/k/vma-33', vma: true },
  ]);
});

test('bpfcr-taken.txt: malformed lines are refused naming the line', (t) => {
  for (const bad of [
    '6 map 31 1 relative/pin', // pins are absolute
    '6 btf 12 - /sys/fs/bpf/x', // BTF cannot be pinned
    '6 map 0 1 /p', // no object id 0
    'vma prog 3 1 /p', // only maps are mapped
    '0 map 3 1 /p', // CRIU ids start at 1
    '6 socket 3 1 /p',
    '6 map 3',
  ]) {
    t.throws(() => parseTaken(`${bad}\n`), { message: /bpfcr-taken\.txt line 1: cannot parse/ }, bad);
  }
});

test('bpfcr-restore.txt: the plugin format for every kind', (t) => {
  t.is(formatRestore([
    { criuId: 6, kind: 'map', id: 40 },
    { criuId: 9, kind: 'btf-load', id: 12 },
    { criuId: 10, kind: 'perf', id: 312 },
    { vma: true, oldId: 33, newId: 41 },
  ]), '6 map 40\n9 btf-load 12\n10 perf 312\nvma 33 41\n');
});
