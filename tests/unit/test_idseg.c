#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "im/idseg.h"
#include "mem_store.h"
#include "store_backends.h"
#include "test_rng.h"

static uint64_t seed;


static const im_seg_key gkey = {IM_SEG_GROUP_SEQ, 42};

static void
init(im_idseg *s, uint32_t step, uint32_t percent)
{
	im_idseg_opts o = IM_IDSEG_OPTS_INIT;

	o.step = step;
	o.refill_percent = percent;
	assert_int_equal(im_idseg_init(s, &gkey, &o), IM_OK);
}

/* Next id, refilling from the store first whenever it asks. */
static uint64_t
next_refilling(im_idseg *s, im_store *st)
{
	uint64_t id = 0;

	if (im_idseg_wants_refill(s)) {
		assert_int_equal(im_idseg_refill(s, st), IM_OK);
	}
	assert_int_equal(im_idseg_next(s, &id), IM_OK);
	return id;
}

static void
assert_same_state(const im_idseg *a, const im_idseg *b)
{
	assert_int_equal(a->key.space, b->key.space);
	assert_int_equal(a->key.id, b->key.id);
	assert_int_equal(a->step, b->step);
	assert_int_equal(a->refill_percent, b->refill_percent);
	assert_int_equal(a->cur.first, b->cur.first);
	assert_int_equal(a->cur.last, b->cur.last);
	assert_int_equal(a->next, b->next);
	assert_int_equal(a->spare.first, b->spare.first);
	assert_int_equal(a->spare.last, b->spare.last);
	assert_int_equal(a->last_id, b->last_id);
}

static void
test_idseg_init_rejects_bad_opts(void **state)
{
	im_idseg_opts o = IM_IDSEG_OPTS_INIT;
	im_seg_key bad = {(im_seg_space)3, 1};
	im_idseg s;

	(void)state;
	assert_int_equal(im_idseg_init(NULL, &gkey, &o), IM_EINVAL);
	assert_int_equal(im_idseg_init(&s, NULL, &o), IM_EINVAL);
	assert_int_equal(im_idseg_init(&s, &bad, &o), IM_EINVAL);
	o.version = 0;
	assert_int_equal(im_idseg_init(&s, &gkey, &o), IM_EINVAL);
	o.version = IM_IDSEG_OPTS_VERSION + 1;
	assert_int_equal(im_idseg_init(&s, &gkey, &o), IM_EINVAL);
	o.version = IM_IDSEG_OPTS_VERSION;
	o.step = 0;
	assert_int_equal(im_idseg_init(&s, &gkey, &o), IM_EINVAL);
	o.step = 1;
	o.refill_percent = 0;
	assert_int_equal(im_idseg_init(&s, &gkey, &o), IM_EINVAL);
	o.refill_percent = 101;
	assert_int_equal(im_idseg_init(&s, &gkey, &o), IM_EINVAL);
	o.refill_percent = 100;
	assert_int_equal(im_idseg_init(&s, &gkey, &o), IM_OK);
	/* NULL opts means the defaults. */
	assert_int_equal(im_idseg_init(&s, &gkey, NULL), IM_OK);
	assert_int_equal(s.step, 1000);
	assert_int_equal(s.refill_percent, 20);
	im_idseg_finish(&s);
	im_idseg_finish(NULL);
}

static void
test_idseg_new_allocator_needs_a_refill_before_its_first_id(void **state)
{
	im_store *st = store_of(state);
	im_idseg s;
	uint64_t id = 99;

	init(&s, 10, 20);
	assert_true(im_idseg_wants_refill(&s));
	assert_int_equal(im_idseg_available(&s), 0);
	assert_int_equal(im_idseg_next(&s, &id), IM_EAGAIN);
	assert_int_equal(id, 99);
	assert_int_equal(im_idseg_refill(&s, st), IM_OK);
	assert_int_equal(im_idseg_available(&s), 10);
	assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	/* The first segment of a new key starts at 1. */
	assert_int_equal(id, 1);
	im_idseg_finish(&s);
}

