/* SPDX-License-Identifier: Apache-2.0 */
/* service.name in the documented order; identity of processes in a fake
 * /proc with kubepods cgroups and pods in the store; exec detection; peer
 * sockets from /proc/net/tcp. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "identity.h"
#include "k8s_pods.h"
#include "peers.h"
#include "service.h"

struct labels {
	const char *k[4], *v[4];
};

static const char *label(const void *ctx, const char *key)
{
	const struct labels *l = ctx;
	int i;

	for (i = 0; i < 4 && l->k[i]; i++)
		if (!strcmp(l->k[i], key))
			return l->v[i];
	return NULL;
}

static void name_order(void **state)
{
	struct ws_service_cfg cfg = {0};
	struct labels l = {{"app.kubernetes.io/name", "app", "tier"},
			   {"checkout", "co", "web"}};
	struct ws_service_facts f = {.exe = "java",
				     .ns = "shop",
				     .container = "main",
				     .workload = "checkout-deploy",
				     .port = 8080,
				     .label = label,
				     .label_ctx = &l};
	char buf[128];

	/* 1. rules, in order; every condition must hold */
	assert_int_equal(ws_service_rule_add(&cfg, "edge=namespace:shop,"
						   "label:tier=api"),
			 0);
	assert_int_equal(
		ws_service_rule_add(&cfg, "web=label:tier=w*,exe:ja?a"), 0);
	assert_int_equal(ws_service_rule_add(&cfg, "byport=port:8080"), 0);
	assert_int_equal(ws_service_name(&cfg, &f, buf, sizeof(buf)),
			 WS_SVC_RULE);
	assert_string_equal(buf, "web");
	f.exe = "python3";
	assert_int_equal(ws_service_name(&cfg, &f, buf, sizeof(buf)),
			 WS_SVC_RULE);
	assert_string_equal(buf, "byport");
	assert_true(ws_service_cfg_has_port(&cfg));
	f.port = 0;
	/* 2. app.kubernetes.io/name, then app */
	assert_int_equal(ws_service_name(&cfg, &f, buf, sizeof(buf)),
			 WS_SVC_LABEL);
	assert_string_equal(buf, "checkout");
	l.v[0] = "";
	assert_int_equal(ws_service_name(&cfg, &f, buf, sizeof(buf)),
			 WS_SVC_LABEL);
	assert_string_equal(buf, "co");
	/* 3. workload */
	l.k[0] = l.k[1] = "x";
	assert_int_equal(ws_service_name(&cfg, &f, buf, sizeof(buf)),
			 WS_SVC_WORKLOAD);
	assert_string_equal(buf, "checkout-deploy");
	/* 4. container */
	f.workload = NULL;
	assert_int_equal(ws_service_name(&cfg, &f, buf, sizeof(buf)),
			 WS_SVC_CONTAINER);
	assert_string_equal(buf, "main");
	/* 5. unknown_service:<exe> */
	f.container = NULL;
	f.label = NULL;
	assert_int_equal(ws_service_name(&cfg, &f, buf, sizeof(buf)),
			 WS_SVC_UNKNOWN);
	assert_string_equal(buf, "unknown_service:python3");
	assert_int_equal(ws_service_name(NULL, &f, buf, sizeof(buf)),
			 WS_SVC_UNKNOWN);
	/* labels named by rules */
	{
		const char *keys[4];

		assert_int_equal(ws_service_cfg_labels(&cfg, keys, 4), 2);
		assert_string_equal(keys[0], "tier");
	}
	ws_service_cfg_free(&cfg);
}

static void bad_rules(void **state)
{
	static const char *const bad[] = {
		"",
		"x",
		"=namespace:a",
		"x=",
		"x=nope:a",
		"x=port:0",
		"x=port:70000",
		"x=port:12a",
		"x=label:=v",
		"x=label:k",
		"x=namespace:",
		"x=exe:a,",
		"x=exe:a,,b",
		"x=exe:a,exe:b,exe:c,exe:d,exe:e",
	};
	struct ws_service_cfg cfg = {0};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("%s\n", bad[i]);
		assert_true(ws_service_rule_add(&cfg, bad[i]) < 0);
	}
	assert_int_equal(cfg.n_rules, 0);
	for (i = 0; i < WS_SERVICE_MAX_RULES; i++)
		assert_int_equal(ws_service_rule_add(&cfg, "a=exe:b"), 0);
	assert_int_equal(ws_service_rule_add(&cfg, "a=exe:b"), -E2BIG);
	ws_service_cfg_free(&cfg);
}

/* ---- a fake /proc -------------------------------------------------------- */

static char root[64];

static void put(const char *rel, const char *text, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	f = fopen(path, "w");
	assert_non_null(f);
	fwrite(text, 1, len, f);
	fclose(f);
}

#define CID "492206854cc6bfb961740703af0685d671ffc294cc806e6be5eeb424c4d4d8fd"
#define PODUID "678aeb9c-64e2-42d2-a3cf-bcf0c33dc591"

