/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stitching core (agent/stitch.c): exact joins (NATS deliver id, HTTP
 * tuple + sequence), fingerprint joins in time order with the ambiguity
 * counter, children following a rewritten trace, window timeouts, the
 * bounds and their counters, NAT left alone, and input that makes no sense.
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

#include "stitch.h"

#define MS 1000000ull
#define WIN (100 * MS)

/* A span as the test sees it: what the rewrite callback did to it. */
struct tspan {
	struct ws_stitch_span in;
	uint8_t trace[16], parent[8];
	bool has_parent;
	char evidence[64];
	int rewrites;
};

struct world {
	struct ws_stitch *st;
	int ready[64]; /* ready count by token number */
	bool modified[64];
	int order[64], n_order;
};

static int on_rewrite(void *ctx, void *token, void *ref,
		      const uint8_t trace[16], const uint8_t *parent,
		      const char *evidence)
{
	struct tspan *t = ref;

	(void)ctx;
	(void)token;
	memcpy(t->trace, trace, 16);
	if (parent) {
		memcpy(t->parent, parent, 8);
		t->has_parent = true;
	}
	if (evidence)
		snprintf(t->evidence, sizeof(t->evidence), "%s", evidence);
	t->rewrites++;
	return 0;
}

static void on_ready(void *ctx, void *token, bool modified)
{
	struct world *w = ctx;
	int i = (int)(intptr_t)token;

	w->ready[i]++;
	w->modified[i] = modified;
	w->order[w->n_order++] = i;
}

static void world_init(struct world *w, uint64_t window, size_t max_spans,
		       size_t max_bytes)
{
	struct ws_stitch_cfg c;

	memset(w, 0, sizeof(*w));
	ws_stitch_cfg_init(&c);
	c.window_ns = window;
	if (max_spans)
		c.max_spans = max_spans;
	if (max_bytes)
		c.max_held_bytes = max_bytes;
	c.rewrite = on_rewrite;
	c.ready = on_ready;
	c.ctx = w;
	w->st = ws_stitch_new(&c);
	assert_non_null(w->st);
}

static void ids(struct tspan *t, uint8_t trace, uint8_t span)
{
	memset(t->in.trace_id, trace, 16);
	memset(t->in.span_id, span, 8);
	memcpy(t->trace, t->in.trace_id, 16);
	t->in.ref = t;
}

static void nats(struct tspan *t, uint8_t trace, uint8_t span, uint8_t role,
		 uint64_t fp, uint64_t start)
{
	memset(t, 0, sizeof(*t));
	ids(t, trace, span);
	t->in.role = role;
	t->in.fingerprint = fp;
	t->in.has_fingerprint = true;
	t->in.start_ns = start;
}

static void child_of(struct tspan *t, const struct tspan *p)
{
	memcpy(t->in.parent_span_id, p->in.span_id, 8);
	t->in.has_parent = true;
	memcpy(t->parent, p->in.span_id, 8);
	t->has_parent = true;
}

static void http(struct tspan *t, uint8_t trace, uint8_t span, uint8_t role,
		 const char *laddr, int lport, const char *paddr, int pport,
		 int64_t seq)
{
	memset(t, 0, sizeof(*t));
	ids(t, trace, span);
	t->in.role = role;
	t->in.local.addr = laddr;
	t->in.local.addr_len = strlen(laddr);
	t->in.local.port = lport;
	t->in.peer.addr = paddr;
	t->in.peer.addr_len = strlen(paddr);
	t->in.peer.port = pport;
	t->in.seq = seq;
	t->in.start_ns = 1000;
}

static void add(struct world *w, int token, struct tspan **v, size_t n,
		uint64_t now)
{
	struct ws_stitch_span in[8];
	size_t i;

	assert_true(n <= 8);
	for (i = 0; i < n; i++)
		in[i] = v[i]->in;
	assert_int_equal(
		ws_stitch_add(w->st, (void *)(intptr_t)token, 100, in, n, now),
		0);
}

