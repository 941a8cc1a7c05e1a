/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.x span builder: the bytes of every HTTP connection on the host in,
 * spans out. Pure (no I/O, no clock: times come with the bytes), so unit
 * tests drive it byte for byte exactly as the agent does.
 *
 * One exchange (request + final response) is one span:
 *   <METHOD> <route>  SERVER  accepted connections: from the first request
 *                             byte read to the last response byte written
 *   <METHOD>          CLIENT  connected sockets: from the first request byte
 *   <METHOD> <tmpl>           written to the last response byte read (the
 *                             template when an explicit route matched)
 *
 * Gateway hops: a CLIENT span is made the child of the SERVER span of the
 * same process whose request it serves (evidence: forwarded traceparent,
 * same thread, then a heuristic; the span carries wirespan.link.evidence).
 * docs/ARCHITECTURE.md ("HTTP spans") has the rules and the evidence.
 *
 * Not thread-safe: one builder is driven by one thread.
 */
#ifndef WIRESPAN_HTTP_SPANS_H
#define WIRESPAN_HTTP_SPANS_H

#include <stdbool.h>
#include <stdint.h>

#include "http_auth.h"
#include "nats_spans.h" /* ws_span_emit_fn */
#include "proto/http.h"
#include "span.h"

/* Explicit route patterns at most. */
#define WS_HTTP_MAX_ROUTES 64
/* Longest route or template (longer paths are cut at a segment). */
#define WS_HTTP_MAX_ROUTE 256
/* Path segments templated at most; the rest becomes one "*". */
#define WS_HTTP_MAX_SEGMENTS 12

/*
 * Every setting of the HTTP spans. ws_http_spans_cfg_init() gives the
 * defaults; strings are pointers that must outlive the builder.
 */
struct ws_http_spans_cfg {
	/* An exchange without its final response ends (error.type timeout)
	 * after this long. Default 60 s. */
	uint64_t request_timeout_ns;
	/* Requests waiting for their response on one connection (pipelining);
	 * more are not tracked (pending_dropped). Default
	 * WS_HTTP_MAX_PIPELINE, the parser's own bound. */
	uint32_t max_pending_conn;
	/* Exchanges open in all; past it the oldest ends (pending_evicted).
	 * Default 16384. */
	uint32_t max_pending;
	/* Open inbound requests of one process compared with each upstream
	 * call, newest first (link_candidates_cut). Default 512. */
	uint32_t max_link_candidates;
	/* Go runtime facts kept (goroutines and requests in flight); past
	 * it the oldest goes (go_evicted). Default 65536. */
	uint32_t max_go_facts;
	/* Link upstream calls to inbound requests in the same process when
	 * no traceparent decides (same thread, heuristic). Default true. */
	bool link_heuristic;
	/*
	 * Explicit route patterns, tried in order before the template rules:
	 * literal segments, "{name}" for any one segment, a final "*" for
	 * any rest, e.g. "/api/v1/users/{user}/orders" or "/static/" followed by a star.
	 */
	const char *routes[WS_HTTP_MAX_ROUTES];
	unsigned n_routes;
	/* Request headers recorded as http.request.header.<lowercase name>;
	 * names ws_http_header_is_secret() flags are refused. */
	const char *capture_headers[WS_AUTH_MAX_HEADERS];
	unsigned n_capture_headers;
	/* Caller identity (http_auth.h). */
	struct ws_http_auth_cfg auth;
};

struct ws_http_spans_stats {
	uint64_t spans[6];	 /* emitted, by ws_span_kind */
	uint64_t server, client; /* exchanges started */
	uint64_t interim;	 /* 1xx responses before a final one */
	uint64_t upgrades;	 /* 101 / CONNECT 2xx: the connection stops */
	/* how exchanges ended */
	uint64_t end_response, end_closed, end_timeout, end_evicted;
	uint64_t orphan_responses; /* a response with no request to pair */
	uint64_t resync;	   /* a message after lost bytes */
	uint64_t
		gap_messages; /* messages that lost bytes to a gap (still ended) */
	uint64_t pending_dropped; /* requests not tracked: connection full */
	uint64_t pending_evicted; /* exchanges ended early: builder full */
	/* gateway hops: which evidence linked an upstream call, or none;
	 * ambiguous: linked, but no evidence decided between candidates */
	uint64_t link_traceparent, link_thread, link_heuristic, link_none;
	uint64_t link_thread_order, link_dial, link_queue, link_ambiguous;
	/* queue and ambiguous links the response thread settled (moved
	 * from those counters) */
	uint64_t link_response_thread;
	uint64_t link_candidates_cut; /* inbound requests not compared */
	/* Go runtime evidence (ws_http_spans_go): links by it, hand-overs
	 * and writes reported, writes of a request no hand-over named,
	 * facts whose inbound request had ended, facts evicted
	 * (max_go_facts), malformed reports */
	uint64_t link_goroutine, go_round_trips, go_writes, go_unmatched,
		go_stale, go_evicted, go_bad;
	uint64_t traceparent_in;  /* server spans continuing a trace */
	uint64_t bad_traceparent; /* traceparent headers that did not parse */
	uint64_t nats_parent; /* NATS spans parented to an HTTP server span */
	/* same-host hops: server spans made the child of the client span at
	 * the other end of their connection; too late (a child had its ids) */
	uint64_t hop_linked, hop_late;
	uint64_t capture_refused; /* capture header names refused: secret */
	uint64_t route_explicit;  /* routes from the pattern table */
	uint64_t conns, conns_unknown_role;
	/* parser counters, summed over closed connections */
	uint64_t parse_errors[WS_HTTP_ERR_MAX];
	uint64_t stops[WS_HTTP_STOP_MAX];
	uint64_t gap_bytes, skipped_bytes, stopped_bytes, truncated,
		expect_full;
	struct ws_http_auth_stats auth;
	uint64_t nomem;
};

