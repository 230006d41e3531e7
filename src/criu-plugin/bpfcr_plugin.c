// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * bpfcr CRIU plugin: lets CRIU dump and restore file descriptors of eBPF objects (maps, programs, links).
 *
 * It moves no data. At dump it keeps each object alive by pinning it into a bpffs staging directory and
 * records what it took; at restore it hands back an fd for whatever object the bpfcr action script
 * chose. Everything else (saving and recreating map contents, cleaning pins) is the action script's job,
 * except after a failed dump: then fini() removes every pin this dump made (nobody else would).
 *
 * DUMP_EXT_FILE(fd, id): fd is CRIU's own copy of the task's fd (sent over by the parasite).
 *   maps, programs, links: pin -> <staging>/<key>/<kind>-<id>
 *     (<staging>: <image dir>/bpfcr-staging, else $BPFCR_STAGING, else /sys/fs/bpf/bpfcr; must be bpffs)
 *   BTF objects cannot be pinned (they live as long as a map or program uses them) and perf events are
 *   not BPF objects: both are only recorded (pin path "-").
 *   line -> <image dir>/bpfcr-taken.txt:         "<id> <kind> <object id> <type> <pin path>\n"
 *     btf:  "<id> btf <btf id> - -"
 *     perf: "<id> perf <program id> <tracepoint name> -"   (the BPF program attached to the event's
 *           tracepoint and the tracepoint's name from that program's perf link; 0 and - when unknown)
 *   <key> comes from <image dir>/bpfcr-key (created with a random key if absent).
 * DUMP_VMA(pid, path, start, end, pgoff, &id) (patched CRIU, see src/criu-patches; pgoff in bytes): a mmapped BPF map
 *   (anon_inode:bpf-map: libbpf's .bss/.data/.rodata, ring buffers). Finds the map (see vma_map_id()),
 *   pins it -> <staging>/<key>/vma-<map id>, line "vma map <map id> <type> <pin path>", *id = map id.
 *   CRIU then records the VMA and dumps none of its pages: the map is the memory.
 * RESTORE_EXT_FILE(id): runs inside the restored task (container mount namespace).
 *   reads <image dir>/bpfcr-restore.txt:          "<id> <kind> <object id>\n", once, and only when
 *   bpfcr-restore.owner names this criu (see fini below), so an imported image's lines never count;
 *   map/prog/link/btf: returns BPF_{MAP,PROG,LINK,BTF}_GET_FD_BY_ID(object id);
 *   btf-load <old btf id>: BPF_BTF_LOAD of <image dir>/bpfcr-btf-<old btf id>.raw (a BTF no restored
 *     map or program keeps alive, so nobody could hold it for us);
 *   perf <tracepoint id>: a stand-in perf event (see open_perf_standin()).
 * RESTORE_VMA(map id at dump, start, end, pgoff): runs in the restored task before its memory is mapped;
 *   line "vma <old map id> <new map id>" -> BPF_MAP_GET_FD_BY_ID(new), which CRIU maps MAP_SHARED|MAP_FIXED.
 * <id> is CRIU's file id in decimal. Anything else: -ENOTSUP (not ours).
 *
 * Pre-dump runs beside CRIU's dump the same way (hooks/checkpoint holds <image dir>/.bpfcr-pre-dump.lock
 *   for it): the first DUMP_EXT_FILE/DUMP_VMA of ours waits for it (it makes the staging root ready and
 *   the image dir clean) and fails the dump with the reason it left in <image dir>/bpfcr-dump.error.
 * Pre-restore runs beside CRIU's restore (hooks/checkpoint starts it in the background, holding
 *   <image dir>/.bpfcr-pre-restore.lock, which init(RESTORE) makes: a fresh file, never one an image
 *   brought along): the first RESTORE_EXT_FILE/RESTORE_VMA and fini wait for that lock, and fail the
 *   restore with the reason pre-restore left in <image dir>/bpfcr-restore.error, if any.
 * fini(RESTORE): the restored tasks hold their objects now, so the staging pins can go. Pre-restore
 *   decided which (<image dir>/bpfcr-cleanup.txt: "f <pin or marker>" to unlink, "d <dir>" to rmdir if
 *   empty; the originals when they were handed back, the copies it made otherwise) and signed the list
 *   with this criu's identity (<image dir>/bpfcr-restore.owner: "<criu pid> <start time>"), so a list
 *   an imported image brought along is never acted upon. Only paths in this checkpoint's staging dir
 *   on a bpffs, and its in-flight marker in the run dir, are touched. After a failed restore only
 *   the copies this restore made (and its marker) go: the staged originals stay for the next try.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/magic.h>
#include <linux/perf_event.h>

#include "criu-plugin.h"

#define TAKEN_FILE "bpfcr-taken.txt"
#define RESTORE_FILE "bpfcr-restore.txt"
#define CLEANUP_FILE "bpfcr-cleanup.txt"
#define OWNER_FILE "bpfcr-restore.owner"
#define DEFAULT_RUN_DIR "/run/bpfcr"
#define KEY_FILE "bpfcr-key"
#define STAGING_FILE "bpfcr-staging"
#define PRE_RESTORE_LOCK ".bpfcr-pre-restore.lock"
#define PRE_RESTORE_ERROR "bpfcr-restore.error"
#define PRE_DUMP_LOCK ".bpfcr-pre-dump.lock"
#define PRE_DUMP_ERROR "bpfcr-dump.error"
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

