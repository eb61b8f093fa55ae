/*
 * The cluster Router: see router.h. Every outgoing message is built in one
 * of three preallocated scratch envelopes, Forwards in flight hold their
 * ops' routes in a preallocated context pool, so routing never allocates.
 */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "im_code.h"
#include "member.h"

/* Values of role_op_kind (servers/roles/role.h). */
#define OP_CREATE_GROUP 2

#define FWD_OPS (sizeof(((imrpc_Forward *)0)->ops) / sizeof(imrpc_Op))
#define REPLIES_MAX \
	(sizeof(((imrpc_Replies *)0)->replies) / sizeof(imrpc_Reply))
#define DELIVER_MSGS (sizeof(((imrpc_Deliver *)0)->msgs) / sizeof(imrpc_Msg))
#define DELIVER_FANS \
	(sizeof(((imrpc_Deliver *)0)->fanouts) / sizeof(imrpc_Fanout))
#define EVENTS_MAX \
	(sizeof(((imrpc_UserEvents *)0)->events) / sizeof(imrpc_UserEvent))
/* Distinct destination Connectors of one Deliver or UserEvents batch. */
#define DEST_MAX 64
#define CHANGES_MAX \
	(sizeof(((imrpc_SlotMap *)0)->changes) / sizeof(imrpc_SlotChange))
/* Distinct slot owners judged per tick (the map interns at most its
 * max_nodes names; more are judged at later ticks). */
#define OWNERS_MAX 256

typedef struct rnode {
	struct router *r;
	rpc_conn *conn; /* NULL: free entry */
	char name[IM_NODE_NAME_MAX + 1];
	uint32_t role;
	uint32_t id;
	uint32_t gen; /* bumped per connection: stale references see it */
	bool hello;
	bool hb_inflight; /* a Heartbeat awaits its answer */
} rnode;

/* When this Router last heard from a slot owner (Hello or a Heartbeat
 * answer); kept after its connection is gone. */
typedef struct rwatch {
	char owner[IM_NODE_NAME_MAX + 1];
	uint64_t heard_ms;
} rwatch;

/* A node row as the judge reads it. */
typedef struct rrow {
	char owner[IM_NODE_NAME_MAX + 1]; /* cl_owner_of(name, incarnation) */
	im_node_role role;
	uint64_t heartbeat_ms;
} rrow;

/* A user event waiting for its owner to be connected here. */
typedef struct parked {
	imrpc_UserEvent ev;
	ev_tstamp deadline;
} parked;
#define PARK_MAX 1024
#define PARK_SECS 10.0

/* A Connector's Forward waiting for the Chatters' Acks before its own. */
typedef struct origin {
	rnode *node;
	uint32_t gen;
	uint64_t req_id;
	uint32_t pending;
} origin;

/* What a Forward in flight must remember to answer its ops on failure. */
typedef struct fwd_op {
	imrpc_Route route;
	uint32_t kind;
	uint64_t group;
	uint64_t dedup_id;
} fwd_op;

typedef struct fwd_ctx {
	struct router *r;
	origin *from; /* NULL: nobody waits */
	rnode *dest;  /* the Chatter called; NULL: the ctx is free */
	bool abandoned; /* answered unavailable; the reply is ignored */
	uint32_t n;
	fwd_op ops[FWD_OPS];
} fwd_ctx;

struct router {
	struct ev_loop *loop;
	im_store *st;
	im_shard_map *map;
	router_opts opts;
	rpc_server *srv;
	rnode *nodes;
	fwd_ctx *ctx;
	uint32_t *ctx_free;
	uint32_t nctx_free;
	origin *orig;
	uint32_t *orig_free;
	uint32_t norig_free;
	imrpc_Rpc *out;  /* the message being routed on */
	imrpc_Rpc *aux;  /* ERR_UNAVAILABLE replies */
	imrpc_Rpc *ack;  /* answers to requests */
	ev_timer refresh;
	ev_tstamp last_reload;
	router_stats stats;
	bool destroying;
	/* failure detection */
	ev_timer hb;
	uint64_t started_ms;
	uint64_t last_tick_ms;
	rwatch *watch;
	uint32_t nwatch;
	rrow *rows;
	uint32_t nrows;
	bool rows_truncated;
	im_shard_move *moves;
	size_t max_moves;
	/* user events without a way on yet (route_events) */
	parked *park;
	uint32_t npark;
	bool retrying;
};

uint32_t
router_node_id(const char *name)
{
	uint32_t h = 2166136261u;

	for (; name != NULL && *name != '\0'; name++) {
		h ^= (uint8_t)*name;
		h *= 16777619u;
	}
	return h != 0 ? h : 1;
}

static rnode *
node_by_name(router *r, const char *name)
{
	uint32_t i;

	for (i = 0; i < r->opts.max_conns; i++) {
		rnode *n = &r->nodes[i];

		if (n->conn != NULL && n->hello && strcmp(n->name, name) == 0 &&
		    rpc_conn_is_up(n->conn)) {
			return n;
		}
	}
	return NULL;
}

static rnode *
node_by_id(router *r, uint32_t id)
{
	uint32_t i;

	for (i = 0; i < r->opts.max_conns; i++) {
		rnode *n = &r->nodes[i];

		if (n->conn != NULL && n->hello && n->id == id &&
		    n->role == imrpc_Role_ROLE_CONNECTOR &&
		    rpc_conn_is_up(n->conn)) {
			return n;
		}
	}
	return NULL;
}

/* Any connected Chatter, the same one for the same key while the set of
 * Chatters stays the same. */
