/**
 * @file store.h
 * The storage abstraction: what libim's modules and servers persist.
 *
 * An im_store is an opaque handle onto one backend (sqlite, PostgreSQL or
 * your own, see im/sys/store.h). The im_store_* functions below are thin
 * wrappers over the backend's ops table; they check arguments and gate ops
 * that were added after version 1 of the table.
 *
 * Data model:
 *  - messages belong to a group ("conversation"); each carries a per-group
 *    seq (unique, strictly increasing, with gaps), the group's previous seq
 *    (prev_seq) and a contiguous per-group ordinal (1, 2, 3, ...) that makes
 *    unread counts exact: unread = last ordinal - ordinal at read pointer.
 *  - the dedup key (conv, sender, dedup_id) is unique in the store.
 *  - every owner write carries a fence (kind, slot, epoch); the store rejects
 *    it with IM_ESTALE once the slot's epoch moved on.
 *  - members rows double as the per-user conversation state (read pointer,
 *    flags); conv_load returns a user's groups with their last message.
 *  - the user queue holds what is addressed to one user (membership events,
 *    read-sync between devices), ordered by its own segment-allocated seq.
 *
 * Ownership: inputs are borrowed for the call. Rows handed to callbacks are
 * borrowed until the callback returns. A callback returning non-zero stops
 * the read and the read returns that value. A callback must not call into
 * the same handle (the sqlite backend streams rows from the statement it is
 * iterating and refuses such calls with IM_ERR).
 *
 * Values are stored as signed 64-bit integers (BIGINT): ids are kept bit
 * for bit, but seqs and ordinals must stay below 2^63 to keep their order
 * (segments start at 1, so only a corrupted counter gets there); appends
 * with larger ones fail with IM_EINVAL and read bounds above are clamped.
 *
 * Thread-safety: one thread at a time per handle; backends take no locks.
 * Error detail is per handle: im_store_errmsg().
 */
#ifndef IM_STORE_H
#define IM_STORE_H

#include "im.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct im_store im_store;

/** Highest schema version this build knows (see libim/store/schema/). */
#define IM_STORE_SCHEMA_VERSION 4

/**
 * A write fence: a slot the writer owns and the epoch it owns it at. Writes
 * take an array of fences, one per slot the batch touches; the store checks
 * all of them inside the write's transaction.
 */
typedef struct im_fence {
	im_kind kind;
	uint32_t slot;
	im_epoch epoch;
} im_fence;

/** Which counter an ID segment is taken from. */
typedef enum im_seg_space {
	IM_SEG_GROUP_SEQ = 0, /**< per-group message seqs, id = gid */
	IM_SEG_USER_SEQ = 1,  /**< per-user queue seqs, id = uid */
	IM_SEG_GROUP_ID = 2,  /**< new group ids, id = 0 */
} im_seg_space;

typedef struct im_seg_key {
	im_seg_space space;
	uint64_t id;
} im_seg_key;

/** A segment [first, last] of ids, all larger than any handed out before. */
typedef struct im_seg {
	uint64_t first;
	uint64_t last;
} im_seg;

/** Largest body a message may carry, in bytes. */
#define IM_MSG_BODY_MAX 4096
/** Bytes of a body kept as the conversation preview. */
#define IM_PREVIEW_MAX 64

/** One group message. */
typedef struct im_msg {
	im_gid conv;
	im_seq seq;
	im_seq prev_seq;   /**< the group's previous seq, 0 for the first */
	uint64_t ordinal;  /**< contiguous per group, starting at 1 */
	im_uid sender;
	uint64_t dedup_id; /**< client chosen; (conv, sender, dedup_id) unique */
	im_seq reply_to;   /**< 0 if none */
	uint64_t time_ms;  /**< server time at commit */
	uint32_t type;     /**< application defined, 0 = text */
	uint32_t body_len; /**< at most IM_MSG_BODY_MAX */
	const void *body;
} im_msg;

/** What msg_append did with one input message. */
typedef struct im_append_result {
	im_seq seq;        /**< stored seq, or the original one when dup */
	im_seq prev_seq;   /**< as stored (after rechaining around dups) */
	uint64_t ordinal;  /**< as stored (after rechaining around dups) */
	uint64_t time_ms;  /**< as stored (the original's when dup) */
	bool dup;          /**< the dedup key existed; nothing was stored */
} im_append_result;

