/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/conn.c (run under valgrind to check ownership). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conn.h"

static struct ws_conn_id mkid(uint32_t tgid, int32_t fd, uint64_t gen)
{
	struct ws_conn_id id = {.tgid = tgid, .fd = fd, .gen = gen};

	return id;
}

static void assert_stats(struct ws_conn_table *t, uint64_t live,
			 uint64_t inserted, uint64_t removed, uint64_t evicted)
{
	struct ws_conn_table_stats st;

	ws_conn_table_stats(t, &st);
	assert_int_equal(st.live, live);
	assert_int_equal(st.inserted, inserted);
	assert_int_equal(st.removed, removed);
	assert_int_equal(st.evicted, evicted);
	assert_int_equal(st.inserted - st.removed, st.live);
}

/* Records which connections a callback saw, in order. */
struct seen {
	size_t n;
	struct ws_conn_id ids[16];
};

static void record_cb(struct ws_conn *c, void *ctx)
{
	struct seen *s = ctx;

	assert_true(s->n < 16);
	s->ids[s->n++] = c->id;
}

static void test_new_rejects_zero(void **state)
{
	(void)state;
	errno = 0;
	assert_null(ws_conn_table_new(0, NULL, NULL));
	assert_int_equal(errno, EINVAL);
}

static void test_insert_lookup_remove(void **state)
{
	struct ws_conn_table *t = ws_conn_table_new(8, NULL, NULL);
	struct ws_conn_id a = mkid(100, 7, 5532100), b = mkid(100, 8, 1);
	struct ws_conn *c, *c2;
	bool created = false;

	(void)state;
	assert_non_null(t);
	assert_null(ws_conn_table_lookup(t, &a));

	c = ws_conn_table_insert(t, &a, &created);
	assert_non_null(c);
	assert_true(created);
	assert_memory_equal(&c->id, &a, sizeof(a));
	/* A new connection comes zeroed apart from its id. */
	assert_int_equal(c->proto, 0);
	assert_false(c->announced);
	assert_null(c->parser[WS_DIR_EGRESS]);
	assert_null(c->parser[WS_DIR_INGRESS]);
	assert_null(c->user);
	assert_null(c->reasm[WS_DIR_EGRESS].held);
	c->proto = WS_PROTO_NATS;

	/* Inserting the same id again returns the existing connection. */
	c2 = ws_conn_table_insert(t, &a, &created);
	assert_ptr_equal(c2, c);
	assert_false(created);
	assert_int_equal(c2->proto, WS_PROTO_NATS);
	assert_ptr_equal(ws_conn_table_insert(t, &a, NULL), c);

	assert_ptr_equal(ws_conn_table_lookup(t, &a), c);
	assert_null(ws_conn_table_lookup(t, &b));
	/* Same tgid and fd, other generation: a different connection. */
	a.gen++;
	assert_null(ws_conn_table_lookup(t, &a));
	a.gen--;

	c2 = ws_conn_table_insert(t, &b, &created);
	assert_non_null(c2);
	assert_true(created);
	assert_ptr_not_equal(c2, c);
	assert_stats(t, 2, 2, 0, 0);

	ws_conn_table_remove(t, c);
	assert_null(ws_conn_table_lookup(t, &a));
	assert_null(ws_conn_table_find_fd(t, 100, 7));
	assert_ptr_equal(ws_conn_table_lookup(t, &b), c2);
	assert_stats(t, 1, 2, 1, 0);

	ws_conn_table_remove(t, c2);
	assert_null(ws_conn_table_lookup(t, &b));
	assert_stats(t, 0, 2, 2, 0);
	ws_conn_table_free(t);
}

