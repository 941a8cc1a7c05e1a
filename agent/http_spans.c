/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.x span builder. See http_spans.h for the spans and
 * docs/ARCHITECTURE.md ("HTTP spans") for the evidence each one rests on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uthash.h>
#include <utlist.h>

#include "http_spans.h"
#include "wirespan/abi.h"

/* Bytes of an inbound request's path and X-Request-Id kept for linking. */
#define LINK_PATH 256
#define LINK_RID 128
#define MAX_URL 2048

/* How an exchange ended. */
enum end_why {
	END_RESPONSE = 0,
	END_CLOSED,
	END_TIMEOUT,
	END_EVICTED,
};

/* What linked an upstream call to its inbound request. */
enum link_ev {
	LINK_NONE = 0,
	LINK_TRACEPARENT,
	LINK_THREAD,
	LINK_HEURISTIC,
	LINK_THREAD_ORDER,
	LINK_DIAL,
	LINK_QUEUE,
	LINK_AMBIGUOUS,
	LINK_RESPONSE_THREAD,
	LINK_GOROUTINE,
};

static const char *const link_ev_name[] = {
	"none", "traceparent", "thread",    "heuristic",       "thread_order",
	"dial", "queue",       "ambiguous", "response_thread", "goroutine"};

/* A held upstream call waits this long for its response-thread evidence. */
#define HOLD_NS 1000000000ull

struct proc;
struct thr;

/* A request on a connection both of whose ends are on this host, as both
 * ends see it: the client's and the server's address, and the stream
 * offset of the request's first byte (each end counts the same bytes). */
struct hop_key {
	char caddr[48], saddr[48];
	uint16_t cport, sport;
	uint64_t off;
};

/* One request and its final response. */
struct xch {
	struct ws_http_conn *hc;
	/* NULL once the span ended early (timeout, eviction): the exchange
	 * stays queued so later responses still pair with their requests */
	struct ws_span *span;
	uint32_t tid;	   /* thread that read (server) / wrote the head */
	uint64_t g;	   /* Go processes: its goroutine, else 0 */
	uint64_t start_ns; /* first request byte */
	uint64_t head_ns;  /* the request head was complete */
	enum ws_http_method method;
	bool have_response;
	uint16_t status;
	/* inbound requests (server): what upstream calls are matched on */
	char path[LINK_PATH];
	char rid[LINK_RID]; /* X-Request-Id */
	uint8_t in_parent[8];
	bool has_in_parent;
	unsigned children; /* upstream calls linked to it */
	unsigned weak;	   /* of which by weak evidence (queue, ambiguous) */
	/* idle upstream connections of the process when it was read: a
	 * pooling gateway serves it at once, else it queues for one */
	unsigned idle_at_read;
	struct proc *proc;
	/* same-host hop: waiting in b->hops for the other end's exchange */
	struct hop_key hop;
	bool in_hops;
	bool ids_given; /* a NATS span took its ids as parent */
	/* the inbound request its thread read last, with nothing else done
	 * on that thread since: an upstream write there is for it */
	struct thr *thr;
	/* upstream calls linked by weak evidence (queue, ambiguous) wait
	 * for the response-thread evidence (struct held) */
	uint8_t link_ev;
	bool relink;
	struct held *held; /* watched for its response thread */
	/* same-host hop of a call that may be relinked: the server span at
	 * the other end (dep, its span kept in dep_span once ended) follows
	 * the call's trace; follows is the reverse pointer */
	struct xch *dep, *follows;
	struct ws_span *dep_span;
	UT_hash_handle hh;
	struct xch *prev, *next;   /* hc->fifo, oldest first */
	struct xch *aprev, *anext; /* b->age: open spans, oldest first */
	struct xch *pprev, *pnext; /* proc->open, oldest first */
};

/*
 * A thread whose last HTTP event was reading an inbound request head: the
 * next upstream request it writes serves that request (a thread per
 * request, an event loop with a pooled upstream connection, Go's handler
 * waking its connection's writeLoop on the same thread). Any other event
 * on the thread ends it. Entries live only while x is that request, so
 * there are at most as many as open inbound requests.
 */
struct thr {
	uint32_t tid;
	struct xch *x;
	UT_hash_handle hh;
};

/*
 * An upstream call linked by weak evidence whose response head thread tid
 * just read: a gateway writes the inbound response head next on the same
 * thread (an event loop in the same handler; Go's connection readLoop
 * hands the response to the handler goroutine, which runs next on that
 * thread). The first inbound response head tid writes settles the parent
 * (response_thread). While the call is open (x) it is only watched; once
 * it ended its span waits here (span). A newer call on tid, or HOLD_NS,
 * ends the wait: the call keeps the link it had. One per thread at most.
 */
struct held {
	uint32_t tid, tgid;
	struct xch *x;	      /* the call, while open */
	struct ws_span *span; /* its span, once ended */
	struct ws_span *dep;  /* its same-host server span, or NULL */
	uint8_t ev;	      /* its evidence so far */
	uint64_t since;
	UT_hash_handle hh;
};

/*
 * Go runtime evidence (ws_http_spans_go): one fact, keyed by process, kind
 * and a goroutine or request address, naming an inbound request's span:
 *   GO_IN    goroutine g read the head of inbound request span
 *   GO_SENT  request address req was handed to a connection (roundTrip)
 *            by a goroutine whose inbound request is span
 *   GO_UP    goroutine g writes (Request.write) the request sent for span
 * Kept in insertion order; past max_go_facts the oldest go (go_evicted).
 */
enum { GO_IN = 0, GO_SENT, GO_UP };
struct gor_key {
	uint32_t tgid;
	uint32_t kind;
	uint64_t v;
};
struct gor {
	struct gor_key k;
	uint8_t span[8];
	uint64_t req; /* GO_UP: the request written */
	UT_hash_handle hh;
};

/* A process with open inbound requests or client connections. */
struct proc {
	uint32_t tgid;
	struct xch *open; /* inbound requests without their response */
	unsigned n;
	unsigned clients; /* client connections */
	unsigned idle;	  /* of which without a request in flight */
	UT_hash_handle hh;
};

struct side {
	struct ws_http_conn *hc;
	uint8_t dir;
	struct ws_http_parser *p;
	bool requests; /* this direction carries requests */
	uint64_t off;  /* stream offset of the next byte */
	/* the feed being parsed: its first offset, time and thread */
	uint64_t feed_base, feed_ts;
	uint32_t tid;
	uint64_t g; /* its goroutine (Go processes with the probes), or 0 */
	/* time of the feed in which the unfinished message started */
	uint64_t carry_ts;
	struct xch *cur; /* the exchange of the message being parsed */
	bool skip;	 /* the message being parsed has no exchange */
};

struct ws_http_conn {
	struct ws_http_spans *b;
	struct ws_http_conn_info info;
	struct side side[2]; /* by enum ws_dir */
	bool roles_known;
	struct xch *fifo; /* waiting for their final response */
	unsigned n_fifo;
	uint64_t requests; /* request heads seen */
	/* request heads read or written, tracked or not: the index of an
	 * exchange on its connection, which both ends count alike */
	uint64_t seq;
	struct proc *proc; /* client connections: counted in their process */
	bool idle;	   /* a client connection with nothing in flight */
};

struct ws_http_spans {
	struct ws_http_spans_cfg cfg;
	ws_span_emit_fn emit;
	void *ctx;
	struct xch *age;
	unsigned n_open;
	struct proc *procs;
	struct xch
		*hops; /* by hop: exchanges whose other end is not seen yet */
	struct thr *thrs;  /* by tid: threads that just read a request */
	struct held *held; /* by tid: calls waiting for their evidence */
	struct gor *gors;  /* Go runtime evidence, oldest first */
	unsigned n_gors;
	/* "http.request.header.<name>" per capture header (NULL: refused) */
	char *capture_keys[WS_AUTH_MAX_HEADERS];
	/* parser counters of the open connections (for stats) */
	struct ws_http_conn **live;
	size_t n_live, cap_live;
	struct ws_http_spans_stats st, snap;
};

static const struct ws_http_cb msg_cb;

void ws_http_spans_cfg_init(struct ws_http_spans_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->request_timeout_ns = 60ull * 1000000000ull;
	cfg->max_pending_conn = WS_HTTP_MAX_PIPELINE;
	cfg->max_pending = 16384;
	cfg->max_link_candidates = 512;
	cfg->max_go_facts = 65536;
	cfg->link_heuristic = true;
	ws_http_auth_cfg_init(&cfg->auth);
}

/* ---- strings ------------------------------------------------------------ */

