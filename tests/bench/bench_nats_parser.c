/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Throughput of the NATS parser alone (agent/proto/nats.c), no BPF, no I/O.
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Iagent \
 *      tests/bench/bench_nats_parser.c agent/proto/nats.c -ljson-c \
 *      -o build/bench_nats_parser
 *   build/bench_nats_parser [seconds per case] [feed size in bytes]
 *
 * A 4 MiB stream of frames with 128-byte payloads is fed repeatedly in
 * chunks of the feed size (default 16 KiB, the default per-syscall capture),
 * so frames also cross feed boundaries as they do in real captures. MB/s
 * counts wire bytes (control line, payload, CRLF); 1 MB = 10^6 bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/nats.h"

#define STREAM_BYTES (4u << 20)
#define PAYLOAD 128

struct counts {
	uint64_t frames;
	uint64_t payload; /* summed so the callback is not optimised away */
};

static void on_frame(void *ctx, const struct ws_nats_frame *f)
{
	struct counts *c = ctx;

	c->frames++;
	c->payload += f->payload_len + f->subject.len + f->headers.n;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Fill buf with copies of frame (len bytes); returns bytes used. */
static size_t fill(uint8_t *buf, const char *frame, size_t len, size_t *nframes)
{
	size_t o = 0;

	*nframes = 0;
	while (o + len <= STREAM_BYTES) {
		memcpy(buf + o, frame, len);
		o += len;
		(*nframes)++;
	}
	return o;
}

static int bench(const char *name, const char *frame, size_t flen,
		 double seconds, size_t chunk)
{
	static const struct ws_nats_cb cb = {.frame = on_frame};
	uint8_t *buf = malloc(STREAM_BYTES);
	struct counts c = {0, 0};
	struct ws_nats_parser *p;
	size_t len, nframes;
	uint64_t bytes = 0;
	double t0, t;

	if (!buf)
		return -1;
	p = ws_nats_parser_new(&cb, &c);
	if (!p) {
		free(buf);
		return -1;
	}
	len = fill(buf, frame, flen, &nframes);
	t0 = now();
	do {
		for (size_t o = 0; o < len; o += chunk)
			ws_nats_parser_feed(p, buf + o,
					    len - o < chunk ? len - o : chunk);
		bytes += len;
		t = now() - t0;
	} while (t < seconds);

	if (ws_nats_parser_stats(p)->skipped_bytes ||
	    c.frames != (bytes / len) * nframes) {
		fprintf(stderr, "%s: parse went wrong (%llu frames)\n", name,
			(unsigned long long)c.frames);
		ws_nats_parser_free(p);
		free(buf);
		return -1;
	}
	printf("%-5s %3zu B frame (%d B payload), feed %6zu B: %8.1f MB/s "
	       "%6.2f M frames/s\n",
	       name, flen, PAYLOAD, chunk, (double)bytes / t / 1e6,
	       (double)c.frames / t / 1e6);
	ws_nats_parser_free(p);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2.0;
	size_t chunk = argc > 2 ? (size_t)atol(argv[2]) : 16384;
	char payload[PAYLOAD + 1], pub[512], msg[512], hmsg[768], hdr[256];
	int n, rc = 0;

	if (seconds <= 0 || chunk == 0) {
		fprintf(stderr, "usage: %s [seconds] [feed size]\n", argv[0]);
		return 2;
	}
	for (int i = 0; i < PAYLOAD; i++)
		payload[i] = (char)('a' + i % 26);
	payload[PAYLOAD] = 0;

	n = snprintf(pub, sizeof(pub),
		     "PUB orders.created _INBOX.x7Rm1.42 %d"
		     "\r\n%s\r\n",
		     PAYLOAD, payload);
	rc |= bench("PUB", pub, (size_t)n, seconds, chunk);
	n = snprintf(msg, sizeof(msg), "MSG orders.created 7 %d\r\n%s\r\n",
		     PAYLOAD, payload);
	rc |= bench("MSG", msg, (size_t)n, seconds, chunk);
	snprintf(hdr, sizeof(hdr),
		 "NATS/1.0\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-"
		 "b7ad6b7169203331-01\r\n\r\n");
	n = snprintf(hmsg, sizeof(hmsg),
		     "HMSG orders.created 7 %zu %zu\r\n%s%s"
		     "\r\n",
		     strlen(hdr), strlen(hdr) + PAYLOAD, hdr, payload);
	rc |= bench("HMSG", hmsg, (size_t)n, seconds, chunk);
	return rc ? 1 : 0;
}
