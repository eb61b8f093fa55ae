/*
 * The client library against a scripted fake server: a loopback listener
 * in a thread that speaks the protocol for the case under test, with real
 * sockets and real frames. Every wait is bounded (WAIT_MS).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fail_alloc.h"
#include "im.pb.h"
#include "im/client.h"
#include "im/frame.h"
#include "test_rng.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 5000
#define MAXSEEN 64

/* ---- the fake server ---- */

typedef struct fsrv fsrv;
typedef void (*fscript)(fsrv *fs);

struct fsrv {
	int lfd, cfd;
	uint16_t port;
	pthread_t th;
	fscript script;
	int failed;
	char why[256];
	im_Envelope in, out;
	/* what the script saw, read by the test after the join */
	uint64_t dedup[8];
	int ndedup;
	im_Resume resume;
	int nresume;
	int accepts;
	uint64_t acked_seq;
	im_Sync sync;
	int nsync;
	/* set before the thread starts */
	int accept_ms;        /* 0 = WAIT_MS */
	bool die;             /* close the listener when the script ends */
	char redirect_to[64]; /* for the redirecting scripts */
};

#define FS_CHECK(fs, cond)                                                     \
	do {                                                                   \
		if (!(cond)) {                                                 \
			snprintf((fs)->why, sizeof((fs)->why), "%s:%d: %s",    \
			         __FILE__, __LINE__, #cond);                   \
			(fs)->failed = 1;                                      \
			return;                                                \
		}                                                              \
	} while (0)

static int
fs_accept(fsrv *fs)
{
	struct pollfd p = {fs->lfd, POLLIN, 0};

	if (fs->cfd >= 0) {
		close(fs->cfd);
		fs->cfd = -1;
	}
	if (poll(&p, 1, fs->accept_ms > 0 ? fs->accept_ms : WAIT_MS) != 1) {
		return -1;
	}
	fs->cfd = accept(fs->lfd, NULL, NULL);
	if (fs->cfd >= 0) {
		fs->accepts++;
	}
	return fs->cfd;
}

static int
read_full(int fd, uint8_t *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t r;

		if (poll(&p, 1, WAIT_MS) != 1) {
			return -1;
		}
		r = read(fd, buf + got, n - got);
		if (r <= 0) {
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

/* Next frame from the client into fs->in; -1 on EOF, timeout or junk. */
static int
fs_recv(fsrv *fs)
{
	static _Thread_local uint8_t buf[IM_FRAME_MAX];
	uint8_t h[4];
	uint32_t len;
	pb_istream_t is;

	if (read_full(fs->cfd, h, 4) != 0) {
		return -1;
	}
	len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 |
	      (uint32_t)h[2] << 8 | h[3];
	if (len == 0 || len > sizeof(buf) || read_full(fs->cfd, buf, len)) {
		return -1;
	}
	is = pb_istream_from_buffer(buf, len);
	return pb_decode(&is, im_Envelope_fields, &fs->in) ? 0 : -1;
}

/* Next frame that is not a DeliverAck or a Ping (those are noted). */
static int
fs_recv_req(fsrv *fs)
{
	for (;;) {
		if (fs_recv(fs) != 0) {
			return -1;
		}
		if (fs->in.which_msg == im_Envelope_deliver_ack_tag) {
			fs->acked_seq = fs->in.msg.deliver_ack.seq;
			continue;
		}
		if (fs->in.which_msg == im_Envelope_ping_tag) {
			continue;
		}
		return 0;
	}
}

static int
fs_send_raw(fsrv *fs, const void *p, size_t n)
{
	return write(fs->cfd, p, n) == (ssize_t)n ? 0 : -1;
}

static im_Envelope *
fs_env(fsrv *fs, uint64_t req, pb_size_t which)
{
	memset(&fs->out, 0, sizeof(fs->out));
	fs->out.req_id = req;
	fs->out.which_msg = which;
	return &fs->out;
}

static int
fs_send(fsrv *fs)
{
	static _Thread_local uint8_t buf[IM_FRAME_MAX + 4];
	pb_ostream_t os = pb_ostream_from_buffer(buf + 4, IM_FRAME_MAX);

	if (!pb_encode(&os, im_Envelope_fields, &fs->out)) {
		return -1;
	}
	im_frame_put_header(buf, (uint32_t)os.bytes_written);
	return fs_send_raw(fs, buf, os.bytes_written + 4);
}

static void
fs_deliver(fsrv *fs, im_gid g, im_seq seq, im_seq prev, im_uid sender,
           const char *text)
{
	im_Deliver *d = &fs_env(fs, 0, im_Envelope_deliver_tag)->msg.deliver;

	d->group = g;
	d->seq = seq;
	d->prev_seq = prev;
	d->ordinal = seq;
	d->sender = sender;
	d->body.size = (pb_size_t)strlen(text);
	memcpy(d->body.bytes, text, d->body.size);
	(void)fs_send(fs);
}

/* Accept, expect a Login, answer LoginOk(user 7) and one ConvPage with
 * group 10 at last seq 4 (read 2). */
static int
fs_login(fsrv *fs)
{
	uint64_t req;
	im_ConvPage *cp;

	if (fs_accept(fs) < 0 || fs_recv_req(fs) != 0 ||
	    fs->in.which_msg != im_Envelope_login_tag) {
		return -1;
	}
	req = fs->in.req_id;
	fs_env(fs, req, im_Envelope_login_ok_tag)->msg.login_ok.user = 7;
	memset(fs->out.msg.login_ok.session, 0xab, 16);
	fs->out.msg.login_ok.conv_count = 1;
	fs->out.msg.login_ok.uq_last_seq = 3;
	if (fs_send(fs) != 0) {
		return -1;
	}
	cp = &fs_env(fs, req, im_Envelope_conv_page_tag)->msg.conv_page;
	cp->convs_count = 1;
	cp->convs[0].group = 10;
	cp->convs[0].last_seq = 4;
	cp->convs[0].last_ordinal = 4;
	cp->convs[0].read_seq = 2;
	cp->convs[0].read_ordinal = 2;
	cp->convs[0].unread = 2;
	snprintf(cp->convs[0].name, sizeof(cp->convs[0].name), "ten");
	cp->done = true;
	return fs_send(fs);
}

static void *
fs_main(void *arg)
{
	fsrv *fs = arg;

	fs->script(fs);
	if (fs->cfd >= 0) {
		close(fs->cfd);
		fs->cfd = -1;
	}
	if (fs->die) {
		/* gone for good: the next connect is refused */
		close(fs->lfd);
		fs->lfd = -1;
	}
	return NULL;
}

/* A listener with its script, not started yet (fs_run). */
static fsrv *
fs_new(fscript script)
{
	fsrv *fs = calloc(1, sizeof(*fs));
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);

	assert_non_null(fs);
	fs->cfd = -1;
	fs->script = script;
	fs->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fs->lfd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fs->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fs->lfd, 8), 0);
	assert_int_equal(getsockname(fs->lfd, (struct sockaddr *)&a, &alen), 0);
	fs->port = ntohs(a.sin_port);
	return fs;
}

static void
fs_run(fsrv *fs)
{
	assert_int_equal(pthread_create(&fs->th, NULL, fs_main, fs), 0);
}

static fsrv *
fs_start(fscript script)
{
	fsrv *fs = fs_new(script);

	fs_run(fs);
	return fs;
}

static void
fs_join(fsrv *fs)
{
	pthread_join(fs->th, NULL);
	if (fs->lfd >= 0) {
		close(fs->lfd);
	}
	if (fs->failed) {
		fail_msg("fake server: %s", fs->why);
	}
}

/* ---- the client side ---- */

typedef struct seen {
	im_seq seq[MAXSEEN];
	im_gid group[MAXSEEN];
	bool history[MAXSEEN];
	int n;
	int nlogin_convs;
	im_client_conv login_conv;
	int errs[16];
	int nerr;
	int nerr_all; /* not capped */
	char last_text[160];
	im_seq events[16];
	int nevents;
	im_client_reply_kind reply_kind;
	im_gid reply_group;
	size_t reply_nusers;
	int nreplies;
	int nstates;
	int nacks;
	im_seq ack_seq;
	bool ack_dup;
	int reply_err;
	uint64_t reply_dedup;
	bool reply_dup;
} seen;

static void
on_login(im_client *cl, im_uid user, const im_client_conv *convs, size_t n,
         void *payload)
{
	seen *s = payload;

	s->nlogin_convs = (int)n;
	if (n > 0) {
		s->login_conv = convs[0];
	}
}

static void
on_deliver(im_client *cl, const im_client_msg *m, void *payload)
{
	seen *s = payload;

	if (s->n < MAXSEEN) {
		s->seq[s->n] = m->seq;
		s->group[s->n] = m->group;
		s->history[s->n] = m->history;
		s->n++;
	}
}

static void
on_error(im_client *cl, const im_client_error *e, void *payload)
{
	seen *s = payload;

	if (getenv("DBG"))
		fprintf(stderr, "on_error %d %s\n", e->err, e->text);
	if (s->nerr < 16) {
		s->errs[s->nerr++] = e->err;
	}
	s->nerr_all++;
	snprintf(s->last_text, sizeof(s->last_text), "%s", e->text);
}

static void
on_event(im_client *cl, const im_client_event *ev, void *payload)
{
	seen *s = payload;

	if (s->nevents < 16) {
		s->events[s->nevents++] = ev->seq;
	}
}

static void
on_reply(im_client *cl, const im_client_reply *r, void *payload)
{
	seen *s = payload;

	s->reply_kind = r->kind;
	s->reply_group = r->group;
	s->reply_dedup = r->dedup_id;
	s->reply_dup = r->dup;
	s->reply_nusers = r->nusers;
	s->reply_err = r->err;
	s->nreplies++;
}

static void
on_ack(im_client *cl, im_gid group, uint64_t dedup_id, im_seq seq, bool dup,
       void *payload)
{
	seen *s = payload;

	s->nacks++;
	s->ack_seq = seq;
	s->ack_dup = dup;
}

static void
on_state(im_client *cl, im_client_state st, void *payload)
{
	((seen *)payload)->nstates++;
}

static uint64_t seed;

static void
base_opts(im_client_opts *po, seen *s)
{
	im_client_opts o = IM_CLIENT_OPTS_INIT;

	memset(s, 0, sizeof(*s));
	o.token = "7.0.test";
	o.seed = seed;
	o.backoff_min_ms = 5;
	o.backoff_max_ms = 40;
	o.ping_ms = 0;
	o.max_outbox = 4;
	o.cb.on_login = on_login;
	o.cb.on_deliver = on_deliver;
	o.cb.on_error = on_error;
	o.cb.on_event = on_event;
	o.cb.on_reply = on_reply;
	o.cb.on_state = on_state;
	o.cb.on_ack = on_ack;
	o.payload = s;
	*po = o;
}

