/**
 * Time added to `runc checkpoint` / `runc restore -d` by the bpfcr plugin + action script.
 * Not an ava test: run `node dist/bench/criu-timing.js [runs]` as root (after scripts/test-setup-criu.sh).
 *
 * Cases (median of N cycles each, same bundle, fresh container per case):
 *   none/no-hook   container without BPF maps (test/criu/progholder.c "none": a static C program
 *                  paused like bpfholder), CRIU config without our action script (baseline)
 *   none/hook      the same with hooks/checkpoint registered (cost for containers without maps)
 *   17 maps        every content map type (the E2E container): zero-copy restore, and restore after gc (copy)
 *   1M hash        one 1M-entry hash map (8 B key, 16 B value): zero copy, and after gc (copy)
 */
import { execa } from 'execa';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../test/helpers/env.js';
import { bpfcr, bundle, CONTAINER_SPECS, Container, HOOK, suite, waitGone, type Suite } from '../test/criu/runc.js';

const RUNS = Number(process.argv[2] ?? 5);

function median(xs: number[]): number {
  const a = [...xs].sort((x, y) => x - y);
  return a.length % 2 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2;
}

/** A wrapper around hooks/checkpoint that logs how long each run took: "<action> <µs>". */
function timedHook(s: Suite): string {
  const path = join(s.dir, 'timed-hook');
  writeFileSync(path, `#!/bin/sh
s=$(date +%s%N)
${HOOK}; rc=$?
e=$(date +%s%N)
echo "$CRTOOLS_SCRIPT_ACTION $(( (e - s) / 1000 ))" >> ${join(s.dir, 'timing.log')}
exit $rc
`, { mode: 0o755 });
  return path;
}

/** ms spent in the action script since the last call (and reset). */
function scriptMs(s: Suite): number {
  const log = join(s.dir, 'timing.log');
  let text = '';
  try { text = readFileSync(log, 'utf8'); } catch { return 0; }
  writeFileSync(log, '');
  return text.split('\n').filter(Boolean).reduce((a, l) => a + Number(l.split(' ')[1]) / 1000, 0);
}

/** pluginOnly: checkpoint without the action script (post-dump then run by hand, untimed). */
async function cycle(s: Suite, c: Container, gcFirst: boolean, n: number, pluginOnly = false): Promise<{ ck: number[]; rs: number[]; cks: number[]; rss: number[] }> {
  const ck: number[] = [];
  const rs: number[] = [];
  const cks: number[] = [];
  const rss: number[] = [];
  for (let i = 0; i < n; i++) {
    const pid = await c.pid();
    const dir = `${s.dir}/img-${c.name}-${i}`;
    if (pluginOnly) writeFileSync(s.criuConf, '');
    scriptMs(s);
    let t0 = performance.now();
    const r = await c.checkpoint(dir);
    ck.push(performance.now() - t0);
    if (r.exitCode !== 0) throw new Error(`checkpoint ${c.name}: ${r.stderr}`);
    if (pluginOnly) {
      writeFileSync(s.criuConf, `action-script ${timedHook(s)}\n`);
      const d = await bpfcr(s, ['criu-action', 'post-dump', '--image-dir', dir]);
      if (d.exitCode !== 0) throw new Error(d.stderr);
    }
    cks.push(scriptMs(s));
    await waitGone(pid);
    if (gcFirst) {
      const g = await bpfcr(s, ['gc', '--all']);
      if (g.exitCode !== 0) throw new Error(g.stderr);
    }
    scriptMs(s);
    t0 = performance.now();
    const x = await c.restore(dir);
    rs.push(performance.now() - t0);
    if (x.code !== 0) throw new Error(`restore ${c.name}: ${x.stderr}`);
    rss.push(scriptMs(s));
    await execa('rm', ['-rf', dir]);
  }
  return { ck, rs, cks, rss };
}

