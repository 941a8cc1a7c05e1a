/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NATS span builder. See nats_spans.h for the spans and
 * docs/ARCHITECTURE.md ("NATS spans") for the evidence each one rests on.
 */
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <uthash.h>
#include <utlist.h>
/* XXH3 streaming state on the stack */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "jwks.h"
#include "nats_spans.h"
#include "peers.h"
#include "wirespan/abi.h"

/* Payload bytes that go into a fingerprint: enough to tell messages apart,
 * few enough that both ends of a hop have them. */
#define FP_PAYLOAD_BYTES 1024
#define MAX_SUBJECT 512

enum pend_kind {
	PEND_PROCESS = 1, /* a MSG being processed */
	PEND_REQUEST,	  /* PUB with a reply-to we subscribe to */
	PEND_PULL,	  /* JetStream pull request */
	PEND_JS_API,	  /* $JS.API call */
};

struct nats_sub {
	char sid[32];
	char *subject;
	char *queue;
	uint64_t
		left; /* UNSUB <sid> <max>: messages still to come; 0 = no max */
	UT_hash_handle hh;
};

struct pend {
	enum pend_kind kind;
	struct ws_span *span;
	struct ws_nats_conn *nc;
	uint64_t start_ns;
	uint32_t tgid, tid;
	char *key; /* request: reply subject; process: its reply-to */
	char stream[64], consumer[64]; /* pull */
	bool keyed;
	UT_hash_handle hh;	    /* b->requests or b->replies, by key */
	struct pend *prev, *next;   /* b->age: oldest first */
	struct pend *cprev, *cnext; /* nc->pends */
	struct pend *tprev, *tnext; /* thread->procs (process spans) */
	struct thread *thr;
	/* process: when its thread read the connection again (0: not yet);
	 * on b->ending until the grace period is over */
	uint64_t read_end;
	struct pend *eprev, *enext;
	/* process: the server hop to parent to, if it shows up by the end */
	uint8_t delivery[8];
	bool want_delivery;
};

/*
 * Records are handled in the order their syscalls exited, so the reply that
 * ended a process span can arrive after the thread's next read. A read only
 * marks the end; the span is closed a little later, by the earliest
 * evidence seen by then.
 */
#define READ_END_GRACE_NS (100ull * 1000000ull)

struct thread {
	uint64_t key;	    /* tgid << 32 | tid */
	struct pend *procs; /* open process spans, newest last */
	UT_hash_handle hh;
};

/* A remembered span to link or parent to: by fingerprint, delivery id or
 * ack subject hash. */
struct recent {
	uint64_t key;
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint64_t ts;
	bool used;    /* holds an entry */
	bool hashed;  /* the newest entry of its key (the one in by_key) */
	uint32_t gen; /* bumped on every reuse of the slot */
	/* the entry of the same key this one superseded, if still there */
	uint32_t older, older_gen;
	/* evidence ring: the server connection (its tag) that delivered this
	 * PUB last; 0 for none */
	uint32_t taken_by;
};

#define NO_OLDER UINT32_MAX

/* by_key: open addressing with linear probing, the key kept next to its
 * slot number so that a lookup reads one cache line of the index (uthash
 * chased two or three pointers through 6 MiB rings: a quarter of the span
 * builder's time). Twice as many entries as slots: probes stay short. */
struct recent_idx {
	uint64_t key;
	uint32_t slot; /* IDX_EMPTY: free */
};

#define IDX_EMPTY UINT32_MAX

struct recent_ring {
	struct recent *slots;
	size_t cap;   /* at most this many entries */
	size_t alloc; /* slots allocated: grows by doubling up to cap */
	size_t next;  /* the slot written next; the oldest entry once full */
	struct recent_idx *by_key;
	size_t mask;	/* entries of by_key - 1 */
	uint32_t epoch; /* bumped when ring_grow renumbers the slots */
};

struct ws_nats_conn {
	struct ws_nats_spans *b;
	struct ws_nats_conn_info info;
	struct ws_nats_parser *parser[2];
	struct ws_nats_conn_side {
		struct ws_nats_conn *nc;
		uint8_t dir;
	} side[2];
	/* the bytes being fed */
	uint32_t tid;
	uint64_t ts;
	/* identity */
	char *server_id, *server_name, *server_version, *client_ip;
	uint64_t client_id;
	bool have_client_id;
	uint32_t tag; /* names this connection in recent.taken_by */
	/* evidence_for's last pick here (see there) */
	struct twin_mark {
		uint64_t key, newest_ts, steals;
		uint32_t slot, gen, epoch;
		bool ok;
	} twin;
	char *name, *lang, *version, *user, *nkey, *jwt_sub, *jwt_name,
		*jwt_account;
	struct nats_sub *subs;
	unsigned n_subs;
	struct pend *pends;
	/* open process spans of this connection that await their reply:
	 * requests being served; served: the one, when serving is 1 and it
	 * has been found (NULL: not yet looked for) */
	unsigned serving;
	struct pend *served;
	/* last pull receive span, for the deliveries after its first */
	uint8_t pull_trace[16], pull_span[8];
	char pull_stream[64], pull_consumer[64];
	bool have_pull;
	/* the address and identity attributes every span of this connection
	 * gets, built once per INFO/CONNECT and copied in as a block */
	struct ws_attr shared_store[24];
	struct ws_attrs shared;
	bool shared_ok;
	/* the same, and the peer's attributes if blk_has_peer (as they were
	 * at blk_peer_gen), in a block that spans use in place (NULL: no
	 * memory, copied instead) */
	struct ws_attr_block *shared_blk;
	bool blk_has_peer;
	uint32_t blk_peer_gen;
};

struct ws_nats_spans {
	struct ws_nats_spans_cfg cfg;
	ws_span_emit_fn emit;
	void *ctx;
	struct pend *requests; /* by reply subject */
	struct pend *replies;  /* process spans by their reply-to */
	struct pend *age;
	struct pend *ending; /* process spans whose thread read again */
	unsigned n_pend;
	struct thread *threads;
	struct recent_ring pubs;       /* client publishes, by fingerprint */
	struct recent_ring deliveries; /* server deliveries, by delivery id */
	struct recent_ring evidence;   /* server-read PUBs, by fingerprint */
	uint32_t next_tag;	       /* tags of server-side connections */
	struct recent_ring acks;       /* deliveries, by ack subject hash */
	/* client PUBs by their derived id: the trace they are in and the span
	 * that stands for them (a reply PUB stands for its process span) */
	struct recent_ring pub_ids;
	/* new_span's first attributes (messaging.system and the operation's
	 * name and type) per operation, as attribute blocks: op and optype
	 * are string literals, told apart by address */
	struct op_blk {
		const char *op, *optype;
		struct ws_attr_block *blk;
	} op_blks[16];
	unsigned n_op_blks;
	/* evidence marks that one connection took over from another */
	uint64_t twin_steals;
	struct ws_nats_spans_stats st;
};

static const struct ws_nats_cb frame_cb;

/* ---- small helpers ------------------------------------------------------ */

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static bool str_eq(struct ws_nats_str s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static bool str_prefix(struct ws_nats_str s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len >= n && memcmp(s.ptr, lit, n) == 0;
}

/* Copy a frame string into a NUL-terminated buffer (cut to cap - 1). */
static const char *cstr(struct ws_nats_str s, char *buf, size_t cap)
{
	size_t n = s.len < cap - 1 ? s.len : cap - 1;

	memcpy(buf, s.ptr, n);
	buf[n] = '\0';
	return buf;
}

/* Inputs of at most this many bytes are hashed in one call from a copy
 * on the stack: the same hash as XXH3's streaming API over the pieces (the
 * one-shot and streaming functions agree on any input), at a fraction of
 * its cost for a few hundred bytes (its state is 576 bytes to reset). */
#define HASH_BUF 2048
_Static_assert(HASH_BUF > 1 + sizeof(uint64_t) + FP_PAYLOAD_BYTES,
	       "the fingerprint's stack copy holds a subject and its payload");

uint64_t ws_nats_fingerprint(const char *subject, size_t subject_len,
			     uint64_t size, const uint8_t *payload,
			     size_t avail, bool *ok)
{
	size_t want = size < FP_PAYLOAD_BYTES ? size : FP_PAYLOAD_BYTES;
	uint8_t buf[HASH_BUF];
	XXH3_state_t st;
	uint8_t zero = 0;

	*ok = avail >= want;
	if (!*ok)
		return 0;
	if (subject_len <= sizeof(buf) - 1 - sizeof(size) - want) {
		memcpy(buf, subject, subject_len);
		buf[subject_len] = 0;
		memcpy(buf + subject_len + 1, &size, sizeof(size));
		memcpy(buf + subject_len + 1 + sizeof(size), payload, want);
		return XXH3_64bits(buf, subject_len + 1 + sizeof(size) + want);
	}
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, subject, subject_len);
	XXH3_64bits_update(&st, &zero, 1);
	XXH3_64bits_update(&st, &size, sizeof(size));
	XXH3_64bits_update(&st, payload, want);
	return XXH3_64bits_digest(&st);
}

/* An id both ends of a connection can compute from what both saw: the
 * server's id, the client id it assigned, and a frame's stream offset. */
static bool derive_id(const struct ws_nats_conn *nc, const char *tag,
		      uint64_t offset, uint8_t *out, size_t n)
{
	size_t tl, sl;
	uint8_t buf[HASH_BUF];
	XXH128_hash_t h;
	XXH3_state_t st;

	if (nc->info.preexisting || !nc->server_id || !nc->have_client_id)
		return false;
	tl = strlen(tag) + 1;
	sl = strlen(nc->server_id) + 1;
	if (tl + sl <= sizeof(buf) - 16) {
		memcpy(buf, tag, tl);
		memcpy(buf + tl, nc->server_id, sl);
		memcpy(buf + tl + sl, &nc->client_id, 8);
		memcpy(buf + tl + sl + 8, &offset, 8);
		h = XXH3_128bits(buf, tl + sl + 16);
	} else {
		XXH3_128bits_reset(&st);
		XXH3_128bits_update(&st, tag, tl);
		XXH3_128bits_update(&st, nc->server_id, sl);
		XXH3_128bits_update(&st, &nc->client_id, sizeof(nc->client_id));
		XXH3_128bits_update(&st, &offset, sizeof(offset));
		h = XXH3_128bits_digest(&st);
	}
	memcpy(out, &h.low64, n < 8 ? n : 8);
	if (n > 8)
		memcpy(out + 8, &h.high64, n - 8);
	if (ws_id_is_zero(out, n))
		out[0] = 1;
	return true;
}

