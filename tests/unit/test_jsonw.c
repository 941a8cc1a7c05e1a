/* SPDX-License-Identifier: Apache-2.0 */
/* JSON escaping and integer formatting against plain reference versions. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonw.h"

/* One byte at a time, as the rules say it. */
static size_t ref_escape(char *dst, const uint8_t *src, size_t n, bool utf8)
{
	static const char hex[] = "0123456789abcdef";
	char *o = dst;
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t c = src[i];

		if (c >= 0x20 && c != '"' && c != '\\' && (utf8 || c < 0x7f)) {
			*o++ = (char)c;
			continue;
		}
		*o++ = '\\';
		if (c == '"' || c == '\\') {
			*o++ = (char)c;
		} else if (c == '\n') {
			*o++ = 'n';
		} else if (c == '\r') {
			*o++ = 'r';
		} else if (c == '\t') {
			*o++ = 't';
		} else {
			o += sprintf(o, "u00%c%c", hex[c >> 4], hex[c & 15]);
		}
	}
	return (size_t)(o - dst);
}

static void check(const uint8_t *in, size_t n)
{
	char want[6 * 64 + 8], got[6 * 64 + 8];
	int utf8;

	for (utf8 = 0; utf8 < 2; utf8++) {
		size_t a = ref_escape(want, in, n, utf8);
		size_t b = ws_json_escape(got, in, n, utf8);

		assert_int_equal(a, b);
		assert_memory_equal(want, got, a);
	}
}

/* Every byte value at every position of strings around the 8-byte words
 * the escaper reads. */
static void escape_every_byte(void **state)
{
	uint8_t in[24];
	size_t n, pos;
	int c;

	for (n = 1; n <= sizeof(in); n++)
		for (pos = 0; pos < n; pos++)
			for (c = 0; c < 256; c++) {
				memset(in, 'a', n);
				in[pos] = (uint8_t)c;
				check(in, n);
			}
}

static void escape_random(void **state)
{
	uint8_t in[64];
	unsigned seed = 12345;
	int it;

	for (it = 0; it < 20000; it++) {
		size_t n = (size_t)(rand_r(&seed) % 64), i;

		for (i = 0; i < n; i++) {
			int r = rand_r(&seed);

			/* odd: any bytes; even: mostly letters */
			if (!(it & 1) && r % 8)
				r = 'a' + (int)(i % 26);
			in[i] = (uint8_t)r;
		}
		check(in, n);
	}
}

static void u64_decimal(void **state)
{
	static const uint64_t v[] = {0,		 1,	   9,	  10,
				     99,	 100,	   12345, 4294967296ull,
				     UINT64_MAX, INT64_MAX};
	char got[24], want[24];
	size_t i, n;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		n = ws_json_u64(got, v[i]);
		got[n] = '\0';
		snprintf(want, sizeof(want), "%" PRIu64, v[i]);
		assert_string_equal(got, want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(escape_every_byte),
		cmocka_unit_test(escape_random),
		cmocka_unit_test(u64_decimal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
