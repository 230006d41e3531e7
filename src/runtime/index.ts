/**
 * What bpfcr needs to know about the container runtime around a CRIU run or an OCI hook, behind
 * one small adapter per runtime (types.ts: the Runtime interface). Both runtimes supported today
 * drive runc, so the container's state is runc's <root>/<id>/state.json in either case; they
 * differ in where runc's root is and in which processes sit above runc:
 *   - runc (runc by hand, and podman, which runs runc): root /run/runc (+ $BPFCR_RUNC_ROOT);
 *     runc's parent is podman, conmon or a shell.
 *   - containerd (1.6, `ctr`, and anything else on its API): runc runs under containerd-shim-runc-v2
 *     with one root per containerd namespace, /run/containerd/runc/<namespace>.
 * Plain fs calls only: cheap to import from hooks.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { containerd } from './containerd.js';
import { argv, parentPid } from './process.js';
import { runc } from './runc.js';
import type { Runtime, RuntimeName } from './types.js';

export interface RuntimeContainer {
  /** the adapter that found it */
  runtime: RuntimeName;
  id: string;
  /** OCI bundle (config.json: annotations, mounts) */
  bundle: string;
  initPid: number;
}

/** Most specific first: a runc invocation under containerd's shim is containerd's. */
export const RUNTIMES: readonly Runtime[] = [containerd, runc];

/** The container whose init process is `initPid`, in any runtime's runc state (undefined: none). */
export function findContainer(initPid: number, runtimes: readonly Runtime[] = RUNTIMES): RuntimeContainer | undefined {
  for (const rt of runtimes) {
    for (const root of rt.stateRoots()) {
      let ids: string[];
      try { ids = readdirSync(root); } catch { continue; }
      for (const id of ids) {
        let st: { init_process_pid?: number; config?: { labels?: string[] } };
        try {
          st = JSON.parse(readFileSync(join(root, id, 'state.json'), 'utf8')) as typeof st;
        } catch {
          continue;
        }
        if (st.init_process_pid !== initPid) continue;
        // runc records the bundle it was started from as the label bundle=<dir>
        const bundle = (st.config?.labels ?? []).find((l) => l.startsWith('bundle='))?.slice('bundle='.length);
        if (bundle && bundle.startsWith('/')) return { runtime: rt.name, id, bundle, initPid };
      }
    }
  }
  return undefined;
}

/** Annotations of BUNDLE/config.json (string values only). */
export function bundleAnnotations(bundle: string): Record<string, string> {
  const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as { annotations?: Record<string, unknown> };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(cfg.annotations ?? {})) if (typeof v === 'string') out[k] = v;
  return out;
}

/** A runtime command line, parsed: `runc [global flags] COMMAND [flags] ID` (or any runtime with runc's CLI). */
export interface RuncCall {
  /** which adapter's runc this is (by the process above it) */
  runtime: RuntimeName;
  /** basename of argv[0] ("runc", or whatever stands in for it) */
  binary: string;
  command: string;
  /** --image-path of checkpoint/restore */
  imageDir?: string;
  /** --bundle of restore/create/run */
  bundle?: string;
  /** the container id (runc's last argument) */
  id?: string;
  leaveRunning: boolean;
}

const RUNC_COMMANDS = new Set(['checkpoint', 'restore', 'create', 'run']);

function flag(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === `--${name}` && args[i + 1] !== undefined) return args[i + 1];
    if (a.startsWith(`--${name}=`)) return a.slice(name.length + 3);
  }
  return undefined;
}

/** Parse process `pid`'s argv as a runc-style invocation (undefined: no checkpoint/restore/create/run in it). */
export function runcCall(pid: number): RuncCall | undefined {
  const args0 = argv(pid);
  const at = args0.findIndex((a, i) => i > 0 && RUNC_COMMANDS.has(a));
  if (at < 0) return undefined;
  const args = args0.slice(at + 1);
  const parent = parentPid(pid);
  const up = parent ? argv(parent) : [];
  const call: RuncCall = {
    runtime: RUNTIMES.find((rt) => rt.isRuncParent(up))?.name ?? 'runc',
    binary: args0[0]!.split('/').pop()!,
    command: args0[at]!,
    leaveRunning: args.some((a) => a === '--leave-running' || a === '--leave-running=true'),
  };
  const imageDir = flag(args, 'image-path');
  if (imageDir) call.imageDir = imageDir;
  const bundle = flag(args, 'bundle');
  if (bundle) call.bundle = bundle;
  const id = args.at(-1);
  if (id && !id.startsWith('-') && args.at(-2) !== '--bundle' && args.at(-2) !== '--image-path') call.id = id;
  return call;
}

/**
 * The `runc restore … --image-path DIR` that runs this OCI hook, if any (runc runs prestart hooks
 * during a restore too; the hook process is runc's child, or the shim's that execs node). The same
 * for runc, podman and containerd: their runc's argv carries the image dir (containerd's is a
 * temporary /tmp/ctrd-checkpoint* unpacked from the checkpoint image).
 */
export function restoreRunningHook(ppid = process.ppid): (RuncCall & { imageDir: string }) | undefined {
  const call = runcCall(ppid);
  return call && call.command === 'restore' && call.imageDir ? { ...call, imageDir: call.imageDir } : undefined;
}

/**
 * Was this dump asked to leave the tasks running? CRIU does not tell action scripts, so look at
 * the command lines of criu and the processes above it. Every runtime here hands the request to
 * runc as `runc checkpoint --leave-running`: `runc checkpoint --leave-running` by hand,
 * `podman container checkpoint -R/--leave-running`, and containerd's shim for
 * `ctr containers checkpoint --task` and `ctr tasks checkpoint` without --exit (seen here with
 * containerd 1.6.20: `runc --root /run/containerd/runc/NS … checkpoint --image-path
 * /tmp/ctd-checkpoint… --work-path … --leave-running ID`). criu by hand: `criu dump -R`.
 * (Over RPC criu's argv is "swrk N"; the runc above it still carries the flag.)
 */
export function dumpLeavesRunning(criu: number): boolean {
  let pid: number | undefined = criu;
  for (let depth = 0; pid && pid > 1 && depth < 5; depth++, pid = parentPid(pid)) {
    const args = argv(pid);
    if (args.some((a) => a === '--leave-running' || a === '--leave-running=true')) return true;
    if (args.includes('-R') && (args.includes('dump') || args.includes('checkpoint'))) return true;
  }
  return false;
}
