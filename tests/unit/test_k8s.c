/* SPDX-License-Identifier: Apache-2.0 */
/* Pods from Pod JSON (tests/fixtures/k8s), the bounded store, and the
 * list+watch state machine fed canned API responses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "k8s_pods.h"
#include "k8s_watch.h"

#define FIXTURES "tests/fixtures/k8s/"

static struct json_object *fixture(const char *name)
{
	char path[256];
	struct json_object *o;

	snprintf(path, sizeof(path), FIXTURES "%s.json", name);
	o = json_object_from_file(path);
	assert_non_null(o);
	return o;
}

/* What a lookup saw, copied out from under the lock. */
struct seen {
	char name[128], ns[64], container[64], workload[128], sa[64];
	char owner[2][2][128];
	char label_tier[32], label_app[64];
	const char *runtime;
	int n_owner, n_containers;
	bool host_network;
};

static int see(const struct ws_k8s_pod *p, const struct ws_k8s_container *c,
	       void *ctx)
{
	struct seen *s = ctx;
	const char *v;
	int i;

	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", p->name);
	snprintf(s->ns, sizeof(s->ns), "%s", p->ns);
	snprintf(s->container, sizeof(s->container), "%s", c ? c->name : "");
	snprintf(s->workload, sizeof(s->workload), "%s",
		 ws_k8s_pod_workload(p) ? ws_k8s_pod_workload(p) : "");
	snprintf(s->sa, sizeof(s->sa), "%s",
		 p->service_account ? p->service_account : "");
	for (i = 0; i < p->n_owner; i++) {
		snprintf(s->owner[i][0], 128, "%s", p->owner[i].key);
		snprintf(s->owner[i][1], 128, "%s", p->owner[i].name);
	}
	s->n_owner = p->n_owner;
	s->n_containers = p->n_containers;
	v = ws_k8s_pod_label(p, "tier");
	snprintf(s->label_tier, sizeof(s->label_tier), "%s", v ? v : "");
	v = ws_k8s_pod_label(p, "app.kubernetes.io/name");
	if (!v)
		v = ws_k8s_pod_label(p, "app");
	snprintf(s->label_app, sizeof(s->label_app), "%s", v ? v : "");
	s->runtime = c ? c->runtime : NULL;
	s->host_network = p->host_network;
	return 7;
}

static const char *const allow[] = {"tier", "app.kubernetes.io/part-of"};

/* The container id of container k of a fixture's status. */
static const char *status_cid(struct json_object *pod, int k)
{
	struct json_object *st, *arr, *c, *id;
	const char *s;

	json_object_object_get_ex(pod, "status", &st);
	json_object_object_get_ex(st, "containerStatuses", &arr);
	c = json_object_array_get_idx(arr, k);
	json_object_object_get_ex(c, "containerID", &id);
	s = json_object_get_string(id);
	return strstr(s, "://") + 3;
}

static const char *uid_of(struct json_object *pod)
{
	struct json_object *m, *u;

	json_object_object_get_ex(pod, "metadata", &m);
	json_object_object_get_ex(m, "uid", &u);
	return json_object_get_string(u);
}

