import { termSafe } from '../../archive/names.js';
import { type Command, parse, UsageError } from '../command.js';

export const gcCommand: Command = {
  name: 'gc',
  summary: 'remove staged CRIU checkpoint objects from the staging area',
  usage: `Usage: bpfcr gc (--all | --older-than DURATION) [--dry-run] [--staging DIR]

Remove the BPF objects the CRIU path staged (one directory per checkpoint under
the staging root, default /sys/fs/bpf/bpfcr, "staging" in /etc/bpfcr/config.yaml,
or $BPFCR_STAGING). Map contents live in the checkpoint's image dir
(<image dir>/bpfcr.tar), so a later restore of a collected checkpoint recreates its
maps from there; what is lost is the zero-copy path and staged programs/links.
Checkpoints a CRIU action or a restore in flight is using are skipped.

First, like every command that touches maps, it puts back the values of any
QUEUE/STACK dump that was killed while it had them taken out (journals under
/var/lib/bpfcr/journal; --dry-run only lists them).

Options:
      --all                  remove every staged checkpoint
      --older-than DURATION  remove checkpoints untouched for DURATION (90s, 30m, 12h, 7d)
  -n, --dry-run              only say what would be removed
      --staging DIR          staging root to collect (default: see above)
      --config FILE          config file (default /etc/bpfcr/config.yaml if present)
      --json                 the result as JSON (docs/cli-json.md)
  -h, --help               show this help`,

  async run(argv) {
    const p = parse(this, argv, {
      all: { type: 'boolean' },
      'older-than': { type: 'string' },
      'dry-run': { type: 'boolean', short: 'n' },
      staging: { type: 'string' },
      config: { type: 'string' },
      json: { type: 'boolean' },
    }, false);
    if (!p) return 0;
    const v = p.values;
    const { gc, parseDuration, formatAge } = await import('../../criu/gc.js');
    if (!v.all && v['older-than'] === undefined) throw new UsageError('gc needs --all or --older-than DURATION (--dry-run to look first)');
    if (v.all && v['older-than'] !== undefined) throw new UsageError('--all and --older-than exclude each other');
    let olderThanMs: number | undefined;
    if (v['older-than'] !== undefined) {
      try { olderThanMs = parseDuration(v['older-than']); } catch (e) { throw new UsageError(`--older-than: ${(e as Error).message}`); }
    }
    let root = v.staging;
    if (!root) {
      const { loadConfig } = await import('../../config/config.js');
      const { stagingRoot } = await import('../../criu/staging.js');
      root = stagingRoot((await loadConfig(v.config)).staging);
    }
    // values an interrupted queue/stack dump took out of a map go back (or, dry run, are listed)
    const { recoverQueueJournals } = await import('../../maps/queue-journal.js');
    const recovered = recoverQueueJournals({ dryRun: v['dry-run'] ?? false });
    const entries = gc({ root, all: v.all ?? false, ...(olderThanMs !== undefined ? { olderThanMs } : {}), dryRun: v['dry-run'] ?? false });
    const out: string[] = recovered.map((line) => `gc: ${line}`);
    let removed = 0;
    let pins = 0;
    for (const e of entries) {
      const what = `checkpoint ${e.key} (${e.pins} pin(s), last change ${formatAge(e.ageMs)} ago)`;
      if (e.action === 'removed') {
        removed++;
        pins += e.pins;
        out.push(`removed ${what}: ${e.path}`);
      } else if (e.reason === 'dry run') {
        out.push(`would remove ${what}: ${e.path}`);
      } else {
        out.push(`kept ${e.action === 'skipped' ? e.path : what}: ${e.reason}`);
      }
    }
    out.push(entries.length === 0
      ? `gc: nothing staged under ${root}`
      : `gc: removed ${removed} checkpoint(s), ${pins} pin(s) from ${root}${v['dry-run'] ? ' (dry run: nothing removed)' : ''}`);
    if (v.json) {
      const { jsonText } = await import('../programs-report.js');
      process.stdout.write(jsonText({ root, dryRun: v['dry-run'] ?? false, recovered, removed, pins, checkpoints: entries }) + '\n');
      return 0;
    }
    process.stdout.write(out.map(termSafe).join('\n') + '\n');
    return 0;
  },
};
