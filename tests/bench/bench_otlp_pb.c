/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Throughput of the OTLP protobuf encoder (agent/export/otlp_pb.c) on one
 * core, no I/O, for NATS-like spans: 20 attributes (15 strings, 4 ints, a
 * bool), one link with one attribute, a resource of 10 attributes shared by
 * the batch (plus a 4-resource case). For comparison: the OTLP/JSON encoder
 * on the same spans and protobuf-c's decoding (ws_otlp_pb_decode_count).
 *
 *   make build/libwirespan.a
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Iagent -Ibuild/gen \
 *      tests/bench/bench_otlp_pb.c build/libwirespan.a \
 *      -lprotobuf-c -ljson-c -lxxhash -lbpf -lelf -lz \
 *      -o build/bench_otlp_pb
 *   build/bench_otlp_pb [seconds per case [batch size]]
 *
 * With a batch size, only that encoder case runs (for perf record).
 *
 * Prints spans/s, ns/span and bytes/span per case, per second of this
 * thread's CPU time (CLOCK_THREAD_CPUTIME_ID); 1 MB = 10^6 bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "export/otlp_pb.h"
#include "otlp_json.h"
#include "span.h"

#define MAX_BATCH 4096

/* CPU time of this thread: on a shared machine, time spent descheduled
 * is not the encoder's. */
static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct ws_resource *make_resource(uint64_t key)
{
	struct ws_resource *r = ws_resource_new(key);

	ws_attrs_cstr(&r->a, "service.name", "orders-api");
	ws_attrs_cstr(&r->a, "service.instance.id",
		      "3f0c1b5e-7d1a-4a51-9a77-2c1f0e9b6d42");
	ws_attrs_cstr(&r->a, "host.name", "ip-10-0-3-17");
	ws_attrs_cstr(&r->a, "k8s.namespace.name", "shop");
	ws_attrs_cstr(&r->a, "k8s.pod.name", "orders-api-7c9f8d6b5-x2k4q");
	ws_attrs_cstr(&r->a, "container.id",
		      "8e4f2a1c9b7d3e6f5a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b"
		      "9c0d1e2f");
	ws_attrs_int(&r->a, "process.pid", 4242 + (int64_t)key);
	ws_attrs_cstr(&r->a, "process.executable.name", "orders-api");
	ws_attrs_cstr(&r->a, "process.executable.path", "/usr/bin/orders-api");
	ws_attrs_cstr(&r->a, "process.owner", "app");
	return r;
}

/* A NATS publish span as nats_spans.c builds them: 20 attributes, 1 link. */
static struct ws_span *make_span(struct ws_resource *r, unsigned i)
{
	struct ws_span *s =
		ws_span_new("publish orders.created", WS_SPAN_KIND_PRODUCER,
			    1700000000000000000ull + i * 1000ull, NULL);
	uint8_t tid[16], sid[8];
	char id[32];

	s->end_ns = s->start_ns + 35000 + i % 1000;
	s->flags = 0x301;
	snprintf(id, sizeof(id), "msg-%08u", i);
	ws_attrs_cstr(&s->a, "messaging.system", "nats");
	ws_attrs_cstr(&s->a, "messaging.operation.name", "publish");
	ws_attrs_cstr(&s->a, "messaging.operation.type", "send");
	ws_attrs_cstr(&s->a, "messaging.destination.name", "orders.created");
	ws_attrs_cstr(&s->a, "messaging.destination.template", "orders.*");
	ws_attrs_cstr(&s->a, "messaging.client.id", "17");
	ws_attrs_cstr(&s->a, "messaging.message.id", id);
	ws_attrs_cstr(&s->a, "messaging.message.conversation_id",
		      "_INBOX.x7GhJkLmNoPqRsTu");
	ws_attrs_cstr(&s->a, "messaging.consumer.group.name", "workers");
	ws_attrs_cstr(&s->a, "server.address", "nats.shop.svc");
	ws_attrs_cstr(&s->a, "network.peer.address", "10.0.7.12");
	ws_attrs_cstr(&s->a, "network.transport", "tcp");
	ws_attrs_cstr(&s->a, "network.type", "ipv4");
	ws_attrs_cstr(&s->a, "nats.reply_to", "_INBOX.x7GhJkLmNoPqRsTu.1");
	ws_attrs_cstr(&s->a, "enduser.pseudo.id", "u_5f2c9a");
	ws_attrs_int(&s->a, "server.port", 4222);
	ws_attrs_int(&s->a, "network.peer.port", 4222);
	ws_attrs_int(&s->a, "messaging.message.body.size", 128 + i % 512);
	ws_attrs_int(&s->a, "messaging.message.envelope.size", 210 + i % 512);
	ws_attrs_bool(&s->a, "messaging.destination.temporary", false);
	ws_id_random(tid, 16);
	ws_id_random(sid, 8);
	ws_span_add_link(s, tid, sid, 0x301);
	ws_attrs_cstr(&s->links[0].a, "messaging.operation.type", "create");
	ws_span_set_resource(s, r);
	return s;
}

