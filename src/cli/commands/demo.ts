/**
 * `bpfcr demo`: proves an installation end to end with real podman + runc + CRIU. A container
 * holds several BPF maps (as fds, and pinned under its io.bpfcr.pins bind mount), is checkpointed
 * with --export, the host state is wiped (container removed, its staged maps collected, its pins
 * deleted), and it is restored with --import. Every map is compared before/after with bpfholder's
 * `describe --summary` (its own FNV-1a over the contents; independent of bpfcr's code).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliEntry, packageRoot } from '../../paths.js';
import { bpfKindOfLink } from '../../maps/fdinfo.js';
import { writeRootfsTar } from '../../oci/rootfs.js';
import { type Command, parse, table, UsageError } from '../command.js';

const BPF_FS_MAGIC = 0xcafe4a11;
const BUSYBOX = '/bin/busybox';
const IMAGE_REPO = 'localhost/bpfcr-demo';
/** podman flags this kind of machine needs (docs/podman.md): cgroupfs, runc, no network, bounded ulimits. */
const PODMAN_GLOBAL = ['--cgroup-manager=cgroupfs', '--runtime', 'runc'];

/** The demo program: pinned-only maps (their creator exits), then a process holding more maps. */
const PROGRAM = `set -e
mkdir -p /sys/fs/bpf/app
/bin/bpfholder hold --pin-dir /sys/fs/bpf/app hash:sessions:entries=200,btf=1 lru_hash:recent:entries=40 > /tmp/pinned.out &
P=$!
while ! /bin/busybox grep -q READY /tmp/pinned.out; do sleep 0.1; done
kill $P; wait $P || true
exec /bin/bpfholder hold hash:flows:entries=500,max=1024 percpu_array:stats:max=16 lpm_trie:routes:entries=20,max=64 queue:jobs:entries=10,max=16 array:config:frozen=1,max=8,entries=8 hash_of_maps:tenants:entries=3,max=8,inner=hash/key=4/value=8/max=16/entries=5
`;

/** Where the bpfholder binary is: the checkout's build/ or the installed copy's (install.sh ships it). */
function findHolder(): string {
  const root = packageRoot();
  for (const p of [process.env['BPFCR_DEMO_HOLDER'], join(root, 'build/bpfholder')]) if (p && existsSync(p)) return p;
  throw new Error(`the demo program (bpfholder) is missing: expected ${join(root, 'build/bpfholder')} (sudo ./install.sh builds and installs it)`);
}

interface Run { status: number; stdout: string; stderr: string }
function sh(cmd: string, args: string[], input?: string): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  return { status: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}
function must(cmd: string, args: string[]): string {
  const r = sh(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}
const podman = (args: string[]): string => must('podman', [...PODMAN_GLOBAL, ...args]);

function nprocLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max processes'));
  const hard = Number(line?.trim().split(/\s+/)[3]);
  return Number.isFinite(hard) && hard > 0 ? Math.min(hard, 32768) : 32768;
}

