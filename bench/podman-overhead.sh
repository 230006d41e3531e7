#!/usr/bin/env bash
# podman checkpoint --export / restore --import time of a container holding BPF maps (the demo
# program: 6 maps as fds + 2 pinned under io.bpfcr.pins) vs the same image holding none (no
# annotation, plain sleep). Median of N runs (default 5). Needs the demo image: run `bpfcr demo` once.
set -euo pipefail
N=${1:-5}
P=(podman --cgroup-manager=cgroupfs --runtime runc)
IMG=$("${P[@]}" images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/bpfcr-demo:' | head -1)
[ -n "$IMG" ] || { echo "no localhost/bpfcr-demo image: run bpfcr demo once" >&2; exit 1; }
NP=$(awk '/Max processes/{print ($4>32768?32768:$4)}' /proc/self/limits)
RUN=(run -d --network none --ulimit nofile=20000:20000 --ulimit "nproc=$NP:$NP" --cap-add SYS_ADMIN,BPF --security-opt seccomp=unconfined --mount type=tmpfs,destination=/sys/fs/bpf)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
for kind in maps plain; do
  : > "$W/ck"; : > "$W/rs"
  for i in $(seq "$N"); do
    name=bpfcr-bench-$kind-$$-$i
    if [ $kind = maps ]; then
      mkdir -p /sys/fs/bpf/$name
      "${P[@]}" "${RUN[@]}" --name $name -v /sys/fs/bpf/$name:/sys/fs/bpf/app --annotation io.bpfcr.pins=/sys/fs/bpf/app "$IMG" /bin/sh /demo.sh >/dev/null
      until "${P[@]}" logs $name 2>/dev/null | grep -q READY; do sleep 0.1; done
    else
      "${P[@]}" "${RUN[@]}" --name $name "$IMG" /bin/sleep 100000 >/dev/null
      sleep 0.5
    fi
    t=$(date +%s%N); "${P[@]}" container checkpoint --export "$W/$name.tar.zst" $name >/dev/null; ms $t >> "$W/ck"
    "${P[@]}" rm -f $name >/dev/null
    [ $kind = maps ] && rm -rf /sys/fs/bpf/$name/*
    t=$(date +%s%N); "${P[@]}" container restore --import "$W/$name.tar.zst" >/dev/null; ms $t >> "$W/rs"
    "${P[@]}" rm -f -t 0 $name >/dev/null; rm -rf /sys/fs/bpf/$name "$W/$name.tar.zst"
  done
  echo "$kind: checkpoint --export median $(median < "$W/ck") ms ($(tr '\n' ' ' < "$W/ck")), restore --import median $(median < "$W/rs") ms ($(tr '\n' ' ' < "$W/rs"))"
done
bpfcr gc --older-than 0s >/dev/null 2>&1 || true
