import { loadConfig } from '../../config/config.js';
import { dump } from '../../engine/dump.js';
import { type Command, intList, parse, UsageError } from '../command.js';

export const dumpCommand: Command = {
  name: 'dump',
  summary: 'dump the BPF maps held by processes (or selected by id) into an archive',
  usage: `Usage: bpfcr dump --pid PID... [--map-id ID...] -o OUT [options]

Dump every BPF map the processes hold (map-in-map inner maps included) into a
checksummed archive. Maps held by several fds or processes are dumped once.

Options:
  -p, --pid PID        process whose map fds to dump (repeatable, or comma-separated)
  -m, --map-id ID      also dump this map id (repeatable); alone, dumps just these maps
  -o, --output OUT     archive to write: OUT.tar, OUT.tar.gz/.tgz, OUT.tar.zst, a directory,
                       or - for a plain tar on stdout. Written atomically, files mode 0600.
      --force          replace OUT if it exists
      --fsync          fsync OUT before publishing it (durable across a host crash)
      --config FILE    policy file (default /etc/bpfcr/config.yaml if present)
      --iterate        read with get_next_key+lookup instead of batch ops (slower)
  -h, --help           show this help

Map types whose contents cannot be carried are refused unless the config's policy
says "empty" (recreate without contents); see README "Policies".`,

  async run(argv) {
    const p = parse(this, argv, {
      pid: { type: 'string', short: 'p', multiple: true },
      'map-id': { type: 'string', short: 'm', multiple: true },
      output: { type: 'string', short: 'o' },
      force: { type: 'boolean' },
      fsync: { type: 'boolean' },
      config: { type: 'string' },
      iterate: { type: 'boolean' },
    }, false);
    if (!p) return 0;
    const v = p.values;
    const pids = intList('--pid', v.pid);
    const mapIds = intList('--map-id', v['map-id']);
    if (pids.length === 0 && mapIds.length === 0) throw new UsageError('dump needs --pid or --map-id');
    if (!v.output) throw new UsageError('dump needs -o OUT (use - for stdout)');
    const config = await loadConfig(v.config);
    const started = process.hrtime.bigint();
    const res = await dump({ pids, mapIds, output: v.output, config, overwrite: v.force ?? false, fsync: v.fsync ?? false, forceIterate: v.iterate ?? false });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const entries = res.maps.reduce((a, m) => a + m.entries, 0);
    process.stderr.write(`bpfcr: dumped ${res.maps.length} map(s), ${entries} entries, to ${v.output} in ${(ms / 1000).toFixed(2)}s\n`);
    return 0;
  },
};
