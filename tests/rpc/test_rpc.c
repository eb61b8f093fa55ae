/*
 * RPC transport over real sockets on 127.0.0.1: one libev loop runs both
 * ends. Every wait is bounded in time (run_until) and every flood in count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fail_alloc.h"
#include "rpc.h"
#include "test_rng.h"

#define WAIT_MS 5000
#define NPIPE 500
#define HELD_MAX 1024

typedef struct held {
	rpc_conn *conn;
	uint64_t req_id;
	uint64_t value;
} held;

typedef struct env {
	struct ev_loop *loop;
	ev_timer tick;
	fail_alloc fa;
	rpc_server *srv;
	rpc_conn *cli;
	/* server side */
	enum { SRV_ECHO, SRV_HOLD, SRV_HOLD_THEN_REVERSE } mode;
	held held[HELD_MAX];
	size_t nheld;
	size_t hold_until;
	uint32_t srv_up, srv_down;
	int srv_down_err;
	char srv_why[256];
	rpc_conn *srv_conn;
	/* client side */
	uint32_t cli_up, cli_down;
	size_t answered, failed, wrong;
	uint32_t max_inflight_seen;
	bool destroy_in_cb;
	test_rng rng;
} env;

static env *E;

static void
on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

/* Run the loop until pred(e) or WAIT_MS passed; returns pred(e). */
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
srv_answer(rpc_conn *c, uint64_t req_id, uint64_t value)
{
	imrpc_Rpc *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	r->which_body = imrpc_Rpc_heartbeat_tag;
	r->body.heartbeat.time_ms = value * 7 + 1;
	assert_int_equal(rpc_conn_reply(c, req_id, r), IM_OK);
	free(r);
}

static void
srv_request(rpc_conn *c, uint64_t req_id, const imrpc_Rpc *m, void *payload)
{
	env *e = payload;
	size_t i;

	assert_int_equal(m->which_body, imrpc_Rpc_heartbeat_tag);
	if (e->mode == SRV_ECHO) {
		srv_answer(c, req_id, m->body.heartbeat.time_ms);
		return;
	}
	assert_true(e->nheld < HELD_MAX);
	e->held[e->nheld].conn = c;
	e->held[e->nheld].req_id = req_id;
	e->held[e->nheld].value = m->body.heartbeat.time_ms;
	e->nheld++;
	if (e->mode == SRV_HOLD_THEN_REVERSE && e->nheld == e->hold_until) {
		/* Answer in a shuffled order: ids, not order, match them. */
		for (i = e->nheld; i > 1; i--) {
			size_t j = (size_t)test_rng_below(&e->rng, i);
			held t = e->held[i - 1];

			e->held[i - 1] = e->held[j];
			e->held[j] = t;
		}
		for (i = 0; i < e->nheld; i++) {
			srv_answer(e->held[i].conn, e->held[i].req_id,
				   e->held[i].value);
		}
		e->nheld = 0;
	}
}

static void
srv_state(rpc_conn *c, bool up, int err, const char *why, void *payload)
{
	env *e = payload;

	if (up) {
		e->srv_up++;
		e->srv_conn = c;
		return;
	}
	e->srv_down++;
	e->srv_down_err = err;
	snprintf(e->srv_why, sizeof(e->srv_why), "%s", why);
	if (e->srv_conn == c) {
		e->srv_conn = NULL;
	}
}

static void
cli_state(rpc_conn *c, bool up, int err, const char *why, void *payload)
{
	env *e = payload;

	(void)c;
	(void)err;
	(void)why;
	if (up) {
		e->cli_up++;
	} else {
		e->cli_down++;
	}
}

static rpc_opts
srv_opts(env *e)
{
	rpc_opts o = RPC_OPTS_INIT;

	o.on_request = srv_request;
	o.on_state = srv_state;
	o.payload = e;
	o.alloc = fail_alloc_allocator(&e->fa);
	return o;
}

static rpc_opts
cli_opts(env *e)
{
	rpc_opts o = RPC_OPTS_INIT;

	o.on_state = cli_state;
	o.payload = e;
	o.backoff_min_ms = 10;
	o.backoff_max_ms = 80;
	o.seed = 42;
	o.alloc = fail_alloc_allocator(&e->fa);
	return o;
}

