/** I/O helpers for the archive layer: zstd subprocess, file sink, atomic publish, cleanup. */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { accessSync, constants as fsc, rmSync } from 'node:fs';
import { link, lstat, open, rename, rm, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { ArchiveError, oneLine } from './format.js';

// ---------------------------------------------------------------------------------------------
// zstd command

const ZSTD_FALLBACK_DIRS = ['/usr/bin', '/usr/local/bin', '/bin', '/usr/sbin', '/sbin'];

/**
 * Locate the zstd executable: explicit path, $BPFCR_ZSTD, $PATH, then the usual system directories
 * (hooks may run with an empty environment). Returns undefined if not found.
 */
export function findZstd(explicit?: string): string | undefined {
  const candidates: string[] = [];
  const chosen = explicit || process.env.BPFCR_ZSTD;
  if (chosen) candidates.push(chosen); // an explicit choice is the only candidate
  else {
    for (const d of (process.env.PATH ?? '').split(delimiter)) if (d) candidates.push(join(d, 'zstd'));
    for (const d of ZSTD_FALLBACK_DIRS) candidates.push(join(d, 'zstd'));
  }
  for (const c of candidates) {
    try {
      accessSync(c, fsc.X_OK);
      return c;
    } catch {
      /* next */
    }
  }
  return undefined;
}

export function zstdMissing(label: string, explicit?: string): ArchiveError {
  const chosen = explicit || process.env.BPFCR_ZSTD;
  const what = chosen ? `${chosen} is not an executable file` : 'it was not found in $PATH or /usr/bin';
  return new ArchiveError(
    `archive ${label}: zstd compression needs the zstd command, but ${what} (install the package zstd, or set BPFCR_ZSTD)`,
    { code: 'TOOL', archive: label },
  );
}

export interface ZstdProcess {
  child: ChildProcess;
  /**
   * Resolves when zstd exited 0; rejects with a one-line ArchiveError otherwise. Call ref() before
   * awaiting it when nothing else keeps the event loop alive.
   */
  done: Promise<void>;
  /** Keep the event loop alive until zstd exits. */
  ref(): void;
  kill(): void;
}

/**
 * Spawn zstd. `classify` turns a failure (exit status + stderr) into the error to report.
 * Waits until the process has actually started (so a missing binary is reported here).
 */
export async function spawnZstd(
  cmd: string,
  args: string[],
  stdio: StdioOptions,
  label: string,
  classify: (stderr: string, code: number | null, signal: NodeJS.Signals | null) => ArchiveError,
): Promise<ZstdProcess> {
  const child = spawn(cmd, args, { stdio });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => {
    if (stderr.length < 4096) stderr += s;
  });
  let killed = false;
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'EACCES') reject(zstdMissing(label, cmd));
      else reject(new ArchiveError(`archive ${label}: cannot run ${cmd}: ${e.message}`, { code: 'IO', archive: label, cause: e }));
    });
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else if (killed) reject(new ArchiveError(`archive ${label}: zstd was stopped`, { code: 'IO', archive: label }));
      else reject(classify(oneLine(stderr), code, signal));
    });
  });
  done.catch(() => {});
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    done.catch(reject);
  });
  // An abandoned reader/writer must not keep the process alive: the child process and its stderr
  // are unref'd; data pipes keep the loop alive only while a transfer is pending, and callers
  // ref() before waiting for the exit status.
  child.unref();
  (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();
  return {
    child,
    done,
    ref() {
      child.ref();
    },
    kill() {
      child.ref();
      if (child.exitCode === null && child.signalCode === null) {
        killed = true;
        child.kill('SIGKILL');
      }
    },
  };
}

/**
 * Decompressing zstd as a Readable. `input` is a file descriptor (zstd reads it directly) or a
 * Readable (piped into zstd's stdin). The Readable ends only after zstd exited successfully, and
 * fails with the classified zstd error otherwise — so a truncated .tar.zst is reported as such
 * rather than as a short tar.
 */
export async function zstdDecompress(
  cmd: string,
  input: number | Readable,
  label: string,
): Promise<Readable> {
  const classify = (stderr: string, code: number | null, signal: NodeJS.Signals | null): ArchiveError => {
    const detail = stderr ? stderr.replace(/^\/\*stdin\*\\\s*:\s*/, '') : `exit ${code ?? signal}`;
    if (/premature end|unexpected end|truncated/i.test(stderr))
      return new ArchiveError(`archive ${label} is incomplete: zstd: ${detail} (truncated or interrupted dump?)`, {
        code: 'INCOMPLETE',
        archive: label,
      });
    return new ArchiveError(`archive ${label}: corrupt zstd data: ${detail}`, { code: 'FORMAT', archive: label });
  };
  const z = await spawnZstd(
    cmd,
    ['-d', '-q', '-c'],
    [typeof input === 'number' ? input : 'pipe', 'pipe', 'pipe'],
    label,
    classify,
  );
  const stdout = z.child.stdout!;
  let pumpError: Error | undefined;
  if (typeof input !== 'number') {
    const stdin = z.child.stdin!;
    stdin.on('error', () => {}); // EPIPE when zstd fails first: zstd's own error is reported
    input.on('error', (e) => {
      pumpError ??= e;
      z.kill();
    });
    input.pipe(stdin);
  }
  const out = new Readable({
    highWaterMark: 1 << 20,
    read() {
      stdout.resume();
    },
    destroy(err, cb) {
      z.kill();
      stdout.destroy();
      if (typeof input !== 'number') input.destroy();
      cb(err);
    },
  });
  // zstd's verdict can come after the consumer has stopped reading (the manifest-first scan stops
  // at the manifest, then zstd finds a bad checksum further on): an abandoned stream's error is
  // nobody's to report, and must not be an unhandled 'error' event. Consumers still reading get it
  // through their own listeners.
  out.on('error', () => {});
  stdout.on('data', (chunk: Buffer) => {
    if (!out.push(chunk)) stdout.pause();
  });
  stdout.on('error', () => {});
  stdout.on('end', () => z.ref());
  z.done.then(
    () => {
      if (pumpError) out.destroy(pumpError);
      else out.push(null);
    },
    (e: Error) => out.destroy(pumpError ?? e),
  );
  return out;
}

