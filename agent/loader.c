/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "loader.h"
#include "log.h"
#include "wirespan.skel.h"

/* Tracepoints the capture cannot work without; the rest are optional. */
static const char *const required_tps[] = {
	"syscalls/sys_enter_write",  "syscalls/sys_exit_write",
	"syscalls/sys_enter_read",   "syscalls/sys_exit_read",
	"syscalls/sys_enter_close",  "syscalls/sys_enter_connect",
	"syscalls/sys_exit_accept4",
};

static const char *const tracefs_roots[] = {
	"/sys/kernel/tracing",
	"/sys/kernel/debug/tracing",
};

struct ws_loader {
	struct wirespan_bpf *skel;
	struct bpf_link **links;
	unsigned n_links;
	int ncpus;
	bool task_storage;
	bool rdonly_cast;     /* the tp_enter_* programs, not tpr_enter_* */
	bool go_on;	      /* the Go runtime programs are loaded */
	uint64_t listen_full; /* listening ports the loader could not add */
};

static int libbpf_print(enum libbpf_print_level level, const char *fmt,
			va_list ap)
{
	/* libbpf's warnings (verifier logs included) matter when load fails;
	 * its info and debug chatter only with --verbose. */
	if (level == LIBBPF_DEBUG && ws_log_level < WS_LOG_DEBUG)
		return 0;
	if (level == LIBBPF_INFO && ws_log_level < WS_LOG_INFO)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* The tracefs events directory, mounting tracefs if nothing has yet. */
static const char *tracefs_events(void)
{
	static char path[64];
	struct stat st;
	size_t i;

	for (i = 0; i < sizeof(tracefs_roots) / sizeof(tracefs_roots[0]); i++) {
		snprintf(path, sizeof(path), "%s/events", tracefs_roots[i]);
		if (stat(path, &st) == 0)
			return path;
	}
	/* libbpf resolves tracepoint ids through tracefs: mount it. */
	if (mount("nodev", "/sys/kernel/tracing", "tracefs", 0, NULL) == 0) {
		snprintf(path, sizeof(path), "/sys/kernel/tracing/events");
		if (stat(path, &st) == 0)
			return path;
	}
	return NULL;
}

static bool tracepoint_exists(const char *events, const char *tp)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", events, tp);
	return stat(path, &st) == 0;
}

int ws_loader_probe(char *why, size_t why_len)
{
	const char *events;
	struct stat st;
	size_t i;

	if (stat("/sys/kernel/btf/vmlinux", &st) != 0) {
		snprintf(why, why_len,
			 "kernel BTF (/sys/kernel/btf/vmlinux) is missing: "
			 "wirespan needs CONFIG_DEBUG_INFO_BTF=y");
		return -ENOTSUP;
	}
	if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_TRACEPOINT, NULL) <= 0) {
		snprintf(why, why_len,
			 "BPF tracepoint programs are not available "
			 "(need CONFIG_BPF_EVENTS=y and CAP_BPF+CAP_PERFMON "
			 "or root)");
		return -ENOTSUP;
	}
	if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL) <= 0) {
		snprintf(why, why_len,
			 "BPF ring buffer maps are not available "
			 "(need Linux 5.8 or newer)");
		return -ENOTSUP;
	}
	events = tracefs_events();
	if (!events) {
		snprintf(why, why_len,
			 "tracefs is not mounted and could not be mounted at "
			 "/sys/kernel/tracing");
		return -ENOTSUP;
	}
	for (i = 0; i < sizeof(required_tps) / sizeof(required_tps[0]); i++) {
		if (!tracepoint_exists(events, required_tps[i])) {
			snprintf(why, why_len,
				 "tracepoint %s is missing (need "
				 "CONFIG_FTRACE_SYSCALLS=y)",
				 required_tps[i]);
			return -ENOTSUP;
		}
	}
	return 0;
}

/* Ports with a listener now, so that sockets accepted before we started are
 * recognised as server side. */
static void load_listen_ports(struct ws_loader *l)
{
	static const char *const files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	int fd = bpf_map__fd(l->skel->maps.listen_ports);
	char line[512];
	__u8 one = 1;
	size_t i;

	for (i = 0; i < 2; i++) {
		FILE *f = fopen(files[i], "r");

		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			unsigned port, state;
			char *colon = strchr(line, ':');

			/* "  0: 0100007F:1092 00000000:0000 0A ..." */
			if (!colon || !(colon = strchr(colon + 1, ':')))
				continue;
			if (sscanf(colon + 1, "%x %*s %x", &port, &state) != 2)
				continue;
			if (state == 0x0A) {
				__u16 p = port;

				if (bpf_map_update_elem(fd, &p, &one, BPF_ANY))
					l->listen_full++;
			}
		}
		fclose(f);
	}
}

