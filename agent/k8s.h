/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod watcher: a thread that lists and watches this node's pods on the
 * Kubernetes API server (agent/k8s_watch.h has the protocol) with libcurl
 * and keeps agent/k8s_pods.h's store current.
 *
 * In-cluster configuration: https://$KUBERNETES_SERVICE_HOST:
 * $KUBERNETES_SERVICE_PORT, the service-account token (re-read for every
 * request: bound tokens rotate) and CA under
 * /var/run/secrets/kubernetes.io/serviceaccount/, the node from NODE_NAME
 * (downward API). Every part can be overridden (tests use a plain-http fake
 * API server).
 */
#ifndef WIRESPAN_K8S_H
#define WIRESPAN_K8S_H

#include <stdbool.h>
#include <stddef.h>

#include "k8s_pods.h"
#include "k8s_watch.h"

#define WS_K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

struct ws_k8s_cfg {
	const char *api_url;	/* NULL: from KUBERNETES_SERVICE_HOST/PORT */
	const char *token_path; /* NULL: WS_K8S_SA_DIR/token; "": none */
	const char *ca_path;	/* NULL: WS_K8S_SA_DIR/ca.crt */
	const char *node_name;	/* NULL: $NODE_NAME */
};

struct ws_k8s;

/*
 * Is there a Kubernetes API to watch? (an API URL was given, or the
 * in-cluster environment is there). Fills url (cap bytes) if so.
 */
bool ws_k8s_configured(const struct ws_k8s_cfg *cfg, char *url, size_t cap);

/* Start the watcher thread writing into store. NULL + errno on failure
 * (EINVAL: no API URL or no node name). */
struct ws_k8s *ws_k8s_start(const struct ws_k8s_cfg *cfg,
			    struct ws_k8s_store *store);
/* Wait until the first complete list (or timeout_ms). true if synced. */
bool ws_k8s_wait_synced(struct ws_k8s *k, unsigned timeout_ms);
void ws_k8s_stop(struct ws_k8s *k);
/* The node name in use. */
const char *ws_k8s_node(const struct ws_k8s *k);

struct ws_k8s_stats {
	struct ws_k8s_watch_stats watch;
	uint64_t requests;
	uint64_t http_errors;  /* responses other than 200 */
	uint64_t net_errors;   /* transfers that failed (curl error) */
	uint64_t token_errors; /* token file unreadable */
};
void ws_k8s_stats(struct ws_k8s *k, struct ws_k8s_stats *out);

#endif
