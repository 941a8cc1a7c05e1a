/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure core of `wirespan relay`: a bounded queue of OTLP payloads from
 * NATS, cut into batches for the backend, and the OTLP retry rules applied
 * to what the backend answered. No I/O and no clock: the caller passes a
 * monotonic now_ns, does the HTTP POST itself and reports the outcome.
 *
 * Batching needs no decoding: protobuf concatenation of two
 * ExportTraceServiceRequest messages is one message holding both lists of
 * resource_spans, so a batch is its payloads end to end. Each payload is
 * checked (pb_guard) and its spans counted on the wire when it is pushed; a
 * payload that is not valid OTLP protobuf is dropped and counted (sending it
 * would make the backend refuse the whole batch with 400).
 *
 * Every payload carries a caller token (a JetStream message to ack, or
 * NULL). When its batch is finished the release callback gets the token and
 * whether the backend accepted it, so JetStream messages are acked only
 * after the backend has taken them.
 *
 * Retry rules (OTLP/HTTP): 2xx is success (a partial_success rejection is
 * counted, not retried); 429, 502, 503, 504 and transport errors are retried
 * after Retry-After when the server gave one, else after an exponential
 * backoff with full jitter, for at most max_elapsed_ns; any other status
 * (400 ...) is never retried. Dropped spans are counted by reason.
 */
#ifndef WIRESPAN_RELAY_H
#define WIRESPAN_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_RELAY_DEFAULT_QUEUE_BYTES (64u << 20)
#define WS_RELAY_DEFAULT_BATCH_BYTES (4u << 20)
#define WS_RELAY_DEFAULT_BATCH_SPANS 8192
#define WS_RELAY_DEFAULT_DELAY_NS 1000000000ull	       /* 1 s */
#define WS_RELAY_DEFAULT_BACKOFF_NS 500000000ull       /* first retry */
#define WS_RELAY_DEFAULT_BACKOFF_MAX_NS 30000000000ull /* 30 s */
#define WS_RELAY_DEFAULT_ELAPSED_NS 300000000000ull    /* 5 min */

/* Why spans were dropped: the index into ws_relay_stats.dropped. */
enum ws_relay_drop {
	WS_DROP_BAD_MESSAGE = 0,   /* not OTLP protobuf (counted in messages) */
	WS_DROP_QUEUE_FULL,	   /* the queue bound pushed out the oldest */
	WS_DROP_REJECTED,	   /* a status that must not be retried (400) */
	WS_DROP_RETRIES_EXHAUSTED, /* still failing after max_elapsed_ns */
	WS_DROP_PARTIAL,	   /* partial_success.rejected_spans */
	WS_DROP_SHUTDOWN,	   /* still queued when the relay stopped */
	WS_DROP_MAX
};
extern const char *const ws_relay_drop_names[WS_DROP_MAX];

#define WS_RELAY_DELIVERED (-1)

/* What became of one POST, as the caller saw it. */
enum ws_relay_verdict {
	WS_VERDICT_OK,	  /* 2xx */
	WS_VERDICT_RETRY, /* 429, 502, 503, 504, transport error */
	WS_VERDICT_DROP,  /* anything else */
};

struct ws_relay_cfg {
	size_t max_queue_bytes; /* payload bytes held, batch in flight too */
	size_t max_batch_bytes, max_batch_spans;
	uint64_t max_delay_ns; /* oldest queued payload waits at most this */
	uint64_t backoff_ns, backoff_max_ns, max_elapsed_ns;
	/* token of a finished payload: why is WS_RELAY_DELIVERED (the
	 * backend accepted it) or the enum ws_relay_drop it was dropped for */
	void (*release)(void *ctx, void *token, int why);
	void *ctx;
};