static im_client *
mk_client(uint16_t port, seen *s)
{
	im_client_opts o;
	im_client *cl = NULL;

	base_opts(&o, s);
	o.port = port;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	return cl;
}

/* A client of several addresses (version 2 opts). */
static im_client *
mk_client_srv(const char *const *srv, uint32_t n, uint32_t max_rounds, seen *s)
{
	im_client_opts o;
	im_client *cl = NULL;

	base_opts(&o, s);
	o.port = 1; /* unused with servers */
	o.servers = srv;
	o.nservers = n;
	o.max_rounds = max_rounds;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	return cl;
}

/* A loopback port nobody listens on (bound, then closed): refused. */
static uint16_t
dead_port(void)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t port;

	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static bool
pred_n(im_client *cl, void *arg)
{
	seen *s = arg;

	return s->n >= 2;
}

static bool
pred_disconnected(im_client *cl, void *arg)
{
	return im_client_get_state(cl) != IM_CLIENT_CONNECTED;
}

/* ---- scripts and tests ---- */

static void
script_login_pages(fsrv *fs)
{
	uint64_t req;
	im_ConvPage *cp;
	int i;

	FS_CHECK(fs, fs_accept(fs) >= 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_login_tag);
	FS_CHECK(fs, strcmp(fs->in.msg.login.token, "7.0.test") == 0);
	req = fs->in.req_id;
	FS_CHECK(fs, req != 0);
	fs_env(fs, req, im_Envelope_login_ok_tag)->msg.login_ok.user = 7;
	fs->out.msg.login_ok.conv_count = 3;
	FS_CHECK(fs, fs_send(fs) == 0);
	for (i = 0; i < 2; i++) {
		cp = &fs_env(fs, req, im_Envelope_conv_page_tag)->msg.conv_page;
		cp->convs_count = i == 0 ? 2 : 1;
		cp->convs[0].group = 100 + (uint64_t)i * 2;
		cp->convs[0].last_seq = 50;
		cp->convs[0].last_ordinal = 9;
		cp->convs[0].read_ordinal = 4;
		cp->convs[0].unread = 5;
		cp->convs[1].group = 101;
		cp->done = i == 1;
		FS_CHECK(fs, fs_send(fs) == 0);
	}
	/* Hold the connection until the client goes. */
	(void)fs_recv(fs);
}

static void
test_client_login_collects_every_conv_page(void **state)
{
	fsrv *fs = fs_start(script_login_pages);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	im_client_conv convs[8];
	size_t n;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_user(cl), 7);
	assert_int_equal(s.nlogin_convs, 3);
	im_client_convs(cl, convs, 8, &n);
	assert_int_equal(n, 3);
	assert_int_equal(convs[0].group, 100);
	assert_int_equal(convs[0].unread, 5);
	assert_int_equal(convs[2].group, 102);
	assert_int_equal(im_client_cursor(cl, 100), 50);
	im_client_destroy(cl);
	fs_join(fs);
	free(fs);
}

static void
script_send_ack(fsrv *fs)
{
	FS_CHECK(fs, fs_login(fs) == 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_send_tag);
	FS_CHECK(fs, fs->in.msg.send.group == 10);
	FS_CHECK(fs, fs->in.msg.send.body.size == 5);
	FS_CHECK(fs, fs->in.msg.send.dedup_id != 0);
	fs->dedup[fs->ndedup++] = fs->in.msg.send.dedup_id;
	fs_env(fs, fs->in.req_id, im_Envelope_send_ack_tag);
	fs->out.msg.send_ack.group = 10;
	fs->out.msg.send_ack.dedup_id = fs->dedup[0];
	fs->out.msg.send_ack.seq = 55;
	FS_CHECK(fs, fs_send(fs) == 0);
	(void)fs_recv(fs);
}

static void
test_client_send_returns_the_acked_seq(void **state)
{
	fsrv *fs = fs_start(script_send_ack);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	im_seq seq = 0;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(s.login_conv.unread, 2);
	assert_int_equal(im_client_send_wait(cl, 10, "hello", 5, WAIT_MS, &seq),
	                 IM_OK);
	assert_int_equal(seq, 55);
	assert_int_equal(im_client_outbox_count(cl), 0);
	im_client_destroy(cl);
	fs_join(fs);
	free(fs);
}

/* The first try is dropped with the connection; the retry on the next
 * connection must carry the same dedup id, after a Resume that names the
 * session and the cursors (user queue and group 10 at 5). */
static void
script_retry_same_dedup(fsrv *fs)
{
	size_t i;
	bool g10 = false, uq = false;

	FS_CHECK(fs, fs_login(fs) == 0);
	fs_deliver(fs, 10, 5, 4, 8, "five");
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_send_tag);
	fs->dedup[fs->ndedup++] = fs->in.msg.send.dedup_id;
	/* drop it unacked */
	FS_CHECK(fs, fs_accept(fs) >= 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_resume_tag);
	fs->resume = fs->in.msg.resume;
	fs->nresume++;
	for (i = 0; i < fs->resume.cursors_count; i++) {
		if (fs->resume.cursors[i].group == 10) {
			g10 = fs->resume.cursors[i].seq == 5;
		}
		if (fs->resume.cursors[i].group == 0) {
			uq = fs->resume.cursors[i].seq == 3;
		}
	}
	FS_CHECK(fs, g10 && uq);
	FS_CHECK(fs, fs->resume.session[0] == 0xab);
	fs_env(fs, fs->in.req_id, im_Envelope_resume_ok_tag);
	fs->out.msg.resume_ok.user = 7;
	fs->out.msg.resume_ok.resumed = true;
	memset(fs->out.msg.resume_ok.session, 0xab, 16);
	FS_CHECK(fs, fs_send(fs) == 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_send_tag);
	fs->dedup[fs->ndedup++] = fs->in.msg.send.dedup_id;
	fs_env(fs, fs->in.req_id, im_Envelope_send_ack_tag);
	fs->out.msg.send_ack.group = 10;
	fs->out.msg.send_ack.dedup_id = fs->dedup[1];
	fs->out.msg.send_ack.seq = 6;
	fs->out.msg.send_ack.dup = true;
	FS_CHECK(fs, fs_send(fs) == 0);
	(void)fs_recv(fs);
}

static void
test_client_retry_after_drop_reuses_the_dedup_id_and_resumes(void **state)
{
	fsrv *fs = fs_start(script_retry_same_dedup);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	im_seq seq = 0;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_send_wait(cl, 10, "x", 1, WAIT_MS, &seq),
	                 IM_OK);
	assert_int_equal(seq, 6);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->ndedup, 2);
	assert_true(fs->dedup[0] == fs->dedup[1]);
	assert_int_equal(fs->nresume, 1);
	assert_int_equal(s.n, 1);
	assert_true(s.nerr >= 1); /* the drop was reported */
	free(fs);
}

static void
script_replays(fsrv *fs)
{
	FS_CHECK(fs, fs_login(fs) == 0);
	fs_deliver(fs, 10, 5, 4, 8, "a");
	fs_deliver(fs, 10, 5, 4, 8, "a again");
	fs_deliver(fs, 10, 3, 2, 8, "old");
	fs_deliver(fs, 10, 9, 5, 8, "b");
	/* user queue: 3 is at the cursor, 4 is new, 4 again is a replay */
	fs_env(fs, 0, im_Envelope_user_event_tag)->msg.user_event.seq = 3;
	FS_CHECK(fs, fs_send(fs) == 0);
	fs->out.msg.user_event.seq = 4;
	FS_CHECK(fs, fs_send(fs) == 0);
	FS_CHECK(fs, fs_send(fs) == 0);
	/* The cumulative ack must reach 9 (bounded by fs_recv's timeout). */
	while (fs->acked_seq != 9) {
		FS_CHECK(fs, fs_recv(fs) == 0);
		if (fs->in.which_msg == im_Envelope_deliver_ack_tag &&
		    fs->in.msg.deliver_ack.group == 10) {
			fs->acked_seq = fs->in.msg.deliver_ack.seq;
		}
	}
}

static void
test_client_drops_replayed_group_seqs(void **state)
{
	fsrv *fs = fs_start(script_replays);
	seen s;
	im_client *cl = mk_client(fs->port, &s);

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_run_until(cl, WAIT_MS, pred_n, &s), IM_OK);
	(void)im_client_run_until(cl, WAIT_MS, pred_disconnected, NULL);
	fs_join(fs);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.seq[0], 5);
	assert_int_equal(s.seq[1], 9);
	assert_int_equal(s.nevents, 1);
	assert_int_equal(s.events[0], 4);
	assert_int_equal(im_client_cursor(cl, 0), 4);
	assert_int_equal(fs->acked_seq, 9);
	im_client_destroy(cl);
	free(fs);
}

/* Answer the Sync just received (group 10 after 4) with seqs 5..8. */
static void
answer_gap_5_to_8(fsrv *fs)
{
	im_SyncPage *sp;
	int i;

	sp = &fs_env(fs, fs->in.req_id, im_Envelope_sync_page_tag)
	              ->msg.sync_page;
	sp->group = 10;
	for (i = 0; i < 4; i++) {
		sp->msgs[i].group = 10;
		sp->msgs[i].seq = 5 + (uint64_t)i;
		sp->msgs[i].prev_seq = 4 + (uint64_t)i;
		sp->msgs[i].ordinal = 5 + (uint64_t)i;
	}
	sp->msgs_count = 4;
	FS_CHECK(fs, fs_send(fs) == 0);
}

static void
script_gap(fsrv *fs)
{
	FS_CHECK(fs, fs_login(fs) == 0);
	fs_deliver(fs, 10, 8, 7, 8, "eight"); /* 5..7 missing */
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_sync_tag);
	fs->sync = fs->in.msg.sync;
	fs->nsync++;
	FS_CHECK(fs, fs->sync.group == 10 && fs->sync.after == 4);
	answer_gap_5_to_8(fs);
	fs_deliver(fs, 10, 8, 7, 8, "eight again");
	fs_deliver(fs, 10, 11, 8, 8, "eleven");
	(void)fs_recv(fs);
}

static bool
pred_five(im_client *cl, void *arg)
{
	return ((seen *)arg)->n >= 5;
}

static void
test_client_gap_in_prev_seq_is_repaired_by_sync(void **state)
{
	fsrv *fs = fs_start(script_gap);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	im_client_conv c;
	int i;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_run_until(cl, WAIT_MS, pred_five, &s),
	                 IM_OK);
	for (i = 0; i < 4; i++) {
		assert_int_equal(s.seq[i], 5 + i);
		assert_false(s.history[i]);
	}
	assert_int_equal(s.seq[4], 11);
	assert_int_equal(im_client_conv_lookup(cl, 10, &c), IM_OK);
	assert_int_equal(c.last_seq, 11);
	assert_int_equal(c.unread, 11 - 2);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->nsync, 1);
	free(fs);
}

