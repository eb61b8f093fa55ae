/*
 * One decoded client frame to its handler (mosquitto's read_handle.c):
 * before login only Login and Resume are accepted.
 */
#include <pb_decode.h>

#include "connector_int.h"

/* A frame on a connection that has not logged in yet. */
static void
handle_anonymous(struct conn *c, const im_Envelope *env)
{
	uint64_t req_id = env->req_id;

	if (env->which_msg == im_Envelope_login_tag) {
		conn__handle_login(c, req_id, &env->msg.login);
	} else if (env->which_msg == im_Envelope_resume_tag) {
		conn__handle_resume(c, req_id, &env->msg.resume);
	} else if (env->which_msg == 0) {
		conn__fail(c, req_id, im_Code_ERR_BAD_REQUEST,
		           "empty envelope");
	} else {
		conn__fail(c, req_id, im_Code_ERR_NOT_LOGGED_IN,
		           "log in first");
	}
}

void
conn__handle_frame(struct conn *c, const uint8_t *payload, uint32_t len)
{
	connector *cn = c->cn;
	im_Envelope *env = cn->env;
	pb_istream_t is = pb_istream_from_buffer(payload, len);
	uint64_t req_id;

	cn->stats.frames_in++;
	if (!pb_decode(&is, im_Envelope_fields, env)) {
		conn__fail(c, 0, im_Code_ERR_BAD_REQUEST, PB_GET_ERROR(&is));
		return;
	}
	req_id = env->req_id;
	if (c->uid == 0) {
		handle_anonymous(c, env);
		return;
	}
	if (c->sess == NULL) {
		conn__fail(c, req_id, im_Code_ERR_SESSION, "session is gone");
		return;
	}
	switch (env->which_msg) {
	case im_Envelope_send_tag:
		conn__handle_send(c, req_id, &env->msg.send);
		break;
	case im_Envelope_deliver_ack_tag:
		(void)im_pushq_ack(&c->sess->q, env->msg.deliver_ack.group,
		                   env->msg.deliver_ack.seq);
		break;
	case im_Envelope_mark_read_tag:
		conn__handle_mark_read(c, req_id, &env->msg.mark_read);
		break;
	case im_Envelope_sync_tag:
		conn__handle_sync(c, req_id, &env->msg.sync);
		break;
	case im_Envelope_ping_tag: {
		im_Pong pong;

		pong.time_ms = env->msg.ping.time_ms;
		pong.server_time_ms = role_now_ms();
		conn__send(c, req_id, im_Envelope_pong_tag, im_Pong_fields,
		           &pong);
		break;
	}
	case im_Envelope_create_group_tag:
		conn__handle_create_group(c, req_id, &env->msg.create_group);
		break;
	case im_Envelope_add_member_tag:
		conn__handle_member_op(c, req_id, ROLE_OP_ADD_MEMBER,
		                       env->msg.add_member.group,
		                       env->msg.add_member.user);
		break;
	case im_Envelope_remove_member_tag:
		conn__handle_member_op(c, req_id, ROLE_OP_REMOVE_MEMBER,
		                       env->msg.remove_member.group,
		                       env->msg.remove_member.user);
		break;
	case im_Envelope_list_members_tag:
		conn__handle_list_members(c, req_id, &env->msg.list_members);
		break;
	case im_Envelope_login_tag:
	case im_Envelope_resume_tag:
		conn__error(c, req_id, im_Code_ERR_BAD_REQUEST,
		            "already logged in", 0, 0);
		break;
	default:
		conn__fail(c, req_id, im_Code_ERR_BAD_REQUEST,
		           "not a client request");
		break;
	}
}
