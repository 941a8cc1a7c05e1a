/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"

/* Prefixes of a path component that hold a container id, and who uses them.
 * Longer prefixes first: "crio-conmon-" must not be read as "crio-". */
static const struct {
	const char *prefix;
	const char *runtime; /* NULL: not a container (conmon monitors) */
} id_prefixes[] = {
	{"crio-conmon-", NULL},
	{"libpod-conmon-", NULL},
	{"cri-containerd-", "containerd"},
	{"cri-dockerd-", "docker"},
	{"docker-", "docker"},
	{"crio-", "cri-o"},
	{"libpod-", "podman"},
	{"", ""}, /* a bare id: the runtime depends on the parent */
};

static bool all_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool has_suffix(const char *s, size_t n, const char *suf, size_t *rest)
{
	size_t k = strlen(suf);

	if (n < k || memcmp(s + n - k, suf, k))
		return false;
	*rest = n - k;
	return true;
}

static bool contains(const char *s, size_t n, const char *word)
{
	size_t k = strlen(word), i;

	for (i = 0; i + k <= n; i++)
		if (!memcmp(s + i, word, k))
			return true;
	return false;
}

/* The runtime of a bare 64-hex component, from its parent component. */
static const char *bare_runtime(const char *parent, size_t n)
{
	if (n == 6 && !memcmp(parent, "docker", 6))
		return "docker";
	if (n == 6 && !memcmp(parent, "k8s.io", 6))
		return "containerd"; /* containerd's k8s.io namespace */
	if (n == 13 && !memcmp(parent, "libpod_parent", 13))
		return "podman";
	return NULL; /* e.g. kubepods/burstable/pod<uid>/<id> (cgroupfs) */
}

/* A container id in component c[0..n): 0 and out filled, or -ENOENT. */
static int component_id(const char *c, size_t n, const char *parent,
			size_t parent_len, struct ws_cgroup_info *out)
{
	size_t i, k;

	if (has_suffix(c, n, ".scope", &k))
		n = k;
	for (i = 0; i < sizeof(id_prefixes) / sizeof(id_prefixes[0]); i++) {
		const char *p = id_prefixes[i].prefix;
		size_t pl = strlen(p);

		if (n < pl || memcmp(c, p, pl))
			continue;
		if (!id_prefixes[i].runtime)
			return -ENOENT;
		if (n - pl != WS_CONTAINER_ID_LEN ||
		    !all_hex(c + pl, WS_CONTAINER_ID_LEN))
			continue;
		memcpy(out->container_id, c + pl, WS_CONTAINER_ID_LEN);
		out->container_id[WS_CONTAINER_ID_LEN] = '\0';
		out->runtime = pl ? id_prefixes[i].runtime
				  : bare_runtime(parent, parent_len);
		return 0;
	}
	return -ENOENT;
}

/* A pod uid in component c[0..n) ("pod<uid>", "kubepods-...-pod<uid>.slice",
 * with '_' for '-' in the systemd form). */
static int component_pod(const char *c, size_t n, struct ws_cgroup_info *out)
{
	size_t k, i, start;

	if (has_suffix(c, n, ".slice", &k))
		n = k;
	if (n < 3 + WS_POD_UID_LEN)
		return -ENOENT;
	start = n - WS_POD_UID_LEN;
	if (memcmp(c + start - 3, "pod", 3) ||
	    (start > 3 && c[start - 4] != '-'))
		return -ENOENT;
	for (i = 0; i < WS_POD_UID_LEN; i++) {
		char ch = c[start + i];
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? (ch != '-' && ch != '_') : !all_hex(&ch, 1))
			return -ENOENT;
		out->pod_uid[i] = dash ? '-' : ch;
	}
	out->pod_uid[WS_POD_UID_LEN] = '\0';
	return 0;
}

