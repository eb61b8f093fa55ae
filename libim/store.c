/*
 * The im_store_* wrappers: argument checks shared by every backend, then a
 * call through the ops table. Ops newer than version 1 are gated here:
 * called only when the backend's ops->version is at least the version that
 * added them and the op is not NULL, else IM_ENOTSUP. The version test comes
 * first: a table compiled against an older header ends before the newer
 * ops, so they must not even be read. The batched ops (slot_cas_many,
 * group_create_many, seg_take_many, uq_last) and the fenced membership and
 * read-pointer ops never answer IM_ENOTSUP: on a backend without them the
 * wrapper runs their fallback (store_fallback.c), so callers carry none.
 */
#include "im/sys/store.h"
#include "internal.h"
#include "store/ops.h"
#include "store_fallback.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/*
 * The op list (store/ops.h) and struct im_store_ops must agree: the list
 * drives the forwarding stores, the version gates below and
 * im_store_init(), the struct is what backends fill. A mirror struct built
 * from the list has to have the struct's size and every op at the struct's
 * offset, so a member missing from either, or out of order, fails here.
 */
struct ops_mirror {
	uint32_t version;
	const char *name;
	void (*close)(im_store *st);
#define MIRROR_MEMBER(v, op, OP, params, args)                                 \
	int (*op)(im_store *st, IM__UNPAREN params);
	IM__STORE_OPS(MIRROR_MEMBER)
#undef MIRROR_MEMBER
};

_Static_assert(sizeof(struct ops_mirror) == sizeof(struct im_store_ops),
	       "store/ops.h and struct im_store_ops list different ops");
#define SAME_OFFSET(v, op, OP, params, args)                                   \
	_Static_assert(offsetof(struct ops_mirror, op) ==                      \
			       offsetof(struct im_store_ops, op),              \
		       "store/ops.h: " #op " is not where the struct has it");
IM__STORE_OPS(SAME_OFFSET)
#undef SAME_OFFSET

/* The version that added each op: OP_VERSION_<op>. */
enum {
#define OP_VERSION(v, op, OP, params, args) OP_VERSION_##op = (v),
	IM__STORE_OPS(OP_VERSION)
#undef OP_VERSION
};

/* The newest ops in the list are those of this header's version. */
#define AT_LATEST(v, op, OP, params, args) +((v) == IM_STORE_OPS_VERSION)
_Static_assert(0 IM__STORE_OPS(AT_LATEST) > 0,
	       "store/ops.h lacks the ops of IM_STORE_OPS_VERSION");
#undef AT_LATEST

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			if (st != NULL) {                                    \
				im_store_set_error(st, "invalid argument: %s", \
						   #cond);                   \
			}                                                    \
			return IM_EINVAL;                                    \
		}                                                            \
	} while (0)

/* An op added after version 1: the version test comes first, as a table
 * compiled against an older header ends before the op. */
