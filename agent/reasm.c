/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stream reassembly: see reasm.h for the contract.
 *
 * Invariant between calls: every held segment starts strictly after
 * r->expected (anything at or before it is delivered by drain_ready), and
 * held_bytes <= max_held_bytes, held_segs <= max_held_segs (room is made
 * before a copy is taken, so the bounds hold even transiently).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "reasm.h"

struct ws_reasm_seg {
	struct ws_reasm_seg *next;
	uint64_t offset;
	uint32_t cap_len;
	uint32_t syscall_len;
	enum ws_gap_reason tail_reason;
	uint8_t data[]; /* cap_len bytes */
};

static const char *const gap_reason_names[WS_GAP_REASON_MAX] = {
	[WS_GAP_CAP] = "cap",
	[WS_GAP_IOV] = "iov",
	[WS_GAP_FAULT] = "fault",
	[WS_GAP_LOST] = "lost",
	[WS_GAP_UNCLASSIFIED] = "unclassified",
	[WS_GAP_EVICTED] = "evicted",
};

const char *ws_gap_reason_name(enum ws_gap_reason reason)
{
	if ((unsigned)reason >= WS_GAP_REASON_MAX)
		return "unknown";
	return gap_reason_names[reason];
}

int ws_reasm_init(struct ws_reasm *r, const struct ws_stream_sink *sink,
		  size_t max_held_bytes, unsigned max_held_segs)
{
	if (!r || !sink || !sink->data || !sink->gap)
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	r->sink = *sink;
	r->max_held_bytes = max_held_bytes;
	r->max_held_segs = max_held_segs;
	return 0;
}

static void emit_data(struct ws_reasm *r, const uint8_t *buf, uint64_t len)
{
	if (!len)
		return;
	r->sink.data(r->sink.ctx, r->expected, buf, len);
	r->expected += len;
	r->stats.delivered_bytes += len;
}

static void emit_gap(struct ws_reasm *r, uint64_t len,
		     enum ws_gap_reason reason)
{
	if (!len)
		return;
	r->sink.gap(r->sink.ctx, r->expected, len, reason);
	r->expected += len;
	r->stats.gap_bytes[reason] += len;
}

/*
 * Deliver the part of a record at or after r->expected; the part before it
 * was already covered by earlier data or gaps. Requires offset <= expected.
 */
static void deliver(struct ws_reasm *r, uint64_t offset, const uint8_t *data,
		    uint32_t cap_len, uint32_t syscall_len,
		    enum ws_gap_reason tail_reason)
{
	uint64_t cap_end = offset + cap_len;
	uint64_t end = offset + syscall_len;

	if (r->expected >= end) {
		r->stats.dup_bytes += syscall_len;
		return;
	}
	r->stats.dup_bytes += r->expected - offset;
	if (r->expected < cap_end)
		emit_data(r, data + (r->expected - offset),
			  cap_end - r->expected);
	emit_gap(r, end - r->expected, tail_reason);
}

/* Deliver held segments the stream has caught up with. */
static void drain_ready(struct ws_reasm *r)
{
	struct ws_reasm_seg *s;

	while ((s = r->held) && s->offset <= r->expected) {
		/* Unlink first: the sink runs while s is delivered. */
		r->held = s->next;
		r->held_bytes -= s->cap_len;
		r->held_segs--;
		deliver(r, s->offset, s->data, s->cap_len, s->syscall_len,
			s->tail_reason);
		free(s);
	}
}

/* Declare the hole in front of the oldest held segment and deliver it. */
static void release_first_hole(struct ws_reasm *r, enum ws_gap_reason reason)
{
	emit_gap(r, r->held->offset - r->expected, reason);
	drain_ready(r);
}

/* Give up on every hole below limit, delivering what is held there. */
static void release_below(struct ws_reasm *r, uint64_t limit,
			  enum ws_gap_reason reason)
{
	while (r->held && r->held->offset < limit)
		release_first_hole(r, reason);
	if (limit > r->expected)
		emit_gap(r, limit - r->expected, reason);
}

static void release_all(struct ws_reasm *r, enum ws_gap_reason reason)
{
	while (r->held)
		release_first_hole(r, reason);
}

