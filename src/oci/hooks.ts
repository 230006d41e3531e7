/**
 * What the OCI hooks do once a container carries io.bpfcr.* annotations:
 *   poststop + io.bpfcr.save-on-stop: dump the maps pinned under io.bpfcr.pins into the state file
 *   prestart + io.bpfcr.restore-from: re-create them at their original pin paths before the
 *     container's process starts.
 * Loaded lazily by hook-main.ts (and `bpfcr hook`), never for a container without annotations.
 */
import { loadConfig } from '../config/config.js';
import { restore, type RestoredMap } from '../engine/restore.js';
import { readlinkSync, realpathSync } from 'node:fs';
import { bundleAnnotations, restoreRunningHook, runcCall } from '../runtime/index.js';
import { parentPid } from '../runtime/process.js';
import { closeFd } from '../syscall/bpf.js';
import { readBundleMounts } from './mounts.js';
import { closeCollected, collectPins, leaveReadOnly, pinAll, planPins, type PinResult } from './pins.js';
import {
  A_ON_EXISTING, A_PINS, A_RESTORE, A_SAVE, hasBpfcrAnnotation, parseAnnotations, type BpfcrAnnotations, type OciState,
} from './state.js';
import { beginSave, checkSaveMarker, endSave, failSave, openStateFile, pinsRecord, SAVING_SUFFIX, saveState } from './statefile.js';

export type Stage = 'prestart' | 'poststop';
export const STAGES: readonly Stage[] = ['prestart', 'poststop'];

export interface Reporter {
  info(msg: string): void;
  warn(msg: string): void;
}

export interface HookOutcome {
  /** what happened, one line (also reported through info) */
  summary: string;
  pins?: PinResult[];
}

function seconds(start: bigint): string {
  return `${(Number(process.hrtime.bigint() - start) / 1e9).toFixed(2)}s`;
}

/**
 * A CRIU restore the stage runs for: the runtime's `runc restore` (`by`, for messages) and its image
 * dir; `held`: old map id → the map the restored tasks get (default: read as a hook may, see
 * checkpoint-pins.ts). Default: the `runc restore` that runs this hook, if any.
 */
export interface Restoring { imageDir: string; by: string; held?: Map<number, number> }

/** Run a stage for a parsed state. Throws (one-line message) on failure. */
export async function runHook(stage: Stage, state: OciState, r: Reporter, restoring: Restoring | undefined = criuRestoreOfHook()): Promise<HookOutcome | undefined> {
  const ann = parseAnnotations(state.annotations);
  for (const k of ann.unknown) r.warn(`ignoring unknown annotation ${k} (known: ${[A_PINS, A_SAVE, A_RESTORE, A_ON_EXISTING].join(', ')})`);
  if (stage === 'poststop') return ann.saveOnStop ? saveOnStop(state, ann, r) : undefined;
  // During a restore of a CRIU checkpoint: the annotated pins saved at post-dump come back first
  // (checkpoint-pins.ts); restore-from then only fills pins still missing.
  let fromCheckpoint: HookOutcome | undefined;
  if (restoring && ann.pins.length) {
    const { restorePinsAtRestore } = await import('./checkpoint-pins.js');
    fromCheckpoint = await restorePinsAtRestore(state.bundle, ann, restoring.imageDir, r, restoring.held);
  }
  if (ann.restoreFrom) return restoreFrom(state, ann, r, restoring);
  return fromCheckpoint;
}

/**
 * pre-restore (src/criu/actions.ts) under a runtime's `runc restore` (criu's parent): the prestart hook's
 * work for the restored container, done now. hooks/checkpoint has told that hook so (it then exits
 * without starting Node), and CRIU does not let the tasks run before pre-restore is done. Returns its
 * summary; undefined when criu was not started by a runtime's restore (no prestart hook comes) or the
 * container has nothing for prestart. Throws when the container's bundle cannot be read: nobody else
 * would do the work.
 */
export async function prestartOfRestore(imageDir: string, criuPid: number, r: Reporter): Promise<string | undefined> {
  const runtimePid = parentPid(criuPid);
  const call = runtimePid ? runcCall(runtimePid) : undefined;
  if (!runtimePid || call?.command !== 'restore') return undefined;
  let bundle: string;
  let annotations: Record<string, string>;
  try {
    bundle = call.bundle ?? readlinkSync(`/proc/${runtimePid}/cwd`); // runc's default bundle: its cwd
    annotations = bundleAnnotations(bundle);
  } catch (e) {
    throw new Error(`cannot read the restored container's config.json (${call.binary} restore, pid ${runtimePid}): ${(e as Error).message}`, { cause: e });
  }
  if (!hasBpfcrAnnotation(annotations)) return undefined;
  const state: OciState = { ociVersion: '1.0.2', id: call.id ?? '', status: 'creating', bundle, annotations };
  // messages name the image dir as the runtime was given it (criu's /proc/<pid>/fd/<n> is gone by the time
  // anyone reads them), when it is the same directory
  let dir = imageDir;
  try { if (call.imageDir && realpathSync(call.imageDir) === realpathSync(imageDir)) dir = call.imageDir; } catch { /* keep criu's */ }
  const { restoredMapIds } = await import('./checkpoint-pins.js');
  const done = await runHook('prestart', state, r, { imageDir: dir, by: `${call.binary} restore`, held: restoredMapIds(imageDir) });
  return done?.summary;
}

/** The `runc restore … --image-path DIR` that runs this hook (its parent), if any. */
function criuRestoreOfHook(ppid = process.ppid): Restoring | undefined {
  const call = restoreRunningHook(ppid);
  return call ? { imageDir: call.imageDir, by: `${call.binary} restore` } : undefined;
}

