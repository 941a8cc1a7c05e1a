/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OTLP protobuf encoder (agent/export/otlp_pb.c): round trips through
 * protobuf-c's own decoder, and an independent decode with protobufjs
 * (tests/otlp/decode.js) compared field by field with the spans and, as a
 * tree, with the OTLP/JSON encoder's output.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "rnd.h"
#include "otlp_trace_service.pb-c.h"

#include "export/otlp_pb.h"
#include "otlp_json.h"
#include "span.h"

#ifndef WIRESPAN_VERSION
#define WIRESPAN_VERSION "0.1.0"
#endif

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
	pb_request;
typedef Opentelemetry__Proto__Trace__V1__TracesData pb_traces;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_rspans;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;

#define ANY_CASE(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##x

static const uint8_t TID[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
				0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
static const uint8_t PSID[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
static const uint8_t LTID[16] = {0xff, 1, 2,  3,  4,  5,  6,  7,
				 8,    9, 10, 11, 12, 13, 14, 0x80};
static const uint8_t LSID[8] = {1, 0, 0, 0, 0, 0, 0, 0xfe};

/* ---- fixtures ---- */

static struct ws_resource *resource(uint64_t key, const char *service)
{
	struct ws_resource *r = ws_resource_new(key);

	assert_non_null(r);
	assert_int_equal(ws_attrs_cstr(&r->a, "service.name", service), 0);
	assert_int_equal(ws_attrs_int(&r->a, "process.pid", (int64_t)key), 0);
	assert_int_equal(ws_attrs_cstr(&r->a, "host.name", "node-1"), 0);
	return r;
}

/* Every field set, every attribute type and edge value. */
static struct ws_span *full_span(struct ws_resource *r)
{
	struct ws_span *s =
		ws_span_new("publish orders.created", WS_SPAN_KIND_PRODUCER,
			    1700000000123456789ull, NULL);
	struct ws_span_event *e;

	assert_non_null(s);
	ws_span_set_parent(s, TID, PSID);
	s->trace_state = strdup("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
	s->flags = 0x301;
	s->end_ns = 1700000000987654321ull;
	assert_int_equal(ws_attrs_cstr(&s->a, "messaging.system", "nats"), 0);
	assert_int_equal(ws_attrs_cstr(&s->a, "messaging.destination.name",
				       "orders.\"créé\"\\\n\t/<>"),
			 0);
	assert_int_equal(ws_attrs_cstr(&s->a, "empty", ""), 0);
	assert_int_equal(ws_attrs_int(&s->a, "server.port", 4222), 0);
	assert_int_equal(ws_attrs_int(&s->a, "zero", 0), 0);
	assert_int_equal(ws_attrs_int(&s->a, "neg", -1), 0);
	assert_int_equal(ws_attrs_int(&s->a, "min", INT64_MIN), 0);
	assert_int_equal(ws_attrs_int(&s->a, "max", INT64_MAX), 0);
	assert_int_equal(ws_attrs_bool(&s->a, "yes", true), 0);
	assert_int_equal(ws_attrs_bool(&s->a, "no", false), 0);
	assert_int_equal(ws_attrs_double(&s->a, "pi", 3.141592653589793), 0);
	assert_int_equal(ws_attrs_double(&s->a, "dzero", 0.0), 0);
	assert_int_equal(ws_attrs_double(&s->a, "tiny", -2.5e-300), 0);
	assert_int_equal(ws_attrs_double(&s->a, "big", 1e300), 0);
	assert_int_equal(ws_attrs_double(&s->a, "tenth", 0.1), 0);

	e = ws_span_add_event(s, "exception", 1700000000500000000ull);
	assert_non_null(e);
	assert_int_equal(ws_attrs_cstr(&e->a, "exception.type", "EPIPE"), 0);
	assert_int_equal(ws_attrs_int(&e->a, "errno", 32), 0);
	e = ws_span_add_event(s, "no attributes", 1700000000600000000ull);
	assert_non_null(e);

	assert_int_equal(ws_span_add_link(s, LTID, LSID, 0x101), 0);
	assert_int_equal(
		ws_attrs_cstr(&s->links[0].a, "messaging.operation", "create"),
		0);
	assert_int_equal(ws_attrs_bool(&s->links[0].a, "remote", true), 0);
	assert_int_equal(ws_span_add_link(s, TID, PSID, 0), 0);

	ws_span_set_status(s, WS_STATUS_ERROR, "no responders");
	ws_span_set_resource(s, r);
	return s;
}

/* Overflow every bounded list: attributes, events, links. */
static void overflow(struct ws_span *s, bool nested)
{
	static const char *keys[] = {"k0", "k1", "k2", "k3", "k4", "k5", "k6",
				     "k7", "k8", "k9", "ka", "kb", "kc", "kd",
				     "ke", "kf", "kg", "kh", "ki", "kj", "kk",
				     "kl", "km", "kn", "ko", "kp", "kq", "kr",
				     "ks", "kt", "ku", "kv", "kw", "kx", "ky",
				     "kz", "kA", "kB", "kC", "kD", "kE", "kF"};
	struct ws_span_event *e;
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		ws_attrs_int(&s->a, keys[i], (int64_t)i);
	assert_int_equal(s->a.n, WS_SPAN_MAX_ATTRS);
	assert_true(s->a.dropped > 0);
	while (s->n_events < WS_SPAN_MAX_EVENTS)
		ws_span_add_event(s, "filler", s->start_ns + s->n_events);
	assert_null(ws_span_add_event(s, "one too many", s->start_ns));
	while (s->n_links < WS_SPAN_MAX_LINKS)
		ws_span_add_link(s, LTID, LSID, 1);
	assert_int_equal(ws_span_add_link(s, LTID, LSID, 1), -ENOSPC);
	assert_int_equal(s->dropped_events, 1);
	assert_int_equal(s->dropped_links, 1);
	if (!nested)
		return;
	e = &s->events[s->n_events - 1];
	for (i = 0; i < 6; i++)
		ws_attrs_int(&e->a, keys[i], (int64_t)i);
	assert_int_equal(e->a.dropped, 2);
	for (i = 0; i < 3; i++)
		ws_attrs_int(&s->links[s->n_links - 1].a, keys[i], (int64_t)i);
	assert_int_equal(s->links[s->n_links - 1].a.dropped, 1);
}

static void free_spans(struct ws_span **s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		ws_span_free(s[i]);
}

/* ---- checks against protobuf-c's decoding ---- */

static void check_bin(ProtobufCBinaryData b, const uint8_t *v, size_t n)
{
	assert_int_equal(b.len, n);
	assert_memory_equal(b.data, v, n);
}

static void check_str(const char *got, const char *want)
{
	/* proto3: an unset string decodes as "" */
	assert_string_equal(got ? got : "", want ? want : "");
}

static void check_attrs(pb_kv **kv, size_t n, const struct ws_attrs *a)
{
	size_t i;

	assert_int_equal(n, a->n);
	for (i = 0; i < n; i++) {
		const struct ws_attr *at = &a->v[i];
		const pb_any *v = kv[i]->value;

		assert_string_equal(kv[i]->key, at->key);
		assert_non_null(v);
		switch (at->type) {
		case WS_ATTR_STR:
			assert_int_equal(v->value_case, ANY_CASE(STRING_VALUE));
			assert_string_equal(v->string_value, at->s);
			break;
		case WS_ATTR_INT:
			assert_int_equal(v->value_case, ANY_CASE(INT_VALUE));
			assert_true(v->int_value == at->i);
			break;
		case WS_ATTR_BOOL:
			assert_int_equal(v->value_case, ANY_CASE(BOOL_VALUE));
			assert_int_equal(!!v->bool_value, at->b);
			break;
		case WS_ATTR_DOUBLE:
			assert_int_equal(v->value_case, ANY_CASE(DOUBLE_VALUE));
			/* bit for bit: -0.0, NaN payloads, infinities */
			assert_memory_equal(&v->double_value, &at->d,
					    sizeof(double));
			break;
		default:
			fail();
		}
	}
}

static void check_span(const pb_span *p, const struct ws_span *s)
{
	uint16_t i;

	check_bin(p->trace_id, s->trace_id, 16);
	check_bin(p->span_id, s->span_id, 8);
	check_str(p->trace_state, s->trace_state);
	if (s->has_parent)
		check_bin(p->parent_span_id, s->parent_span_id, 8);
	else
		assert_int_equal(p->parent_span_id.len, 0);
	assert_int_equal(p->flags, s->flags);
	assert_string_equal(p->name, s->name);
	assert_int_equal(p->kind, s->kind);
	assert_true(p->start_time_unix_nano == s->start_ns);
	assert_true(p->end_time_unix_nano == s->end_ns);
	check_attrs(p->attributes, p->n_attributes, &s->a);
	assert_int_equal(p->dropped_attributes_count, s->a.dropped);
	assert_int_equal(p->n_events, s->n_events);
	for (i = 0; i < s->n_events; i++) {
		const Opentelemetry__Proto__Trace__V1__Span__Event *e =
			p->events[i];

		assert_true(e->time_unix_nano == s->events[i].time_ns);
		assert_string_equal(e->name, s->events[i].name);
		check_attrs(e->attributes, e->n_attributes, &s->events[i].a);
		assert_int_equal(e->dropped_attributes_count,
				 s->events[i].a.dropped);
	}
	assert_int_equal(p->dropped_events_count, s->dropped_events);
	assert_int_equal(p->n_links, s->n_links);
	for (i = 0; i < s->n_links; i++) {
		const Opentelemetry__Proto__Trace__V1__Span__Link *l =
			p->links[i];

		check_bin(l->trace_id, s->links[i].trace_id, 16);
		check_bin(l->span_id, s->links[i].span_id, 8);
		check_str(l->trace_state, NULL);
		assert_int_equal(l->flags, s->links[i].flags);
		check_attrs(l->attributes, l->n_attributes, &s->links[i].a);
		assert_int_equal(l->dropped_attributes_count,
				 s->links[i].a.dropped);
	}
	assert_int_equal(p->dropped_links_count, s->dropped_links);
	if (s->status == WS_STATUS_UNSET && !s->status_message) {
		assert_null(p->status);
	} else {
		assert_non_null(p->status);
		assert_int_equal(p->status->code, s->status);
		check_str(p->status->message, s->status_message);
	}
}

/* One ResourceSpans with one ScopeSpans "wirespan" holding spans[0..n). */
static void check_rspans(const pb_rspans *rs, const struct ws_resource *r,
			 struct ws_span *const *spans, size_t n)
{
	const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss;
	size_t i;

	assert_non_null(rs->resource);
	if (r) {
		check_attrs(rs->resource->attributes,
			    rs->resource->n_attributes, &r->a);
		assert_int_equal(rs->resource->dropped_attributes_count,
				 r->a.dropped);
	} else {
		assert_int_equal(rs->resource->n_attributes, 0);
	}
	check_str(rs->schema_url, NULL);
	assert_int_equal(rs->n_scope_spans, 1);
	ss = rs->scope_spans[0];
	assert_non_null(ss->scope);
	assert_string_equal(ss->scope->name, "wirespan");
	assert_string_equal(ss->scope->version, WIRESPAN_VERSION);
	assert_int_equal(ss->scope->n_attributes, 0);
	assert_int_equal(ss->n_spans, n);
	for (i = 0; i < n; i++)
		check_span(ss->spans[i], spans[i]);
}

static pb_request *encode_unpack(struct ws_span *const *spans, size_t n,
				 size_t *len_out)
{
	uint8_t *buf = NULL;
	size_t len = 0, count = 0;
	pb_request *req;

	assert_int_equal(ws_otlp_pb_encode(spans, n, &buf, &len), 0);
	assert_non_null(buf);
	assert_int_equal(ws_otlp_pb_decode_count(buf, len, &count), 0);
	assert_int_equal(count, n);
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, len, buf);
	assert_non_null(req);
	free(buf);
	if (len_out)
		*len_out = len;
	return req;
}

static void free_req(pb_request *req)
{
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
		req, NULL);
}

/* ---- tests ---- */

static void empty_input(void **state)
{
	uint8_t *buf = NULL;
	size_t len = 99, count = 99;
	pb_request *req;

	assert_int_equal(ws_otlp_pb_encode(NULL, 0, &buf, &len), 0);
	assert_non_null(buf);
	assert_int_equal(len, 0);
	assert_int_equal(ws_otlp_pb_decode_count(buf, len, &count), 0);
	assert_int_equal(count, 0);
	free(buf);
	assert_int_equal(ws_otlp_pb_decode_count(NULL, 0, &count), 0);
	assert_int_equal(count, 0);
	req = encode_unpack(NULL, 0, &len);
	assert_int_equal(req->n_resource_spans, 0);
	free_req(req);
}

static void bad_arguments(void **state)
{
	struct ws_span *spans[2] = {NULL, NULL};
	uint8_t *buf = (uint8_t *)"x";
	size_t len = 7, count;
	/* a ResourceSpans claiming 16 bytes with 2 present; a bad wire type */
	static const uint8_t truncated[] = {0x0a, 0x10, 0x0a, 0x00};
	static const uint8_t badwire[] = {0x0f};

	assert_int_equal(ws_otlp_pb_encode(NULL, 1, &buf, &len), -EINVAL);
	assert_int_equal(ws_otlp_pb_encode(spans, 1, &buf, &len), -EINVAL);
	spans[0] = ws_span_new("x", WS_SPAN_KIND_INTERNAL, 1, NULL);
	assert_int_equal(ws_otlp_pb_encode(spans, 2, &buf, &len), -EINVAL);
	assert_int_equal(ws_otlp_pb_encode(spans, 1, NULL, &len), -EINVAL);
	assert_int_equal(ws_otlp_pb_encode(spans, 1, &buf, NULL), -EINVAL);
	/* untouched on error */
	assert_string_equal((char *)buf, "x");
	assert_int_equal(len, 7);
	ws_span_free(spans[0]);

	assert_int_equal(ws_otlp_pb_decode_count(NULL, 3, &count), -EINVAL);
	assert_int_equal(ws_otlp_pb_decode_count(truncated, 4, NULL), -EINVAL);
	assert_int_equal(ws_otlp_pb_decode_count(truncated, 4, &count),
			 -EBADMSG);
	assert_int_equal(ws_otlp_pb_decode_count(badwire, 1, &count), -EBADMSG);
}

static void round_trip_all_fields(void **state)
{
	struct ws_resource *r = resource(42, "orders");
	struct ws_span *s[2];
	pb_request *req;

	s[0] = full_span(r);
	/* a root span with nothing optional set */
	s[1] = ws_span_new("process", WS_SPAN_KIND_UNSPECIFIED, 5, NULL);
	ws_span_set_resource(s[1], r);
	ws_resource_put(r);

	req = encode_unpack(s, 2, NULL);
	assert_int_equal(req->n_resource_spans, 1);
	check_rspans(req->resource_spans[0], r, s, 2);
	/* spot checks that do not go through the span model */
	{
		const pb_span *p =
			req->resource_spans[0]->scope_spans[0]->spans[0];

		assert_memory_equal(p->trace_id.data, TID, 16);
		assert_memory_equal(p->parent_span_id.data, PSID, 8);
		assert_int_equal(
			p->kind,
			OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_PRODUCER);
		assert_true(p->end_time_unix_nano == 1700000000987654321ull);
		assert_int_equal(p->flags, 0x301);
		assert_int_equal(p->n_attributes, 15);
		assert_string_equal(p->attributes[2]->key, "empty");
		assert_int_equal(p->attributes[2]->value->value_case,
				 ANY_CASE(STRING_VALUE));
		assert_string_equal(p->attributes[2]->value->string_value, "");
		assert_int_equal(p->links[0]->flags, 0x101);
		assert_memory_equal(p->links[0]->trace_id.data, LTID, 16);
		assert_int_equal(
			p->status->code,
			OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR);
		assert_string_equal(p->status->message, "no responders");
		p = req->resource_spans[0]->scope_spans[0]->spans[1];
		assert_int_equal(p->parent_span_id.len, 0);
		assert_null(p->status);
		assert_int_equal(p->n_attributes, 0);
	}
	free_req(req);
	free_spans(s, 2);
}

static void special_doubles_and_long_strings(void **state)
{
	struct ws_span *s = ws_span_new("x", WS_SPAN_KIND_CLIENT, 1, NULL);
	char *big = malloc(5000);
	pb_request *req;

	memset(big, 'a', 4999);
	big[4999] = '\0';
	assert_int_equal(ws_attrs_cstr(&s->a, "long", big), 0); /* cut */
	assert_int_equal(ws_attrs_double(&s->a, "nan", NAN), 0);
	assert_int_equal(ws_attrs_double(&s->a, "inf", INFINITY), 0);
	assert_int_equal(ws_attrs_double(&s->a, "ninf", -INFINITY), 0);
	assert_int_equal(ws_attrs_double(&s->a, "nzero", -0.0), 0);
	assert_int_equal(ws_attrs_double(&s->a, "denormal", 5e-324), 0);
	ws_span_set_status(s, WS_STATUS_UNSET, big); /* cut to 1024 too */
	free(big);
	req = encode_unpack(&s, 1, NULL);
	check_rspans(req->resource_spans[0], NULL, &s, 1);
	assert_int_equal(strlen(req->resource_spans[0]
					->scope_spans[0]
					->spans[0]
					->attributes[0]
					->value->string_value),
			 WS_SPAN_MAX_STR);
	free_req(req);
	ws_span_free(s);
}

static void dropped_counts(void **state)
{
	struct ws_resource *r = resource(1, "svc");
	struct ws_span *s = full_span(r);
	char key[WS_RESOURCE_MAX_ATTRS + 8][8];
	pb_request *req;
	int i;

	for (i = 0; i < WS_RESOURCE_MAX_ATTRS + 2; i++) {
		snprintf(key[i], sizeof(key[i]), "r%d", i);
		ws_attrs_bool(&r->a, key[i], i & 1);
	}
	assert_int_equal(r->a.dropped, 5);
	overflow(s, true);
	req = encode_unpack(&s, 1, NULL);
	check_rspans(req->resource_spans[0], r, &s, 1);
	{
		const pb_span *p =
			req->resource_spans[0]->scope_spans[0]->spans[0];

		assert_int_equal(req->resource_spans[0]
					 ->resource->dropped_attributes_count,
				 5);
		assert_int_equal(p->dropped_attributes_count, s->a.dropped);
		assert_int_equal(p->dropped_events_count, 1);
		assert_int_equal(p->dropped_links_count, 1);
		assert_int_equal(p->events[3]->dropped_attributes_count, 2);
		assert_int_equal(p->links[3]->dropped_attributes_count, 1);
	}
	free_req(req);
	ws_span_free(s);
	ws_resource_put(r);
}

/* Spans of r1, r2, no resource, r1, r2, r1: three ResourceSpans in order of
 * first appearance, spans in input order within each. */
static void multiple_resources(void **state)
{
	struct ws_resource *r1 = resource(1, "a"), *r2 = resource(2, "b");
	struct ws_resource *rof[6] = {r1, r2, NULL, r1, r2, r1};
	struct ws_span *s[6], *g1[3], *g2[2], *g3[1];
	pb_request *req;
	size_t i;

	for (i = 0; i < 6; i++) {
		s[i] = ws_span_new("s", WS_SPAN_KIND_SERVER, 100 + i, NULL);
		ws_attrs_int(&s[i]->a, "i", (int64_t)i);
		ws_span_set_resource(s[i], rof[i]);
	}
	g1[0] = s[0], g1[1] = s[3], g1[2] = s[5];
	g2[0] = s[1], g2[1] = s[4];
	g3[0] = s[2];
	req = encode_unpack(s, 6, NULL);
	assert_int_equal(req->n_resource_spans, 3);
	check_rspans(req->resource_spans[0], r1, g1, 3);
	check_rspans(req->resource_spans[1], r2, g2, 2);
	check_rspans(req->resource_spans[2], NULL, g3, 1);
	free_req(req);
	free_spans(s, 6);
	ws_resource_put(r1);
	ws_resource_put(r2);
}

/* Many spans and resources (the grouping hash), large sub-messages (multi-
 * byte length prefixes); TracesData reads the same bytes; protobuf-c packs
 * its own decoding back to the same bytes. */
static void big_batch_and_traces_data(void **state)
{
	enum { N = 3000, R = 300 };
	struct ws_resource *r[R];
	struct ws_span **s = calloc(N, sizeof(*s));
	uint8_t *buf, *again;
	size_t len, i, k;
	pb_traces *td;

	for (i = 0; i < R; i++)
		r[i] = resource(i, "svc");
	for (i = 0; i < N; i++) {
		s[i] = full_span(r[(i * 7) % R]);
		ws_attrs_int(&s[i]->a, "seq", (int64_t)i);
	}
	assert_int_equal(ws_otlp_pb_encode(s, N, &buf, &len), 0);
	td = opentelemetry__proto__trace__v1__traces_data__unpack(NULL, len,
								  buf);
	assert_non_null(td);
	assert_int_equal(td->n_resource_spans, R);
	for (i = 0; i < R; i++) {
		const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss =
			td->resource_spans[i]->scope_spans[0];

		/* spans 0..R-1 have distinct resources: group i starts at
		 * span i */
		assert_int_equal(ss->n_spans, N / R);
		assert_int_equal(ss->spans[0]->attributes[15]->value->int_value,
				 i);
		/* process.pid is the resource's key */
		assert_int_equal(td->resource_spans[i]
					 ->resource->attributes[1]
					 ->value->int_value,
				 (i * 7) % R);
		for (k = 0; k < ss->n_spans; k++) {
			const pb_span *p = ss->spans[k];
			int64_t seq = p->attributes[15]->value->int_value;

			check_span(p, s[seq]);
			assert_ptr_equal(s[seq]->resource,
					 s[ss->spans[0]
						   ->attributes[15]
						   ->value->int_value]
						 ->resource);
			if (k)
				assert_true(seq > ss->spans[k - 1]
							  ->attributes[15]
							  ->value->int_value);
		}
	}
	again = malloc(len);
	assert_int_equal(protobuf_c_message_pack(&td->base, again), len);
	assert_memory_equal(again, buf, len);
	free(again);
	opentelemetry__proto__trace__v1__traces_data__free_unpacked(td, NULL);
	free(buf);
	free_spans(s, N);
	free(s);
	for (i = 0; i < R; i++)
		ws_resource_put(r[i]);
}

/* The output buffer is sized by a bound, not by protobuf-c: spans that make
 * every field as large as it gets (10-byte varints, multi-byte lengths,
 * full lists, 1024-byte strings, long keys) and random ones, under valgrind,
 * must neither overflow it (the encoder aborts if packing passed it) nor
 * differ from protobuf-c's own size. */
static void worst_case_sizes(void **state)
{
	static char keys[WS_SPAN_MAX_ATTRS][300];
	struct ws_resource *r = ws_resource_new(1);
	struct ws_span *s[64];
	char big[WS_SPAN_MAX_STR + 1];
	unsigned seed = 12345;
	size_t i, j, len, count;
	pb_request *req;
	uint8_t *buf;

	memset(big, 'x', WS_SPAN_MAX_STR);
	big[WS_SPAN_MAX_STR] = '\0';
	for (i = 0; i < WS_SPAN_MAX_ATTRS; i++) {
		memset(keys[i], 'k', sizeof(keys[i]) - 1);
		snprintf(keys[i], 8, "%03zu", i);
		keys[i][3] = 'k';
	}
	for (i = 0; i < WS_RESOURCE_MAX_ATTRS; i++)
		ws_attrs_cstr(&r->a, keys[i], big);
	r->a.dropped = UINT32_MAX;
	for (i = 0; i < 64; i++) {
		struct ws_span *x = ws_span_new(big, 0xff, UINT64_MAX, NULL);

		x->trace_state = strdup(big);
		x->flags = UINT32_MAX;
		x->end_ns = UINT64_MAX;
		for (j = 0; j < WS_SPAN_MAX_ATTRS; j++) {
			seed = seed * 1103515245 + 12345;
			switch (i < 32 ? j % 4 : (seed >> 16) % 5) {
			case 0:
				ws_attrs_int(&x->a, keys[j],
					     INT64_MIN + (int64_t)j);
				break;
			case 1:
				ws_attrs_str(&x->a, keys[j], big,
					     i < 32 ? sizeof(big) - 1
						    : (seed >> 8) %
							      sizeof(big));
				break;
			case 2:
				ws_attrs_double(&x->a, keys[j], -1e-300);
				break;
			case 3:
				ws_attrs_bool(&x->a, keys[j], true);
				break;
			default: /* fewer attributes */
				break;
			}
		}
		x->a.dropped = UINT32_MAX;
		while (x->n_events < WS_SPAN_MAX_EVENTS) {
			struct ws_span_event *e = ws_span_add_event(
				x, keys[x->n_events], UINT64_MAX);

			for (j = 0; j < WS_SPAN_MAX_EVENT_ATTRS; j++)
				ws_attrs_int(&e->a, keys[j], -1);
			e->a.dropped = UINT32_MAX;
		}
		while (x->n_links < WS_SPAN_MAX_LINKS) {
			struct ws_span_link *l = &x->links[x->n_links];

			ws_span_add_link(x, TID, LSID, UINT32_MAX);
			ws_attrs_cstr(&l->a, keys[0], big);
			ws_attrs_int(&l->a, keys[1], INT64_MIN);
			l->a.dropped = UINT32_MAX;
		}
		x->dropped_events = x->dropped_links = UINT32_MAX;
		ws_span_set_status(x, 0xff, big);
		/* every other span without a resource: more groups */
		ws_span_set_resource(x, i & 1 ? r : NULL);
		s[i] = x;
	}
	for (i = 1; i <= 64; i++) {
		assert_int_equal(ws_otlp_pb_encode(s, i, &buf, &len), 0);
		assert_int_equal(ws_otlp_pb_decode_count(buf, len, &count), 0);
		assert_int_equal(count, i);
		req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
			NULL, len, buf);
		assert_non_null(req);
		assert_int_equal(protobuf_c_message_get_packed_size(&req->base),
				 len);
		if (i == 64) {
			assert_int_equal(req->n_resource_spans, 2);
			check_span(req->resource_spans[0]
					   ->scope_spans[0]
					   ->spans[31],
				   s[62]);
			check_span(req->resource_spans[1]
					   ->scope_spans[0]
					   ->spans[0],
				   s[1]);
			assert_int_equal(
				req->resource_spans[1]
					->resource->dropped_attributes_count,
				UINT32_MAX);
		}
		free_req(req);
		free(buf);
	}
	free_spans(s, 64);
	ws_resource_put(r);
}

