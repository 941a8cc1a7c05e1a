/* SPDX-License-Identifier: Apache-2.0 */
/* Container id, runtime and pod uid from cgroup paths as real hosts have
 * them (docker, containerd, cri-o, podman; cgroupfs and systemd drivers;
 * cgroup v1 and v2). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cgroup.h"
#include "guard.h"

#define ID1 "8e3c4b6a1f0d2e9c7b5a3f1e0d9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a3921f0e"
#define ID2 "f1d2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f30211203f4e5d6c7b8a9fa"
#define UID "5b9f3d7a-2c41-4e8b-9a6d-0f1e2d3c4b5a"
#define UIDU "5b9f3d7a_2c41_4e8b_9a6d_0f1e2d3c4b5a"

struct fixture {
	const char *path, *id, *runtime, *pod;
};

static const struct fixture fixtures[] = {
	/* docker, cgroupfs v1 */
	{"/docker/" ID1, ID1, "docker", ""},
	/* docker, systemd driver (v1 and v2) */
	{"/system.slice/docker-" ID1 ".scope", ID1, "docker", ""},
	/* kubelet + containerd, systemd driver, cgroup v2 */
	{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UIDU
	 ".slice/cri-containerd-" ID1 ".scope",
	 ID1, "containerd", UID},
	/* guaranteed QoS has no QoS slice */
	{"/kubepods.slice/kubepods-pod" UIDU ".slice/cri-containerd-" ID2
	 ".scope",
	 ID2, "containerd", UID},
	/* besteffort, cri-o, systemd */
	{"/kubepods.slice/kubepods-besteffort.slice/"
	 "kubepods-besteffort-pod" UIDU ".slice/crio-" ID2 ".scope",
	 ID2, "cri-o", UID},
	/* cri-o's conmon is not the container */
	{"/kubepods.slice/kubepods-besteffort.slice/"
	 "kubepods-besteffort-pod" UIDU ".slice/crio-conmon-" ID2 ".scope",
	 "", NULL, UID},
	/* kubelet, cgroupfs driver, v1: a bare id (runtime unknown) */
	{"/kubepods/burstable/pod" UID "/" ID1, ID1, NULL, UID},
	{"/kubepods/pod" UID "/" ID2, ID2, NULL, UID},
	/* cri-o with cgroupfs */
	{"/kubepods/besteffort/pod" UID "/crio-" ID1, ID1, "cri-o", UID},
	/* dockershim with the systemd driver */
	{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UIDU
	 ".slice/docker-" ID2 ".scope",
	 ID2, "docker", UID},
	/* kind: a kubelet inside a docker container */
	{"/docker/" ID2 "/kubelet.slice/kubelet-kubepods.slice/"
	 "kubelet-kubepods-besteffort.slice/"
	 "kubelet-kubepods-besteffort-pod" UIDU ".slice/cri-containerd-" ID1
	 ".scope",
	 ID1, "containerd", UID},
	/* containerd's k8s.io namespace, cgroupfs */
	{"/k8s.io/" ID1, ID1, "containerd", ""},
	/* podman rootful (systemd) and rootless (v2, nested "container") */
	{"/machine.slice/libpod-" ID1 ".scope", ID1, "podman", ""},
	{"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" ID2
	 ".scope/container",
	 ID2, "podman", ""},
	{"/machine.slice/libpod-conmon-" ID1 ".scope", "", NULL, ""},
	{"/libpod_parent/libpod-" ID1, ID1, "podman", ""},
	/* the pod slice itself (pause-less sandbox cgroup) */
	{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UIDU
	 ".slice",
	 "", NULL, UID},
	/* absolute path through the mount, as open_by_handle_at gives it */
	{"/sys/fs/cgroup/kubepods.slice/kubepods-pod" UIDU
	 ".slice/cri-containerd-" ID1 ".scope",
	 ID1, "containerd", UID},
};

static const char *const no_container[] = {
	"/",
	"",
	"/user.slice/user-0.slice/session-3.scope",
	"/system.slice/nats-server.service",
	/* 63 and 65 hex digits, upper case: not an id */
	"/docker/"
	"8e3c4b6a1f0d2e9c7b5a3f1e0d9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a3921f0",
	"/docker/" ID1 "0",
	"/docker/"
	"8E3C4B6A1F0D2E9C7B5A3F1E0D9C8B7A6F5E4D3C2B1A09F8E7D6C5B4A3921F0E",
	/* a pod-looking name outside kubepods */
	"/system.slice/pod" UID,
	/* bad uid shape */
	"/kubepods/burstable/pod5b9f3d7a-2c41-4e8b-9a6d-0f1e2d3c4b5",
	"/kubepods/burstable/podzb9f3d7a-2c41-4e8b-9a6d-0f1e2d3c4b5a",
	"/kubepods.slice/kubepods-burstable.slice/kubepods-burstablepod" UIDU
	".slice",
	"//////",
};

static void parse_fixtures(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		const struct fixture *f = &fixtures[i];
		struct ws_cgroup_info ci;
		size_t n = strlen(f->path);
		/* the path ends right before a guard page */
		const uint8_t *g = guard_copy((const uint8_t *)f->path, n);
		int rc = ws_cgroup_parse((const char *)g, n, &ci);

		print_message("%s\n", f->path);
		assert_int_equal(rc, f->id[0] || f->pod[0] ? 0 : -ENOENT);
		assert_string_equal(ci.container_id, f->id);
		if (f->runtime)
			assert_string_equal(ci.runtime, f->runtime);
		else
			assert_null(ci.runtime);
		assert_string_equal(ci.pod_uid, f->pod);
	}
}

