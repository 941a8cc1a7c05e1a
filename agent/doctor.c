/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `wirespan doctor`: can this host run wirespan? Kernel, BTF, lockdown,
 * capabilities, BPF features, tracepoints, and NATS reachability and
 * permissions, each with PASS/WARN/FAIL and what to do about a failure.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "caps.h"
#include "cli.h"
#include "doctor.h"
#include "loader.h"
#include "natsconn.h"
#include "natsflags.h"

struct tally {
	unsigned pass, warn, fail;
	bool color;
};

enum verdict { PASS, WARN, FAIL };

static void report(struct tally *t, enum verdict v, const char *what,
		   const char *detail, const char *todo)
{
	static const char *const word[] = {"PASS", "WARN", "FAIL"};
	static const char *const col[] = {"\033[32m", "\033[33m", "\033[31m"};

	if (v == PASS)
		t->pass++;
	else if (v == WARN)
		t->warn++;
	else
		t->fail++;
	printf("%s%s%s  %-28s %s\n", t->color ? col[v] : "", word[v],
	       t->color ? "\033[0m" : "", what, detail);
	if (v != PASS && todo)
		printf("      -> %s\n", todo);
}

static void check_kernel(struct tally *t)
{
	struct utsname u;
	unsigned major = 0, minor = 0;
	char detail[160];

	uname(&u);
	sscanf(u.release, "%u.%u", &major, &minor);
	snprintf(detail, sizeof(detail), "%s %s", u.release, u.machine);
	report(t, major > 5 || (major == 5 && minor >= 8) ? PASS : FAIL,
	       "kernel >= 5.8", detail,
	       "wirespan needs BPF ring buffers (Linux 5.8 or newer)");
}

static void check_btf(struct tally *t)
{
	struct stat st;

	if (stat("/sys/kernel/btf/vmlinux", &st) == 0)
		report(t, PASS, "kernel BTF", "/sys/kernel/btf/vmlinux", NULL);
	else
		report(t, FAIL, "kernel BTF", "/sys/kernel/btf/vmlinux missing",
		       "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most "
		       "distribution kernels since 2020); in a container, "
		       "mount /sys/kernel/btf from the host");
}

static void check_lockdown(struct tally *t)
{
	char buf[128] = "", *sel;
	FILE *f = fopen("/sys/kernel/security/lockdown", "r");

	if (!f) {
		report(t, PASS, "lockdown", "not present", NULL);
		return;
	}
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	sel = strchr(buf, '[');
	if (sel && !strncmp(sel, "[confidentiality]", 17))
		report(t, FAIL, "lockdown", buf,
		       "lockdown=confidentiality forbids reading kernel memory "
		       "from BPF; boot with lockdown=integrity or none");
	else
		report(t, PASS, "lockdown", buf[0] ? buf : "none", NULL);
}

static void check_caps(struct tally *t)
{
	char what[64], todo[256];
	size_t i;

	for (i = 0; i < ws_n_caps; i++) {
		const struct ws_cap *c = &ws_caps[i];
		enum ws_cap_state have = ws_cap_state(c);

		snprintf(what, sizeof(what), "%s", c->name);
		snprintf(todo, sizeof(todo),
			 "grant %s (systemd AmbientCapabilities=, Kubernetes "
			 "securityContext.capabilities.add) or run as root",
			 c->name);
		if (have == WS_CAP_HAVE)
			report(t, PASS, what, c->why, NULL);
		else if (have == WS_CAP_COVERED)
			report(t, PASS, what, "covered by CAP_SYS_ADMIN", NULL);
		else
			report(t, c->required ? FAIL : WARN, what, c->why,
			       c->required
				       ? todo
				       : "only needed in the case named; "
					 "grant it if the agent reports it");
	}
}

static void check_bpf(struct tally *t)
{
	char why[256];

	if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_TASK_STORAGE, NULL) > 0)
		report(t, PASS, "BPF task storage",
		       "syscall arguments kept "
		       "per task",
		       NULL);
	else
		report(t, WARN, "BPF task storage",
		       "missing: a hash map keyed by thread is used instead",
		       "works as is; Linux 5.11+ makes it cheaper");
	if (ws_loader_probe(why, sizeof(why)) == 0)
		report(t, PASS, "capture prerequisites",
		       "tracepoints, ring buffer, tracefs", NULL);
	else
		report(t, FAIL, "capture prerequisites", why,
		       "see docs/TROUBLESHOOTING.md");
}