static size_t copy_str(char *dst, size_t cap, const char *s, size_t len)
{
	size_t n = len < cap - 1 ? len : cap - 1;

	memcpy(dst, s, n);
	dst[n] = '\0';
	return n;
}

static const struct ws_http_str *hdr(const struct ws_http_msg *m,
				     const char *name)
{
	const struct ws_http_header *h =
		ws_http_header_find(&m->headers, name, NULL);

	return h ? &h->value : NULL;
}

/* ---- routes ------------------------------------------------------------- */

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	       (c >= 'A' && c <= 'F');
}

static bool is_uuid(const char *s, size_t n)
{
	size_t i;

	if (n != 36)
		return false;
	for (i = 0; i < n; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!is_hex(s[i])) {
			return false;
		}
	}
	return true;
}

/*
 * A segment that names one thing among many: numbers, UUIDs, hex ids of 8
 * or more digits, tokens of 16+ characters with a digit, anything of 32+
 * characters, e-mail addresses.
 */
static bool is_id_segment(const char *s, size_t n)
{
	size_t i, digits = 0, hex = 0;

	if (!n)
		return false;
	if (n >= 32 || is_uuid(s, n) || memchr(s, '@', n))
		return true;
	for (i = 0; i < n; i++) {
		digits += s[i] >= '0' && s[i] <= '9';
		hex += is_hex(s[i]);
	}
	if (digits == n)
		return true;
	if (n >= 8 && hex == n && digits)
		return true;
	return n >= 16 && digits;
}

/* Next path segment of [*p, end): sets seg/len, moves *p past it. */
static bool next_seg(const char **p, const char *end, const char **seg,
		     size_t *len)
{
	const char *s = *p, *e;

	while (s < end && *s == '/')
		s++;
	if (s >= end)
		return false;
	e = memchr(s, '/', (size_t)(end - s));
	if (!e)
		e = end;
	*seg = s;
	*len = (size_t)(e - s);
	*p = e;
	return true;
}

static bool pattern_match(const char *pat, const char *path, size_t len)
{
	const char *pp = pat, *pend = pat + strlen(pat), *sp = path,
		   *send = path + len, *ps, *ss;
	size_t pl, sl;

	for (;;) {
		bool have_p = next_seg(&pp, pend, &ps, &pl);
		bool have_s = next_seg(&sp, send, &ss, &sl);

		if (have_p && pl == 1 && *ps == '*' && pp == pend)
			return true;
		if (!have_p || !have_s)
			return have_p == have_s;
		if (pl >= 2 && ps[0] == '{' && ps[pl - 1] == '}')
			continue;
		if (pl != sl || memcmp(ps, ss, pl))
			return false;
	}
}

bool ws_http_route(const struct ws_http_spans_cfg *cfg, const char *path,
		   size_t len, char *out, size_t cap)
{
	const char *p = path, *end = path + len, *seg;
	size_t n = 0, sl;
	unsigned i, segs = 0;

	for (i = 0; cfg && i < cfg->n_routes; i++) {
		if (pattern_match(cfg->routes[i], path, len)) {
			snprintf(out, cap, "%s", cfg->routes[i]);
			return true;
		}
	}
	out[0] = '\0';
	if (len && path[0] != '/') {
		/* "*" (OPTIONS) or an authority (CONNECT) */
		snprintf(out, cap, "%s",
			 len == 1 && path[0] == '*' ? "*" : "/");
		return false;
	}
	while (next_seg(&p, end, &seg, &sl)) {
		const char *add = seg;
		size_t alen = sl;

		if (++segs > WS_HTTP_MAX_SEGMENTS) {
			add = "*";
			alen = 1;
		} else if (is_id_segment(seg, sl)) {
			add = "{id}";
			alen = 4;
		}
		if (n + alen + 2 > cap || n + alen + 1 > WS_HTTP_MAX_ROUTE) {
			add = "*";
			alen = 1;
			if (n + 3 > cap)
				break;
			segs = WS_HTTP_MAX_SEGMENTS + 1;
		}
		out[n++] = '/';
		memcpy(out + n, add, alen);
		n += alen;
		out[n] = '\0';
		if (segs > WS_HTTP_MAX_SEGMENTS)
			break;
	}
	if (!n) {
		snprintf(out, cap, "/");
		return false;
	}
	/* keep a trailing slash: "/a/" and "/a" are different routes */
	if (len > 1 && path[len - 1] == '/' && segs <= WS_HTTP_MAX_SEGMENTS &&
	    n + 2 <= cap) {
		out[n++] = '/';
		out[n] = '\0';
	}
	return false;
}

/* ---- query redaction ---------------------------------------------------- */

void ws_http_redact_query(const char *q, size_t len, char *out, size_t cap)
{
	ws_redact_query(NULL, q, len, out, cap);
}

/* ---- processes (open inbound requests, for linking) --------------------- */

static struct proc *proc_get(struct ws_http_spans *b, uint32_t tgid,
			     bool create)
{
	struct proc *p;

	HASH_FIND(hh, b->procs, &tgid, sizeof(tgid), p);
	if (p || !create)
		return p;
	p = calloc(1, sizeof(*p));
	if (!p) {
		b->st.nomem++;
		return NULL;
	}
	p->tgid = tgid;
	HASH_ADD(hh, b->procs, tgid, sizeof(p->tgid), p);
	return p;
}

static void proc_put(struct ws_http_spans *b, struct proc *p)
{
	if (p && !p->n && !p->clients) {
		HASH_DEL(b->procs, p);
		free(p);
	}
}

static void proc_remove(struct ws_http_spans *b, struct xch *x)
{
	struct proc *p = x->proc;

	if (!p)
		return;
	DL_DELETE2(p->open, x, pprev, pnext);
	x->proc = NULL;
	p->n--;
	proc_put(b, p);
}

/* A client connection has (idle) or has not something in flight. */
static void client_idle(struct ws_http_conn *hc, bool idle)
{
	if (!hc->proc || hc->idle == idle)
		return;
	hc->idle = idle;
	if (idle)
		hc->proc->idle++;
	else
		hc->proc->idle--;
}

/* ---- threads that just read an inbound request ------------------------- */

static void thr_drop(struct ws_http_spans *b, struct thr *t)
{
	t->x->thr = NULL;
	HASH_DEL(b->thrs, t);
	free(t);
}

static struct thr *thr_find(struct ws_http_spans *b, uint32_t tid)
{
	struct thr *t = NULL;

	if (b->thrs)
		HASH_FIND(hh, b->thrs, &tid, sizeof(tid), t);
	return t;
}

/* Thread tid just read the head of inbound request x. */
static void thr_read(struct ws_http_spans *b, uint32_t tid, struct xch *x)
{
	struct thr *t = thr_find(b, tid);

	if (t) {
		t->x->thr = NULL;
	} else {
		t = malloc(sizeof(*t));
		if (!t) {
			b->st.nomem++;
			return;
		}
		t->tid = tid;
		HASH_ADD(hh, b->thrs, tid, sizeof(t->tid), t);
	}
	t->x = x;
	x->thr = t;
}

/* ---- Go runtime evidence ------------------------------------------------ */

static struct gor *go_find(struct ws_http_spans *b, uint32_t tgid,
			   uint32_t kind, uint64_t v)
{
	struct gor_key k;
	struct gor *e = NULL;

	memset(&k, 0, sizeof(k));
	k.tgid = tgid;
	k.kind = kind;
	k.v = v;
	if (b->gors)
		HASH_FIND(hh, b->gors, &k, sizeof(k), e);
	return e;
}

static void go_del(struct ws_http_spans *b, struct gor *e)
{
	HASH_DEL(b->gors, e);
	b->n_gors--;
	free(e);
}

/* Record a fact (replacing the one of the same key, made the newest). */
static void go_put(struct ws_http_spans *b, uint32_t tgid, uint32_t kind,
		   uint64_t v, const uint8_t span[8])
{
	struct gor *e = go_find(b, tgid, kind, v);

	if (e)
		go_del(b, e);
	if (!b->cfg.max_go_facts) {
		b->st.go_evicted++;
		return;
	}
	if (b->n_gors >= b->cfg.max_go_facts) {
		go_del(b, b->gors); /* the oldest */
		b->st.go_evicted++;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		b->st.nomem++;
		return;
	}
	e->k.tgid = tgid;
	e->k.kind = kind;
	e->k.v = v;
	memcpy(e->span, span, 8);
	HASH_ADD(hh, b->gors, k, sizeof(e->k), e);
	b->n_gors++;
}

/* Take (remove) a fact: true and its span, or false. */
static bool go_take(struct ws_http_spans *b, uint32_t tgid, uint32_t kind,
		    uint64_t v, uint8_t span[8])
{
	struct gor *e = go_find(b, tgid, kind, v);

	if (!e)
		return false;
	memcpy(span, e->span, 8);
	go_del(b, e);
	return true;
}

