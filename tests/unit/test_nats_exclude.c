/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NATS span builder's subject filter: messages on excluded subjects (the
 * agent's own telemetry, `otel.traces.>`) derive no spans on any connection,
 * client or server side, and are counted; other subjects are untouched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nats_spans.h"
#include "subject_filter.h"
#include "wirespan/abi.h"

struct out {
	struct ws_span *s[16];
	int n;
};

static void collect(void *ctx, struct ws_span *s)
{
	struct out *o = ctx;

	assert_true(o->n < 16);
	o->s[o->n++] = s;
}

static struct ws_nats_conn *conn(struct ws_nats_spans *b, uint32_t tgid,
				 uint8_t role)
{
	struct ws_nats_conn_info in = {.tgid = tgid, .fd = 5, .role = role};

	strcpy(in.laddr, "127.0.0.1");
	strcpy(in.raddr, "127.0.0.1");
	in.lport = role == WS_ROLE_SERVER ? 4222 : 5000;
	in.rport = role == WS_ROLE_SERVER ? 5000 : 4222;
	return ws_nats_conn_new(b, &in);
}

static void feed(struct ws_nats_conn *c, uint8_t dir, const char *s,
		 uint64_t ts)
{
	assert_int_equal(
		ws_nats_conn_feed(c, dir, (const uint8_t *)s, strlen(s), 1, ts),
		0);
}

static void run(bool with_filter, struct out *o, uint64_t *excluded)
{
	struct ws_subject_filter *f = ws_subject_filter_new();
	struct ws_nats_spans_cfg cfg;
	struct ws_nats_spans *b;
	struct ws_nats_conn *pub, *sub, *srv;

	assert_int_equal(ws_subject_filter_add(f, "otel.traces.>"), 0);
	ws_nats_spans_cfg_init(&cfg);
	cfg.exclude = with_filter ? f : NULL;
	b = ws_nats_spans_new(&cfg, collect, o);
	assert_non_null(b);
	/* a publisher of telemetry and of an order */
	pub = conn(b, 10, WS_ROLE_CLIENT);
	feed(pub, WS_DIR_EGRESS,
	     "CONNECT {}\r\nPUB otel.traces.nats.n1 2\r\nhi\r\n"
	     "HPUB otel.traces.http.n1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
	     "PUB orders.new 2\r\nhi\r\n",
	     100);
	/* a subscriber of telemetry (`wirespan tail`, a relay) */
	sub = conn(b, 11, WS_ROLE_CLIENT);
	feed(sub, WS_DIR_EGRESS, "CONNECT {}\r\nSUB otel.traces.> 1\r\n", 100);
	feed(sub, WS_DIR_INGRESS, "MSG otel.traces.nats.n1 1 2\r\nhi\r\n", 200);
	/* nats-server on this host: reads the PUB, writes the MSG */
	srv = conn(b, 12, WS_ROLE_SERVER);
	feed(srv, WS_DIR_INGRESS,
	     "CONNECT {}\r\nPUB otel.traces.nats.n1 2\r\nhi\r\n", 150);
	feed(srv, WS_DIR_EGRESS, "MSG otel.traces.nats.n1 1 2\r\nhi\r\n", 160);
	ws_nats_conn_close(pub, 300);
	ws_nats_conn_close(sub, 300);
	ws_nats_conn_close(srv, 300);
	*excluded = ws_nats_spans_stats(b)->excluded;
	ws_nats_spans_free(b, 400);
	if (with_filter)
		assert_int_equal(ws_subject_filter_matched(f), *excluded);
	ws_subject_filter_free(f);
}

static int count_dest(struct out *o, const char *prefix)
{
	int i, n = 0;

	for (i = 0; i < o->n; i++) {
		const struct ws_attr *a =
			ws_attrs_get(&o->s[i]->a, "messaging.destination.name");

		n += a && !strncmp(a->s, prefix, strlen(prefix));
	}
	return n;
}

static void out_free(struct out *o)
{
	int i;

	for (i = 0; i < o->n; i++)
		ws_span_free(o->s[i]);
}

static void telemetry_excluded(void **state)
{
	struct out o = {0};
	uint64_t excluded;

	run(true, &o, &excluded);
	assert_int_equal(count_dest(&o, "otel.traces."), 0);
	assert_int_equal(count_dest(&o, "orders.new"), 1);
	/* 2 client PUBs, 1 client MSG, the server's PUB read and MSG write */
	assert_int_equal(excluded, 5);
	out_free(&o);
}

/* The same bytes without the filter: the telemetry does give spans, so the
 * test above shows the filter's effect. */
static void without_filter(void **state)
{
	struct out o = {0};
	uint64_t excluded;

	run(false, &o, &excluded);
	assert_true(count_dest(&o, "otel.traces.") >= 4);
	assert_int_equal(count_dest(&o, "orders.new"), 1);
	assert_int_equal(excluded, 0);
	out_free(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(telemetry_excluded),
		cmocka_unit_test(without_filter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
