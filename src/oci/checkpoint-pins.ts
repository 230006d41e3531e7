/**
 * Annotated pins (io.bpfcr.pins) through a CRIU checkpoint/restore of a container
 * (`podman container checkpoint` / `restore`, `runc checkpoint` / `restore`).
 *
 * CRIU carries the maps the container's processes hold as fds (the plugin + src/criu), but a map
 * that is only pinned in a bind-mounted host bpffs directory is no file of any task: without this
 * module it would be lost with the host's pins (another host, a reboot, a wiped directory).
 *
 *   post-dump (tasks frozen, still alive): find the container whose init is CRTOOLS_INIT_PID
 *     (src/runtime: runc's state.json under runc's, podman's or containerd's root), read the bundle's
 *     config.json (annotations, mounts), collect the maps pinned under io.bpfcr.pins through the
 *     bind mounts' host sources (the same strict openat2 walk as poststop, never following a
 *     symlink) and write them, in the save-on-stop state format with their container paths, to
 *     <image dir>/bpfcr-pins.tar (a plain bpfcr archive with oci/pins.json, statefile.ts).
 *     `podman checkpoint --export` carries it under checkpoint/.
 *   restore, the prestart hook's work for a `runc restore` — done by pre-restore (src/criu/actions.ts,
 *     oci/hooks.ts prestartOfRestore), which runs beside CRIU, or by the prestart hook itself (runc runs
 *     it at CRIU's setup-namespaces; the image dir comes from runc's command line): re-create the missing
 *     pins on the host side of the restoring container's bind mounts (its bundle, so another host works
 *     too); existing pins are kept (same host: zero copy). A pinned map the tasks also hold as an fd is
 *     pinned as the very map the restored task gets (bpfcr-restore.txt, written by pre-restore), so fd
 *     and pin stay one map; the others come from bpfcr-pins.tar.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundleAnnotations, findContainer } from '../runtime/index.js';
import { parentPid, tokenAlive } from '../runtime/process.js';
import { readBundleMounts } from './mounts.js';
import { closeCollected, collectPins, leaveReadOnly, pinAll, planPins, type PinResult } from './pins.js';
import { A_PINS, parseAnnotations, type BpfcrAnnotations } from './state.js';
import { openDirLoc, openStateFileAt, pinsRecord, saveState } from './statefile.js';

/** The pins' state file in a CRIU image dir. */
export const PINS_FILE = 'bpfcr-pins.tar';
/**
 * post-dump: save the container's annotated pins into <imageDir>/bpfcr-pins.tar. Returns a
 * one-line summary, or undefined when the container declares no pins (nothing written).
 * Idempotent: CRIU runs post-dump several times; an existing file is from this dump (pre-dump
 * removes stale ones), so it is left alone.
 */
export async function savePinsAtDump(imageDir: string, initPid: number): Promise<string | undefined> {
  if (!Number.isInteger(initPid) || initPid <= 0) return undefined;
  if (existsSync(join(imageDir, PINS_FILE))) return undefined;
  const c = findContainer(initPid);
  if (!c) return undefined;
  const annotations = bundleAnnotations(c.bundle);
  if (!annotations[A_PINS]) return undefined;
  const ann = parseAnnotations(annotations);
  const start = process.hrtime.bigint();
  const mounts = readBundleMounts(c.bundle);
  const got = collectPins(ann.pins, mounts);
  try {
    const { pinned, entries } = await saveState(join(imageDir, PINS_FILE), pinsRecord(c.id, ann.pins, got), openDirLoc(imageDir, PINS_FILE));
    const warn = [...got.missing.map((m) => `; ${m} does not exist`), ...got.skipped.map((s) => `; skipped ${s.path}: ${s.why}`)].join('');
    return `container ${c.id.slice(0, 12)}: saved ${got.pins.length} pin(s) of ${pinned} map(s), ${entries} entries, from ${ann.pins.join(', ')} into ${PINS_FILE} (${(Number(process.hrtime.bigint() - start) / 1e6).toFixed(0)} ms)${warn}`;
  } finally {
    closeCollected(got);
  }
}

/**
 * Old map id → the map id the restored tasks get: pre-restore's bpfcr-restore.txt (criu id → new id)
 * through the record (criu id → old id). "vma <old> <new>" lines: maps the tasks mmap (maybe with no fd).
 */
export function restoredMapIds(imageDir: string): Map<number, number> {
  const out = new Map<number, number>();
  let rec: { objects?: { criuId?: number; kind?: string; id?: number }[] };
  let restoreTxt: string;
  try {
    rec = JSON.parse(readFileSync(join(imageDir, 'bpfcr-checkpoint.json'), 'utf8')) as typeof rec;
    restoreTxt = readFileSync(join(imageDir, 'bpfcr-restore.txt'), 'utf8');
  } catch {
    return out;
  }
  const newByCriu = new Map<number, number>();
  for (const line of restoreTxt.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length === 3 && f[1] === 'map' && /^\d+$/.test(f[0]!) && /^\d+$/.test(f[2]!)) newByCriu.set(Number(f[0]), Number(f[2]));
    else if (f.length === 3 && f[0] === 'vma' && /^\d+$/.test(f[1]!) && /^\d+$/.test(f[2]!)) out.set(Number(f[1]), Number(f[2]));
  }
  for (const o of rec.objects ?? []) {
    if (o.kind !== 'map' || typeof o.criuId !== 'number' || typeof o.id !== 'number') continue;
    const n = newByCriu.get(o.criuId);
    if (n !== undefined) out.set(o.id, n);
  }
  return out;
}

