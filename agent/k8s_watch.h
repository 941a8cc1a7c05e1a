/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The list+watch protocol of the Kubernetes API for this node's pods, as a
 * pure state machine: the caller (agent/k8s.c, with libcurl) performs the
 * request the machine asks for and feeds back what came; unit tests feed
 * canned responses.
 *
 *   LIST  GET /api/v1/pods?fieldSelector=spec.nodeName=<node>&limit=50
 *         [&continue=<token>]; every page's pods are upserted with the
 *         list's epoch; after the last page the pods the list did not name
 *         are purged and the watch starts from the list's resourceVersion.
 *   WATCH GET ...&watch=1&resourceVersion=<rv>&allowWatchBookmarks=true
 *         &timeoutSeconds=N: a chunked stream of one JSON event per line;
 *         ADDED/MODIFIED upsert, DELETED deletes, BOOKMARK only moves rv,
 *         ERROR with code 410 (Gone: rv too old) re-lists (after a
 *         backoff if no event came since the last list: no list loop).
 *         A stream that ends cleanly is watched again from the last rv; a
 *         dropped connection or an HTTP error backs off (0.5 s doubling to
 *         30 s, reset by success) and then watches again (410 re-lists).
 *   BACKOFF wait until backoff_until, then LIST or WATCH (whichever failed).
 */
#ifndef WIRESPAN_K8S_WATCH_H
#define WIRESPAN_K8S_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "k8s_pods.h"

/* One watch event line at most; longer lines are skipped (counted). */
#define WS_K8S_MAX_EVENT (4u << 20)
/* One list page at most (limit=WS_K8S_PAGE_LIMIT pods). */
#define WS_K8S_MAX_PAGE (64u << 20)
/* Pods per list page. A page is parsed whole (json-c), and a real pod's
 * tree (managedFields: many small objects) is ~70x its JSON: 500 recorded
 * pods of tests/fixtures/k8s/recorded/ (2 MiB) made a 150 MiB tree; 50 keep
 * the peak near 15 MiB (docs/BENCHMARKS.md, agent memory). */
#define WS_K8S_PAGE_LIMIT 50
#define WS_K8S_WATCH_TIMEOUT_S 300
#define WS_K8S_BACKOFF_MIN_NS 500000000ull
#define WS_K8S_BACKOFF_MAX_NS 30000000000ull
/* After this many pod events and at least this long since the last time,
 * the watcher hands the memory they freed back (malloc_trim): pod churn
 * frees pods and event trees all over the arenas, and malloc reusing the
 * pages a trim gave back made RSS creep ~16 MiB an hour at 1k pods a
 * minute (docs/BENCHMARKS.md, "Pod churn"). */
#define WS_K8S_TRIM_EVENTS 500
#define WS_K8S_TRIM_NS 30000000000ull

enum ws_k8s_phase {
	WS_K8S_LIST = 0,
	WS_K8S_WATCH,
	WS_K8S_BACKOFF,
};

struct ws_k8s_watch_stats {
	uint64_t lists, list_pages, list_errors;
	uint64_t watches;	/* watch requests started */
	uint64_t watch_ends;	/* streams that ended cleanly */
	uint64_t watch_dropped; /* streams cut by a network error */
	uint64_t watch_errors;	/* HTTP errors on watch requests */
	uint64_t gone;		/* 410 Gone: re-list */
	uint64_t added, modified, deleted, bookmarks, error_events;
	uint64_t bad_events;	  /* lines that are not watch events */
	uint64_t events_too_long; /* lines over WS_K8S_MAX_EVENT */
	uint64_t pages_too_big;	  /* list pages over WS_K8S_MAX_PAGE */
	uint64_t backoffs;
	uint64_t trims; /* malloc_trim calls after pod events */
};

struct ws_k8s_watch {
	enum ws_k8s_phase phase;
	enum ws_k8s_phase after_backoff;
	char node[256];
	char rv[64];	   /* resourceVersion to watch from */
	char cont[1024];   /* list continue token */
	uint64_t epoch;	   /* of the list in progress */
	unsigned failures; /* consecutive */
	uint64_t backoff_until_ns;
	bool got_event; /* the current watch delivered something */
	/* no event since the last list: a 410 now re-lists after a
	 * backoff, not at once */
	bool fresh;
	char *line; /* partial event line */
	size_t line_len, line_cap;
	bool skipping; /* inside an over-long line */
	struct ws_k8s_store *store;
	uint64_t trim_events; /* pod events at the last trim */
	uint64_t trim_ns;     /* and its time */
	struct ws_k8s_watch_stats st;
};

/* node: spec.nodeName to select (URL-escaped by the caller if needed). */
void ws_k8s_watch_init(struct ws_k8s_watch *w, struct ws_k8s_store *store,
		       const char *node);
void ws_k8s_watch_free(struct ws_k8s_watch *w);

/* The path+query of the request the current phase needs (LIST or WATCH). */
int ws_k8s_watch_url(const struct ws_k8s_watch *w, char *buf, size_t cap);

/* A LIST request finished: HTTP status (0: network error) and body. */
void ws_k8s_list_done(struct ws_k8s_watch *w, long status, const char *body,
		      size_t len, uint64_t now_ns);

/* WATCH: bytes of the stream as they come (any split). */
void ws_k8s_watch_feed(struct ws_k8s_watch *w, const char *data, size_t len,
		       uint64_t now_ns);
/* WATCH: the request ended. status: HTTP status (0 if none came);
 * dropped: the transfer failed (connection reset, timeout). */
void ws_k8s_watch_end(struct ws_k8s_watch *w, long status, bool dropped,
		      uint64_t now_ns);

/* Time to hand freed memory back (WS_K8S_TRIM_EVENTS pod events and
 * WS_K8S_TRIM_NS since the last time)? Counts it (trims) when it says yes;
 * the caller then calls malloc_trim. */
bool ws_k8s_watch_trim_due(struct ws_k8s_watch *w, uint64_t now_ns);

/* BACKOFF: time to go on? (moves to LIST or WATCH) */
bool ws_k8s_watch_ready(struct ws_k8s_watch *w, uint64_t now_ns);

/* Stop what is going on and back off (the caller lost the stream). */
void ws_k8s_watch_backoff(struct ws_k8s_watch *w, uint64_t now_ns);

#endif
