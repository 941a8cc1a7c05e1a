/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `wirespan tail`: subscribe to the telemetry subjects and print the traces
 * that arrive, as a tree for people or as JSON lines for machines. The work
 * is in tail_fmt.c; this file is flags, the NATS subscription and the loop.
 *
 * nats.c delivers messages on its own threads; they feed the tail state
 * under a mutex. The main thread owns the signals (blocked everywhere else,
 * taken with sigtimedwait) and ticks the quiet-period clock every 100 ms.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "jsonw.h"
#include "log.h"
#include "natsflags.h"
#include "span.h"
#include "tail_cmd.h"
#include "tail_fmt.h"

#define MAX_SUBJECTS 16
#define TICK_NS 100000000L
/* Bad payloads logged one by one before only every 1000th is. */
#define BAD_LOGGED 10

struct tail {
	pthread_mutex_t mu;
	struct ws_tail *t;
	natsSubscription *subs[MAX_SUBJECTS];
	size_t n_subs;
	bool subs_closed; /* after Unsubscribe: use dropped_at_end */
	uint64_t dropped_at_end;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
		   void *closure)
{
	struct tail *tl = closure;
	const char *subj = natsMsg_GetSubject(msg);
	int len = natsMsg_GetDataLength(msg);
	uint64_t bad = 0;
	int rc;

	pthread_mutex_lock(&tl->mu);
	rc = ws_tail_feed(tl->t, subj, (const uint8_t *)natsMsg_GetData(msg),
			  len > 0 ? (size_t)len : 0, mono_ns());
	if (rc)
		bad = ws_tail_stats(tl->t)->bad_messages;
	pthread_mutex_unlock(&tl->mu);
	if (rc && (bad <= BAD_LOGGED || bad % 1000 == 0))
		ws_warn("tail: a %d-byte message on %s is not OTLP protobuf; "
			"skipped (%llu so far)",
			len, subj, (unsigned long long)bad);
	natsMsg_Destroy(msg);
}

/* Messages nats.c dropped because we were slow (its pending limits). */
static uint64_t subs_dropped(const struct tail *tl)
{
	uint64_t dropped = 0;
	size_t i;

	if (tl->subs_closed)
		return tl->dropped_at_end;
	for (i = 0; i < tl->n_subs; i++) {
		int64_t d = 0;

		if (natsSubscription_GetDropped(tl->subs[i], &d) == NATS_OK &&
		    d > 0)
			dropped += (uint64_t)d;
	}
	return dropped;
}

static void print_metrics(struct tail *tl, const struct ws_natsconn_stats *ns)
{
	const struct ws_tail_stats *st;
	uint64_t dropped = subs_dropped(tl);
	struct ws_jsonw w;

	pthread_mutex_lock(&tl->mu);
	st = ws_tail_stats(tl->t);
	jw_init(&w);
	jw_begin(&w);
	jw_str(&w, "type", "tail_metrics");
	jw_u64(&w, "messages", st->messages);
	jw_u64(&w, "bad_messages", st->bad_messages);
	jw_u64(&w, "spans_in", st->spans_in);
	jw_u64(&w, "bad_spans", st->bad_spans);
	jw_u64(&w, "duplicate_spans", st->duplicate_spans);
	jw_u64(&w, "other_trace", st->other_trace);
	jw_u64(&w, "traces_printed", st->traces_printed);
	jw_u64(&w, "spans_printed", st->spans_printed);
	jw_u64(&w, "traces_filtered", st->traces_filtered);
	jw_u64(&w, "flush_quiet", st->flush_quiet);
	jw_u64(&w, "flush_max_hold", st->flush_max_hold);
	jw_u64(&w, "evicted", st->evicted);
	jw_u64(&w, "flush_end", st->flush_end);
	jw_u64(&w, "cycles", st->cycles);
	jw_u64(&w, "output_errors", st->output_errors);
	jw_u64(&w, "nomem", st->nomem);
	jw_u64(&w, "held_traces", st->held_traces);
	jw_u64(&w, "held_spans", st->held_spans);
	jw_u64(&w, "held_bytes", st->held_bytes);
	jw_u64(&w, "peak_held_spans", st->peak_held_spans);
	pthread_mutex_unlock(&tl->mu);
	jw_obj_open(&w, "nats");
	jw_u64(&w, "dropped", dropped); /* slow consumer: nats.c's queue */
	ws_natsconn_stats_json(&w, ns);
	jw_obj_close(&w);
	jw_end(&w, stderr);
	jw_free(&w);
	fflush(stderr);
}

