/*
 * A store that forwards every op to another store, with a hook before and
 * after each call. fake_store (call counting) and faulty_store (fault
 * injection) are built on it, so both work over any backend.
 */
#ifndef IM_TEST_WRAP_STORE_H
#define IM_TEST_WRAP_STORE_H

#include "im/sys/store.h"

enum store_op {
	STORE_OP_MIGRATE,
	STORE_OP_SLOT_LOAD,
	STORE_OP_SLOT_CAS,
	STORE_OP_SEG_TAKE,
	STORE_OP_MSG_APPEND,
	STORE_OP_MSG_READ,
	STORE_OP_MSG_LAST,
	STORE_OP_MSG_FIND_DEDUP,
	STORE_OP_GROUP_CREATE,
	STORE_OP_GROUP_LOOKUP,
	STORE_OP_MEMBER_ADD,
	STORE_OP_MEMBER_REMOVE,
	STORE_OP_MEMBER_LIST,
	STORE_OP_CONV_LOAD,
	STORE_OP_CONV_UPDATE,
	STORE_OP_UQ_APPEND,
	STORE_OP_UQ_READ,
	/* version 2 */
	STORE_OP_NODE_REGISTER,
	STORE_OP_NODE_HEARTBEAT,
	STORE_OP_NODE_LIST,
	/* version 4 */
	STORE_OP_GROUP_CREATE_MANY,
	STORE_OP_SEG_TAKE_MANY,
	STORE_OP_UQ_LAST,
	STORE_OP_COUNT
};

#define STORE_OP_BIT(op) (1u << (op))

const char *store_op_name(enum store_op op);

typedef struct wrap_store wrap_store;
struct wrap_store {
	im_store base;           /* first, as in every backend */
	struct im_store_ops ops; /* a copy named after the inner store */
	im_store *inner;
	bool own_inner; /* close inner on close */
	/* Non-zero: return it without calling inner. May be NULL. */
	int (*pre)(wrap_store *w, enum store_op op);
	/* Sees the inner result and returns the one the caller gets. */
	int (*post)(wrap_store *w, enum store_op op, int rc);
	/* Frees the containing object; called last by close. */
	void (*destroy)(wrap_store *w);
};

/* Bind w (hooks already set) over inner. */
int wrap_store_init(wrap_store *w, im_store *inner, bool own_inner);

#endif
