/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP span builder, driven with the bytes both ends of real exchanges
 * write, exactly as the agent drives it: whole, one byte at a time and in
 * random splits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_spans.h"
#include "otlp_json.h"
#include "wirespan/abi.h"

#define SPAN_OUT_MAX 256

#include "span_out.h"
#define EG WS_DIR_EGRESS
#define IN WS_DIR_INGRESS

struct fixture {
	struct ws_http_spans_cfg cfg;
	struct ws_http_spans *b;
	struct out out;
	struct ws_resource *res;
};

static struct fixture fx;

static void start(struct ws_http_spans_cfg *cfg)
{
	fx.b = ws_http_spans_new(cfg, collect, &fx.out);
	assert_non_null(fx.b);
}

static int setup(void **state)
{
	memset(&fx, 0, sizeof(fx));
	ws_http_spans_cfg_init(&fx.cfg);
	fx.res = ws_resource_new(1);
	start(&fx.cfg);
	*state = &fx;
	return 0;
}

static int teardown(void **state)
{
	ws_http_spans_free(fx.b, 0);
	out_free(&fx.out);
	ws_resource_put(fx.res);
	return 0;
}

/* Restart the builder with fx.cfg as changed by the test. */
static void restart(void)
{
	ws_http_spans_free(fx.b, 0);
	out_free(&fx.out);
	start(&fx.cfg);
}

/* Made at open_ns by thread tid. */
static struct ws_http_conn *conn_by(uint32_t tgid, uint8_t role, uint16_t port,
				    uint64_t open_ns, uint32_t tid)
{
	struct ws_http_conn_info in = {.tgid = tgid, .fd = 5, .role = role};

	snprintf(in.laddr, sizeof(in.laddr), "127.0.0.1");
	snprintf(in.raddr, sizeof(in.raddr), "127.0.0.2");
	in.lport = role == WS_ROLE_SERVER ? 8080 : port;
	in.rport = role == WS_ROLE_SERVER ? port : 9000;
	in.open_ns = open_ns;
	in.open_tid = tid;
	in.resource = fx.res;
	return ws_http_conn_new(fx.b, &in);
}

static struct ws_http_conn *conn_at(uint32_t tgid, uint8_t role, uint16_t port,
				    uint64_t open_ns)
{
	return conn_by(tgid, role, port, open_ns, 0);
}

static struct ws_http_conn *conn(uint32_t tgid, uint8_t role, uint16_t port)
{
	return conn_at(tgid, role, port, 0);
}

static void feed(struct ws_http_conn *c, uint8_t dir, const char *s,
		 uint32_t tid, uint64_t ts)
{
	assert_int_equal(ws_http_conn_feed(c, dir, (const uint8_t *)s,
					   strlen(s), tid, ts),
			 0);
}

/* Byte by byte, byte i at ts + i. */
static void feed_bytes(struct ws_http_conn *c, uint8_t dir, const char *s,
		       uint32_t tid, uint64_t ts)
{
	size_t i, n = strlen(s);

	for (i = 0; i < n; i++)
		assert_int_equal(ws_http_conn_feed(c, dir,
						   (const uint8_t *)s + i, 1,
						   tid, ts + i),
				 0);
}

/* Random pieces; each piece at the ts of its first byte (ts + offset). */
static void feed_random(struct ws_http_conn *c, uint8_t dir, const char *s,
			uint32_t tid, uint64_t ts, unsigned *seed)
{
	size_t i = 0, n = strlen(s);

	while (i < n) {
		size_t k = 1 + (size_t)(rand_r(seed) % 17);

		if (k > n - i)
			k = n - i;
		assert_int_equal(ws_http_conn_feed(c, dir,
						   (const uint8_t *)s + i, k,
						   tid, ts + i),
				 0);
		i += k;
	}
}

static const char REQ_GET[] = "GET /users/12345/orders?limit=5&api_key=s3cr3t "
			      "HTTP/1.1\r\n"
			      "Host: shop.example:8443\r\n"
			      "User-Agent: curl/7.88\r\n"
			      "X-Forwarded-For: 203.0.113.9, 10.0.0.1\r\n"
			      "\r\n";
static const char RESP_OK[] = "HTTP/1.1 200 OK\r\n"
			      "Content-Length: 5\r\n"
			      "\r\n"
			      "hello";

/* ---- server and client spans ------------------------------------------- */

static void check_server_get(const struct ws_span *s, uint64_t start,
			     uint64_t end)
{
	assert_string_equal(s->name, "GET /users/{id}/orders");
	assert_int_equal(s->kind, WS_SPAN_KIND_SERVER);
	assert_int_equal(s->domain, WS_DOMAIN_HTTP);
	assert_int_equal(s->start_ns, start);
	assert_int_equal(s->end_ns, end);
	assert_int_equal(s->status, WS_STATUS_UNSET);
	assert_string_equal(attr_s(s, "http.request.method"), "GET");
	assert_string_equal(attr_s(s, "http.route"), "/users/{id}/orders");
	assert_string_equal(attr_s(s, "url.path"), "/users/12345/orders");
	assert_string_equal(attr_s(s, "url.query"), "limit=5&api_key=REDACTED");
	assert_string_equal(attr_s(s, "url.scheme"), "http");
	assert_int_equal(attr_i(s, "http.response.status_code"), 200);
	assert_int_equal(attr_i(s, "http.response.body.size"), 5);
	assert_string_equal(attr_s(s, "network.protocol.version"), "1.1");
	assert_string_equal(attr_s(s, "server.address"), "shop.example");
	assert_int_equal(attr_i(s, "server.port"), 8443);
	assert_string_equal(attr_s(s, "client.address"), "203.0.113.9");
	assert_int_equal(attr_i(s, "client.port"), -1);
	assert_string_equal(attr_s(s, "network.peer.address"), "127.0.0.2");
	assert_int_equal(attr_i(s, "network.peer.port"), 40000);
	assert_string_equal(attr_s(s, "user_agent.original"), "curl/7.88");
	assert_null(attr_s(s, "url.full"));
	assert_false(s->has_parent);
	assert_ptr_equal(s->resource, fx.res);
}

static void server_span(void **state)
{
	struct ws_http_conn *c = conn(10, WS_ROLE_SERVER, 40000);

	feed(c, IN, REQ_GET, 11, 1000);
	assert_int_equal(fx.out.n, 0);
	feed(c, EG, RESP_OK, 11, 2000);
	assert_int_equal(fx.out.n, 1);
	check_server_get(fx.out.s[0], 1000, 2000);
	ws_http_conn_close(c, 3000);
	assert_int_equal(fx.out.n, 1);
	assert_int_equal(ws_http_spans_stats(fx.b)->spans[WS_SPAN_KIND_SERVER],
			 1);
	assert_int_equal(ws_http_spans_stats(fx.b)->end_response, 1);
}

/* Byte at a time and random splits: same span, with the times of the first
 * request byte and the last response byte. */
static void server_span_any_split(void **state)
{
	unsigned seed = 7, round;
	struct ws_http_conn *c = conn(10, WS_ROLE_SERVER, 40000);

	feed_bytes(c, IN, REQ_GET, 11, 1000);
	feed_bytes(c, EG, RESP_OK, 11, 5000);
	assert_int_equal(fx.out.n, 1);
	check_server_get(fx.out.s[0], 1000, 5000 + strlen(RESP_OK) - 1);
	ws_http_conn_close(c, 9000);
	for (round = 0; round < 50; round++) {
		uint64_t base = 100000 * (round + 1);

		out_free(&fx.out);
		c = conn(10, WS_ROLE_SERVER, 40000);
		feed_random(c, IN, REQ_GET, 11, base, &seed);
		feed_random(c, EG, RESP_OK, 11, base + 50000, &seed);
		ws_http_conn_close(c, base + 90000);
		assert_int_equal(fx.out.n, 1);
		assert_true(fx.out.s[0]->end_ns > base + 50000);
		assert_true(fx.out.s[0]->end_ns <
			    base + 50000 + strlen(RESP_OK));
		assert_int_equal(fx.out.s[0]->start_ns, base);
		assert_string_equal(fx.out.s[0]->name,
				    "GET /users/{id}/orders");
	}
}

