/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JWT verification against a JWKS (agent/jwks.c). The private keys are
 * fixtures (tests/fixtures/jwt/gen.sh records the openssl commands); the
 * test derives each JWK from a key's public half and signs its tokens with
 * OpenSSL itself, so no token or key set is a hard-coded answer.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "http_auth.h"
#include "jwks.h"

#define FIXTURES "tests/fixtures/jwt/"
#define NOW 1800000000ll

enum { K_RSA_A, K_RSA_B, K_P256_A, K_P256_B, K_P384, K_P521, K_ED, N_KEYS };

static const char *const key_files[N_KEYS] = {
	"rsa-a.pem", "rsa-b.pem", "p256-a.pem",	 "p256-b.pem",
	"p384.pem",  "p521.pem",  "ed25519.pem",
};
static const char *const key_kids[N_KEYS] = {
	"rsa-a", "rsa-b", "p256-a", "p256-b", "p384", "p521", "ed"};

static EVP_PKEY *keys[N_KEYS];

static int setup(void **state)
{
	char path[256];
	int i;

	(void)state;
	for (i = 0; i < N_KEYS; i++) {
		FILE *f;

		snprintf(path, sizeof(path), FIXTURES "%s", key_files[i]);
		f = fopen(path, "r");
		if (!f)
			return -1;
		keys[i] = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		if (!keys[i])
			return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	int i;

	(void)state;
	for (i = 0; i < N_KEYS; i++)
		EVP_PKEY_free(keys[i]);
	return 0;
}

/* base64url without padding of n bytes into out (NUL-terminated). */
static void b64url(const uint8_t *in, size_t n, char *out)
{
	int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n), i;

	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (i = 0; i < len; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
}

static void b64url_str(const char *s, char *out)
{
	b64url((const uint8_t *)s, strlen(s), out);
}

static void bn_b64(EVP_PKEY *k, const char *param, size_t pad, char *out)
{
	BIGNUM *bn = NULL;
	uint8_t buf[1024];
	int n;

	assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
	n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
	assert_true(n > 0);
	b64url(buf, (size_t)n, out);
	BN_free(bn);
}

/* The JWK of key i's public half ("alg" member if alg). */
static void jwk(int i, const char *kid, const char *alg, char *out, size_t cap)
{
	char a[2048], b[2048], extra[128] = "";
	EVP_PKEY *k = keys[i];

	if (kid)
		snprintf(extra, sizeof(extra), ",\"kid\":\"%s\"", kid);
	if (alg)
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra),
			 ",\"alg\":\"%s\"", alg);
	if (i == K_RSA_A || i == K_RSA_B) {
		bn_b64(k, OSSL_PKEY_PARAM_RSA_N, 0, a);
		bn_b64(k, OSSL_PKEY_PARAM_RSA_E, 0, b);
		snprintf(out, cap,
			 "{\"kty\":\"RSA\",\"use\":\"sig\",\"n\":\"%s\","
			 "\"e\":\"%s\"%s}",
			 a, b, extra);
	} else if (i == K_ED) {
		uint8_t raw[32];
		size_t n = sizeof(raw);

		assert_int_equal(EVP_PKEY_get_raw_public_key(k, raw, &n), 1);
		b64url(raw, n, a);
		snprintf(out, cap,
			 "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"%s}",
			 a, extra);
	} else {
		size_t sz = i == K_P384 ? 48 : i == K_P521 ? 66 : 32;

		bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, sz, a);
		bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, sz, b);
		snprintf(out, cap,
			 "{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\","
			 "\"y\":\"%s\"%s}",
			 sz == 48   ? "P-384"
			 : sz == 66 ? "P-521"
				    : "P-256",
			 a, b, extra);
	}
}

/* A key set of every fixture key except rsa-b and p256-b (the wrong ones),
 * each with its kid. */
static struct ws_jwks *keyset(void)
{
	static const int in[] = {K_RSA_A, K_P256_A, K_P384, K_P521, K_ED};
	char json[16384] = "{\"keys\":[", one[4096];
	struct ws_jwks *ks;
	unsigned skipped;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		jwk(in[i], key_kids[in[i]], NULL, one, sizeof(one));
		strcat(json, i ? "," : "");
		strcat(json, one);
	}
	strcat(json, "]}");
	ks = ws_jwks_parse(json, strlen(json), &skipped, err, sizeof(err));
	assert_non_null(ks);
	assert_int_equal(skipped, 0);
	assert_int_equal(ws_jwks_count(ks), 5);
	return ks;
}

