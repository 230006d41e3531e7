/**
 * Local-storage values (TASK/SK/INODE/CGRP_STORAGE) back on their owners, at CRIU's post-restore:
 * the restored tasks, their sockets and files and the container's cgroup exist by then, and the
 * tasks have not run yet. pre-restore recreated (or reused) the maps — empty of values, since
 * entries die with their owners — and listed them in bpfcr-storage.txt ("<archive index> <map id>").
 *
 * Each value is written through an fd of its restored owner (src/maps/owners.ts): a pidfd of the
 * task with the same pid in the container, the socket or file the same process holds at the same fd
 * number (pidfd_getfd), the cgroup at the same path below the container's. A value that cannot be
 * written fails post-restore, and CRIU then aborts the restore: an app never runs with part of its
 * per-owner state silently missing.
 */
import { join } from 'node:path';
import { chunkMember, mapLabel, metaMember, parseMapMember, type MapMeta } from '../maps/meta.js';
import { ARCHIVE, OWNER_FILE, readText, remove, STORAGE_FILE } from './files.js';
import { readArchiveMembers } from './members.js';
import { criuPid, processToken, processTree } from './proc.js';
import { readRecord } from './record.js';

/** Lines of bpfcr-storage.txt: "<archive index> <map id>". */
export function parseStorage(text: string): { index: number; id: number }[] {
  return text.split('\n').filter((l) => l.trim()).map((line, i) => {
    const m = /^(\d{1,6}) (\d{1,10})$/.exec(line.trim());
    if (!m) throw new Error(`${STORAGE_FILE} line ${i + 1}: cannot parse ${JSON.stringify(line)}`);
    return { index: Number(m[1]), id: Number(m[2]) };
  });
}

export function formatStorage(maps: { index: number; id: number }[]): string {
  return maps.map((m) => `${m.index} ${m.id}\n`).join('');
}

export async function writeStorageValues(dir: string, note: (msg: string) => void): Promise<void> {
  const text = readText(dir, STORAGE_FILE);
  if (text === undefined) return;
  // Only what this restore's pre-restore wrote counts (an imported image dir is not trusted).
  const token = processToken(criuPid(dir));
  if (!token || readText(dir, OWNER_FILE)?.trim() !== token) {
    note(`post-restore: ${STORAGE_FILE} was not written by this restore: ignored`);
    return;
  }
  const started = process.hrtime.bigint();
  const initPid = Number(process.env['CRTOOLS_INIT_PID']);
  if (!Number.isInteger(initPid) || initPid <= 0) throw new Error('CRTOOLS_INIT_PID is not set: cannot find the restored tasks');
  const maps = parseStorage(text);
  const rec = readRecord(dir);
  const archive = join(dir, rec?.archive ?? ARCHIVE);

  const [{ RestoredOwners }, { strategyForLayout }, { validateMeta }, bpf] = await Promise.all([
    import('../maps/owners.js'), import('../maps/strategies/index.js'), import('../engine/validate.js'), import('../syscall/bpf.js'),
  ]);
  // every member of these maps: meta.json and data chunks
  const indexes = new Set(maps.map((m) => m.index));
  const members = await readArchiveMembers(archive, (name) => indexes.has(parseMapMember(name)?.index ?? -1));
  const owners = new RestoredOwners(processTree(initPid));
  let values = 0;
  try {
    for (const { index, id } of maps) {
      const raw = members.get(metaMember(index));
      if (!raw) throw new Error(`${metaMember(index)} is missing from ${rec?.archive ?? ARCHIVE}`);
      const meta: MapMeta = validateMeta(JSON.parse(raw.toString('utf8')), metaMember(index), index, 1);
      const strategy = strategyForLayout(meta.layout);
      if (meta.layout !== 'owners' || !strategy) throw new Error(`${mapLabel(meta)} is not a local-storage map`);
      const fd = bpf.mapGetFdById(id);
      try {
        if (bpf.mapInfo(fd).type !== meta.typeId) throw new Error(`${mapLabel(meta)}: map id ${id} is not of its type`);
        for (let c = 0; members.has(chunkMember(index, c)); c++) {
          try {
            values += strategy.restoreChunk(fd, meta, members.get(chunkMember(index, c))!, {
              localCpus: 1, archiveCpus: 1, forceIterate: false, owner: owners,
              innerFd: () => { throw new Error('a local-storage map has no inner maps'); },
            });
          } catch (e) {
            throw new Error(`${mapLabel(meta)}: ${(e as Error).message}`);
          }
        }
      } finally {
        bpf.closeFd(fd);
      }
    }
  } finally {
    owners.close();
  }
  remove(dir, STORAGE_FILE);
  note(`post-restore: wrote ${values} local-storage value(s) of ${maps.length} map(s) on the restored tasks, sockets, files and cgroups (${(Number(process.hrtime.bigint() - started) / 1e6).toFixed(0)} ms)`);
}
