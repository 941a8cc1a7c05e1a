/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `wirespan agent`: the capture pipeline feeding the protocol span builders,
 * finished spans handed to a sink: OTLP protobuf over NATS (default) or
 * OTLP/JSON lines on stdout (--output stdout). Configuration: config.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "agent_args.h"
#include "agent_cmd.h"
#include "caps.h"
#include "cli.h"
#include "config.h"
#include "enrich.h"
#include "gort.h"
#include "export/nats_export.h"
#include "http_spans.h"
#include "identity.h"
#include "jsonw.h"
#include "log.h"
#include "nats_spans.h"
#include "pipeline.h"
#include "sink.h"
#include "subject_filter.h"

/* --output stdout: spans per OTLP/JSON line at most. */
#define STDOUT_BATCH 64
/* How often cached identities and peers of gone processes are swept. */
#define ENRICH_SWEEP_NS (5ull * 1000000000ull)

struct agent {
	struct ws_pipeline *p;
	struct ws_identity *ids; /* en.ids */
	struct ws_enrich en;
	struct ws_nats_spans *nats;
	struct ws_nats_spans_stats nats_final;
	struct ws_http_spans *http;
	struct ws_gort *gort; /* Go runtime probes (NULL until ready) */
	const struct ws_loader_opts *lo; /* the capture's filters */
	struct ws_sink sink;
	struct ws_config cfg;
	const struct ws_agent_args *args;
	struct ws_subject_filter *exclude; /* subjects that derive no spans */
	/* what the span bounds cut, summed over every span handed on: the
	 * per-span counts also travel in OTLP's dropped_* fields */
	uint64_t attrs_dropped, attrs_cut, links_dropped, events_dropped;
	uint64_t last_ts;    /* unix ns of the last record seen */
	uint64_t next_sweep; /* CLOCK_MONOTONIC ns of the next enrich sweep */
	uint64_t reloads, reload_errors;
	/* http.jwks_file's key set (NULL: JWTs are not verified) and when
	 * the file was last looked at (monotonic ns) */
	struct ws_jwt_verifier *jwt;
	uint64_t jwks_look_ns, jwks_errors_logged;
};

/* The JWKS file is looked at this often for changes. */
#define JWKS_LOOK_NS 1000000000ull

static void on_span(void *ctx, struct ws_span *s)
{
	struct agent *ag = ctx;

	ag->attrs_dropped += s->a.dropped;
	ag->attrs_cut += s->a.cut;
	ag->links_dropped += s->dropped_links;
	ag->events_dropped += s->dropped_events;
	ag->sink.ops->span(ag->sink.impl, s);
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
	ag->gort = ws_gort_new(ws_loader_go_object(p->ld));
	if (!ag->gort)
		ws_warn("Go runtime evidence off: %s", strerror(errno));
	ws_gort_scan_listeners(ag->gort, ag->lo->ports, ag->lo->n_ports,
			       ag->lo->pids, ag->lo->n_pids);
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
	info.open_tid = c->open_tid;
	info.resource = ws_enrich_resource(&ag->en, c);
	ws_gort_see(ag->gort, info.tgid);
	pc->app = ws_http_conn_new(ag->http, &info);
	ws_resource_put(info.resource);
	if (!pc->app) /* no close follows: undo the open's note */
		ws_enrich_conn_closed(&ag->en, c);
	return pc->app != NULL;
}

/*
 * On a nats-server's side of a connection, a client that names itself as
 * one of wirespan's own (an agent's export, a relay, a tail, doctor)
 * carries telemetry: its spans are excluded by subject anyway, and its
 * bytes, a few hundred per span of every host, are not worth copying out
 * of the kernel at all. The names are the defaults those commands give
 * their NATS connections: exactly one of these, or one followed by a space
 * (the agent adds its node).
 */
