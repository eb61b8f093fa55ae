/*
 * The im_store_* wrappers over a fake backend that records what reaches
 * it: version gating in im_store_init, argument checks before any call,
 * and the normalisations the wrappers promise (limits, optional outs).
 */
#include "im/sys/store.h"
#include "store_nops.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

typedef struct fake_be {
	im_store base;
	unsigned calls;
	uint32_t last_limit;
	bool out_was_null;
	bool closed;
} fake_be;

static fake_be *
fb(im_store *st)
{
	return (fake_be *)st;
}

static void
fb_close(im_store *st)
{
	fb(st)->closed = true;
}

static int
fb_migrate(im_store *st, uint32_t *v)
{
	fb(st)->calls++;
	fb(st)->out_was_null = v == NULL;
	*v = 1;
	return IM_OK;
}

static int
fb_slot_load(im_store *st, im_kind k, im_slot_cb cb, void *p)
{
	fb(st)->calls++;
	return IM_OK;
}

static int
fb_slot_cas(im_store *st, im_kind k, uint32_t slot, im_epoch e,
            const char *owner, im_epoch *out)
{
	fb(st)->calls++;
	fb(st)->out_was_null = out == NULL;
	*out = e + 1;
	return IM_OK;
}

static int
fb_seg_take(im_store *st, const im_seg_key *k, uint32_t step, im_seg *s)
{
	fb(st)->calls++;
	return IM_OK;
}

static int
fb_msg_append(im_store *st, const im_fence *f, size_t nf, const im_msg *m,
              size_t n, im_append_result *r)
{
	fb(st)->calls++;
	return IM_OK;
}

static int
fb_msg_read(im_store *st, im_gid c, im_seq a, im_seq u, uint32_t limit,
            im_msg_cb cb, void *p)
{
	fb(st)->calls++;
	fb(st)->last_limit = limit;
	return IM_OK;
}

static int
fb_msg_last(im_store *st, im_gid c, im_seq at, im_msg_pos *pos)
{
	fb(st)->calls++;
	/* The wrapper zeroed it: a backend may leave it on ENOTFOUND. */
	return pos->seq == 0 && pos->ordinal == 0 ? IM_ENOTFOUND : IM_ERR;
}

static int
fb_msg_find_dedup(im_store *st, im_gid c, im_uid s, uint64_t d, im_msg *m)
{
	fb(st)->calls++;
	return IM_ENOTFOUND;
}

static int
fb_group_create(im_store *st, const im_group *g)
{
	fb(st)->calls++;
	return IM_OK;
}

static int
fb_group_lookup(im_store *st, im_gid g, im_group *out)
{
	fb(st)->calls++;
	return IM_ENOTFOUND;
}

static int
fb_member_add(im_store *st, im_gid g, im_uid u, bool *added)
{
	fb(st)->calls++;
	fb(st)->out_was_null = added == NULL;
	*added = true;
	return IM_OK;
}

static int
fb_member_remove(im_store *st, im_gid g, im_uid u, bool *removed)
{
	fb(st)->calls++;
	fb(st)->out_was_null = removed == NULL;
	*removed = true;
	return IM_OK;
}

static int
fb_member_list(im_store *st, im_gid g, im_uid_cb cb, void *p)
{
	fb(st)->calls++;
	return IM_OK;
}

static int
fb_conv_load(im_store *st, im_uid u, im_conv_cb cb, void *p)
{
	fb(st)->calls++;
	return IM_OK;
}

static int
fb_conv_update(im_store *st, im_uid u, im_gid c, im_seq r, uint64_t o,
               uint32_t flags)
{
	fb(st)->calls++;
	return IM_OK;
}

static int
fb_uq_append(im_store *st, const im_fence *f, size_t nf, const im_uq_item *it,
             size_t n)
{
	fb(st)->calls++;
	return IM_OK;
}

static int
fb_uq_read(im_store *st, im_uid u, im_seq a, uint32_t limit, im_uq_cb cb,
           void *p)
{
	fb(st)->calls++;
	fb(st)->last_limit = limit;
	return IM_OK;
}

static const struct im_store_ops fb_ops = {
        .version = IM_STORE_OPS_VERSION,
        .name = "fake",
        .close = fb_close,
        .migrate = fb_migrate,
        .slot_load = fb_slot_load,
        .slot_cas = fb_slot_cas,
        .seg_take = fb_seg_take,
        .msg_append = fb_msg_append,
        .msg_read = fb_msg_read,
        .msg_last = fb_msg_last,
        .msg_find_dedup = fb_msg_find_dedup,
        .group_create = fb_group_create,
        .group_lookup = fb_group_lookup,
        .member_add = fb_member_add,
        .member_remove = fb_member_remove,
        .member_list = fb_member_list,
        .conv_load = fb_conv_load,
        .conv_update = fb_conv_update,
        .uq_append = fb_uq_append,
        .uq_read = fb_uq_read,
};

