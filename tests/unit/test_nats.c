/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for agent/proto/nats.c.
 *
 * Every chunk is fed from the end of a page followed by an inaccessible page,
 * so reading one byte past what the parser was given crashes the test. Every
 * frame is deep-copied, so runs that split the stream differently can be
 * compared field by field, and every run checks the byte accounting
 * (bytes == frame_bytes + skipped_bytes + pending) and that frames follow
 * each other in the stream without overlapping.
 */
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
#include "proto/nats.h"

/* Feed buf in chunks of at most GUARD_AREA, each ending at the guard. */
static void feed_guarded(struct ws_nats_parser *p, const void *buf, size_t len)
{
	const uint8_t *b = buf;

	while (len) {
		size_t n = len < GUARD_AREA ? len : GUARD_AREA;

		assert_int_equal(ws_nats_parser_feed(p, guard_copy(b, n), n),
				 0);
		b += n;
		len -= n;
	}
}

/* ---- recording ------------------------------------------------------- */

/* A frame and everything it points at, in one allocation. */
struct fcopy {
	struct ws_nats_frame f;
	struct ws_nats_header h[WS_NATS_MAX_HEADERS];
	char data[];
};

struct err_rec {
	enum ws_nats_err reason;
	uint64_t offset;
};

struct rec {
	struct fcopy **f;
	size_t n, cap;
	struct err_rec errs[256];
	size_t nerr;
	uint64_t last_end; /* end of the previous frame in the stream */
};

static size_t str_size(const struct ws_nats_str *s)
{
	return s->len;
}

static void copy_str(char **cur, struct ws_nats_str *s)
{
	if (!s->len) {
		s->ptr = NULL;
		return;
	}
	memcpy(*cur, s->ptr, s->len);
	s->ptr = *cur;
	*cur += s->len;
}

static void copy_bytes(char **cur, const uint8_t **p, size_t len)
{
	if (!len) {
		*p = NULL;
		return;
	}
	memcpy(*cur, *p, len);
	*p = (const uint8_t *)*cur;
	*cur += len;
}

static void rec_frame(void *ctx, const struct ws_nats_frame *f)
{
	struct rec *r = ctx;
	struct fcopy *c;
	size_t sz = str_size(&f->subject) + str_size(&f->reply) +
		    str_size(&f->sid) + str_size(&f->queue) +
		    str_size(&f->json) + str_size(&f->err) +
		    str_size(&f->headers.desc) + f->hdr_block_len +
		    f->payload_len;
	char *cur;

	assert_true(f->verb > WS_NATS_NONE && f->verb < WS_NATS_VERB_MAX);
	assert_true(f->headers.n <= WS_NATS_MAX_HEADERS);
	assert_true(f->payload_len + f->hdr_len <= f->total_len ||
		    f->payload_len == 0);
	assert_true(f->hdr_block_len <= f->hdr_len);
	assert_true(f->payload_len <= WS_NATS_MAX_PAYLOAD_KEEP);
	assert_true(f->offset >= r->last_end);
	assert_true(f->wire_len > 0);
	r->last_end = f->offset + f->wire_len;
	for (uint32_t i = 0; i < f->headers.n; i++)
		sz += f->headers.v[i].name.len + f->headers.v[i].value.len;

	c = calloc(1, sizeof(*c) + sz);
	assert_non_null(c);
	c->f = *f;
	cur = c->data;
	copy_str(&cur, &c->f.subject);
	copy_str(&cur, &c->f.reply);
	copy_str(&cur, &c->f.sid);
	copy_str(&cur, &c->f.queue);
	copy_str(&cur, &c->f.json);
	copy_str(&cur, &c->f.err);
	copy_str(&cur, &c->f.headers.desc);
	copy_bytes(&cur, &c->f.hdr_block, f->hdr_block_len);
	copy_bytes(&cur, &c->f.payload, f->payload_len);
	for (uint32_t i = 0; i < f->headers.n; i++) {
		c->h[i] = f->headers.v[i];
		copy_str(&cur, &c->h[i].name);
		copy_str(&cur, &c->h[i].value);
	}
	c->f.headers.v = c->h;

	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->f = realloc(r->f, r->cap * sizeof(*r->f));
		assert_non_null(r->f);
	}
	r->f[r->n++] = c;
}

static void rec_error(void *ctx, enum ws_nats_err reason, uint64_t offset)
{
	struct rec *r = ctx;

	assert_true(reason > WS_NATS_ERR_NONE && reason < WS_NATS_ERR_MAX);
	if (r->nerr < sizeof(r->errs) / sizeof(r->errs[0]))
		r->errs[r->nerr++] = (struct err_rec){reason, offset};
}

static const struct ws_nats_cb rec_cb = {
	.frame = rec_frame,
	.error = rec_error,
};

static void rec_free(struct rec *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->f[i]);
	free(r->f);
	memset(r, 0, sizeof(*r));
}

static bool str_eq(struct ws_nats_str s, const char *want)
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

static bool bytes_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
	return n == 0 || memcmp(a, b, n) == 0;
}

static bool nstr_eq(struct ws_nats_str a, struct ws_nats_str b)
{
	return a.len == b.len && (a.len == 0 || !memcmp(a.ptr, b.ptr, a.len));
}

/* Field-by-field comparison of two recorded frames. */
static void assert_frame_equal(const struct ws_nats_frame *a,
			       const struct ws_nats_frame *b, size_t i)
{
	if (a->verb != b->verb || a->flags != b->flags ||
	    a->offset != b->offset || a->wire_len != b->wire_len ||
	    !nstr_eq(a->subject, b->subject) || !nstr_eq(a->reply, b->reply) ||
	    !nstr_eq(a->sid, b->sid) || !nstr_eq(a->queue, b->queue) ||
	    !nstr_eq(a->json, b->json) || !nstr_eq(a->err, b->err) ||
	    a->max_msgs != b->max_msgs ||
	    a->info_max_payload != b->info_max_payload ||
	    a->hdr_len != b->hdr_len || a->total_len != b->total_len ||
	    a->hdr_block_len != b->hdr_block_len ||
	    !bytes_eq(a->hdr_block, b->hdr_block, a->hdr_block_len) ||
	    a->payload_len != b->payload_len ||
	    !bytes_eq(a->payload, b->payload, a->payload_len) ||
	    a->headers.status != b->headers.status ||
	    !nstr_eq(a->headers.desc, b->headers.desc) ||
	    a->headers.n != b->headers.n)
		fail_msg("frame %zu differs (%s@%llu vs %s@%llu)", i,
			 ws_nats_verb_name(a->verb),
			 (unsigned long long)a->offset,
			 ws_nats_verb_name(b->verb),
			 (unsigned long long)b->offset);
	for (uint32_t k = 0; k < a->headers.n; k++)
		if (!nstr_eq(a->headers.v[k].name, b->headers.v[k].name) ||
		    !nstr_eq(a->headers.v[k].value, b->headers.v[k].value))
			fail_msg("frame %zu header %u differs", i, k);
}

static void assert_rec_equal(const struct rec *a, const struct rec *b)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++)
		assert_frame_equal(&a->f[i]->f, &b->f[i]->f, i);
	assert_int_equal(a->nerr, b->nerr);
	for (size_t i = 0; i < a->nerr; i++) {
		assert_int_equal(a->errs[i].reason, b->errs[i].reason);
		assert_int_equal(a->errs[i].offset, b->errs[i].offset);
	}
}

/* ---- scripts: data pieces and gaps ------------------------------------ */

/* One piece of a stream: len data bytes, or (data NULL) a gap of len. */
struct piece {
	const void *data;
	size_t len;
};

#define GAP(n) ((struct piece){NULL, (n)})
#define DATA(s) ((struct piece){(s), sizeof(s) - 1})
#define BUF(b, n) ((struct piece){(b), (n)})

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

static void check_accounting(const struct ws_nats_parser *p)
{
	const struct ws_nats_stats *st = ws_nats_parser_stats(p);

	assert_int_equal(st->bytes, st->frame_bytes + st->skipped_bytes +
					    ws_nats_parser_pending(p));
}