static int
setup(void **state)
{
	env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	e->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(e->loop);
	/* Wakes ev_run(EVRUN_ONCE) so run_until checks its deadline. */
	ev_timer_init(&e->tick, on_tick, 0.01, 0.01);
	ev_timer_start(e->loop, &e->tick);
	e->rng.s = test_seed();
	E = e;
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	env *e = *state;

	rpc_conn_destroy(e->cli);
	rpc_server_close(e->srv);
	assert_int_equal(e->fa.live, 0);
	ev_timer_stop(e->loop, &e->tick);
	ev_loop_destroy(e->loop);
	free(e);
	return 0;
}

static bool
cli_is_up(env *e)
{
	return rpc_conn_is_up(e->cli) && e->srv_conn != NULL;
}

static bool
cli_is_down(env *e)
{
	return !rpc_conn_is_up(e->cli);
}

static void
start_pair(env *e, const rpc_opts *so, const rpc_opts *co)
{
	assert_int_equal(rpc_server_open(&e->srv, e->loop, "127.0.0.1", 0, 8,
					 so),
			 IM_OK);
	assert_int_equal(rpc_conn_connect(&e->cli, e->loop, "127.0.0.1",
					  rpc_server_port(e->srv), co),
			 IM_OK);
	assert_true(run_until(e, cli_is_up, WAIT_MS));
}

static imrpc_Rpc *
heartbeat(uint64_t value)
{
	static imrpc_Rpc m;

	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_heartbeat_tag;
	m.body.heartbeat.time_ms = value;
	return &m;
}

typedef struct expect {
	uint64_t value;
	int calls;
} expect;

static void
on_reply(rpc_conn *c, int status, const imrpc_Rpc *reply, void *payload)
{
	expect *x = payload;
	env *e = E;
	rpc_stats st;

	x->calls++;
	rpc_conn_get_stats(c, &st);
	if (st.inflight + 1 > e->max_inflight_seen) {
		e->max_inflight_seen = st.inflight + 1;
	}
	if (status != IM_OK) {
		assert_null(reply);
		e->failed++;
	} else if (reply->which_body == imrpc_Rpc_heartbeat_tag &&
		   reply->body.heartbeat.time_ms == x->value * 7 + 1) {
		e->answered++;
	} else {
		e->wrong++;
	}
	if (e->destroy_in_cb) {
		e->destroy_in_cb = false;
		rpc_conn_destroy(c);
		if (c == e->cli) {
			e->cli = NULL;
		}
	}
}

static size_t pipe_target;

static bool
all_done(env *e)
{
	return e->answered + e->failed + e->wrong >= pipe_target;
}

static void
test_rpc_pipelined_calls_are_all_answered_and_matched_by_id(void **state)
{
	env *e = *state;
	rpc_opts so = srv_opts(e), co = cli_opts(e);
	expect *x = calloc(NPIPE, sizeof(*x));
	rpc_stats st;
	size_t i;

	assert_non_null(x);
	e->mode = SRV_HOLD_THEN_REVERSE;
	e->hold_until = NPIPE;
	start_pair(e, &so, &co);
	for (i = 0; i < NPIPE; i++) {
		x[i].value = 1000 + i;
		assert_int_equal(rpc_conn_call(e->cli, heartbeat(x[i].value),
					       0, on_reply, &x[i]),
				 IM_OK);
	}
	rpc_conn_get_stats(e->cli, &st);
	assert_int_equal(st.inflight, NPIPE);
	pipe_target = NPIPE;
	assert_true(run_until(e, all_done, WAIT_MS));
	assert_int_equal(e->answered, NPIPE);
	assert_int_equal(e->wrong, 0);
	assert_int_equal(e->failed, 0);
	for (i = 0; i < NPIPE; i++) {
		assert_int_equal(x[i].calls, 1);
	}
	/* The server held every request until the last arrived: all of them
	 * were in flight on one connection at once. */
	assert_int_equal(e->max_inflight_seen, NPIPE);
	rpc_conn_get_stats(e->cli, &st);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(st.replies, NPIPE);
	assert_int_equal(st.late_replies, 0);
	free(x);
}

