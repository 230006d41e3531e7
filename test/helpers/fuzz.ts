/**
 * Seeded mutation fuzz of everything that reads input bpfcr does not control (issue 11): the
 * archive reader and restore (in-process, against the real kernel), OCI state and annotations,
 * state files (oci/pins.json), and the config file. A case passes when the input is either
 * accepted or refused with a one-line error of bpfcr's own — never an uncaught exception, an
 * internal TypeError/RangeError, a multi-line message, a map or BTF object left alive after a
 * refusal, a file left in TMPDIR, a process warning, or a hang. Run by bench/fuzz.ts (seed and cases as arguments)
 * and, briefly, by the suite (test/engine/fuzz.test.ts).
 *
 * Two kinds of mutation: bytes flipped, cut, repeated anywhere (checksums then catch most, which
 * exercises every error path of the readers and decompressors), and forged archives whose JSON
 * was changed and every checksum recomputed (test/helpers/forge.ts), which only bpfcr's
 * validation stands between and the kernel.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { HEADER_MEMBER, MANIFEST_MEMBER } from '../../src/archive/format.js';
import { withAutoPrefix } from '../../src/cli/autoprefix.js';
import { defaultConfig, loadConfig } from '../../src/config/config.js';
import { restore } from '../../src/engine/restore.js';
import { openDirLoc, openStateFileAt, PINS_MEMBER, validatePinsRecord } from '../../src/oci/statefile.js';
import { parseAnnotations, parseState } from '../../src/oci/state.js';
import { handTar, headerJson, manifestJson, zstdCompress } from '../archive/helpers.js';
import { bpfcr, startHolder } from './env.js';
import { readArchive, type Member, type Parsed } from './forge.js';

// ---------------------------------------------------------------------------------------------
// randomness

/** xorshift32: the same seed gives the same cases on every machine. */
export class Rng {
  #x: number;
  constructor(seed: number) {
    this.#x = (seed >>> 0) || 0x9e3779b9;
  }
  next(): number {
    let x = this.#x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (this.#x = x >>> 0);
  }
  int(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  chance(p: number): boolean {
    return this.next() / 2 ** 32 < p;
  }
}

const INTERESTING: unknown[] = [
  0, -1, 1, 2, 3, 7, 8, 255, 4096, 8192, 8193, 65536, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53, -(2 ** 53), 1e308, 0.5, -0.0,
  '', 'a', '0', '-1', '1e3', '18446744073709551616', '99999999999999999999', '../../etc', '/', '/sys/fs/bpf/../x', 'x'.repeat(300),
  'a\nb', '\u0000', '\u001b[31m', 'kv', 'kv-mapref', 'values', 'none', 'hash', 'percpu_array', 'array_of_maps', 'content', 'empty',
  null, true, false, [], {}, [0], { id: 1, keyTypeId: 1, valueTypeId: 1 }, { type: 2, keySize: 4, valueSize: 8, maxEntries: 1 << 30, flags: 0 },
];

/** A byte-level mutation of `b` (never longer than twice its size). */
export function mutateBytes(rng: Rng, b: Buffer): { data: Buffer; how: string } {
  if (b.length === 0) return { data: Buffer.from([rng.int(256)]), how: 'insert into empty' };
  const at = rng.int(b.length);
  const out = Buffer.from(b);
  switch (rng.int(8)) {
    case 0: {
      const n = 1 + rng.int(4);
      for (let i = 0; i < n; i++) out[(at + i * 7) % out.length]! ^= 1 << rng.int(8);
      return { data: out, how: `flip ${n} bit(s) from ${at}` };
    }
    case 1: {
      const v = rng.pick([0, 0xff, 0x7f, 0x80, 0x30, 0x39, 0x0a, 0x22, 0x2f]);
      out[at] = v;
      return { data: out, how: `byte ${at} = ${v}` };
    }
    case 2:
      return { data: b.subarray(0, at), how: `truncate at ${at}` };
    case 3: {
      const n = 1 + rng.int(Math.min(4096, b.length - at));
      return { data: Buffer.concat([b.subarray(0, at), b.subarray(at + n)]), how: `delete ${n} at ${at}` };
    }
    case 4: {
      const n = 1 + rng.int(Math.min(4096, b.length - at));
      return { data: Buffer.concat([b.subarray(0, at + n), b.subarray(at, at + n), b.subarray(at + n)]), how: `repeat ${n} at ${at}` };
    }
    case 5: {
      const n = 1 + rng.int(64);
      const ins = Buffer.alloc(n);
      for (let i = 0; i < n; i++) ins[i] = rng.int(256);
      return { data: Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]), how: `insert ${n} at ${at}` };
    }
    case 6: {
      const blk = Math.floor(at / 512) * 512;
      out.fill(0, blk, Math.min(out.length, blk + 512));
      return { data: out, how: `zero block at ${blk}` };
    }
    default: {
      const a = Math.floor(at / 512) * 512;
      const c = Math.floor(rng.int(b.length) / 512) * 512;
      const n = Math.min(512, out.length - Math.max(a, c));
      const x = Buffer.from(out.subarray(a, a + n));
      out.copy(out, a, c, c + n);
      x.copy(out, c);
      return { data: out, how: `swap blocks ${a} and ${c}` };
    }
  }
}

