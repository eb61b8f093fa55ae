/* Unit tests of the dedup cache (include/im/dedup.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "im/dedup.h"

#include "fail_alloc.h"
#include "test_rng.h"

#include <string.h>

static uint64_t seed;

static im_dedup *
make(uint32_t capacity, uint64_t ttl_ms)
{
	im_dedup_opts o = IM_DEDUP_OPTS_INIT;
	im_dedup *d = NULL;

	o.capacity = capacity;
	o.ttl_ms = ttl_ms;
	o.seed = seed;
	assert_int_equal(im_dedup_create(&d, &o), IM_OK);
	assert_non_null(d);
	return d;
}

static void
put(im_dedup *d, uint64_t conv, uint64_t sender, uint64_t id, im_seq seq,
    uint64_t now)
{
	im_dedup_val v = {seq, now};

	assert_int_equal(im_dedup_insert(d, conv, sender, id, &v, now, NULL),
			 IM_OK);
}

/* The seq held for a key, or 0 on a miss. */
static im_seq
get(im_dedup *d, uint64_t conv, uint64_t sender, uint64_t id, uint64_t now)
{
	im_dedup_val v = {0, 0};
	int rc = im_dedup_lookup(d, conv, sender, id, now, &v);

	if (rc == IM_ENOTFOUND) {
		return 0;
	}
	assert_int_equal(rc, IM_OK);
	return v.seq;
}

static void
test_dedup_lookup_finds_what_was_inserted_and_misses_the_rest(void **state)
{
	im_dedup *d = make(16, 0);
	im_dedup_val v;

	(void)state;
	assert_int_equal(im_dedup_lookup(d, 1, 2, 3, 0, &v), IM_ENOTFOUND);
	put(d, 1, 2, 3, 100, 7);
	assert_int_equal(im_dedup_lookup(d, 1, 2, 3, 8, &v), IM_OK);
	assert_int_equal(v.seq, 100);
	assert_int_equal(v.time_ms, 7);
	assert_int_equal(im_dedup_lookup(d, 1, 2, 3, 8, NULL), IM_OK);
	/* Each part of the key matters. */
	assert_int_equal(get(d, 9, 2, 3, 8), 0);
	assert_int_equal(get(d, 1, 9, 3, 8), 0);
	assert_int_equal(get(d, 1, 2, 9, 8), 0);
	assert_int_equal(im_dedup_count(d), 1);
	im_dedup_destroy(d);
}

static void
test_dedup_insert_overwrites_an_existing_key(void **state)
{
	im_dedup *d = make(4, 0);
	bool evicted = true;
	im_dedup_val v = {200, 9};

	(void)state;
	put(d, 1, 2, 3, 100, 0);
	assert_int_equal(im_dedup_insert(d, 1, 2, 3, &v, 1, &evicted), IM_OK);
	assert_false(evicted);
	assert_int_equal(get(d, 1, 2, 3, 2), 200);
	assert_int_equal(im_dedup_count(d), 1);
	im_dedup_destroy(d);
}

static void
test_dedup_lookup_refreshes_lru_order(void **state)
{
	im_dedup *d = make(3, 0);
	bool evicted = false;
	im_dedup_val v = {4, 0};

	(void)state;
	put(d, 1, 1, 1, 1, 0);
	put(d, 1, 1, 2, 2, 0);
	put(d, 1, 1, 3, 3, 0);
	/* Key 1 is the oldest insert but the most recently used now. */
	assert_int_equal(get(d, 1, 1, 1, 0), 1);
	assert_int_equal(im_dedup_insert(d, 1, 1, 4, &v, 0, &evicted), IM_OK);
	assert_true(evicted);
	assert_int_equal(get(d, 1, 1, 2, 0), 0);
	assert_int_equal(get(d, 1, 1, 1, 0), 1);
	assert_int_equal(get(d, 1, 1, 3, 0), 3);
	assert_int_equal(get(d, 1, 1, 4, 0), 4);
	im_dedup_destroy(d);
}

