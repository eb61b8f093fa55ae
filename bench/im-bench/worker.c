/*
 * One worker process: a libev loop driving its share of the users. Each
 * connection costs one small struct; read and write buffers are shared by
 * the worker and a connection only holds memory while it has a partial
 * frame or unsent bytes. Nothing is stored per request: a Send's req_id
 * carries its intended send time, and its body carries the same time for
 * the recipients, so latency needs no lookup table.
 *
 * --tls: each connection gets an SSL (OpenSSL, non-blocking) after its
 * TCP connect and logs in once the handshake is done, so the handshake
 * is part of the login latency; io_read/io_write stand in for read/write.
 */
#include "imbench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pb_encode.h>

#include "im.pb.h"
#include "im/frame.h"
#include "pbfast.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* Request kinds in the low 4 bits of req_id; the rest is a time (us) or a
 * group index. */
enum { K_LOGIN = 1, K_RESUME, K_SEND, K_CREATE, K_ADD, K_PING };
#define REQ(kind, v) (((uint64_t)(v) << 4) | (kind))

enum {
	CS_IDLE = 0,
	CS_CONNECTING,
	CS_TLS,   /* --tls: handshake under way */
	CS_LOGIN, /* Login/Resume sent */
	CS_LIST,  /* LoginOk got, ConvPages coming */
	CS_READY,
	CS_CLOSED,
};

#define RX_CAP (512u * 1024u)
#define TX_CAP (256u * 1024u)
#define WBUF_MAX (4u * 1024u * 1024u)
#define ACKS_MAX 64
#define SETUP_CONNS 64
#define CREATE_MEMBERS 64 /* im.options: CreateGroup.members max_count */
/* Redirects followed for one login before it counts as a loop. */
#define REDIRECT_HOPS 4
/* Every logged-in connection pings once per this many us, as a client
 * does: servers close a connection silent for 90 s, and a slow login phase
 * of 100,000 users takes longer than that. */
#define PING_EVERY_US 30000000ull
/* Targets a worker knows: the --target list plus addresses redirected to. */
#define TARGETS_MAX (2 * IMB_MAX_TARGETS)

typedef struct conn {
	ev_io io;
	uint32_t idx; /* user index */
	uint8_t state;
	uint8_t setup;    /* a group-creating connection */
	uint8_t resuming; /* the login in progress is a Resume */
	uint8_t caught;   /* reconnect: has every missed message */
	uint8_t has_session;
	uint8_t closing;   /* we closed it on purpose */
	uint8_t attempts;  /* setup: connections tried for this creator */
	uint8_t tgt;       /* index in W.tg: where this user connects */
	uint8_t hops;      /* redirects followed by the login in progress */
	uint8_t reopen;    /* redirected: connect again after this read */
	uint16_t inflight; /* Sends unanswered */
	uint32_t pending;  /* setup requests unanswered */
	uint32_t convs_seen;
	uint32_t conv_count;
	uint32_t rr; /* next of the user's groups to send to */
	uint32_t rlen;
	uint32_t wlen;
	uint32_t woff;
	uint32_t ck, am_k, am_j; /* setup cursors */
	uint8_t *rbuf;           /* partial frame, only while one is pending */
	uint8_t *wbuf; /* unsent bytes, only while the socket is full */
	uint64_t dedup;
	uint64_t t_start;
	uint64_t uq_seq;
	uint8_t session[16];
	SSL *ssl; /* --tls */
} conn;

typedef struct ackent {
	uint64_t group;
	uint64_t seq;
} ackent;

static struct worker {
	const imb_plan *p;
	const imb_opts *o;
	imb_result *r;
	struct ev_loop *loop;
	ev_timer tick;
	uint32_t w, first, end, n;
	conn *c;        /* n user connections */
	uint64_t *last; /* last seq seen per (local user, group slot) */
	uint32_t lbase; /* uoff[first] */
	int phase;
	int waiting; /* arrived, waiting for the next phase's go */
	uint64_t t_phase;
	uint64_t win_start, win_end, run_end;
	uint64_t inflight; /* Sends unanswered, all connections */
	/* Where users connect: --target, then Redirect addresses learnt (a
	 * user remembers its own in conn.tgt, so a Resume goes straight to
	 * the owner). */
	imb_addr tg[TARGETS_MAX];
	uint32_t ntg;
	SSL_CTX *tls; /* --tls */
	/* keepalive: W.c[ping_k] is next; a round over all takes
	 * PING_EVERY_US from ping_t0 */
	uint32_t ping_k;
	uint64_t ping_t0;
	/* login / resume pacing */
	uint32_t next_login, in_progress, done;
	uint32_t need; /* logins (or droppers) to complete this phase */
	uint32_t caught;
	uint32_t ready_now;
	/* setup */
	conn sc[SETUP_CONNS];
	uint32_t next_creator, setup_live;
	uint32_t setup_pending; /* setup requests unanswered, all conns */
	uint32_t retry[256];    /* creators whose connection failed */
	uint8_t retry_n[256];   /* ... and how often they tried */
	uint32_t nretry;
	uint64_t groups_mine, groups_done;
	/* open loop */
	uint32_t *senders; /* local sender user indices (relative) */
	uint32_t nsenders;
	double rate_w;   /* sends/s of this worker */
	uint64_t open_k; /* sends issued so far this phase */
	uint64_t open_t0;
	int sending;
	/* shared scratch */
	uint8_t *rx;
	uint8_t *tx;
	uint32_t txlen;
	conn *txc;
	ackent acks[ACKS_MAX];
	uint32_t nacks;
	uint8_t *body;
	uint64_t expiry;
	uint64_t cpu_win0;
	int win_started, win_ended;
	im_Envelope env;
} W;

static void on_io(struct ev_loop *loop, ev_io *w, int revents);

static uint64_t
cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)ru.ru_utime.tv_sec * 1000000 +
	       (uint64_t)ru.ru_utime.tv_usec +
	       (uint64_t)ru.ru_stime.tv_sec * 1000000 +
	       (uint64_t)ru.ru_stime.tv_usec;
}

static uint64_t
uid_of(uint32_t idx)
{
	return W.o->first_uid + idx;
}

static uint32_t
ngroups(uint32_t idx)
{
	return W.p->uoff[idx + 1] - W.p->uoff[idx];
}

