/* SPDX-License-Identifier: Apache-2.0 */
/* The NATS span sink without a server (no_connect): node tokens, subjects,
 * batching by spans, bytes and delay, headers, the bounded queue dropping
 * the oldest batches, splitting over max_payload, counters. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "export/nats_export.h"
#include "export/otlp_pb.h"
#include "span.h"

static struct ws_span *span(uint8_t domain, size_t attr_bytes)
{
	struct ws_span *s = ws_span_new("publish orders", 4, 1000, NULL);
	char *v;
	int i;

	assert_non_null(s);
	s->domain = domain;
	s->end_ns = 2000;
	if (attr_bytes) {
		static const char *const keys[] = {"a0", "a1", "a2", "a3",
						   "a4", "a5", "a6", "a7"};

		v = malloc(attr_bytes + 1);
		memset(v, 'x', attr_bytes);
		v[attr_bytes] = 0;
		for (i = 0; i < 8; i++)
			ws_attrs_cstr(&s->a, keys[i], v);
		free(v);
	}
	return s;
}

static struct ws_nats_export *make(uint32_t spans, uint32_t bytes,
				   uint64_t queue)
{
	struct ws_nats_export_cfg c = {
		.node = "host-1.example.com",
		.batch_max_spans = spans,
		.batch_max_bytes = bytes,
		.batch_max_delay_ms = 1000,
		.queue_max_bytes = queue,
		.no_connect = true,
	};
	char err[256];
	struct ws_nats_export *e = ws_nats_export_new(&c, err, sizeof(err));

	if (!e)
		fail_msg("%s", err);
	return e;
}

static const char *hdr(natsMsg *m, const char *k)
{
	const char *v = NULL;

	assert_int_equal(natsMsgHeader_Get(m, k, &v), NATS_OK);
	return v;
}

static size_t decoded_spans(natsMsg *m)
{
	size_t n = 0;

	assert_int_equal(
		ws_otlp_pb_decode_count((const uint8_t *)natsMsg_GetData(m),
					(size_t)natsMsg_GetDataLength(m), &n),
		0);
	return n;
}

static void node_and_subjects(void **state)
{
	char node[WS_EXPORT_NODE_MAX + 1], subj[WS_EXPORT_SUBJECT_MAX],
		long_[300];
	const char *why;

	ws_export_node_sanitize("ip-10-0-3-17.ec2.internal", node);
	assert_string_equal(node, "ip-10-0-3-17_ec2_internal");
	ws_export_node_sanitize("a b*c>d\xc3\xa9", node);
	assert_string_equal(node, "a_b_c_d__");
	ws_export_node_sanitize("", node);
	assert_string_equal(node, "unknown");
	memset(long_, 'n', sizeof(long_) - 1);
	long_[sizeof(long_) - 1] = 0;
	ws_export_node_sanitize(long_, node);
	assert_int_equal(strlen(node), WS_EXPORT_NODE_MAX);
	assert_int_equal(ws_export_subject(WS_EXPORT_DEFAULT_TEMPLATE, "otel",
					   "http", "n1", subj, sizeof(subj),
					   &why),
			 0);
	assert_string_equal(subj, "otel.traces.http.n1");
	assert_int_equal(ws_export_subject("{prefix}.{nodes}", "otel", "http",
					   "n1", subj, sizeof(subj), &why),
			 -EINVAL);
	assert_int_equal(ws_export_subject("{prefix}..{node}", "otel", "http",
					   "n1", subj, sizeof(subj), &why),
			 -EINVAL);
	assert_int_equal(ws_export_subject("{prefix}.{node}", "otel", "http",
					   "n1", subj, 7, &why),
			 -EINVAL);
	assert_string_equal(ws_export_domain_name(WS_DOMAIN_NATS), "nats");
}

static void batches_and_headers(void **state)
{
	struct ws_nats_export *e = make(3, 1 << 20, 1 << 20);
	struct ws_nats_export_stats st;
	char id[160];
	natsMsg *m;
	int i;

	for (i = 0; i < 7; i++)
		ws_nats_export_span(e, span(WS_DOMAIN_NATS, 0));
	ws_nats_export_span(e, span(WS_DOMAIN_HTTP, 0));
	ws_nats_export_stats(e, &st);
	assert_int_equal(st.spans_in, 8);
	assert_int_equal(st.batches, 2); /* 3 + 3; 1 nats + 1 http open */
	assert_int_equal(st.flush_spans, 2);
	assert_int_equal(st.queue_batches, 2);
	/* not yet due, then due */
	ws_nats_export_tick(e, 0);
	ws_nats_export_stats(e, &st);
	assert_int_equal(st.batches, 2);
	ws_nats_export_tick(e, UINT64_MAX / 2);
	ws_nats_export_stats(e, &st);
	assert_int_equal(st.batches, 4);
	assert_int_equal(st.flush_delay, 2);
	for (i = 1; i <= 4; i++) {
		m = ws_nats_export_take(e);
		assert_non_null(m);
		assert_string_equal(hdr(m, "Content-Type"),
				    "application/x-protobuf");
		assert_string_equal(hdr(m, "Otel-Signal"), "traces");
		assert_string_equal(hdr(m, "Wirespan-Node"),
				    "host-1_example_com");
		assert_int_equal(atoi(hdr(m, "Wirespan-Seq")), i);
		snprintf(id, sizeof(id), "host-1_example_com:%s:%d",
			 hdr(m, "Wirespan-Boot"), i);
		assert_string_equal(hdr(m, "Nats-Msg-Id"), id);
		assert_int_equal(atoi(hdr(m, "Wirespan-Spans")),
				 i <= 2 ? 3 : 1);
		assert_int_equal(decoded_spans(m), i <= 2 ? 3 : 1);
		/* the nats batches, then nats and http by the tick's order */
		assert_string_equal(
			natsMsg_GetSubject(m),
			i == 4 ? "otel.traces.http.host-1_example_com"
			       : "otel.traces.nats.host-1_example_com");
		natsMsg_Destroy(m);
	}
	assert_null(ws_nats_export_take(e));
	ws_nats_export_stats(e, &st);
	assert_int_equal(st.queue_bytes, 0);
	ws_nats_export_close(e);
}

