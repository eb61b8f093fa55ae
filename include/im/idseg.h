/**
 * @file idseg.h
 * Leaf-style segment ID allocator for one key (a group's seqs, a user
 * queue's seqs, group ids). Ids come from memory; when `refill_at` of the
 * current segment is used, im_idseg_wants_refill() turns true and the
 * server fetches the next segment ahead of time (double buffer), so in
 * steady state no caller waits on the store.
 *
 * The core never blocks: the caller decides when to refill. A server calls
 * im_idseg_refill() from its loop (or a worker) when wants_refill is true;
 * im_idseg_next() returns IM_EAGAIN only if both buffers ran dry.
 *
 * Ids are unique and strictly increasing per key, also across restarts and
 * owners: every segment comes from the store's seg_take, which never hands
 * out a range twice. A new owner calls im_idseg_refill() before its first
 * id, so it never reuses an id of the old owner.
 *
 * Thread-safety: one thread at a time per allocator.
 */
#ifndef IM_IDSEG_H
#define IM_IDSEG_H

#include "im.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IM_IDSEG_OPTS_VERSION 1
typedef struct im_idseg_opts {
	uint32_t version;
	uint32_t step;           /**< ids per segment, >= 1 */
	uint32_t refill_percent; /**< ask for the next segment when this
				      share of the current one is used, 1..100 */
} im_idseg_opts;
#define IM_IDSEG_OPTS_INIT {IM_IDSEG_OPTS_VERSION, 1000, 20}

/** Caller-memory allocator state (init/finish, embeddable). */
typedef struct im_idseg {
	im_seg_key key;
	uint32_t step;
	uint32_t refill_percent;
	im_seg cur;      /**< ids cur.first..cur.last; empty when first > last */
	uint64_t next;   /**< next id to hand out from cur */
	im_seg spare;    /**< prefetched segment; empty when first > last */
	uint64_t last_id;/**< last id handed out, 0 if none */
} im_idseg;

/**
 * Start an allocator with both buffers empty: the first im_idseg_next()
 * returns IM_EAGAIN until a refill or feed. opts NULL means
 * IM_IDSEG_OPTS_INIT. Nothing is allocated.
 * @retval IM_OK, IM_EINVAL (NULL s or key, bad key space or version,
 *         step 0, refill_percent out of 1..100)
 */
IM_API int im_idseg_init(im_idseg *s, const im_seg_key *key,
			 const im_idseg_opts *opts);
/** Forget both buffers (as im_idseg_reset); nothing to free. NULL is a
 *  no-op. */
IM_API void im_idseg_finish(im_idseg *s);

/**
 * Hand out the next id: larger than every id this allocator handed out.
 * @retval IM_OK, IM_EAGAIN (no id in memory: refill first), IM_EINVAL
 */
IM_API int im_idseg_next(im_idseg *s, uint64_t *id_out);

/** True when the spare buffer is empty and at least refill_percent of the
 *  current one is used (or it is empty). With refill_percent 100 it is true
 *  only once the current buffer is empty. false for NULL. */
IM_API bool im_idseg_wants_refill(const im_idseg *s);

/** Ids available in memory without a refill. */
IM_API uint64_t im_idseg_available(const im_idseg *s);

/**
 * Take a segment from the store into the spare buffer (or the current one
 * when it is empty). Ids of the segment not above the ids this allocator
 * knows (handed out or held) are discarded; that only happens with a store
 * that went backwards.
 * @retval IM_OK
 * @retval IM_EFULL  both buffers full; the store was not called
 * @retval IM_ERR    the whole segment was at or below known ids (discarded;
 *                   the store's counter moved, so a retry may succeed)
 * @retval IM_EINVAL, store errors (nothing changed)
 */
IM_API int im_idseg_refill(im_idseg *s, im_store *st);

/**
 * Give a segment fetched elsewhere (e.g. by a worker thread or an RPC)
 * instead of calling im_idseg_refill().
 * @retval IM_OK, IM_EINVAL (empty segment, first 0, last IM_SEQ_MAX, or not
 *         entirely above the ids known),
 *         IM_EFULL (both buffers full; nothing changed)
 */
IM_API int im_idseg_feed(im_idseg *s, const im_seg *seg);

/** Forget both buffers (e.g. when the slot was lost): the next id will
 *  need a fresh segment. The last id handed out is kept, so later ids
 *  still grow. NULL is a no-op. */
IM_API void im_idseg_reset(im_idseg *s);

#ifdef __cplusplus
}
#endif

#endif
