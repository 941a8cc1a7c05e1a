/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Go runtime evidence, the attaching side: for each Go binary the agent
 * sees doing HTTP, the uprobes of bpf/gort.bpf.h on its net/http functions,
 * and its processes in the go_procs map so their data records carry the
 * goroutine. One attach per binary (by device and inode) however many
 * processes run it; detached when the last of them exits.
 *
 * Refused, logged once per binary and counted, never fatal: not Go, Go
 * older than 1.17 (stack ABI: no g in R14), a function missing, attach
 * errors, or the kernel lacks uprobe programs (the loader did not load
 * them). The span builder then falls back on its other evidence.
 */
#ifndef WIRESPAN_GORT_H
#define WIRESPAN_GORT_H

#include <stdint.h>

/* Binaries with the probes attached at once, at most (binaries_over). */
#define WS_GORT_MAX_BINARIES 16
/* Binaries remembered (attached or refused), at most. */
#define WS_GORT_MAX_KNOWN 256
/* Processes remembered, at most (procs_over). */
#define WS_GORT_MAX_PROCS 4096

/* The functions probed (agent/gort.c has why these two). */
#define WS_GORT_FN_ROUND_TRIP "net/http.(*persistConn).roundTrip"
#define WS_GORT_FN_REQ_WRITE "net/http.(*Request).write"

struct ws_gort_stats {
	uint64_t unavailable; /* processes not looked at: no uprobes */
	uint64_t procs;	      /* processes whose records carry goroutines */
	uint64_t attached;    /* binaries attached (over time) */
	uint64_t detached;    /* of which detached: their last process exited */
	uint64_t not_go;      /* binaries without a Go function table */
	uint64_t go_too_old;  /* Go before 1.17, or the version unknown */
	uint64_t no_func;     /* Go without net/http's client (or renamed) */
	uint64_t bad_binary;  /* unreadable or malformed */
	uint64_t attach_failed;	 /* the kernel refused a uprobe */
	uint64_t binaries_over;	 /* not attached: WS_GORT_MAX_BINARIES */
	uint64_t known_over;	 /* not remembered: WS_GORT_MAX_KNOWN */
	uint64_t procs_over;	 /* not followed: WS_GORT_MAX_PROCS */
	uint64_t procs_map_full; /* go_procs in the kernel is full */
};

struct ws_gort;
struct bpf_object;

/* obj: ws_loader_go_object() (NULL: uprobes unavailable, everything is
 * counted as such). NULL + errno. */
struct ws_gort *ws_gort_new(struct bpf_object *obj);
/* Process tgid has an HTTP connection: attach its binary if it is Go. */
void ws_gort_see(struct ws_gort *g, uint32_t tgid);
/*
 * Look at the processes already listening on TCP (at start): a Go gateway
 * idle when the agent starts is probed before its first request, not after
 * it. Walks /proc/net/tcp{,6} and /proc/<pid>/fd once. Returns how many
 * processes were looked at.
 */
unsigned ws_gort_scan_listeners(struct ws_gort *g);
/* Process tgid exited. */
void ws_gort_exit(struct ws_gort *g, uint32_t tgid);
/* Detach everything and free. Safe on NULL. */
void ws_gort_free(struct ws_gort *g);
const struct ws_gort_stats *ws_gort_stats(const struct ws_gort *g);

#endif /* WIRESPAN_GORT_H */
