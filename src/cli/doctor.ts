/**
 * `bpfcr doctor`: is everything bpfcr needs on this host, and if not, what to do. Each check looks
 * at one thing, the way bpfcr itself will use it (bpf(2) calls on a scratch map, the CRIU binary's
 * own strings, the plugin's descriptor as CRIU reads it, the hook files the runtimes read), and
 * says in one line what it found and how to fix it. Every path is a parameter (DoctorPaths) so a
 * test can point one check at a broken copy without breaking the host.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { accessSync, constants as fsc, existsSync, readdirSync, readFileSync, readlinkSync, statfsSync, statSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { isOnBpffs } from '../engine/bpffs.js';
import { packageRoot } from '../paths.js';

export type Status = 'ok' | 'warn' | 'fail';

/** One line of the report: what was looked at, what was found, and what to do when it is not ok. */
export interface Check { name: string; status: Status; detail: string; fix?: string }

export interface DoctorPaths {
  /** the host bpffs (pins, staging) */
  bpffs: string;
  /** staging root of the CRIU path (config `staging`, $BPFCR_STAGING) */
  staging: string;
  /** the criu runc and podman run: `criu` on PATH unless given */
  criu: string | undefined;
  /** where scripts/provision-criu.sh builds CRIU (its header and build stamp) */
  criuPrefix: string;
  pluginDir: string;
  criuConf: string;
  hooksDir: string;
  tracefs: string;
  /** how libbpf is loaded (a name for the dynamic loader, or a path) */
  libbpf: string;
  /** the config file (undefined: $BPFCR_CONFIG or /etc/bpfcr/config.yaml if present) */
  config: string | undefined;
  /** PATH to look runtimes and criu up in */
  path: string;
}

export const DEFAULT_PATHS: Omit<DoctorPaths, 'staging' | 'criu' | 'config' | 'path'> = {
  bpffs: '/sys/fs/bpf',
  criuPrefix: '/opt/bpfcr/criu',
  pluginDir: '/usr/lib/criu',
  criuConf: '/etc/criu/default.conf',
  hooksDir: '/usr/share/containers/oci/hooks.d',
  tracefs: '/sys/kernel/tracing',
  libbpf: 'libbpf.so.1',
};

const PLUGIN = 'bpfcr_plugin.so';
const INSTALL = 'run ./install.sh (as root) from the bpfcr checkout';
/** Staged checkpoints untouched this long are reported as stale. */
export const STALE_MS = 24 * 3600e3;

/** A command's first lines of output, or why it could not run; never throws. */
function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000, ...(env ? { env } : {}) });
  if (r.error) return { ok: false, out: (r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : r.error.message };
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

/** `name` on `path` (a PATH value), or undefined. */
export function which(name: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, fsc.X_OK);
      if (statSync(p).isFile()) return p;
    } catch { /* not here */ }
  }
  return undefined;
}

function executable(p: string): boolean {
  try { accessSync(p, fsc.X_OK); return statSync(p).isFile(); } catch { return false; }
}

