/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cross-host trace stitching, the pure part (see stitch.h).
 *
 * Every span added becomes an entry: indexed by span id, on the age list
 * (oldest first, forgotten after 2 * window) and, while it waits, on the
 * pending list (oldest first, let go after window). What an entry waits for
 * is a bucket: a span id to appear (its parent, or a seeker's deliver span),
 * an anchor with its fingerprint or HTTP key, or its parent to settle (then
 * it is on the parent's kids list). Anchors sit in buckets by their keys.
 * Settling an entry fixes its trace for good: its kids settle with it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>
#include <utlist.h>
#include <xxhash.h>

#include "stitch.h"

/* What a bucket key means (mixed into the key's hash). */
enum bkind {
	B_ID = 1,    /* waiters: for a span with this id */
	B_FP,	     /* anchors: NATS publishes by fingerprint */
	B_FP_WAIT,   /* waiters: seekers for such an anchor */
	B_HTTP,	     /* anchors: client spans by (client, server, seq) */
	B_HTTP_WAIT, /* waiters: server spans for such an anchor */
	B_HTTP_CLI,  /* anchors: client spans by (client endpoint, seq) */
};

/* Buckets an entry can be in at once: an HTTP anchor's three keys, a NATS
 * seeker's deliver id and fingerprint. */
#define MAX_LINKS 3

struct ent;

struct link {
	struct bucket *b;
	struct ent *e;
	struct link *prev, *next;
};

struct bucket {
	uint64_t key;
	struct link *head;
	UT_hash_handle hh;
};

struct msg {
	void *token;
	size_t bytes;
	unsigned pending; /* entries not settled, +1 while being added */
	bool modified;
};

struct ent {
	uint8_t span_id[8], trace[16], parent[8];
	bool has_parent;
	bool pending;
	bool joined;	    /* parent set by a join: rewrite it */
	bool claimed;	    /* an anchor some seeker joined */
	bool want_delivery; /* a seeker still hoping for its deliver span */
	uint8_t role;
	uint64_t start_ns, arrival_ns;
	uint64_t fp;
	bool has_fp;
	uint8_t delivery[8];
	bool has_delivery;
	uint8_t reply_id[8];
	bool has_reply_id;		 /* and in the by_reply index */
	uint64_t http_key, http_cli_key; /* 0: none */
	const char *evidence;
	char ev_buf[64];
	struct msg *msg; /* while pending */
	void *ref;
	struct ent *up;			  /* the pending parent waited on */
	struct ent *kids, *kprev, *knext; /* waiting on this one */
	/* links[0..n_anchor): an anchor's buckets, kept until forgotten;
	 * links[n_anchor..n_links): what it waits for */
	struct link links[MAX_LINKS];
	unsigned n_links, n_anchor;
	UT_hash_handle hh;	   /* by span_id */
	UT_hash_handle rh;	   /* by reply_id */
	struct ent *prev, *next;   /* age */
	struct ent *pprev, *pnext; /* pending */
	struct ent *wnext;	   /* work list */
};

struct ws_stitch {
	struct ws_stitch_cfg cfg;
	struct ent *by_id, *by_reply, *age, *pend;
	struct bucket *buckets;
	size_t n_ents;
	struct ws_stitch_stats st;
};

void ws_stitch_cfg_init(struct ws_stitch_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->window_ns = WS_STITCH_DEFAULT_WINDOW_NS;
	cfg->max_spans = WS_STITCH_DEFAULT_MAX_SPANS;
	cfg->max_held_bytes = WS_STITCH_DEFAULT_MAX_HELD_BYTES;
}

struct ws_stitch *ws_stitch_new(const struct ws_stitch_cfg *cfg)
{
	struct ws_stitch *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->cfg = *cfg;
	if (!st->cfg.window_ns)
		st->cfg.window_ns = WS_STITCH_DEFAULT_WINDOW_NS;
	if (!st->cfg.max_spans)
		st->cfg.max_spans = 1;
	return st;
}

const struct ws_stitch_stats *ws_stitch_stats(const struct ws_stitch *st)
{
	return &st->st;
}

/* ---- keys and buckets --------------------------------------------------- */

static uint64_t key_of(enum bkind k, const void *data, size_t len)
{
	uint64_t h = XXH3_64bits_withSeed(data, len, (uint64_t)k);

	return h ? h : 1;
}

static uint64_t id_key(const uint8_t id[8])
{
	return key_of(B_ID, id, 8);
}

/* (a endpoint[, b endpoint], seq) as one key; 0 if an address is missing. */
static uint64_t ep_key(enum bkind k, const struct ws_stitch_ep *a,
		       const struct ws_stitch_ep *b, int64_t seq)
{
	char buf[256];
	int n;

	if (!a->addr || (b && !b->addr) || seq < 0 || a->addr_len > 64 ||
	    (b && b->addr_len > 64))
		return 0;
	n = snprintf(buf, sizeof(buf), "%.*s|%lld|%.*s|%lld|%lld",
		     (int)a->addr_len, a->addr, (long long)a->port,
		     b ? (int)b->addr_len : 0, b ? b->addr : "",
		     (long long)(b ? b->port : 0), (long long)seq);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return 0;
	return key_of(k, buf, (size_t)n);
}

static struct bucket *bucket_get(struct ws_stitch *st, uint64_t key)
{
	struct bucket *b;

	HASH_FIND(hh, st->buckets, &key, sizeof(key), b);
	return b;
}

static int link_add(struct ws_stitch *st, struct ent *e, uint64_t key)
{
	struct bucket *b = bucket_get(st, key);
	struct link *l;

	if (e->n_links >= MAX_LINKS)
		return -EINVAL;
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return -ENOMEM;
		b->key = key;
		HASH_ADD(hh, st->buckets, key, sizeof(b->key), b);
	}
	l = &e->links[e->n_links++];
	l->b = b;
	l->e = e;
	DL_APPEND(b->head, l);
	return 0;
}

/* Unlink from the buckets waited on (all: also the anchor's). */
static void links_drop(struct ws_stitch *st, struct ent *e, bool all)
{
	unsigned i, from = all ? 0 : e->n_anchor;

	for (i = from; i < e->n_links; i++) {
		struct bucket *b = e->links[i].b;

		DL_DELETE(b->head, &e->links[i]);
		if (!b->head) {
			HASH_DEL(st->buckets, b);
			free(b);
		}
	}
	e->n_links = from;
	if (all)
		e->n_anchor = 0;
}

/* ---- settling ----------------------------------------------------------- */

static void msg_unref(struct ws_stitch *st, struct msg *m)
{
	if (--m->pending)
		return;
	st->st.held_messages--;
	st->st.held_bytes -= m->bytes;
	if (st->cfg.ready)
		st->cfg.ready(st->cfg.ctx, m->token, m->modified);
	free(m);
}

/* Fix e's trace (its parent's, if it waited on one) and let it go; then
 * the same for every entry that waited on it. */
static void settle(struct ws_stitch *st, struct ent *e)
{
	struct ent *work = e, *kid, *tmp;

	e->wnext = NULL;
	while ((e = work)) {
		uint8_t old[16];
		bool follow;

		work = e->wnext;
		if (!e->pending)
			continue;
		memcpy(old, e->trace, 16);
		if (e->up) {
			DL_DELETE2(e->up->kids, e, kprev, knext);
			memcpy(e->trace, e->up->trace, 16);
			e->up = NULL;
		}
		follow = memcmp(old, e->trace, 16) != 0;
		if (follow && !e->joined)
			st->st.trace_follow++;
		if ((follow || e->joined) && st->cfg.rewrite) {
			if (st->cfg.rewrite(st->cfg.ctx, e->msg->token, e->ref,
					    e->trace,
					    e->joined ? e->parent : NULL,
					    e->joined ? e->evidence : NULL))
				st->st.rewrite_errors++;
			e->msg->modified = true;
		}
		links_drop(st, e, false);
		e->pending = false;
		DL_DELETE2(st->pend, e, pprev, pnext);
		st->st.held_spans--;
		msg_unref(st, e->msg);
		e->msg = NULL;
		e->ref = NULL;
		DL_FOREACH_SAFE2(e->kids, kid, tmp, knext)
		{
			kid->wnext = work;
			work = kid;
		}
	}
}

/* ---- joining ------------------------------------------------------------ */

static void join(struct ent *e, struct ent *a, const char *evidence)
{
	memcpy(e->parent, a->span_id, 8);
	e->has_parent = true;
	e->joined = true;
	e->evidence = evidence;
	a->claimed = true;
}

/*
 * The publish a consumer's message came from, by fingerprint and time
 * order: the earliest unclaimed anchor not later than the consumer, else
 * (fan-out: several consumers of one publish) the latest claimed one.
 */
static struct ent *pick_fp(struct ws_stitch *st, struct ent *e,
			   unsigned *unclaimed)
{
	struct bucket *b = bucket_get(st, key_of(B_FP, &e->fp, sizeof(e->fp)));
	struct ent *first = NULL, *last_claimed = NULL;
	struct link *l;

	*unclaimed = 0;
	if (!b)
		return NULL;
	DL_FOREACH (b->head, l) {
		struct ent *a = l->e;

		if (a->fp != e->fp ||
		    a->start_ns > e->start_ns + WS_STITCH_SKEW_NS)
			continue;
		if (!a->claimed) {
			(*unclaimed)++;
			if (!first || a->start_ns < first->start_ns)
				first = a;
		} else if (!last_claimed ||
			   a->start_ns > last_claimed->start_ns) {
			last_claimed = a;
		}
	}
	return first ? first : last_claimed;
}

static bool join_fp(struct ws_stitch *st, struct ent *e)
{
	unsigned n;
	struct ent *a = e->has_fp ? pick_fp(st, e, &n) : NULL;

	if (!a)
		return false;
	if (n > 1) {
		st->st.ambiguous++;
		snprintf(e->ev_buf, sizeof(e->ev_buf),
			 "nats.fingerprint;ambiguous=%u", n);
		join(e, a, e->ev_buf);
	} else {
		join(e, a, "nats.fingerprint");
	}
	st->st.joins_fingerprint++;
	return true;
}

/* A joinable partner now? On false the seeker waits (links added). */
static int seek(struct ws_stitch *st, struct ent *e, bool *found)
{
	struct bucket *b;
	struct ent *a;

	*found = false;
	if (e->role == WS_STITCH_HTTP_SERVER) {
		b = e->http_key ? bucket_get(st, key_of(B_HTTP, &e->http_key,
							sizeof(e->http_key)))
				: NULL;
		if (b) {
			join(e, b->head->e, "http.conn");
			st->st.joins_http++;
			*found = true;
			return 0;
		}
		if (e->http_cli_key &&
		    bucket_get(st, key_of(B_HTTP_CLI, &e->http_cli_key,
					  sizeof(e->http_cli_key)))) {
			/* the client's end matches, the server's does not:
			 * NAT or a proxy between them; leave it alone */
			st->st.nat_mismatch++;
			*found = true;
			return 0;
		}
		return e->http_key ? link_add(st, e,
					      key_of(B_HTTP_WAIT, &e->http_key,
						     sizeof(e->http_key)))
				   : 0;
	}
	/* NATS: the broker's hop is exact; without it, fingerprints */
	if (e->has_delivery && e->want_delivery) {
		uint8_t *id = e->delivery;

		HASH_FIND(hh, st->by_id, id, 8, a);
		if (a) {
			join(e, a, "nats.delivery_id");
			st->st.joins_delivery++;
			*found = true;
			return 0;
		}
		return link_add(st, e, id_key(id));
	}
	if (join_fp(st, e)) {
		*found = true;
		return 0;
	}
	return e->has_fp ? link_add(st, e,
				    key_of(B_FP_WAIT, &e->fp, sizeof(e->fp)))
			 : 0;
}

/* Decide what a pending, unlinked entry waits for, or settle it. */
static int resolve(struct ws_stitch *st, struct ent *e)
{
	struct ent *p;
	int rc;

	if ((e->role == WS_STITCH_NATS_SEEKER ||
	     e->role == WS_STITCH_HTTP_SERVER) &&
	    !e->has_parent) {
		bool found;

		rc = seek(st, e, &found);
		if (rc || e->n_links > e->n_anchor)
			return rc;
		if (!found) {
			settle(st, e); /* nothing to seek with */
			return 0;
		}
	}
	if (!e->has_parent) {
		settle(st, e);
		return 0;
	}
	HASH_FIND(hh, st->by_id, e->parent, 8, p);
	if (!p) {
		/* a reply's hop names the reply's id: its responder's span */
		HASH_FIND(rh, st->by_reply, e->parent, 8, p);
		if (!p || p == e)
			return link_add(st, e, id_key(e->parent));
		memcpy(e->parent, p->span_id, 8);
		e->joined = true;
		e->evidence = "nats.reply_id";
		st->st.joins_reply++;
	}
	if (p->pending) {
		e->up = p;
		DL_APPEND2(p->kids, e, kprev, knext);
		return 0;
	}
	/* settle() takes the parent's trace and counts the follow */
	e->up = p;
	DL_APPEND2(p->kids, e, kprev, knext);
	settle(st, e);
	return 0;
}

/* Waiters of a bucket: unlink them and resolve them again. */
static void wake(struct ws_stitch *st, uint64_t key)
{
	struct bucket *b = bucket_get(st, key);
	struct ent *list = NULL, *e;

	if (!b)
		return;
	while (b) {
		e = b->head->e;
		links_drop(st, e, false); /* may free b */
		e->wnext = list;
		list = e;
		b = bucket_get(st, key);
	}
	while ((e = list)) {
		list = e->wnext;
		if (e->pending && resolve(st, e))
			settle(st, e);
	}
}

/* ---- entries ------------------------------------------------------------ */

static void ent_free(struct ws_stitch *st, struct ent *e)
{
	if (e->pending)
		settle(st, e);
	links_drop(st, e, true);
	HASH_DEL(st->by_id, e);
	if (e->has_reply_id)
		HASH_DELETE(rh, st->by_reply, e);
	DL_DELETE(st->age, e);
	st->n_ents--;
	st->st.remembered--;
	free(e);
}

static void evict_oldest(struct ws_stitch *st)
{
	struct ent *e = st->age;

	if (e->pending)
		st->st.evicted++;
	ent_free(st, e);
}

static struct ent *ent_new(struct ws_stitch *st, struct msg *m,
			   const struct ws_stitch_span *s, uint64_t now_ns)
{
	struct ent *e, *dup;

	HASH_FIND(hh, st->by_id, s->span_id, 8, dup);
	if (dup && dup->msg == m) /* twice in one payload: the first counts */
		return NULL;
	if (dup) /* the same span again (a redelivery): forget the first */
		ent_free(st, dup);
	if (st->n_ents >= st->cfg.max_spans) /* see ws_stitch_add */
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	memcpy(e->span_id, s->span_id, 8);
	memcpy(e->trace, s->trace_id, 16);
	memcpy(e->parent, s->parent_span_id, 8);
	e->has_parent = s->has_parent;
	e->role = s->role;
	e->start_ns = s->start_ns;
	e->arrival_ns = now_ns;
	e->fp = s->fingerprint;
	e->has_fp = s->has_fingerprint;
	memcpy(e->delivery, s->delivery_id, 8);
	e->has_delivery = s->has_delivery;
	e->want_delivery = s->has_delivery;
	if (s->has_reply_id) {
		HASH_FIND(rh, st->by_reply, s->reply_id, 8, dup);
		if (!dup) { /* the first span claiming an id keeps it */
			memcpy(e->reply_id, s->reply_id, 8);
			e->has_reply_id = true;
			HASH_ADD(rh, st->by_reply, reply_id, 8, e);
		}
	}
	if (s->role == WS_STITCH_HTTP_CLIENT) {
		e->http_key = ep_key(B_HTTP, &s->local, &s->peer, s->seq);
		e->http_cli_key = ep_key(B_HTTP_CLI, &s->local, NULL, s->seq);
	} else if (s->role == WS_STITCH_HTTP_SERVER) {
		/* as the client sees it: its end first */
		e->http_key = ep_key(B_HTTP, &s->peer, &s->local, s->seq);
		e->http_cli_key = ep_key(B_HTTP_CLI, &s->peer, NULL, s->seq);
	}
	e->msg = m;
	e->ref = s->ref;
	e->pending = true;
	m->pending++;
	HASH_ADD(hh, st->by_id, span_id, 8, e);
	DL_APPEND(st->age, e);
	DL_APPEND2(st->pend, e, pprev, pnext);
	st->n_ents++;
	st->st.remembered++;
	st->st.held_spans++;
	return e;
}

/* An anchor joins the buckets seekers look in. */
static int anchor_index(struct ws_stitch *st, struct ent *e)
{
	int rc = 0;

	if (e->role == WS_STITCH_NATS_ANCHOR && e->has_fp)
		rc = link_add(st, e, key_of(B_FP, &e->fp, sizeof(e->fp)));
	if (e->role == WS_STITCH_HTTP_CLIENT && e->http_key) {
		rc = link_add(
			st, e,
			key_of(B_HTTP, &e->http_key, sizeof(e->http_key)));
		if (!rc && e->http_cli_key)
			rc = link_add(st, e,
				      key_of(B_HTTP_CLI, &e->http_cli_key,
					     sizeof(e->http_cli_key)));
	}
	e->n_anchor = e->n_links;
	return rc;
}

static void held_bound(struct ws_stitch *st)
{
	while (st->st.held_bytes > st->cfg.max_held_bytes && st->pend) {
		st->st.evicted++;
		settle(st, st->pend);
	}
}

int ws_stitch_add(struct ws_stitch *st, void *token, size_t bytes,
		  const struct ws_stitch_span *spans, size_t n, uint64_t now_ns)
{
	struct msg *m = calloc(1, sizeof(*m));
	struct ent **es = n ? calloc(n, sizeof(*es)) : NULL;
	int rc = 0;
	size_t i;

	if (!m || (n && !es)) {
		free(m);
		free(es);
		if (st->cfg.ready)
			st->cfg.ready(st->cfg.ctx, token, false);
		return -ENOMEM;
	}
	m->token = token;
	m->bytes = bytes;
	m->pending = 1;
	st->st.messages++;
	st->st.held_messages++;
	st->st.held_bytes += bytes;
	if (st->st.held_bytes > st->st.peak_held_bytes)
		st->st.peak_held_bytes = st->st.held_bytes;
	/* room first (an eviction must not hit a span of this payload) */
	while (st->age && st->n_ents + n > st->cfg.max_spans)
		evict_oldest(st);
	/* all of them indexed first: parents within the payload are found;
	 * what does not fit in max_spans passes untouched */
	st->st.spans += n;
	for (i = 0; i < n; i++) {
		es[i] = ent_new(st, m, &spans[i], now_ns);
		if (!es[i] && st->n_ents >= st->cfg.max_spans)
			st->st.evicted++;
	}
	for (i = 0; i < n; i++)
		if (es[i] && es[i]->pending && anchor_index(st, es[i]))
			rc = -ENOMEM;
	for (i = 0; i < n; i++) {
		struct ent *e = es[i];

		if (!e || !e->pending)
			continue;
		if (resolve(st, e)) {
			rc = -ENOMEM;
			settle(st, e);
		}
	}
	/* then who waited for these */
	for (i = 0; i < n; i++) {
		struct ent *e = es[i];

		if (!e)
			continue;
		wake(st, id_key(e->span_id));
		if (e->has_reply_id)
			wake(st, id_key(e->reply_id));
		if (e->role == WS_STITCH_NATS_ANCHOR && e->has_fp)
			wake(st, key_of(B_FP_WAIT, &e->fp, sizeof(e->fp)));
		if (e->role == WS_STITCH_HTTP_CLIENT && e->http_key)
			wake(st, key_of(B_HTTP_WAIT, &e->http_key,
					sizeof(e->http_key)));
	}
	free(es);
	msg_unref(st, m);
	held_bound(st);
	return rc;
}

/* A pending entry whose time is up. */
static void time_out(struct ws_stitch *st, struct ent *e)
{
	bool seeker = (e->role == WS_STITCH_NATS_SEEKER ||
		       e->role == WS_STITCH_HTTP_SERVER) &&
		      !e->joined && !e->has_parent;

	links_drop(st, e, false);
	if (seeker && e->role == WS_STITCH_NATS_SEEKER && e->want_delivery) {
		/* no broker hop came: fall back to the fingerprint */
		e->want_delivery = false;
		if (join_fp(st, e)) {
			struct ent *p;

			HASH_FIND(hh, st->by_id, e->parent, 8, p);
			if (p) {
				e->up = p;
				DL_APPEND2(p->kids, e, kprev, knext);
			}
			settle(st, e);
			return;
		}
	}
	if (seeker && e->role == WS_STITCH_HTTP_SERVER && e->http_cli_key &&
	    bucket_get(st, key_of(B_HTTP_CLI, &e->http_cli_key,
				  sizeof(e->http_cli_key))))
		st->st.nat_mismatch++;
	else if (seeker)
		st->st.timeouts++;
	else
		st->st.orphan_timeouts++;
	/* waiting on a parent still pending: take its trace as it is now */
	settle(st, e);
}

void ws_stitch_tick(struct ws_stitch *st, uint64_t now_ns)
{
	uint64_t w = st->cfg.window_ns;

	while (st->pend && now_ns - st->pend->arrival_ns >= w)
		time_out(st, st->pend);
	while (st->age && !st->age->pending &&
	       now_ns - st->age->arrival_ns >= 2 * w)
		ent_free(st, st->age);
}

uint64_t ws_stitch_wake_ns(const struct ws_stitch *st)
{
	uint64_t t = UINT64_MAX, w = st->cfg.window_ns;

	if (st->pend)
		t = st->pend->arrival_ns + w;
	if (st->age && st->age->arrival_ns + 2 * w < t)
		t = st->age->arrival_ns + 2 * w;
	return t;
}

void ws_stitch_flush(struct ws_stitch *st)
{
	while (st->pend)
		time_out(st, st->pend);
}

void ws_stitch_free(struct ws_stitch *st)
{
	if (!st)
		return;
	ws_stitch_flush(st);
	while (st->age)
		ent_free(st, st->age);
	free(st);
}
