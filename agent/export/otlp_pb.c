/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP protobuf encoders: ws_otlp_pb_encode(), a direct writer (at the end
 * of this file), and ws_otlp_pb_encode_ref(), the reference on protobuf-c
 * described here. protobuf-c packs a tree of generated
 * structs; building that tree with one malloc per message would cost more
 * than the packing. Here the whole tree of one call lives in one arena sized
 * up front (counted in a first pass), strings and ids are not copied (the
 * tree points into the spans), and protobuf_c_message_pack() writes it once
 * into one buffer. Per call: three mallocs (grouping scratch, tree, output),
 * whatever n is.
 *
 * The output buffer is sized by an upper bound computed in the counting
 * pass (see "size bound" below), not by protobuf_c_message_get_packed_size():
 * that is a second full walk of the tree through the descriptors, about 40%
 * of the time (2.7 -> 1.7 us per 20-attribute span, tests/bench/
 * bench_otlp_pb.c). Untouched pages of the bound cost nothing, and the
 * buffer is shrunk to the packed size when the bound was 4 KiB or more over.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "otlp_trace_service.pb-c.h"

#include "otlp_json.h" /* WS_SCOPE_NAME */
#include "export/otlp_pb.h"
#include "export/pb_guard.h"

#ifndef WIRESPAN_VERSION
#define WIRESPAN_VERSION "0.1.0"
#endif

typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope pb_scope;
typedef Opentelemetry__Proto__Resource__V1__Resource pb_resource;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_rspans;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans pb_sspans;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Trace__V1__Span__Event pb_event;
typedef Opentelemetry__Proto__Trace__V1__Span__Link pb_link;
typedef Opentelemetry__Proto__Trace__V1__Status pb_status;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
	pb_request;

#define ANY_CASE(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##x

/* A KeyValue and its value side by side: one slot per attribute. */
struct pb_attr {
	pb_kv kv;
	pb_any any;
};

static const pb_kv kv_init = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
static const pb_any any_init =
	OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
static const pb_span span_init = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
static const pb_event event_init =
	OPENTELEMETRY__PROTO__TRACE__V1__SPAN__EVENT__INIT;
static const pb_link link_init =
	OPENTELEMETRY__PROTO__TRACE__V1__SPAN__LINK__INIT;
static const pb_status status_init =
	OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
static const pb_resource resource_init =
	OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
static const pb_rspans rspans_init =
	OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
static const pb_sspans sspans_init =
	OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;

/* ---- grouping spans by resource, O(n), order of first appearance ---- */

struct groups {
	uint32_t *gid;		  /* per span: its group */
	struct ws_resource **res; /* per group */
	size_t *count;		  /* per group: spans, then fill cursor */
	uint32_t *table;	  /* open addressing: 0 or group + 1 */
	size_t mask;		  /* table size - 1 */
	size_t n;		  /* groups */
	void *mem;
};

static size_t ptr_hash(const void *p)
{
	uint64_t h = (uint64_t)(uintptr_t)p;

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (size_t)h;
}

static int groups_build(struct groups *g, struct ws_span *const *spans,
			size_t n)
{
	size_t tsize = 16, i;
	char *m;

	/* uint32_t ids; the sizes below cannot overflow for such n */
	if (n > UINT32_MAX / 4)
		return -ENOMEM;
	while (tsize < 2 * n)
		tsize <<= 1;
	m = malloc(n * (sizeof(*g->res) + sizeof(*g->count)) +
		   (n + tsize) * sizeof(uint32_t));
	if (!m)
		return -ENOMEM;
	g->mem = m;
	g->res = (struct ws_resource **)m;
	g->count = (size_t *)(m + n * sizeof(*g->res));
	g->gid = (uint32_t *)(m + n * (sizeof(*g->res) + sizeof(*g->count)));
	g->table = g->gid + n;
	memset(g->table, 0, tsize * sizeof(uint32_t));
	g->mask = tsize - 1;
	g->n = 0;
	for (i = 0; i < n; i++) {
		struct ws_resource *r = spans[i]->resource;
		size_t h = ptr_hash(r) & g->mask;
		uint32_t id;

		/* consecutive spans of one resource are the common case */
		if (i && r == spans[i - 1]->resource) {
			id = g->gid[i - 1];
		} else {
			while (g->table[h] && g->res[g->table[h] - 1] != r)
				h = (h + 1) & g->mask;
			if (!g->table[h]) {
				g->res[g->n] = r;
				g->count[g->n] = 0;
				g->table[h] = (uint32_t)++g->n;
			}
			id = g->table[h] - 1;
		}
		g->gid[i] = id;
		g->count[id]++;
	}
	return 0;
}

