/*
 * The cluster Router, failure detection half (router.h, "Failure
 * detection"): heartbeats to the connected Connectors and Chatters, the
 * two conditions that make an owner dead, and the move of a dead owner's
 * slots by the rules of servers/common/slot_policy.h. Apart from routing
 * (router.c) because it answers another question: not where a message
 * goes, but who is still there.
 */
#include "router_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "member.h"
#include "slot_policy.h"


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
	w->closed = false;
}

/*
 * The timeout owner is judged by (router.h): dead_after_ms, or the short
 * one, CLOSED_BEATS heartbeat periods, once its connection to us closed.
 * A process that is killed or crashes closes its sockets at once: its
 * connection closing is strong evidence, but not proof (a Router's own
 * limits close connections, a network fails), so condition (b) stays:
 * its store heartbeat must be as old too, which a live node's never is
 * (it heartbeats every period).
 */
#define CLOSED_BEATS 3

static uint64_t
timeout_of(router *r, const char *owner)
{
	const rwatch *w = watch_find(r, owner);
	uint64_t fast = CLOSED_BEATS * (uint64_t)r->opts.heartbeat_ms;

	if (w != NULL && w->closed && fast > 0 &&
	    fast < r->opts.dead_after_ms) {
		return fast;
	}
	return r->opts.dead_after_ms;
}

