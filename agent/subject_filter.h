/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A list of NATS subject patterns ('*' matches one token, '>' one or more
 * trailing tokens) that a message subject is tested against. The NATS span
 * builder derives no spans for the messages whose subject matches: by
 * default the agent's own telemetry subjects (`<prefix>.traces.>`), so that
 * exported spans are never traced again (no feedback loop), plus whatever
 * the user adds (noisy heartbeats, say).
 *
 * Pure: no I/O, no globals. Patterns are split into tokens once, at add.
 */
#ifndef WIRESPAN_SUBJECT_FILTER_H
#define WIRESPAN_SUBJECT_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Patterns per filter, and tokens per pattern, at most. */
#define WS_SUBJECT_FILTER_MAX 64
#define WS_SUBJECT_MAX_TOKENS 32

struct ws_subject_filter;

struct ws_subject_filter *ws_subject_filter_new(void);
void ws_subject_filter_free(struct ws_subject_filter *f);

/*
 * Check that pattern is a valid NATS subject pattern: non-empty tokens
 * separated by '.', no whitespace, '*' and '>' only as whole tokens and '>'
 * only last. Returns 0 or -EINVAL with a reason in *why (a literal).
 */
int ws_subject_pattern_check(const char *pattern, const char **why);

/* Add a pattern. 0, -EINVAL (not a valid pattern), -ENOSPC (list full),
 * -ENOMEM. A pattern already in the list is not added twice. */
int ws_subject_filter_add(struct ws_subject_filter *f, const char *pattern);
/* Remove every pattern (the match counters stay). */
void ws_subject_filter_clear(struct ws_subject_filter *f);
size_t ws_subject_filter_count(const struct ws_subject_filter *f);
const char *ws_subject_filter_pattern(const struct ws_subject_filter *f,
				      size_t i);

/* Does subject[0..len) match any pattern? Counts the matches. */
bool ws_subject_filter_match(struct ws_subject_filter *f, const char *subject,
			     size_t len);
/* Subjects matched so far. */
uint64_t ws_subject_filter_matched(const struct ws_subject_filter *f);

#endif