static void
test_rpc_call_times_out_when_the_peer_stalls(void **state)
{
	env *e = *state;
	rpc_opts so = srv_opts(e), co = cli_opts(e);
	expect x = {5, 0};
	rpc_stats st;

	e->mode = SRV_HOLD;
	start_pair(e, &so, &co);
	assert_int_equal(rpc_conn_call(e->cli, heartbeat(5), 50, on_reply,
				       &x),
			 IM_OK);
	pipe_target = 1;
	assert_true(run_until(e, all_done, WAIT_MS));
	assert_int_equal(x.calls, 1);
	assert_int_equal(e->failed, 1);
	rpc_conn_get_stats(e->cli, &st);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.inflight, 0);
	assert_true(rpc_conn_is_up(e->cli));
	/* The stalled peer answers at last: the answer is dropped, the
	 * callback is not called a second time. */
	assert_int_equal(e->nheld, 1);
	srv_answer(e->held[0].conn, e->held[0].req_id, 5);
	e->nheld = 0;
	for (int i = 0; i < 200 && st.late_replies == 0; i++) {
		ev_run(e->loop, EVRUN_ONCE);
		rpc_conn_get_stats(e->cli, &st);
	}
	assert_int_equal(st.late_replies, 1);
	assert_int_equal(x.calls, 1);
	assert_int_equal(e->answered, 0);
}

static bool
cli_up_again(env *e)
{
	rpc_stats st;

	rpc_conn_get_stats(e->cli, &st);
	return st.connects >= 2 && rpc_conn_is_up(e->cli) &&
	       e->srv_conn != NULL;
}

static bool
srv_holds_one(env *e)
{
	return e->nheld == 1;
}

static void
test_rpc_reconnects_after_the_peer_restarts(void **state)
{
	env *e = *state;
	rpc_opts so = srv_opts(e), co = cli_opts(e);
	expect x = {9, 0}, y = {10, 0};
	uint16_t port;
	rpc_stats st;

	e->mode = SRV_HOLD;
	start_pair(e, &so, &co);
	port = rpc_server_port(e->srv);
	assert_int_equal(rpc_conn_call(e->cli, heartbeat(9), 10000, on_reply,
				       &x),
			 IM_OK);
	assert_true(run_until(e, srv_holds_one, WAIT_MS));
	/* The peer goes away with our call in flight: the call fails now,
	 * not after its 10 s timeout, and new calls fail fast. */
	rpc_server_close(e->srv);
	e->srv = NULL;
	e->srv_conn = NULL;
	e->nheld = 0;
	assert_true(run_until(e, cli_is_down, WAIT_MS));
	assert_int_equal(x.calls, 1);
	assert_int_equal(e->failed, 1);
	assert_int_equal(e->cli_down, 1);
	assert_int_equal(rpc_conn_call(e->cli, heartbeat(1), 0, on_reply, &y),
			 IM_EUNAVAIL);
	assert_int_equal(y.calls, 0);
	/* Let a few reconnects fail against the closed port. */
	ev_tstamp until = ev_time() + 0.1;
	while (ev_time() < until) {
		ev_run(e->loop, EVRUN_ONCE);
	}
	assert_false(rpc_conn_is_up(e->cli));
	assert_int_equal(rpc_server_open(&e->srv, e->loop, "127.0.0.1", port, 8,
					 &so),
			 IM_OK);
	assert_true(run_until(e, cli_up_again, WAIT_MS));
	e->mode = SRV_ECHO;
	assert_int_equal(rpc_conn_call(e->cli, heartbeat(10), 0, on_reply, &y),
			 IM_OK);
	pipe_target = 2;
	assert_true(run_until(e, all_done, WAIT_MS));
	assert_int_equal(y.calls, 1);
	assert_int_equal(e->answered, 1);
	rpc_conn_get_stats(e->cli, &st);
	assert_int_equal(st.connects, 2);
	assert_int_equal(e->cli_up, 2);
}

static void
test_rpc_backoff_doubles_caps_and_jitters(void **state)
{
	test_rng r;
	uint32_t a, i;

	(void)state;
	r.s = test_seed();
	for (i = 0; i < 1000; i++) {
		uint64_t d = 50;

		for (a = 0; a < 40; a++) {
			uint32_t got = rpc_backoff_ms(a, 50, 5000,
						      test_rng_next(&r));

			assert_true(got >= d / 2 && got <= d);
			d = d * 2 > 5000 ? 5000 : d * 2;
		}
	}
	/* Not constant: jitter spreads the retries of many nodes. */
	assert_int_not_equal(rpc_backoff_ms(3, 50, 5000, 1),
			     rpc_backoff_ms(3, 50, 5000, 123));
}