type Json = unknown;

/** Every path (list of keys) into a JSON value. */
function paths(v: Json, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v && typeof v === 'object') for (const k of Object.keys(v)) paths((v as Record<string, Json>)[k], [...at, k], out);
  return out;
}

/** A structural mutation of a JSON value: a node replaced, removed, added or retyped. */
export function mutateJson(rng: Rng, v: Json): { value: Json; how: string } {
  const root = structuredClone(v);
  const all = paths(root);
  const p = rng.pick(all);
  const parentPath = p.slice(0, -1);
  let parent: Json = root;
  for (const k of parentPath) parent = (parent as Record<string | number, Json>)[k];
  const key = p[p.length - 1];
  const value = rng.pick(INTERESTING);
  if (key === undefined) return { value: rng.chance(0.5) ? value : [root], how: 'replace the root' };
  const obj = parent as Record<string | number, Json>;
  switch (rng.int(5)) {
    case 0:
      if (Array.isArray(obj)) obj.splice(Number(key), 1);
      else delete obj[key];
      return { value: root, how: `delete ${p.join('.')}` };
    case 1:
      if (Array.isArray(obj)) obj.push(structuredClone(obj[Number(key)]));
      else obj[`x${rng.int(100)}`] = value;
      return { value: root, how: `add next to ${p.join('.')}` };
    case 2: {
      const cur = obj[key];
      obj[key] = typeof cur === 'number' ? cur + rng.pick([1, -1, 2 ** 32, 0.5, 1 << 20]) : typeof cur === 'string' ? cur + rng.pick(['x', '/..', '\n', '']) : value;
      return { value: root, how: `nudge ${p.join('.')}` };
    }
    default:
      obj[key] = value;
      return { value: root, how: `${p.join('.')} = ${JSON.stringify(value)?.slice(0, 40)}` };
  }
}

// ---------------------------------------------------------------------------------------------
// invariants

export interface Failure {
  target: string;
  iteration: number;
  how: string;
  problem: string;
}

const INTERNAL = new Set(['TypeError', 'RangeError', 'ReferenceError', 'SyntaxError', 'AssertionError']);

/** What is wrong with an error a refusal threw, or undefined. */
function badError(e: unknown, allowed?: readonly string[]): string | undefined {
  if (!(e instanceof Error)) return `threw a non-Error: ${String(e)}`;
  if (INTERNAL.has(e.name) || (e as { code?: string }).code === 'ERR_OUT_OF_RANGE') return `internal ${e.name}: ${e.message.split('\n')[0]}`;
  if (allowed && !allowed.includes(e.name)) return `${e.name} instead of ${allowed.join('/')}: ${e.message.split('\n')[0]}`;
  if (e.message.trim() === '') return 'empty message';
  if (/[\r\n]/.test(e.message)) return `message of ${e.message.split('\n').length} lines: ${JSON.stringify(e.message.slice(0, 200))}`;
  return undefined;
}

