#!/usr/bin/env bash
# bpfcr installer. Idempotent: a second run finds everything in place, changes nothing, succeeds.
#
#   sudo ./install.sh [--prefix /usr/local] [--no-provision-criu] [--no-demo]
#
# Ends by running `bpfcr demo` (podman checkpoint --export / restore --import of a container holding
# BPF maps, every map compared before/after), which proves the installation; --no-demo skips it.
#
# Installs: apt packages bpfcr uses (zstd for .tar.zst, bpftool for operators and tests, a C
# compiler for the CRIU plugin and test fixtures), npm dependencies, the compiled CLI under
# PREFIX/lib/bpfcr with a `bpfcr` launcher in PREFIX/bin, a bpffs on /sys/fs/bpf, and a
# commented /etc/bpfcr/config.yaml (never overwritten).
set -euo pipefail
cd "$(dirname "$0")"

PREFIX=/usr/local
PROVISION_CRIU=1
RUN_DEMO=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --prefix=*) PREFIX="${1#*=}"; shift ;;
    --no-provision-criu) PROVISION_CRIU=0; shift ;;
    --no-demo) RUN_DEMO=0; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
export PROVISION_CRIU

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo ./install.sh): bpfcr needs bpf(2), bpffs mounts and /usr/local" >&2
  exit 1
fi

NODE="$(command -v node || true)"
if [ -z "$NODE" ] || ! "$NODE" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  echo "install.sh: Node.js >= 20 is required (found: ${NODE:-none})" >&2
  exit 1
fi

. scripts/lib.sh

ensure_apt_packages zstd bpftool gcc libc6-dev libbpf1   # libbpf1: reloading programs from an app's object (src/programs/libbpf.ts)
ensure_npm_deps
npm run --silent build
ensure_bpffs /sys/fs/bpf