/*
 * Run pieces through a fresh parser. Leaves frames and errors in r and the
 * final stats in st; max_payload 0 keeps the default.
 */
static void run(const struct piece *pc, size_t npc, enum split_mode mode,
		uint64_t seed, uint64_t max_payload, struct rec *r,
		struct ws_nats_stats *st)
{
	struct ws_nats_parser *p = ws_nats_parser_new(&rec_cb, r);
	uint64_t s = seed | 1;

	assert_non_null(p);
	memset(r, 0, sizeof(*r));
	if (max_payload)
		assert_int_equal(ws_nats_parser_set_max_payload(p, max_payload),
				 0);
	for (size_t i = 0; i < npc; i++) {
		const uint8_t *d = pc[i].data;
		size_t len = pc[i].len, k = 0;

		if (!d) {
			assert_int_equal(ws_nats_parser_gap(p, len), 0);
			check_accounting(p);
			continue;
		}
		while (k < len) {
			size_t n = len - k;

			if (mode == SPLIT_BYTES) {
				n = 1;
			} else if (mode == SPLIT_RANDOM) {
				/* Mostly small pieces, some large ones. */
				size_t most = rng_next(&s) % 4 ? 17 : 9000;

				n = 1 + rng_next(&s) % most;
			}
			if (n > len - k)
				n = len - k;
			feed_guarded(p, d + k, n);
			check_accounting(p);
			k += n;
		}
	}
	*st = *ws_nats_parser_stats(p);
	ws_nats_parser_free(p);
}

/* Whole, byte-at-a-time and 40 random splits all give the same result. */
static void run_all_splits(const struct piece *pc, size_t npc,
			   uint64_t max_payload, struct rec *r,
			   struct ws_nats_stats *st)
{
	struct rec other;
	struct ws_nats_stats ost;

	run(pc, npc, SPLIT_WHOLE, 0, max_payload, r, st);
	run(pc, npc, SPLIT_BYTES, 0, max_payload, &other, &ost);
	assert_rec_equal(r, &other);
	assert_memory_equal(st, &ost, sizeof(ost));
	rec_free(&other);
	for (uint64_t seed = 1; seed <= 40; seed++) {
		run(pc, npc, SPLIT_RANDOM, seed * 0x9e3779b97f4a7c15ull,
		    max_payload, &other, &ost);
		assert_rec_equal(r, &other);
		assert_memory_equal(st, &ost, sizeof(ost));
		rec_free(&other);
	}
}

static void run_str(const char *s, struct rec *r, struct ws_nats_stats *st)
{
	struct piece pc = {s, strlen(s)};

	run_all_splits(&pc, 1, 0, r, st);
}

static uint64_t total_errors(const struct ws_nats_stats *st)
{
	uint64_t n = 0;

	for (int i = 0; i < WS_NATS_ERR_MAX; i++)
		n += st->errors[i];
	return n;
}

/* ---- builders ---------------------------------------------------------- */

