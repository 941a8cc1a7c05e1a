/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "enrich.h"
#include "log.h"

const char ws_enrich_usage[] =
	"      --node-name NAME    Kubernetes node (default $NODE_NAME)\n"
	"      --k8s-api URL       API server (default in-cluster: https://\n"
	"                          $KUBERNETES_SERVICE_HOST:$..._PORT)\n"
	"      --k8s-token PATH    service-account token file\n"
	"      --k8s-ca PATH       CA bundle of the API server\n"
	"      --no-k8s            do not watch pods\n"
	"      --k8s-label NAME    export pod label NAME as\n"
	"                          k8s.pod.label.NAME (repeatable)\n"
	"      --service-rule R    NAME=COND[,COND...], COND one of\n"
	"                          label:K=GLOB namespace:GLOB "
	"container:GLOB\n"
	"                          exe:GLOB port:N (repeatable; first match\n"
	"                          sets service.name)\n";

void ws_enrich_cfg_init(struct ws_enrich_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->proc_root = "/proc";
	cfg->k8s_sync_ms = 3000;
}

int ws_enrich_cfg_opt(struct ws_enrich_cfg *cfg, const char *name,
		      const char *arg)
{
	if (!strcmp(name, "node-name"))
		cfg->node_name = arg;
	else if (!strcmp(name, "k8s-api"))
		cfg->k8s_api = arg;
	else if (!strcmp(name, "k8s-token"))
		cfg->k8s_token = arg;
	else if (!strcmp(name, "k8s-ca"))
		cfg->k8s_ca = arg;
	else if (!strcmp(name, "no-k8s"))
		cfg->no_k8s = true;
	else if (!strcmp(name, "k8s-label")) {
		if (!arg || !*arg)
			return -EINVAL;
		if (cfg->n_labels >= WS_K8S_MAX_ALLOW)
			return -E2BIG;
		cfg->labels[cfg->n_labels++] = arg;
	} else if (!strcmp(name, "service-rule"))
		return ws_service_rule_add(&cfg->svc, arg);
	else
		return -ENOENT;
	return 0;
}

void ws_enrich_cfg_free(struct ws_enrich_cfg *cfg)
{
	ws_service_cfg_free(&cfg->svc);
}

int ws_enrich_start(struct ws_enrich *en, struct ws_enrich_cfg *cfg)
{
	struct ws_k8s_cfg kc = {0};
	struct ws_identity_cfg ic = {0};
	struct ws_peers_cfg pc = {0};
	const char *keep[WS_K8S_MAX_ALLOW + WS_SERVICE_MAX_RULES];
	char url[512];
	size_t n_keep;

	memset(en, 0, sizeof(*en));
	en->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg)); /* rules are ours now */
	cfg = &en->cfg;
	kc.api_url = cfg->k8s_api;
	kc.token_path = cfg->k8s_token;
	kc.ca_path = cfg->k8s_ca;
	kc.node_name = cfg->node_name;
	if (!cfg->node_name)
		cfg->node_name = getenv("NODE_NAME");
	if (!cfg->no_k8s && ws_k8s_configured(&kc, url, sizeof(url))) {
		/* the store keeps the exported labels and those rules test */
		memcpy(keep, cfg->labels, cfg->n_labels * sizeof(keep[0]));
		n_keep =
			cfg->n_labels +
			ws_service_cfg_labels(&cfg->svc, keep + cfg->n_labels,
					      WS_K8S_MAX_ALLOW - cfg->n_labels);
		en->store = ws_k8s_store_new(0, keep, n_keep);
		if (!en->store)
			return -errno;
		en->k8s = ws_k8s_start(&kc, en->store);
		if (!en->k8s) {
			ws_warn("k8s: API %s configured but no node name "
				"(NODE_NAME or --node-name): no pod metadata",
				url);
			ws_k8s_store_free(en->store);
			en->store = NULL;
		} else if (!ws_k8s_wait_synced(en->k8s, cfg->k8s_sync_ms)) {
			ws_warn("k8s: no pod list from %s after %u ms; going "
				"on "
				"(pods are added as they come)",
				url, cfg->k8s_sync_ms);
		}
	}
	ic.proc_root = cfg->proc_root;
	ic.svc = &cfg->svc;
	ic.k8s = en->store;
	ic.node_name = cfg->node_name;
	ic.labels = cfg->labels;
	ic.n_labels = cfg->n_labels;
	ic.redact = cfg->redact;
	en->ids = ws_identity_new_cfg(&ic);
	pc.proc_root = cfg->proc_root;
	pc.ids = en->ids;
	pc.k8s = en->store;
	pc.svc = &cfg->svc;
	en->peers = ws_peers_new(&pc);
	if (!en->ids || !en->peers) {
		ws_enrich_stop(en);
		return -ENOMEM;
	}
	return 0;
}

