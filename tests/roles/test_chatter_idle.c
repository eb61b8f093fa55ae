/*
 * Idle group expiry of the Chatter (servers/roles/chatter/group.c): hot group
 * state unused for group_idle_ms is dropped by chatter_expire_idle() with
 * bounded work per call, and the next send reloads it from the store (a
 * fresh seq segment) with the chain intact: prev_seq is the last stored
 * seq, the ordinal goes on by one. Over an in-memory sqlite store and a
 * recording role_router; the clock is passed in, so no timing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chatter.h"
#include "im/shard.h"
#include "im/store.h"

#define NSLOTS 16
#define NGROUPS 40
#define NODE "chatter-1/00000001"

typedef struct rec {
	role_router base; /* first */
	role_reply last_reply;
	int replies, bad;
	im_msg last_msg;
	int msgs;
} rec;

static void
r_submit(role_router *rr, const role_op *ops, size_t n)
{
	(void)rr, (void)ops, (void)n;
}

static void
r_reply(role_router *rr, const role_reply *reps, size_t n)
{
	rec *r = (rec *)rr;
	size_t i;

	for (i = 0; i < n; i++) {
		r->last_reply = reps[i];
		r->last_reply.text = NULL;
		r->replies++;
		r->bad += reps[i].code != ROLE_OK;
	}
}

static void
r_deliver(role_router *rr, const role_fanout *f, size_t n)
{
	rec *r = (rec *)rr;
	size_t i, k;

	for (i = 0; i < n; i++) {
		for (k = 0; k < f[i].nmsgs; k++) {
			r->last_msg = f[i].msgs[k];
			r->last_msg.body = NULL;
			r->msgs++;
		}
	}
}

static void
r_events(role_router *rr, const role_uevent *ev, size_t n)
{
	(void)rr, (void)ev, (void)n;
}

static const struct role_router_ops rec_ops = {r_submit, r_reply,
					       r_deliver, r_events};

typedef struct env {
	struct ev_loop *loop;
	im_store *st;
	im_shard_map *map;
	rec router;
	chatter *ch;
	uint64_t dedup;
} env;

static int
setup(void **state)
{
	env *e = calloc(1, sizeof(*e));
	im_shard_opts so = IM_SHARD_OPTS_INIT;
	chatter_opts co = CHATTER_OPTS_INIT;
	uint32_t s;
	im_gid g;

	assert_non_null(e);
	assert_int_equal(im_store_sqlite_open(&e->st, ":memory:", NULL, NULL,
					      0),
			 IM_OK);
	for (s = 0; s < NSLOTS; s++) {
		assert_int_equal(im_store_slot_cas(e->st, IM_KIND_GROUP, s, 0,
						   NODE, NULL),
				 IM_OK);
	}
	for (g = 1; g <= NGROUPS; g++) {
		im_group grp;

		memset(&grp, 0, sizeof(grp));
		grp.gid = g;
		grp.creator = 7;
		snprintf(grp.name, sizeof(grp.name), "g%llu",
			 (unsigned long long)g);
		assert_int_equal(im_store_group_create(e->st, &grp), IM_OK);
		assert_int_equal(im_store_member_add(e->st, g, 7, NULL), IM_OK);
	}
	so.nslots = NSLOTS;
	assert_int_equal(im_shard_create(&e->map, &so), IM_OK);
	assert_int_equal(im_shard_load(e->map, e->st), IM_OK);
	e->loop = ev_loop_new(EVFLAG_AUTO);
	e->router.base.ops = &rec_ops;
	co.seq_step = 50; /* small segments: a reload visibly skips ids */
	co.group_idle_ms = 60000;
	assert_int_equal(chatter_create(&e->ch, e->loop, e->st, e->map, NODE,
					&e->router.base, &co),
			 IM_OK);
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	env *e = *state;

	chatter_destroy(e->ch);
	im_shard_destroy(e->map);
	im_store_close(e->st);
	ev_loop_destroy(e->loop);
	free(e);
	return 0;
}

/* One send by user 7 to group g, committed; returns its seq. */
static uint64_t
send_one(env *e, im_gid g)
{
	role_op op;
	int before = e->router.replies;

	memset(&op, 0, sizeof(op));
	op.kind = ROLE_OP_SEND;
	op.route.req_id = ++e->dedup;
	op.user = 7;
	op.group = g;
	op.dedup_id = e->dedup;
	op.body = "hi";
	op.body_len = 2;
	chatter_submit(e->ch, &op, 1);
	chatter_flush(e->ch);
	assert_int_equal(e->router.replies, before + 1);
	assert_int_equal(e->router.bad, 0);
	assert_false(e->router.last_reply.dup);
	return e->router.last_reply.seq;
}