/** This process's descriptors whose target `match` accepts, as "fd:target". */
function fdsTo(match: (target: string) => boolean): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const l = readlinkSync(`/proc/self/fd/${fd}`);
      if (match(l)) out.push(`${fd}:${l}`);
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/** BPF objects (maps, BTF) this process holds: what a refused restore must not leave alive. */
const bpfFds = (): string[] => fdsTo((l) => /bpf-map|anon_inode:btf/.test(l));
/** Files under `dir` still open. */
const openFiles = (dir: string): string[] => fdsTo((l) => l.startsWith(`${dir}/`));

const CASE_TIMEOUT_MS = 30_000;

async function bounded<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<T>((_, rej) => { timer = setTimeout(() => rej(new Error(`HANG: no answer within ${CASE_TIMEOUT_MS} ms`)), CASE_TIMEOUT_MS); })]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// targets

export interface FuzzOptions {
  seed: number;
  /** cases per target */
  iterations: number;
  targets?: readonly string[];
  /** progress line per target (bench) */
  log?: (s: string) => void;
}

export interface FuzzReport {
  seed: number;
  cases: Record<string, number>;
  /** cases accepted (valid after the mutation) per target */
  accepted: Record<string, number>;
  /** refusals per target and reason (the message without its particulars) */
  refusals: Record<string, Record<string, number>>;
  failures: Failure[];
  ms: number;
}

interface Ctx {
  rng: Rng;
  work: string;
  /** the private TMPDIR every case must leave empty */
  tmp: string;
}

type Verdict = { accepted: true } | { accepted: false; message: string } | { problem: string };

interface Target {
  name: string;
  setup(ctx: Ctx): Promise<(iteration: number) => Promise<{ how: string; verdict: Verdict }>>;
  teardown?(): Promise<void>;
}

/** A refusal is fine when its error is. */
function refused(e: unknown, allowed?: readonly string[]): Verdict {
  const bad = badError(e, allowed);
  return bad ? { problem: bad } : { accepted: false, message: (e as Error).message };
}

/** A refusal's message with its particulars (numbers, paths, quoted values) taken out, for counting. */
function reason(message: string): string {
  return message
    .replace(/\/tmp\/\S+/g, 'PATH')
    .replace(/"(?:[^"\\]|\\.)*"/g, '"…"')
    .replace(/'[^']*'/g, "'…'")
    .replace(/\d+(\.\d+)?/g, 'N')
    .slice(0, 140);
}

// --- archives: restore, in-process, real kernel -------------------------------------------------

const HOLD = [
  'hash:f_hash:entries=20,max=32,btf=1', 'percpu_hash:f_pch:entries=4,max=8,value=12', 'array:f_arr:max=8,entries=8',
  'percpu_array:f_pca:max=4,entries=4', 'lpm_trie:f_lpm:entries=4,max=16', 'queue:f_q:entries=3,max=4', 'stack:f_s:entries=3,max=4',
  'lru_hash:f_lru:entries=4,max=16', 'array:f_frz:max=4,entries=4,frozen=1', 'ringbuf:f_rb',
  'array_of_maps:f_aom:entries=2,max=4,inner=array/key=4/value=8/max=4/entries=4',
  'hash_of_maps:f_hom:entries=1,max=4,inner=hash/key=4/value=8/max=8/entries=2',
];

type Form = 'tar' | 'tar.gz' | 'tar.zst' | 'dir' | 'export';