static void assert_child(const struct tspan *c, const struct tspan *p)
{
	assert_memory_equal(c->trace, p->trace, 16);
	assert_true(c->has_parent);
	assert_memory_equal(c->parent, p->in.span_id, 8);
}

/* ---- NATS ---- */

/* publisher host, server host (deliver), consumer host with the reply's
 * publish as the consumer's child: one trace, right parents, either order */
static void test_nats_delivery_exact(void **state)
{
	struct world w;
	struct tspan pub, dlv, proc, reply, *v[2];
	(void)state;

	world_init(&w, WIN, 0, 0);
	nats(&pub, 1, 0x11, WS_STITCH_NATS_ANCHOR, 77, 1000);
	nats(&dlv, 2, 0x22, WS_STITCH_PLAIN, 77, 1100);
	child_of(&dlv, &pub); /* the derived id names the publish */
	nats(&proc, 3, 0x33, WS_STITCH_NATS_SEEKER, 77, 1200);
	memset(proc.in.delivery_id, 0x22, 8);
	proc.in.has_delivery = true;
	nats(&reply, 3, 0x44, WS_STITCH_NATS_ANCHOR, 99, 1300);
	child_of(&reply, &proc);

	/* the consumer's host first: held, waiting for the hop */
	v[0] = &reply; /* the child before its parent in the payload */
	v[1] = &proc;
	add(&w, 1, v, 2, 0);
	assert_int_equal(w.ready[1], 0);
	v[0] = &pub;
	add(&w, 2, v, 1, 1);
	assert_int_equal(w.ready[2], 1);
	assert_false(w.modified[2]);
	assert_int_equal(w.ready[1], 0);
	v[0] = &dlv;
	add(&w, 3, v, 1, 2);
	assert_int_equal(w.ready[1], 1);
	assert_int_equal(w.ready[3], 1);
	assert_true(w.modified[1]);
	assert_true(w.modified[3]); /* the hop took the publisher's trace */
	assert_child(&dlv, &pub);
	assert_child(&proc, &dlv);
	assert_child(&reply, &proc);
	assert_string_equal(proc.evidence, "nats.delivery_id");
	assert_string_equal(reply.evidence, ""); /* followed, not joined */
	assert_int_equal(ws_stitch_stats(w.st)->joins_delivery, 1);
	assert_int_equal(ws_stitch_stats(w.st)->trace_follow, 2);
	assert_int_equal(ws_stitch_stats(w.st)->held_spans, 0);
	assert_int_equal(ws_stitch_stats(w.st)->held_bytes, 0);
	ws_stitch_free(w.st);
}

/*
 * Request/reply over three hosts: the requester's send span, the server
 * host's deliver span of the request (parent: the send) and of the reply
 * (parent: the reply PUB's derived id), the responder's process span with
 * the request's delivery id and the reply's id. The reply's hop is joined
 * to the responder's span at once, whatever the order, never left to wait
 * the window.
 */
static void reply_case(const int *order)
{
	struct world w;
	struct tspan req, dreq, proc, drep, *all[4], *v[1];
	int i;

	world_init(&w, WIN, 0, 0);
	nats(&req, 1, 0x11, WS_STITCH_NATS_ANCHOR, 7, 1000);
	nats(&dreq, 2, 0x22, WS_STITCH_PLAIN, 7, 1100);
	child_of(&dreq, &req);
	nats(&proc, 3, 0x33, WS_STITCH_NATS_SEEKER, 7, 1200);
	memset(proc.in.delivery_id, 0x22, 8);
	proc.in.has_delivery = true;
	memset(proc.in.reply_id, 0x44, 8);
	proc.in.has_reply_id = true;
	nats(&drep, 4, 0x55, WS_STITCH_PLAIN, 8, 1300);
	memset(drep.in.parent_span_id, 0x44, 8); /* the reply PUB's id */
	drep.in.has_parent = true;
	all[0] = &req;
	all[1] = &dreq;
	all[2] = &proc;
	all[3] = &drep;
	for (i = 0; i < 4; i++) {
		v[0] = all[order[i]];
		add(&w, order[i], v, 1, (uint64_t)i);
	}
	/* all went on before any window passed */
	for (i = 0; i < 4; i++)
		assert_int_equal(w.ready[i], 1);
	assert_child(&dreq, &req);
	assert_child(&proc, &dreq);
	assert_child(&drep, &proc);
	assert_memory_equal(drep.trace, req.trace, 16);
	assert_string_equal(drep.evidence, "nats.reply_id");
	assert_true(w.modified[3]);
	assert_int_equal(ws_stitch_stats(w.st)->joins_reply, 1);
	assert_int_equal(ws_stitch_stats(w.st)->joins_delivery, 1);
	assert_int_equal(ws_stitch_stats(w.st)->orphan_timeouts, 0);
	assert_int_equal(ws_stitch_stats(w.st)->timeouts, 0);
	assert_int_equal(ws_stitch_stats(w.st)->held_spans, 0);
	ws_stitch_free(w.st);
}