# The installed copy: compiled JS + production dependencies, independent of this checkout.
LIB="$PREFIX/lib/bpfcr"
mkdir -p "$LIB"
stamp="$(cat package.json package-lock.json | sha256sum | cut -c1-16)"
if [ "$(cat "$LIB/.deps-stamp" 2>/dev/null || true)" != "$stamp" ]; then
  log "installing runtime dependencies into $LIB"
  cp package.json package-lock.json "$LIB/"
  (cd "$LIB" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$stamp" > "$LIB/.deps-stamp"
fi
# dist/ is replaced only when its content differs (tsc rewrites every file, so mtimes say nothing).
# dist/bundle: the one-file bundle every command runs from, and its V8 code cache (src/cli/load.cts).
if ! diff -rq dist/src "$LIB/dist/src" >/dev/null 2>&1 || ! cmp -s dist/bundle/bpfcr.cjs "$LIB/dist/bundle/bpfcr.cjs"; then
  rm -rf "$LIB/dist.new"
  mkdir -p "$LIB/dist.new"
  cp -a dist/src dist/bundle "$LIB/dist.new/"
  rm -rf "$LIB/dist" && mv "$LIB/dist.new" "$LIB/dist"
  log "installed bpfcr into $LIB"
fi
# V8 uses a code cache only from the same Node (and flags): made again here after a Node upgrade
# (or when the copy above brought a cache made by another Node). Not byte-identical between builds.
cache_status="$(cd / && env -u NODE_OPTIONS "$NODE" -e "process.stdout.write(require('$LIB/dist/src/cli/load.cjs').codeCacheStatus())")"
if [ "$cache_status" != used ]; then
  (cd / && env -u NODE_OPTIONS "$NODE" -e "require('$LIB/dist/src/cli/load.cjs').buildCodeCache()")
  log "made the code cache of $LIB/dist/bundle/bpfcr.cjs (it was $cache_status)"
fi

# Launcher with absolute paths: hooks run with an empty environment (no PATH).
# bpfcr makes no TLS connections: NODE_EXTRA_CA_CERTS would only add ~40 ms to every start.
launcher="#!/bin/sh
unset NODE_EXTRA_CA_CERTS
exec $NODE $LIB/dist/src/cli/bpfcr.cjs \"\$@\""
if [ "$(cat "$PREFIX/bin/bpfcr" 2>/dev/null || true)" != "$launcher" ]; then
  mkdir -p "$PREFIX/bin"
  printf '%s\n' "$launcher" > "$PREFIX/bin/bpfcr"
  chmod 0755 "$PREFIX/bin/bpfcr"
  log "installed $PREFIX/bin/bpfcr"
fi

if [ ! -e /etc/bpfcr/config.yaml ]; then
  install -d -m 0755 /etc/bpfcr
  install -m 0644 config/config.yaml /etc/bpfcr/config.yaml
  log "installed /etc/bpfcr/config.yaml"
fi

# --- CRIU integration (issue 3): provision a working CRIU, build+install the plugin, register the
# action script. (section owned by the CRIU glue)
# PROVISION_CRIU=1 (default): build CRIU 4.1.1 from Debian's source with the bpfcr patches
# (src/criu-patches) into /opt/bpfcr/criu, `criu` on PATH via /usr/local/sbin/criu; a no-op when it is
# already built from the current patches; 0 (--no-provision-criu): only check, and skip the CRIU
# integration with a warning when there is no working criu.
criu_ready=1
if [ "$PROVISION_CRIU" = 1 ]; then
  bash scripts/provision-criu.sh
elif ! bash scripts/provision-criu.sh --no-provision-criu; then
  criu_ready=0
  log "WARNING: no working criu and --no-provision-criu given: skipping the CRIU plugin and action script (runc/podman checkpoint of containers holding BPF maps will fail)"
fi

if [ "$criu_ready" = 1 ]; then
  # The plugin (C, tiny): pins BPF objects at dump, hands fds back at restore.
  bash src/criu-plugin/build.sh install

  # The action script: a sh shim that runs `bpfcr criu-action` with absolute paths (CRIU passes
  # almost no environment). Installed next to the compiled CLI it runs.
  hook="$LIB/hooks/checkpoint"
  hook_text="$(sed "s|^NODE=\$|NODE=$NODE|" hooks/checkpoint)"
  if [ "$(cat "$hook" 2>/dev/null || true)" != "$hook_text" ]; then
    mkdir -p "$LIB/hooks"
    printf '%s\n' "$hook_text" > "$hook.new"
    chmod 0755 "$hook.new"
    mv "$hook.new" "$hook"
    log "installed $hook"
  fi

  # Register it with CRIU in /etc/criu/default.conf, which both the criu CLI and runc's RPC mode
  # (podman, containerd) read. Not in /etc/criu/runc.conf: CRIU parses an RPC config file twice
  # (cr-service.c), so a script named there runs twice per action on top of default.conf's run.
  # Other lines, other action scripts included, are kept; an older bpfcr hook line is replaced,
  # and removed from runc.conf (where earlier versions registered it).
  BPFCR_HOOK_LINE='^[[:space:]]*(--)?action-script[[:space:]=]+[^[:space:]]*/bpfcr/hooks/checkpoint[[:space:]]*$'
  register_action_script() {
    local conf="$1" line="action-script $hook" tmp
    if [ -f "$conf" ] && grep -qxF "$line" "$conf"; then return 0; fi
    install -d -m 0755 "$(dirname "$conf")"
    tmp="$conf.bpfcr-new"
    if [ -f "$conf" ]; then
      grep -vE "$BPFCR_HOOK_LINE" "$conf" > "$tmp" || true
      # keep a final newline before appending
      [ -s "$tmp" ] && [ "$(tail -c1 "$tmp" | od -An -c | tr -d ' ')" != '\n' ] && echo >> "$tmp"
    else
      : > "$tmp"
    fi
    printf '%s\n' "$line" >> "$tmp"
    chmod 0644 "$tmp"
    mv "$tmp" "$conf"
    log "registered the bpfcr action script in $conf"
  }
  unregister_action_script() {
    local conf="$1" tmp="$1.bpfcr-new"
    [ -f "$conf" ] && grep -qE "$BPFCR_HOOK_LINE" "$conf" || return 0
    grep -vE "$BPFCR_HOOK_LINE" "$conf" > "$tmp" || true
    chmod --reference="$conf" "$tmp"
    mv "$tmp" "$conf"
    log "removed the bpfcr action script from $conf (default.conf names it; runc would run it twice more)"
  }
  register_action_script /etc/criu/default.conf
  unregister_action_script /etc/criu/runc.conf
fi


# --- OCI hooks (issue 4): prestart/poststop hook shims and their hooks.d registration (podman,
# CRI-O; docs/oci-hooks.md). The shims get absolute paths written in: podman runs hooks.d hooks
# with an EMPTY environment. The registration goes to the distribution directory
# /usr/share/containers/oci/hooks.d; a same-named file an admin puts in /etc/containers/oci/hooks.d
# overrides it (e.g. the `always` variants, installed under $PREFIX/share/bpfcr/oci-hooks.d/always).
# Only bpfcr's own files are written, each only when its content changed.
OCI_LIBEXEC="$PREFIX/libexec/bpfcr"
OCI_HOOKS_D=/usr/share/containers/oci/hooks.d
oci_install() { # oci_install MODE DEST CONTENT
  if [ "$(cat "$2" 2>/dev/null || true)" != "$3" ]; then
    install -d -m 0755 "$(dirname "$2")"
    printf '%s\n' "$3" > "$2.bpfcr-new"
    chmod "$1" "$2.bpfcr-new"
    mv -f "$2.bpfcr-new" "$2"
    log "installed $2"
  fi
}
for stage in prestart poststop; do
  oci_install 0755 "$OCI_LIBEXEC/$stage" \
    "$(sed -e "s|^NODE=\$|NODE=$NODE|" -e "s|^MAIN=\$|MAIN=$LIB/dist/src/oci/hook-main.cjs|" "hooks/$stage")"
  oci_install 0644 "$OCI_HOOKS_D/bpfcr-$stage.json" \
    "$(sed "s|/usr/local/libexec/bpfcr/|$OCI_LIBEXEC/|" "config/hooks.d/bpfcr-$stage.json")"
  oci_install 0644 "$PREFIX/share/bpfcr/oci-hooks.d/always/bpfcr-$stage-always.json" \
    "$(sed "s|/usr/local/libexec/bpfcr/|$OCI_LIBEXEC/|" "config/hooks.d/always/bpfcr-$stage-always.json")"
done
# save-on-stop / restore-from files live here (annotations naming anything else are refused)
install -d -m 0700 /var/lib/bpfcr/state

# --- bpfcr demo (issue 4): podman, runc and a static busybox for the demo image, and the demo
# program (build/bpfholder, a static binary built from test/fixtures/bpfholder.c) shipped with the
# installed copy, where `bpfcr demo` looks for it ($LIB/build/bpfholder).
ensure_apt_packages podman runc busybox-static
bash scripts/build-fixtures.sh
if ! cmp -s build/bpfholder "$LIB/build/bpfholder"; then
  install -d -m 0755 "$LIB/build"
  install -m 0755 build/bpfholder "$LIB/build/bpfholder.new"
  mv -f "$LIB/build/bpfholder.new" "$LIB/build/bpfholder"
  log "installed $LIB/build/bpfholder (the demo program)"
fi

"$PREFIX/bin/bpfcr" --version >/dev/null
log "ready: $("$PREFIX/bin/bpfcr" --version)"

if [ "$RUN_DEMO" = 1 ]; then
  if [ "${criu_ready:-1}" != 1 ]; then
    log "skipping bpfcr demo: no working criu (see above)"
  else
    log "running bpfcr demo (podman checkpoint/restore of a container holding BPF maps; --no-demo skips it)"
    "$PREFIX/bin/bpfcr" demo
  fi
fi