/** A dump without what differs from run to run: map ids 1…n, BTF ids 1…n, no holders, fixed header. */
function normalized(p: Parsed): Parsed {
  const btf = new Map<number, number>();
  const btfId = (old: number): number => {
    if (!btf.has(old)) btf.set(old, btf.size + 1);
    return btf.get(old)!;
  };
  const fix = <T extends { index: number; btf: { id: number } | null }>(m: T): T => ({ ...m, id: m.index + 1, refs: [], btf: m.btf ? { ...m.btf, id: btfId(m.btf.id) } : null });
  let meta: { layout: string; keySize: number; valueStride: number } | undefined;
  const members = p.members.map((m) => {
    if (m.name.endsWith('/meta.json')) {
      meta = JSON.parse(m.data.toString());
      return { name: m.name, data: Buffer.from(JSON.stringify(fix(meta as never))) };
    }
    const b = /^btf\/(\d+)\.btf$/.exec(m.name);
    if (b) return { name: `btf/${btfId(Number(b[1]))}.btf`, data: m.data };
    // hash maps come back in the kernel's bucket order, seeded at random per map: sort by key
    if (meta && m.name.includes('/data-') && (meta.layout === 'kv' || meta.layout === 'kv-mapref')) {
      const k = meta.keySize;
      const v = meta.layout === 'kv' ? meta.valueStride : 4;
      const n = m.data.length / (k + v);
      const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => Buffer.compare(m.data.subarray(x * k, x * k + k), m.data.subarray(y * k, y * k + k)));
      const keys = order.map((i) => m.data.subarray(i * k, i * k + k));
      const values = order.map((i) => m.data.subarray(n * k + i * v, n * k + (i + 1) * v));
      return { name: m.name, data: Buffer.concat([...keys, ...values]) };
    }
    return m;
  });
  const header = { ...p.header, created: '2026-01-01T00:00:00.000Z', hostname: 'fuzz', kernel: 'fuzz', tool: { name: 'bpfcr', version: '0' } };
  const maps = ((p.manifest['maps'] ?? []) as { index: number; btf: { id: number } | null }[]).map(fix);
  return { header, members, manifest: { ...p.manifest, ...header, maps, btf: ((p.manifest['btf'] ?? []) as number[]).map(btfId) } };
}

