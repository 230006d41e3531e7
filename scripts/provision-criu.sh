#!/usr/bin/env bash
# Build CRIU 4.1.1 from Debian's source with the bpfcr patch series and put it on PATH as `criu`.
#
#   scripts/provision-criu.sh [--no-provision-criu] [--force]
#
# 1. Fetch criu_4.1.1.orig.tar.xz from Debian's archive (trixie's source package) through a private apt
#    config under /opt/bpfcr/apt (the host's apt sources are left alone); check its SHA-256 against
#    src/criu-patches/criu_4.1.1.orig.tar.xz.sha256.
# 2. Install the build dependencies from the host's (Debian 12) apt, only the missing ones.
# 3. Unpack into /opt/bpfcr/criu-src, apply src/criu-patches/NNNN-*.patch in order, `make NO_LIBBPF=1 criu`
#    (no libbpf even when libbpf-dev is installed: BPF maps must reach the bpfcr plugin), install the binary
#    to /opt/bpfcr/criu/sbin/criu and the patched criu-plugin.h to /opt/bpfcr/criu/include/criu/, and a
#    wrapper /usr/local/sbin/criu that execs it. Plugins load from /usr/lib/criu (compiled in).
#
# Idempotent: a stamp records the tarball's and every patch's SHA-256; when it matches and `criu check`
# passes, nothing is done. Changed patches mean a rebuild. A leftover private root of the old provisioning
# (/opt/bpfcr/criu-root, Debian 13's binary) is removed once the built CRIU works.
# --no-provision-criu (or BPFCR_NO_PROVISION_CRIU=1) only checks and reports (any working criu on PATH).
# --force rebuilds from scratch (the downloaded tarball is reused when its checksum is right).
#
# Environment (all optional):
#   BPFCR_CRIU_PREFIX   install prefix          (default /opt/bpfcr/criu)
#   BPFCR_CRIU_WORK     source/build dir        (default /opt/bpfcr/criu-src)
#   BPFCR_CRIU_WRAPPER  wrapper path            (default /usr/local/sbin/criu)
#   BPFCR_CRIU_SUITE    Debian source suite     (default trixie)
#   BPFCR_CRIU_MIRROR   Debian mirror URI       (default: the one the host's apt sources use)
#   BPFCR_CRIU_JOBS     make -j                 (default 2)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
CRIU_VERSION=4.1.1
TARBALL=criu_${CRIU_VERSION}.orig.tar.xz
PATCH_DIR="$repo/src/criu-patches"
SUM_FILE="$PATCH_DIR/$TARBALL.sha256"
PREFIX=${BPFCR_CRIU_PREFIX:-/opt/bpfcr/criu}
WORK=${BPFCR_CRIU_WORK:-/opt/bpfcr/criu-src}
WRAPPER=${BPFCR_CRIU_WRAPPER:-/usr/local/sbin/criu}
SUITE=${BPFCR_CRIU_SUITE:-trixie}
JOBS=${BPFCR_CRIU_JOBS:-2}
APT_DIR=/opt/bpfcr/apt
OLD_ROOT=/opt/bpfcr/criu-root          # made by the former (debootstrap) provisioning
NO_PROVISION=${BPFCR_NO_PROVISION_CRIU:-0}
FORCE=0
MARKER="bpfcr provision-criu"
STAMP="$PREFIX/.bpfcr-criu-stamp"
# How the tree is built; part of the stamp, so a change here rebuilds.
MAKE_ARGS=(NO_LIBBPF=1 criu)
BUILD_DEPS=(build-essential libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  python3-protobuf pkg-config libcap-dev libnl-3-dev libnet1-dev libaio-dev libgnutls28-dev libbsd-dev uuid-dev)

for arg in "$@"; do
  case "$arg" in
    --no-provision-criu) NO_PROVISION=1 ;;
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "provision-criu: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

