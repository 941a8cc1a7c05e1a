/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Offline replay of the agent's userspace path, for a deterministic cost per
 * message and per span on a shared machine: no BPF, no peers, no I/O but
 * the OTLP/JSON write to /dev/null that `wirespan agent --output stdout`
 * does in tests/bench/agent_bench.sh.
 *
 * It synthesises the ring-buffer records (include/wirespan/abi.h) that the
 * capture gives for tests/bench/nats_pub.c against a local nats-server: one
 * process with a subscriber and a publisher connection, nats-server with the
 * accepted end of both, all four followed from their connect. Handshake as
 * nats.c and nats-server 2.9 do it (INFO with server_id and client_id,
 * CONNECT, PING/PONG, SUB), then per tick of --batch messages: one write of
 * the PUB frames by the publisher, one read of them by nats-server, one
 * write of the MSG frames by nats-server, one read by the subscriber, each
 * cut into records of at most --chunk bytes (a real capture at 100k msg/s
 * shows ~85 messages, ~14.5 KB, per syscall on every hop). Identical
 * payloads like nats_pub's unless --vary. Every message must give a publish,
 * a process and a deliver span; the run fails otherwise.
 *
 * The records go through ws_pipeline_record (decode, connection table,
 * reassembly) into agent/agent_cmd.c's own consumer (compiled in: NATS
 * parser, nats_spans builder, batches of 64 spans to OTLP/JSON), with a
 * pipeline round (release of held data, span time-outs, batch flush) after
 * every tick, as after each ring-buffer poll. --stage stops the path early
 * to split the cost:
 *   pipeline  records decoded and reassembled, the connections not followed
 *   parse     + both NATS parsers per connection, frames counted
 *   spans     + the nats_spans builder; spans freed as they come
 *   json      + OTLP/JSON batches written to /dev/null (the agent today)
 *   pb        + OTLP protobuf batches encoded (agent/export/otlp_pb.c;
 *               --pb-ref: with the protobuf-c reference encoder instead)
 *
 * Time is this thread's CPU time (CLOCK_THREAD_CPUTIME_ID) over the replay
 * only (records are built beforehand), so other load on the machine changes
 * it little. Allocations: malloc/calloc/realloc/strdup/strndup calls made
 * by wirespan code (libwirespan.a and this file, counted with the linker's
 * --wrap, see the build line); calls inside shared libraries (json-c on
 * INFO/CONNECT, protobuf-c) are not counted.
 *
 *   make build/libwirespan.a
 *   cc -O2 -g -std=c11 -D_GNU_SOURCE -Iinclude -Iagent -Ibuild -Ibuild/gen \
 *      tests/bench/bench_agent_replay.c build/libwirespan.a \
 *      -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free \
 *      -Wl,--wrap=strdup,--wrap=strndup \
 *      $(pkg-config --libs libbpf json-c libxxhash libprotobuf-c) -lelf -lz \
 *      -o build/bench_agent_replay
 *   build/bench_agent_replay [--stage S] [--messages N] [--batch K]
 *      [--size B] [--chunk C] [--rate R] [--reps N] [--vary]
 *      [--output FILE] [--pb-ref]
 *
 * (`make bench-replay` builds it and runs tests/bench/replay.sh.) Prints one
 * JSON line per repetition. --output keeps the json stage's OTLP/JSON (to
 * compare two builds' spans: ids and times differ from run to run, the rest
 * must not).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "export/otlp_pb.h"
#include "proto/nats.h"
#include "wirespan/abi.h"

/* ---- allocation counting (--wrap) --------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

static uint64_t n_alloc, n_free;

void *__wrap_malloc(size_t n)
{
	n_alloc++;
	return __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
	n_alloc++;
	return __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
	n_alloc++;
	return __real_realloc(p, n);
}

void __wrap_free(void *p)
{
	if (p)
		n_free++;
	__real_free(p);
}

char *__wrap_strdup(const char *s)
{
	n_alloc++;
	return __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	n_alloc++;
	return __real_strndup(s, n);
}

/* ---- the agent's own consumer -------------------------------------------- */

