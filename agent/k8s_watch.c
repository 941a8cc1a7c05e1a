/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "k8s_watch.h"

void ws_k8s_watch_init(struct ws_k8s_watch *w, struct ws_k8s_store *store,
		       const char *node)
{
	memset(w, 0, sizeof(*w));
	w->store = store;
	snprintf(w->node, sizeof(w->node), "%s", node ? node : "");
	w->phase = WS_K8S_LIST;
}

void ws_k8s_watch_free(struct ws_k8s_watch *w)
{
	free(w->line);
	w->line = NULL;
	w->line_len = w->line_cap = 0;
}

/* Percent-encode s for a query value. */
static size_t qescape(char *out, size_t cap, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *s && o + 4 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~') {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return o;
}

int ws_k8s_watch_url(const struct ws_k8s_watch *w, char *buf, size_t cap)
{
	char node[800], tok[3200], rv[200];
	int n;

	qescape(node, sizeof(node), w->node);
	if (w->phase == WS_K8S_LIST) {
		qescape(tok, sizeof(tok), w->cont);
		n = snprintf(buf, cap,
			     "/api/v1/pods?fieldSelector=spec.nodeName%%3D%s"
			     "&limit=%d%s%s",
			     node, WS_K8S_PAGE_LIMIT,
			     w->cont[0] ? "&continue=" : "", tok);
	} else {
		qescape(rv, sizeof(rv), w->rv);
		n = snprintf(buf, cap,
			     "/api/v1/pods?fieldSelector=spec.nodeName%%3D%s"
			     "&watch=1&resourceVersion=%s"
			     "&allowWatchBookmarks=true&timeoutSeconds=%d",
			     node, rv, WS_K8S_WATCH_TIMEOUT_S);
	}
	return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

static void backoff(struct ws_k8s_watch *w, enum ws_k8s_phase then,
		    uint64_t now_ns)
{
	uint64_t d = WS_K8S_BACKOFF_MIN_NS;
	unsigned i;

	for (i = 0; i < w->failures && d < WS_K8S_BACKOFF_MAX_NS; i++)
		d *= 2;
	if (d > WS_K8S_BACKOFF_MAX_NS)
		d = WS_K8S_BACKOFF_MAX_NS;
	w->failures++;
	w->st.backoffs++;
	w->backoff_until_ns = now_ns + d;
	w->after_backoff = then;
	w->phase = WS_K8S_BACKOFF;
	w->line_len = 0;
	w->skipping = false;
}

static void relist(struct ws_k8s_watch *w)
{
	w->phase = WS_K8S_LIST;
	w->cont[0] = '\0';
	w->rv[0] = '\0';
	w->line_len = 0;
	w->skipping = false;
}

/* 410 Gone: list again; at once unless the list we watch from is itself
 * already too old (a server or proxy that says 410 to everything) */
static void gone(struct ws_k8s_watch *w, uint64_t now_ns)
{
	w->st.gone++;
	if (w->fresh) {
		relist(w);
		backoff(w, WS_K8S_LIST, now_ns);
	} else {
		relist(w);
	}
}

void ws_k8s_watch_backoff(struct ws_k8s_watch *w, uint64_t now_ns)
{
	backoff(w,
		w->phase == WS_K8S_WATCH && w->rv[0] ? WS_K8S_WATCH
						     : WS_K8S_LIST,
		now_ns);
}

static void set_rv(struct ws_k8s_watch *w, struct json_object *obj)
{
	struct json_object *meta, *rv;

	if (json_object_object_get_ex(obj, "metadata", &meta) &&
	    json_object_object_get_ex(meta, "resourceVersion", &rv) &&
	    json_object_is_type(rv, json_type_string))
		snprintf(w->rv, sizeof(w->rv), "%s",
			 json_object_get_string(rv));
}

/* The "code" of a Status object (410 for Gone), or 0. */
static int status_code(struct json_object *o)
{
	struct json_object *kind, *code;

	if (!o || !json_object_object_get_ex(o, "kind", &kind) ||
	    strcmp(json_object_get_string(kind), "Status") ||
	    !json_object_object_get_ex(o, "code", &code))
		return 0;
	return json_object_get_int(code);
}

static struct json_object *parse(const char *s, size_t len)
{
	json_tokener *tok = json_tokener_new();
	struct json_object *o;

	if (!tok)
		return NULL;
	o = json_tokener_parse_ex(tok, s, (int)len);
	/* the whole text must be one value */
	if (o && (json_tokener_get_error(tok) != json_tokener_success ||
		  json_tokener_get_parse_end(tok) < len)) {
		size_t end = json_tokener_get_parse_end(tok);

		while (end < len && (s[end] == ' ' || s[end] == '\n' ||
				     s[end] == '\r' || s[end] == '\t'))
			end++;
		if (end < len) {
			json_object_put(o);
			o = NULL;
		}
	}
	json_tokener_free(tok);
	return o;
}

void ws_k8s_list_done(struct ws_k8s_watch *w, long status, const char *body,
		      size_t len, uint64_t now_ns)
{
	struct json_object *o = NULL, *items, *meta, *cont;
	size_t i, n;

	if (w->phase != WS_K8S_LIST)
		return;
	if (!w->cont[0]) {
		w->epoch++; /* a new list */
		w->st.lists++;
	}
	if (status == 410) {
		/* the continue token expired: list again from the start */
		w->st.gone++;
		relist(w);
		return;
	}
	if (status == 200 && len <= WS_K8S_MAX_PAGE)
		o = parse(body, len);
	if (status == 200 && len > WS_K8S_MAX_PAGE)
		w->st.pages_too_big++;
	if (!o || !json_object_object_get_ex(o, "items", &items) ||
	    !json_object_is_type(items, json_type_array)) {
		json_object_put(o);
		w->st.list_errors++;
		w->cont[0] = '\0';
		backoff(w, WS_K8S_LIST, now_ns);
		return;
	}
	w->st.list_pages++;
	n = json_object_array_length(items);
	for (i = 0; i < n; i++)
		ws_k8s_store_upsert(w->store,
				    json_object_array_get_idx(items, i),
				    w->epoch);
	w->cont[0] = '\0';
	if (json_object_object_get_ex(o, "metadata", &meta) &&
	    json_object_object_get_ex(meta, "continue", &cont) &&
	    json_object_is_type(cont, json_type_string) &&
	    *json_object_get_string(cont)) {
		snprintf(w->cont, sizeof(w->cont), "%s",
			 json_object_get_string(cont));
		json_object_put(o);
		return; /* next page */
	}
	set_rv(w, o);
	json_object_put(o);
	ws_k8s_store_purge(w->store, w->epoch);
	w->failures = 0;
	w->phase = WS_K8S_WATCH;
	w->got_event = false;
	w->fresh = true;
	w->st.watches++;
}

/* One watch event line. */
static void on_event(struct ws_k8s_watch *w, const char *s, size_t len,
		     uint64_t now_ns)
{
	struct json_object *o = parse(s, len), *type, *obj;
	const char *t;

	if (!o || !json_object_object_get_ex(o, "type", &type) ||
	    !json_object_object_get_ex(o, "object", &obj) ||
	    !json_object_is_type(type, json_type_string)) {
		json_object_put(o);
		w->st.bad_events++;
		return;
	}
	t = json_object_get_string(type);
	w->got_event = true;
	if (strcmp(t, "ERROR"))
		w->fresh = false;
	if (!strcmp(t, "ADDED") || !strcmp(t, "MODIFIED")) {
		if (*t == 'A')
			w->st.added++;
		else
			w->st.modified++;
		ws_k8s_store_upsert(w->store, obj, w->epoch);
		set_rv(w, obj);
	} else if (!strcmp(t, "DELETED")) {
		w->st.deleted++;
		ws_k8s_store_delete(w->store, obj);
		set_rv(w, obj);
	} else if (!strcmp(t, "BOOKMARK")) {
		w->st.bookmarks++;
		set_rv(w, obj);
	} else if (!strcmp(t, "ERROR")) {
		w->st.error_events++;
		if (status_code(obj) == 410) {
			gone(w, now_ns);
		} else {
			backoff(w, WS_K8S_WATCH, now_ns);
		}
	} else {
		w->st.bad_events++;
	}
	json_object_put(o);
}

bool ws_k8s_watch_trim_due(struct ws_k8s_watch *w, uint64_t now_ns)
{
	uint64_t ev = w->st.added + w->st.modified + w->st.deleted;

	if (ev - w->trim_events < WS_K8S_TRIM_EVENTS ||
	    now_ns - w->trim_ns < WS_K8S_TRIM_NS)
		return false;
	w->trim_events = ev;
	w->trim_ns = now_ns;
	w->st.trims++;
	return true;
}

void ws_k8s_watch_feed(struct ws_k8s_watch *w, const char *data, size_t len,
		       uint64_t now_ns)
{
	while (len && w->phase == WS_K8S_WATCH) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) : len;

		if (!w->skipping && w->line_len + n > WS_K8S_MAX_EVENT) {
			w->st.events_too_long++;
			w->skipping = true;
			w->line_len = 0;
		}
		if (!w->skipping) {
			if (w->line_len + n + 1 > w->line_cap) {
				size_t cap = (w->line_len + n + 1) * 2;
				char *p;

				if (cap > WS_K8S_MAX_EVENT + 1)
					cap = WS_K8S_MAX_EVENT + 1;
				p = realloc(w->line, cap);
				if (!p) {
					backoff(w, WS_K8S_WATCH, now_ns);
					return;
				}
				w->line = p;
				w->line_cap = cap;
			}
			memcpy(w->line + w->line_len, data, n);
			w->line_len += n;
		}
		if (!nl)
			return;
		if (!w->skipping && w->line_len)
			on_event(w, w->line, w->line_len, now_ns);
		w->skipping = false;
		w->line_len = 0;
		data += n + 1;
		len -= n + 1;
	}
}

