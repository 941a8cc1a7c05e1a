/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <zlib.h>

#include "otlp_trace_service.pb-c.h"

#include "export/otlp_http.h"
#include "export/pb_guard.h"
#include "relay.h" /* ws_relay_retry_after */

struct ws_otlp_http {
	CURL *curl;
	struct curl_slist *headers;
	bool gzip;
	/* per request */
	uint8_t *body;
	size_t body_len;
	char retry_after[64];
	bool has_retry_after;
	char curl_err[CURL_ERROR_SIZE];
};

int ws_gzip(const uint8_t *in, size_t n, uint8_t **out, size_t *out_len)
{
	z_stream z;
	uLong cap;
	uint8_t *buf;
	int rc;

	memset(&z, 0, sizeof(z));
	/* 15 + 16: a gzip header and trailer instead of zlib's */
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	cap = deflateBound(&z, (uLong)n);
	buf = malloc(cap ? cap : 1);
	if (!buf) {
		deflateEnd(&z);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)n;
	z.next_out = buf;
	z.avail_out = (uInt)cap;
	rc = deflate(&z, Z_FINISH);
	*out_len = z.total_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(buf);
		return -EIO;
	}
	*out = buf;
	return 0;
}

int ws_otlp_partial_success(const uint8_t *body, size_t len, uint64_t *rejected,
			    char *msg, size_t msglen)
{
	static const uint8_t empty[1];
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse
		*r;

	*rejected = 0;
	if (msglen)
		msg[0] = 0;
	if (!body)
		body = empty;
	if (ws_pb_check(
		    &opentelemetry__proto__collector__trace__v1__export_trace_service_response__descriptor,
		    body, len, WS_PB_MAX_DEPTH))
		return -EBADMSG;
	r = opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
		NULL, len, body);
	if (!r)
		return -EBADMSG;
	if (r->partial_success) {
		if (r->partial_success->rejected_spans > 0)
			*rejected =
				(uint64_t)r->partial_success->rejected_spans;
		if (msglen && r->partial_success->error_message)
			snprintf(msg, msglen, "%s",
				 r->partial_success->error_message);
	}
	opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(
		r, NULL);
	return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
	struct ws_otlp_http *h = ctx;
	size_t len = size * n, keep;
	uint8_t *b;

	keep = h->body_len + len > WS_OTLP_HTTP_MAX_BODY
		       ? WS_OTLP_HTTP_MAX_BODY - h->body_len
		       : len;
	if (keep) {
		b = realloc(h->body, h->body_len + keep);
		if (!b)
			return 0; /* curl fails the transfer: counted */
		memcpy(b + h->body_len, p, keep);
		h->body = b;
		h->body_len += keep;
	}
	return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ctx)
{
	struct ws_otlp_http *h = ctx;
	size_t len = size * n;
	static const char name[] = "retry-after:";

	if (len > sizeof(name) - 1 && !strncasecmp(p, name, sizeof(name) - 1)) {
		size_t v = len - (sizeof(name) - 1);

		if (v >= sizeof(h->retry_after))
			v = sizeof(h->retry_after) - 1;
		memcpy(h->retry_after, p + sizeof(name) - 1, v);
		h->retry_after[v] = 0;
		h->has_retry_after = true;
	}
	/* a new status line (after a 100 Continue): forget earlier ones */
	if (len > 5 && !strncmp(p, "HTTP/", 5))
		h->has_retry_after = false;
	return len;
}

struct ws_otlp_http *ws_otlp_http_new(const struct ws_otlp_http_cfg *cfg,
				      char *err, size_t errlen)
{
	static bool inited;
	struct ws_otlp_http *h;
	struct curl_slist *l;
	size_t i;

	if (!inited) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
			snprintf(err, errlen, "libcurl: cannot initialise");
			return NULL;
		}
		inited = true;
	}
	h = calloc(1, sizeof(*h));
	if (!h || !(h->curl = curl_easy_init())) {
		free(h);
		snprintf(err, errlen, "libcurl: out of memory");
		return NULL;
	}
	h->gzip = cfg->gzip;
	l = curl_slist_append(NULL, "Content-Type: application/x-protobuf");
	if (l && cfg->gzip)
		l = curl_slist_append(l, "Content-Encoding: gzip");
	/* no "Expect: 100-continue" round trip before big bodies */
	if (l)
		l = curl_slist_append(l, "Expect:");
	for (i = 0; l && i < cfg->n_headers; i++) {
		struct curl_slist *nl = curl_slist_append(l, cfg->headers[i]);

		if (!nl) {
			curl_slist_free_all(l);
			l = NULL;
		}
		l = nl;
	}
	if (!l) {
		snprintf(err, errlen, "libcurl: out of memory");
		ws_otlp_http_free(h);
		return NULL;
	}
	h->headers = l;
	if (curl_easy_setopt(h->curl, CURLOPT_URL, cfg->url) != CURLE_OK) {
		snprintf(err, errlen, "otlp endpoint: bad URL");
		ws_otlp_http_free(h);
		return NULL;
	}
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->headers);
	curl_easy_setopt(h->curl, CURLOPT_POST, 1L);
	curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS,
			 cfg->timeout_ms ? cfg->timeout_ms : 10000L);
	curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(h->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h->curl, CURLOPT_HEADERDATA, h);
	curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, h->curl_err);
	curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	if (cfg->ca_file)
		curl_easy_setopt(h->curl, CURLOPT_CAINFO, cfg->ca_file);
	return h;
}

void ws_otlp_http_free(struct ws_otlp_http *h)
{
	if (!h)
		return;
	curl_slist_free_all(h->headers);
	if (h->curl)
		curl_easy_cleanup(h->curl);
	free(h->body);
	free(h);
}

int ws_otlp_http_post(struct ws_otlp_http *h, const uint8_t *body, size_t len,
		      struct ws_otlp_http_result *res)
{
	uint8_t *gz = NULL;
	size_t gz_len = 0;
	CURLcode c;
	long code = 0;
	int rc;

	memset(res, 0, sizeof(*res));
	res->retry_after_ns = UINT64_MAX;
	if (h->gzip) {
		rc = ws_gzip(body, len, &gz, &gz_len);
		if (rc)
			return rc;
		body = gz;
		len = gz_len;
	}
	h->body_len = 0;
	h->has_retry_after = false;
	h->curl_err[0] = 0;
	curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	c = curl_easy_perform(h->curl);
	free(gz);
	if (c != CURLE_OK) {
		snprintf(res->error, sizeof(res->error), "%s",
			 h->curl_err[0] ? h->curl_err : curl_easy_strerror(c));
		return 0;
	}
	curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &code);
	res->status = (int)code;
	if (h->has_retry_after &&
	    ws_relay_retry_after(h->retry_after, (int64_t)time(NULL),
				 &res->retry_after_ns))
		res->retry_after_ns = UINT64_MAX;
	if (code >= 200 && code < 300 && h->body_len &&
	    ws_otlp_partial_success(h->body, h->body_len, &res->rejected,
				    res->error, sizeof(res->error)))
		snprintf(res->error, sizeof(res->error),
			 "the response is not an ExportTraceServiceResponse");
	else if ((code < 200 || code >= 300) && h->body_len)
		snprintf(res->error, sizeof(res->error), "%.*s",
			 (int)(h->body_len < 200 ? h->body_len : 200),
			 (const char *)h->body);
	return 0;
}
