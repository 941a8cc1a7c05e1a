/* SPDX-License-Identifier: Apache-2.0 */
/* The redaction policy: built-in lists, extra names, every rule, and
 * inputs that end at a guard page (no over-read). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"
#include "redact.h"

#define S(lit) lit, strlen(lit)

static void header_names(void **state)
{
	static const char *const secret[] = {
		"Authorization",   "proxy-authorization",
		"Cookie",	   "Set-Cookie",
		"X-Auth-Token",	   "X-Amz-Security-Token",
		"X-Hub-Signature", "X-Api-Key",
		"x-session-id",	   "X-Client-Secret",
		"X-Credential",	   "x-db-passwd",
	};
	static const char *const plain[] = {"Accept", "Content-Type",
					    "X-Request-Id", "Cookies-Policy",
					    "Host"};
	struct ws_redact r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
		assert_true(ws_redact_header(NULL, S(secret[i])));
	for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		assert_false(ws_redact_header(NULL, S(plain[i])));
	/* the length counts, not the NUL */
	assert_false(ws_redact_header(NULL, "Cookie", 5));
	/* an extra name hides more, in any case */
	ws_redact_init(&r);
	assert_false(ws_redact_header(&r, S("X-Tenant-Pin")));
	assert_int_equal(ws_redact_add(&r, "PIN"), 0);
	assert_true(ws_redact_header(&r, S("X-Tenant-Pin")));
	assert_true(ws_redact_header(&r, S("Authorization")));
}

static void param_and_flag_names(void **state)
{
	struct ws_redact r;

	(void)state;
	assert_true(ws_redact_param(NULL, S("access_token")));
	assert_true(ws_redact_param(NULL, S("X-Amz-Signature")));
	assert_true(ws_redact_param(NULL, S("code")));
	assert_true(ws_redact_param(NULL, S("otp")));
	assert_false(ws_redact_param(NULL, S("page")));
	assert_false(ws_redact_param(NULL, S("user")));
	assert_true(ws_redact_flag(NULL, S("--password")));
	assert_true(ws_redact_flag(NULL, S("--seed-file")));
	assert_true(ws_redact_flag(NULL, S("--creds")));
	assert_false(ws_redact_flag(NULL, S("--port")));
	assert_false(ws_redact_flag(NULL, S("--user")));
	ws_redact_init(&r);
	assert_int_equal(ws_redact_add(&r, "tenant_pin"), 0);
	assert_true(ws_redact_param(&r, S("my_tenant_pin")));
	assert_true(ws_redact_flag(&r, S("--TENANT_PIN")));
	assert_false(ws_redact_param(&r, S("tenant")));
}

static void add_checks(void **state)
{
	char names[WS_REDACT_MAX_EXTRA + 1][8];
	struct ws_redact r;
	unsigned i;

	(void)state;
	ws_redact_init(&r);
	assert_int_equal(ws_redact_add(&r, ""), -EINVAL);
	assert_int_equal(ws_redact_add(&r, "a b"), -EINVAL);
	assert_int_equal(ws_redact_add(&r, "a=b"), -EINVAL);
	assert_int_equal(ws_redact_add(&r, "a:b"), -EINVAL);
	assert_int_equal(ws_redact_add(&r, "x\x80"), -EINVAL);
	{
		char big[WS_REDACT_MAX_NAME + 2];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		assert_int_equal(ws_redact_add(&r, big), -EINVAL);
		big[WS_REDACT_MAX_NAME] = '\0';
		assert_int_equal(ws_redact_add(&r, big), 0);
	}
	/* a duplicate (any case) takes no room */
	assert_int_equal(ws_redact_add(&r, "PIN"), 0);
	assert_int_equal(ws_redact_add(&r, "pin"), 0);
	assert_int_equal(r.n_extra, 2);
	for (i = 0; i < WS_REDACT_MAX_EXTRA + 1; i++)
		snprintf(names[i], sizeof(names[i]), "n%u", i);
	for (i = 0; r.n_extra < WS_REDACT_MAX_EXTRA; i++)
		assert_int_equal(ws_redact_add(&r, names[i]), 0);
	assert_int_equal(ws_redact_add(&r, names[WS_REDACT_MAX_EXTRA]),
			 -ENOSPC);
}

static void jwt_values(void **state)
{
	(void)state;
	assert_true(ws_redact_is_jwt(S("eyJhbGciOiJIUzI1NiJ9.e30.c2ln")));
	assert_true(
		ws_redact_is_jwt(S("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")));
	assert_false(ws_redact_is_jwt(S("eyJhbGciOiJIUzI1NiJ9.e30")));
	assert_false(ws_redact_is_jwt(S("eyJ.a.b")));
	assert_false(ws_redact_is_jwt(S("abcdefghijkl.a.b")));
	assert_false(ws_redact_is_jwt(S("eyJhbGciOi J9.e30.c2ln")));
}