static void test_lru_eviction(void **state)
{
	struct seen ev = {0};
	struct ws_conn_table *t = ws_conn_table_new(3, record_cb, &ev);
	struct ws_conn_id a = mkid(1, 1, 1), b = mkid(1, 2, 1),
			  c = mkid(1, 3, 1), d = mkid(1, 4, 1),
			  e = mkid(1, 5, 1), f = mkid(1, 6, 1);
	struct ws_conn_table_stats st;

	(void)state;
	assert_non_null(t);
	assert_non_null(ws_conn_table_insert(t, &a, NULL));
	assert_non_null(ws_conn_table_insert(t, &b, NULL));
	assert_non_null(ws_conn_table_insert(t, &c, NULL));
	assert_int_equal(ev.n, 0);

	/* Touch a: b is now the least recently used. */
	assert_non_null(ws_conn_table_lookup(t, &a));
	assert_non_null(ws_conn_table_insert(t, &d, NULL));
	assert_int_equal(ev.n, 1);
	assert_memory_equal(&ev.ids[0], &b, sizeof(b));
	assert_null(ws_conn_table_lookup(t, &b));
	assert_null(ws_conn_table_find_fd(t, 1, 2));

	/* Re-inserting an existing id touches it too (c), so a goes next. */
	assert_non_null(ws_conn_table_insert(t, &c, NULL));
	assert_non_null(ws_conn_table_insert(t, &e, NULL));
	assert_int_equal(ev.n, 2);
	assert_memory_equal(&ev.ids[1], &a, sizeof(a));

	/* find_fd does not touch: d is still the oldest. */
	assert_non_null(ws_conn_table_find_fd(t, 1, 4));
	assert_non_null(ws_conn_table_insert(t, &f, NULL));
	assert_int_equal(ev.n, 3);
	assert_memory_equal(&ev.ids[2], &d, sizeof(d));

	assert_non_null(ws_conn_table_lookup(t, &c));
	assert_non_null(ws_conn_table_lookup(t, &e));
	assert_non_null(ws_conn_table_lookup(t, &f));
	assert_stats(t, 3, 6, 3, 3);
	ws_conn_table_stats(t, &st);
	assert_int_equal(st.peak, 3);

	/* Clear goes least recently used first: c, e, f were looked up. */
	ev.n = 0;
	assert_int_equal(ws_conn_table_clear(t, record_cb, &ev), 3);
	assert_int_equal(ev.n, 3);
	assert_memory_equal(&ev.ids[0], &c, sizeof(c));
	assert_memory_equal(&ev.ids[1], &e, sizeof(e));
	assert_memory_equal(&ev.ids[2], &f, sizeof(f));
	assert_stats(t, 0, 6, 6, 3);
	ws_conn_table_free(t);
}

static void test_fd_reuse(void **state)
{
	struct ws_conn_table *t = ws_conn_table_new(16, NULL, NULL);
	struct ws_conn_id old = mkid(42, 9, 1000), cur = mkid(42, 9, 2000),
			  older = mkid(42, 9, 500), other = mkid(42, 10, 3000);
	struct ws_conn *c_old, *c_cur, *c_older, *c_other;

	(void)state;
	assert_non_null(t);
	assert_null(ws_conn_table_find_fd(t, 42, 9));
	c_old = ws_conn_table_insert(t, &old, NULL);
	assert_ptr_equal(ws_conn_table_find_fd(t, 42, 9), c_old);

	/* fd 9 reused; the close of gen 1000 was lost. */
	c_cur = ws_conn_table_insert(t, &cur, NULL);
	c_other = ws_conn_table_insert(t, &other, NULL);
	assert_non_null(c_cur);
	assert_non_null(c_other);
	assert_ptr_equal(ws_conn_table_find_fd(t, 42, 9), c_cur);
	assert_ptr_equal(ws_conn_table_find_fd(t, 42, 10), c_other);
	assert_null(ws_conn_table_find_fd(t, 43, 9));
	assert_null(ws_conn_table_find_fd(t, 42, 11));

	/* Newest means highest gen, not last inserted. */
	c_older = ws_conn_table_insert(t, &older, NULL);
	assert_non_null(c_older);
	assert_ptr_equal(ws_conn_table_find_fd(t, 42, 9), c_cur);

	/* Every generation stays reachable by its full id. */
	assert_ptr_equal(ws_conn_table_lookup(t, &old), c_old);
	assert_ptr_equal(ws_conn_table_lookup(t, &older), c_older);

	/* Removing the newest falls back to the next newest. */
	ws_conn_table_remove(t, c_cur);
	assert_ptr_equal(ws_conn_table_find_fd(t, 42, 9), c_old);
	ws_conn_table_remove(t, c_old);
	assert_ptr_equal(ws_conn_table_find_fd(t, 42, 9), c_older);
	ws_conn_table_remove(t, c_older);
	assert_null(ws_conn_table_find_fd(t, 42, 9));
	assert_ptr_equal(ws_conn_table_find_fd(t, 42, 10), c_other);

	/* Negative fds and large tgids do not collide in the (tgid, fd) key. */
	{
		struct ws_conn_id n1 = mkid(0xffffffffu, -1, 1),
				  n2 = mkid(0xfffffffeu, -1, 1);
		struct ws_conn *x = ws_conn_table_insert(t, &n1, NULL);
		struct ws_conn *y = ws_conn_table_insert(t, &n2, NULL);

		assert_ptr_equal(ws_conn_table_find_fd(t, 0xffffffffu, -1), x);
		assert_ptr_equal(ws_conn_table_find_fd(t, 0xfffffffeu, -1), y);
	}
	assert_stats(t, 3, 6, 3, 0);
	ws_conn_table_free(t);
}

