/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Why these two functions (Go's net/http client, 1.17 to today):
 * Transport.roundTrip may replace the request (setupRewindBody, retries),
 * but each attempt ends in (*persistConn).roundTrip(pc, treq) on the
 * handler's goroutine, and the connection's writeLoop goroutine then calls
 * treq.Request.write(...): the same *Request at both, the hand-over from
 * the goroutine that read the inbound request to the one that writes the
 * upstream one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <uthash.h>

#include "gopclntab.h"
#include "gort.h"
#include "log.h"

enum bin_state {
	BIN_ATTACHED = 0,
	BIN_REFUSED,
};

struct bin {
	dev_t dev;
	ino_t ino;
	enum bin_state state;
	struct bpf_link *links[2];
	unsigned procs; /* processes of it in go_procs */
};

struct gproc {
	uint32_t tgid;
	struct bin *bin; /* NULL: not Go (or refused) */
	UT_hash_handle hh;
};

struct ws_gort {
	struct bpf_object *obj;
	struct bpf_program *progs[2];
	int procs_fd;
	struct bin *known[WS_GORT_MAX_KNOWN];
	unsigned n_known, n_attached;
	struct gproc *procs;
	unsigned n_procs;
	struct ws_gort_stats st;
};

static const char *const fn_names[2] = {WS_GORT_FN_ROUND_TRIP,
					WS_GORT_FN_REQ_WRITE};

struct ws_gort *ws_gort_new(struct bpf_object *obj)
{
	struct ws_gort *g = calloc(1, sizeof(*g));
	struct bpf_map *m;

	if (!g)
		return NULL;
	g->procs_fd = -1;
	if (!obj)
		return g;
	g->progs[0] = bpf_object__find_program_by_name(obj, "go_round_trip");
	g->progs[1] = bpf_object__find_program_by_name(obj, "go_req_write");
	m = bpf_object__find_map_by_name(obj, "go_procs");
	if (g->progs[0] && g->progs[1] && m) {
		g->obj = obj;
		g->procs_fd = bpf_map__fd(m);
	}
	return g;
}

/* Why a binary is refused, for the log and the counters. */
static int inspect(const char *path, uint64_t offs[2], char *ver, size_t cap,
		   unsigned *at_entry)
{
	struct ws_gobin gb;
	struct stat st;
	void *map;
	uint64_t va;
	int fd, err, i;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || st.st_size <= 0) {
		close(fd);
		return -EINVAL;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return -errno;
	err = ws_gobin_parse(map, (size_t)st.st_size, &gb);
	snprintf(ver, cap, "%s", err ? "" : gb.version);
	if (!err && (gb.go_major != 1 || gb.go_minor < WS_GO_MIN_MINOR))
		err = -ERANGE;
	*at_entry = 0;
	for (i = 0; !err && i < 2; i++) {
		size_t skip;

		err = ws_gobin_func(&gb, fn_names[i], &va, &offs[i]);
		if (err)
			break;
		/* past the stack check, where the kernel need not
		 * single-step (ws_go_probe_skip) */
		skip = ws_go_probe_skip(gb.buf + offs[i], gb.len - offs[i]);
		offs[i] += skip;
		*at_entry += !skip;
	}
	munmap(map, (size_t)st.st_size);
	return err;
}

static void refuse_count(struct ws_gort *g, int err)
{
	switch (err) {
	case -ENOEXEC:
		g->st.not_go++;
		break;
	case -ERANGE:
		g->st.go_too_old++;
		break;
	case -ENOENT:
		g->st.no_func++;
		break;
	default:
		g->st.bad_binary++;
		break;
	}
}

static int attach(struct ws_gort *g, struct bin *b, const char *path,
		  const uint64_t offs[2])
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts);
	int i, err;

	for (i = 0; i < 2; i++) {
		b->links[i] = bpf_program__attach_uprobe_opts(
			g->progs[i], -1, path, (size_t)offs[i], &opts);
		if (!b->links[i]) {
			err = -errno;
			while (i-- > 0) {
				bpf_link__destroy(b->links[i]);
				b->links[i] = NULL;
			}
			return err ? err : -EINVAL;
		}
	}
	return 0;
}

