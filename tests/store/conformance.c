/*
 * The storage conformance suite. Every test gets a fresh, empty store from
 * the backend's fixture and talks to it only through im_store_*; what a
 * test asserts is the contract of include/im/store.h, so a backend passes
 * exactly when it keeps that contract.
 */
#include "conformance.h"

#include "fake_store.h"
#include "faulty_store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

static const store_fixture *fx;

typedef struct conf {
	im_store *st;
} conf;

static int
setup(void **state)
{
	conf *c = calloc(1, sizeof(*c));
	int rc;

	if (c == NULL) {
		return -1;
	}
	rc = fx->open(fx->ctx, &c->st);
	if (rc != IM_OK) {
		fprintf(stderr, "# %s: open failed: %s\n", fx->name,
		        im_strerror(rc));
		free(c);
		return -1;
	}
	*state = c;
	return 0;
}

static int
teardown(void **state)
{
	conf *c = *state;

	im_store_close(c->st);
	if (fx->cleanup != NULL) {
		fx->cleanup(fx->ctx);
	}
	free(c);
	return 0;
}

static im_store *
st_of(void **state)
{
	return ((conf *)*state)->st;
}

/* ---- helpers --------------------------------------------------------- */

static im_epoch
claim(im_store *st, im_kind kind, uint32_t slot)
{
	im_epoch e = 0;

	assert_int_equal(im_store_slot_cas(st, kind, slot, 0, "node-a", &e),
	                 IM_OK);
	assert_int_equal(e, 1);
	return e;
}

static im_msg
mk(im_gid conv, im_seq seq, im_seq prev, uint64_t ord, im_uid sender,
   uint64_t dedup, const char *body)
{
	im_msg m = {
	        .conv = conv,
	        .seq = seq,
	        .prev_seq = prev,
	        .ordinal = ord,
	        .sender = sender,
	        .dedup_id = dedup,
	        .reply_to = 0,
	        .time_ms = 1000 + seq,
	        .type = 0,
	        .body_len = body != NULL ? (uint32_t)strlen(body) : 0,
	        .body = body,
	};
	return m;
}

#define COLLECT_MAX 64
typedef struct collect {
	im_msg m[COLLECT_MAX];
	char body[COLLECT_MAX][IM_MSG_BODY_MAX + 1];
	size_t n;
	size_t stop_after; /* 0 = never stop */
} collect;

static int
collect_msg(const im_msg *m, void *payload)
{
	collect *c = payload;

	assert_true(c->n < COLLECT_MAX);
	assert_true(m->body_len <= IM_MSG_BODY_MAX);
	c->m[c->n] = *m;
	if (m->body_len > 0) {
		memcpy(c->body[c->n], m->body, m->body_len);
	}
	c->body[c->n][m->body_len] = '\0';
	c->m[c->n].body = c->body[c->n];
	c->n++;
	if (c->stop_after != 0 && c->n == c->stop_after) {
		return 42;
	}
	return 0;
}

static collect *
read_all(im_store *st, im_gid conv)
{
	collect *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	assert_int_equal(
	        im_store_msg_read(st, conv, 0, IM_SEQ_MAX, 0, collect_msg, c),
	        IM_OK);
	return c;
}

static size_t
count_msgs(im_store *st, im_gid conv)
{
	collect *c = read_all(st, conv);
	size_t n = c->n;

	free(c);
	return n;
}

/* Append a clean chain of n messages to conv: seqs start, start+step... */
static void
append_chain(im_store *st, const im_fence *f, im_gid conv, im_seq start,
             im_seq step, size_t n, uint64_t first_ord, im_seq prev)
{
	im_msg m[32];
	im_append_result r[32];
	size_t i;

	assert_true(n <= 32);
	for (i = 0; i < n; i++) {
		im_seq seq = start + i * step;

		m[i] = mk(conv, seq, i == 0 ? prev : seq - step, first_ord + i,
		          7, conv * 1000 + seq, "hello");
	}
	assert_int_equal(im_store_msg_append(st, f, 1, m, n, r), IM_OK);
	for (i = 0; i < n; i++) {
		assert_false(r[i].dup);
		assert_int_equal(r[i].seq, m[i].seq);
	}
}

/* ---- schema ---------------------------------------------------------- */

static void
test_store_reports_its_name_and_the_latest_schema_version(void **state)
{
	im_store *st = st_of(state);
	uint32_t v = 0;

	assert_non_null(im_store_name(st));
	assert_true(strlen(im_store_name(st)) > 0);
	assert_non_null(im_store_errmsg(st));
	assert_int_equal(im_store_migrate(st, &v), IM_OK);
	assert_int_equal(v, IM_STORE_SCHEMA_VERSION);
}

static void
test_store_migrate_twice_is_a_no_op(void **state)
{
	im_store *st = st_of(state);
	im_group g = {.gid = 5, .creator = 1, .created_ms = 9, .name = "g"};
	im_group out;
	uint32_t v1 = 0, v2 = 0;

	assert_int_equal(im_store_group_create(st, &g), IM_OK);
	assert_int_equal(im_store_migrate(st, &v1), IM_OK);
	assert_int_equal(im_store_migrate(st, &v2), IM_OK);
	assert_int_equal(v1, IM_STORE_SCHEMA_VERSION);
	assert_int_equal(v2, v1);
	assert_int_equal(im_store_migrate(st, NULL), IM_OK);
	assert_int_equal(im_store_group_lookup(st, 5, &out), IM_OK);
	assert_string_equal(out.name, "g");
}

static void
test_store_migrate_refuses_a_schema_newer_than_the_build(void **state)
{
	im_store *st = st_of(state);
	uint32_t v = 0;

	assert_int_equal(
	        fx->exec(fx->ctx, st, "UPDATE im_schema SET version = 999"),
	        IM_OK);
	assert_int_equal(im_store_migrate(st, &v), IM_ESCHEMA);
	assert_non_null(strstr(im_store_errmsg(st), "999"));
}

/* ---- slots ----------------------------------------------------------- */

static void
test_slot_cas_first_claim_expects_epoch_zero(void **state)
{
	im_store *st = st_of(state);
	im_epoch e = 0;

	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 3, 0, "n1", &e),
	                 IM_OK);
	assert_int_equal(e, 1);
	/* A claim that expects an epoch the slot never had loses. */
	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 4, 1, "n1", &e),
	                 IM_ECONFLICT);
	assert_int_equal(e, 0);
}

static void
test_slot_cas_conflict_returns_the_current_epoch(void **state)
{
	im_store *st = st_of(state);
	im_epoch e = 0;

	claim(st, IM_KIND_USER, 10);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 10, 0, "n2", &e),
	                 IM_ECONFLICT);
	assert_int_equal(e, 1);
	assert_true(strlen(im_store_errmsg(st)) > 0);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 10, 5, "n2", &e),
	                 IM_ECONFLICT);
	assert_int_equal(e, 1);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 10, 1, "n2", &e),
	                 IM_OK);
	assert_int_equal(e, 2);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 10, 1, "n3", &e),
	                 IM_ECONFLICT);
	assert_int_equal(e, 2);
}

/*
 * slot_cas_many is optional (version 3): a backend without it answers
 * IM_ENOTSUP and changes nothing; one with it is all or nothing.
 */
static void
test_slot_cas_many_is_all_or_nothing_or_not_supported(void **state)
{
	im_store *st = st_of(state);
	uint32_t slots[3] = {20, 21, 22};
	im_epoch expect[3] = {0, 0, 0}, got[3] = {0, 0, 0}, e = 0;
	int rc;

	claim(st, IM_KIND_GROUP, 21);
	rc = im_store_slot_cas_many(st, IM_KIND_GROUP, slots, expect, 3, "m1",
	                            got);
	if (rc == IM_ENOTSUP) {
		assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 20, 0,
		                                   "m1", &e),
		                 IM_OK);
		return;
	}
	/* Slot 21 is at epoch 1: nothing changes, current epochs come back. */
	assert_int_equal(rc, IM_ECONFLICT);
	assert_int_equal(got[0], 0);
	assert_int_equal(got[1], 1);
	assert_int_equal(got[2], 0);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 20, 1, "x", &e),
	                 IM_ECONFLICT);
	assert_int_equal(e, 0);
	expect[1] = 1;
	assert_int_equal(im_store_slot_cas_many(st, IM_KIND_GROUP, slots,
	                                        expect, 3, "m1", got),
	                 IM_OK);
	assert_int_equal(got[0], 1);
	assert_int_equal(got[1], 2);
	assert_int_equal(got[2], 1);
	/* Every slot moved: the old epochs now lose a single CAS. */
	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 21, 1, "x", &e),
	                 IM_ECONFLICT);
	assert_int_equal(e, 2);
	assert_int_equal(im_store_slot_cas_many(st, IM_KIND_GROUP, slots,
	                                        expect, 0, "m1", got),
	                 IM_EINVAL);
}

/*
 * slot_cas_many through the faulty store (the wrappers once lacked it, so
 * this path only ever met the one-by-one fallback): a fault before the
 * call changes nothing, a fault after it (commit, then a lost answer)
 * leaves every slot moved, so the retry with the same expectations loses.
 */
static void
test_slot_cas_many_through_a_faulty_store_fails_whole(void **state)
{
	im_store *st = st_of(state), *faulty = NULL;
	uint32_t slots[2] = {30, 31};
	im_epoch expect[2] = {0, 0}, got[2] = {0, 0};
	faulty_plan plan = {
	        .ops = STORE_OP_BIT(STORE_OP_SLOT_CAS_MANY),
	        .nth = 1,
	        .err = IM_EUNAVAIL,
	        .when = FAULTY_BEFORE,
	};
	int rc;

	assert_int_equal(faulty_store_wrap(&faulty, st, false), IM_OK);
	faulty_store_arm(faulty, &plan);
	rc = im_store_slot_cas_many(faulty, IM_KIND_GROUP, slots, expect, 2,
	                            "m1", got);
	if (rc == IM_ENOTSUP) {
		im_store_close(faulty);
		skip();
	}
	assert_int_equal(rc, IM_EUNAVAIL);
	assert_int_equal(faulty_store_faults(faulty), 1);
	/* Nothing happened: the epochs still expected are 0. */
	assert_int_equal(im_store_slot_cas_many(faulty, IM_KIND_GROUP, slots,
	                                        expect, 2, "m1", got),
	                 IM_OK);
	assert_int_equal(got[0], 1);
	assert_int_equal(got[1], 1);
	plan.when = FAULTY_AFTER;
	faulty_store_arm(faulty, &plan);
	expect[0] = expect[1] = 1;
	assert_int_equal(im_store_slot_cas_many(faulty, IM_KIND_GROUP, slots,
	                                        expect, 2, "m2", got),
	                 IM_EUNAVAIL);
	/* It committed: the same call again finds epochs 2. */
	assert_int_equal(im_store_slot_cas_many(faulty, IM_KIND_GROUP, slots,
	                                        expect, 2, "m2", got),
	                 IM_ECONFLICT);
	assert_int_equal(got[0], 2);
	assert_int_equal(got[1], 2);
	im_store_close(faulty);
}

typedef struct slots_seen {
	im_slot_row row[16];
	char owner[16][IM_OWNER_MAX + 1];
	size_t n;
	size_t stop_after;
} slots_seen;

static int
collect_slot(const im_slot_row *row, void *payload)
{
	slots_seen *s = payload;

	assert_true(s->n < 16);
	s->row[s->n] = *row;
	snprintf(s->owner[s->n], sizeof(s->owner[0]), "%s", row->owner);
	s->row[s->n].owner = s->owner[s->n];
	s->n++;
	return s->stop_after != 0 && s->n == s->stop_after ? 9 : 0;
}

static void
test_slot_epochs_only_grow_and_kinds_are_separate(void **state)
{
	im_store *st = st_of(state);
	slots_seen seen = {0};
	im_epoch e = 0, cur;
	int i;

	cur = claim(st, IM_KIND_GROUP, 1);
	for (i = 0; i < 20; i++) {
		char owner[16];

		snprintf(owner, sizeof(owner), "node-%d", i);
		/* A stale expectation never wins and never lowers the epoch. */
		if (cur > 1) {
			assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 1,
			                                   cur - 1, "z", &e),
			                 IM_ECONFLICT);
			assert_int_equal(e, cur);
		}
		assert_int_equal(
		        im_store_slot_cas(st, IM_KIND_GROUP, 1, cur, owner, &e),
		        IM_OK);
		assert_true(e > cur);
		cur = e;
	}
	/* The same slot number of the other kind is untouched. */
	claim(st, IM_KIND_USER, 1);
	assert_int_equal(
	        im_store_slot_load(st, IM_KIND_GROUP, collect_slot, &seen),
	        IM_OK);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.row[0].slot, 1);
	assert_int_equal(seen.row[0].kind, IM_KIND_GROUP);
	assert_int_equal(seen.row[0].epoch, cur);
	assert_string_equal(seen.row[0].owner, "node-19");
}

