import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { HEADER_MEMBER } from '../../archive/format.js';
import { verifyArchive, type MemberCheck } from '../../archive/reader.js';
import { ARCHIVE, INFO_FILE } from '../../criu/files.js';
import { readRecord, type CheckpointRecord } from '../../criu/record.js';
import { legacyHint, podmanExportParts, type ExportPart, type ExportParts } from '../autoprefix.js';
import { chunkMember, metaMember, type MapRecord } from '../../maps/meta.js';
import { type Command, hex, parse, table, UsageError } from '../command.js';
import { jsonText, programsJson, programsReport, renderPrograms } from '../programs-report.js';
import { termSafe } from '../../archive/names.js';

/** The container's io.bpfcr.pins maps in a CRIU image dir (src/oci/checkpoint-pins.ts PINS_FILE). */
const PINS_ARCHIVE = 'bpfcr-pins.tar';
/** Where bpfcr before bpfcr.tar put the map archive in an image dir (a directory archive). */
const OLD_ARCHIVE_DIR = 'bpfcr';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'list the maps in an archive and verify its checksums',
  usage: `Usage: bpfcr inspect IN [--json] [--prefix P]

Read the whole archive, verify every member's size and SHA-256 against the manifest,
and list its maps. Exit 1 when any member fails verification. A podman checkpoint
export (podman container checkpoint --export F, zstd or gzip) is read as it is: it
lists the maps the checkpointed processes held (checkpoint/bpfcr.tar) and the
container's io.bpfcr.pins maps (checkpoint/bpfcr-pins.tar), each verified. An OCI
hook state file (/var/lib/bpfcr/state/*.tar) is read like any archive.

A CRIU checkpoint — its image directory, the bpfcr.tar in it, or a podman export —
also has its programs and links listed (from bpfcr-checkpoint.json): what each
program is attached to and where its BPF ELF object was found at dump, if it was.

Arguments:
  IN                   archive (.tar, .tar.gz, .tar.zst, directory, or - for stdin),
                       a CRIU image directory, or a podman checkpoint export
Options:
      --prefix P       the bpfcr archive sits under member prefix P of a larger tar
      --json           machine-readable output (manifest + per-member verification;
                       a checkpoint's programs and links)
  -h, --help           show this help`,

  async run(argv) {
    const p = parse(this, argv, { json: { type: 'boolean' }, prefix: { type: 'string' } });
    if (!p) return 0;
    const [input, ...extra] = p.positionals;
    if (!input) throw new UsageError('inspect needs an input archive');
    if (extra.length) throw new UsageError(`unexpected argument: ${extra[0]}`);
    const prefix = p.values.prefix;
    const json = p.values.json ?? false;
    if (prefix !== undefined || input === '-') return showArchive(input, prefix, json);
    const image = imageDirParts(input);
    if (image) return showCheckpoint(`CRIU image dir ${input}`, { imageDir: input }, image, json, (member) => join(input, member));
    try {
      return await showArchive(input, undefined, json, recordBeside(input));
    } catch (e) {
      if (!/not a bpfcr archive: first member is /.test((e as Error).message)) throw e;
      if (legacyHint(e, input) !== e) throw legacyHint(e, input);
      const found = await podmanExportParts(input);
      if (!found) throw e;
      try {
        return await showCheckpoint(`podman checkpoint export ${input}`, { export: input }, found, json, (member) => `${input}:${member}`);
      } finally {
        found.cleanup();
      }
    }
  },
};

interface Shown { rc: number; out: Record<string, unknown>; members: MemberCheck[] }

type RecordSource = NonNullable<ExportParts['record']>;

/** A plain archive (with the record of the image dir it sits in, when it is a CRIU image dir's bpfcr.tar). */
async function showArchive(input: string, prefix: string | undefined, json: boolean, record?: RecordSource): Promise<number> {
  const s = await show(input, input, prefix, json);
  let rc = s.rc;
  let out = s.out;
  if (record) {
    if (!json) process.stdout.write(`== ${join(dirname(input), INFO_FILE)}: programs and links of the checkpointed processes\n`);
    const r = programs(record, join(dirname(input), INFO_FILE), json, s.members);
    rc = Math.max(rc, r.rc);
    out = { ...out, ...r.out };
  }
  if (json) process.stdout.write(jsonText(out) + '\n');
  return rc;
}

