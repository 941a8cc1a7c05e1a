/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NATS connection flags every command that connects to NATS takes
 * (`wirespan tail`, `wirespan relay`): one table, one help text, one parser,
 * so the commands cannot drift apart. They fill a ws_natsconn_cfg.
 */
#ifndef WIRESPAN_NATSFLAGS_H
#define WIRESPAN_NATSFLAGS_H

#include <getopt.h>

#include "natsconn.h"

/* getopt_long values of the flags: above any short option character. */
enum {
	WS_OPT_NATS_URL = 0x4e00,
	WS_OPT_NATS_USER,
	WS_OPT_NATS_PASSWORD,
	WS_OPT_NATS_TOKEN,
	WS_OPT_NATS_NKEY,
	WS_OPT_NATS_CREDS,
	WS_OPT_NATS_TLS,
	WS_OPT_NATS_TLS_CA,
	WS_OPT_NATS_TLS_CERT,
	WS_OPT_NATS_TLS_KEY,
};

/* Entries for a struct option table (no terminator). */
#define WS_NATSFLAGS_LONGOPTS                                                  \
	{"nats-url", required_argument, NULL, WS_OPT_NATS_URL},                \
		{"user", required_argument, NULL, WS_OPT_NATS_USER},           \
		{"password", required_argument, NULL, WS_OPT_NATS_PASSWORD},   \
		{"token", required_argument, NULL, WS_OPT_NATS_TOKEN},         \
		{"nkey-seed-file", required_argument, NULL, WS_OPT_NATS_NKEY}, \
		{"creds", required_argument, NULL, WS_OPT_NATS_CREDS},         \
		{"tls", no_argument, NULL, WS_OPT_NATS_TLS},                   \
		{"tls-ca", required_argument, NULL, WS_OPT_NATS_TLS_CA},       \
		{"tls-cert", required_argument, NULL, WS_OPT_NATS_TLS_CERT},   \
	{                                                                      \
		"tls-key", required_argument, NULL, WS_OPT_NATS_TLS_KEY        \
	}

/* The help lines for the flags above. */
extern const char ws_natsflags_usage[];

/*
 * Apply one getopt_long result to cfg. Returns 1 if opt was one of the
 * flags, 0 if not. Password and token may also come from the environment
 * (WIRESPAN_NATS_PASSWORD, WIRESPAN_NATS_TOKEN: see ws_natsflags_env), so
 * they need not show in the process list.
 */
int ws_natsflags_opt(struct ws_natsconn_cfg *cfg, int opt, const char *arg);
/* Fill password and token from the environment where no flag gave them. */
void ws_natsflags_env(struct ws_natsconn_cfg *cfg);

#endif
