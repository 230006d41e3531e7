# Shared install helpers (sourced by install.sh and scripts/test-setup.sh). Every function is
# idempotent: it checks first and changes nothing when the machine is already set up.

log() { printf 'bpfcr: %s\n' "$*"; }

# ensure_apt_packages PKG... — apt-get install only the missing ones (apt-get update once, lazily).
ensure_apt_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  # DPkg::Lock::Timeout: wait for a concurrent apt/dpkg run instead of failing on its lock
  local lock=(-o DPkg::Lock::Timeout=600)
  if ! apt-get install "${lock[@]}" -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update "${lock[@]}" -qq >/dev/null
    apt-get install "${lock[@]}" -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# ensure_npm_deps — npm ci when node_modules is missing or older than package-lock.json.
# Optional dependencies stay on: koffi's native binary comes from an optional package.
ensure_npm_deps() {
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "installing npm dependencies"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
  fi
}

# ensure_bpffs DIR — mount a bpffs on DIR unless one is there already.
ensure_bpffs() {
  local dir="$1"
  mkdir -p "$dir"
  if [ "$(stat -f -c %T "$dir" 2>/dev/null)" != bpf_fs ]; then
    log "mounting bpffs on $dir"
    mount -t bpf bpf "$dir"
  fi
}
