/*
 * Connector: client connections, sessions, conversation lists, user queues.
 *
 * Reads: one shared read buffer per Connector; a connection only holds the
 * bytes of a frame that has not completely arrived yet (allocated while it
 * is incomplete), so an idle connection costs its struct and nothing else.
 *
 * Writes: frames are appended to the connection's write buffer and the
 * connection is put on the dirty list; an ev_prepare watcher at the lowest
 * priority (after the Chatter's group commit) writes each dirty connection
 * with one write() per loop turn (Redis's beforeSleep).
 *
 * Slow readers: pushes live in the session's push queue anyway (until
 * acked), so they are copied into the write buffer only while it is under
 * half of wbuf_max; beyond that the session is marked `backlog` and the
 * queue is pumped again each time the buffer drains. A reader too slow for
 * that overflows its (bounded) push queue and is closed with ERR_FULL; any
 * other frame that would push the buffer past wbuf_max closes it too. Both
 * bounds hold, and a push is never held twice for long.
 *
 * Lifetimes: connections are freed at the end of the loop turn they closed
 * in (the dead list), so a pointer taken in this turn stays valid; users
 * without sessions are freed by the same sweep.
 */
#include "connector.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "im.pb.h"
#include "im/convlist.h"
#include "im/frame.h"
#include "im/idseg.h"
#include "im/pushq.h"
#include "im/token.h"

#define SESSION_ID_LEN 16
#define UQ_BODY_CAP 256
#define CONV_PAGE_MAX 32
#define SYNC_MSGS_MAX 12
#define SYNC_EVENTS_MAX 64
#define MEMBERS_MAX 256
/* Largest push frame: a Deliver with a full body. */
#define PUSH_MAX (IM_FRAME_HEADER + im_Deliver_size + 16)

/* Group names for conversation lists: direct-mapped, bounded, filled by
 * lookups and by GroupCreated events. Names never change after creation,
 * so an entry is never stale; a collision only costs a store read. */
#define NAME_CACHE 65536
struct name_slot {
	im_gid gid; /* 0 = empty */
	uint8_t len;
	char name[IM_GROUP_NAME_MAX];
};

struct user;
struct conn;

struct session {
	struct session *next; /* in the user's list */
	struct user *user;
	struct conn *conn; /* NULL while in grace */
	connector *cn;
	uint8_t id[SESSION_ID_LEN];
	im_pushq q;
	ev_timer rto_w;
	ev_timer grace_w;
	bool backlog; /* pushes wait in q for the buffer to drain */
};

struct user {
	struct user *next;    /* hash chain */
	struct user *gc_next; /* sweep list */
	bool in_gc;
	im_uid uid;
	im_convlist *convs; /* loaded while the user is online */
	struct session *sessions;
	uint32_t nsessions;
	im_idseg uq;
	bool uq_ready; /* a segment was taken since we own it */
	bool uq_last_known;
	bool uq_taking; /* in this batch's seg_take_many already */
	im_seq uq_last;
};

struct conn {
	ev_io rio;
	ev_io wio;
	ev_timer timer; /* login, idle, linger */
	connector *cn;
	int fd;
	uint32_t index;
	uint64_t tag;
	uint8_t *rbuf; /* an incomplete frame, or NULL */
	size_t rlen;
	uint8_t *wbuf;
	size_t wlen;
	size_t woff;
	size_t wcap;
	struct session *sess;
	im_uid uid; /* 0 before login */
	ev_tstamp last_rx;
	bool closed;
	bool closing; /* close once the write buffer is out */
	bool dirty;
	struct conn *dirty_next;
	struct conn *dead_next;
	char peer[64];
};

struct connector {
	struct ev_loop *loop;
	im_store *st;
	im_shard_map *map;
	const char *node;
	uint32_t index;
	role_router *router;
	/* Cluster: the client address of another owner, for Redirect. */
	const char *(*redirect)(void *payload, const char *owner);
	void *redirect_payload;
	im_token_verifier *tokens; /* keyed with the secret at create */
	connector_opts o;

	int lfd;
	ev_io accept_w;
	ev_prepare flush_w;

	struct conn **conns;
	uint32_t *free_idx;
	uint32_t nfree;
	uint32_t nconns;
	uint64_t tag_gen;
	struct conn *dirty;
	struct conn *dead;

	struct user **ub;
	uint32_t nub;
	uint32_t nusers;
	struct user *gc;
	uint32_t nsessions;

	uint8_t *rbuf; /* shared read buffer */
	size_t rcap;
	uint8_t *obuf; /* encode scratch: one frame */
	uint8_t *fbuf; /* encoded Delivers of one fan-out */
	size_t fcap;
	size_t *foffs; /* their offsets in fbuf; kept between fan-outs */
	size_t foffs_cap;
	im_Envelope *env;
	im_SyncPage *page;
	im_ConvPage *cpage;
	im_Members *members;
	im_Deliver *dl;
	im_conv_entry *entries;
	struct name_slot *names; /* group name cache, NAME_CACHE entries */

	connector_stats stats;
};

/* ------------------------------------------------------------------ */
/* encoding */

/* Encode one Envelope holding msg at oneof tag into cn->obuf as a frame;
 * returns the frame length or 0. */
static size_t
encode_frame(connector *cn, uint64_t req_id, uint32_t tag,
             const pb_msgdesc_t *fields, const void *msg)
{
	pb_ostream_t os = pb_ostream_from_buffer(cn->obuf + IM_FRAME_HEADER,
	                                         IM_FRAME_MAX);

	/* The Envelope by hand: req_id, then the one set oneof field. This
	 * avoids building (and zeroing) a 59 KB Envelope per push. */
	if (req_id != 0 &&
	    (!pb_encode_tag(&os, PB_WT_VARINT, im_Envelope_req_id_tag) ||
	     !pb_encode_varint(&os, req_id))) {
		return 0;
	}
	if (!pb_encode_tag(&os, PB_WT_STRING, tag) ||
	    !pb_encode_submessage(&os, fields, msg)) {
		LOG_E("encode: %s", PB_GET_ERROR(&os));
		return 0;
	}
	im_frame_put_header(cn->obuf, (uint32_t)os.bytes_written);
	return IM_FRAME_HEADER + os.bytes_written;
}

static void
fill_deliver(im_Deliver *d, const im_msg *m)
{
	d->group = m->conv;
	d->seq = m->seq;
	d->prev_seq = m->prev_seq;
	d->ordinal = m->ordinal;
	d->sender = m->sender;
	d->time_ms = m->time_ms;
	d->reply_to = m->reply_to;
	d->type = m->type;
	d->dedup_id = m->dedup_id;
	d->body.size = (pb_size_t)(m->body_len <= sizeof(d->body.bytes)
	                                   ? m->body_len
	                                   : sizeof(d->body.bytes));
	if (d->body.size > 0) {
		memcpy(d->body.bytes, m->body, d->body.size);
	}
}

/* ------------------------------------------------------------------ */
/* connections: output */

static void conn_close(struct conn *c, const char *why);

static void
conn_mark_dirty(struct conn *c)
{
	if (!c->dirty) {
		c->dirty = true;
		c->dirty_next = c->cn->dirty;
		c->cn->dirty = c;
	}
}

/* Queue bytes for the client. A reader that lets its buffer grow past the
 * bound is dropped (its session survives in grace). */
static void
conn_write(struct conn *c, const void *data, size_t len)
{
	connector *cn = c->cn;

	if (c->closed || len == 0) {
		return;
	}
	if (c->wlen - c->woff + len > cn->o.wbuf_max) {
		conn_close(c, "write buffer bound (slow reader)");
		return;
	}
	if (c->woff > 0 && c->wlen + len > c->wcap) {
		memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
		c->wlen -= c->woff;
		c->woff = 0;
	}
	if (c->wlen + len > c->wcap) {
		size_t ncap = c->wcap ? c->wcap : 4096;
		uint8_t *nb;

		while (ncap < c->wlen + len) {
			ncap *= 2;
		}
		nb = realloc(c->wbuf, ncap);
		if (nb == NULL) {
			conn_close(c, "out of memory");
			return;
		}
		c->wbuf = nb;
		c->wcap = ncap;
	}
	memcpy(c->wbuf + c->wlen, data, len);
	c->wlen += len;
	cn->stats.frames_out++;
	conn_mark_dirty(c);
}

/* Room for a push of len bytes in the write buffer (half of the bound). */
static bool
conn_push_room(const struct conn *c, size_t len)
{
	return c->wlen - c->woff + len <= c->cn->o.wbuf_max / 2;
}

static void session_pump(struct session *s);