static void nats_connect_fields(void **state)
{
	static const char *const keep[] = {"name", "lang", "version", "user",
					   "nkey"};
	static const char *const drop[] = {"pass", "auth_token", "sig",
					   "jwt",  "verbose",	 "Name"};
	struct ws_redact r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
		assert_true(ws_redact_nats_connect_keep(NULL, keep[i]));
	for (i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		assert_false(ws_redact_nats_connect_keep(NULL, drop[i]));
	/* a deployment that treats user names as secret */
	ws_redact_init(&r);
	assert_int_equal(ws_redact_add(&r, "user"), 0);
	assert_false(ws_redact_nats_connect_keep(&r, "user"));
	assert_true(ws_redact_nats_connect_keep(&r, "name"));
}

static void query(const struct ws_redact *r, const char *in, const char *want)
{
	char out[256];

	ws_redact_query(r, in, strlen(in), out, sizeof(out));
	assert_string_equal(out, want);
	/* the same from a guarded copy: no byte past the end is read */
	ws_redact_query(
		r, (const char *)guard_copy((const uint8_t *)in, strlen(in)),
		strlen(in), out, sizeof(out));
	assert_string_equal(out, want);
}

static void query_strings(void **state)
{
	struct ws_redact r;
	char out[16];

	(void)state;
	query(NULL, "a=1&access_token=xyz&b", "a=1&access_token=REDACTED&b");
	query(NULL, "q=eyJhbGciOi", "q=REDACTED");
	query(NULL, "q=eyJ", "q=eyJ");
	query(NULL, "", "");
	query(NULL, "tenant_pin=1234", "tenant_pin=1234");
	ws_redact_init(&r);
	assert_int_equal(ws_redact_add(&r, "pin"), 0);
	query(&r, "tenant_pin=1234&x=2", "tenant_pin=REDACTED&x=2");
	/* cut between parameters, never inside a value */
	ws_redact_query(NULL, S("page=1&password=hunter2"), out, sizeof(out));
	assert_string_equal(out, "page=1");
	ws_redact_query(NULL, S("abc"), out, 0);
}

static void path(const char *in, const char *want)
{
	char out[256];

	ws_redact_path(
		(const char *)guard_copy((const uint8_t *)in, strlen(in)),
		strlen(in), out, sizeof(out));
	assert_string_equal(out, want);
}

static void paths(void **state)
{
	char out[8];

	(void)state;
	path("/verify/eyJhbGciOiJIUzI1NiJ9.e30.c2ln/done",
	     "/verify/REDACTED/done");
	path("/users/42/orders", "/users/42/orders");
	path("/eyJhbGciOiJIUzI1NiJ9.e30.c2ln", "/REDACTED");
	path("//a/", "//a/");
	path("", "");
	ws_redact_path(S("/abcdefghijk"), out, sizeof(out));
	assert_int_equal(strlen(out), 7);
}

static void cmd(const struct ws_redact *r, const char *argv, size_t len,
		const char *want)
{
	char out[512];

	ws_redact_cmdline(r,
			  (const char *)guard_copy((const uint8_t *)argv, len),
			  len, out, sizeof(out));
	assert_string_equal(out, want);
}

#define C(r, lit, want) cmd(r, lit, sizeof(lit) - 1, want)

static void command_lines(void **state)
{
	struct ws_redact r;

	(void)state;
	C(NULL, "app\0--password=hunter2\0--port=1",
	  "app --password=REDACTED --port=1");
	C(NULL, "app\0--token\0abc\0x", "app --token REDACTED x");
	/* NAME=VALUE without dashes (env-style arguments) */
	C(NULL, "env\0DB_PASSWORD=hunter2\0PATH=/bin\0run",
	  "env DB_PASSWORD=REDACTED PATH=/bin run");
	/* a header given as --header=... */
	C(NULL, "curl\0--header=Authorization: Bearer abc\0--header=Accept: x",
	  "curl --header=Authorization: REDACTED --header=Accept: x");
	C(NULL, "curl\0-H\0Cookie: sid=1", "curl -H Cookie: REDACTED");
	/* URLs: a password, a NATS token, a user name alone */
	C(NULL, "a\0--url=nats://u:p@h:4222\0tls://tok@h\0http://bob@h/",
	  "a --url=nats://u:REDACTED@h:4222 tls://REDACTED@h http://bob@h/");
	/* a JWT as an argument */
	C(NULL, "a\0eyJhbGciOiJIUzI1NiJ9.e30.c2ln\0b", "a REDACTED b");
	/* the last argument without its NUL; a dangling secret flag */
	C(NULL, "a\0--secret", "a --secret");
	C(NULL, "", "");
	ws_redact_init(&r);
	assert_int_equal(ws_redact_add(&r, "pin"), 0);
	C(&r,
	  "app\0--tenant-pin\0"
	  "1234\0-H\0X-Pin: 9",
	  "app --tenant-pin REDACTED -H X-Pin: REDACTED");
	C(NULL,
	  "app\0--tenant-pin\0"
	  "1234",
	  "app --tenant-pin 1234");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(header_names),
		cmocka_unit_test(param_and_flag_names),
		cmocka_unit_test(add_checks),
		cmocka_unit_test(jwt_values),
		cmocka_unit_test(nats_connect_fields),
		cmocka_unit_test(query_strings),
		cmocka_unit_test(paths),
		cmocka_unit_test(command_lines),
	};

	return cmocka_run_group_tests_name("redact", tests, guard_setup,
					   guard_teardown);
}
