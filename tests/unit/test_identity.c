/* SPDX-License-Identifier: Apache-2.0 */
/* Process identity: the resource of a live process, and secrets kept out of
 * the command line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "identity.h"

static void redact(const char *argv, size_t len, const char *want)
{
	char out[512];

	ws_cmdline_redact(argv, len, out, sizeof(out));
	assert_string_equal(out, want);
}

#define R(lit, want) redact(lit, sizeof(lit), want)

static void cmdline_secrets(void **state)
{
	R("nats-server\0-c\0/etc/nats.conf", "nats-server -c /etc/nats.conf");
	R("app\0--url\0nats://carol:pw123@127.0.0.1:4222",
	  "app --url nats://carol:REDACTED@127.0.0.1:4222");
	/* NATS clients read a lone userinfo as the token */
	R("app\0nats://tok@host:4222", "app nats://REDACTED@host:4222");
	R("app\0http://bob@host/x", "app http://bob@host/x");
	R("nats-server\0--pass\0hunter2\0--user\0bob",
	  "nats-server --pass REDACTED --user bob");
	R("app\0--auth_token=abc\0--Api-Key\0k1\0--seed-file=/x",
	  "app --auth_token=REDACTED --Api-Key REDACTED --seed-file=REDACTED");
	R("app\0--port=4222", "app --port=4222");
	/* credential headers given as arguments (curl -H) */
	R("curl\0-H\0Authorization: Bearer eyJhbGciOi.x.y\0-H\0X-API-Key: "
	  "k-123\0-H\0Cookie: sid=1\0-H\0Accept: text/plain\0http://h/x",
	  "curl -H Authorization: REDACTED -H X-API-Key: REDACTED -H Cookie: "
	  "REDACTED -H Accept: text/plain http://h/x");
	R("curl\0-HAuthorization: Basic Ym9iOnB3\0-H\0x-auth:",
	  "curl "
	  "-HAuthorization: REDACTED -H x-auth: REDACTED");
	/* a cut buffer stays NUL-terminated */
	{
		char out[8];

		ws_cmdline_redact("abcdefghijkl", 12, out, sizeof(out));
		assert_int_equal(strlen(out), 7);
	}
}

static void self_resource(void **state)
{
	struct ws_identity *id = ws_identity_new("/proc");
	struct ws_resource *r, *r2;
	const struct ws_attr *a;

	assert_non_null(id);
	r = ws_identity_resource(id, (uint32_t)getpid(), "test");
	assert_non_null(r);
	a = ws_attrs_get(&r->a, "process.pid");
	assert_non_null(a);
	assert_int_equal(a->i, getpid());
	a = ws_attrs_get(&r->a, "process.executable.name");
	assert_string_equal(a->s, "test_identity");
	a = ws_attrs_get(&r->a, "service.name");
	assert_string_equal(a->s, "unknown_service:test_identity");
	assert_non_null(ws_attrs_get(&r->a, "process.owner"));
	assert_non_null(ws_attrs_get(&r->a, "host.name"));
	/* cached: the same resource again */
	r2 = ws_identity_resource(id, (uint32_t)getpid(), "test");
	assert_ptr_equal(r, r2);
	ws_resource_put(r2);
	ws_resource_put(r);
	/* a process that is gone: only what we were told */
	r = ws_identity_resource(id, 0x7ffffff0u, "ghost");
	a = ws_attrs_get(&r->a, "process.executable.name");
	assert_string_equal(a->s, "ghost");
	ws_resource_put(r);
	ws_identity_free(id);
}

/* Exited processes leave the cache: forgotten at their exit record, swept
 * when it was lost; live ones stay. The cache returns to where it was. */
static void exited_processes_leave(void **state)
{
	struct ws_identity *id = ws_identity_new("/proc");
	struct ws_identity_stats st;
	struct ws_resource *r;
	uint32_t kids[3];
	int i;

	assert_non_null(id);
	r = ws_identity_resource(id, (uint32_t)getpid(), "test");
	ws_resource_put(r);
	for (i = 0; i < 3; i++) {
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			pause();
			_exit(0);
		}
		kids[i] = (uint32_t)pid;
		r = ws_identity_resource(id, kids[i], "kid");
		assert_non_null(ws_attrs_get(&r->a, "process.executable.path"));
		ws_resource_put(r);
	}
	ws_identity_stats(id, &st);
	assert_int_equal(st.cached, 4);
	/* all alive: the sweep keeps them */
	assert_int_equal(ws_identity_sweep(id), 0);
	for (i = 0; i < 3; i++) {
		kill((pid_t)kids[i], SIGKILL);
		waitpid((pid_t)kids[i], NULL, 0);
	}
	ws_identity_forget(id, kids[0]); /* its exit record came */
	ws_identity_forget(id, kids[0]); /* twice: counted once */
	ws_identity_stats(id, &st);
	assert_int_equal(st.forgotten, 1);
	assert_int_equal(st.cached, 3);
	assert_int_equal(ws_identity_sweep(id), 2); /* theirs were lost */
	ws_identity_stats(id, &st);
	assert_int_equal(st.swept, 2);
	assert_int_equal(st.cached, 1);
	ws_identity_free(id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cmdline_secrets),
		cmocka_unit_test(self_resource),
		cmocka_unit_test(exited_processes_leave),
	};

	return cmocka_run_group_tests_name("identity", tests, NULL, NULL);
}
