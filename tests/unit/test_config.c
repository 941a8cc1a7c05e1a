/* SPDX-License-Identifier: Apache-2.0 */
/* Agent configuration: YAML file, environment, overrides, every error
 * class naming its key; the subject filter the config builds. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "subject_filter.h"

static char *const no_env[] = {NULL};

/* A temp file with text; the path is static (one at a time). */
static const char *file_with(const char *text)
{
	static char path[64];
	FILE *f;
	int fd;

	strcpy(path, "/tmp/wirespan-cfg-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void good_file(void **state)
{
	struct ws_config c;
	char err[512] = "";
	const char *p = file_with(
		"# every section\n"
		"output: stdout\n"
		"log_level: debug\n"
		"capture:\n"
		"  pids: [10, 20]\n"
		"  ports:\n"
		"    - 4222\n"
		"  max_capture: 8KiB\n"
		"  ringbuf_size: 4MiB\n"
		"spans:\n"
		"  process_timeout_s: 3\n"
		"  exclude_subjects: [\"hb.>\", \"_INBOX.*.ping\"]\n"
		"export:\n"
		"  nats:\n"
		"    urls: [nats://a:4222, nats://b:4222]\n"
		"    user: agent\n"
		"    password: \"s3cret\"\n"
		"    tls: {enabled: yes}\n"
		"  subject: {prefix: tel, template: "
		"\"{prefix}.spans.{node}.{domain}\"}\n"
		"  node: my.host\n"
		"  mode: jetstream\n"
		"  batch: {max_spans: 100, max_bytes: 64k, max_delay_ms: 250}\n"
		"  queue: {max_bytes: 1MiB}\n"
		"  jetstream: {stream: TRACES, max_wait_ms: 2000, max_pending: "
		"8}\n");

	assert_int_equal(
		ws_config_load(&c, p, NULL, 0, no_env, err, sizeof(err)), 0);
	unlink(p);
	assert_int_equal(c.output, WS_OUTPUT_STDOUT);
	assert_int_equal(c.log_level, 3);
	assert_int_equal(c.n_pids, 2);
	assert_int_equal(c.pids[1], 20);
	assert_int_equal(c.n_ports, 1);
	assert_int_equal(c.ports[0], 4222);
	assert_int_equal(c.max_capture, 8192);
	assert_int_equal(c.ringbuf_size, 4u << 20);
	assert_int_equal(c.process_timeout_s, 3);
	assert_int_equal(c.request_timeout_s, 30); /* default */
	assert_int_equal(c.n_exclude, 2);
	assert_string_equal(c.exclude[1], "_INBOX.*.ping");
	assert_string_equal(c.nats_urls, "nats://a:4222,nats://b:4222");
	assert_string_equal(c.nats_password, "s3cret");
	assert_true(c.tls);
	assert_string_equal(c.prefix, "tel");
	assert_string_equal(c.node, "my.host");
	assert_int_equal(c.mode, WS_EXPORT_JETSTREAM);
	assert_int_equal(c.batch_max_spans, 100);
	assert_int_equal(c.batch_max_bytes, 65536);
	assert_int_equal(c.batch_max_delay_ms, 250);
	assert_int_equal(c.queue_max_bytes, 1u << 20);
	assert_string_equal(c.js_stream, "TRACES");
	assert_int_equal(c.js_max_wait_ms, 2000);
	assert_int_equal(c.js_max_pending, 8);
	ws_config_free(&c);
}

/* The file's text must fail to load with a message holding each want. */
static void expect_error(const char *text, const char *want1, const char *want2)
{
	struct ws_config c;
	char err[512] = "";
	const char *p = file_with(text);
	int rc = ws_config_load(&c, p, NULL, 0, no_env, err, sizeof(err));

	unlink(p);
	if (rc != -1 || !strstr(err, want1) || (want2 && !strstr(err, want2)))
		fail_msg("config:\n%s\nrc %d, error \"%s\"; wanted \"%s\" "
			 "and \"%s\"",
			 text, rc, err, want1, want2 ? want2 : "");
}

static void file_errors(void **state)
{
	/* unknown keys, with their line */
	expect_error("output: nats\nexport:\n  batch:\n    max_spanz: 3\n",
		     "line 4: export.batch.max_spanz: unknown key", NULL);
	expect_error("bogus: 1\n", "bogus: unknown key", NULL);
	/* shape */
	expect_error("export: 3\n", "export: is a section", NULL);
	expect_error("output: {a: b}\n", "output: expected a value", NULL);
	expect_error("export:\n  node: [a, b]\n",
		     "export.node: expected one value, not a list", NULL);
	expect_error("capture:\n  ports: [[1]]\n",
		     "capture.ports: list items must be plain", NULL);
	expect_error("- a\n- b\n", "top level must be a mapping", NULL);
	expect_error("output: [unclosed\n", "not valid YAML", NULL);
	/* values */
	expect_error("export:\n  batch:\n    max_spans: many\n",
		     "export.batch.max_spans: not a whole number", NULL);
	expect_error("export:\n  batch:\n    max_spans: 0\n",
		     "export.batch.max_spans: must be from 1 to 65536", NULL);
	expect_error("export:\n  batch:\n    max_spans: 10k\n",
		     "export.batch.max_spans: not a whole number", NULL);
	expect_error("capture:\n  ringbuf_size: 5000\n",
		     "capture.ringbuf_size: must be a power of two", NULL);
	expect_error("capture:\n  ports: [80, 70000]\n",
		     "capture.ports: must be from 1 to 65535", "line 2");
	expect_error("export:\n  mode: fast\n",
		     "export.mode: \"fast\" is not one of core, jetstream",
		     NULL);
	expect_error("spans:\n  exclude_own_telemetry: maybe\n",
		     "spans.exclude_own_telemetry: not true or false", NULL);
	expect_error("spans:\n  exclude_subjects: [\"a..b\"]\n",
		     "spans.exclude_subjects: \"a..b\" is not a NATS subject",
		     NULL);
	expect_error("spans:\n  exclude_subjects: [\"a.>.b\"]\n",
		     "'>' must be the last token", NULL);
	expect_error("output:\n", "output: needs a value", NULL);
	/* checks across keys */
	expect_error("export:\n  nats:\n    creds_file: /nonexistent/x.creds\n",
		     "export.nats.creds_file: cannot read /nonexistent/x.creds",
		     NULL);
	expect_error("export:\n  nats: {user: a, token: t}\n",
		     "export.nats.token: only one way to authenticate",
		     "export.nats.user is set too");
	expect_error("export:\n  nats: {password: p}\n",
		     "export.nats.password: needs export.nats.user", NULL);
	expect_error("export:\n  nats:\n    tls: {cert: /etc/hostname}\n",
		     "export.nats.tls.key: a client certificate needs both",
		     NULL);
	expect_error("export:\n  subject: {template: \"{prefix}.{host}\"}\n",
		     "export.subject.template", "unknown variable");
	expect_error("export:\n  subject: {template: \"{prefix}.>.{node}\"}\n",
		     "export.subject.template", "'>' must be the last token");
	expect_error("export:\n  subject: {template: \"{prefix}.*.{node}\"}\n",
		     "export.subject.template", "wildcards");
	expect_error("export:\n  subject: {prefix: \"a b\"}\n",
		     "export.subject.prefix", "whitespace");
	expect_error("export:\n  batch: {max_bytes: 2MiB}\n  queue: "
		     "{max_bytes: 1MiB}\n",
		     "export.queue.max_bytes: 1048576 is less than "
		     "export.batch.max_bytes",
		     NULL);
	expect_error("export:\n  jetstream: {stream: a.b}\n",
		     "export.jetstream.stream: \"a.b\" is not a stream name",
		     NULL);
}

static void missing_file(void **state)
{
	struct ws_config c;
	char err[512];

	assert_int_equal(ws_config_load(&c, "/nonexistent/wirespan.yaml", NULL,
					0, no_env, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "/nonexistent/wirespan.yaml"));
}

static void overrides(void **state)
{
	char *env[] = {"PATH=/bin", "WIRESPAN_EXPORT_BATCH_MAX_SPANS=7",
		       "WIRESPAN_CAPTURE_PORTS=1,2,3",
		       "WIRESPAN_EXPORT_NODE=from-env", NULL};
	const struct ws_config_override ov[] = {
		{"export.node", "from-cli", "--node"},
		{"capture.ports", "9", "--port"},
		{"capture.ports", "10", "--port"},
		{"spans.exclude_subjects", "x.>", "--exclude-subject"},
	};
	struct ws_config c;
	char err[512] = "";
	const char *p = file_with("export:\n  node: from-file\n  batch: "
				  "{max_spans: 5, max_delay_ms: 9}\n");

	assert_int_equal(ws_config_load(&c, p, ov, 4, env, err, sizeof(err)),
			 0);
	unlink(p);
	assert_int_equal(c.batch_max_spans, 7);	   /* env over file */
	assert_int_equal(c.batch_max_delay_ms, 9); /* file */
	assert_string_equal(c.node, "from-cli");   /* cli over env */
	/* the first --port replaces the env list, the next one adds */
	assert_int_equal(c.n_ports, 2);
	assert_int_equal(c.ports[0], 9);
	assert_int_equal(c.ports[1], 10);
	assert_int_equal(c.n_exclude, 1);
	ws_config_free(&c);
}

static void override_errors(void **state)
{
	char *env[] = {"WIRESPAN_EXPORT_MODE=fast", NULL};
	const struct ws_config_override bad_port = {"capture.ports", "0",
						    "--port"};
	struct ws_config c;
	char err[512];

	assert_int_equal(
		ws_config_load(&c, NULL, NULL, 0, env, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "environment WIRESPAN_EXPORT_MODE: "
				    "export.mode: \"fast\""));
	assert_int_equal(ws_config_load(&c, NULL, &bad_port, 1, no_env, err,
					sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "--port: capture.ports: must be from 1"));
}

/* redact.extra_names reaches every builder's policy, and is checked */
static void redact_names(void **state)
{
	const struct ws_config_override ov[] = {
		{"redact.extra_names", "pin,X-Tenant-OTK", "--set"},
		{"http.capture_headers", "X-Pin", "--capture-header"},
	};
	const struct ws_config_override bad = {"redact.extra_names", "a=b",
					       "--set"};
	struct ws_http_spans_cfg hc;
	struct ws_enrich_cfg ec;
	struct ws_redact r;
	struct ws_config c;
	char err[512];

	(void)state;
	/* a capture header that an extra name makes secret is refused */
	assert_int_equal(
		ws_config_load(&c, NULL, ov, 2, no_env, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "http.capture_headers: X-Pin: this header "
				    "carries credentials"));
	assert_int_equal(
		ws_config_load(&c, NULL, ov, 1, no_env, err, sizeof(err)), 0);
	assert_int_equal(ws_config_redact(&c, &r, err, sizeof(err)), 0);
	assert_int_equal(r.n_extra, 2);
	assert_int_equal(ws_config_http_cfg(&c, &hc, err, sizeof(err)), 0);
	assert_true(ws_http_header_is_secret(&hc.auth, "x-tenant-otk", 12));
	assert_false(ws_http_header_is_secret(&hc.auth, "x-tenant", 8));
	assert_int_equal(ws_config_enrich_cfg(&c, &ec, err, sizeof(err)), 0);
	assert_true(ws_redact_flag(&ec.redact, "--pin", 5));
	ws_enrich_cfg_free(&ec);
	ws_config_free(&c);
	assert_int_equal(
		ws_config_load(&c, NULL, &bad, 1, no_env, err, sizeof(err)),
		-1);
	assert_non_null(strstr(err, "redact.extra_names: \"a=b\""));
}

static void note(const char *key, bool reloadable, void *ctx)
{
	char *seen = ctx;

	strcat(seen, key);
	strcat(seen, reloadable ? "(r) " : " ");
}

static void diff_and_print(void **state)
{
	const struct ws_config_override ov[] = {
		{"export.batch.max_spans", "9", "t"},
		{"export.nats.urls", "nats://x:1", "t"},
		{"export.nats.user", "u", "t"},
		{"export.nats.password", "hunter22", "t"},
	};
	struct ws_config a, b;
	char err[512], seen[512] = "", *buf = NULL;
	size_t len = 0;
	FILE *f;

	assert_int_equal(
		ws_config_load(&a, NULL, NULL, 0, no_env, err, sizeof(err)), 0);
	assert_int_equal(
		ws_config_load(&b, NULL, ov, 4, no_env, err, sizeof(err)), 0);
	ws_config_diff(&a, &b, note, seen);
	assert_string_equal(seen, "export.nats.urls export.nats.user "
				  "export.nats.password "
				  "export.batch.max_spans(r) ");
	assert_true(ws_config_reloadable("export.queue.max_bytes"));
	assert_false(ws_config_reloadable("export.mode"));
	f = open_memstream(&buf, &len);
	ws_config_print(&b, f);
	fclose(f);
	assert_null(strstr(buf, "hunter22"));
	assert_non_null(strstr(buf, "export.nats.password: <redacted>\n"));
	assert_non_null(strstr(buf, "export.batch.max_spans: 9\n"));
	free(buf);
	ws_config_free(&a);
	ws_config_free(&b);
}

static void exclude_filter(void **state)
{
	const struct ws_config_override ov[] = {
		{"export.subject.prefix", "tel", "t"},
		{"export.subject.template", "{prefix}.x.{node}.{domain}", "t"},
		{"export.jetstream.stream", "S1", "t"},
		{"spans.exclude_subjects", "hb.*", "t"},
	};
	struct ws_subject_filter *f = ws_subject_filter_new();
	struct ws_config c;
	char err[512];

	assert_int_equal(
		ws_config_load(&c, NULL, ov, 4, no_env, err, sizeof(err)), 0);
	assert_int_equal(ws_config_exclude_filter(&c, f), 0);
	assert_int_equal(ws_subject_filter_count(f), 5);
	assert_string_equal(ws_subject_filter_pattern(f, 0), "tel.traces.>");
	assert_string_equal(ws_subject_filter_pattern(f, 1), "tel.x.*.*");
	assert_true(ws_subject_filter_match(f, "tel.x.n1.http", 13));
	assert_true(ws_subject_filter_match(f, "$JS.ACK.S1.c.1.2.3.4.5", 22));
	assert_true(ws_subject_filter_match(f, "hb.a", 4));
	assert_false(ws_subject_filter_match(f, "hb.a.b", 6));
	assert_false(ws_subject_filter_match(f, "orders.new", 10));
	assert_int_equal(ws_subject_filter_matched(f), 3);
	/* turned off: only the user's patterns */
	c.exclude_own = false;
	assert_int_equal(ws_config_exclude_filter(&c, f), 0);
	assert_int_equal(ws_subject_filter_count(f), 1);
	ws_config_free(&c);
	ws_subject_filter_free(f);
}

static void subject_patterns(void **state)
{
	static const struct {
		const char *pat, *subj;
		bool match;
	} t[] = {
		{"otel.traces.>", "otel.traces.nats.n1", true},
		{"otel.traces.>", "otel.traces", false},
		{"otel.traces.>", "otel.tracesx.a", false},
		{"otel.*.nats.*", "otel.traces.nats.n1", true},
		{"otel.*.nats.*", "otel.traces.nats.n1.x", false},
		{"otel.*.nats.*", "otel.traces.nats", false},
		{"a", "a", true},
		{"a", "ab", false},
		{"a", "a.b", false},
		{"*", "a", true},
		{"*", "a.b", false},
		{">", "a.b.c", true},
		{"a.*", "a.", false},
		{"a.*.c", "a..c", false},
	};
	struct ws_subject_filter *f;
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		f = ws_subject_filter_new();
		assert_int_equal(ws_subject_filter_add(f, t[i].pat), 0);
		if (ws_subject_filter_match(f, t[i].subj, strlen(t[i].subj)) !=
		    t[i].match)
			fail_msg("%s vs %s: expected %d", t[i].pat, t[i].subj,
				 t[i].match);
		ws_subject_filter_free(f);
	}
	assert_int_equal(ws_subject_pattern_check("a.b*", &why), -EINVAL);
	assert_int_equal(ws_subject_pattern_check(".a", &why), -EINVAL);
	assert_int_equal(ws_subject_pattern_check("a.", &why), -EINVAL);
	assert_int_equal(ws_subject_pattern_check("", &why), -EINVAL);
	assert_int_equal(ws_subject_pattern_check("a\tb", &why), -EINVAL);
	assert_int_equal(ws_subject_pattern_check("$JS.ACK.>", &why), 0);
	f = ws_subject_filter_new();
	for (i = 0; i < WS_SUBJECT_FILTER_MAX; i++) {
		char p[32];

		snprintf(p, sizeof(p), "s%zu", i);
		assert_int_equal(ws_subject_filter_add(f, p), 0);
	}
	assert_int_equal(ws_subject_filter_add(f, "one.more"), -ENOSPC);
	assert_int_equal(ws_subject_filter_add(f, "s3"), 0); /* already in */
	ws_subject_filter_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(good_file),
		cmocka_unit_test(file_errors),
		cmocka_unit_test(missing_file),
		cmocka_unit_test(overrides),
		cmocka_unit_test(override_errors),
		cmocka_unit_test(redact_names),
		cmocka_unit_test(diff_and_print),
		cmocka_unit_test(exclude_filter),
		cmocka_unit_test(subject_patterns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
