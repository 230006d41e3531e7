#!/usr/bin/env bash
# podman checkpoint --export / restore --import of a real libbpf app (test/fixtures/apps/counter:
# mmapped .bss/.data/.rodata, a hash map, raw_tp + tracepoint perf links, BTF and perf-event fds)
# vs the same image running a plain sleep (the baseline), side by side; and restored on a wiped host. Median of N runs (default 5).
# Needs the podman test image and the apps: run `sudo npm test` once (or scripts/build-apps.sh and
# the podman suite), and tracefs on /sys/kernel/tracing.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5}
unset NODE_EXTRA_CA_CERTS NODE_OPTIONS
P=(podman --cgroup-manager=cgroupfs --runtime runc)
IMG=$("${P[@]}" images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/bpfcr-test:' | head -1)
[ -n "$IMG" ] || { echo "no localhost/bpfcr-test image: run the podman test suite once" >&2; exit 1; }
[ -x build/apps/counter ] || { echo "no build/apps/counter: run scripts/build-apps.sh" >&2; exit 1; }
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
NP=$(awk '/Max processes/{print ($4>32768?32768:$4)}' /proc/self/limits)
RUN=(run -d --network none --ulimit nofile=20000:20000 --ulimit "nproc=$NP:$NP" --cap-add SYS_ADMIN,BPF --security-opt seccomp=unconfined)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
declare -A CK RS
# app-wiped: the same app, with the staging area wiped (bpfcr gc --all) between checkpoint and restore,
# as on another host: maps recreated from the export, programs reloaded from the app's own object
for kind in app app-wiped plain; do
  : > "$W/ck"; : > "$W/rs"
  for i in $(seq "$N"); do
    name=bpfcr-bench-$kind-$$-$i
    mkdir -p "$W/out-$i"
    if [ $kind != plain ]; then
      "${P[@]}" "${RUN[@]}" --name $name -v "$PWD/build/apps:/apps:ro" -v "$W/out-$i:/out" -v /sys/kernel/tracing:/sys/kernel/tracing \
        "$IMG" /apps/counter --status /out/status >/dev/null
      until grep -qs 'tick=3 ' "$W/out-$i/status"; do sleep 0.05; done
    else
      "${P[@]}" "${RUN[@]}" --name $name "$IMG" /bin/sleep 100000 >/dev/null
      sleep 0.3
    fi
    t=$(date +%s%N); "${P[@]}" container checkpoint --export "$W/$name.tar.zst" $name >/dev/null; ms $t >> "$W/ck"
    "${P[@]}" rm -f $name >/dev/null
    [ $kind = app-wiped ] && bpfcr gc --all >/dev/null
    t=$(date +%s%N); "${P[@]}" container restore --import "$W/$name.tar.zst" >/dev/null; ms $t >> "$W/rs"
    "${P[@]}" rm -f -t 0 $name >/dev/null; rm -f "$W/$name.tar.zst"
  done
  CK[$kind]=$(median < "$W/ck"); RS[$kind]=$(median < "$W/rs")
  echo "$kind: checkpoint --export median ${CK[$kind]} ms ($(tr '\n' ' ' < "$W/ck")), restore --import median ${RS[$kind]} ms ($(tr '\n' ' ' < "$W/rs"))"
done
awk -v a="${CK[app]}" -v b="${CK[plain]}" -v c="${RS[app]}" -v d="${RS[plain]}" 'BEGIN {
  printf "libbpf app vs plain: checkpoint --export +%d ms (%.2fx), restore --import +%d ms (%.2fx)\n", a-b, a/b, c-d, c/d }'
awk -v w="${RS[app-wiped]}" -v c="${RS[app]}" -v d="${RS[plain]}" 'BEGIN {
  printf "wiped host (maps copied, programs reloaded) vs plain: restore --import +%d ms (%.2fx); vs same host zero copy: +%d ms\n", w-d, w/d, w-c }'
bpfcr gc --older-than 0s >/dev/null 2>&1 || true
