/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP/JSON written straight into one reusable buffer. The first version
 * built a json-c tree per batch; the agent benchmark showed 82% of the
 * agent's CPU going to building, printing and freeing those trees, so the
 * output is now streamed. Parsing JSON (INFO, CONNECT, JWT claims) still
 * uses json-c, and the unit tests read this output back with json-c.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "otlp_json.h"

#ifndef WIRESPAN_VERSION
#define WIRESPAN_VERSION "0.1.0"
#endif

struct out {
	char *buf;
	size_t len, cap;
	bool oom;
};

/* Reused across calls: the agent writes from one thread. */
static _Thread_local struct out tls_out;

static bool grow(struct out *o, size_t more)
{
	size_t ncap;
	char *nb;

	if (o->oom)
		return false;
	ncap = o->cap ? o->cap : 64 * 1024;
	while (ncap < o->len + more)
		ncap *= 2;
	nb = realloc(o->buf, ncap);
	if (!nb) {
		o->oom = true;
		return false;
	}
	o->buf = nb;
	o->cap = ncap;
	return true;
}

/* Inline: the writer reserves a few bytes dozens of times per span. */
static inline bool reserve(struct out *o, size_t more)
{
	return (o->len + more <= o->cap && !o->oom) || grow(o, more);
}

static inline void raw(struct out *o, const char *s, size_t n)
{
	if (!reserve(o, n))
		return;
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

#define LIT(o, s) raw(o, s, sizeof(s) - 1)

/* A JSON string of n bytes of valid UTF-8 (the span model guarantees it). */
static void strn(struct out *o, const char *s, size_t n)
{
	if (!reserve(o, n * 6 + 2))
		return;
	o->buf[o->len++] = '"';
	o->len += ws_json_escape(o->buf + o->len, (const uint8_t *)s, n, true);
	o->buf[o->len++] = '"';
}

static void str(struct out *o, const char *s)
{
	strn(o, s, strlen(s));
}

static void key(struct out *o, const char *k)
{
	str(o, k);
	LIT(o, ":");
}

static void hex_id(struct out *o, const char *k, const uint8_t *id, size_t n)
{
	char h[33];

	ws_id_hex(id, n, h);
	key(o, k);
	LIT(o, "\"");
	raw(o, h, 2 * n);
	LIT(o, "\"");
}

/* Decimal v (no snprintf: it was a tenth of the writer's time). */
static void num(struct out *o, int64_t v)
{
	char d[21];
	size_t n = 0;

	if (v < 0)
		d[n++] = '-';
	/* -(v + 1) + 1: INT64_MIN has no positive int64 */
	n += ws_json_u64(d + n, v < 0 ? (uint64_t) - (v + 1) + 1 : (uint64_t)v);
	raw(o, d, n);
}

/* 64-bit integers are strings in OTLP/JSON (proto3 JSON mapping). */
static void u64s(struct out *o, const char *k, uint64_t v)
{
	char d[20];

	key(o, k);
	LIT(o, "\"");
	raw(o, d, ws_json_u64(d, v));
	LIT(o, "\"");
}

static void i64(struct out *o, const char *k, int64_t v)
{
	key(o, k);
	num(o, v);
}

static void any_value(struct out *o, const struct ws_attr *at)
{
	char dbl[40];
	int n;

	switch (at->type) {
	case WS_ATTR_STR:
		LIT(o, "{\"stringValue\":");
		/* the span model keeps the length (0: not known) */
		strn(o, at->s, at->slen ? at->slen : strlen(at->s));
		break;
	case WS_ATTR_INT:
		LIT(o, "{\"intValue\":\"");
		num(o, at->i);
		LIT(o, "\"");
		break;
	case WS_ATTR_BOOL:
		if (at->b)
			LIT(o, "{\"boolValue\":true");
		else
			LIT(o, "{\"boolValue\":false");
		break;
	case WS_ATTR_DOUBLE:
		/* JSON has no NaN or infinities: proto3 JSON spells them. */
		if (isnan(at->d))
			LIT(o, "{\"doubleValue\":\"NaN\"");
		else if (isinf(at->d))
			raw(o,
			    at->d > 0 ? "{\"doubleValue\":\"Infinity\""
				      : "{\"doubleValue\":\"-Infinity\"",
			    at->d > 0 ? 25 : 26);
		else {
			n = snprintf(dbl, sizeof(dbl), "{\"doubleValue\":%.17g",
				     at->d);
			raw(o, dbl, (size_t)n);
		}
		break;
	default:
		LIT(o, "{");
	}
	LIT(o, "}");
}

static void attrs(struct out *o, const struct ws_attrs *a)
{
	uint16_t i;

	LIT(o, "\"attributes\":[");
	for (i = 0; i < a->n; i++) {
		if (i)
			LIT(o, ",");
		LIT(o, "{\"key\":");
		strn(o, a->v[i].key,
		     a->v[i].klen ? a->v[i].klen : strlen(a->v[i].key));
		LIT(o, ",\"value\":");
		any_value(o, &a->v[i]);
		LIT(o, "}");
	}
	LIT(o, "]");
	if (a->dropped) {
		LIT(o, ",");
		i64(o, "droppedAttributesCount", a->dropped);
	}
}

static void span_json(struct out *o, const struct ws_span *s)
{
	uint16_t i;

	LIT(o, "{");
	hex_id(o, "traceId", s->trace_id, 16);
	LIT(o, ",");
	hex_id(o, "spanId", s->span_id, 8);
	if (s->trace_state) {
		LIT(o, ",");
		key(o, "traceState");
		str(o, s->trace_state);
	}
	if (s->has_parent) {
		LIT(o, ",");
		hex_id(o, "parentSpanId", s->parent_span_id, 8);
	}
	if (s->flags) {
		LIT(o, ",");
		i64(o, "flags", s->flags);
	}
	LIT(o, ",");
	key(o, "name");
	str(o, s->name);
	LIT(o, ",");
	i64(o, "kind", s->kind);
	LIT(o, ",");
	u64s(o, "startTimeUnixNano", s->start_ns);
	LIT(o, ",");
	u64s(o, "endTimeUnixNano", s->end_ns);
	LIT(o, ",");
	attrs(o, &s->a);
	if (s->n_events) {
		LIT(o, ",\"events\":[");
		for (i = 0; i < s->n_events; i++) {
			if (i)
				LIT(o, ",");
			LIT(o, "{");
			u64s(o, "timeUnixNano", s->events[i].time_ns);
			LIT(o, ",");
			key(o, "name");
			str(o, s->events[i].name);
			LIT(o, ",");
			attrs(o, &s->events[i].a);
			LIT(o, "}");
		}
		LIT(o, "]");
	}
	if (s->dropped_events) {
		LIT(o, ",");
		i64(o, "droppedEventsCount", s->dropped_events);
	}
	if (s->n_links) {
		LIT(o, ",\"links\":[");
		for (i = 0; i < s->n_links; i++) {
			if (i)
				LIT(o, ",");
			LIT(o, "{");
			hex_id(o, "traceId", s->links[i].trace_id, 16);
			LIT(o, ",");
			hex_id(o, "spanId", s->links[i].span_id, 8);
			if (s->links[i].flags) {
				LIT(o, ",");
				i64(o, "flags", s->links[i].flags);
			}
			LIT(o, ",");
			attrs(o, &s->links[i].a);
			LIT(o, "}");
		}
		LIT(o, "]");
	}
	if (s->dropped_links) {
		LIT(o, ",");
		i64(o, "droppedLinksCount", s->dropped_links);
	}
	if (s->status != WS_STATUS_UNSET || s->status_message) {
		LIT(o, ",\"status\":{");
		if (s->status_message) {
			key(o, "message");
			str(o, s->status_message);
			LIT(o, ",");
		}
		i64(o, "code", s->status);
		LIT(o, "}");
	}
	LIT(o, "}");
}

int ws_otlp_json_write(FILE *f, struct ws_span *const *spans, size_t n)
{
	struct out *o = &tls_out;
	size_t i, j, groups = 0;
	bool *done;
	int err = 0;

	done = calloc(n ? n : 1, sizeof(*done));
	if (!done)
		return -ENOMEM;
	o->len = 0;
	o->oom = false;
	LIT(o, "{\"resourceSpans\":[");
	/* Group by resource: spans of one emitter share one ResourceSpans. */
	for (i = 0; i < n; i++) {
		const struct ws_resource *r = spans[i]->resource;
		bool first = true;

		if (done[i])
			continue;
		if (groups++)
			LIT(o, ",");
		LIT(o, "{\"resource\":{");
		if (r)
			attrs(o, &r->a);
		else
			LIT(o, "\"attributes\":[]");
		LIT(o, "},\"scopeSpans\":[{\"scope\":{\"name\":\"" WS_SCOPE_NAME
		       "\",\"version\":\"" WIRESPAN_VERSION "\"},\"spans\":[");
		for (j = i; j < n; j++) {
			if (done[j] || spans[j]->resource != r)
				continue;
			done[j] = true;
			if (!first)
				LIT(o, ",");
			first = false;
			span_json(o, spans[j]);
		}
		LIT(o, "]}]}");
	}
	LIT(o, "]}\n");
	free(done);
	if (o->oom)
		return -ENOMEM;
	if (fwrite(o->buf, 1, o->len, f) != o->len)
		err = -EIO;
	return err;
}
