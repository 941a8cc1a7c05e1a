/* SPDX-License-Identifier: Apache-2.0 */
/* Command-line helpers shared by the subcommands. */
#ifndef WIRESPAN_CLI_H
#define WIRESPAN_CLI_H

#include <stdint.h>

/* Exit code for a wrong flag or argument. */
#define WS_EXIT_USAGE 2

/* Parse a decimal integer in [min, max]. Returns 0 or -EINVAL. */
int ws_cli_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Print "wirespan: bad value for FLAG: VALUE" and the usage; returns -1. */
int ws_cli_bad(const char *usage, const char *flag, const char *value);
/* Print "wirespan: unknown option or argument: ARG" and the usage; returns -1. */
int ws_cli_unknown(const char *usage, const char *arg);

#endif
