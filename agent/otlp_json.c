/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "otlp_json.h"

#ifndef WIRESPAN_VERSION
#define WIRESPAN_VERSION "0.1.0"
#endif

static json_object *any_value(const struct ws_attr *at)
{
	json_object *v = json_object_new_object();
	char num[24];

	switch (at->type) {
	case WS_ATTR_STR:
		json_object_object_add(v, "stringValue",
				       json_object_new_string(at->s));
		break;
	case WS_ATTR_INT:
		snprintf(num, sizeof(num), "%" PRId64, at->i);
		json_object_object_add(v, "intValue",
				       json_object_new_string(num));
		break;
	case WS_ATTR_BOOL:
		json_object_object_add(v, "boolValue",
				       json_object_new_boolean(at->b));
		break;
	case WS_ATTR_DOUBLE:
		json_object_object_add(v, "doubleValue",
				       json_object_new_double(at->d));
		break;
	}
	return v;
}

static json_object *attrs_array(const struct ws_attrs *a)
{
	json_object *arr = json_object_new_array();
	uint16_t i;

	for (i = 0; i < a->n; i++) {
		json_object *kv = json_object_new_object();

		json_object_object_add(kv, "key",
				       json_object_new_string(a->v[i].key));
		json_object_object_add(kv, "value", any_value(&a->v[i]));
		json_object_array_add(arr, kv);
	}
	return arr;
}

static void add_hex(json_object *o, const char *key, const uint8_t *id,
		    size_t n)
{
	char hex[33];

	ws_id_hex(id, n, hex);
	json_object_object_add(o, key, json_object_new_string(hex));
}

static void add_u64s(json_object *o, const char *key, uint64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%" PRIu64, v);
	json_object_object_add(o, key, json_object_new_string(num));
}

static json_object *span_json(const struct ws_span *s)
{
	json_object *o = json_object_new_object();
	uint16_t i;

	add_hex(o, "traceId", s->trace_id, 16);
	add_hex(o, "spanId", s->span_id, 8);
	if (s->trace_state)
		json_object_object_add(o, "traceState",
				       json_object_new_string(s->trace_state));
	if (s->has_parent)
		add_hex(o, "parentSpanId", s->parent_span_id, 8);
	if (s->flags)
		json_object_object_add(o, "flags",
				       json_object_new_int64(s->flags));
	json_object_object_add(o, "name", json_object_new_string(s->name));
	json_object_object_add(o, "kind", json_object_new_int(s->kind));
	add_u64s(o, "startTimeUnixNano", s->start_ns);
	add_u64s(o, "endTimeUnixNano", s->end_ns);
	json_object_object_add(o, "attributes", attrs_array(&s->a));
	if (s->a.dropped)
		json_object_object_add(o, "droppedAttributesCount",
				       json_object_new_int64(s->a.dropped));
	if (s->n_events) {
		json_object *arr = json_object_new_array();

		for (i = 0; i < s->n_events; i++) {
			json_object *e = json_object_new_object();

			add_u64s(e, "timeUnixNano", s->events[i].time_ns);
			json_object_object_add(
				e, "name",
				json_object_new_string(s->events[i].name));
			json_object_object_add(e, "attributes",
					       attrs_array(&s->events[i].a));
			if (s->events[i].a.dropped)
				json_object_object_add(
					e, "droppedAttributesCount",
					json_object_new_int64(
						s->events[i].a.dropped));
			json_object_array_add(arr, e);
		}
		json_object_object_add(o, "events", arr);
	}
	if (s->dropped_events)
		json_object_object_add(
			o, "droppedEventsCount",
			json_object_new_int64(s->dropped_events));
	if (s->n_links) {
		json_object *arr = json_object_new_array();

		for (i = 0; i < s->n_links; i++) {
			json_object *l = json_object_new_object();

			add_hex(l, "traceId", s->links[i].trace_id, 16);
			add_hex(l, "spanId", s->links[i].span_id, 8);
			if (s->links[i].flags)
				json_object_object_add(
					l, "flags",
					json_object_new_int64(
						s->links[i].flags));
			json_object_object_add(l, "attributes",
					       attrs_array(&s->links[i].a));
			if (s->links[i].a.dropped)
				json_object_object_add(
					l, "droppedAttributesCount",
					json_object_new_int64(
						s->links[i].a.dropped));
			json_object_array_add(arr, l);
		}
		json_object_object_add(o, "links", arr);
	}
	if (s->dropped_links)
		json_object_object_add(o, "droppedLinksCount",
				       json_object_new_int64(s->dropped_links));
	if (s->status != WS_STATUS_UNSET || s->status_message) {
		json_object *st = json_object_new_object();

		if (s->status_message)
			json_object_object_add(
				st, "message",
				json_object_new_string(s->status_message));
		json_object_object_add(st, "code",
				       json_object_new_int(s->status));
		json_object_object_add(o, "status", st);
	}
	return o;
}

int ws_otlp_json_write(FILE *f, struct ws_span *const *spans, size_t n)
{
	json_object *req = json_object_new_object();
	json_object *rss = json_object_new_array();
	const char *text;
	size_t i, j;
	bool *done;
	int err = 0;

	done = calloc(n ? n : 1, sizeof(*done));
	if (!req || !rss || !done) {
		json_object_put(req);
		json_object_put(rss);
		free(done);
		return -ENOMEM;
	}
	/* Group by resource: spans of one emitter share one ResourceSpans. */
	for (i = 0; i < n; i++) {
		json_object *rs, *res, *ss, *ssa, *scope, *arr;

		if (done[i])
			continue;
		rs = json_object_new_object();
		res = json_object_new_object();
		json_object_object_add(
			res, "attributes",
			spans[i]->resource ? attrs_array(&spans[i]->resource->a)
					   : json_object_new_array());
		if (spans[i]->resource && spans[i]->resource->a.dropped)
			json_object_object_add(
				res, "droppedAttributesCount",
				json_object_new_int64(
					spans[i]->resource->a.dropped));
		json_object_object_add(rs, "resource", res);
		ss = json_object_new_object();
		scope = json_object_new_object();
		json_object_object_add(scope, "name",
				       json_object_new_string(WS_SCOPE_NAME));
		json_object_object_add(
			scope, "version",
			json_object_new_string(WIRESPAN_VERSION));
		json_object_object_add(ss, "scope", scope);
		arr = json_object_new_array();
		for (j = i; j < n; j++) {
			if (done[j] || spans[j]->resource != spans[i]->resource)
				continue;
			done[j] = true;
			json_object_array_add(arr, span_json(spans[j]));
		}
		json_object_object_add(ss, "spans", arr);
		ssa = json_object_new_array();
		json_object_array_add(ssa, ss);
		json_object_object_add(rs, "scopeSpans", ssa);
		json_object_array_add(rss, rs);
	}
	json_object_object_add(req, "resourceSpans", rss);
	text = json_object_to_json_string_ext(
		req, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text || fputs(text, f) == EOF || fputc('\n', f) == EOF)
		err = -EIO;
	json_object_put(req);
	free(done);
	return err;
}
