/**
 * Restore: one pass over the archive creates and fills every map while checksums are computed,
 * and hands the maps back as fds only once the manifest has verified every member. The engine
 * never pins: the new maps are held by those fds alone, so any failure (bad member, checksum
 * mismatch, kernel refusal) leaves nothing behind — the fds close and the kernel frees the maps —
 * and the caller decides where they live on (src/oci/pins.ts pins them; CRIU hands them over).
 */
import { openArchiveReader, type ArchiveSource } from '../archive/reader.js';
import type { Config } from '../config/config.js';
import { possibleCpus } from '../maps/cpus.js';
import { btfMember, mapLabel, metaMember, parseMapMember, type MapMeta } from '../maps/meta.js';
import { strategyForLayout } from '../maps/strategies/index.js';
import { mapTypeById } from '../maps/types.js';
import type { RestoreEnv } from '../maps/strategies/strategy.js';
import { btfLoad, closeFd, mapCreate, mapFreeze, mapInfo } from '../syscall/bpf.js';
import { BTF_MAX_SIZE, btfKernelBytes, checkHostBudget, checkKernelBudget, mapKernelBytes, Tally } from './budget.js';
import { checkAgainstRecord, checkChunk, metaOfRecord, planRestore, validateMeta, type RestorePlan } from './validate.js';

export interface RestoreOptions {
  input: ArchiveSource;
  config: Config;
  /** read a bpfcr archive embedded under this member prefix (podman export) */
  prefix?: string;
  /** how messages name the archive (default its path): a state file opened as /proc/self/fd/N has a better name */
  label?: string;
  forceIterate?: boolean;
  /** called after each data member is applied, with the manifest's maps once known (src/cli/progress.ts) */
  progress?: (chunk: { map: MapMeta; bytes: number; plan?: readonly (MapMeta & { entries: number })[] }) => void;
}

export interface RestoredMap {
  index: number;
  name: string;
  type: string;
  oldId: number;
  newId: number;
  entries: number;
  /** selected at dump time (a process fd or --map-id), not only an inner map of another */
  top: boolean;
  /** our fd of the new map: the only thing keeping it alive until it is pinned or handed over */
  fd: number;
  /**
   * local storage: its `entries` values were not written (their owners, the dumped tasks, sockets,
   * files and cgroups, exist only in a CRIU restore, which writes them at post-restore)
   */
  valuesDeferred?: true;
}

/** The rebuilt maps in archive order; close() closes every fd (the maps nothing else holds die). */
export type Restored = RestoredMap[] & { close(): void };

interface Building {
  meta: MapMeta;
  fd: number;
  entries: number;
  chunks: number;
}

/**
 * Rebuild every map of the archive and hand back their fds (never pins: src/oci/pins.ts is the one
 * pinner); the caller closes them with close() once it has pinned or passed on what it needs.
 *
 * Before the first map is created, the manifest's description of every map is checked against
 * everything else and against the memory budgets (planRestore): a directory and a tar file give
 * the manifest first (ReaderOptions.manifestFirst), an archive under a prefix before its first
 * member. Only a stream (stdin) has it at its very end: its maps are then checked one by one as
 * they come, each charged to the budgets before it is created, and against the manifest at the end.
 */
