/* SPDX-License-Identifier: Apache-2.0 */
/*
 * syscall_load: a fixed number of plain syscalls for the BPF cost benchmark
 * (tests/bench/run.sh). Every loop is bounded in count; sockets are loopback.
 *
 *   syscall_load nonsock N   N write()s of 64 B to /dev/null, then N read()s
 *                            of 64 B from a (sparse, unlinked) regular file
 *   syscall_load tcp N       N write()s of 64 B of binary junk on a loopback
 *                            TCP connection to a sink thread that read()s and
 *                            discards: an unclassified (not NATS/HTTP) socket
 *   syscall_load nats N      "CONNECT {}\r\n", then N write()s of one NATS
 *                            frame "PUB bench 4096\r\n" + 4096 B + "\r\n"
 *                            (4114 B) to the same kind of sink
 *
 * Prints one JSON line: the mode, N, wall ns per write and per read in the
 * main thread, and how many read()s the sink made.
 *
 * Build: cc -O2 -std=c11 -Wall -Wextra -pthread syscall_load.c -o syscall_load
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SMALL 64
#define NATS_PAYLOAD 4096
#define FILE_SIZE (64 * 1024)
#define MAX_N 100000000L

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "syscall_load: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int write_full(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---- sink: accept one connection, read and discard until EOF ---- */

struct sink {
	int lfd;
	uint64_t reads, bytes;
};

static void *sink_main(void *arg)
{
	struct sink *s = arg;
	static char buf[64 * 1024];
	int fd = accept(s->lfd, NULL, NULL);

	if (fd < 0)
		die("accept");
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		s->reads++;
		s->bytes += (uint64_t)r;
	}
	close(fd);
	return NULL;
}

/* A loopback TCP connection to a sink thread; returns the client fd. */
static int open_sink(struct sink *s, pthread_t *th)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);
	int fd, one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (s->lfd < 0)
		die("socket");
	if (bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(s->lfd, 1) ||
	    getsockname(s->lfd, (struct sockaddr *)&a, &alen))
		die("bind/listen");
	if (pthread_create(th, NULL, sink_main, s))
		die("pthread_create");
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	return fd;
}

static void close_sink(struct sink *s, pthread_t th, int fd)
{
	shutdown(fd, SHUT_WR);
	pthread_join(th, NULL);
	close(fd);
	close(s->lfd);
}

int main(int argc, char **argv)
{
	static char buf[SMALL], frame[16 + NATS_PAYLOAD + 2];
	double w_ns = 0, r_ns = 0;
	struct sink s = {0};
	const char *mode;
	pthread_t th;
	uint64_t t0;
	long n, i;
	int fd, fd2;

	if (argc != 3) {
		fprintf(stderr, "usage: syscall_load nonsock|tcp|nats N\n");
		return 2;
	}
	mode = argv[1];
	n = strtol(argv[2], NULL, 10);
	if (n <= 0 || n > MAX_N) {
		fprintf(stderr, "syscall_load: N must be in 1..%ld\n", MAX_N);
		return 2;
	}
	/* Binary junk that is neither NATS nor HTTP: starts with 0x00. */
	for (i = 0; i < SMALL; i++)
		buf[i] = (char)(i * 37);

	if (!strcmp(mode, "nonsock")) {
		char tmpl[] = "/tmp/wirespan-bench-XXXXXX";

		fd = open("/dev/null", O_WRONLY);
		if (fd < 0)
			die("/dev/null");
		t0 = now_ns();
		for (i = 0; i < n; i++)
			if (write(fd, buf, SMALL) != SMALL)
				die("write /dev/null");
		w_ns = (double)(now_ns() - t0) / (double)n;
		close(fd);

		fd2 = mkstemp(tmpl);
		if (fd2 < 0)
			die("mkstemp");
		unlink(tmpl);
		if (ftruncate(fd2, FILE_SIZE)) /* sparse: no write() needed */
			die("ftruncate");
		t0 = now_ns();
		for (i = 0; i < n; i++) {
			ssize_t r = read(fd2, buf, SMALL);

			if (r < 0)
				die("read file");
			if (r == 0) {
				/* EOF: rewind (lseek is not traced) and count
				 * the empty read as one of the N */
				if (lseek(fd2, 0, SEEK_SET) < 0)
					die("lseek");
			}
		}
		r_ns = (double)(now_ns() - t0) / (double)n;
		close(fd2);
	} else if (!strcmp(mode, "tcp")) {
		fd = open_sink(&s, &th);
		t0 = now_ns();
		for (i = 0; i < n; i++)
			if (write_full(fd, buf, SMALL))
				die("write tcp");
		w_ns = (double)(now_ns() - t0) / (double)n;
		close_sink(&s, th, fd);
	} else if (!strcmp(mode, "nats")) {
		static const char hello[] = "CONNECT {}\r\n";
		size_t hl;

		hl = (size_t)snprintf(frame, sizeof(frame), "PUB bench %d\r\n",
				      NATS_PAYLOAD);
		for (i = 0; i < NATS_PAYLOAD; i++)
			frame[hl + (size_t)i] = (char)('a' + i % 26);
		memcpy(frame + hl + NATS_PAYLOAD, "\r\n", 2);
		hl += NATS_PAYLOAD + 2;

		fd = open_sink(&s, &th);
		if (write_full(fd, hello, sizeof(hello) - 1))
			die("write CONNECT");
		t0 = now_ns();
		for (i = 0; i < n; i++)
			if (write_full(fd, frame, hl))
				die("write nats");
		w_ns = (double)(now_ns() - t0) / (double)n;
		close_sink(&s, th, fd);
	} else {
		fprintf(stderr, "syscall_load: unknown mode %s\n", mode);
		return 2;
	}
	printf("{\"mode\":\"%s\",\"n\":%ld,\"write_ns_per_op\":%.1f,"
	       "\"read_ns_per_op\":%.1f,\"sink_reads\":%llu,"
	       "\"sink_bytes\":%llu}\n",
	       mode, n, w_ns, r_ns, (unsigned long long)s.reads,
	       (unsigned long long)s.bytes);
	return 0;
}
