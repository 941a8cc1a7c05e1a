/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JWT signature verification against a JWKS file (RFC 7515/7517/7518), with
 * OpenSSL 3 libcrypto. Two layers:
 *
 *   ws_jwks_parse / ws_jwt_verify   pure: JWKS text in, key set out; a
 *                                   token, the key set, the policy and the
 *                                   time in, a verdict out
 *   struct ws_jwt_verifier          the agent's state: the key set read
 *                                   from a file (re-read when it changes
 *                                   or on request), the policy, and a
 *                                   bounded cache of verdicts per token
 *                                   (SHA-256 of the token), so a busy
 *                                   gateway does not verify the same token
 *                                   on every request
 *
 * Algorithms: RS256/384/512 and PS256/384/512 (RSA keys of 2048 to 8192
 * bits), ES256/384/512 (P-256/384/521), EdDSA (Ed25519). "none" and the
 * HMAC algorithms (HS*) never verify: a key set holds public keys, and an
 * HMAC "verified" with a public key is the classic forgery.
 *
 * A token verifies when its header names a supported alg, a key of the set
 * fits it (the token's kid equals the key's; without a kid, every key that
 * fits is tried), the signature checks, the header has no "crit", and the
 * claims pass: exp and nbf (numbers, with leeway) and, if configured, iss
 * (one of the issuers) and aud (one of the audiences in the claim).
 */
#ifndef WIRESPAN_JWKS_H
#define WIRESPAN_JWKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Keys of one set at most (the rest are counted as skipped). */
#define WS_JWKS_MAX_KEYS 64
/* Largest JWKS file read. */
#define WS_JWKS_MAX_FILE (1u << 20)
/* Longest token verified (longer: malformed). */
#define WS_JWT_MAX_TOKEN 16384
/* Issuers and audiences accepted at most. */
#define WS_JWT_MAX_ACCEPT 8
/* Default leeway for exp and nbf, and the default cache size. */
#define WS_JWT_DEFAULT_LEEWAY_S 30
#define WS_JWT_DEFAULT_CACHE 4096

/* Why a token did or did not verify. Append only: counters are indexed. */
enum ws_jwt_verdict {
	WS_JWT_VERIFIED = 0,
	WS_JWT_MALFORMED,	 /* not three base64url parts of JSON, ... */
	WS_JWT_ALG_NONE,	 /* alg "none": never */
	WS_JWT_UNSUPPORTED_ALG,	 /* HS*, unknown names */
	WS_JWT_UNSUPPORTED_CRIT, /* a "crit" header: no extension known */
	WS_JWT_UNKNOWN_KID,	 /* no key of the set fits kid and alg */
	WS_JWT_BAD_SIGNATURE,
	WS_JWT_EXPIRED,	      /* now > exp + leeway */
	WS_JWT_NOT_YET_VALID, /* now + leeway < nbf */
	WS_JWT_WRONG_ISSUER,
	WS_JWT_WRONG_AUDIENCE,
	WS_JWT_NO_KEYS, /* the verifier has no key set loaded */
	WS_JWT_VERDICT_MAX,
};

/* "verified", "malformed", "alg_none", ... (metrics, span attributes). */
const char *ws_jwt_verdict_name(enum ws_jwt_verdict v);

/* What tokens must also satisfy. Strings are pointers (not copied). */
struct ws_jwt_policy {
	const char *issuers[WS_JWT_MAX_ACCEPT]; /* none: any iss */
	unsigned n_issuers;
	const char *audiences[WS_JWT_MAX_ACCEPT]; /* none: any aud */
	unsigned n_audiences;
	uint64_t leeway_s;
};

struct ws_jwks;

/*
 * Parse a JWKS ({"keys": [...]}, or a single JWK) into a key set. Keys that
 * cannot be used (another "use" than sig, unknown kty or crv, RSA under
 * 2048 or over 8192 bits, a point not on its curve, bad base64url, past
 * WS_JWKS_MAX_KEYS) are skipped and counted in *skipped. Returns the set
 * (possibly with no key), or NULL with a sentence in err (not JSON, no
 * "keys" array, out of memory).
 */