// ---------------------------------------------------------------------------------------------
// files

/** Write the whole buffer at the current file position (loops on short writes). */
export async function writeFully(fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    if (bytesWritten <= 0) throw new Error('write returned 0 bytes');
    off += bytesWritten;
  }
}

/** Write all buffers back to back (writev, looping on short writes). */
export async function writevFully(fh: FileHandle, bufs: Buffer[]): Promise<void> {
  let list = bufs.filter((b) => b.length > 0);
  while (list.length > 0) {
    const batch = list.slice(0, 1024);
    const want = batch.reduce((n, b) => n + b.length, 0);
    let { bytesWritten } = await fh.writev(batch);
    if (bytesWritten <= 0) throw new Error('writev returned 0 bytes');
    if (bytesWritten === want) {
      list = list.slice(batch.length);
      continue;
    }
    // short write: drop what was written and retry the rest
    const rest: Buffer[] = [];
    for (const b of list) {
      if (bytesWritten >= b.length) {
        bytesWritten -= b.length;
        continue;
      }
      rest.push(bytesWritten > 0 ? b.subarray(bytesWritten) : b);
      bytesWritten = 0;
    }
    list = rest;
  }
}

/** Writable over an open FileHandle (which it does not close). Callbacks fire once data is written. */
export class FileSink extends Writable {
  readonly #fh: FileHandle;
  constructor(fh: FileHandle) {
    super({ highWaterMark: 1 << 20 });
    this.#fh = fh;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    writeFully(this.#fh, chunk).then(() => cb(), cb);
  }
  override _writev(chunks: { chunk: Buffer }[], cb: (e?: Error | null) => void): void {
    writevFully(
      this.#fh,
      chunks.map((c) => c.chunk),
    ).then(() => cb(), cb);
  }
}

/** fsync a directory (best effort: some filesystems refuse). */
export async function syncDir(path: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, fsc.O_RDONLY | fsc.O_DIRECTORY);
    await fh.sync();
  } catch {
    /* best effort */
  } finally {
    await fh?.close().catch(() => {});
  }
}

/**
 * Why `bytes` more cannot be written under `dir` ("only N bytes free"), or undefined when they fit
 * (or the file system does not say): checked before a copy starts, so that a full disk is refused
 * naming what was to be written, rather than met half way.
 */
export async function noRoom(dir: string, bytes: number): Promise<string | undefined> {
  const fs = await statfs(dir).catch(() => undefined);
  const free = fs ? fs.bavail * fs.bsize : Infinity;
  return free < bytes ? `only ${free} bytes free` : undefined;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * Move the finished `partial` to `out`.
 * - no overwrite: never replaces anything (files: link()+unlink(), atomic no-clobber);
 * - overwrite: a file replaces a non-directory atomically with rename(); when a directory is
 *   involved the old output is first renamed aside to `<partial>.old`, then removed.
 * At no time does `out` name an incomplete archive.
 */
export async function publish(
  partial: string,
  out: string,
  isDir: boolean,
  overwrite: boolean,
  existsError: () => Error,
): Promise<void> {
  if (!overwrite) {
    if (!isDir) {
      try {
        await link(partial, out);
        await unlink(partial);
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') throw existsError();
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EMLINK' && code !== 'ENOSYS')
          throw e;
        // filesystem without hard links: fall back to check + rename
      }
    }
    if (await exists(out)) throw existsError();
    await rename(partial, out);
    return;
  }
  let old: Awaited<ReturnType<typeof lstat>> | undefined;
  try {
    old = await lstat(out);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (!old || (!isDir && !old.isDirectory())) {
    await rename(partial, out);
    return;
  }
  const aside = `${partial}.old`;
  await rename(out, aside);
  try {
    await rename(partial, out);
  } catch (e) {
    await rename(aside, out).catch(() => {});
    throw e;
  }
  await rm(aside, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// cleanup of partial outputs if the process exits without finish()/abort()

const livePartials = new Set<string>();
let exitHookInstalled = false;

export function trackPartial(path: string): void {
  livePartials.add(path);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const p of livePartials) {
        try {
          rmSync(p, { recursive: true, force: true });
        } catch {
          /* ignore */
        }
      }
    });
  }
}

export function untrackPartial(path: string): void {
  livePartials.delete(path);
}

export function parentDir(path: string): string {
  return dirname(path);
}
