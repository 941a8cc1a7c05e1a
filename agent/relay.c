/* SPDX-License-Identifier: Apache-2.0 */
/* The relay's queue, batches and retry rules: see relay.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "otlp_trace_service.pb-c.h"

#include "export/pb_guard.h"
#include "relay.h"

const char *const ws_relay_drop_names[WS_DROP_MAX] = {
	[WS_DROP_BAD_MESSAGE] = "bad_message",
	[WS_DROP_QUEUE_FULL] = "queue_full",
	[WS_DROP_REJECTED] = "rejected",
	[WS_DROP_RETRIES_EXHAUSTED] = "retries_exhausted",
	[WS_DROP_PARTIAL] = "partial_success",
	[WS_DROP_SHUTDOWN] = "shutdown",
};

/* One queued payload. */
struct entry {
	struct entry *next;
	void *token;
	size_t len, spans;
	uint64_t t_ns; /* when it was queued */
	uint8_t data[];
};

struct ws_relay {
	struct ws_relay_cfg cfg;
	struct entry *head, **tailp; /* waiting, oldest first */
	size_t q_bytes, q_spans;     /* waiting only */
	/* the batch in flight: its entries, its bytes, its retry state */
	struct entry *flight;
	uint8_t *buf;
	struct ws_relay_batch b;
	bool posting; /* handed out by ws_relay_next, no outcome yet */
	uint64_t first_ns, next_ns;
	struct ws_relay_stats st;
};

void ws_relay_cfg_init(struct ws_relay_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_queue_bytes = WS_RELAY_DEFAULT_QUEUE_BYTES;
	cfg->max_batch_bytes = WS_RELAY_DEFAULT_BATCH_BYTES;
	cfg->max_batch_spans = WS_RELAY_DEFAULT_BATCH_SPANS;
	cfg->max_delay_ns = WS_RELAY_DEFAULT_DELAY_NS;
	cfg->backoff_ns = WS_RELAY_DEFAULT_BACKOFF_NS;
	cfg->backoff_max_ns = WS_RELAY_DEFAULT_BACKOFF_MAX_NS;
	cfg->max_elapsed_ns = WS_RELAY_DEFAULT_ELAPSED_NS;
}

struct ws_relay *ws_relay_new(const struct ws_relay_cfg *cfg)
{
	struct ws_relay *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->cfg = *cfg;
	r->tailp = &r->head;
	return r;
}

static void release(struct ws_relay *r, struct entry *e, int why)
{
	if (r->cfg.release)
		r->cfg.release(r->cfg.ctx, e->token, why);
	r->st.queued_bytes -= e->len;
	r->st.queued_messages--;
	free(e);
}

static void drop_list(struct ws_relay *r, struct entry *e,
		      enum ws_relay_drop why)
{
	while (e) {
		struct entry *next = e->next;

		r->st.dropped[why] += e->spans;
		r->st.dropped_messages[why]++;
		release(r, e, (int)why);
		e = next;
	}
}

static void flight_end(struct ws_relay *r)
{
	free(r->buf);
	r->buf = NULL;
	r->flight = NULL;
	r->posting = false;
	memset(&r->b, 0, sizeof(r->b));
}

void ws_relay_drop_all(struct ws_relay *r)
{
	drop_list(r, r->flight, WS_DROP_SHUTDOWN);
	flight_end(r);
	drop_list(r, r->head, WS_DROP_SHUTDOWN);
	r->head = NULL;
	r->tailp = &r->head;
	r->q_bytes = r->q_spans = 0;
}

void ws_relay_free(struct ws_relay *r)
{
	if (!r)
		return;
	ws_relay_drop_all(r);
	free(r);
}

size_t ws_relay_room(const struct ws_relay *r)
{
	return r->st.queued_bytes < r->cfg.max_queue_bytes
		       ? r->cfg.max_queue_bytes - r->st.queued_bytes
		       : 0;
}

static struct entry *pop(struct ws_relay *r)
{
	struct entry *e = r->head;

	r->head = e->next;
	if (!r->head)
		r->tailp = &r->head;
	e->next = NULL;
	r->q_bytes -= e->len;
	r->q_spans -= e->spans;
	return e;
}

