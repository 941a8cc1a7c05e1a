/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for agent/proto/nats.c.
 *
 * The input is the stream. A PRNG seeded from the input's hash cuts it into
 * data runs and gaps (a gap drops the run's bytes, as a capture cut would),
 * and sometimes lowers max_payload. The same plan is then fed three ways:
 * each data run in one feed (the in-place fast path), one byte per feed, and
 * random chunk sizes. All three must give the same frames, errors and stats.
 * Every chunk is copied into its own exact-size allocation so ASan catches a
 * read past what the parser was given, and every frame is checked against
 * the invariants the span builder relies on.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/nats.h"

#define MAX_OPS 4096

struct op {
	uint32_t off; /* into the input */
	uint32_t len;
	uint64_t gap; /* > 0: a gap of this many bytes instead of data */
};

struct run {
	uint64_t digest;
	uint64_t frames;
	uint64_t errors;
	uint64_t pos;	   /* stream offset fed so far */
	uint64_t last_end; /* end of the previous frame */
	struct ws_nats_parser *p;
};

static void die(const char *what)
{
	fprintf(stderr, "fuzz_nats: invariant broken: %s\n", what);
	abort();
}

#define CHECK(cond)                 \
	do {                        \
		if (!(cond))        \
			die(#cond); \
	} while (0)

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t mix_u64(uint64_t h, uint64_t v)
{
	return mix(h, &v, sizeof(v));
}

static uint64_t mix_str(uint64_t h, struct ws_nats_str s)
{
	CHECK(s.len == 0 || s.ptr);
	CHECK(s.len < WS_NATS_MAX_LINE);
	h = mix_u64(h, s.len);
	return mix(h, s.ptr, s.len);
}

static void on_frame(void *ctx, const struct ws_nats_frame *f)
{
	struct run *r = ctx;
	uint64_t h = r->digest;
	size_t avail = f->hdr_block_len + f->payload_len;
	bool hv = f->verb == WS_NATS_HPUB || f->verb == WS_NATS_HMSG;
	bool pv = hv || f->verb == WS_NATS_PUB || f->verb == WS_NATS_MSG;
	struct ws_nats_js_ack ack;
	const struct ws_nats_header *e;

	CHECK(f->verb > WS_NATS_NONE && f->verb < WS_NATS_VERB_MAX);
	CHECK(f->offset >= r->last_end);
	CHECK(f->wire_len > 0);
	CHECK(f->offset + f->wire_len <= r->pos);
	r->last_end = f->offset + f->wire_len;

	/* Sizes: nothing beyond what the frame declared, or what is kept. */
	CHECK(f->hdr_len <= f->total_len);
	CHECK(f->total_len <= ws_nats_parser_max_payload(r->p));
	CHECK(f->hdr_block_len <= f->hdr_len);
	CHECK(f->payload_len <= f->total_len - f->hdr_len);
	CHECK(f->payload_len == 0 || f->hdr_block_len == f->hdr_len);
	CHECK(avail <= WS_NATS_MAX_PAYLOAD_KEEP);
	CHECK(!!(f->flags & WS_NATS_F_TRUNCATED) == (avail < f->total_len));
	CHECK(!!(f->flags & WS_NATS_F_CLIPPED) ==
	      (f->total_len > WS_NATS_MAX_PAYLOAD_KEEP));
	if (!(f->flags & (WS_NATS_F_GAP | WS_NATS_F_CLIPPED)))
		CHECK(avail == f->total_len);
	CHECK(f->headers.n <= WS_NATS_MAX_HEADERS);
	if (!pv)
		CHECK(f->total_len == 0 && avail == 0 &&
		      !(f->flags & ~WS_NATS_F_BAD_JSON));
	if (!hv)
		CHECK(f->hdr_len == 0 && f->headers.n == 0 &&
		      f->headers.status == 0);
	/* A wire length covers at least what was parsed out of it. */
	if (pv)
		CHECK(f->wire_len >=
		      (uint64_t)f->total_len + 2 + f->subject.len);

	h = mix_u64(h, f->verb);
	h = mix_u64(h, f->flags);
	h = mix_u64(h, f->offset);
	h = mix_u64(h, f->wire_len);
	h = mix_str(h, f->subject);
	h = mix_str(h, f->reply);
	h = mix_str(h, f->sid);
	h = mix_str(h, f->queue);
	h = mix_str(h, f->json);
	h = mix_str(h, f->err);
	h = mix_u64(h, f->max_msgs);
	h = mix_u64(h, f->info_max_payload);
	h = mix_u64(h, f->hdr_len);
	h = mix_u64(h, f->total_len);
	h = mix_u64(h, f->hdr_block_len);
	CHECK(f->hdr_block_len == 0 || f->hdr_block);
	h = mix(h, f->hdr_block, f->hdr_block_len);
	h = mix_u64(h, f->payload_len);
	CHECK(f->payload_len == 0 || f->payload);
	h = mix(h, f->payload, f->payload_len);
	h = mix_u64(h, f->headers.status);
	h = mix_str(h, f->headers.desc);
	h = mix_u64(h, f->headers.n);
	for (uint32_t i = 0; i < f->headers.n; i++) {
		/* Header slices lie inside the kept header block. */
		const char *lo = (const char *)f->hdr_block;
		const char *hi = lo + f->hdr_block_len;
		const struct ws_nats_header *x = &f->headers.v[i];

		CHECK(x->name.len > 0 && x->name.ptr >= lo &&
		      x->name.ptr + x->name.len <= hi);
		CHECK(x->value.len == 0 || (x->value.ptr >= lo &&
					    x->value.ptr + x->value.len <= hi));
		h = mix_str(h, x->name);
		h = mix_str(h, x->value);
	}
	r->digest = h;
	r->frames++;

	/* Helpers the span builder calls on every frame. */
	for (e = ws_nats_header_find(&f->headers, "traceparent", NULL); e;
	     e = ws_nats_header_find(&f->headers, "traceparent", e))
		CHECK(e->name.len == 11);
	if (ws_nats_parse_js_ack(f->reply.ptr, f->reply.len, &ack) == 0)
		CHECK(ack.stream.len && ack.consumer.len &&
		      ack.stream.ptr >= f->reply.ptr &&
		      ack.stream.ptr + ack.stream.len <=
			      f->reply.ptr + f->reply.len);
}

static void on_error(void *ctx, enum ws_nats_err reason, uint64_t offset)
{
	struct run *r = ctx;

	CHECK(reason > WS_NATS_ERR_NONE && reason < WS_NATS_ERR_MAX);
	CHECK(offset >= r->last_end && offset < r->pos);
	r->digest = mix_u64(mix_u64(r->digest, reason), offset);
	r->errors++;
}

static const struct ws_nats_cb cb = {
	.frame = on_frame,
	.error = on_error,
};

static uint64_t rng(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

enum mode { WHOLE, BYTES, RANDOM };

static void feed(struct run *r, const uint8_t *d, size_t n)
{
	/* An exact-size copy: reading past it is a heap overflow. */
	uint8_t *c = malloc(n);

	if (!c)
		abort();
	memcpy(c, d, n);
	r->pos += n;
	CHECK(ws_nats_parser_feed(r->p, c, n) == 0);
	free(c);
}

static void check_stats(const struct run *r)
{
	const struct ws_nats_stats *st = ws_nats_parser_stats(r->p);
	uint64_t pend = ws_nats_parser_pending(r->p);

	CHECK(st->bytes == st->frame_bytes + st->skipped_bytes + pend);
	CHECK(pend <= WS_NATS_MAX_LINE + (uint64_t)WS_NATS_MAX_PAYLOAD_CAP + 2);
}

static void run_plan(struct run *r, const uint8_t *data, const struct op *ops,
		     size_t nops, uint64_t max_payload, enum mode mode,
		     uint64_t seed, struct ws_nats_stats *st)
{
	memset(r, 0, sizeof(*r));
	r->digest = 0xcbf29ce484222325ull;
	r->p = ws_nats_parser_new(&cb, r);
	if (!r->p)
		abort();
	if (max_payload)
		CHECK(ws_nats_parser_set_max_payload(r->p, max_payload) == 0);
	for (size_t i = 0; i < nops; i++) {
		const struct op *o = &ops[i];
		size_t k = 0;

		if (o->gap) {
			r->pos += o->gap;
			CHECK(ws_nats_parser_gap(r->p, o->gap) == 0);
			check_stats(r);
			continue;
		}
		while (k < o->len) {
			size_t n = o->len - k;

			if (mode == BYTES)
				n = 1;
			else if (mode == RANDOM)
				n = 1 + rng(&seed) % 64;
			if (n > o->len - k)
				n = o->len - k;
			feed(r, data + o->off + k, n);
			check_stats(r);
			k += n;
		}
	}
	*st = *ws_nats_parser_stats(r->p);
	ws_nats_parser_free(r->p);
	r->p = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct op ops[MAX_OPS];
	struct ws_nats_stats st[3];
	struct run r[3];
	uint64_t seed = mix(0xcbf29ce484222325ull, data, size) | 1;
	uint64_t max_payload = 0, gaps = 0;
	size_t nops = 0, off = 0;

	/* A quarter of the runs use a small max_payload, as after INFO. */
	if (rng(&seed) % 4 == 0)
		max_payload = 1 + rng(&seed) % 300;
	/* Cut the input into data runs, one in eight replaced by a gap. */
	while (off < size && nops < MAX_OPS) {
		size_t n = 1 + rng(&seed) % 200;
		uint64_t g = 0;

		if (n > size - off || nops == MAX_OPS - 1)
			n = size - off;
		if (rng(&seed) % 8 == 0) {
			g = n;
			/* Sometimes the capture lost far more than we had. */
			if (rng(&seed) % 16 == 0)
				g += rng(&seed) % (1u << 30);
		}
		ops[nops++] = (struct op){(uint32_t)off, (uint32_t)n, g};
		gaps += g;
		off += n;
	}

	run_plan(&r[0], data, ops, nops, max_payload, WHOLE, seed, &st[0]);
	run_plan(&r[1], data, ops, nops, max_payload, BYTES, seed, &st[1]);
	run_plan(&r[2], data, ops, nops, max_payload, RANDOM, seed, &st[2]);
	for (int i = 1; i < 3; i++) {
		CHECK(r[i].digest == r[0].digest);
		CHECK(r[i].frames == r[0].frames);
		CHECK(r[i].errors == r[0].errors);
		CHECK(!memcmp(&st[i], &st[0], sizeof(st[0])));
	}
	CHECK(st[0].gap_bytes == gaps);
	return 0;
}
