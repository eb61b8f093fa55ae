/*
 * A store that fails chosen calls of another store, as SQLite's test_vfs.c
 * injects faults into a real VFS: the Nth matching call fails (transient),
 * or every matching call from the Nth on (persistent).
 *
 * A fault BEFORE the call means the store never saw it (nothing happened);
 * a fault AFTER it means the call ran and committed but the caller hears
 * an error: the "connection lost at commit" case behind IM_EUNAVAIL, which
 * a retry with the same dedup keys must turn into exactly-once.
 */
#ifndef IM_TEST_FAULTY_STORE_H
#define IM_TEST_FAULTY_STORE_H

#include "wrap_store.h"

typedef enum faulty_when {
	FAULTY_BEFORE = 0,
	FAULTY_AFTER = 1,
} faulty_when;

typedef struct faulty_plan {
	uint32_t ops;      /* STORE_OP_BIT() mask of ops counted; 0 = all */
	unsigned long nth; /* 1-based matching call that fails; 0 = off */
	bool persistent;   /* also fail every matching call after nth */
	int err;           /* what the failing call returns (negative) */
	faulty_when when;
} faulty_plan;

/* @retval IM_OK, IM_EINVAL, IM_ENOMEM */
int faulty_store_wrap(im_store **out, im_store *inner, bool own_inner);

/* Replace the plan and restart the call count; a NULL plan disarms. */
void faulty_store_arm(im_store *faulty, const faulty_plan *plan);

/* Faults injected since the last arm. */
unsigned long faulty_store_faults(const im_store *faulty);

#endif
