/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The capture pipeline shared by `wirespan capture` and `wirespan agent`:
 * loader -> ring buffer -> decoder -> connection table -> reassembly, then
 * a consumer (struct ws_pipeline_ops) that sees each classified connection
 * as two ordered byte streams of data and counted gaps.
 */
#ifndef WIRESPAN_PIPELINE_H
#define WIRESPAN_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "loader.h"
#include "metrics.h"

/* Why a connection leaves the pipeline. */
enum ws_close_why {
	WS_CLOSE_CLOSED = 0, /* close(): final offsets known */
	WS_CLOSE_EXITED,     /* its process exited: final offsets known */
	WS_CLOSE_EVICTED,    /* the table was full, or its fd was reused */
	WS_CLOSE_SHUTDOWN,   /* the pipeline stops while it is open */
};

struct ws_pipeline;

/* Per-connection pipeline state, in ws_conn.user. */
struct ws_pconn;

struct ws_pdir {
	struct ws_pconn *pc;
	uint8_t dir;
	bool resync; /* followed from the middle: no open record was seen */
	uint64_t captured, gap;
	/* The newest record pushed: what held data delivered later is
	 * attributed to (its thread, syscall and time). */
	struct ws_data last;
	/* On p->holding while the reassembler holds data behind a hole. */
	bool holding;
	uint64_t hold_since; /* poll round in which the hold started */
	struct ws_pdir *hprev, *hnext;
};

struct ws_pconn {
	struct ws_pipeline *p;
	struct ws_conn *c;
	struct ws_pdir d[2];
	bool followed;	 /* the consumer's open() accepted it */
	bool unfollowed; /* ws_pipeline_unfollow: no longer, for good */
	void *app;	 /* the consumer's */
};

struct ws_pipeline_ops {
	/* c was classified (c->proto set). Return true to follow it. */
	bool (*open)(void *ctx, struct ws_conn *c);
	void (*data)(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		     const uint8_t *buf, size_t len);
	void (*gap)(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		    uint64_t len, enum ws_gap_reason reason);
	/* After both directions were flushed. final: the kernel's final
	 * offsets, or NULL when not known. */
	void (*close)(void *ctx, struct ws_conn *c, const uint64_t *final,
		      enum ws_close_why why);
	/* Called about every poll interval, with CLOCK_MONOTONIC ns. */
	void (*tick)(void *ctx, uint64_t now_ns);
	/* After the programs are attached, before any record. */
	void (*ready)(void *ctx, struct ws_pipeline *p, unsigned programs);
	/* Process tgid exited, after its connections were closed (may be
	 * NULL): forget what is cached about it. */
	void (*proc_exit)(void *ctx, uint32_t tgid);
	/* Go runtime evidence (bpf/gort.bpf.h), in record order with the
	 * data (may be NULL). */
	void (*go)(void *ctx, const struct ws_go_event *ev);
	/* SIGUSR1, after the pipeline's metrics line (may be NULL). */
	void (*dump)(void *ctx);
	/* SIGHUP (may be NULL: SIGHUP then keeps its default action). */
	void (*reload)(void *ctx);
};

/* Connections a burst must reach before its end gives memory back. */
#define WS_TRIM_MIN_CONNS 1024

struct ws_pipeline_opts {
	struct ws_loader_opts lo;
	double duration;   /* seconds; 0 = until SIGINT/SIGTERM */
	FILE *metrics_out; /* where SIGUSR1 and exit print metrics */
	/* host:port of the /healthz + /readyz endpoint; NULL: none */
	const char *health_addr;
	double health_stall; /* seconds without a loop beat: not healthy */
};

struct ws_pipeline {
	struct ws_loader *ld;
	struct ws_conn_table *conns;
	const struct ws_pipeline_ops *ops;
	void *ctx;
	/* the data record being delivered, or NULL (held data flushed later) */
	const struct ws_data *cur;
	/* CLOCK_MONOTONIC ns of the record being handled (any type) */
	uint64_t rec_ts;
	/* directions holding data behind a hole, and the poll round count */
	struct ws_pdir *holding;
	uint64_t round;
	/* add to a CLOCK_MONOTONIC ns value to get unix ns */
	int64_t mono_to_unix;
	/* most live connections since memory was last given back */
	uint64_t trim_mark;
	struct ws_user_metrics m;
};

/* Defaults for opts: the loader's defaults, stderr for metrics. */
void ws_pipeline_opts_init(struct ws_pipeline_opts *o);

/*
 * Run until SIGINT/SIGTERM (or the duration). Returns a process exit code:
 * 0, 1 (runtime error) or WS_EXIT_UNSUPPORTED.
 */
int ws_pipeline_run(const struct ws_pipeline_opts *o,
		    const struct ws_pipeline_ops *ops, void *ctx);

/*
 * The same pipeline without a kernel side, driven by the caller: the replay
 * benchmark (tests/bench/bench_agent_replay.c) feeds it recorded or
 * synthesised ring-buffer records exactly as ws_pipeline_run does.
 * ws_pipeline_init returns 0 or -ENOMEM; ws_pipeline_record handles one
 * record (counted and dropped if it does not decode); ws_pipeline_round is
 * what happens after each ring-buffer poll (held data released, ops->tick
 * with now_ns, CLOCK_MONOTONIC); ws_pipeline_fini closes what is left
 * (WS_CLOSE_SHUTDOWN) and frees the table.
 */
int ws_pipeline_init(struct ws_pipeline *p, const struct ws_pipeline_ops *ops,
		     void *ctx);
void ws_pipeline_record(struct ws_pipeline *p, const void *data, size_t size);
void ws_pipeline_round(struct ws_pipeline *p, uint64_t now_ns);

/*
 * The consumer stops following c (it may call this from its open callback,
 * then returning false, or from its data callback after letting go of its
 * own state: no close callback follows). Nothing more of c is delivered,
 * and the kernel is told to stop capturing it.
 */
void ws_pipeline_unfollow(struct ws_pipeline *p, struct ws_conn *c);
void ws_pipeline_fini(struct ws_pipeline *p);

/* The connection's pipeline state. */
static inline struct ws_pconn *ws_pconn_of(const struct ws_conn *c)
{
	return c->user;
}

/* Text of a tuple address: dotted quad for IPv4 (also v4-mapped), else
 * RFC 5952 IPv6. out needs 46 bytes. */
void ws_addr_text(const uint8_t a[16], uint16_t family, char *out, size_t cap);

/* "wirespan <cmd>: N programs attached, ready" on stderr: what tests and
 * scripts wait for. */
void ws_pipeline_say_ready(const char *cmd, unsigned programs);

/* Kernel ns (CLOCK_MONOTONIC) to unix ns. */
static inline uint64_t ws_pipeline_unix_ns(const struct ws_pipeline *p,
					   uint64_t mono_ns)
{
	return (uint64_t)((int64_t)mono_ns + p->mono_to_unix);
}

#endif
