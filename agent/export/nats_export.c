/* SPDX-License-Identifier: Apache-2.0 */
/* The NATS span sink (see the header for the design). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uthash.h>

#include "export/nats_export.h"
#include "export/otlp_pb.h"
#include "log.h"
#include "subject_filter.h"

#define N_DOMAINS 3
/* Before the first connection: nats-server's default max_payload. */
#define DEFAULT_MAX_PAYLOAD (1024 * 1024)
/* Encoded bytes per span assumed before the first batch. */
#define INITIAL_SPAN_BYTES 600
/* Core mode: batches published per PING/PONG round, and their bytes. */
#define CORE_ROUND_BATCHES 256
#define CORE_ROUND_BYTES (4u << 20)
/* nats.c's reconnect buffer: small, since batches wait in our queue. */
#define RECONNECT_BUF_BYTES (256 * 1024)
/* After a failed publish round, wait this long before the next one. */
#define BACKOFF_MS 200
/* Warnings about failed publishes: the first few, then every 1000th. */
#define WARN_FIRST 10

struct qent {
	natsMsg *m; /* NULL while nats.c owns it (jetstream, in flight) */
	uint64_t seq;
	uint32_t spans, bytes;
	bool published; /* core: went out in a round that was not confirmed */
	struct qent *next;
	UT_hash_handle hh; /* jetstream in flight, by seq */
};

struct open_batch {
	struct ws_span **v;
	size_t n;
	uint64_t first_ns; /* CLOCK_MONOTONIC of the first span */
};

struct ws_nats_export {
	struct ws_nats_export_cfg cfg;
	char node[WS_EXPORT_NODE_MAX + 1];
	char boot[24];
	char subject[N_DOMAINS][WS_EXPORT_SUBJECT_MAX];
	/* pipeline thread only */
	struct open_batch open[N_DOMAINS];
	size_t cap; /* of each open batch */
	uint64_t avg_span_bytes;
	uint64_t spans_in;
	/* NATS */
	natsConnection *nc;
	jsCtx *js;
	jsPubOptions popts;
	struct ws_natsconn_stats cst;
	_Atomic uint64_t max_payload;
	pthread_t thread;
	bool thread_started;
	bool drained;
	/* everything below under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct qent *head, *tail; /* queued, oldest first */
	struct qent *inflight;	  /* jetstream: by seq */
	bool stop;
	uint64_t drain_deadline_ns;
	uint64_t backoff_until_ns;
	uint64_t reconnects_seen; /* core: reconnects already settled */
	struct ws_nats_export_stats st;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- names and subjects ------------------------------------------------- */

void ws_export_node_sanitize(const char *in, char *out)
{
	size_t i, n = 0;

	for (i = 0; in && in[i] && n < WS_EXPORT_NODE_MAX; i++) {
		unsigned char c = (unsigned char)in[i];

		out[n++] = (c > ' ' && c < 0x7f && c != '.' && c != '*' &&
			    c != '>')
				   ? (char)c
				   : '_';
	}
	out[n] = 0;
	if (!n)
		strcpy(out, "unknown");
}

const char *ws_export_domain_name(uint8_t domain)
{
	switch (domain) {
	case WS_DOMAIN_NATS:
		return "nats";
	case WS_DOMAIN_HTTP:
		return "http";
	default:
		return "unknown";
	}
}

int ws_export_subject(const char *tmpl, const char *prefix, const char *domain,
		      const char *node, char *out, size_t cap, const char **why)
{
	static const struct {
		const char *name;
		size_t len;
	} vars[] = {{"{prefix}", 8}, {"{domain}", 8}, {"{node}", 6}};
	const char *vals[] = {prefix, domain, node};
	const char *p = tmpl;
	size_t n = 0, i, l;

	*why = NULL;
	while (*p) {
		if (*p == '{') {
			for (i = 0; i < 3; i++)
				if (!strncmp(p, vars[i].name, vars[i].len))
					break;
			if (i == 3) {
				*why = "unknown variable (use {prefix}, "
				       "{domain}, {node})";
				return -EINVAL;
			}
			l = strlen(vals[i]);
			if (n + l >= cap)
				goto long_;
			memcpy(out + n, vals[i], l);
			n += l;
			p += vars[i].len;
			continue;
		}
		if (n + 1 >= cap)
			goto long_;
		out[n++] = *p++;
	}
	out[n] = 0;
	if (ws_subject_pattern_check(out, why))
		return -EINVAL;
	if (strchr(out, '*') || strchr(out, '>')) {
		*why = "a publish subject cannot hold the wildcards '*' or '>'";
		return -EINVAL;
	}
	return 0;
long_:
	*why = "the subject would be longer than 512 bytes";
	return -EINVAL;
}

static void cfg_defaults(struct ws_nats_export_cfg *c)
{
	if (!c->prefix)
		c->prefix = WS_EXPORT_DEFAULT_PREFIX;
	if (!c->subject_template)
		c->subject_template = WS_EXPORT_DEFAULT_TEMPLATE;
	if (!c->batch_max_spans)
		c->batch_max_spans = 1024;
	if (!c->batch_max_bytes)
		c->batch_max_bytes = 1024 * 1024;
	if (!c->batch_max_delay_ms)
		c->batch_max_delay_ms = 1000;
	if (!c->queue_max_bytes)
		c->queue_max_bytes = 64ull << 20;
	if (!c->js_max_wait_ms)
		c->js_max_wait_ms = 5000;
	if (!c->js_max_pending)
		c->js_max_pending = 64;
}

int ws_nats_export_check(const struct ws_nats_export_cfg *in, char *err,
			 size_t errlen)
{
	struct ws_nats_export_cfg c = *in;
	char node[WS_EXPORT_NODE_MAX + 1], subj[WS_EXPORT_SUBJECT_MAX];
	const char *why;

	cfg_defaults(&c);
	ws_export_node_sanitize(c.node ? c.node : "n", node);
	if (ws_export_subject(c.subject_template, c.prefix, "nats", node, subj,
			      sizeof(subj), &why)) {
		snprintf(err, errlen, "subject template \"%s\": %s",
			 c.subject_template, why);
		return -1;
	}
	if (c.batch_max_bytes < 1024) {
		snprintf(err, errlen, "batch max bytes: at least 1024");
		return -1;
	}
	return 0;
}

/* ---- the queue (mu held) -------------------------------------------------- */

static void qent_free(struct qent *q)
{
	natsMsg_Destroy(q->m);
	free(q);
}

static struct qent *q_pop(struct ws_nats_export *e)
{
	struct qent *q = e->head;

