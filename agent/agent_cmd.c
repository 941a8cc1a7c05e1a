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

#include <openssl/crypto.h>

#include "agent_cmd.h"
#include "cli.h"
#include "http_spans.h"
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
	struct ws_identity *ids;
	struct ws_nats_spans *nats;
	struct ws_http_spans *http;
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

/* An HTTP connection: to the HTTP span builder. */
static bool open_http(struct agent *ag, struct ws_conn *c)
{
	struct ws_http_conn_info info = {0};
	struct ws_pconn *pc = ws_pconn_of(c);

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
	/* gen: when the capture saw the connect or accept */
	info.open_ns = ws_pipeline_unix_ns(ag->p, c->id.gen);
	info.resource = ws_identity_resource(ag->ids, c->id.tgid, c->comm);
	pc->app = ws_http_conn_new(ag->http, &info);
	ws_resource_put(info.resource);
	return pc->app != NULL;
}

static bool on_open(void *ctx, struct ws_conn *c)
{
	struct agent *ag = ctx;
	struct ws_nats_conn_info info = {0};
	struct ws_pconn *pc = ws_pconn_of(c);

	/* PROTOCOL-ADD: each span builder plugs in here. */
	if (c->proto == WS_PROTO_HTTP)
		return open_http(ag, c);
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
	info.resource = ws_identity_resource(ag->ids, c->id.tgid, c->comm);
	pc->app = ws_nats_conn_new(ag->nats, &info);
	ws_resource_put(info.resource);
	return pc->app != NULL;
}

static void on_data(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		    const uint8_t *buf, size_t len)
{
	struct agent *ag = ctx;
	struct ws_pconn *pc = ws_pconn_of(c);
	uint64_t ts = rec_ts(ag);
	uint32_t tid = ag->p->cur ? ag->p->cur->tid : c->id.tgid;

	if (c->proto == WS_PROTO_HTTP)
		ws_http_conn_feed(pc->app, dir, buf, len, tid, ts);
	else
		ws_nats_conn_feed(pc->app, dir, buf, len, tid, ts);
}

static void on_gap(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		   uint64_t len, enum ws_gap_reason reason)
{
	struct ws_pconn *pc = ws_pconn_of(c);

	if (c->proto == WS_PROTO_HTTP)
		ws_http_conn_gap(pc->app, dir, len);
	else
		ws_nats_conn_gap(pc->app, dir, len);
}

static void on_close(void *ctx, struct ws_conn *c, const uint64_t *final,
		     enum ws_close_why why)
{
	struct agent *ag = ctx;
	struct ws_pconn *pc = ws_pconn_of(c);

	if (c->proto == WS_PROTO_HTTP)
		ws_http_conn_close(pc->app, rec_ts(ag));
	else
		ws_nats_conn_close(pc->app, rec_ts(ag));
	pc->app = NULL;
	if (why == WS_CLOSE_EXITED)
		ws_identity_forget(ag->ids, c->id.tgid);
}

static void on_tick(void *ctx, uint64_t now_ns)
{
	struct agent *ag = ctx;

	ws_nats_spans_tick(ag->nats, ws_pipeline_unix_ns(ag->p, now_ns));
	ws_http_spans_tick(ag->http, ws_pipeline_unix_ns(ag->p, now_ns));
	flush_batch(ag);
}

/* The "http" object of agent_metrics: every counter of the HTTP spans. */
static void put_http_metrics(struct ws_jsonw *w, struct agent *ag)
{
	const struct ws_http_spans_stats *st = ws_http_spans_stats(ag->http);
	const struct ws_http_auth_stats *au = &st->auth;
	int i;

	jw_obj_open(w, "http");
	jw_u64(w, "server", st->server);
	jw_u64(w, "client", st->client);
	jw_u64(w, "conns", st->conns);
	jw_u64(w, "conns_unknown_role", st->conns_unknown_role);
	jw_u64(w, "interim", st->interim);
	jw_u64(w, "upgrades", st->upgrades);
	jw_u64(w, "end_response", st->end_response);
	jw_u64(w, "end_closed", st->end_closed);
	jw_u64(w, "end_timeout", st->end_timeout);
	jw_u64(w, "end_evicted", st->end_evicted);
	jw_u64(w, "orphan_responses", st->orphan_responses);
	jw_u64(w, "resync", st->resync);
	jw_u64(w, "gap_messages", st->gap_messages);
	jw_u64(w, "pending_dropped", st->pending_dropped);
	jw_u64(w, "pending_evicted", st->pending_evicted);
	jw_u64(w, "link_traceparent", st->link_traceparent);
	jw_u64(w, "link_thread", st->link_thread);
	jw_u64(w, "link_heuristic", st->link_heuristic);
	jw_u64(w, "link_none", st->link_none);
	jw_u64(w, "link_candidates_cut", st->link_candidates_cut);
	jw_u64(w, "traceparent_in", st->traceparent_in);
	jw_u64(w, "bad_traceparent", st->bad_traceparent);
	jw_u64(w, "nats_parent", st->nats_parent);
	jw_u64(w, "capture_refused", st->capture_refused);
	jw_u64(w, "route_explicit", st->route_explicit);
	jw_obj_open(w, "parse_errors");
	for (i = 1; i < WS_HTTP_ERR_MAX; i++)
		jw_u64(w, ws_http_err_name(i), st->parse_errors[i]);
	jw_obj_close(w);
	jw_obj_open(w, "stops");
	for (i = 1; i < WS_HTTP_STOP_MAX; i++)
		jw_u64(w, ws_http_stop_name(i), st->stops[i]);
	jw_obj_close(w);
	jw_u64(w, "gap_bytes", st->gap_bytes);
	jw_u64(w, "skipped_bytes", st->skipped_bytes);
	jw_u64(w, "stopped_bytes", st->stopped_bytes);
	jw_u64(w, "truncated", st->truncated);
	jw_u64(w, "expect_full", st->expect_full);
	jw_u64(w, "auth_jwt", au->jwt);
	jw_u64(w, "auth_bad_jwt", au->bad_jwt);
	jw_u64(w, "auth_api_keys", au->api_keys);
	jw_u64(w, "auth_no_secret", au->no_secret);
	jw_u64(w, "auth_basic", au->basic);
	jw_u64(w, "auth_bad_basic", au->bad_basic);
	jw_u64(w, "auth_other", au->other);
	jw_u64(w, "auth_roles_cut", au->roles_cut);
	jw_u64(w, "auth_claims_cut", au->claims_cut);
	jw_u64(w, "nomem", st->nomem);
	jw_obj_close(w);
}