static void owners_and_containers(void **state)
{
	struct ws_k8s_store *st = ws_k8s_store_new(0, allow, 2);
	static const struct {
		const char *fixture, *owner_key, *owner, *owner2_key, *owner2;
		const char *workload, *container, *app, *runtime;
		int n_containers;
	} want[] = {
		{"checkout", "k8s.replicaset.name", "checkout-7d9f8b6c5d",
		 "k8s.deployment.name", "checkout", "checkout", "checkout",
		 "checkout", "containerd", 3},
		{"nats", "k8s.statefulset.name", "nats", NULL, NULL, "nats",
		 "nats", "nats", "containerd", 2},
		{"fluentbit", "k8s.daemonset.name", "fluent-bit", NULL, NULL,
		 "fluent-bit", "fluent-bit", "", "containerd", 1},
		{"report", "k8s.job.name", "report-28591200",
		 "k8s.cronjob.name", "report", "report", "report", "",
		 "containerd", 1},
		{"debug", NULL, NULL, NULL, NULL, "", "shell", "", "cri-o", 1},
		{"orders", "k8s.replicaset.name", "orders-5f6d7c8b9a",
		 "k8s.deployment.name", "orders", "orders", "orders",
		 "orders-legacy", "containerd", 1},
	};
	struct seen s;
	size_t i;

	assert_non_null(st);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct json_object *pod = fixture(want[i].fixture);

		print_message("%s\n", want[i].fixture);
		assert_int_equal(ws_k8s_store_upsert(st, pod, 1), 0);
		/* by container id: the container is known */
		assert_int_equal(ws_k8s_store_with_pod(
					 st, NULL, status_cid(pod, 0), see, &s),
				 7);
		assert_string_equal(s.container, want[i].container);
		assert_string_equal(s.workload, want[i].workload);
		assert_string_equal(s.label_app, want[i].app);
		assert_string_equal(s.runtime, want[i].runtime);
		assert_int_equal(s.n_containers, want[i].n_containers);
		assert_int_equal(s.n_owner,
				 !!want[i].owner_key + !!want[i].owner2_key);
		if (want[i].owner_key) {
			assert_string_equal(s.owner[0][0], want[i].owner_key);
			assert_string_equal(s.owner[0][1], want[i].owner);
		}
		if (want[i].owner2_key) {
			assert_string_equal(s.owner[1][0], want[i].owner2_key);
			assert_string_equal(s.owner[1][1], want[i].owner2);
		}
		/* by pod uid: no container */
		assert_int_equal(
			ws_k8s_store_with_pod(st, uid_of(pod), "", see, &s), 7);
		assert_string_equal(s.container, "");
		json_object_put(pod);
	}
	/* allowed labels only; a sidecar is its own container */
	{
		struct json_object *pod = fixture("checkout");

		ws_k8s_store_with_pod(st, NULL, status_cid(pod, 1), see, &s);
		assert_string_equal(s.container, "istio-proxy");
		assert_string_equal(s.label_tier, "web");
		assert_string_equal(s.sa, "checkout");
		assert_string_equal(s.ns, "shop");
		json_object_put(pod);
	}
	assert_int_equal(ws_k8s_store_with_pod(st, "nope", "abc", see, &s),
			 -ENOENT);
	ws_k8s_store_free(st);
}

static void pod_ips(void **state)
{
	struct ws_k8s_store *st = ws_k8s_store_new(0, NULL, 0);
	struct json_object *a = fixture("checkout"), *b = fixture("fluentbit");
	uint8_t ip[16] = {0, 0, 0,    0,    0,	0,   0, 0,
			  0, 0, 0xff, 0xff, 10, 244, 1, 17};
	uint8_t host[16] = {0, 0, 0,	0,    0,   0,  0, 0,
			    0, 0, 0xff, 0xff, 172, 18, 0, 3};
	struct seen s;

	ws_k8s_store_upsert(st, a, 1);
	ws_k8s_store_upsert(st, b, 1);
	assert_int_equal(ws_k8s_store_with_ip(st, ip, see, &s), 7);
	assert_string_equal(s.name, "checkout-7d9f8b6c5d-x2k9p");
	/* host-network pods share the node's IP: not a pod's address */
	assert_int_equal(ws_k8s_store_with_ip(st, host, see, &s), -ENOENT);
	/* deleted: gone from every index */
	assert_int_equal(ws_k8s_store_delete(st, a), 0);
	assert_int_equal(ws_k8s_store_with_ip(st, ip, see, &s), -ENOENT);
	assert_int_equal(
		ws_k8s_store_with_pod(st, NULL, status_cid(a, 0), see, &s),
		-ENOENT);
	assert_int_equal(ws_k8s_store_delete(st, a), -ENOENT);
	json_object_put(a);
	json_object_put(b);
	ws_k8s_store_free(st);
}

/* A pod object with a given uid, name and container id. */
static struct json_object *synth_pod(unsigned k)
{
	char buf[1024];

	snprintf(buf, sizeof(buf),
		 "{\"metadata\":{\"uid\":\"uid-%u\",\"name\":\"p%u\","
		 "\"namespace\":\"ns\"},\"spec\":{\"containers\":[{\"name\":"
		 "\"c\"}]},\"status\":{\"podIP\":\"10.0.%u.%u\","
		 "\"containerStatuses\":[{\"name\":\"c\",\"containerID\":"
		 "\"containerd://%064x\"}]}}",
		 k, k, k >> 8, k & 255, k);
	return json_tokener_parse(buf);
}

