/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the nats.c load generators of tests/bench/ (nats_pub.c, nats_lat.c)
 * share: the clock, an absolute sleep, error checks, and the subscriber +
 * publisher connection pair on one subject. Header-only: each program is
 * one file built with `cc ... -lnats`.
 */
#ifndef WIRESPAN_BENCH_NATS_LOAD_H
#define WIRESPAN_BENCH_NATS_LOAD_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NS_PER_S 1000000000ll

/* Asynchronous errors nats.c reported, and how many were slow-consumer. */
static atomic_llong async_errors, slow_consumer;

static inline int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static inline void sleep_until(int64_t t)
{
	struct timespec ts = {.tv_sec = t / NS_PER_S, .tv_nsec = t % NS_PER_S};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL))
		;
}

static inline void on_err(natsConnection *nc, natsSubscription *sub,
			  natsStatus err, void *closure)
{
	(void)nc, (void)sub, (void)closure;
	atomic_fetch_add(&async_errors, 1);
	if (err == NATS_SLOW_CONSUMER)
		atomic_fetch_add(&slow_consumer, 1);
}

/* A NATS error ends the program (exit 1): a load generator cannot go on. */
static inline void check(natsStatus s, const char *what)
{
	if (s != NATS_OK) {
		fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name,
			what, natsStatus_GetText(s));
		exit(1);
	}
}

struct nats_pair {
	natsOptions *opts;
	natsConnection *subc, *pub;
	natsSubscription *sub;
};

/* The subscriber first (subscribed and flushed, so it sees every message),
 * then the publisher; no reconnects, no client-side pending limit. */
static inline void nats_pair_open(struct nats_pair *p, const char *url,
				  const char *subject, natsMsgHandler cb)
{
	check(natsOptions_Create(&p->opts), "options");
	check(natsOptions_SetURL(p->opts, url), "url");
	check(natsOptions_SetAllowReconnect(p->opts, false), "reconnect");
	check(natsOptions_SetErrorHandler(p->opts, on_err, NULL),
	      "err handler");
	check(natsConnection_Connect(&p->subc, p->opts),
	      "connect (subscriber)");
	check(natsConnection_Subscribe(&p->sub, p->subc, subject, cb, NULL),
	      "subscribe");
	check(natsSubscription_SetPendingLimits(p->sub, -1, -1),
	      "pending limits");
	check(natsConnection_Flush(p->subc), "flush (subscriber)");
	check(natsConnection_Connect(&p->pub, p->opts), "connect (publisher)");
}

static inline void nats_pair_close(struct nats_pair *p)
{
	natsSubscription_Unsubscribe(p->sub);
	natsSubscription_Destroy(p->sub);
	natsConnection_Close(p->pub);
	natsConnection_Close(p->subc);
	natsConnection_Destroy(p->pub);
	natsConnection_Destroy(p->subc);
	natsOptions_Destroy(p->opts);
	nats_CloseAndWait(2000);
}

#endif /* WIRESPAN_BENCH_NATS_LOAD_H */
