/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The protobuf side of the relay's stitching (the joins are in stitch.c):
 * read what the stitcher needs of each span of an OTLP payload straight off
 * the wire (no decoded tree), and apply the rewrites it asks for to the
 * payload's bytes.
 *
 * A new trace id, and a new parent where the span has an 8-byte parent
 * field, are written over the old bytes in place: the payload keeps its
 * size and layout. Only a parent the span did not have and the
 * wirespan.stitch.evidence attribute add bytes: then the payload is copied
 * once with those fields inserted where protobuf-c would write them (the
 * parent after field 3, the attribute after the span's other attributes)
 * and the lengths of the span, its ScopeSpans and its ResourceSpans
 * re-encoded. For payloads in canonical field order (what every protobuf
 * encoder writes, the agents' included) the result is byte for byte what
 * decoding with protobuf-c, changing the tree and encoding again gives
 * (tests/unit/test_stitch_pb.c checks this); a payload nothing was changed
 * in goes on as the bytes that came.
 */
#ifndef WIRESPAN_STITCH_PB_H
#define WIRESPAN_STITCH_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stitch.h"

struct ws_stitch_pb_loc;
struct ws_stitch_pb_cont;

/* A payload while the stitcher holds it. */
struct ws_stitch_msg {
	uint8_t *buf; /* its bytes (a copy), rewritten in place */
	size_t len;
	size_t wire_spans; /* every span on the wire, described or not */
	char *subject;
	void *token; /* the caller's (a JetStream message, or NULL) */
	struct ws_stitch_span *spans; /* the ones that can take part */
	size_t n_spans;
	/* private: where each described span's fields are, its edits */
	struct ws_stitch_pb_loc *loc;
	size_t n_conts;
	struct ws_stitch_pb_cont *conts;
	bool grow; /* an edit adds bytes: ws_stitch_msg_bytes copies */
};

/*
 * Check buf (pb_guard), copy it and describe its spans. Returns the
 * message, or NULL with errno EBADMSG (not OTLP) or ENOMEM.
 */
struct ws_stitch_msg *ws_stitch_msg_decode(const uint8_t *buf, size_t len,
					   const char *subject, void *token);
/* The ws_stitch_cfg.rewrite callback (token: the ws_stitch_msg). */
int ws_stitch_msg_rewrite(void *ctx, void *token, void *ref,
			  const uint8_t trace[16], const uint8_t *parent,
			  const char *evidence);
/* The payload as it is now: m->buf itself when every rewrite was in place
 * (*owned false), else a new buffer with the fields added (*owned: the
 * caller frees it). Returns 0 or -ENOMEM. */
int ws_stitch_msg_bytes(struct ws_stitch_msg *m, uint8_t **buf, size_t *len,
			bool *owned);
void ws_stitch_msg_free(struct ws_stitch_msg *m);

#endif