static void parse_negative(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(no_container) / sizeof(no_container[0]); i++) {
		struct ws_cgroup_info ci;
		size_t n = strlen(no_container[i]);
		const uint8_t *g =
			guard_copy((const uint8_t *)no_container[i], n);

		print_message("%s\n", no_container[i]);
		assert_int_equal(ws_cgroup_parse((const char *)g, n, &ci),
				 -ENOENT);
		assert_string_equal(ci.container_id, "");
		assert_string_equal(ci.pod_uid, "");
	}
}

/* Every prefix of every fixture: no over-read, no crash. */
static void parse_prefixes(void **state)
{
	size_t i, n;

	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
		for (n = 0; n <= strlen(fixtures[i].path); n++) {
			struct ws_cgroup_info ci;
			const uint8_t *g = guard_copy(
				(const uint8_t *)fixtures[i].path, n);

			ws_cgroup_parse((const char *)g, n, &ci);
		}
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void proc_cgroup_files(void **state)
{
	char root[] = "/tmp/ws-cgroup-XXXXXX", dir[64], buf[512];
	int n;

	assert_non_null(mkdtemp(root));
	snprintf(dir, sizeof(dir), "%s/42", root);
	assert_int_equal(mkdir(dir, 0755), 0);
	/* cgroup v2 only */
	write_file(dir, "cgroup",
		   "0::/kubepods.slice/kubepods-pod" UIDU
		   ".slice/cri-containerd-" ID1 ".scope\n");
	n = ws_cgroup_proc_path(root, 42, buf, sizeof(buf));
	assert_true(n > 0);
	assert_string_equal(buf, "/kubepods.slice/kubepods-pod" UIDU
				 ".slice/cri-containerd-" ID1 ".scope");
	/* hybrid v1: the v2 line is "/", the container is in the v1 lines */
	write_file(dir, "cgroup",
		   "12:pids:/kubepods/burstable/pod" UID "/" ID2 "\n"
		   "11:cpu,cpuacct:/kubepods/burstable/pod" UID "/" ID2 "\n"
		   "1:name=systemd:/kubepods/burstable/pod" UID "/" ID2 "\n"
		   "0::/\n");
	n = ws_cgroup_proc_path(root, 42, buf, sizeof(buf));
	assert_true(n > 0);
	assert_string_equal(buf, "/kubepods/burstable/pod" UID "/" ID2);
	/* v1 host process: name=systemd */
	write_file(dir, "cgroup",
		   "3:memory:/user.slice\n"
		   "1:name=systemd:/user.slice/user-0.slice/session-1.scope\n");
	n = ws_cgroup_proc_path(root, 42, buf, sizeof(buf));
	assert_true(n > 0);
	assert_string_equal(buf, "/user.slice/user-0.slice/session-1.scope");
	/* garbage and a small buffer */
	write_file(dir, "cgroup", "no colons here\n");
	assert_int_equal(ws_cgroup_proc_path(root, 42, buf, sizeof(buf)),
			 -ENOENT);
	write_file(dir, "cgroup", "0::/a/long/path\n");
	assert_int_equal(ws_cgroup_proc_path(root, 42, buf, 4), -ENAMETOOLONG);
	assert_int_equal(ws_cgroup_proc_path(root, 43, buf, sizeof(buf)),
			 -ENOENT);
	snprintf(buf, sizeof(buf), "%s/cgroup", dir);
	unlink(buf);
	rmdir(dir);
	rmdir(root);
}

/* This process's own cgroup: its id maps back to its path (root only:
 * open_by_handle_at needs CAP_DAC_READ_SEARCH). */
static void path_by_id_self(void **state)
{
	char mnt[256], rel[400], full[700], back[700], *v2;
	FILE *f;
	uint64_t id;
	int mfd, n;

	if (ws_cgroup2_mount(mnt, sizeof(mnt)) || geteuid() != 0)
		skip();
	/* the v2 line of /proc/self/cgroup */
	f = fopen("/proc/self/cgroup", "r");
	assert_non_null(f);
	while ((v2 = fgets(rel, sizeof(rel), f)) && strncmp(rel, "0::", 3))
		;
	fclose(f);
	if (!v2)
		skip();
	rel[strcspn(rel, "\n")] = '\0';
	snprintf(full, sizeof(full), "%s%s", mnt,
		 strcmp(rel + 3, "/") ? rel + 3 : "");
	id = ws_cgroup_id_of(full);
	mfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!id || mfd < 0) {
		if (mfd >= 0)
			close(mfd);
		skip();
	}
	n = ws_cgroup_path_by_id(mfd, id, back, sizeof(back));
	assert_true(n > 0);
	assert_string_equal(back, full);
	/* an id no cgroup has */
	assert_true(ws_cgroup_path_by_id(mfd, ~0ull - 5, back, sizeof(back)) <
		    0);
	close(mfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_fixtures),
		cmocka_unit_test(parse_negative),
		cmocka_unit_test(parse_prefixes),
		cmocka_unit_test(proc_cgroup_files),
		cmocka_unit_test(path_by_id_self),
	};

	return cmocka_run_group_tests(tests, guard_setup, guard_teardown);
}