/** Position of a message in its group: enough to count unread. */
typedef struct im_msg_pos {
	im_seq seq;
	uint64_t ordinal;
} im_msg_pos;

/** A group's metadata. */
#define IM_GROUP_NAME_MAX 64
typedef struct im_group {
	im_gid gid;
	im_uid creator;
	uint64_t created_ms;
	char name[IM_GROUP_NAME_MAX + 1];
} im_group;

/** Per-user conversation flags (members.flags). */
#define IM_CONV_MUTED 0x1u
#define IM_CONV_PINNED 0x2u

/** A user's state in one conversation, as loaded at login. */
typedef struct im_conv_row {
	im_gid conv;
	im_seq read_seq;
	uint64_t read_ordinal;
	uint32_t flags;
	im_msg_pos last;       /**< {0,0} when the group has no message */
	im_uid last_sender;
	uint64_t last_time_ms;
	uint32_t preview_len;  /**< at most IM_PREVIEW_MAX */
	const void *preview;   /**< first bytes of the last body */
} im_conv_row;

/** One item of a user's own queue. */
#define IM_UQ_BODY_MAX 1024
typedef struct im_uq_item {
	im_uid user;
	im_seq seq;
	uint64_t time_ms;
	uint32_t type;     /**< application defined event type */
	uint32_t body_len; /**< at most IM_UQ_BODY_MAX */
	const void *body;
} im_uq_item;

/** Owner of a slot as recorded in the store. */
#define IM_OWNER_MAX 64
typedef struct im_slot_row {
	im_kind kind;
	uint32_t slot;
	im_epoch epoch;
	const char *owner; /**< NUL terminated, at most IM_OWNER_MAX bytes */
} im_slot_row;

typedef int (*im_msg_cb)(const im_msg *msg, void *payload);
typedef int (*im_conv_cb)(const im_conv_row *row, void *payload);
typedef int (*im_uid_cb)(im_uid user, void *payload);
typedef int (*im_uq_cb)(const im_uq_item *item, void *payload);
typedef int (*im_slot_cb)(const im_slot_row *row, void *payload);

/** sqlite durability: FULL survives power loss, NORMAL only crashes. */
typedef enum im_sqlite_sync {
	IM_SQLITE_SYNC_FULL = 0,
	IM_SQLITE_SYNC_NORMAL = 1,
} im_sqlite_sync;

/*
 * Version 2 appended `exclusive` and `wal_autocheckpoint`; a caller
 * compiled against version 1 passes version 1 and gets the version 1
 * behaviour (shared locking, sqlite's default checkpoints).
 */
#define IM_STORE_SQLITE_OPTS_VERSION 2
typedef struct im_store_sqlite_opts {
	uint32_t version;
	im_sqlite_sync sync;
	uint32_t busy_timeout_ms; /**< wait on a locked database, default 5000 */
	/**
	 * Version 2. true: `PRAGMA locking_mode=EXCLUSIVE`. The store takes
	 * an exclusive lock on the file when it opens it and keeps it until
	 * im_store_close(), so no read or write pays for POSIX locks or the
	 * -shm file any more, and no other connection or process can open
	 * the database meanwhile (another imd, imctl, the sqlite3 shell: they
	 * wait busy_timeout and fail with "database is locked"). Only for a
	 * process that is the database's sole user. Default false.
	 */
	bool exclusive;
	/**
	 * Version 2. `PRAGMA wal_autocheckpoint`: the commit that makes the
	 * WAL longer than this many pages copies it into the database (two
	 * more fsyncs, and one more for the WAL header on the next commit).
	 * Larger: fewer, longer checkpoints and a larger -wal file. 0 keeps
	 * sqlite's default (1000 pages, 4 MB). Whatever is asked, the
	 * interval is at most a quarter of the space free on the database's
	 * filesystem at open (at least 64 pages), and journal_size_limit is
	 * set to as many bytes, so the WAL alone never fills a small disk
	 * (with any opts version).
	 */
	uint32_t wal_autocheckpoint;
} im_store_sqlite_opts;
#define IM_STORE_SQLITE_OPTS_INIT {IM_STORE_SQLITE_OPTS_VERSION, IM_SQLITE_SYNC_FULL, 5000, false, 0}

