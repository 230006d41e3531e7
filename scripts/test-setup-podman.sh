#!/usr/bin/env bash
# What the podman checkpoint/restore tests (test/podman/) need, idempotently: everything the OCI
# and CRIU suites need, and this checkout INSTALLED (./install.sh --no-demo). podman runs runc, and
# runc runs criu, with almost no environment: CRIU finds bpfcr's action script only through
# /etc/criu/default.conf, which names the installed copy, so the tests can only check
# this checkout's CRIU glue through the installed one. install.sh changes nothing when it is current.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "test-setup-podman: the podman tests run as root: run 'sudo npm test'" >&2
  exit 1
fi
bash scripts/test-setup-oci.sh
bash scripts/test-setup-criu.sh
out="$(./install.sh --no-demo 2>&1)" || { printf '%s\n' "$out" >&2; exit 1; }
printf '%s\n' "$out" | grep -v '^bpfcr: ready' || true