/* The binary of path (dev, ino): known, or looked at and remembered. */
static struct bin *bin_get(struct ws_gort *g, const char *path,
			   const struct stat *st, uint32_t tgid)
{
	uint64_t offs[2];
	char ver[32];
	struct bin *b;
	unsigned i, at_entry = 0;
	int err;

	for (i = 0; i < g->n_known; i++)
		if (g->known[i]->dev == st->st_dev &&
		    g->known[i]->ino == st->st_ino)
			return g->known[i];
	if (g->n_known >= WS_GORT_MAX_KNOWN) {
		g->st.known_over++;
		return NULL;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->dev = st->st_dev;
	b->ino = st->st_ino;
	err = inspect(path, offs, ver, sizeof(ver), &at_entry);
	if (err) {
		refuse_count(g, err);
		if (err != -ENOEXEC)
			ws_info("Go runtime evidence: process %u (%s): not "
				"probed: %s",
				tgid, ver[0] ? ver : "version unknown",
				err == -ERANGE	 ? "Go older than 1.17"
				: err == -ENOENT ? "net/http client not found"
						 : strerror(-err));
		b->state = BIN_REFUSED;
	} else if (g->n_attached >= WS_GORT_MAX_BINARIES) {
		g->st.binaries_over++;
		ws_warn("Go runtime evidence: process %u: more than %d Go "
			"binaries, not probed",
			tgid, WS_GORT_MAX_BINARIES);
		b->state = BIN_REFUSED;
	} else if ((err = attach(g, b, path, offs))) {
		g->st.attach_failed++;
		ws_warn("Go runtime evidence: process %u (%s): uprobe attach "
			"failed: %s",
			tgid, ver, strerror(-err));
		b->state = BIN_REFUSED;
	} else {
		g->st.attached++;
		g->st.probes_at_entry += at_entry;
		g->n_attached++;
		ws_info("Go runtime evidence: process %u (%s): net/http probed",
			tgid, ver);
		b->state = BIN_ATTACHED;
	}
	g->known[g->n_known++] = b;
	return b;
}

/* Listening sockets' inodes, at most this many are looked for. */
#define SCAN_MAX_INODES 4096

static int ino_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static bool in_list32(uint32_t v, const uint32_t *l, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (l[i] == v)
			return true;
	return !n;
}

/* The inodes of the TCP sockets in state LISTEN (0A) of one table, on
 * one of ports (any when n_ports is 0). */
static size_t listen_inodes(const char *path, uint64_t *out, size_t n,
			    size_t cap, const uint16_t *ports, unsigned n_ports)
{
	char line[512];
	unsigned st, port, i;
	unsigned long long ino;
	bool want;
	FILE *f = fopen(path, "re");

	if (!f)
		return n;
	while (n < cap && fgets(line, sizeof(line), f)) {
		if (sscanf(line,
			   "%*d: %*[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*s "
			   "%*s %llu",
			   &port, &st, &ino) != 3 ||
		    st != 0x0a || !ino)
			continue;
		for (want = !n_ports, i = 0; i < n_ports; i++)
			want |= ports[i] == port;
		if (want)
			out[n++] = ino;
	}
	fclose(f);
	return n;
}

/* Does process pid hold one of the sorted inodes? */
static bool holds_socket(unsigned long pid, const uint64_t *inos, size_t n)
{
	char path[64], link[64];
	struct dirent *de;
	bool found = false;
	uint64_t ino;
	DIR *d;
	ssize_t l;

	snprintf(path, sizeof(path), "/proc/%lu/fd", pid);
	d = opendir(path);
	if (!d)
		return false;
	while (!found && (de = readdir(d))) {
		snprintf(path, sizeof(path), "/proc/%lu/fd/%.16s", pid,
			 de->d_name);
		l = readlink(path, link, sizeof(link) - 1);
		if (l <= 8 || strncmp(link, "socket:[", 8))
			continue;
		link[l] = 0;
		ino = strtoull(link + 8, NULL, 10);
		found = bsearch(&ino, inos, n, sizeof(*inos), ino_cmp);
	}
	closedir(d);
	return found;
}

unsigned ws_gort_scan_listeners(struct ws_gort *g, const uint16_t *ports,
				unsigned n_ports, const uint32_t *pids,
				unsigned n_pids)
{
	uint64_t *inos;
	size_t n;
	unsigned seen = 0;
	struct dirent *de;
	DIR *d;

	if (!g || !g->obj)
		return 0;
	inos = calloc(SCAN_MAX_INODES, sizeof(*inos));
	if (!inos)
		return 0;
	n = listen_inodes("/proc/net/tcp", inos, 0, SCAN_MAX_INODES, ports,
			  n_ports);
	n = listen_inodes("/proc/net/tcp6", inos, n, SCAN_MAX_INODES, ports,
			  n_ports);
	qsort(inos, n, sizeof(*inos), ino_cmp);
	d = n ? opendir("/proc") : NULL;
	while (d && (de = readdir(d))) {
		unsigned long pid = strtoul(de->d_name, NULL, 10);

		if (!pid || pid == (unsigned long)getpid() ||
		    !in_list32((uint32_t)pid, pids, n_pids) ||
		    !holds_socket(pid, inos, n))
			continue;
		ws_gort_see(g, (uint32_t)pid);
		seen++;
	}
	if (d)
		closedir(d);
	free(inos);
	return seen;
}

void ws_gort_see(struct ws_gort *g, uint32_t tgid)
{
	struct gproc *p = NULL;
	char path[64];
	struct stat st;
	uint8_t one = 1;

	if (!g)
		return;
	HASH_FIND(hh, g->procs, &tgid, sizeof(tgid), p);
	if (p)
		return;
	if (g->n_procs >= WS_GORT_MAX_PROCS) {
		g->st.procs_over++;
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return;
	p->tgid = tgid;
	HASH_ADD(hh, g->procs, tgid, sizeof(p->tgid), p);
	g->n_procs++;
	if (!g->obj) {
		g->st.unavailable++;
		return;
	}
	snprintf(path, sizeof(path), "/proc/%u/exe", tgid);
	if (stat(path, &st))
		return; /* gone already, or a kernel thread */
	p->bin = bin_get(g, path, &st, tgid);
	if (!p->bin || p->bin->state != BIN_ATTACHED) {
		p->bin = NULL;
		return;
	}
	if (bpf_map_update_elem(g->procs_fd, &tgid, &one, BPF_ANY)) {
		g->st.procs_map_full++;
		p->bin = NULL;
		return;
	}
	p->bin->procs++;
	g->st.procs++;
}

static void bin_detach(struct bin *b)
{
	int i;

	for (i = 0; i < 2; i++) {
		bpf_link__destroy(b->links[i]);
		b->links[i] = NULL;
	}
}

void ws_gort_exit(struct ws_gort *g, uint32_t tgid)
{
	struct gproc *p = NULL;
	struct bin *b;
	unsigned i;

	if (!g)
		return;
	HASH_FIND(hh, g->procs, &tgid, sizeof(tgid), p);
	if (!p)
		return;
	b = p->bin;
	HASH_DEL(g->procs, p);
	g->n_procs--;
	free(p);
	if (!b)
		return;
	bpf_map_delete_elem(g->procs_fd, &tgid);
	if (--b->procs)
		return;
	/* its last process: detach, forget (a new start attaches again) */
	bin_detach(b);
	g->st.detached++;
	g->n_attached--;
	for (i = 0; i < g->n_known; i++)
		if (g->known[i] == b) {
			g->known[i] = g->known[--g->n_known];
			break;
		}
	free(b);
}

void ws_gort_sweep(struct ws_gort *g)
{
	struct gproc *p, *tmp;
	char path[32];

	if (!g)
		return;
	HASH_ITER (hh, g->procs, p, tmp) {
		snprintf(path, sizeof(path), "/proc/%u", p->tgid);
		if (access(path, F_OK) && errno == ENOENT) {
			g->st.swept++;
			ws_gort_exit(g, p->tgid);
		}
	}
}

void ws_gort_free(struct ws_gort *g)
{
	struct gproc *p, *tmp;
	unsigned i;

	if (!g)
		return;
	HASH_ITER (hh, g->procs, p, tmp) {
		HASH_DEL(g->procs, p);
		free(p);
	}
	for (i = 0; i < g->n_known; i++) {
		bin_detach(g->known[i]);
		free(g->known[i]);
	}
	free(g);
}

const struct ws_gort_stats *ws_gort_stats(const struct ws_gort *g)
{
	return &g->st;
}
