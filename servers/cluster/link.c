/*
 * The link of a Connector or Chatter to the Routers: see link.h. Outgoing
 * messages are built in one preallocated envelope; incoming ones are turned
 * into role structs in preallocated arrays whose pointers (bodies, member
 * lists, names) point into the decoded envelope, borrowed for the call as
 * role.h allows.
 */
#include "link.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

#define FWD_OPS (sizeof(((imrpc_Forward *)0)->ops) / sizeof(imrpc_Op))
#define REPLIES_MAX \
	(sizeof(((imrpc_Replies *)0)->replies) / sizeof(imrpc_Reply))
#define DELIVER_MSGS (sizeof(((imrpc_Deliver *)0)->msgs) / sizeof(imrpc_Msg))
#define DELIVER_FANS \
	(sizeof(((imrpc_Deliver *)0)->fanouts) / sizeof(imrpc_Fanout))
#define FAN_MEMBERS \
	(sizeof(((imrpc_Fanout *)0)->members) / sizeof(uint64_t))
#define EVENTS_MAX \
	(sizeof(((imrpc_UserEvents *)0)->events) / sizeof(imrpc_UserEvent))
#define OP_MEMBERS (sizeof(((imrpc_Op *)0)->members) / sizeof(uint64_t))
#define CALLS_MAX 1024
#define LATE_ACKS_MAX 1024
#define REPLY_CALLS_MAX 64
/* Longer than a Router's wait for a Chatter (router.h, 5 s by default):
 * the Router answers first, with the ops' fate. */
#define FORWARD_TIMEOUT_MS 10000

/* A Forward in flight: what to answer if it fails. */
typedef struct fwd_ctx {
	struct cl_link *l;
	uint32_t n;
	role_reply reps[FWD_OPS];
} fwd_ctx;

/* Replies in flight: resent through another Router if the connection to
 * the first one is lost before it acked them. */
typedef struct rep_ctx {
	struct cl_link *l;
	bool resent;
	imrpc_Replies msg;
} rep_ctx;

struct cl_link {
	role_router base; /* first: the roles see only this */
	struct ev_loop *loop;
	cl_member *m;
	cl_peers *routers;
	char owner[IM_OWNER_MAX + 1];
	imrpc_Role role;
	connector *cn;
	chatter *ch;
	imrpc_Rpc *out;
	imrpc_Rpc *hello;
	fwd_ctx *ctx;
	uint32_t ctx_free[CALLS_MAX];
	uint32_t nctx_free;
	rep_ctx *rctx;
	uint32_t rctx_free[REPLY_CALLS_MAX];
	uint32_t nrctx_free;
	/* incoming, as role structs */
	role_op ops[FWD_OPS];
	role_reply reps[REPLIES_MAX];
	im_msg msgs[DELIVER_MSGS];
	role_fanout fans[DELIVER_FANS];
	role_uevent evs[EVENTS_MAX];
	void (*slot_map_cb)(void *payload);
	void *slot_map_payload;
	cl_link_stats st;
	uint64_t replies_lost;   /* since the last warning about them */
	ev_tstamp replies_warned;
	bool destroying; /* calls failing now must not touch the peers */
	/* When a Router last showed it serves us: took our Hello or sent
	 * us something (its Heartbeats come every heartbeat_ms). */
	ev_tstamp heard;
	/* A Chatter acks a Forward only after the commit of the loop turn
	 * that received it (ack_w runs after the Chatter's commit): a
	 * Chatter dying in between leaves the Router's call unanswered, so
	 * it fails and the ops are answered unavailable and retried. */
	ev_prepare ack_w;
	struct late_ack {
		rpc_conn *c;
		uint64_t req_id;
	} late[LATE_ACKS_MAX];
	uint32_t nlate;
};

/* ---- outgoing ---------------------------------------------------------- */

static rpc_conn *
router_for(cl_link *l, uint64_t key)
{
	return cl_peers_pick(l->routers, key);
}

