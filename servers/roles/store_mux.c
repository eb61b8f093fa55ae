/*
 * store_mux: handles over one store that take one recursive mutex around
 * every op (see store_mux.h). The inner store's error message is copied
 * into the calling handle while the lock is held, so no thread ever reads
 * a message another thread is writing.
 */
#include "store_mux.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct store_mux {
	pthread_mutex_t lock;
	im_store *inner;
	struct im_store_ops ops; /* named after the inner store */
	unsigned long calls;     /* under lock */
	unsigned handles;        /* under lock */
};

struct mux_handle {
	im_store base; /* first, as in every backend */
	store_mux *m;
};

#define MUX(st) (((struct mux_handle *)(st))->m)

static void
mux_enter(im_store *st)
{
	store_mux *m = MUX(st);

	pthread_mutex_lock(&m->lock);
	m->calls++;
}

static int
mux_leave(im_store *st, int rc)
{
	store_mux *m = MUX(st);

	if (rc != IM_OK) {
		im_store_set_error(st, "%s", im_store_errmsg(m->inner));
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* Forward one op to the inner store through its public wrapper (which
 * answers IM_ENOTSUP for an op the inner backend lacks). */
#define FORWARD(CALL)                                                          \
	do {                                                                   \
		im_store *in_ = MUX(st)->inner;                                \
		mux_enter(st);                                                 \
		return mux_leave(st, CALL);                                    \
	} while (0)

static void
mux_close(im_store *st)
{
	store_mux *m = MUX(st);

	pthread_mutex_lock(&m->lock);
	m->handles--;
	pthread_mutex_unlock(&m->lock);
	free(st);
}

static int
mux_migrate(im_store *st, uint32_t *schema_out)
{
	FORWARD(im_store_migrate(in_, schema_out));
}

static int
mux_slot_load(im_store *st, im_kind kind, im_slot_cb cb, void *payload)
{
	FORWARD(im_store_slot_load(in_, kind, cb, payload));
}

static int
mux_slot_cas(im_store *st, im_kind kind, uint32_t slot, im_epoch expect,
             const char *owner, im_epoch *epoch_out)
{
	FORWARD(im_store_slot_cas(in_, kind, slot, expect, owner, epoch_out));
}

static int
mux_seg_take(im_store *st, const im_seg_key *key, uint32_t step,
             im_seg *seg_out)
{
	FORWARD(im_store_seg_take(in_, key, step, seg_out));
}

static int
mux_msg_append(im_store *st, const im_fence *fences, size_t nfences,
               const im_msg *msgs, size_t n, im_append_result *res_out)
{
	FORWARD(im_store_msg_append(in_, fences, nfences, msgs, n, res_out));
}

static int
mux_msg_read(im_store *st, im_gid conv, im_seq after, im_seq until,
             uint32_t limit, im_msg_cb cb, void *payload)
{
	FORWARD(im_store_msg_read(in_, conv, after, until, limit, cb,
	                          payload));
}

static int
mux_msg_last(im_store *st, im_gid conv, im_seq at, im_msg_pos *pos_out)
{
	FORWARD(im_store_msg_last(in_, conv, at, pos_out));
}

static int
mux_msg_find_dedup(im_store *st, im_gid conv, im_uid sender,
                   uint64_t dedup_id, im_msg *msg_out)
{
	FORWARD(im_store_msg_find_dedup(in_, conv, sender, dedup_id, msg_out));
}

static int
mux_group_create(im_store *st, const im_group *group)
{
	FORWARD(im_store_group_create(in_, group));
}

static int
mux_group_lookup(im_store *st, im_gid gid, im_group *out)
{
	FORWARD(im_store_group_lookup(in_, gid, out));
}

static int
mux_member_add(im_store *st, im_gid gid, im_uid user, bool *added_out)
{
	FORWARD(im_store_member_add(in_, gid, user, added_out));
}

static int
mux_member_remove(im_store *st, im_gid gid, im_uid user, bool *removed_out)
{
	FORWARD(im_store_member_remove(in_, gid, user, removed_out));
}

static int
mux_member_list(im_store *st, im_gid gid, im_uid_cb cb, void *payload)
{
	FORWARD(im_store_member_list(in_, gid, cb, payload));
}

static int
mux_conv_load(im_store *st, im_uid user, im_conv_cb cb, void *payload)
{
	FORWARD(im_store_conv_load(in_, user, cb, payload));
}

static int
mux_conv_update(im_store *st, im_uid user, im_gid conv, im_seq read_seq,
                uint64_t read_ordinal, uint32_t flags)
{
	FORWARD(im_store_conv_update(in_, user, conv, read_seq, read_ordinal,
	                             flags));
}

static int
mux_uq_append(im_store *st, const im_fence *fences, size_t nfences,
              const im_uq_item *items, size_t n)
{
	FORWARD(im_store_uq_append(in_, fences, nfences, items, n));
}

static int
mux_uq_read(im_store *st, im_uid user, im_seq after, uint32_t limit,
            im_uq_cb cb, void *payload)
{
	FORWARD(im_store_uq_read(in_, user, after, limit, cb, payload));
}

static int
mux_node_register(im_store *st, const char *name, im_node_role role,
                  const char *address, uint64_t now_ms,
                  uint64_t *incarnation_out)
{
	FORWARD(im_store_node_register(in_, name, role, address, now_ms,
	                               incarnation_out));
}

static int
mux_node_heartbeat(im_store *st, const char *name, uint64_t now_ms)
{
	FORWARD(im_store_node_heartbeat(in_, name, now_ms));
}

static int
mux_node_list(im_store *st, im_node_cb cb, void *payload)
{
	FORWARD(im_store_node_list(in_, cb, payload));
}

static int
mux_slot_cas_many(im_store *st, im_kind kind, const uint32_t *slots,
                  const im_epoch *expect, size_t n, const char *owner,
                  im_epoch *epochs_out)
{
	FORWARD(im_store_slot_cas_many(in_, kind, slots, expect, n, owner,
	                               epochs_out));
}

static int
mux_group_create_many(im_store *st, const im_fence *fences, size_t nfences,
                      const im_group_new *groups, size_t n)
{
	FORWARD(im_store_group_create_many(in_, fences, nfences, groups, n));
}

static int
mux_seg_take_many(im_store *st, const im_seg_key *keys, size_t n,
                  uint32_t step, im_seg *segs_out)
{
	FORWARD(im_store_seg_take_many(in_, keys, n, step, segs_out));
}

static int
mux_uq_last(im_store *st, im_uid user, im_seq *last_out)
{
	FORWARD(im_store_uq_last(in_, user, last_out));
}

/* Every op of IM_STORE_OPS_VERSION: an op missing here would answer
 * IM_ENOTSUP through the mux and send callers to their fallbacks (some
 * unfenced). The assertion below catches a newer header. */
static const struct im_store_ops mux_ops = {
        .version = IM_STORE_OPS_VERSION,
        .name = "mux",
        .close = mux_close,
        .migrate = mux_migrate,
        .slot_load = mux_slot_load,
        .slot_cas = mux_slot_cas,
        .seg_take = mux_seg_take,
        .msg_append = mux_msg_append,
        .msg_read = mux_msg_read,
        .msg_last = mux_msg_last,
        .msg_find_dedup = mux_msg_find_dedup,
        .group_create = mux_group_create,
        .group_lookup = mux_group_lookup,
        .member_add = mux_member_add,
        .member_remove = mux_member_remove,
        .member_list = mux_member_list,
        .conv_load = mux_conv_load,
        .conv_update = mux_conv_update,
        .uq_append = mux_uq_append,
        .uq_read = mux_uq_read,
        .node_register = mux_node_register,
        .node_heartbeat = mux_node_heartbeat,
        .node_list = mux_node_list,
        .slot_cas_many = mux_slot_cas_many,
        .group_create_many = mux_group_create_many,
        .seg_take_many = mux_seg_take_many,
        .uq_last = mux_uq_last,
};

/* Written against version 4: a newer header has ops this file lacks. */
_Static_assert(IM_STORE_OPS_VERSION == 4,
               "store_mux.c: forward the new store ops");

int
store_mux_create(store_mux **out, im_store *inner)
{
	pthread_mutexattr_t attr;
	store_mux *m;
	int rc;

	if (out == NULL || inner == NULL) {
		return IM_EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		return IM_ENOMEM;
	}
	if (pthread_mutexattr_init(&attr) != 0) {
		free(m);
		return IM_ENOMEM;
	}
	(void)pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	rc = pthread_mutex_init(&m->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (rc != 0) {
		free(m);
		return IM_ENOMEM;
	}
	m->inner = inner;
	m->ops = mux_ops;
	/* Callers that look at the backend's name see the real one. */
	m->ops.name = im_store_name(inner);
	*out = m;
	return IM_OK;
}

int
store_mux_handle(store_mux *m, im_store **out)
{
	struct mux_handle *h;
	int rc;

	if (m == NULL || out == NULL) {
		return IM_EINVAL;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		return IM_ENOMEM;
	}
	h->m = m;
	rc = im_store_init(&h->base, &m->ops);
	if (rc != IM_OK) {
		free(h);
		return rc;
	}
	pthread_mutex_lock(&m->lock);
	m->handles++;
	pthread_mutex_unlock(&m->lock);
	*out = &h->base;
	return IM_OK;
}

unsigned long
store_mux_calls(store_mux *m)
{
	unsigned long n;

	if (m == NULL) {
		return 0;
	}
	pthread_mutex_lock(&m->lock);
	n = m->calls;
	pthread_mutex_unlock(&m->lock);
	return n;
}

void
store_mux_destroy(store_mux *m)
{
	if (m == NULL) {
		return;
	}
	/* A handle still open would point at freed memory: leak instead. */
	if (m->handles != 0) {
		return;
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
}
