/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uthash.h>
#include <utlist.h>

#include "cgroup.h"
#include "identity.h"
#include "log.h"

/* A resource for one local port (port rules only). */
struct variant {
	uint16_t port;
	struct ws_resource *res;
};

/* One cached process: 10k of them must stay small (docs/BENCHMARKS.md,
 * agent memory). Its resource is compacted (ws_resource_compact). */
struct proc_entry {
	uint32_t tgid;
	uint8_t n_v;
	bool in_container; /* a container id or pod uid was found */
	uint64_t cgroup_id;
	char comm[16], comm_alt[16]; /* comm at build; a thread's other comm */
	char pod_uid[WS_POD_UID_LEN + 1];
	uint64_t pod_gen;  /* the pod's generation the resource was built on */
	uint64_t seen_gen; /* the store's generation at the last check */
	struct ws_resource *res;
	/* WS_IDENTITY_MAX_VARIANTS, allocated at the first (port rules) */
	struct variant *v;
	UT_hash_handle hh;
	struct proc_entry *prev, *next; /* LRU: head is least recent */
};

struct ws_identity {
	char proc_root[PATH_MAX / 4];
	char host_name[256];
	int cgroup_fd; /* the cgroup2 mount, or -1 */
	size_t max_procs;
	const struct ws_service_cfg *svc;
	bool port_rules;
	struct ws_k8s_store *k8s;
	char *node_name;
	struct ws_redact redact; /* process.command_line */
	/* "k8s.pod.label.<name>" keys of the allowed labels, and the names */
	char **label_keys;
	const char **label_names;
	size_t n_labels;
	uint64_t boot_ns; /* unix ns at boot, for process.creation.time */
	long hz;
	struct proc_entry *by_tgid;
	struct proc_entry *lru;
	unsigned n;
	struct ws_identity_stats stats;
};

/* Read a small /proc file into buf (NUL-terminated). Returns length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

/* btime of <proc_root>/stat, as unix ns. */
static uint64_t boot_ns(const char *proc_root)
{
	char path[PATH_MAX], buf[16384];
	const char *b;

	snprintf(path, sizeof(path), "%s/stat", proc_root);
	if (read_small(path, buf, sizeof(buf)) < 0)
		return 0;
	b = strstr(buf, "\nbtime ");
	return b ? strtoull(b + 7, NULL, 10) * 1000000000ull : 0;
}

struct ws_identity *ws_identity_new_cfg(const struct ws_identity_cfg *cfg)
{
	struct ws_identity *id = calloc(1, sizeof(*id));
	char mnt[PATH_MAX];
	size_t i;

	if (!id)
		return NULL;
	snprintf(id->proc_root, sizeof(id->proc_root), "%s",
		 cfg->proc_root ? cfg->proc_root : "/proc");
	if (gethostname(id->host_name, sizeof(id->host_name) - 1))
		snprintf(id->host_name, sizeof(id->host_name), "unknown");
	id->cgroup_fd = -1;
	if (cfg->cgroup_root && *cfg->cgroup_root)
		snprintf(mnt, sizeof(mnt), "%s", cfg->cgroup_root);
	else if (cfg->cgroup_root || ws_cgroup2_mount(mnt, sizeof(mnt)))
		mnt[0] = '\0';
	if (mnt[0])
		id->cgroup_fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	id->max_procs = cfg->max_procs ? cfg->max_procs : WS_IDENTITY_MAX_PROCS;
	id->svc = cfg->svc;
	id->port_rules = cfg->svc && ws_service_cfg_has_port(cfg->svc);
	id->k8s = cfg->k8s;
	id->redact = cfg->redact;
	id->boot_ns = boot_ns(id->proc_root);
	id->hz = sysconf(_SC_CLK_TCK) > 0 ? sysconf(_SC_CLK_TCK) : 100;
	if (cfg->node_name && !(id->node_name = strdup(cfg->node_name)))
		goto oom;
	if (cfg->n_labels) {
		id->label_keys = calloc(cfg->n_labels, sizeof(char *));
		id->label_names = calloc(cfg->n_labels, sizeof(char *));
		if (!id->label_keys || !id->label_names)
			goto oom;
	}
	for (i = 0; i < cfg->n_labels; i++) {
		if (asprintf(&id->label_keys[i], "k8s.pod.label.%s",
			     cfg->labels[i]) < 0) {
			id->label_keys[i] = NULL;
			goto oom;
		}
		id->n_labels++;
		id->label_names[i] = id->label_keys[i] + 14;
	}
	return id;
oom:
	ws_identity_free(id);
	errno = ENOMEM;
	return NULL;
}