/*
 * agent/agent_cmd.c is compiled into this file, so that the replay runs the
 * agent's consumer itself (on_open, on_data, on_gap, on_close, on_tick,
 * on_span and the stdout sink: not a copy that could drift); cmd_agent comes along
 * unused. The stages before json swap some of it out.
 */
#include "agent_cmd.c"

/* --stage pb: spans per protobuf batch, as the stdout sink batches */
#define PB_BATCH STDOUT_BATCH

enum stage { ST_PIPELINE, ST_PARSE, ST_SPANS, ST_JSON, ST_PB };
static const char *const stage_names[] = {"pipeline", "parse", "spans", "json",
					  "pb"};

struct bench {
	struct agent ag; /* what agent_cmd.c's callbacks get as ctx */
	enum stage stage;
	uint64_t frames, spans_freed;
	/* --stage pb: the agent's batching, protobuf instead of JSON */
	struct ws_span *pb[PB_BATCH];
	size_t n_pb;
	uint64_t pb_spans, pb_bytes, pb_errors;
};

static struct bench *bench_of(void *ag)
{
	return (struct bench *)((char *)ag - offsetof(struct bench, ag));
}

/* --stage spans: every span freed as it comes. */
static void span_freed(void *ctx, struct ws_span *s)
{
	bench_of(ctx)->spans_freed++;
	ws_span_free(s);
}

/* --pb-ref: ws_otlp_pb_encode_ref */
static int (*pb_encode)(struct ws_span *const *, size_t, uint8_t **,
			size_t *) = ws_otlp_pb_encode;

static void pb_flush(struct bench *b)
{
	uint8_t *buf;
	size_t len, i;

	if (!b->n_pb)
		return;
	if (pb_encode(b->pb, b->n_pb, &buf, &len)) {
		b->pb_errors += b->n_pb;
	} else {
		b->pb_spans += b->n_pb;
		b->pb_bytes += len;
		free(buf);
	}
	for (i = 0; i < b->n_pb; i++)
		ws_span_free(b->pb[i]);
	b->n_pb = 0;
}

static void span_pb(void *ctx, struct ws_span *s)
{
	struct bench *b = bench_of(ctx);

	b->pb[b->n_pb++] = s;
	if (b->n_pb == PB_BATCH)
		pb_flush(b);
}

static void tick_pb(void *ctx, uint64_t now_ns)
{
	on_tick(ctx, now_ns);
	pb_flush(bench_of(ctx));
}

/* --stage pipeline: no connection followed. */
static bool open_none(void *ctx, struct ws_conn *c)
{
	return false;
}

/* --stage parse: the NATS parsers alone, frames counted. */
struct raw_conn {
	struct ws_nats_parser *parser[2];
};

static void count_frame(void *ctx, const struct ws_nats_frame *f)
{
	((struct bench *)ctx)->frames++;
}

static const struct ws_nats_cb count_cb = {.frame = count_frame};

static bool open_raw(void *ctx, struct ws_conn *c)
{
	struct raw_conn *rc = calloc(1, sizeof(*rc));

	if (!rc)
		return false;
	rc->parser[0] = ws_nats_parser_new(&count_cb, bench_of(ctx));
	rc->parser[1] = ws_nats_parser_new(&count_cb, bench_of(ctx));
	ws_pconn_of(c)->app = rc;
	return true;
}

static void data_raw(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		     const uint8_t *buf, size_t len)
{
	struct raw_conn *rc = ws_pconn_of(c)->app;

	ws_nats_parser_feed(rc->parser[dir], buf, len);
}

static void gap_raw(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		    uint64_t len, enum ws_gap_reason reason)
{
	struct raw_conn *rc = ws_pconn_of(c)->app;

	ws_nats_parser_gap(rc->parser[dir], len);
}

static void close_raw(void *ctx, struct ws_conn *c, const uint64_t *final,
		      enum ws_close_why why)
{
	struct raw_conn *rc = ws_pconn_of(c)->app;

