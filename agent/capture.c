/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `wirespan capture`: loader -> ring buffer -> decoder -> connection table ->
 * reassembly -> JSON lines. The debugging tool users reach for, and the base
 * of the integration tests. Output format: docs/CAPTURE-FORMAT.md.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "capture.h"
#include "cli.h"
#include "conn.h"
#include "events.h"
#include "jsonw.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"

/* How often dead processes' kernel entries are swept. */
#define SWEEP_INTERVAL_NS (5ull * 1000000000ull)
/* ring_buffer__poll timeout: the kernel wakes us only past wakeup_bytes. */
#define POLL_MS 50

struct capture;

/* Sink context of one direction of one connection. */
struct cap_dir {
	struct capture *cap;
	struct ws_conn *c;
	uint8_t dir;
	bool resync; /* followed from the middle: no open record was seen */
	uint64_t captured, gap;
};

struct cap_conn {
	struct cap_dir d[2];
	bool skip; /* --protocol filtered it out */
};

struct capture {
	struct ws_loader *ld;
	struct ring_buffer *rb;
	struct ws_conn_table *conns;
	struct ws_jsonw w;
	FILE *out;
	int proto_filter; /* WS_PROTO_UNKNOWN = all */
	bool summary;
	/* the record being processed, for data lines */
	const struct ws_data *cur;
	struct ws_user_metrics m;
};

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t dump_requested;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		dump_requested = 1;
	else
		stop_requested = 1;
}

static const char *proto_name(uint8_t p)
{
	switch (p) {
	case WS_PROTO_NATS:
		return "nats";
	case WS_PROTO_HTTP:
		return "http";
	case WS_PROTO_OTHER:
		return "other";
	}
	return "unknown";
}

static const char *role_name(uint8_t r)
{
	return r == WS_ROLE_CLIENT   ? "client"
	       : r == WS_ROLE_SERVER ? "server"
				     : "unknown";
}

static const char *const syscall_names[] = {
	"?",	"write", "writev",   "sendto",	"sendmsg",
	"read", "readv", "recvfrom", "recvmsg",
};

static bool is_v4mapped(const uint8_t a[16])
{
	static const uint8_t pfx[12] = {0, 0, 0, 0, 0,	  0,
					0, 0, 0, 0, 0xff, 0xff};

	return memcmp(a, pfx, 12) == 0;
}

static void put_addr(struct ws_jsonw *w, const char *key, const uint8_t a[16],
		     uint16_t family)
{
	char s[INET6_ADDRSTRLEN];

	if (family == WS_AF_INET || is_v4mapped(a))
		inet_ntop(AF_INET, a + 12, s, sizeof(s));
	else
		inet_ntop(AF_INET6, a, s, sizeof(s));
	jw_str(w, key, s);
}

static void put_conn(struct ws_jsonw *w, const char *type,
		     const struct ws_conn *c)
{
	char id[64];

	snprintf(id, sizeof(id), "%u:%d:%llu", c->id.tgid, c->id.fd,
		 (unsigned long long)c->id.gen);
	jw_begin(w);
	jw_str(w, "type", type);
	jw_str(w, "conn", id);
	jw_u64(w, "pid", c->id.tgid);
}

static void emit(struct capture *cap)
{
	if (jw_end(&cap->w, cap->out))
		cap->m.output_errors++;
}

static void print_open(struct capture *cap, struct ws_conn *c)
{
	struct ws_jsonw *w = &cap->w;

	c->announced = true;
	if (cap->summary)
		return;
	put_conn(w, "open", c);
	jw_str(w, "comm", c->comm);
	jw_str(w, "role", role_name(c->role));
	jw_str(w, "proto", proto_name(c->proto));
	jw_str(w, "family", c->tuple.family == WS_AF_INET6 ? "ipv6" : "ipv4");
	put_addr(w, "laddr", c->tuple.laddr, c->tuple.family);
	jw_u64(w, "lport", c->tuple.lport);
	put_addr(w, "raddr", c->tuple.raddr, c->tuple.family);
	jw_u64(w, "rport", c->tuple.rport);
	jw_u64(w, "cgroup", c->cgroup_id);
	jw_bool(w, "preexisting", c->flags & WS_CF_PREEXISTING);
	if (cap->cur)
		jw_u64(w, "ts", cap->cur->hdr.ts_ns);
	emit(cap);
}

