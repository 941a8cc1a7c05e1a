/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

int ws_cli_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int ws_cli_bad(const char *usage, const char *flag, const char *value)
{
	fprintf(stderr, "wirespan: bad value for %s: %s\n%s", flag,
		value ? value : "(missing)", usage);
	return -1;
}

int ws_cli_unknown(const char *usage, const char *arg)
{
	fprintf(stderr, "wirespan: unknown option or argument: %s\n%s",
		arg ? arg : "?", usage);
	return -1;
}