void ws_k8s_watch_end(struct ws_k8s_watch *w, long status, bool dropped,
		      uint64_t now_ns)
{
	if (w->phase != WS_K8S_WATCH)
		return; /* an ERROR event already decided */
	if (status == 410) {
		gone(w, now_ns);
		return;
	}
	if (status != 200) {
		w->st.watch_errors++;
		backoff(w, WS_K8S_WATCH, now_ns);
		return;
	}
	if (dropped) {
		w->st.watch_dropped++;
		/* a partial last line is lost; the rv of the last whole event
		 * is where the next watch resumes */
		if (w->got_event)
			w->failures = 0; /* it worked for a while: short wait */
		backoff(w, WS_K8S_WATCH, now_ns);
		return;
	}
	/* timeoutSeconds ran out: watch again at once */
	w->st.watch_ends++;
	w->failures = 0;
	w->line_len = 0;
	w->skipping = false;
	w->got_event = false;
	w->st.watches++;
}

bool ws_k8s_watch_ready(struct ws_k8s_watch *w, uint64_t now_ns)
{
	if (w->phase != WS_K8S_BACKOFF)
		return true;
	if (now_ns < w->backoff_until_ns)
		return false;
	if (w->after_backoff == WS_K8S_WATCH && w->rv[0]) {
		w->phase = WS_K8S_WATCH;
		w->got_event = false;
		w->st.watches++;
	} else {
		relist(w);
	}
	return true;
}
