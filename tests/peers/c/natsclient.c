/* SPDX-License-Identifier: Apache-2.0 */
/*
 * natsclient: deterministic nats.c test peer for the wirespan integration tests.
 *
 * Connects, subscribes to SUBJECT and to SUBJECT.req (a responder), publishes
 * COUNT messages of SIZE bytes, flushes, receives them back, makes one request
 * to SUBJECT.req and prints one JSON line describing what it did.
 * Payload byte j of message k is (k*131 + j) & 0xff, as in every peer.
 *
 * Build: cc -std=c11 -Wall -Wextra -Werror -O2 natsclient.c -lnats -o natsclient
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <getopt.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- SHA-256 (FIPS 180-4), so the peer needs nothing but libnats ---- */

struct sha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
	size_t used;
};

static const uint32_t sha256_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror32(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

static void sha256_init(struct sha256 *s)
{
	static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372,
				       0xa54ff53a, 0x510e527f, 0x9b05688c,
				       0x1f83d9ab, 0x5be0cd19};
	memcpy(s->h, iv, sizeof(iv));
	s->len = 0;
	s->used = 0;
}

static void sha256_block(struct sha256 *s, const uint8_t *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, h;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
	for (i = 16; i < 64; i++) {
		uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^
			      (w[i - 15] >> 3);
		uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^
			      (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
	e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
	for (i = 0; i < 64; i++) {
		uint32_t S1 = ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25);
		uint32_t ch = (e & f) ^ (~e & g);
		uint32_t t1 = h + S1 + ch + sha256_k[i] + w[i];
		uint32_t S0 = ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22);
		uint32_t mj = (a & b) ^ (a & c) ^ (b & c);
		uint32_t t2 = S0 + mj;
		h = g, g = f, f = e, e = d + t1;
		d = c, c = b, b = a, a = t1 + t2;
	}
	s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d;
	s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha256_update(struct sha256 *s, const void *data, size_t n)
{
	const uint8_t *p = data;

	s->len += n;
	while (n > 0) {
		size_t take = 64 - s->used;
		if (take > n)
			take = n;
		memcpy(s->buf + s->used, p, take);
		s->used += take;
		p += take;
		n -= take;
		if (s->used == 64) {
			sha256_block(s, s->buf);
			s->used = 0;
		}
	}
}

static void sha256_hex(struct sha256 *s, char out[65])
{
	uint64_t bits = s->len * 8;
	uint8_t pad = 0x80, zero = 0, lenb[8];
	int i;

	sha256_update(s, &pad, 1);
	while (s->used != 56)
		sha256_update(s, &zero, 1);
	for (i = 0; i < 8; i++)
		lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
	sha256_update(s, lenb, 8);
	for (i = 0; i < 8; i++)
		snprintf(out + 8 * i, 9, "%08x", s->h[i]);
	out[64] = '\0';
}

static void sha256_buf_hex(const void *p, size_t n, char out[65])
{
	struct sha256 s;

	sha256_init(&s);
	sha256_update(&s, p, n);
	sha256_hex(&s, out);
}

/* ---- the peer ---- */

struct opts {
	const char *url;
	const char *subject;
	const char *hold_file;
	int count;
	int size;
	int64_t timeout_ms;
	int64_t hold_timeout_ms;
	bool headers;
};

struct result {
	int published, received;
	bool match, reply_ok;
	long long held_ms;
	char pub_sha[65], recv_sha[65], req_sha[65], reply_sha[65];
	char laddr[64];
	int lport;
};

static const char *g_error;
static char g_errbuf[512];

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

static void json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_result(const struct opts *o, const struct result *r, bool ok)
{
	printf("{\"peer\":\"c\",\"pid\":%d,\"url\":", (int)getpid());
	json_str(o->url);
	printf(",\"subject\":");
	json_str(o->subject);
	printf(",\"count\":%d,\"size\":%d,\"headers\":%s", o->count, o->size,
	       o->headers ? "true" : "false");
	printf(",\"published\":%d,\"received\":%d", r->published, r->received);
	printf(",\"pub_sha256\":\"%s\",\"recv_sha256\":\"%s\"", r->pub_sha,
	       r->recv_sha);
	printf(",\"match\":%s", r->match ? "true" : "false");
	printf(",\"request_subject\":");
	printf("\"%s.req\"", o->subject);
	printf(",\"request_sha256\":\"%s\",\"reply_sha256\":\"%s\"", r->req_sha,
	       r->reply_sha);
	printf(",\"reply_ok\":%s,\"held_ms\":%lld",
	       r->reply_ok ? "true" : "false", r->held_ms);
	printf(",\"laddr\":");
	json_str(r->laddr);
	printf(",\"lport\":%d,\"ok\":%s", r->lport, ok ? "true" : "false");
	if (g_error) {
		printf(",\"error\":");
		json_str(g_error);
	}
	printf("}\n");
	fflush(stdout);
}

static bool fail_status(const char *what, natsStatus s)
{
	snprintf(g_errbuf, sizeof(g_errbuf), "%s: %s", what,
		 natsStatus_GetText(s));
	g_error = g_errbuf;
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
		natsConnection_Publish(nc, reply, buf, n + 6);
	}
	free(buf);
	natsMsg_Destroy(msg);
}

