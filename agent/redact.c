// SPDX-License-Identifier: Apache-2.0
/*
 * The redaction policy (redact.h): the built-in lists and the rules that
 * use them. docs/SECURITY.md ("Redaction") shows the same lists; keep the
 * two in step.
 */
#include "redact.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* HTTP header names that are credentials, whole name. */
static const char *const header_exact[] = {"cookie", "set-cookie"};
/* HTTP header name fragments (Authorization, Proxy-Authorization,
 * X-Auth-Token, X-Amz-Security-Token, X-Hub-Signature, ...). */
static const char *const header_parts[] = {
	"auth",	   "token",   "secret",	 "password",   "passwd",    "apikey",
	"api-key", "api_key", "session", "credential", "signature",
};
/* URL query parameter name fragments (access_token, X-Amz-Signature,
 * password, code (OAuth), otp, ...). */
static const char *const param_parts[] = {
	"key",	   "token",	 "secret", "pass", "pwd", "auth",   "sig",
	"session", "credential", "code",   "jwt",  "otp", "cookie",
};
/* Command-line flag name fragments (--pass, --auth_token, --api-key,
 * --seed-file, --creds, ...). */
static const char *const flag_parts[] = {
	"pass", "secret", "token", "key",    "auth",
	"cred", "seed",	  "sig",   "cookie",
};
/* NATS CONNECT fields that may be kept; pass, auth_token, sig, jwt and
 * anything unknown are not (the JWT's claims are decoded separately). */
static const char *const connect_keep[] = {"name", "lang", "version", "user",
					   "nkey"};

void ws_redact_init(struct ws_redact *r)
{
	memset(r, 0, sizeof(*r));
}

int ws_redact_add(struct ws_redact *r, const char *frag)
{
	size_t i, n = strlen(frag);

	if (!n || n > WS_REDACT_MAX_NAME)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (frag[i] <= ' ' || frag[i] > '~' || frag[i] == '=' ||
		    frag[i] == ':')
			return -EINVAL;
	for (i = 0; i < r->n_extra; i++)
		if (!strcasecmp(r->extra[i], frag))
			return 0;
	if (r->n_extra >= WS_REDACT_MAX_EXTRA)
		return -ENOSPC;
	r->extra[r->n_extra++] = frag;
	return 0;
}

static bool contains_ci(const char *s, size_t len, const char *lit)
{
	size_t n = strlen(lit), i;

	for (i = 0; i + n <= len; i++)
		if (!strncasecmp(s + i, lit, n))
			return true;
	return false;
}

static bool any_part(const char *const *parts, size_t n_parts,
		     const struct ws_redact *r, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < n_parts; i++)
		if (contains_ci(name, len, parts[i]))
			return true;
	for (i = 0; r && i < r->n_extra; i++)
		if (contains_ci(name, len, r->extra[i]))
			return true;
	return false;
}

bool ws_redact_header(const struct ws_redact *r, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < N(header_exact); i++)
		if (len == strlen(header_exact[i]) &&
		    !strncasecmp(name, header_exact[i], len))
			return true;
	return any_part(header_parts, N(header_parts), r, name, len);
}

bool ws_redact_param(const struct ws_redact *r, const char *name, size_t len)
{
	return any_part(param_parts, N(param_parts), r, name, len);
}

bool ws_redact_flag(const struct ws_redact *r, const char *name, size_t len)
{
	return any_part(flag_parts, N(flag_parts), r, name, len);
}

bool ws_redact_is_jwt(const char *v, size_t len)
{
	size_t i, dots = 0;

	if (len < 10 || memcmp(v, "eyJ", 3))
		return false;
	for (i = 0; i < len; i++) {
		char c = v[i];

		if (c == '.')
			dots++;
		else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9') || c == '-' || c == '_' ||
			   c == '='))
			return false;
	}
	return dots == 2;
}

bool ws_redact_nats_connect_keep(const struct ws_redact *r, const char *key)
{
	size_t i, len = strlen(key);

	for (i = 0; r && i < r->n_extra; i++)
		if (contains_ci(key, len, r->extra[i]))
			return false;
	for (i = 0; i < N(connect_keep); i++)
		if (!strcmp(key, connect_keep[i]))
			return true;
	return false;
}

/* ---- query strings ------------------------------------------------------ */

void ws_redact_query(const struct ws_redact *r, const char *q, size_t len,
		     char *out, size_t cap)
{
	const char *p = q, *end = q + len;
	size_t o = 0;

	if (!cap)
		return;
	out[0] = '\0';
	while (p < end && o + 1 < cap) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *pe = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(pe - p));
		size_t nlen = (size_t)((eq ? eq : pe) - p);
		/* "eyJ" is '{"' in base64: a JWT, even a cut one */
		bool hide = eq && (ws_redact_param(r, p, nlen) ||
				   (pe - eq > 4 && !memcmp(eq + 1, "eyJ", 3)));
		int w;

		if (hide)
			w = snprintf(out + o, cap - o,
				     "%s%.*s=" WS_REDACT_HIDDEN, o ? "&" : "",
				     (int)nlen, p);
		else
			w = snprintf(out + o, cap - o, "%s%.*s", o ? "&" : "",
				     (int)(pe - p), p);
		if (w < 0 || (size_t)w >= cap - o) {
			/* cut at a parameter, never inside a value */
			out[o] = '\0';
			return;
		}
		o += (size_t)w;
		p = amp ? amp + 1 : end;
	}
}

