/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure core of the relay's cross-host trace stitching: which span joins
 * which, and when a held payload may go. No protobuf, no I/O, no clock: the
 * caller describes each span of a payload (struct ws_stitch_span), passes a
 * monotonic now_ns, and is told through callbacks what to rewrite and which
 * payloads are ready.
 *
 * Roles (the caller classifies a span from its kind and attributes):
 *   anchor: the producer or client end of a hop: a NATS publish or request
 *           span (by message fingerprint), an HTTP client span (by the
 *           connection's 5-tuple and request sequence number);
 *   seeker: the consumer or server end, with no parent of its own: a NATS
 *           process span (by wirespan.nats.delivery_id, the id of the
 *           nats-server host's deliver span, else by fingerprint), an HTTP
 *           server span (by the mirrored 5-tuple and sequence number).
 * A joined seeker gets the anchor as parent and the anchor's trace. Every
 * span whose parent is known to the stitcher takes its parent's final trace
 * (so the rest of a rewritten trace follows), and a span whose parent is
 * still unknown or unsettled waits for it, so a child never leaves with the
 * trace its parent is about to lose.
 *
 * Evidence, best first: nats.delivery_id (the broker's own hop, exact), then
 * nats.fingerprint (time order: the earliest unclaimed publish not later
 * than the consumer; "ambiguous" when more than one could be it), and
 * http.conn (tuple + sequence number, exact). A span whose parent is no
 * span's id but a responder's reply id (the nats-server host's deliver span
 * of a reply) gets that responder's span as parent: nats.reply_id (exact). An HTTP server span whose
 * tuple half-matches a client span (one end's address agrees, the other's
 * does not) went through NAT or a proxy: it is left alone and counted.
 *
 * Bounds: a span waits at most window_ns (then it leaves unjoined, counted
 * as a timeout); spans are remembered for joining 2 * window_ns; at most
 * max_spans are remembered and max_held_bytes of payload held: past them
 * the oldest are let go (counted as evicted).
 */
#ifndef WIRESPAN_STITCH_H
#define WIRESPAN_STITCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_STITCH_DEFAULT_WINDOW_NS 2000000000ull /* 2 s */
#define WS_STITCH_DEFAULT_MAX_SPANS 262144
#define WS_STITCH_DEFAULT_MAX_HELD_BYTES (64u << 20)
/* A consumer may start this much before its producer (clock skew between
 * hosts, and a read's timestamp being its return) and still join it. */
#define WS_STITCH_SKEW_NS 50000000ull /* 50 ms */

enum ws_stitch_role {
	WS_STITCH_PLAIN = 0,
	WS_STITCH_NATS_ANCHOR,
	WS_STITCH_NATS_SEEKER,
	WS_STITCH_HTTP_CLIENT,
	WS_STITCH_HTTP_SERVER,
};

/* An endpoint as text (address, not NUL-terminated) and port. */
struct ws_stitch_ep {
	const char *addr; /* NULL: unknown */
	size_t addr_len;
	int64_t port;
};

/* One span as the caller sees it (copied; ref is the caller's handle). */
struct ws_stitch_span {
	void *ref;
	uint8_t trace_id[16], span_id[8], parent_span_id[8];
	bool has_parent;
	uint64_t start_ns; /* the span's own time (unix ns) */
	uint8_t role;	   /* enum ws_stitch_role */
	/* NATS */
	uint64_t fingerprint;
	bool has_fingerprint;
	uint8_t delivery_id[8];
	bool has_delivery;
	/* a responder's process span: the id nats-server's host derives for
	 * the reply it published (wirespan.nats.reply_id), which that host's
	 * deliver span of the reply names as its parent: such a parent is
	 * rewritten to this span */
	uint8_t reply_id[8];
	bool has_reply_id;
	/* HTTP: this side's local and peer endpoints, and the sequence */
	struct ws_stitch_ep local, peer;
	int64_t seq;
};

struct ws_stitch_cfg {
	uint64_t window_ns;
	size_t max_spans, max_held_bytes;
	/*
	 * Rewrite span ref of the payload token: the new trace id, the new
	 * parent (NULL: keep) and, for a join, the evidence text for
	 * wirespan.stitch.evidence (NULL: none). Returns 0 or -ENOMEM.
	 */
	int (*rewrite)(void *ctx, void *token, void *ref,
		       const uint8_t trace[16], const uint8_t *parent,
		       const char *evidence);
	/* Payload token may go; modified: a rewrite touched it. */
	void (*ready)(void *ctx, void *token, bool modified);
	void *ctx;
};

struct ws_stitch_stats {
	uint64_t messages, spans;
	uint64_t joins_delivery, joins_fingerprint, joins_http;
	uint64_t joins_reply;  /* reply deliver spans given their responder */
	uint64_t ambiguous;    /* fingerprint joins with several candidates */
	uint64_t trace_follow; /* spans that took a rewritten parent's trace */
	uint64_t timeouts;     /* seekers that left unjoined */
	uint64_t orphan_timeouts; /* spans whose parent never came */
	uint64_t nat_mismatch;	  /* HTTP tuples that do not mirror */
	uint64_t evicted;	  /* let go early by max_spans/max_held_bytes */
	uint64_t rewrite_errors;
	uint64_t held_spans, held_messages, held_bytes; /* now */
	uint64_t peak_held_bytes;
	uint64_t remembered; /* spans in the index now */
};

struct ws_stitch;

void ws_stitch_cfg_init(struct ws_stitch_cfg *cfg);
struct ws_stitch *ws_stitch_new(const struct ws_stitch_cfg *cfg);
/* ws_stitch_flush, then free. */
void ws_stitch_free(struct ws_stitch *st);

/*
 * One payload: its n spans (in any order; parents within the payload are
 * found). bytes: its size, for the held bound. ready() may be called for it
 * (and for others it unblocked) before this returns. Returns 0 or -ENOMEM
 * (then the payload was made ready as it is).
 */
int ws_stitch_add(struct ws_stitch *st, void *token, size_t bytes,
		  const struct ws_stitch_span *spans, size_t n,
		  uint64_t now_ns);
/* Let go of what waited window_ns (timeouts). */
void ws_stitch_tick(struct ws_stitch *st, uint64_t now_ns);
/* When ws_stitch_tick next has something to do (UINT64_MAX: nothing). */
uint64_t ws_stitch_wake_ns(const struct ws_stitch *st);
/* Let every held payload go now (relay stopping). */
void ws_stitch_flush(struct ws_stitch *st);
const struct ws_stitch_stats *ws_stitch_stats(const struct ws_stitch *st);

#endif
