/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for agent/reasm.c.
 *
 * Every test drives the reassembler through a sink that asserts the sink
 * contract on each call: pieces are contiguous from offset 0, never empty,
 * so each stream byte is delivered exactly once. The randomized tests then
 * check each byte against what it was in the original stream.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reasm.h"

#define MAX_PIECES 64

struct piece {
	bool gap;
	uint64_t offset;
	uint64_t len;
	enum ws_gap_reason reason;
	const uint8_t *buf; /* data: the pointer the sink was handed */
	uint8_t bytes[64];  /* data: a copy of the first bytes */
};

/* A sink that checks contiguity and records what it was given. */
struct rec_sink {
	uint64_t next; /* offset the next piece must start at */
	uint64_t data_bytes;
	uint64_t gap_bytes[WS_GAP_REASON_MAX];
	size_t n;
	struct piece pieces[MAX_PIECES];
};

static void rec_data(void *ctx, uint64_t offset, const uint8_t *buf, size_t len)
{
	struct rec_sink *s = ctx;
	struct piece *p;

	assert_int_equal(offset, s->next);
	assert_true(len > 0);
	assert_non_null(buf);
	s->next += len;
	s->data_bytes += len;
	assert_true(s->n < MAX_PIECES);
	p = &s->pieces[s->n++];
	p->gap = false;
	p->offset = offset;
	p->len = len;
	p->buf = buf;
	memcpy(p->bytes, buf, len < sizeof(p->bytes) ? len : sizeof(p->bytes));
}

static void rec_gap(void *ctx, uint64_t offset, uint64_t len,
		    enum ws_gap_reason reason)
{
	struct rec_sink *s = ctx;
	struct piece *p;

	assert_int_equal(offset, s->next);
	assert_true(len > 0);
	assert_true((unsigned)reason < WS_GAP_REASON_MAX);
	s->next += len;
	s->gap_bytes[reason] += len;
	assert_true(s->n < MAX_PIECES);
	p = &s->pieces[s->n++];
	p->gap = true;
	p->offset = offset;
	p->len = len;
	p->reason = reason;
	p->buf = NULL;
}

static void rec_init(struct ws_reasm *r, struct rec_sink *s, size_t max_bytes,
		     unsigned max_segs)
{
	struct ws_stream_sink sink = {
		.ctx = s,
		.data = rec_data,
		.gap = rec_gap,
	};

	memset(s, 0, sizeof(*s));
	assert_int_equal(ws_reasm_init(r, &sink, max_bytes, max_segs), 0);
}

static void expect_data(const struct rec_sink *s, size_t i, uint64_t offset,
			uint64_t len)
{
	assert_true(i < s->n);
	assert_false(s->pieces[i].gap);
	assert_int_equal(s->pieces[i].offset, offset);
	assert_int_equal(s->pieces[i].len, len);
}

static void expect_gap(const struct rec_sink *s, size_t i, uint64_t offset,
		       uint64_t len, enum ws_gap_reason reason)
{
	assert_true(i < s->n);
	assert_true(s->pieces[i].gap);
	assert_int_equal(s->pieces[i].offset, offset);
	assert_int_equal(s->pieces[i].len, len);
	assert_int_equal(s->pieces[i].reason, reason);
}

/* A stream whose byte i is (i * 7 + 3) & 0xff, so content errors show. */
static uint8_t stream[4096];

static int setup_stream(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(stream); i++)
		stream[i] = (uint8_t)(i * 7 + 3);
	return 0;
}

/* Push stream[off, off+len) fully captured. */
static int push(struct ws_reasm *r, uint64_t off, uint32_t len)
{
	return ws_reasm_push(r, off, stream + off, len, len, WS_GAP_CAP, false);
}

static void test_gap_reason_names(void **state)
{
	(void)state;
	assert_string_equal(ws_gap_reason_name(WS_GAP_CAP), "cap");
	assert_string_equal(ws_gap_reason_name(WS_GAP_IOV), "iov");
	assert_string_equal(ws_gap_reason_name(WS_GAP_FAULT), "fault");
	assert_string_equal(ws_gap_reason_name(WS_GAP_LOST), "lost");
	assert_string_equal(ws_gap_reason_name(WS_GAP_UNCLASSIFIED),
			    "unclassified");
	assert_string_equal(ws_gap_reason_name(WS_GAP_EVICTED), "evicted");
	assert_string_equal(ws_gap_reason_name(WS_GAP_REASON_MAX), "unknown");
}