static void
conn_send(struct conn *c, uint64_t req_id, uint32_t tag,
          const pb_msgdesc_t *fields, const void *msg)
{
	size_t n = encode_frame(c->cn, req_id, tag, fields, msg);

	if (n == 0) {
		conn_close(c, "encode failed");
		return;
	}
	conn_write(c, c->cn->obuf, n);
}

static void
conn_error(struct conn *c, uint64_t req_id, int code, const char *text,
           im_gid group, uint64_t dedup_id)
{
	im_Error e = im_Error_init_zero;

	e.code = (im_Code)code;
	if (text != NULL) {
		snprintf(e.text, sizeof(e.text), "%s", text);
	}
	e.group = group;
	e.dedup_id = dedup_id;
	conn_send(c, req_id, im_Envelope_error_tag, im_Error_fields, &e);
}

/* Send a final Error and close once it is written. */
static void
conn_fail(struct conn *c, uint64_t req_id, int code, const char *text)
{
	if (c->closed || c->closing) {
		return;
	}
	LOG_D("conn %s: closing: %s", c->peer, text);
	conn_error(c, req_id, code, text, 0, 0);
	if (c->closed) {
		return;
	}
	c->closing = true;
	ev_io_stop(c->cn->loop, &c->rio);
	/* Do not wait forever for a peer that does not read. */
	ev_timer_stop(c->cn->loop, &c->timer);
	ev_timer_set(&c->timer, 2.0, 0.0);
	ev_timer_start(c->cn->loop, &c->timer);
	conn_mark_dirty(c);
}

/* Send Redirect{address} and close once it is written. */
static void
conn_redirect(struct conn *c, uint64_t req_id, const char *address)
{
	im_Redirect rd = im_Redirect_init_zero;

	if (c->closed || c->closing) {
		return;
	}
	snprintf(rd.address, sizeof(rd.address), "%s", address);
	conn_send(c, req_id, im_Envelope_redirect_tag, im_Redirect_fields,
	          &rd);
	if (c->closed) {
		return;
	}
	c->closing = true;
	ev_io_stop(c->cn->loop, &c->rio);
	ev_timer_stop(c->cn->loop, &c->timer);
	ev_timer_set(&c->timer, 2.0, 0.0);
	ev_timer_start(c->cn->loop, &c->timer);
	conn_mark_dirty(c);
}

static void
conn_flush_one(struct conn *c)
{
	connector *cn = c->cn;

	while (!c->closed && c->woff < c->wlen) {
		ssize_t n = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!ev_is_active(&c->wio)) {
				ev_io_start(cn->loop, &c->wio);
			}
			return;
		}
		if (n <= 0) {
			conn_close(c, "write failed");
			return;
		}
		cn->stats.writes++;
		c->woff += (size_t)n;
	}
	if (c->closed) {
		return;
	}
	/* Drained: give the memory back, idle connections hold none (malloc
	 * recycles it for the next burst at little cost). */
	c->woff = 0;
	c->wlen = 0;
	free(c->wbuf);
	c->wbuf = NULL;
	c->wcap = 0;
	if (ev_is_active(&c->wio)) {
		ev_io_stop(cn->loop, &c->wio);
	}
	if (c->closing) {
		conn_close(c, "closed after final frame");
		return;
	}
	if (c->sess != NULL && c->sess->backlog) {
		session_pump(c->sess);
	}
}

static void
write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;

	conn_flush_one(c);
}

/* ------------------------------------------------------------------ */
/* users and sessions */

static uint32_t
hash_uid(im_uid uid, uint32_t n)
{
	uint64_t x = uid * 0x9e3779b97f4a7c15ULL;

	x ^= x >> 31;
	return (uint32_t)x & (n - 1);
}

static struct user *
user_find(connector *cn, im_uid uid)
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

static struct user *
user_get(connector *cn, im_uid uid)
{
	im_seg_key key = {IM_SEG_USER_SEQ, uid};
	im_idseg_opts so = {IM_IDSEG_OPTS_VERSION, cn->o.uq_step, 20};
	struct user *u = user_find(cn, uid);
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

static void
user_free(connector *cn, struct user *u)
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

struct uq_last_ctx {
	im_seq last;
	uint32_t rows;
};

static int
uq_last_cb(const im_uq_item *item, void *payload)
{
	struct uq_last_ctx *ul = payload;

	if (item->seq > ul->last) {
		ul->last = item->seq;
	}
	ul->rows++;
	return 0;
}

/* What an online user needs: the conversation list and where the user
 * queue ends. */
static int
user_online(connector *cn, struct user *u)
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
		 * without uq_last: page the queue, bounded; a page that is
		 * not full was the last one). */
		struct uq_last_ctx ul = {0, 0};
		int pages = 0;

		rc = im_store_uq_last(cn->st, u->uid, &ul.last);
		if (rc == IM_ENOTSUP) {
			do {
				ul.rows = 0;
				rc = im_store_uq_read(cn->st, u->uid, ul.last,
				                      1000, uq_last_cb, &ul);
			} while (rc == IM_OK && ul.rows == 1000 &&
			         ++pages < 1000);
		}
		if (rc != IM_OK) {
			return rc;
		}
		u->uq_last = ul.last;
		u->uq_last_known = true;
	}
	return IM_OK;
}

static void session_destroy(struct session *s);

