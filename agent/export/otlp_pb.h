/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP protobuf encoding of finished spans: the bytes of an
 * ExportTraceServiceRequest (the OTLP/HTTP POST /v1/traces body, gRPC
 * TraceService/Export), which are also the bytes of a TracesData (what the
 * OpenTelemetry Collector's NATS receiver and file exporter take).
 *
 * The message schema is wirespan's own copy of OTLP's .proto files
 * (agent/export/otlp_*.proto, packages opentelemetry.proto.*).
 * ws_otlp_pb_encode() writes the wire format straight from the spans;
 * ws_otlp_pb_encode_ref() builds the same message with protoc-c's generated
 * code (the reference for tests). The tree is the one ws_otlp_json_write() writes: one
 * ResourceSpans per distinct span->resource pointer (in order of first
 * appearance, spans in input order), each with one ScopeSpans whose scope is
 * "wirespan" and its version. Unlike the JSON encoder it also carries the
 * dropped_attributes_count of resources, events and links.
 */
#ifndef WIRESPAN_OTLP_PB_H
#define WIRESPAN_OTLP_PB_H

#include <stddef.h>
#include <stdint.h>

#include "span.h"

/*
 * Encode spans[0..n) into a malloc'd buffer (*out, *out_len bytes; free()
 * it). n == 0 gives an empty request: a valid 0-byte message, and *out is
 * still a buffer to free. The spans are only read, and only during the call.
 * Returns 0, -EINVAL (NULL argument or span) or -ENOMEM; *out is untouched
 * on error.
 */
int ws_otlp_pb_encode(struct ws_span *const *spans, size_t n, uint8_t **out,
		      size_t *out_len);

/*
 * The same contract and the same bytes as ws_otlp_pb_encode(), built as a
 * protobuf-c tree and packed by protobuf_c_message_pack(): the reference
 * that tests compare ws_otlp_pb_encode()'s direct writer with (about twice
 * its cost, docs/BENCHMARKS.md).
 */
int ws_otlp_pb_encode_ref(struct ws_span *const *spans, size_t n, uint8_t **out,
			  size_t *out_len);

/*
 * Decode buf[0..len) as an ExportTraceServiceRequest (or TracesData) and
 * count its spans over all resources and scopes. Returns 0, -EINVAL (NULL
 * argument) or -EBADMSG (not a valid message, or no memory to decode it).
 */
int ws_otlp_pb_decode_count(const uint8_t *buf, size_t len, size_t *spans);

#endif
