#!/usr/bin/env bash
# What the OCI hook tests (test/oci/) need, idempotently (a second run changes nothing): podman,
# runc and a static busybox (apt), the C fixtures (build/bpfholder goes into the test image), the
# compiled hooks (dist/src/oci). The test image itself is built and imported by
# test/helpers/podman.ts on first use (localhost/bpfcr-test:<content hash>).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "test-setup-oci: the OCI tests run as root (podman, runc, bpffs): run 'sudo npm test'" >&2
  exit 1
fi
. scripts/lib.sh
ensure_apt_packages podman runc busybox-static
bash scripts/build-fixtures.sh
[ -f dist/src/oci/hook-main.cjs ] || npm run --silent build
ensure_bpffs /sys/fs/bpf
