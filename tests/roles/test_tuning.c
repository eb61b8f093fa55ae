/*
 * The shared key table of servers/roles/tuning.c: imd and imnode parse
 * Connector/Chatter tuning keys through it, so its values, limits and
 * error paths are checked once here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tuning.h"

struct own {
	char name[8];
	uint32_t n;
	uint64_t big;
	double sec;
	bool flag;
};

static const role_key own_keys[] = {
        {"name", ROLE_KEY_STR, offsetof(struct own, name), 8, "a name"},
        {"n", ROLE_KEY_U32, offsetof(struct own, n), 0, "a count"},
        {"big", ROLE_KEY_U64, offsetof(struct own, big), 0, "a big one"},
        {"sec", ROLE_KEY_SEC, offsetof(struct own, sec), 0, "seconds"},
        {"the_flag", ROLE_KEY_BOOL, offsetof(struct own, flag), 0, "bool"},
};

#define NOWN (sizeof(own_keys) / sizeof(own_keys[0]))

static void
test_tuning_keys_take_dash_and_underscore_alike(void **state)
{
	(void)state;
	assert_true(role_key_eq("rto_ms", "rto-ms"));
	assert_true(role_key_eq("rto-ms", "rto_ms"));
	assert_false(role_key_eq("rto_ms", "rto_m"));
	assert_false(role_key_eq("rto", "rto_ms"));
}

static void
test_tuning_every_kind_is_parsed_into_its_field(void **state)
{
	struct own o;
	char err[128];

	(void)state;
	memset(&o, 0, sizeof(o));
	assert_int_equal(role_keys_set(own_keys, NOWN, &o, "name", "abc", err,
	                               sizeof(err)),
	                 0);
	assert_string_equal(o.name, "abc");
	assert_int_equal(role_keys_set(own_keys, NOWN, &o, "n", "4294967295",
	                               err, sizeof(err)),
	                 0);
	assert_int_equal(o.n, UINT32_MAX);
	assert_int_equal(role_keys_set(own_keys, NOWN, &o, "big",
	                               "18446744073709551615", err,
	                               sizeof(err)),
	                 0);
	assert_true(o.big == UINT64_MAX);
	assert_int_equal(role_keys_set(own_keys, NOWN, &o, "sec", "0.5", err,
	                               sizeof(err)),
	                 0);
	assert_true(o.sec == 0.5);
	assert_int_equal(role_keys_set(own_keys, NOWN, &o, "the-flag", "true",
	                               err, sizeof(err)),
	                 0);
	assert_true(o.flag);
}

static void
test_tuning_bad_values_are_refused_and_leave_the_field_unchanged(void **state)
{
	static const char *const bad[][2] = {
	        {"name", "12345678"}, {"n", "4294967296"}, {"n", "-1"},
	        {"n", "12x"},         {"n", ""},           {"big", "-5"},
	        {"sec", "0"},         {"sec", "1e9"},      {"sec", "soon"},
	        {"the_flag", "yes"},
	};
	struct own o, before;
	char err[128];
	size_t i;

	(void)state;
	memset(&o, 0x5a, sizeof(o));
	o.name[0] = '\0';
	before = o;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(role_keys_set(own_keys, NOWN, &o, bad[i][0],
		                               bad[i][1], err, sizeof(err)),
		                 -1);
		assert_non_null(strstr(err, bad[i][0]));
		assert_memory_equal(&o, &before, sizeof(o));
	}
	/* Unknown: 1, nothing written, no message needed. */
	assert_int_equal(role_keys_set(own_keys, NOWN, &o, "nope", "1", err,
	                               sizeof(err)),
	                 1);
	assert_memory_equal(&o, &before, sizeof(o));
}

