/* SPDX-License-Identifier: Apache-2.0 */
/* Userspace self-metrics of the event pipeline; printed with the kernel's. */
#ifndef WIRESPAN_METRICS_H
#define WIRESPAN_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "conn.h"
#include "events.h"
#include "loader.h"
#include "proto/parser.h"
#include "wirespan/abi.h"

struct ws_user_metrics {
	uint64_t records;		  /* ring-buffer records read */
	uint64_t by_type[WS_EV_TYPE_MAX]; /* records by event type */
	uint64_t decode_err[WS_DEC_MAX];  /* records rejected, by reason */
	uint64_t data_bytes;		  /* payload bytes delivered in order */
	uint64_t gap_bytes
		[WS_GAP_REASON_MAX]; /* bytes reported as gaps, by reason */
	uint64_t dup_bytes;	     /* duplicate bytes dropped by reassembly */
	uint64_t
		data_without_open; /* data for a connection we had no open for */
	uint64_t
		close_without_open; /* close for a connection we did not know */
	uint64_t
		stale_fd_closed; /* connections replaced by a new one on their fd */
	uint64_t
		proc_exit_closed; /* connections closed by their process's exit */
	uint64_t swept;		  /* kernel entries of dead processes removed */
	uint64_t filtered_proto; /* records skipped by --protocol */
	uint64_t unfollowed; /* connections the consumer stopped following */
	uint64_t
		unfollowed_kernel_miss; /* ... that the kernel still captures */
	uint64_t output_errors;		/* lines that could not be written */
	uint64_t holes_released; /* holes declared lost after a poll round */
};

/* One JSON line {"type":"metrics","kernel":{...},"maps":{...},"user":{...}}
 * to f; maps: the BPF hash maps' occupancy (n_maps of them, may be 0). */
void ws_metrics_print(FILE *f, const uint64_t kernel[WS_C_MAX],
		      const struct ws_map_usage *maps, size_t n_maps,
		      const struct ws_user_metrics *m,
		      const struct ws_conn_table_stats *ct);

#endif