static void
script_empty_repair(fsrv *fs)
{
	FS_CHECK(fs, fs_login(fs) == 0);
	fs_deliver(fs, 10, 8, 7, 8, "eight");
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_sync_tag);
	fs->nsync++;
	fs_env(fs, fs->in.req_id, im_Envelope_sync_page_tag)
	        ->msg.sync_page.group = 10;
	FS_CHECK(fs, fs_send(fs) == 0); /* nothing, more = false */
	fs_deliver(fs, 10, 9, 8, 8, "nine");
	fs_deliver(fs, 10, 10, 9, 8, "ten");
	(void)fs_recv(fs);
}

static void
test_client_empty_repair_does_not_stall_the_group(void **state)
{
	fsrv *fs = fs_start(script_empty_repair);
	seen s;
	im_client *cl = mk_client(fs->port, &s);

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_run_until(cl, WAIT_MS, pred_n, &s), IM_OK);
	assert_int_equal(s.seq[0], 9);
	assert_int_equal(s.seq[1], 10);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->nsync, 1);
	free(fs);
}

static void
script_oversize(fsrv *fs)
{
	static const uint8_t big[4] = {0x00, 0x10, 0x00, 0x00}; /* 1 MiB */

	FS_CHECK(fs, fs_login(fs) == 0);
	/* after the client saw the login through (it pings then) */
	FS_CHECK(fs, fs_recv(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_ping_tag);
	FS_CHECK(fs, fs_send_raw(fs, big, 4) == 0);
	/* The client must close without waiting for a megabyte. */
	FS_CHECK(fs, fs_recv(fs) != 0);
}

static void
test_client_oversize_prefix_closes_with_a_clear_error(void **state)
{
	fsrv *fs = fs_start(script_oversize);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	int i;
	bool toobig = false;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_ping(cl, NULL), IM_OK);
	assert_int_equal(
	        im_client_run_until(cl, WAIT_MS, pred_disconnected, NULL),
	        IM_OK);
	im_client_close(cl);
	fs_join(fs);
	for (i = 0; i < s.nerr; i++) {
		toobig |= s.errs[i] == IM_ETOOBIG;
	}
	assert_true(toobig);
	assert_int_equal(im_client_get_state(cl), IM_CLIENT_STOPPED);
	im_client_destroy(cl);
	free(fs);
}

static void
script_refuse_then_serve(fsrv *fs)
{
	int i;

	for (i = 0; i < 3; i++) {
		FS_CHECK(fs, fs_accept(fs) >= 0);
	}
	FS_CHECK(fs, fs_login(fs) == 0);
	(void)fs_recv(fs);
}

static void
test_client_reconnects_after_refusals(void **state)
{
	fsrv *fs = fs_start(script_refuse_then_serve);
	seen s;
	im_client *cl = mk_client(fs->port, &s);

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->accepts, 4);
	free(fs);
}

static void
test_client_backoff_is_bounded_and_jittered(void **state)
{
	test_rng r = {seed};
	uint32_t a, ms, lo = UINT32_MAX, hi = 0;

	for (a = 0; a < 200; a++) {
		ms = im_client_backoff_ms(100, 30000, a, test_rng_next(&r));
		assert_true(ms <= 30000);
		assert_true(ms >= 50);
		if (a >= 20) {
			/* at the cap: jitter stays within [max/2, max] */
			assert_true(ms >= 15000);
			lo = ms < lo ? ms : lo;
			hi = ms > hi ? ms : hi;
		}
	}
	assert_true(lo < hi); /* it does jitter */
	assert_int_equal(im_client_backoff_ms(100, 30000, 0, 0), 50);
	assert_int_equal(
	        im_client_backoff_ms(100, 30000, 1000, UINT64_MAX) <= 30000, 1);
	assert_int_equal(im_client_backoff_ms(1, 1, 5, 12345) <= 1, 1);
}

static void
script_auth(fsrv *fs)
{
	FS_CHECK(fs, fs_accept(fs) >= 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	fs_env(fs, fs->in.req_id, im_Envelope_error_tag)->msg.error.code =
	        im_Code_ERR_AUTH;
	snprintf(fs->out.msg.error.text, sizeof(fs->out.msg.error.text),
	         "bad token");
	FS_CHECK(fs, fs_send(fs) == 0);
	/* No second try may come: the listener stays silent for a while. */
	{
		struct pollfd p = {fs->lfd, POLLIN, 0};

		FS_CHECK(fs, poll(&p, 1, 300) == 0);
	}
}

static void
test_client_bad_token_stops_without_reconnecting(void **state)
{
	fsrv *fs = fs_start(script_auth);
	seen s;
	im_client *cl = mk_client(fs->port, &s);

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_EPERM);
	assert_int_equal(im_client_get_state(cl), IM_CLIENT_STOPPED);
	assert_int_equal(s.errs[0], IM_EPERM);
	fs_join(fs);
	im_client_destroy(cl);
	free(fs);
}

static void
script_requests(fsrv *fs)
{
	im_SyncPage *sp;
	int page;

	FS_CHECK(fs, fs_login(fs) == 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_create_group_tag);
	FS_CHECK(fs, fs->in.msg.create_group.members_count == 2);
	fs_env(fs, fs->in.req_id, im_Envelope_group_created_tag)
	        ->msg.group_created.group = 77;
	FS_CHECK(fs, fs_send(fs) == 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_add_member_tag);
	fs_env(fs, fs->in.req_id, im_Envelope_error_tag);
	FS_CHECK(fs, fs_send(fs) == 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_list_members_tag);
	fs_env(fs, fs->in.req_id, im_Envelope_members_tag)->msg.members.group =
	        77;
	fs->out.msg.members.users_count = 3;
	FS_CHECK(fs, fs_send(fs) == 0);
	/* history of 10 up to the cursor (4), in two pages */
	for (page = 0; page < 2; page++) {
		FS_CHECK(fs, fs_recv_req(fs) == 0);
		FS_CHECK(fs, fs->in.which_msg == im_Envelope_sync_tag);
		FS_CHECK(fs, fs->in.msg.sync.until == 4);
		FS_CHECK(fs, fs->in.msg.sync.after == (page == 0 ? 0u : 2u));
		sp = &fs_env(fs, fs->in.req_id, im_Envelope_sync_page_tag)
		              ->msg.sync_page;
		sp->msgs_count = 2;
		sp->msgs[0].group = sp->msgs[1].group = 10;
		sp->msgs[0].seq = 1 + (uint64_t)page * 2;
		sp->msgs[1].seq = 2 + (uint64_t)page * 2;
		sp->more = page == 0;
		FS_CHECK(fs, fs_send(fs) == 0);
	}
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_mark_read_tag);
	FS_CHECK(fs, fs->in.msg.mark_read.seq == 4);
	fs_env(fs, fs->in.req_id, im_Envelope_error_tag)->msg.error.code =
	        im_Code_ERR_NOT_MEMBER;
	FS_CHECK(fs, fs_send(fs) == 0);
	(void)fs_recv(fs);
}

static void
test_client_requests_get_their_replies(void **state)
{
	fsrv *fs = fs_start(script_requests);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	static const im_uid mem[2] = {8, 9};
	uint64_t req;
	int err = 1;

	assert_int_equal(im_client_create_group(cl, "g", mem, 2, &req),
	                 IM_EAGAIN);
	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_create_group(cl, "g", mem, 2, &req), IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, WAIT_MS, &err), IM_OK);
	assert_int_equal(err, IM_OK);
	assert_int_equal(s.reply_kind, IM_CLIENT_REPLY_CREATED);
	assert_int_equal(s.reply_group, 77);
	assert_int_equal(im_client_add_member(cl, 77, 5, &req), IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, WAIT_MS, &err), IM_OK);
	assert_int_equal(s.reply_kind, IM_CLIENT_REPLY_DONE);
	assert_int_equal(im_client_list_members(cl, 77, 0, &req), IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, WAIT_MS, &err), IM_OK);
	assert_int_equal(s.reply_kind, IM_CLIENT_REPLY_MEMBERS);
	assert_int_equal(s.reply_nusers, 3);
	assert_int_equal(im_client_sync_wait(cl, 10, 0, 0, 0, WAIT_MS), IM_OK);
	assert_int_equal(s.n, 4);
	assert_true(s.history[0] && s.history[3]);
	assert_int_equal(s.seq[3], 4);
	assert_int_equal(im_client_cursor(cl, 10), 4);
	assert_int_equal(im_client_mark_read(cl, 10, 0, &req), IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, WAIT_MS, &err), IM_OK);
	assert_int_equal(err, IM_EPERM);
	assert_int_equal(s.reply_kind, IM_CLIENT_REPLY_ERROR);
	im_client_destroy(cl);
	fs_join(fs);
	free(fs);
}

/* Answer the next Ping, so the test knows every earlier frame was read. */
static int
fs_pong(fsrv *fs)
{
	for (;;) {
		if (fs_recv(fs) != 0) {
			return -1;
		}
		if (fs->in.which_msg == im_Envelope_ping_tag) {
			break;
		}
	}
	fs_env(fs, fs->in.req_id, im_Envelope_pong_tag);
	return fs_send(fs);
}

#define MANY 130

