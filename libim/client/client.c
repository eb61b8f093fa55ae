/*
 * libim client, the driver: the socket and the libev loop under the
 * socket-free core (core.h). It opens and closes TCP connections when the
 * core asks, moves bytes between the socket and the core's buffers, runs
 * one ev_timer for the core's earliest timer, and hands the core the
 * loop's time. Every protocol decision is the core's. With opts.tls the
 * bytes go through TLS (tls.h): the handshake runs between the TCP
 * connect and im__cc_connected(), so the core sees the same events.
 */
#include "im/client.h"
#include "core.h"
#include "internal.h"
#include "tls.h"

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

struct im_client {
	im_allocator alloc;
	im__cc *cc;
	struct ev_loop *loop;
	bool own_loop;
	ev_io rio, wio;
	ev_timer timer; /* the core's earliest due timer */
	int fd;
	im__tls tls;
	bool handshaking;      /* TLS: connected, handshake under way */
	bool read_wants_write; /* TLS: a read waits for writability */
	bool write_wants_read; /* TLS: a write waits for readability */
};

static uint64_t
now_ms(const im_client *cl)
{
	return cl->loop != NULL ? (uint64_t)(ev_now(cl->loop) * 1000.0) : 0;
}

/* ---- what the core asks for (im__cc_io) ---- */

static int
io_open(void *ud, const char *host, const char *port, char *text, size_t len)
{
	im_client *cl = ud;
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(text, len, "resolve %s: %s", host, gai_strerror(rc));
		return IM_EUNAVAIL;
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
		snprintf(text, len, "connect %s:%s: %s", host, port,
		         strerror(errno));
		freeaddrinfo(res);
		return IM_EUNAVAIL;
	}
	freeaddrinfo(res);
	cl->fd = fd;
	ev_io_set(&cl->rio, fd, EV_READ);
	ev_io_set(&cl->wio, fd, EV_WRITE);
	ev_io_start(cl->loop, &cl->wio); /* writable: connected (or not) */
	return IM_OK;
}

static void
io_close(void *ud)
{
	im_client *cl = ud;

	if (cl->loop != NULL) {
		ev_io_stop(cl->loop, &cl->rio);
		ev_io_stop(cl->loop, &cl->wio);
	}
	im__tls_stop(&cl->tls);
	cl->handshaking = false;
	cl->read_wants_write = false;
	cl->write_wants_read = false;
	if (cl->fd >= 0) {
		close(cl->fd);
		cl->fd = -1;
	}
}

static void
io_want_write(void *ud, bool on)
{
	im_client *cl = ud;

	if (cl->fd < 0 || cl->loop == NULL) {
		return;
	}
	if (on && !cl->write_wants_read) {
		ev_io_start(cl->loop, &cl->wio);
	} else if (!on && !cl->read_wants_write && !cl->handshaking) {
		ev_io_stop(cl->loop, &cl->wio);
	}
}

static void
io_timers(void *ud)
{
	im_client *cl = ud;
	uint64_t due, now;

	if (cl->loop == NULL) {
		return;
	}
	ev_timer_stop(cl->loop, &cl->timer);
	due = im__cc_next_due(cl->cc);
	if (due == IM__CC_NEVER) {
		return;
	}
	now = now_ms(cl);
	ev_timer_set(&cl->timer, due > now ? (double)(due - now) / 1000.0 : 0.,
	             0.);
	ev_timer_start(cl->loop, &cl->timer);
}

static const im__cc_io ev_io_ops = {
        .open = io_open,
        .close = io_close,
        .want_write = io_want_write,
        .timers = io_timers,
};

/* ---- libev callbacks ---- */

/* TLS: one handshake step; done, the core gets the connection. */
static void
handshake_step(im_client *cl)
{
	char text[400];
	int rc = im__tls_handshake(&cl->tls, text, sizeof(text));

	if (rc == IM__TLS_FAIL) {
		im__cc_lost(cl->cc, now_ms(cl), IM_EPROTO, text);
		return;
	}
	if (rc == IM__TLS_WANT_WRITE) {
		ev_io_start(cl->loop, &cl->wio);
		return;
	}
	ev_io_stop(cl->loop, &cl->wio);
	if (rc == IM__TLS_DONE) {
		cl->handshaking = false;
		im__cc_connected(cl->cc, now_ms(cl));
	}
}

/* TLS: decrypted bytes to the core, including what OpenSSL already holds
 * (the socket will not wake us for those). */
