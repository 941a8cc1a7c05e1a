/* SPDX-License-Identifier: Apache-2.0 */
/* `wirespan agent` configuration: key table, YAML, environment, checks. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "config.h"
#include "loader.h"
#include "log.h"
#include "natsconn.h"

extern char **environ;

enum ktype {
	T_U64,	    /* integer in [min, max] */
	T_BOOL,	    /* true/false, yes/no, on/off, 1/0 */
	T_ENUM,	    /* one of names[], stored as its index */
	T_STR,	    /* string; empty or null unsets it */
	T_STRS,	    /* strings joined with ',' (a YAML list or "a,b") */
	T_U64_LIST, /* integers in [min, max], at most cap */
	T_STR_LIST, /* strings, at most cap */
};

#define F_RELOAD 0x01  /* SIGHUP may change it */
#define F_SECRET 0x02  /* never printed */
#define F_FILE 0x04    /* a file that must be readable */
#define F_POW2 0x08    /* a power of two */
#define F_SIZE 0x10    /* bytes: KiB, MiB, GiB suffixes allowed */
#define F_PATTERN 0x20 /* list of NATS subject patterns */
#define F_SEMI 0x40    /* list items hold commas: ';' separates them */

struct key {
	const char *name;
	uint8_t type, flags;
	size_t off, n_off; /* value; list length */
	uint64_t min, max;
	unsigned cap; /* lists */
	const char *const *names;
};

static const char *const output_names[] = {"nats", "stdout", NULL};
static const char *const level_names[] = {"error", "warn", "info", "debug",
					  NULL};
static const char *const mode_names[] = {"core", "jetstream", NULL};
/* index = enum ws_key_hash */
static const char *const key_hash_names[] = {"hmac", "murmur3", NULL};

#define O(f) offsetof(struct ws_config, f)
#define U64(n, f, lo, hi, fl)                          \
	{                                              \
		n, T_U64, fl, O(f), 0, lo, hi, 0, NULL \
	}
#define STR(n, f, fl)                                \
	{                                            \
		n, T_STR, fl, O(f), 0, 0, 0, 0, NULL \
	}

