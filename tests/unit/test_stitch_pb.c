/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The relay's stitching on the wire (agent/stitch_pb.c) against protobuf-c:
 * random payloads written by the agents' encoder are described exactly as a
 * protobuf-c tree describes them, and random rewrites give, byte for byte,
 * what changing the decoded tree and packing it again gives; a payload
 * nothing was changed in goes on as the bytes that came; joins made by the
 * stitcher end up in the bytes; mangled input never crashes and never
 * yields bytes protobuf-c cannot read.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "rnd.h"
#include "otlp_trace_service.pb-c.h"

#include "export/otlp_pb.h"
#include "export/pb_guard.h"
#include "span.h"
#include "stitch.h"
#include "stitch_pb.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
	pb_request;

#define SPAN_KIND(x) OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__##x
#define ANY_CASE(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##x

static pb_request *unpack(const uint8_t *b, size_t n)
{
	return opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, n, b);
}

static void req_free(pb_request *r)
{
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
		r, NULL);
}

static uint8_t *pack(const pb_request *r, size_t *n)
{
	uint8_t *b;

	*n = opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
		r);
	b = malloc(*n ? *n : 1);
	assert_non_null(b);
	assert_int_equal(
		opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(
			r, b),
		*n);
	return b;
}

/* The spans of a tree in wire order. */
static size_t tree_spans(pb_request *r, pb_span **out, size_t cap)
{
	size_t i, j, k, n = 0;

	for (i = 0; i < r->n_resource_spans; i++)
		for (j = 0; j < r->resource_spans[i]->n_scope_spans; j++)
			for (k = 0;
			     k < r->resource_spans[i]->scope_spans[j]->n_spans;
			     k++) {
				assert_true(n < cap);
				out[n++] = r->resource_spans[i]
						   ->scope_spans[j]
						   ->spans[k];
			}
	return n;
}

/* ---- the reference: what a protobuf-c tree says and becomes ---- */

static const pb_any *ref_attr(const pb_span *s, const char *key)
{
	size_t i;

	for (i = 0; i < s->n_attributes; i++)
		if (!strcmp(s->attributes[i]->key, key))
			return s->attributes[i]->value;
	return NULL;
}

static const char *ref_str(const pb_span *s, const char *key)
{
	const pb_any *v = ref_attr(s, key);

	return v && v->value_case == ANY_CASE(STRING_VALUE) ? v->string_value
							    : NULL;
}

static bool ref_int(const pb_span *s, const char *key, int64_t *out)
{
	const pb_any *v = ref_attr(s, key);

	if (!v || v->value_case != ANY_CASE(INT_VALUE))
		return false;
	*out = v->int_value;
	return true;
}

/* The description stitch_pb.c gave before it read the wire itself. */
static bool ref_describe(const pb_span *s, struct ws_stitch_span *d)
{
	const char *fp, *dl, *rp;
	int64_t seq;

	if (s->trace_id.len != 16 || s->span_id.len != 8)
		return false;
	memset(d, 0, sizeof(*d));
	memcpy(d->trace_id, s->trace_id.data, 16);
	memcpy(d->span_id, s->span_id.data, 8);
	if (s->parent_span_id.len == 8 &&
	    !ws_id_is_zero(s->parent_span_id.data, 8)) {
		memcpy(d->parent_span_id, s->parent_span_id.data, 8);
		d->has_parent = true;
	}
	d->start_ns = s->start_time_unix_nano;
	d->seq = -1;
	rp = ref_str(s, "wirespan.nats.reply_id");
	d->has_reply_id = rp && !ws_id_parse(rp, strlen(rp), d->reply_id, 8);
	fp = ref_str(s, "wirespan.message.fingerprint");
	if (fp) {
		d->fingerprint = XXH3_64bits(fp, strlen(fp));
		d->has_fingerprint = true;
		dl = ref_str(s, "wirespan.nats.delivery_id");
		d->has_delivery =
			dl && !ws_id_parse(dl, strlen(dl), d->delivery_id, 8);
		if (s->kind == SPAN_KIND(SPAN_KIND_CONSUMER) && !d->has_parent)
			d->role = WS_STITCH_NATS_SEEKER;
		if ((s->kind == SPAN_KIND(SPAN_KIND_PRODUCER) ||
		     s->kind == SPAN_KIND(SPAN_KIND_CLIENT)) &&
		    strncmp(s->name, "deliver ", 8))
			d->role = WS_STITCH_NATS_ANCHOR;
		return true;
	}
	if (!ref_int(s, "wirespan.http.conn.seq", &seq))
		return true;
	d->seq = seq;
	d->local.addr = ref_str(s, "network.local.address");
	d->peer.addr = ref_str(s, "network.peer.address");
	d->local.addr_len = d->local.addr ? strlen(d->local.addr) : 0;
	d->peer.addr_len = d->peer.addr ? strlen(d->peer.addr) : 0;
	if (!ref_int(s, "network.local.port", &d->local.port) ||
	    !ref_int(s, "network.peer.port", &d->peer.port))
		return true;
	if (s->kind == SPAN_KIND(SPAN_KIND_CLIENT))
		d->role = WS_STITCH_HTTP_CLIENT;
	else if (s->kind == SPAN_KIND(SPAN_KIND_SERVER) && !d->has_parent)
		d->role = WS_STITCH_HTTP_SERVER;
	return true;
}

