/* SPDX-License-Identifier: Apache-2.0 */
/* NATS connections for wirespan's commands: options, auth, TLS, events. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "jsonw.h"
#include "log.h"
#include "natsconn.h"

#define MAX_URLS 16

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- NKeys: base32 (RFC 4648, unpadded) with a CRC-16/XMODEM trailer ---- */

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static uint16_t crc16_xmodem(const uint8_t *p, size_t n)
{
	uint16_t crc = 0;
	size_t i;
	int b;

	for (i = 0; i < n; i++) {
		crc ^= (uint16_t)(p[i] << 8);
		for (b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021)
					     : (uint16_t)(crc << 1);
	}
	return crc;
}

/* Decode up to max bytes; returns the byte count or -1. */
static int b32_decode(const char *s, size_t len, uint8_t *out, size_t max)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		const char *p = strchr(b32, s[i]);

		if (!s[i] || !p)
			return -1;
		acc = (acc << 5) | (uint32_t)(p - b32);
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			if (n == max)
				return -1;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	return (int)n;
}

static size_t b32_encode(const uint8_t *in, size_t n, char *out)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			out[o++] = b32[(acc >> bits) & 31];
		}
	}
	if (bits)
		out[o++] = b32[(acc << (5 - bits)) & 31];
	out[o] = 0;
	return o;
}

#define NKEY_PREFIX_SEED (18 << 3) /* 'S' */
#define NKEY_PREFIX_USER (20 << 3) /* 'U' */

int ws_nkey_public_from_seed(const char *seed, size_t len, char pub[57])
{
	uint8_t raw[64], key[35], pk[32];
	size_t pklen = sizeof(pk);
	EVP_PKEY *k;
	uint16_t crc;
	int n, type;

	while (len && (seed[len - 1] == '\n' || seed[len - 1] == '\r' ||
		       seed[len - 1] == ' '))
		len--;
	n = b32_decode(seed, len, raw, sizeof(raw));
	if (n != 36)
		return -1;
	crc = (uint16_t)(raw[34] | raw[35] << 8);
	if (crc16_xmodem(raw, 34) != crc || (raw[0] & 0xf8) != NKEY_PREFIX_SEED)
		return -1;
	type = ((raw[0] & 7) << 5) | ((raw[1] & 0xf8) >> 3);
	if (type != NKEY_PREFIX_USER)
		return -1;
	k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw + 2, 32);
	if (!k)
		return -1;
	n = EVP_PKEY_get_raw_public_key(k, pk, &pklen);
	EVP_PKEY_free(k);
	if (n != 1 || pklen != 32)
		return -1;
	key[0] = NKEY_PREFIX_USER;
	memcpy(key + 1, pk, 32);
	crc = crc16_xmodem(key, 33);
	key[33] = (uint8_t)crc;
	key[34] = (uint8_t)(crc >> 8);
	b32_encode(key, 35, pub);
	return 0;
}

