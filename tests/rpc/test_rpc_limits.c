/*
 * What an accepted RPC connection must do to keep its place
 * (rpc_server_limits, issue 13): be admitted in time, finish the frames it
 * begins, read what it is sent, and not crowd out others, neither from one
 * address nor, when the server is full, by being the oldest that has not
 * been admitted. Real sockets on 127.0.0.0/8 (idle peers bind 127.0.0.2
 * and up), one libev loop; every wait is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc.h"

#define WAIT_MS 3000

typedef struct env {
	struct ev_loop *loop;
	ev_timer tick;
	rpc_server *srv;
	rpc_conn *cli;      /* a well-behaved peer: asks, is admitted */
	rpc_conn *last_up;  /* the server side of the newest connection */
	uint32_t srv_down;
	int down_err;
	char why[256];
	uint32_t answers;
	bool answer;        /* the server answers (and admits) callers */
} env;

static void
on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

static bool
run_until(env *e, bool (*pred)(env *), uint32_t ms)
{
	ev_tstamp end = ev_time() + (double)ms / 1000.0;

	while (!pred(e) && ev_time() < end) {
		ev_run(e->loop, EVRUN_ONCE);
	}
	return pred(e);
}

static void
run_for(env *e, uint32_t ms)
{
	ev_tstamp end = ev_time() + (double)ms / 1000.0;

	while (ev_time() < end) {
		ev_run(e->loop, EVRUN_ONCE);
	}
}

static imrpc_Rpc *
heartbeat(uint64_t v)
{
	static imrpc_Rpc m;

	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_heartbeat_tag;
	m.body.heartbeat.time_ms = v;
	return &m;
}

/* The server admits whoever asks something, as the Router does on Hello. */
static void
srv_request(rpc_conn *c, uint64_t req_id, const imrpc_Rpc *m, void *payload)
{
	static imrpc_Rpc r; /* large: not on the stack */

	(void)payload;
	rpc_conn_admit(c);
	if (req_id != 0) {
		r = *m;
		assert_int_equal(rpc_conn_reply(c, req_id, &r), IM_OK);
	}
}

static void
srv_state(rpc_conn *c, bool up, int err, const char *why, void *payload)
{
	env *e = payload;

	if (up) {
		e->last_up = c;
		return;
	}
	if (e->last_up == c) {
		e->last_up = NULL;
	}
	e->srv_down++;
	e->down_err = err;
	snprintf(e->why, sizeof(e->why), "%s", why);
	print_message("# closed: %s\n", why);
}

static void
on_answer(rpc_conn *c, int status, const imrpc_Rpc *reply, void *payload)
{
	env *e = payload;

	(void)c;
	(void)reply;
	if (status == IM_OK) {
		e->answers++;
	}
}

static int
setup(void **state)
{
	env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	e->loop = ev_loop_new(EVFLAG_AUTO);
	ev_timer_init(&e->tick, on_tick, 0.01, 0.01);
	ev_timer_start(e->loop, &e->tick);
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	env *e = *state;

	rpc_conn_destroy(e->cli);
	rpc_server_close(e->srv);
	ev_timer_stop(e->loop, &e->tick);
	ev_loop_destroy(e->loop);
	free(e);
	return 0;
}

static void
open_server(env *e, uint32_t max_conns, uint32_t admit_ms, uint32_t frame_ms,
	    uint32_t per_peer_max)
{
	rpc_opts so = RPC_OPTS_INIT;
	rpc_server_limits lim = {admit_ms, frame_ms, per_peer_max};

	so.on_request = srv_request;
	so.on_state = srv_state;
	so.payload = e;
	assert_int_equal(rpc_server_open(&e->srv, e->loop, "127.0.0.1", 0,
					 max_conns, &so),
			 IM_OK);
	rpc_server_set_limits(e->srv, &lim);
}

/* A TCP connection from 127.0.0.<host> that the server has accepted. */
static int
raw_connect(env *e, uint8_t host)
{
	struct sockaddr_in sa;
	uint32_t before = rpc_server_conns(e->srv);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int small = 4096;
	int i;

	assert_true(fd >= 0);
	/* A small window: a peer that does not read fills it soon. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(0x7f000000u | host);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(rpc_server_port(e->srv));
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	/* Let the server see it (accepted, or refused: conns unchanged). */
	for (i = 0; i < 20 && rpc_server_conns(e->srv) == before; i++) {
		ev_run(e->loop, EVRUN_ONCE);
	}
	return fd;
}