/* ---- independent decode: protobufjs ---- */

static const char *src_root(void)
{
	static char root[4096];
	const char *env = getenv("WS_SRCDIR");
	char exe[4096], *p;
	ssize_t n;
	int up;

	if (env)
		return env;
	if (!access("tests/otlp/decode.js", R_OK))
		return ".";
	/* build/tests/test_otlp_pb -> the repository */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return ".";
	exe[n] = '\0';
	for (up = 0; up < 3 && (p = strrchr(exe, '/')); up++)
		*p = '\0';
	snprintf(root, sizeof(root), "%s", exe);
	return root;
}

static bool node_available(const char *root)
{
	char path[4200];

	snprintf(path, sizeof(path),
		 "%s/tests/node_modules/protobufjs/package.json", root);
	if (access(path, R_OK))
		return false;
	return system("command -v node >/dev/null 2>&1") == 0;
}

/* Run decode.js on bytes; its JSON output parsed, or NULL if it failed. */
static json_object *node_decode(const char *root, const uint8_t *buf,
				size_t len)
{
	char file[] = "/tmp/ws_otlp_pb_XXXXXX", cmd[8400];
	char *text = NULL;
	size_t tlen = 0;
	json_object *o;
	FILE *p, *mem;
	int fd, c;

	fd = mkstemp(file);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	snprintf(cmd, sizeof(cmd), "node '%s/tests/otlp/decode.js' '%s'", root,
		 file);
	p = popen(cmd, "r");
	assert_non_null(p);
	mem = open_memstream(&text, &tlen);
	while ((c = fgetc(p)) != EOF)
		fputc(c, mem);
	fclose(mem);
	c = pclose(p);
	unlink(file);
	o = c == 0 ? json_tokener_parse(text) : NULL;
	if (!o)
		fprintf(stderr, "decode.js failed (%d): %s\n", c, text);
	free(text);
	return o;
}

