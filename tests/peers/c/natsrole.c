/* SPDX-License-Identifier: Apache-2.0 */
/*
 * natsrole: nats.c test peer for the `wirespan agent` integration tests. One
 * process plays one role, so each end's spans come from its own pid.
 *
 *   --mode sub    subscribe to --subject (--queue Q), print a ready line,
 *                 receive --count messages (or until --stop-file exists)
 *   --mode reply  answer requests on --subject (callback, on nats.c's
 *                 dispatcher thread) until --count were served (or
 *                 --stop-file exists)
 *   --mode pub    publish --count messages to --subject
 *   --mode req    --count requests to --subject (--old-style: one inbox per
 *                 request, natsOptions_UseOldRequestStyle)
 *   --linger MS   stay connected MS milliseconds before closing
 *
 * Payload byte j of message k is (k*131 + j) & 0xff, as in every peer.
 * Prints {"ready":true,...} once subscribed (sub, reply), then one JSON
 * result line.
 *
 * Build: cc -std=c11 -Wall -Wextra -Werror -O2 natsrole.c -lnats -o natsrole-c
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <getopt.h>
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct opts {
	const char *url, *mode, *subject, *queue, *stop_file, *name;
	int count, size;
	int64_t timeout_ms, linger_ms;
	bool old_style;
};

static atomic_int g_served;
static char g_err[512];

static void fill_payload(uint8_t *p, int k, int size)
{
	for (int j = 0; j < size; j++)
		p[j] = (uint8_t)((k * 131 + j) & 0xff);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool exists(const char *path)
{
	struct stat st;

	return path && stat(path, &st) == 0;
}

static bool fail(const char *what, natsStatus s)
{
	snprintf(g_err, sizeof(g_err), "%s: %s", what, natsStatus_GetText(s));
	return false;
}

static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
		       void *closure)
{
	const char *reply = natsMsg_GetReply(msg);
	int n = natsMsg_GetDataLength(msg);
	char *buf = malloc((size_t)n + 6);

	(void)sub;
	(void)closure;
	if (buf && reply) {
		memcpy(buf, "reply:", 6);
		memcpy(buf + 6, natsMsg_GetData(msg), (size_t)n);
		if (natsConnection_Publish(nc, reply, buf, n + 6) == NATS_OK)
			atomic_fetch_add(&g_served, 1);
	}
	free(buf);
	natsMsg_Destroy(msg);
}

static void ready(void)
{
	printf("{\"ready\":true,\"pid\":%d}\n", (int)getpid());
	fflush(stdout);
}

struct counts {
	int published, received, requests, replies;
	bool match;
	uint64_t client_id;
};

static bool run(const struct opts *o, struct counts *c)
{
	natsConnection *nc = NULL;
	natsOptions *no = NULL;
	natsSubscription *sub = NULL;
	natsMsg *m = NULL;
	uint8_t *p = NULL, *want = NULL;
	long long deadline = now_ms() + o->timeout_ms;
	natsStatus s;
	bool ok = false;

	if ((s = natsOptions_Create(&no)) != NATS_OK)
		return fail("options", s);
	natsOptions_SetURL(no, o->url);
	natsOptions_SetName(no, o->name);
	natsOptions_SetTimeout(no, o->timeout_ms);
	natsOptions_SetAllowReconnect(no, false);
	if (o->old_style)
		natsOptions_UseOldRequestStyle(no, true);
	if ((s = natsConnection_Connect(&nc, no)) != NATS_OK) {
		fail("connect", s);
		goto out;
	}
	natsConnection_GetClientID(nc, &c->client_id);
	p = malloc((size_t)o->size + 1);
	want = malloc((size_t)o->size + 7);
	if (!p || !want) {
		snprintf(g_err, sizeof(g_err), "out of memory");
		goto out;
	}

	if (!strcmp(o->mode, "sub")) {
		s = o->queue ? natsConnection_QueueSubscribeSync(
				       &sub, nc, o->subject, o->queue)
			     : natsConnection_SubscribeSync(&sub, nc,
							    o->subject);
		if (s != NATS_OK) {
			fail("subscribe", s);
			goto out;
		}
		natsSubscription_SetPendingLimits(sub, -1, -1);
		if ((s = natsConnection_FlushTimeout(nc, o->timeout_ms)) !=
		    NATS_OK) {
			fail("flush", s);
			goto out;
		}
		ready();
		c->match = true;
		while (c->received < o->count && now_ms() < deadline) {
			s = natsSubscription_NextMsg(&m, sub, 50);
			if (s == NATS_TIMEOUT) {
				if (exists(o->stop_file))
					break;
				continue;
			}
			if (s != NATS_OK) {
				fail("receive", s);
				goto out;
			}
			if (natsMsg_GetDataLength(m) != o->size)
				c->match = false;
			natsMsg_Destroy(m);
			m = NULL;
			c->received++;
		}
		if (!o->stop_file && c->received < o->count) {
			snprintf(g_err, sizeof(g_err), "received %d of %d",
				 c->received, o->count);
			goto out;
		}
	} else if (!strcmp(o->mode, "reply")) {
		s = o->queue ? natsConnection_QueueSubscribe(
				       &sub, nc, o->subject, o->queue,
				       on_request, NULL)
			     : natsConnection_Subscribe(&sub, nc, o->subject,
							on_request, NULL);
		if (s != NATS_OK) {
			fail("subscribe", s);
			goto out;
		}
		if ((s = natsConnection_FlushTimeout(nc, o->timeout_ms)) !=
		    NATS_OK) {
			fail("flush", s);
			goto out;
		}
		ready();
		while (atomic_load(&g_served) < o->count &&
		       now_ms() < deadline && !exists(o->stop_file))
			nats_Sleep(20);
		natsConnection_FlushTimeout(nc, o->timeout_ms);
		if (!o->stop_file && atomic_load(&g_served) < o->count) {
			snprintf(g_err, sizeof(g_err), "served %d of %d",
				 atomic_load(&g_served), o->count);
			goto out;
		}
	} else if (!strcmp(o->mode, "pub")) {
		for (int k = 0; k < o->count; k++) {
			fill_payload(p, k, o->size);
			if ((s = natsConnection_Publish(nc, o->subject, p,
							o->size)) != NATS_OK) {
				fail("publish", s);
				goto out;
			}
			c->published++;
		}
	} else if (!strcmp(o->mode, "req")) {
		c->match = true;
		for (int k = 0; k < o->count; k++) {
			fill_payload(p, k, o->size);
			memcpy(want, "reply:", 6);
			memcpy(want + 6, p, (size_t)o->size);
			c->requests++;
			s = natsConnection_Request(&m, nc, o->subject, p,
						   o->size, 10000);
			if (s != NATS_OK) {
				fail("request", s);
				goto out;
			}
			c->replies++;
			if (natsMsg_GetDataLength(m) != o->size + 6 ||
			    memcmp(natsMsg_GetData(m), want,
				   (size_t)o->size + 6))
				c->match = false;
			natsMsg_Destroy(m);
			m = NULL;
		}
		if (!c->match) {
			snprintf(g_err, sizeof(g_err), "bad reply");
			goto out;
		}
	} else {
		snprintf(g_err, sizeof(g_err), "unknown --mode %s", o->mode);
		goto out;
	}
	if ((s = natsConnection_FlushTimeout(nc, o->timeout_ms)) != NATS_OK) {
		fail("final flush", s);
		goto out;
	}
	if (o->linger_ms > 0)
		nats_Sleep(o->linger_ms);
	ok = true;
out:
	natsMsg_Destroy(m);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(no);
	free(p);
	free(want);
	return ok;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"url", required_argument, NULL, 'u'},
		{"mode", required_argument, NULL, 'm'},
		{"subject", required_argument, NULL, 'S'},
		{"queue", required_argument, NULL, 'q'},
		{"count", required_argument, NULL, 'n'},
		{"size", required_argument, NULL, 's'},
		{"stop-file", required_argument, NULL, 'F'},
		{"timeout", required_argument, NULL, 't'},
		{"name", required_argument, NULL, 'N'},
		{"old-style", no_argument, NULL, 'o'},
		{"linger", required_argument, NULL, 'L'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {
		.url = "nats://127.0.0.1:4222",
		.mode = "",
		.subject = "wirespan.agent",
		.name = "wirespan-role-c",
		.count = 10,
		.size = 64,
		.timeout_ms = 20000,
	};
	struct counts c = {0};
	bool ok;
	int ch;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'u':
			o.url = optarg;
			break;
		case 'm':
			o.mode = optarg;
			break;
		case 'S':
			o.subject = optarg;
			break;
		case 'q':
			o.queue = optarg;
			break;
		case 'n':
			o.count = atoi(optarg);
			break;
		case 's':
			o.size = atoi(optarg);
			break;
		case 'F':
			o.stop_file = optarg;
			break;
		case 't':
			o.timeout_ms = atoll(optarg);
			break;
		case 'N':
			o.name = optarg;
			break;
		case 'o':
			o.old_style = true;
			break;
		case 'L':
			o.linger_ms = atoll(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: %s --mode sub|reply|pub|req [--url U] "
				"[--subject S] "
				"[--queue Q] [--count N] [--size B] "
				"[--stop-file F] [--timeout MS] "
				"[--name N] [--old-style] [--linger MS]\n",
				argv[0]);
			return 2;
		}
	}
	if (o.count < 0 || o.size < 0 || o.size > 1 << 20)
		return 2;
	ok = run(&o, &c);
	nats_Close();
	printf("{\"peer\":\"c\",\"mode\":\"%s\",\"pid\":%d,\"subject\":\"%s\","
	       "\"count\":%d,"
	       "\"published\":%d,\"received\":%d,\"served\":%d,\"requests\":%d,"
	       "\"replies\":%d,"
	       "\"match\":%s,\"client_id\":%llu,\"ok\":%s",
	       o.mode, (int)getpid(), o.subject, o.count, c.published,
	       c.received, atomic_load(&g_served), c.requests, c.replies,
	       c.match ? "true" : "false", (unsigned long long)c.client_id,
	       ok ? "true" : "false");
	if (!ok)
		printf(",\"error\":\"%s\"", g_err);
	printf("}\n");
	fflush(stdout);
	return ok ? 0 : 1;
}
