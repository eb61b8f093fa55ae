/*
 * libim client: one connection, libev driven, nanopb framed.
 *
 * The client's truth per conversation is its cursor: the last seq it has
 * handed to on_deliver, with every earlier one of the chain handed too.
 * Everything else follows from it: duplicates are seq <= cursor, a gap is
 * prev_seq != cursor, a resume carries the cursors, acks are cumulative
 * up to the cursor.
 */
#include "im/client.h"
#include "im/frame.h"
#include "internal.h"

#include "im.pb.h"
#include <pb_decode.h>
#include <pb_encode.h>

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Largest frame the client ever writes: a Send with a full body. */
#define WBUF_CAP (64u * 1024u)
/* Wire cap of cursors per Resume (im.options); the rest is synced. */
#define RESUME_CURSORS_MAX 128
#define SYNC_PAGE_LIMIT 12

enum pkind {
	P_FREE = 0,
	P_LOGIN,
	P_RESUME,
	P_REPAIR, /* gap repair: applies through the cursor */
	P_HIST,   /* history for the caller: history = true */
	P_CREATE,
	P_DONE, /* add, remove: Error{OK} */
	P_READ, /* mark read: Error{OK} */
	P_MEMBERS,
	P_PING,
};

struct pending {
	enum pkind kind;
	uint64_t req_id;   /* on the wire (changes per sync page) */
	uint64_t user_req; /* what the caller got */
	im_gid group;
	im_seq until;
	uint32_t left; /* P_HIST: messages still wanted, 0 = no limit */
	bool limited;
	double sent_at; /* ev_now when its request went out */
};

struct conv {
	im_client_conv c;
	im_seq cursor;
	im_seq acked;
	bool used;
	bool known; /* cursor is meaningful (else: take the first seen) */
	bool member;
	bool syncing;     /* a repair is in flight: drop live pushes */
	bool want_repair; /* a gap seen before login finished */
	im_seq gap_seq;   /* the push whose prev_seq showed the gap */
	bool dirty;       /* on the ack list */
	bool in_resume;   /* its cursor went with the last Resume */
};

struct obox {
	im_gid group;
	uint64_t dedup_id;
	im_seq reply_to;
	uint32_t type;
	uint32_t len;
	uint64_t req_id; /* 0: not on the current connection yet */
	double sent_at;  /* ev_now when req_id went out */
	uint8_t body[IM_CLIENT_BODY_MAX];
};

struct addr {
	char host[256];
	char port[8];
};

struct im_client {
	im_allocator alloc;
	im_client_callbacks cb;
	void *payload;
	/* The listed addresses; cur is the one in use (or tried next). */
	struct addr srv[IM_CLIENT_SERVERS_MAX];
	uint32_t nsrv, cur;
	struct addr redir; /* a Redirect's target */
	bool use_redir;    /* the current try/connection goes to redir */
	bool follow_redir; /* the next try goes to redir (one hop) */
	bool retry_same;   /* the next try goes to the same address */
	bool gave_up;      /* max_rounds tries without a login */
	uint32_t max_rounds;
	char addr_text[IM_CLIENT_ADDR_MAX + 1];
	char token[IM_CLIENT_TOKEN_MAX + 1];
	char device[65];
	uint32_t frame_max;
	uint32_t backoff_min, backoff_max, ping_ms, login_timeout_ms;
	bool reconnect;
	uint64_t rng;

	struct ev_loop *loop;
	bool own_loop;
	ev_io rio, wio;
	ev_timer t_retry; /* reconnect backoff */
	ev_timer t_login; /* connect + login deadline */
	ev_timer t_ping;
	ev_timer t_resend; /* sends rejected with ERR_UNAVAILABLE */
	/* One timer for every send and request in flight: it fires no later
	 * than the oldest one's deadline (send_timeout after it went out). */
	ev_timer t_answer;
	uint32_t send_timeout_ms; /* 0: no answer deadline */
	uint64_t resends;         /* sends tried again after the deadline */
	int fd;
	bool connecting;  /* TCP connect in progress */
	uint64_t gen;     /* bumps on every close */
	uint32_t attempt; /* tries since the last login (or connect()) */
	im_client_state state;
	bool auth_failed;
	double last_rx;

	uint8_t *rbuf;
	size_t rlen;
	uint8_t *wbuf;
	size_t wlen, woff;
	im_Envelope *in, *out;

	im_uid user;
	uint8_t session[16];
	bool have_session;
	im_seq uq_cursor;
	bool uq_known;
	im_seq uq_acked;
	bool uq_dirty;
	bool uq_syncing; /* a user-queue repair is in flight */
	bool uq_behind;  /* login showed events we have not seen */
	uint64_t next_req;

	struct conv *convs;
	size_t conv_cap; /* power of two */
	size_t nconvs, max_convs;
	im_gid *dirty;
	size_t ndirty;

	struct obox *obox;
	uint32_t *oorder; /* slots in send order */
	size_t nobox, max_outbox;
	bool *oused;

	struct pending *pend;
	size_t max_pending;

	im_client_conv *login_convs; /* scratch for on_login */

	/* blocking helpers */
	uint64_t wait_dedup, wait_req;
	bool wait_done;
	int wait_err;
	im_seq wait_seq;
};

static void conn_lost(im_client *cl, int err, uint32_t code, const char *text);
static void pump(im_client *cl);
static void flush_acks(im_client *cl);

/* ---- small helpers ---- */

static uint64_t
rng_next(im_client *cl)
{
	uint64_t z = (cl->rng += 0x9e3779b97f4a7c15ULL);

	return im__mix64(z);
}

/* "host:port" or "[v6]:port" into a; false if it is not one. */
static bool
parse_addr(struct addr *a, const char *s, size_t len)
{
	const char *colon = NULL, *h = s;
	size_t i, hl;
	unsigned long port = 0;

	for (i = 0; i < len; i++) {
		if (s[i] == ':') {
			colon = s + i;
		}
	}
	if (colon == NULL || colon == s || colon + 1 == s + len ||
	    (size_t)(s + len - colon - 1) > 5) {
		return false;
	}
	for (i = (size_t)(colon - s) + 1; i < len; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return false;
		}
		port = port * 10 + (unsigned long)(s[i] - '0');
	}
	if (port == 0 || port > 65535) {
		return false;
	}
	hl = (size_t)(colon - s);
	if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
		h = s + 1;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(a->host) || memchr(h, '\0', hl) != NULL) {
		return false;
	}
	memcpy(a->host, h, hl);
	a->host[hl] = '\0';
	snprintf(a->port, sizeof(a->port), "%lu", port);
	return true;
}

static const struct addr *
cur_addr(const im_client *cl)
{
	return cl->use_redir ? &cl->redir : &cl->srv[cl->cur];
}

static bool
addr_eq(const struct addr *a, const struct addr *b)
{
	return strcmp(a->host, b->host) == 0 && strcmp(a->port, b->port) == 0;
}

/* Where the try after a failed or lost one goes: the Redirect's target
 * when one was just received, the same address after a lost session,
 * else the next listed address that is not the one that just failed
 * (also after the Redirect's target failed: it is not ours to retry, and
 * when the list names it too, e.g. the dead Connector a live one still
 * redirects to, skipping it saves a try). */
static void
move_on(im_client *cl)
{
	struct addr failed;
	uint32_t i;

	if (cl->follow_redir) {
		cl->follow_redir = false;
		cl->use_redir = true;
		return;
	}
	if (cl->retry_same) {
		cl->retry_same = false;
		return;
	}
	failed = *cur_addr(cl);
	cl->use_redir = false;
	for (i = 0; i < cl->nsrv; i++) {
		cl->cur = (cl->cur + 1) % cl->nsrv;
		if (!addr_eq(&cl->srv[cl->cur], &failed)) {
			break;
		}
	}
}

uint32_t
im_client_backoff_ms(uint32_t min_ms, uint32_t max_ms, uint32_t attempt,
                     uint64_t rnd)
{
	uint64_t d = min_ms;
	uint64_t half;

	if (max_ms < min_ms) {
		max_ms = min_ms;
	}
	while (attempt-- > 0 && d < max_ms) {
		d *= 2;
	}
	if (d > max_ms) {
		d = max_ms;
	}
	/* Equal jitter: never below half the delay, so a crowd of clients
	 * spreads out without any of them hammering the server. */
	half = d / 2;
	return (uint32_t)(half + (d - half == 0 ? 0 : rnd % (d - half + 1)));
}

static int
code_to_err(uint32_t code)
{
	switch (code) {
	case im_Code_OK:
		return IM_OK;
	case im_Code_ERR_BAD_REQUEST:
		return IM_EINVAL;
	case im_Code_ERR_AUTH:
	case im_Code_ERR_NOT_MEMBER:
		return IM_EPERM;
	case im_Code_ERR_NOT_LOGGED_IN:
		return IM_EPROTO;
	case im_Code_ERR_NOT_FOUND:
	case im_Code_ERR_SESSION:
		return IM_ENOTFOUND;
	case im_Code_ERR_TOO_BIG:
		return IM_ETOOBIG;
	case im_Code_ERR_UNAVAILABLE:
		return IM_EUNAVAIL;
	case im_Code_ERR_FULL:
		return IM_EFULL;
	case im_Code_ERR_REDIRECT:
	case im_Code_ERR_TIMEOUT:
		return IM_EAGAIN;
	default:
		return IM_ERR;
	}
}

static void
set_state(im_client *cl, im_client_state st)
{
	if (cl->state == st) {
		return;
	}
	cl->state = st;
	if (cl->cb.on_state != NULL) {
		cl->cb.on_state(cl, st, cl->payload);
	}
}

