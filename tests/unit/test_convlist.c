/* Unit tests of the conversation list (include/im/convlist.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "im/convlist.h"
#include "im/sys/store.h"

#include "fail_alloc.h"
#include "test_rng.h"

#include <string.h>

static uint64_t seed;

/*
 * A store whose conv_load streams rows from an array and can fail after a
 * number of rows; every other op is IM_ENOTSUP (the list only loads).
 */
struct fake_store {
	im_store base;
	const im_conv_row *rows;
	size_t n;
	size_t fail_after; /* SIZE_MAX = never */
	int fail_rc;
	unsigned loads;
};

static void
fk_close(im_store *st)
{
	(void)st;
}

static int
fk_migrate(im_store *st, uint32_t *schema_out)
{
	(void)st, (void)schema_out;
	return IM_ENOTSUP;
}

static int
fk_slot_load(im_store *st, im_kind kind, im_slot_cb cb, void *payload)
{
	(void)st, (void)kind, (void)cb, (void)payload;
	return IM_ENOTSUP;
}

static int
fk_slot_cas(im_store *st, im_kind kind, uint32_t slot, im_epoch expect,
	    const char *owner, im_epoch *epoch_out)
{
	(void)st, (void)kind, (void)slot, (void)expect, (void)owner;
	(void)epoch_out;
	return IM_ENOTSUP;
}

static int
fk_seg_take(im_store *st, const im_seg_key *key, uint32_t step, im_seg *out)
{
	(void)st, (void)key, (void)step, (void)out;
	return IM_ENOTSUP;
}

static int
fk_msg_append(im_store *st, const im_fence *fences, size_t nfences,
	      const im_msg *msgs, size_t n, im_append_result *res_out)
{
	(void)st, (void)fences, (void)nfences, (void)msgs, (void)n;
	(void)res_out;
	return IM_ENOTSUP;
}

static int
fk_msg_read(im_store *st, im_gid conv, im_seq after, im_seq until,
	    uint32_t limit, im_msg_cb cb, void *payload)
{
	(void)st, (void)conv, (void)after, (void)until, (void)limit;
	(void)cb, (void)payload;
	return IM_ENOTSUP;
}

static int
fk_msg_last(im_store *st, im_gid conv, im_seq at, im_msg_pos *pos_out)
{
	(void)st, (void)conv, (void)at, (void)pos_out;
	return IM_ENOTSUP;
}

static int
fk_msg_find_dedup(im_store *st, im_gid conv, im_uid sender,
		  uint64_t dedup_id, im_msg *msg_out)
{
	(void)st, (void)conv, (void)sender, (void)dedup_id, (void)msg_out;
	return IM_ENOTSUP;
}

static int
fk_group_create(im_store *st, const im_group *group)
{
	(void)st, (void)group;
	return IM_ENOTSUP;
}

static int
fk_group_lookup(im_store *st, im_gid gid, im_group *out)
{
	(void)st, (void)gid, (void)out;
	return IM_ENOTSUP;
}

static int
fk_member_add(im_store *st, im_gid gid, im_uid user, bool *added_out)
{
	(void)st, (void)gid, (void)user, (void)added_out;
	return IM_ENOTSUP;
}

static int
fk_member_remove(im_store *st, im_gid gid, im_uid user, bool *removed_out)
{
	(void)st, (void)gid, (void)user, (void)removed_out;
	return IM_ENOTSUP;
}

static int
fk_member_list(im_store *st, im_gid gid, im_uid_cb cb, void *payload)
{
	(void)st, (void)gid, (void)cb, (void)payload;
	return IM_ENOTSUP;
}

static int
fk_conv_load(im_store *st, im_uid user, im_conv_cb cb, void *payload)
{
	struct fake_store *fs = (struct fake_store *)st;
	size_t i;
	int rc;

	(void)user;
	fs->loads++;
	for (i = 0; i < fs->n; i++) {
		if (i == fs->fail_after) {
			im_store_set_error(st, "injected failure");
			return fs->fail_rc;
		}
		rc = cb(&fs->rows[i], payload);
		if (rc != 0) {
			return rc;
		}
	}
	return IM_OK;
}

static int
fk_conv_update(im_store *st, im_uid user, im_gid conv, im_seq read_seq,
	       uint64_t read_ordinal, uint32_t flags)
{
	(void)st, (void)user, (void)conv, (void)read_seq, (void)read_ordinal;
	(void)flags;
	return IM_ENOTSUP;
}

static int
fk_uq_append(im_store *st, const im_fence *fences, size_t nfences,
	     const im_uq_item *items, size_t n)
{
	(void)st, (void)fences, (void)nfences, (void)items, (void)n;
	return IM_ENOTSUP;
}

static int
fk_uq_read(im_store *st, im_uid user, im_seq after, uint32_t limit,
	   im_uq_cb cb, void *payload)
{
	(void)st, (void)user, (void)after, (void)limit, (void)cb, (void)payload;
	return IM_ENOTSUP;
}

static const struct im_store_ops fake_ops = {
	.version = IM_STORE_OPS_VERSION,
	.name = "fake",
	.close = fk_close,
	.migrate = fk_migrate,
	.slot_load = fk_slot_load,
	.slot_cas = fk_slot_cas,
	.seg_take = fk_seg_take,
	.msg_append = fk_msg_append,
	.msg_read = fk_msg_read,
	.msg_last = fk_msg_last,
	.msg_find_dedup = fk_msg_find_dedup,
	.group_create = fk_group_create,
	.group_lookup = fk_group_lookup,
	.member_add = fk_member_add,
	.member_remove = fk_member_remove,
	.member_list = fk_member_list,
	.conv_load = fk_conv_load,
	.conv_update = fk_conv_update,
	.uq_append = fk_uq_append,
	.uq_read = fk_uq_read,
};

