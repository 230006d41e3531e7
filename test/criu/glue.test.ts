/**
 * The CRIU glue without CRIU: criu-action's cheap paths, pre-dump's staging setup, gc, and the
 * refusal to act on bpfcr files an imported image brought along.
 */
import test from 'ava';
import { execa } from 'execa';
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HOLDER, requireRoot, tempDir as makeTempDir } from '../helpers/env.js';
import { CLI, HOOK, stagedEntries, suite, type Suite } from './runc.js';

let s: Suite;
const temps: string[] = [];
function tempDir(): string {
  const d = makeTempDir('bpfcr-criu-glue-');
  temps.push(d);
  return d;
}
test.before(async () => {
  requireRoot();
  s = await suite();
});
test.after.always(async () => {
  await s?.cleanup();
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

function run(args: string[], env: Record<string, string>, hook = false) {
  const cmd = hook ? HOOK : process.execPath;
  return execa(cmd, hook ? [] : [CLI, ...args], { reject: false, env: { ...process.env, ...s.env, ...env } });
}

async function bpftoolPin(path: string): Promise<void> {
  await execa('bpftool', ['map', 'create', path, 'type', 'hash', 'key', '4', 'value', '8', 'entries', '4', 'name', 'gc_test']);
}

test.serial('criu-action: irrelevant actions exit 0 at once, through the shim and the CLI', async (t) => {
  for (const action of ['network-lock', 'setup-namespaces', 'post-resume', 'something-new']) {
    const viaHook = await run([], { CRTOOLS_SCRIPT_ACTION: action, CRTOOLS_IMAGE_DIR: '/nonexistent' }, true);
    t.is(viaHook.exitCode, 0, viaHook.stderr);
    const viaCli = await run(['criu-action'], { CRTOOLS_SCRIPT_ACTION: action, CRTOOLS_IMAGE_DIR: '/nonexistent' });
    t.is(viaCli.exitCode, 0, viaCli.stderr);
  }
  const none = await execa(process.execPath, [CLI, 'criu-action'], { reject: false, env: { PATH: process.env['PATH']! } });
  t.is(none.exitCode, 2);
  t.regex(none.stderr, /CRTOOLS_SCRIPT_ACTION is not set/);
  // an image without BPF objects: nothing to do at any step
  const img = tempDir();
  for (const action of ['post-dump', 'pre-restore', 'post-restore']) {
    t.is((await run([], { CRTOOLS_SCRIPT_ACTION: action, CRTOOLS_IMAGE_DIR: img }, true)).exitCode, 0, action);
    t.is((await run(['criu-action'], { CRTOOLS_SCRIPT_ACTION: action, CRTOOLS_IMAGE_DIR: img })).exitCode, 0, action);
  }
});

test.serial('pre-dump mounts a bpffs for a staging root that has none, and clears stale bpfcr state', async (t) => {
  const dir = tempDir();
  const root = join(dir, 'plain', 'staging');
  const img = join(dir, 'img');
  mkdirSync(join(img, 'bpfcr'), { recursive: true });
  writeFileSync(join(img, 'bpfcr.tar'), 'stale');
  for (const f of ['bpfcr-key', 'bpfcr-taken.txt', 'bpfcr-checkpoint.json', 'bpfcr-restore.txt']) writeFileSync(join(img, f), 'stale\n');
  writeFileSync(join(img, 'inventory.img'), 'criu');
  try {
    const env = { CRTOOLS_SCRIPT_ACTION: 'pre-dump', CRTOOLS_IMAGE_DIR: img, BPFCR_STAGING: root };
    const r = await run([], env, true);
    t.is(r.exitCode, 0, r.stderr);
    t.regex(r.stderr, new RegExp(`mounted a bpffs on ${root}`));
    t.is((await execa('stat', ['-f', '-c', '%T', root])).stdout, 'bpf_fs');
    t.is(statSync(root).mode & 0o777, 0o700);
    t.deepEqual(['bpfcr', 'bpfcr.tar', 'bpfcr-key', 'bpfcr-taken.txt', 'bpfcr-checkpoint.json', 'bpfcr-restore.txt'].filter((f) => existsSync(join(img, f))), []);
    t.true(existsSync(join(img, 'inventory.img')), "CRIU's own files untouched");
    const again = await run([], env, true);
    t.is(again.exitCode, 0, again.stderr);
    t.is(again.stderr, '', 'second run: nothing to do');
    // a staging root below an existing bpffs is just created there
    const sub = join(root, 'deeper', 'root');
    const r3 = await run([], { ...env, BPFCR_STAGING: sub }, true);
    t.is(r3.exitCode, 0, r3.stderr);
    t.is(r3.stderr, '');
    t.true(existsSync(sub));
    t.is(readFileSync(join(img, 'bpfcr-staging'), 'utf8'), `${sub}\n`, 'the plugin learns the staging root from the image dir');
    // the staging root from the config file reaches the plugin the same way (podman passes no env)
    const cfg = join(dir, 'config.yaml');
    const fromCfg = join(root, 'configured');
    writeFileSync(cfg, `staging: ${fromCfg}\n`);
    const r4 = await run([], { ...env, BPFCR_STAGING: '', BPFCR_CONFIG: cfg }, true);
    t.is(r4.exitCode, 0, r4.stderr);
    t.is(readFileSync(join(img, 'bpfcr-staging'), 'utf8'), `${fromCfg}\n`);
    t.true(existsSync(fromCfg));
  } finally {
    await execa('umount', [root], { reject: false });
  }
});

test.serial('gc: --older-than keeps young checkpoints, --dry-run removes nothing, --all removes, busy ones are skipped', async (t) => {
  const root = s.staging;
  mkdirSync(join(root, 'aaaa1111'), { recursive: true, mode: 0o700 });
  mkdirSync(join(root, 'bbbb2222', 'r123'), { recursive: true, mode: 0o700 });
  await bpftoolPin(join(root, 'aaaa1111', 'map-4'));
  await bpftoolPin(join(root, 'bbbb2222', 'map-5'));
  await bpftoolPin(join(root, 'bbbb2222', 'r123', 'map-77'));

  const young = await run(['gc', '--older-than', '1h'], {});
  t.is(young.exitCode, 0, young.stderr);
  t.regex(young.stdout, /kept checkpoint aaaa1111 \(1 pin\(s\), last change \d+s ago\): younger than 60m/);
  t.regex(young.stdout, /gc: removed 0 checkpoint\(s\), 0 pin\(s\)/);

  const dry = await run(['gc', '--all', '--dry-run'], {});
  t.is(dry.exitCode, 0, dry.stderr);
  t.regex(dry.stdout, /would remove checkpoint bbbb2222 \(2 pin\(s\)/);
  t.is(stagedEntries(root).length, 6);

  // a restore in flight for bbbb2222 (a marker naming a live process: us)
  const st = readFileSync(`/proc/${process.pid}/stat`, 'utf8');
  const start = st.slice(st.lastIndexOf(')') + 2).split(' ')[19];
  const marker = join('/run/bpfcr', `bbbb2222.restore-${process.pid}`);
  mkdirSync('/run/bpfcr', { recursive: true });
  writeFileSync(marker, `${process.pid} ${start} copy\n`);
  try {
    const all = await run(['gc', '--all'], {});
    t.is(all.exitCode, 0, all.stderr);
    t.regex(all.stdout, /removed checkpoint aaaa1111 \(1 pin\(s\)/);
    t.regex(all.stdout, new RegExp(`kept checkpoint bbbb2222 .*: a restore is in flight \\(criu pid ${process.pid}\\)`));
    t.deepEqual(stagedEntries(root).sort(), ['bbbb2222', 'bbbb2222/map-5', 'bbbb2222/r123', 'bbbb2222/r123/map-77']);
  } finally {
    writeFileSync(marker, `${process.pid} 1 copy\n`); // now stale: that process is not us
  }
  const last = await run(['gc', '--older-than', '0s'], {});
  t.is(last.exitCode, 0, last.stderr);
  t.regex(last.stdout, /removed checkpoint bbbb2222 \(2 pin\(s\)/);
  t.deepEqual(stagedEntries(root), []);
  t.false(existsSync(marker), 'stale marker collected');
});

test.serial('gc refuses a staging root that is not on a bpffs, and rejects bad options', async (t) => {
  const plain = tempDir();
  mkdirSync(join(plain, 'x'));
  const r = await run(['gc', '--all', '--staging', plain], {});
  t.is(r.exitCode, 1);
  t.regex(r.stderr, new RegExp(`staging root ${plain} is not on a bpffs: refusing to touch it`));
  t.true(existsSync(join(plain, 'x')));
  t.is((await run(['gc'], {})).exitCode, 2);
  t.is((await run(['gc', '--older-than', '3 weeks'], {})).exitCode, 2);
  t.is((await run(['gc', '--all', '--older-than', '1h'], {})).exitCode, 2);
});

test.serial('bpfcr files an imported image brings along are never acted upon', async (t) => {
  const img = tempDir();
  const victim = join(tempDir(), 'victim');
  writeFileSync(victim, 'keep me');
  // no bpfcr-taken.txt: the hook does not start Node at all (nothing of ours to restore); run by hand,
  // pre-restore drops the planted files
  const plant = (): void => {
    writeFileSync(join(img, 'bpfcr-restore.txt'), '4 map 1\n');
    writeFileSync(join(img, 'bpfcr-cleanup.txt'), `f ${victim}\n`);
    writeFileSync(join(img, 'bpfcr-restore.owner'), '1 1\n');
  };
  plant();
  const viaHook = await run(['criu-action'], { CRTOOLS_SCRIPT_ACTION: 'pre-restore', CRTOOLS_IMAGE_DIR: img }, true);
  t.is(viaHook.exitCode, 0, viaHook.stderr);
  t.is(viaHook.stderr, '');
  t.true(existsSync(victim));
  const byHand = await run(['criu-action'], { CRTOOLS_SCRIPT_ACTION: 'pre-restore', CRTOOLS_IMAGE_DIR: img });
  t.is(byHand.exitCode, 0, byHand.stderr);
  for (const f of ['bpfcr-restore.txt', 'bpfcr-cleanup.txt', 'bpfcr-restore.owner']) t.false(existsSync(join(img, f)), f);
  // Either way the plugin, which reads bpfcr-restore.txt and runs the cleanup list, uses neither unless
  // bpfcr-restore.owner names the criu it runs in: test/criu/plugin-cleanup.test.ts.
  t.true(existsSync(victim));
  // a checkpoint whose post-dump never completed cannot be restored silently without its maps
  rmSync(join(img, 'bpfcr-restore.owner'), { force: true });
  writeFileSync(join(img, 'bpfcr-taken.txt'), `4 map 12345 1 ${s.staging}/abcd/map-4\n`);
  const r = await run(['criu-action'], { CRTOOLS_SCRIPT_ACTION: 'pre-restore', CRTOOLS_IMAGE_DIR: img });
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /lists BPF objects \(1 in bpfcr-taken.txt\) but has no bpfcr-checkpoint.json/);
});

test.serial('pre-dump runs beside CRIU and stays on as the post-dump worker: only for BPF holders and under criu, done at post-dump, gone when criu is', async (t) => {
  const { startHolder } = await import('../helpers/env.js');
  const holder = await startHolder(['hold', 'hash:w_hash:entries=3,max=8']);
  const img = tempDir();
  const bin = tempDir();
  // the shim runs pre-dump beside CRIU only when its parent is criu: a shell by that name stands in
  const criuSh = join(bin, 'criu');
  copyFileSync('/bin/sh', criuSh);
  chmodSync(criuSh, 0o755);
  const workers = async (): Promise<string[]> =>
    (await execa('pgrep', ['-f', '^/\\S*node \\S+ criu-action pre-dump'], { reject: false })).stdout.split('\n').filter(Boolean);
  const waitFor = async (cond: () => Promise<boolean> | boolean, what: string): Promise<void> => {
    for (let i = 0; i < 200; i++) { if (await cond()) return; await new Promise((r) => setTimeout(r, 25)); }
    throw new Error(`timed out waiting for ${what}`);
  };
  const warmDirs = (): string[] => readdirSync(img).filter((n) => n.startsWith('.bpfcr-warm-'));
  // like CRIU, give the hook a log file as stderr: the Node it leaves running keeps it open
  const log = openSync(join(img, 'dump.log'), 'a'); // an fd, not a pipe (execa would wait for its EOF)
  const env = (more: Record<string, string>): Record<string, string> => ({ ...process.env, ...s.env, CRTOOLS_IMAGE_DIR: img, ...more }) as Record<string, string>;
  const exited = (child: ReturnType<typeof spawn>): Promise<number | null> => new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    t.deepEqual(await workers(), []);
    // a process without BPF fds: nothing to do
    const none = spawn(criuSh, ['-c', `"${HOOK}"`], { stdio: ['ignore', log, log], env: env({ CRTOOLS_SCRIPT_ACTION: 'pre-dump', CRTOOLS_INIT_PID: String(process.ppid) }) });
    t.is(await exited(none), 0);
    t.deepEqual(warmDirs(), []);
    // run by hand (the parent is no criu): pre-dump in turn, nothing left running
    const byHand = spawn(HOOK, [], { stdio: ['ignore', log, log], env: env({ CRTOOLS_SCRIPT_ACTION: 'pre-dump', CRTOOLS_INIT_PID: String(holder.pid) }) });
    t.is(await exited(byHand), 0);
    t.deepEqual(await workers(), []);
    t.deepEqual(warmDirs(), []);

    // under criu: the shim returns at once, its Node does pre-dump, then post-dump's work when told
    const go = join(bin, 'go');
    const criu = spawn(criuSh, ['-c', `"${HOOK}" || exit 9; while [ ! -e "${go}" ]; do sleep 0.02; done; CRTOOLS_SCRIPT_ACTION=post-dump "${HOOK}"`], {
      stdio: ['ignore', log, log], env: env({ CRTOOLS_SCRIPT_ACTION: 'pre-dump', CRTOOLS_INIT_PID: String(holder.pid) }),
    });
    const done = exited(criu);
    await waitFor(async () => (await workers()).length === 1, 'the worker');
    t.is(warmDirs().length, 1);
    t.true(existsSync(join(img, '.bpfcr-pre-dump.lock')), 'the lock the plugin waits on');
    writeFileSync(go, '');
    t.is(await done, 0, 'post-dump through the worker (here: nothing taken, nothing to save)');
    await waitFor(async () => (await workers()).length === 0 && warmDirs().length === 0, 'the worker to finish');
    rmSync(go);

    // the criu process dies before post-dump: the worker goes too
    const dying = spawn(criuSh, ['-c', `"${HOOK}"; sleep 30`], { stdio: ['ignore', log, log], env: env({ CRTOOLS_SCRIPT_ACTION: 'pre-dump', CRTOOLS_INIT_PID: String(holder.pid) }) });
    await waitFor(async () => (await workers()).length === 1, 'the second worker');
    const gone = exited(dying);
    dying.kill('SIGKILL');
    await gone;
    await waitFor(async () => (await workers()).length === 0, 'the worker to notice');
    t.deepEqual(warmDirs(), []);
  } finally {
    await holder.kill();
    for (const p of await workers()) await execa('kill', [p], { reject: false });
    closeSync(log);
  }
});

test.serial('pre-dump in the shell for the default staging root: stale files cleared, no lock, Node only as the post-dump worker', async (t) => {
  const { startHolder } = await import('../helpers/env.js');
  const holder = await startHolder(['hold', 'hash:q_hash:entries=3,max=8']);
  const img = tempDir();
  const bin = tempDir();
  const criuSh = join(bin, 'criu'); // the shim does this only under criu
  copyFileSync('/bin/sh', criuSh);
  chmodSync(criuSh, 0o755);
  // an earlier checkpoint's files in a reused image dir
  for (const f of ['bpfcr-taken.txt', 'bpfcr.tar', 'bpfcr-checkpoint.json']) writeFileSync(join(img, f), 'stale\n');
  mkdirSync(join(img, '.bpfcr-warm-1'));
  writeFileSync(join(img, 'inventory.img'), 'criu');
  const log = join(img, 'dump.log');
  const logFd = openSync(log, 'a');
  const worker = async (): Promise<string[]> =>
    (await execa('pgrep', ['-f', '^/\\S*node \\S+ criu-action (warm|pre-dump)'], { reject: false })).stdout.split('\n').filter(Boolean);
  // the default staging root: nothing sets another one
  const env: Record<string, string> = { ...process.env, CRTOOLS_IMAGE_DIR: img, CRTOOLS_SCRIPT_ACTION: 'pre-dump', CRTOOLS_INIT_PID: String(holder.pid) } as Record<string, string>;
  delete env['BPFCR_STAGING'];
  delete env['BPFCR_CONFIG'];
  const go = join(bin, 'go');
  try {
    const criu = spawn(criuSh, ['-c', `"${HOOK}" || exit 9; while [ ! -e "${go}" ]; do sleep 0.02; done; CRTOOLS_SCRIPT_ACTION=post-dump "${HOOK}"`], { stdio: ['ignore', logFd, logFd], env });
    const done = new Promise<number | null>((resolve) => criu.once('exit', resolve));
    for (let i = 0; i < 200 && (await worker()).length === 0; i++) await new Promise((r) => setTimeout(r, 25));
    const procs = (await execa('pgrep', ['-af', 'criu-action (warm|pre-dump)'], { reject: false })).stdout;
    t.regex(procs, /criu-action warm/, 'Node started only as the post-dump worker');
    t.notRegex(procs, /criu-action pre-dump/);
    t.false(existsSync(join(img, '.bpfcr-pre-dump.lock')), 'nothing for the plugin to wait for');
    t.regex(readFileSync(log, 'utf8'), /bpfcr: pre-dump: removed .*bpfcr-checkpoint\.json.* left in the image dir by an earlier checkpoint/);
    t.deepEqual(['bpfcr-taken.txt', 'bpfcr.tar', 'bpfcr-checkpoint.json', '.bpfcr-warm-1'].filter((f) => existsSync(join(img, f))), []);
    t.true(existsSync(join(img, 'inventory.img')), "CRIU's own files untouched");
    t.is((await execa('stat', ['-f', '-c', '%T', '/sys/fs/bpf/bpfcr'])).stdout, 'bpf_fs', 'the default staging root is on the bpffs');
    writeFileSync(go, '');
    t.is(await done, 0, 'post-dump through the worker');
    for (let i = 0; i < 200 && (await worker()).length > 0; i++) await new Promise((r) => setTimeout(r, 25));
    t.deepEqual(await worker(), []);
  } finally {
    await holder.kill();
    for (const p of await worker()) await execa('kill', [p], { reject: false });
    closeSync(logFd);
  }
});

test.serial('pre-dump with a CRIU that lacks the VMA hook: a task with a mmapped BPF map is refused in one line naming pid and mapping', async (t) => {
  // Run by hand, the shim takes its parent (this Node process) as "criu": its binary has no
  // cr_plugin_dump_vma, like a distribution's CRIU.
  const img = tempDir();
  const holder = spawn(HOLDER, ['hold', 'array:vh_mm:mmapable=1,mmap=1,max=8,entries=8'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { holder.kill('SIGKILL'); });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('READY')) resolve(); });
    holder.once('exit', (c) => reject(new Error(`bpfholder exited ${c}: ${out}`)));
  });
  const addr = (/"mmap":"0x([0-9a-f]+)"/.exec(out) ?? [])[1];
  const r = await run([], { CRTOOLS_SCRIPT_ACTION: 'pre-dump', CRTOOLS_IMAGE_DIR: img, CRTOOLS_INIT_PID: String(holder.pid) }, true);
  t.is(r.exitCode, 1);
  const lines = String(r.stderr).trim().split('\n');
  t.is(lines.length, 1, String(r.stderr));
  t.regex(lines[0]!, new RegExp(`^bpfcr criu-action: pre-dump: pid ${holder.pid} has a BPF map mmapped \\(${addr}-[0-9a-f]+ anon_inode:bpf-map\\), and this CRIU \\(.*node.*\\) has no plugin VMA hook`));
  // a task without mapped maps is not affected
  const plain = spawn('sleep', ['30']);
  t.teardown(() => { plain.kill('SIGKILL'); });
  const ok = await run([], { CRTOOLS_SCRIPT_ACTION: 'pre-dump', CRTOOLS_IMAGE_DIR: img, CRTOOLS_INIT_PID: String(plain.pid) }, true);
  t.is(ok.exitCode, 0, String(ok.stderr));
});