static void
test_slot_load_streams_in_slot_order_and_stops_on_nonzero(void **state)
{
	im_store *st = st_of(state);
	slots_seen seen = {0};
	char owner[IM_OWNER_MAX + 1];

	memset(owner, 'o', IM_OWNER_MAX);
	owner[IM_OWNER_MAX] = '\0';
	assert_int_equal(
	        im_store_slot_cas(st, IM_KIND_USER, 900, 0, owner, NULL),
	        IM_OK);
	claim(st, IM_KIND_USER, 7);
	claim(st, IM_KIND_USER, 0);
	assert_int_equal(
	        im_store_slot_load(st, IM_KIND_USER, collect_slot, &seen),
	        IM_OK);
	assert_int_equal(seen.n, 3);
	assert_int_equal(seen.row[0].slot, 0);
	assert_int_equal(seen.row[1].slot, 7);
	assert_int_equal(seen.row[2].slot, 900);
	assert_string_equal(seen.row[2].owner, owner);
	memset(&seen, 0, sizeof(seen));
	seen.stop_after = 2;
	assert_int_equal(
	        im_store_slot_load(st, IM_KIND_USER, collect_slot, &seen), 9);
	assert_int_equal(seen.n, 2);
}

static void
test_slot_ops_reject_bad_arguments(void **state)
{
	im_store *st = st_of(state);
	char owner[IM_OWNER_MAX + 2];
	im_epoch e;

	memset(owner, 'x', sizeof(owner) - 1);
	owner[sizeof(owner) - 1] = '\0';
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 1, 0, NULL, &e),
	                 IM_EINVAL);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 1, 0, owner, &e),
	                 IM_EINVAL);
	assert_int_equal(im_store_slot_cas(st, (im_kind)9, 1, 0, "n", &e),
	                 IM_EINVAL);
	assert_int_equal(
	        im_store_slot_cas(st, IM_KIND_USER, 1, UINT64_MAX, "n", &e),
	        IM_EINVAL);
	assert_int_equal(im_store_slot_load(st, IM_KIND_USER, NULL, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_slot_load(st, (im_kind)9, collect_slot, NULL),
	                 IM_EINVAL);
	/* Nothing was recorded by the refused calls. */
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 1, 0, "n", &e),
	                 IM_OK);
}

/* ---- segments -------------------------------------------------------- */

static void
test_seg_take_first_segment_of_a_key_starts_at_one(void **state)
{
	im_store *st = st_of(state);
	im_seg_key k = {IM_SEG_GROUP_SEQ, 77};
	im_seg s;

	assert_int_equal(im_store_seg_take(st, &k, 100, &s), IM_OK);
	assert_int_equal(s.first, 1);
	assert_int_equal(s.last, 100);
}

static void
test_seg_take_hands_out_disjoint_increasing_ranges(void **state)
{
	static const uint32_t steps[] = {1, 7, 1000, 1, 65536, 3, 1u << 30};
	im_store *st = st_of(state);
	im_seg_key keys[] = {
	        {IM_SEG_GROUP_SEQ, 1},
	        {IM_SEG_USER_SEQ, 1},
	        {IM_SEG_GROUP_ID, 0},
	};
	uint64_t last[3] = {0, 0, 0};
	size_t i, k;
	im_seg s;

	for (i = 0; i < LEN(steps); i++) {
		for (k = 0; k < 3; k++) {
			assert_int_equal(
			        im_store_seg_take(st, &keys[k], steps[i], &s),
			        IM_OK);
			/* Keys are independent: each continues its own. */
			assert_int_equal(s.first, last[k] + 1);
			assert_int_equal(s.last - s.first + 1, steps[i]);
			last[k] = s.last;
		}
	}
}

static void
test_seg_take_rejects_step_zero_and_unknown_spaces(void **state)
{
	im_store *st = st_of(state);
	im_seg_key k = {IM_SEG_GROUP_SEQ, 1};
	im_seg_key bad = {(im_seg_space)17, 1};
	im_seg s;

	assert_int_equal(im_store_seg_take(st, &k, 0, &s), IM_EINVAL);
	assert_int_equal(im_store_seg_take(st, &bad, 1, &s), IM_EINVAL);
	assert_int_equal(im_store_seg_take(st, NULL, 1, &s), IM_EINVAL);
	assert_int_equal(im_store_seg_take(st, &k, 1, NULL), IM_EINVAL);
	assert_int_equal(im_store_seg_take(st, &k, 5, &s), IM_OK);
	assert_int_equal(s.first, 1);
}

/* ---- msg_append ------------------------------------------------------ */

static void
test_msg_append_with_a_valid_fence_stores_the_batch(void **state)
{
	im_store *st = st_of(state);
	im_fence f[2] = {{IM_KIND_GROUP, 1, 0}, {IM_KIND_GROUP, 2, 0}};
	char big[IM_MSG_BODY_MAX];
	im_msg m[4];
	im_append_result r[4];
	collect *c;

	memset(big, 'b', sizeof(big));
	f[0].epoch = claim(st, IM_KIND_GROUP, 1);
	f[1].epoch = claim(st, IM_KIND_GROUP, 2);
	m[0] = mk(100, 10, 0, 1, 7, 1, "one");
	m[1] = mk(200, 3, 0, 1, 8, 1, "");
	m[2] = mk(100, 12, 10, 2, 8, 1, NULL);
	m[3] = mk(100, 20, 12, 3, 7, 2, NULL);
	m[3].body = big;
	m[3].body_len = sizeof(big);
	m[3].type = 5;
	m[3].reply_to = 10;
	assert_int_equal(im_store_msg_append(st, f, 2, m, 4, r), IM_OK);
	for (int i = 0; i < 4; i++) {
		assert_false(r[i].dup);
		assert_int_equal(r[i].seq, m[i].seq);
		assert_int_equal(r[i].prev_seq, m[i].prev_seq);
		assert_int_equal(r[i].ordinal, m[i].ordinal);
		assert_int_equal(r[i].time_ms, m[i].time_ms);
	}
	c = read_all(st, 100);
	assert_int_equal(c->n, 3);
	assert_int_equal(c->m[0].seq, 10);
	assert_string_equal(c->m[0].body, "one");
	assert_int_equal(c->m[1].body_len, 0);
	assert_int_equal(c->m[1].sender, 8);
	assert_int_equal(c->m[2].seq, 20);
	assert_int_equal(c->m[2].prev_seq, 12);
	assert_int_equal(c->m[2].ordinal, 3);
	assert_int_equal(c->m[2].type, 5);
	assert_int_equal(c->m[2].reply_to, 10);
	assert_int_equal(c->m[2].dedup_id, 2);
	assert_int_equal(c->m[2].time_ms, 1020);
	assert_int_equal(c->m[2].body_len, sizeof(big));
	assert_memory_equal(c->m[2].body, big, sizeof(big));
	free(c);
	assert_int_equal(count_msgs(st, 200), 1);
}

static void
test_msg_append_with_a_stale_fence_stores_nothing(void **state)
{
	im_store *st = st_of(state);
	im_fence f[2] = {{IM_KIND_GROUP, 1, 0}, {IM_KIND_GROUP, 2, 0}};
	im_fence never = {IM_KIND_GROUP, 99, 0};
	im_msg m[2];
	im_append_result r[2];
	im_epoch e;

	f[0].epoch = claim(st, IM_KIND_GROUP, 1);
	f[1].epoch = claim(st, IM_KIND_GROUP, 2);
	m[0] = mk(100, 1, 0, 1, 7, 1, "a");
	m[1] = mk(200, 1, 0, 1, 7, 1, "b");
	/* A new owner took slot 2 over: the old owner's batch is fenced. */
	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 2, 1, "new", &e),
	                 IM_OK);
	assert_int_equal(im_store_msg_append(st, f, 2, m, 2, r), IM_ESTALE);
	assert_non_null(strstr(im_store_errmsg(st), "2"));
	assert_int_equal(count_msgs(st, 100), 0);
	assert_int_equal(count_msgs(st, 200), 0);
	/* A slot nobody ever owned fences everyone, epoch 0 included. */
	assert_int_equal(im_store_msg_append(st, &never, 1, m, 1, r),
	                 IM_ESTALE);
	never.epoch = 1;
	assert_int_equal(im_store_msg_append(st, &never, 1, m, 1, r),
	                 IM_ESTALE);
	assert_int_equal(count_msgs(st, 100), 0);
	/* The new epoch works. */
	f[1].epoch = e;
	assert_int_equal(im_store_msg_append(st, f, 2, m, 2, r), IM_OK);
	assert_int_equal(count_msgs(st, 100), 1);
}

static void
test_msg_append_dup_of_a_stored_message_returns_the_original(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0};
	im_msg m[3];
	im_append_result r[3];
	collect *c;

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	m[0] = mk(100, 10, 0, 1, 7, 555, "orig");
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 1, r), IM_OK);
	/*
	 * A new owner (cache lost) gives the retried message a fresh seq:
	 * it must come back as a dup of seq 10, and the message after it is
	 * rechained onto seq 10 with the next ordinal.
	 */
	m[0] = mk(100, 20, 10, 2, 7, 555, "retry");
	m[0].time_ms = 99999;
	m[1] = mk(100, 21, 20, 3, 8, 1, "next");
	m[2] = mk(100, 22, 21, 4, 8, 2, "after");
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 3, r), IM_OK);
	assert_true(r[0].dup);
	assert_int_equal(r[0].seq, 10);
	assert_int_equal(r[0].time_ms, 1010);
	assert_int_equal(r[0].ordinal, 1);
	assert_false(r[1].dup);
	assert_int_equal(r[1].seq, 21);
	assert_int_equal(r[1].prev_seq, 10);
	assert_int_equal(r[1].ordinal, 2);
	assert_int_equal(r[2].prev_seq, 21);
	assert_int_equal(r[2].ordinal, 3);
	c = read_all(st, 100);
	assert_int_equal(c->n, 3);
	assert_string_equal(c->m[0].body, "orig");
	assert_int_equal(c->m[1].seq, 21);
	assert_int_equal(c->m[1].prev_seq, 10);
	assert_int_equal(c->m[1].ordinal, 2);
	assert_int_equal(c->m[2].prev_seq, 21);
	assert_int_equal(c->m[2].ordinal, 3);
	free(c);
}

static void
test_msg_append_dup_within_one_batch_rechains_later_messages(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0};
	im_msg m[6];
	im_append_result r[6];
	collect *c;

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	m[0] = mk(100, 1, 0, 1, 7, 1, "a");
	m[1] = mk(300, 5, 4, 9, 7, 1, "other conv");
	m[2] = mk(100, 2, 1, 2, 7, 1, "a again"); /* same key as m[0] */
	m[3] = mk(100, 3, 2, 3, 7, 1, "a thrice");
	m[4] = mk(100, 4, 3, 4, 8, 1, "b");
	m[5] = mk(300, 6, 5, 10, 8, 1, "other conv 2");
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 6, r), IM_OK);
	assert_false(r[0].dup);
	assert_true(r[2].dup);
	assert_int_equal(r[2].seq, 1);
	assert_true(r[3].dup);
	assert_int_equal(r[3].seq, 1);
	assert_false(r[4].dup);
	assert_int_equal(r[4].seq, 4);
	assert_int_equal(r[4].prev_seq, 1);
	assert_int_equal(r[4].ordinal, 2);
	/* The other conv's chain is its own. */
	assert_int_equal(r[5].prev_seq, 5);
	assert_int_equal(r[5].ordinal, 10);
	c = read_all(st, 100);
	assert_int_equal(c->n, 2);
	assert_int_equal(c->m[1].seq, 4);
	assert_int_equal(c->m[1].prev_seq, 1);
	assert_int_equal(c->m[1].ordinal, 2);
	free(c);
	assert_int_equal(count_msgs(st, 300), 2);
}

