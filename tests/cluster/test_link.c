/*
 * cl_link, the role_router of Connector and Chatter processes, against a
 * fake Router (an RPC server that records what arrives): batches larger
 * than the RPC bounds are split and arrive complete, exactly once; with no
 * Router up, a Connector's ops are answered ERR_UNAVAILABLE locally.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "link.h"

#define WAIT_MS 5000
#define NMSGS 23     /* > 2 Deliver's worth of messages */
#define NMEMBERS 600 /* > 2 Fanout's worth of members */
#define NGROUPS 11   /* > one Deliver's fanouts */

typedef struct env {
	struct ev_loop *loop;
	ev_timer tick;
	im_store *st;
	rpc_server *srv;
	cl_member *rm, *me;
	cl_link *link;
	bool hello;
	int forwards, ops, delivers, replies, events, other;
	/* deliveries seen: count per (group, member, msg index) */
	uint8_t *seen;
	uint32_t wrong;
	bool fail_forwards;
	rpc_conn *rconn; /* the fake Router's side of the link */
	uint64_t hb_echo; /* time_ms of the Heartbeat echoed back */
	int slot_maps;    /* cl_link_on_slot_map callbacks */
} env;

static env *E;

static void
noop(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop, (void)w, (void)revents;
}

static size_t
seen_at(uint64_t group, uint64_t member, uint64_t seq)
{
	return ((size_t)(group - 1) * NMEMBERS + (size_t)(member - 1)) *
		       NMSGS +
	       (size_t)(seq - 1);
}

static void
record_deliver(env *e, const imrpc_Deliver *d)
{
	uint32_t f, k, i;

	for (f = 0; f < d->fanouts_count; f++) {
		const imrpc_Fanout *fo = &d->fanouts[f];

		for (k = 0; k < fo->members_count; k++) {
			for (i = fo->first; i < fo->first + fo->count; i++) {
				const imrpc_Msg *m = &d->msgs[i];

				if (m->group != fo->group || m->seq == 0 ||
				    m->seq > NMSGS || fo->members[k] == 0 ||
				    fo->members[k] > NMEMBERS ||
				    fo->group == 0 || fo->group > NGROUPS ||
				    m->body.size != 1 ||
				    m->body.bytes[0] != (uint8_t)m->seq) {
					e->wrong++;
					continue;
				}
				e->seen[seen_at(fo->group, fo->members[k],
						m->seq)]++;
			}
		}
	}
}

static void
router_request(rpc_conn *c, uint64_t req_id, const imrpc_Rpc *m,
	       void *payload)
{
	env *e = payload;
	static imrpc_Rpc ack;

	switch (m->which_body) {
	case imrpc_Rpc_hello_tag:
		e->hello = true;
		break;
	case imrpc_Rpc_forward_tag:
		e->forwards++;
		e->ops += (int)m->body.forward.ops_count;
		break;
	case imrpc_Rpc_deliver_tag:
		e->delivers++;
		record_deliver(e, &m->body.deliver);
		break;
	case imrpc_Rpc_replies_tag:
		e->replies += (int)m->body.replies.replies_count;
		break;
	case imrpc_Rpc_user_events_tag:
		e->events += (int)m->body.user_events.events_count;
		break;
	default:
		e->other++;
		break;
	}
	if (req_id != 0) {
		memset(&ack, 0, sizeof(ack));
		ack.which_body = imrpc_Rpc_ack_tag;
		ack.body.ack.code = e->fail_forwards ? 8 : 0;
		assert_int_equal(rpc_conn_reply(c, req_id, &ack), IM_OK);
	}
}

static void
router_state(rpc_conn *c, bool up, int err, const char *why, void *payload)
{
	env *e = payload;

	(void)err, (void)why;
	e->rconn = up ? c : e->rconn == c ? NULL : e->rconn;
}

static bool
run_until(env *e, bool (*pred)(env *))
{
	ev_tstamp end = ev_time() + WAIT_MS / 1000.0;

	while (!pred(e) && ev_time() < end) {
		ev_run(e->loop, EVRUN_ONCE);
	}
	return pred(e);
}

static bool
linked(env *e)
{
	return e->hello && cl_link_routers_up(e->link) == 1;
}

