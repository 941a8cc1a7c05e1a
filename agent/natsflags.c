/* SPDX-License-Identifier: Apache-2.0 */
#include <stdlib.h>

#include "natsflags.h"

const char ws_natsflags_usage[] =
	"NATS connection:\n"
	"      --nats-url URL[,URL...]  servers (default " WS_NATS_DEFAULT_URL
	")\n"
	"      --user USER --password PASS   user/password "
	"(or WIRESPAN_NATS_PASSWORD)\n"
	"      --token TOKEN           token (or WIRESPAN_NATS_TOKEN)\n"
	"      --nkey-seed-file FILE   NKey user seed (SU...)\n"
	"      --creds FILE            JWT + seed, re-read on reconnect\n"
	"      --tls                   TLS, server verified by the system "
	"CAs\n"
	"      --tls-ca FILE           TLS, server verified by this CA\n"
	"      --tls-cert FILE --tls-key FILE   client certificate\n";

int ws_natsflags_opt(struct ws_natsconn_cfg *cfg, int opt, const char *arg)
{
	switch (opt) {
	case WS_OPT_NATS_URL:
		cfg->urls = arg;
		return 1;
	case WS_OPT_NATS_USER:
		cfg->user = arg;
		return 1;
	case WS_OPT_NATS_PASSWORD:
		cfg->password = arg;
		return 1;
	case WS_OPT_NATS_TOKEN:
		cfg->token = arg;
		return 1;
	case WS_OPT_NATS_NKEY:
		cfg->nkey_seed_file = arg;
		return 1;
	case WS_OPT_NATS_CREDS:
		cfg->creds_file = arg;
		return 1;
	case WS_OPT_NATS_TLS:
		cfg->tls = true;
		return 1;
	case WS_OPT_NATS_TLS_CA:
		cfg->tls_ca = arg;
		return 1;
	case WS_OPT_NATS_TLS_CERT:
		cfg->tls_cert = arg;
		return 1;
	case WS_OPT_NATS_TLS_KEY:
		cfg->tls_key = arg;
		return 1;
	}
	return 0;
}

void ws_natsflags_env(struct ws_natsconn_cfg *cfg)
{
	const char *v;

	if (cfg->user && !cfg->password &&
	    (v = getenv("WIRESPAN_NATS_PASSWORD")) && *v)
		cfg->password = v;
	if (!cfg->token && !cfg->user && !cfg->creds_file &&
	    !cfg->nkey_seed_file && (v = getenv("WIRESPAN_NATS_TOKEN")) && *v)
		cfg->token = v;
}
