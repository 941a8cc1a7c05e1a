// SPDX-License-Identifier: Apache-2.0
/*
 * N real processes that each make a little NATS traffic and then stay alive,
 * so that the agent's process cache holds N real entries (tests/bench/
 * identity_mem.sh).
 *
 *   idle_clients PORT CGLIST N
 *
 * CGLIST has one cgroup directory per line (line i: where process i runs;
 * an empty line or fewer lines than N: the launcher's own cgroup). Each
 * process is forked, moves itself into its cgroup (cgroup.procs), then execs
 * this program again with a command line of its own ("--client ...",
 * distinct per process, like real services), connects to 127.0.0.1:PORT,
 * sends CONNECT, one PUB and a PING, waits for the PONG, closes the socket
 * and sleeps until the launcher ends it. At most 64 are in flight at once.
 *
 * The launcher prints {"ready":true,"procs":N,"ok":K,"failed":F} once every
 * process has reported, then waits for SIGTERM/SIGINT, sends SIGTERM to each
 * of its processes (by pid) and reaps them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define IN_FLIGHT 64
#define REPORT_FD 3

/* One connection: CONNECT, PUB, PING, wait for the PONG. 0 if it came. */
static int exchange(int port, const char *name, const char *subject)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port)};
	char buf[512], msg[1024];
	int fd, n, len, rc = -1;
	size_t got = 0;

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		len = snprintf(msg, sizeof(msg),
			       "CONNECT {\"verbose\":false,\"pedantic\":false,"
			       "\"name\":\"%s\",\"lang\":\"c\"}\r\n"
			       "PUB %s 5\r\nhello\r\nPING\r\n",
			       name, subject);
		if (write(fd, msg, (size_t)len) == len) {
			/* INFO first, then PONG */
			while (got < sizeof(buf) - 1 &&
			       (n = (int)read(fd, buf + got,
					      sizeof(buf) - 1 - got)) > 0) {
				got += (size_t)n;
				buf[got] = '\0';
				if (strstr(buf, "PONG\r\n")) {
					rc = 0;
					break;
				}
			}
		}
	}
	close(fd);
	return rc;
}

static int client(int port, const char *name, const char *subject)
{
	char ok = 'F';
	int i;

	/* a loaded machine may refuse a connection now and then */
	for (i = 0; i < 5 && ok != 'K'; i++) {
		if (i)
			usleep(200000);
		if (!exchange(port, name, subject))
			ok = 'K';
	}
	if (write(REPORT_FD, &ok, 1) != 1)
		return 1;
	close(REPORT_FD);
	for (;;)
		pause();
}

static pid_t *kids;
static int n_kids;
static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

/* Reads process reports from fd until want have come (or a timeout). */
static int collect(int fd, int want, int *ok)
{
	int got = 0;

	while (got < want) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		char b[256];
		int i, n;

		if (poll(&p, 1, 30000) <= 0)
			return got;
		n = (int)read(fd, b, sizeof(b));
		if (n <= 0)
			return got;
		for (i = 0; i < n; i++)
			*ok += b[i] == 'K';
		got += n;
	}
	return got;
}

int main(int argc, char **argv)
{
	char self[4096], line[4096], port_s[16], name[64], subject[96];
	int port, n, i, pfd[2], done = 0, ok = 0;
	struct sigaction sa = {.sa_handler = on_stop};
	FILE *cg;

	if (argc == 6 && !strcmp(argv[1], "--client"))
		return client(atoi(argv[2]), argv[3], argv[5]);
	if (argc != 4) {
		fprintf(stderr, "usage: idle_clients PORT CGLIST N\n");
		return 2;
	}
	port = atoi(argv[1]);
	n = atoi(argv[3]);
	cg = fopen(argv[2], "re");
	if (port <= 0 || n <= 0 || !cg || pipe2(pfd, O_CLOEXEC)) {
		fprintf(stderr, "idle_clients: bad arguments: %s\n",
			strerror(errno));
		return 2;
	}
	if (readlink("/proc/self/exe", self, sizeof(self) - 1) < 0)
		return 2;
	self[sizeof(self) - 1] = '\0';
	kids = calloc((size_t)n, sizeof(*kids));
	if (!kids)
		return 2;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	snprintf(port_s, sizeof(port_s), "%d", port);
	for (i = 0; i < n && !stop; i++) {
		size_t l = 0;

		if (fgets(line, sizeof(line), cg))
			l = strcspn(line, "\n");
		line[l] = '\0';
		snprintf(name, sizeof(name), "idle-%05d", i);
		snprintf(subject, sizeof(subject),
			 "bench.identity.svc%d.events", i % 500);
		if (i - done >= IN_FLIGHT)
			done += collect(pfd[0], 1, &ok);
		kids[i] = fork();
		if (kids[i] < 0) {
			fprintf(stderr, "idle_clients: fork %d: %s\n", i,
				strerror(errno));
			break;
		}
		if (kids[i] == 0) {
			char path[4200];
			FILE *f;

			close(pfd[0]);
			if (l) {
				snprintf(path, sizeof(path), "%s/cgroup.procs",
					 line);
				f = fopen(path, "w");
				if (!f || fprintf(f, "0\n") < 0 || fclose(f)) {
					fprintf(stderr,
						"idle_clients: %s: %s\n", path,
						strerror(errno));
					_exit(1);
				}
			}
			if (dup2(pfd[1], REPORT_FD) < 0)
				_exit(1);
			execl(self, "idle_clients", "--client", port_s, name,
			      "--subject", subject, (char *)NULL);
			_exit(127);
		}
		n_kids++;
	}
	close(pfd[1]);
	done += collect(pfd[0], n_kids - done, &ok);
	printf("{\"ready\":true,\"procs\":%d,\"ok\":%d,\"failed\":%d}\n",
	       n_kids, ok, n_kids - ok);
	fflush(stdout);
	while (!stop)
		pause();
	for (i = 0; i < n_kids; i++)
		kill(kids[i], SIGTERM);
	for (i = 0; i < n_kids; i++)
		waitpid(kids[i], NULL, 0);
	free(kids);
	return ok == n_kids ? 0 : 1;
}