/* ---- recent rings ------------------------------------------------------- */

/*
 * A ring starts small and doubles, up to its cap, only when the entry it
 * would overwrite is still within the time it can be linked to: an idle or
 * quiet host keeps a few KiB per ring instead of the full 5.5 MiB.
 */
#define RING_START 1024

/* An index of at least twice n entries, all empty (NULL on ENOMEM). */
static struct recent_idx *idx_new(size_t n, size_t *mask)
{
	size_t m = 2, i;
	struct recent_idx *ix;

	while (m < 2 * n)
		m *= 2;
	ix = malloc(m * sizeof(*ix));
	if (!ix)
		return NULL;
	for (i = 0; i < m; i++)
		ix[i].slot = IDX_EMPTY;
	*mask = m - 1;
	return ix;
}

static int ring_init(struct recent_ring *r, size_t cap)
{
	r->cap = cap;
	r->alloc = cap < RING_START ? cap : RING_START;
	r->next = 0;
	r->slots = calloc(r->alloc, sizeof(*r->slots));
	r->by_key = idx_new(r->alloc, &r->mask);
	if (!r->slots || !r->by_key)
		return -ENOMEM;
	return 0;
}

static struct recent_idx *idx_find(const struct recent_ring *r, uint64_t key);

/*
 * Double r (at most to its cap), keeping its order: the oldest entry, at
 * next, moves to slot 0, chains of older entries are renumbered, and the
 * index is rebuilt. After it, next is the first free slot.
 */
static int ring_grow(struct recent_ring *r)
{
	size_t old = r->alloc, n = old * 2 < r->cap ? old * 2 : r->cap;
	size_t i, to, mask;
	struct recent *s = calloc(n, sizeof(*s));
	struct recent_idx *ix = idx_new(n, &mask), *x;

	if (!s || !ix) {
		free(s);
		free(ix);
		return -ENOMEM;
	}
	for (i = 0; i < old; i++) {
		to = (i + old - r->next) % old;
		s[to] = r->slots[i];
		if (s[to].older != NO_OLDER)
			s[to].older =
				(uint32_t)((s[to].older + old - r->next) % old);
	}
	free(r->slots);
	free(r->by_key);
	r->slots = s;
	r->by_key = ix;
	r->mask = mask;
	r->alloc = n;
	r->next = old;
	r->epoch++;
	for (i = 0; i < old; i++) {
		if (!s[i].used || !s[i].hashed)
			continue;
		x = idx_find(r, s[i].key);
		x->key = s[i].key;
		x->slot = (uint32_t)i;
	}
	return 0;
}

static void ring_free(struct recent_ring *r)
{
	free(r->by_key);
	free(r->slots);
}

static size_t idx_home(const struct recent_ring *r, uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & r->mask;
}

/* The index entry of key, or the free entry where it would go. */
static struct recent_idx *idx_find(const struct recent_ring *r, uint64_t key)
{
	size_t i = idx_home(r, key);

	while (r->by_key[i].slot != IDX_EMPTY && r->by_key[i].key != key)
		i = (i + 1) & r->mask;
	return &r->by_key[i];
}

/* Remove key's entry, shifting back the entries of its probe run that
 * would not be found past the hole (no tombstones). */
static void idx_del(struct recent_ring *r, uint64_t key)
{
	size_t i = (size_t)(idx_find(r, key) - r->by_key), j = i, home;

	if (r->by_key[i].slot == IDX_EMPTY)
		return;
	for (;;) {
		j = (j + 1) & r->mask;
		if (r->by_key[j].slot == IDX_EMPTY)
			break;
		home = idx_home(r, r->by_key[j].key);
		/* j stays if its home lies cyclically in (i, j] */
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		r->by_key[i] = r->by_key[j];
		i = j;
	}
	r->by_key[i].slot = IDX_EMPTY;
}

static struct recent *idx_get(const struct recent_ring *r, uint64_t key)
{
	const struct recent_idx *x = idx_find(r, key);

	return x->slot == IDX_EMPTY ? NULL : &r->slots[x->slot];
}

/* Can e still be linked to at time ts? */
static bool recent_fresh(const struct ws_nats_spans *b, const struct recent *e,
			 uint64_t ts)
{
	return ts < e->ts || ts - e->ts <= b->cfg.recent_ttl_ns;
}

static void ring_put(struct ws_nats_spans *b, struct recent_ring *r,
		     uint64_t key, const uint8_t trace[16],
		     const uint8_t span[8], uint64_t ts)
{
	struct recent *e, *old;
	struct recent_idx *x;

	if (r->next == r->alloc)
		r->next = 0;
	e = &r->slots[r->next];
	/* The index entries of the new key and of the one it evicts are at
	 * random places of a MiB-sized index, each a cache miss at 100k
	 * messages/s: start both loads at once, not one after the other. */
	__builtin_prefetch(&r->by_key[idx_home(r, key)], 1);
	if (e->used)
		__builtin_prefetch(&r->by_key[idx_home(r, e->key)], 1);
	/* Overwrite the oldest entry only once it can no longer be linked
	 * to, or the ring is at its cap (or cannot grow): that is counted. */
	if (e->used && recent_fresh(b, e, ts) && r->alloc < r->cap &&
	    ring_grow(r) == 0)
		e = &r->slots[r->next];
	r->next++;
	if (e->used) {
		if (e->hashed)
			idx_del(r, e->key);
		if (recent_fresh(b, e, ts))
			b->st.recent_evicted++;
		e->used = e->hashed = false;
	}
	/* The newest entry of a key is found by hash; older ones stay in
	 * the ring, chained, for lookups of an earlier time. */
	x = idx_find(r, key);
	old = x->slot == IDX_EMPTY ? NULL : &r->slots[x->slot];
	e->older = NO_OLDER;
	if (old) {
		old->hashed = false;
		e->older = (uint32_t)(old - r->slots);
		e->older_gen = old->gen;
	}
	e->gen++;
	e->taken_by = 0;
	e->key = key;
	memcpy(e->trace_id, trace, 16);
	memcpy(e->span_id, span, 8);
	e->ts = ts;
	e->used = e->hashed = true;
	x->key = key;
	x->slot = (uint32_t)(e - r->slots);
}

/* The newest entry of key recorded no later than ts_max. */
static const struct recent *ring_get_before(struct ws_nats_spans *b,
					    struct recent_ring *r, uint64_t key,
					    uint64_t ts_max)
{
	const struct recent *e = idx_get(r, key);

	while (e && e->ts > ts_max) {
		const struct recent *o;

		if (e->older == NO_OLDER)
			return NULL;
		o = &r->slots[e->older];
		if (!o->used || o->gen != e->older_gen || o->key != key)
			return NULL;
		e = o;
	}
	if (!e || ts_max - e->ts > b->cfg.recent_ttl_ns)
		return NULL;
	return e;
}

static const struct recent *ring_get(struct ws_nats_spans *b,
				     struct recent_ring *r, uint64_t key,
				     uint64_t now)
{
	const struct recent *e = idx_get(r, key);

	if (!e || (now > e->ts && now - e->ts > b->cfg.recent_ttl_ns))
		return NULL;
	return e;
}

static uint64_t id8_key(const uint8_t id[8])
{
	uint64_t k;

	memcpy(&k, id, 8);
	return k;
}

/* ---- spans -------------------------------------------------------------- */

static void emit(struct ws_nats_spans *b, struct ws_span *s)
{
	if (s->kind < 6)
		b->st.spans[s->kind]++;
	b->emit(b->ctx, s);
}

static void put_addr_attrs(struct ws_attrs *a, const struct ws_nats_conn *nc)
{
	const struct ws_nats_conn_info *in = &nc->info;

	ws_attrs_cstr(a, "network.peer.address", in->raddr);
	ws_attrs_int(a, "network.peer.port", in->rport);
	if (in->role == WS_ROLE_SERVER) {
		ws_attrs_cstr(a, "server.address", in->laddr);
		ws_attrs_int(a, "server.port", in->lport);
		ws_attrs_cstr(a, "client.address", in->raddr);
		ws_attrs_int(a, "client.port", in->rport);
	} else {
		ws_attrs_cstr(a, "server.address", in->raddr);
		ws_attrs_int(a, "server.port", in->rport);
	}
}

/* Identity strings of a connection and the attribute each becomes. */
static const struct {
	const char *key;
	size_t off;
} identity_attrs[] = {
	{"nats.server.id", offsetof(struct ws_nats_conn, server_id)},
	{"nats.server.name", offsetof(struct ws_nats_conn, server_name)},
	{"nats.server.version", offsetof(struct ws_nats_conn, server_version)},
	{"nats.client.ip", offsetof(struct ws_nats_conn, client_ip)},
	{"nats.client.name", offsetof(struct ws_nats_conn, name)},
	{"nats.client.lang", offsetof(struct ws_nats_conn, lang)},
	{"nats.client.version", offsetof(struct ws_nats_conn, version)},
	{"nats.user", offsetof(struct ws_nats_conn, user)},
	{"nats.nkey", offsetof(struct ws_nats_conn, nkey)},
	{"nats.jwt.sub", offsetof(struct ws_nats_conn, jwt_sub)},
	{"nats.jwt.name", offsetof(struct ws_nats_conn, jwt_name)},
	{"nats.account", offsetof(struct ws_nats_conn, jwt_account)},
};