	ws_nats_parser_free(rc->parser[0]);
	ws_nats_parser_free(rc->parser[1]);
	free(rc);
	ws_pconn_of(c)->app = NULL;
}

/* The agent's own callbacks, from the NATS parser on. */
#define AGENT_OPS \
	.open = on_open, .data = on_data, .gap = on_gap, .close = on_close

static const struct ws_pipeline_ops stage_ops[] = {
	[ST_PIPELINE] = {.open = open_none, .tick = on_tick},
	[ST_PARSE] = {.open = open_raw,
		      .data = data_raw,
		      .gap = gap_raw,
		      .close = close_raw,
		      .tick = on_tick},
	[ST_SPANS] = {AGENT_OPS, .tick = on_tick},
	[ST_JSON] = {AGENT_OPS, .tick = on_tick},
	[ST_PB] = {AGENT_OPS, .tick = tick_pb},
};

/* ---- the synthesised capture -------------------------------------------- */

struct opts {
	enum stage stage;
	unsigned long messages, batch, size, chunk, rate, reps;
	bool vary;
	const char *output; /* json stage: write here instead of /dev/null */
};

/* A growing buffer of records, each 8-byte aligned like the ring buffer's. */
struct recs {
	uint8_t *buf;
	size_t len, cap, n;
};

/* Marks a pipeline round in the record buffer (never a valid version). */
#define ROUND_MARK 0xffffu

static void *rec_add(struct recs *r, size_t size)
{
	size_t need = (size + 7) & ~(size_t)7;
	void *p;

	if (r->len + need > r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 1 << 20;

		while (ncap < r->len + need)
			ncap *= 2;
		r->buf = realloc(r->buf, ncap);
		if (!r->buf) {
			perror("realloc");
			exit(1);
		}
		r->cap = ncap;
	}
	p = r->buf + r->len;
	memset(p, 0, need);
	r->len += need;
	r->n++;
	return p;
}

struct sconn {
	struct ws_conn_id id;
	struct ws_tuple tuple;
	uint8_t role;
	const char *comm;
	uint32_t tid[2]; /* the thread that writes / reads */
	uint64_t off[2];
	bool classified;
};

static void put_open(struct recs *r, struct sconn *c, uint64_t ts)
{
	struct ws_conn_open *o = rec_add(r, sizeof(*o));

	o->hdr = (struct ws_event_hdr){WS_ABI_VERSION, WS_EV_CONN_OPEN,
				       sizeof(*o), ts};
	o->id = c->id;
	o->tuple = c->tuple;
	o->cgroup_id = 1;
	o->tid = c->tid[0];
	o->role = c->role;
	snprintf(o->comm, sizeof(o->comm), "%s", c->comm);
}

static void put_data(struct recs *r, struct sconn *c, uint8_t dir,
		     const uint8_t *b, size_t len, size_t chunk, uint64_t ts)
{
	while (len) {
		size_t n = len < chunk ? len : chunk;
		struct ws_data *d = rec_add(r, sizeof(*d) + n);

		d->hdr = (struct ws_event_hdr){WS_ABI_VERSION, WS_EV_DATA,
					       (uint32_t)(sizeof(*d) + n), ts};
		d->id = c->id;
		d->offset = c->off[dir];
		d->syscall_len = d->cap_len = (uint32_t)n;
		d->tid = c->tid[dir];
		d->dir = dir;
		d->proto = WS_PROTO_NATS;
		d->flags = c->classified ? 0 : WS_DF_CLASSIFY;
		d->syscall = dir == WS_DIR_EGRESS ? WS_SYS_WRITEV : WS_SYS_READ;
		memcpy(d + 1, b, n);
		c->classified = true;
		c->off[dir] += n;
		b += n;
		len -= n;
		ts += 1000;
	}
}

