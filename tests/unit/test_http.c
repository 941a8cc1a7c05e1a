/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for agent/proto/http.c.
 *
 * Every chunk is fed from the end of a page followed by an inaccessible page,
 * so reading one byte past what the parser was given crashes the test. Every
 * event is deep-copied, so runs that split the stream differently can be
 * compared field by field; every run checks the byte accounting (bytes ==
 * msg_bytes + skipped_bytes + stopped_bytes + pending) after each call, and
 * that HEAD and COMPLETE events pair up and follow each other in the stream
 * without overlapping.
 */
#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "wirespan/abi.h"
#include "guard.h"
#include "proto/http.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Feed buf in chunks of at most GUARD_AREA, each ending at the guard. */
static void feed_guarded(struct ws_http_parser *p, const void *buf, size_t len)
{
	const uint8_t *b = buf;

	while (len) {
		size_t n = len < GUARD_AREA ? len : GUARD_AREA;

		assert_int_equal(ws_http_parser_feed(p, guard_copy(b, n), n),
				 0);
		b += n;
		len -= n;
	}
}

/* ---- allocation failures --------------------------------------------- */

/*
 * The parser allocates only with realloc (its head buffer), and nothing else
 * in these tests calls realloc, so interposing it lets a test make the
 * parser's allocations fail: while fail_reallocs is set, realloc fails.
 * Sanitizers and valgrind bring their own allocator; under them the test is
 * skipped.
 */
#if defined(__SANITIZE_ADDRESS__)
#define WS_TEST_NO_INTERPOSE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define WS_TEST_NO_INTERPOSE 1
#endif
#endif

static volatile bool fail_reallocs;

#ifndef WS_TEST_NO_INTERPOSE
void *realloc(void *ptr, size_t size)
{
	static void *(*real)(void *, size_t);

	if (fail_reallocs) {
		errno = ENOMEM;
		return NULL;
	}
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "realloc");
	return real(ptr, size);
}
#endif

static void feed_str(struct ws_http_parser *p, const char *s)
{
	feed_guarded(p, s, strlen(s));
}

/* ---- recording ------------------------------------------------------- */

/* An event and everything its message points at, in one allocation. */
struct mcopy {
	enum ws_http_event ev;
	struct ws_http_msg m;
	struct ws_http_header *h;
	char data[];
};

struct err_rec {
	enum ws_http_err reason;
	uint64_t offset;
};

struct rec {
	struct mcopy **e; /* every event, in order */
	size_t n, cap;
	struct mcopy **c; /* the COMPLETE events, in order */
	size_t nc;
	struct err_rec errs[64];
	size_t nerr;
	uint64_t last_end; /* end of the previous message */
	bool open;	   /* a HEAD waits for its COMPLETE */
	uint64_t open_start;
};

static void copy_str(char **cur, struct ws_http_str *s)
{
	if (!s->len) {
		s->ptr = NULL;
		return;
	}
	memcpy(*cur, s->ptr, s->len);
	s->ptr = *cur;
	*cur += s->len;
}

static void rec_msg(void *ctx, enum ws_http_event ev,
		    const struct ws_http_msg *m)
{
	struct rec *r = ctx;
	size_t sz = m->method_name.len + m->target.len + m->path.len +
		    m->query.len + m->reason.len +
		    m->headers.n * sizeof(struct ws_http_header);
	struct mcopy *c;
	char *cur;

	assert_true(m->headers.n <= WS_HTTP_MAX_HEADERS);
	assert_true(m->start_off >= r->last_end);
	assert_true(m->head_end_off > m->start_off);
	if (ev == WS_HTTP_EV_HEAD) {
		assert_false(r->open);
		assert_int_equal(m->end_off, 0);
		r->open = true;
		r->open_start = m->start_off;
	} else {
		assert_int_equal(ev, WS_HTTP_EV_COMPLETE);
		assert_true(r->open);
		assert_int_equal(m->start_off, r->open_start);
		assert_true(m->end_off >= m->head_end_off);
		assert_true(m->body_len + m->body_gap <=
			    m->end_off - m->head_end_off);
		r->open = false;
		r->last_end = m->end_off;
	}
	for (uint32_t i = 0; i < m->headers.n; i++)
		sz += m->headers.v[i].name.len + m->headers.v[i].value.len;

	/* Headers first: the array must be aligned. */
	c = calloc(1, sizeof(*c) + sz);
	assert_non_null(c);
	c->ev = ev;
	c->m = *m;
	c->h = (struct ws_http_header *)(void *)c->data;
	cur = c->data + m->headers.n * sizeof(struct ws_http_header);
	copy_str(&cur, &c->m.method_name);
	copy_str(&cur, &c->m.target);
	copy_str(&cur, &c->m.path);
	copy_str(&cur, &c->m.query);
	copy_str(&cur, &c->m.reason);
	for (uint32_t i = 0; i < m->headers.n; i++) {
		c->h[i] = m->headers.v[i];
		copy_str(&cur, &c->h[i].name);
		copy_str(&cur, &c->h[i].value);
	}
	c->m.headers.v = m->headers.v ? c->h : NULL;

	if (r->n == r->cap) {
		/* Not realloc: test_nomem makes that fail. */
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct mcopy **e = calloc(cap, sizeof(*e));
		struct mcopy **cc = calloc(cap, sizeof(*cc));

		assert_non_null(e);
		assert_non_null(cc);
		if (r->n) {
			memcpy(e, r->e, r->n * sizeof(*e));
			memcpy(cc, r->c, r->nc * sizeof(*cc));
		}
		free(r->e);
		free(r->c);
		r->e = e;
		r->c = cc;
		r->cap = cap;
	}
	r->e[r->n++] = c;
	if (ev == WS_HTTP_EV_COMPLETE)
		r->c[r->nc++] = c;
}

static void rec_error(void *ctx, enum ws_http_err reason, uint64_t offset)
{
	struct rec *r = ctx;

	assert_true(reason > WS_HTTP_ERR_NONE && reason < WS_HTTP_ERR_MAX);
	if (r->nerr < ARRAY_SIZE(r->errs))
		r->errs[r->nerr++] = (struct err_rec){reason, offset};
}

static const struct ws_http_cb rec_cb = {
	.msg = rec_msg,
	.error = rec_error,
};

static void rec_free(struct rec *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->e[i]);
	free(r->e);
	free(r->c);
	memset(r, 0, sizeof(*r));
}

static bool str_eq(struct ws_http_str s, const char *want)
{
	size_t n = strlen(want);

	return s.len == n && (n == 0 || memcmp(s.ptr, want, n) == 0);
}

#define assert_str(s, want)                                            \
	do {                                                           \
		if (!str_eq((s), (want)))                              \
			fail_msg("%s: got \"%.*s\", want \"%s\"", #s,  \
				 (int)(s).len, (s).ptr ? (s).ptr : "", \
				 (want));                              \
	} while (0)

static bool hstr_eq(struct ws_http_str a, struct ws_http_str b)
{
	return a.len == b.len && (a.len == 0 || !memcmp(a.ptr, b.ptr, a.len));
}

/* Field-by-field comparison of two recorded events. */
static void assert_event_equal(const struct mcopy *ca, const struct mcopy *cb,
			       size_t i)
{
	const struct ws_http_msg *a = &ca->m, *b = &cb->m;

	if (ca->ev != cb->ev || a->kind != b->kind || a->flags != b->flags ||
	    a->version != b->version || a->method != b->method ||
	    !hstr_eq(a->method_name, b->method_name) ||
	    !hstr_eq(a->target, b->target) || !hstr_eq(a->path, b->path) ||
	    !hstr_eq(a->query, b->query) || a->status != b->status ||
	    !hstr_eq(a->reason, b->reason) || a->start_off != b->start_off ||
	    a->head_end_off != b->head_end_off || a->end_off != b->end_off ||
	    a->content_length != b->content_length ||
	    a->body_len != b->body_len || a->body_gap != b->body_gap ||
	    a->chunks != b->chunks || a->trailers != b->trailers ||
	    a->headers.n != b->headers.n)
		fail_msg(
			"event %zu differs (ev %d@%llu flags %#x vs ev %d@%llu "
			"flags %#x)",
			i, ca->ev, (unsigned long long)a->start_off, a->flags,
			cb->ev, (unsigned long long)b->start_off, b->flags);
	for (uint32_t k = 0; k < a->headers.n; k++)
		if (!hstr_eq(a->headers.v[k].name, b->headers.v[k].name) ||
		    !hstr_eq(a->headers.v[k].value, b->headers.v[k].value))
			fail_msg("event %zu header %u differs", i, k);
}

static void assert_rec_equal(const struct rec *a, const struct rec *b)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++)
		assert_event_equal(a->e[i], b->e[i], i);
	assert_int_equal(a->nerr, b->nerr);
	for (size_t i = 0; i < a->nerr; i++) {
		assert_int_equal(a->errs[i].reason, b->errs[i].reason);
		assert_int_equal(a->errs[i].offset, b->errs[i].offset);
	}
}

/* ---- scripts: data pieces, gaps and calls ----------------------------- */

enum piece_op { P_DATA, P_GAP, P_EXPECT, P_EOF, P_TUNNEL };

/* One step of a stream. */
struct piece {
	enum piece_op op;
	const void *data; /* P_DATA */
	size_t len;	  /* P_DATA, P_GAP; P_EXPECT: the method */
};

#define DATA(s) ((struct piece){P_DATA, (s), sizeof(s) - 1})
#define BUF(b, n) ((struct piece){P_DATA, (b), (n)})
#define GAP(n) ((struct piece){P_GAP, NULL, (n)})
#define EXPECT(m) ((struct piece){P_EXPECT, NULL, (m)})
#define EOF_ ((struct piece){P_EOF, NULL, 0})
#define TUNNEL ((struct piece){P_TUNNEL, NULL, 0})

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

enum split_mode {
	SPLIT_WHOLE, /* each data piece in one feed */
	SPLIT_BYTES, /* one byte per feed */
	SPLIT_RANDOM /* random chunk sizes from the seed */
};

static void check_accounting(const struct ws_http_parser *p,
			     const struct rec *r)
{
	const struct ws_http_stats *st = ws_http_parser_stats(p);

	assert_int_equal(st->bytes, st->msg_bytes + st->skipped_bytes +
					    st->stopped_bytes +
					    ws_http_parser_pending(p));
	assert_int_equal(st->heads, st->messages + (r->open ? 1 : 0));
}

/* Run pieces through a fresh parser; frames in r, final stats in st. */
static void run(const struct piece *pc, size_t npc, enum ws_http_kind kind,
		enum split_mode mode, uint64_t seed, struct rec *r,
		struct ws_http_stats *st)
{
	struct ws_http_parser *p;
	uint64_t s = seed | 1;