static void sink_data(void *ctx, uint64_t offset, const uint8_t *buf,
		      size_t len)
{
	struct cap_dir *d = ctx;
	struct capture *cap = d->cap;
	struct ws_jsonw *w = &cap->w;

	d->captured += len;
	cap->m.data_bytes += len;
	if (cap->summary)
		return;
	put_conn(w, "data", d->c);
	if (cap->cur)
		jw_u64(w, "tid", cap->cur->tid);
	jw_str(w, "comm", d->c->comm);
	jw_str(w, "proto", proto_name(d->c->proto));
	jw_str(w, "dir", d->dir == WS_DIR_EGRESS ? "egress" : "ingress");
	if (cap->cur && cap->cur->syscall < sizeof(syscall_names) /
						    sizeof(syscall_names[0]))
		jw_str(w, "syscall", syscall_names[cap->cur->syscall]);
	jw_u64(w, "offset", offset);
	jw_u64(w, "len", len);
	jw_bytes(w, "data", buf, len);
	if (cap->cur)
		jw_u64(w, "ts", cap->cur->hdr.ts_ns);
	emit(cap);
}

static void sink_gap(void *ctx, uint64_t offset, uint64_t len,
		     enum ws_gap_reason reason)
{
	struct cap_dir *d = ctx;
	struct capture *cap = d->cap;
	struct ws_jsonw *w = &cap->w;

	d->gap += len;
	cap->m.gap_bytes[reason] += len;
	if (cap->summary)
		return;
	put_conn(w, "gap", d->c);
	jw_str(w, "comm", d->c->comm);
	jw_str(w, "proto", proto_name(d->c->proto));
	jw_str(w, "dir", d->dir == WS_DIR_EGRESS ? "egress" : "ingress");
	jw_u64(w, "offset", offset);
	jw_u64(w, "len", len);
	jw_str(w, "reason", ws_gap_reason_name(reason));
	emit(cap);
}

/* Give a new table entry its sinks and bookkeeping. */
static int conn_setup(struct capture *cap, struct ws_conn *c)
{
	struct cap_conn *cc = calloc(1, sizeof(*cc));
	int d;

	if (!cc)
		return -ENOMEM;
	for (d = 0; d < 2; d++) {
		struct ws_stream_sink sink = {
			.ctx = &cc->d[d], .data = sink_data, .gap = sink_gap};

		cc->d[d].cap = cap;
		cc->d[d].c = c;
		cc->d[d].dir = d;
		ws_reasm_init(&c->reasm[d], &sink, WS_REASM_DEFAULT_HELD_BYTES,
			      WS_REASM_DEFAULT_HELD_SEGS);
	}
	c->user = cc;
	return 0;
}

/*
 * Close c: flush both directions up to the kernel's final offsets (or just
 * what is held, when final is NULL) and print the close line. The caller
 * removes it from the table.
 */
static void conn_finish(struct capture *cap, struct ws_conn *c,
			const __u64 *final)
{
	struct cap_conn *cc = c->user;
	struct ws_jsonw *w = &cap->w;
	int d;

	if (!cc)
		return;
	cap->cur = NULL;
	if (c->announced) {
		for (d = 0; d < 2; d++)
			ws_reasm_flush(&c->reasm[d], final ? final[d] : 0);
		put_conn(w, "close", c);
		jw_str(w, "comm", c->comm);
		jw_str(w, "proto", proto_name(c->proto));
		for (d = 0; d < 2; d++) {
			jw_obj_open(w,
				    d == WS_DIR_EGRESS ? "egress" : "ingress");
			jw_u64(w, "bytes",
			       final ? final[d] : c->reasm[d].expected);
			jw_u64(w, "captured", cc->d[d].captured);
			jw_u64(w, "gap", cc->d[d].gap);
			jw_obj_close(w);
		}
		emit(cap);
	}
	for (d = 0; d < 2; d++)
		cap->m.dup_bytes += c->reasm[d].stats.dup_bytes;
	free(cc);
	c->user = NULL;
}

/* Evicted, or its process exited without close records: print what we
 * know; later records of an evicted connection start it again. */
static void finish_cb(struct ws_conn *c, void *ctx)
{
	conn_finish(ctx, c, NULL);
}

