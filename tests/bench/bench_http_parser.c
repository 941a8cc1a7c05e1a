/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Throughput of the HTTP/1.x parser alone (agent/proto/http.c), no BPF, no
 * I/O.
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Iagent \
 *      tests/bench/bench_http_parser.c agent/proto/http.c \
 *      -o build/bench_http_parser
 *   build/bench_http_parser [seconds per case] [feed size in bytes]
 *
 * A 4 MiB stream of copies of one message is fed repeatedly in chunks of the
 * feed size (default 16 KiB, the default per-syscall capture), so messages
 * also cross feed boundaries as they do in real captures. The cases are what
 * an API gateway sees: a ~600-byte GET with a dozen headers (Authorization,
 * X-Forwarded-For, traceparent, ...), a POST with a small JSON body, and
 * responses without body, with a 1 KiB body and chunked. MB/s counts wire
 * bytes per second of this thread's CPU time (so a busy machine lowers the
 * wall-clock rate, not the figure); 1 MB = 10^6 bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/http.h"

#define STREAM_BYTES (4u << 20)

struct counts {
	uint64_t messages;
	uint64_t sum; /* summed so the callback is not optimised away */
};

static void on_msg(void *ctx, enum ws_http_event ev,
		   const struct ws_http_msg *m)
{
	struct counts *c = ctx;
	const struct ws_http_header *tp;

	if (ev != WS_HTTP_EV_COMPLETE)
		return;
	/* What a span builder does per message: a header lookup or two. */
	tp = ws_http_header_find(&m->headers, "traceparent", NULL);
	c->messages++;
	c->sum += m->status + m->path.len + m->headers.n + m->body_len +
		  (tp ? tp->value.len : 0);
}

/* CPU seconds of this thread: time spent descheduled does not count. */
static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Fill buf with copies of msg (len bytes); returns bytes used. */
static size_t fill(uint8_t *buf, const char *msg, size_t len, size_t *nmsgs)
{
	size_t o = 0;

	*nmsgs = 0;
	while (o + len <= STREAM_BYTES) {
		memcpy(buf + o, msg, len);
		o += len;
		(*nmsgs)++;
	}
	return o;
}

static int bench(const char *name, enum ws_http_kind kind, const char *msg,
		 double seconds, size_t chunk)
{
	static const struct ws_http_cb cb = {.msg = on_msg};
	size_t flen = strlen(msg), len, nmsgs;
	uint8_t *buf = malloc(STREAM_BYTES);
	struct counts c = {0, 0};
	struct ws_http_parser *p;
	uint64_t bytes = 0, expect = 0;
	double t0, t;

	if (!buf)
		return -1;
	p = ws_http_parser_new(kind, &cb, &c);
	if (!p) {
		free(buf);
		return -1;
	}
	len = fill(buf, msg, flen, &nmsgs);
	t0 = now();
	do {
		if (kind == WS_HTTP_RESPONSE)
			for (size_t i = 0; i < nmsgs; i++)
				ws_http_parser_expect(p, WS_HTTP_M_GET);
		for (size_t o = 0; o < len; o += chunk)
			ws_http_parser_feed(p, buf + o,
					    len - o < chunk ? len - o : chunk);
		bytes += len;
		expect += nmsgs;
		t = now() - t0;
	} while (t < seconds);

	if (ws_http_parser_stats(p)->skipped_bytes || c.messages != expect) {
		fprintf(stderr, "%s: parse went wrong (%llu messages)\n", name,
			(unsigned long long)c.messages);
		ws_http_parser_free(p);
		free(buf);
		return -1;
	}
	printf("%-22s %4zu B, feed %6zu B: %8.1f MB/s %6.2f M msgs/s\n", name,
	       flen, chunk, (double)bytes / t / 1e6,
	       (double)c.messages / t / 1e6);
	ws_http_parser_free(p);
	free(buf);
	return 0;
}

#define GW_HEADERS                                                          \
	"Host: api.example.com\r\n"                                         \
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/2010"  \
	"0101 Firefox/121.0\r\n"                                            \
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
	"Connection: keep-alive\r\n"

#define RESP_HEADERS                              \
	"Date: Mon, 27 Jan 2025 12:28:53 GMT\r\n" \
	"Server: envoy\r\n"                       \
	"Content-Type: application/json\r\n"      \
	"x-envoy-upstream-service-time: 3\r\n"    \
	"Cache-Control: no-store\r\n"             \
	"Vary: Accept-Encoding\r\n"               \
	"X-Request-Id: 9f0c4a7e-1d2b-4c3a-8e5f-6a7b8c9d0e1f\r\n"

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2.0;
	size_t chunk = argc > 2 ? (size_t)atol(argv[2]) : 16384;
	static char body[1025], resp_body[2048], chunked[2048];
	int rc = 0;

	if (seconds <= 0 || chunk == 0) {
		fprintf(stderr, "usage: %s [seconds] [feed size]\n", argv[0]);
		return 2;
	}
	for (int i = 0; i < 1024; i++)
		body[i] = (char)('a' + i % 26);
	snprintf(resp_body, sizeof(resp_body),
		 "HTTP/1.1 200 OK\r\n" RESP_HEADERS
		 "Content-Length: 1024\r\n\r\n%s",
		 body);
	snprintf(chunked, sizeof(chunked),
		 "HTTP/1.1 200 OK\r\n" RESP_HEADERS
		 "Transfer-Encoding: chunked\r\n\r\n200\r\n%.512s\r\n"
		 "200\r\n%.512s\r\n0\r\n\r\n",
		 body, body);

	rc |= bench(
		"GET request", WS_HTTP_REQUEST,
		"GET /api/v1/orders?id=42&expand=items HTTP/1.1\r\n" GW_HEADERS
		"\r\n",
		seconds, chunk);
	rc |= bench(
		"POST request 64 B", WS_HTTP_REQUEST,
		"POST /api/v1/orders HTTP/1.1\r\n" GW_HEADERS
		"Content-Type: application/json\r\n"
		"Content-Length: 64\r\n\r\n"
		"{\"sku\":\"A-1234\",\"qty\":2,\"note\":\"leave it at the door"
		"\",\"x\":12345}",
		seconds, chunk);
	rc |= bench("response no body", WS_HTTP_RESPONSE,
		    "HTTP/1.1 204 No Content\r\n" RESP_HEADERS "\r\n", seconds,
		    chunk);
	rc |= bench("response 1 KiB", WS_HTTP_RESPONSE, resp_body, seconds,
		    chunk);
	rc |= bench("response chunked 1 KiB", WS_HTTP_RESPONSE, chunked,
		    seconds, chunk);
	return rc ? 1 : 0;
}