static void client_span(void **state)
{
	struct ws_http_conn *c = conn(20, WS_ROLE_CLIENT, 50000);
	struct ws_span *s;

	feed(c, EG,
	     "POST /v1/items?q=shoes HTTP/1.1\r\nHost: api.internal\r\n"
	     "Content-Length: 3\r\n\r\nabc",
	     21, 100);
	feed(c, IN, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 21,
	     300);
	assert_int_equal(fx.out.n, 1);
	s = fx.out.s[0];
	assert_string_equal(s->name, "POST");
	assert_int_equal(s->kind, WS_SPAN_KIND_CLIENT);
	assert_int_equal(s->start_ns, 100);
	assert_int_equal(s->end_ns, 300);
	assert_string_equal(attr_s(s, "url.full"),
			    "http://api.internal/v1/items?q=shoes");
	assert_string_equal(attr_s(s, "server.address"), "api.internal");
	assert_int_equal(attr_i(s, "server.port"), 9000);
	assert_int_equal(attr_i(s, "http.request.body.size"), 3);
	/* 4xx: an error on a client span */
	assert_int_equal(s->status, WS_STATUS_ERROR);
	assert_string_equal(attr_s(s, "error.type"), "404");
	assert_null(attr_s(s, "http.route"));
	assert_null(attr_s(s, "client.address"));
	ws_http_conn_close(c, 400);
}

