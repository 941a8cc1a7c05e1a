/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/libbpf.h>
#include <utlist.h>

#include "events.h"
#include "log.h"
#include "caps.h"
#include "health.h"
#include "pipeline.h"

/* How often dead processes' kernel entries are swept. */
#define SWEEP_INTERVAL_NS (5ull * 1000000000ull)
/* ring_buffer__poll timeout: the kernel wakes us only past wakeup_bytes. */
#define POLL_MS 50

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t dump_requested;
static volatile sig_atomic_t reload_requested;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		dump_requested = 1;
	else if (sig == SIGHUP)
		reload_requested = 1;
	else
		stop_requested = 1;
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void ws_addr_text(const uint8_t a[16], uint16_t family, char *out, size_t cap)
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0,    0,
					     0, 0, 0, 0, 0xff, 0xff};

	if (family == WS_AF_INET || !memcmp(a, v4mapped, sizeof(v4mapped)))
		inet_ntop(AF_INET, a + 12, out, (socklen_t)cap);
	else
		inet_ntop(AF_INET6, a, out, (socklen_t)cap);
}

void ws_pipeline_say_ready(const char *cmd, unsigned programs)
{
	fprintf(stderr, "wirespan %s: %u programs attached, ready\n", cmd,
		programs);
	fflush(stderr);
}

void ws_pipeline_opts_init(struct ws_pipeline_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->lo.max_capture = WS_DEFAULT_CAPTURE;
	o->lo.max_records = WS_DEFAULT_RECORDS;
	o->lo.ringbuf_size = WS_DEFAULT_RINGBUF;
	o->metrics_out = stderr;
}

static void sink_data(void *ctx, uint64_t offset, const uint8_t *buf,
		      size_t len)
{
	struct ws_pdir *d = ctx;
	struct ws_pipeline *p = d->pc->p;

	d->captured += len;
	p->m.data_bytes += len;
	if (d->pc->followed)
		p->ops->data(p->ctx, d->pc->c, d->dir, offset, buf, len);
}

static void sink_gap(void *ctx, uint64_t offset, uint64_t len,
		     enum ws_gap_reason reason)
{
	struct ws_pdir *d = ctx;
	struct ws_pipeline *p = d->pc->p;

	d->gap += len;
	p->m.gap_bytes[reason] += len;
	if (d->pc->followed)
		p->ops->gap(p->ctx, d->pc->c, d->dir, offset, len, reason);
}

/* Give a new table entry its sinks and bookkeeping. */
static int conn_setup(struct ws_pipeline *p, struct ws_conn *c)
{
	struct ws_pconn *pc = calloc(1, sizeof(*pc));
	int d;

	if (!pc)
		return -ENOMEM;
	pc->p = p;
	pc->c = c;
	for (d = 0; d < 2; d++) {
		struct ws_stream_sink sink = {
			.ctx = &pc->d[d], .data = sink_data, .gap = sink_gap};

		pc->d[d].pc = pc;
		pc->d[d].dir = d;
		ws_reasm_init(&c->reasm[d], &sink, WS_REASM_DEFAULT_HELD_BYTES,
			      WS_REASM_DEFAULT_HELD_SEGS);
	}
	c->user = pc;
	return 0;
}

/*
 * c leaves: flush both directions up to the kernel's final offsets (or just
 * what is held, when final is NULL) and tell the consumer. The caller removes
 * it from the table.
 */
static void conn_finish(struct ws_pipeline *p, struct ws_conn *c,
			const uint64_t *final, enum ws_close_why why)
{
	struct ws_pconn *pc = c->user;
	int d;

	if (!pc)
		return;
	for (d = 0; d < 2; d++) {
		if (pc->d[d].holding) {
			DL_DELETE2(p->holding, &pc->d[d], hprev, hnext);
			pc->d[d].holding = false;
		}
		p->cur = pc->d[d].last.hdr.type ? &pc->d[d].last : NULL;
		ws_reasm_flush(&c->reasm[d], final ? final[d] : 0);
		p->m.dup_bytes += c->reasm[d].stats.dup_bytes;
	}
	p->cur = NULL;
	if (pc->followed)
		p->ops->close(p->ctx, c, final, why);
	free(pc);
	c->user = NULL;
}

static void evict_cb(struct ws_conn *c, void *ctx)
{
	conn_finish(ctx, c, NULL, WS_CLOSE_EVICTED);
}

/* c's process exited: its sockets closed without close(2). The kernel
 * entry (looked up by its key, deleted) has the final offsets. */