void ws_http_spans_go(struct ws_http_spans *b, uint32_t tgid, uint8_t kind,
		      uint64_t g, uint64_t req)
{
	struct gor *e;
	uint8_t span[8];

	if (!b || !g || !req) {
		if (b)
			b->st.go_bad++;
		return;
	}
	switch (kind) {
	case WS_GO_ROUND_TRIP:
		/* the handler's inbound request, as of this hand-over */
		b->st.go_round_trips++;
		e = go_find(b, tgid, GO_IN, g);
		if (e)
			go_put(b, tgid, GO_SENT, req, e->span);
		else if ((e = go_find(b, tgid, GO_SENT, req)))
			go_del(b, e); /* an older request at that address */
		break;
	case WS_GO_REQ_WRITE:
		e = go_find(b, tgid, GO_UP, g);
		/* the same write again: the function ran its prologue twice
		 * (the stack grew), or a retry on the same goroutine */
		if (e && e->req == req)
			break;
		b->st.go_writes++;
		if (go_take(b, tgid, GO_SENT, req, span)) {
			go_put(b, tgid, GO_UP, g, span);
			e = go_find(b, tgid, GO_UP, g);
			if (e)
				e->req = req;
		} else {
			b->st.go_unmatched++;
			if (e)
				go_del(b, e);
		}
		break;
	default:
		b->st.go_bad++;
		break;
	}
}

static void go_free_all(struct ws_http_spans *b)
{
	struct gor *e, *tmp;

	HASH_ITER (hh, b->gors, e, tmp) {
		go_del(b, e);
	}
}

/* ---- link counters ------------------------------------------------------ */

static uint64_t *link_counter(struct ws_http_spans *b, enum link_ev ev)
{
	switch (ev) {
	case LINK_TRACEPARENT:
		return &b->st.link_traceparent;
	case LINK_THREAD:
		return &b->st.link_thread;
	case LINK_HEURISTIC:
		return &b->st.link_heuristic;
	case LINK_THREAD_ORDER:
		return &b->st.link_thread_order;
	case LINK_DIAL:
		return &b->st.link_dial;
	case LINK_QUEUE:
		return &b->st.link_queue;
	case LINK_AMBIGUOUS:
		return &b->st.link_ambiguous;
	case LINK_RESPONSE_THREAD:
		return &b->st.link_response_thread;
	case LINK_GOROUTINE:
		return &b->st.link_goroutine;
	case LINK_NONE:
		break;
	}
	return &b->st.link_none;
}

/* ---- ending exchanges --------------------------------------------------- */

static void emit(struct ws_http_spans *b, struct ws_span *s)
{
	if (s->kind < 6)
		b->st.spans[s->kind]++;
	b->emit(b->ctx, s);
}

/* Emit a call and the same-host server span that follows its trace. */
static void emit_with_dep(struct ws_http_spans *b, struct ws_span *s,
			  struct ws_span *dep)
{
	emit(b, s);
	if (dep) {
		memcpy(dep->trace_id, s->trace_id, 16);
		emit(b, dep);
	}
}

static struct held *held_find(struct ws_http_spans *b, uint32_t tid)
{
	struct held *h = NULL;

	if (b->held)
		HASH_FIND(hh, b->held, &tid, sizeof(tid), h);
	return h;
}

/* End the wait: an open call keeps its link and is emitted at its end;
 * an ended one goes out now. */
static void held_emit(struct ws_http_spans *b, struct held *h)
{
	HASH_DEL(b->held, h);
	if (h->x) {
		h->x->held = NULL;
		h->x->relink = false;
	} else {
		ws_attrs_cstr(&h->span->a, "wirespan.link.evidence",
			      link_ev_name[h->ev]);
		emit_with_dep(b, h->span, h->dep);
	}
	free(h);
}

/* Thread tid read the response head of x, linked by weak evidence. */
static void held_watch(struct ws_http_spans *b, struct xch *x, uint32_t tid,
		       uint64_t ts)
{
	struct held *h = held_find(b, tid);

	if (h)
		held_emit(b, h);
	if (x->held)
		held_emit(b, x->held);
	h = calloc(1, sizeof(*h));
	if (!h) {
		b->st.nomem++;
		x->relink = false;
		return;
	}
	h->tid = tid;
	h->tgid = x->hc->info.tgid;
	h->x = x;
	h->ev = x->link_ev;
	h->since = ts;
	x->held = h;
	HASH_ADD(hh, b->held, tid, sizeof(h->tid), h);
}

/* x, still watched, ended: its span waits. */
static void held_keep(struct xch *x, struct ws_span *s)
{
	struct held *h = x->held;

	h->x = NULL;
	h->span = s;
	h->dep = x->dep_span;
	h->since = s->end_ns;
	x->dep_span = NULL;
	x->held = NULL;
}

/*
 * Thread tid writes the response head of inbound request x: the call
 * watched for tid is x's (the response-thread evidence). The guessed
 * parent, if another, counts as not linked again.
 */
static void held_settle(struct ws_http_spans *b, uint32_t tid, struct xch *x)
{
	struct held *h = held_find(b, tid);
	struct ws_span *s = h ? (h->x ? h->x->span : h->span) : NULL;
	struct proc *p;
	struct xch *c;
	bool same;

	if (!h)
		return;
	same = s && x->span && !memcmp(s->parent_span_id, x->span->span_id, 8);
	/* a request already linked by strong evidence is not taken */
	if (!s || h->tgid != x->hc->info.tgid || !x->span ||
	    x->head_ns > s->start_ns || (x->children > x->weak && !same)) {
		held_emit(b, h);
		return;
	}
	if (!same) {
		p = proc_get(b, h->tgid, false);
		for (c = p ? p->open : NULL; c; c = c->pnext)
			if (c->span && c->weak &&
			    !memcmp(c->span->span_id, s->parent_span_id, 8)) {
				c->children--;
				c->weak--;
				break;
			}
		x->children++;
		ws_span_set_parent(s, x->span->trace_id, x->span->span_id);
	} else if (x->weak) {
		x->weak--; /* confirmed */
	}
	(*link_counter(b, h->ev))--;
	b->st.link_response_thread++;
	h->ev = LINK_RESPONSE_THREAD;
	if (h->x) {
		/* still open: it goes out at its end, settled */
		h->x->link_ev = LINK_RESPONSE_THREAD;
		ws_attrs_cstr(&s->a, "wirespan.link.evidence",
			      link_ev_name[LINK_RESPONSE_THREAD]);
		if (h->x->dep && h->x->dep->span)
			memcpy(h->x->dep->span->trace_id, s->trace_id, 16);
	}
	held_emit(b, h);
}

static void set_error(struct ws_span *s, const char *type)
{
	if (!ws_attrs_get(&s->a, "error.type"))
		ws_attrs_cstr(&s->a, "error.type", type);
	s->status = WS_STATUS_ERROR;
}

/* End x's span (if it still has one). The exchange itself is freed by
 * xch_free once its response came or the connection went. */
static void xch_end_span(struct xch *x, uint64_t end_ns, enum end_why why)
{
	struct ws_http_spans *b = x->hc->b;
	struct ws_span *s = x->span;

	if (x->thr)
		thr_drop(b, x->thr);
	if (!s)
		return;
	x->span = NULL;
	DL_DELETE2(b->age, x, aprev, anext);
	b->n_open--;
	proc_remove(b, x);
	switch (why) {
	case END_RESPONSE:
		b->st.end_response++;
		break;
	case END_CLOSED:
		b->st.end_closed++;
		set_error(s, "connection_closed");
		break;
	case END_TIMEOUT:
		b->st.end_timeout++;
		set_error(s, "timeout");
		break;
	case END_EVICTED:
		b->st.end_evicted++;
		set_error(s, "wirespan_evicted");
		break;
	}
	s->end_ns = end_ns > s->start_ns ? end_ns : s->start_ns;
	if (x->follows && !x->follows->dep_span) {
		/* a same-host server span whose caller may be relinked:
		 * it goes out with the caller, in the caller's trace */
		x->follows->dep_span = s;
		x->follows->dep = NULL;
		x->follows = NULL;
		return;
	}
	if (x->held) {
		if (why == END_RESPONSE) {
			held_keep(x, s);
			return;
		}
		held_emit(b, x->held);
	}
	emit_with_dep(b, s, x->dep_span);
	x->dep_span = NULL;
}