static int
setup(void **state)
{
	env *e = calloc(1, sizeof(*e));
	rpc_opts so = RPC_OPTS_INIT, co = RPC_OPTS_INIT;
	cl_member_opts mo = CL_MEMBER_OPTS_INIT;
	char addr[32];

	assert_non_null(e);
	E = e;
	e->seen = calloc((size_t)NGROUPS * NMEMBERS * NMSGS, 1);
	assert_non_null(e->seen);
	assert_int_equal(im_store_sqlite_open(&e->st, ":memory:", NULL, NULL,
					      0),
			 IM_OK);
	e->loop = ev_loop_new(EVFLAG_AUTO);
	ev_timer_init(&e->tick, noop, 0.01, 0.01);
	ev_timer_start(e->loop, &e->tick);
	so.on_request = router_request;
	so.on_state = router_state;
	so.payload = e;
	assert_int_equal(rpc_server_open(&e->srv, e->loop, "127.0.0.1", 0, 4,
					 &so),
			 IM_OK);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", rpc_server_port(e->srv));
	mo.timers = false;
	assert_int_equal(cl_member_create(&e->rm, e->loop, e->st, "router-1",
					  IM_NODE_ROUTER, addr, &mo),
			 IM_OK);
	assert_int_equal(cl_member_create(&e->me, e->loop, e->st, "chatter-1",
					  IM_NODE_CHATTER, "-", &mo),
			 IM_OK);
	co.backoff_min_ms = 10;
	assert_int_equal(cl_link_create(&e->link, e->loop, e->me,
					"chatter-1/00000001",
					imrpc_Role_ROLE_CHATTER, &co),
			 IM_OK);
	assert_true(run_until(e, linked));
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	env *e = *state;

	cl_link_destroy(e->link);
	cl_member_destroy(e->me);
	cl_member_destroy(e->rm);
	rpc_server_close(e->srv);
	im_store_close(e->st);
	ev_timer_stop(e->loop, &e->tick);
	ev_loop_destroy(e->loop);
	free(e->seen);
	free(e);
	return 0;
}

static size_t want_delivered;

static bool
all_delivered(env *e)
{
	size_t i, got = 0;

	for (i = 0; i < (size_t)NGROUPS * NMEMBERS * NMSGS; i++) {
		got += e->seen[i] != 0;
	}
	return got >= want_delivered;
}

static void
test_link_splits_a_large_fanout_and_every_pair_arrives_once(void **state)
{
	env *e = *state;
	static im_msg msgs[NGROUPS][NMSGS];
	static im_uid members[NMEMBERS];
	static uint8_t bodies[NMSGS];
	role_fanout f[NGROUPS];
	role_router *rr = cl_link_router(e->link);
	size_t g, i, total = 0;
	cl_link_stats st;

	for (i = 0; i < NMEMBERS; i++) {
		members[i] = i + 1;
	}
	for (i = 0; i < NMSGS; i++) {
		bodies[i] = (uint8_t)(i + 1);
	}
	/* Group g has g+1 messages... up to NMSGS, and a growing member
	 * list, so chunks of every size show up. */
	for (g = 0; g < NGROUPS; g++) {
		size_t nm = g == 0 ? NMSGS : 1 + g, nu = g == 0 ? NMEMBERS
							    : 3 + 50 * g;

		for (i = 0; i < nm; i++) {
			memset(&msgs[g][i], 0, sizeof(im_msg));
			msgs[g][i].conv = g + 1;
			msgs[g][i].seq = i + 1;
			msgs[g][i].prev_seq = i;
			msgs[g][i].ordinal = i + 1;
			msgs[g][i].sender = 1;
			msgs[g][i].body = &bodies[i];
			msgs[g][i].body_len = 1;
		}
		f[g].group = g + 1;
		f[g].msgs = msgs[g];
		f[g].nmsgs = nm;
		f[g].members = members;
		f[g].nmembers = nu;
		total += nm * nu;
	}
	rr->ops->deliver(rr, f, NGROUPS);
	want_delivered = total;
	assert_true(run_until(e, all_delivered));
	assert_int_equal(e->wrong, 0);
	for (i = 0; i < (size_t)NGROUPS * NMEMBERS * NMSGS; i++) {
		assert_true(e->seen[i] <= 1);
	}
	cl_link_get_stats(e->link, &st);
	assert_int_equal(st.dropped, 0);
	assert_true(e->delivers > 1);
	print_message("# %zu (member, message) pairs in %d Delivers\n", total,
		      e->delivers);
}

static bool
forwards_in(env *e)
{
	return e->ops >= 30;
}

static void
test_link_splits_ops_into_forwards_within_the_bound(void **state)
{
	env *e = *state;
	role_router *rr = cl_link_router(e->link);
	role_op ops[30];
	size_t i;

	memset(ops, 0, sizeof(ops));
	for (i = 0; i < 30; i++) {
		ops[i].kind = ROLE_OP_SEND;
		ops[i].user = 5;
		ops[i].group = 42; /* one group: one Router, one path */
		ops[i].dedup_id = i + 1;
		ops[i].route.req_id = i + 1;
	}
	rr->ops->submit(rr, ops, 30);
	assert_true(run_until(e, forwards_in));
	assert_int_equal(e->ops, 30);
	assert_int_equal(e->forwards, 3); /* 12 + 12 + 6 */
}

static bool
replies_and_events_in(env *e)
{
	return e->replies >= 100 && e->events >= 70;
}

