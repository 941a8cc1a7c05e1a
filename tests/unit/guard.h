/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guard-page feeding for parser tests: input is copied so that it ends
 * right before a PROT_NONE page, so a parser that reads one byte past what it
 * was given crashes the test instead of passing by luck.
 * Use guard_setup/guard_teardown as the cmocka group fixtures.
 */
#ifndef WIRESPAN_TEST_GUARD_H
#define WIRESPAN_TEST_GUARD_H

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Largest chunk one guarded copy holds. */
#define GUARD_AREA (256u * 1024u)

static uint8_t *guard_base; /* GUARD_AREA bytes, then a PROT_NONE page */

static int guard_setup(void **state)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *m = mmap(NULL, GUARD_AREA + (size_t)pg, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)state;
	if (m == MAP_FAILED)
		return -1;
	if (mprotect(m + GUARD_AREA, (size_t)pg, PROT_NONE))
		return -1;
	guard_base = m;
	return 0;
}

static int guard_teardown(void **state)
{
	(void)state;
	munmap(guard_base, GUARD_AREA + (size_t)sysconf(_SC_PAGESIZE));
	return 0;
}

/* Copy n <= GUARD_AREA bytes so that they end at the guard page. */
static const uint8_t *guard_copy(const uint8_t *b, size_t n)
{
	uint8_t *dst = guard_base + GUARD_AREA - n;

	memcpy(dst, b, n);
	return dst;
}

#endif