static void print_agent_metrics(struct agent *ag)
{
	const struct ws_nats_spans_stats *st = ws_nats_spans_stats(ag->nats);
	struct ws_identity_stats is;
	struct ws_jsonw w;

	ws_identity_stats(ag->ids, &is);
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
	put_http_metrics(&w, ag);
	jw_obj_open(&w, "identity");
	jw_u64(&w, "lookups", is.lookups);
	jw_u64(&w, "misses", is.misses);
	jw_u64(&w, "evicted", is.evicted);
	jw_u64(&w, "proc_gone", is.proc_gone);
	jw_obj_close(&w);
	jw_end(&w, stderr);
	jw_free(&w);
}

/* Long options without a short form. */
enum {
	OPT_ROUTE = 1000,
	OPT_JWT_CLAIM,
	OPT_KEY_HEADER,
	OPT_KEY_HASH,
	OPT_SECRET_FILE,
	OPT_CAPTURE,
};

static const char agent_usage[] =
	"usage: wirespan agent [options]\n"
	"\n"
	"Turn the NATS and HTTP/1.x conversations of this host into\n"
	"OpenTelemetry spans.\n"
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
	"                          seconds (default 30; HTTP: 60)\n"
	"      --health ADDR       serve /healthz and /readyz on ADDR "
	"(host:port)\n"
	"      --route PATTERN     HTTP route template, e.g. /users/{id}/cart\n"
	"                          or /static/* (repeatable, tried in order)\n"
	"      --jwt-user-claim C  JWT claim that becomes enduser.id (sub)\n"
	"      --api-key-header H  header carrying an API key (repeatable;\n"
	"                          X-API-Key and Authorization always)\n"
	"      --key-hash MODE     hmac (HMAC-SHA256 with the secret file,\n"
	"                          default) or murmur3 (Tyk's key hash)\n"
	"      --key-hash-secret-file PATH  HMAC secret, created 0600 if\n"
	"                          missing "
	"(default " WS_AUTH_DEFAULT_SECRET_FILE ")\n"
	"      --capture-header H  record this request header as\n"
	"                          http.request.header.<h> (repeatable;\n"
	"                          credentials are refused)\n"
	"  -d, --duration SECS     stop after SECS seconds\n"
	"  -v, --verbose           more diagnostics\n"
	"  -h, --help              this help\n";

static bool http_parent(void *ctx, uint32_t tgid, uint32_t tid, uint64_t ts,
			uint8_t trace_id[16], uint8_t span_id[8])
{
	return ws_http_spans_parent(ctx, tgid, tid, ts, trace_id, span_id);
}