/*
 * Copy a record that is ahead of r->expected until the hole in front of it
 * fills. When a bound is hit the oldest hole is given up on instead, which
 * may make this record in-order, in which case it is delivered uncopied.
 */
static int hold(struct ws_reasm *r, uint64_t offset, const uint8_t *data,
		uint32_t cap_len, uint32_t syscall_len,
		enum ws_gap_reason tail_reason)
{
	struct ws_reasm_seg *s, **pp;

	while (r->held_segs >= r->max_held_segs ||
	       cap_len > r->max_held_bytes - r->held_bytes) {
		r->stats.overflow_flushes++;
		if (!r->held || r->held->offset >= offset) {
			/* Nothing older is waiting: drop the hole before us. */
			release_below(r, offset, WS_GAP_LOST);
			goto deliver_now;
		}
		release_first_hole(r, WS_GAP_LOST);
		if (offset <= r->expected)
			goto deliver_now;
	}

	s = malloc(sizeof(*s) + cap_len);
	if (!s) {
		/* Every byte stays accounted for: lose the hole, not data. */
		r->stats.nomem++;
		release_below(r, offset, WS_GAP_LOST);
		deliver(r, offset, data, cap_len, syscall_len, tail_reason);
		drain_ready(r);
		return -ENOMEM;
	}
	s->offset = offset;
	s->cap_len = cap_len;
	s->syscall_len = syscall_len;
	s->tail_reason = tail_reason;
	if (cap_len)
		memcpy(s->data, data, cap_len);

	/* Equal offsets keep arrival order; the later one is trimmed as dup. */
	for (pp = &r->held; *pp && (*pp)->offset <= offset; pp = &(*pp)->next)
		;
	s->next = *pp;
	*pp = s;
	r->held_segs++;
	r->held_bytes += cap_len;
	if (r->held_bytes > r->stats.held_bytes_peak)
		r->stats.held_bytes_peak = r->held_bytes;
	r->stats.reordered_segments++;
	return 0;

deliver_now:
	deliver(r, offset, data, cap_len, syscall_len, tail_reason);
	drain_ready(r);
	return 0;
}

int ws_reasm_push(struct ws_reasm *r, uint64_t offset, const uint8_t *data,
		  uint32_t cap_len, uint32_t syscall_len,
		  enum ws_gap_reason tail_reason, bool first_classified)
{
	if (!r->sink.data || cap_len > syscall_len || (cap_len && !data) ||
	    offset > UINT64_MAX - syscall_len ||
	    (unsigned)tail_reason >= WS_GAP_REASON_MAX) {
		r->stats.invalid++;
		return -EINVAL;
	}

	/*
	 * The kernel sends nothing for a connection before the syscall that
	 * classifies it, so waiting for the hole in front of it is pointless.
	 */
	if (first_classified && offset > r->expected)
		release_below(r, offset, WS_GAP_UNCLASSIFIED);

	if (!syscall_len)
		return 0;
	if (offset > r->expected)
		return hold(r, offset, data, cap_len, syscall_len, tail_reason);

	deliver(r, offset, data, cap_len, syscall_len, tail_reason);
	drain_ready(r);
	return 0;
}

void ws_reasm_gap_to(struct ws_reasm *r, uint64_t offset,
		     enum ws_gap_reason reason)
{
	if ((unsigned)reason >= WS_GAP_REASON_MAX || !r->sink.gap) {
		r->stats.invalid++;
		return;
	}
	release_below(r, offset, reason);
}

void ws_reasm_flush(struct ws_reasm *r, uint64_t final_offset)
{
	if (!r->sink.gap)
		return;
	release_all(r, WS_GAP_LOST);
	if (final_offset > r->expected)
		emit_gap(r, final_offset - r->expected, WS_GAP_LOST);
}

void ws_reasm_free(struct ws_reasm *r)
{
	struct ws_reasm_seg *s, *next;

	for (s = r->held; s; s = next) {
		next = s->next;
		free(s);
	}
	r->held = NULL;
	r->held_bytes = 0;
	r->held_segs = 0;
}
