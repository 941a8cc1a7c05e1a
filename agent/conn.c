/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The connection table: see conn.h.
 *
 * uthash indexes connections by id. The two secondary indexes ((tgid, fd)
 * and tgid) are hashes of small groups, each group a doubly linked list of
 * its connections, so a connection can leave a group in O(1) through the
 * group pointer it keeps. The LRU list is another utlist DL list.
 */

/* Out of memory must fail an insert, not exit the agent (uthash's default). */
#define HASH_NONFATAL_OOM 1

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>
#include <utlist.h>

#include "conn.h"

/* The id is hashed and compared as raw bytes, so it must have no padding. */
_Static_assert(sizeof(struct ws_conn_id) ==
		       sizeof(__u32) + sizeof(__s32) + sizeof(__u64),
	       "struct ws_conn_id has padding");

/* Secondary indexes, the index of struct ws_conn.link[]. */
enum { LINK_FD = 0, LINK_TGID = 1, LINK_MAX };

struct ws_conn_group {
	uint64_t key; /* tgid << 32 | (u32)fd for LINK_FD, tgid for LINK_TGID */
	struct ws_conn *head;
	UT_hash_handle hh;
};

struct ws_conn_table {
	struct ws_conn *by_id;
	struct ws_conn_group *groups[LINK_MAX];
	/* LRU order: head is least recently used, head->lru_prev most. */
	struct ws_conn *lru;
	size_t max_conns;
	ws_conn_cb on_evict;
	void *ctx;
	struct ws_conn_table_stats stats;
};

static uint64_t fd_key(uint32_t tgid, int32_t fd)
{
	return (uint64_t)tgid << 32 | (uint32_t)fd;
}

static uint64_t group_key(const struct ws_conn_id *id, int which)
{
	return which == LINK_FD ? fd_key(id->tgid, id->fd) : id->tgid;
}

static struct ws_conn_group *group_find(struct ws_conn_table *t, int which,
					uint64_t key)
{
	struct ws_conn_group *g;

	HASH_FIND(hh, t->groups[which], &key, sizeof(key), g);
	return g;
}

static int group_join(struct ws_conn_table *t, struct ws_conn *c, int which)
{
	uint64_t key = group_key(&c->id, which);
	struct ws_conn_group *g = group_find(t, which, key);

	if (!g) {
		g = calloc(1, sizeof(*g));
		if (!g)
			return -ENOMEM;
		g->key = key;
		HASH_ADD(hh, t->groups[which], key, sizeof(g->key), g);
		if (!g->hh.tbl) {
			free(g);
			return -ENOMEM;
		}
	}
	DL_APPEND2(g->head, c, link[which].prev, link[which].next);
	c->link[which].group = g;
	return 0;
}

static void group_leave(struct ws_conn_table *t, struct ws_conn *c, int which)
{
	struct ws_conn_group *g = c->link[which].group;

	if (!g)
		return;
	DL_DELETE2(g->head, c, link[which].prev, link[which].next);
	c->link[which].group = NULL;
	if (!g->head) {
		HASH_DEL(t->groups[which], g);
		free(g);
	}
}

static void lru_touch(struct ws_conn_table *t, struct ws_conn *c)
{
	if (t->lru->lru_prev == c)
		return; /* already the most recently used */
	DL_DELETE2(t->lru, c, lru_prev, lru_next);
	DL_APPEND2(t->lru, c, lru_prev, lru_next);
}

/* Unlink c from every index and free it; counts it as removed. */
static void conn_destroy(struct ws_conn_table *t, struct ws_conn *c)
{
	int i;

	HASH_DELETE(hh, t->by_id, c);
	for (i = 0; i < LINK_MAX; i++)
		group_leave(t, c, i);
	DL_DELETE2(t->lru, c, lru_prev, lru_next);
	ws_reasm_free(&c->reasm[WS_DIR_EGRESS]);
	ws_reasm_free(&c->reasm[WS_DIR_INGRESS]);
	free(c);
	t->stats.live--;
	t->stats.removed++;
}

