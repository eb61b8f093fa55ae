/*
 * The Chatter role: owns groups (by slot), keeps hot group state (members,
 * seq segment, last seq/ordinal, dedup cache), commits the sends of one
 * loop turn in one fenced store transaction (group commit), then answers
 * the senders, then fans out one batch per destination Connector.
 */
#ifndef IM_ROLE_CHATTER_H
#define IM_ROLE_CHATTER_H

#include <ev.h>

#include "im/shard.h"
#include "role.h"

typedef struct chatter chatter;

typedef struct chatter_opts {
	uint32_t max_groups;  /* hot groups kept; idle ones are evicted */
	uint32_t max_members; /* members of one group held in memory */
	uint32_t max_batch;   /* sends committed per transaction; their
	                       * bodies wait in one arena of max_batch x
	                       * 4096 bytes (address space; only what a
	                       * batch fills is touched) */
	uint32_t seq_step;    /* ids per group seq segment; keep it well
	                       * above max_batch: at most one segment is
	                       * prefetched per commit */
	uint32_t gid_step;    /* ids per group-id segment */
	uint32_t dedup_capacity;
	uint64_t dedup_ttl_ms;
	uint64_t seed; /* dedup hash seed */
	/* Hot group state unused this long is dropped by a periodic sweep
	 * (bounded work per sweep); the next use reloads it from the store
	 * with a fresh seq segment. 0: kept until evicted by max_groups. */
	uint64_t group_idle_ms;
} chatter_opts;

#define CHATTER_OPTS_INIT                                                      \
	{                                                                      \
		65536, 100000, 1024, 10000, 1000, 65536, 600000, 0, 60000      \
	}

/*
 * Create a Chatter on loop over st. It writes only to group slots that map
 * says `node` owns, fenced with the map's epochs. The router gets the
 * replies, fan-outs and user events. Borrowed: loop, st, map, router, node
 * (must outlive the chatter).
 */
int chatter_create(chatter **out, struct ev_loop *loop, im_store *st,
                   im_shard_map *map, const char *node, role_router *router,
                   const chatter_opts *opts);

/* Requests from Connectors (via the router). Sends and CreateGroups wait
 * for the loop turn's group commit (all creations of a turn in one fenced
 * transaction, the sends in another); membership ops run at once (after
 * committing what is pending, to keep their order). */
void chatter_submit(chatter *c, const role_op *ops, size_t n);

/* Commit what is pending now (shutdown, tests). */
void chatter_flush(chatter *c);

/* Forget every hot group of a slot (it moved away or was fenced). */
void chatter_drop_slot(chatter *c, uint32_t slot);

/* Forget every hot group (the node came back as a new incarnation). */
void chatter_drop_all(chatter *c);

/*
 * Drop hot groups last used more than group_idle_ms before now_ms (wall
 * clock ms, role_now_ms()), visiting at most max_steps hash buckets and
 * groups from where the last call stopped: the sweep timer calls it every
 * group_idle_ms / 8 (100 ms to 1 s) with a bound of 4096, so a sweep never
 * stalls the loop and the whole table is covered in a few seconds. Dropping
 * is safe at any time outside a commit: the state is a cache of the store.
 * Returns the number of groups dropped (0 when group_idle_ms is 0).
 */
uint32_t chatter_expire_idle(chatter *c, uint64_t now_ms, uint32_t max_steps);

/* Counters for logs and tests. */
typedef struct chatter_stats {
	uint64_t commits; /* store transactions */
	uint64_t msgs;    /* messages stored */
	uint64_t dups;    /* sends answered as duplicates */
	uint64_t stale;   /* commits refused by a fence */
	uint64_t refills; /* seq segments taken (each its own transaction) */
	uint64_t refills_inline; /* of which while building a batch (dry) */
	uint32_t groups;  /* hot groups now */
	uint64_t expired; /* hot groups dropped as idle */
	uint64_t groups_created;
	uint64_t create_commits; /* store transactions creating groups */
} chatter_stats;
void chatter_get_stats(const chatter *c, chatter_stats *out);

void chatter_destroy(chatter *c);

#endif
