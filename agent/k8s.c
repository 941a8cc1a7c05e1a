/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "k8s.h"
#include "log.h"

struct ws_k8s {
	char url[512];
	char token_path[512];
	char ca_path[512];
	char node[256];
	struct ws_k8s_store *store;
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t lock; /* w and stats; synced */
	pthread_cond_t synced_cv;
	bool synced;
	struct ws_k8s_watch w;
	struct ws_k8s_stats st;
	CURL *h; /* the watcher thread's handle */
	/* a list page being received */
	char *body;
	size_t body_len, body_cap;
	bool body_too_big;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool ws_k8s_configured(const struct ws_k8s_cfg *cfg, char *url, size_t cap)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");

	if (cfg->api_url && *cfg->api_url) {
		snprintf(url, cap, "%s", cfg->api_url);
	} else if (host && *host) {
		/* an IPv6 service host needs brackets */
		snprintf(url, cap,
			 strchr(host, ':') ? "https://[%s]:%s"
					   : "https://%s:%s",
			 host, port && *port ? port : "443");
	} else {
		return false;
	}
	/* no trailing slash: paths start with one */
	while (*url && url[strlen(url) - 1] == '/')
		url[strlen(url) - 1] = '\0';
	return true;
}

/* The bearer token, re-read each time (bound tokens rotate). */
static int read_token(struct ws_k8s *k, char *buf, size_t cap)
{
	ssize_t n;
	int fd;

	if (!k->token_path[0])
		return -ENOENT;
	fd = open(k->token_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	while (n > 0 &&
	       (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return 0;
}

static int on_progress(void *ctx, curl_off_t dt, curl_off_t dn, curl_off_t ut,
		       curl_off_t un)
{
	struct ws_k8s *k = ctx;

	return atomic_load(&k->stop) ? 1 : 0;
}

static size_t on_list_data(char *p, size_t size, size_t n, void *ctx)
{
	struct ws_k8s *k = ctx;
	size_t len = size * n;

	if (k->body_len + len > WS_K8S_MAX_PAGE) {
		k->body_too_big = true;
		return 0; /* abort the transfer */
	}
	if (k->body_len + len + 1 > k->body_cap) {
		size_t cap = (k->body_len + len + 1) * 2;
		char *b = realloc(k->body, cap);

		if (!b)
			return 0;
		k->body = b;
		k->body_cap = cap;
	}
	memcpy(k->body + k->body_len, p, len);
	k->body_len += len;
	return len;
}

static size_t on_watch_data(char *p, size_t size, size_t n, void *ctx)
{
	struct ws_k8s *k = ctx;
	long status = 0;
	bool trim;

	/* an error response's body is a Status, not events: the code is
	 * looked at when the request ends */
	curl_easy_getinfo(k->h, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200)
		return size * n;
	pthread_mutex_lock(&k->lock);
	ws_k8s_watch_feed(&k->w, p, size * n, mono_ns());
	trim = ws_k8s_watch_trim_due(&k->w, mono_ns());
	pthread_mutex_unlock(&k->lock);
	if (trim)
		malloc_trim(0);
	return size * n;
}

/* One request of the current phase; returns the HTTP status (0: none). */
static long request(struct ws_k8s *k, CURL *h, bool watch, CURLcode *res)
{
	char path[4096], url[4608], token[8192], auth[8300];
	struct curl_slist *hdrs = NULL;
	long status = 0;
	int rc;

	pthread_mutex_lock(&k->lock);
	rc = ws_k8s_watch_url(&k->w, path, sizeof(path));
	pthread_mutex_unlock(&k->lock);
	if (rc) {
		*res = CURLE_URL_MALFORMAT;
		return 0;
	}
	snprintf(url, sizeof(url), "%s%s", k->url, path);
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, k);
	/* a watch lasts timeoutSeconds; a stuck one is cut a bit later */
	curl_easy_setopt(h, CURLOPT_TIMEOUT,
			 watch ? (long)WS_K8S_WATCH_TIMEOUT_S + 30L : 120L);
	if (k->ca_path[0] && access(k->ca_path, R_OK) == 0)
		curl_easy_setopt(h, CURLOPT_CAINFO, k->ca_path);
	if (!read_token(k, token, sizeof(token))) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		hdrs = curl_slist_append(hdrs, auth);
	} else if (k->token_path[0]) {
		k->st.token_errors++;
	}
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "wirespan-agent");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION,
			 watch ? on_watch_data : on_list_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, k);
	k->body_len = 0;
	k->body_too_big = false;
	*res = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdrs);
	pthread_mutex_lock(&k->lock);
	k->st.requests++;
	if (*res != CURLE_OK && !atomic_load(&k->stop))
		k->st.net_errors++;
	if (status && status != 200)
		k->st.http_errors++;
	pthread_mutex_unlock(&k->lock);
	if (*res != CURLE_OK && !atomic_load(&k->stop))
		ws_debug("k8s: %s: %s (HTTP %ld)", url,
			 curl_easy_strerror(*res), status);
	return status;
}