static const char *md_of(const char *alg)
{
	if (!strcmp(alg, "EdDSA"))
		return NULL;
	return strstr(alg, "384")   ? "SHA384"
	       : strstr(alg, "512") ? "SHA512"
				    : "SHA256";
}

/* A token with header hdr and claims cl signed by key i under alg. */
static void sign(int i, const char *alg, const char *hdr, const char *cl,
		 char *out, size_t cap)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	uint8_t sig[2048], raw[200];
	size_t sl = sizeof(sig);
	char h64[1024], c64[4096], s64[4096];

	b64url_str(hdr, h64);
	b64url_str(cl, c64);
	assert_true(strlen(h64) + strlen(c64) + 2 < cap);
	strcpy(out, h64);
	strcat(out, ".");
	strcat(out, c64);
	assert_int_equal(EVP_DigestSignInit_ex(md, &pctx, md_of(alg), NULL,
					       NULL, keys[i], NULL),
			 1);
	if (alg[0] == 'P') {
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
		EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
	}
	assert_int_equal(
		EVP_DigestSign(md, sig, &sl, (uint8_t *)out, strlen(out)), 1);
	EVP_MD_CTX_free(md);
	if (alg[0] == 'E' && alg[1] == 'S') {
		const uint8_t *p = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sl);
		size_t sz = i == K_P384 ? 48 : i == K_P521 ? 66 : 32;

		assert_non_null(es);
		BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)sz);
		BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + sz, (int)sz);
		ECDSA_SIG_free(es);
		b64url(raw, 2 * sz, s64);
	} else {
		b64url(sig, sl, s64);
	}
	snprintf(out + strlen(out), cap - strlen(out), ".%s", s64);
}

static void token(int i, const char *alg, const char *kid, const char *cl,
		  char *out, size_t cap)
{
	char hdr[256];

	if (kid)
		snprintf(hdr, sizeof(hdr),
			 "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg,
			 kid);
	else
		snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}",
			 alg);
	sign(i, alg, hdr, cl, out, cap);
}

static const struct ws_jwt_policy lenient = {.leeway_s = 30};
#define CLAIMS "{\"sub\":\"user-1\",\"iss\":\"https://idp\",\"exp\":1800000600}"

static enum ws_jwt_verdict verify(const struct ws_jwks *ks, const char *t)
{
	return ws_jwt_verify(ks, &lenient, t, strlen(t), NOW);
}

/* Every algorithm with its key, with and without a kid. */
static void each_alg(void **state)
{
	static const struct {
		const char *alg;
		int key;
	} c[] = {
		{"RS256", K_RSA_A},  {"RS384", K_RSA_A}, {"RS512", K_RSA_A},
		{"PS256", K_RSA_A},  {"PS384", K_RSA_A}, {"PS512", K_RSA_A},
		{"ES256", K_P256_A}, {"ES384", K_P384},	 {"ES512", K_P521},
		{"EdDSA", K_ED},
	};
	struct ws_jwks *ks = keyset();
	char t[4096];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		token(c[i].key, c[i].alg, key_kids[c[i].key], CLAIMS, t,
		      sizeof(t));
		assert_string_equal(ws_jwt_verdict_name(verify(ks, t)),
				    "verified");
		token(c[i].key, c[i].alg, NULL, CLAIMS, t, sizeof(t));
		assert_int_equal(verify(ks, t), WS_JWT_VERIFIED);
	}
	ws_jwks_free(ks);
}

