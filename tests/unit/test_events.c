/* SPDX-License-Identifier: Apache-2.0 */
/* The ring-buffer record decoder: every malformed record is rejected, never read past. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "events.h"

static void fill_hdr(struct ws_event_hdr *h, uint16_t type, uint32_t size)
{
	h->abi_version = WS_ABI_VERSION;
	h->type = type;
	h->size = size;
	h->ts_ns = 42;
}

static void data_record(void **state)
{
	uint8_t buf[sizeof(struct ws_data) + 5];
	struct ws_data *d = (struct ws_data *)buf;
	struct ws_event ev;

	memset(buf, 0, sizeof(buf));
	fill_hdr(&d->hdr, WS_EV_DATA, sizeof(buf));
	d->cap_len = 5;
	d->syscall_len = 100;
	d->dir = WS_DIR_INGRESS;
	memcpy(buf + sizeof(*d), "hello", 5);
	assert_int_equal(ws_event_decode(buf, sizeof(buf), &ev), WS_DEC_OK);
	assert_int_equal(ev.type, WS_EV_DATA);
	assert_ptr_equal(ev.data, d);
	assert_memory_equal(ev.payload, "hello", 5);
}

static void data_record_lies(void **state)
{
	uint8_t buf[sizeof(struct ws_data) + 8];
	struct ws_data *d = (struct ws_data *)buf;
	struct ws_event ev;

	memset(buf, 0, sizeof(buf));
	fill_hdr(&d->hdr, WS_EV_DATA, sizeof(buf));
	/* cap_len disagrees with the record size */
	d->cap_len = 9;
	d->syscall_len = 9;
	assert_int_equal(ws_event_decode(buf, sizeof(buf), &ev), WS_DEC_SIZE);
	/* more captured than moved */
	d->cap_len = 8;
	d->syscall_len = 7;
	assert_int_equal(ws_event_decode(buf, sizeof(buf), &ev),
			 WS_DEC_BAD_FIELD);
	/* a direction that does not exist */
	d->syscall_len = 8;
	d->dir = 7;
	assert_int_equal(ws_event_decode(buf, sizeof(buf), &ev),
			 WS_DEC_BAD_FIELD);
	d->dir = WS_DIR_EGRESS;
	assert_int_equal(ws_event_decode(buf, sizeof(buf), &ev), WS_DEC_OK);
	/* header size larger than what the ring buffer handed us */
	assert_int_equal(ws_event_decode(buf, sizeof(buf) - 1, &ev),
			 WS_DEC_SIZE);
}

/* Go runtime records: a version of their own, a size at least theirs. */
static void go_record(void **state)
{
	struct ws_go_event g;
	struct ws_event ev;

	memset(&g, 0, sizeof(g));
	fill_hdr(&g.hdr, WS_EV_GO, sizeof(g));
	g.version = WS_GO_EV_VERSION;
	g.kind = WS_GO_REQ_WRITE;
	g.g = 0xc000001a00;
	g.req = 0xc000400000;
	assert_int_equal(ws_event_decode(&g, sizeof(g), &ev), WS_DEC_OK);
	assert_int_equal(ev.type, WS_EV_GO);
	assert_ptr_equal(ev.go, &g);
	g.version = WS_GO_EV_VERSION + 1;
	assert_int_equal(ws_event_decode(&g, sizeof(g), &ev), WS_DEC_BAD_FIELD);
	g.version = WS_GO_EV_VERSION;
	g.hdr.size = sizeof(g) - 8;
	assert_int_equal(ws_event_decode(&g, sizeof(g), &ev), WS_DEC_SHORT);
}

static void header_checks(void **state)
{
	struct ws_conn_close c;
	struct ws_event ev;

	memset(&c, 0, sizeof(c));
	fill_hdr(&c.hdr, WS_EV_CONN_CLOSE, sizeof(c));
	assert_int_equal(ws_event_decode(&c, sizeof(c), &ev), WS_DEC_OK);
	assert_int_equal(ws_event_decode(NULL, 0, &ev), WS_DEC_SHORT);
	assert_int_equal(ws_event_decode(&c, 3, &ev), WS_DEC_SHORT);
	c.hdr.abi_version = WS_ABI_VERSION + 1;
	assert_int_equal(ws_event_decode(&c, sizeof(c), &ev), WS_DEC_VERSION);
	c.hdr.abi_version = WS_ABI_VERSION;
	c.hdr.type = WS_EV_TYPE_MAX;
	assert_int_equal(ws_event_decode(&c, sizeof(c), &ev), WS_DEC_UNKNOWN);
	c.hdr.type = 0;
	assert_int_equal(ws_event_decode(&c, sizeof(c), &ev), WS_DEC_UNKNOWN);
	c.hdr.type = WS_EV_CONN_CLOSE;
	c.hdr.size = sizeof(c) - 1;
	assert_int_equal(ws_event_decode(&c, sizeof(c), &ev), WS_DEC_SHORT);
}

static void open_role(void **state)
{
	struct ws_conn_open o;
	struct ws_event ev;

	memset(&o, 0, sizeof(o));
	fill_hdr(&o.hdr, WS_EV_CONN_OPEN, sizeof(o));
	o.role = WS_ROLE_SERVER;
	assert_int_equal(ws_event_decode(&o, sizeof(o), &ev), WS_DEC_OK);
	assert_ptr_equal(ev.open, &o);
	o.role = 9;
	assert_int_equal(ws_event_decode(&o, sizeof(o), &ev), WS_DEC_BAD_FIELD);
}

/* Random records of random lengths: the decoder must never read past len
 * (run under valgrind / ASan) and must accept only self-consistent ones. */
static void random_records(void **state)
{
	unsigned seed = 12345;
	int i;

	for (i = 0; i < 200000; i++) {
		size_t len = (size_t)(rand_r(&seed) % 160);
		uint8_t *buf = malloc(len ? len : 1);
		struct ws_event ev;
		size_t j;

		for (j = 0; j < len; j++)
			buf[j] = (uint8_t)rand_r(&seed);
		if (len >= sizeof(struct ws_event_hdr) && (rand_r(&seed) & 1)) {
			struct ws_event_hdr *h = (struct ws_event_hdr *)buf;

			h->abi_version = WS_ABI_VERSION;
			h->type = (uint16_t)(rand_r(&seed) %
					     (WS_EV_TYPE_MAX + 1));
			h->size = (uint32_t)(rand_r(&seed) % 2
						     ? len
						     : (size_t)(rand_r(&seed) %
								200));
		}
		if (ws_event_decode(buf, len, &ev) == WS_DEC_OK) {
			assert_true(ev.hdr->size <= len);
			if (ev.type == WS_EV_DATA)
				assert_true(sizeof(struct ws_data) +
						    ev.data->cap_len <=
					    len);
		}
		free(buf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(data_record),
		cmocka_unit_test(data_record_lies),
		cmocka_unit_test(go_record),
		cmocka_unit_test(header_checks),
		cmocka_unit_test(open_role),
		cmocka_unit_test(random_records),
	};

	return cmocka_run_group_tests_name("events", tests, NULL, NULL);
}
