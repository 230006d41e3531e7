#!/usr/bin/env bash
# What the CRIU end-to-end tests (test/criu/) need, idempotently (a second run changes nothing):
# runc and busybox-static (apt), a working CRIU >= 4 (scripts/provision-criu.sh), the bpfcr CRIU
# plugin built from this checkout and installed (src/criu-plugin/build.sh install), the fixtures.
# The tests run it from their before(); `npm test` can also run it from scripts/test-setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "test-setup-criu: the CRIU tests run as root (runc, criu, bpffs): run 'sudo npm test'" >&2
  exit 1
fi
. scripts/lib.sh
ensure_apt_packages runc busybox-static bpftool gcc libc6-dev
bash scripts/provision-criu.sh | grep -v 'nothing to do' || true
bash scripts/provision-criu.sh --no-provision-criu >/dev/null   # fails (exit 1) if there is still no working criu
bash src/criu-plugin/build.sh install | grep -v 'already up to date\|^criu-plugin: built' || true
cmp -s build/bpfcr_plugin.so "${BPFCR_CRIU_PLUGIN_DIR:-/usr/lib/criu}/bpfcr_plugin.so" \
  || { echo "test-setup-criu: the CRIU plugin is not installed (src/criu-plugin/build.sh install)" >&2; exit 1; }
bash scripts/build-fixtures.sh