static json_object *jpath(json_object *o, const char *fmt, ...)
{
	char path[256], *tok, *save = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	for (tok = strtok_r(path, ".", &save); tok && o;
	     tok = strtok_r(NULL, ".", &save)) {
		if (json_object_is_type(o, json_type_array))
			o = json_object_array_get_idx(o, atoi(tok));
		else if (!json_object_object_get_ex(o, tok, &o))
			o = NULL;
	}
	return o;
}

static const char *jstr(json_object *o, const char *fmt, const char *key)
{
	json_object *v = jpath(o, fmt, key);

	return v ? json_object_get_string(v) : NULL;
}

/* A string field; omitted (proto3: at its default) means "". */
static const char *jstr0(json_object *o, const char *key)
{
	const char *v = jstr(o, "%s", key);

	return v ? v : "";
}

/* A fixed64 as OTLP/JSON's decimal string; omitted means 0. */
static const char *ju64(json_object *o, const char *key)
{
	const char *v = jstr(o, "%s", key);

	return v ? v : "0";
}

static int64_t jint(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0; /* omitted: the default */
	return json_object_get_int64(v);
}

static void jcheck_hex(json_object *o, const char *key, const uint8_t *id,
		       size_t n)
{
	char hex[33];

	ws_id_hex(id, n, hex);
	assert_non_null(jpath(o, "%s", key));
	assert_string_equal(jstr(o, "%s", key), hex);
}