/* "HPUB subj [reply] <hdr> <total>\r\n" hdrs body "\r\n" into out. */
static size_t build_h(char *out, size_t cap, const char *verb, const char *args,
		      const char *hdrs, const char *body)
{
	size_t hl = strlen(hdrs), bl = strlen(body);
	int n = snprintf(out, cap, "%s %s %zu %zu\r\n%s%s\r\n", verb, args, hl,
			 hl + bl, hdrs, body);

	assert_true(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

/* ---- tests: verbs -------------------------------------------------------- */

#define INFO_LINE                                                          \
	"INFO {\"server_id\":\"NABC\",\"version\":\"2.9.10\",\"proto\":1," \
	"\"headers\":true,\"max_payload\":1048576}\r\n"
#define CONNECT_JSON                                              \
	"{\"verbose\":false,\"pedantic\":false,\"headers\":true," \
	"\"no_responders\":true,\"name\":\"svc\",\"lang\":\"go\"}"

static void test_every_verb(void **state)
{
	static const char in[] = INFO_LINE
		"CONNECT " CONNECT_JSON "\r\n"
		"PUB foo.bar 5\r\nhello\r\n"
		"PUB foo.bar _INBOX.abc 0\r\n\r\n"
		"HPUB FOO 22 33\r\nNATS/1.0\r\nBar: Baz\r\n\r\nHello NATS!\r\n"
		"HPUB FOO _INBOX.r 22 33\r\nNATS/1.0\r\nBar: Baz\r\n\r\n"
		"Hello NATS!\r\n"
		"SUB foo.* 1\r\n"
		"SUB foo.> workers 22\r\n"
		"UNSUB 1\r\n"
		"UNSUB 22 10\r\n"
		"MSG foo.bar 1 5\r\nhello\r\n"
		"MSG foo.bar 1 _INBOX.x 5\r\nhello\r\n"
		"HMSG FOO 9 22 33\r\nNATS/1.0\r\nBar: Baz\r\n\r\nHello "
		"NATS!\r\n"
		"HMSG FOO 9 _INBOX.y 22 33\r\nNATS/1.0\r\nBar: Baz\r\n\r\n"
		"Hello NATS!\r\n"
		"PING\r\nPONG\r\n+OK\r\n-ERR 'Unknown Protocol Operation'\r\n";
	struct rec r;
	struct ws_nats_stats st;
	const struct ws_nats_frame *f;

	run_str(in, &r, &st);
	assert_int_equal(r.n, 18);
	assert_int_equal(total_errors(&st), 0);
	assert_int_equal(st.skipped_bytes, 0);
	assert_int_equal(st.frame_bytes, sizeof(in) - 1);

	f = &r.f[0]->f;
	assert_int_equal(f->verb, WS_NATS_INFO);
	assert_int_equal(f->offset, 0);
	assert_int_equal(f->wire_len, sizeof(INFO_LINE) - 1);
	assert_int_equal(f->info_max_payload, 1048576);
	assert_true(f->json.len > 0 && f->json.ptr[0] == '{' &&
		    f->json.ptr[f->json.len - 1] == '}');

	f = &r.f[1]->f;
	assert_int_equal(f->verb, WS_NATS_CONNECT);
	assert_str(f->json, CONNECT_JSON);

	f = &r.f[2]->f;
	assert_int_equal(f->verb, WS_NATS_PUB);
	assert_str(f->subject, "foo.bar");
	assert_str(f->reply, "");
	assert_int_equal(f->total_len, 5);
	assert_int_equal(f->payload_len, 5);
	assert_memory_equal(f->payload, "hello", 5);
	assert_int_equal(f->flags, 0);
	assert_int_equal(f->wire_len, strlen("PUB foo.bar 5\r\nhello\r\n"));

	f = &r.f[3]->f;
	assert_int_equal(f->verb, WS_NATS_PUB);
	assert_str(f->reply, "_INBOX.abc");
	assert_int_equal(f->total_len, 0);
	assert_int_equal(f->payload_len, 0);

	for (int i = 4; i <= 5; i++) {
		f = &r.f[i]->f;
		assert_int_equal(f->verb, WS_NATS_HPUB);
		assert_str(f->subject, "FOO");
		assert_str(f->reply, i == 4 ? "" : "_INBOX.r");
		assert_int_equal(f->hdr_len, 22);
		assert_int_equal(f->total_len, 33);
		assert_int_equal(f->hdr_block_len, 22);
		assert_memory_equal(f->hdr_block,
				    "NATS/1.0\r\nBar: Baz\r\n\r\n", 22);
		assert_int_equal(f->payload_len, 11);
		assert_memory_equal(f->payload, "Hello NATS!", 11);
		assert_int_equal(f->headers.n, 1);
		assert_int_equal(f->headers.status, 0);
		assert_str(f->headers.v[0].name, "Bar");
		assert_str(f->headers.v[0].value, "Baz");
		assert_int_equal(f->flags, 0);
	}

	f = &r.f[6]->f;
	assert_int_equal(f->verb, WS_NATS_SUB);
	assert_str(f->subject, "foo.*");
	assert_str(f->queue, "");
	assert_str(f->sid, "1");
	f = &r.f[7]->f;
	assert_str(f->subject, "foo.>");
	assert_str(f->queue, "workers");
	assert_str(f->sid, "22");

	f = &r.f[8]->f;
	assert_int_equal(f->verb, WS_NATS_UNSUB);
	assert_str(f->sid, "1");
	assert_int_equal(f->max_msgs, 0);
	f = &r.f[9]->f;
	assert_str(f->sid, "22");
	assert_int_equal(f->max_msgs, 10);

	f = &r.f[10]->f;
	assert_int_equal(f->verb, WS_NATS_MSG);
	assert_str(f->subject, "foo.bar");
	assert_str(f->sid, "1");
	assert_str(f->reply, "");
	assert_memory_equal(f->payload, "hello", 5);
	f = &r.f[11]->f;
	assert_str(f->reply, "_INBOX.x");

	for (int i = 12; i <= 13; i++) {
		f = &r.f[i]->f;
		assert_int_equal(f->verb, WS_NATS_HMSG);
		assert_str(f->subject, "FOO");
		assert_str(f->sid, "9");
		assert_str(f->reply, i == 12 ? "" : "_INBOX.y");
		assert_int_equal(f->headers.n, 1);
		assert_memory_equal(f->payload, "Hello NATS!", 11);
	}
	assert_int_equal(r.f[14]->f.verb, WS_NATS_PING);
	assert_int_equal(r.f[15]->f.verb, WS_NATS_PONG);
	assert_int_equal(r.f[16]->f.verb, WS_NATS_OK);
	f = &r.f[17]->f;
	assert_int_equal(f->verb, WS_NATS_ERR);
	assert_str(f->err, "Unknown Protocol Operation");
	assert_int_equal(f->offset + f->wire_len, sizeof(in) - 1);

	assert_int_equal(st.frames[WS_NATS_PUB], 2);
	assert_int_equal(st.frames[WS_NATS_HMSG], 2);
	assert_int_equal(st.frames[WS_NATS_PING], 1);
	rec_free(&r);
}

static void test_case_blanks_and_bare_lf(void **state)
{
	static const char in[] = "pub\tfoo \t _INBOX.1\t 3 \r\nabc\r\n"
				 "Ping\r\n"
				 "pOnG \t\r\n"
				 "+ok\r\n"
				 "-err\t'Authorization Violation'  \r\n"
				 "-ERR\r\n"
				 "info{\"max_payload\":2048}\r\n"
				 "connect  {}\r\n"
				 "hpub a 12 12\r\nNATS/1.0\r\n\r\n\r\n"
				 "hMsG a b 12 14\r\nNATS/1.0\r\n\r\nxy\r\n"
				 "HPUB a 0 2\r\nhi\r\n"
				 "uNsUb 5 1\r\n"
				 "sub a b c\r\n"
				 "PING\n"
				 "MSG a 1 2\nok\r\n";
	struct rec r;
	struct ws_nats_stats st;

	run_str(in, &r, &st);
	assert_int_equal(total_errors(&st), 0);
	assert_int_equal(r.n, 15);
	assert_int_equal(r.f[0]->f.verb, WS_NATS_PUB);
	assert_str(r.f[0]->f.subject, "foo");
	assert_str(r.f[0]->f.reply, "_INBOX.1");
	assert_memory_equal(r.f[0]->f.payload, "abc", 3);
	assert_int_equal(r.f[1]->f.verb, WS_NATS_PING);
	assert_int_equal(r.f[2]->f.verb, WS_NATS_PONG);
	assert_int_equal(r.f[3]->f.verb, WS_NATS_OK);
	assert_str(r.f[4]->f.err, "Authorization Violation");
	assert_int_equal(r.f[5]->f.verb, WS_NATS_ERR);
	assert_str(r.f[5]->f.err, "");
	assert_int_equal(r.f[6]->f.verb, WS_NATS_INFO);
	assert_int_equal(r.f[6]->f.info_max_payload, 2048);
	assert_str(r.f[7]->f.json, "{}");
	assert_int_equal(r.f[8]->f.verb, WS_NATS_HPUB);
	assert_int_equal(r.f[8]->f.headers.n, 0);
	assert_int_equal(r.f[8]->f.payload_len, 0);
	assert_int_equal(r.f[8]->f.flags, 0);
	assert_int_equal(r.f[9]->f.verb, WS_NATS_HMSG);
	assert_memory_equal(r.f[9]->f.payload, "xy", 2);
	/* A zero-length header block: no headers, and not malformed. */
	assert_int_equal(r.f[10]->f.verb, WS_NATS_HPUB);
	assert_int_equal(r.f[10]->f.flags, 0);
	assert_int_equal(r.f[10]->f.hdr_block_len, 0);
	assert_memory_equal(r.f[10]->f.payload, "hi", 2);
	assert_int_equal(r.f[11]->f.max_msgs, 1);
	assert_str(r.f[12]->f.queue, "b");
	assert_str(r.f[12]->f.sid, "c");
	assert_int_equal(r.f[13]->f.verb, WS_NATS_PING);
	assert_int_equal(r.f[14]->f.verb, WS_NATS_MSG);
	assert_memory_equal(r.f[14]->f.payload, "ok", 2);
	rec_free(&r);
}

/* ---- tests: headers --------------------------------------------------- */

static void test_header_forms(void **state)
{
	static const char *const blocks[] = {
		"NATS/1.0 503\r\nNats-Subject: svc.echo\r\n\r\n",
		"NATS/1.0 408 Request Timeout\r\n\r\n",
		"NATS/1.0 404 No Messages\r\n\r\n",
		"NATS/1.0 409 Consumer Deleted \t\r\n\r\n",
		"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 7\r\n"
		"Nats-Last-Stream: 42\r\n\r\n",
		"NATS/1.0 100 FlowControl Request\r\n\r\n",
		"NATS/1.0\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-"
		"b7ad6b7169203331-01\r\nTraceState: a=b\r\n"
		"Nats-Msg-Id: id-1\r\nX: 1 \t\r\nx:2\r\nX :3\r\n"
		"Empty:\r\n\r\n",
	};
	static const uint16_t status[] = {503, 408, 404, 409, 100, 100, 0};
	static const char *const desc[] = {"",
					   "Request Timeout",
					   "No Messages",
					   "Consumer Deleted",
					   "Idle Heartbeat",
					   "FlowControl Request",
					   ""};
	char buf[1024];
	struct rec r;
	struct ws_nats_stats st;

	for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
		size_t n = build_h(buf, sizeof(buf), "HMSG", "_INBOX.a.b 3",
				   blocks[i], i == 6 ? "body" : "");
		struct piece pc = {buf, n};
		const struct ws_nats_frame *f;
		const struct ws_nats_header *h;

		run_all_splits(&pc, 1, 0, &r, &st);
		assert_int_equal(r.n, 1);
		f = &r.f[0]->f;
		assert_int_equal(f->flags, 0);
		assert_int_equal(f->headers.status, status[i]);
		assert_str(f->headers.desc, desc[i]);
		assert_int_equal(st.bad_headers, 0);
		switch (i) {
		case 0:
			h = ws_nats_header_find(&f->headers, "nats-subject",
						NULL);
			assert_non_null(h);
			assert_str(h->value, "svc.echo");
			assert_int_equal(f->payload_len, 0);
			break;
		case 4:
			assert_int_equal(f->headers.n, 2);
			h = ws_nats_header_find(&f->headers, "Nats-Last-Stream",
						NULL);
			assert_non_null(h);
			assert_str(h->value, "42");
			break;
		case 6:
			assert_int_equal(f->headers.n, 7);
			h = ws_nats_header_find(&f->headers, "TRACEPARENT",
						NULL);
			assert_non_null(h);
			assert_str(h->name, "traceparent");
			assert_str(h->value, "00-0af7651916cd43dd8448eb211c80"
					     "319c-b7ad6b7169203331-01");
			h = ws_nats_header_find(&f->headers, "tracestate",
						NULL);
			assert_non_null(h);
			assert_str(h->name, "TraceState");
			h = ws_nats_header_find(&f->headers, "nats-msg-id",
						NULL);
			assert_str(h->value, "id-1");
			/* Repeated keys, walked in order; "X " is not "X". */
			h = ws_nats_header_find(&f->headers, "x", NULL);
			assert_str(h->value, "1");
			h = ws_nats_header_find(&f->headers, "x", h);
			assert_str(h->value, "2");
			assert_null(ws_nats_header_find(&f->headers, "x", h));
			h = ws_nats_header_find(&f->headers, "empty", NULL);
			assert_non_null(h);
			assert_int_equal(h->value.len, 0);
			assert_null(
				ws_nats_header_find(&f->headers, "nope", NULL));
			assert_memory_equal(f->payload, "body", 4);
			break;
		}
		rec_free(&r);
	}
}

static void test_bad_headers(void **state)
{
	static const char *const bad[] = {
		"NATS/2.0\r\nA: b\r\n\r\n",	/* wrong version */
		"NATS/1.0\r\nno colon\r\n\r\n", /* field without ':' */
		"NATS/1.0\r\n: v\r\n\r\n",	/* empty name */
		"NATS/1.0\r\nA: b\r\n",		/* no empty line */
		"NATS/1.0x\r\n\r\n",		/* junk after the version */
		"NATS/1.0 abc\r\n\r\n",		/* status is not a number */
		"NATS/1.0\r\n\r\nA: b\r\n",	/* bytes after the end */
		"garbage",
	};
	char buf[256];
	struct rec r;
	struct ws_nats_stats st;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = build_h(buf, sizeof(buf), "HPUB", "s", bad[i], "B");
		struct piece pc[] = {{buf, n}, DATA("PING\r\n")};

		run_all_splits(pc, 2, 0, &r, &st);
		/* Framing is intact: the frame and the next one arrive. */
		assert_int_equal(r.n, 2);
		assert_true(r.f[0]->f.flags & WS_NATS_F_BAD_HEADERS);
		assert_memory_equal(r.f[0]->f.payload, "B", 1);
		assert_int_equal(st.bad_headers, 1);
		assert_int_equal(total_errors(&st), 0);
		assert_int_equal(r.f[1]->f.verb, WS_NATS_PING);
		rec_free(&r);
	}
}

