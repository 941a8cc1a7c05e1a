/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JWT verification against a JWKS. See jwks.h for what verifies and
 * docs/SECURITY.md ("JWT verification") for the rules' reasons.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <uthash.h>

#include "jwks.h"

/* Decoded sizes at most: header, claims, signature (RSA 8192 bits). */
#define MAX_HEADER 2048
#define MAX_CLAIMS 12288
#define MAX_SIG 1024
/* Bytes of a JWK member decoded at most (RSA 8192-bit modulus). */
#define MAX_PARAM 1024

static const char *const verdict_names[WS_JWT_VERDICT_MAX] = {
	"verified",	    "malformed",    "alg_none",	      "unsupported_alg",
	"unsupported_crit", "unknown_kid",  "bad_signature",  "expired",
	"not_yet_valid",    "wrong_issuer", "wrong_audience", "no_keys",
};

const char *ws_jwt_verdict_name(enum ws_jwt_verdict v)
{
	return (unsigned)v < WS_JWT_VERDICT_MAX ? verdict_names[v] : "unknown";
}

/* Key families: which keys an alg can use. */
enum fam {
	FAM_RSA = 1,
	FAM_P256,
	FAM_P384,
	FAM_P521,
	FAM_ED25519,
};

struct alg {
	const char *name;
	enum fam fam;
	const char *md; /* digest; NULL for EdDSA */
	bool pss;
};

static const struct alg algs[] = {
	{"RS256", FAM_RSA, "SHA256", false},
	{"RS384", FAM_RSA, "SHA384", false},
	{"RS512", FAM_RSA, "SHA512", false},
	{"PS256", FAM_RSA, "SHA256", true},
	{"PS384", FAM_RSA, "SHA384", true},
	{"PS512", FAM_RSA, "SHA512", true},
	{"ES256", FAM_P256, "SHA256", false},
	{"ES384", FAM_P384, "SHA384", false},
	{"ES512", FAM_P521, "SHA512", false},
	{"EdDSA", FAM_ED25519, NULL, false},
};

struct key {
	char *kid; /* NULL: none */
	char *alg; /* the JWK's "alg", NULL: any of its family */
	enum fam fam;
	EVP_PKEY *pkey;
};

struct ws_jwks {
	struct key keys[WS_JWKS_MAX_KEYS];
	unsigned n;
};

/* ---- base64url ---------------------------------------------------------- */

static int b64url_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