/* Offsets of every version 1 op, to null them one at a time. */
static const size_t v1_ops[] = {
        offsetof(struct im_store_ops, close),
        offsetof(struct im_store_ops, migrate),
        offsetof(struct im_store_ops, slot_load),
        offsetof(struct im_store_ops, slot_cas),
        offsetof(struct im_store_ops, seg_take),
        offsetof(struct im_store_ops, msg_append),
        offsetof(struct im_store_ops, msg_read),
        offsetof(struct im_store_ops, msg_last),
        offsetof(struct im_store_ops, msg_find_dedup),
        offsetof(struct im_store_ops, group_create),
        offsetof(struct im_store_ops, group_lookup),
        offsetof(struct im_store_ops, member_add),
        offsetof(struct im_store_ops, member_remove),
        offsetof(struct im_store_ops, member_list),
        offsetof(struct im_store_ops, conv_load),
        offsetof(struct im_store_ops, conv_update),
        offsetof(struct im_store_ops, uq_append),
        offsetof(struct im_store_ops, uq_read),
};

static void
fake_init(fake_be *f)
{
	memset(f, 0, sizeof(*f));
	assert_int_equal(im_store_init(&f->base, &fb_ops), IM_OK);
}

static void
test_store_init_accepts_a_complete_version_1_table(void **state)
{
	fake_be f;

	fake_init(&f);
	assert_string_equal(im_store_name(&f.base), "fake");
	assert_string_equal(im_store_errmsg(&f.base), "");
	im_store_close(&f.base);
	assert_true(f.closed);
}

static void
test_store_init_rejects_version_zero_and_newer_versions(void **state)
{
	struct im_store_ops ops = fb_ops;
	fake_be f = {0};

	ops.version = 0;
	assert_int_equal(im_store_init(&f.base, &ops), IM_EINVAL);
	ops.version = IM_STORE_OPS_VERSION + 1;
	assert_int_equal(im_store_init(&f.base, &ops), IM_EINVAL);
	assert_null(f.base.ops);
}

static void
test_store_init_rejects_each_missing_version_1_op(void **state)
{
	fake_be f = {0};
	size_t i;

	for (i = 0; i < sizeof(v1_ops) / sizeof(v1_ops[0]); i++) {
		struct im_store_ops ops = fb_ops;
		void (*none)(void) = NULL;

		memcpy((char *)&ops + v1_ops[i], &none, sizeof(none));
		assert_int_equal(im_store_init(&f.base, &ops), IM_EINVAL);
		assert_null(f.base.ops);
	}
}

static void
test_store_init_rejects_null_arguments_and_a_nameless_table(void **state)
{
	struct im_store_ops ops = fb_ops;
	fake_be f = {0};

	assert_int_equal(im_store_init(NULL, &fb_ops), IM_EINVAL);
	assert_int_equal(im_store_init(&f.base, NULL), IM_EINVAL);
	ops.name = NULL;
	assert_int_equal(im_store_init(&f.base, &ops), IM_EINVAL);
}