static bool wait_file(const char *path, int64_t timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	struct stat st;
	struct timespec d = {0, 20 * 1000 * 1000};

	while (stat(path, &st) != 0) {
		if (now_ms() > deadline) {
			snprintf(g_errbuf, sizeof(g_errbuf),
				 "hold file %s did not appear", path);
			g_error = g_errbuf;
			return false;
		}
		nanosleep(&d, NULL);
	}
	return true;
}

static bool run(const struct opts *o, struct result *r)
{
	natsConnection *nc = NULL;
	natsOptions *no = NULL;
	natsSubscription *sub = NULL, *rsub = NULL;
	natsMsg *m = NULL, *reply = NULL;
	uint8_t *p = NULL, *expect = NULL;
	char reqsubj[512], *ip = NULL;
	char req[600];
	struct sha256 ph, rh;
	natsStatus s;
	bool ok = false;

	if ((s = natsOptions_Create(&no)) != NATS_OK)
		return fail_status("options", s);
	natsOptions_SetURL(no, o->url);
	natsOptions_SetName(no, "wirespan-peer-c");
	natsOptions_SetTimeout(no, o->timeout_ms);
	natsOptions_SetAllowReconnect(no, false);
	if ((s = natsConnection_Connect(&nc, no)) != NATS_OK) {
		fail_status("connect", s);
		goto out;
	}
	if (natsConnection_GetLocalIPAndPort(nc, &ip, &r->lport) == NATS_OK &&
	    ip) {
		snprintf(r->laddr, sizeof(r->laddr), "%s", ip);
		free(ip);
	}
	if (o->hold_file) {
		long long t0 = now_ms();
		fprintf(stderr, "connected; holding until %s exists\n",
			o->hold_file);
		if (!wait_file(o->hold_file, o->hold_timeout_ms))
			goto out;
		r->held_ms = now_ms() - t0;
	}

	snprintf(reqsubj, sizeof(reqsubj), "%s.req", o->subject);
	if ((s = natsConnection_SubscribeSync(&sub, nc, o->subject)) !=
	    NATS_OK) {
		fail_status("subscribe", s);
		goto out;
	}
	natsSubscription_SetPendingLimits(sub, -1, -1);
	if ((s = natsConnection_Subscribe(&rsub, nc, reqsubj, on_request,
					  NULL)) != NATS_OK) {
		fail_status("subscribe responder", s);
		goto out;
	}
	if ((s = natsConnection_FlushTimeout(nc, o->timeout_ms)) != NATS_OK) {
		fail_status("flush", s);
		goto out;
	}

	p = malloc((size_t)o->size + 1);
	expect = malloc((size_t)o->size + 1);
	if (!p || !expect) {
		g_error = "out of memory";
		goto out;
	}
	sha256_init(&ph);
	for (int k = 0; k < o->count; k++) {
		fill_payload(p, k, o->size);
		sha256_update(&ph, p, (size_t)o->size);
		if (o->headers) {
			char tp[64];
			snprintf(tp, sizeof(tp), "00-%032x-%016x-01", k + 1,
				 k + 1);
			s = natsMsg_Create(&m, o->subject, NULL,
					   (const char *)p, o->size);
			if (s == NATS_OK)
				s = natsMsgHeader_Set(m, "traceparent", tp);
			if (s == NATS_OK)
				s = natsConnection_PublishMsg(nc, m);
			natsMsg_Destroy(m);
			m = NULL;
		} else {
			s = natsConnection_Publish(nc, o->subject, p, o->size);
		}
		if (s != NATS_OK) {
			fail_status("publish", s);
			goto out;
		}
		r->published++;
	}
	sha256_hex(&ph, r->pub_sha);
	if ((s = natsConnection_FlushTimeout(nc, o->timeout_ms)) != NATS_OK) {
		fail_status("flush", s);
		goto out;
	}

	sha256_init(&rh);
	r->match = true;
	for (int k = 0; k < o->count; k++) {
		s = natsSubscription_NextMsg(&m, sub, o->timeout_ms);
		if (s != NATS_OK) {
			fail_status("receive", s);
			goto out;
		}
		fill_payload(expect, k, o->size);
		sha256_update(&rh, natsMsg_GetData(m),
			      (size_t)natsMsg_GetDataLength(m));
		if (natsMsg_GetDataLength(m) != o->size ||
		    memcmp(natsMsg_GetData(m), expect, (size_t)o->size) != 0)
			r->match = false;
		natsMsg_Destroy(m);
		m = NULL;
		r->received++;
	}
	sha256_hex(&rh, r->recv_sha);

	snprintf(req, sizeof(req), "request:%s", o->subject);
	sha256_buf_hex(req, strlen(req), r->req_sha);
	s = natsConnection_RequestString(&reply, nc, reqsubj, req,
					 o->timeout_ms);
	if (s != NATS_OK) {
		fail_status("request", s);
		goto out;
	}
	sha256_buf_hex(natsMsg_GetData(reply),
		       (size_t)natsMsg_GetDataLength(reply), r->reply_sha);
	r->reply_ok = natsMsg_GetDataLength(reply) == (int)strlen(req) + 6 &&
		      memcmp(natsMsg_GetData(reply), "reply:", 6) == 0 &&
		      memcmp(natsMsg_GetData(reply) + 6, req, strlen(req)) == 0;
	if ((s = natsConnection_FlushTimeout(nc, o->timeout_ms)) != NATS_OK) {
		fail_status("final flush", s);
		goto out;
	}
	ok = r->match && r->reply_ok;
	if (!ok)
		g_error = "payload mismatch or bad reply";
out:
	natsMsg_Destroy(reply);
	natsSubscription_Destroy(sub);
	natsSubscription_Destroy(rsub);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(no);
	free(p);
	free(expect);
	return ok;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--url URL] [--count N] [--size BYTES] "
		"[--subject S] [--hold-file PATH] [--hold-timeout MS] "
		"[--timeout MS] [--headers] [URL]\n",
		argv0);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"url", required_argument, NULL, 'u'},
		{"count", required_argument, NULL, 'n'},
		{"size", required_argument, NULL, 's'},
		{"subject", required_argument, NULL, 'S'},
		{"hold-file", required_argument, NULL, 'H'},
		{"hold-timeout", required_argument, NULL, 'T'},
		{"timeout", required_argument, NULL, 't'},
		{"headers", no_argument, NULL, 'h'},
		{"help", no_argument, NULL, '?'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {
		.url = "nats://127.0.0.1:4222",
		.subject = "wirespan.test",
		.count = 10,
		.size = 128,
		.timeout_ms = 20000,
		.hold_timeout_ms = 60000,
	};
	struct result r;
	bool ok;
	int c;

	memset(&r, 0, sizeof(r));
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'u':
			o.url = optarg;
			break;
		case 'n':
			o.count = atoi(optarg);
			break;
		case 's':
			o.size = atoi(optarg);
			break;
		case 'S':
			o.subject = optarg;
			break;
		case 'H':
			o.hold_file = optarg;
			break;
		case 'T':
			o.hold_timeout_ms = atoll(optarg);
			break;
		case 't':
			o.timeout_ms = atoll(optarg);
			break;
		case 'h':
			o.headers = true;
			break;
		default:
			usage(argv[0]);
			return 2;
		}
	}
	if (optind < argc)
		o.url = argv[optind];
	if (o.count < 0 || o.size < 0 || strlen(o.subject) > 400) {
		usage(argv[0]);
		return 2;
	}
	ok = run(&o, &r);
	nats_Close();
	print_result(&o, &r, ok);
	return ok ? 0 : 1;
}