static void assert_same_ep(const struct ws_stitch_ep *a,
			   const struct ws_stitch_ep *b)
{
	assert_int_equal(!a->addr, !b->addr);
	assert_int_equal(a->addr_len, b->addr_len);
	if (a->addr)
		assert_memory_equal(a->addr, b->addr, a->addr_len);
	assert_int_equal(a->port, b->port);
}

static void assert_same_desc(const struct ws_stitch_span *a,
			     const struct ws_stitch_span *b)
{
	assert_memory_equal(a->trace_id, b->trace_id, 16);
	assert_memory_equal(a->span_id, b->span_id, 8);
	assert_int_equal(a->has_parent, b->has_parent);
	assert_memory_equal(a->parent_span_id, b->parent_span_id, 8);
	assert_int_equal(a->start_ns, b->start_ns);
	assert_int_equal(a->role, b->role);
	assert_int_equal(a->has_fingerprint, b->has_fingerprint);
	assert_int_equal(a->fingerprint, b->fingerprint);
	assert_int_equal(a->has_delivery, b->has_delivery);
	assert_memory_equal(a->delivery_id, b->delivery_id, 8);
	assert_int_equal(a->has_reply_id, b->has_reply_id);
	assert_memory_equal(a->reply_id, b->reply_id, 8);
	assert_int_equal(a->seq, b->seq);
	if (a->seq >= 0) {
		assert_same_ep(&a->local, &b->local);
		assert_same_ep(&a->peer, &b->peer);
	}
}

/* The rewrite as stitch_pb.c made it on the decoded tree. */
static void ref_rewrite(pb_span *s, const uint8_t trace[16],
			const uint8_t *parent, const char *evidence)
{
	memcpy(s->trace_id.data, trace, 16);
	if (parent) {
		if (s->parent_span_id.len != 8) {
			free(s->parent_span_id.data);
			s->parent_span_id.data = malloc(8);
			assert_non_null(s->parent_span_id.data);
			s->parent_span_id.len = 8;
		}
		memcpy(s->parent_span_id.data, parent, 8);
	}
	if (evidence) {
		pb_kv *kv = malloc(sizeof(*kv));
		pb_any *v = malloc(sizeof(*v));

		assert_non_null(kv);
		assert_non_null(v);
		s->attributes = realloc(s->attributes, (s->n_attributes + 1) *
							       sizeof(pb_kv *));
		assert_non_null(s->attributes);
		opentelemetry__proto__common__v1__key_value__init(kv);
		opentelemetry__proto__common__v1__any_value__init(v);
		kv->key = strdup("wirespan.stitch.evidence");
		v->value_case = ANY_CASE(STRING_VALUE);
		v->string_value = strdup(evidence);
		kv->value = v;
		s->attributes[s->n_attributes++] = kv;
	}
}

/* ---- random payloads, written by the agents' encoder ---- */

static void rnd_id(uint8_t *id, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		id[i] = (uint8_t)rnd();
}

static void hex_attr(struct ws_span *s, const char *key)
{
	uint8_t id[8];
	char hex[17];

	rnd_id(id, 8);
	ws_id_hex(id, 8, hex);
	if (rnd_below(8) == 0) /* not an id */
		hex[3] = 'x';
	assert_int_equal(ws_attrs_cstr(&s->a, key, hex), 0);
}