/**
 * A CRIU checkpoint (image dir or podman export): its archives, then its programs and links.
 * `labelOf` names a file of the checkpoint in messages.
 */
async function showCheckpoint(
  what: string, head: Record<string, string>, found: Pick<ExportParts, 'parts' | 'record'>, json: boolean, labelOf: (member: string) => string,
): Promise<number> {
  let rc = 0;
  const parts: unknown[] = [];
  let mapMembers: MemberCheck[] = [];
  for (const part of found.parts) {
    const heading = part.what === 'maps'
      ? `${part.member}: maps held by the checkpointed processes`
      : `${part.member}: maps pinned under the container's io.bpfcr.pins`;
    if (!json) process.stdout.write(`== ${what}, ${heading}\n`);
    const s = await show(labelOf(part.member), part.input, part.prefix, json);
    if (part.what === 'maps') mapMembers = s.members;
    parts.push({ member: part.member, what: part.what, ...s.out });
    rc = Math.max(rc, s.rc);
  }
  let extra: Record<string, unknown> = {};
  if (found.record) {
    if (!json) process.stdout.write(`== ${what}, ${found.record.member}: programs and links of the checkpointed processes\n`);
    const r = programs(found.record, labelOf(found.record.member), json, mapMembers, !found.parts.some((p) => p.what === 'maps'));
    rc = Math.max(rc, r.rc);
    extra = r.out;
  }
  if (json) process.stdout.write(jsonText({ ...head, parts, ...extra }) + '\n');
  return rc;
}

/**
 * The programs and links of a checkpoint record: printed (human form), returned for --json.
 * A record that cannot be read is reported on stderr (exit 1); the maps were listed all the same.
 */
function programs(src: RecordSource, label: string, json: boolean, members: MemberCheck[], archiveMissing = false): { rc: number; out: Record<string, unknown> } {
  let rec: CheckpointRecord | undefined;
  let problem = src.problem;
  if (!problem && src.dir) {
    try {
      rec = readRecord(src.dir);
      if (!rec) problem = 'missing';
    } catch (e) {
      problem = (e as Error).message.replace(`${INFO_FILE} in the image dir `, '').replace(`${INFO_FILE} `, '');
    }
  }
  if (!rec) {
    const why = problem ?? 'missing';
    process.stderr.write(`bpfcr inspect: ${termSafe(label)}: ${/^(is|has) /.test(why) ? 'the checkpoint record ' : 'cannot read the checkpoint record: '}${termSafe(why)}\n`);
    return { rc: 1, out: { checkpoint: { error: problem ?? 'missing' } } };
  }
  let rc = 0;
  if (archiveMissing && rec.archive) {
    process.stderr.write(`bpfcr inspect: ${termSafe(label)}: the record names the map archive ${termSafe(String(rec.archive))}, which is missing\n`);
    rc = 1;
  }
  const report = programsReport(rec, members);
  if (!json) {
    const host: CheckpointRecord['host'] = rec.host && typeof rec.host === 'object' ? rec.host : { hostname: '', bootId: '' };
    process.stdout.write(`checkpoint ${termSafe(String(rec.key ?? '?'))}: taken ${termSafe(String(rec.created ?? '?'))} on ${termSafe(String(host.hostname || '?'))} (${host.kernel ? `kernel ${termSafe(String(host.kernel))}, ` : ''}boot ${termSafe(String(host.bootId || '?'))})${rec.leaveRunning ? ', tasks left running' : ''}\n`);
    process.stdout.write(renderPrograms(report));
  }
  return {
    rc,
    out: {
      checkpoint: { key: rec.key, created: rec.created, host: rec.host, leaveRunning: rec.leaveRunning, ...(rec.archive ? { archive: rec.archive } : {}) },
      ...programsJson(report),
    },
  };
}

function isFile(p: string): boolean {
  try { return statSync(p).isFile(); } catch { return false; }
}

function isDir(p: string): boolean {
  try { return statSync(p).isDirectory(); } catch { return false; }
}

/**
 * A CRIU image directory (one holding bpfcr.tar and/or bpfcr-checkpoint.json, not itself a directory
 * archive): its archives and record, as a podman export's; undefined for anything else.
 */