static void
test_link_sends_replies_and_events_in_bounded_messages(void **state)
{
	env *e = *state;
	role_router *rr = cl_link_router(e->link);
	static role_reply reps[100];
	static role_uevent evs[70];
	size_t i;

	memset(reps, 0, sizeof(reps));
	memset(evs, 0, sizeof(evs));
	for (i = 0; i < 100; i++) {
		reps[i].route.connector = 7;
		reps[i].route.req_id = i + 1;
		reps[i].kind = ROLE_OP_SEND;
		reps[i].text = "a reason longer than the wire allows for a "
			       "reply text, which is cut, not refused";
	}
	for (i = 0; i < 70; i++) {
		evs[i].user = 9;
		evs[i].type = 1;
	}
	rr->ops->reply(rr, reps, 100);
	rr->ops->user_events(rr, evs, 70);
	assert_true(run_until(e, replies_and_events_in));
	assert_int_equal(e->replies, 100);
	assert_int_equal(e->events, 70);
}

static bool
no_router(env *e)
{
	return cl_link_routers_up(e->link) == 0;
}

static void
test_link_without_a_router_answers_ops_unavailable_locally(void **state)
{
	env *e = *state;
	role_router *rr = cl_link_router(e->link);
	role_op op;
	cl_link_stats st;

	rpc_server_close(e->srv);
	e->srv = NULL;
	assert_true(run_until(e, no_router));
	memset(&op, 0, sizeof(op));
	op.kind = ROLE_OP_SEND;
	op.group = 42;
	rr->ops->submit(rr, &op, 1);
	cl_link_get_stats(e->link, &st);
	assert_int_equal(st.unavailable, 1);
	/* Nothing to send replies or deliveries to: counted as dropped. */
	{
		role_reply r;

		memset(&r, 0, sizeof(r));
		rr->ops->reply(rr, &r, 1);
	}
	cl_link_get_stats(e->link, &st);
	assert_int_equal(st.dropped, 1);
}

static bool
refused(env *e)
{
	cl_link_stats st;

	cl_link_get_stats(e->link, &st);
	return st.unavailable >= 2;
}

static void
test_link_forward_refused_by_the_router_is_answered_unavailable(
	void **state)
{
	env *e = *state;
	role_router *rr = cl_link_router(e->link);
	role_op ops[2];

	e->fail_forwards = true;
	memset(ops, 0, sizeof(ops));
	ops[0].kind = ops[1].kind = ROLE_OP_SEND;
	ops[0].group = ops[1].group = 42;
	rr->ops->submit(rr, ops, 2);
	assert_true(run_until(e, refused));
}

static void
test_link_create_checks_its_arguments(void **state)
{
	env *e = *state;
	rpc_opts co = RPC_OPTS_INIT;
	cl_link *l = NULL;

	assert_int_equal(cl_link_create(NULL, e->loop, e->me, "x",
					imrpc_Role_ROLE_CHATTER, &co),
			 IM_EINVAL);
	assert_int_equal(cl_link_create(&l, e->loop, NULL, "x",
					imrpc_Role_ROLE_CHATTER, &co),
			 IM_EINVAL);
	assert_int_equal(cl_link_create(&l, e->loop, e->me, "",
					imrpc_Role_ROLE_CHATTER, &co),
			 IM_EINVAL);
	assert_int_equal(cl_link_create(&l, e->loop, e->me, "x",
					imrpc_Role_ROLE_ROUTER, &co),
			 IM_EINVAL);
	assert_null(l);
	assert_null(cl_link_router(NULL));
	cl_link_destroy(NULL);
}

static void
on_echo(rpc_conn *c, int status, const imrpc_Rpc *reply, void *payload)
{
	env *e = payload;

	(void)c;
	if (status == IM_OK && reply->which_body == imrpc_Rpc_heartbeat_tag) {
		e->hb_echo = reply->body.heartbeat.time_ms;
	}
}

static void
count_slot_map(void *payload)
{
	((env *)payload)->slot_maps++;
}

static bool
echoed_and_told(env *e)
{
	return e->hb_echo == 4242 && e->slot_maps >= 1;
}

/* A Router's Heartbeat is echoed (how it tells the node is alive); its
 * SlotMap (it moved slots) makes the node reload its map at once. */
static void
test_link_echoes_heartbeats_and_passes_slot_maps_on(void **state)
{
	env *e = *state;
	static imrpc_Rpc m;

	cl_link_on_slot_map(e->link, count_slot_map, e);
	assert_non_null(e->rconn);
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_heartbeat_tag;
	m.body.heartbeat.time_ms = 4242;
	assert_int_equal(rpc_conn_call(e->rconn, &m, 0, on_echo, e), IM_OK);
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_slot_map_tag;
	m.body.slot_map.reload = true;
	assert_int_equal(rpc_conn_send(e->rconn, &m), IM_OK);
	assert_true(run_until(e, echoed_and_told));
	assert_int_equal(e->slot_maps, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_link_echoes_heartbeats_and_passes_slot_maps_on,
			setup, teardown),
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
		T(test_link_splits_a_large_fanout_and_every_pair_arrives_once),
		T(test_link_splits_ops_into_forwards_within_the_bound),
		T(test_link_sends_replies_and_events_in_bounded_messages),
		T(test_link_without_a_router_answers_ops_unavailable_locally),
		T(test_link_forward_refused_by_the_router_is_answered_unavailable),
		T(test_link_create_checks_its_arguments),
#undef T
	};

	return cmocka_run_group_tests_name("cluster_link", tests, NULL, NULL);
}