export async function restore(opts: RestoreOptions): Promise<Restored> {
  const cfg = opts.config;
  const built: Building[] = [];
  const btfFds = new Map<number, number>();
  let plan: RestorePlan | undefined;
  let ok = false;
  /** the kernel's batch update of the member applied last, running while the next one is read */
  let inFlight: Promise<void> | undefined;
  let reader: Awaited<ReturnType<typeof openArchiveReader>> | undefined;
  try {
    // Member names this bpfcr does not know are a newer writer's compatible additions
    // (docs/archive-format.md §9): the reader verifies them against the manifest and skips them;
    // so it does BTF objects no map uses, once the plan says which those are.
    reader = await openArchiveReader(opts.input, {
      maxMemberSize: cfg.hostMemoryBudget, manifestFirst: true,
      known: (name) => isEngineMember(name) && !(plan && isUnusedBtf(name, plan)),
      ...(opts.prefix ? { prefix: opts.prefix } : {}), ...(opts.label ? { label: opts.label } : {}),
    });
    const r = reader;
    const label = r.label;
    const localCpus = possibleCpus();
    const archiveCpus = r.header.possibleCpus;
    const relaid = (meta: MapMeta): number => relayFactor(meta, archiveCpus, localCpus, cfg.cpuMismatch);
    const makePlan = (): void => {
      if (plan || !r.manifest) return;
      const p = planRestore(r.manifest, archiveCpus, localCpus, relaid);
      checkKernelBudget(label, p.kernel, cfg);
      checkHostBudget(label, p.host, cfg);
      for (const rec of p.records) checkCpus(metaOfRecord(rec), archiveCpus, localCpus, cfg);
      plan = p;
    };
    // Without a plan (a stream): what the maps met so far cost, and the BTF blobs held until a map
    // uses one (the BTF a process holds but no map uses is never loaded).
    const kernel = new Tally();
    const pendingBtf = new Map<number, Buffer>();
    let pendingBytes = 0;
    let current: Building | undefined;
    const finishMap = (b: Building | undefined): void => {
      if (b?.meta.frozen) mapFreeze(b.fd);
    };
    let inFlightLabel = '';
    const settle = async (): Promise<void> => {
      const w = inFlight;
      inFlight = undefined;
      if (w) await w.catch((e: Error) => { throw new Error(`${inFlightLabel}: ${e.message}`, { cause: e }); });
    };
    const env: RestoreEnv = {
      localCpus, archiveCpus, forceIterate: opts.forceIterate ?? false,
      inFlight: (work) => { inFlight = work; work.catch(() => undefined); },
      innerFd: (index) => {
        const inner = built[index];
        if (!inner || inner === current) throw new Error(`inner map index ${index} is not in the archive before its outer map`);
        return inner.fd;
      },
    };
    const btfFd = (id: number, user: string): number => {
      let fd = btfFds.get(id);
      if (fd !== undefined) return fd;
      const blob = pendingBtf.get(id);
      if (!blob) throw new Error(`${user}: its BTF (${btfMember(id)}) is missing from the archive or comes after it`);
      if (!plan) {
        kernel.add(`BTF ${btfMember(id)}`, btfKernelBytes(blob.length));
        checkKernelBudget(label, kernel, cfg, true);
      }
      fd = btfLoad(blob, `member ${btfMember(id)}`);
      btfFds.set(id, fd);
      pendingBtf.delete(id);
      pendingBytes -= blob.length;
      return fd;
    };

    /** Limits that apply before a byte of the member is read. */
    const admit = (name: string, size: number): void => {
      if (name.startsWith('btf/') && size > BTF_MAX_SIZE) {
        throw new Error(`archive ${label}: member ${name}: ${size} bytes, more than the kernel accepts for a BTF object (${BTF_MAX_SIZE})`);
      }
      if (plan) return; // the plan checked every member's size against the host budget
      const held = new Tally();
      const chunkOf = parseMapMember(name);
      const grow = chunkOf?.chunk !== undefined && current?.meta.index === chunkOf.index ? relaid(current.meta) : 0;
      held.max(`member ${name}${name.startsWith('btf/') ? ` and ${pendingBtf.size} BTF blob(s) waiting for their maps` : ''}`, size * (1 + grow) + pendingBytes);
      checkHostBudget(label, held, cfg);
    };

    const applyMember = (name: string, data: Buffer, cur: Building | undefined): Building | undefined => {
      if (name.startsWith('btf/')) {
        const id = Number(/^btf\/(\d+)\.btf$/.exec(name)?.[1]);
        if (!id) throw new Error(`member ${name}: unexpected name`);
        pendingBtf.set(id, data);
        pendingBytes += data.length;
        // with a plan, every BTF read here is used by a map: loaded now, its blob not kept
        if (plan) btfFd(id, `member ${name}`);
        return cur;
      }
      const which = parseMapMember(name);
      if (!which) throw new Error(`member ${name}: not a bpfcr member`);
      if (which.chunk === undefined) {
        finishMap(cur);
        let raw: unknown;
        try { raw = JSON.parse(data.toString('utf8')); } catch { throw new Error(`member ${name}: not valid JSON`); }
        const meta = validateMeta(raw, `member ${name}`, built.length, archiveCpus);
        if (plan) checkAgainstRecord(meta, plan, name);
        else {
          kernel.add(mapLabel(meta), mapKernelBytes(meta, localCpus));
          const t = meta.innerTemplate;
          if (t) kernel.add(`the inner-map template of ${mapLabel(meta)}`, mapKernelBytes({ typeId: t.type, keySize: t.keySize, valueSize: t.valueSize, maxEntries: t.maxEntries }, localCpus));
          checkKernelBudget(label, kernel, cfg, true);
        }
        checkCpus(meta, archiveCpus, localCpus, cfg);
        const b: Building = { meta, fd: createMap(meta, meta.btf ? btfFd(meta.btf.id, mapLabel(meta)) : undefined), entries: 0, chunks: 0 };
        current = b;
        built.push(b);
        return b;
      }
      if (!cur || which.index !== cur.meta.index || which.chunk !== cur.chunks) {
        throw new Error(`member ${name}: out of order (expected ${cur ? `chunk ${cur.chunks} of map ${cur.meta.index}` : 'a meta.json first'})`);
      }
      const n = checkChunk(cur.meta, name, data.length, cur.entries);
      const strategy = strategyForLayout(cur.meta.layout)!;
      let got: number;
      try {
        got = strategy.restoreChunk(cur.fd, cur.meta, data, env);
      } catch (e) {
        throw new Error(`${mapLabel(cur.meta)}: member ${name}: ${(e as Error).message}`, { cause: e });
      }
      cur.entries += n < 0 ? got : n;
      cur.chunks++;
      opts.progress?.({ map: cur.meta, bytes: data.length, ...(plan ? { plan: plan.records } : {}) });
      return cur;
    };

    makePlan();
    // A member is applied as soon as it is read. With a plan the manifest has vouched for it by
    // then (a mismatch fails its read); a stream's manifest comes last, so when applying fails,
    // keep reading to the end: if the archive is corrupt, the checksum error is the one to report,
    // not whatever the kernel made of the bad bytes.
    let deferred: Error | undefined;
    for await (const m of r.members()) {
      makePlan(); // under a prefix the manifest is known once the first member comes
      if (plan && isUnusedBtf(m.name, plan)) continue;
      admit(m.name, m.size);
      const data = await m.read(); // read and verified while the previous member's update runs
      try {
        await settle();
      } catch (e) {
        deferred ??= e as Error;
      }
      if (deferred) continue;
      try {
        inFlightLabel = `${current ? mapLabel(current.meta) : 'a map'}: member ${m.name}`;
        current = applyMember(m.name, data, current);
        if (current) inFlightLabel = `${mapLabel(current.meta)}: member ${m.name}`;
      } catch (e) {
        deferred = e as Error;
      }
    }
    try {
      await settle();
    } catch (e) {
      deferred ??= e as Error;
    }
    const manifest = await r.finish();
    if (deferred) throw deferred;
    finishMap(current);

    // The manifest is the authority: every map it lists must have been rebuilt in full. A stream's
    // maps are checked against it now, as the plan checks them first elsewhere.
    const final = plan ?? planRestore(manifest, archiveCpus, localCpus, relaid);
    if (final.records.length !== built.length) {
      throw new Error(`manifest lists ${final.records.length} maps, the archive holds ${built.length}`);
    }
    for (const b of built) {
      if (!plan) checkAgainstRecord(b.meta, final, metaMember(b.meta.index));
      const rec = final.records[b.meta.index]!;
      if (rec.entries !== b.entries || rec.chunks !== b.chunks) {
        throw new Error(`${mapLabel(b.meta)}: manifest says ${rec.entries} entries in ${rec.chunks} chunks, restored ${b.entries} in ${b.chunks}`);
      }
    }

    const maps: RestoredMap[] = built.map((b) => ({
      index: b.meta.index, name: b.meta.name, type: b.meta.type, oldId: b.meta.id,
      newId: mapInfo(b.fd).id, entries: b.entries, top: b.meta.top, fd: b.fd,
      ...(b.meta.layout === 'owners' && b.entries ? { valuesDeferred: true as const } : {}),
    }));
    ok = true;
    return Object.assign(maps, { close: () => { for (const b of built.splice(0)) closeFd(b.fd); } });
  } finally {
    // never close a map's fd under an update still running on a worker thread (its number could be reused)
    await inFlight?.catch(() => undefined);
    await reader?.close().catch(() => undefined);
    for (const fd of btfFds.values()) closeFd(fd);
    if (!ok) for (const b of built) closeFd(b.fd);
  }
}

