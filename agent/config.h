/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `wirespan agent` configuration: one table of keys (name, type, bounds,
 * whether SIGHUP may change it), filled in this order, later wins:
 *   defaults < YAML file (libyaml) < WIRESPAN_* environment < command line.
 * Every error names the key (and where the value came from) and the
 * reason. docs/CONFIGURATION.md documents every key.
 *
 * Environment: WIRESPAN_ + the key in upper case with '.' as '_', e.g.
 * export.batch.max_spans is WIRESPAN_EXPORT_BATCH_MAX_SPANS. Lists are
 * comma-separated there and on the command line.
 */
#ifndef WIRESPAN_CONFIG_H
#define WIRESPAN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "enrich.h"
#include "export/nats_export.h"
#include "http_spans.h"
#include "redact.h"
#include "subject_filter.h"
#include "wirespan/abi.h"

#define WS_CONFIG_DEFAULT_FILE "/etc/wirespan/wirespan.yaml"

enum ws_output {
	WS_OUTPUT_NATS = 0,
	WS_OUTPUT_STDOUT = 1,
};

struct ws_config {
	/* general */
	uint64_t output;    /* enum ws_output */
	uint64_t log_level; /* enum ws_log_level */
	uint64_t duration_s;
	/* capture */
	uint64_t pids[WS_MAX_FILTER], n_pids;
	uint64_t ports[WS_MAX_FILTER], n_ports;
	uint64_t max_capture, max_records, ringbuf_size;
	/* spans */
	uint64_t process_timeout_s, request_timeout_s;
	bool exclude_own;
	char *exclude[WS_SUBJECT_FILTER_MAX];
	uint64_t n_exclude;
	/* export */
	char *nats_urls, *nats_user, *nats_password, *nats_token;
	char *nkey_seed_file, *creds_file;
	bool tls;
	char *tls_ca, *tls_cert, *tls_key;
	uint64_t reconnect_wait_ms;
	uint64_t ping_interval_ms, max_pings_out, write_deadline_ms;
	char *prefix, *subject_template, *node;
	uint64_t mode; /* enum ws_export_mode */
	uint64_t batch_max_spans, batch_max_bytes, batch_max_delay_ms;
	uint64_t queue_max_bytes;
	char *js_stream;
	uint64_t js_max_wait_ms, js_max_pending;
	uint64_t drain_timeout_ms;
	uint64_t reconnect_settle_ms;
	/* http */
	char *http_routes[WS_HTTP_MAX_ROUTES];
	uint64_t n_http_routes;
	char *jwt_user_claim;
	char *api_key_headers[WS_AUTH_MAX_HEADERS];
	uint64_t n_api_key_headers;
	uint64_t key_hash; /* enum ws_key_hash */
	char *key_hash_secret_file;
	char *capture_headers[WS_AUTH_MAX_HEADERS];
	uint64_t n_capture_headers;
	uint64_t http_request_timeout_s;
	/* JWT verification (jwks.h): no file, no verification */
	char *jwks_file;
	char *jwt_issuers[WS_JWT_MAX_ACCEPT];
	uint64_t n_jwt_issuers;
	char *jwt_audiences[WS_JWT_MAX_ACCEPT];
	uint64_t n_jwt_audiences;
	uint64_t jwt_leeway_s, jwt_cache_size;
	/* health endpoint: host:port, NULL = none */
	char *health_listen;
	/* enrichment: Kubernetes and service.name */
	bool k8s_enabled;
	char *node_name, *k8s_api, *k8s_token_file, *k8s_ca_file;
	char *k8s_labels[WS_K8S_MAX_ALLOW];
	uint64_t n_k8s_labels;
	char *service_rules[WS_SERVICE_MAX_RULES];
	uint64_t n_service_rules;
	/* redaction: extra secret name fragments (redact.h) */
	char *redact_extra[WS_REDACT_MAX_EXTRA];
	uint64_t n_redact_extra;
};

/* A value from the command line (or a test): key = value. */
struct ws_config_override {
	const char *key;
	const char *value;
	const char *src; /* for messages, e.g. "--port" */
};

/* Defaults. */
void ws_config_init(struct ws_config *c);
void ws_config_free(struct ws_config *c);

/*
 * Set one key from text (a list: comma-separated, replacing the list;
 * append: add to the list instead). 0, or -1 with "KEY: reason" in err.
 */
int ws_config_set(struct ws_config *c, const char *key, const char *value,
		  bool append, char *err, size_t errlen);

/* Read a YAML file over c. 0, or -1 with "FILE:LINE: KEY: reason". */
int ws_config_read_file(struct ws_config *c, const char *path, char *err,
			size_t errlen);

/* Apply the WIRESPAN_* variables of environ (NULL: the process's). */
int ws_config_read_env(struct ws_config *c, char *const *environ_, char *err,
		       size_t errlen);

/* The checks that need several keys, files readable, the subject
 * template. 0, or -1 with "KEY: reason". */
int ws_config_validate(const struct ws_config *c, char *err, size_t errlen);

/*
 * The whole load: defaults, the file (path NULL: the default file if it
 * exists; else it must exist), the environment, the overrides in order
 * (a list key's first override replaces the list, later ones add), then
 * validate. 0, or -1 with the message in err (c is then freed).
 */
int ws_config_load(struct ws_config *c, const char *path,
		   const struct ws_config_override *ov, size_t n_ov,
		   char *const *environ_, char *err, size_t errlen);

/* May SIGHUP change this key? */
bool ws_config_reloadable(const char *key);
/* Call fn for each key whose value differs between a and b. */
void ws_config_diff(const struct ws_config *a, const struct ws_config *b,
		    void (*fn)(const char *key, bool reloadable, void *ctx),
		    void *ctx);
/* Is name a key? */
bool ws_config_known(const char *key);

/* Every key and its value as "key: value" lines, secrets redacted. */
void ws_config_print(const struct ws_config *c, FILE *f);

/* The export's configuration (pointers into c). */
void ws_config_export_cfg(const struct ws_config *c,
			  struct ws_nats_export_cfg *out);
/*
 * The HTTP span builder's configuration (pointers into c), with the checks
 * that need the HTTP modules: route syntax, header names, credentials never
 * captured. 0, or -1 with "KEY: reason". The HMAC secret is not loaded.
 */
int ws_config_http_cfg(const struct ws_config *c, struct ws_http_spans_cfg *out,
		       char *err, size_t errlen);
/* The JWT verifier's configuration (pointers into c). */
void ws_config_jwt_cfg(const struct ws_config *c,
		       struct ws_jwt_verifier_cfg *out);
/*
 * The enrichment's configuration (pointers into c; service rules parsed):
 * 0, or -1 with "KEY: reason". Free with ws_enrich_cfg_free.
 */
int ws_config_enrich_cfg(const struct ws_config *c, struct ws_enrich_cfg *out,
			 char *err, size_t errlen);
/* The redaction policy (pointers into c): 0, or -1 with "KEY: reason". */
int ws_config_redact(const struct ws_config *c, struct ws_redact *out,
		     char *err, size_t errlen);
/* Fill f (cleared first) with the subjects that derive no spans: the
 * user's, plus the telemetry subjects unless spans.exclude_own_telemetry
 * is false. 0 or -errno. */
int ws_config_exclude_filter(const struct ws_config *c,
			     struct ws_subject_filter *f);

#endif
