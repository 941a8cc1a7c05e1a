/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Linux capabilities wirespan needs, in one table: the agent checks them
 * at start, `wirespan doctor` reports them, and the Kubernetes manifest and
 * systemd unit grant exactly these (a test compares them).
 */
#ifndef WIRESPAN_CAPS_H
#define WIRESPAN_CAPS_H

#include <stdbool.h>
#include <stddef.h>

struct ws_cap {
	int cap;	  /* CAP_* number */
	const char *name; /* "CAP_BPF" */
	const char *why;  /* what wirespan does with it */
	bool required;	  /* false: only some kernels or set-ups need it */
};

extern const struct ws_cap ws_caps[];
extern const size_t ws_n_caps;

/* Is cap in this process's effective set? (-1 if it cannot be read) */
int ws_cap_effective(int cap);

enum ws_cap_state { WS_CAP_MISSING = 0, WS_CAP_HAVE, WS_CAP_COVERED };

/* Has this process got c, or CAP_SYS_ADMIN where that stands in for it? */
enum ws_cap_state ws_cap_state(const struct ws_cap *c);

/*
 * Check the effective set against the required capabilities. CAP_SYS_ADMIN
 * stands in for CAP_BPF and CAP_PERFMON (kernels before 5.8 only know it).
 * Returns 0, or -EPERM with why naming the first missing capability, what
 * it is for and how to grant it.
 */
int ws_caps_check(char *why, size_t len);

#endif