say() { echo "provision-criu: $*"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
since() { local d=$(( $(now_ms) - $1 )); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); } # seconds since $1 (ms)
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
  local bin=$1 d
  grep -qs "$MARKER" "$bin" && bin="$PREFIX/sbin/criu"
  d=$(grep -a -o -m1 -E '/usr/(local/)?lib[a-z0-9_/-]*/criu/?' "$bin" 2>/dev/null | head -n1 || true)
  echo "${d:-/usr/lib/criu/}"
}
report_ok() { # criu, how
  say "$2: $1 (CRIU $(criu_version "$1"), criu check: Looks good; plugins load from $(plugin_dir "$1"))"
}
warn_path() {
  local now
  now=$(command -v criu 2>/dev/null || true)
  if [[ "$(readlink -f "${now:-/nonexistent}")" != "$(readlink -f "$WRAPPER")" ]]; then
    say "WARNING: \`criu\` on this PATH is ${now:-missing}, not $WRAPPER; runc/podman look criu up on PATH: put $(dirname "$WRAPPER") first"
  fi
}

# The stamp: what the installed binary was built from.
want_stamp() {
  local p
  echo "criu $CRIU_VERSION"
  echo "tarball $(awk '{print $1}' "$SUM_FILE")"
  for p in "$PATCH_DIR"/[0-9][0-9][0-9][0-9]-*.patch; do
    [[ -e "$p" ]] || continue
    echo "patch $(basename "$p") $(sha256sum "$p" | awk '{print $1}')"
  done
  echo "make ${MAKE_ARGS[*]}"
}

wrapper_ours() { grep -qs "$MARKER" "$WRAPPER" && grep -qs "exec \"\?$PREFIX/sbin/criu\"\?" "$WRAPPER"; }

# The built CRIU is there, built from the current tarball + patches, and works.
built_ok() {
  [[ -x "$PREFIX/sbin/criu" && -f "$PREFIX/include/criu/criu-plugin.h" && -f "$STAMP" ]] || return 1
  [[ "$(cat "$STAMP")" == "$(want_stamp)" ]] || return 1
  criu_ok "$PREFIX/sbin/criu"
}

write_wrapper() {
  mkdir -p "$(dirname "$WRAPPER")"
  cat >"$WRAPPER.new" <<EOF
#!/bin/sh
# Generated by $MARKER: CRIU $CRIU_VERSION built from Debian's source with the
# bpfcr patches (src/criu-patches); plugins load from /usr/lib/criu.
exec "$PREFIX/sbin/criu" "\$@"
EOF
  chmod 0755 "$WRAPPER.new"
  mv "$WRAPPER.new" "$WRAPPER"
}

# The old debootstrap root, once the built CRIU works (and the wrapper no longer points at it).
remove_old_root() {
  [[ -d "$OLD_ROOT" ]] || return 0
  wrapper_ours || return 0
  say "removing the old private Debian root $OLD_ROOT (replaced by the built CRIU)"
  rm -rf "$OLD_ROOT" "$(dirname "$OLD_ROOT")/debootstrap.log" "$(dirname "$OLD_ROOT")/apt-libcriu-dev.log"
}

[[ -f "$SUM_FILE" ]] || die "$SUM_FILE is missing"

# --- 1. already provisioned ------------------------------------------------------------------------------
if [[ $FORCE == 0 ]] && built_ok; then
  if wrapper_ours; then
    how="already provisioned, nothing to do"
  elif [[ $NO_PROVISION == 1 ]]; then
    how=""
  else
    write_wrapper
    how="built CRIU up to date, (re)wrote the wrapper"
  fi
  if [[ -n "$how" ]] && criu_ok "$WRAPPER"; then
    remove_old_root
    report_ok "$WRAPPER" "$how"
    warn_path
    exit 0
  fi
fi

if [[ $NO_PROVISION == 1 ]]; then
  path_criu=$(command -v criu 2>/dev/null || true)
  if [[ -n "$path_criu" ]] && criu_ok "$path_criu"; then
    report_ok "$path_criu" "using the criu on PATH"
    say "WARNING: it is not CRIU $CRIU_VERSION with the bpfcr patches (src/criu-patches) or not up to date: TCP/UDP sockets (Linux >= 6.16) and mmapped BPF maps may fail to dump; run scripts/provision-criu.sh"
    exit 0
  fi
  die "no working criu: ${path_criu:-no criu on PATH}${path_criu:+ fails \`criu check\`} and provisioning is disabled (--no-provision-criu / BPFCR_NO_PROVISION_CRIU=1)"
