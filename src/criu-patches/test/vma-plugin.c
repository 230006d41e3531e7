// SPDX-License-Identifier: Apache-2.0
/*
 * Minimal CRIU plugin for testing the DUMP_VMA/RESTORE_VMA hooks of the patch series (src/criu-patches).
 *
 * DUMP_VMA: claims an "anon_inode:bpf-map" VMA when $VMA_TEST_INFO (written by mmap-map) lists its start
 * address; the id is the BPF map id. The map is pinned as $VMA_TEST_PIN/map-<id> (a bpffs dir) so that it
 * outlives the dumped task. RESTORE_VMA: returns BPF_MAP_GET_FD_BY_ID(id), after checking that CRIU's image
 * dir is reachable there through criu_get_image_dir() (-EBADF if not).
 * With $VMA_TEST_REFUSE set, RESTORE_VMA fails with -EIO (to test the error path).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "criu-plugin.h"

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int map_fd_by_id(uint32_t id)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.map_id = id;
	return sys_bpf(BPF_MAP_GET_FD_BY_ID, &a);
}

static int vma_test_init(int stage)
{
	return 0;
}

static void vma_test_fini(int stage, int ret)
{
}

CR_PLUGIN_REGISTER("vma-test", vma_test_init, vma_test_fini)

static int vma_test_dump_vma(int pid, const char *path, uint64_t start, uint64_t end, uint64_t pgoff, uint64_t *id)
{
	const char *info = getenv("VMA_TEST_INFO"), *pin = getenv("VMA_TEST_PIN");
	unsigned long s;
	unsigned int mid;
	char line[256], pinpath[4096];
	int found = 0, fd, ret;
	union bpf_attr a;
	FILE *f;

	if (strcmp(path, "anon_inode:bpf-map") || !info || !pin)
		return -ENOTSUP;
	f = fopen(info, "r");
	if (!f)
		return -ENOTSUP;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx %u", &s, &mid) == 2 && s == start) {
			found = 1;
			break;
		}
	fclose(f);
	if (!found)
		return -ENOTSUP;

	fd = map_fd_by_id(mid);
	if (fd < 0)
		return -errno;
	snprintf(pinpath, sizeof(pinpath), "%s/map-%u", pin, mid);
	memset(&a, 0, sizeof(a));
	a.pathname = (uint64_t)(unsigned long)pinpath;
	a.bpf_fd = fd;
	ret = sys_bpf(BPF_OBJ_PIN, &a) && errno != EEXIST ? -errno : 0;
	close(fd);
	if (ret)
		return ret;

	fprintf(stderr, "vma-test: dump pid %d %s %" PRIx64 "-%" PRIx64 " pgoff %#" PRIx64 " -> map %u\n", pid, path,
		start, end, pgoff, mid);
	*id = mid;
	return 0;
}
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__DUMP_VMA, vma_test_dump_vma)

static int vma_test_restore_vma(uint64_t id, uint64_t start, uint64_t end, uint64_t pgoff)
{
	int fd;

	if (getenv("VMA_TEST_REFUSE"))
		return -EIO;
	fd = openat(criu_get_image_dir(), "inventory.img", O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "vma-test: no image dir in RESTORE_VMA: %m\n");
		return -EBADF;
	}
	close(fd);
	fd = map_fd_by_id(id);
	if (fd < 0)
		return -errno;
	fprintf(stderr, "vma-test: restore pid %d map %" PRIu64 " at %" PRIx64 "-%" PRIx64 " pgoff %#" PRIx64 " -> fd %d\n",
		getpid(), id, start, end, pgoff, fd);
	return fd;
}
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__RESTORE_VMA, vma_test_restore_vma)