void ws_enrich_stop(struct ws_enrich *en)
{
	ws_k8s_stop(en->k8s);
	en->k8s = NULL;
	ws_peers_free(en->peers);
	en->peers = NULL;
	ws_identity_free(en->ids);
	en->ids = NULL;
	ws_k8s_store_free(en->store);
	en->store = NULL;
	ws_enrich_cfg_free(&en->cfg);
}

struct ws_resource *ws_enrich_resource(struct ws_enrich *en,
				       const struct ws_conn *c)
{
	struct ws_identity_query q = {
		.tgid = c->id.tgid,
		.comm = c->comm,
		.cgroup_id = c->cgroup_id,
		.port = c->role == WS_ROLE_SERVER ? c->tuple.lport : 0,
	};

	struct ws_resource *r = ws_identity_lookup(en->ids, &q);

	ws_peers_note(en->peers, &c->tuple, c->id.tgid, r);
	return r;
}

struct ws_resource *ws_enrich_peer(struct ws_enrich *en,
				   const struct ws_conn *c)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ws_peers_lookup(en->peers, &c->tuple, c->id.tgid,
			       (uint64_t)ts.tv_sec * 1000000000ull +
				       (uint64_t)ts.tv_nsec);
}

void ws_enrich_conn_closed(struct ws_enrich *en, const struct ws_conn *c)
{
	ws_peers_forget(en->peers, &c->tuple);
}

void ws_enrich_proc_exit(struct ws_enrich *en, uint32_t tgid)
{
	ws_identity_forget(en->ids, tgid);
}

size_t ws_enrich_sweep(struct ws_enrich *en)
{
	return ws_identity_sweep(en->ids) + ws_peers_sweep(en->peers);
}

/* The agent's heap (mallinfo2: every arena) and what the pod store and the
 * process cache hold of it (docs/BENCHMARKS.md, agent memory). */
static void put_memory(struct ws_enrich *en, struct ws_jsonw *w)
{
	struct mallinfo2 mi = mallinfo2();
	struct ws_k8s_store_stats ss = {0};
	struct ws_identity_stats is;

	ws_identity_stats(en->ids, &is);
	if (en->store)
		ws_k8s_store_stats(en->store, &ss);
	jw_obj_open(w, "memory");
	jw_u64(w, "heap_arena", mi.arena);
	jw_u64(w, "heap_mmap", mi.hblkhd);
	jw_u64(w, "heap_in_use", mi.uordblks);
	jw_u64(w, "heap_free", mi.fordblks);
	jw_u64(w, "identity_bytes", ws_identity_bytes(en->ids));
	jw_u64(w, "identity_procs", is.cached);
	jw_u64(w, "k8s_store_bytes",
	       en->store ? ws_k8s_store_bytes(en->store) : 0);
	jw_u64(w, "k8s_pods", ss.pods);
	jw_obj_close(w);
}

