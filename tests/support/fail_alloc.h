/*
 * An im_allocator that fails the Nth allocation (N = 1, 2, ...), so tests
 * can walk every out-of-memory path: run the operation with fail_at = 1, 2,
 * ... until it succeeds, and check that each failure left nothing behind.
 * It also counts live blocks so leaks show up as live != 0.
 */
#ifndef IM_TEST_FAIL_ALLOC_H
#define IM_TEST_FAIL_ALLOC_H

#include "im/im.h"

typedef struct fail_alloc {
	unsigned long fail_at; /* 0 = never fail */
	unsigned long calls;   /* allocations (not frees) attempted */
	long live;             /* blocks allocated and not freed */
} fail_alloc;

/* An im_allocator bound to fa. */
im_allocator fail_alloc_allocator(fail_alloc *fa);

#endif