static const char tail_usage[] =
	"usage: wirespan tail [options]\n"
	"\n"
	"Print the traces published on the telemetry subjects, grouped by "
	"trace and\n"
	"indented as a tree: duration, start offset, service, kind, "
	"identity and\n"
	"status of every span. A trace is printed once no span of it has "
	"arrived for\n"
	"--flush-after. SIGUSR1 prints metrics to stderr; SIGINT/SIGTERM "
	"print what\n"
	"is held, the metrics, and exit.\n"
	"\n"
	"  -s, --subject SUBJ      subscribe to SUBJ (repeatable; default\n"
	"                          <prefix>.traces.>)\n"
	"      --prefix P          telemetry subject prefix (default otel)\n"
	"  -j, --json              one JSON object per span instead of the "
	"tree\n"
	"  -a, --attrs             print each span's attributes under it\n"
	"      --color             colours even when stdout is not a terminal\n"
	"      --no-color          no colours (also: NO_COLOR set)\n"
	"\n"
	"Filters (whole traces; all given must match):\n"
	"      --service NAME      a span of service NAME (repeatable)\n"
	"      --destination PAT   a span whose messaging.destination.name\n"
	"                          matches PAT (NATS wildcards; repeatable)\n"
	"      --trace-id HEX      this trace (32 hex digits)\n"
	"  -e, --errors            a span with status ERROR\n"
	"\n"
	"Grouping and bounds:\n"
	"      --flush-after MS    quiet period before a trace is printed\n"
	"                          (default 1000)\n"
	"      --max-hold SECS     print a trace at the latest SECS after its\n"
	"                          first span (default 10)\n"
	"      --max-traces N      traces held at once (default 10000)\n"
	"      --max-spans N       spans held at once (default 100000)\n"
	"  -n, --count N           exit after printing N traces\n"
	"  -d, --duration SECS     exit after SECS seconds\n"
	"  -v, --verbose           more diagnostics\n"
	"  -h, --help              this help\n"
	"\n";

enum {
	OPT_PREFIX = 0x100,
	OPT_COLOR,
	OPT_NO_COLOR,
	OPT_SERVICE,
	OPT_DESTINATION,
	OPT_TRACE_ID,
	OPT_FLUSH_AFTER,
	OPT_MAX_HOLD,
	OPT_MAX_TRACES,
	OPT_MAX_SPANS,
};

struct tail_opts {
	struct ws_tail_cfg cfg;
	struct ws_natsconn_cfg nc;
	const char *subjects[MAX_SUBJECTS];
	size_t n_subjects;
	const char *prefix;
	int color; /* -1 auto, 0 off, 1 on */
	uint64_t count, duration_s;
};

static void usage_full(FILE *f)
{
	fputs(tail_usage, f);
	fputs(ws_natsflags_usage, f);
}

static int bad(const char *flag, const char *value)
{
	fprintf(stderr, "wirespan: bad value for %s: %s\n", flag,
		value ? value : "(missing)");
	usage_full(stderr);
	return WS_EXIT_USAGE;
}

static int unknown(const char *arg)
{
	fprintf(stderr, "wirespan: unknown option or argument: %s\n",
		arg ? arg : "?");
	usage_full(stderr);
	return WS_EXIT_USAGE;
}

