/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nats_pub: fixed-rate nats.c publisher plus counting subscriber, for the
 * capture-loss benchmark (tests/bench/run.sh).
 *
 * Two connections to one nats-server: a subscriber on SUBJECT that counts
 * what it receives, and a publisher that sends SIZE-byte messages at RATE
 * messages per second for SECONDS seconds, paced in 1 ms batches with
 * clock_nanosleep(TIMER_ABSTIME). RATE 0 means "as fast as possible"
 * (saturation). Every loop is bounded in time.
 *
 * Prints one JSON line: sent, received, dropped (client side), slow-consumer
 * errors, publish duration, achieved rate, ticks that ran late.
 *
 * Build: cc -O2 -std=c11 -Wall -Wextra nats_pub.c -lnats -o nats_pub
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <getopt.h>
#include <string.h>

#include "nats_load.h"

#define TICK_NS 1000000ll /* one batch per millisecond */
#define SAT_BATCH 1000	  /* saturation: check the clock every N */
#define DRAIN_TIMEOUT_NS 15000000000ll

static atomic_llong received;

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
		   void *closure)
{
	(void)nc, (void)sub, (void)closure;
	atomic_fetch_add(&received, 1);
	natsMsg_Destroy(msg);
}

int main(int argc, char **argv)
{
	const char *url = "nats://127.0.0.1:4222", *subject = "bench";
	long rate = 50000, seconds = 10, size = 128;
	struct nats_pair np = {0};
	int64_t t0, t_end, t_pub, deadline, dropped = 0, sent = 0, late = 0;
	char *payload;
	int c;

	static const struct option lo[] = {
		{"url", required_argument, NULL, 'u'},
		{"rate", required_argument, NULL, 'r'},
		{"seconds", required_argument, NULL, 's'},
		{"size", required_argument, NULL, 'z'},
		{"subject", required_argument, NULL, 'j'},
		{NULL, 0, NULL, 0},
	};
	while ((c = getopt_long(argc, argv, "u:r:s:z:j:", lo, NULL)) != -1) {
		switch (c) {
		case 'u':
			url = optarg;
			break;
		case 'r':
			rate = strtol(optarg, NULL, 10);
			break;
		case 's':
			seconds = strtol(optarg, NULL, 10);
			break;
		case 'z':
			size = strtol(optarg, NULL, 10);
			break;
		case 'j':
			subject = optarg;
			break;
		default:
			fprintf(stderr,
				"usage: nats_pub [--url U] [--rate R|0] "
				"[--seconds S] [--size B] [--subject S]\n");
			return 2;
		}
	}
	if (rate < 0 || rate > 10000000 || seconds < 1 || seconds > 600 ||
	    size < 0 || size > 1048576) {
		fprintf(stderr, "nats_pub: rate 0..1e7, seconds 1..600, size "
				"0..1 MiB\n");
		return 2;
	}
	payload = malloc((size_t)size + 1);
	if (!payload)
		return 1;
	for (c = 0; c < size; c++)
		payload[c] = (char)('A' + c % 26);

	nats_pair_open(&np, url, subject, on_msg);

	t0 = now_ns();
	t_end = t0 + (int64_t)seconds * 1000000000ll;
	if (rate > 0) {
		int64_t tick = t0, target;

		while (tick < t_end) {
			/* Messages due by the end of this tick. */
			target = (int64_t)((double)rate *
					   (double)(tick + TICK_NS - t0) / 1e9);
			for (; sent < target; sent++)
				check(natsConnection_Publish(np.pub, subject,
							     payload,
							     (int)size),
				      "publish");
			tick += TICK_NS;
			if (now_ns() > tick)
				late++;
			else
				sleep_until(tick);
		}
	} else {
		while (now_ns() < t_end) {
			for (c = 0; c < SAT_BATCH; c++, sent++)
				check(natsConnection_Publish(np.pub, subject,
							     payload,
							     (int)size),
				      "publish");
		}
	}
	check(natsConnection_FlushTimeout(np.pub, 10000), "flush (publisher)");
	t_pub = now_ns();

	/* Wait (bounded) until the subscriber has everything. */
	deadline = now_ns() + DRAIN_TIMEOUT_NS;
	while (atomic_load(&received) < sent && now_ns() < deadline)
		sleep_until(now_ns() + 10000000ll);
	natsSubscription_GetDropped(np.sub, &dropped);

	printf("{\"rate_target\":%ld,\"seconds\":%ld,\"size\":%ld,"
	       "\"sent\":%lld,\"received\":%lld,\"dropped\":%lld,"
	       "\"async_errors\":%lld,\"slow_consumer\":%lld,"
	       "\"publish_s\":%.3f,\"rate_achieved\":%.0f,\"late_ticks\":%lld,"
	       "\"drain_s\":%.3f}\n",
	       rate, seconds, size, (long long)sent,
	       (long long)atomic_load(&received), (long long)dropped,
	       (long long)atomic_load(&async_errors),
	       (long long)atomic_load(&slow_consumer),
	       (double)(t_pub - t0) / 1e9,
	       (double)sent / ((double)(t_pub - t0) / 1e9), (long long)late,
	       (double)(now_ns() - t_pub) / 1e9);
	fflush(stdout);

	nats_pair_close(&np);
	free(payload);
	return atomic_load(&received) == sent ? 0 : 3;
}
