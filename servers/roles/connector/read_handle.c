/*
 * One decoded client frame to its handler (mosquitto's read_handle.c):
 * before login only Login and Resume are accepted.
 *
 * A frame that does not decode closes the connection, except a Send
 * whose body is over the limit: nanopb refuses a bytes field over its
 * bound (im.options) without saying which request it was, so a light
 * second pass over the frame's fields (probe) recovers the req_id, the
 * kind and the Send's group, dedup id and body length, and that request
 * alone is answered ERR_TOO_BIG. Why a second pass and not a bigger
 * bound checked after decoding: the structs keep their fixed size (the
 * Envelope is decoded into one buffer per Connector, and im_Send is the
 * client's too), the limit stays where every other bound is, and only a
 * failed decode pays for it. A frame over frame_max is refused before
 * any of this (conn.c) and still closes: its bytes were never read.
 */
#include <stdio.h>
#include <string.h>

#include <pb_decode.h>

#include "connector_int.h"

/* The body limit of a Send: the decoder's bound, the store's too. */
#define SEND_BODY_MAX sizeof(((im_Send *)0)->body.bytes)
_Static_assert(SEND_BODY_MAX == IM_MSG_BODY_MAX, "im.options Send.body");

/* What a frame that failed to decode was, as far as its fields say. */
struct probe {
	uint64_t req_id;
	uint32_t kind; /* the oneof's tag (a length-delimited field), or 0 */
	uint64_t group;
	uint64_t dedup_id;
	uint32_t body_len;
};

/* The fields of a Send (skipping the body's bytes). */
static bool
probe_send(pb_istream_t *is, struct probe *p)
{
	pb_istream_t sub;
	bool ok = pb_make_string_substream(is, &sub);

	while (ok && sub.bytes_left > 0) {
		pb_wire_type_t wt;
		uint32_t tag;
		bool eof;

		ok = pb_decode_tag(&sub, &wt, &tag, &eof);
		if (!ok) {
			break;
		}
		if (tag == im_Send_group_tag && wt == PB_WT_VARINT) {
			ok = pb_decode_varint(&sub, &p->group);
		} else if (tag == im_Send_dedup_id_tag && wt == PB_WT_VARINT) {
			ok = pb_decode_varint(&sub, &p->dedup_id);
		} else if (tag == im_Send_body_tag && wt == PB_WT_STRING) {
			ok = pb_decode_varint32(&sub, &p->body_len) &&
			     pb_read(&sub, NULL, p->body_len);
		} else {
			ok = pb_skip_field(&sub, wt);
		}
	}
	return pb_close_string_substream(is, &sub) && ok;
}

/* The req_id and kind of an Envelope, and a Send's fields; false when
 * even that much is not well-formed protobuf. */
static bool
probe(const uint8_t *payload, uint32_t len, struct probe *p)
{
	pb_istream_t is = pb_istream_from_buffer(payload, len);

	memset(p, 0, sizeof(*p));
	while (is.bytes_left > 0) {
		pb_wire_type_t wt;
		uint32_t tag;
		bool eof, ok;

		if (!pb_decode_tag(&is, &wt, &tag, &eof)) {
			return false;
		}
		if (tag == im_Envelope_req_id_tag && wt == PB_WT_VARINT) {
			ok = pb_decode_varint(&is, &p->req_id);
		} else if (tag == im_Envelope_send_tag && wt == PB_WT_STRING) {
			p->kind = tag;
			ok = probe_send(&is, p);
		} else {
			if (wt == PB_WT_STRING) {
				p->kind = tag;
			}
			ok = pb_skip_field(&is, wt);
		}
		if (!ok) {
			return false;
		}
	}
	return true;
}

/* The frame did not decode: a logged-in client's over-long Send gets
 * ERR_TOO_BIG for that request (the connection stays); anything else
 * is a broken client, failed with the decoder's message. */
static void
decode_failed(struct conn *c, const uint8_t *payload, uint32_t len,
              const char *why)
{
	struct probe p;

	if (c->sess != NULL && probe(payload, len, &p) &&
	    p.kind == im_Envelope_send_tag && p.body_len > SEND_BODY_MAX) {
		char text[64];

		snprintf(text, sizeof(text), "body over %zu bytes",
		         SEND_BODY_MAX);
		conn__error(c, p.req_id, im_Code_ERR_TOO_BIG, text, p.group,
		            p.dedup_id);
		return;
	}
	conn__fail(c, 0, im_Code_ERR_BAD_REQUEST, why);
}

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
		decode_failed(c, payload, len, PB_GET_ERROR(&is));
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
		(void)im_pushq_shrink(&c->sess->q, PUSHQ_KEEP_BYTES);
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
