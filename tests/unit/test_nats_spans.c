/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NATS span builder, driven with the bytes both ends of real
 * conversations write, exactly as the agent drives it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "nats_spans.h"
#include "wirespan/abi.h"

#define SPAN_OUT_MAX 64

#include "span_out.h"

static struct ws_span *find(struct out *o, const char *name)
{
	int i;

	for (i = 0; i < o->n; i++)
		if (!strcmp(o->s[i]->name, name))
			return o->s[i];
	return NULL;
}

static int count(struct out *o, const char *name)
{
	int i, n = 0;

	for (i = 0; i < o->n; i++)
		n += !strcmp(o->s[i]->name, name);
	return n;
}

struct fixture {
	struct ws_nats_spans *b;
	struct out out;
};

static int setup(void **state)
{
	static struct fixture f;
	struct ws_nats_spans_cfg cfg;

	memset(&f, 0, sizeof(f));
	ws_nats_spans_cfg_init(&cfg);
	cfg.process_timeout_ns = 1000000000;
	cfg.request_timeout_ns = 5000000;
	f.b = ws_nats_spans_new(&cfg, collect, &f.out);
	assert_non_null(f.b);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ws_nats_spans_free(f->b, 0);
	out_free(&f->out);
	return 0;
}

static struct ws_nats_conn *conn(struct fixture *f, uint32_t tgid, uint8_t role,
				 uint16_t port)
{
	struct ws_nats_conn_info in = {.tgid = tgid, .fd = 5, .role = role};

	snprintf(in.laddr, sizeof(in.laddr), "127.0.0.1");
	snprintf(in.raddr, sizeof(in.raddr), "127.0.0.1");
	in.lport = role == WS_ROLE_SERVER ? 4222 : port;
	in.rport = role == WS_ROLE_SERVER ? port : 4222;
	return ws_nats_conn_new(f->b, &in);
}

static void feed(struct ws_nats_conn *c, uint8_t dir, const char *s,
		 uint32_t tid, uint64_t ts)
{
	assert_int_equal(ws_nats_conn_feed(c, dir, (const uint8_t *)s,
					   strlen(s), tid, ts),
			 0);
}

#define INFO(id)                                                           \
	"INFO "                                                            \
	"{\"server_id\":\"SRV\",\"server_name\":\"n1\",\"client_id\":" #id \
	",\"max_payload\":1048576,\"client_ip\":\"127.0.0.1\"}\r\n"

/* A publish gives one PRODUCER span with identity, sizes and fingerprint. */
static void publish_span(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 10, WS_ROLE_CLIENT, 5000);
	struct ws_span *s;

	feed(c, WS_DIR_INGRESS, INFO(7), 10, 100);
	feed(c, WS_DIR_EGRESS,
	     "CONNECT {\"name\":\"app\",\"lang\":\"go\",\"version\":\"1.22\","
	     "\"user\":\"alice\",\"pass\":\"hunter2\"}\r\nPUB orders.new 5\r\n"
	     "hello\r\n",
	     10, 200);
	assert_int_equal(f->out.n, 1);
	s = f->out.s[0];
	assert_string_equal(s->name, "publish orders.new");
	assert_int_equal(s->kind, WS_SPAN_KIND_PRODUCER);
	assert_string_equal(attr_s(s, "messaging.system"), "nats");
	assert_string_equal(attr_s(s, "messaging.destination.name"),
			    "orders.new");
	assert_int_equal(attr_i(s, "messaging.message.body.size"), 5);
	assert_int_equal(attr_i(s, "messaging.client.id"), 7);
	assert_string_equal(attr_s(s, "nats.user"), "alice");
	assert_string_equal(attr_s(s, "nats.client.name"), "app");
	assert_string_equal(attr_s(s, "nats.server.id"), "SRV");
	assert_non_null(attr_s(s, "wirespan.message.fingerprint"));
	assert_int_equal(s->start_ns, 200);
	ws_nats_conn_close(c, 300);
}

/* A process span ends at the thread's next read of the connection. */
static void process_ends_at_next_read(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 10, WS_ROLE_CLIENT, 5000);
	struct ws_span *s;

	feed(c, WS_DIR_INGRESS, INFO(7), 10, 100);
	feed(c, WS_DIR_EGRESS, "CONNECT {}\r\nSUB news q 2\r\n", 10, 150);
	feed(c, WS_DIR_INGRESS, "MSG news 2 5\r\nhello\r\n", 11, 1000);
	assert_int_equal(f->out.n, 0);
	feed(c, WS_DIR_INGRESS, "PING\r\n", 12, 1500); /* another thread */
	assert_int_equal(f->out.n, 0);
	feed(c, WS_DIR_INGRESS, "PING\r\n", 11, 2000);
	/* closed after a grace period, in case a reply record comes late */
	ws_nats_spans_tick(f->b, 2000 + 50000000);
	assert_int_equal(f->out.n, 0);
	ws_nats_spans_tick(f->b, 2000 + 100000000);
	assert_int_equal(f->out.n, 1);
	s = f->out.s[0];
	assert_string_equal(s->name, "process news");
	assert_int_equal(s->kind, WS_SPAN_KIND_CONSUMER);
	assert_int_equal(s->start_ns, 1000);
	assert_int_equal(s->end_ns, 2000);
	assert_string_equal(attr_s(s, "messaging.consumer.group.name"), "q");
	ws_nats_conn_close(c, 3000);
}

/* The same host sees producer, server and consumer: one trace, parents
 * producer <- deliver <- process, with ids the ends derive independently. */
