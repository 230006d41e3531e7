#!/usr/bin/env bash
# Builds the libbpf skeleton fixture apps (test/fixtures/apps/X.bpf.c + X.c) into build/apps/:
#   vmlinux.h    from the running kernel's BTF (not committed)
#   X.bpf.o      the BPF ELF object (kept: programs are reloaded from it later)
#   X.skel.h     bpftool skeleton (embeds X.bpf.o)
#   X            static binary (runs in a busybox container)
# Idempotent: a step runs only when an input is newer than its output; silent when nothing is to
# do. Every output is written to a temp name and renamed, so a concurrent run or reader never
# sees half a file. Installs the toolchain (Debian packages) when something must be built.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/test/fixtures/apps"
out="$root/build/apps"
self="$root/scripts/build-apps.sh"
APPS=(counter ringtrace tailcall sockwatch)

fail() { echo "build-apps: $*" >&2; exit 1; }

# stale OUT INPUT...: true when OUT is missing or older than any input
stale() {
	local o="$1" i
	shift
	[[ -e "$o" ]] || return 0
	for i in "$@"; do [[ "$i" -nt "$o" ]] && return 0; done
	return 1
}

toolchain_ready=0
ensure_toolchain() {
	((toolchain_ready)) && return 0
	# shellcheck source=lib.sh
	. "$root/scripts/lib.sh"
	ensure_apt_packages clang llvm libbpf-dev libelf-dev zlib1g-dev libzstd-dev bpftool gcc libc6-dev \
		|| fail "installing the toolchain with apt-get failed"
	mkdir -p "$out"
	toolchain_ready=1
}

# run TMP OUT CMD...: run CMD (writing TMP), then rename TMP to OUT; on failure remove TMP
run() {
	local tmp="$1" o="$2"
	shift 2
	if ! "$@"; then
		rm -f "$tmp"
		fail "failed: $*"
	fi
	mv -f "$tmp" "$o"
}

vmlinux="$out/vmlinux.h"
if [[ ! -s "$vmlinux" ]]; then
	ensure_toolchain
	tmp="$vmlinux.tmp.$$"
	[[ -r /sys/kernel/btf/vmlinux ]] || fail "/sys/kernel/btf/vmlinux missing: kernel without BTF"
	bpftool btf dump file /sys/kernel/btf/vmlinux format c >"$tmp" || { rm -f "$tmp"; fail "bpftool btf dump failed"; }
	mv -f "$tmp" "$vmlinux"
fi

for app in "${APPS[@]}"; do
	bpfsrc="$src/$app.bpf.c" usrc="$src/$app.c"
	[[ -f "$bpfsrc" && -f "$usrc" ]] || fail "missing $bpfsrc or $usrc"
	# headers next to the sources (common.h, ringtrace.h, …) are inputs of both halves
	headers=("$src"/*.h)
	obj="$out/$app.bpf.o" skel="$out/$app.skel.h" bin="$out/$app"

	if stale "$obj" "$bpfsrc" "${headers[@]}" "$vmlinux" "$self"; then
		ensure_toolchain
		raw="$out/$app.raw.$$.o"
		# -idirafter: asm/types.h etc. from the multiarch dir, after vmlinux.h's own definitions
		run "$raw" "$raw.done" clang -g -O2 -Wall -target bpf -D__TARGET_ARCH_x86 \
			-I"$out" -I"$src" -idirafter /usr/include/x86_64-linux-gnu -c "$bpfsrc" -o "$raw"
		# bpftool gen object: the linked, canonical object (what libbpf-bootstrap ships)
		run "$obj.tmp.$$" "$obj" bpftool gen object "$obj.tmp.$$" "$raw.done"
		rm -f "$raw.done"
	fi

	if stale "$skel" "$obj"; then
		ensure_toolchain
		# explicit name: the skeleton's types (counter_bpf, …) must not follow the temp file name
		tmp="$skel.tmp.$$"
		bpftool gen skeleton "$obj" name "${app}_bpf" >"$tmp" || { rm -f "$tmp"; fail "bpftool gen skeleton $obj failed"; }
		mv -f "$tmp" "$skel"
	fi

	if stale "$bin" "$usrc" "$skel" "${headers[@]}" "$self"; then
		ensure_toolchain
		run "$bin.tmp.$$" "$bin" gcc -O2 -g -Wall -static -I"$out" -I"$src" "$usrc" \
			-o "$bin.tmp.$$" -lbpf -lelf -lz -lzstd
	fi
done