static rnode *
any_chatter(router *r, uint64_t key)
{
	uint32_t i, count = 0, pick;

	for (i = 0; i < r->opts.max_conns; i++) {
		rnode *n = &r->nodes[i];

		count += n->conn != NULL && n->hello &&
			 n->role == imrpc_Role_ROLE_CHATTER;
	}
	if (count == 0) {
		return NULL;
	}
	pick = (uint32_t)(key % count);
	for (i = 0; i < r->opts.max_conns; i++) {
		rnode *n = &r->nodes[i];

		if (n->conn != NULL && n->hello &&
		    n->role == imrpc_Role_ROLE_CHATTER && pick-- == 0) {
			return rpc_conn_is_up(n->conn) ? n : NULL;
		}
	}
	return NULL;
}

/*
 * A slot whose owner we do not know (or do not hear from) may just have
 * been claimed after our last reload: reload now, at most every 100 ms,
 * rather than drop or refuse until the next periodic refresh.
 */
static bool
reload_if_stale(router *r)
{
	ev_tstamp now = ev_now(r->loop);

	if (now - r->last_reload < 0.1) {
		return false;
	}
	return router_reload(r) == IM_OK;
}

static void
answer(router *r, rpc_conn *c, uint64_t req_id, uint32_t code,
       const char *text)
{
	if (req_id == 0) {
		return;
	}
	memset(r->ack, 0, sizeof(*r->ack));
	r->ack->which_body = imrpc_Rpc_ack_tag;
	r->ack->body.ack.code = code;
	snprintf(r->ack->body.ack.text, sizeof(r->ack->body.ack.text), "%s",
		 text != NULL ? text : "");
	(void)rpc_conn_reply(c, req_id, r->ack);
}

/* Tell the op's Connector its op did not reach a Chatter. */
static void
unavailable(router *r, const fwd_op *op, const char *why)
{
	rnode *dest = node_by_id(r, op->route.connector);
	imrpc_Reply *rep;

	if (dest == NULL) {
		r->stats.dropped++;
		return;
	}
	memset(r->aux, 0, sizeof(*r->aux));
	r->aux->which_body = imrpc_Rpc_replies_tag;
	r->aux->body.replies.replies_count = 1;
	rep = &r->aux->body.replies.replies[0];
	rep->has_route = true;
	rep->route = op->route;
	rep->kind = op->kind;
	rep->code = im_Code_ERR_UNAVAILABLE;
	snprintf(rep->text, sizeof(rep->text), "%s", why);
	rep->group = op->group;
	rep->dedup_id = op->dedup_id;
	if (rpc_conn_send(dest->conn, r->aux) == IM_OK) {
		r->stats.unavailable++;
	} else {
		r->stats.dropped++;
	}
}

static void
fwd_op_of(fwd_op *o, const imrpc_Op *op)
{
	o->route = op->route;
	o->kind = op->kind;
	o->group = op->group;
	o->dedup_id = op->dedup_id;
}

static void
ctx_put(router *r, fwd_ctx *x)
{
	x->dest = NULL;
	x->abandoned = false;
	r->ctx_free[r->nctx_free++] = (uint32_t)(x - r->ctx);
}

/* One Chatter call of a Forward is over; the last one answers it. */
static void
origin_done(router *r, origin *o)
{
	if (o == NULL || --o->pending > 0) {
		return;
	}
	if (!r->destroying && o->node->conn != NULL &&
	    o->node->gen == o->gen) {
		answer(r, o->node->conn, o->req_id, im_Code_OK, NULL);
	}
	r->orig_free[r->norig_free++] = (uint32_t)(o - r->orig);
}

static void
fwd_done(rpc_conn *c, int status, const imrpc_Rpc *reply, void *payload)
{
	fwd_ctx *x = payload;
	router *r = x->r;
	uint32_t i;

	(void)c;
	if (x->abandoned) {
		ctx_put(r, x); /* its ops were answered at the slot move */
		return;
	}
	if (!r->destroying &&
	    (status != IM_OK || reply->which_body != imrpc_Rpc_ack_tag ||
	     reply->body.ack.code != im_Code_OK)) {
		for (i = 0; i < x->n; i++) {
			unavailable(r, &x->ops[i],
				    status != IM_OK ? "chatter unreachable"
						    : "chatter refused");
		}
	}
	ctx_put(r, x);
	origin_done(r, x->from);
}

static rnode *
chatter_for(router *r, const imrpc_Op *op)
{
	im_shard_entry e;

	if (op->kind == OP_CREATE_GROUP) {
		/* A Chatter that owns group slots (it creates the group,
		 * fenced, in one of its own): the owner of the creator's
		 * slot number, else any. */
		rnode *n;

		e = im_shard_get(r->map, IM_KIND_GROUP, op->user);
		n = e.owner[0] != '\0' ? node_by_name(r, e.owner) : NULL;
		return n != NULL ? n : any_chatter(r, op->user);
	}
	e = im_shard_get(r->map, IM_KIND_GROUP, op->group);
	return e.owner[0] != '\0' ? node_by_name(r, e.owner) : NULL;
}

/*
 * Forward each op to its Chatter. The Connector's call is answered when
 * every Chatter acked (or failed: then its ops were answered unavailable),
 * so a Router dying in between makes the Connector's call fail and the
 * ops be retried, instead of vanishing after an early Ack.
 */