static void put_close(struct recs *r, struct sconn *c, uint64_t ts)
{
	struct ws_conn_close *e = rec_add(r, sizeof(*e));

	e->hdr = (struct ws_event_hdr){WS_ABI_VERSION, WS_EV_CONN_CLOSE,
				       sizeof(*e), ts};
	e->id = c->id;
	e->bytes[0] = c->off[0];
	e->bytes[1] = c->off[1];
	e->tid = c->tid[0];
	e->proto = WS_PROTO_NATS;
}

static void put_round(struct recs *r, uint64_t now)
{
	struct ws_event_hdr *h = rec_add(r, sizeof(*h));

	h->abi_version = ROUND_MARK;
	h->ts_ns = now;
}

/* Both ends of one TCP connection: the client's bytes out are the
 * server's in. */
static void hop(struct recs *r, struct sconn *from, uint8_t from_dir,
		struct sconn *to, const char *s, size_t len, size_t chunk,
		uint64_t *ts)
{
	put_data(r, from, from_dir, (const uint8_t *)s, len, chunk, *ts);
	*ts += 20000;
	put_data(r, to, !from_dir, (const uint8_t *)s, len, chunk, *ts);
	*ts += 20000;
}

static void tuple(struct ws_tuple *t, uint16_t lport, uint16_t rport)
{
	memset(t, 0, sizeof(*t));
	t->laddr[10] = t->laddr[11] = t->raddr[10] = t->raddr[11] = 0xff;
	t->laddr[12] = t->raddr[12] = 127;
	t->laddr[15] = t->raddr[15] = 1;
	t->lport = lport;
	t->rport = rport;
	t->family = WS_AF_INET;
}

static const char info_fmt[] =
	"INFO {\"server_id\":\"NAA4X24Q4J4XGFRP56KC7FS6AJNAQ2B6UQ2W4KCXJTWK6IW4"
	"NKQUKM3O\",\"server_name\":\"NAA4X24Q4J4XGFRP56KC7FS6AJNAQ2B6UQ2W4KCX"
	"JTWK6IW4NKQUKM3O\",\"version\":\"2.9.10\",\"proto\":1,\"go\":\"go1.19."
	"8\",\"host\":\"127.0.0.1\",\"port\":4222,\"headers\":true,\"max_"
	"payload"
	"\":1048576,\"client_id\":%u,\"client_ip\":\"127.0.0.1\"} \r\n";
static const char connect_line[] =
	"CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":false,"
	"\"name\":\"\",\"lang\":\"C\",\"version\":\"3.4.1\",\"protocol\":1,"
	"\"echo\":true,\"headers\":true,\"no_responders\":true}\r\nPING\r\n";

static void handshake(struct recs *r, struct sconn *cl, struct sconn *sv,
		      unsigned client_id, bool sub, size_t chunk, uint64_t *ts)
{
	char info[512];
	int n = snprintf(info, sizeof(info), info_fmt, client_id);

	put_open(r, sv, *ts);
	put_open(r, cl, *ts);
	hop(r, sv, WS_DIR_EGRESS, cl, info, (size_t)n, chunk, ts);
	hop(r, cl, WS_DIR_EGRESS, sv, connect_line, sizeof(connect_line) - 1,
	    chunk, ts);
	hop(r, sv, WS_DIR_EGRESS, cl, "PONG\r\n", 6, chunk, ts);
	if (sub) {
		hop(r, cl, WS_DIR_EGRESS, sv, "SUB bench 1\r\nPING\r\n", 19,
		    chunk, ts);
		hop(r, sv, WS_DIR_EGRESS, cl, "PONG\r\n", 6, chunk, ts);
	}
}

