/*
 * Resume: a client back within the grace period gets its session (and
 * push queue) from memory, acks what its cursors say arrived and is sent
 * the rest; otherwise a new session is filled from the store, from each
 * cursor on. Separate from login for the replay.
 */
#include <string.h>

#include "connector_int.h"

struct replay_ctx {
	struct session *s;
	connector *cn;
	uint64_t now;
	bool dead;
};

/* A replay from the store fills at most 3/4 of the push queue: it must
 * not overflow the queue it is filling (that would drop the session it is
 * restoring); the client repairs the rest by prev_seq and Sync. */
static bool
replay_room(const struct replay_ctx *rc, size_t len)
{
	const connector_opts *o = &rc->cn->o;

	return im_pushq_count(&rc->s->q) < (size_t)o->pushq_items * 3 / 4 &&
	       im_pushq_bytes(&rc->s->q) + len <=
	               (size_t)o->pushq_bytes * 3 / 4;
}

static int
replay_msg_cb(const im_msg *m, void *payload)
{
	struct replay_ctx *rc = payload;
	connector *cn = rc->cn;
	size_t n;

	if (!replay_room(rc, IM_FRAME_HEADER + 64 + m->body_len)) {
		return 1;
	}
	memset(cn->dl, 0, sizeof(*cn->dl));
	conn__fill_deliver(cn->dl, m);
	n = conn__encode_frame(cn, 0, im_Envelope_deliver_tag,
	                       im_Deliver_fields, cn->dl);
	if (n == 0) {
		return 1;
	}
	if (!conn__session_push(rc->s, m->conv, m->seq, cn->obuf, (uint32_t)n,
	                        rc->now)) {
		rc->dead = true;
		return 1;
	}
	return 0;
}

static int
replay_uq_cb(const im_uq_item *item, void *payload)
{
	struct replay_ctx *rc = payload;
	size_t n;

	if (!replay_room(rc, IM_FRAME_HEADER + 64 + item->body_len)) {
		return 1;
	}
	n = conn__uevent_frame(rc->cn, item);
	if (n == 0) {
		return 0; /* an undecodable event: skip, do not wedge */
	}
	if (!conn__session_push(rc->s, IM_PUSHQ_USERQ, item->seq, rc->cn->obuf,
	                        (uint32_t)n, rc->now)) {
		rc->dead = true;
		return 1;
	}
	return 0;
}

/* Resume without the session in memory: replay each cursor's rest from
 * the store into the new session's queue (bounded, replay_room). */
static void
replay_from_store(connector *cn, struct session *s, const im_Resume *rs,
                  uint64_t now)
{
	struct user *u = s->user;
	struct replay_ctx rc = {s, cn, now, false};
	pb_size_t i;

	for (i = 0; i < rs->cursors_count && !rc.dead; i++) {
		const im_Cursor *cur = &rs->cursors[i];
		im_conv_entry ce;
		int r;

		if (cur->group == 0) {
			r = im_store_uq_read(cn->st, u->uid, cur->seq,
			                     cn->o.replay_limit, replay_uq_cb,
			                     &rc);
		} else if (im_convlist_lookup(u->convs, cur->group, &ce) ==
		           IM_OK) {
			r = im_store_msg_read(cn->st, cur->group, cur->seq,
			                      IM_SEQ_MAX, cn->o.replay_limit,
			                      replay_msg_cb, &rc);
		} else {
			continue; /* not a member (any more): nothing */
		}
		if (r < 0) {
			LOG_W("resume replay of %llu: %s",
			      (unsigned long long)cur->group,
			      im_store_errmsg(cn->st));
		}
	}
}

/* The session in memory that the client resumes, taken from the old
 * connection if that is still open; NULL if it is gone. */
static struct session *
session_reclaim(struct user *u, const uint8_t *id)
{
	struct session *s;

	for (s = u->sessions; s != NULL; s = s->next) {
		if (memcmp(s->id, id, SESSION_ID_LEN) == 0) {
			break;
		}
	}
	if (s != NULL && s->conn != NULL) {
		/* The client came back before we noticed its old
		 * connection died: the new one wins. */
		struct conn *old = s->conn;

		old->sess = NULL;
		s->conn = NULL;
		conn__close(old, "replaced by a resume");
	}
	return s;
}

void
conn__handle_resume(struct conn *c, uint64_t req_id, const im_Resume *rs)
{
	im_ResumeOk ok = im_ResumeOk_init_zero;
	struct user *u = conn__login_user(c, req_id, rs->token);
	struct session *s;
	uint64_t now = role_now_ms();
	pb_size_t i;

	if (u == NULL) {
		return;
	}
	s = session_reclaim(u, rs->session);
	ok.resumed = s != NULL;
	if (s == NULL && (s = conn__session_open(c, u, req_id)) == NULL) {
		return;
	}
	conn__session_attach(c, s);
	ok.user = u->uid;
	memcpy(ok.session, s->id, SESSION_ID_LEN);
	ok.server_time_ms = now;
	LOG_I("user %llu resumed from %s (%s)", (unsigned long long)u->uid,
	      c->peer, ok.resumed ? "from memory" : "from the store");
	conn__send(c, req_id, im_Envelope_resume_ok_tag, im_ResumeOk_fields,
	           &ok);
	if (!ok.resumed) {
		replay_from_store(c->cn, s, rs, now);
		return;
	}
	/* The cursors say what arrived: ack it, resend the rest. */
	for (i = 0; i < rs->cursors_count; i++) {
		(void)im_pushq_ack(&s->q, rs->cursors[i].group,
		                   rs->cursors[i].seq);
	}
	(void)im_pushq_shrink(&s->q, PUSHQ_KEEP_BYTES);
	/* Everything left is unacked: send it all, oldest first, as fast as
	 * the client reads. */
	conn__session_pump(s);
}