static void test_too_many_headers(void **state)
{
	char hdrs[2048], buf[4096];
	size_t o = 0, n;
	struct rec r;
	struct ws_nats_stats st;

	o += (size_t)snprintf(hdrs + o, sizeof(hdrs) - o, "NATS/1.0\r\n");
	for (int i = 0; i < 40; i++)
		o += (size_t)snprintf(hdrs + o, sizeof(hdrs) - o,
				      "K%d: v%d\r\n", i, i);
	snprintf(hdrs + o, sizeof(hdrs) - o, "\r\n");
	n = build_h(buf, sizeof(buf), "HPUB", "s", hdrs, "x");
	assert_int_equal(strlen(buf), n);
	run_str(buf, &r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.f[0]->f.headers.n, WS_NATS_MAX_HEADERS);
	assert_int_equal(r.f[0]->f.flags, WS_NATS_F_HEADERS_DROPPED);
	assert_int_equal(st.headers_dropped, 40 - WS_NATS_MAX_HEADERS);
	assert_str(r.f[0]->f.headers.v[31].name, "K31");
	assert_null(ws_nats_header_find(&r.f[0]->f.headers, "K32", NULL));
	rec_free(&r);
}

/* ---- tests: JetStream ack subjects -------------------------------------- */

static void test_js_ack(void **state)
{
	struct ws_nats_js_ack a;
	const char *s;

	s = "$JS.ACK.ORDERS.dur.1.10.5.1700000000123456789.3";
	assert_int_equal(ws_nats_parse_js_ack(s, strlen(s), &a), 0);
	assert_false(a.v2);
	assert_str(a.stream, "ORDERS");
	assert_str(a.consumer, "dur");
	assert_int_equal(a.delivered, 1);
	assert_int_equal(a.stream_seq, 10);
	assert_int_equal(a.consumer_seq, 5);
	assert_int_equal(a.timestamp_ns, 1700000000123456789ull);
	assert_int_equal(a.pending, 3);
	assert_str(a.domain, "");
	assert_str(a.account, "");
	assert_str(a.token, "");

	s = "$JS.ACK._.AAHASH.ORDERS.dur.2.11.6.1700000000000000000.0";
	assert_int_equal(ws_nats_parse_js_ack(s, strlen(s), &a), 0);
	assert_true(a.v2);
	assert_str(a.domain, "");
	assert_str(a.account, "AAHASH");
	assert_str(a.stream, "ORDERS");
	assert_str(a.consumer, "dur");
	assert_int_equal(a.delivered, 2);
	assert_int_equal(a.stream_seq, 11);
	assert_int_equal(a.consumer_seq, 6);
	assert_int_equal(a.timestamp_ns, 1700000000000000000ull);
	assert_int_equal(a.pending, 0);
	assert_str(a.token, "");

	s = "$JS.ACK.hub.AAHASH.S.C.1.2.3.4.5.rAnd0m";
	assert_int_equal(ws_nats_parse_js_ack(s, strlen(s), &a), 0);
	assert_true(a.v2);
	assert_str(a.domain, "hub");
	assert_str(a.stream, "S");
	assert_str(a.consumer, "C");
	assert_int_equal(a.pending, 5);
	assert_str(a.token, "rAnd0m");

	/* Later servers may append tokens: they stay in token. */
	s = "$JS.ACK.hub.AAHASH.S.C.1.2.3.4.5.tok.more";
	assert_int_equal(ws_nats_parse_js_ack(s, strlen(s), &a), 0);
	assert_str(a.token, "tok.more");

	/* The length bounds the subject, not a NUL. */
	s = "$JS.ACK.S.C.1.2.3.4.5 trailing";
	assert_int_equal(
		ws_nats_parse_js_ack(s, strlen("$JS.ACK.S.C.1.2.3.4.5"), &a),
		0);
	assert_int_equal(a.pending, 5);

	static const char *const bad[] = {
		"$JS.ACK.S.C.1.2.3.4",	   /* 8 tokens */
		"$JS.ACK.S.C.1.2.3.4.5.6", /* 10 tokens */
		"$JS.ACK.S..1.2.3.4.5",	   /* empty consumer */
		"$JS.ACK.S.C.x.2.3.4.5",   /* delivered not a number */
		"$JS.ACK.S.C.1.2.3.4.-5",  /* sign */
		"$JS.ACK.S.C.1.2.3.4.99999999999999999999",
		"$JS.ACK.d.h.S.C.1.2.3.4.5.", /* empty token */
		"$JS.ACK.d.h.S.C.1.2.3.4.",   /* empty pending */
		"$js.ack.S.C.1.2.3.4.5",      /* subjects are case-sensitive */
		"$JS.API.S.C.1.2.3.4.5",
		"$JS.ACK.",
		"$JS.ACK",
		"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ws_nats_parse_js_ack(bad[i], strlen(bad[i]), &a) != -EINVAL)
			fail_msg("accepted %s", bad[i]);
	assert_int_equal(ws_nats_parse_js_ack(NULL, 0, &a), -EINVAL);
}

/* The ack subject straight out of a parsed HMSG. */
static void test_js_ack_from_frame(void **state)
{
	static const char in[] =
		"HMSG ORDERS.new 3 $JS.ACK.ORDERS.proc.4.9.2.17.0 12 15\r\n"
		"NATS/1.0\r\n\r\nabc\r\n";
	struct rec r;
	struct ws_nats_stats st;
	struct ws_nats_js_ack a;

	run_str(in, &r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(ws_nats_parse_js_ack(r.f[0]->f.reply.ptr,
					      r.f[0]->f.reply.len, &a),
			 0);
	assert_int_equal(a.delivered, 4);
	assert_int_equal(a.stream_seq, 9);
	rec_free(&r);
}

/* ---- tests: splitting --------------------------------------------------- */

/* A stream with every feature: equal however it is split, gaps included. */
static void test_splits_equal(void **state)
{
	static char big[100000 + 64];
	static char hbig[80000 + 256];
	size_t bn, hn;
	char body[80001];
	struct rec r;
	struct ws_nats_stats st;

	bn = (size_t)snprintf(big, sizeof(big), "MSG big 1 100000\r\n");
	for (size_t i = 0; i < 100000; i++)
		big[bn + i] = (char)('a' + i % 26);
	bn += 100000;
	memcpy(big + bn, "\r\n", 2);
	bn += 2;
	memset(body, 'z', sizeof(body) - 1);
	body[sizeof(body) - 1] = 0;
	hn = build_h(hbig, sizeof(hbig), "HPUB", "h.big _INBOX.q",
		     "NATS/1.0\r\nNats-Msg-Id: 7\r\n\r\n", body);

	struct piece pc[] = {
		DATA(INFO_LINE),
		DATA("CONNECT {\"headers\":true}\r\nPUB a 3\r\nabc\r\n"),
		DATA("HPUB FOO 22 33\r\nNATS/1.0\r\nBar: Baz\r\n\r\n"
		     "Hello NATS!\r\n"),
		BUF(big, bn),
		BUF(hbig, hn),
		DATA("garbage line\r\n\x01\x02\xff\r\nPING\r\n"),
		DATA("PUB toolong 3\r\nabcdef\r\nPONG\r\n"),
		DATA("PUB a 10\r\n0123"),
		GAP(3),
		DATA("789\r\nSUB x 1\r\nPUB half 4"),
		GAP(7),
		DATA("trailing junk\r\nUNSUB 1\r\n"),
		DATA("HMSG x 1 _INBOX.z 16 18\r\nNATS/1.0 503\r\n\r\nok\r\n"),
		DATA("HPUB s 40 30\r\nPING\r\n"),
		DATA("MSG gapend 1 5\r\nab"),
		GAP(5),
		DATA("PONG\r\n"),
		DATA("+OK\r\n-ERR 'x'\r\nPUB tail 5\r\nhe"),
	};
	run_all_splits(pc, sizeof(pc) / sizeof(pc[0]), 0, &r, &st);

	assert_int_equal(r.n, 17);
	assert_int_equal(r.f[4]->f.verb, WS_NATS_MSG);
	assert_int_equal(r.f[4]->f.total_len, 100000);
	assert_int_equal(r.f[4]->f.payload_len, WS_NATS_MAX_PAYLOAD_KEEP);
	assert_int_equal(r.f[4]->f.flags,
			 WS_NATS_F_TRUNCATED | WS_NATS_F_CLIPPED);
	assert_int_equal(r.f[5]->f.verb, WS_NATS_HPUB);
	assert_int_equal(r.f[5]->f.headers.n, 1);
	assert_int_equal(r.f[5]->f.payload_len,
			 WS_NATS_MAX_PAYLOAD_KEEP - r.f[5]->f.hdr_len);
	assert_int_equal(r.f[8]->f.flags, WS_NATS_F_GAP | WS_NATS_F_TRUNCATED);
	assert_int_equal(r.f[11]->f.headers.status, 503);
	assert_int_equal(r.f[13]->f.flags, WS_NATS_F_GAP | WS_NATS_F_TRUNCATED);
	assert_int_equal(r.f[16]->f.verb, WS_NATS_ERR);
	assert_int_equal(st.payload_clipped, 2);
	assert_int_equal(st.errors[WS_NATS_ERR_VERB], 1);
	assert_int_equal(st.errors[WS_NATS_ERR_PAYLOAD_END], 1);
	assert_int_equal(st.errors[WS_NATS_ERR_HDR_SIZE], 1);
	assert_int_equal(st.gap_lines, 1);
	assert_int_equal(st.gap_payloads, 2);
	assert_int_equal(st.gaps, 3);
	assert_int_equal(st.gap_bytes, 15);
	/* "PUB tail 5\r\nhe" is still waiting for its payload. */
	assert_int_equal(st.bytes - st.frame_bytes - st.skipped_bytes, 14);
	rec_free(&r);
}

/* ---- tests: bad input ----------------------------------------------------- */

struct bad_case {
	const char *line;
	enum ws_nats_err err;
};

static void test_malformed_lines(void **state)
{
	static const struct bad_case cases[] = {
		{"FOO bar\r\n", WS_NATS_ERR_VERB},
		{"\r\n", WS_NATS_ERR_VERB},
		{" PING\r\n", WS_NATS_ERR_VERB},
		{"PINGPONG\r\n", WS_NATS_ERR_VERB},
		{"PUBLISH a 1\r\n", WS_NATS_ERR_VERB},
		{"\vOK\r\n", WS_NATS_ERR_VERB},
		{"\rERR\r\n", WS_NATS_ERR_VERB},
		{"PUB\r\n", WS_NATS_ERR_ARGS},
		{"PUB a\r\n", WS_NATS_ERR_ARGS},
		{"PUB a b c 3\r\n", WS_NATS_ERR_ARGS},
		{"PUB{ 3\r\n", WS_NATS_ERR_ARGS},
		{"HPUB a 3\r\n", WS_NATS_ERR_ARGS},
		{"MSG a 3\r\n", WS_NATS_ERR_ARGS},
		{"HMSG a 1 3\r\n", WS_NATS_ERR_ARGS},
		{"SUB a\r\n", WS_NATS_ERR_ARGS},
		{"SUB a b c d\r\n", WS_NATS_ERR_ARGS},
		{"UNSUB\r\n", WS_NATS_ERR_ARGS},
		{"UNSUB 1 x\r\n", WS_NATS_ERR_ARGS},
		{"PING x\r\n", WS_NATS_ERR_ARGS},
		{"+OK go\r\n", WS_NATS_ERR_ARGS},
		{"CONNECT example.com:443 HTTP/1.1\r\n", WS_NATS_ERR_ARGS},
		{"CONNECT\r\n", WS_NATS_ERR_ARGS},
		{"INFO \r\n", WS_NATS_ERR_ARGS},
		{"MSG a b c d e f g h\r\n", WS_NATS_ERR_ARGS},
	};
	struct rec r;
	struct ws_nats_stats st;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct piece pc[] = {DATA("PING\r\n"),
				     {cases[i].line, strlen(cases[i].line)},
				     DATA("PONG\r\n")};

		run_all_splits(pc, 3, 0, &r, &st);
		if (r.n != 2 || total_errors(&st) != 1 ||
		    st.errors[cases[i].err] != 1)
			fail_msg("case %zu (%s): %zu frames, %s=%llu", i,
				 cases[i].line, r.n,
				 ws_nats_err_name(cases[i].err),
				 (unsigned long long)st.errors[cases[i].err]);
		assert_int_equal(r.nerr, 1);
		assert_int_equal(r.errs[0].offset, 6);
		assert_int_equal(st.skipped_bytes, strlen(cases[i].line));
		assert_int_equal(r.f[1]->f.verb, WS_NATS_PONG);
		rec_free(&r);
	}
}

static void test_lying_sizes(void **state)
{
	static const struct bad_case cases[] = {
		{"HPUB s 40 33\r\n", WS_NATS_ERR_HDR_SIZE},
		{"HMSG s 1 5 3\r\n", WS_NATS_ERR_HDR_SIZE},
		{"PUB s -1\r\n", WS_NATS_ERR_SIZE},
		{"PUB s abc\r\n", WS_NATS_ERR_SIZE},
		{"PUB s 3x\r\n", WS_NATS_ERR_SIZE},
		{"PUB s 0x10\r\n", WS_NATS_ERR_SIZE},
		{"HPUB s -2 5\r\n", WS_NATS_ERR_SIZE},
		{"MSG s 1 184467440737095516160\r\n", WS_NATS_ERR_SIZE},
		{"MSG s 1 18446744073709551616\r\n", WS_NATS_ERR_SIZE},
		{"PUB s 18446744073709551615\r\n", WS_NATS_ERR_MAX_PAYLOAD},
		{"PUB s 1048577\r\n", WS_NATS_ERR_MAX_PAYLOAD},
		{"HMSG s 1 r 2 99999999\r\n", WS_NATS_ERR_MAX_PAYLOAD},
	};
	struct rec r;
	struct ws_nats_stats st;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct piece pc[] = {{cases[i].line, strlen(cases[i].line)},
				     DATA("PING\r\n")};

		run_all_splits(pc, 2, 0, &r, &st);
		if (r.n != 1 || total_errors(&st) != 1 ||
		    st.errors[cases[i].err] != 1)
			fail_msg("case %zu (%s): %zu frames, %s=%llu", i,
				 cases[i].line, r.n,
				 ws_nats_err_name(cases[i].err),
				 (unsigned long long)st.errors[cases[i].err]);
		assert_int_equal(r.f[0]->f.verb, WS_NATS_PING);
		rec_free(&r);
	}
}