static void
handle_forward(router *r, rpc_conn *from, uint64_t req_id,
	       const imrpc_Forward *f)
{
	rnode *dest[FWD_OPS];
	bool done[FWD_OPS] = {false};
	uint32_t i, j, n = f->ops_count;
	origin *org = NULL;

	if (req_id != 0 && r->norig_free > 0 && rpc_conn_user(from) != NULL) {
		org = &r->orig[r->orig_free[--r->norig_free]];
		org->node = rpc_conn_user(from);
		org->gen = org->node->gen;
		org->req_id = req_id;
		/* One for this function: the answer cannot go out before
		 * every call was issued. */
		org->pending = 1;
	}

	for (i = 0; i < n; i++) {
		dest[i] = chatter_for(r, &f->ops[i]);
		if (dest[i] == NULL && reload_if_stale(r)) {
			dest[i] = chatter_for(r, &f->ops[i]);
		}
	}
	for (i = 0; i < n; i++) {
		imrpc_Forward *of = &r->out->body.forward;
		fwd_ctx *x;
		fwd_op o;
		int rc;

		if (done[i]) {
			continue;
		}
		if (dest[i] == NULL) {
			done[i] = true;
			fwd_op_of(&o, &f->ops[i]);
			unavailable(r, &o, "no chatter for the group");
			continue;
		}
		memset(r->out, 0, sizeof(*r->out));
		r->out->which_body = imrpc_Rpc_forward_tag;
		x = r->nctx_free > 0 ? &r->ctx[r->ctx_free[--r->nctx_free]]
				     : NULL;
		for (j = i; j < n; j++) {
			if (!done[j] && dest[j] == dest[i]) {
				done[j] = true;
				of->ops[of->ops_count++] = f->ops[j];
				if (x != NULL) {
					fwd_op_of(&x->ops[of->ops_count - 1],
						  &f->ops[j]);
				}
			}
		}
		rc = IM_EFULL;
		if (x != NULL) {
			x->r = r;
			x->from = org;
			x->dest = dest[i];
			x->abandoned = false;
			x->n = of->ops_count;
			rc = rpc_conn_call(dest[i]->conn, r->out,
					   r->opts.forward_timeout_ms,
					   fwd_done, x);
			if (rc != IM_OK) {
				ctx_put(r, x);
			}
		}
		if (rc == IM_OK) {
			if (org != NULL) {
				org->pending++;
			}
			r->stats.forwards++;
			r->stats.ops += of->ops_count;
			continue;
		}
		for (j = 0; j < of->ops_count; j++) {
			fwd_op_of(&o, &of->ops[j]);
			unavailable(r, &o, rc == IM_EFULL ? "router busy"
							  : "chatter down");
		}
	}
	if (org != NULL) {
		origin_done(r, org);
	} else {
		answer(r, from, req_id, im_Code_OK, NULL);
	}
}
/* Returns false if some reply's Connector is not connected here (it may
 * be through another Router: the Chatter resends the batch there). */
static bool
handle_replies(router *r, const imrpc_Replies *rs)
{
	bool all = true;

	bool done[REPLIES_MAX] = {false};
	uint32_t i, j, n = rs->replies_count;

	for (i = 0; i < n; i++) {
		uint32_t id = rs->replies[i].route.connector;
		imrpc_Replies *o = &r->out->body.replies;
		rnode *dest;

		if (done[i]) {
			continue;
		}
		memset(r->out, 0, sizeof(*r->out));
		r->out->which_body = imrpc_Rpc_replies_tag;
		for (j = i; j < n; j++) {
			if (!done[j] && rs->replies[j].route.connector == id) {
				done[j] = true;
				o->replies[o->replies_count++] = rs->replies[j];
			}
		}
		dest = node_by_id(r, id);
		if (dest != NULL &&
		    rpc_conn_send(dest->conn, r->out) == IM_OK) {
			r->stats.replies += o->replies_count;
		} else {
			r->stats.dropped += o->replies_count;
			all = false;
		}
	}
	return all;
}

static const char *
user_owner(router *r, uint64_t user)
{
	return im_shard_get(r->map, IM_KIND_USER, user).owner;
}

/* Distinct owners (interned pointers: equal names are equal pointers). */
static size_t
add_dest(const char **dests, size_t n, const char *owner)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (dests[i] == owner) {
			return n;
		}
	}
	if (n < DEST_MAX) {
		dests[n++] = owner;
	}
	return n;
}

static void
deliver_to(router *r, const imrpc_Deliver *d, const char *owner)
{
	imrpc_Deliver *o = &r->out->body.deliver;
	bool need[DELIVER_MSGS] = {false};
	uint32_t remap[DELIVER_MSGS];
	uint64_t members = 0;
	uint32_t f, k, i;
	rnode *dest = node_by_name(r, owner);

	memset(r->out, 0, sizeof(*r->out));
	r->out->which_body = imrpc_Rpc_deliver_tag;
	for (f = 0; f < d->fanouts_count; f++) {
		const imrpc_Fanout *in = &d->fanouts[f];
		imrpc_Fanout *of = &o->fanouts[o->fanouts_count];

		if (in->count == 0 || in->first >= d->msgs_count ||
		    in->count > d->msgs_count - in->first) {
			continue; /* refers to no message of the batch */
		}
		for (k = 0; k < in->members_count; k++) {
			if (user_owner(r, in->members[k]) == owner) {
				of->members[of->members_count++] =
					in->members[k];
			}
		}
		if (of->members_count == 0) {
			continue;
		}
		of->group = in->group;
		of->first = in->first;
		of->count = in->count;
		for (i = in->first; i < in->first + in->count; i++) {
			need[i] = true;
		}
		members += of->members_count;
		o->fanouts_count++;
	}
	if (o->fanouts_count == 0) {
		return;
	}
	/* Only the messages these members need; ranges stay contiguous
	 * because a fanout's whole range is kept. */
	for (i = 0; i < d->msgs_count; i++) {
		if (need[i]) {
			remap[i] = o->msgs_count;
			o->msgs[o->msgs_count++] = d->msgs[i];
		}
	}
	for (f = 0; f < o->fanouts_count; f++) {
		o->fanouts[f].first = remap[o->fanouts[f].first];
	}
	if (dest != NULL && rpc_conn_send(dest->conn, r->out) == IM_OK) {
		r->stats.delivers++;
	} else {
		r->stats.dropped += members;
	}
}

