/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `wirespan tail`'s pure part (agent/tail_fmt.c): spans encoded by the
 * agent's own encoder (otlp_pb) are decoded, grouped by trace and printed as
 * a tree or as JSON; quiet period, longest hold and memory bounds; filters;
 * duplicates, parent loops and orphans; malformed input of every kind is
 * counted and never crashes (run under valgrind by `make test`).
 */
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

#include "otlp_trace_service.pb-c.h"

#include "export/otlp_pb.h"
#include "export/pb_guard.h"
#include "span.h"
#include "tail_fmt.h"

#define T0 1700000000000000000ull
#define US 1000ull
#define MS 1000000ull
#define SEC 1000000000ull

static const uint8_t TID1[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3,
				 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d,
				 0x0e, 0x0e, 0x47, 0x36};
static const uint8_t TID2[16] = {2, 2, 2, 2, 2, 2, 2, 2,
				 2, 2, 2, 2, 2, 2, 2, 2};
static const uint8_t TID3[16] = {3, 3, 3, 3, 3, 3, 3, 3,
				 3, 3, 3, 3, 3, 3, 3, 3};

/* ---- fixtures ---- */

struct out {
	char *buf;
	size_t len;
	FILE *f;
};

static void out_open(struct out *o, struct ws_tail_cfg *cfg)
{
	o->buf = NULL;
	o->len = 0;
	o->f = open_memstream(&o->buf, &o->len);
	assert_non_null(o->f);
	cfg->out = o->f;
}

/* The output so far (valid until the next call). */
static const char *out_text(struct out *o)
{
	fflush(o->f);
	return o->buf ? o->buf : "";
}

static void out_close(struct out *o)
{
	fclose(o->f);
	free(o->buf);
}

static struct ws_resource *res_service(const char *service, const char *exe)
{
	struct ws_resource *r = ws_resource_new(1);

	assert_non_null(r);
	if (service)
		assert_int_equal(ws_attrs_cstr(&r->a, "service.name", service),
				 0);
	if (exe)
		assert_int_equal(
			ws_attrs_cstr(&r->a, "process.executable.name", exe),
			0);
	return r;
}

/* A span with span id ...id and parent ...parent (0: a root). */
static struct ws_span *mk(struct ws_resource *r, const uint8_t *tid, uint8_t id,
			  uint8_t parent, const char *name, uint8_t kind,
			  uint64_t start_us, uint64_t dur_us)
{
	struct ws_span *s = ws_span_new(name, kind, T0 + start_us * US, tid);
	uint8_t sid[8] = {0xaa, 0, 0, 0, 0, 0, 0, 0};

	assert_non_null(s);
	sid[7] = id;
	memcpy(s->span_id, sid, 8);
	if (parent) {
		sid[7] = parent;
		ws_span_set_parent(s, tid, sid);
	}
	s->end_ns = s->start_ns + dur_us * US;
	ws_span_set_resource(s, r);
	return s;
}

/* Encode spans[0..n) with the agent's encoder, feed them, free them. */
static void feed(struct ws_tail *t, struct ws_span **spans, size_t n,
		 const char *subject, uint64_t now)
{
	uint8_t *buf;
	size_t len, i;

	assert_int_equal(ws_otlp_pb_encode(spans, n, &buf, &len), 0);
	assert_int_equal(ws_tail_feed(t, subject, buf, len, now), 0);
	free(buf);
	for (i = 0; i < n; i++)
		ws_span_free(spans[i]);
}

/* The four-span trace TID1 of two services, fed in two messages, children
 * before their parents. */
static void feed_orders(struct ws_tail *t, uint64_t now)
{
	struct ws_resource *orders = res_service("orders", "orders-bin");
	struct ws_resource *billing = res_service(NULL, "billing-worker");
	struct ws_span *m1[2], *m2[2];

	assert_int_equal(ws_attrs_cstr(&billing->a, "nats.account", "ACME"), 0);
	m1[0] = mk(billing, TID1, 3, 2, "process orders.created",
		   WS_SPAN_KIND_CONSUMER, 1500, 3000);
	ws_span_set_status(m1[0], WS_STATUS_ERROR, "boom");
	ws_attrs_cstr(&m1[0]->a, "nats.user", "bob");
	ws_attrs_cstr(&m1[0]->a, "messaging.destination.name",
		      "orders.created");
	m1[1] = mk(orders, TID1, 4, 1, "SELECT orders", WS_SPAN_KIND_CLIENT,
		   5000, 100);
	feed(t, m1, 2, "otel.traces.nats.node-b", now);

	m2[0] = mk(orders, TID1, 2, 1, "publish orders.created",
		   WS_SPAN_KIND_PRODUCER, 1000, 200);
	ws_attrs_cstr(&m2[0]->a, "messaging.destination.name",
		      "orders.created");
	m2[1] = mk(orders, TID1, 1, 0, "GET /orders", WS_SPAN_KIND_SERVER, 0,
		   12500);
	ws_attrs_cstr(&m2[1]->a, "enduser.id", "alice");
	ws_attrs_int(&m2[1]->a, "http.response.status_code", 201);
	ws_span_set_status(m2[1], WS_STATUS_OK, NULL);
	feed(t, m2, 2, "otel.traces.http.node-a", now);
	ws_resource_put(orders);
	ws_resource_put(billing);
}

