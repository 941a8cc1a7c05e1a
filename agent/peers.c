/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uthash.h>
#include <utlist.h>

#include "peers.h"

/* An endpoint (address, port) some process's connection has locally. */
struct endpoint {
	struct {
		uint8_t addr[16];
		uint16_t port;
	} key;
	uint32_t tgid;
	unsigned refs; /* open connections noted with this endpoint */
	UT_hash_handle hh;
	struct endpoint *prev, *next; /* LRU */
};

/* A connection whose local peer was not known at its open: its (empty)
 * attribute bag is filled when a connection with that endpoint opens. */
struct pending {
	struct {
		uint8_t addr[16];
		uint16_t port;
	} key;
	struct ws_resource *bag;
	UT_hash_handle hh;
	struct pending *prev, *next; /* LRU */
};

struct ws_peers {
	char proc_root[PATH_MAX / 4];
	struct ws_identity *ids;
	struct ws_k8s_store *k8s;
	const struct ws_service_cfg *svc;
	struct endpoint *by_ep, *lru;
	size_t n_ep;
	struct pending *pend, *pend_lru;
	size_t n_pend;
	uint64_t scan_window_ns; /* start of the current second */
	unsigned scans;		 /* in it */
	uint64_t scan_ns;	 /* time spent scanning in it */
	struct ws_peers_stats st;
};

struct ws_peers *ws_peers_new(const struct ws_peers_cfg *cfg)
{
	struct ws_peers *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	snprintf(p->proc_root, sizeof(p->proc_root), "%s",
		 cfg->proc_root ? cfg->proc_root : "/proc");
	p->ids = cfg->ids;
	p->k8s = cfg->k8s;
	p->svc = cfg->svc;
	return p;
}

static void pending_free(struct ws_peers *p, struct pending *q)
{
	HASH_DEL(p->pend, q);
	DL_DELETE(p->pend_lru, q);
	ws_resource_put(q->bag);
	free(q);
	p->n_pend--;
}

static void endpoint_free(struct ws_peers *p, struct endpoint *e)
{
	HASH_DEL(p->by_ep, e);
	DL_DELETE(p->lru, e);
	free(e);
	p->n_ep--;
}

void ws_peers_free(struct ws_peers *p)
{
	struct endpoint *e, *tmp;
	struct pending *q, *qtmp;

	if (!p)
		return;
	HASH_ITER (hh, p->pend, q, qtmp) {
		pending_free(p, q);
	}
	HASH_ITER (hh, p->by_ep, e, tmp) {
		endpoint_free(p, e);
	}
	free(p);
}

static void peer_attrs(struct ws_attrs *a, const struct ws_resource *pr);

void ws_peers_note(struct ws_peers *p, const struct ws_tuple *t, uint32_t tgid,
		   const struct ws_resource *res)
{
	struct endpoint *e, k = {0};
	struct pending *q;

	memcpy(k.key.addr, t->laddr, 16);
	k.key.port = t->lport;
	HASH_FIND(hh, p->pend, &k.key, sizeof(k.key), q);
	if (q) {
		if (res) {
			peer_attrs(&q->bag->a, res);
			p->st.late++;
		}
		pending_free(p, q);
	}
	HASH_FIND(hh, p->by_ep, &k.key, sizeof(k.key), e);
	if (e) {
		e->tgid = tgid;
		e->refs++;
		DL_DELETE(p->lru, e);
		DL_APPEND(p->lru, e);
		return;
	}
	if (p->n_ep >= WS_PEERS_MAX_ENDPOINTS && p->lru) {
		endpoint_free(p, p->lru);
		p->st.evicted++;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return;
	e->key = k.key;
	e->tgid = tgid;
	e->refs = 1;
	HASH_ADD(hh, p->by_ep, key, sizeof(e->key), e);
	DL_APPEND(p->lru, e);
	p->n_ep++;
}

static bool is_v4mapped(const uint8_t *a)
{
	static const uint8_t pre[12] = {0, 0, 0, 0, 0,	  0,
					0, 0, 0, 0, 0xff, 0xff};

	return !memcmp(a, pre, 12);
}

static bool is_loopback(const uint8_t *a)
{
	static const uint8_t lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0,
					0, 0, 0, 0, 0, 0, 0, 1};

	return (is_v4mapped(a) && a[12] == 127) || !memcmp(a, lo6, 16);
}