static void test_nats_reply(void **state)
{
	static const int orders[][4] = {
		{0, 1, 2, 3}, {3, 2, 1, 0}, {3, 0, 1, 2},
		{2, 3, 0, 1}, {1, 3, 2, 0}, {0, 3, 1, 2},
	};
	size_t i;
	(void)state;

	for (i = 0; i < sizeof(orders) / sizeof(orders[0]); i++)
		reply_case(orders[i]);
}

/* no broker hop: by fingerprint, producer after or before the consumer */
static void test_nats_fingerprint(void **state)
{
	struct world w;
	struct tspan pub, proc, other, *v[1];
	(void)state;

	world_init(&w, WIN, 0, 0);
	nats(&proc, 3, 0x33, WS_STITCH_NATS_SEEKER, 5, 2000);
	nats(&other, 4, 0x34, WS_STITCH_NATS_ANCHOR, 6, 1000);
	nats(&pub, 1, 0x11, WS_STITCH_NATS_ANCHOR, 5, 1000);
	v[0] = &proc;
	add(&w, 1, v, 1, 0);
	v[0] = &other; /* another fingerprint: no join */
	add(&w, 2, v, 1, 0);
	assert_int_equal(w.ready[1], 0);
	v[0] = &pub;
	add(&w, 3, v, 1, 0);
	assert_int_equal(w.ready[1], 1);
	assert_child(&proc, &pub);
	assert_string_equal(proc.evidence, "nats.fingerprint");
	assert_int_equal(ws_stitch_stats(w.st)->joins_fingerprint, 1);
	assert_int_equal(ws_stitch_stats(w.st)->ambiguous, 0);
	ws_stitch_free(w.st);
}

/* identical payloads: time order pairs them, the first join is ambiguous;
 * a producer later than the consumer is not its producer */
static void test_nats_identical(void **state)
{
	struct world w;
	struct tspan p1, p2, p3, c1, c2, *v[3];
	(void)state;

	world_init(&w, WIN, 0, 0);
	nats(&p1, 1, 0x11, WS_STITCH_NATS_ANCHOR, 5, 1000);
	nats(&p2, 2, 0x12, WS_STITCH_NATS_ANCHOR, 5, 2000);
	nats(&p3, 3, 0x13, WS_STITCH_NATS_ANCHOR, 5, 900 * MS);
	nats(&c1, 4, 0x21, WS_STITCH_NATS_SEEKER, 5, 1500);
	nats(&c2, 5, 0x22, WS_STITCH_NATS_SEEKER, 5, 2500);
	v[0] = &p1;
	v[1] = &p2;
	v[2] = &p3;
	add(&w, 1, v, 3, 0);
	v[0] = &c1;
	add(&w, 2, v, 1, 0);
	v[0] = &c2;
	add(&w, 3, v, 1, 0);
	assert_child(&c1, &p1);
	assert_child(&c2, &p2);
	assert_string_equal(c1.evidence, "nats.fingerprint;ambiguous=2");
	assert_string_equal(c2.evidence, "nats.fingerprint");
	assert_int_equal(ws_stitch_stats(w.st)->ambiguous, 1);
	assert_int_equal(ws_stitch_stats(w.st)->joins_fingerprint, 2);
	ws_stitch_free(w.st);
}

