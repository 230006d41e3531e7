// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * bpfcr CRIU plugin: lets CRIU dump and restore file descriptors of eBPF objects (maps, programs, links).
 *
 * It moves no data. At dump it keeps each object alive by pinning it into a bpffs staging directory and
 * records what it pinned; at restore it hands back an fd for whatever object id the bpfcr action script
 * chose. Everything else (saving and recreating map contents, cleaning pins) is the action script's job.
 *
 * DUMP_EXT_FILE(fd, id): fd is CRIU's own copy of the task's fd (sent over by the parasite).
 *   pin  -> <staging>/<key>/<kind>-<id>  (<staging>: <image dir>/bpfcr-staging, else $BPFCR_STAGING, else /sys/fs/bpf/bpfcr; must be bpffs)
 *   line -> <image dir>/bpfcr-taken.txt:         "<id> <kind> <object id> <type> <pin path>\n"
 *   <key> comes from <image dir>/bpfcr-key (created with a random key if absent).
 * RESTORE_EXT_FILE(id): runs inside the restored task (container mount namespace).
 *   reads <image dir>/bpfcr-restore.txt:          "<id> <kind> <object id>\n"
 *   returns BPF_{MAP,PROG,LINK}_GET_FD_BY_ID(object id).
 * <id> is CRIU's file id in decimal; <kind> is map, prog or link. Anything else: -ENOTSUP (not ours).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/magic.h>

#include "criu-plugin.h"

#define TAKEN_FILE "bpfcr-taken.txt"
#define RESTORE_FILE "bpfcr-restore.txt"
#define KEY_FILE "bpfcr-key"
#define STAGING_FILE "bpfcr-staging"
#define DEFAULT_STAGING "/sys/fs/bpf/bpfcr"

/* CRIU's logger (the binary is linked -rdynamic); weak so that the .so also loads elsewhere. */
extern void print_on_level(unsigned int loglevel, const char *format, ...) __attribute__((weak));
#define LOG_ERROR 1
#define LOG_WARN 2
#define LOG_INFO 3

static void logmsg(unsigned int level, const char *fmt, ...)
{
	static const char *const prefix[] = { "", "ERROR: ", "WARNING: " };
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (print_on_level)
		print_on_level(level, "bpfcr: %s%s\n", prefix[level < 3 ? level : 0], buf);
	else
		fprintf(stderr, "bpfcr: %s%s\n", prefix[level < 3 ? level : 0], buf);
}
#define info(...) logmsg(LOG_INFO, __VA_ARGS__)
#define warn(...) logmsg(LOG_WARN, __VA_ARGS__)
#define err(...) logmsg(LOG_ERROR, __VA_ARGS__)

static const struct {
	const char *link; /* readlink of the fd */
	const char *kind;
	const char *id_field; /* in fdinfo */
	const char *type_field;
	int get_fd_cmd;
} kinds[] = {
	{ "anon_inode:bpf-map", "map", "map_id:", "map_type:", BPF_MAP_GET_FD_BY_ID },
	{ "anon_inode:bpf-prog", "prog", "prog_id:", "prog_type:", BPF_PROG_GET_FD_BY_ID },
	{ "anon_inode:bpf_link", "link", "link_id:", "link_type:", BPF_LINK_GET_FD_BY_ID }, /* as created */
	{ "anon_inode:bpf-link", "link", "link_id:", "link_type:", BPF_LINK_GET_FD_BY_ID }, /* from GET_FD_BY_ID */
};
#define NKINDS (int)(sizeof(kinds) / sizeof(kinds[0]))

static char key[65];

static int sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

/* Read a small file relative to dirfd into buf (NUL-terminated). Returns length or -errno. */
static int read_small(int dirfd, const char *name, char *buf, size_t size)
{
	int fd, n, len = 0;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (len < (int)size - 1 && (n = read(fd, buf + len, size - 1 - len)) > 0)
		len += n;
	close(fd);
	buf[len] = 0;
	return len;
}

/* Value of "<field>\t<value>" in an fdinfo text, copied as one word. */
static int fdinfo_field(const char *text, const char *field, char *out, size_t size)
{
	const char *p = text;
	size_t n;

	while ((p = strstr(p, field)) && p != text && p[-1] != '\n')
		p++;
	if (!p)
		return -1;
	p += strlen(field);
	p += strspn(p, " \t");
	n = strcspn(p, " \t\n");
	if (n == 0 || n >= size)
		return -1;
	memcpy(out, p, n);
	out[n] = 0;
	return 0;
}