static void broker_hop_links(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *pc = conn(f, 10, WS_ROLE_CLIENT, 5000);
	struct ws_nats_conn *sa = conn(f, 1, WS_ROLE_SERVER, 5000);
	struct ws_nats_conn *sb = conn(f, 1, WS_ROLE_SERVER, 6000);
	struct ws_nats_conn *cc = conn(f, 20, WS_ROLE_CLIENT, 6000);
	struct ws_span *pub, *dlv, *proc;

	/* the server writes INFO on both connections, the clients read it */
	feed(sa, WS_DIR_EGRESS, INFO(1), 2, 10);
	feed(pc, WS_DIR_INGRESS, INFO(1), 10, 11);
	feed(sb, WS_DIR_EGRESS, INFO(2), 2, 12);
	feed(cc, WS_DIR_INGRESS, INFO(2), 20, 13);
	feed(cc, WS_DIR_EGRESS, "CONNECT {}\r\nSUB a.b 1\r\n", 20, 14);
	feed(sb, WS_DIR_INGRESS, "CONNECT {}\r\nSUB a.b 1\r\n", 2, 15);
	feed(pc, WS_DIR_EGRESS, "CONNECT {}\r\nPUB a.b 3\r\nxyz\r\n", 10, 100);
	feed(sa, WS_DIR_INGRESS, "CONNECT {}\r\nPUB a.b 3\r\nxyz\r\n", 2, 110);
	feed(sb, WS_DIR_EGRESS, "MSG a.b 1 3\r\nxyz\r\n", 2, 120);
	feed(cc, WS_DIR_INGRESS, "MSG a.b 1 3\r\nxyz\r\n", 20, 130);
	ws_nats_conn_close(cc, 200);
	pub = find(&f->out, "publish a.b");
	dlv = find(&f->out, "deliver a.b");
	proc = find(&f->out, "process a.b");
	assert_non_null(pub);
	assert_non_null(dlv);
	assert_non_null(proc);
	assert_memory_equal(dlv->parent_span_id, pub->span_id, 8);
	assert_memory_equal(dlv->trace_id, pub->trace_id, 16);
	assert_memory_equal(proc->parent_span_id, dlv->span_id, 8);
	assert_memory_equal(proc->trace_id, pub->trace_id, 16);
	assert_int_equal(dlv->start_ns, 110);
	assert_int_equal(dlv->end_ns, 120);
	assert_string_equal(attr_s(proc, "wirespan.message.fingerprint"),
			    attr_s(pub, "wirespan.message.fingerprint"));
	ws_nats_conn_close(pc, 200);
	ws_nats_conn_close(sa, 200);
	ws_nats_conn_close(sb, 200);
}

/*
 * Two publishers send the same payload at the same moment, and the server
 * reads both PUBs before it writes the first MSG: the subscriber's two
 * deliveries go to the two publishes in the order the server read them,
 * not both to the newest. A heartbeat (the same payload again later)
 * still goes to its own, newest publish.
 */
static void broker_hop_twins(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *p1 = conn(f, 10, WS_ROLE_CLIENT, 5000);
	struct ws_nats_conn *p2 = conn(f, 11, WS_ROLE_CLIENT, 5001);
	struct ws_nats_conn *s1 = conn(f, 1, WS_ROLE_SERVER, 5000);
	struct ws_nats_conn *s2 = conn(f, 1, WS_ROLE_SERVER, 5001);
	struct ws_nats_conn *sb = conn(f, 1, WS_ROLE_SERVER, 6000);
	uint8_t pub1[8], pub2[8], pub3[8];
	const char *pub = "PUB a.b 4\r\ntwin\r\n",
		   *msg = "MSG a.b 1 4\r\ntwin\r\n";

	feed(s1, WS_DIR_EGRESS, INFO(1), 2, 10);
	feed(p1, WS_DIR_INGRESS, INFO(1), 10, 11);
	feed(s2, WS_DIR_EGRESS, INFO(2), 2, 12);
	feed(p2, WS_DIR_INGRESS, INFO(2), 11, 13);
	feed(sb, WS_DIR_EGRESS, INFO(3), 2, 14);
	feed(sb, WS_DIR_INGRESS, "CONNECT {}\r\nSUB a.b 1\r\n", 2, 15);
	feed(p1, WS_DIR_EGRESS, "CONNECT {}\r\n", 10, 20);
	feed(s1, WS_DIR_INGRESS, "CONNECT {}\r\n", 2, 21);
	feed(p2, WS_DIR_EGRESS, "CONNECT {}\r\n", 11, 22);
	feed(s2, WS_DIR_INGRESS, "CONNECT {}\r\n", 2, 23);
	feed(p1, WS_DIR_EGRESS, pub, 10, 100);
	feed(p2, WS_DIR_EGRESS, pub, 11, 101);
	assert_int_equal(f->out.n, 2);
	memcpy(pub1, f->out.s[0]->span_id, 8);
	memcpy(pub2, f->out.s[1]->span_id, 8);
	out_free(&f->out);
	feed(s1, WS_DIR_INGRESS, pub, 2, 110);
	feed(s2, WS_DIR_INGRESS, pub, 2, 111);
	feed(sb, WS_DIR_EGRESS, msg, 2, 120);
	feed(sb, WS_DIR_EGRESS, msg, 2, 121);
	assert_int_equal(f->out.n, 2);
	assert_memory_equal(f->out.s[0]->parent_span_id, pub1, 8);
	assert_memory_equal(f->out.s[1]->parent_span_id, pub2, 8);
	out_free(&f->out);
	/* one second later: the same payload once more */
	feed(p1, WS_DIR_EGRESS, pub, 10, 1000000100);
	assert_int_equal(f->out.n, 1);
	memcpy(pub3, f->out.s[0]->span_id, 8);
	out_free(&f->out);
	feed(s1, WS_DIR_INGRESS, pub, 2, 1000000110);
	feed(sb, WS_DIR_EGRESS, msg, 2, 1000000120);
	assert_int_equal(f->out.n, 1);
	assert_memory_equal(f->out.s[0]->parent_span_id, pub3, 8);
	out_free(&f->out);
	ws_nats_conn_close(p1, 2000000000);
	ws_nats_conn_close(p2, 2000000000);
	ws_nats_conn_close(s1, 2000000000);
	ws_nats_conn_close(s2, 2000000000);
	ws_nats_conn_close(sb, 2000000000);
}

