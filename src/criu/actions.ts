/**
 * The CRIU action script's work (`bpfcr criu-action`, run by hooks/checkpoint).
 *
 * dump:    pre-dump    refuse mapped maps when this CRIU lacks the plugin VMA hook; clear bpfcr state
 *                      left in a reused image dir; make sure the plugin's staging root exists on a
 *                      bpffs (mounting one if needed); start the post-dump worker (warm()), so that
 *                      Node's start overlaps CRIU's own dump work
 *          [plugin]    pins every BPF object the tasks hold, lists them in bpfcr-taken.txt
 *          post-dump   tasks frozen: save every taken map into <image dir>/bpfcr.tar (bpfcr archive) and
 *                      describe programs/links + host identity in bpfcr-checkpoint.json. Any failure
 *                      fails the dump (CRIU resumes the tasks) and drops the pins. Done by the worker
 *                      when there is one, by post-dump itself otherwise.
 * restore: pre-restore decide per checkpoint: reuse the staged maps (same boot, pins alive, nobody
 *                      else holds them, dump did not leave the tasks running) or recreate all of them
 *                      from bpfcr.tar and pin the copies; programs/links come back from live pins on
 *                      the same boot, else are reloaded from the app's BPF object (src/programs/reload.ts). Writes bpfcr-restore.txt (read by the plugin), the cleanup list,
 *                      both signed with this criu's identity, and an in-flight marker under /run/bpfcr.
 *          [plugin]    hands the chosen ids back to the restored tasks, and at its end (fini) runs
 *                      the cleanup list: drops the pins and the marker (after a failed restore:
 *                      only the copies this restore made).
 *
 * hooks/checkpoint only dispatches: it starts Node for these actions when the tree touches BPF or the
 * image dir holds bpfcr files. CRIU may run an action more than once (a config file passed over RPC,
 * such as runc's org.criu.config, is parsed twice): every step is idempotent, under a per-checkpoint
 * flock.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, unlinkSync, writeFileSync } from 'node:fs';
import { runDir } from '../paths.js';
import { dirname, join } from 'node:path';
import { isOnBpffs } from '../engine/bpffs.js';
import { mapTypeById, mapTypeByName } from '../maps/types.js';
import { closeFd, progGetFdById, progMapIds as progMapIdsOfFd } from '../syscall/bpf.js';
import {
  ARCHIVE, CLEANUP_FILE, INFO_FILE, NO_PIN, OWNER_FILE, RESTORE_ERROR_FILE, RESTORE_FILE, STAGING_FILE, STORAGE_FILE, btfHandoff, type CleanupStep,
  type RestoreLine, type Taken, type TakenKind, formatCleanup, formatRestore, has, readKey, readTaken, readText, remove, writeAtomic,
  warmDir,
} from './files.js';
import { readArchiveMembers } from './members.js';
import { lockKey, markerPath, restoreMarkers, unlinkQuiet, withKeyLock } from './lock.js';
import { criuPid, dumpLeavesRunning, liveHolders, processToken, processTree, tokenAlive } from './proc.js';
import { decideRestore, RestoreRefused, type Decision, type Mode } from './decide.js';
import { findTracepoints } from '../programs/tracefs.js';
import { hostId, objectLabel, readRecord, RECORD_FORMAT, RECORD_VERSION, type CheckpointRecord, type TakenObject } from './record.js';
import { ensureStagingRoot, makeStagingDir, pluginStagingRoot, removeStagingTree, rmdirIfEmpty, stagingRoot, unpin } from './staging.js';

/** node:child_process, loaded only when needed (start-up time matters in CRIU actions). */

export const ACTIONS = ['pre-dump', 'post-dump', 'pre-restore', 'post-restore', 'warm'] as const;
export type Action = (typeof ACTIONS)[number];


/** BPFCR_DEBUG_TIMING=1: phase marks (ms since Node started) on stderr, i.e. in CRIU's log. */
const debugTiming = !!process.env['BPFCR_DEBUG_TIMING'];
function mark(what: string): void {
  if (debugTiming) process.stderr.write(`bpfcr: timing: ${performance.now().toFixed(1)} ms ${what}\n`);
}

function note(msg: string): void {
  // stderr of an action script ends up in CRIU's log (dump.log / restore.log)
  process.stderr.write(`bpfcr: ${msg}\n`);
}

export async function runAction(action: Action, imageDir: string): Promise<Carried | void> {
  mark(`${action}: start`);
  switch (action) {
    case 'pre-dump': return (await import('./pre-dump.js')).preDump(imageDir, note); // (the CLI imports pre-dump.js directly)
    case 'post-dump': return postDump(imageDir);
    case 'pre-restore': return preRestore(imageDir);
    case 'post-restore': return (await import('./storage.js')).writeStorageValues(imageDir, note);
    case 'warm': return warm(imageDir);
  }
}

// ---------------------------------------------------------------------------------------------
// dump