static bool is_own_client(const struct ws_nats_conn *nc)
{
	static const char *const own[] = {"wirespan-agent", "wirespan-relay",
					  "wirespan-tail", "wirespan-doctor"};
	const char *name = ws_nats_conn_client_name(nc);
	size_t i, n;

	if (!name)
		return false;
	for (i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
		n = strlen(own[i]);
		if (!strncmp(name, own[i], n) &&
		    (name[n] == '\0' || name[n] == ' '))
			return true;
	}
	return false;
}

/*
 * The server's side of the agent's own export connection, when the server
 * runs on this host: its peer is our connection's local address and port.
 * (That connection is usually opened before the capture starts, so its
 * CONNECT, and name, are never seen.)
 */
static bool is_own_connection(struct agent *ag, const struct ws_conn *c)
{
	char own[64], peer[64];
	uint16_t port;

	if (!ag->sink.ops->own_endpoint ||
	    !ag->sink.ops->own_endpoint(ag->sink.impl, own, sizeof(own),
					&port) ||
	    port != c->tuple.rport)
		return false;
	ws_addr_text(c->tuple.raddr, c->tuple.family, peer, sizeof(peer));
	return !strcmp(own, peer);
}

static void unfollow_own(struct agent *ag, struct ws_conn *c,
			 struct ws_pconn *pc)
{
	ws_nats_conn_close(pc->app, rec_ts(ag));
	pc->app = NULL;
	ws_pipeline_unfollow(ag->p, c);
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
	if (c->role == WS_ROLE_SERVER && ag->cfg.exclude_own &&
	    is_own_connection(ag, c)) {
		ws_pipeline_unfollow(ag->p, c);
		return false;
	}
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
	if (!pc->app) /* no close follows: undo the open's note */
		ws_enrich_conn_closed(&ag->en, c);
	return pc->app != NULL;
}

static void on_data(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		    const uint8_t *buf, size_t len)
{
	struct agent *ag = ctx;
	struct ws_pconn *pc = ws_pconn_of(c);
	uint64_t ts = rec_ts(ag);
	uint32_t tid = ag->p->cur ? ag->p->cur->tid : c->id.tgid;

	if (c->proto == WS_PROTO_HTTP) {
		ws_http_conn_feed_g(pc->app, dir, buf, len, tid,
				    ag->p->cur ? ag->p->cur->go_g : 0, ts);
		return;
	}
	ws_nats_conn_feed(pc->app, dir, buf, len, tid, ts);
	if (c->role == WS_ROLE_SERVER && dir == WS_DIR_INGRESS &&
	    ag->cfg.exclude_own && is_own_client(pc->app))
		unfollow_own(ag, c, pc);
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
	ws_enrich_conn_closed(&ag->en, c);
}

static void on_proc_exit(void *ctx, uint32_t tgid)
{
	struct agent *ag = ctx;

	ws_enrich_proc_exit(&ag->en, tgid);
	ws_gort_exit(ag->gort, tgid);
}

static void on_go(void *ctx, const struct ws_go_event *ev)
{
	struct agent *ag = ctx;

	ws_http_spans_go(ag->http, ev->tgid, ev->kind, ev->g, ev->req);
}

static void on_tick(void *ctx, uint64_t now_ns)
{
	struct agent *ag = ctx;

	ws_nats_spans_tick(ag->nats, ws_pipeline_unix_ns(ag->p, now_ns));
	ws_http_spans_tick(ag->http, ws_pipeline_unix_ns(ag->p, now_ns));
	if (ag->jwt && now_ns - ag->jwks_look_ns >= JWKS_LOOK_NS) {
		char err[512];
		int rc = ws_jwt_verifier_refresh(ag->jwt, err, sizeof(err));

		ag->jwks_look_ns = now_ns;
		if (rc > 0)
			ws_warn("http.jwks_file changed: %llu keys read",
				(unsigned long long)ws_jwt_verifier_stats(
					ag->jwt)
					->keys);
		else if (rc < 0 &&
			 ws_jwt_verifier_stats(ag->jwt)->load_errors !=
				 ag->jwks_errors_logged) {
			ag->jwks_errors_logged =
				ws_jwt_verifier_stats(ag->jwt)->load_errors;
			ws_err("http.jwks_file: %s; the keys read before stay",
			       err);
		}
	}
	ag->sink.ops->tick(ag->sink.impl, now_ns);
	if (now_ns >= ag->next_sweep) {
		ws_enrich_sweep(&ag->en);
		ws_gort_sweep(ag->gort);
		ag->next_sweep = now_ns + ENRICH_SWEEP_NS;
	}
}