/*
 * Thousands of messages in flight at once: the rings that remember
 * publishes for links grow (from 1024 entries) instead of forgetting, and
 * every deliver still finds its publish, before and after a growth (also
 * of a wrapped ring); once the old entries are past their time, they are
 * reused, not counted as evicted.
 */
static void broker_hop_links_many(void **state)
{
	enum { N = 5000 };
	struct fixture *f = *state;
	struct ws_nats_conn *pc = conn(f, 10, WS_ROLE_CLIENT, 5000);
	struct ws_nats_conn *sa = conn(f, 1, WS_ROLE_SERVER, 5000);
	struct ws_nats_conn *sb = conn(f, 1, WS_ROLE_SERVER, 6000);
	static uint8_t pub_ids[N][8];
	uint64_t ts = 100, round_ts;
	char line[64];
	int i, round;

	feed(sa, WS_DIR_EGRESS, INFO(1), 2, 10);
	feed(pc, WS_DIR_INGRESS, INFO(1), 10, 11);
	feed(sb, WS_DIR_EGRESS, INFO(2), 2, 12);
	feed(sb, WS_DIR_INGRESS, "CONNECT {}\r\nSUB a.b 1\r\n", 2, 15);
	feed(pc, WS_DIR_EGRESS, "CONNECT {}\r\n", 10, 20);
	feed(sa, WS_DIR_INGRESS, "CONNECT {}\r\n", 2, 21);
	for (round = 0; round < 3; round++) {
		/* The second round comes after the first's entries expired:
		 * it reuses them. The third comes at once, so the ring, now
		 * wrapped, meets the second's fresh entries and grows with
		 * its oldest entry in the middle. */
		round_ts = ts + (round == 1 ? 61ull * 1000000000ull : 0);
		for (i = 0; i < N; i++) {
			ts = round_ts + 10 * (uint64_t)i;
			snprintf(line, sizeof(line), "PUB a.b 6\r\nm%05d\r\n",
				 i);
			feed(pc, WS_DIR_EGRESS, line, 10, ts);
			feed(sa, WS_DIR_INGRESS, line, 2, ts + 1);
			assert_int_equal(f->out.n, 1);
			assert_string_equal(f->out.s[0]->name, "publish a.b");
			memcpy(pub_ids[i], f->out.s[0]->span_id, 8);
			out_free(&f->out);
		}
		for (i = 0; i < N; i++) {
			snprintf(line, sizeof(line), "MSG a.b 1 6\r\nm%05d\r\n",
				 i);
			feed(sb, WS_DIR_EGRESS, line, 2, ts + 2 + (uint64_t)i);
			assert_int_equal(f->out.n, 1);
			assert_string_equal(f->out.s[0]->name, "deliver a.b");
			assert_memory_equal(f->out.s[0]->parent_span_id,
					    pub_ids[i], 8);
			out_free(&f->out);
		}
		assert_int_equal(ws_nats_spans_stats(f->b)->recent_evicted, 0);
		ts += 2 + N;
	}
	ws_nats_conn_close(pc, ts);
	ws_nats_conn_close(sa, ts);
	ws_nats_conn_close(sb, ts);
}

/* Muxed request-reply: CLIENT send span from request to reply; the
 * responder's process span ends at its reply and is the child of the
 * requester's span. */
static void request_reply(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *req = conn(f, 10, WS_ROLE_CLIENT, 5000);
	struct ws_nats_conn *rsp = conn(f, 20, WS_ROLE_CLIENT, 6000);
	struct ws_span *send, *proc;

	feed(req, WS_DIR_EGRESS,
	     "CONNECT {}\r\nSUB _INBOX.Nx.* 1\r\nPUB svc.time _INBOX.Nx.7 0\r\n"
	     "\r\n",
	     10, 100);
	feed(rsp, WS_DIR_EGRESS, "CONNECT {}\r\nSUB svc.time 4\r\n", 20, 50);
	feed(rsp, WS_DIR_INGRESS, "MSG svc.time 4 _INBOX.Nx.7 0\r\n\r\n", 21,
	     110);
	feed(rsp, WS_DIR_EGRESS, "PUB _INBOX.Nx.7 2\r\nok\r\n", 21, 150);
	assert_int_equal(f->out.n, 1);
	feed(req, WS_DIR_INGRESS, "MSG _INBOX.Nx.7 1 2\r\nok\r\n", 10, 160);
	assert_int_equal(f->out.n, 2);
	send = find(&f->out, "send svc.time");
	proc = find(&f->out, "process svc.time");
	assert_non_null(send);
	assert_non_null(proc);
	assert_int_equal(send->kind, WS_SPAN_KIND_CLIENT);
	assert_int_equal(send->start_ns, 100);
	assert_int_equal(send->end_ns, 160);
	assert_int_equal(proc->end_ns, 150);
	assert_memory_equal(proc->parent_span_id, send->span_id, 8);
	assert_memory_equal(proc->trace_id, send->trace_id, 16);
	assert_int_equal(send->status, WS_STATUS_UNSET);
	/* the reply did not make spans of its own */
	assert_int_equal(count(&f->out, "publish _INBOX.*"), 0);
	assert_int_equal(count(&f->out, "process _INBOX.*"), 0);
	ws_nats_conn_close(req, 200);
	ws_nats_conn_close(rsp, 200);
}

/* The responder and nats-server on different hosts (two builders): the
 * server host's deliver span of the reply names the reply PUB's derived id
 * as its parent, and the responder's process span, which the reply ends,
 * carries that id as wirespan.nats.reply_id (the relay maps one to the
 * other). */
