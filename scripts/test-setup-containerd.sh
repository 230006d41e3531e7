#!/usr/bin/env bash
# What the containerd checkpoint/restore tests (test/containerd/) need, idempotently: the Debian
# package `containerd` (1.6; it brings `ctr` and containerd-shim-runc-v2) and a containerd daemon
# answering on /run/containerd/containerd.sock. There is no systemd on the test machines, so a
# daemon that is not answering is started here by hand, in the background (its log:
# /var/log/bpfcr-containerd.log), and this waits until `ctr version` works. A second run changes
# nothing. (containerd runs runc, so the CRIU side is scripts/test-setup-podman.sh's install.)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "test-setup-containerd: the containerd tests run as root: run 'sudo npm test'" >&2
  exit 1
fi
. scripts/lib.sh
ensure_apt_packages containerd runc

SOCK=/run/containerd/containerd.sock
answering() { timeout 5 ctr --address "$SOCK" version >/dev/null 2>&1; }

answering && exit 0
log "starting containerd in the background (log: /var/log/bpfcr-containerd.log)"
# setsid + nohup: the daemon outlives this script and the test run that started it
setsid nohup containerd >>/var/log/bpfcr-containerd.log 2>&1 </dev/null &
for _ in $(seq 1 100); do
  answering && exit 0
  sleep 0.1
done
echo "test-setup-containerd: containerd does not answer on $SOCK after 10 s; its log:" >&2
tail -n 20 /var/log/bpfcr-containerd.log >&2
exit 1