function errText(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/** bpf(2) itself and the kernel features bpfcr relies on, tried on a scratch map that dies with its fd. */
export async function kernelChecks(): Promise<Check[]> {
  const bpf = await import('../syscall/bpf.js');
  const out: Check[] = [];
  let fd: number;
  try {
    fd = bpf.mapCreate({ type: 1, keySize: 4, valueSize: 8, maxEntries: 1, flags: 0, name: 'bpfcr_doctor' });
  } catch (e) {
    return [{ name: 'bpf', status: 'fail', detail: `BPF_MAP_CREATE failed: ${(e as Error).message}`, fix: 'run bpfcr as root (bpf(2) needs CAP_BPF and CAP_SYS_ADMIN), on a kernel with CONFIG_BPF_SYSCALL' }];
  }
  try {
    out.push({ name: 'bpf', status: 'ok', detail: 'bpf(2) works (BPF_MAP_CREATE)' });
    const batch: string[] = [];
    for (const op of ['lookup', 'update'] as const) {
      try { bpf.mapBatchProbe(fd, op); } catch (e) { batch.push(`${op}: ${(e as Error).message}`); }
    }
    out.push(batch.length
      ? { name: 'batch-ops', status: 'warn', detail: `BPF_MAP_*_BATCH unavailable (${batch.join('; ')}): maps are read and written one element at a time, ~10x slower`, fix: 'a kernel >= 5.6 has them' }
      : { name: 'batch-ops', status: 'ok', detail: 'BPF_MAP_LOOKUP_BATCH and BPF_MAP_UPDATE_BATCH work' });
  } finally {
    bpf.closeFd(fd);
  }
  // the smallest BTF there is: one int
  const { BtfBuilder, INT_SIGNED } = await import('../btf/build.js');
  const b = new BtfBuilder();
  b.int('int', 4, INT_SIGNED);
  const blob = b.blob();
  try {
    bpf.closeFd(bpf.btfLoad(blob, 'doctor'));
    const vmlinux = existsSync('/sys/kernel/btf/vmlinux');
    out.push(vmlinux
      ? { name: 'btf', status: 'ok', detail: 'BPF_BTF_LOAD works; kernel BTF at /sys/kernel/btf/vmlinux' }
      : { name: 'btf', status: 'warn', detail: 'BPF_BTF_LOAD works, but there is no /sys/kernel/btf/vmlinux: programs cannot be reloaded on this host', fix: 'a kernel built with CONFIG_DEBUG_INFO_BTF' });
  } catch (e) {
    out.push({ name: 'btf', status: 'fail', detail: `BPF_BTF_LOAD failed: ${(e as Error).message}: maps with BTF (every libbpf map) cannot be restored here`, fix: 'a kernel with CONFIG_DEBUG_INFO_BTF (>= 5.2)' });
  }
  return out;
}

export function bpffsCheck(p: DoctorPaths): Check {
  return isOnBpffs(p.bpffs)
    ? { name: 'bpffs', status: 'ok', detail: `a bpffs is mounted on ${p.bpffs}` }
    : { name: 'bpffs', status: 'fail', detail: `no bpffs on ${p.bpffs}: nothing can be pinned or staged`, fix: `mount -t bpf bpf ${p.bpffs}` };
}

/** The staging area: checkpoints the CRIU path staged, and those nobody collected. */
export async function stagingCheck(p: DoctorPaths): Promise<Check> {
  if (!existsSync(p.staging)) return { name: 'staging', status: 'ok', detail: `${p.staging} does not exist yet (created at the first CRIU checkpoint)` };
  const { gc, formatAge } = await import('../criu/gc.js');
  let entries;
  try {
    entries = gc({ root: p.staging, all: false, olderThanMs: STALE_MS, dryRun: true });
  } catch (e) {
    const denied = /EACCES|EPERM/.test((e as Error).message);
    return { name: 'staging', status: 'fail', detail: (e as Error).message, fix: denied ? 'run bpfcr doctor as root' : `mount -t bpf bpf ${p.bpffs}, or set staging: in /etc/bpfcr/config.yaml to a directory on a bpffs` };
  }
  const pins = entries.reduce((a, e) => a + e.pins, 0);
  const stale = entries.filter((e) => e.reason === 'dry run');
  const foreign = entries.filter((e) => e.action === 'skipped');
  const what = `${p.staging}: ${entries.length} staged checkpoint(s), ${pins} pin(s)`;
  if (foreign.length) return { name: 'staging', status: 'warn', detail: `${what}; ${foreign.map((e) => `${e.path}: ${e.reason}`).join('; ')}`, fix: 'unmount what is mounted there' };
  if (stale.length) {
    return {
      name: 'staging', status: 'warn',
      detail: `${what}; ${stale.length} untouched for more than ${formatAge(STALE_MS)} (${stale.slice(0, 5).map((e) => `${e.key}, ${formatAge(e.ageMs)}`).join('; ')}${stale.length > 5 ? '; …' : ''}): they keep kernel memory`,
      fix: `bpfcr gc --older-than ${formatAge(STALE_MS)} --staging ${p.staging} (--dry-run first)`,
    };
  }
  return { name: 'staging', status: 'ok', detail: what };
}

export async function configCheck(p: DoctorPaths): Promise<Check> {
  const { loadConfig } = await import('../config/config.js');
  try {
    const c = await loadConfig(p.config);
    return { name: 'config', status: 'ok', detail: c.source === 'built-in defaults' ? 'no config file: built-in defaults' : `${c.source} is valid` };
  } catch (e) {
    return { name: 'config', status: 'fail', detail: (e as Error).message, fix: 'fix the file (config/config.yaml in the checkout documents every key)' };
  }
}

/** The binary a `criu` wrapper script runs (scripts/provision-criu.sh writes `exec "/opt/bpfcr/criu/sbin/criu" "$@"`). */
function criuBinary(criu: string): string {
  let text: string;
  try { text = readFileSync(criu).subarray(0, 4096).toString('latin1'); } catch { return criu; }
  if (!text.startsWith('#!')) return criu;
  const m = /^exec\s+"?([^"\s]+)"?\s/m.exec(text);
  return m && isAbsolute(m[1]!) ? m[1]! : criu;
}