static const char *const attr_keys[] = {"attr.0", "attr.1", "attr.2",
					"attr.3", "attr.4", "attr.5"};

static struct ws_span *rnd_span(struct ws_resource *r)
{
	static const char *names[] = {"publish a.b",
				      "process a.b",
				      "deliver a.b",
				      "send svc",
				      "GET",
				      "deliver",
				      ""};
	static const uint8_t kinds[] = {
		WS_SPAN_KIND_PRODUCER, WS_SPAN_KIND_CONSUMER,
		WS_SPAN_KIND_CLIENT,   WS_SPAN_KIND_SERVER,
		WS_SPAN_KIND_INTERNAL, WS_SPAN_KIND_UNSPECIFIED};
	uint8_t trace[16], span[8];
	struct ws_span *s;
	unsigned i, n;

	rnd_id(trace, 16);
	s = ws_span_new(names[rnd_below(7)], kinds[rnd_below(6)], rnd() >> 2,
			trace);
	assert_non_null(s);
	rnd_id(span, 8);
	memcpy(s->span_id, span, 8);
	if (rnd_below(2))
		ws_span_set_parent(s, trace, span); /* any id: random below */
	if (s->has_parent)
		rnd_id(s->parent_span_id, 8);
	if (rnd_below(4) == 0)
		memset(s->parent_span_id, 0, 8);
	s->end_ns = s->start_ns + rnd_below(1000000);
	n = rnd_below(6);
	for (i = 0; i < n; i++) /* keys are kept, not copied: static */
		assert_int_equal(ws_attrs_cstr(&s->a, attr_keys[i], "v"), 0);
	switch (rnd_below(4)) {
	case 0: /* NATS */
		assert_int_equal(
			ws_attrs_cstr(&s->a, "wirespan.message.fingerprint",
				      rnd_below(2) ? "0123456789abcdef"
						   : "fedcba9876543210"),
			0);
		if (rnd_below(2))
			hex_attr(s, "wirespan.nats.delivery_id");
		if (rnd_below(2))
			hex_attr(s, "wirespan.nats.reply_id");
		break;
	case 1: /* HTTP */
		assert_int_equal(ws_attrs_int(&s->a, "wirespan.http.conn.seq",
					      rnd_below(4)),
				 0);
		if (rnd_below(4))
			assert_int_equal(ws_attrs_cstr(&s->a,
						       "network.local.address",
						       "10.0.0.2"),
					 0);
		assert_int_equal(
			ws_attrs_cstr(&s->a, "network.peer.address", "fd00::3"),
			0);
		assert_int_equal(ws_attrs_int(&s->a, "network.local.port",
					      40000 + rnd_below(3)),
				 0);
		if (rnd_below(4))
			assert_int_equal(
				ws_attrs_int(&s->a, "network.peer.port", 80),
				0);
		else /* not an int: no role */
			assert_int_equal(
				ws_attrs_cstr(&s->a, "network.peer.port", "80"),
				0);
		break;
	case 2: /* the same keys with other types, or twice */
		assert_int_equal(
			ws_attrs_int(&s->a, "wirespan.message.fingerprint", 7),
			0);
		assert_int_equal(
			ws_attrs_cstr(&s->a, "wirespan.http.conn.seq", "1"), 0);
		break;
	default:
		break;
	}
	/* fields after the attributes: events, links, status, flags */
	if (rnd_below(2)) {
		struct ws_span_event *e = ws_span_add_event(s, "ev", 5);

		assert_non_null(e);
		assert_int_equal(ws_attrs_cstr(&e->a, "k", "v"), 0);
	}
	if (rnd_below(2))
		assert_int_equal(ws_span_add_link(s, trace, span, 1), 0);
	if (rnd_below(2))
		ws_span_set_status(s, WS_STATUS_ERROR, "boom");
	if (rnd_below(2))
		s->flags = 0x301;
	if (rnd_below(3) == 0)
		s->trace_state = strdup("k=v");
	ws_span_set_resource(s, r);
	return s;
}

/* A payload of n random spans over up to three resources. */
static uint8_t *rnd_payload(size_t n, size_t *len)
{
	struct ws_resource *r[3];
	struct ws_span *s[64];
	uint8_t *out;
	size_t i;

	assert_true(n <= 64);
	for (i = 0; i < 3; i++) {
		r[i] = ws_resource_new(i + 1);
		assert_non_null(r[i]);
		assert_int_equal(ws_attrs_cstr(&r[i]->a, "service.name", "t"),
				 0);
	}
	for (i = 0; i < n; i++)
		s[i] = rnd_span(r[rnd_below(3)]);
	assert_int_equal(ws_otlp_pb_encode(s, n, &out, len), 0);
	for (i = 0; i < n; i++)
		ws_span_free(s[i]);
	for (i = 0; i < 3; i++)
		ws_resource_put(r[i]);
	return out;
}

