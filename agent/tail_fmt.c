/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `wirespan tail`, the pure part: decode (protobuf-c, the encoder's generated
 * code) -> group by trace (uthash, LRU list) -> print as a tree or as JSON
 * objects (json-c). See tail_fmt.h for the contract.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <uthash.h>

#include "otlp_trace_service.pb-c.h"

#include "export/pb_guard.h"
#include "span.h"
#include "tail_fmt.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_rspans;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
	pb_request;

#define ANY_CASE(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##x

/* Longest string kept (names, services, attribute values). */
#define MAX_STR 1024
/* Nesting of array/kvlist attribute values rendered; deeper is "...". */
#define MAX_VALUE_DEPTH 8
/* Columns of the name column and of the service column, at most. */
#define NAME_COLS 64
#define SERVICE_COLS 24

/* Identity attributes, in the order the text form prefers them. */
static const struct {
	const char *key, *label;
} identity_keys[] = {
	{"enduser.id", "enduser"},  {"enduser.pseudo.id", "pseudo"},
	{"user.id", "user"},	    {"user.name", "user"},
	{"nats.user", "nats.user"}, {"nats.jwt.name", "nats.jwt"},
	{"nats.nkey", "nats.nkey"}, {"nats.account", "account"},
};
#define N_IDENTITY (sizeof(identity_keys) / sizeof(identity_keys[0]))

struct tspan {
	uint8_t span_id[8], parent[8];
	bool has_parent;
	uint8_t kind, status;
	uint64_t start, end;
	char *name, *status_msg, *service, *subject;
	/* identity values by identity_keys index (NULL: absent) */
	char *identity[N_IDENTITY];
	struct json_object *attrs;    /* NULL unless JSON or --attrs */
	struct json_object *resource; /* referenced; NULL unless JSON */
	size_t bytes;		      /* approximate memory held */
	uint32_t seq;		      /* arrival order within the trace */
	/* set while printing */
	int32_t parent_idx; /* -1: none in this group */
	bool visited;
};

struct trace {
	uint8_t id[16];
	UT_hash_handle hh;
	struct trace *prev, *next; /* LRU: head = least recently updated */
	struct tspan *v;
	size_t n, cap;
	uint64_t first_ns, last_ns;
	size_t bytes;
	bool svc_match, dest_match, has_error;
};

enum flush_why { WHY_QUIET, WHY_HOLD, WHY_EVICT, WHY_END };

struct ws_tail {
	struct ws_tail_cfg cfg;
	struct trace *by_id; /* uthash head */
	struct trace *head, *tail;
	struct ws_tail_stats st;
};

/* ---- small helpers ---- */

void ws_tail_cfg_init(struct ws_tail_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->out = stdout;
	cfg->flush_after_ns = WS_TAIL_DEFAULT_FLUSH_NS;
	cfg->max_hold_ns = WS_TAIL_DEFAULT_HOLD_NS;
	cfg->max_traces = WS_TAIL_DEFAULT_MAX_TRACES;
	cfg->max_spans = WS_TAIL_DEFAULT_MAX_SPANS;
	cfg->max_bytes = WS_TAIL_DEFAULT_MAX_BYTES;
}

bool ws_subject_match(const char *p, const char *s)
{
	if (!p || !s || !*p || !*s)
		return false;
	for (;;) {
		const char *pe = strchr(p, '.'), *se = strchr(s, '.');
		size_t pl = pe ? (size_t)(pe - p) : strlen(p);
		size_t sl = se ? (size_t)(se - s) : strlen(s);

		if (!sl)
			return false; /* empty token: not a subject */
		if (pl == 1 && *p == '>' && !pe)
			return true;
		if (!(pl == 1 && *p == '*') && (pl != sl || memcmp(p, s, pl)))
			return false;
		if (!pe || !se)
			return !pe && !se;
		p = pe + 1;
		s = se + 1;
	}
}

void ws_tail_duration(uint64_t ns, char *buf, size_t len)
{
	if (ns < 1000)
		snprintf(buf, len, "%" PRIu64 "ns", ns);
	else if (ns < 1000000)
		snprintf(buf, len, "%.3gus", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, len, "%.3gms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.3fs", (double)ns / 1e9);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* A valid-UTF-8 copy cut to MAX_STR; NULL on ENOMEM. */
static char *copy_str(const char *s)
{
	return ws_utf8_sanitize(s ? s : "", s ? strlen(s) : 0, MAX_STR, NULL);
}

static const pb_any *attr_get(pb_kv *const *kv, size_t n, const char *key)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (kv[i] && kv[i]->key && !strcmp(kv[i]->key, key))
			return kv[i]->value;
	return NULL;
}