/* A listening socket that accepts but never reads: a stalled peer. */
static int
stalled_listener(uint16_t *port_out)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), small = 4096;

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port_out = ntohs(sa.sin_port);
	return fd;
}

static bool
cli_only_up(env *e)
{
	return rpc_conn_is_up(e->cli);
}

static imrpc_Rpc *
bulky(void)
{
	static imrpc_Rpc m;

	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_forward_tag;
	m.body.forward.ops_count = 1;
	m.body.forward.ops[0].kind = 1;
	m.body.forward.ops[0].body.size = 900;
	memset(m.body.forward.ops[0].body.bytes, 'x', 900);
	return &m;
}

static void
test_rpc_backpressure_returns_full_and_memory_stays_bounded(void **state)
{
	env *e = *state;
	rpc_opts co = cli_opts(e);
	unsigned long calls_after_create;
	uint64_t sent = 0, full = 0;
	uint32_t round, zero_rounds = 0;
	expect x[64];
	rpc_stats st;
	uint16_t port;
	int lfd = stalled_listener(&port), afd;
	size_t i;

	co.frame_max = 1024;
	co.out_max = 4096;
	co.max_inflight = 16;
	assert_int_equal(rpc_conn_connect(&e->cli, e->loop, "127.0.0.1", port,
					  &co),
			 IM_OK);
	assert_true(run_until(e, cli_only_up, WAIT_MS));
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	calls_after_create = e->fa.calls;

	/* In-flight bound: the 17th call is refused, nothing is queued. */
	memset(x, 0, sizeof(x));
	for (i = 0; i < 16; i++) {
		assert_int_equal(rpc_conn_call(e->cli, heartbeat(i), 60000,
					       on_reply, &x[i]),
				 IM_OK);
	}
	rpc_conn_get_stats(e->cli, &st);
	uint32_t queued = st.out_bytes;
	assert_int_equal(rpc_conn_call(e->cli, heartbeat(99), 60000,
				       on_reply, &x[16]),
			 IM_EFULL);
	rpc_conn_get_stats(e->cli, &st);
	assert_int_equal(st.out_bytes, queued);
	assert_int_equal(st.inflight, 16);

	/* Output bound: flood one-way frames of ~920 bytes at a peer that
	 * never reads. Whatever the kernel buffers hold, we hold at most
	 * out_max and never allocate. */
	for (round = 0; round < 50000 && zero_rounds < 20; round++) {
		uint64_t before = sent;

		while (rpc_conn_send(e->cli, bulky()) == IM_OK) {
			sent++;
			rpc_conn_get_stats(e->cli, &st);
			assert_true(st.out_bytes <= co.out_max);
		}
		full++;
		zero_rounds = sent == before ? zero_rounds + 1 : 0;
		ev_run(e->loop, EVRUN_NOWAIT);
	}
	/* The peer's kernel buffers filled up: rounds in a row with nothing
	 * accepted, every attempt refused at once. */
	assert_int_equal(zero_rounds, 20);
	rpc_conn_get_stats(e->cli, &st);
	assert_true(st.full >= full);
	assert_true(st.out_bytes <= co.out_max);
	assert_true(st.out_bytes + 1024 > co.out_max);
	assert_int_equal(e->fa.calls, calls_after_create);
	assert_true(rpc_conn_is_up(e->cli));
	print_message("# backpressure: %llu frames accepted before the stalled "
		      "peer's kernel buffers filled, %llu refusals\n",
		      (unsigned long long)sent, (unsigned long long)st.full);
	/* Destroy completes the 16 calls in flight exactly once. */
	rpc_conn_destroy(e->cli);
	e->cli = NULL;
	for (i = 0; i < 16; i++) {
		assert_int_equal(x[i].calls, 1);
	}
	assert_int_equal(x[16].calls, 0);
	assert_int_equal(e->failed, 16);
	close(afd);
	close(lfd);
}