static void xch_free(struct xch *x)
{
	struct ws_http_conn *hc = x->hc;
	int d;

	if (x->in_hops)
		HASH_DEL(hc->b->hops, x);
	if (x->thr)
		thr_drop(hc->b, x->thr);
	if (x->dep)
		x->dep->follows = NULL;
	if (x->follows)
		x->follows->dep = NULL;
	if (x->dep_span)
		emit(hc->b, x->dep_span);
	if (x->held)
		held_emit(hc->b, x->held);
	DL_DELETE(hc->fifo, x);
	hc->n_fifo--;
	for (d = 0; d < 2; d++)
		if (hc->side[d].cur == x)
			hc->side[d].cur = NULL;
	free(x);
	if (!hc->n_fifo)
		client_idle(hc, true);
}

/* ---- attributes --------------------------------------------------------- */

/* host[:port] of a Host header; IPv6 literals in brackets. */
static void split_host(struct ws_http_str v, char *host, size_t cap, int *port)
{
	const char *colon = NULL;
	size_t i, hl = v.len;

	*port = -1;
	if (v.len && v.ptr[0] == '[') {
		const char *rb = memchr(v.ptr, ']', v.len);

		if (rb) {
			copy_str(host, cap, v.ptr + 1,
				 (size_t)(rb - v.ptr - 1));
			if (rb + 1 < v.ptr + v.len && rb[1] == ':')
				colon = rb + 1;
			hl = 0;
		}
	} else {
		colon = memchr(v.ptr, ':', v.len);
		if (colon)
			hl = (size_t)(colon - v.ptr);
	}
	if (hl || !v.len || v.ptr[0] != '[')
		copy_str(host, cap, v.ptr, hl);
	if (colon) {
		int p = 0;
		size_t n = (size_t)(v.ptr + v.len - colon - 1);

		for (i = 0; i < n && i < 5; i++) {
			char c = colon[1 + i];

			if (c < '0' || c > '9')
				return;
			p = p * 10 + (c - '0');
		}
		if (n && n <= 5 && p > 0 && p < 65536)
			*port = p;
	}
}

/* W3C traceparent "00-<32 hex>-<16 hex>-<2 hex>". */
static bool parse_traceparent(const struct ws_http_str *v, uint8_t trace[16],
			      uint8_t span[8], uint8_t *flags)
{
	if (!v || v->len < 55 || v->ptr[2] != '-' || v->ptr[35] != '-' ||
	    v->ptr[52] != '-' || ws_id_parse(v->ptr, 2, flags, 1) ||
	    ws_id_parse(v->ptr + 3, 32, trace, 16) ||
	    ws_id_parse(v->ptr + 36, 16, span, 8) ||
	    ws_id_parse(v->ptr + 53, 2, flags, 1))
		return false;
	return !ws_id_is_zero(trace, 16) && !ws_id_is_zero(span, 8);
}

static const char *method_text(const struct ws_http_msg *m, char *buf,
			       size_t cap)
{
	if (m->method != WS_HTTP_M_OTHER)
		return ws_http_method_name(m->method);
	copy_str(buf, cap, m->method_name.ptr, m->method_name.len);
	return buf;
}

static void put_common(struct ws_http_conn *hc, struct ws_span *s,
		       const struct ws_http_msg *m, uint32_t tid)
{
	const struct ws_http_conn_info *in = &hc->info;
	const struct ws_http_str *ua = hdr(m, "User-Agent");
	char mb[WS_HTTP_MAX_METHOD + 1];

	s->domain = WS_DOMAIN_HTTP;
	ws_span_set_resource(s, in->resource);
	if (m->method == WS_HTTP_M_OTHER) {
		ws_attrs_cstr(&s->a, "http.request.method", "_OTHER");
		ws_attrs_cstr(&s->a, "http.request.method_original",
			      method_text(m, mb, sizeof(mb)));
	} else {
		ws_attrs_cstr(&s->a, "http.request.method",
			      ws_http_method_name(m->method));
	}
	ws_attrs_cstr(&s->a, "network.protocol.name", "http");
	ws_attrs_cstr(&s->a, "network.protocol.version",
		      m->version == 10 ? "1.0" : "1.1");
	ws_attrs_cstr(&s->a, "network.transport", "tcp");
	ws_attrs_cstr(&s->a, "network.peer.address", in->raddr);
	ws_attrs_int(&s->a, "network.peer.port", in->rport);
	ws_attrs_cstr(&s->a, "network.local.address", in->laddr);
	ws_attrs_int(&s->a, "network.local.port", in->lport);
	/* the relay joins client and server spans on the 5-tuple and this
	 * (docs/RELAY.md, Stitching); unknown when followed from the middle */
	if (!in->preexisting && hc->seq)
		ws_attrs_int(&s->a, "wirespan.http.conn.seq",
			     (int64_t)(hc->seq - 1));
	if (ua)
		ws_attrs_str(&s->a, "user_agent.original", ua->ptr, ua->len);
	ws_attrs_int(&s->a, "thread.id", tid);
}

static void put_captured(struct ws_http_spans *b, struct ws_span *s,
			 const struct ws_http_msg *m)
{
	unsigned i;

	for (i = 0; i < b->cfg.n_capture_headers; i++) {
		const struct ws_http_header *h = NULL;
		char val[WS_SPAN_MAX_STR];
		size_t n = 0;

		if (!b->capture_keys[i])
			continue;
		while ((h = ws_http_header_find(
				&m->headers, b->cfg.capture_headers[i], h))) {
			int w = snprintf(val + n, sizeof(val) - n, "%s%.*s",
					 n ? "," : "", (int)h->value.len,
					 h->value.ptr);

			if (w < 0 || (size_t)w >= sizeof(val) - n) {
				n = sizeof(val) - 1;
				break;
			}
			n += (size_t)w;
		}
		if (n)
			ws_attrs_str(&s->a, b->capture_keys[i], val, n);
	}
}

/* client.address from X-Forwarded-For (its first entry) on the server side. */
static void put_client_address(struct ws_http_conn *hc, struct ws_span *s,
			       const struct ws_http_msg *m)
{
	const struct ws_http_str *xff = hdr(m, "X-Forwarded-For");

	if (xff && xff->len) {
		const char *c = memchr(xff->ptr, ',', xff->len);
		struct ws_http_str first = {xff->ptr, c ? (size_t)(c - xff->ptr)
							: xff->len};

		while (first.len && first.ptr[first.len - 1] == ' ')
			first.len--;
		if (first.len) {
			ws_attrs_str(&s->a, "client.address", first.ptr,
				     first.len);
			return;
		}
	}
	ws_attrs_cstr(&s->a, "client.address", hc->info.raddr);
	ws_attrs_int(&s->a, "client.port", hc->info.rport);
}

static void put_server_address(struct ws_http_conn *hc, struct ws_span *s,
			       const struct ws_http_msg *m, bool server)
{
	const struct ws_http_str *host = hdr(m, "Host");
	char h[256];
	int port = -1;

	if (host && host->len) {
		split_host(*host, h, sizeof(h), &port);
		if (*h)
			ws_attrs_cstr(&s->a, "server.address", h);
	} else {
		ws_attrs_cstr(&s->a, "server.address",
			      server ? hc->info.laddr : hc->info.raddr);
	}
	if (port < 0)
		port = server ? hc->info.lport : hc->info.rport;
	ws_attrs_int(&s->a, "server.port", port);
}

static void put_url(const struct ws_redact *r, struct ws_span *s,
		    const struct ws_http_msg *m, const char *authority)
{
	char path[MAX_URL], q[MAX_URL], url[MAX_URL];

	ws_redact_path(m->path.ptr, m->path.len, path, sizeof(path));
	ws_attrs_cstr(&s->a, "url.path", path);
	if (m->query.len) {
		ws_redact_query(r, m->query.ptr, m->query.len, q, sizeof(q));
		ws_attrs_cstr(&s->a, "url.query", q);
	} else {
		q[0] = '\0';
	}
	ws_attrs_cstr(&s->a, "url.scheme", "http");
	if (authority) {
		snprintf(url, sizeof(url), "http://%s%.*s%s%s", authority,
			 (int)strlen(path), path, *q ? "?" : "", q);
		ws_attrs_cstr(&s->a, "url.full", url);
	}
}

/* ---- exchanges ---------------------------------------------------------- */

static uint64_t msg_start_ts(const struct side *sd, const struct ws_http_msg *m)
{
	if (m->start_off >= sd->feed_base || !sd->carry_ts)
		return sd->feed_ts;
	return sd->carry_ts;
}

/* The ids of the traceparent the gateway forwards name a trace: which open
 * inbound requests of the process are in it (their span continues it). */