/* ---- the tree, in one arena ---- */

struct tree {
	struct pb_attr *attr; /* next free attribute slot */
	pb_kv **kvp;	      /* next free KeyValue pointer */
	pb_event *ev;
	pb_event **evp;
	pb_link *ln;
	pb_link **lnp;
	pb_status *st;
};

static bool span_has_status(const struct ws_span *s)
{
	return s->status != WS_STATUS_UNSET || s->status_message;
}

/*
 * ---- size bound ----
 *
 * An upper bound of the packed size, from what protobuf-c writes for a set
 * field: a tag (field numbers here are <= 16: at most 2 bytes) then
 *   varint (int64, uint32, enum, bool)  <= 10 bytes      -> VI  <= 12
 *   fixed64, double 8, fixed32 4                         -> F64 <= 10
 *   string, bytes, message: a uint32 length (<= 5 bytes)
 *   and the content                                      -> LD  <= 7 + len
 * Every field that could be set is counted, set or not. Per message, with
 * the LD of the message itself in its parent:
 *   AnyValue <= 12 + strlen (one oneof member: LD(str) or VI or F64)
 *   KeyValue <= LD(key) + LD(AnyValue) = 26 + keylen + strlen
 *   attribute in a repeated field: 7 + KeyValue          -> BOUND_ATTR 33
 *   Status: LD(message) + VI (code) + 7                  -> BOUND_STATUS 26
 *   Event: F64 + LD(name) + attrs + VI + 7               -> BOUND_EVENT 36
 *   Link: LD(16) + LD(8) + LD(trace_state, unset) + attrs + VI + F32 (6)
 *         + 7                                            -> BOUND_LINK 70
 *   Span: LD(16) 23 + LD(8) 15 + LD(trace_state) 7 + LD(8) 15 + F32 6 +
 *         LD(name) 7 + VI kind 12 + 2 * F64 20 + 3 * VI dropped 36 + 7
 *                                                        -> BOUND_SPAN 148
 *   ResourceSpans: 7 + LD(Resource: attrs + VI) 19 + LD(schema_url) 7 +
 *         LD(ScopeSpans: LD(scope: LD(name) + LD(version)) 21 + spans +
 *         LD(schema_url) 7) 7                            -> BOUND_GROUP 68
 * The constants below have margin on top; packing checks the bound.
 */
#define BOUND_ATTR 40
#define BOUND_STATUS 32
#define BOUND_EVENT 48
#define BOUND_LINK 80
#define BOUND_SPAN 160
#define BOUND_GROUP 96

static size_t str_len(const char *s)
{
	return s ? strlen(s) : 0;
}

static size_t attrs_bound(const struct ws_attrs *a)
{
	size_t b = (size_t)a->n * BOUND_ATTR;
	uint16_t i;

	for (i = 0; i < a->n; i++) {
		b += strlen(a->v[i].key);
		if (a->v[i].type == WS_ATTR_STR)
			b += strlen(a->v[i].s);
	}
	return b;
}

/* Counts a span's KeyValues (*attrs) and returns its size bound. */
static size_t span_bound(const struct ws_span *s, size_t *attrs)
{
	size_t b = BOUND_SPAN + str_len(s->trace_state) + strlen(s->name);
	size_t k = s->a.n;
	uint16_t i;

	b += attrs_bound(&s->a);
	for (i = 0; i < s->n_events; i++) {
		k += s->events[i].a.n;
		b += BOUND_EVENT + str_len(s->events[i].name) +
		     attrs_bound(&s->events[i].a);
	}
	for (i = 0; i < s->n_links; i++) {
		k += s->links[i].a.n;
		b += BOUND_LINK + attrs_bound(&s->links[i].a);
	}
	if (span_has_status(s))
		b += BOUND_STATUS + str_len(s->status_message);
	*attrs = k;
	return b;
}

/* Point *n, *v at a new KeyValue array for a; values are not copied. */
static void put_attrs(struct tree *t, const struct ws_attrs *a, size_t *n,
		      pb_kv ***v)
{
	uint16_t i;

	*n = a->n;
	*v = a->n ? t->kvp : NULL;
	for (i = 0; i < a->n; i++) {
		const struct ws_attr *at = &a->v[i];
		struct pb_attr *p = t->attr++;

		p->kv = kv_init;
		p->any = any_init;
		p->kv.key = (char *)at->key;
		p->kv.value = &p->any;
		switch (at->type) {
		case WS_ATTR_STR:
			p->any.value_case = ANY_CASE(STRING_VALUE);
			p->any.string_value = at->s;
			break;
		case WS_ATTR_INT:
			p->any.value_case = ANY_CASE(INT_VALUE);
			p->any.int_value = at->i;
			break;
		case WS_ATTR_BOOL:
			p->any.value_case = ANY_CASE(BOOL_VALUE);
			p->any.bool_value = at->b;
			break;
		case WS_ATTR_DOUBLE:
			p->any.value_case = ANY_CASE(DOUBLE_VALUE);
			p->any.double_value = at->d;
			break;
		default: /* an empty AnyValue, as the JSON encoder's {} */
			break;
		}
		*t->kvp++ = &p->kv;
	}
}

