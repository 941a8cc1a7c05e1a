/* SPDX-License-Identifier: Apache-2.0 */
/* `wirespan agent`'s command line: flags become configuration overrides. */
#ifndef WIRESPAN_AGENT_ARGS_H
#define WIRESPAN_AGENT_ARGS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Command-line overrides kept at most (each --pid, --set ... is one). */
#define WS_AGENT_MAX_OVERRIDES 512

struct ws_agent_args {
	const char *config; /* --config FILE, or WIRESPAN_CONFIG */
	bool check_config;  /* --check-config: validate, print, exit */
	bool help;
	struct ws_config_override ov[WS_AGENT_MAX_OVERRIDES];
	size_t n_ov;
	/* storage for --set KEY=VALUE splits and -v levels */
	char *owned[WS_AGENT_MAX_OVERRIDES];
	size_t n_owned;
};

extern const char ws_agent_usage[];

/* Parse argv. 0, or WS_EXIT_USAGE after printing the error and usage. */
int ws_agent_args_parse(int argc, char **argv, struct ws_agent_args *a);
void ws_agent_args_free(struct ws_agent_args *a);

#endif
