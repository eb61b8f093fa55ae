/*
 * Every store that forwards to another store (the mux, wrap_store and the
 * fake and faulty stores built on it) forwards every op of the build. Each
 * is put over a counting store, every op is called once through its
 * im_store_* wrapper, and the op must reach the inner store's own op,
 * exactly once, and nothing else: a forwarder missing an op answers
 * IM_ENOTSUP (or sends the call to a fallback made of other ops) and fails
 * here. Kept apart from the backend suites because it needs no backend,
 * only the op list (libim/store/ops.h) that the forwarders come from.
 */
#include "fake_store.h"
#include "faulty_store.h"
#include "store/mux.h"
#include "store/ops.h"
#include "store_nops.h"
#include "wrap_store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The inner store: every op counts its calls and succeeds. */
typedef struct count_store {
	im_store base; /* first */
	unsigned long calls[STORE_OP_COUNT];
} count_store;

static int
counted(im_store *st, enum store_op op)
{
	((count_store *)st)->calls[op]++;
	return IM_OK;
}

static void
count_close(im_store *st)
{
	(void)st;
}

#define COUNT_OP(v, op, OP, params, args)                                     \
	static int count_##op(im_store *st, IM__UNPAREN params)               \
	{                                                                      \
		return counted(st, STORE_OP_##OP);                             \
	}
IM__STORE_OPS(COUNT_OP)
#undef COUNT_OP

static const struct im_store_ops count_ops = {
	.version = IM_STORE_OPS_VERSION,
	.name = "count",
	.close = count_close,
#define COUNT_SLOT(v, op, OP, params, args) .op = count_##op,
	IM__STORE_OPS(COUNT_SLOT)
#undef COUNT_SLOT
};

static void
count_init(count_store *c)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(im_store_init(&c->base, &count_ops), IM_OK);
}

static unsigned long
count_total(const count_store *c)
{
	unsigned long n = 0;
	int i;

	for (i = 0; i < STORE_OP_COUNT; i++) {
		n += c->calls[i];
	}
	return n;
}

/* Arguments every op's wrapper accepts (so the call reaches the store). */
struct args {
	im_fence gfence, ufence;
	im_msg msg;
	im_uq_item item;
	im_group group;
	im_group_new gnew;
	im_seg_key key;
	uint32_t slots[2];
	im_epoch expect[2], epochs[2], epoch;
	im_append_result res;
	im_group_created created;
	uint64_t dedup;
	im_msg_pos pos;
	im_seg segs[2];
	im_seq seq;
	uint64_t u64;
	uint32_t schema;
	bool flag;
};

static void
args_init(struct args *a)
{
	memset(a, 0, sizeof(*a));
	a->gfence = (im_fence){IM_KIND_GROUP, 1, 1};
	a->ufence = (im_fence){IM_KIND_USER, 1, 1};
	a->msg.conv = 1;
	a->msg.seq = 2;
	a->msg.prev_seq = 1;
	a->msg.sender = 1;
	a->msg.ordinal = 1;
	a->item.user = 1;
	a->item.seq = 1;
	a->group.gid = 1;
	a->gnew.group.gid = 1;
	a->dedup = 7;
	a->key = (im_seg_key){IM_SEG_GROUP_SEQ, 1};
	a->slots[0] = 1;
	a->slots[1] = 2;
}

/*
 * Call op once through its im_store_* wrapper. A new op in the list gets
 * its case here: the switch has no default, so -Wswitch (an error with
 * -Werror) names the op missing, and the sentinel below fails the test in a
 * build without it.
 */