	if (q) {
		e->head = q->next;
		if (!e->head)
			e->tail = NULL;
		q->next = NULL;
	}
	return q;
}

static void q_push_front(struct ws_nats_export *e, struct qent *q)
{
	q->next = e->head;
	e->head = q;
	if (!e->tail)
		e->tail = q;
}

/* A batch leaves the accounting: sent, dropped or taken. */
static void q_forget(struct ws_nats_export *e, struct qent *q)
{
	e->st.queue_batches--;
	e->st.queue_bytes -= q->bytes;
}

static void q_add(struct ws_nats_export *e, struct qent *q)
{
	struct qent *old;

	pthread_mutex_lock(&e->mu);
	/* the oldest queued batches make room; in-flight ones cannot */
	while (e->st.queue_bytes + q->bytes > e->cfg.queue_max_bytes &&
	       (old = q_pop(e))) {
		e->st.dropped_batches++;
		e->st.dropped_spans += old->spans;
		e->st.dropped_bytes += old->bytes;
		if (old->published)
			e->st.dropped_unconfirmed_spans += old->spans;
		q_forget(e, old);
		qent_free(old);
	}
	if (e->st.queue_bytes + q->bytes > e->cfg.queue_max_bytes) {
		e->st.dropped_batches++;
		e->st.dropped_spans += q->spans;
		e->st.dropped_bytes += q->bytes;
		qent_free(q);
	} else {
		if (e->tail)
			e->tail->next = q;
		else
			e->head = q;
		e->tail = q;
		e->st.queue_batches++;
		e->st.queue_bytes += q->bytes;
		if (e->st.queue_bytes > e->st.queue_peak_bytes)
			e->st.queue_peak_bytes = e->st.queue_bytes;
		pthread_cond_signal(&e->cv);
	}
	pthread_mutex_unlock(&e->mu);
}

/* ---- batches (pipeline thread) -------------------------------------------- */

static uint64_t hard_limit(struct ws_nats_export *e)
{
	uint64_t mp = atomic_load(&e->max_payload);

	if (!mp)
		mp = DEFAULT_MAX_PAYLOAD;
	return mp > 2 * WS_EXPORT_HEADER_ROOM ? mp - WS_EXPORT_HEADER_ROOM
					      : mp / 2;
}

/* Encoded bytes a batch of several spans may have. */
static uint64_t batch_limit(struct ws_nats_export *e)
{
	uint64_t h = hard_limit(e);

	return e->cfg.batch_max_bytes < h ? e->cfg.batch_max_bytes : h;
}

static int set_headers(natsMsg *m, struct ws_nats_export *e, uint64_t seq,
		       size_t spans)
{
	char v[48], id[WS_EXPORT_NODE_MAX + 64];
	natsStatus s;

	snprintf(id, sizeof(id), "%s:%s:%" PRIu64, e->node, e->boot, seq);
	s = natsMsgHeader_Set(m, "Content-Type", "application/x-protobuf");
	/* what the otelnats Collector receiver routes by (docs/RELAY.md) */
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Otel-Signal", "traces");
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Wirespan-Node", e->node);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Wirespan-Boot", e->boot);
	snprintf(v, sizeof(v), "%" PRIu64, seq);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Wirespan-Seq", v);
	snprintf(v, sizeof(v), "%zu", spans);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Wirespan-Spans", v);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	return s == NATS_OK ? 0 : -ENOMEM;
}