static void test_init_rejects_bad_sink(void **state)
{
	struct ws_stream_sink sink = {.data = rec_data};
	struct ws_reasm r;

	(void)state;
	assert_int_equal(ws_reasm_init(&r, NULL, 1, 1), -EINVAL);
	assert_int_equal(ws_reasm_init(&r, &sink, 1, 1), -EINVAL);
}

static void test_in_order_zero_copy(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	rec_init(&r, &s, 1024, 8);
	assert_int_equal(push(&r, 0, 5), 0);
	assert_int_equal(push(&r, 5, 3), 0);
	assert_int_equal(push(&r, 8, 4), 0);
	assert_int_equal(s.n, 3);
	expect_data(&s, 0, 0, 5);
	expect_data(&s, 1, 5, 3);
	expect_data(&s, 2, 8, 4);
	/* In-order data reaches the sink straight from the caller's buffer. */
	assert_ptr_equal(s.pieces[0].buf, stream);
	assert_ptr_equal(s.pieces[1].buf, stream + 5);
	assert_ptr_equal(s.pieces[2].buf, stream + 8);
	assert_int_equal(r.expected, 12);
	assert_int_equal(r.stats.delivered_bytes, 12);
	assert_int_equal(r.stats.reordered_segments, 0);
	assert_int_equal(r.stats.held_bytes_peak, 0);
	assert_null(r.held);
	ws_reasm_free(&r);
}

static void test_out_of_order_two(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	rec_init(&r, &s, 1024, 8);
	assert_int_equal(push(&r, 5, 5), 0);
	assert_int_equal(s.n, 0); /* held until the hole fills */
	assert_int_equal(r.held_segs, 1);
	assert_int_equal(r.held_bytes, 5);
	assert_int_equal(push(&r, 0, 5), 0);
	assert_int_equal(s.n, 2);
	expect_data(&s, 0, 0, 5);
	expect_data(&s, 1, 5, 5);
	assert_memory_equal(s.pieces[1].bytes, stream + 5, 5);
	/* The held one was delivered from its copy. */
	assert_ptr_not_equal(s.pieces[1].buf, stream + 5);
	assert_int_equal(r.stats.reordered_segments, 1);
	assert_int_equal(r.stats.held_bytes_peak, 5);
	assert_int_equal(r.held_segs, 0);
	assert_int_equal(r.held_bytes, 0);
	assert_int_equal(r.stats.gap_bytes[WS_GAP_LOST], 0);
	ws_reasm_free(&r);
}