/* A one-span trace: service, error or not, destination. */
static void feed_one(struct ws_tail *t, const uint8_t *tid, const char *service,
		     bool error, const char *dest, uint64_t now)
{
	struct ws_resource *r = res_service(service, NULL);
	struct ws_span *s =
		mk(r, tid, 9, 0, "op", WS_SPAN_KIND_INTERNAL, 0, 10);

	if (error)
		ws_span_set_status(s, WS_STATUS_ERROR, NULL);
	if (dest)
		ws_attrs_cstr(&s->a, "messaging.destination.name", dest);
	feed(t, &s, 1, "otel.traces.nats.n", now);
	ws_resource_put(r);
}

static size_t count_lines(const char *s, const char *needle)
{
	size_t n = 0;

	while ((s = strstr(s, needle))) {
		n++;
		s += strlen(needle);
	}
	return n;
}

/* ---- the tree ---- */

static void tree_text(void **state)
{
	/* columns: tree + name padded to the widest, duration right
	 * aligned, offset from the trace's start, service padded, kind */
	static const char want[] =
		"trace 4bf92f3577b34da6a3ce929d0e0e4736  4 spans  12.5ms  1 "
		"error\n"
		"  GET /orders                     12.5ms  +0         orders   "
		"  "
		"     server  enduser=alice  OK\n"
		"  \u251c\u2500 publish orders.created        200us  +1ms      "
		" "
		"orders          producer\n"
		"  \u2502  \u2514\u2500 process orders.created       3ms  "
		"+1.5ms     billing-worker  consumer  nats.user=bob  "
		"account=ACME  ERROR boom\n"
		"  \u2514\u2500 SELECT orders                 100us  +5ms      "
		" "
		"orders          client\n";
	struct ws_tail_cfg cfg;
	struct ws_tail *t;
	struct out o;

	ws_tail_cfg_init(&cfg);
	out_open(&o, &cfg);
	t = ws_tail_new(&cfg);
	assert_non_null(t);
	feed_orders(t, 0);
	assert_string_equal(out_text(&o), "");
	ws_tail_tick(t, cfg.flush_after_ns);
	assert_string_equal(out_text(&o), want);
	assert_int_equal(ws_tail_stats(t)->traces_printed, 1);
	assert_int_equal(ws_tail_stats(t)->spans_printed, 4);
	assert_int_equal(ws_tail_stats(t)->flush_quiet, 1);
	assert_int_equal(ws_tail_stats(t)->held_spans, 0);
	assert_int_equal(ws_tail_stats(t)->held_bytes, 0);
	ws_tail_free(t);
	out_close(&o);
}