static void
report(im_client *cl, int err, uint32_t code, uint64_t req_id, im_gid group,
       uint64_t dedup_id, const char *text)
{
	im_client_error e;

	if (cl->cb.on_error == NULL) {
		return;
	}
	e.err = err;
	e.server_code = code;
	e.req_id = req_id;
	e.group = group;
	e.dedup_id = dedup_id;
	e.text = text != NULL ? text : "";
	cl->cb.on_error(cl, &e, cl->payload);
}

/* ---- conversations ---- */

static struct conv *
conv_find(const im_client *cl, im_gid g)
{
	size_t mask = cl->conv_cap - 1;
	size_t i = (size_t)im__mix64(g) & mask;

	for (;;) {
		struct conv *c = &cl->convs[i];

		if (!c->used) {
			return NULL;
		}
		if (c->c.group == g) {
			return c;
		}
		i = (i + 1) & mask;
	}
}

static struct conv *
conv_get(im_client *cl, im_gid g)
{
	size_t mask = cl->conv_cap - 1;
	size_t i = (size_t)im__mix64(g) & mask;
	struct conv *c;

	if (g == 0) {
		return NULL;
	}
	for (;;) {
		c = &cl->convs[i];
		if (!c->used) {
			break;
		}
		if (c->c.group == g) {
			return c;
		}
		i = (i + 1) & mask;
	}
	if (cl->nconvs >= cl->max_convs) {
		return NULL;
	}
	memset(c, 0, sizeof(*c));
	c->used = true;
	c->member = true;
	c->c.group = g;
	cl->nconvs++;
	return c;
}

static void
conv_unread(struct conv *c)
{
	c->c.unread = c->c.last_ordinal > c->c.read_ordinal
	                      ? c->c.last_ordinal - c->c.read_ordinal
	                      : 0;
}

static void
mark_dirty(im_client *cl, struct conv *c)
{
	if (!c->dirty && cl->ndirty < cl->max_convs) {
		c->dirty = true;
		cl->dirty[cl->ndirty++] = c->c.group;
	}
}

/* ---- output ---- */

static int
put_env(im_client *cl, im_Envelope *e)
{
	size_t need;
	pb_ostream_t os;

	if (cl->fd < 0) {
		return IM_EAGAIN;
	}
	if (!pb_get_encoded_size(&need, im_Envelope_fields, e) ||
	    need > WBUF_CAP - IM_FRAME_HEADER) {
		return IM_ETOOBIG;
	}
	if (cl->woff > 0 && cl->wlen + IM_FRAME_HEADER + need > WBUF_CAP) {
		memmove(cl->wbuf, cl->wbuf + cl->woff, cl->wlen - cl->woff);
		cl->wlen -= cl->woff;
		cl->woff = 0;
	}
	if (cl->wlen + IM_FRAME_HEADER + need > WBUF_CAP) {
		return IM_EFULL;
	}
	os = pb_ostream_from_buffer(cl->wbuf + cl->wlen + IM_FRAME_HEADER,
	                            need);
	if (!pb_encode(&os, im_Envelope_fields, e)) {
		return IM_ERR;
	}
	im_frame_put_header(cl->wbuf + cl->wlen, (uint32_t)os.bytes_written);
	cl->wlen += IM_FRAME_HEADER + os.bytes_written;
	if (!cl->connecting) {
		ev_io_start(cl->loop, &cl->wio);
	}
	return IM_OK;
}

static im_Envelope *
env_out(im_client *cl, uint64_t req_id, pb_size_t which)
{
	memset(cl->out, 0, sizeof(*cl->out));
	cl->out->req_id = req_id;
	cl->out->which_msg = which;
	return cl->out;
}

/* Start the answer timer unless it runs: a running one fires no later
 * than anything sent now (its deadline is at most now + timeout). */
static void
answer_arm(im_client *cl)
{
	if (cl->send_timeout_ms == 0 || cl->loop == NULL ||
	    ev_is_active(&cl->t_answer)) {
		return;
	}
	ev_timer_set(&cl->t_answer, cl->send_timeout_ms / 1000.0, 0.);
	ev_timer_start(cl->loop, &cl->t_answer);
}

static uint64_t
new_req(im_client *cl)
{
	return ++cl->next_req;
}

static struct pending *
pend_new(im_client *cl, enum pkind kind)
{
	size_t i;

	for (i = 0; i < cl->max_pending; i++) {
		if (cl->pend[i].kind == P_FREE) {
			memset(&cl->pend[i], 0, sizeof(cl->pend[i]));
			cl->pend[i].kind = kind;
			cl->pend[i].req_id = new_req(cl);
			cl->pend[i].user_req = cl->pend[i].req_id;
			cl->pend[i].sent_at =
			        cl->loop != NULL ? ev_now(cl->loop) : 0.;
			answer_arm(cl);
			return &cl->pend[i];
		}
	}
	return NULL;
}

static struct pending *
pend_find(im_client *cl, uint64_t req_id)
{
	size_t i;

	if (req_id == 0) {
		return NULL;
	}
	for (i = 0; i < cl->max_pending; i++) {
		if (cl->pend[i].kind != P_FREE &&
		    cl->pend[i].req_id == req_id) {
			return &cl->pend[i];
		}
	}
	return NULL;
}

static void
emit_reply(im_client *cl, im_client_reply *r)
{
	if (r->text == NULL) {
		r->text = "";
	}
	if (cl->wait_req != 0 && r->req_id == cl->wait_req) {
		cl->wait_done = true;
		cl->wait_err = r->err;
	}
	if (cl->cb.on_reply != NULL) {
		cl->cb.on_reply(cl, r, cl->payload);
	}
}

static void
reply_error(im_client *cl, uint64_t user_req, int err, uint32_t code,
            const char *text)
{
	im_client_reply r;

	memset(&r, 0, sizeof(r));
	r.kind = IM_CLIENT_REPLY_ERROR;
	r.req_id = user_req;
	r.err = err;
	r.server_code = code;
	r.text = text;
	emit_reply(cl, &r);
}

/* Ask the server for (after, until] of a group (0 = the user queue). */
static int
send_sync(im_client *cl, struct pending *p, im_seq after)
{
	im_Envelope *e = env_out(cl, p->req_id, im_Envelope_sync_tag);

	p->sent_at = ev_now(cl->loop);
	e->msg.sync.group = p->group;
	e->msg.sync.after = after;
	e->msg.sync.until = p->until;
	e->msg.sync.limit = SYNC_PAGE_LIMIT;
	return put_env(cl, e);
}

static void
start_repair(im_client *cl, struct conv *c)
{
	struct pending *p;
	bool *syncing = c != NULL ? &c->syncing : &cl->uq_syncing;

	if (*syncing) {
		return;
	}
	if (cl->state != IM_CLIENT_CONNECTED) {
		/* pushes during login: repair once logged in */
		if (c != NULL) {
			c->want_repair = true;
		} else {
			cl->uq_behind = true;
		}
		return;
	}
	p = pend_new(cl, P_REPAIR);
	if (p == NULL) {
		/* Nowhere to track it: a reconnect resumes from the cursor,
		 * which repairs just the same. */
		conn_lost(cl, IM_EFULL, 0, "too many requests for gap repair");
		return;
	}
	p->group = c != NULL ? c->c.group : 0;
	if (send_sync(cl, p, c != NULL ? c->cursor : cl->uq_cursor) != IM_OK) {
		p->kind = P_FREE;
		conn_lost(cl, IM_EFULL, 0, "output full during gap repair");
		return;
	}
	*syncing = true;
}

/* ---- connection ---- */

static void
close_fd(im_client *cl)
{
	if (cl->loop != NULL) {
		ev_io_stop(cl->loop, &cl->rio);
		ev_io_stop(cl->loop, &cl->wio);
		ev_timer_stop(cl->loop, &cl->t_login);
		ev_timer_stop(cl->loop, &cl->t_ping);
		ev_timer_stop(cl->loop, &cl->t_resend);
		ev_timer_stop(cl->loop, &cl->t_answer);
	}
	if (cl->fd >= 0) {
		close(cl->fd);
		cl->fd = -1;
	}
	cl->connecting = false;
	cl->rlen = 0;
	cl->wlen = 0;
	cl->woff = 0;
	cl->gen++;
}

/* Forget what was in flight: sends go again on the next connection with
 * the same dedup ids; requests are answered as unavailable. */
static void
drop_inflight(im_client *cl)
{
	size_t i;

	for (i = 0; i < cl->nobox; i++) {
		cl->obox[cl->oorder[i]].req_id = 0;
	}
	for (i = 0; i < cl->conv_cap; i++) {
		cl->convs[i].syncing = false;
		cl->convs[i].want_repair = false;
	}
	cl->uq_syncing = false;
	for (i = 0; i < cl->max_pending; i++) {
		struct pending *p = &cl->pend[i];
		enum pkind k = p->kind;

		p->kind = P_FREE;
		if (k == P_HIST || k == P_CREATE || k == P_DONE ||
		    k == P_READ || k == P_MEMBERS || k == P_PING) {
			reply_error(cl, p->user_req, IM_EUNAVAIL, 0,
			            "connection lost");
		}
	}
}

/* After a failed or lost try: pick the next address and arm the retry.
 * false: no retry (stopped, bad token, or max_rounds reached). */