/* A user whose Connector is unknown or not connected to us. */
static bool
owner_missing(router *r, uint64_t user)
{
	const char *o = user_owner(r, user);

	return o[0] == '\0' || node_by_name(r, o) == NULL;
}

static void
handle_deliver(router *r, const imrpc_Deliver *d)
{
	const char *dests[DEST_MAX];
	size_t nd = 0, i;
	uint32_t f, k;

	for (f = 0; f < d->fanouts_count; f++) {
		for (k = 0; k < d->fanouts[f].members_count; k++) {
			if (owner_missing(r, d->fanouts[f].members[k])) {
				(void)reload_if_stale(r);
				f = d->fanouts_count - 1;
				break;
			}
		}
	}
	for (f = 0; f < d->fanouts_count; f++) {
		for (k = 0; k < d->fanouts[f].members_count; k++) {
			const char *o = user_owner(r, d->fanouts[f].members[k]);

			if (o[0] == '\0') {
				r->stats.dropped++;
				continue;
			}
			nd = add_dest(dests, nd, o);
		}
	}
	for (i = 0; i < nd; i++) {
		deliver_to(r, d, dests[i]);
	}
}

/* Keep an event that has no way on now (its owner is not connected here:
 * dead and not yet moved, or renamed) to route again at the next map
 * reload, until its deadline. */
static void
park_event(router *r, const imrpc_UserEvent *e, ev_tstamp deadline)
{
	if (r->npark == PARK_MAX || ev_now(r->loop) > deadline) {
		fprintf(stderr,
			"router: user event for %llu: no connected owner "
			"within %.0f s, dropped\n",
			(unsigned long long)e->user, PARK_SECS);
		r->stats.dropped++;
		return;
	}
	r->park[r->npark].ev = *e;
	r->park[r->npark].deadline = deadline;
	r->npark++;
	r->stats.parked++;
}

/*
 * Route events by their users' slots. deadlines: NULL for new events
 * (parked ones get PARK_SECS), else each event's own (parked before);
 * reload: whether the map may be reloaded first.
 */
static void
route_events(router *r, const imrpc_UserEvents *ev, const ev_tstamp *dl,
	     bool reload)
{
	const char *dests[DEST_MAX];
	size_t nd = 0, i;
	uint32_t k;
	ev_tstamp fresh = ev_now(r->loop) + PARK_SECS;

	for (k = 0; k < ev->events_count && reload; k++) {
		if (ev->events[k].hops > 0) {
			/* Sent back by a Connector that does not own the
			 * user: our map is older than the store. Bounces are
			 * rare (a slot just moved) and bounded in hops. */
			(void)router_reload(r);
			break;
		}
		if (owner_missing(r, ev->events[k].user)) {
			(void)reload_if_stale(r);
			break;
		}
	}
	for (k = 0; k < ev->events_count; k++) {
		const char *o = user_owner(r, ev->events[k].user);

		if (o[0] == '\0') {
			park_event(r, &ev->events[k], dl ? dl[k] : fresh);
			continue;
		}
		nd = add_dest(dests, nd, o);
	}
	for (i = 0; i < nd; i++) {
		imrpc_UserEvents *o = &r->out->body.user_events;
		rnode *dest = node_by_name(r, dests[i]);
		uint32_t idx[EVENTS_MAX];

		memset(r->out, 0, sizeof(*r->out));
		r->out->which_body = imrpc_Rpc_user_events_tag;
		for (k = 0; k < ev->events_count; k++) {
			if (user_owner(r, ev->events[k].user) == dests[i]) {
				idx[o->events_count] = k;
				o->events[o->events_count++] = ev->events[k];
			}
		}
		if (dest != NULL &&
		    rpc_conn_send(dest->conn, r->out) == IM_OK) {
			r->stats.events += o->events_count;
			continue;
		}
		for (k = 0; k < o->events_count; k++) {
			park_event(r, &ev->events[idx[k]],
				   dl ? dl[idx[k]] : fresh);
		}
	}
}

static void
handle_events(router *r, const imrpc_UserEvents *ev)
{
	route_events(r, ev, NULL, true);
}

/* The map changed: route the parked events again (those still without
 * a way on are parked again, with their deadlines). */
static void
retry_parked(router *r)
{
	static imrpc_UserEvents batch;
	ev_tstamp dl[EVENTS_MAX];
	uint32_t n, i;

	if (r->npark == 0 || r->retrying) {
		return;
	}
	r->retrying = true;
	n = r->npark;
	/* Take them all out first: routing parks some again at the end. */
	while (n > 0) {
		uint32_t k = n < EVENTS_MAX ? n : (uint32_t)EVENTS_MAX;

		memset(&batch, 0, sizeof(batch));
		for (i = 0; i < k; i++) {
			batch.events[i] = r->park[i].ev;
			dl[i] = r->park[i].deadline;
		}
		batch.events_count = (pb_size_t)k;
		memmove(r->park, r->park + k,
			(r->npark - k) * sizeof(*r->park));
		r->npark -= k;
		n -= k;
		route_events(r, &batch, dl, false);
	}
	r->retrying = false;
}

