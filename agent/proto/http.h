/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming parser for HTTP/1.0 and HTTP/1.1 messages, one direction.
 *
 * One parser per connection direction: the owner says at creation whether it
 * parses requests (client -> server) or responses (server -> client).
 *
 *   "POST /v1?id=7 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
 *    ^ start_off                           head_end_off ^    ^ end_off
 *
 * Per message the parser calls cb->msg twice: WS_HTTP_EV_HEAD once the head
 * (start line and header fields) is complete, and WS_HTTP_EV_COMPLETE once
 * the body has ended (at once when there is none). Every HEAD is followed by
 * exactly one COMPLETE for the same message, possibly flagged TRUNCATED; a
 * message dropped in its head (or for framing its head declares) gets
 * neither. Offsets are stream offsets: the message's first byte is at
 * start_off and its last at end_off - 1, so the owner maps them to the
 * capture times of those bytes (gaps have none).
 *
 * Bodies are skipped and counted, never stored. Framing follows RFC 9112
 * section 6: Transfer-Encoding chunked (extensions and trailers skipped),
 * Content-Length, no body for HEAD, 1xx, 204 and 304 responses, responses
 * that end when the connection does (ws_http_parser_eof). A response parser
 * cannot see the request it answers, so the owner pushes each request's
 * method (ws_http_parser_expect) as the request parser reports its head; only
 * HEAD and CONNECT change a response's framing.
 *
 * After a 101 response, a 2xx answer to CONNECT, an HTTP/2 preface or a TLS
 * record the direction carries another protocol: the parser stops, counts
 * the rest as stopped bytes and parses nothing more. A request parser stops by
 * itself when bytes that cannot start a request follow a request asking for
 * an upgrade (Upgrade header or CONNECT); the owner may also stop it
 * (ws_http_parser_tunnel) when the response side reports WS_HTTP_F_TUNNEL.
 *
 * The parser is pure (no I/O, no globals), resumable at any byte boundary
 * (feeding one byte at a time gives the same events, offsets, flags and stats
 * as feeding one buffer), and bounded: a head of at most WS_HTTP_MAX_HEAD
 * bytes with at most WS_HTTP_MAX_HEADERS field lines is held per parser. A
 * parse error never ends the stream: it is counted by reason, the message is
 * dropped and parsing resumes at the next line that is a request (or status)
 * line. Everything a message points at is valid only during the callback;
 * the callback must not call into the same parser.
 *
 * Not thread-safe: one parser is driven by one thread.
 */
#ifndef WIRESPAN_PROTO_HTTP_H
#define WIRESPAN_PROTO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/parser.h"

/*
 * The limits below may be lowered at build time (the fuzz build does, so that
 * short inputs reach them); the agent uses the defaults.
 */
#ifndef WS_HTTP_MAX_HEAD
/*
 * Longest head kept, start line and final empty line included; longer heads
 * are an error. Field offsets are 16-bit, so it may not exceed 64 KiB.
 */
#define WS_HTTP_MAX_HEAD (64u << 10)
#endif
#ifndef WS_HTTP_MAX_HEADERS
/* Field lines per head (and per trailer section); more are an error. */
#define WS_HTTP_MAX_HEADERS 200u
#endif
#ifndef WS_HTTP_MAX_CHUNK_LINE
/* Longest chunk-size line, extensions included; longer is an error. */
#define WS_HTTP_MAX_CHUNK_LINE 4096u
#endif
#ifndef WS_HTTP_MAX_PIPELINE
/* Request methods queued by ws_http_parser_expect(); more are dropped. */
#define WS_HTTP_MAX_PIPELINE 64u
#endif
/* Longest method token accepted in a request line. */
#define WS_HTTP_MAX_METHOD 32u

/* Which messages a parser reads. */
enum ws_http_kind {
	WS_HTTP_REQUEST = 0,
	WS_HTTP_RESPONSE,
};

/* Request methods; WS_HTTP_M_OTHER is any other token (method_name has it). */
enum ws_http_method {
	WS_HTTP_M_NONE = 0,
	WS_HTTP_M_GET,
	WS_HTTP_M_HEAD,
	WS_HTTP_M_POST,
	WS_HTTP_M_PUT,
	WS_HTTP_M_DELETE,
	WS_HTTP_M_CONNECT,
	WS_HTTP_M_OPTIONS,
	WS_HTTP_M_TRACE,
	WS_HTTP_M_PATCH,
	WS_HTTP_M_OTHER,
	WS_HTTP_M_MAX,
};

