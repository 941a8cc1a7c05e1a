/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming parser for the NATS client protocol, both directions.
 *
 * One parser per connection direction turns the byte stream into frames:
 *
 *   client -> server   CONNECT PUB HPUB SUB UNSUB PING PONG
 *   server -> client   INFO MSG HMSG +OK -ERR PING PONG
 *
 * Either direction's parser accepts every verb: which side wrote the bytes is
 * the caller's business (the span builder knows the connection's role).
 *
 *   "PUB foo.bar _INBOX.x 5\r\nhello\r\n"
 *    ^ offset                          ^ offset + wire_len
 *    `-- control line --------'`- payload (total_len bytes) + CRLF
 *
 *   HPUB/HMSG payload = header block (hdr_len bytes) + body:
 *   "NATS/1.0 503 No Responders\r\nNats-Subject: foo\r\n\r\n" body
 *
 * Frames go to a callback given at creation, once the whole frame (payload and
 * its CRLF included) has been seen. Everything a frame points at is valid
 * only during the callback; the callback must not feed the same parser.
 *
 * The parser is pure (no I/O, no globals), resumable at any byte boundary
 * (feeding one byte at a time produces the same frames, offsets, flags and
 * stats as feeding one buffer), and bounded: a control line of at most
 * WS_NATS_MAX_LINE bytes plus at most WS_NATS_MAX_PAYLOAD_KEEP payload bytes
 * are held per parser. A parse error never ends the stream: it is counted by
 * reason, the offending line is dropped, and parsing resumes at the next line
 * that starts with a NATS verb.
 *
 * Not thread-safe: one parser is driven by one thread.
 */
#ifndef WIRESPAN_PROTO_NATS_H
#define WIRESPAN_PROTO_NATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/parser.h"

/*
 * The limits below may be lowered at build time (the fuzz build does, so that
 * short inputs reach them); the agent uses the defaults.
 */
#ifndef WS_NATS_MAX_CONTROL_LINE
/* nats-server MAX_CONTROL_LINE_SIZE: longest argument string it accepts. */
#define WS_NATS_MAX_CONTROL_LINE 4096u
#endif
/*
 * Longest control line kept, LF included: the server counts only the
 * arguments against its limit, so leave room for verb, blanks and CRLF.
 */
#define WS_NATS_MAX_LINE (WS_NATS_MAX_CONTROL_LINE + 16u)
/* max_payload assumed until an INFO announces one (nats-server default). */
#define WS_NATS_DEFAULT_MAX_PAYLOAD (1u << 20)
/*
 * Largest max_payload we believe, whatever INFO says: nats-server refuses a
 * max_payload above max_pending, 64 MiB by default. Bigger sizes are lies.
 */
#define WS_NATS_MAX_PAYLOAD_CAP (64u << 20)
#ifndef WS_NATS_MAX_PAYLOAD_KEEP
/*
 * Payload bytes (header block included) kept per frame for the span builder
 * (headers, hashing); the rest is counted, not stored.
 */
#define WS_NATS_MAX_PAYLOAD_KEEP (64u << 10)
#endif
/* Header fields parsed per frame; more are counted in headers_dropped. */
#define WS_NATS_MAX_HEADERS 32u

/* Frame types. Values index ws_nats_stats.frames[]: keep MAX last. */
enum ws_nats_verb {
	WS_NATS_NONE = 0,
	WS_NATS_INFO,
	WS_NATS_CONNECT,
	WS_NATS_PUB,
	WS_NATS_HPUB,
	WS_NATS_SUB,
	WS_NATS_UNSUB,
	WS_NATS_MSG,
	WS_NATS_HMSG,
	WS_NATS_PING,
	WS_NATS_PONG,
	WS_NATS_OK,
	WS_NATS_ERR,
	WS_NATS_VERB_MAX,
};

/*
 * Why bytes were dropped as a parse error. Values index
 * ws_nats_stats.errors[]; WS_NATS_ERR_NONE is never counted.
 */
enum ws_nats_err {
	WS_NATS_ERR_NONE = 0,
	/* The line does not start with a NATS verb. */
	WS_NATS_ERR_VERB,
	/* Wrong number of fields, or INFO/CONNECT without a JSON object. */
	WS_NATS_ERR_ARGS,
	/* A size field that is not a decimal number (or far too long). */
	WS_NATS_ERR_SIZE,
	/* HPUB/HMSG header size larger than the total size. */
	WS_NATS_ERR_HDR_SIZE,
	/* A payload larger than max_payload. */
	WS_NATS_ERR_MAX_PAYLOAD,
	/* A control line longer than WS_NATS_MAX_LINE. */
	WS_NATS_ERR_LINE_TOO_LONG,
	/* No CRLF where the payload should end: its size field lied. */
	WS_NATS_ERR_PAYLOAD_END,
	WS_NATS_ERR_MAX,
};