/* At shutdown: still-open connections get no close line. */
static void discard_cb(struct ws_conn *c, void *ctx)
{
	struct capture *cap = ctx;
	int d;

	for (d = 0; d < 2; d++)
		ws_reasm_flush(&c->reasm[d], 0);
	c->announced = false;
	conn_finish(cap, c, NULL);
}

static void handle_open(struct capture *cap, const struct ws_conn_open *o)
{
	struct ws_conn *c, *old;
	bool created;

	/* The fd was reused and we missed the old connection's close. */
	old = ws_conn_table_find_fd(cap->conns, o->id.tgid, o->id.fd);
	if (old && old->id.gen != o->id.gen) {
		cap->m.stale_fd_closed++;
		conn_finish(cap, old, NULL);
		ws_conn_table_remove(cap->conns, old);
	}
	c = ws_conn_table_insert(cap->conns, &o->id, &created);
	if (!c || !created)
		return;
	if (conn_setup(cap, c)) {
		ws_conn_table_remove(cap->conns, c);
		return;
	}
	c->tuple = o->tuple;
	c->cgroup_id = o->cgroup_id;
	c->role = o->role;
	c->flags = o->flags;
	memcpy(c->comm, o->comm, sizeof(c->comm));
	c->comm[sizeof(c->comm) - 1] = '\0';
}

static enum ws_gap_reason tail_reason(uint8_t flags)
{
	if (flags & WS_DF_FAULT)
		return WS_GAP_FAULT;
	if (flags & WS_DF_TRUNC_IOV)
		return WS_GAP_IOV;
	return WS_GAP_CAP;
}

static void handle_data(struct capture *cap, const struct ws_data *d,
			const uint8_t *payload)
{
	struct ws_conn *c = ws_conn_table_lookup(cap->conns, &d->id);
	struct cap_conn *cc;

	if (!c) {
		/* Its open record was lost, or it was evicted: follow it
		 * from here, with what we know. */
		bool created;

		cap->m.data_without_open++;
		c = ws_conn_table_insert(cap->conns, &d->id, &created);
		if (!c)
			return;
		if (created && conn_setup(cap, c)) {
			ws_conn_table_remove(cap->conns, c);
			return;
		}
		snprintf(c->comm, sizeof(c->comm), "?");
		cc = c->user;
		if (cc)
			cc->d[0].resync = cc->d[1].resync = true;
	}
	cc = c->user;
	if (!cc)
		return;
	if (cc->d[d->dir].resync) {
		/* What moved before this record is not coming: say so now
		 * rather than holding this record until a bound is hit. */
		cc->d[d->dir].resync = false;
		ws_reasm_gap_to(&c->reasm[d->dir], d->offset, WS_GAP_LOST);
	}
	c->proto = d->proto;
	if (cap->proto_filter != WS_PROTO_UNKNOWN &&
	    d->proto != cap->proto_filter) {
		cap->m.filtered_proto++;
		cc->skip = true;
		return;
	}
	cap->cur = d;
	if (!c->announced)
		print_open(cap, c);
	ws_reasm_push(&c->reasm[d->dir], d->offset, payload, d->cap_len,
		      d->syscall_len, tail_reason(d->flags),
		      d->flags & WS_DF_CLASSIFY);
	cap->cur = NULL;
}

static void handle_close(struct capture *cap, const struct ws_conn_close *e)
{
	struct ws_conn *c = ws_conn_table_lookup(cap->conns, &e->id);

	if (!c) {
		cap->m.close_without_open++;
		return;
	}
	conn_finish(cap, c, e->bytes);
	ws_conn_table_remove(cap->conns, c);
}

/* A kernel entry of a process that is gone: close it with its offsets. */
static void kernel_entry_gone(const struct ws_conn_state *st, void *ctx)
{
	struct capture *cap = ctx;
	struct ws_conn *c = ws_conn_table_lookup(cap->conns, &st->id);

	if (!c)
		return;
	cap->m.proc_exit_closed++;
	conn_finish(cap, c, st->offset);
	ws_conn_table_remove(cap->conns, c);
}