/* Signed by another key under a known kid; or by a key the set lacks. */
static void wrong_key(void **state)
{
	struct ws_jwks *ks = keyset();
	char t[4096];

	(void)state;
	token(K_RSA_B, "RS256", "rsa-a", CLAIMS, t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_BAD_SIGNATURE);
	token(K_RSA_B, "PS256", NULL, CLAIMS, t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_BAD_SIGNATURE);
	token(K_P256_B, "ES256", "p256-a", CLAIMS, t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_BAD_SIGNATURE);
	/* a kid the set does not have */
	token(K_RSA_B, "RS256", "rsa-b", CLAIMS, t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_UNKNOWN_KID);
	/* the kid of a key of another family than the alg */
	token(K_P256_A, "ES256", "rsa-a", CLAIMS, t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_UNKNOWN_KID);
	/* a P-256 signature presented as ES384 */
	token(K_P256_A, "ES256", "p256-a", CLAIMS, t, sizeof(t));
	t[5] = 'z'; /* no longer the header it was: see tampered */
	assert_int_not_equal(verify(ks, t), WS_JWT_VERIFIED);
	ws_jwks_free(ks);
}

/* The claims or the header changed after signing; any one character. */
static void tampered(void **state)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqr"
				  "stuvwxyz0123456789-_";
	struct ws_jwks *ks = keyset();
	char t[4096], t2[4096], c64[512];
	const char *d1, *d2;
	size_t i, n;

	(void)state;
	token(K_RSA_A, "RS256", "rsa-a", CLAIMS, t, sizeof(t));
	d1 = strchr(t, '.');
	d2 = strchr(d1 + 1, '.');
	b64url_str("{\"sub\":\"admin\",\"iss\":\"https://idp\","
		   "\"exp\":1800000600}",
		   c64);
	snprintf(t2, sizeof(t2), "%.*s.%s%s", (int)(d1 - t), t, c64, d2);
	assert_int_equal(verify(ks, t2), WS_JWT_BAD_SIGNATURE);
	/* every position, a different character: never verified */
	n = strlen(t);
	for (i = 0; i < n; i += 3) {
		if (t[i] == '.')
			continue;
		strcpy(t2, t);
		t2[i] = b64[(strchr(b64, t[i]) - b64 + 1 + i % 63) % 64];
		assert_int_not_equal(verify(ks, t2), WS_JWT_VERIFIED);
	}
	/* the signature cut short, or with a byte more */
	strcpy(t2, t);
	t2[n - 4] = '\0';
	assert_int_not_equal(verify(ks, t2), WS_JWT_VERIFIED);
	snprintf(t2, sizeof(t2), "%sAA", t);
	assert_int_not_equal(verify(ks, t2), WS_JWT_VERIFIED);
	ws_jwks_free(ks);
}

/* exp and nbf against the time, with the leeway. */
static void times(void **state)
{
	struct ws_jwks *ks = keyset();
	char t[4096], cl[256];

	(void)state;
	snprintf(cl, sizeof(cl), "{\"sub\":\"u\",\"exp\":%lld}", NOW - 100);
	token(K_P256_A, "ES256", "p256-a", cl, t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_EXPIRED);
	assert_string_equal(ws_jwt_verdict_name(verify(ks, t)), "expired");
	snprintf(cl, sizeof(cl), "{\"sub\":\"u\",\"exp\":%lld}", NOW - 20);
	token(K_P256_A, "ES256", "p256-a", cl, t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_VERIFIED); /* leeway 30 */
	snprintf(cl, sizeof(cl), "{\"sub\":\"u\",\"nbf\":%lld,\"exp\":%lld}",
		 NOW + 100, NOW + 1000);
	token(K_P256_A, "ES256", "p256-a", cl, t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_NOT_YET_VALID);
	assert_int_equal(ws_jwt_verify(ks, &lenient, t, strlen(t), NOW + 80),
			 WS_JWT_VERIFIED);
	/* a float exp; an exp that is not a number */
	snprintf(cl, sizeof(cl), "{\"exp\":%lld.5}", NOW + 10);
	token(K_P256_A, "ES256", "p256-a", cl, t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_VERIFIED);
	token(K_P256_A, "ES256", "p256-a", "{\"exp\":\"tomorrow\"}", t,
	      sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_MALFORMED);
	ws_jwks_free(ks);
}