static void
fake_init(struct fake_store *fs, const im_conv_row *rows, size_t n)
{
	memset(fs, 0, sizeof(*fs));
	assert_int_equal(im_store_init(&fs->base, &fake_ops), IM_OK);
	fs->rows = rows;
	fs->n = n;
	fs->fail_after = SIZE_MAX;
	fs->fail_rc = IM_EUNAVAIL;
}

static im_convlist *
make(uint32_t max)
{
	im_convlist_opts o = IM_CONVLIST_OPTS_INIT;
	im_convlist *cl = NULL;

	o.max_convs = max;
	assert_int_equal(im_convlist_create(&cl, &o), IM_OK);
	assert_non_null(cl);
	return cl;
}

static im_msg
msg(im_gid conv, im_seq prev, im_seq seq, uint64_t ordinal, uint64_t time)
{
	im_msg m;

	memset(&m, 0, sizeof(m));
	m.conv = conv;
	m.prev_seq = prev;
	m.seq = seq;
	m.ordinal = ordinal;
	m.sender = 42;
	m.time_ms = time;
	m.body = "hello";
	m.body_len = 5;
	return m;
}

static void
deliver(im_convlist *cl, im_gid conv, im_seq prev, im_seq seq, uint64_t ord,
	uint64_t time, bool own)
{
	im_msg m = msg(conv, prev, seq, ord, time);

	assert_int_equal(im_convlist_deliver(cl, &m, own), IM_OK);
}

static im_conv_entry
get(const im_convlist *cl, im_gid conv)
{
	im_conv_entry e;

	assert_int_equal(im_convlist_lookup(cl, conv, &e), IM_OK);
	return e;
}

static im_conv_row
row(im_gid conv, im_seq read_seq, uint64_t read_ord, im_seq last_seq,
    uint64_t last_ord, uint64_t time, uint32_t flags)
{
	im_conv_row r;

	memset(&r, 0, sizeof(r));
	r.conv = conv;
	r.read_seq = read_seq;
	r.read_ordinal = read_ord;
	r.last.seq = last_seq;
	r.last.ordinal = last_ord;
	r.last_time_ms = time;
	r.flags = flags;
	r.preview = "pv";
	r.preview_len = 2;
	return r;
}

static void
test_convlist_unread_is_exact_across_seq_gaps(void **state)
{
	im_convlist *cl = make(16);
	im_conv_entry e;

	(void)state;
	/* seqs 10, 25, 26, 90 are ordinals 5..8: gaps do not count. */
	deliver(cl, 7, 3, 10, 5, 100, false);
	e = get(cl, 7);
	assert_int_equal(e.unread, 1);
	assert_int_equal(e.read.seq, 3);
	assert_int_equal(e.read.ordinal, 4);
	deliver(cl, 7, 10, 25, 6, 101, false);
	deliver(cl, 7, 25, 26, 7, 102, false);
	deliver(cl, 7, 26, 90, 8, 103, false);
	e = get(cl, 7);
	assert_int_equal(e.unread, 4);
	assert_int_equal(e.last.seq, 90);
	assert_int_equal(e.last.ordinal, 8);
	assert_int_equal(e.last_time_ms, 103);
	assert_int_equal(e.last_sender, 42);
	assert_int_equal(e.preview_len, 5);
	assert_memory_equal(e.preview, "hello", 5);
	assert_int_equal(im_convlist_read(cl, 7, 25, 6, NULL), IM_OK);
	assert_int_equal(get(cl, 7).unread, 2);
	assert_int_equal(im_convlist_unread_total(cl), 2);
	im_convlist_destroy(cl);
}

static void
test_convlist_duplicate_and_old_deliveries_are_ignored(void **state)
{
	im_convlist *cl = make(16);
	im_conv_entry before, after;

	(void)state;
	deliver(cl, 7, 0, 10, 1, 100, false);
	deliver(cl, 7, 10, 20, 2, 200, false);
	before = get(cl, 7);
	deliver(cl, 7, 10, 20, 2, 999, false);
	deliver(cl, 7, 0, 10, 1, 999, false);
	after = get(cl, 7);
	assert_memory_equal(&before, &after, sizeof(before));
	assert_int_equal(after.unread, 2);
	im_convlist_destroy(cl);
}

static void
test_convlist_own_message_moves_the_read_pointer(void **state)
{
	im_convlist *cl = make(16);
	im_conv_entry e;

	(void)state;
	deliver(cl, 7, 0, 10, 1, 100, false);
	deliver(cl, 7, 10, 20, 2, 200, false);
	deliver(cl, 7, 20, 30, 3, 300, true);
	e = get(cl, 7);
	assert_int_equal(e.unread, 0);
	assert_int_equal(e.read.seq, 30);
	/* A new conversation started by the user has nothing unread. */
	deliver(cl, 8, 0, 5, 1, 100, true);
	assert_int_equal(get(cl, 8).unread, 0);
	assert_int_equal(im_convlist_unread_total(cl), 0);
	im_convlist_destroy(cl);
}