static void test_out_of_order_three_reversed(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	rec_init(&r, &s, 1024, 8);
	assert_int_equal(push(&r, 20, 10), 0);
	assert_int_equal(push(&r, 10, 10), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(r.held_segs, 2);
	assert_int_equal(push(&r, 0, 10), 0);
	assert_int_equal(s.n, 3);
	expect_data(&s, 0, 0, 10);
	expect_data(&s, 1, 10, 10);
	expect_data(&s, 2, 20, 10);
	assert_memory_equal(s.pieces[1].bytes, stream + 10, 10);
	assert_memory_equal(s.pieces[2].bytes, stream + 20, 10);
	assert_int_equal(r.stats.reordered_segments, 2);
	assert_int_equal(r.stats.held_bytes_peak, 20);
	assert_int_equal(r.expected, 30);
	ws_reasm_free(&r);
}

static void test_hole_never_fills_segs(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	/* Record [0, 10) was lost; at most 3 segments may wait for it. */
	rec_init(&r, &s, 1024, 3);
	assert_int_equal(push(&r, 10, 10), 0);
	assert_int_equal(push(&r, 20, 10), 0);
	assert_int_equal(push(&r, 30, 10), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(push(&r, 40, 10), 0);
	expect_gap(&s, 0, 0, 10, WS_GAP_LOST);
	expect_data(&s, 1, 10, 10);
	expect_data(&s, 2, 20, 10);
	expect_data(&s, 3, 30, 10);
	expect_data(&s, 4, 40, 10);
	assert_int_equal(s.n, 5);
	assert_int_equal(r.stats.overflow_flushes, 1);
	assert_int_equal(r.held_segs, 0);
	/* The stream goes on in order afterwards. */
	assert_int_equal(push(&r, 50, 10), 0);
	expect_data(&s, 5, 50, 10);
	assert_ptr_equal(s.pieces[5].buf, stream + 50);
	/* The lost record turning up late is a duplicate, not data. */
	assert_int_equal(push(&r, 0, 10), 0);
	assert_int_equal(s.n, 6);
	assert_int_equal(r.stats.dup_bytes, 10);
	assert_int_equal(r.stats.gap_bytes[WS_GAP_LOST], 10);
	assert_int_equal(r.stats.delivered_bytes, 50);
	ws_reasm_free(&r);
}

static void test_hole_never_fills_bytes(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	/* Two holes: [0, 10) and [20, 30); 25 bytes may be held. */
	rec_init(&r, &s, 25, 16);
	assert_int_equal(push(&r, 10, 10), 0);
	assert_int_equal(push(&r, 30, 10), 0);
	assert_int_equal(s.n, 0);
	/* 20 held + 10 > 25: only the oldest hole is given up on. */
	assert_int_equal(push(&r, 40, 10), 0);
	expect_gap(&s, 0, 0, 10, WS_GAP_LOST);
	expect_data(&s, 1, 10, 10);
	assert_int_equal(s.n, 2);
	assert_int_equal(r.held_segs, 2);
	assert_int_equal(r.held_bytes, 20);
	assert_true(r.stats.held_bytes_peak <= 25);
	/* The second hole can still fill. */
	assert_int_equal(push(&r, 20, 10), 0);
	expect_data(&s, 2, 20, 10);
	expect_data(&s, 3, 30, 10);
	expect_data(&s, 4, 40, 10);
	assert_int_equal(r.stats.overflow_flushes, 1);
	assert_int_equal(r.stats.gap_bytes[WS_GAP_LOST], 10);
	ws_reasm_free(&r);
}

static void test_record_larger_than_bound(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	/* A record too big to hold is delivered after giving up the hole. */
	rec_init(&r, &s, 8, 16);
	assert_int_equal(push(&r, 4, 3), 0);	/* held */
	assert_int_equal(push(&r, 20, 100), 0); /* too big to hold */
	expect_gap(&s, 0, 0, 4, WS_GAP_LOST);
	expect_data(&s, 1, 4, 3);
	expect_gap(&s, 2, 7, 13, WS_GAP_LOST);
	expect_data(&s, 3, 20, 100);
	assert_ptr_equal(s.pieces[3].buf, stream + 20); /* never copied */
	assert_int_equal(r.stats.overflow_flushes, 2);
	assert_int_equal(r.stats.held_bytes_peak, 3);
	ws_reasm_free(&r);
}

static void test_no_reordering(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	rec_init(&r, &s, 1024, 0);
	assert_int_equal(push(&r, 10, 10), 0);
	expect_gap(&s, 0, 0, 10, WS_GAP_LOST);
	expect_data(&s, 1, 10, 10);
	assert_int_equal(r.stats.reordered_segments, 0);
	ws_reasm_free(&r);
}

static void test_cap_truncated_tail(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	rec_init(&r, &s, 1024, 8);
	/* write() of 100 bytes, 16 captured. */
	assert_int_equal(
		ws_reasm_push(&r, 0, stream, 16, 100, WS_GAP_CAP, false), 0);
	expect_data(&s, 0, 0, 16);
	expect_gap(&s, 1, 16, 84, WS_GAP_CAP);
	/* Out of order truncated records keep their own tail reasons. */
	assert_int_equal(ws_reasm_push(&r, 150, stream + 150, 10, 50,
				       WS_GAP_FAULT, false),
			 0);
	assert_int_equal(
		ws_reasm_push(&r, 100, stream + 100, 20, 50, WS_GAP_IOV, false),
		0);
	expect_data(&s, 2, 100, 20);
	expect_gap(&s, 3, 120, 30, WS_GAP_IOV);
	expect_data(&s, 4, 150, 10);
	assert_memory_equal(s.pieces[4].bytes, stream + 150, 10);
	expect_gap(&s, 5, 160, 40, WS_GAP_FAULT);
	/* Nothing captured at all: a pure gap. */
	assert_int_equal(
		ws_reasm_push(&r, 200, NULL, 0, 30, WS_GAP_FAULT, false), 0);
	expect_gap(&s, 6, 200, 30, WS_GAP_FAULT);
	assert_int_equal(s.n, 7);
	assert_int_equal(r.stats.gap_bytes[WS_GAP_CAP], 84);
	assert_int_equal(r.stats.gap_bytes[WS_GAP_IOV], 30);
	assert_int_equal(r.stats.gap_bytes[WS_GAP_FAULT], 70);
	assert_int_equal(r.stats.delivered_bytes, 46);
	assert_int_equal(r.expected, 230);
	ws_reasm_free(&r);
}

static void test_duplicates_overlap(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	rec_init(&r, &s, 1024, 8);
	assert_int_equal(push(&r, 0, 10), 0);
	assert_int_equal(push(&r, 0, 10), 0); /* exact duplicate */
	assert_int_equal(s.n, 1);
	assert_int_equal(r.stats.dup_bytes, 10);
	assert_int_equal(push(&r, 5, 10), 0); /* overlaps the first 5 */
	expect_data(&s, 1, 10, 5);
	assert_ptr_equal(s.pieces[1].buf, stream + 10);
	assert_int_equal(r.stats.dup_bytes, 15);
	/* Overlapping held segments, and a duplicate while held. */
	assert_int_equal(push(&r, 20, 10), 0);
	assert_int_equal(push(&r, 25, 10), 0);
	assert_int_equal(push(&r, 20, 10), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(push(&r, 15, 5), 0);
	expect_data(&s, 2, 15, 5);
	expect_data(&s, 3, 20, 10);
	expect_data(&s, 4, 30, 5);
	assert_memory_equal(s.pieces[4].bytes, stream + 30, 5);
	assert_int_equal(s.n, 5);
	assert_int_equal(r.stats.dup_bytes, 15 + 5 + 10);
	assert_int_equal(r.expected, 35);
	assert_int_equal(r.held_segs, 0);
	/* A duplicate overlapping a cap tail trims the gap too. */
	assert_int_equal(
		ws_reasm_push(&r, 35, stream + 35, 5, 20, WS_GAP_CAP, false),
		0);
	assert_int_equal(
		ws_reasm_push(&r, 45, stream + 45, 10, 10, WS_GAP_CAP, false),
		0);
	expect_data(&s, 5, 35, 5);
	expect_gap(&s, 6, 40, 15, WS_GAP_CAP);
	assert_int_equal(s.n, 7);
	assert_int_equal(r.stats.dup_bytes, 40);
	ws_reasm_free(&r);
}

static void test_unclassified_start(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	rec_init(&r, &s, 1024, 8);
	/* 100 bytes moved before the kernel recognised the protocol. */
	assert_int_equal(
		ws_reasm_push(&r, 100, stream + 100, 10, 10, WS_GAP_CAP, true),
		0);
	expect_gap(&s, 0, 0, 100, WS_GAP_UNCLASSIFIED);
	expect_data(&s, 1, 100, 10);
	assert_ptr_equal(s.pieces[1].buf, stream + 100);
	assert_int_equal(r.stats.gap_bytes[WS_GAP_UNCLASSIFIED], 100);
	assert_int_equal(r.stats.gap_bytes[WS_GAP_LOST], 0);
	ws_reasm_free(&r);

	/* The classifying record overtaken by the next one. */
	rec_init(&r, &s, 1024, 8);
	assert_int_equal(push(&r, 60, 10), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(
		ws_reasm_push(&r, 50, stream + 50, 10, 10, WS_GAP_CAP, true),
		0);
	expect_gap(&s, 0, 0, 50, WS_GAP_UNCLASSIFIED);
	expect_data(&s, 1, 50, 10);
	expect_data(&s, 2, 60, 10);
	assert_int_equal(s.n, 3);
	ws_reasm_free(&r);

	/* Classified at offset 0: no gap. */
	rec_init(&r, &s, 1024, 8);
	assert_int_equal(ws_reasm_push(&r, 0, stream, 10, 10, WS_GAP_CAP, true),
			 0);
	expect_data(&s, 0, 0, 10);
	assert_int_equal(s.n, 1);
	ws_reasm_free(&r);
}

static void test_flush_final_offset(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	rec_init(&r, &s, 1024, 8);
	assert_int_equal(push(&r, 0, 10), 0);
	assert_int_equal(push(&r, 20, 10), 0); /* [10, 20) never arrives */
	/* The kernel's close says 40 bytes moved: the last 10 were lost too. */
	ws_reasm_flush(&r, 40);
	expect_data(&s, 0, 0, 10);
	expect_gap(&s, 1, 10, 10, WS_GAP_LOST);
	expect_data(&s, 2, 20, 10);
	expect_gap(&s, 3, 30, 10, WS_GAP_LOST);
	assert_int_equal(s.n, 4);
	assert_int_equal(s.next, 40);
	assert_int_equal(r.held_segs, 0);
	assert_int_equal(r.stats.gap_bytes[WS_GAP_LOST], 20);
	/* Already there: a second flush adds nothing. */
	ws_reasm_flush(&r, 40);
	ws_reasm_flush(&r, 0);
	assert_int_equal(s.n, 4);
	ws_reasm_free(&r);

	/* Final offset unknown (0): only what is held is flushed. */
	rec_init(&r, &s, 1024, 8);
	assert_int_equal(push(&r, 20, 10), 0);
	ws_reasm_flush(&r, 0);
	expect_gap(&s, 0, 0, 20, WS_GAP_LOST);
	expect_data(&s, 1, 20, 10);
	assert_int_equal(s.n, 2);
	ws_reasm_free(&r);
}

static void test_gap_to(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	rec_init(&r, &s, 1024, 8);
	assert_int_equal(push(&r, 30, 10), 0);
	assert_int_equal(push(&r, 60, 10), 0);
	/* Resumed after an eviction at offset 50. */
	ws_reasm_gap_to(&r, 50, WS_GAP_EVICTED);
	expect_gap(&s, 0, 0, 30, WS_GAP_EVICTED);
	expect_data(&s, 1, 30, 10);
	expect_gap(&s, 2, 40, 10, WS_GAP_EVICTED);
	assert_int_equal(s.n, 3);
	/* [60, 70) still waits for [50, 60). */
	assert_int_equal(r.held_segs, 1);
	assert_int_equal(push(&r, 50, 10), 0);
	expect_data(&s, 3, 50, 10);
	expect_data(&s, 4, 60, 10);
	assert_int_equal(r.stats.gap_bytes[WS_GAP_EVICTED], 40);
	ws_reasm_free(&r);
}

static void test_invalid_records(void **state)
{
	struct ws_reasm r, zero;
	struct rec_sink s;

	(void)state;
	rec_init(&r, &s, 1024, 8);
	assert_int_equal(
		ws_reasm_push(&r, 0, stream, 11, 10, WS_GAP_CAP, false),
		-EINVAL);
	assert_int_equal(ws_reasm_push(&r, 0, NULL, 5, 10, WS_GAP_CAP, false),
			 -EINVAL);
	assert_int_equal(ws_reasm_push(&r, UINT64_MAX - 5, stream, 10, 10,
				       WS_GAP_CAP, false),
			 -EINVAL);
	assert_int_equal(
		ws_reasm_push(&r, 0, stream, 5, 10, WS_GAP_REASON_MAX, false),
		-EINVAL);
	assert_int_equal(r.stats.invalid, 4);
	assert_int_equal(s.n, 0);
	/* The dropped record's bytes are still accounted for, as lost. */
	assert_int_equal(push(&r, 10, 10), 0);
	ws_reasm_flush(&r, 20);
	expect_gap(&s, 0, 0, 10, WS_GAP_LOST);
	expect_data(&s, 1, 10, 10);
	/* Empty records are ignored. */
	assert_int_equal(push(&r, 20, 0), 0);
	assert_int_equal(s.n, 2);
	ws_reasm_free(&r);

	/* A zeroed, never initialised one rejects pushes and frees fine. */
	memset(&zero, 0, sizeof(zero));
	assert_int_equal(push(&zero, 0, 10), -EINVAL);
	ws_reasm_flush(&zero, 10);
	ws_reasm_free(&zero);
}

static void test_free_with_held(void **state)
{
	struct ws_reasm r;
	struct rec_sink s;

	(void)state;
	/* Freed without flush: copies released (valgrind checks), no calls. */
	rec_init(&r, &s, 1024, 8);
	assert_int_equal(push(&r, 10, 10), 0);
	assert_int_equal(push(&r, 30, 10), 0);
	ws_reasm_free(&r);
	assert_int_equal(s.n, 0);
	assert_null(r.held);
	assert_int_equal(r.held_bytes, 0);
	ws_reasm_free(&r); /* idempotent */
}

/* ---- randomized: every byte exactly once ----------------------------- */

/* What each byte of the original stream is, to judge what the sink got. */
enum byte_class {
	BC_DATA = 0, /* captured in a record that is pushed */
	BC_TAIL_CAP, /* in a record's tail, by reason */
	BC_TAIL_IOV,
	BC_TAIL_FAULT,
	BC_DROPPED,	 /* its record is never pushed */
	BC_UNCLASSIFIED, /* before the classifying record */
};

struct rnd_sink {
	const uint8_t *orig;
	const uint8_t *cls;
	uint64_t next;
	uint64_t data_bytes;
	uint64_t gap_bytes[WS_GAP_REASON_MAX];
	uint64_t calls;
};

static void rnd_data(void *ctx, uint64_t offset, const uint8_t *buf, size_t len)
{
	struct rnd_sink *s = ctx;
	size_t i;

	assert_int_equal(offset, s->next);
	assert_true(len > 0);
	for (i = 0; i < len; i++)
		assert_int_equal(s->cls[offset + i], BC_DATA);
	assert_memory_equal(buf, s->orig + offset, len);
	s->next += len;
	s->data_bytes += len;
	s->calls++;
}

static void rnd_gap(void *ctx, uint64_t offset, uint64_t len,
		    enum ws_gap_reason reason)
{
	static const int want[WS_GAP_REASON_MAX] = {
		[WS_GAP_CAP] = BC_TAIL_CAP,
		[WS_GAP_IOV] = BC_TAIL_IOV,
		[WS_GAP_FAULT] = BC_TAIL_FAULT,
		[WS_GAP_LOST] = -1,
		[WS_GAP_UNCLASSIFIED] = BC_UNCLASSIFIED,
		[WS_GAP_EVICTED] = -2,
	};
	struct rnd_sink *s = ctx;
	uint64_t i;

	assert_int_equal(offset, s->next);
	assert_true(len > 0);
	assert_true((unsigned)reason < WS_GAP_REASON_MAX);
	assert_int_not_equal(want[reason], -2); /* never evicted here */
	for (i = 0; i < len; i++) {
		/*
		 * A lost gap may cover anything whose record came too late;
		 * other reasons must match exactly, which (with rnd_data)
		 * leaves lost gaps as the only place a dropped byte can be.
		 */
		if (want[reason] >= 0)
			assert_int_equal(s->cls[offset + i], want[reason]);
	}
	s->next += len;
	s->gap_bytes[reason] += len;
	s->calls++;
}

struct rec {
	uint64_t offset;
	uint32_t cap_len;
	uint32_t syscall_len;
	enum ws_gap_reason tail_reason;
	bool classify;
};

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* xorshift64*: tiny, seedable, good enough to shuffle. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint32_t rng_below(uint32_t n)
{
	return (uint32_t)(rng() % n);
}

struct rnd_cfg {
	uint64_t seed;
	size_t stream_len;
	unsigned window;    /* records are shuffled within runs of this many */
	unsigned drop_pct;  /* records never pushed (lost to the ring buffer) */
	unsigned trunc_pct; /* records with a cap/iov/fault tail */
	unsigned dup_pct;   /* records pushed again (whole or a slice) */
	bool unclassified;  /* starts with a never-sent unclassified part */
	size_t max_held_bytes;
	unsigned max_held_segs;
};

static void run_random(const struct rnd_cfg *cfg)
{
	size_t n = cfg->stream_len, nrec = 0, npush = 0, i, j;
	uint8_t *orig = malloc(n), *cls = malloc(n);
	struct rec *recs = malloc(sizeof(*recs) * (n + 1));
	struct rec *order = malloc(sizeof(*order) * (n + 1) * 2);
	uint64_t off = 0, dropped = 0, tail[WS_GAP_REASON_MAX] = {0};
	uint64_t unclassified = 0;
	struct rnd_sink s = {0};
	struct ws_stream_sink sink = {
		.ctx = &s, .data = rnd_data, .gap = rnd_gap};
	struct ws_reasm r;
	int rc;

	assert_non_null(orig);
	assert_non_null(cls);
	assert_non_null(recs);
	assert_non_null(order);
	rng_state = cfg->seed;
	for (i = 0; i < n; i++)
		orig[i] = (uint8_t)rng();

	/* Cut the stream into syscalls. */
	if (cfg->unclassified) {
		unclassified = 1 + rng_below(3000);
		memset(cls, BC_UNCLASSIFIED, unclassified);
		off = unclassified;
	}
	while (off < n) {
		struct rec *cur = &recs[nrec];
		uint32_t len = 1 + rng_below(rng_below(8) ? 600 : 5000);

		if (len > n - off)
			len = (uint32_t)(n - off);
		cur->offset = off;
		cur->syscall_len = len;
		cur->cap_len = len;
		cur->tail_reason = WS_GAP_CAP;
		cur->classify = nrec == 0 && cfg->unclassified;
		if (rng_below(100) < cfg->trunc_pct) {
			cur->cap_len = rng_below(len + 1);
			cur->tail_reason = (enum ws_gap_reason)rng_below(3);
		}
		memset(cls + off, BC_DATA, cur->cap_len);
		memset(cls + off + cur->cap_len, BC_TAIL_CAP + cur->tail_reason,
		       len - cur->cap_len);
		if (!cur->classify && rng_below(100) < cfg->drop_pct) {
			memset(cls + off, BC_DROPPED, len);
			dropped += len;
		} else {
			tail[cur->tail_reason] += len - cur->cap_len;
			nrec++;
		}
		off += len;
	}

	/* Push order: shuffled within windows, with some duplicates. */
	for (i = 0; i < nrec; i++) {
		order[npush++] = recs[i];
		if (rng_below(100) < cfg->dup_pct) {
			struct rec d = recs[i];
			uint32_t a = rng_below(d.syscall_len);
			uint32_t b = a + 1 + rng_below(d.syscall_len - a);
			uint32_t cap_end = d.cap_len < b ? d.cap_len : b;

			/* A slice [a, b) of the record, same bytes. */
			d.offset += a;
			d.syscall_len = b - a;
			d.cap_len = cap_end > a ? cap_end - a : 0;
			d.classify = false;
			order[npush++] = d;
		}
	}
	for (i = 0; i < npush; i += cfg->window) {
		size_t w = npush - i < cfg->window ? npush - i : cfg->window;

		for (j = w; j > 1; j--) {
			size_t k = rng_below((uint32_t)j);
			struct rec tmp = order[i + j - 1];

			order[i + j - 1] = order[i + k];
			order[i + k] = tmp;
		}
	}

	s.orig = orig;
	s.cls = cls;
	assert_int_equal(ws_reasm_init(&r, &sink, cfg->max_held_bytes,
				       cfg->max_held_segs),
			 0);
	for (i = 0; i < npush; i++) {
		const struct rec *p = &order[i];

		rc = ws_reasm_push(&r, p->offset, orig + p->offset, p->cap_len,
				   p->syscall_len, p->tail_reason, p->classify);
		assert_int_equal(rc, 0);
		assert_true(r.held_bytes <= cfg->max_held_bytes);
		assert_true(r.held_segs <= cfg->max_held_segs);
		assert_int_equal(r.expected, s.next);
	}
	ws_reasm_flush(&r, n);

	/* Every byte exactly once: contiguity was checked per call. */
	assert_int_equal(s.next, n);
	assert_int_equal(r.expected, n);
	assert_int_equal(r.held_segs, 0);
	{
		uint64_t total = s.data_bytes;

		for (i = 0; i < WS_GAP_REASON_MAX; i++) {
			assert_int_equal(r.stats.gap_bytes[i], s.gap_bytes[i]);
			total += s.gap_bytes[i];
		}
		assert_int_equal(total, n);
	}
	assert_int_equal(r.stats.delivered_bytes, s.data_bytes);
	/* Dropped bytes can only have been reported as lost. */
	assert_true(s.gap_bytes[WS_GAP_LOST] >= dropped);
	assert_true(r.stats.held_bytes_peak <= cfg->max_held_bytes);
	assert_int_equal(s.gap_bytes[WS_GAP_EVICTED], 0);

	/*
	 * With nothing dropped and a window the bounds can absorb, reordering
	 * costs nothing: every captured byte arrives, tails keep their reasons.
	 */
	if (!cfg->drop_pct && cfg->window <= cfg->max_held_segs &&
	    (size_t)cfg->window * 5000 <= cfg->max_held_bytes) {
		assert_int_equal(s.gap_bytes[WS_GAP_LOST], 0);
		assert_int_equal(r.stats.overflow_flushes, 0);
		for (i = 0; i < 3; i++)
			assert_int_equal(s.gap_bytes[i], tail[i]);
		assert_int_equal(s.gap_bytes[WS_GAP_UNCLASSIFIED],
				 unclassified);
	}
	if (cfg->window > 1 && cfg->max_held_segs > 0)
		assert_true(r.stats.reordered_segments > 0);
	if (cfg->dup_pct)
		assert_true(r.stats.dup_bytes > 0);

	ws_reasm_free(&r);
	free(orig);
	free(cls);
	free(recs);
	free(order);
}

static void test_random_reorder_no_loss(void **state)
{
	uint64_t seed;

	(void)state;
	for (seed = 1; seed <= 8; seed++) {
		struct rnd_cfg cfg = {
			.seed = seed * 0x9E3779B97F4A7C15ULL,
			.stream_len = 1u << 20,
			.window = 2 + (unsigned)seed % 6,
			.trunc_pct = 10,
			.dup_pct = 5,
			.unclassified = seed & 1,
			.max_held_bytes = 64 * 5000,
			.max_held_segs = 64,
		};

		run_random(&cfg);
	}
}

static void test_random_with_drops(void **state)
{
	uint64_t seed;

	(void)state;
	for (seed = 1; seed <= 8; seed++) {
		struct rnd_cfg cfg = {
			.seed = seed * 0xD1B54A32D192ED03ULL,
			.stream_len = 1u << 20,
			.window = 1 + (unsigned)seed * 3,
			.drop_pct = 2 + (unsigned)seed % 5,
			.trunc_pct = 15,
			.dup_pct = 8,
			.unclassified = !(seed & 1),
			.max_held_bytes = 16 * 1024,
			.max_held_segs = 4 + (unsigned)seed,
		};

		run_random(&cfg);
	}
}

static void test_random_tight_bounds(void **state)
{
	uint64_t seed;

	(void)state;
	/* Bounds smaller than the reordering: overflow all the time. */
	for (seed = 1; seed <= 4; seed++) {
		struct rnd_cfg cfg = {
			.seed = seed,
			.stream_len = 256 * 1024,
			.window = 16,
			.drop_pct = 1,
			.trunc_pct = 20,
			.dup_pct = 20,
			.unclassified = true,
			.max_held_bytes = 700,
			.max_held_segs = (unsigned)seed - 1, /* 0 included */
		};

		run_random(&cfg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gap_reason_names),
		cmocka_unit_test(test_init_rejects_bad_sink),
		cmocka_unit_test(test_in_order_zero_copy),
		cmocka_unit_test(test_out_of_order_two),
		cmocka_unit_test(test_out_of_order_three_reversed),
		cmocka_unit_test(test_hole_never_fills_segs),
		cmocka_unit_test(test_hole_never_fills_bytes),
		cmocka_unit_test(test_record_larger_than_bound),
		cmocka_unit_test(test_no_reordering),
		cmocka_unit_test(test_cap_truncated_tail),
		cmocka_unit_test(test_duplicates_overlap),
		cmocka_unit_test(test_unclassified_start),
		cmocka_unit_test(test_flush_final_offset),
		cmocka_unit_test(test_gap_to),
		cmocka_unit_test(test_invalid_records),
		cmocka_unit_test(test_free_with_held),
		cmocka_unit_test(test_random_reorder_no_loss),
		cmocka_unit_test(test_random_with_drops),
		cmocka_unit_test(test_random_tight_bounds),
	};

	return cmocka_run_group_tests(tests, setup_stream, NULL);
}