/* alg none (any case) and HMAC keyed with the public key never verify. */
static void alg_none_and_hmac(void **state)
{
	struct ws_jwks *ks = keyset();
	char t[4096], h64[256], c64[512], s64[128], pem[4096];
	uint8_t mac[32];
	unsigned ml = 0;
	BIO *bio;
	long pl;
	char *pp;

	(void)state;
	b64url_str(CLAIMS, c64);
	b64url_str("{\"alg\":\"none\",\"kid\":\"rsa-a\"}", h64);
	snprintf(t, sizeof(t), "%s.%s.", h64, c64);
	assert_int_equal(verify(ks, t), WS_JWT_ALG_NONE);
	b64url_str("{\"alg\":\"None\"}", h64);
	snprintf(t, sizeof(t), "%s.%s.", h64, c64);
	assert_int_equal(verify(ks, t), WS_JWT_ALG_NONE);
	/* HS256 with the RSA public key (PEM) as the HMAC key: the classic
	 * algorithm confusion */
	bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PUBKEY(bio, keys[K_RSA_A]), 1);
	pl = BIO_get_mem_data(bio, &pp);
	assert_true(pl > 0 && pl < (long)sizeof(pem));
	memcpy(pem, pp, (size_t)pl);
	BIO_free(bio);
	b64url_str("{\"alg\":\"HS256\",\"kid\":\"rsa-a\"}", h64);
	snprintf(t, sizeof(t), "%s.%s", h64, c64);
	HMAC(EVP_sha256(), pem, (int)pl, (uint8_t *)t, strlen(t), mac, &ml);
	b64url(mac, ml, s64);
	snprintf(t + strlen(t), sizeof(t) - strlen(t), ".%s", s64);
	assert_int_equal(verify(ks, t), WS_JWT_UNSUPPORTED_ALG);
	assert_string_equal(ws_jwt_verdict_name(WS_JWT_UNSUPPORTED_ALG),
			    "unsupported_alg");
	ws_jwks_free(ks);
}

static void malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"abc",
		"a.b",
		"a.b.c.d",
		"!!!.e30.AAAA",
		"e30.e30.AAAA",
		/* header not JSON / JSON with trailing junk */
		"bm90IGpzb24.e30.AAAA",
		"eyJhbGciOiJSUzI1NiJ9eA.e30.AAAA",
	};
	struct ws_jwks *ks = keyset();
	char t[4096], big[WS_JWT_MAX_TOKEN + 64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(verify(ks, bad[i]), WS_JWT_MALFORMED);
	/* a crit header is an extension this verifier does not know */
	sign(K_RSA_A, "RS256", "{\"alg\":\"RS256\",\"crit\":[\"x\"],\"x\":1}",
	     CLAIMS, t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_UNSUPPORTED_CRIT);
	/* claims that are not an object */
	sign(K_RSA_A, "RS256", "{\"alg\":\"RS256\"}", "[1,2]", t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_MALFORMED);
	/* too long */
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[10] = big[20] = '.';
	assert_int_equal(verify(ks, big), WS_JWT_MALFORMED);
	/* no key set at all */
	token(K_RSA_A, "RS256", "rsa-a", CLAIMS, t, sizeof(t));
	assert_int_equal(verify(NULL, t), WS_JWT_NO_KEYS);
	ws_jwks_free(ks);
}

/* iss and aud when configured. */
static void issuer_audience(void **state)
{
	struct ws_jwt_policy pol = {.leeway_s = 30,
				    .issuers = {"https://other", "https://idp"},
				    .n_issuers = 2,
				    .audiences = {"orders"},
				    .n_audiences = 1};
	struct ws_jwks *ks = keyset();
	char t[4096];

	(void)state;
	token(K_ED, "EdDSA", "ed",
	      "{\"iss\":\"https://idp\",\"aud\":[\"web\",\"orders\"]}", t,
	      sizeof(t));
	assert_int_equal(ws_jwt_verify(ks, &pol, t, strlen(t), NOW),
			 WS_JWT_VERIFIED);
	token(K_ED, "EdDSA", "ed",
	      "{\"iss\":\"https://idp\",\"aud\":\"orders\"}", t, sizeof(t));
	assert_int_equal(ws_jwt_verify(ks, &pol, t, strlen(t), NOW),
			 WS_JWT_VERIFIED);
	token(K_ED, "EdDSA", "ed",
	      "{\"iss\":\"https://evil\",\"aud\":\"orders\"}", t, sizeof(t));
	assert_int_equal(ws_jwt_verify(ks, &pol, t, strlen(t), NOW),
			 WS_JWT_WRONG_ISSUER);
	token(K_ED, "EdDSA", "ed", "{\"iss\":\"https://idp\"}", t, sizeof(t));
	assert_int_equal(ws_jwt_verify(ks, &pol, t, strlen(t), NOW),
			 WS_JWT_WRONG_AUDIENCE);
	token(K_ED, "EdDSA", "ed",
	      "{\"iss\":\"https://idp\",\"aud\":[\"web\"]}", t, sizeof(t));
	assert_int_equal(ws_jwt_verify(ks, &pol, t, strlen(t), NOW),
			 WS_JWT_WRONG_AUDIENCE);
	ws_jwks_free(ks);
}

