import { verifyArchive } from '../../archive/reader.js';
import { legacyHint, podmanExportParts } from '../autoprefix.js';
import { chunkMember, metaMember, type MapRecord } from '../../maps/meta.js';
import { type Command, hex, parse, table, UsageError } from '../command.js';

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

Arguments:
  IN                   archive (.tar, .tar.gz, .tar.zst, directory, or - for stdin)
Options:
      --prefix P       the bpfcr archive sits under member prefix P of a larger tar
      --json           machine-readable output (manifest + per-member verification)
  -h, --help           show this help`,

  async run(argv) {
    const p = parse(this, argv, { json: { type: 'boolean' }, prefix: { type: 'string' } });
    if (!p) return 0;
    const [input, ...extra] = p.positionals;
    if (!input) throw new UsageError('inspect needs an input archive');
    if (extra.length) throw new UsageError(`unexpected argument: ${extra[0]}`);
    const prefix = p.values.prefix;
    const json = p.values.json ?? false;
    if (prefix !== undefined || input === '-') return show(input, input, prefix, json);
    try {
      return await show(input, input, undefined, json);
    } catch (e) {
      if (!/not a bpfcr archive: first member is /.test((e as Error).message)) throw e;
      if (legacyHint(e, input) !== e) throw legacyHint(e, input);
      const found = await podmanExportParts(input);
      if (!found) throw e;
      try {
        let rc = 0;
        const out: unknown[] = [];
        for (const part of found.parts) {
          const heading = part.what === 'maps'
            ? `${part.member}: maps held by the checkpointed processes`
            : `${part.member}: maps pinned under the container's io.bpfcr.pins`;
          if (!json) process.stdout.write(`== podman checkpoint export ${input}, ${heading}\n`);
          const r = await show(`${input}:${part.member}`, part.input, part.prefix, json, (o) => out.push({ member: part.member, what: part.what, ...o }));
          rc = Math.max(rc, r);
        }
        if (json) process.stdout.write(JSON.stringify({ export: input, parts: out }, null, 2) + '\n');
        return rc;
      } finally {
        found.cleanup();
      }
    }
  },
};

async function show(label: string, input: string, prefix: string | undefined, json: boolean, collect?: (o: Record<string, unknown>) => void): Promise<number> {
    const res = await verifyArchive(input, prefix ? { prefix } : {});
    const maps = (res.manifest['maps'] ?? []) as MapRecord[];
    const failed = new Set(res.members.filter((m) => !m.ok).map((m) => m.name));
    const mapOk = (m: MapRecord): boolean => {
      if (failed.has(metaMember(m.index))) return false;
      for (let c = 0; c < m.chunks; c++) if (failed.has(chunkMember(m.index, c))) return false;
      return true;
    };
    if (json) {
      if (collect) collect({ ok: res.ok, manifest: res.manifest, members: res.members });
      else process.stdout.write(JSON.stringify({ ok: res.ok, manifest: res.manifest, members: res.members }, null, 2) + '\n');
      return res.ok ? 0 : 1;
    }
    const h = res.manifest;
    process.stdout.write(`archive ${label}: format ${String(h.format)} v${String(h.version)}, by ${h.tool.name} ${h.tool.version} on ${h.hostname} (kernel ${h.kernel}, ${h.possibleCpus} possible CPUs), ${h.created}\n`);
    process.stdout.write(table(
      ['#', 'NAME', 'TYPE', 'KEY', 'VALUE', 'MAX', 'ENTRIES', 'FLAGS', 'BTF', 'FROZEN', 'ROLE', 'POLICY', 'CHECKSUM'],
      maps.map((m) => [
        String(m.index), m.name || '-', m.type, String(m.keySize), String(m.valueSize), String(m.maxEntries),
        String(m.entries), hex(m.flags), m.btf ? `${m.btf.keyTypeId}/${m.btf.valueTypeId}` : '-', m.frozen ? 'yes' : 'no',
        m.top ? 'top' : 'inner', m.policy, mapOk(m) ? 'ok' : 'MISMATCH',
      ]),
    ));
    const total = res.members.reduce((a, m) => a + m.size, 0);
    process.stdout.write(`${res.members.length} members, ${total} bytes: ${res.ok ? 'all checksums ok' : `${failed.size} member(s) FAILED: ${[...failed].join(', ')}`}\n`);
    return res.ok ? 0 : 1;
}