static bool
schedule_reconnect(im_client *cl)
{
	uint32_t ms;

	if (!cl->reconnect || cl->auth_failed) {
		return false;
	}
	if (cl->attempt < UINT32_MAX) {
		cl->attempt++;
	}
	if (cl->max_rounds > 0 &&
	    (uint64_t)cl->attempt >= (uint64_t)cl->max_rounds * cl->nsrv) {
		cl->gave_up = true;
		return false;
	}
	move_on(cl);
	/* The delay grows per round over the list, not per address: the
	 * next Connector is worth a try right away when one died, and a
	 * fully dead list still backs off to backoff_max. */
	ms = im_client_backoff_ms(cl->backoff_min, cl->backoff_max,
	                          (cl->attempt - 1) / cl->nsrv, rng_next(cl));
	ev_timer_set(&cl->t_retry, ms / 1000.0, 0.);
	ev_timer_start(cl->loop, &cl->t_retry);
	return true;
}

static void
report_gave_up(im_client *cl)
{
	char text[128];

	snprintf(text, sizeof(text),
	         "gave up: %u tries over %u server address(es) failed",
	         (unsigned)cl->attempt, (unsigned)cl->nsrv);
	report(cl, IM_EUNAVAIL, 0, 0, 0, 0, text);
}

static void
conn_lost(im_client *cl, int err, uint32_t code, const char *text)
{
	bool was_open = cl->fd >= 0;

	close_fd(cl);
	if (!was_open) {
		return;
	}
	/* Reconnect first: a callback below may close the client for good,
	 * which cancels it again. */
	(void)schedule_reconnect(cl);
	drop_inflight(cl);
	if (err != IM_OK) {
		report(cl, err, code, 0, 0, 0, text);
	}
	if (cl->gave_up) {
		report_gave_up(cl);
	}
	set_state(cl, cl->loop != NULL && ev_is_active(&cl->t_retry)
	                      ? IM_CLIENT_DISCONNECTED
	                      : IM_CLIENT_STOPPED);
}

static void
send_login(im_client *cl)
{
	struct pending *p;
	im_Envelope *e;
	size_t i, n = 0;

	if (cl->have_session) {
		p = pend_new(cl, P_RESUME);
		e = env_out(cl, p->req_id, im_Envelope_resume_tag);
		snprintf(e->msg.resume.token, sizeof(e->msg.resume.token), "%s",
		         cl->token);
		memcpy(e->msg.resume.session, cl->session, 16);
		if (cl->uq_known) {
			e->msg.resume.cursors[n].group = 0;
			e->msg.resume.cursors[n].seq = cl->uq_cursor;
			n++;
		}
		for (i = 0; i < cl->conv_cap; i++) {
			struct conv *c = &cl->convs[i];

			c->in_resume = false;
			if (!c->used || !c->known || !c->member ||
			    n >= RESUME_CURSORS_MAX) {
				continue;
			}
			e->msg.resume.cursors[n].group = c->c.group;
			e->msg.resume.cursors[n].seq = c->cursor;
			c->in_resume = true;
			n++;
		}
		e->msg.resume.cursors_count = (pb_size_t)n;
	} else {
		p = pend_new(cl, P_LOGIN);
		e = env_out(cl, p->req_id, im_Envelope_login_tag);
		snprintf(e->msg.login.token, sizeof(e->msg.login.token), "%s",
		         cl->token);
		snprintf(e->msg.login.device, sizeof(e->msg.login.device), "%s",
		         cl->device);
	}
	/* The write buffer is empty on a fresh connection and the pending
	 * table was just cleared, so neither can fail here. */
	(void)put_env(cl, e);
}

