/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Caller identity from HTTP headers: JWT claims (never trusted), keyed
 * hashes of opaque keys (HMAC-SHA256 and Tyk's murmur3), Basic user names,
 * the secret file, and the list of header names that are never recorded.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_auth.h"

#define JWT_HDR "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
/* {"sub":"user-42","iss":"https://idp.example","aud":["api","billing"],
 *  "azp":"web-app","scope":"read:orders write:orders","roles":["admin"],
 *  "email":"bob@example.com","exp":1900000000} */
#define JWT_CLAIMS1                                                            \
	"eyJzdWIiOiJ1c2VyLTQyIiwiaXNzIjoiaHR0cHM6Ly9pZHAuZXhhbXBsZSIsImF1ZCI6" \
	"WyJhcGkiLCJiaWxsaW5nIl0sImF6cCI6IndlYi1hcHAiLCJzY29wZSI6InJlYWQ6b3Jk" \
	"ZXJzIHdyaXRlOm9yZGVycyIsInJvbGVzIjpbImFkbWluIl0sImVtYWlsIjoiYm9iQGV4" \
	"YW1wbGUuY29tIiwiZXhwIjoxOTAwMDAwMDAwfQ"
/* {"sub":7,"client_id":"svc-7","scp":["a","b"],"tenant":"acme"} */
#define JWT_CLAIMS2                                                            \
	"eyJzdWIiOjcsImNsaWVudF9pZCI6InN2Yy03Iiwic2NwIjpbImEiLCJiIl0sInRlbmFu" \
	"dCI6ImFjbWUifQ"
#define JWT_SIG "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

struct hset {
	struct ws_http_header v[8];
	struct ws_http_headers h;
	struct ws_attr store[WS_SPAN_MAX_ATTRS];
	struct ws_attrs a;
	struct ws_http_auth_stats st;
};

static void hs_init(struct hset *hs)
{
	memset(hs, 0, sizeof(*hs));
	hs->h.v = hs->v;
	ws_attrs_init(&hs->a, hs->store, WS_SPAN_MAX_ATTRS);
}

static void hs_add(struct hset *hs, const char *name, const char *value)
{
	struct ws_http_header *h = &hs->v[hs->h.n++];

	h->name.ptr = name;
	h->name.len = strlen(name);
	h->value.ptr = value;
	h->value.len = strlen(value);
}

static const char *get(struct hset *hs, const char *k)
{
	const struct ws_attr *a = ws_attrs_get(&hs->a, k);

	return a && a->type == WS_ATTR_STR ? a->s : NULL;
}

static void apply(const struct ws_http_auth_cfg *cfg, struct hset *hs)
{
	ws_http_auth_apply(cfg, &hs->h, 1700000000ull * 1000000000ull, &hs->a,
			   &hs->st);
}

static void cfg_with_secret(struct ws_http_auth_cfg *cfg)
{
	ws_http_auth_cfg_init(cfg);
	memcpy(cfg->secret, "0123456789abcdef0123", 20);
	cfg->secret_len = 20;
}

static void jwt_claims(void **state)
{
	struct ws_http_auth_cfg cfg;
	struct hset hs;
	const struct ws_attr *v;

	ws_http_auth_cfg_init(&cfg);
	hs_init(&hs);
	hs_add(&hs, "authorization",
	       "Bearer " JWT_HDR "." JWT_CLAIMS1 "." JWT_SIG);
	apply(&cfg, &hs);
	assert_string_equal(get(&hs, "enduser.id"), "user-42");
	assert_string_equal(get(&hs, "wirespan.auth.iss"),
			    "https://idp.example");
	assert_string_equal(get(&hs, "wirespan.auth.aud"), "api,billing");
	assert_string_equal(get(&hs, "wirespan.auth.azp"), "web-app");
	assert_string_equal(get(&hs, "user.roles"),
			    "read:orders,write:orders,admin");
	assert_string_equal(get(&hs, "wirespan.auth.scheme"), "bearer_jwt");
	v = ws_attrs_get(&hs.a, "wirespan.auth.verified");
	assert_non_null(v);
	assert_int_equal(v->type, WS_ATTR_BOOL);
	assert_false(v->b);
	assert_null(get(&hs, "enduser.pseudo.id"));
	assert_int_equal(hs.st.jwt, 1);
	ws_attrs_clear(&hs.a);

	/* a numeric sub, scp array, client_id; the user claim is config */
	hs_init(&hs);
	hs_add(&hs, "Authorization", "bearer " JWT_HDR "." JWT_CLAIMS2 ".x");
	apply(&cfg, &hs);
	assert_string_equal(get(&hs, "enduser.id"), "7");
	assert_string_equal(get(&hs, "wirespan.auth.client_id"), "svc-7");
	assert_string_equal(get(&hs, "user.roles"), "a,b");
	ws_attrs_clear(&hs.a);
	cfg.jwt_user_claim = "tenant";
	hs_init(&hs);
	hs_add(&hs, "Authorization", "Bearer " JWT_HDR "." JWT_CLAIMS2 ".x");
	apply(&cfg, &hs);
	assert_string_equal(get(&hs, "enduser.id"), "acme");
	ws_attrs_clear(&hs.a);
}

static void bad_jwt_is_opaque(void **state)
{
	struct ws_http_auth_cfg cfg;
	struct hset hs;

	cfg_with_secret(&cfg);
	hs_init(&hs);
	/* three parts, but the claims are not JSON */
	hs_add(&hs, "Authorization", "Bearer eyJhbGciOi.bm90IGpzb24.sig");
	apply(&cfg, &hs);
	assert_int_equal(hs.st.bad_jwt, 1);
	assert_null(get(&hs, "enduser.id"));
	assert_non_null(get(&hs, "enduser.pseudo.id"));
	assert_string_equal(get(&hs, "wirespan.auth.scheme"), "bearer");
	ws_attrs_clear(&hs.a);
}

static void api_keys_hmac(void **state)
{
	struct ws_http_auth_cfg cfg;
	struct hset hs;

	cfg_with_secret(&cfg);
	/* HMAC-SHA256(key "0123456789abcdef0123", "my-api-key-123"), 16
	 * bytes: computed with `openssl dgst -sha256 -mac HMAC` */
	hs_init(&hs);
	hs_add(&hs, "X-Api-Key", "my-api-key-123");
	apply(&cfg, &hs);
	assert_string_equal(get(&hs, "enduser.pseudo.id"),
			    "743613b07d6382f50d1931e9240f5a79");
	assert_string_equal(get(&hs, "wirespan.auth.key_hash"), "hmac-sha256");
	ws_attrs_clear(&hs.a);
	/* the same key as a bearer token, and as Tyk's bare header */
	hs_init(&hs);
	hs_add(&hs, "Authorization", "Bearer my-api-key-123");
	apply(&cfg, &hs);
	assert_string_equal(get(&hs, "enduser.pseudo.id"),
			    "743613b07d6382f50d1931e9240f5a79");
	ws_attrs_clear(&hs.a);
	hs_init(&hs);
	hs_add(&hs, "Authorization", "my-api-key-123");
	apply(&cfg, &hs);
	assert_string_equal(get(&hs, "enduser.pseudo.id"),
			    "743613b07d6382f50d1931e9240f5a79");
	assert_string_equal(get(&hs, "wirespan.auth.scheme"), "api_key");
	ws_attrs_clear(&hs.a);
	/* a configured header name */
	assert_int_equal(ws_http_auth_add_key_header(&cfg, "X-Gateway-Key"), 0);
	assert_int_equal(ws_http_auth_add_key_header(&cfg, "bad name"),
			 -EINVAL);
	hs_init(&hs);
	hs_add(&hs, "x-gateway-key", "other");
	apply(&cfg, &hs);
	assert_non_null(get(&hs, "enduser.pseudo.id"));
	assert_string_not_equal(get(&hs, "enduser.pseudo.id"),
				"743613b07d6382f50d1931e9240f5a79");
	assert_int_equal(hs.st.api_keys, 1);
	ws_attrs_clear(&hs.a);
	/* no secret: no id, counted */
	cfg.secret_len = 0;
	hs_init(&hs);
	hs_add(&hs, "X-API-Key", "k");
	apply(&cfg, &hs);
	assert_null(get(&hs, "enduser.pseudo.id"));
	assert_int_equal(hs.st.no_secret, 1);
	ws_attrs_clear(&hs.a);
}

static void murmur3_vectors(void **state)
{
	/* MurmurHash3_x86_32 reference vectors (SMHasher's algorithm) */
	assert_int_equal(ws_murmur3_32("", 0, 0), 0);
	assert_int_equal(ws_murmur3_32("", 0, 1), 0x514E28B7);
	assert_int_equal(ws_murmur3_32("", 0, 0xffffffff), 0x81F16F39);
	assert_int_equal(ws_murmur3_32("\0\0\0\0", 4, 0), 0x2362F9DE);
	assert_int_equal(ws_murmur3_32("aaaa", 4, 0x9747b28c), 0x5A97808A);
	assert_int_equal(ws_murmur3_32("aaa", 3, 0x9747b28c), 0x283E0130);
	assert_int_equal(ws_murmur3_32("aa", 2, 0x9747b28c), 0x5D211726);
	assert_int_equal(ws_murmur3_32("a", 1, 0x9747b28c), 0x7FA09EA6);
	assert_int_equal(ws_murmur3_32("abcd", 4, 0x9747b28c), 0xF0478627);
	assert_int_equal(ws_murmur3_32("abc", 3, 0x9747b28c), 0xC84A62DD);
	assert_int_equal(ws_murmur3_32("Hello, world!", 13, 0x9747b28c),
			 0x24884CBA);
	assert_int_equal(
		ws_murmur3_32("The quick brown fox jumps over the lazy dog", 43,
			      0x9747b28c),
		0x2FA826CD);
}

static void murmur3_tyk_mode(void **state)
{
	struct ws_http_auth_cfg cfg;
	struct hset hs;
	char id[65];

	ws_http_auth_cfg_init(&cfg);
	cfg.key_hash = WS_KEY_HASH_MURMUR3;
	/* Tyk: hex of murmur3.New32().Sum(nil), big-endian, seed 0 */
	assert_int_equal(ws_http_auth_key_id(&cfg, "aaaa", 4, id, sizeof(id)),
			 0);
	snprintf(id + 20, 20, "%08x", ws_murmur3_32("aaaa", 4, 0));
	assert_string_equal(id, id + 20);
	hs_init(&hs);
	hs_add(&hs, "X-API-Key", "aaaa");
	apply(&cfg, &hs);
	assert_string_equal(get(&hs, "enduser.pseudo.id"), id);
	assert_int_equal(strlen(id), 8);
	assert_string_equal(get(&hs, "wirespan.auth.key_hash"), "murmur3");
	ws_attrs_clear(&hs.a);
}

static void basic_user_only(void **state)
{
	struct ws_http_auth_cfg cfg;
	struct hset hs;

	ws_http_auth_cfg_init(&cfg);
	hs_init(&hs);
	/* alice:s3cret:with:colons */
	hs_add(&hs, "Authorization", "Basic YWxpY2U6czNjcmV0OndpdGg6Y29sb25z");
	apply(&cfg, &hs);
	assert_string_equal(get(&hs, "enduser.id"), "alice");
	assert_string_equal(get(&hs, "wirespan.auth.scheme"), "basic");
	assert_int_equal(hs.st.basic, 1);
	ws_attrs_clear(&hs.a);
	/* unpadded "bob:pw" and garbage */
	hs_init(&hs);
	hs_add(&hs, "Authorization", "Basic Ym9iOnB3");
	apply(&cfg, &hs);
	assert_string_equal(get(&hs, "enduser.id"), "bob");
	ws_attrs_clear(&hs.a);
	hs_init(&hs);
	hs_add(&hs, "Authorization", "Basic !!!notbase64");
	apply(&cfg, &hs);
	assert_null(get(&hs, "enduser.id"));
	assert_int_equal(hs.st.bad_basic, 1);
	ws_attrs_clear(&hs.a);
	/* other schemes: the name only */
	hs_init(&hs);
	hs_add(&hs, "Authorization", "Digest username=\"x\", response=\"y\"");
	apply(&cfg, &hs);
	assert_string_equal(get(&hs, "wirespan.auth.scheme"), "digest");
	assert_null(get(&hs, "enduser.id"));
	assert_int_equal(hs.a.n, 1);
	ws_attrs_clear(&hs.a);
}

static void secret_header_names(void **state)
{
	static const char *const secret[] = {
		"Authorization",   "proxy-authorization", "Cookie",
		"Set-Cookie",	   "X-API-Key",		  "X-Auth-Token",
		"X-CSRF-Token",	   "X-Session-Id",	  "apikey",
		"X-Client-Secret",
	};
	static const char *const fine[] = {"X-Tenant", "Host", "Accept",
					   "X-Request-Id"};
	struct ws_http_auth_cfg cfg;
	size_t i;

	ws_http_auth_cfg_init(&cfg);
	assert_int_equal(ws_http_auth_add_key_header(&cfg, "X-Partner"), 0);
	for (i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
		assert_true(ws_http_header_is_secret(&cfg, secret[i],
						     strlen(secret[i])));
	for (i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
		assert_false(ws_http_header_is_secret(&cfg, fine[i],
						      strlen(fine[i])));
	assert_true(ws_http_header_is_secret(&cfg, "x-partner", 9));
}

static void secret_file(void **state)
{
	char dir[] = "/tmp/ws-auth-XXXXXX", path[256], err[256];
	struct ws_http_auth_cfg a, b;
	char id1[65], id2[65];
	struct stat st;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sub/key.secret", dir);
	ws_http_auth_cfg_init(&a);
	ws_http_auth_cfg_init(&b);
	/* missing and not to be created: a clear error */
	assert_int_equal(
		ws_http_auth_load_secret(&a, path, false, err, sizeof(err)),
		-ENOENT);
	assert_non_null(strstr(err, path));
	/* created: 0600, 64 hex digits; a second load reads the same */
	assert_int_equal(
		ws_http_auth_load_secret(&a, path, true, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 65);
	assert_int_equal(a.secret_len, 64);
	assert_int_equal(
		ws_http_auth_load_secret(&b, path, true, err, sizeof(err)), 0);
	assert_memory_equal(a.secret, b.secret, 64);
	assert_int_equal(ws_http_auth_key_id(&a, "k", 1, id1, sizeof(id1)), 0);
	assert_int_equal(ws_http_auth_key_id(&b, "k", 1, id2, sizeof(id2)), 0);
	assert_string_equal(id1, id2);
	assert_int_equal(strlen(id1), 2 * WS_AUTH_PSEUDO_ID_BYTES);
	/* readable by others: refused */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(
		ws_http_auth_load_secret(&b, path, false, err, sizeof(err)),
		-EPERM);
	assert_non_null(strstr(err, "chmod 600"));
	/* too short: refused */
	unlink(path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("short\n", f);
	fclose(f);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(
		ws_http_auth_load_secret(&b, path, false, err, sizeof(err)),
		-EINVAL);
	unlink(path);
	snprintf(path, sizeof(path), "%s/sub", dir);
	rmdir(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(jwt_claims),
		cmocka_unit_test(bad_jwt_is_opaque),
		cmocka_unit_test(api_keys_hmac),
		cmocka_unit_test(murmur3_vectors),
		cmocka_unit_test(murmur3_tyk_mode),
		cmocka_unit_test(basic_user_only),
		cmocka_unit_test(secret_header_names),
		cmocka_unit_test(secret_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