/* Build the whole record stream for o; returns the number of rounds. */
static unsigned long build(struct recs *r, const struct opts *o, uint64_t t0)
{
	/* nats_pub (one process: subscriber fd 3, publisher fd 4, a reader
	 * thread per connection) and nats-server (one goroutine thread per
	 * direction, here fixed). */
	uint32_t app = (uint32_t)getpid(), srv = (uint32_t)getppid();
	struct sconn sub = {.id = {app, 3, t0 + 1},
			    .role = WS_ROLE_CLIENT,
			    .comm = "nats_pub",
			    .tid = {app, app + 1}};
	struct sconn pub = {.id = {app, 4, t0 + 2},
			    .role = WS_ROLE_CLIENT,
			    .comm = "nats_pub",
			    .tid = {app + 2, app + 3}};
	struct sconn ssub = {.id = {srv, 7, t0 + 3},
			     .role = WS_ROLE_SERVER,
			     .comm = "nats-server",
			     .tid = {srv + 1, srv + 2}};
	struct sconn spub = {.id = {srv, 8, t0 + 4},
			     .role = WS_ROLE_SERVER,
			     .comm = "nats-server",
			     .tid = {srv + 3, srv + 4}};
	size_t pubf = 32 + o->size, msgf = 32 + o->size;
	char *pbuf = malloc(o->batch * (pubf + 2)), *mbuf;
	char *payload = malloc(o->size + 1);
	uint64_t ts = t0, dt = o->batch * 1000000000ull / o->rate;
	unsigned long sent = 0, rounds = 0, i;

	mbuf = malloc(o->batch * (msgf + 2));
	if (!pbuf || !mbuf || !payload) {
		perror("malloc");
		exit(1);
	}
	for (i = 0; i < o->size; i++)
		payload[i] = (char)('A' + i % 26);
	tuple(&sub.tuple, 40001, 4222);
	tuple(&ssub.tuple, 4222, 40001);
	tuple(&pub.tuple, 40002, 4222);
	tuple(&spub.tuple, 4222, 40002);
	handshake(r, &sub, &ssub, 4, true, o->chunk, &ts);
	handshake(r, &pub, &spub, 5, false, o->chunk, &ts);
	put_round(r, ts);
	while (sent < o->messages) {
		uint64_t tick = ts;
		size_t pl = 0, ml = 0;

		for (i = 0; i < o->batch && sent < o->messages; i++, sent++) {
			if (o->vary && o->size >= 8)
				memcpy(payload, &sent, 8);
			pl += (size_t)sprintf(pbuf + pl, "PUB bench %lu\r\n",
					      o->size);
			memcpy(pbuf + pl, payload, o->size);
			memcpy(pbuf + pl + o->size, "\r\n", 2);
			pl += o->size + 2;
			ml += (size_t)sprintf(mbuf + ml, "MSG bench 1 %lu\r\n",
					      o->size);
			memcpy(mbuf + ml, payload, o->size);
			memcpy(mbuf + ml + o->size, "\r\n", 2);
			ml += o->size + 2;
		}
		hop(r, &pub, WS_DIR_EGRESS, &spub, pbuf, pl, o->chunk, &ts);
		hop(r, &ssub, WS_DIR_EGRESS, &sub, mbuf, ml, o->chunk, &ts);
		ts = tick + dt;
		put_round(r, ts - 1);
		rounds++;
	}
	/* Flushes and closes, a second later: the process spans end on
	 * the subscriber's next read, the rest at close. */
	ts += 1000000000ull;
	hop(r, &pub, WS_DIR_EGRESS, &spub, "PING\r\n", 6, o->chunk, &ts);
	hop(r, &spub, WS_DIR_EGRESS, &pub, "PONG\r\n", 6, o->chunk, &ts);
	hop(r, &ssub, WS_DIR_EGRESS, &sub, "PING\r\n", 6, o->chunk, &ts);
	put_round(r, ts);
	put_close(r, &pub, ts);
	put_close(r, &spub, ts);
	put_close(r, &sub, ts);
	put_close(r, &ssub, ts);
	put_round(r, ts + 1);
	free(pbuf);
	free(mbuf);
	free(payload);
	return rounds;
}