struct ws_identity *ws_identity_new(const char *proc_root)
{
	struct ws_identity_cfg cfg = {.proc_root = proc_root};

	/* a fake /proc has no cgroup ids to resolve */
	if (proc_root && strcmp(proc_root, "/proc"))
		cfg.cgroup_root = "";
	return ws_identity_new_cfg(&cfg);
}

static void entry_put_resources(struct proc_entry *e)
{
	unsigned i;

	ws_resource_put(e->res);
	e->res = NULL;
	for (i = 0; i < e->n_v; i++)
		ws_resource_put(e->v[i].res);
	e->n_v = 0;
	free(e->v);
	e->v = NULL;
}

static void entry_free(struct ws_identity *id, struct proc_entry *e)
{
	HASH_DEL(id->by_tgid, e);
	DL_DELETE(id->lru, e);
	entry_put_resources(e);
	free(e);
	id->n--;
}

void ws_identity_free(struct ws_identity *id)
{
	struct proc_entry *e, *tmp;
	size_t i;

	if (!id)
		return;
	HASH_ITER (hh, id->by_tgid, e, tmp) {
		entry_free(id, e);
	}
	if (id->cgroup_fd >= 0)
		close(id->cgroup_fd);
	for (i = 0; i < id->n_labels; i++)
		free(id->label_keys[i]);
	free(id->label_keys);
	free(id->label_names);
	free(id->node_name);
	free(id);
}

/* Field n (1-based, n >= 3) of /proc/PID/stat, after the comm. */
static const char *stat_field(const char *stat, int n)
{
	const char *p = strrchr(stat, ')');
	int field = 2;

	if (!p)
		return NULL;
	for (p++; *p && field < n; p++)
		if (*p == ' ')
			field++;
	return *p ? p : NULL;
}

static void put_creation_time(struct ws_identity *id, struct ws_attrs *a,
			      uint64_t ticks)
{
	uint64_t ns = id->boot_ns + ticks * (1000000000ull / (uint64_t)id->hz);
	time_t secs = (time_t)(ns / 1000000000ull);
	char buf[64], out[80];
	struct tm tm;

	if (!id->boot_ns || !gmtime_r(&secs, &tm))
		return;
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, sizeof(out), "%s.%03uZ", buf,
		 (unsigned)(ns / 1000000 % 1000));
	ws_attrs_cstr(a, "process.creation.time", out);
}

/* The container and pod of the process: from its cgroup id, else from
 * /proc/<pid>/cgroup (ci zeroed if none). */
static void find_container(struct ws_identity *id, struct proc_entry *e,
			   struct ws_cgroup_info *ci)
{
	char path[PATH_MAX];
	int n = -ENOENT;

	if (e->cgroup_id && id->cgroup_fd >= 0) {
		n = ws_cgroup_path_by_id(id->cgroup_fd, e->cgroup_id, path,
					 sizeof(path));
		if (n > 0)
			id->stats.cgroup_by_id++;
	}
	if (n <= 0) {
		n = ws_cgroup_proc_path(id->proc_root, e->tgid, path,
					sizeof(path));
		if (n > 0)
			id->stats.cgroup_by_proc++;
	}
	if (n <= 0 || ws_cgroup_parse(path, (size_t)n, ci))
		memset(ci, 0, sizeof(*ci));
}

void ws_identity_pod_attrs(const struct ws_identity *id, struct ws_attrs *a,
			   const struct ws_k8s_pod *pod,
			   const struct ws_k8s_container *c)
{
	size_t i;

	ws_attrs_cstr(a, "k8s.pod.name", pod->name);
	ws_attrs_cstr(a, "k8s.pod.uid", pod->uid);
	if (pod->ns)
		ws_attrs_cstr(a, "k8s.namespace.name", pod->ns);
	if (pod->node)
		ws_attrs_cstr(a, "k8s.node.name", pod->node);
	if (c)
		ws_attrs_cstr(a, "k8s.container.name", c->name);
	for (i = 0; i < pod->n_owner; i++)
		ws_attrs_cstr(a, pod->owner[i].key, pod->owner[i].name);
	if (pod->service_account)
		ws_attrs_cstr(a, "k8s.serviceaccount.name",
			      pod->service_account);
	for (i = 0; i < id->n_labels; i++) {
		const char *v = ws_k8s_pod_label(pod, id->label_names[i]);

		if (v)
			ws_attrs_cstr(a, id->label_keys[i], v);
	}
}

