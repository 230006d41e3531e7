/**
 * The journal of a QUEUE or STACK dump: what makes a dump that pops the map empty impossible to
 * lose, whenever the dumping process dies (kill -9, OOM killer, a crash).
 *
 * Such a map can only be read by popping it (no get_next_key; BPF_MAP_LOOKUP_AND_DELETE_BATCH
 * answers ENOTSUPP for both types, checked on 6.18), so a dump takes every value out and puts it
 * back. Before the first pop it creates JOURNAL_DIR/q<map id>-<pid>-<start time>.journal (0600,
 * space reserved up front), maps it MAP_SHARED and hands the kernel addresses inside it: each
 * popped value lands in the file's pages during the pop syscall itself, so it is on file the
 * instant the pop returns, whatever happens to the process next. What remains to know after a
 * kill is whether the last pop happened; the header says so without ambiguity:
 *
 *   peek the next value into slot 0 (P); write its bitwise complement ~P into the value's slot;
 *   armed = slot (from here the pop may have happened); pop into the slot; popped = slot.
 *
 * A pop writes P itself into the slot, which can never equal ~P: after a kill between `armed`
 * and `popped`, slot == ~P means "not popped", anything else "popped" (the peeked value is the one
 * a pop returns unless a BPF program pops the same map concurrently; see docs/oci-hooks.md).
 *
 * Then phase 2 pushes everything back in push order (a queue oldest first, a stack bottom first),
 * and the journal is removed. Every bpfcr run that touches maps (the CLI's map commands, the OCI
 * hooks, `bpfcr gc`) first recovers the journals whose owner is dead: in phase 1 it finishes the
 * pops (the values still in the map follow the journaled ones), in phase 2 it pops what was
 * already pushed back (those are in the journal), then pushes the whole journal back; values a
 * program pushed meanwhile are kept after them. A recovery that is itself killed is recovered by
 * the next run. Journals are tied to the boot (map ids restart at boot), and to the map's id,
 * type, sizes, flags and name; a journal whose map is gone is removed, saying so.
 */
