/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bpf_floor: load and attach bpf/floor.bpf.c (empty programs on wirespan's
 * tracepoints, same names), print "ready" on stderr, wait for SIGINT or
 * SIGTERM, detach. The benchmark measures the same syscall loads under it
 * as under `wirespan capture`: the difference is wirespan's own work.
 */
#include <signal.h>
#include <stdio.h>

#include <bpf/libbpf.h>

#include "floor.skel.h"

int main(void)
{
	struct floor_bpf *skel;
	sigset_t set;
	int sig, err;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	skel = floor_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "bpf_floor: cannot load the empty programs\n");
		return 1;
	}
	err = floor_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "bpf_floor: attach: %d\n", err);
		floor_bpf__destroy(skel);
		return 1;
	}
	fprintf(stderr, "bpf_floor: ready\n");
	sigwait(&set, &sig);
	floor_bpf__destroy(skel);
	return 0;
}