ssize_t ws_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	size_t i, o = 0;
	int bits = 0;

	if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
		return -1;
	for (i = 0; i < len; i++) {
		int v = b64url_val(in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* the unused low bits of the last character are zero: one text per
	 * byte string, so a changed character is a changed value */
	if (acc & ((1u << bits) - 1))
		return -1;
	return (ssize_t)o;
}

/* ---- keys --------------------------------------------------------------- */

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* A base64url member of a JWK into buf; its length or -1. */
static ssize_t jb64(json_object *o, const char *k, uint8_t *buf, size_t cap)
{
	const char *s = jstr(o, k);
	ssize_t n;

	if (!s)
		return -1;
	n = ws_b64url_decode(s, strlen(s), buf, cap);
	return n > 0 ? n : -1;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pkey = NULL;

	if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pkey;
}

/* An EC or OKP key must be a valid point of its curve. */
static EVP_PKEY *pkey_checked(EVP_PKEY *pkey)
{
	EVP_PKEY_CTX *ctx;
	int ok;

	if (!pkey)
		return NULL;
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	ok = ctx && EVP_PKEY_public_check(ctx) == 1;
	EVP_PKEY_CTX_free(ctx);
	if (!ok) {
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

static EVP_PKEY *rsa_key(json_object *o)
{
	uint8_t n[MAX_PARAM], e[16];
	ssize_t nl = jb64(o, "n", n, sizeof(n)),
		el = jb64(o, "e", e, sizeof(e));
	OSSL_PARAM_BLD *bld;
	BIGNUM *bn = NULL, *be = NULL;
	EVP_PKEY *pkey = NULL;
	int bits;

	if (nl < 0 || el < 0)
		return NULL;
	bn = BN_bin2bn(n, (int)nl, NULL);
	be = BN_bin2bn(e, (int)el, NULL);
	bits = bn ? BN_num_bits(bn) : 0;
	bld = OSSL_PARAM_BLD_new();
	if (bld && bits >= 2048 && bits <= 8192 && be && !BN_is_zero(be) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
		pkey = pkey_fromdata("RSA", bld);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	return pkey;
}

static const struct {
	const char *crv, *group;
	enum fam fam;
	size_t size; /* bytes of a coordinate */
} curves[] = {
	{"P-256", "prime256v1", FAM_P256, 32},
	{"P-384", "secp384r1", FAM_P384, 48},
	{"P-521", "secp521r1", FAM_P521, 66},
};

static size_t curve_size(enum fam f)
{
	size_t i;

	for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
		if (curves[i].fam == f)
			return curves[i].size;
	return 0;
}

static EVP_PKEY *ec_key(json_object *o, enum fam *fam)
{
	const char *crv = jstr(o, "crv");
	uint8_t pt[1 + 2 * 66];
	OSSL_PARAM_BLD *bld;
	EVP_PKEY *pkey = NULL;
	size_t i, sz;

	for (i = 0; crv && i < sizeof(curves) / sizeof(curves[0]); i++)
		if (!strcmp(crv, curves[i].crv))
			break;
	if (!crv || i == sizeof(curves) / sizeof(curves[0]))
		return NULL;
	sz = curves[i].size;
	pt[0] = 4; /* uncompressed point */
	if (jb64(o, "x", pt + 1, sz) != (ssize_t)sz ||
	    jb64(o, "y", pt + 1 + sz, sz) != (ssize_t)sz)
		return NULL;
	bld = OSSL_PARAM_BLD_new();
	if (bld &&
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
					    curves[i].group, 0) &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
					     1 + 2 * sz))
		pkey = pkey_checked(pkey_fromdata("EC", bld));
	OSSL_PARAM_BLD_free(bld);
	*fam = curves[i].fam;
	return pkey;
}

static EVP_PKEY *okp_key(json_object *o)
{
	const char *crv = jstr(o, "crv");
	uint8_t x[32];

	if (!crv || strcmp(crv, "Ed25519") || jb64(o, "x", x, sizeof(x)) != 32)
		return NULL;
	return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x,
					   sizeof(x));
}

/* One JWK into k; false if it cannot be used. */
static bool key_parse(json_object *o, struct key *k)
{
	const char *kty = jstr(o, "kty"), *use = jstr(o, "use"),
		   *kid = jstr(o, "kid"), *alg = jstr(o, "alg");

	memset(k, 0, sizeof(*k));
	if (!kty || (use && strcmp(use, "sig")))
		return false;
	if (!strcmp(kty, "RSA")) {
		k->fam = FAM_RSA;
		k->pkey = rsa_key(o);
	} else if (!strcmp(kty, "EC")) {
		k->pkey = ec_key(o, &k->fam);
	} else if (!strcmp(kty, "OKP")) {
		k->fam = FAM_ED25519;
		k->pkey = okp_key(o);
	}
	if (!k->pkey)
		return false;
	k->kid = kid ? strdup(kid) : NULL;
	k->alg = alg ? strdup(alg) : NULL;
	if ((kid && !k->kid) || (alg && !k->alg)) {
		free(k->kid);
		free(k->alg);
		EVP_PKEY_free(k->pkey);
		return false;
	}
	return true;
}

struct ws_jwks *ws_jwks_parse(const char *json, size_t len, unsigned *skipped,
			      char *err, size_t errcap)
{
	json_tokener *tok = json_tokener_new();
	json_object *root = NULL, *arr;
	struct ws_jwks *ks = NULL;
	size_t i, n;

	*skipped = 0;
	if (!tok) {
		snprintf(err, errcap, "out of memory");
		return NULL;
	}
	if (len <= WS_JWKS_MAX_FILE)
		root = json_tokener_parse_ex(tok, json, (int)len);
	json_tokener_free(tok);
	if (!root || !json_object_is_type(root, json_type_object)) {
		snprintf(err, errcap, "not a JSON object");
		goto out;
	}
	ks = calloc(1, sizeof(*ks));
	if (!ks) {
		snprintf(err, errcap, "out of memory");
		goto out;
	}
	if (!json_object_object_get_ex(root, "keys", &arr)) {
		/* a single JWK */
		if (!jstr(root, "kty")) {
			snprintf(err, errcap,
				 "neither a JWK set ({\"keys\": [...]}) nor "
				 "a JWK");
			free(ks);
			ks = NULL;
		} else if (key_parse(root, &ks->keys[0])) {
			ks->n = 1;
		} else {
			(*skipped)++;
		}
		goto out;
	}
	if (!json_object_is_type(arr, json_type_array)) {
		snprintf(err, errcap, "\"keys\" is not an array");
		free(ks);
		ks = NULL;
		goto out;
	}
	n = json_object_array_length(arr);
	for (i = 0; i < n; i++) {
		json_object *k = json_object_array_get_idx(arr, i);

		if (ks->n < WS_JWKS_MAX_KEYS &&
		    json_object_is_type(k, json_type_object) &&
		    key_parse(k, &ks->keys[ks->n]))
			ks->n++;
		else
			(*skipped)++;
	}
out:
	json_object_put(root);
	return ks;
}

unsigned ws_jwks_count(const struct ws_jwks *ks)
{
	return ks ? ks->n : 0;
}

void ws_jwks_free(struct ws_jwks *ks)
{
	unsigned i;

	if (!ks)
		return;
	for (i = 0; i < ks->n; i++) {
		free(ks->keys[i].kid);
		free(ks->keys[i].alg);
		EVP_PKEY_free(ks->keys[i].pkey);
	}
	free(ks);
}

/* ---- tokens ------------------------------------------------------------- */

/* JWS R||S (each the curve's size) to the DER OpenSSL verifies. */
static int ecdsa_der(const uint8_t *sig, size_t len, size_t sz, uint8_t **der)
{
	ECDSA_SIG *es;
	BIGNUM *r, *s;
	int n;

	if (!sz || len != 2 * sz)
		return -1;
	es = ECDSA_SIG_new();
	r = BN_bin2bn(sig, (int)sz, NULL);
	s = BN_bin2bn(sig + sz, (int)sz, NULL);
	if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return -1;
	}
	*der = NULL;
	n = i2d_ECDSA_SIG(es, der);
	ECDSA_SIG_free(es);
	return n;
}

