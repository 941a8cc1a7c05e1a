/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service.h"

static void rule_free(struct ws_service_rule *r)
{
	unsigned i;

	free(r->name);
	for (i = 0; i < r->n_conds; i++) {
		free(r->conds[i].key);
		free(r->conds[i].value);
	}
	memset(r, 0, sizeof(*r));
}

void ws_service_cfg_free(struct ws_service_cfg *cfg)
{
	unsigned i;

	for (i = 0; i < cfg->n_rules; i++)
		rule_free(&cfg->rules[i]);
	cfg->n_rules = 0;
}

/* One condition "kind:value" (len bytes). */
static int cond_parse(struct ws_service_cond *c, const char *s, size_t len)
{
	static const struct {
		const char *word;
		uint8_t kind;
	} kinds[] = {
		{"label:", WS_SC_LABEL},
		{"namespace:", WS_SC_NAMESPACE},
		{"container:", WS_SC_CONTAINER},
		{"exe:", WS_SC_EXE},
		{"port:", WS_SC_PORT},
	};
	size_t i, k;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		k = strlen(kinds[i].word);
		if (len > k && !memcmp(s, kinds[i].word, k))
			break;
	}
	if (i == sizeof(kinds) / sizeof(kinds[0]))
		return -EINVAL;
	c->kind = kinds[i].kind;
	s += k;
	len -= k;
	if (c->kind == WS_SC_PORT) {
		unsigned long v = 0;

		for (i = 0; i < len; i++) {
			if (s[i] < '0' || s[i] > '9' || i > 5)
				return -EINVAL;
			v = v * 10 + (unsigned long)(s[i] - '0');
		}
		if (!v || v > 65535)
			return -EINVAL;
		c->port = (uint16_t)v;
		return 0;
	}
	if (c->kind == WS_SC_LABEL) {
		const char *eq = memchr(s, '=', len);

		if (!eq || eq == s)
			return -EINVAL;
		c->key = strndup(s, (size_t)(eq - s));
		if (!c->key)
			return -ENOMEM;
		len -= (size_t)(eq - s) + 1;
		s = eq + 1;
	}
	if (!len)
		return -EINVAL;
	c->value = strndup(s, len);
	return c->value ? 0 : -ENOMEM;
}

int ws_service_rule_add(struct ws_service_cfg *cfg, const char *spec)
{
	const char *eq = strchr(spec, '='), *p;
	struct ws_service_rule *r;
	int rc = 0;

	if (!eq || eq == spec || !eq[1])
		return -EINVAL;
	if (cfg->n_rules >= WS_SERVICE_MAX_RULES)
		return -E2BIG;
	r = &cfg->rules[cfg->n_rules];
	memset(r, 0, sizeof(*r));
	r->name = strndup(spec, (size_t)(eq - spec));
	if (!r->name)
		return -ENOMEM;
	for (p = eq + 1; !rc && *p;) {
		size_t n = strcspn(p, ",");

		if (r->n_conds >= WS_SERVICE_MAX_CONDS)
			rc = -E2BIG;
		else
			rc = cond_parse(&r->conds[r->n_conds++], p, n);
		p += n + (p[n] == ',');
		if (!rc && p[-1] == ',' && !*p)
			rc = -EINVAL; /* trailing comma */
	}
	if (rc) {
		rule_free(r);
		return rc;
	}
	cfg->n_rules++;
	return 0;
}

bool ws_service_cfg_has_port(const struct ws_service_cfg *cfg)
{
	unsigned i, j;

	for (i = 0; i < cfg->n_rules; i++)
		for (j = 0; j < cfg->rules[i].n_conds; j++)
			if (cfg->rules[i].conds[j].kind == WS_SC_PORT)
				return true;
	return false;
}

size_t ws_service_cfg_labels(const struct ws_service_cfg *cfg, const char **out,
			     size_t cap)
{
	size_t n = 0;
	unsigned i, j;

	for (i = 0; i < cfg->n_rules; i++)
		for (j = 0; j < cfg->rules[i].n_conds; j++)
			if (cfg->rules[i].conds[j].kind == WS_SC_LABEL &&
			    n < cap)
				out[n++] = cfg->rules[i].conds[j].key;
	return n;
}

static bool glob(const char *pattern, const char *s)
{
	return s && !fnmatch(pattern, s, 0);
}

static bool cond_match(const struct ws_service_cond *c,
		       const struct ws_service_facts *f)
{
	switch (c->kind) {
	case WS_SC_LABEL:
		return f->label &&
		       glob(c->value, f->label(f->label_ctx, c->key));
	case WS_SC_NAMESPACE:
		return glob(c->value, f->ns);
	case WS_SC_CONTAINER:
		return glob(c->value, f->container);
	case WS_SC_EXE:
		return glob(c->value, f->exe);
	case WS_SC_PORT:
		return f->port == c->port;
	}
	return false;
}

enum ws_service_source ws_service_name(const struct ws_service_cfg *cfg,
				       const struct ws_service_facts *f,
				       char *buf, size_t cap)
{
	static const char *const labels[] = {"app.kubernetes.io/name", "app"};
	unsigned i, j;

	for (i = 0; cfg && i < cfg->n_rules; i++) {
		const struct ws_service_rule *r = &cfg->rules[i];

		for (j = 0; j < r->n_conds && cond_match(&r->conds[j], f); j++)
			;
		if (j == r->n_conds) {
			snprintf(buf, cap, "%s", r->name);
			return WS_SVC_RULE;
		}
	}
	for (i = 0; f->label && i < 2; i++) {
		const char *v = f->label(f->label_ctx, labels[i]);

		if (v && *v) {
			snprintf(buf, cap, "%s", v);
			return WS_SVC_LABEL;
		}
	}
	if (f->workload && *f->workload) {
		snprintf(buf, cap, "%s", f->workload);
		return WS_SVC_WORKLOAD;
	}
	if (f->container && *f->container) {
		snprintf(buf, cap, "%s", f->container);
		return WS_SVC_CONTAINER;
	}
	snprintf(buf, cap, "unknown_service:%s",
		 f->exe && *f->exe ? f->exe : "unknown");
	return WS_SVC_UNKNOWN;
}
