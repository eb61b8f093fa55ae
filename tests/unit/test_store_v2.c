/*
 * Store ops version 2 (cluster membership): the wrappers gate the new ops
 * on the backend's ops version, so a backend compiled against version 1
 * keeps opening and answers IM_ENOTSUP. The "old" backend here is the real
 * thing: its ops table is allocated only as large as a version 1 table, so
 * reading a version 2 slot of it is out of bounds (ASan catches that).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "im/sys/store.h"

typedef struct v_store {
	im_store base;
	int calls; /* calls that reached a version 2 op */
	uint64_t incarnation;
	uint64_t hb;
} v_store;

static void
v_close(im_store *st)
{
	(void)st;
}

static int
v_migrate(im_store *st, uint32_t *schema_out)
{
	(void)st;
	*schema_out = 1;
	return IM_OK;
}

static int
v_slot_load(im_store *st, im_kind kind, im_slot_cb cb, void *payload)
{
	(void)st, (void)kind, (void)cb, (void)payload;
	return IM_OK;
}

static int
v_slot_cas(im_store *st, im_kind kind, uint32_t slot, im_epoch expect,
	   const char *owner, im_epoch *epoch_out)
{
	(void)st, (void)kind, (void)slot, (void)owner;
	*epoch_out = expect + 1;
	return IM_OK;
}

static int
v_seg_take(im_store *st, const im_seg_key *key, uint32_t step, im_seg *out)
{
	(void)st, (void)key;
	out->first = 1;
	out->last = step;
	return IM_OK;
}

static int
v_msg_append(im_store *st, const im_fence *f, size_t nf, const im_msg *m,
	     size_t n, im_append_result *res)
{
	(void)st, (void)f, (void)nf, (void)m, (void)n, (void)res;
	return IM_OK;
}

static int
v_msg_read(im_store *st, im_gid conv, im_seq after, im_seq until,
	   uint32_t limit, im_msg_cb cb, void *payload)
{
	(void)st, (void)conv, (void)after, (void)until, (void)limit;
	(void)cb, (void)payload;
	return IM_OK;
}

static int
v_msg_last(im_store *st, im_gid conv, im_seq at, im_msg_pos *pos)
{
	(void)st, (void)conv, (void)at, (void)pos;
	return IM_OK;
}

static int
v_msg_find_dedup(im_store *st, im_gid conv, im_uid sender, uint64_t d,
		 im_msg *out)
{
	(void)st, (void)conv, (void)sender, (void)d, (void)out;
	return IM_ENOTFOUND;
}

static int
v_group_create(im_store *st, const im_group *g)
{
	(void)st, (void)g;
	return IM_OK;
}

static int
v_group_lookup(im_store *st, im_gid gid, im_group *out)
{
	(void)st, (void)gid, (void)out;
	return IM_ENOTFOUND;
}

static int
v_member_add(im_store *st, im_gid gid, im_uid user, bool *added)
{
	(void)st, (void)gid, (void)user;
	*added = true;
	return IM_OK;
}

static int
v_member_remove(im_store *st, im_gid gid, im_uid user, bool *removed)
{
	(void)st, (void)gid, (void)user;
	*removed = true;
	return IM_OK;
}

static int
v_member_list(im_store *st, im_gid gid, im_uid_cb cb, void *payload)
{
	(void)st, (void)gid, (void)cb, (void)payload;
	return IM_OK;
}

static int
v_conv_load(im_store *st, im_uid user, im_conv_cb cb, void *payload)
{
	(void)st, (void)user, (void)cb, (void)payload;
	return IM_OK;
}

static int
v_conv_update(im_store *st, im_uid user, im_gid conv, im_seq rs, uint64_t ro,
	      uint32_t flags)
{
	(void)st, (void)user, (void)conv, (void)rs, (void)ro, (void)flags;
	return IM_OK;
}

static int
v_uq_append(im_store *st, const im_fence *f, size_t nf, const im_uq_item *it,
	    size_t n)
{
	(void)st, (void)f, (void)nf, (void)it, (void)n;
	return IM_OK;
}

static int
v_uq_read(im_store *st, im_uid user, im_seq after, uint32_t limit,
	  im_uq_cb cb, void *payload)
{
	(void)st, (void)user, (void)after, (void)limit, (void)cb;
	(void)payload;
	return IM_OK;
}

static int
v_node_register(im_store *st, const char *name, im_node_role role,
		const char *address, uint64_t now_ms, uint64_t *inc_out)
{
	v_store *v = (v_store *)st;

	(void)name, (void)role, (void)address;
	v->calls++;
	v->hb = now_ms;
	*inc_out = ++v->incarnation;
	return IM_OK;
}