static void *watcher(void *arg)
{
	struct ws_k8s *k = arg;
	CURL *h = curl_easy_init();

	k->h = h;
	if (!h) {
		ws_warn("k8s: curl_easy_init failed: no pod metadata");
		return NULL;
	}
	while (!atomic_load(&k->stop)) {
		enum ws_k8s_phase phase;
		CURLcode res;
		long status;

		pthread_mutex_lock(&k->lock);
		ws_k8s_watch_ready(&k->w, mono_ns());
		phase = k->w.phase;
		pthread_mutex_unlock(&k->lock);
		if (phase == WS_K8S_BACKOFF) {
			usleep(20000);
			continue;
		}
		status = request(k, h, phase == WS_K8S_WATCH, &res);
		if (atomic_load(&k->stop))
			break;
		pthread_mutex_lock(&k->lock);
		if (phase == WS_K8S_LIST) {
			if (res != CURLE_OK && !k->body_too_big)
				status = 0;
			ws_k8s_list_done(&k->w, status, k->body,
					 k->body_too_big ? WS_K8S_MAX_PAGE + 1
							 : k->body_len,
					 mono_ns());
			if (k->w.phase == WS_K8S_WATCH) {
				/* the pages' parse trees are freed: give the
				 * thread's arena back (10k pods, docs/
				 * BENCHMARKS.md) */
				free(k->body);
				k->body = NULL;
				k->body_cap = k->body_len = 0;
				malloc_trim(0);
			}
			if (k->w.phase == WS_K8S_WATCH && !k->synced) {
				k->synced = true;
				pthread_cond_broadcast(&k->synced_cv);
			}
		} else {
			ws_k8s_watch_end(&k->w, status, res != CURLE_OK,
					 mono_ns());
		}
		pthread_mutex_unlock(&k->lock);
	}
	curl_easy_cleanup(h);
	return NULL;
}

struct ws_k8s *ws_k8s_start(const struct ws_k8s_cfg *cfg,
			    struct ws_k8s_store *store)
{
	const char *node =
		cfg->node_name ? cfg->node_name : getenv("NODE_NAME");
	struct ws_k8s *k;

	if (!node || !*node) {
		errno = EINVAL;
		return NULL;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	if (!ws_k8s_configured(cfg, k->url, sizeof(k->url))) {
		free(k);
		errno = EINVAL;
		return NULL;
	}
	snprintf(k->token_path, sizeof(k->token_path), "%s",
		 cfg->token_path ? cfg->token_path : WS_K8S_SA_DIR "/token");
	snprintf(k->ca_path, sizeof(k->ca_path), "%s",
		 cfg->ca_path ? cfg->ca_path : WS_K8S_SA_DIR "/ca.crt");
	snprintf(k->node, sizeof(k->node), "%s", node);
	k->store = store;
	ws_k8s_watch_init(&k->w, store, k->node);
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->synced_cv, NULL);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) ||
	    pthread_create(&k->thread, NULL, watcher, k)) {
		pthread_mutex_destroy(&k->lock);
		pthread_cond_destroy(&k->synced_cv);
		free(k);
		errno = EAGAIN;
		return NULL;
	}
	return k;
}

bool ws_k8s_wait_synced(struct ws_k8s *k, unsigned timeout_ms)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&k->lock);
	while (!k->synced &&
	       pthread_cond_timedwait(&k->synced_cv, &k->lock, &ts) == 0)
		;
	ok = k->synced;
	pthread_mutex_unlock(&k->lock);
	return ok;
}

void ws_k8s_stop(struct ws_k8s *k)
{
	if (!k)
		return;
	atomic_store(&k->stop, true);
	pthread_join(k->thread, NULL);
	ws_k8s_watch_free(&k->w);
	free(k->body);
	pthread_mutex_destroy(&k->lock);
	pthread_cond_destroy(&k->synced_cv);
	curl_global_cleanup();
	free(k);
}

const char *ws_k8s_node(const struct ws_k8s *k)
{
	return k->node;
}

void ws_k8s_stats(struct ws_k8s *k, struct ws_k8s_stats *out)
{
	pthread_mutex_lock(&k->lock);
	*out = k->st;
	out->watch = k->w.st;
	pthread_mutex_unlock(&k->lock);
}