static void jcheck_attrs(json_object *arr, const struct ws_attrs *a)
{
	char num[24];
	uint16_t i;

	assert_non_null(arr);
	assert_int_equal(json_object_array_length(arr), a->n);
	for (i = 0; i < a->n; i++) {
		json_object *kv = json_object_array_get_idx(arr, i), *v;
		const struct ws_attr *at = &a->v[i];

		assert_string_equal(jstr0(kv, "key"), at->key);
		v = jpath(kv, "value");
		assert_non_null(v);
		assert_int_equal(json_object_object_length(v), 1);
		switch (at->type) {
		case WS_ATTR_STR:
			assert_string_equal(jstr(v, "%s", "stringValue"),
					    at->s);
			break;
		case WS_ATTR_INT:
			/* int64 as a decimal string, as OTLP/JSON has it */
			snprintf(num, sizeof(num), "%lld", (long long)at->i);
			assert_string_equal(jstr(v, "%s", "intValue"), num);
			break;
		case WS_ATTR_BOOL:
			assert_int_equal(
				json_object_get_boolean(jpath(v, "boolValue")),
				at->b);
			break;
		case WS_ATTR_DOUBLE:
			assert_true(json_object_get_double(
					    jpath(v, "doubleValue")) == at->d);
			break;
		}
	}
}

