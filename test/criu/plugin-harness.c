// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Stands in for criu around the bpfcr plugin's init/fini, to test what fini does with a restore's
 * cleanup list without a restore: the harness provides the two symbols the plugin takes from criu
 * (criu_get_image_dir, print_on_level: criu is linked -rdynamic, so is this), prints its pid, waits
 * for a line on stdin (the test writes the owner file, which must name this process, meanwhile),
 * then runs init(stage), with FILE_ID the RESTORE_EXT_FILE hook for that CRIU file id (printing
 * "fd N" or "error N"), and fini(stage, ret).
 *
 *   plugin-harness PLUGIN.so IMAGE_DIR STAGE RET [FILE_ID]
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "criu-plugin.h"
#include "../fixtures/criu-stubs.h"

int main(int argc, char **argv)
{
	cr_plugin_desc_t *desc;
	char line[16];
	void *h;

	if (argc != 5 && argc != 6)
		return fprintf(stderr, "usage: plugin-harness PLUGIN.so IMAGE_DIR STAGE RET [FILE_ID]\n"), 2;
	image_dir = open(argv[2], O_DIRECTORY | O_RDONLY);
	h = dlopen(argv[1], RTLD_NOW);
	if (image_dir < 0 || !h || !(desc = dlsym(h, "CR_PLUGIN_DESC")))
		return fprintf(stderr, "cannot open %s / load %s: %s\n", argv[2], argv[1], dlerror()), 1;
	printf("%d\n", getpid());
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	if (desc->init(atoi(argv[3])))
		return 1;
	if (argc == 6) {
		int (*restore_ext_file)(int) = desc->hooks[CR_PLUGIN_HOOK__RESTORE_EXT_FILE];
		int r = restore_ext_file ? restore_ext_file(atoi(argv[5])) : -1;

		printf(r >= 0 ? "fd %d\n" : "error %d\n", r);
		fflush(stdout);
	}
	desc->exit(atoi(argv[3]), atoi(argv[4]));
	return 0;
}
