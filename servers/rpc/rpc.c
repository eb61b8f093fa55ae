/*
 * RPC transport: see rpc.h for the contract. Buffers, the call table and
 * the decode struct are allocated when a connection is created and reused
 * across reconnects, so a busy or stalled peer never makes us allocate.
 */
#include "rpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "im/frame.h"
#include "im_code.h"

_Static_assert(imrpc_Rpc_size <= RPC_FRAME_MAX,
	       "the largest RPC must fit in RPC_FRAME_MAX; adjust rpc.options");

/* Frames handled per wake-up before yielding to other watchers. */
#define READS_PER_WAKEUP 16
#define ACCEPTS_PER_WAKEUP 64
#define MAX_INFLIGHT_LIMIT (1u << 20)

enum conn_state {
	ST_IDLE,       /* outgoing, waiting for its reconnect timer */
	ST_CONNECTING, /* outgoing, connect() in progress */
	ST_UP,
	ST_DEAD,       /* destroyed or (incoming) closed; freed when idle */
};

typedef struct call_slot {
	ev_timer timer;
	rpc_conn *conn;
	uint64_t id; /* 0 = free */
	rpc_reply_cb cb;
	void *payload;
} call_slot;

struct rpc_conn {
	struct ev_loop *loop;
	rpc_opts opts;
	rpc_server *server; /* owner of an incoming connection, else NULL */
	rpc_conn *next, *prev;
	enum conn_state state;
	int fd;
	ev_io rio, wio;
	ev_timer retry;
	/* Deadlines of an accepted connection (rpc_server_limits). */
	ev_timer admit_t; /* until rpc_conn_admit() */
	ev_timer rd_t;    /* the frame begun must arrive whole */
	ev_timer wr_t;    /* queued output must move */
	uint32_t frame_ms;
	bool admitted;
	struct sockaddr_in addr;
	uint32_t attempt; /* connects failed in a row, for the backoff */
	uint64_t rng;
	uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t out_head, out_len;
	imrpc_Rpc *rx;
	call_slot *slots;
	uint32_t *free_idx;
	uint32_t nfree;
	uint32_t gen;
	unsigned busy; /* nesting of our callbacks: free only at 0 */
	bool doomed;
	void *user;
	rpc_stats st;
	char peer[32];
	char errmsg[192];
};

struct rpc_server {
	struct ev_loop *loop;
	rpc_opts opts;
	int fd;
	ev_io lio;
	uint16_t port;
	uint32_t max_conns;
	uint32_t nconns;
	rpc_conn *conns; /* newest first */
	rpc_server_limits lim;
	rpc_server_stats st;
};

static void *
xalloc(const im_allocator *a, size_t n)
{
	void *p;

	if (a->realloc != NULL) {
		p = a->realloc(a->ud, NULL, n);
	} else {
		p = malloc(n);
	}
	if (p != NULL) {
		memset(p, 0, n);
	}
	return p;
}

static void
xfree(const im_allocator *a, void *p)
{
	if (p == NULL) {
		return;
	}
	if (a->realloc != NULL) {
		a->realloc(a->ud, p, 0);
	} else {
		free(p);
	}
}

static uint64_t
rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static bool
opts_ok(const rpc_opts *o)
{
	return o->version == RPC_OPTS_VERSION && o->max_inflight >= 1 &&
	       o->max_inflight <= MAX_INFLIGHT_LIMIT && o->frame_max >= 16 &&
	       o->frame_max <= RPC_FRAME_MAX &&
	       o->out_max >= o->frame_max + IM_FRAME_HEADER &&
	       o->timeout_ms > 0 && o->backoff_min_ms > 0 &&
	       o->backoff_max_ms >= o->backoff_min_ms;
}

static bool
parse_addr(struct sockaddr_in *sa, const char *host, uint16_t port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	return host != NULL && inet_pton(AF_INET, host, &sa->sin_addr) == 1;
}

static void
set_peer(rpc_conn *c, const struct sockaddr_in *sa)
{
	char ip[INET_ADDRSTRLEN] = "?";

	inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
	snprintf(c->peer, sizeof(c->peer), "%s:%u", ip,
		 (unsigned)ntohs(sa->sin_port));
}

