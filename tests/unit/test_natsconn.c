/* SPDX-License-Identifier: Apache-2.0 */
/* NATS connection options: NKey seeds and configuration checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "natsconn.h"

/* Pairs made by github.com/nats-io/nkeys (CreateUser, Seed, PublicKey). */
static const char *const seeds[][2] = {
	{"SUAADKRXSBIFGDZCFBXVCUXQM5P4THLJB4GRESD4ZOQFNNJQL3AQHLLPDQ",
	 "UBVJLMPOJMWF4KVKJGUTGAXVGYT5HVK44FNUM3TNUCPMOXCD4ZZBREKO"},
	{"SUAP4CSPBACNJ35WC3MG4Q357QC73WND6JAKE3DWBBYTYDHN3JNO4RIZ4A",
	 "UAE7Z7L3XLEGHSYWB7DAHBAGKRCE4PVJHGLJIDNDPH4VDQVPD64XQ2A2"},
};

static void nkey_public_of_seed(void **state)
{
	char pub[57];
	size_t i;

	for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		assert_int_equal(ws_nkey_public_from_seed(
					 seeds[i][0], strlen(seeds[i][0]), pub),
				 0);
		assert_string_equal(pub, seeds[i][1]);
	}
}

static void nkey_bad_seeds(void **state)
{
	char pub[57], bad[64];

	strcpy(bad, seeds[0][0]);
	bad[20] = bad[20] == 'A' ? 'B' : 'A'; /* CRC no longer matches */
	assert_int_equal(ws_nkey_public_from_seed(bad, strlen(bad), pub), -1);
	assert_int_equal(ws_nkey_public_from_seed("", 0, pub), -1);
	assert_int_equal(ws_nkey_public_from_seed("SU", 2, pub), -1);
	assert_int_equal(ws_nkey_public_from_seed("su!!", 4, pub), -1);
	/* a public key is not a seed */
	assert_int_equal(
		ws_nkey_public_from_seed(seeds[0][1], strlen(seeds[0][1]), pub),
		-1);
}

static void check_names_the_problem(void **state)
{
	struct ws_natsconn_cfg c = {0};
	char err[256], path[] = "/tmp/ws-natsconn-XXXXXX";
	int fd;

	assert_int_equal(ws_natsconn_check(&c, err, sizeof(err)), 0);
	c.creds_file = "/nonexistent/x.creds";
	assert_int_equal(ws_natsconn_check(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "creds file"));
	c.creds_file = NULL;
	c.user = "u";
	c.token = "t";
	assert_int_equal(ws_natsconn_check(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "choose one"));
	c.user = c.token = NULL;
	c.tls_cert = "/etc/hostname";
	assert_int_equal(ws_natsconn_check(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cert and key"));
	c.tls_cert = NULL;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_true(write(fd, "-----BEGIN USER NKEY SEED-----\n", 31) == 31);
	c.nkey_seed_file = path;
	assert_int_equal(ws_natsconn_check(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "nkey seed file"));
	assert_true(write(fd, seeds[1][0], strlen(seeds[1][0])) > 0);
	assert_true(write(fd, "\n------END USER NKEY SEED------\n", 32) == 32);
	close(fd);
	assert_int_equal(ws_natsconn_check(&c, err, sizeof(err)), 0);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(nkey_public_of_seed),
		cmocka_unit_test(nkey_bad_seeds),
		cmocka_unit_test(check_names_the_problem),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
