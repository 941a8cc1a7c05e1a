/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for agent/proto/http.c.
 *
 * The first input byte picks the parser: 'S' (server) parses responses,
 * anything else requests; the rest is the stream. A PRNG seeded from the
 * input's hash cuts the stream into data runs and gaps (a gap drops the run's
 * bytes, as a capture cut would), queues request methods for a response
 * parser between runs (mostly GET, some HEAD and CONNECT), sometimes calls
 * tunnel() and, at the end, eof(). The same plan is then fed three ways: each
 * data run in one feed (the in-place fast path), one byte per feed, and random
 * chunk sizes. All three must give the same events, errors and stats. Every
 * chunk is copied into its own exact-size allocation so ASan catches a read
 * past what the parser was given, and every event is checked against the
 * invariants the span builder relies on.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http.h"

#define MAX_OPS 4096

enum op_kind { OP_DATA, OP_GAP, OP_EXPECT, OP_TUNNEL };

struct op {
	uint8_t kind;
	uint8_t method; /* OP_EXPECT */
	uint32_t off;	/* OP_DATA: into the stream */
	uint32_t len;
	uint64_t gap; /* OP_GAP */
};

struct run {
	uint64_t digest;
	uint64_t events;
	uint64_t errors;
	uint64_t pos;	   /* stream offset fed so far */
	uint64_t last_end; /* end of the previous message */
	bool open;	   /* a HEAD without its COMPLETE yet */
	uint64_t open_start, open_head_end;
	uint32_t open_flags;
	enum ws_http_kind kind;
	struct ws_http_parser *p;
};