static void
test_msg_append_rejects_bad_batches_and_stores_nothing(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0};
	im_fence badf = {(im_kind)5, 1, 1};
	static char big[IM_MSG_BODY_MAX + 1];
	im_msg ok = mk(100, 5, 0, 1, 7, 1, "x");
	im_msg m[2];
	im_append_result r[2];

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	assert_int_equal(im_store_msg_append(st, &f, 1, &ok, 0, r), IM_EINVAL);
	assert_int_equal(im_store_msg_append(st, &f, 0, &ok, 1, r), IM_EINVAL);
	assert_int_equal(im_store_msg_append(st, NULL, 1, &ok, 1, r),
	                 IM_EINVAL);
	assert_int_equal(im_store_msg_append(st, &badf, 1, &ok, 1, r),
	                 IM_EINVAL);
	assert_int_equal(im_store_msg_append(st, &f, 1, NULL, 1, r), IM_EINVAL);
	assert_int_equal(im_store_msg_append(st, &f, 1, &ok, 1, NULL),
	                 IM_EINVAL);
	m[0] = ok;
	m[0].body = big;
	m[0].body_len = sizeof(big);
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 1, r), IM_EINVAL);
	m[0] = ok;
	m[0].conv = 0;
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 1, r), IM_EINVAL);
	m[0] = ok;
	m[0].seq = 0;
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 1, r), IM_EINVAL);
	m[0] = ok;
	m[0].sender = 0;
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 1, r), IM_EINVAL);
	m[0] = ok;
	m[0].ordinal = 0;
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 1, r), IM_EINVAL);
	m[0] = ok;
	m[0].prev_seq = 5;
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 1, r), IM_EINVAL);
	m[0] = ok;
	m[0].body = NULL;
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 1, r), IM_EINVAL);
	/* A batch whose chain has a hole is refused as a whole. */
	m[0] = ok;
	m[1] = mk(100, 7, 6, 2, 7, 2, "y");
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 2, r), IM_EINVAL);
	m[1] = mk(100, 7, 5, 3, 7, 2, "y");
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 2, r), IM_EINVAL);
	assert_true(strlen(im_store_errmsg(st)) > 0);
	assert_int_equal(count_msgs(st, 100), 0);
}

static void
test_msg_append_of_a_taken_seq_fails_and_stores_nothing(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0};
	im_msg m[3];
	im_append_result r[3];

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	append_chain(st, &f, 100, 5, 1, 1, 1, 0);
	/* Message 3 reuses seq 5 with another dedup key: a broken owner. */
	m[0] = mk(200, 1, 0, 1, 7, 1, "a");
	m[1] = mk(100, 6, 5, 2, 7, 2, "b");
	m[2] = mk(100, 5, 0, 1, 9, 3, "c");
	assert_int_equal(im_store_msg_append(st, &f, 1, &m[2], 1, r),
	                 IM_ECONFLICT);
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 2, r), IM_OK);
	m[0] = mk(200, 2, 1, 2, 7, 2, "a2");
	m[1] = mk(300, 1, 0, 1, 7, 3, "b2");
	m[2] = mk(100, 6, 5, 2, 9, 9, "taken");
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 3, r), IM_ECONFLICT);
	assert_non_null(strstr(im_store_errmsg(st), "seq 6"));
	assert_int_equal(count_msgs(st, 200), 1);
	assert_int_equal(count_msgs(st, 300), 0);
	assert_int_equal(count_msgs(st, 100), 2);
}

/* ---- reads ----------------------------------------------------------- */

static void
test_msg_read_pages_with_after_until_and_limit(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0};
	collect *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	f.epoch = claim(st, IM_KIND_GROUP, 1);
	/* Seqs 3, 6, ..., 30: gaps as segments leave them. */
	append_chain(st, &f, 100, 3, 3, 10, 1, 0);
	assert_int_equal(
	        im_store_msg_read(st, 100, 0, IM_SEQ_MAX, 4, collect_msg, c),
	        IM_OK);
	assert_int_equal(c->n, 4);
	assert_int_equal(c->m[3].seq, 12);
	/* The next page starts after the last seq seen. */
	assert_int_equal(im_store_msg_read(st, 100, c->m[3].seq, IM_SEQ_MAX, 4,
	                                   collect_msg, c),
	                 IM_OK);
	assert_int_equal(c->n, 8);
	assert_int_equal(c->m[4].seq, 15);
	assert_int_equal(
	        im_store_msg_read(st, 100, 24, IM_SEQ_MAX, 4, collect_msg, c),
	        IM_OK);
	assert_int_equal(c->n, 10);
	assert_int_equal(c->m[9].seq, 30);
	/* after and until fall in gaps: until is inclusive. */
	memset(c, 0, sizeof(*c));
	assert_int_equal(im_store_msg_read(st, 100, 4, 13, 0, collect_msg, c),
	                 IM_OK);
	assert_int_equal(c->n, 3);
	assert_int_equal(c->m[0].seq, 6);
	assert_int_equal(c->m[2].seq, 12);
	memset(c, 0, sizeof(*c));
	assert_int_equal(im_store_msg_read(st, 100, 6, 12, 0, collect_msg, c),
	                 IM_OK);
	assert_int_equal(c->n, 2);
	/* Empty windows and other convs return nothing. */
	memset(c, 0, sizeof(*c));
	assert_int_equal(im_store_msg_read(st, 100, 12, 12, 0, collect_msg, c),
	                 IM_OK);
	assert_int_equal(im_store_msg_read(st, 100, 20, 10, 0, collect_msg, c),
	                 IM_OK);
	assert_int_equal(
	        im_store_msg_read(st, 100, 30, IM_SEQ_MAX, 0, collect_msg, c),
	        IM_OK);
	assert_int_equal(
	        im_store_msg_read(st, 101, 0, IM_SEQ_MAX, 0, collect_msg, c),
	        IM_OK);
	assert_int_equal(c->n, 0);
	/* A callback's non-zero return stops the read and is passed on. */
	c->stop_after = 2;
	assert_int_equal(
	        im_store_msg_read(st, 100, 0, IM_SEQ_MAX, 0, collect_msg, c),
	        42);
	assert_int_equal(c->n, 2);
	assert_int_equal(im_store_msg_read(st, 0, 0, 1, 0, collect_msg, c),
	                 IM_EINVAL);
	assert_int_equal(im_store_msg_read(st, 100, 0, 1, 0, NULL, c),
	                 IM_EINVAL);
	free(c);
}

static void
test_msg_last_finds_the_last_message_at_or_before_a_seq(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0};
	im_msg_pos p;

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	assert_int_equal(im_store_msg_last(st, 100, IM_SEQ_MAX, &p),
	                 IM_ENOTFOUND);
	assert_int_equal(p.seq, 0);
	assert_int_equal(p.ordinal, 0);
	append_chain(st, &f, 100, 10, 10, 5, 1, 0); /* 10, 20, ... 50 */
	assert_int_equal(im_store_msg_last(st, 100, IM_SEQ_MAX, &p), IM_OK);
	assert_int_equal(p.seq, 50);
	assert_int_equal(p.ordinal, 5);
	assert_int_equal(im_store_msg_last(st, 100, 35, &p), IM_OK);
	assert_int_equal(p.seq, 30);
	assert_int_equal(p.ordinal, 3);
	assert_int_equal(im_store_msg_last(st, 100, 20, &p), IM_OK);
	assert_int_equal(p.seq, 20);
	assert_int_equal(im_store_msg_last(st, 100, 9, &p), IM_ENOTFOUND);
	assert_int_equal(p.seq, 0);
	assert_int_equal(im_store_msg_last(st, 100, 0, &p), IM_ENOTFOUND);
	assert_int_equal(im_store_msg_last(st, 0, 5, &p), IM_EINVAL);
	assert_int_equal(im_store_msg_last(st, 100, 5, NULL), IM_EINVAL);
}

static void
test_msg_find_dedup_returns_the_stored_message_without_body(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0};
	im_msg m = mk(100, 10, 0, 1, 7, 4242, "body");
	im_append_result r;
	im_msg out;

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	m.reply_to = 3;
	m.type = 2;
	assert_int_equal(im_store_msg_append(st, &f, 1, &m, 1, &r), IM_OK);
	memset(&out, 0xff, sizeof(out));
	assert_int_equal(im_store_msg_find_dedup(st, 100, 7, 4242, &out),
	                 IM_OK);
	assert_int_equal(out.conv, 100);
	assert_int_equal(out.seq, 10);
	assert_int_equal(out.prev_seq, 0);
	assert_int_equal(out.ordinal, 1);
	assert_int_equal(out.sender, 7);
	assert_int_equal(out.dedup_id, 4242);
	assert_int_equal(out.reply_to, 3);
	assert_int_equal(out.type, 2);
	assert_int_equal(out.time_ms, 1010);
	assert_int_equal(out.body_len, 0);
	assert_int_equal(im_store_msg_find_dedup(st, 100, 8, 4242, &out),
	                 IM_ENOTFOUND);
	assert_int_equal(im_store_msg_find_dedup(st, 101, 7, 4242, &out),
	                 IM_ENOTFOUND);
	assert_int_equal(im_store_msg_find_dedup(st, 100, 0, 4242, &out),
	                 IM_EINVAL);
	assert_int_equal(im_store_msg_find_dedup(st, 100, 7, 4242, NULL),
	                 IM_EINVAL);
}

/* ---- groups, members, conversations ---------------------------------- */

static void
make_group(im_store *st, im_gid gid)
{
	im_group g = {.gid = gid, .creator = 1, .created_ms = 123};

	snprintf(g.name, sizeof(g.name), "group %llu", (unsigned long long)gid);
	assert_int_equal(im_store_group_create(st, &g), IM_OK);
}

static void
test_group_create_and_lookup_round_trip(void **state)
{
	im_store *st = st_of(state);
	im_group g = {.gid = 42, .creator = 9, .created_ms = 777};
	im_group out;

	memset(g.name, 'n', IM_GROUP_NAME_MAX);
	g.name[IM_GROUP_NAME_MAX] = '\0';
	assert_int_equal(im_store_group_create(st, &g), IM_OK);
	assert_int_equal(im_store_group_lookup(st, 42, &out), IM_OK);
	assert_int_equal(out.gid, 42);
	assert_int_equal(out.creator, 9);
	assert_int_equal(out.created_ms, 777);
	assert_string_equal(out.name, g.name);
	g.creator = 10;
	assert_int_equal(im_store_group_create(st, &g), IM_ECONFLICT);
	assert_int_equal(im_store_group_lookup(st, 42, &out), IM_OK);
	assert_int_equal(out.creator, 9);
	assert_int_equal(im_store_group_lookup(st, 43, &out), IM_ENOTFOUND);
	g.gid = 0;
	assert_int_equal(im_store_group_create(st, &g), IM_EINVAL);
	g.gid = 44;
	memset(g.name, 'n', sizeof(g.name));
	assert_int_equal(im_store_group_create(st, &g), IM_EINVAL);
	assert_int_equal(im_store_group_create(st, NULL), IM_EINVAL);
	assert_int_equal(im_store_group_lookup(st, 44, &out), IM_ENOTFOUND);
	assert_int_equal(im_store_group_lookup(st, 42, NULL), IM_EINVAL);
}

typedef struct uids {
	im_uid u[16];
	size_t n;
	size_t stop_after;
} uids;

static int
collect_uid(im_uid u, void *payload)
{
	uids *s = payload;

	assert_true(s->n < 16);
	s->u[s->n++] = u;
	return s->stop_after != 0 && s->n == s->stop_after ? 5 : 0;
}