enum kind_flags { PINNABLE = 1 };

static const struct {
	const char *link; /* readlink of the fd */
	const char *kind;
	const char *id_field; /* in fdinfo; NULL: none */
	const char *type_field;
	int get_fd_cmd;
	int flags;
} kinds[] = {
	{ "anon_inode:bpf-map", "map", "map_id:", "map_type:", BPF_MAP_GET_FD_BY_ID, PINNABLE },
	{ "anon_inode:bpf-prog", "prog", "prog_id:", "prog_type:", BPF_PROG_GET_FD_BY_ID, PINNABLE },
	{ "anon_inode:bpf_link", "link", "link_id:", "link_type:", BPF_LINK_GET_FD_BY_ID, PINNABLE }, /* as created */
	{ "anon_inode:bpf-link", "link", "link_id:", "link_type:", BPF_LINK_GET_FD_BY_ID, PINNABLE }, /* from GET_FD_BY_ID */
	{ "anon_inode:btf", "btf", "btf_id:", NULL, BPF_BTF_GET_FD_BY_ID, 0 },
	{ "anon_inode:[perf_event]", "perf", NULL, NULL, -1, 0 },
};
#define NKINDS (int)(sizeof(kinds) / sizeof(kinds[0]))

static char key[65];

/*
 * The image dir, kept from init(RESTORE): criu closes its own image dir fd before the plugins' fini
 * on a successful restore, and fini needs the cleanup list in it.
 */
static int restore_imgdir = -1;

/* Pins this process made during the current dump: fini() removes them if the dump fails. */
static char **made_pins;
static int nr_made_pins;

static void remember_pin(const char *pin)
{
	char **p = realloc(made_pins, (nr_made_pins + 1) * sizeof(*p));

	if (!p)
		return;
	made_pins = p;
	made_pins[nr_made_pins] = strdup(pin);
	if (made_pins[nr_made_pins])
		nr_made_pins++;
}

static int sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

/* The id after @id of the objects a *_GET_NEXT_ID command walks; 0 at the end. */
static __u32 next_id(int cmd, __u32 id)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.start_id = id;
	return sys_bpf(cmd, &attr) ? 0 : attr.next_id;
}

/* An fd of object @id (*_GET_FD_BY_ID), or -1 with errno set. */
static int fd_by_id(int cmd, __u32 id)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_id = id; /* same union member as prog_id, link_id and btf_id */
	return sys_bpf(cmd, &attr);
}

/* BPF_OBJ_GET_INFO_BY_FD into @info (the kernel fills min(its size, @len) bytes). */
static int obj_info(int fd, void *info, __u32 len)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.info.bpf_fd = fd;
	attr.info.info_len = len;
	attr.info.info = (unsigned long)info;
	return sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr);
}

/*
 * Read a small file relative to dirfd into buf (NUL-terminated). Returns length or -errno; -EFBIG
 * when it does not fit (a staging root or key cut short would silently name something else).
 */
static int read_small(int dirfd, const char *name, char *buf, size_t size)
{
	int fd, n, len = 0;
	char more;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (len < (int)size - 1 && (n = read(fd, buf + len, size - 1 - len)) > 0)
		len += n;
	n = len == (int)size - 1 ? read(fd, &more, 1) : 0;
	close(fd);
	buf[len] = 0;
	return n > 0 ? -EFBIG : len;
}

/*
 * A whole protocol file relative to dirfd, malloc'ed and NUL-terminated, in *out (free() it). Returns
 * its length or -errno: -EFBIG beyond MAX_LIST_FILE (never a silently truncated list).
 */
