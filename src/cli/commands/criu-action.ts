import { closeSync } from 'node:fs';
import { termSafe } from '../../archive/names.js';
import { type Command, parse, UsageError } from '../command.js';

const RELEVANT = ['pre-dump', 'post-dump', 'pre-restore', 'post-restore'];

export const criuActionCommand: Command = {
  name: 'criu-action',
  summary: 'CRIU action script: save/restage BPF maps around runc/criu checkpoint and restore',
  usage: `Usage: bpfcr criu-action [ACTION] [--image-dir DIR]

Run by CRIU (through hooks/checkpoint, registered with "action-script" in
/etc/criu/default.conf). CRIU passes the action in
CRTOOLS_SCRIPT_ACTION and the image directory in CRTOOLS_IMAGE_DIR; the
arguments override them for manual runs.

  pre-dump      refuse mapped maps without CRIU's plugin VMA hook, clear bpfcr
                files of an earlier checkpoint, make sure the staging root is on
                a bpffs (mounts one if needed), start the post-dump worker
  post-dump     save every map the CRIU plugin took into <image dir>/bpfcr.tar;
                a failure (e.g. a map whose policy is refuse) fails the dump
  pre-restore   reuse the staged maps (same boot, not in use) or recreate
                them from <image dir>/bpfcr.tar; programs/links from live pins
                or reloaded from the app's BPF object; lists the pins to drop
                once the restore is done, which the CRIU plugin does at its end
                (it owns what it stages); under a runtime's restore, re-create
                the container's io.bpfcr.pins from <image dir>/bpfcr-pins.tar
  post-restore  write local-storage values on the restored owners

Every other action exits 0 at once. Every action is idempotent.
See docs/criu.md.`,

  async run(argv) {
    const p = parse(this, argv, { 'image-dir': { type: 'string' } });
    if (!p) return 0;
    const action = p.positionals[0] ?? process.env['CRTOOLS_SCRIPT_ACTION'];
    if (p.positionals.length > 1) throw new UsageError(`unexpected argument ${p.positionals[1]}`);
    if (!action) throw new UsageError('no action: CRTOOLS_SCRIPT_ACTION is not set (this command is run by CRIU)');
    // "warm": hooks/checkpoint's post-dump worker, started at pre-dump (internal)
    if (!RELEVANT.includes(action) && !(action === 'warm' && p.positionals[0] === 'warm')) return 0;
    const dir = p.values['image-dir'] ?? process.env['CRTOOLS_IMAGE_DIR'];
    if (!dir) throw new UsageError(`${action}: no image dir: CRTOOLS_IMAGE_DIR is not set`);
    if (action === 'pre-dump') {
      // The plugin waits for pre-dump before it takes the first object: load only what pre-dump
      // needs (it touches no map, so there is no journal to recover first)
      const [{ preDump, besideFailed }, { loggedRun, imageDirContainer }] = await Promise.all([import('../../criu/pre-dump.js'), import('../../log/runlog.js')]);
      // hooks/checkpoint ran us beside CRIU, holding fd 8 (released when pre-dump is done) and fd 9
      // (until we exit, as the post-dump worker)
      const beside = process.env['BPFCR_BESIDE_CRIU'] === '1';
      delete process.env['BPFCR_BESIDE_CRIU'];
      try {
        await loggedRun('criu-action pre-dump', imageDirContainer(dir), async () => { await preDump(dir, (m) => process.stderr.write(`bpfcr: ${m}\n`)); return true; });
      } catch (e) {
        if (beside) besideFailed(dir, (e as Error).message);
        throw new Error(`${action}: ${(e as Error).message}`, { cause: e });
      } finally {
        if (beside) closeSync(8);
      }
      if (beside) await (await import('../../criu/actions.js')).runAction('warm', dir);
      return 0;
    }
    const [{ runAction }, { recoverQueueJournals }] = await Promise.all([import('../../criu/actions.js'), import('../../maps/queue-journal.js')]);
    // values an interrupted queue/stack dump took out go back before this action touches maps
    for (const line of recoverQueueJournals()) process.stderr.write(`bpfcr criu-action: ${termSafe(line)}\n`);
    try {
      // resolves to what was carried (post-dump), else true: the run log says "ok"
      const run = async (): Promise<import('../../criu/actions.js').Carried | true> => (await runAction(action as Parameters<typeof runAction>[0], dir)) ?? true;
      if (action === 'warm') await run(); // its post-dump is logged in actions.ts:warm
      else {
        const { loggedRun, imageDirContainer } = await import('../../log/runlog.js');
        await loggedRun(`criu-action ${action}`, imageDirContainer(dir), run, (c) => (c === true ? {} : { maps: c.maps, entries: c.entries, detail: c.detail }));
      }
    } catch (e) {
      throw new Error(`${action}: ${(e as Error).message}`, { cause: e }); // cause: a bug stays a bug (failure.ts)
    }
    return 0;
  },
};