static void test_remove_tgid(void **state)
{
	struct seen s = {0};
	struct ws_conn_table *t = ws_conn_table_new(16, NULL, NULL);
	struct ws_conn_id ids[] = {
		mkid(7, 3, 1), mkid(8, 3, 1), mkid(7, 4, 1),
		mkid(7, 4, 2), mkid(9, 3, 1), mkid(7, 5, 1),
	};
	size_t i;

	(void)state;
	assert_non_null(t);
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		assert_non_null(ws_conn_table_insert(t, &ids[i], NULL));

	assert_int_equal(ws_conn_table_remove_tgid(t, 7, record_cb, &s), 4);
	assert_int_equal(s.n, 4);
	for (i = 0; i < s.n; i++)
		assert_int_equal(s.ids[i].tgid, 7);
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		struct ws_conn *c = ws_conn_table_lookup(t, &ids[i]);

		if (ids[i].tgid == 7)
			assert_null(c);
		else
			assert_non_null(c);
	}
	assert_null(ws_conn_table_find_fd(t, 7, 4));
	assert_non_null(ws_conn_table_find_fd(t, 8, 3));

	/* Unknown tgid, and a tgid already gone: nothing to do. */
	assert_int_equal(ws_conn_table_remove_tgid(t, 7, record_cb, &s), 0);
	assert_int_equal(ws_conn_table_remove_tgid(t, 1234, NULL, NULL), 0);
	assert_int_equal(s.n, 4);

	/* A process can come back (pid reuse) and is indexed afresh. */
	assert_non_null(ws_conn_table_insert(t, &ids[0], NULL));
	assert_int_equal(ws_conn_table_remove_tgid(t, 7, NULL, NULL), 1);
	assert_stats(t, 2, 7, 5, 0);
	ws_conn_table_free(t);
}

/* ---- churn: bounded size, ownership through the callbacks ------------ */

struct churn_ctx {
	uint64_t callbacks;
	uint64_t sink_bytes;
};

static void churn_sink_data(void *ctx, uint64_t offset, const uint8_t *buf,
			    size_t len)
{
	struct churn_ctx *cc = ctx;

	(void)offset;
	(void)buf;
	cc->sink_bytes += len;
}

static void churn_sink_gap(void *ctx, uint64_t offset, uint64_t len,
			   enum ws_gap_reason reason)
{
	struct churn_ctx *cc = ctx;

	(void)offset;
	(void)reason;
	cc->sink_bytes += len;
}

/* What the owner does when a connection leaves: flush, free its state. */
static void churn_release(struct ws_conn *c, void *ctx)
{
	struct churn_ctx *cc = ctx;

	cc->callbacks++;
	ws_reasm_flush(&c->reasm[WS_DIR_EGRESS], 0);
	free(c->user);
	c->user = NULL;
}