static void jcheck_span(json_object *js, const struct ws_span *s)
{
	char num[24];
	uint16_t i;

	assert_non_null(js);
	jcheck_hex(js, "traceId", s->trace_id, 16);
	jcheck_hex(js, "spanId", s->span_id, 8);
	if (s->has_parent)
		jcheck_hex(js, "parentSpanId", s->parent_span_id, 8);
	else
		assert_null(jpath(js, "parentSpanId"));
	if (s->trace_state)
		assert_string_equal(jstr0(js, "traceState"), s->trace_state);
	assert_int_equal(jint(js, "flags"), s->flags);
	assert_string_equal(jstr0(js, "name"), s->name);
	assert_int_equal(jint(js, "kind"), s->kind);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)s->start_ns);
	assert_string_equal(ju64(js, "startTimeUnixNano"), num);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)s->end_ns);
	assert_string_equal(ju64(js, "endTimeUnixNano"), num);
	jcheck_attrs(jpath(js, "attributes"), &s->a);
	assert_int_equal(jint(js, "droppedAttributesCount"), s->a.dropped);
	assert_int_equal(json_object_array_length(jpath(js, "events")),
			 s->n_events);
	for (i = 0; i < s->n_events; i++) {
		json_object *e = jpath(js, "events.%u", i);

		snprintf(num, sizeof(num), "%llu",
			 (unsigned long long)s->events[i].time_ns);
		assert_string_equal(ju64(e, "timeUnixNano"), num);
		assert_string_equal(jstr0(e, "name"), s->events[i].name);
		jcheck_attrs(jpath(e, "attributes"), &s->events[i].a);
		assert_int_equal(jint(e, "droppedAttributesCount"),
				 s->events[i].a.dropped);
	}
	assert_int_equal(jint(js, "droppedEventsCount"), s->dropped_events);
	assert_int_equal(json_object_array_length(jpath(js, "links")),
			 s->n_links);
	for (i = 0; i < s->n_links; i++) {
		json_object *l = jpath(js, "links.%u", i);

		jcheck_hex(l, "traceId", s->links[i].trace_id, 16);
		jcheck_hex(l, "spanId", s->links[i].span_id, 8);
		assert_int_equal(jint(l, "flags"), s->links[i].flags);
		jcheck_attrs(jpath(l, "attributes"), &s->links[i].a);
		assert_int_equal(jint(l, "droppedAttributesCount"),
				 s->links[i].a.dropped);
	}
	assert_int_equal(jint(js, "droppedLinksCount"), s->dropped_links);
	if (s->status == WS_STATUS_UNSET && !s->status_message) {
		assert_null(jpath(js, "status"));
	} else {
		json_object *st = jpath(js, "status");

		assert_non_null(st);
		assert_int_equal(jint(st, "code"), s->status);
		if (s->status_message)
			assert_string_equal(jstr0(st, "message"),
					    s->status_message);
		else
			assert_null(jpath(st, "message"));
	}
}

static bool is_default(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		return true;
	case json_type_boolean:
		return !json_object_get_boolean(v);
	case json_type_int:
		return json_object_get_int64(v) == 0;
	case json_type_double:
		return json_object_get_double(v) == 0;
	case json_type_string:
		return !strcmp(json_object_get_string(v), "") ||
		       !strcmp(json_object_get_string(v), "0");
	case json_type_array:
		return json_object_array_length(v) == 0;
	case json_type_object:
		return false;
	}
	return false;
}

/* The same OTLP/JSON tree, a field at its default and an absent field being
 * the same thing (proto3 does not write defaults; the JSON encoder writes
 * some). Reports the path of the first difference. */
static bool same_tree(json_object *a, json_object *b, const char *path)
{
	enum json_type ta = json_object_get_type(a),
		       tb = json_object_get_type(b);
	char sub[512];
	size_t i;

	if ((ta == json_type_int || ta == json_type_double) &&
	    (tb == json_type_int || tb == json_type_double)) {
		if (ta == json_type_int && tb == json_type_int
			    ? json_object_get_int64(a) ==
				      json_object_get_int64(b)
			    : json_object_get_double(a) ==
				      json_object_get_double(b))
			return true;
		goto differ;
	}
	if (ta != tb)
		goto differ;
	switch (ta) {
	case json_type_object: {
		json_object_object_foreach(a, k, va)
		{
			json_object *vb;

			snprintf(sub, sizeof(sub), "%s.%s", path, k);
			if (!json_object_object_get_ex(b, k, &vb)) {
				if (!is_default(va))
					goto missing;
			} else if (!same_tree(va, vb, sub)) {
				return false;
			}
		}
		json_object_object_foreach(b, k2, vb2)
		{
			snprintf(sub, sizeof(sub), "%s.%s", path, k2);
			if (!json_object_object_get_ex(a, k2, NULL) &&
			    !is_default(vb2))
				goto missing;
		}
		return true;
	}
	case json_type_array:
		if (json_object_array_length(a) != json_object_array_length(b))
			goto differ;
		for (i = 0; i < json_object_array_length(a); i++) {
			snprintf(sub, sizeof(sub), "%s.%zu", path, i);
			if (!same_tree(json_object_array_get_idx(a, i),
				       json_object_array_get_idx(b, i), sub))
				return false;
		}
		return true;
	case json_type_string:
		if (!strcmp(json_object_get_string(a),
			    json_object_get_string(b)))
			return true;
		goto differ;
	case json_type_boolean:
		if (json_object_get_boolean(a) == json_object_get_boolean(b))
			return true;
		goto differ;
	default:
		return true;
	}
differ:
	fprintf(stderr, "differ at %s: %s vs %s\n", path,
		json_object_to_json_string(a), json_object_to_json_string(b));
	return false;
missing:
	fprintf(stderr, "only on one side: %s\n", sub);
	return false;
}

