/**
 * runc + CRIU plumbing for the CRIU end-to-end tests: an OCI bundle (busybox-static rootfs +
 * build/bpfholder), containers started detached with pipes as stdio (CRIU can carry pipes; a
 * host file as stdio cannot be dumped), checkpoint/restore, and the maps a container holds.
 *
 * Isolation: every suite gets its own bpffs as staging root (BPFCR_STAGING reaches the plugin and
 * the action script through runc → criu's environment), its own CRIU config naming this checkout's
 * hooks/checkpoint (runc's org.criu.config annotation), and BPFCR_ACTION_SCRIPT so that an installed
 * copy named in /etc/criu/default.conf stands aside.
 */
import { execa } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { HOLDER, ROOT, tempDir } from '../helpers/env.js';

export const HOOK = join(ROOT, 'hooks/checkpoint');
export const CLI = join(ROOT, 'dist/src/cli/bpfcr.cjs');

/** The E2E container's maps: every content-carrying map type (test/helpers/specs.ts). */
export { CONTENT_SPECS as CONTAINER_SPECS } from '../helpers/specs.js';

/** Make sure runc, a working criu and the plugin from this checkout are there (idempotent). */
export async function ensureCriuSetup(): Promise<void> {
  const r = await execa('bash', [join(ROOT, 'scripts/test-setup-criu.sh')], { reject: false, all: true });
  if (r.exitCode !== 0) {
    throw new Error(`CRIU test preconditions missing and scripts/test-setup-criu.sh could not install them (run it as root and read its output):\n${r.all}`);
  }
  if (!existsSync(join(ROOT, 'dist/src/criu/actions.js'))) throw new Error('dist/ is not built: run npx tsc -p .');
}