static void
test_dedup_full_cache_evicts_the_least_recently_used(void **state)
{
	im_dedup *d = make(100, 0);
	uint64_t i;
	bool evicted;
	im_dedup_val v = {0, 0};

	(void)state;
	for (i = 1; i <= 100; i++) {
		put(d, i % 7 + 1, i, i, i, 0);
	}
	assert_int_equal(im_dedup_count(d), 100);
	for (i = 101; i <= 150; i++) {
		v.seq = i;
		evicted = false;
		assert_int_equal(im_dedup_insert(d, i % 7 + 1, i, i, &v, 0,
						 &evicted), IM_OK);
		assert_true(evicted);
	}
	assert_int_equal(im_dedup_count(d), 100);
	for (i = 1; i <= 50; i++) {
		assert_int_equal(get(d, i % 7 + 1, i, i, 0), 0);
	}
	for (i = 51; i <= 150; i++) {
		assert_int_equal(get(d, i % 7 + 1, i, i, 0), i);
	}
	im_dedup_destroy(d);
}

static void
test_dedup_entry_expires_at_exactly_ttl(void **state)
{
	im_dedup *d = make(8, 100);

	(void)state;
	put(d, 1, 1, 1, 5, 1000);
	assert_int_equal(get(d, 1, 1, 1, 1099), 5);
	assert_int_equal(get(d, 1, 1, 1, 1100), 0);
	/* The expired entry was removed by the lookup. */
	assert_int_equal(im_dedup_count(d), 0);
	im_dedup_destroy(d);
}

static void
test_dedup_lookup_does_not_extend_the_ttl(void **state)
{
	im_dedup *d = make(8, 100);

	(void)state;
	put(d, 1, 1, 1, 5, 1000);
	assert_int_equal(get(d, 1, 1, 1, 1050), 5);
	assert_int_equal(get(d, 1, 1, 1, 1099), 5);
	assert_int_equal(get(d, 1, 1, 1, 1100), 0);
	/* An overwrite does restamp. */
	put(d, 1, 1, 1, 6, 1200);
	assert_int_equal(get(d, 1, 1, 1, 1299), 6);
	im_dedup_destroy(d);
}

static void
test_dedup_ttl_zero_never_expires(void **state)
{
	im_dedup *d = make(8, 0);

	(void)state;
	put(d, 1, 1, 1, 5, 0);
	assert_int_equal(get(d, 1, 1, 1, UINT64_MAX), 5);
	assert_int_equal(im_dedup_expire(d, UINT64_MAX, 100), 0);
	assert_int_equal(im_dedup_count(d), 1);
	im_dedup_destroy(d);
}

static void
test_dedup_backward_clock_jump_neither_ages_nor_extends_life(void **state)
{
	im_dedup *d = make(8, 100);

	(void)state;
	put(d, 1, 1, 1, 5, 1000);
	/* Going back counts as no time at all. */
	assert_int_equal(get(d, 1, 1, 1, 10), 5);
	assert_int_equal(get(d, 1, 1, 1, 0), 5);
	/* An entry inserted while the clock is behind is stamped with the
	 * newest time seen (1000), not 500: it dies with the first one. */
	put(d, 1, 1, 2, 6, 500);
	assert_int_equal(get(d, 1, 1, 2, 599), 6);
	assert_int_equal(get(d, 1, 1, 2, 600), 6);
	assert_int_equal(get(d, 1, 1, 2, 1099), 6);
	assert_int_equal(get(d, 1, 1, 1, 1099), 5);
	assert_int_equal(get(d, 1, 1, 2, 1100), 0);
	assert_int_equal(get(d, 1, 1, 1, 1100), 0);
	/* After 1100 was seen, going back does not revive anything. */
	put(d, 1, 1, 3, 7, 1150);
	assert_int_equal(get(d, 1, 1, 3, 0), 7);
	assert_int_equal(get(d, 1, 1, 1, 0), 0);
	im_dedup_destroy(d);
}