static bool in_trace(const struct xch *c, const uint8_t trace[16])
{
	return c->span && !memcmp(c->span->trace_id, trace, 16);
}

/* The last entry of X-Forwarded-For: the gateway's own peer. */
static struct ws_http_str xff_last(const struct ws_http_msg *m)
{
	const struct ws_http_header *h = NULL, *last = NULL;
	struct ws_http_str v = {NULL, 0};
	const char *c;

	while ((h = ws_http_header_find(&m->headers, "X-Forwarded-For", h)))
		last = h;
	if (!last)
		return v;
	v = last->value;
	c = memrchr(v.ptr, ',', v.len);
	if (c) {
		v.len -= (size_t)(c + 1 - v.ptr);
		v.ptr = c + 1;
	}
	while (v.len && *v.ptr == ' ') {
		v.ptr++;
		v.len--;
	}
	return v;
}

/* How alike an upstream request and an inbound one are. */
static int similarity(const struct xch *c, const struct ws_http_msg *m,
		      const struct ws_http_str *rid, struct ws_http_str xff)
{
	size_t cl = strlen(c->path), ul = m->path.len, n;
	const char *peer = c->hc->info.raddr;
	int score = 0;

	if (rid && rid->len && *c->rid && rid->len == strlen(c->rid) &&
	    !memcmp(rid->ptr, c->rid, rid->len))
		score += 100;
	/* the gateway appended the address of the client it serves */
	if (xff.len && xff.len == strlen(peer) &&
	    !memcmp(xff.ptr, peer, xff.len))
		score += 1;
	if (c->method == m->method)
		score += 8;
	if (cl == ul && !memcmp(c->path, m->path.ptr, ul)) {
		score += 4;
	} else {
		/* a prefix rewrite keeps the tail: "/api/v1/users/7" ->
		 * "/users/7" or the other way round */
		n = cl < ul ? cl : ul;
		if (n > 1 &&
		    !memcmp(c->path + cl - n, m->path.ptr + ul - n, n) &&
		    (c->path[cl - n] == '/' || m->path.ptr[ul - n] == '/'))
			score += 2;
	}
	return score;
}

/* Rank of a candidate parent, compared field by field, biggest wins. */
struct rank {
	int64_t v[6];
};

static int rank_cmp(const struct rank *a, const struct rank *b)
{
	int i;

	for (i = 0; i < 6; i++)
		if (a->v[i] != b->v[i])
			return a->v[i] < b->v[i] ? -1 : 1;
	return 0;
}

/*
 * Rank a candidate parent c of the upstream call x: likeness first, then
 * not linked yet, then the pick of the order rules (link_upstream), then
 * timing as before the order rules: a fresh connection (made at
 * connect_ns) was made for the newest request read before it; on a reused
 * connection a request read while the process had an idle upstream
 * connection was sent at once (the newest, by the same thread first), one
 * read while none was idle queued, and queues are served oldest first.
 */
static void rank_candidate(const struct xch *c, const struct xch *x,
			   int64_t likeness, const struct xch *pick,
			   uint64_t connect_ns, struct rank *r)
{
	bool at_once = connect_ns ? c->head_ns <= connect_ns : c->idle_at_read;

	r->v[0] = likeness;
	r->v[1] = c->children == 0;
	r->v[2] = c == pick;
	r->v[3] = at_once;
	r->v[4] = at_once && c->tid == x->tid;
	r->v[5] = at_once ? (int64_t)c->head_ns : -(int64_t)c->head_ns;
}

/* The open inbound requests of p that may be the parent of x. */
static bool is_candidate(const struct xch *c, const struct xch *x, int n_tp,
			 const uint8_t trace[16])
{
	return c->head_ns <= x->start_ns && c->span &&
	       (!n_tp || in_trace(c, trace));
}

/*
 * The goroutine evidence for upstream call x: the goroutine that wrote it
 * ran Request.write for a request a handler goroutine handed over while
 * its inbound request was c. The fact is used up.
 */
static struct xch *go_parent(struct ws_http_spans *b, struct proc *p,
			     const struct xch *x, int n_tp,
			     const uint8_t trace[16])
{
	uint8_t span[8];
	struct xch *c;

	if (!x->g || !go_take(b, p->tgid, GO_UP, x->g, span))
		return NULL;
	DL_FOREACH2(p->open, c, pnext)
	{
		if (is_candidate(c, x, n_tp, trace) &&
		    !memcmp(c->span->span_id, span, 8))
			return c;
	}
	b->st.go_stale++; /* that inbound request is gone */
	return NULL;
}

/*
 * Find the inbound request of this process that an upstream call serves.
 * Candidates: open inbound requests read before the call began. If the
 * call carries a traceparent whose trace some candidates continue, only
 * those. Ranked by likeness (X-Request-Id, the gateway's X-Forwarded-For
 * entry, method, path), then not linked yet, then by the order rules:
 *   goroutine     (Go, right after traceparent) the goroutine that wrote
 *                 the call ran Request.write for the request a handler
 *                 goroutine handed over (roundTrip) while that handler's
 *                 last inbound request was the candidate (go_parent)
 *   thread_order  the request the calling thread read last, with no other
 *                 HTTP event on that thread since (struct thr)
 *   dial          the first request on a fresh connection: the request
 *                 the connecting thread read last before the connect, if
 *                 not linked yet (an event loop connects from the
 *                 handler; Go's dialing goroutine runs on the thread of
 *                 the handler that asked for it)
 *   queue         otherwise the oldest request not linked yet, when it is
 *                 the only one waiting (read, and its thread moved on);
 *                 with more waiting the pick is the oldest (Go's
 *                 transport serves waiters oldest first) but "ambiguous"
 * A link that likeness does not decide and no order rule picks is
 * "ambiguous".
 */
static enum link_ev link_upstream(struct ws_http_conn *hc, struct xch *x,
				  const struct ws_http_msg *m, struct xch **out)
{
	struct ws_http_spans *b = hc->b;
	struct proc *p = proc_get(b, hc->info.tgid, false);
	const struct ws_http_str *rid = hdr(m, "X-Request-Id");
	struct ws_http_str xff = xff_last(m);
	uint8_t trace[16], span[8], fl;
	bool have_tp =
		parse_traceparent(hdr(m, "traceparent"), trace, span, &fl);
	struct thr *t = thr_find(b, x->tid);
	struct xch *c, *best = NULL, *pick = NULL, *dial = NULL, *oldest = NULL;
	struct rank r, best_r = {{0}};
	unsigned seen = 0, n_tp = 0, n_thread = 0, n_top = 0, n_wait = 0;
	enum link_ev pick_ev = LINK_AMBIGUOUS;
	int64_t like, top = -1, low = INT64_MAX;
	uint64_t connect_ns = 0;

	*out = NULL;
	if (!p)
		return LINK_NONE;
	if (have_tp) {
		DL_FOREACH2(p->open, c, pnext)
		{
			n_tp += in_trace(c, trace) && c->head_ns <= x->start_ns;
		}
	}
	/* right after traceparent: the goroutine that wrote the call */
	if (n_tp != 1 && (c = go_parent(b, p, x, n_tp, trace))) {
		*out = c;
		return LINK_GOROUTINE;
	}
	if (!n_tp && !b->cfg.link_heuristic)
		return LINK_NONE;
	if (n_tp != 1 && hc->requests == 1 && hc->info.open_ns &&
	    !hc->info.preexisting && hc->info.open_ns < x->start_ns)
		connect_ns = hc->info.open_ns;
	/* the order rules' picks: oldest first */
	DL_FOREACH2(p->open, c, pnext)
	{
		if (!is_candidate(c, x, n_tp, trace))
			continue;
		/* the request read last before the connect, by the
		 * connecting thread when known */
		if (connect_ns && c->head_ns <= connect_ns &&
		    (!hc->info.open_tid || c->tid == hc->info.open_tid))
			dial = c;
		if (c->children)
			continue;
		if (!oldest)
			oldest = c;
		n_wait += !c->thr;
	}
	if (dial && !dial->children) {
		/* first, so that an event loop's request read after the
		 * connect (no HTTP event in between) is not taken */
		pick = dial;
		pick_ev = LINK_DIAL;
	} else if (t && t->x->proc == p && is_candidate(t->x, x, n_tp, trace)) {
		pick = t->x;
		pick_ev = LINK_THREAD_ORDER;
	} else if (oldest && n_wait == 1) {
		pick = oldest;
		pick_ev = LINK_QUEUE;
	}
	/* else the timing ranks decide, and the link is ambiguous */
	/* newest first: the list is oldest first */
	for (c = p->open ? p->open->pprev : NULL; c;
	     c = c == p->open ? NULL : c->pprev) {
		if (!is_candidate(c, x, n_tp, trace))
			continue;
		if (++seen > b->cfg.max_link_candidates) {
			b->st.link_candidates_cut++;
			break;
		}
		n_thread += c->tid == x->tid;
		like = similarity(c, m, rid, xff);
		if (like < low)
			low = like;
		if (!c->children) {
			if (like > top) {
				top = like;
				n_top = 0;
			}
			n_top += like == top;
		}
		rank_candidate(c, x, like, pick, connect_ns, &r);
		if (!best || rank_cmp(&r, &best_r) > 0) {
			best = c;
			best_r = r;
		}
	}
	if (!best)
		return LINK_NONE;
	*out = best;
	if (n_tp == 1)
		return LINK_TRACEPARENT;
	/* the only open request, or likeness decides: one request not linked
	 * yet is more alike than others */
	if (seen == 1 ||
	    (n_top == 1 && top > low && best_r.v[1] && best_r.v[0] == top))
		return LINK_HEURISTIC;
	/* the one request this thread has open: thread per request */
	if (best->tid == x->tid && n_thread == 1)
		return LINK_THREAD;
	if (best == pick)
		return pick_ev;
	return LINK_AMBIGUOUS;
}