static void
test_convlist_read_pointer_never_moves_backwards(void **state)
{
	im_convlist *cl = make(16);
	bool moved = true;
	im_conv_entry e;

	(void)state;
	deliver(cl, 7, 0, 10, 1, 100, false);
	deliver(cl, 7, 10, 20, 2, 200, false);
	deliver(cl, 7, 20, 30, 3, 300, false);
	assert_int_equal(im_convlist_read(cl, 7, 20, 2, &moved), IM_OK);
	assert_true(moved);
	assert_int_equal(im_convlist_read(cl, 7, 10, 1, &moved), IM_OK);
	assert_false(moved);
	assert_int_equal(im_convlist_read(cl, 7, 20, 2, &moved), IM_OK);
	assert_false(moved);
	e = get(cl, 7);
	assert_int_equal(e.read.seq, 20);
	assert_int_equal(e.unread, 1);
	im_convlist_destroy(cl);
}

static void
test_convlist_read_beyond_last_is_clamped_to_last(void **state)
{
	im_convlist *cl = make(16);
	bool moved = false;
	im_conv_entry e;

	(void)state;
	deliver(cl, 7, 0, 10, 1, 100, false);
	deliver(cl, 7, 10, 20, 2, 200, false);
	assert_int_equal(im_convlist_read(cl, 7, 1000, 77, &moved), IM_OK);
	assert_true(moved);
	e = get(cl, 7);
	assert_int_equal(e.read.seq, 20);
	assert_int_equal(e.read.ordinal, 2);
	assert_int_equal(e.unread, 0);
	/* The next message counts from the clamped pointer. */
	deliver(cl, 7, 20, 40, 3, 300, false);
	assert_int_equal(get(cl, 7).unread, 1);
	im_convlist_destroy(cl);
}

static void
test_convlist_read_with_inconsistent_ordinal_is_rejected(void **state)
{
	im_convlist *cl = make(16);
	im_conv_entry before, after;
	bool moved = true;

	(void)state;
	deliver(cl, 7, 0, 10, 1, 100, false);
	deliver(cl, 7, 10, 20, 2, 200, false);
	deliver(cl, 7, 20, 30, 3, 300, false);
	before = get(cl, 7);
	assert_int_equal(im_convlist_read(cl, 7, 20, 3, &moved), IM_EINVAL);
	assert_false(moved);
	assert_int_equal(im_convlist_read(cl, 7, 20, 0, NULL), IM_EINVAL);
	assert_int_equal(im_convlist_read(cl, 99, 20, 2, NULL),
			 IM_ENOTFOUND);
	assert_int_equal(im_convlist_read(NULL, 7, 20, 2, NULL), IM_EINVAL);
	assert_int_equal(im_convlist_read(cl, 0, 20, 2, NULL), IM_EINVAL);
	after = get(cl, 7);
	assert_memory_equal(&before, &after, sizeof(before));
	im_convlist_destroy(cl);
}

static void
test_convlist_deliver_rejects_bad_messages(void **state)
{
	im_convlist *cl = make(16);
	im_msg m;

	(void)state;
	assert_int_equal(im_convlist_deliver(cl, NULL, false), IM_EINVAL);
	m = msg(0, 0, 10, 1, 0);
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_EINVAL);
	m = msg(7, 0, 0, 1, 0);
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_EINVAL);
	m = msg(7, 0, 10, 0, 0);
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_EINVAL);
	m = msg(7, 10, 10, 1, 0);
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_EINVAL);
	m = msg(7, 0, 10, 1, 0);
	m.body = NULL;
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_EINVAL);
	m = msg(7, 0, 10, 1, 0);
	assert_int_equal(im_convlist_deliver(NULL, &m, false), IM_EINVAL);
	assert_int_equal(im_convlist_count(cl), 0);
	/* A newer seq with an ordinal that does not advance. */
	deliver(cl, 7, 0, 10, 5, 0, false);
	m = msg(7, 10, 11, 5, 0);
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_EINVAL);
	assert_int_equal(get(cl, 7).last.seq, 10);
	im_convlist_destroy(cl);
}

static void
test_convlist_long_body_is_cut_to_the_preview_size(void **state)
{
	im_convlist *cl = make(4);
	char body[200];
	im_msg m = msg(7, 0, 10, 1, 0);
	im_conv_entry e;

	(void)state;
	memset(body, 'x', sizeof(body));
	m.body = body;
	m.body_len = sizeof(body);
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_OK);
	e = get(cl, 7);
	assert_int_equal(e.preview_len, IM_PREVIEW_MAX);
	assert_memory_equal(e.preview, body, IM_PREVIEW_MAX);
	im_convlist_destroy(cl);
}

static void
test_convlist_muted_conversations_are_left_out_of_unread_total(void **state)
{
	im_convlist *cl = make(16);

	(void)state;
	deliver(cl, 7, 0, 10, 1, 100, false);
	deliver(cl, 7, 10, 20, 2, 200, false);
	deliver(cl, 8, 0, 10, 1, 100, false);
	assert_int_equal(im_convlist_unread_total(cl), 3);
	assert_int_equal(im_convlist_set_flags(cl, 7, IM_CONV_MUTED), IM_OK);
	assert_int_equal(im_convlist_unread_total(cl), 1);
	/* Muted conversations still count their own unread. */
	assert_int_equal(get(cl, 7).unread, 2);
	deliver(cl, 7, 20, 30, 3, 300, false);
	assert_int_equal(im_convlist_unread_total(cl), 1);
	assert_int_equal(im_convlist_set_flags(cl, 7, IM_CONV_PINNED), IM_OK);
	assert_int_equal(get(cl, 7).flags, IM_CONV_PINNED);
	assert_int_equal(im_convlist_unread_total(cl), 4);
	assert_int_equal(im_convlist_set_flags(cl, 99, 0), IM_ENOTFOUND);
	assert_int_equal(im_convlist_set_flags(NULL, 7, 0), IM_EINVAL);
	im_convlist_destroy(cl);
}

