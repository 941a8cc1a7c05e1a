/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nats_lat: a `nats bench`-style nats.c publisher and subscriber with
 * end-to-end latency, for tests/bench/nats_bench.sh.
 *
 * Two connections to one nats-server from one process: a subscriber on
 * SUBJECT and a publisher of SIZE-byte messages (SIZE >= 16). The first 16
 * bytes of every payload are the message's send time (CLOCK_MONOTONIC, ns)
 * and its sequence number; the subscriber's callback takes the difference
 * with its own clock (same host, same clock) into a histogram.
 *
 * --rate 0 (saturation): publish as fast as the connection takes it, with
 * at most WINDOW bytes of messages sent but not yet received (so a slow
 * subscriber never makes nats-server cut it off as a slow consumer).
 * Throughput = messages received per second after the warm-up.
 *
 * --rate R: a fixed-rate pacer. Message i is due at t0 + i / R; its
 * payload carries that intended time, not the time it actually left, so a
 * publisher that falls behind (a stall, a descheduled thread) shows in the
 * latency instead of hiding it (no coordinated omission). The pacer sends
 * every message that is due, then sleeps until the next one is.
 *
 * Latency is recorded for messages due after the warm-up. Every loop is
 * bounded in time. Prints one JSON line; exit 0 when every message sent
 * was received, 3 otherwise, 1 on a NATS error, 2 on bad arguments.
 *
 * Build: make build/bench/nats_lat (cc -O2 nats_lat.c -lnats)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <getopt.h>
#include <string.h>
#include <sys/prctl.h>

#include "nats_load.h"

#define HDR_BYTES 16 /* send time + sequence number */
#define SUB_BITS 7   /* 64 buckets per power of two: <= 0.8 % error */
#define SUB_COUNT (1 << SUB_BITS)
#define HIST_SHIFTS 40 /* up to 2^47 ns (39 h): every latency */
#define HIST_BUCKETS ((HIST_SHIFTS + 1) * SUB_COUNT)
#define LATE_NS 1000000ll		   /* a send more than 1 ms late */
#define DRAIN_TIMEOUT_NS (15 * NS_PER_S)   /* wait for the subscriber */
#define WINDOW_WAIT_NS 20000ll		   /* saturation: window full */
#define DEFAULT_WINDOW (8 * 1024 * 1024ll) /* bytes in flight */
#define MAX_WINDOW_MSGS 65536ll		   /* and at most this many */

/* Written by the subscriber's delivery thread only; read by main once the
 * connections are closed and the library's threads have ended. */
static uint64_t hist[HIST_BUCKETS];
static int64_t lat_min = INT64_MAX, lat_max, lat_sum;
static atomic_llong received, recorded, bad_msgs;
static int64_t record_from; /* latencies of messages due from here on */

/* Log-linear buckets: exact below 128 ns, then 64 per power of two
 * (row `shift` holds [64, 128) << shift in its upper half). */
static int hist_index(uint64_t v)
{
	int msb, shift;

	if (v < SUB_COUNT)
		return (int)v;
	msb = 63 - __builtin_clzll(v);
	shift = msb - SUB_BITS + 1;
	if (shift > HIST_SHIFTS)
		return HIST_BUCKETS - 1;
	/* v >> shift is in [64, 128): the upper half of the row */
	return shift * SUB_COUNT + (int)(v >> shift);
}

/* The middle of bucket i, in ns. */
static double hist_value(int i)
{
	int shift = i / SUB_COUNT;
	uint64_t sub = (uint64_t)(i % SUB_COUNT);

	if (shift == 0)
		return (double)sub;
	return ((double)sub + 0.5) * (double)(1ull << shift);
}

static double hist_quantile(double q, int64_t n)
{
	int64_t want = (int64_t)(q * (double)n + 0.999999), seen = 0;
	int i;

	if (n <= 0)
		return 0;
	if (want < 1)
		want = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += (int64_t)hist[i];
		if (seen >= want)
			return hist_value(i);
	}
	return (double)lat_max;
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
		   void *closure)
{
	int64_t now = now_ns(), t_due, lat;
	const char *data = natsMsg_GetData(msg);

	(void)nc, (void)sub, (void)closure;
	if (natsMsg_GetDataLength(msg) < HDR_BYTES) {
		atomic_fetch_add(&bad_msgs, 1);
	} else {
		memcpy(&t_due, data, sizeof(t_due));
		if (t_due >= record_from) {
			lat = now - t_due;
			if (lat < 0)
				lat = 0;
			hist[hist_index((uint64_t)lat)]++;
			if (lat < lat_min)
				lat_min = lat;
			if (lat > lat_max)
				lat_max = lat;
			lat_sum += lat;
			atomic_fetch_add(&recorded, 1);
		}
	}
	atomic_fetch_add(&received, 1);
	natsMsg_Destroy(msg);
}