/**
 * Strings each patch of src/criu-patches puts into the CRIU binary (or, for 0001, keeps out of it):
 * how a built binary shows which patches it carries.
 */
const PATCH_MARKS: { patch: string; what: string; has?: string; lacks?: string }[] = [
  { patch: '0001', what: 'built without libbpf (BPF map fds reach the plugin)', lacks: 'libbpf.so' },
  { patch: '0002', what: 'TCP/UDP sockets on Linux >= 6.16', has: 'skip passcred/passsec, not supported by the socket family' },
  { patch: '0003', what: 'DUMP_VMA/RESTORE_VMA plugin hooks', has: 'cr_plugin_dump_vma' },
  { patch: '0004', what: 'plugins claim mappings at dump (mmapped maps)', has: 'No plugin handles mapping ' },
  { patch: '0005', what: 'plugin-claimed mappings at restore', has: 'No plugin restores mapping ' },
  { patch: '0006', what: 'the cgroup freezer checked again within milliseconds (not 100 ms)', has: 'attempts done (after %u quick checks)' },
];
/** "0001-0006": the series as doctor reports it */
const SERIES = `${PATCH_MARKS[0]!.patch}-${PATCH_MARKS[PATCH_MARKS.length - 1]!.patch}`;

/** The patch series of the checkout this bpfcr runs from (absent from an installed copy). */
function checkoutPatches(): string | undefined {
  const dir = join(packageRoot(), 'src/criu-patches');
  return existsSync(dir) ? dir : undefined;
}