static void
script_many_convs(fsrv *fs)
{
	uint64_t req;
	im_ConvPage *cp;
	uint64_t g = 1;
	size_t i;
	static bool in_resume[MANY + 1];

	FS_CHECK(fs, fs_accept(fs) >= 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	req = fs->in.req_id;
	fs_env(fs, req, im_Envelope_login_ok_tag)->msg.login_ok.user = 7;
	fs->out.msg.login_ok.uq_last_seq = 3;
	FS_CHECK(fs, fs_send(fs) == 0);
	while (g <= MANY) {
		cp = &fs_env(fs, req, im_Envelope_conv_page_tag)->msg.conv_page;
		for (i = 0; i < 32 && g <= MANY; i++, g++) {
			cp->convs[i].group = g;
			cp->convs[i].last_seq = g;
		}
		cp->convs_count = (pb_size_t)i;
		cp->done = g > MANY;
		FS_CHECK(fs, fs_send(fs) == 0);
	}
	FS_CHECK(fs, fs_pong(fs) == 0);
	/* drop; the resume can carry 128 cursors, the rest must be synced */
	FS_CHECK(fs, fs_accept(fs) >= 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_resume_tag);
	fs->resume = fs->in.msg.resume;
	FS_CHECK(fs, fs->resume.cursors_count == 128);
	for (i = 0; i < fs->resume.cursors_count; i++) {
		im_Cursor *cu = &fs->resume.cursors[i];

		FS_CHECK(fs, cu->group <= MANY && !in_resume[cu->group]);
		FS_CHECK(fs, cu->seq == (cu->group == 0 ? 3 : cu->group));
		in_resume[cu->group] = true;
	}
	FS_CHECK(fs, in_resume[0]);
	fs_env(fs, fs->in.req_id, im_Envelope_resume_ok_tag);
	FS_CHECK(fs, fs_send(fs) == 0);
	for (i = 0; i < MANY + 1 - 128; i++) {
		FS_CHECK(fs, fs_recv_req(fs) == 0);
		FS_CHECK(fs, fs->in.which_msg == im_Envelope_sync_tag);
		g = fs->in.msg.sync.group;
		FS_CHECK(fs, g >= 1 && g <= MANY && !in_resume[g]);
		FS_CHECK(fs, fs->in.msg.sync.after == g);
		in_resume[g] = true;
		fs->nsync++;
		fs_env(fs, fs->in.req_id, im_Envelope_sync_page_tag)
		        ->msg.sync_page.group = g;
		FS_CHECK(fs, fs_send(fs) == 0);
	}
	FS_CHECK(fs, fs_pong(fs) == 0);
	(void)fs_recv(fs);
}

static bool
pred_reconnected(im_client *cl, void *arg)
{
	return ((seen *)arg)->nstates >= 5 &&
	       im_client_get_state(cl) == IM_CLIENT_CONNECTED;
}

static void
test_client_resume_over_128_convs_syncs_the_rest(void **state)
{
	fsrv *fs = fs_start(script_many_convs);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	uint64_t req;
	int err = 1;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(s.nlogin_convs, MANY);
	assert_int_equal(im_client_ping(cl, &req), IM_OK);
	/* the reply may be lost with the drop; the reconnect is what counts */
	(void)im_client_wait_reply(cl, req, WAIT_MS, &err);
	assert_int_equal(im_client_run_until(cl, WAIT_MS, pred_reconnected, &s),
	                 IM_OK);
	assert_int_equal(im_client_ping(cl, &req), IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, WAIT_MS, &err), IM_OK);
	assert_int_equal(err, IM_OK);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->nsync, MANY + 1 - 128);
	free(fs);
}

/* The server forgot the session: the client logs in afresh and syncs what
 * the new login shows it missed, in the user queue and in its groups. */
static void
script_session_lost(fsrv *fs)
{
	uint64_t req;
	im_ConvPage *cp;
	im_SyncPage *sp;
	int i, k;

	FS_CHECK(fs, fs_login(fs) == 0);
	FS_CHECK(fs, fs_pong(fs) == 0);
	FS_CHECK(fs, fs_accept(fs) >= 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_resume_tag);
	fs_env(fs, fs->in.req_id, im_Envelope_error_tag)->msg.error.code =
	        im_Code_ERR_SESSION;
	FS_CHECK(fs, fs_send(fs) == 0);
	FS_CHECK(fs, fs_accept(fs) >= 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_login_tag);
	req = fs->in.req_id;
	fs_env(fs, req, im_Envelope_login_ok_tag)->msg.login_ok.user = 7;
	fs->out.msg.login_ok.uq_last_seq = 6;
	FS_CHECK(fs, fs_send(fs) == 0);
	cp = &fs_env(fs, req, im_Envelope_conv_page_tag)->msg.conv_page;
	cp->convs_count = 1;
	cp->convs[0].group = 10;
	cp->convs[0].last_seq = 8;
	cp->done = true;
	FS_CHECK(fs, fs_send(fs) == 0);
	for (k = 0; k < 2; k++) {
		FS_CHECK(fs, fs_recv_req(fs) == 0);
		FS_CHECK(fs, fs->in.which_msg == im_Envelope_sync_tag);
		fs->nsync++;
		sp = &fs_env(fs, fs->in.req_id, im_Envelope_sync_page_tag)
		              ->msg.sync_page;
		if (fs->in.msg.sync.group == 0) {
			FS_CHECK(fs, fs->in.msg.sync.after == 3);
			sp->events_count = 2;
			sp->events[0].seq = 5;
			sp->events[1].seq = 6;
		} else {
			FS_CHECK(fs, fs->in.msg.sync.group == 10);
			FS_CHECK(fs, fs->in.msg.sync.after == 4);
			sp->group = 10;
			sp->msgs_count = 4;
			for (i = 0; i < 4; i++) {
				sp->msgs[i].group = 10;
				sp->msgs[i].seq = 5 + (uint64_t)i;
				sp->msgs[i].prev_seq = 4 + (uint64_t)i;
			}
		}
		FS_CHECK(fs, fs_send(fs) == 0);
	}
	FS_CHECK(fs, fs_pong(fs) == 0);
	(void)fs_recv(fs);
}

static bool
pred_relogged(im_client *cl, void *arg)
{
	seen *s = arg;

	return s->n >= 4 && s->nevents >= 2;
}

static void
test_client_lost_session_logs_in_again_and_syncs_the_gap(void **state)
{
	fsrv *fs = fs_start(script_session_lost);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	uint64_t req;
	int err = 1, i;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_ping(cl, &req), IM_OK);
	(void)im_client_wait_reply(cl, req, WAIT_MS, &err);
	assert_int_equal(im_client_run_until(cl, WAIT_MS, pred_relogged, &s),
	                 IM_OK);
	for (i = 0; i < 4; i++) {
		assert_int_equal(s.seq[i], 5 + i);
	}
	assert_int_equal(s.events[0], 5);
	assert_int_equal(s.events[1], 6);
	assert_int_equal(im_client_ping(cl, &req), IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, WAIT_MS, &err), IM_OK);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->nsync, 2);
	free(fs);
}

static void
script_garbage(fsrv *fs)
{
	static const uint8_t junk[8] = {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff};

	FS_CHECK(fs, fs_login(fs) == 0);
	FS_CHECK(fs, fs_pong(fs) == 0);
	FS_CHECK(fs, fs_send_raw(fs, junk, sizeof(junk)) == 0);
	FS_CHECK(fs, fs_recv(fs) != 0);
}

static void
test_client_undecodable_frame_closes_with_a_protocol_error(void **state)
{
	fsrv *fs = fs_start(script_garbage);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	uint64_t req;
	int err, i;
	bool proto = false;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_ping(cl, &req), IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, WAIT_MS, &err), IM_OK);
	assert_int_equal(
	        im_client_run_until(cl, WAIT_MS, pred_disconnected, NULL),
	        IM_OK);
	im_client_close(cl);
	fs_join(fs);
	for (i = 0; i < s.nerr; i++) {
		proto |= s.errs[i] == IM_EPROTO;
	}
	assert_true(proto);
	im_client_destroy(cl);
	free(fs);
}

/* Pings go unanswered: the client must give up on the connection. */
static void
script_silent(fsrv *fs)
{
	FS_CHECK(fs, fs_login(fs) == 0);
	while (fs_recv(fs) == 0) {
		if (fs->in.which_msg == im_Envelope_ping_tag) {
			fs->nsync++; /* counts pings */
		}
	}
}

static void
test_client_silent_server_is_dropped_after_missed_pings(void **state)
{
	fsrv *fs = fs_start(script_silent);
	seen s;
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	im_client *cl = NULL;

	memset(&s, 0, sizeof(s));
	o.port = fs->port;
	o.token = "7.0.test";
	o.ping_ms = 20;
	o.reconnect = false;
	o.cb.on_error = on_error;
	o.payload = &s;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(
	        im_client_run_until(cl, WAIT_MS, pred_disconnected, NULL),
	        IM_OK);
	assert_int_equal(im_client_get_state(cl), IM_CLIENT_STOPPED);
	assert_int_equal(s.errs[0], IM_EUNAVAIL);
	im_client_destroy(cl);
	fs_join(fs);
	assert_true(fs->nsync >= 2);
	free(fs);
}

/* Login never answered: the login timeout closes and the client retries. */
static void
script_mute_login(fsrv *fs)
{
	FS_CHECK(fs, fs_accept(fs) >= 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_login_tag);
	FS_CHECK(fs, fs_recv(fs) != 0); /* the client hangs up */
	FS_CHECK(fs, fs_login(fs) == 0);
	(void)fs_recv(fs);
}

static void
test_client_unanswered_login_times_out_and_retries(void **state)
{
	fsrv *fs = fs_start(script_mute_login);
	seen s;
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	im_client *cl = NULL;

	memset(&s, 0, sizeof(s));
	o.port = fs->port;
	o.token = "7.0.test";
	o.login_timeout_ms = 300;
	o.backoff_min_ms = 5;
	o.backoff_max_ms = 10;
	o.cb.on_error = on_error;
	o.payload = &s;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(s.errs[0], IM_EAGAIN);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->accepts, 2);
	free(fs);
}

/* ERR_UNAVAILABLE: retried with the same dedup id on the same connection;
 * ERR_NOT_MEMBER: dropped from the outbox with an error naming it. */
static void
script_send_errors(fsrv *fs)
{
	FS_CHECK(fs, fs_login(fs) == 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_send_tag);
	fs->dedup[fs->ndedup++] = fs->in.msg.send.dedup_id;
	fs_env(fs, fs->in.req_id, im_Envelope_error_tag)->msg.error.code =
	        im_Code_ERR_UNAVAILABLE;
	FS_CHECK(fs, fs_send(fs) == 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_send_tag);
	fs->dedup[fs->ndedup++] = fs->in.msg.send.dedup_id;
	fs_env(fs, fs->in.req_id, im_Envelope_send_ack_tag);
	fs->out.msg.send_ack.group = 10;
	fs->out.msg.send_ack.dedup_id = fs->dedup[1];
	fs->out.msg.send_ack.seq = 9;
	FS_CHECK(fs, fs_send(fs) == 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_send_tag);
	FS_CHECK(fs, fs->in.msg.send.group == 11);
	fs_env(fs, fs->in.req_id, im_Envelope_error_tag)->msg.error.code =
	        im_Code_ERR_NOT_MEMBER;
	fs->out.msg.error.group = 11;
	FS_CHECK(fs, fs_send(fs) == 0);
	(void)fs_recv(fs);
}

static void
test_client_unavailable_send_is_retried_and_refused_one_dropped(void **state)
{
	fsrv *fs = fs_start(script_send_errors);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	im_seq seq = 0;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_send_wait(cl, 10, "a", 1, WAIT_MS, &seq),
	                 IM_OK);
	assert_int_equal(seq, 9);
	assert_int_equal(im_client_send_wait(cl, 11, "b", 1, WAIT_MS, &seq),
	                 IM_EPERM);
	assert_int_equal(im_client_outbox_count(cl), 0);
	assert_int_equal(s.nerr, 1);
	assert_int_equal(s.errs[0], IM_EPERM);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->ndedup, 2);
	assert_true(fs->dedup[0] == fs->dedup[1]);
	free(fs);
}

