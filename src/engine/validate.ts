/**
 * An archive is untrusted input (it may come from another host, or be written by an attacker who
 * recomputed every checksum): every field of a map's meta.json is checked before it reaches bpf(2)
 * or a path, and every map the manifest describes is checked against everything else — its data
 * members, its BTF, its inner-map template, the memory budget — before the first map is created
 * (planRestore).
 */
import { deepEqual, MANIFEST_MEMBER, type Manifest } from '../archive/format.js';
import { btfMember, chunkMember, mapLabel, metaMember, parseMapMember, type MapMeta, type MapRecord } from '../maps/meta.js';
import { mapTypeById } from '../maps/types.js';
import { LAYOUTS, strategyFor, strategyForLayout } from '../maps/strategies/index.js';
import { MAX_REF } from '../maps/strategies/local-storage.js';
import { OWNER_KINDS, type OwnerKind } from '../maps/owners.js';
import { BTF_MAX_SIZE, btfKernelBytes, mapKernelBytes, Tally } from './budget.js';

const NAME_RE = /^[A-Za-z0-9_.]{0,15}$/;
/** Largest value stride the chunk arithmetic accepts (a per-CPU value of 32 KiB × 2048 CPUs). */
const MAX_STRIDE = 1 << 26;

function u32(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A map's meta.json (or its manifest record), checked field by field and against the rules that
 * tie the fields together. `where` names it in messages; `archiveCpus`: the possible-CPU count the
 * archive's header records (per-CPU value strides).
 */
export function validateMeta(raw: unknown, where: string, expectedIndex: number, archiveCpus: number): MapMeta {
  const bad = (what: string): never => { throw new Error(`${where}: invalid ${what}`); };
  if (!isObject(raw)) bad('JSON (not an object)');
  const m = raw as Record<string, unknown>;
  if (m['index'] !== expectedIndex) bad(`index ${String(m['index'])} (expected ${expectedIndex})`);
  for (const k of ['id', 'typeId', 'keySize', 'valueSize', 'maxEntries', 'flags', 'valueStride']) if (!u32(m[k])) bad(k);
  if (typeof m['name'] !== 'string' || !NAME_RE.test(m['name'])) bad(`name ${JSON.stringify(m['name'])}`);
  const t = mapTypeById(m['typeId'] as number);
  if (t.recreatable === false) bad(`type ${t.name}: it cannot be recreated`);
  if (m['type'] !== t.name) bad(`type ${JSON.stringify(m['type'])} for typeId ${String(m['typeId'])}`);
  if (typeof m['mapExtra'] !== 'string' || !/^\d{1,20}$/.test(m['mapExtra']) || BigInt(m['mapExtra']) >= 1n << 64n) bad('mapExtra');
  if (typeof m['frozen'] !== 'boolean' || typeof m['top'] !== 'boolean') bad('frozen/top');
  if (m['policy'] !== 'content' && m['policy'] !== 'empty') bad('policy');
  if (m['policy'] === 'content' && t.family === 'metadata-only') bad(`policy content for ${t.name.toUpperCase()}: ${t.why}`);
  const strategy = typeof m['layout'] === 'string' ? strategyForLayout(m['layout']) : undefined;
  if (!strategy) bad(`layout (not one of ${LAYOUTS.join(', ')})`);
  // The layout is the one its type and policy call for: another strategy would hand the kernel
  // values of another size than the map's (e.g. 4-byte inner-map refs to a per-CPU map, which
  // reads value_size × CPUs bytes from bpfcr's memory into the map).
  const want = strategyFor(t.family, m['policy'] as 'content' | 'empty').layout;
  if (m['layout'] !== want) bad(`layout ${String(m['layout'])} for a ${t.name.toUpperCase()} map with policy ${String(m['policy'])} (expected ${want})`);
  if (m['btf'] !== null) {
    const b = m['btf'];
    if (!isObject(b) || !u32(b['id']) || !u32(b['keyTypeId']) || !u32(b['valueTypeId'])) bad('btf');
  }
  if (t.family === 'map-in-map') {
    const it = m['innerTemplate'];
    if (!isObject(it) || !['type', 'keySize', 'valueSize', 'maxEntries', 'flags'].every((k) => u32(it[k]))) bad('innerTemplate');
    const inner = mapTypeById((it as Record<string, number>)['type']!);
    // the kernel takes no map-in-map as inner map; an unknown type is not ours to create
    if (inner.recreatable === false || inner.family === 'map-in-map') bad(`innerTemplate type ${inner.name}`);
  } else if (m['innerTemplate'] !== undefined) bad(`innerTemplate (a ${t.name.toUpperCase()} map has none)`);
  // The stride the layout's strategy computes for the dumping host: a meta.json that disagrees
  // would have its data members cut at the wrong places.
  const stride = m['valueStride'] as number;
  if (stride !== strategy!.valueStride(t, m['valueSize'] as number, archiveCpus) || stride > MAX_STRIDE) bad('valueStride');
  if (!Array.isArray(m['refs'])) bad('refs');
  // local storage: what inspect prints of its owners (kinds by name, counts as numbers, text bounded)
  const o = m['owners'] as Record<string, unknown> | undefined;
  if (o !== undefined && (m['layout'] !== 'owners' || typeof o !== 'object' || o === null || !OWNER_KINDS.includes(o['kind'] as OwnerKind) ||
      !u32(o['carried']) || (o['leftBehind'] !== undefined && !u32(o['leftBehind'])) ||
      (o['leftBehindWhy'] !== undefined && (typeof o['leftBehindWhy'] !== 'string' || o['leftBehindWhy'].length > 512)))) bad('owners');
  return m as unknown as MapMeta;
}

/**
 * Bytes of one element in a data member of this map (0: it has no data members; -1: its elements
 * vary in size, see ownerRecordBytes).
 */
export function elementSize(meta: MapMeta): number {
  switch (meta.layout) {
    case 'owners': return -1;
    case 'kv': return meta.keySize + meta.valueStride;
    case 'values': return meta.valueSize;
    case 'kv-mapref': return meta.keySize + 4;
    default: return 0;
  }
}

/** Bytes of one local-storage record (u16 reference length, reference, value): at least and at most. */
export function ownerRecordBytes(meta: MapMeta): { min: number; max: number } {
  return { min: 2 + 1 + meta.valueSize, max: 2 + MAX_REF + meta.valueSize };
}

/**
 * A data member of `meta` holding `size` bytes, after `sofar` elements: whole elements, at least
 * one, and no more in all than the map can hold. Returns the elements it holds (-1: counted by the
 * strategy, for local-storage records).
 */
export function checkChunk(meta: MapMeta, member: string, size: number, sofar: number): number {
  const elem = elementSize(meta);
  const label = `${mapLabel(meta)}: member ${member}`;
  if (elem < 0) {
    // local storage: records of an owner reference and a value; the strategy counts them
    if (size < ownerRecordBytes(meta).min) throw new Error(`${label}: data size ${size} is smaller than one record`);
    return -1;
  }
  if (elem === 0) throw new Error(`${label}: the map has layout ${meta.layout}, which has no data members`);
  if (size === 0 || size % elem !== 0) throw new Error(`${label}: data size ${size} is not a positive multiple of the element size ${elem}`);
  const n = size / elem;
  if (sofar + n > meta.maxEntries) throw new Error(`${label}: holds more elements (${sofar + n}) than the map's max_entries ${meta.maxEntries}`);
  return n;
}

/** What the manifest says a restore will take: every map checked, and its estimated cost. */
export interface RestorePlan {
  /** The manifest's map records, in index order. */
  records: readonly MapRecord[];
  /** BTF ids the maps use: other btf/ members are verified but not loaded. */
  btfIds: ReadonlySet<number>;
  /** Estimated kernel memory of the maps, their templates and BTF objects. */
  kernel: Tally;
  /** Estimated memory bpfcr holds at once: the largest member it reads (+ re-layout) and the manifest. */
  host: Tally;
}

/** The meta.json a record was written from (the record is it plus entries and chunks). */
export function metaOfRecord(r: MapRecord): MapMeta {
  const { entries: _e, chunks: _c, ...meta } = r;
  return meta;
}

/**
 * Check every map record of the manifest against the others and against the members the manifest
 * lists, and estimate what restoring them costs (src/engine/budget.ts). `remap(meta)`: the size of
 * the map's data re-laid for this host's CPU count, per byte read (0 when it is used as it is).
 */
export function planRestore(manifest: Manifest, archiveCpus: number, localCpus: number, remap: (meta: MapMeta) => number): RestorePlan {
  const where = (i: number): string => `${MANIFEST_MEMBER}: maps[${i}]`;
  const bad = (msg: string): never => { throw new Error(`${MANIFEST_MEMBER}: ${msg}`); };
  const records = manifest['maps'];
  if (!Array.isArray(records)) return bad('maps is not an array');
  const sizes = new Map(manifest.members.map((d) => [d.name, d.size]));
  const kernel = new Tally();
  const host = new Tally();
  const btfIds = new Set<number>();
  const listedMaps = new Set<number>();
  for (const d of manifest.members) {
    const which = parseMapMember(d.name);
    if (which) listedMaps.add(which.index);
  }
  records.forEach((raw: unknown, i) => {
    const meta = validateMeta(raw, where(i), i, archiveCpus);
    const r = raw as MapRecord;
    const label = `${where(i)} (${mapLabel(meta)})`;
    if (!u32(r.entries) || !u32(r.chunks)) bad(`maps[${i}]: invalid entries/chunks`);
    if (!sizes.has(metaMember(i))) bad(`maps[${i}]: its ${metaMember(i)} is not listed`);
    host.max(`member ${metaMember(i)}`, sizes.get(metaMember(i))!);
    const elem = elementSize(meta);
    const rec = elem < 0 ? ownerRecordBytes(meta) : undefined;
    if (elem === 0 && (r.entries !== 0 || r.chunks !== 0)) throw new Error(`${label}: layout ${meta.layout} holds no data, but ${r.entries} entries in ${r.chunks} chunks are recorded`);
    let bytes = 0;
    for (let c = 0; c < r.chunks; c++) {
      const size = sizes.get(chunkMember(i, c));
      if (size === undefined) throw new Error(`${label}: its chunk ${chunkMember(i, c)} is not listed`);
      if (rec ? size < rec.min : size === 0 || size % elem !== 0) throw new Error(`${label}: member ${chunkMember(i, c)}: data size ${size} is not ${rec ? 'one record or more' : `a positive multiple of the element size ${elem}`}`);
      bytes += size;
      const relaid = remap(meta);
      host.max(`member ${chunkMember(i, c)}${relaid ? ' with its per-CPU values re-laid' : ''}`, size * (1 + relaid));
    }
    if (sizes.has(chunkMember(i, r.chunks))) throw new Error(`${label}: ${chunkMember(i, r.chunks)} is listed beyond its ${r.chunks} chunks`);
    if (rec ? bytes < r.entries * rec.min || bytes > r.entries * rec.max : elem !== 0 && bytes !== r.entries * elem) throw new Error(`${label}: ${r.entries} entries${rec ? '' : ` of ${elem} bytes`} do not match its data members (${bytes} bytes)`);
    // a local-storage map has no max_entries (0): one entry per owner
    if (!rec && r.entries > meta.maxEntries) throw new Error(`${label}: ${r.entries} entries, more than its max_entries ${meta.maxEntries}`);
    // an array's every element exists: its dump carries all of them, so its memory is paid for in data
    if (mapTypeById(meta.typeId).dense && meta.policy === 'content' && r.entries !== meta.maxEntries)
      throw new Error(`${label}: an array's dump holds all its ${meta.maxEntries} elements, the archive has ${r.entries}`);
    if (meta.btf) {
      const size = sizes.get(btfMember(meta.btf.id));
      if (size === undefined) throw new Error(`${label}: its BTF ${btfMember(meta.btf.id)} is not listed`);
      if (size > BTF_MAX_SIZE) throw new Error(`${label}: its BTF ${btfMember(meta.btf.id)} is ${size} bytes, more than the kernel accepts (${BTF_MAX_SIZE})`);
      if (!btfIds.has(meta.btf.id)) kernel.add(`BTF ${btfMember(meta.btf.id)}`, btfKernelBytes(size));
      host.max(`member ${btfMember(meta.btf.id)}`, size);
      btfIds.add(meta.btf.id);
    }
    kernel.add(mapLabel(meta), mapKernelBytes(meta, localCpus));
    if (meta.innerTemplate) {
      const t = meta.innerTemplate;
      kernel.add(`the inner-map template of ${mapLabel(meta)}`, mapKernelBytes({ typeId: t.type, keySize: t.keySize, valueSize: t.valueSize, maxEntries: t.maxEntries }, localCpus));
    }
  });
  for (const index of listedMaps) if (index >= records.length) bad(`lists members of map ${index}, but records only ${records.length} map(s)`);
  const manifestSize = Buffer.byteLength(JSON.stringify(manifest));
  host.total += manifestSize;
  return { records: records as MapRecord[], btfIds, kernel, host };
}

/** meta.json of map `index` is the very record the manifest has for it (plans are made from those). */
export function checkAgainstRecord(meta: MapMeta, plan: RestorePlan, member: string): void {
  const r = plan.records[meta.index];
  if (!r || !deepEqual(meta, metaOfRecord(r))) throw new Error(`member ${member}: differs from its record in ${MANIFEST_MEMBER} (maps[${meta.index}])`);
}
