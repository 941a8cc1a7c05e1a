/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Protocol inference, compiled natively from the very header the BPF program
 * includes (bpf/lib/infer.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/infer.h"

/* Run ws_infer on s the way the BPF program does: a WS_INFER_BUF window. */
static __u8 infer(const char *s, bool midstream)
{
	unsigned char buf[WS_INFER_BUF];
	size_t n = strlen(s);

	memset(buf, 0xAA, sizeof(buf));
	if (n > WS_INFER_PREFIX)
		n = WS_INFER_PREFIX;
	memcpy(buf, s, n);
	return ws_infer(buf, (__u32)n, midstream);
}

static void nats_client_verbs(void **state)
{
	assert_int_equal(infer("CONNECT {\"verbose\":false}\r\n", false),
			 WS_PROTO_NATS);
	assert_int_equal(infer("CONNECT\t{}\r\n", false), WS_PROTO_NATS);
	assert_int_equal(infer("PUB foo 5\r\nhello\r\n", false), WS_PROTO_NATS);
	assert_int_equal(infer("PUB foo.bar _INBOX.x 0\r\n\r\n", false),
			 WS_PROTO_NATS);
	assert_int_equal(
		infer("HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", false),
		WS_PROTO_NATS);
	assert_int_equal(infer("SUB foo 1\r\n", false), WS_PROTO_NATS);
	assert_int_equal(infer("UNSUB 1\r\n", false), WS_PROTO_NATS);
	assert_int_equal(infer("PING\r\n", false), WS_PROTO_NATS);
	assert_int_equal(infer("PONG\r\n", false), WS_PROTO_NATS);
}

static void nats_server_verbs(void **state)
{
	assert_int_equal(infer("INFO {\"server_id\":\"x\"}\r\n", false),
			 WS_PROTO_NATS);
	assert_int_equal(infer("MSG foo 1 5\r\nhello\r\n", false),
			 WS_PROTO_NATS);
	assert_int_equal(
		infer("HMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", false),
		WS_PROTO_NATS);
	assert_int_equal(infer("+OK\r\n", false), WS_PROTO_NATS);
	assert_int_equal(infer("-ERR 'Unknown Protocol Operation'\r\n", false),
			 WS_PROTO_NATS);
}

static void http_requests_and_responses(void **state)
{
	static const char *const ok[] = {
		"GET / HTTP/1.1\r\n",
		"POST /api HTTP/1.1\r\n",
		"PUT /x HTTP/1.0\r\n",
		"DELETE /x HTTP/1.1\r\n",
		"HEAD / HTTP/1.1\r\n",
		"OPTIONS * HTTP/1.1\r\n",
		"PATCH /p HTTP/1.1\r\n",
		"TRACE / HTTP/1.1\r\n",
		"GET http://example/ HTTP/1.1\r\n",
		"CONNECT example.com:443 HTTP/1.1\r\n",
		"HTTP/1.1 200 OK\r\n",
		"HTTP/1.0 404 Not Found\r\n",
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_int_equal(infer(ok[i], false), WS_PROTO_HTTP);
}

/* HTTP's CONNECT method is not NATS, and NATS's CONNECT is not HTTP. */
static void connect_disambiguation(void **state)
{
	assert_int_equal(infer("CONNECT host:443 HTTP/1.1\r\n", false),
			 WS_PROTO_HTTP);
	assert_int_equal(infer("CONNECT {\"user\":\"a\"}\r\n", false),
			 WS_PROTO_NATS);
	assert_int_equal(infer("CONNECT \r\n", false), WS_PROTO_UNKNOWN);
}

static void not_ours(void **state)
{
	static const char *const no[] = {
		"",
		"P",
		"PU",
		"PUB",
		"PUB ",
		"PUB\r\n",
		"GET",
		"GET ",
		"HTTP/2 200\r\n",
		"HTTP/1.1",
		"\x16\x03\x01\x02\x00\x01\x00",
		"SSH-2.0-OpenSSH_9.2\r\n",
		"get / HTTP/1.1\r\n",
		"GETX / HTTP/1.1",
		"INFO x\r\n",
		"PINGX",
		"+OKAY\r\n",
		"MSG  foo\r\n",
		"*1\r\n$4\r\nPING\r\n",
	};
	size_t i;

	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		assert_int_equal(infer(no[i], false), WS_PROTO_UNKNOWN);
}

/* Joined mid-stream: the first whole line decides. */
static void midstream(void **state)
{
	assert_int_equal(infer("llo world\r\nPUB foo 3\r\nabc\r\n", true),
			 WS_PROTO_NATS);
	assert_int_equal(infer("rtial body\r\nMSG foo 1 3\r\nabc\r\n", true),
			 WS_PROTO_NATS);
	assert_int_equal(infer("ody tail}\nHTTP/1.1 200 OK\r\n", true),
			 WS_PROTO_HTTP);
	/* At the start of a stream a later line does not count. */
	assert_int_equal(infer("llo world\r\nPUB foo 3\r\nabc\r\n", false),
			 WS_PROTO_UNKNOWN);
	/* A header line is not a first line. */
	assert_int_equal(infer("xx\r\nHost: a\r\n", true), WS_PROTO_UNKNOWN);
	/* Newline as the last byte: no line to look at. */
	assert_int_equal(infer("abc\n", true), WS_PROTO_UNKNOWN);
}

/* Only len bytes count, whatever the rest of the window holds. */
static void respects_len(void **state)
{
	unsigned char buf[WS_INFER_BUF];

	memset(buf, 0, sizeof(buf));
	memcpy(buf, "PING\r\n", 6);
	assert_int_equal(ws_infer(buf, 6, false), WS_PROTO_NATS);
	assert_int_equal(ws_infer(buf, 5, false), WS_PROTO_UNKNOWN);
	memcpy(buf, "GET / HTTP/1.1", 14);
	assert_int_equal(ws_infer(buf, 4, false), WS_PROTO_UNKNOWN);
	/* "GET /": a request split across small writes is still HTTP. */
	assert_int_equal(ws_infer(buf, 5, false), WS_PROTO_HTTP);
	/* Longer than the prefix: clamped, no over-read. */
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(ws_infer(buf, 100000, true), WS_PROTO_UNKNOWN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(nats_client_verbs),
		cmocka_unit_test(nats_server_verbs),
		cmocka_unit_test(http_requests_and_responses),
		cmocka_unit_test(connect_disambiguation),
		cmocka_unit_test(not_ours),
		cmocka_unit_test(midstream),
		cmocka_unit_test(respects_len),
	};

	return cmocka_run_group_tests_name("infer", tests, NULL, NULL);
}
