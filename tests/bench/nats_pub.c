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
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_NS 1000000ll /* one batch per millisecond */
#define SAT_BATCH 1000	  /* saturation: check the clock every N */
#define DRAIN_TIMEOUT_NS 15000000000ll

static atomic_llong received;
static atomic_llong async_errors;
static atomic_llong slow_consumer;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
		   void *closure)
{
	(void)nc, (void)sub, (void)closure;
	atomic_fetch_add(&received, 1);
	natsMsg_Destroy(msg);
}

static void on_err(natsConnection *nc, natsSubscription *sub, natsStatus err,
		   void *closure)
{
	(void)nc, (void)sub, (void)closure;
	atomic_fetch_add(&async_errors, 1);
	if (err == NATS_SLOW_CONSUMER)
		atomic_fetch_add(&slow_consumer, 1);
}

static void check(natsStatus s, const char *what)
{
	if (s != NATS_OK) {
		fprintf(stderr, "nats_pub: %s: %s\n", what,
			natsStatus_GetText(s));
		exit(1);
	}
}

static void sleep_until(int64_t t)
{
	struct timespec ts = {.tv_sec = t / 1000000000ll,
			      .tv_nsec = t % 1000000000ll};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL))
		;
}

int main(int argc, char **argv)
{
	const char *url = "nats://127.0.0.1:4222", *subject = "bench";
	long rate = 50000, seconds = 10, size = 128;
	natsConnection *pub = NULL, *subc = NULL;
	natsSubscription *sub = NULL;
	natsOptions *opts = NULL;
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

	check(natsOptions_Create(&opts), "options");
	check(natsOptions_SetURL(opts, url), "url");
	check(natsOptions_SetAllowReconnect(opts, false), "reconnect");
	check(natsOptions_SetErrorHandler(opts, on_err, NULL), "err handler");
	check(natsConnection_Connect(&subc, opts), "connect (subscriber)");
	check(natsConnection_Subscribe(&sub, subc, subject, on_msg, NULL),
	      "subscribe");
	/* Never drop on the client side because of a pending limit. */
	check(natsSubscription_SetPendingLimits(sub, -1, -1), "pending limits");
	check(natsConnection_Flush(subc), "flush (subscriber)");
	check(natsConnection_Connect(&pub, opts), "connect (publisher)");

	t0 = now_ns();
	t_end = t0 + (int64_t)seconds * 1000000000ll;
	if (rate > 0) {
		int64_t tick = t0, target;

		while (tick < t_end) {
			/* Messages due by the end of this tick. */
			target = (int64_t)((double)rate *
					   (double)(tick + TICK_NS - t0) / 1e9);
			for (; sent < target; sent++)
				check(natsConnection_Publish(
					      pub, subject, payload, (int)size),
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
				check(natsConnection_Publish(
					      pub, subject, payload, (int)size),
				      "publish");
		}
	}
	check(natsConnection_FlushTimeout(pub, 10000), "flush (publisher)");
	t_pub = now_ns();

	/* Wait (bounded) until the subscriber has everything. */
	deadline = now_ns() + DRAIN_TIMEOUT_NS;
	while (atomic_load(&received) < sent && now_ns() < deadline)
		sleep_until(now_ns() + 10000000ll);
	natsSubscription_GetDropped(sub, &dropped);

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

	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	natsConnection_Close(pub);
	natsConnection_Close(subc);
	natsConnection_Destroy(pub);
	natsConnection_Destroy(subc);
	natsOptions_Destroy(opts);
	nats_CloseAndWait(2000);
	free(payload);
	return atomic_load(&received) == sent ? 0 : 3;
}