static void
test_convlist_full_list_rejects_a_new_conversation_unchanged(void **state)
{
	im_convlist *cl = make(2);
	im_conv_row r = row(9, 0, 0, 5, 1, 0, 0);
	im_conv_entry e1, e2;
	im_msg m = msg(9, 0, 10, 1, 0);

	(void)state;
	deliver(cl, 7, 0, 10, 1, 100, false);
	deliver(cl, 8, 0, 10, 1, 100, false);
	e1 = get(cl, 7);
	e2 = get(cl, 8);
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_EFULL);
	assert_int_equal(im_convlist_apply_row(cl, &r), IM_EFULL);
	assert_int_equal(im_convlist_count(cl), 2);
	assert_int_equal(im_convlist_lookup(cl, 9, &e1), IM_ENOTFOUND);
	e1 = get(cl, 8);
	assert_memory_equal(&e2, &e1, sizeof(e2));
	assert_int_equal(im_convlist_unread_total(cl), 2);
	/* Known conversations still take deliveries. */
	deliver(cl, 7, 10, 11, 2, 200, false);
	assert_int_equal(get(cl, 7).unread, 2);
	/* Room again after a removal. */
	assert_int_equal(im_convlist_remove(cl, 8), IM_OK);
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_OK);
	im_convlist_destroy(cl);
}

static void
test_convlist_remove_forgets_a_conversation(void **state)
{
	im_convlist *cl = make(64);
	im_gid c;
	im_conv_entry e;

	(void)state;
	for (c = 1; c <= 40; c++) {
		deliver(cl, c, 0, c, 1, c, false);
	}
	for (c = 1; c <= 40; c += 2) {
		assert_int_equal(im_convlist_remove(cl, c), IM_OK);
	}
	assert_int_equal(im_convlist_remove(cl, 1), IM_ENOTFOUND);
	assert_int_equal(im_convlist_remove(NULL, 1), IM_EINVAL);
	assert_int_equal(im_convlist_count(cl), 20);
	assert_int_equal(im_convlist_unread_total(cl), 20);
	for (c = 1; c <= 40; c++) {
		int rc = im_convlist_lookup(cl, c, &e);

		if (c % 2 == 1) {
			assert_int_equal(rc, IM_ENOTFOUND);
		} else {
			assert_int_equal(rc, IM_OK);
			assert_int_equal(e.conv, c);
			assert_int_equal(e.last.seq, c);
		}
	}
	/* Without out it is a membership test. */
	assert_int_equal(im_convlist_lookup(cl, 2, NULL), IM_OK);
	assert_int_equal(im_convlist_lookup(cl, 1, NULL), IM_ENOTFOUND);
	assert_int_equal(im_convlist_lookup(NULL, 2, &e), IM_EINVAL);
	im_convlist_destroy(cl);
}

static void
test_convlist_list_orders_pinned_then_newest_then_conv(void **state)
{
	im_convlist *cl = make(16);
	im_conv_entry out[8];
	size_t n = 99;
	/* conv: time */
	static const uint64_t times[][2] = {
		{1, 100}, {2, 300}, {3, 200}, {4, 300}, {5, 50}, {6, 400},
	};
	static const im_gid want[] = {1, 5, 6, 2, 4, 3};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		deliver(cl, times[i][0], 0, 1, 1, times[i][1], false);
	}
	assert_int_equal(im_convlist_set_flags(cl, 5, IM_CONV_PINNED), IM_OK);
	assert_int_equal(im_convlist_set_flags(cl, 1, IM_CONV_PINNED |
						      IM_CONV_MUTED), IM_OK);
	im_convlist_list(cl, out, 8, &n);
	assert_int_equal(n, 6);
	for (i = 0; i < n; i++) {
		assert_int_equal(out[i].conv, want[i]);
	}
	/* A bounded listing is the prefix of the full one. */
	for (i = 0; i <= 6; i++) {
		size_t j;

		im_convlist_list(cl, out, i, &n);
		assert_int_equal(n, i);
		for (j = 0; j < n; j++) {
			assert_int_equal(out[j].conv, want[j]);
		}
	}
	im_convlist_list(NULL, out, 8, &n);
	assert_int_equal(n, 0);
	im_convlist_list(cl, NULL, 8, &n);
	assert_int_equal(n, 0);
	im_convlist_list(cl, out, 8, NULL);
	im_convlist_destroy(cl);
}