/* A size that is too small or too large shows where the CRLF is not. */
static void test_payload_end_mismatch(void **state)
{
	struct rec r;
	struct ws_nats_stats st;

	/* Too small: "lo\r\n" is dropped with the frame, PING survives. */
	run_str("PUB s 3\r\nhello\r\nPING\r\n", &r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.f[0]->f.verb, WS_NATS_PING);
	assert_int_equal(st.errors[WS_NATS_ERR_PAYLOAD_END], 1);
	assert_int_equal(r.errs[0].offset, 0);
	assert_int_equal(st.skipped_bytes, strlen("PUB s 3\r\nhello\r\n"));
	rec_free(&r);

	/* Too large: it swallows PING, then finds no CRLF; PONG is lost. */
	run_str("PUB s 10\r\nhi\r\nPING\r\nPONG\r\n+OK\r\n", &r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.f[0]->f.verb, WS_NATS_OK);
	assert_int_equal(total_errors(&st), 1);
	assert_int_equal(st.errors[WS_NATS_ERR_PAYLOAD_END], 1);
	rec_free(&r);

	/* The stray byte is the LF: the next line is in sync. */
	run_str("PUB s 3\r\nabc\nPING\r\n", &r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.f[0]->f.verb, WS_NATS_PING);
	rec_free(&r);

	/* CR without LF. */
	run_str("MSG s 1 2\r\nab\rxPING\r\nPONG\r\n", &r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.f[0]->f.verb, WS_NATS_PONG);
	assert_int_equal(st.errors[WS_NATS_ERR_PAYLOAD_END], 1);
	rec_free(&r);
}