static void
test_member_add_remove_and_list_in_uid_order(void **state)
{
	im_store *st = st_of(state);
	uids s = {0};
	bool added = false, removed = false;

	make_group(st, 1);
	assert_int_equal(im_store_member_add(st, 1, 30, &added), IM_OK);
	assert_true(added);
	assert_int_equal(im_store_member_add(st, 1, 10, NULL), IM_OK);
	assert_int_equal(im_store_member_add(st, 1, 20, &added), IM_OK);
	assert_int_equal(im_store_member_add(st, 1, 20, &added), IM_OK);
	assert_false(added);
	assert_int_equal(im_store_member_add(st, 2, 20, &added), IM_ENOTFOUND);
	assert_int_equal(im_store_member_add(st, 1, 0, &added), IM_EINVAL);
	assert_int_equal(im_store_member_list(st, 1, collect_uid, &s), IM_OK);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.u[0], 10);
	assert_int_equal(s.u[1], 20);
	assert_int_equal(s.u[2], 30);
	assert_int_equal(im_store_member_remove(st, 1, 20, &removed), IM_OK);
	assert_true(removed);
	assert_int_equal(im_store_member_remove(st, 1, 20, &removed), IM_OK);
	assert_false(removed);
	assert_int_equal(im_store_member_remove(st, 1, 10, NULL), IM_OK);
	memset(&s, 0, sizeof(s));
	assert_int_equal(im_store_member_list(st, 1, collect_uid, &s), IM_OK);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.u[0], 30);
	memset(&s, 0, sizeof(s));
	assert_int_equal(im_store_member_list(st, 2, collect_uid, &s), IM_OK);
	assert_int_equal(s.n, 0);
	assert_int_equal(im_store_member_add(st, 1, 40, NULL), IM_OK);
	s.stop_after = 1;
	assert_int_equal(im_store_member_list(st, 1, collect_uid, &s), 5);
	assert_int_equal(s.n, 1);
	assert_int_equal(im_store_member_list(st, 1, NULL, &s), IM_EINVAL);
	assert_int_equal(im_store_member_remove(st, 0, 1, NULL), IM_EINVAL);
}

typedef struct convs {
	im_conv_row row[8];
	unsigned char preview[8][IM_PREVIEW_MAX];
	size_t n;
	size_t stop_after;
} convs;

static int
collect_conv(const im_conv_row *row, void *payload)
{
	convs *c = payload;

	assert_true(c->n < 8);
	assert_true(row->preview_len <= IM_PREVIEW_MAX);
	c->row[c->n] = *row;
	if (row->preview_len > 0) {
		memcpy(c->preview[c->n], row->preview, row->preview_len);
	}
	c->row[c->n].preview = c->preview[c->n];
	c->n++;
	return c->stop_after != 0 && c->n == c->stop_after ? 6 : 0;
}

static void
test_member_add_starts_the_read_pointer_at_the_last_message(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0};
	convs c = {0};

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	make_group(st, 100);
	append_chain(st, &f, 100, 4, 4, 3, 1, 0); /* 4, 8, 12 */
	assert_int_equal(im_store_member_add(st, 100, 5, NULL), IM_OK);
	assert_int_equal(im_store_conv_load(st, 5, collect_conv, &c), IM_OK);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.row[0].conv, 100);
	assert_int_equal(c.row[0].read_seq, 12);
	assert_int_equal(c.row[0].read_ordinal, 3);
	assert_int_equal(c.row[0].last.seq, 12);
	assert_int_equal(c.row[0].last.ordinal, 3);
	/* Re-adding keeps the member's pointer where it was. */
	append_chain(st, &f, 100, 16, 1, 1, 4, 12);
	assert_int_equal(im_store_member_add(st, 100, 5, NULL), IM_OK);
	memset(&c, 0, sizeof(c));
	assert_int_equal(im_store_conv_load(st, 5, collect_conv, &c), IM_OK);
	assert_int_equal(c.row[0].read_seq, 12);
	assert_int_equal(c.row[0].last.seq, 16);
	assert_int_equal(c.row[0].last.ordinal - c.row[0].read_ordinal, 1);
}

static void
test_conv_load_returns_each_group_with_its_last_message(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0};
	char body[100];
	im_msg m[2];
	im_append_result r[2];
	convs c = {0};

	for (size_t i = 0; i < sizeof(body); i++) {
		body[i] = (char)('a' + i % 26);
	}
	f.epoch = claim(st, IM_KIND_GROUP, 1);
	make_group(st, 300);
	make_group(st, 100);
	make_group(st, 200);
	assert_int_equal(im_store_member_add(st, 300, 5, NULL), IM_OK);
	assert_int_equal(im_store_member_add(st, 100, 5, NULL), IM_OK);
	assert_int_equal(im_store_member_add(st, 200, 6, NULL), IM_OK);
	m[0] = mk(300, 1, 0, 1, 8, 1, "short");
	m[1] = mk(300, 2, 1, 2, 9, 2, NULL);
	m[1].body = body;
	m[1].body_len = sizeof(body);
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 2, r), IM_OK);
	assert_int_equal(im_store_conv_load(st, 5, collect_conv, &c), IM_OK);
	assert_int_equal(c.n, 2);
	/* Group 100 has no message yet. */
	assert_int_equal(c.row[0].conv, 100);
	assert_int_equal(c.row[0].last.seq, 0);
	assert_int_equal(c.row[0].last.ordinal, 0);
	assert_int_equal(c.row[0].preview_len, 0);
	assert_int_equal(c.row[1].conv, 300);
	assert_int_equal(c.row[1].read_seq, 0);
	assert_int_equal(c.row[1].last.seq, 2);
	assert_int_equal(c.row[1].last.ordinal, 2);
	assert_int_equal(c.row[1].last_sender, 9);
	assert_int_equal(c.row[1].last_time_ms, 1002);
	assert_int_equal(c.row[1].preview_len, IM_PREVIEW_MAX);
	assert_memory_equal(c.row[1].preview, body, IM_PREVIEW_MAX);
	assert_int_equal(c.row[1].last.ordinal - c.row[1].read_ordinal, 2);
	memset(&c, 0, sizeof(c));
	assert_int_equal(im_store_conv_load(st, 77, collect_conv, &c), IM_OK);
	assert_int_equal(c.n, 0);
	c.stop_after = 1;
	assert_int_equal(im_store_conv_load(st, 5, collect_conv, &c), 6);
	assert_int_equal(im_store_conv_load(st, 0, collect_conv, &c),
	                 IM_EINVAL);
}

/*
 * A message is read for its sender (the conversation lists count it so):
 * the sender's read pointer, when a member, moves to its message in the
 * append's transaction, never backwards; a duplicate moves nothing.
 */
static void
test_msg_append_moves_the_senders_read_pointer_to_its_message(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0};
	im_msg m[3];
	im_append_result r[3];
	convs c = {0};

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	make_group(st, 100);
	assert_int_equal(im_store_member_add(st, 100, 5, NULL), IM_OK);
	assert_int_equal(im_store_member_add(st, 100, 6, NULL), IM_OK);
	m[0] = mk(100, 4, 0, 1, 5, 1, "mine");
	m[1] = mk(100, 8, 4, 2, 6, 1, "theirs");
	m[2] = mk(100, 9, 8, 3, 5, 2, "mine again");
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 3, r), IM_OK);
	assert_int_equal(im_store_conv_load(st, 5, collect_conv, &c), IM_OK);
	assert_int_equal(c.row[0].read_seq, 9);
	assert_int_equal(c.row[0].read_ordinal, 3);
	assert_int_equal(c.row[0].last.ordinal - c.row[0].read_ordinal, 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(im_store_conv_load(st, 6, collect_conv, &c), IM_OK);
	assert_int_equal(c.row[0].read_seq, 8);
	assert_int_equal(c.row[0].read_ordinal, 2);
	assert_int_equal(c.row[0].last.ordinal - c.row[0].read_ordinal, 1);
	/* User 6 read everything; its old message again (a retry) is a
	 * duplicate and moves nothing back. */
	assert_int_equal(im_store_conv_update(st, 6, 100, 9, 3, 0), IM_OK);
	m[0] = mk(100, 12, 9, 4, 6, 1, "theirs");
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 1, r), IM_OK);
	assert_true(r[0].dup);
	memset(&c, 0, sizeof(c));
	assert_int_equal(im_store_conv_load(st, 6, collect_conv, &c), IM_OK);
	assert_int_equal(c.row[0].read_seq, 9);
	assert_int_equal(c.row[0].read_ordinal, 3);
}

static void
test_conv_update_moves_the_read_pointer_only_forward(void **state)
{
	im_store *st = st_of(state);
	convs c = {0};

	make_group(st, 100);
	assert_int_equal(im_store_member_add(st, 100, 5, NULL), IM_OK);
	assert_int_equal(
	        im_store_conv_update(st, 5, 100, 50, 5, IM_CONV_PINNED), IM_OK);
	/* An older device reporting an older read: pointer stays. */
	assert_int_equal(im_store_conv_update(st, 5, 100, 30, 3, IM_CONV_MUTED),
	                 IM_OK);
	assert_int_equal(im_store_conv_load(st, 5, collect_conv, &c), IM_OK);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.row[0].read_seq, 50);
	assert_int_equal(c.row[0].read_ordinal, 5);
	assert_int_equal(c.row[0].flags, IM_CONV_MUTED);
	assert_int_equal(im_store_conv_update(st, 5, 100, 60, 6, 0), IM_OK);
	memset(&c, 0, sizeof(c));
	assert_int_equal(im_store_conv_load(st, 5, collect_conv, &c), IM_OK);
	assert_int_equal(c.row[0].read_seq, 60);
	assert_int_equal(c.row[0].read_ordinal, 6);
	assert_int_equal(c.row[0].flags, 0);
	assert_int_equal(im_store_conv_update(st, 6, 100, 60, 6, 0),
	                 IM_ENOTFOUND);
	assert_int_equal(im_store_conv_update(st, 5, 101, 60, 6, 0),
	                 IM_ENOTFOUND);
	assert_int_equal(im_store_conv_update(st, 0, 100, 60, 6, 0), IM_EINVAL);
}

/* The members of gid as "u1,u2,": what the fenced tests compare. */
static void
members_of(im_store *st, im_gid gid, char *out, size_t cap)
{
	uids s = {0};
	size_t i, len = 0;

	assert_int_equal(im_store_member_list(st, gid, collect_uid, &s), IM_OK);
	out[0] = '\0';
	for (i = 0; i < s.n; i++) {
		len += (size_t)snprintf(out + len, cap - len, "%llu,",
		                        (unsigned long long)s.u[i]);
		assert_true(len < cap);
	}
}

/*
 * Membership is an owner write like a message: a Chatter that lost the
 * group slot (its epoch moved on) adds and removes nobody, and the store
 * says IM_ESTALE; the owner at the current epoch does both.
 */
