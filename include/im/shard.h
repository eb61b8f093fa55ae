/**
 * @file shard.h
 * Slot map: ids hash to a fixed number of slots per kind (users, groups);
 * each slot is owned by one node at an epoch. The map is a cache of the
 * store's slot table; changes go through the store's compare-and-set.
 *
 * Lookups are O(1) and never allocate. Node names are interned in a table
 * bounded by opts.max_nodes.
 *
 * Thread-safety: one thread at a time per map.
 */
#ifndef IM_SHARD_H
#define IM_SHARD_H

#include "im.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Default number of slots per kind. */
#define IM_SHARD_SLOTS_DEFAULT 1024
/** Upper bound of slots per kind. */
#define IM_SHARD_SLOTS_MAX 65536
/** Upper bound of opts.max_nodes. */
#define IM_SHARD_NODES_MAX 65536

typedef struct im_shard_map im_shard_map;

#define IM_SHARD_OPTS_VERSION 1
typedef struct im_shard_opts {
	uint32_t version;
	uint32_t nslots;    /**< slots per kind; every node must agree */
	uint32_t max_nodes; /**< bound of distinct owner names ever seen
				 (names are never forgotten) */
	im_allocator alloc;
} im_shard_opts;
#define IM_SHARD_OPTS_INIT {IM_SHARD_OPTS_VERSION, IM_SHARD_SLOTS_DEFAULT, 256, {0, 0}}

/** One slot's owner as the map knows it. owner is "" when unowned. */
typedef struct im_shard_entry {
	uint32_t slot;
	im_epoch epoch;
	const char *owner; /**< interned; valid until the map is destroyed */
} im_shard_entry;

/**
 * Slot of an id: a fixed hash, stable across versions and machines:
 * splitmix64's finalizer of id (x ^= x >> 30; x *= 0xbf58476d1ce4e5b9;
 * x ^= x >> 27; x *= 0x94d049bb133111eb; x ^= x >> 31), modulo nslots.
 * Returns 0 when nslots is 0. Never changes between releases.
 */
IM_API uint32_t im_shard_slot_of(uint64_t id, uint32_t nslots);

/**
 * Create an empty map (every slot unowned, epoch 0). opts NULL means
 * IM_SHARD_OPTS_INIT. Everything is allocated here; no later call allocates.
 * @retval IM_OK, IM_EINVAL (nslots 0 or > IM_SHARD_SLOTS_MAX, max_nodes 0
 *         or > IM_SHARD_NODES_MAX, bad version), IM_ENOMEM
 */
IM_API int im_shard_create(im_shard_map **out, const im_shard_opts *opts);
/** Free the map and its interned names; NULL is a no-op. */
IM_API void im_shard_destroy(im_shard_map *map);

/** Number of slots per kind. */
IM_API uint32_t im_shard_nslots(const im_shard_map *map);

/** The owner of the slot of id. Cannot fail; unowned slots say "". */
IM_API im_shard_entry im_shard_get(const im_shard_map *map, im_kind kind,
				   uint64_t id);

/** The owner of a slot by number. @retval IM_OK, IM_EINVAL (slot range) */
IM_API int im_shard_get_slot(const im_shard_map *map, im_kind kind,
			     uint32_t slot, im_shard_entry *out);

/**
 * Apply one slot's state learnt elsewhere (a store row, an RPC). Older
 * epochs than the map's are ignored (returns IM_OK, nothing changes).
 * @retval IM_OK, IM_EINVAL, IM_EFULL (too many distinct owners)
 */
IM_API int im_shard_apply(im_shard_map *map, im_kind kind, uint32_t slot,
			  im_epoch epoch, const char *owner);

/**
 * Reload every slot of both kinds from the store. All or nothing: on error
 * the map is unchanged. Epochs only move forward (a slot the map knows at a
 * newer epoch than the store keeps the map's value).
 * @retval IM_OK, IM_EINVAL (NULL args, or a stored slot >= nslots: the
 *         cluster uses another nslots), IM_EFULL (too many owners),
 *         store errors
 */
IM_API int im_shard_load(im_shard_map *map, im_store *st);

/**
 * Take a slot for `owner` with the store's compare-and-set against the
 * epoch the map holds, then apply the result. On IM_ECONFLICT the map is
 * updated with what the store has (reload the slot) so a retry can work,
 * and *epoch_out is the store's epoch. owner "" releases the slot.
 * epoch_out may be NULL.
 * @retval IM_OK, IM_ECONFLICT, IM_EINVAL, IM_EFULL (owner would exceed
 *         max_nodes; checked before the store is touched), store errors
 *         (of the CAS, or of the re-read after a conflict)
 */
IM_API int im_shard_claim(im_shard_map *map, im_store *st, im_kind kind,
			  uint32_t slot, const char *owner,
			  im_epoch *epoch_out);

/** Number of slots of kind owned by owner ("" counts unowned slots);
 *  0 for bad arguments. */
IM_API uint32_t im_shard_count(const im_shard_map *map, im_kind kind,
			       const char *owner);

/** One planned move: slot goes from its current owner to `to`. */
typedef struct im_shard_move {
	uint32_t slot;
	im_epoch epoch; /**< epoch the move's CAS must expect */
	const char *to; /**< one of the nodes passed to im_shard_plan */
} im_shard_move;

/**
 * Plan a fair assignment of all slots of kind over `nodes` (the live nodes):
 * slots of owners not in `nodes` (dead or unowned) are handed out first,
 * then slots move from the most to the least loaded node until no node
 * exceeds ceil(nslots/n) and none has less than floor(nslots/n). Moves only
 * as many slots as fairness needs, so adding an (N+1)th node moves about
 * nslots/(N+1) and removing one moves only its slots.
 * Deterministic for the same map and set of nodes, whatever their order.
 * Uses scratch space inside the map (no allocation): like every call, one
 * thread at a time per map.
 * @param moves_out caller memory for up to max_moves moves
 * @param nodes distinct non-empty names, n <= max_nodes
 * @retval IM_OK (*nmoves_out set), IM_EINVAL, IM_EFULL (max_moves too small;
 *         nothing written beyond max_moves, *nmoves_out = moves needed)
 */
IM_API int im_shard_plan(const im_shard_map *map, im_kind kind,
			 const char *const *nodes, size_t n,
			 im_shard_move *moves_out, size_t max_moves,
			 size_t *nmoves_out);

#ifdef __cplusplus
}
#endif

#endif