#define MAX_LIST_FILE (16 << 20)
static int read_text(int dirfd, const char *name, char **out)
{
	struct stat st;
	char *buf;
	int fd, n, len = 0;

	*out = NULL;
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > MAX_LIST_FILE) {
		n = !S_ISREG(st.st_mode) ? -EINVAL : -EFBIG;
		close(fd);
		return n;
	}
	buf = malloc(st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (len < st.st_size && (n = read(fd, buf + len, st.st_size - len)) > 0)
		len += n;
	close(fd);
	buf[len] = 0;
	*out = buf;
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
		fd = openat(imgdir, KEY_FILE, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
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

/* Append the line to bpfcr-taken.txt (0600) unless a line starting with @prefix is already there. */
static int record(int imgdir, const char *prefix, const char *line)
{
	char *text;
	const char *p;
	int fd, ret, n = strlen(prefix);

	ret = read_text(imgdir, TAKEN_FILE, &text);
	if (ret < 0 && ret != -ENOENT)
		return ret;
	for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (!strncmp(p, prefix, n)) {
			free(text);
			return 0;
		}
	free(text);
	fd = openat(imgdir, TAKEN_FILE, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
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
	if (len < 0 && len != -ENOENT) {
		err("cannot read %s in the image dir: %s", STAGING_FILE, strerror(-len));
		return len;
	}
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
		int e = errno; /* err() may change errno; CRIU reports the return value: the real cause */

		err("cannot create staging root %s: %s (mount a bpffs there or on its parent, or set BPFCR_STAGING)",
		    root, strerror(e));
		return -e;
	}
	if (statfs(root, &st) || st.f_type != BPF_FS_MAGIC) {
		err("staging root %s is not on a bpffs (mount -t bpf bpf <dir>, or set BPFCR_STAGING)", root);
		return -EINVAL;
	}
	if (snprintf(dir, size, "%s/%s", root, key) >= (int)size)
		return -ENAMETOOLONG;
	if (mkdir(dir, 0700) && errno != EEXIST) {
		int e = errno;

		err("cannot create %s: %s", dir, strerror(e));
		return -e;
	}
	return 0;
}

/* The checkpoint key and this dump's staging dir (<staging root>/<key>), created if needed. */
static int prepare_staging(int imgdir, char *dir, size_t size)
{
	int ret = get_key(imgdir);

	if (ret) {
		err("cannot get the checkpoint key (%s in the image dir): %s", KEY_FILE, strerror(-ret));
		return ret;
	}
	return staging_dir(imgdir, dir, size);
}

/* Pin @fd at @pin. An existing pin is fine when it holds the same object (the hook ran again). */
static int pin_object(int fd, const char *pin, const char *kind, const char *id_field, unsigned long obj_id)
{
	union bpf_attr attr;
	unsigned long pinned_id;
	int pfd, ret;

	memset(&attr, 0, sizeof(attr));
	attr.pathname = (unsigned long)pin;
	attr.bpf_fd = fd;
	if (!sys_bpf(BPF_OBJ_PIN, &attr)) {
		remember_pin(pin);
		return 0;
	}
	if (errno != EEXIST) {
		ret = -errno;
		err("pin %s %lu at %s: %s", kind, obj_id, pin, strerror(errno));
		return ret;
	}
	memset(&attr, 0, sizeof(attr));
	attr.pathname = (unsigned long)pin;
	pfd = sys_bpf(BPF_OBJ_GET, &attr);
	ret = pfd < 0 || object_id(pfd, id_field, &pinned_id) ? -1 : 0;
	if (pfd >= 0)
		close(pfd);
	if (ret || pinned_id != obj_id) {
		err("%s already holds another object (id %lu, not %lu): stale staging dir?", pin, ret ? 0 : pinned_id,
		    obj_id);
		return -EEXIST;
	}
	return 0;
}

/*
 * struct bpf_link_info up to its perf_event member (uapi 6.6+; the build host's headers may be older).
 * The kernel copies min(its size, info_len) bytes.
 */
struct link_info_perf {
	__u32 type;
	__u32 id;
	__u32 prog_id;
	__u32 pad0;
	__u32 perf_event_type; /* enum bpf_perf_event_type */
	__u32 pad1;
	__u64 tp_name;
	__u32 name_len;
	__u32 pad2;
	__u64 cookie;
};
#define BPF_PERF_EVENT_TRACEPOINT_ 5

/*
 * The tracepoint a perf event fd is open on, as a name ("sched_process_fork"), and the program attached to
 * it. A perf event's attributes cannot be read back from its fd; but PERF_EVENT_IOC_QUERY_BPF lists the
 * programs attached to the event's tracepoint, and the perf link of any of them names that tracepoint.
 * Returns 0 with *prog_id = 0 and name "-" when the event is not a tracepoint with a BPF program.
 */
static int perf_tracepoint(int fd, unsigned long *prog_id, char *name, size_t size)
{
	struct {
		struct perf_event_query_bpf q;
		__u32 ids[64];
	} query;
	struct link_info_perf li;
	char tp[256];
	__u32 link_id = 0;
	int lfd, i;

	*prog_id = 0;
	snprintf(name, size, "-");
	memset(&query, 0, sizeof(query));
	query.q.ids_len = 64;
	if (ioctl(fd, PERF_EVENT_IOC_QUERY_BPF, &query.q) || query.q.prog_cnt == 0)
		return 0;
	*prog_id = query.q.ids[0];
	while ((link_id = next_id(BPF_LINK_GET_NEXT_ID, link_id))) {
		lfd = fd_by_id(BPF_LINK_GET_FD_BY_ID, link_id);
		if (lfd < 0)
			continue;
		memset(&li, 0, sizeof(li));
		memset(tp, 0, sizeof(tp));
		li.tp_name = (unsigned long)tp;
		li.name_len = sizeof(tp);
		i = obj_info(lfd, &li, sizeof(li));
		close(lfd);
		if (i || li.type != BPF_LINK_TYPE_PERF_EVENT || li.perf_event_type != BPF_PERF_EVENT_TRACEPOINT_)
			continue;
		for (i = 0; i < (int)query.q.prog_cnt && i < 64; i++) {
			if (li.prog_id == query.ids[i] && tp[0] && strlen(tp) < size && !strpbrk(tp, " \t\n")) {
				*prog_id = li.prog_id;
				snprintf(name, size, "%s", tp);
				return 0;
			}
		}
	}
	return 0;
}

/*
 * Wait until the action (@what) running beside CRIU (see the header comment) is done: it holds @lock in
 * the image dir. 0, or -EIO when it failed (the reason it left in @error logged); 0 too when there is no
 * lock (the action ran before CRIU went on).
 */
static int wait_beside(int imgdir, const char *lock, const char *error, const char *what, int quiet)
{
	char why[1024];
	struct timespec t0, t1;
	int fd = openat(imgdir, lock, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (flock(fd, LOCK_SH) && errno == EINTR)
		;
	close(fd);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (!quiet)
		info("%s ran beside CRIU: waited %ld ms for it", what,
		     (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
	if (read_small(imgdir, error, why, sizeof(why)) > 0) {
		why[strcspn(why, "\n")] = 0;
		err("%s failed: %s", what, why);
		return -EIO;
	}
	return 0;
}

/* @quiet: at fini, where a restore without BPF objects (no pre-restore ran) finds the lock too */
static int wait_pre_restore(int imgdir, int quiet)
{
	return wait_beside(imgdir, PRE_RESTORE_LOCK, PRE_RESTORE_ERROR, "pre-restore", quiet);
}

/* Once per dump, before the first object of ours: 0, or -EIO (every later call too) when pre-dump failed. */
static int pre_dump_result = 1;
static int wait_pre_dump(int imgdir)
{
	if (pre_dump_result == 1)
		pre_dump_result = wait_beside(imgdir, PRE_DUMP_LOCK, PRE_DUMP_ERROR, "pre-dump", 0);
	return pre_dump_result;
}

static int bpfcr_dump_ext_file(int fd, int id)
{
	char path[64], link[256], dir[PATH_MAX - 64], pin[PATH_MAX], text[4096], type[256], line[PATH_MAX + 300];
	char prefix[32];
	unsigned long obj_id = 0;
	int imgdir = criu_get_image_dir(), k, ret;
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
	ret = wait_pre_dump(imgdir);
	if (ret)
		return ret;

	if (kinds[k].id_field) {
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
		if (read_small(AT_FDCWD, path, text, sizeof(text)) < 0 ||
		    fdinfo_field(text, kinds[k].id_field, type, sizeof(type))) {
			err("no %s in %s", kinds[k].id_field, path);
			return -EINVAL;
		}
		obj_id = strtoul(type, NULL, 10);
	}
	if (!kinds[k].type_field || fdinfo_field(text, kinds[k].type_field, type, sizeof(type)))
		strcpy(type, "-");

	if (!strcmp(kinds[k].kind, "perf")) {
		perf_tracepoint(fd, &obj_id, type, sizeof(type));
		strcpy(pin, "-");
	} else if (kinds[k].flags & PINNABLE) {
		ret = prepare_staging(imgdir, dir, sizeof(dir));
		if (ret)
			return ret;
		snprintf(pin, sizeof(pin), "%s/%s-%d", dir, kinds[k].kind, id);
		ret = pin_object(fd, pin, kinds[k].kind, kinds[k].id_field, obj_id);
		if (ret)
			return ret;
	} else {
		ret = get_key(imgdir); /* the action script finds its files by key */
		if (ret)
			return ret;
		strcpy(pin, "-");
	}

	snprintf(line, sizeof(line), "%d %s %lu %s %s\n", id, kinds[k].kind, obj_id, type, pin);
	snprintf(prefix, sizeof(prefix), "%d ", id);
	ret = record(imgdir, prefix, line);
	if (ret) {
		err("cannot write %s in the image dir: %s", TAKEN_FILE, strerror(-ret));
		return ret;
	}
	info("dumped file %d: %s id %lu (%s) %s%s", id, kinds[k].kind, obj_id, type, strcmp(pin, "-") ? "pinned at " : "",
	     strcmp(pin, "-") ? pin : "recorded");
	return 0;
}

/*
 * What the dump took for CRIU file @id (its bpfcr-taken.txt line: "<id> <kind> …"), or for the mapping of
 * map @id when @vma: the kind, "" when nothing. A restore line must hand back the same kind of object
 * the dump took (a BTF fd may be loaded from its blob): lines an image brought along cannot turn a map
 * fd into a program, or make the plugin load BTF where the task had none.
 */
static const char *taken_kind(int imgdir, unsigned long id, int vma, char *out, size_t size)
{
	char want[48], *text;
	const char *p;
	int n;

	out[0] = 0;
	n = vma ? snprintf(want, sizeof(want), "vma map %lu ", id) : snprintf(want, sizeof(want), "%lu ", id);
	if (read_text(imgdir, TAKEN_FILE, &text) <= 0) {
		free(text);
		return out;
	}
	for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
		if (strncmp(p, want, n))
			continue;
		if (vma)
			snprintf(out, size, "map");
		else
			snprintf(out, size, "%.*s", (int)strcspn(p + n, " \n"), p + n);
		break;
	}
	free(text);
	return out;
}

static int self_token(char *out, size_t size);

/*
 * bpfcr-restore.txt, once per restore, and only when bpfcr-restore.owner says this criu's pre-restore
 * wrote it: lines an imported image brought along never steer the plugin. NULL (with an error logged
 * once) when absent, unsigned or unreadable.
 */
static char *restore_text;
static int restore_text_err;
/* this criu's "<pid> <start time>", taken at init(RESTORE) in criu itself: the hooks run in restored tasks */
static char criu_token[128];
static const char *restore_lines(void)
{
	char owner[128];
	int imgdir = criu_get_image_dir(), ret;

	if (restore_text || restore_text_err)
		return restore_text;
	if (wait_pre_restore(imgdir, 0)) {
		restore_text_err = -EIO;
		return NULL;
	}
	if (read_small(imgdir, OWNER_FILE, owner, sizeof(owner)) <= 0 || !criu_token[0] ||
	    (owner[strcspn(owner, "\n")] = 0, strcmp(owner, criu_token))) {
		restore_text_err = -EPERM;
		if (!faccessat(imgdir, RESTORE_FILE, F_OK, 0))
			err("%s in the image dir was not written by this restore's pre-restore (%s): not using it", RESTORE_FILE, OWNER_FILE);
		return NULL;
	}
	ret = read_text(imgdir, RESTORE_FILE, &restore_text);
	if (ret < 0) {
		restore_text_err = ret;
		err("cannot read %s in the image dir: %s", RESTORE_FILE, strerror(-ret));
	}
	return restore_text;
}

#ifdef BPFCR_HAVE_VMA_HOOKS
/* Physical frame of the page mapped at @addr in the pagemap @pm (0: not present or not visible). */
static uint64_t page_frame(int pm, uint64_t addr)
{
	uint64_t e;

	if (pread(pm, &e, sizeof(e), addr / getpagesize() * sizeof(e)) != sizeof(e) || !(e >> 63))
		return 0;
	return e & ((1ULL << 55) - 1);
}

/*
 * Which BPF map is mapped at @start (file offset @offset, in bytes) in @pid? /proc/PID/maps shows only "anon_inode:bpf-map" (every BPF
 * anon inode is the same inode) and map_files cannot be opened (ENXIO), so compare memory itself: the
 * map's pages are vmalloc'ed and mapped at mmap time (remap_vmalloc_range), so the physical frame of the
 * VMA's first page equals the frame of the same page offset of the right map mapped here. Candidates are
 * the maps user space can mmap: BPF_F_MMAPABLE arrays, ring buffers. Returns the map id, 0 if none matches.
 */
static unsigned long vma_map_id(int pid, uint64_t start, uint64_t offset, unsigned int *map_type, int *map_fd)
{
	long page = getpagesize();
	struct bpf_map_info mi;
	char path[64];
	uint64_t want, got;
	__u32 id = 0;
	void *p;
	int pm, self, fd;

	*map_fd = -1;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	pm = open(path, O_RDONLY | O_CLOEXEC);
	if (pm < 0) {
		err("pid %d: cannot open %s: %s", pid, path, strerror(errno));
		return 0;
	}
	want = page_frame(pm, start);
	close(pm);
	if (!want) {
		err("pid %d: no page frame for the BPF map mapped at %#" PRIx64 " in %s (needs CAP_SYS_ADMIN)", pid, start, path);
		return 0;
	}
	self = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return 0;
	while ((id = next_id(BPF_MAP_GET_NEXT_ID, id))) {
		/* not BPF_F_RDONLY: the kernel refuses to mmap a map through a read-only fd (EINVAL) */
		fd = fd_by_id(BPF_MAP_GET_FD_BY_ID, id);
		if (fd < 0)
			continue;
		memset(&mi, 0, sizeof(mi));
		got = 0;
		if (!obj_info(fd, &mi, sizeof(mi)) &&
		    ((mi.map_flags & BPF_F_MMAPABLE) || mi.type == BPF_MAP_TYPE_RINGBUF || mi.type == BPF_MAP_TYPE_USER_RINGBUF)) {
			p = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, offset);
			if (p != MAP_FAILED) {
				(void)*(volatile char *)p;
				got = page_frame(self, (unsigned long)p);
				munmap(p, page);
			}
		}
		if (got == want) {
			*map_type = mi.type;
			*map_fd = fd; /* the caller pins it */
			break;
		}
		close(fd);
	}
	close(self);
	return *map_fd >= 0 ? id : 0;
}

static int bpfcr_dump_vma(int pid, const char *path, uint64_t start, uint64_t end, uint64_t pgoff, uint64_t *id)
{
	char dir[PATH_MAX - 64], pin[PATH_MAX], line[PATH_MAX + 128], prefix[48];
	int imgdir = criu_get_image_dir(), ret, fd;
	unsigned int map_type = 0;
	unsigned long map_id;

	if (strcmp(path, "anon_inode:bpf-map"))
		return -ENOTSUP;
	ret = wait_pre_dump(imgdir);
	if (ret)
		return ret;
	map_id = vma_map_id(pid, start, pgoff, &map_type, &fd);
	if (!map_id) {
		err("pid %d: cannot tell which BPF map is mapped at %#" PRIx64 "-%#" PRIx64 " (offset %#" PRIx64 ")", pid,
		    start, end, pgoff);
		return -ENOENT;
	}
	ret = prepare_staging(imgdir, dir, sizeof(dir));
	if (ret) {
		close(fd);
		return ret;
	}
	/*
	 * Pin it even when the task also holds an fd of it: a task may have closed its fd after mmap (the
	 * mapping alone keeps the map alive), and then this pin is what keeps it once the task is gone.
	 */
	snprintf(pin, sizeof(pin), "%s/vma-%lu", dir, map_id);
	ret = pin_object(fd, pin, "map", "map_id:", map_id);
	close(fd);
	if (ret)
		return ret;
	snprintf(line, sizeof(line), "vma map %lu %u %s\n", map_id, map_type, pin);
	snprintf(prefix, sizeof(prefix), "vma map %lu ", map_id);
	ret = record(imgdir, prefix, line);
	if (ret) {
		err("cannot write %s in the image dir: %s", TAKEN_FILE, strerror(-ret));
		return ret;
	}
	*id = map_id;
	info("pid %d: mapping %#" PRIx64 "-%#" PRIx64 " (offset %#" PRIx64 ") is map %lu (type %u), pinned at %s", pid,
	     start, end, pgoff, map_id, map_type, pin);
	return 0;
}

static int bpfcr_restore_vma(uint64_t id, uint64_t start, uint64_t end, uint64_t pgoff)
{
	const char *text = restore_lines(), *p;
	char took[16];
	unsigned long old_id, new_id;
	int ret, fd;

	if (!text) {
		err("mapping %#" PRIx64 ": no usable %s in the image dir", start, RESTORE_FILE);
		return restore_text_err ? restore_text_err : -ENOENT;
	}
	for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
		if (sscanf(p, "vma %lu %lu", &old_id, &new_id) != 2 || old_id != id)
			continue;
		if (!taken_kind(criu_get_image_dir(), id, 1, took, sizeof(took))[0]) {
			err("mapping %#" PRIx64 ": the dump took no mapped map %lu (%s): refusing", start, old_id, TAKEN_FILE);
			return -EINVAL;
		}
		fd = fd_by_id(BPF_MAP_GET_FD_BY_ID, new_id);
		if (fd < 0) {
			ret = -errno;
			err("mapping %#" PRIx64 "-%#" PRIx64 ": cannot open map %lu (was %lu): %s", start, end, new_id, old_id,
			    strerror(errno));
			return ret;
		}
		info("mapping %#" PRIx64 "-%#" PRIx64 " (offset %#" PRIx64 "): map %lu (was %lu) as fd %d", start, end, pgoff,
		     new_id, old_id, fd);
		return fd;
	}
	err("mapping %#" PRIx64 "-%#" PRIx64 ": no line \"vma %" PRIu64 " <new map id>\" in %s", start, end, id, RESTORE_FILE);
	return -ENOENT;
}
#endif

/* BPF_BTF_LOAD of <image dir>/bpfcr-btf-<old id>.raw (written by the pre-restore action from the archive). */
static int load_btf(int file_id, unsigned long old_id)
{
	char name[64], log[4096];
	union bpf_attr attr;
	struct stat st;
	void *blob;
	int fd, ret;

	snprintf(name, sizeof(name), "bpfcr-btf-%lu.raw", old_id);
	fd = openat(criu_get_image_dir(), name, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) || st.st_size <= 0 || st.st_size > (64 << 20)) {
		ret = fd < 0 ? -errno : -EINVAL;
		err("file %d: cannot read %s in the image dir: %s", file_id, name, fd < 0 ? strerror(errno) : "bad size");
		if (fd >= 0)
			close(fd);
		return ret;
	}
	blob = malloc(st.st_size);
	if (!blob || pread(fd, blob, st.st_size, 0) != st.st_size) {
		close(fd);
		free(blob);
		err("file %d: cannot read %s", file_id, name);
		return -EIO;
	}
	close(fd);
	memset(&attr, 0, sizeof(attr));
	log[0] = 0;
	attr.btf = (unsigned long)blob;
	attr.btf_size = st.st_size;
	attr.btf_log_buf = (unsigned long)log;
	attr.btf_log_size = sizeof(log);
	attr.btf_log_level = 1;
	fd = sys_bpf(BPF_BTF_LOAD, &attr);
	ret = fd < 0 ? -errno : fd;
	free(blob);
	if (fd < 0)
		err("file %d: BTF_LOAD of %s: %s %s", file_id, name, strerror(-ret), log);
	return ret;
}

/*
 * A stand-in for a perf event fd. The attachment itself lives in the perf link, which comes back as the
 * link (or is re-created): the event fd next to it is only used by the application to disable and close it
 * when it detaches (libbpf's bpf_link_perf_detach). So open an event on the same tracepoint (as libbpf opens
 * it: all tasks, CPU 0, every event sampled), or a software dummy event when the tracepoint is unknown.
 */
static int open_perf_standin(int file_id, unsigned long tp_id)
{
	struct perf_event_attr a;
	int fd;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	if (tp_id) {
		a.type = PERF_TYPE_TRACEPOINT;
		a.config = tp_id;
		a.sample_period = 1;
		a.wakeup_events = 1;
	} else {
		a.type = PERF_TYPE_SOFTWARE;
		a.config = PERF_COUNT_SW_DUMMY;
	}
	fd = syscall(__NR_perf_event_open, &a, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0) {
		fd = -errno;
		err("file %d: perf_event_open(%s %lu): %s", file_id, tp_id ? "tracepoint" : "software dummy", tp_id,
		    strerror(errno));
	}
	return fd;
}

static int bpfcr_restore_ext_file(int id)
{
	const char *text = restore_lines(), *p;
	char kind[16], took[16];
	unsigned long obj_id;
	int k, fd, fid;

	if (!text) {
		if (restore_text_err == -EIO)
			return -EIO; /* pre-restore failed: said above */
		warn("file %d: no usable %s in the image dir", id, RESTORE_FILE);
		return -ENOTSUP;
	}
	for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
		if (sscanf(p, "%d %15s %lu", &fid, kind, &obj_id) != 3 || fid != id)
			continue;
		taken_kind(criu_get_image_dir(), id, 0, took, sizeof(took));
		if (strcmp(kind, took) && !(!strcmp(kind, "btf-load") && !strcmp(took, "btf"))) {
			err("file %d: %s says %s, but the dump took %s for it (%s): refusing", id, RESTORE_FILE, kind,
			    took[0] ? took : "nothing", TAKEN_FILE);
			return -EINVAL;
		}
		if (!strcmp(kind, "btf-load"))
			fd = load_btf(id, obj_id);
		else if (!strcmp(kind, "perf"))
			fd = open_perf_standin(id, obj_id);
		else {
			for (k = 0; k < NKINDS && (strcmp(kind, kinds[k].kind) || kinds[k].get_fd_cmd < 0); k++)
				;
			if (k == NKINDS) {
				err("file %d: unknown kind '%s' in %s", id, kind, RESTORE_FILE);
				return -EINVAL;
			}
			fd = fd_by_id(kinds[k].get_fd_cmd, obj_id);
			if (fd < 0) {
				fd = -errno;
				err("file %d: cannot open %s id %lu: %s", id, kind, obj_id, strerror(errno));
			}
		}
		if (fd >= 0)
			info("restored file %d: %s %lu as fd %d", id, kind, obj_id, fd);
		return fd;
	}
	warn("file %d: no line for it in %s", id, RESTORE_FILE);
	return -ENOTSUP;
}

