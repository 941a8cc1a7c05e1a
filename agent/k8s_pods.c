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
#include "span.h"

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

/*
 * What pod_parse takes from a Pod object: pointers into the JSON tree
 * (valid while it lives), measured, then copied into the pod's one block.
 */
struct draft {
	const char *uid, *name, *ns, *node, *sa;
	bool host_network;
	struct {
		const char *key, *name;
		size_t len;
	} owner[2];
	unsigned n_owner;
	struct {
		const char *key, *value;
	} labels[WS_K8S_MAX_LABELS];
	unsigned n_labels;
	struct {
		const char *name, *cid; /* cid: "<scheme>://<id>" or NULL */
	} cont[WS_K8S_MAX_CONTAINERS];
	unsigned n_cont;
	uint8_t ips[WS_K8S_MAX_IPS][16];
	unsigned n_ips;
};

static void pod_free(struct ws_k8s_pod *p)
{
	free(p);
}

static size_t pod_bytes(const struct ws_k8s_pod *p)
{
	return malloc_usable_size((void *)p);
}

static void add_owner(struct draft *d, const char *key, const char *name,
		      size_t len)
{
	d->owner[d->n_owner].key = key;
	d->owner[d->n_owner].name = name;
	d->owner[d->n_owner++].len = len;
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
static void parse_owner(struct draft *d, struct json_object *meta,
			const char *template_hash)
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
			add_owner(d, "k8s.replicaset.name", name, len);
			if (dash_suffix(name, template_hash))
				add_owner(d, "k8s.deployment.name", name,
					  len - strlen(template_hash) - 1);
		} else if (!strcmp(kind, "StatefulSet")) {
			add_owner(d, "k8s.statefulset.name", name, len);
		} else if (!strcmp(kind, "DaemonSet")) {
			add_owner(d, "k8s.daemonset.name", name, len);
		} else if (!strcmp(kind, "Job")) {
			add_owner(d, "k8s.job.name", name, len);
			if (cronjob_len(name))
				add_owner(d, "k8s.cronjob.name", name,
					  cronjob_len(name));
		} else if (!strcmp(kind, "ReplicationController")) {
			add_owner(d, "k8s.replicationcontroller.name", name,
				  len);
		} else {
			continue;
		}
		return; /* one controller */
	}
}

static void parse_labels(struct ws_k8s_store *st, struct draft *d,
			 struct json_object *meta)
{
	struct json_object *labels = jobj(meta, "labels");
	size_t i;

	if (!labels || !json_object_is_type(labels, json_type_object))
		return;
	for (i = 0; i < st->n_allow; i++) {
		const char *v = jstr(labels, st->allow[i]);

		if (!v)
			continue;
		if (d->n_labels >= WS_K8S_MAX_LABELS) {
			st->stats.labels_dropped++;
			continue;
		}
		d->labels[d->n_labels].key = st->allow[i];
		d->labels[d->n_labels++].value = v;
	}
}

/* WS_CONTAINER_ID_LEN hex digits (then the end) into bytes; 0 or -1. */
static int id_bytes(const char *hex, uint8_t *out)
{
	return ws_id_parse(hex, strnlen(hex, WS_CONTAINER_ID_LEN + 1), out,
			   WS_CONTAINER_ID_LEN / 2)
		       ? -1
		       : 0;
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

	if (!sep || id_bytes(sep + 3, c->id))
		return;
	c->has_id = true;
	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (!strncmp(cid, schemes[i].scheme, strlen(schemes[i].scheme)))
			c->runtime = schemes[i].runtime;
}

/* Containers from spec (names) and status (ids): a container's id only
 * exists once it started, so every spec container is kept by name. */
static void parse_containers(struct ws_k8s_store *st, struct draft *d,
			     struct json_object *pod)
{
	static const char *const lists[] = {"containers", "initContainers",
					    "ephemeralContainers"};
	static const char *const status_lists[] = {
		"containerStatuses", "initContainerStatuses",
		"ephemeralContainerStatuses"};
	struct json_object *spec = jobj(pod, "spec");
	struct json_object *status = jobj(pod, "status");
	size_t l, i, k;

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
			const char *name =
				jstr(json_object_array_get_idx(arr, i), "name");

			if (!name)
				continue;
			if (d->n_cont >= WS_K8S_MAX_CONTAINERS) {
				st->stats.containers_dropped++;
				continue;
			}
			d->cont[d->n_cont].name = name;
			d->cont[d->n_cont].cid = NULL;
			for (k = 0; k < sn; k++) {
				struct json_object *s =
					json_object_array_get_idx(sarr, k);
				const char *sname = jstr(s, "name");

				if (sname && !strcmp(sname, name))
					d->cont[d->n_cont].cid =
						jstr(s, "containerID");
			}
			d->n_cont++;
		}
	}
}

static void add_ip(struct draft *d, const char *ip)
{
	uint8_t *a;
	struct in_addr a4;
	unsigned i;

	if (!ip || d->n_ips >= WS_K8S_MAX_IPS)
		return;
	a = d->ips[d->n_ips];
	memset(a, 0, 16);
	if (inet_pton(AF_INET, ip, &a4) == 1) {
		a[10] = a[11] = 0xff;
		memcpy(a + 12, &a4, 4);
	} else if (inet_pton(AF_INET6, ip, a) != 1) {
		return;
	}
	for (i = 0; i < d->n_ips; i++)
		if (!memcmp(d->ips[i], a, 16))
			return;
	d->n_ips++;
}

static void parse_ips(struct draft *d, struct json_object *pod)
{
	struct json_object *status = jobj(pod, "status");
	struct json_object *ips = jobj(status, "podIPs");
	size_t i, n = ips && json_object_is_type(ips, json_type_array)
			      ? json_object_array_length(ips)
			      : 0;

	add_ip(d, jstr(status, "podIP"));
	for (i = 0; i < n; i++)
		add_ip(d, jstr(json_object_array_get_idx(ips, i), "ip"));
}