static uint32_t
group_at(uint32_t idx, uint32_t k)
{
	return W.p->ulist[W.p->uoff[idx] + k];
}

static uint64_t *
last_of(conn *c, uint32_t k)
{
	return &W.last[W.p->uoff[c->idx] - W.lbase + k];
}

/* Slot of gid among the user's groups, or -1. */
static int
slot_of(uint32_t idx, uint64_t gid)
{
	uint32_t k, n = ngroups(idx);

	for (k = 0; k < n; k++) {
		if (W.p->gids[group_at(idx, k)] == gid) {
			return (int)k;
		}
	}
	return -1;
}

static void
cnt(int i)
{
	W.r->c[i]++;
}

/* ---- writing ---------------------------------------------------------- */

static void
set_events(conn *c, int events)
{
	if (c->io.events == events) {
		return;
	}
	ev_io_stop(W.loop, &c->io);
	ev_io_set(&c->io, c->io.fd, events);
	ev_io_start(W.loop, &c->io);
}

static void close_conn(conn *c, int by_server);

/* write() through the connection's SSL when there is one. A TLS "want"
 * either way is EAGAIN: reads and writes wait for their usual events (a
 * TLS 1.3 session past its handshake, no renegotiation, needs nothing
 * else). A TLS failure is EPIPE (counted). */
static ssize_t
io_write(conn *c, const void *p, size_t n)
{
	int r, e;

	if (c->ssl == NULL) {
		return write(c->io.fd, p, n);
	}
	ERR_clear_error();
	r = SSL_write(c->ssl, p, (int)n);
	if (r > 0) {
		return r;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
		errno = EAGAIN;
		return -1;
	}
	cnt(IMB_C_TLS_FAIL);
	ERR_clear_error();
	errno = EPIPE;
	return -1;
}

/* read() through the connection's SSL: 0 at the end, -1 EAGAIN. */
static ssize_t
io_read(conn *c, void *p, size_t n)
{
	int r, e;

	if (c->ssl == NULL) {
		return read(c->io.fd, p, n);
	}
	ERR_clear_error();
	r = SSL_read(c->ssl, p, (int)n);
	if (r > 0) {
		return r;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
		errno = EAGAIN;
		return -1;
	}
	if (e != SSL_ERROR_ZERO_RETURN) {
		cnt(IMB_C_TLS_FAIL);
		ERR_clear_error();
		errno = EPIPE;
		return -1;
	}
	return 0;
}

static void
tls_free(conn *c)
{
	if (c->ssl != NULL) {
		SSL_set_quiet_shutdown(c->ssl, 1);
		SSL_free(c->ssl);
		c->ssl = NULL;
		ERR_clear_error();
	}
}

static void
conn_write(conn *c, const uint8_t *p, size_t n)
{
	ssize_t k;
	size_t cap;

	if (c->state == CS_CLOSED || c->state == CS_IDLE || n == 0) {
		return;
	}
	if (c->wlen == 0) {
		k = io_write(c, p, n);
		if (k < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				close_conn(c, 1);
				return;
			}
			k = 0;
		}
		if ((size_t)k == n) {
			return;
		}
		p += k;
		n -= (size_t)k;
	}
	if (c->wlen + n > WBUF_MAX) {
		/* The server stopped reading: bytes cannot be dropped from the
		 * middle of a stream, so the connection goes. */
		cnt(IMB_C_WBUF_FULL);
		close_conn(c, 0);
		return;
	}
	if (c->woff > 0) {
		memmove(c->wbuf, c->wbuf + c->woff, c->wlen);
		c->woff = 0;
	}
	cap = 4096;
	while (cap < c->wlen + n) {
		cap *= 2;
	}
	{
		uint8_t *nb = realloc(c->wbuf, cap);

		if (nb == NULL) {
			cnt(IMB_C_WBUF_FULL);
			close_conn(c, 0);
			return;
		}
		c->wbuf = nb;
	}
	memcpy(c->wbuf + c->wlen, p, n);
	c->wlen += (uint32_t)n;
	set_events(c, EV_READ | EV_WRITE);
}

static void
flush_wbuf(conn *c)
{
	ssize_t k;

	if (c->wlen == 0) {
		set_events(c, EV_READ);
		return;
	}
	k = io_write(c, c->wbuf + c->woff, c->wlen);
	if (k < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			close_conn(c, 1);
		}
		return;
	}
	c->woff += (uint32_t)k;
	c->wlen -= (uint32_t)k;
	if (c->wlen == 0) {
		free(c->wbuf);
		c->wbuf = NULL;
		c->woff = 0;
		set_events(c, EV_READ);
	}
}

/* Frames for one connection gather in W.tx and go out in one write. */
static void
tx_flush(void)
{
	if (W.txlen > 0 && W.txc != NULL) {
		conn_write(W.txc, W.tx, W.txlen);
	}
	W.txlen = 0;
	W.txc = NULL;
}

static uint8_t *
tx_reserve(conn *c, size_t need)
{
	if (W.txc != c || W.txlen + need > TX_CAP) {
		tx_flush();
		W.txc = c;
	}
	return W.tx + W.txlen;
}

static void
tx_commit(size_t n)
{
	W.txlen += (uint32_t)n;
}

static int
tx_envelope(conn *c, im_Envelope *e)
{
	uint8_t *p = tx_reserve(c, 16384);
	pb_ostream_t s = pb_ostream_from_buffer(p + 4, TX_CAP - W.txlen - 4);

	if (!pb_encode(&s, im_Envelope_fields, e)) {
		cnt(IMB_C_PROTO);
		return -1;
	}
	p[0] = (uint8_t)(s.bytes_written >> 24);
	p[1] = (uint8_t)(s.bytes_written >> 16);
	p[2] = (uint8_t)(s.bytes_written >> 8);
	p[3] = (uint8_t)s.bytes_written;
	tx_commit(s.bytes_written + 4);
	return 0;
}

static void
ack_add(uint64_t group, uint64_t seq)
{
	uint32_t i;

	for (i = 0; i < W.nacks; i++) {
		if (W.acks[i].group == group) {
			if (seq > W.acks[i].seq) {
				W.acks[i].seq = seq;
			}
			return;
		}
	}
	if (W.nacks == ACKS_MAX) {
		return; /* acks are cumulative: a later one covers this */
	}
	W.acks[W.nacks].group = group;
	W.acks[W.nacks].seq = seq;
	W.nacks++;
}