static char **identity_field(const struct ws_nats_conn *nc, size_t i)
{
	return (char **)((char *)nc + identity_attrs[i].off);
}

static void put_identity(struct ws_attrs *a, const struct ws_nats_conn *nc)
{
	size_t i;

	if (nc->have_client_id)
		ws_attrs_int(a, "messaging.client.id", (int64_t)nc->client_id);
	for (i = 0; i < sizeof(identity_attrs) / sizeof(identity_attrs[0]);
	     i++) {
		const char *v = *identity_field(nc, i);

		if (v)
			ws_attrs_cstr(a, identity_attrs[i].key, v);
	}
}

/* Set the connection's shared attributes in a (rebuilt after INFO or
 * CONNECT), then its peer's. Both go in one block while the peer's
 * attributes are those the block was made with (their gen) and share no
 * key with the connection's (so that the block gives what copying the two
 * one after the other gives). */
static void put_shared_attrs(struct ws_attrs *a, struct ws_nats_conn *nc)
{
	const struct ws_resource *peer = nc->info.peer;
	struct ws_attr
		store[sizeof(nc->shared_store) / sizeof(nc->shared_store[0]) +
		      WS_RESOURCE_MAX_ATTRS];
	struct ws_attrs both;
	uint16_t i;

	if (!nc->shared_ok || (peer && peer->a.gen != nc->blk_peer_gen)) {
		if (!nc->shared_ok) {
			ws_attrs_clear(&nc->shared);
			nc->shared.dropped = nc->shared.cut = 0;
			put_addr_attrs(&nc->shared, nc);
			put_identity(&nc->shared, nc);
			nc->shared_ok = true;
		}
		ws_attrs_init(&both, store, sizeof(store) / sizeof(store[0]));
		ws_attrs_copy(&both, &nc->shared);
		nc->blk_has_peer = peer != NULL;
		for (i = 0; peer && i < peer->a.n; i++)
			if (ws_attrs_get(&nc->shared, peer->a.v[i].key))
				nc->blk_has_peer = false;
		if (nc->blk_has_peer)
			ws_attrs_copy(&both, &peer->a);
		nc->blk_peer_gen = peer ? peer->a.gen : 0;
		ws_attr_block_put(nc->shared_blk);
		nc->shared_blk = ws_attr_block_new(&both);
		ws_attrs_clear(&both);
	}
	if (nc->shared_blk)
		ws_attrs_add_block(a, nc->shared_blk);
	else
		ws_attrs_copy(a, &nc->shared);
	/* the peer may be learnt after the connection opened */
	if (peer && !(nc->shared_blk && nc->blk_has_peer))
		ws_attrs_copy(a, &peer->a);
}

static bool is_inbox(struct ws_nats_str s)
{
	return str_prefix(s, "_INBOX.");
}

static void put_destination(struct ws_span *s, struct ws_nats_str subject)
{
	ws_attrs_str(&s->a, "messaging.destination.name", subject.ptr,
		     subject.len);
	if (is_inbox(subject)) {
		ws_attrs_cstr(&s->a, "messaging.destination.template",
			      "_INBOX.*");
		ws_attrs_bool(&s->a, "messaging.destination.temporary", true);
	}
}

static void put_op_attrs(struct ws_attrs *a, const char *op, const char *optype)
{
	ws_attrs_cstr(a, "messaging.system", "nats");
	ws_attrs_cstr(a, "messaging.operation.name", op);
	ws_attrs_cstr(a, "messaging.operation.type", optype);
}

/* The block of put_op_attrs(op, optype), made on first use; NULL when out
 * of memory or room (the attributes are then set one by one). */
static struct ws_attr_block *op_block(struct ws_nats_spans *b, const char *op,
				      const char *optype)
{
	struct ws_attr store[3];
	struct ws_attrs a;
	struct op_blk *o;
	unsigned i;

	for (i = 0; i < b->n_op_blks; i++)
		if (b->op_blks[i].op == op && b->op_blks[i].optype == optype)
			return b->op_blks[i].blk;
	if (b->n_op_blks == sizeof(b->op_blks) / sizeof(b->op_blks[0]))
		return NULL;
	ws_attrs_init(&a, store, 3);
	put_op_attrs(&a, op, optype);
	o = &b->op_blks[b->n_op_blks];
	o->blk = ws_attr_block_new(&a);
	ws_attrs_clear(&a);
	if (!o->blk)
		return NULL;
	o->op = op;
	o->optype = optype;
	b->n_op_blks++;
	return o->blk;
}

/* A span of connection nc with the attributes every NATS span has. */
static struct ws_span *new_span(struct ws_nats_conn *nc, const char *op,
				const char *optype, struct ws_nats_str dest,
				uint8_t kind)
{
	char name[MAX_SUBJECT + 32];
	struct ws_attr_block *ob;
	struct ws_span *s;
	size_t n = strlen(op), d;

	/* "<op> <subject>" (as snprintf did it: op whole, subject cut) */
	if (n > sizeof(name) - 1)
		n = sizeof(name) - 1;
	memcpy(name, op, n);
	if (dest.len && n < sizeof(name) - 1) {
		struct ws_nats_str shown = dest;

		if (is_inbox(dest))
			shown = (struct ws_nats_str){"_INBOX.*", 8};
		else if (shown.len > MAX_SUBJECT - 1)
			shown.len = MAX_SUBJECT - 1;
		name[n++] = ' ';
		d = shown.len < sizeof(name) - 1 - n ? shown.len
						     : sizeof(name) - 1 - n;
		memcpy(name + n, shown.ptr, d);
		n += d;
	}
	name[n] = '\0';
	s = ws_span_new(name, kind, nc->ts, NULL);
	if (!s) {
		nc->b->st.nomem++;
		return NULL;
	}
	s->domain = WS_DOMAIN_NATS;
	ws_span_set_resource(s, nc->info.resource);
	ob = op_block(nc->b, op, optype);
	if (ob)
		ws_attrs_add_block(&s->a, ob);
	else
		put_op_attrs(&s->a, op, optype);
	if (dest.len)
		put_destination(s, dest);
	put_shared_attrs(&s->a, nc);
	ws_attrs_int(&s->a, "thread.id", nc->tid);
	return s;
}

static void put_sizes(struct ws_span *s, const struct ws_nats_frame *f)
{
	ws_attrs_int(&s->a, "messaging.message.body.size",
		     (int64_t)(f->total_len - f->hdr_len));
	ws_attrs_int(&s->a, "messaging.message.envelope.size",
		     (int64_t)f->wire_len);
	if (f->flags & (WS_NATS_F_GAP | WS_NATS_F_TRUNCATED))
		ws_attrs_bool(&s->a, "wirespan.payload.truncated", true);
}

static void put_fingerprint(struct ws_nats_spans *b, struct ws_span *s,
			    uint64_t fp, bool ok)
{
	char hex[17];

	if (!ok) {
		b->st.no_fingerprint++;
		return;
	}
	ws_id_hex((const uint8_t *)&fp, 8, hex);
	ws_attrs_cstr(&s->a, "wirespan.message.fingerprint", hex);
}

static uint64_t frame_fingerprint(const struct ws_nats_frame *f, bool *ok)
{
	return ws_nats_fingerprint(f->subject.ptr, f->subject.len,
				   f->total_len - f->hdr_len, f->payload,
				   f->payload_len, ok);
}

/* W3C traceparent: 00-<32 hex>-<16 hex>-<2 hex> */
static bool parse_traceparent(const struct ws_nats_frame *f, uint8_t trace[16],
			      uint8_t span[8], uint8_t *flags)
{
	const struct ws_nats_header *h;
	const char *v;
	uint8_t fl;

	h = ws_nats_header_find(&f->headers, "traceparent", NULL);
	if (!h || h->value.len < 55)
		return false;
	v = h->value.ptr;
	if (v[2] != '-' || v[35] != '-' || v[52] != '-' ||
	    ws_id_parse(v + 3, 32, trace, 16) ||
	    ws_id_parse(v + 36, 16, span, 8) || ws_id_parse(v + 53, 2, &fl, 1))
		return false;
	if (ws_id_is_zero(trace, 16) || ws_id_is_zero(span, 8))
		return false;
	*flags = fl;
	return true;
}

/* Apply a traceparent header: parent if the span has none, else a link. */
static void apply_traceparent(struct ws_nats_spans *b, struct ws_span *s,
			      const struct ws_nats_frame *f)
{
	const struct ws_nats_header *ts;
	uint8_t trace[16], span[8], fl;

	if (!parse_traceparent(f, trace, span, &fl))
		return;
	b->st.parent_traceparent++;
	if (s->has_parent) {
		ws_span_add_link(s, trace, span, fl);
		return;
	}
	ws_span_set_parent(s, trace, span);
	s->flags = fl | 0x300; /* parent is remote */
	ts = ws_nats_header_find(&f->headers, "tracestate", NULL);
	if (ts && ts->value.len) {
		free(s->trace_state);
		s->trace_state = dupn(ts->value.ptr, ts->value.len);
	}
}

static void put_msg_id(struct ws_span *s, const struct ws_nats_frame *f)
{
	const struct ws_nats_header *h =
		ws_nats_header_find(&f->headers, "Nats-Msg-Id", NULL);

	if (h)
		ws_attrs_str(&s->a, "messaging.message.id", h->value.ptr,
			     h->value.len);
}

/* ---- pending spans ------------------------------------------------------ */

static struct thread *thread_get(struct ws_nats_spans *b, uint32_t tgid,
				 uint32_t tid, bool create)
{
	uint64_t key = (uint64_t)tgid << 32 | tid;
	struct thread *t;

	HASH_FIND(hh, b->threads, &key, sizeof(key), t);
	if (t || !create)
		return t;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->key = key;
	HASH_ADD(hh, b->threads, key, sizeof(t->key), t);
	return t;
}

