/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Who emitted a span: process identity read from /proc, its container (from
 * the cgroup of the task that made the syscall) and its Kubernetes pod (from
 * the pod watcher's store), turned into an OTLP resource with service.name,
 * service.namespace and service.instance.id (agent/service.h has the order).
 *
 * Resources are cached per process, bounded (LRU, evictions counted). A
 * cached resource is rebuilt when the process exits (ws_identity_forget,
 * from sched_process_exit), when it execs (the comm of the syscall's task
 * changed and /proc/<pid>/exe points elsewhere), when its pid is reused
 * (same check, plus the cgroup), when it moves to another cgroup, and when
 * the pod it belongs to changes in the store (e.g. the pod watcher learned
 * the container's id after the process started). Every lookup is O(1); a
 * hit costs a hash lookup and a few compares (docs/BENCHMARKS.md).
 */
#ifndef WIRESPAN_IDENTITY_H
#define WIRESPAN_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "k8s_pods.h"
#include "redact.h"
#include "service.h"
#include "span.h"

/* Processes whose resource is cached (default). */
#define WS_IDENTITY_MAX_PROCS 16384
/* Per-port variants of a process's resource (port rules only). */
#define WS_IDENTITY_MAX_VARIANTS 4

struct ws_identity_stats {
	uint64_t lookups, misses, evicted, proc_gone;
	uint64_t exec; /* rebuilt: the process exec'd (or pid reuse) */
	uint64_t cgroup_changed;   /* rebuilt: the process moved cgroup */
	uint64_t k8s_refresh;	   /* rebuilt: its pod changed in the store */
	uint64_t containers;	   /* resources with a container.id */
	uint64_t pods;		   /* resources with a k8s pod */
	uint64_t pod_unknown;	   /* pod uid/container id not in the store */
	uint64_t cgroup_by_id;	   /* cgroup path from the cgroup id */
	uint64_t cgroup_by_proc;   /* cgroup path from /proc/<pid>/cgroup */
	uint64_t variants_dropped; /* port variants over the bound */
	uint64_t forgotten;	   /* entries dropped: the process exited */
	uint64_t swept;		   /* dropped: gone, its exit not seen */
	uint64_t cached;	   /* processes in the cache now */
};

struct ws_identity_cfg {
	const char *proc_root; /* "/proc"; tests point elsewhere */
	/* cgroup2 mount for cgroup id -> path; NULL: found in
	 * /proc/self/mounts; "": don't (use /proc/<pid>/cgroup) */
	const char *cgroup_root;
	size_t max_procs;		  /* 0: WS_IDENTITY_MAX_PROCS */
	const struct ws_service_cfg *svc; /* service.name rules; may be NULL */
	struct ws_k8s_store *k8s;	  /* pods of this node; may be NULL */
	const char *node_name;		  /* k8s.node.name; may be NULL */
	/* pod labels exported as k8s.pod.label.<name> */
	const char *const *labels;
	size_t n_labels;
	/* process.command_line redaction (zeroed: the built-in lists) */
	struct ws_redact redact;
};

/* What the caller knows of the task that made the syscall. */
struct ws_identity_query {
	uint32_t tgid;
	const char *comm;   /* task comm; may be NULL */
	uint64_t cgroup_id; /* 0: unknown */
	uint16_t port;	    /* local port of a server connection, else 0 */
};

struct ws_identity;

/* proc_root: "/proc" (tests may point elsewhere). NULL + errno on failure. */
struct ws_identity *ws_identity_new(const char *proc_root);
struct ws_identity *ws_identity_new_cfg(const struct ws_identity_cfg *cfg);
void ws_identity_free(struct ws_identity *id);

/*
 * The resource of the process (a reference the caller puts). comm is used
 * when /proc has nothing (the process already exited). Never NULL unless
 * out of memory.
 */
struct ws_resource *ws_identity_lookup(struct ws_identity *id,
				       const struct ws_identity_query *q);
/* ws_identity_lookup with only tgid and comm. */
struct ws_resource *ws_identity_resource(struct ws_identity *id, uint32_t tgid,
					 const char *comm);
/* Forget a process (it exited). */
void ws_identity_forget(struct ws_identity *id, uint32_t tgid);
/* Is process tgid gone from proc_root ("/proc")? Not on other errors. */
bool ws_proc_gone(const char *proc_root, uint32_t tgid);
/* Forget every process that is gone from /proc (its exit record was lost).
 * O(cached); returns how many were dropped. */
size_t ws_identity_sweep(struct ws_identity *id);
/*
 * Render a NUL-separated argv as one line with secrets replaced by
 * REDACTED: the value after a flag naming a secret (--pass X, --token=X,
 * --api-key X ...) and the password of scheme://user:password@host.
 */
void ws_cmdline_redact(const char *argv, size_t len, char *out, size_t cap);
void ws_identity_stats(const struct ws_identity *id,
		       struct ws_identity_stats *out);
/* Heap bytes the process cache holds (entries, their resources, the hash
 * table). O(processes): for agent_metrics, not the hot path. */
size_t ws_identity_bytes(const struct ws_identity *id);

/*
 * Resource attributes of a pod (and container, may be NULL) into a: the
 * k8s.* keys, k8s.pod.label.<name> for allowed labels (keys owned by id).
 * Used for resources and, by agent/peers.c, for the peer of a connection.
 */
void ws_identity_pod_attrs(const struct ws_identity *id, struct ws_attrs *a,
			   const struct ws_k8s_pod *pod,
			   const struct ws_k8s_container *c);

#endif