/* Returns -1 to go on, else the exit code. */
static int parse(int argc, char **argv, struct tail_opts *o)
{
	static const struct option longopts[] = {
		{"subject", required_argument, NULL, 's'},
		{"prefix", required_argument, NULL, OPT_PREFIX},
		{"json", no_argument, NULL, 'j'},
		{"attrs", no_argument, NULL, 'a'},
		{"color", no_argument, NULL, OPT_COLOR},
		{"no-color", no_argument, NULL, OPT_NO_COLOR},
		{"service", required_argument, NULL, OPT_SERVICE},
		{"destination", required_argument, NULL, OPT_DESTINATION},
		{"trace-id", required_argument, NULL, OPT_TRACE_ID},
		{"errors", no_argument, NULL, 'e'},
		{"flush-after", required_argument, NULL, OPT_FLUSH_AFTER},
		{"max-hold", required_argument, NULL, OPT_MAX_HOLD},
		{"max-traces", required_argument, NULL, OPT_MAX_TRACES},
		{"max-spans", required_argument, NULL, OPT_MAX_SPANS},
		{"count", required_argument, NULL, 'n'},
		{"duration", required_argument, NULL, 'd'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		WS_NATSFLAGS_LONGOPTS,
		{0},
	};
	uint64_t v;
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "s:jaen:d:vh", longopts, NULL)) !=
	       -1) {
		if (ws_natsflags_opt(&o->nc, opt, optarg))
			continue;
		switch (opt) {
		case 's':
			if (!*optarg || strchr(optarg, ' ') ||
			    o->n_subjects >= MAX_SUBJECTS)
				return bad("--subject", optarg);
			o->subjects[o->n_subjects++] = optarg;
			break;
		case OPT_PREFIX:
			if (!*optarg || strpbrk(optarg, " *>"))
				return bad("--prefix", optarg);
			o->prefix = optarg;
			break;
		case 'j':
			o->cfg.json = true;
			break;
		case 'a':
			o->cfg.attrs = true;
			break;
		case OPT_COLOR:
			o->color = 1;
			break;
		case OPT_NO_COLOR:
			o->color = 0;
			break;
		case OPT_SERVICE:
			if (!*optarg ||
			    o->cfg.n_services >= WS_TAIL_MAX_FILTERS)
				return bad("--service", optarg);
			o->cfg.services[o->cfg.n_services++] = optarg;
			break;
		case OPT_DESTINATION:
			if (!*optarg ||
			    o->cfg.n_destinations >= WS_TAIL_MAX_FILTERS)
				return bad("--destination", optarg);
			o->cfg.destinations[o->cfg.n_destinations++] = optarg;
			break;
		case OPT_TRACE_ID:
			if (strlen(optarg) != 32 ||
			    ws_id_parse(optarg, 32, o->cfg.trace_id, 16) ||
			    ws_id_is_zero(o->cfg.trace_id, 16))
				return bad("--trace-id", optarg);
			o->cfg.has_trace_id = true;
			break;
		case 'e':
			o->cfg.errors_only = true;
			break;
		case OPT_FLUSH_AFTER:
			if (ws_cli_u64(optarg, 1, 3600 * 1000, &v))
				return bad("--flush-after", optarg);
			o->cfg.flush_after_ns = v * 1000000ull;
			break;
		case OPT_MAX_HOLD:
			if (ws_cli_u64(optarg, 1, 86400, &v))
				return bad("--max-hold", optarg);
			o->cfg.max_hold_ns = v * 1000000000ull;
			break;
		case OPT_MAX_TRACES:
			if (ws_cli_u64(optarg, 1, 10000000, &v))
				return bad("--max-traces", optarg);
			o->cfg.max_traces = (size_t)v;
			break;
		case OPT_MAX_SPANS:
			if (ws_cli_u64(optarg, 1, 100000000, &v))
				return bad("--max-spans", optarg);
			o->cfg.max_spans = (size_t)v;
			break;
		case 'n':
			if (ws_cli_u64(optarg, 1, UINT32_MAX, &o->count))
				return bad("--count", optarg);
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
			return unknown(argv[optind - 1]);
		}
	}
	if (optind < argc)
		return unknown(argv[optind]);
	return -1;
}