static void
on_connected(im_client *cl)
{
	int one = 1;

	cl->connecting = false;
	(void)setsockopt(cl->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev_io_start(cl->loop, &cl->rio);
	cl->last_rx = ev_now(cl->loop);
	send_login(cl);
	if (cl->wlen > 0) {
		ev_io_start(cl->loop, &cl->wio);
	}
}

static void
start_connect(im_client *cl)
{
	const struct addr *a = cur_addr(cl);
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1, rc;
	char text[400];

	ev_timer_stop(cl->loop, &cl->t_retry);
	if (cl->fd >= 0) {
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(a->host, a->port, &hints, &res);
	if (rc != 0) {
		snprintf(text, sizeof(text), "resolve %s: %s", a->host,
		         gai_strerror(rc));
		goto fail;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
		            ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
		    errno == EINPROGRESS) {
			break;
		}
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		snprintf(text, sizeof(text), "connect %s:%s: %s", a->host,
		         a->port, strerror(errno));
		goto fail;
	}
	freeaddrinfo(res);
	cl->fd = fd;
	cl->connecting = true;
	cl->rlen = cl->wlen = cl->woff = 0;
	ev_io_set(&cl->rio, fd, EV_READ);
	ev_io_set(&cl->wio, fd, EV_WRITE);
	ev_io_start(cl->loop, &cl->wio);
	if (cl->login_timeout_ms > 0) {
		ev_timer_set(&cl->t_login, cl->login_timeout_ms / 1000.0, 0.);
		ev_timer_start(cl->loop, &cl->t_login);
	}
	set_state(cl, IM_CLIENT_CONNECTING);
	return;
fail:
	if (res != NULL) {
		freeaddrinfo(res);
	}
	(void)schedule_reconnect(cl);
	report(cl, IM_EUNAVAIL, 0, 0, 0, 0, text);
	if (cl->gave_up) {
		report_gave_up(cl);
	}
	set_state(cl, ev_is_active(&cl->t_retry) ? IM_CLIENT_DISCONNECTED
	                                         : IM_CLIENT_STOPPED);
}

/* ---- input ---- */

static void
obox_remove(im_client *cl, size_t pos)
{
	uint32_t slot = cl->oorder[pos];

	cl->oused[slot] = false;
	memmove(&cl->oorder[pos], &cl->oorder[pos + 1],
	        (cl->nobox - pos - 1) * sizeof(cl->oorder[0]));
	cl->nobox--;
}

static bool
obox_find_req(im_client *cl, uint64_t req_id, size_t *pos_out)
{
	size_t i;

	if (req_id == 0) {
		return false;
	}
	for (i = 0; i < cl->nobox; i++) {
		if (cl->obox[cl->oorder[i]].req_id == req_id) {
			*pos_out = i;
			return true;
		}
	}
	return false;
}

static bool
obox_find_dedup(im_client *cl, im_gid group, uint64_t dedup_id,
                size_t *pos_out)
{
	size_t i;

	for (i = 0; i < cl->nobox; i++) {
		const struct obox *o = &cl->obox[cl->oorder[i]];

		if (o->group == group && o->dedup_id == dedup_id) {
			*pos_out = i;
			return true;
		}
	}
	return false;
}

static void
apply_msg(im_client *cl, struct conv *c, const im_Deliver *d, bool history)
{
	im_client_msg m;

	m.group = d->group;
	m.seq = d->seq;
	m.prev_seq = d->prev_seq;
	m.ordinal = d->ordinal;
	m.sender = d->sender;
	m.time_ms = d->time_ms;
	m.dedup_id = d->dedup_id;
	m.reply_to = d->reply_to;
	m.type = d->type;
	m.body_len = d->body.size;
	m.body = d->body.bytes;
	m.history = history;
	m.own = d->sender == cl->user && cl->user != 0;
	if (!history && c != NULL) {
		c->cursor = d->seq;
		c->known = true;
		if (d->seq > c->c.last_seq) {
			c->c.last_seq = d->seq;
			c->c.last_ordinal = d->ordinal;
			c->c.last_sender = d->sender;
			c->c.last_time_ms = d->time_ms;
			c->c.preview_len =
			        IM__MIN(d->body.size, IM_CLIENT_PREVIEW_MAX);
			memcpy(c->c.preview, d->body.bytes, c->c.preview_len);
			if (m.own && d->seq > c->c.read_seq) {
				c->c.read_seq = d->seq;
				c->c.read_ordinal = d->ordinal;
			}
			conv_unread(c);
		}
		mark_dirty(cl, c);
	}
	if (cl->cb.on_deliver != NULL) {
		cl->cb.on_deliver(cl, &m, cl->payload);
	}
}

static void
handle_deliver(im_client *cl, const im_Deliver *d)
{
	struct conv *c = conv_get(cl, d->group);

	if (d->group == 0 || d->seq == 0) {
		return;
	}
	if (c == NULL) {
		/* Over max_convs: still show it, but nothing to dedup by. */
		apply_msg(cl, NULL, d, false);
		return;
	}
	if (c->syncing) {
		return; /* the repair in flight brings it */
	}
	if (c->cursor != 0 && d->seq <= c->cursor) {
		return; /* seen: a replay or a retransmission */
	}
	if (c->known && d->prev_seq != c->cursor) {
		c->gap_seq = d->seq;
		start_repair(cl, c);
		return;
	}
	apply_msg(cl, c, d, false);
}

static void
handle_event(im_client *cl, const im_UserEvent *u, bool repair)
{
	im_client_event ev;
	struct conv *c;

	if (u->seq == 0 || (cl->uq_syncing && !repair)) {
		return; /* a repair in flight brings it, in order */
	}
	if (cl->uq_known && u->seq <= cl->uq_cursor) {
		return;
	}
	cl->uq_cursor = u->seq;
	cl->uq_known = true;
	cl->uq_dirty = true;
	c = conv_get(cl, u->group);
	if (c != NULL) {
		switch (u->type) {
		case im_EventType_EV_GROUP_CREATED:
			if (!c->known && c->c.last_seq == 0) {
				c->known = true; /* a new group starts empty */
			}
			/* fall through */
		case im_EventType_EV_JOINED:
			if (!c->member) {
				/* back after leaving: what happened while away
				 * is not ours, take the chain from here */
				c->known = false;
			}
			c->member = true;
			if (u->name[0] != '\0') {
				snprintf(c->c.name, sizeof(c->c.name), "%s",
				         u->name);
			}
			break;
		case im_EventType_EV_LEFT:
			c->member = false;
			break;
		case im_EventType_EV_READ:
			if (u->read_seq > c->c.read_seq) {
				c->c.read_seq = u->read_seq;
				c->c.read_ordinal = u->read_ordinal;
				conv_unread(c);
			}
			break;
		default:
			break;
		}
	}
	ev.seq = u->seq;
	ev.type = (uint32_t)u->type;
	ev.group = u->group;
	ev.actor = u->actor;
	ev.read_seq = u->read_seq;
	ev.read_ordinal = u->read_ordinal;
	ev.time_ms = u->time_ms;
	ev.name = u->name;
	if (cl->cb.on_event != NULL) {
		cl->cb.on_event(cl, &ev, cl->payload);
	}
}

static void
apply_conv_info(im_client *cl, const im_ConvInfo *ci)
{
	struct conv *c = conv_get(cl, ci->group);

	if (c == NULL) {
		return;
	}
	c->member = true;
	if (!c->known) {
		/* History before login is the caller's to fetch. */
		c->cursor = ci->last_seq;
		c->acked = ci->last_seq;
		c->known = true;
	}
	if (ci->last_seq >= c->c.last_seq) {
		c->c.last_seq = ci->last_seq;
		c->c.last_ordinal = ci->last_ordinal;
		c->c.last_sender = ci->last_sender;
		c->c.last_time_ms = ci->last_time_ms;
		c->c.preview_len = ci->preview.size;
		memcpy(c->c.preview, ci->preview.bytes, ci->preview.size);
	}
	if (ci->read_seq >= c->c.read_seq) {
		c->c.read_seq = ci->read_seq;
		c->c.read_ordinal = ci->read_ordinal;
	}
	c->c.flags = ci->flags;
	snprintf(c->c.name, sizeof(c->c.name), "%s", ci->name);
	conv_unread(c);
	c->c.unread = ci->unread;
}

static void
became_connected(im_client *cl, bool login)
{
	size_t i, n = 0;

	ev_timer_stop(cl->loop, &cl->t_login);
	cl->attempt = 0;
	if (cl->ping_ms > 0) {
		ev_timer_set(&cl->t_ping, cl->ping_ms / 1000.0,
		             cl->ping_ms / 1000.0);
		ev_timer_start(cl->loop, &cl->t_ping);
	}
	cl->state = IM_CLIENT_CONNECTED;
	/* Conversations the login/resume did not bring up to date. */
	if (cl->uq_behind) {
		cl->uq_behind = false;
		start_repair(cl, NULL);
	}
	for (i = 0; i < cl->conv_cap && cl->fd >= 0; i++) {
		struct conv *c = &cl->convs[i];

		if (!c->used || !c->known || !c->member) {
			continue;
		}
		if (c->want_repair ||
		    (login ? c->cursor < c->c.last_seq : !c->in_resume)) {
			c->want_repair = false;
			start_repair(cl, c);
		}
	}
	if (cl->fd < 0) {
		return;
	}
	if (login && cl->cb.on_login != NULL) {
		for (i = 0; i < cl->conv_cap; i++) {
			if (cl->convs[i].used && cl->convs[i].member) {
				cl->login_convs[n++] = cl->convs[i].c;
			}
		}
		cl->cb.on_login(cl, cl->user, cl->login_convs, n, cl->payload);
		if (cl->fd < 0) {
			return;
		}
	}
	if (cl->cb.on_state != NULL) {
		cl->cb.on_state(cl, IM_CLIENT_CONNECTED, cl->payload);
		if (cl->fd < 0) {
			return;
		}
	}
	pump(cl);
}

static void
handle_sync_page(im_client *cl, struct pending *p, const im_SyncPage *sp)
{
	struct conv *c = p->group != 0 ? conv_find(cl, p->group) : NULL;
	im_seq last = 0;
	uint64_t gen = cl->gen;
	pb_size_t i;
	im_client_reply r;

	for (i = 0; i < sp->msgs_count && cl->gen == gen; i++) {
		const im_Deliver *d = &sp->msgs[i];

		last = d->seq;
		if (p->kind == P_HIST) {
			if (p->limited && p->left == 0) {
				break;
			}
			apply_msg(cl, c, d, true);
			if (p->limited) {
				p->left--;
			}
		} else if (c != NULL && d->seq > c->cursor) {
			/* The server's chain is authoritative inside a page:
			 * it starts after our cursor and is gap-free. */
			apply_msg(cl, c, d, false);
		}
	}
	for (i = 0; i < sp->events_count && cl->gen == gen; i++) {
		last = sp->events[i].seq;
		handle_event(cl, &sp->events[i], true);
	}
	if (cl->gen != gen) {
		return;
	}
	if (sp->more && last != 0 && !(p->limited && p->left == 0)) {
		p->req_id = new_req(cl);
		if (send_sync(cl, p, last) != IM_OK) {
			conn_lost(cl, IM_EFULL, 0, "output full during sync");
		}
		return;
	}
	if (p->kind == P_REPAIR) {
		if (c != NULL) {
			c->syncing = false;
			if (c->cursor < c->gap_seq) {
				/* The repair did not even bring the push that
				 * showed the gap: take the server's chain as it
				 * comes rather than asking forever. */
				c->known = false;
			}
			c->gap_seq = 0;
		}
		if (p->group == 0) {
			cl->uq_syncing = false;
		}
		p->kind = P_FREE;
		return;
	}
	p->kind = P_FREE;
	memset(&r, 0, sizeof(r));
	r.kind = IM_CLIENT_REPLY_SYNCED;
	r.req_id = p->user_req;
	r.group = p->group;
	emit_reply(cl, &r);
}

static void
handle_send_ack(im_client *cl, uint64_t req_id, const im_SendAck *a)
{
	size_t pos;
	bool found = obox_find_req(cl, req_id, &pos);

	if (!found) {
		/* A late ack of an earlier try (an earlier connection's, or
		 * one sent again after the deadline). */
		found = obox_find_dedup(cl, a->group, a->dedup_id, &pos);
	}
	if (!found) {
		return;
	}
	obox_remove(cl, pos);
	if (cl->wait_dedup != 0 && cl->wait_dedup == a->dedup_id) {
		cl->wait_done = true;
		cl->wait_err = IM_OK;
		cl->wait_seq = a->seq;
	}
	if (cl->cb.on_ack != NULL) {
		cl->cb.on_ack(cl, a->group, a->dedup_id, a->seq, a->dup,
		              cl->payload);
	}
	pump(cl);
}

static void
resend_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	im_client *cl = w->data;

	pump(cl);
}

/*
 * A send or request not answered within send_timeout on a healthy
 * connection: its answer was lost on the server side (a node restarted
 * between the hops, a reply routed to a Connector that just lost the
 * user). A send goes again on this connection with the same dedup id (the
 * server stores it once; a late answer of the first try or the retry's
 * dup=true ack both find it by dedup id, the second finds nothing). A gap
 * repair (a read) is asked again. The caller's requests are not repeated
 * (a CreateGroup carries no dedup id): they are answered with IM_EUNAVAIL,
 * outcome unknown. Then re-armed for the oldest deadline left.
 */
static void
answer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	im_client *cl = w->data;
	double now = ev_now(loop), to = cl->send_timeout_ms / 1000.0;
	double next = now + to;
	uint64_t gen = cl->gen;
	bool resend = false, waiting = false;
	size_t i;

	if (cl->state != IM_CLIENT_CONNECTED || cl->fd < 0) {
		return; /* a new connection sends everything again */
	}
	for (i = 0; i < cl->nobox; i++) {
		struct obox *o = &cl->obox[cl->oorder[i]];

		if (o->req_id == 0) {
			continue;
		}
		if (o->sent_at + to <= now) {
			o->req_id = 0;
			cl->resends++;
			resend = true;
		} else {
			waiting = true;
			if (o->sent_at + to < next) {
				next = o->sent_at + to;
			}
		}
	}
	for (i = 0; i < cl->max_pending && cl->gen == gen; i++) {
		struct pending *p = &cl->pend[i];
		enum pkind k = p->kind;

		if (k == P_FREE || k == P_LOGIN || k == P_RESUME) {
			continue; /* login has its own deadline */
		}
		if (p->sent_at + to > now) {
			waiting = true;
			if (p->sent_at + to < next) {
				next = p->sent_at + to;
			}
			continue;
		}
		p->kind = P_FREE;
		if (k == P_REPAIR) {
			struct conv *c = conv_find(cl, p->group);

			if (p->group == 0) {
				cl->uq_syncing = false;
				start_repair(cl, NULL);
			} else if (c != NULL) {
				c->syncing = false;
				start_repair(cl, c);
			}
		} else {
			reply_error(cl, p->user_req, IM_EUNAVAIL, 0,
			            "request timed out");
		}
	}
	if (cl->gen != gen || cl->fd < 0) {
		return; /* a callback closed the connection */
	}
	/* The oldest deadline left is in the future (at least a bit: never
	 * a busy loop); what is resent now arms it again in pump(), due a
	 * full timeout later. Nothing in flight: the timer rests. */
	if (waiting) {
		if (next - now < to / 16) {
			next = now + to / 16;
		}
		/* a repair asked again above may have armed it already */
		ev_timer_stop(loop, &cl->t_answer);
		ev_timer_set(&cl->t_answer, next - now, 0.);
		ev_timer_start(loop, &cl->t_answer);
	}
	if (resend) {
		pump(cl);
	}
}