static void
op_to_pb(imrpc_Op *o, const role_op *op)
{
	size_t i;

	memset(o, 0, sizeof(*o));
	o->kind = (uint32_t)op->kind;
	o->has_route = true;
	o->route.connector = op->route.connector;
	o->route.tag = op->route.tag;
	o->route.req_id = op->route.req_id;
	o->user = op->user;
	o->group = op->group;
	o->dedup_id = op->dedup_id;
	o->reply_to = op->reply_to;
	o->type = op->type;
	o->body.size = (pb_size_t)(op->body_len <= sizeof(o->body.bytes)
					   ? op->body_len
					   : 0);
	if (o->body.size > 0) {
		memcpy(o->body.bytes, op->body, o->body.size);
	}
	o->target = op->target;
	if (op->name != NULL) {
		snprintf(o->name, sizeof(o->name), "%s", op->name);
	}
	for (i = 0; i < op->nmembers && i < OP_MEMBERS; i++) {
		o->members[o->members_count++] = op->members[i];
	}
}

static void
fail_locally(cl_link *l, const role_reply *reps, size_t n)
{
	l->st.unavailable += n;
	if (l->cn != NULL && n > 0) {
		connector_reply(l->cn, reps, n);
	}
}

static void
unavailable_of(role_reply *r, const role_op *op, const char *why)
{
	memset(r, 0, sizeof(*r));
	r->route = op->route;
	r->kind = op->kind;
	r->code = ROLE_ERR_UNAVAILABLE;
	r->text = why;
	r->group = op->group;
	r->dedup_id = op->dedup_id;
}

static void
fwd_done(rpc_conn *c, int status, const imrpc_Rpc *reply, void *payload)
{
	fwd_ctx *x = payload;
	cl_link *l = x->l;

	(void)c;
	if (!l->destroying &&
	    (status != IM_OK || reply->which_body != imrpc_Rpc_ack_tag ||
	     reply->body.ack.code != im_Code_OK)) {
		fail_locally(l, x->reps, x->n);
	}
	l->ctx_free[l->nctx_free++] = (uint32_t)(x - l->ctx);
}

static uint64_t
op_key(const role_op *op)
{
	return op->kind == ROLE_OP_CREATE_GROUP ? op->user : op->group;
}

/* Connector -> Router: ops to the Router of their group, 12 per call. */
static void
l_submit(role_router *rr, const role_op *ops, size_t n)
{
	cl_link *l = (cl_link *)rr;
	size_t i, j;
	bool *done = calloc(n > 0 ? n : 1, sizeof(bool));

	if (done == NULL) {
		for (i = 0; i < n; i++) {
			role_reply r;

			unavailable_of(&r, &ops[i], "out of memory");
			fail_locally(l, &r, 1);
		}
		return;
	}
	for (i = 0; i < n; i++) {
		rpc_conn *c;
		imrpc_Forward *f = &l->out->body.forward;
		fwd_ctx *x;
		int rc = IM_EUNAVAIL;

		if (done[i]) {
			continue;
		}
		c = router_for(l, op_key(&ops[i]));
		memset(l->out, 0, sizeof(*l->out));
		l->out->which_body = imrpc_Rpc_forward_tag;
		x = l->nctx_free > 0 ? &l->ctx[l->ctx_free[--l->nctx_free]]
				     : NULL;
		if (x != NULL) {
			x->l = l;
			x->n = 0;
		}
		for (j = i; j < n && f->ops_count < FWD_OPS; j++) {
			if (done[j] || router_for(l, op_key(&ops[j])) != c) {
				continue;
			}
			done[j] = true;
			op_to_pb(&f->ops[f->ops_count++], &ops[j]);
			if (x != NULL) {
				unavailable_of(&x->reps[x->n++], &ops[j],
					       "router unreachable");
			}
		}
		if (c != NULL && x != NULL) {
			rc = rpc_conn_call(c, l->out, FORWARD_TIMEOUT_MS,
					   fwd_done, x);
		}
		if (rc == IM_OK) {
			l->st.sent++;
			continue;
		}
		if (x != NULL) {
			fail_locally(l, x->reps, x->n);
			l->ctx_free[l->nctx_free++] = (uint32_t)(x - l->ctx);
		} else {
			for (j = 0; j < f->ops_count; j++) {
				role_reply r;
				role_op op;

				memset(&op, 0, sizeof(op));
				op.route.connector = f->ops[j].route.connector;
				op.route.tag = f->ops[j].route.tag;
				op.route.req_id = f->ops[j].route.req_id;
				op.kind = (role_op_kind)f->ops[j].kind;
				op.group = f->ops[j].group;
				op.dedup_id = f->ops[j].dedup_id;
				unavailable_of(&r, &op, "router busy");
				fail_locally(l, &r, 1);
			}
		}
	}
	free(done);
}

