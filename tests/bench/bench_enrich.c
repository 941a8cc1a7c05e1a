/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Enrichment cost and memory (`make bench`, part 5; docs/BENCHMARKS.md).
 *
 * Builds a fake /proc of N processes, each in a kubepods cgroup of its own
 * pod, and a pod store of P pods (the shape tests/peers/py/fake_apiserver.py
 * --synth gives), then:
 *   - misses: the first lookup of every process (reads its fake /proc);
 *   - hit: ws_identity_lookup of a cached process (hash lookup, the
 *     revalidation compares, the pod store generation check) + put;
 *   - span: what each span pays on top: ws_span_set_resource (a reference)
 *     and the peer attributes copied in (5 attributes, as agent/peers.c
 *     gives for a local peer in a pod);
 *   - RSS growth of this process for the N cached resources and P pods.
 * Prints one JSON line.
 *
 * usage: bench_enrich [PROCS [PODS [SECONDS]]]   (default 10000 10000 2)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "identity.h"
#include "k8s_pods.h"
#include "peers.h"
#include "span.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

static int put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static char root[64];

static int make_proc(unsigned k)
{
	char path[256], text[512];

	snprintf(path, sizeof(path), "%s/%u", root, 10000 + k);
	if (mkdir(path, 0755) && errno != EEXIST)
		return -1;
	snprintf(path, sizeof(path), "%s/%u/stat", root, 10000 + k);
	snprintf(text, sizeof(text),
		 "%u (app) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %u 1 1",
		 10000 + k, 5000 + k);
	put(path, text);
	snprintf(path, sizeof(path), "%s/%u/cmdline", root, 10000 + k);
	put(path, "/usr/bin/app");
	snprintf(path, sizeof(path), "%s/%u/cgroup", root, 10000 + k);
	snprintf(text, sizeof(text),
		 "0::/kubepods.slice/kubepods-burstable.slice/"
		 "kubepods-burstable-pod%08x_0000_0000_0000_%012x.slice/"
		 "cri-containerd-%064x.scope\n",
		 0u, k + 1, 2 * k + 1);
	put(path, text);
	snprintf(path, sizeof(path), "%s/%u/exe", root, 10000 + k);
	unlink(path);
	return symlink("/usr/bin/app", path);
}

/* The same pod as fake_apiserver.py's synth_pod(k). */
static struct json_object *synth_pod(unsigned k)
{
	char buf[2048];

	snprintf(
		buf, sizeof(buf),
		"{\"metadata\":{\"name\":\"synth-%05u-7d9f8b6c5d-%05x\","
		"\"namespace\":\"ns-%u\",\"uid\":\"%08x-0000-0000-0000-%012x\","
		"\"labels\":{\"app.kubernetes.io/name\":\"svc-%u\","
		"\"pod-template-hash\":\"7d9f8b6c5d\",\"tier\":\"web\"},"
		"\"ownerReferences\":[{\"kind\":\"ReplicaSet\",\"controller\":"
		"true,\"name\":\"synth-%05u-7d9f8b6c5d\"}]},"
		"\"spec\":{\"nodeName\":\"worker-2\",\"serviceAccountName\":"
		"\"default\",\"containers\":[{\"name\":\"app\"},{\"name\":"
		"\"sidecar\"}]},\"status\":{\"podIP\":\"10.%u.%u.%u\","
		"\"containerStatuses\":[{\"name\":\"app\",\"containerID\":"
		"\"containerd://%064x\"},{\"name\":\"sidecar\",\"containerID\":"
		"\"containerd://%064x\"}]}}",
		k, k, k % 50, 0u, k + 1, k % 500, k, 100 + k / 65536,
		(k / 256) % 256, k % 256, 2 * k + 1, 2 * k + 2);
	return json_tokener_parse(buf);
}

