/*
 * Seeded PRNG for property tests. The seed comes from IM_TEST_SEED or the
 * clock; it is printed so a failure can be replayed with the same seed.
 */
#ifndef IM_TEST_RNG_H
#define IM_TEST_RNG_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct test_rng {
	uint64_t s;
} test_rng;

static inline uint64_t
test_rng_next(test_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, n) (n > 0); the modulo bias is irrelevant for tests. */
static inline uint64_t
test_rng_below(test_rng *r, uint64_t n)
{
	return test_rng_next(r) % n;
}

static inline uint64_t
test_seed(void)
{
	const char *env = getenv("IM_TEST_SEED");
	uint64_t seed;

	if (env != NULL && *env != '\0') {
		seed = strtoull(env, NULL, 0);
	} else {
		seed = (uint64_t)time(NULL);
	}
	fprintf(stderr, "# IM_TEST_SEED=%llu\n", (unsigned long long)seed);
	return seed;
}

#endif