/**
 * Open (creating if needed) a sqlite store and migrate its schema.
 * @param path a file path, or ":memory:" for a private in-memory database
 * @param opts NULL for defaults
 * @retval IM_OK, IM_ESCHEMA (the file's schema is newer), IM_ERR,
 *         IM_EINVAL (NULL out/path, bad opts), IM_EUNAVAIL (the database
 *         stayed locked past busy_timeout while migrating)
 * Durability: IM_SQLITE_SYNC_FULL (default) makes every committed write
 * survive power loss; NORMAL only survives a crash of the process.
 * IM_ENOSPC: the disk is full and the open had to write (a new database,
 * a migration).
 * With opts->exclusive (version >= 2) the open fails with IM_EUNAVAIL when
 * another connection holds the file past busy_timeout, and the file stays
 * locked against everyone else until im_store_close().
 * On failure *out is NULL and, if errbuf is not NULL, a reason is written
 * into errbuf (at most errlen bytes, NUL terminated).
 */
IM_API int im_store_sqlite_open(im_store **out, const char *path,
				const im_store_sqlite_opts *opts, char *errbuf,
				size_t errlen);

#define IM_STORE_PG_OPTS_VERSION 1
typedef struct im_store_pg_opts {
	uint32_t version;
	uint32_t connect_timeout_ms; /**< per connection attempt */
	uint32_t reconnect_tries;    /**< after a lost connection, per call */
} im_store_pg_opts;
#define IM_STORE_PG_OPTS_INIT {IM_STORE_PG_OPTS_VERSION, 5000, 3}

/**
 * Open a PostgreSQL store from a libpq conninfo string and migrate it.
 * @retval IM_OK, IM_ESCHEMA, IM_EUNAVAIL (server unreachable), IM_ERR
 * Returns IM_ENOTSUP if libim was built without libpq.
 */
IM_API int im_store_pg_open(im_store **out, const char *conninfo,
			    const im_store_pg_opts *opts, char *errbuf,
			    size_t errlen);

/** Close the store; NULL is a no-op. */
IM_API void im_store_close(im_store *st);

/** The backend's name ("sqlite", "pg"). */
IM_API const char *im_store_name(const im_store *st);

/** Detail of the last error on this handle; never NULL. */
IM_API const char *im_store_errmsg(const im_store *st);

/**
 * Bring the schema to IM_STORE_SCHEMA_VERSION (open does this already).
 * @retval IM_OK, IM_ESCHEMA (schema newer than this build), IM_ERR
 */
IM_API int im_store_migrate(im_store *st, uint32_t *schema_out);

/** Stream every recorded slot of one kind (unowned slots have no row). */
IM_API int im_store_slot_load(im_store *st, im_kind kind, im_slot_cb cb,
			      void *payload);

/**
 * Compare-and-set a slot's owner: succeeds only when the slot's epoch is
 * `expect` (0 for a slot never owned), then sets owner and epoch expect+1.
 * @retval IM_OK (*epoch_out = expect+1), IM_ECONFLICT (epoch moved;
 *         *epoch_out = current epoch), IM_EINVAL, IM_ERR, IM_EUNAVAIL
 */
IM_API int im_store_slot_cas(im_store *st, im_kind kind, uint32_t slot,
			     im_epoch expect, const char *owner,
			     im_epoch *epoch_out);

/**
 * Compare-and-set n distinct slots of one kind in one transaction (all or
 * nothing):
 * succeeds only when every slots[i] is at epoch expect[i], then sets owner
 * and expect[i]+1 (in epochs_out[i]). One fsync for the lot, so a node that
 * takes many slots (imd at start) does not pay one commit per slot.
 * A backend without the op (ops version < 3) gets one im_store_slot_cas
 * per slot instead, in order, stopping at a conflict: then NOT all or
 * nothing (the slots before the conflicting one stay taken), but
 * epochs_out still holds every slot's current epoch.
 * @retval IM_OK, IM_ECONFLICT (nothing changed, or with the fallback the
 *         slots before the conflict taken; epochs_out holds the current
 *         epochs), IM_EINVAL, IM_ENOMEM, IM_ERR, IM_EUNAVAIL
 */
#define IM_STORE_CAS_MANY_MAX 65536
IM_API int im_store_slot_cas_many(im_store *st, im_kind kind,
				  const uint32_t *slots, const im_epoch *expect,
				  size_t n, const char *owner,
				  im_epoch *epochs_out);

/**
 * Take the next segment of `step` ids for a key. Segments of one key never
 * overlap and always lie above every id handed out before, also across
 * processes sharing the store. The first segment of a new key starts at 1.
 * @retval IM_OK, IM_EINVAL (step 0), IM_ERR, IM_EUNAVAIL
 */
