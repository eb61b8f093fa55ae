/*
 * Membership over a sqlite store with a fake clock (ticks are driven by
 * hand: no timing), and peer connections over real loopback sockets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "faulty_store.h"
#include "im/store.h"
#include "member.h"

#define WAIT_MS 5000

typedef struct env {
	struct ev_loop *loop;
	ev_timer tick;
	im_store *st;
	uint64_t now;
	int changes;
} env;

static uint64_t
fake_now(void *clock)
{
	return ((env *)clock)->now;
}

static void
on_change(cl_member *m, void *payload)
{
	(void)m;
	((env *)payload)->changes++;
}

static void
noop(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop, (void)w, (void)revents;
}

static int
setup(void **state)
{
	env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	assert_int_equal(im_store_sqlite_open(&e->st, ":memory:", NULL, NULL,
					      0),
			 IM_OK);
	e->loop = ev_loop_new(EVFLAG_AUTO);
	ev_timer_init(&e->tick, noop, 0.01, 0.01);
	ev_timer_start(e->loop, &e->tick);
	e->now = 1000000;
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	env *e = *state;

	im_store_close(e->st);
	ev_timer_stop(e->loop, &e->tick);
	ev_loop_destroy(e->loop);
	free(e);
	return 0;
}

static cl_member_opts
opts_of(env *e)
{
	cl_member_opts o = CL_MEMBER_OPTS_INIT;

	/* The timelines below are written for these periods (not the
	 * defaults, which are tuned for failover speed). */
	o.heartbeat_ms = 1000;
	o.refresh_ms = 1000;
	o.dead_after_ms = 3000;
	o.timers = false;
	o.now_ms = fake_now;
	o.clock = e;
	o.on_change = on_change;
	o.payload = e;
	return o;
}

static cl_member *
join(env *e, im_store *st, const char *name, im_node_role role,
     const char *addr)
{
	cl_member_opts o = opts_of(e);
	cl_member *m = NULL;

	assert_int_equal(cl_member_create(&m, e->loop, st, name, role, addr,
					  &o),
			 IM_OK);
	return m;
}

/* A node paused past the timeout (SIGSTOP, cut off) with reincarnate on
 * comes back as a new incarnation at its next heartbeat and says so
 * through on_change; one that kept beating, or has it off, does not. */
static void
test_member_silent_too_long_comes_back_anew(void **state)
{
	env *e = *state;
	cl_member_opts o = opts_of(e);
	cl_member *z = NULL, *k = NULL;
	const cl_node *n;
	int before;

	o.reincarnate = true;
	assert_int_equal(cl_member_create(&z, e->loop, e->st, "chatter-z",
					  IM_NODE_CHATTER, "-", &o),
			 IM_OK);
	o.reincarnate = false;
	assert_int_equal(cl_member_create(&k, e->loop, e->st, "chatter-k",
					  IM_NODE_CHATTER, "-", &o),
			 IM_OK);
	assert_int_equal(cl_member_incarnation(z), 1);
	/* beating on time: the same node */
	e->now += 1000;
	assert_int_equal(cl_member_tick(z), IM_OK);
	assert_int_equal(cl_member_incarnation(z), 1);
	/* paused for longer than dead_after (3 s here) */
	e->now += 3001;
	before = e->changes;
	assert_int_equal(cl_member_tick(z), IM_OK);
	assert_int_equal(cl_member_incarnation(z), 2);
	assert_true(e->changes > before);
	n = cl_member_find(z, "chatter-z");
	assert_non_null(n);
	assert_int_equal(n->incarnation, 2);
	assert_true(n->alive);
	/* without the option the same silence keeps the incarnation */
	assert_int_equal(cl_member_tick(k), IM_OK);
	assert_int_equal(cl_member_incarnation(k), 1);
	cl_member_destroy(z);
	cl_member_destroy(k);
}

/* A muted node (no Router serves it, node_role.c) stops heartbeating
 * while it goes on ticking: the others see it die by heartbeat age. Its
 * row is untouched; unmuted past the timeout it comes back anew. */