static void
handle_slot_map(router *r, const imrpc_SlotMap *sm)
{
	uint32_t i;

	for (i = 0; i < sm->changes_count; i++) {
		const imrpc_SlotChange *ch = &sm->changes[i];

		if (ch->kind < IM_KIND_COUNT) {
			(void)im_shard_apply(r->map, (im_kind)ch->kind,
					     ch->slot, ch->epoch, ch->owner);
		}
	}
	if (sm->reload) {
		(void)router_reload(r);
	}
}

static uint64_t now_of(const router *r);
static void watch_heard(router *r, const char *owner, uint64_t now);

static void
on_request(rpc_conn *c, uint64_t req_id, const imrpc_Rpc *m, void *payload)
{
	router *r = payload;
	rnode *n = rpc_conn_user(c);

	switch (m->which_body) {
	case imrpc_Rpc_hello_tag:
		if (n != NULL) {
			snprintf(n->name, sizeof(n->name), "%s",
				 m->body.hello.node);
			n->role = (uint32_t)m->body.hello.role;
			/* A Connector back as a new incarnation keeps the
			 * route id of its first name (rpc.proto Hello). */
			n->id = m->body.hello.route_id != 0
					? m->body.hello.route_id
					: router_node_id(n->name);
			n->hello = true;
			if (n->role == imrpc_Role_ROLE_CONNECTOR ||
			    n->role == imrpc_Role_ROLE_CHATTER) {
				watch_heard(r, n->name, now_of(r));
			}
		}
		answer(r, c, req_id, im_Code_OK, NULL);
		break;
	case imrpc_Rpc_forward_tag:
		handle_forward(r, c, req_id, &m->body.forward);
		break;
	case imrpc_Rpc_replies_tag:
		if (handle_replies(r, &m->body.replies)) {
			answer(r, c, req_id, im_Code_OK, NULL);
		} else {
			answer(r, c, req_id, im_Code_ERR_UNAVAILABLE,
			       "connector not connected here");
		}
		break;
	case imrpc_Rpc_deliver_tag:
		handle_deliver(r, &m->body.deliver);
		answer(r, c, req_id, im_Code_OK, NULL);
		break;
	case imrpc_Rpc_user_events_tag:
		handle_events(r, &m->body.user_events);
		answer(r, c, req_id, im_Code_OK, NULL);
		break;
	case imrpc_Rpc_slot_map_tag:
		handle_slot_map(r, &m->body.slot_map);
		answer(r, c, req_id, im_Code_OK, NULL);
		break;
	case imrpc_Rpc_heartbeat_tag:
		if (req_id != 0) {
			memset(r->ack, 0, sizeof(*r->ack));
			r->ack->which_body = imrpc_Rpc_heartbeat_tag;
			r->ack->body.heartbeat = m->body.heartbeat;
			(void)rpc_conn_reply(c, req_id, r->ack);
		}
		break;
	default:
		answer(r, c, req_id, im_Code_ERR_BAD_REQUEST,
		       "unexpected message");
		break;
	}
}

static void
on_state(rpc_conn *c, bool up, int err, const char *why, void *payload)
{
	router *r = payload;
	uint32_t i;

	(void)err;
	(void)why;
	if (up) {
		for (i = 0; i < r->opts.max_conns; i++) {
			if (r->nodes[i].conn == NULL) {
				uint32_t gen = r->nodes[i].gen + 1;

				memset(&r->nodes[i], 0, sizeof(rnode));
				r->nodes[i].gen = gen;
				r->nodes[i].r = r;
				r->nodes[i].conn = c;
				rpc_conn_set_user(c, &r->nodes[i]);
				r->stats.conns++;
				return;
			}
		}
		/* More than max_conns cannot be accepted (server bound). */
		return;
	}
	if (rpc_conn_user(c) != NULL) {
		rnode *n = rpc_conn_user(c);

		n->conn = NULL;
		n->hello = false;
		r->stats.conns--;
	}
}

/*
 * Forwards in flight to a Chatter that no longer owns the slot of one of
 * their groups (it died or was paused, and another took the slot over)
 * would only fail at the forward timeout. Answer their ops unavailable
 * now, so clients retry at once (same dedup id) and reach the new owner;
 * the old owner's late reply is ignored. Safe: the old owner can no longer
 * commit them (fenced by the slot's new epoch), and what it committed
 * before the move is found by its dedup key.
 */
static void
abandon_moved(router *r)
{
	uint32_t i, j;

	for (i = 0; i < r->opts.max_calls; i++) {
		fwd_ctx *x = &r->ctx[i];
		bool moved = false;

		if (x->dest == NULL || x->abandoned) {
			continue;
		}
		for (j = 0; j < x->n && !moved; j++) {
			im_shard_entry e;

			if (x->ops[j].kind == OP_CREATE_GROUP) {
				continue;
			}
			e = im_shard_get(r->map, IM_KIND_GROUP,
					 x->ops[j].group);
			moved = strcmp(e.owner, x->dest->name) != 0;
		}
		if (!moved) {
			continue;
		}
		for (j = 0; j < x->n; j++) {
			unavailable(r, &x->ops[j], "chatter lost the slot");
		}
		x->abandoned = true;
		origin_done(r, x->from);
		x->from = NULL;
	}
}