static void
acks_flush(conn *c)
{
	uint32_t i;

	for (i = 0; i < W.nacks; i++) {
		uint8_t *p = tx_reserve(c, 32);

		tx_commit(imb_enc_deliver_ack(p, 32, W.acks[i].group,
		                              W.acks[i].seq));
	}
	W.nacks = 0;
}

/* ---- connections ------------------------------------------------------ */

static void
login_finished(conn *c, int ok, uint64_t now)
{
	if (c->setup) {
		return;
	}
	if (W.in_progress > 0) {
		W.in_progress--;
	}
	W.done++;
	if (ok) {
		W.ready_now++;
		if (W.ready_now > W.r->connections) {
			W.r->connections = W.ready_now;
		}
		if (c->resuming) {
			if (now > W.r->t_resume_last) {
				W.r->t_resume_last = now;
			}
		} else if (now > W.r->t_login_last) {
			W.r->t_login_last = now;
		}
	}
}

static void
close_conn(conn *c, int by_server)
{
	int was = c->state;

	if (was == CS_CLOSED || was == CS_IDLE) {
		return;
	}
	if (W.txc == c) {
		W.txlen = 0;
		W.txc = NULL;
	}
	ev_io_stop(W.loop, &c->io);
	tls_free(c);
	close(c->io.fd);
	free(c->rbuf);
	free(c->wbuf);
	c->rbuf = c->wbuf = NULL;
	c->rlen = c->wlen = c->woff = 0;
	c->state = CS_CLOSED;
	W.inflight -= c->inflight;
	c->inflight = 0;
	if (by_server && !c->closing) {
		cnt(IMB_C_CLOSED);
	}
	if (was == CS_CONNECTING || was == CS_TLS || was == CS_LOGIN ||
	    was == CS_LIST) {
		login_finished(c, 0, 0);
	} else if (was == CS_READY && !c->setup && W.ready_now > 0) {
		W.ready_now--;
	}
	if (c->setup) {
		/* The next creator starts from the tick, never from here: the
		 * caller may still be reading this connection's buffer. */
		c->setup = 0;
		W.setup_live--;
		W.setup_pending -= c->pending;
		c->pending = 0;
		/* Unfinished (a login timeout under load, say): again later. */
		if ((c->ck < ngroups(c->idx) || c->am_k < ngroups(c->idx)) &&
		    W.phase == IMB_P_SETUP && W.nretry < 256 &&
		    c->attempts < 3) {
			W.retry_n[W.nretry] = c->attempts;
			W.retry[W.nretry++] = c->idx;
		}
	}
}

static void
send_login(conn *c, uint64_t now)
{
	char tok[160];
	im_Envelope *e = &W.env;
	uint32_t k, n;

	if (imb_token(tok, sizeof(tok), W.o->secret, uid_of(c->idx),
	              W.expiry) != 0) {
		cnt(IMB_C_PROTO);
		close_conn(c, 0);
		return;
	}
	if (c->resuming) {
		memset(&e->msg.resume, 0, sizeof(e->msg.resume));
		e->req_id = REQ(K_RESUME, now + 1);
		e->which_msg = im_Envelope_resume_tag;
		strcpy(e->msg.resume.token, tok);
		memcpy(e->msg.resume.session, c->session, 16);
		n = ngroups(c->idx);
		for (k = 0; k < n; k++) {
			e->msg.resume.cursors[k].group =
			        W.p->gids[group_at(c->idx, k)];
			e->msg.resume.cursors[k].seq = *last_of(c, k);
		}
		e->msg.resume.cursors[n].group = 0;
		e->msg.resume.cursors[n].seq = c->uq_seq;
		e->msg.resume.cursors_count = (pb_size_t)(n + 1);
	} else {
		memset(&e->msg.login, 0, sizeof(e->msg.login));
		e->req_id = REQ(K_LOGIN, now + 1);
		e->which_msg = im_Envelope_login_tag;
		strcpy(e->msg.login.token, tok);
		strcpy(e->msg.login.device, "im-bench");
	}
	c->state = CS_LOGIN;
	if (tx_envelope(c, e) == 0) {
		tx_flush();
	}
}

/* --tls: one handshake step; done, the login goes out. */
static void
tls_step(conn *c, uint64_t now)
{
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		set_events(c, EV_READ);
		send_login(c, now);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		set_events(c, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE);
		return;
	}
	cnt(IMB_C_TLS_FAIL);
	c->closing = 1;
	close_conn(c, 0);
}

/* TCP is up: log in, or with --tls start the handshake first. */
static void
connected(conn *c, uint64_t now)
{
	char ip[INET_ADDRSTRLEN];
	struct in_addr a;

	if (W.tls == NULL) {
		set_events(c, EV_READ);
		send_login(c, now);
		return;
	}
	a.s_addr = W.tg[c->tgt].ip;
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	c->ssl = SSL_new(W.tls);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->io.fd) != 1 ||
	    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), ip) != 1) {
		cnt(IMB_C_TLS_FAIL);
		c->closing = 1;
		close_conn(c, 0);
		return;
	}
	SSL_set_connect_state(c->ssl);
	c->state = CS_TLS;
	tls_step(c, now);
}

static int
conn_open(conn *c, uint64_t now)
{
	struct sockaddr_in src = {0}, dst = {0};
	const imb_opts *o = W.o;
	int fd, one = 1, r;

	c->t_start = now;
	c->closing = 0;
	c->convs_seen = 0;
	c->inflight = 0;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		goto fail;
	}
	/* Let connect() choose the port per 4-tuple, so each source address
	 * gives ~28k connections to each target rather than 28k in all. */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	src.sin_family = AF_INET;
	src.sin_addr.s_addr = o->src[c->idx % o->nsrc];
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
		close(fd);
		goto fail;
	}
	dst.sin_family = AF_INET;
	dst.sin_addr.s_addr = W.tg[c->tgt].ip;
	dst.sin_port = htons(W.tg[c->tgt].port);
	r = connect(fd, (struct sockaddr *)&dst, sizeof(dst));
	if (r != 0 && errno != EINPROGRESS) {
		close(fd);
		goto fail;
	}
	ev_io_init(&c->io, on_io, fd, r == 0 ? EV_READ : EV_WRITE);
	ev_io_start(W.loop, &c->io);
	c->state = CS_CONNECTING;
	if (r == 0) {
		connected(c, now);
	}
	return 0;
