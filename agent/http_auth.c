/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Caller identity from HTTP headers. See http_auth.h for what is derived and
 * docs/ARCHITECTURE.md ("Caller identity") for the secret rules.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "http_auth.h"
#include "nats_spans.h" /* ws_jwt_claims */

/* Longest credential looked at; longer ones are still hashed whole. */
#define MAX_BASIC 1024
#define MAX_ROLES_TEXT 1024

void ws_http_auth_cfg_init(struct ws_http_auth_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->jwt_user_claim = "sub";
	cfg->api_key_headers[0] = "X-API-Key";
	cfg->n_api_key_headers = 1;
	cfg->key_hash = WS_KEY_HASH_HMAC;
}

static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c);
}

static bool is_token(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if (!is_tchar(*s))
			return false;
	return true;
}

int ws_http_auth_add_key_header(struct ws_http_auth_cfg *cfg, const char *name)
{
	unsigned i;

	if (!is_token(name))
		return -EINVAL;
	for (i = 0; i < cfg->n_api_key_headers; i++)
		if (!strcasecmp(cfg->api_key_headers[i], name))
			return 0;
	if (cfg->n_api_key_headers >= WS_AUTH_MAX_HEADERS)
		return -ENOSPC;
	cfg->api_key_headers[cfg->n_api_key_headers++] = name;
	return 0;
}

/* ---- the secret file ---------------------------------------------------- */

static int secret_create(const char *path, char *err, size_t errcap)
{
	static const char hex[] = "0123456789abcdef";
	char dir[PATH_MAX], tmp[PATH_MAX + 16], text[65];
	uint8_t key[32];
	int fd, i, rc = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	if (mkdir(dirname(dir), 0700) && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errcap, "cannot create the directory of %s: %s",
			 path, strerror(errno));
		return rc;
	}
	if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
		snprintf(err, errcap, "getrandom failed: %s", strerror(errno));
		return -EIO;
	}
	for (i = 0; i < 32; i++) {
		text[2 * i] = hex[key[i] >> 4];
		text[2 * i + 1] = hex[key[i] & 15];
	}
	text[64] = '\n';
	OPENSSL_cleanse(key, sizeof(key));
	/* Written aside and linked in, so two agents starting at once agree
	 * on one secret and nobody reads a half-written file. */
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errcap, "cannot create %s: %s", tmp,
			 strerror(errno));
		return rc;
	}
	if (write(fd, text, sizeof(text)) != (ssize_t)sizeof(text) || fsync(fd))
		rc = errno ? -errno : -EIO;
	close(fd);
	OPENSSL_cleanse(text, sizeof(text));
	if (!rc && link(tmp, path) && errno != EEXIST)
		rc = -errno;
	unlink(tmp);
	if (rc)
		snprintf(err, errcap, "cannot write %s: %s", path,
			 strerror(-rc));
	return rc;
}

int ws_http_auth_load_secret(struct ws_http_auth_cfg *cfg, const char *path,
			     bool create, char *err, size_t errcap)
{
	uint8_t buf[WS_AUTH_SECRET_MAX + 1];
	struct stat st;
	ssize_t n;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT && create) {
		rc = secret_create(path, err, errcap);
		if (rc)
			return rc;
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errcap, "cannot open the key-hash secret %s: %s",
			 path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(err, errcap, "%s is not a regular file", path);
		return -EINVAL;
	}
	if (st.st_mode & 077) {
		close(fd);
		snprintf(err, errcap,
			 "%s is readable or writable by group or others "
			 "(mode %03o): chmod 600 it",
			 path, (unsigned)(st.st_mode & 0777));
		return -EPERM;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0) {
		rc = -errno;
		snprintf(err, errcap, "cannot read %s: %s", path,
			 strerror(errno));
		return rc;
	}
	if (n > WS_AUTH_SECRET_MAX)
		n = WS_AUTH_SECRET_MAX;
	while (n > 0 && strchr(" \t\r\n", buf[n - 1]))
		n--;
	if (n < WS_AUTH_SECRET_MIN) {
		OPENSSL_cleanse(buf, sizeof(buf));
		snprintf(err, errcap,
			 "%s holds %zd bytes; the key-hash secret needs at "
			 "least %d",
			 path, n, WS_AUTH_SECRET_MIN);
		return -EINVAL;
	}
	memcpy(cfg->secret, buf, (size_t)n);
	cfg->secret_len = (size_t)n;
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

