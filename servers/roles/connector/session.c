/*
 * Users and sessions. A user exists while it has sessions (and for the
 * rest of the turn it was looked up in); a session is one device's push
 * queue, kept through a grace period after its connection went away so a
 * resume finds it. Retransmission and the drain-driven pump live here,
 * the socket side of back-pressure in conn.c.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "connector_int.h"

static void rto_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents);

static uint32_t
hash_uid(im_uid uid, uint32_t n)
{
	uint64_t x = uid * 0x9e3779b97f4a7c15ULL;

	x ^= x >> 31;
	return (uint32_t)x & (n - 1);
}

struct user *
conn__user_find(connector *cn, im_uid uid)
{
	struct user *u;

	for (u = cn->ub[hash_uid(uid, cn->nub)]; u != NULL; u = u->next) {
		if (u->uid == uid) {
			return u;
		}
	}
	return NULL;
}

/* Users without sessions are freed at the end of the loop turn. */
static void
user_gc_later(connector *cn, struct user *u)
{
	if (!u->in_gc) {
		u->in_gc = true;
		u->gc_next = cn->gc;
		cn->gc = u;
	}
}

struct user *
conn__user_get(connector *cn, im_uid uid)
{
	im_seg_key key = {IM_SEG_USER_SEQ, uid};
	im_idseg_opts so = {IM_IDSEG_OPTS_VERSION, cn->o.uq_step, 20};
	struct user *u = conn__user_find(cn, uid);
	uint32_t b;

	if (u != NULL) {
		return u;
	}
	u = calloc(1, sizeof(*u));
	if (u == NULL) {
		return NULL;
	}
	u->uid = uid;
	if (im_idseg_init(&u->uq, &key, &so) != IM_OK) {
		free(u);
		return NULL;
	}
	b = hash_uid(uid, cn->nub);
	u->next = cn->ub[b];
	cn->ub[b] = u;
	cn->nusers++;
	user_gc_later(cn, u);
	return u;
}

void
conn__user_free(connector *cn, struct user *u)
{
	struct user **pp = &cn->ub[hash_uid(u->uid, cn->nub)];

	while (*pp != NULL && *pp != u) {
		pp = &(*pp)->next;
	}
	if (*pp == u) {
		*pp = u->next;
		cn->nusers--;
	}
	im_convlist_destroy(u->convs);
	im_idseg_finish(&u->uq);
	free(u);
}

void
conn__user_drop_sessions(struct user *u)
{
	while (u->sessions != NULL) {
		conn__session_destroy(u->sessions);
	}
}

/* What an online user needs: the conversation list and where the user
 * queue ends. */
int
conn__user_online(connector *cn, struct user *u)
{
	int rc;

	if (u->convs == NULL) {
		im_convlist_opts co = IM_CONVLIST_OPTS_INIT;
		im_convlist *cl;

		co.max_convs = cn->o.max_convs;
		rc = im_convlist_create(&cl, &co);
		if (rc != IM_OK) {
			return rc;
		}
		rc = im_convlist_load(cl, cn->st, u->uid);
		if (rc != IM_OK) {
			im_convlist_destroy(cl);
			return rc;
		}
		u->convs = cl;
	}
	if (!u->uq_last_known) {
		/* Where the user's queue ends: one index read (a store
		 * without uq_last is paged by the wrapper, bounded). */
		im_seq last = 0;

		rc = im_store_uq_last(cn->st, u->uid, &last);
		if (rc != IM_OK) {
			return rc;
		}
		u->uq_last = last;
		u->uq_last_known = true;
	}
	return IM_OK;
}

static struct session *
session_create(connector *cn, struct user *u, const uint8_t *id)
{
	im_pushq_opts qo = IM_PUSHQ_OPTS_INIT;
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		return NULL;
	}
	qo.max_items = cn->o.pushq_items;
	qo.max_bytes = cn->o.pushq_bytes;
	qo.rto_ms = cn->o.rto_ms;
	if (im_pushq_init(&s->q, &qo) != IM_OK) {
		free(s);
		return NULL;
	}
	if (id != NULL) {
		memcpy(s->id, id, SESSION_ID_LEN);
	} else if (getrandom(s->id, SESSION_ID_LEN, 0) != SESSION_ID_LEN) {
		im_pushq_finish(&s->q);
		free(s);
		return NULL;
	}
	s->cn = cn;
	s->user = u;
	ev_timer_init(&s->rto_w, rto_cb, 0.0, 0.0);
	s->rto_w.data = s;
	ev_timer_init(&s->grace_w, grace_cb, cn->o.grace, 0.0);
	s->grace_w.data = s;
	s->next = u->sessions;
	u->sessions = s;
	u->nsessions++;
	cn->nsessions++;
	return s;
}

/* Forget a session: the user's other sessions are untouched. */
void
conn__session_destroy(struct session *s)
{
	connector *cn = s->cn;
	struct user *u = s->user;
	struct session **pp = &u->sessions;

	while (*pp != NULL && *pp != s) {
		pp = &(*pp)->next;
	}
	if (*pp == s) {
		*pp = s->next;
		u->nsessions--;
		cn->nsessions--;
	}
	if (s->conn != NULL) {
		s->conn->sess = NULL;
		s->conn = NULL;
	}
	ev_timer_stop(cn->loop, &s->rto_w);
	ev_timer_stop(cn->loop, &s->grace_w);
	im_pushq_finish(&s->q);
	free(s);
	if (u->nsessions == 0) {
		user_gc_later(cn, u);
	}
}

/* The connection went away: keep the queue for a resume. */
void
conn__session_detach(struct session *s)
{
	connector *cn = s->cn;

	s->conn = NULL;
	ev_timer_stop(cn->loop, &s->rto_w);
	ev_timer_stop(cn->loop, &s->grace_w);
	ev_timer_set(&s->grace_w, cn->o.grace, 0.0);
	ev_timer_start(cn->loop, &s->grace_w);
}

