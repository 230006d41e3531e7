#!/usr/bin/env bash
# Make a working CRIU (>= 4) available as `criu` on PATH.
#
#   scripts/provision-criu.sh [--no-provision-criu] [--force]
#
# 1. If the `criu` found on PATH passes `criu check`, use it.
# 2. Otherwise unpack Debian 13 (trixie) CRIU into a private root with debootstrap (the host keeps its own
#    libc) and install a wrapper that runs it through the root's own dynamic loader.
#
# Idempotent: a second run finds the working criu and only re-checks it.
# --no-provision-criu (or BPFCR_NO_PROVISION_CRIU=1) only checks and reports.
# --force re-creates the private root and the wrapper.
#
# Environment (all optional):
#   BPFCR_CRIU_ROOT     private root           (default /opt/bpfcr/criu-root)
#   BPFCR_CRIU_WRAPPER  wrapper path           (default /usr/local/sbin/criu)
#   BPFCR_CRIU_SUITE    Debian suite           (default trixie)
#   BPFCR_CRIU_MIRROR   Debian mirror URI      (default: the one the host's apt sources use)
set -euo pipefail

ROOT=${BPFCR_CRIU_ROOT:-/opt/bpfcr/criu-root}
WRAPPER=${BPFCR_CRIU_WRAPPER:-/usr/local/sbin/criu}
SUITE=${BPFCR_CRIU_SUITE:-trixie}
NO_PROVISION=${BPFCR_NO_PROVISION_CRIU:-0}
FORCE=0
MARKER="bpfcr provision-criu"

for arg in "$@"; do
  case "$arg" in
    --no-provision-criu) NO_PROVISION=1 ;;
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "provision-criu: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

say() { echo "provision-criu: $*"; }
die() { echo "provision-criu: ERROR: $*" >&2; exit 1; }

# criu_ok CMD: CMD check succeeds ("Looks good", exit 0).
criu_ok() {
  local out
  out=$("$1" check 2>&1) || return 1
  [[ "$out" == *"Looks good"* ]]
}
criu_version() { "$1" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1; }
# Plugin directory compiled into the binary (CR_PLUGIN_DEFAULT, "/usr/lib/criu/" upstream).
plugin_dir() {
  local bin=$1
  [[ -f "$ROOT/usr/sbin/criu" && "$bin" == "$WRAPPER" ]] && bin="$ROOT/usr/sbin/criu"
  local d
  d=$(grep -a -o -m1 -E '/usr/(local/)?lib[a-z0-9_/-]*/criu/' "$bin" 2>/dev/null | head -n1 || true)
  echo "${d:-/usr/lib/criu/}"
}

report_ok() { # PATH-criu, how
  local bin=$1 how=$2
  say "$how: $bin (CRIU $(criu_version "$bin"), criu check: Looks good; plugins load from $(plugin_dir "$bin"))"
}

# The plugin header (criu-plugin.h, from libcriu-dev) belongs in the private root; add it to a root made
# without it.
ensure_header() {
  [[ -x "$ROOT/usr/sbin/criu" && ! -f "$ROOT/usr/include/criu/criu-plugin.h" ]] || return 0
  say "adding libcriu-dev (criu-plugin.h) to $ROOT"
  chroot "$ROOT" apt-get install -y -q libcriu-dev >"$(dirname "$ROOT")/apt-libcriu-dev.log" 2>&1 || die "cannot install libcriu-dev into $ROOT"
}

# --- 1. an existing working criu -------------------------------------------------------------------------
path_criu=$(command -v criu 2>/dev/null || true)
if [[ $FORCE == 0 && -n "$path_criu" ]] && criu_ok "$path_criu"; then
  if [[ "$(readlink -f "$path_criu")" == "$(readlink -f "$WRAPPER")" ]] && grep -qs "$MARKER" "$WRAPPER"; then
    ensure_header
    report_ok "$path_criu" "already provisioned, nothing to do"
  else
    report_ok "$path_criu" "using the criu on PATH"
  fi
  exit 0
fi

# The wrapper may work but not be first on PATH (e.g. a PATH without /usr/local/sbin).
if [[ $FORCE == 0 && -x "$WRAPPER" ]] && criu_ok "$WRAPPER"; then
  ensure_header
  report_ok "$WRAPPER" "already provisioned, nothing to do"
  say "WARNING: \`criu\` on this PATH is ${path_criu:-missing}, not $WRAPPER; runc/podman look criu up on PATH: put $(dirname "$WRAPPER") first"
  exit 0
fi

if [[ $NO_PROVISION == 1 ]]; then
  die "no working criu: ${path_criu:-no criu on PATH}${path_criu:+ fails \`criu check\`} and provisioning is disabled (--no-provision-criu / BPFCR_NO_PROVISION_CRIU=1)"