static void
test_member_add_and_remove_fenced_write_only_at_the_current_epoch(
        void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0}, stale, both[2];
	im_fence never = {IM_KIND_GROUP, 9, 0};
	bool added = false, removed = true;
	char got[64];
	im_epoch e;

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	make_group(st, 10);
	assert_int_equal(im_store_member_add_fenced(st, &f, 1, 10, 5, &added),
	                 IM_OK);
	assert_true(added);
	assert_int_equal(im_store_member_add_fenced(st, &f, 1, 10, 5, &added),
	                 IM_OK);
	assert_false(added);
	assert_int_equal(im_store_member_add_fenced(st, &f, 1, 11, 5, NULL),
	                 IM_ENOTFOUND);
	assert_int_equal(im_store_member_add_fenced(st, &f, 1, 10, 7, NULL),
	                 IM_OK);
	/* Another owner took the slot over: the old epoch writes nothing. */
	stale = f;
	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 1, f.epoch,
	                                   "node-b", &e),
	                 IM_OK);
	assert_int_equal(im_store_member_add_fenced(st, &stale, 1, 10, 6,
	                                            &added),
	                 IM_ESTALE);
	assert_non_null(strstr(im_store_errmsg(st), "1"));
	assert_int_equal(im_store_member_remove_fenced(st, &stale, 1, 10, 5,
	                                               &removed),
	                 IM_ESTALE);
	/* Stale also when only one of several fences is. */
	both[0] = (im_fence){IM_KIND_GROUP, 1, e};
	both[1] = (im_fence){IM_KIND_GROUP, 2, claim(st, IM_KIND_GROUP, 2)};
	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 2, both[1].epoch,
	                                   "node-b", NULL),
	                 IM_OK);
	assert_int_equal(im_store_member_add_fenced(st, both, 2, 10, 6, NULL),
	                 IM_ESTALE);
	assert_int_equal(im_store_member_remove_fenced(st, both, 2, 10, 7,
	                                               NULL),
	                 IM_ESTALE);
	/* A slot nobody owns fences everyone, epoch 0 included. */
	assert_int_equal(im_store_member_add_fenced(st, &never, 1, 10, 6, NULL),
	                 IM_ESTALE);
	never.epoch = 1;
	assert_int_equal(im_store_member_remove_fenced(st, &never, 1, 10, 5,
	                                               NULL),
	                 IM_ESTALE);
	members_of(st, 10, got, sizeof(got));
	assert_string_equal(got, "5,7,");
	/* The new owner's epoch writes. */
	f.epoch = e;
	assert_int_equal(im_store_member_add_fenced(st, &f, 1, 10, 6, &added),
	                 IM_OK);
	assert_true(added);
	assert_int_equal(im_store_member_remove_fenced(st, &f, 1, 10, 5,
	                                               &removed),
	                 IM_OK);
	assert_true(removed);
	assert_int_equal(im_store_member_remove_fenced(st, &f, 1, 10, 5,
	                                               &removed),
	                 IM_OK);
	assert_false(removed);
	members_of(st, 10, got, sizeof(got));
	assert_string_equal(got, "6,7,");
	/* Bad arguments reach nothing. */
	assert_int_equal(im_store_member_add_fenced(st, NULL, 1, 10, 8, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_member_add_fenced(st, &f, 0, 10, 8, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_member_add_fenced(st, &f, 1, 0, 8, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_member_remove_fenced(st, &f, 1, 10, 0, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_member_remove_fenced(NULL, &f, 1, 10, 6,
	                                               NULL),
	                 IM_EINVAL);
	members_of(st, 10, got, sizeof(got));
	assert_string_equal(got, "6,7,");
}

/*
 * A read pointer is written by the owner of the user's slot: a Connector
 * that lost it moves no pointer (IM_ESTALE), and under the current epoch
 * the pointer still only moves forward.
 */
static void
test_conv_update_fenced_moves_the_pointer_only_at_the_current_epoch(
        void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_USER, 3, 0}, stale;
	im_fence group_kind = {IM_KIND_GROUP, 3, 0};
	convs c = {0};
	im_epoch e;

	f.epoch = claim(st, IM_KIND_USER, 3);
	make_group(st, 100);
	assert_int_equal(im_store_member_add(st, 100, 5, NULL), IM_OK);
	assert_int_equal(im_store_conv_update_fenced(st, &f, 1, 5, 100, 50, 5,
	                                             IM_CONV_PINNED),
	                 IM_OK);
	stale = f;
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 3, f.epoch,
	                                   "node-b", &e),
	                 IM_OK);
	assert_int_equal(im_store_conv_update_fenced(st, &stale, 1, 5, 100, 60,
	                                             6, 0),
	                 IM_ESTALE);
	/* Kinds are separate: a group slot of that number was never owned. */
	group_kind.epoch = e;
	assert_int_equal(im_store_conv_update_fenced(st, &group_kind, 1, 5,
	                                             100, 60, 6, 0),
	                 IM_ESTALE);
	assert_int_equal(im_store_conv_load(st, 5, collect_conv, &c), IM_OK);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.row[0].read_seq, 50);
	assert_int_equal(c.row[0].read_ordinal, 5);
	assert_int_equal(c.row[0].flags, IM_CONV_PINNED);
	/* The owner at the new epoch: forward only, flags as given. */
	f.epoch = e;
	assert_int_equal(im_store_conv_update_fenced(st, &f, 1, 5, 100, 60, 6,
	                                             0),
	                 IM_OK);
	assert_int_equal(im_store_conv_update_fenced(st, &f, 1, 5, 100, 40, 4,
	                                             IM_CONV_MUTED),
	                 IM_OK);
	memset(&c, 0, sizeof(c));
	assert_int_equal(im_store_conv_load(st, 5, collect_conv, &c), IM_OK);
	assert_int_equal(c.row[0].read_seq, 60);
	assert_int_equal(c.row[0].read_ordinal, 6);
	assert_int_equal(c.row[0].flags, IM_CONV_MUTED);
	assert_int_equal(im_store_conv_update_fenced(st, &f, 1, 6, 100, 60, 6,
	                                             0),
	                 IM_ENOTFOUND);
	assert_int_equal(im_store_conv_update_fenced(st, NULL, 0, 5, 100, 70,
	                                             7, 0),
	                 IM_EINVAL);
	assert_int_equal(im_store_conv_update_fenced(st, &f, 1, 5, 0, 70, 7,
	                                             0),
	                 IM_EINVAL);
	memset(&c, 0, sizeof(c));
	assert_int_equal(im_store_conv_load(st, 5, collect_conv, &c), IM_OK);
	assert_int_equal(c.row[0].read_seq, 60);
}

/* ---- user queues ----------------------------------------------------- */

typedef struct uq_seen {
	im_uq_item it[16];
	char body[16][IM_UQ_BODY_MAX + 1];
	size_t n;
	size_t stop_after;
} uq_seen;

static int
collect_uq(const im_uq_item *it, void *payload)
{
	uq_seen *s = payload;

	assert_true(s->n < 16);
	s->it[s->n] = *it;
	if (it->body_len > 0) {
		memcpy(s->body[s->n], it->body, it->body_len);
	}
	s->body[s->n][it->body_len] = '\0';
	s->it[s->n].body = s->body[s->n];
	s->n++;
	return s->stop_after != 0 && s->n == s->stop_after ? 3 : 0;
}

static im_uq_item
uq(im_uid user, im_seq seq, const char *body)
{
	im_uq_item it = {
	        .user = user,
	        .seq = seq,
	        .time_ms = 500 + seq,
	        .type = 4,
	        .body_len = (uint32_t)strlen(body),
	        .body = body,
	};
	return it;
}

static void
test_uq_append_is_fenced_idempotent_and_read_in_order(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_USER, 3, 0};
	im_uq_item it[3];
	uq_seen s = {0};
	im_epoch e;

	f.epoch = claim(st, IM_KIND_USER, 3);
	it[0] = uq(5, 2, "joined");
	it[1] = uq(5, 9, "");
	it[2] = uq(6, 1, "other user");
	assert_int_equal(im_store_uq_append(st, &f, 1, it, 3), IM_OK);
	/* The same (user, seq) again is a no-op, even with another body. */
	it[0] = uq(5, 2, "changed");
	assert_int_equal(im_store_uq_append(st, &f, 1, it, 2), IM_OK);
	assert_int_equal(im_store_uq_read(st, 5, 0, 0, collect_uq, &s), IM_OK);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.it[0].seq, 2);
	assert_string_equal(s.body[0], "joined");
	assert_int_equal(s.it[0].type, 4);
	assert_int_equal(s.it[0].time_ms, 502);
	assert_int_equal(s.it[1].seq, 9);
	assert_int_equal(s.it[1].body_len, 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(im_store_uq_read(st, 5, 2, 0, collect_uq, &s), IM_OK);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.it[0].seq, 9);
	memset(&s, 0, sizeof(s));
	assert_int_equal(im_store_uq_read(st, 5, 0, 1, collect_uq, &s), IM_OK);
	assert_int_equal(s.n, 1);
	s.stop_after = 2;
	assert_int_equal(im_store_uq_read(st, 5, 0, 0, collect_uq, &s), 3);
	/* A fenced-off writer stores nothing. */
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 3, 1, "new", &e),
	                 IM_OK);
	it[0] = uq(5, 20, "late");
	assert_int_equal(im_store_uq_append(st, &f, 1, it, 1), IM_ESTALE);
	memset(&s, 0, sizeof(s));
	assert_int_equal(im_store_uq_read(st, 5, 9, 0, collect_uq, &s), IM_OK);
	assert_int_equal(s.n, 0);
	f.epoch = e;
	it[0].seq = 0;
	assert_int_equal(im_store_uq_append(st, &f, 1, it, 1), IM_EINVAL);
	assert_int_equal(im_store_uq_append(st, &f, 1, it, 0), IM_EINVAL);
	assert_int_equal(im_store_uq_append(st, NULL, 1, it, 1), IM_EINVAL);
	assert_int_equal(im_store_uq_read(st, 0, 0, 0, collect_uq, &s),
	                 IM_EINVAL);
}

/* ---- through the test doubles ---------------------------------------- */

static void
test_fake_store_counts_each_op_it_forwards(void **state)
{
	im_store *fake = NULL;
	im_seg_key k = {IM_SEG_GROUP_ID, 0};
	im_seg s;
	im_msg_pos p;

	assert_int_equal(fake_store_wrap(&fake, st_of(state), false), IM_OK);
	assert_string_equal(im_store_name(fake), im_store_name(st_of(state)));
	assert_int_equal(im_store_seg_take(fake, &k, 10, &s), IM_OK);
	assert_int_equal(im_store_seg_take(fake, &k, 10, &s), IM_OK);
	assert_int_equal(s.first, 11);
	assert_int_equal(im_store_msg_last(fake, 1, IM_SEQ_MAX, &p),
	                 IM_ENOTFOUND);
	assert_true(strlen(im_store_errmsg(fake)) > 0);
	/* Refused by the wrapper: the backend never sees it. */
	assert_int_equal(im_store_seg_take(fake, &k, 0, &s), IM_EINVAL);
	assert_int_equal(fake_store_calls(fake, STORE_OP_SEG_TAKE), 2);
	assert_int_equal(fake_store_calls(fake, STORE_OP_MSG_LAST), 1);
	assert_int_equal(fake_store_total(fake), 3);
	fake_store_reset(fake);
	assert_int_equal(fake_store_total(fake), 0);
	im_store_close(fake);
}

static void
batch_of(im_msg *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		m[i] = mk(100, 10 + i, i == 0 ? 0 : 9 + i, 1 + i, 7, 900 + i,
		          "payload");
	}
}

static void
test_failed_append_leaves_nothing_and_a_retry_stores_once(void **state)
{
	im_store *faulty = NULL;
	im_fence f = {IM_KIND_GROUP, 1, 0};
	faulty_plan plan = {
	        .ops = STORE_OP_BIT(STORE_OP_MSG_APPEND),
	        .nth = 1,
	        .err = IM_EUNAVAIL,
	        .when = FAULTY_BEFORE,
	};
	im_msg m[5];
	im_append_result r[5];
	collect *c;

	f.epoch = claim(st_of(state), IM_KIND_GROUP, 1);
	assert_int_equal(faulty_store_wrap(&faulty, st_of(state), false),
	                 IM_OK);
	batch_of(m, 5);
	faulty_store_arm(faulty, &plan);
	assert_int_equal(im_store_msg_append(faulty, &f, 1, m, 5, r),
	                 IM_EUNAVAIL);
	assert_int_equal(faulty_store_faults(faulty), 1);
	assert_non_null(strstr(im_store_errmsg(faulty), "msg_append"));
	assert_int_equal(count_msgs(st_of(state), 100), 0);
	/* Transient: the retry goes through and stores each message once. */
	assert_int_equal(im_store_msg_append(faulty, &f, 1, m, 5, r), IM_OK);
	for (size_t i = 0; i < 5; i++) {
		assert_false(r[i].dup);
	}
	assert_int_equal(im_store_msg_append(faulty, &f, 1, m, 5, r), IM_OK);
	for (size_t i = 0; i < 5; i++) {
		assert_true(r[i].dup);
		assert_int_equal(r[i].seq, m[i].seq);
	}
	c = read_all(st_of(state), 100);
	assert_int_equal(c->n, 5);
	free(c);
	im_store_close(faulty);
}

static void
test_append_with_unknown_outcome_is_retried_exactly_once(void **state)
{
	im_store *faulty = NULL;
	im_fence f = {IM_KIND_GROUP, 1, 0};
	faulty_plan plan = {
	        .ops = STORE_OP_BIT(STORE_OP_MSG_APPEND),
	        .nth = 1,
	        .persistent = true,
	        .err = IM_EUNAVAIL,
	        .when = FAULTY_AFTER,
	};
	im_msg m[5];
	im_append_result r[5];
	collect *c;

	f.epoch = claim(st_of(state), IM_KIND_GROUP, 1);
	assert_int_equal(faulty_store_wrap(&faulty, st_of(state), false),
	                 IM_OK);
	batch_of(m, 5);
	/* Committed, but the ack is lost, twice. */
	faulty_store_arm(faulty, &plan);
	assert_int_equal(im_store_msg_append(faulty, &f, 1, m, 5, r),
	                 IM_EUNAVAIL);
	assert_int_equal(im_store_msg_append(faulty, &f, 1, m, 5, r),
	                 IM_EUNAVAIL);
	assert_int_equal(faulty_store_faults(faulty), 2);
	faulty_store_arm(faulty, NULL);
	/*
	 * A new owner retries with new seqs (its own fresh segment) and the
	 * same dedup keys: every message comes back as the original.
	 */
	for (size_t i = 0; i < 5; i++) {
		m[i].seq += 100;
		m[i].prev_seq = i == 0 ? 14 : m[i].seq - 1;
		m[i].ordinal += 5;
	}
	assert_int_equal(im_store_msg_append(faulty, &f, 1, m, 5, r), IM_OK);
	for (size_t i = 0; i < 5; i++) {
		assert_true(r[i].dup);
		assert_int_equal(r[i].seq, 10 + i);
		assert_int_equal(r[i].ordinal, 1 + i);
	}
	c = read_all(st_of(state), 100);
	assert_int_equal(c->n, 5);
	assert_int_equal(c->m[4].seq, 14);
	free(c);
	im_store_close(faulty);
}

