/**
 * pre-dump: the checks that must stop a dump before bpfcr takes anything, the image dir made clean,
 * the staging root ready. hooks/checkpoint runs it beside CRIU's dump (the plugin waits for it before
 * it takes the first object), and its Node then stays on as the post-dump worker (actions.ts warm).
 * Kept apart from actions.ts: it runs before anything else of the CRIU glue is needed.
 */
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DUMP_ERROR_FILE, DUMP_STATE, STAGING_FILE, has, remove, warmDir, writeAtomic } from './files.js';
import { criuPid, processTree } from './proc.js';
import { ensureStagingRoot, stagingRoot } from './staging.js';

export async function preDump(dir: string, note: (msg: string) => void): Promise<void> {
  const cpid = criuPid(dir);
  refuseMappedMapsWithoutVmaHook(cpid);
  const mine = warmDir(dir, cpid).slice(dir.length + 1);
  const stale = [...DUMP_STATE.filter((n) => has(dir, n)), ...readdirSync(dir).filter((n) => n.startsWith('.bpfcr-warm-') && n !== mine)];
  for (const n of stale) remove(dir, n);
  if (stale.length) note(`pre-dump: removed ${stale.join(', ')} left in the image dir by an earlier checkpoint`);
  // The plugin reads no config and podman passes criu almost no environment: tell it the
  // configured staging root through the image dir (it reads bpfcr-staging before its default).
  const { loadConfig } = await import('../config/config.js');
  const root = stagingRoot((await loadConfig()).staging);
  writeFileSync(join(dir, STAGING_FILE), `${root}\n`, { mode: 0o600 });
  const { mounted } = ensureStagingRoot(root);
  if (mounted) note(`pre-dump: mounted a bpffs on ${mounted} for the staging root ${root}`);
}

/**
 * A mapped BPF map (libbpf's .bss/.data/.rodata, ring buffers) needs CRIU's plugin VMA hook
 * (src/criu-patches): a CRIU without it stops with "Unknown shit 600 (anon_inode:bpf-map)". Say so
 * first, naming the process and the mapping.
 */
function refuseMappedMapsWithoutVmaHook(cpid: number): void {
  const initPid = Number(process.env['CRTOOLS_INIT_PID']);
  if (!Number.isInteger(initPid) || initPid <= 0) return;
  for (const pid of processTree(initPid)) {
    let maps: string;
    try { maps = readFileSync(`/proc/${pid}/maps`, 'utf8'); } catch { continue; }
    const line = maps.split('\n').find((l) => l.endsWith('anon_inode:bpf-map'));
    if (!line) continue;
    let exe: string;
    try { exe = readlinkSync(`/proc/${cpid}/exe`); } catch { return; }
    try {
      if (fileContains(`/proc/${cpid}/exe`, 'cr_plugin_dump_vma')) return;
    } catch { return; }
    throw new Error(`pid ${pid} has a BPF map mmapped (${line.split(' ')[0]} anon_inode:bpf-map), and this CRIU (${exe}) has no plugin VMA hook: use the CRIU bpfcr builds (./install.sh without --no-provision-criu)`);
  }
}

/**
 * Does the file contain `text`? Read in 1 MiB chunks up to the first hit: CRIU's binary is 6 MiB and
 * the hook's name sits in its first 2 (this runs on the checkpoint's critical path).
 */
function fileContains(path: string, text: string): boolean {
  const needle = Buffer.from(text);
  const buf = Buffer.alloc((1 << 20) + needle.length);
  const fd = openSync(path, 'r');
  try {
    let have = 0; // bytes in buf: the last chunk's tail (a needle may straddle chunks), then new ones
    for (;;) {
      const n = readSync(fd, buf, have, buf.length - have, null);
      if (n <= 0) return false;
      const end = have + n;
      if (buf.subarray(0, end).includes(needle)) return true;
      have = Math.min(needle.length - 1, end);
      buf.copy(buf, 0, end - have, end);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * pre-dump ran beside CRIU (hooks/checkpoint) and failed: the plugin, which waits for it before it takes
 * the first object, and post-dump (the worker's result) fail the dump with this line.
 */
export function besideFailed(dir: string, message: string): void {
  const line = message.split('\n')[0]!;
  try { writeAtomic(dir, DUMP_ERROR_FILE, `${line}\n`); } catch { /* criu is gone */ }
  try { writeFileSync(join(warmDir(dir, criuPid(dir)), 'result'), `error ${line}\n`); } catch { /* no worker dir */ }
}