static void tree_json(void **state)
{
	static const char *names[] = {"GET /orders", "publish orders.created",
				      "process orders.created",
				      "SELECT orders"};
	static const int depth[] = {0, 1, 2, 1};
	static const char *parent[] = {NULL, "aa00000000000001",
				       "aa00000000000002", "aa00000000000001"};
	struct ws_tail_cfg cfg;
	struct ws_tail *t;
	struct out o;
	const char *p;
	int i;

	ws_tail_cfg_init(&cfg);
	cfg.json = true;
	out_open(&o, &cfg);
	t = ws_tail_new(&cfg);
	feed_orders(t, 0);
	ws_tail_flush_all(t);
	assert_int_equal(ws_tail_stats(t)->flush_end, 1);
	p = out_text(&o);
	for (i = 0; i < 4; i++) {
		const char *nl = strchr(p, '\n');
		char *line;
		struct json_object *j, *v, *a;

		assert_non_null(nl);
		line = strndup(p, (size_t)(nl - p));
		j = json_tokener_parse(line);
		assert_non_null(j);
		assert_string_equal(
			json_object_get_string(
				json_object_object_get(j, "trace_id")),
			"4bf92f3577b34da6a3ce929d0e0e4736");
		assert_string_equal(json_object_get_string(
					    json_object_object_get(j, "name")),
				    names[i]);
		assert_int_equal(
			json_object_get_int(json_object_object_get(j, "depth")),
			depth[i]);
		v = json_object_object_get(j, "parent_span_id");
		if (parent[i])
			assert_string_equal(json_object_get_string(v),
					    parent[i]);
		else
			assert_null(v);
		assert_true(json_object_get_boolean(
			json_object_object_get(j, "parent_seen")));
		a = json_object_object_get(j, "attributes");
		assert_non_null(a);
		if (i == 0) {
			assert_string_equal(
				json_object_get_string(json_object_object_get(
					j, "start_unix_nano")),
				"1700000000000000000");
			assert_int_equal(
				json_object_get_int64(json_object_object_get(
					j, "duration_ns")),
				12500000);
			assert_string_equal(
				json_object_get_string(
					json_object_object_get(j, "kind")),
				"server");
			assert_string_equal(
				json_object_get_string(
					json_object_object_get(j, "status")),
				"ok");
			v = json_object_object_get(a,
						   "http.response.status_code");
			assert_true(json_object_is_type(v, json_type_int));
			assert_int_equal(json_object_get_int(v), 201);
			v = json_object_object_get(j, "identity");
			assert_string_equal(
				json_object_get_string(json_object_object_get(
					v, "enduser.id")),
				"alice");
			assert_string_equal(
				json_object_get_string(
					json_object_object_get(j, "subject")),
				"otel.traces.http.node-a");
		}
		if (i == 2) {
			assert_string_equal(
				json_object_get_string(
					json_object_object_get(j, "service")),
				"billing-worker");
			assert_string_equal(
				json_object_get_string(
					json_object_object_get(j, "status")),
				"error");
			assert_string_equal(
				json_object_get_string(json_object_object_get(
					j, "status_message")),
				"boom");
			v = json_object_object_get(j, "identity");
			assert_string_equal(
				json_object_get_string(
					json_object_object_get(v, "nats.user")),
				"bob");
			assert_string_equal(
				json_object_get_string(json_object_object_get(
					v, "nats.account")),
				"ACME");
			v = json_object_object_get(j, "resource");
			assert_string_equal(
				json_object_get_string(json_object_object_get(
					v, "process.executable.name")),
				"billing-worker");
		}
		json_object_put(j);
		free(line);
		p = nl + 1;
	}
	assert_string_equal(p, "");
	ws_tail_free(t);
	out_close(&o);
}

/* ---- when a trace is printed ---- */

static void quiet_period_and_max_hold(void **state)
{
	struct ws_tail_cfg cfg;
	struct ws_tail *t;
	struct out o;
	uint64_t now;

	ws_tail_cfg_init(&cfg);
	cfg.flush_after_ns = 500 * MS;
	cfg.max_hold_ns = 3 * SEC;
	out_open(&o, &cfg);
	t = ws_tail_new(&cfg);
	feed_one(t, TID2, "a", false, NULL, 1 * SEC);
	ws_tail_tick(t, 1 * SEC + 499 * MS);
	assert_int_equal(ws_tail_stats(t)->traces_printed, 0);
	ws_tail_tick(t, 1 * SEC + 500 * MS);
	assert_int_equal(ws_tail_stats(t)->traces_printed, 1);
	assert_int_equal(ws_tail_stats(t)->flush_quiet, 1);

	/* a trace that never goes quiet is printed after max_hold */
	for (now = 10 * SEC; now < 14 * SEC; now += 400 * MS) {
		struct ws_resource *r = res_service("a", NULL);
		struct ws_span *s = mk(r, TID3, (uint8_t)(now / MS / 400 + 1),
				       0, "tick", WS_SPAN_KIND_INTERNAL, 0, 1);

		feed(t, &s, 1, NULL, now);
		ws_resource_put(r);
		ws_tail_tick(t, now + 100 * MS);
		if (now + 100 * MS < 13 * SEC)
			assert_int_equal(ws_tail_stats(t)->flush_max_hold, 0);
	}
	assert_int_equal(ws_tail_stats(t)->flush_max_hold, 1);
	assert_non_null(strstr(out_text(&o), "more may follow"));
	ws_tail_flush_all(t);
	assert_int_equal(ws_tail_stats(t)->traces_printed, 3);
	assert_int_equal(ws_tail_stats(t)->spans_printed,
			 ws_tail_stats(t)->spans_in);
	ws_tail_free(t);
	out_close(&o);
}

