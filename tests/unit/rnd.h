/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small deterministic PRNG (xorshift64) for tests that generate random
 * inputs: the same seed gives the same cases on every run and machine.
 * Set rnd_state to choose another sequence.
 */
#ifndef WIRESPAN_TEST_RND_H
#define WIRESPAN_TEST_RND_H

#include <stdint.h>

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static inline uint64_t rnd(void)
{
	uint64_t x = rnd_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rnd_state = x;
}

/* Uniform enough in [0, n) for test inputs (n > 0). */
static inline unsigned rnd_below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

#endif