export function criuChecks(p: DoctorPaths): Check[] {
  const criu = p.criu ?? which('criu', p.path);
  if (!criu || !executable(criu)) {
    return [{ name: 'criu', status: 'fail', detail: `${criu ?? 'criu'} ${criu ? 'is not an executable file' : `is not on PATH (${p.path})`}: containers holding BPF maps cannot be checkpointed`, fix: `${INSTALL} (it builds CRIU with bpfcr's patches into ${p.criuPrefix})` }];
  }
  const out: Check[] = [];
  const bin = criuBinary(criu);
  const version = run(criu, ['--version']);
  const v = /Version:\s*(\S+)/.exec(version.out)?.[1];
  const check = run(criu, ['check']);
  const via = bin === criu ? criu : `${criu} → ${bin}`;
  if (!version.ok || !v) out.push({ name: 'criu', status: 'fail', detail: `${via}: --version failed: ${version.out.split('\n')[0]}`, fix: INSTALL });
  else if (!check.ok || !/Looks good/.test(check.out)) {
    const why = check.out.split('\n').find((l) => /Error|error|fail/.test(l)) ?? check.out.split('\n')[0];
    out.push({ name: 'criu', status: 'fail', detail: `${via} ${v}: criu check failed: ${why}`, fix: `${INSTALL} (Debian 12's criu 3.17 does not run on this kernel)` });
  } else {
    out.push({ name: 'criu', status: 'ok', detail: `${via} ${v}, criu check: Looks good` });
  }
  let data: Buffer;
  try {
    data = readFileSync(bin);
  } catch (e) {
    out.push({ name: 'criu-patches', status: 'fail', detail: `cannot read ${bin}: ${errText(e)}`, fix: INSTALL });
    return out;
  }
  const missing = PATCH_MARKS.filter((m) => (m.has !== undefined && !data.includes(m.has)) || (m.lacks !== undefined && data.includes(m.lacks)));
  if (missing.length) {
    out.push({
      name: 'criu-patches', status: 'fail',
      detail: `${bin} lacks bpfcr's CRIU patches ${missing.map((m) => `${m.patch} (${m.what})`).join(', ')}`,
      fix: `${INSTALL} (scripts/provision-criu.sh builds CRIU with src/criu-patches)`,
    });
    return out;
  }
  // built from the patches of this checkout? (provision-criu.sh's stamp lists each patch's SHA-256)
  const dir = checkoutPatches();
  let stamp = '';
  try { stamp = readFileSync(join(p.criuPrefix, '.bpfcr-criu-stamp'), 'utf8'); } catch { /* not provisioned by bpfcr */ }
  const stale = dir && stamp
    ? readdirSync(dir).filter((f) => /^\d{4}-.*\.patch$/.test(f)).filter((f) => !stamp.includes(`patch ${f} ${createHash('sha256').update(readFileSync(join(dir, f))).digest('hex')}`))
    : [];
  out.push(stale.length
    ? { name: 'criu-patches', status: 'warn', detail: `${bin} carries patches ${SERIES}, but was built before ${stale.join(', ')} changed`, fix: `${INSTALL} (rebuilds CRIU, ~40 s)` }
    : { name: 'criu-patches', status: 'ok', detail: `${bin} carries patches ${SERIES} (${PATCH_MARKS.map((m) => m.patch).join(', ')})` });
  return out;
}

/** CRIU's plugin ABI from the criu-plugin.h it was built with: version and number of hooks. */
function criuPluginAbi(prefix: string): { version: number; maxHooks: number; header: string } | undefined {
  for (const header of [join(prefix, 'include/criu/criu-plugin.h'), '/usr/include/criu/criu-plugin.h']) {
    let text: string;
    try { text = readFileSync(header, 'utf8'); } catch { continue; }
    const n = (k: string): number => Number(new RegExp(`#define\\s+CRIU_PLUGIN_VERSION_${k}\\s+(\\d+)`).exec(text)?.[1] ?? NaN);
    const hooks = [...text.matchAll(/CR_PLUGIN_HOOK__\w+\s*=\s*(\d+)/g)].map((m) => Number(m[1]));
    const version = (n('MAJOR') << 16) + (n('MINOR') << 8) + n('SUBLEVEL');
    if (Number.isNaN(version) || !hooks.length) continue;
    return { version, maxHooks: Math.max(...hooks) + 1, header };
  }
  return undefined;
}

const abiText = (v: number): string => `${v >> 16}.${(v >> 8) & 0xff}.${v & 0xff}`;
/** CR_PLUGIN_HOOK__* numbers bpfcr's plugin registers */
const HOOKS = { DUMP_EXT_FILE: 2, RESTORE_EXT_FILE: 3, DUMP_VMA: 12, RESTORE_VMA: 13 } as const;

/**
 * The plugin as CRIU loads it: dlopen (lazily: criu_get_image_dir comes from the criu binary), its
 * CR_PLUGIN_DESC (name, ABI version, hooks), against the ABI of the CRIU it goes with.
 */
