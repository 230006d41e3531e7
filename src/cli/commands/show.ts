import { once } from 'node:events';
import { termSafe } from '../../archive/names.js';
import { toJson } from '../../btf/dump.js';
import type { MapMeta } from '../../maps/meta.js';
import { type Command, parse, UsageError } from '../command.js';
import { MapView, mapTitle, readArchiveMaps, withArchive, type ArchiveSoFar, type Chunk } from '../map-contents.js';

/** Entries rendered per write to stdout. */
const WRITE_BATCH = 4096;

export const showCommand: Command = {
  name: 'show',
  summary: "print a map's entries from an archive (keys and values decoded by BTF)",
  usage: `Usage: bpfcr show IN MAP [--json] [--pins] [--prefix P]

Print the entries of one map of an archive, verifying the archive as it is read.
With BTF in the archive (the map was created with BTF: libbpf maps are), keys
and values are decoded by their types — ints with their sign, structs by field,
arrays, enums by name, bitfields, per-CPU values per CPU; without, as hex bytes.
Map-in-map values name their inner map. QUEUE/STACK values print in push order
(oldest first); local-storage values with their owner.

Arguments:
  IN                   archive (.tar, .tar.gz, .tar.zst, directory, - for stdin),
                       a CRIU image directory (its bpfcr.tar), or a podman
                       checkpoint export (its checkpoint/bpfcr.tar)
  MAP                  the map's index (as 'bpfcr inspect' lists it) when all
                       digits, else its name (the first map of that name)
Options:
      --json           the entries as 'bpftool map dump -j' prints them: an array
                       of {"key": ["0x01",…], "value": [...]} (per-CPU: "values":
                       [{"cpu": N, "value": [...]}]), with "formatted" holding the
                       decoded key and value when the archive has the map's BTF;
                       see docs/cli-json.md
      --pins           the io.bpfcr.pins maps of a CRIU checkpoint (bpfcr-pins.tar
                       in the image dir or podman export) instead of the held ones
      --prefix P       the bpfcr archive sits under member prefix P of a larger tar
  -h, --help           show this help

Exit status: 0 shown; 1 the archive failed verification (what was printed before
the failure may be incomplete), the map is not in it, or its BTF could not be
used (the entries are then shown as hex); 2 usage.`,

  async run(argv) {
    const p = parse(this, argv, { json: { type: 'boolean' }, pins: { type: 'boolean' }, prefix: { type: 'string' } });
    if (!p) return 0;
    const [input, spec, ...extra] = p.positionals;
    if (!input || spec === undefined) throw new UsageError('show needs an archive and a map (index or name)');
    if (extra.length) throw new UsageError(`unexpected argument: ${extra[0]}`);
    const json = p.values.json ?? false;
    const byIndex = /^\d+$/.test(spec) ? Number(spec) : undefined;

    const label = input === '-' ? '<stdin>' : input;
    // the first map of that name (or the index): its meta comes before its data members
    let matched: number | undefined;
    let chosen: MapView | undefined;
    let printed = 0;
    const write = async (text: string): Promise<void> => {
      // respect the pipe: a million entries must not pile up in memory ahead of `less` or jq
      if (!process.stdout.write(text)) await once(process.stdout, 'drain');
    };
    const want = (meta: MapMeta): boolean => {
      if (matched !== undefined || (byIndex !== undefined ? meta.index !== byIndex : meta.name !== spec)) return false;
      matched = meta.index;
      return true;
    };
    const onChunk = async (chunk: Chunk, sofar: ArchiveSoFar): Promise<void> => {
      if (!chosen) {
        chosen = new MapView(chunk.meta, sofar);
        if (json) await write('[');
        else await write(heading(chosen, label) + '\n');
      }
      const v = chosen;
      // a few thousand entries per write: flat strings of bounded size, whatever the chunk holds
      for (let i = 0; i < chunk.length; i += WRITE_BATCH) {
        const part: string[] = [];
        for (let k = i; k < Math.min(i + WRITE_BATCH, chunk.length); k++) {
          const e = chunk.entry(k);
          if (json) part.push(`${printed++ ? ',' : ''}\n${toJson(v.json(e))}`);
          else part.push(...v.text(e)), printed++;
        }
        await write(json ? part.join('') : part.join('\n') + '\n');
      }
    };

    const result = await withArchive(input, p.values.prefix, p.values.pins ? 'pins' : 'maps', (file, prefix) =>
      readArchiveMaps(file, prefix, label, want, onChunk));
    // a map without entries has had no onChunk
    if (!chosen) {
      const meta = matched === undefined ? undefined : result.metas[matched];
      if (!meta) throw new Error(`${label}: no map ${byIndex !== undefined ? `with index ${byIndex}` : `named '${termSafe(spec)}'`} (it has ${mapList(result.metas)})`);
      chosen = new MapView(meta, result);
      await write(json ? '[' : heading(chosen, label) + '\n');
    }
    await write(json ? '\n]\n' : '');
    if (!json) process.stderr.write(`${printed} entr${printed === 1 ? 'y' : 'ies'}\n`);
    if (chosen.btfProblem) {
      process.stderr.write(`bpfcr show: ${termSafe(label)}: ${mapTitle(chosen.meta)}: BTF not used: ${termSafe(chosen.btfProblem)}\n`);
      return 1;
    }
    return 0;
  },
};

function heading(v: MapView, label: string): string {
  const m = v.meta;
  const order = m.layout === 'values' ? ', values in push order (oldest first)' : '';
  const btf = v.hasBtf ? `, BTF key/value types ${m.btf!.keyTypeId}/${m.btf!.valueTypeId}` : m.btf ? ', BTF not usable (hex)' : ', no BTF (hex)';
  const cpus = v.percpu ? `, ${v.cpus} CPUs` : '';
  return `${mapTitle(m)} in ${termSafe(label)}: key ${m.keySize} B, value ${m.valueSize} B, max ${m.maxEntries}${cpus}${btf}${order}`;
}

/** "0 'flows', 1 'stats', …" (at most 20), to say what the archive does have. */
export function mapList(metas: MapMeta[]): string {
  if (!metas.length) return 'no maps';
  const names = metas.slice(0, 20).map((m) => `${m.index} ${m.name ? `'${termSafe(m.name)}'` : '(unnamed)'}`);
  return `maps ${names.join(', ')}${metas.length > 20 ? `, … (${metas.length} in all)` : ''}`;
}
