/* SPDX-License-Identifier: Apache-2.0 */
/* The span model and its OTLP/JSON encoding. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "otlp_json.h"
#include "span.h"

static void ids(void **state)
{
	uint8_t a[16], b[16];
	char hex[33];

	ws_id_random(a, 16);
	ws_id_random(b, 16);
	assert_false(ws_id_is_zero(a, 16));
	assert_memory_not_equal(a, b, 16);
	ws_id_hex(a, 16, hex);
	assert_int_equal(strlen(hex), 32);
	memset(b, 0, 16);
	assert_int_equal(ws_id_parse(hex, 32, b, 16), 0);
	assert_memory_equal(a, b, 16);
	assert_int_equal(ws_id_parse(hex, 31, b, 16), -EINVAL);
	assert_int_equal(ws_id_parse("zz", 2, b, 1), -EINVAL);
	assert_int_equal(ws_id_parse("Ab", 2, b, 1), 0);
	assert_int_equal(b[0], 0xab);
}

static void utf8(void **state)
{
	bool cut;
	char *s;

	s = ws_utf8_sanitize("h\xc3\xa9llo", 6, 100, &cut);
	assert_string_equal(s, "h\xc3\xa9llo");
	assert_false(cut);
	free(s);
	/* invalid bytes, an overlong form and a surrogate become U+FFFD */
	s = ws_utf8_sanitize("a\xff"
			     "b\xc0\xaf"
			     "\xed\xa0\x80",
			     8, 100, &cut);
	assert_string_equal(s, "a\xef\xbf\xbd"
			       "b\xef\xbf\xbd\xef\xbf\xbd"
			       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	free(s);
	/* cut on a character boundary */
	s = ws_utf8_sanitize("ab\xc3\xa9", 4, 3, &cut);
	assert_string_equal(s, "ab");
	assert_true(cut);
	free(s);
}

static void attrs(void **state)
{
	struct ws_attr store[3];
	struct ws_attrs a;
	char big[WS_SPAN_MAX_STR + 10];

	ws_attrs_init(&a, store, 3);
	assert_int_equal(ws_attrs_cstr(&a, "k", "v1"), 0);
	assert_int_equal(ws_attrs_cstr(&a, "k", "v2"), 0);
	assert_int_equal(a.n, 1);
	assert_string_equal(ws_attrs_get(&a, "k")->s, "v2");
	assert_int_equal(ws_attrs_int(&a, "i", -5), 0);
	memset(big, 'x', sizeof(big));
	assert_int_equal(ws_attrs_str(&a, "big", big, sizeof(big)), 0);
	assert_int_equal(strlen(ws_attrs_get(&a, "big")->s), WS_SPAN_MAX_STR);
	assert_int_equal(a.cut, 1);
	assert_int_equal(ws_attrs_bool(&a, "full", true), -ENOSPC);
	assert_int_equal(a.dropped, 1);
	assert_null(ws_attrs_get(&a, "full"));
	ws_attrs_clear(&a);
	assert_int_equal(a.n, 0);
}

/* Encode a span and read the JSON back with an independent parser. */
static void otlp_json_roundtrip(void **state)
{
	uint8_t tid[16], psid[8];
	struct ws_resource *r = ws_resource_new(1);
	struct ws_span *s, *spans[2];
	json_object *root, *rs, *span, *v;
	char *buf = NULL, hex[33];
	size_t len = 0;
	FILE *f;

	ws_id_random(tid, 16);
	ws_id_random(psid, 8);
	ws_attrs_cstr(&r->a, "service.name", "svc");
	s = ws_span_new("publish orders", WS_SPAN_KIND_PRODUCER, 1000, NULL);
	ws_span_set_parent(s, tid, psid);
	s->end_ns = 2000;
	ws_attrs_cstr(&s->a, "messaging.system", "nats");
	ws_attrs_int(&s->a, "messaging.message.body.size", 1ll << 40);
	ws_span_add_link(s, tid, psid, 1);
	ws_span_set_status(s, WS_STATUS_ERROR, "timeout");
	ws_span_set_resource(s, r);
	spans[0] = s;
	spans[1] =
		ws_span_new("process orders", WS_SPAN_KIND_CONSUMER, 5, NULL);
	ws_span_set_resource(spans[1], r);

	f = open_memstream(&buf, &len);
	assert_int_equal(ws_otlp_json_write(f, spans, 2), 0);
	fclose(f);
	assert_int_equal(buf[len - 1], '\n');
	assert_null(memchr(buf, '\n', len - 1));
	root = json_tokener_parse(buf);
	assert_non_null(root);
	rs = json_object_array_get_idx(
		json_object_object_get(root, "resourceSpans"), 0);
	/* both spans share the resource: one ResourceSpans */
	assert_int_equal(json_object_array_length(
				 json_object_object_get(root, "resourceSpans")),
			 1);
	span = json_object_array_get_idx(
		json_object_object_get(
			json_object_array_get_idx(
				json_object_object_get(rs, "scopeSpans"), 0),
			"spans"),
		0);
	ws_id_hex(tid, 16, hex);
	assert_string_equal(
		json_object_get_string(json_object_object_get(span, "traceId")),
		hex);
	ws_id_hex(psid, 8, hex);
	assert_string_equal(json_object_get_string(json_object_object_get(
				    span, "parentSpanId")),
			    hex);
	assert_int_equal(
		json_object_get_int(json_object_object_get(span, "kind")),
		WS_SPAN_KIND_PRODUCER);
	assert_string_equal(json_object_get_string(json_object_object_get(
				    span, "startTimeUnixNano")),
			    "1000");
	v = json_object_object_get(
		json_object_array_get_idx(
			json_object_object_get(span, "attributes"), 1),
		"value");
	assert_string_equal(
		json_object_get_string(json_object_object_get(v, "intValue")),
		"1099511627776");
	assert_int_equal(
		json_object_get_int(json_object_object_get(
			json_object_object_get(span, "status"), "code")),
		WS_STATUS_ERROR);
	json_object_put(root);
	free(buf);
	ws_span_free(spans[0]);
	ws_span_free(spans[1]);
	ws_resource_put(r);
}