export async function pluginCheck(p: DoctorPaths): Promise<Check> {
  const path = join(p.pluginDir, PLUGIN);
  const fix = `${INSTALL} (src/criu-plugin/build.sh install puts it into ${p.pluginDir})`;
  if (!existsSync(path)) return { name: 'plugin', status: 'fail', detail: `${path} is missing: CRIU cannot dump processes holding BPF objects`, fix };
  const { libc } = await import('../syscall/libc.js');
  const { koffi } = libc();
  let lib;
  try {
    lib = koffi.load(path, { lazy: true });
  } catch (e) {
    return { name: 'plugin', status: 'fail', detail: `${path} does not load: ${(e as Error).message.split('\n')[0]}`, fix };
  }
  try {
    const head = koffi.struct({ name: 'const char *', init: 'void *', exit: 'void *', version: 'uint32', max_hooks: 'uint32' });
    let desc: { name: string | null; version: number; max_hooks: number };
    let hooks: unknown[];
    try {
      const ptr = lib.symbol('CR_PLUGIN_DESC', head);
      desc = koffi.decode(ptr, head) as typeof desc;
      // the hooks array follows max_hooks; no more than the descriptor says it has
      hooks = koffi.decode(ptr, koffi.sizeof(head), koffi.array('void *', Math.min(desc.max_hooks, 64))) as unknown[];
    } catch (e) {
      return { name: 'plugin', status: 'fail', detail: `${path} has no CRIU plugin descriptor (CR_PLUGIN_DESC): ${(e as Error).message}`, fix };
    }
    const has = (h: number): boolean => h < hooks.length && hooks[h] !== null;
    const abi = criuPluginAbi(p.criuPrefix);
    const what = `${path}: plugin "${desc.name}", ABI ${abiText(desc.version)}`;
    if (desc.name !== 'bpfcr') return { name: 'plugin', status: 'fail', detail: `${what}: not bpfcr's plugin`, fix };
    if (!has(HOOKS.DUMP_EXT_FILE) || !has(HOOKS.RESTORE_EXT_FILE)) return { name: 'plugin', status: 'fail', detail: `${what}: the DUMP_EXT_FILE/RESTORE_EXT_FILE hooks are missing`, fix };
    if (!abi) return { name: 'plugin', status: 'warn', detail: `${what}: no criu-plugin.h to compare its ABI with`, fix };
    // CRIU refuses a plugin of another major ABI and ignores hooks beyond its own count
    if (desc.version >> 16 !== abi.version >> 16 || desc.version > abi.version) {
      return { name: 'plugin', status: 'fail', detail: `${what}, but CRIU's is ${abiText(abi.version)} (${abi.header})`, fix };
    }
    const vma = has(HOOKS.DUMP_VMA) && has(HOOKS.RESTORE_VMA);
    if (abi.maxHooks > HOOKS.RESTORE_VMA && !vma) {
      return { name: 'plugin', status: 'fail', detail: `${what}: built without the DUMP_VMA/RESTORE_VMA hooks this CRIU has: mmapped maps (libbpf globals, ring buffers) cannot be checkpointed`, fix };
    }
    return { name: 'plugin', status: 'ok', detail: `${what} matches CRIU's, ${desc.max_hooks} hooks${vma ? ' (with the VMA hooks)' : ''}` };
  } finally {
    lib.unload();
  }
}

/** Lines `NAME=value` of a hook shim (install.sh writes absolute paths there). */
function shimVar(text: string, name: string): string | undefined {
  return new RegExp(`^${name}=("?)([^"\\n]*)\\1$`, 'm').exec(text)?.[2] || undefined;
}