/* Silent towards this Router past the timeout: condition (a). */
static bool
silent(router *r, const char *owner, uint64_t now)
{
	const rwatch *w = watch_find(r, owner);
	uint64_t heard = w != NULL ? w->heard_ms : r->started_ms;

	return now > heard && now - heard > timeout_of(r, owner);
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

/* Condition (b), over the rows just read, by owner's timeout. */
static bool
store_says_dead(router *r, const char *owner, uint64_t now)
{
	uint64_t timeout = timeout_of(r, owner);
	uint32_t i;

	for (i = 0; i < r->nrows; i++) {
		const rrow *x = &r->rows[i];

		if (strcmp(x->owner, owner) == 0) {
			return now > x->heartbeat_ms &&
			       now - x->heartbeat_ms > timeout;
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

/* By value (is_in() compares interned pointers). */
static bool
is_in_str(const char *const *set, size_t n, const char *owner)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(set[i], owner) == 0) {
			return true;
		}
	}
	return false;
}

/* Tell every connected Connector and Chatter but `except` (may be NULL)
 * what moved (they reload). */
static void
notify_moves_but(router *r, const imrpc_SlotChange *ch, size_t n,
		 bool reload, const rpc_conn *except)
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

		if (x->conn == NULL || x->conn == except || !x->hello ||
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

static void
notify_moves(router *r, const imrpc_SlotChange *ch, size_t n, bool reload)
{
	notify_moves_but(r, ch, n, reload, NULL);
}

void
router__relay_reload(router *r, const rpc_conn *from)
{
	notify_moves_but(r, NULL, 0, true, from);
}

/* One judgement's moves (slot_policy_ops payload). */
typedef struct judgement {
	router *r;
	const char *dead[OWNERS_MAX]; /* interned owner names */
	size_t ndead;
	imrpc_SlotChange ch[CHANGES_MAX];
	size_t nch; /* may pass CHANGES_MAX: then SlotMap says reload */
	bool lost;  /* another mover won a CAS */
} judgement;

/* Only a dead owner's slots: a live node's are its own handover. */
static bool
dead_owners_slot(void *payload, im_kind kind, const im_shard_move *mv,
		 const im_shard_entry *cur)
{
	judgement *j = payload;

	(void)kind;
	(void)mv;
	return is_in(j->dead, j->ndead, cur->owner);
}

static void
slot_moved(void *payload, im_kind kind, const im_shard_move *mv,
	   const im_shard_entry *cur, im_epoch epoch)
{
	judgement *j = payload;
	imrpc_SlotChange *c;

	(void)cur;
	j->r->stats.moved++;
	if (j->nch++ >= CHANGES_MAX) {
		return;
	}
	c = &j->ch[j->nch - 1];
	memset(c, 0, sizeof(*c));
	c->kind = (uint32_t)kind;
	c->slot = mv->slot;
	c->epoch = epoch;
	snprintf(c->owner, sizeof(c->owner), "%s", mv->to);
}

/*
 * Move the slots of kind held by the dead owners to where the plan over
 * the live nodes of the kind's role (fresh store rows, the same set on
 * every Router) puts them. Returns the store error that stopped it.
 */
static int
move_kind(router *r, uint64_t now, im_kind kind, judgement *j)
{
	static const slot_policy_ops ops = {dead_owners_slot, slot_moved};
	const char *live[OWNERS_MAX];
	im_node_role role = kind == IM_KIND_USER ? IM_NODE_CONNECTOR
						 : IM_NODE_CHATTER;
	slot_policy_result res;
	size_t nlive = 0, i;
	int rc;

	for (i = 0; i < r->nrows && nlive < OWNERS_MAX; i++) {
		/* Not the owners just judged dead: one judged by the short
		 * timeout (its connection closed) may look fresh by the
		 * long one, and would be planned its own slots back. */
		if (r->rows[i].role == role && row_fresh(r, &r->rows[i], now) &&
		    !is_in_str(j->dead, j->ndead, r->rows[i].owner)) {
			live[nlive++] = r->rows[i].owner;
		}
	}
	/* With nobody to take them, nothing moves: the next tick retries. */
	rc = slot_policy_rebalance(r->map, r->st, kind, live, nlive, r->moves,
				   r->max_moves, &ops, j, &res);
	/* A conflict: another Router (or the node itself) moved the slot
	 * first; the CAS decided, and the map has the winner. */
	r->stats.conflicts += res.conflicts;
	j->lost = j->lost || res.conflicts > 0;
	return rc;
}

/* (a): the owners of the map's slots, and whether one is silent. */
static bool
suspects(router *r, uint64_t now, const char **seen, size_t *nseen)
{
	uint32_t slot, nslots = im_shard_nslots(r->map);
	bool any = false;
	int k;

	*nseen = 0;
	for (k = 0; k < IM_KIND_COUNT; k++) {
		for (slot = 0; slot < nslots; slot++) {
			im_shard_entry e;

			if (im_shard_get_slot(r->map, (im_kind)k, slot, &e) !=
				    IM_OK ||
			    e.owner[0] == '\0' ||
			    is_in(seen, *nseen, e.owner) ||
			    *nseen >= OWNERS_MAX) {
				continue;
			}
			seen[(*nseen)++] = e.owner;
			any = any || silent(r, e.owner, now);
		}
	}
	return any;
}

/* One of the silent owners is silent since its connection closed. */
static bool
closed_suspect(router *r, uint64_t now, const char **seen, size_t nseen)
{
	size_t i;

	for (i = 0; i < nseen; i++) {
		const rwatch *w = watch_find(r, seen[i]);

		if (w != NULL && w->closed && silent(r, seen[i], now)) {
			return true;
		}
	}
	return false;
}

/* Judge every slot owner of the map; move the dead ones' slots. */
static int
judge(router *r, uint64_t now)
{
	judgement j;
	const char *seen[OWNERS_MAX];
	size_t nseen, i;
	int k, rc = IM_OK;

	if (!suspects(r, now, seen, &nseen)) {
		return IM_OK;
	}
	/* Our map may be a reload behind the store: a node that handed its
	 * slots over as it stopped (node_role.c leave()) and closed its
	 * connection is silent now but owns nothing; judge the owners the
	 * store has. */
	if (closed_suspect(r, now, seen, nseen) && router_reload(r) == IM_OK &&
	    !suspects(r, now, seen, &nseen)) {
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
	memset(&j, 0, sizeof(j));
	j.r = r;
	for (i = 0; i < nseen; i++) {
		if (silent(r, seen[i], now) &&
		    store_says_dead(r, seen[i], now)) {
			j.dead[j.ndead++] = seen[i];
			r->stats.dead++;
			fprintf(stderr,
				"router: %s is dead (silent and stale in the "
				"store for %llu ms%s): moving its slots\n",
				seen[i],
				(unsigned long long)timeout_of(r, seen[i]),
				timeout_of(r, seen[i]) < r->opts.dead_after_ms
					? ", its connection closed"
					: "");
		}
	}
	for (k = 0; k < IM_KIND_COUNT && j.ndead > 0 && rc == IM_OK; k++) {
		rc = move_kind(r, now, (im_kind)k, &j);
	}
	if (rc != IM_OK) {
		r->stats.detect_errors++;
	}
	if (j.lost) {
		/* Lost a race: the store has the truth, take all of it. */
		(void)router_reload(r);
	}
	if (j.nch > 0) {
		/* Forwards in flight to a dead Chatter: answer them now. */
		router__abandon_moved(r);
		notify_moves(r, j.ch, j.nch < CHANGES_MAX ? j.nch : CHANGES_MAX,
			     j.nch > CHANGES_MAX);
		fprintf(stderr, "router: moved %zu slots off dead nodes\n",
			j.nch);
		/* Events kept for the dead owner's users go to the new
		 * owners (connected here already: they just got SlotMap). */
		router__retry_parked(r);
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

void
router__heard(router *r, const char *owner)
{
	watch_heard(r, owner, now_of(r));
}

void
router__closed(router *r, const char *owner)
{
	rwatch *w = watch_find(r, owner);

	if (w != NULL) {
		w->closed = true;
	}
}

void
router__judge_start(router *r)
{
	if (r->opts.now_ms == NULL) {
		r->opts.now_ms = wall_ms;
	}
	r->started_ms = now_of(r);
	ev_init(&r->hb, on_hb);
	r->hb.data = r;
	if (r->opts.heartbeat_ms > 0) {
		r->hb.repeat = (double)r->opts.heartbeat_ms / 1000.0;
		ev_timer_again(r->loop, &r->hb);
	}
}

void
router__judge_stop(router *r)
{
	ev_timer_stop(r->loop, &r->hb);
}