function imageDirParts(input: string): Pick<ExportParts, 'parts' | 'record'> | undefined {
  if (!isDir(input) || existsSync(join(input, HEADER_MEMBER))) return undefined;
  const parts: ExportPart[] = [];
  if (isFile(join(input, ARCHIVE))) parts.push({ what: 'maps', input: join(input, ARCHIVE), member: ARCHIVE });
  else if (isFile(join(input, OLD_ARCHIVE_DIR, HEADER_MEMBER))) parts.push({ what: 'maps', input: join(input, OLD_ARCHIVE_DIR), member: `${OLD_ARCHIVE_DIR}/` });
  if (isFile(join(input, PINS_ARCHIVE))) parts.push({ what: 'pins', input: join(input, PINS_ARCHIVE), member: PINS_ARCHIVE });
  const hasRecord = existsSync(join(input, INFO_FILE));
  if (!parts.length && !hasRecord) return undefined;
  return { parts, ...(hasRecord ? { record: { member: INFO_FILE, dir: input } } : {}) };
}

/** The record next to a CRIU image dir's bpfcr.tar given by its path. */
function recordBeside(input: string): RecordSource | undefined {
  if (basename(input) !== ARCHIVE || !isFile(input)) return undefined;
  const dir = dirname(input);
  return existsSync(join(dir, INFO_FILE)) ? { member: INFO_FILE, dir } : undefined;
}

async function show(label: string, input: string, prefix: string | undefined, json: boolean): Promise<Shown> {
    const res = await verifyArchive(input, prefix ? { prefix } : {});
    const maps = (res.manifest['maps'] ?? []) as MapRecord[];
    const failed = new Set(res.members.filter((m) => !m.ok).map((m) => m.name));
    const mapOk = (m: MapRecord): boolean => {
      if (failed.has(metaMember(m.index))) return false;
      for (let c = 0; c < m.chunks; c++) if (failed.has(chunkMember(m.index, c))) return false;
      return true;
    };
    const shown: Shown = { rc: res.ok ? 0 : 1, out: { ok: res.ok, manifest: res.manifest, members: res.members }, members: res.members };
    if (json) return shown;
    const h = res.manifest;
    // every field comes from the archive (a file from anywhere): escaped, whatever its type claims
    const t = (v: unknown): string => termSafe(String(v));
    process.stdout.write(`archive ${t(label)}: format ${t(h.format)} v${t(h.version)}, by ${t(h.tool?.name)} ${t(h.tool?.version)} on ${t(h.hostname)} (kernel ${t(h.kernel)}, ${t(h.possibleCpus)} possible CPUs), ${t(h.created)}\n`);
    process.stdout.write(table(
      ['#', 'NAME', 'TYPE', 'KEY', 'VALUE', 'MAX', 'ENTRIES', 'FLAGS', 'BTF', 'FROZEN', 'ROLE', 'POLICY', 'CHECKSUM'],
      maps.map((m) => [
        t(m.index), m.name ? t(m.name) : '-', t(m.type), t(m.keySize), t(m.valueSize), t(m.maxEntries),
        t(m.entries), typeof m.flags === 'number' ? hex(m.flags) : t(m.flags), m.btf ? `${t(m.btf.keyTypeId)}/${t(m.btf.valueTypeId)}` : '-', m.frozen ? 'yes' : 'no',
        m.top ? 'top' : 'inner', t(m.policy), mapOk(m) ? 'ok' : 'MISMATCH',
      ]),
    ));
    // local-storage maps: whose values were carried (one per owner), and what stayed behind
    for (const m of maps) {
      const o = m.owners;
      if (!o || typeof o !== 'object') continue;
      const left = typeof o.leftBehind === 'number' ? `${o.leftBehind} entr${o.leftBehind === 1 ? 'y' : 'ies'} of ${t(o.kind)} owners outside the checkpointed processes left behind`
        : `entries of other ${t(o.kind)} owners not counted: ${t(o.leftBehindWhy)}`;
      process.stdout.write(`${t(m.index)} ${m.name ? t(m.name) : '-'}: carried ${t(o.carried)} value(s), one per ${t(o.kind)} owner; ${left}\n`);
    }
    const total = res.members.reduce((a, m) => a + m.size, 0);
    process.stdout.write(`${res.members.length} members, ${total} bytes: ${res.ok ? 'all checksums ok' : `${failed.size} member(s) FAILED: ${[...failed].map(t).join(', ')}`}\n`);
    return shown;
}