static void run(const char *what, struct ws_span **spans, size_t batch,
		double secs)
{
	uint64_t n = 0, bytes = 0;
	double t0 = now(), t;
	uint8_t *buf;
	size_t len;

	do {
		int i;

		for (i = 0; i < 16; i++) {
			if (ws_otlp_pb_encode(spans, batch, &buf, &len)) {
				fprintf(stderr, "encode failed\n");
				exit(1);
			}
			bytes += len;
			n += batch;
			free(buf);
		}
		t = now() - t0;
	} while (t < secs);
	printf("%-28s batch %5zu: %9.0f spans/s  %6.0f ns/span  %5.0f B/span  "
	       "%6.1f MB/s\n",
	       what, batch, n / t, t * 1e9 / n, (double)bytes / n,
	       bytes / t / 1e6);
}

static void run_decode(struct ws_span **spans, size_t batch, double secs)
{
	uint64_t n = 0;
	double t0 = now(), t;
	uint8_t *buf;
	size_t len, k;

	ws_otlp_pb_encode(spans, batch, &buf, &len);
	do {
		int i;

		for (i = 0; i < 16; i++) {
			if (ws_otlp_pb_decode_count(buf, len, &k) ||
			    k != batch) {
				fprintf(stderr, "decode failed\n");
				exit(1);
			}
			n += batch;
		}
		t = now() - t0;
	} while (t < secs);
	free(buf);
	printf("%-28s batch %5zu: %9.0f spans/s  %6.0f ns/span\n",
	       "decode_count (protobuf-c)", batch, n / t, t * 1e9 / n);
}

static void run_json(struct ws_span **spans, size_t batch, double secs)
{
	FILE *f = fopen("/dev/null", "w");
	uint64_t n = 0;
	double t0 = now(), t;

	do {
		ws_otlp_json_write(f, spans, batch);
		n += batch;
		t = now() - t0;
	} while (t < secs);
	fclose(f);
	printf("%-28s batch %5zu: %9.0f spans/s  %6.0f ns/span\n",
	       "ws_otlp_json_write (stream)", batch, n / t, t * 1e9 / n);
}

int main(int argc, char **argv)
{
	static const size_t batches[] = {1, 64, 512, 4096};
	double secs = argc > 1 ? atof(argv[1]) : 2.0;
	struct ws_resource *r[4];
	struct ws_span **one, **four;
	size_t i;

	one = calloc(MAX_BATCH, sizeof(*one));
	four = calloc(MAX_BATCH, sizeof(*four));
	for (i = 0; i < 4; i++)
		r[i] = make_resource(i);
	for (i = 0; i < MAX_BATCH; i++) {
		one[i] = make_span(r[0], (unsigned)i);
		four[i] = make_span(r[i % 4], (unsigned)i);
	}
	if (argc > 2) { /* one case, for perf record */
		run("ws_otlp_pb_encode, 1 res", one,
		    (size_t)atoi(argv[2]) % (MAX_BATCH + 1), secs);
	} else {
		for (i = 0; i < sizeof(batches) / sizeof(batches[0]); i++)
			run("ws_otlp_pb_encode, 1 res", one, batches[i], secs);
		run("ws_otlp_pb_encode, 4 res", four, 512, secs);
		run_decode(one, 512, secs);
		run_json(one, 512, secs);
	}
	for (i = 0; i < MAX_BATCH; i++) {
		ws_span_free(one[i]);
		ws_span_free(four[i]);
	}
	for (i = 0; i < 4; i++)
		ws_resource_put(r[i]);
	free(one);
	free(four);
	return 0;
}