/* The "jwt" object of agent_metrics.http: verdicts and the key set (all
 * zero without http.jwks_file). */
static void put_jwt_metrics(struct ws_jsonw *w, struct agent *ag)
{
	static const struct ws_jwt_verifier_stats none;
	const struct ws_jwt_verifier_stats *st =
		ag->jwt ? ws_jwt_verifier_stats(ag->jwt) : &none;
	int i;

	jw_obj_open(w, "jwt");
	for (i = 0; i < WS_JWT_VERDICT_MAX; i++)
		jw_u64(w, ws_jwt_verdict_name(i), st->verdicts[i]);
	jw_u64(w, "cache_hits", st->cache_hits);
	jw_u64(w, "cache_misses", st->cache_misses);
	jw_u64(w, "cache_evicted", st->cache_evicted);
	jw_u64(w, "jwks_loads", st->loads);
	jw_u64(w, "jwks_load_errors", st->load_errors);
	jw_u64(w, "jwks_keys", st->keys);
	jw_u64(w, "jwks_keys_skipped", st->keys_skipped);
	jw_obj_close(w);
}

/* The "go" object of agent_metrics: the Go runtime probes (gort.h). */
static void put_gort_metrics(struct ws_jsonw *w, struct agent *ag)
{
	const struct ws_gort_stats *g;

	if (!ag->gort)
		return;
	g = ws_gort_stats(ag->gort);
	jw_obj_open(w, "go");
#define PUT_GORT_STAT(n) jw_u64(w, #n, g->n);
	WS_GORT_STATS(PUT_GORT_STAT)
#undef PUT_GORT_STAT
	jw_obj_close(w);
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
	jw_u64(w, "link_thread_order", st->link_thread_order);
	jw_u64(w, "link_dial", st->link_dial);
	jw_u64(w, "link_queue", st->link_queue);
	jw_u64(w, "link_ambiguous", st->link_ambiguous);
	jw_u64(w, "link_response_thread", st->link_response_thread);
	jw_u64(w, "link_goroutine", st->link_goroutine);
	jw_u64(w, "go_round_trips", st->go_round_trips);
	jw_u64(w, "go_writes", st->go_writes);
	jw_u64(w, "go_unmatched", st->go_unmatched);
	jw_u64(w, "go_stale", st->go_stale);
	jw_u64(w, "go_evicted", st->go_evicted);
	jw_u64(w, "go_bad", st->go_bad);
	jw_u64(w, "link_candidates_cut", st->link_candidates_cut);
	jw_u64(w, "traceparent_in", st->traceparent_in);
	jw_u64(w, "bad_traceparent", st->bad_traceparent);
	jw_u64(w, "nats_parent", st->nats_parent);
	jw_u64(w, "hop_linked", st->hop_linked);
	jw_u64(w, "hop_late", st->hop_late);
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
	put_jwt_metrics(w, ag);
	jw_u64(w, "nomem", st->nomem);
	jw_obj_close(w);
	put_gort_metrics(w, ag);
}

static void print_agent_metrics(struct agent *ag)
{
	/* after the builder is freed: its last counters */
	const struct ws_nats_spans_stats *st =
		ag->nats ? ws_nats_spans_stats(ag->nats) : &ag->nats_final;
	struct ws_jsonw w;

	uint64_t spans_out, write_errors;

	ag->sink.ops->counts(ag->sink.impl, &spans_out, &write_errors);
	jw_init(&w);
	jw_begin(&w);
	jw_str(&w, "type", "agent_metrics");
	jw_u64(&w, "spans_out", spans_out);
	jw_u64(&w, "write_errors", write_errors);
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
	jw_u64(&w, "excluded", st->excluded);
	jw_obj_close(&w);
	ws_enrich_metrics(&ag->en, &w);
	if (ag->http)
		put_http_metrics(&w, ag);
	if (ag->sink.ops->metrics)
		ag->sink.ops->metrics(ag->sink.impl, &w);
	jw_obj_open(&w, "config");
	jw_u64(&w, "reloads", ag->reloads);
	jw_u64(&w, "reload_errors", ag->reload_errors);
	jw_obj_close(&w);
	jw_end(&w, stderr);
	jw_free(&w);
}

