/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uthash.h>
#include <utlist.h>

#include "identity.h"
#include "log.h"

struct proc_entry {
	uint32_t tgid;
	struct ws_resource *res;
	UT_hash_handle hh;
	struct proc_entry *prev, *next; /* LRU: head is least recent */
};

struct ws_identity {
	char proc_root[PATH_MAX / 4];
	char host_name[256];
	struct proc_entry *by_tgid;
	struct proc_entry *lru;
	unsigned n;
	struct ws_identity_stats stats;
};

struct ws_identity *ws_identity_new(const char *proc_root)
{
	struct ws_identity *id = calloc(1, sizeof(*id));

	if (!id)
		return NULL;
	snprintf(id->proc_root, sizeof(id->proc_root), "%s",
		 proc_root ? proc_root : "/proc");
	if (gethostname(id->host_name, sizeof(id->host_name) - 1))
		snprintf(id->host_name, sizeof(id->host_name), "unknown");
	return id;
}

static void entry_free(struct ws_identity *id, struct proc_entry *e)
{
	HASH_DEL(id->by_tgid, e);
	DL_DELETE(id->lru, e);
	ws_resource_put(e->res);
	free(e);
	id->n--;
}

void ws_identity_free(struct ws_identity *id)
{
	struct proc_entry *e, *tmp;

	if (!id)
		return;
	HASH_ITER (hh, id->by_tgid, e, tmp) {
		entry_free(id, e);
	}
	free(id);
}

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

/* Field 22 of /proc/PID/stat: start time in clock ticks since boot. */
static uint64_t start_time(const char *stat)
{
	const char *p = strrchr(stat, ')');
	int field = 2;

	if (!p)
		return 0;
	for (p++; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	return strtoull(p, NULL, 10);
}

static struct ws_resource *build(struct ws_identity *id, uint32_t tgid,
				 const char *comm)
{
	char path[PATH_MAX], buf[4096], exe[PATH_MAX], svc[300];
	struct ws_resource *r;
	const char *name = comm;
	struct stat st;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%u/stat", id->proc_root, tgid);
	n = read_small(path, buf, sizeof(buf));
	r = ws_resource_new(((uint64_t)tgid << 32) ^
			    (n > 0 ? start_time(buf) : 0));
	if (!r)
		return NULL;
	if (n < 0)
		id->stats.proc_gone++;
	ws_attrs_int(&r->a, "process.pid", tgid);
	snprintf(path, sizeof(path), "%s/%u/exe", id->proc_root, tgid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		ws_attrs_cstr(&r->a, "process.executable.path", exe);
		name = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
	} else {
		ws_debug("identity: readlink %s: %s", path, strerror(errno));
	}
	ws_attrs_cstr(&r->a, "process.executable.name", name);
	snprintf(path, sizeof(path), "%s/%u/cmdline", id->proc_root, tgid);
	n = read_small(path, buf, sizeof(buf));
	if (n > 0) {
		char line[sizeof(buf) + 16];

		ws_attrs_cstr(&r->a, "process.command", buf);
		ws_cmdline_redact(buf, (size_t)n, line, sizeof(line));
		ws_attrs_cstr(&r->a, "process.command_line", line);
	}
	snprintf(path, sizeof(path), "%s/%u", id->proc_root, tgid);
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
	snprintf(svc, sizeof(svc), "unknown_service:%.255s", name);
	ws_attrs_cstr(&r->a, "service.name", svc);
	ws_attrs_cstr(&r->a, "host.name", id->host_name);
	return r;
}

/* Does an argument name a secret (--password, -token, api_key=...)? */
static bool secret_flag(const char *arg, size_t len)
{
	static const char *const words[] = {"pass", "secret", "token", "key",
					    "auth", "cred",   "seed",  "sig"};
	char low[64];
	size_t i;

	if (len >= sizeof(low))
		len = sizeof(low) - 1;
	for (i = 0; i < len; i++)
		low[i] = (char)(arg[i] >= 'A' && arg[i] <= 'Z' ? arg[i] + 32
							       : arg[i]);
	low[len] = '\0';
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strstr(low, words[i]))
			return true;
	return false;
}

/* Append s[0..n) to out, or as much as fits. */
static void put(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
	if (*o + n >= cap)
		n = *o + 1 < cap ? cap - *o - 1 : 0;
	memcpy(out + *o, s, n);
	*o += n;
	out[*o] = '\0';
}

void ws_cmdline_redact(const char *argv, size_t len, char *out, size_t cap)
{
	static const char hidden[] = "REDACTED";
	const char *a = argv, *end = argv + len;
	bool hide_next = false;
	size_t o = 0;

	out[0] = '\0';
	while (a < end) {
		size_t n = strnlen(a, (size_t)(end - a));
		const char *eq = memchr(a, '=', n);
		const char *at = memchr(a, '@', n);
		const char *scheme = n > 3 ? strstr(a, "://") : NULL;

		if (o)
			put(out, cap, &o, " ", 1);
		if (hide_next) {
			/* the value after --password, --token ... */
			put(out, cap, &o, hidden, sizeof(hidden) - 1);
			hide_next = false;
		} else if (scheme && at && scheme < at) {
			/* scheme://user:pass@host: keep the user only */
			const char *ui = scheme + 3;
			const char *colon = memchr(ui, ':', (size_t)(at - ui));

			put(out, cap, &o, a,
			    (size_t)((colon ? colon : at) - a));
			put(out, cap, &o, colon ? ":REDACTED" : "",
			    colon ? 9 : 0);
			put(out, cap, &o, at, (size_t)(a + n - at));
		} else if (a[0] == '-' && eq &&
			   secret_flag(a, (size_t)(eq - a))) {
			put(out, cap, &o, a, (size_t)(eq - a + 1));
			put(out, cap, &o, hidden, sizeof(hidden) - 1);
		} else {
			put(out, cap, &o, a, n);
			hide_next = a[0] == '-' && !eq && secret_flag(a, n);
		}
		a += n + 1;
	}
}

struct ws_resource *ws_identity_resource(struct ws_identity *id, uint32_t tgid,
					 const char *comm)
{
	struct proc_entry *e;

	id->stats.lookups++;
	HASH_FIND(hh, id->by_tgid, &tgid, sizeof(tgid), e);
	if (e) {
		DL_DELETE(id->lru, e);
		DL_APPEND(id->lru, e);
		return ws_resource_get(e->res);
	}
	id->stats.misses++;
	if (id->n >= WS_IDENTITY_MAX_PROCS && id->lru) {
		id->stats.evicted++;
		entry_free(id, id->lru);
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->tgid = tgid;
	e->res = build(id, tgid, comm && *comm ? comm : "unknown");
	if (!e->res) {
		free(e);
		return NULL;
	}
	HASH_ADD(hh, id->by_tgid, tgid, sizeof(tgid), e);
	DL_APPEND(id->lru, e);
	id->n++;
	return ws_resource_get(e->res);
}

void ws_identity_forget(struct ws_identity *id, uint32_t tgid)
{
	struct proc_entry *e;

	HASH_FIND(hh, id->by_tgid, &tgid, sizeof(tgid), e);
	if (e)
		entry_free(id, e);
}

void ws_identity_stats(const struct ws_identity *id,
		       struct ws_identity_stats *out)
{
	*out = id->stats;
}