static void put_span(struct tree *t, pb_span *p, struct ws_span *s)
{
	uint16_t i;

	*p = span_init;
	p->trace_id.len = 16;
	p->trace_id.data = s->trace_id;
	p->span_id.len = 8;
	p->span_id.data = s->span_id;
	p->trace_state = s->trace_state;
	if (s->has_parent) {
		p->parent_span_id.len = 8;
		p->parent_span_id.data = s->parent_span_id;
	}
	p->flags = s->flags;
	p->name = s->name;
	p->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)s->kind;
	p->start_time_unix_nano = s->start_ns;
	p->end_time_unix_nano = s->end_ns;
	put_attrs(t, &s->a, &p->n_attributes, &p->attributes);
	p->dropped_attributes_count = s->a.dropped;

	p->n_events = s->n_events;
	p->events = s->n_events ? t->evp : NULL;
	for (i = 0; i < s->n_events; i++) {
		const struct ws_span_event *se = &s->events[i];
		pb_event *e = t->ev++;

		*e = event_init;
		e->time_unix_nano = se->time_ns;
		e->name = (char *)se->name;
		put_attrs(t, &se->a, &e->n_attributes, &e->attributes);
		e->dropped_attributes_count = se->a.dropped;
		*t->evp++ = e;
	}
	p->dropped_events_count = s->dropped_events;

	p->n_links = s->n_links;
	p->links = s->n_links ? t->lnp : NULL;
	for (i = 0; i < s->n_links; i++) {
		struct ws_span_link *sl = &s->links[i];
		pb_link *l = t->ln++;

		*l = link_init;
		l->trace_id.len = 16;
		l->trace_id.data = sl->trace_id;
		l->span_id.len = 8;
		l->span_id.data = sl->span_id;
		l->flags = sl->flags;
		put_attrs(t, &sl->a, &l->n_attributes, &l->attributes);
		l->dropped_attributes_count = sl->a.dropped;
		*t->lnp++ = l;
	}
	p->dropped_links_count = s->dropped_links;

	if (span_has_status(s)) {
		pb_status *st = t->st++;

		*st = status_init;
		st->message = s->status_message;
		st->code = (Opentelemetry__Proto__Trace__V1__Status__StatusCode)
				   s->status;
		p->status = st;
	}
}

/* Carve an array of n elements of size sz from *cur. */
static void *carve(char **cur, size_t n, size_t sz)
{
	void *p = *cur;

	*cur += (n * sz + alignof(max_align_t) - 1) &
		~(alignof(max_align_t) - 1);
	return p;
}

static size_t rounded(size_t n, size_t sz)
{
	return (n * sz + alignof(max_align_t) - 1) &
	       ~(alignof(max_align_t) - 1);
}

