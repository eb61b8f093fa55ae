/*
 * servers/common/slot_policy.c: the slot moves imd, imnode and the Router
 * share, over a sqlite store in memory (one map per "node").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "im/shard.h"
#include "im/store.h"
#include "slot_policy.h"

#define NSLOTS 8

typedef struct env {
	im_store *st;
	im_shard_map *map;
	im_shard_map *stale; /* another node's map, not reloaded */
} env;

static int
setup(void **state)
{
	im_shard_opts so = IM_SHARD_OPTS_INIT;
	static env e;

	memset(&e, 0, sizeof(e));
	so.nslots = NSLOTS;
	assert_int_equal(im_store_sqlite_open(&e.st, ":memory:", NULL, NULL,
					      0),
			 IM_OK);
	assert_int_equal(im_shard_create(&e.map, &so), IM_OK);
	assert_int_equal(im_shard_create(&e.stale, &so), IM_OK);
	assert_int_equal(im_shard_load(e.map, e.st), IM_OK);
	*state = &e;
	return 0;
}

static int
teardown(void **state)
{
	env *e = *state;

	im_shard_destroy(e->stale);
	im_shard_destroy(e->map);
	im_store_close(e->st);
	return 0;
}

static bool
admit_all(void *payload, im_kind kind, const im_shard_move *mv,
	  const im_shard_entry *cur)
{
	(void)payload;
	(void)kind;
	(void)mv;
	(void)cur;
	return true;
}

static void
count_moved(void *payload, im_kind kind, const im_shard_move *mv,
	    const im_shard_entry *cur, im_epoch epoch)
{
	uint32_t *n = payload;

	(void)kind;
	(void)cur;
	assert_string_equal(mv->to, "b/1");
	assert_true(epoch > 1);
	(*n)++;
}

static void
test_slot_policy_claim_all_takes_every_slot_of_both_kinds(void **state)
{
	env *e = *state;
	im_kind failed = IM_KIND_COUNT;

	assert_int_equal(slot_policy_claim_all(e->map, e->st, "a/1", &failed),
			 IM_OK);
	assert_int_equal(im_shard_count(e->map, IM_KIND_USER, "a/1"), NSLOTS);
	assert_int_equal(im_shard_count(e->map, IM_KIND_GROUP, "a/1"), NSLOTS);
	assert_int_equal(failed, IM_KIND_COUNT);
	/* A second claimant with a map of its own moves them all again. */
	assert_int_equal(im_shard_load(e->stale, e->st), IM_OK);
	assert_int_equal(slot_policy_claim_all(e->stale, e->st, "c/1", NULL),
			 IM_OK);
	assert_int_equal(im_shard_load(e->map, e->st), IM_OK);
	assert_int_equal(im_shard_count(e->map, IM_KIND_GROUP, "c/1"), NSLOTS);
}

static void
test_slot_policy_rebalance_moves_the_plan_and_counts_lost_races(void **state)
{
	env *e = *state;
	const char *live[] = {"a/1", "b/1"};
	static const slot_policy_ops ops = {admit_all, count_moved};
	im_shard_move moves[NSLOTS];
	slot_policy_result res;
	uint32_t moved = 0;

	assert_int_equal(slot_policy_claim_all(e->map, e->st, "a/1", NULL),
			 IM_OK);
	assert_int_equal(im_shard_load(e->stale, e->st), IM_OK);
	assert_int_equal(slot_policy_rebalance(e->map, e->st, IM_KIND_GROUP,
					       live, 2, moves, NSLOTS, &ops,
					       &moved, &res),
			 IM_OK);
	assert_true(res.planned);
	assert_int_equal(res.moved, NSLOTS / 2);
	assert_int_equal(moved, NSLOTS / 2);
	assert_int_equal(res.conflicts, 0);
	assert_int_equal(im_shard_count(e->map, IM_KIND_GROUP, "b/1"),
			 NSLOTS / 2);
	/* The same plan from a map older than those moves: every CAS
	 * loses, nothing moves twice. */
	moved = 0;
	assert_int_equal(slot_policy_rebalance(e->stale, e->st, IM_KIND_GROUP,
					       live, 2, moves, NSLOTS, &ops,
					       &moved, &res),
			 IM_OK);
	assert_int_equal(res.moved, 0);
	assert_int_equal(res.conflicts, NSLOTS / 2);
	/* Nobody live: nothing planned, nothing moved. */
	assert_int_equal(slot_policy_rebalance(e->map, e->st, IM_KIND_GROUP,
					       NULL, 0, moves, NSLOTS, &ops,
					       &moved, &res),
			 IM_OK);
	assert_int_equal(res.moved, 0);
	assert_int_equal(slot_policy_rebalance(e->map, e->st, IM_KIND_GROUP,
					       live, 2, moves, NSLOTS, NULL,
					       NULL, &res),
			 IM_EINVAL);
}