/*
 * Why bytes were dropped as a parse error. Values index
 * ws_http_stats.errors[]; WS_HTTP_ERR_NONE is never counted.
 */
enum ws_http_err {
	WS_HTTP_ERR_NONE = 0,
	/* A line where a request (status) line should be is not one. */
	WS_HTTP_ERR_START_LINE,
	/* The head is longer than WS_HTTP_MAX_HEAD. */
	WS_HTTP_ERR_HEAD_TOO_BIG,
	/* More than WS_HTTP_MAX_HEADERS field lines. */
	WS_HTTP_ERR_TOO_MANY_HEADERS,
	/* Content-Length not a number, over INT64_MAX, or values that differ. */
	WS_HTTP_ERR_CONTENT_LENGTH,
	/* chunked twice, or a request whose last coding is not chunked. */
	WS_HTTP_ERR_TRANSFER_ENCODING,
	/* A chunk-size line that is not hex, overflows or is too long. */
	WS_HTTP_ERR_CHUNK_SIZE,
	/* No CRLF after a chunk's data: its size lied. */
	WS_HTTP_ERR_CHUNK_END,
	/* A trailer section too long or with too many fields. */
	WS_HTTP_ERR_TRAILERS,
	WS_HTTP_ERR_MAX,
};

/*
 * Why a parser stopped parsing its direction. Values index
 * ws_http_stats.stops[]; WS_HTTP_STOP_NONE: still parsing.
 */
enum ws_http_stop {
	WS_HTTP_STOP_NONE = 0,
	/* 101, CONNECT 2xx, non-HTTP after an upgrade request, or the owner. */
	WS_HTTP_STOP_TUNNEL,
	/* HTTP/2: "PRI * HTTP/2.0" or a server SETTINGS frame. */
	WS_HTTP_STOP_H2,
	/* A TLS record (0x16 0x03) where a message should start. */
	WS_HTTP_STOP_TLS,
	WS_HTTP_STOP_MAX,
};

enum ws_http_event {
	WS_HTTP_EV_HEAD = 1, /* the head is complete: end_off, body_len are 0 */
	WS_HTTP_EV_COMPLETE, /* the message has ended */
};

/* ws_http_msg.flags */
/* The body is chunked (Transfer-Encoding's last coding). */
#define WS_HTTP_F_CHUNKED (1u << 0)
/* A valid Content-Length framed the body (content_length). */
#define WS_HTTP_F_CONTENT_LENGTH (1u << 1)
/* A response without length: its body ends when the connection does. */
#define WS_HTTP_F_UNTIL_CLOSE (1u << 2)
/* Connection: close, or HTTP/1.0 without keep-alive. */
#define WS_HTTP_F_CLOSE (1u << 3)
/* Request with Expect: 100-continue. */
#define WS_HTTP_F_EXPECT_CONTINUE (1u << 4)
/* Request that asks to switch protocols: Upgrade header, or CONNECT. */
#define WS_HTTP_F_UPGRADE (1u << 5)
/* The connection carries another protocol after this message: 101, CONNECT
 * 2xx. The parser has stopped (WS_HTTP_STOP_TUNNEL). */
#define WS_HTTP_F_TUNNEL (1u << 6)
/* A 1xx response other than 101: the final response is still to come. */
#define WS_HTTP_F_INTERIM (1u << 7)
/* Both Transfer-Encoding and Content-Length: the latter was ignored. */
#define WS_HTTP_F_TE_AND_CL (1u << 8)
/* A field line was malformed and skipped (headers holds the others). */
#define WS_HTTP_F_BAD_HEADERS (1u << 9)
/* A field value continued on the next line (obsolete folding); the value
 * slice spans the line break. */
#define WS_HTTP_F_OBS_FOLD (1u << 10)
/* The capture cut body bytes (body_gap of them). */
#define WS_HTTP_F_GAP (1u << 11)
/* The message did not end where its framing said: a gap lost the chunk
 * framing, the stream ended, a chunk was malformed, or the owner stopped. */
#define WS_HTTP_F_TRUNCATED (1u << 12)
/* Ended by ws_http_parser_eof(). */
#define WS_HTTP_F_EOF (1u << 13)
/* The chunked framing was malformed (an error was counted). */
#define WS_HTTP_F_BAD_BODY (1u << 14)
/* Bytes were lost or dropped before this message: pairing requests with
 * responses may be off from here. */
#define WS_HTTP_F_RESYNC (1u << 15)
/* A response with no request method queued (read as a GET's). */
#define WS_HTTP_F_NO_REQUEST (1u << 16)
/* The head could not be kept (no memory): COMPLETE has no strings. */
#define WS_HTTP_F_NOMEM (1u << 17)