static void conn_free(rpc_conn *c);

static void
leave(rpc_conn *c)
{
	c->busy--;
	if (c->busy == 0 && c->doomed) {
		conn_free(c);
	}
}

static void
complete(call_slot *s, int status, const imrpc_Rpc *reply)
{
	rpc_conn *c = s->conn;
	rpc_reply_cb cb = s->cb;
	void *payload = s->payload;
	uint32_t idx = (uint32_t)(s - c->slots);

	ev_timer_stop(c->loop, &s->timer);
	s->id = 0;
	s->cb = NULL;
	s->payload = NULL;
	c->free_idx[c->nfree++] = idx;
	c->st.inflight--;
	c->busy++;
	cb(c, status, reply, payload);
	leave(c);
}

static void
fail_inflight(rpc_conn *c)
{
	uint32_t i;

	for (i = 0; i < c->opts.max_inflight; i++) {
		if (c->slots[i].id != 0) {
			complete(&c->slots[i], IM_EUNAVAIL, NULL);
		}
	}
}

/* Close the socket and forget what was queued; the state is the caller's. */
static void
drop_socket(rpc_conn *c)
{
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	ev_timer_stop(c->loop, &c->admit_t);
	ev_timer_stop(c->loop, &c->rd_t);
	ev_timer_stop(c->loop, &c->wr_t);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	c->in_len = 0;
	c->out_head = 0;
	c->out_len = 0;
	c->st.out_bytes = 0;
}

static void
server_unlink(rpc_conn *c)
{
	rpc_server *s = c->server;

	if (s == NULL) {
		return;
	}
	if (c->prev != NULL) {
		c->prev->next = c->next;
	} else {
		s->conns = c->next;
	}
	if (c->next != NULL) {
		c->next->prev = c->prev;
	}
	c->next = c->prev = NULL;
	s->nconns--;
	c->server = NULL;
}

uint32_t
rpc_backoff_ms(uint32_t attempt, uint32_t min_ms, uint32_t max_ms, uint64_t r)
{
	uint64_t d = min_ms;

	d <<= attempt < 24 ? attempt : 24;
	if (d > max_ms) {
		d = max_ms;
	}
	/* Equal jitter: nodes that lost the same peer do not all come back
	 * in the same millisecond, and nobody retries sooner than d/2. */
	return (uint32_t)(d / 2 + r % (d / 2 + 1));
}

static void
schedule_retry(rpc_conn *c)
{
	uint32_t delay = rpc_backoff_ms(c->attempt, c->opts.backoff_min_ms,
					c->opts.backoff_max_ms,
					rng_next(&c->rng));

	c->attempt++;
	c->state = ST_IDLE;
	ev_timer_set(&c->retry, (double)delay / 1000.0, 0.0);
	ev_timer_start(c->loop, &c->retry);
}

/*
 * The connection is lost (err, why). In-flight calls fail first so that
 * on_state sees a clean connection; then an outgoing connection schedules
 * its reconnect and an incoming one is freed.
 */
static void
conn_down(rpc_conn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
conn_down(rpc_conn *c, int err, const char *fmt, ...)
{
	bool was_up = c->state == ST_UP;
	va_list ap;

	if (c->state != ST_UP && c->state != ST_CONNECTING) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	drop_socket(c);
	c->state = c->server != NULL ? ST_DEAD : ST_IDLE;
	c->busy++;
	fail_inflight(c);
	if (was_up && c->opts.on_state != NULL && !c->doomed) {
		c->opts.on_state(c, false, err, c->errmsg, c->opts.payload);
	}
	if (c->server != NULL) {
		server_unlink(c);
		c->doomed = true;
	} else if (!c->doomed) {
		schedule_retry(c);
	}
	leave(c);
}

/* (Re)start the one-shot deadline t of frame_ms when restart or when it
 * is not running; 0 frame_ms: none. */
static void
arm_deadline(rpc_conn *c, ev_timer *t, bool restart)
{
	if (c->frame_ms == 0 || (!restart && ev_is_active(t))) {
		return;
	}
	ev_timer_stop(c->loop, t);
	ev_timer_set(t, (double)c->frame_ms / 1000.0, 0.0);
	ev_timer_start(c->loop, t);
}

static void
flush(rpc_conn *c)
{
	bool moved = false;

	while (c->out_len > 0) {
		ssize_t n = send(c->fd, c->out + c->out_head, c->out_len,
				 MSG_NOSIGNAL);

		if (n > 0) {
			c->out_head += (size_t)n;
			c->out_len -= (size_t)n;
			moved = true;
			continue;
		}
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->st.out_bytes = (uint32_t)c->out_len;
			ev_io_start(c->loop, &c->wio);
			/* The peer must keep reading: the clock restarts
			 * whenever bytes leave. */
			if (moved) {
				arm_deadline(c, &c->wr_t, true);
			}
			return;
		}
		conn_down(c, IM_ERR, "rpc %s: write failed: %s", c->peer,
			  strerror(errno));
		return;
	}
	c->out_head = 0;
	c->st.out_bytes = 0;
	ev_io_stop(c->loop, &c->wio);
	ev_timer_stop(c->loop, &c->wr_t);
}