/* a deliver id that never shows up: the fingerprint at the window's end;
 * nothing at all: forwarded unchanged, counted as a timeout */
static void test_nats_timeouts(void **state)
{
	struct world w;
	struct tspan pub, c1, c2, orphan, *v[1];
	(void)state;

	world_init(&w, WIN, 0, 0);
	nats(&pub, 1, 0x11, WS_STITCH_NATS_ANCHOR, 5, 1000);
	nats(&c1, 2, 0x21, WS_STITCH_NATS_SEEKER, 5, 1500);
	memset(c1.in.delivery_id, 0x99, 8);
	c1.in.has_delivery = true;
	nats(&c2, 3, 0x22, WS_STITCH_NATS_SEEKER, 42, 1500);
	nats(&orphan, 4, 0x23, WS_STITCH_PLAIN, 0, 1500);
	orphan.in.has_fingerprint = false;
	memset(orphan.in.parent_span_id, 0x77, 8);
	orphan.in.has_parent = true;
	v[0] = &pub;
	add(&w, 1, v, 1, 0);
	v[0] = &c1;
	add(&w, 2, v, 1, 10);
	v[0] = &c2;
	add(&w, 3, v, 1, 20);
	v[0] = &orphan;
	add(&w, 4, v, 1, 30);
	assert_int_equal(ws_stitch_wake_ns(w.st), 10 + WIN);
	ws_stitch_tick(w.st, WIN + 9);
	assert_int_equal(w.ready[2], 0);
	ws_stitch_tick(w.st, WIN + 10);
	assert_int_equal(w.ready[2], 1);
	assert_child(&c1, &pub);
	assert_string_equal(c1.evidence, "nats.fingerprint");
	ws_stitch_tick(w.st, WIN + 30);
	assert_int_equal(w.ready[3], 1);
	assert_int_equal(w.ready[4], 1);
	assert_false(w.modified[3]);
	assert_false(w.modified[4]);
	assert_int_equal(c2.rewrites, 0);
	assert_int_equal(ws_stitch_stats(w.st)->timeouts, 1);
	assert_int_equal(ws_stitch_stats(w.st)->orphan_timeouts, 1);
	/* remembered for 2 windows, then forgotten */
	assert_int_equal(ws_stitch_stats(w.st)->remembered, 4);
	ws_stitch_tick(w.st, 2 * WIN + 30);
	assert_int_equal(ws_stitch_stats(w.st)->remembered, 0);
	assert_int_equal(ws_stitch_wake_ns(w.st), UINT64_MAX);
	ws_stitch_free(w.st);
}

/* ---- HTTP ---- */