struct run {
	natsConnection *pub;
	const char *subject;
	char *payload;
	long size, rate;
	int64_t t0, t_warm, t_end, window_msgs;
	/* results */
	int64_t sent, sent_warm, recv_warm, recv_end, late, max_lag;
	/* recv_*: saturation only */
};

static void publish(struct run *r, int64_t stamp)
{
	memcpy(r->payload, &stamp, sizeof(stamp));
	memcpy(r->payload + sizeof(stamp), &r->sent, sizeof(r->sent));
	check(natsConnection_Publish(r->pub, r->subject, r->payload,
				     (int)r->size),
	      "publish");
	r->sent++;
}

/* As fast as possible, at most window_msgs in flight. */
static void run_saturation(struct run *r)
{
	int64_t now = r->t0;
	int warm = 0, i;

	while (now < r->t_end) {
		for (i = 0; i < 64; i++) {
			if (r->sent - atomic_load(&received) >= r->window_msgs)
				break;
			publish(r, now_ns());
		}
		now = now_ns();
		if (i < 64)
			sleep_until(now + WINDOW_WAIT_NS);
		if (!warm && now >= r->t_warm) {
			warm = 1;
			r->sent_warm = r->sent;
			r->recv_warm = atomic_load(&received);
			r->t_warm = now;
		}
	}
	r->recv_end = atomic_load(&received);
	r->t_end = now;
}

/* Message i is due at t0 + i / rate and carries that time. */
static void run_fixed(struct run *r)
{
	int64_t total =
		(int64_t)((double)r->rate * (double)(r->t_end - r->t0) / 1e9);
	int64_t due, now;
	int warm = 0;

	while (r->sent < total) {
		due = r->t0 +
		      (int64_t)((double)r->sent * 1e9 / (double)r->rate);
		now = now_ns();
		if (due > now) {
			sleep_until(due);
			continue;
		}
		if (now - due > r->max_lag)
			r->max_lag = now - due;
		if (now - due > LATE_NS)
			r->late++;
		if (!warm && due >= r->t_warm) {
			warm = 1;
			r->sent_warm = r->sent;
		}
		publish(r, due);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: nats_lat [--url U] [--subject S] [--size B] "
			"[--rate R|0] [--seconds S] [--warmup-ms MS] "
			"[--window BYTES]\n");
}