static void bounded_store(void **state)
{
	struct ws_k8s_store *st = ws_k8s_store_new(100, NULL, 0);
	struct ws_k8s_store_stats ss;
	struct seen s;
	char cid[65];
	unsigned k;

	for (k = 0; k < 1000; k++) {
		struct json_object *p = synth_pod(k);

		assert_int_equal(ws_k8s_store_upsert(st, p, k < 500 ? 1 : 2),
				 0);
		json_object_put(p);
	}
	ws_k8s_store_stats(st, &ss);
	assert_int_equal(ss.pods, 100);
	assert_int_equal(ss.added, 1000);
	assert_int_equal(ss.evicted, 900);
	/* the newest are kept, the oldest evicted with their indexes */
	snprintf(cid, sizeof(cid), "%064x", 999u);
	assert_int_equal(ws_k8s_store_with_pod(st, NULL, cid, see, &s), 7);
	snprintf(cid, sizeof(cid), "%064x", 3u);
	assert_int_equal(ws_k8s_store_with_pod(st, NULL, cid, see, &s),
			 -ENOENT);
	/* a re-list with epoch 3 that names only pod 999 purges the rest */
	{
		struct json_object *p = synth_pod(999);

		ws_k8s_store_upsert(st, p, 3);
		json_object_put(p);
	}
	assert_int_equal(ws_k8s_store_purge(st, 3), 99);
	ws_k8s_store_stats(st, &ss);
	assert_int_equal(ss.pods, 1);
	assert_int_equal(ss.updated, 1);
	/* not pods */
	{
		struct json_object *p = json_tokener_parse("{\"metadata\":{}}");

		assert_int_equal(ws_k8s_store_upsert(st, p, 3), -EINVAL);
		json_object_put(p);
		p = json_tokener_parse("[1,2]");
		assert_int_equal(ws_k8s_store_upsert(st, p, 3), -EINVAL);
		json_object_put(p);
	}
	ws_k8s_store_stats(st, &ss);
	assert_int_equal(ss.bad_pods, 2);
	ws_k8s_store_free(st);
}

/* ---- the watch state machine ------------------------------------------ */

static char *pod_text(const char *name)
{
	struct json_object *o = fixture(name);
	char *s = strdup(
		json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));

	json_object_put(o);
	return s;
}

static void feed_bytewise(struct ws_k8s_watch *w, const char *s)
{
	size_t i, n = strlen(s);

	for (i = 0; i < n; i++)
		ws_k8s_watch_feed(w, s + i, 1, 1000);
}

static uint64_t store_pods(struct ws_k8s_store *st)
{
	struct ws_k8s_store_stats ss;

	ws_k8s_store_stats(st, &ss);
	return ss.pods;
}

