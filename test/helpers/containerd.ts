/**
 * Real containerd (1.6, Debian 12's `containerd` package, driven with `ctr`) for tests: the daemon
 * (scripts/test-setup-containerd.sh starts it when it is not answering), the podman test image
 * imported into a private containerd namespace, tasks run / checkpointed / restored, the CRIU
 * image dir a checkpoint image carries, and cleanup.
 *
 * containerd runs runc through containerd-shim-runc-v2, and runc runs criu: the CRIU side is the
 * same as under podman (/etc/criu/default.conf names the installed action script), so these tests need
 * the installed bpfcr to be this checkout (requireInstalledCheckout in helpers/podman-criu.ts).
 */
import { execa } from 'execa';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { onceRetryable, ROOT, tempDir } from './env.js';
import { testImage } from './podman.js';

/** The containerd namespace every test object lives in (removed by cleanup when empty). */
export const NS = 'bpfcr-test';
const SETUP = 'scripts/test-setup-containerd.sh';

/** containerd installed and answering (installs/starts it, idempotently); fails saying what to run. */
export async function ensureContainerd(): Promise<void> {
  const r = await execa('bash', [join(ROOT, SETUP)], { reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`containerd is not usable and ${SETUP} could not set it up (run it as root and read its output):\n${r.all}`);
}

export interface CtrResult { exitCode: number; stdout: string; stderr: string }

/** `ctr -n bpfcr-test ARGS`; throws with ctr's message unless reject is false. */
export async function ctr(args: string[], opts: { reject?: boolean; timeoutMs?: number } = {}): Promise<CtrResult> {
  const r = await execa('ctr', ['-n', NS, ...args], { reject: false, timeout: opts.timeoutMs ?? 120_000, stripFinalNewline: true });
  const res = { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  if ((opts.reject ?? true) && res.exitCode !== 0) throw new Error(`ctr ${args.join(' ')} failed (${res.exitCode}): ${res.stderr.trim() || res.stdout.trim()}`);
  return res;
}

/** The podman test image (helpers/podman.ts testImage()), imported into containerd once per tag:
 *  `podman save --format oci-archive` → `ctr image import`. */
export const containerdTestImage = onceRetryable(async (): Promise<string> => {
    const ref = await testImage();
    if ((await ctr(['images', 'ls', '-q'])).stdout.split('\n').includes(ref)) return ref;
    const dir = tempDir('bpfcr-ctr-image-');
    try {
      const archive = join(dir, 'image.tar');
      await execa('podman', ['save', '--quiet', '--format', 'oci-archive', '-o', archive, ref]);
      await ctr(['images', 'import', archive]);
      return ref;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
});

let seq = 0;
/** A container id unique to this test process. */
export function containerId(tag = 'c'): string {
  return `bpfcr-test-${tag}-${process.pid}-${++seq}`;
}
/** A checkpoint image ref unique to this test process. */
export function checkpointRef(tag = 'ckpt'): string {
  return `localhost/bpfcr-test-${tag}-${process.pid}:${++seq}`;
}

export interface RunOptions {
  /** host dir → container dir bind mounts */
  binds?: { source: string; destination: string }[];
  annotations?: Record<string, string>;
}

/** `ctr run -d --privileged IMAGE ID CMD…` (privileged: bpf(2) needs CAP_SYS_ADMIN/CAP_BPF, no seccomp). */
export async function runTask(id: string, cmd: string[], opts: RunOptions = {}): Promise<number> {
  const args = ['run', '-d', '--privileged'];
  for (const b of opts.binds ?? []) args.push('--mount', `type=bind,src=${b.source},dst=${b.destination},options=rbind:rw`);
  for (const [k, v] of Object.entries(opts.annotations ?? {})) args.push('--annotation', `${k}=${v}`);
  await ctr([...args, await containerdTestImage(), id, ...cmd]);
  return taskPid(id);
}

/** The pid of the task's init (throws unless it is RUNNING). */
export async function taskPid(id: string): Promise<number> {
  const line = (await ctr(['tasks', 'ls'])).stdout.split('\n').find((l) => l.split(/\s+/)[0] === id);
  const [, pid, status] = line?.trim().split(/\s+/) ?? [];
  if (status !== 'RUNNING') throw new Error(`task ${id} is not running (${line ?? 'no task'})`);
  return Number(pid);
}

/** Wait until FILE inside the task's root (seen through /proc/PID/root) contains `text`. */
export async function waitInRoot(pid: number, file: string, text: string, timeoutMs = 30_000): Promise<string> {
  const path = `/proc/${pid}/root${file}`;
  const deadline = Date.now() + timeoutMs;
  let got = '';
  while (Date.now() < deadline) {
    got = existsSync(path) ? readFileSync(path, 'utf8') : '';
    if (got.includes(text)) return got;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${file} in pid ${pid}'s root has no "${text}" after ${timeoutMs} ms: ${JSON.stringify(got)}`);
}

/** containerd's copy of a CRIU log (work dir of the task), '' if none. */
function criuLog(id: string, which: 'dump' | 'restore'): string {
  const dir = `/run/containerd/io.containerd.runtime.v2.task/${NS}/${id}`;
  for (const f of [`${dir}/criu-${which}.log`, `${dir}/work/${which}.log`, `${dir}/work/criu-work/${which}.log`]) {
    if (existsSync(f)) return readFileSync(f, 'utf8');
  }
  return '';
}

/** The error lines (and bpfcr's) of a CRIU log, for a failure message. */
function criuErrors(log: string): string {
  return log.split('\n').filter((l) => /Error|bpfcr|action|fail/i.test(l)).slice(-15).join('\n');
}

/** `ctr containers checkpoint --task --rw ID REF` (the task keeps running); on failure stderr ends with CRIU's errors. */
export async function checkpoint(id: string, ref: string): Promise<CtrResult> {
  const r = await ctr(['containers', 'checkpoint', '--task', '--rw', id, ref], { reject: false });
  if (r.exitCode !== 0) r.stderr += `\nCRIU dump log:\n${criuErrors(criuLog(id, 'dump'))}`;
  return r;
}

/** `ctr containers restore --live --rw ID REF` (the container must not exist). */
export async function restore(id: string, ref: string): Promise<CtrResult> {
  const r = await ctr(['containers', 'restore', '--live', '--rw', id, ref], { reject: false });
  if (r.exitCode !== 0) r.stderr += `\nCRIU restore log:\n${criuErrors(criuLog(id, 'restore'))}`;
  return r;
}

/** Kill the task (SIGKILL), wait for it, delete task and container. Missing ones are fine. */
export async function removeContainer(id: string): Promise<void> {
  const pid = await taskPid(id).catch(() => undefined);
  await ctr(['tasks', 'kill', '-s', 'SIGKILL', id], { reject: false });
  if (pid) {
    const end = Date.now() + 10_000;
    while (existsSync(`/proc/${pid}`) && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
  }
  for (let i = 0; i < 50; i++) {
    const r = await ctr(['tasks', 'delete', id], { reject: false });
    if (r.exitCode === 0 || /not found/.test(r.stderr)) break;
    await new Promise((r) => setTimeout(r, 100)); // still stopping
  }
  await ctr(['containers', 'delete', id], { reject: false });
}

/**
 * The CRIU image dir a checkpoint image carries (its application/vnd.containerd.container.criu
 * .checkpoint.criu.tar layer), unpacked into a temp dir the caller removes.
 */
export async function checkpointImageDir(ref: string): Promise<string> {
  const line = (await ctr(['images', 'ls'])).stdout.split('\n').find((l) => l.split(/\s+/)[0] === ref);
  const digest = line?.split(/\s+/)[2];
  if (!digest) throw new Error(`no checkpoint image ${ref} in containerd namespace ${NS}`);
  const index = JSON.parse((await ctr(['content', 'get', digest])).stdout) as { manifests: { mediaType: string; digest: string }[] };
  const criu = index.manifests.find((m) => m.mediaType === 'application/vnd.containerd.container.criu.checkpoint.criu.tar');
  if (!criu) throw new Error(`checkpoint image ${ref} has no CRIU layer: ${index.manifests.map((m) => m.mediaType).join(', ')}`);
  const dir = tempDir('bpfcr-ctr-criu-');
  const blob = join(dir, '.layer.tar');
  await execa('sh', ['-c', 'ctr -n "$0" content get "$1" > "$2"', NS, criu.digest, blob]);
  await execa('tar', ['-xf', blob, '-C', dir]);
  rmSync(blob);
  return dir;
}

/** Remove every container, task and image this test process created, then the namespace if empty. */
export async function cleanupContainerd(): Promise<void> {
  const mine = (s: string): boolean => s.includes(`-${process.pid}-`) || s.includes(`-${process.pid}:`);
  for (const id of (await ctr(['containers', 'ls', '-q'], { reject: false })).stdout.split('\n').filter((s) => s && mine(s))) await removeContainer(id);
  const imgs = (await ctr(['images', 'ls', '-q'], { reject: false })).stdout.split('\n').filter(Boolean);
  const drop = imgs.filter(mine);
  // the imported test image too, once no other container of ours uses it
  if ((await ctr(['containers', 'ls', '-q'], { reject: false })).stdout.trim() === '') drop.push(...imgs.filter((i) => i.startsWith('localhost/bpfcr-test:')));
  if (drop.length) await ctr(['images', 'rm', ...drop], { reject: false });
  containerdTestImage.reset();
  await ctr(['namespaces', 'rm', NS], { reject: false }); // fails (harmlessly) while content GC is pending
}