static void
test_member_muted_stops_heartbeating_and_comes_back_anew(void **state)
{
	env *e = *state;
	cl_member_opts o = opts_of(e);
	cl_member *z = NULL, *w = NULL;
	const cl_node *n;
	int i;

	o.reincarnate = true;
	assert_int_equal(cl_member_create(&z, e->loop, e->st, "chatter-z",
					  IM_NODE_CHATTER, "-", &o),
			 IM_OK);
	w = join(e, e->st, "chatter-w", IM_NODE_CHATTER, "-");
	cl_member_mute(z, true);
	for (i = 0; i < 4; i++) {
		e->now += 1000;
		assert_int_equal(cl_member_tick(z), IM_OK);
		assert_int_equal(cl_member_tick(w), IM_OK);
	}
	/* 4 s without a heartbeat of z's: dead for w (dead_after 3 s) */
	n = cl_member_find(w, "chatter-z");
	assert_non_null(n);
	assert_false(cl_member_fresh(w, n));
	assert_int_equal(n->heartbeat_ms, 1000000);
	assert_int_equal(cl_member_incarnation(z), 1);
	cl_member_mute(z, false);
	e->now += 1000;
	assert_int_equal(cl_member_tick(z), IM_OK);
	assert_int_equal(cl_member_incarnation(z), 2);
	assert_int_equal(cl_member_tick(w), IM_OK);
	n = cl_member_find(w, "chatter-z");
	assert_non_null(n);
	assert_true(cl_member_fresh(w, n));
	cl_member_destroy(z);
	cl_member_destroy(w);
}

static void
test_member_registers_and_sees_itself_alive(void **state)
{
	env *e = *state;
	cl_member *m = join(e, e->st, "chatter-1", IM_NODE_CHATTER,
			    "127.0.0.1:7801");
	const cl_node *n;

	assert_int_equal(cl_member_incarnation(m), 1);
	assert_int_equal(cl_member_count(m), 1);
	n = cl_member_find(m, "chatter-1");
	assert_non_null(n);
	assert_true(n->alive);
	assert_int_equal(n->role, IM_NODE_CHATTER);
	assert_string_equal(n->address, "127.0.0.1:7801");
	assert_int_equal(e->changes, 0);
	assert_null(cl_member_find(m, "nobody"));
	assert_null(cl_member_node(m, 1));
	cl_member_destroy(m);
}

static void
test_member_judges_peers_alive_by_heartbeat_age(void **state)
{
	env *e = *state;
	cl_member *a = join(e, e->st, "router-a", IM_NODE_ROUTER,
			    "127.0.0.1:7701");
	cl_member *b = join(e, e->st, "router-b", IM_NODE_ROUTER,
			    "127.0.0.1:7702");
	int i;

	/* a learns about b at its next refresh. */
	e->now += 1000;
	assert_int_equal(cl_member_tick(a), IM_OK);
	assert_int_equal(cl_member_count(a), 2);
	assert_true(cl_member_find(a, "router-b")->alive);
	assert_int_equal(e->changes, 1);
	/* b keeps beating for a while: a's view does not change. */
	for (i = 0; i < 5; i++) {
		e->now += 1000;
		assert_int_equal(cl_member_tick(b), IM_OK);
		assert_int_equal(cl_member_tick(a), IM_OK);
	}
	/* b saw a in its first view (no change for it). */
	assert_int_equal(e->changes, 1);
	/* b goes silent: dead once its heartbeat is older than 3 s. */
	e->now += 3000;
	assert_int_equal(cl_member_tick(a), IM_OK);
	assert_true(cl_member_find(a, "router-b")->alive);
	e->now += 1000;
	assert_int_equal(cl_member_tick(a), IM_OK);
	assert_false(cl_member_find(a, "router-b")->alive);
	assert_int_equal(e->changes, 2);
	/* and alive again when it beats. */
	assert_int_equal(cl_member_tick(b), IM_OK);
	e->now += 1000;
	assert_int_equal(cl_member_tick(a), IM_OK);
	assert_true(cl_member_find(a, "router-b")->alive);
	assert_int_equal(e->changes, 3);
	cl_member_destroy(a);
	cl_member_destroy(b);
}

static void
test_member_comes_back_as_a_new_incarnation_when_its_row_is_gone(
	void **state)
{
	env *e = *state;
	im_store *faulty = NULL;
	faulty_plan plan = {
		.ops = STORE_OP_BIT(STORE_OP_NODE_HEARTBEAT),
		.nth = 1,
		.err = IM_ENOTFOUND,
		.when = FAULTY_BEFORE,
	};
	cl_member *m;

	assert_int_equal(faulty_store_wrap(&faulty, e->st, false), IM_OK);
	m = join(e, faulty, "connector-1", IM_NODE_CONNECTOR,
		 "127.0.0.1:7601");
	faulty_store_arm(faulty, &plan);
	e->now += 1000;
	assert_int_equal(cl_member_tick(m), IM_OK);
	assert_int_equal(cl_member_incarnation(m), 2);
	assert_int_equal(cl_member_find(m, "connector-1")->incarnation, 2);
	cl_member_destroy(m);
	im_store_close(faulty);
}