int main(int argc, char **argv)
{
	const char *url = "nats://127.0.0.1:4222";
	struct nats_pair np = {0};
	struct run r = {.subject = "bench", .size = 128, .rate = 0};
	long seconds = 5, warmup_ms = 500;
	int64_t window = DEFAULT_WINDOW, t_pub, t_drained, deadline, n;
	int64_t dropped = 0, delivered;
	double span_s;
	int c;

	static const struct option lo[] = {
		{"url", required_argument, NULL, 'u'},
		{"subject", required_argument, NULL, 'j'},
		{"size", required_argument, NULL, 'z'},
		{"rate", required_argument, NULL, 'r'},
		{"seconds", required_argument, NULL, 's'},
		{"warmup-ms", required_argument, NULL, 'w'},
		{"window", required_argument, NULL, 'W'},
		{NULL, 0, NULL, 0},
	};
	while ((c = getopt_long(argc, argv, "u:j:z:r:s:w:W:", lo, NULL)) !=
	       -1) {
		switch (c) {
		case 'u':
			url = optarg;
			break;
		case 'j':
			r.subject = optarg;
			break;
		case 'z':
			r.size = strtol(optarg, NULL, 10);
			break;
		case 'r':
			r.rate = strtol(optarg, NULL, 10);
			break;
		case 's':
			seconds = strtol(optarg, NULL, 10);
			break;
		case 'w':
			warmup_ms = strtol(optarg, NULL, 10);
			break;
		case 'W':
			window = strtoll(optarg, NULL, 10);
			break;
		default:
			usage();
			return 2;
		}
	}
	if (r.size < HDR_BYTES || r.size > 1048576 || r.rate < 0 ||
	    r.rate > 10000000 || seconds < 1 || seconds > 600 ||
	    warmup_ms < 0 || warmup_ms > 60000 || window < 1) {
		fprintf(stderr, "nats_lat: size 16..1 MiB, rate 0..1e7, "
				"seconds 1..600, warm-up 0..60000 ms, window "
				">= 1\n");
		return 2;
	}
	r.window_msgs = window / r.size;
	if (r.window_msgs > MAX_WINDOW_MSGS)
		r.window_msgs = MAX_WINDOW_MSGS;
	if (r.window_msgs < 1)
		r.window_msgs = 1;
	r.payload = calloc(1, (size_t)r.size);
	if (!r.payload)
		return 1;
	for (n = HDR_BYTES; n < r.size; n++)
		r.payload[n] = (char)('A' + n % 26);
	/* Wake up on time: the default 50 us slack would be latency. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

	nats_pair_open(&np, url, r.subject, on_msg);
	r.pub = np.pub;

	r.t0 = now_ns();
	r.t_warm = r.t0 + (int64_t)warmup_ms * 1000000ll;
	r.t_end = r.t_warm + (int64_t)seconds * NS_PER_S;
	record_from = r.t_warm;
	if (r.rate > 0)
		run_fixed(&r);
	else
		run_saturation(&r);
	check(natsConnection_FlushTimeout(r.pub, 10000), "flush (publisher)");
	t_pub = now_ns();

	deadline = t_pub + DRAIN_TIMEOUT_NS;
	while (atomic_load(&received) < r.sent && now_ns() < deadline)
		sleep_until(now_ns() + 10000000ll);
	natsSubscription_GetDropped(np.sub, &dropped);
	t_drained = now_ns();
	/* Closed (library threads joined) before the histogram is read. */
	nats_pair_close(&np);

	n = atomic_load(&recorded);
	span_s = (double)(r.t_end - r.t_warm) / 1e9;
	/* fixed rate: every message due after the warm-up, after the drain */
	delivered = r.rate > 0 ? n : r.recv_end - r.recv_warm;
	printf("{\"mode\":\"%s\",\"size\":%ld,\"rate_target\":%ld,"
	       "\"seconds\":%ld,\"warmup_ms\":%ld,\"window_msgs\":%lld,"
	       "\"sent\":%lld,\"received\":%lld,\"lost\":%lld,"
	       "\"dropped\":%lld,\"async_errors\":%lld,\"slow_consumer\":%lld,"
	       "\"bad_msgs\":%lld,\"measured_s\":%.3f,"
	       "\"pub_rate\":%.0f,\"throughput\":%.0f,\"throughput_mbs\":%.2f,"
	       "\"late_1ms\":%lld,\"max_lag_us\":%.1f,\"drain_s\":%.3f,"
	       "\"lat_n\":%lld,\"lat_min_us\":%.1f,\"lat_mean_us\":%.1f,"
	       "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
	       "\"p999_us\":%.1f,\"lat_max_us\":%.1f}\n",
	       r.rate > 0 ? "rate" : "saturation", r.size, r.rate, seconds,
	       warmup_ms, (long long)r.window_msgs, (long long)r.sent,
	       (long long)atomic_load(&received),
	       (long long)(r.sent - atomic_load(&received)), (long long)dropped,
	       (long long)atomic_load(&async_errors),
	       (long long)atomic_load(&slow_consumer),
	       (long long)atomic_load(&bad_msgs), span_s,
	       (double)(r.sent - r.sent_warm) / span_s,
	       (double)delivered / span_s,
	       (double)delivered * (double)r.size / span_s / 1e6,
	       (long long)r.late, (double)r.max_lag / 1e3,
	       (double)(t_drained - t_pub) / 1e9, (long long)n,
	       n ? (double)lat_min / 1e3 : 0.0,
	       n ? (double)lat_sum / (double)n / 1e3 : 0.0,
	       hist_quantile(0.50, n) / 1e3, hist_quantile(0.90, n) / 1e3,
	       hist_quantile(0.99, n) / 1e3, hist_quantile(0.999, n) / 1e3,
	       (double)lat_max / 1e3);
	fflush(stdout);
	free(r.payload);
	return atomic_load(&received) == r.sent ? 0 : 3;
}
