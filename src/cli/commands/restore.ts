import { loadConfig } from '../../config/config.js';
import { parseSize } from '../../config/size.js';
import { restore, type Restored, type RestoredMap } from '../../engine/restore.js';
import type { MapMeta } from '../../maps/meta.js';
import { PinDir } from '../../oci/pins.js';
import { withAutoPrefix } from '../autoprefix.js';
import { termSafe } from '../../archive/names.js';
import { type Command, parse, table, UsageError } from '../command.js';
import { jsonText } from '../programs-report.js';
import { PROGRESS_FLAGS, PROGRESS_USAGE, ProgressReporter } from '../progress.js';

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
      --config FILE    config (percpu.cpu_mismatch, restore budgets; default /etc/bpfcr/config.yaml)
      --memory-budget SIZE
                       kernel memory the restored maps may take, estimated from the archive
                       before any map is created (e.g. 8GiB; default restore.memory_budget in
                       the config, else the smaller of 4 GiB and half the RAM)
      --host-memory-budget SIZE
                       memory bpfcr may hold for the restore (default restore.host_memory_budget,
                       else 256 MiB)
      --json           print the result as JSON
${PROGRESS_USAGE}
  -h, --help           show this help`,

  async run(argv) {
    const p = parse(this, argv, {
      'pin-dir': { type: 'string', short: 'd' },
      prefix: { type: 'string' },
      config: { type: 'string' },
      'memory-budget': { type: 'string' },
      'host-memory-budget': { type: 'string' },
      json: { type: 'boolean' },
      iterate: { type: 'boolean' },
      ...PROGRESS_FLAGS,
    });
    if (!p) return 0;
    const [input, ...extra] = p.positionals;
    if (!input) throw new UsageError('restore needs an input archive');
    if (extra.length) throw new UsageError(`unexpected argument: ${extra[0]}`);
    const pinDir = p.values['pin-dir'];
    if (!pinDir) throw new UsageError('restore needs --pin-dir DIR');
    const config = await loadConfig(p.values.config);
    // the flags beat the config file
    for (const [flag, key] of [['memory-budget', 'memoryBudget'], ['host-memory-budget', 'hostMemoryBudget']] as const) {
      const v = p.values[flag];
      if (v === undefined) continue;
      const bytes = parseSize(v);
      if (bytes === undefined) throw new UsageError(`--${flag}: not a size (e.g. 4GiB, 512MiB, or bytes): ${v}`);
      config[key] = bytes;
    }
    const progress = new ProgressReporter('restore', p.values);
    const maps = await restoreAndPin(pinDir, () => withAutoPrefix(input, p.values.prefix, (prefix, input) => restore({
      input, config, forceIterate: p.values.iterate ?? false, ...(prefix ? { prefix } : {}), progress: progress.callback,
    }))).finally(() => progress.done());
    // names come from the archive: escaped for the terminal (jsonText escapes what JSON leaves raw)
    if (p.values.json) {
      process.stdout.write(jsonText({ maps }) + '\n');
    } else {
      process.stdout.write(table(['NAME', 'TYPE', 'ENTRIES', 'OLD ID', 'NEW ID', 'PINNED AT'],
        maps.map((m) => [m.name ? termSafe(m.name) : '-', termSafe(m.type), String(m.entries), String(m.oldId), String(m.newId), m.pinPath ? termSafe(m.pinPath) : '(inner map)'])));
    }
    for (const m of maps) {
      if (m.valuesDeferred) process.stderr.write(`bpfcr restore: ${m.name ? termSafe(m.name) : '-'}: created without its ${m.entries} value(s): they belong to the dumped tasks, sockets, files and cgroups, which only a CRIU restore of those processes brings back\n`);
    }
    return 0;
  },
};

type PinnedMap = Omit<RestoredMap, 'fd'> & { pinPath?: string };

/**
 * Transactional: the pin dir is checked (and created) before the archive is read, the maps are
 * pinned only once restore() has verified the whole archive, and on any error nothing stays
 * pinned and a pin dir this created is removed (the new maps die with their fds).
 */
async function restoreAndPin(pinDir: string, load: () => Promise<Restored>): Promise<PinnedMap[]> {
  const dir = PinDir.open(pinDir, { create: true });
  // An exit on the way (SIGINT/SIGTERM exit through process.exit, see main.ts) must not leave the
  // pin dir this created, nor pins in it: discard() is synchronous, so it can run at exit.
  const onExit = (): void => dir.discard();
  process.once('exit', onExit);
  try {
    const restored = await load();
    try {
      const names = pinNames(restored.filter((m) => m.top).map((m) => ({ index: m.index, name: m.name, id: m.oldId })));
      let paths: string[];
      try {
        paths = dir.pin([...names].map(([index, name]) => ({ fd: restored[index]!.fd, name })));
      } catch (e) {
        if ((e as { code?: string }).code === 'EEXIST') throw new Error(`${(e as Error).message}: restore into an empty --pin-dir or remove it`);
        throw e;
      }
      const pinPath = new Map([...names.keys()].map((index, i) => [index, paths[i]!]));
      return restored.map(({ fd: _fd, ...m }) => ({ ...m, ...(pinPath.has(m.index) ? { pinPath: pinPath.get(m.index)! } : {}) }));
    } finally {
      restored.close();
    }
  } catch (e) {
    dir.discard();
    throw e;
  } finally {
    process.off('exit', onExit);
    dir.close();
  }
}

/** DIR/<map name>, numeric suffix only when two maps share a name; unnamed maps get map_<old id>. */
export function pinNames(metas: Pick<MapMeta, 'index' | 'name' | 'id'>[]): Map<number, string> {
  const out = new Map<number, string>();
  const used = new Set<string>();
  for (const m of metas) {
    const base = m.name || `map_${m.id}`;
    let name = base;
    for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
    used.add(name);
    out.set(m.index, name);
  }
  return out;
}