fail:
	cnt(IMB_C_CONNECT_FAIL);
	c->state = CS_CLOSED;
	return -1;
}

/* ---- redirects -------------------------------------------------------- */

/* Index of "a.b.c.d:port" among the worker's targets, added when new; -1
 * when malformed, off loopback (the bench talks to 127/8 only) or full. */
static int
target_index(const uint8_t *s, size_t n)
{
	char buf[64], *colon, *end;
	struct in_addr a;
	unsigned long port;
	uint32_t i;

	if (s == NULL || n == 0 || n >= sizeof(buf)) {
		return -1;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	colon = strrchr(buf, ':');
	if (colon == NULL) {
		return -1;
	}
	*colon = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || port == 0 || port > 65535 ||
	    inet_pton(AF_INET, buf, &a) != 1 ||
	    (ntohl(a.s_addr) >> 24) != 127) {
		return -1;
	}
	for (i = 0; i < W.ntg; i++) {
		if (W.tg[i].ip == a.s_addr && W.tg[i].port == port) {
			return (int)i;
		}
	}
	if (W.ntg == TARGETS_MAX) {
		return -1;
	}
	W.tg[W.ntg].ip = a.s_addr;
	W.tg[W.ntg].port = (uint16_t)port;
	return (int)W.ntg++;
}

/* Give up the socket but not the login: the connection opens again to
 * its new target once the current read is over (reopen). */
static void
conn_drop(conn *c)
{
	if (W.txc == c) {
		W.txlen = 0;
		W.txc = NULL;
	}
	ev_io_stop(W.loop, &c->io);
	tls_free(c);
	close(c->io.fd);
	free(c->rbuf);
	free(c->wbuf);
	c->rbuf = c->wbuf = NULL;
	c->rlen = c->wlen = c->woff = 0;
	c->state = CS_IDLE;
	c->reopen = 1;
}

/* A login answered with Redirect{address}: the user belongs to another
 * Connector. Go there (and remember it); anything else is an error. */
static void
follow_redirect(conn *c, const imb_msg *m)
{
	int t = target_index(m->text, m->text_len);

	if (c->state != CS_LOGIN) {
		/* A session moved under a logged-in user: in a benchmark
		 * that is a lost connection. */
		cnt(IMB_C_REDIRECTS);
		close_conn(c, 1);
		return;
	}
	if (t < 0 || c->hops >= REDIRECT_HOPS) {
		cnt(IMB_C_BAD_REDIRECT);
		c->closing = 1;
		close_conn(c, 0);
		return;
	}
	cnt(IMB_C_REDIRECTS);
	c->hops++;
	c->tgt = (uint8_t)t;
	if (c->setup && c->idx >= W.first && c->idx < W.end) {
		W.c[c->idx - W.first].tgt = (uint8_t)t;
	}
	conn_drop(c);
}

/* Connect a redirected connection again; its login clock keeps running. */
static void
conn_reopen(conn *c)
{
	uint64_t t0 = c->t_start;

	c->reopen = 0;
	if (conn_open(c, imb_now_us(W.p)) != 0) {
		/* conn_open counted it and left the state CS_CLOSED. */
		if (c->setup) {
			c->setup = 0;
			W.setup_live--;
			W.setup_pending -= c->pending;
			c->pending = 0;
		} else {
			login_finished(c, 0, 0);
		}
		return;
	}
	c->t_start = t0;
}

/* ---- sending ---------------------------------------------------------- */

static void
send_one(conn *c, uint64_t t_int)
{
	uint32_t n = ngroups(c->idx), k;
	uint64_t gid, uid = uid_of(c->idx);
	uint8_t *p;
	size_t len;

	if (c->state != CS_READY || n == 0) {
		return;
	}
	k = c->rr++ % n;
	gid = W.p->gids[group_at(c->idx, k)];
	if (gid == 0) {
		return;
	}
	memcpy(W.body, &t_int, 8);
	memcpy(W.body + 8, &uid, 8);
	p = tx_reserve(c, W.o->body + 64);
	len = imb_enc_send(p, W.o->body + 64, REQ(K_SEND, t_int), gid,
	                   (W.p->nonce << 32) | ++c->dedup, W.body, W.o->body);
	if (len == 0) {
		cnt(IMB_C_PROTO);
		return;
	}
	tx_commit(len);
	c->inflight++;
	W.inflight++;
	cnt(IMB_C_SENT);
}

/* Closed loop: top the connection up to --inflight. */
static void
refill(conn *c, uint64_t now)
{
	if (!W.sending || W.o->rate > 0 || !imb_is_sender(W.o, c->idx) ||
	    (W.phase == IMB_P_DROP && !imb_is_stayer(W.o, c->idx))) {
		return;
	}
	while (c->state == CS_READY && c->inflight < W.o->inflight) {
		send_one(c, now);
		if (c->inflight == 0) {
			break; /* could not send */
		}
	}
}

/* ---- receiving -------------------------------------------------------- */

static void
check_caught(conn *c, uint64_t now)
{
	uint32_t k, n;

	if (W.phase != IMB_P_RESUME || c->caught || !c->resuming ||
	    c->state != CS_READY) {
		return;
	}
	n = ngroups(c->idx);
	for (k = 0; k < n; k++) {
		uint64_t t = __atomic_load_n(&W.p->target[group_at(c->idx, k)],
		                             __ATOMIC_RELAXED);

		if (*last_of(c, k) < t) {
			return;
		}
	}
	c->caught = 1;
	W.caught++;
	cnt(IMB_C_CAUGHT_UP);
	imb_hist_add(&W.r->catchup, now - W.t_phase);
	if (now > W.r->t_caught_last) {
		W.r->t_caught_last = now;
	}
}

static void
target_max(uint32_t g, uint64_t seq)
{
	uint64_t *t = &W.p->target[g],
	         cur = __atomic_load_n(t, __ATOMIC_RELAXED);

	while (seq > cur &&
	       !__atomic_compare_exchange_n(t, &cur, seq, 1, __ATOMIC_RELAXED,
	                                    __ATOMIC_RELAXED)) {
	}
}

