/*
 * The batched store ops on a backend that lacks them: the im_store_*
 * wrappers fall back to the one-at-a-time ops (libim/store_fallback.c).
 * Two real sqlite stores side by side, one whole and one whose batched ops
 * and fenced membership and read-pointer ops are NULL (a wrap_store over
 * it), get the same calls; the fallback must
 * give the batched op's results and contract (conflicts, stale fences,
 * idempotent retries), differing only where the header says it does (not
 * all or nothing).
 */
#include "wrap_store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct pair {
	im_store *whole;    /* sqlite with the batched ops */
	wrap_store lacking; /* sqlite with the batched ops NULL */
};

static int
setup(void **state)
{
	struct pair *p = calloc(1, sizeof(*p));
	im_store *inner = NULL;

	assert_non_null(p);
	assert_int_equal(im_store_sqlite_open(&p->whole, ":memory:", NULL,
					      NULL, 0),
			 IM_OK);
	assert_int_equal(im_store_sqlite_open(&inner, ":memory:", NULL, NULL,
					      0),
			 IM_OK);
	assert_int_equal(wrap_store_init(&p->lacking, inner, true), IM_OK);
	p->lacking.ops.slot_cas_many = NULL;
	p->lacking.ops.group_create_many = NULL;
	p->lacking.ops.seg_take_many = NULL;
	p->lacking.ops.uq_last = NULL;
	p->lacking.ops.member_add_fenced = NULL;
	p->lacking.ops.member_remove_fenced = NULL;
	p->lacking.ops.conv_update_fenced = NULL;
	*state = p;
	return 0;
}

static int
teardown(void **state)
{
	struct pair *p = *state;

	im_store_close(p->whole);
	im_store_close(&p->lacking.base);
	free(p);
	return 0;
}

/* Both stores, whole first: for (each store) { ... }. */
#define EACH_STORE(p, st)                                                      \
	for (im_store *stores_[2] = {(p)->whole, &(p)->lacking.base},         \
		      **sp_ = stores_;                                         \
	     sp_ < stores_ + 2 && ((st) = *sp_, 1); sp_++)

struct epoch_of {
	uint32_t slot;
	im_epoch epoch;
};

static int
epoch_of_cb(const im_slot_row *row, void *payload)
{
	struct epoch_of *e = payload;

	if (row->slot == e->slot) {
		e->epoch = row->epoch;
	}
	return 0;
}

static im_epoch
epoch_now(im_store *st, im_kind kind, uint32_t slot)
{
	struct epoch_of e = {slot, 0};

	assert_int_equal(im_store_slot_load(st, kind, epoch_of_cb, &e), IM_OK);
	return e.epoch;
}

static void
test_slot_cas_many_falls_back_with_the_same_results(void **state)
{
	struct pair *p = *state;
	uint32_t slots[4] = {7, 3, 9, 1};
	im_epoch expect[4] = {0, 0, 0, 0}, got[4];
	im_store *st;
	int i;

	EACH_STORE(p, st)
	{
		assert_int_equal(im_store_slot_cas_many(st, IM_KIND_GROUP,
							slots, expect, 4,
							"a", got),
				 IM_OK);
		for (i = 0; i < 4; i++) {
			assert_int_equal(got[i], 1);
			assert_int_equal(epoch_now(st, IM_KIND_GROUP,
						   slots[i]),
					 1);
		}
		/* Slot 9 is at 1, not 0: a conflict, and epochs_out
		 * holds every slot's current epoch. */
		expect[0] = expect[1] = expect[3] = 1;
		expect[2] = 0;
		memset(got, 0, sizeof(got));
		assert_int_equal(im_store_slot_cas_many(st, IM_KIND_GROUP,
							slots, expect, 4,
							"b", got),
				 IM_ECONFLICT);
		for (i = 0; i < 4; i++) {
			assert_int_equal(got[i], epoch_now(st, IM_KIND_GROUP,
							   slots[i]));
		}
		assert_int_equal(got[2], 1);
		/* A retry from epochs_out takes them all. */
		memcpy(expect, got, sizeof(expect));
		assert_int_equal(im_store_slot_cas_many(st, IM_KIND_GROUP,
							slots, expect, 4,
							"b", got),
				 IM_OK);
		for (i = 0; i < 4; i++) {
			assert_int_equal(got[i], expect[i] + 1);
		}
		memset(expect, 0, sizeof(expect));
	}
	/* The one difference (documented): the whole store changed nothing
	 * on the conflict, the fallback had taken the slots before it. */
	assert_int_equal(epoch_now(p->whole, IM_KIND_GROUP, 7), 2);
	assert_int_equal(epoch_now(&p->lacking.base, IM_KIND_GROUP, 7), 3);
}

struct members {
	im_uid uids[8];
	int n;
};