IM_API int im_store_seg_take(im_store *st, const im_seg_key *key, uint32_t step,
			     im_seg *seg_out);

/**
 * Append n group messages in one transaction, fenced.
 *
 * Messages of one conv must come in increasing seq order, chained: each
 * prev_seq is the seq of the previous message of that conv and each ordinal
 * the previous one + 1. A message whose dedup key exists already (in the
 * store or earlier in this batch) is not stored: res_out[i].dup is set with
 * the original seq, and the later messages of that conv in this batch are
 * rechained (their prev_seq and ordinal shift down) so the chain stored has
 * no hole. res_out (n entries, caller memory) reports what was stored.
 * A stored message is read for its sender: in the same transaction the
 * sender's read pointer in that conv (when a member) moves forward to it,
 * as the conversation lists count a user's own message (im_convlist
 * deliver with own), so unread after a login agrees with the live count.
 *
 * @retval IM_OK       everything durable (or dup)
 * @retval IM_ESTALE   a fence's epoch is not its slot's epoch; nothing stored
 *                     (errmsg names the slot)
 * @retval IM_EINVAL   bad batch (n or nfences 0, oversized body, zero ids,
 *                     broken chain); nothing stored
 * @retval IM_EUNAVAIL outcome unknown (connection lost at commit); retrying
 *                     the same batch is safe thanks to the dedup keys
 * @retval IM_ENOSPC  the store's disk is full (sqlite SQLITE_FULL, PostgreSQL
 *                     SQLSTATE 53100); nothing stored. Every write op may
 *                     return it, with the same meaning.
 * @retval IM_ECONFLICT a seq of the batch already holds another message
 *                     (different dedup key): the writer reused a seq;
 *                     nothing stored (errmsg names the seq)
 *
 * A fence on a slot never claimed (no epoch yet) is always stale.
 */
IM_API int im_store_msg_append(im_store *st, const im_fence *fences,
			       size_t nfences, const im_msg *msgs, size_t n,
			       im_append_result *res_out);

/**
 * Stream messages of conv with after < seq <= until in seq order, at most
 * limit of them (limit 0 = IM_STORE_READ_LIMIT_MAX).
 */
#define IM_STORE_READ_LIMIT_MAX 1000
IM_API int im_store_msg_read(im_store *st, im_gid conv, im_seq after,
			     im_seq until, uint32_t limit, im_msg_cb cb,
			     void *payload);

/**
 * Position of the last message of conv with seq <= at (IM_SEQ_MAX for the
 * latest).
 * @retval IM_OK, IM_ENOTFOUND (no such message: *pos_out = {0,0}), IM_ERR
 */
IM_API int im_store_msg_last(im_store *st, im_gid conv, im_seq at,
			     im_msg_pos *pos_out);

/**
 * Look a message up by its dedup key.
 * @retval IM_OK (*msg_out filled, body not returned), IM_ENOTFOUND, IM_ERR
 */
IM_API int im_store_msg_find_dedup(im_store *st, im_gid conv, im_uid sender,
				   uint64_t dedup_id, im_msg *msg_out);

/**
 * Create a group.
 * @retval IM_OK, IM_ECONFLICT (gid exists), IM_EINVAL, IM_ERR
 */
IM_API int im_store_group_create(im_store *st, const im_group *group);

/** @retval IM_OK, IM_ENOTFOUND, IM_ERR */
IM_API int im_store_group_lookup(im_store *st, im_gid gid, im_group *out);

/**
 * Add a member (the conversation state starts with the read pointer at the
 * group's current last message, so history before joining is not unread).
 * *added_out (may be NULL) tells whether the user was not a member before.
 * @retval IM_OK, IM_ENOTFOUND (no such group), IM_EINVAL, IM_ERR
 */
IM_API int im_store_member_add(im_store *st, im_gid gid, im_uid user,
			       bool *added_out);

/** *removed_out (may be NULL) tells whether the user was a member. */
IM_API int im_store_member_remove(im_store *st, im_gid gid, im_uid user,
				  bool *removed_out);

/** Stream a group's members in uid order. */
IM_API int im_store_member_list(im_store *st, im_gid gid, im_uid_cb cb,
				void *payload);

/** A user's conversations (the groups of a user) with their last message. */
IM_API int im_store_conv_load(im_store *st, im_uid user, im_conv_cb cb,
			      void *payload);