/** What a hook shim runs: its Node and its entry point, both must exist. */
function shimProblems(script: string, defaultMain: string): string[] {
  let text: string;
  try { text = readFileSync(script, 'utf8'); } catch (e) { return [`cannot read ${script}: ${errText(e)}`]; }
  const problems: string[] = [];
  const node = shimVar(text, 'NODE');
  if (node && !executable(node)) problems.push(`its NODE=${node} is not executable`);
  const main = shimVar(text, 'MAIN');
  const entry = main && !main.includes('$') ? main : resolve(dirname(script), defaultMain);
  if (!existsSync(entry)) problems.push(`${entry} (what it runs) is missing`);
  return problems;
}

/** The action script registered in CRIU's config, which both the criu CLI and runc's RPC mode read. */
export function actionScriptCheck(p: DoctorPaths): Check {
  const fix = `${INSTALL} (it adds "action-script /usr/local/lib/bpfcr/hooks/checkpoint" to ${p.criuConf})`;
  let text: string;
  try { text = readFileSync(p.criuConf, 'utf8'); } catch (e) {
    return { name: 'action-script', status: 'fail', detail: `cannot read ${p.criuConf}: ${errText(e)}: CRIU runs no bpfcr action script`, fix };
  }
  const scripts = [...text.matchAll(/^\s*(?:--)?action-script[\s=]+(\S+)\s*$/gm)].map((m) => m[1]!);
  const ours = scripts.filter((s) => /\/hooks\/checkpoint$/.test(s));
  if (!ours.length) return { name: 'action-script', status: 'fail', detail: `${p.criuConf} registers no bpfcr action script${scripts.length ? ` (only ${scripts.join(', ')})` : ''}: maps would not be saved at checkpoint`, fix };
  const script = ours[0]!;
  if (!executable(script)) return { name: 'action-script', status: 'fail', detail: `${p.criuConf} names ${script}, which is not an executable file`, fix };
  const problems = shimProblems(script, '../dist/src/cli/bpfcr.cjs');
  if (problems.length) return { name: 'action-script', status: 'fail', detail: `${script}: ${problems.join('; ')}`, fix };
  return { name: 'action-script', status: 'ok', detail: `${p.criuConf} registers ${script}${ours.length > 1 ? ` (and ${ours.length - 1} more: each runs on every action)` : ''}` };
}

const OCI_STAGES = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'];

/** The hooks.d JSON podman reads: present, valid, pointing at hooks that exist. */
export function ociHooksCheck(p: DoctorPaths): Check {
  const fix = `${INSTALL} (it installs bpfcr-prestart.json and bpfcr-poststop.json into ${p.hooksDir})`;
  let names: string[];
  try { names = readdirSync(p.hooksDir).filter((n) => /^bpfcr-.*\.json$/.test(n)).sort(); } catch (e) {
    return { name: 'oci-hooks', status: 'fail', detail: `cannot list ${p.hooksDir}: ${errText(e)}: podman runs no bpfcr hook (pins, save-on-stop)`, fix };
  }
  if (!names.length) return { name: 'oci-hooks', status: 'fail', detail: `no bpfcr-*.json in ${p.hooksDir}: podman runs no bpfcr hook (pins, save-on-stop)`, fix };
  const problems: string[] = [];
  const stages = new Set<string>();
  for (const n of names) {
    const f = join(p.hooksDir, n);
    let j: { version?: unknown; hook?: { path?: unknown }; stages?: unknown; when?: unknown };
    try { j = JSON.parse(readFileSync(f, 'utf8')) as typeof j; } catch (e) {
      problems.push(`${n}: ${e instanceof SyntaxError ? `invalid JSON (${e.message})` : errText(e)}`);
      continue;
    }
    const path = j?.hook?.path;
    if (j?.version !== '1.0.0') problems.push(`${n}: version ${JSON.stringify(j?.version)} (podman reads "1.0.0")`);
    if (typeof path !== 'string' || !isAbsolute(path)) problems.push(`${n}: hook.path is not an absolute path`);
    else if (!executable(path)) problems.push(`${n}: hook ${path} is not an executable file`);
    else problems.push(...shimProblems(path, '../dist/src/oci/hook-main.cjs').map((x) => `${n}: ${path}: ${x}`));
    if (!Array.isArray(j?.stages) || !j.stages.length || !j.stages.every((s) => OCI_STAGES.includes(s as string))) problems.push(`${n}: stages ${JSON.stringify(j?.stages)}`);
    else for (const s of j.stages) stages.add(s as string);
    if (typeof j?.when !== 'object' || j.when === null) problems.push(`${n}: no "when" (podman would never run it)`);
  }
  for (const s of ['prestart', 'poststop']) if (!problems.length && !stages.has(s)) problems.push(`no hook for the ${s} stage`);
  if (problems.length) return { name: 'oci-hooks', status: 'fail', detail: `${p.hooksDir}: ${problems.join('; ')}`, fix };
  return { name: 'oci-hooks', status: 'ok', detail: `${p.hooksDir}: ${names.join(', ')} (stages ${[...stages].join(', ')})` };
}

