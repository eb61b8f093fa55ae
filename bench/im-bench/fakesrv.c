/*
 * im-bench-fakesrv: a scripted, in-memory stand-in for a libim server, just
 * enough protocol to exercise im-bench's connection state machine in tests
 * (Login + conv list, CreateGroup, AddMember, Send -> SendAck + Deliver to
 * every online member, DeliverAck, Resume with replay, Ping). It checks
 * nothing about tokens beyond taking the uid before the first dot, commits
 * nothing, and is not a server: never benchmark it.
 *
 * usage: im-bench-fakesrv PORT    (127.0.0.1 only; SIGTERM to stop)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <pb_decode.h>
#include <pb_encode.h>

#include "im.pb.h"

#define MAXU (1u << 20)
#define MAXG 100000
#define MAXFD 65536

typedef struct msg {
	uint64_t seq;
	uint64_t sender;
	uint64_t dedup;
	uint32_t len;
	uint8_t *body;
} msg;

typedef struct group {
	uint64_t *members;
	uint32_t nmembers;
	msg *msgs;
	uint32_t nmsgs;
} group;

typedef struct fconn {
	ev_io io;
	uint64_t uid;
	uint8_t *in;
	size_t inlen;
	uint8_t *out;
	size_t outlen;
	int live;
} fconn;

static struct ev_loop *loop;
static fconn conns[MAXFD];
static int online[MAXU]; /* uid -> fd + 1 */
static group groups[MAXG];
static uint32_t ngroups;
static im_Envelope in_env, out_env;
static uint8_t encbuf[70000];

static void
cwrite(fconn *c, const uint8_t *p, size_t n)
{
	ssize_t k = 0;

	if (c->outlen == 0) {
		k = write(c->io.fd, p, n);
		if (k < 0) {
			k = 0;
		}
	}
	if ((size_t)k < n) {
		c->out = realloc(c->out, c->outlen + n - (size_t)k);
		memcpy(c->out + c->outlen, p + k, n - (size_t)k);
		c->outlen += n - (size_t)k;
		ev_io_stop(loop, &c->io);
		ev_io_set(&c->io, c->io.fd, EV_READ | EV_WRITE);
		ev_io_start(loop, &c->io);
	}
}

static void
emit(fconn *c, uint64_t req_id)
{
	pb_ostream_t s = pb_ostream_from_buffer(encbuf + 4, sizeof(encbuf) - 4);

	out_env.req_id = req_id;
	if (!pb_encode(&s, im_Envelope_fields, &out_env)) {
		fprintf(stderr, "fakesrv: encode: %s\n", PB_GET_ERROR(&s));
		return;
	}
	encbuf[0] = (uint8_t)(s.bytes_written >> 24);
	encbuf[1] = (uint8_t)(s.bytes_written >> 16);
	encbuf[2] = (uint8_t)(s.bytes_written >> 8);
	encbuf[3] = (uint8_t)s.bytes_written;
	cwrite(c, encbuf, s.bytes_written + 4);
}

static void
error(fconn *c, uint64_t req_id, im_Code code)
{
	memset(&out_env.msg.error, 0, sizeof(out_env.msg.error));
	out_env.which_msg = im_Envelope_error_tag;
	out_env.msg.error.code = code;
	emit(c, req_id);
}

static void
drop(fconn *c)
{
	ev_io_stop(loop, &c->io);
	close(c->io.fd);
	if (c->uid && c->uid < MAXU && online[c->uid] == c->io.fd + 1) {
		online[c->uid] = 0;
	}
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
}

static int
member(const group *g, uint64_t uid)
{
	uint32_t i;

	for (i = 0; i < g->nmembers; i++) {
		if (g->members[i] == uid) {
			return 1;
		}
	}
	return 0;
}

static void
add_member(group *g, uint64_t uid)
{
	if (member(g, uid)) {
		return;
	}
	g->members = realloc(g->members, sizeof(uint64_t) * (g->nmembers + 1));
	g->members[g->nmembers++] = uid;
}

