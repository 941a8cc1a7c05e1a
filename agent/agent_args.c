/* SPDX-License-Identifier: Apache-2.0 */
/* `wirespan agent` flags -> configuration overrides (config.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_args.h"
#include "cli.h"

const char ws_agent_usage[] =
	"usage: wirespan agent [options]\n"
	"\n"
	"Turn the NATS and HTTP/1.x conversations of this host into\n"
	"OpenTelemetry spans and publish them as OTLP protobuf over NATS (or\n"
	"print them). Needs root, or CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and\n"
	"CAP_DAC_READ_SEARCH (`wirespan doctor` checks).\n"
	"Every option is also a config file key and a WIRESPAN_* variable\n"
	"(docs/CONFIGURATION.md); the command line wins.\n"
	"\n"
	"  -c, --config FILE       YAML config (default " WS_CONFIG_DEFAULT_FILE
	"\n"
	"                          if it exists; or WIRESPAN_CONFIG)\n"
	"      --check-config      validate, print the effective config, exit\n"
	"      --set KEY=VALUE     set any config key (repeatable)\n"
	"  -o, --output nats|stdout  publish over NATS (default), or "
	"OTLP/JSON\n"
	"                          lines on stdout (debugging)\n"
	"      --nats-url URL[,URL...]  servers (default " WS_NATS_DEFAULT_URL
	")\n"
	"      --nats-user USER    user (password: config or "
	"WIRESPAN_EXPORT_NATS_PASSWORD)\n"
	"      --nats-creds FILE   creds file (JWT + seed), re-read on "
	"reconnect\n"
	"      --nats-nkey FILE    NKey seed file\n"
	"      --tls-ca FILE       TLS, server verified with this CA\n"
	"      --tls-cert FILE, --tls-key FILE  TLS client certificate\n"
	"      --node NAME         node token of the subjects (default: "
	"hostname)\n"
	"      --subject-prefix P  subject prefix (default otel)\n"
	"      --subject-template T  default {prefix}.traces.{domain}.{node}\n"
	"      --mode core|jetstream  delivery (default core)\n"
	"      --stream NAME       jetstream: the stream expected to store\n"
	"      --exclude-subject PATTERN  derive no spans for these messages\n"
	"                          (repeatable; <prefix>.traces.> always)\n"
	"  -p, --pid PID           only processes with this pid (repeatable)\n"
	"  -P, --port PORT         only connections with this port "
	"(repeatable)\n"
	"  -m, --max-capture N     bytes copied per record (default 32768, "
	"max 32768)\n"
	"      --max-records N     records per syscall (default 8, max 16)\n"
	"  -b, --ringbuf-size N    ring buffer bytes, a power of two (default "
	"8 MiB)\n"
	"      --process-timeout S end a process span after S seconds without\n"
	"                          evidence (default 10)\n"
	"      --request-timeout S a request without a reply fails after S\n"
	"                          seconds (default 30)\n"
	"      --http-request-timeout S  the same for HTTP (default 60)\n"
	"      --route PATTERN     HTTP route template, e.g. /users/{id}/cart\n"
	"                          or /static/* (repeatable, tried in order)\n"
	"      --jwt-user-claim C  JWT claim that becomes enduser.id (sub)\n"
	"      --api-key-header H  header carrying an API key (repeatable;\n"
	"                          X-API-Key and Authorization always)\n"
	"      --key-hash MODE     hmac (HMAC-SHA256 with the secret file,\n"
	"                          default) or murmur3 (Tyk's key hash)\n"
	"      --key-hash-secret-file PATH  HMAC secret, created 0600 if\n"
	"                          missing "
	"(default " WS_AUTH_DEFAULT_SECRET_FILE ")\n"
	"      --capture-header H  record this request header as\n"
	"                          http.request.header.<h> (repeatable;\n"
	"                          credentials are refused)\n"
	"      --health ADDR       serve /healthz and /readyz on host:port\n"
	"      --node-name NAME    Kubernetes node (default $NODE_NAME)\n"
	"      --k8s-api URL       API server (default in-cluster: https://\n"
	"                          $KUBERNETES_SERVICE_HOST:$..._PORT)\n"
	"      --k8s-token PATH    service-account token file\n"
	"      --k8s-ca PATH       CA bundle of the API server\n"
	"      --no-k8s            do not watch pods\n"
	"      --k8s-label NAME    export pod label NAME as\n"
	"                          k8s.pod.label.NAME (repeatable)\n"
	"      --service-rule R    NAME=COND[,COND...], COND one of\n"
	"                          label:K=GLOB namespace:GLOB "
	"container:GLOB\n"
	"                          exe:GLOB port:N (repeatable; first match\n"
	"                          sets service.name)\n"
	"  -d, --duration SECS     stop after SECS seconds\n"
	"  -v, --verbose           more diagnostics (log_level info, -vv "
	"debug)\n"
	"  -h, --help              this help\n"
	"\n"
	"Signals: SIGUSR1 prints the counters, SIGHUP reloads the config.\n";

enum {
	OPT_CHECK = 256,
	OPT_SET,
	OPT_NATS_URL,
	OPT_NATS_USER,
	OPT_NATS_CREDS,
	OPT_NATS_NKEY,
	OPT_TLS_CA,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_NODE,
	OPT_PREFIX,
	OPT_TEMPLATE,
	OPT_MODE,
	OPT_STREAM,
	OPT_EXCLUDE,
	OPT_PROCESS_TIMEOUT,
	OPT_REQUEST_TIMEOUT,
	OPT_HTTP_TIMEOUT,
	OPT_ROUTE,
	OPT_JWT_CLAIM,
	OPT_KEY_HEADER,
	OPT_KEY_HASH,
	OPT_SECRET_FILE,
	OPT_CAPTURE,
	OPT_HEALTH,
	OPT_MAX_RECORDS,
	OPT_NODE_NAME,
	OPT_K8S_API,
	OPT_K8S_TOKEN,
	OPT_K8S_CA,
	OPT_NO_K8S,
	OPT_K8S_LABEL,
	OPT_SERVICE_RULE,
};

/* Flag -> key. */
static const struct {
	int opt;
	const char *flag, *key;
} flag_keys[] = {
	{'o', "--output", "output"},
	{'p', "--pid", "capture.pids"},
	{'P', "--port", "capture.ports"},
	{'m', "--max-capture", "capture.max_capture"},
	{OPT_MAX_RECORDS, "--max-records", "capture.max_records"},
	{'b', "--ringbuf-size", "capture.ringbuf_size"},
	{'d', "--duration", "duration_s"},
	{OPT_PROCESS_TIMEOUT, "--process-timeout", "spans.process_timeout_s"},
	{OPT_REQUEST_TIMEOUT, "--request-timeout", "spans.request_timeout_s"},
	{OPT_NATS_URL, "--nats-url", "export.nats.urls"},
	{OPT_NATS_USER, "--nats-user", "export.nats.user"},
	{OPT_NATS_CREDS, "--nats-creds", "export.nats.creds_file"},
	{OPT_NATS_NKEY, "--nats-nkey", "export.nats.nkey_seed_file"},
	{OPT_TLS_CA, "--tls-ca", "export.nats.tls.ca"},
	{OPT_TLS_CERT, "--tls-cert", "export.nats.tls.cert"},
	{OPT_TLS_KEY, "--tls-key", "export.nats.tls.key"},
	{OPT_NODE, "--node", "export.node"},
	{OPT_PREFIX, "--subject-prefix", "export.subject.prefix"},
	{OPT_TEMPLATE, "--subject-template", "export.subject.template"},
	{OPT_MODE, "--mode", "export.mode"},
	{OPT_STREAM, "--stream", "export.jetstream.stream"},
	{OPT_EXCLUDE, "--exclude-subject", "spans.exclude_subjects"},
	{OPT_HTTP_TIMEOUT, "--http-request-timeout", "http.request_timeout_s"},
	{OPT_ROUTE, "--route", "http.routes"},
	{OPT_JWT_CLAIM, "--jwt-user-claim", "http.jwt_user_claim"},
	{OPT_KEY_HEADER, "--api-key-header", "http.api_key_headers"},
	{OPT_KEY_HASH, "--key-hash", "http.key_hash"},
	{OPT_SECRET_FILE, "--key-hash-secret-file",
	 "http.key_hash_secret_file"},
	{OPT_CAPTURE, "--capture-header", "http.capture_headers"},
	{OPT_HEALTH, "--health", "health.listen"},
	{OPT_NODE_NAME, "--node-name", "k8s.node_name"},
	{OPT_K8S_API, "--k8s-api", "k8s.api"},
	{OPT_K8S_TOKEN, "--k8s-token", "k8s.token_file"},
	{OPT_K8S_CA, "--k8s-ca", "k8s.ca_file"},
	{OPT_NO_K8S, "--no-k8s", "k8s.enabled"},
	{OPT_K8S_LABEL, "--k8s-label", "k8s.labels"},
	{OPT_SERVICE_RULE, "--service-rule", "service.rules"},
};