static void
test_member_survives_store_failures_and_recovers(void **state)
{
	env *e = *state;
	im_store *faulty = NULL;
	faulty_plan plan = {
		.ops = STORE_OP_BIT(STORE_OP_NODE_HEARTBEAT) |
		       STORE_OP_BIT(STORE_OP_NODE_LIST),
		.nth = 1,
		.persistent = true,
		.err = IM_EUNAVAIL,
		.when = FAULTY_BEFORE,
	};
	cl_member *m, *other;
	int i;

	assert_int_equal(faulty_store_wrap(&faulty, e->st, false), IM_OK);
	m = join(e, faulty, "chatter-1", IM_NODE_CHATTER, "127.0.0.1:7801");
	other = join(e, e->st, "chatter-2", IM_NODE_CHATTER,
		     "127.0.0.1:7802");
	faulty_store_arm(faulty, &plan);
	for (i = 0; i < 3; i++) {
		e->now += 1000;
		assert_int_equal(cl_member_tick(m), IM_EUNAVAIL);
	}
	assert_int_equal(cl_member_errors(m), 6);
	assert_non_null(strstr(cl_member_errmsg(m), "IM_EUNAVAIL"));
	/* The view is kept as it was, not emptied. */
	assert_int_equal(cl_member_count(m), 1);
	faulty_store_arm(faulty, NULL);
	e->now += 1000;
	assert_int_equal(cl_member_tick(m), IM_OK);
	assert_int_equal(cl_member_count(m), 2);
	assert_true(cl_member_find(m, "chatter-1")->alive);
	cl_member_destroy(m);
	cl_member_destroy(other);
	im_store_close(faulty);
}

static void
test_member_create_checks_its_arguments(void **state)
{
	env *e = *state;
	cl_member_opts o = opts_of(e);
	cl_member *m = NULL;

	assert_int_equal(cl_member_create(NULL, e->loop, e->st, "n",
					  IM_NODE_ROUTER, "127.0.0.1:1", &o),
			 IM_EINVAL);
	assert_int_equal(cl_member_create(&m, e->loop, NULL, "n",
					  IM_NODE_ROUTER, "127.0.0.1:1", &o),
			 IM_EINVAL);
	assert_int_equal(cl_member_create(&m, e->loop, e->st, "",
					  IM_NODE_ROUTER, "127.0.0.1:1", &o),
			 IM_EINVAL);
	assert_int_equal(cl_member_create(&m, e->loop, e->st, "n",
					  IM_NODE_ROUTER, "", &o),
			 IM_EINVAL);
	o.dead_after_ms = o.heartbeat_ms - 1;
	assert_int_equal(cl_member_create(&m, e->loop, e->st, "n",
					  IM_NODE_ROUTER, "127.0.0.1:1", &o),
			 IM_EINVAL);
	o = opts_of(e);
	assert_int_equal(cl_member_create(&m, e->loop, e->st, "n",
					  (im_node_role)7, "127.0.0.1:1", &o),
			 IM_EINVAL);
	assert_null(m);
	assert_int_equal(cl_member_tick(NULL), IM_EINVAL);
	cl_member_destroy(NULL);
}

static void
test_split_address_takes_only_host_and_port(void **state)
{
	char host[16];
	uint16_t port = 0;

	(void)state;
	assert_true(cl_split_address("127.0.0.1:7600", host, sizeof(host),
				     &port));
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 7600);
	assert_false(cl_split_address("127.0.0.1", host, sizeof(host), &port));
	assert_false(cl_split_address(":1", host, sizeof(host), &port));
	assert_false(cl_split_address("h:", host, sizeof(host), &port));
	assert_false(cl_split_address("h:65536", host, sizeof(host), &port));
	assert_false(cl_split_address("h:-1", host, sizeof(host), &port));
	assert_false(cl_split_address("h:1x", host, sizeof(host), &port));
	assert_false(cl_split_address("a-very-long-host-name:1", host,
				      sizeof(host), &port));
	assert_false(cl_split_address(NULL, host, sizeof(host), &port));
}

/* ---- peers over loopback ---------------------------------------------- */