static void
handle_error(im_client *cl, uint64_t req_id, const im_Error *er)
{
	int err = code_to_err((uint32_t)er->code);
	struct pending *p;
	size_t pos;
	bool stale = false;

	if (!obox_find_req(cl, req_id, &pos) && er->dedup_id != 0 &&
	    obox_find_dedup(cl, er->group, er->dedup_id, &pos)) {
		/* The answer of an earlier try of a send still queued (it
		 * was sent again after the deadline). */
		stale = true;
		if (er->code == im_Code_ERR_UNAVAILABLE ||
		    er->code == im_Code_OK) {
			return; /* the later try is in flight or queued */
		}
	}
	if (stale || obox_find_req(cl, req_id, &pos)) {
		struct obox *o = &cl->obox[cl->oorder[pos]];
		im_gid g = o->group;
		uint64_t dd = o->dedup_id;

		if (er->code == im_Code_ERR_UNAVAILABLE ||
		    er->code == im_Code_OK) {
			/* Outcome unknown: the same dedup id again, later. */
			o->req_id = 0;
			if (!ev_is_active(&cl->t_resend)) {
				ev_timer_set(&cl->t_resend,
				             cl->backoff_min / 1000.0, 0.);
				ev_timer_start(cl->loop, &cl->t_resend);
			}
			return;
		}
		obox_remove(cl, pos);
		if (cl->wait_dedup != 0 && cl->wait_dedup == dd) {
			cl->wait_done = true;
			cl->wait_err = err;
		}
		report(cl, err, (uint32_t)er->code, req_id, g, dd, er->text);
		pump(cl);
		return;
	}
	p = pend_find(cl, req_id);
	if (p != NULL) {
		enum pkind k = p->kind;
		im_client_reply r;

		if (k == P_LOGIN || k == P_RESUME) {
			p->kind = P_FREE;
			if (er->code == im_Code_ERR_AUTH) {
				cl->auth_failed = true;
			} else if (k == P_RESUME &&
			           (er->code == im_Code_ERR_SESSION ||
			            er->code == im_Code_ERR_NOT_FOUND)) {
				/* The server is fine, the session is not: a
				 * fresh login there, right away. */
				cl->have_session = false;
				cl->attempt = 0;
				cl->retry_same = true;
			}
			report(cl, err, (uint32_t)er->code, req_id, 0, 0,
			       er->text);
			conn_lost(cl, IM_OK, 0, NULL);
			return;
		}
		if (k == P_REPAIR) {
			struct conv *c = conv_find(cl, p->group);

			p->kind = P_FREE;
			if (p->group == 0) {
				cl->uq_syncing = false;
			}
			if (c != NULL) {
				c->syncing = false;
				if (er->code == im_Code_ERR_NOT_MEMBER) {
					c->member = false;
				}
			}
			report(cl, err, (uint32_t)er->code, req_id, p->group, 0,
			       er->text);
			return;
		}
		p->kind = P_FREE;
		memset(&r, 0, sizeof(r));
		r.req_id = p->user_req;
		r.group = p->group;
		r.server_code = (uint32_t)er->code;
		r.text = er->text;
		if (er->code == im_Code_OK && k == P_READ) {
			struct conv *c = conv_find(cl, p->group);

			/* The EV_READ echo comes later; when the read reached
			 * the last message its ordinal is known already. */
			if (c != NULL && p->until >= c->c.last_seq &&
			    c->c.last_seq > c->c.read_seq) {
				c->c.read_seq = c->c.last_seq;
				c->c.read_ordinal = c->c.last_ordinal;
				conv_unread(c);
			}
		}
		if (er->code == im_Code_OK) {
			r.kind = k == P_HIST ? IM_CLIENT_REPLY_SYNCED
			                     : IM_CLIENT_REPLY_DONE;
		} else {
			r.kind = IM_CLIENT_REPLY_ERROR;
			r.err = err;
		}
		emit_reply(cl, &r);
		return;
	}
	if (er->code == im_Code_OK) {
		return;
	}
	/* Connection level (req_id 0): the server closes after these. */
	if (er->code == im_Code_ERR_AUTH) {
		cl->auth_failed = true;
	}
	report(cl, err, (uint32_t)er->code, req_id, 0, 0, er->text);
	if (er->code == im_Code_ERR_AUTH) {
		conn_lost(cl, IM_OK, 0, NULL);
	}
}

static void
handle_redirect(im_client *cl, const im_Redirect *rd)
{
	char text[IM_CLIENT_ADDR_MAX + 32];

	if (!parse_addr(&cl->redir, rd->address,
	                strnlen(rd->address, sizeof(rd->address)))) {
		conn_lost(cl, IM_EPROTO, im_Code_ERR_REDIRECT,
		          "bad redirect address");
		return;
	}
	/* The hop counts as a try (attempt is not reset): two servers that
	 * keep sending the client to each other back off like dead ones,
	 * and only a login resets it. */
	cl->follow_redir = true;
	snprintf(text, sizeof(text), "redirected to %.*s",
	         (int)IM_CLIENT_ADDR_MAX, rd->address);
	conn_lost(cl, IM_EAGAIN, im_Code_ERR_REDIRECT, text);
	if (cl->follow_redir) {
		/* Not followed now (no automatic reconnect): a later
		 * im_client_connect() starts there. */
		cl->follow_redir = false;
		cl->use_redir = true;
	}
}

static void
handle_env(im_client *cl, const im_Envelope *e)
{
	struct pending *p = pend_find(cl, e->req_id);
	im_client_reply r;
	size_t i;

	switch (e->which_msg) {
	case im_Envelope_login_ok_tag:
		if (p == NULL || p->kind != P_LOGIN) {
			break;
		}
		cl->user = e->msg.login_ok.user;
		memcpy(cl->session, e->msg.login_ok.session, 16);
		cl->have_session = true;
		if (!cl->uq_known) {
			cl->uq_cursor = e->msg.login_ok.uq_last_seq;
			cl->uq_acked = cl->uq_cursor;
			cl->uq_known = true;
		}
		cl->uq_behind = cl->uq_cursor < e->msg.login_ok.uq_last_seq;
		break;
	case im_Envelope_conv_page_tag:
		if (p == NULL || p->kind != P_LOGIN) {
			break;
		}
		for (i = 0; i < e->msg.conv_page.convs_count; i++) {
			apply_conv_info(cl, &e->msg.conv_page.convs[i]);
		}
		if (e->msg.conv_page.done) {
			p->kind = P_FREE;
			became_connected(cl, true);
		}
		break;
	case im_Envelope_resume_ok_tag:
		if (p == NULL || p->kind != P_RESUME) {
			break;
		}
		p->kind = P_FREE;
		cl->user = e->msg.resume_ok.user;
		memcpy(cl->session, e->msg.resume_ok.session, 16);
		became_connected(cl, false);
		break;
	case im_Envelope_send_ack_tag:
		handle_send_ack(cl, e->req_id, &e->msg.send_ack);
		break;
	case im_Envelope_deliver_tag:
		handle_deliver(cl, &e->msg.deliver);
		break;
	case im_Envelope_user_event_tag:
		handle_event(cl, &e->msg.user_event, false);
		break;
	case im_Envelope_sync_page_tag:
		if (p != NULL && (p->kind == P_REPAIR || p->kind == P_HIST)) {
			handle_sync_page(cl, p, &e->msg.sync_page);
		}
		break;
	case im_Envelope_group_created_tag:
	case im_Envelope_members_tag:
	case im_Envelope_pong_tag:
		if (p == NULL) {
			break;
		}
		p->kind = P_FREE;
		memset(&r, 0, sizeof(r));
		r.req_id = p->user_req;
		if (e->which_msg == im_Envelope_group_created_tag) {
			struct conv *c =
			        conv_get(cl, e->msg.group_created.group);

			/* The creator is in it from now on; a new group
			 * starts empty, so its chain is known from 0. */
			if (c != NULL && !c->known && c->c.last_seq == 0) {
				c->known = true;
			}
			r.kind = IM_CLIENT_REPLY_CREATED;
			r.group = e->msg.group_created.group;
		} else if (e->which_msg == im_Envelope_members_tag) {
			r.kind = IM_CLIENT_REPLY_MEMBERS;
			r.group = e->msg.members.group;
			r.users = e->msg.members.users;
			r.nusers = e->msg.members.users_count;
			r.more = e->msg.members.more;
		} else {
			r.kind = IM_CLIENT_REPLY_PONG;
			r.server_time_ms = e->msg.pong.server_time_ms;
		}
		emit_reply(cl, &r);
		break;
	case im_Envelope_error_tag:
		handle_error(cl, e->req_id, &e->msg.error);
		break;
	case im_Envelope_redirect_tag:
		handle_redirect(cl, &e->msg.redirect);
		break;
	default:
		break; /* requests from a server, or unknown: ignore */
	}
}