/* The checkpoint key: <image dir>/bpfcr-key, created with a random value if absent. */
static int get_key(int imgdir)
{
	unsigned char rnd[8];
	char buf[128];
	int fd, len, i;

	if (key[0])
		return 0;
	len = read_small(imgdir, KEY_FILE, buf, sizeof(buf));
	if (len == -ENOENT) {
		if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
			return -errno;
		for (i = 0; i < (int)sizeof(rnd); i++)
			sprintf(buf + 2 * i, "%02x", rnd[i]);
		fd = openat(imgdir, KEY_FILE, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 && errno != EEXIST)
			return -errno;
		if (fd >= 0) {
			strcat(buf, "\n");
			len = write(fd, buf, strlen(buf));
			close(fd);
			if (len < 0)
				return -errno;
		}
		len = read_small(imgdir, KEY_FILE, buf, sizeof(buf));
	}
	if (len < 0)
		return len;
	len = strcspn(buf, "\n");
	buf[len] = 0;
	if (len == 0 || len >= (int)sizeof(key) || strspn(buf, "abcdefghijklmnopqrstuvwxyz"
					      "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != (size_t)len ||
	    buf[0] == '.') {
		err("bad key in %s: '%s' (want 1-64 of [A-Za-z0-9._-])", KEY_FILE, buf);
		return -EINVAL;
	}
	strcpy(key, buf);
	return 0;
}

static int object_id(int fd, const char *field, unsigned long *id)
{
	char path[64], text[4096], val[32];

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (read_small(AT_FDCWD, path, text, sizeof(text)) < 0 || fdinfo_field(text, field, val, sizeof(val)))
		return -1;
	*id = strtoul(val, NULL, 10);
	return 0;
}

/* Append the line to bpfcr-taken.txt unless a line for this CRIU id is already there. */
static int record(int imgdir, int id, const char *line)
{
	static char text[65536];
	char prefix[16];
	const char *p;
	int fd, n;

	n = snprintf(prefix, sizeof(prefix), "%d ", id);
	if (read_small(imgdir, TAKEN_FILE, text, sizeof(text)) > 0)
		for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
			if (!strncmp(p, prefix, n))
				return 0;
	fd = openat(imgdir, TAKEN_FILE, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	n = write(fd, line, strlen(line));
	close(fd);
	return n == (int)strlen(line) ? 0 : -EIO;
}

/*
 * Staging root: <image dir>/bpfcr-staging (one absolute path, written by the pre-dump action from
 * /etc/bpfcr/config.yaml: podman passes criu almost no environment, so a file in the image dir
 * is the only channel that always reaches us), else $BPFCR_STAGING, else the default.
 */
static int staging_dir(int imgdir, char *dir, size_t size)
{
	static char from_file[PATH_MAX - 128];
	const char *root = NULL;
	struct statfs st;
	int len;

	len = read_small(imgdir, STAGING_FILE, from_file, sizeof(from_file));
	if (len > 0) {
		from_file[strcspn(from_file, "\n")] = 0;
		if (from_file[0] != '/' || strstr(from_file, "/../") || strstr(from_file, "/./")) {
			err("bad staging root in %s: '%s' (want an absolute path)", STAGING_FILE, from_file);
			return -EINVAL;
		}
		root = from_file;
	}
	if (!root)
		root = getenv("BPFCR_STAGING");
	if (!root || !*root)
		root = DEFAULT_STAGING;
	if (mkdir(root, 0700) && errno != EEXIST) {
		err("cannot create staging root %s: %s (mount a bpffs there or on its parent, or set BPFCR_STAGING)",
		    root, strerror(errno));
		return -ENOENT;
	}
	if (statfs(root, &st) || st.f_type != BPF_FS_MAGIC) {
		err("staging root %s is not on a bpffs (mount -t bpf bpf <dir>, or set BPFCR_STAGING)", root);
		return -EINVAL;
	}
	if (snprintf(dir, size, "%s/%s", root, key) >= (int)size)
		return -ENAMETOOLONG;
	if (mkdir(dir, 0700) && errno != EEXIST) {
		err("cannot create %s: %s", dir, strerror(errno));
		return -errno;
	}
	return 0;
}

static int bpfcr_dump_ext_file(int fd, int id)
{
	char path[64], link[256], dir[PATH_MAX - 64], pin[PATH_MAX], text[4096], type[32], line[PATH_MAX + 128];
	union bpf_attr attr;
	unsigned long obj_id, pinned_id;
	int imgdir = criu_get_image_dir(), k, ret, pfd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -ENOTSUP;
	link[n] = 0;
	for (k = 0; k < NKINDS && strcmp(link, kinds[k].link); k++)
		;
	if (k == NKINDS)
		return -ENOTSUP;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (read_small(AT_FDCWD, path, text, sizeof(text)) < 0 ||
	    fdinfo_field(text, kinds[k].id_field, type, sizeof(type))) {
		err("no %s in %s", kinds[k].id_field, path);
		return -EINVAL;
	}
	obj_id = strtoul(type, NULL, 10);
	if (fdinfo_field(text, kinds[k].type_field, type, sizeof(type)))
		strcpy(type, "-");

	ret = get_key(imgdir);
	if (ret) {
		err("cannot get the checkpoint key (%s in the image dir): %s", KEY_FILE, strerror(-ret));
		return ret;
	}
	ret = staging_dir(imgdir, dir, sizeof(dir));
	if (ret)
		return ret;
	snprintf(pin, sizeof(pin), "%s/%s-%d", dir, kinds[k].kind, id);

	memset(&attr, 0, sizeof(attr));
	attr.pathname = (unsigned long)pin;
	attr.bpf_fd = fd;
	if (sys_bpf(BPF_OBJ_PIN, &attr)) {
		if (errno != EEXIST) {
			err("pin %s %lu at %s: %s", kinds[k].kind, obj_id, pin, strerror(errno));
			return -errno;
		}
		/* Already pinned (hook called again): fine if it is the same object. */
		memset(&attr, 0, sizeof(attr));
		attr.pathname = (unsigned long)pin;
		pfd = sys_bpf(BPF_OBJ_GET, &attr);
		ret = pfd < 0 || object_id(pfd, kinds[k].id_field, &pinned_id) ? -1 : 0;
		if (pfd >= 0)
			close(pfd);
		if (ret || pinned_id != obj_id) {
			err("%s already holds another object (id %lu, not %lu): stale staging dir?", pin,
			    ret ? 0 : pinned_id, obj_id);
			return -EEXIST;
		}
	}

	snprintf(line, sizeof(line), "%d %s %lu %s %s\n", id, kinds[k].kind, obj_id, type, pin);
	ret = record(imgdir, id, line);
	if (ret) {
		err("cannot write %s in the image dir: %s", TAKEN_FILE, strerror(-ret));
		return ret;
	}
	info("dumped file %d: %s id %lu (type %s) pinned at %s", id, kinds[k].kind, obj_id, type, pin);
	return 0;
}

static int bpfcr_restore_ext_file(int id)
{
	static char text[65536];
	char kind[16];
	union bpf_attr attr;
	unsigned long obj_id;
	const char *p;
	int k, fd, fid, ret;

	ret = read_small(criu_get_image_dir(), RESTORE_FILE, text, sizeof(text));
	if (ret < 0) {
		warn("file %d: cannot read %s in the image dir: %s", id, RESTORE_FILE, strerror(-ret));
		return -ENOTSUP;
	}
	for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
		if (sscanf(p, "%d %15s %lu", &fid, kind, &obj_id) != 3 || fid != id)
			continue;
		for (k = 0; k < NKINDS && strcmp(kind, kinds[k].kind); k++)
			;
		if (k == NKINDS) {
			err("file %d: unknown kind '%s' in %s", id, kind, RESTORE_FILE);
			return -EINVAL;
		}
		memset(&attr, 0, sizeof(attr));
		attr.map_id = obj_id; /* same union member as prog_id and link_id */
		fd = sys_bpf(kinds[k].get_fd_cmd, &attr);
		if (fd < 0) {
			ret = -errno;
			err("file %d: cannot open %s id %lu: %s", id, kind, obj_id, strerror(errno));
			return ret;
		}
		info("restored file %d: %s id %lu as fd %d", id, kind, obj_id, fd);
		return fd;
	}
	warn("file %d: no line for it in %s", id, RESTORE_FILE);
	return -ENOTSUP;
}

static int bpfcr_init(int stage)
{
	key[0] = 0;
	info("loaded (stage %d)", stage);
	return 0;
}

static void bpfcr_fini(int stage, int ret)
{
}

CR_PLUGIN_REGISTER("bpfcr", bpfcr_init, bpfcr_fini)
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__DUMP_EXT_FILE, bpfcr_dump_ext_file)
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__RESTORE_EXT_FILE, bpfcr_restore_ext_file)