/** podman, runc, containerd: what is installed. runc is what every path runs CRIU through. */
export function runtimeChecks(p: DoctorPaths): Check[] {
  const probe = (name: string, args: string[], pick: RegExp): { path?: string; version?: string; out: string } => {
    const path = which(name, p.path);
    if (!path) return { out: 'not found' };
    const r = run(path, args);
    return { path, out: r.out, ...(r.ok ? { version: pick.exec(r.out)?.[1] ?? r.out.split('\n')[0] } : {}) };
  };
  const runc = probe('runc', ['--version'], /runc version (\S+)/);
  const podman = probe('podman', ['--version'], /podman version (\S+)/);
  const containerd = probe('containerd', ['--version'], /containerd \S+ (v?\d\S*)/);
  return [
    runc.version
      ? { name: 'runc', status: 'ok', detail: `${runc.path} ${runc.version}` }
      : { name: 'runc', status: 'fail', detail: `runc ${runc.path ? `does not run: ${runc.out.split('\n')[0]}` : `is not on PATH (${p.path})`}: podman and containerd checkpoint through it`, fix: 'apt-get install runc' },
    podman.version
      ? { name: 'podman', status: 'ok', detail: `${podman.path} ${podman.version}` }
      : { name: 'podman', status: 'warn', detail: `podman ${podman.path ? 'does not run' : 'is not installed'}: podman checkpoint/restore and the OCI hooks are unused`, fix: 'apt-get install podman (if podman is what runs your containers)' },
    containerd.version
      ? { name: 'containerd', status: 'ok', detail: `${containerd.path} ${containerd.version}` }
      : { name: 'containerd', status: 'warn', detail: `containerd ${containerd.path ? 'does not run' : 'is not installed'}`, fix: 'apt-get install containerd (if containerd is what runs your containers)' },
  ];
}

const TRACEFS_MAGIC = 0x74726163;

/** Processes holding a perf event fd together with a BPF program (tracepoint attachments). */
function perfEventUsers(): number[] {
  const out: number[] = [];
  let pids: string[];
  try { pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n)); } catch { return out; }
  for (const pid of pids) {
    let fds: string[];
    try { fds = readdirSync(`/proc/${pid}/fd`); } catch { continue; }
    let perf = false;
    let prog = false;
    for (const fd of fds) {
      let l: string;
      try { l = readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
      if (l === 'anon_inode:[perf_event]') perf = true;
      else if (l === 'anon_inode:bpf-prog') prog = true;
    }
    if (perf && prog) out.push(Number(pid));
  }
  return out;
}

/** tracefs: a perf-event (tracepoint) attachment is re-created by tracepoint name, looked up there. */
export function tracefsCheck(p: DoctorPaths): Check {
  let mounted = false;
  try { mounted = statfsSync(p.tracefs).type === TRACEFS_MAGIC; } catch { /* not there */ }
  if (mounted) return { name: 'tracefs', status: 'ok', detail: `tracefs is mounted on ${p.tracefs}` };
  const users = perfEventUsers();
  const fix = `mount -t tracefs tracefs ${p.tracefs}`;
  return users.length
    ? { name: 'tracefs', status: 'fail', detail: `no tracefs on ${p.tracefs}, and pid ${users.slice(0, 5).join(', ')} ${users.length === 1 ? 'has' : 'have'} BPF programs attached through perf events: their attachments cannot be checkpointed or restored`, fix }
    : { name: 'tracefs', status: 'warn', detail: `no tracefs on ${p.tracefs}: needed once a checkpointed process attaches BPF programs to tracepoints through perf events (none does now)`, fix };
}

