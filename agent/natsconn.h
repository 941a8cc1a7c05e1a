/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One way to open a NATS connection (nats.c) for every wirespan command that
 * talks to NATS: the agent's exporter, `wirespan tail`, `wirespan relay`.
 *
 * Servers, user/password, token, NKey seed file, creds file (JWT + seed) and
 * TLS come from one struct. nats.c re-reads a creds file on every reconnect,
 * so rotating credentials means replacing the file. Connection events and
 * asynchronous errors are counted in ws_natsconn_stats (a permission
 * violation arrives asynchronously as NATS_NOT_PERMITTED) and logged, so
 * nothing fails silently.
 */
#ifndef WIRESPAN_NATSCONN_H
#define WIRESPAN_NATSCONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#define WS_NATS_DEFAULT_URL "nats://127.0.0.1:4222"
#define WS_NATS_PING_INTERVAL_MS 5000
#define WS_NATS_MAX_PINGS_OUT 2
#define WS_NATS_WRITE_DEADLINE_MS 5000

struct ws_natsconn_cfg {
	const char *urls;	     /* comma-separated; NULL: the default */
	const char *user, *password; /* user/password authentication */
	const char *token;	     /* token authentication */
	const char *nkey_seed_file;  /* NKey seed (SU...); public key derived */
	const char *creds_file;	     /* JWT + seed, re-read on reconnect */
	const char *tls_ca;	     /* CA file: TLS, server verified */
	const char *tls_cert, *tls_key; /* optional client certificate */
	bool tls;			/* TLS even without a CA file */
	const char *name;		/* connection name the server shows */
	/* Keep trying when the first connect fails (reconnect forever). */
	bool retry_on_failed_connect;
	int reconnect_wait_ms; /* 0: 250 ms */
	/*
	 * A server that stops answering without closing the connection (a
	 * blackhole: cable cut, dropping firewall, frozen host) is found by
	 * PING/PONG (max_pings_out PINGs unanswered, one per ping_interval_ms)
	 * or by a socket write that makes no progress for write_deadline_ms
	 * (nats.c then shuts the socket down); either way nats.c reconnects.
	 * Without a write deadline nats.c writes on a blocking socket, under
	 * the connection's lock, and a full send buffer stops every publish
	 * and the PING timer until TCP gives up (about 15 minutes).
	 */
	int ping_interval_ms;	 /* 0: WS_NATS_PING_INTERVAL_MS */
	int max_pings_out;	 /* 0: WS_NATS_MAX_PINGS_OUT */
	int write_deadline_ms;	 /* 0: WS_NATS_WRITE_DEADLINE_MS */
	int reconnect_buf_bytes; /* nats.c's reconnect buffer; 0: its default */
};

/* Updated from nats.c's threads; read with atomic_load. */
struct ws_natsconn_stats {
	_Atomic uint64_t disconnects, reconnects, closed;
	_Atomic uint64_t async_errors;	/* every asynchronous error */
	_Atomic uint64_t not_permitted; /* permission violations among them */
	_Atomic uint64_t slow_consumer;
	_Atomic bool connected;
};

struct ws_jsonw;
/* The connection counters of st as members of w's open object. */
void ws_natsconn_stats_json(struct ws_jsonw *w,
			    const struct ws_natsconn_stats *st);

/*
 * Check cfg without connecting (files readable, seed decodable, URLs given).
 * Returns 0, or -1 with a message naming the problem in err.
 */
int ws_natsconn_check(const struct ws_natsconn_cfg *cfg, char *err,
		      size_t errlen);

/*
 * Connect. stats (may be NULL) must outlive the connection. Returns 0 with
 * *out set, or -1 with a message in err. With retry_on_failed_connect a
 * server that is down is not an error: *out is set and nats.c keeps trying.
 */
int ws_natsconn_open(const struct ws_natsconn_cfg *cfg,
		     struct ws_natsconn_stats *stats, natsConnection **out,
		     char *err, size_t errlen);

/*
 * The NATS public key (U...) of an encoded user seed (SU...). Returns 0, or
 * -1 if the seed is not a valid user seed. pub gets 57 bytes (56 + NUL).
 */
int ws_nkey_public_from_seed(const char *seed, size_t len, char pub[57]);

#endif
