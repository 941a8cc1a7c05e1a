/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A guard to run before protobuf-c's unpack on bytes from the network.
 *
 * protobuf-c unpacks (and frees) nested messages recursively, with no depth
 * limit. OTLP's AnyValue can nest without end (an array holding an array...),
 * so a message under NATS's 1 MB max_payload, 100000 levels deep, overflows
 * the stack of whoever unpacks it (measured: `wirespan tail` crashed on
 * one). ws_pb_check walks the wire format along the message descriptors,
 * with no allocation, and rejects what nests deeper than max_depth or is not
 * well-formed protobuf at the level it reads.
 */
#ifndef WIRESPAN_PB_GUARD_H
#define WIRESPAN_PB_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* Depth allowed for OTLP traces: the request is 1, a span 4, a span
 * attribute's value 6; this leaves room for 12 levels of nested values. */
#define WS_PB_MAX_DEPTH 32

/* 0 if buf[0..len) may be given to protobuf-c, -EBADMSG if not. */
int ws_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
		size_t len, unsigned max_depth);

/*
 * Count the length-delimited fields at a path of field numbers, on the wire:
 * {1, 2, 2} counts the spans of an ExportTraceServiceRequest (resource_spans
 * -> scope_spans -> spans) without unpacking it. Run ws_pb_check first: this
 * only skips what it does not follow. Returns 0 or -EBADMSG.
 */
int ws_pb_count(const uint8_t *buf, size_t len, const uint32_t *path,
		size_t depth, size_t *count);

/* The path of the spans in an ExportTraceServiceRequest or TracesData. */
#define WS_OTLP_SPANS_PATH ((const uint32_t[]){1, 2, 2})
#define WS_OTLP_SPANS_DEPTH 3

#endif