static void rto_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents);

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
static void
session_destroy(struct session *s)
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
static void
session_detach(struct session *s)
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
		session_destroy(s);
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
	conn_write(s->conn, item->data, item->len);
	if (s->conn == NULL || !conn_push_room(s->conn, PUSH_MAX)) {
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
static void
session_pump(struct session *s)
{
	uint64_t now = role_now_ms();

	s->backlog = false;
	if (s->conn == NULL) {
		return;
	}
	if (!conn_push_room(s->conn, PUSH_MAX)) {
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
	if (conn_push_room(s->conn, PUSH_MAX)) {
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
static bool
session_push(struct session *s, im_gid conv, im_seq seq, const void *frame,
             uint32_t len, uint64_t now)
{
	bool queued = false;
	int rc;

	rc = im_pushq_push(&s->q, conv, seq, frame, len, now, &queued);
	if (rc == IM_EFULL || rc == IM_ENOMEM) {
		LOG_I("session of user %llu: push queue full, dropping it",
		      (unsigned long long)s->user->uid);
		if (s->conn != NULL) {
			conn_fail(s->conn, 0, im_Code_ERR_FULL,
			          "push queue full: resume and resync");
		}
		session_destroy(s);
		return false;
	}
	if (rc != IM_OK || !queued) {
		return true;
	}
	if (s->conn != NULL) {
		if (s->backlog || !conn_push_room(s->conn, len)) {
			/* Queued; the pump sends it when the buffer drains. */
			s->backlog = true;
		} else {
			conn_write(s->conn, frame, len);
		}
		if (s->conn != NULL && !ev_is_active(&s->rto_w)) {
			session_arm_rto(s, now);
		}
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* connections: lifecycle */

static void
conn_close(struct conn *c, const char *why)
{
	connector *cn = c->cn;

	if (c->closed) {
		return;
	}
	LOG_D("conn %s closed: %s", c->peer, why);
	c->closed = true;
	ev_io_stop(cn->loop, &c->rio);
	ev_io_stop(cn->loop, &c->wio);
	ev_timer_stop(cn->loop, &c->timer);
	if (c->closing) {
		/* Closing with unread input makes the kernel send a reset,
		 * which can destroy our final Error before the peer reads
		 * it: drain what is there (bounded), then close. */
		uint8_t sink[4096];
		int i;

		(void)shutdown(c->fd, SHUT_WR);
		for (i = 0; i < 16 && read(c->fd, sink, sizeof(sink)) > 0;
		     i++) {
		}
	}
	close(c->fd);
	c->fd = -1;
	cn->conns[c->index] = NULL;
	cn->free_idx[cn->nfree++] = c->index;
	cn->nconns--;
	if (c->sess != NULL) {
		struct session *s = c->sess;

		c->sess = NULL;
		if (s->conn == c) {
			session_detach(s);
		}
	}
	free(c->rbuf);
	c->rbuf = NULL;
	c->rlen = 0;
	c->dead_next = cn->dead;
	cn->dead = c;
	/* It may stay on the dirty list too; the flush skips it. */
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;
	connector *cn = c->cn;
	ev_tstamp now = ev_now(loop), left;

	if (c->closing) {
		conn_close(c, "peer did not read the final frame");
		return;
	}
	if (c->uid == 0) {
		conn_fail(c, 0, im_Code_ERR_TIMEOUT, "login timeout");
		return;
	}
	left = c->last_rx + cn->o.idle_timeout - now;
	if (left <= 0) {
		conn_fail(c, 0, im_Code_ERR_TIMEOUT, "idle timeout");
		return;
	}
	ev_timer_set(w, left, 0.0);
	ev_timer_start(loop, w);
}

static uint64_t
conn_tag(const struct conn *c)
{
	return c->tag;
}

static struct conn *
conn_by_tag(connector *cn, uint64_t tag)
{
	uint32_t idx = (uint32_t)(tag & 0xffffffffu);
	struct conn *c;

	if (idx >= cn->o.max_conns) {
		return NULL;
	}
	c = cn->conns[idx];
	if (c == NULL || c->tag != tag || c->closed) {
		return NULL;
	}
	return c;
}

/* ------------------------------------------------------------------ */
/* requests */

static struct name_slot *
name_slot(connector *cn, im_gid gid)
{
	/* Group ids come from segments, mostly consecutive: the low bits
	 * spread them without collisions over a window of NAME_CACHE. */
	uint64_t x = gid ^ (gid >> 32);

	if (cn->names == NULL) {
		/* calloc: only the pages that get used are touched. */
		cn->names = calloc(NAME_CACHE, sizeof(*cn->names));
		if (cn->names == NULL) {
			return NULL;
		}
	}
	return &cn->names[x & (NAME_CACHE - 1)];
}

static void
name_put(connector *cn, im_gid gid, const char *name)
{
	struct name_slot *ns = name_slot(cn, gid);
	size_t len = strnlen(name, IM_GROUP_NAME_MAX);

	if (ns != NULL && gid != 0) {
		ns->gid = gid;
		ns->len = (uint8_t)len;
		memcpy(ns->name, name, len);
	}
}

/* A group's name for the conversation list: from the cache, else one
 * primary-key read (names are not part of the conv rows). */
static size_t
conv_name(connector *cn, im_gid gid, const char **out)
{
	struct name_slot *ns = name_slot(cn, gid);
	im_group g;

	if (ns != NULL && ns->gid == gid) {
		*out = ns->name;
		return ns->len;
	}
	if (im_store_group_lookup(cn->st, gid, &g) != IM_OK) {
		*out = "";
		return 0;
	}
	if (ns == NULL) {
		return 0; /* no memory for the cache: no name this time */
	}
	name_put(cn, gid, g.name);
	*out = ns->name;
	return ns->len;
}

/*
 * ConvPage frames, encoded by hand: nanopb would walk (and test for
 * defaults) every field of 32 ConvInfo of ~200 bytes each, the largest
 * cost of a login after the store. Zero fields are left out, as proto3
 * (and nanopb) do; the client decodes them with nanopb like any frame.
 */
static uint8_t *
put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Field `field` as a varint, left out when 0. */
static uint8_t *
put_u64(uint8_t *p, uint32_t field, uint64_t v)
{
	if (v == 0) {
		return p;
	}
	*p++ = (uint8_t)(field << 3); /* wire type 0; fields < 16 */
	return put_varint(p, v);
}

static uint8_t *
put_bytes(uint8_t *p, uint32_t field, const void *data, size_t len)
{
	if (len == 0) {
		return p;
	}
	*p++ = (uint8_t)(field << 3 | 2);
	p = put_varint(p, len);
	memcpy(p, data, len);
	return p + len;
}

/* Largest ConvInfo: 8 varints of 10 bytes, flags, preview, name. */
#define CONVINFO_MAX (1 + 2 + 8 * 11 + 6 + 2 * (2 + 64))

static uint8_t *
put_convinfo(connector *cn, uint8_t *p, const im_conv_entry *e)
{
	uint8_t tmp[CONVINFO_MAX], *q = tmp;
	const char *name;
	size_t nlen = conv_name(cn, e->conv, &name);

	q = put_u64(q, 1, e->conv);
	q = put_u64(q, 2, e->last.seq);
	q = put_u64(q, 3, e->last.ordinal);
	q = put_u64(q, 4, e->read.seq);
	q = put_u64(q, 5, e->read.ordinal);
	q = put_u64(q, 6, e->unread);
	q = put_u64(q, 7, e->last_sender);
	q = put_u64(q, 8, e->last_time_ms);
	q = put_u64(q, 9, e->flags);
	q = put_bytes(q, 10, e->preview,
	              e->preview_len <= IM_PREVIEW_MAX ? e->preview_len
	                                               : IM_PREVIEW_MAX);
	q = put_bytes(q, 11, name, nlen);
	return put_bytes(p, 1, tmp, (size_t)(q - tmp));
}

static void
send_conv_pages(struct conn *c, struct user *u, uint64_t req_id)
{
	connector *cn = c->cn;
	/* Envelope{req_id, conv_page = ConvPage{convs..., done}}: the page
	 * is built after room for its envelope header and length. */
	uint8_t *body = cn->obuf + IM_FRAME_HEADER + 32, *p, *h;
	size_t n = 0, i = 0;

	im_convlist_list(u->convs, cn->entries, cn->o.max_convs, &n);
	do {
		size_t k, blen;

		p = body;
		for (k = 0; i < n && k < CONV_PAGE_MAX; i++, k++) {
			p = put_convinfo(cn, p, &cn->entries[i]);
		}
		if (i >= n) {
			*p++ = 2 << 3; /* done = true */
			*p++ = 1;
		}
		blen = (size_t)(p - body);
		h = cn->obuf + IM_FRAME_HEADER;
		h = put_u64(h, 1, req_id);
		*h++ = 4 << 3 | 2; /* conv_page */
		h = put_varint(h, blen);
		memmove(h, body, blen);
		h += blen;
		im_frame_put_header(cn->obuf,
		                    (uint32_t)(h - cn->obuf - IM_FRAME_HEADER));
		conn_write(c, cn->obuf, (size_t)(h - cn->obuf));
	} while (i < n && !c->closed);
}

/* Token check and the user's online state; on failure the connection is
 * failed and NULL returned. */
static struct user *
login_user(struct conn *c, uint64_t req_id, const char *token)
{
	connector *cn = c->cn;
	im_uid uid = 0;
	struct user *u;
	im_shard_entry e;
	int rc;

	rc = im_token_verifier_verify(cn->tokens, token, role_now_ms() / 1000u,
	                              &uid);
	if (rc != IM_OK) {
		conn_fail(c, req_id, im_Code_ERR_AUTH,
		          rc == IM_EPERM ? "bad or expired token"
		                         : "malformed token");
		return NULL;
	}
	e = im_shard_get(cn->map, IM_KIND_USER, uid);
	if (strcmp(e.owner, cn->node) != 0) {
		const char *addr = cn->redirect != NULL && e.owner[0] != '\0'
		                           ? cn->redirect(cn->redirect_payload,
		                                          e.owner)
		                           : NULL;

		if (addr != NULL) {
			LOG_D("user %llu: redirected to %s (%s)",
			      (unsigned long long)uid, addr, e.owner);
			conn_redirect(c, req_id, addr);
		} else {
			conn_fail(c, req_id, im_Code_ERR_UNAVAILABLE,
			          "user is not served here");
		}
		return NULL;
	}
	u = user_get(cn, uid);
	if (u == NULL) {
		conn_fail(c, req_id, im_Code_ERR_INTERNAL, "out of memory");
		return NULL;
	}
	rc = user_online(cn, u);
	if (rc != IM_OK) {
		LOG_W("login of %llu: %s (%s)", (unsigned long long)uid,
		      im_strerror(rc), im_store_errmsg(cn->st));
		conn_fail(c, req_id,
		          rc == IM_EFULL ? im_Code_ERR_FULL
		                         : im_Code_ERR_UNAVAILABLE,
		          rc == IM_EFULL ? "too many conversations"
		                         : "store unavailable");
		return NULL;
	}
	return u;
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
	session_destroy(victim);
	return true;
}

static void
conn_logged_in(struct conn *c, struct session *s)
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

static void
do_login(struct conn *c, uint64_t req_id, const im_Login *lg)
{
	connector *cn = c->cn;
	im_LoginOk ok = im_LoginOk_init_zero;
	struct user *u = login_user(c, req_id, lg->token);
	struct session *s;

	if (u == NULL) {
		return;
	}
	if (!session_room(cn, u) || (s = session_create(cn, u, NULL)) == NULL) {
		conn_fail(c, req_id, im_Code_ERR_FULL, "too many sessions");
		return;
	}
	conn_logged_in(c, s);
	ok.user = u->uid;
	memcpy(ok.session, s->id, SESSION_ID_LEN);
	ok.server_time_ms = role_now_ms();
	ok.conv_count = (uint32_t)im_convlist_count(u->convs);
	ok.uq_last_seq = u->uq_last;
	LOG_I("user %llu logged in from %s (%s), %u conversations",
	      (unsigned long long)u->uid, c->peer, lg->device, ok.conv_count);
	conn_send(c, req_id, im_Envelope_login_ok_tag, im_LoginOk_fields, &ok);
	send_conv_pages(c, u, req_id);
}

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
	fill_deliver(cn->dl, m);
	n = encode_frame(cn, 0, im_Envelope_deliver_tag, im_Deliver_fields,
	                 cn->dl);
	if (n == 0) {
		return 1;
	}
	if (!session_push(rc->s, m->conv, m->seq, cn->obuf, (uint32_t)n,
	                  rc->now)) {
		rc->dead = true;
		return 1;
	}
	return 0;
}

static size_t
encode_uevent_frame(connector *cn, const im_uq_item *item)
{
	im_UserEvent ev = im_UserEvent_init_zero;
	pb_istream_t is = pb_istream_from_buffer(item->body, item->body_len);

	if (!pb_decode(&is, im_UserEvent_fields, &ev)) {
		return 0;
	}
	ev.seq = item->seq;
	return encode_frame(cn, 0, im_Envelope_user_event_tag,
	                    im_UserEvent_fields, &ev);
}

static int
replay_uq_cb(const im_uq_item *item, void *payload)
{
	struct replay_ctx *rc = payload;
	size_t n;

	if (!replay_room(rc, IM_FRAME_HEADER + 64 + item->body_len)) {
		return 1;
	}
	n = encode_uevent_frame(rc->cn, item);
	if (n == 0) {
		return 0; /* an undecodable event: skip, do not wedge */
	}
	if (!session_push(rc->s, IM_PUSHQ_USERQ, item->seq, rc->cn->obuf,
	                  (uint32_t)n, rc->now)) {
		rc->dead = true;
		return 1;
	}
	return 0;
}

static void
do_resume(struct conn *c, uint64_t req_id, const im_Resume *rs)
{
	connector *cn = c->cn;
	im_ResumeOk ok = im_ResumeOk_init_zero;
	struct user *u = login_user(c, req_id, rs->token);
	struct session *s = NULL;
	struct replay_ctx rc;
	uint64_t now = role_now_ms();
	pb_size_t i;

	if (u == NULL) {
		return;
	}
	for (s = u->sessions; s != NULL; s = s->next) {
		if (memcmp(s->id, rs->session, SESSION_ID_LEN) == 0) {
			break;
		}
	}
	if (s != NULL && s->conn != NULL) {
		/* The client came back before we noticed its old
		 * connection died: the new one wins. */
		struct conn *old = s->conn;

		old->sess = NULL;
		s->conn = NULL;
		conn_close(old, "replaced by a resume");
	}
	ok.resumed = s != NULL;
	if (s == NULL) {
		if (!session_room(cn, u) ||
		    (s = session_create(cn, u, NULL)) == NULL) {
			conn_fail(c, req_id, im_Code_ERR_FULL,
			          "too many sessions");
			return;
		}
	}
	conn_logged_in(c, s);
	ok.user = u->uid;
	memcpy(ok.session, s->id, SESSION_ID_LEN);
	ok.server_time_ms = now;
	LOG_I("user %llu resumed from %s (%s)", (unsigned long long)u->uid,
	      c->peer, ok.resumed ? "from memory" : "from the store");
	conn_send(c, req_id, im_Envelope_resume_ok_tag, im_ResumeOk_fields,
	          &ok);
	if (ok.resumed) {
		/* The cursors say what arrived: ack it, resend the rest. */
		for (i = 0; i < rs->cursors_count; i++) {
			(void)im_pushq_ack(&s->q, rs->cursors[i].group,
			                   rs->cursors[i].seq);
		}
		/* Everything left is unacked: send it all, oldest first, as
		 * fast as the client reads. */
		session_pump(s);
		return;
	}
	rc.s = s;
	rc.cn = cn;
	rc.now = now;
	rc.dead = false;
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

static void
submit_one(struct conn *c, role_op *op, uint64_t req_id)
{
	connector *cn = c->cn;

	op->route.connector = cn->index;
	op->route.tag = conn_tag(c);
	op->route.req_id = req_id;
	op->user = c->uid;
	cn->router->ops->submit(cn->router, op, 1);
}

static void
do_send(struct conn *c, uint64_t req_id, const im_Send *sd)
{
	role_op op;

	if (sd->group == 0 || sd->dedup_id == 0) {
		conn_error(c, req_id, im_Code_ERR_BAD_REQUEST,
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
	submit_one(c, &op, req_id);
}

static void
do_create_group(struct conn *c, uint64_t req_id, const im_CreateGroup *cg)
{
	role_op op;

	memset(&op, 0, sizeof(op));
	op.kind = ROLE_OP_CREATE_GROUP;
	op.name = cg->name;
	op.members = cg->members;
	op.nmembers = cg->members_count;
	submit_one(c, &op, req_id);
}

static void
do_member_op(struct conn *c, uint64_t req_id, role_op_kind kind, im_gid g,
             im_uid target)
{
	role_op op;

	if (g == 0 || target == 0) {
		conn_error(c, req_id, im_Code_ERR_BAD_REQUEST,
		           "group and user needed", g, 0);
		return;
	}
	memset(&op, 0, sizeof(op));
	op.kind = kind;
	op.group = g;
	op.target = target;
	submit_one(c, &op, req_id);
}

static bool
is_member_here(struct conn *c, im_gid g)
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

static void
do_list_members(struct conn *c, uint64_t req_id, const im_ListMembers *lm)
{
	connector *cn = c->cn;
	struct members_ctx mc;
	int rc;

	if (!is_member_here(c, lm->group)) {
		conn_error(c, req_id, im_Code_ERR_NOT_MEMBER,
		           "not a member of the group", lm->group, 0);
		return;
	}
	memset(cn->members, 0, sizeof(*cn->members));
	cn->members->group = lm->group;
	mc.m = cn->members;
	mc.after = lm->after_user;
	rc = im_store_member_list(cn->st, lm->group, members_cb, &mc);
	if (rc < 0) {
		conn_error(c, req_id, im_Code_ERR_UNAVAILABLE,
		           "store unavailable", lm->group, 0);
		return;
	}
	conn_send(c, req_id, im_Envelope_members_tag, im_Members_fields,
	          cn->members);
}

struct sync_ctx {
	im_SyncPage *p;
	uint32_t limit;
	im_seq until;
};

static int
sync_msg_cb(const im_msg *m, void *payload)
{
	struct sync_ctx *sc = payload;
	im_Deliver *d;

	if (sc->p->msgs_count == sc->limit) {
		sc->p->more = true;
		return 1;
	}
	d = &sc->p->msgs[sc->p->msgs_count++];
	memset(d, 0, sizeof(*d));
	fill_deliver(d, m);
	return 0;
}

static int
sync_uq_cb(const im_uq_item *item, void *payload)
{
	struct sync_ctx *sc = payload;
	im_UserEvent *ev;
	pb_istream_t is;

	if (sc->until != 0 && item->seq > sc->until) {
		return 1;
	}
	if (sc->p->events_count == sc->limit) {
		sc->p->more = true;
		return 1;
	}
	ev = &sc->p->events[sc->p->events_count];
	memset(ev, 0, sizeof(*ev));
	is = pb_istream_from_buffer(item->body, item->body_len);
	if (!pb_decode(&is, im_UserEvent_fields, ev)) {
		memset(ev, 0, sizeof(*ev));
	}
	ev->seq = item->seq;
	ev->time_ms = ev->time_ms ? ev->time_ms : item->time_ms;
	sc->p->events_count++;
	return 0;
}

static void
do_sync(struct conn *c, uint64_t req_id, const im_Sync *sy)
{
	connector *cn = c->cn;
	struct sync_ctx sc;
	int rc;

	memset(cn->page, 0, sizeof(*cn->page));
	cn->page->group = sy->group;
	sc.p = cn->page;
	sc.until = sy->until;
	if (sy->group == 0) {
		sc.limit = sy->limit == 0 || sy->limit > SYNC_EVENTS_MAX
		                   ? SYNC_EVENTS_MAX
		                   : sy->limit;
		/* One more than the page to learn whether there is more. */
		rc = im_store_uq_read(cn->st, c->uid, sy->after, sc.limit + 1,
		                      sync_uq_cb, &sc);
	} else {
		if (!is_member_here(c, sy->group)) {
			conn_error(c, req_id, im_Code_ERR_NOT_MEMBER,
			           "not a member of the group", sy->group, 0);
			return;
		}
		if (sy->until != 0 && sy->until <= sy->after) {
			conn_send(c, req_id, im_Envelope_sync_page_tag,
			          im_SyncPage_fields, cn->page);
			return;
		}
		sc.limit = sy->limit == 0 || sy->limit > SYNC_MSGS_MAX
		                   ? SYNC_MSGS_MAX
		                   : sy->limit;
		rc = im_store_msg_read(cn->st, sy->group, sy->after,
		                       sy->until ? sy->until : IM_SEQ_MAX,
		                       sc.limit + 1, sync_msg_cb, &sc);
	}
	if (rc < 0) {
		conn_error(c, req_id, im_Code_ERR_UNAVAILABLE,
		           "store unavailable", sy->group, 0);
		return;
	}
	conn_send(c, req_id, im_Envelope_sync_page_tag, im_SyncPage_fields,
	          cn->page);
}

/* im.EventType values. */
enum { UEV_JOINED = 1, UEV_LEFT = 2, UEV_GROUP_CREATED = 3, UEV_READ = 4 };

static void
do_mark_read(struct conn *c, uint64_t req_id, const im_MarkRead *mr)
{
	connector *cn = c->cn;
	struct user *u = c->sess->user;
	im_conv_entry e;
	im_msg_pos pos = {0, 0};
	role_uevent ev;
	bool moved = false;
	int rc;

	if (im_convlist_lookup(u->convs, mr->group, &e) != IM_OK) {
		conn_error(c, req_id, im_Code_ERR_NOT_MEMBER,
		           "not a member of the group", mr->group, 0);
		return;
	}
	/* The ordinal of the read position makes the unread count exact. */
	rc = im_store_msg_last(cn->st, mr->group,
	                       mr->seq < e.last.seq ? mr->seq : e.last.seq,
	                       &pos);
	if (rc != IM_OK && rc != IM_ENOTFOUND) {
		conn_error(c, req_id, im_Code_ERR_UNAVAILABLE,
		           "store unavailable", mr->group, 0);
		return;
	}
	if (pos.seq > e.read.seq) {
		rc = im_store_conv_update(cn->st, u->uid, mr->group, pos.seq,
		                          pos.ordinal, e.flags);
		if (rc != IM_OK) {
			conn_error(c, req_id, im_Code_ERR_UNAVAILABLE,
			           "store unavailable", mr->group, 0);
			return;
		}
		(void)im_convlist_read(u->convs, mr->group, pos.seq,
		                       pos.ordinal, &moved);
	}
	conn_error(c, req_id, im_Code_OK, NULL, mr->group, 0);
	if (moved) {
		memset(&ev, 0, sizeof(ev));
		ev.user = u->uid;
		ev.type = UEV_READ;
		ev.group = mr->group;
		ev.actor = u->uid;
		ev.read_seq = pos.seq;
		ev.read_ordinal = pos.ordinal;
		cn->router->ops->user_events(cn->router, &ev, 1);
	}
}

static void
handle_frame(struct conn *c, const uint8_t *payload, uint32_t len)
{
	connector *cn = c->cn;
	im_Envelope *env = cn->env;
	pb_istream_t is = pb_istream_from_buffer(payload, len);
	uint64_t req_id;

	cn->stats.frames_in++;
	if (!pb_decode(&is, im_Envelope_fields, env)) {
		conn_fail(c, 0, im_Code_ERR_BAD_REQUEST, PB_GET_ERROR(&is));
		return;
	}
	req_id = env->req_id;
	if (c->uid == 0) {
		if (env->which_msg == im_Envelope_login_tag) {
			do_login(c, req_id, &env->msg.login);
		} else if (env->which_msg == im_Envelope_resume_tag) {
			do_resume(c, req_id, &env->msg.resume);
		} else if (env->which_msg == 0) {
			conn_fail(c, req_id, im_Code_ERR_BAD_REQUEST,
			          "empty envelope");
		} else {
			conn_fail(c, req_id, im_Code_ERR_NOT_LOGGED_IN,
			          "log in first");
		}
		return;
	}
	if (c->sess == NULL) {
		conn_fail(c, req_id, im_Code_ERR_SESSION, "session is gone");
		return;
	}
	switch (env->which_msg) {
	case im_Envelope_send_tag:
		do_send(c, req_id, &env->msg.send);
		break;
	case im_Envelope_deliver_ack_tag:
		(void)im_pushq_ack(&c->sess->q, env->msg.deliver_ack.group,
		                   env->msg.deliver_ack.seq);
		break;
	case im_Envelope_mark_read_tag:
		do_mark_read(c, req_id, &env->msg.mark_read);
		break;
	case im_Envelope_sync_tag:
		do_sync(c, req_id, &env->msg.sync);
		break;
	case im_Envelope_ping_tag: {
		im_Pong pong;

		pong.time_ms = env->msg.ping.time_ms;
		pong.server_time_ms = role_now_ms();
		conn_send(c, req_id, im_Envelope_pong_tag, im_Pong_fields,
		          &pong);
		break;
	}
	case im_Envelope_create_group_tag:
		do_create_group(c, req_id, &env->msg.create_group);
		break;
	case im_Envelope_add_member_tag:
		do_member_op(c, req_id, ROLE_OP_ADD_MEMBER,
		             env->msg.add_member.group,
		             env->msg.add_member.user);
		break;
	case im_Envelope_remove_member_tag:
		do_member_op(c, req_id, ROLE_OP_REMOVE_MEMBER,
		             env->msg.remove_member.group,
		             env->msg.remove_member.user);
		break;
	case im_Envelope_list_members_tag:
		do_list_members(c, req_id, &env->msg.list_members);
		break;
	case im_Envelope_login_tag:
	case im_Envelope_resume_tag:
		conn_error(c, req_id, im_Code_ERR_BAD_REQUEST,
		           "already logged in", 0, 0);
		break;
	default:
		conn_fail(c, req_id, im_Code_ERR_BAD_REQUEST,
		          "not a client request");
		break;
	}
}

static void
read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;
	connector *cn = c->cn;
	uint8_t *buf = cn->rbuf;
	size_t have = c->rlen, off = 0;
	ssize_t n;

	if (have > 0) {
		memcpy(buf, c->rbuf, have);
	}
	do {
		n = read(c->fd, buf + have, cn->rcap - have);
	} while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		return;
	}
	if (n <= 0) {
		if (n == 0 && have > 0) {
			conn_fail(c, 0, im_Code_ERR_BAD_REQUEST,
			          "truncated frame");
		} else {
			conn_close(c, n == 0 ? "peer closed" : "read error");
		}
		return;
	}
	have += (size_t)n;
	c->last_rx = ev_now(loop);
	while (!c->closed && !c->closing) {
		const uint8_t *payload;
		uint32_t plen;
		size_t used;
		int rc = im_frame_parse(buf + off, have - off, cn->o.frame_max,
		                        &payload, &plen, &used);

		if (rc == IM_EAGAIN) {
			break;
		}
		if (rc == IM_ETOOBIG) {
			conn_fail(c, 0, im_Code_ERR_TOO_BIG,
			          "frame larger than the client limit");
			break;
		}
		if (rc != IM_OK) {
			conn_fail(c, 0, im_Code_ERR_BAD_REQUEST, "empty frame");
			break;
		}
		handle_frame(c, payload, plen);
		off += used;
	}
	if (c->closed || c->closing) {
		return;
	}
	/* Keep only the start of an incomplete frame (<= header + limit). */
	if (have - off == 0) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->rlen = 0;
		return;
	}
	if (c->rbuf == NULL) {
		c->rbuf = malloc(IM_FRAME_HEADER + cn->o.frame_max);
		if (c->rbuf == NULL) {
			conn_close(c, "out of memory");
			return;
		}
	}
	memmove(c->rbuf, buf + off, have - off);
	c->rlen = have - off;
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	connector *cn = w->data;
	int i;

	/* Bounded work per wakeup so one busy listener cannot starve the
	 * connections already open. */
	for (i = 0; i < 64; i++) {
		struct sockaddr_in sa;
		socklen_t slen = sizeof(sa);
		struct conn *c;
		int one = 1;
		int fd = accept4(cn->lfd, (struct sockaddr *)&sa, &slen,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR) {
				LOG_W("accept: %s", strerror(errno));
			}
			return;
		}
		if (cn->nfree == 0) {
			LOG_W("connection limit (%u) reached", cn->o.max_conns);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		                 sizeof(one));
		c->cn = cn;
		c->fd = fd;
		c->index = cn->free_idx[--cn->nfree];
		c->tag = (++cn->tag_gen << 32) | c->index;
		cn->conns[c->index] = c;
		cn->nconns++;
		cn->stats.accepted++;
		snprintf(c->peer, sizeof(c->peer), "%s:%u",
		         inet_ntoa(sa.sin_addr), ntohs(sa.sin_port));
		ev_io_init(&c->rio, read_cb, fd, EV_READ);
		c->rio.data = c;
		ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
		c->wio.data = c;
		ev_timer_init(&c->timer, timer_cb, cn->o.login_timeout, 0.0);
		c->timer.data = c;
		ev_io_start(loop, &c->rio);
		ev_timer_start(loop, &c->timer);
		LOG_D("conn %s accepted", c->peer);
	}
}

/* ------------------------------------------------------------------ */
/* router entry points */

void
connector_reply(connector *cn, const role_reply *reps, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const role_reply *r = &reps[i];
		struct conn *c = conn_by_tag(cn, r->route.tag);

		if (c == NULL || c->closing) {
			continue; /* the client retries with its dedup id */
		}
		if (r->code != ROLE_OK) {
			conn_error(c, r->route.req_id, r->code, r->text,
			           r->group, r->dedup_id);
		} else if (r->kind == ROLE_OP_SEND) {
			im_SendAck ack;

			ack.group = r->group;
			ack.dedup_id = r->dedup_id;
			ack.seq = r->seq;
			ack.time_ms = r->time_ms;
			ack.dup = r->dup;
			conn_send(c, r->route.req_id, im_Envelope_send_ack_tag,
			          im_SendAck_fields, &ack);
		} else if (r->kind == ROLE_OP_CREATE_GROUP) {
			im_GroupCreated gc;

			gc.group = r->group;
			conn_send(c, r->route.req_id,
			          im_Envelope_group_created_tag,
			          im_GroupCreated_fields, &gc);
		} else {
			conn_error(c, r->route.req_id, im_Code_OK, NULL,
			           r->group, 0);
		}
	}
}

/* Room for n offsets, grown and kept: no allocation per fan-out once the
 * largest batch was seen (bounded by the Chatter's max_batch). */
static size_t *
deliver_offsets(connector *cn, size_t n)
{
	size_t ncap = cn->foffs_cap ? cn->foffs_cap : 64;
	size_t *p;

	if (n <= cn->foffs_cap) {
		return cn->foffs;
	}
	while (ncap < n) {
		ncap *= 2;
	}
	p = realloc(cn->foffs, ncap * sizeof(*p));
	if (p == NULL) {
		return NULL;
	}
	cn->foffs = p;
	cn->foffs_cap = ncap;
	return p;
}

void
connector_deliver(connector *cn, const role_fanout *fans, size_t n)
{
	uint64_t now = role_now_ms();
	size_t i, k, j;

	for (i = 0; i < n; i++) {
		const role_fanout *f = &fans[i];
		size_t *offs, total = 0;

		/* Encode each message once; every session gets the bytes. */
		offs = deliver_offsets(cn, f->nmsgs + 1);
		if (offs == NULL) {
			LOG_E("deliver: out of memory");
			continue;
		}
		for (k = 0; k < f->nmsgs; k++) {
			size_t len;

			memset(cn->dl, 0, sizeof(*cn->dl));
			fill_deliver(cn->dl, &f->msgs[k]);
			len = encode_frame(cn, 0, im_Envelope_deliver_tag,
			                   im_Deliver_fields, cn->dl);
			if (total + len > cn->fcap) {
				size_t ncap = cn->fcap ? cn->fcap : 65536;
				uint8_t *nb;

				while (ncap < total + len) {
					ncap *= 2;
				}
				nb = realloc(cn->fbuf, ncap);
				if (nb == NULL) {
					break;
				}
				cn->fbuf = nb;
				cn->fcap = ncap;
			}
			offs[k] = total;
			memcpy(cn->fbuf + total, cn->obuf, len);
			total += len;
		}
		offs[k] = total;
		for (j = 0; j < f->nmembers; j++) {
			struct user *u = user_find(cn, f->members[j]);
			size_t m;

			if (u == NULL || u->convs == NULL) {
				continue; /* offline: the store has it */
			}
			for (m = 0; m < k; m++) {
				const im_msg *msg = &f->msgs[m];
				struct session *s, *next;

				(void)im_convlist_deliver(
				        u->convs, msg, msg->sender == u->uid);
				for (s = u->sessions; s != NULL; s = next) {
					next = s->next;
					(void)session_push(
					        s, msg->conv, msg->seq,
					        cn->fbuf + offs[m],
					        (uint32_t)(offs[m + 1] -
					                   offs[m]),
					        now);
				}
			}
		}
	}
}

static void
reload_convs(connector *cn, struct user *u)
{
	if (im_convlist_load(u->convs, cn->st, u->uid) != IM_OK) {
		LOG_W("reloading conversations of %llu: %s",
		      (unsigned long long)u->uid, im_store_errmsg(cn->st));
	}
}

/*
 * A group created with u as a member: its row in the store starts at
 * {0, 0} (created with the group, before any message), so the list takes
 * that row without reading the store. Messages delivered before this event
 * already added the conversation (with the right pointer): leave it.
 */
static bool
add_new_group(struct user *u, im_gid gid)
{
	im_conv_row row;

	if (im_convlist_lookup(u->convs, gid, NULL) == IM_OK) {
		return true;
	}
	memset(&row, 0, sizeof(row));
	row.conv = gid;
	return im_convlist_apply_row(u->convs, &row) == IM_OK;
}

/* Apply a committed user event to the user's in-memory state. */
static void
apply_uevent(connector *cn, struct user *u, const role_uevent *ev)
{
	if (u->convs == NULL) {
		return;
	}
	switch (ev->type) {
	case UEV_GROUP_CREATED:
		if (add_new_group(u, ev->group)) {
			break;
		}
		/* Full or out of memory: reload (it reports why). */
		reload_convs(cn, u);
		break;
	case UEV_JOINED:
		/* Reload: the new conversation's row (read pointer at the
		 * join) comes from the store, the only source of truth. */
		reload_convs(cn, u);
		break;
	case UEV_LEFT:
		(void)im_convlist_remove(u->convs, ev->group);
		break;
	case UEV_READ:
		(void)im_convlist_read(u->convs, ev->group, ev->read_seq,
		                       ev->read_ordinal, NULL);
		break;
	default:
		break;
	}
}

/*
 * Take the first user-queue segment of every user of the batch that has
 * none yet in ONE transaction (im_store_seg_take_many), instead of one
 * seg_take (and fsync) per user: a batch of GroupCreated events reaches
 * many offline users at once. Users it cannot serve (a backend without the
 * op, a failure) are left to the per-user refill below.
 */
static void
uq_take_first(connector *cn, const role_uevent *evs, size_t n)
{
	im_seg_key *keys = NULL;
	struct user **us = NULL;
	im_seg *segs = NULL;
	size_t i, k = 0, off;
	int rc;

	keys = malloc(n * sizeof(*keys));
	us = malloc(n * sizeof(*us));
	segs = malloc(n * sizeof(*segs));
	if (keys == NULL || us == NULL || segs == NULL) {
		goto out;
	}
	for (i = 0; i < n; i++) {
		const role_uevent *ev = &evs[i];
		im_shard_entry e =
		        im_shard_get(cn->map, IM_KIND_USER, ev->user);
		struct user *u;

		if (ev->user == 0 || e.epoch == 0 ||
		    strcmp(e.owner, cn->node) != 0 ||
		    (u = user_get(cn, ev->user)) == NULL || u->uq_ready ||
		    u->uq_taking) {
			continue;
		}
		u->uq_taking = true;
		keys[k].space = IM_SEG_USER_SEQ;
		keys[k].id = u->uid;
		us[k++] = u;
	}
	for (off = 0; off < k; off += IM_STORE_SEG_MANY_MAX) {
		size_t m = k - off < IM_STORE_SEG_MANY_MAX
		                   ? k - off
		                   : IM_STORE_SEG_MANY_MAX;

		rc = im_store_seg_take_many(cn->st, keys + off, m,
		                            cn->o.uq_step, segs + off);
		for (i = off; i < off + m; i++) {
			if (rc == IM_OK &&
			    im_idseg_feed(&us[i]->uq, &segs[i]) == IM_OK) {
				us[i]->uq_ready = true;
			}
		}
		if (rc != IM_OK && rc != IM_ENOTSUP) {
			LOG_W("user queues: taking %zu segments: %s", m,
			      im_store_errmsg(cn->st));
		}
	}
	for (i = 0; i < k; i++) {
		us[i]->uq_taking = false;
	}
out:
	free(keys);
	free(us);
	free(segs);
}

/*
 * Send events for users this Connector does not own back to the router,
 * one hop more, to be routed by a fresher map (the Router reloads its map
 * for a bounced event). Past ROLE_UEVENT_HOPS_MAX they are dropped.
 */
static void
uevents_bounce(connector *cn, role_uevent *evs, size_t n)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		if (evs[i].hops >= ROLE_UEVENT_HOPS_MAX) {
			LOG_W("user event for %llu: no owner agreed on after "
			      "%u hops, dropped",
			      (unsigned long long)evs[i].user, evs[i].hops);
			continue;
		}
		evs[k] = evs[i];
		evs[k].hops++;
		k++;
	}
	if (k > 0) {
		LOG_I("%zu user events for users not owned here sent back "
		      "to be routed again",
		      k);
		cn->router->ops->user_events(cn->router, evs, k);
	}
}

static void uevents_append(connector *cn, const role_uevent *evs, size_t n,
                           bool retried);

void
connector_user_events(connector *cn, const role_uevent *evs, size_t n)
{
	uevents_append(cn, evs, n, false);
}

/* Does the map give ev's user to this node? */
static bool
uevent_ours(connector *cn, const role_uevent *ev)
{
	im_shard_entry e = im_shard_get(cn->map, IM_KIND_USER, ev->user);

	return ev->user != 0 && e.epoch != 0 && strcmp(e.owner, cn->node) == 0;
}

/*
 * Append the events of users we own to their queues (fenced by the user
 * slot) and push them; those of users we do not own (a Router or this
 * node had a stale map: a handover or failover just moved the slot) go
 * back to be routed to the owner. A fenced append (IM_ESTALE: the slot
 * moved under us) reloads the map and goes once more, so every event ends
 * in its owner's queue: nothing is dropped for a stale map.
 */
static void
uevents_append(connector *cn, const role_uevent *evs, size_t n, bool retried)
{
	im_uq_item *items = NULL;
	im_fence *fences = NULL;
	struct user **users = NULL;
	size_t *evidx = NULL;
	uint8_t *bodies = NULL;
	role_uevent *bounce = NULL;
	uint64_t now = role_now_ms();
	size_t i, k, nitems = 0, nfences = 0, nbounce = 0;
	int rc;

	if (n == 0) {
		return;
	}
	items = calloc(n, sizeof(*items));
	fences = calloc(n, sizeof(*fences));
	users = calloc(n, sizeof(*users));
	evidx = calloc(n, sizeof(*evidx));
	bodies = malloc(n * UQ_BODY_CAP);
	bounce = calloc(n, sizeof(*bounce));
	if (items == NULL || fences == NULL || users == NULL || evidx == NULL ||
	    bodies == NULL || bounce == NULL) {
		LOG_E("user events: out of memory; %zu events dropped", n);
		goto out;
	}
	/* One reload when some event is not ours by our map: it may be
	 * older than the sender's. */
	for (i = 0; i < n; i++) {
		if (evs[i].user != 0 && !uevent_ours(cn, &evs[i])) {
			if (!retried) {
				(void)im_shard_load(cn->map, cn->st);
			}
			break;
		}
	}
	if (n > 1) {
		uq_take_first(cn, evs, n);
	}
	for (i = 0; i < n; i++) {
		const role_uevent *ev = &evs[i];
		im_shard_entry e =
		        im_shard_get(cn->map, IM_KIND_USER, ev->user);
		im_UserEvent ue = im_UserEvent_init_zero;
		struct user *u;
		pb_ostream_t os;
		uint64_t seq;

		if (ev->user == 0) {
			continue;
		}
		if (!uevent_ours(cn, ev)) {
			bounce[nbounce++] = *ev;
			continue;
		}
		u = user_get(cn, ev->user);
		if (u == NULL) {
			continue;
		}
		/* Our first id of this user's queue comes from a fresh
		 * segment, above anything an earlier owner handed out. */
		if (!u->uq_ready) {
			if (im_idseg_refill(&u->uq, cn->st) != IM_OK) {
				LOG_W("user queue of %llu: %s",
				      (unsigned long long)u->uid,
				      im_store_errmsg(cn->st));
				continue;
			}
			u->uq_ready = true;
		}
		if (im_idseg_next(&u->uq, &seq) != IM_OK &&
		    (im_idseg_refill(&u->uq, cn->st) != IM_OK ||
		     im_idseg_next(&u->uq, &seq) != IM_OK)) {
			LOG_W("user queue of %llu: no seq: %s",
			      (unsigned long long)u->uid,
			      im_store_errmsg(cn->st));
			continue;
		}
		ue.seq = seq;
		ue.type = (im_EventType)ev->type;
		ue.group = ev->group;
		ue.actor = ev->actor;
		ue.read_seq = ev->read_seq;
		ue.read_ordinal = ev->read_ordinal;
		ue.time_ms = now;
		snprintf(ue.name, sizeof(ue.name), "%s", ev->name);
		os = pb_ostream_from_buffer(bodies + nitems * UQ_BODY_CAP,
		                            UQ_BODY_CAP);
		if (!pb_encode(&os, im_UserEvent_fields, &ue)) {
			continue;
		}
		items[nitems].user = u->uid;
		items[nitems].seq = seq;
		items[nitems].time_ms = now;
		items[nitems].type = ev->type;
		items[nitems].body_len = (uint32_t)os.bytes_written;
		items[nitems].body = bodies + nitems * UQ_BODY_CAP;
		users[nitems] = u;
		evidx[nitems] = i;
		for (k = 0; k < nfences && fences[k].slot != e.slot; k++) {
		}
		if (k == nfences) {
			fences[nfences].kind = IM_KIND_USER;
			fences[nfences].slot = e.slot;
			fences[nfences].epoch = e.epoch;
			nfences++;
		}
		nitems++;
	}
	if (nitems == 0) {
		goto out;
	}
	rc = im_store_uq_append(cn->st, fences, nfences, items, nitems);
	if (rc != IM_OK) {
		LOG_W("user events: append of %zu failed: %s (%s)", nitems,
		      im_strerror(rc), im_store_errmsg(cn->st));
		for (i = 0; i < nitems; i++) {
			im_idseg_reset(&users[i]->uq);
			users[i]->uq_ready = false;
		}
		if (rc == IM_ESTALE && !retried) {
			/* A slot moved under us: once more by a fresh map
			 * (ours again: appended; moved: sent on). */
			(void)im_shard_load(cn->map, cn->st);
			for (i = 0; i < nitems; i++) {
				bounce[nbounce++] = evs[evidx[i]];
			}
			uevents_append(cn, bounce, nbounce, true);
			nbounce = 0;
		}
		goto out;
	}
	for (i = 0; i < nitems; i++) {
		struct user *u = users[i];
		struct session *s, *next;
		size_t len;

		if (u->uq_last_known && items[i].seq > u->uq_last) {
			u->uq_last = items[i].seq;
		}
		if (evs[evidx[i]].type == UEV_GROUP_CREATED) {
			name_put(cn, evs[evidx[i]].group, evs[evidx[i]].name);
		}
		apply_uevent(cn, u, &evs[evidx[i]]);
		len = encode_uevent_frame(cn, &items[i]);
		if (len == 0) {
			continue;
		}
		for (s = u->sessions; s != NULL; s = next) {
			next = s->next;
			(void)session_push(s, IM_PUSHQ_USERQ, items[i].seq,
			                   cn->obuf, (uint32_t)len, now);
		}
	}
out:
	if (nbounce > 0) {
		uevents_bounce(cn, bounce, nbounce);
	}
	free(items);
	free(fences);
	free(users);
	free(evidx);
	free(bodies);
	free(bounce);
}

/* ------------------------------------------------------------------ */

void
connector_flush(connector *cn)
{
	struct conn *c, *next;

	while (cn->dirty != NULL) {
		c = cn->dirty;
		cn->dirty = c->dirty_next;
		c->dirty_next = NULL;
		c->dirty = false;
		if (!c->closed) {
			conn_flush_one(c);
		}
	}
	/* Closed connections may sit on the dirty list above, so they are
	 * freed only after the walk. */
	for (c = cn->dead; c != NULL; c = next) {
		next = c->dead_next;
		free(c->wbuf);
		free(c->rbuf);
		free(c);
	}
	cn->dead = NULL;
	while (cn->gc != NULL) {
		struct user *u = cn->gc;

		cn->gc = u->gc_next;
		u->in_gc = false;
		if (u->nsessions == 0) {
			user_free(cn, u);
		}
	}
}

static void
flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	connector_flush(w->data);
}

