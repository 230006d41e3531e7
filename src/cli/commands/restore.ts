import { loadConfig } from '../../config/config.js';
import { restore } from '../../engine/restore.js';
import { withAutoPrefix } from '../autoprefix.js';
import { type Command, parse, table, UsageError } from '../command.js';

export const restoreCommand: Command = {
  name: 'restore',
  summary: 'recreate the maps of an archive and pin them on a bpffs',
  usage: `Usage: bpfcr restore IN --pin-dir DIR [options]

Verify the archive and recreate every map in it (metadata, BTF, contents, frozen
state, map-in-map inner maps), then pin each top-level map as DIR/<map name>
(a numeric suffix only when names clash; unnamed maps: map_<old id>).
Nothing is pinned unless every member verified and every map was rebuilt.

Arguments:
  IN                   archive: .tar, .tar.gz, .tar.zst (detected by content), a directory,
                       or - for stdin
Options:
  -d, --pin-dir DIR    directory on a bpffs (created if missing; refused if not on bpffs)
      --prefix P       read the archive found under member prefix P inside a larger tar
      --config FILE    config (percpu.cpu_mismatch; default /etc/bpfcr/config.yaml)
      --json           print the result as JSON
  -h, --help           show this help`,

  async run(argv) {
    const p = parse(this, argv, {
      'pin-dir': { type: 'string', short: 'd' },
      prefix: { type: 'string' },
      config: { type: 'string' },
      json: { type: 'boolean' },
      iterate: { type: 'boolean' },
    });
    if (!p) return 0;
    const [input, ...extra] = p.positionals;
    if (!input) throw new UsageError('restore needs an input archive');
    if (extra.length) throw new UsageError(`unexpected argument: ${extra[0]}`);
    const pinDir = p.values['pin-dir'];
    if (!pinDir) throw new UsageError('restore needs --pin-dir DIR');
    const config = await loadConfig(p.values.config);
    const maps = await withAutoPrefix(input, p.values.prefix, (prefix, input) => restore({
      input, pinDir, config, forceIterate: p.values.iterate ?? false, ...(prefix ? { prefix } : {}),
    }));
    if (p.values.json) {
      process.stdout.write(JSON.stringify({ maps }, null, 2) + '\n');
    } else {
      process.stdout.write(table(['NAME', 'TYPE', 'ENTRIES', 'OLD ID', 'NEW ID', 'PINNED AT'],
        maps.map((m) => [m.name || '-', m.type, String(m.entries), String(m.oldId), String(m.newId), m.pinPath ?? '(inner map)'])));
    }
    return 0;
  },
};
