/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `wirespan capture`: loader -> ring buffer -> decoder -> connection table ->
 * reassembly -> JSON lines. The debugging tool users reach for, and the base
 * of the integration tests. Output format: docs/CAPTURE-FORMAT.md.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "cli.h"
#include "jsonw.h"
#include "log.h"
#include "pipeline.h"

struct capture {
	struct ws_pipeline *p;
	struct ws_jsonw w;
	FILE *out;
	int proto_filter; /* WS_PROTO_UNKNOWN = all */
	bool summary;
};

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

static void put_addr(struct ws_jsonw *w, const char *key, const uint8_t a[16],
		     uint16_t family)
{
	char text[INET6_ADDRSTRLEN];

	ws_addr_text(a, family, text, sizeof(text));
	jw_str(w, key, text);
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
		cap->p->m.output_errors++;
}

static void on_ready(void *ctx, struct ws_pipeline *p, unsigned programs)
{
	struct capture *cap = ctx;

	cap->p = p;
	ws_pipeline_say_ready("capture", programs);
}

static bool on_open(void *ctx, struct ws_conn *c)
{
	struct capture *cap = ctx;
	const struct ws_data *cur = cap->p->cur;
	struct ws_jsonw *w = &cap->w;

	if (cap->proto_filter != WS_PROTO_UNKNOWN &&
	    c->proto != cap->proto_filter)
		return false;
	put_conn(w, "open", c);
	if (cur)
		jw_u64(w, "tid", cur->tid);
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
	if (cur)
		jw_u64(w, "ts", cur->hdr.ts_ns);
	emit(cap);
	return true;
}

static void on_data(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		    const uint8_t *buf, size_t len)
{
	struct capture *cap = ctx;
	const struct ws_data *cur = cap->p->cur;
	struct ws_jsonw *w = &cap->w;

	if (cap->summary)
		return;
	put_conn(w, "data", c);
	if (cur)
		jw_u64(w, "tid", cur->tid);
	jw_str(w, "comm", c->comm);
	jw_str(w, "proto", proto_name(c->proto));
	jw_str(w, "dir", dir == WS_DIR_EGRESS ? "egress" : "ingress");
	if (cur &&
	    cur->syscall < sizeof(syscall_names) / sizeof(syscall_names[0]))
		jw_str(w, "syscall", syscall_names[cur->syscall]);
	jw_u64(w, "offset", offset);
	jw_u64(w, "len", len);
	jw_bytes(w, "data", buf, len);
	if (cur)
		jw_u64(w, "ts", cur->hdr.ts_ns);
	emit(cap);
}

static void on_gap(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		   uint64_t len, enum ws_gap_reason reason)
{
	struct capture *cap = ctx;
	struct ws_jsonw *w = &cap->w;

	if (cap->summary)
		return;
	put_conn(w, "gap", c);
	jw_str(w, "comm", c->comm);
	jw_str(w, "proto", proto_name(c->proto));
	jw_str(w, "dir", dir == WS_DIR_EGRESS ? "egress" : "ingress");
	jw_u64(w, "offset", offset);
	jw_u64(w, "len", len);
	jw_str(w, "reason", ws_gap_reason_name(reason));
	jw_u64(w, "ts", cap->p->cur ? cap->p->cur->hdr.ts_ns : cap->p->rec_ts);
	emit(cap);
}

static const char *const close_why_names[] = {
	[WS_CLOSE_CLOSED] = "closed",
	[WS_CLOSE_EXITED] = "exited",
	[WS_CLOSE_EVICTED] = "evicted",
	[WS_CLOSE_SHUTDOWN] = "shutdown",
};

static void on_close(void *ctx, struct ws_conn *c, const uint64_t *final,
		     enum ws_close_why why)
{
	struct capture *cap = ctx;
	struct ws_pconn *pc = ws_pconn_of(c);
	struct ws_jsonw *w = &cap->w;
	int d;

	/* Still open when we stop: it did not close. */
	if (why == WS_CLOSE_SHUTDOWN)
		return;
	put_conn(w, "close", c);
	jw_str(w, "comm", c->comm);
	jw_str(w, "proto", proto_name(c->proto));
	jw_str(w, "why", close_why_names[why]);
	for (d = 0; d < 2; d++) {
		jw_obj_open(w, d == WS_DIR_EGRESS ? "egress" : "ingress");
		jw_u64(w, "bytes", final ? final[d] : c->reasm[d].expected);
		jw_u64(w, "captured", pc->d[d].captured);
		jw_u64(w, "gap", pc->d[d].gap);
		jw_obj_close(w);
	}
	jw_u64(w, "ts", cap->p->rec_ts);
	emit(cap);
}

static void on_tick(void *ctx, uint64_t now_ns)
{
	struct capture *cap = ctx;

	fflush(cap->out);
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
	"  -m, --max-capture N     bytes copied per record (default 32768, "
	"max 32768)\n"
	"      --max-records N     records one syscall's bytes may fill "
	"(default 8,\n"
	"                          max 16): up to N x max-capture bytes per "
	"syscall\n"
	"  -b, --ringbuf-size N    ring buffer bytes, a power of two (default "
	"8 MiB)\n"
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
		{"max-records", required_argument, NULL, 'M'},
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
		case 'M':
			if (ws_cli_u64(optarg, 1, WS_MAX_RECORDS, &v))
				return ws_cli_bad(capture_usage,
						  "--max-records", optarg);
			lo->max_records = (uint32_t)v;
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
	static const struct ws_pipeline_ops ops = {
		.open = on_open,
		.data = on_data,
		.gap = on_gap,
		.close = on_close,
		.tick = on_tick,
		.ready = on_ready,
	};
	struct capture cap = {.out = stdout};
	struct ws_pipeline_opts o;
	int err, rc;

	ws_pipeline_opts_init(&o);
	err = parse_capture_args(argc, argv, &o.lo, &cap, &o.duration);
	if (err)
		return err > 0 ? 0 : WS_EXIT_USAGE;
	jw_init(&cap.w);
	rc = ws_pipeline_run(&o, &ops, &cap);
	fflush(cap.out);
	jw_free(&cap.w);
	return rc;
}