function archiveTarget(): Target {
  let holderKill: (() => Promise<void>) | undefined;
  return {
    name: 'archive',
    async setup({ rng, work, tmp }) {
      const holder = await startHolder(['hold', ...HOLD]);
      holderKill = holder.kill;
      const dumpTar = join(work, 'dump.tar');
      const d = await bpfcr(['dump', '-p', String(holder.pid), '-o', dumpTar]);
      if (d.exitCode !== 0) throw new Error(`fuzz seed dump: ${d.stderr}`);
      await holder.kill();
      // the same seed archive on every run (no ids, times, host names of this one): a case is
      // replayed exactly by its seed and number
      const parsed: Parsed = normalized(await readArchive(dumpTar));
      const seedTar = join(work, 'seed.tar');
      const seedAll = [{ name: HEADER_MEMBER, data: headerJson(parsed.header as unknown as Record<string, unknown>) }, ...parsed.members];
      writeFileSync(seedTar, await handTar([...seedAll, { name: MANIFEST_MEMBER, data: manifestJson(seedAll, { maps: parsed.manifest['maps'], btf: parsed.manifest['btf'] }, parsed.header as unknown as Record<string, unknown>) }]));
      const expected = JSON.stringify(((parsed.manifest['maps'] ?? []) as { name: string; entries: number }[]).map((m) => [m.name, m.entries]));
      const config = defaultConfig();
      const seedBytes = readFileSync(seedTar);
      const dirSeed = join(work, 'seed.d');
      // the directory form: the same members as files
      for (const m of [{ name: HEADER_MEMBER, data: headerJson(parsed.header as unknown as Record<string, unknown>) }, ...parsed.members]) {
        mkdirSync(dirname(join(dirSeed, m.name)), { recursive: true });
        writeFileSync(join(dirSeed, m.name), m.data);
      }
      const manifestBytes = Buffer.from(JSON.stringify(parsed.manifest));
      writeFileSync(join(dirSeed, MANIFEST_MEMBER), manifestBytes);

      /** Forged: one member's JSON (or the manifest's maps) changed, every checksum recomputed. */
      const forgeCase = async (): Promise<{ tar: Buffer; how: string }> => {
        const members: Member[] = parsed.members.map((m) => ({ ...m }));
        let header = parsed.header as unknown as Record<string, unknown>;
        let body: Record<string, unknown> = { maps: parsed.manifest['maps'], btf: parsed.manifest['btf'] };
        let how: string;
        const what = rng.int(10);
        if (what < 4) {
          const metas = members.filter((m) => m.name.endsWith('meta.json'));
          const m = rng.pick(metas);
          const r = mutateJson(rng, JSON.parse(m.data.toString()));
          m.data = Buffer.from(JSON.stringify(r.value) ?? '');
          // the record follows the meta, as an attacker would keep them consistent
          const idx = Number(/maps\/(\d{4})/.exec(m.name)![1]);
          const maps = structuredClone(body['maps']) as Record<string, unknown>[];
          if (r.value && typeof r.value === 'object' && maps[idx] && rng.chance(0.8)) maps[idx] = { ...(r.value as object), entries: maps[idx]!['entries'], chunks: maps[idx]!['chunks'] };
          body = { ...body, maps };
          how = `forged ${m.name}: ${r.how}`;
        } else if (what < 7) {
          const r = mutateJson(rng, body);
          body = (r.value && typeof r.value === 'object' && !Array.isArray(r.value) ? r.value : { maps: r.value }) as Record<string, unknown>;
          how = `forged manifest body: ${r.how}`;
        } else if (what < 8) {
          const r = mutateJson(rng, header);
          header = (r.value ?? {}) as Record<string, unknown>;
          how = `forged header: ${r.how}`;
        } else {
          const datas = members.filter((m) => m.name.includes('/data-') || m.name.startsWith('btf/'));
          const m = rng.pick(datas);
          const r = mutateBytes(rng, m.data);
          m.data = r.data;
          how = `forged ${m.name}: ${r.how}`;
        }
        if (rng.chance(0.1) && members.length > 1) {
          const i = rng.int(members.length);
          const [x] = members.splice(i, 1);
          if (rng.chance(0.5)) members.splice(rng.int(members.length + 1), 0, x!);
          how += `; member ${x!.name} ${members.includes(x!) ? 'moved' : 'dropped'}`;
        }
        const all = [{ name: HEADER_MEMBER, data: headerJson(header) }, ...members];
        const manifestHeader = header && typeof header === 'object' ? header : {};
        return { tar: await handTar([...all, { name: MANIFEST_MEMBER, data: manifestJson(all, body, manifestHeader) }]), how };
      };

      return async (iteration) => {
        const form: Form = rng.pick(['tar', 'tar', 'tar.gz', 'tar.zst', 'dir', 'export'] as const);
        const forged = form !== 'dir' && rng.chance(0.5);
        let tar: Buffer;
        let how: string;
        if (forged) ({ tar, how } = await forgeCase());
        else {
          const r = mutateBytes(rng, seedBytes);
          tar = r.data;
          how = `bytes: ${r.how}`;
        }
        const file = join(work, `case-${iteration}.${form === 'export' ? 'export.tar.gz' : form}`);
        if (form === 'dir') {
          // one file of the directory form mutated
          rmSync(file, { recursive: true, force: true });
          cpSync(dirSeed, file, { recursive: true });
          const names = [HEADER_MEMBER, MANIFEST_MEMBER, ...parsed.members.map((m) => m.name)];
          const n = rng.pick(names);
          const r = mutateBytes(rng, readFileSync(join(file, n)));
          writeFileSync(join(file, n), r.data);
          how = `dir ${n}: ${r.how}`;
        } else if (form === 'tar.gz') writeFileSync(file, gzipSync(tar, { level: 1 }));
        else if (form === 'tar.zst') writeFileSync(file, zstdCompress(tar));
        else if (form === 'export') {
          // a podman export look-alike: the archive as checkpoint/bpfcr.tar, gzip, then mutated again sometimes
          const exp = gzipSync(await handTar([{ name: 'checkpoint/pages-1.img', data: Buffer.alloc(2048, 7) }, { name: 'checkpoint/bpfcr.tar', data: tar }]), { level: 1 });
          const r = rng.chance(0.3) ? mutateBytes(rng, exp) : { data: exp, how: '' };
          writeFileSync(file, r.data);
          how = `export(${how})${r.how ? `, then ${r.how}` : ''}`;
        } else writeFileSync(file, tar);
        const before = bpfFds();
        let verdict: Verdict;
        try {
          const restored = await bounded(withAutoPrefix(file, undefined, (prefix, input) => restore({ input, config, ...(prefix ? { prefix } : {}) })));
          const got = JSON.stringify(restored.map((m) => [m.name, m.entries]));
          restored.close();
          // a corrupted (not re-signed) archive may only be accepted when the change was harmless
          verdict = !forged && got !== expected ? { problem: `accepted a corrupted archive: restored ${got}` } : { accepted: true };
        } catch (e) {
          verdict = refused(e);
        }
        const after = bpfFds();
        if (after.length > before.length && !('problem' in verdict)) verdict = { problem: `BPF objects left alive: ${after.filter((x) => !before.includes(x)).join(', ')}` };
        rmSync(file, { recursive: true, force: true });
        const left = readdirSync(tmp);
        if (left.length && !('problem' in verdict)) verdict = { problem: `left in TMPDIR: ${left.join(', ')}` };
        for (const l of left) rmSync(join(tmp, l), { recursive: true, force: true });
        return { how, verdict };
      };
    },
    async teardown() {
      await holderKill?.();
    },
  };
}