int main(int argc, char **argv)
{
	unsigned procs = argc > 1 ? (unsigned)atoi(argv[1]) : 10000;
	unsigned pods = argc > 2 ? (unsigned)atoi(argv[2]) : 10000;
	double secs = argc > 3 ? atof(argv[3]) : 2.0;
	static const char *const labels[] = {"tier"};
	struct ws_identity_cfg cfg = {.cgroup_root = "",
				      .max_procs = 16384,
				      .labels = labels,
				      .n_labels = 1,
				      .node_name = "worker-2"};
	struct ws_identity_stats is;
	struct ws_resource *peer, *r;
	struct ws_k8s_store *st;
	struct ws_identity *id;
	uint64_t t0, t1, n_hit = 0, n_span = 0, hit_ns, span_ns, miss_ns;
	long rss0, rss_pods, rss_procs;
	unsigned k;
	char cmd[128];
	int rc = 0;

	snprintf(root, sizeof(root), "/tmp/ws-bench-proc-XXXXXX");
	if (!mkdtemp(root))
		return 1;
	for (k = 0; k < procs; k++)
		if (make_proc(k)) {
			perror("fake /proc");
			return 1;
		}
	rss0 = rss_kb();
	st = ws_k8s_store_new(0, labels, 1);
	for (k = 0; k < pods; k++) {
		struct json_object *o = synth_pod(k);

		if (ws_k8s_store_upsert(st, o, 1))
			rc = 1;
		json_object_put(o);
	}
	rss_pods = rss_kb();
	cfg.proc_root = root;
	cfg.k8s = st;
	id = ws_identity_new_cfg(&cfg);
	t0 = now_ns();
	for (k = 0; k < procs; k++) {
		struct ws_identity_query q = {.tgid = 10000 + k, .comm = "app"};

		ws_resource_put(ws_identity_lookup(id, &q));
	}
	miss_ns = procs ? (now_ns() - t0) / procs : 0;
	rss_procs = rss_kb();
	ws_identity_stats(id, &is);
	/* hits, round robin over every cached process */
	t0 = now_ns();
	do {
		for (k = 0; k < 1000; k++) {
			struct ws_identity_query q = {
				.tgid = 10000 + (unsigned)(n_hit % procs),
				.comm = "app"};

			ws_resource_put(ws_identity_lookup(id, &q));
			n_hit++;
		}
		t1 = now_ns();
	} while (t1 - t0 < (uint64_t)(secs * 1e9));
	hit_ns = t1 - t0;
	/* per span: the resource reference and the peer attributes */
	peer = ws_resource_new(0);
	ws_attrs_cstr(&peer->a, "peer.service", "svc-42");
	ws_attrs_int(&peer->a, "wirespan.peer.process.pid", 4242);
	ws_attrs_cstr(&peer->a, "wirespan.peer.process.executable.name", "app");
	ws_attrs_cstr(&peer->a, "wirespan.peer.k8s.pod.name",
		      "synth-00042-7d9f8b6c5d-0002a");
	ws_attrs_cstr(&peer->a, "wirespan.peer.k8s.namespace.name", "ns-42");
	r = ws_identity_resource(id, 10000, "app");
	t0 = now_ns();
	do {
		for (k = 0; k < 1000; k++) {
			struct ws_span *s = ws_span_new("x", 3, 1, NULL);

			ws_span_set_resource(s, r);
			ws_attrs_copy(&s->a, &peer->a);
			ws_span_free(s);
			n_span++;
		}
		t1 = now_ns();
	} while (t1 - t0 < (uint64_t)(secs * 1e9));
	span_ns = t1 - t0;
	/* the same loop without the enrichment, to subtract */
	{
		uint64_t n_base = 0, base_ns;

		t0 = now_ns();
		do {
			for (k = 0; k < 1000; k++) {
				struct ws_span *s =
					ws_span_new("x", 3, 1, NULL);

				ws_span_free(s);
				n_base++;
			}
			t1 = now_ns();
		} while (t1 - t0 < (uint64_t)(secs * 1e9));
		base_ns = t1 - t0;
		printf("{\"procs\":%u,\"pods\":%u,\"cached\":%llu,"
		       "\"pods_in_store\":%u,\"with_pod\":%llu,"
		       "\"miss_ns\":%llu,\"hit_ns\":%.1f,"
		       "\"span_enrich_ns\":%.1f,\"span_alloc_ns\":%.1f,"
		       "\"rss_base_kb\":%ld,\"rss_pods_kb\":%ld,"
		       "\"rss_procs_kb\":%ld}\n",
		       procs, pods, (unsigned long long)is.cached, pods,
		       (unsigned long long)is.pods, (unsigned long long)miss_ns,
		       (double)hit_ns / n_hit,
		       (double)span_ns / n_span - (double)base_ns / n_base,
		       (double)base_ns / n_base, rss0, rss_pods - rss0,
		       rss_procs - rss_pods);
	}
	ws_resource_put(r);
	ws_resource_put(peer);
	ws_identity_free(id);
	ws_k8s_store_free(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd))
		rc = 1;
	return rc;
}