static const struct key keys[] = {
	{"output", T_ENUM, 0, O(output), 0, 0, 0, 0, output_names},
	{"log_level", T_ENUM, F_RELOAD, O(log_level), 0, 0, 0, 0, level_names},
	U64("duration_s", duration_s, 0, 86400ull * 365, 0),
	{"capture.pids", T_U64_LIST, 0, O(pids), O(n_pids), 1, UINT32_MAX,
	 WS_MAX_FILTER, NULL},
	{"capture.ports", T_U64_LIST, 0, O(ports), O(n_ports), 1, 65535,
	 WS_MAX_FILTER, NULL},
	U64("capture.max_capture", max_capture, 1, WS_MAX_CAPTURE, F_SIZE),
	U64("capture.max_records", max_records, 1, WS_MAX_RECORDS, 0),
	U64("capture.ringbuf_size", ringbuf_size, 4096, 1u << 30,
	    F_SIZE | F_POW2),
	U64("spans.process_timeout_s", process_timeout_s, 1, 3600, 0),
	U64("spans.request_timeout_s", request_timeout_s, 1, 3600, 0),
	{"spans.exclude_own_telemetry", T_BOOL, F_RELOAD, O(exclude_own), 0, 0,
	 0, 0, NULL},
	{"spans.exclude_subjects", T_STR_LIST, F_RELOAD | F_PATTERN, O(exclude),
	 O(n_exclude), 0, 0, WS_SUBJECT_FILTER_MAX - 4, NULL},
	{"export.nats.urls", T_STRS, 0, O(nats_urls), 0, 0, 0, 0, NULL},
	STR("export.nats.user", nats_user, 0),
	STR("export.nats.password", nats_password, F_SECRET),
	STR("export.nats.token", nats_token, F_SECRET),
	STR("export.nats.nkey_seed_file", nkey_seed_file, F_FILE),
	STR("export.nats.creds_file", creds_file, F_FILE),
	{"export.nats.tls.enabled", T_BOOL, 0, O(tls), 0, 0, 0, 0, NULL},
	STR("export.nats.tls.ca", tls_ca, F_FILE),
	STR("export.nats.tls.cert", tls_cert, F_FILE),
	STR("export.nats.tls.key", tls_key, F_FILE),
	U64("export.nats.reconnect_wait_ms", reconnect_wait_ms, 10, 60000, 0),
	U64("export.nats.ping_interval_ms", ping_interval_ms, 100, 3600000, 0),
	U64("export.nats.max_pings_out", max_pings_out, 1, 100, 0),
	U64("export.nats.write_deadline_ms", write_deadline_ms, 100, 600000, 0),
	STR("export.subject.prefix", prefix, 0),
	STR("export.subject.template", subject_template, 0),
	STR("export.node", node, 0),
	{"export.mode", T_ENUM, 0, O(mode), 0, 0, 0, 0, mode_names},
	U64("export.batch.max_spans", batch_max_spans, 1, 65536, F_RELOAD),
	U64("export.batch.max_bytes", batch_max_bytes, 1024, 64u << 20,
	    F_RELOAD | F_SIZE),
	U64("export.batch.max_delay_ms", batch_max_delay_ms, 1, 60000,
	    F_RELOAD),
	U64("export.queue.max_bytes", queue_max_bytes, 64 * 1024, 16ull << 30,
	    F_RELOAD | F_SIZE),
	STR("export.jetstream.stream", js_stream, 0),
	U64("export.jetstream.max_wait_ms", js_max_wait_ms, 100, 600000, 0),
	U64("export.jetstream.max_pending", js_max_pending, 1, 65536, 0),
	U64("export.drain_timeout_ms", drain_timeout_ms, 0, 600000, 0),
	U64("export.reconnect_settle_ms", reconnect_settle_ms, 0, 60000, 0),
	{"http.routes", T_STR_LIST, 0, O(http_routes), O(n_http_routes), 0, 0,
	 WS_HTTP_MAX_ROUTES, NULL},
	STR("http.jwt_user_claim", jwt_user_claim, 0),
	{"http.api_key_headers", T_STR_LIST, 0, O(api_key_headers),
	 O(n_api_key_headers), 0, 0, WS_AUTH_MAX_HEADERS, NULL},
	{"http.key_hash", T_ENUM, 0, O(key_hash), 0, 0, 0, 0, key_hash_names},
	STR("http.key_hash_secret_file", key_hash_secret_file, 0),
	{"http.capture_headers", T_STR_LIST, 0, O(capture_headers),
	 O(n_capture_headers), 0, 0, WS_AUTH_MAX_HEADERS, NULL},
	U64("http.request_timeout_s", http_request_timeout_s, 1, 3600, 0),
	STR("http.jwks_file", jwks_file, F_RELOAD | F_FILE),
	{"http.jwt_issuers", T_STR_LIST, F_RELOAD, O(jwt_issuers),
	 O(n_jwt_issuers), 0, 0, WS_JWT_MAX_ACCEPT, NULL},
	{"http.jwt_audiences", T_STR_LIST, F_RELOAD, O(jwt_audiences),
	 O(n_jwt_audiences), 0, 0, WS_JWT_MAX_ACCEPT, NULL},
	U64("http.jwt_leeway_s", jwt_leeway_s, 0, 600, F_RELOAD),
	U64("http.jwt_cache_size", jwt_cache_size, 0, 1u << 20, 0),
	STR("health.listen", health_listen, 0),
	{"k8s.enabled", T_BOOL, 0, O(k8s_enabled), 0, 0, 0, 0, NULL},
	STR("k8s.node_name", node_name, 0),
	STR("k8s.api", k8s_api, 0),
	STR("k8s.token_file", k8s_token_file, 0),
	STR("k8s.ca_file", k8s_ca_file, F_FILE),
	{"k8s.labels", T_STR_LIST, 0, O(k8s_labels), O(n_k8s_labels), 0, 0,
	 WS_K8S_MAX_ALLOW, NULL},
	{"service.rules", T_STR_LIST, F_SEMI, O(service_rules),
	 O(n_service_rules), 0, 0, WS_SERVICE_MAX_RULES, NULL},
	{"redact.extra_names", T_STR_LIST, 0, O(redact_extra),
	 O(n_redact_extra), 0, 0, WS_REDACT_MAX_EXTRA, NULL},
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static const struct key *find_key(const char *name)
{
	size_t i;

	for (i = 0; i < N_KEYS; i++)
		if (!strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

bool ws_config_known(const char *key)
{
	return find_key(key) != NULL;
}

bool ws_config_reloadable(const char *key)
{
	const struct key *k = find_key(key);

	return k && (k->flags & F_RELOAD);
}

#define FIELD(c, k, type) ((type *)((char *)(c) + (k)->off))
#define COUNT(c, k) ((uint64_t *)((char *)(c) + (k)->n_off))

void ws_config_init(struct ws_config *c)
{
	memset(c, 0, sizeof(*c));
	c->output = WS_OUTPUT_NATS;
	c->log_level = WS_LOG_WARN;
	c->max_capture = WS_DEFAULT_CAPTURE;
	c->max_records = WS_DEFAULT_RECORDS;
	c->ringbuf_size = WS_DEFAULT_RINGBUF;
	c->process_timeout_s = 10;
	c->request_timeout_s = 30;
	c->exclude_own = true;
	/* shown by --check-config; NULL (out of memory) means the same */
	c->nats_urls = strdup(WS_NATS_DEFAULT_URL);
	c->prefix = strdup(WS_EXPORT_DEFAULT_PREFIX);
	c->subject_template = strdup(WS_EXPORT_DEFAULT_TEMPLATE);
	c->reconnect_wait_ms = 250;
	c->ping_interval_ms = WS_NATS_PING_INTERVAL_MS;
	c->max_pings_out = WS_NATS_MAX_PINGS_OUT;
	c->write_deadline_ms = WS_NATS_WRITE_DEADLINE_MS;
	c->mode = WS_EXPORT_CORE;
	c->batch_max_spans = 1024;
	c->batch_max_bytes = 1024 * 1024;
	c->batch_max_delay_ms = 1000;
	c->queue_max_bytes = 64ull << 20;
	c->js_max_wait_ms = 5000;
	c->js_max_pending = 64;
	c->drain_timeout_ms = 5000;
	c->reconnect_settle_ms = 500;
	c->jwt_user_claim = strdup("sub");
	c->key_hash = WS_KEY_HASH_HMAC;
	c->key_hash_secret_file = strdup(WS_AUTH_DEFAULT_SECRET_FILE);
	c->http_request_timeout_s = 60;
	c->jwt_leeway_s = WS_JWT_DEFAULT_LEEWAY_S;
	c->jwt_cache_size = WS_JWT_DEFAULT_CACHE;
	c->k8s_enabled = true;
}

static void list_clear(struct ws_config *c, const struct key *k)
{
	uint64_t i;

	if (k->type == T_STR_LIST)
		for (i = 0; i < *COUNT(c, k); i++) {
			free(FIELD(c, k, char *)[i]);
			FIELD(c, k, char *)[i] = NULL;
		}
	*COUNT(c, k) = 0;
}

void ws_config_free(struct ws_config *c)
{
	size_t i;

	for (i = 0; i < N_KEYS; i++) {
		const struct key *k = &keys[i];

		if (k->type == T_STR || k->type == T_STRS) {
			if (k->flags & F_SECRET && *FIELD(c, k, char *))
				explicit_bzero(*FIELD(c, k, char *),
					       strlen(*FIELD(c, k, char *)));
			free(*FIELD(c, k, char *));
			*FIELD(c, k, char *) = NULL;
		} else if (k->type == T_STR_LIST) {
			list_clear(c, k);
		}
	}
}

/* ---- values from text --------------------------------------------------- */

static int parse_u64(const struct key *k, const char *v, uint64_t *out,
		     char *err, size_t errlen)
{
	static const struct {
		const char *sfx;
		unsigned shift;
	} sfx[] = {{"", 0},    {"k", 10},   {"K", 10}, {"KiB", 10},
		   {"M", 20},  {"MiB", 20}, {"G", 30}, {"GiB", 30},
		   {"Ki", 10}, {"Mi", 20},  {"Gi", 30}};
	unsigned long long x;
	char *end;
	size_t i;

	while (*v == ' ')
		v++;
	if (!isdigit((unsigned char)*v))
		goto bad;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno)
		goto bad;
	for (i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		if (strcmp(end, sfx[i].sfx))
			continue;
		if (i && !(k->flags & F_SIZE))
			goto bad;
		if (sfx[i].shift && x > (UINT64_MAX >> sfx[i].shift))
			goto range;
		x <<= sfx[i].shift;
		if (x < k->min || x > k->max)
			goto range;
		if ((k->flags & F_POW2) && (x & (x - 1)))
			return fail(err, errlen,
				    "%s: must be a power of two (got %s)",
				    k->name, v);
		*out = x;
		return 0;
	}
bad:
	return fail(err, errlen, "%s: not %s: \"%s\"", k->name,
		    k->flags & F_SIZE ? "a size in bytes (e.g. 65536, 64KiB)"
				      : "a whole number",
		    v);
range:
	return fail(err, errlen, "%s: must be from %llu to %llu (got %s)",
		    k->name, (unsigned long long)k->min,
		    (unsigned long long)k->max, v);
}

static int parse_bool(const struct key *k, const char *v, bool *out, char *err,
		      size_t errlen)
{
	static const char *const t[] = {"true", "yes", "on", "1"};
	static const char *const f[] = {"false", "no", "off", "0"};
	size_t i;

	for (i = 0; i < 4; i++) {
		if (!strcasecmp(v, t[i]) || !strcasecmp(v, f[i])) {
			*out = !strcasecmp(v, t[i]);
			return 0;
		}
	}
	return fail(err, errlen, "%s: not true or false: \"%s\"", k->name, v);
}

static int set_one(struct ws_config *c, const struct key *k, const char *v,
		   char *err, size_t errlen)
{
	const char *why;
	uint64_t x;
	size_t i;
	char *s;

	switch (k->type) {
	case T_U64:
		return parse_u64(k, v, FIELD(c, k, uint64_t), err, errlen);
	case T_BOOL:
		return parse_bool(k, v, FIELD(c, k, bool), err, errlen);
	case T_ENUM:
		for (i = 0; k->names[i]; i++) {
			if (!strcmp(v, k->names[i])) {
				*FIELD(c, k, uint64_t) = i;
				return 0;
			}
		}
		return fail(err, errlen, "%s: \"%s\" is not one of %s%s%s",
			    k->name, v, k->names[0], k->names[1] ? ", " : "",
			    k->names[1] ? k->names[1] : "");
	case T_U64_LIST:
		if (*COUNT(c, k) >= k->cap)
			return fail(err, errlen, "%s: more than %u values",
				    k->name, k->cap);
		if (parse_u64(k, v, &x, err, errlen))
			return -1;
		FIELD(c, k, uint64_t)[(*COUNT(c, k))++] = x;
		return 0;
	case T_STR_LIST:
		if (*COUNT(c, k) >= k->cap)
			return fail(err, errlen, "%s: more than %u values",
				    k->name, k->cap);
		if ((k->flags & F_PATTERN) && ws_subject_pattern_check(v, &why))
			return fail(err, errlen,
				    "%s: \"%s\" is not a NATS subject "
				    "pattern: %s",
				    k->name, v, why);
		s = strdup(v);
		if (!s)
			return fail(err, errlen, "%s: out of memory", k->name);
		FIELD(c, k, char *)[(*COUNT(c, k))++] = s;
		return 0;
	case T_STRS:
		if (*FIELD(c, k, char *)) {
			s = malloc(strlen(*FIELD(c, k, char *)) + strlen(v) +
				   2);
			if (s)
				sprintf(s, "%s,%s", *FIELD(c, k, char *), v);
		} else {
			s = strdup(v);
		}
		if (!s)
			return fail(err, errlen, "%s: out of memory", k->name);
		free(*FIELD(c, k, char *));
		*FIELD(c, k, char *) = s;
		return 0;
	default: /* T_STR */
		s = *v ? strdup(v) : NULL;
		if (*v && !s)
			return fail(err, errlen, "%s: out of memory", k->name);
		free(*FIELD(c, k, char *));
		*FIELD(c, k, char *) = s;
		return 0;
	}
}

static bool is_list(const struct key *k)
{
	return k->type == T_U64_LIST || k->type == T_STR_LIST ||
	       k->type == T_STRS;
}

static void unset_list(struct ws_config *c, const struct key *k)
{
	if (k->type == T_STRS) {
		free(*FIELD(c, k, char *));
		*FIELD(c, k, char *) = NULL;
	} else {
		list_clear(c, k);
	}
}

int ws_config_set(struct ws_config *c, const char *key, const char *value,
		  bool append, char *err, size_t errlen)
{
	const struct key *k = find_key(key);
	char *copy, *tok, *save;
	const char *sep;
	int rc = 0;

	if (!k)
		return fail(err, errlen, "%s: unknown key", key);
	if (!value)
		value = "";
	if (!is_list(k)) {
		if (!*value && k->type != T_STR)
			return fail(err, errlen, "%s: needs a value", key);
		return set_one(c, k, value, err, errlen);
	}
	if (!append)
		unset_list(c, k);
	copy = strdup(value);
	if (!copy)
		return fail(err, errlen, "%s: out of memory", key);
	sep = k->flags & F_SEMI ? ";" : ",";
	for (tok = strtok_r(copy, sep, &save); tok && !rc;
	     tok = strtok_r(NULL, sep, &save)) {
		while (*tok == ' ')
			tok++;
		if (*tok)
			rc = set_one(c, k, tok, err, errlen);
	}
	free(copy);
	return rc;
}

/* ---- YAML --------------------------------------------------------------- */

static bool yaml_null(const yaml_node_t *n)
{
	const char *v = (const char *)n->data.scalar.value;

	return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	       (!*v || !strcmp(v, "~") || !strcmp(v, "null"));
}

/* Is path a prefix of a key (a section such as "export.nats")? */
static bool is_section(const char *path)
{
	size_t i, l = strlen(path);

	for (i = 0; i < N_KEYS; i++)
		if (!strncmp(keys[i].name, path, l) && keys[i].name[l] == '.')
			return true;
	return false;
}

static int walk(struct ws_config *c, yaml_document_t *doc, yaml_node_t *map,
		const char *prefix, char *err, size_t errlen)
{
	yaml_node_pair_t *pr;
	char path[256];
	const struct key *k;
	size_t line;

	for (pr = map->data.mapping.pairs.start;
	     pr < map->data.mapping.pairs.top; pr++) {
		yaml_node_t *kn = yaml_document_get_node(doc, pr->key);
		yaml_node_t *vn = yaml_document_get_node(doc, pr->value);

		line = kn->start_mark.line + 1;
		if (kn->type != YAML_SCALAR_NODE)
			return fail(err, errlen,
				    "line %zu: %s: a key must be "
				    "a plain name",
				    line, *prefix ? prefix : "(top)");
		snprintf(path, sizeof(path), "%s%s%s", prefix,
			 *prefix ? "." : "", (char *)kn->data.scalar.value);
		k = find_key(path);
		if (!k && vn->type == YAML_MAPPING_NODE && is_section(path)) {
			if (walk(c, doc, vn, path, err, errlen))
				return -1;
			continue;
		}
		if (!k)
			return fail(err, errlen, "line %zu: %s: %s", line, path,
				    is_section(path)
					    ? "is a section: give it sub-keys"
					    : "unknown key");
		if (vn->type == YAML_MAPPING_NODE)
			return fail(err, errlen,
				    "line %zu: %s: expected a value, not a "
				    "mapping",
				    line, path);
		if (vn->type == YAML_SEQUENCE_NODE) {
			yaml_node_item_t *it;

			if (!is_list(k))
				return fail(err, errlen,
					    "line %zu: %s: expected one value, "
					    "not a list",
					    line, path);
			unset_list(c, k);
			for (it = vn->data.sequence.items.start;
			     it < vn->data.sequence.items.top; it++) {
				yaml_node_t *e =
					yaml_document_get_node(doc, *it);

				if (e->type != YAML_SCALAR_NODE)
					return fail(err, errlen,
						    "line %zu: %s: list items "
						    "must be plain values",
						    e->start_mark.line + 1,
						    path);
				if (set_one(c, k, (char *)e->data.scalar.value,
					    err + 0, errlen)) {
					char inner[256];

					snprintf(inner, sizeof(inner), "%s",
						 err);
					return fail(err, errlen, "line %zu: %s",
						    e->start_mark.line + 1,
						    inner);
				}
			}
			continue;
		}
		if (yaml_null(vn) && (k->type == T_STR || is_list(k))) {
			if (is_list(k))
				unset_list(c, k);
			else
				ws_config_set(c, path, "", false, err, errlen);
			continue;
		}
		if (ws_config_set(c, path, (char *)vn->data.scalar.value, false,
				  err, errlen)) {
			char inner[256];

			snprintf(inner, sizeof(inner), "%s", err);
			return fail(err, errlen, "line %zu: %s", line, inner);
		}
	}
	return 0;
}

int ws_config_read_file(struct ws_config *c, const char *path, char *err,
			size_t errlen)
{
	yaml_parser_t p;
	yaml_document_t doc;
	yaml_node_t *root;
	char inner[320];
	FILE *f;
	int rc = 0;

	f = fopen(path, "r");
	if (!f)
		return fail(err, errlen, "config file %s: %s", path,
			    strerror(errno));
	if (!yaml_parser_initialize(&p)) {
		fclose(f);
		return fail(err, errlen, "config file %s: out of memory", path);
	}
	yaml_parser_set_input_file(&p, f);
	if (!yaml_parser_load(&p, &doc)) {
		rc = fail(err, errlen, "config file %s:%zu: not valid YAML: %s",
			  path, p.problem_mark.line + 1,
			  p.problem ? p.problem : "parse error");
		goto out;
	}
	root = yaml_document_get_root_node(&doc);
	if (root && root->type != YAML_MAPPING_NODE)
		rc = fail(err, errlen,
			  "config file %s: the top level must be a mapping "
			  "(key: value)",
			  path);
	else if (root && walk(c, &doc, root, "", inner, sizeof(inner)))
		rc = fail(err, errlen, "config file %s: %s", path, inner);
	yaml_document_delete(&doc);
out:
	yaml_parser_delete(&p);
	fclose(f);
	return rc;
}

/* ---- environment --------------------------------------------------------- */

static void env_name(const char *key, char *out, size_t cap)
{
	size_t n = (size_t)snprintf(out, cap, "WIRESPAN_"), i;

	for (i = 0; key[i] && n + 1 < cap; i++)
		out[n++] = key[i] == '.' ? '_' : (char)toupper(key[i]);
	out[n] = 0;
}

/* WIRESPAN_* variables that are not configuration keys. */
static const char *const env_other[] = {
	"WIRESPAN_CONFIG",
	"WIRESPAN_NO_TASK_STORAGE",
	"WIRESPAN_NO_RDONLY_CAST",
	"WIRESPAN_NO_GO_PROBES",
	"WIRESPAN",
	"WIRESPAN_PEERS",
	"WIRESPAN_KEEP_TMP",
	"WIRESPAN_TEST_VERBOSE",
};

int ws_config_read_env(struct ws_config *c, char *const *env, char *err,
		       size_t errlen)
{
	char name[128], inner[320];
	char *const *e;
	size_t i, l;

	if (!env)
		env = environ;
	for (e = env; *e; e++) {
		const char *eq = strchr(*e, '=');
		bool found = false;

		if (strncmp(*e, "WIRESPAN", 8) || !eq)
			continue;
		l = (size_t)(eq - *e);
		for (i = 0; i < N_KEYS && !found; i++) {
			env_name(keys[i].name, name, sizeof(name));
			if (strlen(name) != l || strncmp(*e, name, l))
				continue;
			found = true;
			if (ws_config_set(c, keys[i].name, eq + 1, false, inner,
					  sizeof(inner)))
				return fail(err, errlen, "environment %s: %s",
					    name, inner);
		}
		for (i = 0; i < sizeof(env_other) / sizeof(env_other[0]); i++)
			if (strlen(env_other[i]) == l &&
			    !strncmp(*e, env_other[i], l))
				found = true;
		if (!found)
			ws_warn("environment %.*s: not a wirespan setting "
				"(ignored)",
				(int)l, *e);
	}
	return 0;
}

/* ---- checks -------------------------------------------------------------- */

static int check_files(const struct ws_config *c, char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < N_KEYS; i++) {
		const char *path;

		if (!(keys[i].flags & F_FILE))
			continue;
		path = *FIELD(c, &keys[i], char *);
		if (path && access(path, R_OK))
			return fail(err, errlen, "%s: cannot read %s: %s",
				    keys[i].name, path, strerror(errno));
	}
	return 0;
}

static int check_auth(const struct ws_config *c, char *err, size_t errlen)
{
	const char *set[4];
	int n = 0;

	if (c->nats_password && !c->nats_user)
		return fail(err, errlen,
			    "export.nats.password: needs export.nats.user");
	if (!!c->tls_cert != !!c->tls_key)
		return fail(err, errlen,
			    "%s: a client certificate needs both "
			    "export.nats.tls.cert and export.nats.tls.key",
			    c->tls_cert ? "export.nats.tls.key"
					: "export.nats.tls.cert");
	if (c->nats_user)
		set[n++] = "export.nats.user";
	if (c->nats_token)
		set[n++] = "export.nats.token";
	if (c->nkey_seed_file)
		set[n++] = "export.nats.nkey_seed_file";
	if (c->creds_file)
		set[n++] = "export.nats.creds_file";
	if (n > 1)
		return fail(err, errlen,
			    "%s: only one way to authenticate may be set, "
			    "but %s is set too",
			    set[1], set[0]);
	return 0;
}

static int check_stream(const char *s, char *err, size_t errlen)
{
	const char *p;

	for (p = s; p && *p; p++)
		if (*p == '.' || *p == '*' || *p == '>' ||
		    isspace((unsigned char)*p) || *p == '/' || *p == '\\')
			return fail(err, errlen,
				    "export.jetstream.stream: \"%s\" is not a "
				    "stream name (no '.', '*', '>', '/', "
				    "spaces)",
				    s);
	return 0;
}

int ws_config_validate(const struct ws_config *c, char *err, size_t errlen)
{
	struct ws_http_spans_cfg hc;
	struct ws_natsconn_cfg nc;
	char node[WS_EXPORT_NODE_MAX + 1], subj[WS_EXPORT_SUBJECT_MAX];
	char inner[256];
	const char *why;

	struct ws_enrich_cfg ec;

	if (check_files(c, err, errlen) || check_auth(c, err, errlen) ||
	    check_stream(c->js_stream, err, errlen) ||
	    ws_config_http_cfg(c, &hc, err, errlen))
		return -1;
	if (ws_config_enrich_cfg(c, &ec, err, errlen))
		return -1;
	ws_enrich_cfg_free(&ec);
	if (c->prefix && (ws_subject_pattern_check(c->prefix, &why) ||
			  strpbrk(c->prefix, "*>")))
		return fail(err, errlen, "export.subject.prefix: \"%s\": %s",
			    c->prefix, why ? why : "no wildcards allowed");
	ws_export_node_sanitize(c->node ? c->node : "node", node);
	if (ws_export_subject(c->subject_template ? c->subject_template
						  : WS_EXPORT_DEFAULT_TEMPLATE,
			      c->prefix ? c->prefix : WS_EXPORT_DEFAULT_PREFIX,
			      "nats", node, subj, sizeof(subj), &why))
		return fail(err, errlen, "export.subject.template: \"%s\": %s",
			    c->subject_template, why);
	if (c->queue_max_bytes < c->batch_max_bytes)
		return fail(err, errlen,
			    "export.queue.max_bytes: %llu is less than "
			    "export.batch.max_bytes (%llu): no batch would fit",
			    (unsigned long long)c->queue_max_bytes,
			    (unsigned long long)c->batch_max_bytes);
	if (c->output == WS_OUTPUT_STDOUT)
		return 0;
	/* what only nats.c's side knows: a seed that decodes, URLs */
	memset(&nc, 0, sizeof(nc));
	nc.urls = c->nats_urls;
	nc.nkey_seed_file = c->nkey_seed_file;
	if (ws_natsconn_check(&nc, inner, sizeof(inner)))
		return fail(err, errlen, "%s: %s",
			    c->nkey_seed_file ? "export.nats.nkey_seed_file"
					      : "export.nats.urls",
			    inner);
	return 0;
}

int ws_config_load(struct ws_config *c, const char *path,
		   const struct ws_config_override *ov, size_t n_ov,
		   char *const *env, char *err, size_t errlen)
{
	const struct key *seen[N_KEYS];
	size_t n_seen = 0, i, j;
	char inner[320];
	bool append;

	ws_config_init(c);
	if (!path && !access(WS_CONFIG_DEFAULT_FILE, F_OK))
		path = WS_CONFIG_DEFAULT_FILE;
	if (path && ws_config_read_file(c, path, err, errlen))
		goto fail;
	if (ws_config_read_env(c, env, err, errlen))
		goto fail;
	for (i = 0; i < n_ov; i++) {
		const struct key *k = find_key(ov[i].key);

		append = false;
		for (j = 0; k && j < n_seen; j++)
			if (seen[j] == k)
				append = true;
		if (k && !append)
			seen[n_seen++] = k;
		if (ws_config_set(c, ov[i].key, ov[i].value, append, inner,
				  sizeof(inner))) {
			fail(err, errlen, "%s: %s", ov[i].src, inner);
			goto fail;
		}
	}
	if (ws_config_validate(c, err, errlen))
		goto fail;
	return 0;
fail:
	ws_config_free(c);
	return -1;
}

/* ---- printing and comparing ------------------------------------------------ */

static void render(const struct ws_config *c, const struct key *k, char *out,
		   size_t cap)
{
	size_t n = 0;
	uint64_t i;
	const char *s;

	out[0] = 0;
	switch (k->type) {
	case T_U64:
		snprintf(out, cap, "%llu",
			 (unsigned long long)*FIELD(c, k, uint64_t));
		break;
	case T_BOOL:
		snprintf(out, cap, "%s", *FIELD(c, k, bool) ? "true" : "false");
		break;
	case T_ENUM:
		snprintf(out, cap, "%s", k->names[*FIELD(c, k, uint64_t)]);
		break;
	case T_U64_LIST:
	case T_STR_LIST:
		n = (size_t)snprintf(out, cap, "[");
		for (i = 0; i < *COUNT(c, k) && n < cap; i++) {
			if (k->type == T_U64_LIST)
				n += (size_t)snprintf(
					out + n, cap - n, "%s%llu",
					i ? ", " : "",
					(unsigned long long)FIELD(c, k,
								  uint64_t)[i]);
			else
				n += (size_t)snprintf(out + n, cap - n,
						      "%s\"%s\"", i ? ", " : "",
						      FIELD(c, k, char *)[i]);
		}
		if (n < cap)
			snprintf(out + n, cap - n, "]");
		break;
	default:
		s = *FIELD(c, k, char *);
		if (s && (k->flags & F_SECRET))
			snprintf(out, cap, "<redacted>");
		else
			snprintf(out, cap, "%s%s%s", s ? "\"" : "", s ? s : "~",
				 s ? "\"" : "");
	}
}

void ws_config_print(const struct ws_config *c, FILE *f)
{
	char v[4096];
	size_t i;

	for (i = 0; i < N_KEYS; i++) {
		render(c, &keys[i], v, sizeof(v));
		fprintf(f, "%s: %s\n", keys[i].name, v);
	}
}

void ws_config_diff(const struct ws_config *a, const struct ws_config *b,
		    void (*fn)(const char *key, bool reloadable, void *ctx),
		    void *ctx)
{
	char va[4096], vb[4096];
	size_t i;

	for (i = 0; i < N_KEYS; i++) {
		const struct key *k = &keys[i];
		const char *sa, *sb;

		if (k->flags & F_SECRET) {
			/* compare the values without printing them */
			sa = *FIELD(a, k, char *);
			sb = *FIELD(b, k, char *);
			if (!sa != !sb || (sa && strcmp(sa, sb)))
				fn(k->name, false, ctx);
			continue;
		}
		render(a, k, va, sizeof(va));
		render(b, k, vb, sizeof(vb));
		if (strcmp(va, vb))
			fn(k->name, (k->flags & F_RELOAD) != 0, ctx);
	}
}

/* ---- for the modules ------------------------------------------------------- */

void ws_config_export_cfg(const struct ws_config *c,
			  struct ws_nats_export_cfg *o)
{
	memset(o, 0, sizeof(*o));
	o->conn.urls = c->nats_urls;
	o->conn.user = c->nats_user;
	o->conn.password = c->nats_password;
	o->conn.token = c->nats_token;
	o->conn.nkey_seed_file = c->nkey_seed_file;
	o->conn.creds_file = c->creds_file;
	o->conn.tls = c->tls;
	o->conn.tls_ca = c->tls_ca;
	o->conn.tls_cert = c->tls_cert;
	o->conn.tls_key = c->tls_key;
	o->conn.reconnect_wait_ms = (int)c->reconnect_wait_ms;
	o->conn.ping_interval_ms = (int)c->ping_interval_ms;
	o->conn.max_pings_out = (int)c->max_pings_out;
	o->conn.write_deadline_ms = (int)c->write_deadline_ms;
	o->prefix = c->prefix;
	o->subject_template = c->subject_template;
	o->node = c->node;
	o->mode = (enum ws_export_mode)c->mode;
	o->batch_max_spans = (uint32_t)c->batch_max_spans;
	o->batch_max_bytes = (uint32_t)c->batch_max_bytes;
	o->batch_max_delay_ms = (uint32_t)c->batch_max_delay_ms;
	o->queue_max_bytes = c->queue_max_bytes;
	o->js_stream = c->js_stream;
	o->js_max_wait_ms = (uint32_t)c->js_max_wait_ms;
	o->js_max_pending = (uint32_t)c->js_max_pending;
	o->drain_timeout_ms = (uint32_t)c->drain_timeout_ms;
	o->reconnect_settle_ms = (uint32_t)c->reconnect_settle_ms;
}

/* The template with {domain} and {node} as '*': every subject this agent
 * publishes on. Empty if that is not a valid pattern (e.g. "x{node}"). */
static void own_pattern(const struct ws_config *c, char *out, size_t cap)
{
	const char *t = c->subject_template ? c->subject_template
					    : WS_EXPORT_DEFAULT_TEMPLATE;
	const char *prefix = c->prefix ? c->prefix : WS_EXPORT_DEFAULT_PREFIX;
	const char *why;
	size_t n = 0, l;

	while (*t && n + 1 < cap) {
		if (!strncmp(t, "{prefix}", 8)) {
			l = strlen(prefix);
			if (n + l >= cap)
				break;
			memcpy(out + n, prefix, l);
			n += l;
			t += 8;
		} else if (!strncmp(t, "{domain}", 8) ||
			   !strncmp(t, "{node}", 6)) {
			out[n++] = '*';
			t += t[1] == 'd' ? 8 : 6;
		} else {
			out[n++] = *t++;
		}
	}
	out[n] = 0;
	if (*t || ws_subject_pattern_check(out, &why))
		out[0] = 0;
}

int ws_config_exclude_filter(const struct ws_config *c,
			     struct ws_subject_filter *f)
{
	char p[WS_EXPORT_SUBJECT_MAX + 64];
	uint64_t i;
	int rc = 0;

	ws_subject_filter_clear(f);
	if (c->exclude_own) {
		snprintf(p, sizeof(p), "%s.traces.>",
			 c->prefix ? c->prefix : WS_EXPORT_DEFAULT_PREFIX);
		rc = ws_subject_filter_add(f, p);
		own_pattern(c, p, sizeof(p));
		if (!rc && *p)
			rc = ws_subject_filter_add(f, p);
		/* a stream's consumers pull and ack telemetry too */
		if (!rc && c->js_stream) {
			snprintf(p, sizeof(p), "$JS.ACK.%s.>", c->js_stream);
			rc = ws_subject_filter_add(f, p);
			snprintf(p, sizeof(p), "$JS.API.CONSUMER.MSG.NEXT.%s.>",
				 c->js_stream);
			if (!rc)
				rc = ws_subject_filter_add(f, p);
		}
	}
	for (i = 0; i < c->n_exclude && !rc; i++)
		rc = ws_subject_filter_add(f, c->exclude[i]);
	return rc;
}

int ws_config_redact(const struct ws_config *c, struct ws_redact *out,
		     char *err, size_t errlen)
{
	uint64_t i;

	ws_redact_init(out);
	for (i = 0; i < c->n_redact_extra; i++)
		if (ws_redact_add(out, c->redact_extra[i]))
			return fail(err, errlen,
				    "redact.extra_names: \"%s\": want a name "
				    "fragment of 1 to %u printable bytes, no "
				    "space, '=' or ':'",
				    c->redact_extra[i], WS_REDACT_MAX_NAME);
	return 0;
}

int ws_config_http_cfg(const struct ws_config *c, struct ws_http_spans_cfg *out,
		       char *err, size_t errlen)
{
	uint64_t i;

	ws_http_spans_cfg_init(out);
	if (ws_config_redact(c, &out->auth.redact, err, errlen))
		return -1;
	out->request_timeout_ns = c->http_request_timeout_s * 1000000000ull;
	for (i = 0; i < c->n_http_routes; i++) {
		const char *r = c->http_routes[i];

		if (r[0] != '/' || strlen(r) > WS_HTTP_MAX_ROUTE)
			return fail(err, errlen,
				    "http.routes: %s: a route starts with / "
				    "and has at most %u bytes",
				    r, WS_HTTP_MAX_ROUTE);
		out->routes[out->n_routes++] = r;
	}
	if (!c->jwt_user_claim || !*c->jwt_user_claim)
		return fail(err, errlen, "http.jwt_user_claim: empty");
	out->auth.jwt_user_claim = c->jwt_user_claim;
	for (i = 0; i < c->n_api_key_headers; i++)
		if (ws_http_auth_add_key_header(&out->auth,
						c->api_key_headers[i]))
			return fail(err, errlen,
				    "http.api_key_headers: %s: not a header "
				    "name, or too many",
				    c->api_key_headers[i]);
	out->auth.key_hash = (enum ws_key_hash)c->key_hash;
	if (out->auth.key_hash == WS_KEY_HASH_HMAC &&
	    (!c->key_hash_secret_file || !*c->key_hash_secret_file))
		return fail(err, errlen,
			    "http.key_hash_secret_file: needed with "
			    "http.key_hash hmac");
	for (i = 0; i < c->n_capture_headers; i++) {
		const char *h = c->capture_headers[i];

		if (!*h || strpbrk(h, " \t:\r\n"))
			return fail(err, errlen,
				    "http.capture_headers: %s: not a header "
				    "name",
				    h);
		if (ws_http_header_is_secret(&out->auth, h, strlen(h)))
			return fail(err, errlen,
				    "http.capture_headers: %s: this header "
				    "carries credentials and is never recorded",
				    h);
		out->capture_headers[out->n_capture_headers++] = h;
	}
	return 0;
}

void ws_config_jwt_cfg(const struct ws_config *c,
		       struct ws_jwt_verifier_cfg *out)
{
	uint64_t i;

	memset(out, 0, sizeof(*out));
	out->jwks_file = c->jwks_file;
	for (i = 0; i < c->n_jwt_issuers; i++)
		out->policy.issuers[out->policy.n_issuers++] =
			c->jwt_issuers[i];
	for (i = 0; i < c->n_jwt_audiences; i++)
		out->policy.audiences[out->policy.n_audiences++] =
			c->jwt_audiences[i];
	out->policy.leeway_s = c->jwt_leeway_s;
	out->cache_size = (uint32_t)c->jwt_cache_size;
}

int ws_config_enrich_cfg(const struct ws_config *c, struct ws_enrich_cfg *out,
			 char *err, size_t errlen)
{
	uint64_t i;

	ws_enrich_cfg_init(out);
	if (ws_config_redact(c, &out->redact, err, errlen))
		return -1;
	out->no_k8s = !c->k8s_enabled;
	out->node_name = c->node_name;
	out->k8s_api = c->k8s_api;
	out->k8s_token = c->k8s_token_file;
	out->k8s_ca = c->k8s_ca_file;
	for (i = 0; i < c->n_k8s_labels; i++)
		if (ws_enrich_cfg_opt(out, "k8s-label", c->k8s_labels[i])) {
			ws_enrich_cfg_free(out);
			return fail(err, errlen, "k8s.labels: \"%s\": empty",
				    c->k8s_labels[i]);
		}
	for (i = 0; i < c->n_service_rules; i++)
		if (ws_enrich_cfg_opt(out, "service-rule",
				      c->service_rules[i])) {
			ws_enrich_cfg_free(out);
			return fail(
				err, errlen,
				"service.rules: \"%s\": want "
				"NAME=COND[,COND...] with COND one of "
				"label:K=GLOB namespace:GLOB container:GLOB "
				"exe:GLOB port:N",
				c->service_rules[i]);
		}
	return 0;
}
