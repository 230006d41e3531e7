/**
 * pre-dump, on the checkpoint's critical path (CRIU waits for it before freezing the tasks): the
 * checks that must stop a dump before it starts, the image dir made clean, the staging root ready,
 * and the post-dump worker started. Kept apart from actions.ts so this Node run loads ~10 modules,
 * not the whole CRIU glue (every module costs ESM resolve + compile time here).
 */
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { DUMP_STATE, STAGING_FILE, has, remove, warmDir } from './files.js';
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
  startWarmWorker(dir, cpid);
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
 * The post-dump worker: a Node process that loads everything post-dump needs while CRIU freezes and
 * dumps the tasks (warm()); its stderr is CRIU's log, like the actions'. flock(1) holds <warm dir>/lock for its lifetime: hooks/checkpoint's
 * post-dump says "go" and waits on the lock; a dead worker frees it. BPFCR_NO_WARM=1: none.
 */
function startWarmWorker(dir: string, cpid: number): void {
  if (process.env['BPFCR_NO_WARM'] || !process.env['CRTOOLS_INIT_PID'] || !process.argv[1]) return;
  const w = warmDir(dir, cpid);
  try { mkdirSync(w, { mode: 0o700 }); } catch { return; } // once per dump
  (createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process')).spawn('flock', ['-x', join(w, 'lock'), process.execPath, process.argv[1], 'criu-action', 'warm'], {
    detached: true, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, BPFCR_CRIU_PID: String(cpid) },
  }).unref();
}