static void
test_slot_policy_node_takes_only_what_is_its_to_take(void **state)
{
	im_shard_entry cur;
	im_shard_move mv = {0, 0, "n/2"};

	(void)state;
	memset(&cur, 0, sizeof(cur));
	/* Unowned: taken, Routers or not. */
	cur.owner = "";
	assert_int_equal(slot_policy_node_action("n", "n/2", &cur, &mv, true,
						 true),
			 SLOT_NODE_TAKE);
	/* A live owner hands over itself. */
	cur.owner = "m/1";
	assert_int_equal(slot_policy_node_action("n", "n/2", &cur, &mv, false,
						 false),
			 SLOT_NODE_SKIP);
	/* A dead owner's: the Routers' to move, ours only without one. */
	assert_int_equal(slot_policy_node_action("n", "n/2", &cur, &mv, true,
						 true),
			 SLOT_NODE_SKIP);
	assert_int_equal(slot_policy_node_action("n", "n/2", &cur, &mv, true,
						 false),
			 SLOT_NODE_TAKE);
	/* Our earlier life's: taken at once. */
	cur.owner = "n/1";
	assert_int_equal(slot_policy_node_action("n", "n/2", &cur, &mv, true,
						 true),
			 SLOT_NODE_TAKE);
	/* Ours, planned for another: handed over; another's: not ours. */
	mv.to = "m/1";
	cur.owner = "n/2";
	assert_int_equal(slot_policy_node_action("n", "n/2", &cur, &mv, false,
						 true),
			 SLOT_NODE_HAND_OVER);
	cur.owner = "k/1";
	assert_int_equal(slot_policy_node_action("n", "n/2", &cur, &mv, true,
						 false),
			 SLOT_NODE_SKIP);
	assert_true(slot_policy_earlier_self("n", "n/2", "n/1"));
	assert_false(slot_policy_earlier_self("n", "n/2", "n/2"));
	assert_false(slot_policy_earlier_self("n", "n/2", "nn/1"));
}

static void
test_slot_policy_take_back_and_reload_count_what_moved(void **state)
{
	env *e = *state;
	uint32_t lost, gained;

	assert_int_equal(slot_policy_claim_all(e->map, e->st, "a/1", NULL),
			 IM_OK);
	assert_int_equal(im_shard_load(e->stale, e->st), IM_OK);
	/* a comes back as a/2 and takes back its user slots. */
	assert_int_equal(slot_policy_take_back(e->map, e->st, IM_KIND_USER,
					       "a/1", "a/2"),
			 NSLOTS);
	assert_int_equal(slot_policy_take_back(e->map, e->st, IM_KIND_USER,
					       "a/1", "a/2"),
			 0);
	/* The stale map sees a/1 lose them all, a/2 gain them. */
	assert_int_equal(slot_policy_reload(e->stale, e->st, IM_KIND_USER,
					    "a/1", &lost, &gained),
			 IM_OK);
	assert_int_equal(lost, NSLOTS);
	assert_int_equal(gained, 0);
	assert_int_equal(slot_policy_reload(e->stale, e->st, IM_KIND_USER,
					    "a/2", &lost, &gained),
			 IM_OK);
	assert_int_equal(lost, 0);
	assert_int_equal(gained, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_slot_policy_claim_all_takes_every_slot_of_both_kinds,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_slot_policy_rebalance_moves_the_plan_and_counts_lost_races,
			setup, teardown),
		cmocka_unit_test(
			test_slot_policy_node_takes_only_what_is_its_to_take),
		cmocka_unit_test_setup_teardown(
			test_slot_policy_take_back_and_reload_count_what_moved,
			setup, teardown),
	};

	return cmocka_run_group_tests_name("slot_policy", tests, NULL, NULL);
}