/* A slice of the stream; not NUL-terminated. len 0: absent or empty. */
struct ws_http_str {
	const char *ptr;
	size_t len;
};

struct ws_http_header {
	struct ws_http_str name;  /* case preserved */
	struct ws_http_str value; /* blanks around it trimmed */
};

struct ws_http_headers {
	const struct ws_http_header *v;
	uint32_t n; /* entries in v, <= WS_HTTP_MAX_HEADERS */
};

struct ws_http_msg {
	enum ws_http_kind kind;
	uint32_t flags;	 /* WS_HTTP_F_* */
	uint8_t version; /* 10: HTTP/1.0, 11: HTTP/1.1 (and 1.2-1.9) */
	/*
	 * Request: its method. Response: the method of the request it answers
	 * (from ws_http_parser_expect), WS_HTTP_M_NONE if none was queued.
	 */
	enum ws_http_method method;
	struct ws_http_str method_name; /* request: the token as sent */
	struct ws_http_str target;	/* request: request-target as sent */
	/*
	 * request: the target's path ("/a/b"; "*"; empty for CONNECT's
	 * authority form; for absolute form the part after the authority)
	 * and its query (after the '?', empty if none).
	 */
	struct ws_http_str path;
	struct ws_http_str query;
	uint16_t status;	   /* response: 100..999 */
	struct ws_http_str reason; /* response: reason phrase, may be empty */
	struct ws_http_headers headers;
	uint64_t start_off;    /* stream offset of the start line's 1st byte */
	uint64_t head_end_off; /* just past the empty line ending the head */
	uint64_t end_off;      /* COMPLETE: just past the message's last byte */
	uint64_t content_length; /* WS_HTTP_F_CONTENT_LENGTH: declared size */
	uint64_t body_len; /* COMPLETE: body bytes seen (chunk data only) */
	uint64_t body_gap; /* COMPLETE: body bytes the capture cut */
	uint64_t chunks;   /* COMPLETE, chunked: data chunks seen */
	uint64_t trailers; /* COMPLETE, chunked: trailer field lines */
};

/* Counters of one parser. Identical however the stream was split. */
struct ws_http_stats {
	uint64_t heads;			  /* WS_HTTP_EV_HEAD events */
	uint64_t messages;		  /* WS_HTTP_EV_COMPLETE events */
	uint64_t interim;		  /* of which 1xx other than 101 */
	uint64_t errors[WS_HTTP_ERR_MAX]; /* parse errors, by reason */
	uint64_t stops[WS_HTTP_STOP_MAX]; /* 0 or 1: why parsing stopped */
	uint64_t bytes;			  /* data bytes fed */
	/* Data bytes in completed messages. */
	uint64_t msg_bytes;
	/*
	 * Data bytes dropped: bad and dropped messages, garbage skipped while
	 * resynchronising, empty lines between messages.
	 */
	uint64_t skipped_bytes;
	/*
	 * Data bytes after (and of the partial message at) the point where
	 * parsing stopped: tunnelled, HTTP/2 or TLS.
	 * bytes == msg_bytes + skipped_bytes + stopped_bytes +
	 *          ws_http_parser_pending().
	 */
	uint64_t stopped_bytes;
	uint64_t gaps;	      /* gap() calls */
	uint64_t gap_bytes;   /* bytes those calls declared missing */
	uint64_t gap_heads;   /* partial heads a gap dropped */
	uint64_t gap_bodies;  /* messages completed with WS_HTTP_F_GAP */
	uint64_t gap_resyncs; /* gaps after which framing was lost */
	uint64_t truncated;   /* messages completed with WS_HTTP_F_TRUNCATED */
	uint64_t eof_heads;   /* partial heads dropped by eof() */
	uint64_t bad_headers; /* messages with WS_HTTP_F_BAD_HEADERS */
	uint64_t obs_folds;   /* folded field lines */
	uint64_t te_and_cl;   /* messages with WS_HTTP_F_TE_AND_CL */
	uint64_t until_close; /* responses with WS_HTTP_F_UNTIL_CLOSE */
	uint64_t no_request;  /* responses with WS_HTTP_F_NO_REQUEST */
	uint64_t expect_full; /* expect() calls dropped: queue full */
	uint64_t nomem;	      /* allocations that failed */
};

struct ws_http_parser;

