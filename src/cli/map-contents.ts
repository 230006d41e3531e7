/**
 * A map's entries out of any archive bpfcr reads, for `bpfcr show` and `bpfcr diff`: which archive
 * an input names (a bpfcr archive, a CRIU image dir, a podman checkpoint export), reading the maps
 * asked for through the verifying archive reader, and each entry in the two forms bpfcr prints —
 * bpftool's `map dump -j` shape and a line for people.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { HEADER_MEMBER, type ArchiveHeader, type Manifest } from '../archive/format.js';
import { openArchiveReader } from '../archive/reader.js';
import { termSafe } from '../archive/names.js';
import { BtfDecodeError, BtfDumper, hexBytes, hexText, toText, type Formatted } from '../btf/dump.js';
import { ARCHIVE } from '../criu/files.js';
import { checkChunk, validateMeta } from '../engine/validate.js';
import { parseMapMember, type MapMeta, type MapRecord } from '../maps/meta.js';
import { PINS_FILE } from '../oci/checkpoint-pins.js';
import { ownerRecords } from '../maps/strategies/local-storage.js';
import { mapTypeById } from '../maps/types.js';
import { Btf } from '../programs/btf.js';
import { podmanExportParts, withAutoPrefix } from './autoprefix.js';

/** Where a bpfcr before bpfcr.tar put the map archive in an image dir (a directory archive). */
const OLD_ARCHIVE_DIR = 'bpfcr';

export type Part = 'maps' | 'pins';

function isDir(p: string): boolean {
  try { return statSync(p).isDirectory(); } catch { return false; }
}

/**
 * Run `run` on the bpfcr archive INPUT names: INPUT itself; in a CRIU image dir its bpfcr.tar (the
 * maps the checkpointed processes held) or, for part 'pins', its bpfcr-pins.tar (the container's
 * io.bpfcr.pins maps); in a podman checkpoint export the same two, found inside it.
 */
export async function withArchive<T>(input: string, prefix: string | undefined, part: Part, run: (input: string, prefix: string | undefined) => Promise<T>): Promise<T> {
  if (prefix === undefined && input !== '-' && isDir(input) && !existsSync(join(input, HEADER_MEMBER))) {
    const file = part === 'pins' ? PINS_FILE : ARCHIVE;
    if (existsSync(join(input, file))) return run(join(input, file), undefined);
    if (part === 'maps' && existsSync(join(input, OLD_ARCHIVE_DIR, HEADER_MEMBER))) return run(join(input, OLD_ARCHIVE_DIR), undefined);
    throw new Error(`${input}: neither a bpfcr archive nor a CRIU image dir holding ${file}`);
  }
  if (part === 'maps') return withAutoPrefix(input, prefix, (pfx, file) => run(file, pfx));
  if (prefix !== undefined || input === '-') throw new Error('--pins reads a CRIU image dir or a podman checkpoint export, not an archive given by --prefix or stdin');
  const found = await podmanExportParts(input);
  const pins = found?.parts.find((p) => p.what === 'pins');
  try {
    if (!pins) throw new Error(`${input}: no ${PINS_FILE} (the container's io.bpfcr.pins maps) in it`);
    return await run(pins.input, pins.prefix);
  } finally {
    found?.cleanup();
  }
}

/** One element of a map's data, as the archive holds it. */
export interface Entry {
  /** kv, kv-mapref */
  key?: Buffer;
  /** kv (per-CPU: every CPU's slot), values (queue/stack, push order), owners */
  value?: Buffer;
  /** kv-mapref: archive index of the inner map */
  inner?: number;
  /** owners (local storage): whose value it is */
  owner?: string;
}

/** What is known of an archive while it is read: its header, every map's meta so far by archive index, the BTF blobs by id. */
export interface ArchiveSoFar {
  label: string;
  header: ArchiveHeader;
  metas: MapMeta[];
  btf: Map<number, Buffer>;
}

/** Everything but the entries, once the whole archive verified. */
export interface ArchiveMaps extends ArchiveSoFar {
  manifest: Manifest;
}

/**
 * The elements of one data member (its size checked against the layout by checkChunk), read where
 * they lie: nothing is allocated per element until one is asked for, so a map of millions of
 * entries can be held (diff) as its data members.
 */
export class Chunk {
  readonly length: number;
  readonly #records: { ref: string; value: Buffer }[] | undefined;

  constructor(readonly meta: MapMeta, readonly data: Buffer, n: number) {
    this.#records = meta.layout === 'owners' ? ownerRecords(data, meta.valueSize) : undefined;
    this.length = this.#records?.length ?? n;
  }

  /** Element i's key (kv, kv-mapref), else undefined. */
  key(i: number): Buffer | undefined {
    const { layout, keySize } = this.meta;
    return layout === 'kv' || layout === 'kv-mapref' ? this.data.subarray(i * keySize, (i + 1) * keySize) : undefined;
  }