/* One HTTP span setting from the command line. 0 or -1 (usage printed). */
static int http_option(struct ws_http_spans_cfg *h, int opt, char *arg,
		       const char **secret_file)
{
	switch (opt) {
	case OPT_ROUTE:
		if (arg[0] != '/' || strlen(arg) > WS_HTTP_MAX_ROUTE ||
		    h->n_routes >= WS_HTTP_MAX_ROUTES)
			return ws_cli_bad(agent_usage, "--route", arg);
		h->routes[h->n_routes++] = arg;
		return 0;
	case OPT_JWT_CLAIM:
		if (!*arg)
			return ws_cli_bad(agent_usage, "--jwt-user-claim", arg);
		h->auth.jwt_user_claim = arg;
		return 0;
	case OPT_KEY_HEADER:
		if (ws_http_auth_add_key_header(&h->auth, arg))
			return ws_cli_bad(agent_usage, "--api-key-header", arg);
		return 0;
	case OPT_KEY_HASH:
		if (!strcmp(arg, "hmac"))
			h->auth.key_hash = WS_KEY_HASH_HMAC;
		else if (!strcmp(arg, "murmur3"))
			h->auth.key_hash = WS_KEY_HASH_MURMUR3;
		else
			return ws_cli_bad(agent_usage, "--key-hash", arg);
		return 0;
	case OPT_SECRET_FILE:
		if (!*arg)
			return ws_cli_bad(agent_usage, "--key-hash-secret-file",
					  arg);
		*secret_file = arg;
		return 0;
	case OPT_CAPTURE:
		if (h->n_capture_headers >= WS_AUTH_MAX_HEADERS || !*arg ||
		    strpbrk(arg, " \t:\r\n"))
			return ws_cli_bad(agent_usage, "--capture-header", arg);
		if (ws_http_header_is_secret(&h->auth, arg, strlen(arg))) {
			ws_err("--capture-header %s: this header carries "
			       "credentials and is never recorded",
			       arg);
			return -1;
		}
		h->capture_headers[h->n_capture_headers++] = arg;
		return 0;
	}
	return -1;
}

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
		{"health", required_argument, NULL, 'H'},
		{"route", required_argument, NULL, OPT_ROUTE},
		{"jwt-user-claim", required_argument, NULL, OPT_JWT_CLAIM},
		{"api-key-header", required_argument, NULL, OPT_KEY_HEADER},
		{"key-hash", required_argument, NULL, OPT_KEY_HASH},
		{"key-hash-secret-file", required_argument, NULL,
		 OPT_SECRET_FILE},
		{"capture-header", required_argument, NULL, OPT_CAPTURE},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	static const struct ws_pipeline_ops ops = {
		.open = on_open,
		.data = on_data,
		.gap = on_gap,
		.close = on_close,
		.tick = on_tick,
		.ready = on_ready,
	};
	struct ws_nats_spans_cfg ncfg;
	struct ws_http_spans_cfg hcfg;
	const char *secret_file = WS_AUTH_DEFAULT_SECRET_FILE;
	char err[512];
	struct agent ag = {.out = stdout};
	struct ws_pipeline_opts o;
	uint64_t v;
	int opt, rc;

	ws_pipeline_opts_init(&o);
	ws_nats_spans_cfg_init(&ncfg);
	ws_http_spans_cfg_init(&hcfg);
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "o:p:P:m:b:d:vh", longopts,
				  NULL)) != -1) {
		switch (opt) {
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
			if (opt == 'T') {
				ncfg.process_timeout_ns = v * 1000000000ull;
			} else {
				ncfg.request_timeout_ns = v * 1000000000ull;
				hcfg.request_timeout_ns = v * 1000000000ull;
			}
			break;
		case OPT_ROUTE:
		case OPT_JWT_CLAIM:
		case OPT_KEY_HEADER:
		case OPT_KEY_HASH:
		case OPT_SECRET_FILE:
		case OPT_CAPTURE:
			if (http_option(&hcfg, opt, optarg, &secret_file))
				return WS_EXIT_USAGE;
			break;
		case 'd':
			if (ws_cli_u64(optarg, 1, 86400 * 365, &v)) {
				ws_cli_bad(agent_usage, "--duration", optarg);
				return WS_EXIT_USAGE;
			}
			o.duration = (double)v;
			break;
		case 'H':
			o.health_addr = optarg;
			break;
		case 'v':
			ws_log_level = ws_log_level < WS_LOG_INFO
					       ? WS_LOG_INFO
					       : WS_LOG_DEBUG;
			break;
		case 'h':
			fputs(agent_usage, stdout);
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
	if (hcfg.auth.key_hash == WS_KEY_HASH_HMAC &&
	    ws_http_auth_load_secret(&hcfg.auth, secret_file, true, err,
				     sizeof(err))) {
		ws_err("%s", err);
		return 1;
	}
	ag.ids = ws_identity_new("/proc");
	ag.http = ws_http_spans_new(&hcfg, on_span, &ag);
	OPENSSL_cleanse(hcfg.auth.secret, sizeof(hcfg.auth.secret));
	ncfg.parent = http_parent;
	ncfg.parent_ctx = ag.http;
	ag.nats = ws_nats_spans_new(&ncfg, on_span, &ag);
	if (!ag.ids || !ag.nats || !ag.http) {
		ws_err("out of memory");
		ws_identity_free(ag.ids);
		ws_nats_spans_free(ag.nats, 0);
		ws_http_spans_free(ag.http, 0);
		return 1;
	}
	rc = ws_pipeline_run(&o, &ops, &ag);
	/* Connections were closed by the pipeline; end what is left. */
	ws_nats_spans_free(ag.nats, ag.last_ts);
	ws_http_spans_end_all(ag.http, ag.last_ts);
	flush_batch(&ag);
	print_agent_metrics(&ag);
	ws_http_spans_free(ag.http, ag.last_ts);
	ws_identity_free(ag.ids);
	return rc;
}