static void test_http_exact_and_nat(void **state)
{
	struct world w;
	struct tspan cl0, cl1, sv0, sv1, nat_cl, nat_sv, lone, *v[2];
	(void)state;

	world_init(&w, WIN, 0, 0);
	http(&cl0, 1, 0x11, WS_STITCH_HTTP_CLIENT, "10.0.0.2", 40000,
	     "10.0.0.3", 8080, 0);
	http(&cl1, 2, 0x12, WS_STITCH_HTTP_CLIENT, "10.0.0.2", 40000,
	     "10.0.0.3", 8080, 1);
	http(&sv1, 3, 0x21, WS_STITCH_HTTP_SERVER, "10.0.0.3", 8080, "10.0.0.2",
	     40000, 1);
	http(&sv0, 4, 0x22, WS_STITCH_HTTP_SERVER, "10.0.0.3", 8080, "10.0.0.2",
	     40000, 0);
	/* a port mapping: the client dialled 10.9.9.9:80 */
	http(&nat_cl, 5, 0x13, WS_STITCH_HTTP_CLIENT, "10.0.0.2", 40001,
	     "10.9.9.9", 80, 0);
	http(&nat_sv, 6, 0x23, WS_STITCH_HTTP_SERVER, "10.0.0.3", 8080,
	     "10.0.0.2", 40001, 0);
	/* no client seen at all */
	http(&lone, 7, 0x24, WS_STITCH_HTTP_SERVER, "10.0.0.3", 8080,
	     "10.0.0.2", 40002, 0);
	v[0] = &sv1; /* the server's host first */
	v[1] = &sv0;
	add(&w, 1, v, 2, 0);
	v[0] = &cl0;
	v[1] = &cl1;
	add(&w, 2, v, 2, 1);
	assert_int_equal(w.ready[1], 1);
	assert_child(&sv0, &cl0);
	assert_child(&sv1, &cl1);
	assert_string_equal(sv0.evidence, "http.conn");
	assert_int_equal(ws_stitch_stats(w.st)->joins_http, 2);

	v[0] = &nat_cl;
	add(&w, 3, v, 1, 2);
	v[0] = &nat_sv;
	add(&w, 4, v, 1, 3);
	assert_int_equal(w.ready[4], 1); /* left alone at once */
	assert_int_equal(nat_sv.rewrites, 0);
	assert_int_equal(ws_stitch_stats(w.st)->nat_mismatch, 1);

	v[0] = &lone;
	add(&w, 5, v, 1, 4);
	assert_int_equal(w.ready[5], 0);
	ws_stitch_tick(w.st, WIN + 4);
	assert_int_equal(w.ready[5], 1);
	assert_int_equal(lone.rewrites, 0);
	assert_int_equal(ws_stitch_stats(w.st)->timeouts, 1);
	ws_stitch_free(w.st);
}

/* the server's span first, then its client behind a NAT: found at the
 * window's end, counted as NAT, not as a timeout */
static void test_http_nat_late(void **state)
{
	struct world w;
	struct tspan cl, sv, *v[1];
	(void)state;

	world_init(&w, WIN, 0, 0);
	http(&cl, 1, 0x11, WS_STITCH_HTTP_CLIENT, "10.0.0.2", 40001, "10.9.9.9",
	     80, 3);
	http(&sv, 2, 0x21, WS_STITCH_HTTP_SERVER, "10.0.0.3", 8080, "10.0.0.2",
	     40001, 3);
	v[0] = &sv;
	add(&w, 1, v, 1, 0);
	v[0] = &cl;
	add(&w, 2, v, 1, 1);
	assert_int_equal(w.ready[1], 0);
	ws_stitch_flush(w.st);
	assert_int_equal(w.ready[1], 1);
	assert_int_equal(sv.rewrites, 0);
	assert_int_equal(ws_stitch_stats(w.st)->nat_mismatch, 1);
	assert_int_equal(ws_stitch_stats(w.st)->timeouts, 0);
	ws_stitch_free(w.st);
}

/* ---- bounds ---- */