static void
echo_request(rpc_conn *c, uint64_t req_id, const imrpc_Rpc *m, void *payload)
{
	static imrpc_Rpc r;

	(void)m;
	memset(&r, 0, sizeof(r));
	r.which_body = imrpc_Rpc_hello_tag;
	snprintf(r.body.hello.node, sizeof(r.body.hello.node), "%s",
		 (const char *)payload);
	if (req_id != 0) {
		assert_int_equal(rpc_conn_reply(c, req_id, &r), IM_OK);
	}
}

typedef struct router {
	rpc_server *srv;
	cl_member *m;
	char addr[32];
	const char *name;
} router;

static void
router_start(env *e, router *r, const char *name, uint16_t port)
{
	rpc_opts o = RPC_OPTS_INIT;

	o.on_request = echo_request;
	o.payload = (void *)name;
	r->name = name;
	assert_int_equal(rpc_server_open(&r->srv, e->loop, "127.0.0.1", port,
					 8, &o),
			 IM_OK);
	snprintf(r->addr, sizeof(r->addr), "127.0.0.1:%u",
		 rpc_server_port(r->srv));
	if (r->m == NULL) {
		r->m = join(e, e->st, name, IM_NODE_ROUTER, r->addr);
	}
}

static cl_peers *wait_peers;
static size_t wait_up;

static bool
peers_up(void)
{
	size_t up = 0;

	up += cl_peers_get(wait_peers, "router-a") != NULL;
	up += cl_peers_get(wait_peers, "router-b") != NULL;
	return up == wait_up;
}

static bool
run_until(env *e, bool (*pred)(void))
{
	ev_tstamp end = ev_time() + WAIT_MS / 1000.0;

	while (!pred() && ev_time() < end) {
		ev_run(e->loop, EVRUN_ONCE);
	}
	return pred();
}

static char answered_by[IM_NODE_NAME_MAX + 1];

static void
on_answer(rpc_conn *c, int status, const imrpc_Rpc *reply, void *payload)
{
	(void)c, (void)payload;
	assert_int_equal(status, IM_OK);
	snprintf(answered_by, sizeof(answered_by), "%s",
		 reply->body.hello.node);
}

static bool
got_answer(void)
{
	return answered_by[0] != '\0';
}

/* Call through pick(key) and return the name of the router that answered. */
static const char *
ask(env *e, cl_peers *p, uint64_t key)
{
	static imrpc_Rpc m;
	rpc_conn *c = cl_peers_pick(p, key);

	assert_non_null(c);
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_heartbeat_tag;
	answered_by[0] = '\0';
	assert_int_equal(rpc_conn_call(c, &m, 0, on_answer, NULL), IM_OK);
	assert_true(run_until(e, got_answer));
	return answered_by;
}

static void
test_peers_reach_every_live_router_and_survive_losing_one(void **state)
{
	env *e = *state;
	router a = {0}, b = {0};
	rpc_opts co = RPC_OPTS_INIT;
	cl_member *cn;
	cl_peers *p = NULL;
	char first[IM_NODE_NAME_MAX + 1];
	uint64_t key;

	co.backoff_min_ms = 10;
	co.backoff_max_ms = 50;
	router_start(e, &a, "router-a", 0);
	router_start(e, &b, "router-b", 0);
	cn = join(e, e->st, "connector-1", IM_NODE_CONNECTOR,
		  "127.0.0.1:7601");
	assert_int_equal(cl_peers_create(&p, e->loop, cn, IM_NODE_ROUTER, 8,
					 &co),
			 IM_OK);
	cl_peers_sync(p);
	assert_int_equal(cl_peers_count(p), 2);
	wait_peers = p;
	wait_up = 2;
	assert_true(run_until(e, peers_up));
	assert_int_equal(cl_peers_up(p), 2);

	/* A key keeps its router while both are up. */
	for (key = 1; key <= 2; key++) {
		snprintf(first, sizeof(first), "%s", ask(e, p, key));
		assert_string_equal(ask(e, p, key), first);
	}
	/* Keys spread over both routers. */
	snprintf(first, sizeof(first), "%s", ask(e, p, 1));
	assert_string_not_equal(ask(e, p, 2), first);

	/* Router a dies: its keys go to b at once (the connection is down),
	 * before any store refresh noticed anything. */
	rpc_server_close(a.srv);
	a.srv = NULL;
	wait_up = 1;
	assert_true(run_until(e, peers_up));
	assert_string_equal(ask(e, p, 1), "router-b");
	assert_string_equal(ask(e, p, 2), "router-b");

	/* Its heartbeat ages out: the view drops it, so does the peer set. */
	e->now += 4000;
	assert_int_equal(cl_member_tick(b.m), IM_OK);
	assert_int_equal(cl_member_tick(cn), IM_OK);
	assert_false(cl_member_find(cn, "router-a")->alive);
	cl_peers_sync(p);
	assert_int_equal(cl_peers_count(p), 1);

	/* It comes back on a new port (a restart): reconnected there. */
	router_start(e, &a, "router-a", 0);
	cl_member_destroy(a.m);
	a.m = join(e, e->st, "router-a", IM_NODE_ROUTER, a.addr);
	e->now += 1000;
	assert_int_equal(cl_member_tick(b.m), IM_OK);
	assert_int_equal(cl_member_tick(cn), IM_OK);
	cl_peers_sync(p);
	assert_int_equal(cl_peers_count(p), 2);
	wait_up = 2;
	assert_true(run_until(e, peers_up));

	cl_peers_destroy(p);
	cl_member_destroy(cn);
	cl_member_destroy(a.m);
	cl_member_destroy(b.m);
	rpc_server_close(a.srv);
	rpc_server_close(b.srv);
}

