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
 * IM_EFULL and changes nothing.
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

/** @retval IM_OK, IM_EINVAL, IM_ENOMEM */
IM_API int im_convlist_create(im_convlist **out, const im_convlist_opts *opts);
IM_API void im_convlist_destroy(im_convlist *cl);

/**
 * Replace the list with the user's conversations from the store.
 * @retval IM_OK, IM_EFULL (more than max_convs), store errors; on error the
 *         list is unchanged
 */
IM_API int im_convlist_load(im_convlist *cl, im_store *st, im_uid user);

/** Add or replace one conversation from a store row. @retval IM_OK, IM_EFULL */
IM_API int im_convlist_apply_row(im_convlist *cl, const im_conv_row *row);

/**
 * Account a delivered message. Older or equal seqs than the known last are
 * ignored (duplicates). A conversation not in the list is added with its
 * read pointer just before this message (the user joined). When `own` (the
 * user sent it), the read pointer moves to it too.
 * @retval IM_OK, IM_EFULL, IM_EINVAL
 */
IM_API int im_convlist_deliver(im_convlist *cl, const im_msg *msg, bool own);

/**
 * Move the read pointer forward to (seq, ordinal); never backwards and never
 * past the last message. *moved_out (may be NULL) tells whether it moved.
 * @retval IM_OK, IM_ENOTFOUND (not in the list), IM_EINVAL
 */
IM_API int im_convlist_read(im_convlist *cl, im_gid conv, im_seq seq,
			    uint64_t ordinal, bool *moved_out);

/** Set flags (IM_CONV_MUTED, IM_CONV_PINNED). @retval IM_OK, IM_ENOTFOUND */
IM_API int im_convlist_set_flags(im_convlist *cl, im_gid conv, uint32_t flags);

/** Remove a conversation (the user left). @retval IM_OK, IM_ENOTFOUND */
IM_API int im_convlist_remove(im_convlist *cl, im_gid conv);

/** Copy one conversation out. @retval IM_OK, IM_ENOTFOUND */
IM_API int im_convlist_lookup(const im_convlist *cl, im_gid conv,
			      im_conv_entry *out);

/** Number of conversations. */
IM_API size_t im_convlist_count(const im_convlist *cl);

/** Sum of unread over conversations that are not muted. */
IM_API uint64_t im_convlist_unread_total(const im_convlist *cl);

/**
 * Copy up to max entries, pinned first, then by last activity (newest
 * first), ties by conv id. *n_out is the number copied.
 */
IM_API void im_convlist_list(const im_convlist *cl, im_conv_entry *out,
			     size_t max, size_t *n_out);

#ifdef __cplusplus
}
#endif

#endif
