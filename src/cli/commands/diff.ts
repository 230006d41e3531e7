import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { termSafe } from '../../archive/names.js';
import { toJson } from '../../btf/dump.js';
import { debugStack, failureLine } from '../../failure.js';
import type { MapMeta } from '../../maps/meta.js';
import { type Command, intList, parse, UsageError } from '../command.js';
import { MapView, mapTitle, readArchiveMaps, withArchive, type ArchiveMaps, type Chunk, type Entry, type Part } from '../map-contents.js';

/** Entry lines printed per kind (added/removed/changed) and map without --json. */
const DEFAULT_MAX_LINES = 10;

export const diffCommand: Command = {
  name: 'diff',
  summary: 'compare the maps of two archives, or of an archive and live processes',
  usage: `Usage: bpfcr diff A B [--json] [--max-lines N]
       bpfcr diff A --pid PID… [--json] [--config FILE]

Compare map by map: maps are paired by name (when the name is unique on both
sides), the rest by archive index. For each pair: metadata differences (type,
sizes, max_entries, flags, frozen, policy, BTF, inner-map template, per-CPU
count) and, when the two can be compared, entries added (in B, not A), removed
(in A, not B) and changed (same key, other value). Keys and values are decoded
by BTF where the archive carries it. QUEUE/STACK maps compare as sequences
(values popped at the front of a queue or the end of a stack are removed, values
pushed are added), map-in-map values by the name of the inner map, local storage
by owner.
With --pid, B is the maps the processes hold now (dumped into a temporary
archive exactly as 'bpfcr dump' would, then removed).

Arguments:
  A, B                 archives, CRIU image directories or podman checkpoint
                       exports (as 'bpfcr show' reads them)
Options:
      --pid PID        B is the live maps of these processes (repeatable)
      --config FILE    config for the live dump (policies; default /etc/bpfcr/config.yaml)
      --pins           compare the io.bpfcr.pins maps of CRIU checkpoints
      --json           machine-readable result (docs/cli-json.md)
      --max-lines N    entries listed per kind and map (default ${DEFAULT_MAX_LINES}; --json lists all)
  -h, --help           show this help

Exit status: 0 the maps are the same, 1 they differ, 2 usage or error (an archive
that fails verification, a process that cannot be dumped).`,

  async run(argv) {
    const p = parse(this, argv, {
      json: { type: 'boolean' }, pid: { type: 'string', multiple: true }, config: { type: 'string' },
      pins: { type: 'boolean' }, 'max-lines': { type: 'string' },
    });
    if (!p) return 0;
    const pids = intList('--pid', p.values.pid);
    const [a, b, ...extra] = p.positionals;
    if (!a) throw new UsageError('diff needs two archives, or an archive and --pid PID');
    if (pids.length ? b !== undefined : b === undefined) throw new UsageError(pids.length ? 'with --pid, give one archive' : 'diff needs two archives, or an archive and --pid PID');
    if (extra.length) throw new UsageError(`unexpected argument: ${extra[0]}`);
    const maxLines = p.values['max-lines'] === undefined ? DEFAULT_MAX_LINES : Number(p.values['max-lines']);
    if (!Number.isInteger(maxLines) || maxLines < 0) throw new UsageError(`--max-lines: not a count: ${p.values['max-lines']}`);
    const part: Part = p.values.pins ? 'pins' : 'maps';
    // exit 1 means "they differ": a failure must not look like that
    try {
      const left = await load(a, part);
      const right = pids.length ? await loadLive(pids, p.values.config) : await load(b!, part);
      const result = compare(left, right);
      process.stdout.write(p.values.json ? toJson(diffJson(result)) + '\n' : render(result, maxLines));
      return result.same ? 0 : 1;
    } catch (e) {
      process.stderr.write(failureLine('bpfcr diff', e) + '\n' + (debugStack(e) ?? ''));
      return 2;
    }
  },
};

interface Side { label: string; archive: ArchiveMaps; chunks: Map<number, Chunk[]> }

async function load(input: string, part: Part, label = input === '-' ? '<stdin>' : input): Promise<Side> {
  const chunks = new Map<number, Chunk[]>();
  const archive = await withArchive(input, undefined, part, (file, prefix) => readArchiveMaps(file, prefix, label, () => true, (chunk) => {
    let list = chunks.get(chunk.meta.index);
    if (!list) chunks.set(chunk.meta.index, (list = []));
    list.push(chunk);
  }));
  return { label, archive, chunks };
}

