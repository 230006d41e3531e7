/*
 * progholder: holds a BPF program, a link and a map, for the CRIU program/link tests.
 *
 *   progholder none       hold nothing (pause): a process like bpfholder without BPF objects
 *   progholder            load a SOCKET_FILTER program ("p_sock"), a RAW_TRACEPOINT program
 *                         ("p_rawtp") attached to sys_enter (a bpf_link), and a hash map ("p_map");
 *                         print {"kind","name","fd","id"} per object, READY, then pause()
 *
 * Both programs are "r0 = 0; exit": they use no map. Raw bpf(2), no libbpf; built -static by the
 * test so it runs inside a busybox container.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/bpf.h>

static int sys_bpf(int cmd, union bpf_attr *a)
{
	return syscall(__NR_bpf, cmd, a, sizeof(*a));
}

static void die(const char *what)
{
	fprintf(stderr, "progholder: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* map/prog/link info all start with {u32 type; u32 id; ...} */
static uint32_t obj_id(int fd)
{
	unsigned char info[256];
	union bpf_attr a;
	memset(info, 0, sizeof(info));
	memset(&a, 0, sizeof(a));
	a.info.bpf_fd = fd;
	a.info.info_len = sizeof(info);
	a.info.info = (uintptr_t)info;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a))
		die("BPF_OBJ_GET_INFO_BY_FD");
	return *(uint32_t *)(info + 4);
}

static int load(int type, const char *name)
{
	struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	static char log[4096];
	union bpf_attr a;
	int fd;
	memset(&a, 0, sizeof(a));
	a.prog_type = type;
	a.insns = (uintptr_t)insns;
	a.insn_cnt = 2;
	a.license = (uintptr_t)"GPL";
	a.log_buf = (uintptr_t)log;
	a.log_size = sizeof(log);
	a.log_level = 1;
	strncpy(a.prog_name, name, sizeof(a.prog_name) - 1);
	fd = sys_bpf(BPF_PROG_LOAD, &a);
	if (fd < 0) {
		fprintf(stderr, "%s\n", log);
		die("BPF_PROG_LOAD");
	}
	return fd;
}

static void print(const char *kind, const char *name, int fd)
{
	printf("{\"kind\":\"%s\",\"name\":\"%s\",\"fd\":%d,\"id\":%u}\n", kind, name, fd, obj_id(fd));
}

int main(int argc, char **argv)
{
	union bpf_attr a;
	int map, sock, rawtp, link;

	if (argc > 1 && !strcmp(argv[1], "none")) {
		/* no BPF object at all: the timing baseline (same kind of process as bpfholder) */
		puts("READY");
		fflush(stdout);
		for (;;)
			pause();
	}

	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_HASH;
	a.key_size = 4;
	a.value_size = 8;
	a.max_entries = 16;
	strcpy(a.map_name, "p_map");
	map = sys_bpf(BPF_MAP_CREATE, &a);
	if (map < 0)
		die("BPF_MAP_CREATE");
	for (uint32_t k = 0; k < 5; k++) {
		uint64_t v = 1000 + k;
		memset(&a, 0, sizeof(a));
		a.map_fd = map;
		a.key = (uintptr_t)&k;
		a.value = (uintptr_t)&v;
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a))
			die("BPF_MAP_UPDATE_ELEM");
	}

	sock = load(BPF_PROG_TYPE_SOCKET_FILTER, "p_sock");
	rawtp = load(BPF_PROG_TYPE_RAW_TRACEPOINT, "p_rawtp");
	memset(&a, 0, sizeof(a));
	a.raw_tracepoint.name = (uintptr_t)"sys_enter";
	a.raw_tracepoint.prog_fd = rawtp;
	link = sys_bpf(BPF_RAW_TRACEPOINT_OPEN, &a);
	if (link < 0)
		die("BPF_RAW_TRACEPOINT_OPEN");

	print("map", "p_map", map);
	print("prog", "p_sock", sock);
	print("prog", "p_rawtp", rawtp);
	print("link", "sys_enter", link);
	puts("READY");
	fflush(stdout);
	for (;;)
		pause();
}
