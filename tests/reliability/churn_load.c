// SPDX-License-Identifier: Apache-2.0
/*
 * Connection and process churn for the reliability suite (issue 9 item 4,
 * tests/integration/reliability_churn.py). One static binary, five modes:
 *
 *   churn_load serve --nats-port P --http-port Q
 *       an epoll server on 127.0.0.1: NATS (INFO at accept, PONG per PING)
 *       and HTTP (200 per request head); prints {"ready":true} then, at
 *       SIGTERM/SIGINT, its counts.
 *   churn_load hold --nats-port P --http-port Q --conns N
 *       N concurrent connections, alternately NATS and HTTP, one exchange
 *       each; prints {"ready":true,...}; at SIGUSR1 one more exchange on
 *       each, then closes them all and prints its counts.
 *   churn_load rate --nats-port P --http-port Q --rate R --seconds S
 *                   [--workers W]
 *       R new connections per second for S seconds (W processes pace
 *       R/W each): connect, one exchange, close.
 *   churn_load exec --rate R --seconds S [--max-children M] -- PROG ARG...
 *       R short-lived processes per second (posix_spawn), reaped as they end.
 *   churn_load client --nats-port P
 *       one NATS exchange (CONNECT, PUB, PING -> PONG), exit 0 on PONG.
 *
 * An exchange is "CONNECT {}\r\nPUB churn.<mode> 2\r\nhi\r\nPING\r\n" ->
 * "PONG\r\n" for NATS and "GET /churn-<mode> HTTP/1.1" -> 200 for HTTP, so
 * the agent classifies every connection and builds one client span per
 * exchange. Results are one JSON line on stdout with "ok".
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

extern char **environ;

#define NATS_INFO                                                           \
	"INFO {\"server_id\":\"CHURN\",\"version\":\"2.9.10\",\"proto\":1," \
	"\"headers\":true,\"max_payload\":1048576}\r\n"
#define HTTP_OK "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
#define IO_TIMEOUT_S 10

enum proto { NATS = 0, HTTP = 1 };

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull),
			      .tv_nsec = (long)(t % 1000000000ull)};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

/*
 * Room for n descriptors: the soft limit raised to n, and the hard one too
 * where we may (CAP_SYS_RESOURCE). -errno if n does not fit.
 */
static int want_fds(rlim_t n)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -errno;
	if (rl.rlim_cur >= n)
		return 0;
	rl.rlim_cur = n;
	if (rl.rlim_max < n) {
		struct rlimit hard = {.rlim_cur = n, .rlim_max = n};

		if (!setrlimit(RLIMIT_NOFILE, &hard))
			return 0;
		return -EMFILE;
	}
	return setrlimit(RLIMIT_NOFILE, &rl) ? -errno : 0;
}

/*
 * Counts occurrences of a short pattern in a stream fed in pieces: the
 * state is how much of the pattern the bytes so far end with (KMP).
 */
struct matcher {
	const char *pat;
	size_t len, state;
	size_t fail[8];
};

static void matcher_init(struct matcher *m, const char *pat)
{
	size_t i, k = 0;

	m->pat = pat;
	m->len = strlen(pat);
	m->state = 0;
	m->fail[0] = 0;
	for (i = 1; i < m->len; i++) {
		while (k && pat[i] != pat[k])
			k = m->fail[k - 1];
		if (pat[i] == pat[k])
			k++;
		m->fail[i] = k;
	}
}

static unsigned matcher_feed(struct matcher *m, const char *buf, size_t n)
{
	unsigned hits = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		while (m->state && buf[i] != m->pat[m->state])
			m->state = m->fail[m->state - 1];
		if (buf[i] == m->pat[m->state])
			m->state++;
		if (m->state == m->len) {
			hits++;
			m->state = m->fail[m->len - 1];
		}
	}
	return hits;
}

