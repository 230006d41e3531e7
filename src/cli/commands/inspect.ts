import { verifyArchive } from '../../archive/reader.js';
import { withAutoPrefix } from '../autoprefix.js';
import { chunkMember, metaMember, type MapRecord } from '../../maps/meta.js';
import { type Command, hex, parse, table, UsageError } from '../command.js';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'list the maps in an archive and verify its checksums',
  usage: `Usage: bpfcr inspect IN [--json] [--prefix P]

Read the whole archive, verify every member's size and SHA-256 against the manifest,
and list its maps. Exit 1 when any member fails verification. A podman checkpoint
export (podman container checkpoint --export F, zstd or gzip) is read as it is: its
maps are under checkpoint/bpfcr/.

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
    const res = await withAutoPrefix(input, p.values.prefix, (prefix) => verifyArchive(input, prefix ? { prefix } : {}));
    const maps = (res.manifest['maps'] ?? []) as MapRecord[];
    const failed = new Set(res.members.filter((m) => !m.ok).map((m) => m.name));
    const mapOk = (m: MapRecord): boolean => {
      if (failed.has(metaMember(m.index))) return false;
      for (let c = 0; c < m.chunks; c++) if (failed.has(chunkMember(m.index, c))) return false;
      return true;
    };
    if (p.values.json) {
      process.stdout.write(JSON.stringify({ ok: res.ok, manifest: res.manifest, members: res.members }, null, 2) + '\n');
      return res.ok ? 0 : 1;
    }
    const h = res.manifest;
    process.stdout.write(`archive ${input}: format ${String(h.format)} v${String(h.version)}, by ${h.tool.name} ${h.tool.version} on ${h.hostname} (kernel ${h.kernel}, ${h.possibleCpus} possible CPUs), ${h.created}\n`);
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
  },
};