/* Event driven: the caller's loop, callbacks only, no blocking helper. */
static void
on_login_break(im_client *cl, im_uid user, const im_client_conv *convs,
               size_t n, void *payload)
{
	seen *s = payload;

	s->nlogin_convs = (int)n;
	ev_break(im_client_loop(cl), EVBREAK_ALL);
}

static void
give_up(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void
test_client_runs_on_the_callers_loop(void **state)
{
	fsrv *fs = fs_start(script_send_ack);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	im_client *cl = NULL;
	ev_timer deadline;
	seen s;

	memset(&s, 0, sizeof(s));
	assert_non_null(loop);
	o.port = fs->port;
	o.token = "7.0.test";
	o.cb.on_login = on_login_break;
	o.payload = &s;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	assert_int_equal(im_client_attach(cl, loop), IM_OK);
	assert_int_equal(im_client_attach(cl, loop), IM_EINVAL);
	assert_ptr_equal(im_client_loop(cl), loop);
	assert_int_equal(im_client_connect(cl), IM_OK);
	ev_timer_init(&deadline, give_up, WAIT_MS / 1000.0, 0.);
	ev_timer_start(loop, &deadline);
	ev_run(loop, 0);
	assert_int_equal(s.nlogin_convs, 1);
	assert_int_equal(im_client_get_state(cl), IM_CLIENT_CONNECTED);
	/* the blocking helpers run the same (caller's) loop */
	assert_int_equal(im_client_send_wait(cl, 10, "hello", 5, WAIT_MS, NULL),
	                 IM_OK);
	ev_timer_stop(loop, &deadline);
	im_client_destroy(cl);
	ev_loop_destroy(loop);
	fs_join(fs);
	free(fs);
}

/* ---- answer deadline (send_timeout_ms) ---- */

static im_client *
mk_client_timeout(uint16_t port, uint32_t version, uint32_t timeout_ms,
                  seen *s)
{
	im_client_opts o;
	im_client *cl = NULL;

	base_opts(&o, s);
	o.port = port;
	o.version = version;
	o.send_timeout_ms = timeout_ms;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	return cl;
}

static int
fs_ack(fsrv *fs, uint64_t req, uint64_t dedup, im_seq seq, bool dup)
{
	fs_env(fs, req, im_Envelope_send_ack_tag);
	fs->out.msg.send_ack.group = 10;
	fs->out.msg.send_ack.dedup_id = dedup;
	fs->out.msg.send_ack.seq = seq;
	fs->out.msg.send_ack.dup = dup;
	return fs_send(fs);
}

/* The first try's answer is lost; the retry (same dedup id, new req id)
 * is answered as a dup of the committed send, then the first try's
 * answers come late after all (an "unavailable", then its ack): one ack
 * for the app, no error. */
static void
script_resend_after_timeout(fsrv *fs)
{
	uint64_t req0, req1;

	FS_CHECK(fs, fs_login(fs) == 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_send_tag);
	fs->dedup[fs->ndedup++] = fs->in.msg.send.dedup_id;
	req0 = fs->in.req_id;
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_send_tag);
	FS_CHECK(fs, fs->in.req_id != req0);
	fs->dedup[fs->ndedup++] = fs->in.msg.send.dedup_id;
	req1 = fs->in.req_id;
	/* the first try's late "unavailable": stale, not an error */
	fs_env(fs, req0, im_Envelope_error_tag)->msg.error.code =
	        im_Code_ERR_UNAVAILABLE;
	fs->out.msg.error.group = 10;
	fs->out.msg.error.dedup_id = fs->dedup[0];
	FS_CHECK(fs, fs_send(fs) == 0);
	FS_CHECK(fs, fs_ack(fs, req1, fs->dedup[1], 6, true) == 0);
	FS_CHECK(fs, fs_ack(fs, req0, fs->dedup[0], 6, false) == 0);
	FS_CHECK(fs, fs_pong(fs) == 0);
	(void)fs_recv(fs);
}

static void
test_client_unanswered_send_is_resent_with_its_dedup_id_and_acked_once(
        void **state)
{
	fsrv *fs = fs_start(script_resend_after_timeout);
	seen s;
	im_client *cl =
	        mk_client_timeout(fs->port, IM_CLIENT_OPTS_VERSION, 50, &s);
	im_seq seq = 0;
	uint64_t req;
	int err = 1;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_send_wait(cl, 10, "x", 1, WAIT_MS, &seq),
	                 IM_OK);
	assert_int_equal(seq, 6);
	/* the pong comes after the late first answer: both were read */
	assert_int_equal(im_client_ping(cl, &req), IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, WAIT_MS, &err), IM_OK);
	assert_int_equal(err, IM_OK);
	assert_int_equal(s.nacks, 1);
	assert_int_equal(s.ack_seq, 6);
	assert_true(s.ack_dup);
	assert_int_equal(s.nerr_all, 0);
	assert_int_equal(im_client_outbox_count(cl), 0);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->ndedup, 2);
	assert_true(fs->dedup[0] == fs->dedup[1]);
	free(fs);
}

/* Counts the sends and creates until a Ping, answers it, then holds. */
static void
script_count_until_ping(fsrv *fs)
{
	FS_CHECK(fs, fs_login(fs) == 0);
	for (;;) {
		FS_CHECK(fs, fs_recv(fs) == 0); /* fs_recv_req skips pings */
		if (fs->in.which_msg == im_Envelope_deliver_ack_tag) {
			continue;
		}
		if (fs->in.which_msg == im_Envelope_send_tag) {
			fs->ndedup++;
		} else if (fs->in.which_msg == im_Envelope_create_group_tag) {
			fs->nsync++;
		} else {
			break;
		}
	}
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_ping_tag);
	fs_env(fs, fs->in.req_id, im_Envelope_pong_tag);
	FS_CHECK(fs, fs_send(fs) == 0);
	(void)fs_recv(fs);
}

/* Run cl for ms, then ping the script (which stops counting). */
static void
run_then_ping(im_client *cl, uint32_t ms)
{
	uint64_t req;
	int err = 1;

	(void)im_client_run_until(cl, ms, NULL, NULL);
	assert_int_equal(im_client_ping(cl, &req), IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, WAIT_MS, &err), IM_OK);
	assert_int_equal(err, IM_OK);
}

static void
test_client_without_a_deadline_an_unanswered_send_is_not_resent(void **state)
{
	fsrv *fs;
	seen s;
	im_client *cl;
	uint32_t version;

	/* send_timeout_ms 0, and a version 2 caller (the field unread) */
	for (version = 2; version <= IM_CLIENT_OPTS_VERSION; version++) {
		fs = fs_start(script_count_until_ping);
		cl = mk_client_timeout(fs->port, version,
		                       version == 2 ? 20 : 0, &s);
		assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
		assert_int_equal(im_client_send(cl, 10, "x", 1, NULL), IM_OK);
		run_then_ping(cl, 300);
		assert_int_equal(im_client_outbox_count(cl), 1);
		assert_int_equal(s.nacks, 0);
		im_client_destroy(cl);
		fs_join(fs);
		assert_int_equal(fs->ndedup, 1);
		free(fs);
	}
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Answers the login, then reads and answers nothing (a stopped process:
 * its kernel still acks, the connection stays open); ends when the
 * client hangs up, at most 30 s. */
static void
script_hung(fsrv *fs)
{
	uint8_t sink[4096];
	double end;

	FS_CHECK(fs, fs_login(fs) == 0);
	end = now_s() + 30;
	while (now_s() < end) {
		struct pollfd p = {fs->cfd, POLLIN, 0};

		if (poll(&p, 1, 100) == 1 &&
		    read(fs->cfd, sink, sizeof(sink)) <= 0) {
			break;
		}
	}
}

/* The library's default options (the fault tests use them too) leave a
 * hung server within the documented 15 s (3 x IM_CLIENT_PING_MS). */
static void
test_client_default_options_leave_a_hung_server_within_15_s(void **state)
{
	fsrv *fs = fs_start(script_hung);
	seen s;
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	im_client *cl = NULL;
	double t0;

	memset(&s, 0, sizeof(s));
	o.port = fs->port;
	o.token = "7.0.test";
	o.reconnect = false;
	o.cb.on_error = on_error;
	o.payload = &s;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	t0 = now_s();
	assert_int_equal(
	        im_client_run_until(cl, 15000 + 2000, pred_disconnected, NULL),
	        IM_OK);
	assert_true(now_s() - t0 > 14.0);
	assert_int_equal(s.errs[0], IM_EUNAVAIL);
	im_client_destroy(cl);
	fs_join(fs);
	free(fs);
}

/* A server that answers nothing: each send and each CreateGroup goes
 * again once per deadline (bounded by the time run, no busy loop), the
 * create with its key, unanswered meanwhile. */
static void
test_client_unanswered_sends_are_resent_once_per_deadline(void **state)
{
	fsrv *fs = fs_start(script_count_until_ping);
	seen s;
	im_client *cl =
	        mk_client_timeout(fs->port, IM_CLIENT_OPTS_VERSION, 50, &s);
	static const im_uid mem[1] = {8};
	double t0;
	uint64_t req;
	int i, max;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	t0 = now_s();
	for (i = 0; i < 4; i++) {
		assert_int_equal(im_client_send(cl, 10, "x", 1, NULL), IM_OK);
	}
	assert_int_equal(im_client_create_group(cl, "g", mem, 1, &req), IM_OK);
	run_then_ping(cl, 400);
	/* 4 sends, each once at first and at most once per 50 ms after */
	max = 4 * (int)((now_s() - t0) * 1000 / 50 + 2);
	assert_int_equal(im_client_outbox_count(cl), 4);
	assert_int_equal(s.nacks, 0);
	/* only the pong answered: the create waits for its answer */
	assert_int_equal(s.nreplies, 1);
	im_client_destroy(cl);
	fs_join(fs);
	assert_true(fs->ndedup >= 8);
	assert_true(fs->ndedup <= max);
	assert_true(fs->nsync >= 2); /* the create's tries */
	assert_true(fs->nsync <= max / 4);
	free(fs);
}

/*
 * A CreateGroup unanswered within the deadline goes again with the same
 * key; the late answer of the first try (matched by its key) answers it,
 * once: the retry's answer (dup) finds nothing waiting.
 */
static void
script_create_late_answer(fsrv *fs)
{
	uint64_t req[2];
	int i;

	FS_CHECK(fs, fs_login(fs) == 0);
	for (i = 0; i < 2; i++) {
		FS_CHECK(fs, fs_recv_req(fs) == 0);
		FS_CHECK(fs, fs->in.which_msg == im_Envelope_create_group_tag);
		FS_CHECK(fs, fs->in.msg.create_group.members_count == 1);
		FS_CHECK(fs, strcmp(fs->in.msg.create_group.name, "g") == 0);
		req[i] = fs->in.req_id;
		fs->dedup[fs->ndedup++] = fs->in.msg.create_group.dedup_id;
	}
	for (i = 0; i < 2; i++) {
		fs_env(fs, req[i], im_Envelope_group_created_tag);
		fs->out.msg.group_created.group = 77;
		fs->out.msg.group_created.dedup_id = fs->dedup[i];
		fs->out.msg.group_created.dup = i == 1;
		FS_CHECK(fs, fs_send(fs) == 0);
	}
	/* A third try may have left before the answers came (a slow
	 * machine); none after them: counted until the test's ping. */
	do {
		FS_CHECK(fs, fs_recv(fs) == 0); /* fs_recv_req skips pings */
		fs->nsync += fs->in.which_msg == im_Envelope_create_group_tag;
	} while (fs->in.which_msg == im_Envelope_create_group_tag ||
	         fs->in.which_msg == im_Envelope_deliver_ack_tag);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_ping_tag);
	fs_env(fs, fs->in.req_id, im_Envelope_pong_tag);
	FS_CHECK(fs, fs_send(fs) == 0);
	(void)fs_recv(fs);
}

