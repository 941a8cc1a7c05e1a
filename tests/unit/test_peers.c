/* SPDX-License-Identifier: Apache-2.0 */
/* Peers under connection churn: learned endpoints and waiting lookups leave
 * with the connections and processes that made them (the tables return to
 * empty), and what they count. /proc/net/tcp parsing is in test_service.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "peers.h"

static struct ws_tuple loopback(uint16_t lport, uint16_t rport)
{
	struct ws_tuple t = {
		.family = WS_AF_INET, .lport = lport, .rport = rport};

	t.laddr[10] = t.laddr[11] = t.raddr[10] = t.raddr[11] = 0xff;
	t.laddr[12] = t.raddr[12] = 127;
	t.laddr[15] = t.raddr[15] = 1;
	return t;
}

/* A pid that was just reaped: gone from /proc. */
static uint32_t dead_pid(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	return (uint32_t)pid;
}

static void endpoints_leave_with_connections(void **state)
{
	struct ws_peers_cfg cfg = {.proc_root = "/proc"};
	struct ws_peers *p = ws_peers_new(&cfg);
	struct ws_tuple s1 = loopback(4222, 50001), s2 = loopback(4222, 50002);
	struct ws_tuple c1 = loopback(50001, 4222);
	struct ws_peers_stats st;
	uint32_t me = (uint32_t)getpid();

	assert_non_null(p);
	/* two server connections share the server's endpoint */
	ws_peers_note(p, &s1, me, NULL);
	ws_peers_note(p, &s2, me, NULL);
	ws_peers_note(p, &c1, me, NULL);
	ws_peers_stats(p, &st);
	assert_int_equal(st.endpoints, 2);
	ws_peers_forget(p, &s1);
	ws_peers_stats(p, &st);
	assert_int_equal(st.endpoints, 2); /* s2 still has 127.0.0.1:4222 */
	assert_int_equal(st.forgotten, 0);
	ws_peers_forget(p, &s2);
	ws_peers_forget(p, &c1);
	ws_peers_stats(p, &st);
	assert_int_equal(st.endpoints, 0);
	assert_int_equal(st.forgotten, 2);
	/* a close we never noted changes nothing */
	ws_peers_forget(p, &c1);
	ws_peers_stats(p, &st);
	assert_int_equal(st.forgotten, 2);
	ws_peers_free(p);
}

static void sweep_gone_processes_and_unheld_lookups(void **state)
{
	struct ws_peers_cfg cfg = {.proc_root = "/proc"};
	struct ws_peers *p = ws_peers_new(&cfg);
	struct ws_tuple live = loopback(50010, 4222),
			gone = loopback(50011, 4222);
	/* nobody has the other end of this one: the lookup waits */
	struct ws_tuple lonely = loopback(1, 2);
	struct ws_peers_stats st;
	struct ws_resource *bag;

	assert_non_null(p);
	ws_peers_note(p, &live, (uint32_t)getpid(), NULL);
	ws_peers_note(p, &gone, dead_pid(), NULL);
	bag = ws_peers_lookup(p, &lonely, (uint32_t)getpid(), 1);
	assert_non_null(bag);
	ws_peers_stats(p, &st);
	assert_int_equal(st.endpoints, 2);
	assert_int_equal(st.pending_now, 1);
	/* the connection still holds the bag: it stays */
	assert_int_equal(ws_peers_sweep(p), 1);
	ws_peers_stats(p, &st);
	assert_int_equal(st.endpoints, 1);
	assert_int_equal(st.pending_now, 1);
	/* the connection closed: nobody holds it any more */
	ws_resource_put(bag);
	ws_peers_forget(p, &lonely);
	ws_peers_stats(p, &st);
	assert_int_equal(st.pending_now, 0);
	assert_int_equal(st.swept, 1);
	ws_peers_forget(p, &live);
	ws_peers_stats(p, &st);
	assert_int_equal(st.endpoints, 0);
	/* an unheld lookup whose close was not seen goes with the sweep */
	bag = ws_peers_lookup(p, &lonely, (uint32_t)getpid(), 2);
	assert_non_null(bag);
	ws_resource_put(bag);
	assert_int_equal(ws_peers_sweep(p), 1);
	ws_peers_stats(p, &st);
	assert_int_equal(st.pending_now, 0);
	assert_int_equal(st.swept, 2);
	ws_peers_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(endpoints_leave_with_connections),
		cmocka_unit_test(sweep_gone_processes_and_unheld_lookups),
	};

	return cmocka_run_group_tests_name("peers", tests, NULL, NULL);
}