static void exited_cb(struct ws_conn *c, void *ctx)
{
	struct ws_pipeline *p = ctx;
	struct ws_conn_state st;
	uint64_t final[2];

	if (p->ld && !ws_loader_take_conn(p->ld, &c->id, &st)) {
		final[0] = st.offset[0];
		final[1] = st.offset[1];
		conn_finish(p, c, final, WS_CLOSE_EXITED);
		return;
	}
	conn_finish(p, c, NULL, WS_CLOSE_EXITED);
}

static void shutdown_cb(struct ws_conn *c, void *ctx)
{
	conn_finish(ctx, c, NULL, WS_CLOSE_SHUTDOWN);
}

static void handle_open(struct ws_pipeline *p, const struct ws_conn_open *o)
{
	struct ws_conn *c, *old;
	bool created;

	/* The fd was reused and we missed the old connection's close. */
	old = ws_conn_table_find_fd(p->conns, o->id.tgid, o->id.fd);
	if (old && old->id.gen != o->id.gen) {
		p->m.stale_fd_closed++;
		conn_finish(p, old, NULL, WS_CLOSE_EVICTED);
		ws_conn_table_remove(p->conns, old);
	}
	c = ws_conn_table_insert(p->conns, &o->id, &created);
	if (!c || !created)
		return;
	if (conn_setup(p, c)) {
		ws_conn_table_remove(p->conns, c);
		return;
	}
	c->tuple = o->tuple;
	c->cgroup_id = o->cgroup_id;
	c->role = o->role;
	c->flags = o->flags;
	c->open_tid = o->tid;
	memcpy(c->comm, o->comm, sizeof(c->comm));
	c->comm[sizeof(c->comm) - 1] = '\0';
}

static enum ws_gap_reason tail_reason(uint8_t flags)
{
	if (flags & WS_DF_FAULT)
		return WS_GAP_FAULT;
	if (flags & WS_DF_TRUNC_IOV)
		return WS_GAP_IOV;
	return WS_GAP_CAP;
}

static void handle_data(struct ws_pipeline *p, const struct ws_data *d,
			const uint8_t *payload)
{
	struct ws_conn *c = ws_conn_table_lookup(p->conns, &d->id);
	struct ws_pdir *pd;
	struct ws_pconn *pc;

	if (!c) {
		/* Its open record was lost, or it was evicted: follow it
		 * from here, with what we know. */
		bool created;

		p->m.data_without_open++;
		c = ws_conn_table_insert(p->conns, &d->id, &created);
		if (!c)
			return;
		if (created && conn_setup(p, c)) {
			ws_conn_table_remove(p->conns, c);
			return;
		}
		snprintf(c->comm, sizeof(c->comm), "?");
		pc = c->user;
		if (pc)
			pc->d[0].resync = pc->d[1].resync = true;
	}
	pc = c->user;
	if (!pc)
		return;
	p->cur = d;
	if (!c->announced) {
		c->announced = true;
		c->proto = d->proto;
		pc->followed = p->ops->open(p->ctx, c);
		if (!pc->followed && !pc->unfollowed)
			p->m.filtered_proto++;
	}
	if (pc->d[d->dir].resync) {
		/* What moved before this record is not coming: say so now
		 * rather than holding this record until a bound is hit. */
		pc->d[d->dir].resync = false;
		ws_reasm_gap_to(&c->reasm[d->dir], d->offset, WS_GAP_LOST);
	}
	ws_reasm_push(&c->reasm[d->dir], d->offset, payload, d->cap_len,
		      d->syscall_len, tail_reason(d->flags),
		      d->flags & WS_DF_CLASSIFY);
	p->cur = NULL;
	pd = &pc->d[d->dir];
	pd->last = *d;
	if (c->reasm[d->dir].held_segs && !pd->holding) {
		pd->holding = true;
		pd->hold_since = p->round;
		DL_APPEND2(p->holding, pd, hprev, hnext);
	} else if (!c->reasm[d->dir].held_segs && pd->holding) {
		pd->holding = false;
		DL_DELETE2(p->holding, pd, hprev, hnext);
	}
}

static void handle_close(struct ws_pipeline *p, const struct ws_conn_close *e)
{
	struct ws_conn *c = ws_conn_table_lookup(p->conns, &e->id);
	uint64_t final[2] = {e->bytes[0], e->bytes[1]};

	if (!c) {
		p->m.close_without_open++;
		return;
	}
	conn_finish(p, c, final, WS_CLOSE_CLOSED);
	ws_conn_table_remove(p->conns, c);
}

/* A kernel entry of a process that is gone: close it with its offsets. */
static void kernel_entry_gone(const struct ws_conn_state *st, void *ctx)
{
	struct ws_pipeline *p = ctx;
	struct ws_conn *c = ws_conn_table_lookup(p->conns, &st->id);
	uint64_t final[2] = {st->offset[0], st->offset[1]};

	if (!c)
		return;
	p->m.proc_exit_closed++;
	conn_finish(p, c, final, WS_CLOSE_EXITED);
	ws_conn_table_remove(p->conns, c);
}