struct ws_jwks *ws_jwks_parse(const char *json, size_t len, unsigned *skipped,
			      char *err, size_t errcap);
unsigned ws_jwks_count(const struct ws_jwks *ks);
void ws_jwks_free(struct ws_jwks *ks);

/*
 * The time-independent part of a verification, which may be cached: the
 * verdict of the signature, iss and aud, and the token's exp / nbf.
 */
struct ws_jwt_checked {
	enum ws_jwt_verdict verdict;
	bool has_exp, has_nbf;
	int64_t exp, nbf; /* unix seconds */
};

void ws_jwt_check_static(const struct ws_jwks *ks,
			 const struct ws_jwt_policy *pol, const char *tok,
			 size_t len, struct ws_jwt_checked *out);
/* exp and nbf of a checked token at now_s. */
enum ws_jwt_verdict ws_jwt_check_time(const struct ws_jwt_checked *c,
				      const struct ws_jwt_policy *pol,
				      int64_t now_s);
/* Both. */
enum ws_jwt_verdict ws_jwt_verify(const struct ws_jwks *ks,
				  const struct ws_jwt_policy *pol,
				  const char *tok, size_t len, int64_t now_s);

/*
 * base64url without padding (RFC 7515 section 2) into out. Returns the
 * length, or -1 (a byte outside the alphabet, padding, a length of 4k+1,
 * too long for cap).
 */
ssize_t ws_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/* One part of a JWT (base64url of one JSON object, nothing after it) as a
 * json-c object, decoded through buf (cap bytes); NULL otherwise. */
struct json_object;
struct json_object *ws_jwt_part_json(const char *p, size_t len, uint8_t *buf,
				     size_t cap);

/* ---- the agent's verifier ------------------------------------------------ */

struct ws_jwt_verifier_cfg {
	const char *jwks_file;	     /* copied */
	struct ws_jwt_policy policy; /* its strings are copied */
	uint32_t cache_size;	     /* verdicts kept; 0: no cache */
};

struct ws_jwt_verifier_stats {
	uint64_t verdicts[WS_JWT_VERDICT_MAX]; /* [0]: verified */
	uint64_t cache_hits, cache_misses;
	uint64_t cache_evicted; /* verdicts dropped: cache full */
	uint64_t loads;		/* key sets read (start, change, SIGHUP) */
	uint64_t load_errors;	/* reads that failed: the old set stays */
	uint64_t keys;		/* keys in the current set */
	uint64_t keys_skipped;	/* keys of the current file not usable */
};

struct ws_jwt_verifier;

/* Read cfg->jwks_file. NULL + a sentence in err if it cannot be used. */
struct ws_jwt_verifier *
ws_jwt_verifier_new(const struct ws_jwt_verifier_cfg *cfg, char *err,
		    size_t errcap);
/*
 * A key set from text instead of a file (tests, fuzzing). NULL + err.
 */
struct ws_jwt_verifier *
ws_jwt_verifier_new_text(const struct ws_jwt_verifier_cfg *cfg,
			 const char *json, size_t len, char *err,
			 size_t errcap);
/*
 * New policy and file (SIGHUP): the file is read again, the cache emptied.
 * If the file cannot be read the old key set stays (load_errors). 0 or -1.
 */
int ws_jwt_verifier_configure(struct ws_jwt_verifier *v,
			      const struct ws_jwt_verifier_cfg *cfg, char *err,
			      size_t errcap);
/*
 * Read the file again if it changed (inode, size, mtime, ctime) since it
 * was read. Returns 1 (read), 0 (unchanged) or -1 (unreadable: the old
 * key set stays, load_errors counted once per change).
 */
int ws_jwt_verifier_refresh(struct ws_jwt_verifier *v, char *err,
			    size_t errcap);
/* Verify (or look up) a token at now_s; counts the verdict. */
enum ws_jwt_verdict ws_jwt_verifier_check(struct ws_jwt_verifier *v,
					  const char *tok, size_t len,
					  int64_t now_s);
const struct ws_jwt_verifier_stats *
ws_jwt_verifier_stats(const struct ws_jwt_verifier *v);
void ws_jwt_verifier_free(struct ws_jwt_verifier *v);

#endif /* WIRESPAN_JWKS_H */