static const char *any_str(const pb_any *v)
{
	if (v && v->value_case == ANY_CASE(STRING_VALUE) && v->string_value &&
	    *v->string_value)
		return v->string_value;
	return NULL;
}

/* A scalar attribute as text (identity values are strings or ints). */
static char *any_text(const pb_any *v)
{
	char num[32];

	if (any_str(v))
		return copy_str(v->string_value);
	if (v && v->value_case == ANY_CASE(INT_VALUE)) {
		snprintf(num, sizeof(num), "%" PRId64, v->int_value);
		return strdup(num);
	}
	return NULL;
}

/* ---- attribute values as JSON ---- */

static struct json_object *any_json(const pb_any *v, int depth);

static struct json_object *kvs_json(pb_kv *const *kv, size_t n, int depth)
{
	struct json_object *o = json_object_new_object();
	size_t i;

	if (!o)
		return NULL;
	for (i = 0; i < n; i++) {
		char *k;

		if (!kv[i])
			continue;
		k = copy_str(kv[i]->key);
		if (!k)
			continue;
		json_object_object_add(o, k, any_json(kv[i]->value, depth));
		free(k);
	}
	return o;
}

static struct json_object *bytes_json(const ProtobufCBinaryData *b)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = b->len < MAX_STR / 2 ? b->len : MAX_STR / 2, i;
	char s[MAX_STR + 1];

	for (i = 0; i < n; i++) {
		s[2 * i] = hex[b->data[i] >> 4];
		s[2 * i + 1] = hex[b->data[i] & 15];
	}
	return json_object_new_string_len(s, (int)(2 * n));
}

static struct json_object *any_json(const pb_any *v, int depth)
{
	struct json_object *a;
	char *s;
	size_t i;

	if (!v)
		return NULL;
	if (depth >= MAX_VALUE_DEPTH &&
	    (v->value_case == ANY_CASE(ARRAY_VALUE) ||
	     v->value_case == ANY_CASE(KVLIST_VALUE)))
		return json_object_new_string("...");
	switch (v->value_case) {
	case ANY_CASE(STRING_VALUE):
		s = copy_str(v->string_value);
		a = s ? json_object_new_string(s) : NULL;
		free(s);
		return a;
	case ANY_CASE(BOOL_VALUE):
		return json_object_new_boolean(v->bool_value);
	case ANY_CASE(INT_VALUE):
		return json_object_new_int64(v->int_value);
	case ANY_CASE(DOUBLE_VALUE):
		/* JSON has no NaN or infinities: protobuf's JSON names */
		if (isnan(v->double_value))
			return json_object_new_string("NaN");
		if (isinf(v->double_value))
			return json_object_new_string(
				v->double_value > 0 ? "Infinity" : "-Infinity");
		return json_object_new_double(v->double_value);
	case ANY_CASE(ARRAY_VALUE):
		a = json_object_new_array();
		if (a && v->array_value)
			for (i = 0; i < v->array_value->n_values; i++)
				json_object_array_add(
					a, any_json(v->array_value->values[i],
						    depth + 1));
		return a;
	case ANY_CASE(KVLIST_VALUE):
		if (!v->kvlist_value)
			return json_object_new_object();
		return kvs_json(v->kvlist_value->values,
				v->kvlist_value->n_values, depth + 1);
	case ANY_CASE(BYTES_VALUE):
		return bytes_json(&v->bytes_value);
	default:
		return NULL;
	}
}

/* ---- holding spans ---- */

static void tspan_free(struct tspan *s)
{
	size_t i;

	free(s->name);
	free(s->status_msg);
	free(s->service);
	free(s->subject);
	for (i = 0; i < N_IDENTITY; i++)
		free(s->identity[i]);
	json_object_put(s->attrs);
	json_object_put(s->resource);
}

static void lru_unlink(struct ws_tail *t, struct trace *tr)
{
	if (tr->prev)
		tr->prev->next = tr->next;
	else
		t->head = tr->next;
	if (tr->next)
		tr->next->prev = tr->prev;
	else
		t->tail = tr->prev;
	tr->prev = tr->next = NULL;
}

static void lru_append(struct ws_tail *t, struct trace *tr)
{
	tr->prev = t->tail;
	tr->next = NULL;
	if (t->tail)
		t->tail->next = tr;
	else
		t->head = tr;
	t->tail = tr;
}

static void flush_trace(struct ws_tail *t, struct trace *tr,
			enum flush_why why);

/* Print early (evict) until one more span of size bytes fits the bounds. */
static void make_room(struct ws_tail *t, size_t bytes, bool new_trace)
{
	while (t->head &&
	       ((new_trace && t->st.held_traces >= t->cfg.max_traces) ||
		t->st.held_spans >= t->cfg.max_spans ||
		t->st.held_bytes + bytes > t->cfg.max_bytes))
		flush_trace(t, t->head, WHY_EVICT);
}

