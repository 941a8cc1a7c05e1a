/* SPDX-License-Identifier: Apache-2.0 */
/* NATS subject patterns a subject is tested against (see the header). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "subject_filter.h"

struct pattern {
	char *text;
	/* token i is text[tok[i] .. tok[i] + len[i]) */
	uint16_t tok[WS_SUBJECT_MAX_TOKENS], len[WS_SUBJECT_MAX_TOKENS];
	uint16_t n;
	bool tail; /* last token is '>' (not stored in tok) */
};

struct ws_subject_filter {
	struct pattern p[WS_SUBJECT_FILTER_MAX];
	size_t n;
	uint64_t matched;
};

struct ws_subject_filter *ws_subject_filter_new(void)
{
	return calloc(1, sizeof(struct ws_subject_filter));
}

void ws_subject_filter_clear(struct ws_subject_filter *f)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		free(f->p[i].text);
	f->n = 0;
}

void ws_subject_filter_free(struct ws_subject_filter *f)
{
	if (!f)
		return;
	ws_subject_filter_clear(f);
	free(f);
}

int ws_subject_pattern_check(const char *pattern, const char **why)
{
	size_t tokens = 0, tl = 0;
	const char *c;

	*why = NULL;
	if (!pattern || !*pattern)
		*why = "empty subject";
	else if (strlen(pattern) > 4096)
		*why = "longer than 4096 bytes";
	for (c = pattern; !*why && c && *c; c++) {
		if (*c == ' ' || *c == '\t' || *c == '\r' || *c == '\n')
			*why = "whitespace in a subject";
		else if (*c != '.') {
			tl++;
			continue;
		} else if (!tl)
			*why = "empty token (\"..\", or a leading or trailing "
			       "'.')";
		else if (tl == 1 && c[-1] == '>')
			*why = "'>' must be the last token";
		else if (tl > 1 &&
			 (memchr(c - tl, '*', tl) || memchr(c - tl, '>', tl)))
			*why = "'*' and '>' must be whole tokens";
		tokens++;
		tl = 0;
	}
	if (!*why && pattern && *pattern) {
		c = pattern + strlen(pattern);
		if (!tl)
			*why = "empty token (\"..\", or a leading or trailing "
			       "'.')";
		else if (tl > 1 &&
			 (memchr(c - tl, '*', tl) || memchr(c - tl, '>', tl)))
			*why = "'*' and '>' must be whole tokens";
		else if (++tokens > WS_SUBJECT_MAX_TOKENS)
			*why = "more than 32 tokens";
	}
	return *why ? -EINVAL : 0;
}

int ws_subject_filter_add(struct ws_subject_filter *f, const char *pattern)
{
	struct pattern *p;
	const char *why;
	size_t i, start = 0;

	if (ws_subject_pattern_check(pattern, &why))
		return -EINVAL;
	for (i = 0; i < f->n; i++)
		if (!strcmp(f->p[i].text, pattern))
			return 0;
	if (f->n == WS_SUBJECT_FILTER_MAX)
		return -ENOSPC;
	p = &f->p[f->n];
	memset(p, 0, sizeof(*p));
	p->text = strdup(pattern);
	if (!p->text)
		return -ENOMEM;
	for (i = 0;; i++) {
		if (p->text[i] && p->text[i] != '.')
			continue;
		if (i - start == 1 && p->text[start] == '>') {
			p->tail = true;
		} else {
			p->tok[p->n] = (uint16_t)start;
			p->len[p->n++] = (uint16_t)(i - start);
		}
		if (!p->text[i])
			break;
		start = i + 1;
	}
	f->n++;
	return 0;
}

size_t ws_subject_filter_count(const struct ws_subject_filter *f)
{
	return f->n;
}

const char *ws_subject_filter_pattern(const struct ws_subject_filter *f,
				      size_t i)
{
	return i < f->n ? f->p[i].text : NULL;
}

static bool pattern_match(const struct pattern *p, const char *s, size_t len)
{
	const char *end = s + len;
	uint16_t i;

	for (i = 0; i < p->n; i++) {
		const char *dot;
		size_t tl;

		if (s > end)
			return false;
		dot = memchr(s, '.', (size_t)(end - s));
		tl = dot ? (size_t)(dot - s) : (size_t)(end - s);
		if (!tl)
			return false; /* not a valid subject */
		if (!(p->len[i] == 1 && p->text[p->tok[i]] == '*') &&
		    (p->len[i] != tl || memcmp(p->text + p->tok[i], s, tl)))
			return false;
		s += tl + 1; /* past the '.', or one past end */
	}
	/* all pattern tokens used: the subject must end, or go on for '>' */
	if (p->tail)
		return s < end;
	return s == end + 1;
}

bool ws_subject_filter_match(struct ws_subject_filter *f, const char *subject,
			     size_t len)
{
	size_t i;

	if (!len)
		return false;
	for (i = 0; i < f->n; i++) {
		if (pattern_match(&f->p[i], subject, len)) {
			f->matched++;
			return true;
		}
	}
	return false;
}

uint64_t ws_subject_filter_matched(const struct ws_subject_filter *f)
{
	return f->matched;
}