/* Append s[0..n) to out, or as much as fits. */
static void put(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
	if (*o + n >= cap)
		n = *o + 1 < cap ? cap - *o - 1 : 0;
	memcpy(out + *o, s, n);
	*o += n;
	out[*o] = '\0';
}

static void put_hidden(char *out, size_t cap, size_t *o)
{
	put(out, cap, o, WS_REDACT_HIDDEN, sizeof(WS_REDACT_HIDDEN) - 1);
}

/* ---- paths --------------------------------------------------------------- */

void ws_redact_path(const char *path, size_t len, char *out, size_t cap)
{
	const char *p = path, *end = path + len;
	size_t o = 0;

	if (!cap)
		return;
	out[0] = '\0';
	while (p < end) {
		const char *sl = memchr(p, '/', (size_t)(end - p));
		const char *se = sl ? sl : end;

		if (ws_redact_is_jwt(p, (size_t)(se - p)))
			put_hidden(out, cap, &o);
		else
			put(out, cap, &o, p, (size_t)(se - p));
		if (sl)
			put(out, cap, &o, "/", 1);
		p = sl ? sl + 1 : end;
	}
}

/* ---- command lines ------------------------------------------------------ */

/* Length of the name of a header argument ("Authorization: Bearer x",
 * curl -H and friends), 0 if arg is not one. */
static size_t header_name_len(const char *arg, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		char c = arg[i];

		if (c == ':')
			return i && (i + 1 == len || arg[i + 1] == ' ') ? i : 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
	return 0;
}

/* Is [s, s+n) a plain name (a NAME=VALUE argument's NAME)? */
static bool plain_name(const char *s, size_t n)
{
	size_t i;

	if (!n)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '_' || s[i] == '.'))
			return false;
	return true;
}

/* Where "://" is in [a, at), or NULL. */
static const char *find_scheme(const char *a, const char *at)
{
	const char *p;

	for (p = a; at && p + 3 <= at; p++)
		if (!memcmp(p, "://", 3))
			return p;
	return NULL;
}

/* NATS URLs take a lone userinfo as the token (nats://TOKEN@host). */
static bool token_scheme(const char *a, const char *scheme)
{
	static const char *const names[] = {"nats", "tls", "ws", "wss"};
	size_t i, n = (size_t)(scheme - a);

	for (i = 0; i < N(names); i++)
		if (n == strlen(names[i]) && !strncasecmp(a, names[i], n))
			return true;
	return false;
}

/*
 * A value (a whole argument, or what follows a flag's '='): hides a JWT,
 * a credential header's value, a URL's password (or a NATS URL's token).
 * False when it is none of those (with out NULL: only tells).
 */
static bool put_value(const struct ws_redact *r, const char *a, size_t n,
		      char *out, size_t cap, size_t *o)
{
	size_t hn = header_name_len(a, n);
	const char *at = memchr(a, '@', n);
	const char *scheme = find_scheme(a, at);
	const char *colon =
		scheme ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3))
		       : NULL;

	if (ws_redact_is_jwt(a, n)) {
		if (out)
			put_hidden(out, cap, o);
	} else if (scheme && (colon || token_scheme(a, scheme))) {
		/* scheme://user:pass@host: keep the user only;
		 * nats://token@host: keep nothing of the token */
		if (!out)
			return true;
		put(out, cap, o, a, (size_t)((colon ? colon : scheme + 3) - a));
		put(out, cap, o, colon ? ":" : "", colon ? 1 : 0);
		put_hidden(out, cap, o);
		put(out, cap, o, at, (size_t)(a + n - at));
	} else if (hn && ws_redact_header(r, a, hn)) {
		/* a credential header: "Authorization: REDACTED" */
		if (!out)
			return true;
		put(out, cap, o, a, hn + 1);
		put(out, cap, o, " ", 1);
		put_hidden(out, cap, o);
	} else {
		return false;
	}
	return true;
}

void ws_redact_cmdline(const struct ws_redact *r, const char *argv, size_t len,
		       char *out, size_t cap)
{
	const char *a = argv, *end = argv + len;
	bool hide_next = false;
	size_t o = 0;

	if (!cap)
		return;
	out[0] = '\0';
	while (a < end) {
		size_t n = strnlen(a, (size_t)(end - a));
		const char *eq = memchr(a, '=', n);
		size_t nl = eq ? (size_t)(eq - a) : n;

		if (o)
			put(out, cap, &o, " ", 1);
		if (hide_next) {
			/* the value after --password, --token ... */
			put_hidden(out, cap, &o);
			hide_next = false;
		} else if (eq && (a[0] == '-' || plain_name(a, nl)) &&
			   ws_redact_flag(r, a, nl)) {
			/* --token=X, password=X */
			put(out, cap, &o, a, nl + 1);
			put_hidden(out, cap, &o);
		} else if (put_value(r, a, n, out, cap, &o)) {
			/* written: a JWT, a URL's secret, a credential header */
		} else if (eq && a[0] == '-' &&
			   put_value(r, eq + 1, n - nl - 1, NULL, 0, NULL)) {
			/* --header=Authorization: X, --url=nats://u:p@h */
			put(out, cap, &o, a, nl + 1);
			put_value(r, eq + 1, n - nl - 1, out, cap, &o);
		} else {
			put(out, cap, &o, a, n);
			hide_next =
				a[0] == '-' && !eq && ws_redact_flag(r, a, n);
		}
		a += n + 1;
	}
}