static void
test_dedup_forward_clock_jump_expires_entries(void **state)
{
	im_dedup *d = make(8, 100);

	(void)state;
	put(d, 1, 1, 1, 5, 1000);
	put(d, 1, 1, 2, 6, 1000);
	assert_int_equal(im_dedup_expire(d, 1000000, 10), 2);
	assert_int_equal(im_dedup_count(d), 0);
	/* Jumping back after the jump forward: still expired, still empty. */
	assert_int_equal(get(d, 1, 1, 1, 1001), 0);
	im_dedup_destroy(d);
}

static void
test_dedup_full_cache_reuses_an_expired_entry_before_evicting(void **state)
{
	im_dedup *d = make(2, 100);
	im_dedup_val v = {3, 0};
	bool evicted = true;

	(void)state;
	put(d, 1, 1, 1, 1, 0);
	put(d, 1, 1, 2, 2, 50);
	/* Key 1 is recently used but expired at 100; key 2 is live. */
	assert_int_equal(im_dedup_insert(d, 1, 1, 3, &v, 120, &evicted),
			 IM_OK);
	assert_false(evicted);
	assert_int_equal(get(d, 1, 1, 2, 120), 2);
	assert_int_equal(get(d, 1, 1, 3, 120), 3);
	assert_int_equal(get(d, 1, 1, 1, 120), 0);
	im_dedup_destroy(d);
}

static void
test_dedup_expire_is_bounded_by_max(void **state)
{
	im_dedup *d = make(64, 10);
	uint64_t i;

	(void)state;
	for (i = 0; i < 40; i++) {
		put(d, 1, 1, i, i + 1, i);
	}
	/* At 45 the keys inserted at 0..35 are expired: 36 of them. */
	assert_int_equal(im_dedup_expire(d, 45, 0), 0);
	assert_int_equal(im_dedup_expire(d, 45, 10), 10);
	assert_int_equal(im_dedup_count(d), 30);
	assert_int_equal(im_dedup_expire(d, 45, 10), 10);
	assert_int_equal(im_dedup_expire(d, 45, 100), 16);
	assert_int_equal(im_dedup_expire(d, 45, 100), 0);
	assert_int_equal(im_dedup_count(d), 4);
	for (i = 36; i < 40; i++) {
		assert_int_equal(get(d, 1, 1, i, 45), i + 1);
	}
	im_dedup_destroy(d);
}

static void
test_dedup_forget_conv_drops_only_that_conversation(void **state)
{
	im_dedup *d = make(64, 0);
	uint64_t i;

	(void)state;
	for (i = 0; i < 30; i++) {
		put(d, i % 3 + 1, i, i, i + 1, 0);
	}
	assert_int_equal(im_dedup_forget_conv(d, 2), 10);
	assert_int_equal(im_dedup_forget_conv(d, 2), 0);
	assert_int_equal(im_dedup_forget_conv(d, 99), 0);
	assert_int_equal(im_dedup_count(d), 20);
	for (i = 0; i < 30; i++) {
		assert_int_equal(get(d, i % 3 + 1, i, i, 0),
				 i % 3 + 1 == 2 ? 0 : i + 1);
	}
	/* Freed entries are reusable. */
	for (i = 100; i < 144; i++) {
		put(d, 5, i, i, i, 0);
	}
	assert_int_equal(im_dedup_count(d), 64);
	im_dedup_destroy(d);
}

static void
test_dedup_capacity_one_keeps_the_last_key(void **state)
{
	im_dedup *d = make(1, 0);
	im_dedup_val v = {2, 0};
	bool evicted = false;

	(void)state;
	put(d, 1, 1, 1, 1, 0);
	assert_int_equal(im_dedup_insert(d, 1, 1, 2, &v, 0, &evicted), IM_OK);
	assert_true(evicted);
	assert_int_equal(get(d, 1, 1, 1, 0), 0);
	assert_int_equal(get(d, 1, 1, 2, 0), 2);
	put(d, 1, 1, 2, 3, 0);
	assert_int_equal(get(d, 1, 1, 2, 0), 3);
	assert_int_equal(im_dedup_count(d), 1);
	assert_int_equal(im_dedup_forget_conv(d, 1), 1);
	assert_int_equal(im_dedup_count(d), 0);
	im_dedup_destroy(d);
}