typedef struct other_ctx {
	rpc_conn *not;
	rpc_conn *found;
} other_ctx;

static void
find_other(rpc_conn *c, void *payload)
{
	other_ctx *o = payload;

	if (o->found == NULL && c != o->not) {
		o->found = c;
	}
}

/*
 * Answers to clients that never leave this node: the clients' answer
 * deadline resends them (same dedup id), so nothing is lost for good, but
 * the cause must be findable in the log. At most one line per second.
 */
static void
replies_lost(cl_link *l, size_t n, const char *why)
{
	ev_tstamp now = ev_now(l->loop);

	l->st.dropped += n;
	l->replies_lost += n;
	if (now - l->replies_warned >= 1.0) {
		LOG_W("%llu answers to clients dropped (%s)",
		      (unsigned long long)l->replies_lost, why);
		l->replies_lost = 0;
		l->replies_warned = now;
	}
}

static void
rep_done(rpc_conn *c, int status, const imrpc_Rpc *reply, void *payload)
{
	rep_ctx *x = payload;
	cl_link *l = x->l;
	rpc_conn *other;
	bool refused = status == IM_OK && reply != NULL &&
		       reply->which_body == imrpc_Rpc_ack_tag &&
		       reply->body.ack.code != im_Code_OK;

	if (l->destroying) {
		l->rctx_free[l->nrctx_free++] = (uint32_t)(x - l->rctx);
		return;
	}
	if (refused && !x->resent) {
		/* The Router has no connection to the Connector (it just
		 * started, or the Connector is reconnecting): try another
		 * Router. A client may get a duplicate ack; it ignores it. */
		other_ctx o = {c, NULL};

		cl_peers_each(l->routers, find_other, &o);
		other = o.found;
	} else {
		other = router_for(l, x->msg.replies_count > 0
					      ? x->msg.replies[0]
							.route.connector
					      : 0);
	}
	/* Lost with its connection (not merely slow: resending a timed-out
	 * batch could answer a client twice) or refused: once more,
	 * another way. */
	if (((status != IM_OK && !rpc_conn_is_up(c)) || refused) &&
	    !x->resent && x->msg.replies_count > 0 && other != NULL &&
	    other != c) {
		memset(l->out, 0, sizeof(*l->out));
		l->out->which_body = imrpc_Rpc_replies_tag;
		l->out->body.replies = x->msg;
		x->resent = true;
		if (rpc_conn_call(other, l->out, 0, rep_done, x) == IM_OK) {
			l->st.sent++;
			return;
		}
	}
	if (refused) {
		replies_lost(l, x->msg.replies_count, "refused by the Routers");
	} else if (status != IM_OK) {
		replies_lost(l, x->msg.replies_count,
			     rpc_conn_is_up(c) ? "a Router did not answer"
					       : "Router connection lost");
	}
	l->rctx_free[l->nrctx_free++] = (uint32_t)(x - l->rctx);
}

static void
send_replies(cl_link *l, rpc_conn *c)
{
	rep_ctx *x;

	if (c != NULL && l->nrctx_free > 0) {
		x = &l->rctx[l->rctx_free[--l->nrctx_free]];
		x->l = l;
		x->resent = false;
		x->msg = l->out->body.replies;
		if (rpc_conn_call(c, l->out, 0, rep_done, x) == IM_OK) {
			l->st.sent++;
			return;
		}
		l->rctx_free[l->nrctx_free++] = (uint32_t)(x - l->rctx);
	}
	/* No room to track it: one-way, as deliveries go. */
	if (c != NULL && rpc_conn_send(c, l->out) == IM_OK) {
		l->st.sent++;
	} else {
		replies_lost(l, l->out->body.replies.replies_count,
			     c == NULL ? "no Router up" : "Router refused");
	}
}

