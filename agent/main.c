/* SPDX-License-Identifier: Apache-2.0 */
/* wirespan: one binary, subcommands as git and bpftool have them. */
#include <stdio.h>
#include <string.h>

#include "agent_cmd.h"
#include "capture.h"
#include "cli.h"
#include "doctor.h"
#include "relay_cmd.h"
#include "tail_cmd.h"
#include "wirespan/abi.h"

#ifndef WIRESPAN_VERSION
#define WIRESPAN_VERSION "0.1.0"
#endif

static const char usage[] =
	"usage: wirespan <command> [options]\n"
	"\n"
	"commands:\n"
	"  agent     turn NATS conversations into OpenTelemetry spans\n"
	"  capture   print the bytes of NATS and HTTP/1.x connections as JSON "
	"lines\n"
	"  doctor    check that this host can run wirespan\n"
	"  relay     forward the telemetry subjects to an OTLP/HTTP backend\n"
	"  tail      print the traces on the telemetry subjects as trees\n"
	"  version   print the version\n"
	"  help      this help\n"
	"\n"
	"`wirespan <command> --help` describes a command.\n";

static int cmd_version(int argc, char **argv)
{
	if (argc > 1 &&
	    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs("usage: wirespan version\n\nPrint the version and the "
		      "kernel event ABI version.\n",
		      stdout);
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr,
			"wirespan: unknown option or argument: %s\n"
			"usage: wirespan version\n",
			argv[1]);
		return WS_EXIT_USAGE;
	}
	printf("wirespan %s (event ABI %d)\n", WIRESPAN_VERSION,
	       WS_ABI_VERSION);
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{"agent", cmd_agent},	{"capture", cmd_capture},
	{"doctor", cmd_doctor}, {"relay", cmd_relay},
	{"tail", cmd_tail},	{"version", cmd_version},
};

int main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		fputs(usage, stderr);
		return WS_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "-h")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version"))
		return cmd_version(1, argv);
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "wirespan: unknown command: %s\n%s", argv[1], usage);
	return WS_EXIT_USAGE;
}