static void reply_id_across_hosts(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_spans_cfg cfg;
	struct out srv_out = {0};
	struct ws_nats_spans *srv;
	struct ws_nats_conn *rsp, *sa, *sb;
	struct ws_span *proc = NULL, *dlv = NULL;
	uint8_t id[8];
	const char *hex;
	int i;

	ws_nats_spans_cfg_init(&cfg);
	srv = ws_nats_spans_new(&cfg, collect, &srv_out);
	assert_non_null(srv);
	rsp = conn(f, 20, WS_ROLE_CLIENT, 6000);
	{
		struct ws_nats_conn_info in = {.tgid = 1,
					       .fd = 7,
					       .role = WS_ROLE_SERVER,
					       .lport = 4222};

		snprintf(in.laddr, sizeof(in.laddr), "10.0.0.1");
		snprintf(in.raddr, sizeof(in.raddr), "10.0.0.2");
		in.rport = 5000;
		sa = ws_nats_conn_new(srv, &in); /* the requester's */
		in.fd = 8;
		in.rport = 6000;
		sb = ws_nats_conn_new(srv, &in); /* the responder's */
	}
	feed(sa, WS_DIR_EGRESS, INFO(1), 2, 10);
	feed(sb, WS_DIR_EGRESS, INFO(2), 2, 11);
	feed(rsp, WS_DIR_INGRESS, INFO(2), 20, 12);
	feed(rsp, WS_DIR_EGRESS, "CONNECT {}\r\nSUB svc.time 4\r\n", 20, 13);
	feed(sb, WS_DIR_INGRESS, "CONNECT {}\r\nSUB svc.time 4\r\n", 2, 14);
	feed(sa, WS_DIR_INGRESS,
	     "CONNECT {}\r\nSUB _INBOX.Nx.* 1\r\nPUB svc.time _INBOX.Nx.7 0\r\n"
	     "\r\n",
	     2, 100);
	feed(sb, WS_DIR_EGRESS, "MSG svc.time 4 _INBOX.Nx.7 0\r\n\r\n", 2, 105);
	feed(rsp, WS_DIR_INGRESS, "MSG svc.time 4 _INBOX.Nx.7 0\r\n\r\n", 21,
	     110);
	feed(rsp, WS_DIR_EGRESS, "PUB _INBOX.Nx.7 2\r\nok\r\n", 21, 150);
	feed(sb, WS_DIR_INGRESS, "PUB _INBOX.Nx.7 2\r\nok\r\n", 2, 155);
	feed(sa, WS_DIR_EGRESS, "MSG _INBOX.Nx.7 1 2\r\nok\r\n", 2, 158);
	proc = find(&f->out, "process svc.time");
	for (i = 0; i < srv_out.n; i++)
		if (!strncmp(srv_out.s[i]->name, "deliver _INBOX", 14))
			dlv = srv_out.s[i];
	assert_non_null(proc);
	assert_non_null(dlv);
	hex = attr_s(proc, "wirespan.nats.reply_id");
	assert_non_null(hex);
	assert_int_equal(ws_id_parse(hex, strlen(hex), id, 8), 0);
	assert_true(dlv->has_parent);
	assert_memory_equal(dlv->parent_span_id, id, 8);
	/* and the reply's id is not the process span's own */
	assert_memory_not_equal(proc->span_id, id, 8);
	ws_nats_conn_close(rsp, 200);
	ws_nats_conn_close(sa, 200);
	ws_nats_conn_close(sb, 200);
	ws_nats_spans_free(srv, 0);
	out_free(&srv_out);
}

/* No responders: a 503 status reply fails the request. */
static void no_responders(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 10, WS_ROLE_CLIENT, 5000);
	struct ws_span *s;

	feed(c, WS_DIR_EGRESS,
	     "CONNECT {}\r\nSUB _INBOX.a.* 1\r\nPUB nobody _INBOX.a.1 "
	     "0\r\n\r\n",
	     10, 100);
	feed(c, WS_DIR_INGRESS,
	     "HMSG _INBOX.a.1 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n", 10, 120);
	assert_int_equal(f->out.n, 1);
	s = f->out.s[0];
	assert_string_equal(s->name, "send nobody");
	assert_int_equal(s->status, WS_STATUS_ERROR);
	assert_string_equal(attr_s(s, "error.type"), "no_responders");
	ws_nats_conn_close(c, 200);
}

/* A request with no reply times out with an error. */
static void request_timeout(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 10, WS_ROLE_CLIENT, 5000);

	feed(c, WS_DIR_EGRESS,
	     "CONNECT {}\r\nSUB _INBOX.old 1\r\nPUB slow _INBOX.old 0\r\n\r\n",
	     10, 100);
	ws_nats_spans_tick(f->b, 100 + 4000000);
	assert_int_equal(f->out.n, 0);
	ws_nats_spans_tick(f->b, 100 + 5000000);
	assert_int_equal(f->out.n, 1);
	assert_string_equal(attr_s(f->out.s[0], "error.type"), "timeout");
	ws_nats_conn_close(c, 200);
}

/* traceparent in HPUB/HMSG: trace id and parent come from it. */
static void traceparent_honoured(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 10, WS_ROLE_CLIENT, 5000);
	static const char hpub[] =
		"CONNECT {}\r\nHPUB t 82 84\r\nNATS/1.0\r\ntraceparent: "
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
		"\r\nhi\r\n";
	char hex[33];
	struct ws_span *s;

	feed(c, WS_DIR_EGRESS, hpub, 10, 100);
	assert_int_equal(f->out.n, 1);
	s = f->out.s[0];
	ws_id_hex(s->trace_id, 16, hex);
	assert_string_equal(hex, "0af7651916cd43dd8448eb211c80319c");
	assert_true(s->has_parent);
	ws_id_hex(s->parent_span_id, 8, hex);
	assert_string_equal(hex, "b7ad6b7169203331");
	ws_nats_conn_close(c, 200);
}