int ws_relay_push(struct ws_relay *r, const uint8_t *buf, size_t len,
		  void *token, uint64_t now_ns)
{
	static const uint8_t empty[1];
	size_t spans = 0;

	if (!buf)
		buf = empty;
	if (ws_pb_check(
		    &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
		    buf, len, WS_PB_MAX_DEPTH) ||
	    ws_pb_count(buf, len, WS_OTLP_SPANS_PATH, WS_OTLP_SPANS_DEPTH,
			&spans)) {
		r->st.messages_in++;
		r->st.bytes_in += len;
		r->st.dropped_messages[WS_DROP_BAD_MESSAGE]++;
		if (r->cfg.release)
			r->cfg.release(r->cfg.ctx, token, WS_DROP_BAD_MESSAGE);
		return -EBADMSG;
	}
	return ws_relay_push_checked(r, buf, len, spans, token, now_ns);
}

int ws_relay_push_checked(struct ws_relay *r, const uint8_t *buf, size_t len,
			  size_t spans, void *token, uint64_t now_ns)
{
	struct entry *e;

	r->st.messages_in++;
	r->st.bytes_in += len;
	r->st.spans_in += spans;
	/* the oldest waiting payloads make room; the batch in flight stays */
	while (r->head && r->st.queued_bytes + len > r->cfg.max_queue_bytes) {
		struct entry *old = pop(r);

		drop_list(r, old, WS_DROP_QUEUE_FULL);
	}
	e = r->st.queued_bytes + len > r->cfg.max_queue_bytes
		    ? NULL
		    : malloc(sizeof(*e) + len);
	if (!e) {
		/* no room even with the queue empty, or no memory */
		r->st.dropped[WS_DROP_QUEUE_FULL] += spans;
		r->st.dropped_messages[WS_DROP_QUEUE_FULL]++;
		if (r->cfg.release)
			r->cfg.release(r->cfg.ctx, token, WS_DROP_QUEUE_FULL);
		return r->st.queued_bytes + len > r->cfg.max_queue_bytes
			       ? 0
			       : -ENOMEM;
	}
	e->next = NULL;
	e->token = token;
	e->len = len;
	e->spans = spans;
	e->t_ns = now_ns;
	if (len)
		memcpy(e->data, buf, len);
	*r->tailp = e;
	r->tailp = &e->next;
	r->q_bytes += len;
	r->q_spans += spans;
	r->st.queued_bytes += len;
	r->st.queued_messages++;
	if (r->st.queued_bytes > r->st.peak_queued_bytes)
		r->st.peak_queued_bytes = r->st.queued_bytes;
	return 0;
}

static bool batch_due(const struct ws_relay *r, uint64_t now_ns, bool flush)
{
	if (!r->head)
		return false;
	return flush || r->q_bytes >= r->cfg.max_batch_bytes ||
	       r->q_spans >= r->cfg.max_batch_spans ||
	       now_ns - r->head->t_ns >= r->cfg.max_delay_ns;
}

/* Take payloads from the head up to the batch bounds (one at least). */
static bool batch_make(struct ws_relay *r, uint64_t now_ns)
{
	size_t bytes = 0, spans = 0, n = 0, o = 0;
	struct entry *e, **tail = &r->flight;

	for (e = r->head; e; e = e->next) {
		if (n && (bytes + e->len > r->cfg.max_batch_bytes ||
			  spans + e->spans > r->cfg.max_batch_spans))
			break;
		bytes += e->len;
		spans += e->spans;
		n++;
	}
	r->buf = malloc(bytes ? bytes : 1);
	if (!r->buf)
		return false;
	while (n--) {
		e = pop(r);
		memcpy(r->buf + o, e->data, e->len);
		o += e->len;
		*tail = e;
		tail = &e->next;
	}
	r->b.data = r->buf;
	r->b.len = bytes;
	r->b.spans = spans;
	r->b.attempt = 0;
	r->b.messages = 0;
	for (e = r->flight; e; e = e->next)
		r->b.messages++;
	r->first_ns = now_ns;
	return true;
}

bool ws_relay_next(struct ws_relay *r, uint64_t now_ns, bool flush,
		   struct ws_relay_batch *b)
{
	if (r->posting)
		return false;
	if (r->flight) {
		if (now_ns < r->next_ns)
			return false;
		r->b.attempt++;
		r->st.retries++;
	} else if (!batch_due(r, now_ns, flush) || !batch_make(r, now_ns)) {
		return false;
	}
	r->posting = true;
	r->st.posts++;
	*b = r->b;
	return true;
}

uint64_t ws_relay_wake_ns(const struct ws_relay *r, uint64_t now_ns)
{
	if (r->flight)
		return r->next_ns > now_ns ? r->next_ns : now_ns;
	if (batch_due(r, now_ns, false))
		return now_ns; /* full by bytes or spans: at once */
	if (r->head) {
		uint64_t t = r->head->t_ns + r->cfg.max_delay_ns;

		return t > now_ns ? t : now_ns;
	}
	return now_ns + r->cfg.max_delay_ns;
}