int
router_reload(router *r)
{
	int rc;

	if (r == NULL) {
		return IM_EINVAL;
	}
	r->last_reload = ev_now(r->loop);
	rc = im_shard_load(r->map, r->st);
	if (rc != IM_OK) {
		r->stats.map_errors++;
	} else {
		abandon_moved(r);
		retry_parked(r);
	}
	return rc;
}

/* ---- failure detection (router.h) ------------------------------------- */

static uint64_t
wall_ms(void *clock)
{
	(void)clock;
	return (uint64_t)(ev_time() * 1000.0);
}

static uint64_t
now_of(const router *r)
{
	return r->opts.now_ms(r->opts.clock);
}

static rwatch *
watch_find(router *r, const char *owner)
{
	uint32_t i;

	for (i = 0; i < r->nwatch; i++) {
		if (strcmp(r->watch[i].owner, owner) == 0) {
			return &r->watch[i];
		}
	}
	return NULL;
}

/* We heard from owner now. A full table forgets the owner heard from
 * longest ago (it is the first to be judged anyway). */
static void
watch_heard(router *r, const char *owner, uint64_t now)
{
	rwatch *w = watch_find(r, owner);
	uint32_t i;

	if (w == NULL && r->opts.max_nodes == 0) {
		return;
	}
	if (w == NULL && r->nwatch < r->opts.max_nodes) {
		w = &r->watch[r->nwatch++];
		snprintf(w->owner, sizeof(w->owner), "%s", owner);
	} else if (w == NULL) {
		w = &r->watch[0];
		for (i = 1; i < r->nwatch; i++) {
			if (r->watch[i].heard_ms < w->heard_ms) {
				w = &r->watch[i];
			}
		}
		snprintf(w->owner, sizeof(w->owner), "%s", owner);
	}
	w->heard_ms = now;
}

/* Silent towards this Router past the timeout: condition (a). */
static bool
silent(router *r, const char *owner, uint64_t now)
{
	const rwatch *w = watch_find(r, owner);
	uint64_t heard = w != NULL ? w->heard_ms : r->started_ms;

	return now > heard && now - heard > r->opts.dead_after_ms;
}

static void
hb_done(rpc_conn *c, int status, const imrpc_Rpc *reply, void *payload)
{
	rnode *n = payload;
	router *r = n->r;

	(void)reply;
	if (r->destroying || n->conn != c) {
		return;
	}
	n->hb_inflight = false;
	if (status == IM_OK && n->hello) {
		/* Any answer is a sign of life (a node answers Ack). */
		watch_heard(r, n->name, now_of(r));
		r->stats.heartbeats++;
	}
}

static int
collect_row(const im_node_row *row, void *payload)
{
	router *r = payload;
	rrow *x;

	if (r->nrows >= r->opts.max_nodes) {
		r->rows_truncated = true;
		return 0;
	}
	x = &r->rows[r->nrows++];
	cl_owner_of(x->owner, sizeof(x->owner), row->name, row->incarnation);
	x->role = row->role;
	x->heartbeat_ms = row->heartbeat_ms;
	return 0;
}

static bool
row_fresh(const router *r, const rrow *x, uint64_t now)
{
	return now <= x->heartbeat_ms ||
	       now - x->heartbeat_ms <= r->opts.dead_after_ms;
}

/* Condition (b), over the rows just read. */
static bool
store_says_dead(const router *r, const char *owner, uint64_t now)
{
	uint32_t i;

	for (i = 0; i < r->nrows; i++) {
		if (strcmp(r->rows[i].owner, owner) == 0) {
			return !row_fresh(r, &r->rows[i], now);
		}
	}
	/* No row is this owner: a newer incarnation replaced it, or the
	 * row is gone. Unless the list was cut short: then we do not know. */
	return !r->rows_truncated;
}

static bool
is_in(const char *const *set, size_t n, const char *owner)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (set[i] == owner) {
			return true;
		}
	}
	return false;
}

/* Tell every connected Connector and Chatter what moved (they reload). */
static void
notify_moves(router *r, const imrpc_SlotChange *ch, size_t n, bool reload)
{
	uint32_t i;

	memset(r->aux, 0, sizeof(*r->aux));
	r->aux->which_body = imrpc_Rpc_slot_map_tag;
	for (i = 0; i < n && i < CHANGES_MAX; i++) {
		r->aux->body.slot_map.changes[i] = ch[i];
	}
	r->aux->body.slot_map.changes_count = (pb_size_t)i;
	r->aux->body.slot_map.reload = reload || n > CHANGES_MAX;
	for (i = 0; i < r->opts.max_conns; i++) {
		rnode *x = &r->nodes[i];

		if (x->conn == NULL || !x->hello ||
		    (x->role != imrpc_Role_ROLE_CONNECTOR &&
		     x->role != imrpc_Role_ROLE_CHATTER) ||
		    !rpc_conn_is_up(x->conn)) {
			continue;
		}
		if (rpc_conn_send(x->conn, r->aux) == IM_OK) {
			r->stats.notified++;
		}
	}
}

/*
 * Move the slots of kind held by the dead owners to their planned live
 * owners. Returns the store error that stopped it, else IM_OK; *lost when
 * another mover won a CAS.
 */