static int
call_op(im_store *st, enum store_op op)
{
	struct args a;

	args_init(&a);
	switch (op) {
	case STORE_OP_MIGRATE:
		return im_store_migrate(st, &a.schema);
	case STORE_OP_SLOT_LOAD:
		return im_store_slot_load(st, IM_KIND_USER, nop_slot, NULL);
	case STORE_OP_SLOT_CAS:
		return im_store_slot_cas(st, IM_KIND_GROUP, 1, 0, "n1",
		                         &a.epoch);
	case STORE_OP_SEG_TAKE:
		return im_store_seg_take(st, &a.key, 10, &a.segs[0]);
	case STORE_OP_MSG_APPEND:
		return im_store_msg_append(st, &a.gfence, 1, &a.msg, 1, &a.res);
	case STORE_OP_MSG_READ:
		return im_store_msg_read(st, 1, 0, 10, 5, nop_msg, NULL);
	case STORE_OP_MSG_LAST:
		return im_store_msg_last(st, 1, IM_SEQ_MAX, &a.pos);
	case STORE_OP_MSG_FIND_DEDUP:
		return im_store_msg_find_dedup(st, 1, 1, 7, &a.msg);
	case STORE_OP_GROUP_CREATE:
		return im_store_group_create(st, &a.group);
	case STORE_OP_GROUP_LOOKUP:
		return im_store_group_lookup(st, 1, &a.group);
	case STORE_OP_MEMBER_ADD:
		return im_store_member_add(st, 1, 2, &a.flag);
	case STORE_OP_MEMBER_REMOVE:
		return im_store_member_remove(st, 1, 2, &a.flag);
	case STORE_OP_MEMBER_LIST:
		return im_store_member_list(st, 1, nop_uid, NULL);
	case STORE_OP_CONV_LOAD:
		return im_store_conv_load(st, 1, nop_conv, NULL);
	case STORE_OP_CONV_UPDATE:
		return im_store_conv_update(st, 1, 1, 1, 1, 0);
	case STORE_OP_UQ_APPEND:
		return im_store_uq_append(st, &a.ufence, 1, &a.item, 1);
	case STORE_OP_UQ_READ:
		return im_store_uq_read(st, 1, 0, 10, nop_uq, NULL);
	case STORE_OP_NODE_REGISTER:
		return im_store_node_register(st, "n1", IM_NODE_CHATTER,
		                              "127.0.0.1:1", 1, &a.u64);
	case STORE_OP_NODE_HEARTBEAT:
		return im_store_node_heartbeat(st, "n1", 1);
	case STORE_OP_NODE_LIST:
		return im_store_node_list(st, nop_node, NULL);
	case STORE_OP_SLOT_CAS_MANY:
		return im_store_slot_cas_many(st, IM_KIND_GROUP, a.slots,
		                              a.expect, 2, "n1", a.epochs);
	case STORE_OP_GROUP_CREATE_MANY:
		return im_store_group_create_many(st, &a.gfence, 1, &a.gnew, 1);
	case STORE_OP_SEG_TAKE_MANY:
		return im_store_seg_take_many(st, &a.key, 1, 10, a.segs);
	case STORE_OP_UQ_LAST:
		return im_store_uq_last(st, 1, &a.seq);
	case STORE_OP_GROUP_CREATE_DEDUP:
		return im_store_group_create_dedup(st, &a.gfence, 1, &a.gnew,
		                                   &a.dedup, 1, &a.created);
	case STORE_OP_MEMBER_ADD_FENCED:
		return im_store_member_add_fenced(st, &a.gfence, 1, 1, 2,
		                                  &a.flag);
	case STORE_OP_MEMBER_REMOVE_FENCED:
		return im_store_member_remove_fenced(st, &a.gfence, 1, 1, 2,
		                                     &a.flag);
	case STORE_OP_CONV_UPDATE_FENCED:
		return im_store_conv_update_fenced(st, &a.ufence, 1, 1, 1, 1, 1,
		                                   0);
	case STORE_OP_COUNT:
		break;
	}
	return -1000;
}

/* Each op through fwd reaches the inner store's op once, and only it. */
static void
assert_forwards_every_op(const char *what, im_store *fwd, count_store *in)
{
	int op, rc;

	for (op = 0; op < STORE_OP_COUNT; op++) {
		memset(in->calls, 0, sizeof(in->calls));
		rc = call_op(fwd, (enum store_op)op);
		if (rc != IM_OK || in->calls[op] != 1 || count_total(in) != 1) {
			fail_msg("%s does not forward %s: %s (%s); the inner "
			         "%s ran %lu times, %lu inner calls in all",
			         what,
			         store_op_name((enum store_op)op),
			         rc == -1000 ? "no call in this test"
			                     : im_strerror(rc),
			         im_store_errmsg(fwd),
			         store_op_name((enum store_op)op),
			         in->calls[op], count_total(in));
		}
	}
}