/* The first "SU..." token of a seed file (nsc files wrap it in text). */
static int read_seed(const char *path, char *seed, size_t cap)
{
	char buf[4096], *p, *e;
	size_t n;
	FILE *f = fopen(path, "r");

	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strstr(buf, "SU");
	if (!p)
		return -EINVAL;
	for (e = p; *e && strchr(b32, *e); e++)
		;
	if ((size_t)(e - p) >= cap)
		return -EINVAL;
	memcpy(seed, p, (size_t)(e - p));
	seed[e - p] = 0;
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

static int readable(const char *key, const char *path, char *err, size_t errlen)
{
	if (path && access(path, R_OK))
		return fail(err, errlen, "%s: cannot read %s: %s", key, path,
			    strerror(errno));
	return 0;
}

int ws_natsconn_check(const struct ws_natsconn_cfg *cfg, char *err,
		      size_t errlen)
{
	char seed[128], pub[57];
	int auth = 0, rc;

	if (cfg->urls && !*cfg->urls)
		return fail(err, errlen, "nats url: empty");
	if (readable("creds file", cfg->creds_file, err, errlen) ||
	    readable("nkey seed file", cfg->nkey_seed_file, err, errlen) ||
	    readable("tls ca", cfg->tls_ca, err, errlen) ||
	    readable("tls cert", cfg->tls_cert, err, errlen) ||
	    readable("tls key", cfg->tls_key, err, errlen))
		return -1;
	if (!!cfg->tls_cert != !!cfg->tls_key)
		return fail(err, errlen,
			    "tls: a client certificate needs both cert and "
			    "key");
	auth += cfg->user != NULL;
	auth += cfg->token != NULL;
	auth += cfg->nkey_seed_file != NULL;
	auth += cfg->creds_file != NULL;
	if (auth > 1)
		return fail(err, errlen,
			    "nats auth: choose one of user/password, token, "
			    "nkey seed file, creds file");
	if (cfg->nkey_seed_file) {
		rc = read_seed(cfg->nkey_seed_file, seed, sizeof(seed));
		if (!rc && ws_nkey_public_from_seed(seed, strlen(seed), pub))
			rc = -EINVAL;
		explicit_bzero(seed, sizeof(seed));
		if (rc)
			return fail(err, errlen,
				    "nkey seed file: %s holds no valid user "
				    "seed (SU...)",
				    cfg->nkey_seed_file);
	}
	return 0;
}

void ws_natsconn_stats_json(struct ws_jsonw *w,
			    const struct ws_natsconn_stats *st)
{
	jw_u64(w, "disconnects", atomic_load(&st->disconnects));
	jw_u64(w, "reconnects", atomic_load(&st->reconnects));
	jw_u64(w, "async_errors", atomic_load(&st->async_errors));
	jw_u64(w, "not_permitted", atomic_load(&st->not_permitted));
	jw_u64(w, "slow_consumer", atomic_load(&st->slow_consumer));
}

/* ---- connection events ---- */

static void on_disconnected(natsConnection *nc, void *closure)
{
	struct ws_natsconn_stats *st = closure;

	atomic_store(&st->connected, false);
	if (natsConnection_IsClosed(nc))
		return; /* our own close, not an outage */
	atomic_fetch_add(&st->disconnects, 1);
	atomic_store(&st->connected, false);
	if (!natsConnection_IsClosed(nc))
		ws_warn("nats: disconnected");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	struct ws_natsconn_stats *st = closure;
	char url[256] = "";

	atomic_fetch_add(&st->reconnects, 1);
	atomic_store(&st->connected, true);
	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	ws_warn("nats: reconnected to %s", url);
}

static void on_connected(natsConnection *nc, void *closure)
{
	struct ws_natsconn_stats *st = closure;

	atomic_store(&st->connected, true);
	ws_info("nats: connected");
}

static void on_closed(natsConnection *nc, void *closure)
{
	struct ws_natsconn_stats *st = closure;

	atomic_fetch_add(&st->closed, 1);
	atomic_store(&st->connected, false);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus s,
		     void *closure)
{
	struct ws_natsconn_stats *st = closure;
	uint64_t n = atomic_fetch_add(&st->async_errors, 1);
	const char *last = NULL;

	if (s == NATS_NOT_PERMITTED)
		atomic_fetch_add(&st->not_permitted, 1);
	if (s == NATS_SLOW_CONSUMER)
		atomic_fetch_add(&st->slow_consumer, 1);
	/* log the first ten, then every 1000th: counted either way */
	if (n < 10 || n % 1000 == 0) {
		natsConnection_GetLastError(nc, &last);
		ws_warn("nats: asynchronous error: %s%s%s (%llu so far)",
			natsStatus_GetText(s), last ? ": " : "",
			last ? last : "", (unsigned long long)n + 1);
	}
}

static int set_servers(natsOptions *o, const char *urls, char *err,
		       size_t errlen)
{
	const char *v[MAX_URLS];
	char *copy = strdup(urls ? urls : WS_NATS_DEFAULT_URL), *tok, *save;
	int n = 0, rc = 0;

	if (!copy)
		return fail(err, errlen, "out of memory");
	for (tok = strtok_r(copy, ", ", &save); tok && n < MAX_URLS;
	     tok = strtok_r(NULL, ", ", &save))
		v[n++] = tok;
	if (!n || tok)
		rc = fail(err, errlen,
			  "nats url: give 1 to %d comma-separated URLs",
			  MAX_URLS);
	else if (natsOptions_SetServers(o, v, n) != NATS_OK)
		rc = fail(err, errlen, "nats url: %s", nats_GetLastError(NULL));
	free(copy);
	return rc;
}

static int set_auth(natsOptions *o, const struct ws_natsconn_cfg *cfg,
		    char *err, size_t errlen)
{
	char seed[128], pub[57];
	natsStatus s = NATS_OK;

	if (cfg->user)
		s = natsOptions_SetUserInfo(o, cfg->user, cfg->password);
	else if (cfg->token)
		s = natsOptions_SetToken(o, cfg->token);
	else if (cfg->creds_file)
		s = natsOptions_SetUserCredentialsFromFiles(o, cfg->creds_file,
							    NULL);
	else if (cfg->nkey_seed_file) {
		if (read_seed(cfg->nkey_seed_file, seed, sizeof(seed)) ||
		    ws_nkey_public_from_seed(seed, strlen(seed), pub)) {
			explicit_bzero(seed, sizeof(seed));
			return fail(err, errlen,
				    "nkey seed file: no user seed");
		}
		explicit_bzero(seed, sizeof(seed));
		/* nats.c reads the seed file again to sign each nonce */
		s = natsOptions_SetNKeyFromSeed(o, pub, cfg->nkey_seed_file);
	}
	if (s != NATS_OK)
		return fail(err, errlen, "nats auth: %s",
			    nats_GetLastError(NULL));
	return 0;
}

static int set_tls(natsOptions *o, const struct ws_natsconn_cfg *cfg, char *err,
		   size_t errlen)
{
	if (!cfg->tls && !cfg->tls_ca && !cfg->tls_cert)
		return 0;
	if (natsOptions_SetSecure(o, true) != NATS_OK ||
	    (cfg->tls_ca && natsOptions_LoadCATrustedCertificates(
				    o, cfg->tls_ca) != NATS_OK) ||
	    (cfg->tls_cert &&
	     natsOptions_LoadCertificatesChain(o, cfg->tls_cert,
					       cfg->tls_key) != NATS_OK))
		return fail(err, errlen, "nats tls: %s",
			    nats_GetLastError(NULL));
	return 0;
}

int ws_natsconn_open(const struct ws_natsconn_cfg *cfg,
		     struct ws_natsconn_stats *stats, natsConnection **out,
		     char *err, size_t errlen)
{
	static struct ws_natsconn_stats dummy;
	struct ws_natsconn_stats *st = stats ? stats : &dummy;
	natsOptions *o = NULL;
	natsStatus s;
	int rc = -1;

	*out = NULL;
	if (ws_natsconn_check(cfg, err, errlen))
		return -1;
	if (natsOptions_Create(&o) != NATS_OK) {
		fail(err, errlen, "nats: %s", nats_GetLastError(NULL));
		return -1;
	}
	if (set_servers(o, cfg->urls, err, errlen) ||
	    set_auth(o, cfg, err, errlen) || set_tls(o, cfg, err, errlen))
		goto out;
	s = natsOptions_SetName(o, cfg->name ? cfg->name : "wirespan");
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(
			o,
			cfg->reconnect_wait_ms ? cfg->reconnect_wait_ms : 250);
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(
			o, cfg->ping_interval_ms ? cfg->ping_interval_ms
						 : WS_NATS_PING_INTERVAL_MS);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(
			o, cfg->max_pings_out ? cfg->max_pings_out
					      : WS_NATS_MAX_PINGS_OUT);
	if (s == NATS_OK)
		s = natsOptions_SetWriteDeadline(
			o, cfg->write_deadline_ms ? cfg->write_deadline_ms
						  : WS_NATS_WRITE_DEADLINE_MS);
	if (s == NATS_OK && cfg->reconnect_buf_bytes)
		s = natsOptions_SetReconnectBufSize(o,
						    cfg->reconnect_buf_bytes);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(o, on_disconnected, st);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(o, on_reconnected, st);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(o, on_closed, st);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(o, on_error, st);
	if (s == NATS_OK && cfg->retry_on_failed_connect)
		s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected,
							st);
	if (s != NATS_OK) {
		fail(err, errlen, "nats options: %s", nats_GetLastError(NULL));
		goto out;
	}
	s = natsConnection_Connect(out, o);
	if (s == NATS_OK) {
		atomic_store(&st->connected, true);
		rc = 0;
	} else if (s == NATS_NOT_YET_CONNECTED) {
		rc = 0; /* retrying in the background */
	} else {
		fail(err, errlen, "nats connect to %s: %s",
		     cfg->urls ? cfg->urls : WS_NATS_DEFAULT_URL,
		     nats_GetLastError(NULL) ? nats_GetLastError(NULL)
					     : natsStatus_GetText(s));
		*out = NULL;
	}
out:
	natsOptions_Destroy(o);
	return rc;
}