static void
flush_acks(im_client *cl)
{
	im_Envelope *e;
	size_t i, keep = 0;

	if (cl->state != IM_CLIENT_CONNECTED) {
		return;
	}
	if (cl->uq_dirty && cl->uq_cursor > cl->uq_acked) {
		e = env_out(cl, 0, im_Envelope_deliver_ack_tag);
		e->msg.deliver_ack.group = 0;
		e->msg.deliver_ack.seq = cl->uq_cursor;
		if (put_env(cl, e) == IM_OK) {
			cl->uq_acked = cl->uq_cursor;
			cl->uq_dirty = false;
		}
	}
	for (i = 0; i < cl->ndirty; i++) {
		struct conv *c = conv_find(cl, cl->dirty[i]);

		if (c == NULL) {
			continue;
		}
		if (c->cursor > c->acked) {
			e = env_out(cl, 0, im_Envelope_deliver_ack_tag);
			e->msg.deliver_ack.group = c->c.group;
			e->msg.deliver_ack.seq = c->cursor;
			if (put_env(cl, e) != IM_OK) {
				cl->dirty[keep++] = cl->dirty[i];
				continue;
			}
			c->acked = c->cursor;
		}
		c->dirty = false;
	}
	cl->ndirty = keep;
}

static void
read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	im_client *cl = w->data;
	uint64_t gen = cl->gen;
	size_t cap = (size_t)cl->frame_max + IM_FRAME_HEADER;
	size_t off = 0;
	ssize_t n;
	char text[400];

	n = read(cl->fd, cl->rbuf + cl->rlen, cap - cl->rlen);
	if (n == 0) {
		conn_lost(cl, IM_EUNAVAIL, 0, "connection closed by server");
		return;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			return;
		}
		snprintf(text, sizeof(text), "read: %s", strerror(errno));
		conn_lost(cl, IM_EUNAVAIL, 0, text);
		return;
	}
	cl->rlen += (size_t)n;
	cl->last_rx = ev_now(loop);
	for (;;) {
		const uint8_t *payload;
		uint32_t plen;
		size_t used;
		pb_istream_t is;
		int rc;

		rc = im_frame_parse(cl->rbuf + off, cl->rlen - off,
		                    cl->frame_max, &payload, &plen, &used);
		if (rc == IM_EAGAIN) {
			break;
		}
		if (rc == IM_ETOOBIG) {
			snprintf(text, sizeof(text),
			         "incoming frame over %u bytes",
			         (unsigned)cl->frame_max);
			conn_lost(cl, IM_ETOOBIG, 0, text);
			return;
		}
		if (rc != IM_OK) {
			conn_lost(cl, IM_EPROTO, 0, "empty frame");
			return;
		}
		is = pb_istream_from_buffer(payload, plen);
		if (!pb_decode(&is, im_Envelope_fields, cl->in)) {
			snprintf(text, sizeof(text), "bad frame: %s",
			         PB_GET_ERROR(&is));
			conn_lost(cl, IM_EPROTO, 0, text);
			return;
		}
		off += used;
		handle_env(cl, cl->in);
		if (cl->gen != gen) {
			return; /* closed by a handler or a callback */
		}
	}
	if (off > 0) {
		memmove(cl->rbuf, cl->rbuf + off, cl->rlen - off);
		cl->rlen -= off;
	}
	flush_acks(cl);
}

static void
write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	im_client *cl = w->data;
	ssize_t n;
	char text[400];

	if (cl->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(cl->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
			err = errno;
		}
		if (err != 0) {
			snprintf(text, sizeof(text), "connect %s:%s: %s",
			         cur_addr(cl)->host, cur_addr(cl)->port,
			         strerror(err));
			conn_lost(cl, IM_EUNAVAIL, 0, text);
			return;
		}
		on_connected(cl);
		return;
	}
	if (cl->woff < cl->wlen) {
		/* MSG_NOSIGNAL: a peer that went away is an error code
		 * here, not a SIGPIPE that kills the caller's process. */
		n = send(cl->fd, cl->wbuf + cl->woff, cl->wlen - cl->woff,
		         MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				return;
			}
			snprintf(text, sizeof(text), "write: %s",
			         strerror(errno));
			conn_lost(cl, IM_EUNAVAIL, 0, text);
			return;
		}
		cl->woff += (size_t)n;
	}
	if (cl->woff == cl->wlen) {
		cl->woff = cl->wlen = 0;
		ev_io_stop(loop, &cl->wio);
		/* Room again: what waited for it. */
		flush_acks(cl);
		pump(cl);
	}
}

static void
retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	start_connect(w->data);
}

static void
login_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	im_client *cl = w->data;

	if (cl->state != IM_CLIENT_CONNECTED) {
		conn_lost(cl, IM_EAGAIN, 0, "login timed out");
	}
}

static void
ping_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	im_client *cl = w->data;
	im_Envelope *e;

	if (cl->state != IM_CLIENT_CONNECTED) {
		return;
	}
	if (ev_now(loop) - cl->last_rx > 3.0 * cl->ping_ms / 1000.0) {
		conn_lost(cl, IM_EUNAVAIL, 0, "server silent");
		return;
	}
	e = env_out(cl, new_req(cl), im_Envelope_ping_tag);
	e->msg.ping.time_ms = (uint64_t)(ev_now(loop) * 1000.0);
	(void)put_env(cl, e);
}

static void
pump(im_client *cl)
{
	size_t i;

	if (cl->state != IM_CLIENT_CONNECTED) {
		return;
	}
	for (i = 0; i < cl->nobox; i++) {
		struct obox *o = &cl->obox[cl->oorder[i]];
		im_Envelope *e;
		uint64_t req;

		if (o->req_id != 0) {
			continue;
		}
		req = new_req(cl);
		e = env_out(cl, req, im_Envelope_send_tag);
		e->msg.send.group = o->group;
		e->msg.send.dedup_id = o->dedup_id;
		e->msg.send.reply_to = o->reply_to;
		e->msg.send.type = o->type;
		e->msg.send.body.size = (pb_size_t)o->len;
		memcpy(e->msg.send.body.bytes, o->body, o->len);
		if (put_env(cl, e) != IM_OK) {
			break; /* the write callback pumps again */
		}
		o->req_id = req;
		o->sent_at = ev_now(cl->loop);
		answer_arm(cl);
	}
}

/* ---- public ---- */

/* The version 2 address list, or the version 1 host/port, into srv
 * (NULL: only check them). */
static bool
opts_servers(struct addr *srv, uint32_t *n_out, const im_client_opts *o)
{
	struct addr scratch;
	uint32_t i;

	if (o->version >= 2 && o->nservers > 0) {
		if (o->nservers > IM_CLIENT_SERVERS_MAX || o->servers == NULL) {
			return false;
		}
		for (i = 0; i < o->nservers; i++) {
			const char *s = o->servers[i];
			size_t len;

			if (s == NULL ||
			    (len = strnlen(s, IM_CLIENT_ADDR_MAX + 1)) >
			            IM_CLIENT_ADDR_MAX ||
			    !parse_addr(srv != NULL ? &srv[i] : &scratch, s,
			                len)) {
				return false;
			}
		}
		*n_out = o->nservers;
		return true;
	}
	if (o->host == NULL || o->host[0] == '\0' ||
	    strlen(o->host) >= sizeof(srv[0].host) || o->port == 0) {
		return false;
	}
	if (srv != NULL) {
		snprintf(srv[0].host, sizeof(srv[0].host), "%s", o->host);
		snprintf(srv[0].port, sizeof(srv[0].port), "%u",
		         (unsigned)o->port);
	}
	*n_out = 1;
	return true;
}

int
im_client_create(im_client **out, const im_client_opts *opts)
{
	im_client *cl;
	size_t cap = 16;
	uint32_t nsrv = 0;

	if (out == NULL) {
		return IM_EINVAL;
	}
	*out = NULL;
	if (opts == NULL || opts->version == 0 ||
	    opts->version > IM_CLIENT_OPTS_VERSION || opts->token == NULL ||
	    opts->token[0] == '\0' ||
	    strlen(opts->token) > IM_CLIENT_TOKEN_MAX ||
	    opts->max_outbox == 0 || opts->max_convs == 0 ||
	    opts->max_convs > (1u << 24) || opts->max_outbox > (1u << 20) ||
	    opts->max_pending < 4 || opts->max_pending > 65536 ||
	    opts->frame_max < 1024 || opts->frame_max > IM_FRAME_MAX ||
	    opts->backoff_min_ms == 0 ||
	    opts->backoff_min_ms > opts->backoff_max_ms ||
	    !opts_servers(NULL, &nsrv, opts)) {
		return IM_EINVAL;
	}
	while (cap < (size_t)opts->max_convs * 2) {
		cap *= 2;
	}
	cl = im__calloc(&opts->alloc, 1, sizeof(*cl));
	if (cl == NULL) {
		return IM_ENOMEM;
	}
	cl->alloc = opts->alloc;
	cl->fd = -1;
	cl->conv_cap = cap;
	cl->max_convs = opts->max_convs;
	cl->max_outbox = opts->max_outbox;
	cl->max_pending = opts->max_pending;
	cl->frame_max = opts->frame_max;
	cl->rbuf = im__alloc(&cl->alloc, cl->frame_max + IM_FRAME_HEADER);
	cl->wbuf = im__alloc(&cl->alloc, WBUF_CAP);
	cl->in = im__alloc(&cl->alloc, sizeof(*cl->in));
	cl->out = im__alloc(&cl->alloc, sizeof(*cl->out));
	cl->convs = im__calloc(&cl->alloc, cap, sizeof(*cl->convs));
	cl->dirty = im__calloc(&cl->alloc, cl->max_convs, sizeof(im_gid));
	cl->obox = im__calloc(&cl->alloc, cl->max_outbox, sizeof(*cl->obox));
	cl->oorder =
	        im__calloc(&cl->alloc, cl->max_outbox, sizeof(*cl->oorder));
	cl->oused = im__calloc(&cl->alloc, cl->max_outbox, sizeof(bool));
	cl->pend = im__calloc(&cl->alloc, cl->max_pending, sizeof(*cl->pend));
	cl->login_convs =
	        im__calloc(&cl->alloc, cl->max_convs, sizeof(*cl->login_convs));
	if (cl->rbuf == NULL || cl->wbuf == NULL || cl->in == NULL ||
	    cl->out == NULL || cl->convs == NULL || cl->dirty == NULL ||
	    cl->obox == NULL || cl->oorder == NULL || cl->oused == NULL ||
	    cl->pend == NULL || cl->login_convs == NULL) {
		im_client_destroy(cl);
		return IM_ENOMEM;
	}
	cl->cb = opts->cb;
	cl->payload = opts->payload;
	(void)opts_servers(cl->srv, &cl->nsrv, opts);
	cl->max_rounds = opts->version >= 2 ? opts->max_rounds : 0;
	cl->send_timeout_ms = opts->version >= 3 ? opts->send_timeout_ms : 0;
	snprintf(cl->token, sizeof(cl->token), "%s", opts->token);
	snprintf(cl->device, sizeof(cl->device), "%s",
	         opts->device != NULL ? opts->device : "");
	cl->backoff_min = opts->backoff_min_ms;
	cl->backoff_max = opts->backoff_max_ms;
	cl->ping_ms = opts->ping_ms;
	cl->login_timeout_ms = opts->login_timeout_ms;
	cl->reconnect = opts->reconnect;
	cl->rng = opts->seed;
	cl->state = IM_CLIENT_STOPPED;
	ev_io_init(&cl->rio, read_cb, -1, EV_READ);
	ev_io_init(&cl->wio, write_cb, -1, EV_WRITE);
	ev_timer_init(&cl->t_retry, retry_cb, 0., 0.);
	ev_timer_init(&cl->t_login, login_timeout_cb, 0., 0.);
	ev_timer_init(&cl->t_ping, ping_cb, 0., 0.);
	ev_timer_init(&cl->t_resend, resend_cb, 0., 0.);
	ev_timer_init(&cl->t_answer, answer_cb, 0., 0.);
	cl->t_answer.data = cl;
	cl->rio.data = cl->wio.data = cl;
	cl->t_retry.data = cl->t_login.data = cl->t_ping.data = cl;
	cl->t_resend.data = cl;
	*out = cl;
	return IM_OK;
}

