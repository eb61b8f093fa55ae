/*
 * The cluster Router between fake Connectors and Chatters (RPC clients on
 * loopback that say Hello and record what reaches them). The slot map is
 * in a sqlite store: user slots 0-7 belong to connector-1, 8-15 to
 * connector-2; group slots 0-7 to chatter-1, 8-15 to chatter-2.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "im/shard.h"
#include "im/store.h"
#include "member.h"
#include "router.h"

#define NSLOTS 16
#define WAIT_MS 5000

typedef struct fnode {
	const char *name;
	imrpc_Role role;
	rpc_conn *c;
	bool up;
	bool hold; /* chatter: never answer Forwards */
	bool mute; /* never answer Heartbeats */
	uint32_t route_id; /* said in Hello (0: none) */
	uint64_t hb_req; /* the last one left unanswered */
	int forwards, replies, delivers, events, slot_maps, heartbeats;
	imrpc_Rpc *last_forward, *last_replies, *last_deliver, *last_events;
	uint32_t ops; /* ops received over all Forwards */
	uint64_t groups_seen[32];
} fnode;

typedef struct env {
	struct ev_loop *loop;
	ev_timer tick;
	im_store *st;
	im_shard_map *map;
	router *r;
	fnode cn1, cn2, ch1, ch2, ch3;
	int acks;
	int acks_bad;
	/* failure detection: a fake clock, a second Router, slot owners */
	uint64_t now;
	router *r2;
	im_shard_map *map2;
	char own[3][IM_OWNER_MAX + 1]; /* chatter-1..3 */
	char cown[IM_OWNER_MAX + 1];   /* connector-1 */
} env;

static env *E;