static void
send_out(cl_link *l, rpc_conn *c, size_t items)
{
	if (c != NULL && rpc_conn_send(c, l->out) == IM_OK) {
		l->st.sent++;
	} else {
		l->st.dropped += items;
	}
}

/* Chatter -> Router: answers, grouped by their Connector's Router. */
static void
l_reply(role_router *rr, const role_reply *reps, size_t n)
{
	cl_link *l = (cl_link *)rr;
	bool *done = calloc(n > 0 ? n : 1, sizeof(bool));
	size_t i, j;

	if (done == NULL) {
		l->st.dropped += n;
		return;
	}
	for (i = 0; i < n; i++) {
		rpc_conn *c;
		imrpc_Replies *o = &l->out->body.replies;

		if (done[i]) {
			continue;
		}
		c = router_for(l, reps[i].route.connector);
		memset(l->out, 0, sizeof(*l->out));
		l->out->which_body = imrpc_Rpc_replies_tag;
		for (j = i; j < n && o->replies_count < REPLIES_MAX; j++) {
			const role_reply *r = &reps[j];
			imrpc_Reply *p;

			if (done[j] || router_for(l, r->route.connector) != c) {
				continue;
			}
			done[j] = true;
			p = &o->replies[o->replies_count++];
			p->has_route = true;
			p->route.connector = r->route.connector;
			p->route.tag = r->route.tag;
			p->route.req_id = r->route.req_id;
			p->kind = (uint32_t)r->kind;
			p->code = (uint32_t)r->code;
			if (r->text != NULL) {
				snprintf(p->text, sizeof(p->text), "%s",
					 r->text);
			}
			p->group = r->group;
			p->dedup_id = r->dedup_id;
			p->seq = r->seq;
			p->time_ms = r->time_ms;
			p->dup = r->dup;
		}
		send_replies(l, c);
	}
	free(done);
}

static void
msg_to_pb(imrpc_Msg *o, const im_msg *m)
{
	memset(o, 0, sizeof(*o));
	o->group = m->conv;
	o->seq = m->seq;
	o->prev_seq = m->prev_seq;
	o->ordinal = m->ordinal;
	o->sender = m->sender;
	o->dedup_id = m->dedup_id;
	o->reply_to = m->reply_to;
	o->time_ms = m->time_ms;
	o->type = m->type;
	o->body.size = (pb_size_t)(m->body_len <= sizeof(o->body.bytes)
					   ? m->body_len
					   : 0);
	if (o->body.size > 0) {
		memcpy(o->body.bytes, m->body, o->body.size);
	}
}

/* Append k messages (room checked by the caller); their first index. */
static uint32_t
append_msgs(imrpc_Deliver *d, const im_msg *msgs, size_t k)
{
	uint32_t first = d->msgs_count;
	size_t x;

	for (x = 0; x < k; x++) {
		msg_to_pb(&d->msgs[d->msgs_count++], &msgs[x]);
	}
	return first;
}

/*
 * Pack the fanouts whose Router is c into Deliver messages: each piece is
 * at most DELIVER_MSGS messages x FAN_MEMBERS members; a message chunk is
 * shared by the member chunks that follow it in the same Deliver.
 */
static void
deliver_via(cl_link *l, rpc_conn *c, const role_fanout *f, size_t n,
	    bool *done)
{
	imrpc_Deliver *d = &l->out->body.deliver;
	size_t i, mi, ui;
	size_t items = 0;

	memset(l->out, 0, sizeof(*l->out));
	l->out->which_body = imrpc_Rpc_deliver_tag;
	for (i = 0; i < n; i++) {
		if (done[i] || router_for(l, f[i].group) != c) {
			continue;
		}
		done[i] = true;
		for (mi = 0; mi < f[i].nmsgs; mi += DELIVER_MSGS) {
			size_t k = f[i].nmsgs - mi < DELIVER_MSGS
					   ? f[i].nmsgs - mi
					   : DELIVER_MSGS;
			uint32_t first = UINT32_MAX;

			for (ui = 0; ui < f[i].nmembers; ui += FAN_MEMBERS) {
				size_t u = f[i].nmembers - ui < FAN_MEMBERS
						   ? f[i].nmembers - ui
						   : FAN_MEMBERS;
				imrpc_Fanout *fo;
				size_t x;

				if (d->fanouts_count == DELIVER_FANS ||
				    (first == UINT32_MAX &&
				     d->msgs_count + k > DELIVER_MSGS)) {
					send_out(l, c, items);
					items = 0;
					memset(l->out, 0, sizeof(*l->out));
					l->out->which_body =
						imrpc_Rpc_deliver_tag;
					first = UINT32_MAX;
				}
				if (first == UINT32_MAX) {
					first = append_msgs(d, &f[i].msgs[mi],
							    k);
				}
				fo = &d->fanouts[d->fanouts_count++];
				fo->group = f[i].group;
				fo->first = first;
				fo->count = (uint32_t)k;
				for (x = 0; x < u; x++) {
					fo->members[fo->members_count++] =
						f[i].members[ui + x];
				}
				items += u;
			}
		}
	}
	if (d->fanouts_count > 0) {
		send_out(l, c, items);
	}
}

