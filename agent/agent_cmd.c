/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `wirespan agent`: the capture pipeline feeding the protocol span builders,
 * spans written as OTLP/JSON lines (--output stdout). NATS export comes with
 * the export issue.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent_cmd.h"
#include "cli.h"
#include "enrich.h"
#include "identity.h"
#include "jsonw.h"
#include "log.h"
#include "nats_spans.h"
#include "otlp_json.h"
#include "pipeline.h"

/* Spans written per OTLP/JSON line at most. */
#define BATCH_MAX 64

struct agent {
	struct ws_pipeline *p;
	struct ws_identity *ids; /* en.ids */
	struct ws_enrich en;
	struct ws_nats_spans *nats;
	FILE *out;
	struct ws_span *batch[BATCH_MAX];
	size_t n_batch;
	uint64_t spans_out, write_errors;
	/* what the span bounds cut, summed over every span written: the
	 * per-span counts also travel in OTLP's dropped_* fields */
	uint64_t attrs_dropped, attrs_cut, links_dropped, events_dropped;
	uint64_t last_ts; /* unix ns of the last record seen */
};

static void flush_batch(struct agent *ag)
{
	size_t i;

	if (!ag->n_batch)
		return;
	if (ws_otlp_json_write(ag->out, ag->batch, ag->n_batch))
		ag->write_errors += ag->n_batch;
	else
		ag->spans_out += ag->n_batch;
	for (i = 0; i < ag->n_batch; i++) {
		const struct ws_span *s = ag->batch[i];

		ag->attrs_dropped += s->a.dropped;
		ag->attrs_cut += s->a.cut;
		ag->links_dropped += s->dropped_links;
		ag->events_dropped += s->dropped_events;
		ws_span_free(ag->batch[i]);
	}
	ag->n_batch = 0;
	fflush(ag->out);
}

static void on_span(void *ctx, struct ws_span *s)
{
	struct agent *ag = ctx;

	ag->batch[ag->n_batch++] = s;
	if (ag->n_batch == BATCH_MAX)
		flush_batch(ag);
}

/* Unix ns of the record being delivered (or the last one). */
static uint64_t rec_ts(struct agent *ag)
{
	if (ag->p->cur)
		ag->last_ts = ws_pipeline_unix_ns(ag->p, ag->p->cur->hdr.ts_ns);
	return ag->last_ts;
}

static void on_ready(void *ctx, struct ws_pipeline *p, unsigned programs)
{
	struct agent *ag = ctx;

	ag->p = p;
	ws_pipeline_say_ready("agent", programs);
}

static bool on_open(void *ctx, struct ws_conn *c)
{
	struct agent *ag = ctx;
	struct ws_nats_conn_info info = {0};
	struct ws_pconn *pc = ws_pconn_of(c);

	/* PROTOCOL-ADD: the HTTP span builder plugs in here. */
	if (c->proto != WS_PROTO_NATS)
		return false;
	info.tgid = c->id.tgid;
	info.fd = c->id.fd;
	info.role = c->role;
	info.preexisting = c->flags & WS_CF_PREEXISTING;
	ws_addr_text(c->tuple.laddr, c->tuple.family, info.laddr,
		     sizeof(info.laddr));
	ws_addr_text(c->tuple.raddr, c->tuple.family, info.raddr,
		     sizeof(info.raddr));
	info.lport = c->tuple.lport;
	info.rport = c->tuple.rport;
	info.resource = ws_enrich_resource(&ag->en, c);
	info.peer = ws_enrich_peer(&ag->en, c);
	pc->app = ws_nats_conn_new(ag->nats, &info);
	ws_resource_put(info.resource);
	ws_resource_put(info.peer);
	return pc->app != NULL;
}

static void on_data(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		    const uint8_t *buf, size_t len)
{
	struct agent *ag = ctx;
	struct ws_pconn *pc = ws_pconn_of(c);
	uint64_t ts = rec_ts(ag);
	uint32_t tid = ag->p->cur ? ag->p->cur->tid : c->id.tgid;

	ws_nats_conn_feed(pc->app, dir, buf, len, tid, ts);
}

static void on_gap(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		   uint64_t len, enum ws_gap_reason reason)
{
	struct ws_pconn *pc = ws_pconn_of(c);

	ws_nats_conn_gap(pc->app, dir, len);
}

static void on_close(void *ctx, struct ws_conn *c, const uint64_t *final,
		     enum ws_close_why why)
{
	struct agent *ag = ctx;
	struct ws_pconn *pc = ws_pconn_of(c);

	ws_nats_conn_close(pc->app, rec_ts(ag));
	pc->app = NULL;
	if (why == WS_CLOSE_EXITED)
		ws_identity_forget(ag->ids, c->id.tgid);
}