static bool sig_ok(const struct alg *a, EVP_PKEY *pkey, const char *data,
		   size_t dlen, const uint8_t *sig, size_t slen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	uint8_t *der = NULL;
	bool ok = false;
	int n;

	if (!md)
		return false;
	if (EVP_DigestVerifyInit_ex(md, &pctx, a->md, NULL, NULL, pkey, NULL) !=
	    1)
		goto out;
	if (a->pss &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
	     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <=
		     0))
		goto out;
	if (a->fam >= FAM_P256 && a->fam <= FAM_P521) {
		n = ecdsa_der(sig, slen, curve_size(a->fam), &der);
		if (n <= 0)
			goto out;
		sig = der;
		slen = (size_t)n;
	}
	ok = EVP_DigestVerify(md, sig, slen, (const uint8_t *)data, dlen) == 1;
out:
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	return ok;
}

json_object *ws_jwt_part_json(const char *p, size_t len, uint8_t *buf,
			      size_t cap)
{
	ssize_t n = ws_b64url_decode(p, len, buf, cap);
	json_tokener *tok;
	json_object *o;

	if (n <= 0)
		return NULL;
	tok = json_tokener_new();
	if (!tok)
		return NULL;
	o = json_tokener_parse_ex(tok, (const char *)buf, (int)n);
	/* trailing bytes after the object: not one JSON value */
	if (o && json_tokener_get_parse_end(tok) != (size_t)n) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

/* A NumericDate claim: absent (0), a number (1, *t), else -1. */
static int num_claim(json_object *c, const char *k, int64_t *t)
{
	json_object *v;

	if (!json_object_object_get_ex(c, k, &v))
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		*t = json_object_get_int64(v);
		return 1;
	}
	if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);

		if (d != d || d > 9.2e18 || d < -9.2e18)
			return -1;
		*t = (int64_t)d;
		return 1;
	}
	return -1;
}