static const char *const evidences[] = {
	"nats.delivery_id",
	"nats.fingerprint",
	"nats.fingerprint;ambiguous=3",
	"http.conn",
	"nats.reply_id",
	/* long enough for two-byte lengths all the way up */
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
};

/* ---- tests ---- */

/* Descriptions and rewritten bytes equal protobuf-c's, payload by
 * payload; the untouched ones are the very bytes that came. */
static void agrees_with_protobuf_c(void **state)
{
	int round;
	(void)state;

	for (round = 0; round < 400; round++) {
		size_t len, n_tree, i, j, out_len, ref_len;
		uint8_t *in =
			rnd_payload(1 + rnd_below(round < 200 ? 6 : 40), &len);
		uint8_t *again, *out, *ref;
		pb_request *req = unpack(in, len);
		pb_span *ts[64];
		struct ws_stitch_msg *m;
		bool owned, any = false;

		assert_non_null(req);
		/* the precondition: the agents write what protobuf-c would */
		again = pack(req, &ref_len);
		assert_int_equal(ref_len, len);
		assert_memory_equal(again, in, len);
		free(again);

		m = ws_stitch_msg_decode(in, len, "otel.traces.x", NULL);
		assert_non_null(m);
		n_tree = tree_spans(req, ts, 64);
		assert_int_equal(m->wire_spans, n_tree);
		for (i = j = 0; i < n_tree; i++) {
			struct ws_stitch_span d;

			if (!ref_describe(ts[i], &d))
				continue;
			assert_true(j < m->n_spans);
			assert_same_desc(&m->spans[j], &d);
			/* rewrite some of them, both ways */
			if (rnd_below(3)) {
				uint8_t trace[16], parent[8];
				bool p = rnd_below(2);
				const char *ev =
					rnd_below(2) ? evidences[rnd_below(6)]
						     : NULL;

				rnd_id(trace, 16);
				rnd_id(parent, 8);
				assert_int_equal(ws_stitch_msg_rewrite(
							 NULL, m,
							 m->spans[j].ref, trace,
							 p ? parent : NULL, ev),
						 0);
				ref_rewrite(ts[i], trace, p ? parent : NULL,
					    ev);
				any = true;
			}
			j++;
		}
		assert_int_equal(j, m->n_spans);
		assert_int_equal(ws_stitch_msg_bytes(m, &out, &out_len, &owned),
				 0);
		ref = pack(req, &ref_len);
		assert_int_equal(out_len, ref_len);
		assert_memory_equal(out, ref, ref_len);
		if (!any) { /* nothing changed: the bytes that came */
			assert_false(owned);
			assert_memory_equal(out, in, len);
		}
		if (owned)
			free(out);
		free(ref);
		req_free(req);
		ws_stitch_msg_free(m);
		free(in);
	}
}

/* ---- through the stitcher, as the relay does it ---- */

struct relayed {
	uint8_t *bytes[8];
	size_t len[8];
	bool same_buffer[8]; /* the decoded copy itself went on */
	int n;
};

static void on_ready(void *ctx, void *token, bool modified)
{
	struct relayed *r = ctx;
	struct ws_stitch_msg *m = token;
	uint8_t *b;
	size_t n;
	bool owned;

	(void)modified;
	assert_true(r->n < 8);
	assert_int_equal(ws_stitch_msg_bytes(m, &b, &n, &owned), 0);
	r->bytes[r->n] = malloc(n ? n : 1);
	assert_non_null(r->bytes[r->n]);
	memcpy(r->bytes[r->n], b, n);
	r->len[r->n] = n;
	r->same_buffer[r->n] = !owned && b == m->buf;
	r->n++;
	if (owned)
		free(b);
	ws_stitch_msg_free(m);
}

static struct ws_stitch *relay_stitcher(struct relayed *r)
{
	struct ws_stitch_cfg c;
	struct ws_stitch *st;

