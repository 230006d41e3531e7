/**
 * Programs and links of a checkpoint, reloaded where the staged ones cannot be handed back (another
 * host, a wiped staging area, maps recreated as copies): the kernel cannot give a program's original
 * instructions back, but the application carries them — its BPF ELF object, found at dump in its
 * executable or mapped files and stored in the archive (objects/<sha256>.bpf.o).
 *
 * Per object: libbpf opens it, every map of the object that the checkpoint restored is reused by
 * name (the maps come back with their contents first), only the programs the tasks had loaded are
 * loaded, each link is re-created on the same target (by link kind), and every tail-call map is
 * re-filled slot by slot with the reloaded programs. On the same kernel a reloaded program must have
 * the recorded tag (same instructions after relocation), else the restore is refused naming it.
 */
import { release } from 'node:os';
import { linkAttachType, type CgroupPlace, type LinkTargetT } from './info.js';
import { closeFd, linkInfo, mapUpdateElem, progGetFdById, progInfo } from '../syscall/bpf.js';
import { BpfElfObject, type ObjMap } from './libbpf.js';
import { programNameMatches } from './objects.js';
import { findTracepoints } from './tracefs.js';
import { whyNotRecreated } from './recreate.js';

/** What the checkpoint recorded of a map, program or link (src/criu/record.ts RecordedObject has these fields). */
export interface RecordedObject {
  kind: string; id: number; type: string;
  name?: string; tag?: string; mapIds?: number[]; progId?: number; expectedAttachType?: number;
  target?: LinkTargetT;
  object?: { member?: string; function: string };
  progArray?: [number, number][];
}

export interface ReloadInput {
  /** every object the checkpoint took, and the kernel release it was taken on */
  objects: RecordedObject[];
  kernel?: string;
  /** "program 7 "name" (type 17, tag …)" for messages */
  label(o: RecordedObject): string;
  /** the cgroup a cgroup link is re-created on (an O_RDONLY directory fd the callee closes; throws naming it when missing) */
  openCgroup(place: CgroupPlace): { fd: number; path: string };
  /** fd of the map the restored tasks get for the map that had id `oldId` at dump (owned by the caller) */
  mapFd(oldId: number): number | undefined;
  /** archive member → bytes of the BPF ELF objects (verified against the manifest) */
  elf: Map<string, Buffer>;
  /** keep the object alive until the restored tasks hold it (a staging pin): the caller owns `fd` after */
  keep(fd: number, name: string): void;
  note(msg: string): void;
}

export interface Reloaded {
  /** program id at dump → the reloaded program's id */
  progs: Map<number, number>;
  /** link id at dump → the re-created link's id */
  links: Map<number, number>;
}

const INTERNAL = /\.(rodata|data|bss|kconfig)(\..*)?$/;

/** Does kernel map name `kernel` (15 characters at most) name libbpf map `m`? */
function sameMap(kernel: string, m: ObjMap): boolean {
  if (kernel === m.name || (kernel.length === 15 && m.name.startsWith(kernel))) return true;
  // .rodata/.data/.bss: libbpf prefixes the object name, which need not be the application's
  const a = INTERNAL.exec(kernel);
  const b = INTERNAL.exec(m.name);
  return !!a && !!b && a[0] === b[0];
}

