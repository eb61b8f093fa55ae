/*
 * A CreateGroup whose answer is lost makes one group, through the real
 * client library (im_client) against a real imd (or the cluster:
 * IM_TEST_TARGET, see harness.h). The client talks to the server through a
 * relay in this test (a TCP proxy on 127.0.0.1) that swallows the first
 * GroupCreated answer: either it drops both connections at that moment (the
 * client reconnects, resumes and sends the create again with its key) or
 * it keeps the connection (the client's answer deadline sends it again).
 * The client must get one answer, OK, and the store must hold exactly one
 * group of that creator: the creator's conversation list, read by a fresh
 * login, has one entry.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <pb_decode.h>

#include "harness.h"
#include "im/client.h"
#include "im/frame.h"

#define T H_TIMEOUT_MS
#define RELAY_BUF (IM_FRAME_MAX + IM_FRAME_HEADER)

/* ---- the relay ---- */

enum relay_mode {
	RELAY_DROP, /* swallow the first GroupCreated and drop the link */
	RELAY_KEEP, /* swallow it and go on */
};

struct relay {
	int lfd;
	uint16_t port;     /* where the client connects */
	uint16_t upstream; /* the server's client port */
	enum relay_mode mode;
	pthread_t th;
	atomic_bool stop;
	atomic_int swallowed; /* GroupCreated answers not passed on */
	atomic_int accepts;
	uint8_t *down; /* server -> client bytes not yet a whole frame */
	size_t ndown;
	im_Envelope *env;
};

static int
dial(uint16_t port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool
write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w <= 0) {
			return false;
		}
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Pass the whole frames of r->down to the client; false: the link is to
 * be dropped (a GroupCreated swallowed in RELAY_DROP, or an error). */
static bool
relay_frames(struct relay *r, int cfd)
{
	size_t off = 0;
	bool keep = true;

	while (keep) {
		const uint8_t *payload;
		uint32_t plen;
		size_t used;
		pb_istream_t is;
		int rc = im_frame_parse(r->down + off, r->ndown - off,
		                        IM_FRAME_MAX, &payload, &plen, &used);

		if (rc == IM_EAGAIN) {
			break;
		}
		if (rc != IM_OK) {
			return false;
		}
		memset(r->env, 0, sizeof(*r->env));
		is = pb_istream_from_buffer(payload, plen);
		if (pb_decode(&is, im_Envelope_fields, r->env) &&
		    r->env->which_msg == im_Envelope_group_created_tag &&
		    atomic_load(&r->swallowed) == 0) {
			atomic_fetch_add(&r->swallowed, 1);
			keep = r->mode == RELAY_KEEP;
		} else if (!write_all(cfd, r->down + off, used)) {
			return false;
		}
		off += used;
	}
	memmove(r->down, r->down + off, r->ndown - off);
	r->ndown -= off;
	return keep;
}

/* One client connection until either side closes or the relay drops it
 * (every poll bounded, the stop flag checked between). */
static void
relay_link(struct relay *r, int cfd, int sfd)
{
	uint8_t up[4096];

	r->ndown = 0;
	while (!atomic_load(&r->stop)) {
		struct pollfd p[2] = {{cfd, POLLIN, 0}, {sfd, POLLIN, 0}};
		ssize_t n;

		if (poll(p, 2, 100) < 0 && errno != EINTR) {
			return;
		}
		if (p[0].revents != 0) {
			n = read(cfd, up, sizeof(up));
			if (n <= 0 || !write_all(sfd, up, (size_t)n)) {
				return;
			}
		}
		if (p[1].revents != 0) {
			n = read(sfd, r->down + r->ndown, RELAY_BUF - r->ndown);
			if (n <= 0) {
				return;
			}
			r->ndown += (size_t)n;
			if (!relay_frames(r, cfd)) {
				return;
			}
		}
	}
}

static void *
relay_main(void *arg)
{
	struct relay *r = arg;

	while (!atomic_load(&r->stop)) {
		struct pollfd p = {r->lfd, POLLIN, 0};
		int cfd, sfd;

		if (poll(&p, 1, 100) != 1) {
			continue;
		}
		cfd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd < 0) {
			continue;
		}
		atomic_fetch_add(&r->accepts, 1);
		sfd = dial(r->upstream);
		if (sfd >= 0) {
			relay_link(r, cfd, sfd);
			close(sfd);
		}
		close(cfd);
	}
	return NULL;
}

static void
relay_start(struct relay *r, uint16_t upstream, enum relay_mode mode)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	memset(r, 0, sizeof(*r));
	r->upstream = upstream;
	r->mode = mode;
	r->down = malloc(RELAY_BUF);
	r->env = malloc(sizeof(*r->env));
	assert_non_null(r->down);
	assert_non_null(r->env);
	r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(r->lfd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(r->lfd, 8), 0);
	assert_int_equal(getsockname(r->lfd, (struct sockaddr *)&sa, &len), 0);
	r->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&r->th, NULL, relay_main, r), 0);
}

static void
relay_stop(struct relay *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->th, NULL);
	close(r->lfd);
	free(r->down);
	free(r->env);
}

/* ---- the test ---- */

struct seen {
	size_t nreplies;
	im_client_reply_kind kind;
	int err;
	im_gid group;
	bool dup;
	uint64_t dedup_id;
	size_t nstates; /* state changes: the reconnect shows here */
};