	ws_stitch_cfg_init(&c);
	c.rewrite = ws_stitch_msg_rewrite;
	c.ready = on_ready;
	c.ctx = r;
	st = ws_stitch_new(&c);
	assert_non_null(st);
	return st;
}

static void add_payload(struct ws_stitch *st, const uint8_t *b, size_t n)
{
	struct ws_stitch_msg *m = ws_stitch_msg_decode(b, n, "s", NULL);

	assert_non_null(m);
	assert_int_equal(ws_stitch_add(st, m, n, m->spans, m->n_spans, 1), 0);
}

static struct ws_span *nats_span(const char *name, uint8_t kind,
				 struct ws_resource *r, uint8_t id)
{
	uint8_t trace[16];
	struct ws_span *s;

	memset(trace, id, 16);
	s = ws_span_new(name, kind, 1000, trace);
	assert_non_null(s);
	memset(s->span_id, id, 8);
	s->end_ns = 2000;
	assert_int_equal(ws_attrs_cstr(&s->a, "wirespan.message.fingerprint",
				       "00000000000000aa"),
			 0);
	assert_int_equal(ws_attrs_cstr(&s->a, "messaging.system", "nats"), 0);
	ws_span_set_resource(s, r);
	return s;
}

static uint8_t *encode1(struct ws_span *s, size_t *n)
{
	uint8_t *b;

	assert_int_equal(ws_otlp_pb_encode(&s, 1, &b, n), 0);
	ws_span_free(s);
	return b;
}

/* A publish, then its consumer on another host, then that host's reply
 * hop on the server's host: the publish goes on byte-identical (nothing to
 * stitch in it), the consumer gets the publish as parent and trace, the
 * reply's hop its responder as parent (its 8 parent bytes rewritten in
 * place, the evidence added). */
static void joins_in_the_bytes(void **state)
{
	struct ws_resource *r = ws_resource_new(1);
	struct relayed out = {0};
	struct ws_stitch *st = relay_stitcher(&out);
	struct ws_span *s;
	uint8_t *pub, *proc, *hop;
	size_t npub, nproc, nhop, n;
	pb_request *req;
	pb_span *ts[4];
	char hex[17];
	uint8_t reply_id[8], id11[8], id22[8], tr11[16];
	int i;
	(void)state;

	assert_non_null(r);
	memset(reply_id, 0x77, 8);
	memset(id11, 0x11, 8);
	memset(id22, 0x22, 8);
	memset(tr11, 0x11, 16);
	pub = encode1(nats_span("publish a.b", WS_SPAN_KIND_PRODUCER, r, 0x11),
		      &npub);
	s = nats_span("process a.b", WS_SPAN_KIND_CONSUMER, r, 0x22);
	ws_id_hex(reply_id, 8, hex);
	assert_int_equal(ws_attrs_cstr(&s->a, "wirespan.nats.reply_id", hex),
			 0);
	proc = encode1(s, &nproc);
	s = nats_span("deliver _INBOX.x", WS_SPAN_KIND_PRODUCER, r, 0x33);
	ws_span_set_parent(s, s->trace_id, reply_id);
	hop = encode1(s, &nhop);

	add_payload(st, hop, nhop); /* waits for its parent */
	add_payload(st, pub, npub);
	add_payload(st, proc, nproc);
	assert_int_equal(out.n, 3);
	assert_int_equal(ws_stitch_stats(st)->joins_fingerprint, 1);
	assert_int_equal(ws_stitch_stats(st)->joins_reply, 1);
	for (i = 0; i < 3; i++) {
		req = unpack(out.bytes[i], out.len[i]);
		assert_non_null(req);
		n = tree_spans(req, ts, 4);
		assert_int_equal(n, 1);
		if (ts[0]->span_id.data[0] == 0x11) { /* publish: untouched */
			assert_int_equal(out.len[i], npub);
			assert_memory_equal(out.bytes[i], pub, npub);
			assert_true(out.same_buffer[i]);
		} else if (ts[0]->span_id.data[0] == 0x22) { /* consumer */
			assert_memory_equal(ts[0]->trace_id.data, tr11, 16);
			assert_int_equal(ts[0]->parent_span_id.len, 8);
			assert_memory_equal(ts[0]->parent_span_id.data, id11,
					    8);
			assert_string_equal(
				ref_str(ts[0], "wirespan.stitch.evidence"),
				"nats.fingerprint");
			assert_false(out.same_buffer[i]);
		} else { /* the reply's hop */
			assert_memory_equal(ts[0]->trace_id.data, tr11, 16);
			assert_memory_equal(ts[0]->parent_span_id.data, id22,
					    8);
			assert_string_equal(
				ref_str(ts[0], "wirespan.stitch.evidence"),
				"nats.reply_id");
		}
		req_free(req);
		free(out.bytes[i]);
	}
	ws_stitch_free(st);
	ws_resource_put(r);
	free(pub);
	free(proc);
	free(hop);
}