/* "<pid> <start time>" of this process (field 22 of /proc/self/stat), as the action script writes it. */
static int self_token(char *out, size_t size)
{
	char text[1024], *p;
	int i;

	if (read_small(AT_FDCWD, "/proc/self/stat", text, sizeof(text)) <= 0 || !(p = strrchr(text, ')')))
		return -1;
	for (p += 2, i = 3; i < 22 && p; i++)
		p = strchr(p, ' '), p = p ? p + 1 : p;
	if (!p)
		return -1;
	snprintf(out, size, "%d %.*s", getpid(), (int)strcspn(p, " "), p);
	return 0;
}

static int on_bpffs(const char *path)
{
	struct statfs st;

	return !statfs(path, &st) && st.f_type == BPF_FS_MAGIC;
}

/* Is @path inside @dir (or @dir itself), with no ".." component? */
static int inside(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (strstr(path, "/../") || (strlen(path) >= 3 && !strcmp(path + strlen(path) - 3, "/..")))
		return 0;
	return !strncmp(path, dir, n) && (path[n] == 0 || path[n] == '/');
}

/* The restore's cleanup list (see the header comment), run under the checkpoint's lock. */
static void restore_cleanup(int ok)
{
	char *text = NULL;
	char owner[128], token[128], keybuf[80], root[3072], keydir[3200], copies[3300], marker[PATH_MAX];
	char lockpath[PATH_MAX];
	const char *run = getenv("BPFCR_RUN_DIR"), *env_root = getenv("BPFCR_STAGING"), *p, *path;
	int imgdir = restore_imgdir, lockfd, done = 0, refused = 0, len;
	char op;

	if (imgdir < 0)
		return;
	wait_pre_restore(imgdir, 1); /* its list is complete only once it is done */
	unlinkat(imgdir, PRE_RESTORE_LOCK, 0);
	if (read_text(imgdir, CLEANUP_FILE, &text) <= 0) {
		free(text);
		return;
	}
	if (read_small(imgdir, OWNER_FILE, owner, sizeof(owner)) <= 0 || self_token(token, sizeof(token)) ||
	    (owner[strcspn(owner, "\n")] = 0, strcmp(owner, token))) {
		err("%s in the image dir was not written by this restore's pre-restore: not acting on it", CLEANUP_FILE);
		goto out;
	}
	if (read_small(imgdir, KEY_FILE, keybuf, sizeof(keybuf)) <= 0)
		goto out;
	keybuf[strcspn(keybuf, "\n")] = 0;
	if (!keybuf[0] || keybuf[0] == '.' || strchr(keybuf, '/'))
		goto out;
	/* pre-restore wrote the staging root it used into bpfcr-staging; the plugin's own default also counts */
	len = read_small(imgdir, STAGING_FILE, root, sizeof(root));
	if (len < 0 && len != -ENOENT)
		goto out; /* unreadable or too long: never guess another root to remove pins from */
	if (len > 0)
		root[strcspn(root, "\n")] = 0;
	else
		snprintf(root, sizeof(root), "%s", env_root && *env_root ? env_root : DEFAULT_STAGING);
	if (root[0] != '/')
		goto out;
	if (!run || !*run)
		run = DEFAULT_RUN_DIR;
	snprintf(keydir, sizeof(keydir), "%s/%s", root, keybuf);
	snprintf(copies, sizeof(copies), "%s/r%d", keydir, getpid());
	snprintf(marker, sizeof(marker), "%s/%s.restore-%d", run, keybuf, getpid());

	snprintf(lockpath, sizeof(lockpath), "%s/%s.lock", run, keybuf);
	lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd >= 0)
		flock(lockfd, LOCK_EX); /* the action script takes the same lock (src/criu/lock.ts) */

	for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
		char line[PATH_MAX];
		size_t n = strcspn(p, "\n");

		if (n < 3 || n >= sizeof(line) || p[1] != ' ')
			continue;
		memcpy(line, p, n);
		line[n] = 0;
		op = line[0];
		path = line + 2;
		if (!((op == 'f' && !strcmp(path, marker)) || inside(path, keydir) ||
		      (op == 'd' && !strcmp(path, keydir)))) {
			err("%s: refusing to remove %s: outside this checkpoint's staging dir %s", CLEANUP_FILE, path, keydir);
			refused++;
			continue;
		}
		/* a failed restore keeps the staged originals for the next try */
		if (!ok && op == 'f' && strcmp(path, marker) && !inside(path, copies))
			continue;
		if (op == 'f' && !strcmp(path, marker)) {
			unlink(path);
		} else if (op == 'f') {
			char dir[PATH_MAX + 8];

			snprintf(dir, sizeof(dir), "%s", path);
			*strrchr(dir, '/') = 0;
			if (on_bpffs(dir))
				done += !unlink(path);
		} else if (op == 'd' && on_bpffs(path)) {
			rmdir(path);
		}
	}
	unlinkat(imgdir, CLEANUP_FILE, 0);
	if (lockfd >= 0) {
		if (ok)
			unlink(lockpath); /* nothing of ours follows; waiters retry on a new file */
		close(lockfd);
	}
	info("%s restore: removed %d staged pin(s)%s%s", ok ? "after the" : "after a failed", done,
	     refused ? ", refused " : "", refused ? "paths outside the staging dir" : "");
