/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The userspace connection table: every connection the kernel told us about
 * and has not closed, with its two reassemblers and parser states.
 *
 * Three indexes, all O(1):
 *   - by struct ws_conn_id (tgid, fd, gen): the key of every event;
 *   - by (tgid, fd), every generation: when an fd is reused and the old
 *     connection's close record was lost, the new open finds the stale
 *     connection with ws_conn_table_find_fd() and closes it;
 *   - by tgid: process exit removes all of a process's connections without
 *     scanning the table.
 * plus an LRU list: the table is bounded and a full table evicts the least
 * recently used connection (a close we never saw must not leak forever).
 *
 * Ownership: the table owns struct ws_conn and the held copies of its
 * reassemblers (it calls ws_reasm_free on removal). The owner (the events
 * module) owns what hangs off a connection: parser[] states and user. The
 * table never calls parser code; instead every way a connection leaves the
 * table runs an owner callback first, and that is where the owner flushes the
 * reassemblers, prints the close and frees parser[] and user:
 *   - ws_conn_table_remove():      the owner calls it, after doing that itself;
 *   - eviction by ws_conn_table_insert(): on_evict;
 *   - ws_conn_table_remove_tgid(): its cb;
 *   - ws_conn_table_clear():       its cb (call before ws_conn_table_free).
 * Callbacks must not insert into or remove from the table.
 *
 * Not thread-safe: the table is driven by the one thread that polls events.
 */
#ifndef WIRESPAN_CONN_H
#define WIRESPAN_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

#include "wirespan/abi.h"
#include "reasm.h"

/* Default bound on tracked connections; matches the kernel's map. */
#define WS_CONN_TABLE_DEFAULT_MAX WS_MAX_CONNS

struct ws_conn_group;

/* Membership of a connection in one of the secondary indexes. */
struct ws_conn_link {
	struct ws_conn *prev, *next; /* utlist DL: head->prev is the tail */
	struct ws_conn_group *group;
};

struct ws_conn {
	struct ws_conn_id id; /* hash key: never change it in the table */
	struct ws_tuple tuple;
	uint64_t cgroup_id;
	uint8_t role;  /* enum ws_role */
	uint8_t proto; /* enum ws_proto */
	uint8_t flags; /* WS_CF_* */
	char comm[WS_COMM_LEN];
	uint32_t open_tid; /* thread that connected or accepted; 0: unknown */
	bool announced;	   /* capture printed this connection's open line */
	/*
	 * Indexed by enum ws_dir. Zeroed on insert: the owner calls
	 * ws_reasm_init on them (its sink ctx is usually the connection).
	 */
	struct ws_reasm reasm[2];
	void *parser[2]; /* owner's: indexed by enum ws_dir */
	void *user;	 /* owner's */

	/* Private to conn.c. */
	UT_hash_handle hh;	     /* by id */
	struct ws_conn_link link[2]; /* by (tgid, fd), by tgid */
	struct ws_conn *lru_prev, *lru_next;
};

struct ws_conn_table_stats {
	uint64_t live;	   /* connections in the table now */
	uint64_t inserted; /* connections ever inserted */
	uint64_t removed;  /* connections that left, for any reason */
	uint64_t evicted;  /* removed because the table was full */
	uint64_t peak;	   /* most connections at once */
	uint64_t nomem;	   /* inserts that failed to allocate */
};

struct ws_conn_table;

typedef void (*ws_conn_cb)(struct ws_conn *c, void *ctx);

/*
 * A table of at most max_conns connections. on_evict (may be NULL) is called
 * with ctx on a connection just before it is evicted to make room.
 * NULL + errno (EINVAL for max_conns == 0, ENOMEM) on failure.
 */
struct ws_conn_table *ws_conn_table_new(size_t max_conns, ws_conn_cb on_evict,
					void *ctx);

/* The connection with this id, marked most recently used; NULL if none. */
struct ws_conn *ws_conn_table_lookup(struct ws_conn_table *t,
				     const struct ws_conn_id *id);

/*
 * The connection with this id: the existing one (marked most recently used)
 * or a new zeroed one with only id set. *created (may be NULL) says which.
 * A full table first evicts its least recently used connection. NULL + errno
 * (ENOMEM, EINVAL) on failure; the table is then unchanged.
 */
struct ws_conn *ws_conn_table_insert(struct ws_conn_table *t,
				     const struct ws_conn_id *id,
				     bool *created);

/*
 * The newest (highest gen) connection of (tgid, fd), whatever its gen; NULL
 * if none. Does not touch the LRU order.
 */
struct ws_conn *ws_conn_table_find_fd(struct ws_conn_table *t, uint32_t tgid,
				      int32_t fd);

/*
 * Remove c and free it (and its reassemblers' held copies). The owner must
 * have flushed c->reasm[] and freed c->parser[] and c->user first.
 */
void ws_conn_table_remove(struct ws_conn_table *t, struct ws_conn *c);

/*
 * Remove every connection of process tgid, calling cb(c, ctx) (may be NULL)
 * on each first. Returns how many were removed.
 */
size_t ws_conn_table_remove_tgid(struct ws_conn_table *t, uint32_t tgid,
				 ws_conn_cb cb, void *ctx);

/* Remove every connection, least recently used first, calling cb on each. */
size_t ws_conn_table_clear(struct ws_conn_table *t, ws_conn_cb cb, void *ctx);

void ws_conn_table_stats(const struct ws_conn_table *t,
			 struct ws_conn_table_stats *out);

/*
 * Free the table and every connection still in it without calling any
 * callback: use ws_conn_table_clear first if they own parser state.
 */
void ws_conn_table_free(struct ws_conn_table *t);

#endif /* WIRESPAN_CONN_H */