/* A thread inside a process span publishes: the publish is its child. */
static void in_process_causality(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 10, WS_ROLE_CLIENT, 5000);
	struct ws_span *proc, *pub;

	feed(c, WS_DIR_EGRESS, "CONNECT {}\r\nSUB in 1\r\n", 10, 50);
	feed(c, WS_DIR_INGRESS, "MSG in 1 1\r\nx\r\n", 10, 100);
	feed(c, WS_DIR_EGRESS, "PUB out 1\r\ny\r\n", 10, 150);
	feed(c, WS_DIR_INGRESS, "PING\r\n", 10, 300);
	/* after the read, the thread is no longer inside it */
	feed(c, WS_DIR_EGRESS, "PUB later 1\r\nz\r\n", 10, 350);
	ws_nats_spans_tick(f->b, 300 + 100000000);
	proc = find(&f->out, "process in");
	assert_false(find(&f->out, "publish later")->has_parent);
	pub = find(&f->out, "publish out");
	assert_non_null(proc);
	assert_non_null(pub);
	assert_memory_equal(pub->parent_span_id, proc->span_id, 8);
	assert_memory_equal(pub->trace_id, proc->trace_id, 16);
	ws_nats_conn_close(c, 400);
}

/* A Go responder: the reader thread reads the request, the handler's
 * publish and its reply are written together by another thread (nats.go's
 * flusher). With one request served on the connection, the publish is its
 * child (marked as such); with two, nothing says which. */
static void sole_request_served(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 20, WS_ROLE_CLIENT, 6000);
	struct ws_span *proc, *pub;

	feed(c, WS_DIR_EGRESS, "CONNECT {}\r\nSUB svc q 4\r\n", 20, 50);
	feed(c, WS_DIR_INGRESS, "MSG svc 4 _INBOX.A.1 1\r\nx\r\n", 21, 100);
	feed(c, WS_DIR_INGRESS, "PING\r\n", 21, 120); /* reader reads on */
	feed(c, WS_DIR_EGRESS, "PUB ev 1\r\ny\r\nPUB _INBOX.A.1 2\r\nok\r\n",
	     22, 150);
	proc = find(&f->out, "process svc");
	pub = find(&f->out, "publish ev");
	assert_non_null(proc);
	assert_non_null(pub);
	assert_true(pub->has_parent);
	assert_memory_equal(pub->parent_span_id, proc->span_id, 8);
	assert_memory_equal(pub->trace_id, proc->trace_id, 16);
	assert_string_equal(attr_s(pub, "wirespan.link.evidence"),
			    "sole_request");

	/* two requests in progress: the publish stays a root */
	feed(c, WS_DIR_INGRESS,
	     "MSG svc 4 _INBOX.A.2 1\r\nx\r\nMSG svc 4 _INBOX.A.3 1\r\nz\r\n",
	     21, 200);
	feed(c, WS_DIR_EGRESS, "PUB ev2 1\r\ny\r\n", 23, 250);
	pub = find(&f->out, "publish ev2");
	assert_non_null(pub);
	assert_false(pub->has_parent);
	assert_null(attr_s(pub, "wirespan.link.evidence"));
	/* one replied: the other is the sole one again */
	feed(c, WS_DIR_EGRESS, "PUB _INBOX.A.2 2\r\nok\r\nPUB ev3 1\r\ny\r\n",
	     23, 300);
	pub = find(&f->out, "publish ev3");
	assert_non_null(pub);
	assert_true(pub->has_parent);
	ws_nats_conn_close(c, 400);
	assert_int_equal(count(&f->out, "process svc"), 3);
}

/* JetStream: publish answered by a PubAck, a pull, deliveries with ack
 * metadata (one redelivered), and settle spans linked to them. */
static void jetstream(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 10, WS_ROLE_CLIENT, 5000);
	struct ws_span *s, *pull, *d1, *ack;

	feed(c, WS_DIR_EGRESS,
	     "CONNECT {}\r\nSUB _INBOX.j.* 1\r\nPUB ORDERS.new _INBOX.j.1 "
	     "1\r\nA\r\n",
	     10, 100);
	feed(c, WS_DIR_INGRESS,
	     "MSG _INBOX.j.1 1 44\r\n"
	     "{\"stream\":\"ORDERS\",\"seq\":7,\"duplicate\":true}\r\n",
	     10, 110);
	s = find(&f->out, "publish ORDERS.new");
	assert_non_null(s);
	assert_int_equal(s->kind, WS_SPAN_KIND_PRODUCER);
	assert_string_equal(attr_s(s, "nats.jetstream.stream"), "ORDERS");
	assert_int_equal(attr_i(s, "nats.jetstream.sequence.stream"), 7);
	assert_non_null(ws_attrs_get(&s->a, "nats.jetstream.duplicate"));

	feed(c, WS_DIR_EGRESS,
	     "SUB _INBOX.p 2\r\nPUB $JS.API.CONSUMER.MSG.NEXT.ORDERS.worker "
	     "_INBOX.p 11\r\n{\"batch\":2}\r\n",
	     10, 200);
	feed(c, WS_DIR_INGRESS,
	     "MSG ORDERS.new 2 $JS.ACK.ORDERS.worker.1.7.1.1700000000.0 1\r\nA"
	     "\r\nMSG ORDERS.new 2 $JS.ACK.ORDERS.worker.2.7.2.1700000001.0 "
	     "1\r\nA\r\n",
	     10, 210);
	pull = find(&f->out, "receive ORDERS");
	assert_non_null(pull);
	assert_int_equal(pull->end_ns, 210);
	feed(c, WS_DIR_EGRESS,
	     "PUB $JS.ACK.ORDERS.worker.1.7.1.1700000000.0 4\r\n+ACK\r\n"
	     "PUB $JS.ACK.ORDERS.worker.2.7.2.1700000001.0 4\r\n-NAK\r\n",
	     10, 220);
	assert_int_equal(count(&f->out, "process ORDERS.new"), 2);
	d1 = find(&f->out, "process ORDERS.new");
	assert_memory_equal(d1->parent_span_id, pull->span_id, 8);
	assert_int_equal(attr_i(d1, "messaging.message.delivery_count"), 1);
	assert_int_equal(attr_i(d1, "nats.jetstream.sequence.stream"), 7);
	ack = find(&f->out, "ack ORDERS");
	assert_non_null(ack);
	assert_int_equal(ack->n_links, 1);
	assert_memory_equal(ack->links[0].span_id, d1->span_id, 8);
	assert_non_null(find(&f->out, "nak ORDERS"));
	s = f->out.s[f->out.n - 1];
	assert_string_equal(s->name, "nak ORDERS");
	ws_nats_conn_close(c, 400);
}