static void
test_convlist_apply_row_adds_replaces_and_clamps(void **state)
{
	im_convlist *cl = make(16);
	im_conv_row r = row(7, 10, 2, 30, 5, 100, IM_CONV_MUTED);
	im_conv_entry e;

	(void)state;
	assert_int_equal(im_convlist_apply_row(cl, &r), IM_OK);
	e = get(cl, 7);
	assert_int_equal(e.unread, 3);
	assert_int_equal(e.flags, IM_CONV_MUTED);
	assert_int_equal(e.preview_len, 2);
	assert_int_equal(im_convlist_unread_total(cl), 0);
	r.flags = 0;
	r.read_seq = 50;
	r.read_ordinal = 9;
	assert_int_equal(im_convlist_apply_row(cl, &r), IM_OK);
	e = get(cl, 7);
	assert_int_equal(e.read.seq, 30);
	assert_int_equal(e.unread, 0);
	assert_int_equal(im_convlist_count(cl), 1);
	/* A group without messages. */
	r = row(8, 0, 0, 0, 0, 0, 0);
	assert_int_equal(im_convlist_apply_row(cl, &r), IM_OK);
	assert_int_equal(get(cl, 8).unread, 0);
	deliver(cl, 8, 0, 4, 1, 1, false);
	assert_int_equal(get(cl, 8).unread, 1);
	/* Bad rows. */
	r = row(0, 0, 0, 0, 0, 0, 0);
	assert_int_equal(im_convlist_apply_row(cl, &r), IM_EINVAL);
	r = row(9, 0, 0, 5, 1, 0, 0);
	r.preview_len = IM_PREVIEW_MAX + 1;
	assert_int_equal(im_convlist_apply_row(cl, &r), IM_EINVAL);
	r = row(9, 0, 0, 5, 0, 0, 0);
	assert_int_equal(im_convlist_apply_row(cl, &r), IM_EINVAL);
	assert_int_equal(im_convlist_apply_row(cl, NULL), IM_EINVAL);
	assert_int_equal(im_convlist_apply_row(NULL, &r), IM_EINVAL);
	assert_int_equal(im_convlist_count(cl), 2);
	im_convlist_destroy(cl);
}

static void
test_convlist_load_replaces_the_list_from_the_store(void **state)
{
	im_convlist *cl = make(16);
	struct fake_store fs;
	im_conv_row rows[3];
	im_conv_entry e;

	(void)state;
	rows[0] = row(1, 2, 1, 9, 4, 10, 0);
	rows[1] = row(2, 0, 0, 0, 0, 20, IM_CONV_PINNED);
	rows[2] = row(3, 5, 5, 6, 6, 30, IM_CONV_MUTED);
	fake_init(&fs, rows, 3);
	deliver(cl, 77, 0, 1, 1, 1, false);
	assert_int_equal(im_convlist_load(cl, &fs.base, 5), IM_OK);
	assert_int_equal(im_convlist_count(cl), 3);
	assert_int_equal(im_convlist_lookup(cl, 77, &e), IM_ENOTFOUND);
	assert_int_equal(get(cl, 1).unread, 3);
	assert_int_equal(get(cl, 3).unread, 1);
	assert_int_equal(im_convlist_unread_total(cl), 3);
	/* Loading again gives the same list, not a doubled one. */
	assert_int_equal(im_convlist_load(cl, &fs.base, 5), IM_OK);
	assert_int_equal(im_convlist_count(cl), 3);
	assert_int_equal(im_convlist_unread_total(cl), 3);
	/* An empty store empties the list. */
	fs.n = 0;
	assert_int_equal(im_convlist_load(cl, &fs.base, 5), IM_OK);
	assert_int_equal(im_convlist_count(cl), 0);
	assert_int_equal(im_convlist_load(NULL, &fs.base, 5), IM_EINVAL);
	assert_int_equal(im_convlist_load(cl, NULL, 5), IM_EINVAL);
	assert_int_equal(im_convlist_load(cl, &fs.base, 0), IM_EINVAL);
	im_convlist_destroy(cl);
}

/* Snapshot of a whole list for unchanged-ness checks. */
static size_t
snapshot(const im_convlist *cl, im_conv_entry *out, size_t max)
{
	size_t n;

	im_convlist_list(cl, out, max, &n);
	return n;
}

static void
test_convlist_failed_load_leaves_the_list_unchanged(void **state)
{
	im_convlist *cl = make(4);
	struct fake_store fs;
	im_conv_row rows[6];
	im_conv_entry a[8], b[8];
	size_t na, nb, i;

	(void)state;
	for (i = 0; i < 6; i++) {
		rows[i] = row(100 + i, 0, 0, 5, 3, i, 0);
	}
	deliver(cl, 7, 0, 10, 1, 100, false);
	deliver(cl, 8, 0, 10, 1, 100, false);
	assert_int_equal(im_convlist_read(cl, 8, 10, 1, NULL), IM_OK);
	na = snapshot(cl, a, 8);
	/* The store fails mid-stream. */
	fake_init(&fs, rows, 3);
	fs.fail_after = 2;
	assert_int_equal(im_convlist_load(cl, &fs.base, 5), IM_EUNAVAIL);
	assert_int_equal(fs.loads, 1);
	/* Too many rows for max_convs. */
	fake_init(&fs, rows, 6);
	assert_int_equal(im_convlist_load(cl, &fs.base, 5), IM_EFULL);
	/* A bad row. */
	rows[1].preview_len = IM_PREVIEW_MAX + 1;
	fake_init(&fs, rows, 3);
	assert_int_equal(im_convlist_load(cl, &fs.base, 5), IM_EINVAL);
	nb = snapshot(cl, b, 8);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na * sizeof(a[0]));
	assert_int_equal(im_convlist_unread_total(cl), 1);
	im_convlist_destroy(cl);
}

static void
test_convlist_create_rejects_invalid_opts(void **state)
{
	im_convlist_opts o = IM_CONVLIST_OPTS_INIT;
	im_convlist *cl = (im_convlist *)&o;

	(void)state;
	assert_int_equal(im_convlist_create(NULL, &o), IM_EINVAL);
	assert_int_equal(im_convlist_create(&cl, NULL), IM_EINVAL);
	assert_null(cl);
	o.max_convs = 0;
	assert_int_equal(im_convlist_create(&cl, &o), IM_EINVAL);
	o.max_convs = (1u << 24) + 1;
	assert_int_equal(im_convlist_create(&cl, &o), IM_EINVAL);
	o.max_convs = 4;
	o.version = 0;
	assert_int_equal(im_convlist_create(&cl, &o), IM_EINVAL);
	o.version = IM_CONVLIST_OPTS_VERSION + 1;
	assert_int_equal(im_convlist_create(&cl, &o), IM_EINVAL);
	assert_null(cl);
	assert_int_equal(im_convlist_count(NULL), 0);
	assert_int_equal(im_convlist_unread_total(NULL), 0);
	im_convlist_destroy(NULL);
}