static int
in_window(uint64_t t)
{
	return t >= W.win_start && t < W.win_end;
}

static void setup_pump(conn *c);

static void
on_send_reply(conn *c, const imb_msg *m, uint64_t now)
{
	if (c->inflight > 0) {
		c->inflight--;
		W.inflight--;
	}
	refill(c, now);
}

static void
handle(conn *c, const uint8_t *buf, size_t len, uint64_t now)
{
	imb_msg m;
	uint64_t kind, v;
	int k;

	if (imb_pb_scan(buf, len, &m) != 0) {
		cnt(IMB_C_PROTO);
		close_conn(c, 0);
		return;
	}
	kind = m.req_id & 15;
	v = m.req_id >> 4;
	switch (m.kind) {
	case im_Envelope_deliver_tag:
		cnt(IMB_C_DELIV);
		if (W.phase == IMB_P_RESUME) {
			cnt(IMB_C_REPLAYED);
		}
		k = slot_of(c->idx, m.group);
		if (k >= 0) {
			uint64_t *last = last_of(c, (uint32_t)k);

			if (m.seq <= *last) {
				cnt(IMB_C_DELIV_DUP);
				ack_add(m.group, m.seq);
				break;
			}
			if (*last != 0 && m.prev_seq != *last) {
				cnt(IMB_C_DELIV_GAP);
			}
			*last = m.seq;
		}
		if (in_window(now)) {
			cnt(IMB_C_DELIV_WIN);
		}
		if (m.body_len >= 8) {
			uint64_t t;

			memcpy(&t, m.body, 8);
			if (in_window(t) && now >= t) {
				imb_hist_add(&W.r->deliver, now - t);
			}
		}
		ack_add(m.group, m.seq);
		check_caught(c, now);
		break;
	case im_Envelope_send_ack_tag:
		cnt(IMB_C_ACKED);
		if (m.dup) {
			cnt(IMB_C_DUP_ACKS);
		}
		if (in_window(now)) {
			cnt(IMB_C_ACKED_WIN);
		}
		if (kind == K_SEND && in_window(v) && now >= v) {
			imb_hist_add(&W.r->ack, now - v);
		}
		k = slot_of(c->idx, m.group);
		if (k >= 0) {
			target_max(group_at(c->idx, (uint32_t)k), m.seq);
		}
		on_send_reply(c, &m, now);
		break;
	case im_Envelope_user_event_tag:
		cnt(IMB_C_EVENTS);
		if (m.seq > c->uq_seq) {
			c->uq_seq = m.seq;
		}
		ack_add(0, m.seq);
		break;
	case im_Envelope_login_ok_tag:
		c->state = CS_LIST;
		c->conv_count = (uint32_t)m.conv_count;
		c->uq_seq = m.uq_last_seq;
		if (m.session_len == 16) {
			memcpy(c->session, m.session, 16);
			c->has_session = 1;
		}
		break;
	case im_Envelope_conv_page_tag:
		W.r->c[IMB_C_CONVS] += m.nconvs;
		c->convs_seen += (uint32_t)m.nconvs;
		if (!m.done) {
			break;
		}
		c->state = CS_READY;
		if (c->setup) {
			setup_pump(c);
			break;
		}
		if (c->conv_count != ngroups(c->idx) ||
		    c->convs_seen != c->conv_count) {
			cnt(IMB_C_CONV_MISMATCH);
		}
		cnt(IMB_C_LOGINS);
		imb_hist_add(&W.r->login, now - c->t_start);
		login_finished(c, 1, now);
		refill(c, now);
		break;
	case im_Envelope_resume_ok_tag:
		cnt(IMB_C_RESUMED);
		if (m.resumed) {
			cnt(IMB_C_RESUMED_TRUE);
		}
		if (m.session_len == 16) {
			memcpy(c->session, m.session, 16);
		}
		c->state = CS_READY;
		imb_hist_add(&W.r->resume, now - c->t_start);
		login_finished(c, 1, now);
		check_caught(c, now);
		break;
	case im_Envelope_group_created_tag:
		if (kind == K_CREATE && v < W.o->groups && m.group != 0) {
			__atomic_store_n(&W.p->gids[v], m.group,
			                 __ATOMIC_RELAXED);
			cnt(IMB_C_GROUPS_MADE);
			W.groups_done++;
		} else {
			cnt(IMB_C_PROTO);
		}
		if (c->pending > 0) {
			c->pending--;
			W.setup_pending--;
		}
		setup_pump(c);
		break;
	case im_Envelope_error_tag:
		W.r->err_code[m.code < IMB_CODES ? m.code : IMB_CODES - 1]++;
		if (kind == K_SEND) {
			on_send_reply(c, &m, now);
		} else if (kind == K_ADD || kind == K_CREATE) {
			/* A group never created is counted at the end. */
			if (m.code == im_Code_OK && kind == K_ADD) {
				cnt(IMB_C_MEMBERS_ADDED);
			} else if (kind == K_ADD) {
				cnt(IMB_C_SETUP_FAIL);
			}
			if (c->pending > 0) {
				c->pending--;
				W.setup_pending--;
			}
			setup_pump(c);
		} else if (kind == K_LOGIN || kind == K_RESUME ||
		           m.req_id == 0) {
			/* The server closes after these; so do we. */
			c->closing = 1;
			close_conn(c, 0);
		}
		break;
	case im_Envelope_redirect_tag:
		follow_redirect(c, &m);
		break;
	case im_Envelope_pong_tag:
		break;
	default:
		cnt(IMB_C_PROTO);
		break;
	}
}

