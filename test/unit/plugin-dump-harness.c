// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Stands in for criu around the bpfcr plugin's DUMP_EXT_FILE hook (test/unit/plugin-errors.test.ts):
 * provides the two symbols the plugin takes from criu (../fixtures/criu-stubs.h; linked -rdynamic
 * like criu), creates a BPF array map, runs init(DUMP), DUMP_EXT_FILE(map fd, 1) and fini(DUMP, 1:
 * "failed", so the plugin removes what it pinned), and prints the hook's return value.
 *
 *   plugin-dump-harness PLUGIN.so IMAGE_DIR
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>
#include "criu-plugin.h"
#include "../fixtures/criu-stubs.h"

int main(int argc, char **argv)
{
	union bpf_attr attr;
	cr_plugin_desc_t *desc;
	int (*dump_ext_file)(int, int);
	int fd, r;
	void *h;

	if (argc != 3)
		return fprintf(stderr, "usage: plugin-dump-harness PLUGIN.so IMAGE_DIR\n"), 2;
	image_dir = open(argv[2], O_DIRECTORY | O_RDONLY);
	h = dlopen(argv[1], RTLD_NOW);
	if (image_dir < 0 || !h || !(desc = dlsym(h, "CR_PLUGIN_DESC")))
		return fprintf(stderr, "cannot open %s / load %s: %s\n", argv[2], argv[1], dlerror()), 1;
	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	fd = syscall(__NR_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
	if (fd < 0)
		return perror("BPF_MAP_CREATE"), 1;
	if (desc->init(CR_PLUGIN_STAGE__DUMP))
		return 1;
	dump_ext_file = desc->hooks[CR_PLUGIN_HOOK__DUMP_EXT_FILE];
	r = dump_ext_file(fd, 1);
	printf("%d\n", r);
	fflush(stdout);
	desc->exit(CR_PLUGIN_STAGE__DUMP, 1); /* "failed": the plugin removes what it pinned */
	return 0;
}