static int
raw_connect(uint16_t port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(port);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static bool
srv_has_conn(env *e)
{
	return e->srv_conn != NULL;
}

static bool
srv_conn_gone(env *e)
{
	return e->srv_down > 0 && rpc_server_conns(e->srv) == 0;
}

/* The raw peer sees the connection closed (EOF or reset) in time. */
static void
assert_raw_closed(env *e, int fd)
{
	char buf[64];
	ssize_t n = -1;
	int i;

	for (i = 0; i < 500; i++) {
		struct pollfd p = {fd, POLLIN, 0};

		ev_run(e->loop, EVRUN_NOWAIT);
		if (poll(&p, 1, 10) == 1) {
			n = read(fd, buf, sizeof(buf));
			break;
		}
	}
	assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
	close(fd);
}

static void
bad_peer_case(env *e, const uint8_t *bytes, size_t len, int want_err,
	      const char *want_why)
{
	rpc_opts so = srv_opts(e);
	unsigned long calls_before;
	int fd;

	e->mode = SRV_ECHO;
	assert_int_equal(rpc_server_open(&e->srv, e->loop, "127.0.0.1", 0, 8,
					 &so),
			 IM_OK);
	fd = raw_connect(rpc_server_port(e->srv));
	assert_true(run_until(e, srv_has_conn, WAIT_MS));
	calls_before = e->fa.calls;
	assert_int_equal(write(fd, bytes, len), (ssize_t)len);
	assert_true(run_until(e, srv_conn_gone, WAIT_MS));
	assert_int_equal(e->srv_down_err, want_err);
	assert_non_null(strstr(e->srv_why, want_why));
	print_message("# closed with: %s\n", e->srv_why);
	/* Refused without allocating anything for it. */
	assert_int_equal(e->fa.calls, calls_before);
	assert_raw_closed(e, fd);
}

static void
test_rpc_oversize_frame_is_rejected_before_allocation(void **state)
{
	/* Only the 4-byte prefix is sent: the refusal cannot have waited
	 * for (or buffered) the announced megabyte. */
	const uint8_t prefix[4] = {0x00, 0x10, 0x00, 0x00};

	bad_peer_case(*state, prefix, sizeof(prefix), IM_ETOOBIG, "exceeds");
}

static void
test_rpc_garbage_bytes_close_the_connection_with_a_clear_error(void **state)
{
	const uint8_t junk[] = {0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff,
				0xff, 0xff, 0xff, 0xff};

	bad_peer_case(*state, junk, sizeof(junk), IM_EPROTO,
		      "does not decode");
}

static void
test_rpc_empty_frame_closes_the_connection(void **state)
{
	const uint8_t empty[] = {0, 0, 0, 0};

	bad_peer_case(*state, empty, sizeof(empty), IM_EPROTO, "empty frame");
}

static void
test_rpc_batch_over_its_bound_is_refused_at_decode(void **state)
{
	/* A Forward with 13 ops (rpc.options allows 12): field 12, length
	 * 26, then 13 empty ops (field 1, length 0). */
	uint8_t frame[4 + 28] = {0, 0, 0, 28, 0x62, 26};
	size_t i;

	for (i = 0; i < 13; i++) {
		frame[6 + 2 * i] = 0x0a;
		frame[7 + 2 * i] = 0x00;
	}
	bad_peer_case(*state, frame, sizeof(frame), IM_EPROTO,
		      "does not decode");
}

static void
test_rpc_connection_is_symmetric_either_side_may_call(void **state)
{
	env *e = *state;
	rpc_opts so = srv_opts(e), co = cli_opts(e);
	expect x = {3, 0};

	/* The client answers too: it echoes like the server does. */
	co.on_request = srv_request;
	e->mode = SRV_ECHO;
	start_pair(e, &so, &co);
	assert_int_equal(rpc_conn_call(e->srv_conn, heartbeat(3), 0, on_reply,
				       &x),
			 IM_OK);
	pipe_target = 1;
	assert_true(run_until(e, all_done, WAIT_MS));
	assert_int_equal(x.calls, 1);
	assert_int_equal(e->answered, 1);
}

static void
test_rpc_request_without_handler_is_answered_bad_request(void **state)
{
	env *e = *state;
	rpc_opts so = srv_opts(e), co = cli_opts(e);
	expect x = {1, 0};

	so.on_request = NULL;
	start_pair(e, &so, &co);
	assert_int_equal(rpc_conn_call(e->cli, heartbeat(1), 0, on_reply, &x),
			 IM_OK);
	pipe_target = 1;
	assert_true(run_until(e, all_done, WAIT_MS));
	/* Answered (not a heartbeat echo): counted as "wrong" here. */
	assert_int_equal(e->wrong, 1);
	assert_int_equal(x.calls, 1);
}

static void
test_rpc_destroy_inside_a_callback_is_safe(void **state)
{
	env *e = *state;
	rpc_opts so = srv_opts(e), co = cli_opts(e);
	expect x[8];
	size_t i;

	memset(x, 0, sizeof(x));
	e->mode = SRV_ECHO;
	start_pair(e, &so, &co);
	for (i = 0; i < 8; i++) {
		x[i].value = i;
		assert_int_equal(rpc_conn_call(e->cli, heartbeat(i), 0,
					       on_reply, &x[i]),
				 IM_OK);
	}
	e->destroy_in_cb = true;
	pipe_target = 8;
	assert_true(run_until(e, all_done, WAIT_MS));
	/* The first answer destroyed the connection: the other 7 calls
	 * failed inside that destroy, each exactly once. */
	assert_null(e->cli);
	assert_int_equal(e->answered, 1);
	assert_int_equal(e->failed, 7);
	for (i = 0; i < 8; i++) {
		assert_int_equal(x[i].calls, 1);
	}
}

static void
test_rpc_bad_arguments_are_refused(void **state)
{
	env *e = *state;
	rpc_opts co = cli_opts(e), so, bad;
	rpc_conn *c = NULL;
	rpc_server *s = NULL;
	expect x = {0, 0};
	imrpc_Rpc *big;

	assert_int_equal(rpc_conn_connect(NULL, e->loop, "127.0.0.1", 1, &co),
			 IM_EINVAL);
	assert_int_equal(rpc_conn_connect(&c, NULL, "127.0.0.1", 1, &co),
			 IM_EINVAL);
	assert_int_equal(rpc_conn_connect(&c, e->loop, "localhost", 1, &co),
			 IM_EINVAL);
	assert_int_equal(rpc_conn_connect(&c, e->loop, "300.0.0.1", 1, &co),
			 IM_EINVAL);
	assert_int_equal(rpc_conn_connect(&c, e->loop, "127.0.0.1", 0, &co),
			 IM_EINVAL);
	assert_int_equal(rpc_conn_connect(&c, e->loop, "127.0.0.1", 1, NULL),
			 IM_EINVAL);
	bad = co;
	bad.version = 0;
	assert_int_equal(rpc_conn_connect(&c, e->loop, "127.0.0.1", 1, &bad),
			 IM_EINVAL);
	bad = co;
	bad.out_max = bad.frame_max;
	assert_int_equal(rpc_conn_connect(&c, e->loop, "127.0.0.1", 1, &bad),
			 IM_EINVAL);
	bad = co;
	bad.max_inflight = 0;
	assert_int_equal(rpc_conn_connect(&c, e->loop, "127.0.0.1", 1, &bad),
			 IM_EINVAL);
	bad = co;
	bad.frame_max = RPC_FRAME_MAX + 1;
	assert_int_equal(rpc_server_open(&s, e->loop, "127.0.0.1", 0, 1, &bad),
			 IM_EINVAL);
	assert_int_equal(rpc_server_open(&s, e->loop, "127.0.0.1", 0, 0, &co),
			 IM_EINVAL);
	assert_int_equal(rpc_server_open(&s, e->loop, "nope", 0, 1, &co),
			 IM_EINVAL);
	assert_null(c);
	assert_null(s);
	assert_int_equal(e->fa.live, 0);

	/* Not connected yet (nothing listens on the port): fail fast. */
	{
		uint16_t port;
		int lfd = stalled_listener(&port);

		close(lfd);
		assert_int_equal(rpc_conn_connect(&c, e->loop, "127.0.0.1",
						  port, &co),
				 IM_OK);
		assert_int_equal(rpc_conn_call(c, heartbeat(1), 0, on_reply,
					       &x),
				 IM_EUNAVAIL);
		assert_int_equal(rpc_conn_send(c, heartbeat(1)), IM_EUNAVAIL);
		rpc_conn_destroy(c);
		assert_int_equal(x.calls, 0);
	}

	/* Up: NULLs, req_id 0, a frame over the limit, an empty message. */
	co.frame_max = 1024;
	co.out_max = 8192;
	so = srv_opts(e);
	start_pair(e, &so, &co);
	assert_int_equal(rpc_conn_call(e->cli, NULL, 0, on_reply, &x),
			 IM_EINVAL);
	assert_int_equal(rpc_conn_call(e->cli, heartbeat(1), 0, NULL, &x),
			 IM_EINVAL);
	assert_int_equal(rpc_conn_reply(e->cli, 0, heartbeat(1)), IM_EINVAL);
	big = bulky();
	big->body.forward.ops[0].body.size = 2000;
	assert_int_equal(rpc_conn_call(e->cli, big, 0, on_reply, &x),
			 IM_ETOOBIG);
	big->which_body = 0;
	assert_int_equal(rpc_conn_send(e->cli, big), IM_EINVAL);
	assert_int_equal(x.calls, 0);
	rpc_conn_destroy(NULL);
	rpc_server_close(NULL);
	/* Accessors take NULL without harm. */
	assert_false(rpc_conn_is_up(NULL));
	assert_non_null(rpc_conn_errmsg(NULL));
	assert_non_null(rpc_conn_peer(NULL));
	assert_null(rpc_conn_user(NULL));
	rpc_conn_set_user(NULL, e);
	rpc_conn_get_stats(NULL, NULL);
	assert_int_equal(rpc_server_port(NULL), 0);
	assert_int_equal(rpc_server_conns(NULL), 0);
	rpc_conn_set_user(e->cli, e);
	assert_ptr_equal(rpc_conn_user(e->cli), e);
	assert_non_null(strstr(rpc_conn_peer(e->cli), "127.0.0.1:"));
	assert_int_equal(rpc_server_conns(e->srv), 1);

	/* The port is taken now. */
	assert_int_equal(rpc_server_open(&s, e->loop, "127.0.0.1",
					 rpc_server_port(e->srv), 1, &co),
			 IM_ERR);
}

static void
test_rpc_allocation_failures_leave_nothing_behind(void **state)
{
	env *e = *state;
	rpc_opts co = cli_opts(e);
	rpc_conn *c = NULL;
	rpc_server *s = NULL;
	unsigned long n;
	int rc = IM_ENOMEM;

	for (n = 1; rc == IM_ENOMEM && n < 100; n++) {
		e->fa.fail_at = e->fa.calls + n;
		rc = rpc_server_open(&s, e->loop, "127.0.0.1", 0, 1, &co);
		if (rc != IM_OK) {
			assert_int_equal(rc, IM_ENOMEM);
			assert_int_equal(e->fa.live, 0);
		}
	}
	assert_int_equal(rc, IM_OK);
	e->fa.fail_at = 0;
	rc = IM_ENOMEM;
	for (n = 1; rc == IM_ENOMEM && n < 100; n++) {
		long live = e->fa.live;

		e->fa.fail_at = e->fa.calls + n;
		rc = rpc_conn_connect(&c, e->loop, "127.0.0.1",
				      rpc_server_port(s), &co);
		if (rc != IM_OK) {
			assert_int_equal(rc, IM_ENOMEM);
			assert_int_equal(e->fa.live, live);
		}
	}
	assert_int_equal(rc, IM_OK);
	assert_true(n > 2);
	e->fa.fail_at = 0;
	rpc_conn_destroy(c);
	rpc_server_close(s);
	assert_int_equal(e->fa.live, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_rpc_pipelined_calls_are_all_answered_and_matched_by_id),
		T(test_rpc_call_times_out_when_the_peer_stalls),
		T(test_rpc_reconnects_after_the_peer_restarts),
		T(test_rpc_backoff_doubles_caps_and_jitters),
		T(test_rpc_backpressure_returns_full_and_memory_stays_bounded),
		T(test_rpc_oversize_frame_is_rejected_before_allocation),
		T(test_rpc_garbage_bytes_close_the_connection_with_a_clear_error),
		T(test_rpc_empty_frame_closes_the_connection),
		T(test_rpc_batch_over_its_bound_is_refused_at_decode),
		T(test_rpc_connection_is_symmetric_either_side_may_call),
		T(test_rpc_request_without_handler_is_answered_bad_request),
		T(test_rpc_destroy_inside_a_callback_is_safe),
		T(test_rpc_bad_arguments_are_refused),
		T(test_rpc_allocation_failures_leave_nothing_behind),
#undef T
	};

	return cmocka_run_group_tests_name("rpc", tests, NULL, NULL);
}
