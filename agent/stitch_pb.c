/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP protobuf in and out of the stitcher, on the wire (see stitch_pb.h).
 * The span attributes it reads are the agents' (docs/ARCHITECTURE.md, NATS
 * and HTTP spans): wirespan.message.fingerprint, wirespan.nats.delivery_id,
 * wirespan.nats.reply_id, wirespan.http.conn.seq, network.local.* and
 * network.peer.*.
 *
 * The path it follows (field numbers of opentelemetry-proto):
 *   ExportTraceServiceRequest 1 -> ResourceSpans 2 -> ScopeSpans 2 -> Span
 *   Span: 1 trace_id, 2 span_id, 4 parent_span_id, 5 name, 6 kind,
 *         7 start_time_unix_nano (fixed64), 9 attributes (KeyValue:
 *         1 key, 2 value = AnyValue: 1 string_value, 3 int_value ...)
 * What protobuf-c would make of repeated fields is kept: the last value of a
 * field wins, the first attribute with a key is the one read, and a field of
 * the path with another wire type than its own makes the payload not OTLP
 * (it then goes on unstitched, as protobuf-c's unpack would have failed).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "otlp_trace_service.pb-c.h"

#include "export/pb_guard.h"
#include "span.h"
#include "stitch_pb.h"

#define NONE SIZE_MAX
#define NO_UP UINT32_MAX
#define EVIDENCE_KEY "wirespan.stitch.evidence"
/* A parent field: tag (4 << 3 | 2), length 8, the id. */
#define PARENT_FIELD_LEN 10

enum wt { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* A ResourceSpans or a ScopeSpans: a length-prefixed message on the path
 * to the spans, whose length changes when a span in it grows. */
struct ws_stitch_pb_cont {
	size_t hdr, hdr_len; /* its length varint */
	size_t body_len;
	uint32_t up;  /* a ScopeSpans' ResourceSpans; NO_UP */
	size_t grow;  /* bytes its body gains (modulo 2^64: it may shrink) */
	bool touched; /* a span in it is edited */
	bool done;    /* its new length written */
};

/* Where a described span's fields are, and what is to be added to it. */
struct ws_stitch_pb_loc {
	size_t hdr, body, end; /* its length varint; its body [body, end) */
	size_t hdr_len;
	uint32_t cont;	/* its ScopeSpans */
	size_t trace;	/* the 16 trace id bytes */
	size_t par_val; /* the 8 parent bytes (in place), or NONE */
	size_t par_field, par_field_len; /* a parent of another length */
	size_t ins_parent; /* where a parent field goes: before field > 4 */
	size_t ins_attr;   /* where an attribute goes: before field > 9 */
	size_t grow;	   /* bytes the body gains (modulo 2^64) */
	bool add_parent;
	uint8_t parent[8];
	char *evidence;
};

/* ---- reading the wire --------------------------------------------------- */

struct fld {
	uint32_t num;
	unsigned wt;
	size_t start; /* the tag */
	size_t hdr;   /* WT_LEN: its length varint */
	size_t off;   /* WT_LEN: the value, after its length */
	size_t len;   /* WT_LEN: the value's length */
	uint64_t v;   /* WT_VARINT, WT_I64 */
};

static inline bool varint(const uint8_t *b, size_t *p, size_t end, uint64_t *v)
{
	uint64_t x = 0;
	unsigned shift;

	if (*p < end && b[*p] < 0x80) { /* most tags and lengths */
		*v = b[(*p)++];
		return true;
	}
	for (shift = 0; shift < 70 && *p < end; shift += 7) {
		uint8_t c = b[(*p)++];

		x |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

/* The field at *p (< end); false if it is not well formed. */
static inline bool next_field(const uint8_t *b, size_t *p, size_t end,
			      struct fld *f)
{
	uint64_t key, n;

	f->start = *p;
	if (!varint(b, p, end, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX)
		return false;
	f->num = (uint32_t)(key >> 3);
	f->wt = (unsigned)(key & 7);
	switch (f->wt) {
	case WT_VARINT:
		return varint(b, p, end, &f->v);
	case WT_I64:
		if (end - *p < 8)
			return false;
		f->v = 0;
		for (n = 0; n < 8; n++)
			f->v |= (uint64_t)b[*p + n] << (8 * n);
		*p += 8;
		return true;
	case WT_I32:
		if (end - *p < 4)
			return false;
		*p += 4;
		return true;
	case WT_LEN:
		f->hdr = *p;
		if (!varint(b, p, end, &n) || n > end - *p)
			return false;
		f->off = *p;
		f->len = (size_t)n;
		*p += (size_t)n;
		return true;
	default:
		return false;
	}
}

/* ---- attributes --------------------------------------------------------- */

enum akey {
	A_FP,
	A_DELIVERY,
	A_REPLY,
	A_SEQ,
	A_LADDR,
	A_PADDR,
	A_LPORT,
	A_PPORT,
	A_N
};

#define KEY(s)                   \
	{                        \
		s, sizeof(s) - 1 \
	}
static const struct {
	const char *s;
	size_t n;
} akeys[A_N] = {
	[A_FP] = KEY("wirespan.message.fingerprint"),
	[A_DELIVERY] = KEY("wirespan.nats.delivery_id"),
	[A_REPLY] = KEY("wirespan.nats.reply_id"),
	[A_SEQ] = KEY("wirespan.http.conn.seq"),
	[A_LADDR] = KEY("network.local.address"),
	[A_PADDR] = KEY("network.peer.address"),
	[A_LPORT] = KEY("network.local.port"),
	[A_PPORT] = KEY("network.peer.port"),
};

enum vcase { V_NONE = 0, V_STR, V_INT, V_OTHER };

struct aval {
	bool seen; /* the first attribute with the key was read */
	uint8_t vcase;
	const char *s;
	size_t n;
	int64_t i;
};

/* An AnyValue: the last member of its oneof wins. */
static int any_value(const uint8_t *b, size_t p, size_t end, struct aval *a)
{
	struct fld f;

	while (p < end) {
		if (!next_field(b, &p, end, &f))
			return -EBADMSG;
		switch (f.num) {
		case 1: /* string_value */
			if (f.wt != WT_LEN)
				return -EBADMSG;
			a->vcase = V_STR;
			a->s = (const char *)b + f.off;
			a->n = f.len;
			break;
		case 3: /* int_value */
			if (f.wt != WT_VARINT)
				return -EBADMSG;
			a->vcase = V_INT;
			a->i = (int64_t)f.v;
			break;
		case 2: /* bool_value */
		case 4: /* double_value */
		case 5: /* array_value */
		case 6: /* kvlist_value */
		case 7: /* bytes_value */
			a->vcase = V_OTHER;
			break;
		default:
			break;
		}
	}
	return 0;
}

/* A KeyValue: kept if its key is one the stitcher reads, seen first. */
static int key_value(const uint8_t *b, size_t p, size_t end, struct aval *av)
{
	size_t key = 0, key_len = 0, val = NONE, val_len = 0;
	struct fld f;
	int i;

	while (p < end) {
		if (!next_field(b, &p, end, &f))
			return -EBADMSG;
		if (f.num != 1 && f.num != 2)
			continue;
		if (f.wt != WT_LEN)
			return -EBADMSG;
		if (f.num == 1) {
			key = f.off;
			key_len = f.len;
		} else {
			val = f.off;
			val_len = f.len;
		}
	}
	/* most keys are none of these: by length and first byte first */
	if (key_len < akeys[A_PPORT].n || key_len > akeys[A_FP].n ||
	    (b[key] != 'w' && b[key] != 'n'))
		return 0;
	for (i = 0; i < A_N; i++)
		if (key_len == akeys[i].n &&
		    !memcmp(b + key, akeys[i].s, key_len))
			break;
	if (i == A_N || av[i].seen)
		return 0;
	av[i].seen = true;
	return val == NONE ? 0 : any_value(b, val, val + val_len, &av[i]);
}

static const char *astr(const struct aval *a, size_t *n)
{
	*n = a->vcase == V_STR ? a->n : 0;
	return a->vcase == V_STR ? a->s : NULL;
}

/* ---- spans -------------------------------------------------------------- */

struct scan {
	struct ws_stitch_msg *m;
	size_t cap_spans, cap_conts;
};

/* What a span's fields said, for describe(). */
struct sfields {
	size_t trace, trace_len, span, span_len, par, par_len;
	size_t name, name_len;
	uint64_t kind, start;
	struct aval av[A_N];
};

/* What the stitcher needs of one span; false if it cannot take part. */
static bool describe(const uint8_t *b, const struct sfields *sf,
		     struct ws_stitch_span *d)
{
	const char *fp, *dl, *rp;
	size_t n;

	if (sf->trace_len != 16 || sf->span_len != 8)
		return false;
	memset(d, 0, sizeof(*d));
	memcpy(d->trace_id, b + sf->trace, 16);
	memcpy(d->span_id, b + sf->span, 8);
	if (sf->par_len == 8 && !ws_id_is_zero(b + sf->par, 8)) {
		memcpy(d->parent_span_id, b + sf->par, 8);
		d->has_parent = true;
	}
	d->start_ns = sf->start;
	d->seq = -1;
	rp = astr(&sf->av[A_REPLY], &n);
	d->has_reply_id = rp && !ws_id_parse(rp, n, d->reply_id, 8);
	fp = astr(&sf->av[A_FP], &n);
	if (fp) {
		d->fingerprint = XXH3_64bits(fp, n);
		d->has_fingerprint = true;
		dl = astr(&sf->av[A_DELIVERY], &n);
		d->has_delivery = dl && !ws_id_parse(dl, n, d->delivery_id, 8);
		switch (sf->kind) {
		case OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CONSUMER:
			if (!d->has_parent)
				d->role = WS_STITCH_NATS_SEEKER;
			break;
		case OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_PRODUCER:
		case OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT:
			/* the broker's hop is found by its id, not as a
			 * second producer of the same message */
			if (sf->name_len < 8 ||
			    memcmp(b + sf->name, "deliver ", 8))
				d->role = WS_STITCH_NATS_ANCHOR;
			break;
		default:
			break;
		}
		return true;
	}
	if (sf->av[A_SEQ].vcase != V_INT)
		return true;
	d->seq = sf->av[A_SEQ].i;
	d->local.addr = astr(&sf->av[A_LADDR], &d->local.addr_len);
	d->peer.addr = astr(&sf->av[A_PADDR], &d->peer.addr_len);
	if (sf->av[A_LPORT].vcase != V_INT)
		return true;
	d->local.port = sf->av[A_LPORT].i;
	if (sf->av[A_PPORT].vcase != V_INT)
		return true;
	d->peer.port = sf->av[A_PPORT].i;
	if (sf->kind ==
	    OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT)
		d->role = WS_STITCH_HTTP_CLIENT;
	else if (
		sf->kind ==
			OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER &&
		!d->has_parent)
		d->role = WS_STITCH_HTTP_SERVER;
	return true;
}

static int grow_arrays(struct scan *sc)
{
	struct ws_stitch_msg *m = sc->m;
	size_t cap = sc->cap_spans ? 2 * sc->cap_spans : 16;
	struct ws_stitch_span *s;
	struct ws_stitch_pb_loc *l;

	s = realloc(m->spans, cap * sizeof(*s));
	if (!s)
		return -ENOMEM;
	m->spans = s;
	l = realloc(m->loc, cap * sizeof(*l));
	if (!l)
		return -ENOMEM;
	m->loc = l;
	sc->cap_spans = cap;
	return 0;
}

static int scan_span(struct scan *sc, const struct fld *sp, uint32_t cont)
{
	const uint8_t *b = sc->m->buf;
	size_t p = sp->off, end = sp->off + sp->len;
	struct ws_stitch_pb_loc l = {
		.hdr = sp->hdr,
		.hdr_len = sp->off - sp->hdr,
		.body = p,
		.end = end,
		.cont = cont,
		.par_val = NONE,
		.par_field = NONE,
		.ins_parent = end,
		.ins_attr = end,
	};
	struct sfields sf = {0};
	bool before_parent = true, before_attr = true;
	struct fld f;
	int rc;

	while (p < end) {
		if (!next_field(b, &p, end, &f))
			return -EBADMSG;
		if (f.num > 4 && before_parent) {
			l.ins_parent = f.start;
			before_parent = false;
		}
		if (f.num > 9 && before_attr) {
			l.ins_attr = f.start;
			before_attr = false;
		}
		if (f.num == 6 || f.num == 7) {
			if (f.wt != (f.num == 6 ? WT_VARINT : WT_I64))
				return -EBADMSG;
			*(f.num == 6 ? &sf.kind : &sf.start) = f.v;
			continue;
		}
		if (f.num != 1 && f.num != 2 && f.num != 4 && f.num != 5 &&
		    f.num != 9)
			continue;
		if (f.wt != WT_LEN)
			return -EBADMSG;
		switch (f.num) {
		case 1:
			sf.trace = f.off;
			sf.trace_len = f.len;
			break;
		case 2:
			sf.span = f.off;
			sf.span_len = f.len;
			break;
		case 4:
			sf.par = f.off;
			sf.par_len = f.len;
			l.par_field = f.start;
			l.par_field_len = p - f.start;
			break;
		case 5:
			sf.name = f.off;
			sf.name_len = f.len;
			break;
		default: /* 9 */
			rc = key_value(b, f.off, f.off + f.len, sf.av);
			if (rc)
				return rc;
			break;
		}
	}
	sc->m->wire_spans++;
	if (sc->m->n_spans == sc->cap_spans && (rc = grow_arrays(sc)))
		return rc;
	if (!describe(b, &sf, &sc->m->spans[sc->m->n_spans]))
		return 0;
	l.trace = sf.trace;
	if (sf.par_len == 8) { /* rewritten in place */
		l.par_val = sf.par;
		l.par_field = NONE;
	}
	sc->m->loc[sc->m->n_spans++] = l;
	return 0;
}

/* A ResourceSpans (up NO_UP, its ScopeSpans in field 2) or a ScopeSpans
 * (its spans in field 2). */
static int scan_cont(struct scan *sc, const struct fld *cf, uint32_t up)
{
	struct ws_stitch_msg *m = sc->m;
	uint32_t me = (uint32_t)m->n_conts;
	size_t p = cf->off, end = cf->off + cf->len;
	struct fld f;
	int rc;

	if (m->n_conts >= UINT32_MAX - 1)
		return -EBADMSG;
	if (m->n_conts == sc->cap_conts) {
		size_t cap = sc->cap_conts ? 2 * sc->cap_conts : 8;
		struct ws_stitch_pb_cont *c =
			realloc(m->conts, cap * sizeof(*c));

		if (!c)
			return -ENOMEM;
		m->conts = c;
		sc->cap_conts = cap;
	}
	m->conts[me] = (struct ws_stitch_pb_cont){.hdr = cf->hdr,
						  .hdr_len = cf->off - cf->hdr,
						  .body_len = cf->len,
						  .up = up};
	m->n_conts++;
	while (p < end) {
		if (!next_field(m->buf, &p, end, &f))
			return -EBADMSG;
		if (f.num != 2)
			continue;
		if (f.wt != WT_LEN)
			return -EBADMSG;
		rc = up == NO_UP ? scan_cont(sc, &f, me)
				 : scan_span(sc, &f, me);
		if (rc)
			return rc;
	}
	return 0;
}

static int scan_request(struct scan *sc)
{
	struct ws_stitch_msg *m = sc->m;
	size_t p = 0;
	struct fld f;
	size_t i;
	int rc;

	while (p < m->len) {
		if (!next_field(m->buf, &p, m->len, &f))
			return -EBADMSG;
		if (f.num != 1)
			continue;
		if (f.wt != WT_LEN)
			return -EBADMSG;
		rc = scan_cont(sc, &f, NO_UP);
		if (rc)
			return rc;
	}
	/* the arrays stay put from here on */
	for (i = 0; i < m->n_spans; i++)
		m->spans[i].ref = &m->loc[i];
	return 0;
}

void ws_stitch_msg_free(struct ws_stitch_msg *m)
{
	size_t i;

	if (!m)
		return;
	for (i = 0; i < m->n_spans; i++)
		free(m->loc[i].evidence);
	free(m->buf);
	free(m->subject);
	free(m->spans);
	free(m->loc);
	free(m->conts);
	free(m);
}

struct ws_stitch_msg *ws_stitch_msg_decode(const uint8_t *buf, size_t len,
					   const char *subject, void *token)
{
	static const uint8_t empty[1];
	struct ws_stitch_msg *m;
	struct scan sc = {0};
	int rc;

	if (!buf)
		buf = empty;
	if (ws_pb_check(
		    &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
		    buf, len, WS_PB_MAX_DEPTH)) {
		errno = EBADMSG;
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->token = token;
	m->buf = malloc(len ? len : 1);
	m->subject = strdup(subject ? subject : "");
	if (!m->buf || !m->subject) {
		ws_stitch_msg_free(m);
		errno = ENOMEM;
		return NULL;
	}
	memcpy(m->buf, buf, len);
	m->len = len;
	sc.m = m;
	rc = scan_request(&sc);
	if (rc) {
		ws_stitch_msg_free(m);
		errno = -rc;
		return NULL;
	}
	return m;
}

/* ---- rewriting ---------------------------------------------------------- */

int ws_stitch_msg_rewrite(void *ctx, void *token, void *ref,
			  const uint8_t trace[16], const uint8_t *parent,
			  const char *evidence)
{
	struct ws_stitch_msg *m = token;
	struct ws_stitch_pb_loc *l = ref;

	(void)ctx;
	memcpy(m->buf + l->trace, trace, 16); /* describe() checked: 16 */
	if (parent && l->par_val != NONE) {
		memcpy(m->buf + l->par_val, parent, 8);
	} else if (parent) {
		memcpy(l->parent, parent, 8);
		l->add_parent = true;
		m->grow = true;
	}
	if (evidence) {
		char *e = strdup(evidence);

		if (!e)
			return -ENOMEM;
		free(l->evidence);
		l->evidence = e;
		m->grow = true;
	}
	return 0;
}

static size_t vsize(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
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

/* The evidence attribute as protobuf-c writes it: Span field 9, a KeyValue
 * (1: key, 2: AnyValue with 1: string_value). */
static size_t evidence_sizes(const char *ev, size_t *kv, size_t *any)
{
	size_t n = strlen(ev);

	*any = 1 + vsize(n) + n;
	*kv = 1 + vsize(sizeof(EVIDENCE_KEY) - 1) + sizeof(EVIDENCE_KEY) - 1 +
	      1 + vsize(*any) + *any;
	return 1 + vsize(*kv) + *kv;
}

static uint8_t *put_evidence(uint8_t *p, const char *ev)
{
	size_t kv, any, n = strlen(ev);

	evidence_sizes(ev, &kv, &any);
	*p++ = 9 << 3 | WT_LEN;
	p = put_varint(p, kv);
	*p++ = 1 << 3 | WT_LEN;
	p = put_varint(p, sizeof(EVIDENCE_KEY) - 1);
	memcpy(p, EVIDENCE_KEY, sizeof(EVIDENCE_KEY) - 1);
	p += sizeof(EVIDENCE_KEY) - 1;
	*p++ = 2 << 3 | WT_LEN;
	p = put_varint(p, any);
	*p++ = 1 << 3 | WT_LEN;
	p = put_varint(p, n);
	memcpy(p, ev, n);
	return p + n;
}

/* The copy: the original bytes up to pos, then the caller writes at o->p
 * what replaces src[pos, pos + skip). */
struct out {
	const uint8_t *src;
	size_t cur;
	uint8_t *p;
};

static void out_to(struct out *o, size_t pos, size_t skip)
{
	memcpy(o->p, o->src + o->cur, pos - o->cur);
	o->p += pos - o->cur;
	o->cur = pos + skip;
}

/* What a length-prefixed body of n bytes, hdr_len of them its length,
 * grows by when the body grows by g. */
static size_t len_grow(size_t hdr_len, size_t n, size_t g)
{
	return g + vsize(n + g) - hdr_len;
}

static void out_len(struct out *o, size_t hdr, size_t hdr_len, size_t n,
		    size_t g)
{
	out_to(o, hdr, hdr_len);
	o->p = put_varint(o->p, n + g);
}

static void out_parent(struct out *o, const struct ws_stitch_pb_loc *l)
{
	if (l->par_field != NONE)
		out_to(o, l->par_field, l->par_field_len);
	else
		out_to(o, l->ins_parent, 0);
	*o->p++ = 4 << 3 | WT_LEN;
	*o->p++ = 8;
	memcpy(o->p, l->parent, 8);
	o->p += 8;
}

static void out_evidence(struct out *o, const struct ws_stitch_pb_loc *l)
{
	out_to(o, l->ins_attr, 0);
	o->p = put_evidence(o->p, l->evidence);
}

int ws_stitch_msg_bytes(struct ws_stitch_msg *m, uint8_t **buf, size_t *len,
			bool *owned)
{
	struct out o = {.src = m->buf};
	size_t i, total = m->len, kv, any;
	uint8_t *b;

	*buf = m->buf;
	*len = m->len;
	*owned = false;
	if (!m->grow)
		return 0;
	/* how much each span, then each container, grows */
	for (i = 0; i < m->n_conts; i++) {
		m->conts[i].grow = 0;
		m->conts[i].touched = m->conts[i].done = false;
	}
	for (i = 0; i < m->n_spans; i++) {
		struct ws_stitch_pb_loc *l = &m->loc[i];
		struct ws_stitch_pb_cont *ss = &m->conts[l->cont];

		l->grow = 0;
		if (!l->add_parent && !l->evidence)
			continue;
		if (l->add_parent)
			l->grow +=
				PARENT_FIELD_LEN -
				(l->par_field != NONE ? l->par_field_len : 0);
		if (l->evidence)
			l->grow += evidence_sizes(l->evidence, &kv, &any);
		ss->grow += len_grow(l->hdr_len, l->end - l->body, l->grow);
		ss->touched = m->conts[ss->up].touched = true;
	}
	/* ScopeSpans into their ResourceSpans, those into the request (a
	 * ScopeSpans comes after its ResourceSpans in the array) */
	for (i = m->n_conts; i-- > 0;) {
		struct ws_stitch_pb_cont *c = &m->conts[i];
		size_t g;

		if (!c->touched)
			continue;
		g = len_grow(c->hdr_len, c->body_len, c->grow);
		if (c->up != NO_UP)
			m->conts[c->up].grow += g;
		else
			total += g;
	}
	b = malloc(total ? total : 1);
	if (!b)
		return -ENOMEM;
	o.p = b;
	/* in wire order: containers' lengths, the span's, its new fields */
	for (i = 0; i < m->n_spans; i++) {
		const struct ws_stitch_pb_loc *l = &m->loc[i];
		struct ws_stitch_pb_cont *ss = &m->conts[l->cont],
					 *rs = &m->conts[ss->up];

		if (!l->add_parent && !l->evidence)
			continue;
		if (!rs->done) {
			out_len(&o, rs->hdr, rs->hdr_len, rs->body_len,
				rs->grow);
			rs->done = true;
		}
		if (!ss->done) {
			out_len(&o, ss->hdr, ss->hdr_len, ss->body_len,
				ss->grow);
			ss->done = true;
		}
		out_len(&o, l->hdr, l->hdr_len, l->end - l->body, l->grow);
		/* a non-canonical span may have its parent after field 9 */
		if (l->add_parent && l->evidence && l->par_field != NONE &&
		    l->par_field > l->ins_attr) {
			out_evidence(&o, l);
			out_parent(&o, l);
			continue;
		}
		if (l->add_parent)
			out_parent(&o, l);
		if (l->evidence)
			out_evidence(&o, l);
	}
	out_to(&o, m->len, 0);
	*buf = b;
	*len = (size_t)(o.p - b);
	*owned = true;
	return 0;
}
