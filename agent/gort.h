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

/* The counters (agent_metrics.go.<name>), as an X-macro so the struct and
 * the printed names cannot drift:
 *   unavailable     processes not looked at: no uprobes in this kernel
 *   procs           processes whose records carry goroutines
 *   attached        binaries attached (over time)
 *   detached        of which detached: their last process exited
 *   not_go          binaries without a Go function table
 *   go_too_old      Go before 1.17, or the version unknown
 *   no_func         Go without net/http's client (or renamed)
 *   bad_binary      unreadable or malformed
 *   attach_failed   the kernel refused a uprobe
 *   binaries_over   not attached: WS_GORT_MAX_BINARIES
 *   known_over      not remembered: WS_GORT_MAX_KNOWN
 *   procs_over      not followed: WS_GORT_MAX_PROCS
 *   procs_map_full  go_procs in the kernel is full
 *   swept           processes found gone by ws_gort_sweep (exit record
 *                   lost)
 *   probes_at_entry probes put at a function's entry: its prologue was not
 *                   the usual stack check (slower: single-stepped) */
#define WS_GORT_STATS(X)  \
	X(unavailable)    \
	X(procs)          \
	X(attached)       \
	X(detached)       \
	X(not_go)         \
	X(go_too_old)     \
	X(no_func)        \
	X(bad_binary)     \
	X(attach_failed)  \
	X(binaries_over)  \
	X(known_over)     \
	X(procs_over)     \
	X(procs_map_full) \
	X(swept)          \
	X(probes_at_entry)

struct ws_gort_stats {
#define WS_GORT_STAT_FIELD(n) uint64_t n;
	WS_GORT_STATS(WS_GORT_STAT_FIELD)
#undef WS_GORT_STAT_FIELD
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
 * it. Walks /proc/net/tcp{,6} and /proc/<pid>/fd once. With the capture's
 * filters (n > 0): only sockets on those ports, only those processes.
 * Returns how many processes were looked at.
 */
unsigned ws_gort_scan_listeners(struct ws_gort *g, const uint16_t *ports,
				unsigned n_ports, const uint32_t *pids,
				unsigned n_pids);
/* Process tgid exited. */
void ws_gort_exit(struct ws_gort *g, uint32_t tgid);
/* Forget the processes that are gone without an exit record (lost to a
 * full ring buffer), as ws_gort_exit. Call every few seconds. */
void ws_gort_sweep(struct ws_gort *g);
/* Detach everything and free. Safe on NULL. */
void ws_gort_free(struct ws_gort *g);
const struct ws_gort_stats *ws_gort_stats(const struct ws_gort *g);

#endif /* WIRESPAN_GORT_H */