static void
test_idseg_ids_are_strictly_increasing_and_unique(void **state)
{
	im_store *st = store_of(state);
	im_idseg s;
	uint64_t prev = 0;

	init(&s, 7, 50);
	for (int i = 0; i < 10000; i++) {
		uint64_t id = next_refilling(&s, st);

		assert_true(id > prev);
		prev = id;
	}
	/* One owner, no restart: no id was skipped. */
	assert_int_equal(prev, 10000);
	assert_int_equal(s.last_id, 10000);
	im_idseg_finish(&s);
}

static void
test_idseg_wants_refill_once_refill_percent_is_used(void **state)
{
	im_store *st = store_of(state);
	im_idseg s;
	uint64_t id;

	init(&s, 10, 20);
	assert_int_equal(im_idseg_refill(&s, st), IM_OK);
	assert_false(im_idseg_wants_refill(&s));
	assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	assert_false(im_idseg_wants_refill(&s)); /* 1 of 10 used */
	assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	assert_true(im_idseg_wants_refill(&s)); /* 2 of 10 = 20% */
	assert_int_equal(im_idseg_refill(&s, st), IM_OK);
	/* The prefetched segment waits in spare. */
	assert_false(im_idseg_wants_refill(&s));
	assert_int_equal(im_idseg_available(&s), 18);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	}
	assert_int_equal(id, 10);
	/* The spare became current right away; nothing of it is used. */
	assert_false(im_idseg_wants_refill(&s));
	assert_int_equal(im_idseg_available(&s), 10);
	assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	assert_int_equal(id, 11);
	assert_false(im_idseg_wants_refill(&s));
	assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	assert_true(im_idseg_wants_refill(&s));
	assert_false(im_idseg_wants_refill(NULL));
}

static void
test_idseg_refill_percent_100_asks_only_when_empty(void **state)
{
	im_store *st = store_of(state);
	im_idseg s;
	uint64_t id;

	init(&s, 4, 100);
	assert_int_equal(im_idseg_refill(&s, st), IM_OK);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(im_idseg_next(&s, &id), IM_OK);
		assert_false(im_idseg_wants_refill(&s));
	}
	assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	assert_true(im_idseg_wants_refill(&s));
	assert_int_equal(im_idseg_next(&s, &id), IM_EAGAIN);
}

/*
 * Steady state: the server sees wants_refill and the segment arrives some
 * ids later (a worker, a round trip). As long as the part of a segment left
 * after refill_percent covers that delay, no caller ever waits.
 */
static void
test_idseg_steady_state_with_refill_when_wanted_never_waits(void **state)
{
	test_rng r = {seed};
	im_store *st = store_of(state);

	for (int round = 0; round < 50; round++) {
		uint32_t step = 1 + (uint32_t)test_rng_below(&r, 200);
		uint32_t pct = 1 + (uint32_t)test_rng_below(&r, 99);
		/* Ids left in cur when the refill is asked for. */
		uint64_t slack = step - (uint64_t)step * pct / 100;
		uint64_t delay = test_rng_below(&r, slack + 1);
		uint64_t prev = 0;
		long pending = -1; /* ids until the refill lands, -1 = none */
		im_seg_key key = {IM_SEG_USER_SEQ, (uint64_t)round + 1};
		im_idseg_opts o = IM_IDSEG_OPTS_INIT;
		im_idseg s;

		o.step = step;
		o.refill_percent = pct;
		assert_int_equal(im_idseg_init(&s, &key, &o), IM_OK);
		assert_int_equal(im_idseg_refill(&s, st), IM_OK);
		for (int i = 0; i < 5000; i++) {
			uint64_t id;

			/*
			 * A refill that lands in an empty cur can make it
			 * ask again at once; hence up to two rounds.
			 */
			for (int k = 0; k < 2; k++) {
				if (pending < 0 && im_idseg_wants_refill(&s)) {
					pending = (long)delay;
				}
				if (pending != 0) {
					break;
				}
				assert_int_equal(im_idseg_refill(&s, st),
						 IM_OK);
				pending = -1;
			}
			assert_int_equal(im_idseg_next(&s, &id), IM_OK);
			assert_true(id > prev);
			prev = id;
			if (pending > 0) {
				pending--;
			}
		}
		im_idseg_finish(&s);
	}
}