static void die(const char *what)
{
	fprintf(stderr, "fuzz_http: invariant broken: %s\n", what);
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

static uint64_t mix_str(uint64_t h, struct ws_http_str s)
{
	CHECK(s.len == 0 || s.ptr);
	CHECK(s.len < WS_HTTP_MAX_HEAD);
	h = mix_u64(h, s.len);
	return mix(h, s.ptr, s.len);
}

static void check_msg(struct run *r, enum ws_http_event ev,
		      const struct ws_http_msg *m)
{
	uint32_t framing =
		m->flags & (WS_HTTP_F_CHUNKED | WS_HTTP_F_CONTENT_LENGTH |
			    WS_HTTP_F_UNTIL_CLOSE);

	CHECK(m->kind == r->kind);
	CHECK(m->version == 10 || m->version == 11);
	CHECK((framing & (framing - 1)) == 0);
	CHECK(m->start_off >= r->last_end);
	CHECK(m->head_end_off > m->start_off);
	CHECK(m->head_end_off - m->start_off <= WS_HTTP_MAX_HEAD);
	CHECK(m->head_end_off <= r->pos);
	CHECK(m->headers.n <= WS_HTTP_MAX_HEADERS);
	CHECK(m->headers.n == 0 || m->headers.v);
	if (m->flags & WS_HTTP_F_NOMEM)
		CHECK(m->headers.n == 0 && m->target.len == 0);
	for (uint32_t i = 0; i < m->headers.n; i++) {
		const struct ws_http_header *x = &m->headers.v[i];

		CHECK(x->name.len > 0 && x->name.ptr);
		CHECK(x->value.len == 0 || x->value.ptr);
		CHECK(x->name.ptr[0] != ' ' && x->name.ptr[0] != '\t');
		CHECK(memchr(x->name.ptr, ':', x->name.len) == NULL);
	}
	if (r->kind == WS_HTTP_REQUEST) {
		CHECK(m->method > WS_HTTP_M_NONE && m->method < WS_HTTP_M_MAX);
		CHECK(m->status == 0 && m->reason.len == 0);
		if (!(m->flags & WS_HTTP_F_NOMEM)) {
			CHECK(m->method_name.len > 0 &&
			      m->method_name.len <= WS_HTTP_MAX_METHOD);
			CHECK(ws_http_method_parse(m->method_name.ptr,
						   m->method_name.len) ==
			      m->method);
			CHECK(m->target.len > 0);
			CHECK(m->path.len + m->query.len < m->target.len ||
			      m->query.len == 0);
			CHECK(m->path.len <= m->target.len);
		}
		CHECK(!(m->flags & (WS_HTTP_F_UNTIL_CLOSE | WS_HTTP_F_TUNNEL |
				    WS_HTTP_F_INTERIM | WS_HTTP_F_NO_REQUEST)));
	} else {
		CHECK(m->status >= 100 && m->status <= 999);
		CHECK(m->method < WS_HTTP_M_MAX);
		CHECK(m->method_name.len == 0 && m->target.len == 0);
		CHECK(!(m->flags &
			(WS_HTTP_F_UPGRADE | WS_HTTP_F_EXPECT_CONTINUE)));
		if (m->status < 200 && m->status != 101)
			CHECK(m->flags & WS_HTTP_F_INTERIM);
		if (m->flags & (WS_HTTP_F_INTERIM | WS_HTTP_F_TUNNEL))
			CHECK(framing == 0);
	}

	if (ev == WS_HTTP_EV_HEAD) {
		CHECK(!r->open);
		CHECK(m->end_off == 0 && m->body_len == 0 && m->body_gap == 0);
		r->open = true;
		r->open_start = m->start_off;
		r->open_head_end = m->head_end_off;
		r->open_flags = m->flags;
	} else {
		uint64_t body = m->end_off - m->head_end_off;

		CHECK(ev == WS_HTTP_EV_COMPLETE);
		CHECK(r->open);
		CHECK(m->start_off == r->open_start);
		CHECK(m->head_end_off == r->open_head_end);
		/* COMPLETE only adds flags to what HEAD said. */
		CHECK((m->flags & r->open_flags) ==
		      (r->open_flags & ~WS_HTTP_F_NOMEM));
		CHECK(m->end_off >= m->head_end_off);
		CHECK(m->end_off <= r->pos);
		CHECK(m->body_len + m->body_gap <= body);
		if (!(m->flags & WS_HTTP_F_GAP))
			CHECK(m->body_gap == 0);
		if ((m->flags & WS_HTTP_F_CONTENT_LENGTH) &&
		    !(m->flags & WS_HTTP_F_TRUNCATED))
			CHECK(m->body_len + m->body_gap == m->content_length &&
			      body == m->content_length);
		if (!framing)
			CHECK(body == 0 && m->body_len == 0);
		if (!(m->flags & WS_HTTP_F_CHUNKED))
			CHECK(m->chunks == 0 && m->trailers == 0);
		if ((m->flags & WS_HTTP_F_UNTIL_CLOSE) &&
		    !(m->flags & WS_HTTP_F_TRUNCATED))
			CHECK(m->body_len + m->body_gap == body);
		r->open = false;
		r->last_end = m->end_off;
	}
}

static void on_msg(void *ctx, enum ws_http_event ev,
		   const struct ws_http_msg *m)
{
	struct run *r = ctx;
	uint64_t h = r->digest;

#ifdef FUZZ_HTTP_TRACE
	fprintf(stderr,
		"  %s %s%.*s%u start=%llu head_end=%llu end=%llu "
		"flags=%#x body=%llu gap=%llu hdrs=%u\n",
		ev == WS_HTTP_EV_HEAD ? "HEAD    " : "COMPLETE",
		m->method_name.len ? "" : "status ", (int)m->method_name.len,
		m->method_name.ptr ? m->method_name.ptr : "", m->status,
		(unsigned long long)m->start_off,
		(unsigned long long)m->head_end_off,
		(unsigned long long)m->end_off, m->flags,
		(unsigned long long)m->body_len,
		(unsigned long long)m->body_gap, m->headers.n);
#endif
	check_msg(r, ev, m);
	h = mix_u64(h, ev);
	h = mix_u64(h, m->flags);
	h = mix_u64(h, m->version);
	h = mix_u64(h, m->method);
	h = mix_str(h, m->method_name);
	h = mix_str(h, m->target);
	h = mix_str(h, m->path);
	h = mix_str(h, m->query);
	h = mix_u64(h, m->status);
	h = mix_str(h, m->reason);
	h = mix_u64(h, m->start_off);
	h = mix_u64(h, m->head_end_off);
	h = mix_u64(h, m->end_off);
	h = mix_u64(h, m->content_length);
	h = mix_u64(h, m->body_len);
	h = mix_u64(h, m->body_gap);
	h = mix_u64(h, m->chunks);
	h = mix_u64(h, m->trailers);
	h = mix_u64(h, m->headers.n);
	for (uint32_t i = 0; i < m->headers.n; i++) {
		h = mix_str(h, m->headers.v[i].name);
		h = mix_str(h, m->headers.v[i].value);
	}
	r->digest = h;
	r->events++;
}

static void on_error(void *ctx, enum ws_http_err reason, uint64_t offset)
{
	struct run *r = ctx;

	CHECK(reason > WS_HTTP_ERR_NONE && reason < WS_HTTP_ERR_MAX);
#ifdef FUZZ_HTTP_TRACE
	fprintf(stderr, "  error %s at %llu\n", ws_http_err_name(reason),
		(unsigned long long)offset);
#endif
	CHECK(offset >= r->last_end && offset < r->pos);
	r->digest = mix_u64(mix_u64(r->digest, reason), offset);
	r->errors++;
}

static const struct ws_http_cb cb = {
	.msg = on_msg,
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
	CHECK(ws_http_parser_feed(r->p, c, n) == 0);
	free(c);
}

static void check_stats(const struct run *r)
{
	const struct ws_http_stats *st = ws_http_parser_stats(r->p);
	uint64_t pend = ws_http_parser_pending(r->p), stops = 0;

	CHECK(st->bytes ==
	      st->msg_bytes + st->skipped_bytes + st->stopped_bytes + pend);
	CHECK(st->heads == st->messages + (r->open ? 1 : 0));
	CHECK(st->interim <= st->heads);
	CHECK(st->gap_bodies + st->truncated <= 2 * st->messages);
	CHECK(st->gap_heads + st->gap_resyncs <= 2 * st->gaps);
	CHECK(st->stops[WS_HTTP_STOP_NONE] == 0);
	for (int i = 1; i < WS_HTTP_STOP_MAX; i++)
		stops += st->stops[i];
	CHECK(stops == (ws_http_parser_stopped(r->p) != WS_HTTP_STOP_NONE));
	CHECK(!r->open || pend > 0);
	if (ws_http_parser_stopped(r->p) != WS_HTTP_STOP_NONE)
		CHECK(!r->open && pend == 0);
}

static void run_plan(struct run *r, enum ws_http_kind kind, const uint8_t *data,
		     const struct op *ops, size_t nops, bool eof,
		     enum mode mode, uint64_t seed, struct ws_http_stats *st)
{
	memset(r, 0, sizeof(*r));
	r->digest = 0xcbf29ce484222325ull;
	r->kind = kind;
	r->p = ws_http_parser_new(kind, &cb, r);
	if (!r->p)
		abort();
	for (size_t i = 0; i < nops; i++) {
		const struct op *o = &ops[i];
		size_t k = 0;

		switch (o->kind) {
		case OP_GAP:
			r->pos += o->gap;
			CHECK(ws_http_parser_gap(r->p, o->gap) == 0);
			check_stats(r);
			continue;
		case OP_EXPECT: {
			int rc = ws_http_parser_expect(
				r->p, (enum ws_http_method)o->method);

			CHECK(rc == 0 || rc == -ENOBUFS);
			continue;
		}
		case OP_TUNNEL:
			CHECK(ws_http_parser_tunnel(r->p) == 0);
			CHECK(ws_http_parser_stopped(r->p) !=
			      WS_HTTP_STOP_NONE);
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
	if (eof) {
		CHECK(ws_http_parser_eof(r->p) == 0);
		CHECK(!r->open);
		CHECK(ws_http_parser_pending(r->p) == 0);
		check_stats(r);
		CHECK(ws_http_parser_feed(r->p, data, 0) == -EPIPE);
		CHECK(ws_http_parser_gap(r->p, 1) == -EPIPE);
	}
	*st = *ws_http_parser_stats(r->p);
	ws_http_parser_free(r->p);
	r->p = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct op ops[MAX_OPS];
	static const uint8_t methods[8] = {
		WS_HTTP_M_GET,	   WS_HTTP_M_GET,   WS_HTTP_M_GET,
		WS_HTTP_M_POST,	   WS_HTTP_M_HEAD,  WS_HTTP_M_HEAD,
		WS_HTTP_M_CONNECT, WS_HTTP_M_OTHER,
	};
	struct ws_http_stats st[3];
	struct run r[3];
	uint64_t seed = mix(0xcbf29ce484222325ull, data, size) | 1;
	uint64_t gaps = 0;
	enum ws_http_kind kind = WS_HTTP_REQUEST;
	size_t nops = 0, off = 0;
	bool eof;

	if (size && data[0] == 'S')
		kind = WS_HTTP_RESPONSE;
	if (size) {
		data++;
		size--;
	}
	eof = rng(&seed) % 2 == 0;
	/* Cut the input into data runs, one in eight replaced by a gap. */
	while (off < size && nops < MAX_OPS - 2) {
		size_t n = 1 + rng(&seed) % 200;
		uint64_t g = 0;

		if (kind == WS_HTTP_RESPONSE && rng(&seed) % 2 == 0)
			ops[nops++] = (struct op){
				.kind = OP_EXPECT,
				.method = methods[rng(&seed) % 8],
			};
		if (rng(&seed) % 128 == 0)
			ops[nops++] = (struct op){.kind = OP_TUNNEL};
		if (n > size - off || nops >= MAX_OPS - 2)
			n = size - off;
		if (rng(&seed) % 8 == 0) {
			g = n;
			/* Sometimes the capture lost far more than we had. */
			if (rng(&seed) % 16 == 0)
				g += rng(&seed) % (1u << 30);
		}
		if (g)
			ops[nops++] = (struct op){.kind = OP_GAP, .gap = g};
		else
			ops[nops++] = (struct op){
				.kind = OP_DATA,
				.off = (uint32_t)off,
				.len = (uint32_t)n,
			};
		gaps += g;
		off += n;
	}

#ifdef FUZZ_HTTP_TRACE
	for (size_t i = 0; i < nops; i++)
		fprintf(stderr, "op %d off=%u len=%u gap=%llu method=%u\n",
			ops[i].kind, ops[i].off, ops[i].len,
			(unsigned long long)ops[i].gap, ops[i].method);
	fprintf(stderr, "eof=%d\n", eof);
#endif
	for (int i = 0; i < 3; i++) {
#ifdef FUZZ_HTTP_TRACE
		fprintf(stderr, "mode %d\n", i);
#endif
		run_plan(&r[i], kind, data, ops, nops, eof, (enum mode)i, seed,
			 &st[i]);
	}
	for (int i = 1; i < 3; i++) {
		CHECK(r[i].digest == r[0].digest);
		CHECK(r[i].events == r[0].events);
		CHECK(r[i].errors == r[0].errors);
		CHECK(!memcmp(&st[i], &st[0], sizeof(st[0])));
	}
	CHECK(st[0].gap_bytes == gaps);
	return 0;
}
