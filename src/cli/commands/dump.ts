import { loadConfig } from '../../config/config.js';
import { ArchiveError } from '../../archive/format.js';
import { dump } from '../../engine/dump.js';
import { type Command, intList, parse, UsageError } from '../command.js';
import { PROGRESS_FLAGS, PROGRESS_USAGE, ProgressReporter } from '../progress.js';
import { jsonText } from '../programs-report.js';

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
      --json           print what was dumped as JSON on stdout (docs/cli-json.md; not with -o -)
${PROGRESS_USAGE}
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
      json: { type: 'boolean' },
      ...PROGRESS_FLAGS,
    }, false);
    if (!p) return 0;
    const v = p.values;
    const pids = intList('--pid', v.pid);
    const mapIds = intList('--map-id', v['map-id']);
    if (pids.length === 0 && mapIds.length === 0) throw new UsageError('dump needs --pid or --map-id');
    if (!v.output) throw new UsageError('dump needs -o OUT (use - for stdout)');
    if (v.json && v.output === '-') throw new UsageError('--json and -o - would both write to stdout');
    const config = await loadConfig(v.config);
    const started = process.hrtime.bigint();
    const progress = new ProgressReporter('dump', v);
    const res = await dump({ pids, mapIds, output: v.output, config, overwrite: v.force ?? false, fsync: v.fsync ?? false, forceIterate: v.iterate ?? false, progress: progress.callback })
      .finally(() => progress.done())
      .catch((e: unknown) => {
        // the archive layer knows no flags ("use the overwrite option"): say which one
        if (e instanceof ArchiveError && e.code === 'EXISTS') throw new Error(`archive ${e.archive ?? v.output}: exists; use --force to replace it`, { cause: e });
        throw e;
      });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const entries = res.maps.reduce((a, m) => a + m.entries, 0);
    if (v.json) process.stdout.write(jsonText({ output: v.output, seconds: Number((ms / 1000).toFixed(3)), entries, maps: res.maps.map((m) => ({ index: m.index, id: m.id, name: m.name, type: m.type, entries: m.entries, chunks: m.chunks, policy: m.policy, top: m.top })) }) + '\n');
    if (!v.quiet) process.stderr.write(`bpfcr: dumped ${res.maps.length} map(s), ${entries} entries, to ${v.output} in ${(ms / 1000).toFixed(2)}s\n`);
    return 0;
  },
};