static void
test_dedup_create_rejects_invalid_opts(void **state)
{
	im_dedup_opts o = IM_DEDUP_OPTS_INIT;
	im_dedup *d = (im_dedup *)&o;

	(void)state;
	assert_int_equal(im_dedup_create(NULL, &o), IM_EINVAL);
	assert_int_equal(im_dedup_create(&d, NULL), IM_EINVAL);
	assert_null(d);
	o.capacity = 0;
	assert_int_equal(im_dedup_create(&d, &o), IM_EINVAL);
	o.capacity = (1u << 28) + 1;
	assert_int_equal(im_dedup_create(&d, &o), IM_EINVAL);
	o.capacity = 16;
	o.version = 0;
	assert_int_equal(im_dedup_create(&d, &o), IM_EINVAL);
	o.version = IM_DEDUP_OPTS_VERSION + 1;
	assert_int_equal(im_dedup_create(&d, &o), IM_EINVAL);
	assert_null(d);
}

static void
test_dedup_null_arguments_are_rejected_without_effect(void **state)
{
	im_dedup *d = make(4, 0);
	im_dedup_val v = {1, 0};

	(void)state;
	assert_int_equal(im_dedup_lookup(NULL, 1, 1, 1, 0, &v), IM_EINVAL);
	assert_int_equal(im_dedup_insert(NULL, 1, 1, 1, &v, 0, NULL),
			 IM_EINVAL);
	assert_int_equal(im_dedup_insert(d, 1, 1, 1, NULL, 0, NULL),
			 IM_EINVAL);
	assert_int_equal(im_dedup_count(d), 0);
	assert_int_equal(im_dedup_expire(NULL, 0, 1), 0);
	assert_int_equal(im_dedup_forget_conv(NULL, 1), 0);
	assert_int_equal(im_dedup_count(NULL), 0);
	im_dedup_destroy(NULL);
	im_dedup_destroy(d);
}

static void
test_dedup_create_survives_allocation_failure_at_every_step(void **state)
{
	unsigned long n;
	int rc = IM_ENOMEM;

	(void)state;
	for (n = 1; n < 100 && rc != IM_OK; n++) {
		fail_alloc fa = {n, 0, 0};
		im_dedup_opts o = IM_DEDUP_OPTS_INIT;
		im_dedup *d = (im_dedup *)&fa;

		o.capacity = 32;
		o.alloc = fail_alloc_allocator(&fa);
		rc = im_dedup_create(&d, &o);
		if (rc == IM_OK) {
			put(d, 1, 1, 1, 1, 0);
			assert_int_equal(get(d, 1, 1, 1, 0), 1);
			im_dedup_destroy(d);
		} else {
			assert_int_equal(rc, IM_ENOMEM);
			assert_null(d);
		}
		assert_int_equal(fa.live, 0);
	}
	assert_int_equal(rc, IM_OK);
	assert_true(n > 2);
}

static void
test_dedup_lookup_and_insert_never_allocate(void **state)
{
	fail_alloc fa = {0, 0, 0};
	im_dedup_opts o = IM_DEDUP_OPTS_INIT;
	im_dedup *d = NULL;
	unsigned long calls;
	uint64_t i;

	(void)state;
	o.capacity = 8;
	o.ttl_ms = 5;
	o.alloc = fail_alloc_allocator(&fa);
	assert_int_equal(im_dedup_create(&d, &o), IM_OK);
	calls = fa.calls;
	for (i = 0; i < 100; i++) {
		put(d, i % 3, i, i, i, i);
		(void)get(d, i % 3, i - 1, i - 1, i);
	}
	(void)im_dedup_expire(d, 1000, 100);
	(void)im_dedup_forget_conv(d, 1);
	assert_int_equal(fa.calls, calls);
	im_dedup_destroy(d);
	assert_int_equal(fa.live, 0);
}