static void
l_deliver(role_router *rr, const role_fanout *f, size_t n)
{
	cl_link *l = (cl_link *)rr;
	bool *done = calloc(n > 0 ? n : 1, sizeof(bool));
	size_t i;

	if (done == NULL) {
		l->st.dropped += n;
		return;
	}
	for (i = 0; i < n; i++) {
		if (!done[i]) {
			deliver_via(l, router_for(l, f[i].group), f, n, done);
		}
	}
	free(done);
}

static void
l_user_events(role_router *rr, const role_uevent *ev, size_t n)
{
	cl_link *l = (cl_link *)rr;
	bool *done = calloc(n > 0 ? n : 1, sizeof(bool));
	size_t i, j;

	if (done == NULL) {
		l->st.dropped += n;
		return;
	}
	for (i = 0; i < n; i++) {
		imrpc_UserEvents *o = &l->out->body.user_events;
		rpc_conn *c;

		if (done[i]) {
			continue;
		}
		c = router_for(l, ev[i].user);
		memset(l->out, 0, sizeof(*l->out));
		l->out->which_body = imrpc_Rpc_user_events_tag;
		for (j = i; j < n && o->events_count < EVENTS_MAX; j++) {
			imrpc_UserEvent *p;

			if (done[j] || router_for(l, ev[j].user) != c) {
				continue;
			}
			done[j] = true;
			p = &o->events[o->events_count++];
			p->user = ev[j].user;
			p->type = ev[j].type;
			p->group = ev[j].group;
			p->actor = ev[j].actor;
			p->read_seq = ev[j].read_seq;
			p->read_ordinal = ev[j].read_ordinal;
			snprintf(p->name, sizeof(p->name), "%s", ev[j].name);
			p->hops = ev[j].hops;
		}
		send_out(l, c, o->events_count);
	}
	free(done);
}

static const struct role_router_ops link_ops = {
	.submit = l_submit,
	.reply = l_reply,
	.deliver = l_deliver,
	.user_events = l_user_events,
};

/* ---- incoming ---------------------------------------------------------- */

static void
in_forward(cl_link *l, const imrpc_Forward *f)
{
	uint32_t i;

	for (i = 0; i < f->ops_count; i++) {
		const imrpc_Op *o = &f->ops[i];
		role_op *op = &l->ops[i];

		memset(op, 0, sizeof(*op));
		op->kind = (role_op_kind)o->kind;
		op->route.connector = o->route.connector;
		op->route.tag = o->route.tag;
		op->route.req_id = o->route.req_id;
		op->user = o->user;
		op->group = o->group;
		op->dedup_id = o->dedup_id;
		op->reply_to = o->reply_to;
		op->type = o->type;
		op->body_len = o->body.size;
		op->body = o->body.bytes;
		op->target = o->target;
		op->name = o->name;
		op->members = o->members;
		op->nmembers = o->members_count;
	}
	if (l->ch != NULL && f->ops_count > 0) {
		chatter_submit(l->ch, l->ops, f->ops_count);
	}
}