/* Encode msg as one frame at the end of the output buffer, or change
 * nothing. */
static int
enqueue(rpc_conn *c, const imrpc_Rpc *msg)
{
	size_t sz, need;
	pb_ostream_t os;
	uint8_t *at;

	if (!pb_get_encoded_size(&sz, imrpc_Rpc_fields, msg) || sz == 0) {
		return IM_EINVAL;
	}
	if (sz > c->opts.frame_max) {
		return IM_ETOOBIG;
	}
	need = IM_FRAME_HEADER + sz;
	if (c->out_len + need > c->opts.out_max) {
		c->st.full++;
		return IM_EFULL;
	}
	if (c->out_head + c->out_len + need > c->opts.out_max) {
		memmove(c->out, c->out + c->out_head, c->out_len);
		c->out_head = 0;
	}
	at = c->out + c->out_head + c->out_len;
	os = pb_ostream_from_buffer(at + IM_FRAME_HEADER, sz);
	if (!pb_encode(&os, imrpc_Rpc_fields, msg) || os.bytes_written != sz) {
		return IM_EINVAL;
	}
	im_frame_put_header(at, (uint32_t)sz);
	c->out_len += need;
	c->st.out_bytes = (uint32_t)c->out_len;
	c->st.frames_out++;
	/* Written when the loop comes back to the socket, so the frames of
	 * one loop turn leave in as few writes as possible. */
	ev_io_start(c->loop, &c->wio);
	/* From now the peer must take some of it within frame_ms (the
	 * socket may never turn writable again: no EAGAIN to see). */
	arm_deadline(c, &c->wr_t, false);
	return IM_OK;
}

static void
on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	call_slot *s = (call_slot *)w;
	rpc_conn *c = s->conn;

	(void)loop;
	(void)revents;
	c->busy++;
	c->st.timeouts++;
	complete(s, IM_EUNAVAIL, NULL);
	leave(c);
}

static void
dispatch(rpc_conn *c, const imrpc_Rpc *m)
{
	if (m->reply) {
		uint64_t idx = m->req_id & 0xffffffffu;

		if (m->req_id != 0 && idx < c->opts.max_inflight &&
		    c->slots[idx].id == m->req_id) {
			c->st.replies++;
			complete(&c->slots[idx], IM_OK, m);
		} else {
			c->st.late_replies++;
		}
		return;
	}
	if (c->opts.on_request != NULL) {
		c->opts.on_request(c, m->req_id, m, c->opts.payload);
	} else if (m->req_id != 0) {
		/* rx is done with: answer from it rather than the stack. */
		imrpc_Rpc *r = c->rx;
		uint64_t id = m->req_id;

		memset(r, 0, sizeof(*r));
		r->which_body = imrpc_Rpc_ack_tag;
		r->body.ack.code = im_Code_ERR_BAD_REQUEST;
		snprintf(r->body.ack.text, sizeof(r->body.ack.text),
			 "no handler");
		rpc_conn_reply(c, id, r);
	}
}