/* ws_nats_frame.flags */
/* Fewer than total_len payload bytes are available (see GAP, CLIPPED). */
#define WS_NATS_F_TRUNCATED (1u << 0)
/* The capture cut bytes out of this frame's payload or its CRLF. */
#define WS_NATS_F_GAP (1u << 1)
/* total_len > WS_NATS_MAX_PAYLOAD_KEEP: only a prefix was kept. */
#define WS_NATS_F_CLIPPED (1u << 2)
/* Only part of the header block is available: headers may be missing. */
#define WS_NATS_F_HDR_TRUNCATED (1u << 3)
/* The header block is malformed; headers holds the lines that parsed. */
#define WS_NATS_F_BAD_HEADERS (1u << 4)
/* More than WS_NATS_MAX_HEADERS header fields; the rest are not listed. */
#define WS_NATS_F_HEADERS_DROPPED (1u << 5)
/* INFO whose JSON did not parse (info_max_payload is 0). */
#define WS_NATS_F_BAD_JSON (1u << 6)

/* A slice of the stream; not NUL-terminated. len 0: absent or empty. */
struct ws_nats_str {
	const char *ptr;
	size_t len;
};

struct ws_nats_header {
	struct ws_nats_str name;  /* case preserved */
	struct ws_nats_str value; /* blanks around it trimmed */
};

struct ws_nats_headers {
	uint16_t status;	 /* inline status ("NATS/1.0 503"), 0 if none */
	struct ws_nats_str desc; /* status description, e.g. "No Messages" */
	const struct ws_nats_header *v;
	uint32_t n; /* entries in v, <= WS_NATS_MAX_HEADERS */
};

struct ws_nats_frame {
	enum ws_nats_verb verb;
	uint32_t flags;	 /* WS_NATS_F_* */
	uint64_t offset; /* stream offset of the control line's first byte */
	uint64_t
		wire_len; /* stream bytes through the payload's CRLF, gaps too */
	struct ws_nats_str subject; /* PUB HPUB SUB MSG HMSG */
	struct ws_nats_str reply;   /* PUB HPUB MSG HMSG; empty if none */
	struct ws_nats_str sid;	    /* SUB UNSUB MSG HMSG */
	struct ws_nats_str queue;   /* SUB; empty if none */
	struct ws_nats_str json;    /* INFO CONNECT: the raw JSON object */
	struct ws_nats_str err;	    /* -ERR: the message, quotes stripped */
	uint64_t max_msgs;	   /* UNSUB: auto-unsubscribe count, 0 = none */
	uint64_t info_max_payload; /* INFO: announced max_payload, 0 = none */
	uint32_t hdr_len;	   /* HPUB HMSG: declared header size */
	uint32_t total_len; /* declared payload size (#bytes or #total) */
	/* HPUB HMSG: the available part of the header block. */
	const uint8_t *hdr_block;
	size_t hdr_block_len;
	/* The available prefix of the body (the payload after the headers). */
	const uint8_t *payload;
	size_t payload_len;
	struct ws_nats_headers headers; /* HPUB HMSG */
};

/* Counters of one parser. Identical however the stream was split. */
struct ws_nats_stats {
	uint64_t frames[WS_NATS_VERB_MAX]; /* frames emitted, by verb */
	uint64_t errors[WS_NATS_ERR_MAX];  /* parse errors, by reason */
	uint64_t bytes;			   /* data bytes fed */
	/* Data bytes in emitted frames. */
	uint64_t frame_bytes;
	/*
	 * Data bytes dropped: bad lines and payloads, garbage skipped while
	 * resynchronising, control lines a gap cut.
	 * bytes == frame_bytes + skipped_bytes + ws_nats_parser_pending().
	 */
	uint64_t skipped_bytes;
	uint64_t gaps;		  /* gap() calls */
	uint64_t gap_bytes;	  /* bytes those calls declared missing */
	uint64_t gap_lines;	  /* partial control lines dropped by a gap */
	uint64_t gap_payloads;	  /* frames emitted with WS_NATS_F_GAP */
	uint64_t payload_clipped; /* frames emitted with WS_NATS_F_CLIPPED */
	uint64_t bad_headers; /* frames emitted with WS_NATS_F_BAD_HEADERS */
	uint64_t headers_dropped;   /* header fields past WS_NATS_MAX_HEADERS */
	uint64_t bad_json;	    /* INFO frames with WS_NATS_F_BAD_JSON */
	uint64_t max_payload_clamp; /* max_payload values above the cap */
	uint64_t nomem;		    /* allocations that failed (payload lost) */
};