export function reloadPrograms(inp: ReloadInput): Reloaded {
  const objectLabel = inp.label;
  const out: Reloaded = { progs: new Map(), links: new Map() };
  const maps = inp.objects.filter((o) => o.kind === 'map');
  const progObjects = inp.objects.filter((o) => o.kind === 'prog');
  const links = inp.objects.filter((o) => o.kind === 'link');
  /** every program to load (held as fds, or behind a held link), by id at dump */
  const wanted = new Map<number, RecordedObject>();
  for (const o of progObjects) wanted.set(o.id, o);
  for (const l of links) if (l.progId && !wanted.has(l.progId)) wanted.set(l.progId, l);
  const sameKernel = !!inp.kernel && inp.kernel === release();

  const byMember = new Map<string, { id: number; o: RecordedObject }[]>();
  for (const [id, o] of wanted) {
    const member = o.object?.member;
    if (!member) throw new Error(`cannot reload ${objectLabel(o)}: its BPF ELF object was not found at dump`);
    byMember.set(member, [...(byMember.get(member) ?? []), { id, o }]);
  }

  const newFds = new Map<number, number>(); // old prog id → fd (closed at the end)
  try {
    for (const [member, progs] of byMember) {
      const elf = inp.elf.get(member);
      if (!elf) throw new Error(`cannot reload ${objectLabel(progs[0]!.o)}: ${member} is missing from the archive`);
      // libbpf names .rodata/.data/.bss after the object: take the application's prefix when a map shows it
      const internal = maps.map((m) => m.name && /^(.*?)\.(rodata|data|bss|kconfig)/.exec(m.name)?.[1]).find((p) => p);
      const obj = BpfElfObject.open(elf, internal || 'bpfcr');
      try {
        // only the maps these programs used at dump (names may repeat across objects)
        const used = new Set(progs.flatMap(({ o }) => o.mapIds ?? []));
        const candidates = maps.filter((m) => used.size === 0 || used.has(m.id));
        for (const m of obj.maps()) {
          const rm = candidates.find((c) => c.name && sameMap(c.name, m));
          const fd = rm ? inp.mapFd(rm.id) : undefined;
          if (rm && fd !== undefined) obj.reuseMap(m, fd);
          else inp.note(`pre-restore: map ${m.name} of ${member} was not in the checkpoint: created empty`);
        }
        const fns = obj.programs();
        const load = new Map<number, (typeof fns)[number]>();
        for (const { id, o } of progs) {
          const fn = fns.find((f) => f.name === o.object?.function) ?? fns.find((f) => programNameMatches(o.name ?? '', f.name));
          if (!fn) throw new Error(`cannot reload ${objectLabel(o)}: ${member} has no function ${o.object?.function ?? o.name}`);
          load.set(id, fn);
        }
        const loading = new Set(load.values());
        for (const f of fns) obj.setAutoload(f, loading.has(f));
        // the attach type it was loaded with (a link reports it): a generic section may imply another
        for (const [id, fn] of load) {
          const o = wanted.get(id)!;
          const at = o.expectedAttachType ?? (o.kind === 'link' && o.target ? linkAttachType(o.target) : undefined);
          if (at !== undefined) obj.setExpectedAttachType(fn, at);
        }
        try {
          obj.load();
        } catch (e) {
          throw new Error(`cannot reload program(s) ${[...loading].map((f) => f.name).join(', ')} from ${member}: ${(e as Error).message}`);
        }
        for (const [id, fn] of load) {
          const o = wanted.get(id)!;
          const fd = obj.programFd(fn);
          const info = progInfo(fd);
          if (o.tag && info.tag !== o.tag) {
            if (sameKernel) {
              throw new Error(`reloaded ${objectLabel(o)} has tag ${info.tag}, the checkpointed one had ${o.tag} on this same kernel (${release()}): the object found at dump is not the one it was loaded from`);
            }
            inp.note(`pre-restore: reloaded ${objectLabel(o)} has tag ${info.tag} (was ${o.tag} on kernel ${inp.kernel ?? '?'}; this is ${release()}: CO-RE relocations differ)`);
          }
          inp.keep(fd, `prog-${id}`);
          out.progs.set(id, info.id);
          newFds.set(id, progGetFdById(info.id)); // libbpf's own fd goes with the object
        }
        // Links, each on its recorded target.
        for (const l of links) {
          const fn = l.progId ? load.get(l.progId) : undefined;
          if (!fn) continue; // another object's
          const t = l.target;
          const refuse = (why: string): never => { throw new Error(`cannot re-create ${objectLabel(l)} of program "${fn.name}": ${why}`); };
          let fd: number;
          try {
            if (!t) refuse('its target was not recorded at dump');
            // a BTF-enabled raw tracepoint (tp_btf) reports as raw_tracepoint too: its target is in the program
            else if (t.kind === 'raw_tracepoint') fd = /^tp_btf\//.test(fn.section) ? obj.attach(fn) : obj.attach(fn, { rawTracepoint: t.name });
            else if (t.kind === 'tracing') fd = obj.attach(fn); // the target is the program's attach BTF id
            else if (t.kind === 'perf_event' && t.perfType === 'tracepoint' && t.name) {
              const category = findTracepoints([t.name]).get(t.name)?.category;
              if (!category) refuse(`tracepoint ${t.name} is not in tracefs (mount -t tracefs tracefs /sys/kernel/tracing)`);
              fd = obj.attach(fn, { category: category!, tracepoint: t.name });
            } else if (t.kind === 'cgroup') {
              if (!t.place?.path) refuse(`its cgroup (id ${t.cgroupId}) was not found at dump`);
              let cg: { fd: number; path: string };
              try { cg = inp.openCgroup(t.place!); } catch (e) { refuse((e as Error).message); }
              try {
                fd = obj.attach(fn, { cgroupFd: cg!.fd });
              } catch (e) {
                refuse(`attaching to cgroup ${cg!.path} failed: ${(e as Error).message}`);
              } finally {
                closeFd(cg!.fd);
              }
            } else refuse(whyNotRecreated(t) ?? `re-creating ${t.kind} links is not supported`);
          } catch (e) {
            if ((e as Error).message.startsWith('cannot re-create')) throw e;
            throw new Error(`cannot re-create ${objectLabel(l)} of program "${fn.name}" on ${JSON.stringify(t)}: ${(e as Error).message}`);
          }
          try {
            inp.keep(fd!, `link-${l.id}`);
            out.links.set(l.id, linkInfo(fd!).id);
          } finally {
            closeFd(fd!);
          }
        }
      } finally {
        obj.close();
      }
    }
    // Tail-call maps: the same slots, now holding the reloaded programs.
    for (const m of new Map(maps.filter((o) => o.progArray?.length).map((o) => [o.id, o])).values()) {
      const fd = inp.mapFd(m.id);
      if (fd === undefined) throw new Error(`cannot fill ${objectLabel(m)}: the map was not restored`);
      const key = Buffer.alloc(4);
      const value = Buffer.alloc(4);
      for (const [slot, progId] of m.progArray!) {
        const pfd = newFds.get(progId);
        if (pfd === undefined) throw new Error(`cannot fill slot ${slot} of ${objectLabel(m)}: program ${progId} was not reloaded`);
        key.writeUInt32LE(slot);
        value.writeUInt32LE(pfd);
        mapUpdateElem(fd, key, value);
      }
    }
  } finally {
    for (const fd of newFds.values()) closeFd(fd);
  }
  return out;
}