/* "0100007F:1092" (tcp) or 32 hex digits + ":port" (tcp6), as the kernel
 * prints them: 32-bit words in host order. */
static bool parse_ep(const char *s, bool v6, uint8_t *addr, uint16_t *port)
{
	unsigned words = v6 ? 4 : 1, i;
	const char *p = s;

	memset(addr, 0, 16);
	if (!v6)
		addr[10] = addr[11] = 0xff;
	for (i = 0; i < words; i++) {
		char hex[9];
		uint32_t w;

		memcpy(hex, p, 8);
		hex[8] = '\0';
		if (strlen(hex) != 8)
			return false;
		w = (uint32_t)strtoul(hex, NULL, 16);
		memcpy(addr + (v6 ? 4 * i : 12), &w, 4);
		p += 8;
	}
	if (*p != ':')
		return false;
	*port = (uint16_t)strtoul(p + 1, NULL, 16);
	return true;
}

static uint64_t find_inode(const char *file, bool v6, const uint8_t *laddr,
			   uint16_t lport, const uint8_t *raddr, uint16_t rport)
{
	char line[512];
	uint64_t inode = 0;
	FILE *f = fopen(file, "re");

	if (!f)
		return 0;
	while (!inode && fgets(line, sizeof(line), f)) {
		char l[64], r[64];
		uint8_t la[16], ra[16];
		uint16_t lp, rp;
		unsigned long long ino;

		/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
		if (sscanf(line, " %*s %63s %63s %*s %*s %*s %*s %*s %*s %llu",
			   l, r, &ino) != 3)
			continue;
		if (parse_ep(l, v6, la, &lp) && parse_ep(r, v6, ra, &rp) &&
		    lp == lport && rp == rport && !memcmp(la, laddr, 16) &&
		    !memcmp(ra, raddr, 16))
			inode = ino;
	}
	fclose(f);
	return inode;
}

uint64_t ws_peers_socket_inode(const char *proc_root, const uint8_t *laddr,
			       uint16_t lport, const uint8_t *raddr,
			       uint16_t rport)
{
	char path[PATH_MAX];
	uint64_t ino = 0;

	if (is_v4mapped(laddr)) {
		snprintf(path, sizeof(path), "%s/net/tcp", proc_root);
		ino = find_inode(path, false, laddr, lport, raddr, rport);
	}
	if (!ino) {
		snprintf(path, sizeof(path), "%s/net/tcp6", proc_root);
		ino = find_inode(path, true, laddr, lport, raddr, rport);
	}
	return ino;
}