static void bounds_evict_and_late_spans(void **state)
{
	struct ws_tail_cfg cfg;
	struct ws_tail *t;
	struct ws_resource *r;
	struct ws_span *s;
	struct out o;

	ws_tail_cfg_init(&cfg);
	cfg.max_traces = 2;
	out_open(&o, &cfg);
	t = ws_tail_new(&cfg);
	feed_one(t, TID1, "a", false, NULL, 1);
	feed_one(t, TID2, "a", false, NULL, 2);
	assert_int_equal(ws_tail_stats(t)->evicted, 0);
	feed_one(t, TID3, "a", false, NULL, 3);
	/* TID1 was the least recently updated: printed early, not lost */
	assert_int_equal(ws_tail_stats(t)->evicted, 1);
	assert_int_equal(ws_tail_stats(t)->held_traces, 2);
	assert_non_null(
		strstr(out_text(&o),
		       "trace 4bf92f3577b34da6a3ce929d0e0e4736  1 span"));
	assert_non_null(strstr(out_text(&o), "(printed early: memory bound)"));

	/* a late child of the printed root: a new group, parent not seen */
	r = res_service("a", NULL);
	s = mk(r, TID1, 10, 9, "late", WS_SPAN_KIND_INTERNAL, 5, 1);
	feed(t, &s, 1, NULL, 4);
	ws_resource_put(r);
	assert_int_equal(ws_tail_stats(t)->evicted, 2); /* TID2 made room */
	ws_tail_flush_all(t);
	assert_non_null(strstr(out_text(&o), "late  " /* then the columns */));
	assert_non_null(strstr(out_text(&o), "(parent aa00000000000009 not "
					     "seen)"));
	assert_int_equal(ws_tail_stats(t)->spans_printed, 4);
	ws_tail_free(t);
	out_close(&o);

	/* the span bound */
	ws_tail_cfg_init(&cfg);
	cfg.max_spans = 3;
	out_open(&o, &cfg);
	t = ws_tail_new(&cfg);
	feed_orders(t, 0); /* 4 spans of one trace: printed at 3 */
	assert_int_equal(ws_tail_stats(t)->evicted, 1);
	assert_int_equal(ws_tail_stats(t)->held_spans, 1);
	assert_true(ws_tail_stats(t)->peak_held_spans <= 3);
	ws_tail_free(t); /* frees what is held without printing */
	assert_int_equal(count_lines(out_text(&o), "trace "), 1);
	out_close(&o);
}

/* ---- filters ---- */

static size_t printed_with(struct ws_tail_cfg *cfg, char **text)
{
	struct ws_tail *t;
	struct out o;
	size_t n;

	out_open(&o, cfg);
	t = ws_tail_new(cfg);
	feed_orders(t, 0); /* orders, billing; error */
	feed_one(t, TID2, "inventory", false, "inv.check", 0); /* ok */
	feed_one(t, TID3, "inventory", true, "inv.reserve.eu", 0);
	ws_tail_flush_all(t);
	n = (size_t)ws_tail_stats(t)->traces_printed;
	assert_int_equal(n + ws_tail_stats(t)->traces_filtered, 3);
	*text = strdup(out_text(&o));
	ws_tail_free(t);
	out_close(&o);
	return n;
}

