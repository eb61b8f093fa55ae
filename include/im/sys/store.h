/**
 * @file sys/store.h
 * The storage vtable, for backend authors. im.h and store.h never include
 * this header; only code that implements a backend does.
 *
 * A backend embeds `im_store base` as the first member of its state, fills
 * one `static const struct im_store_ops` with designated initializers and
 * returns &state->base from its public constructor.
 *
 * Versioning (as SQLite's VFS): `version` is the IM_STORE_OPS_VERSION the
 * backend was compiled against. Ops are only ever appended; the core calls
 * an op added in version N only when `ops->version >= N && op != NULL`;
 * otherwise the batched ops (slot_cas_many, group_create_many,
 * seg_take_many, uq_last) and the fenced membership and read-pointer ops
 * (version 6) fall back to the version 1 ops inside the wrapper, and the
 * others (node_*, group_create_dedup) return IM_ENOTSUP, so a backend written
 * against an older header keeps working. im_store_init() rejects version 0, versions newer than this
 * build, and any NULL among the version 1 ops.
 *
 * Every op receives arguments already checked by the im_store_* wrapper
 * (non-NULL pointers, n > 0, sizes within limits) and must:
 *  - return IM_OK or a negative im_err, and on error describe the cause with
 *    im_store_set_error();
 *  - leave the store unchanged when it fails (one transaction per write);
 *  - never abort on bad data or a lost connection.
 * Contracts of each op are those of the matching im_store_* function in
 * im/store.h; notes below add what only an implementer needs.
 */
#ifndef IM_SYS_STORE_H
#define IM_SYS_STORE_H

#include "../store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IM_STORE_OPS_VERSION 6
#define IM_STORE_ERRMSG_MAX 256

struct im_store_ops;

/** Base of every backend's state; embed it first. */
struct im_store {
	const struct im_store_ops *ops;
	char errmsg[IM_STORE_ERRMSG_MAX];
};

struct im_store_ops {
	/** IM_STORE_OPS_VERSION the backend was compiled against. */
	uint32_t version;
	/** Short backend name; must not be NULL. */
	const char *name;

	/** Must provide. Release everything; st is not used afterwards. */
	void (*close)(im_store *st);
	/** Must provide. Create or upgrade the schema; IM_ESCHEMA if newer. */
	int (*migrate)(im_store *st, uint32_t *schema_out);
	/** Must provide. */
	int (*slot_load)(im_store *st, im_kind kind, im_slot_cb cb,
			 void *payload);
	/** Must provide. Atomic compare-and-set; exactly one winner. */
	int (*slot_cas)(im_store *st, im_kind kind, uint32_t slot,
			im_epoch expect, const char *owner,
			im_epoch *epoch_out);
	/** Must provide. Atomic across processes sharing the store. */
	int (*seg_take)(im_store *st, const im_seg_key *key, uint32_t step,
			im_seg *seg_out);
	/**
	 * Must provide. One transaction; the fences are checked inside it so
	 * that a CAS committed before this transaction commits makes it fail
	 * with IM_ESTALE. Dedup and rechaining as documented in store.h.
	 */
	int (*msg_append)(im_store *st, const im_fence *fences, size_t nfences,
			  const im_msg *msgs, size_t n,
			  im_append_result *res_out);
	/** Must provide. Bodies are borrowed until cb returns. */
	int (*msg_read)(im_store *st, im_gid conv, im_seq after, im_seq until,
			uint32_t limit, im_msg_cb cb, void *payload);
	/** Must provide. */
	int (*msg_last)(im_store *st, im_gid conv, im_seq at,
			im_msg_pos *pos_out);
	/** Must provide. */
	int (*msg_find_dedup)(im_store *st, im_gid conv, im_uid sender,
			      uint64_t dedup_id, im_msg *msg_out);
	/** Must provide. */
	int (*group_create)(im_store *st, const im_group *group);
	/** Must provide. */
	int (*group_lookup)(im_store *st, im_gid gid, im_group *out);
	/** Must provide. */
	int (*member_add)(im_store *st, im_gid gid, im_uid user,
			  bool *added_out);
	/** Must provide. */
	int (*member_remove)(im_store *st, im_gid gid, im_uid user,
			     bool *removed_out);
	/** Must provide. */
	int (*member_list)(im_store *st, im_gid gid, im_uid_cb cb,
			   void *payload);
	/** Must provide. */
	int (*conv_load)(im_store *st, im_uid user, im_conv_cb cb,
			 void *payload);
	/** Must provide. Monotonic read pointer (max of old and new). */
	int (*conv_update)(im_store *st, im_uid user, im_gid conv,
			   im_seq read_seq, uint64_t read_ordinal,
			   uint32_t flags);
	/** Must provide. */
	int (*uq_append)(im_store *st, const im_fence *fences, size_t nfences,
			 const im_uq_item *items, size_t n);
	/** Must provide. */
	int (*uq_read)(im_store *st, im_uid user, im_seq after, uint32_t limit,
		       im_uq_cb cb, void *payload);
	/* Methods above are valid for version 1 */