/* Secrets never reach a span, and JWT claims are decoded. */
static void secrets_and_jwt(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 10, WS_ROLE_CLIENT, 5000);
	/* header.{"sub":"UABC","name":"svc-a","iss":"AACC",
	 *         "nats":{"issuer_account":"AACCOUNT"}}.sig */
	static const char connect[] =
		"CONNECT {\"user\":\"u\",\"pass\":\"PASSWORD1\",\"auth_token\":"
		"\"TOKEN1\",\"sig\":\"SIG1\",\"nkey\":\"UPUBLIC\",\"jwt\":"
		"\"eyJ0"
		"eXAiOiJKV1QifQ.eyJzdWIiOiJVQUJDIiwibmFtZSI6InN2Yy1hIiwiaXNzIjo"
		"iQUFDQyIsIm5hdHMiOnsiaXNzdWVyX2FjY291bnQiOiJBQUNDT1VOVCJ9fQ."
		"SIG"
		"PART\"}\r\nPUB x 1\r\ny\r\n";
	struct ws_span *s;
	int i;

	feed(c, WS_DIR_EGRESS, connect, 10, 100);
	assert_int_equal(f->out.n, 1);
	s = f->out.s[0];
	assert_string_equal(attr_s(s, "nats.nkey"), "UPUBLIC");
	assert_string_equal(attr_s(s, "nats.jwt.sub"), "UABC");
	assert_string_equal(attr_s(s, "nats.jwt.name"), "svc-a");
	assert_string_equal(attr_s(s, "nats.account"), "AACCOUNT");
	for (i = 0; i < s->a.n; i++) {
		if (s->a.v[i].type != WS_ATTR_STR)
			continue;
		assert_null(strstr(s->a.v[i].s, "PASSWORD1"));
		assert_null(strstr(s->a.v[i].s, "TOKEN1"));
		assert_null(strstr(s->a.v[i].s, "SIG1"));
		assert_null(strstr(s->a.v[i].s, "eyJ"));
	}
	ws_nats_conn_close(c, 200);
}

/* A second CONNECT replaces the identity of the first (and leaks nothing:
 * valgrind runs this suite). */
static void second_connect_replaces(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 10, WS_ROLE_CLIENT, 5000);

	feed(c, WS_DIR_EGRESS,
	     "CONNECT {\"user\":\"a\",\"name\":\"n1\"}\r\n"
	     "CONNECT {\"user\":\"b\"}\r\nPUB x 1\r\ny\r\n",
	     10, 100);
	assert_int_equal(f->out.n, 1);
	assert_string_equal(attr_s(f->out.s[0], "nats.user"), "b");
	assert_null(attr_s(f->out.s[0], "nats.client.name"));
	ws_nats_conn_close(c, 200);
}

/* Bad bytes: counted, no span, and the stream goes on. */
static void garbage_then_publish(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 10, WS_ROLE_CLIENT, 5000);

	feed(c, WS_DIR_EGRESS,
	     "CONNECT {}\r\nBOGUS 1 2 3\r\nPUB x 999999999\r\n", 10, 100);
	feed(c, WS_DIR_EGRESS, "PUB y 1\r\nz\r\n", 10, 110);
	assert_int_equal(count(&f->out, "publish y"), 1);
	assert_true(ws_nats_spans_stats(f->b)->parse_errors >= 1);
	ws_nats_conn_close(c, 200);
}

/* Span names: "<op> <subject>", inboxes templated, subjects cut to 511
 * bytes as the name is built. */
static void span_names(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 10, WS_ROLE_CLIENT, 5000);
	char line[800], want[600];
	struct ws_span *s;

	feed(c, WS_DIR_INGRESS, INFO(7), 11, 1000);
	feed(c, WS_DIR_EGRESS, "PUB a.b 2\r\nhi\r\n", 11, 2000);
	feed(c, WS_DIR_EGRESS, "PUB _INBOX.x.y 2\r\nhi\r\n", 11, 3000);
	memset(want, 0, sizeof(want));
	memcpy(want, "publish ", 8);
	memset(want + 8, 's', 511);
	memcpy(line, "PUB ", 4);
	memset(line + 4, 's', 600);
	memcpy(line + 604, " 2\r\nhi\r\n", 8);
	line[612] = '\0';
	feed(c, WS_DIR_EGRESS, line, 11, 4000);
	assert_int_equal(f->out.n, 3);
	assert_string_equal(f->out.s[0]->name, "publish a.b");
	assert_string_equal(f->out.s[1]->name, "publish _INBOX.*");
	s = f->out.s[2];
	assert_string_equal(s->name, want);
	/* the attribute keeps the whole subject */
	assert_int_equal(strlen(attr_s(s, "messaging.destination.name")), 600);
	ws_nats_conn_close(c, 5000);
}

/* A connection's address and identity attributes follow INFO and CONNECT
 * as they come: spans before and after a second INFO/CONNECT differ. */