static void
test_peers_create_checks_its_arguments(void **state)
{
	env *e = *state;
	rpc_opts co = RPC_OPTS_INIT;
	cl_member *m = join(e, e->st, "c", IM_NODE_CONNECTOR, "127.0.0.1:1");
	cl_peers *p = NULL;

	assert_int_equal(cl_peers_create(NULL, e->loop, m, IM_NODE_ROUTER, 8,
					 &co),
			 IM_EINVAL);
	assert_int_equal(cl_peers_create(&p, e->loop, NULL, IM_NODE_ROUTER, 8,
					 &co),
			 IM_EINVAL);
	assert_int_equal(cl_peers_create(&p, e->loop, m, IM_NODE_ROUTER, 0,
					 &co),
			 IM_EINVAL);
	assert_null(p);
	assert_null(cl_peers_pick(NULL, 1));
	assert_null(cl_peers_get(NULL, "x"));
	assert_int_equal(cl_peers_create(&p, e->loop, m, IM_NODE_ROUTER, 8,
					 &co),
			 IM_OK);
	/* No router registered: nothing to pick. */
	cl_peers_sync(p);
	assert_int_equal(cl_peers_count(p), 0);
	assert_null(cl_peers_pick(p, 7));
	cl_peers_destroy(p);
	cl_peers_destroy(NULL);
	cl_member_destroy(m);
}

/* Fresh judges the age now, not at the view's last reload: a node a
 * Router just judged dead by a fresh store read is never fresh here. */
static void
test_member_fresh_judges_heartbeat_age_now(void **state)
{
	env *e = *state;
	cl_member *a = join(e, e->st, "chatter-a", IM_NODE_CHATTER, "-");
	cl_member *b = join(e, e->st, "chatter-b", IM_NODE_CHATTER, "-");
	const cl_node *nb;
	char owner[IM_OWNER_MAX + 1];

	e->now += 1000;
	assert_int_equal(cl_member_tick(a), IM_OK); /* reload: b alive */
	nb = cl_member_find(a, "chatter-b");
	assert_non_null(nb);
	assert_true(nb->alive);
	assert_true(cl_member_fresh(a, nb));
	/* No reload until a's next refresh, but b's beat is 3.5 s old. */
	e->now += 2500;
	assert_true(nb->alive);
	assert_false(cl_member_fresh(a, nb));
	assert_false(cl_member_fresh(NULL, nb));
	assert_false(cl_member_fresh(a, NULL));
	cl_owner_of(owner, sizeof(owner), "chatter-b", 0x1f);
	assert_string_equal(owner, "chatter-b/0000001f");
	cl_member_destroy(a);
	cl_member_destroy(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
		T(test_member_registers_and_sees_itself_alive),
		T(test_member_muted_stops_heartbeating_and_comes_back_anew),
		T(test_member_judges_peers_alive_by_heartbeat_age),
		T(test_member_fresh_judges_heartbeat_age_now),
		T(test_member_silent_too_long_comes_back_anew),
		T(test_member_comes_back_as_a_new_incarnation_when_its_row_is_gone),
		T(test_member_survives_store_failures_and_recovers),
		T(test_member_create_checks_its_arguments),
		T(test_split_address_takes_only_host_and_port),
		T(test_peers_reach_every_live_router_and_survive_losing_one),
		T(test_peers_create_checks_its_arguments),
#undef T
	};

	return cmocka_run_group_tests_name("cluster_member", tests, NULL,
					   NULL);
}