/* ---- hashes ------------------------------------------------------------- */

static uint32_t rotl32(uint32_t x, int r)
{
	return x << r | x >> (32 - r);
}

uint32_t ws_murmur3_32(const void *data, size_t len, uint32_t seed)
{
	const uint8_t *p = data;
	const uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
	uint32_t h = seed, k;
	size_t i, nblocks = len / 4;

	for (i = 0; i < nblocks; i++) {
		k = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
		    (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
		k *= c1;
		k = rotl32(k, 15);
		k *= c2;
		h ^= k;
		h = rotl32(h, 13);
		h = h * 5 + 0xe6546b64;
	}
	k = 0;
	p += nblocks * 4;
	switch (len & 3) {
	case 3:
		k ^= (uint32_t)p[2] << 16;
		/* fall through */
	case 2:
		k ^= (uint32_t)p[1] << 8;
		/* fall through */
	case 1:
		k ^= p[0];
		k *= c1;
		k = rotl32(k, 15);
		k *= c2;
		h ^= k;
	}
	h ^= (uint32_t)len;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

int ws_http_auth_key_id(const struct ws_http_auth_cfg *cfg, const char *key,
			size_t len, char *out, size_t cap)
{
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned mac_len = 0;

	if (cap < 2 * WS_AUTH_PSEUDO_ID_BYTES + 1)
		return -EINVAL;
	if (cfg->key_hash == WS_KEY_HASH_MURMUR3) {
		snprintf(out, cap, "%08x", ws_murmur3_32(key, len, 0));
		return 0;
	}
	if (!cfg->secret_len)
		return -ENOKEY;
	if (!HMAC(EVP_sha256(), cfg->secret, (int)cfg->secret_len,
		  (const unsigned char *)key, len, mac, &mac_len) ||
	    mac_len < WS_AUTH_PSEUDO_ID_BYTES)
		return -EIO;
	ws_id_hex(mac, WS_AUTH_PSEUDO_ID_BYTES, out);
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}

/* ---- header helpers ----------------------------------------------------- */

/* "Bearer" etc.: the scheme token of an Authorization value and the rest. */
static struct ws_http_str auth_scheme(struct ws_http_str v,
				      struct ws_http_str *rest)
{
	struct ws_http_str s = {v.ptr, 0};

	while (s.len < v.len && v.ptr[s.len] != ' ' && v.ptr[s.len] != '\t')
		s.len++;
	rest->ptr = v.ptr + s.len;
	rest->len = v.len - s.len;
	while (rest->len && (*rest->ptr == ' ' || *rest->ptr == '\t')) {
		rest->ptr++;
		rest->len--;
	}
	return s;
}

static bool str_ieq(struct ws_http_str s, const char *lit)
{
	return s.len == strlen(lit) && !strncasecmp(s.ptr, lit, s.len);
}

static bool looks_like_jwt(struct ws_http_str v)
{
	return ws_redact_is_jwt(v.ptr, v.len);
}

/* A claim as text: strings as they are, numbers and booleans printed. */
static const char *claim_text(json_object *o, const char *key,
			      struct ws_http_auth_stats *st)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return NULL;
	switch (json_object_get_type(v)) {
	case json_type_string:
	case json_type_int:
	case json_type_double:
	case json_type_boolean:
		return json_object_get_string(v);
	default:
		st->claims_cut++;
		return NULL;
	}
}

/* Append the strings of v (a string split at blanks, or an array of
 * strings) to buf as a comma-separated list. */
static void append_list(json_object *v, char *buf, size_t cap, unsigned *n,
			struct ws_http_auth_stats *st)
{
	size_t i, len;

	if (json_object_is_type(v, json_type_array)) {
		len = json_object_array_length(v);
		for (i = 0; i < len; i++)
			append_list(json_object_array_get_idx(v, i), buf, cap,
				    n, st);
		return;
	}
	if (!json_object_is_type(v, json_type_string))
		return;
	{
		const char *s = json_object_get_string(v);

		while (*s) {
			size_t w = strcspn(s, " \t,"), used = strlen(buf);

			if (w) {
				if (*n >= WS_AUTH_MAX_ROLES ||
				    used + w + 2 > cap) {
					st->roles_cut++;
					return;
				}
				snprintf(buf + used, cap - used, "%s%.*s",
					 used ? "," : "", (int)w, s);
				(*n)++;
			}
			s += w;
			s += strspn(s, " \t,");
		}
	}
}

static void put_claims(const struct ws_http_auth_cfg *cfg, json_object *o,
		       struct ws_attrs *a, struct ws_http_auth_stats *st)
{
	static const char *const roles[] = {"scope", "scp", "roles"};
	static const struct {
		const char *claim, *key;
	} plain[] = {
		{"iss", "wirespan.auth.iss"},
		{"azp", "wirespan.auth.azp"},
		{"client_id", "wirespan.auth.client_id"},
	};
	char list[MAX_ROLES_TEXT] = "";
	unsigned n = 0;
	json_object *v;
	const char *s;
	size_t i;

	s = claim_text(o, cfg->jwt_user_claim, st);
	if (s)
		ws_attrs_cstr(a, "enduser.id", s);
	for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		s = claim_text(o, plain[i].claim, st);
		if (s)
			ws_attrs_cstr(a, plain[i].key, s);
	}
	if (json_object_object_get_ex(o, "aud", &v) && v) {
		append_list(v, list, sizeof(list), &n, st);
		if (*list)
			ws_attrs_cstr(a, "wirespan.auth.aud", list);
	}
	list[0] = '\0';
	n = 0;
	for (i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (json_object_object_get_ex(o, roles[i], &v) && v)
			append_list(v, list, sizeof(list), &n, st);
	if (*list)
		ws_attrs_cstr(a, "user.roles", list);
}

static void put_key_id(const struct ws_http_auth_cfg *cfg,
		       struct ws_http_str key, struct ws_attrs *a,
		       struct ws_http_auth_stats *st)
{
	char id[2 * WS_AUTH_PSEUDO_ID_BYTES + 1];

	if (ws_http_auth_key_id(cfg, key.ptr, key.len, id, sizeof(id))) {
		st->no_secret++;
		return;
	}
	st->api_keys++;
	ws_attrs_cstr(a, "enduser.pseudo.id", id);
	ws_attrs_cstr(a, "wirespan.auth.key_hash",
		      cfg->key_hash == WS_KEY_HASH_MURMUR3 ? "murmur3"
							   : "hmac-sha256");
}

static void put_basic(struct ws_http_str cred, struct ws_attrs *a,
		      struct ws_http_auth_stats *st)
{
	unsigned char in[MAX_BASIC], out[MAX_BASIC];
	unsigned char *colon = NULL;
	size_t len = cred.len, pad;
	int n;

	while (len && cred.ptr[len - 1] == '=')
		len--;
	/* EVP_DecodeBlock wants whole quads: pad what was left off. */
	pad = (4 - len % 4) % 4;
	if (!len || pad == 3 || len + pad > sizeof(in)) {
		st->bad_basic++;
		return;
	}
	memcpy(in, cred.ptr, len);
	memset(in + len, '=', pad);
	n = EVP_DecodeBlock(out, in, (int)(len + pad));
	OPENSSL_cleanse(in, sizeof(in));
	if (n > (int)pad) {
		n -= (int)pad; /* it counts the padding as zero bytes */
		colon = memchr(out, ':', (size_t)n);
	}
	if (!colon) {
		st->bad_basic++;
	} else {
		st->basic++;
		ws_attrs_str(a, "enduser.id", (const char *)out,
			     (size_t)(colon - out));
	}
	OPENSSL_cleanse(out, sizeof(out));
}

/* wirespan.auth.verified, and why not when a key set was asked. */
static void put_verified(const struct ws_http_auth_cfg *cfg,
			 struct ws_http_str tok, uint64_t now_ns,
			 struct ws_attrs *a)
{
	enum ws_jwt_verdict v;

	if (!cfg->jwt_verifier) {
		ws_attrs_bool(a, "wirespan.auth.verified", false);
		return;
	}
	v = ws_jwt_verifier_check(cfg->jwt_verifier, tok.ptr, tok.len,
				  (int64_t)(now_ns / 1000000000ull));
	ws_attrs_bool(a, "wirespan.auth.verified", v == WS_JWT_VERIFIED);
	if (v != WS_JWT_VERIFIED)
		ws_attrs_cstr(a, "wirespan.auth.verify_error",
			      ws_jwt_verdict_name(v));
}

static bool apply_authorization(const struct ws_http_auth_cfg *cfg,
				struct ws_http_str v, uint64_t now_ns,
				struct ws_attrs *a,
				struct ws_http_auth_stats *st)
{
	struct ws_http_str rest, scheme = auth_scheme(v, &rest);
	json_object *o;

	if (str_ieq(scheme, "Bearer") && rest.len) {
		if (looks_like_jwt(rest)) {
			o = ws_jwt_claims(rest.ptr, rest.len);
			if (o) {
				st->jwt++;
				ws_attrs_cstr(a, "wirespan.auth.scheme",
					      "bearer_jwt");
				put_verified(cfg, rest, now_ns, a);
				put_claims(cfg, o, a, st);
				json_object_put(o);
				return true;
			}
			st->bad_jwt++;
		}
		ws_attrs_cstr(a, "wirespan.auth.scheme", "bearer");
		put_key_id(cfg, rest, a, st);
		return true;
	}
	if (str_ieq(scheme, "Basic") && rest.len) {
		ws_attrs_cstr(a, "wirespan.auth.scheme", "basic");
		put_basic(rest, a, st);
		return true;
	}
	if (!rest.len && scheme.len) {
		/* A bare key (Tyk's default auth header form). */
		ws_attrs_cstr(a, "wirespan.auth.scheme", "api_key");
		put_key_id(cfg, scheme, a, st);
		return true;
	}
	/* Digest, Negotiate, AWS4-HMAC-SHA256, ...: the scheme name only,
	 * when it is a short token (a long one could be a credential). */
	if (scheme.len && scheme.len <= 32) {
		char name[33];
		size_t i;

		for (i = 0; i < scheme.len; i++) {
			if (!is_tchar(scheme.ptr[i]))
				return false;
			name[i] = (char)(scheme.ptr[i] | 0x20);
		}
		name[i] = '\0';
		st->other++;
		ws_attrs_cstr(a, "wirespan.auth.scheme", name);
		return true;
	}
	return false;
}

bool ws_http_auth_apply(const struct ws_http_auth_cfg *cfg,
			const struct ws_http_headers *h, uint64_t now_ns,
			struct ws_attrs *a, struct ws_http_auth_stats *st)
{
	const struct ws_http_header *hd;
	unsigned i;

	hd = ws_http_header_find(h, "Authorization", NULL);
	if (hd && hd->value.len &&
	    apply_authorization(cfg, hd->value, now_ns, a, st))
		return true;
	for (i = 0; i < cfg->n_api_key_headers; i++) {
		hd = ws_http_header_find(h, cfg->api_key_headers[i], NULL);
		if (hd && hd->value.len) {
			ws_attrs_cstr(a, "wirespan.auth.scheme", "api_key");
			put_key_id(cfg, hd->value, a, st);
			return true;
		}
	}
	return false;
}

bool ws_http_header_is_secret(const struct ws_http_auth_cfg *cfg,
			      const char *name, size_t len)
{
	unsigned i;

	if (ws_redact_header(cfg ? &cfg->redact : NULL, name, len))
		return true;
	for (i = 0; cfg && i < cfg->n_api_key_headers; i++)
		if (len == strlen(cfg->api_key_headers[i]) &&
		    !strncasecmp(name, cfg->api_key_headers[i], len))
			return true;
	return false;
}