static void test_oversized_control_line(void **state)
{
	size_t cap = 3 * WS_NATS_MAX_LINE;
	char *in = malloc(cap);
	size_t o, subj;
	struct rec r;
	struct ws_nats_stats st;

	assert_non_null(in);

	/* A line of exactly WS_NATS_MAX_LINE bytes, LF included, is kept. */
	subj = WS_NATS_MAX_LINE - strlen("SUB  1\r\n");
	o = (size_t)snprintf(in, cap, "SUB ");
	memset(in + o, 's', subj);
	o += subj;
	o += (size_t)snprintf(in + o, cap - o, " 1\r\n");
	assert_int_equal(o, WS_NATS_MAX_LINE);
	run_str(in, &r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.f[0]->f.subject.len, subj);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);

	/* One more byte is too long; the line is dropped through its LF. */
	o = (size_t)snprintf(in, cap, "SUB s");
	memset(in + o, 's', subj);
	o += subj;
	o += (size_t)snprintf(in + o, cap - o, " 1\r\nPING\r\n");
	run_str(in, &r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.f[0]->f.verb, WS_NATS_PING);
	assert_int_equal(st.errors[WS_NATS_ERR_LINE_TOO_LONG], 1);
	assert_int_equal(total_errors(&st), 1);
	assert_int_equal(st.skipped_bytes, WS_NATS_MAX_LINE + 1);
	rec_free(&r);

	/* A PUB whose line is too long: its payload is garbage to skip. */
	o = (size_t)snprintf(in, cap, "PUB ");
	memset(in + o, 'p', 2 * WS_NATS_MAX_LINE);
	o += 2 * WS_NATS_MAX_LINE;
	o += (size_t)snprintf(in + o, cap - o, " 3\r\nabc\r\nPING\r\nXYZ\r\n");
	run_str(in, &r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.f[0]->f.verb, WS_NATS_PING);
	assert_int_equal(st.errors[WS_NATS_ERR_LINE_TOO_LONG], 1);
	/* XYZ comes after a good line, so it counts. */
	assert_int_equal(st.errors[WS_NATS_ERR_VERB], 1);
	assert_int_equal(total_errors(&st), 2);
	rec_free(&r);

	/* Garbage without any LF: counted once, memory stays bounded. */
	memset(in, 0x80, cap);
	{
		struct piece pc[] = {{in, cap}, {in, cap}, DATA("\nPING\r\n")};

		run_all_splits(pc, 3, 0, &r, &st);
	}
	assert_int_equal(r.n, 1);
	assert_int_equal(st.errors[WS_NATS_ERR_VERB], 1);
	assert_int_equal(total_errors(&st), 1);
	assert_int_equal(st.skipped_bytes, 2 * cap + 1);
	rec_free(&r);
	free(in);
}

static void test_resync_after_garbage(void **state)
{
	uint8_t junk[5000];
	uint64_t s = 42;
	struct rec r;
	struct ws_nats_stats st;

	/* Binary garbage with many LFs but no verb: one error for it all. */
	for (size_t i = 0; i < sizeof(junk); i++) {
		junk[i] = (uint8_t)(0x80 | rng_next(&s));
		if (rng_next(&s) % 10 == 0)
			junk[i] = '\n';
	}
	junk[sizeof(junk) - 1] = '\n';
	struct piece pc[] = {
		DATA("PING\r\n"),	  BUF(junk, sizeof(junk)),
		DATA("PUB a 1\r\nx\r\n"), BUF(junk, sizeof(junk)),
		DATA("\nPONG\r\n"),
	};
	run_all_splits(pc, sizeof(pc) / sizeof(pc[0]), 0, &r, &st);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.f[0]->f.verb, WS_NATS_PING);
	assert_int_equal(r.f[1]->f.verb, WS_NATS_PUB);
	assert_int_equal(r.f[2]->f.verb, WS_NATS_PONG);
	assert_int_equal(st.errors[WS_NATS_ERR_VERB], 2);
	assert_int_equal(total_errors(&st), 2);
	assert_int_equal(st.skipped_bytes, 2 * sizeof(junk) + 1);
	rec_free(&r);
}

/* ---- tests: truncation and gaps --------------------------------------- */

static void test_clipped_payload(void **state)
{
	size_t n = 300000, o;
	char *in = malloc(n + 64);
	struct rec r;
	struct ws_nats_stats st;

	assert_non_null(in);
	o = (size_t)snprintf(in, 64, "PUB big %zu\r\n", n);
	for (size_t i = 0; i < n; i++)
		in[o + i] = (char)(i * 7);
	memcpy(in + o + n, "\r\nPING\r\n", 8);
	{
		struct piece pc = {in, o + n + 8};

		run_all_splits(&pc, 1, 0, &r, &st);
	}
	assert_int_equal(r.n, 2);
	assert_int_equal(r.f[0]->f.total_len, n);
	assert_int_equal(r.f[0]->f.payload_len, WS_NATS_MAX_PAYLOAD_KEEP);
	assert_memory_equal(r.f[0]->f.payload, in + o,
			    WS_NATS_MAX_PAYLOAD_KEEP);
	assert_int_equal(r.f[0]->f.flags,
			 WS_NATS_F_TRUNCATED | WS_NATS_F_CLIPPED);
	assert_int_equal(r.f[0]->f.wire_len, o + n + 2);
	assert_int_equal(st.payload_clipped, 1);
	assert_int_equal(r.f[1]->f.verb, WS_NATS_PING);
	rec_free(&r);
	free(in);
}

