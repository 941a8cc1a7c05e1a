/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <utlist.h>

#include "k8s_pods.h"

/* Labels service.name reads (docs/ARCHITECTURE.md, "service.name"). */
static const char *const name_labels[] = {"app.kubernetes.io/name", "app"};

struct ws_k8s_store {
	pthread_mutex_t lock;
	size_t max_pods;
	char *allow[WS_K8S_MAX_ALLOW + 2];
	size_t n_allow;
	struct ws_k8s_pod *by_uid;
	struct ws_k8s_container *by_cid;
	struct ws_k8s_pod_ip *by_ip;
	struct ws_k8s_pod *lru; /* head: least recently updated */
	_Atomic uint64_t gen;
	struct ws_k8s_store_stats stats;
};

struct ws_k8s_store *ws_k8s_store_new(size_t max_pods, const char *const *allow,
				      size_t n_allow)
{
	struct ws_k8s_store *st;
	size_t i;

	if (n_allow > WS_K8S_MAX_ALLOW) {
		errno = E2BIG;
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	pthread_mutex_init(&st->lock, NULL);
	st->max_pods = max_pods ? max_pods : WS_K8S_MAX_PODS;
	for (i = 0; i < n_allow + 2; i++) {
		const char *k = i < 2 ? name_labels[i] : allow[i - 2];
		size_t j;

		for (j = 0; j < st->n_allow && strcmp(st->allow[j], k); j++)
			;
		if (j < st->n_allow)
			continue; /* named twice */
		st->allow[st->n_allow] = strdup(k);
		if (!st->allow[st->n_allow++]) {
			ws_k8s_store_free(st);
			errno = ENOMEM;
			return NULL;
		}
	}
	return st;
}

/* ---- parsing ------------------------------------------------------------ */

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static struct json_object *jobj(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

static char *dup_or_null(const char *s, bool *oom)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

static void pod_free(struct ws_k8s_pod *p)
{
	unsigned i;

	free(p->uid);
	free(p->name);
	free(p->ns);
	free(p->node);
	free(p->service_account);
	free(p->resource_version);
	for (i = 0; i < p->n_owner; i++)
		free(p->owner[i].name);
	for (i = 0; i < p->n_labels; i++)
		free(p->labels[i].value);
	for (i = 0; i < p->n_containers; i++)
		free(p->containers[i].name);
	free(p->labels);
	free(p->containers);
	free(p);
}

static size_t pod_bytes(const struct ws_k8s_pod *p)
{
	size_t n = malloc_usable_size((void *)p);
	unsigned i;

	n += malloc_usable_size(p->uid) + malloc_usable_size(p->name) +
	     malloc_usable_size(p->ns) + malloc_usable_size(p->node) +
	     malloc_usable_size(p->service_account) +
	     malloc_usable_size(p->resource_version) +
	     malloc_usable_size(p->labels) + malloc_usable_size(p->containers);
	for (i = 0; i < p->n_owner; i++)
		n += malloc_usable_size(p->owner[i].name);
	for (i = 0; i < p->n_labels; i++)
		n += malloc_usable_size(p->labels[i].value);
	for (i = 0; i < p->n_containers; i++)
		n += malloc_usable_size(p->containers[i].name);
	return n;
}

static void add_owner(struct ws_k8s_pod *p, const char *key, const char *name,
		      size_t len, bool *oom)
{
	char *n = strndup(name, len);

	if (!n) {
		*oom = true;
		return;
	}
	p->owner[p->n_owner].key = key;
	p->owner[p->n_owner++].name = n;
}

/* Does s end with "-" + suffix? */
static bool dash_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = suffix ? strlen(suffix) : 0;

	return k && n > k + 1 && s[n - k - 1] == '-' &&
	       !strcmp(s + n - k, suffix);
}

/* A cronjob's job is named <cronjob>-<scheduled time in minutes>. */
static size_t cronjob_len(const char *job)
{
	const char *dash = strrchr(job, '-');
	size_t i, n;

	if (!dash || dash == job)
		return 0;
	n = strlen(dash + 1);
	if (n < 8)
		return 0;
	for (i = 0; i < n; i++)
		if (dash[1 + i] < '0' || dash[1 + i] > '9')
			return 0;
	return (size_t)(dash - job);
}

/* The controller owner reference: replicaset -> deployment (the
 * pod-template-hash suffix stripped), job -> cronjob. */
static void parse_owner(struct ws_k8s_pod *p, struct json_object *meta,
			const char *template_hash, bool *oom)
{
	struct json_object *refs = jobj(meta, "ownerReferences");
	size_t i, n = refs && json_object_is_type(refs, json_type_array)
			      ? json_object_array_length(refs)
			      : 0;

	for (i = 0; i < n; i++) {
		struct json_object *r = json_object_array_get_idx(refs, i);
		struct json_object *ctl = jobj(r, "controller");
		const char *kind = jstr(r, "kind"), *name = jstr(r, "name");
		size_t len;

		if (!kind || !name || !*name ||
		    (ctl && !json_object_get_boolean(ctl)))
			continue;
		len = strlen(name);
		if (!strcmp(kind, "ReplicaSet")) {
			add_owner(p, "k8s.replicaset.name", name, len, oom);
			if (dash_suffix(name, template_hash))
				add_owner(p, "k8s.deployment.name", name,
					  len - strlen(template_hash) - 1, oom);
		} else if (!strcmp(kind, "StatefulSet")) {
			add_owner(p, "k8s.statefulset.name", name, len, oom);
		} else if (!strcmp(kind, "DaemonSet")) {
			add_owner(p, "k8s.daemonset.name", name, len, oom);
		} else if (!strcmp(kind, "Job")) {
			add_owner(p, "k8s.job.name", name, len, oom);
			if (cronjob_len(name))
				add_owner(p, "k8s.cronjob.name", name,
					  cronjob_len(name), oom);
		} else if (!strcmp(kind, "ReplicationController")) {
			add_owner(p, "k8s.replicationcontroller.name", name,
				  len, oom);
		} else {
			continue;
		}
		return; /* one controller */
	}
}

static void parse_labels(struct ws_k8s_store *st, struct ws_k8s_pod *p,
			 struct json_object *meta, bool *oom)
{
	struct json_object *labels = jobj(meta, "labels");
	size_t i;

	if (!labels || !json_object_is_type(labels, json_type_object))
		return;
	p->labels = calloc(st->n_allow < WS_K8S_MAX_LABELS ? st->n_allow
							   : WS_K8S_MAX_LABELS,
			   sizeof(*p->labels));
	if (!p->labels) {
		*oom = true;
		return;
	}
	for (i = 0; i < st->n_allow; i++) {
		const char *v = jstr(labels, st->allow[i]);

		if (!v)
			continue;
		if (p->n_labels >= WS_K8S_MAX_LABELS) {
			st->stats.labels_dropped++;
			continue;
		}
		p->labels[p->n_labels].key = st->allow[i];
		p->labels[p->n_labels].value = dup_or_null(v, oom);
		if (p->labels[p->n_labels].value)
			p->n_labels++;
	}
}

/* "containerd://<64 hex>" -> id and runtime */
static void parse_container_id(struct ws_k8s_container *c, const char *cid)
{
	static const struct {
		const char *scheme, *runtime;
	} schemes[] = {
		{"containerd://", "containerd"},
		{"docker://", "docker"},
		{"cri-o://", "cri-o"},
		{"podman://", "podman"},
	};
	const char *sep = cid ? strstr(cid, "://") : NULL;
	size_t i;

	if (!sep || strlen(sep + 3) != WS_CONTAINER_ID_LEN)
		return;
	memcpy(c->id, sep + 3, WS_CONTAINER_ID_LEN + 1);
	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (!strncmp(cid, schemes[i].scheme, strlen(schemes[i].scheme)))
			c->runtime = schemes[i].runtime;
}

/* Containers from spec (names) and status (ids): a container's id only
 * exists once it started, so every spec container is kept by name. */
static void parse_containers(struct ws_k8s_store *st, struct ws_k8s_pod *p,
			     struct json_object *pod, bool *oom)
{
	static const char *const lists[] = {"containers", "initContainers",
					    "ephemeralContainers"};
	static const char *const status_lists[] = {
		"containerStatuses", "initContainerStatuses",
		"ephemeralContainerStatuses"};
	struct json_object *spec = jobj(pod, "spec");
	struct json_object *status = jobj(pod, "status");
	size_t l, i, k, total = 0;

	for (l = 0; l < 3; l++) {
		struct json_object *arr = jobj(spec, lists[l]);

		if (arr && json_object_is_type(arr, json_type_array))
			total += json_object_array_length(arr);
	}
	if (total > WS_K8S_MAX_CONTAINERS)
		total = WS_K8S_MAX_CONTAINERS;
	if (!total)
		return;
	p->containers = calloc(total, sizeof(*p->containers));
	if (!p->containers) {
		*oom = true;
		return;
	}
	for (l = 0; l < 3; l++) {
		struct json_object *arr = jobj(spec, lists[l]);
		struct json_object *sarr = jobj(status, status_lists[l]);
		size_t n = arr && json_object_is_type(arr, json_type_array)
				   ? json_object_array_length(arr)
				   : 0;
		size_t sn = sarr && json_object_is_type(sarr, json_type_array)
				    ? json_object_array_length(sarr)
				    : 0;

		for (i = 0; i < n; i++) {
			struct json_object *c =
				json_object_array_get_idx(arr, i);
			const char *name = jstr(c, "name");
			struct ws_k8s_container *kc;

			if (!name)
				continue;
			if (p->n_containers >= WS_K8S_MAX_CONTAINERS) {
				st->stats.containers_dropped++;
				continue;
			}
			kc = &p->containers[p->n_containers];
			kc->pod = p;
			kc->name = dup_or_null(name, oom);
			if (!kc->name)
				continue;
			p->n_containers++;
			for (k = 0; k < sn; k++) {
				struct json_object *s =
					json_object_array_get_idx(sarr, k);
				const char *sname = jstr(s, "name");

				if (sname && !strcmp(sname, name))
					parse_container_id(
						kc, jstr(s, "containerID"));
			}
		}
	}
}

static void add_ip(struct ws_k8s_pod *p, const char *ip)
{
	struct ws_k8s_pod_ip *e;
	struct in_addr a4;
	unsigned i;

	if (!ip || p->n_ips >= WS_K8S_MAX_IPS)
		return;
	e = &p->ips[p->n_ips];
	memset(e->addr, 0, sizeof(e->addr));
	if (inet_pton(AF_INET, ip, &a4) == 1) {
		e->addr[10] = e->addr[11] = 0xff;
		memcpy(e->addr + 12, &a4, 4);
	} else if (inet_pton(AF_INET6, ip, e->addr) != 1) {
		return;
	}
	for (i = 0; i < p->n_ips; i++)
		if (!memcmp(p->ips[i].addr, e->addr, 16))
			return;
	e->pod = p;
	p->n_ips++;
}

static void parse_ips(struct ws_k8s_pod *p, struct json_object *pod)
{
	struct json_object *status = jobj(pod, "status");
	struct json_object *ips = jobj(status, "podIPs");
	size_t i, n = ips && json_object_is_type(ips, json_type_array)
			      ? json_object_array_length(ips)
			      : 0;

	add_ip(p, jstr(status, "podIP"));
	for (i = 0; i < n; i++)
		add_ip(p, jstr(json_object_array_get_idx(ips, i), "ip"));
}

/* A new pod from a Pod object; NULL with *err set. */
static struct ws_k8s_pod *pod_parse(struct ws_k8s_store *st,
				    struct json_object *o, int *err)
{
	struct json_object *meta = jobj(o, "metadata"), *spec = jobj(o, "spec");
	struct json_object *hn = jobj(spec, "hostNetwork");
	const char *uid = jstr(meta, "uid"), *name = jstr(meta, "name");
	const char *sa = jstr(spec, "serviceAccountName");
	struct ws_k8s_pod *p;
	bool oom = false;

	if (!uid || !*uid || !name) {
		*err = -EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		*err = -ENOMEM;
		return NULL;
	}
	p->uid = dup_or_null(uid, &oom);
	p->name = dup_or_null(name, &oom);
	p->ns = dup_or_null(jstr(meta, "namespace"), &oom);
	p->node = dup_or_null(jstr(spec, "nodeName"), &oom);
	p->service_account =
		dup_or_null(sa ? sa : jstr(spec, "serviceAccount"), &oom);
	p->resource_version = dup_or_null(jstr(meta, "resourceVersion"), &oom);
	p->host_network = hn && json_object_get_boolean(hn);
	parse_owner(p, meta, jstr(jobj(meta, "labels"), "pod-template-hash"),
		    &oom);
	parse_labels(st, p, meta, &oom);
	parse_containers(st, p, o, &oom);
	parse_ips(p, o);
	if (oom) {
		pod_free(p);
		*err = -ENOMEM;
		return NULL;
	}
	return p;
}

/* ---- the store ---------------------------------------------------------- */

static void unlink_pod(struct ws_k8s_store *st, struct ws_k8s_pod *p)
{
	unsigned i;

	HASH_DEL(st->by_uid, p);
	DL_DELETE(st->lru, p);
	for (i = 0; i < p->n_containers; i++) {
		struct ws_k8s_container *c = &p->containers[i], *cur;

		if (!c->id[0])
			continue;
		/* another pod may hold the same id (a stale pod) */
		HASH_FIND_STR(st->by_cid, c->id, cur);
		if (cur == c)
			HASH_DEL(st->by_cid, c);
	}
	if (!p->host_network)
		for (i = 0; i < p->n_ips; i++) {
			struct ws_k8s_pod_ip *cur;

			HASH_FIND(hh, st->by_ip, p->ips[i].addr, 16, cur);
			if (cur == &p->ips[i])
				HASH_DEL(st->by_ip, cur);
		}
	st->stats.pods--;
}

static void link_pod(struct ws_k8s_store *st, struct ws_k8s_pod *p)
{
	unsigned i;

	HASH_ADD_KEYPTR(hh, st->by_uid, p->uid, strlen(p->uid), p);
	DL_APPEND(st->lru, p);
	for (i = 0; i < p->n_containers; i++) {
		struct ws_k8s_container *c = &p->containers[i], *old;

		if (!c->id[0])
			continue;
		HASH_FIND_STR(st->by_cid, c->id, old);
		if (old)
			HASH_DEL(st->by_cid, old);
		HASH_ADD_STR(st->by_cid, id, c);
	}
	/* a pod IP is reused by later pods: the newest update wins */
	if (!p->host_network)
		for (i = 0; i < p->n_ips; i++) {
			struct ws_k8s_pod_ip *old;

			HASH_FIND(hh, st->by_ip, p->ips[i].addr, 16, old);
			if (old)
				HASH_DEL(st->by_ip, old);
			HASH_ADD(hh, st->by_ip, addr, 16, &p->ips[i]);
		}
	st->stats.pods++;
}

int ws_k8s_store_upsert(struct ws_k8s_store *st, struct json_object *o,
			uint64_t epoch)
{
	struct ws_k8s_pod *p, *old;
	int err = 0;

	p = pod_parse(st, o, &err);
	if (!p) {
		pthread_mutex_lock(&st->lock);
		if (err == -EINVAL)
			st->stats.bad_pods++;
		else
			st->stats.nomem++;
		pthread_mutex_unlock(&st->lock);
		return err;
	}
	p->epoch = epoch;
	pthread_mutex_lock(&st->lock);
	p->gen = atomic_fetch_add(&st->gen, 1) + 1;
	HASH_FIND_STR(st->by_uid, p->uid, old);
	if (old) {
		unlink_pod(st, old);
		st->stats.updated++;
	} else {
		st->stats.added++;
		if (st->stats.pods >= st->max_pods && st->lru) {
			old = st->lru;
			unlink_pod(st, old);
			st->stats.evicted++;
		}
	}
	link_pod(st, p);
	pthread_mutex_unlock(&st->lock);
	if (old)
		pod_free(old);
	return 0;
}

int ws_k8s_store_delete(struct ws_k8s_store *st, struct json_object *o)
{
	const char *uid = jstr(jobj(o, "metadata"), "uid");
	struct ws_k8s_pod *p = NULL;

	if (!uid)
		return -ENOENT;
	pthread_mutex_lock(&st->lock);
	HASH_FIND_STR(st->by_uid, uid, p);
	if (p) {
		unlink_pod(st, p);
		st->stats.deleted++;
		atomic_fetch_add(&st->gen, 1);
	}
	pthread_mutex_unlock(&st->lock);
	if (!p)
		return -ENOENT;
	pod_free(p);
	return 0;
}

size_t ws_k8s_store_purge(struct ws_k8s_store *st, uint64_t epoch)
{
	struct ws_k8s_pod *p, *tmp, *gone = NULL;
	size_t n = 0;

	pthread_mutex_lock(&st->lock);
	HASH_ITER (hh, st->by_uid, p, tmp) {
		if (p->epoch >= epoch)
			continue;
		unlink_pod(st, p);
		p->next = gone;
		gone = p;
		n++;
	}
	st->stats.purged += n;
	if (n)
		atomic_fetch_add(&st->gen, 1);
	pthread_mutex_unlock(&st->lock);
	while (gone) {
		p = gone->next;
		pod_free(gone);
		gone = p;
	}
	return n;
}

int ws_k8s_store_with_pod(struct ws_k8s_store *st, const char *pod_uid,
			  const char *container_id, ws_k8s_pod_fn fn, void *ctx)
{
	struct ws_k8s_container *c = NULL;
	struct ws_k8s_pod *p = NULL;
	int rc = -ENOENT;

	pthread_mutex_lock(&st->lock);
	if (container_id && *container_id)
		HASH_FIND_STR(st->by_cid, container_id, c);
	if (c)
		p = c->pod;
	else if (pod_uid && *pod_uid)
		HASH_FIND_STR(st->by_uid, pod_uid, p);
	if (p)
		rc = fn(p, c, ctx);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int ws_k8s_store_with_ip(struct ws_k8s_store *st, const uint8_t addr[16],
			 ws_k8s_pod_fn fn, void *ctx)
{
	struct ws_k8s_pod_ip *e;
	int rc = -ENOENT;

	pthread_mutex_lock(&st->lock);
	HASH_FIND(hh, st->by_ip, addr, 16, e);
	if (e)
		rc = fn(e->pod, NULL, ctx);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

uint64_t ws_k8s_store_gen(const struct ws_k8s_store *st)
{
	return atomic_load_explicit(&((struct ws_k8s_store *)st)->gen,
				    memory_order_relaxed);
}

uint64_t ws_k8s_store_pod_gen(struct ws_k8s_store *st, const char *pod_uid)
{
	struct ws_k8s_pod *p;
	uint64_t g = 0;

	pthread_mutex_lock(&st->lock);
	HASH_FIND_STR(st->by_uid, pod_uid, p);
	if (p)
		g = p->gen;
	pthread_mutex_unlock(&st->lock);
	return g;
}

void ws_k8s_store_stats(struct ws_k8s_store *st, struct ws_k8s_store_stats *out)
{
	pthread_mutex_lock(&st->lock);
	*out = st->stats;
	pthread_mutex_unlock(&st->lock);
}

/* The bucket array and table of a uthash hash. */
#define HASH_TABLE_BYTES(head)                                                \
	((head) ? malloc_usable_size((head)->hh.tbl->buckets) +               \
			  malloc_usable_size((head)->hh.tbl)                  \
		: 0)

size_t ws_k8s_store_bytes(struct ws_k8s_store *st)
{
	struct ws_k8s_pod *p, *tmp;
	size_t n = malloc_usable_size(st);
	unsigned i;

	pthread_mutex_lock(&st->lock);
	for (i = 0; i < st->n_allow; i++)
		n += malloc_usable_size(st->allow[i]);
	HASH_ITER (hh, st->by_uid, p, tmp) {
		n += pod_bytes(p);
	}
	n += HASH_TABLE_BYTES(st->by_uid) + HASH_TABLE_BYTES(st->by_cid) +
	     HASH_TABLE_BYTES(st->by_ip);
	pthread_mutex_unlock(&st->lock);
	return n;
}

void ws_k8s_store_free(struct ws_k8s_store *st)
{
	struct ws_k8s_pod *p, *tmp;
	size_t i;

	if (!st)
		return;
	HASH_ITER (hh, st->by_uid, p, tmp) {
		unlink_pod(st, p);
		pod_free(p);
	}
	for (i = 0; i < st->n_allow; i++)
		free(st->allow[i]);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

const char *ws_k8s_pod_label(const struct ws_k8s_pod *pod, const char *key)
{
	unsigned i;

	for (i = 0; i < pod->n_labels; i++)
		if (!strcmp(pod->labels[i].key, key))
			return pod->labels[i].value;
	return NULL;
}

const char *ws_k8s_pod_workload(const struct ws_k8s_pod *pod)
{
	static const char *const order[] = {"k8s.deployment.name",
					    "k8s.statefulset.name",
					    "k8s.daemonset.name",
					    "k8s.cronjob.name",
					    "k8s.job.name",
					    "k8s.replicaset.name",
					    "k8s.replicationcontroller.name"};
	size_t i, j;

	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		for (j = 0; j < pod->n_owner; j++)
			if (!strcmp(pod->owner[j].key, order[i]))
				return pod->owner[j].name;
	return NULL;
}