static void
tls_read(im_client *cl)
{
	uint64_t gen = cl->cc->gen;
	char text[400];
	int i;

	/* Each pass takes at least a byte of at most a record (16 KiB)
	 * held: the bound only caps one callback's work. */
	for (i = 0; i < 64; i++) {
		size_t cap;
		uint8_t *p = im__cc_rspace(cl->cc, &cap);
		ssize_t n;

		if (cap == 0) {
			break;
		}
		n = im__tls_read(&cl->tls, p, cap, text, sizeof(text));
		if (n == IM__TLS_WANT_READ) {
			break;
		}
		if (n == IM__TLS_WANT_WRITE) {
			cl->read_wants_write = true;
			ev_io_start(cl->loop, &cl->wio);
			break;
		}
		if (n == IM__TLS_DONE) {
			im__cc_lost(cl->cc, now_ms(cl), IM_EUNAVAIL,
			            "connection closed by server");
			return;
		}
		if (n < 0) {
			im__cc_lost(cl->cc, now_ms(cl), IM_EPROTO, text);
			return;
		}
		im__cc_received(cl->cc, now_ms(cl), (size_t)n);
		if (cl->cc->gen != gen || !im__tls_pending(&cl->tls)) {
			break;
		}
	}
	if (cl->cc->gen == gen && cl->write_wants_read) {
		cl->write_wants_read = false;
		ev_io_start(cl->loop, &cl->wio);
	}
}

static void
read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	im_client *cl = w->data;
	size_t cap;
	uint8_t *p = im__cc_rspace(cl->cc, &cap);
	ssize_t n;
	char text[400];

	if (cl->handshaking) {
		handshake_step(cl);
		return;
	}
	if (im__tls_on(&cl->tls)) {
		tls_read(cl);
		return;
	}
	n = read(cl->fd, p, cap);
	if (n == 0) {
		im__cc_lost(cl->cc, now_ms(cl), IM_EUNAVAIL,
		            "connection closed by server");
		return;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			return;
		}
		snprintf(text, sizeof(text), "read: %s", strerror(errno));
		im__cc_lost(cl->cc, now_ms(cl), IM_EUNAVAIL, text);
		return;
	}
	im__cc_received(cl->cc, now_ms(cl), (size_t)n);
}

/* The non-blocking connect finished, well or not. */
static void
connect_done(im_client *cl)
{
	const struct im__cc_addr *a = im__cc_cur_addr(cl->cc);
	int err = 0, one = 1;
	socklen_t len = sizeof(err);
	char text[400];

	if (getsockopt(cl->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
		err = errno;
	}
	if (err != 0) {
		snprintf(text, sizeof(text), "connect %s:%s: %s", a->host,
		         a->port, strerror(err));
		im__cc_lost(cl->cc, now_ms(cl), IM_EUNAVAIL, text);
		return;
	}
	(void)setsockopt(cl->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev_io_start(cl->loop, &cl->rio);
	if (im__tls_on(&cl->tls)) {
		if (im__tls_start(&cl->tls, cl->fd, a->host, text,
		                  sizeof(text)) != IM_OK) {
			im__cc_lost(cl->cc, now_ms(cl), IM_ENOMEM, text);
			return;
		}
		cl->handshaking = true;
		handshake_step(cl);
		return;
	}
	im__cc_connected(cl->cc, now_ms(cl));
}

/* TLS: write what the core has; false when the connection was lost. */
static bool
tls_write(im_client *cl, const uint8_t *p, size_t len, ssize_t *n_out)
{
	char text[400];
	ssize_t n = im__tls_write(&cl->tls, p, len, text, sizeof(text));

	*n_out = 0;
	if (n == IM__TLS_WANT_READ) {
		cl->write_wants_read = true;
		ev_io_stop(cl->loop, &cl->wio);
		return false;
	}
	if (n == IM__TLS_WANT_WRITE) {
		return false;
	}
	if (n < 0) {
		im__cc_lost(cl->cc, now_ms(cl), IM_EPROTO, text);
		return false;
	}
	*n_out = n;
	return true;
}

static void
write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	im_client *cl = w->data;
	size_t len;
	const uint8_t *p;
	ssize_t n = 0;
	char text[400];

	if (cl->cc->connecting && !cl->handshaking) {
		connect_done(cl);
		return;
	}
	if (cl->handshaking) {
		handshake_step(cl);
		return;
	}
	if (cl->read_wants_write) {
		uint64_t gen = cl->cc->gen;

		cl->read_wants_write = false;
		tls_read(cl);
		if (cl->cc->gen != gen) {
			return;
		}
	}
	p = im__cc_output(cl->cc, &len);
	if (len > 0 && im__tls_on(&cl->tls)) {
		if (!tls_write(cl, p, len, &n)) {
			return;
		}
	} else if (len > 0) {
		/* MSG_NOSIGNAL: a peer that went away is an error code
		 * here, not a SIGPIPE that kills the caller's process. */
		n = send(cl->fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				return;
			}
			snprintf(text, sizeof(text), "write: %s",
			         strerror(errno));
			im__cc_lost(cl->cc, now_ms(cl), IM_EUNAVAIL, text);
			return;
		}
	}
	im__cc_wrote(cl->cc, now_ms(cl), (size_t)n);
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	im_client *cl = w->data;

	im__cc_tick(cl->cc, now_ms(cl));
	/* Also when nothing changed: a timer that fired a little early
	 * (the loop's clock against the wall clock) is armed again. */
	io_timers(cl);
}

