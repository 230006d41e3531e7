/**
 * The pre-restore decision, as a pure function of what pre-restore found out: reuse the staged maps
 * as they are (zero copy) or recreate all of them from the checkpoint's archive, and whether the
 * staged programs and links can be handed back or must be reloaded. Gathering the facts (pins, /proc, markers) and acting
 * on the decision stay in actions.ts; the facts that cost something to find (a bpf(2) call per pin,
 * a scan of every process's fds) are asked for only when the decision needs them.
 */
import { objectLabel, type TakenObject } from './record.js';
import { whyNotRecreated } from '../programs/recreate.js';

export type Mode = 'reuse' | 'copy' | 'none';

export interface RestoreFacts {
  /** the checkpoint's maps and its programs/links (BTF and perf events do not take part) */
  objects: TakenObject[];
  /** same boot of the same host as the dump */
  sameHost: boolean;
  /** why not, in words ("the checkpoint was taken on host a, this is b") */
  otherHost: string;
  /** the dump left the tasks running: the staged maps went on changing */
  leaveRunning: boolean;
  /** criu pid of another live restore of this checkpoint that is reusing the staged maps */
  claimedBy?: number;
  /** does the object's staging pin still hold the very object that was staged? */
  pinHolds(o: TakenObject): boolean;
  /** the first of these maps some live process holds an fd of, and that process */
  heldBy(maps: TakenObject[]): { id: number; pid: number } | undefined;
}

/** Programs and links: the staged objects themselves, or reloaded from the application's BPF object. */
export type ProgramMode = 'handback' | 'reload' | 'none';

export interface Decision {
  mode: Mode; why: string;
  programs: ProgramMode;
  /** why the staged programs cannot be handed back (reload) */
  programsWhy: string;
}

/** Thrown when a program or link cannot come back: the restore must not go on. */
export class RestoreRefused extends Error {}

/**
 * Maps: all reused or all copied (map-in-map references stay consistent either way), in this order
 * of reasons to copy: another host or boot, --leave-running, another restore taking them, a pin gone,
 * a map still held by a live process. Programs and links: the staged objects themselves when they are
 * all still staged here and none uses a map being copied; else reloaded from the application's BPF
 * ELF object (stored in the archive at dump), refused naming the program when there is none.
 */
export function decideRestore(f: RestoreFacts): Decision {
  const maps = f.objects.filter((o) => o.kind === 'map');
  const uniqueMaps = [...new Map(maps.map((o) => [o.id, o])).values()];
  let mode: Mode = maps.length ? 'reuse' : 'none';
  let why = '';
  if (maps.length) {
    if (!f.sameHost) why = f.otherHost;
    else if (f.leaveRunning) why = 'the checkpoint was taken with --leave-running';
    else if (f.claimedBy) why = `another restore of this checkpoint (criu pid ${f.claimedBy}) is taking the staged maps`;
    else {
      const gone = uniqueMaps.find((o) => !f.pinHolds(o));
      if (gone) why = `the staged ${objectLabel(gone)} is gone (${gone.pin}: bpfcr gc, or an earlier restore took it)`;
      else {
        const held = f.heldBy(uniqueMaps);
        if (held) why = `map ${held.id} is still held by pid ${held.pid} (the original, or an earlier restore of this checkpoint)`;
      }
    }
    if (why) mode = 'copy';
  }

  // Programs and links: handed back when every one of them is staged here and none is pointed at
  // maps that are being copied; otherwise all are reloaded from their BPF ELF objects.
  const progs = f.objects.filter((o) => o.kind === 'prog' || o.kind === 'link');
  if (!progs.length) return { mode, why, programs: 'none', programsWhy: '' };
  const mapIds = new Set(maps.map((o) => o.id));
  let programsWhy = '';
  for (const o of progs) {
    if (!f.sameHost) programsWhy = f.otherHost;
    else if (!f.pinHolds(o)) programsWhy = `the staged ${objectLabel(o)} is gone (${o.pin}: bpfcr gc, or an earlier restore took it)`;
    else if (mode === 'copy') {
      const uses = o.mapIds?.filter((id) => mapIds.has(id));
      if (uses === undefined) programsWhy = `the maps are recreated as copies (${why}) and the maps ${objectLabel(o)} uses are unknown`;
      else if (uses.length) programsWhy = `${objectLabel(o)} uses map(s) ${uses.join(', ')}, which are recreated as copies (${why})`;
    }
    if (programsWhy) break;
  }
  if (!programsWhy) return { mode, why, programs: 'handback', programsWhy };
  for (const o of progs) {
    if (!o.object?.member) {
      throw new RestoreRefused(`cannot restore ${objectLabel(o)}: the staged program cannot be handed back (${programsWhy}), and no BPF ELF object with a function named "${o.name ?? '?'}" was found in the checkpointed processes' executables, mapped or open files to reload it from`);
    }
    const not = o.kind === 'link' ? whyNotRecreated(o.target) : undefined;
    if (not) throw new RestoreRefused(`cannot restore ${objectLabel(o)} of program "${o.name ?? '?'}": the staged link cannot be handed back (${programsWhy}), and ${not}`);
  }
  return { mode, why, programs: 'reload', programsWhy };
}
