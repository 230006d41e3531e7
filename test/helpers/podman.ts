/**
 * Real podman for tests: the test image (busybox-static + build/bpfholder, built and imported
 * once per content), containers with the flags this machine needs, hooks.d directories that
 * point at this checkout's hooks, and cleanup.
 *
 * Machine facts (see /work/shared/notes/platform.md): root podman 4.3 + runc 1.1.5 need
 * --cgroup-manager=cgroupfs --runtime runc, --network none, --ulimit nofile=20000:20000, and an
 * explicit nproc ulimit (podman's default nproc makes runc's prlimit fail with EPERM here).
 * No registry is reachable: the image is `podman import` of a rootfs tar built here.
 */
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { existsSync, openSync, readFileSync, readSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeRootfsTar } from '../../src/oci/rootfs.js';
import { HOLDER, onceRetryable, ROOT, tempDir } from './env.js';

export const BUSYBOX = '/bin/busybox';
export const IMAGE_REPO = 'localhost/bpfcr-test';
export const SETUP_HINT = "run `sudo npm test` (its pretest, scripts/test-setup.sh, installs podman, runc, busybox-static)";

/** Global podman flags every call needs here. */
export const PODMAN_GLOBAL = ['--cgroup-manager=cgroupfs', '--runtime', 'runc'];

function nprocLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max processes'));
    const hard = Number(line?.trim().split(/\s+/)[3]);
    return Number.isFinite(hard) && hard > 0 ? Math.min(hard, 32768) : 32768;
  } catch {
    return 32768;
  }
}

/** `podman run` flags this machine needs. */
export function runFlags(): string[] {
  const n = nprocLimit();
  return ['--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', `nproc=${n}:${n}`];
}

/** Flags that let a container create and pin BPF maps (bpf(2) needs CAP_SYS_ADMIN/CAP_BPF and
 *  podman's default seccomp profile blocks it). */
export const BPF_FLAGS = ['--cap-add', 'SYS_ADMIN,BPF', '--security-opt', 'seccomp=unconfined'];

/** True when the ELF file has no program interpreter (statically linked). */
function isStaticElf(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const h = Buffer.alloc(64);
    readSync(fd, h, 0, 64, 0);
    if (h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2) return false; // ELF64 only
    const phoff = Number(h.readBigUInt64LE(32));
    const phentsize = h.readUInt16LE(54);
    const phnum = h.readUInt16LE(56);
    const ph = Buffer.alloc(phentsize * phnum);
    readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) if (ph.readUInt32LE(i * phentsize) === 3 /* PT_INTERP */) return false;
    return true;
  } finally {
    closeSync(fd);
  }
}

/** Fail (never skip) with what to run when podman, runc or a static busybox is missing. */
export async function requirePodman(): Promise<void> {
  const missing: string[] = [];
  for (const [what, cmd] of [['podman', 'podman'], ['runc', 'runc']] as const) {
    const r = await execa(cmd, ['--version'], { reject: false });
    if (r.exitCode !== 0) missing.push(what);
  }
  if (!existsSync(BUSYBOX) || !isStaticElf(BUSYBOX)) missing.push('busybox-static (a static /bin/busybox)');
  if (!existsSync(HOLDER)) missing.push(`${HOLDER} (bash scripts/build-fixtures.sh)`);
  if (missing.length) throw new Error(`podman tests need ${missing.join(', ')}: ${SETUP_HINT}`);
}

export interface PodmanResult { exitCode: number; stdout: string; stderr: string }

/** A podman with fixed global flags (e.g. --hooks-dir): run, start, stop and cleanup must all see
 *  the same hooks, since podman recomputes them at every start and at cleanup. */
export class Podman {
  readonly global: string[];
  constructor(opts: { hooksDir?: string } = {}) {
    this.global = [...PODMAN_GLOBAL, ...(opts.hooksDir ? ['--hooks-dir', opts.hooksDir] : [])];
  }

