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
} chatter_opts;

#define CHATTER_OPTS_INIT                                                      \
	{                                                                      \
		65536, 100000, 1024, 10000, 1000, 65536, 600000, 0             \
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

/* Counters for logs and tests. */
typedef struct chatter_stats {
	uint64_t commits; /* store transactions */
	uint64_t msgs;    /* messages stored */
	uint64_t dups;    /* sends answered as duplicates */
	uint64_t stale;   /* commits refused by a fence */
	uint64_t refills; /* seq segments taken (each its own transaction) */
	uint64_t refills_inline; /* of which while building a batch (dry) */
	uint32_t groups;  /* hot groups now */
	uint64_t groups_created;
	uint64_t create_commits; /* store transactions creating groups */
} chatter_stats;
void chatter_get_stats(const chatter *c, chatter_stats *out);

void chatter_destroy(chatter *c);

#endif
