/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Who emitted a span: process identity read from /proc, turned into an OTLP
 * resource. Resources are cached per process (tgid + start time, so a reused
 * pid is a new process), bounded, with evictions counted.
 */
#ifndef WIRESPAN_IDENTITY_H
#define WIRESPAN_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "span.h"

/* Processes whose resource is cached. */
#define WS_IDENTITY_MAX_PROCS 4096

struct ws_identity_stats {
	uint64_t lookups, misses, evicted, proc_gone;
};

struct ws_identity;

/* proc_root: "/proc" (tests may point elsewhere). NULL + errno on failure. */
struct ws_identity *ws_identity_new(const char *proc_root);
void ws_identity_free(struct ws_identity *id);

/*
 * The resource of process tgid (a reference the caller puts). comm is used
 * when /proc has nothing (the process already exited). Never NULL unless
 * out of memory.
 */
struct ws_resource *ws_identity_resource(struct ws_identity *id, uint32_t tgid,
					 const char *comm);
/* Forget a process (it exited). */
void ws_identity_forget(struct ws_identity *id, uint32_t tgid);
/*
 * Render a NUL-separated argv as one line with secrets replaced by
 * REDACTED: the value after a flag naming a secret (--pass X, --token=X,
 * --api-key X ...) and the password of scheme://user:password@host.
 */
void ws_cmdline_redact(const char *argv, size_t len, char *out, size_t cap);
void ws_identity_stats(const struct ws_identity *id,
		       struct ws_identity_stats *out);

#endif