	memset(r, 0, sizeof(*r));
	p = ws_http_parser_new(kind, &rec_cb, r);
	assert_non_null(p);
	for (size_t i = 0; i < npc; i++) {
		const uint8_t *d = pc[i].data;
		size_t len = pc[i].len, k = 0;

		switch (pc[i].op) {
		case P_GAP:
			assert_int_equal(ws_http_parser_gap(p, len), 0);
			break;
		case P_EXPECT:
			ws_http_parser_expect(p, (enum ws_http_method)len);
			break;
		case P_EOF:
			assert_int_equal(ws_http_parser_eof(p), 0);
			assert_false(r->open);
			assert_int_equal(ws_http_parser_pending(p), 0);
			break;
		case P_TUNNEL:
			assert_int_equal(ws_http_parser_tunnel(p), 0);
			assert_false(r->open);
			break;
		case P_DATA:
			while (k < len) {
				size_t n = len - k;

				if (mode == SPLIT_BYTES) {
					n = 1;
				} else if (mode == SPLIT_RANDOM) {
					/* Mostly small pieces, some large. */
					size_t most =
						rng_next(&s) % 4 ? 17 : 9000;

					n = 1 + rng_next(&s) % most;
				}
				if (n > len - k)
					n = len - k;
				feed_guarded(p, d + k, n);
				check_accounting(p, r);
				k += n;
			}
			break;
		}
		check_accounting(p, r);
	}
	*st = *ws_http_parser_stats(p);
	ws_http_parser_free(p);
}

/* Whole, byte-at-a-time and 40 random splits all give the same result. */
static void run_all_splits(const struct piece *pc, size_t npc,
			   enum ws_http_kind kind, struct rec *r,
			   struct ws_http_stats *st)
{
	struct rec other;
	struct ws_http_stats ost;

	run(pc, npc, kind, SPLIT_WHOLE, 0, r, st);
	run(pc, npc, kind, SPLIT_BYTES, 0, &other, &ost);
	assert_rec_equal(r, &other);
	assert_memory_equal(st, &ost, sizeof(ost));
	rec_free(&other);
	for (uint64_t seed = 1; seed <= 40; seed++) {
		run(pc, npc, kind, SPLIT_RANDOM, seed * 0x9e3779b97f4a7c15ull,
		    &other, &ost);
		assert_rec_equal(r, &other);
		assert_memory_equal(st, &ost, sizeof(ost));
		rec_free(&other);
	}
}

static void run_req(const char *s, struct rec *r, struct ws_http_stats *st)
{
	struct piece pc = {P_DATA, s, strlen(s)};

	run_all_splits(&pc, 1, WS_HTTP_REQUEST, r, st);
}

static uint64_t total_errors(const struct ws_http_stats *st)
{
	uint64_t n = 0;

	for (int i = 0; i < WS_HTTP_ERR_MAX; i++)
		n += st->errors[i];
	return n;
}

static const char *hval(const struct ws_http_msg *m, const char *name)
{
	static char buf[256];
	const struct ws_http_header *h =
		ws_http_header_find(&m->headers, name, NULL);

	if (!h)
		return NULL;
	snprintf(buf, sizeof(buf), "%.*s", (int)h->value.len,
		 h->value.ptr ? h->value.ptr : "");
	return buf;
}

/* ---- tests: requests ------------------------------------------------- */

#define GW_REQ                                                              \
	"GET /api/v1/orders?id=42&expand=items HTTP/1.1\r\n"                \
	"Host: api.example.com\r\n"                                         \
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101\r\n"    \
	"Accept: application/json\r\n"                                      \
	"Accept-Encoding: gzip, deflate, br\r\n"                            \
	"Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIi" \
	"OiIxMjM0NTY3ODkwIiwiaWF0IjoxNTE2MjM5MDIyfQ.c2lnbmF0dXJl\r\n"       \
	"X-Forwarded-For: 203.0.113.7, 10.0.0.2\r\n"                        \
	"X-Forwarded-Proto: https\r\n"                                      \
	"X-Request-Id: 9f0c4a7e-1d2b-4c3a-8e5f-6a7b8c9d0e1f\r\n"            \
	"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331" \
	"-01\r\n"                                                           \
	"tracestate: congo=t61rcWkgMzE\r\n"                                 \
	"Cookie: session=abc123; theme=dark\r\n"                            \
	"Connection: keep-alive\r\n\r\n"

static void test_request_head(void **state)
{
	struct rec r;
	struct ws_http_stats st;
	const struct ws_http_msg *m;
	const struct ws_http_header *h;

	run_req(GW_REQ, &r, &st);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.e[0]->ev, WS_HTTP_EV_HEAD);
	assert_int_equal(r.e[1]->ev, WS_HTTP_EV_COMPLETE);
	m = &r.c[0]->m;
	assert_int_equal(m->kind, WS_HTTP_REQUEST);
	assert_int_equal(m->method, WS_HTTP_M_GET);
	assert_str(m->method_name, "GET");
	assert_str(m->target, "/api/v1/orders?id=42&expand=items");
	assert_str(m->path, "/api/v1/orders");
	assert_str(m->query, "id=42&expand=items");
	assert_int_equal(m->version, 11);
	assert_int_equal(m->flags, 0);
	assert_int_equal(m->headers.n, 12);
	assert_int_equal(m->start_off, 0);
	assert_int_equal(m->head_end_off, sizeof(GW_REQ) - 1);
	assert_int_equal(m->end_off, sizeof(GW_REQ) - 1);
	assert_int_equal(m->body_len, 0);
	assert_string_equal(hval(m, "HOST"), "api.example.com");
	assert_string_equal(hval(m, "x-forwarded-for"),
			    "203.0.113.7, 10.0.0.2");
	assert_string_equal(hval(m, "TraceParent"),
			    "00-0af7651916cd43dd8448eb211c80319c-"
			    "b7ad6b7169203331-01");
	assert_null(hval(m, "Content-Length"));
	assert_null(hval(m, "Hos"));
	h = ws_http_header_find(&m->headers, "authorization", NULL);
	assert_non_null(h);
	assert_str(h->name, "Authorization");
	assert_null(ws_http_header_find(&m->headers, "authorization", h));
	assert_null(ws_http_header_find(NULL, "host", NULL));
	assert_null(ws_http_header_find(&m->headers, NULL, NULL));
	/* HEAD shows what COMPLETE shows, bar the end. */
	assert_int_equal(r.e[0]->m.headers.n, 12);
	assert_str(r.e[0]->m.target, "/api/v1/orders?id=42&expand=items");
	assert_int_equal(st.heads, 1);
	assert_int_equal(st.messages, 1);
	assert_int_equal(st.msg_bytes, st.bytes);
	rec_free(&r);
}

static void test_request_forms(void **state)
{
	static const struct {
		const char *line;
		enum ws_http_method method;
		const char *path, *query;
		uint8_t version;
	} cases[] = {
		{"GET / HTTP/1.1", WS_HTTP_M_GET, "/", "", 11},
		{"GET /a? HTTP/1.0", WS_HTTP_M_GET, "/a", "", 10},
		{"GET /a?b?c=d HTTP/1.1", WS_HTTP_M_GET, "/a", "b?c=d", 11},
		{"HEAD /x HTTP/1.9", WS_HTTP_M_HEAD, "/x", "", 11},
		{"OPTIONS * HTTP/1.1", WS_HTTP_M_OPTIONS, "*", "", 11},
		{"GET http://h.example:8080/p/q?r=s HTTP/1.1", WS_HTTP_M_GET,
		 "/p/q", "r=s", 11},
		{"GET http://h.example HTTP/1.1", WS_HTTP_M_GET, "", "", 11},
		{"DELETE /d HTTP/1.1", WS_HTTP_M_DELETE, "/d", "", 11},
		{"PATCH /p HTTP/1.1", WS_HTTP_M_PATCH, "/p", "", 11},
		{"TRACE /t HTTP/1.1", WS_HTTP_M_TRACE, "/t", "", 11},
		{"PROPFIND /dav HTTP/1.1", WS_HTTP_M_OTHER, "/dav", "", 11},
		{"get /lower HTTP/1.1", WS_HTTP_M_OTHER, "/lower", "", 11},
	};
	char buf[256];
	struct rec r;
	struct ws_http_stats st;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(buf, sizeof(buf), "%s\r\n\r\n", cases[i].line);
		run_req(buf, &r, &st);
		if (r.nc != 1)
			fail_msg("case %zu: %zu messages", i, r.nc);
		assert_int_equal(r.c[0]->m.method, cases[i].method);
		assert_str(r.c[0]->m.path, cases[i].path);
		assert_str(r.c[0]->m.query, cases[i].query);
		assert_int_equal(r.c[0]->m.version, cases[i].version);
		assert_int_equal(total_errors(&st), 0);
		rec_free(&r);
	}

	/* Bare LF line ends, and empty lines between messages. */
	run_req("GET /lf HTTP/1.1\nHost: x\n\n\r\n\r\nGET /two HTTP/1.0\n\n",
		&r, &st);
	assert_int_equal(r.nc, 2);
	assert_string_equal(hval(&r.c[0]->m, "host"), "x");
	assert_int_equal(r.c[1]->m.start_off, 30);
	assert_int_equal(r.c[1]->m.flags, WS_HTTP_F_CLOSE);
	assert_int_equal(st.skipped_bytes, 4);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);
}

static void test_pipelined_requests(void **state)
{
	static const char in[] =
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
		"POST /b HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world"
		"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		"5;name=v\r\nhello\r\nB \r\nhello world\r\n0\r\n"
		"X-Sum: 7\r\nX-Other: 8\r\n\r\n"
		"HEAD /d HTTP/1.1\r\n\r\n"
		"POST /e HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
		"GET /f HTTP/1.1\r\nConnection: close\r\n\r\n";
	struct rec r;
	struct ws_http_stats st;

	run_req(in, &r, &st);
	assert_int_equal(r.nc, 6);
	for (size_t i = 1; i < r.nc; i++)
		assert_int_equal(r.c[i]->m.start_off, r.c[i - 1]->m.end_off);
	assert_int_equal(r.c[1]->m.flags, WS_HTTP_F_CONTENT_LENGTH);
	assert_int_equal(r.c[1]->m.content_length, 11);
	assert_int_equal(r.c[1]->m.body_len, 11);
	assert_int_equal(r.c[1]->m.end_off - r.c[1]->m.head_end_off, 11);
	assert_int_equal(r.c[2]->m.flags, WS_HTTP_F_CHUNKED);
	assert_int_equal(r.c[2]->m.body_len, 16);
	assert_int_equal(r.c[2]->m.chunks, 2);
	assert_int_equal(r.c[2]->m.trailers, 2);
	assert_int_equal(r.c[3]->m.method, WS_HTTP_M_HEAD);
	assert_int_equal(r.c[4]->m.flags, WS_HTTP_F_CONTENT_LENGTH);
	assert_int_equal(r.c[4]->m.body_len, 0);
	assert_int_equal(r.c[5]->m.flags, WS_HTTP_F_CLOSE);
	assert_int_equal(r.c[5]->m.end_off, sizeof(in) - 1);
	assert_int_equal(st.msg_bytes, sizeof(in) - 1);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);
}