static void link_client(struct ws_http_conn *hc, struct xch *x,
			const struct ws_http_msg *m)
{
	struct ws_http_spans *b = hc->b;
	struct ws_span *s = x->span;
	uint8_t trace[16], span[8], fl;
	bool have_tp =
		parse_traceparent(hdr(m, "traceparent"), trace, span, &fl);
	struct xch *parent;
	enum link_ev ev = link_upstream(hc, x, m, &parent);
	struct thr *t = thr_find(b, x->tid);

	/* the calling thread has done something else since its read */
	if (t)
		thr_drop(b, t);

	(*link_counter(b, ev))++;
	x->link_ev = (uint8_t)ev;
	x->relink = ev == LINK_QUEUE || ev == LINK_AMBIGUOUS;
	if (parent) {
		parent->children++;
		parent->weak += x->relink;
		ws_span_set_parent(s, parent->span->trace_id,
				   parent->span->span_id);
		ws_attrs_cstr(&s->a, "wirespan.link.evidence",
			      link_ev_name[ev]);
		/* a traceparent naming another span of the trace (the
		 * gateway's own instrumentation) is kept as a link */
		if (have_tp && !memcmp(trace, s->trace_id, 16) &&
		    memcmp(span, parent->span->span_id, 8) &&
		    !(parent->has_in_parent &&
		      !memcmp(span, parent->in_parent, 8)))
			ws_span_add_link(s, trace, span, fl);
		return;
	}
	if (have_tp) {
		/* the calling application's own span */
		ws_span_set_parent(s, trace, span);
		s->flags = fl | 0x300;
	}
}

static void put_traceparent_in(struct ws_http_conn *hc, struct xch *x,
			       const struct ws_http_msg *m)
{
	const struct ws_http_str *tp = hdr(m, "traceparent"),
				 *ts = hdr(m, "tracestate");
	struct ws_span *s = x->span;
	uint8_t trace[16], span[8], fl;

	if (!tp)
		return;
	if (!parse_traceparent(tp, trace, span, &fl)) {
		hc->b->st.bad_traceparent++;
		return;
	}
	hc->b->st.traceparent_in++;
	ws_span_set_parent(s, trace, span);
	s->flags = fl | 0x300; /* the parent is remote */
	memcpy(x->in_parent, span, 8);
	x->has_in_parent = true;
	if (ts && ts->len) {
		free(s->trace_state);
		s->trace_state = strndup(ts->ptr, ts->len);
	}
}

static void name_span(struct ws_http_conn *hc, struct xch *x,
		      const struct ws_http_msg *m, bool server)
{
	struct ws_http_spans *b = hc->b;
	char route[WS_HTTP_MAX_ROUTE + 8], name[WS_HTTP_MAX_ROUTE + 48];
	const char *meth = m->method == WS_HTTP_M_OTHER
				   ? "HTTP"
				   : ws_http_method_name(m->method);
	bool explicit = ws_http_route(&b->cfg, m->path.ptr, m->path.len, route,
				      sizeof(route));

	b->st.route_explicit += explicit;
	if (server) {
		snprintf(name, sizeof(name), "%s %s", meth, route);
		ws_attrs_cstr(&x->span->a, "http.route", route);
	} else if (explicit) {
		snprintf(name, sizeof(name), "%s %s", meth, route);
		ws_attrs_cstr(&x->span->a, "url.template", route);
	} else {
		snprintf(name, sizeof(name), "%s", meth);
	}
	ws_span_set_name(x->span, name);
}

/* Make room: the oldest open exchange ends now. */
static void evict_oldest(struct ws_http_spans *b, uint64_t now)
{
	b->st.pending_evicted++;
	xch_end_span(b->age, now, END_EVICTED);
}

static struct xch *xch_start(struct side *sd, const struct ws_http_msg *m)
{
	struct ws_http_conn *hc = sd->hc;
	struct ws_http_spans *b = hc->b;
	bool server = hc->info.role == WS_ROLE_SERVER;
	struct xch *x;

	if (hc->n_fifo >= b->cfg.max_pending_conn) {
		b->st.pending_dropped++;
		return NULL;
	}
	if (b->n_open >= b->cfg.max_pending && b->age)
		evict_oldest(b, sd->feed_ts);
	x = calloc(1, sizeof(*x));
	if (x)
		x->span = ws_span_new("HTTP",
				      server ? WS_SPAN_KIND_SERVER
					     : WS_SPAN_KIND_CLIENT,
				      msg_start_ts(sd, m), NULL);
	if (!x || !x->span) {
		free(x);
		b->st.nomem++;
		return NULL;
	}
	x->hc = hc;
	x->tid = sd->tid;
	x->g = sd->g;
	x->start_ns = x->span->start_ns;
	x->head_ns = sd->feed_ts;
	x->method = m->method;
	hc->requests++;
	client_idle(hc, false);
	DL_APPEND(hc->fifo, x);
	hc->n_fifo++;
	DL_APPEND2(b->age, x, aprev, anext);
	b->n_open++;
	return x;
}

/*
 * Same-host hop: the connection's other end is a process on this host (a
 * gateway's upstream call to a local service, a sidecar): its client span
 * is the parent of the server span of the same request. Whichever end is
 * handled second links; a server span is re-parented only while no child
 * has taken its trace id (else it keeps its trace, counted as hop_late).
 */
static void hop_match(struct ws_http_conn *hc, struct xch *x,
		      const struct ws_http_msg *m, bool server)
{
	struct ws_http_spans *b = hc->b;
	const struct ws_http_conn_info *i = &hc->info;
	struct xch *o, *cl, *sv;

	if (i->preexisting) /* offsets from the middle: the ends differ */
		return;
	memset(&x->hop, 0, sizeof(x->hop));
	snprintf(x->hop.caddr, sizeof(x->hop.caddr), "%s",
		 server ? i->raddr : i->laddr);
	snprintf(x->hop.saddr, sizeof(x->hop.saddr), "%s",
		 server ? i->laddr : i->raddr);
	x->hop.cport = server ? i->rport : i->lport;
	x->hop.sport = server ? i->lport : i->rport;
	x->hop.off = m->start_off;
	HASH_FIND(hh, b->hops, &x->hop, sizeof(x->hop), o);
	if (!o) {
		HASH_ADD(hh, b->hops, hop, sizeof(x->hop), x);
		x->in_hops = true;
		return;
	}
	HASH_DEL(b->hops, o);
	o->in_hops = false;
	if ((o->hc->info.role == WS_ROLE_SERVER) == server)
		return; /* two ends with one role: not a pair */
	cl = server ? o : x;
	sv = server ? x : o;
	if (!cl->span || !sv->span)
		return;
	if (sv->children || sv->ids_given) {
		b->st.hop_late++;
		return;
	}
	ws_span_set_parent(sv->span, cl->span->trace_id, cl->span->span_id);
	sv->span->flags = 0x100; /* known, not remote */
	ws_attrs_cstr(&sv->span->a, "wirespan.link.evidence", "same_host");
	b->st.hop_linked++;
	if (cl->relink && !cl->dep && !sv->follows) {
		cl->dep = sv;
		sv->follows = cl;
	}
}