static void on_dump(void *ctx)
{
	print_agent_metrics(ctx);
}

static void note_change(const char *key, bool reloadable, void *ctx)
{
	if (reloadable)
		ws_warn("SIGHUP: %s changed: applied", key);
	else
		ws_warn("SIGHUP: %s changed: needs a restart; the running "
			"value stays",
			key);
}

/* Move the http.jwt_* keys of nc into the running configuration. */
static void take_jwt_keys(struct ws_config *c, struct ws_config *nc)
{
	uint64_t i;

	free(c->jwks_file);
	c->jwks_file = nc->jwks_file;
	nc->jwks_file = NULL;
	for (i = 0; i < c->n_jwt_issuers; i++)
		free(c->jwt_issuers[i]);
	memcpy(c->jwt_issuers, nc->jwt_issuers, sizeof(c->jwt_issuers));
	c->n_jwt_issuers = nc->n_jwt_issuers;
	nc->n_jwt_issuers = 0;
	for (i = 0; i < c->n_jwt_audiences; i++)
		free(c->jwt_audiences[i]);
	memcpy(c->jwt_audiences, nc->jwt_audiences, sizeof(c->jwt_audiences));
	c->n_jwt_audiences = nc->n_jwt_audiences;
	nc->n_jwt_audiences = 0;
	c->jwt_leeway_s = nc->jwt_leeway_s;
}

/* SIGHUP: the JWKS file is read again, with the new issuers, audiences
 * and leeway; a file that cannot be read keeps the keys read before. */
static void reload_jwt(struct agent *ag, struct ws_config *nc)
{
	struct ws_jwt_verifier_cfg jc;
	char err[512];

	take_jwt_keys(&ag->cfg, nc);
	ws_config_jwt_cfg(&ag->cfg, &jc);
	if (!jc.jwks_file || !*jc.jwks_file) {
		ws_http_spans_set_verifier(ag->http, NULL);
		ws_jwt_verifier_free(ag->jwt);
		ag->jwt = NULL;
		return;
	}
	if (!ag->jwt) {
		ag->jwt = ws_jwt_verifier_new(&jc, err, sizeof(err));
		ws_http_spans_set_verifier(ag->http, ag->jwt);
	} else if (ws_jwt_verifier_configure(ag->jwt, &jc, err, sizeof(err))) {
		ag->jwks_errors_logged =
			ws_jwt_verifier_stats(ag->jwt)->load_errors;
	} else {
		return;
	}
	if (!ag->jwt || ws_jwt_verifier_stats(ag->jwt)->load_errors)
		ws_err("SIGHUP: http.jwks_file: %s", err);
}

/* SIGHUP: read the configuration again (file, environment, the same
 * command line); apply the keys that may change while running. */