static void
process(rpc_conn *c)
{
	size_t off = 0;

	while (c->state == ST_UP && !c->doomed) {
		const uint8_t *p;
		uint32_t plen;
		size_t used;
		pb_istream_t is;
		int rc = im_frame_parse(c->in + off, c->in_len - off,
					c->opts.frame_max, &p, &plen, &used);

		if (rc == IM_EAGAIN) {
			break;
		}
		if (rc == IM_ETOOBIG) {
			const uint8_t *h = c->in + off;

			conn_down(c, IM_ETOOBIG,
				  "rpc %s: frame of %u bytes exceeds the "
				  "limit of %u; closing",
				  c->peer,
				  (unsigned)((uint32_t)h[0] << 24 |
					     (uint32_t)h[1] << 16 |
					     (uint32_t)h[2] << 8 | h[3]),
				  (unsigned)c->opts.frame_max);
			return;
		}
		if (rc != IM_OK) {
			conn_down(c, IM_EPROTO,
				  "rpc %s: empty frame; closing", c->peer);
			return;
		}
		is = pb_istream_from_buffer(p, plen);
		if (!pb_decode(&is, imrpc_Rpc_fields, c->rx)) {
			conn_down(c, IM_EPROTO,
				  "rpc %s: frame of %u bytes does not decode "
				  "(%s); closing",
				  c->peer, (unsigned)plen, PB_GET_ERROR(&is));
			return;
		}
		off += used;
		c->st.frames_in++;
		dispatch(c, c->rx);
	}
	if (c->state != ST_UP) {
		return;
	}
	if (off > 0) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
	/* What is left is the start of a frame: it has frame_ms from its
	 * first byte, which came after the last whole frame. */
	if (c->in_len == 0) {
		ev_timer_stop(c->loop, &c->rd_t);
	} else {
		arm_deadline(c, &c->rd_t, off > 0);
	}
}

static void
on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	rpc_conn *c = w->data;
	size_t cap = IM_FRAME_HEADER + c->opts.frame_max;
	int i;

	(void)loop;
	(void)revents;
	c->busy++;
	for (i = 0; i < READS_PER_WAKEUP && c->state == ST_UP; i++) {
		/* A complete frame always fits, so after process() there is
		 * room: what is left is less than one frame. */
		ssize_t n = read(c->fd, c->in + c->in_len, cap - c->in_len);

		if (n > 0) {
			c->in_len += (size_t)n;
			process(c);
			continue;
		}
		if (n == 0) {
			conn_down(c, IM_OK,
				  "rpc %s: peer closed the connection",
				  c->peer);
			break;
		}
		if (errno == EINTR) {
			continue;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			conn_down(c, IM_ERR, "rpc %s: read failed: %s", c->peer,
				  strerror(errno));
		}
		break;
	}
	leave(c);
}

static void
conn_up(rpc_conn *c)
{
	c->state = ST_UP;
	c->attempt = 0;
	c->st.connects++;
	ev_io_set(&c->rio, c->fd, EV_READ);
	ev_io_set(&c->wio, c->fd, EV_WRITE);
	ev_io_start(c->loop, &c->rio);
	if (c->opts.on_state != NULL) {
		c->opts.on_state(c, true, IM_OK, "", c->opts.payload);
	}
}

static void
connect_failed(rpc_conn *c, int err)
{
	snprintf(c->errmsg, sizeof(c->errmsg), "rpc %s: connect failed: %s",
		 c->peer, strerror(err));
	drop_socket(c);
	schedule_retry(c);
}

static void
on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	rpc_conn *c = w->data;

	(void)loop;
	(void)revents;
	c->busy++;
	if (c->state == ST_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
			err = errno;
		}
		ev_io_stop(c->loop, &c->wio);
		if (err != 0) {
			connect_failed(c, err);
		} else {
			conn_up(c);
		}
	} else if (c->state == ST_UP) {
		flush(c);
	}
	leave(c);
}

static void
start_connect(rpc_conn *c)
{
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		connect_failed(c, errno);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&c->addr, sizeof(c->addr)) ==
	    0) {
		conn_up(c);
		return;
	}
	if (errno != EINPROGRESS) {
		connect_failed(c, errno);
		return;
	}
	c->state = ST_CONNECTING;
	ev_io_set(&c->wio, c->fd, EV_WRITE);
	ev_io_start(c->loop, &c->wio);
}