static void status_rules(void **state)
{
	struct ws_http_conn *sv = conn(10, WS_ROLE_SERVER, 40000);

	feed(sv, IN, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 1, 1);
	feed(sv, EG, "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n", 1, 2);
	feed(sv, IN, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n", 1, 3);
	feed(sv, EG, "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", 1, 4);
	assert_int_equal(fx.out.n, 2);
	/* 4xx is the caller's fault: not an error on a server span */
	assert_int_equal(fx.out.s[0]->status, WS_STATUS_UNSET);
	assert_null(attr_s(fx.out.s[0], "error.type"));
	assert_int_equal(fx.out.s[1]->status, WS_STATUS_ERROR);
	assert_string_equal(attr_s(fx.out.s[1], "error.type"), "503");
	ws_http_conn_close(sv, 5);
}

/* ---- framing ------------------------------------------------------------ */

static void pipelining_keepalive(void **state)
{
	struct ws_http_conn *c = conn(10, WS_ROLE_SERVER, 40000);
	int i;

	feed(c, IN,
	     "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	     "HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"
	     "DELETE /c/42 HTTP/1.1\r\nHost: x\r\n\r\n",
	     1, 10);
	feed(c, EG,
	     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	     /* HEAD: a Content-Length, no body */
	     "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
	     "HTTP/1.1 204 No Content\r\n\r\n",
	     1, 20);
	assert_int_equal(fx.out.n, 3);
	assert_string_equal(fx.out.s[0]->name, "GET /a");
	assert_string_equal(fx.out.s[1]->name, "HEAD /b");
	assert_string_equal(fx.out.s[2]->name, "DELETE /c/{id}");
	assert_int_equal(attr_i(fx.out.s[2], "http.response.status_code"), 204);
	/* keep-alive: the next exchange on the same connection */
	feed(c, IN, "GET /d HTTP/1.1\r\nHost: x\r\n\r\n", 1, 30);
	feed(c, EG, "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", 1,
	     40);
	assert_int_equal(fx.out.n, 4);
	assert_int_equal(attr_i(fx.out.s[3], "http.response.status_code"), 304);
	for (i = 0; i < 4; i++) {
		assert_int_equal(fx.out.s[i]->start_ns, i < 3 ? 10 : 30);
		/* what the relay joins client and server spans on */
		assert_int_equal(attr_i(fx.out.s[i], "wirespan.http.conn.seq"),
				 i);
		assert_string_equal(
			attr_s(fx.out.s[i], "network.local.address"),
			"127.0.0.1");
		assert_int_equal(attr_i(fx.out.s[i], "network.local.port"),
				 8080);
		assert_int_equal(attr_i(fx.out.s[i], "network.peer.port"),
				 40000);
	}
	ws_http_conn_close(c, 50);
	assert_int_equal(fx.out.n, 4);
	assert_int_equal(ws_http_spans_stats(fx.b)->end_closed, 0);
}

static void chunked_and_interim(void **state)
{
	struct ws_http_conn *c = conn(10, WS_ROLE_CLIENT, 40000);

	feed(c, EG,
	     "PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
	     "Content-Length: 4\r\n\r\n",
	     1, 10);
	feed(c, IN, "HTTP/1.1 100 Continue\r\n\r\n", 1, 20);
	feed(c, EG, "data", 1, 30);
	assert_int_equal(fx.out.n, 0);
	feed(c, IN,
	     "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
	     "3\r\nabc\r\n",
	     1, 40);
	assert_int_equal(fx.out.n, 0);
	feed(c, IN, "0\r\n\r\n", 1, 50);
	assert_int_equal(fx.out.n, 1);
	assert_int_equal(attr_i(fx.out.s[0], "http.response.status_code"), 201);
	assert_int_equal(attr_i(fx.out.s[0], "http.response.body.size"), 3);
	assert_int_equal(fx.out.s[0]->end_ns, 50);
	assert_int_equal(ws_http_spans_stats(fx.b)->interim, 1);
	ws_http_conn_close(c, 60);
}

static void response_until_close(void **state)
{
	struct ws_http_conn *c = conn(10, WS_ROLE_CLIENT, 40000);

	feed(c, EG, "GET /old HTTP/1.0\r\n\r\n", 1, 10);
	feed(c, IN, "HTTP/1.0 200 OK\r\n\r\nsome", 1, 20);
	feed(c, IN, " more", 1, 30);
	assert_int_equal(fx.out.n, 0);
	ws_http_conn_close(c, 99);
	assert_int_equal(fx.out.n, 1);
	assert_int_equal(fx.out.s[0]->end_ns, 30); /* the last byte read */
	assert_int_equal(attr_i(fx.out.s[0], "http.response.body.size"), 9);
	assert_string_equal(attr_s(fx.out.s[0], "network.protocol.version"),
			    "1.0");
	assert_int_equal(fx.out.s[0]->status, WS_STATUS_UNSET);
}

static void upgrade_stops(void **state)
{
	struct ws_http_conn *c = conn(10, WS_ROLE_SERVER, 40000);

	feed(c, IN,
	     "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
	     "Connection: Upgrade\r\n\r\n",
	     1, 10);
	feed(c, EG,
	     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
	     1, 20);
	assert_int_equal(fx.out.n, 1);
	assert_int_equal(attr_i(fx.out.s[0], "http.response.status_code"), 101);
	assert_true(attr_b(fx.out.s[0], "wirespan.http.upgraded"));
	/* websocket frames, one of which looks like a request */
	feed(c, IN, "\x81\x05hello GET / HTTP/1.1\r\n\r\n", 1, 30);
	feed(c, EG, "\x81\x02hi HTTP/1.1 200 OK\r\n\r\n", 1, 40);
	ws_http_conn_close(c, 50);
	assert_int_equal(fx.out.n, 1);
	assert_int_equal(ws_http_spans_stats(fx.b)->upgrades, 1);
	assert_int_equal(ws_http_spans_stats(fx.b)->stops[WS_HTTP_STOP_TUNNEL],
			 2);
	assert_int_equal(ws_http_spans_stats(fx.b)->end_closed, 0);
}

static void connect_tunnel(void **state)
{
	struct ws_http_conn *c = conn(10, WS_ROLE_CLIENT, 40000);

	feed(c, EG, "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db\r\n\r\n", 1,
	     10);
	feed(c, IN, "HTTP/1.1 200 Connection established\r\n\r\n", 1, 20);
	feed(c, EG, "\x16\x03\x01 binary", 1, 30);
	ws_http_conn_close(c, 40);
	assert_int_equal(fx.out.n, 1);
	assert_string_equal(fx.out.s[0]->name, "CONNECT");
	assert_int_equal(ws_http_spans_stats(fx.b)->upgrades, 1);
}

static void gaps_still_end(void **state)
{
	struct ws_http_conn *c = conn(10, WS_ROLE_CLIENT, 40000);
	const struct ws_http_spans_stats *st;

	/* a gap in the response body: the message still ends, flagged */
	feed(c, EG, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n", 1, 10);
	feed(c, IN, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nab", 1, 20);
	assert_int_equal(ws_http_conn_gap(c, IN, 990), 0);
	feed(c, IN, "12345678", 1, 30);
	assert_int_equal(fx.out.n, 1);
	assert_true(attr_b(fx.out.s[0], "wirespan.http.truncated"));
	assert_int_equal(fx.out.s[0]->end_ns, 30);
	/* a gap eats a request head: its response has nothing to pair */
	feed(c, EG, "GET /lo", 1, 40);
	assert_int_equal(ws_http_conn_gap(c, EG, 30), 0);
	feed(c, IN, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 50);
	/* and the next exchange is whole again */
	feed(c, EG, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n", 1, 60);
	feed(c, IN, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 70);
	ws_http_conn_close(c, 80);
	st = ws_http_spans_stats(fx.b);
	assert_int_equal(fx.out.n, 2);
	assert_int_equal(fx.out.s[1]->start_ns, 60);
	assert_true(st->gap_messages >= 1);
	assert_int_equal(st->orphan_responses, 1);
	assert_int_equal(st->gap_bytes, 1020);
}

static void close_and_timeout(void **state)
{
	struct ws_http_conn *a = conn(10, WS_ROLE_SERVER, 40000),
			    *b = conn(10, WS_ROLE_SERVER, 40001);

	fx.cfg.request_timeout_ns = 1000;
	restart();
	a = conn(10, WS_ROLE_SERVER, 40000);
	b = conn(10, WS_ROLE_SERVER, 40001);
	feed(a, IN, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", 1, 10);
	feed(b, IN, "GET /gone HTTP/1.1\r\nHost: x\r\n\r\n", 2, 20);
	ws_http_conn_close(b, 30);
	assert_int_equal(fx.out.n, 1);
	assert_string_equal(attr_s(fx.out.s[0], "error.type"),
			    "connection_closed");
	assert_int_equal(fx.out.s[0]->end_ns, 30);
	ws_http_spans_tick(fx.b, 500);
	assert_int_equal(fx.out.n, 1);
	ws_http_spans_tick(fx.b, 1500);
	assert_int_equal(fx.out.n, 2);
	assert_string_equal(attr_s(fx.out.s[1], "error.type"), "timeout");
	/* its late response pairs with it (and ends nothing); the next
	 * exchange pairs right */
	feed(a, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 1600);
	feed(a, IN, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n", 1, 1700);
	feed(a, EG, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", 1, 1800);
	assert_int_equal(fx.out.n, 3);
	assert_string_equal(fx.out.s[2]->name, "GET /next");
	assert_int_equal(attr_i(fx.out.s[2], "http.response.status_code"), 500);
	ws_http_conn_close(a, 1900);
	assert_int_equal(ws_http_spans_stats(fx.b)->end_timeout, 1);
	assert_int_equal(ws_http_spans_stats(fx.b)->end_closed, 1);
}

static void bounds_counted(void **state)
{
	struct ws_http_conn *c, *d;

	fx.cfg.max_pending_conn = 2;
	fx.cfg.max_pending = 3;
	restart();
	c = conn(10, WS_ROLE_SERVER, 40000);
	feed(c, IN,
	     "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"
	     "GET /3 HTTP/1.1\r\n\r\n",
	     1, 10);
	assert_int_equal(ws_http_spans_stats(fx.b)->pending_dropped, 1);
	d = conn(10, WS_ROLE_SERVER, 40001);
	feed(d, IN, "GET /4 HTTP/1.1\r\n\r\nGET /5 HTTP/1.1\r\n\r\n", 2, 20);
	/* the builder holds 3: /1 made room for /5 */
	assert_int_equal(ws_http_spans_stats(fx.b)->pending_evicted, 1);
	assert_int_equal(fx.out.n, 1);
	assert_string_equal(fx.out.s[0]->name, "GET /{id}");
	assert_string_equal(attr_s(fx.out.s[0], "error.type"),
			    "wirespan_evicted");
	ws_http_conn_close(c, 30);
	ws_http_conn_close(d, 30);
	assert_int_equal(fx.out.n, 4);
}

static void garbage_then_request(void **state)
{
	struct ws_http_conn *c = conn(10, WS_ROLE_SERVER, 40000);
	const struct ws_http_spans_stats *st;

	feed(c, IN, "\x01\x02garbage\r\nmore garbage\r\n", 1, 10);
	feed(c, IN, "GET /ok HTTP/1.1\r\nContent-Length: zz\r\n\r\n", 1, 20);
	feed(c, IN, "GET /fine HTTP/1.1\r\nHost: x\r\n\r\n", 1, 30);
	feed(c, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 40);
	ws_http_conn_close(c, 50);
	st = ws_http_spans_stats(fx.b);
	assert_int_equal(fx.out.n, 1);
	assert_string_equal(fx.out.s[0]->name, "GET /fine");
	assert_true(st->parse_errors[WS_HTTP_ERR_START_LINE] >= 1);
	assert_int_equal(st->parse_errors[WS_HTTP_ERR_CONTENT_LENGTH], 1);
}

static void unknown_role(void **state)
{
	struct ws_http_conn *c = conn(10, WS_ROLE_UNKNOWN, 40000);

	/* followed from the middle: it wrote a response first */
	feed(c, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 10);
	feed(c, IN, "GET /x HTTP/1.1\r\n\r\n", 1, 20);
	feed(c, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 30);
	ws_http_conn_close(c, 40);
	assert_int_equal(fx.out.n, 1);
	assert_int_equal(fx.out.s[0]->kind, WS_SPAN_KIND_SERVER);
	assert_int_equal(ws_http_spans_stats(fx.b)->orphan_responses, 1);
}

/* ---- routes and redaction ----------------------------------------------- */

static void route_templates(void **state)
{
	static const struct {
		const char *path, *route;
	} cases[] = {
		{"/", "/"},
		{"", "/"},
		{"/health", "/health"},
		{"/users/42", "/users/{id}"},
		{"/users/42/", "/users/{id}/"},
		{"/u/3f2504e0-4f89-11d3-9a0c-0305e82c3301/x", "/u/{id}/x"},
		{"/obj/5f1d7a3b9c2e4a11", "/obj/{id}"},
		{"/obj/deadbeef", "/obj/deadbeef"}, /* a word: no digit */
		{"/k/AbCdEfGh12345678xyz", "/k/{id}"},
		{"/docs/getting-started", "/docs/getting-started"},
		{"/a/this-is-a-very-long-slug-of-more-than-32-chars",
		 "/a/{id}"},
		{"/mail/bob@example.com", "/mail/{id}"},
		{"//double//slash", "/double/slash"},
		{"/1/2/3/4/5/6/7/8/9/10/11/12/13/14", "/{id}/{id}/{id}/{id}/"
						      "{id}/{id}/{id}/{id}/"
						      "{id}/{id}/{id}/{id}/*"},
		{"*", "*"},
	};
	char out[WS_HTTP_MAX_ROUTE + 8];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_false(ws_http_route(&fx.cfg, cases[i].path,
					   strlen(cases[i].path), out,
					   sizeof(out)));
		if (strcmp(out, cases[i].route))
			fail_msg("%s -> %s, expected %s", cases[i].path, out,
				 cases[i].route);
	}
}

static void route_patterns(void **state)
{
	char out[WS_HTTP_MAX_ROUTE + 8], longp[4000];
	struct ws_http_conn *c;
	size_t i;

	fx.cfg.routes[fx.cfg.n_routes++] = "/api/v1/users/{user}/orders";
	fx.cfg.routes[fx.cfg.n_routes++] = "/static/*";
	fx.cfg.routes[fx.cfg.n_routes++] = "/search/{term}";
	assert_true(ws_http_route(&fx.cfg, "/api/v1/users/bob/orders", 24, out,
				  sizeof(out)));
	assert_string_equal(out, "/api/v1/users/{user}/orders");
	assert_true(ws_http_route(&fx.cfg, "/static/css/site.css", 20, out,
				  sizeof(out)));
	assert_string_equal(out, "/static/*");
	assert_false(ws_http_route(&fx.cfg, "/api/v1/users/bob", 17, out,
				   sizeof(out)));
	assert_false(ws_http_route(&fx.cfg, "/search", 7, out, sizeof(out)));
	/* a huge path: bounded */
	for (i = 0; i + 6 < sizeof(longp); i += 6)
		memcpy(longp + i, "/abcde", 6);
	longp[i] = '\0';
	assert_false(ws_http_route(&fx.cfg, longp, i, out, sizeof(out)));
	assert_true(strlen(out) <= WS_HTTP_MAX_ROUTE);
	restart();
	c = conn(30, WS_ROLE_CLIENT, 40000);
	feed(c, EG, "GET /search/shoes HTTP/1.1\r\nHost: s\r\n\r\n", 1, 10);
	feed(c, IN, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 20);
	ws_http_conn_close(c, 30);
	assert_string_equal(fx.out.s[0]->name, "GET /search/{term}");
	assert_string_equal(attr_s(fx.out.s[0], "url.template"),
			    "/search/{term}");
}

static void query_redaction(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"a=1&b=2", "a=1&b=2"},
		{"token=abc", "token=REDACTED"},
		{"X-Amz-Signature=ff&X-Amz-Credential=k&page=2",
		 "X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&page=2"},
		{"password=hunter2&user=bob", "password=REDACTED&user=bob"},
		{"id=eyJhbGciOiJIUzI1NiJ9.e30.sig", "id=REDACTED"},
		{"flag&apikey=", "flag&apikey=REDACTED"},
		{"code=123&state=x", "code=REDACTED&state=x"},
	};
	char out[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ws_http_redact_query(cases[i].in, strlen(cases[i].in), out,
				     sizeof(out));
		assert_string_equal(out, cases[i].out);
	}
	/* cut at a parameter when the output is too small */
	ws_http_redact_query("aaaa=1&token=zzzzzzzzzzzz", 25, out, 16);
	assert_string_equal(out, "aaaa=1");
}

/* ---- trace context and gateway hops ------------------------------------ */

#define TP_TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP_SPAN "00f067aa0ba902b7"
#define TP "00-" TP_TRACE "-" TP_SPAN "-01"

static void traceparent_inbound(void **state)
{
	struct ws_http_conn *c = conn(10, WS_ROLE_SERVER, 40000);
	uint8_t trace[16], span[8];
	char hex[33];

	feed(c, IN,
	     "GET / HTTP/1.1\r\ntraceparent: " TP "\r\ntracestate: k=v\r\n\r\n",
	     1, 10);
	feed(c, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 20);
	assert_int_equal(fx.out.n, 1);
	ws_id_hex(fx.out.s[0]->trace_id, 16, hex);
	assert_string_equal(hex, TP_TRACE);
	ws_id_hex(fx.out.s[0]->parent_span_id, 8, hex);
	assert_string_equal(hex, TP_SPAN);
	assert_int_equal(fx.out.s[0]->flags, 0x301);
	assert_string_equal(fx.out.s[0]->trace_state, "k=v");
	feed(c, IN, "GET / HTTP/1.1\r\ntraceparent: 00-zz\r\n\r\n", 1, 30);
	assert_int_equal(ws_http_spans_stats(fx.b)->bad_traceparent, 1);
	ws_http_conn_close(c, 40);
	(void)trace;
	(void)span;
}

/* The gateway process 50 on thread tid answers `in` and calls `up`. */
static struct ws_span *exchange_spans(struct ws_http_conn *up, const char *req,
				      uint32_t tid, uint64_t ts)
{
	feed(up, EG, req, tid, ts);
	feed(up, IN, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", tid,
	     ts + 5);
	return fx.out.s[fx.out.n - 1];
}

static void assert_child(const struct ws_span *child,
			 const struct ws_span *parent, const char *evidence)
{
	assert_true(child->has_parent);
	assert_memory_equal(child->trace_id, parent->trace_id, 16);
	assert_memory_equal(child->parent_span_id, parent->span_id, 8);
	assert_string_equal(attr_s(child, "wirespan.link.evidence"), evidence);
}

static void hop_traceparent_forwarded(void **state)
{
	struct ws_http_conn *a = conn(50, WS_ROLE_SERVER, 40000),
			    *b = conn(50, WS_ROLE_SERVER, 40001),
			    *up = conn(50, WS_ROLE_CLIENT, 41000);
	struct ws_span *client;
	char hex[33];

	/* two inbound requests on one thread; the second carries TP */
	feed(a, IN, "GET /x HTTP/1.1\r\n\r\n", 1, 10);
	feed(b, IN, "GET /x HTTP/1.1\r\ntraceparent: " TP "\r\n\r\n", 1, 20);
	/* the gateway forwards TP unchanged, while serving a first */
	client = exchange_spans(
		up, "GET /x HTTP/1.1\r\ntraceparent: " TP "\r\n\r\n", 1, 30);
	feed(b, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 40);
	feed(a, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 50);
	assert_int_equal(fx.out.n, 3);
	/* the child of the gateway's server span, not its sibling */
	assert_child(client, fx.out.s[1], "traceparent");
	ws_id_hex(client->trace_id, 16, hex);
	assert_string_equal(hex, TP_TRACE);
	/* not the sibling: its parent is not the span the traceparent names */
	ws_id_hex(client->parent_span_id, 8, hex);
	assert_string_not_equal(hex, TP_SPAN);
	assert_int_equal(client->n_links, 0);
	assert_int_equal(ws_http_spans_stats(fx.b)->link_traceparent, 1);
	ws_http_conn_close(a, 60);
	ws_http_conn_close(b, 60);
	ws_http_conn_close(up, 60);
}

static void hop_same_thread(void **state)
{
	struct ws_http_conn *a = conn(50, WS_ROLE_SERVER, 40000),
			    *b = conn(50, WS_ROLE_SERVER, 40001),
			    *up1 = conn(50, WS_ROLE_CLIENT, 41000),
			    *up2 = conn(50, WS_ROLE_CLIENT, 41001);
	struct ws_span *c1, *c2;

	/* thread-per-request: thread 7 serves a, thread 8 serves b */
	feed(a, IN, "GET /x HTTP/1.1\r\n\r\n", 7, 10);
	feed(b, IN, "GET /x HTTP/1.1\r\n\r\n", 8, 20);
	c1 = exchange_spans(up1, "GET /x HTTP/1.1\r\n\r\n", 7, 30);
	c2 = exchange_spans(up2, "GET /x HTTP/1.1\r\n\r\n", 8, 40);
	feed(a, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 7, 50);
	feed(b, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 8, 60);
	assert_int_equal(fx.out.n, 4);
	assert_child(c1, fx.out.s[2], "thread");
	assert_child(c2, fx.out.s[3], "thread");
	ws_http_conn_close(a, 70);
	ws_http_conn_close(b, 70);
	ws_http_conn_close(up1, 70);
	ws_http_conn_close(up2, 70);
}

static void hop_event_loop(void **state)
{
	struct ws_http_conn *a = conn(50, WS_ROLE_SERVER, 40000),
			    *b = conn(50, WS_ROLE_SERVER, 40001),
			    *d = conn(50, WS_ROLE_SERVER, 40002), *up1, *up2,
			    *up3;
	struct ws_span *c1, *c2, *c3;

	/* one thread, three requests in flight; the gateway strips /api */
	feed(a, IN, "GET /api/users/1 HTTP/1.1\r\n\r\n", 1, 10);
	feed(b, IN, "POST /api/orders HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 1,
	     20);
	/* d: same as a but carries an X-Request-Id the gateway passes on */
	feed(d, IN, "GET /api/users/1 HTTP/1.1\r\nX-Request-Id: r-9\r\n\r\n", 1,
	     25);
	up1 = conn_at(50, WS_ROLE_CLIENT, 41000, 26);
	c1 = exchange_spans(up1, "POST /orders HTTP/1.1\r\n\r\n", 1, 30);
	up2 = conn_at(50, WS_ROLE_CLIENT, 41001, 31);
	c2 = exchange_spans(
		up2, "GET /users/1 HTTP/1.1\r\nX-Request-Id: r-9\r\n\r\n", 1,
		40);
	up3 = conn_at(50, WS_ROLE_CLIENT, 41002, 41);
	c3 = exchange_spans(up3, "GET /users/1 HTTP/1.1\r\n\r\n", 1, 50);
	feed(a, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 60);
	feed(b, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 61);
	feed(d, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 62);
	assert_int_equal(fx.out.n, 6);
	assert_child(c1, fx.out.s[4], "heuristic"); /* b */
	assert_child(c2, fx.out.s[5], "heuristic"); /* d */
	assert_child(c3, fx.out.s[3], "heuristic"); /* a */
	assert_int_equal(ws_http_spans_stats(fx.b)->link_heuristic, 3);
	ws_http_conn_close(a, 70);
	ws_http_conn_close(b, 70);
	ws_http_conn_close(d, 70);
	ws_http_conn_close(up1, 70);
	ws_http_conn_close(up2, 70);
	ws_http_conn_close(up3, 70);
}

/* An event loop that connects from the handler and writes later: the
 * request read last before the connect is the parent. */
static const struct ws_span *find_span(uint8_t kind, const char *key, int64_t v,
				       const char *path);
static const struct ws_span *inbound(int i);
static void finish(struct ws_http_conn **c, size_t n);

static void hop_connect_time(void **state)
{
	struct ws_http_conn *c[4];

	(void)state;
	c[0] = conn(50, WS_ROLE_SERVER, 40000);
	c[1] = conn(50, WS_ROLE_SERVER, 40001);
	feed(c[0], IN, "GET /x HTTP/1.1\r\n\r\n", 1, 10);
	c[2] = conn_at(50, WS_ROLE_CLIENT, 41000, 11); /* a's handler */
	feed(c[1], IN, "GET /x HTTP/1.1\r\n\r\n", 1, 20);
	c[3] = conn_at(50, WS_ROLE_CLIENT, 41001, 21); /* b's handler */
	feed(c[3], EG, "GET /u2 HTTP/1.1\r\n\r\n", 1, 30);
	feed(c[2], EG, "GET /u1 HTTP/1.1\r\n\r\n", 1, 40);
	/* (responses read by a thread that answers nobody: no settling) */
	feed(c[3], IN, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2, 45);
	feed(c[2], IN, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2, 46);
	feed(c[0], EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 50);
	feed(c[1], EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 60);
	finish(c, 4);
	/* each connection was made right after its request was read */
	assert_child(find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u1"), inbound(0),
		     "dial");
	assert_child(find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u2"), inbound(1),
		     "dial");
}

static struct ws_http_conn *loop_end(uint32_t tgid, uint8_t role, uint16_t port,
				     bool preexisting);

/* The span of kind with attribute key = v (int) or path (url.path). */
static const struct ws_span *find_span(uint8_t kind, const char *key, int64_t v,
				       const char *path)
{
	size_t i;

	for (i = 0; i < (size_t)fx.out.n; i++) {
		const struct ws_span *s = fx.out.s[i];

		if (s->kind != kind)
			continue;
		if (path ? !strcmp(attr_s(s, "url.path"), path)
			 : attr_i(s, key) == v)
			return s;
	}
	fail_msg("no span with %s", path ? path : key);
	return NULL;
}

/* The inbound request on port 40000 + i of process 50. */
static const struct ws_span *inbound(int i)
{
	return find_span(WS_SPAN_KIND_SERVER, "network.peer.port", 40000 + i,
			 NULL);
}

/* Every connection closed, every held call out. */
static void finish(struct ws_http_conn **c, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		ws_http_conn_close(c[i], 90);
	ws_http_spans_end_all(fx.b, 100);
}

#define GET(p) "GET " p " HTTP/1.1\r\n\r\n"
#define OK "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

/*
 * A Go gateway: goroutines move between threads. A handler's upstream
 * write follows its read on one thread (thread_order); a request whose
 * thread moved on waits and is served oldest first (queue, or ambiguous
 * when several wait); a fresh connection belongs to the request its
 * connecting thread read last (dial). Responses are read by threads that
 * write no inbound response, so no call is settled by its response thread.
 */
static void hop_thread_order(void **state)
{
	struct ws_http_conn *c[10];
	const struct ws_span *cl3, *cl4;
	const struct ws_http_spans_stats *st;
	size_t i;

	(void)state;
	for (i = 0; i < 7; i++)
		c[i] = conn(50, WS_ROLE_SERVER, (uint16_t)(40000 + i));
	c[7] = conn(50, WS_ROLE_CLIENT, 41000);
	c[8] = conn(50, WS_ROLE_CLIENT, 41001);
	/* thread 1 reads a, then b, and writes for b: a waits, alone */
	feed(c[0], IN, GET("/x"), 1, 10);
	feed(c[1], IN, GET("/x"), 1, 12);
	feed(c[8], EG, GET("/u1"), 1, 14);
	feed(c[7], EG, GET("/u0"), 3, 16);
	feed(c[8], IN, OK, 3, 18);
	feed(c[7], IN, OK, 3, 19);
	/* c is read, then thread 1 writes a's response: c waits, alone */
	feed(c[2], IN, GET("/x"), 1, 20);
	feed(c[0], EG, OK, 1, 22);
	feed(c[7], EG, GET("/u2"), 3, 30);
	feed(c[7], IN, OK, 3, 32);
	/* d and e both wait: the first write is ambiguous, the second is
	 * for the one left */
	feed(c[3], IN, GET("/x"), 1, 40);
	feed(c[4], IN, GET("/x"), 2, 41);
	feed(c[1], EG, OK, 2, 42);
	feed(c[2], EG, OK, 1, 43);
	feed(c[8], EG, GET("/u3"), 3, 50);
	feed(c[8], IN, OK, 3, 52);
	feed(c[7], EG, GET("/u4"), 3, 54);
	feed(c[7], IN, OK, 3, 56);
	feed(c[3], EG, OK, 2, 57);
	feed(c[4], EG, OK, 2, 58);
	/* f on thread 1, g on thread 2, then thread 1 connects: the fresh
	 * connection is f's although g was read last */
	feed(c[5], IN, GET("/x"), 1, 60);
	feed(c[6], IN, GET("/x"), 2, 61);
	c[9] = conn_by(50, WS_ROLE_CLIENT, 41002, 62, 1);
	feed(c[9], EG, GET("/u5"), 4, 70);
	feed(c[9], IN, OK, 4, 72);
	feed(c[5], EG, OK, 1, 80);
	finish(c, 10);
	assert_child(find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u0"), inbound(0),
		     "queue");
	assert_child(find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u1"), inbound(1),
		     "thread_order");
	assert_child(find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u2"), inbound(2),
		     "queue");
	cl3 = find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u3");
	cl4 = find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u4");
	assert_string_equal(attr_s(cl3, "wirespan.link.evidence"), "ambiguous");
	assert_string_equal(attr_s(cl4, "wirespan.link.evidence"), "queue");
	/* d and e: one each */
	assert_true(!memcmp(cl3->parent_span_id, inbound(3)->span_id, 8) ||
		    !memcmp(cl3->parent_span_id, inbound(4)->span_id, 8));
	assert_memory_not_equal(cl3->parent_span_id, cl4->parent_span_id, 8);
	assert_child(find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u5"), inbound(5),
		     "dial");
	st = ws_http_spans_stats(fx.b);
	assert_int_equal(st->link_thread_order, 1);
	assert_int_equal(st->link_queue, 3);
	assert_int_equal(st->link_ambiguous, 1);
	assert_int_equal(st->link_dial, 1);
	assert_int_equal(st->link_response_thread, 0);
}

/*
 * d and e wait; both upstream calls are ambiguous. The thread that reads
 * a call's response writes the inbound response next (Go's readLoop hands
 * it to the handler goroutine): that settles each parent, whichever the
 * guess was, in both orders. The same-host server span at the other end
 * follows its caller into the settled trace.
 */
static void hop_response_thread(void **state)
{
	struct ws_http_conn *c[7];
	const struct ws_span *u0, *u1, *d, *e, *back0;
	const struct ws_http_spans_stats *st;
	int order;
	size_t i;

	(void)state;
	for (order = 0; order < 2; order++) {
		for (i = 0; i < 4; i++)
			c[i] = conn(50, WS_ROLE_SERVER, (uint16_t)(40000 + i));
		/* c[4]'s other end is the backend, process 60, c[6] */
		c[4] = loop_end(50, WS_ROLE_CLIENT, 41000, false);
		c[5] = conn(50, WS_ROLE_CLIENT, 41001);
		c[6] = loop_end(60, WS_ROLE_SERVER, 41000, false);
		feed(c[0], IN, GET("/x"), 1, 10); /* d */
		feed(c[1], IN, GET("/x"), 2, 11); /* e */
		feed(c[2], IN, GET("/x"), 1, 12); /* d waits */
		feed(c[3], IN, GET("/x"), 2, 13); /* e waits */
		feed(c[4], EG, GET("/u0"), 3, 20);
		feed(c[6], IN, GET("/u0"), 9, 21);
		feed(c[5], EG, GET("/u1"), 3, 22);
		feed(c[6], EG, OK, 9, 23);
		/* u0's response to thread 4, which answers e (order 0) or d */
		feed(c[4], IN, OK, 4, 30);
		feed(c[order ? 0 : 1], EG, OK, 4, 31);
		feed(c[5], IN, OK, 5, 32);
		feed(c[order ? 1 : 0], EG, OK, 5, 33);
		finish(c, 7);
		u0 = find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u0");
		u1 = find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u1");
		d = inbound(0);
		e = inbound(1);
		assert_child(u0, order ? d : e, "response_thread");
		assert_child(u1, order ? e : d, "response_thread");
		back0 = find_span(WS_SPAN_KIND_SERVER, NULL, 0, "/u0");
		assert_memory_equal(back0->trace_id, u0->trace_id, 16);
		assert_memory_equal(back0->parent_span_id, u0->span_id, 8);
		st = ws_http_spans_stats(fx.b);
		assert_int_equal(st->link_response_thread, 2 * (order + 1));
		assert_int_equal(st->link_ambiguous + st->link_queue, 0);
		out_free(&fx.out);
	}
}

static void hop_none(void **state)
{
	struct ws_http_conn *a = conn(60, WS_ROLE_SERVER, 40000),
			    *up = conn(50, WS_ROLE_CLIENT, 41000);
	struct ws_span *c;
	char hex[17];

	/* another process's request is no parent; the app's own
	 * traceparent is */
	feed(a, IN, "GET /x HTTP/1.1\r\n\r\n", 1, 10);
	c = exchange_spans(up, "GET /x HTTP/1.1\r\ntraceparent: " TP "\r\n\r\n",
			   1, 20);
	ws_id_hex(c->parent_span_id, 8, hex);
	assert_string_equal(hex, TP_SPAN);
	assert_null(attr_s(c, "wirespan.link.evidence"));
	assert_int_equal(ws_http_spans_stats(fx.b)->link_none, 1);
	ws_http_conn_close(a, 70);
	ws_http_conn_close(up, 70);
}

/* ---- Go runtime evidence ------------------------------------------------ */

static void feed_g(struct ws_http_conn *c, uint8_t dir, const char *s,
		   uint32_t tid, uint64_t g, uint64_t ts)
{
	assert_int_equal(ws_http_conn_feed_g(c, dir, (const uint8_t *)s,
					     strlen(s), tid, g, ts),
			 0);
}

#define G(n) (0xc000100000ull + (n)*0x1a0)
#define REQ(n) (0xc000400000ull + (n)*0x100)

/*
 * A Go gateway's worst case: identical requests from one address, all
 * read on one thread by four handler goroutines, handed over in another
 * order than read, written by two writeLoop goroutines in yet another
 * order, on a thread that read nothing. Only the goroutines tell, and they
 * tell exactly: each call is its handler's child (goroutine).
 */
static void hop_goroutine(void **state)
{
	static const int handed[4] = {2, 0, 3, 1}; /* roundTrip order */
	struct ws_http_conn *c[6];
	const struct ws_http_spans_stats *st;
	char path[16];
	int i, k;

	(void)state;
	for (i = 0; i < 4; i++)
		c[i] = conn(50, WS_ROLE_SERVER, (uint16_t)(40000 + i));
	c[4] = conn(50, WS_ROLE_CLIENT, 41000);
	c[5] = conn(50, WS_ROLE_CLIENT, 41001);
	for (i = 0; i < 4; i++)
		feed_g(c[i], IN, GET("/x"), 1, G(i), 10 + i);
	for (k = 0; k < 4; k++) {
		i = handed[k];
		/* writeLoop G(10 + conn) of the connection it goes out on */
		ws_http_spans_go(fx.b, 50, WS_GO_ROUND_TRIP, G(i), REQ(i));
		ws_http_spans_go(fx.b, 50, WS_GO_REQ_WRITE, G(10 + k % 2),
				 REQ(i));
		/* hit twice (the stack grew and the prologue ran again) */
		ws_http_spans_go(fx.b, 50, WS_GO_REQ_WRITE, G(10 + k % 2),
				 REQ(i));
		snprintf(path, sizeof(path), "/u%d", i);
		/* the request line differs only so the test can find it */
		feed_g(c[4 + k % 2], EG,
		       k % 2 ? (i == 1 ? GET("/u1") : GET("/u0"))
			     : (i == 2 ? GET("/u2") : GET("/u3")),
		       7, G(10 + k % 2), 20 + k);
		feed_g(c[4 + k % 2], IN, OK, 8, G(20 + k % 2), 30 + k);
	}
	for (i = 0; i < 4; i++)
		feed_g(c[i], EG, OK, 9, G(i), 40 + i);
	finish(c, 6);
	for (i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "/u%d", i);
		assert_child(find_span(WS_SPAN_KIND_CLIENT, NULL, 0, path),
			     inbound(i), "goroutine");
	}
	st = ws_http_spans_stats(fx.b);
	assert_int_equal(st->link_goroutine, 4);
	assert_int_equal(st->go_round_trips, 4);
	assert_int_equal(st->go_writes, 4);
	assert_int_equal(st->go_unmatched + st->go_stale + st->go_bad, 0);
	assert_int_equal(st->link_ambiguous + st->link_queue +
				 st->link_thread_order +
				 st->link_response_thread,
			 0);
}

/*
 * What the goroutines do not tell, the other evidence does: a write whose
 * request no hand-over named (unmatched), a hand-over by a goroutine that
 * read no inbound request, facts whose inbound request has ended (stale),
 * malformed reports; and a traceparent naming one candidate still wins.
 */
static void hop_goroutine_fallback(void **state)
{
	struct ws_http_conn *a = conn(50, WS_ROLE_SERVER, 40000),
			    *b2 = conn(50, WS_ROLE_SERVER, 40001),
			    *up = conn(50, WS_ROLE_CLIENT, 41000);
	const struct ws_http_spans_stats *st;
	const struct ws_span *cl;

	(void)state;
	/* unmatched: the write's request was never handed over */
	feed_g(a, IN, GET("/x"), 1, G(0), 10);
	ws_http_spans_go(fx.b, 50, WS_GO_REQ_WRITE, G(10), REQ(0));
	feed_g(up, EG, GET("/u0"), 1, G(10), 12);
	feed_g(up, IN, OK, 1, G(20), 14);
	feed_g(a, EG, OK, 1, G(0), 16);
	cl = find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u0");
	assert_memory_equal(cl->parent_span_id, inbound(0)->span_id, 8);
	assert_string_not_equal(attr_s(cl, "wirespan.link.evidence"),
				"goroutine");
	/* a hand-over by a goroutine with no inbound request forgets an
	 * older fact at that address (the address was reused) */
	feed_g(b2, IN, GET("/x"), 1, G(1), 20);
	ws_http_spans_go(fx.b, 50, WS_GO_ROUND_TRIP, G(1), REQ(1));
	ws_http_spans_go(fx.b, 50, WS_GO_ROUND_TRIP, G(7), REQ(1));
	ws_http_spans_go(fx.b, 50, WS_GO_REQ_WRITE, G(10), REQ(1));
	/* stale: G(11) writes for b2's request after b2 was answered */
	ws_http_spans_go(fx.b, 50, WS_GO_ROUND_TRIP, G(1), REQ(2));
	ws_http_spans_go(fx.b, 50, WS_GO_REQ_WRITE, G(11), REQ(2));
	feed_g(b2, EG, OK, 1, G(1), 22);
	feed_g(up, EG, GET("/u1"), 1, G(11), 24);
	feed_g(up, IN, OK, 1, G(20), 26);
	cl = find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u1");
	assert_null(attr_s(cl, "wirespan.link.evidence"));
	/* malformed */
	ws_http_spans_go(fx.b, 50, WS_GO_ROUND_TRIP, 0, REQ(3));
	ws_http_spans_go(fx.b, 50, 99, G(1), REQ(3));
	ws_http_spans_go(NULL, 50, WS_GO_ROUND_TRIP, G(1), REQ(3));
	st = ws_http_spans_stats(fx.b);
	assert_int_equal(st->link_goroutine, 0);
	assert_int_equal(st->go_unmatched, 2);
	assert_int_equal(st->go_stale, 1);
	assert_int_equal(st->go_bad, 2);
	ws_http_conn_close(a, 70);
	ws_http_conn_close(b2, 70);
	ws_http_conn_close(up, 70);
}

/* A traceparent naming exactly one candidate decides before goroutines. */
static void hop_goroutine_traceparent(void **state)
{
	struct ws_http_conn *a = conn(50, WS_ROLE_SERVER, 40000),
			    *b2 = conn(50, WS_ROLE_SERVER, 40001),
			    *up = conn(50, WS_ROLE_CLIENT, 41000);

	(void)state;
	feed_g(a, IN, "GET /x HTTP/1.1\r\ntraceparent: " TP "\r\n\r\n", 1, G(0),
	       10);
	feed_g(b2, IN, GET("/x"), 1, G(1), 11);
	/* the goroutines say b2, the forwarded traceparent says a */
	ws_http_spans_go(fx.b, 50, WS_GO_ROUND_TRIP, G(1), REQ(0));
	ws_http_spans_go(fx.b, 50, WS_GO_REQ_WRITE, G(10), REQ(0));
	feed_g(up, EG, "GET /u0 HTTP/1.1\r\ntraceparent: " TP "\r\n\r\n", 1,
	       G(10), 12);
	feed_g(up, IN, OK, 1, G(20), 14);
	feed_g(a, EG, OK, 1, G(0), 16);
	feed_g(b2, EG, OK, 1, G(1), 17);
	ws_http_conn_close(a, 70);
	ws_http_conn_close(b2, 70);
	ws_http_conn_close(up, 70);
	assert_child(find_span(WS_SPAN_KIND_CLIENT, NULL, 0, "/u0"), inbound(0),
		     "traceparent");
}

/* Past max_go_facts the oldest fact goes, counted; 0 keeps none. */
static void hop_goroutine_bound(void **state)
{
	struct ws_http_conn *c[3];
	unsigned max;
	int i;

	(void)state;
	for (max = 0; max < 3; max += 2) {
		ws_http_spans_free(fx.b, 0);
		out_free(&fx.out);
		fx.cfg.max_go_facts = max;
		start(&fx.cfg);
		for (i = 0; i < 3; i++) {
			c[i] = conn(50, WS_ROLE_SERVER, (uint16_t)(40000 + i));
			feed_g(c[i], IN, GET("/x"), 1, G(i), 10 + i);
		}
		/* max 2: the third read evicts the first; max 0: none kept */
		assert_int_equal(ws_http_spans_stats(fx.b)->go_evicted,
				 max ? 1 : 3);
		ws_http_spans_go(fx.b, 50, WS_GO_ROUND_TRIP, G(0), REQ(0));
		ws_http_spans_go(fx.b, 50, WS_GO_REQ_WRITE, G(10), REQ(0));
		assert_int_equal(ws_http_spans_stats(fx.b)->go_unmatched, 1);
		for (i = 0; i < 3; i++)
			ws_http_conn_close(c[i], 70);
	}
}

/* Both ends of 127.0.0.1:port <-> 127.0.0.1:8081 on this host. */
static struct ws_http_conn *loop_end(uint32_t tgid, uint8_t role, uint16_t port,
				     bool preexisting)
{
	struct ws_http_conn_info in = {.tgid = tgid, .fd = 6, .role = role};
	bool sv = role == WS_ROLE_SERVER;

	snprintf(in.laddr, sizeof(in.laddr), "127.0.0.1");
	snprintf(in.raddr, sizeof(in.raddr), "127.0.0.1");
	in.lport = sv ? 8081 : port;
	in.rport = sv ? port : 8081;
	in.preexisting = preexisting;
	in.resource = fx.res;
	return ws_http_conn_new(fx.b, &in);
}

static const char REQ_X[] = "GET /x HTTP/1.1\r\n\r\n";
static const char RESP_0[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

static void hop_same_host(void **state)
{
	struct ws_http_conn *cl = loop_end(70, WS_ROLE_CLIENT, 41000, false),
			    *sv = loop_end(71, WS_ROLE_SERVER, 41000, false);
	const struct ws_http_spans_stats *st;
	uint8_t trace[16], span[8];

	/* request 1: the client's write is handled first */
	feed(cl, EG, REQ_X, 1, 10);
	feed(sv, IN, REQ_X, 2, 11);
	feed(sv, EG, RESP_0, 2, 12);
	feed(cl, IN, RESP_0, 1, 13);
	assert_int_equal(fx.out.n, 2);
	assert_child(fx.out.s[0], fx.out.s[1], "same_host");
	/* request 2 on the same connection (offset 21): the server's read
	 * first */
	feed(sv, IN, REQ_X, 2, 20);
	feed(cl, EG, REQ_X, 1, 19);
	feed(sv, EG, RESP_0, 2, 22);
	feed(cl, IN, RESP_0, 1, 23);
	assert_int_equal(fx.out.n, 4);
	assert_child(fx.out.s[2], fx.out.s[3], "same_host");
	/* request 3: a NATS span took the server span's ids before the
	 * client end was seen: the server span keeps its trace */
	feed(sv, IN, REQ_X, 2, 30);
	assert_true(ws_http_spans_parent(fx.b, 71, 2, 31, trace, span));
	feed(cl, EG, REQ_X, 1, 29);
	feed(sv, EG, RESP_0, 2, 32);
	feed(cl, IN, RESP_0, 1, 33);
	assert_int_equal(fx.out.n, 6);
	assert_false(fx.out.s[4]->has_parent);
	assert_memory_equal(fx.out.s[4]->trace_id, trace, 16);
	st = ws_http_spans_stats(fx.b);
	assert_int_equal(st->hop_linked, 2);
	assert_int_equal(st->hop_late, 1);
	ws_http_conn_close(cl, 40);
	ws_http_conn_close(sv, 40);
	/* followed from the middle: offsets differ between the ends */
	cl = loop_end(70, WS_ROLE_CLIENT, 41001, true);
	sv = loop_end(71, WS_ROLE_SERVER, 41001, true);
	feed(cl, EG, REQ_X, 1, 50);
	feed(sv, IN, REQ_X, 2, 51);
	feed(sv, EG, RESP_0, 2, 52);
	feed(cl, IN, RESP_0, 1, 53);
	assert_int_equal(fx.out.n, 8);
	assert_false(fx.out.s[6]->has_parent);
	assert_int_equal(ws_http_spans_stats(fx.b)->hop_linked, 2);
	/* an end left waiting is freed with its connection (valgrind) */
	feed(cl, EG, REQ_X, 1, 60);
	ws_http_conn_close(sv, 70);
	ws_http_conn_close(cl, 70);
	cl = loop_end(70, WS_ROLE_CLIENT, 41002, false);
	feed(cl, EG, REQ_X, 1, 80);
	ws_http_conn_close(cl, 90);
}

static void nats_parent_lookup(void **state)
{
	struct ws_http_conn *a = conn(50, WS_ROLE_SERVER, 40000),
			    *b = conn(50, WS_ROLE_SERVER, 40001);
	uint8_t trace[16], span[8];

	assert_false(ws_http_spans_parent(fx.b, 50, 7, 5, trace, span));
	feed(a, IN, "GET /x HTTP/1.1\r\n\r\n", 7, 10);
	/* the only one open in the process */
	assert_true(ws_http_spans_parent(fx.b, 50, 9, 15, trace, span));
	feed(b, IN, "GET /y HTTP/1.1\r\n\r\n", 8, 20);
	assert_false(ws_http_spans_parent(fx.b, 50, 9, 25, trace, span));
	assert_true(ws_http_spans_parent(fx.b, 50, 8, 25, trace, span));
	feed(b, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 8, 30);
	assert_memory_equal(span, fx.out.s[0]->span_id, 8);
	assert_memory_equal(trace, fx.out.s[0]->trace_id, 16);
	assert_false(ws_http_spans_parent(fx.b, 51, 8, 25, trace, span));
	ws_http_conn_close(a, 70);
	ws_http_conn_close(b, 70);
}

static bool http_parent(void *ctx, uint32_t tgid, uint32_t tid, uint64_t ts,
			uint8_t trace[16], uint8_t span[8])
{
	return ws_http_spans_parent(ctx, tgid, tid, ts, trace, span);
}

/* A handler that publishes to NATS: the publish is the HTTP span's child. */
static void nats_publish_in_handler(void **state)
{
	struct ws_http_conn *a = conn(50, WS_ROLE_SERVER, 40000);
	struct ws_nats_conn_info ni = {
		.tgid = 50, .fd = 9, .role = WS_ROLE_CLIENT};
	struct ws_nats_spans_cfg ncfg;
	struct ws_nats_spans *nb;
	struct ws_nats_conn *nc;
	struct out nout = {0};
	const char pub[] = "PUB orders.created 5\r\nhello\r\n";

	ws_nats_spans_cfg_init(&ncfg);
	ncfg.parent = http_parent;
	ncfg.parent_ctx = fx.b;
	nb = ws_nats_spans_new(&ncfg, collect, &nout);
	assert_non_null(nb);
	snprintf(ni.laddr, sizeof(ni.laddr), "127.0.0.1");
	snprintf(ni.raddr, sizeof(ni.raddr), "127.0.0.1");
	ni.lport = 45000;
	ni.rport = 4222;
	nc = ws_nats_conn_new(nb, &ni);
	assert_non_null(nc);
	feed(a, IN, "POST /orders HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 7,
	     10);
	/* the handler thread publishes while the request is open */
	assert_int_equal(ws_nats_conn_feed(nc, EG, (const uint8_t *)pub,
					   sizeof(pub) - 1, 7, 20),
			 0);
	feed(a, EG, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 7, 30);
	assert_int_equal(ws_nats_conn_feed(nc, EG, (const uint8_t *)pub,
					   sizeof(pub) - 1, 7, 40),
			 0);
	ws_nats_conn_close(nc, 50);
	ws_nats_spans_free(nb, 50);
	assert_int_equal(nout.n, 2);
	assert_int_equal(fx.out.n, 1);
	assert_true(nout.s[0]->has_parent);
	assert_memory_equal(nout.s[0]->parent_span_id, fx.out.s[0]->span_id, 8);
	assert_memory_equal(nout.s[0]->trace_id, fx.out.s[0]->trace_id, 16);
	/* after the response: no longer inside the request */
	assert_false(nout.s[1]->has_parent);
	assert_int_equal(ws_http_spans_stats(fx.b)->nats_parent, 1);
	out_free(&nout);
	ws_http_conn_close(a, 60);
}

/* ---- identity, header capture and secrets ------------------------------- */

static void captured_headers(void **state)
{
	struct ws_http_conn *c;

	fx.cfg.capture_headers[fx.cfg.n_capture_headers++] = "X-Tenant";
	fx.cfg.capture_headers[fx.cfg.n_capture_headers++] = "Authorization";
	fx.cfg.capture_headers[fx.cfg.n_capture_headers++] = "X-Session-Id";
	restart();
	assert_int_equal(ws_http_spans_stats(fx.b)->capture_refused, 2);
	c = conn(10, WS_ROLE_SERVER, 40000);
	feed(c, IN,
	     "GET / HTTP/1.1\r\nX-Tenant: acme\r\nx-tenant: beta\r\n"
	     "Authorization: Basic Ym9iOnB3\r\nX-Session-Id: s\r\n\r\n",
	     1, 10);
	feed(c, EG, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 20);
	ws_http_conn_close(c, 30);
	assert_string_equal(attr_s(fx.out.s[0], "http.request.header.x-tenant"),
			    "acme,beta");
	assert_null(attr_s(fx.out.s[0], "http.request.header.authorization"));
	assert_string_equal(attr_s(fx.out.s[0], "enduser.id"), "bob");
}

/* No secret, nor 10 bytes of one, reaches the OTLP output, however the
 * bytes were split (a secret cut across two writes included). */
static void secrets_never_leave(void **state)
{
	static const char *const secrets[] = {
		"sk_live_9f8e7d6c5b4a39281706",
		"c2Vzc2lvbj1kZWFkYmVlZmNhZmU0Mg",
		"hunter2-correct-horse-battery",
		/* base64 of "alice:hunter2-correct-horse-battery" */
		"YWxpY2U6aHVudGVyMi1jb3JyZWN0LWhvcnNlLWJhdHRlcnk=",
		"tok_QWERTYUIOPasdfghjkl12345",
		"ApiKeyZXCVBNMzxcvbnm0987654321",
		"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
		"SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
		"refresh-7c1d2e3f4a5b6c7d8e9f",
	};
	char req[4096];
	char *buf = NULL;
	size_t len = 0, i, j, k, n;
	unsigned seed = 3;
	FILE *f;
	int round;

	snprintf(req, sizeof(req),
		 "POST /login?password=%s&next=/home HTTP/1.1\r\n"
		 "Host: x\r\nCookie: session=%s; theme=dark\r\n"
		 "Authorization: Basic %s\r\n"
		 "X-API-Key: %s\r\nX-Refresh-Token: %s\r\n"
		 "Content-Length: 0\r\n\r\n"
		 "GET /a HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n"
		 "GET /b HTTP/1.1\r\nAuthorization: %s\r\n\r\n"
		 "GET /c HTTP/1.1\r\nAuthorization: Bearer "
		 "%s.eyJzdWIiOiJib2IifQ.%s\r\n\r\n",
		 secrets[2], secrets[1], secrets[3], secrets[0], secrets[8],
		 secrets[4], secrets[5], secrets[6], secrets[7]);
	fx.cfg.capture_headers[fx.cfg.n_capture_headers++] = "Cookie";
	fx.cfg.capture_headers[fx.cfg.n_capture_headers++] = "X-Refresh-Token";
	fx.cfg.capture_headers[fx.cfg.n_capture_headers++] = "Host";
	memcpy(fx.cfg.auth.secret, "0123456789abcdef0123", 20);
	fx.cfg.auth.secret_len = 20;
	restart();
	for (round = 0; round < 20; round++) {
		struct ws_http_conn *c = conn(10, WS_ROLE_SERVER, 40000);

		if (round == 0) {
			/* the API key cut in two writes */
			const char *cut = strstr(req, secrets[0]) + 9;

			assert_int_equal(
				ws_http_conn_feed(c, IN, (const uint8_t *)req,
						  (size_t)(cut - req), 1, 10),
				0);
			feed(c, IN, cut, 1, 11);
		} else {
			feed_random(c, IN, req, 1, 10, &seed);
		}
		feed(c, EG,
		     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
		     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
		     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
		     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		     1, 20);
		ws_http_conn_close(c, 30);
	}
	assert_int_equal(fx.out.n, 80);
	f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(ws_otlp_json_write(f, fx.out.s, (size_t)fx.out.n), 0);
	fclose(f);
	for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		n = strlen(secrets[i]);
		for (j = 0; j + 10 <= n; j++) {
			char frag[11];

			memcpy(frag, secrets[i] + j, 10);
			frag[10] = '\0';
			if (strstr(buf, frag))
				fail_msg("fragment %s of secret %zu in the "
					 "output",
					 frag, i);
		}
	}
	/* and what is derived from them is there */
	assert_non_null(strstr(buf, "\"enduser.id\""));
	assert_non_null(strstr(buf, "alice"));
	assert_non_null(strstr(buf, "\"bob\""));
	assert_non_null(strstr(buf, "enduser.pseudo.id"));
	assert_non_null(strstr(buf, "password=REDACTED"));
	assert_non_null(strstr(buf, "http.request.header.host"));
	k = 0;
	for (i = 0; i < (size_t)fx.out.n; i++)
		k += attr_s(fx.out.s[i], "http.request.header.cookie") != NULL;
	assert_int_equal(k, 0);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(server_span),
		T(server_span_any_split),
		T(client_span),
		T(status_rules),
		T(pipelining_keepalive),
		T(chunked_and_interim),
		T(response_until_close),
		T(upgrade_stops),
		T(connect_tunnel),
		T(gaps_still_end),
		T(close_and_timeout),
		T(bounds_counted),
		T(garbage_then_request),
		T(unknown_role),
		T(route_templates),
		T(route_patterns),
		T(query_redaction),
		T(traceparent_inbound),
		T(hop_traceparent_forwarded),
		T(hop_same_thread),
		T(hop_event_loop),
		T(hop_connect_time),
		T(hop_thread_order),
		T(hop_goroutine),
		T(hop_goroutine_fallback),
		T(hop_goroutine_traceparent),
		T(hop_goroutine_bound),
		T(hop_response_thread),
		T(hop_none),
		T(hop_same_host),
		T(nats_parent_lookup),
		T(nats_publish_in_handler),
		T(captured_headers),
		T(secrets_never_leave),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