static const char *pod_label(const void *ctx, const char *key)
{
	return ws_k8s_pod_label(ctx, key);
}

struct build_ctx {
	struct ws_identity *id;
	struct proc_entry *e;
	struct ws_resource *r;
	const char *runtime;
	struct ws_service_facts facts;
};

/* The service attributes of a resource, from the facts. */
static void put_service(struct build_ctx *b, const char *instance)
{
	char svc[300];

	ws_service_name(b->id->svc, &b->facts, svc, sizeof(svc));
	ws_attrs_cstr(&b->r->a, "service.name", svc);
	if (b->facts.ns)
		ws_attrs_cstr(&b->r->a, "service.namespace", b->facts.ns);
	ws_attrs_cstr(&b->r->a, "service.instance.id", instance);
}

/* Under the store's lock: the pod of the process. */
static int with_pod(const struct ws_k8s_pod *pod,
		    const struct ws_k8s_container *c, void *ctx)
{
	struct build_ctx *b = ctx;
	char inst[600];

	ws_identity_pod_attrs(b->id, &b->r->a, pod, c);
	if (c && c->runtime && !b->runtime)
		b->runtime = c->runtime;
	b->e->pod_gen = pod->gen;
	b->facts.ns = pod->ns;
	b->facts.container = c ? c->name : NULL;
	b->facts.workload = ws_k8s_pod_workload(pod);
	b->facts.label = pod_label;
	b->facts.label_ctx = pod;
	/* semconv's Kubernetes recommendation: namespace.pod.container */
	snprintf(inst, sizeof(inst), "%s.%s.%s", pod->ns ? pod->ns : "",
		 pod->name, c ? c->name : "");
	put_service(b, inst);
	return 0;
}

static struct ws_resource *build(struct ws_identity *id, struct proc_entry *e,
				 const char *comm, uint16_t port)
{
	char path[PATH_MAX], buf[4096], exe[PATH_MAX];
	struct build_ctx b = {.id = id, .e = e};
	struct ws_resource *r, *small;
	struct ws_cgroup_info ci;
	const char *name = comm, *f;
	uint64_t start = 0;
	struct stat st;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%u/stat", id->proc_root, e->tgid);
	n = read_small(path, buf, sizeof(buf));
	if (n > 0 && (f = stat_field(buf, 22)))
		start = strtoull(f, NULL, 10);
	r = ws_resource_new(((uint64_t)e->tgid << 32) ^ start ^
			    ((uint64_t)port << 16));
	if (!r)
		return NULL;
	b.r = r;
	if (n < 0)
		id->stats.proc_gone++;
	ws_attrs_int(&r->a, "process.pid", e->tgid);
	if (n > 0 && (f = stat_field(buf, 4)))
		ws_attrs_int(&r->a, "process.parent_pid", strtoll(f, NULL, 10));
	if (start)
		put_creation_time(id, &r->a, start);
	snprintf(path, sizeof(path), "%s/%u/exe", id->proc_root, e->tgid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		ws_attrs_cstr(&r->a, "process.executable.path", exe);
		name = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
	} else {
		ws_debug("identity: readlink %s: %s", path, strerror(errno));
	}
	ws_attrs_cstr(&r->a, "process.executable.name", name);
	snprintf(path, sizeof(path), "%s/%u/cmdline", id->proc_root, e->tgid);
	n = read_small(path, buf, sizeof(buf));
	if (n > 0) {
		char line[sizeof(buf) + 16];

		ws_attrs_cstr(&r->a, "process.command", buf);
		ws_redact_cmdline(&id->redact, buf, (size_t)n, line,
				  sizeof(line));
		ws_attrs_cstr(&r->a, "process.command_line", line);
	}
	snprintf(path, sizeof(path), "%s/%u", id->proc_root, e->tgid);
	if (stat(path, &st) == 0) {
		struct passwd pw, *res = NULL;
		char pwbuf[1024];

		if (getpwuid_r(st.st_uid, &pw, pwbuf, sizeof(pwbuf), &res) ==
			    0 &&
		    res)
			ws_attrs_cstr(&r->a, "process.owner", pw.pw_name);
		else {
			char uid[16];

			snprintf(uid, sizeof(uid), "%u", (unsigned)st.st_uid);
			ws_attrs_cstr(&r->a, "process.owner", uid);
		}
	}
	ws_attrs_cstr(&r->a, "host.name", id->host_name);
	b.facts.exe = name;
	b.facts.port = port;
	e->pod_gen = 0;
	find_container(id, e, &ci);
	memcpy(e->pod_uid, ci.pod_uid, sizeof(e->pod_uid));
	e->in_container = ci.container_id[0] || ci.pod_uid[0];
	b.runtime = ci.runtime;
	if (ci.container_id[0])
		ws_attrs_cstr(&r->a, "container.id", ci.container_id);
	if (id->k8s)
		e->seen_gen = ws_k8s_store_gen(id->k8s);
	if (id->k8s && e->in_container &&
	    !ws_k8s_store_with_pod(id->k8s, e->pod_uid, ci.container_id,
				   with_pod, &b)) {
		id->stats.pods++;
	} else {
		char inst[300];

		if (id->k8s && e->in_container)
			id->stats.pod_unknown++;
		if (e->pod_uid[0])
			ws_attrs_cstr(&r->a, "k8s.pod.uid", e->pod_uid);
		if (id->node_name)
			ws_attrs_cstr(&r->a, "k8s.node.name", id->node_name);
		snprintf(inst, sizeof(inst), "%s/%u", id->host_name, e->tgid);
		put_service(&b, inst);
	}
	if (b.runtime)
		ws_attrs_cstr(&r->a, "container.runtime", b.runtime);
	if (ci.container_id[0])
		id->stats.containers++;
	/* kept while the process lives: one block sized to fit */
	small = ws_resource_compact(r);
	if (!small)
		return r;
	ws_resource_put(r);
	return small;
}