static void enqueue(struct ws_nats_export *e, int dom, const uint8_t *buf,
		    size_t len, size_t spans)
{
	struct qent *q = calloc(1, sizeof(*q));

	if (!q || natsMsg_Create(&q->m, e->subject[dom], NULL,
				 (const char *)buf, (int)len) != NATS_OK) {
		free(q);
		pthread_mutex_lock(&e->mu);
		e->st.encode_errors += spans;
		pthread_mutex_unlock(&e->mu);
		return;
	}
	pthread_mutex_lock(&e->mu);
	q->seq = ++e->st.seq;
	e->st.batches++;
	e->st.encoded_bytes += len;
	pthread_mutex_unlock(&e->mu);
	q->spans = (uint32_t)spans;
	q->bytes = (uint32_t)len;
	if (set_headers(q->m, e, q->seq, spans)) {
		pthread_mutex_lock(&e->mu);
		e->st.encode_errors += spans;
		pthread_mutex_unlock(&e->mu);
		qent_free(q);
		return;
	}
	q_add(e, q);
}

/* Encode v[0..n) into one message, or split it in halves when it is over
 * the server's max_payload. */
static void encode_batch(struct ws_nats_export *e, int dom,
			 struct ws_span *const *v, size_t n)
{
	uint8_t *buf;
	size_t len;

	if (!n)
		return;
	if (ws_otlp_pb_encode(v, n, &buf, &len)) {
		pthread_mutex_lock(&e->mu);
		e->st.encode_errors += n;
		pthread_mutex_unlock(&e->mu);
		return;
	}
	if (len > batch_limit(e) && (n > 1 || len > hard_limit(e))) {
		free(buf);
		pthread_mutex_lock(&e->mu);
		if (n == 1)
			e->st.oversize_spans++;
		else
			e->st.split++;
		pthread_mutex_unlock(&e->mu);
		if (n == 1)
			return;
		encode_batch(e, dom, v, n / 2);
		encode_batch(e, dom, v + n / 2, n - n / 2);
		return;
	}
	/* the newest batch says most about the next one */
	e->avg_span_bytes = (e->avg_span_bytes + len / n) / 2 + 1;
	enqueue(e, dom, buf, len, n);
	free(buf);
}

enum flush_why { WHY_SPANS, WHY_BYTES, WHY_DELAY, WHY_EXIT };

static void flush_open(struct ws_nats_export *e, int dom, enum flush_why why)
{
	struct open_batch *b = &e->open[dom];
	size_t i;

	if (!b->n)
		return;
	pthread_mutex_lock(&e->mu);
	if (why == WHY_SPANS)
		e->st.flush_spans++;
	else if (why == WHY_BYTES)
		e->st.flush_bytes++;
	else if (why == WHY_DELAY)
		e->st.flush_delay++;
	else
		e->st.flush_exit++;
	pthread_mutex_unlock(&e->mu);
	encode_batch(e, dom, b->v, b->n);
	for (i = 0; i < b->n; i++)
		ws_span_free(b->v[i]);
	b->n = 0;
}

void ws_nats_export_span(struct ws_nats_export *e, struct ws_span *s)
{
	int dom = s->domain < N_DOMAINS ? s->domain : WS_DOMAIN_NONE;
	struct open_batch *b = &e->open[dom];
	uint64_t target = batch_limit(e);

	e->spans_in++; /* pipeline thread's own: no lock per span */
	if (!b->n)
		b->first_ns = mono_ns();
	b->v[b->n++] = s;
	if (b->n >= e->cfg.batch_max_spans)
		flush_open(e, dom, WHY_SPANS);
	else if (b->n * e->avg_span_bytes >= target)
		flush_open(e, dom, WHY_BYTES);
}