out:
	free(text);
}

/* init(RESTORE): the lock pre-restore holds (see the header comment), made fresh by criu itself. */
static void make_pre_restore_lock(int imgdir)
{
	int fd;

	if (unlinkat(imgdir, PRE_RESTORE_LOCK, 0) && errno != ENOENT)
		warn("cannot remove %s from the image dir: %s", PRE_RESTORE_LOCK, strerror(errno));
	fd = openat(imgdir, PRE_RESTORE_LOCK, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		warn("cannot create %s in the image dir (pre-restore then runs before CRIU goes on): %s", PRE_RESTORE_LOCK,
		     strerror(errno));
	else
		close(fd);
}

static int bpfcr_init(int stage)
{
	key[0] = 0;
	nr_made_pins = 0;
	pre_dump_result = 1;
	criu_token[0] = 0;
	if (stage == CR_PLUGIN_STAGE__RESTORE && self_token(criu_token, sizeof(criu_token)))
		criu_token[0] = 0;
	if (stage == CR_PLUGIN_STAGE__RESTORE && criu_get_image_dir() >= 0) {
		restore_imgdir = fcntl(criu_get_image_dir(), F_DUPFD_CLOEXEC, 0);
		make_pre_restore_lock(criu_get_image_dir());
	}
	info("loaded (stage %d)", stage);
	return 0;
}

/*
 * A failed dump resumes the tasks, which still hold their objects: the pins this dump made would only
 * keep copies of their state alive under the staging root until `bpfcr gc`. Remove them, and the
 * now-empty staging dir, and the list of what was taken (no restore can use this image dir).
 */
static void bpfcr_fini(int stage, int ret)
{
	char dir[PATH_MAX];
	int i, removed = 0, imgdir;

	if (stage == CR_PLUGIN_STAGE__RESTORE) {
		restore_cleanup(ret == 0);
		free(restore_text);
		restore_text = NULL;
		restore_text_err = 0;
		if (restore_imgdir >= 0)
			close(restore_imgdir);
		restore_imgdir = -1;
	}
	if (stage == CR_PLUGIN_STAGE__DUMP && ret) {
		for (i = 0; i < nr_made_pins; i++) {
			if (!unlink(made_pins[i]))
				removed++;
			else if (errno != ENOENT)
				warn("dump failed: cannot remove %s: %s", made_pins[i], strerror(errno));
		}
		if (nr_made_pins) {
			snprintf(dir, sizeof(dir), "%s", made_pins[0]);
			*strrchr(dir, '/') = 0;
			rmdir(dir);
		}
		imgdir = criu_get_image_dir();
		if (imgdir >= 0)
			unlinkat(imgdir, TAKEN_FILE, 0);
		info("dump failed: removed %d staged pin(s)", removed);
	}
	for (i = 0; i < nr_made_pins; i++)
		free(made_pins[i]);
	free(made_pins);
	made_pins = NULL;
	nr_made_pins = 0;
}

CR_PLUGIN_REGISTER("bpfcr", bpfcr_init, bpfcr_fini)
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__DUMP_EXT_FILE, bpfcr_dump_ext_file)
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__RESTORE_EXT_FILE, bpfcr_restore_ext_file)
#ifdef BPFCR_HAVE_VMA_HOOKS
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__DUMP_VMA, bpfcr_dump_vma)
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__RESTORE_VMA, bpfcr_restore_vma)
#endif