/* A span's strings live in its pool: values stay right through chained
 * blocks, replacements past the pool's bound and reuse of freed spans. */
static void span_strings(void **state)
{
	static const char *const keys[] = {"k0", "k1", "k2", "k3", "k4",
					   "k5", "k6", "k7", "k8", "k9"};
	char val[WS_SPAN_MAX_STR + 1], name[300], key[8] = "k";
	struct ws_span *s, *again;
	const struct ws_attr *at;
	int i;

	s = ws_span_new("first", WS_SPAN_KIND_INTERNAL, 1, NULL);
	assert_non_null(s);
	/* beyond the inline block: chained blocks */
	for (i = 0; i < 10; i++) {
		memset(val, 'a' + i, 200);
		val[200] = '\0';
		assert_int_equal(ws_attrs_cstr(&s->a, keys[i], val), 0);
	}
	/* a key that is equal but not the same pointer is the same key */
	key[1] = '3';
	key[2] = '\0';
	assert_int_equal(ws_attrs_cstr(&s->a, key, "three"), 0);
	assert_int_equal(s->a.n, 10);
	assert_string_equal(ws_attrs_get(&s->a, "k3")->s, "three");
	/* replaced again and again: past the pool's bound, one malloc each */
	memset(val, 'z', WS_SPAN_MAX_STR);
	val[WS_SPAN_MAX_STR] = '\0';
	for (i = 0; i < 500; i++)
		assert_int_equal(ws_attrs_cstr(&s->a, "k0", val), 0);
	at = ws_attrs_get(&s->a, "k0");
	assert_int_equal(strlen(at->s), WS_SPAN_MAX_STR);
	for (i = 1; i < 10; i++) {
		at = ws_attrs_get(&s->a, keys[i]);
		if (i != 3) {
			assert_int_equal(strlen(at->s), 200);
			assert_int_equal(at->s[199], 'a' + i);
		}
	}
	/* invalid UTF-8 into the pool */
	assert_int_equal(ws_attrs_str(&s->a, "bad", "x\xffy", 3), 0);
	assert_string_equal(ws_attrs_get(&s->a, "bad")->s, "x\xef\xbf\xbdy");
	for (i = 0; i < 100; i++) {
		memset(name, 'n', sizeof(name) - 1);
		name[sizeof(name) - 1] = '\0';
		name[0] = (char)('A' + i % 26);
		assert_int_equal(ws_span_set_name(s, name), 0);
	}
	assert_int_equal(s->name[0], 'A' + 99 % 26);
	assert_int_equal(strlen(s->name), sizeof(name) - 1);
	ws_span_add_link(s, s->trace_id, s->span_id, 0);
	assert_int_equal(ws_attrs_cstr(&s->links[0].a, "l", "link"), 0);
	ws_span_free(s);
	/* a reused span starts empty */
	again = ws_span_new("second", WS_SPAN_KIND_CLIENT, 2, NULL);
	assert_string_equal(again->name, "second");
	assert_int_equal(again->a.n, 0);
	assert_int_equal(again->n_links, 0);
	assert_int_equal(again->a.dropped, 0);
	assert_null(ws_attrs_get(&again->a, "k1"));
	assert_int_equal(ws_attrs_cstr(&again->a, "k1", "v"), 0);
	assert_string_equal(ws_attrs_get(&again->a, "k1")->s, "v");
	ws_span_free(again);
}

/* ws_attrs_copy sets what the setters would: order, replacement, cuts,
 * drops, strings owned by the destination. */