/*
 * One lookup per connection we follow, not a walk of the whole kernel map per
 * exit: that walk is one bpf(2) call per entry of every process, so 20 000
 * entries (10 000 loopback connections) and 1 000 exits a second would be 20
 * million calls a second. The process's other kernel entries (sockets never
 * classified) go with the next sweep.
 */
static void handle_proc_exit(struct ws_pipeline *p, uint32_t tgid)
{
	p->m.proc_exit_closed +=
		ws_conn_table_remove_tgid(p->conns, tgid, exited_cb, p);
	if (p->ops->proc_exit)
		p->ops->proc_exit(p->ctx, tgid);
}

/*
 * Records of one connection from two CPUs can arrive out of order, but only
 * by microseconds: a hole still open a whole poll round later was lost (ring
 * buffer full). Declare it so, and deliver what waited behind it now rather
 * than when a bound or the close forces it.
 */
static void release_holds(struct ws_pipeline *p)
{
	struct ws_pdir *pd, *tmp;

	DL_FOREACH_SAFE2(p->holding, pd, tmp, hnext)
	{
		if (pd->hold_since + 1 >= p->round)
			continue;
		DL_DELETE2(p->holding, pd, hprev, hnext);
		pd->holding = false;
		p->m.holes_released++;
		p->cur = &pd->last;
		ws_reasm_flush(&pd->pc->c->reasm[pd->dir], 0);
		p->cur = NULL;
	}
}

/*
 * After a burst of connections has gone, hand the freed memory back: glibc
 * keeps it in its arenas otherwise, and 20 000 connection ends (about 10 KiB
 * each with their parsers) left the agent's RSS 190 MiB above its baseline
 * for good (docs/RELIABILITY.md). Only when the table has shrunk to under
 * half of its high mark since the last trim, so steady traffic pays nothing.
 */
static void trim_after_burst(struct ws_pipeline *p)
{
	struct ws_conn_table_stats ct;

	ws_conn_table_stats(p->conns, &ct);
	if (ct.live > p->trim_mark)
		p->trim_mark = ct.live;
	if (p->trim_mark >= WS_TRIM_MIN_CONNS && ct.live * 2 < p->trim_mark) {
		malloc_trim(0);
		p->trim_mark = ct.live;
	}
}

static int on_record(void *ctx, void *data, size_t size)
{
	ws_pipeline_record(ctx, data, size);
	return 0;
}

void ws_pipeline_record(struct ws_pipeline *p, const void *data, size_t size)
{
	enum ws_decode_err err;
	struct ws_event ev;

	p->m.records++;
	err = ws_event_decode(data, size, &ev);
	if (err != WS_DEC_OK) {
		p->m.decode_err[err]++;
		return;
	}
	p->m.by_type[ev.type]++;
	p->rec_ts = ev.hdr->ts_ns;
	switch (ev.type) {
	case WS_EV_CONN_OPEN:
		handle_open(p, ev.open);
		break;
	case WS_EV_DATA:
		handle_data(p, ev.data, ev.payload);
		break;
	case WS_EV_CONN_CLOSE:
		handle_close(p, ev.close);
		break;
	case WS_EV_PROC_EXIT:
		handle_proc_exit(p, ev.exit->tgid);
		break;
	case WS_EV_GO:
		if (p->ops->go)
			p->ops->go(p->ctx, ev.go);
		break;
	}
}

int ws_pipeline_init(struct ws_pipeline *p, const struct ws_pipeline_ops *ops,
		     void *ctx)
{
	memset(p, 0, sizeof(*p));
	p->ops = ops;
	p->ctx = ctx;
	p->mono_to_unix =
		(int64_t)(clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC));
	p->conns = ws_conn_table_new(WS_CONN_TABLE_DEFAULT_MAX, evict_cb, p);
	return p->conns ? 0 : -ENOMEM;
}

void ws_pipeline_round(struct ws_pipeline *p, uint64_t now_ns)
{
	p->round++;
	release_holds(p);
	if (p->ops->tick)
		p->ops->tick(p->ctx, now_ns);
}

void ws_pipeline_unfollow(struct ws_pipeline *p, struct ws_conn *c)
{
	struct ws_pconn *pc = c->user;

	if (!pc || pc->unfollowed)
		return;
	pc->unfollowed = true;
	pc->followed = false;
	p->m.unfollowed++;
	/* Without a kernel (replay) or with its entry gone, the records go on
	 * coming and are dropped here, as for a filtered protocol. */
	if (!p->ld || ws_loader_ignore_conn(p->ld, &c->id))
		p->m.unfollowed_kernel_miss++;
}