struct ws_http_spans;
struct ws_http_conn;

/* What the pipeline knows of a connection. */
struct ws_http_conn_info {
	uint32_t tgid;
	int32_t fd;
	uint8_t role;	  /* enum ws_role; unknown: guessed from the bytes */
	bool preexisting; /* followed from the middle */
	char laddr[48], raddr[48];
	uint16_t lport, rport;
	/* unix ns the connection was made (connect/accept), 0 if unknown */
	uint64_t open_ns;
	uint32_t open_tid; /* the thread that made it, 0 if unknown */
	struct ws_resource *resource; /* referenced by the connection */
};

void ws_http_spans_cfg_init(struct ws_http_spans_cfg *cfg);
/* The cfg is copied (its strings are not). NULL + errno. */
struct ws_http_spans *ws_http_spans_new(const struct ws_http_spans_cfg *cfg,
					ws_span_emit_fn emit, void *ctx);
/* Close every connection (ending its exchanges as at close). */
void ws_http_spans_end_all(struct ws_http_spans *b, uint64_t now_ns);
/*
 * ws_http_spans_end_all, then free. The attribute keys of captured headers
 * belong to the builder: export (or free) the spans it emitted before.
 */
void ws_http_spans_free(struct ws_http_spans *b, uint64_t now_ns);
/* Verify bearer JWTs with v from now on (NULL: no more); not owned. */
void ws_http_spans_set_verifier(struct ws_http_spans *b,
				struct ws_jwt_verifier *v);
/* Time-outs: call regularly with the current unix time. */
void ws_http_spans_tick(struct ws_http_spans *b, uint64_t now_ns);
/* Counters; the parser ones include the connections still open. */
const struct ws_http_spans_stats *ws_http_spans_stats(struct ws_http_spans *b);

struct ws_http_conn *ws_http_conn_new(struct ws_http_spans *b,
				      const struct ws_http_conn_info *info);
/* Bytes of one direction (enum ws_dir), read or written by thread tid at
 * ts_ns (unix; egress: the write began, ingress: the read returned). */
int ws_http_conn_feed(struct ws_http_conn *hc, uint8_t dir, const uint8_t *buf,
		      size_t len, uint32_t tid, uint64_t ts_ns);
/* The same from a Go process whose data records name the goroutine g
 * (ws_data.go_g; 0: unknown, as ws_http_conn_feed). */
int ws_http_conn_feed_g(struct ws_http_conn *hc, uint8_t dir,
			const uint8_t *buf, size_t len, uint32_t tid,
			uint64_t g, uint64_t ts_ns);
/* len bytes of one direction are missing here. */
int ws_http_conn_gap(struct ws_http_conn *hc, uint8_t dir, uint64_t len);
/* The connection is gone: end its exchanges, free it. */
void ws_http_conn_close(struct ws_http_conn *hc, uint64_t ts_ns);

/*
 * The HTTP server span that thread tid of process tgid is handling at ts:
 * the newest open inbound request that thread read, else the only open one
 * of the process. For NATS spans (ws_nats_spans_cfg.parent). Returns true
 * and the span's ids, or false.
 */
bool ws_http_spans_parent(struct ws_http_spans *b, uint32_t tgid, uint32_t tid,
			  uint64_t ts_ns, uint8_t trace_id[16],
			  uint8_t span_id[8]);

/*
 * Go runtime evidence (bpf/gort.bpf.h): in process tgid, goroutine g ran
 * kind (enum ws_go_kind) for the *http.Request at address req. A hand-over
 * (WS_GO_ROUND_TRIP) on the goroutine that read an inbound request, then
 * the write (WS_GO_REQ_WRITE) of the same req on another goroutine, make
 * the next upstream request that goroutine writes the inbound request's
 * child (wirespan.link.evidence=goroutine). Reports must come in the
 * order they happened relative to the bytes fed.
 */
void ws_http_spans_go(struct ws_http_spans *b, uint32_t tgid, uint8_t kind,
		      uint64_t g, uint64_t req);

/* Exposed for tests. */
/* The route of path into out: an explicit pattern (returns true) or the
 * template rules (false). */
bool ws_http_route(const struct ws_http_spans_cfg *cfg, const char *path,
		   size_t len, char *out, size_t cap);
/* A query string with the values of secret-looking parameters replaced. */
void ws_http_redact_query(const char *q, size_t len, char *out, size_t cap);

#endif /* WIRESPAN_HTTP_SPANS_H */