static void by_bytes(void **state)
{
	struct ws_nats_export *e = make(1000, 4096, 1 << 20);
	struct ws_nats_export_stats st;
	natsMsg *m;
	int i;

	/* ~8 x 200 B of attributes per span: a few spans per 4 KiB */
	for (i = 0; i < 40; i++)
		ws_nats_export_span(e, span(WS_DOMAIN_NATS, 200));
	ws_nats_export_stats(e, &st);
	assert_true(st.flush_bytes >= 5);
	assert_int_equal(st.flush_spans, 0);
	while ((m = ws_nats_export_take(e))) {
		/* a batch over the target is split before it is queued */
		assert_true(natsMsg_GetDataLength(m) <= 4096);
		natsMsg_Destroy(m);
	}
	ws_nats_export_close(e);
}

static void queue_drops_oldest(void **state)
{
	struct ws_nats_export *e = make(1, 1 << 20, 64 * 1024);
	struct ws_nats_export_stats st;
	uint64_t first_seq;
	natsMsg *m;
	int i, n = 0;

	/* each batch ~8 KB: 64 KiB holds 7 or 8 of 30 */
	for (i = 0; i < 30; i++)
		ws_nats_export_span(e, span(WS_DOMAIN_NATS, 1000));
	ws_nats_export_stats(e, &st);
	assert_int_equal(st.batches, 30);
	assert_true(st.dropped_batches >= 20);
	assert_int_equal(st.dropped_spans, st.dropped_batches);
	assert_int_equal(st.queue_batches + st.dropped_batches, 30);
	assert_true(st.queue_bytes <= 64 * 1024);
	assert_true(st.queue_peak_bytes <= 64 * 1024);
	assert_true(st.dropped_bytes > 20 * 8000);
	/* the newest stayed, in order */
	first_seq = 30 - st.queue_batches + 1;
	while ((m = ws_nats_export_take(e))) {
		assert_int_equal(strtoull(hdr(m, "Wirespan-Seq"), NULL, 10),
				 first_seq + (uint64_t)n++);
		natsMsg_Destroy(m);
	}
	assert_int_equal(n, st.queue_batches);
	ws_nats_export_close(e);
}

static void split_over_max_payload(void **state)
{
	/* 8 x 1 KiB attributes: ~8 KB a span; 200 spans ~1.6 MB > 1 MiB,
	 * the max_payload assumed before a server said otherwise */
	struct ws_nats_export *e = make(200, 64u << 20, 64u << 20);
	struct ws_nats_export_stats st;
	size_t total = 0;
	natsMsg *m;
	int i;

	ws_nats_export_set_limits(e, 200, 64u << 20, 1000, 64u << 20);
	for (i = 0; i < 200; i++)
		ws_nats_export_span(e, span(WS_DOMAIN_NATS, 1000));
	ws_nats_export_stats(e, &st);
	assert_true(st.split >= 1);
	assert_int_equal(st.oversize_spans, 0);
	while ((m = ws_nats_export_take(e))) {
		assert_true(natsMsg_GetDataLength(m) <=
			    (1 << 20) - WS_EXPORT_HEADER_ROOM);
		total += decoded_spans(m);
		natsMsg_Destroy(m);
	}
	assert_int_equal(total, 200);
	ws_nats_export_close(e);
}

static void exit_counts(void **state)
{
	struct ws_nats_export *e = make(10, 1 << 20, 1 << 20);
	struct ws_nats_export_stats st;
	int i;

	for (i = 0; i < 25; i++)
		ws_nats_export_span(e, span(WS_DOMAIN_NATS, 0));
	ws_nats_export_drain(e); /* no connection: nothing can leave */
	ws_nats_export_stats(e, &st);
	assert_int_equal(st.flush_exit, 1);
	assert_int_equal(st.exit_dropped_batches, 3);
	assert_int_equal(st.exit_dropped_spans, 25);
	assert_int_equal(st.queue_batches, 0);
	assert_int_equal(st.sent_spans, 0);
	ws_nats_export_close(e);
}

static int teardown(void **state)
{
	nats_CloseAndWait(1000); /* libnats' own threads and memory */
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(node_and_subjects),
		cmocka_unit_test(batches_and_headers),
		cmocka_unit_test(by_bytes),
		cmocka_unit_test(queue_drops_oldest),
		cmocka_unit_test(split_over_max_payload),
		cmocka_unit_test(exit_counts),
	};

	return cmocka_run_group_tests(tests, NULL, teardown);
}
