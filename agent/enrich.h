/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Enrichment for `wirespan agent`: one object that owns process identity
 * (agent/identity.h), the pod store and its watcher (agent/k8s.h) and peer
 * lookup (agent/peers.h), configured from the agent's options. Span
 * builders get a connection's resource and peer attributes at connection
 * open; the spans of that connection share them (a reference each).
 */
#ifndef WIRESPAN_ENRICH_H
#define WIRESPAN_ENRICH_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "identity.h"
#include "jsonw.h"
#include "k8s.h"
#include "peers.h"
#include "service.h"

struct ws_enrich_cfg {
	const char *proc_root; /* "/proc" */
	const char *node_name; /* --node-name, else $NODE_NAME */
	const char *k8s_api;   /* --k8s-api, else in-cluster */
	const char *k8s_token; /* --k8s-token (path) */
	const char *k8s_ca;    /* --k8s-ca (path) */
	bool no_k8s;	       /* --no-k8s */
	unsigned k8s_sync_ms;  /* wait this long for the first pod list */
	const char *labels[WS_K8S_MAX_ALLOW]; /* --k8s-label NAME */
	size_t n_labels;
	struct ws_service_cfg svc; /* --service-rule NAME=COND,... */
	struct ws_redact redact;   /* process.command_line (redact.h) */
};

struct ws_enrich {
	struct ws_enrich_cfg cfg;
	struct ws_identity *ids;
	struct ws_k8s_store *store; /* NULL without Kubernetes */
	struct ws_k8s *k8s;
	struct ws_peers *peers;
};

void ws_enrich_cfg_init(struct ws_enrich_cfg *cfg);
/* One agent option (the long name without "--") with its argument.
 * Returns 0, -ENOENT (not ours), -EINVAL / -E2BIG (bad value). */
int ws_enrich_cfg_opt(struct ws_enrich_cfg *cfg, const char *name,
		      const char *arg);
/* Frees what the cfg owns (rules). */
void ws_enrich_cfg_free(struct ws_enrich_cfg *cfg);

/* Start: the pod watcher runs if Kubernetes is configured. Returns 0 or
 * -errno; takes over cfg (do not free it afterwards). */
int ws_enrich_start(struct ws_enrich *en, struct ws_enrich_cfg *cfg);
void ws_enrich_stop(struct ws_enrich *en);

/* The resource of connection c's process (a reference the caller puts). */
struct ws_resource *ws_enrich_resource(struct ws_enrich *en,
				       const struct ws_conn *c);
/* Peer attributes of c (a reference the caller puts), or NULL. */
struct ws_resource *ws_enrich_peer(struct ws_enrich *en,
				   const struct ws_conn *c);

/* Connection c, whose resource ws_enrich_resource gave, closed. */
void ws_enrich_conn_closed(struct ws_enrich *en, const struct ws_conn *c);
/* Process tgid exited: forget its identity. */
void ws_enrich_proc_exit(struct ws_enrich *en, uint32_t tgid);
/* Drop what belongs to processes gone without an exit record (call every
 * few seconds: O(cached)). Returns how many entries went. */
size_t ws_enrich_sweep(struct ws_enrich *en);

/* "identity", "k8s" and "peers" objects of agent_metrics. */
void ws_enrich_metrics(struct ws_enrich *en, struct ws_jsonw *w);

/* Usage lines of the enrichment options. */
extern const char ws_enrich_usage[];

#endif
