#!/usr/bin/env bash
# Everything `npm test` needs, idempotently, so the suite runs on a fresh clone by itself:
# root, apt packages, npm dependencies, the TypeScript build, the C fixtures and libbpf fixture apps, a bpffs, and for
# the CRIU/podman/containerd end-to-end suites a working CRIU >= 4 with the bpfcr plugin installed
# and a containerd daemon.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "bpfcr tests run as root against the real kernel (bpf(2), bpffs, CRIU): run 'sudo npm test'" >&2
  exit 1
fi

. scripts/lib.sh
ensure_apt_packages bpftool zstd gcc libc6-dev runc podman busybox-static strace   # strace: the hostile-archive tests watch bpf(2)
ensure_npm_deps
npm run --silent build
bash scripts/build-fixtures.sh
bash scripts/build-apps.sh          # the libbpf fixture apps (clang, libbpf-dev, bpftool gen skeleton)
ensure_bpffs /sys/fs/bpf
bash scripts/test-setup-criu.sh
bash scripts/test-setup-oci.sh
bash scripts/test-setup-podman.sh
bash scripts/test-setup-containerd.sh   # containerd 1.6 (apt) and its daemon, started by hand when not answering