struct ws_relay_stats {
	uint64_t messages_in, spans_in, bytes_in;
	uint64_t batches_out, spans_out, bytes_out;
	uint64_t posts;	  /* attempts */
	uint64_t retries; /* attempts that were retries */
	uint64_t retry_after_used;
	uint64_t dropped[WS_DROP_MAX];		/* spans, by reason */
	uint64_t dropped_messages[WS_DROP_MAX]; /* payloads, by reason */
	uint64_t status_2xx, status_4xx, status_5xx, transport_errors;
	uint64_t latency_ns_sum, latency_ns_max; /* per attempt */
	uint64_t queued_bytes, queued_messages;	 /* now, in flight too */
	uint64_t peak_queued_bytes;
};

/* A batch to POST: data[0..len) is one ExportTraceServiceRequest. */
struct ws_relay_batch {
	const uint8_t *data;
	size_t len;
	size_t spans, messages;
	unsigned attempt; /* 0 for the first POST */
};

struct ws_relay;

void ws_relay_cfg_init(struct ws_relay_cfg *cfg);
struct ws_relay *ws_relay_new(const struct ws_relay_cfg *cfg);
/* ws_relay_drop_all, then free. */
void ws_relay_free(struct ws_relay *r);

/*
 * Queue one payload (copied). Returns 0, -EBADMSG (not OTLP: counted,
 * released undelivered), -ENOMEM. Oldest queued payloads not in flight are
 * dropped (and released undelivered) to make room, counted as queue_full.
 */
int ws_relay_push(struct ws_relay *r, const uint8_t *buf, size_t len,
		  void *token, uint64_t now_ns);
/* The same for a payload the caller has checked (ws_pb_check) and whose
 * spans it has counted: the stitcher's, which read every span already. */
int ws_relay_push_checked(struct ws_relay *r, const uint8_t *buf, size_t len,
			  size_t spans, void *token, uint64_t now_ns);
/* Bytes that can be pushed without dropping anything. */
size_t ws_relay_room(const struct ws_relay *r);

/*
 * The batch to POST now, if any: a retry that is due, or a new batch when
 * the queue holds max_batch_bytes / max_batch_spans or its oldest payload
 * has waited max_delay_ns (flush: any queued payload). Valid until
 * ws_relay_done. Returns true with *b filled.
 */
bool ws_relay_next(struct ws_relay *r, uint64_t now_ns, bool flush,
		   struct ws_relay_batch *b);
/* When ws_relay_next may next have something (for the caller's sleep). */
uint64_t ws_relay_wake_ns(const struct ws_relay *r, uint64_t now_ns);

/*
 * The outcome of the POST of the batch from ws_relay_next. status: the
 * HTTP status, or 0 for a transport error (verdict from
 * ws_relay_verdict_of). retry_after_ns: the server's Retry-After, or
 * UINT64_MAX if none. rejected: partial_success.rejected_spans (0 if none).
 * latency_ns: how long the attempt took. rnd: a random number for the
 * jitter.
 */
void ws_relay_done(struct ws_relay *r, int status, uint64_t retry_after_ns,
		   uint64_t rejected, uint64_t latency_ns, uint32_t rnd,
		   uint64_t now_ns);
/* Drop the batch in flight and everything queued (relay stopping):
 * released undelivered, counted as shutdown. */
void ws_relay_drop_all(struct ws_relay *r);
/* fn(ctx, token) for every payload held (in flight and queued). */
void ws_relay_foreach_token(struct ws_relay *r, void (*fn)(void *, void *),
			    void *ctx);
/* Nothing queued and nothing in flight. */
bool ws_relay_idle(const struct ws_relay *r);
const struct ws_relay_stats *ws_relay_stats(const struct ws_relay *r);

/* ---- the rules, separately testable ---- */

enum ws_relay_verdict ws_relay_verdict_of(int status);
/*
 * A Retry-After value: delay-seconds or an HTTP-date (compared with
 * now_unix). Returns 0 with *ns set, or -EINVAL.
 */
int ws_relay_retry_after(const char *value, int64_t now_unix, uint64_t *ns);
/* Full-jitter exponential backoff for retry number attempt (1 = first). */
uint64_t ws_relay_backoff(uint64_t base_ns, uint64_t max_ns, unsigned attempt,
			  uint32_t rnd);

#endif