static void
on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	rpc_conn *c = w->data;

	(void)loop;
	(void)revents;
	c->busy++;
	if (c->state == ST_IDLE) {
		start_connect(c);
	}
	leave(c);
}

static void
on_admit_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	rpc_conn *c = w->data;

	(void)loop;
	(void)revents;
	if (c->server != NULL) {
		c->server->st.admit_timeouts++;
		conn_down(c, IM_EUNAVAIL,
			  "rpc %s: not admitted (no Hello) within %u ms; "
			  "closing",
			  c->peer, (unsigned)c->server->lim.admit_ms);
	}
}

static void
on_frame_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	rpc_conn *c = w->data;
	bool rd = w == &c->rd_t;

	(void)loop;
	(void)revents;
	if (c->server != NULL) {
		c->server->st.frame_timeouts++;
	}
	if (rd) {
		conn_down(c, IM_EUNAVAIL,
			  "rpc %s: a frame begun did not arrive whole within "
			  "%u ms; closing",
			  c->peer, (unsigned)c->frame_ms);
	} else {
		conn_down(c, IM_EUNAVAIL,
			  "rpc %s: the peer read none of %zu queued bytes "
			  "for %u ms; closing",
			  c->peer, c->out_len, (unsigned)c->frame_ms);
	}
}

static void
conn_free(rpc_conn *c)
{
	im_allocator a = c->opts.alloc;

	ev_timer_stop(c->loop, &c->retry);
	drop_socket(c);
	xfree(&a, c->in);
	xfree(&a, c->out);
	xfree(&a, c->rx);
	xfree(&a, c->slots);
	xfree(&a, c->free_idx);
	xfree(&a, c);
}

static int
conn_new(rpc_conn **out, struct ev_loop *loop, const rpc_opts *opts)
{
	const im_allocator *a = &opts->alloc;
	rpc_conn *c;
	uint32_t i;

	c = xalloc(a, sizeof(*c));
	if (c == NULL) {
		return IM_ENOMEM;
	}
	c->opts = *opts;
	c->loop = loop;
	c->fd = -1;
	c->state = ST_IDLE;
	c->in = xalloc(a, IM_FRAME_HEADER + (size_t)opts->frame_max);
	c->out = xalloc(a, opts->out_max);
	c->rx = xalloc(a, sizeof(*c->rx));
	c->slots = xalloc(a, sizeof(*c->slots) * opts->max_inflight);
	c->free_idx = xalloc(a, sizeof(*c->free_idx) * opts->max_inflight);
	if (c->in == NULL || c->out == NULL || c->rx == NULL ||
	    c->slots == NULL || c->free_idx == NULL) {
		conn_free(c);
		return IM_ENOMEM;
	}
	/* Hand out low slots first: pop from the end. */
	for (i = 0; i < opts->max_inflight; i++) {
		c->free_idx[i] = opts->max_inflight - 1 - i;
		c->slots[i].conn = c;
		ev_init(&c->slots[i].timer, on_timeout);
	}
	c->nfree = opts->max_inflight;
	ev_init(&c->rio, on_read);
	c->rio.data = c;
	ev_init(&c->wio, on_write);
	c->wio.data = c;
	ev_init(&c->retry, on_retry);
	c->retry.data = c;
	ev_init(&c->admit_t, on_admit_deadline);
	c->admit_t.data = c;
	ev_init(&c->rd_t, on_frame_deadline);
	c->rd_t.data = c;
	ev_init(&c->wr_t, on_frame_deadline);
	c->wr_t.data = c;
	c->rng = opts->seed ^ (uint64_t)(uintptr_t)c;
	*out = c;
	return IM_OK;
}

int
rpc_conn_connect(rpc_conn **out, struct ev_loop *loop, const char *host,
		 uint16_t port, const rpc_opts *opts)
{
	struct sockaddr_in sa;
	rpc_conn *c;
	int rc;

	if (out == NULL || loop == NULL || opts == NULL || !opts_ok(opts) ||
	    port == 0 || !parse_addr(&sa, host, port)) {
		return IM_EINVAL;
	}
	if ((rc = conn_new(&c, loop, opts)) != IM_OK) {
		return rc;
	}
	c->addr = sa;
	set_peer(c, &sa);
	c->busy++;
	start_connect(c);
	c->busy--;
	*out = c;
	return IM_OK;
}

