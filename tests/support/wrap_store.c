#include "wrap_store.h"

#include <stdio.h>

static const char *const op_names[STORE_OP_COUNT] = {
        "migrate",      "slot_load",    "slot_cas",    "seg_take",
        "msg_append",   "msg_read",     "msg_last",    "msg_find_dedup",
        "group_create", "group_lookup", "member_add",  "member_remove",
        "member_list",  "conv_load",    "conv_update", "uq_append",
        "uq_read",      "node_register", "node_heartbeat", "node_list",
        "group_create_many", "seg_take_many", "uq_last",
};

const char *
store_op_name(enum store_op op)
{
	return op < STORE_OP_COUNT ? op_names[op] : "?";
}

static int
w_pre(wrap_store *w, enum store_op op)
{
	return w->pre != NULL ? w->pre(w, op) : 0;
}

static int
w_post(wrap_store *w, enum store_op op, int rc)
{
	if (rc != 0) {
		snprintf(w->base.errmsg, sizeof(w->base.errmsg), "%s",
		         im_store_errmsg(w->inner));
	}
	return w->post != NULL ? w->post(w, op, rc) : rc;
}

#define FORWARD(OP, CALL)                                                      \
	do {                                                                   \
		wrap_store *w = (wrap_store *)st;                              \
		int rc_ = w_pre(w, OP);                                        \
		if (rc_ != 0) {                                                \
			return rc_;                                            \
		}                                                              \
		return w_post(w, OP, CALL);                                    \
	} while (0)

#define INNER (((wrap_store *)st)->inner)

static void
w_close(im_store *st)
{
	wrap_store *w = (wrap_store *)st;

	if (w->own_inner) {
		im_store_close(w->inner);
	}
	if (w->destroy != NULL) {
		w->destroy(w);
	}
}

static int
w_migrate(im_store *st, uint32_t *schema_out)
{
	FORWARD(STORE_OP_MIGRATE, im_store_migrate(INNER, schema_out));
}

static int
w_slot_load(im_store *st, im_kind kind, im_slot_cb cb, void *payload)
{
	FORWARD(STORE_OP_SLOT_LOAD,
	        im_store_slot_load(INNER, kind, cb, payload));
}

static int
w_slot_cas(im_store *st, im_kind kind, uint32_t slot, im_epoch expect,
           const char *owner, im_epoch *epoch_out)
{
	FORWARD(STORE_OP_SLOT_CAS,
	        im_store_slot_cas(INNER, kind, slot, expect, owner, epoch_out));
}

static int
w_seg_take(im_store *st, const im_seg_key *key, uint32_t step, im_seg *out)
{
	FORWARD(STORE_OP_SEG_TAKE, im_store_seg_take(INNER, key, step, out));
}

static int
w_msg_append(im_store *st, const im_fence *fences, size_t nfences,
             const im_msg *msgs, size_t n, im_append_result *res_out)
{
	FORWARD(STORE_OP_MSG_APPEND,
	        im_store_msg_append(INNER, fences, nfences, msgs, n, res_out));
}

static int
w_msg_read(im_store *st, im_gid conv, im_seq after, im_seq until,
           uint32_t limit, im_msg_cb cb, void *payload)
{
	FORWARD(STORE_OP_MSG_READ, im_store_msg_read(INNER, conv, after, until,
	                                             limit, cb, payload));
}

static int
w_msg_last(im_store *st, im_gid conv, im_seq at, im_msg_pos *pos_out)
{
	FORWARD(STORE_OP_MSG_LAST, im_store_msg_last(INNER, conv, at, pos_out));
}

static int
w_msg_find_dedup(im_store *st, im_gid conv, im_uid sender, uint64_t dedup_id,
                 im_msg *msg_out)
{
	FORWARD(STORE_OP_MSG_FIND_DEDUP,
	        im_store_msg_find_dedup(INNER, conv, sender, dedup_id,
	                                msg_out));
}

static int
w_group_create(im_store *st, const im_group *group)
{
	FORWARD(STORE_OP_GROUP_CREATE, im_store_group_create(INNER, group));
}

static int
w_group_lookup(im_store *st, im_gid gid, im_group *out)
{
	FORWARD(STORE_OP_GROUP_LOOKUP, im_store_group_lookup(INNER, gid, out));
}

static int
w_member_add(im_store *st, im_gid gid, im_uid user, bool *added_out)
{
	FORWARD(STORE_OP_MEMBER_ADD,
	        im_store_member_add(INNER, gid, user, added_out));
}