static void
test_idseg_next_returns_eagain_when_both_buffers_are_empty(void **state)
{
	im_store *st = store_of(state);
	im_idseg s;
	uint64_t id;

	init(&s, 3, 20);
	assert_int_equal(im_idseg_refill(&s, st), IM_OK);
	assert_int_equal(im_idseg_refill(&s, st), IM_OK);
	for (uint64_t want = 1; want <= 6; want++) {
		assert_int_equal(im_idseg_next(&s, &id), IM_OK);
		assert_int_equal(id, want);
	}
	assert_int_equal(im_idseg_available(&s), 0);
	assert_int_equal(im_idseg_next(&s, &id), IM_EAGAIN);
	assert_int_equal(im_idseg_next(&s, &id), IM_EAGAIN);
	assert_int_equal(im_idseg_next(NULL, &id), IM_EINVAL);
	assert_int_equal(im_idseg_next(&s, NULL), IM_EINVAL);
	/* Still consistent: a refill brings it back. */
	assert_int_equal(im_idseg_refill(&s, st), IM_OK);
	assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	assert_int_equal(id, 7);
}

static void
test_idseg_restart_never_reuses_or_goes_below_a_handed_out_id(void **state)
{
	im_store *st = store_of(state);
	im_idseg before, after;
	uint64_t id, held;

	init(&before, 100, 10);
	for (int i = 0; i < 250; i++) {
		next_refilling(&before, st);
	}
	/* It holds the rest of its segment and a prefetched spare. */
	assert_false(im_idseg_wants_refill(&before));
	held = before.spare.last;
	assert_true(held > before.last_id);

	/* The process dies: a new allocator on the same key. */
	init(&after, 100, 10);
	assert_int_equal(im_idseg_next(&after, &id), IM_EAGAIN);
	id = next_refilling(&after, st);
	assert_true(id > before.last_id);
	assert_true(id > held);
}

static void
test_idseg_new_owner_never_hands_out_an_id_the_old_owner_could(void **state)
{
	static uint8_t owner_of[20000];
	im_store *st = store_of(state);
	test_rng r = {seed ^ 0x77};
	im_idseg a, b;
	uint64_t held;

	memset(owner_of, 0, sizeof(owner_of));
	init(&a, 37, 30);
	for (int i = 0; i < 100; i++) {
		owner_of[next_refilling(&a, st)] = 1;
	}
	/* a holds the rest of its segment and a prefetched spare. */
	assert_int_equal(im_idseg_available(&a), 111 - 100 + 37);
	held = a.spare.last;
	/*
	 * The slot moves to b while a (a zombie) still holds a segment and
	 * a spare. Both keep handing out ids, and a even refills.
	 */
	init(&b, 50, 20);
	for (int i = 0; i < 5000; i++) {
		im_idseg *who = test_rng_below(&r, 2) ? &a : &b;
		uint8_t tag = who == &a ? 1 : 2;
		uint64_t id = next_refilling(who, st);

		assert_true(id < sizeof(owner_of));
		/* Never handed out by anyone before. */
		assert_int_equal(owner_of[id], 0);
		owner_of[id] = tag;
	}
	/* b's first id lies above everything a held when b started. */
	for (uint64_t id = 1; id < sizeof(owner_of); id++) {
		if (owner_of[id] == 2) {
			assert_true(id > held);
			break;
		}
	}
}

/*
 * One key, a sequence of owners: each one runs for a while with its own
 * random step and refill policy, then "restarts" (a new allocator), or
 * resets, or is fed a segment taken directly from the store. Every id
 * must be larger than every id handed out before, by anyone.
 */
