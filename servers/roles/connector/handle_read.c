/*
 * MarkRead: move the user's read pointer (store first, then the list) and
 * tell the user's other devices with a READ user event. The event is for
 * a user of this Connector, so it is appended and pushed here
 * (conn__uevent_raise), not sent round through a Router.
 */
#include <string.h>

#include "connector_int.h"

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
		rc = im_store_conv_update(cn->st, u->uid, mr->group, pos.seq,
		                          pos.ordinal, e.flags);
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