/* ---- tests: responses ------------------------------------------------- */

static void test_response_framing(void **state)
{
	static const char resp[] =
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"
		"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n" /* HEAD */
		"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"
		"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
		"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
		"everything to the close\r\nHTTP/1.1 200 OK\r\n\r\n";
	struct piece pc[] = {
		EXPECT(WS_HTTP_M_GET),
		EXPECT(WS_HTTP_M_POST),
		EXPECT(WS_HTTP_M_HEAD),
		EXPECT(WS_HTTP_M_DELETE),
		EXPECT(WS_HTTP_M_GET),
		DATA(resp),
		EXPECT(WS_HTTP_M_GET),
		EXPECT(WS_HTTP_M_GET),
		EOF_,
	};
	struct rec r;
	struct ws_http_stats st;
	const struct ws_http_msg *m;

	run_all_splits(pc, ARRAY_SIZE(pc), WS_HTTP_RESPONSE, &r, &st);
	assert_int_equal(r.nc, 7);
	m = &r.c[0]->m;
	assert_int_equal(m->status, 200);
	assert_str(m->reason, "OK");
	assert_int_equal(m->method, WS_HTTP_M_GET);
	assert_int_equal(m->body_len, 5);
	assert_int_equal(r.c[1]->m.method, WS_HTTP_M_POST);
	assert_int_equal(r.c[1]->m.flags, WS_HTTP_F_CHUNKED);
	assert_int_equal(r.c[1]->m.body_len, 9);
	assert_int_equal(r.c[2]->m.method, WS_HTTP_M_HEAD);
	assert_int_equal(r.c[2]->m.flags, 0);
	assert_int_equal(r.c[2]->m.end_off, r.c[2]->m.head_end_off);
	assert_int_equal(r.c[3]->m.status, 204);
	assert_int_equal(r.c[3]->m.end_off, r.c[3]->m.head_end_off);
	assert_int_equal(r.c[4]->m.status, 304);
	assert_int_equal(r.c[4]->m.flags, 0);
	assert_int_equal(r.c[4]->m.end_off, r.c[4]->m.head_end_off);
	/* Its request's method was pushed too late. */
	assert_int_equal(r.c[5]->m.status, 404);
	assert_int_equal(r.c[5]->m.flags,
			 WS_HTTP_F_CONTENT_LENGTH | WS_HTTP_F_NO_REQUEST);
	m = &r.c[6]->m;
	assert_int_equal(m->version, 10);
	assert_int_equal(m->flags, WS_HTTP_F_UNTIL_CLOSE | WS_HTTP_F_CLOSE |
					   WS_HTTP_F_EOF |
					   WS_HTTP_F_NO_REQUEST);
	assert_int_equal(m->end_off, sizeof(resp) - 1);
	assert_int_equal(m->body_len, 44);
	assert_int_equal(st.until_close, 1);
	assert_int_equal(st.no_request, 2);
	assert_int_equal(st.msg_bytes, sizeof(resp) - 1);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);

	/* Status lines: bare code, empty reason, odd codes. */
	struct piece ps[] = {DATA("HTTP/1.1 500\r\nContent-Length: 0\r\n\r\n"
				  "HTTP/1.1 418 \r\nContent-Length: 0\r\n\r\n"
				  "HTTP/1.0 999 Odd Reason  \r\n"
				  "Content-Length: 0\r\n\r\n")};
	run_all_splits(ps, 1, WS_HTTP_RESPONSE, &r, &st);
	assert_int_equal(r.nc, 3);
	assert_int_equal(r.c[0]->m.status, 500);
	assert_str(r.c[0]->m.reason, "");
	assert_int_equal(r.c[1]->m.status, 418);
	assert_str(r.c[1]->m.reason, "");
	assert_int_equal(r.c[2]->m.status, 999);
	assert_str(r.c[2]->m.reason, "Odd Reason  ");
	rec_free(&r);
}

static void test_interim_and_expect(void **state)
{
	static const char req[] = "PUT /upload HTTP/1.1\r\nHost: s\r\n"
				  "Expect: 100-Continue\r\n"
				  "Content-Length: 4\r\n\r\n";
	struct piece pq[] = {DATA(req), DATA("data")};
	struct piece pr[] = {
		EXPECT(WS_HTTP_M_PUT),
		DATA("HTTP/1.1 100 Continue\r\n\r\n"
		     "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
		     "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
	};
	struct rec r;
	struct ws_http_stats st;

	run_all_splits(pq, 2, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.flags,
			 WS_HTTP_F_EXPECT_CONTINUE | WS_HTTP_F_CONTENT_LENGTH);
	/* HEAD comes before the body: the owner may push the method then. */
	assert_int_equal(r.e[0]->ev, WS_HTTP_EV_HEAD);
	assert_int_equal(r.e[0]->m.head_end_off, sizeof(req) - 1);
	assert_int_equal(r.c[0]->m.end_off, sizeof(req) + 3);
	rec_free(&r);

	run_all_splits(pr, 2, WS_HTTP_RESPONSE, &r, &st);
	assert_int_equal(r.nc, 3);
	assert_int_equal(r.c[0]->m.status, 100);
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_INTERIM);
	assert_int_equal(r.c[0]->m.method, WS_HTTP_M_PUT);
	assert_int_equal(r.c[1]->m.status, 103);
	assert_int_equal(r.c[1]->m.flags, WS_HTTP_F_INTERIM);
	assert_int_equal(r.c[1]->m.method, WS_HTTP_M_PUT);
	assert_int_equal(r.c[2]->m.status, 201);
	assert_int_equal(r.c[2]->m.method, WS_HTTP_M_PUT);
	assert_int_equal(r.c[2]->m.flags, WS_HTTP_F_CONTENT_LENGTH);
	assert_int_equal(st.interim, 2);
	assert_int_equal(st.no_request, 0);
	rec_free(&r);
}

static void test_connection_close(void **state)
{
	static const struct {
		const char *in;
		uint32_t flags;
	} cases[] = {
		{"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
		 WS_HTTP_F_CLOSE},
		{"GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
		 WS_HTTP_F_CLOSE},
		{"GET / HTTP/1.0\r\n\r\n", WS_HTTP_F_CLOSE},
		{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0},
		{"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", 0},
		{"GET / HTTP/1.1\r\n\r\n", 0},
	};
	struct rec r;
	struct ws_http_stats st;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		run_req(cases[i].in, &r, &st);
		assert_int_equal(r.nc, 1);
		if (r.c[0]->m.flags != cases[i].flags)
			fail_msg("case %zu: flags %#x", i, r.c[0]->m.flags);
		rec_free(&r);
	}
}

/* ---- tests: protocol switches ----------------------------------------- */

static void test_upgrade(void **state)
{
	static const char ws_req[] = "GET /chat HTTP/1.1\r\nHost: s\r\n"
				     "Upgrade: websocket\r\n"
				     "Connection: Upgrade\r\n\r\n";
	static const char ws_resp[] = "HTTP/1.1 101 Switching Protocols\r\n"
				      "Upgrade: websocket\r\n"
				      "Connection: Upgrade\r\n\r\n";
	struct piece pq[] = {DATA(ws_req),
			     DATA("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
				  "GET / HTTP/1.1\r\n\r\n")};
	struct piece pr[] = {EXPECT(WS_HTTP_M_GET), DATA(ws_resp),
			     DATA("\x81\x05hello\r\nHTTP/1.1 200 OK\r\n\r\n")};
	struct rec r;
	struct ws_http_stats st;

	run_all_splits(pq, 2, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_UPGRADE);
	assert_int_equal(st.stops[WS_HTTP_STOP_TUNNEL], 1);
	assert_int_equal(st.stopped_bytes, 11 + 18);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);

	run_all_splits(pr, 3, WS_HTTP_RESPONSE, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.status, 101);
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_TUNNEL);
	assert_int_equal(r.c[0]->m.end_off, sizeof(ws_resp) - 1);
	assert_int_equal(st.stops[WS_HTTP_STOP_TUNNEL], 1);
	assert_int_equal(st.stopped_bytes, 7 + 2 + 19);
	assert_int_equal(st.msg_bytes, sizeof(ws_resp) - 1);
	rec_free(&r);

	/* h2c refused: the client goes on with HTTP/1.1. */
	run_req("GET / HTTP/1.1\r\nUpgrade: h2c\r\n"
		"Connection: Upgrade, HTTP2-Settings\r\n\r\n"
		"GET /next HTTP/1.1\r\n\r\n",
		&r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_UPGRADE);
	assert_int_equal(r.c[1]->m.flags, 0);
	assert_int_equal(st.stops[WS_HTTP_STOP_TUNNEL], 0);
	rec_free(&r);

	/* h2c accepted: the client sends the HTTP/2 preface. */
	run_req("GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		&r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(st.stops[WS_HTTP_STOP_H2], 1);
	assert_int_equal(st.stopped_bytes, 24);
	rec_free(&r);

	/* Upgrade, then a line that is not a request: the tunnel. */
	run_req("GET / HTTP/1.1\r\nUpgrade: foo\r\n\r\nhello there\r\n", &r,
		&st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(st.stops[WS_HTTP_STOP_TUNNEL], 1);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);
}