/* Payloads nothing is stitched in (plain spans, producers, spans whose
 * parent is in the same payload) go on as the very bytes that came. */
static void untouched_is_byte_identical(void **state)
{
	struct relayed out = {0};
	struct ws_stitch *st = relay_stitcher(&out);
	struct ws_resource *r = ws_resource_new(2);
	struct ws_span *s[3];
	uint8_t *b;
	size_t n;
	(void)state;

	assert_non_null(r);
	s[0] = nats_span("publish a.b", WS_SPAN_KIND_PRODUCER, r, 0x41);
	s[1] = nats_span("send svc", WS_SPAN_KIND_CLIENT, r, 0x42);
	ws_span_set_parent(s[1], s[0]->trace_id, s[0]->span_id);
	s[2] = ws_span_new("GET", WS_SPAN_KIND_INTERNAL, 5, NULL);
	assert_non_null(s[2]);
	ws_span_set_resource(s[2], r);
	assert_int_equal(ws_otlp_pb_encode(s, 3, &b, &n), 0);
	add_payload(st, b, n);
	assert_int_equal(out.n, 1);
	assert_true(out.same_buffer[0]);
	assert_int_equal(out.len[0], n);
	assert_memory_equal(out.bytes[0], b, n);
	free(out.bytes[0]);
	free(b);
	ws_span_free(s[0]);
	ws_span_free(s[1]);
	ws_span_free(s[2]);
	ws_stitch_free(st);
	ws_resource_put(r);
}

/* Mangled payloads: no crash, no read out of bounds (valgrind), and what
 * decodes and is rewritten is still protobuf that protobuf-c reads, with
 * as many spans, whenever protobuf-c read the input. */
static void mangled_input(void **state)
{
	int round;
	(void)state;

	for (round = 0; round < 3000; round++) {
		size_t len, i, k, out_len, n_in, n_out;
		uint8_t *in = rnd_payload(1 + rnd_below(4), &len);
		struct ws_stitch_msg *m;
		pb_request *req;
		uint8_t *out;
		bool owned;

		k = 1 + rnd_below(4);
		for (i = 0; i < k && len; i++) {
			switch (rnd_below(3)) {
			case 0:
				in[rnd_below((unsigned)len)] = (uint8_t)rnd();
				break;
			case 1:
				in[rnd_below((unsigned)len)] ^=
					(uint8_t)(1u << rnd_below(8));
				break;
			default:
				len -= rnd_below((unsigned)len);
				break;
			}
		}
		m = ws_stitch_msg_decode(in, len, "s", NULL);
		if (!m) {
			assert_int_equal(errno, EBADMSG);
			free(in);
			continue;
		}
		for (i = 0; i < m->n_spans; i++) {
			uint8_t trace[16], parent[8];

			rnd_id(trace, 16);
			rnd_id(parent, 8);
			assert_int_equal(
				ws_stitch_msg_rewrite(NULL, m, m->spans[i].ref,
						      trace, parent,
						      evidences[rnd_below(6)]),
				0);
		}
		assert_int_equal(ws_stitch_msg_bytes(m, &out, &out_len, &owned),
				 0);
		assert_int_equal(
			ws_pb_check(
				&opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
				out, out_len, WS_PB_MAX_DEPTH),
			0);
		req = unpack(in, len);
		if (req) {
			pb_span *ts[64];

			n_in = tree_spans(req, ts, 64);
			req_free(req);
			req = unpack(out, out_len);
			assert_non_null(req);
			n_out = tree_spans(req, ts, 64);
			assert_int_equal(n_in, n_out);
			req_free(req);
		}
		if (owned)
			free(out);
		ws_stitch_msg_free(m);
		free(in);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(agrees_with_protobuf_c),
		cmocka_unit_test(joins_in_the_bytes),
		cmocka_unit_test(untouched_is_byte_identical),
		cmocka_unit_test(mangled_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