uint32_t ws_peers_inode_pid(const char *proc_root, uint64_t inode)
{
	char want[64], path[PATH_MAX], link[64];
	struct dirent *d;
	uint32_t pid = 0;
	DIR *procs = opendir(proc_root);

	if (!procs)
		return 0;
	snprintf(want, sizeof(want), "socket:[%llu]",
		 (unsigned long long)inode);
	while (!pid && (d = readdir(procs))) {
		struct dirent *fd;
		DIR *fds;

		if (d->d_name[0] < '1' || d->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "%s/%s/fd", proc_root, d->d_name);
		fds = opendir(path);
		if (!fds)
			continue;
		while (!pid && (fd = readdir(fds))) {
			char fdpath[PATH_MAX + 300];
			ssize_t n;

			if (fd->d_name[0] == '.')
				continue;
			snprintf(fdpath, sizeof(fdpath), "%s/%s", path,
				 fd->d_name);
			n = readlink(fdpath, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = '\0';
			if (!strcmp(link, want))
				pid = (uint32_t)strtoul(d->d_name, NULL, 10);
		}
		closedir(fds);
	}
	closedir(procs);
	return pid;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *pod_label(const void *ctx, const char *key)
{
	return ws_k8s_pod_label(ctx, key);
}

/* Under the store's lock: the pod with the peer's IP. */
static int with_pod(const struct ws_k8s_pod *pod,
		    const struct ws_k8s_container *c, void *ctx)
{
	struct ws_resource *r = ((void **)ctx)[0];
	const struct ws_service_cfg *svc = ((void **)ctx)[1];
	struct ws_service_facts f = {
		.ns = pod->ns,
		.workload = ws_k8s_pod_workload(pod),
		.label = pod_label,
		.label_ctx = pod,
	};
	char name[300];

	/* only what the pod itself says: a pod with neither rule, label nor
	 * owner gets no peer.service (its container is not known) */
	if (ws_service_name(svc, &f, name, sizeof(name)) != WS_SVC_UNKNOWN)
		ws_attrs_cstr(&r->a, "peer.service", name);
	ws_attrs_cstr(&r->a, "wirespan.peer.k8s.pod.name", pod->name);
	ws_attrs_cstr(&r->a, "wirespan.peer.k8s.pod.uid", pod->uid);
	if (pod->ns)
		ws_attrs_cstr(&r->a, "wirespan.peer.k8s.namespace.name",
			      pod->ns);
	return 0;
}

/* The peer attributes of a local process, from its resource. */
static void peer_attrs(struct ws_attrs *a, const struct ws_resource *pr)
{
	static const struct {
		const char *from, *to;
	} keys[] = {
		{"service.name", "peer.service"},
		{"process.pid", "wirespan.peer.process.pid"},
		{"process.executable.name",
		 "wirespan.peer.process.executable.name"},
		{"k8s.pod.name", "wirespan.peer.k8s.pod.name"},
		{"k8s.pod.uid", "wirespan.peer.k8s.pod.uid"},
		{"k8s.namespace.name", "wirespan.peer.k8s.namespace.name"},
	};
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const struct ws_attr *v = ws_attrs_get(&pr->a, keys[i].from);

		if (v && v->type == WS_ATTR_STR)
			ws_attrs_cstr(a, keys[i].to, v->s);
		else if (v && v->type == WS_ATTR_INT)
			ws_attrs_int(a, keys[i].to, v->i);
	}
}

/* The peer attributes of local process pid. */
static struct ws_resource *process_peer(struct ws_peers *p, uint32_t pid)
{
	struct ws_resource *pr, *r;

	if (!p->ids)
		return NULL;
	pr = ws_identity_resource(p->ids, pid, NULL);
	if (!pr)
		return NULL;
	r = ws_resource_new(pr->key);
	if (r)
		peer_attrs(&r->a, pr);
	ws_resource_put(pr);
	return r;
}

/* Is addr one of the addresses of this host's connections (a connection
 * to our own non-loopback address)? Cheap check: the tuple's laddr. */
static bool is_local(const struct ws_tuple *t)
{
	return is_loopback(t->raddr) || !memcmp(t->raddr, t->laddr, 16);
}

/* An empty bag, filled if a connection with endpoint key opens later (the
 * agent sees the two ends of a loopback connection one after the other,
 * and a short-lived peer may be gone from /proc by then). */
static struct ws_resource *pend(struct ws_peers *p, const void *key)
{
	struct pending *q;

	HASH_FIND(hh, p->pend, key, sizeof(q->key), q);
	if (q)
		return ws_resource_get(q->bag);
	if (p->n_pend >= WS_PEERS_MAX_PENDING && p->pend_lru) {
		pending_free(p, p->pend_lru);
		p->st.pending_evicted++;
	}
	q = calloc(1, sizeof(*q));
	if (!q || !(q->bag = ws_resource_new(0))) {
		free(q);
		return NULL;
	}
	memcpy(&q->key, key, sizeof(q->key));
	HASH_ADD(hh, p->pend, key, sizeof(q->key), q);
	DL_APPEND(p->pend_lru, q);
	p->n_pend++;
	p->st.pending++;
	return ws_resource_get(q->bag);
}

struct ws_resource *ws_peers_lookup(struct ws_peers *p,
				    const struct ws_tuple *t, uint32_t tgid,
				    uint64_t now_ns)
{
	struct endpoint *e, k = {0};
	struct ws_resource *r;
	uint64_t ino, t0;
	uint32_t pid;

	p->st.lookups++;
	if (p->k8s && !is_local(t)) {
		void *ctx[2];

		r = ws_resource_new(0);
		if (!r)
			return NULL;
		ctx[0] = r;
		ctx[1] = (void *)p->svc;
		if (!ws_k8s_store_with_ip(p->k8s, t->raddr, with_pod, ctx)) {
			p->st.pod++;
			return r;
		}
		ws_resource_put(r);
	}
	if (!is_local(t)) {
		p->st.remote++;
		return NULL;
	}
	memcpy(k.key.addr, t->raddr, 16);
	k.key.port = t->rport;
	HASH_FIND(hh, p->by_ep, &k.key, sizeof(k.key), e);
	if (e && e->tgid != tgid && kill((pid_t)e->tgid, 0) == 0) {
		p->st.learned++;
		return process_peer(p, e->tgid);
	}
	if (now_ns - p->scan_window_ns >= 1000000000ull) {
		p->scan_window_ns = now_ns;
		p->scans = 0;
		p->scan_ns = 0;
	}
	if (p->scans >= WS_PEERS_SCANS_PER_SEC ||
	    p->scan_ns >= WS_PEERS_SCAN_BUDGET_NS) {
		p->st.scan_limited++;
		return pend(p, &k.key);
	}
	p->scans++;
	t0 = mono_ns();
	/* the other socket: local = our remote, remote = our local */
	ino = ws_peers_socket_inode(p->proc_root, t->raddr, t->rport, t->laddr,
				    t->lport);
	pid = ino ? ws_peers_inode_pid(p->proc_root, ino) : 0;
	p->scan_ns += mono_ns() - t0;
	if (!pid)
		return pend(p, &k.key);
	p->st.scanned++;
	return process_peer(p, pid);
}

void ws_peers_forget(struct ws_peers *p, const struct ws_tuple *t)
{
	struct endpoint *e, k = {0};
	struct pending *q;

	memcpy(k.key.addr, t->laddr, 16);
	k.key.port = t->lport;
	HASH_FIND(hh, p->by_ep, &k.key, sizeof(k.key), e);
	if (e && !--e->refs) {
		endpoint_free(p, e);
		p->st.forgotten++;
	}
	memcpy(k.key.addr, t->raddr, 16);
	k.key.port = t->rport;
	HASH_FIND(hh, p->pend, &k.key, sizeof(k.key), q);
	if (q && q->bag->refs == 1) /* only the table holds it */
		pending_free(p, q);
}

size_t ws_peers_sweep(struct ws_peers *p)
{
	struct endpoint *e, *tmp;
	struct pending *q, *qtmp;
	size_t n = 0;

	HASH_ITER (hh, p->by_ep, e, tmp) {
		if (ws_proc_gone(p->proc_root, e->tgid)) {
			endpoint_free(p, e);
			n++;
		}
	}
	HASH_ITER (hh, p->pend, q, qtmp) {
		if (q->bag->refs == 1) {
			pending_free(p, q);
			n++;
		}
	}
	p->st.swept += n;
	return n;
}

void ws_peers_stats(const struct ws_peers *p, struct ws_peers_stats *out)
{
	*out = p->st;
	out->endpoints = p->n_ep;
	out->pending_now = p->n_pend;
}