static void
noop(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop, (void)w, (void)revents;
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

/* An id whose slot is in [lo, hi), the n-th such (n from 0). */
static uint64_t
id_in(uint32_t lo, uint32_t hi, int n)
{
	uint64_t id;

	for (id = 1;; id++) {
		uint32_t s = im_shard_slot_of(id, NSLOTS);

		if (s >= lo && s < hi && n-- == 0) {
			return id;
		}
	}
}

static void
keep(imrpc_Rpc **slot, const imrpc_Rpc *m)
{
	if (*slot == NULL) {
		*slot = malloc(sizeof(**slot));
		assert_non_null(*slot);
	}
	**slot = *m;
}

static void
fake_request(rpc_conn *c, uint64_t req_id, const imrpc_Rpc *m, void *payload)
{
	fnode *n = payload;
	static imrpc_Rpc ack;
	uint32_t i;

	switch (m->which_body) {
	case imrpc_Rpc_forward_tag:
		n->forwards++;
		keep(&n->last_forward, m);
		for (i = 0; i < m->body.forward.ops_count; i++) {
			if (n->ops < 32) {
				n->groups_seen[n->ops] =
					m->body.forward.ops[i].group;
			}
			n->ops++;
		}
		if (n->hold) {
			return;
		}
		break;
	case imrpc_Rpc_replies_tag:
		n->replies++;
		keep(&n->last_replies, m);
		break;
	case imrpc_Rpc_deliver_tag:
		n->delivers++;
		keep(&n->last_deliver, m);
		break;
	case imrpc_Rpc_user_events_tag:
		n->events++;
		keep(&n->last_events, m);
		break;
	case imrpc_Rpc_slot_map_tag:
		n->slot_maps++;
		break;
	case imrpc_Rpc_heartbeat_tag:
		n->heartbeats++;
		if (n->mute) {
			n->hb_req = req_id;
			return;
		}
		break;
	default:
		break;
	}
	if (req_id != 0) {
		memset(&ack, 0, sizeof(ack));
		ack.which_body = imrpc_Rpc_ack_tag;
		assert_int_equal(rpc_conn_reply(c, req_id, &ack), IM_OK);
	}
}

static void
on_ack(rpc_conn *c, int status, const imrpc_Rpc *reply, void *payload)
{
	(void)c, (void)payload;
	if (status == IM_OK && reply->which_body == imrpc_Rpc_ack_tag &&
	    reply->body.ack.code == 0) {
		E->acks++;
	} else {
		E->acks_bad++;
	}
}

static void
fake_state(rpc_conn *c, bool up, int err, const char *why, void *payload)
{
	fnode *n = payload;
	static imrpc_Rpc hello;

	(void)err, (void)why;
	n->up = up;
	if (!up) {
		return;
	}
	memset(&hello, 0, sizeof(hello));
	hello.which_body = imrpc_Rpc_hello_tag;
	snprintf(hello.body.hello.node, sizeof(hello.body.hello.node), "%s",
		 n->name);
	hello.body.hello.role = n->role;
	hello.body.hello.route_id = n->route_id;
	assert_int_equal(rpc_conn_call(c, &hello, 0, on_ack, NULL), IM_OK);
}

static void
fake_start(env *e, fnode *n, const char *name, imrpc_Role role)
{
	rpc_opts o = RPC_OPTS_INIT;

	n->name = name;
	n->role = role;
	o.on_request = fake_request;
	o.on_state = fake_state;
	o.payload = n;
	assert_int_equal(rpc_conn_connect(&n->c, e->loop, "127.0.0.1",
					  router_port(e->r), &o),
			 IM_OK);
}

static void
fake_stop(fnode *n)
{
	rpc_conn_destroy(n->c);
	free(n->last_forward);
	free(n->last_replies);
	free(n->last_deliver);
	free(n->last_events);
	memset(n, 0, sizeof(*n));
}

static int hellos_wanted;

static bool
hellos_done(env *e)
{
	return e->acks >= hellos_wanted;
}

static int
setup(void **state)
{
	env *e = calloc(1, sizeof(*e));
	im_shard_opts so = IM_SHARD_OPTS_INIT;
	router_opts ro = ROUTER_OPTS_INIT;
	uint32_t s;

	assert_non_null(e);
	E = e;
	assert_int_equal(im_store_sqlite_open(&e->st, ":memory:", NULL, NULL,
					      0),
			 IM_OK);
	for (s = 0; s < NSLOTS; s++) {
		assert_int_equal(im_store_slot_cas(e->st, IM_KIND_USER, s, 0,
						   s < 8 ? "connector-1"
							 : "connector-2",
						   NULL),
				 IM_OK);
		assert_int_equal(im_store_slot_cas(e->st, IM_KIND_GROUP, s, 0,
						   s < 8 ? "chatter-1"
							 : "chatter-2",
						   NULL),
				 IM_OK);
	}
	so.nslots = NSLOTS;
	assert_int_equal(im_shard_create(&e->map, &so), IM_OK);
	e->loop = ev_loop_new(EVFLAG_AUTO);
	ev_timer_init(&e->tick, noop, 0.01, 0.01);
	ev_timer_start(e->loop, &e->tick);
	ro.refresh_ms = 0;
	ro.forward_timeout_ms = 100;
	/* These tests are about routing: no failure detection. */
	ro.heartbeat_ms = 0;
	ro.dead_after_ms = 0;
	assert_int_equal(router_create(&e->r, e->loop, e->st, e->map,
				       "127.0.0.1", 0, &ro),
			 IM_OK);
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	env *e = *state;

	fake_stop(&e->cn1);
	fake_stop(&e->cn2);
	fake_stop(&e->ch1);
	fake_stop(&e->ch2);
	fake_stop(&e->ch3);
	router_destroy(e->r);
	router_destroy(e->r2);
	im_shard_destroy(e->map);
	im_shard_destroy(e->map2);
	im_store_close(e->st);
	ev_timer_stop(e->loop, &e->tick);
	ev_loop_destroy(e->loop);
	free(e);
	return 0;
}

/* Start the fakes named by the flags and wait for their Hellos. */
static void
start_nodes(env *e, bool cn1, bool cn2, bool ch1, bool ch2)
{
	hellos_wanted = 0;
	if (cn1) {
		fake_start(e, &e->cn1, "connector-1",
			   imrpc_Role_ROLE_CONNECTOR);
		hellos_wanted++;
	}
	if (cn2) {
		fake_start(e, &e->cn2, "connector-2",
			   imrpc_Role_ROLE_CONNECTOR);
		hellos_wanted++;
	}
	if (ch1) {
		fake_start(e, &e->ch1, "chatter-1", imrpc_Role_ROLE_CHATTER);
		hellos_wanted++;
	}
	if (ch2) {
		fake_start(e, &e->ch2, "chatter-2", imrpc_Role_ROLE_CHATTER);
		hellos_wanted++;
	}
	assert_true(run_until(e, hellos_done));
	e->acks = 0;
}

static imrpc_Op
send_op(uint64_t group, uint64_t req_id, const char *connector)
{
	imrpc_Op op;

	memset(&op, 0, sizeof(op));
	op.kind = 1; /* ROLE_OP_SEND */
	op.has_route = true;
	op.route.connector = router_node_id(connector);
	op.route.tag = 77;
	op.route.req_id = req_id;
	op.user = 5;
	op.group = group;
	op.dedup_id = 1000 + req_id;
	op.body.size = 2;
	memcpy(op.body.bytes, "hi", 2);
	return op;
}

static int forwards_wanted;

static bool
forwards_arrived(env *e)
{
	return (int)(e->ch1.ops + e->ch2.ops) >= forwards_wanted &&
	       e->acks >= 1;
}

static void
test_router_forwards_each_op_to_the_chatter_owning_its_group(void **state)
{
	env *e = *state;
	static imrpc_Rpc m;
	uint64_t g1 = id_in(0, 8, 0), g2 = id_in(8, 16, 0);
	uint64_t g3 = id_in(0, 8, 1);
	imrpc_Forward *f = &m.body.forward;
	uint32_t i;

	start_nodes(e, true, false, true, true);
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_forward_tag;
	f->ops[f->ops_count++] = send_op(g1, 1, "connector-1");
	f->ops[f->ops_count++] = send_op(g2, 2, "connector-1");
	f->ops[f->ops_count++] = send_op(g3, 3, "connector-1");
	f->ops[f->ops_count] = send_op(0, 4, "connector-1");
	f->ops[f->ops_count++].kind = 2; /* CREATE_GROUP: any chatter */
	assert_int_equal(rpc_conn_call(e->cn1.c, &m, 0, on_ack, NULL), IM_OK);
	forwards_wanted = 4;
	assert_true(run_until(e, forwards_arrived));
	assert_int_equal(e->ch1.ops + e->ch2.ops, 4);
	/* One Forward per destination, each op exactly where it belongs. */
	assert_int_equal(e->ch2.forwards + e->ch1.forwards, 2);
	for (i = 0; i < e->ch1.ops; i++) {
		assert_true(e->ch1.groups_seen[i] == g1 ||
			    e->ch1.groups_seen[i] == g3 ||
			    e->ch1.groups_seen[i] == 0);
	}
	for (i = 0; i < e->ch2.ops; i++) {
		assert_true(e->ch2.groups_seen[i] == g2 ||
			    e->ch2.groups_seen[i] == 0);
	}
	assert_true(e->ch1.ops >= 2);
	assert_true(e->ch2.ops >= 1);
	/* Routes and payloads arrive intact. */
	{
		const imrpc_Op *op = &e->ch2.last_forward->body.forward.ops[0];

		assert_true(op->group == g2 || op->kind == 2);
		assert_int_equal(op->route.connector,
				 router_node_id("connector-1"));
		assert_int_equal(op->route.tag, 77);
		assert_memory_equal(op->body.bytes, "hi", 2);
	}
	assert_int_equal(e->acks_bad, 0);
}

static bool
cn1_has_replies(env *e)
{
	return e->cn1.replies >= 1;
}

static void
assert_unavailable_reply(const fnode *cn, uint64_t req_id, uint64_t group)
{
	const imrpc_Reply *rep = &cn->last_replies->body.replies.replies[0];

	assert_int_equal(cn->last_replies->body.replies.replies_count, 1);
	assert_int_equal(rep->code, 8); /* ERR_UNAVAILABLE */
	assert_int_equal(rep->route.req_id, req_id);
	assert_int_equal(rep->route.tag, 77);
	assert_int_equal(rep->group, group);
	assert_int_equal(rep->dedup_id, 1000 + req_id);
	assert_int_equal(rep->kind, 1);
}

static void
test_router_answers_unavailable_when_the_owner_is_not_connected(
	void **state)
{
	env *e = *state;
	static imrpc_Rpc m;
	uint64_t g2 = id_in(8, 16, 0);
	router_stats st;

	start_nodes(e, true, false, true, false);
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_forward_tag;
	m.body.forward.ops[m.body.forward.ops_count++] =
		send_op(g2, 9, "connector-1");
	assert_int_equal(rpc_conn_call(e->cn1.c, &m, 0, on_ack, NULL), IM_OK);
	assert_true(run_until(e, cn1_has_replies));
	assert_unavailable_reply(&e->cn1, 9, g2);
	assert_int_equal(e->ch1.ops, 0);
	router_get_stats(e->r, &st);
	assert_int_equal(st.unavailable, 1);
}

static bool
ch1_has_op(env *e)
{
	return e->ch1.ops >= 1;
}

static bool
acked(env *e)
{
	return e->acks >= 1;
}

static void
test_router_answers_unavailable_when_a_forward_times_out(void **state)
{
	env *e = *state;
	static imrpc_Rpc m;
	uint64_t g1 = id_in(0, 8, 0);

	start_nodes(e, true, false, true, false);
	e->ch1.hold = true;
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_forward_tag;
	m.body.forward.ops[m.body.forward.ops_count++] =
		send_op(g1, 11, "connector-1");
	assert_int_equal(rpc_conn_call(e->cn1.c, &m, 0, on_ack, NULL), IM_OK);
	assert_true(run_until(e, ch1_has_op));
	/* The Chatter has not acked: neither has the Router, so a Router
	 * dying now would fail the Connector's call (and the op retried). */
	assert_int_equal(e->acks, 0);
	assert_true(run_until(e, cn1_has_replies));
	assert_int_equal(e->ch1.ops, 1);
	assert_unavailable_reply(&e->cn1, 11, g1);
	assert_true(run_until(e, acked));
}

static bool
ch2_has_op(env *e)
{
	return e->ch2.ops >= 1 && e->acks >= 1;
}

static void
test_router_reloads_the_map_when_a_groups_owner_is_unknown(void **state)
{
	env *e = *state;
	static imrpc_Rpc m;
	uint64_t g1 = id_in(0, 8, 0);
	router_stats st;

	/* The group's slot moves to chatter-2 after the router loaded the
	 * map; chatter-1 is not even connected. */
	assert_int_equal(im_store_slot_cas(e->st, IM_KIND_GROUP,
					   im_shard_slot_of(g1, NSLOTS), 1,
					   "chatter-2", NULL),
			 IM_OK);
	start_nodes(e, true, false, false, true);
	usleep(150 * 1000); /* past the reload rate limit */
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_forward_tag;
	m.body.forward.ops[m.body.forward.ops_count++] =
		send_op(g1, 21, "connector-1");
	assert_int_equal(rpc_conn_call(e->cn1.c, &m, 0, on_ack, NULL), IM_OK);
	assert_true(run_until(e, ch2_has_op));
	assert_int_equal(e->ch2.groups_seen[0], g1);
	router_get_stats(e->r, &st);
	assert_int_equal(st.unavailable, 0);
}

static bool
both_have_replies(env *e)
{
	return e->cn1.replies >= 1 && e->cn2.replies >= 1;
}

static void
test_router_routes_replies_to_the_connector_in_the_route(void **state)
{
	env *e = *state;
	static imrpc_Rpc m;
	imrpc_Replies *rs = &m.body.replies;
	uint32_t i;

	start_nodes(e, true, true, true, false);
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_replies_tag;
	for (i = 0; i < 3; i++) {
		imrpc_Reply *r = &rs->replies[rs->replies_count++];

		r->has_route = true;
		r->route.connector = router_node_id(i == 1 ? "connector-2"
							   : "connector-1");
		r->route.req_id = 100 + i;
		r->kind = 1;
		r->seq = 500 + i;
	}
	assert_int_equal(rpc_conn_call(e->ch1.c, &m, 0, on_ack, NULL), IM_OK);
	assert_true(run_until(e, both_have_replies));
	assert_int_equal(e->cn1.replies, 1);
	assert_int_equal(e->cn2.replies, 1);
	rs = &e->cn1.last_replies->body.replies;
	assert_int_equal(rs->replies_count, 2);
	assert_int_equal(rs->replies[0].route.req_id, 100);
	assert_int_equal(rs->replies[1].route.req_id, 102);
	rs = &e->cn2.last_replies->body.replies;
	assert_int_equal(rs->replies_count, 1);
	assert_int_equal(rs->replies[0].seq, 501);
}

static bool
answered_badly(env *e)
{
	return e->acks_bad >= 1;
}

/* A Router that has no connection to a reply's Connector (it just
 * started, or the Connector is reconnecting) refuses the batch, so the
 * Chatter resends it through another Router instead of losing the ack. */
static void
test_router_refuses_replies_for_an_absent_connector(void **state)
{
	env *e = *state;
	static imrpc_Rpc m;
	imrpc_Reply *r;

	start_nodes(e, true, false, true, false);
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_replies_tag;
	r = &m.body.replies.replies[m.body.replies.replies_count++];
	r->has_route = true;
	r->route.connector = router_node_id("connector-2");
	r->route.req_id = 300;
	r->kind = 1;
	r->seq = 9;
	assert_int_equal(rpc_conn_call(e->ch1.c, &m, 0, on_ack, NULL), IM_OK);
	assert_true(run_until(e, answered_badly));
	assert_int_equal(e->acks, 0);
	assert_int_equal(e->cn1.replies, 0);
}

static bool
cn1_replied_and_acked(env *e)
{
	return e->cn1.replies >= 1 && e->acks >= 1;
}

/* A Forward in flight to a Chatter that loses the group's slot (it died
 * or was paused and another took over) is answered unavailable at the
 * map reload that shows the move, not at the forward timeout. */
static void
test_router_answers_forwards_to_a_chatter_that_lost_the_slot(void **state)
{
	env *e = *state;
	static imrpc_Rpc m;
	uint64_t g1 = id_in(0, 8, 0);
	const imrpc_Reply *rep;

	start_nodes(e, true, false, true, false);
	e->ch1.hold = true;
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_forward_tag;
	m.body.forward.ops[m.body.forward.ops_count++] =
		send_op(g1, 31, "connector-1");
	assert_int_equal(rpc_conn_call(e->cn1.c, &m, 0, on_ack, NULL), IM_OK);
	assert_true(run_until(e, ch1_has_op));
	assert_int_equal(im_store_slot_cas(e->st, IM_KIND_GROUP,
					   im_shard_slot_of(g1, NSLOTS), 1,
					   "chatter-2", NULL),
			 IM_OK);
	assert_int_equal(router_reload(e->r), IM_OK);
	assert_true(run_until(e, cn1_replied_and_acked));
	assert_unavailable_reply(&e->cn1, 31, g1);
	rep = &e->cn1.last_replies->body.replies.replies[0];
	assert_string_equal(rep->text, "chatter lost the slot");
}

static bool
both_have_delivers(env *e)
{
	return e->cn1.delivers >= 1 && e->cn2.delivers >= 1 && e->acks >= 1;
}

static imrpc_Msg
msg(uint64_t group, uint64_t seq)
{
	imrpc_Msg x;

	memset(&x, 0, sizeof(x));
	x.group = group;
	x.seq = seq;
	x.body.size = 1;
	x.body.bytes[0] = (uint8_t)seq;
	return x;
}

static void
test_router_splits_a_deliver_into_one_rpc_per_connector(void **state)
{
	env *e = *state;
	static imrpc_Rpc m;
	imrpc_Deliver *d = &m.body.deliver;
	uint64_t u1 = id_in(0, 8, 0), u2 = id_in(8, 16, 0);
	uint64_t u3 = id_in(0, 8, 1);
	const imrpc_Deliver *got;

	start_nodes(e, true, true, true, false);
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_deliver_tag;
	d->msgs[d->msgs_count++] = msg(40, 1);
	d->msgs[d->msgs_count++] = msg(40, 2);
	d->msgs[d->msgs_count++] = msg(41, 7);
	d->fanouts[0].group = 40;
	d->fanouts[0].first = 0;
	d->fanouts[0].count = 2;
	d->fanouts[0].members[0] = u1;
	d->fanouts[0].members[1] = u2;
	d->fanouts[0].members_count = 2;
	d->fanouts[1].group = 41;
	d->fanouts[1].first = 2;
	d->fanouts[1].count = 1;
	d->fanouts[1].members[0] = u3;
	d->fanouts[1].members_count = 1;
	d->fanouts_count = 2;
	assert_int_equal(rpc_conn_call(e->ch1.c, &m, 0, on_ack, NULL), IM_OK);
	assert_true(run_until(e, both_have_delivers));
	/* Exactly one RPC per destination Connector for the batch. */
	assert_int_equal(e->cn1.delivers, 1);
	assert_int_equal(e->cn2.delivers, 1);

	got = &e->cn1.last_deliver->body.deliver;
	assert_int_equal(got->msgs_count, 3);
	assert_int_equal(got->fanouts_count, 2);
	assert_int_equal(got->fanouts[0].members_count, 1);
	assert_int_equal(got->fanouts[0].members[0], u1);
	assert_int_equal(got->fanouts[1].members[0], u3);
	assert_int_equal(got->msgs[got->fanouts[1].first].seq, 7);

	/* connector-2 holds only u2: only group 40's two messages. */
	got = &e->cn2.last_deliver->body.deliver;
	assert_int_equal(got->msgs_count, 2);
	assert_int_equal(got->fanouts_count, 1);
	assert_int_equal(got->fanouts[0].group, 40);
	assert_int_equal(got->fanouts[0].first, 0);
	assert_int_equal(got->fanouts[0].count, 2);
	assert_int_equal(got->fanouts[0].members_count, 1);
	assert_int_equal(got->fanouts[0].members[0], u2);
	assert_int_equal(got->msgs[1].seq, 2);
}

static bool
both_have_events(env *e)
{
	return e->cn1.events >= 1 && e->cn2.events >= 1;
}

static void
test_router_routes_user_events_by_the_users_slot(void **state)
{
	env *e = *state;
	static imrpc_Rpc m;
	imrpc_UserEvents *ev = &m.body.user_events;
	uint64_t u1 = id_in(0, 8, 0), u2 = id_in(8, 16, 0);

	start_nodes(e, true, true, false, false);
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_user_events_tag;
	ev->events[ev->events_count].user = u1;
	ev->events[ev->events_count++].type = 1;
	ev->events[ev->events_count].user = u2;
	ev->events[ev->events_count++].type = 2;
	ev->events[ev->events_count].user = u1;
	ev->events[ev->events_count++].type = 3;
	/* One-way from a Connector (the owner of the acting user). */
	assert_int_equal(rpc_conn_send(e->cn1.c, &m), IM_OK);
	assert_true(run_until(e, both_have_events));
	ev = &e->cn1.last_events->body.user_events;
	assert_int_equal(ev->events_count, 2);
	assert_int_equal(ev->events[0].type, 1);
	assert_int_equal(ev->events[1].type, 3);
	ev = &e->cn2.last_events->body.user_events;
	assert_int_equal(ev->events_count, 1);
	assert_int_equal(ev->events[0].user, u2);
}

static bool
cn2_has_events(env *e)
{
	return e->cn2.events >= 1;
}

static bool
cn1_has_events(env *e)
{
	return e->cn1.events >= 1;
}

/*
 * A user's slot moved after the Router's last map load: the Router still
 * routes the user's events to the old owner. The old owner sends them back
 * (hops 1); the Router then reloads its map first and routes them to the
 * owner the store names.
 */
static void
test_router_reloads_its_map_for_an_event_sent_back_by_a_connector(
	void **state)
{
	env *e = *state;
	static imrpc_Rpc m;
	imrpc_UserEvents *ev = &m.body.user_events;
	uint64_t u1 = id_in(0, 8, 0);

	start_nodes(e, true, true, false, false);
	assert_int_equal(im_store_slot_cas(e->st, IM_KIND_USER,
					   im_shard_slot_of(u1, NSLOTS), 1,
					   "connector-2", NULL),
			 IM_OK);
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_user_events_tag;
	ev->events[0].user = u1;
	ev->events[0].type = 4;
	ev->events_count = 1;
	assert_int_equal(rpc_conn_send(e->cn2.c, &m), IM_OK);
	assert_true(run_until(e, cn1_has_events)); /* the stale owner */
	assert_int_equal(e->cn2.events, 0);
	ev->events[0].hops = 1; /* connector-1 sends it back */
	assert_int_equal(rpc_conn_send(e->cn1.c, &m), IM_OK);
	assert_true(run_until(e, cn2_has_events));
	assert_int_equal(e->cn1.events, 1);
	ev = &e->cn2.last_events->body.user_events;
	assert_int_equal(ev->events_count, 1);
	assert_int_equal(ev->events[0].user, u1);
	assert_int_equal(ev->events[0].hops, 1);
}

/*
 * A Connector back as a new incarnation says Hello with its new name and
 * the route id of its first one: replies to requests it routed before
 * the rename still reach it.
 */
static void
test_router_routes_replies_by_the_route_id_said_in_hello(void **state)
{
	env *e = *state;
	static imrpc_Rpc m;
	imrpc_Reply *r = &m.body.replies.replies[0];

	e->cn1.route_id = router_node_id("connector-1/00000001");
	fake_start(e, &e->cn1, "connector-1/00000002",
		   imrpc_Role_ROLE_CONNECTOR);
	fake_start(e, &e->ch1, "chatter-1", imrpc_Role_ROLE_CHATTER);
	hellos_wanted = 2;
	assert_true(run_until(e, hellos_done));
	e->acks = 0;
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_replies_tag;
	m.body.replies.replies_count = 1;
	r->has_route = true;
	r->route.connector = router_node_id("connector-1/00000001");
	r->route.req_id = 42;
	r->kind = 1;
	r->seq = 7;
	assert_int_equal(rpc_conn_call(e->ch1.c, &m, 0, on_ack, NULL), IM_OK);
	assert_true(run_until(e, cn1_has_replies));
	assert_int_equal(e->cn1.last_replies->body.replies.replies[0]
				 .route.req_id,
			 42);
	assert_int_equal(e->acks_bad, 0);
}

/*
 * An event for a user whose Connector is not connected (dead, its slot
 * not moved yet) is kept, not dropped: when the slot moves and the new
 * owner asks for a map reload, it goes there.
 */
static void
test_router_keeps_an_event_until_its_users_new_owner_is_known(
	void **state)
{
	env *e = *state;
	static imrpc_Rpc m;
	imrpc_UserEvents *ev = &m.body.user_events;
	uint64_t u1 = id_in(0, 8, 0);
	router_stats st;

	start_nodes(e, false, true, false, false);
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_user_events_tag;
	ev->events[0].user = u1;
	ev->events[0].type = 1;
	ev->events_count = 1;
	assert_int_equal(rpc_conn_call(e->cn2.c, &m, 0, on_ack, NULL),
			 IM_OK);
	assert_true(run_until(e, hellos_done)); /* hellos_wanted: 1 */
	router_get_stats(e->r, &st);
	assert_int_equal(st.parked, 1);
	assert_int_equal(st.dropped, 0);
	assert_int_equal(e->cn2.events, 0);
	/* connector-1's slot moves to connector-2, which says so. */
	assert_int_equal(im_store_slot_cas(e->st, IM_KIND_USER,
					   im_shard_slot_of(u1, NSLOTS), 1,
					   "connector-2", NULL),
			 IM_OK);
	memset(&m, 0, sizeof(m));
	m.which_body = imrpc_Rpc_slot_map_tag;
	m.body.slot_map.reload = true;
	assert_int_equal(rpc_conn_send(e->cn2.c, &m), IM_OK);
	assert_true(run_until(e, cn2_has_events));
	ev = &e->cn2.last_events->body.user_events;
	assert_int_equal(ev->events_count, 1);
	assert_int_equal(ev->events[0].user, u1);
	router_get_stats(e->r, &st);
	assert_int_equal(st.events, 1);
	assert_int_equal(st.dropped, 0);
}

static void
test_router_create_checks_its_arguments(void **state)
{
	env *e = *state;
	router_opts ro = ROUTER_OPTS_INIT;
	router *r = NULL;

	assert_int_equal(router_create(NULL, e->loop, e->st, e->map,
				       "127.0.0.1", 0, NULL),
			 IM_EINVAL);
	assert_int_equal(router_create(&r, e->loop, NULL, e->map, "127.0.0.1",
				       0, NULL),
			 IM_EINVAL);
	assert_int_equal(router_create(&r, e->loop, e->st, NULL, "127.0.0.1",
				       0, NULL),
			 IM_EINVAL);
	ro.max_conns = 0;
	assert_int_equal(router_create(&r, e->loop, e->st, e->map,
				       "127.0.0.1", 0, &ro),
			 IM_EINVAL);
	ro = (router_opts)ROUTER_OPTS_INIT;
	assert_int_equal(router_create(&r, e->loop, e->st, e->map, "nohost",
				       0, &ro),
			 IM_EINVAL);
	ro.max_nodes = 0; /* detection needs room for the node rows */
	assert_int_equal(router_create(&r, e->loop, e->st, e->map,
				       "127.0.0.1", 0, &ro),
			 IM_EINVAL);
	assert_null(r);
	assert_int_equal(router_reload(NULL), IM_EINVAL);
	assert_int_equal(router_tick(NULL), IM_EINVAL);
	router_destroy(NULL);
	assert_int_not_equal(router_node_id("connector-1"),
			     router_node_id("connector-2"));
	assert_int_not_equal(router_node_id(""), 0);
}

/* ---- failure detection ------------------------------------------------ */

/*
 * Nodes registered in the store at the fake time e->now; group slots 0-5
 * to chatter-1, 6-10 to chatter-2, 11-15 to chatter-3 (their owner
 * strings, epoch 1), user slots to connector-1. The Router judges by
 * router_tick() with the fake clock (no timer).
 */
static uint64_t
fake_now(void *clock)
{
	return ((env *)clock)->now;
}

static const char *const ch_names[3] = {"chatter-1", "chatter-2",
					"chatter-3"};

static void
fd_router_hb(env *e, router **r, im_shard_map **map, uint32_t heartbeat_ms)
{
	im_shard_opts so = IM_SHARD_OPTS_INIT;
	router_opts ro = ROUTER_OPTS_INIT;

	so.nslots = NSLOTS;
	assert_int_equal(im_shard_create(map, &so), IM_OK);
	ro.refresh_ms = 0;
	ro.heartbeat_ms = heartbeat_ms;
	ro.dead_after_ms = 1500;
	ro.now_ms = fake_now;
	ro.clock = e;
	assert_int_equal(router_create(r, e->loop, e->st, *map, "127.0.0.1",
				       0, &ro),
			 IM_OK);
}

static void
fd_router(env *e, router **r, im_shard_map **map)
{
	fd_router_hb(e, r, map, 0); /* router_tick() by hand */
}

static int
fd_setup(void **state)
{
	env *e = calloc(1, sizeof(*e));
	uint64_t inc;
	uint32_t s;
	int i;

	assert_non_null(e);
	E = e;
	e->now = 5000000;
	assert_int_equal(im_store_sqlite_open(&e->st, ":memory:", NULL, NULL,
					      0),
			 IM_OK);
	for (i = 0; i < 3; i++) {
		assert_int_equal(im_store_node_register(e->st, ch_names[i],
							IM_NODE_CHATTER, "-",
							e->now, &inc),
				 IM_OK);
		cl_owner_of(e->own[i], sizeof(e->own[i]), ch_names[i], inc);
	}
	assert_int_equal(im_store_node_register(e->st, "connector-1",
						IM_NODE_CONNECTOR,
						"127.0.0.1:1", e->now, &inc),
			 IM_OK);
	cl_owner_of(e->cown, sizeof(e->cown), "connector-1", inc);
	for (s = 0; s < NSLOTS; s++) {
		assert_int_equal(im_store_slot_cas(e->st, IM_KIND_USER, s, 0,
						   e->cown, NULL),
				 IM_OK);
		assert_int_equal(im_store_slot_cas(e->st, IM_KIND_GROUP, s, 0,
						   e->own[s < 6    ? 0
							  : s < 11 ? 1
								   : 2],
						   NULL),
				 IM_OK);
	}
	e->loop = ev_loop_new(EVFLAG_AUTO);
	ev_timer_init(&e->tick, noop, 0.01, 0.01);
	ev_timer_start(e->loop, &e->tick);
	fd_router(e, &e->r, &e->map);
	*state = e;
	return 0;
}

/* The three Chatters and the Connector connect to e->r. */
static void
fd_start(env *e)
{
	fake_start(e, &e->ch1, e->own[0], imrpc_Role_ROLE_CHATTER);
	fake_start(e, &e->ch2, e->own[1], imrpc_Role_ROLE_CHATTER);
	fake_start(e, &e->ch3, e->own[2], imrpc_Role_ROLE_CHATTER);
	fake_start(e, &e->cn1, e->cown, imrpc_Role_ROLE_CONNECTOR);
	hellos_wanted = 4;
	assert_true(run_until(e, hellos_done));
	e->acks = 0;
}

/* Time passes; the named nodes heartbeat the store. */
static void
fd_advance(env *e, uint64_t ms, bool ch1, bool ch2, bool ch3)
{
	bool beat[3] = {ch1, ch2, ch3};
	int i;

	e->now += ms;
	for (i = 0; i < 3; i++) {
		if (beat[i]) {
			assert_int_equal(im_store_node_heartbeat(e->st,
								 ch_names[i],
								 e->now),
					 IM_OK);
		}
	}
	assert_int_equal(im_store_node_heartbeat(e->st, "connector-1",
						 e->now),
			 IM_OK);
}

static uint64_t hb_wanted;

static bool
heartbeats_answered(env *e)
{
	router_stats st;

	router_get_stats(e->r, &st);
	return st.heartbeats >= hb_wanted;
}

/* One judging tick of e->r, then its Heartbeats answered (by the nodes
 * that are not muted: `answering` of them). */
static void
fd_tick(env *e, int answering)
{
	router_stats st;

	router_get_stats(e->r, &st);
	hb_wanted = st.heartbeats + (uint64_t)answering;
	assert_int_equal(router_tick(e->r), IM_OK);
	assert_true(run_until(e, heartbeats_answered));
}

/* The group slots as the store has them now. */
static void
store_slots(env *e, im_shard_entry out[NSLOTS], im_shard_map **m)
{
	im_shard_opts so = IM_SHARD_OPTS_INIT;
	uint32_t s;

	so.nslots = NSLOTS;
	assert_int_equal(im_shard_create(m, &so), IM_OK);
	assert_int_equal(im_shard_load(*m, e->st), IM_OK);
	for (s = 0; s < NSLOTS; s++) {
		assert_int_equal(im_shard_get_slot(*m, IM_KIND_GROUP, s,
						   &out[s]),
				 IM_OK);
	}
}

/* Every slot chatter-2 held is now chatter-1's or chatter-3's, moved
 * exactly once (epoch 2), the others untouched, and the spread fair. */
static void
assert_moved_once_fairly(env *e)
{
	im_shard_entry got[NSLOTS];
	im_shard_map *m = NULL;
	uint32_t s, n1 = 0, n3 = 0;

	store_slots(e, got, &m);
	for (s = 0; s < NSLOTS; s++) {
		bool was2 = s >= 6 && s < 11;

		assert_string_not_equal(got[s].owner, e->own[1]);
		assert_int_equal(got[s].epoch, was2 ? 2 : 1);
		if (!was2) {
			assert_string_equal(got[s].owner,
					    e->own[s < 6 ? 0 : 2]);
		}
		n1 += strcmp(got[s].owner, e->own[0]) == 0;
		n3 += strcmp(got[s].owner, e->own[2]) == 0;
	}
	assert_int_equal(n1, NSLOTS / 2);
	assert_int_equal(n3, NSLOTS / 2);
	im_shard_destroy(m);
}

static bool
live_nodes_told(env *e)
{
	return e->ch1.slot_maps >= 1 && e->ch3.slot_maps >= 1 &&
	       e->cn1.slot_maps >= 1;
}

static void
test_router_moves_a_dead_chatters_slots_fairly_to_live_chatters(
	void **state)
{
	env *e = *state;
	router_stats st;
	im_shard_entry ent;

	fd_start(e);
	e->ch2.mute = true; /* chatter-2 stops answering and beating */
	fd_advance(e, 1000, true, false, true);
	fd_tick(e, 3);
	/* 1 s of silence: not yet. */
	router_get_stats(e->r, &st);
	assert_int_equal(st.dead, 0);
	assert_int_equal(st.moved, 0);
	assert_true(e->ch2.heartbeats >= 1);
	fd_advance(e, 1000, true, false, true);
	fd_tick(e, 3);
	router_get_stats(e->r, &st);
	assert_int_equal(st.dead, 1);
	assert_int_equal(st.moved, 5);
	assert_int_equal(st.conflicts, 0);
	assert_moved_once_fairly(e);
	/* The Router's own map has it, and the new owners (and the
	 * Connector) were told at once. */
	assert_int_equal(im_shard_get_slot(e->map, IM_KIND_GROUP, 6, &ent),
			 IM_OK);
	assert_int_equal(ent.epoch, 2);
	assert_true(run_until(e, live_nodes_told));
	/* Nothing left to do at the next tick. */
	fd_advance(e, 250, true, false, true);
	fd_tick(e, 3);
	router_get_stats(e->r, &st);
	assert_int_equal(st.moved, 5);
}

/* Silent towards this Router but heartbeating the store (a partition
 * between the two): one Router's view does not decide. Answering this
 * Router but stale in the store: not dead either. */
static void
test_router_keeps_the_slots_of_a_node_alive_on_one_side(void **state)
{
	env *e = *state;
	router_stats st;
	im_shard_entry got[NSLOTS];
	im_shard_map *m = NULL;
	int i;

	fd_start(e);
	e->ch2.mute = true;
	for (i = 0; i < 4; i++) {
		fd_advance(e, 1000, true, true, true);
		fd_tick(e, 3);
	}
	router_get_stats(e->r, &st);
	assert_int_equal(st.dead, 0);
	assert_int_equal(st.moved, 0);
	/* Now it answers us (the Heartbeat in flight too) but stops
	 * beating the store. */
	e->ch2.mute = false;
	{
		static imrpc_Rpc ack;

		memset(&ack, 0, sizeof(ack));
		ack.which_body = imrpc_Rpc_ack_tag;
		assert_int_equal(rpc_conn_reply(e->ch2.c, e->ch2.hb_req, &ack),
				 IM_OK);
	}
	hb_wanted++;
	assert_true(run_until(e, heartbeats_answered));
	fd_advance(e, 1000, true, false, true);
	fd_tick(e, 4);
	fd_advance(e, 1000, true, false, true);
	fd_tick(e, 4);
	router_get_stats(e->r, &st);
	assert_int_equal(st.dead, 0);
	assert_int_equal(st.moved, 0);
	store_slots(e, got, &m);
	assert_string_equal(got[6].owner, e->own[1]);
	assert_int_equal(got[6].epoch, 1);
	im_shard_destroy(m);
}

/* A node that came back as a new incarnation: its old owner string has
 * no row any more, so the old life's slots move once it is silent. */
static void
test_router_moves_the_slots_of_an_older_incarnation(void **state)
{
	env *e = *state;
	router_stats st;
	uint64_t inc;

	fd_start(e);
	e->ch2.mute = true;
	assert_int_equal(im_store_node_register(e->st, "chatter-2",
						IM_NODE_CHATTER, "-", e->now,
						&inc),
			 IM_OK);
	fd_advance(e, 1000, true, true, true);
	fd_tick(e, 3);
	router_get_stats(e->r, &st);
	assert_int_equal(st.moved, 0); /* not silent long enough yet */
	fd_advance(e, 1000, true, true, true);
	fd_tick(e, 3);
	router_get_stats(e->r, &st);
	assert_int_equal(st.dead, 1);
	/* The new incarnation is live: the plan gives it its share. */
	assert_int_equal(st.moved, 5);
}

/*
 * Two Routers judge the same dead Chatter from the same map: they plan
 * the same moves, the first one's CASes win, the second one's all lose
 * (IM_ECONFLICT) and it reloads: every dead slot is owned once by a live
 * node, moved exactly once (epoch 2), and the loser agrees afterwards.
 */
static void
test_two_routers_deciding_at_once_move_each_dead_slot_once(void **state)
{
	env *e = *state;
	router_stats a, b;
	uint32_t s;

	fd_router(e, &e->r2, &e->map2); /* loads the same map now */
	fd_start(e);
	e->ch2.mute = true;
	fd_advance(e, 2000, true, false, true);
	assert_int_equal(router_tick(e->r), IM_OK);
	assert_int_equal(router_tick(e->r2), IM_OK);
	router_get_stats(e->r, &a);
	router_get_stats(e->r2, &b);
	assert_int_equal(a.dead, 1);
	assert_int_equal(b.dead, 1);
	assert_int_equal(a.moved + b.moved, 5);
	assert_int_equal(a.moved, 5);
	assert_int_equal(b.conflicts, 5);
	assert_moved_once_fairly(e);
	for (s = 0; s < NSLOTS; s++) {
		im_shard_entry x, y;

		assert_int_equal(im_shard_get_slot(e->map, IM_KIND_GROUP, s,
						   &x),
				 IM_OK);
		assert_int_equal(im_shard_get_slot(e->map2, IM_KIND_GROUP, s,
						   &y),
				 IM_OK);
		assert_string_equal(x.owner, y.owner);
		assert_int_equal(x.epoch, y.epoch);
	}
	/* And neither undoes the other later. */
	fd_advance(e, 500, true, false, true);
	assert_int_equal(router_tick(e->r2), IM_OK);
	assert_int_equal(router_tick(e->r), IM_OK);
	router_get_stats(e->r, &a);
	router_get_stats(e->r2, &b);
	assert_int_equal(a.moved + b.moved, 5);
	assert_int_equal(b.conflicts, 5);
	assert_moved_once_fairly(e);
}

/*
 * The Router's own loop stalled for 2 s (a blocking store call) while the
 * store also missed chatter-2's heartbeats (a store restart): that time
 * was not chatter-2's silence, so it is not judged dead at once; a real
 * silence after that still is.
 */
static void
test_router_does_not_count_its_own_stall_as_silence(void **state)
{
	env *e = *state;
	router_stats st;

	/* With a period, so a stall is told from a tick; its timer ticks
	 * at the fake time too, which changes nothing here. */
	router_destroy(e->r);
	im_shard_destroy(e->map);
	fd_router_hb(e, &e->r, &e->map, 250);
	fd_start(e);
	e->ch2.mute = true;
	assert_int_equal(router_tick(e->r), IM_OK);
	fd_advance(e, 2000, true, false, true); /* the stall */
	assert_int_equal(router_tick(e->r), IM_OK);
	router_get_stats(e->r, &st);
	assert_int_equal(st.dead, 0);
	assert_int_equal(st.moved, 0);
	/* Listening again: ticks every 250 ms, chatter-2 stays silent. */
	while (e->now < 5000000 + 2000 + 1750) {
		fd_advance(e, 250, true, false, true);
		assert_int_equal(router_tick(e->r), IM_OK);
	}
	router_get_stats(e->r, &st);
	assert_int_equal(st.dead, 1);
	assert_int_equal(st.moved, 5);
}

static bool
conn_gone(env *e)
{
	router_stats st;

	router_get_stats(e->r, &st);
	return st.conns == 3;
}

/* The Router with a 100 ms period (so 3 periods, 300 ms, is shorter than
 * the 1500 ms timeout), the nodes connected, chatter-2's connection
 * closed as a killed process's is; chatter-2 beats the store or not. */
static void
fd_close_chatter_2(env *e)
{
	router_destroy(e->r);
	im_shard_destroy(e->map);
	fd_router_hb(e, &e->r, &e->map, 100);
	fd_start(e);
	assert_int_equal(router_tick(e->r), IM_OK);
	fake_stop(&e->ch2);
	assert_true(run_until(e, conn_gone));
}

/* A killed Chatter (its connection closed, its store heartbeat stopped)
 * is dead after 3 periods, not after the full timeout (issue 13). */
static void
test_router_judges_an_owner_whose_connection_closed_in_three_periods(
	void **state)
{
	env *e = *state;
	router_stats st;
	int i;

	fd_close_chatter_2(e);
	for (i = 0; i < 2; i++) {
		fd_advance(e, 100, true, false, true);
		assert_int_equal(router_tick(e->r), IM_OK);
	}
	router_get_stats(e->r, &st);
	assert_int_equal(st.dead, 0); /* 200 ms: not yet */
	for (i = 0; i < 2; i++) {
		fd_advance(e, 100, true, false, true);
		assert_int_equal(router_tick(e->r), IM_OK);
	}
	router_get_stats(e->r, &st);
	assert_int_equal(st.dead, 1); /* 400 ms, far below 1500 */
	assert_int_equal(st.moved, 5);
	assert_moved_once_fairly(e);
}

/* A closed connection alone is no death: a node that still beats the
 * store keeps its slots past the short timeout and the long one (its
 * connection may have been closed by a network fault or by us). */
static void
test_router_keeps_the_slots_of_a_closed_owner_that_beats_the_store(
	void **state)
{
	env *e = *state;
	router_stats st;
	int i;

	fd_close_chatter_2(e);
	for (i = 0; i < 20; i++) {
		fd_advance(e, 100, true, true, true);
		assert_int_equal(router_tick(e->r), IM_OK);
	}
	router_get_stats(e->r, &st);
	assert_int_equal(st.dead, 0);
	assert_int_equal(st.moved, 0);
}

/* A dead Connector's user slots go to the live Connectors; with none
 * left, nothing moves (the next tick retries). */
static void
test_router_moves_nothing_when_no_node_of_the_role_is_live(void **state)
{
	env *e = *state;
	router_stats st;
	im_shard_entry got[NSLOTS];
	im_shard_map *m = NULL;

	fd_start(e);
	e->cn1.mute = true;
	e->now += 2000; /* connector-1 (the only one) stops beating */
	assert_int_equal(im_store_node_heartbeat(e->st, "chatter-1", e->now),
			 IM_OK);
	assert_int_equal(im_store_node_heartbeat(e->st, "chatter-2", e->now),
			 IM_OK);
	assert_int_equal(im_store_node_heartbeat(e->st, "chatter-3", e->now),
			 IM_OK);
	assert_int_equal(router_tick(e->r), IM_OK);
	router_get_stats(e->r, &st);
	assert_int_equal(st.dead, 1);
	assert_int_equal(st.moved, 0);
	store_slots(e, got, &m);
	assert_int_equal(got[0].epoch, 1);
	im_shard_destroy(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
		T(test_router_forwards_each_op_to_the_chatter_owning_its_group),
		T(test_router_answers_unavailable_when_the_owner_is_not_connected),
		T(test_router_answers_unavailable_when_a_forward_times_out),
		T(test_router_reloads_the_map_when_a_groups_owner_is_unknown),
		T(test_router_routes_replies_to_the_connector_in_the_route),
		T(test_router_refuses_replies_for_an_absent_connector),
		T(test_router_answers_forwards_to_a_chatter_that_lost_the_slot),
		T(test_router_splits_a_deliver_into_one_rpc_per_connector),
		T(test_router_routes_user_events_by_the_users_slot),
		T(test_router_reloads_its_map_for_an_event_sent_back_by_a_connector),
		T(test_router_routes_replies_by_the_route_id_said_in_hello),
		T(test_router_keeps_an_event_until_its_users_new_owner_is_known),
		T(test_router_create_checks_its_arguments),
#undef T
#define F(t) cmocka_unit_test_setup_teardown(t, fd_setup, teardown)
		F(test_router_moves_a_dead_chatters_slots_fairly_to_live_chatters),
		F(test_router_keeps_the_slots_of_a_node_alive_on_one_side),
		F(test_router_moves_the_slots_of_an_older_incarnation),
		F(test_two_routers_deciding_at_once_move_each_dead_slot_once),
		F(test_router_moves_nothing_when_no_node_of_the_role_is_live),
		F(test_router_does_not_count_its_own_stall_as_silence),
		F(test_router_judges_an_owner_whose_connection_closed_in_three_periods),
		F(test_router_keeps_the_slots_of_a_closed_owner_that_beats_the_store),
#undef F
	};

	return cmocka_run_group_tests_name("cluster_router", tests, NULL,
					   NULL);
}
