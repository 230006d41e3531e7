/*
 * batchloop: the C measuring stick for bpfcr's benchmark. It does the same batch loop bpfcr
 * does (BPF_MAP_LOOKUP_BATCH to dump, BPF_MAP_UPDATE_BATCH to restore) with nothing else
 * around it, so whole-process wall times can be compared.
 *
 *   batchloop dump MAP_ID OUTFILE     dump a map (hash family / arrays) into OUTFILE
 *   batchloop restore INFILE PIN_PATH create a map of the dumped shape, fill it, pin it
 *
 * OUTFILE layout (host endian): struct hdr, then count keys, then count values.
 * Element count and timings go to stderr. Raw bpf(2), no libbpf; built with cc -O2 -static.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/bpf.h>

#define CHUNK 65536 /* entries per batch call, as bpfcr */

struct hdr {
	char magic[8]; /* "BATCHLP1" */
	uint32_t type, key_size, value_size, value_bytes /* per entry in the file */;
	uint32_t max_entries, map_flags;
	char name[16];
	uint64_t map_extra, count;
};

/* struct bpf_map_info as of 6.18 (Debian 12's header is 6.1) */
struct map_info {
	uint32_t type, id, key_size, value_size, max_entries, map_flags;
	char name[16];
	uint32_t ifindex, btf_vmlinux_value_type_id;
	uint64_t netns_dev, netns_ino;
	uint32_t btf_id, btf_key_type_id, btf_value_type_id, btf_vmlinux_id;
	uint64_t map_extra, hash;
	uint32_t hash_size, pad;
};

static void die(const char *what)
{
	fprintf(stderr, "batchloop: %s: %s (errno %d)\n", what,
		errno == 524 ? "ENOTSUPP" : strerror(errno), errno);
	exit(1);
}

static void *xrealloc(void *p, size_t n)
{
	if (!(p = realloc(p, n ? n : 1)))
		die("out of memory");
	return p;
}

static int sys_bpf(int cmd, union bpf_attr *a)
{
	return syscall(__NR_bpf, cmd, a, sizeof(*a));
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Per-CPU values come as round_up(value_size, 8) per possible CPU. */
static uint32_t value_bytes(uint32_t type, uint32_t value_size)
{
	char buf[256], *p;
	unsigned long n = 0;
	FILE *f;
	if (type != BPF_MAP_TYPE_PERCPU_HASH && type != BPF_MAP_TYPE_LRU_PERCPU_HASH &&
	    type != BPF_MAP_TYPE_PERCPU_ARRAY)
		return value_size;
	if (!(f = fopen("/sys/devices/system/cpu/possible", "r")) || !fgets(buf, sizeof buf, f))
		die("read /sys/devices/system/cpu/possible");
	fclose(f);
	for (p = buf; *p;)
		if (*p >= '0' && *p <= '9') {
			unsigned long v = strtoul(p, &p, 10);
			n = v + 1 > n ? v + 1 : n;
		} else
			p++;
	return (value_size + 7) / 8 * 8 * n;
}

static int cmd_dump(uint32_t id, const char *outfile)
{
	double t0 = now(), t1;
	union bpf_attr a;
	struct map_info mi;
	struct hdr h;
	int fd;

	memset(&a, 0, sizeof a);
	a.map_id = id;
	if ((fd = sys_bpf(BPF_MAP_GET_FD_BY_ID, &a)) < 0)
		die("BPF_MAP_GET_FD_BY_ID");
	memset(&a, 0, sizeof a);
	memset(&mi, 0, sizeof mi);
	a.info.bpf_fd = fd;
	a.info.info_len = sizeof mi;
	a.info.info = (uintptr_t)&mi;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a) < 0)
		die("BPF_OBJ_GET_INFO_BY_FD");

	size_t ks = mi.key_size, vb = value_bytes(mi.type, mi.value_size), chunk = CHUNK;
	size_t cap = mi.max_entries ? mi.max_entries : CHUNK, n = 0;
	/* cursor: the kernel's batch token is a bucket/index (u32) or a key: size it for both */
	size_t tok = ks > 8 ? ks : 8;
	char *keys = xrealloc(NULL, cap * ks), *vals = xrealloc(NULL, cap * vb);
	char *kb = xrealloc(NULL, chunk * ks), *vbuf = xrealloc(NULL, chunk * vb);
	char *in = xrealloc(NULL, tok), *out = xrealloc(NULL, tok);
	int first = 1;

	for (;;) {
		memset(&a, 0, sizeof a);
		a.batch.in_batch = first ? 0 : (uintptr_t)in;
		a.batch.out_batch = (uintptr_t)out;
		a.batch.keys = (uintptr_t)kb;
		a.batch.values = (uintptr_t)vbuf;
		a.batch.count = chunk;
		a.batch.map_fd = fd;
		int err = sys_bpf(BPF_MAP_LOOKUP_BATCH, &a);
		if (err < 0 && errno == ENOSPC && a.batch.count == 0) {
			/* a whole hash bucket did not fit: retry from the same cursor, bigger */
			chunk *= 2;
			kb = xrealloc(kb, chunk * ks);
			vbuf = xrealloc(vbuf, chunk * vb);
			continue;
		}
		if (err < 0 && errno != ENOENT)
			die("BPF_MAP_LOOKUP_BATCH");
		size_t got = a.batch.count;
		if (n + got > cap) {
			cap = (n + got) * 2;
			keys = xrealloc(keys, cap * ks);
			vals = xrealloc(vals, cap * vb);
		}
		memcpy(keys + n * ks, kb, got * ks);
		memcpy(vals + n * vb, vbuf, got * vb);
		n += got;
		if (err < 0) /* ENOENT: end of map, possibly with a last partial batch */
			break;
		memcpy(in, out, tok);
		first = 0;
	}
	t1 = now();

	memset(&h, 0, sizeof h);
	memcpy(h.magic, "BATCHLP1", 8);
	h.type = mi.type;
	h.key_size = mi.key_size;
	h.value_size = mi.value_size;
	h.value_bytes = vb;
	h.max_entries = mi.max_entries;
	h.map_flags = mi.map_flags;
	memcpy(h.name, mi.name, sizeof h.name);
	h.map_extra = mi.map_extra;
	h.count = n;
	FILE *f = fopen(outfile, "w");
	if (!f)
		die(outfile);
	if (fwrite(&h, sizeof h, 1, f) != 1 || fwrite(keys, ks, n, f) != n ||
	    fwrite(vals, vb, n, f) != n || fclose(f))
		die("write");
	fprintf(stderr, "dump: %zu elements, %.3f s total (batch lookup %.3f s)\n", n,
		now() - t0, t1 - t0);
	return 0;
}