int
connector_listen(connector *cn, const char *addr, uint16_t port,
                 uint16_t *port_out)
{
	struct sockaddr_in sa;
	socklen_t slen = sizeof(sa);
	int fd, one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		LOG_E("listen: bad IPv4 address '%s'", addr);
		return IM_EINVAL;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		LOG_E("socket: %s", strerror(errno));
		return IM_ERR;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 512) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &slen) < 0) {
		LOG_E("listen on %s:%u: %s", addr, port, strerror(errno));
		close(fd);
		return IM_ERR;
	}
	cn->lfd = fd;
	ev_io_init(&cn->accept_w, accept_cb, fd, EV_READ);
	cn->accept_w.data = cn;
	ev_io_start(cn->loop, &cn->accept_w);
	if (port_out != NULL) {
		*port_out = ntohs(sa.sin_port);
	}
	return IM_OK;
}

void
connector_stop_accepting(connector *cn)
{
	if (cn->lfd >= 0) {
		ev_io_stop(cn->loop, &cn->accept_w);
		close(cn->lfd);
		cn->lfd = -1;
	}
}

uint32_t
connector_shed_moved(connector *cn)
{
	uint32_t i, n = 0;

	for (i = 0; i < cn->o.max_conns; i++) {
		struct conn *c = cn->conns[i];
		im_shard_entry e;
		const char *addr;

		if (c == NULL || c->closed || c->closing || c->uid == 0) {
			continue;
		}
		e = im_shard_get(cn->map, IM_KIND_USER, c->uid);
		if (strcmp(e.owner, cn->node) == 0) {
			continue;
		}
		addr = cn->redirect != NULL && e.owner[0] != '\0'
		               ? cn->redirect(cn->redirect_payload, e.owner)
		               : NULL;
		if (addr != NULL) {
			conn_redirect(c, 0, addr);
		} else {
			conn_fail(c, 0, im_Code_ERR_UNAVAILABLE,
			          "user moved to another connector");
		}
		n++;
	}
	/*
	 * Then their sessions, without a grace period, including those in
	 * grace: the deliveries of the time the slot was elsewhere went to
	 * the other owner, so a resume from this memory would miss them. A
	 * resume here later (the slot came back) replays from the store.
	 */
	for (i = 0; i < cn->nub; i++) {
		struct user *u;

		for (u = cn->ub[i]; u != NULL; u = u->next) {
			if (strcmp(im_shard_get(cn->map, IM_KIND_USER, u->uid)
			                   .owner,
			           cn->node) == 0) {
				continue;
			}
			while (u->sessions != NULL) {
				session_destroy(u->sessions);
			}
			u->uq_ready = false;
		}
	}
	return n;
}