async function main(): Promise<void> {
  const rows: string[][] = [];
  let base: { ck: number; rs: number } | undefined;
  const cases: { label: string; hook: boolean; specs?: string[]; gc?: boolean; pluginOnly?: boolean }[] = [
    { label: 'no maps, no action script (baseline)', hook: false },
    { label: 'no maps, action script registered', hook: true },
    { label: `${CONTAINER_SPECS.length} maps: checkpoint with the plugin alone (no post-dump)`, hook: true, specs: CONTAINER_SPECS, pluginOnly: true },
    { label: `${CONTAINER_SPECS.length} maps (+5 inner), zero-copy restore`, hook: true, specs: CONTAINER_SPECS },
    { label: `${CONTAINER_SPECS.length} maps (+5 inner), gc then restore (copy)`, hook: true, specs: CONTAINER_SPECS, gc: true },
    { label: '1M-entry hash, zero-copy restore', hook: true, specs: ['hash:big:key=8,value=16,entries=1000000,max=1000000'] },
    { label: '1M-entry hash, gc then restore (copy)', hook: true, specs: ['hash:big:key=8,value=16,entries=1000000,max=1000000'], gc: true },
  ];
  // Interleaved: every round runs one cycle of every case, so load from elsewhere hits all alike.
  const live: { k: (typeof cases)[number]; s: Suite; c: Container; ck: number[]; rs: number[]; cks: number[]; rss: number[] }[] = [];
  try {
    for (const [i, k] of cases.entries()) {
      // the config file an installation ships (as /etc/bpfcr/config.yaml): the actions read it
      const s = await suite({ hook: k.hook, env: { BPFCR_CONFIG: join(ROOT, 'config/config.yaml') } });
      if (k.hook) writeFileSync(s.criuConf, `action-script ${timedHook(s)}\n`);
      // the no-map container runs a static C program paused like bpfholder, holding nothing
      const b = await bundle(s, 'timing', k.specs ?? [], k.specs ? undefined : ['/bin/progholder', 'none']);
      if (!k.specs) {
        await execa('cc', ['-O2', '-static', '-o', join(b, 'rootfs/bin/progholder'), join(ROOT, 'test/criu/progholder.c')]);
      }
      const c = new Container(s, `bpfcr-timing-${process.pid}-${i}`, b);
      live.push({ k, s, c, ck: [], rs: [], cks: [], rss: [] });
      await c.start();
      await cycle(s, c, k.gc ?? false, 1, k.pluginOnly); // warm-up
    }
    for (let round = 0; round < RUNS; round++) {
      for (const x of live) {
        const r = await cycle(x.s, x.c, x.k.gc ?? false, 1, x.k.pluginOnly);
        x.ck.push(...r.ck);
        x.rs.push(...r.rs);
        x.cks.push(...r.cks);
        x.rss.push(...r.rss);
      }
    }
  } finally {
    for (const x of live) {
      await x.c.destroy();
      await x.s.cleanup();
    }
  }
  for (const x of live) {
    const m = { ck: median(x.ck), rs: median(x.rs) };
    base ??= m;
    if (x.k.pluginOnly) {
      rows.push([x.k.label, m.ck.toFixed(0), '-', `${m.ck - base.ck >= 0 ? '+' : ''}${(m.ck - base.ck).toFixed(0)}`, '-', '-', '-']);
      continue;
    }
    rows.push([x.k.label, m.ck.toFixed(0), m.rs.toFixed(0), `${m.ck - base.ck >= 0 ? '+' : ''}${(m.ck - base.ck).toFixed(0)}`, `${m.rs - base.rs >= 0 ? '+' : ''}${(m.rs - base.rs).toFixed(0)}`, median(x.cks).toFixed(0), median(x.rss).toFixed(0)]);
  }
  const head = ['case', 'checkpoint ms', 'restore ms', 'added ckpt', 'added restore', 'hook ms: ckpt', 'restore'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  console.log(`runc checkpoint / runc restore -d, median of ${RUNS}`);
  for (const r of [head, ...rows]) console.log(r.map((x, i) => (i ? x.padStart(w[i]!) : x.padEnd(w[i]!))).join('  '));
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