static void
in_replies(cl_link *l, const imrpc_Replies *rs)
{
	uint32_t i;

	for (i = 0; i < rs->replies_count; i++) {
		const imrpc_Reply *p = &rs->replies[i];
		role_reply *r = &l->reps[i];

		memset(r, 0, sizeof(*r));
		r->route.connector = p->route.connector;
		r->route.tag = p->route.tag;
		r->route.req_id = p->route.req_id;
		r->kind = (role_op_kind)p->kind;
		r->code = (int)p->code;
		r->text = p->text[0] != '\0' ? p->text : NULL;
		r->group = p->group;
		r->dedup_id = p->dedup_id;
		r->seq = p->seq;
		r->time_ms = p->time_ms;
		r->dup = p->dup;
	}
	if (l->cn != NULL && rs->replies_count > 0) {
		connector_reply(l->cn, l->reps, rs->replies_count);
	}
}

static void
in_deliver(cl_link *l, const imrpc_Deliver *d)
{
	uint32_t i, n = 0;

	for (i = 0; i < d->msgs_count; i++) {
		const imrpc_Msg *p = &d->msgs[i];
		im_msg *m = &l->msgs[i];

		memset(m, 0, sizeof(*m));
		m->conv = p->group;
		m->seq = p->seq;
		m->prev_seq = p->prev_seq;
		m->ordinal = p->ordinal;
		m->sender = p->sender;
		m->dedup_id = p->dedup_id;
		m->reply_to = p->reply_to;
		m->time_ms = p->time_ms;
		m->type = p->type;
		m->body_len = p->body.size;
		m->body = p->body.bytes;
	}
	for (i = 0; i < d->fanouts_count; i++) {
		const imrpc_Fanout *fo = &d->fanouts[i];

		if (fo->count == 0 || fo->first >= d->msgs_count ||
		    fo->count > d->msgs_count - fo->first) {
			continue;
		}
		l->fans[n].group = fo->group;
		l->fans[n].msgs = &l->msgs[fo->first];
		l->fans[n].nmsgs = fo->count;
		l->fans[n].members = fo->members;
		l->fans[n].nmembers = fo->members_count;
		n++;
	}
	if (l->cn != NULL && n > 0) {
		connector_deliver(l->cn, l->fans, n);
	}
}

static void
in_events(cl_link *l, const imrpc_UserEvents *ue)
{
	uint32_t i;

	for (i = 0; i < ue->events_count; i++) {
		const imrpc_UserEvent *p = &ue->events[i];
		role_uevent *e = &l->evs[i];

		memset(e, 0, sizeof(*e));
		e->user = p->user;
		e->type = p->type;
		e->group = p->group;
		e->actor = p->actor;
		e->read_seq = p->read_seq;
		e->read_ordinal = p->read_ordinal;
		snprintf(e->name, sizeof(e->name), "%s", p->name);
		e->hops = p->hops;
	}
	if (l->cn != NULL && ue->events_count > 0) {
		connector_user_events(l->cn, l->evs, ue->events_count);
	}
}

typedef struct conn_find {
	rpc_conn *c;
	bool found;
} conn_find;

static void
find_conn(rpc_conn *c, void *payload)
{
	conn_find *f = payload;

	f->found = f->found || c == f->c;
}

static void
late_acks_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	cl_link *l = w->data;
	static imrpc_Rpc ack;
	uint32_t i;

	(void)loop;
	(void)revents;
	memset(&ack, 0, sizeof(ack));
	ack.which_body = imrpc_Rpc_ack_tag;
	for (i = 0; i < l->nlate; i++) {
		/* only to a connection that is still one of ours and up */
		conn_find f = {l->late[i].c, false};

		cl_peers_each(l->routers, find_conn, &f);
		if (f.found) {
			(void)rpc_conn_reply(l->late[i].c, l->late[i].req_id,
					     &ack);
		}
	}
	l->nlate = 0;
}