/* ---- public ---- */

int
im_client_create(im_client **out, const im_client_opts *opts)
{
	im_client *cl;
	im__cc *cc;
	int rc;

	if (out == NULL) {
		return IM_EINVAL;
	}
	*out = NULL;
	rc = im__cc_create(&cc, opts, &ev_io_ops, NULL, NULL);
	if (rc != IM_OK) {
		return rc;
	}
	cl = im__calloc(&opts->alloc, 1, sizeof(*cl));
	if (cl == NULL) {
		im__cc_destroy(cc);
		return IM_ENOMEM;
	}
	rc = im__tls_init(&cl->tls, opts);
	if (rc != IM_OK) {
		im__free(&opts->alloc, cl);
		im__cc_destroy(cc);
		return rc;
	}
	cl->alloc = opts->alloc;
	cl->cc = cc;
	cl->fd = -1;
	cc->io_ud = cl;
	cc->handle = cl;
	ev_io_init(&cl->rio, read_cb, -1, EV_READ);
	ev_io_init(&cl->wio, write_cb, -1, EV_WRITE);
	ev_timer_init(&cl->timer, timer_cb, 0., 0.);
	cl->rio.data = cl->wio.data = cl->timer.data = cl;
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
	io_close(cl);
	if (cl->loop != NULL) {
		ev_timer_stop(cl->loop, &cl->timer);
		if (cl->own_loop) {
			ev_loop_destroy(cl->loop);
		}
	}
	im__tls_finish(&cl->tls);
	im__cc_destroy(cl->cc);
	a = cl->alloc;
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
	im__cc_connect(cl->cc, now_ms(cl));
	return IM_OK;
}

void
im_client_close(im_client *cl)
{
	if (cl != NULL) {
		im__cc_close(cl->cc);
	}
}

im_client_state
im_client_get_state(const im_client *cl)
{
	return cl != NULL ? cl->cc->state : IM_CLIENT_STOPPED;
}

const char *
im_client_server(const im_client *cl)
{
	return cl != NULL ? im__cc_server(cl->cc) : "";
}

im_uid
im_client_user(const im_client *cl)
{
	return cl != NULL ? cl->cc->user : 0;
}

int
im_client_send_ex(im_client *cl, im_gid group, const void *body, size_t len,
                  im_seq reply_to, uint32_t type, uint64_t dedup_id,
                  uint64_t *dedup_out)
{
	if (cl == NULL) {
		return IM_EINVAL;
	}
	return im__cc_send(cl->cc, now_ms(cl), group, body, len, reply_to, type,
	                   dedup_id, dedup_out);
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
	return cl != NULL ? im__cc_outbox_count(cl->cc) : 0;
}

int
im_client_create_group(im_client *cl, const char *name, const im_uid *members,
                       size_t n, uint64_t *req_out)
{
	if (cl == NULL) {
		return IM_EINVAL;
	}
	return im__cc_create_group(cl->cc, now_ms(cl), name, members, n,
	                           req_out);
}

int
im_client_add_member(im_client *cl, im_gid group, im_uid user,
                     uint64_t *req_out)
{
	if (cl == NULL) {
		return IM_EINVAL;
	}
	return im__cc_member(cl->cc, now_ms(cl), true, group, user, req_out);
}

int
im_client_remove_member(im_client *cl, im_gid group, im_uid user,
                        uint64_t *req_out)
{
	if (cl == NULL) {
		return IM_EINVAL;
	}
	return im__cc_member(cl->cc, now_ms(cl), false, group, user, req_out);
}

int
im_client_list_members(im_client *cl, im_gid group, im_uid after_user,
                       uint64_t *req_out)
{
	if (cl == NULL) {
		return IM_EINVAL;
	}
	return im__cc_list_members(cl->cc, now_ms(cl), group, after_user,
	                           req_out);
}

int
im_client_mark_read(im_client *cl, im_gid group, im_seq seq, uint64_t *req_out)
{
	if (cl == NULL) {
		return IM_EINVAL;
	}
	return im__cc_mark_read(cl->cc, now_ms(cl), group, seq, req_out);
}

