/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `wirespan relay`: the telemetry subjects in, OTLP/HTTP out.
 *
 * Input, one of:
 *   core:      a subscription in a queue group (several relays share the
 *              load); nats.c's thread pushes payloads into the relay queue;
 *   jetstream: a durable pull consumer on a stream; this thread fetches
 *              while the queue has room and acks a message only after the
 *              backend accepted the batch that carried it (nak when the
 *              relay stops or gives up, term when the backend refused it or
 *              it is not OTLP).
 * Output: POST /v1/traces (export/otlp_http.c), or --output stdout (spans as
 * JSON lines, the `wirespan tail --json` format). The queue, the batches and
 * the retry rules are in relay.c; this file is flags, threads and signals.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "export/otlp_http.h"
#include "jsonw.h"
#include "log.h"
#include "natsflags.h"
#include "relay.h"
#include "relay_cmd.h"
#include "stitch_pb.h"
#include "tail_fmt.h"

#define MAX_HEADER_LEN 8192
#define TICK_NS 100000000L
/* JetStream: messages asked for per fetch, and the fetch wait. */
#define JS_FETCH_MAX 256
#define JS_FETCH_WAIT_MS 200
/* Bad payloads logged one by one before only every 1000th is. */
#define BAD_LOGGED 10

struct relay_opts {
	struct ws_natsconn_cfg nc;
	struct ws_relay_cfg rc;
	struct ws_stitch_cfg sc;
	bool stitch;
	struct ws_otlp_http_cfg hc;
	char *header_store[WS_OTLP_HTTP_MAX_HEADERS]; /* owned lines */
	const char *subject, *prefix, *queue;
	const char *endpoint;
	bool to_stdout, jetstream;
	const char *stream, *durable;
	uint64_t ack_wait_s, duration_s, drain_s;
};