static void
on_request(rpc_conn *c, uint64_t req_id, const imrpc_Rpc *m, void *payload)
{
	cl_link *l = payload;
	static imrpc_Rpc ack;

	l->st.received++;
	l->heard = ev_now(l->loop);
	switch (m->which_body) {
	case imrpc_Rpc_forward_tag:
		in_forward(l, &m->body.forward);
		break;
	case imrpc_Rpc_replies_tag:
		in_replies(l, &m->body.replies);
		break;
	case imrpc_Rpc_deliver_tag:
		in_deliver(l, &m->body.deliver);
		break;
	case imrpc_Rpc_user_events_tag:
		in_events(l, &m->body.user_events);
		break;
	case imrpc_Rpc_slot_map_tag:
		if (l->slot_map_cb != NULL) {
			l->slot_map_cb(l->slot_map_payload);
		}
		break;
	case imrpc_Rpc_heartbeat_tag:
		/* A Router checking we are alive (router.h): echo it. */
		if (req_id != 0) {
			memset(&ack, 0, sizeof(ack));
			ack.which_body = imrpc_Rpc_heartbeat_tag;
			ack.body.heartbeat = m->body.heartbeat;
			(void)rpc_conn_reply(c, req_id, &ack);
		}
		return;
	default:
		break;
	}
	if (req_id != 0 && l->ch != NULL &&
	    m->which_body == imrpc_Rpc_forward_tag &&
	    l->nlate < LATE_ACKS_MAX) {
		l->late[l->nlate].c = c;
		l->late[l->nlate].req_id = req_id;
		l->nlate++;
		return;
	}
	if (req_id != 0) {
		memset(&ack, 0, sizeof(ack));
		ack.which_body = imrpc_Rpc_ack_tag;
		(void)rpc_conn_reply(c, req_id, &ack);
	}
}

static void
hello_done(rpc_conn *c, int status, const imrpc_Rpc *reply, void *payload)
{
	cl_link *l = payload;

	/* Connected is not yet served: a full Router accepts and closes. */
	if (status == IM_OK && reply->which_body == imrpc_Rpc_ack_tag &&
	    reply->body.ack.code == 0) {
		l->heard = ev_now(l->loop);
		LOG_I("router %s took our Hello", rpc_conn_peer(c));
	}
}

static void
on_state(rpc_conn *c, bool up, int err, const char *why, void *payload)
{
	cl_link *l = payload;

	if (!up) {
		LOG_W("router %s lost: %s", rpc_conn_peer(c), why);
		(void)err;
		return;
	}
	/* First on every connection: who we are, so the Router can send us
	 * what is ours. Frames keep their order on a connection, so what we
	 * send next arrives after it. */
	(void)rpc_conn_call(c, l->hello, 0, hello_done, l);
	LOG_I("router %s connected", rpc_conn_peer(c));
}

int
cl_link_create(cl_link **out, struct ev_loop *loop, cl_member *m,
	       const char *owner, imrpc_Role role, const rpc_opts *rpc)
{
	rpc_opts o;
	cl_link *l;
	uint32_t i;
	int rc;

	if (out == NULL || loop == NULL || m == NULL || owner == NULL ||
	    owner[0] == '\0' || strlen(owner) > IM_OWNER_MAX || rpc == NULL ||
	    (role != imrpc_Role_ROLE_CONNECTOR &&
	     role != imrpc_Role_ROLE_CHATTER)) {
		return IM_EINVAL;
	}
	l = calloc(1, sizeof(*l));
	if (l == NULL) {
		return IM_ENOMEM;
	}
	l->out = calloc(1, sizeof(*l->out));
	l->hello = calloc(1, sizeof(*l->hello));
	l->ctx = calloc(CALLS_MAX, sizeof(*l->ctx));
	l->rctx = calloc(REPLY_CALLS_MAX, sizeof(*l->rctx));
	if (l->out == NULL || l->hello == NULL || l->ctx == NULL ||
	    l->rctx == NULL) {
		cl_link_destroy(l);
		return IM_ENOMEM;
	}
	for (i = 0; i < CALLS_MAX; i++) {
		l->ctx_free[i] = CALLS_MAX - 1 - i;
	}
	l->nctx_free = CALLS_MAX;
	for (i = 0; i < REPLY_CALLS_MAX; i++) {
		l->rctx_free[i] = REPLY_CALLS_MAX - 1 - i;
	}
	l->nrctx_free = REPLY_CALLS_MAX;
	l->base.ops = &link_ops;
	l->loop = loop;
	l->heard = ev_time(); /* ev_now may predate a slow start */
	l->m = m;
	l->role = role;
	snprintf(l->owner, sizeof(l->owner), "%s", owner);
	l->hello->which_body = imrpc_Rpc_hello_tag;
	snprintf(l->hello->body.hello.node, sizeof(l->hello->body.hello.node),
		 "%s", owner);
	l->hello->body.hello.role = role;
	/* Routes name this first owner for the life of the process (a
	 * Connector's route.connector, router_node_id()); Hellos after a
	 * rename keep it. */
	l->hello->body.hello.route_id = router_node_id(owner);
	o = *rpc;
	o.on_request = on_request;
	o.on_state = on_state;
	o.payload = l;
	rc = cl_peers_create(&l->routers, loop, m, IM_NODE_ROUTER, 64, &o);
	if (rc != IM_OK) {
		cl_link_destroy(l);
		return rc;
	}
	cl_peers_sync(l->routers);
	ev_prepare_init(&l->ack_w, late_acks_cb);
	l->ack_w.data = l;
	ev_set_priority(&l->ack_w, EV_MINPRI);
	ev_prepare_start(loop, &l->ack_w);
	*out = l;
	return IM_OK;
}

