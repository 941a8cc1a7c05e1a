/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The interface between stream reassembly and protocol parsers.
 *
 * reasm (agent/reasm.c) turns the kernel's per-syscall data records into one
 * ordered byte stream per connection direction and hands it to a
 * struct ws_stream_sink as a contiguous sequence of data and gap pieces. The
 * owner of a connection points that sink at a parser through
 * struct ws_parser_ops.
 *
 * Parsers are pure so they can be unit-tested and fuzzed natively: bytes in,
 * frames out, no I/O, no globals, and resumable at any byte boundary (a frame
 * split across two feed() calls, or fed one byte at a time, parses the same).
 */
#ifndef WIRESPAN_PROTO_PARSER_H
#define WIRESPAN_PROTO_PARSER_H

#include <stddef.h>
#include <stdint.h>

/*
 * Why a range of stream bytes is not in the output. Values index
 * ws_reasm_stats.gap_bytes[], so keep WS_GAP_REASON_MAX last; the names
 * (ws_gap_reason_name) are the `reason` strings of docs/CAPTURE-FORMAT.md.
 */
enum ws_gap_reason {
	/* Past the per-syscall capture cap (WS_DF_TRUNC_CAP). */
	WS_GAP_CAP = 0,
	/* In iovecs past WS_MAX_IOV (WS_DF_TRUNC_IOV). */
	WS_GAP_IOV,
	/* The kernel could not read the user buffer (WS_DF_FAULT). */
	WS_GAP_FAULT,
	/* The record was lost to a full ring buffer, or never arrived. */
	WS_GAP_LOST,
	/* Moved before the kernel classified the connection. */
	WS_GAP_UNCLASSIFIED,
	/* Moved while the connection was out of the userspace table. */
	WS_GAP_EVICTED,
	WS_GAP_REASON_MAX,
};

/* "cap", "iov", ...; "unknown" for a value out of range. Defined in reasm.c. */
const char *ws_gap_reason_name(enum ws_gap_reason reason);

/*
 * A protocol parser. One state per connection direction.
 * PROTOCOL-ADD: each protocol provides one const struct ws_parser_ops.
 */
struct ws_parser_ops {
	const char *name; /* "nats", "http" */
	int proto;	  /* enum ws_proto */
	/*
	 * A fresh state; user is handed back with every frame.
	 * NULL + errno on failure.
	 */
	void *(*create)(void *user);
	/*
	 * Feed len bytes that follow the previous ones. Returns 0 or -errno. A
	 * parse error is not an error return: the parser counts it, resyncs
	 * and carries on, because one bad frame must never end a stream.
	 */
	int (*feed)(void *state, const uint8_t *buf, size_t len);
	/*
	 * len bytes are missing from the stream here (capture cut them or they
	 * were lost). The parser drops or marks the frame it was in and
	 * resyncs. Returns 0 or -errno.
	 */
	int (*gap)(void *state, uint64_t len);
	void (*destroy)(void *state);
};

/*
 * Where reassembly delivers one direction of a connection. The calls form one
 * contiguous sequence starting at stream offset 0: each call's offset is the
 * previous call's offset + len, no len is 0, and every stream byte is in
 * exactly one call. The callbacks must not call back into the reassembler
 * that is calling them.
 */
struct ws_stream_sink {
	void *ctx;
	/* buf is only valid during the call (it may be in the ring buffer). */
	void (*data)(void *ctx, uint64_t offset, const uint8_t *buf,
		     size_t len);
	void (*gap)(void *ctx, uint64_t offset, uint64_t len,
		    enum ws_gap_reason reason);
};

#endif /* WIRESPAN_PROTO_PARSER_H */