/* The accounted bytes are fixed by the capacity (everything is allocated
 * at create) and cover at least one entry's keys per slot. */
static void
test_dedup_mem_is_fixed_at_create_and_grows_with_capacity(void **state)
{
	im_dedup *small, *big;
	size_t before;
	uint64_t i;

	(void)state;
	assert_int_equal(im_dedup_mem(NULL), 0);
	small = make(10, 0);
	big = make(1000, 0);
	assert_true(im_dedup_mem(small) > 10 * 3 * sizeof(uint64_t));
	assert_true(im_dedup_mem(big) > 1000 * 3 * sizeof(uint64_t));
	assert_true(im_dedup_mem(big) > 50 * im_dedup_mem(small));
	before = im_dedup_mem(big);
	for (i = 0; i < 2000; i++) {
		put(big, i % 7, i, i, i, i);
	}
	assert_int_equal(im_dedup_count(big), 1000);
	assert_int_equal(im_dedup_mem(big), before);
	im_dedup_destroy(small);
	im_dedup_destroy(big);
}

/*
 * Reference model: a plain array scanned linearly, with explicit use and
 * insert ticks standing for the LRU and age lists.
 */
#define MODEL_MAX 32
struct mentry {
	uint64_t conv, sender, id;
	im_dedup_val val;
	uint64_t stamp;
	uint64_t used;
	uint64_t born;
};

struct model {
	struct mentry e[MODEL_MAX];
	size_t n, cap;
	uint64_t ttl, newest, tick;
};

static bool
m_expired(const struct model *m, size_t i)
{
	return m->ttl != 0 && m->newest - m->e[i].stamp >= m->ttl;
}

static void
m_remove(struct model *m, size_t i)
{
	m->e[i] = m->e[--m->n];
}

static size_t
m_find(const struct model *m, uint64_t c, uint64_t s, uint64_t id)
{
	size_t i;

	for (i = 0; i < m->n; i++) {
		if (m->e[i].conv == c && m->e[i].sender == s &&
		    m->e[i].id == id) {
			return i;
		}
	}
	return SIZE_MAX;
}

static size_t
m_min(const struct model *m, bool by_age)
{
	size_t i, best = 0;

	for (i = 1; i < m->n; i++) {
		uint64_t a = by_age ? m->e[i].born : m->e[i].used;
		uint64_t b = by_age ? m->e[best].born : m->e[best].used;

		if (a < b) {
			best = i;
		}
	}
	return best;
}