void ws_nats_export_tick(struct ws_nats_export *e, uint64_t now)
{
	uint64_t delay = (uint64_t)e->cfg.batch_max_delay_ms * 1000000ull;
	int d;

	for (d = 0; d < N_DOMAINS; d++)
		if (e->open[d].n && now >= e->open[d].first_ns &&
		    now - e->open[d].first_ns >= delay)
			flush_open(e, d, WHY_DELAY);
}

void ws_nats_export_flush(struct ws_nats_export *e)
{
	int d;

	for (d = 0; d < N_DOMAINS; d++)
		flush_open(e, d, WHY_EXIT);
}

static int resize_open(struct ws_nats_export *e, size_t cap)
{
	int d;

	for (d = 0; d < N_DOMAINS; d++) {
		struct ws_span **v = realloc(e->open[d].v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		e->open[d].v = v;
	}
	e->cap = cap;
	return 0;
}

void ws_nats_export_set_limits(struct ws_nats_export *e, uint32_t max_spans,
			       uint32_t max_bytes, uint32_t max_delay_ms,
			       uint64_t queue_max_bytes)
{
	int d;

	/* a smaller batch: send what is open first, so nothing is over */
	if (max_spans < e->cfg.batch_max_spans)
		for (d = 0; d < N_DOMAINS; d++)
			if (e->open[d].n >= max_spans)
				flush_open(e, d, WHY_SPANS);
	if (max_spans > e->cap && resize_open(e, max_spans)) {
		ws_warn("export: no memory for batches of %u spans; keeping "
			"%u",
			max_spans, e->cfg.batch_max_spans);
		max_spans = e->cfg.batch_max_spans;
	}
	e->cfg.batch_max_spans = max_spans;
	e->cfg.batch_max_bytes = max_bytes;
	e->cfg.batch_max_delay_ms = max_delay_ms;
	pthread_mutex_lock(&e->mu);
	e->cfg.queue_max_bytes = queue_max_bytes;
	e->st.queue_max_bytes = queue_max_bytes;
	pthread_mutex_unlock(&e->mu);
}

/* ---- publishing (publisher thread; mu held on entry and exit) ------------ */

static void wait_ms(struct ws_nats_export *e, unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)ms * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_cond_timedwait(&e->cv, &e->mu, &ts);
}

static void warn_failure(uint64_t n, const char *what, natsStatus s)
{
	if (n <= WARN_FIRST || n % 1000 == 0)
		ws_warn("export: %s: %s (%" PRIu64 " so far)", what,
			natsStatus_GetText(s), n);
}

static void sent(struct ws_nats_export *e, struct qent *q)
{
	e->st.sent_batches++;
	e->st.sent_spans += q->spans;
	e->st.sent_bytes += q->bytes;
	q_forget(e, q);
	qent_free(q);
}

/* Publish up to a round of batches, then PING/PONG: the server has read
 * them. On failure they go back to the head of the queue, in order. */
static void core_round(struct ws_nats_export *e)
{
	struct qent *list = NULL, **tail = &list, *q, *failed = NULL;
	size_t n = 0, bytes = 0;
	natsStatus s = NATS_OK;

	while (e->head && n < CORE_ROUND_BATCHES && bytes < CORE_ROUND_BYTES) {
		q = q_pop(e);
		*tail = q;
		tail = &q->next;
		n++;
		bytes += q->bytes;
	}
	e->st.inflight = n;
	pthread_mutex_unlock(&e->mu);
	for (q = list; q && s == NATS_OK; q = q->next) {
		s = natsConnection_PublishMsg(e->nc, q->m);
		if (s != NATS_OK)
			failed = q;
	}
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(e->nc, e->cfg.js_max_wait_ms);
	pthread_mutex_lock(&e->mu);
	e->st.inflight = 0;
	if (s == NATS_OK) {
		while ((q = list)) {
			list = q->next;
			sent(e, q);
		}
		return;
	}
	if (failed) {
		e->st.publish_errors++;
		warn_failure(e->st.publish_errors, "publish", s);
	} else {
		e->st.flush_errors++;
		warn_failure(e->st.flush_errors, "flush (PING/PONG)", s);
	}
	/* what nats.c took may have reached the server (and consumers) */
	for (q = list; q && q != failed; q = q->next)
		q->published = true;
	/* a batch the server will never take would block the queue */
	if (failed && s == NATS_MAX_PAYLOAD) {
		struct qent **pp;

		for (pp = &list; *pp != failed; pp = &(*pp)->next)
			;
		*pp = failed->next;
		e->st.oversize_spans += failed->spans;
		q_forget(e, failed);
		qent_free(failed);
	}
	/* back to the head, in order: reverse, then push each in front */
	{
		struct qent *rev = NULL;

		while ((q = list)) {
			list = q->next;
			q->next = rev;
			rev = q;
		}
		while ((q = rev)) {
			rev = q->next;
			q_push_front(e, q);
			e->st.resent++;
		}
	}
	e->backoff_until_ns = mono_ns() + BACKOFF_MS * 1000000ull;
}