static int listen_on(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4096)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int dial(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool write_all(int fd, const char *b, size_t n)
{
	while (n) {
		ssize_t k = write(fd, b, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		b += k;
		n -= (size_t)k;
	}
	return true;
}

/* Read until pat was seen once (what the server answers). */
static bool read_until(int fd, const char *pat)
{
	struct matcher m;
	char buf[512];

	matcher_init(&m, pat);
	for (;;) {
		ssize_t k = read(fd, buf, sizeof(buf));

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		if (matcher_feed(&m, buf, (size_t)k))
			return true;
	}
}

/* One exchange on a connected fd. The NATS server greets first. */
static bool exchange(int fd, enum proto p, const char *tag, bool greeted)
{
	char req[128];
	int n;

	if (p == HTTP) {
		n = snprintf(req, sizeof(req),
			     "GET /churn-%s HTTP/1.1\r\nHost: churn\r\n\r\n",
			     tag);
		return write_all(fd, req, (size_t)n) &&
		       read_until(fd, "\r\n\r\nok");
	}
	if (!greeted && !read_until(fd, "\r\n"))
		return false;
	n = snprintf(req, sizeof(req), "%sPUB churn.%s 2\r\nhi\r\nPING\r\n",
		     greeted ? "" : "CONNECT {}\r\n", tag);
	return write_all(fd, req, (size_t)n) && read_until(fd, "PONG\r\n");
}

struct opts {
	int nats_port, http_port, conns, workers, max_children;
	double rate, seconds;
	char **argv; /* exec: PROG ARG... */
};

/* ---- serve ---------------------------------------------------------- */

struct sconn {
	int fd;
	enum proto p;
	struct matcher m;
};

static int cmd_serve(const struct opts *o)
{
	uint64_t accepted[2] = {0}, answers[2] = {0}, closed = 0, errs = 0;
	int lfd[2], ep, i;
	struct epoll_event ev, evs[256];
	struct sigaction sa = {.sa_handler = on_signal};

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (want_fds(1 << 16)) {
		struct rlimit rl;

		/* as many as the hard limit lets us */
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	lfd[NATS] = listen_on(o->nats_port);
	lfd[HTTP] = listen_on(o->http_port);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (lfd[NATS] < 0 || lfd[HTTP] < 0 || ep < 0) {
		printf("{\"ok\":false,\"error\":\"listen: %s\"}\n",
		       strerror(errno));
		return 1;
	}
	for (i = 0; i < 2; i++) {
		ev.events = EPOLLIN;
		ev.data.ptr = NULL;
		ev.data.u64 = (uint64_t)i; /* listeners: 0 and 1 */
		epoll_ctl(ep, EPOLL_CTL_ADD, lfd[i], &ev);
	}
	printf("{\"ready\":true}\n");
	fflush(stdout);
	while (!got_signal) {
		int n = epoll_wait(ep, evs, 256, 200);

		for (i = 0; i < n; i++) {
			struct sconn *c;
			char buf[4096];
			ssize_t k;

			if (evs[i].data.u64 < 2) {
				enum proto p = (enum proto)evs[i].data.u64;
				int fd;

				while ((fd = accept4(lfd[p], NULL, NULL,
						     SOCK_NONBLOCK)) >= 0) {
					c = calloc(1, sizeof(*c));
					if (!c) {
						close(fd);
						errs++;
						continue;
					}
					c->fd = fd;
					c->p = p;
					matcher_init(&c->m,
						     p == NATS ? "PING\r\n"
							       : "\r\n\r\n");
					if (p == NATS &&
					    write(fd, NATS_INFO,
						  sizeof(NATS_INFO) - 1) < 0)
						errs++;
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
					accepted[p]++;
				}
				continue;
			}
			c = evs[i].data.ptr;
			k = read(c->fd, buf, sizeof(buf));
			if (k < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (k > 0) {
				unsigned h =
					matcher_feed(&c->m, buf, (size_t)k);

				for (; h; h--) {
					const char *r = c->p == NATS
								? "PONG\r\n"
								: HTTP_OK;

					if (write(c->fd, r, strlen(r)) < 0)
						errs++;
					answers[c->p]++;
				}
				continue;
			}
			close(c->fd); /* EOF or error: the peer is done */
			free(c);
			closed++;
		}
	}
	printf("{\"ok\":true,\"accepted_nats\":%llu,\"accepted_http\":%llu,"
	       "\"pongs\":%llu,\"http_ok\":%llu,\"closed\":%llu,"
	       "\"errors\":%llu}\n",
	       (unsigned long long)accepted[NATS],
	       (unsigned long long)accepted[HTTP],
	       (unsigned long long)answers[NATS],
	       (unsigned long long)answers[HTTP], (unsigned long long)closed,
	       (unsigned long long)errs);
	return 0;
}

/* ---- hold ------------------------------------------------------------ */

static int cmd_hold(const struct opts *o)
{
	uint64_t ok = 0, failed = 0, ok2 = 0, opened = 0;
	int *fds = calloc((size_t)o->conns, sizeof(int));
	sigset_t set;
	int i, sig;

	if (!fds || want_fds((rlim_t)o->conns + 64)) {
		printf("{\"ok\":false,\"error\":\"no room for %d fds\"}\n",
		       o->conns);
		return 1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (i = 0; i < o->conns; i++) {
		enum proto p = i % 2 ? HTTP : NATS;

		fds[i] = dial(p == NATS ? o->nats_port : o->http_port);
		if (fds[i] < 0) {
			failed++;
			continue;
		}
		opened++;
		if (exchange(fds[i], p, "hold", false))
			ok++;
		else
			failed++;
	}
	printf("{\"ready\":true,\"opened\":%llu,\"exchanges\":%llu}\n",
	       (unsigned long long)opened, (unsigned long long)ok);
	fflush(stdout);
	if (sigwait(&set, &sig) || sig != SIGUSR1)
		return 1;
	for (i = 0; i < o->conns; i++) {
		if (fds[i] < 0)
			continue;
		if (exchange(fds[i], i % 2 ? HTTP : NATS, "hold", true))
			ok2++;
		else
			failed++;
		close(fds[i]);
	}
	free(fds);
	printf("{\"ok\":%s,\"conns\":%d,\"opened\":%llu,\"exchanges\":%llu,"
	       "\"failed\":%llu}\n",
	       failed ? "false" : "true", o->conns, (unsigned long long)opened,
	       (unsigned long long)(ok + ok2), (unsigned long long)failed);
	return failed ? 1 : 0;
}

/* ---- rate ------------------------------------------------------------ */

struct rate_counts {
	uint64_t attempted, ok, connect_failed, exchange_failed;
	uint64_t nats_ok, http_ok;
	uint64_t late; /* connections started over 1 s behind schedule */
};

static void rate_worker(const struct opts *o, int w, struct rate_counts *rc)
{
	double per = o->rate / o->workers;
	uint64_t n = (uint64_t)(per * o->seconds), i, t0 = now_ns();
	uint64_t step = (uint64_t)(1e9 / per);

	for (i = 0; i < n && !got_signal; i++) {
		uint64_t due = t0 + i * step, t = now_ns();
		enum proto p = (i + (uint64_t)w) % 2 ? HTTP : NATS;
		int fd;

		if (t < due)
			sleep_until(due);
		else if (t - due > 1000000000ull)
			rc->late++;
		rc->attempted++;
		fd = dial(p == NATS ? o->nats_port : o->http_port);
		if (fd < 0) {
			rc->connect_failed++;
			continue;
		}
		if (exchange(fd, p, "rate", false)) {
			rc->ok++;
			if (p == NATS)
				rc->nats_ok++;
			else
				rc->http_ok++;
		} else {
			rc->exchange_failed++;
		}
		close(fd);
	}
}

static int cmd_rate(const struct opts *o)
{
	struct rate_counts sum = {0}, rc;
	uint64_t t0 = now_ns();
	int pfd[2], w;
	double secs;

	signal(SIGPIPE, SIG_IGN);
	if (o->rate <= 0 || o->seconds <= 0 || o->workers <= 0 || pipe(pfd)) {
		printf("{\"ok\":false,\"error\":\"bad arguments\"}\n");
		return 1;
	}
	for (w = 0; w < o->workers; w++) {
		pid_t pid = fork();

		if (pid == 0) {
			memset(&rc, 0, sizeof(rc));
			rate_worker(o, w, &rc);
			_exit(write(pfd[1], &rc, sizeof(rc)) == sizeof(rc) ? 0
									   : 1);
		}
	}
	close(pfd[1]);
	while (read(pfd[0], &rc, sizeof(rc)) == sizeof(rc)) {
		sum.attempted += rc.attempted;
		sum.ok += rc.ok;
		sum.connect_failed += rc.connect_failed;
		sum.exchange_failed += rc.exchange_failed;
		sum.nats_ok += rc.nats_ok;
		sum.http_ok += rc.http_ok;
		sum.late += rc.late;
	}
	while (wait(NULL) > 0)
		;
	secs = (double)(now_ns() - t0) / 1e9;
	printf("{\"ok\":%s,\"attempted\":%llu,\"conns_ok\":%llu,"
	       "\"nats_ok\":%llu,\"http_ok\":%llu,\"connect_failed\":%llu,"
	       "\"exchange_failed\":%llu,\"late\":%llu,\"seconds\":%.3f,"
	       "\"rate\":%.1f}\n",
	       sum.ok == sum.attempted && sum.ok ? "true" : "false",
	       (unsigned long long)sum.attempted, (unsigned long long)sum.ok,
	       (unsigned long long)sum.nats_ok, (unsigned long long)sum.http_ok,
	       (unsigned long long)sum.connect_failed,
	       (unsigned long long)sum.exchange_failed,
	       (unsigned long long)sum.late, secs,
	       (double)sum.attempted / secs);
	return sum.ok == sum.attempted ? 0 : 1;
}

/* ---- exec ------------------------------------------------------------ */

static void reap(uint64_t *live, uint64_t *ok, uint64_t *failed, bool block)
{
	int st;
	pid_t pid;

	while (*live && (pid = waitpid(-1, &st, block ? 0 : WNOHANG)) > 0) {
		(*live)--;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			(*ok)++;
		else
			(*failed)++;
	}
}

static int cmd_exec(const struct opts *o)
{
	uint64_t n = (uint64_t)(o->rate * o->seconds), i, t0 = now_ns();
	uint64_t step = (uint64_t)(1e9 / o->rate), live = 0, ok = 0;
	uint64_t failed = 0, spawn_failed = 0, throttled = 0, late = 0;
	double secs;

	if (o->rate <= 0 || !o->argv || !o->argv[0]) {
		printf("{\"ok\":false,\"error\":\"bad arguments\"}\n");
		return 1;
	}
	for (i = 0; i < n; i++) {
		uint64_t due = t0 + i * step, t = now_ns();
		pid_t pid;

		if (t < due)
			sleep_until(due);
		else if (t - due > 1000000000ull)
			late++;
		reap(&live, &ok, &failed, false);
		if (live >= (uint64_t)o->max_children) {
			throttled++;
			while (live >= (uint64_t)o->max_children)
				reap(&live, &ok, &failed, true);
		}
		if (posix_spawn(&pid, o->argv[0], NULL, NULL, o->argv,
				environ)) {
			spawn_failed++;
			continue;
		}
		live++;
	}
	reap(&live, &ok, &failed, true);
	secs = (double)(now_ns() - t0) / 1e9;
	printf("{\"ok\":%s,\"spawned\":%llu,\"exited_ok\":%llu,"
	       "\"exited_failed\":%llu,\"spawn_failed\":%llu,"
	       "\"throttled\":%llu,\"late\":%llu,\"seconds\":%.3f,"
	       "\"rate\":%.1f}\n",
	       failed || spawn_failed ? "false" : "true",
	       (unsigned long long)(n - spawn_failed), (unsigned long long)ok,
	       (unsigned long long)failed, (unsigned long long)spawn_failed,
	       (unsigned long long)throttled, (unsigned long long)late, secs,
	       (double)(n - spawn_failed) / secs);
	return failed || spawn_failed ? 1 : 0;
}

/* ---- client ---------------------------------------------------------- */

static int cmd_client(const struct opts *o)
{
	int fd = dial(o->nats_port);
	bool ok = fd >= 0 && exchange(fd, NATS, "exec", false);

	if (fd >= 0)
		close(fd);
	return ok ? 0 : 1;
}

/* ---- main ------------------------------------------------------------ */

static int usage(void)
{
	fputs("usage: churn_load serve|hold|rate|exec|client [--nats-port P] "
	      "[--http-port Q] [--conns N] [--rate R] [--seconds S] "
	      "[--workers W] [--max-children M] [-- PROG ARG...]\n",
	      stderr);
	return 2;
}

int main(int argc, char **argv)
{
	struct opts o = {.workers = 1, .max_children = 512, .seconds = 1};
	int i;

	if (argc < 2)
		return usage();
	for (i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--")) {
			o.argv = argv + i + 1;
			break;
		}
		if (!v)
			return usage();
		if (!strcmp(a, "--nats-port"))
			o.nats_port = atoi(v);
		else if (!strcmp(a, "--http-port"))
			o.http_port = atoi(v);
		else if (!strcmp(a, "--conns"))
			o.conns = atoi(v);
		else if (!strcmp(a, "--rate"))
			o.rate = atof(v);
		else if (!strcmp(a, "--seconds"))
			o.seconds = atof(v);
		else if (!strcmp(a, "--workers"))
			o.workers = atoi(v);
		else if (!strcmp(a, "--max-children"))
			o.max_children = atoi(v);
		else
			return usage();
		i++;
	}
	if (!strcmp(argv[1], "serve"))
		return cmd_serve(&o);
	if (!strcmp(argv[1], "hold"))
		return cmd_hold(&o);
	if (!strcmp(argv[1], "rate"))
		return cmd_rate(&o);
	if (!strcmp(argv[1], "exec"))
		return cmd_exec(&o);
	if (!strcmp(argv[1], "client"))
		return cmd_client(&o);
	return usage();
}