static bool accepted(const char *s, const char *const *list, unsigned n)
{
	unsigned i;

	for (i = 0; s && i < n; i++)
		if (!strcmp(s, list[i]))
			return true;
	return false;
}

static bool aud_ok(json_object *c, const struct ws_jwt_policy *pol)
{
	json_object *v;
	size_t i, n;

	if (!pol->n_audiences)
		return true;
	if (!json_object_object_get_ex(c, "aud", &v))
		return false;
	if (json_object_is_type(v, json_type_string))
		return accepted(json_object_get_string(v), pol->audiences,
				pol->n_audiences);
	if (!json_object_is_type(v, json_type_array))
		return false;
	n = json_object_array_length(v);
	for (i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(v, i);

		if (json_object_is_type(e, json_type_string) &&
		    accepted(json_object_get_string(e), pol->audiences,
			     pol->n_audiences))
			return true;
	}
	return false;
}

static enum ws_jwt_verdict claims_check(json_object *c,
					const struct ws_jwt_policy *pol,
					struct ws_jwt_checked *out)
{
	int e = num_claim(c, "exp", &out->exp),
	    nb = num_claim(c, "nbf", &out->nbf);

	if (e < 0 || nb < 0)
		return WS_JWT_MALFORMED;
	out->has_exp = e > 0;
	out->has_nbf = nb > 0;
	if (pol->n_issuers &&
	    !accepted(jstr(c, "iss"), pol->issuers, pol->n_issuers))
		return WS_JWT_WRONG_ISSUER;
	if (!aud_ok(c, pol))
		return WS_JWT_WRONG_AUDIENCE;
	return WS_JWT_VERIFIED;
}

static const struct alg *alg_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		if (!strcmp(name, algs[i].name))
			return &algs[i];
	return NULL;
}

/* The signature against the keys that fit alg and kid. */
static enum ws_jwt_verdict sig_check(const struct ws_jwks *ks,
				     const struct alg *a, const char *kid,
				     const char *data, size_t dlen,
				     const char *sig64, size_t slen64)
{
	uint8_t sig[MAX_SIG];
	ssize_t sl = ws_b64url_decode(sig64, slen64, sig, sizeof(sig));
	unsigned i, tried = 0;

	if (sl <= 0)
		return WS_JWT_MALFORMED;
	for (i = 0; ks && i < ks->n; i++) {
		const struct key *k = &ks->keys[i];

		if (k->fam != a->fam || (k->alg && strcmp(k->alg, a->name)))
			continue;
		if (kid && (!k->kid || strcmp(kid, k->kid)))
			continue;
		tried++;
		if (sig_ok(a, k->pkey, data, dlen, sig, (size_t)sl))
			return WS_JWT_VERIFIED;
	}
	return tried ? WS_JWT_BAD_SIGNATURE : WS_JWT_UNKNOWN_KID;
}

