import { termSafe } from '../../archive/names.js';
import { type Command, parse, table } from '../command.js';
import { DEFAULT_PATHS, runChecks, type DoctorPaths } from '../doctor.js';
import { jsonText } from '../programs-report.js';

const FALLBACK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'check that this host has everything bpfcr needs, and say what to fix',
  usage: `Usage: bpfcr doctor [--json] [path options]

Check, one line each, what bpfcr needs and uses: bpf(2) and the kernel features
(batch ops, BTF), the bpffs, the CRIU staging area (stale checkpoints), the
config file, CRIU (version, 'criu check', bpfcr's patches in the binary), the
CRIU plugin (loads, its ABI matches CRIU's, its hooks), the action script in
CRIU's config, the OCI hooks for podman, runc/podman/containerd, tracefs (for
perf-event attachments) and libbpf. Problems say what to do about them.

Exit status: 0 everything needed is there (warnings are things an optional path
lacks); 1 something needed is missing (the last line names the checks); 2 usage.

Options (where to look; the defaults are where ./install.sh puts things):
      --bpffs DIR        host bpffs (default ${DEFAULT_PATHS.bpffs})
      --staging DIR      CRIU staging root (default: config "staging", $BPFCR_STAGING,
                         or /sys/fs/bpf/bpfcr)
      --config FILE      config file (default $BPFCR_CONFIG or /etc/bpfcr/config.yaml)
      --criu PATH        the criu runc/podman run (default: criu on $PATH)
      --criu-prefix DIR  where bpfcr builds CRIU (default ${DEFAULT_PATHS.criuPrefix})
      --plugin-dir DIR   CRIU plugin directory (default ${DEFAULT_PATHS.pluginDir})
      --criu-conf FILE   CRIU config naming the action script (default ${DEFAULT_PATHS.criuConf})
      --hooks-dir DIR    OCI hooks.d directory (default ${DEFAULT_PATHS.hooksDir})
      --tracefs DIR      tracefs mount point (default ${DEFAULT_PATHS.tracefs})
      --libbpf LIB       libbpf to load (default ${DEFAULT_PATHS.libbpf})
      --json             {"ok", "failed", "warnings", "checks": [{"name", "status",
                         "detail", "fix"}]} (docs/cli-json.md)
  -h, --help             show this help`,

  async run(argv) {
    const p = parse(this, argv, {
      json: { type: 'boolean' }, bpffs: { type: 'string' }, staging: { type: 'string' }, config: { type: 'string' },
      criu: { type: 'string' }, 'criu-prefix': { type: 'string' }, 'plugin-dir': { type: 'string' }, 'criu-conf': { type: 'string' },
      'hooks-dir': { type: 'string' }, tracefs: { type: 'string' }, libbpf: { type: 'string' },
    }, false);
    if (!p) return 0;
    const v = p.values;
    const paths: DoctorPaths = {
      bpffs: v.bpffs ?? DEFAULT_PATHS.bpffs,
      staging: v.staging ?? await defaultStaging(v.config),
      criu: v.criu,
      criuPrefix: v['criu-prefix'] ?? DEFAULT_PATHS.criuPrefix,
      pluginDir: v['plugin-dir'] ?? DEFAULT_PATHS.pluginDir,
      criuConf: v['criu-conf'] ?? DEFAULT_PATHS.criuConf,
      hooksDir: v['hooks-dir'] ?? DEFAULT_PATHS.hooksDir,
      tracefs: v.tracefs ?? DEFAULT_PATHS.tracefs,
      libbpf: v.libbpf ?? DEFAULT_PATHS.libbpf,
      config: v.config,
      path: process.env['PATH'] || FALLBACK_PATH,
    };
    const checks = await runChecks(paths);
    const failed = checks.filter((c) => c.status === 'fail').map((c) => c.name);
    const warnings = checks.filter((c) => c.status === 'warn').map((c) => c.name);
    if (v.json) {
      process.stdout.write(jsonText({ ok: failed.length === 0, failed, warnings, checks }) + '\n');
    } else {
      const label = { ok: 'ok', warn: 'WARN', fail: 'FAIL' } as const;
      process.stdout.write(table(['STATUS', 'CHECK', 'DETAIL'], checks.map((c) => [
        label[c.status], c.name, termSafe(c.detail + (c.fix && c.status !== 'ok' ? ` — fix: ${c.fix}` : '')),
      ])));
      process.stdout.write(failed.length
        ? `doctor: ${failed.length} problem(s): ${failed.join(', ')}${warnings.length ? `; warnings: ${warnings.join(', ')}` : ''}\n`
        : `doctor: everything bpfcr needs is here${warnings.length ? ` (warnings: ${warnings.join(', ')})` : ''}\n`);
    }
    return failed.length ? 1 : 0;
  },
};

/** The staging root bpfcr would use; a broken config is the config check's to report. */
async function defaultStaging(config: string | undefined): Promise<string> {
  const { stagingRoot } = await import('../../criu/staging.js');
  try {
    const { loadConfig } = await import('../../config/config.js');
    return stagingRoot((await loadConfig(config)).staging);
  } catch {
    return stagingRoot(undefined);
  }
}