// --- OCI state and annotations ------------------------------------------------------------------

const STATE_SEED = {
  ociVersion: '1.0.2', id: 'c0ffee', status: 'running', pid: 4242, bundle: '/run/containers/c0ffee/userdata',
  annotations: {
    'io.bpfcr.pins': '/sys/fs/bpf/app,/sys/fs/bpf/other', 'io.bpfcr.save-on-stop': '/var/lib/bpfcr/state/web.tar',
    'io.bpfcr.restore-from': '/var/lib/bpfcr/state/web.tar', 'io.bpfcr.on-existing': 'keep', 'io.podman.annotations.x': 'y',
  },
};

function stateTarget(): Target {
  return {
    name: 'state',
    async setup({ rng }) {
      const seed = JSON.stringify(STATE_SEED);
      return async () => {
        let text: string;
        let how: string;
        if (rng.chance(0.5)) {
          const r = mutateBytes(rng, Buffer.from(seed));
          text = r.data.toString('utf8');
          how = `bytes: ${r.how}`;
        } else {
          const r = mutateJson(rng, STATE_SEED);
          text = JSON.stringify(r.value) ?? '';
          how = `json: ${r.how}`;
        }
        try {
          const st = parseState(text);
          try {
            parseAnnotations(st.annotations);
          } catch (e) {
            return { how, verdict: refused(e, ['AnnotationError']) };
          }
          return { how, verdict: { accepted: true } };
        } catch (e) {
          return { how, verdict: refused(e, ['StateError']) };
        }
      };
    },
  };
}

// --- state files: oci/pins.json in an archive ---------------------------------------------------

