#!/usr/bin/env bash
# Builds the static C helpers used by tests and the benchmark:
#   test/fixtures/bpfholder.c -> build/bpfholder   (independent map creator/describer)
#   bench/batchloop.c         -> build/batchloop   (C batch-loop baseline)
# Idempotent: compiles only when the source is newer than the binary; silent when
# nothing is to do. Installs gcc + static glibc (libc6-dev) with apt-get if missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CC="${CC:-cc}"
CFLAGS=(-O2 -static -Wall -Wextra)

have_toolchain() {
	command -v "$CC" >/dev/null 2>&1 || return 1
	# -static needs libc.a; cc prints the bare name back when it cannot find the file
	local libc
	libc="$("$CC" -print-file-name=libc.a 2>/dev/null)" || return 1
	[[ "$libc" == /* && -f "$libc" ]]
}

ensure_toolchain() {
	have_toolchain && return 0
	echo "build-fixtures: installing gcc and libc6-dev" >&2
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq gcc libc6-dev >/dev/null; then
		apt-get update -qq >/dev/null
		apt-get install -y -qq gcc libc6-dev >/dev/null
	fi
	CC=cc
	have_toolchain || { echo "build-fixtures: no working static C toolchain" >&2; exit 1; }
}

# build SRC OUT: compile if OUT is missing or older than SRC
build() {
	local src="$root/$1" out="$root/$2"
	[[ -f "$src" ]] || { echo "build-fixtures: missing $src" >&2; exit 1; }
	[[ -x "$out" && ! "$src" -nt "$out" ]] && return 0
	ensure_toolchain
	mkdir -p "$(dirname "$out")"
	# compile to a temp name and rename, so a concurrent run never sees a half-written binary
	local tmp="$out.tmp.$$"
	if ! "$CC" "${CFLAGS[@]}" -o "$tmp" "$src"; then
		rm -f "$tmp"
		echo "build-fixtures: compiling $1 failed" >&2
		exit 1
	fi
	mv -f "$tmp" "$out"
}

build test/fixtures/bpfholder.c build/bpfholder
build bench/batchloop.c build/batchloop