static void attrs_copy(void **state)
{
	struct ws_attr sstore[8], dstore[4];
	struct ws_attrs src, dst;
	char big[WS_SPAN_MAX_STR + 10];
	struct ws_span *s;

	ws_attrs_init(&src, sstore, 8);
	memset(big, 'b', sizeof(big));
	ws_attrs_cstr(&src, "a", "one");
	ws_attrs_int(&src, "b", 2);
	ws_attrs_str(&src, "big", big, sizeof(big));
	ws_attrs_bool(&src, "c", true);
	ws_attrs_double(&src, "d", 0.5);
	assert_int_equal(src.cut, 1);

	ws_attrs_init(&dst, dstore, 4);
	ws_attrs_cstr(&dst, "a", "old");
	assert_int_equal(ws_attrs_copy(&dst, &src), -ENOSPC);
	assert_int_equal(dst.n, 4);
	assert_int_equal(dst.dropped, 1);
	assert_int_equal(dst.cut, 1);
	assert_string_equal(dst.v[0].key, "a"); /* replaced in place */
	assert_string_equal(dst.v[0].s, "one");
	assert_int_equal(ws_attrs_get(&dst, "b")->i, 2);
	assert_int_equal(strlen(ws_attrs_get(&dst, "big")->s), WS_SPAN_MAX_STR);
	assert_true(ws_attrs_get(&dst, "c")->b);
	assert_null(ws_attrs_get(&dst, "d"));
	/* dst's strings are its own */
	assert_ptr_not_equal(ws_attrs_get(&dst, "big")->s,
			     ws_attrs_get(&src, "big")->s);
	ws_attrs_clear(&src);
	assert_int_equal(ws_attrs_get(&dst, "big")->s[0], 'b');
	ws_attrs_clear(&dst);

	/* into a span: pooled strings, found and replaced afterwards */
	ws_attrs_init(&src, sstore, 8);
	ws_attrs_cstr(&src, "x", "ex");
	ws_attrs_cstr(&src, "y", "why");
	s = ws_span_new("s", WS_SPAN_KIND_INTERNAL, 1, NULL);
	ws_attrs_int(&s->a, "first", 1);
	assert_int_equal(ws_attrs_copy(&s->a, &src), 0);
	assert_int_equal(ws_attrs_cstr(&s->a, "y", "y2"), 0);
	assert_int_equal(s->a.n, 3);
	assert_string_equal(s->a.v[1].s, "ex");
	assert_string_equal(s->a.v[2].s, "y2");
	ws_attrs_clear(&src);
	ws_span_free(s);
}

/* A compacted resource: every attribute and string of the original, one
 * block, no room for a new key, and a replaced value freed correctly. */
static void resource_compact(void **state)
{
	struct ws_resource *r = ws_resource_new(42), *c;
	const struct ws_attr *a;
	char long_s[3000];

	memset(long_s, 'x', sizeof(long_s) - 1);
	long_s[sizeof(long_s) - 1] = '\0';
	assert_int_equal(ws_attrs_cstr(&r->a, "service.name", "checkout"), 0);
	assert_int_equal(ws_attrs_int(&r->a, "process.pid", 4242), 0);
	assert_int_equal(ws_attrs_cstr(&r->a, "process.command_line", long_s),
			 0);
	assert_int_equal(ws_attrs_cstr(&r->a, "k8s.pod.name", ""), 0);
	assert_int_equal(ws_attrs_bool(&r->a, "b", true), 0);
	c = ws_resource_compact(r);
	assert_non_null(c);
	assert_int_equal(c->key, 42);
	assert_int_equal(c->refs, 1);
	assert_int_equal(c->a.n, r->a.n);
	assert_int_equal(c->a.cut, 1); /* the long value was cut */
	assert_string_equal(ws_attrs_get(&c->a, "service.name")->s, "checkout");
	assert_int_equal(ws_attrs_get(&c->a, "process.pid")->i, 4242);
	a = ws_attrs_get(&c->a, "process.command_line");
	assert_int_equal(strlen(a->s), WS_SPAN_MAX_STR);
	assert_string_equal(ws_attrs_get(&c->a, "k8s.pod.name")->s, "");
	assert_true(ws_attrs_get(&c->a, "b")->b);
	/* smaller than the original, in one block */
	assert_true(ws_resource_bytes(c) < ws_resource_bytes(r));
	/* its strings are its own: the original can go */
	ws_resource_put(r);
	assert_string_equal(ws_attrs_get(&c->a, "service.name")->s, "checkout");
	assert_int_equal(ws_attrs_cstr(&c->a, "new.key", "v"), -ENOSPC);
	assert_int_equal(c->a.dropped, 1);
	/* replacing a value: the new one is malloc'd, freed with c */
	assert_int_equal(ws_attrs_cstr(&c->a, "service.name", "other"), 0);
	assert_string_equal(ws_attrs_get(&c->a, "service.name")->s, "other");
	assert_non_null(ws_resource_get(c));
	ws_resource_put(c);
	ws_resource_put(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ids),
		cmocka_unit_test(utf8),
		cmocka_unit_test(attrs),
		cmocka_unit_test(span_strings),
		cmocka_unit_test(attrs_copy),
		cmocka_unit_test(otlp_json_roundtrip),
		cmocka_unit_test(resource_compact),
	};

	return cmocka_run_group_tests_name("span", tests, NULL, NULL);
}