static void independent_decode(void **state)
{
	const char *root = src_root();
	struct ws_resource *r1 = resource(7, "orders"), *r2 = resource(8, "b");
	struct ws_span *s[5];
	json_object *pb, *js;
	char *text = NULL;
	size_t tlen = 0, len;
	uint8_t *buf;
	FILE *mem;

	if (!node_available(root)) {
		fprintf(stderr,
			"\n*** SKIPPED independent decode: node or "
			"%s/tests/node_modules/protobufjs missing; "
			"run `npm ci --prefix tests` ***\n\n",
			root);
		skip();
	}
	s[0] = full_span(r1);
	s[1] = ws_span_new("receive", WS_SPAN_KIND_CONSUMER, 10, NULL);
	ws_span_set_resource(s[1], r2);
	ws_span_set_status(s[1], WS_STATUS_OK, NULL);
	s[2] = ws_span_new("orphan", WS_SPAN_KIND_INTERNAL, 20, TID);
	ws_span_set_status(s[2], WS_STATUS_UNSET, "unset but described");
	s[3] = full_span(r1);
	overflow(s[3], false);
	s[4] = ws_span_new("no kind", WS_SPAN_KIND_UNSPECIFIED, 0, NULL);
	ws_span_set_resource(s[4], r2);

	/* 1. field by field against the spans */
	assert_int_equal(ws_otlp_pb_encode(s, 5, &buf, &len), 0);
	pb = node_decode(root, buf, len);
	assert_non_null(pb);
	assert_int_equal(json_object_array_length(jpath(pb, "resourceSpans")),
			 3);
	assert_string_equal(
		jstr(pb, "%s", "resourceSpans.0.scopeSpans.0.scope.name"),
		"wirespan");
	assert_string_equal(
		jstr(pb, "%s", "resourceSpans.2.scopeSpans.0.scope.version"),
		WIRESPAN_VERSION);
	jcheck_attrs(jpath(pb, "resourceSpans.0.resource.attributes"), &r1->a);
	jcheck_attrs(jpath(pb, "resourceSpans.1.resource.attributes"), &r2->a);
	assert_int_equal(json_object_array_length(jpath(
				 pb, "resourceSpans.2.resource.attributes")),
			 0);
	jcheck_span(jpath(pb, "resourceSpans.0.scopeSpans.0.spans.0"), s[0]);
	jcheck_span(jpath(pb, "resourceSpans.0.scopeSpans.0.spans.1"), s[3]);
	jcheck_span(jpath(pb, "resourceSpans.1.scopeSpans.0.spans.0"), s[1]);
	jcheck_span(jpath(pb, "resourceSpans.1.scopeSpans.0.spans.1"), s[4]);
	jcheck_span(jpath(pb, "resourceSpans.2.scopeSpans.0.spans.0"), s[2]);
	assert_null(jpath(pb, "resourceSpans.0.scopeSpans.0.spans.2"));

	/* 2. the same tree as the OTLP/JSON encoder's */
	mem = open_memstream(&text, &tlen);
	assert_int_equal(ws_otlp_json_write(mem, s, 5), 0);
	fclose(mem);
	js = json_tokener_parse(text);
	assert_non_null(js);
	assert_true(same_tree(js, pb, "$"));
	json_object_put(js);
	json_object_put(pb);
	free(text);
	free(buf);

	/* 3. what only the protobuf encoder carries: nested dropped counts */
	overflow(s[0], true);
	assert_int_equal(ws_otlp_pb_encode(s, 1, &buf, &len), 0);
	pb = node_decode(root, buf, len);
	assert_non_null(pb);
	jcheck_span(jpath(pb, "resourceSpans.0.scopeSpans.0.spans.0"), s[0]);
	assert_int_equal(jint(jpath(pb, "resourceSpans.0.scopeSpans.0.spans.0."
					"events.3"),
			      "droppedAttributesCount"),
			 2);
	json_object_put(pb);
	free(buf);

	/* 4. the empty request */
	assert_int_equal(ws_otlp_pb_encode(s, 0, &buf, &len), 0);
	pb = node_decode(root, buf, len);
	assert_non_null(pb);
	assert_int_equal(json_object_array_length(jpath(pb, "resourceSpans")),
			 0);
	json_object_put(pb);
	free(buf);

	free_spans(s, 5);
	ws_resource_put(r1);
	ws_resource_put(r2);
}

/* ---- the direct writer against the protobuf-c reference ---- */

static const char *const rnd_keys[] = {
	"",
	"k",
	"messaging.system",
	"http.request.method",
	"ключ",
	"キー",
	"a.b.c.d.e.f.g.h",
	"server.port",
	"x",
	"y",
	"z",
	"error.type",
	"k0",
	"k1",
	"k2",
	"k3",
	"k4",
	"k5",
	"k6",
	"k7",
	"k8",
	"k9",
	"ka",
	"kb",
	"kc",
	"kd",
	"ke",
	"kf",
	"kg",
	"kh",
	"ki",
	"kj",
	"kk",
	"kl",
	"km",
	"kn",
	"ko",
	"kp",
	"kq",
	"kr",
	"ks",
	"kt",
	"ku",
	"kv",
	"kw",
	"kx",
	"ky",
	"kz",
	"kA",
	"kB",
	"kC",
	"kD",
};
#define N_RND_KEYS (sizeof(rnd_keys) / sizeof(rnd_keys[0]))

static const char *const rnd_strs[] = {
	"",
	"nats",
	"orders.\"créé\"\\\n\t/<>",
	"日本語のテキスト 🙂 émoji",
	"\x7f control \x01\x1f",
	/* last: the attribute setters make it valid UTF-8, a span's name and
	 * trace_state are taken as they are (valid, the builders' contract) */
	"bad utf-8 \xc3\x28 \xff end",
};
#define N_RND_VALID 5

/* A random string: one of the above (only the first N_RND_VALID unless
 * any), or a long one (up to past the cut). */
static void rnd_str(char *buf, size_t cap, const char **s, size_t *len,
		    bool any)
{
	unsigned k = rnd_below(8);

	if (!any && k == N_RND_VALID)
		k = 0;
	size_t i, n;

	if (k < sizeof(rnd_strs) / sizeof(rnd_strs[0])) {
		*s = rnd_strs[k];
		*len = strlen(*s);
		return;
	}
	n = rnd_below(k == 6 ? 200 : (unsigned)cap - 1);
	for (i = 0; i < n; i++)
		buf[i] = (char)(' ' + rnd_below(95));
	buf[n] = '\0';
	*s = buf;
	*len = n;
}

static void rnd_attrs(struct ws_attrs *a, unsigned max)
{
	static const double dbl[] = {
		0.0, -0.0, 0.1, -2.5e-300, 1e300, 3.141592653589793, 4.9e-324};
	static const int64_t ints[] = {0,   1,	 -1,	    127,
				       128, 300, INT64_MIN, INT64_MAX};
	char buf[1500];
	unsigned i, n = rnd_below(max + 1);
	const char *s;
	size_t len;

	for (i = 0; i < n; i++) {
		const char *key = rnd_keys[rnd_below(N_RND_KEYS)];

		switch (rnd_below(4)) {
		case 0:
			rnd_str(buf, sizeof(buf), &s, &len, true);
			ws_attrs_str(a, key, s, len);
			break;
		case 1:
			ws_attrs_int(a, key,
				     rnd_below(2) ? ints[rnd_below(8)]
						  : (int64_t)rnd());
			break;
		case 2:
			ws_attrs_bool(a, key, rnd_below(2));
			break;
		default:
			ws_attrs_double(a, key,
					rnd_below(2)
						? dbl[rnd_below(7)]
						: (double)(int64_t)rnd() / 7.0);
			break;
		}
	}
	if (!rnd_below(4)) /* a count that did not come from an overflow */
		a->dropped += (uint32_t)rnd_below(3) ? rnd_below(200)
						     : (uint32_t)rnd();
}