  entry(i: number): Entry {
    const m = this.meta;
    const n = this.length;
    switch (m.layout) {
      case 'kv': return { key: this.key(i)!, value: this.data.subarray(n * m.keySize + i * m.valueStride, n * m.keySize + (i + 1) * m.valueStride) };
      case 'kv-mapref': return { key: this.key(i)!, inner: this.data.readUInt32LE(n * m.keySize + 4 * i) };
      case 'owners': return { owner: this.#records![i]!.ref, value: this.#records![i]!.value };
      default: return { value: this.data.subarray(i * m.valueSize, (i + 1) * m.valueSize) };
    }
  }
}

function parseJson(buf: Buffer, where: string): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (e) {
    // a SyntaxError would read as a bug in bpfcr: it is the archive's
    throw new Error(`${where}: invalid JSON: ${(e as Error).message}`);
  }
}

/**
 * Read an archive, handing `onChunk` the data members of every map `want` accepts (asked with each
 * map's meta as it comes, in archive order: an inner map's before its outer map's), one by one. Data of the other maps is verified but not kept. Everything is checked against the
 * manifest at the end: checksums, and the number of elements of each map read.
 */
export async function readArchiveMaps(
  input: string, prefix: string | undefined, label: string,
  want: (meta: MapMeta) => boolean, onChunk: (chunk: Chunk, sofar: ArchiveSoFar) => void | Promise<void>,
): Promise<ArchiveMaps> {
  const skip = new Set<number>();
  const r = await openArchiveReader(input, {
    ...(prefix !== undefined ? { prefix } : {}), label,
    // BPF objects, OCI pin records: verified, never read
    known: (name) => {
      if (name.startsWith('btf/')) return true;
      const p = parseMapMember(name);
      return p !== undefined && !(p.chunk !== undefined && skip.has(p.index));
    },
  });
  try {
    const metas: MapMeta[] = [];
    const btf = new Map<number, Buffer>();
    const known: ArchiveSoFar = { label, header: r.header, metas, btf };
    const counted = new Map<number, number>();
    for await (const m of r.members()) {
      const b = /^btf\/(\d+)\.btf$/.exec(m.name);
      if (b) {
        btf.set(Number(b[1]), await m.read());
        continue;
      }
      const p = parseMapMember(m.name);
      if (!p) continue;
      const where = `${label}: member ${m.name}`;
      if (p.chunk === undefined) {
        if (p.index !== metas.length) throw new Error(`${where}: out of order (expected map ${metas.length})`);
        const meta = validateMeta(parseJson(await m.read(), where), where, p.index, r.header.possibleCpus);
        metas.push(meta);
        if (want(meta)) counted.set(meta.index, 0);
        else skip.add(meta.index);
        continue;
      }
      const meta = metas[p.index];
      if (!meta) throw new Error(`${where}: out of order (map ${p.index} has no meta.json before it)`);
      const have = counted.get(p.index);
      if (have === undefined) continue;
      const data = await m.read();
      let chunk: Chunk;
      try {
        chunk = new Chunk(meta, data, checkChunk(meta, m.name, data.length, have));
      } catch (e) {
        throw new Error(`${label}: ${(e as Error).message}`);
      }
      counted.set(p.index, have + chunk.length);
      await onChunk(chunk, known);
    }
    const manifest = await r.finish();
    const records = (Array.isArray(manifest['maps']) ? manifest['maps'] : []) as MapRecord[];
    for (const [index, n] of counted) {
      const rec = records[index];
      if (!rec || rec.entries !== n) throw new Error(`${label}: map ${index} ${metas[index]!.name}: the manifest says ${rec ? rec.entries : 'nothing'} entries, the archive holds ${n}`);
    }
    return { ...known, manifest };
  } finally {
    await r.close();
  }
}

/**
 * How one map's entries print: bpftool's JSON shape and a line for people, keys and values
 * decoded by the map's BTF when the archive carries it.
 */
export class MapView {
  readonly percpu: boolean;
  readonly cpus: number;
  /** why the BTF the map names is not used (missing, malformed, sizes disagree), for one warning */
  btfProblem: string | undefined;
  #dumper: BtfDumper | undefined;

