/**
 * Archives as an attacker writes them: a real dump read back, changed, and written again by hand
 * with every checksum recomputed (the manifest's own included), so the only thing between the
 * change and the kernel is bpfcr's validation. Small archives only (members are held in memory).
 */
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HEADER_MEMBER, MANIFEST_MEMBER, type ArchiveHeader, type Manifest } from '../../src/archive/format.js';
import { openArchiveReader } from '../../src/archive/reader.js';
import type { MapMeta, MapRecord } from '../../src/maps/meta.js';
import { handTar, headerJson, manifestJson } from '../archive/helpers.js';
import { CLI, type CliResult } from './env.js';

export interface Member { name: string; data: Buffer }

export interface Parsed {
  header: ArchiveHeader;
  manifest: Manifest;
  /** engine and other members in archive order (header and manifest excluded) */
  members: Member[];
}

export async function readArchive(path: string): Promise<Parsed> {
  const r = await openArchiveReader(path);
  const members: Member[] = [];
  try {
    for await (const m of r.members()) members.push({ name: m.name, data: await m.read() });
    return { header: r.header, manifest: await r.finish(), members };
  } finally {
    await r.close();
  }
}

export interface Changes {
  header?: (h: Record<string, unknown>) => Record<string, unknown>;
  /** a map's meta.json (its manifest record follows, unless `records` says otherwise) */
  meta?: (m: MapMeta) => MapMeta;
  /** a data member of map `meta` */
  data?: (name: string, data: Buffer, meta: MapMeta) => Buffer;
  /** the manifest's map records, after the metas changed */
  records?: (r: MapRecord[]) => MapRecord[];
  /** members to add at the end (before the manifest) */
  add?: Member[];
}

/** Write `p` with `c` applied as a plain tar: a forged archive whose checksums all verify. */
export async function forge(p: Parsed, c: Changes = {}): Promise<Buffer> {
  const header = (c.header ?? ((h) => h))({ ...p.header } as unknown as Record<string, unknown>);
  const metas = new Map<number, MapMeta>();
  const members: Member[] = [];
  for (const m of [...p.members, ...(c.add ?? [])]) {
    const which = /^maps\/(\d{4})\/(meta\.json|data-\d{6}\.bin)$/.exec(m.name);
    if (which && which[2] === 'meta.json') {
      const meta = (c.meta ?? ((x) => x))(JSON.parse(m.data.toString()) as MapMeta);
      metas.set(meta.index, meta);
      members.push({ name: m.name, data: Buffer.from(JSON.stringify(meta)) });
    } else if (which && c.data) {
      members.push({ name: m.name, data: c.data(m.name, m.data, metas.get(Number(which[1]))!) });
    } else members.push(m);
  }
  const old = (p.manifest['maps'] ?? []) as MapRecord[];
  let records = old.map((r) => ({ ...(metas.get(r.index) ?? r), entries: r.entries, chunks: r.chunks }));
  if (c.records) records = c.records(records);
  const h = headerJson(header);
  const all = [{ name: HEADER_MEMBER, data: h }, ...members];
  return handTar([...all, { name: MANIFEST_MEMBER, data: manifestJson(all, { maps: records, btf: p.manifest['btf'] ?? [] }, header) }]);
}

/** The bpf(2) commands a CLI run issued (strace), with its result. */
export async function cliBpfCalls(args: string[], opts: { input?: Buffer; work: string; env?: Record<string, string> }): Promise<CliResult & { bpf: string[] }> {
  const log = join(opts.work, `strace-${process.hrtime.bigint()}.log`);
  const r = await execa('strace', ['-f', '-qq', '-e', 'trace=bpf', '-e', 'signal=none', '-o', log, process.execPath, CLI, ...args], {
    reject: false, stripFinalNewline: true,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    env: { BPFCR_CONFIG: '', ...opts.env },
  });
  const bpf = readFileSync(log, 'utf8').split('\n').map((l) => /bpf\((BPF_[A-Z_]+)/.exec(l)?.[1]).filter((x): x is string => !!x);
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), bpf };
}
