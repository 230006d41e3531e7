/**
 * The attr and info layouts in src/syscall/attr.ts against the uapi header, through the C
 * compiler: every field offset we write or read, and every size (the end of the last field a
 * command uses, as libbpf's offsetofend).
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BtfInfo, BtfLoad, GetFdById, InfoByFd, LinkInfo, MapBatch, MapCreate, MapElem, MapInfo, ObjPin, ProgFuncInfo, ProgInfo,
} from '../../src/syscall/attr.js';

const ATTR = 'union bpf_attr';

/** [C expression, our value] for each lower-case (offset) key of a table. */
function offsets(type: string, table: Record<string, number>, prefix = '', rename: Record<string, string> = {}): [string, number][] {
  return Object.entries(table)
    .filter(([k]) => k === k.toLowerCase())
    .map(([k, v]) => [`offsetof(${type}, ${prefix}${rename[k] ?? k})`, v]);
}
const endOf = (type: string, field: string, v: number): [string, number] => [`offsetofend(${type}, ${field})`, v];

const CHECKS: [string, number][] = [
  ...offsets(ATTR, MapCreate),
  ...offsets(ATTR, MapElem),
  ...offsets(ATTR, MapBatch, 'batch.'),
  ...offsets(ATTR, ObjPin),
  ...offsets(ATTR, GetFdById, '', { id: 'map_id' }),
  ['offsetof(union bpf_attr, prog_id)', GetFdById.id],
  ['offsetof(union bpf_attr, link_id)', GetFdById.id],
  ['offsetof(union bpf_attr, btf_id)', GetFdById.id],
  ...offsets(ATTR, InfoByFd, 'info.'),
  ...offsets(ATTR, BtfLoad),
  ...offsets('struct bpf_map_info', MapInfo),
  ...offsets('struct bpf_btf_info', BtfInfo),
  ...offsets('struct bpf_prog_info', ProgInfo),
  ...offsets('struct bpf_prog_info', ProgFuncInfo),
  ...offsets('struct bpf_link_info', LinkInfo),
  endOf(ATTR, 'map_extra', MapCreate.SIZE),
  endOf(ATTR, 'value', MapElem.SIZE),
  endOf(ATTR, 'map_fd', MapElem.FREEZE_SIZE),
  endOf(ATTR, 'batch.map_fd', MapBatch.SIZE),
  endOf(ATTR, 'bpf_fd', ObjPin.PIN_SIZE),
  endOf(ATTR, 'file_flags', ObjPin.GET_SIZE),
  endOf(ATTR, 'map_id', GetFdById.SIZE),
  endOf(ATTR, 'info.info', InfoByFd.SIZE),
  endOf(ATTR, 'btf_size', BtfLoad.SIZE),
  endOf(ATTR, 'btf_log_level', BtfLoad.LOG_SIZE),
  endOf('struct bpf_map_info', 'map_extra', MapInfo.SIZE),
  endOf('struct bpf_btf_info', 'btf_size', BtfInfo.SIZE),
  endOf('struct bpf_prog_info', 'name', ProgInfo.SIZE),
  endOf('struct bpf_prog_info', 'nr_func_info', ProgFuncInfo.SIZE),
  endOf('struct bpf_link_info', 'prog_id', LinkInfo.SIZE),
];

const HEADER = '/usr/include/linux/bpf.h';

test('attr and info layouts match <linux/bpf.h>; sizes end at the last field used', (t) => {
  // a precondition, not a reason to skip: npm test's pretest installs gcc and libc6-dev (linux-libc-dev)
  if (!existsSync(HEADER) || spawnSync('cc', ['--version']).status !== 0) {
    t.fail(`needs a C compiler and ${HEADER}: run sudo npm test (its pretest installs gcc, libc6-dev) or apt-get install gcc linux-libc-dev`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'bpfcr-attr-'));
  try {
    const src = [
      '#include <stddef.h>', '#include <stdio.h>', '#include <linux/bpf.h>',
      '#define offsetofend(T, f) (offsetof(T, f) + sizeof(((T *)0)->f))',
      'int main(void) {',
      ...CHECKS.map(([expr]) => `  printf("%zu\\n", (size_t)(${expr}));`),
      '  return 0;', '}', '',
    ].join('\n');
    writeFileSync(join(dir, 'layout.c'), src);
    const cc = spawnSync('cc', ['-o', join(dir, 'layout'), join(dir, 'layout.c')], { encoding: 'utf8' });
    t.is(cc.status, 0, cc.stderr);
    const run = spawnSync(join(dir, 'layout'), { encoding: 'utf8' });
    t.is(run.status, 0, run.stderr);
    const got = run.stdout.trim().split('\n').map(Number);
    t.is(got.length, CHECKS.length);
    CHECKS.forEach(([expr, ours], i) => t.is(ours, got[i], expr));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