static void on_tick(void *ctx, uint64_t now_ns)
{
	struct agent *ag = ctx;

	ws_nats_spans_tick(ag->nats, ws_pipeline_unix_ns(ag->p, now_ns));
	flush_batch(ag);
}

static void print_agent_metrics(struct agent *ag)
{
	const struct ws_nats_spans_stats *st = ws_nats_spans_stats(ag->nats);
	struct ws_jsonw w;

	jw_init(&w);
	jw_begin(&w);
	jw_str(&w, "type", "agent_metrics");
	jw_u64(&w, "spans_out", ag->spans_out);
	jw_u64(&w, "write_errors", ag->write_errors);
	jw_u64(&w, "attrs_dropped", ag->attrs_dropped);
	jw_u64(&w, "attrs_cut", ag->attrs_cut);
	jw_u64(&w, "links_dropped", ag->links_dropped);
	jw_u64(&w, "events_dropped", ag->events_dropped);
	jw_obj_open(&w, "nats");
	jw_u64(&w, "publish", st->publish);
	jw_u64(&w, "process", st->process);
	jw_u64(&w, "request", st->request);
	jw_u64(&w, "js_publish", st->js_publish);
	jw_u64(&w, "pull", st->pull);
	jw_u64(&w, "settle", st->settle);
	jw_u64(&w, "js_api", st->js_api);
	jw_u64(&w, "deliver", st->deliver);
	jw_u64(&w, "process_end_read", st->process_end_read);
	jw_u64(&w, "process_end_reply", st->process_end_reply);
	jw_u64(&w, "process_end_timeout", st->process_end_timeout);
	jw_u64(&w, "process_end_close", st->process_end_close);
	jw_u64(&w, "request_timeout", st->request_timeout);
	jw_u64(&w, "request_no_responders", st->request_no_responders);
	jw_u64(&w, "request_closed", st->request_closed);
	jw_u64(&w, "pending_evicted", st->pending_evicted);
	jw_u64(&w, "recent_evicted", st->recent_evicted);
	jw_u64(&w, "subs_dropped", st->subs_dropped);
	jw_u64(&w, "no_fingerprint", st->no_fingerprint);
	jw_u64(&w, "bad_json", st->bad_json);
	jw_u64(&w, "parse_errors", st->parse_errors);
	jw_u64(&w, "gap_bytes", st->gap_bytes);
	jw_u64(&w, "nomem", st->nomem);
	jw_obj_close(&w);
	ws_enrich_metrics(&ag->en, &w);
	jw_end(&w, stderr);
	jw_free(&w);
}

static void on_dump(void *ctx)
{
	print_agent_metrics(ctx);
}

static const char agent_usage[] =
	"usage: wirespan agent [options]\n"
	"\n"
	"Turn the NATS conversations of this host into OpenTelemetry spans.\n"
	"Needs root (or CAP_BPF, CAP_PERFMON, CAP_SYS_RESOURCE).\n"
	"\n"
	"  -o, --output stdout     write spans as OTLP/JSON lines to stdout\n"
	"  -p, --pid PID           only processes with this pid (repeatable)\n"
	"  -P, --port PORT         only connections with this port "
	"(repeatable)\n"
	"  -m, --max-capture N     bytes copied per syscall (default 16384, "
	"max "
	"32768)\n"
	"  -b, --ringbuf-size N    ring buffer bytes, a power of two (default "
	"16 "
	"MiB)\n"
	"      --process-timeout S end a process span after S seconds without\n"
	"                          evidence (default 10)\n"
	"      --request-timeout S a request without a reply fails after S\n"
	"                          seconds (default 30)\n"
	"  -d, --duration SECS     stop after SECS seconds\n"
	"  -v, --verbose           more diagnostics\n"
	"  -h, --help              this help\n";