/* A header block longer than what is kept. */
static void test_clipped_headers(void **state)
{
	size_t vl = WS_NATS_MAX_PAYLOAD_KEEP;
	char *hdrs = malloc(vl + 64), *buf = malloc(vl + 256);
	size_t o;
	struct rec r;
	struct ws_nats_stats st;

	assert_non_null(hdrs);
	assert_non_null(buf);
	o = (size_t)sprintf(hdrs, "NATS/1.0\r\nA: 1\r\nBig: ");
	memset(hdrs + o, 'v', vl);
	strcpy(hdrs + o + vl, "\r\n\r\n");
	build_h(buf, vl + 256, "HPUB", "s", hdrs, "body");
	run_str(buf, &r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.f[0]->f.flags, WS_NATS_F_TRUNCATED |
						  WS_NATS_F_CLIPPED |
						  WS_NATS_F_HDR_TRUNCATED);
	assert_int_equal(r.f[0]->f.headers.n, 1);
	assert_int_equal(r.f[0]->f.hdr_block_len, WS_NATS_MAX_PAYLOAD_KEEP);
	assert_int_equal(r.f[0]->f.payload_len, 0);
	assert_int_equal(st.bad_headers, 0);
	rec_free(&r);
	free(hdrs);
	free(buf);
}

static void test_gap_in_payload(void **state)
{
	struct piece pc[] = {
		DATA("PUB foo 10\r\n0123"),
		GAP(3),
		DATA("789\r\nPING\r\n"),
	};
	struct rec r;
	struct ws_nats_stats st;

	run_all_splits(pc, 3, 0, &r, &st);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.f[0]->f.verb, WS_NATS_PUB);
	assert_int_equal(r.f[0]->f.total_len, 10);
	assert_int_equal(r.f[0]->f.payload_len, 4);
	assert_memory_equal(r.f[0]->f.payload, "0123", 4);
	assert_int_equal(r.f[0]->f.flags, WS_NATS_F_GAP | WS_NATS_F_TRUNCATED);
	assert_int_equal(r.f[0]->f.wire_len, 24);
	assert_int_equal(r.f[1]->f.offset, 24);
	assert_int_equal(st.gap_payloads, 1);
	assert_int_equal(total_errors(&st), 0);
	assert_int_equal(st.frame_bytes, st.bytes);
	rec_free(&r);

	/* A gap that eats the header block's end. */
	struct piece ph[] = {
		DATA("HMSG s 1 22 33\r\nNATS/1.0\r\nBar: B"),
		GAP(6),
		DATA("Hello NATS!\r\n"),
	};
	run_all_splits(ph, 3, 0, &r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.f[0]->f.flags, WS_NATS_F_GAP | WS_NATS_F_TRUNCATED |
						  WS_NATS_F_HDR_TRUNCATED);
	assert_int_equal(r.f[0]->f.hdr_block_len, 16);
	assert_int_equal(r.f[0]->f.payload_len, 0);
	assert_int_equal(r.f[0]->f.headers.n, 0);
	rec_free(&r);

	/* A gap over just the CRLF: the payload is whole. */
	struct piece pt[] = {DATA("MSG s 1 2\r\nab"), GAP(2), DATA("PING\r\n")};
	run_all_splits(pt, 3, 0, &r, &st);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.f[0]->f.flags, WS_NATS_F_GAP);
	assert_int_equal(r.f[0]->f.payload_len, 2);
	rec_free(&r);
}

static void test_gap_past_frame_end(void **state)
{
	/* Ends exactly with the frame: the next line is trusted. */
	struct piece pa[] = {
		DATA("PUB foo 10\r\n0123"),
		GAP(8),
		DATA("PING\r\nXX\r\n"),
	};
	/* Runs into the next frame: resync silently to PONG. */
	struct piece pb[] = {
		DATA("PUB foo 10\r\n0123"),
		GAP(12),
		DATA("UB x 3\r\nabc\r\nPONG\r\n"),
	};
	struct rec r;
	struct ws_nats_stats st;

	run_all_splits(pa, 3, 0, &r, &st);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.f[0]->f.flags, WS_NATS_F_GAP | WS_NATS_F_TRUNCATED);
	assert_int_equal(r.f[0]->f.wire_len, 24);
	assert_int_equal(r.f[1]->f.verb, WS_NATS_PING);
	assert_int_equal(st.errors[WS_NATS_ERR_VERB], 1);
	rec_free(&r);

	run_all_splits(pb, 3, 0, &r, &st);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.f[0]->f.wire_len, 24);
	assert_int_equal(r.f[1]->f.verb, WS_NATS_PONG);
	assert_int_equal(r.f[1]->f.offset, 16 + 12 + 13);
	assert_int_equal(total_errors(&st), 0);
	assert_int_equal(st.skipped_bytes, 13);
	rec_free(&r);
}

static void test_gap_in_control_line(void **state)
{
	struct piece pc[] = {
		DATA("PING\r\nPUB foo"),
		GAP(5),
		DATA(" 3\r\nabc\r\nPONG\r\n"),
		GAP(4),
		DATA("+OK\r\n"),
		DATA("SUB"),
		GAP(1),
		DATA("\r\nPING\r\n"),
	};
	struct rec r;
	struct ws_nats_stats st;

	run_all_splits(pc, sizeof(pc) / sizeof(pc[0]), 0, &r, &st);
	assert_int_equal(r.n, 4);
	assert_int_equal(r.f[0]->f.verb, WS_NATS_PING);
	assert_int_equal(r.f[1]->f.verb, WS_NATS_PONG);
	/* A gap at a line boundary drops nothing: +OK still parses. */
	assert_int_equal(r.f[2]->f.verb, WS_NATS_OK);
	assert_int_equal(r.f[3]->f.verb, WS_NATS_PING);
	assert_int_equal(st.gap_lines, 2);
	assert_int_equal(st.gaps, 3);
	assert_int_equal(total_errors(&st), 0);
	assert_int_equal(st.skipped_bytes,
			 strlen("PUB foo") + strlen(" 3\r\nabc\r\n") +
				 strlen("SUB") + strlen("\r\n"));
	rec_free(&r);
}

/* A gap that swallows a whole control line: its payload is just garbage. */
static void test_gap_over_line_then_payload(void **state)
{
	struct piece pc[] = {
		GAP(100),
		DATA("just payload\r\nMSG a 1 2\r\nhi\r\n"),
	};
	struct rec r;
	struct ws_nats_stats st;

	run_all_splits(pc, 2, 0, &r, &st);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.f[0]->f.verb, WS_NATS_MSG);
	assert_int_equal(r.f[0]->f.offset, 100 + 14);
	assert_int_equal(total_errors(&st), 0);
	rec_free(&r);
}

/* ---- tests: max_payload -------------------------------------------------- */