void ws_cmdline_redact(const char *argv, size_t len, char *out, size_t cap)
{
	ws_redact_cmdline(NULL, argv, len, out, cap);
}

/* Rebuild e's resources (keeps it in the cache). */
static int rebuild(struct ws_identity *id, struct proc_entry *e,
		   const char *comm)
{
	entry_put_resources(e);
	snprintf(e->comm, sizeof(e->comm), "%s", comm);
	e->comm_alt[0] = '\0';
	e->res = build(id, e, comm, 0);
	return e->res ? 0 : -ENOMEM;
}

/* Is the cached resource of e still the process's? Rebuilds it if not. */
static int revalidate(struct ws_identity *id, struct proc_entry *e,
		      const struct ws_identity_query *q, const char *comm)
{
	if (q->cgroup_id && q->cgroup_id != e->cgroup_id) {
		id->stats.cgroup_changed++;
		e->cgroup_id = q->cgroup_id;
		return rebuild(id, e, comm);
	}
	if (q->comm && strncmp(q->comm, e->comm, sizeof(e->comm) - 1) &&
	    strncmp(q->comm, e->comm_alt, sizeof(e->comm_alt) - 1)) {
		/* exec (or pid reuse) changes the comm; so can a thread
		 * naming itself: the executable tells them apart */
		const struct ws_attr *was =
			ws_attrs_get(&e->res->a, "process.executable.path");
		char path[PATH_MAX], exe[PATH_MAX];
		ssize_t n;

		snprintf(path, sizeof(path), "%s/%u/exe", id->proc_root,
			 e->tgid);
		n = readlink(path, exe, sizeof(exe) - 1);
		if (n > 0)
			exe[n] = '\0';
		if (n > 0 && (!was || strcmp(was->s, exe))) {
			id->stats.exec++;
			return rebuild(id, e, comm);
		}
		snprintf(e->comm_alt, sizeof(e->comm_alt), "%s", q->comm);
	}
	if (id->k8s && e->in_container) {
		uint64_t g = ws_k8s_store_gen(id->k8s);

		if (g != e->seen_gen) {
			e->seen_gen = g;
			if (ws_k8s_store_pod_gen(id->k8s, e->pod_uid) !=
				    e->pod_gen ||
			    !e->pod_gen) {
				id->stats.k8s_refresh++;
				return rebuild(id, e, comm);
			}
		}
	}
	return 0;
}

