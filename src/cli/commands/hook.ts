import { type Command, parse, UsageError } from '../command.js';

export const hookCommand: Command = {
  name: 'hook',
  summary: 'run an OCI hook stage by hand (state JSON on stdin)',
  usage: `Usage: bpfcr hook prestart|poststop < state.json

Run what the installed OCI hooks run (hooks/prestart, hooks/poststop), for a container
whose runtime-spec state JSON is on stdin ({"ociVersion","id","status","bundle",
"annotations",...}; the bundle's config.json gives the container's mounts).

  poststop   with io.bpfcr.save-on-stop=FILE: dump the maps pinned under io.bpfcr.pins
             into FILE (under /var/lib/bpfcr/state)
  prestart   with io.bpfcr.restore-from=FILE: re-create them at their pin paths

A container without io.bpfcr.* annotations: nothing happens, exit 0. Messages go to
stderr and to /var/log/bpfcr/oci-hooks.log ($BPFCR_HOOK_LOG; empty: no log file).
See docs/oci-hooks.md.

Options:
  -h, --help           show this help`,

  async run(argv) {
    const p = parse(this, argv, {});
    if (!p) return 0;
    const [stage, ...extra] = p.positionals;
    if (stage !== 'prestart' && stage !== 'poststop') throw new UsageError(`hook needs a stage: prestart or poststop${stage ? ` (got "${stage}")` : ''}`);
    if (extra.length) throw new UsageError(`unexpected argument: ${extra[0]}`);
    // a failure unless hookMain settles (an event loop that runs dry must not look like success)
    process.exitCode = 1;
    const { hookMain } = await import('../../oci/hook-run.js');
    return hookMain([stage]);
  },
};