struct ws_conn_table *ws_conn_table_new(size_t max_conns, ws_conn_cb on_evict,
					void *ctx)
{
	struct ws_conn_table *t;

	if (!max_conns) {
		errno = EINVAL;
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->max_conns = max_conns;
	t->on_evict = on_evict;
	t->ctx = ctx;
	return t;
}

struct ws_conn *ws_conn_table_lookup(struct ws_conn_table *t,
				     const struct ws_conn_id *id)
{
	struct ws_conn *c;

	HASH_FIND(hh, t->by_id, id, sizeof(*id), c);
	if (c)
		lru_touch(t, c);
	return c;
}

struct ws_conn *ws_conn_table_insert(struct ws_conn_table *t,
				     const struct ws_conn_id *id, bool *created)
{
	struct ws_conn *c;
	int i;

	if (created)
		*created = false;
	if (!t || !id) {
		errno = EINVAL;
		return NULL;
	}
	c = ws_conn_table_lookup(t, id);
	if (c)
		return c;

	/*
	 * Index the new connection before evicting anything, so a failed
	 * allocation leaves the table as it was.
	 */
	c = calloc(1, sizeof(*c));
	if (!c)
		goto nomem;
	c->id = *id;
	for (i = 0; i < LINK_MAX; i++)
		if (group_join(t, c, i))
			goto nomem_unjoin;
	HASH_ADD(hh, t->by_id, id, sizeof(c->id), c);
	if (!c->hh.tbl)
		goto nomem_unjoin;

	while (t->stats.live >= t->max_conns && t->lru) {
		struct ws_conn *victim = t->lru;

		if (t->on_evict)
			t->on_evict(victim, t->ctx);
		conn_destroy(t, victim);
		t->stats.evicted++;
	}

	DL_APPEND2(t->lru, c, lru_prev, lru_next);
	t->stats.live++;
	t->stats.inserted++;
	if (t->stats.live > t->stats.peak)
		t->stats.peak = t->stats.live;
	if (created)
		*created = true;
	return c;

nomem_unjoin:
	for (i = 0; i < LINK_MAX; i++)
		group_leave(t, c, i);
	free(c);
nomem:
	t->stats.nomem++;
	errno = ENOMEM;
	return NULL;
}

struct ws_conn *ws_conn_table_find_fd(struct ws_conn_table *t, uint32_t tgid,
				      int32_t fd)
{
	struct ws_conn_group *g = group_find(t, LINK_FD, fd_key(tgid, fd));
	struct ws_conn *c, *best = NULL;

	if (!g)
		return NULL;
	/* Usually one member; two while a stale generation awaits its close. */
	for (c = g->head; c; c = c->link[LINK_FD].next)
		if (!best || c->id.gen >= best->id.gen)
			best = c;
	return best;
}

void ws_conn_table_remove(struct ws_conn_table *t, struct ws_conn *c)
{
	if (t && c)
		conn_destroy(t, c);
}

size_t ws_conn_table_remove_tgid(struct ws_conn_table *t, uint32_t tgid,
				 ws_conn_cb cb, void *ctx)
{
	struct ws_conn_group *g;
	size_t n = 0;

	/* Look the group up each time: removing its last member frees it. */
	while ((g = group_find(t, LINK_TGID, tgid))) {
		struct ws_conn *c = g->head;

		if (cb)
			cb(c, ctx);
		conn_destroy(t, c);
		n++;
	}
	return n;
}

size_t ws_conn_table_clear(struct ws_conn_table *t, ws_conn_cb cb, void *ctx)
{
	size_t n = 0;

	while (t->lru) {
		struct ws_conn *c = t->lru;

		if (cb)
			cb(c, ctx);
		conn_destroy(t, c);
		n++;
	}
	return n;
}

void ws_conn_table_stats(const struct ws_conn_table *t,
			 struct ws_conn_table_stats *out)
{
	*out = t->stats;
}

void ws_conn_table_free(struct ws_conn_table *t)
{
	if (!t)
		return;
	ws_conn_table_clear(t, NULL, NULL);
	free(t);
}