/**
 * Move a user's read pointer forward and set flags. The pointer never moves
 * backwards: a read_seq below the stored one keeps the stored pointer.
 * @retval IM_OK, IM_ENOTFOUND (not a member), IM_ERR
 */
IM_API int im_store_conv_update(im_store *st, im_uid user, im_gid conv,
				im_seq read_seq, uint64_t read_ordinal,
				uint32_t flags);

/**
 * Append n items to user queues in one transaction, fenced by the user
 * slots they touch (see msg_append). Appending an existing (user, seq) again is a no-op (idempotent).
 * @retval IM_OK, IM_ESTALE, IM_EINVAL, IM_EUNAVAIL, IM_ERR
 */
IM_API int im_store_uq_append(im_store *st, const im_fence *fences,
			      size_t nfences, const im_uq_item *items, size_t n);

/** Stream a user's queue items with after < seq, in order, at most limit. */
IM_API int im_store_uq_read(im_store *st, im_uid user, im_seq after,
			    uint32_t limit, im_uq_cb cb, void *payload);

/*
 * Cluster membership (store ops version 2; a backend compiled against
 * version 1 answers IM_ENOTSUP). A node registers itself with its role and
 * listen address, then heartbeats; readers judge liveness from the
 * heartbeat's age. A node's name is also its slot owner string.
 */

/** The liveness defaults every writer and reader of node rows shares: a
 *  node heartbeats every IM_NODE_HEARTBEAT_MS and counts as dead once its
 *  last heartbeat is older than IM_NODE_DEAD_AFTER_MS (fifteen missed beats, so
 *  a busy store or a loaded machine does not kill a healthy node; a Router
 *  judges a node whose connection closed sooner, servers/cluster/router.h). imnode's
 *  heartbeat_ms and dead_after_ms and imctl's --dead-after start from these:
 *  defined once, so the tool never calls a node alive that the Routers
 *  already moved. */
#define IM_NODE_HEARTBEAT_MS 100
#define IM_NODE_DEAD_AFTER_MS 1500

/** Longest node name (the slot owner string) and listen address. */
#define IM_NODE_NAME_MAX IM_OWNER_MAX
#define IM_NODE_ADDR_MAX 128

/** What a node does (values match imrpc.Role of proto/rpc.proto). */
typedef enum im_node_role {
	IM_NODE_CONNECTOR = 1,
	IM_NODE_ROUTER = 2,
	IM_NODE_CHATTER = 3,
} im_node_role;

/** A node as registered in the store. */
typedef struct im_node_row {
	const char *name;       /**< NUL terminated, <= IM_NODE_NAME_MAX */
	im_node_role role;
	const char *address;    /**< "host:port", <= IM_NODE_ADDR_MAX */
	uint64_t registered_ms; /**< time of the last register */
	uint64_t heartbeat_ms;  /**< time of the last register or heartbeat */
	uint64_t incarnation;   /**< 1 at the first register, +1 at each */
} im_node_row;

typedef int (*im_node_cb)(const im_node_row *row, void *payload);

/**
 * Register (or re-register) a node: sets role, address, registered_ms and
 * heartbeat_ms to now_ms and bumps its incarnation, so a node coming back
 * (a restart, or a fenced zombie re-registering) is a fresh incarnation.
 * @param incarnation_out may be NULL
 * @retval IM_OK, IM_EINVAL (empty or too long name/address, bad role),
 *         IM_ENOTSUP (backend older than ops version 2), IM_ERR
 */
IM_API int im_store_node_register(im_store *st, const char *name,
				  im_node_role role, const char *address,
				  uint64_t now_ms, uint64_t *incarnation_out);

/**
 * Record a heartbeat of a registered node (heartbeat_ms = now_ms).
 * @retval IM_OK, IM_ENOTFOUND (never registered), IM_EINVAL, IM_ENOTSUP,
 *         IM_ERR
 */
IM_API int im_store_node_heartbeat(im_store *st, const char *name,
				   uint64_t now_ms);

/**
 * Stream every registered node, ordered by name. Rows are borrowed until
 * cb returns; a non-zero return stops the read and is returned.
 * @retval IM_OK, IM_ENOTSUP, IM_ERR, or cb's non-zero value
 */
IM_API int im_store_node_list(im_store *st, im_node_cb cb, void *payload);