static void
do_read(conn *c)
{
	size_t have = 0, off = 0;
	ssize_t n;
	uint64_t now;

	if (c->rlen > 0) {
		memcpy(W.rx, c->rbuf, c->rlen);
		have = c->rlen;
		free(c->rbuf);
		c->rbuf = NULL;
		c->rlen = 0;
	}
	n = io_read(c, W.rx + have, RX_CAP - have);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			n = 0;
		} else {
			close_conn(c, 1);
			return;
		}
	}
	have += (size_t)n;
	now = imb_now_us(W.p);
	W.nacks = 0;
	while (have - off >= 4) {
		const uint8_t *h = W.rx + off;
		uint32_t len = ((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) |
		               ((uint32_t)h[2] << 8) | h[3];

		if (len == 0 || len > IM_FRAME_MAX) {
			cnt(IMB_C_PROTO);
			close_conn(c, 0);
			return;
		}
		if (have - off - 4 < len) {
			break;
		}
		handle(c, h + 4, len, now);
		off += 4 + len;
		if (c->state == CS_CLOSED || c->reopen) {
			return;
		}
	}
	if (off < have) {
		c->rbuf = malloc(have - off);
		if (c->rbuf == NULL) {
			cnt(IMB_C_PROTO);
			close_conn(c, 0);
			return;
		}
		memcpy(c->rbuf, W.rx + off, have - off);
		c->rlen = (uint32_t)(have - off);
	}
	acks_flush(c);
	tx_flush();
}

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	conn *c = (conn *)w;

	(void)loop;
	if (c->state == CS_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof(err);

		if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0 ||
		    err != 0) {
			cnt(IMB_C_CONNECT_FAIL);
			c->closing = 1;
			close_conn(c, 0);
			return;
		}
		connected(c, imb_now_us(W.p));
		return;
	}
	if (c->state == CS_TLS) {
		tls_step(c, imb_now_us(W.p));
		return;
	}
	if (revents & EV_WRITE) {
		flush_wbuf(c);
		if (c->state == CS_CLOSED) {
			return;
		}
	}
	if (revents & EV_READ) {
		int i = 0;

		/* Decrypted bytes OpenSSL holds wake no event (bounded: each
		 * read takes at least one of at most a record's). */
		do {
			do_read(c);
		} while (c->ssl != NULL && c->state != CS_CLOSED &&
		         !c->reopen && SSL_pending(c->ssl) > 0 && ++i < 64);
		if (c->reopen) {
			conn_reopen(c);
		}
	}
}

/* ---- setup: creating the groups -------------------------------------- */

static int
creates(uint32_t u, uint32_t g)
{
	return imb_member(W.o, g, 0) == u;
}

static void
setup_pump(conn *c)
{
	const imb_opts *o = W.o;
	uint32_t n = ngroups(c->idx), window = o->setup_window;
	im_Envelope *e = &W.env;

	if (c->state != CS_READY) {
		return;
	}
	/* First every CreateGroup of this creator, then the AddMembers of the
	 * groups bigger than one CreateGroup can hold. */
	while (c->ck < n && W.setup_pending < window) {
		uint32_t g = group_at(c->idx, c->ck++), j, m = 0;

		if (!creates(c->idx, g) || W.p->gids[g] != 0) {
			continue;
		}
		memset(&e->msg.create_group, 0, sizeof(e->msg.create_group));
		e->req_id = REQ(K_CREATE, g);
		e->which_msg = im_Envelope_create_group_tag;
		snprintf(e->msg.create_group.name,
		         sizeof(e->msg.create_group.name), "bench-%u", g);
		for (j = 1; j < o->group_size && m < CREATE_MEMBERS; j++) {
			e->msg.create_group.members[m++] =
			        uid_of(imb_member(o, g, j));
		}
		e->msg.create_group.members_count = (pb_size_t)m;
		if (tx_envelope(c, e) != 0) {
			break;
		}
		c->pending++;
		W.setup_pending++;
	}
	while (c->ck == n && c->am_k < n && W.setup_pending < window) {
		uint32_t g = group_at(c->idx, c->am_k);
		uint64_t gid = W.p->gids[g];
		uint32_t j = c->am_j ? c->am_j : CREATE_MEMBERS + 1;

		if (!creates(c->idx, g) || j >= o->group_size) {
			c->am_k++;
			c->am_j = 0;
			continue;
		}
		if (gid == 0) {
			if (c->pending > 0) {
				break; /* its GroupCreated is still coming */
			}
			c->am_k++; /* creating it failed */
			c->am_j = 0;
			continue;
		}
		memset(&e->msg.add_member, 0, sizeof(e->msg.add_member));
		e->req_id = REQ(K_ADD, g);
		e->which_msg = im_Envelope_add_member_tag;
		e->msg.add_member.group = gid;
		e->msg.add_member.user = uid_of(imb_member(o, g, j));
		if (tx_envelope(c, e) != 0) {
			break;
		}
		c->pending++;
		W.setup_pending++;
		c->am_j = j + 1;
	}
	tx_flush();
	if (c->ck == n && c->am_k == n && c->pending == 0) {
		c->closing = 1;
		close_conn(c, 0);
	}
}

/* Start setup connections for the next creators of this worker. */
static void
setup_next(void)
{
	uint64_t now;
	uint32_t i;

	if (W.phase != IMB_P_SETUP || W.waiting) {
		return;
	}
	now = imb_now_us(W.p);
	for (i = 0; i < SETUP_CONNS; i++) {
		if (W.sc[i].setup && W.sc[i].state == CS_READY) {
			setup_pump(&W.sc[i]);
		}
	}
	while (W.setup_live < SETUP_CONNS &&
	       W.setup_pending < W.o->setup_window &&
	       (W.next_creator < W.end || W.nretry > 0)) {
		uint32_t u, k, n, mine = 0;
		uint8_t tried = 0;
		conn *c = NULL;

		if (W.nretry > 0) {
			W.nretry--;
			u = W.retry[W.nretry];
			tried = W.retry_n[W.nretry];
		} else {
			u = W.next_creator++;
		}
		n = ngroups(u);

		for (k = 0; k < n; k++) {
			mine += creates(u, group_at(u, k));
		}
		if (mine == 0) {
			continue;
		}
		for (i = 0; i < SETUP_CONNS; i++) {
			if (!W.sc[i].setup) {
				c = &W.sc[i];
				break;
			}
		}
		if (c == NULL) {
			break;
		}
		memset(c, 0, sizeof(*c));
		c->idx = u;
		c->tgt = W.c[u - W.first].tgt; /* learnt from a redirect */
		c->setup = 1;
		c->attempts = (uint8_t)(tried + 1);
		W.setup_live++;
		if (conn_open(c, now) != 0) {
			c->setup = 0;
			W.setup_live--;
		}
	}
}

/* ---- phases ----------------------------------------------------------- */