#define HAS_OP(op)                                                             \
	(st->ops->version >= OP_VERSION_##op && st->ops->op != NULL)
#define NEED_OP(op)                                                            \
	do {                                                                   \
		if (!HAS_OP(op)) {                                             \
			im_store_set_error(st, "%s: " #op " not supported",    \
					   st->ops->name);                     \
			return IM_ENOTSUP;                                     \
		}                                                              \
	} while (0)

int
im_store_init(im_store *st, const struct im_store_ops *ops)
{
	if (st == NULL || ops == NULL || ops->version == 0 ||
	    ops->version > IM_STORE_OPS_VERSION || ops->name == NULL) {
		return IM_EINVAL;
	}
	if (ops->close == NULL) {
		return IM_EINVAL;
	}
	/* Every version 1 op is required. */
#define REQUIRE(v, op, OP, params, args)                                       \
	if ((v) == 1 && ops->op == NULL) {                                     \
		return IM_EINVAL;                                              \
	}
	IM__STORE_OPS(REQUIRE)
#undef REQUIRE
	st->ops = ops;
	st->errmsg[0] = '\0';
	return IM_OK;
}

void
im_store_set_error(im_store *st, const char *fmt, ...)
{
	va_list ap;

	if (st == NULL) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(st->errmsg, sizeof(st->errmsg), fmt, ap);
	va_end(ap);
}

void
im_store_close(im_store *st)
{
	if (st != NULL) {
		st->ops->close(st);
	}
}

const char *
im_store_name(const im_store *st)
{
	return st != NULL ? st->ops->name : "(null)";
}

const char *
im_store_errmsg(const im_store *st)
{
	return st != NULL ? st->errmsg : "no store";
}

int
im_store_migrate(im_store *st, uint32_t *schema_out)
{
	uint32_t ignored;

	CHECK(st != NULL);
	return st->ops->migrate(st, schema_out != NULL ? schema_out : &ignored);
}

static bool
kind_ok(im_kind kind)
{
	return kind == IM_KIND_USER || kind == IM_KIND_GROUP;
}

int
im_store_slot_load(im_store *st, im_kind kind, im_slot_cb cb, void *payload)
{
	CHECK(st != NULL);
	CHECK(kind_ok(kind));
	CHECK(cb != NULL);
	return st->ops->slot_load(st, kind, cb, payload);
}

int
im_store_slot_cas(im_store *st, im_kind kind, uint32_t slot, im_epoch expect,
		  const char *owner, im_epoch *epoch_out)
{
	im_epoch ignored;

	CHECK(st != NULL);
	CHECK(kind_ok(kind));
	CHECK(owner != NULL);
	CHECK(strlen(owner) <= IM_OWNER_MAX);
	CHECK(expect < UINT64_MAX);
	return st->ops->slot_cas(st, kind, slot, expect, owner,
				 epoch_out != NULL ? epoch_out : &ignored);
}

int
im_store_seg_take(im_store *st, const im_seg_key *key, uint32_t step,
		  im_seg *seg_out)
{
	CHECK(st != NULL);
	CHECK(key != NULL);
	CHECK(seg_out != NULL);
	CHECK(step > 0);
	CHECK(key->space == IM_SEG_GROUP_SEQ || key->space == IM_SEG_USER_SEQ ||
	      key->space == IM_SEG_GROUP_ID);
	return st->ops->seg_take(st, key, step, seg_out);
}

static int
check_fences(im_store *st, const im_fence *fences, size_t nfences)
{
	size_t i;

	CHECK(fences != NULL);
	CHECK(nfences > 0);
	for (i = 0; i < nfences; i++) {
		CHECK(kind_ok(fences[i].kind));
	}
	return IM_OK;
}

int
im_store_msg_append(im_store *st, const im_fence *fences, size_t nfences,
		    const im_msg *msgs, size_t n, im_append_result *res_out)
{
	size_t i;
	int rc;

	CHECK(st != NULL);
	CHECK(msgs != NULL);
	CHECK(res_out != NULL);
	CHECK(n > 0);
	if ((rc = check_fences(st, fences, nfences)) != IM_OK) {
		return rc;
	}
	for (i = 0; i < n; i++) {
		const im_msg *m = &msgs[i];

		CHECK(m->conv != 0 && m->seq != 0 && m->sender != 0);
		CHECK(m->ordinal != 0);
		CHECK(m->prev_seq < m->seq);
		CHECK(m->seq <= (uint64_t)INT64_MAX);
		CHECK(m->ordinal <= (uint64_t)INT64_MAX);
		CHECK(m->body_len <= IM_MSG_BODY_MAX);
		CHECK(m->body_len == 0 || m->body != NULL);
	}
	return st->ops->msg_append(st, fences, nfences, msgs, n, res_out);
}

int
im_store_msg_read(im_store *st, im_gid conv, im_seq after, im_seq until,
		  uint32_t limit, im_msg_cb cb, void *payload)
{
	CHECK(st != NULL);
	CHECK(conv != 0);
	CHECK(cb != NULL);
	if (limit == 0 || limit > IM_STORE_READ_LIMIT_MAX) {
		limit = IM_STORE_READ_LIMIT_MAX;
	}
	if (until <= after) {
		return IM_OK;
	}
	return st->ops->msg_read(st, conv, after, until, limit, cb, payload);
}

int
im_store_msg_last(im_store *st, im_gid conv, im_seq at, im_msg_pos *pos_out)
{
	CHECK(st != NULL);
	CHECK(conv != 0);
	CHECK(pos_out != NULL);
	pos_out->seq = 0;
	pos_out->ordinal = 0;
	return st->ops->msg_last(st, conv, at, pos_out);
}

int
im_store_msg_find_dedup(im_store *st, im_gid conv, im_uid sender,
			uint64_t dedup_id, im_msg *msg_out)
{
	CHECK(st != NULL);
	CHECK(conv != 0 && sender != 0);
	CHECK(msg_out != NULL);
	return st->ops->msg_find_dedup(st, conv, sender, dedup_id, msg_out);
}

int
im_store_group_create(im_store *st, const im_group *group)
{
	CHECK(st != NULL);
	CHECK(group != NULL);
	CHECK(group->gid != 0);
	CHECK(memchr(group->name, '\0', sizeof(group->name)) != NULL);
	return st->ops->group_create(st, group);
}

int
im_store_group_lookup(im_store *st, im_gid gid, im_group *out)
{
	CHECK(st != NULL);
	CHECK(gid != 0);
	CHECK(out != NULL);
	return st->ops->group_lookup(st, gid, out);
}

int
im_store_member_add(im_store *st, im_gid gid, im_uid user, bool *added_out)
{
	bool ignored;

	CHECK(st != NULL);
	CHECK(gid != 0 && user != 0);
	return st->ops->member_add(st, gid, user,
				   added_out != NULL ? added_out : &ignored);
}

int
im_store_member_remove(im_store *st, im_gid gid, im_uid user, bool *removed_out)
{
	bool ignored;

	CHECK(st != NULL);
	CHECK(gid != 0 && user != 0);
	return st->ops->member_remove(st, gid, user,
				      removed_out != NULL ? removed_out
							  : &ignored);
}

int
im_store_member_list(im_store *st, im_gid gid, im_uid_cb cb, void *payload)
{
	CHECK(st != NULL);
	CHECK(gid != 0);
	CHECK(cb != NULL);
	return st->ops->member_list(st, gid, cb, payload);
}

int
im_store_conv_load(im_store *st, im_uid user, im_conv_cb cb, void *payload)
{
	CHECK(st != NULL);
	CHECK(user != 0);
	CHECK(cb != NULL);
	return st->ops->conv_load(st, user, cb, payload);
}

int
im_store_conv_update(im_store *st, im_uid user, im_gid conv, im_seq read_seq,
		     uint64_t read_ordinal, uint32_t flags)
{
	CHECK(st != NULL);
	CHECK(user != 0 && conv != 0);
	return st->ops->conv_update(st, user, conv, read_seq, read_ordinal,
				    flags);
}

int
im_store_uq_append(im_store *st, const im_fence *fences, size_t nfences,
		   const im_uq_item *items, size_t n)
{
	size_t i;
	int rc;

	CHECK(st != NULL);
	CHECK(items != NULL);
	CHECK(n > 0);
	if ((rc = check_fences(st, fences, nfences)) != IM_OK) {
		return rc;
	}
	for (i = 0; i < n; i++) {
		CHECK(items[i].user != 0 && items[i].seq != 0);
		CHECK(items[i].seq <= (uint64_t)INT64_MAX);
		CHECK(items[i].body_len <= IM_UQ_BODY_MAX);
		CHECK(items[i].body_len == 0 || items[i].body != NULL);
	}
	return st->ops->uq_append(st, fences, nfences, items, n);
}

int
im_store_uq_read(im_store *st, im_uid user, im_seq after, uint32_t limit,
		 im_uq_cb cb, void *payload)
{
	CHECK(st != NULL);
	CHECK(user != 0);
	CHECK(cb != NULL);
	if (limit == 0 || limit > IM_STORE_READ_LIMIT_MAX) {
		limit = IM_STORE_READ_LIMIT_MAX;
	}
	return st->ops->uq_read(st, user, after, limit, cb, payload);
}

/* Version 2: cluster membership. */

static bool
node_name_ok(const char *name)
{
	size_t n;

	if (name == NULL) {
		return false;
	}
	n = strlen(name);
	return n > 0 && n <= IM_NODE_NAME_MAX;
}

int
im_store_node_register(im_store *st, const char *name, im_node_role role,
		       const char *address, uint64_t now_ms,
		       uint64_t *incarnation_out)
{
	uint64_t ignored;

	CHECK(st != NULL);
	CHECK(node_name_ok(name));
	CHECK(role == IM_NODE_CONNECTOR || role == IM_NODE_ROUTER ||
	      role == IM_NODE_CHATTER);
	CHECK(address != NULL && address[0] != '\0');
	CHECK(strlen(address) <= IM_NODE_ADDR_MAX);
	CHECK(now_ms < (uint64_t)INT64_MAX);
	NEED_OP(node_register);
	return st->ops->node_register(st, name, role, address, now_ms,
				      incarnation_out != NULL ? incarnation_out
							      : &ignored);
}

int
im_store_node_heartbeat(im_store *st, const char *name, uint64_t now_ms)
{
	CHECK(st != NULL);
	CHECK(node_name_ok(name));
	CHECK(now_ms < (uint64_t)INT64_MAX);
	NEED_OP(node_heartbeat);
	return st->ops->node_heartbeat(st, name, now_ms);
}

int
im_store_node_list(im_store *st, im_node_cb cb, void *payload)
{
	CHECK(st != NULL);
	CHECK(cb != NULL);
	NEED_OP(node_list);
	return st->ops->node_list(st, cb, payload);
}

int
im_store_slot_cas_many(im_store *st, im_kind kind, const uint32_t *slots,
		       const im_epoch *expect, size_t n, const char *owner,
		       im_epoch *epochs_out)
{
	size_t i;

	CHECK(st != NULL);
	CHECK(kind_ok(kind));
	CHECK(slots != NULL && expect != NULL && epochs_out != NULL);
	CHECK(n > 0 && n <= IM_STORE_CAS_MANY_MAX);
	CHECK(owner != NULL);
	CHECK(strlen(owner) <= IM_OWNER_MAX);
	for (i = 0; i < n; i++) {
		CHECK(expect[i] < (im_epoch)INT64_MAX);
	}
	if (!HAS_OP(slot_cas_many)) {
		return im__store_slot_cas_one_by_one(st, kind, slots, expect, n,
						     owner, epochs_out);
	}
	return st->ops->slot_cas_many(st, kind, slots, expect, n, owner,
				      epochs_out);
}

/* Version 4: batched group creation and segment takes. */

static int
check_group_news(im_store *st, const im_fence *fences, size_t nfences,
		 const im_group_new *groups, size_t n)
{
	size_t i, j;
	int rc;

	CHECK(st != NULL);
	CHECK(groups != NULL);
	CHECK(n > 0 && n <= IM_STORE_CREATE_MANY_MAX);
	if ((rc = check_fences(st, fences, nfences)) != IM_OK) {
		return rc;
	}
	for (i = 0; i < n; i++) {
		const im_group_new *g = &groups[i];

		CHECK(g->group.gid != 0);
		CHECK(memchr(g->group.name, '\0', sizeof(g->group.name)) !=
		      NULL);
		CHECK(g->nmembers <= IM_GROUP_NEW_MEMBERS_MAX);
		CHECK(g->nmembers == 0 || g->members != NULL);
		for (j = 0; j < g->nmembers; j++) {
			CHECK(g->members[j] != 0);
		}
	}
	/* Distinct gids: n^2 compares, at most ~0.5 M for the largest
	 * batch (IM_STORE_CREATE_MANY_MAX), and no memory to allocate. */
	for (i = 1; i < n; i++) {
		for (j = 0; j < i; j++) {
			CHECK(groups[i].group.gid != groups[j].group.gid);
		}
	}
	return IM_OK;
}

int
im_store_group_create_many(im_store *st, const im_fence *fences,
			   size_t nfences, const im_group_new *groups,
			   size_t n)
{
	int rc = check_group_news(st, fences, nfences, groups, n);

	if (rc != IM_OK) {
		return rc;
	}
	if (!HAS_OP(group_create_many)) {
		return im__store_group_create_one_by_one(st, fences, nfences,
							 groups, n, NULL);
	}
	return st->ops->group_create_many(st, fences, nfences, groups, n);
}

int
im_store_group_create_each(im_store *st, const im_fence *fences,
			   size_t nfences, const im_group_new *groups,
			   size_t n, int *rcs_out)
{
	size_t k;
	int rc;

	CHECK(rcs_out != NULL);
	if ((rc = check_group_news(st, fences, nfences, groups, n)) != IM_OK) {
		return rc;
	}
	if (!HAS_OP(group_create_many)) {
		return im__store_group_create_one_by_one(st, fences, nfences,
							 groups, n, rcs_out);
	}
	/* All or nothing: every group shares the batch's outcome. */
	rc = st->ops->group_create_many(st, fences, nfences, groups, n);
	for (k = 0; k < n; k++) {
		rcs_out[k] = rc;
	}
	return rc;
}

/* Version 5: keyed group creation. No fallback: without a durable
 * unique key a retried create would make a second group, which is what
 * the key is for; the caller hears IM_ENOTSUP and decides. */
int
im_store_group_create_dedup(im_store *st, const im_fence *fences,
			    size_t nfences, const im_group_new *groups,
			    const uint64_t *dedup_ids, size_t n,
			    im_group_created *res_out)
{
	size_t i, j;
	int rc;

	CHECK(dedup_ids != NULL && res_out != NULL);
	if ((rc = check_group_news(st, fences, nfences, groups, n)) != IM_OK) {
		return rc;
	}
	for (i = 1; i < n; i++) {
		for (j = 0; j < i && dedup_ids[i] != 0; j++) {
			CHECK(dedup_ids[i] != dedup_ids[j] ||
			      groups[i].group.creator !=
				      groups[j].group.creator);
		}
	}
	memset(res_out, 0, n * sizeof(*res_out));
	if (!HAS_OP(group_create_dedup)) {
		im_store_set_error(st, "%s: no keyed group creation "
				   "(store ops version %u < 5)",
				   st->ops->name, (unsigned)st->ops->version);
		return IM_ENOTSUP;
	}
	return st->ops->group_create_dedup(st, fences, nfences, groups,
					   dedup_ids, n, res_out);
}

int
im_store_seg_take_many(im_store *st, const im_seg_key *keys, size_t n,
		       uint32_t step, im_seg *segs_out)
{
	size_t i, j;

	CHECK(st != NULL);
	CHECK(keys != NULL && segs_out != NULL);
	CHECK(n > 0 && n <= IM_STORE_SEG_MANY_MAX);
	CHECK(step > 0);
	for (i = 0; i < n; i++) {
		CHECK(keys[i].space == IM_SEG_GROUP_SEQ ||
		      keys[i].space == IM_SEG_USER_SEQ ||
		      keys[i].space == IM_SEG_GROUP_ID);
	}
	for (i = 1; i < n; i++) {
		for (j = 0; j < i; j++) {
			CHECK(keys[i].space != keys[j].space ||
			      keys[i].id != keys[j].id);
		}
	}
	if (!HAS_OP(seg_take_many)) {
		return im__store_seg_take_one_by_one(st, keys, n, step,
						     segs_out);
	}
	return st->ops->seg_take_many(st, keys, n, step, segs_out);
}

int
im_store_uq_last(im_store *st, im_uid user, im_seq *last_out)
{
	CHECK(st != NULL);
	CHECK(user != 0);
	CHECK(last_out != NULL);
	*last_out = 0;
	if (!HAS_OP(uq_last)) {
		return im__store_uq_last_scan(st, user, last_out);
	}
	return st->ops->uq_last(st, user, last_out);
}

/* Version 6: fenced membership and read pointers. */

int
im_store_member_add_fenced(im_store *st, const im_fence *fences,
			   size_t nfences, im_gid gid, im_uid user,
			   bool *added_out)
{
	bool ignored;
	int rc;

	CHECK(st != NULL);
	CHECK(gid != 0 && user != 0);
	if ((rc = check_fences(st, fences, nfences)) != IM_OK) {
		return rc;
	}
	added_out = added_out != NULL ? added_out : &ignored;
	if (!HAS_OP(member_add_fenced)) {
		rc = im__store_fences_hold(st, fences, nfences);
		return rc != IM_OK ? rc
				   : st->ops->member_add(st, gid, user,
							 added_out);
	}
	return st->ops->member_add_fenced(st, fences, nfences, gid, user,
					  added_out);
}

int
im_store_member_remove_fenced(im_store *st, const im_fence *fences,
			      size_t nfences, im_gid gid, im_uid user,
			      bool *removed_out)
{
	bool ignored;
	int rc;

	CHECK(st != NULL);
	CHECK(gid != 0 && user != 0);
	if ((rc = check_fences(st, fences, nfences)) != IM_OK) {
		return rc;
	}
	removed_out = removed_out != NULL ? removed_out : &ignored;
	if (!HAS_OP(member_remove_fenced)) {
		rc = im__store_fences_hold(st, fences, nfences);
		return rc != IM_OK ? rc
				   : st->ops->member_remove(st, gid, user,
							    removed_out);
	}
	return st->ops->member_remove_fenced(st, fences, nfences, gid, user,
					     removed_out);
}

int
im_store_conv_update_fenced(im_store *st, const im_fence *fences,
			    size_t nfences, im_uid user, im_gid conv,
			    im_seq read_seq, uint64_t read_ordinal,
			    uint32_t flags)
{
	int rc;

	CHECK(st != NULL);
	CHECK(user != 0 && conv != 0);
	if ((rc = check_fences(st, fences, nfences)) != IM_OK) {
		return rc;
	}
	if (!HAS_OP(conv_update_fenced)) {
		rc = im__store_fences_hold(st, fences, nfences);
		return rc != IM_OK ? rc
				   : st->ops->conv_update(st, user, conv,
							  read_seq,
							  read_ordinal, flags);
	}
	return st->ops->conv_update_fenced(st, fences, nfences, user, conv,
					   read_seq, read_ordinal, flags);
}