static int fill_filters(struct ws_loader *l, const struct ws_loader_opts *o)
{
	__u8 one = 1;
	unsigned i;
	int err = 0;

	for (i = 0; i < o->n_pids && !err; i++)
		err = bpf_map__update_elem(l->skel->maps.filter_pids,
					   &o->pids[i], sizeof(o->pids[i]),
					   &one, 1, BPF_ANY);
	for (i = 0; i < o->n_ports && !err; i++)
		err = bpf_map__update_elem(l->skel->maps.filter_ports,
					   &o->ports[i], sizeof(o->ports[i]),
					   &one, 1, BPF_ANY);
	for (i = 0; i < o->n_cgroups && !err; i++)
		err = bpf_map__update_elem(
			l->skel->maps.filter_cgroups, &o->cgroups[i],
			sizeof(o->cgroups[i]), &one, 1, BPF_ANY);
	return err;
}

static int attach_all(struct ws_loader *l)
{
	struct bpf_program *prog;
	unsigned n = 0;

	bpf_object__for_each_program (prog, l->skel->obj)
		n++;
	l->links = calloc(n, sizeof(*l->links));
	if (!l->links)
		return -ENOMEM;
	bpf_object__for_each_program (prog, l->skel->obj) {
		struct bpf_link *link;

		/* uprobes are attached per binary (gort.c) */
		if (!bpf_program__autoload(prog) ||
		    !strncmp(bpf_program__section_name(prog), "uprobe", 6))
			continue;
		link = bpf_program__attach(prog);
		if (!link) {
			int err = -errno;

			ws_err("attaching %s failed: %s",
			       bpf_program__name(prog), strerror(-err));
			return err;
		}
		l->links[l->n_links++] = link;
	}
	return 0;
}

/* Go runtime evidence (gort.c): uprobe programs, and tracepoints that may
 * read the user registers of the task. Without them the Go programs are not
 * loaded and data records carry no goroutine. */
static void go_probe(struct ws_loader *l)
{
	l->go_on = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_KPROBE, NULL) > 0 &&
		   libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT,
					   BPF_FUNC_task_pt_regs, NULL) > 0 &&
		   libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT,
					   BPF_FUNC_get_current_task_btf,
					   NULL) > 0 &&
		   !getenv("WIRESPAN_NO_GO_PROBES");
	if (!l->go_on)
		ws_info("Go runtime evidence unavailable: the kernel lacks "
			"uprobe programs or bpf_task_pt_regs (or "
			"WIRESPAN_NO_GO_PROBES is set)");
}

struct bpf_object *ws_loader_go_object(const struct ws_loader *l)
{
	return l && l->go_on ? l->skel->obj : NULL;
}

/* Does the running kernel's BTF name this kfunc? */
static bool kernel_has_kfunc(const char *name)
{
	struct btf *btf = btf__load_vmlinux_btf();
	bool found;

	if (!btf)
		return false;
	found = btf__find_by_name_kind(btf, name, BTF_KIND_FUNC) > 0;
	btf__free(btf);
	return found;
}

/* The data syscalls' enter programs come twice (bpf/wirespan.bpf.c, "fd
 * walk"): tp_enter_X loads through bpf_rdonly_cast, tpr_enter_X reads with
 * helpers. Load one of each pair. */
static void pick_enter_programs(struct ws_loader *l, bool cast)
{
	struct bpf_program *prog, *twin;
	char name[64];

	bpf_object__for_each_program (prog, l->skel->obj) {
		const char *n = bpf_program__name(prog);

		if (strncmp(n, "tpr_enter_", 10))
			continue;
		snprintf(name, sizeof(name), "tp_enter_%s", n + 10);
		twin = bpf_object__find_program_by_name(l->skel->obj, name);
		if (!twin)
			continue;
		bpf_program__set_autoload(cast ? prog : twin, false);
	}
}

/* Open and load the BPF object; cast: the enter programs that use
 * bpf_rdonly_cast. */