static void watch_machine(void **state)
{
	struct ws_k8s_store *st = ws_k8s_store_new(0, NULL, 0);
	struct ws_k8s_watch w;
	char url[4096], *body, *ev;
	char *a = pod_text("checkout"), *b = pod_text("nats"),
	     *c = pod_text("orders");
	size_t cap = strlen(a) + strlen(b) + strlen(c) + 512;

	body = malloc(cap);
	ev = malloc(cap);
	ws_k8s_watch_init(&w, st, "worker-2");
	assert_int_equal(w.phase, WS_K8S_LIST);
	assert_int_equal(ws_k8s_watch_url(&w, url, sizeof(url)), 0);
	assert_string_equal(url, "/api/v1/pods?fieldSelector=spec.nodeName%3D"
				 "worker-2&limit=50");
	/* page 1 of 2 */
	snprintf(body, cap,
		 "{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":"
		 "{\"resourceVersion\":\"100\",\"continue\":\"tok/1=\"},"
		 "\"items\":[%s,%s]}",
		 a, b);
	ws_k8s_list_done(&w, 200, body, strlen(body), 1000);
	assert_int_equal(w.phase, WS_K8S_LIST);
	ws_k8s_watch_url(&w, url, sizeof(url));
	assert_non_null(strstr(url, "&continue=tok%2F1%3D"));
	snprintf(body, cap,
		 "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":"
		 "\"105\"},\"items\":[%s]}",
		 c);
	ws_k8s_list_done(&w, 200, body, strlen(body), 1000);
	assert_int_equal(w.phase, WS_K8S_WATCH);
	assert_string_equal(w.rv, "105");
	assert_int_equal(store_pods(st), 3);
	ws_k8s_watch_url(&w, url, sizeof(url));
	assert_string_equal(url,
			    "/api/v1/pods?fieldSelector=spec.nodeName%3D"
			    "worker-2&watch=1&resourceVersion=105"
			    "&allowWatchBookmarks=true&timeoutSeconds=300");
	/* events, one byte at a time: DELETED, a bookmark, junk */
	snprintf(ev, cap, "{\"type\":\"DELETED\",\"object\":%s}\n", b);
	feed_bytewise(&w, ev);
	assert_int_equal(store_pods(st), 2);
	assert_string_equal(w.rv, "4471922"); /* the fixture's rv */
	feed_bytewise(&w, "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\","
			  "\"metadata\":{\"resourceVersion\":\"230\"}}}\n"
			  "not json\n\n{\"type\":\"ADDED\"}\n");
	assert_string_equal(w.rv, "230");
	assert_int_equal(w.st.bookmarks, 1);
	assert_int_equal(w.st.bad_events, 2);
	/* the stream ends cleanly (timeoutSeconds): watch again from 230 */
	ws_k8s_watch_end(&w, 200, false, 2000);
	assert_int_equal(w.phase, WS_K8S_WATCH);
	assert_int_equal(w.st.watch_ends, 1);
	/* the connection drops mid-event: back off, then resume from 230 */
	ws_k8s_watch_feed(&w, "{\"type\":\"ADDED\",\"obj", 20, 3000);
	ws_k8s_watch_end(&w, 200, true, 3000);
	assert_int_equal(w.phase, WS_K8S_BACKOFF);
	assert_int_equal(w.st.watch_dropped, 1);
	assert_false(ws_k8s_watch_ready(&w, 3000 + WS_K8S_BACKOFF_MIN_NS - 1));
	assert_true(ws_k8s_watch_ready(&w, 3000 + WS_K8S_BACKOFF_MIN_NS));
	assert_int_equal(w.phase, WS_K8S_WATCH);
	assert_string_equal(w.rv, "230");
	/* the half event was not applied */
	assert_int_equal(store_pods(st), 2);
	/* 410 Gone as an ERROR event: re-list from scratch */
	feed_bytewise(&w, "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\","
			  "\"apiVersion\":\"v1\",\"status\":\"Failure\","
			  "\"message\":\"too old resource version: 230 "
			  "(400)\",\"reason\":\"Expired\",\"code\":410}}\n");
	assert_int_equal(w.phase, WS_K8S_LIST);
	assert_int_equal(w.st.gone, 1);
	assert_string_equal(w.rv, "");
	/* the re-list no longer has checkout: purged */
	snprintf(body, cap,
		 "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":"
		 "\"400\"},\"items\":[%s]}",
		 c);
	ws_k8s_list_done(&w, 200, body, strlen(body), 4000);
	assert_int_equal(store_pods(st), 1);
	assert_int_equal(w.phase, WS_K8S_WATCH);
	/* HTTP errors back off exponentially, capped */
	{
		uint64_t now = 10000, d, last = 0;
		int i;

		for (i = 0; i < 12; i++) {
			ws_k8s_watch_end(&w, 500, false, now);
			assert_int_equal(w.phase, WS_K8S_BACKOFF);
			d = w.backoff_until_ns - now;
			assert_true(d >= last);
			assert_true(d <= WS_K8S_BACKOFF_MAX_NS);
			last = d;
			now = w.backoff_until_ns;
			assert_true(ws_k8s_watch_ready(&w, now));
			assert_int_equal(w.phase, WS_K8S_WATCH);
		}
		assert_int_equal(last, WS_K8S_BACKOFF_MAX_NS);
		/* 410 on the watch request itself, with no event since the
		 * list: re-list, but after a backoff (no list loop) */
		ws_k8s_watch_end(&w, 410, false, now);
		assert_int_equal(w.phase, WS_K8S_BACKOFF);
		assert_string_equal(w.rv, "");
		assert_true(ws_k8s_watch_ready(&w, w.backoff_until_ns));
		assert_int_equal(w.phase, WS_K8S_LIST);
		/* a list that fails backs off and lists again */
		ws_k8s_list_done(&w, 0, "", 0, now);
		assert_int_equal(w.phase, WS_K8S_BACKOFF);
		assert_true(ws_k8s_watch_ready(&w, w.backoff_until_ns));
		assert_int_equal(w.phase, WS_K8S_LIST);
		ws_k8s_list_done(&w, 200, "{\"items\":", 9, now);
		assert_int_equal(w.phase, WS_K8S_BACKOFF);
		assert_int_equal(w.st.list_errors, 2);
	}
	ws_k8s_watch_free(&w);
	ws_k8s_store_free(st);
	free(a);
	free(b);
	free(c);
	free(body);
	free(ev);
}

