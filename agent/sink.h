/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where `wirespan agent` sends finished spans: OTLP/JSON lines on stdout
 * (debugging) or OTLP protobuf over NATS (agent/export/nats_export.h). The
 * agent's pipeline thread calls every op; a sink never blocks it on I/O
 * that can stall (the NATS sink hands batches to its own thread).
 */
#ifndef WIRESPAN_SINK_H
#define WIRESPAN_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jsonw.h"
#include "span.h"

struct ws_sink_ops {
	/* Takes ownership of s. */
	void (*span)(void *impl, struct ws_span *s);
	/* About every poll interval, CLOCK_MONOTONIC ns: time-based flushes. */
	void (*tick)(void *impl, uint64_t mono_ns);
	/* Spans accepted so far, and spans lost to output errors. */
	void (*counts)(void *impl, uint64_t *spans_out, uint64_t *errors);
	/* The sink's own counters as members of w's open object (may be
	 * NULL). */
	void (*metrics)(void *impl, struct ws_jsonw *w);
	/* New batch and queue bounds (SIGHUP); may be NULL. */
	void (*limits)(void *impl, uint32_t max_spans, uint32_t max_bytes,
		       uint32_t max_delay_ms, uint64_t queue_max_bytes);
	/* Flush what is buffered, waiting a bounded time; the counters are
	 * final afterwards. */
	void (*drain)(void *impl);
	/* Free. */
	void (*close)(void *impl);
	/* The local address and port of the sink's own network connection,
	 * if it has one now (may be NULL): true and ip/port set. */
	bool (*own_endpoint)(void *impl, char *ip, size_t iplen,
			     uint16_t *port);
};

struct ws_sink {
	const struct ws_sink_ops *ops;
	void *impl;
};

/* OTLP/JSON lines (one ExportTraceServiceRequest of up to batch spans per
 * line) to f. Returns 0 or -ENOMEM. */
int ws_stdout_sink_open(struct ws_sink *sink, FILE *f, unsigned batch);

#endif
