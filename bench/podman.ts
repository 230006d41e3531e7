/**
 * What bpfcr adds to `podman container checkpoint --export` and `restore --import`: the same image
 * (localhost/bpfcr-demo: busybox + bpfholder, built by `bpfcr demo`) run three ways, interleaved run
 * by run so machine noise hits all alike:
 *   plain   /bin/sleep — no BPF: the action script exits without starting Node
 *   maps13  bpfholder holding 13 small maps of 13 types as fds (CRIU plugin + action script)
 *   demo    the demo program: 6 maps held as fds + 2 pinned under io.bpfcr.pins (+ OCI hooks)
 * Whole-command wall time, medians.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median } from './lib.js';

const P = ['--cgroup-manager=cgroupfs', '--runtime', 'runc'];
export type Kind = 'plain' | 'maps13' | 'demo';

/** 13 small maps, one per carried type family member (as in the podman suite's checkpoint test). */
const MAPS13 = [
  'hash:h1:entries=50', 'lru_hash:h2:entries=20', 'percpu_hash:h3:entries=10', 'lru_percpu_hash:h4:entries=10',
  'array:a1:max=16,entries=16', 'percpu_array:a2:max=8,entries=8', 'lpm_trie:t1:entries=10,max=32',
  'queue:q1:entries=5,max=8', 'stack:s1:entries=5,max=8', 'hash:h5:entries=100,btf=1',
  'array:a3:frozen=1,max=4,entries=4', 'hash_of_maps:m1:entries=2,max=4,inner=hash/key=4/value=8/max=8/entries=3',
  'ringbuf:r1',
];

function podman(args: string[], reject = true): string {
  const r = spawnSync('podman', [...P, ...args], { encoding: 'utf8' });
  if (reject && r.status !== 0) throw new Error(`podman ${args.join(' ')} failed: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

export function demoImage(): string {
  const img = podman(['images', '--format', '{{.Repository}}:{{.Tag}}']).split('\n').find((l) => l.startsWith('localhost/bpfcr-demo:'));
  if (!img) throw new Error('no localhost/bpfcr-demo image: run `bpfcr demo` once (install.sh does)');
  return img;
}

function nproc(): number {
  const hard = Number(readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max processes'))?.trim().split(/\s+/)[3]);
  return Number.isFinite(hard) && hard > 0 ? Math.min(hard, 32768) : 32768;
}

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

/** One checkpoint --export + rm + restore --import of a fresh container of `kind`: wall ms of each. */
function once(kind: Kind, image: string, work: string, i: number): { ck: number; rs: number } {
  const name = `bpfcr-bench-${kind}-${process.pid}-${i}`;
  const run = ['run', '-d', '--name', name, '--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', `nproc=${nproc()}:${nproc()}`,
    '--cap-add', 'SYS_ADMIN,BPF', '--security-opt', 'seccomp=unconfined', '--mount', 'type=tmpfs,destination=/sys/fs/bpf'];
  const pins = `/sys/fs/bpf/${name}`;
  if (kind === 'demo') {
    mkdirSync(pins, { recursive: true });
    podman([...run, '-v', `${pins}:/sys/fs/bpf/app`, '--annotation', 'io.bpfcr.pins=/sys/fs/bpf/app', image, '/bin/sh', '/demo.sh']);
  } else if (kind === 'maps13') {
    podman([...run, image, '/bin/bpfholder', 'hold', ...MAPS13]);
  } else {
    podman([...run, image, '/bin/sleep', '100000']);
  }
  try {
    // ready: the holder printed READY (its stdout is the container log); sleep needs nothing
    for (let n = 0; kind !== 'plain' && !podman(['logs', name], false).includes('READY'); n++) {
      if (n > 200) throw new Error(`${name} never printed READY: ${podman(['logs', name], false)}`);
      spawnSync('sleep', ['0.05']);
    }
    const file = join(work, `${name}.tar.zst`);
    let t0 = process.hrtime.bigint();
    podman(['container', 'checkpoint', '--export', file, name]);
    const ck = ms(t0);
    podman(['rm', '-f', name]);
    if (kind === 'demo') spawnSync('sh', ['-c', `rm -rf ${pins}/*`]);
    t0 = process.hrtime.bigint();
    podman(['container', 'restore', '--import', file]);
    const rs = ms(t0);
    rmSync(file, { force: true });
    return { ck, rs };
  } finally {
    podman(['rm', '-f', '-t', '0', name], false);
    if (kind === 'demo') rmSync(pins, { recursive: true, force: true });
  }
}

export interface Overhead { kind: Kind; ck: number[]; rs: number[] }

/** `runs` rounds of every kind, interleaved; the staging area is collected afterwards. */
export function podmanOverhead(kinds: Kind[], runs: number): Map<Kind, Overhead> {
  const image = demoImage();
  const work = mkdtempSync(join(tmpdir(), 'bpfcr-bench-podman-'));
  const out = new Map<Kind, Overhead>(kinds.map((k) => [k, { kind: k, ck: [], rs: [] }]));
  try {
    for (let i = 0; i < runs; i++) {
      for (const k of kinds) {
        const r = once(k, image, work, i);
        out.get(k)!.ck.push(r.ck);
        out.get(k)!.rs.push(r.rs);
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
    if (existsSync('/sys/fs/bpf/bpfcr')) spawnSync('bpfcr', ['gc', '--older-than', '0s'], { stdio: 'ignore' });
  }
  return out;
}

export const medianOf = (xs: number[]): number => median(xs);