void
rpc_conn_destroy(rpc_conn *c)
{
	if (c == NULL || c->doomed) {
		return;
	}
	c->doomed = true;
	c->state = ST_DEAD;
	drop_socket(c);
	ev_timer_stop(c->loop, &c->retry);
	server_unlink(c);
	c->busy++;
	fail_inflight(c);
	leave(c);
}

int
rpc_conn_call(rpc_conn *c, imrpc_Rpc *msg, uint32_t timeout_ms,
	      rpc_reply_cb cb, void *payload)
{
	call_slot *s;
	uint32_t idx;
	uint64_t id;
	int rc;

	if (c == NULL || msg == NULL || cb == NULL) {
		return IM_EINVAL;
	}
	if (c->state != ST_UP || c->doomed) {
		return IM_EUNAVAIL;
	}
	if (c->nfree == 0) {
		c->st.full++;
		return IM_EFULL;
	}
	idx = c->free_idx[c->nfree - 1];
	if (++c->gen == 0) {
		c->gen = 1;
	}
	id = (uint64_t)c->gen << 32 | idx;
	msg->req_id = id;
	msg->reply = false;
	if ((rc = enqueue(c, msg)) != IM_OK) {
		return rc;
	}
	c->nfree--;
	s = &c->slots[idx];
	s->id = id;
	s->cb = cb;
	s->payload = payload;
	ev_timer_set(&s->timer,
		     (double)(timeout_ms != 0 ? timeout_ms
					      : c->opts.timeout_ms) /
			     1000.0,
		     0.0);
	ev_timer_start(c->loop, &s->timer);
	c->st.inflight++;
	c->st.calls++;
	return IM_OK;
}

int
rpc_conn_send(rpc_conn *c, imrpc_Rpc *msg)
{
	if (c == NULL || msg == NULL) {
		return IM_EINVAL;
	}
	if (c->state != ST_UP || c->doomed) {
		return IM_EUNAVAIL;
	}
	msg->req_id = 0;
	msg->reply = false;
	return enqueue(c, msg);
}

int
rpc_conn_reply(rpc_conn *c, uint64_t req_id, imrpc_Rpc *msg)
{
	if (c == NULL || msg == NULL || req_id == 0) {
		return IM_EINVAL;
	}
	if (c->state != ST_UP || c->doomed) {
		return IM_EUNAVAIL;
	}
	msg->req_id = req_id;
	msg->reply = true;
	return enqueue(c, msg);
}

bool
rpc_conn_is_up(const rpc_conn *c)
{
	return c != NULL && c->state == ST_UP && !c->doomed;
}

const char *
rpc_conn_errmsg(const rpc_conn *c)
{
	return c != NULL ? c->errmsg : "no connection";
}

void
rpc_conn_get_stats(const rpc_conn *c, rpc_stats *out)
{
	if (c != NULL && out != NULL) {
		*out = c->st;
	}
}

const char *
rpc_conn_peer(const rpc_conn *c)
{
	return c != NULL ? c->peer : "?";
}

void
rpc_conn_set_user(rpc_conn *c, void *user)
{
	if (c != NULL) {
		c->user = user;
	}
}

void *
rpc_conn_user(const rpc_conn *c)
{
	return c != NULL ? c->user : NULL;
}

/*
 * May a connection from sa be accepted? Within per_peer_max, and within
 * max_conns once the oldest connection not admitted yet (if any) is
 * closed: a peer that never says Hello must not keep a node out.
 */