/* Bump allocation of a pod's strings inside its block. */
struct strbuf {
	char *p;
};

static size_t slen(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

static const char *put_str(struct strbuf *b, const char *s, size_t len)
{
	char *out = b->p;

	memcpy(out, s, len);
	out[len] = '\0';
	b->p += len + 1;
	return out;
}

static const char *put_cstr(struct strbuf *b, const char *s)
{
	return s ? put_str(b, s, strlen(s)) : NULL;
}

/* The pod's block from the draft. */
static struct ws_k8s_pod *pod_build(const struct draft *d)
{
	size_t i, size = sizeof(struct ws_k8s_pod) +
			 d->n_cont * sizeof(struct ws_k8s_container) +
			 d->n_ips * sizeof(struct ws_k8s_pod_ip) +
			 d->n_labels * sizeof(struct ws_k8s_label);
	struct ws_k8s_pod *p;
	struct strbuf b;

	size += slen(d->uid) + slen(d->name) + slen(d->ns) + slen(d->node) +
		slen(d->sa);
	for (i = 0; i < d->n_owner; i++)
		size += d->owner[i].len + 1;
	for (i = 0; i < d->n_labels; i++)
		size += slen(d->labels[i].value);
	for (i = 0; i < d->n_cont; i++)
		size += slen(d->cont[i].name);
	p = calloc(1, size);
	if (!p)
		return NULL;
	p->containers = (struct ws_k8s_container *)(p + 1);
	p->ips = (struct ws_k8s_pod_ip *)(p->containers + d->n_cont);
	p->labels = (struct ws_k8s_label *)(p->ips + d->n_ips);
	b.p = (char *)(p->labels + d->n_labels);
	p->uid = put_cstr(&b, d->uid);
	p->name = put_cstr(&b, d->name);
	p->ns = put_cstr(&b, d->ns);
	p->node = put_cstr(&b, d->node);
	p->service_account = put_cstr(&b, d->sa);
	p->host_network = d->host_network;
	for (i = 0; i < d->n_owner; i++) {
		p->owner[i].key = d->owner[i].key;
		p->owner[i].name =
			put_str(&b, d->owner[i].name, d->owner[i].len);
	}
	p->n_owner = (uint8_t)d->n_owner;
	for (i = 0; i < d->n_labels; i++) {
		p->labels[i].key = d->labels[i].key;
		p->labels[i].value = put_cstr(&b, d->labels[i].value);
	}
	p->n_labels = (uint8_t)d->n_labels;
	for (i = 0; i < d->n_cont; i++) {
		struct ws_k8s_container *c = &p->containers[i];

		c->pod = p;
		c->name = put_cstr(&b, d->cont[i].name);
		parse_container_id(c, d->cont[i].cid);
	}
	p->n_containers = (uint8_t)d->n_cont;
	for (i = 0; i < d->n_ips; i++) {
		p->ips[i].pod = p;
		memcpy(p->ips[i].addr, d->ips[i], 16);
	}
	p->n_ips = (uint8_t)d->n_ips;
	return p;
}

/* A new pod from a Pod object; NULL with *err set. */
static struct ws_k8s_pod *pod_parse(struct ws_k8s_store *st,
				    struct json_object *o, int *err)
{
	struct json_object *meta = jobj(o, "metadata"), *spec = jobj(o, "spec");
	struct json_object *hn = jobj(spec, "hostNetwork");
	struct ws_k8s_pod *p;
	struct draft d;

	memset(&d, 0, sizeof(d));
	d.uid = jstr(meta, "uid");
	d.name = jstr(meta, "name");
	if (!d.uid || !*d.uid || !d.name) {
		*err = -EINVAL;
		return NULL;
	}
	d.ns = jstr(meta, "namespace");
	d.node = jstr(spec, "nodeName");
	d.sa = jstr(spec, "serviceAccountName");
	if (!d.sa)
		d.sa = jstr(spec, "serviceAccount");
	d.host_network = hn && json_object_get_boolean(hn);
	parse_owner(&d, meta, jstr(jobj(meta, "labels"), "pod-template-hash"));
	parse_labels(st, &d, meta);
	parse_containers(st, &d, o);
	parse_ips(&d, o);
	p = pod_build(&d);
	if (!p)
		*err = -ENOMEM;
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

		if (!c->has_id)
			continue;
		/* another pod may hold the same id (a stale pod) */
		HASH_FIND(hh, st->by_cid, c->id, sizeof(c->id), cur);
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
	/* last to first: if two containers of a pod claim one id, the regular
	 * container wins over init and ephemeral ones */
	for (i = p->n_containers; i-- > 0;) {
		struct ws_k8s_container *c = &p->containers[i], *old;

		if (!c->has_id)
			continue;
		HASH_FIND(hh, st->by_cid, c->id, sizeof(c->id), old);
		if (old)
			HASH_DEL(st->by_cid, old);
		HASH_ADD(hh, st->by_cid, id, sizeof(c->id), c);
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
	uint8_t id[WS_CONTAINER_ID_LEN / 2];
	struct ws_k8s_pod *p = NULL;
	int rc = -ENOENT;
	bool by_id = container_id && !id_bytes(container_id, id);

	pthread_mutex_lock(&st->lock);
	if (by_id)
		HASH_FIND(hh, st->by_cid, id, sizeof(id), c);
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
#define HASH_TABLE_BYTES(head)                                  \
	((head) ? malloc_usable_size((head)->hh.tbl->buckets) + \
			  malloc_usable_size((head)->hh.tbl)    \
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