static void pend_unlink(struct ws_nats_spans *b, struct pend *p)
{
	if (p->keyed && p->kind == PEND_PROCESS && p->nc) {
		p->nc->serving--;
		p->nc->served = NULL;
	}
	if (p->keyed) {
		if (p->kind == PEND_PROCESS)
			HASH_DEL(b->replies, p);
		else
			HASH_DEL(b->requests, p);
		p->keyed = false;
	}
	DL_DELETE2(b->age, p, prev, next);
	if (p->read_end)
		DL_DELETE2(b->ending, p, eprev, enext);
	if (p->nc)
		DL_DELETE2(p->nc->pends, p, cprev, cnext);
	if (p->thr) {
		DL_DELETE2(p->thr->procs, p, tprev, tnext);
		if (!p->thr->procs) {
			HASH_DEL(b->threads, p->thr);
			free(p->thr);
		}
		p->thr = NULL;
	}
	b->n_pend--;
}

/* End p at end_ns, emit its span, free it. */
static void pend_end(struct ws_nats_spans *b, struct pend *p, uint64_t end_ns)
{
	/* the first evidence of the end wins */
	if (p->read_end && p->read_end < end_ns)
		end_ns = p->read_end;
	if (p->want_delivery) {
		const struct recent *r = ring_get(b, &b->deliveries,
						  id8_key(p->delivery), end_ns);

		if (r && !memcmp(r->trace_id, p->span->trace_id, 16)) {
			memcpy(p->span->parent_span_id, r->span_id, 8);
			p->span->has_parent = true;
			b->st.parent_delivery++;
		}
	}
	pend_unlink(b, p);
	p->span->end_ns = end_ns > p->start_ns ? end_ns : p->start_ns;
	emit(b, p->span);
	free(p->key);
	free(p);
}

static struct pend *pend_add(struct ws_nats_spans *b, struct ws_nats_conn *nc,
			     enum pend_kind kind, struct ws_span *s,
			     struct ws_nats_str key)
{
	struct pend *p;

	if (b->n_pend >= WS_NS_MAX_PENDING && b->age) {
		/* Full: the oldest ends now, marked, rather than growing. */
		b->st.pending_evicted++;
		ws_attrs_cstr(&b->age->span->a, "wirespan.end", "evicted");
		pend_end(b, b->age, nc->ts);
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		b->st.nomem++;
		return NULL;
	}
	p->kind = kind;
	p->span = s;
	p->nc = nc;
	p->start_ns = nc->ts;
	p->tgid = nc->info.tgid;
	p->tid = nc->tid;
	if (key.len) {
		p->key = dupn(key.ptr, key.len);
		if (p->key) {
			if (kind == PEND_PROCESS)
				HASH_ADD_KEYPTR(hh, b->replies, p->key,
						strlen(p->key), p);
			else
				HASH_ADD_KEYPTR(hh, b->requests, p->key,
						strlen(p->key), p);
			p->keyed = true;
			if (kind == PEND_PROCESS) {
				nc->serving++;
				nc->served = nc->serving == 1 ? p : NULL;
			}
		}
	}
	DL_APPEND2(b->age, p, prev, next);
	DL_APPEND2(nc->pends, p, cprev, cnext);
	if (kind == PEND_PROCESS) {
		p->thr = thread_get(b, p->tgid, p->tid, true);
		if (p->thr)
			DL_APPEND2(p->thr->procs, p, tprev, tnext);
	}
	b->n_pend++;
	return p;
}

static struct pend *find_key(struct pend *hash, struct ws_nats_str key)
{
	struct pend *p;

	HASH_FIND(hh, hash, key.ptr, key.len, p);
	return p;
}

/* The innermost open process span of the current thread, if any. */
static struct pend *current_process(struct ws_nats_conn *nc)
{
	struct thread *t = thread_get(nc->b, nc->info.tgid, nc->tid, false);

	return t && t->procs ? t->procs->tprev : NULL;
}

/* The one request this connection is serving (a process span awaiting its
 * reply), if exactly one is open. Go handlers publish from goroutines
 * that its runtime runs on any thread, and nats.go's flusher writes the
 * buffered PUBs on yet another: with one request in progress on the
 * connection, a PUB made meanwhile belongs to it whatever the thread. */
static struct pend *sole_request_served(struct ws_nats_conn *nc)
{
	struct pend *p;

	if (nc->serving != 1)
		return NULL;
	if (nc->served)
		return nc->served;
	/* down to one from more: found once, then remembered (the walk of
	 * the connection's open spans is not repeated per publish) */
	DL_FOREACH2(nc->pends, p, cnext)
	{
		if (p->kind == PEND_PROCESS && p->keyed)
			return nc->served = p;
	}
	return NULL;
}

/* ---- identity from INFO / CONNECT --------------------------------------- */

static char *json_str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return strdup(json_object_get_string(v));
}

static json_object *parse_json(struct ws_nats_spans *b, const char *s,
			       size_t len)
{
	json_tokener *tok = json_tokener_new();
	json_object *o;

	if (!tok)
		return NULL;
	o = json_tokener_parse_ex(tok, s, (int)len);
	json_tokener_free(tok);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		b->st.bad_json++;
		return NULL;
	}
	return o;
}

static void set_str(char **field, char *v)
{
	free(*field);
	*field = v;
}

static void on_info(struct ws_nats_conn *nc, const struct ws_nats_frame *f)
{
	json_object *o = parse_json(nc->b, f->json.ptr, f->json.len), *v;

	if (!o)
		return;
	nc->shared_ok = false;
	/* INFO may come again (cluster changes): the newest wins. */
	set_str(&nc->server_id, json_str(o, "server_id"));
	set_str(&nc->server_name, json_str(o, "server_name"));
	set_str(&nc->server_version, json_str(o, "version"));
	set_str(&nc->client_ip, json_str(o, "client_ip"));
	if (json_object_object_get_ex(o, "client_id", &v) &&
	    json_object_is_type(v, json_type_int)) {
		nc->client_id = (uint64_t)json_object_get_int64(v);
		nc->have_client_id = true;
	}
	/* The client->server parser never sees INFO: tell it the limit. */
	if (f->info_max_payload)
		ws_nats_parser_set_max_payload(
			nc->parser[nc->info.role == WS_ROLE_SERVER
					   ? WS_DIR_INGRESS
					   : WS_DIR_EGRESS],
			f->info_max_payload);
	json_object_put(o);
}

json_object *ws_jwt_claims(const char *jwt, size_t len)
{
	const char *p1 = memchr(jwt, '.', len), *p2;
	uint8_t buf[8192];

	if (!p1)
		return NULL;
	p2 = memchr(p1 + 1, '.', len - (size_t)(p1 + 1 - jwt));
	if (!p2)
		return NULL;
	return ws_jwt_part_json(p1 + 1, (size_t)(p2 - p1 - 1), buf,
				sizeof(buf));
}

/*
 * CONNECT carries identity and secrets. Only the fields the redaction
 * policy allows (name, lang, version, user, the public nkey) and decoded
 * non-secret JWT claims are kept; pass, auth_token, sig and the raw JWT
 * are never copied anywhere.
 */
static char *connect_field(struct ws_nats_conn *nc, json_object *o,
			   const char *key)
{
	return ws_redact_nats_connect_keep(&nc->b->cfg.redact, key)
		       ? json_str(o, key)
		       : NULL;
}

const char *ws_nats_conn_client_name(const struct ws_nats_conn *nc)
{
	return nc ? nc->name : NULL;
}

static void on_connect(struct ws_nats_conn *nc, const struct ws_nats_frame *f)
{
	json_object *o = parse_json(nc->b, f->json.ptr, f->json.len), *v;

	if (!o)
		return;
	nc->shared_ok = false;
	/* A second CONNECT (a confused or hostile stream) replaces the
	 * first; nothing is leaked. */
	set_str(&nc->name, connect_field(nc, o, "name"));
	set_str(&nc->lang, connect_field(nc, o, "lang"));
	set_str(&nc->version, connect_field(nc, o, "version"));
	set_str(&nc->user, connect_field(nc, o, "user"));
	set_str(&nc->nkey, connect_field(nc, o, "nkey"));
	set_str(&nc->jwt_sub, NULL);
	set_str(&nc->jwt_name, NULL);
	set_str(&nc->jwt_account, NULL);
	if (json_object_object_get_ex(o, "jwt", &v) &&
	    json_object_is_type(v, json_type_string)) {
		const char *jwt = json_object_get_string(v);
		json_object *claims = ws_jwt_claims(jwt, strlen(jwt)), *nats;

		if (!claims) {
			nc->b->st.bad_json++;
		} else {
			nc->jwt_sub = json_str(claims, "sub");
			nc->jwt_name = json_str(claims, "name");
			if (json_object_object_get_ex(claims, "nats", &nats))
				nc->jwt_account =
					json_str(nats, "issuer_account");
			if (!nc->jwt_account)
				nc->jwt_account = json_str(claims, "iss");
			json_object_put(claims);
		}
	}
	json_object_put(o);
}

/* ---- subscriptions ------------------------------------------------------ */

static void on_sub(struct ws_nats_conn *nc, const struct ws_nats_frame *f)
{
	struct nats_sub *s;
	char sid[32];

	cstr(f->sid, sid, sizeof(sid));
	HASH_FIND_STR(nc->subs, sid, s);
	if (!s) {
		if (nc->n_subs >= WS_NS_MAX_SUBS) {
			nc->b->st.subs_dropped++;
			return;
		}
		s = calloc(1, sizeof(*s));
		if (!s)
			return;
		memcpy(s->sid, sid, sizeof(sid));
		HASH_ADD_STR(nc->subs, sid, s);
		nc->n_subs++;
	}
	free(s->subject);
	free(s->queue);
	s->subject = dupn(f->subject.ptr, f->subject.len);
	s->queue = f->queue.len ? dupn(f->queue.ptr, f->queue.len) : NULL;
}

