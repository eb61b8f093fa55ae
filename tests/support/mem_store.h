/*
 * A small in-memory store backend for unit tests of the core modules that
 * only need the slot table and the ID counters (shard, idseg). It is a real
 * table with real compare-and-set and counter semantics, not canned
 * answers, plus fault injection:
 *  - fail_rc/fail_in: the fail_in-th call from now of a counted op
 *    (slot_load, slot_cas, seg_take) returns fail_rc; fail_sticky keeps
 *    failing after that;
 *  - load_fail_after: slot_load streams that many rows, then fails with
 *    IM_EUNAVAIL (a connection lost mid-read);
 *  - calls[]: calls per op, to check that a call did not reach the store.
 * Every other op returns IM_ENOTSUP. Header-only so each unit test can
 * include it without touching the shared support library.
 */
#ifndef IM_TEST_MEM_STORE_H
#define IM_TEST_MEM_STORE_H

#include "im/sys/store.h"

#include <stdlib.h>
#include <string.h>

#define MEM_STORE_SLOTS 4096
#define MEM_STORE_COUNTERS 64

enum { MEM_OP_SLOT_LOAD, MEM_OP_SLOT_CAS, MEM_OP_SEG_TAKE, MEM_OP_COUNT };

typedef struct mem_slot {
	bool used;
	im_epoch epoch;
	char owner[IM_OWNER_MAX + 1];
} mem_slot;

typedef struct mem_store {
	im_store base;
	mem_slot slots[IM_KIND_COUNT][MEM_STORE_SLOTS];
	struct {
		im_seg_key key;
		uint64_t max_id;
	} ctr[MEM_STORE_COUNTERS];
	size_t nctr;

	int fail_rc;
	unsigned fail_in;
	bool fail_sticky;
	long load_fail_after; /* < 0: off */
	unsigned long calls[MEM_OP_COUNT];
} mem_store;

static inline int
mem_store_fault(mem_store *m, int op)
{
	m->calls[op]++;
	if (m->fail_in == 0) {
		return IM_OK;
	}
	if (--m->fail_in > 0) {
		return IM_OK;
	}
	if (m->fail_sticky) {
		m->fail_in = 1;
	}
	im_store_set_error(&m->base, "injected failure %d", m->fail_rc);
	return m->fail_rc;
}

static inline void
mem_store_close(im_store *st)
{
	free(st);
}

static inline int
mem_store_migrate(im_store *st, uint32_t *schema_out)
{
	*schema_out = IM_STORE_SCHEMA_VERSION;
	return IM_OK;
}

static inline int
mem_store_slot_load(im_store *st, im_kind kind, im_slot_cb cb, void *payload)
{
	mem_store *m = (mem_store *)st;
	long rows = 0;
	uint32_t s;
	int rc;

	if ((rc = mem_store_fault(m, MEM_OP_SLOT_LOAD)) != IM_OK) {
		return rc;
	}
	for (s = 0; s < MEM_STORE_SLOTS; s++) {
		im_slot_row row;

		if (!m->slots[kind][s].used) {
			continue;
		}
		if (m->load_fail_after >= 0 && rows == m->load_fail_after) {
			im_store_set_error(st, "connection lost mid-read");
			return IM_EUNAVAIL;
		}
		row.kind = kind;
		row.slot = s;
		row.epoch = m->slots[kind][s].epoch;
		row.owner = m->slots[kind][s].owner;
		rows++;
		if ((rc = cb(&row, payload)) != 0) {
			return rc;
		}
	}
	return IM_OK;
}

static inline int
mem_store_slot_cas(im_store *st, im_kind kind, uint32_t slot, im_epoch expect,
		   const char *owner, im_epoch *epoch_out)
{
	mem_store *m = (mem_store *)st;
	mem_slot *sl;
	int rc;

	if ((rc = mem_store_fault(m, MEM_OP_SLOT_CAS)) != IM_OK) {
		return rc;
	}
	if (slot >= MEM_STORE_SLOTS) {
		im_store_set_error(st, "slot %u out of range", slot);
		return IM_EINVAL;
	}
	sl = &m->slots[kind][slot];
	if (sl->epoch != expect) {
		*epoch_out = sl->epoch;
		im_store_set_error(st, "slot %u at epoch %llu", slot,
				   (unsigned long long)sl->epoch);
		return IM_ECONFLICT;
	}
	sl->used = true;
	sl->epoch = expect + 1;
	strcpy(sl->owner, owner);
	*epoch_out = sl->epoch;
	return IM_OK;
}