/** What an action did, for the run log: maps and entries a post-dump carried, a line on what else it did. */
export interface Carried { maps?: number; entries?: number; detail?: string }

export async function postDump(dir: string): Promise<Carried | undefined> {
  await saveAnnotatedPins(dir);
  const taken = readTaken(dir);
  if (!taken || taken.length === 0 || has(dir, INFO_FILE)) return undefined;
  const key = readKey(dir);
  return withKeyLock(key, async () => {
    if (has(dir, INFO_FILE)) return undefined; // another run finished meanwhile
    try {
      return await saveCheckpoint(dir, key, taken);
    } catch (e) {
      // The dump fails and CRIU resumes the tasks, which still hold their objects: drop our pins.
      remove(dir, INFO_FILE);
      const pins = taken.filter((t) => t.pin !== NO_PIN).map((t) => t.pin);
      for (const p of pins) { try { unpin(p); } catch { /* best effort */ } }
      for (const d of new Set(pins.map((p) => dirname(p)))) rmdirIfEmpty(d);
      throw e;
    }
  }, true);
}

/** The container's io.bpfcr.pins maps (pinned only, no task fd) → bpfcr-pins.tar (src/oci/checkpoint-pins.ts). */
async function saveAnnotatedPins(dir: string): Promise<void> {
  const { savePinsAtDump } = await import('../oci/checkpoint-pins.js');
  const said = await savePinsAtDump(dir, Number(process.env['CRTOOLS_INIT_PID']));
  if (said) note(`post-dump: ${said}`);
}

function uniqueIds(taken: Taken[], kind: TakenKind): number[] {
  return [...new Set(taken.filter((t) => t.kind === kind).map((t) => t.id))];
}

const BPF_MAP_TYPE_PROG_ARRAY = 3;
/** A TASK/SK/INODE/CGRP_STORAGE map of the archive (type by name as the archive records it, or number as fdinfo gives it). */
const isLocalStorage = (o: TakenObject): boolean =>
  o.archiveIndex !== undefined && (/^\d+$/.test(o.type) ? mapTypeById(Number(o.type)) : mapTypeByName(o.type))?.family === 'local-storage';

/** The archive member holding a program's BPF ELF object. */
export function objectMember(sha256: string): string {
  return `objects/${sha256}.bpf.o`;
}

/** [slot, program id] of every filled slot of a tail-call map (user space reads program ids). */
function progArraySlots(bpf: typeof import('../syscall/bpf.js'), mapId: number): [number, number][] {
  const fd = bpf.mapGetFdById(mapId);
  try {
    const { maxEntries } = bpf.mapInfo(fd);
    const key = Buffer.alloc(4);
    const value = Buffer.alloc(4);
    const out: [number, number][] = [];
    for (let i = 0; i < maxEntries; i++) {
      key.writeUInt32LE(i);
      if (bpf.mapLookupElem(fd, key, value)) out.push([i, value.readUInt32LE()]);
    }
    return out;
  } finally {
    bpf.closeFd(fd);
  }
}

/** Ids of the maps a program uses (undefined when the program is gone). */
function progMapIds(progId: number): number[] | undefined {
  let fd: number | undefined;
  try {
    fd = progGetFdById(progId);
    return progMapIdsOfFd(fd);
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeFd(fd);
  }
}