uint32_t
connector_renamed(connector *cn)
{
	uint32_t i;

	/* Our next user-queue seq of any user comes from a fresh segment:
	 * the slot's epoch changed even where it stayed ours. */
	for (i = 0; i < cn->nub; i++) {
		struct user *u;

		for (u = cn->ub[i]; u != NULL; u = u->next) {
			im_idseg_reset(&u->uq);
			u->uq_ready = false;
		}
	}
	return connector_shed_moved(cn);
}

void
connector_set_redirect(connector *cn,
                       const char *(*fn)(void *payload, const char *owner),
                       void *payload)
{
	cn->redirect = fn;
	cn->redirect_payload = payload;
}

uint32_t
connector_drop_slot(connector *cn, uint32_t slot, const char *address)
{
	uint32_t nslots = im_shard_nslots(cn->map), i, n = 0;

	/* Clients first: Redirect (or a close) while the session still
	 * refers to the connection, then the sessions without a grace. */
	for (i = 0; i < cn->o.max_conns; i++) {
		struct conn *c = cn->conns[i];

		if (c == NULL || c->closed || c->uid == 0 ||
		    im_shard_slot_of(c->uid, nslots) != slot) {
			continue;
		}
		if (address != NULL) {
			conn_redirect(c, 0, address);
		} else {
			conn_close(c, "user slot moved");
		}
		n++;
	}
	for (i = 0; i < cn->nub; i++) {
		struct user *u;

		for (u = cn->ub[i]; u != NULL; u = u->next) {
			if (im_shard_slot_of(u->uid, nslots) != slot) {
				continue;
			}
			while (u->sessions != NULL) {
				session_destroy(u->sessions);
			}
			/* Should the slot come back, our first user-queue
			 * seq comes from a fresh segment again. */
			u->uq_ready = false;
		}
	}
	return n;
}