static int
v_node_heartbeat(im_store *st, const char *name, uint64_t now_ms)
{
	v_store *v = (v_store *)st;

	(void)name;
	v->calls++;
	if (v->incarnation == 0) {
		return IM_ENOTFOUND;
	}
	v->hb = now_ms;
	return IM_OK;
}

static int
v_node_list(im_store *st, im_node_cb cb, void *payload)
{
	v_store *v = (v_store *)st;
	im_node_row row = {"n1", IM_NODE_CHATTER, "127.0.0.1:1", 0, v->hb,
			   v->incarnation};

	v->calls++;
	return v->incarnation != 0 ? cb(&row, payload) : IM_OK;
}

#define V1_OPS                                  \
	.name = "v-test",                       \
	.close = v_close,                       \
	.migrate = v_migrate,                   \
	.slot_load = v_slot_load,               \
	.slot_cas = v_slot_cas,                 \
	.seg_take = v_seg_take,                 \
	.msg_append = v_msg_append,             \
	.msg_read = v_msg_read,                 \
	.msg_last = v_msg_last,                 \
	.msg_find_dedup = v_msg_find_dedup,     \
	.group_create = v_group_create,         \
	.group_lookup = v_group_lookup,         \
	.member_add = v_member_add,             \
	.member_remove = v_member_remove,       \
	.member_list = v_member_list,           \
	.conv_load = v_conv_load,               \
	.conv_update = v_conv_update,           \
	.uq_append = v_uq_append,               \
	.uq_read = v_uq_read

static const struct im_store_ops v1_ops = {
	.version = 1,
	V1_OPS,
};

static const struct im_store_ops v2_ops = {
	.version = 2,
	V1_OPS,
	.node_register = v_node_register,
	.node_heartbeat = v_node_heartbeat,
	.node_list = v_node_list,
};

/* A version 2 table that leaves the new ops out. */
static const struct im_store_ops v2_partial_ops = {
	.version = 2,
	V1_OPS,
};

/* What a backend compiled at version 1 hands us: a table that ends where
 * the version 1 ops end. */
static struct im_store_ops *
old_table(void)
{
	size_t n = offsetof(struct im_store_ops, node_register);
	struct im_store_ops *t = malloc(n);

	assert_non_null(t);
	memcpy(t, &v1_ops, n);
	return t;
}

static int
count_row(const im_node_row *row, void *payload)
{
	(*(int *)payload)++;
	assert_string_equal(row->name, "n1");
	return 0;
}

static void
assert_not_supported(v_store *v)
{
	int rows = 0;

	assert_int_equal(im_store_node_register(&v->base, "n1",
						IM_NODE_CHATTER,
						"127.0.0.1:7000", 5, NULL),
			 IM_ENOTSUP);
	assert_non_null(strstr(im_store_errmsg(&v->base), "not supported"));
	assert_int_equal(im_store_node_heartbeat(&v->base, "n1", 6),
			 IM_ENOTSUP);
	assert_int_equal(im_store_node_list(&v->base, count_row, &rows),
			 IM_ENOTSUP);
	assert_int_equal(rows, 0);
	assert_int_equal(v->calls, 0);
}

static void
test_store_v1_backend_still_opens_and_answers_enotsup_for_node_ops(
	void **state)
{
	struct im_store_ops *t = old_table();
	v_store v;
	uint32_t schema = 0;

	(void)state;
	memset(&v, 0, sizeof(v));
	assert_int_equal(im_store_init(&v.base, t), IM_OK);
	assert_int_equal(im_store_migrate(&v.base, &schema), IM_OK);
	assert_int_equal(schema, 1);
	assert_string_equal(im_store_name(&v.base), "v-test");
	assert_not_supported(&v);
	free(t);
}

static void
test_store_version_gates_the_op_even_when_the_slot_is_set(void **state)
{
	/* A version 1 table whose memory happens to hold non-NULL pointers
	 * where version 2 ops live must still not be called there. */
	struct im_store_ops t = v2_ops;
	v_store v;

	(void)state;
	t.version = 1;
	memset(&v, 0, sizeof(v));
	assert_int_equal(im_store_init(&v.base, &t), IM_OK);
	assert_not_supported(&v);
}

static void
test_store_v2_table_without_node_ops_answers_enotsup(void **state)
{
	v_store v;

	(void)state;
	memset(&v, 0, sizeof(v));
	assert_int_equal(im_store_init(&v.base, &v2_partial_ops), IM_OK);
	assert_not_supported(&v);
}

