/*
 * The Chatter role: owns groups (by slot), keeps hot group state (members,
 * seq segment, last seq/ordinal, dedup cache), commits the sends of one
 * loop turn in one fenced store transaction (group commit), then answers
 * the senders, then fans out one batch per destination Connector.
 *
 * With commit_thread (and a commit_store), the transaction runs on a
 * thread of the Chatter's own: the loop gathers the next batch and fans
 * out the previous one while a batch is written. At most one batch is in
 * flight; acks still only ever follow the commit of their batch.
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
	/* Commit on a thread of its own (default true). Needs commit_store;
	 * without one the Chatter commits on the loop thread. */
	bool commit_thread;
	/*
	 * The commit thread's handle on the store (not a tuning key): it and
	 * st must be safe to use from two threads at once, e.g. two handles
	 * of one store mux (store/mux.h) through which every other user of
	 * the store in the process goes as well. Borrowed; must outlive the
	 * Chatter. NULL: commit on the loop thread.
	 */
	im_store *commit_store;
} chatter_opts;

#define CHATTER_OPTS_INIT                                                      \
	{                                                                      \
		65536, 100000, 1024, 10000, 1000, 65536, 600000, 0, 60000,     \
		        true, NULL                                             \
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

/*
 * Requests from Connectors (via the router). Sends and CreateGroups wait
 * for the loop turn's group commit (all creations of a turn in one fenced
 * transaction, the sends in another); membership ops run at once (after
 * committing what is pending, to keep their order). With the commit
 * thread, a send that finds the gathering batch full (max_batch sends or
 * their bodies) blocks the loop until the batch in flight is committed;
 * the full batch then goes in flight and gathering goes on: the loop
 * never holds more than two batches. Creations are committed on the loop
 * whenever the thread is idle (before the next batch is handed over).
 */
void chatter_submit(chatter *c, const role_op *ops, size_t n);

/* Commit what is pending now, and wait for the commit in flight, with
 * their acks and fan-outs sent (shutdown, slot handover, tests). */
void chatter_flush(chatter *c);

/* Forget every hot group of a slot (it moved away or was fenced). A
 * commit in flight is waited for and answered first (not what is still
 * gathering: that is committed later, fenced). */
void chatter_drop_slot(chatter *c, uint32_t slot);

/* Forget every hot group (the node came back as a new incarnation);
 * waits for a commit in flight as chatter_drop_slot. */
void chatter_drop_all(chatter *c);

/*
 * Drop hot groups last used more than group_idle_ms before now_ms (wall
 * clock ms, role_now_ms()), visiting at most max_steps hash buckets and
 * groups from where the last call stopped: the sweep timer calls it every
 * group_idle_ms / 8 (100 ms to 1 s) with a bound of 4096, so a sweep never
 * stalls the loop and the whole table is covered in a few seconds. Dropping
 * is safe at any time outside a commit: the state is a cache of the store.
 * While a batch is on the commit thread it drops nothing (returns 0).
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
	uint64_t create_dups;    /* keyed creates answered with an earlier
	                            group (a client's retry) */
	/* With the commit thread: commits made on it, and how often the loop
	 * had to wait for one (full batch, flush, drop). */
	uint64_t thread_commits;
	uint64_t waits;
	/* The store's disk was full (store_full.h): sends refused with
	 * ERR_STORE_FULL (failed or refused unwritten), warnings logged. */
	uint64_t full_refused;
	uint64_t full_lines;
} chatter_stats;
void chatter_get_stats(const chatter *c, chatter_stats *out);

/* Heap bytes by part (servers/roles/chatter/memory.c), for the imd
 * stats line. Bounds: groups and members by max_groups and group size,
 * dedup fixed by dedup_capacity, arenas by max_batch x IM_MSG_BODY_MAX
 * per batch buffer (resident only as far as a batch wrote). total counts
 * the live arena bytes, not the reserve. */
typedef struct chatter_mem {
	size_t groups, members, dedup, arenas_live, arenas_reserved, fixed;
	size_t total;
} chatter_mem;
void chatter_get_mem(const chatter *c, chatter_mem *out);

/* Stop the Chatter. A commit in flight is waited for (it is durable) but
 * never answered; what is still gathering is dropped unanswered: call
 * chatter_flush first to have both acked. Joins the commit thread. */
void chatter_destroy(chatter *c);

#endif