void ws_jwt_check_static(const struct ws_jwks *ks,
			 const struct ws_jwt_policy *pol, const char *tok,
			 size_t len, struct ws_jwt_checked *out)
{
	uint8_t buf[MAX_CLAIMS];
	const char *d1, *d2, *algname, *kid;
	json_object *hdr = NULL, *claims = NULL, *v;
	const struct alg *a;

	memset(out, 0, sizeof(*out));
	out->verdict = WS_JWT_MALFORMED;
	d1 = len <= WS_JWT_MAX_TOKEN ? memchr(tok, '.', len) : NULL;
	d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
	if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
		return;
	hdr = ws_jwt_part_json(tok, (size_t)(d1 - tok), buf, MAX_HEADER);
	algname = hdr ? jstr(hdr, "alg") : NULL;
	if (!algname)
		goto out;
	if (!strcasecmp(algname, "none")) {
		out->verdict = WS_JWT_ALG_NONE;
		goto out;
	}
	a = alg_find(algname);
	if (!a) {
		out->verdict = WS_JWT_UNSUPPORTED_ALG;
		goto out;
	}
	if (json_object_object_get_ex(hdr, "crit", &v)) {
		out->verdict = WS_JWT_UNSUPPORTED_CRIT;
		goto out;
	}
	if (json_object_object_get_ex(hdr, "kid", &v) &&
	    !json_object_is_type(v, json_type_string))
		goto out;
	kid = jstr(hdr, "kid");
	claims = ws_jwt_part_json(d1 + 1, (size_t)(d2 - d1 - 1), buf,
				  sizeof(buf));
	if (!claims)
		goto out;
	if (!ks || !ks->n) {
		out->verdict = WS_JWT_NO_KEYS;
		goto out;
	}
	out->verdict = sig_check(ks, a, kid, tok, (size_t)(d2 - tok), d2 + 1,
				 len - (size_t)(d2 + 1 - tok));
	if (out->verdict == WS_JWT_VERIFIED)
		out->verdict = claims_check(claims, pol, out);
out:
	json_object_put(hdr);
	json_object_put(claims);
}

enum ws_jwt_verdict ws_jwt_check_time(const struct ws_jwt_checked *c,
				      const struct ws_jwt_policy *pol,
				      int64_t now_s)
{
	int64_t lw = (int64_t)pol->leeway_s;

	if (c->verdict != WS_JWT_VERIFIED)
		return c->verdict;
	if (c->has_exp && now_s > c->exp && now_s - c->exp > lw)
		return WS_JWT_EXPIRED;
	if (c->has_nbf && c->nbf > now_s && c->nbf - now_s > lw)
		return WS_JWT_NOT_YET_VALID;
	return WS_JWT_VERIFIED;
}

enum ws_jwt_verdict ws_jwt_verify(const struct ws_jwks *ks,
				  const struct ws_jwt_policy *pol,
				  const char *tok, size_t len, int64_t now_s)
{
	struct ws_jwt_checked c;

	ws_jwt_check_static(ks, pol, tok, len, &c);
	return ws_jwt_check_time(&c, pol, now_s);
}

/* ---- the verifier ------------------------------------------------------- */

struct entry {
	uint8_t hash[32]; /* SHA-256 of the token */
	struct ws_jwt_checked c;
	UT_hash_handle hh;
};

struct ws_jwt_verifier {
	char *path;
	struct ws_jwt_policy pol;
	char *strs[2 * WS_JWT_MAX_ACCEPT]; /* the policy's copies */
	uint32_t cache_size;
	struct ws_jwks *ks;
	struct stat seen; /* the file as last looked at */
	bool seen_ok;
	struct entry *cache; /* uthash keeps insertion order: oldest first */
	struct ws_jwt_verifier_stats st;
};

static void cache_clear(struct ws_jwt_verifier *v)
{
	struct entry *e, *t;

	HASH_ITER (hh, v->cache, e, t) {
		HASH_DEL(v->cache, e);
		free(e);
	}
}

