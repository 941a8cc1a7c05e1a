/* SPDX-License-Identifier: Apache-2.0 */
/*
 * service.name, in this order (docs/ARCHITECTURE.md, "service.name"):
 *   1. the first explicit rule that matches (pod label, namespace, container
 *      name, executable name, local port of a server connection);
 *   2. the pod label app.kubernetes.io/name, then app;
 *   3. the owner workload name (deployment, statefulset, daemonset, cronjob,
 *      job, replicaset);
 *   4. the container name (Kubernetes, else the container runtime's id is
 *      no name: skipped);
 *   5. unknown_service:<process.executable.name>.
 * Pure: facts in, a name out.
 */
#ifndef WIRESPAN_SERVICE_H
#define WIRESPAN_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Rules at most; conditions per rule at most. */
#define WS_SERVICE_MAX_RULES 32
#define WS_SERVICE_MAX_CONDS 4

enum ws_service_cond_kind {
	WS_SC_LABEL = 1, /* label:KEY=GLOB */
	WS_SC_NAMESPACE, /* namespace:GLOB */
	WS_SC_CONTAINER, /* container:GLOB */
	WS_SC_EXE,	 /* exe:GLOB */
	WS_SC_PORT,	 /* port:N (local port of a server connection) */
};

struct ws_service_cond {
	uint8_t kind;
	char *key;   /* label name (WS_SC_LABEL) */
	char *value; /* fnmatch(3) pattern */
	uint16_t port;
};

struct ws_service_rule {
	char *name; /* the service.name it gives */
	struct ws_service_cond conds[WS_SERVICE_MAX_CONDS];
	uint8_t n_conds;
};

struct ws_service_cfg {
	struct ws_service_rule rules[WS_SERVICE_MAX_RULES];
	uint8_t n_rules;
};

/* What is known of the emitter; NULL/0 fields are unknown. */
struct ws_service_facts {
	const char *exe;       /* process.executable.name */
	const char *ns;	       /* k8s.namespace.name */
	const char *container; /* k8s.container.name */
	const char *workload;  /* owner workload name */
	uint16_t port;	       /* local port, server connections only */
	/* pod labels: value of key, or NULL */
	const char *(*label)(const void *ctx, const char *key);
	const void *label_ctx;
};

/* Which step of the order gave the name (for tests and docs). */
enum ws_service_source {
	WS_SVC_RULE = 1,
	WS_SVC_LABEL,
	WS_SVC_WORKLOAD,
	WS_SVC_CONTAINER,
	WS_SVC_UNKNOWN,
};

/*
 * Add a rule "NAME=COND[,COND...]", e.g.
 * "checkout=namespace:shop,label:tier=web". Returns 0, -EINVAL (syntax),
 * -E2BIG (too many rules or conditions), -ENOMEM.
 */
int ws_service_rule_add(struct ws_service_cfg *cfg, const char *spec);
void ws_service_cfg_free(struct ws_service_cfg *cfg);
/* Does any rule look at ports? (then resources depend on the port) */
bool ws_service_cfg_has_port(const struct ws_service_cfg *cfg);
/* Does a rule name a label? The names are added to the k8s allow-list. */
size_t ws_service_cfg_labels(const struct ws_service_cfg *cfg, const char **out,
			     size_t cap);

/* service.name into buf; returns where it came from. */
enum ws_service_source ws_service_name(const struct ws_service_cfg *cfg,
				       const struct ws_service_facts *f,
				       char *buf, size_t cap);

#endif