static void identity_changes(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn *c = conn(f, 10, WS_ROLE_CLIENT, 5000);

	feed(c, WS_DIR_EGRESS, "PUB a 1\r\nx\r\n", 11, 100);
	feed(c, WS_DIR_INGRESS, INFO(7), 11, 200);
	feed(c, WS_DIR_EGRESS,
	     "CONNECT {\"name\":\"one\",\"user\":\"u1\"}\r\nPUB a 1\r\nx\r\n",
	     11, 300);
	feed(c, WS_DIR_INGRESS,
	     "INFO {\"server_id\":\"S2\",\"server_name\":\"n2\","
	     "\"client_id\":9}\r\n",
	     11, 400);
	feed(c, WS_DIR_EGRESS, "CONNECT {\"name\":\"two\"}\r\nPUB a 1\r\nx\r\n",
	     11, 500);
	assert_int_equal(f->out.n, 3);
	assert_null(attr_s(f->out.s[0], "nats.server.name"));
	assert_int_equal(attr_i(f->out.s[0], "messaging.client.id"), -1);
	assert_string_equal(attr_s(f->out.s[0], "server.address"), "127.0.0.1");
	assert_string_equal(attr_s(f->out.s[1], "nats.server.name"), "n1");
	assert_string_equal(attr_s(f->out.s[1], "nats.client.name"), "one");
	assert_string_equal(attr_s(f->out.s[1], "nats.user"), "u1");
	assert_int_equal(attr_i(f->out.s[1], "messaging.client.id"), 7);
	assert_string_equal(attr_s(f->out.s[2], "nats.server.name"), "n2");
	assert_string_equal(attr_s(f->out.s[2], "nats.server.id"), "S2");
	assert_null(attr_s(f->out.s[2], "nats.client.ip"));
	assert_string_equal(attr_s(f->out.s[2], "nats.client.name"), "two");
	assert_null(attr_s(f->out.s[2], "nats.user"));
	assert_int_equal(attr_i(f->out.s[2], "messaging.client.id"), 9);
	assert_int_equal(attr_i(f->out.s[2], "server.port"), 4222);
	ws_nats_conn_close(c, 600);
}

/* The fingerprint is XXH3-64 of subject, a NUL, the payload size (8 bytes)
 * and at most the first 1024 payload bytes, short or long: the value
 * ws_nats_fingerprint gives, whichever way it hashes. */
static void fingerprint_value(void **state)
{
	static const size_t subj_lens[] = {0, 5, 600, 1014, 1015, 3000};
	static const uint64_t sizes[] = {0, 1, 128, 1024, 1025, 70000};
	static char subj[3000];
	static uint8_t payload[1100];
	size_t i, j, k;
	bool ok;

	for (k = 0; k < sizeof(subj); k++)
		subj[k] = (char)('a' + k % 26);
	for (k = 0; k < sizeof(payload); k++)
		payload[k] = (uint8_t)(k * 7);
	for (i = 0; i < sizeof(subj_lens) / sizeof(subj_lens[0]); i++) {
		for (j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
			uint64_t size = sizes[j];
			size_t want = size < 1024 ? size : 1024;
			XXH3_state_t *st = XXH3_createState();
			uint8_t zero = 0;
			uint64_t want_fp, fp;

			assert_non_null(st);
			XXH3_64bits_reset(st);
			XXH3_64bits_update(st, subj, subj_lens[i]);
			XXH3_64bits_update(st, &zero, 1);
			XXH3_64bits_update(st, &size, 8);
			XXH3_64bits_update(st, payload, want);
			want_fp = XXH3_64bits_digest(st);
			XXH3_freeState(st);
			fp = ws_nats_fingerprint(subj, subj_lens[i], size,
						 payload, want, &ok);
			assert_true(ok);
			assert_int_equal(fp, want_fp);
			if (want) { /* the bytes hashed are not all there */
				ws_nats_fingerprint(subj, subj_lens[i], size,
						    payload, want - 1, &ok);
				assert_false(ok);
			}
		}
	}
}

/* A connection's peer attributes follow its peer resource as it changes
 * (a peer learnt after the connection opened), after the connection's
 * shared ones, and a peer key that is also a shared one replaces it in
 * place, as copying the two in turn does. */
static void peer_attrs_follow_the_peer(void **state)
{
	struct fixture *f = *state;
	struct ws_nats_conn_info in = {
		.tgid = 10, .fd = 5, .role = WS_ROLE_CLIENT};
	struct ws_resource *peer = ws_resource_new(0);
	struct ws_nats_conn *c;
	const struct ws_span *s;
	uint16_t i, port_at = 0, svc_at = 0;

	assert_non_null(peer);
	snprintf(in.laddr, sizeof(in.laddr), "127.0.0.1");
	snprintf(in.raddr, sizeof(in.raddr), "127.0.0.1");
	in.lport = 5000;
	in.rport = 4222;
	in.peer = peer;
	c = ws_nats_conn_new(f->b, &in);
	assert_non_null(c);
	feed(c, WS_DIR_INGRESS, INFO(7), 10, 100);
	feed(c, WS_DIR_EGRESS, "CONNECT {}\r\nPUB a 1\r\nx\r\n", 10, 200);
	assert_int_equal(f->out.n, 1);
	assert_null(attr_s(f->out.s[0], "peer.service"));

	assert_int_equal(ws_attrs_cstr(&peer->a, "peer.service", "one"), 0);
	feed(c, WS_DIR_EGRESS, "PUB a 1\r\ny\r\n", 10, 300);
	assert_int_equal(f->out.n, 2);
	assert_string_equal(attr_s(f->out.s[1], "peer.service"), "one");

	assert_int_equal(ws_attrs_cstr(&peer->a, "peer.service", "two"), 0);
	assert_int_equal(ws_attrs_int(&peer->a, "server.port", 9), 0);
	feed(c, WS_DIR_EGRESS, "PUB a 1\r\nz\r\n", 10, 400);
	assert_int_equal(f->out.n, 3);
	s = f->out.s[2];
	assert_string_equal(attr_s(s, "peer.service"), "two");
	assert_int_equal(attr_i(s, "server.port"), 9);
	for (i = 0; i < s->a.n; i++) {
		if (!strcmp(s->a.v[i].key, "server.port"))
			port_at = i;
		if (!strcmp(s->a.v[i].key, "peer.service"))
			svc_at = i;
	}
	/* server.port where the shared attributes put it, peer.service
	 * after them, thread.id after that */
	assert_true(port_at > 0 && port_at < svc_at);
	assert_string_equal(s->a.v[port_at - 1].key, "server.address");
	assert_string_equal(s->a.v[svc_at + 1].key, "thread.id");
	ws_nats_conn_close(c, 500);
	ws_resource_put(peer);
}