typedef struct stored_msgs {
	im_msg m[4];
	size_t n;
} stored_msgs;

static int
collect(const im_msg *m, void *payload)
{
	stored_msgs *g = payload;

	if (g->n < 4) {
		g->m[g->n] = *m;
		g->m[g->n].body = NULL;
	}
	g->n++;
	return 0;
}

static uint32_t
hot(env *e)
{
	chatter_stats st;

	chatter_get_stats(e->ch, &st);
	return st.groups;
}

static void
test_chatter_drops_idle_groups_and_reloads_them_with_the_chain_intact(
	void **state)
{
	env *e = *state;
	chatter_stats st;
	uint64_t now = role_now_ms(), s1, s2, s3, refills;
	stored_msgs stored = {.n = 0};

	s1 = send_one(e, 3);
	s2 = send_one(e, 3);
	assert_true(s2 > s1);
	assert_int_equal(hot(e), 1);
	/* Used within group_idle_ms: kept. */
	assert_int_equal(chatter_expire_idle(e->ch, now + 1000, 1u << 20), 0);
	assert_int_equal(hot(e), 1);
	/* Idle past it: dropped. */
	assert_int_equal(chatter_expire_idle(e->ch, now + 61000 + 1000,
					     1u << 20),
			 1);
	assert_int_equal(hot(e), 0);
	chatter_get_stats(e->ch, &st);
	assert_int_equal(st.expired, 1);
	refills = st.refills;
	/* The next use reloads it: fresh segment, the chain goes on. */
	s3 = send_one(e, 3);
	assert_int_equal(hot(e), 1);
	chatter_get_stats(e->ch, &st);
	assert_true(st.refills > refills);
	assert_true(s3 > s2);
	assert_int_equal(e->router.last_msg.seq, s3);
	assert_int_equal(e->router.last_msg.prev_seq, s2);
	assert_int_equal(e->router.last_msg.ordinal, 3);
	/* And the store holds the three, in order, unbroken. */
	assert_int_equal(im_store_msg_read(e->st, 3, 0, IM_SEQ_MAX, 0, collect,
					   &stored),
			 IM_OK);
	assert_int_equal(stored.n, 3);
	assert_int_equal(stored.m[0].seq, s1);
	assert_int_equal(stored.m[1].prev_seq, s1);
	assert_int_equal(stored.m[2].seq, s3);
	assert_int_equal(stored.m[2].prev_seq, s2);
	assert_int_equal(stored.m[2].ordinal, 3);
}

static void
test_chatter_expiry_does_bounded_work_per_call(void **state)
{
	env *e = *state;
	uint64_t far = role_now_ms() + 120000;
	uint32_t total = 0, calls = 0, got;
	im_gid g;

	for (g = 1; g <= NGROUPS; g++) {
		(void)send_one(e, g);
	}
	assert_int_equal(hot(e), NGROUPS);
	/* 8 steps (buckets and groups) per call: never 8 or more groups
	 * dropped by one call; all of them after enough calls. */
	do {
		got = chatter_expire_idle(e->ch, far, 8);
		assert_true(got < 8);
		total += got;
		calls++;
	} while (total < NGROUPS && calls < 10000);
	assert_int_equal(total, NGROUPS);
	assert_int_equal(hot(e), 0);
	assert_true(calls > 1);
	/* Nothing hot: nothing to do, nothing breaks. */
	assert_int_equal(chatter_expire_idle(e->ch, far, 8), 0);
}

static void
test_chatter_expiry_is_off_with_zero_idle_ms(void **state)
{
	env *e = *state;
	chatter_opts co = CHATTER_OPTS_INIT;
	chatter *c = NULL;

	assert_int_equal(chatter_expire_idle(NULL, 1, 1), 0);
	co.group_idle_ms = 0;
	assert_int_equal(chatter_create(&c, e->loop, e->st, e->map, NODE,
					&e->router.base, &co),
			 IM_OK);
	assert_int_equal(chatter_expire_idle(c, UINT64_MAX, 1u << 20), 0);
	chatter_destroy(c);
	/* A zero budget does nothing either. */
	(void)send_one(e, 5);
	assert_int_equal(chatter_expire_idle(e->ch, UINT64_MAX, 0), 0);
	assert_int_equal(hot(e), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
		T(test_chatter_drops_idle_groups_and_reloads_them_with_the_chain_intact),
		T(test_chatter_expiry_does_bounded_work_per_call),
		T(test_chatter_expiry_is_off_with_zero_idle_ms),
#undef T
	};

	return cmocka_run_group_tests_name("chatter_idle", tests, NULL, NULL);
}
