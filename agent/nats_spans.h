/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NATS span builder: NATS frames of every connection on the host in, spans
 * out. Pure (no I/O, no clock: times come with the bytes), so it is driven
 * byte for byte in unit tests exactly as the agent drives it.
 *
 * Spans derived (docs/ARCHITECTURE.md, "NATS spans", has the rules):
 *   publish <subject>   PRODUCER  a PUB/HPUB a client wrote
 *   process <subject>   CONSUMER  a MSG/HMSG a client read, until the same
 *                                 thread reads again, the reply (or ack) is
 *                                 published, or a timeout
 *   send <subject>      CLIENT    a request: PUB with a reply-to this
 *                                 connection subscribes to, until the reply
 *   publish <subject>   PRODUCER  a JetStream publish (the reply is a PubAck)
 *   receive <stream>    CLIENT    a JetStream pull request
 *   ack|nak|... <stream> CLIENT   a JetStream acknowledgement (settle)
 *   <API op>            CLIENT    a $JS.API call, e.g. STREAM.CREATE
 *   deliver <subject>   PRODUCER  on the nats-server host: a PUB the server
 *                                 read and a MSG it wrote, joined exactly
 */
#ifndef WIRESPAN_NATS_SPANS_H
#define WIRESPAN_NATS_SPANS_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/nats.h"
#include "redact.h"
#include "span.h"
#include "subject_filter.h"

/* Bounds; each has a counter in ws_nats_spans_stats. */
#define WS_NS_MAX_PENDING 16384 /* open requests and process spans */
#define WS_NS_MAX_RECENT 65536	/* publishes/deliveries remembered for links */
#define WS_NS_MAX_SUBS 4096	/* subscriptions per connection */

struct ws_nats_spans_cfg {
	uint64_t process_timeout_ns; /* a process span with no end evidence */
	uint64_t request_timeout_ns; /* a request with no reply */
	uint64_t recent_ttl_ns;	     /* how long a publish can be linked to */
	/*
	 * Optional: the span of another protocol (an HTTP server span) that
	 * thread tid of process tgid is handling at ts_ns. A publish or
	 * request with no NATS process span to parent to becomes its child.
	 */
	bool (*parent)(void *ctx, uint32_t tgid, uint32_t tid, uint64_t ts_ns,
		       uint8_t trace_id[16], uint8_t span_id[8]);
	void *parent_ctx;
	/* messages (PUB/MSG) on these subjects derive no spans; not owned,
	 * may be NULL (the agent's own telemetry subjects: no loop) */
	struct ws_subject_filter *exclude;
	/* which CONNECT fields may be kept (zeroed: the built-in list) */
	struct ws_redact redact;
};

struct ws_nats_spans_stats {
	uint64_t spans[6]; /* emitted, by ws_span_kind */
	uint64_t publish, process, request, js_publish, pull, settle, js_api,
		deliver;
	uint64_t process_end_read, process_end_reply, process_end_timeout,
		process_end_close;
	uint64_t request_timeout, request_no_responders, request_closed;
	uint64_t parent_traceparent, parent_in_process, parent_same_host,
		parent_delivery, parent_sole_request;
	uint64_t pending_evicted; /* open spans ended early: table full */
	uint64_t recent_evicted;  /* link candidates forgotten: table full */
	uint64_t subs_dropped;	  /* SUBs not remembered: table full */
	uint64_t no_fingerprint;  /* payload not available to fingerprint */
	uint64_t bad_json;     /* INFO/CONNECT/JWT/PubAck that did not parse */
	uint64_t parse_errors; /* NATS parse errors (all connections) */
	uint64_t gap_bytes;    /* stream bytes the parsers skipped */
	uint64_t nomem;
	uint64_t excluded; /* PUB/MSG frames skipped by cfg.exclude */
};

/* Takes ownership of s. */
typedef void (*ws_span_emit_fn)(void *ctx, struct ws_span *s);

struct ws_nats_spans;
struct ws_nats_conn;

/* What the pipeline knows of a connection. */
struct ws_nats_conn_info {
	uint32_t tgid;
	int32_t fd;
	uint8_t role;	  /* enum ws_role */
	bool preexisting; /* followed from the middle */
	char laddr[48], raddr[48];
	uint16_t lport, rport;
	struct ws_resource *resource; /* referenced by the connection */
	/* peer attributes (agent/peers.h) every span gets; may be NULL;
	 * referenced by the connection */
	struct ws_resource *peer;
};

void ws_nats_spans_cfg_init(struct ws_nats_spans_cfg *cfg);
struct ws_nats_spans *ws_nats_spans_new(const struct ws_nats_spans_cfg *cfg,
					ws_span_emit_fn emit, void *ctx);
/* Ends every open span (as at close) and frees. */
void ws_nats_spans_free(struct ws_nats_spans *b, uint64_t now_ns);
/* Time-outs: call regularly with the current unix time. */
void ws_nats_spans_tick(struct ws_nats_spans *b, uint64_t now_ns);
const struct ws_nats_spans_stats *
ws_nats_spans_stats(const struct ws_nats_spans *b);

struct ws_nats_conn *ws_nats_conn_new(struct ws_nats_spans *b,
				      const struct ws_nats_conn_info *info);
/* Bytes of one direction (enum ws_dir), read or written by thread tid at
 * ts_ns (unix). */
int ws_nats_conn_feed(struct ws_nats_conn *nc, uint8_t dir, const uint8_t *buf,
		      size_t len, uint32_t tid, uint64_t ts_ns);
int ws_nats_conn_gap(struct ws_nats_conn *nc, uint8_t dir, uint64_t len);
/* The connection is gone: end its open spans, free it. */
void ws_nats_conn_close(struct ws_nats_conn *nc, uint64_t ts_ns);

/* The client's name from its CONNECT (NULL before one, or without a name). */
const char *ws_nats_conn_client_name(const struct ws_nats_conn *nc);

/* Exposed for tests. */
uint64_t ws_nats_fingerprint(const char *subject, size_t subject_len,
			     uint64_t size, const uint8_t *payload,
			     size_t avail, bool *ok);
/* Decode the claims (middle part) of a JWT into a json-c object, or NULL. */
struct json_object *ws_jwt_claims(const char *jwt, size_t len);

#endif