static void filters(void **state)
{
	struct ws_tail_cfg cfg;
	char *text;

	ws_tail_cfg_init(&cfg);
	assert_int_equal(printed_with(&cfg, &text), 3);
	free(text);

	/* service: the whole trace, not only that service's spans */
	cfg.services[cfg.n_services++] = "billing-worker";
	assert_int_equal(printed_with(&cfg, &text), 1);
	assert_non_null(strstr(text, "GET /orders"));
	free(text);
	cfg.services[cfg.n_services++] = "inventory";
	assert_int_equal(printed_with(&cfg, &text), 3);
	free(text);

	cfg.errors_only = true;
	assert_int_equal(printed_with(&cfg, &text), 2);
	assert_null(strstr(text, "0202020202020202"));
	free(text);

	ws_tail_cfg_init(&cfg);
	cfg.destinations[cfg.n_destinations++] = "inv.*";
	assert_int_equal(printed_with(&cfg, &text), 1);
	assert_non_null(strstr(text, "trace 0202020202020202"));
	free(text);
	cfg.destinations[0] = "inv.>";
	assert_int_equal(printed_with(&cfg, &text), 2);
	free(text);
	cfg.destinations[0] = "orders.created";
	assert_int_equal(printed_with(&cfg, &text), 1);
	assert_non_null(strstr(text, "trace 4bf92f35"));
	free(text);

	/* trace id: other traces are not even held */
	ws_tail_cfg_init(&cfg);
	cfg.has_trace_id = true;
	memcpy(cfg.trace_id, TID3, 16);
	{
		struct ws_tail *t;
		struct out o;

		out_open(&o, &cfg);
		t = ws_tail_new(&cfg);
		feed_orders(t, 0);
		feed_one(t, TID3, "x", false, NULL, 0);
		assert_int_equal(ws_tail_stats(t)->other_trace, 4);
		assert_int_equal(ws_tail_stats(t)->held_spans, 1);
		ws_tail_flush_all(t);
		assert_int_equal(count_lines(out_text(&o), "trace "), 1);
		assert_non_null(strstr(out_text(&o), "trace 0303"));
		ws_tail_free(t);
		out_close(&o);
	}
}

static void subject_match(void **state)
{
	assert_true(ws_subject_match("a.b.c", "a.b.c"));
	assert_false(ws_subject_match("a.b.c", "a.b"));
	assert_false(ws_subject_match("a.b", "a.b.c"));
	assert_false(ws_subject_match("a.b.c", "a.b.cd"));
	assert_true(ws_subject_match("a.*.c", "a.x.c"));
	assert_false(ws_subject_match("a.*.c", "a.x.y.c"));
	assert_true(ws_subject_match("a.*", "a.x"));
	assert_false(ws_subject_match("a.*", "a"));
	assert_true(ws_subject_match("a.>", "a.x"));
	assert_true(ws_subject_match("a.>", "a.x.y.z"));
	assert_false(ws_subject_match("a.>", "a"));
	assert_true(ws_subject_match(">", "a"));
	assert_true(ws_subject_match("*", "a"));
	assert_false(ws_subject_match("*", "a.b"));
	assert_false(ws_subject_match("a.>.c", "a.b.c")); /* > only last */
	assert_false(ws_subject_match("a", ""));
	assert_false(ws_subject_match("", "a"));
	assert_false(ws_subject_match("a.*", "a..b"));
	assert_false(ws_subject_match(NULL, "a"));
}

/* ---- odd but valid input ---- */

static void duplicates_loops_orphans(void **state)
{
	struct ws_resource *r = res_service("svc", NULL);
	struct ws_span *s[4];
	struct ws_tail_cfg cfg;
	struct ws_tail *t;
	struct out o;
	const char *txt, *a, *b;

	ws_tail_cfg_init(&cfg);
	out_open(&o, &cfg);
	t = ws_tail_new(&cfg);
	/* 1 -> 2 -> 1: a parent loop; 3 -> 7 (never seen); 2 again */
	s[0] = mk(r, TID2, 1, 2, "loop-a", WS_SPAN_KIND_INTERNAL, 10, 5);
	s[1] = mk(r, TID2, 2, 1, "loop-b", WS_SPAN_KIND_INTERNAL, 20, 5);
	s[2] = mk(r, TID2, 3, 7, "orphan", WS_SPAN_KIND_INTERNAL, 0, 50);
	s[3] = mk(r, TID2, 2, 1, "loop-b-again", WS_SPAN_KIND_INTERNAL, 20, 5);
	feed(t, s, 4, NULL, 0);
	/* a span that is its own parent */
	s[0] = mk(r, TID2, 5, 5, "self", WS_SPAN_KIND_INTERNAL, 30, 1);
	feed(t, s, 1, NULL, 0);
	ws_tail_flush_all(t);
	txt = out_text(&o);
	assert_int_equal(ws_tail_stats(t)->duplicate_spans, 1);
	assert_int_equal(ws_tail_stats(t)->cycles, 1);
	assert_int_equal(ws_tail_stats(t)->spans_printed, 4);
	assert_null(strstr(txt, "loop-b-again"));
	assert_non_null(strstr(txt, "(parent aa00000000000007 not seen)"));
	assert_non_null(strstr(txt, "(parent loop)"));
	/* the orphan starts first; the loop is printed from its earliest */
	a = strstr(txt, "orphan");
	b = strstr(txt, "loop-a");
	assert_true(a && b && a < b);
	assert_non_null(strstr(txt, "\u2514\u2500 loop-b"));
	/* self-parented: a root whose parent (itself) counts as not seen */
	assert_non_null(strstr(txt, "self"));
	ws_tail_free(t);
	out_close(&o);
	ws_resource_put(r);
}

