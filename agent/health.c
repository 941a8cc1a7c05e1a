/* SPDX-License-Identifier: Apache-2.0 */
/* Liveness and readiness over HTTP, served by libmicrohttpd. */
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "health.h"

struct ws_health {
	struct MHD_Daemon *d;
	uint64_t stall_ns;
	_Atomic uint64_t beat_ns;
	_Atomic bool ready;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
			     const char *body)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/plain");
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	struct ws_health *h = cls;
	uint64_t beat = atomic_load(&h->beat_ns);

	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
	if (!strcmp(url, "/healthz")) {
		if (beat && mono_ns() - beat <= h->stall_ns)
			return reply(c, MHD_HTTP_OK, "ok\n");
		return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE,
			     beat ? "capture loop stalled\n"
				  : "capture not started\n");
	}
	if (!strcmp(url, "/readyz")) {
		if (atomic_load(&h->ready))
			return reply(c, MHD_HTTP_OK, "ready\n");
		return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
	}
	return reply(c, MHD_HTTP_NOT_FOUND, "try /healthz or /readyz\n");
}

static int parse_addr(const char *addr, struct sockaddr_storage *ss, char *err,
		      size_t errlen)
{
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE,
				 .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	char host[128];
	const char *colon = strrchr(addr, ':'), *h = addr;
	size_t hl;
	int rc;

	if (!colon || !colon[1]) {
		snprintf(err, errlen, "health address %s: want host:port",
			 addr);
		return -1;
	}
	hl = (size_t)(colon - addr);
	if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
		h = addr + 1;
		hl -= 2;
	}
	if (hl >= sizeof(host)) {
		snprintf(err, errlen, "health address %s: host too long", addr);
		return -1;
	}
	memcpy(host, h, hl);
	host[hl] = 0;
	rc = getaddrinfo(hl ? host : NULL, colon + 1, &hints, &res);
	if (rc || !res) {
		snprintf(err, errlen, "health address %s: %s", addr,
			 gai_strerror(rc));
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

struct ws_health *ws_health_start(const char *addr, uint64_t stall_ns,
				  char *err, size_t errlen)
{
	struct sockaddr_storage ss = {0};
	struct ws_health *h;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;

	if (parse_addr(addr, &ss, err, errlen))
		return NULL;
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->stall_ns = stall_ns;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	h->d = MHD_start_daemon(
		flags, 0, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, 16u,
		MHD_OPTION_CONNECTION_TIMEOUT, 5u, MHD_OPTION_END);
	if (!h->d) {
		snprintf(err, errlen,
			 "health endpoint: cannot listen on %s (in use, or "
			 "not an address of this host)",
			 addr);
		free(h);
		return NULL;
	}
	return h;
}

void ws_health_beat(struct ws_health *h, uint64_t now_ns)
{
	if (h)
		atomic_store(&h->beat_ns, now_ns);
}

void ws_health_set_ready(struct ws_health *h, bool ready)
{
	if (h)
		atomic_store(&h->ready, ready);
}

void ws_health_stop(struct ws_health *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}