void ws_pipeline_fini(struct ws_pipeline *p)
{
	if (!p->conns)
		return;
	ws_conn_table_clear(p->conns, shutdown_cb, p);
	ws_conn_table_free(p->conns);
	p->conns = NULL;
}

static void print_metrics(struct ws_pipeline *p, FILE *f)
{
	uint64_t k[WS_C_MAX] = {0};
	struct ws_conn_table_stats ct;

	struct ws_map_usage maps[WS_LOADER_MAPS];
	size_t n_maps;

	ws_loader_counters(p->ld, k);
	n_maps = ws_loader_map_usage(p->ld, maps, WS_LOADER_MAPS);
	ws_conn_table_stats(p->conns, &ct);
	ws_metrics_print(f, k, maps, n_maps, &p->m, &ct);
}

int ws_pipeline_run(const struct ws_pipeline_opts *o,
		    const struct ws_pipeline_ops *ops, void *ctx)
{
	struct sigaction sa = {.sa_handler = on_signal};
	struct ws_pipeline p;
	struct ring_buffer *rb = NULL;
	struct ws_health *health = NULL;
	uint64_t deadline = 0, next_sweep, now;
	char why[256];
	int err, rc = 0;

	if (ws_caps_check(why, sizeof(why))) {
		fprintf(stderr, "wirespan: %s\n", why);
		return WS_EXIT_NOPERM;
	}
	if (ws_loader_probe(why, sizeof(why))) {
		fprintf(stderr,
			"wirespan: this kernel cannot run the capture: %s\n",
			why);
		return WS_EXIT_UNSUPPORTED;
	}
	if (o->health_addr) {
		health = ws_health_start(
			o->health_addr,
			(uint64_t)((o->health_stall > 0 ? o->health_stall
							: 30) *
				   1e9),
			why, sizeof(why));
		if (!health) {
			fprintf(stderr, "wirespan: %s\n", why);
			return 1;
		}
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	if (ops->reload)
		sigaction(SIGHUP, &sa, NULL);
	if (ws_pipeline_init(&p, ops, ctx)) {
		ws_err("out of memory");
		ws_health_stop(health);
		return 1;
	}
	err = ws_loader_open(&p.ld, &o->lo);
	if (err) {
		fprintf(stderr, "wirespan: could not start the capture: %s\n",
			strerror(-err));
		rc = err == -ENOTSUP ? WS_EXIT_UNSUPPORTED : 1;
		goto out;
	}
	rb = ring_buffer__new(ws_loader_ringbuf_fd(p.ld), on_record, &p, NULL);
	if (!rb) {
		ws_err("ring buffer: %s", strerror(errno));
		rc = 1;
		goto out;
	}
	if (ops->ready)
		ops->ready(ctx, &p, ws_loader_attached(p.ld));
	ws_health_beat(health, clock_ns(CLOCK_MONOTONIC));
	ws_health_set_ready(health, true);
	next_sweep = clock_ns(CLOCK_MONOTONIC) + SWEEP_INTERVAL_NS;
	if (o->duration > 0)
		deadline = clock_ns(CLOCK_MONOTONIC) +
			   (uint64_t)(o->duration * 1e9);
	while (!stop_requested) {
		err = ring_buffer__poll(rb, POLL_MS);
		if (err < 0 && err != -EINTR) {
			ws_err("polling the ring buffer: %s", strerror(-err));
			rc = 1;
			break;
		}
		/* Records submitted without a wakeup wait for us here. */
		ring_buffer__consume(rb);
		now = clock_ns(CLOCK_MONOTONIC);
		ws_health_beat(health, now);
		ws_pipeline_round(&p, now);
		if (dump_requested) {
			dump_requested = 0;
			print_metrics(&p, o->metrics_out);
			if (ops->dump)
				ops->dump(ctx);
		}
		if (reload_requested) {
			reload_requested = 0;
			ops->reload(ctx);
		}
		if (now >= next_sweep) {
			p.m.swept +=
				ws_loader_sweep(p.ld, kernel_entry_gone, &p);
			trim_after_burst(&p);
			next_sweep = now + SWEEP_INTERVAL_NS;
		}
		if (deadline && now >= deadline)
			break;
	}
	ring_buffer__consume(rb);
	print_metrics(&p, o->metrics_out);
out:
	ws_health_stop(health);
	ring_buffer__free(rb);
	ws_loader_close(p.ld);
	p.ld = NULL;
	ws_pipeline_fini(&p);
	return rc;
}