export interface Suite {
  dir: string;
  bpffs: string;
  staging: string;
  criuConf: string;
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

/** Temp dir + private bpffs (staging root below it) + CRIU config naming this checkout's hook. */
export async function suite(opts: { hook?: boolean; env?: Record<string, string> } = {}): Promise<Suite> {
  const dir = tempDir('bpfcr-criu-');
  const bpffs = join(dir, 'bpffs');
  mkdirSync(bpffs);
  await execa('mount', ['-t', 'bpf', 'bpf', bpffs]);
  const staging = join(bpffs, 'staging');
  const criuConf = join(dir, 'criu.conf');
  const hook = opts.hook ?? true;
  writeFileSync(criuConf, hook ? `action-script ${HOOK}\n` : '');
  // without our hook, BPFCR_ACTION_SCRIPT still makes an installed copy (default.conf) stand aside
  const env = { BPFCR_STAGING: staging, BPFCR_CONFIG: '', BPFCR_ACTION_SCRIPT: hook ? HOOK : '/nonexistent', ...opts.env };
  return {
    dir, bpffs, staging, criuConf, env,
    cleanup: async () => {
      await execa('umount', [bpffs], { reject: false });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** OCI bundle: rootfs = busybox-static (+ applet links) + bpfholder; process = bpfholder hold SPECS. */
export interface BundleExtras {
  /** host files copied into the rootfs' /bin */
  files?: string[];
  /** extra OCI mounts (e.g. binds of a host status dir, tracefs) */
  mounts?: { destination: string; source: string; type: string; options: string[] }[];
}

export async function bundle(s: Suite, name: string, specs: string[], args?: string[], extras: BundleExtras = {}): Promise<string> {
  const b = join(s.dir, `bundle-${name}`);
  const bin = join(b, 'rootfs/bin');
  mkdirSync(bin, { recursive: true });
  copyFileSync('/bin/busybox', join(bin, 'busybox'));
  await execa(join(bin, 'busybox'), ['--install', bin]);
  copyFileSync(HOLDER, join(bin, 'bpfholder'));
  await execa('chmod', ['0755', join(bin, 'bpfholder'), join(bin, 'busybox')]);
  for (const f of extras.files ?? []) {
    copyFileSync(f, join(bin, basename(f)));
    await execa('chmod', ['0755', join(bin, basename(f))]);
  }
  await execa('runc', ['spec', '--bundle', b]);
  const cfg = JSON.parse(readFileSync(join(b, 'config.json'), 'utf8')) as {
    process: { terminal: boolean; args: string[]; capabilities: Record<string, string[]> };
    annotations?: Record<string, string>;
    mounts: { destination: string; source: string; type: string; options: string[] }[];
  };
  cfg.mounts.push(...(extras.mounts ?? []));
  cfg.process.terminal = false;
  cfg.process.args = args ?? ['/bin/bpfholder', 'hold', ...specs];
  // creating maps needs CAP_BPF (+ CAP_SYS_ADMIN for some types, CAP_PERFMON for perf arrays)
  for (const set of ['bounding', 'effective', 'permitted']) cfg.process.capabilities[set]!.push('CAP_SYS_ADMIN', 'CAP_BPF', 'CAP_PERFMON');
  delete cfg.process.capabilities['ambient'];
  cfg.annotations = { ...cfg.annotations, 'org.criu.config': s.criuConf };
  writeFileSync(join(b, 'config.json'), JSON.stringify(cfg, null, 1));
  return b;
}

export interface HeldMap { name: string; type: string; id: number; fd: number }

interface Spawned { child: ChildProcess; code: number | null; stderr: string; lines: string[] }

/**
 * Run a detached runc (run -d / restore -d). The container's stdio must be real pipes: Node's
 * 'pipe' stdio is a socketpair, which CRIU cannot dump ("Unix socket … not found"). So a shell
 * makes them: `: | runc … | cat`, with runc's exit status reported on fd 3. Resolves when runc
 * itself has exited (and, for run, the holder printed READY); the container keeps the pipes.
 */
function spawnDetached(args: string[], cwd: string, env: Record<string, string>, waitReady: boolean): Promise<Spawned> {
  const script = 'exec 3>&2; : | { runc "$@" 2>&1 3>&-; echo "__RUNC_EXIT $?" >&3; } | cat';
  const child = spawn('/bin/sh', ['-c', script, 'sh', ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const res: Spawned = { child, code: null, stderr: '', lines: [] };
  const rl = createInterface({ input: child.stdout! });
  return new Promise((resolve, reject) => {
    let ready = !waitReady;
    const done = (): void => {
      if (res.code !== null && (ready || res.code !== 0)) {
        if (res.code !== 0) res.stderr = [res.stderr, ...res.lines].filter(Boolean).join('\n');
        resolve(res);
      }
    };
    rl.on('line', (l) => { res.lines.push(l); if (l === 'READY') { ready = true; done(); } });
    child.stderr!.on('data', (d: Buffer) => {
      res.stderr += d.toString();
      const m = /__RUNC_EXIT (\d+)/.exec(res.stderr);
      if (m && res.code === null) {
        res.code = Number(m[1]);
        res.stderr = res.stderr.replace(/__RUNC_EXIT \d+\n?/, '');
        // let the lines already in the pipe arrive
        setTimeout(done, waitReady ? 0 : 20);
      }
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (res.code === null) { res.code = code ?? 1; res.stderr += `\nsh exited ${code} before runc reported`; }
      done();
    });
  });
}

export class Container {
  pipes: ChildProcess[] = [];
  maps: HeldMap[] = [];
  /** what the container's process printed before READY */
  lines: string[] = [];
  constructor(readonly s: Suite, readonly name: string, readonly bundleDir: string) {}

  async start(): Promise<void> {
    const r = await spawnDetached(['run', '-d', this.name], this.bundleDir, this.s.env, true);
    this.pipes.push(r.child);
    if (r.code !== 0) throw new Error(`runc run ${this.name} exited ${r.code}: ${r.stderr.trim()}`);
    this.lines = r.lines;
    this.maps = r.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as HeldMap & { kind?: string }).filter((m) => m.kind === undefined && typeof m.id === 'number');
  }

  /** start a container whose process prints nothing (no READY to wait for) */
  async startPlain(): Promise<void> {
    const r = await spawnDetached(['run', '-d', this.name], this.bundleDir, this.s.env, false);
    this.pipes.push(r.child);
    if (r.code !== 0) throw new Error(`runc run ${this.name} exited ${r.code}: ${r.stderr.trim()}`);
  }

  async state(): Promise<{ status: string; pid: number } | undefined> {
    const r = await execa('runc', ['state', this.name], { reject: false });
    if (r.exitCode !== 0) return undefined;
    return JSON.parse(r.stdout) as { status: string; pid: number };
  }

  async pid(): Promise<number> {
    const st = await this.state();
    if (!st || st.status !== 'running') throw new Error(`container ${this.name} is not running (${st?.status ?? 'gone'})`);
    return st.pid;
  }

  /** map name → id, read from the container init's /proc/PID/fd + fdinfo (fd numbers survive CRIU). */
  async ids(): Promise<Map<string, number>> {
    const pid = await this.pid();
    const out = new Map<string, number>();
    for (const m of this.maps) {
      const link = readlinkSync(`/proc/${pid}/fd/${m.fd}`);
      if (link !== 'anon_inode:bpf-map') throw new Error(`${this.name}: fd ${m.fd} (${m.name}) is ${link}`);
      const id = /^map_id:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${m.fd}`, 'utf8'))?.[1];
      out.set(m.name, Number(id));
    }
    return out;
  }

  async checkpoint(imageDir: string, extra: string[] = [], env: Record<string, string> = {}) {
    mkdirSync(imageDir, { recursive: true });
    return execa('runc', ['checkpoint', '--image-path', imageDir, ...extra, this.name], {
      reject: false, env: { ...process.env, ...this.s.env, ...env },
    });
  }

  /** runc restore -d as this container (name) from imageDir. */
  async restore(imageDir: string): Promise<Spawned> {
    const r = await spawnDetached(['restore', '-d', '--image-path', imageDir, this.name], this.bundleDir, this.s.env, false);
    this.pipes.push(r.child);
    return r;
  }

  async destroy(): Promise<void> {
    await execa('runc', ['delete', '-f', this.name], { reject: false });
    for (const p of this.pipes) { p.stdout?.destroy(); p.stderr?.destroy(); p.stdin?.destroy(); }
  }
}

export async function waitGone(pid: number, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (existsSync(`/proc/${pid}`)) {
    if (Date.now() > end) throw new Error(`pid ${pid} still exists after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Everything under the staging root (relative paths), to check that nothing is left behind. */
export function stagedEntries(staging: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    let names: string[];
    try { names = readdirSync(d); } catch { return; }
    for (const n of names) {
      out.push(rel + n);
      walk(join(d, n), `${rel}${n}/`);
    }
  };
  walk(staging, '');
  return out;
}

/** bpfcr CLI with the suite's environment. */
export function bpfcr(s: Suite, args: string[], env: Record<string, string> = {}) {
  return execa(process.execPath, [CLI, ...args], { reject: false, env: { ...process.env, ...s.env, ...env } });
}

export function criuLog(imageDir: string, which: 'dump' | 'restore'): string {
  try { return readFileSync(join(imageDir, `${which}.log`), 'utf8'); } catch { return ''; }
}