static void test_bounds(void **state)
{
	struct world w;
	struct tspan s[6], *v[1];
	int i;
	(void)state;

	/* max_spans 4: the fifth pushes the oldest (pending) out */
	world_init(&w, WIN, 4, 0);
	for (i = 0; i < 5; i++) {
		nats(&s[i], 1, (uint8_t)(0x10 + i), WS_STITCH_NATS_SEEKER,
		     (uint64_t)(100 + i), 1000);
		v[0] = &s[i];
		add(&w, i, v, 1, (uint64_t)i);
	}
	assert_int_equal(w.ready[0], 1);
	assert_int_equal(w.ready[1], 0);
	assert_int_equal(ws_stitch_stats(w.st)->evicted, 1);
	assert_int_equal(ws_stitch_stats(w.st)->remembered, 4);
	/* one payload larger than the bound: what fits is tracked */
	{
		struct ws_stitch_span in[6];

		for (i = 0; i < 6; i++) {
			nats(&s[i], 2, (uint8_t)(0x40 + i),
			     WS_STITCH_NATS_SEEKER, (uint64_t)(200 + i), 1000);
			in[i] = s[i].in;
		}
		assert_int_equal(
			ws_stitch_add(w.st, (void *)(intptr_t)9, 10, in, 6, 10),
			0);
	}
	assert_int_equal(ws_stitch_stats(w.st)->remembered, 4);
	assert_int_equal(ws_stitch_stats(w.st)->evicted, 1 + 4 + 2);
	for (i = 0; i < 5; i++)
		assert_int_equal(w.ready[i], 1);
	ws_stitch_free(w.st);
	assert_int_equal(w.ready[9], 1);

	/* max_held_bytes 250: the third 100-byte payload lets the first go */
	world_init(&w, WIN, 0, 250);
	for (i = 0; i < 3; i++) {
		nats(&s[i], 1, (uint8_t)(0x10 + i), WS_STITCH_NATS_SEEKER,
		     (uint64_t)(100 + i), 1000);
		v[0] = &s[i];
		add(&w, i, v, 1, (uint64_t)i);
	}
	assert_int_equal(w.ready[0], 1);
	assert_int_equal(w.ready[1], 0);
	assert_int_equal(ws_stitch_stats(w.st)->held_bytes, 200);
	assert_int_equal(ws_stitch_stats(w.st)->peak_held_bytes, 300);
	assert_int_equal(ws_stitch_stats(w.st)->evicted, 1);
	ws_stitch_free(w.st);
	assert_int_equal(w.ready[1], 1);
	assert_int_equal(w.ready[2], 1);
}

/* ---- garbage ---- */

/* nonsense ids and keys: every payload is released exactly once */
static void test_garbage(void **state)
{
	struct world w;
	struct tspan s[8];
	struct ws_stitch_span in[8];
	unsigned seed = 12345;
	int round, i;
	(void)state;

	world_init(&w, WIN, 16, 0);
	for (round = 0; round < 40; round++) {
		for (i = 0; i < 8; i++) {
			uint8_t *b = (uint8_t *)&s[i].in;
			size_t k;

			memset(&s[i], 0, sizeof(s[i]));
			for (k = 0; k < sizeof(s[i].in); k++) {
				seed = seed * 1103515245u + 12345u;
				b[k] = (uint8_t)(seed >> 16);
			}
			/* small id spaces: parents, dups, cycles happen */
			memset(s[i].in.span_id, (int)(seed % 5), 8);
			memset(s[i].in.parent_span_id, (int)((seed >> 3) % 5),
			       8);
			memset(s[i].in.delivery_id, (int)((seed >> 5) % 5), 8);
			s[i].in.role = (uint8_t)((seed >> 7) % 6);
			s[i].in.fingerprint = (seed >> 9) % 3;
			s[i].in.local.addr = (seed >> 11) % 2 ? "a" : NULL;
			s[i].in.local.addr_len = 1;
			s[i].in.peer.addr = "b";
			s[i].in.peer.addr_len = 1;
			memset(s[i].in.reply_id, (int)((seed >> 15) % 5), 8);
			s[i].in.has_reply_id = (seed >> 17) % 2;
			/* random bytes are no valid bool */
			s[i].in.has_parent = (seed >> 19) % 2;
			s[i].in.has_fingerprint = (seed >> 20) % 2;
			s[i].in.has_delivery = (seed >> 21) % 2;
			s[i].in.seq = (int64_t)((seed >> 13) % 3) - 1;
			s[i].in.ref = &s[i];
			in[i] = s[i].in;
		}
		assert_int_equal(
			ws_stitch_add(w.st, (void *)(intptr_t)(round % 64), 10,
				      in, 8, (uint64_t)round * 10 * MS),
			0);
		ws_stitch_tick(w.st, (uint64_t)round * 10 * MS);
	}
	ws_stitch_free(w.st);
	for (round = 0; round < 40; round++)
		assert_int_equal(w.ready[round], 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nats_delivery_exact),
		cmocka_unit_test(test_nats_reply),
		cmocka_unit_test(test_nats_fingerprint),
		cmocka_unit_test(test_nats_identical),
		cmocka_unit_test(test_nats_timeouts),
		cmocka_unit_test(test_http_exact_and_nat),
		cmocka_unit_test(test_http_nat_late),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
