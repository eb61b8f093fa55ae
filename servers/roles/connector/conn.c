/*
 * Connections and framing: accept, read and parse frames, write buffers
 * with back-pressure, the login and idle timeouts. Everything that knows
 * about sockets is here; the handlers see a struct conn and its frames.
 *
 * Deadlines (one timer per connection): log in within login_timeout of
 * the accept; then some bytes every idle_timeout; and a frame, once its
 * first bytes came, whole within frame_timeout (bytes trickling in keep
 * the idle timeout away, not this one). Each is Error{ERR_TIMEOUT} and a
 * close.
 *
 * Half-close: EOF with no frame half sent stops the reading only; the
 * connection closes once the requests it made are answered (read_shut).
 *
 * Transport: the bytes go through c->tr (transport.h: plain TCP or TLS),
 * whose reads and writes may wait for the other direction; every limit
 * here is the same for each.
 *
 * Reads: one shared read buffer per Connector; a connection only holds the
 * bytes of a frame that has not completely arrived yet (allocated while it
 * is incomplete), so an idle connection costs its struct and nothing else.
 *
 * Writes: frames are appended to the connection's write buffer and the
 * connection is put on the dirty list; an ev_prepare watcher at the lowest
 * priority (after the Chatter's group commit) writes each dirty connection
 * with one write() per loop turn (Redis's beforeSleep, connector.c).
 *
 * Slow readers: pushes live in the session's push queue anyway (until
 * acked), so they are copied into the write buffer only while it is under
 * half of wbuf_max; beyond that the session is marked `backlog` and the
 * queue is pumped again each time the buffer drains. A reader too slow for
 * that overflows its (bounded) push queue and is closed with ERR_FULL; any
 * other frame that would push the buffer past wbuf_max closes it too. Both
 * bounds hold, and a push is never held twice for long.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pb_encode.h>

#include "connector_int.h"

/* Encode one Envelope holding msg at oneof tag into cn->obuf as a frame;
 * returns the frame length or 0. */