static void
test_convlist_survives_allocation_failure_at_every_step(void **state)
{
	unsigned long n;
	bool done = false;

	(void)state;
	for (n = 1; n < 1000 && !done; n++) {
		fail_alloc fa = {n, 0, 0};
		im_convlist_opts o = IM_CONVLIST_OPTS_INIT;
		im_convlist *cl = NULL;
		im_gid c;
		int rc;

		o.max_convs = 50;
		o.alloc = fail_alloc_allocator(&fa);
		rc = im_convlist_create(&cl, &o);
		if (rc != IM_OK) {
			assert_int_equal(rc, IM_ENOMEM);
			assert_null(cl);
			assert_int_equal(fa.live, 0);
			continue;
		}
		done = true;
		for (c = 1; c <= 40; c++) {
			im_msg m = msg(c, 0, 10, 1, c);
			im_conv_entry e;

			rc = im_convlist_deliver(cl, &m, false);
			if (rc != IM_OK) {
				assert_int_equal(rc, IM_ENOMEM);
				assert_int_equal(im_convlist_count(cl), c - 1);
				assert_int_equal(im_convlist_lookup(cl, c, &e),
						 IM_ENOTFOUND);
				assert_int_equal(im_convlist_unread_total(cl),
						 c - 1);
				done = false;
				break;
			}
		}
		for (c = 1; c <= im_convlist_count(cl); c++) {
			assert_int_equal(get(cl, c).unread, 1);
		}
		im_convlist_destroy(cl);
		assert_int_equal(fa.live, 0);
	}
	assert_true(done);
}

static void
test_convlist_load_survives_allocation_failure_at_every_step(void **state)
{
	fail_alloc fa = {0, 0, 0};
	im_convlist_opts o = IM_CONVLIST_OPTS_INIT;
	im_convlist *cl = NULL;
	struct fake_store fs;
	im_conv_row rows[30];
	im_conv_entry a[40], b[40];
	size_t na, nb, i;
	unsigned long n;
	int rc = IM_ENOMEM;

	(void)state;
	o.max_convs = 40;
	o.alloc = fail_alloc_allocator(&fa);
	assert_int_equal(im_convlist_create(&cl, &o), IM_OK);
	deliver(cl, 7, 0, 10, 1, 100, false);
	deliver(cl, 8, 0, 10, 1, 100, false);
	na = snapshot(cl, a, 40);
	for (i = 0; i < 30; i++) {
		rows[i] = row(100 + i, 0, 0, 5, 3, i, 0);
	}
	fake_init(&fs, rows, 30);
	for (n = 1; n < 100 && rc != IM_OK; n++) {
		fa.fail_at = fa.calls + n;
		rc = im_convlist_load(cl, &fs.base, 5);
		if (rc != IM_OK) {
			assert_int_equal(rc, IM_ENOMEM);
			nb = snapshot(cl, b, 40);
			assert_int_equal(na, nb);
			assert_memory_equal(a, b, na * sizeof(a[0]));
		}
	}
	assert_int_equal(rc, IM_OK);
	assert_int_equal(im_convlist_count(cl), 30);
	assert_int_equal(im_convlist_unread_total(cl), 90);
	im_convlist_destroy(cl);
	assert_int_equal(fa.live, 0);
}

struct sq {
	im_store *st;
	im_fence fence;
};

static void
sq_open(struct sq *sq)
{
	char err[256] = "";

	assert_int_equal(im_store_sqlite_open(&sq->st, ":memory:", NULL, err,
					      sizeof(err)), IM_OK);
	sq->fence.kind = IM_KIND_GROUP;
	sq->fence.slot = 1;
	assert_int_equal(im_store_slot_cas(sq->st, IM_KIND_GROUP, 1, 0, "t",
					   &sq->fence.epoch), IM_OK);
}

static void
sq_group(struct sq *sq, im_gid gid)
{
	im_group g;

	memset(&g, 0, sizeof(g));
	g.gid = gid;
	g.creator = 1;
	assert_int_equal(im_store_group_create(sq->st, &g), IM_OK);
}

/* Append one message to the store and return it (body "hello"). */
static im_msg
sq_append(struct sq *sq, im_gid conv, im_seq prev, im_seq seq, uint64_t ord,
	  uint64_t dedup)
{
	im_msg m = msg(conv, prev, seq, ord, 1000 + seq);
	im_append_result r;

	m.dedup_id = dedup;
	assert_int_equal(im_store_msg_append(sq->st, &sq->fence, 1, &m, 1,
					     &r), IM_OK);
	assert_false(r.dup);
	return m;
}