static void
arrive(uint64_t now)
{
	imb_ctl *ctl = W.p->ctl;
	int n = __atomic_add_fetch(&ctl->arrived[W.phase], 1, __ATOMIC_SEQ_CST);

	if (n == (int)W.o->procs && W.phase + 1 < IMB_P_COUNT) {
		ctl->t0[W.phase + 1] = now + 2000;
		__atomic_store_n(&ctl->go[W.phase + 1], 1, __ATOMIC_SEQ_CST);
	}
	W.waiting = 1;
}

static int
is_dropper(uint32_t i)
{
	return W.o->scenario == IMB_SC_RECONNECT && !imb_is_stayer(W.o, i);
}

static void
phase_start(int ph, uint64_t now)
{
	const imb_opts *o = W.o;
	uint32_t i;

	W.phase = ph;
	W.waiting = 0;
	/* Every worker times the phase from the same shared start. */
	W.t_phase = W.p->ctl->t0[ph] ? W.p->ctl->t0[ph] : now;
	switch (ph) {
	case IMB_P_LOGIN:
	case IMB_P_RESUME:
		W.next_login = 0;
		W.in_progress = 0;
		W.done = 0;
		W.need = 0;
		W.caught = 0;
		for (i = 0; i < W.n; i++) {
			if (ph == IMB_P_LOGIN || is_dropper(W.first + i)) {
				W.need++;
			}
		}
		if (ph == IMB_P_LOGIN) {
			W.r->t_login_first = W.t_phase;
		}
		break;
	case IMB_P_RUN:
		W.win_start = W.t_phase + (uint64_t)(o->warmup * 1e6);
		W.win_end = W.win_start + (uint64_t)(o->duration * 1e6);
		W.run_end = W.win_end;
		/* fallthrough */
	case IMB_P_DROP:
		if (ph == IMB_P_DROP) {
			if (o->scenario != IMB_SC_RECONNECT) {
				W.run_end = now;
				break;
			}
			for (i = 0; i < W.n; i++) {
				if (is_dropper(W.first + i)) {
					W.c[i].closing = 1;
					close_conn(&W.c[i], 0);
				}
			}
			W.run_end = now + (uint64_t)(o->down * 1e6);
		}
		W.sending = 1;
		W.open_k = 0;
		W.open_t0 = W.t_phase;
		for (i = 0; i < W.n; i++) {
			refill(&W.c[i], now);
			tx_flush();
		}
		break;
	default:
		break;
	}
}

static void
open_loop(uint64_t now)
{
	uint64_t due;

	if (!W.sending || W.o->rate <= 0 || W.nsenders == 0) {
		return;
	}
	due = (uint64_t)((double)(now - W.open_t0) * W.rate_w / 1e6);
	while (W.open_k < due) {
		uint64_t t = W.open_t0 +
		             (uint64_t)((double)W.open_k * 1e6 / W.rate_w);
		conn *c = &W.c[W.senders[W.open_k % W.nsenders]];

		W.open_k++;
		if (W.phase == IMB_P_DROP && !imb_is_stayer(W.o, c->idx)) {
			continue;
		}
		if (now - t > 10000) {
			cnt(IMB_C_OPEN_BEHIND);
		}
		send_one(c, t);
	}
	tx_flush();
}

/* Spread Pings over the round so they never come as a burst. */
static void
keepalive(uint64_t now)
{
	uint64_t due;

	if (W.n == 0) {
		return;
	}
	if (W.ping_t0 == 0 || now - W.ping_t0 >= PING_EVERY_US) {
		W.ping_t0 = now;
		W.ping_k = 0;
	}
	due = (now - W.ping_t0) * W.n / PING_EVERY_US;
	while (W.ping_k < due && W.ping_k < W.n) {
		conn *c = &W.c[W.ping_k++];
		uint8_t *p;

		if (c->state != CS_READY) {
			continue;
		}
		p = tx_reserve(c, 32);
		tx_commit(imb_enc_ping(p, 32, REQ(K_PING, 0), now / 1000));
		tx_flush();
	}
}

static void
pace_logins(uint64_t now)
{
	const imb_opts *o = W.o;
	double rate = o->login_rate / o->procs;
	uint64_t allowed = UINT64_MAX;

	if (rate > 0) {
		allowed =
		        (uint64_t)((double)(now - W.t_phase) * rate / 1e6) + 1;
	}
	while (W.next_login < W.n && W.in_progress < o->login_window &&
	       allowed > W.done + W.in_progress) {
		conn *c = &W.c[W.next_login++];

		if (W.phase == IMB_P_RESUME) {
			if (!is_dropper(c->idx)) {
				continue;
			}
			c->resuming = 1;
			c->caught = 0;
		}
		W.in_progress++;
		c->hops = 0;
		if (conn_open(c, now) != 0) {
			login_finished(c, 0, now);
		}
	}
	tx_flush();
}

static void
finish_phase_stats(uint64_t now)
{
	uint32_t i;

	switch (W.phase) {
	case IMB_P_SETUP:
		if (W.groups_done < W.groups_mine) {
			W.r->c[IMB_C_SETUP_FAIL] +=
			        W.groups_mine - W.groups_done;
		}
		W.r->t_setup_end = now;
		for (i = 0; i < SETUP_CONNS; i++) {
			if (W.sc[i].setup) {
				W.sc[i].closing = 1;
				close_conn(&W.sc[i], 0);
			}
		}
		break;
	case IMB_P_LOGIN:
	case IMB_P_RESUME:
		if (W.done < W.need) {
			W.r->c[IMB_C_LOGIN_TIMEOUT] += W.need - W.done;
		}
		if (W.phase == IMB_P_RESUME && W.caught < W.need) {
			W.r->c[IMB_C_NOT_CAUGHT_UP] += W.need - W.caught;
		}
		break;
	case IMB_P_DRAIN:
	case IMB_P_DROP:
		W.r->c[IMB_C_DRAIN_LEFT] += W.inflight;
		break;
	default:
		break;
	}
}