role_router *
cl_link_router(cl_link *l)
{
	return l != NULL ? &l->base : NULL;
}

void
cl_link_set_connector(cl_link *l, connector *cn)
{
	l->cn = cn;
}

void
cl_link_set_chatter(cl_link *l, chatter *ch)
{
	l->ch = ch;
}

void
cl_link_sync(cl_link *l)
{
	if (l != NULL) {
		cl_peers_sync(l->routers);
	}
}

size_t
cl_link_routers_up(const cl_link *l)
{
	return l != NULL ? cl_peers_up(l->routers) : 0;
}

ev_tstamp
cl_link_heard(const cl_link *l)
{
	return l != NULL ? l->heard : 0.0;
}

static void
add_out_bytes(rpc_conn *c, void *payload)
{
	rpc_stats st;

	rpc_conn_get_stats(c, &st);
	*(size_t *)payload += st.out_bytes;
}

bool
cl_link_idle(cl_link *l)
{
	size_t out = 0;

	if (l == NULL) {
		return true;
	}
	cl_peers_each(l->routers, add_out_bytes, &out);
	return l->nctx_free == CALLS_MAX && l->nrctx_free == REPLY_CALLS_MAX &&
	       out == 0;
}

void
cl_link_get_stats(const cl_link *l, cl_link_stats *out)
{
	if (l != NULL && out != NULL) {
		*out = l->st;
	}
}

static void
send_reload(rpc_conn *c, void *payload)
{
	cl_link *l = payload;

	if (rpc_conn_send(c, l->out) == IM_OK) {
		l->st.sent++;
	}
}

void
cl_link_notify_slots(cl_link *l)
{
	if (l == NULL) {
		return;
	}
	memset(l->out, 0, sizeof(*l->out));
	l->out->which_body = imrpc_Rpc_slot_map_tag;
	l->out->body.slot_map.reload = true;
	cl_peers_each(l->routers, send_reload, l);
}

static void
send_hello(rpc_conn *c, void *payload)
{
	cl_link *l = payload;

	if (rpc_conn_is_up(c)) {
		(void)rpc_conn_call(c, l->hello, 0, hello_done, l);
	}
}

void
cl_link_set_owner(cl_link *l, const char *owner)
{
	if (l == NULL || owner == NULL || owner[0] == '\0' ||
	    strlen(owner) > IM_OWNER_MAX) {
		return;
	}
	snprintf(l->owner, sizeof(l->owner), "%s", owner);
	snprintf(l->hello->body.hello.node, sizeof(l->hello->body.hello.node),
		 "%s", owner);
	cl_peers_each(l->routers, send_hello, l);
}

void
cl_link_on_slot_map(cl_link *l, void (*cb)(void *payload), void *payload)
{
	l->slot_map_cb = cb;
	l->slot_map_payload = payload;
}

void
cl_link_destroy(cl_link *l)
{
	if (l == NULL) {
		return;
	}
	/* Destroy the link before the role. Calls failing while the peers
	 * go away only release their contexts: clients retry anyway. */
	l->destroying = true;
	if (l->loop != NULL) {
		ev_prepare_stop(l->loop, &l->ack_w);
	}
	l->nlate = 0;
	cl_peers_destroy(l->routers);
	free(l->out);
	free(l->hello);
	free(l->ctx);
	free(l->rctx);
	free(l);
}