static void sub_free(struct ws_nats_conn *nc, struct nats_sub *s)
{
	HASH_DEL(nc->subs, s);
	free(s->subject);
	free(s->queue);
	free(s);
	nc->n_subs--;
}

static void on_unsub(struct ws_nats_conn *nc, const struct ws_nats_frame *f)
{
	struct nats_sub *s;
	char sid[32];

	HASH_FIND_STR(nc->subs, cstr(f->sid, sid, sizeof(sid)), s);
	if (!s)
		return;
	/* Auto-unsubscribe (old-style requests send UNSUB <sid> 1): the
	 * server drops it after max messages, and so do we. */
	if (f->max_msgs)
		s->left = f->max_msgs;
	else
		sub_free(nc, s);
}

/* A MSG was delivered on sid: count it against an auto-unsubscribe. */
static void sub_delivered(struct ws_nats_conn *nc, struct ws_nats_str sidv)
{
	struct nats_sub *s;
	char sid[32];

	HASH_FIND_STR(nc->subs, cstr(sidv, sid, sizeof(sid)), s);
	if (s && s->left && --s->left == 0)
		sub_free(nc, s);
}

/* NATS subject match: '*' one token, '>' the rest. */
static bool subject_match(const char *pat, struct ws_nats_str subj)
{
	const char *s = subj.ptr, *end = subj.ptr + subj.len;

	while (*pat) {
		const char *te = memchr(s, '.', (size_t)(end - s));
		const char *pe = strchr(pat, '.');
		size_t tl = te ? (size_t)(te - s) : (size_t)(end - s);
		size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);

		if (s > end)
			return false;
		if (pl == 1 && pat[0] == '>')
			return s < end;
		if (!(pl == 1 && pat[0] == '*') &&
		    (pl != tl || memcmp(pat, s, tl)))
			return false;
		if (!pe)
			return !te;
		if (!te)
			return false;
		pat = pe + 1;
		s = te + 1;
	}
	return s >= end;
}

static bool subscribed(struct ws_nats_conn *nc, struct ws_nats_str subj)
{
	struct nats_sub *s, *tmp;

	HASH_ITER (hh, nc->subs, s, tmp) {
		if (s->subject && subject_match(s->subject, subj))
			return true;
	}
	return false;
}

/* ---- client side: what the process wrote -------------------------------- */

/* $JS.API.<op...>.<stream>...: the operation, e.g. STREAM.CREATE. */
static const char *const js_ops[] = {
	"CONSUMER.DURABLE.CREATE",
	"CONSUMER.MSG.NEXT",
	"CONSUMER.CREATE",
	"CONSUMER.DELETE",
	"CONSUMER.INFO",
	"CONSUMER.LIST",
	"CONSUMER.NAMES",
	"CONSUMER.LEADER.STEPDOWN",
	"STREAM.CREATE",
	"STREAM.UPDATE",
	"STREAM.DELETE",
	"STREAM.INFO",
	"STREAM.LIST",
	"STREAM.NAMES",
	"STREAM.PURGE",
	"STREAM.MSG.GET",
	"STREAM.MSG.DELETE",
	"STREAM.SNAPSHOT",
	"STREAM.RESTORE",
	"DIRECT.GET",
	"ACCOUNT.INFO",
	"INFO",
};

/* Returns the op and sets *rest to what follows it, or NULL. */
static const char *js_api_op(struct ws_nats_str subj, struct ws_nats_str *rest)
{
	struct ws_nats_str s = subj;
	size_t i;

	if (str_prefix(s, "$JS.API.")) {
		s.ptr += 8, s.len -= 8;
	} else if (str_prefix(s, "$JS.")) {
		/* $JS.<domain>.API. */
		const char *d = memchr(s.ptr + 4, '.', s.len - 4);

		if (!d || (size_t)(s.ptr + s.len - d) < 6 ||
		    memcmp(d, ".API.", 5))
			return NULL;
		s.len -= (size_t)(d + 5 - s.ptr);
		s.ptr = d + 5;
	} else {
		return NULL;
	}
	for (i = 0; i < sizeof(js_ops) / sizeof(js_ops[0]); i++) {
		size_t n = strlen(js_ops[i]);

		if (s.len >= n && !memcmp(s.ptr, js_ops[i], n) &&
		    (s.len == n || s.ptr[n] == '.')) {
			rest->ptr = s.ptr + n + (s.len > n);
			rest->len = s.len - n - (s.len > n);
			return js_ops[i];
		}
	}
	rest->ptr = s.ptr;
	rest->len = s.len;
	return "API";
}

static struct ws_nats_str next_token(struct ws_nats_str *s)
{
	struct ws_nats_str t = *s;
	const char *dot = memchr(s->ptr, '.', s->len);

	if (dot) {
		t.len = (size_t)(dot - s->ptr);
		s->len -= t.len + 1;
		s->ptr = dot + 1;
	} else {
		s->ptr += s->len;
		s->len = 0;
	}
	return t;
}

static const char *const ack_ops[][2] = {
	{"+ACK", "ack"},  {"-NAK", "nak"},   {"+WPI", "progress"},
	{"+NXT", "next"}, {"+TERM", "term"},
};

/* PUB to a $JS.ACK subject: a settle span linked to the delivery. */
static void on_ack(struct ws_nats_conn *nc, const struct ws_nats_frame *f)
{
	struct ws_nats_spans *b = nc->b;
	const char *op = "ack";
	struct ws_nats_js_ack ack;
	const struct recent *d;
	struct ws_nats_str dest;
	struct ws_span *s;
	struct pend *p;
	size_t i;

	for (i = 0; i < sizeof(ack_ops) / sizeof(ack_ops[0]); i++) {
		size_t n = strlen(ack_ops[i][0]);

		if (f->payload_len >= n &&
		    !memcmp(f->payload, ack_ops[i][0], n)) {
			op = ack_ops[i][1];
			break;
		}
	}
	if (ws_nats_parse_js_ack(f->subject.ptr, f->subject.len, &ack))
		memset(&ack, 0, sizeof(ack));
	dest = ack.stream;
	s = new_span(nc, op, "settle", dest, WS_SPAN_KIND_CLIENT);
	if (!s)
		return;
	b->st.settle++;
	if (ack.stream.len) {
		ws_attrs_str(&s->a, "nats.jetstream.stream", ack.stream.ptr,
			     ack.stream.len);
		ws_attrs_str(&s->a, "nats.jetstream.consumer", ack.consumer.ptr,
			     ack.consumer.len);
		ws_attrs_int(&s->a, "nats.jetstream.sequence.stream",
			     (int64_t)ack.stream_seq);
	}
	ws_attrs_str(&s->a, "nats.jetstream.ack_subject", f->subject.ptr,
		     f->subject.len);
	/* The delivery being settled: still open, or recently ended. */
	p = find_key(b->replies, f->subject);
	if (p) {
		ws_span_set_parent(s, p->span->trace_id, p->span->span_id);
		ws_span_add_link(s, p->span->trace_id, p->span->span_id, 0);
		b->st.process_end_reply++;
		pend_end(b, p, nc->ts);
	} else if ((d = ring_get(b, &b->acks,
				 XXH3_64bits(f->subject.ptr, f->subject.len),
				 nc->ts))) {
		ws_span_set_parent(s, d->trace_id, d->span_id);
		ws_span_add_link(s, d->trace_id, d->span_id, 0);
	}
	emit(b, s);
}

/* Parent a client's PUB span: ids both ends of the connection derive,
 * then the process span this thread is in, the HTTP request it handles,
 * the one request the connection serves, then its traceparent. */
static void publish_context(struct ws_nats_conn *nc,
			    const struct ws_nats_frame *f, struct ws_span *s)
{
	uint8_t trace[16], span[8];
	struct pend *proc;

	bool derived = derive_id(nc, "pub", f->offset, s->span_id, 8);

	if (derived)
		derive_id(nc, "trace", f->offset, s->trace_id, 16);
	proc = current_process(nc);
	if (proc) {
		ws_span_set_parent(s, proc->span->trace_id,
				   proc->span->span_id);
		nc->b->st.parent_in_process++;
	} else if (nc->b->cfg.parent &&
		   nc->b->cfg.parent(nc->b->cfg.parent_ctx, nc->info.tgid,
				     nc->tid, nc->ts, trace, span)) {
		/* the HTTP request this thread is handling */
		ws_span_set_parent(s, trace, span);
		nc->b->st.parent_in_process++;
	} else if ((proc = sole_request_served(nc))) {
		ws_span_set_parent(s, proc->span->trace_id,
				   proc->span->span_id);
		ws_attrs_cstr(&s->a, "wirespan.link.evidence", "sole_request");
		nc->b->st.parent_sole_request++;
	}
	apply_traceparent(nc->b, s, f);
	/* The server side derives our id but cannot know the trace we
	 * inherited: tell it, for when it is on this host too. */
	if (derived)
		ring_put(nc->b, &nc->b->pub_ids, id8_key(s->span_id),
			 s->trace_id, s->span_id, nc->ts);
}

/* A request registered after its message was already being processed
 * (the responder's read was handled first): adopt it now. */
static void adopt_early_process(struct ws_nats_conn *nc,
				const struct ws_nats_frame *f,
				const struct ws_span *req)
{
	struct pend *p = find_key(nc->b->replies, f->reply);

	if (!p)
		return;
	ws_span_set_parent(p->span, req->trace_id, req->span_id);
	nc->b->st.parent_same_host++;
}

/* Open until its reply (or a timeout); the key is the reply subject. */
static void start_request(struct ws_nats_conn *nc,
			  const struct ws_nats_frame *f, struct ws_span *s,
			  enum pend_kind kind, struct pend **out)
{
	struct pend *p;

	publish_context(nc, f, s);
	p = pend_add(nc->b, nc, kind, s, f->reply);
	if (!p)
		ws_span_free(s);
	if (out)
		*out = p;
}