static int add(struct ws_agent_args *a, const char *key, const char *value,
	       const char *src)
{
	if (a->n_ov == WS_AGENT_MAX_OVERRIDES) {
		fprintf(stderr, "wirespan: too many options (at most %d)\n%s",
			WS_AGENT_MAX_OVERRIDES, ws_agent_usage);
		return WS_EXIT_USAGE;
	}
	a->ov[a->n_ov].key = key;
	a->ov[a->n_ov].value = value;
	a->ov[a->n_ov].src = src;
	a->n_ov++;
	return 0;
}

int ws_agent_args_parse(int argc, char **argv, struct ws_agent_args *a)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, OPT_CHECK},
		{"set", required_argument, NULL, OPT_SET},
		{"output", required_argument, NULL, 'o'},
		{"nats-url", required_argument, NULL, OPT_NATS_URL},
		{"nats-user", required_argument, NULL, OPT_NATS_USER},
		{"nats-creds", required_argument, NULL, OPT_NATS_CREDS},
		{"nats-nkey", required_argument, NULL, OPT_NATS_NKEY},
		{"tls-ca", required_argument, NULL, OPT_TLS_CA},
		{"tls-cert", required_argument, NULL, OPT_TLS_CERT},
		{"tls-key", required_argument, NULL, OPT_TLS_KEY},
		{"node", required_argument, NULL, OPT_NODE},
		{"subject-prefix", required_argument, NULL, OPT_PREFIX},
		{"subject-template", required_argument, NULL, OPT_TEMPLATE},
		{"mode", required_argument, NULL, OPT_MODE},
		{"stream", required_argument, NULL, OPT_STREAM},
		{"exclude-subject", required_argument, NULL, OPT_EXCLUDE},
		{"pid", required_argument, NULL, 'p'},
		{"port", required_argument, NULL, 'P'},
		{"max-capture", required_argument, NULL, 'm'},
		{"max-records", required_argument, NULL, OPT_MAX_RECORDS},
		{"ringbuf-size", required_argument, NULL, 'b'},
		{"process-timeout", required_argument, NULL,
		 OPT_PROCESS_TIMEOUT},
		{"request-timeout", required_argument, NULL,
		 OPT_REQUEST_TIMEOUT},
		{"duration", required_argument, NULL, 'd'},
		{"http-request-timeout", required_argument, NULL,
		 OPT_HTTP_TIMEOUT},
		{"route", required_argument, NULL, OPT_ROUTE},
		{"jwt-user-claim", required_argument, NULL, OPT_JWT_CLAIM},
		{"api-key-header", required_argument, NULL, OPT_KEY_HEADER},
		{"key-hash", required_argument, NULL, OPT_KEY_HASH},
		{"key-hash-secret-file", required_argument, NULL,
		 OPT_SECRET_FILE},
		{"capture-header", required_argument, NULL, OPT_CAPTURE},
		{"health", required_argument, NULL, OPT_HEALTH},
		{"node-name", required_argument, NULL, OPT_NODE_NAME},
		{"k8s-api", required_argument, NULL, OPT_K8S_API},
		{"k8s-token", required_argument, NULL, OPT_K8S_TOKEN},
		{"k8s-ca", required_argument, NULL, OPT_K8S_CA},
		{"no-k8s", no_argument, NULL, OPT_NO_K8S},
		{"k8s-label", required_argument, NULL, OPT_K8S_LABEL},
		{"service-rule", required_argument, NULL, OPT_SERVICE_RULE},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int opt, verbose = 0, rc;
	size_t i;
	char *eq, *key;

	memset(a, 0, sizeof(*a));
	a->config = getenv("WIRESPAN_CONFIG");
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "c:o:p:P:m:b:d:vh", longopts,
				  NULL)) != -1) {
		rc = 0;
		switch (opt) {
		case 'c':
			a->config = optarg;
			break;
		case OPT_CHECK:
			a->check_config = true;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			a->help = true;
			return 0;
		case OPT_SET:
			eq = strchr(optarg, '=');
			key = eq ? strndup(optarg, (size_t)(eq - optarg))
				 : NULL;
			if (!key || !ws_config_known(key)) {
				free(key);
				ws_cli_bad(ws_agent_usage, "--set", optarg);
				return WS_EXIT_USAGE;
			}
			a->owned[a->n_owned++] = key;
			rc = add(a, key, eq + 1, "--set");
			break;
		default:
			for (i = 0;
			     i < sizeof(flag_keys) / sizeof(flag_keys[0]); i++)
				if (flag_keys[i].opt == opt)
					break;
			if (i == sizeof(flag_keys) / sizeof(flag_keys[0])) {
				ws_cli_unknown(ws_agent_usage,
					       argv[optind - 1]);
				return WS_EXIT_USAGE;
			}
			/* the one flag without a value turns its key off */
			rc = add(a, flag_keys[i].key,
				 opt == OPT_NO_K8S ? "false" : optarg,
				 flag_keys[i].flag);
		}
		if (rc)
			return rc;
		if (a->n_owned == WS_AGENT_MAX_OVERRIDES) {
			fprintf(stderr, "wirespan: too many --set options\n%s",
				ws_agent_usage);
			return WS_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		ws_cli_unknown(ws_agent_usage, argv[optind]);
		return WS_EXIT_USAGE;
	}
	if (verbose)
		return add(a, "log_level", verbose > 1 ? "debug" : "info",
			   "--verbose");
	return 0;
}

void ws_agent_args_free(struct ws_agent_args *a)
{
	size_t i;

	for (i = 0; i < a->n_owned; i++)
		free(a->owned[i]);
	a->n_owned = 0;
}