	/**
	 * May be NULL (IM_ENOTSUP). Upsert in one statement or transaction:
	 * a new name starts at incarnation 1, an existing one gets +1.
	 */
	int (*node_register)(im_store *st, const char *name,
			     im_node_role role, const char *address,
			     uint64_t now_ms, uint64_t *incarnation_out);
	/** May be NULL. IM_ENOTFOUND for a name never registered. */
	int (*node_heartbeat)(im_store *st, const char *name, uint64_t now_ms);
	/** May be NULL. Ordered by name. */
	int (*node_list)(im_store *st, im_node_cb cb, void *payload);
	/* Methods above are valid for version 2 */
	/**
	 * May be NULL (then im_store_slot_cas_many claims one slot at a
	 * time with slot_cas; callers never see IM_ENOTSUP). All or nothing in one
	 * transaction: every slot's epoch must equal its expect, else nothing
	 * changes and the op returns IM_ECONFLICT with epochs_out holding the
	 * current epochs.
	 */
	int (*slot_cas_many)(im_store *st, im_kind kind, const uint32_t *slots,
			     const im_epoch *expect, size_t n,
			     const char *owner, im_epoch *epochs_out);
	/* Methods above are valid for version 3 */
	/**
	 * May be NULL (the wrapper then creates one group at a time with
	 * group_create and member_add; callers never see IM_ENOTSUP). One
	 * transaction with the fences checked inside it, as msg_append;
	 * idempotent as documented in store.h. Each group arrives with its
	 * members as given: a uid may repeat (store it once); gids are
	 * distinct and checked by the wrapper.
	 */
	int (*group_create_many)(im_store *st, const im_fence *fences,
				 size_t nfences, const im_group_new *groups,
				 size_t n);
	/** May be NULL (the wrapper then calls seg_take per key). One
	 * transaction; keys are distinct. */
	int (*seg_take_many)(im_store *st, const im_seg_key *keys, size_t n,
			     uint32_t step, im_seg *segs_out);
	/** May be NULL (the wrapper then pages uq_read, bounded). *last_out
	 * = 0 for an empty queue. */
	int (*uq_last)(im_store *st, im_uid user, im_seq *last_out);
	/* Methods above are valid for version 4 */
	/**
	 * May be NULL (the wrapper then answers IM_ENOTSUP: a create key
	 * cannot be kept without a durable unique key, and the caller
	 * decides what to do; the Chatter creates unkeyed). One transaction
	 * with the fences checked inside it, as group_create_many; a keyed
	 * row whose (creator, dedup_id) exists writes nothing and reports
	 * the first gid with dup set. Two writers racing on one key: exactly
	 * one creates, the other's transaction sees the key (or fails and is
	 * retried). Keys within one call are distinct (the wrapper checks).
	 */
	int (*group_create_dedup)(im_store *st, const im_fence *fences,
				  size_t nfences, const im_group_new *groups,
				  const uint64_t *dedup_ids, size_t n,
				  im_group_created *res_out);
	/* Methods above are valid for version 5 */
	/**
	 * May be NULL (the wrapper then checks the fences with slot_load
	 * before calling member_add, member_remove or conv_update: a slot
	 * lost between the check and the write is not seen). The version 1
	 * op, with the fences checked inside its transaction as msg_append
	 * does: IM_ESTALE and nothing written when one is stale.
	 */
	int (*member_add_fenced)(im_store *st, const im_fence *fences,
				 size_t nfences, im_gid gid, im_uid user,
				 bool *added_out);
	/** May be NULL; as member_add_fenced. */
	int (*member_remove_fenced)(im_store *st, const im_fence *fences,
				    size_t nfences, im_gid gid, im_uid user,
				    bool *removed_out);
	/** May be NULL; as member_add_fenced. */
	int (*conv_update_fenced)(im_store *st, const im_fence *fences,
				  size_t nfences, im_uid user, im_gid conv,
				  im_seq read_seq, uint64_t read_ordinal,
				  uint32_t flags);
	/* Methods above are valid for version 6 */
	/* A new op is also added to libim's list of ops, from which the
	 * forwarding stores are generated; the build fails until both agree. */
};

/**
 * Check a backend's ops table and bind it to its base. Backends call this
 * from their constructor before returning the store.
 * @retval IM_OK, IM_EINVAL (version 0 or newer than this build, or a
 *         version 1 op is NULL)
 */
IM_API int im_store_init(im_store *st, const struct im_store_ops *ops);

/** Record the detail of the last error on st (printf style, truncated). */
IM_API void im_store_set_error(im_store *st, const char *fmt, ...)
#ifdef __GNUC__
	__attribute__((format(printf, 2, 3)))
#endif
	;

#ifdef __cplusplus
}
#endif

#endif
