/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The protobuf side of the relay's stitching (the joins are in stitch.c):
 * decode an OTLP payload from NATS, describe its spans to the stitcher,
 * apply the rewrites it asks for to the decoded tree, and encode the tree
 * again when something changed (else the original bytes go on).
 */
#ifndef WIRESPAN_STITCH_PB_H
#define WIRESPAN_STITCH_PB_H

#include <stddef.h>
#include <stdint.h>

#include "stitch.h"

/* A decoded payload while the stitcher holds it. */
struct ws_stitch_msg {
	void *req; /* ExportTraceServiceRequest */
	uint8_t *orig;
	size_t len;
	char *subject;
	void *token; /* the caller's (a JetStream message, or NULL) */
	struct ws_stitch_span *spans;
	size_t n_spans;
};

/*
 * Decode buf (checked with pb_guard first) and describe its spans. Returns
 * the message, or NULL with errno EBADMSG (not OTLP) or ENOMEM.
 */
struct ws_stitch_msg *ws_stitch_msg_decode(const uint8_t *buf, size_t len,
					   const char *subject, void *token);
/* The ws_stitch_cfg.rewrite callback (ref is a decoded Span). */
int ws_stitch_msg_rewrite(void *ctx, void *token, void *ref,
			  const uint8_t trace[16], const uint8_t *parent,
			  const char *evidence);
/* The payload as it is now: encoded again if modified, else the original
 * bytes (*buf then belongs to the message). *owned: the caller frees it. */
int ws_stitch_msg_bytes(struct ws_stitch_msg *m, bool modified, uint8_t **buf,
			size_t *len, bool *owned);
void ws_stitch_msg_free(struct ws_stitch_msg *m);

#endif
