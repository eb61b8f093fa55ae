/*
 * The cluster Router, routing half: see router.h. Every outgoing message
 * is built in one of three preallocated scratch envelopes, Forwards in
 * flight hold their ops' routes in a preallocated context pool, so routing
 * never allocates. Failure detection is router_judge.c's.
 */
#include "router_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


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
	rep->code = CODE_UNAVAILABLE;
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
		answer(r, o->node->conn, o->req_id, 0, NULL);
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
	     reply->body.ack.code != 0)) {
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
		answer(r, from, req_id, 0, NULL);
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
void
router__retry_parked(router *r)
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
handle_slot_map(router *r, rpc_conn *from, const imrpc_SlotMap *sm)
{
	uint32_t i;

	for (i = 0; i < sm->changes_count; i++) {
		const imrpc_SlotChange *ch = &sm->changes[i];

		if (ch->kind < IM_KIND_COUNT) {
			(void)im_shard_apply(r->map, (im_kind)ch->kind,
					     ch->slot, ch->epoch, ch->owner);
		}
	}
	if (sm->reload && router_reload(r) == IM_OK) {
		router__relay_reload(r, from);
	}
}

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
			rpc_conn_admit(c);
			if (n->role == imrpc_Role_ROLE_CONNECTOR ||
			    n->role == imrpc_Role_ROLE_CHATTER) {
				router__heard(r, n->name);
			}
		}
		answer(r, c, req_id, 0, NULL);
		break;
	case imrpc_Rpc_forward_tag:
		handle_forward(r, c, req_id, &m->body.forward);
		break;
	case imrpc_Rpc_replies_tag:
		if (handle_replies(r, &m->body.replies)) {
			answer(r, c, req_id, 0, NULL);
		} else {
			answer(r, c, req_id, CODE_UNAVAILABLE,
			       "connector not connected here");
		}
		break;
	case imrpc_Rpc_deliver_tag:
		handle_deliver(r, &m->body.deliver);
		answer(r, c, req_id, 0, NULL);
		break;
	case imrpc_Rpc_user_events_tag:
		handle_events(r, &m->body.user_events);
		answer(r, c, req_id, 0, NULL);
		break;
	case imrpc_Rpc_slot_map_tag:
		handle_slot_map(r, c, &m->body.slot_map);
		answer(r, c, req_id, 0, NULL);
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
		answer(r, c, req_id, CODE_BAD_REQUEST, "unexpected message");
		break;
	}
}

static void
on_state(rpc_conn *c, bool up, int err, const char *why, void *payload)
{
	router *r = payload;
	uint32_t i;

	/* A deadline or bound closed it (rpc_server_limits), or the
	 * socket failed: say so, the operator sees who holds the slots. */
	if (!up && err != IM_OK) {
		fprintf(stderr, "router: %s\n", why);
	}
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

		if (n->hello && (n->role == imrpc_Role_ROLE_CONNECTOR ||
				 n->role == imrpc_Role_ROLE_CHATTER)) {
			router__closed(r, n->name);
		}
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
void
router__abandon_moved(router *r)
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
		router__abandon_moved(r);
		router__retry_parked(r);
	}
	return rc;
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
	rpc_server_set_limits(r->srv, &opts->limits);
	ev_init(&r->refresh, on_refresh);
	r->refresh.data = r;
	if (opts->refresh_ms > 0) {
		r->refresh.repeat = (double)opts->refresh_ms / 1000.0;
		ev_timer_again(loop, &r->refresh);
	}
	router__judge_start(r);
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
		rpc_server_get_stats(r->srv, &out->rpc);
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
	router__judge_stop(r);
	rpc_server_close(r->srv);
	free_router(r);
}
