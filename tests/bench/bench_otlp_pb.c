/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Throughput of the OTLP protobuf encoders (agent/export/otlp_pb.c: the
 * direct writer ws_otlp_pb_encode and the protobuf-c reference
 * ws_otlp_pb_encode_ref) on one
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
#include "bench_spans.h"
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

typedef int (*encode_fn)(struct ws_span *const *, size_t, uint8_t **, size_t *);

static void run(const char *what, encode_fn enc, struct ws_span **spans,
		size_t batch, double secs)
{
	uint64_t n = 0, bytes = 0;
	double t0 = now(), t;
	uint8_t *buf;
	size_t len;

	do {
		int i;

		for (i = 0; i < 16; i++) {
			if (enc(spans, batch, &buf, &len)) {
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
		run("ws_otlp_pb_encode, 1 res", ws_otlp_pb_encode, one,
		    (size_t)atoi(argv[2]) % (MAX_BATCH + 1), secs);
	} else {
		for (i = 0; i < sizeof(batches) / sizeof(batches[0]); i++) {
			run("ws_otlp_pb_encode, 1 res", ws_otlp_pb_encode, one,
			    batches[i], secs);
			run("  _ref (protobuf-c), 1 res", ws_otlp_pb_encode_ref,
			    one, batches[i], secs);
		}
		run("ws_otlp_pb_encode, 4 res", ws_otlp_pb_encode, four, 512,
		    secs);
		run("  _ref (protobuf-c), 4 res", ws_otlp_pb_encode_ref, four,
		    512, secs);
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