/* Keys that cannot be used are skipped and counted; the JWK's alg and
 * kid restrict it. */
static void jwks_parsing(void **state)
{
	char json[8192], one[4096], t[4096], err[256];
	struct ws_jwks *ks;
	unsigned skipped;

	(void)state;
	assert_null(ws_jwks_parse("nope", 4, &skipped, err, sizeof(err)));
	assert_null(
		ws_jwks_parse("{\"keys\":3}", 10, &skipped, err, sizeof(err)));
	assert_null(ws_jwks_parse("{\"a\":1}", 7, &skipped, err, sizeof(err)));
	/* encryption keys, symmetric keys, a point off the curve, unknown
	 * curve, a non-object */
	jwk(K_P256_A, "p", NULL, one, sizeof(one));
	snprintf(json, sizeof(json),
		 "{\"keys\":[{\"kty\":\"RSA\",\"use\":\"enc\",\"n\":\"AQAB\","
		 "\"e\":\"AQAB\"},{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"},"
		 "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"},"
		 "{\"kty\":\"EC\",\"crv\":\"P-999\",\"x\":\"AA\",\"y\":\"AA\"},"
		 "{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"},7,%s]}",
		 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE",
		 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE", one);
	ks = ws_jwks_parse(json, strlen(json), &skipped, err, sizeof(err));
	assert_non_null(ks);
	assert_int_equal(skipped, 6);
	assert_int_equal(ws_jwks_count(ks), 1);
	ws_jwks_free(ks);
	/* a single JWK with "alg": only that alg */
	jwk(K_RSA_A, "r", "PS256", json, sizeof(json));
	ks = ws_jwks_parse(json, strlen(json), &skipped, err, sizeof(err));
	assert_non_null(ks);
	assert_int_equal(ws_jwks_count(ks), 1);
	token(K_RSA_A, "PS256", "r", CLAIMS, t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_VERIFIED);
	token(K_RSA_A, "RS256", "r", CLAIMS, t, sizeof(t));
	assert_int_equal(verify(ks, t), WS_JWT_UNKNOWN_KID);
	ws_jwks_free(ks);
}

static void b64url_strict(void **state)
{
	uint8_t out[8];

	(void)state;
	assert_int_equal(ws_b64url_decode("QQ", 2, out, sizeof(out)), 1);
	assert_int_equal(out[0], 'A');
	/* non-zero unused bits: another text for the same byte */
	assert_int_equal(ws_b64url_decode("QR", 2, out, sizeof(out)), -1);
	assert_int_equal(ws_b64url_decode("QQ==", 4, out, sizeof(out)), -1);
	assert_int_equal(ws_b64url_decode("Q+", 2, out, sizeof(out)), -1);
	assert_int_equal(ws_b64url_decode("QUFB", 4, out, 2), -1);
	assert_int_equal(ws_b64url_decode("QUFBQ", 5, out, sizeof(out)), -1);
}

static char *jwks_text(const int *in, size_t n)
{
	char *json = calloc(1, 16384), one[4096];
	size_t i;

	assert_non_null(json);
	strcpy(json, "{\"keys\":[");
	for (i = 0; i < n; i++) {
		jwk(in[i], key_kids[in[i]], NULL, one, sizeof(one));
		strcat(json, i ? "," : "");
		strcat(json, one);
	}
	strcat(json, "]}");
	return json;
}