static void set_keys(struct ws_jwt_verifier *v, struct ws_jwks *ks,
		     unsigned skipped)
{
	ws_jwks_free(v->ks);
	v->ks = ks;
	v->st.loads++;
	v->st.keys = ws_jwks_count(ks);
	v->st.keys_skipped = skipped;
	cache_clear(v);
}

static int load_text(struct ws_jwt_verifier *v, const char *json, size_t len,
		     char *err, size_t errcap)
{
	unsigned skipped;
	struct ws_jwks *ks = ws_jwks_parse(json, len, &skipped, err, errcap);

	if (!ks)
		return -1;
	set_keys(v, ks, skipped);
	return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Read the file (if force, or changed). 1 read, 0 unchanged, -1. */
static int load_file(struct ws_jwt_verifier *v, bool force, char *err,
		     size_t errcap)
{
	struct stat st;
	char *buf = NULL;
	ssize_t n = 0, r;
	int fd, rc = -1;

	fd = open(v->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		snprintf(err, errcap, "cannot read the JWKS file %s: %s",
			 v->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		/* count a missing file once, not at every look */
		if (v->seen_ok || force)
			v->st.load_errors++;
		v->seen_ok = false;
		return -1;
	}
	if (!force && v->seen_ok && same_file(&st, &v->seen)) {
		close(fd);
		return 0;
	}
	v->seen = st;
	v->seen_ok = true;
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)WS_JWKS_MAX_FILE) {
		snprintf(err, errcap,
			 "the JWKS file %s is not a regular file of at most "
			 "%u bytes",
			 v->path, WS_JWKS_MAX_FILE);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		snprintf(err, errcap, "out of memory");
		goto out;
	}
	while (n < st.st_size &&
	       (r = read(fd, buf + n, (size_t)(st.st_size - n))) > 0)
		n += r;
	if (n != st.st_size) {
		snprintf(err, errcap, "cannot read the JWKS file %s", v->path);
		goto out;
	}
	if (load_text(v, buf, (size_t)n, err, errcap) == 0) {
		rc = 1;
	} else {
		size_t l = strlen(err);

		snprintf(err + l, errcap - l, " (%s)", v->path);
	}
out:
	if (rc < 0)
		v->st.load_errors++;
	free(buf);
	close(fd);
	return rc;
}

static int set_cfg(struct ws_jwt_verifier *v,
		   const struct ws_jwt_verifier_cfg *cfg)
{
	char *strs[2 * WS_JWT_MAX_ACCEPT] = {NULL};
	char *path = cfg->jwks_file ? strdup(cfg->jwks_file) : NULL;
	struct ws_jwt_policy pol = cfg->policy;
	unsigned i, n = 0;

	if (cfg->jwks_file && !path)
		return -1;
	if (pol.n_issuers > WS_JWT_MAX_ACCEPT)
		pol.n_issuers = WS_JWT_MAX_ACCEPT;
	if (pol.n_audiences > WS_JWT_MAX_ACCEPT)
		pol.n_audiences = WS_JWT_MAX_ACCEPT;
	for (i = 0; i < pol.n_issuers; i++)
		pol.issuers[i] = strs[n++] = strdup(pol.issuers[i]);
	for (i = 0; i < pol.n_audiences; i++)
		pol.audiences[i] = strs[n++] = strdup(pol.audiences[i]);
	for (i = 0; i < n; i++)
		if (!strs[i]) {
			while (n--)
				free(strs[n]);
			free(path);
			return -1;
		}
	for (i = 0; i < 2 * WS_JWT_MAX_ACCEPT; i++)
		free(v->strs[i]);
	memcpy(v->strs, strs, sizeof(strs));
	free(v->path);
	v->path = path;
	v->pol = pol;
	v->cache_size = cfg->cache_size;
	cache_clear(v);
	return 0;
}