/** btf/<id>.btf of a BTF object no map of the plan uses. */
function isUnusedBtf(name: string, plan: RestorePlan): boolean {
  const id = /^btf\/(\d+)\.btf$/.exec(name)?.[1];
  return id !== undefined && !plan.btfIds.has(Number(id));
}

/**
 * Per-CPU values dumped on a host with another CPU count: refused unless percpu.cpu_mismatch
 * says zero-fill (checked for every map before the first is created, when there is a plan).
 */
function checkCpus(meta: MapMeta, archiveCpus: number, localCpus: number, cfg: Config): void {
  if (!hostDependent(meta, archiveCpus, localCpus) || cfg.cpuMismatch !== 'error') return;
  throw new Error(`${mapLabel(meta)}: per-CPU values were dumped on a host with ${archiveCpus} possible CPUs, this host has ${localCpus}; set percpu.cpu_mismatch: zero-fill in ${cfg.source === 'built-in defaults' ? '/etc/bpfcr/config.yaml' : cfg.source} to keep CPUs 0..${Math.min(archiveCpus, localCpus) - 1} and zero the rest`);
}

/** Bytes of re-laid per-CPU data per byte of the map's data members (0: used as it is). */
function relayFactor(meta: MapMeta, archiveCpus: number, localCpus: number, mismatch: Config['cpuMismatch']): number {
  if (mismatch !== 'zero-fill' || !hostDependent(meta, archiveCpus, localCpus)) return 0;
  const strategy = strategyForLayout(meta.layout)!;
  const type = mapTypeById(meta.typeId);
  return strategy.valueStride(type, meta.valueSize, localCpus) / strategy.valueStride(type, meta.valueSize, archiveCpus);
}

