/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pods of this node, as the Kubernetes API server describes them: parsed
 * from Pod JSON (json-c) and kept in a bounded store indexed by pod uid,
 * container id and pod IP.
 *
 * The store is shared by two threads: the pod watcher (agent/k8s.c) writes,
 * the pipeline thread reads through ws_k8s_store_with_*(), which run a
 * callback under the store's lock so that nothing is copied on the hot path
 * and nothing is freed under a reader.
 *
 * Bounds: WS_K8S_MAX_PODS pods (a node runs at most a few hundred; 10k is
 * the design point), the least recently updated pod is evicted when full
 * (counted); WS_K8S_MAX_CONTAINERS containers and WS_K8S_MAX_LABELS kept
 * labels per pod (the rest counted). Only the labels named in the
 * allow-list are kept, plus app.kubernetes.io/name and app (service.name).
 */
#ifndef WIRESPAN_K8S_PODS_H
#define WIRESPAN_K8S_PODS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

#include "cgroup.h"

/* Pods kept at most. */
#define WS_K8S_MAX_PODS 16384
/* Containers (incl. init and ephemeral) kept per pod. */
#define WS_K8S_MAX_CONTAINERS 16
/* Labels kept per pod (allow-list + the two service.name labels). */
#define WS_K8S_MAX_LABELS 16
/* Label names in the allow-list. */
#define WS_K8S_MAX_ALLOW 14
/* IPs per pod (dual stack). */
#define WS_K8S_MAX_IPS 2

struct ws_k8s_pod;

/*
 * A pod is one allocation (10k of them must stay small; docs/BENCHMARKS.md,
 * agent memory): the struct, then its containers, IPs and labels, then
 * every string it keeps. Nothing else of the Pod object is kept.
 */
struct ws_k8s_container {
	struct ws_k8s_pod *pod;
	const char *name;
	const char *runtime; /* from containerID's scheme; NULL if unknown */
	uint8_t id[WS_CONTAINER_ID_LEN / 2]; /* binary; has_id */
	bool has_id;
	UT_hash_handle hh; /* by id (only containers with an id) */
};

struct ws_k8s_label {
	const char *key; /* points into the store's allow-list */
	const char *value;
};

/* The workload that owns a pod, as k8s.<kind>.name resource keys. */
struct ws_k8s_owner {
	const char *key; /* "k8s.deployment.name", ... ; NULL if none */
	const char *name;
};

struct ws_k8s_pod_ip {
	struct ws_k8s_pod *pod;
	uint8_t addr[16]; /* IPv4 as IPv4-mapped IPv6, like struct ws_tuple */
	UT_hash_handle hh;
};

struct ws_k8s_pod {
	const char *uid, *name, *ns, *node,
		*service_account; /* ns..: or NULL */
	bool host_network;
	uint8_t n_owner, n_labels, n_containers, n_ips;
	/* the controller chain: replicaset + deployment, job + cronjob */
	struct ws_k8s_owner owner[2];
	/* in the pod's block, sized to fit */
	struct ws_k8s_label *labels;
	struct ws_k8s_container *containers;
	struct ws_k8s_pod_ip *ips;
	uint64_t gen;	/* store generation of its last update */
	uint64_t epoch; /* list epoch it was last seen in */
	UT_hash_handle hh;
	struct ws_k8s_pod *prev, *next; /* LRU by update */
};

struct ws_k8s_store_stats {
	uint64_t pods; /* now */
	uint64_t added, updated, deleted;
	uint64_t evicted;	     /* store full */
	uint64_t purged;	     /* gone at a re-list */
	uint64_t containers_dropped; /* beyond WS_K8S_MAX_CONTAINERS */
	uint64_t labels_dropped; /* allowed labels beyond WS_K8S_MAX_LABELS */
	uint64_t bad_pods;	 /* objects without metadata.uid/name */
	uint64_t nomem;
};

struct ws_k8s_store;
struct json_object;

/*
 * A store of at most max_pods pods (0: WS_K8S_MAX_PODS) keeping the labels
 * in allow (n_allow names, copied; more than WS_K8S_MAX_ALLOW: -E2BIG).
 * NULL + errno on failure.
 */
struct ws_k8s_store *ws_k8s_store_new(size_t max_pods, const char *const *allow,
				      size_t n_allow);
void ws_k8s_store_free(struct ws_k8s_store *st);

/*
 * Parse one Pod object and add or replace it (by uid). epoch: the list
 * epoch (ws_k8s_store_purge removes pods of older epochs). Returns 0,
 * -EINVAL (not a pod), -ENOMEM.
 */
int ws_k8s_store_upsert(struct ws_k8s_store *st, struct json_object *pod,
			uint64_t epoch);
/* Remove the pod with the uid of this Pod object. 0 or -ENOENT. */
int ws_k8s_store_delete(struct ws_k8s_store *st, struct json_object *pod);
/* Remove every pod not seen in epoch (after a complete list). */
size_t ws_k8s_store_purge(struct ws_k8s_store *st, uint64_t epoch);

/*
 * Call fn(pod, c, ctx) under the lock with the pod (and container, NULL if
 * not found) for a pod uid and/or a container id (either may be NULL or "");
 * the container id wins. Returns fn's result, or -ENOENT if no pod matched
 * (fn not called). fn must not call back into the store.
 */
typedef int (*ws_k8s_pod_fn)(const struct ws_k8s_pod *pod,
			     const struct ws_k8s_container *c, void *ctx);
int ws_k8s_store_with_pod(struct ws_k8s_store *st, const char *pod_uid,
			  const char *container_id, ws_k8s_pod_fn fn,
			  void *ctx);
/* The same for the pod that has this IP (16 bytes, IPv4-mapped). Pods on the
 * host network are not indexed by IP. */
int ws_k8s_store_with_ip(struct ws_k8s_store *st, const uint8_t addr[16],
			 ws_k8s_pod_fn fn, void *ctx);

/* Changes so far (every upsert/delete/purge adds one): readers that cached
 * something derived from the store compare it. Lock-free. */
uint64_t ws_k8s_store_gen(const struct ws_k8s_store *st);
/* The generation of pod uid's last update, or 0 if not in the store. */
uint64_t ws_k8s_store_pod_gen(struct ws_k8s_store *st, const char *pod_uid);

void ws_k8s_store_stats(struct ws_k8s_store *st,
			struct ws_k8s_store_stats *out);
/* Heap bytes the store holds (malloc_usable_size of every block, and the
 * hash tables). O(pods): for agent_metrics, not the hot path. */
size_t ws_k8s_store_bytes(struct ws_k8s_store *st);

/* Helpers the store uses, exposed for tests. */
/* The value of label key on pod, or NULL. */
const char *ws_k8s_pod_label(const struct ws_k8s_pod *pod, const char *key);
/* The workload name of a pod: deployment, statefulset, daemonset, cronjob,
 * job, then replicaset/replicationcontroller; NULL if none. */
const char *ws_k8s_pod_workload(const struct ws_k8s_pod *pod);

#endif