/*
 * Three group-commit batches over two convs, with a dup inside a batch and
 * a dup of a stored message. Each batch is retried (at most 3 times) while
 * the store answers IM_EUNAVAIL, as a Chatter does.
 */
static void
run_scenario(im_store *st, const im_fence *f, im_gid base)
{
	im_gid a = base + 1, b = base + 2;
	im_msg b1[2] = {mk(a, 1, 0, 1, 7, 1, "a1"), mk(b, 1, 0, 1, 7, 1, "b1")};
	im_msg b2[3] = {mk(a, 2, 1, 2, 7, 2, "a2"), mk(a, 3, 2, 3, 7, 2, "a2'"),
	                mk(a, 4, 3, 4, 8, 3, "a3")};
	im_msg b3[2] = {mk(a, 5, 4, 3, 7, 1, "a1 again"),
	                mk(b, 2, 1, 2, 8, 9, "b2")};
	struct {
		im_msg *m;
		size_t n;
	} batches[3] = {{b1, 2}, {b2, 3}, {b3, 2}};
	im_append_result r[3];

	for (size_t i = 0; i < 3; i++) {
		int rc = IM_EUNAVAIL;

		for (int tries = 0; tries < 3 && rc == IM_EUNAVAIL; tries++) {
			rc = im_store_msg_append(st, f, 1, batches[i].m,
			                         batches[i].n, r);
		}
		assert_int_equal(rc, IM_OK);
	}
}

/* The conv's messages relative to base, as one comparable string. */
static void
dump_conv(im_store *st, im_gid conv, char *out, size_t len)
{
	collect *c = read_all(st, conv);
	size_t off = 0;

	out[0] = '\0';
	for (size_t i = 0; i < c->n && off < len; i++) {
		int w = snprintf(
		        out + off, len - off, "%llu/%llu/%llu/%llu/%s;",
		        (unsigned long long)c->m[i].seq,
		        (unsigned long long)c->m[i].prev_seq,
		        (unsigned long long)c->m[i].ordinal,
		        (unsigned long long)c->m[i].dedup_id, c->body[i]);

		assert_true(w > 0);
		off += (size_t)w;
	}
	free(c);
}

static void
test_retries_after_a_fault_at_any_append_converge_to_one_state(void **state)
{
	im_store *st = st_of(state);
	im_store *faulty = NULL;
	im_fence f = {IM_KIND_GROUP, 1, 0};
	char want_a[512], want_b[512], got[512];
	im_gid base = 1000;

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	run_scenario(st, &f, 0);
	dump_conv(st, 1, want_a, sizeof(want_a));
	dump_conv(st, 2, want_b, sizeof(want_b));
	assert_string_equal(want_a, "1/0/1/1/a1;2/1/2/2/a2;4/2/3/3/a3;");
	assert_int_equal(faulty_store_wrap(&faulty, st, false), IM_OK);
	for (unsigned long n = 1; n <= 4; n++) {
		for (int when = FAULTY_BEFORE; when <= FAULTY_AFTER; when++) {
			faulty_plan plan = {
			        .ops = STORE_OP_BIT(STORE_OP_MSG_APPEND),
			        .nth = n,
			        .err = IM_EUNAVAIL,
			        .when = (faulty_when)when,
			};

			faulty_store_arm(faulty, &plan);
			run_scenario(faulty, &f, base);
			/* n == 4 is past the last call: no fault at all. */
			assert_int_equal(faulty_store_faults(faulty), n <= 3);
			dump_conv(st, base + 1, got, sizeof(got));
			assert_string_equal(got, want_a);
			dump_conv(st, base + 2, got, sizeof(got));
			assert_string_equal(got, want_b);
			base += 1000;
		}
	}
	im_store_close(faulty);
}

/* ---- batched creation and segments (ops version 4) ------------------ */

static const im_uid cm_members[3][4] = {
        {11, 12, 13, 12}, /* 12 twice: stored once */
        {12, 14},
        {15},
};

/* Three groups gid base+1..base+3, created by user 11/12/13. */
static void
create_batch(im_group_new *g, im_gid base)
{
	static const uint32_t nm[3] = {4, 2, 1};

	memset(g, 0, 3 * sizeof(*g));
	for (size_t i = 0; i < 3; i++) {
		g[i].group.gid = base + 1 + i;
		g[i].group.creator = 11 + i;
		g[i].group.created_ms = 5000 + i;
		snprintf(g[i].group.name, sizeof(g[i].group.name), "batch %zu",
		         i);
		g[i].members = cm_members[i];
		g[i].nmembers = nm[i];
	}
}

/* The groups base+1..base+3 with their members, as one string. */
static void
dump_groups(im_store *st, im_gid base, char *out, size_t len)
{
	size_t off = 0;

	out[0] = '\0';
	for (im_gid gid = base + 1; gid <= base + 3; gid++) {
		im_group g;
		uids u = {0};
		int rc = im_store_group_lookup(st, gid, &g), w;

		if (rc == IM_ENOTFOUND) {
			w = snprintf(out + off, len - off, "%llu:none;",
			             (unsigned long long)(gid - base));
		} else {
			assert_int_equal(rc, IM_OK);
			assert_int_equal(im_store_member_list(st, gid,
			                                      collect_uid, &u),
			                 IM_OK);
			w = snprintf(out + off, len - off,
			             "%llu:%llu/%llu/%s:",
			             (unsigned long long)(gid - base),
			             (unsigned long long)g.creator,
			             (unsigned long long)g.created_ms, g.name);
			for (size_t i = 0; i < u.n && w > 0; i++) {
				off += (size_t)w;
				w = snprintf(out + off, len - off, "%llu,",
				             (unsigned long long)u.u[i]);
			}
			if (w > 0) {
				off += (size_t)w;
				w = snprintf(out + off, len - off, ";");
			}
		}
		assert_true(w > 0 && (size_t)w < len - off);
		off += (size_t)w;
	}
}

/* Optional op: a backend without it answers IM_ENOTSUP, and the test
 * stops there (callers then create one at a time). */
static bool
create_many_supported(im_store *st, const im_fence *f)
{
	im_group_new g[3];

	create_batch(g, 900000);
	g[0].nmembers = 0;
	return im_store_group_create_many(st, f, 1, g, 1) != IM_ENOTSUP;
}

static void
test_group_create_many_stores_groups_and_members_fenced_and_atomic(
        void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0};
	im_fence stale = {IM_KIND_GROUP, 1, 0}, never = {IM_KIND_GROUP, 9, 1};
	im_group_new g[3];
	char got[512];
	convs c = {0};
	im_epoch e;

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	if (!create_many_supported(st, &f)) {
		skip();
	}
	create_batch(g, 0);
	assert_int_equal(im_store_group_create_many(st, &f, 1, g, 3), IM_OK);
	dump_groups(st, 0, got, sizeof(got));
	assert_string_equal(got, "1:11/5000/batch 0:11,12,13,;"
	                         "2:12/5001/batch 1:12,14,;"
	                         "3:13/5002/batch 2:15,;");
	/* Members of new groups start at the beginning. */
	assert_int_equal(im_store_conv_load(st, 12, collect_conv, &c), IM_OK);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.row[0].conv, 1);
	assert_int_equal(c.row[0].read_seq, 0);
	assert_int_equal(c.row[1].conv, 2);
	/* The same batch again (a retry) is a no-op. */
	assert_int_equal(im_store_group_create_many(st, &f, 1, g, 3), IM_OK);
	dump_groups(st, 0, got, sizeof(got));
	assert_string_equal(got, "1:11/5000/batch 0:11,12,13,;"
	                         "2:12/5001/batch 1:12,14,;"
	                         "3:13/5002/batch 2:15,;");
	/* A stale owner creates nothing. */
	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 1, f.epoch,
	                                   "node-b", &e),
	                 IM_OK);
	stale.epoch = f.epoch;
	create_batch(g, 100);
	assert_int_equal(im_store_group_create_many(st, &stale, 1, g, 3),
	                 IM_ESTALE);
	assert_int_equal(im_store_group_create_many(st, &never, 1, g, 3),
	                 IM_ESTALE);
	dump_groups(st, 100, got, sizeof(got));
	assert_string_equal(got, "1:none;2:none;3:none;");
	/* A gid of another group: the whole batch fails. */
	f.epoch = e;
	make_group(st, 103);
	assert_int_equal(im_store_group_create_many(st, &f, 1, g, 3),
	                 IM_ECONFLICT);
	dump_groups(st, 100, got, sizeof(got));
	assert_string_equal(got, "1:none;2:none;3:1/123/group 103:;");
	/* Bad batches. */
	create_batch(g, 200);
	g[1].group.gid = g[0].group.gid;
	assert_int_equal(im_store_group_create_many(st, &f, 1, g, 3),
	                 IM_EINVAL);
	create_batch(g, 200);
	g[2].nmembers = IM_GROUP_NEW_MEMBERS_MAX + 1;
	assert_int_equal(im_store_group_create_many(st, &f, 1, g, 3),
	                 IM_EINVAL);
	create_batch(g, 200);
	memset(g[0].group.name, 'x', sizeof(g[0].group.name));
	assert_int_equal(im_store_group_create_many(st, &f, 1, g, 3),
	                 IM_EINVAL);
	create_batch(g, 200);
	assert_int_equal(im_store_group_create_many(st, NULL, 0, g, 3),
	                 IM_EINVAL);
	assert_int_equal(im_store_group_create_many(st, &f, 1, NULL, 3),
	                 IM_EINVAL);
	assert_int_equal(im_store_group_create_many(st, &f, 1, g, 0),
	                 IM_EINVAL);
	assert_int_equal(im_store_group_create_many(NULL, &f, 1, g, 3),
	                 IM_EINVAL);
	dump_groups(st, 200, got, sizeof(got));
	assert_string_equal(got, "1:none;2:none;3:none;");
}

/* Keyed creation: a key used again creates nothing and names the first
 * group; the key is the creator's (another creator with the same dedup id
 * makes its own group); unkeyed rows (dedup id 0) always create. */
static void
test_group_create_dedup_same_key_gives_the_first_group_once(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0};
	im_group_new g[3];
	im_group_created res[3];
	uint64_t keys[3] = {77, 77, 0};
	char got[512];

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	create_batch(g, 300);
	/* Creators 11, 12, 13: the same dedup id 77 for two creators. */
	assert_int_equal(im_store_group_create_dedup(st, &f, 1, g, keys, 3,
	                                             res),
	                 IM_OK);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(res[i].gid, 301 + i);
		assert_false(res[i].dup);
	}
	dump_groups(st, 300, got, sizeof(got));
	assert_string_equal(got, "1:11/5000/batch 0:11,12,13,;"
	                         "2:12/5001/batch 1:12,14,;"
	                         "3:13/5002/batch 2:15,;");
	/* The retry of the creates after a lost answer: new gids (a new
	 * try took new ids), the same keys. */
	create_batch(g, 400);
	assert_int_equal(im_store_group_create_dedup(st, &f, 1, g, keys, 3,
	                                             res),
	                 IM_OK);
	assert_int_equal(res[0].gid, 301);
	assert_true(res[0].dup);
	assert_int_equal(res[1].gid, 302);
	assert_true(res[1].dup);
	assert_int_equal(res[2].gid, 403); /* unkeyed: created */
	assert_false(res[2].dup);
	dump_groups(st, 400, got, sizeof(got));
	assert_string_equal(got, "1:none;2:none;3:13/5002/batch 2:15,;");
	/* The same creator with a new key makes a new group. */
	create_batch(g, 500);
	keys[0] = 78;
	assert_int_equal(im_store_group_create_dedup(st, &f, 1, g, keys, 1,
	                                             res),
	                 IM_OK);
	assert_int_equal(res[0].gid, 501);
	assert_false(res[0].dup);
	/* One key twice in one call is refused, nothing stored. */
	create_batch(g, 600);
	g[1].group.creator = g[0].group.creator;
	keys[1] = keys[0] = 90;
	assert_int_equal(im_store_group_create_dedup(st, &f, 1, g, keys, 2,
	                                             res),
	                 IM_EINVAL);
	assert_int_equal(im_store_group_create_dedup(st, &f, 1, g, NULL, 2,
	                                             res),
	                 IM_EINVAL);
	assert_int_equal(im_store_group_create_dedup(st, &f, 1, g, keys, 2,
	                                             NULL),
	                 IM_EINVAL);
	dump_groups(st, 600, got, sizeof(got));
	assert_string_equal(got, "1:none;2:none;3:none;");
}

