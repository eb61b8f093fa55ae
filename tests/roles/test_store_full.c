/*
 * servers/roles/store_full.c: the pause after a write failed for a full
 * disk (50 ms doubling to 1 s), the requests refused meanwhile, and the
 * bounded warnings (the first at once, then one per 10 s at most).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "role.h"
#include "store_full.h"

static void
test_store_full_pauses_and_doubles_up_to_a_second(void **state)
{
	store_full f;
	uint64_t now = 1000000;
	uint32_t want[] = {50, 100, 200, 400, 800, 1000, 1000};
	size_t i;

	(void)state;
	memset(&f, 0, sizeof(f));
	assert_false(store_full_on(&f));
	assert_false(store_full_blocked(&f, now, 1));
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		store_full_failed(&f, now, 3, "test", "disk full");
		assert_true(store_full_on(&f));
		assert_true(store_full_blocked(&f, now + want[i] - 1, 1));
		assert_false(store_full_blocked(&f, now + want[i], 1));
		now += want[i];
	}
	/* 7 failed writes of 3 requests, 7 refused in the pauses. */
	assert_int_equal(f.total, 7 * 3 + 7);
	store_full_ok(&f, now, "test");
	assert_false(store_full_on(&f));
	assert_false(store_full_blocked(&f, now, 1));
	/* Full again: the pause starts from 50 ms again. */
	store_full_failed(&f, now, 1, "test", "disk full");
	assert_true(store_full_blocked(&f, now + 49, 1));
	assert_false(store_full_blocked(&f, now + 50, 1));
}

static void
test_store_full_warnings_are_rate_limited(void **state)
{
	store_full f;
	uint64_t now = 5000000, t;

	(void)state;
	role_log_set_level(ROLE_LOG_ERROR); /* keep the test's output quiet */
	memset(&f, 0, sizeof(f));
	/* 60 s of a full disk, a failed write every 20 ms (far more often
	 * than the pause allows): 1 line at once, then one per 10 s. */
	for (t = 0; t < 60000; t += 20) {
		store_full_failed(&f, now + t, 1, "test", "disk full");
	}
	assert_int_equal(f.lines, 1 + 5);
	store_full_ok(&f, now + t, "test");
	assert_int_equal(f.lines, 1 + 5 + 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(
	                test_store_full_pauses_and_doubles_up_to_a_second),
	        cmocka_unit_test(test_store_full_warnings_are_rate_limited),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