static void terminal_safety_and_color(void **state)
{
	struct ws_resource *r = res_service("svc\x1b]0;x\x07", NULL);
	struct ws_span *s[2];
	struct ws_tail_cfg cfg;
	struct ws_tail *t;
	struct out o;
	const char *txt;

	ws_tail_cfg_init(&cfg);
	out_open(&o, &cfg);
	t = ws_tail_new(&cfg);
	s[0] = mk(r, TID2, 1, 0,
		  "evil\x1b[2J\r\xc2\x9b"
		  "31m",
		  0, 0, 1);
	ws_span_set_status(s[0], WS_STATUS_ERROR, "bad\nline");
	feed(t, s, 1, NULL, 0);
	ws_tail_flush_all(t);
	txt = out_text(&o);
	assert_null(strchr(txt, '\x1b'));
	assert_null(strchr(txt, '\r'));
	assert_null(strstr(txt, "\xc2\x9b"));
	assert_non_null(strstr(txt, "evil\\x1b[2J\\x0d\\u009b31m"));
	assert_non_null(strstr(txt, "svc\\x1b]0;x\\x07"));
	assert_non_null(strstr(txt, "ERROR bad\\x0aline"));
	assert_int_equal(count_lines(txt, "\n"), 2);
	ws_tail_free(t);
	out_close(&o);

	/* colours only when asked */
	cfg.color = true;
	out_open(&o, &cfg);
	t = ws_tail_new(&cfg);
	s[0] = mk(r, TID2, 1, 0, "failing", 0, 0, 1);
	ws_span_set_status(s[0], WS_STATUS_ERROR, NULL);
	s[1] = mk(r, TID2, 2, 1, "fine", 0, 0, 1);
	ws_span_set_status(s[1], WS_STATUS_OK, NULL);
	feed(t, s, 2, NULL, 0);
	ws_tail_flush_all(t);
	txt = out_text(&o);
	assert_non_null(strstr(txt, "\033[31mfailing\033[0m"));
	assert_non_null(strstr(txt, "\033[32mOK\033[0m"));
	ws_tail_free(t);
	out_close(&o);
	ws_resource_put(r);
}

/* ---- malformed input ---- */

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
	pb_request;

/* Protobuf bytes of spans with ids of the given lengths (protobuf-c). */
static uint8_t *raw_request(const size_t *tid_len, const size_t *sid_len,
			    const size_t *pid_len, size_t n, size_t *len)
{
	static uint8_t ids[32];
	pb_request req =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	Opentelemetry__Proto__Trace__V1__ResourceSpans
		rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT,
		*rsp = &rs;
	Opentelemetry__Proto__Trace__V1__ScopeSpans
		ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT,
		*ssp = &ss;
	Opentelemetry__Proto__Trace__V1__Span sp[8], *spp[8];
	uint8_t *buf;
	size_t i;

	memset(ids, 0x11, sizeof(ids));
	for (i = 0; i < n; i++) {
		opentelemetry__proto__trace__v1__span__init(&sp[i]);
		sp[i].trace_id = (ProtobufCBinaryData){tid_len[i], ids};
		sp[i].span_id = (ProtobufCBinaryData){sid_len[i], ids};
		sp[i].parent_span_id =
			(ProtobufCBinaryData){pid_len[i], ids + 1};
		sp[i].name = "raw";
		spp[i] = &sp[i];
	}
	ss.n_spans = n;
	ss.spans = spp;
	rs.n_scope_spans = 1;
	rs.scope_spans = &ssp;
	req.n_resource_spans = 1;
	req.resource_spans = &rsp;
	*len = protobuf_c_message_get_packed_size(&req.base);
	buf = malloc(*len);
	assert_non_null(buf);
	protobuf_c_message_pack(&req.base, buf);
	return buf;
}