static void test_connect(void **state)
{
	static const char tls[] = "\x16\x03\x01\x00\x05hello";
	struct piece pq[] = {
		DATA("CONNECT db.example:5432 HTTP/1.1\r\n"
		     "Host: db.example:5432\r\n\r\n"),
		DATA("\x00\x00\x00\x08\x04\xd2\x16\x2f"),
	};
	struct piece pr[] = {
		EXPECT(WS_HTTP_M_CONNECT),
		EXPECT(WS_HTTP_M_CONNECT),
		DATA("HTTP/1.1 407 Proxy Authentication Required\r\n"
		     "Content-Length: 3\r\n\r\nno!"
		     "HTTP/1.1 200 Connection established\r\n\r\n"),
		DATA(tls),
	};
	struct rec r;
	struct ws_http_stats st;

	run_all_splits(pq, 2, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.method, WS_HTTP_M_CONNECT);
	assert_str(r.c[0]->m.target, "db.example:5432");
	assert_str(r.c[0]->m.path, "");
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_UPGRADE);
	assert_int_equal(st.stops[WS_HTTP_STOP_TUNNEL], 1);
	assert_int_equal(st.stopped_bytes, 8);
	rec_free(&r);

	/* A refused CONNECT has a body; the retry tunnels. */
	run_all_splits(pr, 4, WS_HTTP_RESPONSE, &r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(r.c[0]->m.status, 407);
	assert_int_equal(r.c[0]->m.body_len, 3);
	assert_int_equal(r.c[1]->m.status, 200);
	assert_int_equal(r.c[1]->m.flags, WS_HTTP_F_TUNNEL);
	assert_int_equal(ws_http_parser_stopped(NULL), WS_HTTP_STOP_NONE);
	assert_int_equal(st.stops[WS_HTTP_STOP_TUNNEL], 1);
	assert_int_equal(st.stopped_bytes, sizeof(tls) - 1);
	rec_free(&r);

	/* The owner stops the request side when the response tunnels. */
	struct piece pt[] = {
		DATA("CONNECT h:443 HTTP/1.1\r\n\r\n"),
		TUNNEL,
		DATA("GET / HTTP/1.1\r\n\r\n"),
	};
	run_all_splits(pt, 3, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(st.stopped_bytes, 18);
	rec_free(&r);
}

static void test_h2_and_tls(void **state)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
				      "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
	static const char settings[] = "\x00\x00\x06\x04\x00\x00\x00\x00\x00"
				       "\x00\x03\x00\x00\x00\x64";
	static const char hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc"
				    "\x03\x03GET / HTTP/1.1\r\n\r\n";
	struct rec r;
	struct ws_http_stats st;
	struct piece p1[] = {BUF(preface, sizeof(preface) - 1)};
	struct piece p2[] = {BUF(settings, sizeof(settings) - 1)};
	struct piece p3[] = {BUF(hello, sizeof(hello) - 1)};
	struct piece p4[] = {DATA("GET / HTTP/1.1\r\n\r\n"),
			     BUF(hello, sizeof(hello) - 1)};
	struct piece p5[] = {
		DATA("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
		BUF(hello, sizeof(hello) - 1)};

	run_all_splits(p1, 1, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.n, 0);
	assert_int_equal(st.stops[WS_HTTP_STOP_H2], 1);
	assert_int_equal(st.stopped_bytes, sizeof(preface) - 1);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);

	run_all_splits(p2, 1, WS_HTTP_RESPONSE, &r, &st);
	assert_int_equal(r.n, 0);
	assert_int_equal(st.stops[WS_HTTP_STOP_H2], 1);
	assert_int_equal(st.stopped_bytes, sizeof(settings) - 1);
	rec_free(&r);

	for (int k = 0; k < 2; k++) {
		run_all_splits(p3, 1, k ? WS_HTTP_RESPONSE : WS_HTTP_REQUEST,
			       &r, &st);
		assert_int_equal(r.n, 0);
		assert_int_equal(st.stops[WS_HTTP_STOP_TLS], 1);
		assert_int_equal(st.stopped_bytes, sizeof(hello) - 1);
		assert_int_equal(total_errors(&st), 0);
		rec_free(&r);
	}

	/* At a message boundary later in the stream too. */
	run_all_splits(p4, 2, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(st.stops[WS_HTTP_STOP_TLS], 1);
	rec_free(&r);
	run_all_splits(p5, 2, WS_HTTP_RESPONSE, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(st.stops[WS_HTTP_STOP_TLS], 1);
	rec_free(&r);

	/* Near misses are garbage, not another protocol. */
	struct piece p6[] = {DATA("\x16\x04xyz\r\nGET / HTTP/1.1\r\n\r\n")};
	run_all_splits(p6, 1, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(st.errors[WS_HTTP_ERR_START_LINE], 1);
	assert_int_equal(st.stops[WS_HTTP_STOP_TLS], 0);
	rec_free(&r);
	struct piece p7[] = {DATA("\x00\x00\x06\x01\x00\x00\x00\x00\x00\r\n"
				  "HTTP/1.1 200 OK\r\n\r\n"),
			     EOF_};
	run_all_splits(p7, 2, WS_HTTP_RESPONSE, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(st.errors[WS_HTTP_ERR_START_LINE], 1);
	assert_int_equal(st.stops[WS_HTTP_STOP_H2], 0);
	rec_free(&r);
	struct piece p8[] = {DATA("PRI * HTTP/2.0 \r\nGET / HTTP/1.1\r\n\r\n")};
	run_all_splits(p8, 1, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(st.errors[WS_HTTP_ERR_START_LINE], 1);
	rec_free(&r);
}

/* ---- tests: headers ----------------------------------------------------- */

static void test_header_forms(void **state)
{
	struct rec r;
	struct ws_http_stats st;
	const struct ws_http_msg *m;
	const struct ws_http_header *h;

	run_req("GET / HTTP/1.1\r\n"
		"A:no-blank\r\n"
		"B: \t padded \t \r\n"
		"Empty:\r\n"
		"X-Fold: one\r\n"
		"  two\r\n"
		"\tthree \r\n"
		"Set-Cookie: a=1\r\n"
		"set-cookie: b=2\r\n"
		"Bad Name: x\r\n"
		"nocolon\r\n"
		": noname\r\n"
		"Ok\x01: ctl\r\n"
		"Last: 1\r\n\r\n",
		&r, &st);
	assert_int_equal(r.nc, 1);
	m = &r.c[0]->m;
	assert_int_equal(m->flags, WS_HTTP_F_OBS_FOLD | WS_HTTP_F_BAD_HEADERS);
	assert_int_equal(m->headers.n, 7);
	assert_string_equal(hval(m, "a"), "no-blank");
	assert_string_equal(hval(m, "b"), "padded");
	assert_string_equal(hval(m, "empty"), "");
	assert_null(ws_http_header_find(&m->headers, "empty", NULL)->value.ptr);
	assert_string_equal(hval(m, "x-fold"), "one\r\n  two\r\n\tthree");
	h = ws_http_header_find(&m->headers, "SET-COOKIE", NULL);
	assert_non_null(h);
	assert_str(h->value, "a=1");
	h = ws_http_header_find(&m->headers, "set-cookie", h);
	assert_non_null(h);
	assert_str(h->value, "b=2");
	assert_null(ws_http_header_find(&m->headers, "set-cookie", h));
	assert_string_equal(hval(m, "last"), "1");
	assert_int_equal(st.bad_headers, 1);
	assert_int_equal(st.obs_folds, 2);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);

	/* A fold with nothing to continue is a bad line. */
	run_req("GET / HTTP/1.1\r\n folded\r\nA: b\r\n\r\n", &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_BAD_HEADERS);
	assert_int_equal(r.c[0]->m.headers.n, 1);
	rec_free(&r);
}

static char *build_fields(const char *start, size_t nfields, size_t *len)
{
	size_t cap = strlen(start) + nfields * 16 + 64, o;
	char *b = malloc(cap);

	assert_non_null(b);
	o = (size_t)snprintf(b, cap, "%s", start);
	for (size_t i = 0; i < nfields; i++)
		o += (size_t)snprintf(b + o, cap - o, "h%zu:%zu\r\n", i % 10,
				      i % 10);
	o += (size_t)snprintf(b + o, cap - o, "\r\n");
	*len = o;
	return b;
}

static void test_header_limits(void **state)
{
	struct rec r;
	struct ws_http_stats st;
	size_t n;
	char *b =
		build_fields("GET /max HTTP/1.1\r\n", WS_HTTP_MAX_HEADERS, &n);
	char *flood = build_fields("GET /flood HTTP/1.1\r\n", 10000, &n);
	struct piece ok[] = {BUF(b, strlen(b))};
	struct piece fl[] = {BUF(flood, n),
			     DATA("GET /after HTTP/1.1\r\n\r\n")};

	run_all_splits(ok, 1, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.headers.n, WS_HTTP_MAX_HEADERS);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);

	/* 10k tiny fields: one error, the rest skipped, then in sync. */
	run_all_splits(fl, 2, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_str(r.c[0]->m.target, "/after");
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_RESYNC);
	assert_int_equal(st.errors[WS_HTTP_ERR_TOO_MANY_HEADERS], 1);
	assert_int_equal(total_errors(&st), 1);
	assert_int_equal(r.nerr, 1);
	assert_int_equal(r.errs[0].offset, 0);
	assert_int_equal(st.skipped_bytes, n);
	rec_free(&r);
	free(b);
	free(flood);
}

static void test_head_too_big(void **state)
{
	static const char start[] = "GET /big HTTP/1.1\r\nX-Big: ";
	size_t fill = WS_HTTP_MAX_HEAD - (sizeof(start) - 1) - 4;
	char *exact = malloc(WS_HTTP_MAX_HEAD + 64);
	char *over = malloc(WS_HTTP_MAX_HEAD + 64);
	char *line = malloc(3 * WS_HTTP_MAX_HEAD);
	struct rec r;
	struct ws_http_stats st;
	size_t ln;

	assert_non_null(exact);
	assert_non_null(over);
	assert_non_null(line);
	/* Exactly WS_HTTP_MAX_HEAD bytes: accepted. */
	memcpy(exact, start, sizeof(start) - 1);
	memset(exact + sizeof(start) - 1, 'x', fill);
	memcpy(exact + sizeof(start) - 1 + fill, "\r\n\r\n", 4);
	/* One more byte: too big. */
	memcpy(over, start, sizeof(start) - 1);
	memset(over + sizeof(start) - 1, 'x', fill + 1);
	memcpy(over + sizeof(start) + fill, "\r\n\r\n", 4);

	struct piece p1[] = {BUF(exact, WS_HTTP_MAX_HEAD)};
	run_all_splits(p1, 1, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.head_end_off, WS_HTTP_MAX_HEAD);
	assert_int_equal(strlen(hval(&r.c[0]->m, "x-big")), 255);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);

	struct piece p2[] = {BUF(over, WS_HTTP_MAX_HEAD + 1),
			     DATA("GET /next HTTP/1.1\r\n\r\n")};
	run_all_splits(p2, 2, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_str(r.c[0]->m.target, "/next");
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_RESYNC);
	assert_int_equal(st.errors[WS_HTTP_ERR_HEAD_TOO_BIG], 1);
	assert_int_equal(total_errors(&st), 1);
	rec_free(&r);

	/* A 128 KiB request line. */
	ln = (size_t)snprintf(line, 64, "GET /");
	memset(line + ln, 'a', 2 * WS_HTTP_MAX_HEAD);
	ln += 2 * WS_HTTP_MAX_HEAD;
	ln += (size_t)snprintf(line + ln, 64, " HTTP/1.1\r\n\r\n");
	struct piece p3[] = {BUF(line, ln), DATA("GET /n HTTP/1.1\r\n\r\n")};
	run_all_splits(p3, 2, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_str(r.c[0]->m.target, "/n");
	assert_int_equal(st.errors[WS_HTTP_ERR_HEAD_TOO_BIG], 1);
	assert_int_equal(total_errors(&st), 1);
	assert_int_equal(st.skipped_bytes, ln);
	rec_free(&r);

	/* 128 KiB of binary garbage without a line end: dropped early. */
	for (size_t i = 0; i < 2 * WS_HTTP_MAX_HEAD; i++)
		line[i] = (char)(0x80 | (i & 0x7f));
	{
		struct ws_http_parser *p =
			ws_http_parser_new(WS_HTTP_REQUEST, &rec_cb, &r);

		memset(&r, 0, sizeof(r));
		assert_non_null(p);
		feed_guarded(p, line, 2 * WS_HTTP_MAX_HEAD);
		assert_int_equal(ws_http_parser_pending(p), 0);
		feed_str(p, "\r\nGET / HTTP/1.1\r\n\r\n");
		assert_int_equal(r.nc, 1);
		assert_int_equal(
			ws_http_parser_stats(p)->errors[WS_HTTP_ERR_START_LINE],
			1);
		ws_http_parser_free(p);
		rec_free(&r);
	}
	free(exact);
	free(over);
	free(line);
}

/* ---- tests: bad input ------------------------------------------------- */

struct bad_case {
	const char *in;
	enum ws_http_err err;
};

static void test_bad_start_lines(void **state)
{
	static const char *const bad[] = {
		"garbage\r\n",
		"GET\r\n",
		"GET /\r\n",
		"GET / \r\n",
		"GET  / HTTP/1.1\r\n",
		"GET /  HTTP/1.1\r\n",
		"GET / HTTP/1.1 \r\n",
		"GET / HTTP/2.0\r\n",
		"GET / HTTP/1.x\r\n",
		"GET / HTTP/1.1\r\r\n",
		"GET / http/1.1\r\n",
		" GET / HTTP/1.1\r\n",
		"G(T / HTTP/1.1\r\n",
		"GET /a\x7f HTTP/1.1\r\n",
		"GET /a\rb HTTP/1.1\r\n",
		"HTTP/1.1 200 OK\r\n",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\n",
		"\x01\x02\xff\r\n",
	};
	static const char *const bad_status[] = {
		"GET / HTTP/1.1\r\n",	"HTTP/1.1 20 OK\r\n",
		"HTTP/1.1 2000 OK\r\n", "HTTP/1.1 099 Low\r\n",
		"HTTP/1.1  200 OK\r\n", "HTTP/2 200\r\n",
		"HTTP/1.1 200OK\r\n",	"HTTP/1.1\r\n",
	};
	struct rec r;
	struct ws_http_stats st;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct piece pc[] = {DATA("GET /1 HTTP/1.1\r\n\r\n"),
				     {P_DATA, bad[i], strlen(bad[i])},
				     DATA("\r\nGET /2 HTTP/1.1\r\n\r\n")};

		run_all_splits(pc, 3, WS_HTTP_REQUEST, &r, &st);
		if (r.nc != 2 || total_errors(&st) != 1 ||
		    st.errors[WS_HTTP_ERR_START_LINE] != 1)
			fail_msg("case %zu (%s): %zu messages, %llu errors", i,
				 bad[i], r.nc,
				 (unsigned long long)total_errors(&st));
		assert_int_equal(r.nerr, 1);
		assert_int_equal(r.errs[0].offset, 19);
		assert_int_equal(st.skipped_bytes, strlen(bad[i]) + 2);
		assert_str(r.c[1]->m.target, "/2");
		assert_int_equal(r.c[1]->m.flags, WS_HTTP_F_RESYNC);
		rec_free(&r);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad_status); i++) {
		struct piece pc[] = {
			{P_DATA, bad_status[i], strlen(bad_status[i])},
			DATA("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")};

		run_all_splits(pc, 2, WS_HTTP_RESPONSE, &r, &st);
		if (r.nc != 1 || st.errors[WS_HTTP_ERR_START_LINE] != 1)
			fail_msg("status case %zu (%s)", i, bad_status[i]);
		rec_free(&r);
	}
}

static void test_resync(void **state)
{
	struct rec r;
	struct ws_http_stats st;

	/* One error per bad region; an unknown method only when in sync. */
	run_req("bad line one\r\nbad line two\r\n\x80\x81\r\n"
		"PROPFIND /x HTTP/1.1\r\nT / HTTP/1.1\r\n"
		"GET /ok HTTP/1.1\r\n\r\n"
		"PROPFIND /dav HTTP/1.1\r\n\r\n",
		&r, &st);
	assert_int_equal(r.nc, 2);
	assert_str(r.c[0]->m.target, "/ok");
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_RESYNC);
	assert_int_equal(r.c[1]->m.method, WS_HTTP_M_OTHER);
	assert_str(r.c[1]->m.method_name, "PROPFIND");
	assert_int_equal(r.c[1]->m.flags, 0);
	assert_int_equal(total_errors(&st), 1);
	rec_free(&r);

	/* A dropped POST's body is skipped as lines until a request. */
	run_req("POST /a HTTP/1.1\r\nContent-Length: x\r\n\r\n"
		"{\"body\": 1}\r\nmore body\r\n"
		"GET /b HTTP/1.1\r\n\r\n",
		&r, &st);
	assert_int_equal(r.nc, 1);
	assert_str(r.c[0]->m.target, "/b");
	assert_int_equal(st.errors[WS_HTTP_ERR_CONTENT_LENGTH], 1);
	assert_int_equal(total_errors(&st), 1);
	rec_free(&r);
}