static void
test_convlist_load_from_sqlite_matches_deliveries(void **state)
{
	im_convlist *cl = make(16), *fresh = make(16);
	struct sq sq;
	im_conv_entry a, b;
	im_msg m;
	im_gid c;

	(void)state;
	sq_open(&sq);
	sq_group(&sq, 10);
	sq_group(&sq, 20);
	sq_group(&sq, 30);
	assert_int_equal(im_store_member_add(sq.st, 10, 5, NULL), IM_OK);
	assert_int_equal(im_store_member_add(sq.st, 20, 5, NULL), IM_OK);
	/* Group 30 had history before user 5 joined: not unread. */
	(void)sq_append(&sq, 30, 0, 1, 1, 1);
	(void)sq_append(&sq, 30, 1, 2, 2, 2);
	assert_int_equal(im_store_member_add(sq.st, 30, 5, NULL), IM_OK);
	/* Seqs with gaps; the list sees them delivered as well. */
	m = sq_append(&sq, 10, 0, 3, 1, 3);
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_OK);
	m = sq_append(&sq, 10, 3, 7, 2, 4);
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_OK);
	m = sq_append(&sq, 10, 7, 8, 3, 5);
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_OK);
	m = sq_append(&sq, 30, 2, 9, 3, 6);
	assert_int_equal(im_convlist_deliver(cl, &m, false), IM_OK);

	assert_int_equal(im_convlist_load(fresh, sq.st, 5), IM_OK);
	assert_int_equal(im_convlist_count(fresh), 3);
	assert_int_equal(get(fresh, 10).unread, 3);
	assert_int_equal(get(fresh, 20).unread, 0);
	assert_int_equal(get(fresh, 30).unread, 1);
	assert_int_equal(im_convlist_unread_total(fresh), 4);
	/* What was counted on delivery is what the store says. */
	for (c = 10; c <= 30; c += 20) {
		a = get(cl, c);
		b = get(fresh, c);
		assert_int_equal(a.unread, b.unread);
		assert_int_equal(a.last.seq, b.last.seq);
		assert_int_equal(a.last.ordinal, b.last.ordinal);
		assert_int_equal(a.last_time_ms, b.last_time_ms);
		assert_int_equal(a.preview_len, b.preview_len);
		assert_memory_equal(a.preview, b.preview, a.preview_len);
	}
	/* A read written back survives a reload. */
	assert_int_equal(im_convlist_read(fresh, 10, 7, 2, NULL), IM_OK);
	assert_int_equal(im_store_conv_update(sq.st, 5, 10, 7, 2,
					      IM_CONV_MUTED), IM_OK);
	assert_int_equal(im_convlist_load(cl, sq.st, 5), IM_OK);
	a = get(cl, 10);
	assert_int_equal(a.unread, 1);
	assert_int_equal(a.read.seq, 7);
	assert_int_equal(a.flags, IM_CONV_MUTED);
	assert_int_equal(im_convlist_unread_total(cl), 1);
	/* More conversations than max_convs: IM_EFULL, list unchanged. */
	im_convlist_destroy(fresh);
	fresh = make(2);
	deliver(fresh, 99, 0, 1, 1, 1, false);
	assert_int_equal(im_convlist_load(fresh, sq.st, 5), IM_EFULL);
	assert_int_equal(im_convlist_count(fresh), 1);
	assert_int_equal(get(fresh, 99).unread, 1);
	im_convlist_destroy(fresh);
	im_convlist_destroy(cl);
	im_store_close(sq.st);
}

/*
 * Property test. Each conversation has a fixed chain of messages (random
 * seq gaps, contiguous ordinals). Random deliveries (new ones, skipping
 * ahead, duplicates and old ones out of order), own messages, reads and
 * flags are checked against a model that counts unread the slow way: the
 * number of chain messages after the read pointer up to the last one.
 */
#define P_CONVS 6
#define P_MSGS 200

struct pconv {
	im_seq seq[P_MSGS];
	bool present;
	int last;      /* index of the last message, -1 = none */
	im_seq read_seq;
	uint64_t read_ord;
	uint32_t flags;
};

static uint64_t
p_unread(const struct pconv *p)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i <= p->last; i++) {
		if (p->seq[i] > p->read_seq) {
			n++;
		}
	}
	return n;
}