static void js_publish_one(struct ws_nats_export *e)
{
	struct qent *q = q_pop(e);
	natsMsg *m = q->m;
	natsStatus s;

	q->m = NULL;
	HASH_ADD(hh, e->inflight, seq, sizeof(q->seq), q);
	e->st.inflight++;
	pthread_mutex_unlock(&e->mu);
	s = js_PublishMsgAsync(e->js, &m, &e->popts);
	pthread_mutex_lock(&e->mu);
	if (s == NATS_OK)
		return;
	/* not published: still ours (m), unless an ack raced (it cannot:
	 * nats.c did not take the message) */
	e->st.publish_errors++;
	warn_failure(e->st.publish_errors, "jetstream publish", s);
	HASH_DEL(e->inflight, q);
	e->st.inflight--;
	q->m = m;
	if (s == NATS_MAX_PAYLOAD) {
		/* the server will never take it: it must not block the queue */
		e->st.oversize_spans += q->spans;
		q_forget(e, q);
		qent_free(q);
		return;
	}
	q_push_front(e, q);
	e->st.resent++;
	e->backoff_until_ns = mono_ns() + BACKOFF_MS * 1000000ull;
}

/* nats.c's thread: a PubAck, an error or MaxWait passed. */
static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
		       void *closure)
{
	struct ws_nats_export *e = closure;
	const char *v = NULL;
	struct qent *q = NULL;
	uint64_t seq;

	if (natsMsgHeader_Get(msg, "Wirespan-Seq", &v) != NATS_OK || !v) {
		natsMsg_Destroy(msg);
		return;
	}
	seq = strtoull(v, NULL, 10);
	pthread_mutex_lock(&e->mu);
	HASH_FIND(hh, e->inflight, &seq, sizeof(seq), q);
	if (!q) {
		pthread_mutex_unlock(&e->mu);
		natsMsg_Destroy(msg);
		return;
	}
	HASH_DEL(e->inflight, q);
	e->st.inflight--;
	q->m = msg;
	if (pa) {
		e->st.js_acks++;
		if (pa->Duplicate)
			e->st.js_duplicates++;
		sent(e, q);
	} else {
		natsStatus s = pae ? pae->Err : NATS_ERR;

		e->st.js_errors++;
		if (s == NATS_TIMEOUT)
			e->st.js_timeouts++;
		if (e->st.js_errors <= WARN_FIRST ||
		    e->st.js_errors % 1000 == 0)
			ws_warn("export: jetstream publish of batch %" PRIu64
				" failed: %s%s%s (%" PRIu64
				" failures so far); sending it again",
				seq, natsStatus_GetText(s),
				pae && pae->ErrText ? ": " : "",
				pae && pae->ErrText ? pae->ErrText : "",
				e->st.js_errors);
		q_push_front(e, q);
		e->st.resent++;
		e->backoff_until_ns = mono_ns() + BACKOFF_MS * 1000000ull;
	}
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

static bool may_publish(struct ws_nats_export *e)
{
	if (!e->head || !atomic_load(&e->cst.connected))
		return false;
	if (mono_ns() < e->backoff_until_ns)
		return false;
	return e->cfg.mode != WS_EXPORT_JETSTREAM ||
	       e->st.inflight < e->cfg.js_max_pending;
}

static void *publisher(void *arg)
{
	struct ws_nats_export *e = arg;
	int64_t mp;

	pthread_mutex_lock(&e->mu);
	for (;;) {
		if (e->stop && ((!e->head && !e->st.inflight) ||
				mono_ns() >= e->drain_deadline_ns))
			break;
		if (atomic_load(&e->cst.connected)) {
			pthread_mutex_unlock(&e->mu);
			mp = natsConnection_GetMaxPayload(e->nc);
			if (mp > 0)
				atomic_store(&e->max_payload, (uint64_t)mp);
			pthread_mutex_lock(&e->mu);
			e->st.max_payload = atomic_load(&e->max_payload);
		}
		if (e->cfg.mode != WS_EXPORT_JETSTREAM &&
		    atomic_load(&e->cst.reconnects) != e->reconnects_seen) {
			e->reconnects_seen = atomic_load(&e->cst.reconnects);
			e->backoff_until_ns =
				mono_ns() +
				e->cfg.reconnect_settle_ms * 1000000ull;
		}
		if (!may_publish(e)) {
			wait_ms(e, 50);
			continue;
		}
		if (e->cfg.mode == WS_EXPORT_JETSTREAM)
			js_publish_one(e);
		else
			core_round(e);
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

/* ---- life cycle ------------------------------------------------------------ */

static int connect_nats(struct ws_nats_export *e, char *err, size_t errlen)
{
	struct ws_natsconn_cfg cc = e->cfg.conn;
	char name[WS_EXPORT_NODE_MAX + 32];
	jsOptions jo;

	snprintf(name, sizeof(name), "wirespan-agent %s", e->node);
	if (!cc.name)
		cc.name = name;
	cc.retry_on_failed_connect = true;
	if (!cc.reconnect_buf_bytes)
		cc.reconnect_buf_bytes = RECONNECT_BUF_BYTES;
	if (ws_natsconn_open(&cc, &e->cst, &e->nc, err, errlen))
		return -1;
	if (!atomic_load(&e->cst.connected))
		ws_warn("export: no NATS server reachable at %s yet; batches "
			"wait in the queue (at most %" PRIu64
			" bytes) while nats.c retries",
			cc.urls ? cc.urls : WS_NATS_DEFAULT_URL,
			e->cfg.queue_max_bytes);
	if (e->cfg.mode != WS_EXPORT_JETSTREAM)
		return 0;
	jsOptions_Init(&jo);
	jo.Wait = e->cfg.js_max_wait_ms;
	/* ours is the bound; nats.c's only must not stall before it */
	jo.PublishAsync.MaxPending = (int64_t)e->cfg.js_max_pending * 2 + 16;
	jo.PublishAsync.AckHandler = on_pub_ack;
	jo.PublishAsync.AckHandlerClosure = e;
	if (natsConnection_JetStream(&e->js, e->nc, &jo) != NATS_OK) {
		snprintf(err, errlen, "jetstream context: %s",
			 nats_GetLastError(NULL));
		return -1;
	}
	jsPubOptions_Init(&e->popts);
	e->popts.MaxWait = e->cfg.js_max_wait_ms;
	e->popts.ExpectStream = e->cfg.js_stream;
	return 0;
}

struct ws_nats_export *ws_nats_export_new(const struct ws_nats_export_cfg *cfg,
					  char *err, size_t errlen)
{
	struct ws_nats_export *e;
	char host[256] = "";
	const char *why;
	struct timespec ts;
	int d;

	if (ws_nats_export_check(cfg, err, errlen))
		return NULL;
	/* natsMsg_Destroy needs the library even without a connection */
	if (nats_Open(-1) != NATS_OK) {
		snprintf(err, errlen, "libnats: %s", nats_GetLastError(NULL));
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->cfg = *cfg;
	cfg_defaults(&e->cfg);
	pthread_mutex_init(&e->mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&e->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (!e->cfg.node)
		gethostname(host, sizeof(host) - 1);
	ws_export_node_sanitize(e->cfg.node ? e->cfg.node : host, e->node);
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(e->boot, sizeof(e->boot), "%" PRIu64,
		 (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
	for (d = 0; d < N_DOMAINS; d++)
		ws_export_subject(e->cfg.subject_template, e->cfg.prefix,
				  ws_export_domain_name((uint8_t)d), e->node,
				  e->subject[d], sizeof(e->subject[d]), &why);
	e->avg_span_bytes = INITIAL_SPAN_BYTES;
	e->st.queue_max_bytes = e->cfg.queue_max_bytes;
	if (resize_open(e, e->cfg.batch_max_spans)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (e->cfg.no_connect)
		return e;
	if (connect_nats(e, err, errlen))
		goto fail;
	if (pthread_create(&e->thread, NULL, publisher, e)) {
		snprintf(err, errlen, "cannot start the publisher thread");
		goto fail;
	}
	e->thread_started = true;
	return e;
fail:
	ws_nats_export_close(e);
	return NULL;
}

natsMsg *ws_nats_export_take(struct ws_nats_export *e)
{
	struct qent *q;
	natsMsg *m = NULL;

	pthread_mutex_lock(&e->mu);
	q = q_pop(e);
	if (q) {
		q_forget(e, q);
		m = q->m;
		q->m = NULL;
		free(q);
	}
	pthread_mutex_unlock(&e->mu);
	return m;
}

void ws_nats_export_stats(struct ws_nats_export *e,
			  struct ws_nats_export_stats *st)
{
	pthread_mutex_lock(&e->mu);
	*st = e->st;
	pthread_mutex_unlock(&e->mu);
	st->spans_in = e->spans_in;
	st->connected = atomic_load(&e->cst.connected);
	st->disconnects = atomic_load(&e->cst.disconnects);
	st->reconnects = atomic_load(&e->cst.reconnects);
	st->async_errors = atomic_load(&e->cst.async_errors);
	st->not_permitted = atomic_load(&e->cst.not_permitted);
	st->slow_consumer = atomic_load(&e->cst.slow_consumer);
}

void ws_nats_export_metrics(struct ws_nats_export *e, struct ws_jsonw *w)
{
	struct ws_nats_export_stats s;

	ws_nats_export_stats(e, &s);
	jw_str(w, "mode",
	       e->cfg.mode == WS_EXPORT_JETSTREAM ? "jetstream" : "core");
	jw_str(w, "node", e->node);
	jw_str(w, "boot", e->boot);
	jw_u64(w, "spans_in", s.spans_in);
	jw_u64(w, "batches", s.batches);
	jw_u64(w, "encoded_bytes", s.encoded_bytes);
	jw_u64(w, "flush_spans", s.flush_spans);
	jw_u64(w, "flush_bytes", s.flush_bytes);
	jw_u64(w, "flush_delay", s.flush_delay);
	jw_u64(w, "flush_exit", s.flush_exit);
	jw_u64(w, "split", s.split);
	jw_u64(w, "oversize_spans", s.oversize_spans);
	jw_u64(w, "encode_errors", s.encode_errors);
	jw_u64(w, "sent_batches", s.sent_batches);
	jw_u64(w, "sent_spans", s.sent_spans);
	jw_u64(w, "sent_bytes", s.sent_bytes);
	jw_u64(w, "publish_errors", s.publish_errors);
	jw_u64(w, "flush_errors", s.flush_errors);
	jw_u64(w, "resent", s.resent);
	jw_u64(w, "js_acks", s.js_acks);
	jw_u64(w, "js_duplicates", s.js_duplicates);
	jw_u64(w, "js_errors", s.js_errors);
	jw_u64(w, "js_timeouts", s.js_timeouts);
	jw_u64(w, "dropped_batches", s.dropped_batches);
	jw_u64(w, "dropped_spans", s.dropped_spans);
	jw_u64(w, "dropped_bytes", s.dropped_bytes);
	jw_u64(w, "exit_dropped_batches", s.exit_dropped_batches);
	jw_u64(w, "exit_dropped_spans", s.exit_dropped_spans);
	jw_u64(w, "dropped_unconfirmed_spans", s.dropped_unconfirmed_spans);
	jw_u64(w, "queue_batches", s.queue_batches);
	jw_u64(w, "queue_bytes", s.queue_bytes);
	jw_u64(w, "queue_peak_bytes", s.queue_peak_bytes);
	jw_u64(w, "queue_max_bytes", s.queue_max_bytes);
	jw_u64(w, "inflight", s.inflight);
	jw_u64(w, "seq", s.seq);
	jw_u64(w, "max_payload", s.max_payload);
	jw_bool(w, "connected", s.connected);
	jw_u64(w, "disconnects", s.disconnects);
	jw_u64(w, "reconnects", s.reconnects);
	jw_u64(w, "async_errors", s.async_errors);
	jw_u64(w, "not_permitted", s.not_permitted);
	jw_u64(w, "slow_consumer", s.slow_consumer);
}

/* What never left: counted, then freed. mu held. */
static void drop_left(struct ws_nats_export *e)
{
	struct qent *q;
	natsMsgList pending = {0};
	int i;

	while ((q = q_pop(e))) {
		e->st.exit_dropped_batches++;
		e->st.exit_dropped_spans += q->spans;
		if (q->published)
			e->st.dropped_unconfirmed_spans += q->spans;
		q_forget(e, q);
		qent_free(q);
	}
	/* jetstream: unacknowledged; take the messages back from nats.c */
	if (e->js && e->inflight) {
		pthread_mutex_unlock(&e->mu);
		js_PublishAsyncGetPendingList(&pending, e->js);
		pthread_mutex_lock(&e->mu);
	}
	while (e->inflight) {
		q = e->inflight;
		HASH_DEL(e->inflight, q);
		e->st.inflight--;
		e->st.exit_dropped_batches++;
		e->st.exit_dropped_spans += q->spans;
		q_forget(e, q);
		qent_free(q);
	}
	for (i = 0; i < pending.Count; i++)
		natsMsg_Destroy(pending.Msgs[i]);
	pending.Count = 0;
	natsMsgList_Destroy(&pending);
}

void ws_nats_export_drain(struct ws_nats_export *e)
{
	if (e->drained)
		return;
	e->drained = true;
	if (e->cap)
		ws_nats_export_flush(e);
	pthread_mutex_lock(&e->mu);
	e->stop = true;
	e->drain_deadline_ns =
		mono_ns() + (uint64_t)e->cfg.drain_timeout_ms * 1000000ull;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	if (e->thread_started)
		pthread_join(e->thread, NULL);
	e->thread_started = false;
	pthread_mutex_lock(&e->mu);
	drop_left(e);
	pthread_mutex_unlock(&e->mu);
	if (e->st.exit_dropped_batches)
		ws_warn("export: %" PRIu64 " batches (%" PRIu64
			" spans) not delivered at exit",
			e->st.exit_dropped_batches, e->st.exit_dropped_spans);
}

void ws_nats_export_close(struct ws_nats_export *e)
{
	int d;
	size_t i;

	if (!e)
		return;
	ws_nats_export_drain(e);
	jsCtx_Destroy(e->js);
	if (e->nc) {
		natsConnection_Close(e->nc);
		natsConnection_Destroy(e->nc);
		/* the connection's callbacks use e->cst: wait for them */
		nats_CloseAndWait(2000);
	}
	for (d = 0; d < N_DOMAINS; d++) {
		for (i = 0; i < e->open[d].n; i++)
			ws_span_free(e->open[d].v[i]);
		free(e->open[d].v);
	}
	pthread_cond_destroy(&e->cv);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

/* ---- the sink interface ----------------------------------------------------- */

static void sink_span(void *impl, struct ws_span *s)
{
	ws_nats_export_span(impl, s);
}

static void sink_tick(void *impl, uint64_t mono)
{
	ws_nats_export_tick(impl, mono);
}

static void sink_counts(void *impl, uint64_t *spans_out, uint64_t *errors)
{
	struct ws_nats_export_stats s;

	ws_nats_export_stats(impl, &s);
	*spans_out = s.spans_in - s.encode_errors - s.oversize_spans;
	*errors = s.encode_errors + s.oversize_spans;
}

static void sink_metrics(void *impl, struct ws_jsonw *w)
{
	jw_obj_open(w, "export");
	ws_nats_export_metrics(impl, w);
	jw_obj_close(w);
}

static void sink_limits(void *impl, uint32_t max_spans, uint32_t max_bytes,
			uint32_t max_delay_ms, uint64_t queue_max_bytes)
{
	ws_nats_export_set_limits(impl, max_spans, max_bytes, max_delay_ms,
				  queue_max_bytes);
}

static void sink_drain(void *impl)
{
	ws_nats_export_drain(impl);
}

static void sink_close(void *impl)
{
	ws_nats_export_close(impl);
}

static bool sink_own_endpoint(void *impl, char *ip, size_t iplen,
			      uint16_t *port)
{
	struct ws_nats_export *e = impl;
	char *addr = NULL;
	int p = 0;
	bool ok;

	if (!e->nc ||
	    natsConnection_GetLocalIPAndPort(e->nc, &addr, &p) != NATS_OK)
		return false;
	ok = addr && p > 0 && p < 65536 &&
	     (size_t)snprintf(ip, iplen, "%s", addr) < iplen;
	free(addr);
	if (ok)
		*port = (uint16_t)p;
	return ok;
}

static const struct ws_sink_ops nats_sink_ops = {
	.span = sink_span,
	.tick = sink_tick,
	.counts = sink_counts,
	.metrics = sink_metrics,
	.limits = sink_limits,
	.drain = sink_drain,
	.close = sink_close,
	.own_endpoint = sink_own_endpoint,
};

int ws_nats_sink_open(struct ws_sink *sink,
		      const struct ws_nats_export_cfg *cfg, char *err,
		      size_t errlen)
{
	struct ws_nats_export *e = ws_nats_export_new(cfg, err, errlen);

	if (!e)
		return -1;
	sink->ops = &nats_sink_ops;
	sink->impl = e;
	return 0;
}