static void
deliver(fconn *c, uint64_t gid, const msg *m, uint64_t prev)
{
	memset(&out_env.msg.deliver, 0, sizeof(out_env.msg.deliver));
	out_env.which_msg = im_Envelope_deliver_tag;
	out_env.msg.deliver.group = gid;
	out_env.msg.deliver.seq = m->seq;
	out_env.msg.deliver.prev_seq = prev;
	out_env.msg.deliver.sender = m->sender;
	out_env.msg.deliver.dedup_id = m->dedup;
	out_env.msg.deliver.body.size = (pb_size_t)m->len;
	memcpy(out_env.msg.deliver.body.bytes, m->body, m->len);
	emit(c, 0);
}

/* Cluster stand-in: users with uid % 2 == redirect_parity are owned by
 * the fake at 127.0.0.1:redirect_port and get a Redirect there. */
static uint16_t redirect_port;
static unsigned redirect_parity;

static void
login(fconn *c, const char *token, uint64_t req_id, int resume)
{
	uint64_t uid = strtoull(token, NULL, 10), gid;
	uint32_t n = 0, k = 0;

	if (uid == 0 || uid >= MAXU) {
		error(c, req_id, im_Code_ERR_AUTH);
		return;
	}
	if (redirect_port != 0 && uid % 2 == redirect_parity) {
		memset(&out_env.msg.redirect, 0, sizeof(out_env.msg.redirect));
		out_env.which_msg = im_Envelope_redirect_tag;
		snprintf(out_env.msg.redirect.address,
		         sizeof(out_env.msg.redirect.address), "127.0.0.1:%u",
		         (unsigned)redirect_port);
		emit(c, req_id);
		return;
	}
	c->uid = uid;
	online[uid] = c->io.fd + 1;
	for (gid = 1; gid <= ngroups; gid++) {
		n += member(&groups[gid - 1], uid);
	}
	if (resume) {
		const im_Resume *r = &in_env.msg.resume;
		pb_size_t i;
		uint32_t j;

		memset(&out_env.msg.resume_ok, 0,
		       sizeof(out_env.msg.resume_ok));
		out_env.which_msg = im_Envelope_resume_ok_tag;
		out_env.msg.resume_ok.user = uid;
		out_env.msg.resume_ok.resumed = true;
		emit(c, req_id);
		for (i = 0; i < r->cursors_count; i++) {
			group *g;

			gid = r->cursors[i].group;
			if (gid == 0 || gid > ngroups) {
				continue;
			}
			g = &groups[gid - 1];
			for (j = 0; j < g->nmsgs; j++) {
				if (g->msgs[j].seq > r->cursors[i].seq) {
					deliver(c, gid, &g->msgs[j],
					        j ? g->msgs[j - 1].seq : 0);
				}
			}
		}
		return;
	}
	memset(&out_env.msg.login_ok, 0, sizeof(out_env.msg.login_ok));
	out_env.which_msg = im_Envelope_login_ok_tag;
	out_env.msg.login_ok.user = uid;
	out_env.msg.login_ok.conv_count = n;
	memset(out_env.msg.login_ok.session, 7, 16);
	emit(c, req_id);
	memset(&out_env.msg.conv_page, 0, sizeof(out_env.msg.conv_page));
	out_env.which_msg = im_Envelope_conv_page_tag;
	for (gid = 1; gid <= ngroups; gid++) {
		if (!member(&groups[gid - 1], uid)) {
			continue;
		}
		out_env.msg.conv_page.convs[k].group = gid;
		if (++k == 32) {
			out_env.msg.conv_page.convs_count = k;
			emit(c, req_id);
			memset(&out_env.msg.conv_page, 0,
			       sizeof(out_env.msg.conv_page));
			out_env.which_msg = im_Envelope_conv_page_tag;
			k = 0;
		}
	}
	out_env.msg.conv_page.convs_count = k;
	out_env.msg.conv_page.done = true;
	emit(c, req_id);
}