/* Subscribe to every subject and make sure the server has them. */
static int subscribe(natsConnection *nc, struct tail *tl,
		     const struct tail_opts *o, const char *subj0)
{
	size_t i, n = o->n_subjects ? o->n_subjects : 1;

	for (i = 0; i < n; i++) {
		const char *s = o->n_subjects ? o->subjects[i] : subj0;
		natsStatus st = natsConnection_Subscribe(&tl->subs[i], nc, s,
							 on_msg, tl);

		if (st != NATS_OK) {
			ws_err("tail: cannot subscribe to %s: %s", s,
			       nats_GetLastError(NULL)
				       ? nats_GetLastError(NULL)
				       : natsStatus_GetText(st));
			return -1;
		}
		tl->n_subs++;
		fprintf(stderr, "%s%s",
			i ? ", " : "wirespan tail: subscribed to ", s);
	}
	if (natsConnection_FlushTimeout(nc, 5000) != NATS_OK) {
		ws_err("tail: the server did not confirm the subscription: %s",
		       nats_GetLastError(NULL) ? nats_GetLastError(NULL)
					       : "timeout");
		return -1;
	}
	return 0;
}

static int run(struct tail_opts *o)
{
	static struct ws_natsconn_stats ns;
	struct tail tl = {.mu = PTHREAD_MUTEX_INITIALIZER};
	natsConnection *nc = NULL;
	char err[512], subj0[256];
	struct timespec tick = {0, TICK_NS};
	uint64_t start = mono_ns();
	sigset_t sigs;
	int rc = 1;
	size_t i;

	snprintf(subj0, sizeof(subj0), "%s.traces.>",
		 o->prefix ? o->prefix : "otel");
	if (o->color < 0)
		o->color = isatty(fileno(stdout)) &&
			   !(getenv("NO_COLOR") && *getenv("NO_COLOR"));
	o->cfg.color = o->color && !o->cfg.json;
	o->cfg.out = stdout;
	ws_natsflags_env(&o->nc);
	o->nc.name = "wirespan-tail";
	tl.t = ws_tail_new(&o->cfg);
	if (!tl.t) {
		ws_err("out of memory");
		return 1;
	}
	/* signals go to this thread only: nats.c's threads inherit the mask */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if (ws_natsconn_open(&o->nc, &ns, &nc, err, sizeof(err))) {
		ws_err("tail: %s", err);
		goto out;
	}
	if (subscribe(nc, &tl, o, subj0))
		goto out;
	fprintf(stderr, ", ready\n");
	fflush(stderr);
	for (;;) {
		int sig = sigtimedwait(&sigs, NULL, &tick);
		uint64_t now = mono_ns();
		bool done;

		if (sig == SIGUSR1)
			print_metrics(&tl, &ns);
		if (sig == SIGINT || sig == SIGTERM)
			break;
		pthread_mutex_lock(&tl.mu);
		ws_tail_tick(tl.t, now);
		done = o->count &&
		       ws_tail_stats(tl.t)->traces_printed >= o->count;
		pthread_mutex_unlock(&tl.mu);
		if (done || (o->duration_s &&
			     now - start >= o->duration_s * 1000000000ull))
			break;
	}
	rc = 0;
out:
	/* drain: what nats.c has received is still fed and printed (the
	 * drop count is read before: a drained subscription has none) */
	tl.dropped_at_end = subs_dropped(&tl);
	for (i = 0; i < tl.n_subs; i++)
		natsSubscription_DrainTimeout(tl.subs[i], 2000);
	for (i = 0; i < tl.n_subs; i++)
		natsSubscription_WaitForDrainCompletion(tl.subs[i], 2500);
	tl.subs_closed = true;
	/* with --count, what is held beyond the count is not printed */
	pthread_mutex_lock(&tl.mu);
	if (!o->count)
		ws_tail_flush_all(tl.t);
	pthread_mutex_unlock(&tl.mu);
	if (rc == 0)
		print_metrics(&tl, &ns);
	for (i = 0; i < tl.n_subs; i++)
		natsSubscription_Destroy(tl.subs[i]);
	natsConnection_Destroy(nc);
	/* a message callback may still be running until nats.c's threads
	 * are gone: free the state after that */
	nats_CloseAndWait(2000);
	ws_tail_free(tl.t);
	return rc;
}

int cmd_tail(int argc, char **argv)
{
	struct tail_opts o = {.color = -1};
	int rc;

	ws_tail_cfg_init(&o.cfg);
	rc = parse(argc, argv, &o);
	if (rc >= 0)
		return rc;
	return run(&o);
}
