/**
 * @file convlist.h
 * One user's conversation list, held by the user's Connector: per group the
 * last message (seq, ordinal, sender, time, preview), the read pointer
 * (seq, ordinal), the unread count and flags.
 *
 * Unread counts are exact although seqs have gaps: unread = last ordinal -
 * read ordinal, ordinals being contiguous per group (see store.h).
 * Read pointers never move backwards. The list is a cache: it is built from
 * the store (im_convlist_load) and can always be rebuilt from it.
 *
 * Bounded: at most opts.max_convs conversations; adding one more fails with
 * IM_EFULL and changes nothing. Memory grows by doubling up to max_convs
 * (a user with three conversations does not pay for 4096), so adding a
 * conversation may allocate and fail with IM_ENOMEM, changing nothing;
 * lookups, reads, flags, removal and deliveries to known conversations
 * never allocate.
 *
 * Thread-safety: one thread at a time per list.
 */
#ifndef IM_CONVLIST_H
#define IM_CONVLIST_H

#include "im.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct im_convlist im_convlist;

#define IM_CONVLIST_OPTS_VERSION 1
typedef struct im_convlist_opts {
	uint32_t version;
	uint32_t max_convs;
	im_allocator alloc;
} im_convlist_opts;
#define IM_CONVLIST_OPTS_INIT {IM_CONVLIST_OPTS_VERSION, 4096, {0, 0}}

/** A conversation as the list holds it (a copy: owns its preview). */
typedef struct im_conv_entry {
	im_gid conv;
	im_msg_pos last;
	im_msg_pos read;
	uint64_t unread;
	im_uid last_sender;
	uint64_t last_time_ms;
	uint32_t flags;
	uint32_t preview_len;
	uint8_t preview[IM_PREVIEW_MAX];
} im_conv_entry;

/**
 * Create an empty list (it holds no entry memory until the first one).
 * The caller owns *out (im_convlist_destroy); on error *out is NULL.
 * @retval IM_OK, IM_EINVAL (NULL, bad version, max_convs 0 or > 2^24),
 *         IM_ENOMEM
 */
IM_API int im_convlist_create(im_convlist **out, const im_convlist_opts *opts);
/** Free the list; NULL is a no-op. */
IM_API void im_convlist_destroy(im_convlist *cl);

/**
 * Replace the list with the user's conversations from the store. Rows go
 * through the same checks as im_convlist_apply_row. The new list is built
 * aside and swapped in only when the whole read succeeded.
 * @retval IM_OK, IM_EFULL (more than max_convs), IM_EINVAL (bad row or
 *         argument), IM_ENOMEM, store errors; on error the list is unchanged
 */
IM_API int im_convlist_load(im_convlist *cl, im_store *st, im_uid user);

/**
 * Add or replace one conversation from a store row (the preview is copied).
 * A read pointer at or past the last message is clamped to it.
 * @retval IM_OK, IM_EFULL, IM_ENOMEM, IM_EINVAL (conv 0, preview longer
 *         than IM_PREVIEW_MAX, last seq and ordinal not both 0 or both set)
 */
IM_API int im_convlist_apply_row(im_convlist *cl, const im_conv_row *row);

/**
 * Account a delivered message. Older or equal seqs than the known last are
 * ignored (duplicates, IM_OK). A conversation not in the list is added with
 * its read pointer just before this message, {prev_seq, ordinal - 1} (the
 * user joined). When `own` (the user sent it), the read pointer moves to it
 * too. The preview is the body's first IM_PREVIEW_MAX bytes (copied).
 * @retval IM_OK, IM_EFULL, IM_ENOMEM (new conversation only),
 *         IM_EINVAL (conv, seq or ordinal 0, prev_seq >= seq, or a newer
 *         seq whose ordinal is not above the last one); nothing changed
 *         on error
 */
IM_API int im_convlist_deliver(im_convlist *cl, const im_msg *msg, bool own);

/**
 * Move the read pointer forward to (seq, ordinal); never backwards and never
 * past the last message. A seq at or below the read pointer is ignored
 * (IM_OK, not moved). A seq at or past the last message is clamped: the
 * pointer moves to the last message and the ordinal passed is ignored.
 * *moved_out (may be NULL) tells whether it moved.
 * @retval IM_OK, IM_ENOTFOUND (not in the list), IM_EINVAL (NULL list,
 *         conv 0, or a seq strictly between read and last whose ordinal is
 *         not strictly between theirs; nothing changed)
 */
IM_API int im_convlist_read(im_convlist *cl, im_gid conv, im_seq seq,
			    uint64_t ordinal, bool *moved_out);

/** Set flags (IM_CONV_MUTED, IM_CONV_PINNED; other bits are kept as
 *  given). @retval IM_OK, IM_ENOTFOUND, IM_EINVAL (NULL list) */
IM_API int im_convlist_set_flags(im_convlist *cl, im_gid conv, uint32_t flags);

/** Remove a conversation (the user left). @retval IM_OK, IM_ENOTFOUND,
 *  IM_EINVAL (NULL list) */
IM_API int im_convlist_remove(im_convlist *cl, im_gid conv);

/** Copy one conversation out; out may be NULL (a membership test).
 *  @retval IM_OK, IM_ENOTFOUND, IM_EINVAL (cl NULL) */
IM_API int im_convlist_lookup(const im_convlist *cl, im_gid conv,
			      im_conv_entry *out);

/** Number of conversations. */
IM_API size_t im_convlist_count(const im_convlist *cl);
/** Heap bytes the list holds (the list itself, its entries, live or
 *  reserved, and its index). Cannot fail; 0 for NULL. */
IM_API size_t im_convlist_mem(const im_convlist *cl);

/** Sum of unread over conversations that are not muted (kept up to date
 *  on every change: O(1)). */
IM_API uint64_t im_convlist_unread_total(const im_convlist *cl);

/**
 * Copy up to max entries, pinned first, then by last activity (newest
 * first), ties by conv id. *n_out is the number copied. Uses out as its
 * only scratch memory: O(count log max), never allocates.
 */
IM_API void im_convlist_list(const im_convlist *cl, im_conv_entry *out,
			     size_t max, size_t *n_out);

#ifdef __cplusplus
}
#endif

#endif
