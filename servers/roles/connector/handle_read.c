/*
 * MarkRead: move the user's read pointer (store first, fenced by the
 * user's slot, then the list) and
 * tell the user's other devices with a READ user event. The event is for
 * a user of this Connector, so it is appended and pushed here
 * (conn__uevent_raise), not sent round through a Router.
 */
#include <string.h>

#include "connector_int.h"

/*
 * The user's slot is not ours any more (the store fenced the write, or our
 * map already says so): reload the map and, when the user did move, send
 * this client to the new owner (or close it, with no address to give) as
 * a handover would; otherwise the client is told to retry.
 */
static void
read_fenced(struct conn *c, uint64_t req_id, im_gid group)
{
	connector *cn = c->cn;
	im_shard_entry e;
	const char *addr;

	(void)im_shard_load(cn->map, cn->st);
	e = im_shard_get(cn->map, IM_KIND_USER, c->sess->user->uid);
	if (e.epoch != 0 && strcmp(e.owner, cn->node) == 0) {
		conn__error(c, req_id, im_Code_ERR_UNAVAILABLE,
		            role_store_err_text(im_Code_ERR_UNAVAILABLE),
		            group, 0);
		return;
	}
	addr = conn__owner_address(cn, e.owner);
	if (addr != NULL) {
		conn__error(c, req_id, im_Code_ERR_UNAVAILABLE,
		            "user moved to another connector", group, 0);
		conn__redirect(c, 0, addr);
	} else {
		conn__fail(c, req_id, im_Code_ERR_UNAVAILABLE,
		           "user is not served here");
	}
}

void
conn__handle_mark_read(struct conn *c, uint64_t req_id, const im_MarkRead *mr)
{
	connector *cn = c->cn;
	struct user *u = c->sess->user;
	im_conv_entry e;
	im_msg_pos pos = {0, 0};
	role_uevent ev;
	bool moved = false;
	int code, rc;

	if (im_convlist_lookup(u->convs, mr->group, &e) != IM_OK) {
		conn__error(c, req_id, im_Code_ERR_NOT_MEMBER,
		            "not a member of the group", mr->group, 0);
		return;
	}
	/* The ordinal of the read position makes the unread count exact. */
	rc = im_store_msg_last(cn->st, mr->group,
	                       mr->seq < e.last.seq ? mr->seq : e.last.seq,
	                       &pos);
	if (rc != IM_OK && rc != IM_ENOTFOUND) {
		conn__error(c, req_id, im_Code_ERR_UNAVAILABLE,
		            "store unavailable", mr->group, 0);
		return;
	}
	if (pos.seq > e.read.seq) {
		/* Fenced by the user's slot: a Connector that lost the user
		 * (paused, cut off, replaced) moves no pointer. */
		im_shard_entry se = im_shard_get(cn->map, IM_KIND_USER, u->uid);
		im_fence fence = {IM_KIND_USER, se.slot, se.epoch};

		if (se.epoch == 0 || strcmp(se.owner, cn->node) != 0) {
			read_fenced(c, req_id, mr->group);
			return;
		}
		rc = im_store_conv_update_fenced(cn->st, &fence, 1, u->uid,
		                                 mr->group, pos.seq,
		                                 pos.ordinal, e.flags);
		if (rc == IM_ESTALE) {
			LOG_W("MarkRead of %llu fenced: %s",
			      (unsigned long long)u->uid,
			      im_store_errmsg(cn->st));
			read_fenced(c, req_id, mr->group);
			return;
		}
		if (rc != IM_OK) {
			/* A full disk is ERR_STORE_FULL: certain, the
			 * pointer did not move. */
			code = (int)im_code_of_err(rc);
			conn__error(c, req_id, code,
			            role_store_err_text((uint32_t)code),
			            mr->group, 0);
			return;
		}
		(void)im_convlist_read(u->convs, mr->group, pos.seq,
		                       pos.ordinal, &moved);
	}
	conn__error(c, req_id, im_Code_OK, NULL, mr->group, 0);
	if (moved) {
		memset(&ev, 0, sizeof(ev));
		ev.user = u->uid;
		ev.type = UEV_READ;
		ev.group = mr->group;
		ev.actor = u->uid;
		ev.read_seq = pos.seq;
		ev.read_ordinal = pos.ordinal;
		/* The user is (almost always) ours: apply it here, not
		 * through a Router back to this Connector. */
		conn__uevent_raise(cn, &ev);
	}
}