struct relay {
	pthread_mutex_t mu;
	struct ws_relay *r;
	struct ws_tail *out; /* --output stdout */
	struct ws_otlp_http *http;
	struct ws_stitch *st; /* --stitch */
	uint64_t now;	      /* of the push in progress, for ready() */
	uint64_t stitch_bad, stitch_errors;
	natsSubscription *sub;
	jsCtx *js;
	uint64_t acks, naks, terms, ack_errors, in_progress;
	int64_t nats_dropped; /* read before the drain closes the sub */
	uint64_t posts_logged;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t rnd32(void)
{
	static __thread uint64_t s;

	if (!s)
		s = mono_ns() | 1;
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return (uint32_t)(s >> 16);
}

/* The relay queue's release callback: settle a JetStream message. */
static void on_release(void *ctx, void *token, int why)
{
	struct relay *rl = ctx;
	natsMsg *m = token;
	natsStatus s;

	if (!m)
		return;
	if (why == WS_RELAY_DELIVERED) {
		s = natsMsg_Ack(m, NULL);
		rl->acks++;
	} else if (why == WS_DROP_BAD_MESSAGE || why == WS_DROP_REJECTED) {
		/* redelivery cannot help: the bytes or the backend say no */
		s = natsMsg_Term(m, NULL);
		rl->terms++;
	} else {
		/* shutdown, queue bound, retries exhausted: another try later,
		 * here or at another relay of the durable */
		s = natsMsg_Nak(m, NULL);
		rl->naks++;
	}
	if (s != NATS_OK)
		rl->ack_errors++;
	natsMsg_Destroy(m);
}

/* One payload to the output (locked). Returns what the queue said.
 * spans: counted by the caller (a checked payload), or SIZE_MAX. */
static int forward(struct relay *rl, const char *subject, const uint8_t *data,
		   size_t len, size_t spans, void *token, uint64_t now,
		   uint64_t *bad)
{
	int rc;

	if (rl->out) {
		rc = ws_tail_feed(rl->out, subject, data, len, now);
		ws_tail_flush_all(rl->out);
		*bad = ws_tail_stats(rl->out)->bad_messages;
		if (token)
			on_release(rl, token,
				   rc ? WS_DROP_BAD_MESSAGE
				      : WS_RELAY_DELIVERED);
		return rc;
	}
	rc = spans == SIZE_MAX ? ws_relay_push(rl->r, data, len, token, now)
			       : ws_relay_push_checked(rl->r, data, len, spans,
						       token, now);
	*bad = ws_relay_stats(rl->r)->dropped_messages[WS_DROP_BAD_MESSAGE];
	return rc;
}

/* The stitcher let a payload go (locked): on to the output. */
static void on_stitched(void *ctx, void *token, bool modified)
{
	struct relay *rl = ctx;
	struct ws_stitch_msg *m = token;
	uint8_t *buf;
	size_t len;
	uint64_t bad;
	bool owned = false;

	(void)modified; /* in place, or m->grow */
	if (ws_stitch_msg_bytes(m, &buf, &len, &owned)) {
		/* no memory for the copy with the added parents and
		 * evidence: the payload with what changed in place only
		 * (new trace ids and 8-byte parents) */
		rl->stitch_errors++;
	}
	forward(rl, m->subject, buf, len, m->wire_spans, m->token, rl->now,
		&bad);
	if (owned)
		free(buf);
	ws_stitch_msg_free(m);
}

static void push(struct relay *rl, natsMsg *msg, void *token)
{
	int len = natsMsg_GetDataLength(msg);
	const uint8_t *data = (const uint8_t *)natsMsg_GetData(msg);
	size_t n = len > 0 ? (size_t)len : 0;
	uint64_t now = mono_ns(), bad = 0;
	struct ws_stitch_msg *m = NULL;
	int rc = 0;

	if (rl->st) {
		m = ws_stitch_msg_decode(data, n, natsMsg_GetSubject(msg),
					 token);
		if (!m && errno != EBADMSG) {
			pthread_mutex_lock(&rl->mu);
			rl->stitch_errors++;
			pthread_mutex_unlock(&rl->mu);
		}
	}
	pthread_mutex_lock(&rl->mu);
	rl->now = now;
	if (m)
		ws_stitch_add(rl->st, m, n, m->spans, m->n_spans, now);
	else /* no stitching, or bad bytes: the queue counts those */
		rc = forward(rl, natsMsg_GetSubject(msg), data, n, SIZE_MAX,
			     token, now, &bad);
	pthread_mutex_unlock(&rl->mu);
	if (rc == -EBADMSG && (bad <= BAD_LOGGED || bad % 1000 == 0))
		ws_warn("relay: a %d-byte message on %s is not OTLP protobuf; "
			"dropped (%llu so far)",
			len, natsMsg_GetSubject(msg), (unsigned long long)bad);
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
		   void *closure)
{
	push(closure, msg, NULL);
	natsMsg_Destroy(msg);
}

/* ---- metrics ---- */

static void print_metrics(struct relay *rl, const struct ws_natsconn_stats *ns)
{
	struct ws_jsonw w;
	int64_t dropped = 0;
	int unread = 0;
	int i;

	dropped = rl->nats_dropped;
	if (rl->sub) {
		int64_t d = 0;

		/* fails once the drain has closed the subscription */
		if (natsSubscription_GetDropped(rl->sub, &d) == NATS_OK &&
		    d > dropped)
			dropped = d;
		/* received by nats.c, never handed over (drain timed out) */
		natsSubscription_GetPending(rl->sub, &unread, NULL);
	}
	jw_init(&w);
	jw_begin(&w);
	jw_str(&w, "type", "relay_metrics");
	pthread_mutex_lock(&rl->mu);
	if (rl->r) {
		const struct ws_relay_stats *st = ws_relay_stats(rl->r);

		jw_u64(&w, "messages_in", st->messages_in);
		jw_u64(&w, "spans_in", st->spans_in);
		jw_u64(&w, "bytes_in", st->bytes_in);
		jw_u64(&w, "batches_out", st->batches_out);
		jw_u64(&w, "spans_out", st->spans_out);
		jw_u64(&w, "bytes_out", st->bytes_out);
		jw_u64(&w, "posts", st->posts);
		jw_u64(&w, "retries", st->retries);
		jw_u64(&w, "retry_after_used", st->retry_after_used);
		jw_obj_open(&w, "dropped_spans");
		for (i = 0; i < WS_DROP_MAX; i++)
			jw_u64(&w, ws_relay_drop_names[i], st->dropped[i]);
		jw_obj_close(&w);
		jw_obj_open(&w, "dropped_messages");
		for (i = 0; i < WS_DROP_MAX; i++)
			jw_u64(&w, ws_relay_drop_names[i],
			       st->dropped_messages[i]);
		jw_obj_close(&w);
		jw_obj_open(&w, "status");
		jw_u64(&w, "2xx", st->status_2xx);
		jw_u64(&w, "4xx", st->status_4xx);
		jw_u64(&w, "5xx", st->status_5xx);
		jw_u64(&w, "transport_errors", st->transport_errors);
		jw_obj_close(&w);
		jw_u64(&w, "latency_us_avg",
		       st->posts ? st->latency_ns_sum / st->posts / 1000 : 0);
		jw_u64(&w, "latency_us_max", st->latency_ns_max / 1000);
		jw_u64(&w, "queued_bytes", st->queued_bytes);
		jw_u64(&w, "queued_messages", st->queued_messages);
		jw_u64(&w, "peak_queued_bytes", st->peak_queued_bytes);
	}
	if (rl->out) {
		const struct ws_tail_stats *st = ws_tail_stats(rl->out);

		jw_u64(&w, "messages_in", st->messages);
		jw_u64(&w, "spans_in", st->spans_in);
		jw_u64(&w, "spans_out", st->spans_printed);
		jw_obj_open(&w, "dropped_messages");
		jw_u64(&w, "bad_message", st->bad_messages);
		jw_obj_close(&w);
	}
	if (rl->st) {
		const struct ws_stitch_stats *st = ws_stitch_stats(rl->st);

		jw_obj_open(&w, "stitch");
		jw_u64(&w, "messages", st->messages);
		jw_u64(&w, "spans", st->spans);
		jw_u64(&w, "joins_delivery", st->joins_delivery);
		jw_u64(&w, "joins_fingerprint", st->joins_fingerprint);
		jw_u64(&w, "joins_http", st->joins_http);
		jw_u64(&w, "joins_reply", st->joins_reply);
		jw_u64(&w, "ambiguous", st->ambiguous);
		jw_u64(&w, "trace_follow", st->trace_follow);
		jw_u64(&w, "timeouts", st->timeouts);
		jw_u64(&w, "parent_timeouts", st->orphan_timeouts);
		jw_u64(&w, "nat_mismatch", st->nat_mismatch);
		jw_u64(&w, "evicted", st->evicted);
		jw_u64(&w, "held_spans", st->held_spans);
		jw_u64(&w, "held_messages", st->held_messages);
		jw_u64(&w, "held_bytes", st->held_bytes);
		jw_u64(&w, "peak_held_bytes", st->peak_held_bytes);
		jw_u64(&w, "remembered", st->remembered);
		jw_u64(&w, "errors", rl->stitch_errors + st->rewrite_errors);
		jw_obj_close(&w);
	}
	jw_obj_open(&w, "jetstream");
	jw_u64(&w, "acks", rl->acks);
	jw_u64(&w, "naks", rl->naks);
	jw_u64(&w, "terms", rl->terms);
	jw_u64(&w, "in_progress", rl->in_progress);
	jw_u64(&w, "ack_errors", rl->ack_errors);
	jw_obj_close(&w);
	pthread_mutex_unlock(&rl->mu);
	jw_obj_open(&w, "nats");
	jw_u64(&w, "dropped", dropped > 0 ? (uint64_t)dropped : 0);
	jw_u64(&w, "unread", unread > 0 ? (uint64_t)unread : 0);
	ws_natsconn_stats_json(&w, ns);
	jw_obj_close(&w);
	jw_end(&w, stderr);
	jw_free(&w);
	fflush(stderr);
}

/* ---- flags ---- */

static const char relay_usage[] =
	"usage: wirespan relay --endpoint URL [options]\n"
	"       wirespan relay --output stdout [options]\n"
	"\n"
	"Forward the spans published on the telemetry subjects to an "
	"OTLP/HTTP\n"
	"backend (POST /v1/traces, protobuf). 429, 502, 503, 504 and "
	"connection\n"
	"errors are retried (Retry-After honoured, else exponential backoff "
	"with\n"
	"jitter); other statuses are not. SIGUSR1 prints metrics to stderr;\n"
	"SIGINT/SIGTERM send what is queued (--drain-timeout) and exit.\n"
	"\n"
	"Backend:\n"
	"  -e, --endpoint URL      OTLP/HTTP endpoint; /v1/traces is added "
	"unless\n"
	"                          the URL ends with it\n"
	"  -H, --header 'K: V'     a request header (repeatable)\n"
	"      --header-file K=FILE   header K, its value read from FILE\n"
	"      --header-env K=VAR     header K, its value from environment "
	"VAR\n"
	"      --compression C     gzip or none (default none)\n"
	"      --timeout SECS      per request (default 10)\n"
	"      --ca FILE           https: verify the backend with this CA\n"
	"  -o, --output stdout     print the spans as JSON lines instead\n"
	"\n"
	"Input:\n"
	"  -s, --subject SUBJ      subscribe to SUBJ (default "
	"<prefix>.traces.>)\n"
	"      --prefix P          telemetry subject prefix (default otel)\n"
	"  -q, --queue NAME        core: queue group (default wirespan-relay)\n"
	"  -j, --jetstream         a durable pull consumer instead; acks after "
	"the\n"
	"                          backend accepted the batch\n"
	"      --stream NAME       jetstream: the stream (default: found by "
	"subject)\n"
	"      --durable NAME      jetstream: consumer name (default "
	"wirespan-relay)\n"
	"      --ack-wait SECS     jetstream: the consumer's AckWait (default "
	"60)\n"
	"\n"
	"Stitching (docs/RELAY.md):\n"
	"      --stitch            join the two ends of cross-host NATS and "
	"HTTP\n"
	"                          hops into one trace\n"
	"      --stitch-window MS  a span waits for its partner at most "
	"(default\n"
	"                          2000)\n"
	"      --stitch-max-spans N  spans remembered for joins (default "
	"262144)\n"
	"      --stitch-max-held-bytes N  payload bytes held (default 64 "
	"MiB)\n"
	"\n"
	"Bounds:\n"
	"      --max-queue-bytes N payload bytes held (default 64 MiB); the "
	"oldest\n"
	"                          are dropped first, counted\n"
	"      --batch-bytes N     per POST (default 4 MiB)\n"
	"      --batch-spans N     per POST (default 8192)\n"
	"      --batch-delay MS    oldest span waits at most (default 1000)\n"
	"      --backoff MS        first retry delay (default 500)\n"
	"      --backoff-max MS    longest retry delay (default 30000)\n"
	"      --retry-max-elapsed SECS  give a batch up after (default 300)\n"
	"      --drain-timeout SECS  at exit, time to send what is queued "
	"(default 5)\n"
	"  -d, --duration SECS     exit after SECS seconds\n"
	"  -v, --verbose           more diagnostics (never header values)\n"
	"  -h, --help              this help\n"
	"\n";

enum {
	OPT_HEADER_FILE = 0x100,
	OPT_HEADER_ENV,
	OPT_COMPRESSION,
	OPT_TIMEOUT,
	OPT_CA,
	OPT_PREFIX,
	OPT_STREAM,
	OPT_DURABLE,
	OPT_ACK_WAIT,
	OPT_MAX_QUEUE,
	OPT_BATCH_BYTES,
	OPT_BATCH_SPANS,
	OPT_BATCH_DELAY,
	OPT_BACKOFF,
	OPT_BACKOFF_MAX,
	OPT_RETRY_ELAPSED,
	OPT_DRAIN,
	OPT_STITCH,
	OPT_STITCH_WINDOW,
	OPT_STITCH_SPANS,
	OPT_STITCH_BYTES,
};

static void usage_full(FILE *f)
{
	fputs(relay_usage, f);
	fputs(ws_natsflags_usage, f);
}

static int bad(const char *flag, const char *value)
{
	/* never echo a header value: it may be a token */
	fprintf(stderr, "wirespan: bad value for %s: %s\n", flag,
		value ? value : "(missing)");
	usage_full(stderr);
	return WS_EXIT_USAGE;
}

/* Read a header value from a file (first line, trimmed). */
static char *read_value(const char *path)
{
	char buf[MAX_HEADER_LEN];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	n = strlen(buf);
	while (n && buf[n - 1] == ' ')
		buf[--n] = 0;
	return n ? strdup(buf) : NULL;
}

/* "K: V" from K=SOURCE, V from a file or the environment. */
static int add_header(struct relay_opts *o, const char *flag, const char *arg,
		      bool from_file)
{
	const char *eq = strchr(arg, '=');
	char *v, *line;
	size_t klen;

	if (!eq || eq == arg || o->hc.n_headers >= WS_OTLP_HTTP_MAX_HEADERS)
		return bad(flag, arg);
	klen = (size_t)(eq - arg);
	if (from_file) {
		v = read_value(eq + 1);
		if (!v) {
			fprintf(stderr,
				"wirespan: %s: cannot read a value from %s\n",
				flag, eq + 1);
			return 1;
		}
	} else {
		const char *e = getenv(eq + 1);

		if (!e || !*e) {
			fprintf(stderr,
				"wirespan: %s: environment variable %s is "
				"empty or not set\n",
				flag, eq + 1);
			return 1;
		}
		v = strdup(e);
	}
	line = v ? malloc(klen + 2 + strlen(v) + 1) : NULL;
	if (!line) {
		free(v);
		return 1;
	}
	sprintf(line, "%.*s: %s", (int)klen, arg, v);
	explicit_bzero(v, strlen(v));
	free(v);
	if (strpbrk(line, "\r\n")) {
		free(line);
		return bad(flag, arg);
	}
	o->header_store[o->hc.n_headers] = line;
	o->hc.headers[o->hc.n_headers++] = line;
	return -1;
}

static int parse(int argc, char **argv, struct relay_opts *o)
{
	static const struct option longopts[] = {
		{"endpoint", required_argument, NULL, 'e'},
		{"header", required_argument, NULL, 'H'},
		{"header-file", required_argument, NULL, OPT_HEADER_FILE},
		{"header-env", required_argument, NULL, OPT_HEADER_ENV},
		{"compression", required_argument, NULL, OPT_COMPRESSION},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"ca", required_argument, NULL, OPT_CA},
		{"output", required_argument, NULL, 'o'},
		{"subject", required_argument, NULL, 's'},
		{"prefix", required_argument, NULL, OPT_PREFIX},
		{"queue", required_argument, NULL, 'q'},
		{"jetstream", no_argument, NULL, 'j'},
		{"stream", required_argument, NULL, OPT_STREAM},
		{"durable", required_argument, NULL, OPT_DURABLE},
		{"ack-wait", required_argument, NULL, OPT_ACK_WAIT},
		{"max-queue-bytes", required_argument, NULL, OPT_MAX_QUEUE},
		{"batch-bytes", required_argument, NULL, OPT_BATCH_BYTES},
		{"batch-spans", required_argument, NULL, OPT_BATCH_SPANS},
		{"batch-delay", required_argument, NULL, OPT_BATCH_DELAY},
		{"backoff", required_argument, NULL, OPT_BACKOFF},
		{"backoff-max", required_argument, NULL, OPT_BACKOFF_MAX},
		{"retry-max-elapsed", required_argument, NULL,
		 OPT_RETRY_ELAPSED},
		{"drain-timeout", required_argument, NULL, OPT_DRAIN},
		{"stitch", no_argument, NULL, OPT_STITCH},
		{"stitch-window", required_argument, NULL, OPT_STITCH_WINDOW},
		{"stitch-max-spans", required_argument, NULL, OPT_STITCH_SPANS},
		{"stitch-max-held-bytes", required_argument, NULL,
		 OPT_STITCH_BYTES},
		{"duration", required_argument, NULL, 'd'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		WS_NATSFLAGS_LONGOPTS,
		{0},
	};
	uint64_t v;
	int opt, rc;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "e:H:o:s:q:jd:vh", longopts,
				  NULL)) != -1) {
		if (ws_natsflags_opt(&o->nc, opt, optarg))
			continue;
		switch (opt) {
		case 'e':
			if (strncmp(optarg, "http://", 7) &&
			    strncmp(optarg, "https://", 8))
				return bad("--endpoint", optarg);
			o->endpoint = optarg;
			break;
		case 'H':
			if (!strchr(optarg, ':') || *optarg == ':' ||
			    strpbrk(optarg, "\r\n") ||
			    o->hc.n_headers >= WS_OTLP_HTTP_MAX_HEADERS)
				return bad("--header", "(not shown)");
			o->hc.headers[o->hc.n_headers++] = optarg;
			break;
		case OPT_HEADER_FILE:
		case OPT_HEADER_ENV:
			rc = add_header(o,
					opt == OPT_HEADER_FILE ? "--header-file"
							       : "--header-env",
					optarg, opt == OPT_HEADER_FILE);
			if (rc >= 0)
				return rc;
			break;
		case OPT_COMPRESSION:
			if (strcmp(optarg, "gzip") && strcmp(optarg, "none"))
				return bad("--compression", optarg);
			o->hc.gzip = !strcmp(optarg, "gzip");
			break;
		case OPT_TIMEOUT:
			if (ws_cli_u64(optarg, 1, 600, &v))
				return bad("--timeout", optarg);
			o->hc.timeout_ms = (long)v * 1000;
			break;
		case OPT_CA:
			o->hc.ca_file = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "stdout"))
				return bad("--output", optarg);
			o->to_stdout = true;
			break;
		case 's':
			if (!*optarg || strchr(optarg, ' '))
				return bad("--subject", optarg);
			o->subject = optarg;
			break;
		case OPT_PREFIX:
			if (!*optarg || strpbrk(optarg, " *>"))
				return bad("--prefix", optarg);
			o->prefix = optarg;
			break;
		case 'q':
			if (!*optarg || strchr(optarg, ' '))
				return bad("--queue", optarg);
			o->queue = optarg;
			break;
		case 'j':
			o->jetstream = true;
			break;
		case OPT_STREAM:
		case OPT_DURABLE:
			if (!*optarg || strpbrk(optarg, " .*>"))
				return bad(opt == OPT_STREAM ? "--stream"
							     : "--durable",
					   optarg);
			if (opt == OPT_STREAM)
				o->stream = optarg;
			else
				o->durable = optarg;
			break;
		case OPT_ACK_WAIT:
			if (ws_cli_u64(optarg, 1, 3600, &o->ack_wait_s))
				return bad("--ack-wait", optarg);
			break;
		case OPT_MAX_QUEUE:
			if (ws_cli_u64(optarg, 4096, 1ull << 40, &v))
				return bad("--max-queue-bytes", optarg);
			o->rc.max_queue_bytes = (size_t)v;
			break;
		case OPT_BATCH_BYTES:
			if (ws_cli_u64(optarg, 1024, 1ull << 30, &v))
				return bad("--batch-bytes", optarg);
			o->rc.max_batch_bytes = (size_t)v;
			break;
		case OPT_BATCH_SPANS:
			if (ws_cli_u64(optarg, 1, 1u << 24, &v))
				return bad("--batch-spans", optarg);
			o->rc.max_batch_spans = (size_t)v;
			break;
		case OPT_BATCH_DELAY:
		case OPT_BACKOFF:
		case OPT_BACKOFF_MAX:
			if (ws_cli_u64(optarg, 1, 3600 * 1000, &v))
				return bad(
					opt == OPT_BATCH_DELAY ? "--batch-delay"
					: opt == OPT_BACKOFF   ? "--backoff"
							     : "--backoff-max",
					optarg);
			if (opt == OPT_BATCH_DELAY)
				o->rc.max_delay_ns = v * 1000000ull;
			else if (opt == OPT_BACKOFF)
				o->rc.backoff_ns = v * 1000000ull;
			else
				o->rc.backoff_max_ns = v * 1000000ull;
			break;
		case OPT_RETRY_ELAPSED:
			if (ws_cli_u64(optarg, 1, 86400, &v))
				return bad("--retry-max-elapsed", optarg);
			o->rc.max_elapsed_ns = v * 1000000000ull;
			break;
		case OPT_DRAIN:
			if (ws_cli_u64(optarg, 0, 3600, &o->drain_s))
				return bad("--drain-timeout", optarg);
			break;
		case OPT_STITCH:
			o->stitch = true;
			break;
		case OPT_STITCH_WINDOW:
			if (ws_cli_u64(optarg, 1, 600 * 1000, &v))
				return bad("--stitch-window", optarg);
			o->sc.window_ns = v * 1000000ull;
			o->stitch = true;
			break;
		case OPT_STITCH_SPANS:
			if (ws_cli_u64(optarg, 1, 1u << 26, &v))
				return bad("--stitch-max-spans", optarg);
			o->sc.max_spans = (size_t)v;
			break;
		case OPT_STITCH_BYTES:
			if (ws_cli_u64(optarg, 4096, 1ull << 40, &v))
				return bad("--stitch-max-held-bytes", optarg);
			o->sc.max_held_bytes = (size_t)v;
			break;
		case 'd':
			if (ws_cli_u64(optarg, 1, 86400 * 365, &o->duration_s))
				return bad("--duration", optarg);
			break;
		case 'v':
			ws_log_level = ws_log_level < WS_LOG_INFO
					       ? WS_LOG_INFO
					       : WS_LOG_DEBUG;
			break;
		case 'h':
			usage_full(stdout);
			return 0;
		default:
			fprintf(stderr,
				"wirespan: unknown option or argument: %s\n",
				argv[optind - 1]);
			usage_full(stderr);
			return WS_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "wirespan: unknown option or argument: %s\n",
			argv[optind]);
		usage_full(stderr);
		return WS_EXIT_USAGE;
	}
	if (!o->endpoint == !o->to_stdout) {
		fprintf(stderr, "wirespan: give one of --endpoint URL and "
				"--output stdout\n");
		usage_full(stderr);
		return WS_EXIT_USAGE;
	}
	if (o->jetstream && o->queue)
		return bad("--queue", "(a JetStream consumer is shared by its "
				      "durable name)");
	return -1;
}

