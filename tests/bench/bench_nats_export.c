/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Throughput of the NATS span sink (agent/export/nats_export.c) against a
 * real nats-server: the calling thread plays the agent's pipeline thread
 * (hands spans over: batching and OTLP protobuf encoding happen there), the
 * exporter's publisher thread and nats.c's threads publish. NATS-like spans
 * from bench_spans.h, one new span per handover as the span builder makes
 * them; the CPU time spent building them is measured (build_cpu_s) so it can
 * be taken out of the pipeline thread's time.
 *
 *   bench_nats_export URL core|jetstream SECONDS [BATCH_SPANS]
 *
 * jetstream creates (or reuses) the stream WSBENCH on otel.traces.> with
 * file storage. Prints one JSON line: spans handed over, sent (flushed or
 * acknowledged), dropped (the queue's bound), wall and CPU seconds of the
 * pipeline thread and of the whole process, encoded bytes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_spans.h"
#include "export/nats_export.h"

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double process_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* The stream jetstream mode publishes into. */
static int make_stream(const char *url)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	const char *subj[] = {"otel.traces.>"};
	natsStatus s = natsConnection_ConnectTo(&nc, url);

	if (s == NATS_OK)
		s = natsConnection_JetStream(&js, nc, NULL);
	if (s == NATS_OK) {
		jsStreamConfig_Init(&sc);
		sc.Name = "WSBENCH";
		sc.Subjects = subj;
		sc.SubjectsLen = 1;
		sc.Storage = js_FileStorage;
		s = js_AddStream(&si, js, &sc, NULL, &jerr);
		if (s != NATS_OK && jerr == JSStreamNameExistErr)
			s = NATS_OK;
	}
	if (s != NATS_OK)
		fprintf(stderr, "stream: %s (%d)\n", natsStatus_GetText(s),
			(int)jerr);
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return s == NATS_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct ws_nats_export_cfg cfg = {0};
	struct ws_nats_export_stats st;
	struct ws_nats_export *e;
	struct ws_resource *r;
	double secs, t0, c0, p0, t, build = 0, tb;
	uint64_t n = 0;
	char err[256];
	unsigned i;

	if (argc < 4) {
		fprintf(stderr,
			"usage: %s URL core|jetstream SECONDS "
			"[BATCH_SPANS]\n",
			argv[0]);
		return 2;
	}
	secs = atof(argv[3]);
	cfg.conn.urls = argv[1];
	cfg.node = "bench";
	cfg.mode = strcmp(argv[2], "jetstream") ? WS_EXPORT_CORE
						: WS_EXPORT_JETSTREAM;
	cfg.batch_max_spans = argc > 4 ? (uint32_t)atoi(argv[4]) : 0;
	cfg.queue_max_bytes = 64ull << 20;
	cfg.js_max_pending = 256;
	cfg.drain_timeout_ms = 30000;
	if (cfg.mode == WS_EXPORT_JETSTREAM && make_stream(argv[1]))
		return 1;
	e = ws_nats_export_new(&cfg, err, sizeof(err));
	if (!e) {
		fprintf(stderr, "export: %s\n", err);
		return 1;
	}
	r = make_resource(1);
	/* let the connection come up, so max_payload is the server's */
	for (i = 0; i < 100; i++) {
		ws_nats_export_stats(e, &st);
		if (st.connected && st.max_payload)
			break;
		nanosleep(&(struct timespec){0, 20000000}, NULL);
	}
	t0 = clock_s(CLOCK_MONOTONIC);
	c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
	p0 = process_cpu_s();
	do {
		for (i = 0; i < 256; i++) {
			struct ws_span *s;

			/* building the span is the span builder's cost */
			tb = clock_s(CLOCK_THREAD_CPUTIME_ID);
			s = make_span(r, (unsigned)(n + i));
			s->domain = WS_DOMAIN_NATS;
			build += clock_s(CLOCK_THREAD_CPUTIME_ID) - tb;
			ws_nats_export_span(e, s);
		}
		n += 256;
		t = clock_s(CLOCK_MONOTONIC) - t0;
		ws_nats_export_tick(e,
				    (uint64_t)(clock_s(CLOCK_MONOTONIC) * 1e9));
	} while (t < secs);
	ws_nats_export_drain(e);
	t = clock_s(CLOCK_MONOTONIC) - t0;
	ws_nats_export_stats(e, &st);
	printf("{\"mode\":\"%s\",\"batch_spans\":%u,\"spans_in\":%" PRIu64
	       ",\"sent_spans\":%" PRIu64 ",\"sent_batches\":%" PRIu64
	       ",\"dropped_spans\":%" PRIu64 ",\"exit_dropped_spans\":%" PRIu64
	       ",\"resent\":%" PRIu64 ",\"encoded_bytes\":%" PRIu64
	       ",\"sent_bytes\":%" PRIu64 ",\"wall_s\":%.3f"
	       ",\"pipeline_cpu_s\":%.3f,\"build_cpu_s\":%.3f"
	       ",\"process_cpu_s\":%.3f}\n",
	       argv[2], cfg.batch_max_spans ? cfg.batch_max_spans : 1024, n,
	       st.sent_spans, st.sent_batches, st.dropped_spans,
	       st.exit_dropped_spans, st.resent, st.encoded_bytes,
	       st.sent_bytes, t, clock_s(CLOCK_THREAD_CPUTIME_ID) - c0, build,
	       process_cpu_s() - p0);
	ws_nats_export_close(e);
	ws_resource_put(r);
	return st.sent_spans ? 0 : 1;
}