int
im_client_sync(im_client *cl, im_gid group, im_seq after, im_seq until,
               uint32_t max_msgs, uint64_t *req_out)
{
	if (cl == NULL) {
		return IM_EINVAL;
	}
	return im__cc_sync(cl->cc, now_ms(cl), group, after, until, max_msgs,
	                   req_out);
}

int
im_client_ping(im_client *cl, uint64_t *req_out)
{
	if (cl == NULL) {
		return IM_EINVAL;
	}
	return im__cc_ping(cl->cc, now_ms(cl), req_out);
}

void
im_client_convs(const im_client *cl, im_client_conv *out, size_t max,
                size_t *n_out)
{
	im__cc_convs(cl != NULL ? cl->cc : NULL, out, max, n_out);
}

int
im_client_conv_lookup(const im_client *cl, im_gid group, im_client_conv *out)
{
	return cl != NULL ? im__cc_conv_lookup(cl->cc, group, out)
	                  : IM_ENOTFOUND;
}

im_seq
im_client_cursor(const im_client *cl, im_gid group)
{
	return cl != NULL ? im__cc_cursor(cl->cc, group) : 0;
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
	return cl->cc->state == IM_CLIENT_CONNECTED || cl->cc->auth_failed ||
	       cl->cc->gave_up;
}

int
im_client_connect_wait(im_client *cl, uint32_t timeout_ms)
{
	im__cc *cc;
	int rc;

	if (cl == NULL) {
		return IM_EINVAL;
	}
	cc = cl->cc;
	if (!cc->link && cc->state != IM_CLIENT_CONNECTED &&
	    cc->due[IM__CC_T_RETRY] == IM__CC_NEVER) {
		rc = im_client_connect(cl);
		if (rc != IM_OK) {
			return rc;
		}
	}
	rc = im_client_run_until(cl, timeout_ms, pred_connected, NULL);
	if (rc == IM_OK && cc->auth_failed) {
		return IM_EPERM;
	}
	if (rc == IM_OK && cc->state != IM_CLIENT_CONNECTED && cc->gave_up) {
		return IM_EUNAVAIL;
	}
	return rc;
}

static bool
pred_wait(im_client *cl, void *arg)
{
	return cl->cc->wait.done || cl->cc->auth_failed;
}

int
im_client_send_wait(im_client *cl, im_gid group, const void *body, size_t len,
                    uint32_t timeout_ms, im_seq *seq_out)
{
	struct im__cc_wait *w;
	uint64_t dd;
	int rc;

	if (cl == NULL) {
		return IM_EINVAL;
	}
	rc = im_client_send(cl, group, body, len, &dd);
	if (rc != IM_OK) {
		return rc;
	}
	w = &cl->cc->wait;
	w->dedup = dd;
	w->done = false;
	w->err = IM_OK;
	rc = im_client_run_until(cl, timeout_ms, pred_wait, NULL);
	w->dedup = 0;
	if (rc != IM_OK) {
		return rc;
	}
	if (!w->done) {
		return IM_EPERM; /* the token was refused */
	}
	if (w->err == IM_OK && seq_out != NULL) {
		*seq_out = w->seq;
	}
	return w->err;
}

int
im_client_wait_reply(im_client *cl, uint64_t req_id, uint32_t timeout_ms,
                     int *reply_err_out)
{
	struct im__cc_wait *w;
	int rc;

	if (cl == NULL || req_id == 0) {
		return IM_EINVAL;
	}
	w = &cl->cc->wait;
	/* A reply that came inside the request call itself (a sync with
	 * nothing to fetch) was recorded before wait.req was set. */
	if (!(w->req == req_id && w->done)) {
		w->req = req_id;
		w->done = false;
		w->err = IM_OK;
	}
	rc = im_client_run_until(cl, timeout_ms, pred_wait, NULL);
	w->req = 0;
	if (rc == IM_OK && !w->done) {
		return IM_EPERM; /* the token was refused */
	}
	if (rc == IM_OK && reply_err_out != NULL) {
		*reply_err_out = w->err;
	}
	return rc;
}

int
im_client_sync_wait(im_client *cl, im_gid group, im_seq after, im_seq until,
                    uint32_t max_msgs, uint32_t timeout_ms)
{
	struct im__cc_wait *w;
	uint64_t req;
	int rc, err = IM_OK;

	if (cl == NULL) {
		return IM_EINVAL;
	}
	/* Mark the next req id as awaited so an immediate reply counts. */
	w = &cl->cc->wait;
	w->req = cl->cc->next_req + 1;
	w->done = false;
	w->err = IM_OK;
	rc = im_client_sync(cl, group, after, until, max_msgs, &req);
	if (rc != IM_OK) {
		w->req = 0;
		return rc;
	}
	rc = im_client_wait_reply(cl, req, timeout_ms, &err);
	return rc != IM_OK ? rc : err;
}