static void fake_proc(uint32_t pid, const char *exe, const char *cgroup)
{
	char rel[128], target[256];

	snprintf(rel, sizeof(rel), "%s/%u", root, pid);
	mkdir(rel, 0755);
	snprintf(rel, sizeof(rel), "%u/stat", pid);
	put(rel,
	    "77 (x y) S 1 77 77 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 "
	    "123456 1000 100",
	    strlen("77 (x y) S 1 77 77 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 "
		   "123456 1000 100"));
	snprintf(rel, sizeof(rel), "%u/cmdline", pid);
	put(rel, "app\0--token\0s3cr3t", 18);
	snprintf(rel, sizeof(rel), "%u/cgroup", pid);
	put(rel, cgroup, strlen(cgroup));
	snprintf(rel, sizeof(rel), "%s/%u/exe", root, pid);
	unlink(rel);
	snprintf(target, sizeof(target), "/usr/bin/%s", exe);
	assert_int_equal(symlink(target, rel), 0);
}

static int setup_root(void **state)
{
	snprintf(root, sizeof(root), "/tmp/ws-svc-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	put("stat", "cpu 1 2 3\nbtime 1700000000\n", 27);
	return 0;
}

static int teardown_root(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *str(const struct ws_resource *r, const char *key)
{
	const struct ws_attr *a = ws_attrs_get(&r->a, key);

	return a && a->type == WS_ATTR_STR ? a->s : NULL;
}

static void identity_in_pod(void **state)
{
	static const char *const labels[] = {"tier"};
	struct ws_k8s_store *st = ws_k8s_store_new(0, labels, 1);
	struct ws_service_cfg svc = {0};
	struct ws_identity_cfg cfg = {.proc_root = root,
				      .cgroup_root = "",
				      .svc = &svc,
				      .k8s = st,
				      .node_name = "worker-2",
				      .labels = labels,
				      .n_labels = 1};
	struct ws_identity_query q = {.tgid = 77, .comm = "java"};
	struct ws_identity_stats is;
	struct ws_identity *id;
	struct ws_resource *r, *r2;
	struct json_object *pod;
	const struct ws_attr *a;

	fake_proc(77, "java",
		  "0::/kubepods.slice/kubepods-burstable.slice/"
		  "kubepods-burstable-pod678aeb9c_64e2_42d2_a3cf_bcf0c33dc591"
		  ".slice/cri-containerd-" CID ".scope\n");
	assert_int_equal(ws_service_rule_add(&svc, "edge=port:8443"), 0);
	id = ws_identity_new_cfg(&cfg);
	assert_non_null(id);
	/* the pod is not in the store yet: container and pod uid only */
	r = ws_identity_lookup(id, &q);
	assert_string_equal(str(r, "container.id"), CID);
	assert_string_equal(str(r, "k8s.pod.uid"), PODUID);
	assert_string_equal(str(r, "k8s.node.name"), "worker-2");
	assert_string_equal(str(r, "service.name"), "unknown_service:java");
	/* host + pid */
	assert_non_null(str(r, "service.instance.id"));
	assert_string_equal(strrchr(str(r, "service.instance.id"), '/'), "/77");
	assert_null(str(r, "k8s.pod.name"));
	a = ws_attrs_get(&r->a, "process.parent_pid");
	assert_int_equal(a->i, 1);
	assert_string_equal(str(r, "process.command_line"),
			    "app --token REDACTED");
	/* 1700000000 + 123456 ticks */
	assert_non_null(str(r, "process.creation.time"));
	assert_memory_equal(str(r, "process.creation.time"), "2023-11-", 8);
	ws_resource_put(r);
	/* the watcher adds it: the next lookup rebuilds */
	pod = json_object_from_file("tests/fixtures/k8s/checkout.json");
	assert_non_null(pod);
	assert_int_equal(ws_k8s_store_upsert(st, pod, 1), 0);
	r = ws_identity_lookup(id, &q);
	assert_string_equal(str(r, "k8s.pod.name"),
			    "checkout-7d9f8b6c5d-x2k9p");
	assert_string_equal(str(r, "k8s.container.name"), "checkout");
	assert_string_equal(str(r, "k8s.deployment.name"), "checkout");
	assert_string_equal(str(r, "k8s.namespace.name"), "shop");
	assert_string_equal(str(r, "k8s.pod.label.tier"), "web");
	assert_string_equal(str(r, "k8s.serviceaccount.name"), "checkout");
	assert_string_equal(str(r, "container.runtime"), "containerd");
	assert_string_equal(str(r, "service.name"), "checkout");
	assert_string_equal(str(r, "service.namespace"), "shop");
	assert_string_equal(str(r, "service.instance.id"),
			    "shop.checkout-7d9f8b6c5d-x2k9p.checkout");
	/* a hit: the same resource */
	r2 = ws_identity_lookup(id, &q);
	assert_ptr_equal(r, r2);
	ws_resource_put(r2);
	/* a server port a rule names: its own resource */
	q.port = 8443;
	r2 = ws_identity_lookup(id, &q);
	assert_ptr_not_equal(r, r2);
	assert_string_equal(str(r2, "service.name"), "edge");
	ws_resource_put(r2);
	q.port = 9000; /* no rule: the base resource */
	r2 = ws_identity_lookup(id, &q);
	assert_ptr_equal(r, r2);
	ws_resource_put(r2);
	q.port = 0;
	/* a thread with another comm, same executable: no rebuild */
	q.comm = "C2 CompilerThre";
	r2 = ws_identity_lookup(id, &q);
	assert_ptr_equal(r, r2);
	ws_resource_put(r2);
	/* exec: another comm and another executable */
	fake_proc(77, "python3", "0::/user.slice\n");
	q.comm = "python3";
	r2 = ws_identity_lookup(id, &q);
	assert_ptr_not_equal(r, r2);
	assert_string_equal(str(r2, "process.executable.name"), "python3");
	assert_null(str(r2, "container.id"));
	assert_string_equal(str(r2, "service.name"), "unknown_service:python3");
	ws_resource_put(r2);
	ws_resource_put(r);
	ws_identity_stats(id, &is);
	assert_int_equal(is.exec, 1);
	assert_int_equal(is.k8s_refresh, 1);
	assert_int_equal(is.misses, 1);
	ws_identity_free(id);
	json_object_put(pod);
	ws_k8s_store_free(st);
	ws_service_cfg_free(&svc);
}

static void identity_bounded(void **state)
{
	struct ws_identity_cfg cfg = {
		.proc_root = root, .cgroup_root = "", .max_procs = 8};
	struct ws_identity_stats is;
	struct ws_identity *id = ws_identity_new_cfg(&cfg);
	uint32_t pid;

	for (pid = 1000; pid < 1100; pid++)
		ws_resource_put(ws_identity_resource(id, pid, "ghost"));
	ws_identity_stats(id, &is);
	assert_int_equal(is.cached, 8);
	assert_int_equal(is.evicted, 92);
	assert_int_equal(is.proc_gone, 100);
	ws_identity_forget(id, 1099);
	ws_identity_stats(id, &is);
	assert_int_equal(is.cached, 7);
	ws_identity_free(id);
}

static void net_tcp(void **state)
{
	/* 127.0.0.1:4222 <-> 127.0.0.1:51234, and a v6 one */
	static const char tcp[] =
		"  sl  local_address rem_address   st tx_queue rx_queue tr "
		"tm->when retrnsmt   uid  timeout inode\n"
		"   0: 0100007F:107E 00000000:0000 0A 00000000:00000000 "
		"00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0\n"
		"   1: 0100007F:107E 0100007F:C822 01 00000000:00000000 "
		"00:00000000 00000000     0        0 2222 1 0 20 4 30 10 -1\n"
		"   2: 0100007F:C822 0100007F:107E 01 00000000:00000000 "
		"00:00000000 00000000     0        0 3333 1 0 20 4 30 10 -1\n";
	static const char tcp6[] =
		"  sl  local_address                         remote_address"
		"                        st\n"
		"   0: 00000000000000000000000001000000:1F90 "
		"00000000000000000000000001000000:D431 01 00000000:00000000 "
		"00:00000000 00000000     0        0 4444 1\n";
	uint8_t a[16] = {0, 0, 0,    0,	   0,	0, 0, 0,
			 0, 0, 0xff, 0xff, 127, 0, 0, 1};
	uint8_t lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

	mkdir("/tmp", 0755);
	{
		char d[128];

		snprintf(d, sizeof(d), "%s/net", root);
		mkdir(d, 0755);
	}
	put("net/tcp", tcp, sizeof(tcp) - 1);
	put("net/tcp6", tcp6, sizeof(tcp6) - 1);
	assert_int_equal(ws_peers_socket_inode(root, a, 4222, a, 51234), 2222);
	assert_int_equal(ws_peers_socket_inode(root, a, 51234, a, 4222), 3333);
	assert_int_equal(ws_peers_socket_inode(root, a, 4222, a, 1), 0);
	assert_int_equal(ws_peers_socket_inode(root, lo6, 8080, lo6, 54321),
			 4444);
	/* which process holds the socket */
	{
		char d[128];

		snprintf(d, sizeof(d), "%s/4242", root);
		mkdir(d, 0755);
		snprintf(d, sizeof(d), "%s/4242/fd", root);
		mkdir(d, 0755);
		snprintf(d, sizeof(d), "%s/4242/fd/7", root);
		assert_int_equal(symlink("socket:[3333]", d), 0);
	}
	assert_int_equal(ws_peers_inode_pid(root, 3333), 4242);
	assert_int_equal(ws_peers_inode_pid(root, 2222), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(name_order),
		cmocka_unit_test(bad_rules),
		cmocka_unit_test(identity_in_pod),
		cmocka_unit_test(identity_bounded),
		cmocka_unit_test(net_tcp),
	};

	return cmocka_run_group_tests(tests, setup_root, teardown_root);
}