static bool
make_room(rpc_server *s, const struct sockaddr_in *sa)
{
	rpc_conn *c, *oldest = NULL;
	uint32_t same = 0;

	for (c = s->conns; c != NULL; c = c->next) {
		same += c->addr.sin_addr.s_addr == sa->sin_addr.s_addr;
		if (!c->admitted) {
			oldest = c;
		}
	}
	if (s->lim.per_peer_max > 0 && same >= s->lim.per_peer_max) {
		return false;
	}
	if (s->nconns < s->max_conns) {
		return true;
	}
	if (oldest == NULL) {
		return false;
	}
	s->st.evicted++;
	conn_down(oldest, IM_EUNAVAIL,
		  "rpc %s: not admitted yet and the server is full (%u); "
		  "closed for a newer connection",
		  oldest->peer, (unsigned)s->max_conns);
	return true;
}

static void
on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	rpc_server *s = w->data;
	int i;

	(void)loop;
	(void)revents;
	for (i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
		struct sockaddr_in sa;
		socklen_t len = sizeof(sa);
		rpc_conn *c;
		int one = 1;
		int fd = accept4(s->fd, (struct sockaddr *)&sa, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			/* EAGAIN: done. Anything else (EMFILE, ...): try
			 * again on the next wake-up. */
			return;
		}
		if (!make_room(s, &sa) ||
		    conn_new(&c, s->loop, &s->opts) != IM_OK) {
			s->st.refused++;
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		c->addr = sa;
		set_peer(c, &sa);
		c->server = s;
		c->next = s->conns;
		if (s->conns != NULL) {
			s->conns->prev = c;
		}
		s->conns = c;
		s->nconns++;
		c->frame_ms = s->lim.frame_ms;
		if (s->lim.admit_ms > 0) {
			ev_timer_set(&c->admit_t,
				     (double)s->lim.admit_ms / 1000.0, 0.0);
			ev_timer_start(s->loop, &c->admit_t);
		} else {
			c->admitted = true;
		}
		c->busy++;
		conn_up(c);
		leave(c);
	}
}

int
rpc_server_open(rpc_server **out, struct ev_loop *loop, const char *host,
		uint16_t port, uint32_t max_conns, const rpc_opts *opts)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	rpc_server *s;
	int one = 1;

	if (out == NULL || loop == NULL || opts == NULL || !opts_ok(opts) ||
	    max_conns == 0 || !parse_addr(&sa, host, port)) {
		return IM_EINVAL;
	}
	s = xalloc(&opts->alloc, sizeof(*s));
	if (s == NULL) {
		return IM_ENOMEM;
	}
	s->loop = loop;
	s->opts = *opts;
	s->max_conns = max_conns;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		goto fail;
	}
	setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(s->fd, 128) < 0 ||
	    getsockname(s->fd, (struct sockaddr *)&sa, &len) < 0) {
		goto fail;
	}
	s->port = ntohs(sa.sin_port);
	ev_io_init(&s->lio, on_accept, s->fd, EV_READ);
	s->lio.data = s;
	ev_io_start(loop, &s->lio);
	*out = s;
	return IM_OK;
fail:
	if (s->fd >= 0) {
		int saved = errno;

		close(s->fd);
		errno = saved;
	}
	xfree(&opts->alloc, s);
	return IM_ERR;
}

void
rpc_server_set_limits(rpc_server *s, const rpc_server_limits *lim)
{
	if (s != NULL && lim != NULL) {
		s->lim = *lim;
	}
}

void
rpc_server_get_stats(const rpc_server *s, rpc_server_stats *out)
{
	if (out != NULL) {
		if (s != NULL) {
			*out = s->st;
		} else {
			memset(out, 0, sizeof(*out));
		}
	}
}

void
rpc_conn_admit(rpc_conn *c)
{
	if (c != NULL && !c->admitted) {
		c->admitted = true;
		ev_timer_stop(c->loop, &c->admit_t);
	}
}

uint16_t
rpc_server_port(const rpc_server *s)
{
	return s != NULL ? s->port : 0;
}

uint32_t
rpc_server_conns(const rpc_server *s)
{
	return s != NULL ? s->nconns : 0;
}

void
rpc_server_close(rpc_server *s)
{
	im_allocator a;

	if (s == NULL) {
		return;
	}
	ev_io_stop(s->loop, &s->lio);
	close(s->fd);
	while (s->conns != NULL) {
		rpc_conn_destroy(s->conns);
	}
	a = s->opts.alloc;
	xfree(&a, s);
}