static uint64_t rnd_time(void)
{
	switch (rnd_below(4)) {
	case 0:
		return 0;
	case 1:
		return rnd();
	default:
		return 1700000000000000000ull + rnd() % 1000000000000ull;
	}
}

static struct ws_span *rnd_span(struct ws_resource *const *res, size_t nres)
{
	static const char *const ev_names[] = {"", "exception", "ack", "é"};
	char name[1500];
	const char *nm;
	size_t len;
	struct ws_span *s;
	uint8_t id[16], sid[8];
	unsigned i, k;

	rnd_str(name, sizeof(name), &nm, &len, false);
	s = ws_span_new(nm, (uint8_t)rnd_below(6), rnd_time(),
			rnd_below(2) ? NULL : TID);
	assert_non_null(s);
	s->end_ns = rnd_time();
	if (rnd_below(2)) {
		ws_id_random(id, 16);
		ws_id_random(sid, 8);
		ws_span_set_parent(s, id, sid);
	}
	k = rnd_below(3);
	s->flags = k == 0 ? 0 : k == 1 ? 0x301 : (uint32_t)rnd();
	if (rnd_below(3)) {
		rnd_str(name, sizeof(name), &nm, &len, false);
		s->trace_state = strdup(nm);
	}
	rnd_attrs(&s->a, rnd_below(8) ? 24 : WS_SPAN_MAX_ATTRS + 4);
	k = rnd_below(WS_SPAN_MAX_EVENTS + 3);
	for (i = 0; i < k; i++) {
		struct ws_span_event *e = ws_span_add_event(
			s, ev_names[rnd_below(4)], rnd_time());

		if (e)
			rnd_attrs(&e->a, WS_SPAN_MAX_EVENT_ATTRS + 2);
	}
	k = rnd_below(WS_SPAN_MAX_LINKS + 3);
	for (i = 0; i < k; i++) {
		ws_id_random(id, 16);
		ws_id_random(sid, 8);
		if (!ws_span_add_link(s, id, sid,
				      rnd_below(2) ? 0 : (uint32_t)rnd()))
			rnd_attrs(&s->links[s->n_links - 1].a, 3);
	}
	if (!rnd_below(5))
		s->dropped_links += (uint32_t)rnd();
	if (!rnd_below(5))
		s->dropped_events += rnd_below(1000);
	k = rnd_below(4);
	if (k < 3)
		ws_span_set_status(s, (uint8_t)k,
				   rnd_below(2)	  ? NULL
				   : rnd_below(2) ? ""
						  : "no responders");
	k = rnd_below((unsigned)nres + 1);
	if (k < nres)
		ws_span_set_resource(s, res[k]);
	return s;
}

/* Encode with both encoders: the same bytes. Returns the direct one's. */
static uint8_t *encode_both(struct ws_span *const *s, size_t n, size_t *len)
{
	uint8_t *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;

	assert_int_equal(ws_otlp_pb_encode(s, n, &a, &alen), 0);
	assert_int_equal(ws_otlp_pb_encode_ref(s, n, &b, &blen), 0);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(b);
	*len = alen;
	return a;
}

/* The decoded tree against the spans: groups by resource, first seen first. */
static void check_grouped(const uint8_t *buf, size_t len,
			  struct ws_span *const *s, size_t n)
{
	struct ws_resource *seen[8];
	struct ws_span *grp[64];
	size_t ng = 0, g, i, k;
	pb_request *req =
		opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
			NULL, len, buf);

	assert_non_null(req);
	for (i = 0; i < n; i++) {
		for (g = 0; g < ng && seen[g] != s[i]->resource; g++)
			;
		if (g == ng)
			seen[ng++] = s[i]->resource;
	}
	assert_int_equal(req->n_resource_spans, ng);
	for (g = 0; g < ng; g++) {
		for (i = k = 0; i < n; i++)
			if (s[i]->resource == seen[g])
				grp[k++] = s[i];
		check_rspans(req->resource_spans[g], seen[g], grp, k);
	}
	free_req(req);
}

static void direct_matches_reference(void **state)
{
	struct ws_resource *r[4];
	struct ws_span *s[64];
	uint8_t *buf;
	size_t len, n, i;
	int round;

	for (i = 0; i < 4; i++) {
		r[i] = ws_resource_new(i);
		assert_non_null(r[i]);
		if (i) /* r[0]: a resource without attributes */
			rnd_attrs(&r[i]->a,
				  i == 3 ? WS_RESOURCE_MAX_ATTRS + 3 : 12);
	}
	for (round = 0; round < 400; round++) {
		n = round < 64 ? (size_t)round : rnd_below(64);
		for (i = 0; i < n; i++)
			s[i] = rnd_span(r, 4);
		buf = encode_both(s, n, &len);
		check_grouped(buf, len, s, n);
		free(buf);
		free_spans(s, n);
	}

	/* what the span API does not make: an attribute of no known type
	 * (an empty AnyValue) and bit patterns JSON cannot carry */
	s[0] = rnd_span(r, 4);
	assert_int_equal(ws_attrs_int(&s[0]->a, "unknown", 5), 0);
	s[0]->a.v[s[0]->a.n - 1].type = 0;
	assert_int_equal(ws_attrs_double(&s[0]->a, "nan", NAN), 0);
	assert_int_equal(ws_attrs_double(&s[0]->a, "inf", -INFINITY), 0);
	buf = encode_both(s, 1, &len);
	free(buf);
	free_spans(s, 1);
	for (i = 0; i < 4; i++)
		ws_resource_put(r[i]);
}

/* ---- attribute blocks (span.h ws_attrs_add_block) ---- */

/* keys in no rnd_keys: a block of them fits a span without replacing */
static const char *const blk_keys[] = {
	"blk.a", "blk.b", "blk.c", "blk.d", "blk.e", "blk.f", "blk.g",
	"blk.h", "blk.i", "blk.j", "blk.k", "blk.l", "blk.m", "blk.n",
};
#define N_BLK_KEYS (sizeof(blk_keys) / sizeof(blk_keys[0]))

static struct ws_attr_block *rnd_block(bool own_keys)
{
	struct ws_attr store[N_BLK_KEYS];
	struct ws_attrs a;
	struct ws_attr_block *b;
	char buf[1500];
	const char *str;
	size_t len;
	unsigned i, n = rnd_below(N_BLK_KEYS + 1);

	ws_attrs_init(&a, store, N_BLK_KEYS);
	if (!own_keys) {
		rnd_attrs(&a, N_BLK_KEYS);
	} else {
		for (i = 0; i < n; i++) {
			const char *key = blk_keys[i];

			if (rnd_below(3)) {
				rnd_str(buf, sizeof(buf), &str, &len, true);
				ws_attrs_str(&a, key, str, len);
			} else {
				ws_attrs_int(&a, key, (int64_t)rnd());
			}
		}
	}
	b = ws_attr_block_new(&a);
	assert_non_null(b);
	ws_attrs_clear(&a);
	return b;
}

/* Add block b to a, with the block (use) or as a copy of its attributes. */
static void add_blk(struct ws_attrs *a, struct ws_attr_block *b, bool use)
{
	if (use)
		ws_attrs_add_block(a, b);
	else
		ws_attrs_copy(a, &b->a);
}

/* A random span with blocks among its attributes, from seed: the same
 * span whether the blocks are used (use) or copied, but for its ids. */