static void watch_long_line(void **state)
{
	struct ws_k8s_store *st = ws_k8s_store_new(0, NULL, 0);
	struct ws_k8s_watch w;
	size_t n = WS_K8S_MAX_EVENT + 100, i;
	char *big = malloc(n);

	ws_k8s_watch_init(&w, st, "n");
	{
		const char *list = "{\"metadata\":{\"resourceVersion\":\"1\"},"
				   "\"items\":[]}";
		const char *bm =
			"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{"
			"\"resourceVersion\":\"9\"}}}\n";

		ws_k8s_list_done(&w, 200, list, strlen(list), 0);
		assert_int_equal(w.phase, WS_K8S_WATCH);
		memset(big, 'x', n);
		for (i = 0; i < n; i += 65536)
			ws_k8s_watch_feed(&w, big + i,
					  n - i < 65536 ? n - i : 65536, 0);
		ws_k8s_watch_feed(&w, "\n", 1, 0);
		assert_int_equal(w.st.events_too_long, 1);
		/* the next line is read normally */
		ws_k8s_watch_feed(&w, bm, strlen(bm), 0);
		assert_string_equal(w.rv, "9");
		assert_true(w.line_cap <= WS_K8S_MAX_EVENT + 1);
	}
	free(big);
	ws_k8s_watch_free(&w);
	ws_k8s_store_free(st);
}

/* Pod events, not bookmarks, and time since the last trim decide when the
 * watcher hands freed memory back (pod churn, docs/BENCHMARKS.md). */
static void watch_trim(void **state)
{
	struct ws_k8s_store *st = ws_k8s_store_new(0, NULL, 0);
	const char *list = "{\"metadata\":{\"resourceVersion\":\"1\"},"
			   "\"items\":[]}";
	const char *del = "{\"type\":\"DELETED\",\"object\":{\"metadata\":{"
			  "\"uid\":\"gone\",\"resourceVersion\":\"5\"}}}\n";
	const char *bm = "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{"
			 "\"resourceVersion\":\"9\"}}}\n";
	const uint64_t s = 1000000000ull;
	struct ws_k8s_watch w;
	unsigned i;

	(void)state;
	ws_k8s_watch_init(&w, st, "n");
	ws_k8s_list_done(&w, 200, list, strlen(list), 0);
	assert_int_equal(w.phase, WS_K8S_WATCH);
	/* bookmarks alone never trim */
	for (i = 0; i < 2 * WS_K8S_TRIM_EVENTS; i++)
		ws_k8s_watch_feed(&w, bm, strlen(bm), 0);
	assert_false(ws_k8s_watch_trim_due(&w, 1000 * s));
	for (i = 0; i < WS_K8S_TRIM_EVENTS - 1; i++)
		ws_k8s_watch_feed(&w, del, strlen(del), 0);
	assert_false(ws_k8s_watch_trim_due(&w, 1000 * s));
	ws_k8s_watch_feed(&w, del, strlen(del), 0);
	assert_int_equal(w.st.deleted, WS_K8S_TRIM_EVENTS);
	assert_true(ws_k8s_watch_trim_due(&w, 1000 * s));
	assert_false(ws_k8s_watch_trim_due(&w, 1000 * s));
	/* enough events again, but not enough time */
	for (i = 0; i < WS_K8S_TRIM_EVENTS; i++)
		ws_k8s_watch_feed(&w, del, strlen(del), 0);
	assert_false(ws_k8s_watch_trim_due(&w, 1000 * s + WS_K8S_TRIM_NS - 1));
	assert_true(ws_k8s_watch_trim_due(&w, 1000 * s + WS_K8S_TRIM_NS));
	assert_int_equal(w.st.trims, 2);
	ws_k8s_watch_free(&w);
	ws_k8s_store_free(st);
}

