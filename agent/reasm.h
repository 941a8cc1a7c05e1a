/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-direction stream reassembly by byte offset.
 *
 * The kernel numbers every byte a connection moves in each direction and
 * sends one record per syscall: (offset, cap_len payload bytes, syscall_len
 * bytes moved, why the tail syscall_len - cap_len is missing). Records
 * usually arrive in order, but two threads using one socket on different
 * CPUs can arrive swapped, and a record lost to a full ring buffer leaves a
 * hole in the offsets that never fills.
 *
 * A ws_reasm turns those records into one contiguous sequence of sink calls
 * (struct ws_stream_sink): data and gaps in offset order, starting at 0,
 * covering every byte exactly once. That invariant is what lets the capture
 * output promise captured + gap == bytes.
 *
 *   - In-order records are delivered at once, straight from the caller's
 *     buffer, without copying.
 *   - A record ahead of the expected offset is copied and held until the hole
 *     in front of it fills. Held data is bounded (max_held_bytes of payload,
 *     max_held_segs records); past either bound the oldest hole is declared
 *     WS_GAP_LOST and the held data behind it is delivered (overflow_flushes).
 *   - Bytes behind the expected offset (overlap, duplicates, or data that
 *     arrives after its hole was already declared lost) are dropped and
 *     counted in dup_bytes.
 *
 * Not thread-safe: one ws_reasm is driven by one thread.
 */
#ifndef WIRESPAN_REASM_H
#define WIRESPAN_REASM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/parser.h"

/* Defaults for the held-segment bounds (per connection direction). */
#define WS_REASM_DEFAULT_HELD_BYTES (256u * 1024u)
#define WS_REASM_DEFAULT_HELD_SEGS 64u

struct ws_reasm_stats {
	/* Bytes handed to sink->data. */
	uint64_t delivered_bytes;
	/* Bytes handed to sink->gap, by reason. */
	uint64_t gap_bytes[WS_GAP_REASON_MAX];
	/* Bytes that arrived behind the expected offset, dropped. */
	uint64_t dup_bytes;
	/* Records that arrived ahead of the expected offset and were held. */
	uint64_t reordered_segments;
	/* Most payload bytes held at once (<= max_held_bytes). */
	uint64_t held_bytes_peak;
	/* Holes declared lost because a held bound was hit. */
	uint64_t overflow_flushes;
	/* Holds that failed to allocate (the hole was declared lost). */
	uint64_t nomem;
	/* Records rejected with -EINVAL. */
	uint64_t invalid;
};

/* One held record: a private copy of its payload. */
struct ws_reasm_seg;

struct ws_reasm {
	struct ws_stream_sink sink;
	uint64_t expected;	   /* next stream offset the sink will see */
	struct ws_reasm_seg *held; /* held records, sorted by offset */
	size_t held_bytes;	   /* payload bytes in held */
	unsigned held_segs;	   /* records in held */
	size_t max_held_bytes;
	unsigned max_held_segs;
	struct ws_reasm_stats stats;
};

/*
 * Ready r to deliver to sink (copied). The stream starts at offset 0.
 * max_held_segs == 0 disables reordering: any hole is declared lost at once.
 * Returns 0 or -EINVAL (NULL sink or callback). An all-zero struct ws_reasm
 * needs no init to be freed or flushed; pushing to it returns -EINVAL.
 */
int ws_reasm_init(struct ws_reasm *r, const struct ws_stream_sink *sink,
		  size_t max_held_bytes, unsigned max_held_segs);

/*
 * Push one record. [offset, offset + cap_len) is data, [offset + cap_len,
 * offset + syscall_len) a gap of tail_reason. data may point into the ring
 * buffer: it is only read during the call (copied if held).
 *
 * first_classified: this record classified the connection, so the kernel
 * sent nothing before it and the hole in front of it is WS_GAP_UNCLASSIFIED,
 * declared at once (records ahead of it that are held first are delivered).
 *
 * Returns 0, -EINVAL (cap_len > syscall_len, NULL data with cap_len > 0,
 * offset overflow, tail_reason out of range: the record is dropped and its
 * bytes end up in a WS_GAP_LOST gap) or -ENOMEM (the record could not be held:
 * the hole in front of it was declared WS_GAP_LOST and the record delivered,
 * so every byte is still accounted for).
 */
int ws_reasm_push(struct ws_reasm *r, uint64_t offset, const uint8_t *data,
		  uint32_t cap_len, uint32_t syscall_len,
		  enum ws_gap_reason tail_reason, bool first_classified);

/*
 * Stop waiting for anything below offset: deliver held data that starts below
 * it, declaring the holes between as reason, then if offset > expected a gap
 * of reason up to offset. E.g. WS_GAP_EVICTED for the part of a stream that
 * moved while its connection was out of the table.
 */
void ws_reasm_gap_to(struct ws_reasm *r, uint64_t offset,
		     enum ws_gap_reason reason);

/*
 * Deliver everything held, declaring the holes between as WS_GAP_LOST; then,
 * if final_offset > expected, a WS_GAP_LOST gap up to final_offset. At close,
 * pass the kernel's final offset for the direction (ws_conn_close.bytes[]);
 * pass 0 when it is unknown (eviction, process exit) to flush only what is
 * held. Afterwards nothing is held and pushing may continue.
 */
void ws_reasm_flush(struct ws_reasm *r, uint64_t final_offset);

/*
 * Free the held copies without delivering them; call ws_reasm_flush() first
 * so their bytes are accounted for. r keeps its sink, offset and stats, so it
 * stays readable and may even be pushed to again.
 */
void ws_reasm_free(struct ws_reasm *r);

#endif /* WIRESPAN_REASM_H */