static void
on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
	const imb_opts *o = W.o;
	imb_ctl *ctl = W.p->ctl;
	uint64_t now = imb_now_us(W.p), el;
	int done = 0;

	(void)t;
	(void)revents;
	if (__atomic_load_n(&ctl->abort, __ATOMIC_RELAXED)) {
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	keepalive(now); /* also while waiting for the other workers */
	if (W.waiting) {
		int next = W.phase + 1;

		if (next >= IMB_P_COUNT) {
			ev_break(loop, EVBREAK_ALL);
			return;
		}
		if (__atomic_load_n(&ctl->go[next], __ATOMIC_SEQ_CST) &&
		    now >= ctl->t0[next]) {
			phase_start(next, now);
		} else {
			return;
		}
	}
	el = now - W.t_phase;
	if (!W.win_started && W.win_start && now >= W.win_start) {
		W.win_started = 1;
		W.cpu_win0 = cpu_us();
	}
	if (W.win_started && !W.win_ended && now >= W.win_end) {
		W.win_ended = 1;
		W.r->cpu_us_win = cpu_us() - W.cpu_win0;
	}
	switch (W.phase) {
	case IMB_P_SETUP:
		setup_next();
		done = W.setup_live == 0 && W.next_creator >= W.end &&
		       W.nretry == 0;
		if (el > (uint64_t)(o->setup_timeout * 1e6)) {
			done = 1;
		}
		break;
	case IMB_P_LOGIN:
		pace_logins(now);
		done = W.done >= W.need ||
		       el > (uint64_t)(o->login_timeout * 1e6);
		break;
	case IMB_P_RUN:
	case IMB_P_DROP:
		open_loop(now);
		if (now >= W.run_end) {
			W.sending = 0;
			if (W.phase == IMB_P_RUN) {
				done = 1;
			} else {
				done = W.inflight == 0 ||
				       now >= W.run_end + (uint64_t)(o->drain *
				                                     1e6);
			}
		}
		break;
	case IMB_P_DRAIN:
		done = W.inflight == 0 || el > (uint64_t)(o->drain * 1e6);
		/* Deliveries trail the last ack a little. */
		if (done && W.inflight == 0 && el < 100000) {
			done = 0;
		}
		break;
	case IMB_P_RESUME:
		if (o->scenario != IMB_SC_RECONNECT) {
			done = 1;
			break;
		}
		pace_logins(now);
		done = (W.done >= W.need && W.caught >= W.need) ||
		       el > (uint64_t)(o->login_timeout * 1e6);
		break;
	case IMB_P_DONE:
		done = 1;
		break;
	}
	if (done) {
		finish_phase_stats(now);
		arrive(now);
	}
}

int
imb_worker_run(const imb_plan *p, uint32_t w, imb_result *r)
{
	const imb_opts *o = p->o;
	uint32_t i, j;
	uint64_t slots;
	struct timespec ts;

	memset(&W, 0, sizeof(W));
	memset(r, 0, sizeof(*r));
	imb_hist_init(&r->ack);
	imb_hist_init(&r->deliver);
	imb_hist_init(&r->login);
	imb_hist_init(&r->resume);
	imb_hist_init(&r->catchup);
	W.p = p;
	W.o = o;
	W.r = r;
	W.w = w;
	imb_worker_users(o, w, &W.first, &W.end);
	W.n = W.end - W.first;
	W.next_creator = W.first;
	W.lbase = p->uoff[W.first];
	slots = p->uoff[W.end] - W.lbase;
	W.c = calloc(W.n ? W.n : 1, sizeof(*W.c));
	W.last = calloc(slots ? slots : 1, sizeof(*W.last));
	W.senders = calloc(W.n ? W.n : 1, sizeof(*W.senders));
	W.rx = malloc(RX_CAP);
	W.tx = malloc(TX_CAP);
	W.body = malloc(o->body);
	if (!W.c || !W.last || !W.senders || !W.rx || !W.tx || !W.body) {
		return -1;
	}
	memset(W.body, 'x', o->body);
	for (i = 0; i < o->ntargets && i < TARGETS_MAX; i++) {
		W.tg[W.ntg++] = o->targets[i];
	}
	for (i = 0; i < W.n; i++) {
		W.c[i].idx = W.first + i;
		W.c[i].tgt = (uint8_t)((W.first + i) % o->ntargets);
		if (imb_is_sender(o, W.first + i)) {
			W.senders[W.nsenders++] = i;
		}
		for (j = 0; j < ngroups(W.first + i); j++) {
			W.groups_mine +=
			        creates(W.first + i, group_at(W.first + i, j));
		}
	}
	if (o->senders > 0) {
		W.rate_w = o->rate * W.nsenders / o->senders;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	W.expiry = (uint64_t)ts.tv_sec + o->token_ttl;
	if (o->tls_ca != NULL) {
		W.tls = SSL_CTX_new(TLS_client_method());
		if (W.tls == NULL ||
		    SSL_CTX_load_verify_locations(W.tls, o->tls_ca, NULL) != 1) {
			fprintf(stderr, "im-bench: --tls %s: cannot load it\n",
			        o->tls_ca);
			return -1;
		}
		SSL_CTX_set_min_proto_version(W.tls, TLS1_2_VERSION);
		SSL_CTX_set_verify(W.tls, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_options(W.tls, SSL_OP_IGNORE_UNEXPECTED_EOF);
		/* Unsent bytes move from W.tx to c->wbuf between tries. */
		SSL_CTX_set_mode(W.tls, SSL_MODE_ENABLE_PARTIAL_WRITE |
		                                SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	W.loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
	if (W.loop == NULL) {
		return -1;
	}
	ev_timer_init(&W.tick, on_tick, 0.001, 0.001);
	ev_timer_start(W.loop, &W.tick);
	W.phase = IMB_P_SETUP;
	W.t_phase = imb_now_us(p);
	ev_run(W.loop, 0);
	for (i = 0; i < W.n; i++) {
		W.c[i].closing = 1;
		close_conn(&W.c[i], 0);
	}
	for (i = 0; i < SETUP_CONNS; i++) {
		W.sc[i].closing = 1;
		close_conn(&W.sc[i], 0);
	}
	if (!W.win_ended && W.win_started) {
		r->cpu_us_win = cpu_us() - W.cpu_win0;
	}
	r->cpu_us_total = cpu_us();
	ev_loop_destroy(W.loop);
	SSL_CTX_free(W.tls);
	free(W.c);
	free(W.last);
	free(W.senders);
	free(W.rx);
	free(W.tx);
	free(W.body);
	return 0;
}
