/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NATS span sink: spans in (agent pipeline thread), OTLP protobuf
 * ExportTraceServiceRequest batches out, published on
 * `<prefix>.traces.<domain>.<node>` (the template is configurable).
 *
 *   pipeline thread                         publisher thread (+ nats.c's)
 *   ws_nats_export_span()  ─► open batch per domain
 *      full (spans, bytes) or older than max_delay
 *      ─► encode (otlp_pb) ─► natsMsg + headers ─► bounded queue ─► publish
 *
 * The pipeline thread never waits on NATS: it only takes a mutex for the
 * time of a list operation. The queue is bounded in bytes; when a new batch
 * does not fit, the oldest queued batches are dropped and counted (batches,
 * spans, bytes). Batches stay in the queue while the connection is down.
 *
 * Delivery modes:
 *  core       publish, then PING/PONG (flush): a batch counts as sent when
 *             the server has read it; on failure it goes back to the head of
 *             the queue and is sent again (same Nats-Msg-Id, so consumers
 *             can drop the duplicate).
 *  jetstream  async publish with PubAcks, at most js_max_pending in flight,
 *             MaxWait per message; a failed or timed-out publish goes back
 *             to the head of the queue and is sent again with the same
 *             Nats-Msg-Id: at-least-once, deduplicated by the stream.
 *
 * Headers of every message: Content-Type: application/x-protobuf,
 * Wirespan-Node, Wirespan-Boot (agent start, unix ms), Wirespan-Seq (per
 * agent, from 1, gaps = batches lost), Wirespan-Spans, and
 * Nats-Msg-Id = <node>:<boot>:<seq>.
 */
#ifndef WIRESPAN_NATS_EXPORT_H
#define WIRESPAN_NATS_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "natsconn.h"
#include "sink.h"
#include "span.h"

#define WS_EXPORT_DEFAULT_PREFIX "otel"
#define WS_EXPORT_DEFAULT_TEMPLATE "{prefix}.traces.{domain}.{node}"
/* A node token longer than this is cut. */
#define WS_EXPORT_NODE_MAX 128
/* Bytes of a message kept free for headers below the server's max_payload. */
#define WS_EXPORT_HEADER_ROOM 1024
/* Longest subject an expanded template may give. */
#define WS_EXPORT_SUBJECT_MAX 512

enum ws_export_mode {
	WS_EXPORT_CORE = 0,
	WS_EXPORT_JETSTREAM = 1,
};

struct ws_nats_export_cfg {
	struct ws_natsconn_cfg conn;
	const char *prefix;	      /* NULL: "otel" */
	const char *subject_template; /* NULL: the default */
	const char *node;	      /* sanitised here; NULL: hostname */
	enum ws_export_mode mode;
	uint32_t batch_max_spans;    /* spans per message */
	uint32_t batch_max_bytes;    /* target encoded bytes per message */
	uint32_t batch_max_delay_ms; /* oldest span waits at most this */
	uint64_t queue_max_bytes;    /* queued + in-flight encoded bytes */
	const char *js_stream;	     /* optional: expected stream */
	uint32_t js_max_wait_ms;     /* PubAck wait (core: flush wait) */
	uint32_t js_max_pending;     /* jetstream: publishes in flight */
	uint32_t drain_timeout_ms;   /* at close: time to empty the queue */
	/* core: after a reconnect, wait this long before publishing again,
	 * so that consumers reconnecting at the same time have resubscribed
	 * (core NATS drops what nobody is subscribed to, uncounted) */
	uint32_t reconnect_settle_ms;
	bool no_connect; /* tests: no connection, no thread; see _take */
};

/* Counters; a snapshot from ws_nats_export_stats(). */
struct ws_nats_export_stats {
	uint64_t spans_in;	/* spans handed to the sink */
	uint64_t batches;	/* messages made */
	uint64_t encoded_bytes; /* their payload bytes */
	uint64_t flush_spans, flush_bytes, flush_delay, flush_exit; /* why */
	uint64_t split; /* batches split: over max_bytes or max_payload */
	uint64_t oversize_spans; /* one span alone over max_payload */
	uint64_t encode_errors;	 /* spans lost: encoder or nomem */
	uint64_t sent_batches, sent_spans, sent_bytes; /* flushed / acked */
	uint64_t publish_errors; /* publish calls that failed */
	uint64_t flush_errors;	 /* core: PING/PONG that failed */
	uint64_t resent;	 /* batches sent again after a failure */
	uint64_t js_acks, js_duplicates, js_errors, js_timeouts;
	uint64_t dropped_batches, dropped_spans, dropped_bytes; /* queue full */
	uint64_t exit_dropped_batches, exit_dropped_spans; /* not drained */
	/*
	 * Of the dropped and exit-dropped spans, those of batches that had
	 * been published in a core round whose PING/PONG then failed: the
	 * server may have taken them before the connection went, so a
	 * consumer can receive up to this many of the spans counted dropped.
	 */
	uint64_t dropped_unconfirmed_spans;
	uint64_t queue_batches, queue_bytes; /* now: queued + in flight */
	uint64_t queue_peak_bytes;
	uint64_t inflight;
	uint64_t seq;		  /* last batch sequence given */
	uint64_t max_payload;	  /* server's, 0 until connected once */
	uint64_t queue_max_bytes; /* the bound */
	/* the connection (natsconn) */
	uint64_t connected, disconnects, reconnects, async_errors,
		not_permitted, slow_consumer;
};

struct ws_nats_export;

/* Replace every byte of in that cannot be in a subject token ('.', '*',
 * '>', whitespace, control and non-ASCII) by '_'; cut to
 * WS_EXPORT_NODE_MAX. Empty gives "unknown". out needs
 * WS_EXPORT_NODE_MAX + 1 bytes. */
void ws_export_node_sanitize(const char *in, char *out);

/* Expand a subject template ({prefix}, {domain}, {node}) and check the
 * result is a valid subject (no wildcards). Returns 0 or -EINVAL with a
 * reason in *why. */
int ws_export_subject(const char *tmpl, const char *prefix, const char *domain,
		      const char *node, char *out, size_t cap,
		      const char **why);

/* The <domain> token of a span domain. */
const char *ws_export_domain_name(uint8_t domain);

/* Check cfg (template, sizes) without connecting. 0 or -1 and err. */
int ws_nats_export_check(const struct ws_nats_export_cfg *cfg, char *err,
			 size_t errlen);

/* Connect (retrying in the background if the server is down) and start
 * the publisher thread. NULL and a message in err on failure. */
struct ws_nats_export *ws_nats_export_new(const struct ws_nats_export_cfg *cfg,
					  char *err, size_t errlen);
/* Takes ownership of s. Pipeline thread only. */
void ws_nats_export_span(struct ws_nats_export *e, struct ws_span *s);
/* Flush batches older than the max delay. Pipeline thread only. */
void ws_nats_export_tick(struct ws_nats_export *e, uint64_t mono_ns);
/* Flush every open batch now. Pipeline thread only. */
void ws_nats_export_flush(struct ws_nats_export *e);
/* New batch and queue bounds (SIGHUP). Pipeline thread only. */
void ws_nats_export_set_limits(struct ws_nats_export *e, uint32_t max_spans,
			       uint32_t max_bytes, uint32_t max_delay_ms,
			       uint64_t queue_max_bytes);
/* Pipeline thread (spans_in is its own). */
void ws_nats_export_stats(struct ws_nats_export *e,
			  struct ws_nats_export_stats *st);
/* Members of an "export" object, into w's open object. */
void ws_nats_export_metrics(struct ws_nats_export *e, struct ws_jsonw *w);
/* Flush, wait up to drain_timeout_ms for the queue to empty, stop the
 * publisher and count what is left (exit_dropped_*): the counters are
 * final. Pipeline thread only; no span may come after. */
void ws_nats_export_drain(struct ws_nats_export *e);
/* Drain if not drained, close the connection, free. */
void ws_nats_export_close(struct ws_nats_export *e);

/* Tests (no_connect): the oldest queued message, now the caller's. */
natsMsg *ws_nats_export_take(struct ws_nats_export *e);

/* The sink interface over a new export. 0, or -1 with err. */
int ws_nats_sink_open(struct ws_sink *sink,
		      const struct ws_nats_export_cfg *cfg, char *err,
		      size_t errlen);

#endif