/*
 * Batched writes (store ops version 4). They never answer IM_ENOTSUP: on a
 * backend compiled against an older table (or with the op NULL) the
 * wrapper does the same work with the one-at-a-time ops, with the
 * differences each function states.
 */

/** A group to create with its first members (im_store_group_create_many). */
#define IM_GROUP_NEW_MEMBERS_MAX 4096
typedef struct im_group_new {
	im_group group;
	const im_uid *members; /**< nonzero; duplicates are stored once */
	uint32_t nmembers;     /**< at most IM_GROUP_NEW_MEMBERS_MAX */
} im_group_new;

/**
 * Create n groups with their first members in ONE transaction, fenced like
 * msg_append: the fences (the group slots of the new gids, which the caller
 * must own) are checked inside the transaction, so a writer that lost a
 * slot creates nothing. All or nothing. Members start as with
 * im_store_member_add (read pointer at the group's last message: 0 for a
 * new group).
 *
 * Idempotent, so a batch whose outcome was unknown (IM_EUNAVAIL) can be
 * sent again: a gid that exists with the same creator and created_ms is
 * taken as created by an earlier try of this batch (missing members are
 * added, nothing else changes); a gid that exists otherwise is a conflict.
 *
 * @retval IM_OK        every group and member is stored
 * @retval IM_ESTALE    a fence is stale; nothing stored
 * @retval IM_ECONFLICT a gid belongs to another group; nothing stored
 * @retval IM_EINVAL    n or nfences 0, n > IM_STORE_CREATE_MANY_MAX, gid 0,
 *                      repeated gid, name not terminated, member 0 or too
 *                      many members, NULL arrays
 * Backend without the op (version < 4): one im_store_group_create and
 * im_store_member_add per row, group after group; the fences are checked
 * once before any write (not inside it), and it is NOT all or nothing: it
 * stops at the first group that fails, the groups before it stay stored
 * (sending the batch again is safe, as above).
 *
 * @retval IM_OK        every group and member is stored
 * @retval IM_ESTALE    a fence is stale; nothing stored
 * @retval IM_ECONFLICT a gid belongs to another group; nothing stored
 *                      (fallback: the groups before it are stored)
 * @retval IM_EINVAL    n or nfences 0, n > IM_STORE_CREATE_MANY_MAX, gid 0,
 *                      repeated gid, name not terminated, member 0 or too
 *                      many members, NULL arrays
 * @retval IM_EUNAVAIL  outcome unknown; retrying the same batch is safe
 * @retval IM_ENOMEM, IM_ERR
 */
#define IM_STORE_CREATE_MANY_MAX 1024
IM_API int im_store_group_create_many(im_store *st, const im_fence *fences,
				      size_t nfences,
				      const im_group_new *groups, size_t n);

/**
 * im_store_group_create_many with each group's outcome in rcs_out[i]
 * (n entries): with the batched op every entry is the batch's result (all
 * or nothing); without it every group is tried on its own, so the caller
 * answers each creator truthfully.
 * @retval the first error of rcs_out, or IM_OK; IM_EINVAL (also rcs_out
 *         NULL; then rcs_out is not written)
 */
IM_API int im_store_group_create_each(im_store *st, const im_fence *fences,
				      size_t nfences,
				      const im_group_new *groups, size_t n,
				      int *rcs_out);

/*
 * Keyed group creation (store ops version 5): a retried CreateGroup
 * (answer lost, reconnect) must not make a second group. The client gives
 * each create a dedup id; (creator, dedup_id) is a durable unique key, as
 * (conv, sender, dedup_id) is for messages.
 */

/** What im_store_group_create_dedup did with one row. */
typedef struct im_group_created {
	im_gid gid; /**< the group created, or the first one of its key */
	bool dup;   /**< the key existed: nothing was written for this row */
} im_group_created;