fi
[[ $(id -u) == 0 ]] || die "must run as root to provision CRIU"
[[ $(uname -m) == x86_64 ]] || die "only x86_64 is supported (got $(uname -m))"

t0=$(now_ms)
if [[ $FORCE == 1 ]]; then
  say "--force: building CRIU $CRIU_VERSION with the bpfcr patches into $PREFIX"
elif [[ -f "$STAMP" ]]; then
  say "CRIU in $PREFIX is out of date (patches or source changed) or fails \`criu check\`: rebuilding"
else
  say "building CRIU $CRIU_VERSION from Debian's source with the bpfcr patches into $PREFIX"
fi

# --- 2. the source tarball, through a private apt config -----------------------------------------------
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

want_sum=$(awk '{print $1}' "$SUM_FILE")
sum_ok() { [[ -f "$1" && "$(sha256sum "$1" | awk '{print $1}')" == "$want_sum" ]]; }
dl="$APT_DIR/archives"
mkdir -p "$dl" "$APT_DIR/lists/partial" "$APT_DIR/cache"
td=$(now_ms)
if sum_ok "$dl/$TARBALL"; then
  say "source: $dl/$TARBALL (cached, SHA-256 ok)"
else
  MIRROR=${BPFCR_CRIU_MIRROR:-$(host_mirror | head -n1)}
  [[ -n "$MIRROR" ]] || die "cannot find the host's Debian mirror in /etc/apt/sources.list{,.d/*}; set BPFCR_CRIU_MIRROR"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  opt=""; [[ -f "$keyring" ]] && opt="[signed-by=$keyring] "
  echo "deb-src ${opt}$MIRROR $SUITE main" >"$APT_DIR/sources.list"
  # Everything apt keeps for this lives under $APT_DIR: the host's sources, lists and caches stay as they are.
  papt=(apt-get -q -o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts=-
    -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" -o APT::Sandbox::User=root)
  say "apt-get update (private config: deb-src $MIRROR $SUITE main)"
  "${papt[@]}" update >"$APT_DIR/update.log" 2>&1 \
    || { tail -n 5 "$APT_DIR/update.log" >&2; die "apt-get update of the private $SUITE source list failed (log: $APT_DIR/update.log)"; }
  rm -f "$dl/$TARBALL"
  # The .dsc and the Debian diff may be missing on the mirror (seen here); only the orig tarball is needed.
  (cd "$dl" && "${papt[@]}" source --download-only criu) >"$APT_DIR/source.log" 2>&1 || true
  if ! sum_ok "$dl/$TARBALL"; then
    # apt's own URI for just the orig tarball, fetched with apt's helper (or curl).
    uri=$("${papt[@]}" source --print-uris criu 2>/dev/null | awk -v f="$TARBALL" '$2 == f { gsub(/\x27/, "", $1); print $1; exit }')
    [[ -n "$uri" ]] || die "Debian $SUITE's criu source package has no $TARBALL (see $APT_DIR/source.log); is its version still $CRIU_VERSION?"
    say "apt-get source did not fetch $TARBALL; downloading $uri"
    rm -f "$dl/$TARBALL"
    if [[ -x /usr/lib/apt/apt-helper ]]; then
      /usr/lib/apt/apt-helper -o APT::Sandbox::User=root download-file "$uri" "$dl/$TARBALL" "SHA256:$want_sum" >>"$APT_DIR/source.log" 2>&1 || true
    elif command -v curl >/dev/null 2>&1; then
      curl -fsSL -o "$dl/$TARBALL" "$uri" >>"$APT_DIR/source.log" 2>&1 || true
    fi
  fi
  [[ -f "$dl/$TARBALL" ]] || die "could not download $TARBALL (log: $APT_DIR/source.log)"
  sum_ok "$dl/$TARBALL" || die "$dl/$TARBALL: SHA-256 $(sha256sum "$dl/$TARBALL" | awk '{print $1}') is not the recorded $want_sum ($SUM_FILE)"
  say "source: $dl/$TARBALL downloaded in $(since "$td") s, SHA-256 ok"
fi

# --- 3. build dependencies (host apt, only the missing ones) -----------------------------------------------
tdeps=$(now_ms)
# ensure_apt_packages (scripts/lib.sh) runs plain apt-get; APT_CONFIG adds a lock timeout, so a concurrent
# apt/dpkg run is waited for instead of failing.
printf 'DPkg::Lock::Timeout "600";\n' >"$APT_DIR/lock-timeout.conf"
# shellcheck source=lib.sh
. "$repo/scripts/lib.sh"
APT_CONFIG="$APT_DIR/lock-timeout.conf" ensure_apt_packages "${BUILD_DEPS[@]}" \
  || die "cannot install the build dependencies: ${BUILD_DEPS[*]}"
deps_s=$(since "$tdeps")

# --- 4. unpack, patch, build ----------------------------------------------------------------------------
src="$WORK/criu-$CRIU_VERSION"
mkdir -p "$WORK"
rm -rf "$src.tmp"
mkdir "$src.tmp"
tar -xJf "$dl/$TARBALL" -C "$src.tmp" --strip-components=1 || die "cannot unpack $dl/$TARBALL"
n=0
for p in "$PATCH_DIR"/[0-9][0-9][0-9][0-9]-*.patch; do
  [[ -e "$p" ]] || continue
  if ! out=$(patch -d "$src.tmp" -p1 --batch --forward -i "$p" 2>&1); then
    echo "$out" >&2
    die "patch $(basename "$p") does not apply to CRIU $CRIU_VERSION"
  fi
  n=$((n + 1))
done
say "unpacked CRIU $CRIU_VERSION into $src and applied $n patches"
rm -rf "$src"
mv "$src.tmp" "$src"

tb=$(now_ms)
log="$WORK/build.log"
say "make -j$JOBS ${MAKE_ARGS[*]} (log: $log)"
# PLUGINDIR unset: CR_PLUGIN_DEFAULT stays "/usr/lib/criu/" (criu/include/plugin.h).
if ! (cd "$src" && env -u PLUGINDIR make -j"$JOBS" "${MAKE_ARGS[@]}") >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  die "building CRIU failed (log: $log)"
fi
build_s=$(since "$tb")
bin="$src/criu/criu"
# Proof that no libbpf went in: the feature test was skipped, bpfmap.o not built, libbpf not linked.
grep -q "Building without BPF map support" "$log" || die "the build did not skip libbpf (log: $log)"
[[ ! -e "$src/criu/bpfmap.o" ]] || die "bpfmap.o was built: CRIU has libbpf support (log: $log)"
if ldd "$bin" 2>/dev/null | grep -q libbpf; then die "$bin links libbpf"; fi
grep -a -q '/usr/lib/criu/' "$bin" || die "$bin does not load plugins from /usr/lib/criu/"

install -D -m 0755 "$bin" "$PREFIX/sbin/criu.new"
mv "$PREFIX/sbin/criu.new" "$PREFIX/sbin/criu"
install -D -m 0644 "$src/criu/include/criu-plugin.h" "$PREFIX/include/criu/criu-plugin.h"

write_wrapper

if ! out=$("$WRAPPER" check 2>&1) || [[ "$out" != *"Looks good"* ]]; then
  echo "$out" | tail -n 20 >&2
  rm -f "$STAMP"
  die "the built CRIU fails \`criu check\` ($WRAPPER)"
fi
want_stamp >"$STAMP"
remove_old_root
report_ok "$WRAPPER" "built and installed in $(since "$t0") s (dependencies ${deps_s} s, make ${build_s} s; no libbpf)"
warn_path