static void on_reload(void *ctx)
{
	struct agent *ag = ctx;
	struct ws_config nc;
	struct ws_config *c = &ag->cfg;
	char err[512];
	uint64_t i;

	if (ws_config_load(&nc, ag->args->config, ag->args->ov, ag->args->n_ov,
			   NULL, err, sizeof(err))) {
		ag->reload_errors++;
		ws_err("SIGHUP: configuration not reloaded (the running one "
		       "stays): %s",
		       err);
		return;
	}
	ws_config_diff(c, &nc, note_change, ag);
	c->log_level = nc.log_level;
	ws_log_level = (enum ws_log_level)c->log_level;
	c->exclude_own = nc.exclude_own;
	for (i = 0; i < c->n_exclude; i++)
		free(c->exclude[i]);
	memcpy(c->exclude, nc.exclude, sizeof(c->exclude));
	c->n_exclude = nc.n_exclude;
	nc.n_exclude = 0; /* moved */
	c->batch_max_spans = nc.batch_max_spans;
	c->batch_max_bytes = nc.batch_max_bytes;
	c->batch_max_delay_ms = nc.batch_max_delay_ms;
	c->queue_max_bytes = nc.queue_max_bytes;
	reload_jwt(ag, &nc);
	ws_config_free(&nc);
	if (ws_config_exclude_filter(c, ag->exclude))
		ws_err("SIGHUP: out of memory for the subject filter");
	if (ag->sink.ops->limits)
		ag->sink.ops->limits(
			ag->sink.impl, (uint32_t)c->batch_max_spans,
			(uint32_t)c->batch_max_bytes,
			(uint32_t)c->batch_max_delay_ms, c->queue_max_bytes);
	ag->reloads++;
}

static int open_sink(struct agent *ag)
{
	struct ws_nats_export_cfg ec;
	char err[512];

	if (ag->cfg.output == WS_OUTPUT_STDOUT) {
		if (ws_stdout_sink_open(&ag->sink, stdout, STDOUT_BATCH)) {
			ws_err("out of memory");
			return 1;
		}
		return 0;
	}
	/* a dead server must not kill us with a write */
	signal(SIGPIPE, SIG_IGN);
	ws_config_export_cfg(&ag->cfg, &ec);
	if (ws_nats_sink_open(&ag->sink, &ec, err, sizeof(err))) {
		fprintf(stderr, "wirespan: export: %s\n", err);
		return WS_EXIT_USAGE;
	}
	return 0;
}

static bool http_parent(void *ctx, uint32_t tgid, uint32_t tid, uint64_t ts,
			uint8_t trace_id[16], uint8_t span_id[8])
{
	return ws_http_spans_parent(ctx, tgid, tid, ts, trace_id, span_id);
}

static void pipeline_opts(const struct ws_config *c, struct ws_pipeline_opts *o)
{
	uint64_t i;

	ws_pipeline_opts_init(o);
	for (i = 0; i < c->n_pids; i++)
		o->lo.pids[o->lo.n_pids++] = (uint32_t)c->pids[i];
	for (i = 0; i < c->n_ports; i++)
		o->lo.ports[o->lo.n_ports++] = (uint16_t)c->ports[i];
	o->lo.max_capture = (uint32_t)c->max_capture;
	o->lo.max_records = (uint32_t)c->max_records;
	o->lo.ringbuf_size = (uint32_t)c->ringbuf_size;
	o->duration = (double)c->duration_s;
	o->health_addr = c->health_listen;
}