/**
 * im_store_group_create_many with a create key per row: dedup_ids[i] != 0
 * makes (groups[i].group.creator, dedup_ids[i]) a durable unique key.
 * When the key exists, row i writes nothing and res_out[i] holds the gid
 * the key was first stored with and dup = true; else the row is created as
 * by im_store_group_create_many (with its key, in the same transaction)
 * and res_out[i] = {its gid, false}. dedup_ids[i] == 0 is an unkeyed row
 * (always created). One transaction, fences checked inside it: all or
 * nothing. Retrying a call whose outcome was unknown (IM_EUNAVAIL) with
 * the same rows is safe: the keyed rows come back dup with their gids.
 *
 * @retval IM_OK        res_out[0..n) filled
 * @retval IM_ESTALE    a fence is stale; nothing stored
 * @retval IM_ECONFLICT a gid belongs to another group; nothing stored
 * @retval IM_EINVAL    as im_store_group_create_many, also dedup_ids or
 *                      res_out NULL, or one (creator, dedup_id) given twice
 * @retval IM_ENOTSUP   the backend predates version 5 (no key can be kept;
 *                      nothing stored)
 * @retval IM_EUNAVAIL  outcome unknown; retrying the same rows is safe
 * @retval IM_ENOSPC, IM_ENOMEM, IM_ERR
 */
IM_API int im_store_group_create_dedup(im_store *st, const im_fence *fences,
				       size_t nfences,
				       const im_group_new *groups,
				       const uint64_t *dedup_ids, size_t n,
				       im_group_created *res_out);

/**
 * Take one segment of `step` ids for each of n distinct keys in one
 * transaction (one fsync instead of n): segs_out[i] is keys[i]'s segment,
 * with the guarantees of im_store_seg_take. All or nothing. Backend without
 * the op (version < 4): one im_store_seg_take per key, stopping at the
 * first failure; segments taken before it are lost (never reused).
 * @retval IM_OK, IM_EINVAL (n 0 or > IM_STORE_SEG_MANY_MAX, step 0, bad
 *         space, a key given twice), IM_EFULL (a key's id space is
 *         exhausted; nothing taken), IM_ERR,
 *         IM_EUNAVAIL (outcome unknown: segments may be lost, never
 *         reused)
 */
#define IM_STORE_SEG_MANY_MAX 1024
IM_API int im_store_seg_take_many(im_store *st, const im_seg_key *keys,
				  size_t n, uint32_t step, im_seg *segs_out);

/**
 * The largest seq in a user's queue (0 when it is empty): what a login
 * reports as where the queue ends, without reading the items. Backend
 * without the op (version < 4): the queue is paged with im_store_uq_read,
 * at most 1,000 pages of IM_STORE_READ_LIMIT_MAX; past that bound the
 * largest seq read so far is answered.
 * @retval IM_OK, IM_EINVAL, IM_ERR, IM_EUNAVAIL
 */
IM_API int im_store_uq_last(im_store *st, im_uid user, im_seq *last_out);

/*
 * Fenced membership and read pointers (store ops version 6). The owner of
 * a group slot (a Chatter) changes members, and the owner of a user slot
 * (a Connector) moves that user's read pointers; each passes the fences of
 * the slots it writes for, so a zombie owner (paused, partitioned, or a
 * second process that took the slots) writes nothing after a takeover.
 * Backend without the ops (version < 6, or the op NULL): the fences are
 * checked with im_store_slot_load before the version 1 op is called, not
 * inside its transaction, so a slot lost between the two is not seen.
 */

/**
 * im_store_member_add, fenced: the fences (the caller's group slot) are
 * checked inside the write's transaction.
 * @retval IM_OK, IM_ESTALE (a fence is stale; nothing written),
 *         IM_ENOTFOUND (no such group), IM_EINVAL (also fences NULL or
 *         nfences 0), IM_EUNAVAIL, IM_ERR
 */
IM_API int im_store_member_add_fenced(im_store *st, const im_fence *fences,
				      size_t nfences, im_gid gid, im_uid user,
				      bool *added_out);

/**
 * im_store_member_remove, fenced as im_store_member_add_fenced.
 * @retval IM_OK, IM_ESTALE (nothing removed), IM_EINVAL, IM_EUNAVAIL, IM_ERR
 */
IM_API int im_store_member_remove_fenced(im_store *st, const im_fence *fences,
					 size_t nfences, im_gid gid,
					 im_uid user, bool *removed_out);

/**
 * im_store_conv_update, fenced (the user's slot): the read pointer still
 * only moves forward.
 * @retval IM_OK, IM_ESTALE (nothing written), IM_ENOTFOUND (not a member),
 *         IM_EINVAL, IM_EUNAVAIL, IM_ERR
 */
IM_API int im_store_conv_update_fenced(im_store *st, const im_fence *fences,
				       size_t nfences, im_uid user,
				       im_gid conv, im_seq read_seq,
				       uint64_t read_ordinal, uint32_t flags);

#ifdef __cplusplus
}
#endif

#endif