static void
request(fconn *c, const uint8_t *p, size_t n)
{
	pb_istream_t s = pb_istream_from_buffer(p, n);
	uint64_t req = 0;

	if (!pb_decode(&s, im_Envelope_fields, &in_env)) {
		error(c, 0, im_Code_ERR_BAD_REQUEST);
		return;
	}
	req = in_env.req_id;
	if (c->uid == 0 && in_env.which_msg != im_Envelope_login_tag &&
	    in_env.which_msg != im_Envelope_resume_tag) {
		error(c, req, im_Code_ERR_NOT_LOGGED_IN);
		return;
	}
	switch (in_env.which_msg) {
	case im_Envelope_login_tag:
		login(c, in_env.msg.login.token, req, 0);
		break;
	case im_Envelope_resume_tag:
		login(c, in_env.msg.resume.token, req, 1);
		break;
	case im_Envelope_create_group_tag: {
		group *g;
		pb_size_t i;
		uint32_t j;
		uint64_t gid;

		if (ngroups == MAXG) {
			error(c, req, im_Code_ERR_FULL);
			break;
		}
		gid = ++ngroups;
		g = &groups[gid - 1];
		add_member(g, c->uid);
		for (i = 0; i < in_env.msg.create_group.members_count; i++) {
			add_member(g, in_env.msg.create_group.members[i]);
		}
		memset(&out_env.msg.group_created, 0,
		       sizeof(out_env.msg.group_created));
		out_env.which_msg = im_Envelope_group_created_tag;
		out_env.msg.group_created.group = gid;
		emit(c, req);
		for (j = 0; j < g->nmembers; j++) {
			uint64_t u = g->members[j];

			if (u < MAXU && online[u]) {
				memset(&out_env.msg.user_event, 0,
				       sizeof(out_env.msg.user_event));
				out_env.which_msg = im_Envelope_user_event_tag;
				out_env.msg.user_event.type =
				        im_EventType_EV_GROUP_CREATED;
				out_env.msg.user_event.group = gid;
				out_env.msg.user_event.seq = gid;
				emit(&conns[online[u] - 1], 0);
			}
		}
		break;
	}
	case im_Envelope_add_member_tag: {
		uint64_t gid = in_env.msg.add_member.group;

		if (gid == 0 || gid > ngroups ||
		    !member(&groups[gid - 1], c->uid)) {
			error(c, req, im_Code_ERR_NOT_MEMBER);
			break;
		}
		add_member(&groups[gid - 1], in_env.msg.add_member.user);
		error(c, req, im_Code_OK);
		break;
	}
	case im_Envelope_send_tag: {
		const im_Send *sd = &in_env.msg.send;
		uint64_t gid = sd->group, prev;
		group *g;
		msg *m;
		uint32_t j;

		if (gid == 0 || gid > ngroups ||
		    !member(&groups[gid - 1], c->uid)) {
			error(c, req, im_Code_ERR_NOT_MEMBER);
			break;
		}
		g = &groups[gid - 1];
		g->msgs = realloc(g->msgs, sizeof(msg) * (g->nmsgs + 1));
		m = &g->msgs[g->nmsgs];
		prev = g->nmsgs ? g->msgs[g->nmsgs - 1].seq : 0;
		/* Gaps in seqs, as segments make them. */
		m->seq = prev + 1 + (g->nmsgs % 3 == 2);
		m->sender = c->uid;
		m->dedup = sd->dedup_id;
		m->len = sd->body.size;
		m->body = malloc(m->len ? m->len : 1);
		memcpy(m->body, sd->body.bytes, m->len);
		g->nmsgs++;
		memset(&out_env.msg.send_ack, 0, sizeof(out_env.msg.send_ack));
		out_env.which_msg = im_Envelope_send_ack_tag;
		out_env.msg.send_ack.group = gid;
		out_env.msg.send_ack.dedup_id = sd->dedup_id;
		out_env.msg.send_ack.seq = m->seq;
		emit(c, req);
		for (j = 0; j < g->nmembers; j++) {
			uint64_t u = g->members[j];

			if (u < MAXU && online[u]) {
				deliver(&conns[online[u] - 1], gid, m, prev);
			}
		}
		break;
	}
	case im_Envelope_deliver_ack_tag:
		break;
	case im_Envelope_ping_tag:
		memset(&out_env.msg.pong, 0, sizeof(out_env.msg.pong));
		out_env.which_msg = im_Envelope_pong_tag;
		out_env.msg.pong.time_ms = in_env.msg.ping.time_ms;
		emit(c, req);
		break;
	default:
		error(c, req, im_Code_ERR_BAD_REQUEST);
		break;
	}
}