static struct ws_span *blk_span(struct ws_attr_block *const *blk, size_t nblk,
				struct ws_resource *const *res, size_t nres,
				uint64_t seed, bool use)
{
	struct ws_span *s;
	unsigned i, k;

	rnd_state = seed;
	s = rnd_span(res, nres);
	if (rnd_below(3)) { /* room for a block, most of the time */
		ws_attrs_clear(&s->a);
		s->a.dropped = s->a.cut = 0;
		rnd_attrs(&s->a, 6);
	}
	k = rnd_below(WS_ATTRS_MAX_BLOCKS + 3);
	for (i = 0; i < k; i++) {
		struct ws_attr_block *b = blk[rnd_below((unsigned)nblk)];

		switch (rnd_below(6)) {
		case 0:
			if (s->n_events)
				add_blk(&s->events[0].a, b, use);
			break;
		case 1:
			if (s->n_links)
				add_blk(&s->links[0].a, b, use);
			break;
		default:
			add_blk(&s->a, b, use);
			rnd_attrs(&s->a, 3);
			break;
		}
	}
	if (s->a.n && !rnd_below(4)) /* replace one, maybe a block's */
		ws_attrs_int(&s->a, s->a.v[rnd_below(s->a.n)].key, 7);
	return s;
}

static void same_attrs(const struct ws_attrs *x, const struct ws_attrs *y)
{
	uint16_t i;

	assert_int_equal(x->n, y->n);
	assert_int_equal(x->dropped, y->dropped);
	assert_int_equal(x->cut, y->cut);
	for (i = 0; i < x->n; i++) {
		const struct ws_attr *a = &x->v[i], *b = &y->v[i];

		assert_string_equal(a->key, b->key);
		assert_int_equal(a->type, b->type);
		assert_int_equal(a->klen, b->klen);
		assert_int_equal(a->khash, b->khash);
		assert_int_equal(a->flags & WS_ATTR_F_CUT,
				 b->flags & WS_ATTR_F_CUT);
		if (a->type == WS_ATTR_STR) {
			assert_int_equal(a->slen, b->slen);
			assert_string_equal(a->s, b->s);
		} else if (a->type == WS_ATTR_BOOL) {
			assert_int_equal(a->b, b->b);
		} else {
			assert_int_equal(a->i, b->i); /* int, double bits */
		}
	}
}

/* The twin spans (blocks used, blocks copied) have the same attributes and
 * counts, and the same bytes from both encoders, alone and in batches in
 * which spans share blocks (their encoding made once, then reused), with
 * up to WS_ATTRS_MAX_BLOCKS blocks in a span and more copied; the blocks'
 * last references are the spans'. */
static void blocks_match_copies(void **state)
{
	struct ws_resource *r[2];
	struct ws_attr_block *blk[4];
	struct ws_span *x[32], *y[32];
	uint8_t *bx, *by;
	size_t lx, ly, n, i, whole = 0, broken = 0, two = 0;
	uint64_t seed;
	int round, k;
	uint16_t e;

	for (i = 0; i < 2; i++) {
		r[i] = ws_resource_new(i);
		assert_non_null(r[i]);
		rnd_attrs(&r[i]->a, 6);
	}
	for (round = 0; round < 200; round++) {
		for (i = 0; i < 4; i++)
			blk[i] = rnd_block(i < 3);
		n = 1 + rnd_below(32);
		for (i = 0; i < n; i++) {
			seed = rnd() | 1;
			x[i] = blk_span(blk, 4, r, 2, seed, true);
			y[i] = blk_span(blk, 4, r, 2, seed, false);
			memcpy(y[i]->trace_id, x[i]->trace_id, 16);
			memcpy(y[i]->span_id, x[i]->span_id, 8);
			memcpy(y[i]->parent_span_id, x[i]->parent_span_id, 8);
			for (e = 0; e < x[i]->n_links; e++) {
				memcpy(y[i]->links[e].trace_id,
				       x[i]->links[e].trace_id, 16);
				memcpy(y[i]->links[e].span_id,
				       x[i]->links[e].span_id, 8);
			}
			same_attrs(&x[i]->a, &y[i]->a);
			for (e = 0; e < x[i]->n_events; e++)
				same_attrs(&x[i]->events[e].a,
					   &y[i]->events[e].a);
			for (e = 0; e < x[i]->n_links; e++)
				same_attrs(&x[i]->links[e].a,
					   &y[i]->links[e].a);
			for (k = 0; k < WS_ATTRS_MAX_BLOCKS; k++) {
				if (x[i]->a.blk[k] && x[i]->a.blk_whole[k])
					whole++;
				else if (x[i]->a.blk[k])
					broken++;
			}
			two += x[i]->a.blk[1] && x[i]->a.blk_whole[1];
		}
		for (i = 0; i < 4; i++)
			ws_attr_block_put(blk[i]); /* the spans keep theirs */
		bx = encode_both(x, n, &lx);
		by = encode_both(y, n, &ly);
		assert_int_equal(lx, ly);
		assert_memory_equal(bx, by, lx);
		free(bx);
		free(by);
		bx = encode_both(x, 1, &lx); /* a block encoded already */
		by = encode_both(y, 1, &ly);
		assert_int_equal(lx, ly);
		assert_memory_equal(bx, by, lx);
		free(bx);
		free(by);
		free_spans(x, n);
		free_spans(y, n);
	}
	/* both ways through the encoder were taken, many times */
	assert_true(whole > 100);
	assert_true(broken > 10);
	assert_true(two > 20); /* a second block in a span, whole */
	for (i = 0; i < 2; i++)
		ws_resource_put(r[i]);
}

/* protobufjs decodes both encoders' bytes of random spans to the spans. */
static void direct_independent_decode(void **state)
{
	const char *root = src_root();
	struct ws_resource *r[3];
	struct ws_span *s[24];
	json_object *pb;
	char path[64];
	size_t len, i;
	uint8_t *buf;
	int round;

	if (!node_available(root)) {
		fprintf(stderr, "\n*** SKIPPED direct_independent_decode: "
				"node or protobufjs missing ***\n\n");
		skip();
	}
	for (i = 0; i < 3; i++) {
		r[i] = ws_resource_new(i + 10);
		assert_non_null(r[i]);
		rnd_attrs(&r[i]->a, 10);
	}
	for (round = 0; round < 3; round++) {
		/* one resource, so that span i is spans.i of group 0 */
		for (i = 0; i < 24; i++)
			s[i] = rnd_span(&r[round], 1);
		for (i = 0; i < 24; i++)
			if (s[i]->resource != r[round])
				ws_span_set_resource(s[i], r[round]);
		buf = encode_both(s, 24, &len);
		pb = node_decode(root, buf, len);
		assert_non_null(pb);
		jcheck_attrs(jpath(pb, "resourceSpans.0.resource.attributes"),
			     &r[round]->a);
		for (i = 0; i < 24; i++) {
			snprintf(path, sizeof(path),
				 "resourceSpans.0.scopeSpans.0.spans.%zu", i);
			jcheck_span(jpath(pb, "%s", path), s[i]);
		}
		json_object_put(pb);
		free(buf);
		free_spans(s, 24);
	}
	for (i = 0; i < 3; i++)
		ws_resource_put(r[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(empty_input),
		cmocka_unit_test(bad_arguments),
		cmocka_unit_test(round_trip_all_fields),
		cmocka_unit_test(special_doubles_and_long_strings),
		cmocka_unit_test(dropped_counts),
		cmocka_unit_test(multiple_resources),
		cmocka_unit_test(big_batch_and_traces_data),
		cmocka_unit_test(worst_case_sizes),
		cmocka_unit_test(independent_decode),
		cmocka_unit_test(direct_matches_reference),
		cmocka_unit_test(direct_independent_decode),
		cmocka_unit_test(blocks_match_copies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