static void on_publish(struct ws_nats_conn *nc, const struct ws_nats_frame *f)
{
	struct ws_nats_spans *b = nc->b;
	struct ws_nats_str rest, none = {0};
	struct pend *replied, *p;
	struct ws_span *s;
	const char *js_op;
	bool fp_ok, request;
	uint64_t fp;

	if (str_prefix(f->subject, "$JS.ACK.")) {
		on_ack(nc, f);
		return;
	}
	/* A reply to a message this process is handling: that ends its
	 * process span, and the reply itself is part of it. */
	replied = find_key(b->replies, f->subject);
	if (replied && replied->tgid == nc->info.tgid) {
		uint8_t id[8];

		ws_attrs_bool(&replied->span->a, "nats.reply.sent", true);
		/* The server's hop for this reply names the PUB's derived id:
		 * on this host, that id stands for the process span; for the
		 * relay joining hosts, the span says so. */
		if (derive_id(nc, "pub", f->offset, id, 8)) {
			char hex[17];

			ring_put(b, &b->pub_ids, id8_key(id),
				 replied->span->trace_id,
				 replied->span->span_id, nc->ts);
			ws_id_hex(id, 8, hex);
			ws_attrs_cstr(&replied->span->a,
				      "wirespan.nats.reply_id", hex);
		}
		b->st.process_end_reply++;
		pend_end(b, replied, nc->ts);
		return;
	}
	request = f->reply.len && subscribed(nc, f->reply);
	js_op = request ? js_api_op(f->subject, &rest) : NULL;
	if (js_op && !strcmp(js_op, "CONSUMER.MSG.NEXT")) {
		struct ws_nats_str stream = next_token(&rest),
				   consumer = next_token(&rest);

		s = new_span(nc, "receive", "receive", stream,
			     WS_SPAN_KIND_CLIENT);
		if (!s)
			return;
		ws_attrs_str(&s->a, "nats.jetstream.stream", stream.ptr,
			     stream.len);
		ws_attrs_str(&s->a, "nats.jetstream.consumer", consumer.ptr,
			     consumer.len);
		b->st.pull++;
		start_request(nc, f, s, PEND_PULL, &p);
		if (p) {
			cstr(stream, p->stream, sizeof(p->stream));
			cstr(consumer, p->consumer, sizeof(p->consumer));
		}
		return;
	}
	if (js_op) {
		s = new_span(nc, js_op, "send", none, WS_SPAN_KIND_CLIENT);
		if (!s)
			return;
		ws_attrs_str(&s->a, "messaging.destination.name",
			     f->subject.ptr, f->subject.len);
		ws_attrs_cstr(&s->a, "nats.jetstream.api", js_op);
		if (rest.len) {
			struct ws_nats_str stream = next_token(&rest);

			ws_attrs_str(&s->a, "nats.jetstream.stream", stream.ptr,
				     stream.len);
		}
		b->st.js_api++;
		start_request(nc, f, s, PEND_JS_API, NULL);
		return;
	}
	s = new_span(nc, request ? "send" : "publish", "send", f->subject,
		     request ? WS_SPAN_KIND_CLIENT : WS_SPAN_KIND_PRODUCER);
	if (!s)
		return;
	put_sizes(s, f);
	put_msg_id(s, f);
	fp = frame_fingerprint(f, &fp_ok);
	put_fingerprint(b, s, fp, fp_ok);
	if (f->reply.len)
		ws_attrs_str(&s->a, "nats.reply_to", f->reply.ptr,
			     f->reply.len);
	if (request) {
		b->st.request++;
		start_request(nc, f, s, PEND_REQUEST, &p);
		if (p)
			adopt_early_process(nc, f, s);
		if (p && fp_ok)
			ring_put(b, &b->pubs, fp, s->trace_id, s->span_id,
				 nc->ts);
		return;
	}
	b->st.publish++;
	publish_context(nc, f, s);
	if (fp_ok)
		ring_put(b, &b->pubs, fp, s->trace_id, s->span_id, nc->ts);
	s->end_ns = nc->ts;
	emit(b, s);
}

/* ---- client side: what the process read --------------------------------- */

static bool is_pub_ack(struct ws_nats_spans *b, const struct ws_nats_frame *f,
		       struct ws_span *s)
{
	json_object *o, *v;
	bool ok = false;

	if (!f->payload_len || f->payload[0] != '{')
		return false;
	o = parse_json(b, (const char *)f->payload, f->payload_len);
	if (!o)
		return false;
	if (json_object_object_get_ex(o, "stream", &v) &&
	    json_object_is_type(v, json_type_string)) {
		ws_attrs_cstr(&s->a, "nats.jetstream.stream",
			      json_object_get_string(v));
		if (json_object_object_get_ex(o, "seq", &v))
			ws_attrs_int(&s->a, "nats.jetstream.sequence.stream",
				     json_object_get_int64(v));
		if (json_object_object_get_ex(o, "duplicate", &v) &&
		    json_object_get_boolean(v))
			ws_attrs_bool(&s->a, "nats.jetstream.duplicate", true);
		ok = true;
	} else if (json_object_object_get_ex(o, "error", &v)) {
		json_object *d;

		ws_span_set_status(
			s, WS_STATUS_ERROR,
			json_object_object_get_ex(v, "description", &d)
				? json_object_get_string(d)
				: "jetstream error");
		ws_attrs_cstr(&s->a, "error.type", "jetstream_error");
		ok = true;
	}
	json_object_put(o);
	return ok;
}

/* A $JS.API reply that carries {"error":{...}} fails its span. */
static void js_api_error(struct ws_nats_spans *b, const struct ws_nats_frame *f,
			 struct ws_span *s)
{
	json_object *o, *e, *d;

	if (!f->payload_len || f->payload[0] != '{' ||
	    !memmem(f->payload, f->payload_len, "\"error\"", 7))
		return;
	o = parse_json(b, (const char *)f->payload, f->payload_len);
	if (!o)
		return;
	if (json_object_object_get_ex(o, "error", &e)) {
		ws_span_set_status(
			s, WS_STATUS_ERROR,
			json_object_object_get_ex(e, "description", &d)
				? json_object_get_string(d)
				: "jetstream api error");
		ws_attrs_cstr(&s->a, "error.type", "jetstream_api_error");
		if (json_object_object_get_ex(e, "err_code", &d))
			ws_attrs_int(&s->a, "nats.jetstream.err_code",
				     json_object_get_int64(d));
	}
	json_object_put(o);
}

/* The reply to an open request arrived. */
static void finish_request(struct ws_nats_conn *nc, struct pend *p,
			   const struct ws_nats_frame *f)
{
	struct ws_nats_spans *b = nc->b;
	struct ws_span *s = p->span;

	if (f->headers.status == 503) {
		ws_span_set_status(s, WS_STATUS_ERROR, "no responders");
		ws_attrs_cstr(&s->a, "error.type", "no_responders");
		b->st.request_no_responders++;
	} else if (f->headers.status >= 400 && p->kind != PEND_PULL) {
		char code[8];

		snprintf(code, sizeof(code), "%u", f->headers.status);
		ws_span_set_status(s, WS_STATUS_ERROR, NULL);
		ws_attrs_cstr(&s->a, "error.type", code);
	} else if (p->kind == PEND_JS_API) {
		js_api_error(b, f, s);
	} else if (p->kind == PEND_REQUEST && is_pub_ack(b, f, s)) {
		/* A JetStream publish: the request was a publish. */
		char name[MAX_SUBJECT + 16];
		const struct ws_attr *d =
			ws_attrs_get(&s->a, "messaging.destination.name");

		snprintf(name, sizeof(name), "publish %s",
			 d && d->type == WS_ATTR_STR ? d->s : "");
		ws_span_set_name(s, name);
		ws_attrs_cstr(&s->a, "messaging.operation.name", "publish");
		s->kind = WS_SPAN_KIND_PRODUCER;
		b->st.js_publish++;
		b->st.request--;
	}
	if (p->kind == PEND_PULL && f->headers.status) {
		ws_attrs_int(&s->a, "nats.status", f->headers.status);
		if (f->headers.status == 408 || f->headers.status == 409) {
			ws_span_set_status(s, WS_STATUS_ERROR, NULL);
			ws_attrs_cstr(&s->a, "error.type",
				      f->headers.status == 408 ? "timeout"
							       : "409");
		}
	}
	ws_attrs_int(&s->a, "messaging.message.body.size.reply",
		     (int64_t)(f->total_len - f->hdr_len));
	pend_end(b, p, nc->ts);
}

static struct pend *find_pull(struct ws_nats_conn *nc,
			      const struct ws_nats_js_ack *ack)
{
	struct pend *p;
	char stream[64], consumer[64];

	cstr(ack->stream, stream, sizeof(stream));
	cstr(ack->consumer, consumer, sizeof(consumer));
	DL_FOREACH2(nc->pends, p, cnext)
	{
		if (p->kind == PEND_PULL && !strcmp(p->stream, stream) &&
		    !strcmp(p->consumer, consumer))
			return p;
	}
	return NULL;
}