static void
grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = w->data;

	if (s->conn == NULL) {
		LOG_D("session of user %llu expired",
		      (unsigned long long)s->user->uid);
		conn__session_destroy(s);
	}
}

static void
session_arm_rto(struct session *s, uint64_t now)
{
	connector *cn = s->cn;
	uint64_t due = im_pushq_next_due(&s->q);
	double after;

	/* With a backlog the drain of the write buffer drives sending (the
	 * pump re-arms this), not the clock. */
	if (s->conn == NULL || due == UINT64_MAX || s->backlog) {
		ev_timer_stop(cn->loop, &s->rto_w);
		return;
	}
	after = due > now ? (double)(due - now) / 1000.0 : 0.001;
	if (after < 0.01) {
		after = 0.01;
	}
	ev_timer_stop(cn->loop, &s->rto_w);
	ev_timer_set(&s->rto_w, after, 0.0);
	ev_timer_start(cn->loop, &s->rto_w);
}

static int
resend_cb(const im_pushq_item *item, void *payload)
{
	struct session *s = payload;

	if (s->conn == NULL || s->conn->closed) {
		return 1;
	}
	/* The queue counts the item as sent before calling us: always write
	 * it, and stop while there is still room for one more. */
	conn__write(s->conn, item->data, item->len);
	if (s->conn == NULL || !conn__push_room(s->conn, PUSH_MAX)) {
		s->backlog = true;
		return 1;
	}
	return 0;
}

/*
 * The write buffer drained and pushes are waiting: send the queue's items
 * oldest first, as far as the buffer has room. Passing now + rto makes
 * every item count as due; each is then stamped sent at now + rto, so
 * what this pump sent is not sent again by the next pump, only by the
 * retransmit timer (after 2 * rto at the latest).
 */
void
conn__session_pump(struct session *s)
{
	uint64_t now = role_now_ms();

	s->backlog = false;
	if (s->conn == NULL) {
		return;
	}
	if (!conn__push_room(s->conn, PUSH_MAX)) {
		s->backlog = true;
		return;
	}
	(void)im_pushq_due(&s->q, now + s->cn->o.rto_ms, 4096, resend_cb, s);
	session_arm_rto(s, now);
}

static void
rto_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = w->data;
	uint64_t now = role_now_ms();

	if (s->conn == NULL) {
		return;
	}
	if (conn__push_room(s->conn, PUSH_MAX)) {
		(void)im_pushq_due(&s->q, now, 256, resend_cb, s);
	} else {
		s->backlog = true;
	}
	session_arm_rto(s, now);
}

/*
 * Push one frame to a session: queued until acked, written now if the
 * session is attached. A full queue drops the session (ERR_FULL); the
 * client resumes and resyncs from the store. Returns false if the session
 * was destroyed.
 */
bool
conn__session_push(struct session *s, im_gid conv, im_seq seq,
                   const void *frame, uint32_t len, uint64_t now)
{
	bool queued = false;
	int rc;

	rc = im_pushq_push(&s->q, conv, seq, frame, len, now, &queued);
	if (rc == IM_EFULL || rc == IM_ENOMEM) {
		LOG_I("session of user %llu: push queue full, dropping it",
		      (unsigned long long)s->user->uid);
		if (s->conn != NULL) {
			conn__fail(s->conn, 0, im_Code_ERR_FULL,
			           "push queue full: resume and resync");
		}
		conn__session_destroy(s);
		return false;
	}
	if (rc != IM_OK || !queued) {
		return true;
	}
	if (s->conn != NULL) {
		if (s->backlog || !conn__push_room(s->conn, len)) {
			/* Queued; the pump sends it when the buffer drains. */
			s->backlog = true;
		} else {
			conn__write(s->conn, frame, len);
		}
		if (s->conn != NULL && !ev_is_active(&s->rto_w)) {
			session_arm_rto(s, now);
		}
	}
	return true;
}

/* Make room for one more session of u: drop the oldest one in grace. */
static bool
session_room(connector *cn, struct user *u)
{
	struct session *s, *victim = NULL;

	if (u->nsessions < cn->o.max_sessions) {
		return true;
	}
	for (s = u->sessions; s != NULL; s = s->next) {
		if (s->conn == NULL) {
			victim = s; /* the list is newest first */
		}
	}
	if (victim == NULL) {
		return false;
	}
	conn__session_destroy(victim);
	return true;
}

struct session *
conn__session_open(struct conn *c, struct user *u, uint64_t req_id)
{
	struct session *s;

	if (!session_room(c->cn, u) ||
	    (s = session_create(c->cn, u, NULL)) == NULL) {
		conn__fail(c, req_id, im_Code_ERR_FULL, "too many sessions");
		return NULL;
	}
	return s;
}

void
conn__session_attach(struct conn *c, struct session *s)
{
	connector *cn = c->cn;

	c->sess = s;
	c->uid = s->user->uid;
	s->conn = c;
	ev_timer_stop(cn->loop, &s->grace_w);
	c->last_rx = ev_now(cn->loop);
	ev_timer_stop(cn->loop, &c->timer);
	ev_timer_set(&c->timer, cn->o.idle_timeout, 0.0);
	ev_timer_start(cn->loop, &c->timer);
}

void
conn__user_push(struct user *u, im_gid conv, im_seq seq, const void *frame,
                uint32_t len, uint64_t now)
{
	struct session *s, *next;

	for (s = u->sessions; s != NULL; s = next) {
		next = s->next;
		(void)conn__session_push(s, conv, seq, frame, len, now);
	}
}