struct ws_nats_parser;

struct ws_nats_cb {
	/* A complete frame; f and all it points at live during the call. */
	void (*frame)(void *ctx, const struct ws_nats_frame *f);
	/*
	 * Optional: a parse error (already counted) at the stream offset of
	 * the line it concerns.
	 */
	void (*error)(void *ctx, enum ws_nats_err reason, uint64_t offset);
};

/*
 * What ws_nats_parser_ops.create() takes as its user pointer; both fields
 * are copied, and ctx is what every callback is handed back.
 */
struct ws_nats_sink {
	const struct ws_nats_cb *cb; /* must outlive the parser */
	void *ctx;
};

/* PROTOCOL-ADD: the NATS entry of the parser table. */
extern const struct ws_parser_ops ws_nats_parser_ops;

/*
 * A parser that calls cb->frame(ctx, ...) per frame. cb must outlive it.
 * NULL + errno (EINVAL: no cb or cb->frame; ENOMEM).
 */
struct ws_nats_parser *ws_nats_parser_new(const struct ws_nats_cb *cb,
					  void *ctx);
/* NULL is a no-op. */
void ws_nats_parser_free(struct ws_nats_parser *p);

/*
 * len stream bytes that follow the previous ones. Returns 0, or -EINVAL (no
 * parser, NULL buf with len > 0). Bad input is counted, not returned.
 */
int ws_nats_parser_feed(struct ws_nats_parser *p, const uint8_t *buf,
			size_t len);

/*
 * len stream bytes are missing here. Inside a payload they are skipped and
 * the frame is emitted with WS_NATS_F_GAP (and WS_NATS_F_TRUNCATED if
 * payload bytes went); inside or at a control line the partial line is
 * dropped and parsing resumes at the next line that starts with a verb.
 * Returns 0 or -EINVAL.
 */
int ws_nats_parser_gap(struct ws_nats_parser *p, uint64_t len);

/*
 * Payload limit for this direction. INFO sets it on the server -> client
 * parser; the owner passes frame->info_max_payload to the client -> server
 * parser, which never sees INFO. 0 restores the default; values above
 * WS_NATS_MAX_PAYLOAD_CAP are clamped (and counted). Returns 0 or -EINVAL.
 */
int ws_nats_parser_set_max_payload(struct ws_nats_parser *p,
				   uint64_t max_payload);
uint64_t ws_nats_parser_max_payload(const struct ws_nats_parser *p);

const struct ws_nats_stats *
ws_nats_parser_stats(const struct ws_nats_parser *p);

/* Data bytes consumed into a frame that is not complete yet. */
uint64_t ws_nats_parser_pending(const struct ws_nats_parser *p);

/*
 * The first header named name (ASCII case-insensitive) after prev, or the
 * first one if prev is NULL; NULL if there is none. Repeated keys are listed
 * in stream order, so pass the last result as prev to walk them.
 */
const struct ws_nats_header *
ws_nats_header_find(const struct ws_nats_headers *h, const char *name,
		    const struct ws_nats_header *prev);

/* The fields of a JetStream ack reply subject ($JS.ACK....). */
struct ws_nats_js_ack {
	bool v2;		    /* 11+ token form with domain and account */
	struct ws_nats_str domain;  /* v2; empty when the token is "_" */
	struct ws_nats_str account; /* v2: account hash */
	struct ws_nats_str stream;
	struct ws_nats_str consumer;
	uint64_t delivered; /* delivery count: > 1 is a redelivery */
	uint64_t stream_seq;
	uint64_t consumer_seq;
	uint64_t timestamp_ns;
	uint64_t pending;
	struct ws_nats_str token; /* v2: the rest after pending, if any */
};

/*
 * Parse subject (len bytes) as a JetStream ack subject, both forms:
 *   $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
 *   $JS.ACK.<domain|_>.<acc>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>
 *          .<ts>.<pending>[.<token>...]
 * The slices in ack point into subject. Returns 0, or -EINVAL when subject
 * is not one (another token count, an empty token, a non-number).
 */
int ws_nats_parse_js_ack(const char *subject, size_t len,
			 struct ws_nats_js_ack *ack);

/* "PUB", "HMSG", "+OK", ...; "?" out of range. */
const char *ws_nats_verb_name(enum ws_nats_verb verb);
/* "verb", "args", "size", ...; "unknown" out of range. */
const char *ws_nats_err_name(enum ws_nats_err err);

#endif /* WIRESPAN_PROTO_NATS_H */