static void on_request_head(struct side *sd, const struct ws_http_msg *m)
{
	struct ws_http_conn *hc = sd->hc;
	struct ws_http_spans *b = hc->b;
	bool server = hc->info.role == WS_ROLE_SERVER;
	struct side *resp = &hc->side[!sd->dir];
	struct ws_span *s;
	struct xch *x;
	char auth[300];

	/* the response parser must know every request, tracked or not */
	ws_http_parser_expect(resp->p, m->method);
	hc->seq++;
	x = xch_start(sd, m);
	sd->cur = x;
	sd->skip = !x;
	if (!x)
		return;
	s = x->span;
	put_common(hc, s, m, sd->tid);
	name_span(hc, x, m, server);
	if (server) {
		const struct ws_http_str *rid = hdr(m, "X-Request-Id");
		struct proc *p;

		b->st.server++;
		put_url(&b->cfg.auth.redact, s, m, NULL);
		put_server_address(hc, s, m, true);
		put_client_address(hc, s, m);
		put_traceparent_in(hc, x, m);
		copy_str(x->path, sizeof(x->path), m->path.ptr, m->path.len);
		if (rid)
			copy_str(x->rid, sizeof(x->rid), rid->ptr, rid->len);
		p = proc_get(b, hc->info.tgid, true);
		if (p) {
			DL_APPEND2(p->open, x, pprev, pnext);
			p->n++;
			x->proc = p;
			x->idle_at_read = p->idle;
		}
		thr_read(b, sd->tid, x);
		if (x->g)
			go_put(b, hc->info.tgid, GO_IN, x->g, s->span_id);
	} else {
		const struct ws_http_str *host = hdr(m, "Host");

		b->st.client++;
		put_server_address(hc, s, m, false);
		if (host && host->len)
			copy_str(auth, sizeof(auth), host->ptr, host->len);
		else if (strchr(hc->info.raddr, ':'))
			snprintf(auth, sizeof(auth), "[%s]:%u", hc->info.raddr,
				 hc->info.rport);
		else
			snprintf(auth, sizeof(auth), "%s:%u", hc->info.raddr,
				 hc->info.rport);
		put_url(&b->cfg.auth.redact, s, m, auth);
		link_client(hc, x, m);
	}
	hop_match(hc, x, m, server);
	ws_http_auth_apply(&b->cfg.auth, &m->headers, x->start_ns, &s->a,
			   &b->st.auth);
	put_captured(b, s, m);
	if (m->flags & WS_HTTP_F_RESYNC) {
		b->st.resync++;
		ws_attrs_bool(&s->a, "wirespan.http.resync", true);
	}
}

static void note_gap(struct ws_http_spans *b, struct ws_span *s,
		     const struct ws_http_msg *m)
{
	if (!(m->flags & (WS_HTTP_F_GAP | WS_HTTP_F_TRUNCATED)))
		return;
	/* cut short by the close is counted by the parser (truncated) */
	b->st.gap_messages += !!(m->flags & WS_HTTP_F_GAP);
	if (s)
		ws_attrs_bool(&s->a, "wirespan.http.truncated", true);
}

static void on_request_complete(struct side *sd, const struct ws_http_msg *m)
{
	struct xch *x = sd->cur;

	sd->cur = NULL;
	if (!x || !x->span) {
		note_gap(sd->hc->b, NULL, m);
		return;
	}
	if (m->body_len || (m->flags & WS_HTTP_F_CONTENT_LENGTH))
		ws_attrs_int(&x->span->a, "http.request.body.size",
			     (int64_t)m->body_len);
	note_gap(sd->hc->b, x->span, m);
}

static void on_response_head(struct side *sd, const struct ws_http_msg *m)
{
	struct ws_http_conn *hc = sd->hc;
	struct ws_http_spans *b = hc->b;
	struct ws_span *s;
	struct xch *x;

	sd->cur = NULL;
	sd->skip = false;
	if (m->flags & WS_HTTP_F_INTERIM) {
		b->st.interim++;
		sd->skip = true;
		return;
	}
	for (x = hc->fifo; x && x->have_response; x = x->next)
		;
	if (!x) {
		b->st.orphan_responses++;
		sd->skip = true;
		return;
	}
	x->have_response = true;
	x->status = m->status;
	sd->cur = x;
	if (hc->info.role == WS_ROLE_SERVER && b->held)
		held_settle(b, sd->tid, x);
	else if (hc->info.role == WS_ROLE_CLIENT && x->relink && x->span)
		held_watch(b, x, sd->tid, sd->feed_ts);
	if (m->flags & WS_HTTP_F_RESYNC)
		b->st.resync++;
	s = x->span;
	if (!s)
		return;
	if (m->flags & WS_HTTP_F_RESYNC)
		ws_attrs_bool(&s->a, "wirespan.http.resync", true);
	ws_attrs_int(&s->a, "http.response.status_code", m->status);
	if (m->status >= 500 ||
	    (m->status >= 400 && s->kind == WS_SPAN_KIND_CLIENT)) {
		char code[8];

		snprintf(code, sizeof(code), "%u", m->status);
		set_error(s, code);
	}
}

static void on_response_complete(struct side *sd, const struct ws_http_msg *m)
{
	struct ws_http_conn *hc = sd->hc;
	struct xch *x = sd->cur;

	sd->cur = NULL;
	if (sd->skip || !x) {
		sd->skip = false;
		note_gap(hc->b, NULL, m);
		return;
	}
	if (x->span) {
		ws_attrs_int(&x->span->a, "http.response.body.size",
			     (int64_t)m->body_len);
		note_gap(hc->b, x->span, m);
	} else {
		note_gap(hc->b, NULL, m);
	}
	if (m->flags & WS_HTTP_F_TUNNEL) {
		/* 101 or CONNECT 2xx: the rest is another protocol */
		hc->b->st.upgrades++;
		ws_http_parser_tunnel(hc->side[!sd->dir].p);
		if (x->span)
			ws_attrs_bool(&x->span->a, "wirespan.http.upgraded",
				      true);
	}
	xch_end_span(x, sd->feed_ts, END_RESPONSE);
	xch_free(x);
}

static void on_msg(void *ctx, enum ws_http_event ev,
		   const struct ws_http_msg *m)
{
	struct side *sd = ctx;

	if (sd->requests) {
		if (ev == WS_HTTP_EV_HEAD)
			on_request_head(sd, m);
		else
			on_request_complete(sd, m);
	} else if (ev == WS_HTTP_EV_HEAD) {
		on_response_head(sd, m);
	} else {
		on_response_complete(sd, m);
	}
}

static const struct ws_http_cb msg_cb = {.msg = on_msg};

/* ---- connections -------------------------------------------------------- */

static int side_init(struct ws_http_conn *hc, uint8_t dir, bool requests)
{
	struct side *sd = &hc->side[dir];

	sd->hc = hc;
	sd->dir = dir;
	sd->requests = requests;
	sd->p = ws_http_parser_new(
		requests ? WS_HTTP_REQUEST : WS_HTTP_RESPONSE, &msg_cb, sd);
	return sd->p ? 0 : -ENOMEM;
}

/* Which direction carries requests: the role says; for a connection
 * followed from the middle with no role, the first bytes do. */
static int roles_init(struct ws_http_conn *hc, uint8_t dir, const uint8_t *buf,
		      size_t len)
{
	uint8_t req_dir;

	if (hc->info.role == WS_ROLE_SERVER) {
		req_dir = WS_DIR_INGRESS;
	} else if (hc->info.role == WS_ROLE_CLIENT) {
		req_dir = WS_DIR_EGRESS;
	} else {
		bool response = len >= 5 && !memcmp(buf, "HTTP/", 5);

		hc->b->st.conns_unknown_role++;
		req_dir = response ? !dir : dir;
		hc->info.role = req_dir == WS_DIR_INGRESS ? WS_ROLE_SERVER
							  : WS_ROLE_CLIENT;
	}
	if (side_init(hc, req_dir, true) || side_init(hc, !req_dir, false)) {
		hc->b->st.nomem++;
		return -ENOMEM;
	}
	hc->roles_known = true;
	if (hc->info.role == WS_ROLE_CLIENT) {
		hc->proc = proc_get(hc->b, hc->info.tgid, true);
		if (hc->proc)
			hc->proc->clients++;
	}
	return 0;
}

