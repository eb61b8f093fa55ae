/*
 * Callbacks that ignore their row, one per streaming op's callback type:
 * tests that only need a store call to be accepted (the wrappers refuse a
 * NULL callback) pass these. Header-only, as each test includes it alone.
 */
#ifndef IM_TEST_STORE_NOPS_H
#define IM_TEST_STORE_NOPS_H

#include "im/store.h"

static inline int
nop_msg(const im_msg *m, void *p)
{
	return 0;
}

static inline int
nop_uid(im_uid u, void *p)
{
	return 0;
}

static inline int
nop_conv(const im_conv_row *r, void *p)
{
	return 0;
}

static inline int
nop_uq(const im_uq_item *it, void *p)
{
	return 0;
}

static inline int
nop_slot(const im_slot_row *r, void *p)
{
	return 0;
}

static inline int
nop_node(const im_node_row *r, void *p)
{
	return 0;
}

#endif