/* ---- input ---- */

static int subscribe_core(natsConnection *nc, struct relay *rl,
			  const char *subj, const char *queue)
{
	natsStatus s = natsConnection_QueueSubscribe(&rl->sub, nc, subj, queue,
						     on_msg, rl);

	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(nc, 5000);
	if (s != NATS_OK) {
		ws_err("relay: cannot subscribe to %s: %s", subj,
		       nats_GetLastError(NULL) ? nats_GetLastError(NULL)
					       : natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

static int subscribe_js(natsConnection *nc, struct relay *rl,
			const struct relay_opts *o, const char *subj)
{
	jsOptions jo;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;

	jsOptions_Init(&jo);
	jsSubOptions_Init(&so);
	so.Stream = o->stream;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.AckWait =
		(int64_t)(o->ack_wait_s ? o->ack_wait_s : 60) * 1000000000LL;
	so.Config.MaxAckPending = 20000;
	s = natsConnection_JetStream(&rl->js, nc, &jo);
	if (s == NATS_OK)
		s = js_PullSubscribe(&rl->sub, rl->js, subj,
				     o->durable ? o->durable : "wirespan-relay",
				     &jo, &so, &jerr);
	if (s != NATS_OK) {
		ws_err("relay: cannot create the pull consumer on %s: %s%s",
		       subj,
		       nats_GetLastError(NULL) ? nats_GetLastError(NULL)
					       : natsStatus_GetText(s),
		       jerr ? " (is there a stream for the subject?)" : "");
		return -1;
	}
	return 0;
}

/* Fetch while the queue has room; every message is pushed with itself as
 * its token, so the release callback settles it. */
static void fetch_js(struct relay *rl, const struct relay_opts *o)
{
	natsMsgList list = {0};
	jsErrCode jerr = 0;
	size_t room;
	bool busy;
	natsStatus s;
	int i;

	pthread_mutex_lock(&rl->mu);
	room = rl->r ? ws_relay_room(rl->r) : SIZE_MAX;
	/* while a batch waits for a retry, let the stream hold the rest */
	busy = rl->r && !ws_relay_idle(rl->r) &&
	       ws_relay_stats(rl->r)->queued_bytes >= o->rc.max_batch_bytes;
	pthread_mutex_unlock(&rl->mu);
	if (busy || room < o->rc.max_batch_bytes / 4)
		return;
	s = natsSubscription_Fetch(&list, rl->sub, JS_FETCH_MAX,
				   JS_FETCH_WAIT_MS, &jerr);
	if (s != NATS_OK && s != NATS_TIMEOUT)
		ws_debug("relay: fetch: %s", natsStatus_GetText(s));
	for (i = 0; i < list.Count; i++) {
		push(rl, list.Msgs[i], list.Msgs[i]);
		list.Msgs[i] = NULL; /* owned by the queue now */
	}
	natsMsgList_Destroy(&list);
}

static void in_progress(void *ctx, void *token)
{
	struct relay *rl = ctx;

	if (token && natsMsg_InProgress(token, NULL) == NATS_OK)
		rl->in_progress++;
}

/*
 * No more input. Core: unsubscribe. JetStream: only stop fetching; an
 * Unsubscribe would delete the durable consumer nats.c created, and with it
 * the position of every relay sharing it.
 */
static void stop_input(struct relay *rl, const struct relay_opts *o)
{
	/* drain: nats.c still hands over what it has already received */
	if (rl->sub)
		natsSubscription_GetDropped(rl->sub, &rl->nats_dropped);
	if (rl->sub && !o->jetstream)
		natsSubscription_DrainTimeout(
			rl->sub, (int64_t)(o->drain_s ? o->drain_s : 1) * 1000);
}

/* Core: nats.c has handed over everything it had received. */
static bool input_drained(struct relay *rl, const struct relay_opts *o)
{
	return !rl->sub || o->jetstream ||
	       natsSubscription_WaitForDrainCompletion(rl->sub, 1) !=
		       NATS_TIMEOUT;
}

/* ---- output ---- */

/* One POST of the batch due now, if any. Returns true if one was made. */
static bool send_one(struct relay *rl, bool flush)
{
	struct ws_otlp_http_result res;
	struct ws_relay_batch b;
	uint64_t t0;
	bool got;

	pthread_mutex_lock(&rl->mu);
	got = ws_relay_next(rl->r, mono_ns(), flush, &b);
	pthread_mutex_unlock(&rl->mu);
	if (!got)
		return false;
	/* b.data stays valid: pushes never touch the batch in flight */
	t0 = mono_ns();
	if (ws_otlp_http_post(rl->http, b.data, b.len, &res)) {
		res.status = 0;
		res.retry_after_ns = UINT64_MAX;
		res.rejected = 0;
		snprintf(res.error, sizeof(res.error), "out of memory");
	}
	if (res.status < 200 || res.status >= 300 || res.rejected) {
		size_t i;

		/* the server's text, made printable */
		for (i = 0; res.error[i]; i++)
			if ((unsigned char)res.error[i] < 0x20 ||
			    res.error[i] == 0x7f)
				res.error[i] = ' ';
		if (rl->posts_logged++ < 20 || rl->posts_logged % 1000 == 0)
			ws_warn("relay: POST of %zu spans (attempt %u): %s%d "
				"%s%s",
				b.spans, b.attempt + 1,
				res.status ? "HTTP " : "transport error ",
				res.status, res.error,
				res.rejected ? " (partial success)" : "");
	}
	pthread_mutex_lock(&rl->mu);
	ws_relay_done(rl->r, res.status, res.retry_after_ns, res.rejected,
		      mono_ns() - t0, rnd32(), mono_ns());
	pthread_mutex_unlock(&rl->mu);
	return true;
}

static int run(struct relay_opts *o)
{
	static struct ws_natsconn_stats ns;
	struct relay rl = {.mu = PTHREAD_MUTEX_INITIALIZER};
	natsConnection *nc = NULL;
	char err[512], subj[256], url[2048];
	uint64_t start = mono_ns(), stop_at = 0, last_progress = start;
	sigset_t sigs;
	int rc = 1;

	snprintf(subj, sizeof(subj), "%s.traces.>",
		 o->prefix ? o->prefix : "otel");
	o->rc.release = on_release;
	o->rc.ctx = &rl;
	if (o->to_stdout) {
		struct ws_tail_cfg tc;

		ws_tail_cfg_init(&tc);
		tc.json = true;
		rl.out = ws_tail_new(&tc);
	} else {
		size_t n = strlen(o->endpoint);

		rl.r = ws_relay_new(&o->rc);
		while (n && o->endpoint[n - 1] == '/')
			n--;
		snprintf(url, sizeof(url), "%.*s%s", (int)n, o->endpoint,
			 n >= 10 && !strncmp(o->endpoint + n - 10, "/v1/traces",
					     10)
				 ? ""
				 : "/v1/traces");
		o->hc.url = url;
		rl.http = rl.r ? ws_otlp_http_new(&o->hc, err, sizeof(err))
			       : NULL;
		if (rl.r && !rl.http) {
			ws_err("relay: %s", err);
			goto out;
		}
		ws_info("relay: exporting to %s (%zu headers%s)", url,
			o->hc.n_headers, o->hc.gzip ? ", gzip" : "");
	}
	if (o->stitch) {
		o->sc.rewrite = ws_stitch_msg_rewrite;
		o->sc.ready = on_stitched;
		o->sc.ctx = &rl;
		rl.st = ws_stitch_new(&o->sc);
		if (rl.st)
			ws_info("relay: stitching, window %llu ms",
				(unsigned long long)(o->sc.window_ns /
						     1000000));
	}
	if ((!rl.out && !rl.r) || (o->stitch && !rl.st)) {
		ws_err("out of memory");
		goto out;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	ws_natsflags_env(&o->nc);
	o->nc.name = "wirespan-relay";
	if (ws_natsconn_open(&o->nc, &ns, &nc, err, sizeof(err))) {
		ws_err("relay: %s", err);
		goto out;
	}
	if (o->jetstream
		    ? subscribe_js(nc, &rl, o, o->subject ? o->subject : subj)
		    : subscribe_core(nc, &rl, o->subject ? o->subject : subj,
				     o->queue ? o->queue : "wirespan-relay"))
		goto out;
	fprintf(stderr, "wirespan relay: %s %s, ready\n",
		o->jetstream ? "pulling from" : "subscribed to",
		o->subject ? o->subject : subj);
	fflush(stderr);
	for (;;) {
		struct timespec ts = {0, TICK_NS};
		uint64_t now = mono_ns(), wake;
		int sig;

		if (rl.r || rl.st) {
			pthread_mutex_lock(&rl.mu);
			wake = rl.r ? ws_relay_wake_ns(rl.r, now) : UINT64_MAX;
			if (rl.st) {
				/* time-outs let held payloads go */
				rl.now = now;
				ws_stitch_tick(rl.st, now);
				if (ws_stitch_wake_ns(rl.st) < wake)
					wake = ws_stitch_wake_ns(rl.st);
				if (rl.r && ws_relay_wake_ns(rl.r, now) < wake)
					wake = ws_relay_wake_ns(rl.r, now);
			}
			pthread_mutex_unlock(&rl.mu);
			if (wake > now && wake - now < (uint64_t)TICK_NS)
				ts.tv_nsec = (long)(wake - now);
		}
		if (o->jetstream && !stop_at) {
			fetch_js(&rl, o);
			ts.tv_nsec = 0;
		}
		sig = sigtimedwait(&sigs, NULL, &ts);
		if (sig == SIGUSR1)
			print_metrics(&rl, &ns);
		if (((sig == SIGINT || sig == SIGTERM) ||
		     (o->duration_s &&
		      mono_ns() - start >= o->duration_s * 1000000000ull)) &&
		    !stop_at) {
			/* stop taking input, send what is queued */
			stop_at = mono_ns() + o->drain_s * 1000000000ull + 1;
			stop_input(&rl, o);
		}
		if (rl.r) {
			while (send_one(&rl, stop_at != 0))
				;
			/* JetStream: keep what waits for a retry claimed */
			if (o->jetstream &&
			    mono_ns() - last_progress >
				    (o->ack_wait_s ? o->ack_wait_s : 60) *
					    300000000ull) {
				pthread_mutex_lock(&rl.mu);
				ws_relay_foreach_token(rl.r, in_progress, &rl);
				pthread_mutex_unlock(&rl.mu);
				last_progress = mono_ns();
			}
		}
		if (stop_at) {
			bool idle = true;

			if (rl.st && input_drained(&rl, o)) {
				/* no more partners can come */
				pthread_mutex_lock(&rl.mu);
				rl.now = mono_ns();
				ws_stitch_flush(rl.st);
				pthread_mutex_unlock(&rl.mu);
			}

			if (rl.r) {
				pthread_mutex_lock(&rl.mu);
				idle = ws_relay_idle(rl.r);
				pthread_mutex_unlock(&rl.mu);
			}
			if ((idle && input_drained(&rl, o)) ||
			    mono_ns() >= stop_at)
				break;
		}
	}
	rc = 0;
out:
	if (!stop_at)
		stop_input(&rl, o);
	/* what could not be sent is counted as shutdown (and nak'ed) */
	pthread_mutex_lock(&rl.mu);
	if (rl.st) {
		rl.now = mono_ns();
		ws_stitch_flush(rl.st);
	}
	if (rl.r)
		ws_relay_drop_all(rl.r);
	pthread_mutex_unlock(&rl.mu);
	if (rc == 0)
		print_metrics(&rl, &ns);
	if (nc)
		natsConnection_FlushTimeout(nc, 2000); /* the acks */
	natsSubscription_Destroy(rl.sub);
	jsCtx_Destroy(rl.js);
	natsConnection_Destroy(nc);
	nats_CloseAndWait(2000);
	ws_stitch_free(rl.st);
	ws_relay_free(rl.r);
	ws_tail_free(rl.out);
	ws_otlp_http_free(rl.http);
	return rc;
}

int cmd_relay(int argc, char **argv)
{
	struct relay_opts o;
	size_t i;
	int rc;

	memset(&o, 0, sizeof(o));
	o.drain_s = 5;
	ws_relay_cfg_init(&o.rc);
	ws_stitch_cfg_init(&o.sc);
	rc = parse(argc, argv, &o);
	if (rc < 0)
		rc = run(&o);
	for (i = 0; i < WS_OTLP_HTTP_MAX_HEADERS; i++)
		if (o.header_store[i]) {
			explicit_bzero(o.header_store[i],
				       strlen(o.header_store[i]));
			free(o.header_store[i]);
		}
	return rc;
}