static void
test_client_unanswered_create_group_goes_again_with_its_key(void **state)
{
	fsrv *fs = fs_start(script_create_late_answer);
	seen s;
	im_client *cl =
	        mk_client_timeout(fs->port, IM_CLIENT_OPTS_VERSION, 100, &s);
	static const im_uid mem[1] = {8};
	uint64_t req, dedup;
	int err = 1;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_create_group(cl, "g", mem, 1, &req), IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, WAIT_MS, &err), IM_OK);
	assert_int_equal(err, IM_OK);
	assert_int_equal(s.reply_kind, IM_CLIENT_REPLY_CREATED);
	assert_int_equal(s.reply_group, 77);
	assert_false(s.reply_dup); /* the first try's answer came first */
	dedup = s.reply_dedup;
	run_then_ping(cl, 100);
	assert_int_equal(s.nreplies, 2); /* the create's, then the pong */
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->failed, 0);
	assert_int_equal(fs->ndedup, 2);
	assert_true(fs->nsync <= 1);
	assert_true(fs->dedup[0] != 0);
	assert_int_equal(fs->dedup[1], fs->dedup[0]);
	assert_int_equal(dedup, fs->dedup[0]);
	free(fs);
}

/*
 * The connection drops while a CreateGroup waits for its answer: it goes
 * again on the next connection (after the resume) with the same key, and
 * is answered once, with the server's group (dup: the first try made it).
 */
static void
script_create_dropped(fsrv *fs)
{
	FS_CHECK(fs, fs_login(fs) == 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_create_group_tag);
	fs->dedup[fs->ndedup++] = fs->in.msg.create_group.dedup_id;
	/* drop it unanswered */
	FS_CHECK(fs, fs_accept(fs) >= 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_resume_tag);
	fs->nresume++;
	fs_env(fs, fs->in.req_id, im_Envelope_resume_ok_tag);
	fs->out.msg.resume_ok.user = 7;
	fs->out.msg.resume_ok.resumed = true;
	memset(fs->out.msg.resume_ok.session, 0xab, 16);
	FS_CHECK(fs, fs_send(fs) == 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_create_group_tag);
	FS_CHECK(fs, strcmp(fs->in.msg.create_group.name, "kept") == 0);
	fs->dedup[fs->ndedup++] = fs->in.msg.create_group.dedup_id;
	fs_env(fs, fs->in.req_id, im_Envelope_group_created_tag);
	fs->out.msg.group_created.group = 91;
	fs->out.msg.group_created.dedup_id = fs->dedup[1];
	fs->out.msg.group_created.dup = true;
	FS_CHECK(fs, fs_send(fs) == 0);
	(void)fs_recv(fs);
}

static void
test_client_create_group_survives_a_reconnect_with_its_key(void **state)
{
	fsrv *fs = fs_start(script_create_dropped);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	uint64_t req;
	int err = 1;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_create_group(cl, "kept", NULL, 0, &req),
	                 IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, WAIT_MS, &err), IM_OK);
	assert_int_equal(err, IM_OK);
	assert_int_equal(s.nreplies, 1); /* not answered "connection lost" */
	assert_int_equal(s.reply_kind, IM_CLIENT_REPLY_CREATED);
	assert_int_equal(s.reply_group, 91);
	assert_true(s.reply_dup);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->failed, 0);
	assert_int_equal(fs->nresume, 1);
	assert_int_equal(fs->ndedup, 2);
	assert_true(fs->dedup[0] != 0);
	assert_int_equal(fs->dedup[1], fs->dedup[0]);
	free(fs);
}

/* ERR_UNAVAILABLE: the create goes again with its key; a final refusal
 * (store full) answers it once, ERROR with the server's code. */
static void
script_create_errors(fsrv *fs)
{
	int i;

	FS_CHECK(fs, fs_login(fs) == 0);
	for (i = 0; i < 2; i++) {
		im_Error *er;

		FS_CHECK(fs, fs_recv_req(fs) == 0);
		FS_CHECK(fs, fs->in.which_msg == im_Envelope_create_group_tag);
		fs->dedup[fs->ndedup++] = fs->in.msg.create_group.dedup_id;
		er = &fs_env(fs, fs->in.req_id, im_Envelope_error_tag)
		              ->msg.error;
		er->code = i == 0 ? im_Code_ERR_UNAVAILABLE
		                  : im_Code_ERR_STORE_FULL;
		er->dedup_id = fs->dedup[i];
		FS_CHECK(fs, fs_send(fs) == 0);
	}
	(void)fs_recv(fs);
}

static void
test_client_create_group_unavailable_goes_again_refused_ends(void **state)
{
	fsrv *fs = fs_start(script_create_errors);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	uint64_t req;
	int err = 1;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_create_group(cl, "g", NULL, 0, &req),
	                 IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, WAIT_MS, &err), IM_OK);
	assert_int_equal(err, IM_ENOSPC);
	assert_int_equal(s.reply_kind, IM_CLIENT_REPLY_ERROR);
	(void)im_client_run_until(cl, 50, NULL, NULL);
	assert_int_equal(s.nreplies, 1);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->failed, 0);
	assert_int_equal(fs->ndedup, 2);
	assert_true(fs->dedup[0] != 0);
	assert_int_equal(fs->dedup[1], fs->dedup[0]);
	free(fs);
}

/* At most IM_CLIENT_CREATES_MAX creates wait for their answers; one more
 * is refused IM_EFULL at once, and nothing of it is sent. */
static void
test_client_create_group_beyond_the_bound_is_efull(void **state)
{
	fsrv *fs = fs_start(script_count_until_ping);
	seen s;
	im_client *cl = mk_client(fs->port, &s);
	int i;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	for (i = 0; i < IM_CLIENT_CREATES_MAX; i++) {
		assert_int_equal(im_client_create_group(cl, "g", NULL, 0, NULL),
		                 IM_OK);
	}
	assert_int_equal(im_client_create_group(cl, "g", NULL, 0, NULL),
	                 IM_EFULL);
	run_then_ping(cl, 50);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->nsync, IM_CLIENT_CREATES_MAX);
	free(fs);
}

/* The first gap repair's answer is lost: it is asked again. */
static void
script_gap_lost_sync(fsrv *fs)
{
	FS_CHECK(fs, fs_login(fs) == 0);
	fs_deliver(fs, 10, 8, 7, 8, "eight"); /* 5..7 missing */
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_sync_tag);
	fs->nsync++;
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_sync_tag);
	fs->nsync++;
	FS_CHECK(fs, fs->in.msg.sync.group == 10 &&
	                     fs->in.msg.sync.after == 4);
	answer_gap_5_to_8(fs);
	(void)fs_recv(fs);
}

static bool
pred_four(im_client *cl, void *arg)
{
	return ((seen *)arg)->n >= 4;
}

static void
test_client_unanswered_gap_repair_is_asked_again(void **state)
{
	fsrv *fs = fs_start(script_gap_lost_sync);
	seen s;
	im_client *cl =
	        mk_client_timeout(fs->port, IM_CLIENT_OPTS_VERSION, 50, &s);
	int i;

	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_run_until(cl, WAIT_MS, pred_four, &s),
	                 IM_OK);
	for (i = 0; i < 4; i++) {
		assert_int_equal(s.seq[i], 5 + i);
	}
	assert_int_equal(im_client_cursor(cl, 10), 8);
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->nsync, 2);
	free(fs);
}

/* ---- argument and bound errors (no server needed) ---- */

static void
test_client_create_rejects_bad_opts(void **state)
{
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	im_client *cl = (im_client *)&o;

	o.token = "t";
	assert_int_equal(im_client_create(NULL, &o), IM_EINVAL);
	assert_int_equal(im_client_create(&cl, NULL), IM_EINVAL);
	assert_null(cl);
	o.token = NULL;
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	o.token = "t";
	o.port = 0;
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	o.port = 1;
	o.frame_max = IM_FRAME_MAX + 1;
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	o.frame_max = IM_FRAME_MAX;
	o.backoff_min_ms = 500;
	o.backoff_max_ms = 100;
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	o.backoff_max_ms = 500;
	o.max_outbox = 0;
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	o.max_outbox = 1;
	o.version = 99;
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	o.version = IM_CLIENT_OPTS_VERSION;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	im_client_destroy(cl);
	im_client_destroy(NULL);
}

static void
test_client_create_survives_every_allocation_failure(void **state)
{
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	fail_alloc fa = {0, 0, 0};
	im_client *cl = NULL;
	int rc;

	o.token = "t";
	o.alloc = fail_alloc_allocator(&fa);
	for (fa.fail_at = 1; fa.fail_at < 100; fa.fail_at++) {
		fa.calls = 0;
		rc = im_client_create(&cl, &o);
		if (rc == IM_OK) {
			break;
		}
		assert_int_equal(rc, IM_ENOMEM);
		assert_null(cl);
		assert_int_equal(fa.live, 0);
	}
	assert_int_equal(rc, IM_OK);
	im_client_destroy(cl);
	assert_int_equal(fa.live, 0);
}