static void test_bad_content_length(void **state)
{
	static const char *const bad[] = {
		"abc",
		"-1",
		"+5",
		"1.5",
		"5 5",
		"",
		"5, 6",
		"5,",
		",5",
		"0x10",
		"9223372036854775808",
		"18446744073709551616",
		"99999999999999999999999999",
	};
	char buf[256];
	struct rec r;
	struct ws_http_stats st;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		for (int k = 0; k < 2; k++) {
			enum ws_http_kind kind =
				k ? WS_HTTP_RESPONSE : WS_HTTP_REQUEST;
			const char *next = k ? "HTTP/1.1 204 OK\r\n\r\n"
					     : "GET /ok HTTP/1.1\r\n\r\n";

			snprintf(buf, sizeof(buf),
				 "%s\r\nContent-Length: %s\r\n\r\n%s",
				 k ? "HTTP/1.1 200 OK" : "POST / HTTP/1.1",
				 bad[i], next);
			struct piece pc[] = {{P_DATA, buf, strlen(buf)}};

			run_all_splits(pc, 1, kind, &r, &st);
			if (r.nc != 1 ||
			    st.errors[WS_HTTP_ERR_CONTENT_LENGTH] != 1 ||
			    total_errors(&st) != 1)
				fail_msg("case %zu/%d (%s): %zu messages", i, k,
					 bad[i], r.nc);
			assert_int_equal(r.c[0]->m.flags,
					 k ? WS_HTTP_F_RESYNC |
							 WS_HTTP_F_NO_REQUEST
					   : WS_HTTP_F_RESYNC);
			rec_free(&r);
		}
	}

	/* Conflicting repeats, and agreeing ones. */
	run_req("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
		"\r\nGET /ok HTTP/1.1\r\n\r\n",
		&r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(st.errors[WS_HTTP_ERR_CONTENT_LENGTH], 1);
	rec_free(&r);
	run_req("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\ncontent-length:3"
		"\r\n\r\nabcGET /ok HTTP/1.1\r\n\r\n",
		&r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(r.c[0]->m.content_length, 3);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);
	/* The largest length accepted. */
	run_req("POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n"
		"\r\nabc",
		&r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.e[0]->m.content_length, INT64_MAX);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);
}

static void test_transfer_encoding(void **state)
{
	struct rec r;
	struct ws_http_stats st;

	/* Transfer-Encoding wins over Content-Length, and is flagged. */
	run_req("POST /s HTTP/1.1\r\nContent-Length: 4\r\n"
		"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		"GET /n HTTP/1.1\r\n\r\n",
		&r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(r.c[0]->m.flags,
			 WS_HTTP_F_CHUNKED | WS_HTTP_F_TE_AND_CL);
	assert_int_equal(r.c[0]->m.content_length, 0);
	assert_int_equal(st.te_and_cl, 1);
	rec_free(&r);

	/* Codings over two fields; parameters; case. */
	run_req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n"
		"Transfer-Encoding: CHUNKED ; q=1\r\n\r\n1\r\nx\r\n0\r\n\r\n",
		&r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.body_len, 1);
	rec_free(&r);

	static const char *const bad[] = {
		"gzip",
		"chunked, gzip",
		"chunked, chunked",
		"",
	};
	char buf[256];

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		snprintf(buf, sizeof(buf),
			 "POST / HTTP/1.1\r\nTransfer-Encoding: %s\r\n\r\n"
			 "GET /ok HTTP/1.1\r\n\r\n",
			 bad[i]);
		run_req(buf, &r, &st);
		if (r.nc != 1 || st.errors[WS_HTTP_ERR_TRANSFER_ENCODING] != 1)
			fail_msg("case %zu (%s)", i, bad[i]);
		rec_free(&r);
	}

	/* A response whose last coding is not chunked runs to the close. */
	struct piece pr[] = {
		DATA("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"
		     "\x1f\x8b\x08\x00"),
		EOF_,
	};
	run_all_splits(pr, 2, WS_HTTP_RESPONSE, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_UNTIL_CLOSE |
						  WS_HTTP_F_EOF |
						  WS_HTTP_F_NO_REQUEST);
	assert_int_equal(r.c[0]->m.body_len, 4);
	rec_free(&r);
}

static void test_chunk_forms(void **state)
{
	struct rec r;
	struct ws_http_stats st;

	run_req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		"0005\r\nhello\r\n"
		"a;ext=\"quoted\";x\r\n0123456789\r\n"
		"B \t;e\r\nhello world\r\n"
		"1\nx\n"
		"0\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n"
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		"0\r\n\r\n",
		&r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(r.c[0]->m.body_len, 27);
	assert_int_equal(r.c[0]->m.chunks, 4);
	assert_int_equal(r.c[0]->m.trailers, 2);
	assert_int_equal(r.c[1]->m.body_len, 0);
	assert_int_equal(r.c[1]->m.chunks, 0);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);
}