/* The verifier caches verdicts per token, bounded; time is re-checked. */
static void verifier_cache(void **state)
{
	static const int in[] = {K_RSA_A, K_P256_A};
	struct ws_jwt_verifier_cfg cfg = {.policy = {.leeway_s = 0},
					  .cache_size = 2};
	char *json = jwks_text(in, 2), t1[4096], t2[4096], t3[4096], err[256];
	struct ws_jwt_verifier *v;
	const struct ws_jwt_verifier_stats *st;

	(void)state;
	v = ws_jwt_verifier_new_text(&cfg, json, strlen(json), err,
				     sizeof(err));
	assert_non_null(v);
	st = ws_jwt_verifier_stats(v);
	assert_int_equal(st->keys, 2);
	token(K_RSA_A, "RS256", "rsa-a", CLAIMS, t1, sizeof(t1));
	token(K_RSA_B, "RS256", "rsa-a", CLAIMS, t2, sizeof(t2));
	token(K_P256_A, "ES256", NULL, CLAIMS, t3, sizeof(t3));
	assert_int_equal(ws_jwt_verifier_check(v, t1, strlen(t1), NOW),
			 WS_JWT_VERIFIED);
	assert_int_equal(ws_jwt_verifier_check(v, t1, strlen(t1), NOW),
			 WS_JWT_VERIFIED);
	assert_int_equal(st->cache_hits, 1);
	assert_int_equal(st->cache_misses, 1);
	/* the cached verdict is checked against the time again */
	assert_int_equal(ws_jwt_verifier_check(v, t1, strlen(t1), NOW + 601),
			 WS_JWT_EXPIRED);
	assert_int_equal(st->cache_hits, 2);
	assert_int_equal(ws_jwt_verifier_check(v, t2, strlen(t2), NOW),
			 WS_JWT_BAD_SIGNATURE);
	assert_int_equal(ws_jwt_verifier_check(v, t2, strlen(t2), NOW),
			 WS_JWT_BAD_SIGNATURE);
	assert_int_equal(ws_jwt_verifier_check(v, t3, strlen(t3), NOW),
			 WS_JWT_VERIFIED);
	/* two entries at most: t1, the least recently used, went */
	assert_int_equal(st->cache_evicted, 1);
	assert_int_equal(ws_jwt_verifier_check(v, t1, strlen(t1), NOW),
			 WS_JWT_VERIFIED);
	assert_int_equal(st->cache_misses, 4);
	assert_int_equal(st->verdicts[WS_JWT_VERIFIED], 4);
	assert_int_equal(st->verdicts[WS_JWT_EXPIRED], 1);
	assert_int_equal(st->verdicts[WS_JWT_BAD_SIGNATURE], 2);
	ws_jwt_verifier_free(v);
	free(json);
}

static void write_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(s, f);
	fclose(f);
}

/* The file is read again when it changes; a broken file keeps the old
 * key set; SIGHUP (configure) reads it and applies a new policy. */
