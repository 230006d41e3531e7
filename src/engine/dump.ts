/**
 * Dump: find the maps, check every policy before writing a byte, then stream each map's
 * metadata and contents into the archive. Any failure aborts the writer, which removes the
 * partial output: there is never a half archive that looks complete.
 */
import { openArchiveWriter, type WriterTarget } from '../archive/writer.js';
import { makeHeader } from '../archive/format.js';
import { type Config, policyFor } from '../config/config.js';
import { possibleCpus } from '../maps/cpus.js';
import { isFrozen, listBpfFds } from '../maps/fdinfo.js';
import { MapError } from '../maps/map-error.js';
import { TreeOwners } from '../maps/owners.js';
import { btfMember, chunkMember, mapLabel, metaMember, type MapMeta, type MapRecord } from '../maps/meta.js';
import { strategyFor, type Layout, type Strategy } from '../maps/strategies/index.js';
import type { DumpEnv, InnerTemplate, LiveMap, MetaExtra } from '../maps/strategies/strategy.js';
import { mapTypeById, type MapTypeInfo } from '../maps/types.js';
import { btfGetFdById, btfRaw, closeFd, mapGetFdById, mapInfo } from '../syscall/bpf.js';
import { toolVersion } from '../version.js';

export const DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024;

export interface DumpOptions {
  /** the processes whose maps are dumped; the first is the tree's root (a container's init), whose
   *  cgroup is the container's, and all of them own the local-storage entries that are carried */
  pids: number[];
  mapIds: number[];
  output: WriterTarget;
  config: Config;
  overwrite?: boolean;
  /**
   * fsync the output before publishing it. Off by default, like CRIU's and podman's own image
   * writes (~45 ms for 24 MB here): a crash can then leave a published archive with lost blocks,
   * which verification reports as a checksum mismatch — never silently wrong data.
   */
  fsync?: boolean;
  /** walk maps with get_next_key + lookup even where batch ops exist */
  forceIterate?: boolean;
  chunkBytes?: number;
  /**
   * BTF objects to carry besides those of the maps (a process may hold a BTF fd no map uses, e.g.
   * libbpf keeps its object's BTF open): written as btf/<id>.btf like every map's BTF.
   */
  btfIds?: number[];
  /**
   * Members of the caller's written right after the header, before the engine's (e.g. the OCI
   * hooks' oci/pins.json): listed in the manifest and verified like every member; readers that do
   * not know them skip them (docs/archive-format.md section 9). Names must not be engine names.
   */
  extraMembers?: { name: string; data: Buffer }[];
  /** called after each data member is written (src/cli/progress.ts draws it) */
  progress?: (chunk: { map: MapMeta; bytes: number }) => void;
}

export interface DumpResult {
  maps: MapRecord[];
}

interface Holder { pid: number; fd: number }

/** A map selected for the dump, opened by id. */
interface Selected extends LiveMap {
  refs: Holder[];
  top: boolean;
  policy: 'content' | 'empty';
  /** what moves its contents under that policy; it also decided valueStride */
  strategy: Strategy<Layout>;
}

function holderText(refs: Holder[]): string {
  if (refs.length === 0) return 'selected by --map-id';
  return refs.map((r) => `pid ${r.pid} fd ${r.fd}`).join(', ');
}

