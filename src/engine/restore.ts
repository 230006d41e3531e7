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
import { mapLabel, parseMapMember, type MapMeta, type MapRecord } from '../maps/meta.js';
import { strategyForLayout } from '../maps/strategies/index.js';
import { mapTypeById } from '../maps/types.js';
import type { RestoreEnv } from '../maps/strategies/strategy.js';
import { btfLoad, closeFd, mapCreate, mapFreeze, mapInfo } from '../syscall/bpf.js';
import { validateMeta } from './validate.js';

export interface RestoreOptions {
  input: ArchiveSource;
  config: Config;
  /** read a bpfcr archive embedded under this member prefix (podman export) */
  prefix?: string;
  forceIterate?: boolean;
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
 */
export async function restore(opts: RestoreOptions): Promise<Restored> {
  const built: Building[] = [];
  const btfBlobs = new Map<number, Buffer>();
  const btfFds = new Map<number, number>();
  let ok = false;
  let reader: Awaited<ReturnType<typeof openArchiveReader>> | undefined;
  try {
    // Data members are ≤ 8 MiB when bpfcr writes them; a larger one is refused, not buffered.
    // Member names this bpfcr does not know are a newer writer's compatible additions
    // (docs/archive-format.md §9): the reader verifies them against the manifest and skips them.
    reader = await openArchiveReader(opts.input, {
      maxMemberSize: 64 << 20, known: isEngineMember, ...(opts.prefix ? { prefix: opts.prefix } : {}),
    });
    const localCpus = possibleCpus();
    const archiveCpus = reader.header.possibleCpus;
    let current: Building | undefined;
    const finishMap = (b: Building | undefined): void => {
      if (b?.meta.frozen) mapFreeze(b.fd);
    };
    const env: RestoreEnv = {
      localCpus, archiveCpus, forceIterate: opts.forceIterate ?? false,
      innerFd: (index) => {
        const inner = built[index];
        if (!inner || inner === current) throw new Error(`inner map index ${index} is not in the archive before its outer map`);
        return inner.fd;
      },
    };

    const applyMember = (name: string, data: Buffer, cur: Building | undefined): Building | undefined => {
      if (name.startsWith('btf/')) {
        const id = Number(/^btf\/(\d+)\.btf$/.exec(name)?.[1]);
        if (!id) throw new Error(`member ${name}: unexpected name`);
        btfBlobs.set(id, data);
        return cur;
      }
      const which = parseMapMember(name);
      if (!which) throw new Error(`member ${name}: not a bpfcr member`);
      if (which.chunk === undefined) {
        finishMap(cur);
        let raw: unknown;
        try { raw = JSON.parse(data.toString('utf8')); } catch { throw new Error(`member ${name}: not valid JSON`); }
        const meta = validateMeta(raw, name, built.length, archiveCpus);
        if (hostDependent(meta, archiveCpus, localCpus) && opts.config.cpuMismatch === 'error') {
          throw new Error(`${mapLabel(meta)}: per-CPU values were dumped on a host with ${archiveCpus} possible CPUs, this host has ${localCpus}; set percpu.cpu_mismatch: zero-fill in ${opts.config.source === 'built-in defaults' ? '/etc/bpfcr/config.yaml' : opts.config.source} to keep CPUs 0..${Math.min(archiveCpus, localCpus) - 1} and zero the rest`);
        }
        const b: Building = { meta, fd: createMap(meta, btfBlobs, btfFds), entries: 0, chunks: 0 };
        current = b;
        built.push(b);
        return b;
      }
      if (!cur || which.index !== cur.meta.index || which.chunk !== cur.chunks) {
        throw new Error(`member ${name}: out of order (expected ${cur ? `chunk ${cur.chunks} of map ${cur.meta.index}` : 'a meta.json first'})`);
      }
      const strategy = strategyForLayout(cur.meta.layout)!;
      try {
        cur.entries += strategy.restoreChunk(cur.fd, cur.meta, data, env);
      } catch (e) {
        throw new Error(`${mapLabel(cur.meta)}: member ${name}: ${(e as Error).message}`, { cause: e });
      }
      cur.chunks++;
      return cur;
    };

    // A member is applied as soon as it is read, before the manifest (the last member) can vouch
    // for it. So when applying fails, keep reading to the end: if the archive is corrupt, the
    // checksum error is the one to report, not whatever the kernel made of the bad bytes.
    let deferred: Error | undefined;
    for await (const m of reader.members()) {
      const data = await m.read();
      if (deferred) continue;
      try {
        current = applyMember(m.name, data, current);
      } catch (e) {
        deferred = e as Error;
      }
    }
    const manifest = await reader.finish();
    if (deferred) throw deferred;
    finishMap(current);

    // The manifest is the authority: every map it lists must have been rebuilt in full.
    const records = (manifest['maps'] ?? []) as MapRecord[];
    if (!Array.isArray(records) || records.length !== built.length) {
      throw new Error(`manifest lists ${Array.isArray(records) ? records.length : 'no'} maps, the archive holds ${built.length}`);
    }
    for (const b of built) {
      const r = records[b.meta.index]!;
      if (r.entries !== b.entries || r.chunks !== b.chunks) {
        throw new Error(`${mapLabel(b.meta)}: manifest says ${r.entries} entries in ${r.chunks} chunks, restored ${b.entries} in ${b.chunks}`);
      }
    }

    const maps: RestoredMap[] = built.map((b) => ({
      index: b.meta.index, name: b.meta.name, type: b.meta.type, oldId: b.meta.id,
      newId: mapInfo(b.fd).id, entries: b.entries, top: b.meta.top, fd: b.fd,
    }));
    ok = true;
    return Object.assign(maps, { close: () => { for (const b of built.splice(0)) closeFd(b.fd); } });
  } finally {
    await reader?.close().catch(() => undefined);
    for (const fd of btfFds.values()) closeFd(fd);
    if (!ok) for (const b of built) closeFd(b.fd);
  }
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

function createMap(meta: MapMeta, btfBlobs: Map<number, Buffer>, btfFds: Map<number, number>): number {
  const label = mapLabel(meta);
  let btfFd: number | undefined;
  if (meta.btf) {
    btfFd = btfFds.get(meta.btf.id);
    if (btfFd === undefined) {
      const blob = btfBlobs.get(meta.btf.id);
      if (!blob) throw new Error(`${label}: its BTF (btf/${meta.btf.id}.btf) is missing from the archive`);
      btfFd = btfLoad(blob, `BTF of ${label}`);
      btfFds.set(meta.btf.id, btfFd);
    }
  }
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