function ensureImage(holder: string, say: (s: string) => void): string {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: apt-get install busybox-static`);
  const h = createHash('sha256');
  for (const f of [BUSYBOX, holder]) h.update(readFileSync(f));
  h.update(PROGRAM);
  const ref = `${IMAGE_REPO}:${h.digest('hex').slice(0, 16)}`;
  if (sh('podman', [...PODMAN_GLOBAL, 'image', 'exists', ref]).status === 0) return ref;
  say(`building the demo image ${ref} (busybox + bpfholder, podman import)`);
  const dir = mkdtempSync(join(tmpdir(), 'bpfcr-demo-rootfs-'));
  try {
    const tar = writeRootfsTar(dir, { busybox: BUSYBOX, holder, applets: ['sh', 'mkdir', 'sleep', 'kill'], files: { 'demo.sh': PROGRAM } });
    podman(['import', '--quiet', tar, ref]);
    return ref;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** describe --summary of every map the processes under pid hold (fd order), and of the pins. */
interface Row { name: string; kind: string; type: string; entries: string; summary: string }
function snapshot(holder: string, pid: number, pinDir: string): Row[] {
  const rows: Row[] = [];
  const row = (kind: string, sel: string[]): void => {
    const line = must(holder, ['describe', '--summary', ...sel]).trim().split('\n')[0]!;
    const o = JSON.parse(line) as { name: string; type: string; count: number };
    rows.push({ name: o.name, kind, type: o.type, entries: String(o.count), summary: line });
  };
  const fds = readdirSync(`/proc/${pid}/fd`).sort((a, b) => Number(a) - Number(b));
  for (const fd of fds) {
    let link = '';
    try { link = readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
    if (bpfKindOfLink(link) !== 'map') continue;
    const m = /^map_id:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
    if (m) row(`held (fd ${fd})`, ['--id', m[1]!]);
  }
  for (const n of readdirSync(pinDir).sort()) row('pinned', ['--pin', join(pinDir, n)]);
  return rows;
}

function waitFor(what: string, cond: () => boolean, ms = 30_000): void {
  const deadline = Date.now() + ms;
  const sleep = new Int32Array(new SharedArrayBuffer(4));
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    Atomics.wait(sleep, 0, 0, 100);
  }
}

export const demoCommand: Command = {
  name: 'demo',
  summary: 'prove the installation: podman checkpoint --export / restore --import of a container holding BPF maps',
  usage: `Usage: bpfcr demo [--keep] [--gc-all]

Runs a small demo container under podman (image localhost/bpfcr-demo, built once
from busybox-static and bpfholder, cached by content hash) holding BPF maps of
several types: six as fds of its process, two pinned only, in a host bpffs
directory bind-mounted at /sys/fs/bpf/app (annotation io.bpfcr.pins). Then:

  podman container checkpoint --export F    (bpfcr saves the maps into F)
  podman rm -f; staged maps collected; pins deleted   (no trace on the host)
  podman container restore --import F       (bpfcr recreates the maps)

and prints every map before and after (bpfholder describe --summary: type,
sizes, entry count and an FNV-1a hash of the contents). Exit 0 only when every
map is identical. Needs root, podman, runc, a CRIU with bpfcr's plugin and
action script, and bpfcr's OCI hooks registered (sudo ./install.sh does all).

Options:
      --keep      leave the restored container, its pins and F in place
      --gc-all    collect every staged checkpoint on the host (bpfcr gc --all)
                  instead of only the demo's own
  -h, --help      show this help`,

  async run(argv) {
    const p = parse(this, argv, { keep: { type: 'boolean' }, 'gc-all': { type: 'boolean' } });
    if (!p) return 0;
    if (p.positionals.length) throw new UsageError(`unexpected argument ${p.positionals[0]}`);
    if (process.getuid?.() !== 0) throw new Error('the demo runs podman checkpoint/restore: run it as root');
    const say = (s: string): void => { process.stdout.write(`demo: ${s}\n`); };
    for (const [cmd, pkg] of [['podman', 'podman'], ['runc', 'runc'], ['zstd', 'zstd']]) {
      if (spawnSync(cmd!, ['--version'], { stdio: 'ignore' }).status !== 0) throw new Error(`${cmd} is missing: apt-get install ${pkg} (sudo ./install.sh installs everything the demo needs)`);
    }
    const holder = findHolder();
    const image = ensureImage(holder, say);
    if (statfsSync('/sys/fs/bpf').type !== BPF_FS_MAGIC) must('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf']);
    const name = `bpfcr-demo-${process.pid}`;
    const pinDir = `/sys/fs/bpf/${name}`;
    const work = mkdtempSync(join(tmpdir(), 'bpfcr-demo-'));
    const exported = join(work, 'checkpoint.tar.zst');
    mkdirSync(pinDir, { recursive: true });
    const n = nprocLimit();
    let ok = false;
    try {
      const t0 = Date.now();
      podman(['run', '-d', '--name', name, '--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', `nproc=${n}:${n}`,
        '--cap-add', 'SYS_ADMIN,BPF', '--security-opt', 'seccomp=unconfined', '--mount', 'type=tmpfs,destination=/sys/fs/bpf',
        '-v', `${pinDir}:/sys/fs/bpf/app`, '--annotation', 'io.bpfcr.pins=/sys/fs/bpf/app', image, '/bin/sh', '/demo.sh']);
      waitFor('the demo program', () => /READY/.test(sh('podman', [...PODMAN_GLOBAL, 'logs', name]).stdout));
      const pid = (): number => Number(podman(['inspect', '-f', '{{.State.Pid}}', name]).trim());
      const before = snapshot(holder, pid(), pinDir);
      say(`container ${name} started (${Date.now() - t0} ms), holding ${before.filter((r) => r.kind !== 'pinned').length} map(s) as fds and ${before.filter((r) => r.kind === 'pinned').length} pinned in ${pinDir}`);

      let t = Date.now();
      podman(['container', 'checkpoint', '--export', exported, name]);
      say(`podman container checkpoint --export ${exported}: ${Date.now() - t} ms`);
      const key = sh('tar', ['-I', 'zstd', '-xOf', exported, 'checkpoint/bpfcr-key']).stdout.trim();

      podman(['rm', '-f', name]);
      const { stagingRoot, removeStagingTree } = await import('../../criu/staging.js');
      const { loadConfig } = await import('../../config/config.js');
      const root = stagingRoot((await loadConfig()).staging);
      if (p.values['gc-all']) {
        must(process.execPath, [cliEntry(), 'gc', '--all']);
        say(`host state wiped: container removed, bpfcr gc --all, pins deleted`);
      } else {
        if (/^[0-9a-f]{16}$/.test(key) && existsSync(join(root, key))) removeStagingTree(join(root, key));
        say(`host state wiped: container removed, its staged maps (${root}/${key || '?'}) collected, pins deleted`);
      }
      for (const f of readdirSync(pinDir)) rmSync(join(pinDir, f), { recursive: true });

      t = Date.now();
      podman(['container', 'restore', '--import', exported]);
      say(`podman container restore --import ${exported}: ${Date.now() - t} ms`);
      const after = snapshot(holder, pid(), pinDir);

      const key2 = (r: Row): string => `${r.kind}\0${r.name}`;
      const afterBy = new Map(after.map((r) => [key2(r), r]));
      let same = before.length === after.length && before.length > 0;
      const rows = before.map((b) => {
        const a = afterBy.get(key2(b));
        const identical = a !== undefined && a.summary === b.summary;
        if (!identical) same = false;
        return [b.name, b.kind, b.type, b.entries, a ? a.entries : 'MISSING', identical ? 'yes' : 'NO'];
      });
      process.stdout.write('\n' + table(['MAP', 'HELD AS', 'TYPE', 'ENTRIES BEFORE', 'ENTRIES AFTER', 'IDENTICAL'], rows) + '\n');
      ok = same;
      say(ok ? `all ${before.length} maps identical after checkpoint --export, host wipe, restore --import` : 'MAPS DIFFER (see the table): the installation does not work end to end');
      return ok ? 0 : 1;
    } finally {
      if (!p.values.keep) {
        sh('podman', [...PODMAN_GLOBAL, 'rm', '-f', '-t', '0', name]);
        rmSync(pinDir, { recursive: true, force: true });
        rmSync(work, { recursive: true, force: true });
        // a failed run may leave the checkpoint's staging behind: bpfcr gc --older-than collects it
      } else {
        say(`kept: container ${name}, pins ${pinDir}, export ${exported}`);
      }
    }
  },
};
