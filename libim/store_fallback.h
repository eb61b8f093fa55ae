/*
 * The one-at-a-time fallbacks of the batched store ops (not installed).
 * libim/store.c calls them from the im_store_* wrappers when the backend
 * lacks the batched op (compiled against an older table, or the op NULL),
 * so no caller ever sees IM_ENOTSUP for these ops or carries a fallback of
 * its own. Arguments are already checked by the wrapper. Each is built
 * from the version 1 ops only, through their wrappers.
 */
#ifndef IM_STORE_FALLBACK_H
#define IM_STORE_FALLBACK_H

#include "im/sys/store.h"

/*
 * slot_cas_many as one im_store_slot_cas per slot, in order. Stops at the
 * first failure. On IM_ECONFLICT epochs_out holds every slot's current
 * epoch (read back with slot_load), as the batched op answers, but NOT all
 * or nothing: the slots before the conflicting one stay taken (at the
 * epochs now in epochs_out, so a retry with them as expect succeeds).
 */
int im__store_slot_cas_one_by_one(im_store *st, im_kind kind,
				  const uint32_t *slots,
				  const im_epoch *expect, size_t n,
				  const char *owner, im_epoch *epochs_out);

/*
 * group_create_many as im_store_group_create plus im_store_member_add per
 * member, one group after the other. The fences are checked once, before
 * anything is written (IM_ESTALE, nothing stored), not inside the writes:
 * a slot lost meanwhile is not seen. Idempotent as the batched op: a gid
 * that exists with the same creator and created_ms counts as created by an
 * earlier try (its missing members are added).
 *
 * rcs_out NULL: stops at the first group that fails and returns its error
 * (the groups before it are stored; sending the batch again is safe).
 * rcs_out non-NULL: every group is tried, rcs_out[i] is group i's outcome
 * and the first error (or IM_OK) is returned.
 */
int im__store_group_create_one_by_one(im_store *st, const im_fence *fences,
				      size_t nfences,
				      const im_group_new *groups, size_t n,
				      int *rcs_out);

/*
 * seg_take_many as one im_store_seg_take per key, in order; stops at the
 * first failure. Not all or nothing: segments taken before a failure are
 * lost (never reused), as after IM_EUNAVAIL of the batched op.
 */
int im__store_seg_take_one_by_one(im_store *st, const im_seg_key *keys,
				  size_t n, uint32_t step, im_seg *segs_out);

/*
 * uq_last by paging the queue with im_store_uq_read (pages of
 * IM_STORE_READ_LIMIT_MAX; a page that is not full was the last one).
 * Bounded: past IM__UQ_LAST_SCAN_PAGES pages it stops and answers the
 * largest seq read so far (a login then reports an older end of queue;
 * events above it still arrive, with their own seqs).
 */
#define IM__UQ_LAST_SCAN_PAGES 1000
int im__store_uq_last_scan(im_store *st, im_uid user, im_seq *last_out);

/*
 * IM_ESTALE (with the detail set) when a fence's slot is not at the
 * fence's epoch by im_store_slot_load, or the fence's epoch is 0; IM_OK
 * when all hold. The fenced membership and read-pointer ops of a backend
 * without them call this before the version 1 op: a check before the
 * write, not inside it.
 */
int im__store_fences_hold(im_store *st, const im_fence *fences,
			  size_t nfences);

#endif
