/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The spans the encoder and exporter benchmarks use: NATS publish spans as
 * nats_spans.c builds them (20 attributes: 15 strings, 4 ints, a bool; one
 * link with one attribute) and a 10-attribute resource. Header-only, for
 * tests/bench/bench_otlp_pb.c and tests/bench/bench_nats_export.c.
 */
#ifndef WIRESPAN_BENCH_SPANS_H
#define WIRESPAN_BENCH_SPANS_H

#include <stdio.h>

#include "span.h"

static struct ws_resource *make_resource(uint64_t key)
{
	struct ws_resource *r = ws_resource_new(key);

	ws_attrs_cstr(&r->a, "service.name", "orders-api");
	ws_attrs_cstr(&r->a, "service.instance.id",
		      "3f0c1b5e-7d1a-4a51-9a77-2c1f0e9b6d42");
	ws_attrs_cstr(&r->a, "host.name", "ip-10-0-3-17");
	ws_attrs_cstr(&r->a, "k8s.namespace.name", "shop");
	ws_attrs_cstr(&r->a, "k8s.pod.name", "orders-api-7c9f8d6b5-x2k4q");
	ws_attrs_cstr(&r->a, "container.id",
		      "8e4f2a1c9b7d3e6f5a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b"
		      "9c0d1e2f");
	ws_attrs_int(&r->a, "process.pid", 4242 + (int64_t)key);
	ws_attrs_cstr(&r->a, "process.executable.name", "orders-api");
	ws_attrs_cstr(&r->a, "process.executable.path", "/usr/bin/orders-api");
	ws_attrs_cstr(&r->a, "process.owner", "app");
	return r;
}

/* A NATS publish span as nats_spans.c builds them: 20 attributes, 1 link. */
static struct ws_span *make_span(struct ws_resource *r, unsigned i)
{
	struct ws_span *s =
		ws_span_new("publish orders.created", WS_SPAN_KIND_PRODUCER,
			    1700000000000000000ull + i * 1000ull, NULL);
	uint8_t tid[16], sid[8];
	char id[32];

	s->end_ns = s->start_ns + 35000 + i % 1000;
	s->flags = 0x301;
	snprintf(id, sizeof(id), "msg-%08u", i);
	ws_attrs_cstr(&s->a, "messaging.system", "nats");
	ws_attrs_cstr(&s->a, "messaging.operation.name", "publish");
	ws_attrs_cstr(&s->a, "messaging.operation.type", "send");
	ws_attrs_cstr(&s->a, "messaging.destination.name", "orders.created");
	ws_attrs_cstr(&s->a, "messaging.destination.template", "orders.*");
	ws_attrs_cstr(&s->a, "messaging.client.id", "17");
	ws_attrs_cstr(&s->a, "messaging.message.id", id);
	ws_attrs_cstr(&s->a, "messaging.message.conversation_id",
		      "_INBOX.x7GhJkLmNoPqRsTu");
	ws_attrs_cstr(&s->a, "messaging.consumer.group.name", "workers");
	ws_attrs_cstr(&s->a, "server.address", "nats.shop.svc");
	ws_attrs_cstr(&s->a, "network.peer.address", "10.0.7.12");
	ws_attrs_cstr(&s->a, "network.transport", "tcp");
	ws_attrs_cstr(&s->a, "network.type", "ipv4");
	ws_attrs_cstr(&s->a, "nats.reply_to", "_INBOX.x7GhJkLmNoPqRsTu.1");
	ws_attrs_cstr(&s->a, "enduser.pseudo.id", "u_5f2c9a");
	ws_attrs_int(&s->a, "server.port", 4222);
	ws_attrs_int(&s->a, "network.peer.port", 4222);
	ws_attrs_int(&s->a, "messaging.message.body.size", 128 + i % 512);
	ws_attrs_int(&s->a, "messaging.message.envelope.size", 210 + i % 512);
	ws_attrs_bool(&s->a, "messaging.destination.temporary", false);
	ws_id_random(tid, 16);
	ws_id_random(sid, 8);
	ws_span_add_link(s, tid, sid, 0x301);
	ws_attrs_cstr(&s->links[0].a, "messaging.operation.type", "create");
	ws_span_set_resource(s, r);
	return s;
}

#endif