static void
on_conn(struct ev_loop *l, ev_io *w, int revents)
{
	fconn *c = (fconn *)w;
	uint8_t buf[65536];
	ssize_t n;
	size_t off = 0;

	(void)l;
	if (revents & EV_WRITE) {
		n = write(w->fd, c->out, c->outlen);
		if (n > 0) {
			memmove(c->out, c->out + n, c->outlen - (size_t)n);
			c->outlen -= (size_t)n;
		}
		if (c->outlen == 0) {
			ev_io_stop(loop, w);
			ev_io_set(w, w->fd, EV_READ);
			ev_io_start(loop, w);
		}
	}
	if (!(revents & EV_READ)) {
		return;
	}
	n = read(w->fd, buf, sizeof(buf));
	if (n == 0 || (n < 0 && errno != EAGAIN)) {
		drop(c);
		return;
	}
	if (n < 0) {
		return;
	}
	c->in = realloc(c->in, c->inlen + (size_t)n);
	memcpy(c->in + c->inlen, buf, (size_t)n);
	c->inlen += (size_t)n;
	while (c->inlen - off >= 4) {
		const uint8_t *h = c->in + off;
		uint32_t len = ((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) |
		               ((uint32_t)h[2] << 8) | h[3];

		if (len == 0 || len > 8192) {
			error(c, 0, im_Code_ERR_TOO_BIG);
			drop(c);
			return;
		}
		if (c->inlen - off - 4 < len) {
			break;
		}
		request(c, h + 4, len);
		off += 4 + len;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
}

static void
on_accept(struct ev_loop *l, ev_io *w, int revents)
{
	int fd, one = 1;

	(void)revents;
	while ((fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
		if (fd >= MAXFD) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		memset(&conns[fd], 0, sizeof(conns[fd]));
		ev_io_init(&conns[fd].io, on_conn, fd, EV_READ);
		ev_io_start(l, &conns[fd].io);
	}
}

static void
on_term(struct ev_loop *l, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(l, EVBREAK_ALL);
}

int
main(int argc, char **argv)
{
	struct sockaddr_in a = {0};
	ev_io acc;
	ev_signal sig;
	int fd, one = 1;

	if (argc != 2 && argc != 4) {
		fprintf(stderr, "usage: im-bench-fakesrv PORT "
		                "[REDIRECT_PORT PARITY]\n");
		return 2;
	}
	if (argc == 4) {
		redirect_port = (uint16_t)atoi(argv[2]);
		redirect_parity = (unsigned)atoi(argv[3]) & 1;
	}
	signal(SIGPIPE, SIG_IGN);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)atoi(argv[1]));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(fd, 4096) != 0) {
		perror("fakesrv: bind/listen");
		return 1;
	}
	loop = ev_default_loop(0);
	ev_io_init(&acc, on_accept, fd, EV_READ);
	ev_io_start(loop, &acc);
	ev_signal_init(&sig, on_term, SIGTERM);
	ev_signal_start(loop, &sig);
	printf("ready\n");
	fflush(stdout);
	ev_run(loop, 0);
	return 0;
}