static void
test_tuning_sets_connector_and_chatter_opts_by_imd_names(void **state)
{
	connector_opts cn = CONNECTOR_OPTS_INIT;
	chatter_opts ch = CHATTER_OPTS_INIT;
	char err[128];

	(void)state;
	assert_int_equal(
	        role_tuning_set(&cn, &ch, "rto-ms", "300", err, sizeof(err)),
	        0);
	assert_int_equal(cn.rto_ms, 300);
	assert_int_equal(role_tuning_set(&cn, &ch, "login_timeout", "1.5", err,
	                                 sizeof(err)),
	                 0);
	assert_true(cn.login_timeout == 1.5);
	assert_int_equal(role_tuning_set(&cn, &ch, "frame-timeout", "2.5", err,
	                                 sizeof(err)),
	                 0);
	assert_true(cn.frame_timeout == 2.5);
	assert_int_equal(
	        role_tuning_set(&cn, &ch, "seq_step", "4", err, sizeof(err)),
	        0);
	assert_int_equal(ch.seq_step, 4);
	assert_int_equal(role_tuning_set(&cn, &ch, "dedup_ttl_ms", "7", err,
	                                 sizeof(err)),
	                 0);
	assert_true(ch.dedup_ttl_ms == 7);
	assert_true(ch.group_idle_ms == 60000); /* the default */
	assert_int_equal(role_tuning_set(&cn, &ch, "group-idle-ms", "0", err,
	                                 sizeof(err)),
	                 0);
	assert_true(ch.group_idle_ms == 0);
	assert_true(ch.commit_thread);
	assert_int_equal(role_tuning_set(&cn, &ch, "commit-thread", "false",
	                                 err, sizeof(err)),
	                 0);
	assert_false(ch.commit_thread);
	assert_int_equal(role_tuning_set(&cn, &ch, "commit_thread", "yes", err,
	                                 sizeof(err)),
	                 -1);
	assert_false(ch.commit_thread);
	assert_int_equal(
	        role_tuning_set(&cn, &ch, "pushq_items", "x", err, sizeof(err)),
	        -1);
	assert_int_equal(role_tuning_set(&cn, &ch, "listen", "1.2.3.4", err,
	                                 sizeof(err)),
	                 1);
}

/* Field by field: chatter_opts has padding (after commit_thread). */
static bool
chatter_opts_equal(const chatter_opts *a, const chatter_opts *b)
{
	return a->max_groups == b->max_groups &&
	       a->max_members == b->max_members &&
	       a->max_batch == b->max_batch && a->seq_step == b->seq_step &&
	       a->gid_step == b->gid_step &&
	       a->dedup_capacity == b->dedup_capacity &&
	       a->dedup_ttl_ms == b->dedup_ttl_ms && a->seed == b->seed &&
	       a->group_idle_ms == b->group_idle_ms &&
	       a->commit_thread == b->commit_thread &&
	       a->commit_store == b->commit_store;
}

static void
test_tuning_a_key_of_the_other_role_is_checked_then_ignored(void **state)
{
	chatter_opts ch = CHATTER_OPTS_INIT, before = CHATTER_OPTS_INIT;
	connector_opts cn = CONNECTOR_OPTS_INIT;
	char err[128];

	(void)state;
	/* A Chatter node given a Connector key: accepted, no effect. */
	assert_int_equal(
	        role_tuning_set(NULL, &ch, "rto_ms", "300", err, sizeof(err)),
	        0);
	assert_true(chatter_opts_equal(&ch, &before));
	/* ... but a bad value is still refused. */
	assert_int_equal(
	        role_tuning_set(NULL, &ch, "rto_ms", "-3", err, sizeof(err)),
	        -1);
	assert_int_equal(
	        role_tuning_set(&cn, NULL, "seq_step", "4", err, sizeof(err)),
	        0);
	assert_int_equal(
	        role_tuning_set(NULL, NULL, "seq_step", "4", err, sizeof(err)),
	        0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(
	                test_tuning_keys_take_dash_and_underscore_alike),
	        cmocka_unit_test(
	                test_tuning_every_kind_is_parsed_into_its_field),
	        cmocka_unit_test(
	                test_tuning_bad_values_are_refused_and_leave_the_field_unchanged),
	        cmocka_unit_test(
	                test_tuning_sets_connector_and_chatter_opts_by_imd_names),
	        cmocka_unit_test(
	                test_tuning_a_key_of_the_other_role_is_checked_then_ignored),
	};

	return cmocka_run_group_tests_name("tuning", tests, NULL, NULL);
}