int ws_otlp_pb_encode_ref(struct ws_span *const *spans, size_t n, uint8_t **out,
			  size_t *out_len)
{
	pb_request req =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	pb_scope scope =
		OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
	size_t n_attrs = 0, n_events = 0, n_links = 0, n_status = 0;
	size_t i, g, size, bound = 0, packed;
	struct groups gr = {0};
	pb_span *pspans, **pspanp;
	pb_rspans *rs, **rsp;
	pb_resource *res;
	pb_sspans *ss, **ssp;
	size_t *start;
	struct tree t;
	char *arena, *cur;
	uint8_t *buf;
	int err;

	if ((!spans && n) || !out || !out_len)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		size_t k;

		if (!spans[i])
			return -EINVAL;
		bound += span_bound(spans[i], &k);
		n_attrs += k;
		n_events += spans[i]->n_events;
		n_links += spans[i]->n_links;
		n_status += span_has_status(spans[i]);
	}
	err = groups_build(&gr, spans, n);
	if (err)
		return err;
	for (g = 0; g < gr.n; g++) {
		bound += BOUND_GROUP + sizeof(WS_SCOPE_NAME) +
			 sizeof(WIRESPAN_VERSION);
		if (gr.res[g]) {
			n_attrs += gr.res[g]->a.n;
			bound += attrs_bound(&gr.res[g]->a);
		}
	}

	/* no overflow: at most ~70 KeyValues per span, n < 2^30 */
	size = rounded(n_attrs, sizeof(struct pb_attr)) +
	       rounded(n_attrs, sizeof(pb_kv *)) +
	       rounded(n_events, sizeof(pb_event)) +
	       rounded(n_events, sizeof(pb_event *)) +
	       rounded(n_links, sizeof(pb_link)) +
	       rounded(n_links, sizeof(pb_link *)) +
	       rounded(n_status, sizeof(pb_status)) +
	       rounded(n, sizeof(pb_span)) + rounded(n, sizeof(pb_span *)) +
	       rounded(gr.n, sizeof(pb_rspans)) +
	       rounded(gr.n, sizeof(pb_rspans *)) +
	       rounded(gr.n, sizeof(pb_resource)) +
	       rounded(gr.n, sizeof(pb_sspans)) +
	       rounded(gr.n, sizeof(pb_sspans *)) +
	       rounded(gr.n, sizeof(size_t));
	arena = malloc(size ? size : 1);
	if (!arena) {
		free(gr.mem);
		return -ENOMEM;
	}
	cur = arena;
	t.attr = carve(&cur, n_attrs, sizeof(struct pb_attr));
	t.kvp = carve(&cur, n_attrs, sizeof(pb_kv *));
	t.ev = carve(&cur, n_events, sizeof(pb_event));
	t.evp = carve(&cur, n_events, sizeof(pb_event *));
	t.ln = carve(&cur, n_links, sizeof(pb_link));
	t.lnp = carve(&cur, n_links, sizeof(pb_link *));
	t.st = carve(&cur, n_status, sizeof(pb_status));
	pspans = carve(&cur, n, sizeof(pb_span));
	pspanp = carve(&cur, n, sizeof(pb_span *));
	rs = carve(&cur, gr.n, sizeof(pb_rspans));
	rsp = carve(&cur, gr.n, sizeof(pb_rspans *));
	res = carve(&cur, gr.n, sizeof(pb_resource));
	ss = carve(&cur, gr.n, sizeof(pb_sspans));
	ssp = carve(&cur, gr.n, sizeof(pb_sspans *));
	start = carve(&cur, gr.n, sizeof(size_t));

	scope.name = (char *)WS_SCOPE_NAME;
	scope.version = (char *)WIRESPAN_VERSION;
	for (g = i = 0; g < gr.n; g++) {
		start[g] = i;
		i += gr.count[g];
		rs[g] = rspans_init;
		res[g] = resource_init;
		ss[g] = sspans_init;
		if (gr.res[g]) {
			put_attrs(&t, &gr.res[g]->a, &res[g].n_attributes,
				  &res[g].attributes);
			res[g].dropped_attributes_count = gr.res[g]->a.dropped;
		}
		rs[g].resource = &res[g];
		rs[g].n_scope_spans = 1;
		rs[g].scope_spans = &ssp[g];
		ssp[g] = &ss[g];
		ss[g].scope = &scope;
		ss[g].n_spans = gr.count[g];
		ss[g].spans = pspanp + start[g];
		rsp[g] = &rs[g];
	}
	for (i = 0; i < n; i++) {
		put_span(&t, &pspans[i], spans[i]);
		pspanp[start[gr.gid[i]]++] = &pspans[i];
	}
	req.n_resource_spans = gr.n;
	req.resource_spans = gr.n ? rsp : NULL;

	buf = malloc(bound ? bound : 1);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	packed = protobuf_c_message_pack(&req.base, buf);
	if (packed > bound)
		abort(); /* the bound is wrong: the heap is already damaged */
	if (bound - packed >= 4096) {
		uint8_t *b = realloc(buf, packed ? packed : 1);

		if (b)
			buf = b;
	}
	*out = buf;
	*out_len = packed;
	err = 0;
out:
	free(arena);
	free(gr.mem);
	return err;
}

/*
 * ---- the direct writer (ws_otlp_pb_encode) ----
 *
 * The same message, written straight from the spans into one buffer of the
 * exact size: no tree. A length-delimited message needs its length before
 * its bytes, so a first pass computes each span's size (kept per span) and
 * each group's; the second pass writes, recomputing the small sizes of
 * attributes, events, links and statuses on the way (cheaper than keeping
 * them). It writes what protobuf-c writes for the tree above, byte for
 * byte: fields in field-number order, proto3 scalars and strings only when
 * not zero or empty, a oneof member (an attribute's value) even when it is,
 * a present submessage (resource, status, AnyValue) even when empty, and
 * minimal varints. Field numbers are agent/export/otlp_*.proto's; all but
 * Span.flags (16, a two-byte tag) fit a one-byte tag.
 */