enum ws_relay_verdict ws_relay_verdict_of(int status)
{
	if (status >= 200 && status < 300)
		return WS_VERDICT_OK;
	/* 0: no HTTP answer at all (refused, reset, timeout): transient */
	if (status == 0 || status == 429 || status == 502 || status == 503 ||
	    status == 504)
		return WS_VERDICT_RETRY;
	return WS_VERDICT_DROP;
}

int ws_relay_retry_after(const char *value, int64_t now_unix, uint64_t *ns)
{
	uint64_t secs = 0;
	const char *p = value;
	time_t t;

	if (!value)
		return -EINVAL;
	while (*p == ' ')
		p++;
	if (*p >= '0' && *p <= '9') {
		for (; *p >= '0' && *p <= '9'; p++) {
			if (secs > 100000000)
				return -EINVAL;
			secs = secs * 10 + (uint64_t)(*p - '0');
		}
		while (*p == ' ' || *p == '\r' || *p == '\n')
			p++;
		if (*p)
			return -EINVAL;
		*ns = secs * 1000000000ull;
		return 0;
	}
	t = curl_getdate(p, NULL);
	if (t == (time_t)-1)
		return -EINVAL;
	*ns = (int64_t)t > now_unix
		      ? (uint64_t)((int64_t)t - now_unix) * 1000000000ull
		      : 0;
	return 0;
}

uint64_t ws_relay_backoff(uint64_t base_ns, uint64_t max_ns, unsigned attempt,
			  uint32_t rnd)
{
	uint64_t cap = base_ns;
	unsigned i;

	for (i = 1; i < attempt && cap < max_ns; i++)
		cap *= 2;
	if (cap > max_ns)
		cap = max_ns;
	/* full jitter: uniform in [cap/2, cap], never 0 */
	return cap / 2 + (uint64_t)((double)(cap / 2) * (rnd / 4294967296.0));
}

void ws_relay_done(struct ws_relay *r, int status, uint64_t retry_after_ns,
		   uint64_t rejected, uint64_t latency_ns, uint32_t rnd,
		   uint64_t now_ns)
{
	struct entry *e;
	uint64_t delay;

	if (!r->posting)
		return;
	r->posting = false;
	r->st.latency_ns_sum += latency_ns;
	if (latency_ns > r->st.latency_ns_max)
		r->st.latency_ns_max = latency_ns;
	if (status == 0)
		r->st.transport_errors++;
	else if (status >= 200 && status < 300)
		r->st.status_2xx++;
	else if (status >= 400 && status < 500)
		r->st.status_4xx++;
	else if (status >= 500)
		r->st.status_5xx++;

	switch (ws_relay_verdict_of(status)) {
	case WS_VERDICT_OK:
		if (rejected > r->b.spans)
			rejected = r->b.spans;
		r->st.batches_out++;
		r->st.spans_out += r->b.spans - rejected;
		r->st.bytes_out += r->b.len;
		r->st.dropped[WS_DROP_PARTIAL] += rejected;
		for (e = r->flight; e;) {
			struct entry *next = e->next;

			release(r, e, WS_RELAY_DELIVERED);
			e = next;
		}
		flight_end(r);
		return;
	case WS_VERDICT_RETRY:
		if (retry_after_ns != UINT64_MAX) {
			delay = retry_after_ns;
			r->st.retry_after_used++;
		} else {
			delay = ws_relay_backoff(r->cfg.backoff_ns,
						 r->cfg.backoff_max_ns,
						 r->b.attempt + 1, rnd);
		}
		if (now_ns + delay - r->first_ns <= r->cfg.max_elapsed_ns) {
			r->next_ns = now_ns + delay;
			return;
		}
		drop_list(r, r->flight, WS_DROP_RETRIES_EXHAUSTED);
		break;
	case WS_VERDICT_DROP:
		drop_list(r, r->flight, WS_DROP_REJECTED);
		break;
	}
	flight_end(r);
}

void ws_relay_foreach_token(struct ws_relay *r, void (*fn)(void *, void *),
			    void *ctx)
{
	struct entry *e;

	for (e = r->flight; e; e = e->next)
		fn(ctx, e->token);
	for (e = r->head; e; e = e->next)
		fn(ctx, e->token);
}

bool ws_relay_idle(const struct ws_relay *r)
{
	return !r->flight && !r->head;
}

const struct ws_relay_stats *ws_relay_stats(const struct ws_relay *r)
{
	return &r->st;
}