static int open_and_load(struct ws_loader *l, const struct ws_loader_opts *opts,
			 const char *events, bool cast)
{
	struct bpf_program *prog;
	int err;

	l->skel = wirespan_bpf__open();
	if (!l->skel) {
		err = -errno;
		ws_err("opening the BPF object failed: %s", strerror(-err));
		return err;
	}
	l->skel->rodata->self_tgid = getpid();
	l->skel->rodata->max_capture = opts->max_capture;
	l->skel->rodata->max_records =
		opts->max_records ? opts->max_records : WS_DEFAULT_RECORDS;
	l->skel->rodata->wakeup_bytes = opts->ringbuf_size / 8;
	l->skel->rodata->filter_pids_on = opts->n_pids > 0;
	l->skel->rodata->filter_ports_on = opts->n_ports > 0;
	l->skel->rodata->filter_cgroups_on = opts->n_cgroups > 0;
	l->skel->rodata->use_task_storage = l->task_storage;
	if (!l->task_storage)
		bpf_map__set_autocreate(l->skel->maps.args_task, false);
	pick_enter_programs(l, cast);
	l->skel->rodata->go_on = l->go_on;
	if (!l->go_on) {
		bpf_program__set_autoload(l->skel->progs.go_round_trip, false);
		bpf_program__set_autoload(l->skel->progs.go_req_write, false);
	}
	bpf_map__set_max_entries(l->skel->maps.rb, opts->ringbuf_size);
	bpf_map__set_max_entries(l->skel->maps.scratch, l->ncpus);

	/* Optional tracepoints this kernel lacks are skipped, not fatal. */
	bpf_object__for_each_program (prog, l->skel->obj) {
		const char *sec = bpf_program__section_name(prog);
		const char *tp = strchr(sec, '/');

		if (tp && !tracepoint_exists(events, tp + 1)) {
			if (bpf_program__autoload(prog))
				ws_warn("tracepoint %s not available: skipped",
					tp + 1);
			bpf_program__set_autoload(prog, false);
		}
	}
	err = wirespan_bpf__load(l->skel);
	if (err)
		ws_err("loading the BPF programs failed: %s", strerror(-err));
	return err;
}

int ws_loader_open(struct ws_loader **out, const struct ws_loader_opts *opts)
{
	struct ws_loader *l;
	const char *events;
	bool cast;
	int err;

	*out = NULL;
	libbpf_set_print(libbpf_print);
	events = tracefs_events();
	if (!events)
		return -ENOTSUP;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->ncpus = libbpf_num_possible_cpus();
	if (l->ncpus <= 0) {
		err = -EINVAL;
		goto fail;
	}
	/* Task-local storage for syscall arguments where tracepoint programs
	 * may use it; the hash map otherwise. */
	l->task_storage =
		libbpf_probe_bpf_map_type(BPF_MAP_TYPE_TASK_STORAGE, NULL) >
			0 &&
		libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT,
					BPF_FUNC_task_storage_get, NULL) > 0 &&
		libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT,
					BPF_FUNC_get_current_task_btf,
					NULL) > 0 &&
		!getenv("WIRESPAN_NO_TASK_STORAGE");
	ws_info("syscall arguments kept in %s",
		l->task_storage ? "task storage" : "a hash map");
	go_probe(l);
	/* Direct loads in the fd walk where the kernel has bpf_rdonly_cast;
	 * if the programs that use it do not load, the helper-read ones. */
	cast = kernel_has_kfunc("bpf_rdonly_cast") &&
	       !getenv("WIRESPAN_NO_RDONLY_CAST");
	err = open_and_load(l, opts, events, cast);
	if (err && (cast || l->go_on)) {
		ws_warn("the BPF programs did not load with%s%s: retrying "
			"without",
			cast ? " the bpf_rdonly_cast fd walk" : "",
			l->go_on ? " the Go runtime probes" : "");
		wirespan_bpf__destroy(l->skel);
		l->skel = NULL;
		cast = false;
		l->go_on = false;
		err = open_and_load(l, opts, events, cast);
	}
	if (err)
		goto fail;
	l->rdonly_cast = cast;
	ws_info("fd walk: %s",
		cast ? "direct loads (bpf_rdonly_cast)" : "helper reads");
	err = fill_filters(l, opts);
	if (err) {
		ws_err("setting filters failed: %s", strerror(-err));
		goto fail;
	}
	load_listen_ports(l);
	err = attach_all(l);
	if (err)
		goto fail;
	*out = l;
	return 0;
fail:
	ws_loader_close(l);
	return err;
}

void ws_loader_close(struct ws_loader *l)
{
	unsigned i;

	if (!l)
		return;
	for (i = 0; i < l->n_links; i++)
		bpf_link__destroy(l->links[i]);
	free(l->links);
	wirespan_bpf__destroy(l->skel);
	free(l);
}

int ws_loader_ringbuf_fd(const struct ws_loader *l)
{
	return bpf_map__fd(l->skel->maps.rb);
}

unsigned ws_loader_attached(const struct ws_loader *l)
{
	return l->n_links;
}

