/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Collecting the spans a span builder emits, and reading their attributes,
 * for the span builder tests. Include after <cmocka.h>; define
 * SPAN_OUT_MAX first for room for more than 64 spans.
 */
#ifndef WIRESPAN_TEST_SPAN_OUT_H
#define WIRESPAN_TEST_SPAN_OUT_H

#include <stdbool.h>
#include <stdint.h>

#include "span.h"

#ifndef SPAN_OUT_MAX
#define SPAN_OUT_MAX 64
#endif

struct out {
	struct ws_span *s[SPAN_OUT_MAX];
	int n;
};

/* The emit callback: ctx is a struct out. */
static inline void collect(void *ctx, struct ws_span *s)
{
	struct out *o = ctx;

	assert_true(o->n < SPAN_OUT_MAX);
	o->s[o->n++] = s;
}

static inline void out_free(struct out *o)
{
	int i;

	for (i = 0; i < o->n; i++)
		ws_span_free(o->s[i]);
	o->n = 0;
}

static inline const char *attr_s(const struct ws_span *s, const char *k)
{
	const struct ws_attr *a = ws_attrs_get(&s->a, k);

	return a && a->type == WS_ATTR_STR ? a->s : NULL;
}

static inline int64_t attr_i(const struct ws_span *s, const char *k)
{
	const struct ws_attr *a = ws_attrs_get(&s->a, k);

	return a && a->type == WS_ATTR_INT ? a->i : -1;
}

static inline bool attr_b(const struct ws_span *s, const char *k)
{
	const struct ws_attr *a = ws_attrs_get(&s->a, k);

	return a && a->type == WS_ATTR_BOOL && a->b;
}

#endif
