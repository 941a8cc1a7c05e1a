/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

void jw_init(struct ws_jsonw *w)
{
	memset(w, 0, sizeof(*w));
}

void jw_free(struct ws_jsonw *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

static bool reserve(struct ws_jsonw *w, size_t more)
{
	size_t ncap;
	char *nb;

	if (w->oom)
		return false;
	if (w->len + more <= w->cap)
		return true;
	ncap = w->cap ? w->cap : 4096;
	while (ncap < w->len + more)
		ncap *= 2;
	nb = realloc(w->buf, ncap);
	if (!nb) {
		w->oom = true;
		return false;
	}
	w->buf = nb;
	w->cap = ncap;
	return true;
}

static void put(struct ws_jsonw *w, const char *s, size_t n)
{
	if (!reserve(w, n))
		return;
	memcpy(w->buf + w->len, s, n);
	w->len += n;
}

/* Bytes that need an escape: controls, '"' and '\\' (1), and in raw mode
 * also 0x7f and above (2). */
#define ROW(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
static const uint8_t esc_class[256] = {
	ROW(1), ROW(1), /* 0x00-0x1f */
	0,	0,	1,	0,	0,	0,	0,	0,
	0,	0,	0,	0,	0,	0,	0,	0, /* '"' */
	ROW(0), ROW(0), /* 0x30-0x4f */
	0,	0,	0,	0,	0,	0,	0,	0,
	0,	0,	0,	0,	1,	0,	0,	0, /* '\\' */
	ROW(0), /* 0x60-0x6f */
	0,	0,	0,	0,	0,	0,	0,	0,
	0,	0,	0,	0,	0,	0,	0,	2, /* 0x7f */
	ROW(2), ROW(2), ROW(2), ROW(2), ROW(2), ROW(2), ROW(2), ROW(2),
};
#undef ROW

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Non-zero if a byte of w is below c (c <= 128), or equal to c. */
static inline uint64_t has_below(uint64_t w, uint8_t c)
{
	return (w - ONES * c) & ~w & HIGHS;
}

static inline uint64_t has_byte(uint64_t w, uint8_t c)
{
	return has_below(w ^ (ONES * c), 1);
}

/* Escape n bytes as a JSON string body, one character per byte. Eight
 * bytes at a time while none of them needs an escape (nearly always). */
size_t ws_json_escape(char *dst, const uint8_t *src, size_t n, bool utf8)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t stop = utf8 ? 1 : 3; /* classes that need an escape */
	char *o = dst;
	size_t i = 0, end;
	uint64_t w, bad;

	while (i < n) {
		while (i + 8 <= n) {
			memcpy(&w, src + i, 8);
			bad = has_below(w, 0x20) | has_byte(w, '"') |
			      has_byte(w, '\\');
			if (!utf8)
				bad |= (w & HIGHS) | has_byte(w, 0x7f);
			if (bad)
				break;
			/* dst has room for 6 * n: 8 more bytes fit */
			memcpy(o, &w, 8);
			o += 8;
			i += 8;
		}
		/* byte by byte through the word that has one (or the tail) */
		for (end = i + 8 < n ? i + 8 : n; i < end; i++) {
			uint8_t c = src[i];

			if (!(esc_class[c] & stop)) {
				*o++ = (char)c;
				continue;
			}
			*o++ = '\\';
			switch (c) {
			case '"':
			case '\\':
				*o++ = (char)c;
				break;
			case '\n':
				*o++ = 'n';
				break;
			case '\r':
				*o++ = 'r';
				break;
			case '\t':
				*o++ = 't';
				break;
			default:
				*o++ = 'u';
				*o++ = '0';
				*o++ = '0';
				*o++ = hex[c >> 4];
				*o++ = hex[c & 15];
			}
		}
	}
	return (size_t)(o - dst);
}

size_t ws_json_u64(char *out, uint64_t v)
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

static void put_escaped(struct ws_jsonw *w, const uint8_t *b, size_t n)
{
	if (!reserve(w, n * 6))
		return;
	w->len += ws_json_escape(w->buf + w->len, b, n, false);
}

static void key(struct ws_jsonw *w, const char *k)
{
	if (!w->first)
		put(w, ",", 1);
	w->first = false;
	put(w, "\"", 1);
	put_escaped(w, (const uint8_t *)k, strlen(k));
	put(w, "\":", 2);
}

void jw_begin(struct ws_jsonw *w)
{
	w->len = 0;
	w->oom = false;
	w->first = true;
	put(w, "{", 1);
}

void jw_obj_open(struct ws_jsonw *w, const char *k)
{
	key(w, k);
	put(w, "{", 1);
	w->first = true;
}

void jw_obj_close(struct ws_jsonw *w)
{
	put(w, "}", 1);
	w->first = false;
}

void jw_str(struct ws_jsonw *w, const char *k, const char *s)
{
	jw_bytes(w, k, (const uint8_t *)s, strlen(s));
}

void jw_bytes(struct ws_jsonw *w, const char *k, const uint8_t *b, size_t n)
{
	key(w, k);
	put(w, "\"", 1);
	put_escaped(w, b, n);
	put(w, "\"", 1);
}

void jw_u64(struct ws_jsonw *w, const char *k, uint64_t v)
{
	char num[20];
	size_t n = ws_json_u64(num, v);

	key(w, k);
	put(w, num, n);
}

void jw_bool(struct ws_jsonw *w, const char *k, bool v)
{
	key(w, k);
	put(w, v ? "true" : "false", v ? 4 : 5);
}

int jw_end(struct ws_jsonw *w, FILE *f)
{
	put(w, "}\n", 2);
	if (w->oom)
		return -ENOMEM;
	if (fwrite(w->buf, 1, w->len, f) != w->len)
		return -EIO;
	return 0;
}