static int
w_member_remove(im_store *st, im_gid gid, im_uid user, bool *removed_out)
{
	FORWARD(STORE_OP_MEMBER_REMOVE,
	        im_store_member_remove(INNER, gid, user, removed_out));
}

static int
w_member_list(im_store *st, im_gid gid, im_uid_cb cb, void *payload)
{
	FORWARD(STORE_OP_MEMBER_LIST,
	        im_store_member_list(INNER, gid, cb, payload));
}

static int
w_conv_load(im_store *st, im_uid user, im_conv_cb cb, void *payload)
{
	FORWARD(STORE_OP_CONV_LOAD,
	        im_store_conv_load(INNER, user, cb, payload));
}

static int
w_conv_update(im_store *st, im_uid user, im_gid conv, im_seq read_seq,
              uint64_t read_ordinal, uint32_t flags)
{
	FORWARD(STORE_OP_CONV_UPDATE,
	        im_store_conv_update(INNER, user, conv, read_seq, read_ordinal,
	                             flags));
}

static int
w_uq_append(im_store *st, const im_fence *fences, size_t nfences,
            const im_uq_item *items, size_t n)
{
	FORWARD(STORE_OP_UQ_APPEND,
	        im_store_uq_append(INNER, fences, nfences, items, n));
}

static int
w_uq_read(im_store *st, im_uid user, im_seq after, uint32_t limit, im_uq_cb cb,
          void *payload)
{
	FORWARD(STORE_OP_UQ_READ,
	        im_store_uq_read(INNER, user, after, limit, cb, payload));
}

static int
w_node_register(im_store *st, const char *name, im_node_role role,
                const char *address, uint64_t now_ms, uint64_t *inc_out)
{
	FORWARD(STORE_OP_NODE_REGISTER,
	        im_store_node_register(INNER, name, role, address, now_ms,
	                               inc_out));
}

static int
w_node_heartbeat(im_store *st, const char *name, uint64_t now_ms)
{
	FORWARD(STORE_OP_NODE_HEARTBEAT,
	        im_store_node_heartbeat(INNER, name, now_ms));
}

static int
w_node_list(im_store *st, im_node_cb cb, void *payload)
{
	FORWARD(STORE_OP_NODE_LIST, im_store_node_list(INNER, cb, payload));
}

static int
w_group_create_many(im_store *st, const im_fence *fences, size_t nfences,
                    const im_group_new *groups, size_t n)
{
	FORWARD(STORE_OP_GROUP_CREATE_MANY,
	        im_store_group_create_many(INNER, fences, nfences, groups, n));
}

static int
w_seg_take_many(im_store *st, const im_seg_key *keys, size_t n,
                uint32_t step, im_seg *segs_out)
{
	FORWARD(STORE_OP_SEG_TAKE_MANY,
	        im_store_seg_take_many(INNER, keys, n, step, segs_out));
}

static int
w_uq_last(im_store *st, im_uid user, im_seq *last_out)
{
	FORWARD(STORE_OP_UQ_LAST, im_store_uq_last(INNER, user, last_out));
}

static const struct im_store_ops wrap_ops = {
        .version = IM_STORE_OPS_VERSION,
        .name = "wrap",
        .close = w_close,
        .migrate = w_migrate,
        .slot_load = w_slot_load,
        .slot_cas = w_slot_cas,
        .seg_take = w_seg_take,
        .msg_append = w_msg_append,
        .msg_read = w_msg_read,
        .msg_last = w_msg_last,
        .msg_find_dedup = w_msg_find_dedup,
        .group_create = w_group_create,
        .group_lookup = w_group_lookup,
        .member_add = w_member_add,
        .member_remove = w_member_remove,
        .member_list = w_member_list,
        .conv_load = w_conv_load,
        .conv_update = w_conv_update,
        .uq_append = w_uq_append,
        .uq_read = w_uq_read,
        /* version 2: an inner store without them answers IM_ENOTSUP */
        .node_register = w_node_register,
        .node_heartbeat = w_node_heartbeat,
        .node_list = w_node_list,
        /* version 4: as version 2, IM_ENOTSUP passes through */
        .group_create_many = w_group_create_many,
        .seg_take_many = w_seg_take_many,
        .uq_last = w_uq_last,
};

int
wrap_store_init(wrap_store *w, im_store *inner, bool own_inner)
{
	if (w == NULL || inner == NULL) {
		return IM_EINVAL;
	}
	w->ops = wrap_ops;
	/* Report the wrapped backend's name: suites print it. */
	w->ops.name = im_store_name(inner);
	w->inner = inner;
	w->own_inner = own_inner;
	return im_store_init(&w->base, &w->ops);
}