/**
 * restoredMapIds for a prestart hook. The image dir may come from an imported checkpoint:
 * bpfcr-restore.txt is only believed when bpfcr-restore.owner names a live criu process that the
 * runtime running this hook started (so pre-restore of THIS restore wrote it); otherwise an imported
 * file could make the hook pin any map of the host (by id) into the container's directory.
 */
async function restoredMapIdsForHook(imageDir: string, runtimePid: number): Promise<Map<number, number>> {
  try {
    const owner = readFileSync(join(imageDir, 'bpfcr-restore.owner'), 'utf8').trim();
    const pid = Number(owner.split(/\s+/)[0]);
    if (!tokenAlive(owner) || parentPid(pid) !== runtimePid) return new Map();
  } catch {
    return new Map();
  }
  return restoredMapIds(imageDir);
}

export interface Reporter { info(msg: string): void; warn(msg: string): void }

/**
 * During `runc restore --image-path DIR` (pre-restore, or the prestart hook): re-create the pins saved
 * at post-dump that are missing on the host side of BUNDLE's bind mounts. `held`: old map id → the map
 * the restored tasks get (default: pre-restore's, when the runtime running this hook started it).
 * Returns undefined when the image dir holds no pins file.
 */
export async function restorePinsAtRestore(bundle: string, ann: BpfcrAnnotations, imageDir: string, r: Reporter, held?: Map<number, number>): Promise<{ summary: string; pins: PinResult[] } | undefined> {
  if (!existsSync(join(imageDir, PINS_FILE))) return undefined;
  const start = process.hrtime.bigint();
  const label = join(imageDir, PINS_FILE);
  const opened = await openStateFileAt(openDirLoc(imageDir, PINS_FILE), label);
  if (!opened) return undefined;
  const bpf = await import('../syscall/bpf.js');
  const fds = new Map<number, number>();
  const toClose: number[] = [];
  try {
    const sc = opened.record;
    const mounts = readBundleMounts(bundle);
    const { writable: plan, left, message } = leaveReadOnly(planPins(sc.pins, ann.pins, mounts, `the checkpoint's ${PINS_FILE}`));
    if (message) r.warn(message);
    const kept = plan.filter((p) => p.exists);
    const todo = plan.filter((p) => !p.exists);
    let results: PinResult[] = [...left, ...kept.map((k): PinResult => ({ path: k.pin.path, host: k.where.host, outcome: 'kept' }))];
    let fromTasks = 0;
    let copied = 0;
    let verified = false; // restore() verifies the whole archive, oci/pins.json included
    if (todo.length > 0) {
      // maps the restored tasks hold: pin those very maps
      const heldIds = held ?? await restoredMapIdsForHook(imageDir, process.ppid);
      for (const p of todo) {
        const id = heldIds.get(p.pin.mapId);
        if (id === undefined || fds.has(p.pin.mapId)) continue;
        try {
          const fd = bpf.mapGetFdById(id);
          fds.set(p.pin.mapId, fd);
          toClose.push(fd);
          fromTasks++;
        } catch (e) {
          r.warn(`map id ${id} (restored for the tasks) cannot be opened: ${(e as Error).message}; pinning a copy from ${PINS_FILE}`);
        }
      }
      if (todo.some((p) => !fds.has(p.pin.mapId))) {
        const [{ restore }, { loadConfig }] = await Promise.all([import('../engine/restore.js'), import('../config/config.js')]);
        const restored = await restore({ input: opened.archivePath, config: await loadConfig() }).catch((e: Error) => {
          const msg = e.message.split(opened.archivePath).join(label);
          throw new Error(msg.includes(label) ? msg : `${label}: ${msg}`, { cause: e });
        });
        for (const m of restored) {
          if (m.fd === undefined) continue;
          toClose.push(m.fd);
          if (!fds.has(m.oldId) && todo.some((p) => p.pin.mapId === m.oldId)) { fds.set(m.oldId, m.fd); copied++; }
        }
        verified = true;
      }
    }
    if (!verified) await opened.verify();
    if (todo.length > 0) results = [...results, ...pinAll(todo, fds, sc.dirs, mounts)];
    const created = results.filter((p) => p.outcome === 'created').length;
    const summary = `restoring a checkpoint: ${sc.pins.length} pin(s) in ${PINS_FILE}: ${created} created (${fromTasks} map(s) shared with the restored tasks, ${copied} from the checkpoint's data), ${kept.length} kept (still on the host)${left.length ? `, ${left.length} left as they are (read-only bind)` : ''} in ${(Number(process.hrtime.bigint() - start) / 1e9).toFixed(2)}s`;
    r.info(summary);
    return { summary, pins: results };
  } finally {
    for (const fd of toClose) bpf.closeFd(fd);
    opened.close();
  }
}
