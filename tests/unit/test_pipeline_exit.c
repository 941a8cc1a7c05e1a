/* SPDX-License-Identifier: Apache-2.0 */
/* A process-exit record in the pipeline (no kernel side, as the replay
 * benchmark drives it): the process's connections are closed first
 * (WS_CLOSE_EXITED), then the consumer's proc_exit hook runs, so that it
 * can forget the process (the agent's identity cache); a process without
 * connections gets the hook too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pipeline.h"

struct seen {
	int opens, closes, exits;
	int closes_at_exit; /* closes seen when the hook ran */
	enum ws_close_why why;
	uint32_t exit_tgid;
};

static bool t_open(void *ctx, struct ws_conn *c)
{
	((struct seen *)ctx)->opens++;
	return true;
}

static void t_data(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		   const uint8_t *buf, size_t len)
{
}

static void t_gap(void *ctx, struct ws_conn *c, uint8_t dir, uint64_t offset,
		  uint64_t len, enum ws_gap_reason reason)
{
}

static void t_close(void *ctx, struct ws_conn *c, const uint64_t *final,
		    enum ws_close_why why)
{
	struct seen *s = ctx;

	s->closes++;
	s->why = why;
}

static void t_exit(void *ctx, uint32_t tgid)
{
	struct seen *s = ctx;

	s->exits++;
	s->closes_at_exit = s->closes;
	s->exit_tgid = tgid;
}

static const struct ws_pipeline_ops ops = {
	.open = t_open,
	.data = t_data,
	.gap = t_gap,
	.close = t_close,
	.proc_exit = t_exit,
};

static void hdr(struct ws_event_hdr *h, uint16_t type, uint32_t size)
{
	h->abi_version = WS_ABI_VERSION;
	h->type = type;
	h->size = size;
	h->ts_ns = 1000;
}

/* An open and one data record for connection (tgid, fd). */
static void conn(struct ws_pipeline *p, uint32_t tgid, int32_t fd)
{
	uint8_t rec[sizeof(struct ws_data) + 4];
	struct ws_conn_open o;
	struct ws_data d;

	memset(&o, 0, sizeof(o));
	hdr(&o.hdr, WS_EV_CONN_OPEN, sizeof(o));
	o.id.tgid = tgid;
	o.id.fd = fd;
	o.id.gen = 7;
	o.role = WS_ROLE_CLIENT;
	ws_pipeline_record(p, &o, sizeof(o));
	memset(&d, 0, sizeof(d));
	hdr(&d.hdr, WS_EV_DATA, sizeof(rec));
	d.id = o.id;
	d.syscall_len = d.cap_len = 4;
	d.dir = WS_DIR_EGRESS;
	d.proto = WS_PROTO_NATS;
	d.flags = WS_DF_CLASSIFY;
	d.syscall = WS_SYS_WRITE;
	memcpy(rec, &d, sizeof(d));
	memcpy(rec + sizeof(d), "PING", 4);
	ws_pipeline_record(p, rec, sizeof(rec));
}

static void exit_rec(struct ws_pipeline *p, uint32_t tgid)
{
	struct ws_proc_exit e;

	memset(&e, 0, sizeof(e));
	hdr(&e.hdr, WS_EV_PROC_EXIT, sizeof(e));
	e.tgid = tgid;
	ws_pipeline_record(p, &e, sizeof(e));
}

static void exit_closes_then_hook(void **state)
{
	struct ws_conn_table_stats ct;
	struct seen s = {0};
	struct ws_pipeline p;

	assert_int_equal(ws_pipeline_init(&p, &ops, &s), 0);
	conn(&p, 100, 3);
	conn(&p, 100, 4);
	conn(&p, 200, 3);
	assert_int_equal(s.opens, 3);
	exit_rec(&p, 100);
	assert_int_equal(s.closes, 2);
	assert_int_equal(s.why, WS_CLOSE_EXITED);
	assert_int_equal(s.exits, 1);
	assert_int_equal(s.closes_at_exit, 2); /* closes first */
	assert_int_equal(s.exit_tgid, 100);
	assert_int_equal(p.m.proc_exit_closed, 2);
	ws_conn_table_stats(p.conns, &ct);
	assert_int_equal(ct.live, 1);
	/* a process with no connection left: the hook still runs */
	exit_rec(&p, 300);
	assert_int_equal(s.exits, 2);
	assert_int_equal(s.exit_tgid, 300);
	assert_int_equal(s.closes, 2);
	ws_pipeline_fini(&p);
	assert_int_equal(s.closes, 3); /* 200's, at shutdown */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exit_closes_then_hook),
	};

	return cmocka_run_group_tests_name("pipeline_exit", tests, NULL, NULL);
}
