/*
 * Resume: a client back within the grace period gets its session (and
 * push queue) from memory, acks what its cursors say arrived and is sent
 * the rest; otherwise a new session is filled from the store, from each
 * cursor on, bounded, and ResumeOk says where that replay stops
 * (replay_ends) so that the client Syncs the rest (docs/protocol.md,
 * "Resume"). Separate from login for the replay.
 */
#include <string.h>

#include "connector_int.h"

struct replay_ctx {
	struct session *s;
	connector *cn;
	uint64_t now;
	bool dead;
	/* The cursor being replayed: */
	uint32_t n;   /* items pushed */
	im_seq last;  /* the last seq pushed (the cursor's own before any) */
	bool cut;     /* stopped before the end: more waits in the store */
};

/* A replay from the store fills at most 3/4 of the push queue: it must
 * not overflow the queue it is filling (that would drop the session it is
 * restoring); what it leaves is marked in ResumeOk.replay_ends and the
 * client Syncs it. */
static bool
replay_room(const struct replay_ctx *rc, size_t len)
{
	const connector_opts *o = &rc->cn->o;

	return im_pushq_count(&rc->s->q) < (size_t)o->pushq_items * 3 / 4 &&
	       im_pushq_bytes(&rc->s->q) + len <=
	               (size_t)o->pushq_bytes * 3 / 4;
}

/* May the replay push one more item of len bytes for this cursor? The
 * store read asks for replay_limit + 1 items, so the one over the limit
 * (or one there is no room for) says that the replay is cut. */
static bool
replay_take(struct replay_ctx *rc, size_t len)
{
	if (rc->n >= rc->cn->o.replay_limit || !replay_room(rc, len)) {
		rc->cut = true;
		return false;
	}
	return true;
}

/* Queue one replayed frame (cn->obuf, n bytes) for seq of conv. */
static int
replay_push(struct replay_ctx *rc, im_gid conv, im_seq seq, size_t n)
{
	if (!conn__session_push(rc->s, conv, seq, rc->cn->obuf, (uint32_t)n,
	                        rc->now)) {
		rc->dead = true;
		return 1;
	}
	rc->n++;
	rc->last = seq;
	return 0;
}

static int
replay_msg_cb(const im_msg *m, void *payload)
{
	struct replay_ctx *rc = payload;
	connector *cn = rc->cn;
	size_t n;

	if (!replay_take(rc, IM_FRAME_HEADER + 64 + m->body_len)) {
		return 1;
	}
	memset(cn->dl, 0, sizeof(*cn->dl));
	conn__fill_deliver(cn->dl, m);
	n = conn__encode_frame(cn, 0, im_Envelope_deliver_tag,
	                       im_Deliver_fields, cn->dl);
	if (n == 0) {
		rc->cut = true; /* the client's Sync gets it, or says why */
		return 1;
	}
	return replay_push(rc, m->conv, m->seq, n);
}

static int
replay_uq_cb(const im_uq_item *item, void *payload)
{
	struct replay_ctx *rc = payload;
	size_t n;

	if (!replay_take(rc, IM_FRAME_HEADER + 64 + item->body_len)) {
		return 1;
	}
	/* The chain starts at the client's cursor: the store reads what
	 * follows it, so the first item's predecessor for the client is
	 * the cursor itself. */
	n = conn__uevent_frame(rc->cn, item, rc->last);
	if (n == 0) {
		return 0; /* an undecodable event: skip, do not wedge */
	}
	return replay_push(rc, IM_PUSHQ_USERQ, item->seq, n);
}

/* Replay one cursor's rest; false: nothing to replay (not a member). */
static bool
replay_cursor(struct replay_ctx *rc, struct user *u, const im_Cursor *cur)
{
	connector *cn = rc->cn;
	/* One over the limit: its arrival says there is more. */
	uint32_t want = cn->o.replay_limit + 1;
	int r;

	rc->n = 0;
	rc->last = cur->seq;
	rc->cut = false;
	if (cur->group == 0) {
		r = im_store_uq_read(cn->st, u->uid, cur->seq, want,
		                     replay_uq_cb, rc);
	} else if (im_convlist_lookup(u->convs, cur->group, NULL) == IM_OK) {
		r = im_store_msg_read(cn->st, cur->group, cur->seq, IM_SEQ_MAX,
		                      want, replay_msg_cb, rc);
	} else {
		return false; /* not a member (any more): nothing */
	}
	if (r < 0) {
		LOG_W("resume replay of %llu: %s",
		      (unsigned long long)cur->group, im_store_errmsg(cn->st));
		rc->cut = true; /* the client's Sync tries again */
	}
	return true;
}

/*
 * Resume without the session in memory: replay each cursor's rest from
 * the store into the new session's queue (bounded: replay_limit per
 * cursor, 3/4 of the queue in all). The session is not attached yet, so
 * this only queues; every cursor cut short goes to ok->replay_ends, for
 * the client to Sync once the replay reached it. False: the session was
 * dropped (out of memory).
 */
static bool
replay_from_store(connector *cn, struct session *s, const im_Resume *rs,
                  im_ResumeOk *ok, uint64_t now)
{
	struct replay_ctx rc = {s, cn, now, false, 0, 0, false};
	pb_size_t i;

	for (i = 0; i < rs->cursors_count && !rc.dead; i++) {
		const im_Cursor *cur = &rs->cursors[i];

		if (!replay_cursor(&rc, s->user, cur) || !rc.cut ||
		    ok->replay_ends_count >= sizeof(ok->replay_ends) / sizeof(ok->replay_ends[0])) {
			continue;
		}
		ok->truncated = true;
		ok->replay_ends[ok->replay_ends_count].group = cur->group;
		ok->replay_ends[ok->replay_ends_count].seq = rc.last;
		ok->replay_ends_count++;
	}
	if (ok->truncated) {
		LOG_I("resume of user %llu: replay cut short for %u cursors, "
		      "the client syncs the rest",
		      (unsigned long long)s->user->uid,
		      (unsigned)ok->replay_ends_count);
	}
	return !rc.dead;
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
	if (s == NULL) {
		if ((s = conn__session_open(c, u, req_id)) == NULL) {
			return;
		}
		/* Replayed before the session is attached: queued, not
		 * written, so ResumeOk (which says where the replay is cut)
		 * goes out first and the pump below sends the replay. */
		if (!replay_from_store(c->cn, s, rs, &ok, now)) {
			conn__fail(c, req_id, im_Code_ERR_FULL,
			           "out of memory replaying the session");
			return;
		}
	} else {
		/* The cursors say what arrived: ack it, resend the rest. */
		for (i = 0; i < rs->cursors_count; i++) {
			(void)im_pushq_ack(&s->q, rs->cursors[i].group,
			                   rs->cursors[i].seq);
		}
		(void)im_pushq_shrink(&s->q, PUSHQ_KEEP_BYTES);
	}
	conn__session_attach(c, s);
	ok.user = u->uid;
	memcpy(ok.session, s->id, SESSION_ID_LEN);
	ok.server_time_ms = now;
	ok.uq_last_seq = u->uq_last; /* known: conn__login_user */
	LOG_I("user %llu resumed from %s (%s)", (unsigned long long)u->uid,
	      c->peer, ok.resumed ? "from memory" : "from the store");
	conn__send(c, req_id, im_Envelope_resume_ok_tag, im_ResumeOk_fields,
	           &ok);
	/* Everything left is unacked: send it all, oldest first, as fast as
	 * the client reads. */
	conn__session_pump(s);
}
