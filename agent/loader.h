/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loader: feature probes, then open -> configure -> load -> attach of the
 * capture skeleton, and the few map operations userspace needs afterwards.
 */
#ifndef WIRESPAN_LOADER_H
#define WIRESPAN_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wirespan/abi.h"
#include "wirespan/bpf_shared.h"

/* Exit code when the kernel lacks something wirespan needs. */
#define WS_EXIT_UNSUPPORTED 3
/* Exit code when the process lacks a capability it needs (caps.h). */
#define WS_EXIT_NOPERM 4

#define WS_DEFAULT_RINGBUF (8u * 1024 * 1024)

struct ws_loader_opts {
	uint32_t max_capture;  /* bytes per record, <= WS_MAX_CAPTURE */
	uint32_t max_records;  /* records per syscall, <= WS_MAX_RECORDS */
	uint32_t ringbuf_size; /* bytes, power of two, >= page size */
	uint32_t pids[WS_MAX_FILTER];
	unsigned n_pids;
	uint16_t ports[WS_MAX_FILTER];
	unsigned n_ports;
	uint64_t cgroups[WS_MAX_FILTER];
	unsigned n_cgroups;
};

struct ws_loader;

/*
 * Check that the kernel has what the capture needs. Returns 0, or -ENOTSUP
 * with a message naming what is missing written to why.
 */
int ws_loader_probe(char *why, size_t why_len);

/* Open, configure, load and attach. Returns 0 or -errno (message logged). */
int ws_loader_open(struct ws_loader **out, const struct ws_loader_opts *opts);
/* Detach everything and free. Safe on NULL. */
void ws_loader_close(struct ws_loader *l);

int ws_loader_ringbuf_fd(const struct ws_loader *l);
unsigned ws_loader_attached(const struct ws_loader *l);

/* Sum the per-CPU kernel counters into out[WS_C_MAX]. */
int ws_loader_counters(const struct ws_loader *l, uint64_t out[WS_C_MAX]);

/*
 * The kernel entry of connection id (its final offsets, after its process
 * exited), deleted. 0, -ENOENT (none) or -ESTALE (the fd's entry is a later
 * connection's, left alone).
 */
int ws_loader_take_conn(struct ws_loader *l, const struct ws_conn_id *id,
			struct ws_conn_state *st);

/* How full a hash map of the capture is. */
struct ws_map_usage {
	const char *name;
	uint32_t entries, max_entries;
};

/* Every hash map's entries in use (walked from userspace: O(entries)) and
 * max_entries, into out[cap]. Returns how many maps were written. */
size_t ws_loader_map_usage(const struct ws_loader *l, struct ws_map_usage *out,
			   size_t cap);
#define WS_LOADER_MAPS 6

/* Delete kernel entries of processes that no longer exist (their exit record
 * was lost, or they were never streamed). Returns how many were removed. */
/* Stop capturing the connection id in the kernel (its entry stays, marked
 * ignored, so its close is still reported). 0, or -errno (-ENOENT when the
 * entry is gone or belongs to another connection on the same fd). */
int ws_loader_ignore_conn(struct ws_loader *l, const struct ws_conn_id *id);

int ws_loader_sweep(struct ws_loader *l,
		    void (*cb)(const struct ws_conn_state *st, void *ctx),
		    void *ctx);

/* The BPF object when its Go runtime programs (go_round_trip, go_req_write)
 * and go_procs map are loaded, else NULL (gort.c attaches them). */
struct bpf_object;
struct bpf_object *ws_loader_go_object(const struct ws_loader *l);

#endif