static uint64_t rng_state = 0x853c49e6748fea9bULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static void test_bounded_under_churn(void **state)
{
	enum { MAX = 1000, INSERTS = 100000 };
	static const uint8_t payload[64];
	struct churn_ctx cc = {0};
	struct ws_conn_table *t = ws_conn_table_new(MAX, churn_release, &cc);
	struct ws_stream_sink sink = {
		.ctx = &cc, .data = churn_sink_data, .gap = churn_sink_gap};
	struct ws_conn_table_stats st;
	uint64_t i, created_n = 0, explicit_removed = 0, tgid_removed = 0;
	uint64_t stale_closed = 0;

	(void)state;
	assert_non_null(t);
	for (i = 0; i < INSERTS; i++) {
		/* Few tgids and fds, so fd numbers are reused across gens. */
		struct ws_conn_id id = mkid(1 + (uint32_t)(rng() % 50),
					    (int32_t)(rng() % 100), i);
		struct ws_conn *c, *stale;
		bool created;

		/*
		 * Half the time the owner does what it does on open: a live
		 * connection on the same (tgid, fd) lost its close.
		 */
		if (rng() % 2) {
			stale = ws_conn_table_find_fd(t, id.tgid, id.fd);
			if (stale) {
				assert_true(stale->id.gen < id.gen);
				churn_release(stale, &cc);
				ws_conn_table_remove(t, stale);
				explicit_removed++;
				stale_closed++;
			}
		}
		c = ws_conn_table_insert(t, &id, &created);
		assert_non_null(c);
		assert_true(created);
		created_n++;
		c->user = malloc(32);
		assert_non_null(c->user);
		assert_int_equal(
			ws_reasm_init(&c->reasm[WS_DIR_EGRESS], &sink, 4096, 8),
			0);
		/* Data past a hole is held: removal must free the copy. */
		assert_int_equal(ws_reasm_push(&c->reasm[WS_DIR_EGRESS], 100,
					       payload, sizeof(payload),
					       sizeof(payload), WS_GAP_CAP,
					       false),
				 0);
		assert_int_equal(c->reasm[WS_DIR_EGRESS].held_segs, 1);

		/* The newest generation of this fd is the one just inserted. */
		assert_ptr_equal(ws_conn_table_find_fd(t, id.tgid, id.fd), c);

		switch (rng() % 16) {
		case 0: /* its close arrives */
			churn_release(c, &cc);
			ws_conn_table_remove(t, c);
			explicit_removed++;
			break;
		case 1: /* traffic on some connection keeps it recent */
			id.gen = rng() % (i + 1);
			(void)ws_conn_table_lookup(t, &id);
			break;
		case 2: /* the process exits */
			if (rng() % 64 == 0)
				tgid_removed += ws_conn_table_remove_tgid(
					t, id.tgid, churn_release, &cc);
			break;
		default:
			break;
		}
		ws_conn_table_stats(t, &st);
		assert_true(st.live <= MAX);
	}
	ws_conn_table_stats(t, &st);
	assert_int_equal(st.inserted, created_n);
	assert_int_equal(st.live, MAX);
	assert_int_equal(st.peak, MAX);
	assert_int_equal(st.removed,
			 explicit_removed + tgid_removed + st.evicted);
	assert_true(st.evicted > 0);
	assert_true(stale_closed > 0);
	assert_true(tgid_removed > 0);
	assert_int_equal(st.nomem, 0);
	/* Eviction and remove_tgid ran the owner's callback on each. */
	assert_int_equal(cc.callbacks, st.removed);

	assert_int_equal(ws_conn_table_clear(t, churn_release, &cc), MAX);
	assert_stats(t, 0, created_n, created_n, st.evicted);
	ws_conn_table_free(t);
}

static void test_free_nonempty(void **state)
{
	struct ws_conn_table *t = ws_conn_table_new(4, NULL, NULL);
	static const uint8_t payload[16];
	struct ws_stream_sink sink = {.data = churn_sink_data,
				      .gap = churn_sink_gap};
	struct ws_conn_id a = mkid(1, 1, 1), b = mkid(2, 1, 1);
	struct ws_conn *c;

	(void)state;
	assert_non_null(t);
	c = ws_conn_table_insert(t, &a, NULL);
	assert_non_null(c);
	assert_int_equal(ws_reasm_init(&c->reasm[WS_DIR_INGRESS], &sink, 64, 4),
			 0);
	assert_int_equal(ws_reasm_push(&c->reasm[WS_DIR_INGRESS], 10, payload,
				       sizeof(payload), sizeof(payload),
				       WS_GAP_CAP, false),
			 0);
	assert_non_null(ws_conn_table_insert(t, &b, NULL));
	/* Frees both connections and the held copy: valgrind checks. */
	ws_conn_table_free(t);
	ws_conn_table_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_rejects_zero),
		cmocka_unit_test(test_insert_lookup_remove),
		cmocka_unit_test(test_lru_eviction),
		cmocka_unit_test(test_fd_reuse),
		cmocka_unit_test(test_remove_tgid),
		cmocka_unit_test(test_bounded_under_churn),
		cmocka_unit_test(test_free_nonempty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