/* Fenced like group_create_many: a stale owner stores neither the group
 * nor its key (the key stays free for the new owner). */
static void
test_group_create_dedup_with_a_stale_fence_stores_nothing(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_GROUP, 1, 0}, stale;
	im_group_new g[3];
	im_group_created res[3];
	uint64_t keys[3] = {5, 6, 7};
	char got[512];
	im_epoch e;

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	stale = f;
	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 1, f.epoch,
	                                   "node-b", &e),
	                 IM_OK);
	create_batch(g, 700);
	assert_int_equal(im_store_group_create_dedup(st, &stale, 1, g, keys, 3,
	                                             res),
	                 IM_ESTALE);
	dump_groups(st, 700, got, sizeof(got));
	assert_string_equal(got, "1:none;2:none;3:none;");
	/* The new owner's try with the same keys creates them, not dup. */
	f.epoch = e;
	create_batch(g, 800);
	assert_int_equal(im_store_group_create_dedup(st, &f, 1, g, keys, 3,
	                                             res),
	                 IM_OK);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(res[i].gid, 801 + i);
		assert_false(res[i].dup);
	}
	/* A gid of another group: nothing of the call is stored. */
	create_batch(g, 900);
	keys[0] = 15;
	keys[1] = 16;
	keys[2] = 17;
	make_group(st, 902);
	assert_int_equal(im_store_group_create_dedup(st, &f, 1, g, keys, 3,
	                                             res),
	                 IM_ECONFLICT);
	dump_groups(st, 900, got, sizeof(got));
	assert_string_equal(got, "1:none;2:1/123/group 902:;3:none;");
	create_batch(g, 910);
	assert_int_equal(im_store_group_create_dedup(st, &f, 1, g, keys, 3,
	                                             res),
	                 IM_OK);
	assert_false(res[0].dup); /* key 15 was not kept by the failure */
}

/*
 * A fault before the call (nothing happened) or after it (committed, the
 * caller hears IM_EUNAVAIL), at the first or second call of two batches;
 * the caller retries each batch until it succeeds. The store must end in
 * the state of the run without faults.
 */
static void
test_group_create_many_retried_after_a_fault_ends_in_the_fault_free_state(
        void **state)
{
	im_store *st = st_of(state);
	im_store *faulty = NULL;
	im_fence f = {IM_KIND_GROUP, 1, 0};
	im_group_new g[3];
	char want[512], want2[512], got[512];
	im_gid base = 1000;

	f.epoch = claim(st, IM_KIND_GROUP, 1);
	if (!create_many_supported(st, &f)) {
		skip();
	}
	create_batch(g, 0);
	assert_int_equal(im_store_group_create_many(st, &f, 1, g, 3), IM_OK);
	create_batch(g, 10);
	assert_int_equal(im_store_group_create_many(st, &f, 1, g, 2), IM_OK);
	dump_groups(st, 0, want, sizeof(want));
	dump_groups(st, 10, want2, sizeof(want2));
	assert_int_equal(faulty_store_wrap(&faulty, st, false), IM_OK);
	for (unsigned long n = 1; n <= 3; n++) {
		for (int when = FAULTY_BEFORE; when <= FAULTY_AFTER; when++) {
			faulty_plan plan = {
			        .ops = STORE_OP_BIT(STORE_OP_GROUP_CREATE_MANY),
			        .nth = n,
			        .err = IM_EUNAVAIL,
			        .when = (faulty_when)when,
			};
			int rc = IM_EUNAVAIL, tries;

			faulty_store_arm(faulty, &plan);
			create_batch(g, base);
			for (tries = 0; tries < 3 && rc == IM_EUNAVAIL;
			     tries++) {
				rc = im_store_group_create_many(faulty, &f, 1,
				                                g, 3);
			}
			assert_int_equal(rc, IM_OK);
			create_batch(g, base + 10);
			rc = IM_EUNAVAIL;
			for (tries = 0; tries < 3 && rc == IM_EUNAVAIL;
			     tries++) {
				rc = im_store_group_create_many(faulty, &f, 1,
				                                g, 2);
			}
			assert_int_equal(rc, IM_OK);
			/* n == 3 is past the last call: no fault. */
			assert_int_equal(faulty_store_faults(faulty), n <= 2);
			dump_groups(st, base, got, sizeof(got));
			assert_string_equal(got, want);
			dump_groups(st, base + 10, got, sizeof(got));
			assert_string_equal(got, want2);
			base += 1000;
		}
	}
	im_store_close(faulty);
}

static void
test_seg_take_many_takes_one_fresh_segment_per_key_in_one_call(void **state)
{
	im_store *st = st_of(state);
	im_store *faulty = NULL;
	im_seg_key k[3] = {{IM_SEG_USER_SEQ, 7},
	                   {IM_SEG_USER_SEQ, 8},
	                   {IM_SEG_GROUP_SEQ, 7}};
	im_seg s[3], one;
	int rc;

	assert_int_equal(im_store_seg_take(st, &k[1], 10, &one), IM_OK);
	rc = im_store_seg_take_many(st, k, 3, 100, s);
	if (rc == IM_ENOTSUP) {
		skip();
	}
	assert_int_equal(rc, IM_OK);
	assert_int_equal(s[0].first, 1);
	assert_int_equal(s[0].last, 100);
	assert_int_equal(s[1].first, 11);
	assert_int_equal(s[1].last, 110);
	assert_int_equal(s[2].first, 1);
	/* Mixed with single takes: still disjoint and increasing. */
	assert_int_equal(im_store_seg_take(st, &k[0], 5, &one), IM_OK);
	assert_int_equal(one.first, 101);
	/* A fault before: nothing taken; after: the segments are lost but
	 * the retry's lie above them, never reused. */
	assert_int_equal(faulty_store_wrap(&faulty, st, false), IM_OK);
	for (int when = FAULTY_BEFORE; when <= FAULTY_AFTER; when++) {
		faulty_plan plan = {
		        .ops = STORE_OP_BIT(STORE_OP_SEG_TAKE_MANY),
		        .nth = 1,
		        .err = IM_EUNAVAIL,
		        .when = (faulty_when)when,
		};
		uint64_t floor0 = when == FAULTY_BEFORE ? 106 : 306;

		faulty_store_arm(faulty, &plan);
		assert_int_equal(im_store_seg_take_many(faulty, k, 3, 100, s),
		                 IM_EUNAVAIL);
		assert_int_equal(im_store_seg_take_many(faulty, k, 3, 100, s),
		                 IM_OK);
		assert_int_equal(s[0].first, floor0);
		assert_int_equal(s[0].last, floor0 + 99);
	}
	im_store_close(faulty);
	/* Bad calls. */
	k[2] = k[0];
	assert_int_equal(im_store_seg_take_many(st, k, 3, 100, s), IM_EINVAL);
	k[2].space = (im_seg_space)9;
	k[2].id = 1;
	assert_int_equal(im_store_seg_take_many(st, k, 3, 100, s), IM_EINVAL);
	assert_int_equal(im_store_seg_take_many(st, k, 2, 0, s), IM_EINVAL);
	assert_int_equal(im_store_seg_take_many(st, k, 0, 1, s), IM_EINVAL);
	assert_int_equal(im_store_seg_take_many(st, NULL, 2, 1, s), IM_EINVAL);
	assert_int_equal(im_store_seg_take_many(st, k, 2, 1, NULL), IM_EINVAL);
	assert_int_equal(
	        im_store_seg_take_many(st, k, IM_STORE_SEG_MANY_MAX + 1, 1, s),
	        IM_EINVAL);
}

static void
test_uq_last_is_the_largest_seq_of_the_users_queue(void **state)
{
	im_store *st = st_of(state);
	im_fence f = {IM_KIND_USER, 3, 0};
	im_uq_item it[3] = {
	        {.user = 5, .seq = 7, .body_len = 1, .body = "a"},
	        {.user = 5, .seq = 40, .body_len = 1, .body = "b"},
	        {.user = 6, .seq = 90, .body_len = 1, .body = "c"},
	};
	im_seq last = 99;
	int rc;

	rc = im_store_uq_last(st, 5, &last);
	if (rc == IM_ENOTSUP) {
		skip();
	}
	assert_int_equal(rc, IM_OK);
	assert_int_equal(last, 0);
	f.epoch = claim(st, IM_KIND_USER, 3);
	assert_int_equal(im_store_uq_append(st, &f, 1, it, 3), IM_OK);
	assert_int_equal(im_store_uq_last(st, 5, &last), IM_OK);
	assert_int_equal(last, 40);
	assert_int_equal(im_store_uq_last(st, 6, &last), IM_OK);
	assert_int_equal(last, 90);
	assert_int_equal(im_store_uq_last(st, 0, &last), IM_EINVAL);
	assert_int_equal(im_store_uq_last(st, 5, NULL), IM_EINVAL);
	assert_int_equal(im_store_uq_last(NULL, 5, &last), IM_EINVAL);
}

/* ---- nodes (ops version 2) ------------------------------------------ */

typedef struct node_seen {
	int n;
	int stop_at; /* stop the list after this many rows (0 = never) */
	char names[4][IM_NODE_NAME_MAX + 1];
	char addr[4][IM_NODE_ADDR_MAX + 1];
	im_node_role role[4];
	uint64_t reg[4], hb[4], inc[4];
} node_seen;

static int
node_collect(const im_node_row *row, void *payload)
{
	node_seen *ns = payload;

	if (ns->n < 4) {
		snprintf(ns->names[ns->n], sizeof(ns->names[0]), "%s",
		         row->name);
		snprintf(ns->addr[ns->n], sizeof(ns->addr[0]), "%s",
		         row->address);
		ns->role[ns->n] = row->role;
		ns->reg[ns->n] = row->registered_ms;
		ns->hb[ns->n] = row->heartbeat_ms;
		ns->inc[ns->n] = row->incarnation;
	}
	ns->n++;
	return ns->stop_at != 0 && ns->n >= ns->stop_at ? 42 : 0;
}

static void
test_node_register_then_list_shows_role_address_and_times(void **state)
{
	conf *cf = *state;
	node_seen ns = {0};
	uint64_t inc = 0;

	assert_int_equal(im_store_node_list(cf->st, node_collect, &ns), IM_OK);
	assert_int_equal(ns.n, 0);
	assert_int_equal(im_store_node_register(cf->st, "chatter-1",
	                                        IM_NODE_CHATTER,
	                                        "127.0.0.1:7701", 1000, &inc),
	                 IM_OK);
	assert_int_equal(inc, 1);
	assert_int_equal(im_store_node_list(cf->st, node_collect, &ns), IM_OK);
	assert_int_equal(ns.n, 1);
	assert_string_equal(ns.names[0], "chatter-1");
	assert_string_equal(ns.addr[0], "127.0.0.1:7701");
	assert_int_equal(ns.role[0], IM_NODE_CHATTER);
	assert_int_equal(ns.reg[0], 1000);
	assert_int_equal(ns.hb[0], 1000);
	assert_int_equal(ns.inc[0], 1);
}

static void
test_node_register_again_is_a_fresh_incarnation(void **state)
{
	conf *cf = *state;
	node_seen ns = {0};
	uint64_t inc = 0;

	assert_int_equal(im_store_node_register(cf->st, "c", IM_NODE_CONNECTOR,
	                                        "127.0.0.1:1", 10, &inc),
	                 IM_OK);
	assert_int_equal(im_store_node_heartbeat(cf->st, "c", 20), IM_OK);
	assert_int_equal(im_store_node_register(cf->st, "c", IM_NODE_CONNECTOR,
	                                        "127.0.0.2:2", 30, &inc),
	                 IM_OK);
	assert_int_equal(inc, 2);
	assert_int_equal(im_store_node_register(cf->st, "c", IM_NODE_CONNECTOR,
	                                        "127.0.0.2:2", 40, NULL),
	                 IM_OK);
	assert_int_equal(im_store_node_list(cf->st, node_collect, &ns), IM_OK);
	assert_int_equal(ns.n, 1);
	assert_string_equal(ns.addr[0], "127.0.0.2:2");
	assert_int_equal(ns.reg[0], 40);
	assert_int_equal(ns.hb[0], 40);
	assert_int_equal(ns.inc[0], 3);
}

