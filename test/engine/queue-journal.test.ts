/**
 * QUEUE and STACK dumps cannot lose values (issue 11): a dump pops the map empty and pushes every
 * value back; killed (SIGKILL) at any point in between, the values it had taken out are in its
 * journal (/var/lib/bpfcr/journal) and the next bpfcr run puts them back, in their order. Checked
 * on 1M-entry maps, killed in each phase, against bpfholder describe (count and FNV-1a of the
 * values in pop order: C, no bpfcr code).
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { JOURNAL_DIR, JOURNAL_LAYOUT, journalProgress } from '../../src/maps/queue-journal.js';
import { addr, closeFd, mapGetFdById, mapInfo, ValueOps } from '../../src/syscall/bpf.js';
import { bpfcr, CLI, describe, freshBpffs, requireRoot, startHolder, tempDir, type Holder } from '../helpers/env.js';

test.before(() => requireRoot());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The journal of a dump of map `id` by `pid`, once it exists. */
function journalOf(id: number, pid: number): string | undefined {
  let names: string[] = [];
  try { names = readdirSync(JOURNAL_DIR); } catch { /* not yet */ }
  const n = names.find((x) => x.startsWith(`q${id}-${pid}-`));
  return n ? join(JOURNAL_DIR, n) : undefined;
}

/**
 * Start `bpfcr dump --map-id id` and SIGKILL it once `when` holds for its journal; returns the
 * journal's path and what it said last. Fails when the dump ends first.
 */
async function killDumpWhen(id: number, out: string, when: (p: NonNullable<ReturnType<typeof journalProgress>>) => boolean) {
  const child = spawn(process.execPath, [CLI, 'dump', '--map-id', String(id), '-o', out], { stdio: 'ignore', env: { ...process.env, BPFCR_CONFIG: '' } });
  let exited = false;
  const gone = new Promise((r) => child.once('exit', () => { exited = true; r(undefined); }));
  let path: string | undefined;
  let last: ReturnType<typeof journalProgress>;
  let mode = 0;
  while (!exited) {
    path ??= journalOf(id, child.pid!);
    if (path) {
      last = journalProgress(path);
      if (last && !mode) mode = statSync(path).mode & 0o777;
      if (last && when(last)) break;
    }
    await sleep(2);
  }
  child.kill('SIGKILL');
  await gone;
  if (!path || !last || !when(last)) throw new Error(`the dump ended before the kill point (journal ${path ?? 'never seen'})`);
  return { path, last, mode };
}

/** A process holding a 1M-entry QUEUE or STACK (killed afterwards), its map id, what describe says of it, a work dir. */
async function holdBig(t: ExecutionContext, type: 'queue' | 'stack'): Promise<{ h: Holder; id: number; before: Record<string, unknown>; work: string }> {
  const h = await startHolder(['hold', `${type}:big_${type}:entries=1000000,max=1000000,seed=7`]);
  t.teardown(() => h.kill());
  const work = tempDir();
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const id = h.maps[0]!.id;
  return { h, id, before: await describe({ id }), work };
}

test.serial('QUEUE: a dump killed while popping loses nothing: the next run puts every value back in order', async (t) => {
  const { id, before, work } = await holdBig(t, 'queue');
  t.is(before['count'], 1_000_000);
  const k = await killDumpWhen(id, join(work, 'q.tar'), (p) => p.phase === 'popping' && p.popped >= 300_000);
  t.is(k.mode, 0o600, 'the journal is 0600');
  t.true(k.last!.popped < 1_000_000);
  const fs = await freshBpffs(); // gc of an empty staging root: only the journals matter here
  t.teardown(fs.cleanup);
  const gc = await bpfcr(['gc', '--all', '--staging', fs.dir]);
  t.is(gc.exitCode, 0, gc.stderr);
  t.regex(gc.stdout, new RegExp(`^gc: put back 1000000 value\\(s\\) of map id ${id} 'big_queue' \\(QUEUE\\) in their order, taken out by an interrupted dump \\(pid \\d+\\): \\S+ removed$`, 'm'));
  t.deepEqual(await describe({ id }), before, 'every value, in order');
  t.is(journalOf(id, Number(/pid (\d+)/.exec(gc.stdout)![1])), undefined);
});

test.serial('STACK: a dump killed while pushing back loses nothing; the next dump puts it right first, then dumps it whole', async (t) => {
  const { h, id, before, work } = await holdBig(t, 'stack');
  await killDumpWhen(id, join(work, 'killed.tar'), (p) => p.phase === 'pushing');
  const d = await bpfcr(['dump', '--map-id', String(id), '-o', join(work, 'ok.tar')]);
  t.is(d.exitCode, 0, d.stderr);
  t.regex(d.stderr, new RegExp(`^bpfcr: put back 1000000 value\\(s\\) of map id ${id} 'big_stack' \\(STACK\\) in their order`, 'm'));
  t.regex(d.stderr, /dumped 1 map\(s\), 1000000 entries/);
  t.deepEqual(await describe({ id }), before, 'every value, in order');
  await h.kill();
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const r = await bpfcr(['restore', join(work, 'ok.tar'), '--pin-dir', fs.dir]);
  t.is(r.exitCode, 0, r.stderr);
  t.deepEqual(await describe({ pin: join(fs.dir, 'big_stack') }), before, 'the archive holds them in order too');
});