void ws_enrich_metrics(struct ws_enrich *en, struct ws_jsonw *w)
{
	struct ws_identity_stats is;
	struct ws_peers_stats ps;

	ws_identity_stats(en->ids, &is);
	jw_obj_open(w, "identity");
	jw_u64(w, "lookups", is.lookups);
	jw_u64(w, "misses", is.misses);
	jw_u64(w, "evicted", is.evicted);
	jw_u64(w, "proc_gone", is.proc_gone);
	jw_u64(w, "exec", is.exec);
	jw_u64(w, "cgroup_changed", is.cgroup_changed);
	jw_u64(w, "k8s_refresh", is.k8s_refresh);
	jw_u64(w, "containers", is.containers);
	jw_u64(w, "pods", is.pods);
	jw_u64(w, "pod_unknown", is.pod_unknown);
	jw_u64(w, "cgroup_by_id", is.cgroup_by_id);
	jw_u64(w, "cgroup_by_proc", is.cgroup_by_proc);
	jw_u64(w, "variants_dropped", is.variants_dropped);
	jw_u64(w, "forgotten", is.forgotten);
	jw_u64(w, "swept", is.swept);
	jw_u64(w, "cached", is.cached);
	jw_obj_close(w);
	if (en->k8s) {
		struct ws_k8s_store_stats ss;
		struct ws_k8s_stats ks;

		ws_k8s_stats(en->k8s, &ks);
		ws_k8s_store_stats(en->store, &ss);
		jw_obj_open(w, "k8s");
		jw_u64(w, "requests", ks.requests);
		jw_u64(w, "http_errors", ks.http_errors);
		jw_u64(w, "net_errors", ks.net_errors);
		jw_u64(w, "token_errors", ks.token_errors);
		jw_u64(w, "lists", ks.watch.lists);
		jw_u64(w, "list_pages", ks.watch.list_pages);
		jw_u64(w, "list_errors", ks.watch.list_errors);
		jw_u64(w, "watches", ks.watch.watches);
		jw_u64(w, "watch_ends", ks.watch.watch_ends);
		jw_u64(w, "watch_dropped", ks.watch.watch_dropped);
		jw_u64(w, "watch_errors", ks.watch.watch_errors);
		jw_u64(w, "gone", ks.watch.gone);
		jw_u64(w, "added", ks.watch.added);
		jw_u64(w, "modified", ks.watch.modified);
		jw_u64(w, "deleted", ks.watch.deleted);
		jw_u64(w, "bookmarks", ks.watch.bookmarks);
		jw_u64(w, "error_events", ks.watch.error_events);
		jw_u64(w, "bad_events", ks.watch.bad_events);
		jw_u64(w, "events_too_long", ks.watch.events_too_long);
		jw_u64(w, "pages_too_big", ks.watch.pages_too_big);
		jw_u64(w, "backoffs", ks.watch.backoffs);
		jw_u64(w, "trims", ks.watch.trims);
		jw_u64(w, "pods", ss.pods);
		jw_u64(w, "pods_evicted", ss.evicted);
		jw_u64(w, "pods_purged", ss.purged);
		jw_u64(w, "containers_dropped", ss.containers_dropped);
		jw_u64(w, "labels_dropped", ss.labels_dropped);
		jw_u64(w, "bad_pods", ss.bad_pods);
		jw_u64(w, "nomem", ss.nomem);
		jw_obj_close(w);
	}
	put_memory(en, w);
	ws_peers_stats(en->peers, &ps);
	jw_obj_open(w, "peers");
	jw_u64(w, "lookups", ps.lookups);
	jw_u64(w, "pod", ps.pod);
	jw_u64(w, "learned", ps.learned);
	jw_u64(w, "scanned", ps.scanned);
	jw_u64(w, "pending", ps.pending);
	jw_u64(w, "late", ps.late);
	jw_u64(w, "pending_evicted", ps.pending_evicted);
	jw_u64(w, "remote", ps.remote);
	jw_u64(w, "scan_limited", ps.scan_limited);
	jw_u64(w, "evicted", ps.evicted);
	jw_u64(w, "forgotten", ps.forgotten);
	jw_u64(w, "swept", ps.swept);
	jw_u64(w, "endpoints", ps.endpoints);
	jw_u64(w, "pending_now", ps.pending_now);
	jw_obj_close(w);
}
