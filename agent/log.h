/* SPDX-License-Identifier: Apache-2.0 */
/* Logging to stderr that checks the level before formatting anything. */
#ifndef WIRESPAN_LOG_H
#define WIRESPAN_LOG_H

enum ws_log_level { WS_LOG_ERROR = 0, WS_LOG_WARN, WS_LOG_INFO, WS_LOG_DEBUG };

extern enum ws_log_level ws_log_level;

void ws_log_write(enum ws_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define ws_log(level, ...)                                  \
	do {                                                \
		if ((level) <= ws_log_level)                \
			ws_log_write((level), __VA_ARGS__); \
	} while (0)
#define ws_err(...) ws_log(WS_LOG_ERROR, __VA_ARGS__)
#define ws_warn(...) ws_log(WS_LOG_WARN, __VA_ARGS__)
#define ws_info(...) ws_log(WS_LOG_INFO, __VA_ARGS__)
#define ws_debug(...) ws_log(WS_LOG_DEBUG, __VA_ARGS__)

#endif