test.serial('a second dump of a queue being dumped is refused before it pops anything', async (t) => {
  const { h, id, before, work } = await holdBig(t, 'queue');
  const first = spawn(process.execPath, [CLI, 'dump', '--map-id', String(id), '-o', join(work, 'a.tar')], { stdio: 'ignore', env: { ...process.env, BPFCR_CONFIG: '' } });
  const firstDone = new Promise<number | null>((r) => first.once('exit', (c) => r(c)));
  while (!journalOf(id, first.pid!)) await sleep(2);
  const second = await bpfcr(['dump', '--map-id', String(id), '-o', join(work, 'b.tar')]);
  t.is(second.exitCode, 1);
  t.regex(second.stderr, new RegExp(`^bpfcr dump: map id ${id} 'big_queue' \\(QUEUE\\): another bpfcr \\(pid ${first.pid}\\) is dumping it right now`));
  t.is(await firstDone, 0);
  t.deepEqual(await describe({ id }), before);
});

test.serial('a journal whose map is gone is removed, saying so; --dry-run only lists', async (t) => {
  const { h, id, work } = await holdBig(t, 'queue');
  const k = await killDumpWhen(id, join(work, 'q.tar'), (p) => p.popped >= 100_000);
  const fs = await freshBpffs();
  t.teardown(fs.cleanup);
  const dry = await bpfcr(['gc', '--all', '--dry-run', '--staging', fs.dir]);
  t.regex(dry.stdout, new RegExp(`gc: would put back the values of an interrupted queue/stack dump \\(pid \\d+\\) of map id ${id} \\(\\d+ taken out, popping\\): ${k.path}`));
  t.truthy(journalProgress(k.path), 'still there');
  await h.kill();
  for (let i = 0; i < 100; i++) {
    const gc = await bpfcr(['gc', '--all', '--staging', fs.dir]);
    if (/no longer exists/.test(gc.stdout)) {
      t.regex(gc.stdout, new RegExp(`gc: removed \\S+: map id ${id} 'big_queue' \\(QUEUE\\) no longer exists; its \\d+ value\\(s\\) taken out by an interrupted dump \\(pid \\d+\\) went with it`));
      return;
    }
    t.notRegex(gc.stdout, /put back/, 'the map is freed asynchronously; until then it is put back');
    await sleep(50);
  }
  t.fail('the journal was never removed');
});

/**
 * The states a kill can leave between "armed" and "popped", built by hand on a real queue (a kill
 * rarely lands there): the slot of the armed pop still holds ~P (not popped: the value is still in
 * the map) or holds the value (popped: only the journal has it). Recovery must tell them apart.
 */
for (const popped of [false, true]) {
  test.serial(`recovery tells whether the armed pop happened (${popped ? 'it did' : 'it did not'})`, async (t) => {
    const h = await startHolder(['hold', 'queue:armed_q:entries=5,max=8,seed=3']);
    t.teardown(() => h.kill());
    const id = h.maps[0]!.id;
    const before = await describe({ id });
    const L = JOURNAL_LAYOUT;
    const vs = 8;
    const stride = L.stride(vs);
    const fd = mapGetFdById(id);
    t.teardown(() => closeFd(fd));
    const buf = Buffer.alloc(L.HEADER + 9 * stride);
    const slot = (s: number): Buffer => buf.subarray(L.HEADER + s * stride, L.HEADER + s * stride + vs);
    const ops = new ValueOps(fd);
    // two values taken out and journaled; the third peeked (P) and armed
    for (const s of [1, 2]) ops.at(Number(addr(buf)) + L.HEADER + s * stride).pop();
    ops.at(Number(addr(buf)) + L.HEADER).peek();
    for (let b = 0; b < vs; b++) slot(3)[b] = ~slot(0)[b]! & 0xff;
    if (popped) ops.at(Number(addr(buf)) + L.HEADER + 3 * stride).pop();
    const info = mapInfo(fd);
    const u32 = (i: number, v: number): void => void buf.writeUInt32LE(v, i * 4);
    u32(L.H.version, 1); u32(L.H.mapId, id); u32(L.H.type, info.type); u32(L.H.valueSize, vs); u32(L.H.maxEntries, 8);
    u32(L.H.flags, info.flags); u32(L.H.phase, L.POPPING); u32(L.H.popped, 2); u32(L.H.armed, 3);
    buf.write(info.name, L.NAME_AT, 'utf8');
    buf.write(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(), L.BOOT_AT, 'ascii');
    L.MAGIC.copy(buf, 0);
    mkdirSync(JOURNAL_DIR, { recursive: true, mode: 0o700 });
    const path = join(JOURNAL_DIR, `q${id}-999999999-1.journal`); // an owner that is not alive
    writeFileSync(path, buf, { mode: 0o600 });
    t.teardown(() => rmSync(path, { force: true }));
    const fs = await freshBpffs();
    t.teardown(fs.cleanup);
    const gc = await bpfcr(['gc', '--all', '--staging', fs.dir]);
    t.regex(gc.stdout, new RegExp(`gc: put back 5 value\\(s\\) of map id ${id} 'armed_q' \\(QUEUE\\) in their order`));
    t.deepEqual(await describe({ id }), before, 'no value lost, none doubled, in order');
  });
}