static inline int
mem_store_seg_take(im_store *st, const im_seg_key *key, uint32_t step,
		   im_seg *seg_out)
{
	mem_store *m = (mem_store *)st;
	size_t i;
	int rc;

	if ((rc = mem_store_fault(m, MEM_OP_SEG_TAKE)) != IM_OK) {
		return rc;
	}
	for (i = 0; i < m->nctr; i++) {
		if (m->ctr[i].key.space == key->space &&
		    m->ctr[i].key.id == key->id) {
			break;
		}
	}
	if (i == m->nctr) {
		if (m->nctr == MEM_STORE_COUNTERS) {
			im_store_set_error(st, "counter table full");
			return IM_ERR;
		}
		m->ctr[i].key = *key;
		m->ctr[i].max_id = 0;
		m->nctr++;
	}
	if (m->ctr[i].max_id > UINT64_MAX - 1 - step) {
		im_store_set_error(st, "counter exhausted");
		return IM_ERR;
	}
	seg_out->first = m->ctr[i].max_id + 1;
	m->ctr[i].max_id += step;
	seg_out->last = m->ctr[i].max_id;
	return IM_OK;
}

#define MEM_STORE_NOTSUP(name, ...)                                          \
	static inline int mem_store_##name(im_store *st, __VA_ARGS__)        \
	{                                                                    \
		im_store_set_error(st, #name " not supported");              \
		return IM_ENOTSUP;                                           \
	}

MEM_STORE_NOTSUP(msg_append, const im_fence *f, size_t nf, const im_msg *m,
		 size_t n, im_append_result *r)
MEM_STORE_NOTSUP(msg_read, im_gid c, im_seq a, im_seq u, uint32_t l,
		 im_msg_cb cb, void *p)
MEM_STORE_NOTSUP(msg_last, im_gid c, im_seq a, im_msg_pos *p)
MEM_STORE_NOTSUP(msg_find_dedup, im_gid c, im_uid s, uint64_t d, im_msg *m)
MEM_STORE_NOTSUP(group_create, const im_group *g)
MEM_STORE_NOTSUP(group_lookup, im_gid g, im_group *o)
MEM_STORE_NOTSUP(member_add, im_gid g, im_uid u, bool *a)
MEM_STORE_NOTSUP(member_remove, im_gid g, im_uid u, bool *r)
MEM_STORE_NOTSUP(member_list, im_gid g, im_uid_cb cb, void *p)
MEM_STORE_NOTSUP(conv_load, im_uid u, im_conv_cb cb, void *p)
MEM_STORE_NOTSUP(conv_update, im_uid u, im_gid c, im_seq r, uint64_t o,
		 uint32_t f)
MEM_STORE_NOTSUP(uq_append, const im_fence *f, size_t nf,
		 const im_uq_item *i, size_t n)
MEM_STORE_NOTSUP(uq_read, im_uid u, im_seq a, uint32_t l, im_uq_cb cb,
		 void *p)

static const struct im_store_ops mem_store_ops = {
	.version = IM_STORE_OPS_VERSION,
	.name = "mem",
	.close = mem_store_close,
	.migrate = mem_store_migrate,
	.slot_load = mem_store_slot_load,
	.slot_cas = mem_store_slot_cas,
	.seg_take = mem_store_seg_take,
	.msg_append = mem_store_msg_append,
	.msg_read = mem_store_msg_read,
	.msg_last = mem_store_msg_last,
	.msg_find_dedup = mem_store_msg_find_dedup,
	.group_create = mem_store_group_create,
	.group_lookup = mem_store_group_lookup,
	.member_add = mem_store_member_add,
	.member_remove = mem_store_member_remove,
	.member_list = mem_store_member_list,
	.conv_load = mem_store_conv_load,
	.conv_update = mem_store_conv_update,
	.uq_append = mem_store_uq_append,
	.uq_read = mem_store_uq_read,
};

/* A fresh empty store; NULL on allocation failure. */
static inline mem_store *
mem_store_open(void)
{
	mem_store *m = calloc(1, sizeof(*m));

	if (m == NULL) {
		return NULL;
	}
	m->load_fail_after = -1;
	if (im_store_init(&m->base, &mem_store_ops) != IM_OK) {
		free(m);
		return NULL;
	}
	return m;
}

#endif