int ws_cgroup_parse(const char *path, size_t len, struct ws_cgroup_info *out)
{
	const char *end = path + len, *c = path, *parent = "";
	size_t parent_len = 0;
	bool kube = false;

	memset(out, 0, sizeof(*out));
	while (c < end) {
		const char *slash = memchr(c, '/', (size_t)(end - c));
		size_t n = (size_t)((slash ? slash : end) - c);

		if (n) {
			struct ws_cgroup_info tmp = {0};

			if (contains(c, n, "kubepods"))
				kube = true;
			/* the innermost id wins (kind: docker/<id>/kubepods/...) */
			if (!component_id(c, n, parent, parent_len, &tmp)) {
				memcpy(out->container_id, tmp.container_id,
				       sizeof(tmp.container_id));
				out->runtime = tmp.runtime;
			}
			if (kube && !component_pod(c, n, &tmp))
				memcpy(out->pod_uid, tmp.pod_uid,
				       sizeof(tmp.pod_uid));
			parent = c;
			parent_len = n;
		}
		c += n + 1;
	}
	return out->container_id[0] || out->pod_uid[0] ? 0 : -ENOENT;
}

int ws_cgroup_proc_path(const char *proc_root, uint32_t pid, char *buf,
			size_t cap)
{
	char path[PATH_MAX], data[8192], *line, *save = NULL;
	const char *v1_systemd = NULL, *v1_container = NULL, *v2 = NULL;
	const char *best;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%u/cgroup", proc_root, pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, data, sizeof(data) - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	data[n] = '\0';
	for (line = strtok_r(data, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		/* hierarchy-ID:controller-list:cgroup-path */
		char *c1 = strchr(line, ':'),
		     *c2 = c1 ? strchr(c1 + 1, ':') : 0;
		struct ws_cgroup_info ci;

		if (!c2)
			continue;
		if (!strncmp(line, "0::", 3)) {
			v2 = c2 + 1;
			continue;
		}
		if (!v1_container &&
		    !ws_cgroup_parse(c2 + 1, strlen(c2 + 1), &ci) &&
		    ci.container_id[0])
			v1_container = c2 + 1;
		if (!strncmp(c1 + 1, "name=systemd:", 13))
			v1_systemd = c2 + 1;
	}
	/* hybrid hosts have a v2 line of "/" next to the real v1 paths */
	best = v1_container ? v1_container : v2 ? v2 : v1_systemd;
	if (!best)
		return -ENOENT;
	n = snprintf(buf, cap, "%s", best);
	return n < (ssize_t)cap ? (int)n : -ENAMETOOLONG;
}

/* Kernel file handle type of kernfs (cgroup) nodes: FILEID_KERNFS. */
#define WS_FILEID_KERNFS 0xfe

int ws_cgroup_path_by_id(int mount_fd, uint64_t id, char *buf, size_t cap)
{
	struct {
		struct file_handle fh;
		uint64_t id;
	} h;
	char link[64];
	ssize_t n;
	int fd, err;

	h.fh.handle_bytes = sizeof(uint64_t);
	h.fh.handle_type = WS_FILEID_KERNFS;
	memcpy(h.fh.f_handle, &id, sizeof(id));
	fd = open_by_handle_at(mount_fd, &h.fh, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, cap - 1);
	err = errno;
	close(fd);
	if (n < 0)
		return -err;
	if ((size_t)n >= cap - 1)
		return -ENAMETOOLONG;
	buf[n] = '\0';
	return (int)n;
}

int ws_cgroup2_mount(char *buf, size_t cap)
{
	char line[1024];
	int rc = -ENOENT;
	FILE *f = fopen("/proc/self/mounts", "re");

	if (!f)
		return -errno;
	while (rc && fgets(line, sizeof(line), f)) {
		char dev[64], dir[512], type[32];

		if (sscanf(line, "%63s %511s %31s", dev, dir, type) == 3 &&
		    !strcmp(type, "cgroup2"))
			rc = snprintf(buf, cap, "%s", dir) < (int)cap
				     ? 0
				     : -ENAMETOOLONG;
	}
	fclose(f);
	return rc;
}

uint64_t ws_cgroup_id_of(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : (uint64_t)st.st_ino;
}