  constructor(readonly meta: MapMeta, private readonly archive: ArchiveSoFar) {
    this.percpu = mapTypeById(meta.typeId).percpu;
    this.cpus = archive.header.possibleCpus;
    let dumper: BtfDumper | undefined;
    let problem: string | undefined;
    const b = meta.btf;
    if (b && b.valueTypeId) {
      const blob = archive.btf.get(b.id);
      try {
        if (!blob) throw new Error('the archive does not carry it');
        dumper = new BtfDumper(new Btf(blob));
        if (b.keyTypeId && dumper.size(b.keyTypeId) !== meta.keySize) throw new Error(`key type ${b.keyTypeId} is not ${meta.keySize} bytes`);
        if (dumper.size(b.valueTypeId) !== meta.valueSize) throw new Error(`value type ${b.valueTypeId} is not ${meta.valueSize} bytes`);
      } catch (e) {
        dumper = undefined;
        problem = `btf/${b.id}.btf: ${(e as Error).message}`;
      }
    }
    this.#dumper = dumper;
    this.btfProblem = problem;
  }

  get hasBtf(): boolean {
    return this.#dumper !== undefined;
  }

  /** Per-CPU values: each CPU's value_size bytes (slots are rounded up to 8). */
  cpuValues(value: Buffer): Buffer[] {
    const slot = Math.ceil(this.meta.valueSize / 8) * 8;
    return Array.from({ length: this.cpus }, (_, i) => value.subarray(i * slot, i * slot + this.meta.valueSize));
  }

  /** Decoded key: undefined without BTF or a key type. */
  key(key: Buffer): Formatted | undefined {
    return this.#format(this.meta.btf?.keyTypeId, key);
  }

  /** Decoded value (one CPU's, for per-CPU maps): undefined without BTF. */
  value(value: Buffer): Formatted | undefined {
    return this.#format(this.meta.btf?.valueTypeId, value);
  }

  /**
   * Bytes the type cannot describe (hostile or damaged BTF) turn the BTF off for the rest of the
   * map, saying why once (btfProblem): the bytes are still shown, as hex.
   */
  #format(id: number | undefined, b: Buffer): Formatted | undefined {
    if (!this.#dumper || !id) return undefined;
    try {
      return this.#dumper.format(id, b);
    } catch (e) {
      if (!(e instanceof BtfDecodeError)) throw e;
      this.#dumper = undefined;
      this.btfProblem = `btf/${this.meta.btf!.id}.btf: ${e.message}`;
      return undefined;
    }
  }

  inner(index: number): MapMeta | undefined {
    return this.archive.metas[index];
  }

  /** The entry as `bpftool map dump -j` prints one (plus, for map-in-map, the inner map's name and index). */
  json(e: Entry): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    if (e.owner !== undefined) out['owner'] = e.owner;
    if (e.key) out['key'] = hexBytes(e.key);
    if (e.inner !== undefined) {
      // the value bpftool shows is the inner map's id: the one it had at dump time
      const m = this.inner(e.inner);
      const id = Buffer.alloc(4);
      id.writeUInt32LE(m?.id ?? 0);
      out['value'] = hexBytes(id);
      out['inner_map_id'] = m?.id ?? null;
      out['inner_map_name'] = m?.name ?? null;
      out['inner_map_index'] = e.inner;
      return out;
    }
    const value = e.value!;
    if (this.percpu) out['values'] = this.cpuValues(value).map((v, cpu) => ({ cpu, value: hexBytes(v) }));
    else out['value'] = hexBytes(value);
    if (this.hasBtf) {
      const f: Record<string, unknown> = {};
      if (e.key && this.meta.btf!.keyTypeId) f['key'] = this.key(e.key);
      if (this.percpu) f['values'] = this.cpuValues(value).map((v, cpu) => ({ cpu, value: this.value(v) }));
      else f['value'] = this.value(value);
      if (this.hasBtf) out['formatted'] = f; // still: no decoding failed on the way
    }
    return out;
  }

  /** The entry for people: one line, or a line per CPU; every archive-controlled string escaped. */
  text(e: Entry): string[] {
    const show = (b: Buffer, f: Formatted | undefined): string => termSafe(f === undefined ? hexText(b) : toText(f));
    const head = e.owner !== undefined ? `owner: ${termSafe(e.owner)}` : e.key ? `key: ${show(e.key, this.key(e.key))}` : '';
    if (e.inner !== undefined) {
      const m = this.inner(e.inner);
      return [`${head}  inner map: ${m ? `${m.name ? termSafe(m.name) : '-'} (map ${e.inner}, id ${m.id})` : `map ${e.inner} (missing)`}`];
    }
    const value = e.value!;
    if (this.percpu) return [head, ...this.cpuValues(value).map((v, cpu) => `  cpu ${cpu}: ${show(v, this.value(v))}`)];
    return [`${head ? `${head}  ` : ''}value: ${show(value, this.value(value))}`];
  }
}

/** "map 3 'flows' (hash, key 4 B, value 8 B)": a map in messages and headings, escaped. */
export function mapTitle(m: Pick<MapMeta, 'index' | 'name' | 'type'>): string {
  return `map ${m.index} ${m.name ? `'${termSafe(m.name)}'` : '(unnamed)'} (${termSafe(m.type)})`;
}