static void
test_op_list_is_in_version_order(void **state)
{
	static const uint32_t versions[] = {
#define OP_V(v, op, OP, params, args) v,
	        IM__STORE_OPS(OP_V)
#undef OP_V
	};
	size_t i;

	(void)state;
	assert_int_equal(sizeof(versions) / sizeof(versions[0]),
	                 STORE_OP_COUNT);
	assert_int_equal(versions[0], 1);
	for (i = 1; i < STORE_OP_COUNT; i++) {
		assert_true(versions[i - 1] <= versions[i]);
	}
	assert_int_equal(versions[STORE_OP_COUNT - 1], IM_STORE_OPS_VERSION);
	for (i = 0; i < STORE_OP_COUNT; i++) {
		assert_string_not_equal(store_op_name((enum store_op)i), "?");
	}
}

static void
test_the_counting_store_counts_each_op_called_directly(void **state)
{
	count_store in;

	(void)state;
	count_init(&in);
	assert_forwards_every_op("count_store", &in.base, &in);
}

static void
test_wrap_store_forwards_every_op(void **state)
{
	count_store in;
	wrap_store w;

	(void)state;
	count_init(&in);
	memset(&w, 0, sizeof(w));
	assert_int_equal(wrap_store_init(&w, &in.base, false), IM_OK);
	assert_forwards_every_op("wrap_store", &w.base, &in);
	im_store_close(&w.base);
}

static void
test_fake_store_forwards_and_counts_every_op(void **state)
{
	count_store in;
	im_store *fake = NULL;
	int op;

	(void)state;
	count_init(&in);
	assert_int_equal(fake_store_wrap(&fake, &in.base, false), IM_OK);
	assert_forwards_every_op("fake_store", fake, &in);
	for (op = 0; op < STORE_OP_COUNT; op++) {
		assert_int_equal(fake_store_calls(fake, (enum store_op)op), 1);
	}
	assert_int_equal(fake_store_total(fake), STORE_OP_COUNT);
	im_store_close(fake);
}

/* Disarmed it forwards everything; armed on one op, it fails exactly
 * that op before the inner store sees it. */
static void
test_faulty_store_forwards_every_op_and_can_fail_each(void **state)
{
	count_store in;
	im_store *faulty = NULL;
	int op;

	(void)state;
	count_init(&in);
	assert_int_equal(faulty_store_wrap(&faulty, &in.base, false), IM_OK);
	assert_forwards_every_op("faulty_store", faulty, &in);
	for (op = 0; op < STORE_OP_COUNT; op++) {
		faulty_plan plan = {
		        .ops = STORE_OP_BIT(op),
		        .nth = 1,
		        .err = IM_EUNAVAIL,
		        .when = FAULTY_BEFORE,
		};

		faulty_store_arm(faulty, &plan);
		memset(in.calls, 0, sizeof(in.calls));
		assert_int_equal(call_op(faulty, (enum store_op)op),
		                 IM_EUNAVAIL);
		assert_int_equal(count_total(&in), 0);
		assert_int_equal(faulty_store_faults(faulty), 1);
		assert_non_null(strstr(im_store_errmsg(faulty),
		                       store_op_name((enum store_op)op)));
	}
	im_store_close(faulty);
}

static void
test_store_mux_forwards_every_op_through_each_handle(void **state)
{
	count_store in;
	im__store_mux *m = NULL;
	im_store *a = NULL, *b = NULL;

	(void)state;
	count_init(&in);
	assert_int_equal(im__store_mux_create(&m, &in.base), IM_OK);
	assert_int_equal(im__store_mux_handle(m, &a), IM_OK);
	assert_int_equal(im__store_mux_handle(m, &b), IM_OK);
	assert_forwards_every_op("mux handle a", a, &in);
	assert_forwards_every_op("mux handle b", b, &in);
	assert_int_equal(im__store_mux_calls(m), 2 * STORE_OP_COUNT);
	im_store_close(a);
	im_store_close(b);
	im__store_mux_destroy(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(
	                test_op_list_is_in_version_order),
	        cmocka_unit_test(
	                test_the_counting_store_counts_each_op_called_directly),
	        cmocka_unit_test(test_wrap_store_forwards_every_op),
	        cmocka_unit_test(test_fake_store_forwards_and_counts_every_op),
	        cmocka_unit_test(
	                test_faulty_store_forwards_every_op_and_can_fail_each),
	        cmocka_unit_test(
	                test_store_mux_forwards_every_op_through_each_handle),
	};

	return cmocka_run_group_tests_name("store_forward", tests, NULL, NULL);
}
