/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure part of `wirespan tail`: OTLP protobuf batches in (the payloads
 * published on <prefix>.traces.>), traces out, written as an indented tree
 * for people or as one JSON object per span for machines.
 *
 * No clock and no I/O but the FILE it writes to: the caller passes a
 * monotonic now_ns to feed and tick. Spans are grouped by trace id and held
 * until their trace has had no new span for flush_after_ns, or was first seen
 * max_hold_ns ago, then printed whole. Memory is bounded by max_traces,
 * max_spans and max_bytes: when a bound is hit the least recently updated
 * trace is printed early (counted in evicted) instead of being dropped.
 * Spans that arrive for a trace already printed start a new group, whose
 * spans show that their parent was not seen.
 *
 * A payload that protobuf-c cannot decode is counted (bad_messages) and
 * skipped; a span whose ids are malformed is counted (bad_spans) and skipped;
 * the rest of the batch still flows. Strings are made valid UTF-8, and
 * control characters are escaped in text output so a span cannot drive the
 * terminal.
 *
 * Filters select whole traces: a trace is printed when it has the trace id,
 * when at least one of its spans belongs to one of the services, when one of
 * its spans has messaging.destination.name matching one of the destination
 * patterns (NATS wildcards), and, with errors_only, when one of its spans
 * has status ERROR. Given filters must all match.
 */
#ifndef WIRESPAN_TAIL_FMT_H
#define WIRESPAN_TAIL_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define WS_TAIL_DEFAULT_FLUSH_NS 1000000000ull /* quiet period: 1 s */
#define WS_TAIL_DEFAULT_HOLD_NS 10000000000ull /* longest hold: 10 s */
#define WS_TAIL_DEFAULT_MAX_TRACES 10000
#define WS_TAIL_DEFAULT_MAX_SPANS 100000
#define WS_TAIL_DEFAULT_MAX_BYTES (64u << 20)
/* Filters of one kind at most (--service, --destination). */
#define WS_TAIL_MAX_FILTERS 16
/* Tree levels drawn; deeper spans are drawn at this level with their depth. */
#define WS_TAIL_MAX_DRAW_DEPTH 24

struct ws_tail_cfg {
	FILE *out;
	bool json;  /* one JSON object per span, else the text tree */
	bool color; /* ANSI colours in the text tree */
	bool attrs; /* text: print each span's attributes under it */
	uint64_t flush_after_ns, max_hold_ns;
	size_t max_traces, max_spans, max_bytes;
	const char *services[WS_TAIL_MAX_FILTERS];
	size_t n_services;
	const char *destinations[WS_TAIL_MAX_FILTERS];
	size_t n_destinations;
	bool has_trace_id;
	uint8_t trace_id[16];
	bool errors_only;
};

struct ws_tail_stats {
	uint64_t messages;	  /* payloads fed */
	uint64_t bad_messages;	  /* not an ExportTraceServiceRequest */
	uint64_t spans_in;	  /* spans decoded */
	uint64_t bad_spans;	  /* malformed ids: skipped */
	uint64_t duplicate_spans; /* same span id twice in a trace */
	uint64_t other_trace;	  /* spans skipped by the trace id filter */
	uint64_t traces_printed;  /* traces written */
	uint64_t spans_printed;	  /* spans written */
	uint64_t traces_filtered; /* traces held but not matching */
	uint64_t flush_quiet;	  /* traces ended by the quiet period */
	uint64_t flush_max_hold;  /* ... by max_hold_ns */
	uint64_t evicted;	  /* ... early, by a memory bound */
	uint64_t flush_end;	  /* ... at the end (ws_tail_flush_all) */
	uint64_t cycles;	  /* parent loops broken to print a trace */
	uint64_t output_errors;	  /* lines that could not be written */
	uint64_t nomem;		  /* spans lost to a failed allocation */
	uint64_t held_traces;	  /* now */
	uint64_t held_spans;	  /* now */
	uint64_t held_bytes;	  /* now, approximate */
	uint64_t peak_held_spans; /* most spans held at once */
};

struct ws_tail;

/* Defaults: text, no colour, stdout, the WS_TAIL_DEFAULT_* bounds. */
void ws_tail_cfg_init(struct ws_tail_cfg *cfg);
/* The cfg is copied (filter strings are not: they must outlive t). NULL on
 * ENOMEM. */
struct ws_tail *ws_tail_new(const struct ws_tail_cfg *cfg);
/* Free everything; what is held is not printed (ws_tail_flush_all does). */
void ws_tail_free(struct ws_tail *t);

/*
 * Decode one payload received on subject (may be NULL) and hold its spans.
 * May print traces evicted by a bound. Returns 0, or -EBADMSG if the payload
 * is not a valid message (counted; nothing held).
 */
int ws_tail_feed(struct ws_tail *t, const char *subject, const uint8_t *buf,
		 size_t len, uint64_t now_ns);
/* Print the traces whose quiet period or longest hold has passed. */
void ws_tail_tick(struct ws_tail *t, uint64_t now_ns);
/* Print every trace held. */
void ws_tail_flush_all(struct ws_tail *t);
const struct ws_tail_stats *ws_tail_stats(const struct ws_tail *t);

/* NATS subject matching: '*' is one token, a final '>' one or more. */
bool ws_subject_match(const char *pattern, const char *subject);
/* "1.5ms"-style duration text into buf (at least 16 bytes). */
void ws_tail_duration(uint64_t ns, char *buf, size_t len);

#endif