/* Has the server closed fd (EOF or reset) by now, without waiting? */
static bool
raw_closed_now(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	char buf[64];
	ssize_t n;

	if (poll(&p, 1, 0) != 1) {
		return false;
	}
	n = recv(fd, buf, sizeof(buf), MSG_PEEK);
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

static int watched_fd;

static bool
watched_closed(env *e)
{
	(void)e;
	return raw_closed_now(watched_fd);
}

static bool
cli_answered(env *e)
{
	return e->answers > 0;
}

/* A real peer connects and is admitted by its first call. */
static void
connect_admitted_client(env *e)
{
	rpc_opts co = RPC_OPTS_INIT;

	co.backoff_min_ms = 10;
	co.backoff_max_ms = 50;
	assert_int_equal(rpc_conn_connect(&e->cli, e->loop, "127.0.0.1",
					  rpc_server_port(e->srv), &co),
			 IM_OK);
	e->answers = 0;
	for (int i = 0; i < 300 && e->answers == 0; i++) {
		if (rpc_conn_is_up(e->cli) &&
		    rpc_conn_call(e->cli, heartbeat(1), 0, on_answer, e) ==
			    IM_OK) {
			break;
		}
		ev_run(e->loop, EVRUN_ONCE);
	}
	assert_true(run_until(e, cli_answered, WAIT_MS));
}

static void
test_rpc_idle_peers_are_closed_at_the_admit_deadline(void **state)
{
	env *e = *state;
	rpc_server_stats st;
	ev_tstamp t0;
	int fds[3], i;

	open_server(e, 8, 200, 0, 0);
	for (i = 0; i < 3; i++) {
		fds[i] = raw_connect(e, 2);
	}
	connect_admitted_client(e);
	assert_int_equal(rpc_server_conns(e->srv), 4);
	t0 = ev_time();
	for (i = 0; i < 3; i++) {
		watched_fd = fds[i];
		assert_true(run_until(e, watched_closed, WAIT_MS));
		close(fds[i]);
	}
	/* Closed at the deadline, not before and not much after. */
	assert_true(ev_time() - t0 < 1.0);
	assert_non_null(strstr(e->why, "not admitted"));
	assert_int_equal(e->down_err, IM_EUNAVAIL);
	rpc_server_get_stats(e->srv, &st);
	assert_int_equal(st.admit_timeouts, 3);
	/* The admitted one stays past the deadline and is served. */
	run_for(e, 300);
	assert_true(rpc_conn_is_up(e->cli));
	assert_int_equal(rpc_server_conns(e->srv), 1);
	e->answers = 0;
	assert_int_equal(rpc_conn_call(e->cli, heartbeat(2), 0, on_answer, e),
			 IM_OK);
	assert_true(run_until(e, cli_answered, WAIT_MS));
}

static void
test_rpc_a_full_server_evicts_its_oldest_unadmitted_connection(void **state)
{
	env *e = *state;
	rpc_server_stats st;
	int fds[4], extra, i;

	/* No admit deadline worth the name: only the bound frees room. */
	open_server(e, 4, 60000, 0, 0);
	for (i = 0; i < 4; i++) {
		fds[i] = raw_connect(e, (uint8_t)(2 + i));
	}
	assert_int_equal(rpc_server_conns(e->srv), 4);
	/* A real peer still gets in: the oldest idle one makes room. */
	connect_admitted_client(e);
	watched_fd = fds[0];
	assert_true(run_until(e, watched_closed, WAIT_MS));
	for (i = 1; i < 4; i++) {
		assert_false(raw_closed_now(fds[i]));
	}
	assert_non_null(strstr(e->why, "server is full"));
	rpc_server_get_stats(e->srv, &st);
	assert_int_equal(st.evicted, 1);
	assert_int_equal(rpc_server_conns(e->srv), 4);
	/* Another idle one takes the next oldest idle place, never the
	 * admitted peer's. */
	extra = raw_connect(e, 9);
	watched_fd = fds[1];
	assert_true(run_until(e, watched_closed, WAIT_MS));
	assert_true(rpc_conn_is_up(e->cli));
	for (i = 0; i < 4; i++) {
		close(fds[i]);
	}
	close(extra);
}

static void
test_rpc_a_full_server_of_admitted_peers_refuses_newcomers(void **state)
{
	env *e = *state;
	rpc_server_stats st;
	int fd;

	open_server(e, 1, 60000, 0, 0);
	connect_admitted_client(e);
	fd = raw_connect(e, 2);
	watched_fd = fd;
	assert_true(run_until(e, watched_closed, WAIT_MS));
	close(fd);
	rpc_server_get_stats(e->srv, &st);
	assert_int_equal(st.refused, 1);
	assert_int_equal(st.evicted, 0);
	assert_true(rpc_conn_is_up(e->cli));
}

static void
test_rpc_connections_per_peer_address_are_bounded(void **state)
{
	env *e = *state;
	rpc_server_stats st;
	int a, b, c, other;

	open_server(e, 16, 0, 0, 2);
	a = raw_connect(e, 2);
	b = raw_connect(e, 2);
	c = raw_connect(e, 2);
	other = raw_connect(e, 3);
	watched_fd = c;
	assert_true(run_until(e, watched_closed, WAIT_MS));
	run_for(e, 100);
	assert_false(raw_closed_now(a));
	assert_false(raw_closed_now(b));
	assert_false(raw_closed_now(other));
	assert_int_equal(rpc_server_conns(e->srv), 3);
	rpc_server_get_stats(e->srv, &st);
	assert_int_equal(st.refused, 1);
	close(a);
	close(b);
	close(c);
	close(other);
}

static void
test_rpc_a_frame_begun_must_arrive_whole_in_time(void **state)
{
	env *e = *state;
	/* A 10-byte frame announced, 2 bytes of it sent. */
	const uint8_t part[] = {0, 0, 0, 10, 0x08, 0x01};
	rpc_server_stats st;
	ev_tstamp t0;
	int fd, i;

	open_server(e, 8, 0, 200, 0);
	/* A busy peer sending whole frames for longer than frame_ms is not
	 * closed: the deadline is per frame. */
	connect_admitted_client(e);
	for (i = 0; i < 10; i++) {
		assert_int_equal(rpc_conn_call(e->cli, heartbeat(3), 0,
					       on_answer, e),
				 IM_OK);
		run_for(e, 50);
	}
	assert_true(rpc_conn_is_up(e->cli));
	fd = raw_connect(e, 2);
	assert_int_equal(write(fd, part, sizeof(part)), (ssize_t)sizeof(part));
	t0 = ev_time();
	watched_fd = fd;
	assert_true(run_until(e, watched_closed, WAIT_MS));
	assert_true(ev_time() - t0 >= 0.15);
	assert_non_null(strstr(e->why, "did not arrive whole"));
	close(fd);
	rpc_server_get_stats(e->srv, &st);
	assert_int_equal(st.frame_timeouts, 1);
	assert_true(rpc_conn_is_up(e->cli));
}

static bool
srv_lost_one(env *e)
{
	return e->srv_down > 0;
}

static void
test_rpc_a_peer_that_stops_reading_is_closed(void **state)
{
	env *e = *state;
	rpc_server_stats st;
	rpc_conn *c;
	ev_tstamp end;
	int fd;

	open_server(e, 8, 0, 200, 0);
	fd = raw_connect(e, 2);
	c = e->last_up;
	assert_non_null(c);
	/* Send until the queue is full, again whenever it drains, until the
	 * peer's (small) window and the kernel's buffers are full. */
	end = ev_time() + 3.0;
	while (e->srv_down == 0 && ev_time() < end) {
		int n;

		for (n = 0; n < 4096; n++) {
			if (rpc_conn_send(c, heartbeat(4)) != IM_OK) {
				break;
			}
		}
		ev_run(e->loop, EVRUN_NOWAIT);
		if (e->srv_down == 0) {
			ev_run(e->loop, EVRUN_ONCE);
		}
	}
	assert_true(run_until(e, srv_lost_one, WAIT_MS));
	assert_non_null(strstr(e->why, "read none"));
	rpc_server_get_stats(e->srv, &st);
	assert_int_equal(st.frame_timeouts, 1);
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_rpc_idle_peers_are_closed_at_the_admit_deadline),
		T(test_rpc_a_full_server_evicts_its_oldest_unadmitted_connection),
		T(test_rpc_a_full_server_of_admitted_peers_refuses_newcomers),
		T(test_rpc_connections_per_peer_address_are_bounded),
		T(test_rpc_a_frame_begun_must_arrive_whole_in_time),
		T(test_rpc_a_peer_that_stops_reading_is_closed),
#undef T
	};

	return cmocka_run_group_tests_name("rpc_limits", tests, NULL, NULL);
}