static int
move_kind(router *r, uint64_t now, im_kind kind, const char *const *dead,
	  size_t ndead, imrpc_SlotChange *ch, size_t *nch, size_t chmax,
	  bool *lost)
{
	const char *live[OWNERS_MAX];
	im_node_role role = kind == IM_KIND_USER ? IM_NODE_CONNECTOR
						 : IM_NODE_CHATTER;
	size_t nlive = 0, nm = 0, i;
	int rc;

	for (i = 0; i < r->nrows && nlive < OWNERS_MAX; i++) {
		if (r->rows[i].role == role && row_fresh(r, &r->rows[i], now)) {
			live[nlive++] = r->rows[i].owner;
		}
	}
	if (nlive == 0) {
		return IM_OK; /* nobody to take them: the next tick retries */
	}
	rc = im_shard_plan(r->map, kind, live, nlive, r->moves, r->max_moves,
			   &nm);
	if (rc != IM_OK && rc != IM_EFULL) {
		return rc;
	}
	if (nm > r->max_moves) {
		nm = r->max_moves;
	}
	for (i = 0; i < nm; i++) {
		im_shard_entry e;
		im_epoch ep = 0;

		if (im_shard_get_slot(r->map, kind, r->moves[i].slot, &e) !=
			    IM_OK ||
		    !is_in(dead, ndead, e.owner)) {
			continue; /* a live node's: its own handover */
		}
		rc = im_shard_claim(r->map, r->st, kind, r->moves[i].slot,
				    r->moves[i].to, &ep);
		if (rc == IM_ECONFLICT) {
			/* Another Router (or the node itself) moved it first:
			 * the CAS decided, and the map has the winner. */
			r->stats.conflicts++;
			*lost = true;
			continue;
		}
		if (rc != IM_OK) {
			return rc;
		}
		r->stats.moved++;
		if (*nch < chmax) {
			imrpc_SlotChange *c = &ch[(*nch)++];

			memset(c, 0, sizeof(*c));
			c->kind = (uint32_t)kind;
			c->slot = r->moves[i].slot;
			c->epoch = ep;
			snprintf(c->owner, sizeof(c->owner), "%s",
				 r->moves[i].to);
		} else {
			(*nch)++;
		}
	}
	return IM_OK;
}

/* Judge every slot owner of the map; move the dead ones' slots. */
static int
judge(router *r, uint64_t now)
{
	const char *seen[OWNERS_MAX], *dead[OWNERS_MAX];
	imrpc_SlotChange ch[CHANGES_MAX];
	size_t nseen = 0, ndead = 0, nch = 0, i;
	uint32_t slot, nslots = im_shard_nslots(r->map);
	bool lost = false, suspects = false;
	int k, rc = IM_OK;

	/* (a): owners silent towards us. */
	for (k = 0; k < IM_KIND_COUNT; k++) {
		for (slot = 0; slot < nslots; slot++) {
			im_shard_entry e;

			if (im_shard_get_slot(r->map, (im_kind)k, slot, &e) !=
				    IM_OK ||
			    e.owner[0] == '\0' ||
			    is_in(seen, nseen, e.owner) ||
			    nseen >= OWNERS_MAX) {
				continue;
			}
			seen[nseen++] = e.owner;
			if (silent(r, e.owner, now)) {
				suspects = true;
			}
		}
	}
	if (!suspects) {
		return IM_OK;
	}
	/* (b): what the store says right now. */
	r->nrows = 0;
	r->rows_truncated = false;
	rc = im_store_node_list(r->st, collect_row, r);
	if (rc != IM_OK) {
		r->stats.detect_errors++;
		return rc;
	}
	for (i = 0; i < nseen; i++) {
		if (silent(r, seen[i], now) &&
		    store_says_dead(r, seen[i], now)) {
			dead[ndead++] = seen[i];
			r->stats.dead++;
			fprintf(stderr,
				"router: %s is dead (silent and stale in the "
				"store): moving its slots\n",
				seen[i]);
		}
	}
	for (k = 0; k < IM_KIND_COUNT && ndead > 0 && rc == IM_OK; k++) {
		rc = move_kind(r, now, (im_kind)k, dead, ndead, ch, &nch,
			       CHANGES_MAX, &lost);
	}
	if (rc != IM_OK) {
		r->stats.detect_errors++;
	}
	if (lost) {
		/* Lost a race: the store has the truth, take all of it. */
		(void)router_reload(r);
	}
	if (nch > 0) {
		/* Forwards in flight to a dead Chatter: answer them now. */
		abandon_moved(r);
		notify_moves(r, ch, nch < CHANGES_MAX ? nch : CHANGES_MAX,
			     nch > CHANGES_MAX);
		fprintf(stderr, "router: moved %zu slots off dead nodes\n",
			nch);
		/* Events kept for the dead owner's users go to the new
		 * owners (connected here already: they just got SlotMap). */
		retry_parked(r);
	}
	return rc;
}

int
router_tick(router *r)
{
	uint64_t now;
	uint32_t i;

	if (r == NULL) {
		return IM_EINVAL;
	}
	now = now_of(r);
	if (r->opts.heartbeat_ms > 0 && r->last_tick_ms != 0 &&
	    now > r->last_tick_ms &&
	    now - r->last_tick_ms > 2 * (uint64_t)r->opts.heartbeat_ms) {
		/* Our loop stalled (a blocking store call, a pause): we
		 * could not hear anyone meanwhile, so that time is not
		 * their silence. Credit it to every owner. */
		uint64_t gap = now - r->last_tick_ms;

		for (i = 0; i < r->nwatch; i++) {
			r->watch[i].heard_ms += gap;
			if (r->watch[i].heard_ms > now) {
				r->watch[i].heard_ms = now;
			}
		}
		r->started_ms = r->started_ms + gap > now ? now
							  : r->started_ms + gap;
	}
	r->last_tick_ms = now;
	for (i = 0; i < r->opts.max_conns; i++) {
		rnode *n = &r->nodes[i];

		if (n->conn == NULL || !n->hello || n->hb_inflight ||
		    (n->role != imrpc_Role_ROLE_CONNECTOR &&
		     n->role != imrpc_Role_ROLE_CHATTER) ||
		    !rpc_conn_is_up(n->conn)) {
			continue;
		}
		memset(r->aux, 0, sizeof(*r->aux));
		r->aux->which_body = imrpc_Rpc_heartbeat_tag;
		r->aux->body.heartbeat.time_ms = now;
		if (rpc_conn_call(n->conn, r->aux,
				  r->opts.dead_after_ms > 0
					  ? r->opts.dead_after_ms
					  : 1000,
				  hb_done, n) == IM_OK) {
			n->hb_inflight = true;
		}
	}
	if (r->opts.dead_after_ms == 0) {
		return IM_OK;
	}
	return judge(r, now);
}