static void handle_proc_exit(struct capture *cap, uint32_t tgid)
{
	ws_loader_take_tgid(cap->ld, tgid, kernel_entry_gone, cap);
	/* Anything left had no kernel entry any more: flush what we have. */
	cap->m.proc_exit_closed +=
		ws_conn_table_remove_tgid(cap->conns, tgid, finish_cb, cap);
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct capture *cap = ctx;
	enum ws_decode_err err;
	struct ws_event ev;

	cap->m.records++;
	err = ws_event_decode(data, size, &ev);
	if (err != WS_DEC_OK) {
		cap->m.decode_err[err]++;
		return 0;
	}
	cap->m.by_type[ev.type]++;
	switch (ev.type) {
	case WS_EV_CONN_OPEN:
		handle_open(cap, ev.open);
		break;
	case WS_EV_DATA:
		handle_data(cap, ev.data, ev.payload);
		break;
	case WS_EV_CONN_CLOSE:
		handle_close(cap, ev.close);
		break;
	case WS_EV_PROC_EXIT:
		handle_proc_exit(cap, ev.exit->tgid);
		break;
	}
	return 0;
}

static void print_metrics(struct capture *cap)
{
	uint64_t k[WS_C_MAX] = {0};
	struct ws_conn_table_stats ct;

	ws_loader_counters(cap->ld, k);
	ws_conn_table_stats(cap->conns, &ct);
	ws_metrics_print(stderr, k, &cap->m, &ct);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static const char capture_usage[] =
	"usage: wirespan capture [options]\n"
	"\n"
	"Print the bytes of every NATS and HTTP/1.x connection on this host "
	"as\n"
	"JSON lines (docs/CAPTURE-FORMAT.md). Needs root (or CAP_BPF,\n"
	"CAP_PERFMON, CAP_SYS_RESOURCE). SIGUSR1 prints metrics to stderr.\n"
	"\n"
	"  -p, --pid PID           only processes with this pid (repeatable)\n"
	"  -P, --port PORT         only connections with this local or remote "
	"port\n"
	"                          (repeatable)\n"
	"  -c, --cgroup ID         only processes in this cgroup id "
	"(repeatable)\n"
	"  -r, --protocol PROTO    only nats or http\n"
	"  -m, --max-capture N     bytes copied per syscall (default 16384, "
	"max 32768)\n"
	"  -b, --ringbuf-size N    ring buffer bytes, a power of two (default "
	"16 MiB)\n"
	"  -s, --summary           print only open and close lines\n"
	"  -d, --duration SECS     stop after SECS seconds\n"
	"  -v, --verbose           more diagnostics (twice: libbpf debug)\n"
	"  -h, --help              this help\n";

static int parse_capture_args(int argc, char **argv, struct ws_loader_opts *lo,
			      struct capture *cap, double *duration)
{
	static const struct option longopts[] = {
		{"pid", required_argument, NULL, 'p'},
		{"port", required_argument, NULL, 'P'},
		{"cgroup", required_argument, NULL, 'c'},
		{"protocol", required_argument, NULL, 'r'},
		{"max-capture", required_argument, NULL, 'm'},
		{"ringbuf-size", required_argument, NULL, 'b'},
		{"summary", no_argument, NULL, 's'},
		{"duration", required_argument, NULL, 'd'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	uint64_t v;
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "p:P:c:r:m:b:sd:vh", longopts,
				  NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (ws_cli_u64(optarg, 1, UINT32_MAX, &v) ||
			    lo->n_pids >= WS_MAX_FILTER)
				return ws_cli_bad(capture_usage, "--pid",
						  optarg);
			lo->pids[lo->n_pids++] = (uint32_t)v;
			break;
		case 'P':
			if (ws_cli_u64(optarg, 1, 65535, &v) ||
			    lo->n_ports >= WS_MAX_FILTER)
				return ws_cli_bad(capture_usage, "--port",
						  optarg);
			lo->ports[lo->n_ports++] = (uint16_t)v;
			break;
		case 'c':
			if (ws_cli_u64(optarg, 1, UINT64_MAX, &v) ||
			    lo->n_cgroups >= WS_MAX_FILTER)
				return ws_cli_bad(capture_usage, "--cgroup",
						  optarg);
			lo->cgroups[lo->n_cgroups++] = v;
			break;
		case 'r':
			if (!strcmp(optarg, "nats"))
				cap->proto_filter = WS_PROTO_NATS;
			else if (!strcmp(optarg, "http"))
				cap->proto_filter = WS_PROTO_HTTP;
			else
				return ws_cli_bad(capture_usage, "--protocol",
						  optarg);
			break;
		case 'm':
			if (ws_cli_u64(optarg, 1, WS_MAX_CAPTURE, &v))
				return ws_cli_bad(capture_usage,
						  "--max-capture", optarg);
			lo->max_capture = (uint32_t)v;
			break;
		case 'b':
			if (ws_cli_u64(optarg, 4096, 1u << 30, &v) ||
			    (v & (v - 1)))
				return ws_cli_bad(capture_usage,
						  "--ringbuf-size", optarg);
			lo->ringbuf_size = (uint32_t)v;
			break;
		case 's':
			cap->summary = true;
			break;
		case 'd':
			if (ws_cli_u64(optarg, 1, 86400 * 365, &v))
				return ws_cli_bad(capture_usage, "--duration",
						  optarg);
			*duration = (double)v;
			break;
		case 'v':
			ws_log_level = ws_log_level < WS_LOG_INFO
					       ? WS_LOG_INFO
					       : WS_LOG_DEBUG;
			break;
		case 'h':
			fputs(capture_usage, stdout);
			return 1;
		default:
			return ws_cli_unknown(capture_usage, argv[optind - 1]);
		}
	}
	if (optind < argc)
		return ws_cli_unknown(capture_usage, argv[optind]);
	return 0;
}

int cmd_capture(int argc, char **argv)
{
	struct ws_loader_opts lo = {
		.max_capture = WS_DEFAULT_CAPTURE,
		.ringbuf_size = WS_DEFAULT_RINGBUF,
	};
	struct capture cap = {.out = stdout};
	struct sigaction sa = {.sa_handler = on_signal};
	uint64_t deadline = 0, next_sweep;
	double duration = 0;
	char why[256];
	int err, rc = 0;

	err = parse_capture_args(argc, argv, &lo, &cap, &duration);
	if (err)
		return err > 0 ? 0 : WS_EXIT_USAGE;
	if (ws_loader_probe(why, sizeof(why))) {
		fprintf(stderr,
			"wirespan: this kernel cannot run the capture: %s\n",
			why);
		return WS_EXIT_UNSUPPORTED;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	jw_init(&cap.w);
	cap.conns =
		ws_conn_table_new(WS_CONN_TABLE_DEFAULT_MAX, finish_cb, &cap);
	if (!cap.conns) {
		ws_err("out of memory");
		return 1;
	}
	err = ws_loader_open(&cap.ld, &lo);
	if (err) {
		fprintf(stderr, "wirespan: could not start the capture: %s\n",
			strerror(-err));
		rc = err == -ENOTSUP ? WS_EXIT_UNSUPPORTED : 1;
		goto out;
	}
	cap.rb = ring_buffer__new(ws_loader_ringbuf_fd(cap.ld), on_record, &cap,
				  NULL);
	if (!cap.rb) {
		ws_err("ring buffer: %s", strerror(errno));
		rc = 1;
		goto out;
	}
	fprintf(stderr, "wirespan capture: %u programs attached, ready\n",
		ws_loader_attached(cap.ld));
	fflush(stderr);
	next_sweep = now_ns() + SWEEP_INTERVAL_NS;
	if (duration > 0)
		deadline = now_ns() + (uint64_t)(duration * 1e9);
	while (!stop_requested) {
		uint64_t now;

		err = ring_buffer__poll(cap.rb, POLL_MS);
		if (err < 0 && err != -EINTR) {
			ws_err("polling the ring buffer: %s", strerror(-err));
			rc = 1;
			break;
		}
		/* Records submitted without a wakeup wait for us here. */
		ring_buffer__consume(cap.rb);
		fflush(cap.out);
		if (dump_requested) {
			dump_requested = 0;
			print_metrics(&cap);
		}
		now = now_ns();
		if (now >= next_sweep) {
			cap.m.swept += ws_loader_sweep(cap.ld,
						       kernel_entry_gone, &cap);
			next_sweep = now + SWEEP_INTERVAL_NS;
		}
		if (deadline && now >= deadline)
			break;
	}
	ring_buffer__consume(cap.rb);
	fflush(cap.out);
	print_metrics(&cap);
out:
	ring_buffer__free(cap.rb);
	ws_loader_close(cap.ld);
	ws_conn_table_clear(cap.conns, discard_cb, &cap);
	ws_conn_table_free(cap.conns);
	jw_free(&cap.w);
	fflush(cap.out);
	return rc;
}