static void
test_dedup_matches_a_reference_model_over_random_ops(void **state)
{
	test_rng rng = {seed};
	unsigned round;

	(void)state;
	for (round = 0; round < 20; round++) {
		struct model m;
		im_dedup *d;
		uint64_t now = test_rng_below(&rng, 1000);
		unsigned op;

		memset(&m, 0, sizeof(m));
		m.cap = 1 + test_rng_below(&rng, MODEL_MAX);
		m.ttl = test_rng_below(&rng, 4) == 0 ? 0
			: 1 + test_rng_below(&rng, 200);
		d = make((uint32_t)m.cap, m.ttl);
		for (op = 0; op < 3000; op++) {
			uint64_t c = 1 + test_rng_below(&rng, 3);
			uint64_t s = 1 + test_rng_below(&rng, 3);
			uint64_t id = test_rng_below(&rng, 8);
			uint64_t r = test_rng_below(&rng, 100);
			im_dedup_val v = {0, 0}, got = {0, 0};
			size_t i;

			if (r < 3 && now > 300) {
				now -= test_rng_below(&rng, 300);
			} else if (r < 5) {
				now += test_rng_below(&rng, 400);
			} else {
				now += test_rng_below(&rng, 4);
			}
			r = test_rng_below(&rng, 100);
			/* forget_conv is the one call that sees no clock. */
			if (r < 97 && now > m.newest) {
				m.newest = now;
			}
			if (r < 45) {
				int rc = im_dedup_lookup(d, c, s, id, now,
							 &got);

				i = m_find(&m, c, s, id);
				if (i != SIZE_MAX && m_expired(&m, i)) {
					m_remove(&m, i);
					i = SIZE_MAX;
				}
				if (i == SIZE_MAX) {
					assert_int_equal(rc, IM_ENOTFOUND);
				} else {
					assert_int_equal(rc, IM_OK);
					assert_int_equal(got.seq,
							 m.e[i].val.seq);
					assert_int_equal(got.time_ms,
							 m.e[i].val.time_ms);
					m.e[i].used = ++m.tick;
				}
			} else if (r < 90) {
				bool ev = false, mev = false;

				v.seq = test_rng_next(&rng);
				v.time_ms = now;
				assert_int_equal(im_dedup_insert(d, c, s, id,
								 &v, now,
								 &ev),
						 IM_OK);
				i = m_find(&m, c, s, id);
				if (i == SIZE_MAX) {
					if (m.n == m.cap) {
						size_t o = m_min(&m, true);

						if (!m_expired(&m, o)) {
							o = m_min(&m, false);
							mev = true;
						}
						m_remove(&m, o);
					}
					i = m.n++;
					m.e[i].conv = c;
					m.e[i].sender = s;
					m.e[i].id = id;
				}
				m.e[i].val = v;
				m.e[i].stamp = m.newest;
				m.e[i].used = m.e[i].born = ++m.tick;
				assert_int_equal(ev, mev);
			} else if (r < 97) {
				size_t max = test_rng_below(&rng, 4);
				size_t n = 0;

				while (n < max && m.n > 0 &&
				       m_expired(&m, m_min(&m, true))) {
					m_remove(&m, m_min(&m, true));
					n++;
				}
				assert_int_equal(im_dedup_expire(d, now, max),
						 n);
			} else {
				size_t n = 0;

				for (i = m.n; i-- > 0;) {
					if (m.e[i].conv == c) {
						m_remove(&m, i);
						n++;
					}
				}
				assert_int_equal(im_dedup_forget_conv(d, c),
						 n);
			}
			assert_int_equal(im_dedup_count(d), m.n);
		}
		im_dedup_destroy(d);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_dedup_lookup_finds_what_was_inserted_and_misses_the_rest),
		cmocka_unit_test(test_dedup_insert_overwrites_an_existing_key),
		cmocka_unit_test(test_dedup_lookup_refreshes_lru_order),
		cmocka_unit_test(
			test_dedup_full_cache_evicts_the_least_recently_used),
		cmocka_unit_test(test_dedup_entry_expires_at_exactly_ttl),
		cmocka_unit_test(test_dedup_lookup_does_not_extend_the_ttl),
		cmocka_unit_test(test_dedup_ttl_zero_never_expires),
		cmocka_unit_test(
			test_dedup_backward_clock_jump_neither_ages_nor_extends_life),
		cmocka_unit_test(
			test_dedup_forward_clock_jump_expires_entries),
		cmocka_unit_test(
			test_dedup_full_cache_reuses_an_expired_entry_before_evicting),
		cmocka_unit_test(test_dedup_expire_is_bounded_by_max),
		cmocka_unit_test(
			test_dedup_forget_conv_drops_only_that_conversation),
		cmocka_unit_test(test_dedup_capacity_one_keeps_the_last_key),
		cmocka_unit_test(test_dedup_create_rejects_invalid_opts),
		cmocka_unit_test(
			test_dedup_null_arguments_are_rejected_without_effect),
		cmocka_unit_test(
			test_dedup_create_survives_allocation_failure_at_every_step),
		cmocka_unit_test(test_dedup_lookup_and_insert_never_allocate),
		cmocka_unit_test(
			test_dedup_mem_is_fixed_at_create_and_grows_with_capacity),
		cmocka_unit_test(
			test_dedup_matches_a_reference_model_over_random_ops),
	};

	seed = test_seed();
	return cmocka_run_group_tests_name("dedup", tests, NULL, NULL);
}