void
connector_get_stats(const connector *cn, connector_stats *out)
{
	*out = cn->stats;
	out->conns = cn->nconns;
	out->users = cn->nusers;
	out->sessions = cn->nsessions;
}

int
connector_create(connector **out, struct ev_loop *loop, im_store *st,
                 im_shard_map *map, const char *node, uint32_t index,
                 role_router *router, const void *secret, size_t secret_len,
                 const connector_opts *opts)
{
	connector_opts o = CONNECTOR_OPTS_INIT;
	connector *cn;
	uint32_t i;
	int rc;

	if (out == NULL || loop == NULL || st == NULL || map == NULL ||
	    node == NULL || router == NULL || secret == NULL ||
	    secret_len < IM_TOKEN_SECRET_MIN ||
	    secret_len > IM_TOKEN_SECRET_MAX) {
		return IM_EINVAL;
	}
	if (opts != NULL) {
		o = *opts;
	}
	if (o.max_conns == 0 || o.max_sessions == 0 || o.frame_max == 0 ||
	    o.frame_max > IM_FRAME_MAX || o.wbuf_max < IM_FRAME_MAX * 2 ||
	    o.pushq_items == 0 || o.pushq_bytes == 0 || o.rto_ms == 0 ||
	    o.max_convs == 0 || o.uq_step == 0 || o.login_timeout <= 0 ||
	    o.idle_timeout <= 0 || o.grace <= 0) {
		return IM_EINVAL;
	}
	cn = calloc(1, sizeof(*cn));
	if (cn == NULL) {
		return IM_ENOMEM;
	}
	cn->loop = loop;
	cn->st = st;
	cn->map = map;
	cn->node = node;
	cn->index = index;
	cn->router = router;
	rc = im_token_verifier_create(&cn->tokens, secret, secret_len, NULL);
	if (rc != IM_OK) {
		free(cn);
		return rc;
	}
	cn->o = o;
	cn->lfd = -1;
	cn->nub = 1024;
	while (cn->nub < o.max_conns && cn->nub < (1u << 20)) {
		cn->nub <<= 1;
	}
	/* Read more than one frame per syscall when clients pipeline. */
	cn->rcap = IM_FRAME_HEADER + o.frame_max + 65536;
	cn->conns = calloc(o.max_conns, sizeof(*cn->conns));
	cn->free_idx = calloc(o.max_conns, sizeof(*cn->free_idx));
	cn->ub = calloc(cn->nub, sizeof(*cn->ub));
	cn->rbuf = malloc(cn->rcap);
	cn->obuf = malloc(IM_FRAME_HEADER + IM_FRAME_MAX);
	cn->env = malloc(sizeof(*cn->env));
	cn->page = malloc(sizeof(*cn->page));
	cn->cpage = malloc(sizeof(*cn->cpage));
	cn->members = malloc(sizeof(*cn->members));
	cn->dl = malloc(sizeof(*cn->dl));
	cn->entries = calloc(o.max_convs, sizeof(*cn->entries));
	if (cn->conns == NULL || cn->free_idx == NULL || cn->ub == NULL ||
	    cn->rbuf == NULL || cn->obuf == NULL || cn->env == NULL ||
	    cn->page == NULL || cn->cpage == NULL || cn->members == NULL ||
	    cn->dl == NULL || cn->entries == NULL) {
		connector_destroy(cn);
		return IM_ENOMEM;
	}
	for (i = 0; i < o.max_conns; i++) {
		cn->free_idx[i] = o.max_conns - 1 - i;
	}
	cn->nfree = o.max_conns;
	ev_prepare_init(&cn->flush_w, flush_cb);
	cn->flush_w.data = cn;
	ev_set_priority(&cn->flush_w, EV_MINPRI);
	ev_prepare_start(loop, &cn->flush_w);
	*out = cn;
	return IM_OK;
}

void
connector_destroy(connector *cn)
{
	uint32_t i;

	if (cn == NULL) {
		return;
	}
	connector_stop_accepting(cn);
	for (i = 0; cn->conns != NULL && i < cn->o.max_conns; i++) {
		if (cn->conns[i] != NULL) {
			conn_close(cn->conns[i], "shutdown");
		}
	}
	for (i = 0; cn->ub != NULL && i < cn->nub; i++) {
		while (cn->ub[i] != NULL) {
			struct user *u = cn->ub[i];

			while (u->sessions != NULL) {
				session_destroy(u->sessions);
			}
			user_free(cn, u);
		}
	}
	cn->gc = NULL;
	connector_flush(cn);
	if (ev_is_active(&cn->flush_w)) {
		ev_prepare_stop(cn->loop, &cn->flush_w);
	}
	free(cn->conns);
	free(cn->free_idx);
	free(cn->ub);
	free(cn->rbuf);
	free(cn->obuf);
	free(cn->fbuf);
	free(cn->foffs);
	free(cn->env);
	free(cn->page);
	free(cn->cpage);
	free(cn->members);
	free(cn->dl);
	free(cn->entries);
	free(cn->names);
	im_token_verifier_destroy(cn->tokens);
	free(cn);
}
