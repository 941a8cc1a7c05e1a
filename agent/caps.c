/* SPDX-License-Identifier: Apache-2.0 */
/* Capabilities: which wirespan needs, and whether this process has them. */
#include <errno.h>
#include <stdio.h>
#include <sys/capability.h>

#include "caps.h"

const struct ws_cap ws_caps[] = {
	{CAP_BPF, "CAP_BPF", "load the capture's BPF programs and maps", true},
	{CAP_PERFMON, "CAP_PERFMON",
	 "attach to syscall tracepoints and read kernel memory from BPF", true},
	{CAP_SYS_PTRACE, "CAP_SYS_PTRACE",
	 "read /proc/<pid>/exe and friends of other users' processes", true},
	{CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH",
	 "read tracefs ids and /proc files owned by other users", true},
	{CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE",
	 "raise RLIMIT_MEMLOCK on kernels before 5.11 (no memcg accounting)",
	 false},
	{CAP_SYS_ADMIN, "CAP_SYS_ADMIN",
	 "mount tracefs when the host has not; replaces CAP_BPF+CAP_PERFMON "
	 "before 5.8",
	 false},
};
const size_t ws_n_caps = sizeof(ws_caps) / sizeof(ws_caps[0]);

int ws_cap_effective(int cap)
{
	cap_flag_value_t v = CAP_CLEAR;
	cap_t c = cap_get_proc();
	int rc;

	if (!c)
		return -1;
	rc = cap_get_flag(c, cap, CAP_EFFECTIVE, &v) ? -1 : v == CAP_SET;
	cap_free(c);
	return rc;
}

enum ws_cap_state ws_cap_state(const struct ws_cap *c)
{
	if (ws_cap_effective(c->cap) == 1)
		return WS_CAP_HAVE;
	if ((c->cap == CAP_BPF || c->cap == CAP_PERFMON) &&
	    ws_cap_effective(CAP_SYS_ADMIN) == 1)
		return WS_CAP_COVERED;
	return WS_CAP_MISSING;
}

int ws_caps_check(char *why, size_t len)
{
	size_t i;

	for (i = 0; i < ws_n_caps; i++) {
		const struct ws_cap *c = &ws_caps[i];

		if (!c->required || ws_cap_state(c) != WS_CAP_MISSING)
			continue;
		snprintf(why, len,
			 "missing capability %s (needed to %s): run as root, "
			 "or grant it (systemd AmbientCapabilities=, "
			 "Kubernetes securityContext.capabilities.add)",
			 c->name, c->why);
		return -EPERM;
	}
	return 0;
}
