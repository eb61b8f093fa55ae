/**
 * @file dedup.h
 * Bounded cache from (conversation, sender, client dedup id) to the seq the
 * message was given, with LRU eviction and a TTL. It is only the fast path:
 * a miss must fall back to the store (im_store_msg_find_dedup, or the
 * duplicate result of im_store_msg_append), which enforces uniqueness, so
 * dedup holds after restarts and failovers too.
 *
 * All memory is allocated at create: lookups and inserts never allocate.
 *
 * Time is passed in (now_ms) and the cache keeps the newest time it was
 * ever given, N (the maximum of every now_ms passed so far, this call's
 * included). The exact TTL rule:
 *  - an entry is stamped with N at insert (or overwrite);
 *  - it is expired once N >= stamp + ttl_ms.
 * So without clock jumps an entry inserted at now_ms = t expires when a call
 * passes now_ms >= t + ttl_ms. A clock that jumps backwards (now_ms < N)
 * does not age anything (the age counts as 0 for the jump) and an entry
 * inserted then is stamped N, not the smaller now_ms, so it never lives
 * longer than ttl_ms past the newest time seen. A forward jump ages every
 * entry by the jump; that only costs a store lookup, never a duplicate.
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

/**
 * Create a cache; all its memory is allocated here, through opts->alloc.
 * The caller owns *out (im_dedup_destroy). On error *out is NULL.
 * @retval IM_OK, IM_EINVAL (NULL, bad version, capacity 0 or > 2^28),
 *         IM_ENOMEM
 */
IM_API int im_dedup_create(im_dedup **out, const im_dedup_opts *opts);
/** Free the cache; NULL is a no-op. */
IM_API void im_dedup_destroy(im_dedup *d);

/**
 * Find a live entry and mark it most recently used (its TTL stamp is not
 * refreshed). Expired entries are removed and reported as IM_ENOTFOUND.
 * val_out may be NULL.
 * @retval IM_OK, IM_ENOTFOUND, IM_EINVAL (d NULL)
 */
IM_API int im_dedup_lookup(im_dedup *d, im_gid conv, im_uid sender,
			   uint64_t dedup_id, uint64_t now_ms,
			   im_dedup_val *val_out);

/**
 * Insert or overwrite an entry (an overwrite restamps it and makes it most
 * recently used). When full, the oldest entry is dropped if it has expired,
 * else the least recently used entry is evicted; *evicted_out (may be NULL)
 * tells whether a live entry was evicted. Never allocates.
 * @retval IM_OK, IM_EINVAL (d or val NULL; nothing changed)
 */
IM_API int im_dedup_insert(im_dedup *d, im_gid conv, im_uid sender,
			   uint64_t dedup_id, const im_dedup_val *val,
			   uint64_t now_ms, bool *evicted_out);

/** Drop expired entries, oldest first, at most max of them (bounded work
 *  per call: O(dropped)); returns how many were dropped. */
IM_API size_t im_dedup_expire(im_dedup *d, uint64_t now_ms, size_t max);

/** Drop every entry of one conversation (its slot moved away). O(count). */
IM_API size_t im_dedup_forget_conv(im_dedup *d, im_gid conv);

/** Entries held (live or not yet expired out). */
IM_API size_t im_dedup_count(const im_dedup *d);

/** Heap bytes the cache holds: fixed at create (entries and buckets are
 *  allocated for the whole capacity up front), so the bound is the
 *  capacity. Cannot fail; 0 for NULL. */
IM_API size_t im_dedup_mem(const im_dedup *d);

#ifdef __cplusplus
}
#endif

#endif