static void
test_idseg_random_steps_and_restarts_keep_ids_increasing(void **state)
{
	test_rng r = {seed ^ 0x99};
	im_store *st = store_of(state);
	uint64_t prev = 0, handed = 0;
	im_idseg s;

	init(&s, 1 + (uint32_t)test_rng_below(&r, 64), 50);
	for (int op = 0; op < 20000; op++) {
		uint64_t pick = test_rng_below(&r, 100);
		uint64_t id;
		int rc;

		if (pick < 2) {
			init(&s, 1 + (uint32_t)test_rng_below(&r, 64),
			     1 + (uint32_t)test_rng_below(&r, 100));
		} else if (pick < 4) {
			im_idseg_reset(&s);
		} else if (pick < 6) {
			im_seg g;
			uint32_t step = 1 + (uint32_t)test_rng_below(&r, 64);

			assert_int_equal(im_store_seg_take(st, &gkey,
							   step, &g),
					 IM_OK);
			rc = im_idseg_feed(&s, &g);
			assert_true(rc == IM_OK || rc == IM_EFULL);
		} else if (pick < 20) {
			rc = im_idseg_refill(&s, st);
			assert_true(rc == IM_OK || rc == IM_EFULL);
		} else {
			rc = im_idseg_next(&s, &id);
			if (rc == IM_EAGAIN) {
				assert_int_equal(im_idseg_available(&s), 0);
				continue;
			}
			assert_int_equal(rc, IM_OK);
			assert_true(id > prev);
			prev = id;
			handed++;
		}
	}
	assert_true(handed > 1000);
}

static void
test_idseg_feed_rejects_stale_and_empty_segments(void **state)
{
	im_idseg s;
	im_seg g;
	uint64_t id;

	(void)state;
	init(&s, 10, 20);
	g = (im_seg){5, 4};
	assert_int_equal(im_idseg_feed(&s, &g), IM_EINVAL);
	g = (im_seg){0, 3};
	assert_int_equal(im_idseg_feed(&s, &g), IM_EINVAL);
	g = (im_seg){1, UINT64_MAX};
	assert_int_equal(im_idseg_feed(&s, &g), IM_EINVAL);
	assert_int_equal(im_idseg_feed(&s, NULL), IM_EINVAL);
	assert_int_equal(im_idseg_feed(NULL, &g), IM_EINVAL);

	g = (im_seg){1, 10};
	assert_int_equal(im_idseg_feed(&s, &g), IM_OK);
	/* Overlapping what cur holds. */
	g = (im_seg){5, 20};
	assert_int_equal(im_idseg_feed(&s, &g), IM_EINVAL);
	g = (im_seg){11, 11};
	assert_int_equal(im_idseg_feed(&s, &g), IM_OK);
	assert_int_equal(im_idseg_available(&s), 11);
	for (int i = 0; i < 11; i++) {
		assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	}
	assert_int_equal(id, 11);
	/* Both buffers are empty now, but ids 1..11 are gone for good. */
	g = (im_seg){3, 8};
	assert_int_equal(im_idseg_feed(&s, &g), IM_EINVAL);
	g = (im_seg){11, 30};
	assert_int_equal(im_idseg_feed(&s, &g), IM_EINVAL);
	im_idseg_reset(&s);
	assert_int_equal(im_idseg_feed(&s, &g), IM_EINVAL);
	g = (im_seg){12, 30};
	assert_int_equal(im_idseg_feed(&s, &g), IM_OK);
	assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	assert_int_equal(id, 12);
}

static void
test_idseg_feed_returns_efull_when_both_buffers_are_full(void **state)
{
	im_idseg s, copy;
	im_seg g;

	(void)state;
	init(&s, 10, 20);
	g = (im_seg){1, 10};
	assert_int_equal(im_idseg_feed(&s, &g), IM_OK);
	g = (im_seg){11, 20};
	assert_int_equal(im_idseg_feed(&s, &g), IM_OK);
	copy = s;
	g = (im_seg){21, 30};
	assert_int_equal(im_idseg_feed(&s, &g), IM_EFULL);
	assert_same_state(&s, &copy);
}