/* The resource of e for a server port (port rules only). */
static struct ws_resource *variant(struct ws_identity *id, struct proc_entry *e,
				   uint16_t port)
{
	struct ws_resource *r;
	unsigned i;

	for (i = 0; i < e->n_v; i++)
		if (e->v[i].port == port)
			return e->v[i].res;
	r = build(id, e, e->comm, port);
	if (!r)
		return e->res;
	/* a port no rule names gives the same name: share the base */
	if (!strcmp(ws_attrs_get(&r->a, "service.name")->s,
		    ws_attrs_get(&e->res->a, "service.name")->s)) {
		ws_resource_put(r);
		r = ws_resource_get(e->res);
	}
	if (!e->v)
		e->v = calloc(WS_IDENTITY_MAX_VARIANTS, sizeof(*e->v));
	if (!e->v || e->n_v >= WS_IDENTITY_MAX_VARIANTS) {
		id->stats.variants_dropped++;
		ws_resource_put(r);
		return e->res;
	}
	e->v[e->n_v].port = port;
	e->v[e->n_v++].res = r;
	return r;
}

struct ws_resource *ws_identity_lookup(struct ws_identity *id,
				       const struct ws_identity_query *q)
{
	const char *comm = q->comm && *q->comm ? q->comm : "unknown";
	struct proc_entry *e;
	uint32_t tgid = q->tgid;

	id->stats.lookups++;
	HASH_FIND(hh, id->by_tgid, &tgid, sizeof(tgid), e);
	if (e) {
		DL_DELETE(id->lru, e);
		DL_APPEND(id->lru, e);
		if (revalidate(id, e, q, comm)) {
			entry_free(id, e);
			return NULL;
		}
	} else {
		id->stats.misses++;
		if (id->n >= id->max_procs && id->lru) {
			id->stats.evicted++;
			entry_free(id, id->lru);
		}
		e = calloc(1, sizeof(*e));
		if (!e)
			return NULL;
		e->tgid = tgid;
		e->cgroup_id = q->cgroup_id;
		snprintf(e->comm, sizeof(e->comm), "%s", comm);
		e->res = build(id, e, comm, 0);
		if (!e->res) {
			free(e);
			return NULL;
		}
		HASH_ADD(hh, id->by_tgid, tgid, sizeof(tgid), e);
		DL_APPEND(id->lru, e);
		id->n++;
	}
	if (q->port && id->port_rules)
		return ws_resource_get(variant(id, e, q->port));
	return ws_resource_get(e->res);
}

struct ws_resource *ws_identity_resource(struct ws_identity *id, uint32_t tgid,
					 const char *comm)
{
	struct ws_identity_query q = {.tgid = tgid, .comm = comm};

	return ws_identity_lookup(id, &q);
}

void ws_identity_forget(struct ws_identity *id, uint32_t tgid)
{
	struct proc_entry *e;

	HASH_FIND(hh, id->by_tgid, &tgid, sizeof(tgid), e);
	if (e) {
		entry_free(id, e);
		id->stats.forgotten++;
	}
}

bool ws_proc_gone(const char *proc_root, uint32_t tgid)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%u", proc_root, tgid);
	return access(path, F_OK) && errno == ENOENT;
}

size_t ws_identity_sweep(struct ws_identity *id)
{
	struct proc_entry *e, *tmp;
	size_t n = 0;

	HASH_ITER (hh, id->by_tgid, e, tmp) {
		if (ws_proc_gone(id->proc_root, e->tgid)) {
			entry_free(id, e);
			n++;
		}
	}
	id->stats.swept += n;
	return n;
}

void ws_identity_stats(const struct ws_identity *id,
		       struct ws_identity_stats *out)
{
	*out = id->stats;
	out->cached = id->n;
}

size_t ws_identity_bytes(const struct ws_identity *id)
{
	const struct proc_entry *e;
	size_t n = malloc_usable_size((void *)id);
	unsigned i;

	for (e = id->lru; e; e = e->next) {
		n += malloc_usable_size((void *)e) + ws_resource_bytes(e->res) +
		     malloc_usable_size(e->v);
		for (i = 0; i < e->n_v; i++)
			if (e->v[i].res != e->res)
				n += ws_resource_bytes(e->v[i].res);
	}
	if (id->by_tgid)
		n += malloc_usable_size(id->by_tgid->hh.tbl->buckets) +
		     malloc_usable_size(id->by_tgid->hh.tbl);
	return n;
}
