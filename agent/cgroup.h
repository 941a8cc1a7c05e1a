/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which container (and which Kubernetes pod) a cgroup belongs to.
 *
 * ws_cgroup_parse() is pure: a cgroup path in, container id, runtime and pod
 * uid out. It knows the layouts of docker, containerd (cri-containerd and
 * the k8s.io namespace), cri-o and podman, with the cgroupfs driver (v1 and
 * v2) and the systemd driver (`kubepods-burstable-pod<uid>.slice/
 * cri-containerd-<id>.scope`, `docker-<id>.scope`, `crio-<id>.scope`,
 * `libpod-<id>.scope`).
 *
 * Where the path comes from: the cgroup id the BPF layer records for the
 * task that made the syscall, turned into a path with open_by_handle_at on
 * the cgroup2 mount (works after the process has exited, as long as the
 * cgroup exists); else /proc/<pid>/cgroup.
 */
#ifndef WIRESPAN_CGROUP_H
#define WIRESPAN_CGROUP_H

#include <stddef.h>
#include <stdint.h>

/* Hex digits of a container id (docker, containerd, cri-o and podman). */
#define WS_CONTAINER_ID_LEN 64
/* Characters of a pod uid (a UUID: 8-4-4-4-12). */
#define WS_POD_UID_LEN 36

struct ws_cgroup_info {
	char container_id[WS_CONTAINER_ID_LEN + 1]; /* "" if none */
	/* "docker", "containerd", "cri-o", "podman"; NULL if the path does not
	 * say (cgroupfs kubepods paths hold a bare id) */
	const char *runtime;
	char pod_uid[WS_POD_UID_LEN + 1]; /* with dashes; "" if none */
};

/*
 * Parse a cgroup path (len bytes, need not be NUL-terminated). Returns 0 if
 * a container id or a pod uid was found, -ENOENT if neither.
 */
int ws_cgroup_parse(const char *path, size_t len, struct ws_cgroup_info *out);

/*
 * The cgroup path of process pid from <proc_root>/<pid>/cgroup: the cgroup
 * v2 line ("0::/..."), else the first v1 line whose path names a container,
 * else the name=systemd line. Returns the length, or -errno.
 */
int ws_cgroup_proc_path(const char *proc_root, uint32_t pid, char *buf,
			size_t cap);

/*
 * The path (as the agent sees it, e.g. /sys/fs/cgroup/kubepods.slice/...)
 * of the cgroup whose id (the kernfs inode, what bpf_get_current_cgroup_id
 * returns) is id. mount_fd: an O_DIRECTORY fd of the cgroup2 mount. Needs
 * CAP_DAC_READ_SEARCH. Returns the length, or -errno (-ESTALE: no such
 * cgroup any more).
 */
int ws_cgroup_path_by_id(int mount_fd, uint64_t id, char *buf, size_t cap);

/* Where cgroup2 is mounted (from /proc/self/mounts: /sys/fs/cgroup on v2
 * hosts, /sys/fs/cgroup/unified on hybrid ones). Returns 0 or -errno. */
int ws_cgroup2_mount(char *buf, size_t cap);

/* The id (inode) of the cgroup directory at path, or 0. For tests. */
uint64_t ws_cgroup_id_of(const char *path);

#endif
