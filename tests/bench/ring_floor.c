/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ring_floor: what moving one record of B bytes through a shared ring costs
 * the producer on this machine, in plain userspace, with no BPF involved.
 * The producer memcpy()s records of B bytes from a hot buffer into a ring of
 * R bytes (what bpf_ringbuf_output does with the capture's scratch copy);
 * a consumer thread reads every cache line of each record (what the agent's
 * parser does) and frees the space. Part 1 of tests/bench/run.sh sets the
 * captured 4 KiB write against this floor.
 *
 *   ring_floor RING_BYTES RECORD_BYTES N
 *
 * Prints one JSON line: ns per record for the producer with the consumer
 * running, and without one (the ring cycled by the producer alone).
 *
 * Build: cc -O2 -std=c11 -Wall -Wextra -pthread ring_floor.c -o ring_floor
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE 64
#define MAX_RECORD (64 * 1024)
#define MAX_N 100000000L

struct ring {
	char *mem;
	size_t size, rec; /* rec: record bytes rounded up to a line */
	_Atomic size_t prod, cons;
	_Atomic int done;
	volatile uint64_t sink;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *consume(void *arg)
{
	struct ring *r = arg;
	uint64_t sum = 0;

	while (!atomic_load(&r->done) ||
	       atomic_load(&r->cons) < atomic_load(&r->prod)) {
		size_t c = atomic_load(&r->cons), p = atomic_load(&r->prod);

		for (; c < p; c += r->rec) {
			const char *q = r->mem + c % r->size;
			size_t i;

			for (i = 0; i < r->rec; i += LINE)
				sum += (unsigned char)q[i];
		}
		atomic_store(&r->cons, c);
	}
	r->sink = sum;
	return NULL;
}

/* ns per record for n records; with a consumer if consumer != 0. */
static double run(struct ring *r, const char *src, size_t len, long n,
		  int consumer)
{
	pthread_t th;
	uint64_t t0, t;
	size_t p = 0;
	long i;

	atomic_store(&r->prod, 0);
	atomic_store(&r->cons, 0);
	atomic_store(&r->done, 0);
	if (consumer && pthread_create(&th, NULL, consume, r)) {
		perror("ring_floor: pthread_create");
		exit(1);
	}
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		/* wait for room: the producer never overwrites unread data */
		while (consumer && p + r->rec - atomic_load(&r->cons) > r->size)
			;
		memcpy(r->mem + p % r->size, src, len);
		p += r->rec;
		atomic_store(&r->prod, p);
	}
	t = now_ns() - t0;
	atomic_store(&r->done, 1);
	if (consumer)
		pthread_join(th, NULL);
	return (double)t / (double)n;
}

int main(int argc, char **argv)
{
	static char src[MAX_RECORD];
	struct ring r = {0};
	double with, without;
	size_t len;
	long n;

	if (argc != 4) {
		fprintf(stderr,
			"usage: ring_floor RING_BYTES RECORD_BYTES N\n");
		return 2;
	}
	r.size = strtoull(argv[1], NULL, 0);
	len = strtoull(argv[2], NULL, 0);
	n = strtol(argv[3], NULL, 10);
	if (len < 1 || len > MAX_RECORD || n < 1 || n > MAX_N) {
		fprintf(stderr,
			"ring_floor: RECORD_BYTES in 1..%d, N in 1..%ld\n",
			MAX_RECORD, MAX_N);
		return 2;
	}
	r.rec = (len + LINE - 1) / LINE * LINE;
	if (r.size < 2 * r.rec || r.size % r.rec) {
		/* whole records only: no record wraps the end of the ring */
		r.size = (r.size < 2 * r.rec ? 2 * r.rec : r.size) / r.rec *
			 r.rec;
	}
	r.mem = aligned_alloc(4096, (r.size + 4095) / 4096 * 4096);
	if (!r.mem) {
		perror("ring_floor: aligned_alloc");
		return 1;
	}
	memset(r.mem, 1, r.size);
	memset(src, 2, sizeof(src));
	without = run(&r, src, len, n, 0);
	with = run(&r, src, len, n, 1);
	printf("{\"ring_bytes\":%zu,\"record_bytes\":%zu,\"n\":%ld,"
	       "\"ns_per_record\":%.1f,\"ns_per_record_no_consumer\":%.1f}\n",
	       r.size, len, n, with, without);
	free(r.mem);
	return 0;
}