static void
on_reply(im_client *cl, const im_client_reply *r, void *payload)
{
	struct seen *s = payload;

	(void)cl;
	s->nreplies++;
	s->kind = r->kind;
	s->err = r->err;
	s->group = r->group;
	s->dup = r->dup;
	s->dedup_id = r->dedup_id;
}

static void
on_state(im_client *cl, im_client_state st, void *payload)
{
	(void)cl;
	(void)st;
	((struct seen *)payload)->nstates++;
}

static int
setup(void **state)
{
	imd_proc *p = calloc(1, sizeof(*p));

	if (p == NULL || imd_init(p, NULL) != 0 || imd_start(p) != 0) {
		free(p);
		return -1;
	}
	*state = p;
	return 0;
}

static int
teardown(void **state)
{
	imd_proc *p = *state;
	int status = imd_cleanup(p);

	free(p);
	return status == 0 ? 0 : -1;
}

/* The creator's groups as a fresh login lists them (-1: login failed).
 * *redirected: the login was sent on to another Connector (cluster). */
static int
groups_of(imd_proc *p, uint64_t uid, bool *redirected)
{
	char tok[IM_TOKEN_BUF];
	im_ConvInfo convs[8];
	size_t n = 0;
	tclient c;
	int rc;

	imd_token(p, uid, 3600, tok, sizeof(tok));
	if (tc_connect(&c, p->port) != 0) {
		return -1;
	}
	rc = tc_login(&c, tok, convs, 8, &n);
	if (redirected != NULL) {
		*redirected = c.redirects > 0;
	}
	tc_close(&c);
	return rc == 1 ? (int)n : -1;
}

/* A user with no group yet whose login is served where the relay points
 * (a cluster redirects a user homed on the other Connector, and a client
 * following that Redirect would go around the relay). */
static uint64_t
pick_creator(imd_proc *p, uint64_t from)
{
	uint64_t uid;
	bool redirected = true;

	for (uid = from; uid < from + 64; uid++) {
		if (groups_of(p, uid, &redirected) == 0 && !redirected) {
			return uid;
		}
	}
	fail_msg("no user of connector-1 among %llu..%llu",
	         (unsigned long long)from, (unsigned long long)from + 63);
	return 0;
}

static void
create_through_relay(imd_proc *p, enum relay_mode mode, uint64_t from)
{
	uint64_t creator = pick_creator(p, from);
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	char tok[IM_TOKEN_BUF];
	struct relay r;
	struct seen s;
	im_client *cl;
	im_uid other = creator + 1000;
	uint64_t req;
	int err = IM_ERR, i;

	memset(&s, 0, sizeof(s));
	relay_start(&r, p->port, mode);
	imd_token(p, creator, 3600, tok, sizeof(tok));
	o.port = r.port;
	o.token = tok;
	o.device = "test_client_create";
	o.seed = creator;
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 500;
	o.send_timeout_ms = 500; /* RELAY_KEEP: the retry's deadline */
	o.cb.on_reply = on_reply;
	o.cb.on_state = on_state;
	o.payload = &s;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	assert_int_equal(im_client_connect_wait(cl, T), IM_OK);
	assert_int_equal(im_client_create_group(cl, "relay", &other, 1, &req),
	                 IM_OK);
	assert_int_equal(im_client_wait_reply(cl, req, 2 * T, &err), IM_OK);
	if (err != IM_OK || s.kind != IM_CLIENT_REPLY_CREATED) {
		imd_dump_log(p);
	}
	assert_int_equal(err, IM_OK);
	assert_int_equal(s.kind, IM_CLIENT_REPLY_CREATED);
	assert_true(s.group != 0);
	assert_true(s.dedup_id != 0);
	/* The first answer never reached the client: this is the retry's,
	 * which found the group of the first try. */
	assert_int_equal(atomic_load(&r.swallowed), 1);
	assert_true(s.dup);
	assert_int_equal(atomic_load(&r.accepts), mode == RELAY_DROP ? 2 : 1);
	/* Nothing more comes for it. */
	(void)im_client_run_until(cl, 300, NULL, NULL);
	assert_int_equal(s.nreplies, 1);
	im_client_destroy(cl);
	relay_stop(&r);
	/* The store holds one group of this creator, the one answered; so
	 * does the other member's list (they got it once). */
	for (i = 0; i < 2; i++) {
		uint64_t uid = i == 0 ? creator : other;
		char t2[IM_TOKEN_BUF];
		im_ConvInfo convs[8];
		size_t n = 0;
		tclient c;

		imd_token(p, uid, 3600, t2, sizeof(t2));
		assert_int_equal(tc_connect(&c, p->port), 0);
		assert_int_equal(tc_login(&c, t2, convs, 8, &n), 1);
		tc_close(&c);
		assert_int_equal(n, 1);
		assert_int_equal(convs[0].group, s.group);
		assert_string_equal(convs[0].name, "relay");
	}
}

/* The link drops with the answer: reconnect, resume, the same key. */
static void
test_create_answer_lost_with_the_connection_makes_one_group(void **state)
{
	create_through_relay(*state, RELAY_DROP, 101);
}

/* The answer is lost, the link stays: the deadline, the same key. */
static void
test_create_answer_lost_on_a_live_connection_makes_one_group(void **state)
{
	create_through_relay(*state, RELAY_KEEP, 201);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(
	                test_create_answer_lost_with_the_connection_makes_one_group,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_create_answer_lost_on_a_live_connection_makes_one_group,
	                setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