static void bad_ids_skipped_rest_flows(void **state)
{
	static const size_t tid[] = {15, 16, 16, 16, 17, 16};
	static const size_t sid[] = {8, 7, 8, 8, 8, 0};
	static const size_t pid[] = {0, 0, 5, 0, 0, 0};
	struct ws_tail_cfg cfg;
	struct ws_tail *t;
	struct out o;
	uint8_t *buf;
	size_t len;

	ws_tail_cfg_init(&cfg);
	out_open(&o, &cfg);
	t = ws_tail_new(&cfg);
	buf = raw_request(tid, sid, pid, 6, &len);
	assert_int_equal(ws_tail_feed(t, "x", buf, len, 0), 0);
	free(buf);
	assert_int_equal(ws_tail_stats(t)->spans_in, 6);
	assert_int_equal(ws_tail_stats(t)->bad_spans, 5);
	ws_tail_flush_all(t);
	assert_int_equal(ws_tail_stats(t)->spans_printed, 1);
	/* no service attribute: the OTel fallback name */
	assert_non_null(strstr(out_text(&o), "unknown_service"));
	ws_tail_free(t);
	out_close(&o);
}

/* A span attribute whose value nests arrays `depth` deep. */
static uint8_t *nested_request(size_t depth, size_t *len)
{
	Opentelemetry__Proto__Common__V1__AnyValue *v =
		calloc(depth + 1, sizeof(*v));
	Opentelemetry__Proto__Common__V1__ArrayValue *a =
		calloc(depth, sizeof(*a));
	Opentelemetry__Proto__Common__V1__AnyValue **vp =
		calloc(depth, sizeof(*vp));
	Opentelemetry__Proto__Common__V1__KeyValue
		kv = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT,
		*kvp = &kv;
	size_t tl = 16, sl = 8, pl = 0;
	uint8_t *head, *buf;
	size_t hlen, i;
	pb_request *req;

	/* take a valid one-span request and hang the attribute on it */
	head = raw_request(&tl, &sl, &pl, 1, &hlen);
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, hlen, head);
	assert_non_null(req);
	for (i = 0; i <= depth; i++)
		opentelemetry__proto__common__v1__any_value__init(&v[i]);
	for (i = 0; i < depth; i++) {
		opentelemetry__proto__common__v1__array_value__init(&a[i]);
		v[i].value_case =
			OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
		v[i].array_value = &a[i];
		a[i].n_values = 1;
		vp[i] = &v[i + 1];
		a[i].values = &vp[i];
	}
	v[depth].value_case =
		OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
	v[depth].int_value = 7;
	kv.key = "deep";
	kv.value = &v[0];
	req->resource_spans[0]->scope_spans[0]->spans[0]->n_attributes = 1;
	req->resource_spans[0]->scope_spans[0]->spans[0]->attributes = &kvp;
	/* packing recurses too: keep the depth where the stack copes */
	*len = protobuf_c_message_get_packed_size(&req->base);
	buf = malloc(*len);
	assert_non_null(buf);
	protobuf_c_message_pack(&req->base, buf);
	req->resource_spans[0]->scope_spans[0]->spans[0]->n_attributes = 0;
	req->resource_spans[0]->scope_spans[0]->spans[0]->attributes = NULL;
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
		req, NULL);
	free(head);
	free(v);
	free(a);
	free(vp);
	return buf;
}

