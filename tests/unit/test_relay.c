/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The relay's pure core (agent/relay.c): batches by concatenation, the OTLP
 * retry rules (which statuses, Retry-After, backoff, max elapsed), the queue
 * bound, drops by reason and the release of every token exactly once; and
 * the pieces of export/otlp_http.c that need no network (gzip, partial
 * success) and pb_guard's span count.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "otlp_trace_service.pb-c.h"

#include "export/otlp_http.h"
#include "export/otlp_pb.h"
#include "export/pb_guard.h"
#include "relay.h"
#include "span.h"

#define MS 1000000ull
#define SEC 1000000000ull
#define NO_RA UINT64_MAX

/* ---- fixtures ---- */

/* An OTLP payload of n spans named name-0.. (protobuf-c encoder). */
static uint8_t *payload(size_t n, const char *name, size_t *len)
{
	struct ws_resource *r = ws_resource_new(1);
	struct ws_span *s[16];
	uint8_t *buf;
	size_t i;

	assert_true(n <= 16);
	ws_attrs_cstr(&r->a, "service.name", "svc");
	for (i = 0; i < n; i++) {
		char nm[64];

		snprintf(nm, sizeof(nm), "%s-%zu", name, i);
		s[i] = ws_span_new(nm, WS_SPAN_KIND_INTERNAL, 1, NULL);
		ws_span_set_resource(s[i], r);
	}
	assert_int_equal(ws_otlp_pb_encode(s, n, &buf, len), 0);
	for (i = 0; i < n; i++)
		ws_span_free(s[i]);
	ws_resource_put(r);
	return buf;
}

/* Releases seen: token -> why (tokens are small integers). */
struct released {
	int why[64];
	int count[64];
};

static void on_release(void *ctx, void *token, int why)
{
	struct released *rel = ctx;
	uintptr_t t = (uintptr_t)token;

	assert_true(t < 64);
	rel->why[t] = why;
	rel->count[t]++;
}

static struct ws_relay *relay(struct ws_relay_cfg *cfg, struct released *rel)
{
	struct ws_relay *r;

	memset(rel, 0, sizeof(*rel));
	cfg->release = on_release;
	cfg->ctx = rel;
	r = ws_relay_new(cfg);
	assert_non_null(r);
	return r;
}

static void push(struct ws_relay *r, size_t spans, uintptr_t token,
		 uint64_t now)
{
	size_t len;
	uint8_t *b = payload(spans, "s", &len);

	assert_int_equal(ws_relay_push(r, b, len, (void *)token, now), 0);
	free(b);
}

/* ---- the rules ---- */