int cmd_agent(int argc, char **argv)
{
	static const struct ws_pipeline_ops ops = {
		.open = on_open,
		.data = on_data,
		.gap = on_gap,
		.close = on_close,
		.proc_exit = on_proc_exit,
		.go = on_go,
		.tick = on_tick,
		.ready = on_ready,
		.dump = on_dump,
		.reload = on_reload,
	};
	static struct ws_agent_args args;
	struct ws_nats_spans_cfg ncfg;
	struct ws_http_spans_cfg hcfg;
	struct ws_enrich_cfg ecfg;
	struct agent ag = {.args = &args};
	struct ws_pipeline_opts o;
	char err[512];
	int rc;

	rc = ws_agent_args_parse(argc, argv, &args);
	if (rc || args.help) {
		if (args.help)
			fputs(ws_agent_usage, stdout);
		ws_agent_args_free(&args);
		return rc;
	}
	if (ws_config_load(&ag.cfg, args.config, args.ov, args.n_ov, NULL, err,
			   sizeof(err))) {
		/* a flag's error starts with the flag: show the usage */
		fprintf(stderr, "wirespan: %s\n%s", err,
			err[0] == '-' ? ws_agent_usage
				      : "(see `wirespan agent --help` and "
					"docs/CONFIGURATION.md)\n");
		ws_agent_args_free(&args);
		return WS_EXIT_USAGE;
	}
	if (args.check_config) {
		ws_config_print(&ag.cfg, stdout);
		ws_config_free(&ag.cfg);
		ws_agent_args_free(&args);
		return 0;
	}
	ws_log_level = (enum ws_log_level)ag.cfg.log_level;
	/* before anything needs them (the secret file, /proc, BPF): a
	 * missing capability is named, not reported as its first symptom */
	if (ws_caps_check(err, sizeof(err))) {
		fprintf(stderr, "wirespan: %s\n", err);
		ws_config_free(&ag.cfg);
		ws_agent_args_free(&args);
		return WS_EXIT_NOPERM;
	}
	pipeline_opts(&ag.cfg, &o);
	ws_nats_spans_cfg_init(&ncfg);
	ncfg.process_timeout_ns = ag.cfg.process_timeout_s * 1000000000ull;
	ncfg.request_timeout_ns = ag.cfg.request_timeout_s * 1000000000ull;
	ag.exclude = ws_subject_filter_new();
	ncfg.exclude = ag.exclude;
	/* validated with the rest of the configuration */
	ws_config_redact(&ag.cfg, &ncfg.redact, err, sizeof(err));
	/* validated with the rest of the configuration */
	ws_config_http_cfg(&ag.cfg, &hcfg, err, sizeof(err));
	if (hcfg.auth.key_hash == WS_KEY_HASH_HMAC &&
	    ws_http_auth_load_secret(&hcfg.auth, ag.cfg.key_hash_secret_file,
				     true, err, sizeof(err))) {
		ws_err("http.key_hash_secret_file: %s", err);
		rc = 1;
		goto out;
	}
	/* validated with the rest of the configuration */
	ws_config_enrich_cfg(&ag.cfg, &ecfg, err, sizeof(err));
	if (ws_enrich_start(&ag.en, &ecfg)) {
		ws_err("out of memory");
		rc = 1;
		goto out;
	}
	ag.ids = ag.en.ids;
	if (ag.cfg.jwks_file && *ag.cfg.jwks_file) {
		struct ws_jwt_verifier_cfg jc;

		ws_config_jwt_cfg(&ag.cfg, &jc);
		ag.jwt = ws_jwt_verifier_new(&jc, err, sizeof(err));
		if (!ag.jwt) {
			ws_err("http.jwks_file: %s", err);
			rc = 1;
			goto out;
		}
		hcfg.auth.jwt_verifier = ag.jwt;
	}
	ag.http = ws_http_spans_new(&hcfg, on_span, &ag);
	OPENSSL_cleanse(hcfg.auth.secret, sizeof(hcfg.auth.secret));
	ncfg.parent = http_parent;
	ncfg.parent_ctx = ag.http;
	ag.nats = ws_nats_spans_new(&ncfg, on_span, &ag);
	if (!ag.ids || !ag.nats || !ag.http || !ag.exclude ||
	    ws_config_exclude_filter(&ag.cfg, ag.exclude)) {
		ws_err("out of memory");
		rc = 1;
		goto out;
	}
	rc = open_sink(&ag);
	if (rc)
		goto out;
	ag.lo = &o.lo;
	rc = ws_pipeline_run(&o, &ops, &ag);
	/* Connections were closed by the pipeline; end what is left. */
	ws_http_spans_end_all(ag.http, ag.last_ts);
	ag.nats_final = *ws_nats_spans_stats(ag.nats);
	ws_nats_spans_free(ag.nats, ag.last_ts);
	ag.nats = NULL;
	ag.sink.ops->drain(ag.sink.impl);
	print_agent_metrics(&ag);
	ag.sink.ops->close(ag.sink.impl);
out:
	ws_gort_free(ag.gort);
	ws_http_spans_free(ag.http, 0);
	ws_jwt_verifier_free(ag.jwt);
	ws_nats_spans_free(ag.nats, 0);
	ws_enrich_stop(&ag.en);
	ws_subject_filter_free(ag.exclude);
	ws_config_free(&ag.cfg);
	ws_agent_args_free(&args);
	return rc;
}