static struct ws_jwt_verifier *
verifier_new(const struct ws_jwt_verifier_cfg *cfg, char *err, size_t errcap)
{
	struct ws_jwt_verifier *v = calloc(1, sizeof(*v));

	if (!v || set_cfg(v, cfg)) {
		ws_jwt_verifier_free(v);
		snprintf(err, errcap, "out of memory");
		return NULL;
	}
	return v;
}

struct ws_jwt_verifier *
ws_jwt_verifier_new(const struct ws_jwt_verifier_cfg *cfg, char *err,
		    size_t errcap)
{
	struct ws_jwt_verifier *v;

	if (!cfg->jwks_file || !*cfg->jwks_file) {
		snprintf(err, errcap, "no JWKS file");
		return NULL;
	}
	v = verifier_new(cfg, err, errcap);
	if (v && load_file(v, true, err, errcap) < 0) {
		ws_jwt_verifier_free(v);
		return NULL;
	}
	return v;
}

struct ws_jwt_verifier *
ws_jwt_verifier_new_text(const struct ws_jwt_verifier_cfg *cfg,
			 const char *json, size_t len, char *err, size_t errcap)
{
	struct ws_jwt_verifier *v = verifier_new(cfg, err, errcap);

	if (v && load_text(v, json, len, err, errcap)) {
		ws_jwt_verifier_free(v);
		return NULL;
	}
	return v;
}

int ws_jwt_verifier_configure(struct ws_jwt_verifier *v,
			      const struct ws_jwt_verifier_cfg *cfg, char *err,
			      size_t errcap)
{
	if (set_cfg(v, cfg)) {
		snprintf(err, errcap, "out of memory");
		return -1;
	}
	if (!v->path)
		return 0;
	return load_file(v, true, err, errcap) < 0 ? -1 : 0;
}

int ws_jwt_verifier_refresh(struct ws_jwt_verifier *v, char *err, size_t errcap)
{
	if (!v || !v->path)
		return 0;
	return load_file(v, false, err, errcap);
}

enum ws_jwt_verdict ws_jwt_verifier_check(struct ws_jwt_verifier *v,
					  const char *tok, size_t len,
					  int64_t now_s)
{
	struct entry *e = NULL;
	uint8_t h[32];
	unsigned hl = 0;
	enum ws_jwt_verdict r;
	struct ws_jwt_checked c;

	if (v->cache_size &&
	    EVP_Digest(tok, len, h, &hl, EVP_sha256(), NULL) == 1 && hl == 32)
		HASH_FIND(hh, v->cache, h, 32, e);
	if (e) {
		v->st.cache_hits++;
		/* most recently used last */
		HASH_DEL(v->cache, e);
		HASH_ADD(hh, v->cache, hash, 32, e);
		r = ws_jwt_check_time(&e->c, &v->pol, now_s);
		v->st.verdicts[r]++;
		return r;
	}
	ws_jwt_check_static(v->ks, &v->pol, tok, len, &c);
	r = ws_jwt_check_time(&c, &v->pol, now_s);
	v->st.verdicts[r]++;
	if (!v->cache_size || hl != 32)
		return r;
	v->st.cache_misses++;
	if (HASH_COUNT(v->cache) >= v->cache_size) {
		e = v->cache; /* the least recently used */
		HASH_DEL(v->cache, e);
		v->st.cache_evicted++;
	} else {
		e = malloc(sizeof(*e));
		if (!e)
			return r;
	}
	memcpy(e->hash, h, 32);
	e->c = c;
	HASH_ADD(hh, v->cache, hash, 32, e);
	return r;
}

const struct ws_jwt_verifier_stats *
ws_jwt_verifier_stats(const struct ws_jwt_verifier *v)
{
	return &v->st;
}

void ws_jwt_verifier_free(struct ws_jwt_verifier *v)
{
	unsigned i;

	if (!v)
		return;
	cache_clear(v);
	ws_jwks_free(v->ks);
	for (i = 0; i < 2 * WS_JWT_MAX_ACCEPT; i++)
		free(v->strs[i]);
	free(v->path);
	free(v);
}