static void
test_store_v2_ops_are_called_through_the_wrappers(void **state)
{
	v_store v;
	uint64_t inc = 0;
	int rows = 0;

	(void)state;
	memset(&v, 0, sizeof(v));
	assert_int_equal(im_store_init(&v.base, &v2_ops), IM_OK);
	assert_int_equal(im_store_node_heartbeat(&v.base, "n1", 6),
			 IM_ENOTFOUND);
	assert_int_equal(im_store_node_register(&v.base, "n1",
						IM_NODE_CHATTER,
						"127.0.0.1:7000", 5, &inc),
			 IM_OK);
	assert_int_equal(inc, 1);
	assert_int_equal(im_store_node_register(&v.base, "n1",
						IM_NODE_CHATTER,
						"127.0.0.1:7000", 5, NULL),
			 IM_OK);
	assert_int_equal(im_store_node_heartbeat(&v.base, "n1", 9), IM_OK);
	assert_int_equal(im_store_node_list(&v.base, count_row, &rows), IM_OK);
	assert_int_equal(rows, 1);
	assert_int_equal(v.hb, 9);
	assert_int_equal(v.calls, 5);
}

static void
test_store_node_ops_check_arguments_before_calling(void **state)
{
	char long_name[IM_NODE_NAME_MAX + 2];
	char long_addr[IM_NODE_ADDR_MAX + 2];
	v_store v;

	(void)state;
	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	memset(long_addr, 'a', sizeof(long_addr) - 1);
	long_addr[sizeof(long_addr) - 1] = '\0';
	memset(&v, 0, sizeof(v));
	assert_int_equal(im_store_init(&v.base, &v2_ops), IM_OK);
	assert_int_equal(im_store_node_register(NULL, "n", IM_NODE_ROUTER,
						"a", 1, NULL),
			 IM_EINVAL);
	assert_int_equal(im_store_node_register(&v.base, NULL, IM_NODE_ROUTER,
						"a", 1, NULL),
			 IM_EINVAL);
	assert_int_equal(im_store_node_register(&v.base, "", IM_NODE_ROUTER,
						"a", 1, NULL),
			 IM_EINVAL);
	assert_int_equal(im_store_node_register(&v.base, long_name,
						IM_NODE_ROUTER, "a", 1, NULL),
			 IM_EINVAL);
	assert_int_equal(im_store_node_register(&v.base, "n", (im_node_role)0,
						"a", 1, NULL),
			 IM_EINVAL);
	assert_int_equal(im_store_node_register(&v.base, "n", (im_node_role)4,
						"a", 1, NULL),
			 IM_EINVAL);
	assert_int_equal(im_store_node_register(&v.base, "n", IM_NODE_ROUTER,
						NULL, 1, NULL),
			 IM_EINVAL);
	assert_int_equal(im_store_node_register(&v.base, "n", IM_NODE_ROUTER,
						"", 1, NULL),
			 IM_EINVAL);
	assert_int_equal(im_store_node_register(&v.base, "n", IM_NODE_ROUTER,
						long_addr, 1, NULL),
			 IM_EINVAL);
	assert_int_equal(im_store_node_register(&v.base, "n", IM_NODE_ROUTER,
						"a", UINT64_MAX, NULL),
			 IM_EINVAL);
	assert_int_equal(im_store_node_heartbeat(NULL, "n", 1), IM_EINVAL);
	assert_int_equal(im_store_node_heartbeat(&v.base, NULL, 1), IM_EINVAL);
	assert_int_equal(im_store_node_heartbeat(&v.base, "n", UINT64_MAX),
			 IM_EINVAL);
	assert_int_equal(im_store_node_list(NULL, count_row, NULL), IM_EINVAL);
	assert_int_equal(im_store_node_list(&v.base, NULL, NULL), IM_EINVAL);
	assert_non_null(strstr(im_store_errmsg(&v.base), "invalid argument"));
	assert_int_equal(v.calls, 0);
}

/* A backend compiled at version 2 ends before slot_cas_many: the wrapper
 * must not read past it and claims one slot at a time with slot_cas
 * (callers never see IM_ENOTSUP). */
static void
test_store_v2_backend_gets_slot_cas_many_one_by_one(void **state)
{
	size_t n = offsetof(struct im_store_ops, slot_cas_many);
	struct im_store_ops *t = malloc(n);
	uint32_t slots[2] = {1, 2};
	im_epoch expect[2] = {0, 0}, got[2] = {0, 0};
	v_store v;

	(void)state;
	assert_non_null(t);
	memcpy(t, &v2_ops, n);
	memset(&v, 0, sizeof(v));
	assert_int_equal(im_store_init(&v.base, t), IM_OK);
	assert_int_equal(im_store_slot_cas_many(&v.base, IM_KIND_USER, slots,
						expect, 2, "n1", got),
			 IM_OK);
	assert_int_equal(got[0], 1);
	assert_int_equal(got[1], 1);
	assert_int_equal(v.calls, 0);
	free(t);
}

/* A backend compiled at version 3 ends before the version 4 ops: the
 * wrappers fall back to the version 1 ops without reading past the table
 * (groups one at a time behind a fence check, one seg_take per key, the
 * queue paged for its last seq). */