static void on_message(struct ws_nats_conn *nc, const struct ws_nats_frame *f)
{
	struct ws_nats_spans *b = nc->b;
	const struct recent *r = NULL;
	struct ws_nats_js_ack ack;
	struct nats_sub *sub;
	struct pend *p, *req;
	struct ws_span *s;
	uint8_t delivery[8];
	bool fp_ok, js, have_delivery;
	uint64_t fp;
	char sid[32];

	/* The reply to one of our requests? */
	req = find_key(b->requests, f->subject);
	if (req && req->nc == nc) {
		finish_request(nc, req, f);
		return;
	}
	js = f->reply.len &&
	     !ws_nats_parse_js_ack(f->reply.ptr, f->reply.len, &ack);
	s = new_span(nc, "process", "process", f->subject,
		     WS_SPAN_KIND_CONSUMER);
	if (!s)
		return;
	b->st.process++;
	put_sizes(s, f);
	put_msg_id(s, f);
	fp = frame_fingerprint(f, &fp_ok);
	put_fingerprint(b, s, fp, fp_ok);
	HASH_FIND_STR(nc->subs, cstr(f->sid, sid, sizeof(sid)), sub);
	if (sub && sub->queue)
		ws_attrs_cstr(&s->a, "messaging.consumer.group.name",
			      sub->queue);
	ws_attrs_cstr(&s->a, "messaging.destination.subscription.name",
		      sub && sub->subject ? sub->subject : sid);
	if (f->reply.len)
		ws_attrs_str(&s->a, "nats.reply_to", f->reply.ptr,
			     f->reply.len);
	if (js) {
		ws_attrs_str(&s->a, "nats.jetstream.stream", ack.stream.ptr,
			     ack.stream.len);
		ws_attrs_str(&s->a, "nats.jetstream.consumer", ack.consumer.ptr,
			     ack.consumer.len);
		ws_attrs_int(&s->a, "nats.jetstream.sequence.stream",
			     (int64_t)ack.stream_seq);
		ws_attrs_int(&s->a, "nats.jetstream.sequence.consumer",
			     (int64_t)ack.consumer_seq);
		ws_attrs_int(&s->a, "messaging.message.delivery_count",
			     (int64_t)ack.delivered);
		if (ack.delivered > 1)
			ws_attrs_bool(&s->a, "nats.jetstream.redelivered",
				      true);
	}
	have_delivery = derive_id(nc, "msg", f->offset, delivery, 8);
	if (have_delivery) {
		char hex[17];

		ws_id_hex(delivery, 8, hex);
		ws_attrs_cstr(&s->a, "wirespan.nats.delivery_id", hex);
	}

	/* Parent, best evidence first: the requester on this host, the pull
	 * request, the server hop seen here, the producer seen here. */
	req = f->reply.len ? find_key(b->requests, f->reply) : NULL;
	p = js ? find_pull(nc, &ack) : NULL;
	if (req) {
		ws_span_set_parent(s, req->span->trace_id, req->span->span_id);
		b->st.parent_same_host++;
	} else if (p || (js && nc->have_pull &&
			 str_eq(ack.stream, nc->pull_stream) &&
			 str_eq(ack.consumer, nc->pull_consumer))) {
		/* The first delivery ends the pull; the batch's later ones
		 * are its children too. */
		if (p) {
			memcpy(nc->pull_trace, p->span->trace_id, 16);
			memcpy(nc->pull_span, p->span->span_id, 8);
			memcpy(nc->pull_stream, p->stream, sizeof(p->stream));
			memcpy(nc->pull_consumer, p->consumer,
			       sizeof(p->consumer));
			nc->have_pull = true;
			pend_end(b, p, nc->ts);
		}
		ws_span_set_parent(s, nc->pull_trace, nc->pull_span);
	} else if (have_delivery && (r = ring_get(b, &b->deliveries,
						  id8_key(delivery), nc->ts))) {
		ws_span_set_parent(s, r->trace_id, r->span_id);
		b->st.parent_delivery++;
		have_delivery = false;
	} else if (fp_ok && (r = ring_get(b, &b->pubs, fp, nc->ts))) {
		ws_span_set_parent(s, r->trace_id, r->span_id);
		b->st.parent_same_host++;
	}
	apply_traceparent(b, s, f);
	if (js)
		ring_put(b, &b->acks, XXH3_64bits(f->reply.ptr, f->reply.len),
			 s->trace_id, s->span_id, nc->ts);
	p = pend_add(b, nc, PEND_PROCESS, s, f->reply);
	if (!p) {
		ws_span_free(s);
		return;
	}
	/* The server's write of this MSG may be handled after our read of
	 * it: look for its hop again when the span ends. */
	if (have_delivery && !req && !p->span->flags) {
		memcpy(p->delivery, delivery, 8);
		p->want_delivery = true;
	}
}

/* ---- server side: the broker hop ---------------------------------------- */

/* nats-server read a PUB from this client: remember it for the MSGs. */
static void on_server_pub(struct ws_nats_conn *nc,
			  const struct ws_nats_frame *f)
{
	uint8_t trace[16], span[8], tp_span[8], fl;
	bool fp_ok;
	uint64_t fp = frame_fingerprint(f, &fp_ok);

	if (!fp_ok) {
		nc->b->st.no_fingerprint++;
		return;
	}
	/* The publisher's span id and trace, as the publisher's host
	 * derives them (or its traceparent says); when the publisher is on
	 * this host, what it recorded for that id wins. */
	if (derive_id(nc, "pub", f->offset, span, 8)) {
		const struct recent *r =
			ring_get(nc->b, &nc->b->pub_ids, id8_key(span), nc->ts);

		if (r) {
			ring_put(nc->b, &nc->b->evidence, fp ^ nc->info.tgid,
				 r->trace_id, r->span_id, nc->ts);
			return;
		}
	} else {
		ws_id_random(span, 8);
	}
	if (!parse_traceparent(f, trace, tp_span, &fl) &&
	    !derive_id(nc, "trace", f->offset, trace, 16))
		ws_id_random(trace, 16);
	ring_put(nc->b, &nc->b->evidence, fp ^ nc->info.tgid, trace, span,
		 nc->ts);
}

/*
 * How far apart identical PUBs may be read and still be told apart on
 * delivery: the race is both being read before the first MSG is written.
 * Identical messages further apart (a heartbeat) go to the newest one.
 */
#define TWIN_WINDOW_NS (250ull * 1000000ull)

/*
 * The PUB a MSG of fingerprint key on connection nc delivers. The newest
 * identical PUB read no later than the write, unless identical PUBs were
 * read within TWIN_WINDOW_NS of it: then the oldest of them this
 * connection has not delivered yet, since a subscription gets each PUB
 * once, in the order the server read them. (Two subscribers of the same
 * twins can still be paired wrongly: one mark per PUB.)
 */
static bool is_mark(const struct recent_ring *r, const struct recent *e,
		    const struct twin_mark *m)
{
	return e == &r->slots[m->slot] && e->gen == m->gen;
}

static struct recent *evidence_for(struct ws_nats_conn *nc, uint64_t key)
{
	struct ws_nats_spans *b = nc->b;
	struct recent_ring *r = &b->evidence;
	struct twin_mark *m = &nc->twin;
	struct recent *newest, *e, *o, *pick;
	bool marked;

	newest = (struct recent *)ring_get_before(b, r, key, nc->ts);
	if (!newest)
		return NULL;
	/*
	 * The walk below costs one step per twin in the window (25 000 for
	 * identical messages at 100k/s). When this connection's last pick
	 * (m) was of this key, every twin older than it that the walk could
	 * reach was delivered here then (it was the oldest not delivered),
	 * and still is unless another connection took one over since (a
	 * steal), the slots were renumbered, or the window reaches further
	 * back (an older newest): otherwise the walk can stop at the mark,
	 * with the same pick.
	 */
	marked = m->ok && m->key == key && m->steals == b->twin_steals &&
		 m->epoch == r->epoch && newest->ts >= m->newest_ts;
	pick = newest->taken_by == nc->tag ? NULL : newest;
	for (e = newest; e->older != NO_OLDER && !(marked && is_mark(r, e, m));
	     e = o) {
		o = &r->slots[e->older];
		if (!o->used || o->gen != e->older_gen || o->key != key ||
		    newest->ts - o->ts > TWIN_WINDOW_NS)
			break;
		if (o->taken_by != nc->tag)
			pick = o;
	}
	if (!pick)
		pick = newest; /* all delivered here already: a re-delivery */
	if (pick->taken_by && pick->taken_by != nc->tag)
		b->twin_steals++;
	pick->taken_by = nc->tag;
	*m = (struct twin_mark){.key = key,
				.newest_ts = newest->ts,
				.steals = b->twin_steals,
				.slot = (uint32_t)(pick - r->slots),
				.gen = pick->gen,
				.epoch = r->epoch,
				.ok = true};
	return pick;
}

/* nats-server wrote a MSG: the delivery of the PUB remembered above. */
static void on_server_msg(struct ws_nats_conn *nc,
			  const struct ws_nats_frame *f)
{
	struct ws_nats_spans *b = nc->b;
	const struct recent *r;
	struct ws_span *s;
	uint8_t delivery[8];
	bool fp_ok;
	uint64_t fp = frame_fingerprint(f, &fp_ok);

	/* Identical messages may be in flight: evidence_for picks which.
	 * Without a fingerprint (the capture cut the payload) the hop is
	 * still a span, just not joined to its publish (put_fingerprint
	 * counts it). */
	r = fp_ok ? evidence_for(nc, fp ^ nc->info.tgid) : NULL;
	s = new_span(nc, "deliver", "send", f->subject, WS_SPAN_KIND_PRODUCER);
	if (!s)
		return;
	b->st.deliver++;
	put_sizes(s, f);
	put_fingerprint(b, s, fp, fp_ok);
	if (r) {
		ws_span_set_parent(s, r->trace_id, r->span_id);
		ws_span_add_link(s, r->trace_id, r->span_id, 0);
		s->start_ns = r->ts;
	}
	if (derive_id(nc, "msg", f->offset, delivery, 8)) {
		memcpy(s->span_id, delivery, 8);
		ring_put(b, &b->deliveries, id8_key(delivery), s->trace_id,
			 s->span_id, nc->ts);
	}
	s->end_ns = nc->ts;
	emit(b, s);
}

/* ---- frames ------------------------------------------------------------- */