int cmd_agent(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'},
		{"pid", required_argument, NULL, 'p'},
		{"port", required_argument, NULL, 'P'},
		{"max-capture", required_argument, NULL, 'm'},
		{"ringbuf-size", required_argument, NULL, 'b'},
		{"process-timeout", required_argument, NULL, 'T'},
		{"request-timeout", required_argument, NULL, 'R'},
		{"duration", required_argument, NULL, 'd'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		/* enrichment (agent/enrich.h): all 'E' */
		{"node-name", required_argument, NULL, 'E'},
		{"k8s-api", required_argument, NULL, 'E'},
		{"k8s-token", required_argument, NULL, 'E'},
		{"k8s-ca", required_argument, NULL, 'E'},
		{"no-k8s", no_argument, NULL, 'E'},
		{"k8s-label", required_argument, NULL, 'E'},
		{"service-rule", required_argument, NULL, 'E'},
		{0},
	};
	static const struct ws_pipeline_ops ops = {
		.open = on_open,
		.data = on_data,
		.gap = on_gap,
		.close = on_close,
		.tick = on_tick,
		.dump = on_dump,
		.ready = on_ready,
	};
	struct ws_nats_spans_cfg ncfg;
	struct agent ag = {.out = stdout};
	struct ws_enrich_cfg ecfg;
	struct ws_pipeline_opts o;
	uint64_t v;
	int opt, rc, li = 0;

	ws_pipeline_opts_init(&o);
	ws_nats_spans_cfg_init(&ncfg);
	ws_enrich_cfg_init(&ecfg);
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "o:p:P:m:b:d:vh", longopts,
				  &li)) != -1) {
		switch (opt) {
		case 'E':
			if (ws_enrich_cfg_opt(&ecfg, longopts[li].name,
					      optarg)) {
				ws_cli_bad(agent_usage, longopts[li].name,
					   optarg);
				ws_enrich_cfg_free(&ecfg);
				return WS_EXIT_USAGE;
			}
			break;
		case 'o':
			if (strcmp(optarg, "stdout")) {
				ws_cli_bad(agent_usage, "--output", optarg);
				return WS_EXIT_USAGE;
			}
			break;
		case 'p':
			if (ws_cli_u64(optarg, 1, UINT32_MAX, &v) ||
			    o.lo.n_pids >= WS_MAX_FILTER) {
				ws_cli_bad(agent_usage, "--pid", optarg);
				return WS_EXIT_USAGE;
			}
			o.lo.pids[o.lo.n_pids++] = (uint32_t)v;
			break;
		case 'P':
			if (ws_cli_u64(optarg, 1, 65535, &v) ||
			    o.lo.n_ports >= WS_MAX_FILTER) {
				ws_cli_bad(agent_usage, "--port", optarg);
				return WS_EXIT_USAGE;
			}
			o.lo.ports[o.lo.n_ports++] = (uint16_t)v;
			break;
		case 'm':
			if (ws_cli_u64(optarg, 1, WS_MAX_CAPTURE, &v)) {
				ws_cli_bad(agent_usage, "--max-capture",
					   optarg);
				return WS_EXIT_USAGE;
			}
			o.lo.max_capture = (uint32_t)v;
			break;
		case 'b':
			if (ws_cli_u64(optarg, 4096, 1u << 30, &v) ||
			    (v & (v - 1))) {
				ws_cli_bad(agent_usage, "--ringbuf-size",
					   optarg);
				return WS_EXIT_USAGE;
			}
			o.lo.ringbuf_size = (uint32_t)v;
			break;
		case 'T':
		case 'R':
			if (ws_cli_u64(optarg, 1, 3600, &v)) {
				ws_cli_bad(agent_usage,
					   opt == 'T' ? "--process-timeout"
						      : "--request-timeout",
					   optarg);
				return WS_EXIT_USAGE;
			}
			if (opt == 'T')
				ncfg.process_timeout_ns = v * 1000000000ull;
			else
				ncfg.request_timeout_ns = v * 1000000000ull;
			break;
		case 'd':
			if (ws_cli_u64(optarg, 1, 86400 * 365, &v)) {
				ws_cli_bad(agent_usage, "--duration", optarg);
				return WS_EXIT_USAGE;
			}
			o.duration = (double)v;
			break;
		case 'v':
			ws_log_level = ws_log_level < WS_LOG_INFO
					       ? WS_LOG_INFO
					       : WS_LOG_DEBUG;
			break;
		case 'h':
			fputs(agent_usage, stdout);
			fputs(ws_enrich_usage, stdout);
			ws_enrich_cfg_free(&ecfg);
			return 0;
		default:
			ws_cli_unknown(agent_usage, argv[optind - 1]);
			return WS_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		ws_cli_unknown(agent_usage, argv[optind]);
		return WS_EXIT_USAGE;
	}
	if (ws_enrich_start(&ag.en, &ecfg)) {
		ws_err("out of memory");
		return 1;
	}
	ag.ids = ag.en.ids;
	ag.nats = ws_nats_spans_new(&ncfg, on_span, &ag);
	if (!ag.nats) {
		ws_err("out of memory");
		ws_enrich_stop(&ag.en);
		return 1;
	}
	rc = ws_pipeline_run(&o, &ops, &ag);
	/* Connections were closed by the pipeline; end what is left. */
	ws_nats_spans_free(ag.nats, ag.last_ts);
	flush_batch(&ag);
	print_agent_metrics(&ag);
	ws_enrich_stop(&ag.en);
	return rc;
}