static void test_bad_chunks(void **state)
{
	static const struct bad_case cases[] = {
		{"zz\r\n", WS_HTTP_ERR_CHUNK_SIZE},
		{"\r\n", WS_HTTP_ERR_CHUNK_SIZE},
		{";ext\r\n", WS_HTTP_ERR_CHUNK_SIZE},
		{"-5\r\n", WS_HTTP_ERR_CHUNK_SIZE},
		{"5 5\r\n", WS_HTTP_ERR_CHUNK_SIZE},
		{"5\rx", WS_HTTP_ERR_CHUNK_SIZE},
		{"0x5\r\n", WS_HTTP_ERR_CHUNK_SIZE},
		{"10000000000000000\r\n", WS_HTTP_ERR_CHUNK_SIZE},
		{"ffffffffffffffffff\r\n", WS_HTTP_ERR_CHUNK_SIZE},
		{"5\r\nhelloX\r\n", WS_HTTP_ERR_CHUNK_END},
		{"5\r\nhello\rX", WS_HTTP_ERR_CHUNK_END},
		{"3\r\nhello\r\n", WS_HTTP_ERR_CHUNK_END},
	};
	char buf[512];
	struct rec r;
	struct ws_http_stats st;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(buf, sizeof(buf),
			 "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
			 "\r\n%s\r\nGET /ok HTTP/1.1\r\n\r\n",
			 cases[i].in);
		run_req(buf, &r, &st);
		if (r.nc != 2 || st.errors[cases[i].err] != 1 ||
		    total_errors(&st) != 1)
			fail_msg("case %zu (%s): %zu messages, %s=%llu", i,
				 cases[i].in, r.nc,
				 ws_http_err_name(cases[i].err),
				 (unsigned long long)st.errors[cases[i].err]);
		assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_CHUNKED |
							  WS_HTTP_F_BAD_BODY |
							  WS_HTTP_F_TRUNCATED);
		assert_str(r.c[1]->m.target, "/ok");
		assert_int_equal(r.c[1]->m.flags, WS_HTTP_F_RESYNC);
		assert_int_equal(st.truncated, 1);
		rec_free(&r);
	}

	/* A chunk-size line and a trailer section past their limits. */
	char *ext = malloc(WS_HTTP_MAX_CHUNK_LINE + 256);
	char *tr = malloc(WS_HTTP_MAX_HEAD + 1024);
	size_t o;

	assert_non_null(ext);
	assert_non_null(tr);
	o = (size_t)sprintf(ext, "POST / HTTP/1.1\r\nTransfer-Encoding: "
				 "chunked\r\n\r\n1;");
	memset(ext + o, 'e', WS_HTTP_MAX_CHUNK_LINE);
	o += WS_HTTP_MAX_CHUNK_LINE;
	o += (size_t)sprintf(ext + o,
			     "\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n");
	struct piece p1[] = {BUF(ext, o)};
	run_all_splits(p1, 1, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(st.errors[WS_HTTP_ERR_CHUNK_SIZE], 1);
	rec_free(&r);

	o = (size_t)sprintf(tr, "POST / HTTP/1.1\r\nTransfer-Encoding: "
				"chunked\r\n\r\n0\r\nT: ");
	memset(tr + o, 't', WS_HTTP_MAX_HEAD);
	o += WS_HTTP_MAX_HEAD;
	o += (size_t)sprintf(tr + o, "\r\n\r\nGET / HTTP/1.1\r\n\r\n");
	struct piece p2[] = {BUF(tr, o)};
	run_all_splits(p2, 1, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(st.errors[WS_HTTP_ERR_TRAILERS], 1);
	rec_free(&r);

	o = (size_t)sprintf(tr, "POST / HTTP/1.1\r\nTransfer-Encoding: "
				"chunked\r\n\r\n0\r\n");
	for (size_t i = 0; i <= WS_HTTP_MAX_HEADERS; i++)
		o += (size_t)sprintf(tr + o, "t:1\r\n");
	o += (size_t)sprintf(tr + o, "\r\nGET / HTTP/1.1\r\n\r\n");
	struct piece p3[] = {BUF(tr, o)};
	run_all_splits(p3, 1, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(st.errors[WS_HTTP_ERR_TRAILERS], 1);
	rec_free(&r);
	free(ext);
	free(tr);
}

/* ---- tests: gaps and the end of the stream ---------------------------- */

static void test_gap_in_body(void **state)
{
	struct rec r;
	struct ws_http_stats st;

	/* Content-Length body: stays in sync. */
	struct piece p1[] = {
		DATA("POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123"),
		GAP(3),
		DATA("789GET /b HTTP/1.1\r\n\r\n"),
	};
	run_all_splits(p1, 3, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(r.c[0]->m.flags,
			 WS_HTTP_F_CONTENT_LENGTH | WS_HTTP_F_GAP);
	assert_int_equal(r.c[0]->m.body_len, 7);
	assert_int_equal(r.c[0]->m.body_gap, 3);
	assert_int_equal(r.c[0]->m.end_off, 50);
	assert_int_equal(r.c[1]->m.start_off, 50);
	assert_int_equal(r.c[1]->m.flags, 0);
	assert_int_equal(st.gap_bodies, 1);
	assert_int_equal(st.gap_resyncs, 0);
	rec_free(&r);

	/* A gap that ends with the body is still in sync. */
	struct piece p2[] = {
		DATA("POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123"),
		GAP(6),
		DATA("GET /b HTTP/1.1\r\n\r\n"),
	};
	run_all_splits(p2, 3, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(r.c[1]->m.flags, 0);
	rec_free(&r);

	/* Past the body's end: the next message is found by resync. */
	struct piece p3[] = {
		DATA("POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123"),
		GAP(20),
		DATA("HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\n\r\n"),
	};
	run_all_splits(p3, 3, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(r.c[0]->m.end_off, 50);
	assert_int_equal(r.c[0]->m.body_gap, 6);
	assert_str(r.c[1]->m.target, "/c");
	assert_int_equal(r.c[1]->m.flags, WS_HTTP_F_RESYNC);
	assert_int_equal(r.c[1]->m.start_off, 85);
	assert_int_equal(st.gap_resyncs, 1);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);

	/* Inside chunk data: in sync; past it: the message ends there. */
	struct piece p4[] = {
		DATA("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "a\r\n01"),
		GAP(8),
		DATA("\r\n3\r\nabc\r\n0\r\n\r\nPOST /b HTTP/1.1\r\n"
		     "Transfer-Encoding: chunked\r\n\r\n5\r\nhe"),
		GAP(40),
		DATA("x\r\nGET /c HTTP/1.1\r\n\r\n"),
	};
	run_all_splits(p4, 5, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 3);
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_CHUNKED | WS_HTTP_F_GAP);
	assert_int_equal(r.c[0]->m.body_len, 5);
	assert_int_equal(r.c[0]->m.body_gap, 8);
	assert_int_equal(r.c[1]->m.flags, WS_HTTP_F_CHUNKED | WS_HTTP_F_GAP |
						  WS_HTTP_F_TRUNCATED);
	assert_int_equal(r.c[1]->m.body_gap, 3);
	assert_int_equal(r.c[2]->m.flags, WS_HTTP_F_RESYNC);
	assert_int_equal(st.truncated, 1);
	rec_free(&r);

	/* A gap in chunk framing ends the message at the gap. */
	struct piece p5[] = {
		DATA("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "5\r"),
		GAP(1),
		DATA("hello\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
	};
	run_all_splits(p5, 3, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_CHUNKED | WS_HTTP_F_GAP |
						  WS_HTTP_F_TRUNCATED);
	assert_int_equal(r.c[0]->m.end_off, 50);
	assert_str(r.c[1]->m.target, "/b");
	rec_free(&r);

	/* Until-close body: gaps are just missing body. */
	struct piece p6[] = {
		DATA("HTTP/1.1 200 OK\r\n\r\nabc"),
		GAP(100),
		DATA("def"),
		EOF_,
	};
	run_all_splits(p6, 4, WS_HTTP_RESPONSE, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.body_len, 6);
	assert_int_equal(r.c[0]->m.body_gap, 100);
	assert_int_equal(r.c[0]->m.end_off, 125);
	rec_free(&r);
}

static void test_gap_in_head(void **state)
{
	struct rec r;
	struct ws_http_stats st;

	struct piece p1[] = {
		DATA("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHo"),
		GAP(10),
		DATA("more: x\r\n\r\nGET /c HTTP/1.1\r\n\r\n"),
	};
	run_all_splits(p1, 3, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 2);
	assert_str(r.c[0]->m.target, "/a");
	assert_str(r.c[1]->m.target, "/c");
	assert_int_equal(r.c[1]->m.flags, WS_HTTP_F_RESYNC);
	assert_int_equal(st.gap_heads, 1);
	assert_int_equal(total_errors(&st), 0);
	assert_int_equal(st.skipped_bytes, 19 + 11);
	rec_free(&r);

	/* At a message boundary: the next one is trusted, but flagged. */
	struct piece p2[] = {
		DATA("GET /a HTTP/1.1\r\n\r\n"),
		GAP(50),
		DATA("GET /b HTTP/1.1\r\n\r\n"),
	};
	run_all_splits(p2, 3, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(r.c[1]->m.flags, WS_HTTP_F_RESYNC);
	assert_int_equal(r.c[1]->m.start_off, 69);
	assert_int_equal(st.gap_heads, 0);
	rec_free(&r);

	/* A cut final response answers its request; a cut 100 does not. */
	struct piece p3[] = {
		EXPECT(WS_HTTP_M_HEAD),
		EXPECT(WS_HTTP_M_GET),
		EXPECT(WS_HTTP_M_HEAD),
		DATA("HTTP/1.1 100 Continue\r\n"),
		GAP(2),
		DATA("HTTP/1.1 200 OK\r\nContent-Le"),
		GAP(12),
		DATA("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		     "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
	};
	run_all_splits(p3, ARRAY_SIZE(p3), WS_HTTP_RESPONSE, &r, &st);
	assert_int_equal(r.nc, 2);
	assert_int_equal(r.c[0]->m.method, WS_HTTP_M_GET);
	assert_int_equal(r.c[0]->m.body_len, 2);
	assert_int_equal(r.c[1]->m.method, WS_HTTP_M_HEAD);
	assert_int_equal(r.c[1]->m.end_off, r.c[1]->m.head_end_off);
	assert_int_equal(st.gap_heads, 2);
	rec_free(&r);
}

static void test_eof(void **state)
{
	struct rec r;
	struct ws_http_stats st;

	struct piece p1[] = {
		DATA("POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123"),
		EOF_,
	};
	run_all_splits(p1, 2, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_CONTENT_LENGTH |
						  WS_HTTP_F_TRUNCATED |
						  WS_HTTP_F_EOF);
	assert_int_equal(r.c[0]->m.body_len, 4);
	assert_int_equal(r.c[0]->m.end_off, 44);
	assert_int_equal(st.truncated, 1);
	rec_free(&r);

	struct piece p2[] = {DATA("GET /a HTTP/1.1\r\nHost"), EOF_};
	run_all_splits(p2, 2, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.n, 0);
	assert_int_equal(st.eof_heads, 1);
	assert_int_equal(st.skipped_bytes, 21);
	rec_free(&r);

	struct piece p3[] = {
		DATA("HTTP/1.1 200 OK\r\nTransfer-Encoding: "
		     "chunked\r\n\r\n5\r\nab"),
		EOF_,
	};
	run_all_splits(p3, 2, WS_HTTP_RESPONSE, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_true(r.c[0]->m.flags & WS_HTTP_F_TRUNCATED);
	rec_free(&r);

	/* After eof the parser takes nothing more. */
	struct ws_http_parser *p =
		ws_http_parser_new(WS_HTTP_REQUEST, &rec_cb, &r);

	memset(&r, 0, sizeof(r));
	assert_non_null(p);
	assert_int_equal(ws_http_parser_eof(p), 0);
	assert_int_equal(ws_http_parser_eof(p), 0);
	assert_int_equal(ws_http_parser_feed(p, (const uint8_t *)"GET", 3),
			 -EPIPE);
	assert_int_equal(ws_http_parser_gap(p, 3), -EPIPE);
	assert_int_equal(ws_http_parser_stats(p)->bytes, 0);
	ws_http_parser_free(p);
}

/* ---- tests: mixed streams, every split -------------------------------- */

static void test_splits_equal(void **state)
{
	static char big[100000 + 128];
	static char chunked[70000 + 256];
	size_t bn, cn;
	struct rec r;
	struct ws_http_stats st;

	bn = (size_t)snprintf(big, sizeof(big),
			      "POST /big HTTP/1.1\r\nContent-Length: 100000"
			      "\r\n\r\n");
	for (size_t i = 0; i < 100000; i++)
		big[bn + i] = (char)('a' + i % 26);
	bn += 100000;
	cn = (size_t)snprintf(chunked, sizeof(chunked),
			      "PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked"
			      "\r\n\r\n10000\r\n");
	memset(chunked + cn, 'z', 0x10000);
	cn += 0x10000;
	cn += (size_t)snprintf(chunked + cn, sizeof(chunked) - cn,
			       "\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n");

	struct piece pc[] = {
		DATA(GW_REQ),
		BUF(big, bn),
		BUF(chunked, cn),
		DATA("\r\nGET /after-crlf HTTP/1.1\r\n\r\n"),
		DATA("garbage line\r\n\x01\x02\xff\r\nGET /g HTTP/1.0\r\n\r\n"),
		DATA("POST /cl HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123"),
		GAP(3),
		DATA("789HEAD /h HTTP/1.1\r\nX: y\r\n\r\nGET /half HTTP/1.1"),
		GAP(7),
		DATA("trailing junk\r\nDELETE /d HTTP/1.1\r\n\r\n"),
		DATA("POST /bad HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n"),
		DATA("POST /tc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "5\r\nhello\r\nzz\r\n"),
		DATA("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"
		     "GET /still-http HTTP/1.1\r\n\r\n"),
		DATA("GET /tail HTTP/1.1\r\nHost: pending"),
	};
	run_all_splits(pc, ARRAY_SIZE(pc), WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 11);
	assert_int_equal(r.c[1]->m.body_len, 100000);
	assert_int_equal(r.c[2]->m.body_len, 0x10003);
	assert_int_equal(r.c[2]->m.chunks, 2);
	assert_int_equal(r.c[3]->m.flags, 0);
	assert_int_equal(r.c[4]->m.flags, WS_HTTP_F_RESYNC | WS_HTTP_F_CLOSE);
	assert_int_equal(r.c[5]->m.flags,
			 WS_HTTP_F_CONTENT_LENGTH | WS_HTTP_F_GAP);
	assert_int_equal(r.c[7]->m.flags, WS_HTTP_F_RESYNC);
	assert_int_equal(r.c[8]->m.flags, WS_HTTP_F_CHUNKED | WS_HTTP_F_RESYNC |
						  WS_HTTP_F_BAD_BODY |
						  WS_HTTP_F_TRUNCATED);
	assert_int_equal(r.c[9]->m.flags, WS_HTTP_F_UPGRADE | WS_HTTP_F_RESYNC);
	assert_str(r.c[10]->m.target, "/still-http");
	assert_int_equal(st.errors[WS_HTTP_ERR_START_LINE], 1);
	assert_int_equal(st.errors[WS_HTTP_ERR_CONTENT_LENGTH], 1);
	assert_int_equal(st.errors[WS_HTTP_ERR_CHUNK_SIZE], 1);
	assert_int_equal(st.gaps, 2);
	assert_int_equal(st.gap_heads, 1);
	/* "GET /tail ..." is still waiting for the end of its head. */
	assert_int_equal(st.bytes - st.msg_bytes - st.skipped_bytes, 33);
	rec_free(&r);
}

/*
 * Random streams of valid and broken messages, random gaps: whatever the
 * split, the same events.
 */
static size_t gen_message(char *out, size_t cap, uint64_t *s, bool resp)
{
	static const char *const fields[] = {
		"Host: a.example\r\n",
		"Connection: close\r\n",
		"Content-Length: 3\r\n",
		"Transfer-Encoding: chunked\r\n",
		"Expect: 100-continue\r\n",
		"X-Long: 0123456789012345678901234567890123456789\r\n",
		"Bad Field\r\n",
		" folded\r\n",
		"Content-Length: x\r\n",
	};
	size_t o, nf = rng_next(s) % 6;
	bool chunked = false, cl = false;

	if (resp)
		o = (size_t)snprintf(out, cap, "HTTP/1.%d %d R\r\n",
				     (int)(rng_next(s) % 2),
				     (int)(100 + rng_next(s) % 5 * 100));
	else
		o = (size_t)snprintf(out, cap, "%s /p%d HTTP/1.1\r\n",
				     rng_next(s) % 3 ? "GET" : "POST",
				     (int)(rng_next(s) % 100));
	for (size_t i = 0; i < nf; i++) {
		size_t f = rng_next(s) % ARRAY_SIZE(fields);

		chunked |= f == 3;
		cl |= f == 2;
		o += (size_t)snprintf(out + o, cap - o, "%s", fields[f]);
	}
	o += (size_t)snprintf(out + o, cap - o, "\r\n");
	if (chunked)
		o += (size_t)snprintf(out + o, cap - o,
				      "3\r\nabc\r\n0\r\n\r\n");
	else if (cl)
		o += (size_t)snprintf(out + o, cap - o, "xyz");
	if (rng_next(s) % 10 == 0)
		o += (size_t)snprintf(out + o, cap - o, "junk\r\n");
	return o;
}

static void test_random_streams(void **state)
{
	static char buf[64 * 1024];

	for (uint64_t seed = 1; seed <= 30; seed++) {
		uint64_t s = seed * 0x2545f4914f6cdd1dull;
		struct piece pc[64];
		size_t npc = 0, o = 0;
		bool resp = seed % 2 == 0;
		struct rec r;
		struct ws_http_stats st;

		/* Each round adds at most two pieces; EOF_ needs one more. */
		while (npc < ARRAY_SIZE(pc) - 3 && o < sizeof(buf) - 1024) {
			size_t n =
				gen_message(buf + o, sizeof(buf) - o, &s, resp);

			if (resp && rng_next(&s) % 2)
				pc[npc++] = EXPECT(rng_next(&s) % 4
							   ? WS_HTTP_M_GET
							   : WS_HTTP_M_HEAD);
			if (rng_next(&s) % 8 == 0) {
				pc[npc++] = GAP(1 + rng_next(&s) % n);
				continue;
			}
			pc[npc++] = BUF(buf + o, n);
			o += n;
		}
		pc[npc++] = EOF_;
		run_all_splits(pc, npc,
			       resp ? WS_HTTP_RESPONSE : WS_HTTP_REQUEST, &r,
			       &st);
		assert_true(st.messages > 0);
		rec_free(&r);
	}
}

/* ---- tests: API ------------------------------------------------------- */

static void test_expect_queue(void **state)
{
	struct rec r;
	struct ws_http_parser *p =
		ws_http_parser_new(WS_HTTP_RESPONSE, &rec_cb, &r);
	struct ws_http_parser *q =
		ws_http_parser_new(WS_HTTP_REQUEST, &rec_cb, &r);

	memset(&r, 0, sizeof(r));
	assert_non_null(p);
	assert_non_null(q);
	assert_int_equal(ws_http_parser_expect(q, WS_HTTP_M_GET), -EINVAL);
	assert_int_equal(ws_http_parser_expect(NULL, WS_HTTP_M_GET), -EINVAL);
	assert_int_equal(ws_http_parser_expect(p, WS_HTTP_M_NONE), -EINVAL);
	assert_int_equal(ws_http_parser_expect(p, WS_HTTP_M_MAX), -EINVAL);
	for (unsigned i = 0; i < WS_HTTP_MAX_PIPELINE; i++)
		assert_int_equal(
			ws_http_parser_expect(p, i % 2 ? WS_HTTP_M_GET
						       : WS_HTTP_M_HEAD),
			0);
	assert_int_equal(ws_http_parser_expect(p, WS_HTTP_M_GET), -ENOBUFS);
	assert_int_equal(ws_http_parser_stats(p)->expect_full, 1);
	/* HEAD answers have no body, GET answers a 1-byte one. */
	for (unsigned i = 0; i <= WS_HTTP_MAX_PIPELINE; i++)
		feed_guarded(p, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
			     i % 2 || i == WS_HTTP_MAX_PIPELINE ? 39 : 38);
	assert_int_equal(r.nc, WS_HTTP_MAX_PIPELINE + 1);
	for (unsigned i = 0; i < WS_HTTP_MAX_PIPELINE; i++)
		assert_int_equal(r.c[i]->m.method,
				 i % 2 ? WS_HTTP_M_GET : WS_HTTP_M_HEAD);
	assert_int_equal(r.c[WS_HTTP_MAX_PIPELINE]->m.flags,
			 WS_HTTP_F_CONTENT_LENGTH | WS_HTTP_F_NO_REQUEST);
	assert_int_equal(
		ws_http_parser_stats(p)->errors[WS_HTTP_ERR_START_LINE], 0);
	ws_http_parser_free(p);
	ws_http_parser_free(q);
	rec_free(&r);
}

static void test_tunnel_api(void **state)
{
	struct rec r;
	struct ws_http_stats st;
	struct piece pc[] = {
		DATA("POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123"),
		TUNNEL,
		DATA("rest"),
		GAP(5),
		TUNNEL,
		EOF_,
	};

	run_all_splits(pc, ARRAY_SIZE(pc), WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.flags,
			 WS_HTTP_F_CONTENT_LENGTH | WS_HTTP_F_TRUNCATED);
	assert_int_equal(r.c[0]->m.end_off, 44);
	assert_int_equal(st.stops[WS_HTTP_STOP_TUNNEL], 1);
	assert_int_equal(st.stopped_bytes, 4);
	assert_int_equal(st.gap_bytes, 5);
	rec_free(&r);

	/* A partial head held when stopped counts as stopped bytes. */
	struct piece pd[] = {DATA("GET / HT"), TUNNEL};
	run_all_splits(pd, 2, WS_HTTP_REQUEST, &r, &st);
	assert_int_equal(r.n, 0);
	assert_int_equal(st.stopped_bytes, 8);
	rec_free(&r);
	assert_int_equal(ws_http_parser_tunnel(NULL), -EINVAL);
	assert_int_equal(ws_http_parser_eof(NULL), -EINVAL);
}

static void test_parser_ops(void **state)
{
	const struct ws_parser_ops *ops = &ws_http_parser_ops;
	struct rec r;
	struct ws_http_sink sink = {&rec_cb, &r, WS_HTTP_RESPONSE};
	static const struct ws_http_cb no_msg = {0};
	struct ws_http_sink bad = {&no_msg, NULL, WS_HTTP_REQUEST};
	struct ws_http_sink bad_kind = {&rec_cb, NULL, (enum ws_http_kind)7};
	void *st;

	memset(&r, 0, sizeof(r));
	assert_string_equal(ops->name, "http");
	assert_int_equal(ops->proto, WS_PROTO_HTTP);

	errno = 0;
	assert_null(ops->create(NULL));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(ops->create(&bad));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(ops->create(&bad_kind));
	assert_int_equal(errno, EINVAL);
	assert_null(ws_http_parser_new(WS_HTTP_REQUEST, NULL, NULL));

	st = ops->create(&sink);
	assert_non_null(st);
	assert_int_equal(
		ops->feed(st,
			  (const uint8_t *)"HTTP/1.1 200 OK\r\n"
					   "Content-Length: 4\r\n\r\nab",
			  40),
		0);
	assert_int_equal(ops->gap(st, 2), 0);
	assert_int_equal(ops->feed(st, NULL, 0), 0);
	assert_int_equal(ops->feed(st, NULL, 1), -EINVAL);
	assert_int_equal(ops->gap(st, 0), 0);
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_CONTENT_LENGTH |
						  WS_HTTP_F_GAP |
						  WS_HTTP_F_NO_REQUEST);
	ops->destroy(st);
	ops->destroy(NULL);
	assert_int_equal(ws_http_parser_feed(NULL, NULL, 0), -EINVAL);
	assert_int_equal(ws_http_parser_gap(NULL, 1), -EINVAL);
	assert_null(ws_http_parser_stats(NULL));
	assert_int_equal(ws_http_parser_pending(NULL), 0);
	rec_free(&r);

	assert_string_equal(ws_http_method_name(WS_HTTP_M_PATCH), "PATCH");
	assert_string_equal(ws_http_method_name(WS_HTTP_M_MAX), "?");
	assert_int_equal(ws_http_method_parse("OPTIONS", 7), WS_HTTP_M_OPTIONS);
	assert_int_equal(ws_http_method_parse("options", 7), WS_HTTP_M_OTHER);
	assert_int_equal(ws_http_method_parse(NULL, 0), WS_HTTP_M_OTHER);
	for (int i = WS_HTTP_M_GET; i < WS_HTTP_M_OTHER; i++) {
		const char *n = ws_http_method_name(i);

		assert_int_equal(ws_http_method_parse(n, strlen(n)), i);
	}
	assert_string_equal(ws_http_err_name(WS_HTTP_ERR_CHUNK_END),
			    "chunk_end");
	assert_string_equal(ws_http_err_name(WS_HTTP_ERR_MAX), "unknown");
	assert_string_equal(ws_http_stop_name(WS_HTTP_STOP_TLS), "tls");
	assert_string_equal(ws_http_stop_name(WS_HTTP_STOP_MAX), "unknown");
	for (int i = 0; i < WS_HTTP_ERR_MAX; i++)
		assert_string_not_equal(ws_http_err_name(i), "unknown");
	for (int i = 0; i < WS_HTTP_STOP_MAX; i++)
		assert_string_not_equal(ws_http_stop_name(i), "unknown");
}

static void test_nomem(void **state)
{
	static char big[1200];
	struct ws_http_parser *p;
	const struct ws_http_stats *st;
	struct rec r;

#ifdef WS_TEST_NO_INTERPOSE
	skip();
#else
	{
		/*
		 * Valgrind redirects realloc itself: then there is nothing to
		 * test. (Not realloc(NULL, n): compilers make that malloc.)
		 */
		char *a = malloc(1), *b;

		assert_non_null(a);
		fail_reallocs = true;
		b = realloc(a, 64);
		fail_reallocs = false;
		free(b ? b : a);
		if (b)
			skip();
	}
#endif
	/* A partial head that cannot be held is dropped. */
	memset(&r, 0, sizeof(r));
	p = ws_http_parser_new(WS_HTTP_REQUEST, &rec_cb, &r);
	assert_non_null(p);
	st = ws_http_parser_stats(p);
	fail_reallocs = true;
	feed_str(p, "GET / HT");
	fail_reallocs = false;
	feed_str(p, "TP/1.1\r\n\r\nGET /ok HTTP/1.1\r\n\r\n");
	assert_int_equal(r.nc, 1);
	assert_str(r.c[0]->m.target, "/ok");
	assert_int_equal(r.c[0]->m.flags, WS_HTTP_F_RESYNC);
	assert_int_equal(st->nomem, 1);
	check_accounting(p, &r);
	ws_http_parser_free(p);
	rec_free(&r);

	/* A body outlives its feed but its head cannot be kept. */
	p = ws_http_parser_new(WS_HTTP_REQUEST, &rec_cb, &r);
	assert_non_null(p);
	st = ws_http_parser_stats(p);
	fail_reallocs = true;
	feed_str(p, "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\na");
	fail_reallocs = false;
	feed_str(p, "bc");
	assert_int_equal(r.nc, 1);
	assert_int_equal(r.e[0]->m.headers.n, 1);
	assert_str(r.e[0]->m.target, "/x");
	assert_int_equal(r.c[0]->m.flags,
			 WS_HTTP_F_CONTENT_LENGTH | WS_HTTP_F_NOMEM);
	assert_int_equal(r.c[0]->m.headers.n, 0);
	assert_int_equal(r.c[0]->m.target.len, 0);
	assert_int_equal(r.c[0]->m.method, WS_HTTP_M_POST);
	assert_int_equal(r.c[0]->m.body_len, 3);
	assert_int_equal(st->nomem, 1);
	check_accounting(p, &r);
	ws_http_parser_free(p);
	rec_free(&r);

	/* The held head cannot grow: dropped, then back in sync. */
	p = ws_http_parser_new(WS_HTTP_REQUEST, &rec_cb, &r);
	assert_non_null(p);
	st = ws_http_parser_stats(p);
	memset(big, 'v', sizeof(big));
	feed_str(p, "GET / HTTP/1.1\r\nX: ");
	fail_reallocs = true;
	feed_guarded(p, big, sizeof(big));
	fail_reallocs = false;
	feed_str(p, "\r\n\r\nGET /ok HTTP/1.1\r\n\r\n");
	assert_int_equal(r.nc, 1);
	assert_str(r.c[0]->m.target, "/ok");
	assert_int_equal(st->nomem, 1);
	assert_int_equal(st->skipped_bytes, 19 + sizeof(big) + 4);
	check_accounting(p, &r);
	ws_http_parser_free(p);
	rec_free(&r);
}

/* No error callback is fine; gaps bigger than any message are fine. */
static void count_msg(void *ctx, enum ws_http_event ev,
		      const struct ws_http_msg *m)
{
	if (ev == WS_HTTP_EV_COMPLETE)
		(*(int *)ctx)++;
}

static void test_no_error_cb_huge_gap(void **state)
{
	static const struct ws_http_cb cb = {.msg = count_msg};
	int n = 0;
	struct ws_http_parser *p = ws_http_parser_new(WS_HTTP_REQUEST, &cb, &n);

	assert_non_null(p);
	feed_str(p,
		 "garbage\r\nPOST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab");
	assert_int_equal(ws_http_parser_gap(p, UINT64_MAX / 2), 0);
	feed_str(p, "GET / HTTP/1.1\r\n\r\n");
	assert_int_equal(n, 2);
	assert_int_equal(
		ws_http_parser_stats(p)->errors[WS_HTTP_ERR_START_LINE], 1);
	assert_int_equal(ws_http_parser_pending(p), 0);
	ws_http_parser_free(p);
	ws_http_parser_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_head),
		cmocka_unit_test(test_request_forms),
		cmocka_unit_test(test_pipelined_requests),
		cmocka_unit_test(test_response_framing),
		cmocka_unit_test(test_interim_and_expect),
		cmocka_unit_test(test_connection_close),
		cmocka_unit_test(test_upgrade),
		cmocka_unit_test(test_connect),
		cmocka_unit_test(test_h2_and_tls),
		cmocka_unit_test(test_header_forms),
		cmocka_unit_test(test_header_limits),
		cmocka_unit_test(test_head_too_big),
		cmocka_unit_test(test_bad_start_lines),
		cmocka_unit_test(test_resync),
		cmocka_unit_test(test_bad_content_length),
		cmocka_unit_test(test_transfer_encoding),
		cmocka_unit_test(test_chunk_forms),
		cmocka_unit_test(test_bad_chunks),
		cmocka_unit_test(test_gap_in_body),
		cmocka_unit_test(test_gap_in_head),
		cmocka_unit_test(test_eof),
		cmocka_unit_test(test_splits_equal),
		cmocka_unit_test(test_random_streams),
		cmocka_unit_test(test_expect_queue),
		cmocka_unit_test(test_tunnel_api),
		cmocka_unit_test(test_parser_ops),
		cmocka_unit_test(test_nomem),
		cmocka_unit_test(test_no_error_cb_huge_gap),
	};

	return cmocka_run_group_tests(tests, guard_setup, guard_teardown);
}