void
im_client_destroy(im_client *cl)
{
	im_allocator a;

	if (cl == NULL) {
		return;
	}
	close_fd(cl);
	if (cl->loop != NULL) {
		ev_timer_stop(cl->loop, &cl->t_retry);
		if (cl->own_loop) {
			ev_loop_destroy(cl->loop);
		}
	}
	a = cl->alloc;
	im__free(&a, cl->rbuf);
	im__free(&a, cl->wbuf);
	im__free(&a, cl->in);
	im__free(&a, cl->out);
	im__free(&a, cl->convs);
	im__free(&a, cl->dirty);
	im__free(&a, cl->obox);
	im__free(&a, cl->oorder);
	im__free(&a, cl->oused);
	im__free(&a, cl->pend);
	im__free(&a, cl->login_convs);
	im__free(&a, cl);
}

int
im_client_attach(im_client *cl, struct ev_loop *loop)
{
	if (cl == NULL || loop == NULL || cl->loop != NULL) {
		return IM_EINVAL;
	}
	cl->loop = loop;
	return IM_OK;
}

struct ev_loop *
im_client_loop(const im_client *cl)
{
	return cl != NULL ? cl->loop : NULL;
}

static int
ensure_loop(im_client *cl)
{
	if (cl->loop != NULL) {
		return IM_OK;
	}
	cl->loop = ev_loop_new(EVFLAG_AUTO);
	if (cl->loop == NULL) {
		return IM_ENOMEM;
	}
	cl->own_loop = true;
	return IM_OK;
}

int
im_client_connect(im_client *cl)
{
	int rc;

	if (cl == NULL) {
		return IM_EINVAL;
	}
	rc = ensure_loop(cl);
	if (rc != IM_OK) {
		return rc;
	}
	cl->auth_failed = false;
	cl->gave_up = false;
	if (cl->fd >= 0) {
		return IM_OK;
	}
	if (cl->state == IM_CLIENT_STOPPED) {
		cl->state = IM_CLIENT_DISCONNECTED;
	}
	cl->attempt = 0;
	start_connect(cl);
	return IM_OK;
}

void
im_client_close(im_client *cl)
{
	if (cl == NULL) {
		return;
	}
	if (cl->loop != NULL) {
		ev_timer_stop(cl->loop, &cl->t_retry);
	}
	if (cl->fd >= 0) {
		close_fd(cl);
		drop_inflight(cl);
	}
	set_state(cl, IM_CLIENT_STOPPED);
}

im_client_state
im_client_get_state(const im_client *cl)
{
	return cl != NULL ? cl->state : IM_CLIENT_STOPPED;
}

const char *
im_client_server(const im_client *cl)
{
	const struct addr *a;
	im_client *m = (im_client *)cl;

	if (cl == NULL) {
		return "";
	}
	a = cur_addr(cl);
	/* An IPv6 literal gets its brackets back, as it was given. */
	snprintf(m->addr_text, sizeof(m->addr_text),
	         strchr(a->host, ':') != NULL ? "[%s]:%s" : "%s:%s", a->host,
	         a->port);
	return m->addr_text;
}

im_uid
im_client_user(const im_client *cl)
{
	return cl != NULL ? cl->user : 0;
}

int
im_client_send_ex(im_client *cl, im_gid group, const void *body, size_t len,
                  im_seq reply_to, uint32_t type, uint64_t dedup_id,
                  uint64_t *dedup_out)
{
	struct obox *o;
	uint32_t slot;

	if (cl == NULL || group == 0 || len > IM_CLIENT_BODY_MAX ||
	    (body == NULL && len > 0)) {
		return IM_EINVAL;
	}
	if (cl->nobox >= cl->max_outbox) {
		return IM_EFULL;
	}
	for (slot = 0; cl->oused[slot]; slot++) {
	}
	while (dedup_id == 0) {
		dedup_id = rng_next(cl);
	}
	o = &cl->obox[slot];
	o->group = group;
	o->dedup_id = dedup_id;
	o->reply_to = reply_to;
	o->type = type;
	o->len = (uint32_t)len;
	o->req_id = 0;
	if (len > 0) {
		memcpy(o->body, body, len);
	}
	cl->oused[slot] = true;
	cl->oorder[cl->nobox++] = slot;
	if (dedup_out != NULL) {
		*dedup_out = dedup_id;
	}
	pump(cl);
	return IM_OK;
}

int
im_client_send(im_client *cl, im_gid group, const void *body, size_t len,
               uint64_t *dedup_out)
{
	return im_client_send_ex(cl, group, body, len, 0, 0, 0, dedup_out);
}

size_t
im_client_outbox_count(const im_client *cl)
{
	return cl != NULL ? cl->nobox : 0;
}

/* Common head of the request calls: a slot and an envelope. */
static int
req_begin(im_client *cl, enum pkind kind, pb_size_t which,
          struct pending **p_out, im_Envelope **e_out)
{
	struct pending *p;

	if (cl->state != IM_CLIENT_CONNECTED) {
		return IM_EAGAIN;
	}
	p = pend_new(cl, kind);
	if (p == NULL) {
		return IM_EFULL;
	}
	*p_out = p;
	*e_out = env_out(cl, p->req_id, which);
	return IM_OK;
}

static int
req_end(im_client *cl, struct pending *p, im_Envelope *e, uint64_t *req_out)
{
	int rc = put_env(cl, e);

	if (rc != IM_OK) {
		p->kind = P_FREE;
		return rc;
	}
	if (req_out != NULL) {
		*req_out = p->user_req;
	}
	return IM_OK;
}

int
im_client_create_group(im_client *cl, const char *name, const im_uid *members,
                       size_t n, uint64_t *req_out)
{
	struct pending *p;
	im_Envelope *e;
	size_t i;
	int rc;

	if (cl == NULL || name == NULL || strlen(name) > IM_CLIENT_NAME_MAX ||
	    n > 64 || (members == NULL && n > 0)) {
		return IM_EINVAL;
	}
	for (i = 0; i < n; i++) {
		if (members[i] == 0) {
			return IM_EINVAL;
		}
	}
	rc = req_begin(cl, P_CREATE, im_Envelope_create_group_tag, &p, &e);
	if (rc != IM_OK) {
		return rc;
	}
	snprintf(e->msg.create_group.name, sizeof(e->msg.create_group.name),
	         "%s", name);
	for (i = 0; i < n; i++) {
		e->msg.create_group.members[i] = members[i];
	}
	e->msg.create_group.members_count = (pb_size_t)n;
	return req_end(cl, p, e, req_out);
}

static int
member_req(im_client *cl, pb_size_t which, im_gid group, im_uid user,
           uint64_t *req_out)
{
	struct pending *p;
	im_Envelope *e;
	int rc;

	if (cl == NULL || group == 0 || user == 0) {
		return IM_EINVAL;
	}
	rc = req_begin(cl, P_DONE, which, &p, &e);
	if (rc != IM_OK) {
		return rc;
	}
	p->group = group;
	if (which == im_Envelope_add_member_tag) {
		e->msg.add_member.group = group;
		e->msg.add_member.user = user;
	} else {
		e->msg.remove_member.group = group;
		e->msg.remove_member.user = user;
	}
	return req_end(cl, p, e, req_out);
}

int
im_client_add_member(im_client *cl, im_gid group, im_uid user,
                     uint64_t *req_out)
{
	return member_req(cl, im_Envelope_add_member_tag, group, user, req_out);
}