static void verifier_file(void **state)
{
	static const int a[] = {K_RSA_A}, b[] = {K_P256_A, K_ED};
	char path[] = "/tmp/wirespan-jwks-XXXXXX", t[4096], err[256];
	struct ws_jwt_verifier_cfg cfg = {.jwks_file = path,
					  .policy = {.leeway_s = 30},
					  .cache_size = 16};
	char *ja = jwks_text(a, 1), *jb = jwks_text(b, 2);
	const struct ws_jwt_verifier_stats *st;
	struct ws_jwt_verifier *v;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	write_file(path, ja);
	v = ws_jwt_verifier_new(&cfg, err, sizeof(err));
	assert_non_null(v);
	st = ws_jwt_verifier_stats(v);
	token(K_RSA_A, "RS256", "rsa-a", CLAIMS, t, sizeof(t));
	assert_int_equal(ws_jwt_verifier_check(v, t, strlen(t), NOW),
			 WS_JWT_VERIFIED);
	assert_int_equal(ws_jwt_verifier_refresh(v, err, sizeof(err)), 0);
	write_file(path, jb);
	assert_int_equal(ws_jwt_verifier_refresh(v, err, sizeof(err)), 1);
	assert_int_equal(st->loads, 2);
	assert_int_equal(st->keys, 2);
	/* the cache was emptied with the old keys */
	assert_int_equal(ws_jwt_verifier_check(v, t, strlen(t), NOW),
			 WS_JWT_UNKNOWN_KID);
	write_file(path, "{broken");
	assert_int_equal(ws_jwt_verifier_refresh(v, err, sizeof(err)), -1);
	assert_non_null(strstr(err, path));
	assert_int_equal(st->load_errors, 1);
	assert_int_equal(st->keys, 2);
	assert_int_equal(ws_jwt_verifier_refresh(v, err, sizeof(err)), 0);
	assert_int_equal(st->load_errors, 1);
	unlink(path);
	assert_int_equal(ws_jwt_verifier_refresh(v, err, sizeof(err)), -1);
	assert_int_equal(ws_jwt_verifier_refresh(v, err, sizeof(err)), -1);
	assert_int_equal(st->load_errors, 2);
	write_file(path, ja);
	cfg.policy.issuers[0] = "https://elsewhere";
	cfg.policy.n_issuers = 1;
	assert_int_equal(ws_jwt_verifier_configure(v, &cfg, err, sizeof(err)),
			 0);
	assert_int_equal(ws_jwt_verifier_check(v, t, strlen(t), NOW),
			 WS_JWT_WRONG_ISSUER);
	ws_jwt_verifier_free(v);
	unlink(path);
	/* at start a missing file is an error */
	assert_null(ws_jwt_verifier_new(&cfg, err, sizeof(err)));
	free(ja);
	free(jb);
}

/* Through http_auth: the claims are marked verified, or why not. */
static void http_auth_verified(void **state)
{
	static const int in[] = {K_RSA_A};
	struct ws_jwt_verifier_cfg vc = {.policy = {.leeway_s = 30},
					 .cache_size = 8};
	char *json = jwks_text(in, 1), t[4096], val[4200], err[256];
	struct ws_http_header hd;
	struct ws_http_headers h = {.v = &hd, .n = 1};
	struct ws_attr store[WS_SPAN_MAX_ATTRS];
	struct ws_http_auth_stats st = {0};
	struct ws_http_auth_cfg cfg;
	const struct ws_attr *at;
	struct ws_attrs a;
	int pass;

	(void)state;
	ws_http_auth_cfg_init(&cfg);
	cfg.jwt_verifier = ws_jwt_verifier_new_text(&vc, json, strlen(json),
						    err, sizeof(err));
	assert_non_null(cfg.jwt_verifier);
	for (pass = 0; pass < 2; pass++) {
		token(pass ? K_RSA_B : K_RSA_A, "RS256", "rsa-a", CLAIMS, t,
		      sizeof(t));
		snprintf(val, sizeof(val), "Bearer %s", t);
		hd.name.ptr = "Authorization";
		hd.name.len = 13;
		hd.value.ptr = val;
		hd.value.len = strlen(val);
		ws_attrs_init(&a, store, WS_SPAN_MAX_ATTRS);
		assert_true(ws_http_auth_apply(&cfg, &h, NOW * 1000000000ull,
					       &a, &st));
		at = ws_attrs_get(&a, "wirespan.auth.verified");
		assert_non_null(at);
		assert_int_equal(at->type, WS_ATTR_BOOL);
		assert_int_equal(at->b, !pass);
		at = ws_attrs_get(&a, "wirespan.auth.verify_error");
		if (pass)
			assert_string_equal(at->s, "bad_signature");
		else
			assert_null(at);
		assert_string_equal(ws_attrs_get(&a, "enduser.id")->s,
				    "user-1");
		ws_attrs_clear(&a);
	}
	ws_jwt_verifier_free(cfg.jwt_verifier);
	free(json);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(each_alg),
		cmocka_unit_test(wrong_key),
		cmocka_unit_test(tampered),
		cmocka_unit_test(times),
		cmocka_unit_test(alg_none_and_hmac),
		cmocka_unit_test(malformed),
		cmocka_unit_test(issuer_audience),
		cmocka_unit_test(jwks_parsing),
		cmocka_unit_test(b64url_strict),
		cmocka_unit_test(verifier_cache),
		cmocka_unit_test(verifier_file),
		cmocka_unit_test(http_auth_verified),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