static void verdicts(void **state)
{
	static const int ok[] = {200, 202, 204};
	static const int retry[] = {0, 429, 502, 503, 504};
	static const int drop[] = {400, 401, 403, 404, 408, 413, 500, 501};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_int_equal(ws_relay_verdict_of(ok[i]), WS_VERDICT_OK);
	for (i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
		assert_int_equal(ws_relay_verdict_of(retry[i]),
				 WS_VERDICT_RETRY);
	for (i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		assert_int_equal(ws_relay_verdict_of(drop[i]), WS_VERDICT_DROP);
}

static void retry_after_values(void **state)
{
	/* Wed, 21 Oct 2015 07:28:00 GMT */
	const int64_t date = 1445412480;
	uint64_t ns = 0;

	assert_int_equal(ws_relay_retry_after("5", 0, &ns), 0);
	assert_true(ns == 5 * SEC);
	assert_int_equal(ws_relay_retry_after(" 120\r\n", 0, &ns), 0);
	assert_true(ns == 120 * SEC);
	assert_int_equal(ws_relay_retry_after("0", 0, &ns), 0);
	assert_true(ns == 0);
	assert_int_equal(ws_relay_retry_after("Wed, 21 Oct 2015 07:28:00 GMT",
					      date - 3, &ns),
			 0);
	assert_true(ns == 3 * SEC);
	assert_int_equal(ws_relay_retry_after("Wed, 21 Oct 2015 07:28:00 GMT",
					      date + 100, &ns),
			 0);
	assert_true(ns == 0); /* a date in the past: now */
	assert_int_equal(ws_relay_retry_after("5s", 0, &ns), -EINVAL);
	assert_int_equal(ws_relay_retry_after("soon", 0, &ns), -EINVAL);
	assert_int_equal(ws_relay_retry_after("99999999999999", 0, &ns),
			 -EINVAL);
	assert_int_equal(ws_relay_retry_after(NULL, 0, &ns), -EINVAL);
}

static void backoff_doubles_with_jitter(void **state)
{
	unsigned a;

	for (a = 1; a <= 12; a++) {
		uint64_t cap = 100 * MS << (a - 1), lo, hi;

		if (cap > 2 * SEC)
			cap = 2 * SEC;
		lo = ws_relay_backoff(100 * MS, 2 * SEC, a, 0);
		hi = ws_relay_backoff(100 * MS, 2 * SEC, a, UINT32_MAX);
		assert_true(lo == cap / 2);
		assert_true(hi <= cap && hi > cap - cap / 1000);
	}
}

/* ---- batches ---- */

static void batches_concatenate(void **state)
{
	struct ws_relay_cfg cfg;
	struct released rel;
	struct ws_relay_batch b;
	struct ws_relay *r;
	size_t n = 0;

	ws_relay_cfg_init(&cfg);
	cfg.max_delay_ns = 100 * MS;
	r = relay(&cfg, &rel);
	push(r, 2, 1, 0);
	push(r, 3, 2, 10 * MS);
	push(r, 1, 3, 20 * MS);
	assert_int_equal(ws_relay_stats(r)->spans_in, 6);
	assert_false(ws_relay_next(r, 99 * MS, false, &b));
	assert_true(ws_relay_wake_ns(r, 50 * MS) == 100 * MS);
	assert_true(ws_relay_next(r, 100 * MS, false, &b));
	assert_int_equal(b.spans, 6);
	assert_int_equal(b.messages, 3);
	assert_int_equal(b.attempt, 0);
	/* the concatenation is one request with every span */
	assert_int_equal(ws_otlp_pb_decode_count(b.data, b.len, &n), 0);
	assert_int_equal(n, 6);
	/* nothing else while it is in flight */
	assert_false(ws_relay_next(r, 200 * MS, true, &b));
	ws_relay_done(r, 200, NO_RA, 0, 5 * MS, 0, 101 * MS);
	assert_int_equal(rel.why[1], WS_RELAY_DELIVERED);
	assert_int_equal(rel.why[3], WS_RELAY_DELIVERED);
	assert_int_equal(rel.count[2], 1);
	assert_int_equal(ws_relay_stats(r)->spans_out, 6);
	assert_int_equal(ws_relay_stats(r)->batches_out, 1);
	assert_int_equal(ws_relay_stats(r)->queued_bytes, 0);
	assert_true(ws_relay_idle(r));
	ws_relay_free(r);
}

static void batch_bounds_split(void **state)
{
	struct ws_relay_cfg cfg;
	struct released rel;
	struct ws_relay_batch b;
	struct ws_relay *r;

	ws_relay_cfg_init(&cfg);
	cfg.max_batch_spans = 4;
	r = relay(&cfg, &rel);
	push(r, 3, 1, 0);
	assert_false(ws_relay_next(r, 0, false, &b)); /* under every bound */
	assert_true(ws_relay_wake_ns(r, 0) == cfg.max_delay_ns);
	push(r, 3, 2, 0);
	assert_true(ws_relay_wake_ns(r, 0) == 0); /* full: wake at once */
	/* 6 spans queued >= 4: due now, but 3 + 3 > 4: one payload */
	assert_true(ws_relay_next(r, 0, false, &b));
	assert_int_equal(b.spans, 3);
	ws_relay_done(r, 204, NO_RA, 0, 1, 0, 0);
	assert_false(ws_relay_next(r, 0, false, &b));
	assert_true(ws_relay_next(r, 0, true, &b)); /* flush: the rest */
	assert_int_equal(b.spans, 3);
	ws_relay_done(r, 200, NO_RA, 0, 1, 0, 0);
	assert_int_equal(ws_relay_stats(r)->batches_out, 2);
	ws_relay_free(r);
}

/* ---- retries ---- */

static void retry_rules(void **state)
{
	struct ws_relay_cfg cfg;
	struct released rel;
	struct ws_relay_batch b;
	struct ws_relay *r;
	uint64_t t;

	ws_relay_cfg_init(&cfg);
	cfg.backoff_ns = 100 * MS;
	r = relay(&cfg, &rel);
	push(r, 2, 1, 0);
	assert_true(ws_relay_next(r, 0, true, &b));
	/* 503 without Retry-After: backoff in [50, 100] ms */
	ws_relay_done(r, 503, NO_RA, 0, 1, UINT32_MAX, 0);
	assert_int_equal(rel.count[1], 0);
	assert_false(ws_relay_next(r, 49 * MS, false, &b));
	t = ws_relay_wake_ns(r, 0);
	assert_true(t >= 50 * MS && t <= 100 * MS);
	assert_true(ws_relay_next(r, t, false, &b));
	assert_int_equal(b.attempt, 1);
	/* 429 with Retry-After: 2 s, exactly */
	ws_relay_done(r, 429, 2 * SEC, 0, 1, 0, t);
	assert_false(ws_relay_next(r, t + 2 * SEC - 1, false, &b));
	assert_true(ws_relay_next(r, t + 2 * SEC, false, &b));
	assert_int_equal(b.attempt, 2);
	/* a connection refused is retried too */
	ws_relay_done(r, 0, NO_RA, 0, 1, 0, t + 2 * SEC);
	assert_true(ws_relay_next(r, t + 3 * SEC, false, &b));
	ws_relay_done(r, 200, NO_RA, 0, 1, 0, t + 3 * SEC);
	assert_int_equal(rel.why[1], WS_RELAY_DELIVERED);
	assert_int_equal(ws_relay_stats(r)->retries, 3);
	assert_int_equal(ws_relay_stats(r)->retry_after_used, 1);
	assert_int_equal(ws_relay_stats(r)->posts, 4);
	assert_int_equal(ws_relay_stats(r)->status_5xx, 1);
	assert_int_equal(ws_relay_stats(r)->status_4xx, 1);
	assert_int_equal(ws_relay_stats(r)->transport_errors, 1);
	assert_int_equal(ws_relay_stats(r)->spans_out, 2);

	/* 400: never retried, dropped and counted; 500 likewise */
	push(r, 3, 2, 0);
	push(r, 1, 3, 0);
	assert_true(ws_relay_next(r, 0, true, &b));
	ws_relay_done(r, 400, 5 * SEC, 0, 1, 0, 0);
	assert_int_equal(rel.why[2], WS_DROP_REJECTED);
	assert_int_equal(rel.why[3], WS_DROP_REJECTED);
	assert_int_equal(ws_relay_stats(r)->dropped[WS_DROP_REJECTED], 4);
	assert_false(ws_relay_next(r, 10 * SEC, true, &b));
	ws_relay_free(r);
}

static void retries_exhausted(void **state)
{
	struct ws_relay_cfg cfg;
	struct released rel;
	struct ws_relay_batch b;
	struct ws_relay *r;
	uint64_t now = 0;
	int posts = 0;

	ws_relay_cfg_init(&cfg);
	cfg.backoff_ns = 1 * SEC;
	cfg.backoff_max_ns = 4 * SEC;
	cfg.max_elapsed_ns = 20 * SEC;
	r = relay(&cfg, &rel);
	push(r, 5, 7, 0);
	memset(&b, 0, sizeof(b));
	while (ws_relay_next(r, now, true, &b) || !ws_relay_idle(r)) {
		if (b.data) {
			posts++;
			ws_relay_done(r, 503, NO_RA, 0, 1, UINT32_MAX, now);
			b.data = NULL;
		}
		now = ws_relay_wake_ns(r, now);
		assert_true(now <= 30 * SEC);
	}
	/* 1 + 2 + 4 + 4 + 4 + 4 = 19 s of waits: 7 posts, then given up */
	assert_int_equal(posts, 7);
	assert_int_equal(rel.why[7], WS_DROP_RETRIES_EXHAUSTED);
	assert_int_equal(rel.count[7], 1);
	assert_int_equal(ws_relay_stats(r)->dropped[WS_DROP_RETRIES_EXHAUSTED],
			 5);
	/* a Retry-After beyond the window gives up at once */
	push(r, 1, 8, now);
	assert_true(ws_relay_next(r, now, true, &b));
	ws_relay_done(r, 429, 3600 * SEC, 0, 1, 0, now);
	assert_int_equal(rel.why[8], WS_DROP_RETRIES_EXHAUSTED);
	ws_relay_free(r);
}

static void partial_success_counted(void **state)
{
	struct ws_relay_cfg cfg;
	struct released rel;
	struct ws_relay_batch b;
	struct ws_relay *r;

	ws_relay_cfg_init(&cfg);
	r = relay(&cfg, &rel);
	push(r, 4, 1, 0);
	assert_true(ws_relay_next(r, 0, true, &b));
	ws_relay_done(r, 200, NO_RA, 3, 1, 0, 0);
	/* accepted: the backend's refusal of 3 spans is final, not retried */
	assert_int_equal(rel.why[1], WS_RELAY_DELIVERED);
	assert_int_equal(ws_relay_stats(r)->spans_out, 1);
	assert_int_equal(ws_relay_stats(r)->dropped[WS_DROP_PARTIAL], 3);
	ws_relay_free(r);
}

/* ---- bounds and bad input ---- */

static void queue_bound_drops_oldest(void **state)
{
	struct ws_relay_cfg cfg;
	struct released rel;
	struct ws_relay_batch b;
	struct ws_relay *r;
	size_t len, i;
	uint8_t *p = payload(1, "s", &len);

	ws_relay_cfg_init(&cfg);
	cfg.max_queue_bytes = 3 * len;
	r = relay(&cfg, &rel);
	for (i = 1; i <= 3; i++)
		assert_int_equal(ws_relay_push(r, p, len, (void *)i, 0), 0);
	assert_true(ws_relay_next(r, 0, true, &b)); /* 1..3 in flight */
	ws_relay_done(r, 503, NO_RA, 0, 1, 0, 0);
	/* full: the new one has no room, the batch in flight is kept */
	assert_int_equal(ws_relay_room(r), 0);
	assert_int_equal(ws_relay_push(r, p, len, (void *)4, 0), 0);
	assert_int_equal(rel.why[4], WS_DROP_QUEUE_FULL);
	assert_int_equal(rel.count[1], 0);
	ws_relay_done(r, 200, NO_RA, 0, 1, 0, 0); /* not posting: ignored */
	assert_int_equal(rel.count[1], 0);
	assert_true(ws_relay_next(r, SEC, false, &b));
	ws_relay_done(r, 200, NO_RA, 0, 1, 0, SEC);
	assert_int_equal(rel.why[1], WS_RELAY_DELIVERED);
	/* queued payloads: the oldest make room */
	for (i = 5; i <= 8; i++)
		assert_int_equal(ws_relay_push(r, p, len, (void *)i, 0), 0);
	assert_int_equal(rel.why[5], WS_DROP_QUEUE_FULL);
	assert_int_equal(rel.count[6], 0);
	assert_int_equal(ws_relay_stats(r)->dropped[WS_DROP_QUEUE_FULL], 2);
	assert_true(ws_relay_stats(r)->peak_queued_bytes <= 3 * len);
	/* stopping: the rest is released once, counted as shutdown */
	ws_relay_free(r);
	for (i = 6; i <= 8; i++) {
		assert_int_equal(rel.why[i], WS_DROP_SHUTDOWN);
		assert_int_equal(rel.count[i], 1);
	}
	free(p);
}

static void bad_payloads(void **state)
{
	static const uint8_t junk[] = {0xde, 0xad, 0xbe, 0xef};
	struct ws_relay_cfg cfg;
	struct released rel;
	struct ws_relay *r;
	size_t len;
	uint8_t *p = payload(2, "s", &len);

	ws_relay_cfg_init(&cfg);
	r = relay(&cfg, &rel);
	assert_int_equal(ws_relay_push(r, junk, sizeof(junk), (void *)1, 0),
			 -EBADMSG);
	assert_int_equal(ws_relay_push(r, p, len - 1, (void *)2, 0), -EBADMSG);
	assert_int_equal(rel.why[1], WS_DROP_BAD_MESSAGE);
	assert_int_equal(rel.why[2], WS_DROP_BAD_MESSAGE);
	assert_int_equal(
		ws_relay_stats(r)->dropped_messages[WS_DROP_BAD_MESSAGE], 2);
	assert_int_equal(ws_relay_stats(r)->queued_messages, 0);
	/* an empty payload is a valid request with no spans */
	assert_int_equal(ws_relay_push(r, NULL, 0, (void *)3, 0), 0);
	assert_int_equal(ws_relay_stats(r)->spans_in, 0);
	ws_relay_free(r);
	free(p);
}

/* ---- the wire helpers ---- */

static void span_count_on_the_wire(void **state)
{
	size_t len, n, k;
	uint8_t *p = payload(7, "x", &len), *two;

	n = 0;
	assert_int_equal(ws_pb_count(p, len, WS_OTLP_SPANS_PATH,
				     WS_OTLP_SPANS_DEPTH, &n),
			 0);
	assert_int_equal(n, 7);
	two = malloc(2 * len);
	memcpy(two, p, len);
	memcpy(two + len, p, len);
	n = 0;
	assert_int_equal(ws_pb_count(two, 2 * len, WS_OTLP_SPANS_PATH,
				     WS_OTLP_SPANS_DEPTH, &n),
			 0);
	assert_int_equal(n, 14);
	assert_int_equal(ws_otlp_pb_decode_count(two, 2 * len, &k), 0);
	assert_int_equal(k, 14);
	n = 0;
	assert_int_equal(ws_pb_count(p, len - 3, WS_OTLP_SPANS_PATH,
				     WS_OTLP_SPANS_DEPTH, &n),
			 -EBADMSG);
	free(two);
	free(p);
}

static void gzip_round_trip(void **state)
{
	size_t len, zlen;
	uint8_t *p = payload(5, "gz", &len), *z, *back;
	z_stream s;

	assert_int_equal(ws_gzip(p, len, &z, &zlen), 0);
	assert_true(z[0] == 0x1f && z[1] == 0x8b); /* gzip magic */
	back = malloc(len + 16);
	memset(&s, 0, sizeof(s));
	assert_int_equal(inflateInit2(&s, 15 + 16), Z_OK);
	s.next_in = z;
	s.avail_in = (uInt)zlen;
	s.next_out = back;
	s.avail_out = (uInt)(len + 16);
	assert_int_equal(inflate(&s, Z_FINISH), Z_STREAM_END);
	assert_int_equal(s.total_out, len);
	assert_memory_equal(back, p, len);
	inflateEnd(&s);
	free(back);
	free(z);
	free(p);
}

static void partial_success_parse(void **state)
{
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse resp =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess ps =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
	uint8_t buf[128];
	uint64_t rej = 99;
	char msg[64];
	size_t n;

	assert_int_equal(
		ws_otlp_partial_success(NULL, 0, &rej, msg, sizeof(msg)), 0);
	assert_true(rej == 0);
	ps.rejected_spans = 12;
	ps.error_message = "too old";
	resp.partial_success = &ps;
	n = protobuf_c_message_pack(&resp.base, buf);
	assert_int_equal(
		ws_otlp_partial_success(buf, n, &rej, msg, sizeof(msg)), 0);
	assert_true(rej == 12);
	assert_string_equal(msg, "too old");
	assert_int_equal(ws_otlp_partial_success((const uint8_t *)"{}", 2, &rej,
						 msg, sizeof(msg)),
			 -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(verdicts),
		cmocka_unit_test(retry_after_values),
		cmocka_unit_test(backoff_doubles_with_jitter),
		cmocka_unit_test(batches_concatenate),
		cmocka_unit_test(batch_bounds_split),
		cmocka_unit_test(retry_rules),
		cmocka_unit_test(retries_exhausted),
		cmocka_unit_test(partial_success_counted),
		cmocka_unit_test(queue_bound_drops_oldest),
		cmocka_unit_test(bad_payloads),
		cmocka_unit_test(span_count_on_the_wire),
		cmocka_unit_test(gzip_round_trip),
		cmocka_unit_test(partial_success_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
