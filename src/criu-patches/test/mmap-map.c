// SPDX-License-Identifier: Apache-2.0
/*
 * Test program for the CRIU patch series (src/criu-patches): a process whose only reference to its BPF
 * maps is their mmapped memory (anon_inode:bpf-map VMAs, which a stock CRIU cannot dump).
 *
 *   mmap-map run INFO   create a BPF_F_MMAPABLE array and a ring buffer (bpf(2) directly, no libbpf),
 *                       mmap them side by side (ring: RW consumer page at pgoff 0 + RO producer/data area
 *                       at pgoff 1 page; then the array RW), close both map fds, write INFO
 *                       ("<start hex> <map id> <what>" per VMA), then count in the array forever:
 *                       arr[0] is incremented every 10 ms and must always equal a private copy
 *                       (exit 3 on a mismatch), arr[1] must keep its magic (exit 4).
 *   mmap-map peek ID    print value 0 of array map ID (read through bpf(2), not through the mapping).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x6270666372ULL /* "bpfcr" */

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int map_create(uint32_t type, uint32_t key, uint32_t value, uint32_t entries, uint32_t flags,
		      const char *name)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.map_type = type;
	a.key_size = key;
	a.value_size = value;
	a.max_entries = entries;
	a.map_flags = flags;
	strncpy(a.map_name, name, sizeof(a.map_name) - 1);
	return sys_bpf(BPF_MAP_CREATE, &a);
}

static uint32_t map_id(int fd)
{
	struct bpf_map_info info;
	union bpf_attr a;

	memset(&info, 0, sizeof(info));
	memset(&a, 0, sizeof(a));
	a.info.bpf_fd = fd;
	a.info.info_len = sizeof(info);
	a.info.info = (uint64_t)(unsigned long)&info;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a)) {
		perror("BPF_OBJ_GET_INFO_BY_FD");
		exit(1);
	}
	return info.id;
}

static int peek(uint32_t id)
{
	union bpf_attr a;
	uint32_t key = 0;
	uint64_t val;
	int fd;

	memset(&a, 0, sizeof(a));
	a.map_id = id;
	fd = sys_bpf(BPF_MAP_GET_FD_BY_ID, &a);
	if (fd < 0) {
		perror("BPF_MAP_GET_FD_BY_ID");
		return 1;
	}
	memset(&a, 0, sizeof(a));
	a.map_fd = fd;
	a.key = (uint64_t)(unsigned long)&key;
	a.value = (uint64_t)(unsigned long)&val;
	if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &a)) {
		perror("BPF_MAP_LOOKUP_ELEM");
		return 1;
	}
	printf("%llu\n", (unsigned long long)val);
	return 0;
}

static void *map_at(void *addr, size_t len, int prot, int fd, off_t off)
{
	void *p = mmap(addr, len, prot, MAP_SHARED | MAP_FIXED, fd, off);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE);
	const size_t ring = 4096 * 4, arr_len = 512;
	volatile uint64_t *arr;
	volatile const uint64_t *prod;
	uint64_t local;
	char *base, tmp[4096];
	int rfd, afd;
	FILE *f;

	if (argc == 3 && !strcmp(argv[1], "peek"))
		return peek(strtoul(argv[2], NULL, 0));
	if (argc != 3 || strcmp(argv[1], "run")) {
		fprintf(stderr, "usage: %s run INFO | peek ID\n", argv[0]);
		return 2;
	}

	rfd = map_create(BPF_MAP_TYPE_RINGBUF, 0, 0, ring, 0, "vmat_ring");
	afd = map_create(BPF_MAP_TYPE_ARRAY, 4, 8, arr_len, BPF_F_MMAPABLE, "vmat_array");
	if (rfd < 0 || afd < 0) {
		perror("BPF_MAP_CREATE");
		return 1;
	}

	/* [consumer page RW][producer page + 2 x data RO][array RW], adjacent */
	size_t cons_len = page, prod_len = page + 2 * ring, a_len = arr_len * 8;
	base = mmap(NULL, cons_len + prod_len + a_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		perror("mmap reserve");
		return 1;
	}
	map_at(base, cons_len, PROT_READ | PROT_WRITE, rfd, 0);
	prod = map_at(base + cons_len, prod_len, PROT_READ, rfd, page);
	arr = map_at(base + cons_len + prod_len, a_len, PROT_READ | PROT_WRITE, afd, 0);

	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[2]);
	f = fopen(tmp, "w");
	if (!f) {
		perror(tmp);
		return 1;
	}
	fprintf(f, "%lx %u ring-consumer\n", (unsigned long)base, map_id(rfd));
	fprintf(f, "%lx %u ring-producer\n", (unsigned long)base + cons_len, map_id(rfd));
	fprintf(f, "%lx %u array\n", (unsigned long)arr, map_id(afd));
	if (fclose(f) || rename(tmp, argv[2])) {
		perror(argv[2]);
		return 1;
	}
	close(rfd);
	close(afd);

	arr[1] = MAGIC;
	local = arr[0];
	for (;;) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		if (arr[0] != local)
			return 3;
		if (arr[1] != MAGIC)
			return 4;
		(void)prod[0]; /* the read-only producer page stays readable */
		arr[0] = ++local;
		nanosleep(&ts, NULL);
	}
}