static void
on_hb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	(void)router_tick(w->data);
}

static void
on_refresh(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	(void)router_reload(w->data);
}

static void
free_router(router *r)
{
	free(r->nodes);
	free(r->ctx);
	free(r->ctx_free);
	free(r->orig);
	free(r->orig_free);
	free(r->out);
	free(r->aux);
	free(r->ack);
	free(r->watch);
	free(r->rows);
	free(r->moves);
	free(r->park);
	free(r);
}

int
router_create(router **out, struct ev_loop *loop, im_store *st,
	      im_shard_map *map, const char *host, uint16_t port,
	      const router_opts *opts)
{
	static const router_opts defaults = ROUTER_OPTS_INIT;
	rpc_opts ro;
	router *r;
	uint32_t i;
	int rc;

	if (opts == NULL) {
		opts = &defaults;
	}
	if (out == NULL || loop == NULL || st == NULL || map == NULL ||
	    opts->version != ROUTER_OPTS_VERSION || opts->max_conns == 0 ||
	    opts->max_conns > 65536 || opts->max_calls == 0 ||
	    opts->max_calls > (1u << 20) || opts->forward_timeout_ms == 0 ||
	    opts->max_nodes > 65536 ||
	    (opts->dead_after_ms > 0 && opts->max_nodes == 0)) {
		return IM_EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		return IM_ENOMEM;
	}
	r->nodes = calloc(opts->max_conns, sizeof(*r->nodes));
	r->ctx = calloc(opts->max_calls, sizeof(*r->ctx));
	r->ctx_free = calloc(opts->max_calls, sizeof(*r->ctx_free));
	r->orig = calloc(opts->max_calls, sizeof(*r->orig));
	r->orig_free = calloc(opts->max_calls, sizeof(*r->orig_free));
	r->out = calloc(1, sizeof(*r->out));
	r->aux = calloc(1, sizeof(*r->aux));
	r->ack = calloc(1, sizeof(*r->ack));
	r->max_moves = im_shard_nslots(map);
	r->watch = calloc(opts->max_nodes + 1, sizeof(*r->watch));
	r->rows = calloc(opts->max_nodes + 1, sizeof(*r->rows));
	r->moves = calloc(r->max_moves, sizeof(*r->moves));
	r->park = calloc(PARK_MAX, sizeof(*r->park));
	if (r->park == NULL || r->nodes == NULL || r->ctx == NULL || r->ctx_free == NULL ||
	    r->orig == NULL || r->orig_free == NULL ||
	    r->out == NULL || r->aux == NULL || r->ack == NULL ||
	    r->watch == NULL || r->rows == NULL || r->moves == NULL) {
		free_router(r);
		return IM_ENOMEM;
	}
	for (i = 0; i < opts->max_calls; i++) {
		r->ctx_free[i] = opts->max_calls - 1 - i;
		r->orig_free[i] = opts->max_calls - 1 - i;
	}
	r->nctx_free = opts->max_calls;
	r->norig_free = opts->max_calls;
	r->loop = loop;
	r->st = st;
	r->map = map;
	r->opts = *opts;
	if (r->opts.now_ms == NULL) {
		r->opts.now_ms = wall_ms;
	}
	r->started_ms = now_of(r);
	if ((rc = router_reload(r)) != IM_OK) {
		free_router(r);
		return rc;
	}
	ro = opts->rpc;
	ro.on_request = on_request;
	ro.on_state = on_state;
	ro.payload = r;
	rc = rpc_server_open(&r->srv, loop, host, port, opts->max_conns, &ro);
	if (rc != IM_OK) {
		free_router(r);
		return rc;
	}
	ev_init(&r->refresh, on_refresh);
	r->refresh.data = r;
	if (opts->refresh_ms > 0) {
		r->refresh.repeat = (double)opts->refresh_ms / 1000.0;
		ev_timer_again(loop, &r->refresh);
	}
	ev_init(&r->hb, on_hb);
	r->hb.data = r;
	if (opts->heartbeat_ms > 0) {
		r->hb.repeat = (double)opts->heartbeat_ms / 1000.0;
		ev_timer_again(loop, &r->hb);
	}
	*out = r;
	return IM_OK;
}

uint16_t
router_port(const router *r)
{
	return r != NULL ? rpc_server_port(r->srv) : 0;
}

void
router_get_stats(const router *r, router_stats *out)
{
	if (r != NULL && out != NULL) {
		*out = r->stats;
	}
}

void
router_destroy(router *r)
{
	if (r == NULL) {
		return;
	}
	/* Connections go one by one: answering failed Forwards now could
	 * reach a Connector already freed. Clients retry anyway. */
	r->destroying = true;
	ev_timer_stop(r->loop, &r->refresh);
	ev_timer_stop(r->loop, &r->hb);
	rpc_server_close(r->srv);
	free_router(r);
}