/* The container id (after "<scheme>://") of status list key, entry k. */
static const char *status_cid_in(struct json_object *pod, const char *key,
				 int k)
{
	struct json_object *st, *arr, *c, *id;

	assert_true(json_object_object_get_ex(pod, "status", &st));
	assert_true(json_object_object_get_ex(st, key, &arr));
	c = json_object_array_get_idx(arr, k);
	assert_true(json_object_object_get_ex(c, "containerID", &id));
	return strstr(json_object_get_string(id), "://") + 3;
}

/*
 * Pods recorded from real clusters (tests/fixtures/k8s/recorded/README.md):
 * whatever else they hold (managedFields, unknown and newer fields, status
 * volumeMounts, PodList wrapping), the store finds every container by its
 * id with the right pod, runtime and owner.
 */
static void recorded_pods(void **state)
{
	static const struct {
		const char *file, *status_list;
		int item, k;
		const char *pod, *ns, *container, *runtime, *workload, *sa;
		const char *owner_key, *owner;
		int n_containers;
	} want[] = {
		{"fluent-bit-kairosdb", "containerStatuses", 0, 0,
		 "kairosdb-914055854-b63vq", "default", "kairosdb", "docker",
		 "kairosdb", "default", "k8s.replicaset.name",
		 "kairosdb-914055854", 1},
		/* the recorded init and main container share one id: the main
		 * container wins */
		{"k9s-po_init", "containerStatuses", 0, 0, "nginx", "default",
		 "nginx", "docker", "", "default", NULL, NULL, 2},
		{"k9s-po_init", "initContainerStatuses", 0, 0, "nginx",
		 "default", "nginx", "docker", "", "default", NULL, NULL, 2},
		{"k9s-po_sidecar", "containerStatuses", 0, 0, "sleep",
		 "default", "sleep", "containerd", "", "default", NULL, NULL,
		 3},
		{"k9s-po_sidecar", "initContainerStatuses", 0, 1, "sleep",
		 "default", "sidecar", "containerd", "", "default", NULL, NULL,
		 3},
		{"odh-dashboard-workbench-podlist", "containerStatuses", 0, 0,
		 "workbench-0", "project", "oauth-proxy", "cri-o", "workbench",
		 "workbench", "k8s.statefulset.name", "workbench", 2},
		{"odh-dashboard-workbench-podlist", "containerStatuses", 0, 1,
		 "workbench-0", "project", "workbench", "cri-o", "workbench",
		 "workbench", "k8s.statefulset.name", "workbench", 2},
	};
	struct ws_k8s_store *st = ws_k8s_store_new(0, allow, 2);
	size_t i;

	assert_non_null(st);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char name[128];
		struct json_object *o, *pod, *items;
		struct seen s;

		print_message("%s %s[%d]\n", want[i].file, want[i].status_list,
			      want[i].k);
		snprintf(name, sizeof(name), "recorded/%s", want[i].file);
		o = fixture(name);
		pod = json_object_object_get_ex(o, "items", &items)
			      ? json_object_array_get_idx(items, want[i].item)
			      : o;
		assert_int_equal(ws_k8s_store_upsert(st, pod, 1), 0);
		assert_int_equal(ws_k8s_store_with_pod(
					 st, NULL,
					 status_cid_in(pod, want[i].status_list,
						       want[i].k),
					 see, &s),
				 7);
		assert_string_equal(s.name, want[i].pod);
		assert_string_equal(s.ns, want[i].ns);
		assert_string_equal(s.container, want[i].container);
		assert_string_equal(s.runtime, want[i].runtime);
		assert_string_equal(s.workload, want[i].workload);
		assert_string_equal(s.sa, want[i].sa);
		assert_int_equal(s.n_containers, want[i].n_containers);
		if (want[i].owner_key) {
			assert_string_equal(s.owner[0][0], want[i].owner_key);
			assert_string_equal(s.owner[0][1], want[i].owner);
		} else {
			assert_int_equal(s.n_owner, 0);
		}
		/* and by its uid, without a container */
		assert_int_equal(
			ws_k8s_store_with_pod(st, uid_of(pod), NULL, see, &s),
			7);
		assert_string_equal(s.name, want[i].pod);
		assert_string_equal(s.container, "");
		json_object_put(o);
	}
	ws_k8s_store_free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(owners_and_containers),
		cmocka_unit_test(recorded_pods),
		cmocka_unit_test(pod_ips),
		cmocka_unit_test(bounded_store),
		cmocka_unit_test(watch_machine),
		cmocka_unit_test(watch_long_line),
		cmocka_unit_test(watch_trim),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
