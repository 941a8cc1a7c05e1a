/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Caller identity from HTTP request headers, without any secret leaving the
 * host. Pure: headers in, span attributes out (the secret file is read once,
 * by ws_http_auth_load_secret, before any header is seen).
 *
 *   Authorization: Bearer <JWT>    claims decoded, NOT verified:
 *                                  enduser.id        (claim cfg.jwt_user_claim)
 *                                  user.roles        (scope / scp / roles)
 *                                  wirespan.auth.iss|aud|azp|client_id
 *                                  wirespan.auth.verified = false,
 *                                  or true when a JWKS is configured and
 *                                  the token verifies (jwks.h); else
 *                                  wirespan.auth.verify_error = why
 *   Authorization: Bearer <opaque> enduser.pseudo.id = keyed hash of the token
 *   Authorization: <opaque key>    (Tyk accepts a bare key) the same
 *   X-API-Key (cfg.api_key_headers) the same
 *   Authorization: Basic <b64>     enduser.id = the user name (never the
 *                                  password)
 *   Authorization: <other scheme>  wirespan.auth.scheme only
 *
 * The keyed hash is HMAC-SHA256 with a per-installation secret (so the id is
 * stable across restarts, and across hosts that share the secret file, but
 * cannot be reversed or recomputed without the secret), truncated to
 * WS_AUTH_PSEUDO_ID_BYTES bytes in hex; or, with WS_KEY_HASH_MURMUR3, Tyk's
 * own key hash (murmur3 x86_32, seed 0, 8 hex digits) so ids match Tyk's
 * analytics (that one is not keyed: a short key can be brute-forced from it).
 *
 * No value of Authorization, Proxy-Authorization, Cookie, Set-Cookie or an
 * API-key header is ever copied into an attribute: only derived values are.
 * ws_http_header_is_secret() tells the header capture which names to refuse.
 */
#ifndef WIRESPAN_HTTP_AUTH_H
#define WIRESPAN_HTTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jwks.h"
#include "proto/http.h"
#include "redact.h"
#include "span.h"

/* Header names in each configurable list at most. */
#define WS_AUTH_MAX_HEADERS 16
/* HMAC bytes kept in enduser.pseudo.id (hex: twice as many digits). */
#define WS_AUTH_PSEUDO_ID_BYTES 16
/* Secret file bytes used at most / at least. */
#define WS_AUTH_SECRET_MAX 256
#define WS_AUTH_SECRET_MIN 16
/* Where the secret lives unless configured; created (0600) when missing. */
#define WS_AUTH_DEFAULT_SECRET_FILE "/var/lib/wirespan/key-hash.secret"
/* Roles kept in user.roles at most (the rest are counted). */
#define WS_AUTH_MAX_ROLES 32

enum ws_key_hash {
	WS_KEY_HASH_HMAC = 0, /* HMAC-SHA256, per-installation secret */
	WS_KEY_HASH_MURMUR3,  /* Tyk-compatible murmur3 x86_32, hex */
};

struct ws_http_auth_cfg {
	/* enduser.id comes from this JWT claim (default "sub"). */
	const char *jwt_user_claim;
	/*
	 * Headers whose value is an opaque API key (ASCII case-insensitive;
	 * default: X-API-Key). Authorization is always looked at.
	 */
	const char *api_key_headers[WS_AUTH_MAX_HEADERS];
	unsigned n_api_key_headers;
	enum ws_key_hash key_hash; /* default WS_KEY_HASH_HMAC */
	/* The HMAC key (ws_http_auth_load_secret fills it). */
	uint8_t secret[WS_AUTH_SECRET_MAX];
	size_t secret_len;
	/* The redaction policy for header and query names (redact.h;
	 * zeroed: the built-in lists). */
	struct ws_redact redact;
	/* Bearer JWTs are verified against this key set when set (not
	 * owned; its own counters); NULL: claims are never verified. */
	struct ws_jwt_verifier *jwt_verifier;
};

struct ws_http_auth_stats {
	uint64_t jwt;	     /* bearer JWTs decoded */
	uint64_t bad_jwt;    /* looked like a JWT, claims did not decode */
	uint64_t api_keys;   /* opaque keys hashed */
	uint64_t no_secret;  /* opaque keys not hashed: no HMAC secret */
	uint64_t basic;	     /* Basic credentials (user name kept) */
	uint64_t bad_basic;  /* Basic credentials that did not decode */
	uint64_t other;	     /* other Authorization schemes */
	uint64_t roles_cut;  /* roles past WS_AUTH_MAX_ROLES */
	uint64_t claims_cut; /* claim values that were not strings/numbers */
};

/* Defaults: claim "sub", X-API-Key, HMAC, no secret loaded. */
void ws_http_auth_cfg_init(struct ws_http_auth_cfg *cfg);

/*
 * Add an API-key header name (a pointer kept, not copied). Returns 0,
 * -EINVAL (empty or not a token) or -ENOSPC.
 */
int ws_http_auth_add_key_header(struct ws_http_auth_cfg *cfg, const char *name);

/*
 * Read the HMAC secret from path into cfg. The file holds at least
 * WS_AUTH_SECRET_MIN bytes (its bytes, trailing whitespace stripped, are the
 * key; at most WS_AUTH_SECRET_MAX are used), is a regular file, and is not
 * readable or writable by group or others. If it does not exist and create
 * is set, 32 random bytes are written to it as 64 hex digits (mode 0600,
 * parent directory created 0700 if missing). Returns 0 or -errno, with a
 * sentence saying why in err.
 */
int ws_http_auth_load_secret(struct ws_http_auth_cfg *cfg, const char *path,
			     bool create, char *err, size_t errcap);

/*
 * Derive the caller identity of a request read at now_ns (unix; exp and
 * nbf of a JWT are checked against it) from its headers and set the
 * attributes above on a. Never copies a credential. Returns true if an
 * identity (or an auth scheme) was found.
 */
bool ws_http_auth_apply(const struct ws_http_auth_cfg *cfg,
			const struct ws_http_headers *h, uint64_t now_ns,
			struct ws_attrs *a, struct ws_http_auth_stats *st);

/*
 * True for header names whose value is a credential and must never be
 * recorded: Authorization, Proxy-Authorization, Cookie, Set-Cookie, the
 * configured API-key headers, and names containing "token", "secret",
 * "password", "passwd", "api-key", "apikey", "session" or "auth".
 */
bool ws_http_header_is_secret(const struct ws_http_auth_cfg *cfg,
			      const char *name, size_t len);

/* murmur3 x86_32 (Austin Appleby's MurmurHash3_x86_32). */
uint32_t ws_murmur3_32(const void *data, size_t len, uint32_t seed);

/*
 * The pseudonymous id of an opaque key into out (at least 65 bytes): HMAC
 * hex (WS_AUTH_PSEUDO_ID_BYTES) or murmur3 "%08x". Returns 0, or -ENOKEY
 * (HMAC without a secret) / -EIO.
 */
int ws_http_auth_key_id(const struct ws_http_auth_cfg *cfg, const char *key,
			size_t len, char *out, size_t cap);

#endif /* WIRESPAN_HTTP_AUTH_H */