static void
test_store_calls_on_a_null_store_fail_without_crashing(void **state)
{
	im_fence fence = {IM_KIND_GROUP, 1, 1};
	im_msg m = {.conv = 1, .seq = 1, .sender = 1, .ordinal = 1};
	im_uq_item it = {.user = 1, .seq = 1};
	im_append_result r;
	im_seg_key k = {IM_SEG_GROUP_SEQ, 1};
	im_group g = {.gid = 1};
	im_msg_pos pos;
	im_seg seg;

	im_store_close(NULL);
	assert_non_null(im_store_name(NULL));
	assert_non_null(im_store_errmsg(NULL));
	im_store_set_error(NULL, "ignored %d", 1);
	assert_int_equal(im_store_migrate(NULL, NULL), IM_EINVAL);
	assert_int_equal(im_store_slot_load(NULL, IM_KIND_USER, nop_slot, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_slot_cas(NULL, IM_KIND_USER, 1, 0, "o", NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_seg_take(NULL, &k, 1, &seg), IM_EINVAL);
	assert_int_equal(im_store_msg_append(NULL, &fence, 1, &m, 1, &r),
	                 IM_EINVAL);
	assert_int_equal(im_store_msg_read(NULL, 1, 0, 9, 0, nop_msg, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_msg_last(NULL, 1, 9, &pos), IM_EINVAL);
	assert_int_equal(im_store_msg_find_dedup(NULL, 1, 1, 1, &m), IM_EINVAL);
	assert_int_equal(im_store_group_create(NULL, &g), IM_EINVAL);
	assert_int_equal(im_store_group_lookup(NULL, 1, &g), IM_EINVAL);
	assert_int_equal(im_store_member_add(NULL, 1, 1, NULL), IM_EINVAL);
	assert_int_equal(im_store_member_remove(NULL, 1, 1, NULL), IM_EINVAL);
	assert_int_equal(im_store_member_list(NULL, 1, nop_uid, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_conv_load(NULL, 1, nop_conv, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_store_conv_update(NULL, 1, 1, 1, 1, 0), IM_EINVAL);
	assert_int_equal(im_store_uq_append(NULL, &fence, 1, &it, 1),
	                 IM_EINVAL);
	assert_int_equal(im_store_uq_read(NULL, 1, 0, 0, nop_uq, NULL),
	                 IM_EINVAL);
}

static void
test_store_bad_arguments_never_reach_the_backend(void **state)
{
	im_fence fence = {IM_KIND_GROUP, 1, 1};
	im_fence badfence = {(im_kind)3, 1, 1};
	im_msg ok = {
	        .conv = 1, .seq = 2, .prev_seq = 1, .sender = 1, .ordinal = 1};
	im_uq_item it = {.user = 1, .seq = 1};
	im_seg_key k = {IM_SEG_GROUP_SEQ, 1};
	im_seg_key badk = {(im_seg_space)9, 1};
	im_append_result r;
	im_group g = {.gid = 1};
	im_msg m = ok;
	im_msg_pos pos;
	im_seg seg;
	fake_be f;

	fake_init(&f);
	assert_int_equal(im_store_slot_load(&f.base, (im_kind)2, nop_slot, 0),
	                 IM_EINVAL);
	assert_int_equal(im_store_slot_load(&f.base, IM_KIND_USER, NULL, 0),
	                 IM_EINVAL);
	assert_int_equal(
	        im_store_slot_cas(&f.base, IM_KIND_USER, 1, 0, NULL, NULL),
	        IM_EINVAL);
	assert_int_equal(im_store_seg_take(&f.base, &k, 0, &seg), IM_EINVAL);
	assert_int_equal(im_store_seg_take(&f.base, &badk, 1, &seg), IM_EINVAL);
	assert_int_equal(im_store_msg_append(&f.base, &badfence, 1, &m, 1, &r),
	                 IM_EINVAL);
	m.seq = (uint64_t)INT64_MAX + 1;
	assert_int_equal(im_store_msg_append(&f.base, &fence, 1, &m, 1, &r),
	                 IM_EINVAL);
	m = ok;
	m.ordinal = UINT64_MAX;
	assert_int_equal(im_store_msg_append(&f.base, &fence, 1, &m, 1, &r),
	                 IM_EINVAL);
	m = ok;
	m.body_len = IM_MSG_BODY_MAX + 1;
	m.body = "x";
	assert_int_equal(im_store_msg_append(&f.base, &fence, 1, &m, 1, &r),
	                 IM_EINVAL);
	assert_non_null(strstr(im_store_errmsg(&f.base), "IM_MSG_BODY_MAX"));
	assert_int_equal(im_store_msg_read(&f.base, 0, 0, 9, 0, nop_msg, 0),
	                 IM_EINVAL);
	assert_int_equal(im_store_msg_last(&f.base, 1, 9, NULL), IM_EINVAL);
	assert_int_equal(im_store_msg_find_dedup(&f.base, 1, 0, 1, &m),
	                 IM_EINVAL);
	g.gid = 0;
	assert_int_equal(im_store_group_create(&f.base, &g), IM_EINVAL);
	assert_int_equal(im_store_group_lookup(&f.base, 1, NULL), IM_EINVAL);
	assert_int_equal(im_store_member_add(&f.base, 1, 0, NULL), IM_EINVAL);
	assert_int_equal(im_store_member_list(&f.base, 0, nop_uid, 0),
	                 IM_EINVAL);
	assert_int_equal(im_store_conv_load(&f.base, 1, NULL, 0), IM_EINVAL);
	assert_int_equal(im_store_conv_update(&f.base, 0, 1, 1, 1, 0),
	                 IM_EINVAL);
	it.body_len = IM_UQ_BODY_MAX + 1;
	it.body = "x";
	assert_int_equal(im_store_uq_append(&f.base, &fence, 1, &it, 1),
	                 IM_EINVAL);
	it.body_len = 0;
	it.seq = (uint64_t)INT64_MAX + 1;
	assert_int_equal(im_store_uq_append(&f.base, &fence, 1, &it, 1),
	                 IM_EINVAL);
	assert_int_equal(im_store_uq_append(&f.base, &fence, 0, &it, 1),
	                 IM_EINVAL);
	assert_int_equal(im_store_uq_read(&f.base, 1, 0, 0, NULL, 0),
	                 IM_EINVAL);
	assert_int_equal(f.calls, 0);
	(void)pos;
}

static void
test_store_read_limits_are_clamped_and_empty_windows_skipped(void **state)
{
	fake_be f;

	fake_init(&f);
	assert_int_equal(im_store_msg_read(&f.base, 1, 0, 9, 0, nop_msg, 0),
	                 IM_OK);
	assert_int_equal(f.last_limit, IM_STORE_READ_LIMIT_MAX);
	assert_int_equal(im_store_msg_read(&f.base, 1, 0, 9, 5000, nop_msg, 0),
	                 IM_OK);
	assert_int_equal(f.last_limit, IM_STORE_READ_LIMIT_MAX);
	assert_int_equal(im_store_msg_read(&f.base, 1, 0, 9, 7, nop_msg, 0),
	                 IM_OK);
	assert_int_equal(f.last_limit, 7);
	assert_int_equal(im_store_uq_read(&f.base, 1, 0, 0, nop_uq, 0), IM_OK);
	assert_int_equal(f.last_limit, IM_STORE_READ_LIMIT_MAX);
	f.calls = 0;
	assert_int_equal(im_store_msg_read(&f.base, 1, 9, 9, 0, nop_msg, 0),
	                 IM_OK);
	assert_int_equal(im_store_msg_read(&f.base, 1, 9, 3, 0, nop_msg, 0),
	                 IM_OK);
	assert_int_equal(f.calls, 0);
}

static void
test_store_optional_outs_reach_the_backend_as_valid_pointers(void **state)
{
	im_msg_pos pos = {77, 77};
	fake_be f;
	im_epoch e = 0;

	fake_init(&f);
	assert_int_equal(im_store_migrate(&f.base, NULL), IM_OK);
	assert_false(f.out_was_null);
	assert_int_equal(
	        im_store_slot_cas(&f.base, IM_KIND_USER, 1, 0, "o", NULL),
	        IM_OK);
	assert_false(f.out_was_null);
	assert_int_equal(
	        im_store_slot_cas(&f.base, IM_KIND_USER, 1, 4, "o", &e), IM_OK);
	assert_int_equal(e, 5);
	assert_int_equal(im_store_member_add(&f.base, 1, 1, NULL), IM_OK);
	assert_false(f.out_was_null);
	assert_int_equal(im_store_member_remove(&f.base, 1, 1, NULL), IM_OK);
	assert_false(f.out_was_null);
	/* msg_last clears the position before the backend looks. */
	assert_int_equal(im_store_msg_last(&f.base, 1, 9, &pos), IM_ENOTFOUND);
	assert_int_equal(pos.seq, 0);
}

static void
test_store_set_error_truncates_long_messages(void **state)
{
	char big[IM_STORE_ERRMSG_MAX * 2];
	fake_be f;

	fake_init(&f);
	memset(big, 'e', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	im_store_set_error(&f.base, "%s", big);
	assert_int_equal(strlen(im_store_errmsg(&f.base)),
	                 IM_STORE_ERRMSG_MAX - 1);
	im_store_set_error(&f.base, "code %d", 7);
	assert_string_equal(im_store_errmsg(&f.base), "code 7");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(
	                test_store_init_accepts_a_complete_version_1_table),
	        cmocka_unit_test(
	                test_store_init_rejects_version_zero_and_newer_versions),
	        cmocka_unit_test(
	                test_store_init_rejects_each_missing_version_1_op),
	        cmocka_unit_test(
	                test_store_init_rejects_null_arguments_and_a_nameless_table),
	        cmocka_unit_test(
	                test_store_calls_on_a_null_store_fail_without_crashing),
	        cmocka_unit_test(
	                test_store_bad_arguments_never_reach_the_backend),
	        cmocka_unit_test(
	                test_store_read_limits_are_clamped_and_empty_windows_skipped),
	        cmocka_unit_test(
	                test_store_optional_outs_reach_the_backend_as_valid_pointers),
	        cmocka_unit_test(test_store_set_error_truncates_long_messages),
	};

	return cmocka_run_group_tests_name("store_api", tests, NULL, NULL);
}
