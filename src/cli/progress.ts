/**
 * Progress of long dumps and restores, on stderr: a status line redrawn in place while stderr is a
 * terminal (entries, bytes, rate and, when the archive's manifest gives the total, percentage and
 * ETA), nothing when it is not (a log, a pipe: hooks and CRIU actions stay silent). --verbose adds a
 * line per map, on any stderr; --quiet drops the progress line and the summary.
 *
 * The engine knows nothing of terminals: it calls the `progress` callback of its options once per
 * data member (chunk) written or applied, with the map and the chunk's size.
 */
import { termSafe } from '../archive/names.js';
import { elementSize } from '../engine/validate.js';
import type { MapMeta } from '../maps/meta.js';

/** What the engine reports per chunk (DumpOptions.progress, RestoreOptions.progress). */
export interface ChunkProgress {
  map: MapMeta;
  bytes: number;
  /** restore, once the manifest is known: every map's record (totals for percentage and ETA) */
  plan?: readonly (MapMeta & { entries: number })[];
}

export interface Verbosity { quiet?: boolean | undefined; verbose?: boolean | undefined }

/** The flags every command with progress takes (util.parseArgs options). */
export const PROGRESS_FLAGS = {
  quiet: { type: 'boolean', short: 'q' },
  verbose: { type: 'boolean', short: 'v' },
} as const;

export const PROGRESS_USAGE = `  -q, --quiet          no progress line, no summary (errors still go to stderr)
  -v, --verbose        a line per map as it completes (also when stderr is no terminal)`;

/** The part of a stream the reporter writes to (process.stderr; a fake in tests). */
export interface Out { isTTY?: boolean; write(s: string): unknown }

const REDRAW_MS = 100;

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function formatSeconds(s: number): string {
  if (s < 60) return `${Math.ceil(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Elements in `bytes` of a map's data (local storage records vary in size: 0, not counted). */
function entriesIn(meta: MapMeta, bytes: number): number {
  const e = elementSize(meta);
  return e > 0 ? Math.floor(bytes / e) : 0;
}

export class ProgressReporter {
  readonly #out: Out;
  readonly #what: string;
  readonly #line: boolean;
  readonly #verbose: boolean;
  readonly #now: () => number;
  readonly #start: number;
  #entries = 0;
  #bytes = 0;
  #total: { entries: number; bytes: number } | undefined;
  #drawn = 0;
  #shown = false;
  #map: { meta: MapMeta; entries: number; bytes: number; start: number } | undefined;

  constructor(what: string, flags: Verbosity, out: Out = process.stderr, now: () => number = () => performance.now()) {
    this.#out = out;
    this.#what = what;
    this.#line = !flags.quiet && out.isTTY === true;
    this.#verbose = !flags.quiet && flags.verbose === true;
    this.#now = now;
    this.#start = now();
  }

  /** The engine's callback, or undefined when nothing would be shown (the engine then does no work for it). */
  get callback(): ((p: ChunkProgress) => void) | undefined {
    return this.#line || this.#verbose ? (p) => this.chunk(p) : undefined;
  }

  chunk(p: ChunkProgress): void {
    if (p.plan && !this.#total) {
      this.#total = p.plan.reduce((t, r) => ({ entries: t.entries + r.entries, bytes: t.bytes + r.entries * Math.max(0, elementSize(r)) }), { entries: 0, bytes: 0 });
    }
    if (this.#map?.meta.index !== p.map.index) {
      this.#mapDone();
      this.#map = { meta: p.map, entries: 0, bytes: 0, start: this.#now() };
    }
    const n = entriesIn(p.map, p.bytes);
    this.#map.entries += n;
    this.#map.bytes += p.bytes;
    this.#entries += n;
    this.#bytes += p.bytes;
    const t = this.#now();
    if (this.#line && (!this.#shown || t - this.#drawn >= REDRAW_MS)) {
      this.#out.write(`\r\x1b[K${this.#status(t)}`);
      this.#drawn = t;
      this.#shown = true;
    }
  }

  /** The status line: "bpfcr dump: map 3 'flows': 250000 entries, 12.0 MiB, 30.1 MiB/s, 45%, ETA 2s". */
  #status(t: number): string {
    const secs = Math.max((t - this.#start) / 1000, 1e-3);
    const rate = this.#bytes / secs;
    const m = this.#map!.meta;
    let s = `bpfcr ${this.#what}: map ${m.index}${m.name ? ` '${termSafe(m.name)}'` : ''}: ${this.#entries} entries, ${formatBytes(this.#bytes)}, ${formatBytes(Math.round(rate))}/s`;
    const total = this.#total;
    if (total && total.bytes > 0) {
      const done = Math.min(this.#bytes / total.bytes, 1);
      s += `, ${Math.floor(done * 100)}%, ETA ${formatSeconds(rate > 0 ? (total.bytes - this.#bytes) / rate : 0)}`;
    }
    return s;
  }

  #mapDone(): void {
    const m = this.#map;
    if (!m || !this.#verbose) return;
    if (this.#shown) this.#out.write('\r\x1b[K');
    this.#shown = false;
    const secs = (this.#now() - m.start) / 1000;
    this.#out.write(`bpfcr ${this.#what}: map ${m.meta.index}${m.meta.name ? ` '${termSafe(m.meta.name)}'` : ''} (${termSafe(m.meta.type)}): ${m.entries} entries, ${formatBytes(m.bytes)} in ${secs.toFixed(2)}s\n`);
  }

  /** The end (success or not): the last map's line when verbose, the status line wiped. */
  done(): void {
    this.#mapDone();
    if (this.#shown) this.#out.write('\r\x1b[K');
    this.#shown = false;
  }
}