  async run(args: string[], opts: { reject?: boolean; timeoutMs?: number } = {}): Promise<PodmanResult> {
    const r = await execa('podman', [...this.global, ...args], { reject: false, timeout: opts.timeoutMs ?? 120_000, stripFinalNewline: true });
    const res = { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
    if ((opts.reject ?? true) && res.exitCode !== 0) {
      throw new Error(`podman ${args.join(' ')} failed (${res.exitCode}): ${res.stderr.trim() || res.stdout.trim()}`);
    }
    return res;
  }
}

/** busybox applets linked into the test image (`true`: ringtrace's default child) */
const APPLETS = ['sh', 'ls', 'cat', 'sleep', 'mkdir', 'echo', 'find', 'stat', 'true'];

/**
 * The test image, localhost/bpfcr-test:<hash of its files>: /bin/busybox (+ sh), /bin/bpfholder
 * and the usual mount points. Built and imported once per content (an existing tag is reused),
 * so a rebuilt bpfholder gives a new tag and stale images are never used.
 */
export const testImage = onceRetryable(async (): Promise<string> => {
    await requirePodman();
    const h = createHash('sha256');
    for (const f of [BUSYBOX, HOLDER]) h.update(readFileSync(f));
    h.update(APPLETS.join(','));
    const ref = `${IMAGE_REPO}:${h.digest('hex').slice(0, 16)}`;
    const pm = new Podman();
    if ((await pm.run(['image', 'exists', ref], { reject: false })).exitCode === 0) return ref;
    const dir = tempDir('bpfcr-rootfs-');
    try {
      const tar = writeRootfsTar(dir, { busybox: BUSYBOX, holder: HOLDER, applets: APPLETS });
      await pm.run(['import', '--quiet', tar, ref]);
      return ref;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
});

let seq = 0;
/** A container name unique to this test process. */
export function containerName(tag = 'c'): string {
  return `bpfcr-test-${tag}-${process.pid}-${++seq}`;
}

export interface RunSpec {
  name?: string;
  image?: string;
  annotations?: Record<string, string>;
  /** -v HOST:CONTAINER[:opts] */
  volumes?: string[];
  /** --mount specs */
  mounts?: string[];
  /** let the container create and pin BPF maps (default true) */
  bpf?: boolean;
  /** mount a tmpfs on /sys/fs/bpf first, so binds under it have a writable parent (default true):
   *  the container's /sys is a fresh read-only sysfs where runc cannot create mount points */
  tmpfsSysFsBpf?: boolean;
  extra?: string[];
  cmd: string[];
}

export interface Container {
  name: string;
  id: string;
  pm: Podman;
  logs(): Promise<string>;
  /** poll the logs until `pattern` shows up `count` times */
  waitLog(pattern: string | RegExp, opts?: { count?: number; timeoutMs?: number }): Promise<string>;
  stop(timeoutSec?: number): Promise<void>;
  start(): Promise<void>;
  exec(cmd: string[]): Promise<PodmanResult>;
  inspect(): Promise<Record<string, unknown>>;
  remove(): Promise<void>;
}

/** `podman run -d` with this machine's flags; the container is removed by remove() (or cleanup). */
export async function runContainer(pm: Podman, spec: RunSpec): Promise<Container> {
  const name = spec.name ?? containerName();
  const args = ['run', '-d', '--name', name, ...runFlags()];
  if (spec.bpf ?? true) args.push(...BPF_FLAGS);
  if (spec.tmpfsSysFsBpf ?? true) args.push('--mount', 'type=tmpfs,destination=/sys/fs/bpf');
  for (const m of spec.mounts ?? []) args.push('--mount', m);
  for (const v of spec.volumes ?? []) args.push('-v', v);
  for (const [k, v] of Object.entries(spec.annotations ?? {})) args.push('--annotation', `${k}=${v}`);
  args.push(...(spec.extra ?? []), spec.image ?? (await testImage()), ...spec.cmd);
  const id = (await pm.run(args)).stdout.trim().split('\n').pop()!;
  return containerHandle(pm, name, id);
}

function containerHandle(pm: Podman, name: string, id: string): Container {
  const c: Container = {
    name, id, pm,
    logs: async () => {
      const r = await pm.run(['logs', name], { reject: false });
      return r.stdout + (r.stderr ? `\n${r.stderr}` : '');
    },
    waitLog: async (pattern, opts = {}) => {
      const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
      const want = opts.count ?? 1;
      const re = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g') : new RegExp(pattern.source, 'g');
      let text = '';
      while (Date.now() < deadline) {
        text = await c.logs();
        if ((text.match(re) ?? []).length >= want) return text;
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`container ${name}: ${String(pattern)} not seen ${want} time(s) in its logs within ${opts.timeoutMs ?? 30_000} ms; logs:\n${text}`);
    },
    stop: async (timeoutSec = 0) => { await pm.run(['stop', '-t', String(timeoutSec), name]); },
    start: async () => { await pm.run(['start', name]); },
    exec: (cmd) => pm.run(['exec', name, ...cmd], { reject: false }),
    inspect: async () => (JSON.parse((await pm.run(['inspect', name])).stdout) as Record<string, unknown>[])[0]!,
    remove: async () => { await pm.run(['rm', '-f', '-t', '0', name], { reject: false }); },
  };
  return c;
}

/** Remove every container this test process created (names from containerName()). */
export async function cleanupContainers(pm = new Podman()): Promise<void> {
  const r = await pm.run(['ps', '-a', '--format', '{{.Names}}'], { reject: false });
  const mine = r.stdout.split('\n').filter((n) => n.startsWith('bpfcr-test-') && n.includes(`-${process.pid}-`));
  if (mine.length) await pm.run(['rm', '-f', '-t', '0', ...mine], { reject: false });
}

export interface HooksDir {
  dir: string;
  /** the hooks write their messages here (hooks.d `env`: podman gives hooks no environment) */
  log: string;
  readLog(): string;
  /** with `trace`: the stages that ran, in order */
  runs(): string[];
}

/**
 * A hooks.d directory registering this checkout's hooks/prestart and hooks/poststop (as
 * config/hooks.d does for the installed ones), with BPFCR_CONFIG= (built-in policy) and a private
 * hook log in the hooks' env. `always` registers them for every container; `trace` records each
 * run in DIR/runs (through /bin/sh, which then execs the hook with the same stdin).
 */
export function makeHooksDir(opts: { always?: boolean; trace?: boolean } = {}): HooksDir {
  const dir = tempDir('bpfcr-hooksd-');
  const log = join(dir, 'hooks.log');
  for (const stage of ['prestart', 'poststop']) {
    const src = JSON.parse(readFileSync(join(ROOT, 'config/hooks.d', opts.always ? `always/bpfcr-${stage}-always.json` : `bpfcr-${stage}.json`), 'utf8')) as {
      hook: { path: string; args?: string[]; env?: string[] };
    };
    src.hook.path = join(ROOT, 'hooks', stage);
    if (opts.trace) {
      src.hook.args = ['sh', '-c', `echo ${stage} >> ${join(dir, 'runs')}; exec ${src.hook.path}`];
      src.hook.path = '/bin/sh';
    }
    src.hook.env = ['BPFCR_CONFIG=', `BPFCR_HOOK_LOG=${log}`];
    writeFileSync(join(dir, `bpfcr-${stage}.json`), JSON.stringify(src, null, 2));
  }
  const runs = join(dir, 'runs');
  return {
    dir, log,
    readLog: () => (existsSync(log) ? readFileSync(log, 'utf8') : ''),
    runs: () => (existsSync(runs) ? readFileSync(runs, 'utf8').split('\n').filter(Boolean) : []),
  };
}