static void
test_client_send_checks_args_and_the_outbox_bound(void **state)
{
	seen s;
	im_client *cl = mk_client(1, &s); /* never connected */
	static uint8_t big[IM_CLIENT_BODY_MAX + 1];
	uint64_t d1 = 0, d2 = 0;
	int i;

	assert_int_equal(im_client_send(cl, 0, "x", 1, NULL), IM_EINVAL);
	assert_int_equal(im_client_send(cl, 1, NULL, 1, NULL), IM_EINVAL);
	assert_int_equal(im_client_send(cl, 1, big, sizeof(big), NULL),
	                 IM_ETOOBIG);
	assert_int_equal(im_client_send(NULL, 1, "x", 1, NULL), IM_EINVAL);
	assert_int_equal(im_client_send(cl, 1, big, IM_CLIENT_BODY_MAX, &d1),
	                 IM_OK);
	assert_int_equal(im_client_send(cl, 1, "", 0, &d2), IM_OK);
	assert_true(d1 != 0 && d2 != 0 && d1 != d2);
	for (i = 2; i < 4; i++) {
		assert_int_equal(im_client_send(cl, 1, "x", 1, NULL), IM_OK);
	}
	assert_int_equal(im_client_send(cl, 1, "x", 1, NULL), IM_EFULL);
	assert_int_equal(im_client_outbox_count(cl), 4);
	assert_int_equal(im_client_add_member(cl, 0, 1, NULL), IM_EINVAL);
	assert_int_equal(im_client_add_member(cl, 1, 2, NULL), IM_EAGAIN);
	assert_int_equal(im_client_remove_member(cl, 1, 0, NULL), IM_EINVAL);
	assert_int_equal(im_client_list_members(cl, 0, 0, NULL), IM_EINVAL);
	assert_int_equal(im_client_mark_read(cl, 1, 0, NULL), IM_EINVAL);
	assert_int_equal(im_client_sync(cl, 1, 5, 3, 0, NULL), IM_EINVAL);
	assert_int_equal(im_client_ping(cl, NULL), IM_EAGAIN);
	assert_int_equal(im_client_create_group(cl, NULL, NULL, 0, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_client_conv_lookup(cl, 1, NULL), IM_ENOTFOUND);
	assert_int_equal(im_client_attach(cl, NULL), IM_EINVAL);
	assert_int_equal(im_client_get_state(cl), IM_CLIENT_STOPPED);
	im_client_destroy(cl);
}

/* Same seed, same dedup ids: runs are reproducible. */
static void
test_client_dedup_ids_follow_the_seed(void **state)
{
	seen s;
	im_client *a = mk_client(1, &s);
	im_client *b = mk_client(1, &s);
	uint64_t da, db;

	assert_int_equal(im_client_send(a, 1, "x", 1, &da), IM_OK);
	assert_int_equal(im_client_send(b, 1, "x", 1, &db), IM_OK);
	assert_true(da == db);
	assert_int_equal(im_client_send(a, 1, "x", 1, &db), IM_OK);
	assert_true(da != db);
	im_client_destroy(a);
	im_client_destroy(b);
}

/* ---- several server addresses ---- */

static void
script_login_hold(fsrv *fs)
{
	FS_CHECK(fs, fs_login(fs) == 0);
	(void)fs_recv(fs); /* until the client goes */
}

static void
test_client_refused_first_address_moves_to_the_second(void **state)
{
	fsrv *fs = fs_start(script_login_hold);
	char a0[32], a1[32];
	const char *srv[2] = {a0, a1};
	seen s;
	im_client *cl;

	snprintf(a0, sizeof(a0), "127.0.0.1:%u", (unsigned)dead_port());
	snprintf(a1, sizeof(a1), "127.0.0.1:%u", (unsigned)fs->port);
	cl = mk_client_srv(srv, 2, 0, &s);
	assert_string_equal(im_client_server(cl), a0);
	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_string_equal(im_client_server(cl), a1);
	assert_int_equal(im_client_user(cl), 7);
	assert_true(s.nerr >= 1);
	assert_int_equal(s.errs[0], IM_EUNAVAIL); /* the refusal, reported */
	im_client_destroy(cl);
	fs_join(fs);
	assert_int_equal(fs->accepts, 1);
	free(fs);
}

/* The first server delivers 10:5, takes a send and dies (listener too). */
static void
script_deliver_then_die(fsrv *fs)
{
	FS_CHECK(fs, fs_login(fs) == 0);
	fs_deliver(fs, 10, 5, 4, 8, "five");
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_send_tag);
	fs->dedup[fs->ndedup++] = fs->in.msg.send.dedup_id;
}

/* The next server gets the Resume with the cursors (as a Connector that
 * never saw the session does: from the store), replays 10:6 that was
 * committed meanwhile and acks the retried send. */
static void
script_resume_elsewhere(fsrv *fs)
{
	size_t i;
	bool g10 = false, uq = false;

	FS_CHECK(fs, fs_accept(fs) >= 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_resume_tag);
	fs->resume = fs->in.msg.resume;
	fs->nresume++;
	for (i = 0; i < fs->resume.cursors_count; i++) {
		if (fs->resume.cursors[i].group == 10) {
			g10 = fs->resume.cursors[i].seq == 5;
		}
		if (fs->resume.cursors[i].group == 0) {
			uq = fs->resume.cursors[i].seq == 3;
		}
	}
	FS_CHECK(fs, g10 && uq);
	fs_env(fs, fs->in.req_id, im_Envelope_resume_ok_tag);
	fs->out.msg.resume_ok.user = 7;
	memset(fs->out.msg.resume_ok.session, 0xcd, 16);
	FS_CHECK(fs, fs_send(fs) == 0);
	fs_deliver(fs, 10, 6, 5, 9, "six");
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	FS_CHECK(fs, fs->in.which_msg == im_Envelope_send_tag);
	fs->dedup[fs->ndedup++] = fs->in.msg.send.dedup_id;
	fs_env(fs, fs->in.req_id, im_Envelope_send_ack_tag);
	fs->out.msg.send_ack.group = 10;
	fs->out.msg.send_ack.dedup_id = fs->dedup[0];
	fs->out.msg.send_ack.seq = 7;
	FS_CHECK(fs, fs_send(fs) == 0);
	(void)fs_recv(fs);
}

static bool
pred_two_and_acked(im_client *cl, void *arg)
{
	seen *s = arg;

	return s->n >= 2 && im_client_outbox_count(cl) == 0;
}

static void
test_client_lost_server_moves_to_the_next_and_resumes_without_loss(void **state)
{
	fsrv *f1 = fs_new(script_deliver_then_die);
	fsrv *f2 = fs_start(script_resume_elsewhere);
	char a0[32], a1[32];
	const char *srv[2] = {a0, a1};
	seen s;
	im_client *cl;

	f1->die = true;
	fs_run(f1);
	snprintf(a0, sizeof(a0), "127.0.0.1:%u", (unsigned)f1->port);
	snprintf(a1, sizeof(a1), "127.0.0.1:%u", (unsigned)f2->port);
	cl = mk_client_srv(srv, 2, 0, &s);
	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_int_equal(im_client_send(cl, 10, "x", 1, NULL), IM_OK);
	assert_int_equal(
	        im_client_run_until(cl, WAIT_MS, pred_two_and_acked, &s),
	        IM_OK);
	assert_string_equal(im_client_server(cl), a1);
	/* 5 from the first server, 6 from the second: none lost, none
	 * twice, in order */
	assert_int_equal(s.n, 2);
	assert_int_equal(s.seq[0], 5);
	assert_int_equal(s.seq[1], 6);
	assert_int_equal(im_client_cursor(cl, 10), 6);
	im_client_destroy(cl);
	fs_join(f1);
	fs_join(f2);
	assert_int_equal(f1->ndedup, 1);
	assert_int_equal(f2->ndedup, 1);
	assert_true(f1->dedup[0] == f2->dedup[0]); /* stored once */
	assert_int_equal(f2->nresume, 1);
	free(f1);
	free(f2);
}

/* Answer each login with Redirect{redirect_to} (up to 8 connections,
 * while they keep coming). */
static void
script_redirect(fsrv *fs)
{
	im_Redirect *rd;
	int i;

	for (i = 0; i < 8 && fs_accept(fs) >= 0; i++) {
		if (fs_recv_req(fs) != 0) {
			continue;
		}
		FS_CHECK(fs, fs->in.which_msg == im_Envelope_login_tag);
		rd = &fs_env(fs, fs->in.req_id, im_Envelope_redirect_tag)
		              ->msg.redirect;
		snprintf(rd->address, sizeof(rd->address), "%s",
		         fs->redirect_to);
		FS_CHECK(fs, fs_send(fs) == 0);
		(void)fs_recv(fs); /* the client closes */
	}
}

static void
test_client_redirect_goes_where_it_points(void **state)
{
	fsrv *f1 = fs_new(script_redirect);
	fsrv *f2 = fs_start(script_login_hold);
	char a0[32], a1[32];
	const char *srv[1] = {a0};
	seen s;
	im_client *cl;

	f1->accept_ms = 300;
	snprintf(f1->redirect_to, sizeof(f1->redirect_to), "127.0.0.1:%u",
	         (unsigned)f2->port);
	fs_run(f1);
	snprintf(a0, sizeof(a0), "127.0.0.1:%u", (unsigned)f1->port);
	snprintf(a1, sizeof(a1), "127.0.0.1:%u", (unsigned)f2->port);
	cl = mk_client_srv(srv, 1, 0, &s);
	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	/* an address that is not on the list */
	assert_string_equal(im_client_server(cl), a1);
	assert_int_equal(s.errs[0], IM_EAGAIN);
	assert_non_null(strstr(s.last_text, "redirected to"));
	im_client_destroy(cl);
	fs_join(f1);
	fs_join(f2);
	assert_int_equal(f1->accepts, 1);
	assert_int_equal(f2->accepts, 1);
	free(f1);
	free(f2);
}

static void
test_client_refused_redirect_target_falls_back_to_the_list(void **state)
{
	fsrv *f1 = fs_new(script_redirect);
	fsrv *f2 = fs_start(script_login_hold);
	char a0[32], a1[32];
	const char *srv[2] = {a0, a1};
	seen s;
	im_client *cl;
	int i;
	bool redirected = false, refused = false;

	f1->accept_ms = 300;
	snprintf(f1->redirect_to, sizeof(f1->redirect_to), "127.0.0.1:%u",
	         (unsigned)dead_port());
	fs_run(f1);
	snprintf(a0, sizeof(a0), "127.0.0.1:%u", (unsigned)f1->port);
	snprintf(a1, sizeof(a1), "127.0.0.1:%u", (unsigned)f2->port);
	cl = mk_client_srv(srv, 2, 0, &s);
	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_string_equal(im_client_server(cl), a1);
	for (i = 0; i < s.nerr; i++) {
		redirected |= s.errs[i] == IM_EAGAIN;
		refused |= s.errs[i] == IM_EUNAVAIL;
	}
	assert_true(redirected && refused);
	im_client_destroy(cl);
	fs_join(f1);
	fs_join(f2);
	assert_int_equal(f1->accepts, 1);
	assert_int_equal(f2->accepts, 1);
	free(f1);
	free(f2);
}

/* A live Connector that still redirects to a dead one it believes alive,
 * then serves the user (it took the slot). */