import { closeSync, fstatSync, fchmodSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, unlinkSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { processToken, tokenAlive } from '../runtime/process.js';
import { addr, closeFd, mapGetFdById, mapInfo, ValueOps } from '../syscall/bpf.js';
import { ENOENT, isBpfErrno } from '../syscall/errors.js';
import { allocate, mapShared, type Mapping } from '../syscall/mmap.js';
import { MapError, mapLabel } from './map-error.js';
import { mapTypeById } from './types.js';

/** Where journals live: with bpfcr's other state, root's only. */
export const JOURNAL_DIR = '/var/lib/bpfcr/journal';

const MAGIC = Buffer.from('BPFCRQJ1');
const VERSION = 1;
const HEADER = 4096;
/** u32 indices into the header */
const H = { version: 2, mapId: 3, type: 4, valueSize: 5, maxEntries: 6, flags: 7, phase: 8, popped: 9, armed: 10, total: 11 } as const;
const NAME_AT = 48;
const BOOT_AT = 64;
const BOOT_LEN = 36;
const POPPING = 1;
const PUSHING = 2;
/** Target size of one mapped window of slots (koffi cannot view more than 4 GiB at once). */
const WINDOW_BYTES = 256 << 20;
const NAME_RE = /^q(\d+)-(\d+)-(\d+)\.journal$/;

function bootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().slice(0, BOOT_LEN);
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** The file layout, for tests that build the states a kill leaves behind. */
export const JOURNAL_LAYOUT = { MAGIC, HEADER, H, NAME_AT, BOOT_AT, POPPING, PUSHING, stride: (valueSize: number) => Math.ceil(valueSize / 8) * 8 } as const;

/** A journal whose header was never completed: its dump was killed before it popped anything. */
class UnstartedJournal extends Error {}

/** The map a journal is for, as the kernel described it. */
export interface QueueMap {
  fd: number;
  id: number;
  name: string;
  type: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

function isStack(type: number): boolean {
  return mapTypeById(type).name === 'stack';
}

function labelOf(m: Pick<QueueMap, 'id' | 'name' | 'type'>): string {
  return mapLabel({ id: m.id, name: m.name, type: mapTypeById(m.type).name });
}

/**
 * One journal file, mapped: the header page, and the slots in windows mapped on first use.
 * Slot 0 is the peek scratch P, slot s ≥ 1 the s-th value popped. Slots are value_size rounded up
 * to 8 bytes apart, so a window of whole slots starts on a page boundary.
 */
class Journal {
  readonly hdr: Uint32Array;
  readonly #head: Mapping;
  readonly #windows: Mapping[] = [];
  readonly #stride: number;
  readonly #perWindow: number;
  readonly #size: number;

  private constructor(readonly path: string, private readonly fd: number, readonly valueSize: number, readonly maxEntries: number) {
    this.#stride = Math.ceil(valueSize / 8) * 8;
    const unit = 4096 / gcd(this.#stride, 4096);
    this.#perWindow = Math.max(unit, Math.floor(WINDOW_BYTES / (this.#stride * unit)) * unit);
    this.#size = Journal.sizeFor(valueSize, maxEntries);
    this.#head = mapShared(fd, 0, HEADER);
    this.hdr = new Uint32Array(this.#head.bytes.buffer, this.#head.bytes.byteOffset, HEADER / 4);
  }

  static sizeFor(valueSize: number, maxEntries: number): number {
    return HEADER + (maxEntries + 1) * Math.ceil(valueSize / 8) * 8;
  }

  /** A new journal for `m`, space reserved, header written: nothing is popped yet. */
  static create(m: QueueMap): Journal {
    mkdirSync(JOURNAL_DIR, { recursive: true, mode: 0o700 });
    const [pid, start] = processToken(process.pid).split(' ');
    const path = join(JOURNAL_DIR, `q${m.id}-${pid}-${start}.journal`);
    const fd = openSync(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    let j: Journal | undefined;
    try {
      fchmodSync(fd, 0o600); // whatever the umask: these are the map's contents
      allocate(fd, Journal.sizeFor(m.valueSize, m.maxEntries));
      j = new Journal(path, fd, m.valueSize, m.maxEntries);
      const h = j.hdr;
      h[H.version] = VERSION;
      h[H.mapId] = m.id;
      h[H.type] = m.type;
      h[H.valueSize] = m.valueSize;
      h[H.maxEntries] = m.maxEntries;
      h[H.flags] = m.flags;
      h[H.phase] = POPPING;
      j.#head.bytes.set(Buffer.from(m.name.slice(0, 15), 'utf8').subarray(0, 15), NAME_AT);
      j.#head.bytes.set(Buffer.from(bootId(), 'ascii'), BOOT_AT);
      j.#head.bytes.set(MAGIC, 0); // last: a journal without it was killed before its first pop
      return j;
    } catch (e) {
      j?.close();
      if (!j) closeSync(fd);
      try { unlinkSync(path); } catch { /* best effort */ }
      throw e;
    }
  }

  /** An existing journal (recovery); throws a one-line Error when it is not one. */
  static open(path: string): { j: Journal; map: Omit<QueueMap, 'fd'>; boot: string } {
    const fd = openSync(path, fsc.O_RDWR | fsc.O_NOFOLLOW);
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.size < HEADER) throw new Error('not a journal (too short)');
      const bytes = Buffer.alloc(HEADER);
      readSync(fd, bytes, 0, HEADER, 0);
      if (!bytes.subarray(0, 8).equals(MAGIC)) throw new UnstartedJournal();
      const version = bytes.readUInt32LE(H.version * 4);
      if (version !== VERSION) throw new Error(`journal version ${version}, this bpfcr reads ${VERSION}`);
      const vs = bytes.readUInt32LE(H.valueSize * 4);
      const max = bytes.readUInt32LE(H.maxEntries * 4);
      if (vs === 0 || max === 0 || st.size !== Journal.sizeFor(vs, max)) throw new Error(`inconsistent journal (value size ${vs}, max entries ${max}, ${st.size} bytes)`);
      const name = bytes.subarray(NAME_AT, NAME_AT + 16).toString('utf8').replace(/\0.*$/s, '');
      const boot = bytes.subarray(BOOT_AT, BOOT_AT + BOOT_LEN).toString('ascii');
      const j = new Journal(path, fd, vs, max);
      const map = { id: j.hdr[H.mapId]!, name, type: j.hdr[H.type]!, valueSize: vs, maxEntries: max, flags: j.hdr[H.flags]! };
      return { j, map, boot };
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** The window holding slot s (mapped on first use). */
  #window(w: number): Mapping {
    let m = this.#windows[w];
    if (!m) {
      const off = HEADER + w * this.#perWindow * this.#stride;
      m = mapShared(this.fd, off, Math.min(this.#perWindow * this.#stride, this.#size - off));
      this.#windows[w] = m;
    }
    return m;
  }

  #slot(s: number): { bytes: Uint8Array; off: number; address: number } {
    const w = Math.floor(s / this.#perWindow);
    const m = this.#window(w);
    const off = (s - w * this.#perWindow) * this.#stride;
    return { bytes: m.bytes, off, address: m.address + off };
  }

  get phase(): number { return this.hdr[H.phase]!; }
  get popped(): number { return this.hdr[H.popped]!; }
  get total(): number { return this.hdr[H.total]!; }

  /** Recovery in phase 1: did the pop armed last happen? (see the top of this file) */
  settle(): void {
    const h = this.hdr;
    if (h[H.phase] !== POPPING || h[H.armed] !== h[H.popped]! + 1) return;
    const p = this.#slot(0);
    const s = this.#slot(h[H.armed]!);
    for (let b = 0; b < this.valueSize; b++) {
      if (s.bytes[s.off + b] !== (~p.bytes[p.off + b]! & 0xff)) {
        h[H.popped] = h[H.armed]!;
        return;
      }
    }
  }

  /**
   * Phase 1: pop until the map is empty (or max_entries values: a program pushing as fast as we
   * pop must not keep us here), each value into its slot as described at the top. Then phase 2.
   */
  popAll(ops: ValueOps): void {
    const h = this.hdr;
    const vs = this.valueSize;
    const p = this.#slot(0);
    const pb = p.bytes;
    const po = p.off;
    let k = h[H.popped]!;
    let w = -1;
    let wStart = 0;
    let bytes = pb;
    let base = 0;
    while (k < this.maxEntries) {
      if (!ops.at(p.address).peek()) break;
      const s = k + 1;
      if (s >= wStart + this.#perWindow || w < 0) {
        w = Math.floor(s / this.#perWindow);
        wStart = w * this.#perWindow;
        const m = this.#window(w);
        bytes = m.bytes;
        base = m.address;
      }
      const off = (s - wStart) * this.#stride;
      for (let b = 0; b < vs; b++) bytes[off + b] = ~pb[po + b]!;
      h[H.armed] = s; // from here on the pop may have happened: settle() tells
      if (!ops.at(base + off).pop()) break; // a program emptied it between peek and pop
      h[H.popped] = k = s;
    }
    h[H.total] = k;
    h[H.phase] = PUSHING;
  }

  /** Slot numbers in push order: a queue oldest first, a stack bottom (popped last) first. */
  #pushOrder(stack: boolean): (i: number) => number {
    const n = this.total;
    return stack ? (i) => n - i : (i) => i + 1;
  }

  /**
   * Phase 2: push every journaled value back in push order. `drain` (recovery): first pop what the
   * map holds — the values an interrupted phase 2 already pushed, which are in the journal, and
   * any a program pushed since, which are not and are pushed again after the journal's. Returns
   * how many of the latter there were.
   */
  pushAll(ops: ValueOps, stack: boolean, drain: boolean): number {
    const n = this.total;
    const order = this.#pushOrder(stack);
    const extras: Buffer[] = [];
    if (drain) {
      const p = this.#slot(0);
      const got: Buffer[] = [];
      while (got.length < this.maxEntries && ops.at(p.address).pop()) got.push(Buffer.from(p.bytes.subarray(p.off, p.off + this.valueSize)));
      if (stack) got.reverse(); // now in push order
      let t = 0;
      for (const v of got) {
        const s = t < n ? this.#slot(order(t)) : undefined;
        if (s && v.equals(s.bytes.subarray(s.off, s.off + this.valueSize))) t++;
        else extras.push(v);
      }
    }
    for (let i = 0; i < n; i++) {
      try {
        ops.at(this.#slot(order(i)).address).push();
      } catch (e) {
        throw new Error(`could not push back value ${i + 1} of ${n}: ${(e as Error).message}; every value is kept in ${this.path} and the next bpfcr run pushes them back`, { cause: e });
      }
    }
    const x = Buffer.alloc(this.valueSize);
    for (const v of extras) {
      v.copy(x);
      ops.at(Number(addr(x))).push();
    }
    return extras.length;
  }

  /**
   * The values in push order, in parts of at most `perPart` values (copies: the mapping goes with
   * close(), and a part may be written after the next is made).
   */
  *values(stack: boolean, perPart: number): Generator<Buffer> {
    const n = this.total;
    const order = this.#pushOrder(stack);
    for (let i = 0; i < n; i += perPart) {
      const count = Math.min(perPart, n - i);
      const out = Buffer.allocUnsafe(count * this.valueSize);
      for (let k = 0; k < count; k++) {
        const s = this.#slot(order(i + k));
        out.set(s.bytes.subarray(s.off, s.off + this.valueSize), k * this.valueSize);
      }
      yield out;
    }
  }

  /** The journal's job is done (the map holds every value again): remove the file. */
  remove(): void {
    try { unlinkSync(this.path); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
  }

  close(): void {
    for (const m of this.#windows) m?.unmap();
    this.#windows.length = 0;
    this.#head.unmap();
    try { closeSync(this.fd); } catch { /* closed */ }
  }
}

/** Journals of map `id` other than `except` (file names). */
function journalsOf(id: number, except?: string): string[] {
  let names: string[];
  try { names = readdirSync(JOURNAL_DIR); } catch { return []; }
  return names.filter((n) => n !== except && NAME_RE.exec(n)?.[1] === String(id));
}

function ownerOf(name: string): string {
  const m = NAME_RE.exec(name);
  return m ? `${m[2]} ${m[3]}` : '';
}

/**
 * Dump a QUEUE or STACK through a journal: every value is popped (safely, see the top of this
 * file) and pushed back; then `write` gets the values in push order, in parts of at most
 * `perPart` values, straight from the journal's pages. Returns their count. Refuses, before
 * popping anything, a map another bpfcr is dumping or whose earlier interrupted dump could not be
 * recovered.
 */
export async function dumpQueue(m: QueueMap, label: string, perPart: number, write: (part: Buffer) => Promise<void>): Promise<number> {
  const busy = journalsOf(m.id);
  if (busy.length) throw new MapError(refuseBusy(label, busy[0]!));
  let j: Journal;
  try {
    j = Journal.create(m);
  } catch (e) {
    throw new MapError(`${label}: cannot create the journal that keeps its values safe while they are taken out (under ${JOURNAL_DIR}): ${(e as Error).message}; nothing was taken out`, { cause: e });
  }
  try {
    const other = journalsOf(m.id, j.path.slice(JOURNAL_DIR.length + 1));
    if (other.length) {
      j.remove();
      throw new MapError(refuseBusy(label, other[0]!));
    }
    const ops = new ValueOps(m.fd);
    const stack = isStack(m.type);
    try {
      j.popAll(ops);
    } catch (e) {
      // Nothing taken out (a frozen map refuses its first pop): no journal needed. Otherwise the
      // journal holds what was taken, and the next run finishes the job in the right order.
      if (j.popped === 0) j.remove();
      throw new MapError(`${label}: ${(e as Error).message}${j.popped ? `; the ${j.popped} value(s) taken out are kept in ${j.path} and the next bpfcr run puts them back` : ''}`, { cause: e });
    }
    try {
      j.pushAll(ops, stack, false);
    } catch (e) {
      throw new MapError(`${label}: ${(e as Error).message}`, { cause: e });
    }
    j.remove(); // the map holds every value again; the mapping stays readable until close()
    for (const part of j.values(stack, perPart)) await write(part);
    return j.total;
  } finally {
    j.close();
  }
}

function refuseBusy(label: string, name: string): string {
  const owner = ownerOf(name);
  const path = join(JOURNAL_DIR, name);
  return tokenAlive(owner)
    ? `${label}: another bpfcr (pid ${owner.split(' ')[0]}) is dumping it right now (${path}); popping it at the same time would mix the two dumps: try again when it is done`
    : `${label}: ${path} holds values an interrupted dump took out of it that could not be put back yet (see the message above); refusing to pop it again until they are`;
}

/** Progress of a journal, for tests and `bpfcr gc --dry-run`: undefined if it is not one. */
export function journalProgress(path: string): { mapId: number; phase: 'popping' | 'pushing'; popped: number } | undefined {
  try {
    const { j, map } = Journal.open(path);
    try {
      return { mapId: map.id, phase: j.phase === PUSHING ? 'pushing' : 'popping', popped: j.popped };
    } finally {
      j.close();
    }
  } catch {
    return undefined;
  }
}

/**
 * Put back the values of every interrupted queue/stack dump (journals whose owner is dead).
 * Returns one line per journal handled, for the caller to print; never throws (a journal that
 * cannot be recovered is kept, said so, and tried again by the next run). `dryRun`: only say.
 */
export function recoverQueueJournals(opts: { dryRun?: boolean } = {}): string[] {
  let names: string[];
  try {
    names = readdirSync(JOURNAL_DIR).filter((n) => NAME_RE.test(n)).sort();
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const name of names) {
    const owner = ownerOf(name);
    if (tokenAlive(owner)) continue; // its dump is running
    const from = join(JOURNAL_DIR, name);
    if (opts.dryRun) {
      const p = journalProgress(from);
      out.push(`would put back the values of an interrupted queue/stack dump (pid ${owner.split(' ')[0]}) of map id ${NAME_RE.exec(name)![1]}${p ? ` (${p.popped} taken out, ${p.phase})` : ''}: ${from}`);
      continue;
    }
    // Claim it by renaming it to this process: of two runs recovering at once, one wins.
    const [pid, start] = processToken(process.pid).split(' ');
    const path = join(JOURNAL_DIR, `q${NAME_RE.exec(name)![1]}-${pid}-${start}.journal`);
    try {
      renameSync(from, path);
    } catch {
      continue; // another run took it
    }
    try {
      out.push(recoverOne(path, owner.split(' ')[0]!));
    } catch (e) {
      if (e instanceof UnstartedJournal) {
        try { unlinkSync(path); } catch { /* gone */ }
        out.push(`removed ${path}: its dump (pid ${owner.split(' ')[0]}) was interrupted before it took anything out`);
        continue;
      }
      out.push(`cannot put back the values of an interrupted queue/stack dump kept in ${path}: ${(e as Error).message}; kept, the next bpfcr run tries again`);
    }
  }
  return out;
}

function recoverOne(path: string, deadPid: string): string {
  const { j, map, boot } = Journal.open(path);
  let fd: number | undefined;
  try {
    const label = labelOf(map);
    const n = j.phase === PUSHING ? j.total : j.popped;
    if (boot !== bootId()) {
      j.remove();
      return `removed ${path}: the interrupted dump of ${label} ran before the last reboot, which took the map and its ${n} value(s) with it`;
    }
    try {
      fd = mapGetFdById(map.id);
    } catch (e) {
      if (!isBpfErrno(e, ENOENT)) throw e;
      j.remove();
      return `removed ${path}: ${label} no longer exists; its ${n} value(s) taken out by an interrupted dump (pid ${deadPid}) went with it`;
    }
    const now = mapInfo(fd);
    if (now.type !== map.type || now.valueSize !== map.valueSize || now.maxEntries !== map.maxEntries || now.flags !== map.flags || now.name !== map.name) {
      j.remove();
      return `removed ${path}: map id ${map.id} is now another map (${labelOf({ ...now, type: now.type })}); ${label} and its ${n} value(s) are gone`;
    }
    const ops = new ValueOps(fd);
    if (j.phase === POPPING) {
      j.settle();
      j.popAll(ops);
    } else if (j.phase !== PUSHING) {
      throw new Error(`unknown phase ${j.phase}`);
    }
    const extra = j.pushAll(ops, isStack(map.type), true);
    j.remove();
    return `put back ${j.total} value(s) of ${label} in their order, taken out by an interrupted dump (pid ${deadPid})${extra ? `, after them ${extra} value(s) pushed since` : ''}: ${path} removed`;
  } finally {
    if (fd !== undefined) closeFd(fd);
    j.close();
  }
}