static int
member_cb(im_uid user, void *payload)
{
	struct members *m = payload;

	if (m->n < 8) {
		m->uids[m->n] = user;
	}
	m->n++;
	return 0;
}

static void
group_new(im_group_new *g, im_gid gid, im_uid creator, const im_uid *members,
	  uint32_t n)
{
	memset(g, 0, sizeof(*g));
	g->group.gid = gid;
	g->group.creator = creator;
	g->group.created_ms = 1000 + gid;
	snprintf(g->group.name, sizeof(g->group.name), "g%llu",
		 (unsigned long long)gid);
	g->members = members;
	g->nmembers = n;
}

static void
test_group_create_many_falls_back_with_the_same_contract(void **state)
{
	struct pair *p = *state;
	static const im_uid m1[3] = {1, 2, 2}, m2[1] = {3};
	im_group_new g[3];
	im_fence f = {IM_KIND_GROUP, 5, 1};
	im_epoch ep;
	im_group have;
	struct members m;
	int rcs[3];
	im_store *st;

	group_new(&g[0], 10, 1, m1, 3);
	group_new(&g[1], 11, 3, m2, 1);
	EACH_STORE(p, st)
	{
		f.epoch = 1;
		/* A fence on a slot nobody took: stale, nothing stored. */
		assert_int_equal(im_store_group_create_many(st, &f, 1, g, 2),
				 IM_ESTALE);
		assert_int_equal(im_store_group_lookup(st, 10, &have),
				 IM_ENOTFOUND);
		assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 5, 0,
						   "a", &ep),
				 IM_OK);
		assert_int_equal(im_store_group_create_many(st, &f, 1, g, 2),
				 IM_OK);
		memset(&m, 0, sizeof(m));
		assert_int_equal(im_store_member_list(st, 10, member_cb, &m),
				 IM_OK);
		assert_int_equal(m.n, 2); /* the repeated uid once */
		assert_int_equal(im_store_group_lookup(st, 11, &have), IM_OK);
		assert_int_equal(have.creator, 3);
		assert_string_equal(have.name, "g11");
		/* Sending the same batch again is safe. */
		assert_int_equal(im_store_group_create_many(st, &f, 1, g, 2),
				 IM_OK);
		/* The slot moved on: the old fence is stale. */
		assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 5, 1,
						   "b", &ep),
				 IM_OK);
		assert_int_equal(im_store_group_create_many(st, &f, 1, g, 2),
				 IM_ESTALE);
		f.epoch = 2;
	}
	/* Group 11 again but by another creator: a conflict. With each
	 * group's outcome, the whole store fails the batch, the fallback
	 * stores the others and names the one that failed. */
	group_new(&g[0], 20, 1, m1, 1);
	group_new(&g[1], 11, 9, m2, 1);
	group_new(&g[2], 21, 1, m2, 1);
	assert_int_equal(im_store_group_create_each(p->whole, &f, 1, g, 3, rcs),
			 IM_ECONFLICT);
	assert_int_equal(rcs[0], IM_ECONFLICT);
	assert_int_equal(rcs[2], IM_ECONFLICT);
	assert_int_equal(im_store_group_lookup(p->whole, 20, &have),
			 IM_ENOTFOUND);
	assert_int_equal(im_store_group_create_each(&p->lacking.base, &f, 1, g,
						    3, rcs),
			 IM_ECONFLICT);
	assert_int_equal(rcs[0], IM_OK);
	assert_int_equal(rcs[1], IM_ECONFLICT);
	assert_int_equal(rcs[2], IM_OK);
	assert_int_equal(im_store_group_lookup(&p->lacking.base, 21, &have),
			 IM_OK);
	assert_int_equal(im_store_group_lookup(&p->lacking.base, 11, &have),
			 IM_OK);
	assert_int_equal(have.creator, 3);
	/* Without rcs the fallback stops at the conflict. */
	group_new(&g[0], 30, 1, m1, 1);
	group_new(&g[2], 31, 1, m2, 1);
	assert_int_equal(im_store_group_create_many(&p->lacking.base, &f, 1,
						    g, 3),
			 IM_ECONFLICT);
	assert_int_equal(im_store_group_lookup(&p->lacking.base, 30, &have),
			 IM_OK);
	assert_int_equal(im_store_group_lookup(&p->lacking.base, 31, &have),
			 IM_ENOTFOUND);
	assert_int_equal(im_store_group_create_each(&p->lacking.base, &f, 1, g,
						    3, NULL),
			 IM_EINVAL);
}

