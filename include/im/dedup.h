/**
 * @file dedup.h
 * Bounded cache from (conversation, sender, client dedup id) to the seq the
 * message was given, with LRU eviction and a TTL. It is only the fast path:
 * a miss must fall back to the store (im_store_msg_find_dedup, or the
 * duplicate result of im_store_msg_append), which enforces uniqueness, so
 * dedup holds after restarts and failovers too.
 *
 * All memory is allocated at create: lookups and inserts never allocate.
 * Time is passed in (now_ms); a clock that jumps backwards never makes an
 * entry live longer than ttl_ms past the newest time seen at insert.
 *
 * Thread-safety: one thread at a time per cache.
 */
#ifndef IM_DEDUP_H
#define IM_DEDUP_H

#include "im.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct im_dedup im_dedup;

#define IM_DEDUP_OPTS_VERSION 1
typedef struct im_dedup_opts {
	uint32_t version;
	uint32_t capacity; /**< entries kept; the least recently used goes */
	uint64_t ttl_ms;   /**< entries older than this are misses; 0 = none */
	uint64_t seed;     /**< hash seed (keep clients from forcing collisions) */
	im_allocator alloc;
} im_dedup_opts;
#define IM_DEDUP_OPTS_INIT {IM_DEDUP_OPTS_VERSION, 65536, 600000, 0, {0, 0}}

/** The value remembered for a dedup key. */
typedef struct im_dedup_val {
	im_seq seq;
	uint64_t time_ms; /**< the original message's server time */
} im_dedup_val;

/** @retval IM_OK, IM_EINVAL (capacity 0 or > 2^28), IM_ENOMEM */
IM_API int im_dedup_create(im_dedup **out, const im_dedup_opts *opts);
IM_API void im_dedup_destroy(im_dedup *d);

/**
 * Find a live entry and mark it most recently used. Expired entries are
 * removed and reported as IM_ENOTFOUND.
 * @retval IM_OK, IM_ENOTFOUND
 */
IM_API int im_dedup_lookup(im_dedup *d, im_gid conv, im_uid sender,
			   uint64_t dedup_id, uint64_t now_ms,
			   im_dedup_val *val_out);

/**
 * Insert or overwrite an entry; when full, the least recently used entry
 * is evicted (*evicted_out, may be NULL, tells whether one was).
 * @retval IM_OK
 */
IM_API int im_dedup_insert(im_dedup *d, im_gid conv, im_uid sender,
			   uint64_t dedup_id, const im_dedup_val *val,
			   uint64_t now_ms, bool *evicted_out);

/** Drop expired entries, at most max of them (bounded work per call);
 *  returns how many were dropped. */
IM_API size_t im_dedup_expire(im_dedup *d, uint64_t now_ms, size_t max);

/** Drop every entry of one conversation (its slot moved away). O(count). */
IM_API size_t im_dedup_forget_conv(im_dedup *d, im_gid conv);

/** Entries held (live or not yet expired out). */
IM_API size_t im_dedup_count(const im_dedup *d);

#ifdef __cplusplus
}
#endif

#endif