#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_I32 5
#define TAG(f, wt) ((uint8_t)((f) << 3 | (wt)))

static size_t vlen(uint64_t v)
{
	/* 7 bits a byte: 1 for v < 2^7 ... 10 for v >= 2^63 */
	return (size_t)((63 - __builtin_clzll(v | 1)) * 9 + 73) / 64;
}

/* A length-delimited field with a one-byte tag and n bytes of content. */
static size_t ld_size(size_t n)
{
	return 1 + vlen(n) + n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static uint8_t *put_tag_varint(uint8_t *p, uint8_t tag, uint64_t v)
{
	*p++ = tag;
	return put_varint(p, v);
}

static uint8_t *put_bytes(uint8_t *p, uint8_t tag, const void *s, size_t n)
{
	p = put_tag_varint(p, tag, n);
	memcpy(p, s, n);
	return p + n;
}

static uint8_t *put_fixed(uint8_t *p, uint64_t v, int bytes)
{
	int i;

	for (i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	return p + bytes;
}

/* A proto3 uint32/enum field: nothing when 0. */
static size_t opt_varint_size(uint64_t v)
{
	return v ? 1 + vlen(v) : 0;
}

static uint8_t *put_opt_varint(uint8_t *p, uint8_t tag, uint64_t v)
{
	return v ? put_tag_varint(p, tag, v) : p;
}

/* A proto3 string field: nothing when NULL or empty. */
static size_t opt_str_size(size_t len)
{
	return len ? ld_size(len) : 0;
}

static uint8_t *put_opt_str(uint8_t *p, uint8_t tag, const char *s, size_t len)
{
	return len ? put_bytes(p, tag, s, len) : p;
}

/* The lengths of one KeyValue. */
struct kv_len {
	size_t key, str; /* strlen of key and of a string value */
	size_t any;	 /* AnyValue content */
	size_t kv;	 /* KeyValue content */
};

static inline __attribute__((always_inline)) void
kv_len(const struct ws_attr *at, struct kv_len *l)
{
	l->key = !at->key ? 0 : at->klen ? at->klen : strlen(at->key);
	l->str = 0;
	switch (at->type) {
	case WS_ATTR_STR:
		if (!at->s) { /* protobuf-c: an unset oneof member */
			l->any = 0;
			break;
		}
		l->str = at->slen ? at->slen : strlen(at->s);
		l->any = ld_size(l->str);
		break;
	case WS_ATTR_INT:
		l->any = 1 + vlen((uint64_t)at->i);
		break;
	case WS_ATTR_BOOL:
		l->any = 2;
		break;
	case WS_ATTR_DOUBLE:
		l->any = 9;
		break;
	default:
		l->any = 0;
		break;
	}
	l->kv = opt_str_size(l->key) + ld_size(l->any);
}

/*
 * The common KeyValue, fast: a string attribute of a non-empty key whose
 * KeyValue is under 128 bytes, so that every length in it is one byte:
 *   tag kv | 0x0a klen key | 0x12 any | 0x0a slen s     (any = 2 + slen)
 * Its KeyValue content size, or 0 when at is not such an attribute.
 */
static inline size_t short_str_kv(const struct ws_attr *at)
{
	size_t kv;

	if (at->type != WS_ATTR_STR || !at->s || !at->klen || !at->slen)
		return 0;
	kv = 6 + (size_t)at->klen + at->slen;
	return kv < 128 ? kv : 0;
}

/* The same for an integer attribute:
 *   tag kv | 0x0a klen key | 0x12 any | 0x18 varint   (any = 1 + vlen) */
static inline size_t short_int_kv(const struct ws_attr *at)
{
	size_t kv;

	if (at->type != WS_ATTR_INT || !at->klen)
		return 0;
	kv = 5 + (size_t)at->klen + vlen((uint64_t)at->i);
	return kv < 128 ? kv : 0;
}

/* KeyValues v[0..n) as elements of a repeated field (one-byte tags). */
static size_t kvs_size(const struct ws_attr *v, size_t n)
{
	struct kv_len l;
	size_t b = 0, i, kv;

	for (i = 0; i < n; i++) {
		kv = short_str_kv(&v[i]);
		if (!kv)
			kv = short_int_kv(&v[i]);
		if (kv) {
			b += 2 + kv;
			continue;
		}
		kv_len(&v[i], &l);
		b += ld_size(l.kv);
	}
	return b;
}

/* A short KeyValue (short_str_kv, short_int_kv) up to its value: its tag
 * and one-byte size, then the key. */
static inline uint8_t *put_short_kv_head(uint8_t *p, uint8_t tag, size_t kv,
					 const struct ws_attr *at)
{
	p[0] = tag;
	p[1] = (uint8_t)kv;
	p[2] = TAG(1, WT_LEN);
	p[3] = (uint8_t)at->klen;
	memcpy(p + 4, at->key, at->klen);
	return p + 4 + at->klen;
}

static uint8_t *put_kvs(uint8_t *p, const struct ws_attr *v, size_t n,
			uint8_t tag)
{
	struct kv_len l;
	size_t i, kv;

	for (i = 0; i < n; i++) {
		const struct ws_attr *at = &v[i];
		uint64_t d;

		kv = short_str_kv(at);
		if (kv) {
			p = put_short_kv_head(p, tag, kv, at);
			p[0] = TAG(2, WT_LEN);
			p[1] = (uint8_t)(2 + at->slen);
			p[2] = TAG(1, WT_LEN);
			p[3] = (uint8_t)at->slen;
			memcpy(p + 4, at->s, at->slen);
			p += 4 + at->slen;
			continue;
		}
		kv = short_int_kv(at);
		if (kv) {
			p = put_short_kv_head(p, tag, kv, at);
			p[0] = TAG(2, WT_LEN);
			p[1] = (uint8_t)(kv - 4 - at->klen);
			p[2] = TAG(3, WT_VARINT);
			p = put_varint(p + 3, (uint64_t)at->i);
			continue;
		}
		kv_len(at, &l);
		p = put_tag_varint(p, tag, l.kv);
		p = put_opt_str(p, TAG(1, WT_LEN), at->key, l.key);
		p = put_tag_varint(p, TAG(2, WT_LEN), l.any);
		switch (at->type) {
		case WS_ATTR_STR:
			if (at->s)
				p = put_bytes(p, TAG(1, WT_LEN), at->s, l.str);
			break;
		case WS_ATTR_INT:
			p = put_tag_varint(p, TAG(3, WT_VARINT),
					   (uint64_t)at->i);
			break;
		case WS_ATTR_BOOL:
			*p++ = TAG(2, WT_VARINT);
			*p++ = at->b ? 1 : 0;
			break;
		case WS_ATTR_DOUBLE:
			memcpy(&d, &at->d, sizeof(d));
			*p++ = TAG(4, WT_I64);
			p = put_fixed(p, d, 8);
			break;
		default:
			break;
		}
	}
	return p;
}

/*
 * Span.attributes (field 9) that a span has from attribute blocks (span.h
 * ws_attrs_add_block: a connection's ~15 address and identity attributes,
 * an operation's constant ones) are the same bytes in every span that has
 * the block: they are encoded once, kept in the block, and copied. NULL
 * when a's block k is missing or not whole, field is not 9, or there is
 * no memory for the copy (then the attributes are encoded one by one, as
 * any other).
 */
#define SPAN_ATTRS_FIELD 9

static const uint8_t *blk_pb(const struct ws_attrs *a, int k, uint8_t field,
			     size_t *len)
{
	struct ws_attr_block *b = a->blk[k];
	size_t n;

	if (field != SPAN_ATTRS_FIELD || !b || !a->blk_whole[k])
		return NULL;
	if (!b->pb && !b->pb_failed) {
		n = kvs_size(b->a.v, b->a.n);
		b->pb = malloc(n ? n : 1);
		if (!b->pb) {
			b->pb_failed = true;
			return NULL;
		}
		b->pb_len = (size_t)(put_kvs(b->pb, b->a.v, b->a.n,
					     TAG(SPAN_ATTRS_FIELD, WT_LEN)) -
				     b->pb);
	}
	*len = b->pb_len;
	return b->pb;
}

/* Repeated KeyValue field plus dropped_attributes_count. Blocks are in
 * a->v in the order of k. */
static size_t attrs_size(const struct ws_attrs *a, uint8_t field)
{
	size_t b = opt_varint_size(a->dropped), pos = 0, len;
	int k;

	for (k = 0; k < WS_ATTRS_MAX_BLOCKS; k++) {
		if (!blk_pb(a, k, field, &len))
			continue;
		b += kvs_size(a->v + pos, a->blk_first[k] - pos) + len;
		pos = a->blk_first[k] + a->blk[k]->a.n;
	}
	return b + kvs_size(a->v + pos, a->n - pos);
}

static uint8_t *put_attrs_pb(uint8_t *p, const struct ws_attrs *a,
			     uint8_t attr_field, uint8_t dropped_field)
{
	const uint8_t tag = TAG(attr_field, WT_LEN);
	const uint8_t *pb;
	size_t pos = 0, len;
	int k;

	for (k = 0; k < WS_ATTRS_MAX_BLOCKS; k++) {
		pb = blk_pb(a, k, attr_field, &len);
		if (!pb)
			continue;
		p = put_kvs(p, a->v + pos, a->blk_first[k] - pos, tag);
		memcpy(p, pb, len);
		p += len;
		pos = a->blk_first[k] + a->blk[k]->a.n;
	}
	p = put_kvs(p, a->v + pos, a->n - pos, tag);
	return put_opt_varint(p, TAG(dropped_field, WT_VARINT), a->dropped);
}

static size_t event_size(const struct ws_span_event *e)
{
	return (e->time_ns ? 9 : 0) + opt_str_size(str_len(e->name)) +
	       attrs_size(&e->a, 3);
}

static size_t link_size(const struct ws_span_link *l)
{
	return ld_size(16) + ld_size(8) + attrs_size(&l->a, 4) +
	       (l->flags ? 5 : 0);
}

static size_t status_size(const struct ws_span *s)
{
	return opt_str_size(str_len(s->status_message)) +
	       opt_varint_size(s->status);
}

static size_t span_size(const struct ws_span *s)
{
	size_t b = ld_size(16) + ld_size(8) +
		   opt_str_size(str_len(s->trace_state)) +
		   (s->has_parent ? ld_size(8) : 0) +
		   opt_str_size(str_len(s->name)) + opt_varint_size(s->kind) +
		   (s->start_ns ? 9 : 0) + (s->end_ns ? 9 : 0) +
		   attrs_size(&s->a, SPAN_ATTRS_FIELD) +
		   opt_varint_size(s->dropped_events) +
		   opt_varint_size(s->dropped_links) + (s->flags ? 6 : 0);
	uint16_t i;

	for (i = 0; i < s->n_events; i++)
		b += ld_size(event_size(&s->events[i]));
	for (i = 0; i < s->n_links; i++)
		b += ld_size(link_size(&s->links[i]));
	if (span_has_status(s))
		b += ld_size(status_size(s));
	return b;
}

static uint8_t *put_span_pb(uint8_t *p, const struct ws_span *s, size_t size)
{
	uint16_t i;

	p = put_tag_varint(p, TAG(2, WT_LEN), size); /* ScopeSpans.spans */
	p = put_bytes(p, TAG(1, WT_LEN), s->trace_id, 16);
	p = put_bytes(p, TAG(2, WT_LEN), s->span_id, 8);
	p = put_opt_str(p, TAG(3, WT_LEN), s->trace_state,
			str_len(s->trace_state));
	if (s->has_parent)
		p = put_bytes(p, TAG(4, WT_LEN), s->parent_span_id, 8);
	p = put_opt_str(p, TAG(5, WT_LEN), s->name, str_len(s->name));
	p = put_opt_varint(p, TAG(6, WT_VARINT), s->kind);
	if (s->start_ns) {
		*p++ = TAG(7, WT_I64);
		p = put_fixed(p, s->start_ns, 8);
	}
	if (s->end_ns) {
		*p++ = TAG(8, WT_I64);
		p = put_fixed(p, s->end_ns, 8);
	}
	p = put_attrs_pb(p, &s->a, 9, 10);
	for (i = 0; i < s->n_events; i++) {
		const struct ws_span_event *e = &s->events[i];

		p = put_tag_varint(p, TAG(11, WT_LEN), event_size(e));
		if (e->time_ns) {
			*p++ = TAG(1, WT_I64);
			p = put_fixed(p, e->time_ns, 8);
		}
		p = put_opt_str(p, TAG(2, WT_LEN), e->name, str_len(e->name));
		p = put_attrs_pb(p, &e->a, 3, 4);
	}
	p = put_opt_varint(p, TAG(12, WT_VARINT), s->dropped_events);
	for (i = 0; i < s->n_links; i++) {
		const struct ws_span_link *l = &s->links[i];

		p = put_tag_varint(p, TAG(13, WT_LEN), link_size(l));
		p = put_bytes(p, TAG(1, WT_LEN), l->trace_id, 16);
		p = put_bytes(p, TAG(2, WT_LEN), l->span_id, 8);
		p = put_attrs_pb(p, &l->a, 4, 5);
		if (l->flags) {
			*p++ = TAG(6, WT_I32);
			p = put_fixed(p, l->flags, 4);
		}
	}
	p = put_opt_varint(p, TAG(14, WT_VARINT), s->dropped_links);
	if (span_has_status(s)) {
		p = put_tag_varint(p, TAG(15, WT_LEN), status_size(s));
		p = put_opt_str(p, TAG(2, WT_LEN), s->status_message,
				str_len(s->status_message));
		p = put_opt_varint(p, TAG(3, WT_VARINT), s->status);
	}
	if (s->flags) { /* field 16: a two-byte tag */
		*p++ = 0x80 | TAG(0, WT_I32);
		*p++ = 0x01;
		p = put_fixed(p, s->flags, 4);
	}
	return p;
}

/* InstrumentationScope {name, version}: the same in every group. */
static size_t scope_size(void)
{
	return ld_size(sizeof(WS_SCOPE_NAME) - 1) +
	       ld_size(sizeof(WIRESPAN_VERSION) - 1);
}

/* Per group: the Resource's and the ScopeSpans' content sizes. */
struct group_size {
	size_t res, ss;
};

int ws_otlp_pb_encode(struct ws_span *const *spans, size_t n, uint8_t **out,
		      size_t *out_len)
{
	struct groups gr = {0};
	struct group_size *gs;
	size_t *ssize, *order, *start;
	size_t i, g, total = 0;
	uint8_t *buf, *p;
	int err;

	if ((!spans && n) || !out || !out_len)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (!spans[i])
			return -EINVAL;
	err = groups_build(&gr, spans, n);
	if (err)
		return err;
	/* n < 2^30 (groups_build): no overflow */
	ssize = malloc((2 * n + gr.n) * sizeof(size_t) + gr.n * sizeof(*gs) +
		       1);
	if (!ssize) {
		free(gr.mem);
		return -ENOMEM;
	}
	order = ssize + n;
	start = order + n;
	gs = (struct group_size *)(start + gr.n);

	/* pass 1: sizes; spans ordered by group, input order within one */
	for (g = i = 0; g < gr.n; g++) {
		start[g] = i;
		i += gr.count[g];
		gs[g].res = gr.res[g] ? attrs_size(&gr.res[g]->a, 1) : 0;
		gs[g].ss = ld_size(scope_size());
	}
	for (i = 0; i < n; i++) {
		g = gr.gid[i];
		ssize[i] = span_size(spans[i]);
		gs[g].ss += ld_size(ssize[i]);
		order[start[g]++] = i;
	}
	for (g = 0; g < gr.n; g++)
		total += ld_size(ld_size(gs[g].res) + ld_size(gs[g].ss));

	buf = malloc(total ? total : 1);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	/* pass 2: write */
	p = buf;
	for (g = i = 0; g < gr.n; g++) {
		size_t end = i + gr.count[g];

		p = put_tag_varint(p, TAG(1, WT_LEN),
				   ld_size(gs[g].res) + ld_size(gs[g].ss));
		p = put_tag_varint(p, TAG(1, WT_LEN), gs[g].res);
		if (gr.res[g])
			p = put_attrs_pb(p, &gr.res[g]->a, 1, 2);
		p = put_tag_varint(p, TAG(2, WT_LEN), gs[g].ss);
		p = put_tag_varint(p, TAG(1, WT_LEN), scope_size());
		p = put_bytes(p, TAG(1, WT_LEN), WS_SCOPE_NAME,
			      sizeof(WS_SCOPE_NAME) - 1);
		p = put_bytes(p, TAG(2, WT_LEN), WIRESPAN_VERSION,
			      sizeof(WIRESPAN_VERSION) - 1);
		for (; i < end; i++)
			p = put_span_pb(p, spans[order[i]], ssize[order[i]]);
	}
	if ((size_t)(p - buf) != total)
		abort(); /* a size pass bug: the heap may be damaged */
	*out = buf;
	*out_len = total;
	err = 0;
out:
	free(ssize);
	free(gr.mem);
	return err;
}

int ws_otlp_pb_decode_count(const uint8_t *buf, size_t len, size_t *spans)
{
	static const uint8_t empty[1];
	pb_request *req;
	size_t r, s, k = 0;

	if ((!buf && len) || !spans)
		return -EINVAL;
	/* protobuf-c recurses without a depth limit: check the nesting first */
	if (len &&
	    ws_pb_check(
		    &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
		    buf, len, WS_PB_MAX_DEPTH))
		return -EBADMSG;
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, len, buf ? buf : empty);
	if (!req)
		return -EBADMSG;
	for (r = 0; r < req->n_resource_spans; r++)
		for (s = 0; s < req->resource_spans[r]->n_scope_spans; s++)
			k += req->resource_spans[r]->scope_spans[s]->n_spans;
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
		req, NULL);
	*spans = k;
	return 0;
}