static bool service_wanted(const struct ws_tail *t, const char *svc)
{
	size_t i;

	for (i = 0; i < t->cfg.n_services; i++)
		if (!strcmp(t->cfg.services[i], svc))
			return true;
	return false;
}

static bool dest_wanted(const struct ws_tail *t, const char *dest)
{
	size_t i;

	for (i = 0; dest && i < t->cfg.n_destinations; i++)
		if (ws_subject_match(t->cfg.destinations[i], dest))
			return true;
	return false;
}

/* What spans of one ResourceSpans share. */
struct res_info {
	const char *service; /* in the request */
	pb_kv *const *kv;
	size_t n_kv;
	struct json_object *json; /* NULL unless JSON */
};

static void res_info_init(const struct ws_tail *t, const pb_rspans *rs,
			  struct res_info *ri)
{
	const char *svc = NULL;

	memset(ri, 0, sizeof(*ri));
	if (rs->resource) {
		ri->kv = rs->resource->attributes;
		ri->n_kv = rs->resource->n_attributes;
	}
	svc = any_str(attr_get(ri->kv, ri->n_kv, "service.name"));
	if (!svc)
		svc = any_str(
			attr_get(ri->kv, ri->n_kv, "process.executable.name"));
	ri->service = svc ? svc : "unknown_service";
	if (t->cfg.json)
		ri->json = kvs_json(ri->kv, ri->n_kv, 0);
}

/* Fill s from p; false on ENOMEM (s is then freed by the caller).
 * *dest_match: the span's destination matches a --destination filter. */
static bool tspan_fill(const struct ws_tail *t, struct tspan *s,
		       const pb_span *p, const struct res_info *ri,
		       const char *subject, bool *dest_match)
{
	const char *dest;
	size_t i;

	memcpy(s->span_id, p->span_id.data, 8);
	s->has_parent = p->parent_span_id.len == 8 &&
			!all_zero(p->parent_span_id.data, 8);
	if (s->has_parent)
		memcpy(s->parent, p->parent_span_id.data, 8);
	s->kind = p->kind <= 5 ? (uint8_t)p->kind : 0;
	s->status = p->status && p->status->code <= 2 ? (uint8_t)p->status->code
						      : 0;
	s->start = p->start_time_unix_nano;
	s->end = p->end_time_unix_nano;
	s->name = copy_str(p->name);
	s->service = copy_str(ri->service);
	if (!s->name || !s->service)
		return false;
	if (p->status && p->status->message && *p->status->message &&
	    !(s->status_msg = copy_str(p->status->message)))
		return false;
	if (subject && !(s->subject = copy_str(subject)))
		return false;
	for (i = 0; i < N_IDENTITY; i++) {
		const pb_any *v = attr_get(p->attributes, p->n_attributes,
					   identity_keys[i].key);

		if (!v)
			v = attr_get(ri->kv, ri->n_kv, identity_keys[i].key);
		s->identity[i] = any_text(v);
	}
	if (t->cfg.json || t->cfg.attrs) {
		s->attrs = kvs_json(p->attributes, p->n_attributes, 0);
		if (!s->attrs)
			return false;
	}
	if (ri->json)
		s->resource = json_object_get(ri->json);
	dest = any_str(attr_get(p->attributes, p->n_attributes,
				"messaging.destination.name"));
	/* dest is only read now, for the filter: not kept */
	*dest_match = dest_wanted(t, dest);
	/* the wire size is the best cheap estimate of what we hold; the
	 * JSON trees cost a few times that */
	s->bytes = sizeof(*s) +
		   opentelemetry__proto__trace__v1__span__get_packed_size(p) *
			   (s->attrs ? 4 : 1);
	return true;
}