const PINS_SEED = {
  format: 'bpfcr-oci-pins', version: 1, created: '2026-01-01T00:00:00Z', container: { id: 'c0ffee', pins: ['/sys/fs/bpf/app'] },
  pins: [{ path: '/sys/fs/bpf/app/counters', mapId: 12, mode: 0o600, uid: 0, gid: 0 }],
  dirs: [{ path: '/sys/fs/bpf/app', mode: 0o700, uid: 0, gid: 0 }], skipped: [{ path: '/sys/fs/bpf/app/prog', why: 'a pinned prog' }],
};

function statefileTarget(): Target {
  return {
    name: 'statefile',
    async setup({ rng, work }) {
      const dir = join(work, 'state');
      mkdirSync(dir);
      const header = { format: 'bpfcr-archive', version: 2, tool: { name: 'bpfcr', version: '0.1.0' }, created: '2026-01-01T00:00:00.000Z', kernel: '6.18', hostname: 'h', possibleCpus: 2 };
      const build = async (pins: unknown): Promise<Buffer> => {
        const all = [{ name: HEADER_MEMBER, data: headerJson(header) }, { name: PINS_MEMBER, data: Buffer.from(JSON.stringify(pins) ?? '') }];
        return handTar([...all, { name: MANIFEST_MEMBER, data: manifestJson(all, { maps: [], btf: [] }, header) }]);
      };
      const seedTar = await build(PINS_SEED);
      return async (iteration) => {
        let data: Buffer;
        let how: string;
        if (rng.chance(0.5)) {
          const r = mutateJson(rng, PINS_SEED);
          data = await build(r.value);
          how = `pins.json: ${r.how}`;
          // the record alone, too, as the hooks validate it
          try {
            validatePinsRecord(r.value);
          } catch (e) {
            const bad = badError(e);
            if (bad) return { how, verdict: { problem: `validatePinsRecord: ${bad}` } };
          }
        } else {
          const r = mutateBytes(rng, seedTar);
          data = r.data;
          how = `bytes: ${r.how}`;
        }
        const name = `s${iteration}.tar`;
        writeFileSync(join(dir, name), data);
        let verdict: Verdict;
        try {
          const st = await bounded(openStateFileAt(openDirLoc(dir, name), `/var/lib/bpfcr/state/${name}`));
          if (st) {
            await st.verify().then(() => undefined, (e: unknown) => { const bad = badError(e); if (bad) throw new Error(`verify: ${bad}`); });
            st.close();
          }
          verdict = { accepted: true };
        } catch (e) {
          verdict = refused(e);
        }
        rmSync(join(dir, name));
        // the state file is closed at once, not on garbage collection
        const open = openFiles(dir);
        if (open.length && !('problem' in verdict)) verdict = { problem: `left open: ${open.join(', ')}` };
        return { how, verdict };
      };
    },
  };
}

// --- config ---------------------------------------------------------------------------------------

const CONFIG_SEED = `policy:
  types: { prog_array: empty, bloom_filter: refuse }
  maps: { my_events: empty, counts: content }
percpu:
  cpu_mismatch: zero-fill
inner_templates:
  my_outer: {type: hash, key_size: 4, value_size: 8, max_entries: 1024, flags: 0}
staging: /sys/fs/bpf/bpfcr
restore:
  memory_budget: 2GiB
  host_memory_budget: 128MiB
defaults: &d { type: array, key_size: 4, value_size: 8, max_entries: 8 }
more: [*d, *d, *d]
`;

function configTarget(): Target {
  return {
    name: 'config',
    async setup({ rng, work }) {
      const file = join(work, 'config.yaml');
      const { parse, stringify } = await import('yaml');
      const seedDoc = parse(CONFIG_SEED.replace(/^(defaults|more):.*$/gm, '')) as unknown;
      return async () => {
        let text: string;
        let how: string;
        const k = rng.int(3);
        if (k === 0) {
          const r = mutateBytes(rng, Buffer.from(CONFIG_SEED));
          text = r.data.toString('utf8');
          how = `bytes: ${r.how}`;
        } else {
          const r = mutateJson(rng, seedDoc);
          text = stringify(r.value);
          how = `yaml: ${r.how}`;
        }
        writeFileSync(file, text);
        try {
          await bounded(loadConfig(file));
          return { how, verdict: { accepted: true } };
        } catch (e) {
          return { how, verdict: refused(e, ['ConfigError']) };
        }
      };
    },
  };
}

