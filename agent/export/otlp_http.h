/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP/HTTP protobuf export with libcurl: POST an ExportTraceServiceRequest
 * to <endpoint>/v1/traces with the configured headers, optionally gzipped,
 * and report what the server said: the status, its Retry-After, and the
 * partial_success of a 200's ExportTraceServiceResponse. Header values
 * (tokens) are never logged. One handle, one connection kept alive, used by
 * one thread.
 */
#ifndef WIRESPAN_OTLP_HTTP_H
#define WIRESPAN_OTLP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_OTLP_HTTP_MAX_HEADERS 16
/* Response bodies read at most (a partial_success is small). */
#define WS_OTLP_HTTP_MAX_BODY 65536

struct ws_otlp_http_cfg {
	const char *url; /* the full URL, e.g. http://host:4318/v1/traces */
	/* "Name: value" lines; the strings must outlive the handle */
	const char *headers[WS_OTLP_HTTP_MAX_HEADERS];
	size_t n_headers;
	bool gzip;
	long timeout_ms;     /* whole request; 0: 10 s */
	const char *ca_file; /* https: verify with this CA instead */
};

struct ws_otlp_http_result {
	int status;		 /* HTTP status, 0 if none (transport error) */
	uint64_t retry_after_ns; /* UINT64_MAX: no (valid) Retry-After */
	uint64_t rejected;	 /* partial_success.rejected_spans */
	char error[256];	 /* transport error or partial_success text */
};

struct ws_otlp_http;

/* NULL with a message in err. Calls curl_global_init once. */
struct ws_otlp_http *ws_otlp_http_new(const struct ws_otlp_http_cfg *cfg,
				      char *err, size_t errlen);
void ws_otlp_http_free(struct ws_otlp_http *h);
/* POST body[0..len). Returns 0 (see res->status) or -ENOMEM (gzip). */
int ws_otlp_http_post(struct ws_otlp_http *h, const uint8_t *body, size_t len,
		      struct ws_otlp_http_result *res);

/* gzip (RFC 1952) of in[0..n) into a malloc'd *out. 0, -ENOMEM, -EIO. */
int ws_gzip(const uint8_t *in, size_t n, uint8_t **out, size_t *out_len);

/*
 * partial_success of an ExportTraceServiceResponse body: *rejected and
 * msg (may be empty). 0, or -EBADMSG if the body is not one.
 */
int ws_otlp_partial_success(const uint8_t *body, size_t len, uint64_t *rejected,
			    char *msg, size_t msglen);

#endif