static int track_live(struct ws_http_spans *b, struct ws_http_conn *hc)
{
	if (b->n_live == b->cap_live) {
		size_t cap = b->cap_live ? b->cap_live * 2 : 64;
		struct ws_http_conn **v = realloc(b->live, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		b->live = v;
		b->cap_live = cap;
	}
	b->live[b->n_live++] = hc;
	return 0;
}

static void untrack_live(struct ws_http_spans *b, struct ws_http_conn *hc)
{
	size_t i;

	for (i = b->n_live; i-- > 0;)
		if (b->live[i] == hc) {
			b->live[i] = b->live[--b->n_live];
			return;
		}
}

struct ws_http_conn *ws_http_conn_new(struct ws_http_spans *b,
				      const struct ws_http_conn_info *info)
{
	struct ws_http_conn *hc = calloc(1, sizeof(*hc));

	if (!hc || track_live(b, hc)) {
		free(hc);
		b->st.nomem++;
		return NULL;
	}
	hc->b = b;
	hc->info = *info;
	hc->info.resource = ws_resource_get(info->resource);
	b->st.conns++;
	if (info->role != WS_ROLE_UNKNOWN && roles_init(hc, 0, NULL, 0)) {
		ws_http_conn_close(hc, 0);
		return NULL;
	}
	return hc;
}

int ws_http_conn_feed(struct ws_http_conn *hc, uint8_t dir, const uint8_t *buf,
		      size_t len, uint32_t tid, uint64_t ts_ns)
{
	return ws_http_conn_feed_g(hc, dir, buf, len, tid, 0, ts_ns);
}

int ws_http_conn_feed_g(struct ws_http_conn *hc, uint8_t dir,
			const uint8_t *buf, size_t len, uint32_t tid,
			uint64_t g, uint64_t ts_ns)
{
	struct side *sd;
	uint64_t pend;
	int rc;

	if (!hc || dir > 1)
		return -EINVAL;
	if (!hc->roles_known && roles_init(hc, dir, buf, len))
		return -ENOMEM;
	sd = &hc->side[dir];
	/* any other event on a thread ends its "just read a request" (an
	 * upstream request write is judged by link_client; the request's own
	 * body is part of the read) */
	if (hc->b->thrs && !(hc->info.role == WS_ROLE_CLIENT && sd->requests)) {
		struct thr *t = thr_find(hc->b, tid);

		if (t && t->x->hc != hc)
			thr_drop(hc->b, t);
	}
	sd->tid = tid;
	sd->g = g;
	sd->feed_ts = ts_ns;
	sd->feed_base = sd->off;
	rc = ws_http_parser_feed(sd->p, buf, len);
	sd->off += len;
	pend = ws_http_parser_pending(sd->p);
	if (pend && sd->off - pend >= sd->feed_base)
		sd->carry_ts = ts_ns;
	return rc;
}

int ws_http_conn_gap(struct ws_http_conn *hc, uint8_t dir, uint64_t len)
{
	struct side *sd;
	int rc;

	if (!hc || dir > 1)
		return -EINVAL;
	if (!hc->roles_known)
		return 0; /* nothing parsed yet: nothing to lose */
	sd = &hc->side[dir];
	sd->feed_base = sd->off + len;
	rc = ws_http_parser_gap(sd->p, len);
	sd->off += len;
	return rc;
}

static void add_parser_stats(struct ws_http_spans_stats *st,
			     const struct ws_http_parser *p)
{
	const struct ws_http_stats *ps = ws_http_parser_stats(p);
	int i;

	if (!ps)
		return;
	for (i = 0; i < WS_HTTP_ERR_MAX; i++)
		st->parse_errors[i] += ps->errors[i];
	for (i = 0; i < WS_HTTP_STOP_MAX; i++)
		st->stops[i] += ps->stops[i];
	st->gap_bytes += ps->gap_bytes;
	st->skipped_bytes += ps->skipped_bytes;
	st->stopped_bytes += ps->stopped_bytes;
	st->truncated += ps->truncated;
	st->expect_full += ps->expect_full;
}

void ws_http_conn_close(struct ws_http_conn *hc, uint64_t ts_ns)
{
	struct ws_http_spans *b;
	int d;

	if (!hc)
		return;
	b = hc->b;
	/* responses that run to the close end here, at their last byte */
	for (d = 0; d < 2 && hc->roles_known; d++)
		if (!hc->side[d].requests)
			ws_http_parser_eof(hc->side[d].p);
	for (d = 0; d < 2 && hc->roles_known; d++)
		if (hc->side[d].requests)
			ws_http_parser_eof(hc->side[d].p);
	while (hc->fifo) {
		xch_end_span(hc->fifo, ts_ns, END_CLOSED);
		xch_free(hc->fifo);
	}
	for (d = 0; d < 2; d++) {
		if (!hc->side[d].p)
			continue;
		add_parser_stats(&b->st, hc->side[d].p);
		ws_http_parser_free(hc->side[d].p);
	}
	client_idle(hc, false);
	if (hc->proc) {
		hc->proc->clients--;
		proc_put(b, hc->proc);
	}
	untrack_live(b, hc);
	ws_resource_put(hc->info.resource);
	free(hc);
}

/* ---- builder ------------------------------------------------------------ */

struct ws_http_spans *ws_http_spans_new(const struct ws_http_spans_cfg *cfg,
					ws_span_emit_fn emit, void *ctx)
{
	struct ws_http_spans *b = calloc(1, sizeof(*b));
	unsigned i;

	if (!b)
		return NULL;
	b->cfg = *cfg;
	b->emit = emit;
	b->ctx = ctx;
	if (!b->cfg.max_pending_conn)
		b->cfg.max_pending_conn = 1;
	if (!b->cfg.max_pending)
		b->cfg.max_pending = 1;
	for (i = 0; i < cfg->n_capture_headers && i < WS_AUTH_MAX_HEADERS;
	     i++) {
		const char *n = cfg->capture_headers[i];
		size_t j, len = strlen(n);
		char *k;

		if (ws_http_header_is_secret(&cfg->auth, n, len)) {
			b->st.capture_refused++;
			continue;
		}
		k = malloc(len + sizeof("http.request.header."));
		if (!k) {
			ws_http_spans_free(b, 0);
			errno = ENOMEM;
			return NULL;
		}
		memcpy(k, "http.request.header.", 20);
		for (j = 0; j <= len; j++)
			k[20 + j] =
				(char)(n[j] >= 'A' && n[j] <= 'Z' ? n[j] | 0x20
								  : n[j]);
		b->capture_keys[i] = k;
	}
	return b;
}

void ws_http_spans_set_verifier(struct ws_http_spans *b,
				struct ws_jwt_verifier *v)
{
	if (b)
		b->cfg.auth.jwt_verifier = v;
}

static void held_flush(struct ws_http_spans *b, uint64_t before_ns)
{
	struct held *h, *t;

	HASH_ITER (hh, b->held, h, t) {
		if (h->since < before_ns)
			held_emit(b, h);
	}
}

void ws_http_spans_tick(struct ws_http_spans *b, uint64_t now_ns)
{
	if (now_ns > HOLD_NS)
		held_flush(b, now_ns - HOLD_NS);
	while (b->age && b->age->start_ns + b->cfg.request_timeout_ns < now_ns)
		xch_end_span(b->age, now_ns, END_TIMEOUT);
}

const struct ws_http_spans_stats *ws_http_spans_stats(struct ws_http_spans *b)
{
	size_t i;
	int d;

	b->snap = b->st;
	for (i = 0; i < b->n_live; i++)
		for (d = 0; d < 2; d++)
			if (b->live[i]->side[d].p)
				add_parser_stats(&b->snap,
						 b->live[i]->side[d].p);
	return &b->snap;
}

void ws_http_spans_end_all(struct ws_http_spans *b, uint64_t now_ns)
{
	while (b && b->n_live)
		ws_http_conn_close(b->live[b->n_live - 1], now_ns);
	if (b)
		held_flush(b, UINT64_MAX);
}

void ws_http_spans_free(struct ws_http_spans *b, uint64_t now_ns)
{
	unsigned i;

	if (!b)
		return;
	ws_http_spans_end_all(b, now_ns);
	free(b->live);
	go_free_all(b);
	for (i = 0; i < WS_AUTH_MAX_HEADERS; i++)
		free(b->capture_keys[i]);
	free(b);
}

bool ws_http_spans_parent(struct ws_http_spans *b, uint32_t tgid, uint32_t tid,
			  uint64_t ts_ns, uint8_t trace_id[16],
			  uint8_t span_id[8])
{
	struct proc *p = b ? proc_get(b, tgid, false) : NULL;
	struct xch *c, *best = NULL;

	if (!p)
		return false;
	DL_FOREACH2(p->open, c, pnext)
	{
		/* the newest wins: the list is oldest first */
		if (c->span && c->tid == tid && c->head_ns <= ts_ns)
			best = c;
	}
	if (!best && p->n == 1 && p->open->span && p->open->head_ns <= ts_ns)
		best = p->open;
	if (!best)
		return false;
	memcpy(trace_id, best->span->trace_id, 16);
	memcpy(span_id, best->span->span_id, 8);
	best->ids_given = true;
	b->st.nats_parent++;
	return true;
}
