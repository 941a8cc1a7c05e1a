/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small health endpoint for Kubernetes probes and service managers
 * (libmicrohttpd, its own thread):
 *   GET /healthz  200 while the capture loop has beaten within the stall
 *                 limit, 503 otherwise (liveness);
 *   GET /readyz   200 once the BPF programs are attached and the loop runs
 *                 (readiness), 503 before.
 * Anything else is 404. Nothing about spans or secrets is served.
 */
#ifndef WIRESPAN_HEALTH_H
#define WIRESPAN_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ws_health;

/* Listen on addr ("host:port", "[v6]:port" or ":port" for all addresses).
 * stall_ns: how old the last beat may be for /healthz to say 200.
 * NULL with a message in err on failure. */
struct ws_health *ws_health_start(const char *addr, uint64_t stall_ns,
				  char *err, size_t errlen);
/* The loop is alive at CLOCK_MONOTONIC ns now. */
void ws_health_beat(struct ws_health *h, uint64_t now_ns);
void ws_health_set_ready(struct ws_health *h, bool ready);
/* Safe on NULL. */
void ws_health_stop(struct ws_health *h);

#endif