export const TARGETS: Record<string, () => Target> = {
  archive: archiveTarget, state: stateTarget, statefile: statefileTarget, config: configTarget,
};

/**
 * Run `iterations` cases of each target. TMPDIR is pointed at a private directory for the run
 * (every case must leave it empty); uncaught exceptions and unhandled rejections are counted
 * against the case that was running.
 */
export async function fuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const t0 = Date.now();
  const work = mkdtempSync(join(tmpdir(), 'bpfcr-fuzz-'));
  const tmp = join(work, 'tmp');
  mkdirSync(tmp);
  const oldTmp = process.env['TMPDIR'];
  process.env['TMPDIR'] = tmp;
  const report: FuzzReport = { seed: opts.seed, cases: {}, accepted: {}, refusals: {}, failures: [], ms: 0 };
  let current: { target: string; iteration: number; how: string } = { target: '-', iteration: -1, how: 'between cases' };
  const stray = (kind: string) => (e: unknown): void => {
    report.failures.push({ ...current, problem: `${kind}: ${e instanceof Error ? `${e.name}: ${e.message.split('\n')[0]}` : String(e)}` });
  };
  const onException = stray('uncaught exception');
  const onRejection = stray('unhandled rejection');
  // a process warning is text on stderr bpfcr did not mean to print (a descriptor closed on
  // garbage collection, a library's YAMLWarning)
  const onWarning = stray('process warning');
  process.on('uncaughtException', onException);
  process.on('unhandledRejection', onRejection);
  process.on('warning', onWarning);
  try {
    for (const name of opts.targets ?? Object.keys(TARGETS)) {
      const make = TARGETS[name];
      if (!make) throw new Error(`unknown fuzz target ${name} (known: ${Object.keys(TARGETS).join(', ')})`);
      const target = make();
      // each target its own stream of cases, so that adding one leaves the others' cases as they were
      const rng = new Rng(opts.seed * 1000003 + [...name].reduce((a, c) => a * 31 + c.charCodeAt(0), 7));
      const t1 = Date.now();
      const run = await target.setup({ rng, work, tmp });
      report.cases[name] = 0;
      report.accepted[name] = 0;
      const refusals: Record<string, number> = (report.refusals[name] = {});
      try {
        for (let i = 0; i < opts.iterations; i++) {
          current = { target: name, iteration: i, how: '(setting up)' };
          const { how, verdict } = await run(i);
          current = { target: name, iteration: i, how };
          report.cases[name]!++;
          if ('problem' in verdict) report.failures.push({ target: name, iteration: i, how, problem: verdict.problem });
          else if (verdict.accepted) report.accepted[name]!++;
          else {
            const r = reason(verdict.message);
            refusals[r] = (refusals[r] ?? 0) + 1;
          }
          // a stray error from this case is reported before the next one starts
          await new Promise((r) => setImmediate(r));
        }
      } finally {
        await target.teardown?.();
      }
      opts.log?.(`${name}: ${report.cases[name]} cases in ${Date.now() - t1} ms (${report.accepted[name]} accepted), ${report.failures.filter((f) => f.target === name).length} failure(s)`);
    }
  } finally {
    current = { target: '-', iteration: -1, how: 'after the run' };
    await new Promise((r) => setTimeout(r, 50));
    process.off('uncaughtException', onException);
    process.off('unhandledRejection', onRejection);
    process.off('warning', onWarning);
    if (oldTmp === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = oldTmp;
    rmSync(work, { recursive: true, force: true });
  }
  report.ms = Date.now() - t0;
  return report;
}