static void test_max_payload_from_info(void **state)
{
	char pub100[128], pub101[128];
	char p100[101], p101[102];
	struct rec r;
	struct ws_nats_stats st;

	memset(p100, 'x', 100);
	p100[100] = 0;
	memset(p101, 'y', 101);
	p101[101] = 0;
	snprintf(pub100, sizeof(pub100), "PUB a 100\r\n%s\r\n", p100);
	snprintf(pub101, sizeof(pub101), "PUB a 101\r\n%s\r\n", p101);
	{
		struct piece pc[] = {
			BUF(pub101, strlen(pub101)),
			DATA("INFO "
			     "{\"max_payload\":100,\"server_id\":\"x\"}\r\n"),
			BUF(pub100, strlen(pub100)),
			BUF(pub101, strlen(pub101)),
			DATA("PING\r\n"),
		};

		run_all_splits(pc, 5, 0, &r, &st);
	}
	/* Before INFO the 1 MiB default applies. */
	assert_int_equal(r.n, 4);
	assert_int_equal(r.f[0]->f.verb, WS_NATS_PUB);
	assert_int_equal(r.f[1]->f.verb, WS_NATS_INFO);
	assert_int_equal(r.f[1]->f.info_max_payload, 100);
	assert_int_equal(r.f[2]->f.total_len, 100);
	assert_int_equal(st.errors[WS_NATS_ERR_MAX_PAYLOAD], 1);
	/* The 101 bytes of y were skipped as garbage, then PING. */
	assert_int_equal(r.f[3]->f.verb, WS_NATS_PING);
	rec_free(&r);

	/* Above the cap: clamped. Bad JSON or a bad value: no change. */
	{
		struct ws_nats_parser *p = ws_nats_parser_new(&rec_cb, &r);
		static const char in[] =
			"INFO {\"max_payload\":1000000000000}\r\n";
		static const char bad[] = "INFO {\"max_payload\":\r\n"
					  "INFO {\"max_payload\":-5}\r\n"
					  "INFO {\"max_payload\":\"7\"}\r\n"
					  "INFO {\"max_payload\":1.5}\r\n"
					  "INFO {]\r\n";

		memset(&r, 0, sizeof(r));
		assert_int_equal(ws_nats_parser_max_payload(p),
				 WS_NATS_DEFAULT_MAX_PAYLOAD);
		feed_guarded(p, in, sizeof(in) - 1);
		assert_int_equal(ws_nats_parser_max_payload(p),
				 WS_NATS_MAX_PAYLOAD_CAP);
		assert_int_equal(ws_nats_parser_stats(p)->max_payload_clamp, 1);
		assert_int_equal(r.f[0]->f.info_max_payload, 1000000000000ull);
		feed_guarded(p, bad, sizeof(bad) - 1);
		assert_int_equal(r.n, 6);
		assert_int_equal(r.f[1]->f.flags, WS_NATS_F_BAD_JSON);
		assert_int_equal(r.f[5]->f.flags, WS_NATS_F_BAD_JSON);
		assert_int_equal(ws_nats_parser_stats(p)->bad_json, 2);
		assert_int_equal(ws_nats_parser_max_payload(p),
				 WS_NATS_MAX_PAYLOAD_CAP);
		/* The owner hands it over from the other direction. */
		assert_int_equal(ws_nats_parser_set_max_payload(p, 4096), 0);
		assert_int_equal(ws_nats_parser_max_payload(p), 4096);
		assert_int_equal(ws_nats_parser_set_max_payload(p, 0), 0);
		assert_int_equal(ws_nats_parser_max_payload(p),
				 WS_NATS_DEFAULT_MAX_PAYLOAD);
		assert_int_equal(ws_nats_parser_set_max_payload(NULL, 1),
				 -EINVAL);
		ws_nats_parser_free(p);
		rec_free(&r);
	}

	/* Exactly the default is allowed, one more is not. */
	{
		size_t n = WS_NATS_DEFAULT_MAX_PAYLOAD;
		char *in = calloc(1, n + 64);
		size_t o;

		assert_non_null(in);
		o = (size_t)sprintf(in, "PUB a %zu\r\n", n);
		memset(in + o, 'q', n);
		memcpy(in + o + n, "\r\nPUB a 1048577\r\n", 17);
		struct piece pc = {in, o + n + 17};

		run(&pc, 1, SPLIT_WHOLE, 0, 0, &r, &st);
		assert_int_equal(r.n, 1);
		assert_int_equal(r.f[0]->f.total_len, n);
		assert_int_equal(st.errors[WS_NATS_ERR_MAX_PAYLOAD], 1);
		rec_free(&r);
		free(in);
	}
}

/* ---- tests: API ----------------------------------------------------------- */

static void test_parser_ops(void **state)
{
	const struct ws_parser_ops *ops = &ws_nats_parser_ops;
	struct rec r;
	struct ws_nats_sink sink = {&rec_cb, &r};
	static const struct ws_nats_cb no_frame = {0};
	struct ws_nats_sink bad = {&no_frame, NULL};
	void *st;

	memset(&r, 0, sizeof(r));
	assert_string_equal(ops->name, "nats");
	assert_int_equal(ops->proto, WS_PROTO_NATS);

	errno = 0;
	assert_null(ops->create(NULL));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(ops->create(&bad));
	assert_int_equal(errno, EINVAL);
	assert_null(ws_nats_parser_new(NULL, NULL));

	st = ops->create(&sink);
	assert_non_null(st);
	assert_int_equal(ops->feed(st, (const uint8_t *)"PUB a 2\r\nh", 10), 0);
	assert_int_equal(ops->gap(st, 1), 0);
	assert_int_equal(ops->feed(st, (const uint8_t *)"\r\nPING\r\n", 8), 0);
	assert_int_equal(ops->feed(st, NULL, 0), 0);
	assert_int_equal(ops->feed(st, NULL, 1), -EINVAL);
	assert_int_equal(ops->gap(st, 0), 0);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.f[0]->f.flags, WS_NATS_F_GAP | WS_NATS_F_TRUNCATED);
	ops->destroy(st);
	ops->destroy(NULL);
	assert_int_equal(ws_nats_parser_feed(NULL, NULL, 0), -EINVAL);
	assert_int_equal(ws_nats_parser_gap(NULL, 1), -EINVAL);
	assert_null(ws_nats_parser_stats(NULL));
	rec_free(&r);

	assert_string_equal(ws_nats_verb_name(WS_NATS_HMSG), "HMSG");
	assert_string_equal(ws_nats_verb_name(WS_NATS_VERB_MAX), "?");
	assert_string_equal(ws_nats_err_name(WS_NATS_ERR_PAYLOAD_END),
			    "payload_end");
	assert_string_equal(ws_nats_err_name(WS_NATS_ERR_MAX), "unknown");
	for (int i = 1; i < WS_NATS_VERB_MAX; i++)
		assert_string_not_equal(ws_nats_verb_name(i), "?");
	for (int i = 0; i < WS_NATS_ERR_MAX; i++)
		assert_string_not_equal(ws_nats_err_name(i), "unknown");
}

/* No error callback is fine; gaps bigger than any frame are fine. */
static void count_frame(void *ctx, const struct ws_nats_frame *f)
{
	(*(int *)ctx)++;
}

static void test_no_error_cb_huge_gap(void **state)
{
	static const struct ws_nats_cb cb = {.frame = count_frame};
	int n = 0;
	struct ws_nats_parser *p = ws_nats_parser_new(&cb, &n);

	assert_non_null(p);
	feed_guarded(p, "garbage\r\nPUB a 5\r\nab", 20);
	assert_int_equal(ws_nats_parser_gap(p, UINT64_MAX / 2), 0);
	feed_guarded(p, "PING\r\n", 6);
	assert_int_equal(n, 2);
	assert_int_equal(ws_nats_parser_stats(p)->errors[WS_NATS_ERR_VERB], 1);
	assert_int_equal(ws_nats_parser_pending(p), 0);
	ws_nats_parser_free(p);
	ws_nats_parser_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_verb),
		cmocka_unit_test(test_case_blanks_and_bare_lf),
		cmocka_unit_test(test_header_forms),
		cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_too_many_headers),
		cmocka_unit_test(test_js_ack),
		cmocka_unit_test(test_js_ack_from_frame),
		cmocka_unit_test(test_splits_equal),
		cmocka_unit_test(test_malformed_lines),
		cmocka_unit_test(test_lying_sizes),
		cmocka_unit_test(test_payload_end_mismatch),
		cmocka_unit_test(test_oversized_control_line),
		cmocka_unit_test(test_resync_after_garbage),
		cmocka_unit_test(test_clipped_payload),
		cmocka_unit_test(test_clipped_headers),
		cmocka_unit_test(test_gap_in_payload),
		cmocka_unit_test(test_gap_past_frame_end),
		cmocka_unit_test(test_gap_in_control_line),
		cmocka_unit_test(test_gap_over_line_then_payload),
		cmocka_unit_test(test_max_payload_from_info),
		cmocka_unit_test(test_parser_ops),
		cmocka_unit_test(test_no_error_cb_huge_gap),
	};

	return cmocka_run_group_tests(tests, guard_setup, guard_teardown);
}