static void
test_idseg_huge_segments_do_not_overflow_the_arithmetic(void **state)
{
	im_idseg s;
	im_seg g;
	uint64_t id;

	(void)state;
	init(&s, 10, 50);
	g = (im_seg){1, UINT64_MAX / 2};
	assert_int_equal(im_idseg_feed(&s, &g), IM_OK);
	g = (im_seg){UINT64_MAX / 2 + 1, UINT64_MAX - 1};
	assert_int_equal(im_idseg_feed(&s, &g), IM_OK);
	assert_int_equal(im_idseg_available(&s), UINT64_MAX - 1);
	assert_false(im_idseg_wants_refill(&s));
	/* Jump near the end of cur the cheap way: feed, not 2^63 calls. */
	im_idseg_reset(&s);
	g = (im_seg){UINT64_MAX - 3, UINT64_MAX - 1};
	assert_int_equal(im_idseg_feed(&s, &g), IM_OK);
	assert_true(im_idseg_wants_refill(&s) == false);
	for (uint64_t want = UINT64_MAX - 3; want < UINT64_MAX; want++) {
		assert_int_equal(im_idseg_next(&s, &id), IM_OK);
		assert_int_equal(id, want);
	}
	assert_int_equal(im_idseg_next(&s, &id), IM_EAGAIN);
	/* Nothing can lie above the largest id. */
	g = (im_seg){UINT64_MAX - 1, UINT64_MAX - 1};
	assert_int_equal(im_idseg_feed(&s, &g), IM_EINVAL);
}

static void
test_idseg_store_errors_leave_the_allocator_unchanged(void **state)
{
	mem_store *m = mem_store_open();
	im_idseg s, copy;
	uint64_t id;

	(void)state;
	init(&s, 10, 20);
	/* Empty allocator. */
	copy = s;
	m->fail_rc = IM_EUNAVAIL;
	m->fail_in = 1;
	assert_int_equal(im_idseg_refill(&s, &m->base), IM_EUNAVAIL);
	assert_same_state(&s, &copy);
	assert_non_null(strstr(im_store_errmsg(&m->base), "injected"));

	/* Half-used current segment, spare empty. */
	assert_int_equal(im_idseg_refill(&s, &m->base), IM_OK);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	}
	copy = s;
	m->fail_rc = IM_ERR;
	m->fail_in = 1;
	m->fail_sticky = true;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(im_idseg_refill(&s, &m->base), IM_ERR);
		assert_same_state(&s, &copy);
	}
	/* The ids in memory still work while the store is down. */
	assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	assert_int_equal(id, 6);
	m->fail_in = 0;
	m->fail_sticky = false;
	assert_int_equal(im_idseg_refill(&s, &m->base), IM_OK);
	assert_int_equal(im_idseg_available(&s), 14);
	im_store_close(&m->base);
}

static void
test_idseg_refill_with_both_buffers_full_does_not_touch_the_store(
	void **state)
{
	mem_store *m = mem_store_open();
	im_idseg s, copy;

	(void)state;
	init(&s, 10, 20);
	assert_int_equal(im_idseg_refill(&s, &m->base), IM_OK);
	assert_int_equal(im_idseg_refill(&s, &m->base), IM_OK);
	copy = s;
	assert_int_equal(im_idseg_refill(&s, &m->base), IM_EFULL);
	assert_int_equal(m->calls[MEM_OP_SEG_TAKE], 2);
	assert_same_state(&s, &copy);
	assert_int_equal(im_idseg_refill(NULL, &m->base), IM_EINVAL);
	assert_int_equal(im_idseg_refill(&s, NULL), IM_EINVAL);
	im_store_close(&m->base);
}

static void
test_idseg_refill_drops_ids_a_backwards_store_hands_out_again(void **state)
{
	mem_store *m = mem_store_open();
	im_idseg s, copy;
	uint64_t id, prev = 0;

	(void)state;
	init(&s, 10, 20);
	for (int seg = 0; seg < 3; seg++) {
		assert_int_equal(im_idseg_refill(&s, &m->base), IM_OK);
		while (im_idseg_next(&s, &id) == IM_OK) {
			assert_true(id > prev);
			prev = id;
		}
	}
	/* The store is "restored from a backup" that is behind. */
	assert_int_equal(prev, 30);
	m->ctr[0].max_id = 5;
	copy = s;
	/* [6, 15] is all old: discarded, nothing changes. */
	assert_int_equal(im_idseg_refill(&s, &m->base), IM_ERR);
	assert_same_state(&s, &copy);
	assert_int_equal(im_idseg_refill(&s, &m->base), IM_ERR); /* [16,25] */
	/* [26, 35]: only 31..35 are new. */
	assert_int_equal(im_idseg_refill(&s, &m->base), IM_OK);
	assert_int_equal(im_idseg_available(&s), 5);
	assert_int_equal(im_idseg_next(&s, &id), IM_OK);
	assert_int_equal(id, 31);
	im_store_close(&m->base);
}