static void
test_convlist_unread_matches_a_reference_model(void **state)
{
	test_rng rng = {seed ^ 0xc0417};
	unsigned round;

	(void)state;
	for (round = 0; round < 20; round++) {
		struct pconv pc[P_CONVS];
		uint32_t max = 1 + (uint32_t)test_rng_below(&rng, P_CONVS);
		im_convlist *cl = make(max);
		size_t present = 0;
		unsigned op;
		int c, i;

		memset(pc, 0, sizeof(pc));
		for (c = 0; c < P_CONVS; c++) {
			im_seq s = 0;

			for (i = 0; i < P_MSGS; i++) {
				s += 1 + test_rng_below(&rng, 5);
				pc[c].seq[i] = s;
			}
			pc[c].last = -1;
		}
		for (op = 0; op < 2000; op++) {
			struct pconv *p;
			uint64_t r = test_rng_below(&rng, 100);
			uint64_t total = 0;
			im_conv_entry e;
			int rc;

			c = (int)test_rng_below(&rng, P_CONVS);
			p = &pc[c];
			if (r < 60) {
				/* Next, a skip ahead, or an old one. */
				int k = p->last + 1 +
					(int)test_rng_below(&rng, 3);
				bool own = test_rng_below(&rng, 10) == 0;
				im_msg m;

				if (test_rng_below(&rng, 4) == 0) {
					k = (int)test_rng_below(
						&rng, (uint64_t)k + 1);
				}
				if (k >= P_MSGS) {
					continue;
				}
				m = msg((im_gid)c + 1,
					k > 0 ? p->seq[k - 1] : 0, p->seq[k],
					(uint64_t)k + 1, op);
				rc = im_convlist_deliver(cl, &m, own);
				if (!p->present && present == max) {
					assert_int_equal(rc, IM_EFULL);
					continue;
				}
				assert_int_equal(rc, IM_OK);
				if (!p->present) {
					p->present = true;
					present++;
					p->last = -1;
					p->read_seq = m.prev_seq;
					p->read_ord = (uint64_t)k;
					p->flags = 0;
				}
				if (k > p->last) {
					p->last = k;
					if (own) {
						p->read_seq = p->seq[k];
						p->read_ord = (uint64_t)k + 1;
					}
				}
			} else if (r < 90) {
				int k = (int)test_rng_below(&rng, P_MSGS);
				bool moved = false;
				bool want = false;

				rc = im_convlist_read(cl, (im_gid)c + 1,
						      p->seq[k],
						      (uint64_t)k + 1, &moved);
				if (!p->present) {
					assert_int_equal(rc, IM_ENOTFOUND);
					continue;
				}
				assert_int_equal(rc, IM_OK);
				if (p->seq[k] > p->read_seq) {
					want = true;
					if (k >= p->last) {
						k = p->last;
					}
					p->read_seq = p->seq[k];
					p->read_ord = (uint64_t)k + 1;
				}
				assert_int_equal(moved, want);
			} else if (r < 97) {
				uint32_t f = (uint32_t)test_rng_below(&rng, 4);

				rc = im_convlist_set_flags(cl, (im_gid)c + 1,
							   f);
				assert_int_equal(rc, p->present
						 ? IM_OK : IM_ENOTFOUND);
				p->flags = f;
			} else {
				rc = im_convlist_remove(cl, (im_gid)c + 1);
				assert_int_equal(rc, p->present
						 ? IM_OK : IM_ENOTFOUND);
				if (p->present) {
					p->present = false;
					present--;
				}
			}
			assert_int_equal(im_convlist_count(cl), present);
			for (c = 0; c < P_CONVS; c++) {
				p = &pc[c];
				rc = im_convlist_lookup(cl, (im_gid)c + 1, &e);
				if (!p->present) {
					assert_int_equal(rc, IM_ENOTFOUND);
					continue;
				}
				assert_int_equal(rc, IM_OK);
				assert_int_equal(e.unread, p_unread(p));
				assert_int_equal(e.read.seq, p->read_seq);
				assert_int_equal(e.read.ordinal, p->read_ord);
				assert_int_equal(e.last.seq, p->seq[p->last]);
				assert_int_equal(e.flags, p->flags);
				if ((p->flags & IM_CONV_MUTED) == 0) {
					total += e.unread;
				}
			}
			assert_int_equal(im_convlist_unread_total(cl), total);
		}
		im_convlist_destroy(cl);
	}
}

static void
test_convlist_mem_grows_with_conversations_and_stays_bounded(void **state)
{
	im_convlist *cl = make(64);
	size_t empty, prev, m;
	im_gid g;

	(void)state;
	empty = im_convlist_mem(cl);
	assert_true(empty > 0);
	assert_true(empty < 256); /* no entry memory before the first one */
	assert_int_equal(im_convlist_mem(NULL), 0);
	prev = empty;
	for (g = 1; g <= 64; g++) {
		im_conv_row r = row(g, 0, 0, 5, 1, 0, 0);

		assert_int_equal(im_convlist_apply_row(cl, &r), IM_OK);
		m = im_convlist_mem(cl);
		assert_true(m >= prev);
		assert_true(m >= empty + g * sizeof(im_conv_entry));
		prev = m;
	}
	/* Full at max_convs: entries for exactly 64 plus an index of 128. */
	assert_int_equal(m, empty + 64 * sizeof(im_conv_entry) +
	                            128 * sizeof(uint32_t));
	im_convlist_destroy(cl);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_convlist_unread_is_exact_across_seq_gaps),
		cmocka_unit_test(
			test_convlist_duplicate_and_old_deliveries_are_ignored),
		cmocka_unit_test(
			test_convlist_own_message_moves_the_read_pointer),
		cmocka_unit_test(
			test_convlist_read_pointer_never_moves_backwards),
		cmocka_unit_test(
			test_convlist_read_beyond_last_is_clamped_to_last),
		cmocka_unit_test(
			test_convlist_read_with_inconsistent_ordinal_is_rejected),
		cmocka_unit_test(test_convlist_deliver_rejects_bad_messages),
		cmocka_unit_test(
			test_convlist_long_body_is_cut_to_the_preview_size),
		cmocka_unit_test(
			test_convlist_muted_conversations_are_left_out_of_unread_total),
		cmocka_unit_test(
			test_convlist_full_list_rejects_a_new_conversation_unchanged),
		cmocka_unit_test(test_convlist_remove_forgets_a_conversation),
		cmocka_unit_test(
			test_convlist_list_orders_pinned_then_newest_then_conv),
		cmocka_unit_test(
			test_convlist_apply_row_adds_replaces_and_clamps),
		cmocka_unit_test(
			test_convlist_load_replaces_the_list_from_the_store),
		cmocka_unit_test(
			test_convlist_failed_load_leaves_the_list_unchanged),
		cmocka_unit_test(test_convlist_create_rejects_invalid_opts),
		cmocka_unit_test(
			test_convlist_survives_allocation_failure_at_every_step),
		cmocka_unit_test(
			test_convlist_load_survives_allocation_failure_at_every_step),
		cmocka_unit_test(
			test_convlist_load_from_sqlite_matches_deliveries),
		cmocka_unit_test(
			test_convlist_unread_matches_a_reference_model),
		cmocka_unit_test(
			test_convlist_mem_grows_with_conversations_and_stays_bounded),
	};

	seed = test_seed();
	return cmocka_run_group_tests_name("convlist", tests, NULL, NULL);
}