/*
 * Many identical PUBs, read by the server while two subscribers get MSGs
 * of them in a random interleaving (the rings growing meanwhile): every
 * delivery goes to the PUB the documented rule names, checked against a
 * model of it: the oldest of the twins read so far (all within the twin
 * window here) that this subscriber has not been given, else the newest;
 * one mark per PUB, so a PUB given to the other subscriber since counts
 * as not given.
 */
static void twins_two_subscribers(void **state)
{
	enum { N = 3000 };
	struct fixture *f = *state;
	struct ws_nats_conn *pc = conn(f, 10, WS_ROLE_CLIENT, 5000);
	struct ws_nats_conn *sa = conn(f, 1, WS_ROLE_SERVER, 5000);
	struct ws_nats_conn *sub[2] = {conn(f, 1, WS_ROLE_SERVER, 6000),
				       conn(f, 1, WS_ROLE_SERVER, 6001)};
	static uint8_t pub_ids[N][8];
	static int taken[N];
	const char *pub = "PUB a.b 4\r\ntwin\r\n",
		   *msg = "MSG a.b 1 4\r\ntwin\r\n";
	uint64_t ts = 100, seed = 0x2545f4914f6cdd1dull;
	int i, read = 0, k, pick, who, deliveries = 0;

	feed(sa, WS_DIR_EGRESS, INFO(1), 2, 10);
	feed(pc, WS_DIR_INGRESS, INFO(1), 10, 11);
	for (k = 0; k < 2; k++) {
		feed(sub[k], WS_DIR_EGRESS, k ? INFO(3) : INFO(2), 2, 12);
		feed(sub[k], WS_DIR_INGRESS, "CONNECT {}\r\nSUB a.b 1\r\n", 2,
		     15);
	}
	feed(pc, WS_DIR_EGRESS, "CONNECT {}\r\n", 10, 20);
	feed(sa, WS_DIR_INGRESS, "CONNECT {}\r\n", 2, 21);
	for (i = 0; i < N; i++) {
		feed(pc, WS_DIR_EGRESS, pub, 10, ts++);
		assert_int_equal(f->out.n, 1);
		memcpy(pub_ids[i], f->out.s[0]->span_id, 8);
		out_free(&f->out);
	}
	while (read < N || deliveries < 2 * N) {
		seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
		if (read < N && (seed % 3 == 0 || read == 0)) {
			feed(sa, WS_DIR_INGRESS, pub, 2, ts++);
			read++;
			continue;
		}
		who = (int)((seed >> 8) % 2);
		feed(sub[who], WS_DIR_EGRESS, msg, 2, ts++);
		assert_int_equal(f->out.n, 1);
		/* the model */
		pick = taken[read - 1] == who + 1 ? -1 : read - 1;
		for (k = read - 2; k >= 0; k--)
			if (taken[k] != who + 1)
				pick = k;
		if (pick < 0)
			pick = read - 1;
		taken[pick] = who + 1;
		assert_memory_equal(f->out.s[0]->parent_span_id, pub_ids[pick],
				    8);
		out_free(&f->out);
		deliveries++;
	}
	ws_nats_conn_close(pc, ts);
	ws_nats_conn_close(sa, ts);
	ws_nats_conn_close(sub[0], ts);
	ws_nats_conn_close(sub[1], ts);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fingerprint_value),
		cmocka_unit_test_setup_teardown(twins_two_subscribers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(peer_attrs_follow_the_peer,
						setup, teardown),
		cmocka_unit_test_setup_teardown(publish_span, setup, teardown),
		cmocka_unit_test_setup_teardown(span_names, setup, teardown),
		cmocka_unit_test_setup_teardown(identity_changes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(process_ends_at_next_read,
						setup, teardown),
		cmocka_unit_test_setup_teardown(broker_hop_links, setup,
						teardown),
		cmocka_unit_test_setup_teardown(broker_hop_twins, setup,
						teardown),
		cmocka_unit_test_setup_teardown(broker_hop_links_many, setup,
						teardown),
		cmocka_unit_test_setup_teardown(request_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(reply_id_across_hosts, setup,
						teardown),
		cmocka_unit_test_setup_teardown(no_responders, setup, teardown),
		cmocka_unit_test_setup_teardown(request_timeout, setup,
						teardown),
		cmocka_unit_test_setup_teardown(traceparent_honoured, setup,
						teardown),
		cmocka_unit_test_setup_teardown(in_process_causality, setup,
						teardown),
		cmocka_unit_test_setup_teardown(sole_request_served, setup,
						teardown),
		cmocka_unit_test_setup_teardown(jetstream, setup, teardown),
		cmocka_unit_test_setup_teardown(secrets_and_jwt, setup,
						teardown),
		cmocka_unit_test_setup_teardown(garbage_then_publish, setup,
						teardown),
		cmocka_unit_test_setup_teardown(second_connect_replaces, setup,
						teardown),
	};

	return cmocka_run_group_tests_name("nats_spans", tests, NULL, NULL);
}