static void
test_node_heartbeat_moves_only_the_heartbeat(void **state)
{
	conf *cf = *state;
	node_seen ns = {0};

	assert_int_equal(im_store_node_register(cf->st, "r", IM_NODE_ROUTER,
	                                        "127.0.0.1:9", 100, NULL),
	                 IM_OK);
	assert_int_equal(im_store_node_heartbeat(cf->st, "r", 250), IM_OK);
	assert_int_equal(im_store_node_list(cf->st, node_collect, &ns), IM_OK);
	assert_int_equal(ns.n, 1);
	assert_int_equal(ns.role[0], IM_NODE_ROUTER);
	assert_int_equal(ns.reg[0], 100);
	assert_int_equal(ns.hb[0], 250);
	assert_int_equal(ns.inc[0], 1);
}

static void
test_node_heartbeat_of_an_unknown_node_is_not_found(void **state)
{
	conf *cf = *state;
	node_seen ns = {0};

	assert_int_equal(im_store_node_heartbeat(cf->st, "ghost", 1),
	                 IM_ENOTFOUND);
	assert_non_null(strstr(im_store_errmsg(cf->st), "ghost"));
	assert_int_equal(im_store_node_list(cf->st, node_collect, &ns), IM_OK);
	assert_int_equal(ns.n, 0);
}

static void
test_node_list_is_ordered_by_name_and_stops_on_nonzero(void **state)
{
	conf *cf = *state;
	node_seen ns = {0};
	char longest[IM_NODE_NAME_MAX + 1];

	memset(longest, 'z', IM_NODE_NAME_MAX);
	longest[IM_NODE_NAME_MAX] = '\0';
	assert_int_equal(im_store_node_register(cf->st, "b", IM_NODE_CHATTER,
	                                        "127.0.0.1:2", 1, NULL),
	                 IM_OK);
	assert_int_equal(im_store_node_register(cf->st, longest,
	                                        IM_NODE_ROUTER,
	                                        "127.0.0.1:3", 1, NULL),
	                 IM_OK);
	assert_int_equal(im_store_node_register(cf->st, "a", IM_NODE_CONNECTOR,
	                                        "127.0.0.1:1", 1, NULL),
	                 IM_OK);
	assert_int_equal(im_store_node_list(cf->st, node_collect, &ns), IM_OK);
	assert_int_equal(ns.n, 3);
	assert_string_equal(ns.names[0], "a");
	assert_string_equal(ns.names[1], "b");
	assert_string_equal(ns.names[2], longest);
	memset(&ns, 0, sizeof(ns));
	ns.stop_at = 2;
	assert_int_equal(im_store_node_list(cf->st, node_collect, &ns), 42);
	assert_int_equal(ns.n, 2);
	/* The handle works again after a stopped read. */
	assert_int_equal(im_store_node_heartbeat(cf->st, "a", 5), IM_OK);
}

static void
test_node_ops_reject_bad_arguments(void **state)
{
	conf *cf = *state;
	char too_long[IM_NODE_NAME_MAX + 2];
	node_seen ns = {0};

	memset(too_long, 'x', sizeof(too_long) - 1);
	too_long[sizeof(too_long) - 1] = '\0';
	assert_int_equal(im_store_node_register(cf->st, too_long,
	                                        IM_NODE_CHATTER, "a", 1, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_node_register(cf->st, "", IM_NODE_CHATTER,
	                                        "a", 1, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_node_register(cf->st, "n", (im_node_role)9,
	                                        "a", 1, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_node_register(cf->st, "n", IM_NODE_CHATTER,
	                                        "", 1, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_node_heartbeat(cf->st, NULL, 1), IM_EINVAL);
	assert_int_equal(im_store_node_list(cf->st, NULL, NULL), IM_EINVAL);
	assert_int_equal(im_store_node_list(cf->st, node_collect, &ns), IM_OK);
	assert_int_equal(ns.n, 0);
}

static void
test_node_ops_go_through_the_test_wrappers(void **state)
{
	conf *cf = *state;
	im_store *fake = NULL, *faulty = NULL;
	faulty_plan plan = {
	        .ops = STORE_OP_BIT(STORE_OP_NODE_HEARTBEAT),
	        .nth = 1,
	        .err = IM_EUNAVAIL,
	        .when = FAULTY_BEFORE,
	};
	node_seen ns = {0};

	assert_int_equal(fake_store_wrap(&fake, cf->st, false), IM_OK);
	assert_int_equal(im_store_node_register(fake, "n", IM_NODE_CHATTER,
	                                        "127.0.0.1:1", 1, NULL),
	                 IM_OK);
	assert_int_equal(im_store_node_heartbeat(fake, "n", 2), IM_OK);
	assert_int_equal(im_store_node_list(fake, node_collect, &ns), IM_OK);
	assert_int_equal(fake_store_calls(fake, STORE_OP_NODE_REGISTER), 1);
	assert_int_equal(fake_store_calls(fake, STORE_OP_NODE_HEARTBEAT), 1);
	assert_int_equal(fake_store_calls(fake, STORE_OP_NODE_LIST), 1);
	im_store_close(fake);

	/* A lost heartbeat changes nothing; the next one lands. */
	assert_int_equal(faulty_store_wrap(&faulty, cf->st, false), IM_OK);
	faulty_store_arm(faulty, &plan);
	assert_int_equal(im_store_node_heartbeat(faulty, "n", 3), IM_EUNAVAIL);
	assert_int_equal(faulty_store_faults(faulty), 1);
	memset(&ns, 0, sizeof(ns));
	assert_int_equal(im_store_node_list(faulty, node_collect, &ns), IM_OK);
	assert_int_equal(ns.hb[0], 2);
	assert_int_equal(im_store_node_heartbeat(faulty, "n", 4), IM_OK);
	memset(&ns, 0, sizeof(ns));
	assert_int_equal(im_store_node_list(cf->st, node_collect, &ns), IM_OK);
	assert_int_equal(ns.hb[0], 4);
	im_store_close(faulty);
}

/* ---- persistence (only for fixtures that can reopen) ----------------- */

static void
test_data_and_schema_version_survive_reopening(void **state)
{
	conf *cf = *state;
	im_fence f = {IM_KIND_GROUP, 1, 0};
	im_seg_key k = {IM_SEG_GROUP_SEQ, 100};
	im_seg s;
	im_group g;
	uint32_t v = 0;
	im_epoch e;

	f.epoch = claim(cf->st, IM_KIND_GROUP, 1);
	make_group(cf->st, 100);
	assert_int_equal(im_store_member_add(cf->st, 100, 5, NULL), IM_OK);
	assert_int_equal(im_store_seg_take(cf->st, &k, 50, &s), IM_OK);
	append_chain(cf->st, &f, 100, 1, 1, 3, 1, 0);
	im_store_close(cf->st);
	cf->st = NULL;
	assert_int_equal(fx->reopen(fx->ctx, &cf->st), IM_OK);
	assert_int_equal(im_store_migrate(cf->st, &v), IM_OK);
	assert_int_equal(v, IM_STORE_SCHEMA_VERSION);
	assert_int_equal(count_msgs(cf->st, 100), 3);
	assert_int_equal(im_store_group_lookup(cf->st, 100, &g), IM_OK);
	assert_int_equal(im_store_seg_take(cf->st, &k, 50, &s), IM_OK);
	assert_int_equal(s.first, 51);
	assert_int_equal(
	        im_store_slot_cas(cf->st, IM_KIND_GROUP, 1, 0, "n", &e),
	        IM_ECONFLICT);
	assert_int_equal(e, 1);
}

static void
test_reopening_a_newer_schema_fails_with_eschema(void **state)
{
	conf *cf = *state;

	assert_int_equal(fx->exec(fx->ctx, cf->st,
	                          "UPDATE im_schema SET version = 1000"),
	                 IM_OK);
	im_store_close(cf->st);
	cf->st = NULL;
	assert_int_equal(fx->reopen(fx->ctx, &cf->st), IM_ESCHEMA);
	assert_null(cf->st);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

static const struct CMUnitTest tests[] = {
        T(test_store_reports_its_name_and_the_latest_schema_version),
        T(test_store_migrate_twice_is_a_no_op),
        T(test_store_migrate_refuses_a_schema_newer_than_the_build),
        T(test_slot_cas_first_claim_expects_epoch_zero),
        T(test_slot_cas_conflict_returns_the_current_epoch),
        T(test_slot_cas_many_is_all_or_nothing_or_not_supported),
        T(test_slot_cas_many_through_a_faulty_store_fails_whole),
        T(test_slot_epochs_only_grow_and_kinds_are_separate),
        T(test_slot_load_streams_in_slot_order_and_stops_on_nonzero),
        T(test_slot_ops_reject_bad_arguments),
        T(test_seg_take_first_segment_of_a_key_starts_at_one),
        T(test_seg_take_hands_out_disjoint_increasing_ranges),
        T(test_seg_take_rejects_step_zero_and_unknown_spaces),
        T(test_msg_append_with_a_valid_fence_stores_the_batch),
        T(test_msg_append_with_a_stale_fence_stores_nothing),
        T(test_msg_append_dup_of_a_stored_message_returns_the_original),
        T(test_msg_append_dup_within_one_batch_rechains_later_messages),
        T(test_msg_append_rejects_bad_batches_and_stores_nothing),
        T(test_msg_append_of_a_taken_seq_fails_and_stores_nothing),
        T(test_msg_read_pages_with_after_until_and_limit),
        T(test_msg_last_finds_the_last_message_at_or_before_a_seq),
        T(test_msg_find_dedup_returns_the_stored_message_without_body),
        T(test_group_create_and_lookup_round_trip),
        T(test_member_add_remove_and_list_in_uid_order),
        T(test_member_add_starts_the_read_pointer_at_the_last_message),
        T(test_conv_load_returns_each_group_with_its_last_message),
        T(test_conv_update_moves_the_read_pointer_only_forward),
        T(test_msg_append_moves_the_senders_read_pointer_to_its_message),
        T(test_member_add_and_remove_fenced_write_only_at_the_current_epoch),
        T(test_conv_update_fenced_moves_the_pointer_only_at_the_current_epoch),
        T(test_uq_append_is_fenced_idempotent_and_read_in_order),
        T(test_fake_store_counts_each_op_it_forwards),
        T(test_failed_append_leaves_nothing_and_a_retry_stores_once),
        T(test_append_with_unknown_outcome_is_retried_exactly_once),
        T(test_retries_after_a_fault_at_any_append_converge_to_one_state),
        T(test_group_create_many_stores_groups_and_members_fenced_and_atomic),
        T(test_group_create_many_retried_after_a_fault_ends_in_the_fault_free_state),
        T(test_group_create_dedup_same_key_gives_the_first_group_once),
        T(test_group_create_dedup_with_a_stale_fence_stores_nothing),
        T(test_seg_take_many_takes_one_fresh_segment_per_key_in_one_call),
        T(test_uq_last_is_the_largest_seq_of_the_users_queue),
        T(test_node_register_then_list_shows_role_address_and_times),
        T(test_node_register_again_is_a_fresh_incarnation),
        T(test_node_heartbeat_moves_only_the_heartbeat),
        T(test_node_heartbeat_of_an_unknown_node_is_not_found),
        T(test_node_list_is_ordered_by_name_and_stops_on_nonzero),
        T(test_node_ops_reject_bad_arguments),
        T(test_node_ops_go_through_the_test_wrappers),
        /* Persistent fixtures only: keep these last. */
        T(test_data_and_schema_version_survive_reopening),
        T(test_reopening_a_newer_schema_fails_with_eschema),
};
#define NPERSIST 2

int
store_conformance_run(const store_fixture *fixture)
{
	size_t n = LEN(tests);

	fx = fixture;
	if (fx->reopen == NULL) {
		n -= NPERSIST;
	}
	printf("# store conformance: backend %s\n", fx->name);
	fflush(stdout);
	return _cmocka_run_group_tests(fx->name, tests, n, NULL, NULL);
}
