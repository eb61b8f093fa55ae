/*
 * The one list of store ops (not installed). Every store that forwards to
 * another store (the mux beside this file, tests/support/wrap_store.c and
 * the fake and faulty stores built on it) generates its forwarding
 * functions and its ops table from this list, so a new op can never be
 * forgotten in one of them. libim/store.c derives from it the version that
 * gates each op and the ops im_store_init() requires, and checks at build
 * time that the list and struct im_store_ops (include/im/sys/store.h, the
 * contract with its per-op docs) name the same ops in the same order.
 *
 * IM__STORE_OPS(X) expands X once per op, in struct order:
 *
 *   X(version, op, OP, (params after st), (arguments after st))
 *
 *   version  the IM_STORE_OPS_VERSION that added the op (1 = required)
 *   op       the member of struct im_store_ops and the im_store_<op> wrapper
 *   OP       the same name upper case, for enums (STORE_OP_<OP> in tests)
 *
 * Every listed op returns int and takes `im_store *st` first; `close`
 * (void, and special in every forwarder) is not listed. A new op: append
 * its member to struct im_store_ops and its line here, in the same place.
 */
#ifndef IM_STORE_OPS_H
#define IM_STORE_OPS_H

#include "im/sys/store.h"

/* Strip the parentheses of a list's params or args: IM__UNPAREN (a, b). */
#define IM__UNPAREN(...) __VA_ARGS__

/* clang-format off */
#define IM__STORE_OPS(X)                                                      \
	X(1, migrate, MIGRATE, (uint32_t *schema_out), (schema_out))          \
	X(1, slot_load, SLOT_LOAD,                                            \
	  (im_kind kind, im_slot_cb cb, void *payload),                       \
	  (kind, cb, payload))                                                \
	X(1, slot_cas, SLOT_CAS,                                              \
	  (im_kind kind, uint32_t slot, im_epoch expect, const char *owner,   \
	   im_epoch *epoch_out),                                              \
	  (kind, slot, expect, owner, epoch_out))                             \
	X(1, seg_take, SEG_TAKE,                                              \
	  (const im_seg_key *key, uint32_t step, im_seg *seg_out),            \
	  (key, step, seg_out))                                               \
	X(1, msg_append, MSG_APPEND,                                          \
	  (const im_fence *fences, size_t nfences, const im_msg *msgs,        \
	   size_t n, im_append_result *res_out),                              \
	  (fences, nfences, msgs, n, res_out))                                \
	X(1, msg_read, MSG_READ,                                              \
	  (im_gid conv, im_seq after, im_seq until, uint32_t limit,           \
	   im_msg_cb cb, void *payload),                                      \
	  (conv, after, until, limit, cb, payload))                           \
	X(1, msg_last, MSG_LAST,                                              \
	  (im_gid conv, im_seq at, im_msg_pos *pos_out),                      \
	  (conv, at, pos_out))                                                \
	X(1, msg_find_dedup, MSG_FIND_DEDUP,                                  \
	  (im_gid conv, im_uid sender, uint64_t dedup_id, im_msg *msg_out),   \
	  (conv, sender, dedup_id, msg_out))                                  \
	X(1, group_create, GROUP_CREATE, (const im_group *group), (group))    \
	X(1, group_lookup, GROUP_LOOKUP,                                      \
	  (im_gid gid, im_group *out), (gid, out))                            \
	X(1, member_add, MEMBER_ADD,                                          \
	  (im_gid gid, im_uid user, bool *added_out), (gid, user, added_out)) \
	X(1, member_remove, MEMBER_REMOVE,                                    \
	  (im_gid gid, im_uid user, bool *removed_out),                       \
	  (gid, user, removed_out))                                           \
	X(1, member_list, MEMBER_LIST,                                        \
	  (im_gid gid, im_uid_cb cb, void *payload), (gid, cb, payload))      \
	X(1, conv_load, CONV_LOAD,                                            \
	  (im_uid user, im_conv_cb cb, void *payload), (user, cb, payload))   \
	X(1, conv_update, CONV_UPDATE,                                        \
	  (im_uid user, im_gid conv, im_seq read_seq, uint64_t read_ordinal,  \
	   uint32_t flags),                                                   \
	  (user, conv, read_seq, read_ordinal, flags))                        \
	X(1, uq_append, UQ_APPEND,                                            \
	  (const im_fence *fences, size_t nfences, const im_uq_item *items,   \
	   size_t n),                                                         \
	  (fences, nfences, items, n))                                        \
	X(1, uq_read, UQ_READ,                                                \
	  (im_uid user, im_seq after, uint32_t limit, im_uq_cb cb,            \
	   void *payload),                                                    \
	  (user, after, limit, cb, payload))                                  \
	X(2, node_register, NODE_REGISTER,                                    \
	  (const char *name, im_node_role role, const char *address,          \
	   uint64_t now_ms, uint64_t *incarnation_out),                       \
	  (name, role, address, now_ms, incarnation_out))                     \
	X(2, node_heartbeat, NODE_HEARTBEAT,                                  \
	  (const char *name, uint64_t now_ms), (name, now_ms))                \
	X(2, node_list, NODE_LIST,                                            \
	  (im_node_cb cb, void *payload), (cb, payload))                      \
	X(3, slot_cas_many, SLOT_CAS_MANY,                                    \
	  (im_kind kind, const uint32_t *slots, const im_epoch *expect,       \
	   size_t n, const char *owner, im_epoch *epochs_out),                \
	  (kind, slots, expect, n, owner, epochs_out))                        \
	X(4, group_create_many, GROUP_CREATE_MANY,                            \
	  (const im_fence *fences, size_t nfences,                            \
	   const im_group_new *groups, size_t n),                             \
	  (fences, nfences, groups, n))                                       \
	X(4, seg_take_many, SEG_TAKE_MANY,                                    \
	  (const im_seg_key *keys, size_t n, uint32_t step, im_seg *segs_out),\
	  (keys, n, step, segs_out))                                          \
	X(4, uq_last, UQ_LAST,                                                \
	  (im_uid user, im_seq *last_out), (user, last_out))                  \
	X(5, group_create_dedup, GROUP_CREATE_DEDUP,                          \
	  (const im_fence *fences, size_t nfences,                            \
	   const im_group_new *groups, const uint64_t *dedup_ids, size_t n,   \
	   im_group_created *res_out),                                        \
	  (fences, nfences, groups, dedup_ids, n, res_out))                   \
	X(6, member_add_fenced, MEMBER_ADD_FENCED,                            \
	  (const im_fence *fences, size_t nfences, im_gid gid, im_uid user,   \
	   bool *added_out),                                                  \
	  (fences, nfences, gid, user, added_out))                            \
	X(6, member_remove_fenced, MEMBER_REMOVE_FENCED,                      \
	  (const im_fence *fences, size_t nfences, im_gid gid, im_uid user,   \
	   bool *removed_out),                                                \
	  (fences, nfences, gid, user, removed_out))                          \
	X(6, conv_update_fenced, CONV_UPDATE_FENCED,                          \
	  (const im_fence *fences, size_t nfences, im_uid user, im_gid conv,  \
	   im_seq read_seq, uint64_t read_ordinal, uint32_t flags),           \
	  (fences, nfences, user, conv, read_seq, read_ordinal, flags))
/* clang-format on */

#endif