int ws_loader_counters(const struct ws_loader *l, uint64_t out[WS_C_MAX])
{
	int fd = bpf_map__fd(l->skel->maps.counters);
	struct ws_counters *vals;
	__u32 zero = 0;
	int c, k;

	memset(out, 0, sizeof(uint64_t) * WS_C_MAX);
	vals = calloc(l->ncpus, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	if (bpf_map_lookup_elem(fd, &zero, vals) == 0)
		for (c = 0; c < l->ncpus; c++)
			for (k = 0; k < WS_C_MAX; k++)
				out[k] += vals[c].v[k];
	free(vals);
	out[WS_C_LISTEN_MAP_FULL] += l->listen_full;
	return 0;
}

int ws_loader_take_conn(struct ws_loader *l, const struct ws_conn_id *id,
			struct ws_conn_state *st)
{
	int fd = bpf_map__fd(l->skel->maps.conns);
	struct ws_fd_key key = {.tgid = id->tgid, .fd = id->fd};

	if (bpf_map_lookup_elem(fd, &key, st))
		return -ENOENT;
	if (st->id.gen != id->gen)
		return -ESTALE; /* the fd's next connection: not ours */
	bpf_map_delete_elem(fd, &key);
	return 0;
}

/* Keys in use of a hash map, by walking them (no kernel-side count before
 * bpf_map_sum_elem_count, which only iterators may call). */
static uint32_t map_entries(const struct bpf_map *m)
{
	uint8_t key[64], next[64];
	int fd = bpf_map__fd(m);
	uint32_t n = 0;
	void *prev = NULL;

	if (fd < 0 || bpf_map__key_size(m) > sizeof(key))
		return 0;
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, bpf_map__key_size(m));
		prev = key;
		n++;
	}
	return n;
}

size_t ws_loader_map_usage(const struct ws_loader *l, struct ws_map_usage *out,
			   size_t cap)
{
	const struct bpf_map *maps[] = {
		l->skel->maps.conns,	    l->skel->maps.args,
		l->skel->maps.listen_ports, l->skel->maps.filter_ports,
		l->skel->maps.filter_pids,  l->skel->maps.filter_cgroups,
	};
	size_t i, n = 0;

	for (i = 0; i < sizeof(maps) / sizeof(maps[0]) && n < cap; i++) {
		out[n].name = bpf_map__name(maps[i]);
		out[n].entries = map_entries(maps[i]);
		out[n].max_entries = bpf_map__max_entries(maps[i]);
		n++;
	}
	return n;
}

/* Walk the conns map, deleting entries for which pick() says so. Keys are
 * collected first: deleting while iterating would restart the walk. */
static int take_where(struct ws_loader *l, bool (*pick)(__u32 tgid, void *arg),
		      void *arg,
		      void (*cb)(const struct ws_conn_state *st, void *ctx),
		      void *ctx)
{
	int fd = bpf_map__fd(l->skel->maps.conns);
	struct ws_fd_key key, next, *victims = NULL;
	struct ws_conn_state st;
	size_t n = 0, cap = 0, i;
	void *prev = NULL;
	int removed = 0;

	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (!pick(key.tgid, arg))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct ws_fd_key *nv =
				realloc(victims, ncap * sizeof(*nv));

			if (!nv)
				break;
			victims = nv;
			cap = ncap;
		}
		victims[n++] = key;
	}
	for (i = 0; i < n; i++) {
		if (bpf_map_lookup_elem(fd, &victims[i], &st))
			continue;
		if (cb && !(st.flags & WS_SF_IGNORED))
			cb(&st, ctx);
		if (bpf_map_delete_elem(fd, &victims[i]) == 0)
			removed++;
	}
	free(victims);
	return removed;
}

static bool pick_dead(__u32 tgid, void *arg)
{
	return kill((pid_t)tgid, 0) != 0 && errno == ESRCH;
}

int ws_loader_ignore_conn(struct ws_loader *l, const struct ws_conn_id *id)
{
	int fd = bpf_map__fd(l->skel->maps.conns);
	struct ws_fd_key key = {.tgid = id->tgid, .fd = id->fd};
	struct ws_conn_state st;

	if (bpf_map_lookup_elem(fd, &key, &st))
		return -errno;
	if (st.id.gen != id->gen)
		return -ENOENT;
	/* Offsets the programs add between the lookup and the update may be
	 * lost: the connection is not followed any more, so nothing reads
	 * them but its close, which the pipeline no longer accounts. */
	st.flags |= WS_SF_IGNORED;
	if (bpf_map_update_elem(fd, &key, &st, BPF_EXIST))
		return -errno;
	return 0;
}

int ws_loader_sweep(struct ws_loader *l,
		    void (*cb)(const struct ws_conn_state *st, void *ctx),
		    void *ctx)
{
	return take_where(l, pick_dead, NULL, cb, ctx);
}