static int cmd_restore(const char *infile, const char *pin)
{
	double t0 = now(), t1, t2;
	union bpf_attr a;
	struct hdr h;
	FILE *f = fopen(infile, "r");
	int fd;

	if (!f)
		die(infile);
	if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, "BATCHLP1", 8))
		die("bad header");
	size_t ks = h.key_size, vb = h.value_bytes, n = h.count;
	char *keys = xrealloc(NULL, n * ks), *vals = xrealloc(NULL, n * vb);
	if (fread(keys, ks, n, f) != n || fread(vals, vb, n, f) != n)
		die("short read");
	fclose(f);
	t1 = now();

	/* same shape; the hash family keeps its type, anything else becomes a plain HASH */
	memset(&a, 0, sizeof a);
	a.map_type = h.type == BPF_MAP_TYPE_LRU_HASH || h.type == BPF_MAP_TYPE_PERCPU_HASH ||
				     h.type == BPF_MAP_TYPE_LRU_PERCPU_HASH
			     ? h.type
			     : BPF_MAP_TYPE_HASH;
	a.key_size = h.key_size;
	a.value_size = h.value_size;
	a.max_entries = h.max_entries;
	a.map_flags = a.map_type == h.type ? h.map_flags : 0;
	memcpy(a.map_name, h.name, sizeof a.map_name);
	if ((fd = sys_bpf(BPF_MAP_CREATE, &a)) < 0)
		die("BPF_MAP_CREATE");

	for (size_t off = 0; off < n;) {
		size_t m = n - off < CHUNK ? n - off : CHUNK;
		memset(&a, 0, sizeof a);
		a.batch.keys = (uintptr_t)(keys + off * ks);
		a.batch.values = (uintptr_t)(vals + off * vb);
		a.batch.count = m;
		a.batch.map_fd = fd;
		if (sys_bpf(BPF_MAP_UPDATE_BATCH, &a) < 0)
			die("BPF_MAP_UPDATE_BATCH");
		off += m;
	}
	t2 = now();

	memset(&a, 0, sizeof a);
	a.pathname = (uintptr_t)pin;
	a.bpf_fd = fd;
	if (sys_bpf(BPF_OBJ_PIN, &a) < 0)
		die("BPF_OBJ_PIN");
	fprintf(stderr, "restore: %zu elements, %.3f s total (read %.3f s, batch update %.3f s)\n", n,
		now() - t0, t1 - t0, t2 - t1);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "dump"))
		return cmd_dump(strtoul(argv[2], NULL, 0), argv[3]);
	if (argc == 4 && !strcmp(argv[1], "restore"))
		return cmd_restore(argv[2], argv[3]);
	fputs("usage:\n"
	      "  batchloop dump MAP_ID OUTFILE       BPF_MAP_LOOKUP_BATCH the whole map into OUTFILE\n"
	      "  batchloop restore INFILE PIN_PATH   create a map of the same shape, BPF_MAP_UPDATE_BATCH,\n"
	      "                                      BPF_OBJ_PIN it at PIN_PATH (on a bpffs)\n",
	      stderr);
	return 2;
}