/** Open a map by id and decide its policy; throws the one-line refusal operators see. */
function select(id: number, refs: Holder[], top: boolean, cfg: Config, via?: string): Selected {
  let fd: number;
  try {
    fd = mapGetFdById(id);
  } catch (e) {
    throw new MapError(`map id ${id} (${via ?? holderText(refs)}): cannot open: ${(e as Error).message}`, { cause: e });
  }
  try {
    const info = mapInfo(fd);
    const type = mapTypeById(info.type);
    const label = mapLabel({ id, name: info.name, type: type.name });
    const where = via ?? holderText(refs);
    if (info.ifindex !== 0) {
      throw new MapError(`refusing ${label} held by ${where}: it is offloaded to device ifindex ${info.ifindex}; offloaded maps live in the device and cannot be dumped`);
    }
    const { policy, from } = policyFor(cfg, type, info.name);
    if (policy === 'refuse') throw new MapError(refusal(label, where, type, info.name, from, cfg));
    if (policy === 'content' && type.family === 'metadata-only') {
      throw new MapError(`refusing ${label} held by ${where}: policy content (from ${from}) is impossible: ${type.why}`);
    }
    const strategy = strategyFor(type.family, policy);
    return {
      fd, info, type, label, refs, top, policy, strategy,
      valueStride: strategy.valueStride(type, info.valueSize, possibleCpus()),
    };
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}

function refusal(label: string, where: string, type: MapTypeInfo, name: string, from: string, cfg: Config): string {
  const why = type.why ? `${type.why}` : 'its policy is refuse';
  const cfgName = cfg.source === 'built-in defaults' ? '/etc/bpfcr/config.yaml' : cfg.source;
  const fix = type.recreatable === false
    ? 'no policy can carry it'
    : `policy "empty" would recreate it without contents: set policy.maps.${name || '<name>'}: empty or policy.types.${type.name}: empty in ${cfgName}`;
  return `refusing ${label} held by ${where}: ${why} (policy refuse, ${from}); ${fix}`;
}

export async function dump(opts: DumpOptions): Promise<DumpResult> {
  const cfg = opts.config;
  const chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;

  // 1. Discovery: every map fd of every pid, deduped by map id.
  const holders = new Map<number, Holder[]>();
  for (const pid of opts.pids) {
    for (const ref of listBpfFds(pid, ['map'])) {
      const list = holders.get(ref.id) ?? [];
      list.push({ pid, fd: ref.fd });
      holders.set(ref.id, list);
    }
  }
  for (const id of opts.mapIds) if (!holders.has(id)) holders.set(id, []);
  if (holders.size === 0) {
    throw new Error(`no BPF maps found in ${opts.pids.map((p) => `pid ${p}`).join(', ') || 'the selection'}`);
  }

  // 2. Open each map and check its policy before any output exists.
  const selected = new Map<number, Selected>();
  const cleanup = (): void => { for (const s of selected.values()) closeFd(s.fd); };
  try {
    for (const [id, refs] of [...holders].sort((a, b) => a[0] - b[0])) {
      selected.set(id, select(id, refs, true, cfg));
    }
  } catch (e) {
    cleanup();
    throw e;
  }

  // 3. Stream the archive.
  const cpus = possibleCpus();
  const records: MapRecord[] = [];
  const btfWritten = new Map<number, string>();
  const done = new Map<number, { index: number; template: InnerTemplate }>();
  const inProgress = new Set<number>();
  // local-storage maps: their owners are opened only when such a map is dumped
  const owners = opts.pids.length ? new TreeOwners(opts.pids) : undefined;
  let writer;
  try {
    writer = await openArchiveWriter(opts.output, makeHeader({ tool: { name: 'bpfcr', version: toolVersion() }, possibleCpus: cpus }), { overwrite: opts.overwrite ?? false, fsync: opts.fsync ?? false });
  } catch (e) {
    cleanup();
    throw e;
  }
  const w = writer;

  const addBtf = async (id: number): Promise<void> => {
    if (btfWritten.has(id)) return;
    const bfd = btfGetFdById(id);
    try {
      const name = btfMember(id);
      await w.addMember(name, btfRaw(bfd));
      btfWritten.set(id, name);
    } finally {
      closeFd(bfd);
    }
  };

  const dumpOne = async (m: Selected): Promise<{ index: number; template: InnerTemplate }> => {
    const prior = done.get(m.info.id);
    if (prior) return prior;
    if (inProgress.has(m.info.id)) throw new MapError(`${m.label}: map-in-map cycle`);
    inProgress.add(m.info.id);
    const { strategy } = m;
    let record: MapRecord | undefined;
    let chunkNo = 0;
    const begin = async (extra: MetaExtra) => {
      const btf = m.info.btfId ? { id: m.info.btfId, keyTypeId: m.info.btfKeyTypeId, valueTypeId: m.info.btfValueTypeId } : null;
      if (btf) await addBtf(btf.id);
      const meta: MapMeta = {
        index: records.length, id: m.info.id, name: m.info.name, type: m.type.name, typeId: m.type.id,
        keySize: m.info.keySize, valueSize: m.info.valueSize, maxEntries: m.info.maxEntries, flags: m.info.flags,
        mapExtra: m.info.mapExtra.toString(), frozen: isFrozen(m.fd), policy: m.policy, btf,
        layout: strategy.layout, valueStride: m.valueStride,
        ...(extra.innerTemplate ? { innerTemplate: extra.innerTemplate } : {}),
        ...(extra.owners ? { owners: extra.owners } : {}),
        top: m.top, refs: m.refs,
      };
      record = { ...meta, entries: 0, chunks: 0 };
      records.push(record);
      await w.addMember(metaMember(meta.index), Buffer.from(JSON.stringify(meta, null, 1)));
      return {
        write: async (parts: Buffer[]) => {
          await w.addMember(chunkMember(meta.index, chunkNo++), parts);
          record!.chunks = chunkNo;
          opts.progress?.({ map: meta, bytes: parts.reduce((n, b) => n + b.length, 0) });
        },
      };
    };
    const env: DumpEnv = {
      chunkBytes,
      forceIterate: opts.forceIterate ?? false,
      innerMap: async (id, outer) => {
        const known = done.get(id);
        if (known) return known;
        const sel = selected.get(id) ?? select(id, [], false, cfg, `inner map of ${outer.label}`);
        selected.set(id, sel);
        return dumpOne(sel);
      },
      innerTemplate: (outer) => cfg.innerTemplates.get(outer.info.name),
      ...(owners ? { owners } : {}),
    };
    let entries: number;
    try {
      entries = await strategy.dump(m, env, begin);
    } catch (e) {
      // Errors of this map's strategy get its label; those naming a map already (an inner map's,
      // a refusal) pass unchanged.
      if (e instanceof MapError) throw e;
      throw new MapError(`${m.label}: ${(e as Error).message}`, { cause: e });
    }
    if (!record) throw new MapError(`${m.label}: strategy wrote no metadata`);
    (record as MapRecord).entries = entries;
    const r = record as MapRecord;
    const result = {
      index: r.index,
      template: { type: r.typeId, keySize: r.keySize, valueSize: r.valueSize, maxEntries: r.maxEntries, flags: r.flags },
    };
    done.set(m.info.id, result);
    inProgress.delete(m.info.id);
    return result;
  };

  try {
    for (const x of opts.extraMembers ?? []) await w.addMember(x.name, x.data);
    for (const m of [...selected.values()]) if (m.top) await dumpOne(m);
    for (const id of opts.btfIds ?? []) {
      try {
        await addBtf(id);
      } catch (e) {
        throw new Error(`BTF object ${id}: ${(e as Error).message}`);
      }
    }
    await w.finish({ maps: records, btf: [...btfWritten.keys()] });
  } catch (e) {
    await w.abort().catch(() => undefined);
    throw e;
  } finally {
    cleanup();
    owners?.close();
  }
  return { maps: records };
}