static void add_span(struct ws_tail *t, const pb_span *p,
		     const struct res_info *ri, const char *subject,
		     uint64_t now_ns)
{
	struct tspan s = {0};
	struct trace *tr;
	bool dest_match = false;

	if (p->trace_id.len != 16 || all_zero(p->trace_id.data, 16) ||
	    p->span_id.len != 8 || all_zero(p->span_id.data, 8) ||
	    (p->parent_span_id.len != 0 && p->parent_span_id.len != 8)) {
		t->st.bad_spans++;
		return;
	}
	if (t->cfg.has_trace_id &&
	    memcmp(p->trace_id.data, t->cfg.trace_id, 16)) {
		t->st.other_trace++;
		return;
	}
	if (!tspan_fill(t, &s, p, ri, subject, &dest_match)) {
		tspan_free(&s);
		t->st.nomem++;
		return;
	}

	HASH_FIND(hh, t->by_id, p->trace_id.data, 16, tr);
	make_room(t, s.bytes, !tr);
	/* eviction may have printed (and freed) this very trace */
	HASH_FIND(hh, t->by_id, p->trace_id.data, 16, tr);
	if (!tr) {
		tr = calloc(1, sizeof(*tr));
		if (!tr) {
			tspan_free(&s);
			t->st.nomem++;
			return;
		}
		memcpy(tr->id, p->trace_id.data, 16);
		tr->first_ns = now_ns;
		HASH_ADD(hh, t->by_id, id, 16, tr);
		lru_append(t, tr);
		t->st.held_traces++;
	} else {
		lru_unlink(t, tr);
		lru_append(t, tr);
	}
	if (tr->n == tr->cap) {
		size_t cap = tr->cap ? tr->cap * 2 : 8;
		struct tspan *v = realloc(tr->v, cap * sizeof(*v));

		if (!v) {
			tspan_free(&s);
			t->st.nomem++;
			return;
		}
		tr->v = v;
		tr->cap = cap;
	}
	s.seq = (uint32_t)tr->n;
	tr->last_ns = now_ns;
	tr->svc_match |= service_wanted(t, s.service);
	tr->dest_match |= dest_match;
	tr->has_error |= s.status == 2;
	tr->bytes += s.bytes;
	tr->v[tr->n++] = s;
	t->st.held_spans++;
	t->st.held_bytes += s.bytes;
	if (t->st.held_spans > t->st.peak_held_spans)
		t->st.peak_held_spans = t->st.held_spans;
}

int ws_tail_feed(struct ws_tail *t, const char *subject, const uint8_t *buf,
		 size_t len, uint64_t now_ns)
{
	static const uint8_t empty[1];
	pb_request *req;
	size_t r, s, i;

	t->st.messages++;
	if (ws_pb_check(
		    &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
		    buf ? buf : empty, len, WS_PB_MAX_DEPTH)) {
		t->st.bad_messages++;
		return -EBADMSG;
	}
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, len, buf ? buf : empty);
	if (!req) {
		t->st.bad_messages++;
		return -EBADMSG;
	}
	for (r = 0; r < req->n_resource_spans; r++) {
		const pb_rspans *rs = req->resource_spans[r];
		struct res_info ri;

		res_info_init(t, rs, &ri);
		for (s = 0; s < rs->n_scope_spans; s++)
			for (i = 0; i < rs->scope_spans[s]->n_spans; i++) {
				t->st.spans_in++;
				add_span(t, rs->scope_spans[s]->spans[i], &ri,
					 subject, now_ns);
			}
		json_object_put(ri.json);
	}
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
		req, NULL);
	return 0;
}

/* ---- ordering a trace as a tree ---- */