async function saveCheckpoint(dir: string, key: string, taken: Taken[]): Promise<Carried> {
  const started = process.hrtime.bigint();
  const cpid = criuPid(dir);
  const initPid = Number(process.env['CRTOOLS_INIT_PID']);
  const mapIds = uniqueIds(taken, 'map');
  const btfIds = uniqueIds(taken, 'btf');
  const objects: TakenObject[] = taken.map((t) => ({
    criuId: t.criuId, kind: t.kind, id: t.id, type: t.type, pin: t.pin, ...(t.vma ? { vma: true as const } : {}),
    ...(t.kind === 'perf' ? { progId: t.id, ...(t.type !== NO_PIN ? { tracepoint: t.type } : {}) } : {}),
  }));
  let archive: string | undefined;
  let entries = 0;

  // Programs and links first: their BPF ELF objects go into the map archive.
  const progIds = uniqueIds(taken, 'prog');
  const linkIds = uniqueIds(taken, 'link');
  let found = 0;
  let scanned = 0;
  /** sha256 → the BPF ELF object's bytes, stored as objects/<sha256>.bpf.o */
  const elfObjects = new Map<string, Buffer>();
  if (progIds.length || linkIds.length) {
    const [bpf, { programDetails, linkDetails, linkAttachType }, { locateTarget }] = await Promise.all([import('../syscall/bpf.js'), import('../programs/info.js'), import('../programs/targets.js')]);
    type Prog = ReturnType<typeof programDetails> & { mapIds?: number[] };
    const progs = new Map<number, Prog>();
    const prog = (id: number): Prog => {
      let p = progs.get(id);
      if (!p) {
        p = programDetails(id);
        const ids = progMapIds(id);
        if (ids) p.mapIds = ids;
        progs.set(id, p);
      }
      return p;
    };
    const describe = (o: TakenObject, p: Prog): void => {
      o.name = p.name;
      o.tag = p.tag;
      if (p.mapIds) o.mapIds = p.mapIds;
      if (p.funcs) o.funcs = p.funcs;
    };
    /** program id → attach type, from its links */
    const attachTypes = new Map<number, number>();
    for (const o of objects) {
      if (o.kind === 'prog') {
        const p = prog(o.id);
        describe(o, p);
        if (p.attachBtf) o.attachBtf = p.attachBtf;
      } else if (o.kind === 'link') {
        const fd = bpf.linkGetFdById(o.id);
        try {
          o.progId = bpf.linkInfo(fd).progId;
        } finally {
          bpf.closeFd(fd);
        }
        const p = o.progId ? prog(o.progId) : undefined;
        if (p) describe(o, p);
        try {
          o.target = linkDetails(o.id, p?.type).target;
          if (Number.isInteger(initPid) && initPid > 0) locateTarget(o.target, initPid);
          const at = linkAttachType(o.target);
          if (at !== undefined && o.progId) attachTypes.set(o.progId, at);
        } catch (e) {
          note(`post-dump: ${objectLabel(o)}: its target could not be read: ${(e as Error).message}`);
        }
      }
    }
    for (const o of objects) {
      const at = o.kind === 'prog' ? attachTypes.get(o.id) : undefined;
      if (at !== undefined) o.expectedAttachType = at;
    }
    // The BPF ELF objects the programs came from: embedded in (or mapped as) the tree's files.
    const named = objects.filter((o) => (o.kind === 'prog' || o.kind === 'link') && o.name);
    if (named.length && Number.isInteger(initPid) && initPid > 0) {
      const { scanProcessFiles, programNameMatches } = await import('../programs/objects.js');
      const files = scanProcessFiles(processTree(initPid));
      scanned = files.reduce((a, f) => a + f.objects.length, 0);
      for (const o of named) {
        for (const f of files) {
          for (const obj of f.objects) {
            // BTF func info names the function in full; the kernel's name is cut at 15 characters
            const full = o.funcs?.[0];
            const fn = obj.programs.find((p) => (full ? p.name === full : programNameMatches(o.name!, p.name)));
            if (!fn || o.object) continue;
            const member = objectMember(obj.sha256);
            o.object = { sha256: obj.sha256, size: obj.size, pid: f.pid, file: f.file, found: f.found, offset: obj.offset, function: fn.name, section: fn.section, member };
            elfObjects.set(obj.sha256, obj.data);
          }
        }
      }
      const missing = [...new Set(named.filter((o) => !o.object).map((o) => o.name!))];
      found = new Set(named.filter((o) => o.object).map((o) => o.name)).size;
      if (missing.length) note(`post-dump: no BPF ELF object in the processes' executables, mapped or open files has a function named ${missing.join(', ')}`);
    }
  }

  if (mapIds.length || btfIds.length) {
    const [{ dump }, { loadConfig }] = await Promise.all([import('../engine/dump.js'), import('../config/config.js')]);
    let config = await loadConfig();
    // Tail-call maps: their values are programs of this checkpoint, recorded by slot and re-filled
    // with the restored programs; the archive carries the map itself (policy "empty").
    const progArrays = objects.filter((o) => o.kind === 'map' && Number(o.type) === BPF_MAP_TYPE_PROG_ARRAY);
    if (progArrays.length) {
      const bpf = await import('../syscall/bpf.js');
      for (const o of new Map(progArrays.map((m) => [m.id, m])).values()) {
        const slots = progArraySlots(bpf, o.id);
        const foreign = slots.filter(([, id]) => !progIds.includes(id));
        if (foreign.length) throw new Error(`${objectLabel(o)}: slot ${foreign[0]![0]} holds program ${foreign[0]![1]}, which no checkpointed process holds: the tail-call map cannot be carried`);
        for (const m of progArrays) if (m.id === o.id) m.progArray = slots;
      }
      if (!config.typePolicy.has(BPF_MAP_TYPE_PROG_ARRAY)) {
        config = { ...config, typePolicy: new Map([...config.typePolicy, [BPF_MAP_TYPE_PROG_ARRAY, 'empty']]) };
      }
    }
    // The holders (for messages and the archive's refs): the checkpointed process tree.
    const pids = Number.isInteger(initPid) && initPid > 0 ? processTree(initPid) : [];
    // BTF fds (libbpf keeps its object's BTF open) travel in the same archive as the maps' BTF.
    const extraMembers = [...elfObjects].map(([sha, data]) => ({ name: objectMember(sha), data }));
    const res = await dump({ pids, mapIds, btfIds, output: join(dir, ARCHIVE), config, overwrite: true, extraMembers });
    const byId = new Map(res.maps.map((m) => [m.id, m]));
    for (const o of objects) {
      if (o.kind !== 'map') continue;
      const m = byId.get(o.id);
      if (!m) throw new Error(`map ${o.id} (CRIU file ${o.criuId}) is missing from the dump`);
      o.name = m.name;
      o.type = m.type;
      o.archiveIndex = m.index;
      if (m.btf) o.btfId = m.btf.id;
    }
    entries = res.maps.reduce((a, m) => a + m.entries, 0);
    archive = ARCHIVE;
  } else if (elfObjects.size) {
    throw new Error('the checkpointed programs use no map: nothing to carry their BPF objects in (unsupported)');
  }

  const leaveRunning = dumpLeavesRunning(cpid);
  const initToken = Number.isInteger(initPid) && initPid > 0 ? processToken(initPid) : '';
  const record: CheckpointRecord = {
    format: RECORD_FORMAT, version: RECORD_VERSION, key, created: new Date().toISOString(), host: hostId(),
    leaveRunning,
    ...(initToken ? { init: { pid: initPid, token: initToken } } : {}),
    ...(archive ? { archive } : {}),
    objects,
  };
  writeAtomic(dir, INFO_FILE, JSON.stringify(record, null, 1) + '\n');

  if (leaveRunning) {
    // The tasks keep running and keep changing these maps: the staged originals must never be handed
    // to a restore (it recreates them from bpfcr.tar). Unpin now; the running tasks keep them alive.
    for (const t of taken) if (t.kind === 'map') unpin(t.pin);
    // (BTF and perf events have no pins.)
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const mapped = new Set(taken.filter((t) => t.vma).map((t) => t.id)).size;
  note(`post-dump: checkpoint ${key}: saved ${mapIds.length} map(s)${mapped ? ` (${mapped} mmapped)` : ''}, ${entries} entries${btfIds.length ? `, ${btfIds.length} BTF object(s)` : ''}, into ${ARCHIVE}` +
    `${progIds.length + linkIds.length ? `; ${progIds.length} program(s), ${linkIds.length} link(s); ${found} program(s) found in ${scanned} BPF object(s), ${elfObjects.size} object(s) stored` : ''}` +
    `${leaveRunning ? '; tasks left running: maps will be restored as copies' : ''} (${ms.toFixed(0)} ms, ${performance.now().toFixed(0)} ms since node started)`);
  return { maps: mapIds.length, entries };
}

/**
 * A dump of a throwaway one-entry map into the warm dir, thrown away. The first dump in a process
 * takes ~20 ms more than the next ones (what it loads and sets up on first use: the syscall
 * declarations, the hash, the tar writer), and without this the first one is post-dump's, while CRIU
 * waits with the tasks frozen. Best effort: a failure here changes nothing for post-dump.
 */
async function rehearseDump(wdir: string): Promise<void> {
  const [bpf, { dump }, { loadConfig }] = await Promise.all([import('../syscall/bpf.js'), import('../engine/dump.js'), import('../config/config.js')]);
  let fd: number | undefined;
  const out = join(wdir, 'rehearsal.tar');
  try {
    fd = bpf.mapCreate({ type: 1 /* BPF_MAP_TYPE_HASH */, keySize: 4, valueSize: 8, maxEntries: 1, flags: 0, name: 'bpfcr_rehearse' });
    bpf.mapUpdateElem(fd, Buffer.alloc(4), Buffer.alloc(8));
    await dump({ pids: [], mapIds: [bpf.mapInfo(fd).id], output: out, config: await loadConfig(), overwrite: true });
  } catch { /* only a rehearsal */ } finally {
    if (fd !== undefined) bpf.closeFd(fd);
    remove(wdir, 'rehearsal.tar');
  }
}

/**
 * The warm post-dump worker (hooks/checkpoint starts it at pre-dump, under flock on <warm dir>/lock,
 * when the tasks hold BPF fds): load everything post-dump needs while CRIU freezes and dumps the
 * tasks, then wait for post-dump's "go" and do its work, leaving "ok" or "error <message>" in
 * <warm dir>/result. It gives up (and post-dump then works cold) when its dir goes, when criu is gone,
 * or after 30 minutes.
 */
export async function warm(dir: string): Promise<void> {
  const cpid = criuPid(dir);
  const wdir = warmDir(dir, cpid);
  const criu = processToken(cpid);
  await Promise.all([
    import('../engine/dump.js'), import('../oci/checkpoint-pins.js'), import('../config/config.js').then((m) => m.loadConfig()),
  ]);
  (await import('../syscall/bpf.js')).addr(Buffer.alloc(1)); // loads koffi
  lockKey('.warm', 0)?.releaseAndRemove(); // loads flock()
  // (not when post-dump already asks: then the rehearsal would only delay it)
  if (!existsSync(join(wdir, 'go'))) await rehearseDump(wdir);
  const ready = performance.now();
  const sleep = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + 30 * 60_000;
  for (let i = 0; ; i++) {
    if (existsSync(join(wdir, 'go'))) break;
    if (!existsSync(wdir) || Date.now() > deadline || (i % 25 === 0 && !tokenAlive(criu))) {
      remove(dir, wdir.slice(dir.length + 1));
      return;
    }
    Atomics.wait(sleep, 0, 0, 2);
  }
  const go = performance.now();
  let result = 'ok';
  try {
    // logged here, not around the whole worker: its time excludes the wait for CRIU's dump
    const { loggedRun, imageDirContainer } = await import('../log/runlog.js');
    await loggedRun('criu-action post-dump', imageDirContainer(dir), () => postDump(dir), (c) => ({ maps: c!.maps, entries: c!.entries }));
  } catch (e) {
    result = `error ${(e as Error).message.replace(/\n/g, ' ')}`;
  }
  writeFileSync(join(wdir, 'result'), `${result}\n`);
  note(`post-dump: warm worker: ready ${ready.toFixed(0)} ms after node started, told to go at ${go.toFixed(0)} ms, done ${(performance.now() - go).toFixed(0)} ms later`);
}

// ---------------------------------------------------------------------------------------------
// restore

export async function preRestore(dir: string): Promise<Carried | undefined> {
  const cpid = criuPid(dir);
  try {
    await stageTaken(dir);
    // the runtime's prestart hook's work (the container's io.bpfcr.pins, io.bpfcr.restore-from), with
    // bpfcr loaded, while CRIU restores; hooks/checkpoint told that hook so
    dropStalePrestartNotes();
    const { prestartOfRestore } = await import('../oci/hooks.js');
    const say = (m: string): void => note(`pre-restore: ${m}`);
    const done = await prestartOfRestore(dir, cpid, { info: say, warn: say });
    return done ? { detail: done } : undefined;
  } catch (e) {
    // CRIU may have gone on without us (hooks/checkpoint): the plugin and post-restore fail the restore with this
    try { writeAtomic(dir, RESTORE_ERROR_FILE, `${(e as Error).message.split('\n')[0]}\n`); } catch { /* criu is gone */ }
    throw e;
  }
}

/** hooks/checkpoint's notes to runtimes' prestart hooks (/run/bpfcr/prestart-by-pre-restore-PID) whose runtime is gone. */
function dropStalePrestartNotes(): void {
  let names: string[];
  try { names = readdirSync(runDir()); } catch { return; }
  for (const n of names) {
    if (!n.startsWith('prestart-by-pre-restore-')) continue;
    try { if (!tokenAlive(readFileSync(join(runDir(), n), 'utf8'))) unlinkSync(join(runDir(), n)); } catch { /* gone meanwhile */ }
  }
}

/** The maps, programs and links the plugin took at dump: reuse the staged ones or recreate them. */
async function stageTaken(dir: string): Promise<void> {
  const taken = readTaken(dir);
  if (!taken || taken.length === 0) {
    // Nothing of ours in this checkpoint. Files that came with the image (an imported checkpoint is
    // untrusted) must not steer the plugin or post-restore.
    for (const n of [RESTORE_FILE, CLEANUP_FILE, OWNER_FILE, STORAGE_FILE]) remove(dir, n);
    return;
  }
  const cpid = criuPid(dir);
  const token = processToken(cpid);
  // A second run for the same restore (same criu process): the first one decided everything.
  if (token && readText(dir, OWNER_FILE)?.trim() === token && has(dir, RESTORE_FILE)) return;

  const rec = readRecord(dir);
  if (!rec) {
    throw new Error(`the image dir lists BPF objects (${taken.length} in bpfcr-taken.txt) but has no ${INFO_FILE}: the checkpoint was taken without the bpfcr action script, so its map contents were not saved`);
  }
  const key = readKey(dir);
  if (key !== rec.key) throw new Error(`${INFO_FILE} is for checkpoint ${rec.key}, bpfcr-key says ${key}`);
  mark('pre-restore: record read, locking');
  await withKeyLock(key, () => { mark('pre-restore: locked'); return decideAndStage(dir, rec, taken, cpid, token); });
}

async function decideAndStage(dir: string, rec: CheckpointRecord, taken: Taken[], cpid: number, token: string): Promise<void> {
  const started = process.hrtime.bigint();
  const { loadConfig } = await import('../config/config.js');
  const config = await loadConfig();
  mark('pre-restore: config');
  const root = stagingRoot(config.staging);
  const keyDir = join(root, rec.key);
  const copiesDir = join(keyDir, `r${cpid}`);

  // Drop what dead restores of this checkpoint left (they never reached post-restore).
  let claimedBy: number | undefined;
  for (const m of restoreMarkers(rec.key)) {
    if (m.criuPid === cpid) { unlinkQuiet(m.path); continue; }
    if (m.alive) {
      if (m.mode === 'reuse') claimedBy = m.criuPid;
      continue;
    }
    const dead = join(keyDir, `r${m.criuPid}`);
    if (isOnBpffs(dead)) removeStagingTree(dead);
    unlinkQuiet(m.path);
  }

  const bpf = await import('../syscall/bpf.js');
  // Only pins where the plugin puts them count: <staging root>/<key>/<kind>-<criu id>. The record
  // comes from the image dir, which may have been imported from elsewhere.
  const roots = [...new Set([pluginStagingRoot(), root])];
  const stagedHere = (o: TakenObject): boolean =>
    roots.some((r) => o.pin === join(r, rec.key, o.vma ? `vma-${o.id}` : `${o.kind}-${o.criuId}`));
  /** does the pin still hold the object id we staged? */
  const pinHolds = (o: TakenObject): boolean => {
    if (!stagedHere(o)) return false;
    let fd: number;
    try { fd = bpf.objGet(o.pin); } catch { return false; }
    try {
      const id = o.kind === 'map' ? bpf.mapInfo(fd).id : o.kind === 'prog' ? bpf.progInfo(fd).id : o.kind === 'link' ? bpf.linkInfo(fd).id : -1;
      return id === o.id;
    } catch {
      return false;
    } finally {
      bpf.closeFd(fd);
    }
  };

  mark('pre-restore: bpf loaded, markers checked');
  const here = hostId();
  const sameHost = rec.host.bootId !== '' && rec.host.bootId === here.bootId;
  const otherHost = rec.host.hostname === here.hostname
    ? `the checkpoint was taken before the last reboot of ${here.hostname}`
    : `the checkpoint was taken on host ${rec.host.hostname}, this is ${here.hostname}`;

  // 1.+2. Decide (src/criu/decide.ts): reuse or copy the maps; can every program and link come back?
  const maps = rec.objects.filter((o) => o.kind === 'map');
  const uniqueMaps = [...new Map(maps.map((o) => [o.id, o])).values()];
  let decision: Decision;
  try {
    decision = decideRestore({
      objects: rec.objects, sameHost, otherHost, leaveRunning: rec.leaveRunning, ...(claimedBy ? { claimedBy } : {}), pinHolds,
      heldBy: (ms) => {
        const first = [...liveHolders(ms.map((o) => ({ kind: 'map' as const, id: o.id })))][0];
        return first ? { id: Number(first[0].slice(4)), pid: first[1][0]!.pid } : undefined;
      },
    });
  } catch (e) {
    if (!(e instanceof RestoreRefused)) throw e;
    // CRTOOLS_IMAGE_DIR is /proc/<criu pid>/fd/<n>, gone with criu: name the directory itself
    let real = dir;
    try { real = realpathSync(dir); } catch { /* keep it */ }
    throw new Error(`${e.message}${rec.archive ? ` (the maps can still be inspected: bpfcr inspect ${join(real, rec.archive)}, or bpfcr inspect on the podman export)` : ''}`);
  }
  const { mode, why } = decision;
  const progLines = new Map<number, number>(); // old prog/link id → the id handed to the tasks
  mark(`pre-restore: decided (${mode})`);

  // 3. Act.
  const lines: RestoreLine[] = [];
  /** Reload programs/links from their BPF ELF objects (src/programs/reload.ts), pinned among the copies. */
  const reload = async (mapFd: (oldId: number) => number | undefined, into: import('../oci/pins.js').PinDir): Promise<void> => {
    const members = new Set(rec.objects.flatMap((o) => (o.object?.member ? [o.object.member] : [])));
    const objects = await readArchiveMembers(join(dir, rec.archive ?? ARCHIVE), members);
    const [{ reloadPrograms }, { openCgroupTarget }] = await Promise.all([import('../programs/reload.js'), import('../programs/targets.js')]);
    const r = reloadPrograms({
      objects: rec.objects, ...(rec.host.kernel ? { kernel: rec.host.kernel } : {}), label: (o) => objectLabel(o as TakenObject), mapFd, elf: objects, note,
      // runc moved criu into the new container's cgroups before asking it to restore
      openCgroup: (place) => openCgroupTarget(place, cpid),
      keep: (fd, name) => { const [pin] = into.pin([{ fd, name }]); cleanup.push({ op: 'f', path: pin! }); },
    });
    for (const [o, n] of [...r.progs, ...r.links]) progLines.set(o, n);
    note(`pre-restore: reloaded ${r.progs.size} program(s) and re-created ${r.links.size} link(s) from ${members.size} BPF object(s) (${decision.programsWhy})`);
  };
  const mapLine = (o: TakenObject, id: number): RestoreLine => (o.vma ? { vma: true, oldId: o.id, newId: id } : { criuId: o.criuId, kind: 'map', id });
  /** old BTF id → the BTF object the restored maps use (copy mode) */
  const btfOfCopies = new Map<number, number>();
  const cleanup: CleanupStep[] = [];
  /** local-storage maps: archive index → the map the restored tasks get (values written at post-restore) */
  const storage: { index: number; id: number }[] = [];
  const marker = markerPath(rec.key, cpid);
  let madeCopies = false;
  try {
    if (mode === 'copy') {
      if (!rec.archive || !existsSync(join(dir, rec.archive))) {
        throw new Error(`the maps must be recreated (${why}) but the image dir has no ${rec.archive ?? ARCHIVE}`);
      }
      const { mounted } = ensureStagingRoot(root);
      if (mounted) note(`pre-restore: mounted a bpffs on ${mounted} for the staging root ${root}`);
      if (existsSync(copiesDir)) removeStagingTree(copiesDir);
      makeStagingDir(copiesDir);
      madeCopies = true;
      const [{ restore }, { PinDir }] = await Promise.all([import('../engine/restore.js'), import('../oci/pins.js')]);
      const restored = await restore({ input: join(dir, rec.archive), config });
      let copies: import('../oci/pins.js').PinDir | undefined;
      try {
        copies = PinDir.open(copiesDir); // bpfcr's one pinner: strict paths, never over an existing pin
        const byOld = new Map(restored.map((r) => [r.oldId, r]));
        const newId = new Map<number, number>();
        for (const o of uniqueMaps) {
          const r = byOld.get(o.id);
          if (!r || r.fd === undefined) throw new Error(`${objectLabel(o)} is missing from the archive ${rec.archive}`);
          const [pin] = copies.pin([{ fd: r.fd, name: `map-${o.id}` }]);
          cleanup.push({ op: 'f', path: pin! });
          newId.set(o.id, r.newId);
          if (o.btfId) btfOfCopies.set(o.btfId, bpf.mapInfo(r.fd).btfId);
        }
        for (const o of maps) lines.push(mapLine(o, newId.get(o.id)!));
        for (const o of uniqueMaps) if (isLocalStorage(o)) storage.push({ index: o.archiveIndex!, id: newId.get(o.id)! });
        if (decision.programs === 'reload') await reload((id) => byOld.get(id)?.fd, copies);
      } finally {
        copies?.close();
        restored.close();
      }
      cleanup.push({ op: 'd', path: copiesDir });
    } else {
      for (const o of maps) lines.push(mapLine(o, o.id));
      // their entries died with their owners: the values come from the archive at post-restore
      for (const o of uniqueMaps) if (isLocalStorage(o)) storage.push({ index: o.archiveIndex!, id: o.id });
      if (decision.programs === 'reload') {
        // the staged maps are handed back; the programs are reloaded against them
        const { mounted } = ensureStagingRoot(root);
        if (mounted) note(`pre-restore: mounted a bpffs on ${mounted} for the staging root ${root}`);
        if (existsSync(copiesDir)) removeStagingTree(copiesDir);
        makeStagingDir(copiesDir);
        madeCopies = true;
        const { PinDir } = await import('../oci/pins.js');
        const into = PinDir.open(copiesDir);
        const fds = new Map<number, number>();
        try {
          await reload((id) => {
            if (!fds.has(id)) { try { fds.set(id, bpf.mapGetFdById(id)); } catch { return undefined; } }
            return fds.get(id);
          }, into);
        } finally {
          into.close();
          for (const fd of fds.values()) bpf.closeFd(fd);
        }
        cleanup.push({ op: 'd', path: copiesDir });
      }
    }
    for (const o of rec.objects) {
      if (o.kind !== 'prog' && o.kind !== 'link') continue;
      const id = decision.programs === 'reload' ? progLines.get(o.id) : o.id;
      if (id === undefined) throw new Error(`${objectLabel(o)} was not reloaded`);
      lines.push({ criuId: o.criuId, kind: o.kind, id });
    }
    lines.push(...await btfLines(dir, rec, mode, btfOfCopies));
    lines.push(...perfLines(rec));
    if (mode !== 'copy') {
      // the restored tasks will hold the originals: their pins go at post-restore
      const pins = rec.objects.filter((o) => o.pin !== NO_PIN).map((o) => o.pin);
      for (const p of new Set(pins)) cleanup.push({ op: 'f', path: p });
      for (const d of new Set(pins.map((p) => dirname(p)))) if (d !== keyDir) cleanup.push({ op: 'd', path: d });
    }
    cleanup.push({ op: 'd', path: keyDir }, { op: 'f', path: marker });

    writeFileSync(marker, `${token || `${cpid} -`} ${mode}\n`, { mode: 0o600 });
    writeAtomic(dir, RESTORE_FILE, formatRestore(lines));
    if (storage.length) {
      const { formatStorage } = await import('./storage.js');
      writeAtomic(dir, STORAGE_FILE, formatStorage(storage));
    } else remove(dir, STORAGE_FILE);
    // The plugin runs the cleanup list at the end of the restore (src/criu-plugin): it acts only inside
    // <staging root>/<key>, the root named here — where the originals are when they are handed back,
    // where the copies were made otherwise.
    const originals = rec.objects.find((o) => o.pin !== NO_PIN)?.pin;
    writeAtomic(dir, STAGING_FILE, `${mode !== 'copy' && originals ? dirname(dirname(originals)) : root}\n`);
    writeAtomic(dir, CLEANUP_FILE, formatCleanup(cleanup));
    writeAtomic(dir, OWNER_FILE, `${token}\n`);
  } catch (e) {
    if (madeCopies) {
      try { removeStagingTree(copiesDir); } catch { /* best effort */ }
      if (isOnBpffs(keyDir)) rmdirIfEmpty(keyDir); // made for the copies: nothing staged remains
    }
    unlinkQuiet(marker);
    remove(dir, RESTORE_FILE);
    remove(dir, CLEANUP_FILE);
    remove(dir, OWNER_FILE);
    remove(dir, STORAGE_FILE);
    throw e;
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const progs = rec.objects.filter((o) => o.kind === 'prog' || o.kind === 'link').length;
  note(`pre-restore: checkpoint ${rec.key}: ` +
    (mode === 'reuse' ? `reusing ${uniqueMaps.length} staged map(s) (zero copy)` : mode === 'copy' ? `recreated ${uniqueMaps.length} map(s) from ${rec.archive} (${why})` : 'no maps') +
    `${progs ? `; handing back ${progs} staged program(s)/link(s)` : ''} (${ms.toFixed(0)} ms, ${performance.now().toFixed(0)} ms since node started)`);
}

/**
 * BTF fds. One BTF object for every fd and map that shared it: the BTF the restored maps use when
 * they are copies, the original while something (a staged map or program) keeps it alive; otherwise
 * the plugin loads it from the archive's copy, handed over as bpfcr-btf-<id>.raw.
 */
async function btfLines(dir: string, rec: CheckpointRecord, mode: Mode, btfOfCopies: Map<number, number>): Promise<RestoreLine[]> {
  const btfs = rec.objects.filter((o) => o.kind === 'btf');
  if (!btfs.length) return [];
  const bpf = await import('../syscall/bpf.js');
  const alive = (id: number): boolean => {
    try { bpf.closeFd(bpf.btfGetFdById(id)); return true; } catch { return false; }
  };
  const lines: RestoreLine[] = [];
  const toLoad = new Set<number>();
  for (const o of btfs) {
    const copy = btfOfCopies.get(o.id);
    if (copy) lines.push({ criuId: o.criuId, kind: 'btf', id: copy });
    else if (mode !== 'copy' && alive(o.id)) lines.push({ criuId: o.criuId, kind: 'btf', id: o.id });
    else { lines.push({ criuId: o.criuId, kind: 'btf-load', id: o.id }); toLoad.add(o.id); }
  }
  if (toLoad.size) {
    if (!rec.archive || !existsSync(join(dir, rec.archive))) throw new Error(`BTF object(s) ${[...toLoad].join(', ')} must be reloaded but the image dir has no ${rec.archive ?? ARCHIVE}`);
    const members = await readArchiveMembers(join(dir, rec.archive), new Set([...toLoad].map((id) => `btf/${id}.btf`)));
    const blobs = new Map([...members].map(([name, data]) => [Number(/^btf\/(\d+)\.btf$/.exec(name)![1]), data]));
    for (const id of toLoad) {
      const blob = blobs.get(id);
      if (!blob) throw new Error(`BTF object ${id} is missing from ${rec.archive} (member btf/${id}.btf)`);
      writeFileSync(join(dir, btfHandoff(id)), blob, { mode: 0o600 });
    }
  }
  return lines;
}

/**
 * Perf event fds get a stand-in on the same tracepoint (the attachment itself is the perf link; the
 * application only disables and closes the event fd when it detaches). Tracepoint ids are this host's:
 * looked up by name in tracefs; 0 (a software dummy event) when unknown.
 */
function perfLines(rec: CheckpointRecord): RestoreLine[] {
  const perf = rec.objects.filter((o) => o.kind === 'perf');
  if (!perf.length) return [];
  const found = findTracepoints([...new Set(perf.flatMap((o) => (o.tracepoint ? [o.tracepoint] : [])))]);
  return perf.map((o) => {
    const id = o.tracepoint ? found.get(o.tracepoint)?.id ?? 0 : 0;
    if (o.tracepoint && !id) note(`pre-restore: tracepoint ${o.tracepoint} not found in tracefs (mount -t tracefs tracefs /sys/kernel/tracing): ${objectLabel(o)} comes back as a software dummy event`);
    return { criuId: o.criuId, kind: 'perf' as const, id };
  });
}