static void
script_redirect_once_then_serve(fsrv *fs)
{
	im_Redirect *rd;

	FS_CHECK(fs, fs_accept(fs) >= 0);
	FS_CHECK(fs, fs_recv_req(fs) == 0);
	rd = &fs_env(fs, fs->in.req_id, im_Envelope_redirect_tag)->msg.redirect;
	snprintf(rd->address, sizeof(rd->address), "%s", fs->redirect_to);
	FS_CHECK(fs, fs_send(fs) == 0);
	(void)fs_recv(fs);
	FS_CHECK(fs, fs_login(fs) == 0);
	(void)fs_recv(fs);
}

static void
test_client_dead_redirect_target_on_the_list_is_not_tried_twice(void **state)
{
	fsrv *f1 = fs_new(script_redirect_once_then_serve);
	char a0[32], a1[32];
	const char *srv[2] = {a0, a1};
	seen s;
	im_client *cl;
	int i, refused = 0;

	snprintf(a0, sizeof(a0), "127.0.0.1:%u", (unsigned)f1->port);
	snprintf(a1, sizeof(a1), "127.0.0.1:%u", (unsigned)dead_port());
	snprintf(f1->redirect_to, sizeof(f1->redirect_to), "%s", a1);
	fs_run(f1);
	cl = mk_client_srv(srv, 2, 0, &s);
	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_OK);
	assert_string_equal(im_client_server(cl), a0);
	for (i = 0; i < s.nerr; i++) {
		refused += s.errs[i] == IM_EUNAVAIL;
	}
	/* f1, the dead target (refused), then f1 again: the list's entry
	 * for the same dead address is skipped */
	assert_int_equal(refused, 1);
	im_client_destroy(cl);
	fs_join(f1);
	assert_int_equal(f1->accepts, 2);
	free(f1);
}

/* Two servers sending the client to each other: every hop is a try, so
 * max_rounds ends it like dead addresses would. */
static void
test_client_redirect_loop_is_bounded_by_max_rounds(void **state)
{
	fsrv *f1 = fs_new(script_redirect);
	fsrv *f2 = fs_new(script_redirect);
	char a0[32];
	const char *srv[1] = {a0};
	seen s;
	im_client *cl;

	f1->accept_ms = f2->accept_ms = 300;
	snprintf(f1->redirect_to, sizeof(f1->redirect_to), "127.0.0.1:%u",
	         (unsigned)f2->port);
	snprintf(f2->redirect_to, sizeof(f2->redirect_to), "127.0.0.1:%u",
	         (unsigned)f1->port);
	fs_run(f1);
	fs_run(f2);
	snprintf(a0, sizeof(a0), "127.0.0.1:%u", (unsigned)f1->port);
	cl = mk_client_srv(srv, 1, 3, &s);
	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_EUNAVAIL);
	assert_int_equal(im_client_get_state(cl), IM_CLIENT_STOPPED);
	assert_non_null(strstr(s.last_text, "gave up"));
	im_client_destroy(cl);
	fs_join(f1);
	fs_join(f2);
	/* tries: f1, f2, f1 */
	assert_int_equal(f1->accepts, 2);
	assert_int_equal(f2->accepts, 1);
	free(f1);
	free(f2);
}

static void
test_client_all_addresses_dead_back_off_then_give_up(void **state)
{
	char a0[32], a1[32];
	const char *srv[2] = {a0, a1};
	seen s;
	im_client *cl;
	int n;

	snprintf(a0, sizeof(a0), "127.0.0.1:%u", (unsigned)dead_port());
	snprintf(a1, sizeof(a1), "127.0.0.1:%u", (unsigned)dead_port());
	/* max_rounds 3 over 2 addresses: 6 tries, then STOPPED */
	cl = mk_client_srv(srv, 2, 3, &s);
	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_EUNAVAIL);
	assert_int_equal(im_client_get_state(cl), IM_CLIENT_STOPPED);
	assert_int_equal(s.nerr_all, 6 + 1); /* each refusal, then give up */
	assert_non_null(strstr(s.last_text, "gave up"));
	/* nothing stays armed: no further try */
	assert_int_equal(im_client_run_until(cl, 50, NULL, NULL), IM_OK);
	assert_int_equal(s.nerr_all, 7);
	/* connect() starts over */
	assert_int_equal(im_client_connect_wait(cl, WAIT_MS), IM_EUNAVAIL);
	assert_int_equal(s.nerr_all, 14);
	im_client_destroy(cl);

	/* max_rounds 0: retried for ever, DISCONNECTED meanwhile, and the
	 * backoff (5..40 ms, growing per round) keeps it far from a busy
	 * loop: a few dozen tries in 300 ms at most. */
	cl = mk_client_srv(srv, 2, 0, &s);
	assert_int_equal(im_client_connect(cl), IM_OK);
	assert_int_equal(im_client_run_until(cl, 300, NULL, NULL), IM_OK);
	/* between tries (or in one: a refusal may come asynchronously) */
	assert_true(im_client_get_state(cl) == IM_CLIENT_DISCONNECTED ||
	            im_client_get_state(cl) == IM_CLIENT_CONNECTING);
	n = s.nerr_all;
	assert_true(n >= 4);
	assert_true(n <= 60);
	im_client_destroy(cl);
}

static void
test_client_create_checks_the_server_list(void **state)
{
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	im_client *cl = NULL;
	const char *ok[2] = {"127.0.0.1:7600", "[::1]:7601"};
	const char *bad[] = {"127.0.0.1", "127.0.0.1:", ":7600",
	                     "h:0",       "h:65536",    "h:76x0",
	                     "h:123456",  "[]:7600",    NULL};
	const char *many[IM_CLIENT_SERVERS_MAX + 1];
	char longhost[IM_CLIENT_ADDR_MAX + 8];
	const char *one[1];
	size_t i;

	o.token = "t";
	o.servers = ok;
	o.nservers = 2;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	assert_string_equal(im_client_server(cl), "127.0.0.1:7600");
	im_client_destroy(cl);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		one[0] = bad[i];
		o.servers = one;
		o.nservers = 1;
		cl = (im_client *)&o;
		assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
		assert_null(cl);
	}
	o.servers = NULL;
	o.nservers = 1;
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	for (i = 0; i < IM_CLIENT_SERVERS_MAX + 1; i++) {
		many[i] = "127.0.0.1:7600";
	}
	o.servers = many;
	o.nservers = IM_CLIENT_SERVERS_MAX + 1;
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	o.nservers = IM_CLIENT_SERVERS_MAX;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	im_client_destroy(cl);
	memset(longhost, 'h', sizeof(longhost));
	memcpy(longhost + IM_CLIENT_ADDR_MAX - 4, ":7600", 6);
	one[0] = longhost; /* exactly IM_CLIENT_ADDR_MAX + 1 long */
	o.servers = one;
	o.nservers = 1;
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	/* version 1 callers: the v2 fields are not read, host/port count */
	o.version = 1;
	o.servers = bad;
	o.nservers = 99;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	assert_string_equal(im_client_server(cl), "127.0.0.1:7600");
	im_client_destroy(cl);
	o.version = 0;
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	assert_string_equal(im_client_server(NULL), "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_client_create_rejects_bad_opts),
	        cmocka_unit_test(
	                test_client_unanswered_send_is_resent_with_its_dedup_id_and_acked_once),
	        cmocka_unit_test(
	                test_client_without_a_deadline_an_unanswered_send_is_not_resent),
	        cmocka_unit_test(
	                test_client_unanswered_sends_are_resent_once_per_deadline),
	        cmocka_unit_test(
	                test_client_unanswered_create_group_goes_again_with_its_key),
	        cmocka_unit_test(
	                test_client_create_group_survives_a_reconnect_with_its_key),
	        cmocka_unit_test(
	                test_client_create_group_unavailable_goes_again_refused_ends),
	        cmocka_unit_test(
	                test_client_create_group_beyond_the_bound_is_efull),
	        cmocka_unit_test(
	                test_client_unanswered_gap_repair_is_asked_again),
	        cmocka_unit_test(
	                test_client_create_survives_every_allocation_failure),
	        cmocka_unit_test(
	                test_client_send_checks_args_and_the_outbox_bound),
	        cmocka_unit_test(test_client_dedup_ids_follow_the_seed),
	        cmocka_unit_test(test_client_backoff_is_bounded_and_jittered),
	        cmocka_unit_test(test_client_login_collects_every_conv_page),
	        cmocka_unit_test(test_client_send_returns_the_acked_seq),
	        cmocka_unit_test(test_client_runs_on_the_callers_loop),
	        cmocka_unit_test(
	                test_client_retry_after_drop_reuses_the_dedup_id_and_resumes),
	        cmocka_unit_test(test_client_drops_replayed_group_seqs),
	        cmocka_unit_test(
	                test_client_gap_in_prev_seq_is_repaired_by_sync),
	        cmocka_unit_test(
	                test_client_empty_repair_does_not_stall_the_group),
	        cmocka_unit_test(
	                test_client_oversize_prefix_closes_with_a_clear_error),
	        cmocka_unit_test(test_client_reconnects_after_refusals),
	        cmocka_unit_test(
	                test_client_bad_token_stops_without_reconnecting),
	        cmocka_unit_test(test_client_requests_get_their_replies),
	        cmocka_unit_test(
	                test_client_undecodable_frame_closes_with_a_protocol_error),
	        cmocka_unit_test(
	                test_client_silent_server_is_dropped_after_missed_pings),
	        cmocka_unit_test(
	                test_client_default_options_leave_a_hung_server_within_15_s),
	        cmocka_unit_test(
	                test_client_unanswered_login_times_out_and_retries),
	        cmocka_unit_test(
	                test_client_unavailable_send_is_retried_and_refused_one_dropped),
	        cmocka_unit_test(
	                test_client_resume_over_128_convs_syncs_the_rest),
	        cmocka_unit_test(
	                test_client_lost_session_logs_in_again_and_syncs_the_gap),
	        cmocka_unit_test(test_client_create_checks_the_server_list),
	        cmocka_unit_test(
	                test_client_refused_first_address_moves_to_the_second),
	        cmocka_unit_test(
	                test_client_lost_server_moves_to_the_next_and_resumes_without_loss),
	        cmocka_unit_test(test_client_redirect_goes_where_it_points),
	        cmocka_unit_test(
	                test_client_refused_redirect_target_falls_back_to_the_list),
	        cmocka_unit_test(
	                test_client_dead_redirect_target_on_the_list_is_not_tried_twice),
	        cmocka_unit_test(
	                test_client_redirect_loop_is_bounded_by_max_rounds),
	        cmocka_unit_test(
	                test_client_all_addresses_dead_back_off_then_give_up),
	};

	/* the fake server may write to a client that just closed */
	signal(SIGPIPE, SIG_IGN);
	seed = test_seed();
	return cmocka_run_group_tests_name("client", tests, NULL, NULL);
}