int
im_client_remove_member(im_client *cl, im_gid group, im_uid user,
                        uint64_t *req_out)
{
	return member_req(cl, im_Envelope_remove_member_tag, group, user,
	                  req_out);
}

int
im_client_list_members(im_client *cl, im_gid group, im_uid after_user,
                       uint64_t *req_out)
{
	struct pending *p;
	im_Envelope *e;
	int rc;

	if (cl == NULL || group == 0) {
		return IM_EINVAL;
	}
	rc = req_begin(cl, P_MEMBERS, im_Envelope_list_members_tag, &p, &e);
	if (rc != IM_OK) {
		return rc;
	}
	p->group = group;
	e->msg.list_members.group = group;
	e->msg.list_members.after_user = after_user;
	return req_end(cl, p, e, req_out);
}

int
im_client_mark_read(im_client *cl, im_gid group, im_seq seq, uint64_t *req_out)
{
	struct pending *p;
	im_Envelope *e;
	struct conv *c;
	int rc;

	if (cl == NULL || group == 0) {
		return IM_EINVAL;
	}
	c = conv_find(cl, group);
	if (seq == 0) {
		if (c == NULL || c->c.last_seq == 0) {
			return IM_EINVAL;
		}
		seq = c->c.last_seq;
	}
	rc = req_begin(cl, P_READ, im_Envelope_mark_read_tag, &p, &e);
	if (rc != IM_OK) {
		return rc;
	}
	p->group = group;
	p->until = seq;
	e->msg.mark_read.group = group;
	e->msg.mark_read.seq = seq;
	return req_end(cl, p, e, req_out);
}

int
im_client_sync(im_client *cl, im_gid group, im_seq after, im_seq until,
               uint32_t max_msgs, uint64_t *req_out)
{
	struct pending *p;
	im_Envelope *e;
	struct conv *c;
	int rc;

	if (cl == NULL || (until != 0 && until <= after)) {
		return IM_EINVAL;
	}
	rc = req_begin(cl, P_HIST, im_Envelope_sync_tag, &p, &e);
	if (rc != IM_OK) {
		return rc;
	}
	c = group != 0 ? conv_find(cl, group) : NULL;
	if (until == 0 && c != NULL && c->known) {
		/* Above the cursor is live traffic, not history. */
		until = c->cursor;
		if (until <= after) {
			im_client_reply r;

			p->kind = P_FREE;
			if (req_out != NULL) {
				*req_out = p->user_req;
			}
			memset(&r, 0, sizeof(r));
			r.kind = IM_CLIENT_REPLY_SYNCED;
			r.req_id = p->user_req;
			r.group = group;
			emit_reply(cl, &r);
			return IM_OK;
		}
	}
	p->group = group;
	p->until = until;
	p->left = max_msgs;
	p->limited = max_msgs > 0;
	rc = send_sync(cl, p, after);
	if (rc != IM_OK) {
		p->kind = P_FREE;
		return rc;
	}
	if (req_out != NULL) {
		*req_out = p->user_req;
	}
	return IM_OK;
}

int
im_client_ping(im_client *cl, uint64_t *req_out)
{
	struct pending *p;
	im_Envelope *e;
	int rc;

	if (cl == NULL) {
		return IM_EINVAL;
	}
	rc = req_begin(cl, P_PING, im_Envelope_ping_tag, &p, &e);
	if (rc != IM_OK) {
		return rc;
	}
	e->msg.ping.time_ms = (uint64_t)(ev_now(cl->loop) * 1000.0);
	return req_end(cl, p, e, req_out);
}

void
im_client_convs(const im_client *cl, im_client_conv *out, size_t max,
                size_t *n_out)
{
	size_t i, n = 0, j;

	if (cl != NULL && out != NULL) {
		for (i = 0; i < cl->conv_cap && n < max; i++) {
			const struct conv *c = &cl->convs[i];

			if (!c->used || !c->member) {
				continue;
			}
			/* Insertion sort by group id: lists are short and
			 * a stable order makes output diffable. */
			for (j = n; j > 0 && out[j - 1].group > c->c.group;
			     j--) {
				out[j] = out[j - 1];
			}
			out[j] = c->c;
			n++;
		}
	}
	if (n_out != NULL) {
		*n_out = n;
	}
}

int
im_client_conv_lookup(const im_client *cl, im_gid group, im_client_conv *out)
{
	const struct conv *c;

	if (cl == NULL || group == 0) {
		return IM_ENOTFOUND;
	}
	c = conv_find(cl, group);
	if (c == NULL || !c->member) {
		return IM_ENOTFOUND;
	}
	if (out != NULL) {
		*out = c->c;
	}
	return IM_OK;
}

im_seq
im_client_cursor(const im_client *cl, im_gid group)
{
	const struct conv *c;

	if (cl == NULL) {
		return 0;
	}
	if (group == 0) {
		return cl->uq_cursor;
	}
	c = conv_find(cl, group);
	return c != NULL ? c->cursor : 0;
}

/* ---- blocking helpers ---- */

static void
deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	*(bool *)w->data = true;
}

int
im_client_run_until(im_client *cl, uint32_t timeout_ms, im_client_pred pred,
                    void *arg)
{
	ev_timer t;
	bool expired = false;
	int rc;

	if (cl == NULL) {
		return IM_EINVAL;
	}
	rc = ensure_loop(cl);
	if (rc != IM_OK) {
		return rc;
	}
	ev_timer_init(&t, deadline_cb, timeout_ms / 1000.0, 0.);
	t.data = &expired;
	ev_timer_start(cl->loop, &t);
	for (;;) {
		if (pred != NULL && pred(cl, arg)) {
			rc = IM_OK;
			break;
		}
		if (expired) {
			rc = pred == NULL ? IM_OK : IM_EAGAIN;
			break;
		}
		ev_run(cl->loop, EVRUN_ONCE);
	}
	ev_timer_stop(cl->loop, &t);
	return rc;
}

static bool
pred_connected(im_client *cl, void *arg)
{
	return cl->state == IM_CLIENT_CONNECTED || cl->auth_failed ||
	       cl->gave_up;
}

int
im_client_connect_wait(im_client *cl, uint32_t timeout_ms)
{
	int rc;

	if (cl == NULL) {
		return IM_EINVAL;
	}
	if (cl->fd < 0 && cl->state != IM_CLIENT_CONNECTED &&
	    (cl->loop == NULL || !ev_is_active(&cl->t_retry))) {
		rc = im_client_connect(cl);
		if (rc != IM_OK) {
			return rc;
		}
	}
	rc = im_client_run_until(cl, timeout_ms, pred_connected, NULL);
	if (rc == IM_OK && cl->auth_failed) {
		return IM_EPERM;
	}
	if (rc == IM_OK && cl->state != IM_CLIENT_CONNECTED && cl->gave_up) {
		return IM_EUNAVAIL;
	}
	return rc;
}

static bool
pred_wait(im_client *cl, void *arg)
{
	return cl->wait_done || cl->auth_failed;
}

int
im_client_send_wait(im_client *cl, im_gid group, const void *body, size_t len,
                    uint32_t timeout_ms, im_seq *seq_out)
{
	uint64_t dd;
	int rc;

	if (cl == NULL) {
		return IM_EINVAL;
	}
	rc = im_client_send(cl, group, body, len, &dd);
	if (rc != IM_OK) {
		return rc;
	}
	cl->wait_dedup = dd;
	cl->wait_done = false;
	cl->wait_err = IM_OK;
	rc = im_client_run_until(cl, timeout_ms, pred_wait, NULL);
	cl->wait_dedup = 0;
	if (rc != IM_OK) {
		return rc;
	}
	if (!cl->wait_done) {
		return IM_EPERM; /* the token was refused */
	}
	if (cl->wait_err == IM_OK && seq_out != NULL) {
		*seq_out = cl->wait_seq;
	}
	return cl->wait_err;
}

int
im_client_wait_reply(im_client *cl, uint64_t req_id, uint32_t timeout_ms,
                     int *reply_err_out)
{
	int rc;

	if (cl == NULL || req_id == 0) {
		return IM_EINVAL;
	}
	/* A reply that came inside the request call itself (a sync with
	 * nothing to fetch) was recorded before wait_req was set. */
	if (!(cl->wait_req == req_id && cl->wait_done)) {
		cl->wait_req = req_id;
		cl->wait_done = false;
		cl->wait_err = IM_OK;
	}
	rc = im_client_run_until(cl, timeout_ms, pred_wait, NULL);
	cl->wait_req = 0;
	if (rc == IM_OK && !cl->wait_done) {
		return IM_EPERM; /* the token was refused */
	}
	if (rc == IM_OK && reply_err_out != NULL) {
		*reply_err_out = cl->wait_err;
	}
	return rc;
}

int
im_client_sync_wait(im_client *cl, im_gid group, im_seq after, im_seq until,
                    uint32_t max_msgs, uint32_t timeout_ms)
{
	uint64_t req;
	int rc, err = IM_OK;

	if (cl == NULL) {
		return IM_EINVAL;
	}
	/* Mark the next req id as awaited so an immediate reply counts. */
	cl->wait_req = cl->next_req + 1;
	cl->wait_done = false;
	cl->wait_err = IM_OK;
	rc = im_client_sync(cl, group, after, until, max_msgs, &req);
	if (rc != IM_OK) {
		cl->wait_req = 0;
		return rc;
	}
	rc = im_client_wait_reply(cl, req, timeout_ms, &err);
	return rc != IM_OK ? rc : err;
}
