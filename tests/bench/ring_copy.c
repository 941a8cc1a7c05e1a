/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ring_copy: what one BPF program pays to move B bytes, with nothing else in
 * it (bpf/ringcopy.bpf.c, which lists the modes). The program sits on
 * getppid's enter tracepoint; this process calls getppid() N times and reads
 * the program's run time from the kernel's bpf_stats, while a consumer
 * thread drains the ring buffer the way the capture's reader does (poll with
 * a 50 ms timeout, woken past 1/8 of the ring) and reads every cache line of
 * every record, as the agent's parsers do.
 *
 *   ring_copy ring|user+ring|dyn|user|hot|none BYTES N [RING_BYTES]
 *
 * RC_WAKEUP=BYTES: wake the reader past this many unread bytes (default 1/8
 * of the ring, as the capture). Prints one JSON line. Needs root and
 * kernel.bpf_stats_enabled=1. Part 1 of tests/bench/run.sh runs it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ringcopy.skel.h"

/* index = the program's mode number */
static const char *const modes[] = {"ring", "user+ring", "dyn",
				    "user", "hot",	 "none"};
#define N_MODES (sizeof(modes) / sizeof(modes[0]))
#define MODE_DYN 2

static _Atomic int stop;
static volatile unsigned long sink;
static unsigned long records;

static int on_record(void *ctx, void *data, size_t n)
{
	const unsigned char *q = data;
	unsigned long s = 0;
	size_t i;

	(void)ctx;
	for (i = 0; i < n; i += 64)
		s += q[i];
	sink += s;
	records++;
	return 0;
}

static void *consume(void *arg)
{
	struct ring_buffer *rb = arg;

	while (!atomic_load(&stop))
		ring_buffer__poll(rb, 50);
	ring_buffer__consume(rb);
	return NULL;
}

static int run_stats(int fd, unsigned long long *ns, unsigned long long *cnt)
{
	struct bpf_prog_info info;
	__u32 ilen = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &ilen))
		return -1;
	*ns = info.run_time_ns;
	*cnt = info.run_cnt;
	return 0;
}

int main(int argc, char **argv)
{
	static char ubuf[2 * 16384];
	unsigned long long t0, c0, t1, c1;
	struct ringcopy_bpf *skel;
	struct ring_buffer *rb;
	unsigned long ring = 8ul << 20, bytes;
	unsigned int mode = N_MODES;
	pthread_t th;
	long n, i;
	int fd;

	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: ring_copy ring|user+ring|dyn|user|hot|"
				"none BYTES N [RING_BYTES]\n");
		return 2;
	}
	for (i = 0; i < (long)N_MODES; i++)
		if (!strcmp(argv[1], modes[i]))
			mode = (unsigned int)i;
	bytes = strtoul(argv[2], NULL, 0);
	n = strtol(argv[3], NULL, 10);
	if (argc == 5)
		ring = strtoul(argv[4], NULL, 0);
	if (mode >= N_MODES || bytes < 1 || bytes > 16383 || n < 1 ||
	    ring < 4096 || (ring & (ring - 1))) {
		fprintf(stderr, "ring_copy: mode, BYTES in 1..16383, N >= 1, "
				"RING_BYTES a power of two\n");
		return 2;
	}
	memset(ubuf, 3, sizeof(ubuf));
	skel = ringcopy_bpf__open();
	if (!skel) {
		fprintf(stderr, "ring_copy: cannot open the BPF object\n");
		return 1;
	}
	skel->rodata->mode = mode;
	skel->rodata->tgid = (unsigned int)getpid();
	skel->rodata->len = (unsigned int)bytes;
	skel->rodata->ubuf = (unsigned long)ubuf;
	skel->rodata->wakeup_bytes =
		getenv("RC_WAKEUP") ? strtoul(getenv("RC_WAKEUP"), NULL, 0)
				    : ring / 8;
	bpf_map__set_max_entries(skel->maps.rb, (unsigned int)ring);
	bpf_program__set_autoload(skel->progs.ringcopy, mode != MODE_DYN);
	bpf_program__set_autoload(skel->progs.ringcopy_dyn, mode == MODE_DYN);
	if (ringcopy_bpf__load(skel) || ringcopy_bpf__attach(skel)) {
		fprintf(stderr, "ring_copy: cannot load or attach mode %s%s\n",
			argv[1],
			mode == MODE_DYN
				? " (needs bpf_probe_read_user_dynptr, "
				  "Linux 6.16+)"
				: "");
		ringcopy_bpf__destroy(skel);
		return 1;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.rb), on_record, NULL,
			      NULL);
	if (!rb || pthread_create(&th, NULL, consume, rb)) {
		fprintf(stderr, "ring_copy: cannot start the consumer\n");
		ring_buffer__free(rb);
		ringcopy_bpf__destroy(skel);
		return 1;
	}
	fd = bpf_program__fd(mode == MODE_DYN ? skel->progs.ringcopy_dyn
					      : skel->progs.ringcopy);
	if (run_stats(fd, &t0, &c0))
		t0 = c0 = 0;
	for (i = 0; i < n; i++)
		getppid();
	if (run_stats(fd, &t1, &c1))
		t1 = c1 = 0;
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	printf("{\"mode\":\"%s\",\"bytes\":%lu,\"ring_bytes\":%lu,\"n\":%ld,"
	       "\"runs\":%llu,\"ns_per_run\":%.1f,\"records_read\":%lu}\n",
	       argv[1], bytes, ring, n, c1 - c0,
	       c1 > c0 ? (double)(t1 - t0) / (double)(c1 - c0) : 0.0, records);
	ring_buffer__free(rb);
	ringcopy_bpf__destroy(skel);
	return c1 > c0 ? 0 : 1;
}