static void
test_idseg_reset_drops_the_buffers_but_never_goes_back(void **state)
{
	im_store *st = store_of(state);
	im_idseg s;
	uint64_t id;

	init(&s, 10, 20);
	id = next_refilling(&s, st);
	id = next_refilling(&s, st);
	assert_int_equal(id, 2);
	assert_int_equal(im_idseg_refill(&s, st), IM_OK);
	im_idseg_reset(&s);
	im_idseg_reset(NULL);
	assert_int_equal(im_idseg_available(&s), 0);
	assert_true(im_idseg_wants_refill(&s));
	assert_int_equal(im_idseg_next(&s, &id), IM_EAGAIN);
	id = next_refilling(&s, st);
	/* 3..20 were dropped with the buffers; the store moved on. */
	assert_int_equal(id, 21);
	assert_int_equal(im_idseg_available(NULL), 0);
}

static void
test_idseg_keys_have_independent_counters(void **state)
{
	im_store *st = store_of(state);
	im_seg_key k2 = {IM_SEG_GROUP_SEQ, 43};
	im_seg_key k3 = {IM_SEG_USER_SEQ, 42};
	im_idseg a, b, c;
	uint64_t id;

	init(&a, 10, 20);
	assert_int_equal(im_idseg_init(&b, &k2, NULL), IM_OK);
	assert_int_equal(im_idseg_init(&c, &k3, NULL), IM_OK);
	assert_int_equal(next_refilling(&a, st), 1);
	assert_int_equal(next_refilling(&a, st), 2);
	id = next_refilling(&b, st);
	assert_int_equal(id, 1);
	id = next_refilling(&c, st);
	assert_int_equal(id, 1);
}

static int
setup_seed(void **state)
{
	(void)state;
	seed = test_seed();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idseg_init_rejects_bad_opts),
		STORE_TESTS(test_idseg_new_allocator_needs_a_refill_before_its_first_id),
		STORE_TESTS(test_idseg_ids_are_strictly_increasing_and_unique),
		STORE_TESTS(test_idseg_wants_refill_once_refill_percent_is_used),
		STORE_TESTS(test_idseg_refill_percent_100_asks_only_when_empty),
		STORE_TESTS(test_idseg_steady_state_with_refill_when_wanted_never_waits),
		STORE_TESTS(test_idseg_next_returns_eagain_when_both_buffers_are_empty),
		STORE_TESTS(test_idseg_restart_never_reuses_or_goes_below_a_handed_out_id),
		STORE_TESTS(test_idseg_new_owner_never_hands_out_an_id_the_old_owner_could),
		STORE_TESTS(test_idseg_random_steps_and_restarts_keep_ids_increasing),
		cmocka_unit_test(
			test_idseg_feed_rejects_stale_and_empty_segments),
		cmocka_unit_test(
			test_idseg_feed_returns_efull_when_both_buffers_are_full),
		cmocka_unit_test(
			test_idseg_huge_segments_do_not_overflow_the_arithmetic),
		cmocka_unit_test(
			test_idseg_store_errors_leave_the_allocator_unchanged),
		cmocka_unit_test(
			test_idseg_refill_with_both_buffers_full_does_not_touch_the_store),
		cmocka_unit_test(
			test_idseg_refill_drops_ids_a_backwards_store_hands_out_again),
		STORE_TESTS(test_idseg_reset_drops_the_buffers_but_never_goes_back),
		STORE_TESTS(test_idseg_keys_have_independent_counters),
	};

	return cmocka_run_group_tests_name("idseg", tests, setup_seed, NULL);
}
