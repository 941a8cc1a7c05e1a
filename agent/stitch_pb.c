/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP protobuf in and out of the stitcher (see stitch_pb.h). The span
 * attributes it reads are the agents' (docs/ARCHITECTURE.md, NATS and HTTP
 * spans): wirespan.message.fingerprint, wirespan.nats.delivery_id,
 * wirespan.http.conn.seq, network.local.* and network.peer.*.
 *
 * Rewrites change the decoded tree in place with the default protobuf-c
 * allocator (malloc), so free_unpacked frees what was added.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "otlp_trace_service.pb-c.h"

#include "export/pb_guard.h"
#include "span.h"
#include "stitch_pb.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
	pb_request;

#define EVIDENCE_KEY "wirespan.stitch.evidence"

static const pb_any *attr(const pb_span *s, const char *key)
{
	size_t i;

	for (i = 0; i < s->n_attributes; i++)
		if (s->attributes[i] && s->attributes[i]->key &&
		    !strcmp(s->attributes[i]->key, key))
			return s->attributes[i]->value;
	return NULL;
}

static const char *attr_str(const pb_span *s, const char *key)
{
	const pb_any *v = attr(s, key);

	return v && v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE
		       ? v->string_value
		       : NULL;
}

static bool attr_int(const pb_span *s, const char *key, int64_t *out)
{
	const pb_any *v = attr(s, key);

	if (!v ||
	    v->value_case !=
		    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE)
		return false;
	*out = v->int_value;
	return true;
}

/* What the stitcher needs of one span; false if it cannot take part. */
static bool describe(pb_span *s, struct ws_stitch_span *d)
{
	const char *fp, *dl;
	int64_t seq;

	if (s->trace_id.len != 16 || s->span_id.len != 8)
		return false;
	memset(d, 0, sizeof(*d));
	d->ref = s;
	memcpy(d->trace_id, s->trace_id.data, 16);
	memcpy(d->span_id, s->span_id.data, 8);
	if (s->parent_span_id.len == 8 &&
	    !ws_id_is_zero(s->parent_span_id.data, 8)) {
		memcpy(d->parent_span_id, s->parent_span_id.data, 8);
		d->has_parent = true;
	}
	d->start_ns = s->start_time_unix_nano;
	d->seq = -1;
	fp = attr_str(s, "wirespan.message.fingerprint");
	if (fp) {
		d->fingerprint = XXH3_64bits(fp, strlen(fp));
		d->has_fingerprint = true;
		dl = attr_str(s, "wirespan.nats.delivery_id");
		d->has_delivery =
			dl && !ws_id_parse(dl, strlen(dl), d->delivery_id, 8);
		switch (s->kind) {
		case OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CONSUMER:
			if (!d->has_parent)
				d->role = WS_STITCH_NATS_SEEKER;
			break;
		case OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_PRODUCER:
		case OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT:
			/* the broker's hop is found by its id, not as a
			 * second producer of the same message */
			if (!s->name || strncmp(s->name, "deliver ", 8))
				d->role = WS_STITCH_NATS_ANCHOR;
			break;
		default:
			break;
		}
		return true;
	}
	if (!attr_int(s, "wirespan.http.conn.seq", &seq))
		return true;
	d->seq = seq;
	d->local.addr = attr_str(s, "network.local.address");
	d->peer.addr = attr_str(s, "network.peer.address");
	if (!attr_int(s, "network.local.port", &d->local.port) ||
	    !attr_int(s, "network.peer.port", &d->peer.port))
		return true;
	if (s->kind ==
	    OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT)
		d->role = WS_STITCH_HTTP_CLIENT;
	else if (
		s->kind ==
			OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER &&
		!d->has_parent)
		d->role = WS_STITCH_HTTP_SERVER;
	return true;
}

void ws_stitch_msg_free(struct ws_stitch_msg *m)
{
	if (!m)
		return;
	if (m->req)
		opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
			m->req, NULL);
	free(m->orig);
	free(m->subject);
	free(m->spans);
	free(m);
}

struct ws_stitch_msg *ws_stitch_msg_decode(const uint8_t *buf, size_t len,
					   const char *subject, void *token)
{
	static const uint8_t empty[1];
	struct ws_stitch_msg *m;
	pb_request *req;
	size_t r, s, i, n = 0;

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
	m->orig = malloc(len ? len : 1);
	m->subject = strdup(subject ? subject : "");
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, len, buf);
	m->req = req;
	if (!m->orig || !m->subject || !req) {
		ws_stitch_msg_free(m);
		errno = req ? ENOMEM : EBADMSG;
		return NULL;
	}
	memcpy(m->orig, buf, len);
	m->len = len;
	for (r = 0; r < req->n_resource_spans; r++)
		for (s = 0; s < req->resource_spans[r]->n_scope_spans; s++)
			n += req->resource_spans[r]->scope_spans[s]->n_spans;
	m->spans = calloc(n ? n : 1, sizeof(*m->spans));
	if (!m->spans) {
		ws_stitch_msg_free(m);
		errno = ENOMEM;
		return NULL;
	}
	for (r = 0; r < req->n_resource_spans; r++)
		for (s = 0; s < req->resource_spans[r]->n_scope_spans; s++) {
			Opentelemetry__Proto__Trace__V1__ScopeSpans *ss =
				req->resource_spans[r]->scope_spans[s];

			for (i = 0; i < ss->n_spans; i++)
				if (describe(ss->spans[i],
					     &m->spans[m->n_spans]))
					m->n_spans++;
		}
	return m;
}

static int add_evidence(pb_span *s, const char *evidence)
{
	pb_kv **v, *kv = malloc(sizeof(*kv));
	pb_any *val = malloc(sizeof(*val));

	v = kv && val
		    ? realloc(s->attributes, (s->n_attributes + 1) * sizeof(*v))
		    : NULL;
	if (!v) {
		free(kv);
		free(val);
		return -ENOMEM;
	}
	s->attributes = v;
	opentelemetry__proto__common__v1__key_value__init(kv);
	opentelemetry__proto__common__v1__any_value__init(val);
	kv->key = strdup(EVIDENCE_KEY);
	val->value_case =
		OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
	val->string_value = strdup(evidence);
	kv->value = val;
	/* in the tree before checking: free_unpacked frees it either way */
	v[s->n_attributes++] = kv;
	return kv->key && val->string_value ? 0 : -ENOMEM;
}

int ws_stitch_msg_rewrite(void *ctx, void *token, void *ref,
			  const uint8_t trace[16], const uint8_t *parent,
			  const char *evidence)
{
	pb_span *s = ref;

	(void)ctx;
	(void)token;
	memcpy(s->trace_id.data, trace, 16); /* describe() checked: 16 */
	if (parent) {
		if (s->parent_span_id.len != 8) {
			uint8_t *p = malloc(8);

			if (!p)
				return -ENOMEM;
			free(s->parent_span_id.data);
			s->parent_span_id.data = p;
			s->parent_span_id.len = 8;
		}
		memcpy(s->parent_span_id.data, parent, 8);
	}
	return evidence ? add_evidence(s, evidence) : 0;
}

int ws_stitch_msg_bytes(struct ws_stitch_msg *m, bool modified, uint8_t **buf,
			size_t *len, bool *owned)
{
	size_t n;
	uint8_t *b;

	if (!modified) {
		*buf = m->orig;
		*len = m->len;
		*owned = false;
		return 0;
	}
	n = opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
		m->req);
	b = malloc(n ? n : 1);
	if (!b)
		return -ENOMEM;
	*len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(
		m->req, b);
	*buf = b;
	*owned = true;
	return 0;
}
