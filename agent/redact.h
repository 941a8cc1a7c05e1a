/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The redaction policy: the one place that decides which bytes seen on the
 * host may leave it. Every protocol and the process identity ask here:
 *
 *   HTTP header names      ws_redact_header()  never captured
 *   URL query parameters   ws_redact_query()   value -> REDACTED
 *   command-line flags     ws_redact_cmdline() value -> REDACTED, also
 *                                              scheme://user:PASSWORD@ and
 *                                              "Authorization: ..." args
 *   URL paths              ws_redact_path()    JWT-looking segments hidden
 *   JWT-looking values     ws_redact_is_jwt()  claims only, never the token
 *   NATS CONNECT fields    ws_redact_nats_connect_keep(): an allow-list;
 *                                              pass, auth_token, sig and the
 *                                              raw jwt are never kept
 *
 * The built-in name fragments (below, in redact.c) are matched as ASCII
 * case-insensitive substrings. A deployment adds its own fragments
 * (config key redact.extra_names); they apply to header names, query
 * parameter names, command-line flags and NATS CONNECT fields alike.
 * Adding can only hide more: nothing here un-hides a built-in.
 *
 * Pure: no I/O, no globals; a NULL policy means the built-ins only.
 */
#ifndef WIRESPAN_REDACT_H
#define WIRESPAN_REDACT_H

#include <stdbool.h>
#include <stddef.h>

/* Extra name fragments at most, and bytes per fragment at most. */
#define WS_REDACT_MAX_EXTRA 32
#define WS_REDACT_MAX_NAME 64
/* What replaces a hidden value. */
#define WS_REDACT_HIDDEN "REDACTED"

struct ws_redact {
	/* extra secret name fragments (not owned; case-insensitive) */
	const char *extra[WS_REDACT_MAX_EXTRA];
	unsigned n_extra;
};

void ws_redact_init(struct ws_redact *r);
/* Add a name fragment: 0, -EINVAL (empty, too long, or holds a byte that
 * is not printable ASCII, '=' or ':'), -ENOSPC (too many). */
int ws_redact_add(struct ws_redact *r, const char *fragment);

/* Does this HTTP header name carry a credential (never recorded)? */
bool ws_redact_header(const struct ws_redact *r, const char *name, size_t len);
/* Is this URL query parameter name a secret (its value is hidden)? */
bool ws_redact_param(const struct ws_redact *r, const char *name, size_t len);
/* Does this command-line flag name (with its dashes) name a secret? */
bool ws_redact_flag(const struct ws_redact *r, const char *name, size_t len);
/* Does this value look like a JWT: three base64url parts, the first a
 * JSON object ("eyJ")? */
bool ws_redact_is_jwt(const char *v, size_t len);
/* May this NATS CONNECT field be kept (name, lang, version, user, nkey,
 * unless an extra fragment matches it)? Everything else is dropped. */
bool ws_redact_nats_connect_keep(const struct ws_redact *r, const char *key);

/*
 * A query string (without '?') with the values of secret parameters and
 * of JWT-looking values replaced by REDACTED. out always NUL-terminated;
 * when it is too small, the string is cut between parameters, never inside
 * a value.
 */
void ws_redact_query(const struct ws_redact *r, const char *q, size_t len,
		     char *out, size_t cap);
/*
 * A URL path with every JWT-looking segment replaced by REDACTED (a token
 * in a path, e.g. /verify/eyJ...). out always NUL-terminated (cut when too
 * small).
 */
void ws_redact_path(const char *path, size_t len, char *out, size_t cap);
/*
 * A NUL-separated argv as one space-separated line with secrets replaced:
 * the value of a secret flag (--password X, --token=X), the value of a
 * credential header argument ("Authorization: X", curl -H), the password
 * of scheme://user:password@host, and any JWT-looking argument. out always
 * NUL-terminated (cut when too small).
 */
void ws_redact_cmdline(const struct ws_redact *r, const char *argv, size_t len,
		       char *out, size_t cap);

#endif
