/*
 * AddMember / RemoveMember: run at once against the store (after the
 * pending commits, to keep their order), fenced by the group's slot like
 * a commit, then the hot state and the target's user event. Its own file:
 * membership bypasses the group commit.
 */
#include "chatter_priv.h"

#include <stdio.h>
#include <string.h>

static void
emit_event(chatter *c, im_uid user, uint32_t type, const struct group *g,
           im_gid gid, const char *name, im_uid actor)
{
	role_uevent ev;

	memset(&ev, 0, sizeof(ev));
	ev.user = user;
	ev.type = type;
	ev.group = g != NULL ? g->gid : gid;
	ev.actor = actor;
	snprintf(ev.name, sizeof(ev.name), "%s", g != NULL ? g->name : name);
	if (type == UEV_JOINED && g != NULL) {
		/* Where the joiner's chain starts: the read pointer the
		 * store gave it, at the group's last message (the last
		 * committed: a batch in flight only adds later seqs). A
		 * client that was away Syncs from here; without it, the
		 * messages sent after the join waited for the next one. */
		ev.read_seq = g->last_seq;
		ev.read_ordinal = g->last_ord;
	}
	c->router->ops->user_events(c->router, &ev, 1);
}

/*
 * The store refused the write as stale: another Chatter owns the group's
 * slot now (we were paused, cut off, or a second process took the slots).
 * As after a fenced commit: reload the map, forget the slot's groups, and
 * the caller is answered ERR_UNAVAILABLE, so the client retries at the
 * new owner.
 */
static void
member_fenced(chatter *c, uint32_t slot)
{
	c->stats.stale++;
	(void)im_shard_load(c->map, c->st);
	chatter__drop_slot_now(c, slot);
}

/* Membership checks (the caller must be a member; only the creator or
 * the user may remove), the store write, then the hot state. */
void
chatter__do_member(chatter *c, const role_op *op)
{
	struct group *g = NULL;
	im_fence fence = {IM_KIND_GROUP, 0, 0};
	bool changed = false;
	int code, rc;

	if (op->group == 0 || op->target == 0) {
		chatter__reply_one(c, op, ROLE_ERR_BAD_REQUEST,
		                   "group and user needed", op->group);
		return;
	}
	code = chatter__group_get(c, op->group, &g);
	if (code != ROLE_OK) {
		chatter__reply_one(c, op, code, im_code_text(code), op->group);
		return;
	}
	if (!chatter__is_member(g, op->user)) {
		chatter__reply_one(c, op, ROLE_ERR_NOT_MEMBER,
		                   im_code_text(ROLE_ERR_NOT_MEMBER),
		                   op->group);
		return;
	}
	/* The disk is full and the pause runs: refused unwritten, the
	 * store not tried (store_full.h). */
	if (store_full_blocked(&c->full, role_now_ms(), 1)) {
		chatter__reply_one(c, op, ROLE_ERR_STORE_FULL,
		                   im_code_text(ROLE_ERR_STORE_FULL),
		                   op->group);
		return;
	}
	/* Fenced with the epoch the hot state was loaded under, as a
	 * commit is (batch.c): a slot lost since then writes nothing. */
	fence.slot = g->slot;
	fence.epoch = g->epoch;
	if (op->kind == ROLE_OP_ADD_MEMBER) {
		if (g->nmembers >= c->opts.max_members) {
			chatter__reply_one(c, op, ROLE_ERR_FULL,
			                   "group is full", op->group);
			return;
		}
		rc = im_store_member_add_fenced(c->st, &fence, 1, g->gid,
		                                op->target, &changed);
		if (rc == IM_OK &&
		    chatter__member_insert(c, g, op->target) != IM_OK) {
			/* Stored but not cached: reload on next use. */
			chatter_drop_slot(c, g->slot);
			g = NULL;
		}
	} else {
		if (op->user != op->target && op->user != g->creator) {
			chatter__reply_one(
			        c, op, ROLE_ERR_NOT_MEMBER,
			        "only the creator or the user may remove",
			        op->group);
			return;
		}
		rc = im_store_member_remove_fenced(c->st, &fence, 1, g->gid,
		                                   op->target, &changed);
		if (rc == IM_OK) {
			chatter__member_erase(g, op->target);
		}
	}
	if (rc == IM_ENOSPC) {
		store_full_failed(&c->full, role_now_ms(), 1, "chatter",
		                  im_store_errmsg(c->st));
	} else if (rc == IM_ESTALE) {
		LOG_W("chatter: membership of %llu fenced: %s",
		      (unsigned long long)op->group, im_store_errmsg(c->st));
		member_fenced(c, fence.slot);
		g = NULL;
	} else if (rc != IM_OK) {
		LOG_W("chatter: membership of %llu: %s (%s)",
		      (unsigned long long)op->group, im_strerror(rc),
		      im_store_errmsg(c->st));
	}
	if (rc != IM_OK) {
		code = (int)im_code_of_err(rc);
		chatter__reply_one(c, op, code,
		                   role_store_err_text((uint32_t)code),
		                   op->group);
		return;
	}
	store_full_ok(&c->full, role_now_ms(), "chatter");
	chatter__reply_one(c, op, ROLE_OK, NULL, op->group);
	if (changed) {
		emit_event(c, op->target,
		           op->kind == ROLE_OP_ADD_MEMBER ? UEV_JOINED
		                                          : UEV_LEFT,
		           g, op->group, "", op->user);
	}
}