/**
 * poststop: save the pins into the state file. FILE.saving (statefile.ts) announces the save first
 * and stays, saying why, if it fails or the hook is killed: the next prestart then refuses FILE,
 * which holds an older state than the container stopped with, instead of rolling it back silently.
 */
async function saveOnStop(state: OciState, ann: BpfcrAnnotations, r: Reporter): Promise<HookOutcome> {
  const start = process.hrtime.bigint();
  const path = ann.saveOnStop!;
  const token = beginSave(path, state.id);
  try {
    const mounts = readBundleMounts(state.bundle);
    const got = collectPins(ann.pins, mounts);
    try {
      for (const m of got.missing) r.warn(`pin path ${m} does not exist: nothing saved for it`);
      for (const s of got.skipped) r.warn(`skipping ${s.path}: ${s.why}`);
      const { pinned, maps, entries } = await saveState(path, { ...pinsRecord(state.id, ann.pins, got), saveToken: token });
      endSave(path, token);
      const inner = maps > pinned ? ` + ${maps - pinned} inner` : '';
      const summary = got.pins.length === 0
        ? `no pinned maps under ${ann.pins.join(', ')}: wrote an empty state to ${path} in ${seconds(start)}`
        : `saved ${got.pins.length} pin(s) of ${pinned} map(s)${inner}, ${entries} entries, from ${ann.pins.join(', ')} to ${path} in ${seconds(start)}`;
      r.info(summary);
      return { summary };
    } finally {
      closeCollected(got);
    }
  } catch (e) {
    try {
      failSave(path, token, (e as Error).message);
      r.warn(`${path} is not up to date: the next start refuses it until ${path}${SAVING_SUFFIX} is dealt with (see docs/oci-hooks.md)`);
    } catch { /* the marker still says "saving": prestart refuses all the same */ }
    throw e;
  }
}

async function restoreFrom(state: OciState, ann: BpfcrAnnotations, r: Reporter, restoring: Restoring | undefined): Promise<HookOutcome> {
  const start = process.hrtime.bigint();
  const path = ann.restoreFrom!;
  // runc runs prestart hooks during a restore too (`runc restore`, also podman's `container restore`
  // and containerd's shim)
  const criu = restoring?.by;
  if (criu && ann.onExisting !== 'keep') {
    // The checkpoint carries the maps the restored processes hold, and the CRIU glue re-creates
    // their pins (pre-restore runs before this hook): replacing a pin now would split a process's
    // fd from the pin it expects to share. Only missing pins are created.
    r.info(`restoring a checkpoint (${criu}): existing pins are kept, only missing ones come from ${path}`);
    ann = { ...ann, onExisting: 'keep' };
  }
  const opened = await openStateFile(path);
  try {
    checkSaveMarker(path, opened?.record);
  } catch (e) {
    opened?.close();
    throw e;
  }
  if (!opened) {
    const summary = `no saved state at ${path} (first start?): nothing restored`;
    r.info(summary);
    return { summary };
  }
  let restored: RestoredMap[] = [];
  try {
    const sc = opened.record;
    const mounts = readBundleMounts(state.bundle);
    const { writable: plan, left, message } = leaveReadOnly(planPins(sc.pins, ann.pins, mounts, path));
    if (message) r.warn(message);
    const kept = ann.onExisting === 'keep' ? plan.filter((p) => p.exists) : [];
    const todo = ann.onExisting === 'keep' ? plan.filter((p) => !p.exists) : plan;
    if (kept.length) r.info(`left ${kept.length} existing pin(s) alone (${A_ON_EXISTING}=keep): ${kept.map((k) => k.pin.path).join(', ')}`);
    let results: PinResult[] = [...left, ...kept.map((k): PinResult => ({ path: k.pin.path, host: k.where.host, outcome: 'kept' }))];
    if (todo.length > 0) {
      const config = await loadConfig();
      try {
        restored = await restore({ input: opened.archivePath, config });
      } catch (e) {
        const msg = (e as Error).message.split(opened.archivePath).join(path);
        throw new Error(msg.includes(path) ? msg : `${path}: ${msg}`, { cause: e });
      }
      const byOld = new Map<number, number>();
      for (const m of restored) if (m.fd !== undefined) byOld.set(m.oldId, m.fd);
      results = [...results, ...pinAll(todo, byOld, sc.dirs, mounts)];
      const replaced = results.filter((p) => p.outcome === 'replaced').map((p) => p.path);
      if (replaced.length) r.info(`replaced ${replaced.length} existing pin(s) with the saved maps (${A_ON_EXISTING}=replace): ${replaced.join(', ')}`);
    } else {
      await opened.verify(); // restore() verifies the archive (oci/pins.json included) when it runs
    }
    const count = (o: string): number => results.filter((p) => p.outcome === o).length;
    const entries = restored.filter((m) => m.top).reduce((a, m) => a + m.entries, 0);
    const summary = sc.pins.length === 0
      ? `${path} holds no pins (saved from an empty pin directory): nothing restored`
      : `restored ${sc.pins.length} pin(s) from ${path} (saved ${sc.created}): ${count('created')} created, ${count('replaced')} replaced, ${count('kept')} kept${left.length ? `, ${left.length} left as they are (read-only bind)` : ''}; ${entries} entries in ${seconds(start)}`;
    r.info(summary);
    return { summary, pins: results };
  } finally {
    for (const m of restored) if (m.fd !== undefined) closeFd(m.fd);
    opened.close();
  }
}