/* ---- run ----------------------------------------------------------------- */

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int run_once(const struct opts *o, unsigned rep)
{
	static const ws_span_emit_fn emit[] = {
		[ST_PIPELINE] = on_span, [ST_PARSE] = on_span,
		[ST_SPANS] = span_freed, [ST_JSON] = on_span,
		[ST_PB] = span_pb,
	};
	struct ws_nats_spans_cfg ncfg;
	struct ws_http_spans_cfg hcfg;
	struct ws_enrich_cfg ecfg;
	struct bench *b = calloc(1, sizeof(*b));
	uint64_t spans_out = 0, write_errors = 0;
	FILE *out;
	struct ws_pipeline p;
	struct recs r = {0};
	uint64_t a0, f0, t0 = mono_now(), last = t0, spans;
	unsigned long rounds;
	size_t off;
	double c0, c1;
	int rc = 0;

	if (!b)
		return 1;
	rounds = build(&r, o, t0);
	b->stage = o->stage;
	/* as cmd_agent sets up, with the stdout sink and no Kubernetes */
	out = fopen(o->output ? o->output : "/dev/null", rep ? "a" : "w");
	ws_enrich_cfg_init(&ecfg);
	ecfg.no_k8s = true;
	ws_http_spans_cfg_init(&hcfg);
	hcfg.auth.key_hash = WS_KEY_HASH_MURMUR3; /* no secret file */
	ws_nats_spans_cfg_init(&ncfg);
	if (!out || ws_enrich_start(&b->ag.en, &ecfg) ||
	    ws_stdout_sink_open(&b->ag.sink, out, STDOUT_BATCH)) {
		fprintf(stderr, "bench_agent_replay: setup failed\n");
		return 1;
	}
	b->ag.ids = b->ag.en.ids;
	b->ag.http = ws_http_spans_new(&hcfg, emit[o->stage], &b->ag);
	b->ag.nats = ws_nats_spans_new(&ncfg, emit[o->stage], &b->ag);
	if (!b->ag.ids || !b->ag.nats || !b->ag.http ||
	    ws_pipeline_init(&p, &stage_ops[o->stage], &b->ag)) {
		fprintf(stderr, "bench_agent_replay: setup failed\n");
		return 1;
	}
	b->ag.p = &p;
	a0 = n_alloc;
	f0 = n_free;
	c0 = cpu_now();
	for (off = 0; off < r.len;) {
		const struct ws_event_hdr *h = (const void *)(r.buf + off);
		size_t size =
			h->abi_version == ROUND_MARK ? sizeof(*h) : h->size;

		if (h->abi_version == ROUND_MARK) {
			last = h->ts_ns;
			ws_pipeline_round(&p, last);
		} else {
			ws_pipeline_record(&p, h, size);
		}
		off += (size + 7) & ~(size_t)7;
	}
	/* as cmd_agent ends */
	ws_pipeline_fini(&p);
	ws_http_spans_end_all(b->ag.http, ws_pipeline_unix_ns(&p, last));
	ws_nats_spans_free(b->ag.nats, ws_pipeline_unix_ns(&p, last));
	b->ag.sink.ops->drain(b->ag.sink.impl);
	b->ag.sink.ops->counts(b->ag.sink.impl, &spans_out, &write_errors);
	pb_flush(b);
	c1 = cpu_now();
	spans = spans_out + b->spans_freed + b->pb_spans;
	printf("{\"stage\":\"%s\",\"rep\":%u,\"messages\":%lu,\"batch\":%lu,"
	       "\"size\":%lu,\"chunk\":%lu,\"vary\":%s,\"records\":%zu,"
	       "\"rounds\":%lu,\"record_bytes\":%zu,\"cpu_s\":%.4f,"
	       "\"ns_per_msg\":%.1f,\"spans\":%" PRIu64 ",\"frames\":%" PRIu64
	       ",\"ns_per_span\":%.1f,\"allocs\":%" PRIu64 ",\"frees\":%" PRIu64
	       ",\"allocs_per_msg\":%.2f,\"allocs_per_span\":%.2f,"
	       "\"pb_bytes_per_span\":%.1f,\"data_bytes\":%" PRIu64
	       ",\"gap_bytes_lost\":%" PRIu64 "}\n",
	       stage_names[o->stage], rep, o->messages, o->batch, o->size,
	       o->chunk, o->vary ? "true" : "false", r.n, rounds, r.len,
	       c1 - c0, (c1 - c0) * 1e9 / (double)o->messages, spans, b->frames,
	       spans ? (c1 - c0) * 1e9 / (double)spans : 0.0, n_alloc - a0,
	       n_free - f0, (double)(n_alloc - a0) / (double)o->messages,
	       spans ? (double)(n_alloc - a0) / (double)spans : 0.0,
	       b->pb_spans ? (double)b->pb_bytes / (double)b->pb_spans : 0.0,
	       p.m.data_bytes, p.m.gap_bytes[WS_GAP_LOST]);
	fflush(stdout);
	/* Every message gives its three spans, or the bench is wrong. */
	if (o->stage >= ST_SPANS && spans != 3 * o->messages) {
		fprintf(stderr,
			"bench_agent_replay: %" PRIu64
			" spans for %lu messages (want %lu)\n",
			spans, o->messages, 3 * o->messages);
		rc = 1;
	}
	if (write_errors || b->pb_errors || p.m.gap_bytes[WS_GAP_LOST]) {
		fprintf(stderr, "bench_agent_replay: write errors or loss\n");
		rc = 1;
	}
	b->ag.sink.ops->close(b->ag.sink.impl);
	ws_http_spans_free(b->ag.http, 0);
	ws_enrich_stop(&b->ag.en);
	fclose(out);
	free(r.buf);
	free(b);
	return rc;
}