static void
test_store_v3_backend_gets_the_batched_ops_one_by_one(void **state)
{
	size_t n = offsetof(struct im_store_ops, group_create_many);
	struct im_store_ops *t = malloc(n);
	im_fence f = {IM_KIND_GROUP, 1, 1};
	im_uid m[1] = {5};
	im_group_new g;
	im_seg_key k = {IM_SEG_USER_SEQ, 5};
	im_seg seg;
	im_seq last = 7;
	v_store v;

	(void)state;
	static const struct im_store_ops v3_ops = {
		.version = 3,
		V1_OPS,
		.node_register = v_node_register,
		.node_heartbeat = v_node_heartbeat,
		.node_list = v_node_list,
	};

	assert_non_null(t);
	memcpy(t, &v3_ops, n);
	memset(&v, 0, sizeof(v));
	memset(&g, 0, sizeof(g));
	g.group.gid = 9;
	g.members = m;
	g.nmembers = 1;
	assert_int_equal(im_store_init(&v.base, t), IM_OK);
	/* The fence says epoch 1; this store has no slot rows (epoch 0). */
	assert_int_equal(im_store_group_create_many(&v.base, &f, 1, &g, 1),
			 IM_ESTALE);
	assert_non_null(strstr(im_store_errmsg(&v.base), "stale fence"));
	assert_int_equal(im_store_seg_take_many(&v.base, &k, 1, 10, &seg),
			 IM_OK);
	assert_int_equal(seg.first, 1);
	assert_int_equal(seg.last, 10);
	assert_int_equal(im_store_uq_last(&v.base, 5, &last), IM_OK);
	assert_int_equal(last, 0);
	/* Arguments are checked first, as for every op. */
	g.group.gid = 0;
	assert_int_equal(im_store_group_create_many(&v.base, &f, 1, &g, 1),
			 IM_EINVAL);
	assert_int_equal(v.calls, 0);
	free(t);
}

/* A backend compiled at version 4 ends before group_create_dedup: the
 * wrapper answers IM_ENOTSUP without reading past the table and writes
 * nothing (no fallback: without a unique key a retry could not be made
 * safe; the Chatter then creates unkeyed). Arguments are checked first. */
static void
test_store_v4_backend_answers_enotsup_for_keyed_creation(void **state)
{
	size_t n = offsetof(struct im_store_ops, group_create_dedup);
	struct im_store_ops *t = malloc(n);
	im_fence f = {IM_KIND_GROUP, 1, 1};
	im_group_new g;
	im_group_created res = {77, true};
	uint64_t key = 5;
	v_store v;

	(void)state;
	static const struct im_store_ops v4_ops = {
		.version = 4,
		V1_OPS,
	};

	assert_non_null(t);
	memcpy(t, &v4_ops, n);
	memset(&v, 0, sizeof(v));
	memset(&g, 0, sizeof(g));
	g.group.gid = 9;
	assert_int_equal(im_store_init(&v.base, t), IM_OK);
	assert_int_equal(im_store_group_create_dedup(&v.base, &f, 1, &g, &key,
						     1, &res),
			 IM_ENOTSUP);
	assert_non_null(strstr(im_store_errmsg(&v.base), "version 4 < 5"));
	assert_int_equal(res.gid, 0);
	assert_false(res.dup);
	g.group.gid = 0;
	assert_int_equal(im_store_group_create_dedup(&v.base, &f, 1, &g, &key,
						     1, &res),
			 IM_EINVAL);
	assert_int_equal(v.calls, 0);
	free(t);
}

static void
test_store_init_refuses_a_table_from_the_future(void **state)
{
	struct im_store_ops t = v2_ops;
	v_store v;

	(void)state;
	t.version = IM_STORE_OPS_VERSION + 1;
	memset(&v, 0, sizeof(v));
	assert_int_equal(im_store_init(&v.base, &t), IM_EINVAL);
	t.version = 0;
	assert_int_equal(im_store_init(&v.base, &t), IM_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_store_v1_backend_still_opens_and_answers_enotsup_for_node_ops),
		cmocka_unit_test(
			test_store_version_gates_the_op_even_when_the_slot_is_set),
		cmocka_unit_test(
			test_store_v2_table_without_node_ops_answers_enotsup),
		cmocka_unit_test(test_store_v2_ops_are_called_through_the_wrappers),
		cmocka_unit_test(
			test_store_node_ops_check_arguments_before_calling),
		cmocka_unit_test(
			test_store_v2_backend_gets_slot_cas_many_one_by_one),
		cmocka_unit_test(
			test_store_v3_backend_gets_the_batched_ops_one_by_one),
		cmocka_unit_test(
			test_store_v4_backend_answers_enotsup_for_keyed_creation),
		cmocka_unit_test(test_store_init_refuses_a_table_from_the_future),
	};

	return cmocka_run_group_tests_name("store_v2", tests, NULL, NULL);
}
