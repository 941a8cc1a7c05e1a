/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

enum ws_log_level ws_log_level = WS_LOG_WARN;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

void ws_log_write(enum ws_log_level level, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "wirespan: %s: ", level_names[level]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