static void malformed_never_crashes(void **state)
{
	static const uint8_t garbage[][12] = {
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		 0xff, 0x01},			     /* an endless varint */
		{0x0a, 0x7f, 0x00},		     /* length past the end */
		{0x0b, 0x00},			     /* a group */
		{'{', '"', 'a', '"', ':', '1', '}'}, /* JSON, not protobuf */
		{0x0a, 0x02, 0x12, 0x05},	     /* inner length too long */
	};
	struct ws_tail_cfg cfg;
	struct ws_tail *t;
	struct ws_span *s[4];
	struct ws_resource *r = res_service("svc", NULL);
	struct out o;
	uint8_t *good, *copy;
	size_t glen, i, ok = 0, fed = 0;
	unsigned bit;

	ws_tail_cfg_init(&cfg);
	cfg.json = true; /* the attribute paths too */
	out_open(&o, &cfg);
	t = ws_tail_new(&cfg);
	for (i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		assert_int_equal(
			ws_tail_feed(t, "g", garbage[i], sizeof(garbage[i]), 0),
			-EBADMSG);
		fed++;
	}
	assert_int_equal(ws_tail_stats(t)->bad_messages, fed);

	/* every truncation and every bit flip of a valid message */
	s[0] = mk(r, TID1, 1, 0, "a", WS_SPAN_KIND_SERVER, 0, 10);
	ws_attrs_cstr(&s[0]->a, "enduser.id", "alice");
	ws_attrs_double(&s[0]->a, "d", 1.5);
	s[1] = mk(r, TID1, 2, 1, "b", WS_SPAN_KIND_CLIENT, 1, 5);
	ws_span_set_status(s[1], WS_STATUS_ERROR, "x");
	ws_span_add_event(s[1], "ev", T0);
	assert_int_equal(ws_otlp_pb_encode(s, 2, &good, &glen), 0);
	ws_span_free(s[0]);
	ws_span_free(s[1]);
	copy = malloc(glen);
	for (i = 0; i < glen; i++) {
		memcpy(copy, good, i);
		ok += ws_tail_feed(t, "t", copy, i, 0) == 0;
		fed++;
	}
	for (i = 0; i < glen; i++)
		for (bit = 0; bit < 8; bit++) {
			memcpy(copy, good, glen);
			copy[i] ^= (uint8_t)(1u << bit);
			ok += ws_tail_feed(t, "t", copy, glen, 0) == 0;
			fed++;
		}
	/* random bytes, fixed seed */
	srand(42);
	for (i = 0; i < 3000; i++) {
		size_t n = (size_t)rand() % glen, k;

		for (k = 0; k < n; k++)
			copy[k] = (uint8_t)rand();
		ok += ws_tail_feed(t, "r", copy, n, 0) == 0;
		fed++;
	}
	free(copy);
	free(good);
	assert_int_equal(ws_tail_stats(t)->messages, fed);
	assert_int_equal(ws_tail_stats(t)->bad_messages + ok, fed);
	assert_true(ws_tail_stats(t)->bad_messages > 1000);
	ws_tail_flush_all(t);
	assert_int_equal(ws_tail_stats(t)->held_spans, 0);
	ws_tail_free(t);
	out_close(&o);
	ws_resource_put(r);
}

static void deep_nesting_rejected(void **state)
{
	struct ws_tail_cfg cfg;
	struct ws_tail *t;
	struct out o;
	uint8_t *buf;
	size_t len;

	ws_tail_cfg_init(&cfg);
	cfg.json = true;
	out_open(&o, &cfg);
	t = ws_tail_new(&cfg);
	/* 10 levels: printed, the deepest levels as "..." */
	buf = nested_request(10, &len);
	assert_int_equal(ws_tail_feed(t, "d", buf, len, 0), 0);
	free(buf);
	ws_tail_flush_all(t);
	assert_non_null(
		strstr(out_text(&o), "\"deep\":[[[[[[[[\"...\"]]]]]]]]"));
	/* 2000 levels: rejected before protobuf-c recurses into it (at
	 * 100000 levels protobuf-c's unpack overflows the stack) */
	buf = nested_request(2000, &len);
	assert_int_equal(
		ws_pb_check(
			&opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
			buf, len, WS_PB_MAX_DEPTH),
		-EBADMSG);
	assert_int_equal(ws_tail_feed(t, "d", buf, len, 0), -EBADMSG);
	free(buf);
	assert_int_equal(ws_tail_stats(t)->bad_messages, 1);
	ws_tail_free(t);
	out_close(&o);
}

static void duration_text(void **state)
{
	char b[32];

	ws_tail_duration(0, b, sizeof(b));
	assert_string_equal(b, "0ns");
	ws_tail_duration(999, b, sizeof(b));
	assert_string_equal(b, "999ns");
	ws_tail_duration(1500, b, sizeof(b));
	assert_string_equal(b, "1.5us");
	ws_tail_duration(12500000, b, sizeof(b));
	assert_string_equal(b, "12.5ms");
	ws_tail_duration(2 * SEC + 5 * MS, b, sizeof(b));
	assert_string_equal(b, "2.005s");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tree_text),
		cmocka_unit_test(tree_json),
		cmocka_unit_test(quiet_period_and_max_hold),
		cmocka_unit_test(bounds_evict_and_late_spans),
		cmocka_unit_test(filters),
		cmocka_unit_test(subject_match),
		cmocka_unit_test(duplicates_loops_orphans),
		cmocka_unit_test(terminal_safety_and_color),
		cmocka_unit_test(bad_ids_skipped_rest_flows),
		cmocka_unit_test(malformed_never_crashes),
		cmocka_unit_test(deep_nesting_rejected),
		cmocka_unit_test(duration_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