/** Every element of a map, as objects: for QUEUE/STACK maps (small), compared as sequences. */
function allEntries(chunks: Chunk[]): Entry[] {
  return chunks.flatMap((c) => Array.from({ length: c.length }, (_, i) => c.entry(i)));
}

const count = (chunks: Chunk[]): number => chunks.reduce((n, c) => n + c.length, 0);

/** The live maps of `pids`: dumped the way `bpfcr dump` does into a private temporary archive, read back. */
async function loadLive(pids: number[], config: string | undefined): Promise<Side> {
  const [{ dump }, { loadConfig }] = await Promise.all([import('../../engine/dump.js'), import('../../config/config.js')]);
  const dir = mkdtempSync(join(tmpdir(), 'bpfcr-diff-'));
  try {
    const out = join(dir, 'live.tar');
    await dump({ pids, mapIds: [], output: out, config: await loadConfig(config) });
    const side = await load(out, 'maps', `pid ${pids.join(',')} (live)`);
    return side;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface MetaDiff { field: string; a: unknown; b: unknown }

export interface MapDiff {
  name: string;
  status: 'same' | 'changed' | 'only-a' | 'only-b';
  a?: { index: number; type: string; entries: number };
  b?: { index: number; type: string; entries: number };
  metadata: MetaDiff[];
  /** why entries were not compared (types or sizes differ) */
  entriesNotCompared?: string;
  counts: { added: number; removed: number; changed: number; same: number };
  added: Record<string, unknown>[];
  removed: Record<string, unknown>[];
  changed: { a: Record<string, unknown>; b: Record<string, unknown> }[];
  /** for the human form: the same entries as lines */
  lines?: { added: string[][]; removed: string[][]; changed: [string[], string[]][] };
}

export interface DiffResult { a: string; b: string; same: boolean; maps: MapDiff[] }

/** Pairs of maps: by name where it is unique on both sides, then by index among the rest. */
function pairMaps(a: MapMeta[], b: MapMeta[]): [MapMeta | undefined, MapMeta | undefined][] {
  const unique = (ms: MapMeta[]): Map<string, MapMeta> => {
    const count = new Map<string, number>();
    for (const m of ms) count.set(m.name, (count.get(m.name) ?? 0) + 1);
    return new Map(ms.filter((m) => m.name && count.get(m.name) === 1).map((m) => [m.name, m]));
  };
  const ua = unique(a);
  const ub = unique(b);
  const pairs: [MapMeta | undefined, MapMeta | undefined][] = [];
  const usedB = new Set<number>();
  const pairedA = new Set<number>();
  for (const [name, ma] of ua) {
    const mb = ub.get(name);
    if (!mb) continue;
    pairs.push([ma, mb]);
    pairedA.add(ma.index);
    usedB.add(mb.index);
  }
  const restB = new Map(b.filter((m) => !usedB.has(m.index)).map((m) => [m.index, m]));
  for (const ma of a) {
    if (pairedA.has(ma.index)) continue;
    const mb = restB.get(ma.index);
    // a name both sides have but that is not unique pairs by index only with the same name
    if (mb && (mb.name === ma.name || !ub.has(ma.name) || !ua.has(mb.name))) {
      restB.delete(ma.index);
      pairs.push([ma, mb]);
    } else {
      pairs.push([ma, undefined]);
    }
  }
  for (const mb of restB.values()) pairs.push([undefined, mb]);
  return pairs.sort((x, y) => (x[0]?.index ?? 1e9) - (y[0]?.index ?? 1e9) || (x[1]?.index ?? 1e9) - (y[1]?.index ?? 1e9));
}

function sha(b: Buffer | undefined): string | undefined {
  return b && createHash('sha256').update(b).digest('hex');
}

/** What differs in two maps' descriptions (ids are per boot: never compared). */
function metaDiff(a: MapMeta, b: MapMeta, sa: Side, sb: Side, va: MapView, vb: MapView): MetaDiff[] {
  const out: MetaDiff[] = [];
  const field = (name: string, x: unknown, y: unknown): void => {
    if (JSON.stringify(x) !== JSON.stringify(y)) out.push({ field: name, a: x, b: y });
  };
  for (const k of ['type', 'keySize', 'valueSize', 'maxEntries', 'flags', 'mapExtra', 'frozen', 'policy', 'top', 'innerTemplate'] as const) field(k, a[k] ?? null, b[k] ?? null);
  if (va.percpu || vb.percpu) field('possibleCpus', va.cpus, vb.cpus);
  // BTF: the same types, whatever id the kernel gave the object on each side
  const btf = (m: MapMeta, s: Side): unknown => (m.btf ? { keyTypeId: m.btf.keyTypeId, valueTypeId: m.btf.valueTypeId, sha256: sha(s.archive.btf.get(m.btf.id)) ?? null } : null);
  field('btf', btf(a, sa), btf(b, sb));
  return out;
}

/** Element i's identity within its map: its key bytes (one char a byte: half the memory of hex) or its owner. */
function identity(c: Chunk, i: number): string {
  return c.key(i)?.toString('latin1') ?? `owner:${c.entry(i).owner}`;
}

function sameEntry(ea: Entry, eb: Entry, va: MapView, vb: MapView): boolean {
  if (ea.inner !== undefined || eb.inner !== undefined) {
    // inner maps by name: archive indexes and ids differ from one archive to the next
    return va.inner(ea.inner!)?.name === vb.inner(eb.inner!)?.name;
  }
  if (va.percpu && va.cpus !== vb.cpus) {
    const x = va.cpuValues(ea.value!);
    const y = vb.cpuValues(eb.value!);
    return x.length === y.length && x.every((v, i) => v.equals(y[i]!));
  }
  return ea.value!.equals(eb.value!);
}

/**
 * A queue pops at the front and pushes at the back: the longest run of values at the end of `a`
 * that starts `b` (the values still queued). Knuth–Morris–Pratt over the values, so a long queue
 * costs linear time.
 */
function queueOverlap(a: Entry[], b: Entry[]): number {
  const seq = [...b.map((e) => e.value!.toString('hex')), '', ...a.map((e) => e.value!.toString('hex'))];
  const pi = new Array<number>(seq.length).fill(0);
  for (let i = 1; i < seq.length; i++) {
    let k = pi[i - 1]!;
    while (k > 0 && seq[i] !== seq[k]) k = pi[k - 1]!;
    if (seq[i] === seq[k]) k++;
    pi[i] = k;
  }
  return a.length ? pi[seq.length - 1]! : 0;
}

/** A stack pops and pushes at its end: the values both start with. */
function stackOverlap(a: Entry[], b: Entry[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n]!.value!.equals(b[n]!.value!)) n++;
  return n;
}

/** QUEUE/STACK entries carry their position (0 = oldest) into the JSON. */
function entryJson(v: MapView, e: Entry, i: number): Record<string, unknown> {
  return { position: i, ...v.json(e) };
}

function compareMaps(ma: MapMeta | undefined, mb: MapMeta | undefined, sa: Side, sb: Side): MapDiff {
  const ca = ma ? sa.chunks.get(ma.index) ?? [] : [];
  const cb = mb ? sb.chunks.get(mb.index) ?? [] : [];
  const d: MapDiff = {
    name: (ma ?? mb)!.name,
    status: 'same',
    ...(ma ? { a: { index: ma.index, type: ma.type, entries: count(ca) } } : {}),
    ...(mb ? { b: { index: mb.index, type: mb.type, entries: count(cb) } } : {}),
    metadata: [], counts: { added: 0, removed: 0, changed: 0, same: 0 }, added: [], removed: [], changed: [],
    lines: { added: [], removed: [], changed: [] },
  };
  if (!ma || !mb) {
    d.status = ma ? 'only-a' : 'only-b';
    return d;
  }
  const va = new MapView(ma, sa.archive);
  const vb = new MapView(mb, sb.archive);
  d.metadata = metaDiff(ma, mb, sa, sb, va, vb);
  if (ma.layout !== mb.layout || ma.keySize !== mb.keySize || ma.valueSize !== mb.valueSize) {
    d.entriesNotCompared = 'layout, key or value sizes differ';
  } else if (ma.layout === 'values') {
    // QUEUE/STACK (push order, oldest first) change only at their ends: what a's values have in
    // common with b's, the rest popped (removed) and pushed (added)
    const ea = allEntries(ca);
    const eb = allEntries(cb);
    const [kept, fromA] = ma.type === 'queue' ? [queueOverlap(ea, eb), ea.length - queueOverlap(ea, eb)] : [stackOverlap(ea, eb), 0];
    const removed = ma.type === 'queue' ? ea.slice(0, fromA) : ea.slice(kept);
    const added = eb.slice(kept);
    d.counts.same = kept;
    d.counts.removed = removed.length;
    d.counts.added = added.length;
    removed.forEach((e, i) => { d.removed.push(entryJson(va, e, (ma.type === 'queue' ? 0 : kept) + i)); d.lines!.removed.push(va.text(e)); });
    added.forEach((e, i) => { d.added.push(entryJson(vb, e, kept + i)); d.lines!.added.push(vb.text(e)); });
  } else {
    // a's elements by identity (chunk and position packed in one number: no object per element);
    // each one b has too is taken out, what stays was removed
    const inA = new Map<string, number>();
    ca.forEach((c, ci) => { for (let i = 0; i < c.length; i++) inA.set(identity(c, i), ci * 2 ** 32 + i); });
    const at = (p: number): Entry => ca[Math.floor(p / 2 ** 32)]!.entry(p % 2 ** 32);
    for (const c of cb) {
      for (let i = 0; i < c.length; i++) {
        const id = identity(c, i);
        const p = inA.get(id);
        const e = c.entry(i);
        if (p === undefined) {
          d.counts.added++;
          d.added.push(vb.json(e));
          d.lines!.added.push(vb.text(e));
          continue;
        }
        inA.delete(id);
        const x = at(p);
        if (sameEntry(x, e, va, vb)) {
          d.counts.same++;
        } else {
          d.counts.changed++;
          d.changed.push({ a: va.json(x), b: vb.json(e) });
          d.lines!.changed.push([va.text(x), vb.text(e)]);
        }
      }
    }
    for (const p of inA.values()) {
      const x = at(p);
      d.counts.removed++;
      d.removed.push(va.json(x));
      d.lines!.removed.push(va.text(x));
    }
  }
  const c = d.counts;
  if (d.metadata.length || c.added || c.removed || c.changed || d.entriesNotCompared) d.status = 'changed';
  return d;
}

export function compare(a: Side, b: Side): DiffResult {
  const maps = pairMaps(a.archive.metas, b.archive.metas).map(([ma, mb]) => compareMaps(ma, mb, a, b));
  return { a: a.label, b: b.label, same: maps.every((m) => m.status === 'same'), maps };
}

function render(r: DiffResult, maxLines: number): string {
  const out: string[] = [`--- a: ${termSafe(r.a)}`, `+++ b: ${termSafe(r.b)}`];
  const list = (sign: string, items: string[][]): void => {
    for (const lines of items.slice(0, maxLines)) out.push(...lines.map((l, i) => `  ${i ? ' ' : sign} ${l}`));
    if (items.length > maxLines) out.push(`  … ${items.length - maxLines} more (--max-lines, or --json for all)`);
  };
  for (const m of r.maps) {
    const title = mapTitle({ index: (m.a ?? m.b)!.index, name: m.name, type: (m.a ?? m.b)!.type });
    if (m.status === 'same') continue;
    if (m.status === 'only-a') { out.push(`${title}: only in a (${m.a!.entries} entries)`); continue; }
    if (m.status === 'only-b') { out.push(`${title}: only in b (${m.b!.entries} entries)`); continue; }
    const c = m.counts;
    const idx = m.a!.index === m.b!.index ? '' : ` (index ${m.a!.index} in a, ${m.b!.index} in b)`;
    out.push(`${title}${idx}: ${m.entriesNotCompared ? `entries not compared: ${m.entriesNotCompared}` : `${c.added} added, ${c.removed} removed, ${c.changed} changed, ${c.same} same`}`);
    for (const x of m.metadata) out.push(`  metadata ${x.field}: ${termSafe(toJson(x.a))} → ${termSafe(toJson(x.b))}`);
    list('+', m.lines!.added);
    list('-', m.lines!.removed);
    for (const [x, y] of m.lines!.changed.slice(0, maxLines)) {
      out.push(...x.map((l, i) => `  ${i ? ' ' : '<'} ${l}`), ...y.map((l, i) => `  ${i ? ' ' : '>'} ${l}`));
    }
    if (m.lines!.changed.length > maxLines) out.push(`  … ${m.lines!.changed.length - maxLines} more changed (--max-lines, or --json for all)`);
  }
  const differ = r.maps.filter((m) => m.status !== 'same').length;
  out.push(r.same ? `same: ${r.maps.length} map(s), no difference` : `differ: ${differ} of ${r.maps.length} map(s)`);
  return out.join('\n') + '\n';
}

/** --json leaves the human lines out. */
export function diffJson(r: DiffResult): unknown {
  return { ...r, maps: r.maps.map(({ lines: _l, ...m }) => m) };
}
