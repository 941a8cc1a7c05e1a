/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP/JSON encoding of finished spans: one ExportTraceServiceRequest per
 * line, ids as lowercase hex and 64-bit integers as strings, as OTLP/HTTP's
 * JSON encoding has them. For `--output stdout` (debugging, tests).
 */
#ifndef WIRESPAN_OTLP_JSON_H
#define WIRESPAN_OTLP_JSON_H

#include <stddef.h>
#include <stdio.h>

#include "span.h"

#define WS_SCOPE_NAME "wirespan"

/* Write spans[0..n) as one JSON line, grouped by resource. 0 or -errno. */
int ws_otlp_json_write(FILE *f, struct ws_span *const *spans, size_t n);

#endif
