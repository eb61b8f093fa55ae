/*
 * Group requests: CreateGroup and Add/RemoveMember go to the Chatters
 * (answered through connector_reply, handle_send.c); ListMembers is read
 * from the store here, for members only.
 */
#include <string.h>

#include "connector_int.h"

#define MEMBERS_MAX 256

void
conn__handle_create_group(struct conn *c, uint64_t req_id,
                          const im_CreateGroup *cg)
{
	role_op op;

	memset(&op, 0, sizeof(op));
	op.kind = ROLE_OP_CREATE_GROUP;
	op.dedup_id = cg->dedup_id;
	op.name = cg->name;
	op.members = cg->members;
	op.nmembers = cg->members_count;
	conn__submit(c, &op, req_id);
}

void
conn__handle_member_op(struct conn *c, uint64_t req_id, role_op_kind kind,
                       im_gid g, im_uid target)
{
	role_op op;

	if (g == 0 || target == 0) {
		conn__error(c, req_id, im_Code_ERR_BAD_REQUEST,
		            "group and user needed", g, 0);
		return;
	}
	memset(&op, 0, sizeof(op));
	op.kind = kind;
	op.group = g;
	op.target = target;
	conn__submit(c, &op, req_id);
}

bool
conn__is_member(struct conn *c, im_gid g)
{
	struct user *u = c->sess != NULL ? c->sess->user : NULL;
	im_conv_entry e;

	return u != NULL && u->convs != NULL && g != 0 &&
	       im_convlist_lookup(u->convs, g, &e) == IM_OK;
}

struct members_ctx {
	im_Members *m;
	im_uid after;
};

static int
members_cb(im_uid user, void *payload)
{
	struct members_ctx *mc = payload;

	if (user <= mc->after) {
		return 0;
	}
	if (mc->m->users_count == MEMBERS_MAX) {
		mc->m->more = true;
		return 1;
	}
	mc->m->users[mc->m->users_count++] = user;
	return 0;
}

void
conn__handle_list_members(struct conn *c, uint64_t req_id,
                          const im_ListMembers *lm)
{
	connector *cn = c->cn;
	struct members_ctx mc;
	int rc;

	if (!conn__is_member(c, lm->group)) {
		conn__error(c, req_id, im_Code_ERR_NOT_MEMBER,
		            "not a member of the group", lm->group, 0);
		return;
	}
	memset(cn->members, 0, sizeof(*cn->members));
	cn->members->group = lm->group;
	mc.m = cn->members;
	mc.after = lm->after_user;
	rc = im_store_member_list(cn->st, lm->group, members_cb, &mc);
	if (rc < 0) {
		conn__error(c, req_id, im_Code_ERR_UNAVAILABLE,
		            "store unavailable", lm->group, 0);
		return;
	}
	conn__send(c, req_id, im_Envelope_members_tag, im_Members_fields,
	           cn->members);
}