/** libbpf.so.1: what reloads an application's programs from its own BPF object on another host. */
export async function libbpfCheck(p: DoctorPaths): Promise<Check> {
  const { libc } = await import('../syscall/libc.js');
  const { koffi } = libc();
  let lib;
  try {
    lib = koffi.load(p.libbpf);
  } catch (e) {
    return { name: 'libbpf', status: 'fail', detail: `cannot load ${p.libbpf}: ${(e as Error).message.split('\n')[0]}: programs cannot be reloaded on another host`, fix: 'apt-get install libbpf1' };
  }
  try {
    const major = lib.func('uint32_t libbpf_major_version(void)')() as number;
    const minor = lib.func('uint32_t libbpf_minor_version(void)')() as number;
    return { name: 'libbpf', status: 'ok', detail: `${p.libbpf} ${major}.${minor} loads` };
  } catch (e) {
    return { name: 'libbpf', status: 'fail', detail: `${p.libbpf} loads but is no libbpf >= 0.6 (${(e as Error).message.split('\n')[0]})`, fix: 'apt-get install libbpf1' };
  } finally {
    lib.unload();
  }
}

/** bpfcr, its hooks and its CRIU actions run as root: most of what doctor looks at needs it too. */
export function rootCheck(): Check {
  const uid = process.geteuid?.();
  return uid === 0
    ? { name: 'root', status: 'ok', detail: 'running as root' }
    : { name: 'root', status: 'fail', detail: `running as uid ${uid}: bpfcr needs root (bpf(2), bpffs, CRIU), and so do most of these checks`, fix: 'sudo bpfcr doctor' };
}

/**
 * The V8 code cache of the bundle every bpfcr command runs from (src/cli/load.cts): without it each
 * start — every CRIU action and OCI hook of a checkpoint — takes ~40 ms longer. A Node upgrade makes it
 * unusable until install.sh makes it again.
 */
export function codeCacheCheck(): Check {
  const loader = join(packageRoot(), 'dist/src/cli/load.cjs');
  let status: string;
  try {
    status = (createRequire(import.meta.url)(loader) as typeof import('./load.cjs')).codeCacheStatus();
  } catch (e) {
    return { name: 'code-cache', status: 'warn', detail: `cannot check the bundle's code cache (${loader}): ${errText(e)}`, fix: INSTALL };
  }
  const why: Record<string, string> = {
    absent: 'is missing',
    stale: 'was made from another build of the bundle',
    rejected: `was made by another Node or V8 (this is ${process.version}), V8 refuses it`,
  };
  return status === 'used'
    ? { name: 'code-cache', status: 'ok', detail: `the bundle's V8 code cache is used by Node ${process.version}` }
    : { name: 'code-cache', status: 'warn', detail: `the bundle's V8 code cache ${why[status] ?? status}: every bpfcr start (CRIU actions, OCI hooks) is ~40 ms slower`, fix: INSTALL };
}

/** Every check, in the order the report prints them. */
export async function runChecks(p: DoctorPaths): Promise<Check[]> {
  return [
    rootCheck(),
    codeCacheCheck(),
    ...await kernelChecks(),
    bpffsCheck(p),
    await stagingCheck(p),
    await configCheck(p),
    ...criuChecks(p),
    await pluginCheck(p),
    actionScriptCheck(p),
    ociHooksCheck(p),
    ...runtimeChecks(p),
    tracefsCheck(p),
    await libbpfCheck(p),
  ];
}
