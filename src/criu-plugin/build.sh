#!/usr/bin/env bash
# Build (and optionally install) the bpfcr CRIU plugin.
#
#   src/criu-plugin/build.sh            -> build/bpfcr_plugin.so (at the repository root)
#   src/criu-plugin/build.sh install    -> build, then copy to the CRIU plugin dir (0644) if it differs
#   src/criu-plugin/build.sh uninstall  -> remove it from the CRIU plugin dir
#
# criu-plugin.h is taken from, in order: $BPFCR_CRIU_INCLUDE, the CRIU built by scripts/provision-criu.sh
# (/opt/bpfcr/criu/include/criu: 4.1.1 with the src/criu-patches series, which adds the DUMP_VMA and
# RESTORE_VMA hooks; $BPFCR_CRIU_PREFIX overrides /opt/bpfcr/criu), /usr/include/criu.
# Plugin dir: $BPFCR_CRIU_PLUGIN_DIR, default /usr/lib/criu (compiled into CRIU; CRIU also honours
# CRIU_LIBS_DIR and --libdir).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$repo/build/bpfcr_plugin.so"
plugin_dir=${BPFCR_CRIU_PLUGIN_DIR:-/usr/lib/criu}
mode=${1:-build}

case "$mode" in
  build|install) ;;
  uninstall)
    rm -f "$plugin_dir/bpfcr_plugin.so"
    echo "criu-plugin: removed $plugin_dir/bpfcr_plugin.so"
    exit 0 ;;
  *) echo "usage: $0 [build|install|uninstall]" >&2; exit 2 ;;
esac

inc=""
for d in ${BPFCR_CRIU_INCLUDE:+"$BPFCR_CRIU_INCLUDE"} "${BPFCR_CRIU_PREFIX:-/opt/bpfcr/criu}/include/criu" /usr/include/criu; do
  if [[ -f "$d/criu-plugin.h" ]]; then inc=$d; break; fi
done
if [[ -z "$inc" ]]; then
  echo "criu-plugin: ERROR: criu-plugin.h not found (run scripts/provision-criu.sh, install a CRIU -dev package, or set BPFCR_CRIU_INCLUDE)" >&2
  exit 1
fi

# A header with the DUMP_VMA/RESTORE_VMA hooks (src/criu-patches) lets the plugin restore mmapped maps;
# against another CRIU's header it builds without them (and hooks/checkpoint refuses such dumps early).
defs=()
vma="without the VMA hooks"
if grep -q 'CR_PLUGIN_HOOK__DUMP_VMA' "$inc/criu-plugin.h"; then defs+=(-DBPFCR_HAVE_VMA_HOOKS); vma="with the VMA hooks"; fi

mkdir -p "$(dirname "$out")"
${CC:-cc} -O2 -Wall -Wextra -Wno-unused-parameter -shared -fPIC -I"$inc" "${defs[@]}" \
  -o "$out.tmp" "$here/bpfcr_plugin.c"
mv "$out.tmp" "$out"
abi=$(sed -n 's/^#define CRIU_PLUGIN_VERSION_\(MAJOR\|MINOR\|SUBLEVEL\)[[:space:]]*\([0-9]*\).*/\2/p' "$inc/criu-plugin.h" | paste -sd.)
echo "criu-plugin: built $out (header $inc/criu-plugin.h, plugin ABI $abi, $vma)"

if [[ "$mode" == install ]]; then
  if cmp -s "$out" "$plugin_dir/bpfcr_plugin.so"; then
    echo "criu-plugin: $plugin_dir/bpfcr_plugin.so already up to date"
  else
    install -D -m 0644 "$out" "$plugin_dir/bpfcr_plugin.so"
    echo "criu-plugin: installed $plugin_dir/bpfcr_plugin.so"
  fi
fi
