/*
 * Send, and the way every group request goes: conn__submit routes a
 * role_op to the Chatters, connector_reply turns their answers (SendAck,
 * GroupCreated, done or an error) into frames for the connection that
 * asked, if it is still open.
 */
#include <string.h>

#include "connector_int.h"

void
conn__submit(struct conn *c, role_op *op, uint64_t req_id)
{
	connector *cn = c->cn;

	op->route.connector = cn->index;
	op->route.tag = c->tag;
	op->route.req_id = req_id;
	op->user = c->uid;
	c->inflight++; /* before: a router may answer inside submit */
	cn->router->ops->submit(cn->router, op, 1);
}

void
conn__handle_send(struct conn *c, uint64_t req_id, const im_Send *sd)
{
	role_op op;

	if (sd->group == 0 || sd->dedup_id == 0) {
		conn__error(c, req_id, im_Code_ERR_BAD_REQUEST,
		            "send needs a group and a nonzero dedup_id",
		            sd->group, sd->dedup_id);
		return;
	}
	memset(&op, 0, sizeof(op));
	op.kind = ROLE_OP_SEND;
	op.group = sd->group;
	op.dedup_id = sd->dedup_id;
	op.reply_to = sd->reply_to;
	op.type = sd->type;
	op.body_len = sd->body.size;
	op.body = sd->body.bytes;
	conn__submit(c, &op, req_id);
}

void
connector_reply(connector *cn, const role_reply *reps, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const role_reply *r = &reps[i];
		struct conn *c = conn__by_tag(cn, r->route.tag);

		if (c == NULL || c->closing) {
			continue; /* the client retries with its dedup id */
		}
		if (r->code != ROLE_OK) {
			conn__error(c, r->route.req_id, r->code, r->text,
			            r->group, r->dedup_id);
		} else if (r->kind == ROLE_OP_SEND) {
			im_SendAck ack;

			ack.group = r->group;
			ack.dedup_id = r->dedup_id;
			ack.seq = r->seq;
			ack.time_ms = r->time_ms;
			ack.dup = r->dup;
			conn__send(c, r->route.req_id, im_Envelope_send_ack_tag,
			           im_SendAck_fields, &ack);
		} else if (r->kind == ROLE_OP_CREATE_GROUP) {
			im_GroupCreated gc;

			gc.group = r->group;
			gc.dedup_id = r->dedup_id;
			gc.dup = r->dup;
			conn__send(c, r->route.req_id,
			           im_Envelope_group_created_tag,
			           im_GroupCreated_fields, &gc);
		} else {
			conn__error(c, r->route.req_id, im_Code_OK, NULL,
			            r->group, 0);
		}
		conn__answered(c);
	}
}