/**
 * Whether the map's data members depend on the dumping host's CPU count and that count is not
 * this host's (per-CPU values): its strategy would lay them out differently here.
 */
function hostDependent(meta: MapMeta, archiveCpus: number, localCpus: number): boolean {
  const strategy = strategyForLayout(meta.layout)!;
  const type = mapTypeById(meta.typeId);
  return strategy.valueStride(type, meta.valueSize, archiveCpus) !== strategy.valueStride(type, meta.valueSize, localCpus);
}

function createMap(meta: MapMeta, btfFd: number | undefined): number {
  const label = mapLabel(meta);
  let innerFd: number | undefined;
  try {
    if (meta.innerTemplate) {
      const t = meta.innerTemplate;
      innerFd = mapCreate({ type: t.type, keySize: t.keySize, valueSize: t.valueSize, maxEntries: t.maxEntries, flags: t.flags, name: 'bpfcr_tmpl' });
    }
    return mapCreate({
      type: meta.typeId, keySize: meta.keySize, valueSize: meta.valueSize, maxEntries: meta.maxEntries,
      flags: meta.flags & ~(mapTypeById(meta.typeId).kernelSetFlags ?? 0), name: meta.name, mapExtra: BigInt(meta.mapExtra),
      ...(innerFd !== undefined ? { innerMapFd: innerFd } : {}),
      ...(meta.btf && btfFd !== undefined ? { btfFd, btfKeyTypeId: meta.btf.keyTypeId, btfValueTypeId: meta.btf.valueTypeId } : {}),
    });
  } catch (e) {
    throw new Error(`${label}: cannot recreate: ${(e as Error).message}`, { cause: e });
  } finally {
    if (innerFd !== undefined) closeFd(innerFd);
  }
}

/** The members the engine reads: btf/<id>.btf and maps/NNNN/{meta.json,data-NNNNNN.bin}. */
export function isEngineMember(name: string): boolean {
  return /^btf\/\d+\.btf$/.test(name) || parseMapMember(name) !== undefined;
}