fi
[[ $(id -u) == 0 ]] || die "must run as root to provision CRIU"
[[ $(uname -m) == x86_64 ]] || die "only x86_64 is supported (got $(uname -m))"

# --- 2. provision CRIU from Debian $SUITE into $ROOT ------------------------------------------------------
t0=$(date +%s)
if [[ $FORCE == 1 ]]; then
  say "--force: provisioning CRIU from Debian $SUITE into $ROOT"
elif [[ -n "$path_criu" ]]; then
  say "$path_criu (CRIU $(criu_version "$path_criu")) fails \`criu check\`; provisioning CRIU from Debian $SUITE into $ROOT"
else
  say "no criu on PATH; provisioning CRIU from Debian $SUITE into $ROOT"
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q debootstrap >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; } \
    || die "cannot install debootstrap with apt-get"
fi

# The Debian mirror the host's apt already uses: the URI of the source that carries the host's own suite.
host_mirror() {
  local codename f
  codename=$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}")
  [[ -n "$codename" ]] || return 0
  shopt -s nullglob
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    # one-line format: deb [options] URI SUITE COMPONENTS...
    awk -v s="$codename" '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i+1) == s) { print $i; exit } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    # deb822 format: stanzas separated by blank lines with Types/URIs/Suites fields.
    awk -v s="$codename" 'BEGIN { RS = ""; FS = "\n" }
      { uris = ""; suites = ""; types = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/)    { uris = $i;   sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/)  { suites = " " $i " "; sub(/^ Suites:/, "", suites) }
          if ($i ~ /^Types:/)   types = $i
          if ($i ~ /^Enabled:[ \t]*no/) enabled = "no"
        }
        if (enabled == "yes" && types ~ /(^|[ \t])deb([ \t]|$)/ && suites ~ ("[ \t]" s "[ \t]")) {
          split(uris, u, /[ \t]+/); print u[1]; exit } }' "$f"
  done
}
MIRROR=${BPFCR_CRIU_MIRROR:-$(host_mirror | head -n1)}
[[ -n "$MIRROR" ]] || die "cannot find the host's Debian mirror in /etc/apt/sources.list{,.d/*}; set BPFCR_CRIU_MIRROR"

parent=$(dirname "$ROOT")
mkdir -p "$parent"
rm -rf "$ROOT".tmp.*
tmp="$ROOT.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
say "debootstrap --variant=minbase --include=criu,libcriu-dev $SUITE $tmp $MIRROR"
if ! debootstrap --variant=minbase --include=criu,libcriu-dev "$SUITE" "$tmp" "$MIRROR" >"$parent/debootstrap.log" 2>&1; then
  tail -n 20 "$parent/debootstrap.log" >&2
  die "debootstrap of Debian $SUITE failed (full log: $parent/debootstrap.log)"
fi
[[ -x "$tmp/usr/sbin/criu" ]] || die "debootstrap finished but $tmp/usr/sbin/criu is missing"
[[ -f "$tmp/usr/include/criu/criu-plugin.h" ]] || die "debootstrap finished but criu-plugin.h (libcriu-dev) is missing"
rm -rf "$tmp/var/cache/apt/archives/"*.deb
rm -rf "$ROOT"
mv "$tmp" "$ROOT"
trap - EXIT

mkdir -p "$(dirname "$WRAPPER")"
cat >"$WRAPPER.new" <<EOF
#!/bin/sh
# Generated by $MARKER: CRIU from a private Debian $SUITE root, run through
# that root's own dynamic loader so that the host's libc is left alone.
R=$ROOT
exec "\$R/lib64/ld-linux-x86-64.so.2" --library-path "\$R/lib/x86_64-linux-gnu:\$R/usr/lib/x86_64-linux-gnu" "\$R/usr/sbin/criu" "\$@"
EOF
chmod 0755 "$WRAPPER.new"
mv "$WRAPPER.new" "$WRAPPER"

if ! out=$("$WRAPPER" check 2>&1) || [[ "$out" != *"Looks good"* ]]; then
  echo "$out" | tail -n 20 >&2
  die "the provisioned CRIU fails \`criu check\` ($WRAPPER)"
fi
report_ok "$WRAPPER" "provisioned in $(( $(date +%s) - t0 )) s"
now=$(command -v criu 2>/dev/null || true)
if [[ "$(readlink -f "${now:-/nonexistent}")" != "$(readlink -f "$WRAPPER")" ]]; then
  say "WARNING: \`criu\` on this PATH is ${now:-missing}, not $WRAPPER; runc/podman look criu up on PATH: put $(dirname "$WRAPPER") first"
fi