size_t
conn__encode_frame(connector *cn, uint64_t req_id, uint32_t tag,
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
void
conn__write(struct conn *c, const void *data, size_t len)
{
	connector *cn = c->cn;

	if (c->closed || len == 0) {
		return;
	}
	if (c->wlen - c->woff + len > cn->o.wbuf_max) {
		conn__close(c, "write buffer bound (slow reader)");
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
			conn__close(c, "out of memory");
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
bool
conn__push_room(const struct conn *c, size_t len)
{
	return c->wlen - c->woff + len <= c->cn->o.wbuf_max / 2;
}

void
conn__send(struct conn *c, uint64_t req_id, uint32_t tag,
           const pb_msgdesc_t *fields, const void *msg)
{
	size_t n = conn__encode_frame(c->cn, req_id, tag, fields, msg);

	if (n == 0) {
		conn__close(c, "encode failed");
		return;
	}
	conn__write(c, c->cn->obuf, n);
}

void
conn__error(struct conn *c, uint64_t req_id, int code, const char *text,
            im_gid group, uint64_t dedup_id)
{
	im_Error e = im_Error_init_zero;

	e.code = (im_Code)code;
	if (text != NULL) {
		snprintf(e.text, sizeof(e.text), "%s", text);
	}
	e.group = group;
	e.dedup_id = dedup_id;
	conn__send(c, req_id, im_Envelope_error_tag, im_Error_fields, &e);
}

/* The last frame is queued: read nothing more, close once it is out. */
static void
close_after_write(struct conn *c)
{
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

/* Send a final Error and close once it is written. */
void
conn__fail(struct conn *c, uint64_t req_id, int code, const char *text)
{
	if (c->closed || c->closing) {
		return;
	}
	LOG_D("conn %s: closing: %s", c->peer, text);
	if (!c->tr->established(c)) {
		conn__close(c, text);
		return;
	}
	conn__error(c, req_id, code, text, 0, 0);
	close_after_write(c);
}

/* Send Redirect{address} and close once it is written. */
void
conn__redirect(struct conn *c, uint64_t req_id, const char *address)
{
	im_Redirect rd = im_Redirect_init_zero;

	if (c->closed || c->closing) {
		return;
	}
	snprintf(rd.address, sizeof(rd.address), "%s", address);
	conn__send(c, req_id, im_Envelope_redirect_tag, im_Redirect_fields,
	           &rd);
	close_after_write(c);
}

void
conn__flush_one(struct conn *c)
{
	connector *cn = c->cn;

	while (!c->closed && c->woff < c->wlen) {
		ssize_t n = c->tr->write(c, c->wbuf + c->woff,
		                         c->wlen - c->woff);

		if (n == TR_WANT_WRITE) {
			if (!ev_is_active(&c->wio)) {
				ev_io_start(cn->loop, &c->wio);
			}
			return;
		}
		if (n == TR_WANT_READ) {
			/* A TLS record must be read first: the next read
			 * marks c dirty again (conn_read). */
			c->write_wants_read = true;
			if (ev_is_active(&c->wio) && !c->read_wants_write) {
				ev_io_stop(cn->loop, &c->wio);
			}
			return;
		}
		if (n <= 0) {
			conn__close(c, "write failed");
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
	if (ev_is_active(&c->wio) && !c->read_wants_write) {
		ev_io_stop(cn->loop, &c->wio);
	}
	if (c->closing) {
		conn__close(c, "closed after final frame");
		return;
	}
	if (c->sess != NULL && c->sess->backlog) {
		conn__session_pump(c->sess);
	}
}

static void conn_read(struct conn *c);

static void
write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;

	if (c->read_wants_write) {
		c->read_wants_write = false;
		conn_read(c);
		if (c->closed) {
			return;
		}
	}
	if (c->woff < c->wlen) {
		conn__flush_one(c);
	} else if (!c->read_wants_write) {
		ev_io_stop(loop, &c->wio);
	}
}

void
conn__close(struct conn *c, const char *why)
{
	connector *cn = c->cn;

	if (c->closed) {
		return;
	}
	LOG_D("conn %s closed: %s", c->peer, why);
	c->closed = true;
	if (c->tr->shutdown != NULL) {
		c->tr->shutdown(c);
	}
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
	c->tr->close(c);
	close(c->fd);
	c->fd = -1;
	cn->conns[c->index] = NULL;
	cn->free_idx[cn->nfree++] = c->index;
	cn->nconns--;
	if (c->sess != NULL) {
		struct session *s = c->sess;

		c->sess = NULL;
		if (s->conn == c) {
			conn__session_detach(s);
		}
	}
	free(c->rbuf);
	c->rbuf = NULL;
	c->rlen = 0;
	c->dead_next = cn->dead;
	cn->dead = c;
	/* It may stay on the dirty list too; the flush skips it. */
}

/* A deadline at t has passed (within a millisecond: libev may fire a
 * timer a hair before the wall clock we compare against reaches it). */
static bool
passed(ev_tstamp now, ev_tstamp t)
{
	return now + 1e-3 >= t;
}

/* The next deadline of c: its login (from accept) or, once logged in,
 * its idle timeout (from the last bytes); sooner if a frame has begun
 * and must be complete by frame_t0 + frame_timeout. */
static ev_tstamp
deadline(const struct conn *c)
{
	const connector_opts *o = &c->cn->o;
	ev_tstamp t = c->uid == 0 ? c->accepted + o->login_timeout
	                          : c->last_rx + o->idle_timeout;

	if (c->rlen > 0 && c->frame_t0 + o->frame_timeout < t) {
		t = c->frame_t0 + o->frame_timeout;
	}
	return t;
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;
	connector *cn = c->cn;
	ev_tstamp now = ev_now(loop);

	if (c->closing) {
		conn__close(c, "peer did not read the final frame");
		return;
	}
	if (c->rlen > 0 && passed(now, c->frame_t0 + cn->o.frame_timeout)) {
		conn__fail(c, 0, im_Code_ERR_TIMEOUT,
		           "frame not complete within frame_timeout");
		return;
	}
	if (c->uid == 0 && passed(now, c->accepted + cn->o.login_timeout)) {
		conn__fail(c, 0, im_Code_ERR_TIMEOUT, "login timeout");
		return;
	}
	/* A half-closed peer sends nothing: this also bounds the wait for
	 * the answers it is owed. */
	if (c->uid != 0 && passed(now, c->last_rx + cn->o.idle_timeout)) {
		conn__fail(c, 0, im_Code_ERR_TIMEOUT, "idle timeout");
		return;
	}
	ev_timer_set(w, deadline(c) - now, 0.0);
	ev_timer_start(loop, w);
}

/* A frame began in this read: its deadline may come before the one the
 * timer is set for. */
static void
frame_begun(struct conn *c)
{
	struct ev_loop *loop = c->cn->loop;
	ev_tstamp now = ev_now(loop);
	ev_tstamp due = c->frame_t0 + c->cn->o.frame_timeout;

	if (due < now + ev_timer_remaining(loop, &c->timer)) {
		ev_timer_stop(loop, &c->timer);
		ev_timer_set(&c->timer, due - now, 0.0);
		ev_timer_start(loop, &c->timer);
	}
}

void
conn__answered(struct conn *c)
{
	if (c->inflight > 0) {
		c->inflight--;
	}
	if (c->rclosed && c->inflight == 0 && !c->closed) {
		close_after_write(c);
	}
}

/* The peer shut down its write side with no frame half sent. It may
 * still read (a client that sent its last request and half-closed), so
 * read no more but answer what was asked: close once the answers of the
 * requests at the Chatters are written, bounded by the idle timeout
 * (last_rx stays put now). A peer that closed for good fails the next
 * write, which closes sooner. */
static void
read_shut(struct conn *c)
{
	ev_io_stop(c->cn->loop, &c->rio);
	c->rclosed = true;
	if (c->inflight == 0) {
		close_after_write(c);
	}
}

struct conn *
conn__by_tag(connector *cn, uint64_t tag)
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

/* Handle every complete frame in buf[0, have); returns the bytes used. */
static size_t
parse_frames(struct conn *c, const uint8_t *buf, size_t have)
{
	size_t off = 0;

	while (!c->closed && !c->closing) {
		const uint8_t *payload;
		uint32_t plen;
		size_t used;
		int rc = im_frame_parse(buf + off, have - off,
		                        c->cn->o.frame_max, &payload, &plen,
		                        &used);

		if (rc == IM_EAGAIN) {
			break;
		}
		if (rc == IM_ETOOBIG) {
			conn__fail(c, 0, im_Code_ERR_TOO_BIG,
			           "frame larger than the client limit");
			break;
		}
		if (rc != IM_OK) {
			conn__fail(c, 0, im_Code_ERR_BAD_REQUEST,
			           "empty frame");
			break;
		}
		conn__handle_frame(c, payload, plen);
		off += used;
	}
	return off;
}

/* Keep only the start of an incomplete frame (<= header + limit); new:
 * it is not the frame kept before this read (that one was completed). */
static void
keep_partial(struct conn *c, const uint8_t *rest, size_t len, bool new)
{
	if (len == 0) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->rlen = 0;
		return;
	}
	if (c->rbuf == NULL) {
		c->rbuf = malloc(IM_FRAME_HEADER + c->cn->o.frame_max);
		if (c->rbuf == NULL) {
			conn__close(c, "out of memory");
			return;
		}
	}
	memmove(c->rbuf, rest, len);
	c->rlen = len;
	if (new) {
		c->frame_t0 = ev_now(c->cn->loop);
		frame_begun(c);
	}
}

/* One read from the transport, its frames handled. Returns true when the
 * transport holds more decoded bytes that no socket event will announce. */
static bool
read_some(struct conn *c)
{
	connector *cn = c->cn;
	uint8_t *buf = cn->rbuf;
	size_t have = c->rlen, off;
	ssize_t n;

	if (have > 0) {
		memcpy(buf, c->rbuf, have);
	}
	n = c->tr->read(c, buf + have, cn->rcap - have);
	if (n == TR_WANT_READ) {
		return false;
	}
	if (n == TR_WANT_WRITE) {
		c->read_wants_write = true;
		if (!ev_is_active(&c->wio)) {
			ev_io_start(cn->loop, &c->wio);
		}
		return false;
	}
	if (n == TR_EOF && have > 0) {
		conn__fail(c, 0, im_Code_ERR_BAD_REQUEST, "truncated frame");
		return false;
	}
	if (n == TR_EOF) {
		read_shut(c);
		return false;
	}
	if (n < 0) {
		conn__close(c, "read error");
		return false;
	}
	have += (size_t)n;
	c->last_rx = ev_now(cn->loop);
	off = parse_frames(c, buf, have);
	if (c->closed || c->closing) {
		return false;
	}
	keep_partial(c, buf + off, have - off, off > 0 || c->rlen == 0);
	return !c->closed && c->tr->pending(c);
}

static void
conn_read(struct conn *c)
{
	int i;

	/* Pending bytes are at most one TLS record (16 KiB) and each read
	 * takes at least one, so this ends; the bound only caps the work of
	 * one callback. */
	for (i = 0; i < 64 && read_some(c); i++) {
	}
	/* A write that waited for a read (TLS) can go on now. */
	if (c->write_wants_read && !c->closed) {
		c->write_wants_read = false;
		conn_mark_dirty(c);
	}
}

static void
read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	conn_read(w->data);
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
		c->tr = cn->tr;
		if (c->tr->open(c) != IM_OK) {
			LOG_W("accept: out of memory for a %s connection",
			      c->tr->name);
			free(c);
			close(fd);
			continue;
		}
		c->index = cn->free_idx[--cn->nfree];
		c->tag = (++cn->tag_gen << 32) | c->index;
		c->accepted = ev_now(loop);
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

int
connector_bind(const char *addr, uint16_t port, int *fd_out, uint16_t *port_out)
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
	/* listen() at once, not only bind(): two sockets bound with
	 * SO_REUSEADDR and not listening may share a port on Linux, so only
	 * a listening socket makes a second server fail here. */
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 512) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &slen) < 0) {
		LOG_E("listen on %s:%u: %s", addr, port, strerror(errno));
		close(fd);
		return IM_ERR;
	}
	*fd_out = fd;
	if (port_out != NULL) {
		*port_out = ntohs(sa.sin_port);
	}
	return IM_OK;
}

void
connector_listen_fd(connector *cn, int fd)
{
	cn->lfd = fd;
	ev_io_init(&cn->accept_w, accept_cb, fd, EV_READ);
	cn->accept_w.data = cn;
	ev_io_start(cn->loop, &cn->accept_w);
}

int
connector_listen(connector *cn, const char *addr, uint16_t port,
                 uint16_t *port_out)
{
	int fd, rc = connector_bind(addr, port, &fd, port_out);

	if (rc == IM_OK) {
		connector_listen_fd(cn, fd);
	}
	return rc;
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