static int cmp_span_id(const void *a, const void *b)
{
	const struct tspan *x = a, *y = b;
	int c = memcmp(x->span_id, y->span_id, 8);

	if (c)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_start(const struct tspan *x, const struct tspan *y)
{
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return memcmp(x->span_id, y->span_id, 8);
}

/* order[]: by (parent index, start): a parent's children are adjacent. */
static int cmp_by_parent(const void *a, const void *b, void *ctx)
{
	const struct tspan *v = ctx;
	const struct tspan *x = &v[*(const uint32_t *)a];
	const struct tspan *y = &v[*(const uint32_t *)b];

	if (x->parent_idx != y->parent_idx)
		return x->parent_idx < y->parent_idx ? -1 : 1;
	return cmp_start(x, y);
}

static int cmp_by_start(const void *a, const void *b, void *ctx)
{
	const struct tspan *v = ctx;

	return cmp_start(&v[*(const uint32_t *)a], &v[*(const uint32_t *)b]);
}

/* Sort by span id, drop duplicates (first arrival kept), link parents. */
static void resolve_parents(struct ws_tail *t, struct trace *tr)
{
	size_t i, o;

	qsort(tr->v, tr->n, sizeof(*tr->v), cmp_span_id);
	for (i = o = 0; i < tr->n; i++) {
		if (o && !memcmp(tr->v[o - 1].span_id, tr->v[i].span_id, 8)) {
			t->st.duplicate_spans++;
			t->st.held_spans--;
			tspan_free(&tr->v[i]);
			continue;
		}
		tr->v[o++] = tr->v[i];
	}
	tr->n = o;
	for (i = 0; i < tr->n; i++) {
		struct tspan key, *p = NULL;

		tr->v[i].parent_idx = -1;
		tr->v[i].visited = false;
		if (!tr->v[i].has_parent)
			continue;
		memcpy(key.span_id, tr->v[i].parent, 8);
		key.seq = 0;
		/* ids are unique now: compare the id only */
		for (size_t lo = 0, hi = tr->n; lo < hi;) {
			size_t mid = lo + (hi - lo) / 2;
			int c = memcmp(tr->v[mid].span_id, key.span_id, 8);

			if (!c) {
				p = &tr->v[mid];
				break;
			}
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (p && p != &tr->v[i])
			tr->v[i].parent_idx = (int32_t)(p - tr->v);
	}
}

/* One line of the output, as the printers see it. */
struct row {
	const struct tspan *s;
	uint32_t depth;
	bool last[WS_TAIL_MAX_DRAW_DEPTH + 1]; /* last child at each level */
	bool orphan;			       /* parent id not in the group */
	bool loop;			       /* parent loop broken here */
};

struct printer {
	struct ws_tail *t;
	const struct trace *tr;
	uint64_t t0;	  /* earliest start */
	int name_cols;	  /* widest tree + name, capped */
	int service_cols; /* widest service, capped */
	void (*row)(struct printer *pr, const struct row *r);
	bool measuring; /* the first of two walks: count nothing */
};

struct frame {
	uint32_t idx, depth;
	bool last;
};

/*
 * Walk the tree depth first: roots (no parent, or parent not seen) by start
 * time, children by start time; then spans only reachable through a parent
 * loop, each loop broken at its earliest span. Every span is printed once.
 */
static int walk(struct printer *pr, struct trace *tr)
{
	uint32_t *order, *by_start, *first, *count;
	struct frame *stack;
	struct row r;
	size_t i, sp = 0, n = tr->n;
	int rc = -ENOMEM;

	order = malloc(n * sizeof(*order));
	by_start = malloc(n * sizeof(*by_start));
	first = calloc(n + 1, sizeof(*first));
	count = calloc(n + 1, sizeof(*count));
	stack = malloc((n + 1) * sizeof(*stack));
	if (!order || !by_start || !first || !count || !stack)
		goto out;
	for (i = 0; i < n; i++)
		order[i] = by_start[i] = (uint32_t)i;
	qsort_r(order, n, sizeof(*order), cmp_by_parent, tr->v);
	qsort_r(by_start, n, sizeof(*by_start), cmp_by_start, tr->v);
	/* slot 0: roots; slot p + 1: children of p */
	for (i = n; i-- > 0;) {
		uint32_t slot = (uint32_t)(tr->v[order[i]].parent_idx + 1);

		first[slot] = (uint32_t)i;
		count[slot]++;
	}
	memset(&r, 0, sizeof(r));
	for (i = 0; i < n; i++) {
		uint32_t root = by_start[i];

		if (tr->v[root].visited)
			continue;
		/* by_start is in start order and so are roots: a root not
		 * yet visited is the next root, anything else is in a loop */
		r.loop = tr->v[root].parent_idx >= 0;
		if (r.loop && !pr->measuring)
			pr->t->st.cycles++;
		stack[sp++] = (struct frame){root, 0, true};
		while (sp) {
			struct frame f = stack[--sp];
			struct tspan *s = &tr->v[f.idx];
			uint32_t slot = f.idx + 1, k;

			if (s->visited)
				continue;
			s->visited = true;
			r.s = s;
			r.depth = f.depth;
			r.last[f.depth < WS_TAIL_MAX_DRAW_DEPTH
				       ? f.depth
				       : WS_TAIL_MAX_DRAW_DEPTH] = f.last;
			r.orphan = s->has_parent && s->parent_idx < 0;
			pr->row(pr, &r);
			r.loop = false;
			/* push children last to first; a child is pushed
			 * only by its one parent, so the stack holds n at
			 * most */
			for (k = count[slot]; k-- > 0;) {
				uint32_t c = order[first[slot] + k];

				if (!tr->v[c].visited)
					stack[sp++] = (struct frame){
						c, f.depth + 1,
						k == count[slot] - 1};
			}
		}
	}
	rc = 0;
out:
	free(order);
	free(by_start);
	free(first);
	free(count);
	free(stack);
	return rc;
}

/* ---- text ---- */

#define C_RESET "\033[0m"
#define C_BOLD "\033[1m"
#define C_DIM "\033[2m"
#define C_RED "\033[31m"
#define C_GREEN "\033[32m"
#define C_CYAN "\033[36m"

static const char *const kind_names[] = {
	"unspecified", "internal", "server", "client", "producer", "consumer",
};
static const char *const status_names[] = {"unset", "ok", "error"};

/*
 * Escape s for a terminal into dst (cap bytes, NUL-terminated), at most
 * max_cols characters (then "..."): C0 and C1 controls and DEL become \xNN /
 * \u00NN so a span cannot move the cursor or recolour the screen. Returns
 * the columns used (one per character; good enough for alignment).
 */
static int text_escape(const char *s, char *dst, size_t cap, int max_cols)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t o = 0;
	int cols = 0;

	while (*u && o + 8 < cap) {
		int w;
		size_t k = 1;
		char esc[8];

		if (*u < 0x20 || *u == 0x7f) {
			w = snprintf(esc, sizeof(esc), "\\x%02x", *u);
		} else if (u[0] == 0xc2 && u[1] >= 0x80 && u[1] <= 0x9f) {
			w = snprintf(esc, sizeof(esc), "\\u%04x", u[1]);
			k = 2;
		} else {
			/* one UTF-8 sequence (the string is valid UTF-8) */
			while (u[k] && (u[k] & 0xc0) == 0x80)
				k++;
			w = 1;
			if (cols + w > max_cols)
				break;
			if (o + k + 4 >= cap)
				break;
			memcpy(dst + o, u, k);
			o += k;
			u += k;
			cols += w;
			continue;
		}
		if (cols + w > max_cols)
			break;
		memcpy(dst + o, esc, (size_t)w);
		o += (size_t)w;
		u += k;
		cols += w;
	}
	if (*u && o + 3 < cap) {
		memcpy(dst + o, "...", 3);
		o += 3;
		cols += 3;
	}
	dst[o] = 0;
	return cols;
}

static int tree_cols(uint32_t depth)
{
	return 3 * (int)(depth < WS_TAIL_MAX_DRAW_DEPTH
				 ? depth
				 : WS_TAIL_MAX_DRAW_DEPTH);
}

static void measure(struct printer *pr, const struct row *r)
{
	char buf[4 * NAME_COLS + 16];
	int c = tree_cols(r->depth) +
		text_escape(r->s->name, buf, sizeof(buf), NAME_COLS);

	if (c > pr->name_cols)
		pr->name_cols = c;
	c = text_escape(r->s->service, buf, sizeof(buf), SERVICE_COLS);
	if (c > pr->service_cols)
		pr->service_cols = c;
}

static void text_row(struct printer *pr, const struct row *r)
{
	const struct ws_tail_cfg *cfg = &pr->t->cfg;
	const struct tspan *s = r->s;
	FILE *f = cfg->out;
	char name[4 * NAME_COLS + 16], svc[4 * SERVICE_COLS + 16];
	char val[4 * 128 + 16], dur[32], off[32];
	uint32_t d, draw = r->depth < WS_TAIL_MAX_DRAW_DEPTH
				   ? r->depth
				   : WS_TAIL_MAX_DRAW_DEPTH;
	int cols;
	size_t i;
	bool person = false;
	const char *red = cfg->color ? C_RED : "";
	const char *reset = cfg->color ? C_RESET : "";

	fputs("  ", f);
	for (d = 1; d <= draw; d++) {
		if (d < draw)
			fputs(r->last[d] ? "   " : "\u2502  ", f);
		else
			fputs(r->last[d] ? "\u2514\u2500 " : "\u251c\u2500 ",
			      f);
	}
	cols = tree_cols(r->depth) +
	       text_escape(s->name, name, sizeof(name), NAME_COLS);
	fprintf(f, "%s%s%s%*s", s->status == 2 ? red : "", name,
		s->status == 2 ? reset : "", pr->name_cols - cols, "");
	ws_tail_duration(s->end >= s->start ? s->end - s->start : 0, dur,
			 sizeof(dur));
	if (s->start > pr->t0)
		ws_tail_duration(s->start - pr->t0, off, sizeof(off));
	else
		strcpy(off, "0");
	cols = text_escape(s->service, svc, sizeof(svc), SERVICE_COLS);
	fprintf(f, "  %8s  %s+%-8s%s  %s%s%s%*s  %s", dur,
		cfg->color ? C_DIM : "", off, reset, cfg->color ? C_CYAN : "",
		svc, reset, pr->service_cols - cols, "", kind_names[s->kind]);
	/* the first person-like identity, then the account */
	for (i = 0; i < N_IDENTITY; i++) {
		bool account = !strcmp(identity_keys[i].key, "nats.account");

		if (!s->identity[i] || (person && !account))
			continue;
		text_escape(s->identity[i], val, sizeof(val), 64);
		fprintf(f, "  %s=%s", identity_keys[i].label, val);
		person |= !account;
	}
	if (s->status) {
		fprintf(f, "  %s%s%s",
			s->status == 2 ? red : (cfg->color ? C_GREEN : ""),
			s->status == 2 ? "ERROR" : "OK", reset);
		if (s->status_msg) {
			text_escape(s->status_msg, val, sizeof(val), 128);
			fprintf(f, " %s", val);
		}
	}
	if (r->orphan) {
		char hex[17];

		ws_id_hex(s->parent, 8, hex);
		fprintf(f, "  (parent %s not seen)", hex);
	}
	if (r->loop)
		fputs("  (parent loop)", f);
	if (r->depth > WS_TAIL_MAX_DRAW_DEPTH)
		fprintf(f, "  (depth %u)", r->depth);
	fputc('\n', f);
	if (cfg->attrs && s->attrs) {
		json_object_object_foreach(s->attrs, k, v)
		{
			const char *js = json_object_to_json_string_ext(
				v, JSON_C_TO_STRING_PLAIN |
					   JSON_C_TO_STRING_NOSLASHESCAPE);

			text_escape(k, name, sizeof(name), NAME_COLS);
			text_escape(js ? js : "null", val, sizeof(val), 128);
			fprintf(f, "  %*s  %s%s=%s%s\n", tree_cols(r->depth),
				"", cfg->color ? C_DIM : "", name, val, reset);
		}
	}
}

static const char *const why_text[] = {
	[WHY_QUIET] = "",
	[WHY_HOLD] = "  (held the longest time: more may follow)",
	[WHY_EVICT] = "  (printed early: memory bound)",
	[WHY_END] = "",
};

static void text_header(struct printer *pr, const struct trace *tr,
			enum flush_why why)
{
	const struct ws_tail_cfg *cfg = &pr->t->cfg;
	uint64_t end = 0;
	size_t i, errors = 0;
	char hex[33], dur[32];

	for (i = 0; i < tr->n; i++) {
		if (tr->v[i].end > end)
			end = tr->v[i].end;
		errors += tr->v[i].status == 2;
	}
	ws_id_hex(tr->id, 16, hex);
	ws_tail_duration(end > pr->t0 ? end - pr->t0 : 0, dur, sizeof(dur));
	fprintf(cfg->out, "%strace %s%s  %zu span%s  %s",
		cfg->color ? C_BOLD : "", hex, cfg->color ? C_RESET : "", tr->n,
		tr->n == 1 ? "" : "s", dur);
	if (errors)
		fprintf(cfg->out, "  %s%zu error%s%s", cfg->color ? C_RED : "",
			errors, errors == 1 ? "" : "s",
			cfg->color ? C_RESET : "");
	fprintf(cfg->out, "%s\n", why_text[why]);
}

/* ---- JSON ---- */

static struct json_object *str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static void json_row(struct printer *pr, const struct row *r)
{
	const struct tspan *s = r->s;
	struct json_object *o = json_object_new_object(), *id;
	char hex[33], num[24];
	const char *line;
	size_t i;

	if (!o) {
		pr->t->st.output_errors++;
		return;
	}
	ws_id_hex(pr->tr->id, 16, hex);
	json_object_object_add(o, "trace_id", json_object_new_string(hex));
	ws_id_hex(s->span_id, 8, hex);
	json_object_object_add(o, "span_id", json_object_new_string(hex));
	if (s->has_parent)
		ws_id_hex(s->parent, 8, hex);
	json_object_object_add(o, "parent_span_id",
			       str_or_null(s->has_parent ? hex : NULL));
	json_object_object_add(o, "depth", json_object_new_int64(r->depth));
	json_object_object_add(o, "parent_seen",
			       json_object_new_boolean(!r->orphan));
	json_object_object_add(o, "name", json_object_new_string(s->name));
	json_object_object_add(o, "kind",
			       json_object_new_string(kind_names[s->kind]));
	snprintf(num, sizeof(num), "%" PRIu64, s->start);
	json_object_object_add(o, "start_unix_nano",
			       json_object_new_string(num));
	snprintf(num, sizeof(num), "%" PRIu64, s->end);
	json_object_object_add(o, "end_unix_nano", json_object_new_string(num));
	json_object_object_add(
		o, "duration_ns",
		json_object_new_int64(s->end >= s->start && s->end - s->start <=
								    INT64_MAX
					      ? (int64_t)(s->end - s->start)
					      : 0));
	json_object_object_add(o, "service",
			       json_object_new_string(s->service));
	json_object_object_add(o, "status",
			       json_object_new_string(status_names[s->status]));
	json_object_object_add(o, "status_message", str_or_null(s->status_msg));
	id = json_object_new_object();
	for (i = 0; id && i < N_IDENTITY; i++)
		if (s->identity[i])
			json_object_object_add(
				id, identity_keys[i].key,
				json_object_new_string(s->identity[i]));
	json_object_object_add(o, "identity", id);
	json_object_object_add(o, "subject", str_or_null(s->subject));
	json_object_object_add(o, "attributes", json_object_get(s->attrs));
	json_object_object_add(o, "resource", json_object_get(s->resource));
	line = json_object_to_json_string_ext(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!line || fprintf(pr->t->cfg.out, "%s\n", line) < 0)
		pr->t->st.output_errors++;
	json_object_put(o);
}

/* ---- printing a trace ---- */

static bool trace_wanted(const struct ws_tail *t, const struct trace *tr)
{
	if (t->cfg.n_services && !tr->svc_match)
		return false;
	if (t->cfg.n_destinations && !tr->dest_match)
		return false;
	return !t->cfg.errors_only || tr->has_error;
}

static void print_trace(struct ws_tail *t, struct trace *tr, enum flush_why why)
{
	struct printer pr = {.t = t, .tr = tr, .t0 = UINT64_MAX};
	size_t i;

	resolve_parents(t, tr);
	for (i = 0; i < tr->n; i++)
		if (tr->v[i].start < pr.t0)
			pr.t0 = tr->v[i].start;
	if (t->cfg.json) {
		pr.row = json_row;
	} else {
		/* a first walk measures the columns */
		pr.row = measure;
		pr.measuring = true;
		if (walk(&pr, tr)) {
			t->st.nomem += tr->n;
			return;
		}
		pr.measuring = false;
		for (i = 0; i < tr->n; i++)
			tr->v[i].visited = false;
		text_header(&pr, tr, why);
		pr.row = text_row;
	}
	if (walk(&pr, tr)) {
		t->st.nomem += tr->n;
		return;
	}
	if (ferror(t->cfg.out)) {
		t->st.output_errors++;
		clearerr(t->cfg.out);
	}
	fflush(t->cfg.out);
	t->st.traces_printed++;
	t->st.spans_printed += tr->n;
}

static void flush_trace(struct ws_tail *t, struct trace *tr, enum flush_why why)
{
	size_t i;

	switch (why) {
	case WHY_QUIET:
		t->st.flush_quiet++;
		break;
	case WHY_HOLD:
		t->st.flush_max_hold++;
		break;
	case WHY_EVICT:
		t->st.evicted++;
		break;
	case WHY_END:
		t->st.flush_end++;
		break;
	}
	if (trace_wanted(t, tr))
		print_trace(t, tr, why);
	else
		t->st.traces_filtered++;
	HASH_DEL(t->by_id, tr);
	lru_unlink(t, tr);
	for (i = 0; i < tr->n; i++)
		tspan_free(&tr->v[i]);
	t->st.held_traces--;
	t->st.held_spans -= tr->n;
	t->st.held_bytes -= tr->bytes;
	free(tr->v);
	free(tr);
}

void ws_tail_tick(struct ws_tail *t, uint64_t now_ns)
{
	struct trace *tr = t->head, *next;

	for (; tr; tr = next) {
		next = tr->next;
		if (now_ns < tr->last_ns)
			continue; /* a clock that went back: wait */
		if (now_ns - tr->last_ns >= t->cfg.flush_after_ns)
			flush_trace(t, tr, WHY_QUIET);
		else if (now_ns - tr->first_ns >= t->cfg.max_hold_ns)
			flush_trace(t, tr, WHY_HOLD);
	}
}

void ws_tail_flush_all(struct ws_tail *t)
{
	while (t->head)
		flush_trace(t, t->head, WHY_END);
}

const struct ws_tail_stats *ws_tail_stats(const struct ws_tail *t)
{
	return &t->st;
}

struct ws_tail *ws_tail_new(const struct ws_tail_cfg *cfg)
{
	struct ws_tail *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->cfg = *cfg;
	if (!t->cfg.out)
		t->cfg.out = stdout;
	if (t->cfg.n_services > WS_TAIL_MAX_FILTERS)
		t->cfg.n_services = WS_TAIL_MAX_FILTERS;
	if (t->cfg.n_destinations > WS_TAIL_MAX_FILTERS)
		t->cfg.n_destinations = WS_TAIL_MAX_FILTERS;
	if (!t->cfg.max_traces)
		t->cfg.max_traces = 1;
	if (!t->cfg.max_spans)
		t->cfg.max_spans = 1;
	return t;
}

void ws_tail_free(struct ws_tail *t)
{
	struct trace *tr, *tmp;
	size_t i;

	if (!t)
		return;
	HASH_ITER (hh, t->by_id, tr, tmp) {
		HASH_DEL(t->by_id, tr);
		for (i = 0; i < tr->n; i++)
			tspan_free(&tr->v[i]);
		free(tr->v);
		free(tr);
	}
	free(t);
}
