#!/usr/bin/env bash
# bpfcr installer. Idempotent: a second run finds everything in place, changes nothing, succeeds.
#
#   sudo ./install.sh [--prefix /usr/local] [--no-provision-criu]
#
# Installs: apt packages bpfcr uses (zstd for .tar.zst, bpftool for operators and tests, a C
# compiler for the CRIU plugin and test fixtures), npm dependencies, the compiled CLI under
# PREFIX/lib/bpfcr with a `bpfcr` launcher in PREFIX/bin, a bpffs on /sys/fs/bpf, and a
# commented /etc/bpfcr/config.yaml (never overwritten).
set -euo pipefail
cd "$(dirname "$0")"

PREFIX=/usr/local
PROVISION_CRIU=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --prefix=*) PREFIX="${1#*=}"; shift ;;
    --no-provision-criu) PROVISION_CRIU=0; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

ensure_apt_packages zstd bpftool gcc libc6-dev
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
# dist/ is synced file by file so an unchanged tree is left untouched.
changed="$(cd dist && find src -type f -name '*.js' -newer "$LIB/.dist-stamp" 2>/dev/null | head -1 || true)"
if [ ! -f "$LIB/.dist-stamp" ] || [ -n "$changed" ]; then
  rm -rf "$LIB/dist.new"
  mkdir -p "$LIB/dist.new"
  cp -a dist/src "$LIB/dist.new/"
  rm -rf "$LIB/dist" && mv "$LIB/dist.new" "$LIB/dist"
  touch "$LIB/.dist-stamp"
  log "installed bpfcr into $LIB"
fi

# Launcher with absolute paths: hooks run with an empty environment (no PATH).
launcher="#!/bin/sh
exec $NODE $LIB/dist/src/cli/main.js \"\$@\""
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

"$PREFIX/bin/bpfcr" --version >/dev/null
log "ready: $("$PREFIX/bin/bpfcr" --version)"
