/**
 * koffi and libc, loaded once and only when a syscall is first made: createRequire because koffi
 * is CommonJS; lazily so CLI start-up (help, usage errors, no-op hooks) skips the ~15 ms native load.
 */
import { createRequire } from 'node:module';

export type Koffi = typeof import('koffi');
type Lib = ReturnType<Koffi['load']>;

let loaded: { koffi: Koffi; libc: Lib } | undefined;

export function libc(): { koffi: Koffi; libc: Lib } {
  if (!loaded) {
    const koffi = createRequire(import.meta.url)('koffi') as Koffi;
    loaded = { koffi, libc: koffi.load('libc.so.6') };
  }
  return loaded;
}