struct ws_http_cb {
	/* A message event; m and all it points at live during the call. */
	void (*msg)(void *ctx, enum ws_http_event ev,
		    const struct ws_http_msg *m);
	/*
	 * Optional: a parse error (already counted) at the stream offset of
	 * the message (or line) it concerns.
	 */
	void (*error)(void *ctx, enum ws_http_err reason, uint64_t offset);
};

/*
 * What ws_http_parser_ops.create() takes as its user pointer; all fields are
 * copied, and ctx is what every callback is handed back.
 */
struct ws_http_sink {
	const struct ws_http_cb *cb; /* must outlive the parser */
	void *ctx;
	enum ws_http_kind kind;
};

/* PROTOCOL-ADD: the HTTP entry of the parser table. */
extern const struct ws_parser_ops ws_http_parser_ops;

/*
 * A parser of kind messages that calls cb->msg(ctx, ...) per event. cb must
 * outlive it. NULL + errno (EINVAL: no cb or cb->msg, bad kind; ENOMEM).
 */
struct ws_http_parser *ws_http_parser_new(enum ws_http_kind kind,
					  const struct ws_http_cb *cb,
					  void *ctx);
/* NULL is a no-op. */
void ws_http_parser_free(struct ws_http_parser *p);

/*
 * len stream bytes that follow the previous ones. Returns 0, -EINVAL (no
 * parser, NULL buf with len > 0) or -EPIPE (after ws_http_parser_eof). Bad
 * input is counted, not returned.
 */
int ws_http_parser_feed(struct ws_http_parser *p, const uint8_t *buf,
			size_t len);

/*
 * len stream bytes are missing here. Inside a body they are skipped and the
 * message stays in sync (WS_HTTP_F_GAP); a gap past a chunk's data or in
 * chunk framing ends the message (GAP | TRUNCATED); a gap in or before a
 * head drops the partial head, and parsing resumes at the next request
 * (status) line, flagging that message WS_HTTP_F_RESYNC. Returns 0, -EINVAL
 * or -EPIPE.
 */
int ws_http_parser_gap(struct ws_http_parser *p, uint64_t len);

/*
 * The direction ended (FIN or close). A body that runs to the close ends
 * here (WS_HTTP_F_EOF); any other message in progress ends TRUNCATED | EOF
 * if its head was reported, else it is dropped. Later feed() and gap() calls
 * return -EPIPE. Returns 0 or -EINVAL.
 */
int ws_http_parser_eof(struct ws_http_parser *p);

/*
 * Response parsers: the next request on the connection has this method.
 * Call it in order, from the request parser's WS_HTTP_EV_HEAD (an interim
 * 100 or an early final response can arrive before the request's body).
 * Each final response (and 101) takes one. Returns 0, -EINVAL (no parser,
 * a request parser, a method out of range) or -ENOBUFS (more than
 * WS_HTTP_MAX_PIPELINE queued; counted in expect_full).
 */
int ws_http_parser_expect(struct ws_http_parser *p, enum ws_http_method method);

/*
 * Stop parsing this direction now (WS_HTTP_STOP_TUNNEL): the other
 * direction reported WS_HTTP_F_TUNNEL. A message in progress ends TRUNCATED
 * if its head was reported. Returns 0 or -EINVAL.
 */
int ws_http_parser_tunnel(struct ws_http_parser *p);

/* Why the parser stopped; WS_HTTP_STOP_NONE while it parses. */
enum ws_http_stop ws_http_parser_stopped(const struct ws_http_parser *p);

const struct ws_http_stats *
ws_http_parser_stats(const struct ws_http_parser *p);

/* Data bytes consumed into a message that is not complete yet. */
uint64_t ws_http_parser_pending(const struct ws_http_parser *p);

/*
 * The first header named name (ASCII case-insensitive) after prev, or the
 * first one if prev is NULL; NULL if there is none. Repeated fields are
 * listed in stream order, so pass the last result as prev to walk them.
 */
const struct ws_http_header *
ws_http_header_find(const struct ws_http_headers *h, const char *name,
		    const struct ws_http_header *prev);

/* The method a token names (case-sensitive); WS_HTTP_M_OTHER if none. */
enum ws_http_method ws_http_method_parse(const char *s, size_t len);
/* "GET", ...; "OTHER" for WS_HTTP_M_OTHER; "?" out of range or NONE. */
const char *ws_http_method_name(enum ws_http_method method);
/* "start_line", ...; "unknown" out of range. */
const char *ws_http_err_name(enum ws_http_err err);
/* "none", "tunnel", "h2", "tls"; "unknown" out of range. */
const char *ws_http_stop_name(enum ws_http_stop stop);

#endif /* WIRESPAN_PROTO_HTTP_H */