static void on_frame(void *ctx, const struct ws_nats_frame *f)
{
	struct ws_nats_conn_side *side = ctx;
	struct ws_nats_conn *nc = side->nc;
	/* Which end wrote these bytes: the client, or nats-server. */
	bool from_client = (nc->info.role == WS_ROLE_SERVER) ==
			   (side->dir == WS_DIR_INGRESS);
	bool server_host = nc->info.role == WS_ROLE_SERVER;

	/* No spans for excluded subjects (the agent's own telemetry) */
	if (nc->b->cfg.exclude &&
	    (f->verb == WS_NATS_PUB || f->verb == WS_NATS_HPUB ||
	     f->verb == WS_NATS_MSG || f->verb == WS_NATS_HMSG) &&
	    ws_subject_filter_match(nc->b->cfg.exclude, f->subject.ptr,
				    f->subject.len)) {
		nc->b->st.excluded++;
		if (!from_client &&
		    (f->verb == WS_NATS_MSG || f->verb == WS_NATS_HMSG))
			sub_delivered(nc, f->sid);
		return;
	}
	switch (f->verb) {
	case WS_NATS_INFO:
		on_info(nc, f);
		break;
	case WS_NATS_CONNECT:
		on_connect(nc, f);
		break;
	case WS_NATS_SUB:
		if (from_client)
			on_sub(nc, f);
		break;
	case WS_NATS_UNSUB:
		if (from_client)
			on_unsub(nc, f);
		break;
	case WS_NATS_PUB:
	case WS_NATS_HPUB:
		if (!from_client)
			break;
		if (server_host)
			on_server_pub(nc, f);
		else
			on_publish(nc, f);
		break;
	case WS_NATS_MSG:
	case WS_NATS_HMSG:
		if (from_client)
			break;
		if (server_host)
			on_server_msg(nc, f);
		else
			on_message(nc, f);
		sub_delivered(nc, f->sid);
		break;
	default:
		break;
	}
}

static void on_parse_error(void *ctx, enum ws_nats_err reason, uint64_t offset)
{
	struct ws_nats_conn_side *side = ctx;

	side->nc->b->st.parse_errors++;
}

static const struct ws_nats_cb frame_cb = {
	.frame = on_frame,
	.error = on_parse_error,
};

/* ---- connections -------------------------------------------------------- */

struct ws_nats_conn *ws_nats_conn_new(struct ws_nats_spans *b,
				      const struct ws_nats_conn_info *info)
{
	struct ws_nats_conn *nc = calloc(1, sizeof(*nc));
	int d;

	if (!nc)
		return NULL;
	nc->b = b;
	if (!++b->next_tag)
		b->next_tag = 1;
	nc->tag = b->next_tag;
	nc->info = *info;
	ws_attrs_init(&nc->shared, nc->shared_store,
		      sizeof(nc->shared_store) / sizeof(nc->shared_store[0]));
	if (info->resource)
		ws_resource_get(info->resource);
	if (info->peer)
		ws_resource_get(info->peer);
	for (d = 0; d < 2; d++) {
		nc->side[d].nc = nc;
		nc->side[d].dir = (uint8_t)d;
		nc->parser[d] = ws_nats_parser_new(&frame_cb, &nc->side[d]);
		if (!nc->parser[d]) {
			ws_nats_conn_close(nc, 0);
			return NULL;
		}
	}
	return nc;
}

/* Keep b->ending sorted by read_end, so that the tick stops at the first
 * span still in its grace period instead of walking every one of them.
 * Records come nearly in time order: the walk back is short. */
static void ending_add(struct ws_nats_spans *b, struct pend *p)
{
	struct pend *after = b->ending ? b->ending->eprev : NULL;

	while (after && after->read_end > p->read_end)
		after = after == b->ending ? NULL : after->eprev;
	if (after)
		DL_APPEND_ELEM2(b->ending, after, p, eprev, enext);
	else
		DL_PREPEND2(b->ending, p, eprev, enext);
}

/* The thread reads this connection again: what it was processing from it
 * is done. */
static void end_thread_reads(struct ws_nats_conn *nc)
{
	struct thread *t = thread_get(nc->b, nc->info.tgid, nc->tid, false);
	struct pend *p, *tmp;

	if (!t)
		return;
	DL_FOREACH_SAFE2(t->procs, p, tmp, tnext)
	{
		if (p->nc != nc)
			continue;
		p->read_end = nc->ts ? nc->ts : 1;
		ending_add(nc->b, p);
		/* Over for this thread: off its list now, so that the list
		 * holds only what the thread may still be inside. */
		DL_DELETE2(t->procs, p, tprev, tnext);
		p->thr = NULL;
	}
	if (!t->procs) {
		HASH_DEL(nc->b->threads, t);
		free(t);
	}
}

int ws_nats_conn_feed(struct ws_nats_conn *nc, uint8_t dir, const uint8_t *buf,
		      size_t len, uint32_t tid, uint64_t ts_ns)
{
	if (dir > WS_DIR_INGRESS)
		return -EINVAL;
	nc->tid = tid;
	nc->ts = ts_ns;
	if (dir == WS_DIR_INGRESS && nc->info.role != WS_ROLE_SERVER)
		end_thread_reads(nc);
	return ws_nats_parser_feed(nc->parser[dir], buf, len);
}

int ws_nats_conn_gap(struct ws_nats_conn *nc, uint8_t dir, uint64_t len)
{
	if (dir > WS_DIR_INGRESS)
		return -EINVAL;
	nc->b->st.gap_bytes += len;
	return ws_nats_parser_gap(nc->parser[dir], len);
}

void ws_nats_conn_close(struct ws_nats_conn *nc, uint64_t ts_ns)
{
	struct ws_nats_spans *b = nc->b;
	struct nats_sub *s, *stmp;
	struct pend *p, *tmp;
	size_t i;
	int d;

	DL_FOREACH_SAFE2(nc->pends, p, tmp, cnext)
	{
		if (p->kind == PEND_PROCESS) {
			b->st.process_end_close++;
		} else {
			b->st.request_closed++;
			ws_span_set_status(p->span, WS_STATUS_ERROR,
					   "connection closed");
			ws_attrs_cstr(&p->span->a, "error.type",
				      "connection_closed");
		}
		ws_attrs_cstr(&p->span->a, "wirespan.end", "close");
		pend_end(b, p, ts_ns ? ts_ns : p->start_ns);
	}
	HASH_ITER (hh, nc->subs, s, stmp) {
		sub_free(nc, s);
	}
	for (d = 0; d < 2; d++)
		ws_nats_parser_free(nc->parser[d]);
	ws_attrs_clear(&nc->shared);
	ws_attr_block_put(nc->shared_blk);
	ws_resource_put(nc->info.resource);
	ws_resource_put(nc->info.peer);
	for (i = 0; i < sizeof(identity_attrs) / sizeof(identity_attrs[0]); i++)
		free(*identity_field(nc, i));
	free(nc);
}

/* ---- the builder -------------------------------------------------------- */

void ws_nats_spans_cfg_init(struct ws_nats_spans_cfg *cfg)
{
	cfg->process_timeout_ns = 10ull * 1000000000ull;
	cfg->request_timeout_ns = 30ull * 1000000000ull;
	cfg->recent_ttl_ns = 60ull * 1000000000ull;
	cfg->parent = NULL;
	cfg->parent_ctx = NULL;
	cfg->exclude = NULL;
	ws_redact_init(&cfg->redact);
}

struct ws_nats_spans *ws_nats_spans_new(const struct ws_nats_spans_cfg *cfg,
					ws_span_emit_fn emit, void *ctx)
{
	struct ws_nats_spans *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->cfg = *cfg;
	b->emit = emit;
	b->ctx = ctx;
	if (ring_init(&b->pubs, WS_NS_MAX_RECENT) ||
	    ring_init(&b->deliveries, WS_NS_MAX_RECENT) ||
	    ring_init(&b->evidence, WS_NS_MAX_RECENT) ||
	    ring_init(&b->acks, WS_NS_MAX_RECENT) ||
	    ring_init(&b->pub_ids, WS_NS_MAX_RECENT)) {
		ws_nats_spans_free(b, 0);
		return NULL;
	}
	return b;
}

void ws_nats_spans_tick(struct ws_nats_spans *b, uint64_t now_ns)
{
	struct pend *p, *tmp;

	DL_FOREACH_SAFE2(b->ending, p, tmp, enext)
	{
		/* sorted by read_end: the rest is in its grace period too */
		if (now_ns < p->read_end ||
		    now_ns - p->read_end < READ_END_GRACE_NS)
			break;
		b->st.process_end_read++;
		pend_end(b, p, p->read_end);
	}
	while (b->age) {
		struct pend *p = b->age;
		uint64_t limit = p->kind == PEND_PROCESS
					 ? b->cfg.process_timeout_ns
					 : b->cfg.request_timeout_ns;

		if (now_ns < p->start_ns || now_ns - p->start_ns < limit)
			break;
		if (p->kind == PEND_PROCESS) {
			b->st.process_end_timeout++;
			ws_attrs_cstr(&p->span->a, "wirespan.end", "timeout");
		} else {
			b->st.request_timeout++;
			ws_span_set_status(p->span, WS_STATUS_ERROR, "timeout");
			ws_attrs_cstr(&p->span->a, "error.type", "timeout");
		}
		pend_end(b, p, now_ns);
	}
}

void ws_nats_spans_free(struct ws_nats_spans *b, uint64_t now_ns)
{
	struct thread *t, *ttmp;
	unsigned i;

	if (!b)
		return;
	while (b->age)
		pend_end(b, b->age, now_ns);
	HASH_ITER (hh, b->threads, t, ttmp) {
		HASH_DEL(b->threads, t);
		free(t);
	}
	ring_free(&b->pubs);
	ring_free(&b->deliveries);
	ring_free(&b->evidence);
	ring_free(&b->acks);
	ring_free(&b->pub_ids);
	for (i = 0; i < b->n_op_blks; i++)
		ws_attr_block_put(b->op_blks[i].blk);
	free(b);
}

const struct ws_nats_spans_stats *
ws_nats_spans_stats(const struct ws_nats_spans *b)
{
	return &b->st;
}
