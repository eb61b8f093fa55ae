/*
 * A store that forwards every op to another store, with a hook before and
 * after each call. fake_store (call counting) and faulty_store (fault
 * injection) are built on it, so both work over any backend. Its ops, its
 * enum and its forwarders come from libim's op list, so it forwards every
 * op of the build (tests/unit/test_store_forward.c proves it).
 */
#ifndef IM_TEST_WRAP_STORE_H
#define IM_TEST_WRAP_STORE_H

#include "im/sys/store.h"
#include "store/ops.h"

/* One per op of the list (libim/store/ops.h), in struct order. */
enum store_op {
#define STORE_OP_ENUM(v, op, OP, params, args) STORE_OP_##OP,
	IM__STORE_OPS(STORE_OP_ENUM)
#undef STORE_OP_ENUM
	STORE_OP_COUNT
};

#define STORE_OP_BIT(op) (1u << (op))
/* Masks of ops are uint32_t (faulty_plan.ops). */
_Static_assert(STORE_OP_COUNT <= 32, "more store ops than mask bits");

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