static void check_nats(struct tally *t, const struct ws_natsconn_cfg *cfg,
		       const char *subject)
{
	struct ws_natsconn_stats st = {0};
	natsConnection *nc = NULL;
	char err[512], detail[600];
	natsStatus s;

	if (ws_natsconn_open(cfg, &st, &nc, err, sizeof(err))) {
		report(t, FAIL, "NATS connection", err,
		       "start nats-server, or point --nats-url and the "
		       "credentials at a reachable server");
		return;
	}
	snprintf(detail, sizeof(detail), "%s, max_payload %lld",
		 cfg->urls ? cfg->urls : WS_NATS_DEFAULT_URL,
		 (long long)natsConnection_GetMaxPayload(nc));
	report(t, PASS, "NATS connection", detail, NULL);
	/* A denied publish comes back asynchronously: publish, flush (the
	 * server handles the PUB before our PING), then wait a moment. */
	s = natsConnection_PublishString(nc, subject, "");
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(nc, 2000);
	usleep(100 * 1000);
	snprintf(detail, sizeof(detail), "publish on %s", subject);
	if (s != NATS_OK)
		report(t, FAIL, "NATS publish", natsStatus_GetText(s),
		       "check the server and the connection's permissions");
	else if (atomic_load(&st.not_permitted))
		report(t, FAIL, "NATS publish", detail,
		       "the server denied it: give this node's credentials "
		       "publish rights on <prefix>.traces.*.<node> (see "
		       "deploy/nats/)");
	else
		report(t, PASS, "NATS publish", detail, NULL);
	natsConnection_Destroy(nc);
}

static const char doctor_usage[] =
	"usage: wirespan doctor [options]\n"
	"\n"
	"Check that this host can run wirespan: kernel, BTF, lockdown,\n"
	"capabilities, BPF features and NATS. Exit 0 when nothing failed.\n"
	"\n"
	"%s"
	"      --subject S          subject of the test publish\n"
	"                           (default otel.traces.doctor.<host>)\n"
	"      --no-nats            skip the NATS checks\n"
	"      --caps               list the capabilities wirespan uses "
	"(NAME required|optional)\n"
	"  -h, --help               this help\n";

int cmd_doctor(int argc, char **argv)
{
	static const struct option longopts[] = {
		WS_NATSFLAGS_LONGOPTS,
		{"subject", required_argument, NULL, 's'},
		{"no-nats", no_argument, NULL, 'n'},
		{"caps", no_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct ws_natsconn_cfg nc = {.name = "wirespan-doctor"};
	char usage[2048];
	struct tally t = {.color =
				  isatty(STDOUT_FILENO) && !getenv("NO_COLOR")};
	char subject[300], host[128] = "host";
	const char *subj = NULL;
	bool nats = true, list_caps = false;
	size_t i;
	int opt;

	snprintf(usage, sizeof(usage), doctor_usage, ws_natsflags_usage);
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			subj = optarg;
			break;
		case 'n':
			nats = false;
			break;
		case 'c':
			list_caps = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			if (ws_natsflags_opt(&nc, opt, optarg))
				break;
			ws_cli_unknown(usage, argv[optind - 1]);
			return WS_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		ws_cli_unknown(usage, argv[optind]);
		return WS_EXIT_USAGE;
	}
	ws_natsflags_env(&nc);
	if (list_caps) {
		for (i = 0; i < ws_n_caps; i++)
			printf("%s %s\n", ws_caps[i].name,
			       ws_caps[i].required ? "required" : "optional");
		return 0;
	}
	check_kernel(&t);
	check_btf(&t);
	check_lockdown(&t);
	check_caps(&t);
	check_bpf(&t);
	if (nats) {
		gethostname(host, sizeof(host) - 1);
		host[strcspn(host, ". *>")] = 0;
		snprintf(subject, sizeof(subject), "otel.traces.doctor.%s",
			 host);
		check_nats(&t, &nc, subj ? subj : subject);
	}
	printf("%u passed, %u warnings, %u failed\n", t.pass, t.warn, t.fail);
	return t.fail ? 1 : 0;
}