static void
test_seg_take_many_falls_back_with_the_same_segments(void **state)
{
	struct pair *p = *state;
	im_seg_key keys[3] = {{IM_SEG_USER_SEQ, 1},
			      {IM_SEG_USER_SEQ, 2},
			      {IM_SEG_GROUP_ID, 0}};
	im_seg segs[2][3];
	im_store *st;
	int s = 0, i, round;

	EACH_STORE(p, st)
	{
		assert_int_equal(im_store_seg_take(st, &keys[1], 5,
						   &segs[s][0]),
				 IM_OK);
		for (round = 0; round < 2; round++) {
			assert_int_equal(im_store_seg_take_many(st, keys, 3,
								10, segs[s]),
					 IM_OK);
		}
		s++;
	}
	for (i = 0; i < 3; i++) {
		assert_int_equal(segs[1][i].first, segs[0][i].first);
		assert_int_equal(segs[1][i].last, segs[0][i].last);
	}
	assert_int_equal(segs[1][0].first, 11); /* second segment of key 1 */
	assert_int_equal(segs[1][1].first, 16); /* above the 5 taken first */
}

static void
test_uq_last_falls_back_to_a_bounded_scan(void **state)
{
	struct pair *p = *state;
	static im_uq_item items[2500];
	im_fence f = {IM_KIND_USER, 0, 1};
	im_seq last[2];
	im_epoch ep;
	im_store *st;
	int s = 0, i;

	for (i = 0; i < 2500; i++) {
		items[i].user = 4;
		items[i].seq = 3 + 2 * (im_seq)i; /* gaps: not a count */
		items[i].time_ms = 1;
	}
	EACH_STORE(p, st)
	{
		f.slot = 0;
		assert_int_equal(im_store_uq_last(st, 4, &last[s]), IM_OK);
		assert_int_equal(last[s], 0);
		/* The fence: user 4's slot, whatever the slot count. */
		for (f.slot = 0; f.slot < 4096; f.slot++) {
			if (im_store_slot_cas(st, IM_KIND_USER, f.slot, 0, "a",
					      &ep) != IM_OK) {
				break;
			}
		}
		f.slot = 0;
		/* More than two pages of IM_STORE_READ_LIMIT_MAX. */
		for (i = 0; i < 2500; i += 500) {
			assert_int_equal(im_store_uq_append(st, &f, 1,
							    &items[i], 500),
					 IM_OK);
		}
		assert_int_equal(im_store_uq_last(st, 4, &last[s]), IM_OK);
		s++;
	}
	assert_int_equal(last[0], items[2499].seq);
	assert_int_equal(last[1], last[0]);
}

/* The fenced membership and read-pointer ops: the fallback checks the
 * fences first, so a stale owner writes nothing there either. */
static void
test_fenced_member_and_read_ops_fall_back_with_the_same_contract(void **state)
{
	struct pair *p = *state;
	im_fence g = {IM_KIND_GROUP, 2, 0}, u = {IM_KIND_USER, 2, 0};
	im_group grp = {.gid = 8, .creator = 1, .created_ms = 1};
	bool added, removed;
	im_epoch e;
	im_store *st;

	EACH_STORE(p, st)
	{
		assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 2, 0, "a",
						   &g.epoch),
				 IM_OK);
		assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 2, 0, "a",
						   &u.epoch),
				 IM_OK);
		assert_int_equal(im_store_group_create(st, &grp), IM_OK);
		assert_int_equal(im_store_member_add_fenced(st, &g, 1, 8, 4,
							    &added),
				 IM_OK);
		assert_true(added);
		assert_int_equal(im_store_member_add_fenced(st, &g, 1, 9, 4,
							    NULL),
				 IM_ENOTFOUND);
		assert_int_equal(im_store_conv_update_fenced(st, &u, 1, 4, 8,
							     3, 1, 0),
				 IM_OK);
		/* Both slots move on: the old epochs write nothing. */
		assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 2,
						   g.epoch, "b", &e),
				 IM_OK);
		assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 2,
						   u.epoch, "b", NULL),
				 IM_OK);
		assert_int_equal(im_store_member_add_fenced(st, &g, 1, 8, 5,
							    NULL),
				 IM_ESTALE);
		assert_int_equal(im_store_member_remove_fenced(st, &g, 1, 8, 4,
							       NULL),
				 IM_ESTALE);
		assert_int_equal(im_store_conv_update_fenced(st, &u, 1, 4, 8,
							     9, 2, 0),
				 IM_ESTALE);
		assert_int_equal(epoch_now(st, IM_KIND_GROUP, 2), e);
		g.epoch = e;
		assert_int_equal(im_store_member_remove_fenced(st, &g, 1, 8, 4,
							       &removed),
				 IM_OK);
		assert_true(removed);
		assert_int_equal(im_store_member_remove_fenced(st, &g, 1, 8, 5,
							       &removed),
				 IM_OK);
		assert_false(removed);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_slot_cas_many_falls_back_with_the_same_results,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_group_create_many_falls_back_with_the_same_contract,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_seg_take_many_falls_back_with_the_same_segments,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_uq_last_falls_back_to_a_bounded_scan, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_fenced_member_and_read_ops_fall_back_with_the_same_contract,
			setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