static int parse_ul(const char *s, unsigned long lo, unsigned long hi,
		    unsigned long *v)
{
	char *end;

	errno = 0;
	*v = strtoul(s, &end, 10);
	return errno || *end || *v < lo || *v > hi ? -1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"stage", required_argument, NULL, 's'},
		{"messages", required_argument, NULL, 'n'},
		{"batch", required_argument, NULL, 'k'},
		{"size", required_argument, NULL, 'z'},
		{"chunk", required_argument, NULL, 'c'},
		{"rate", required_argument, NULL, 'r'},
		{"reps", required_argument, NULL, 'R'},
		{"vary", no_argument, NULL, 'v'},
		{"output", required_argument, NULL, 'o'},
		{"pb-ref", no_argument, NULL, 'P'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {.stage = ST_JSON,
			 .messages = 200000,
			 .batch = 85,
			 .size = 128,
			 .chunk = WS_DEFAULT_CAPTURE,
			 .rate = 100000,
			 .reps = 3};
	unsigned long v;
	unsigned i;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 's':
			for (v = 0; v <= ST_PB; v++)
				if (!strcmp(optarg, stage_names[v]))
					break;
			bad = v > ST_PB;
			o.stage = (enum stage)v;
			break;
		case 'n':
			bad = parse_ul(optarg, 1, 100000000, &o.messages);
			break;
		case 'k':
			bad = parse_ul(optarg, 1, 10000, &o.batch);
			break;
		case 'z':
			bad = parse_ul(optarg, 8, 65536, &o.size);
			break;
		case 'c':
			bad = parse_ul(optarg, 64, WS_MAX_CAPTURE, &o.chunk);
			break;
		case 'r':
			bad = parse_ul(optarg, 1, 100000000, &o.rate);
			break;
		case 'R':
			bad = parse_ul(optarg, 1, 1000, &o.reps);
			break;
		case 'v':
			o.vary = true;
			break;
		case 'o':
			o.output = optarg;
			break;
		case 'P':
			pb_encode = ws_otlp_pb_encode_ref;
			break;
		default:
			bad = 1;
		}
		if (bad) {
			fprintf(stderr,
				"usage: bench_agent_replay [--stage "
				"pipeline|parse|spans|json|pb] [--messages N] "
				"[--batch K] [--size B] [--chunk C] [--rate R] "
				"[--reps N] [--vary] [--output FILE] "
				"[--pb-ref]\n");
			return 2;
		}
	}
	for (i = 0; i < o.reps && !rc; i++)
		rc = run_once(&o, i);
	return rc;
}
