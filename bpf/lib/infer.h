/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Protocol inference: small pure functions over a byte prefix.
 *
 * The BPF program includes this file; tests/unit/test_infer.c compiles the very
 * same source natively. No helpers, no maps, no globals here.
 *
 * Buffer contract: `buf` has WS_INFER_BUF readable bytes, of which the first
 * `len` (<= WS_INFER_PREFIX) are data. The spare half lets the verifier accept
 * reads at `line + k` for a line start found by a bounded scan; every read is
 * still checked against `len`, so the spare bytes never influence the answer.
 */
#ifndef WIRESPAN_INFER_H
#define WIRESPAN_INFER_H

#include "wirespan/abi.h"

#ifndef __BPF__
#include <stdbool.h>
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#endif

#define WS_INFER_BUF (2 * WS_INFER_PREFIX)

/* Does buf[0..len) start with the NUL-terminated `word` (exact case)? */
static __always_inline bool ws_infer_word(const unsigned char *buf, __u32 len,
					  const char *word, __u32 wlen)
{
	__u32 i;

	if (len < wlen)
		return false;
#ifdef __BPF__
#pragma unroll
#endif
	for (i = 0; i < 16; i++) {
		if (i >= wlen)
			break;
		if (buf[i] != (unsigned char)word[i])
			return false;
	}
	return true;
}

#define WS_WORD(buf, len, lit) ws_infer_word(buf, len, lit, sizeof(lit) - 1)

/* Space or tab: the NATS protocol separates fields with either. */
static __always_inline bool ws_infer_is_ws(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* A printable, non-space byte: the start of a subject, path or version. */
static __always_inline bool ws_infer_is_token(unsigned char c)
{
	return c > ' ' && c < 0x7f;
}

/*
 * NATS: a control line of the client protocol.
 * Client verbs: CONNECT {json}, PUB, HPUB, SUB, UNSUB, PING, PONG.
 * Server verbs: INFO {json}, MSG, HMSG, +OK, -ERR.
 * CONNECT must be followed by '{' so that HTTP's CONNECT host:port is not NATS.
 */
static __always_inline bool ws_infer_nats(const unsigned char *b, __u32 len)
{
	if (len < 4)
		return false;
	switch (b[0]) {
	case 'C':
		/* "CONNECT {" with any run of one space/tab */
		return WS_WORD(b, len, "CONNECT") && len > 8 &&
		       ws_infer_is_ws(b[7]) && b[8] == '{';
	case 'I':
		return WS_WORD(b, len, "INFO") && len > 5 &&
		       ws_infer_is_ws(b[4]) && b[5] == '{';
	case 'P':
		if (WS_WORD(b, len, "PING\r\n") || WS_WORD(b, len, "PONG\r\n"))
			return true;
		return WS_WORD(b, len, "PUB") && len > 4 &&
		       ws_infer_is_ws(b[3]) && ws_infer_is_token(b[4]);
	case 'H':
		if (WS_WORD(b, len, "HPUB") || WS_WORD(b, len, "HMSG"))
			return len > 5 && ws_infer_is_ws(b[4]) &&
			       ws_infer_is_token(b[5]);
		return false;
	case 'S':
		return WS_WORD(b, len, "SUB") && len > 4 &&
		       ws_infer_is_ws(b[3]) && ws_infer_is_token(b[4]);
	case 'U':
		return WS_WORD(b, len, "UNSUB") && len > 6 &&
		       ws_infer_is_ws(b[5]) && ws_infer_is_token(b[6]);
	case 'M':
		return WS_WORD(b, len, "MSG") && len > 4 &&
		       ws_infer_is_ws(b[3]) && ws_infer_is_token(b[4]);
	case '+':
		return WS_WORD(b, len, "+OK\r\n");
	case '-':
		return WS_WORD(b, len, "-ERR") && len > 4 &&
		       ws_infer_is_ws(b[4]);
	}
	return false;
}

/* HTTP/1.x: "METHOD SP target" or a status line "HTTP/1.x SP". */
static __always_inline bool ws_infer_http(const unsigned char *b, __u32 len)
{
	__u32 m = 0;

	if (len < 5)
		return false;
	switch (b[0]) {
	case 'G':
		m = WS_WORD(b, len, "GET ") ? 4 : 0;
		break;
	case 'P':
		m = WS_WORD(b, len, "POST ")	? 5
		    : WS_WORD(b, len, "PUT ")	? 4
		    : WS_WORD(b, len, "PATCH ") ? 6
						: 0;
		break;
	case 'D':
		m = WS_WORD(b, len, "DELETE ") ? 7 : 0;
		break;
	case 'O':
		m = WS_WORD(b, len, "OPTIONS ") ? 8 : 0;
		break;
	case 'T':
		m = WS_WORD(b, len, "TRACE ") ? 6 : 0;
		break;
	case 'C':
		/* HTTP CONNECT takes an authority, never a '{' (that is NATS). */
		if (WS_WORD(b, len, "CONNECT ") && len > 8 && b[8] != '{')
			return ws_infer_is_token(b[8]);
		return false;
	case 'H':
		if (WS_WORD(b, len, "HEAD "))
			m = 5;
		else
			return WS_WORD(b, len, "HTTP/1.") && len > 8 &&
			       (b[7] == '0' || b[7] == '1') && b[8] == ' ';
		break;
	}
	if (m == 0 || len <= m)
		return false;
	return b[m] == '/' || b[m] == '*' || b[m] == 'h';
}

/* Classify a line that starts at b. */
static __always_inline __u8 ws_infer_line(const unsigned char *b, __u32 len)
{
	/* PROTOCOL-ADD: call the new protocol's infer function here. */
	if (ws_infer_nats(b, len))
		return WS_PROTO_NATS;
	if (ws_infer_http(b, len))
		return WS_PROTO_HTTP;
	return WS_PROTO_UNKNOWN;
}

/*
 * Classify a syscall's prefix. At the start of a stream the first line must
 * match. A connection joined mid-stream (`midstream`) is classified from the
 * first whole line it shows: the bytes after the first '\n' in the prefix.
 */
static __always_inline __u8 ws_infer(const unsigned char *buf, __u32 len,
				     bool midstream)
{
	__u8 p;
	__u32 i;

	if (len > WS_INFER_PREFIX)
		len = WS_INFER_PREFIX;
	p = ws_infer_line(buf, len);
	if (p != WS_PROTO_UNKNOWN || !midstream)
		return p;
	for (i = 0; i < WS_INFER_PREFIX - 1; i++) {
		if (i + 1 >= len)
			break;
		if (buf[i] == '\n')
			return ws_infer_line(buf + i + 1, len - i - 1);
	}
	return WS_PROTO_UNKNOWN;
}

#endif /* WIRESPAN_INFER_H */
