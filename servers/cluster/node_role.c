/*
 * A Connector or Chatter node (node_role.h): its membership, its link to
 * the Routers, its role object and its slots. What may move is decided by
 * servers/common/slot_policy.c; what a move means for the role (commit or
 * write what is pending first, drop the slot's state, redirect clients)
 * is here.
 */
#include "node_role.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "im/shard.h"
#include "link.h"
#include "member.h"
#include "router.h"
#include "slot_policy.h"
#include "store/mux.h"

/* Owner strings are "NAME/INCARNATION": room for the suffix. */
#define NAME_MAX_LEN 40
/* Nodes of one role planned over, and moves per balance. */
#define BALANCE_NODES 256
#define BALANCE_MOVES 1024

typedef struct rolenode {
	struct ev_loop *loop;
	im_store *st;
	im_shard_map *map;
	cl_member *m;
	cl_link *link;
	const srv_config *c;
	im_node_role role;
	im_kind kind;
	char owner[IM_OWNER_MAX + 1];
	bool balanced; /* expect was reached once */
	bool muted;    /* no Router serves us: no heartbeat (judge_own_reach) */
	bool leaving;  /* graceful stop under way (leave()) */
	ev_tstamp leave_start, handover_at, handed_at;
	ev_timer leave_timer;
	ev_tstamp judged; /* the last judge_own_reach() */
	uint64_t inc;  /* the incarnation rn.owner names */
	ev_timer tick;
	connector *cn;
	chatter *ch;
	int lfd; /* a Connector's bound client port, until the role has it */
	connector_tls_opts tls; /* a Connector's, when tls_on */
	bool tls_on;
	ev_signal sighup; /* reload the TLS files */
} rolenode;

/* The owner string of this node's current incarnation. The roles hold
 * rn->owner by pointer: renaming it renames them too. */
static void
name_owner(rolenode *rn)
{
	rn->inc = cl_member_incarnation(rn->m);
	snprintf(rn->owner, sizeof(rn->owner), "%.40s/%08llx", rn->c->name,
		 (unsigned long long)rn->inc);
}

/* Is the slot's owner gone: unowned, an unknown or dead node, or an older
 * incarnation of a node? Only such slots are taken without a handover. */
static bool
owner_gone(const rolenode *rn, const char *owner)
{
	char name[IM_OWNER_MAX + 1], cur[IM_OWNER_MAX + 1];
	const char *slash = strchr(owner, '/');
	const cl_node *n;

	if (owner[0] == '\0' || slash == NULL) {
		return true;
	}
	snprintf(name, sizeof(name), "%.*s", (int)(slash - owner), owner);
	n = cl_member_find(rn->m, name);
	if (n == NULL || !n->alive) {
		return true;
	}
	cl_owner_of(cur, sizeof(cur), n->name, n->incarnation);
	return strcmp(cur, owner) != 0;
}

/* The client address of the Connector owning a user, for Redirect. */
static const char *
owner_address(void *payload, const char *owner)
{
	rolenode *rn = payload;
	char name[IM_OWNER_MAX + 1];
	const cl_node *n;

	snprintf(name, sizeof(name), "%s", owner);
	name[strcspn(name, "/")] = '\0';
	n = cl_member_find(rn->m, name);
	if (n == NULL || !n->alive || n->role != IM_NODE_CONNECTOR ||
	    owner_gone(rn, owner)) {
		return NULL;
	}
	return n->address;
}

/*
 * Reload the slot map (a tick, or a Router's SlotMap after it moved a dead
 * node's slots). Slots gained need nothing more: a Chatter loads a group's
 * state on its first use under the new epoch (fresh seq segment), a
 * Connector serves a user whose slot the map gives it. Slots lost while we
 * could not heartbeat: a Connector sheds those users to the new owner.
 */
static int
map_reload(rolenode *rn, uint32_t *gained)
{
	uint32_t lost;
	int rc = slot_policy_reload(rn->map, rn->st, rn->kind, rn->owner,
				    &lost, gained);

	if (rc != IM_OK) {
		LOG_W("slot map: %s (%s)", im_strerror(rc),
		      im_store_errmsg(rn->st));
		return rc;
	}
	if (rn->cn != NULL && lost > 0) {
		/* Another Connector took user slots of ours (we could not
		 * heartbeat for a while): our users' deliveries go there
		 * now, so send them there. */
		uint32_t shed = connector_shed_moved(rn->cn);

		LOG_W("%s lost user slots (now %u): %u connections sent to "
		      "the new owners", rn->owner,
		      im_shard_count(rn->map, rn->kind, rn->owner), shed);
	}
	return IM_OK;
}

/* One balance pass (slot_policy_ops payload). */
typedef struct balance_pass {
	rolenode *rn;
	bool routers; /* a Router is up: dead nodes' slots are theirs */
	uint32_t claimed;
	uint32_t handed;
	int checked; /* 0: not yet, 1: fresh_now holds them, -1: read failed */
} balance_pass;

/* Owners whose store row is fresh now (one read per balance pass that
 * hands over: handovers are rare). Fresh for a handover is a heartbeat at
 * most HANDOVER_BEATS periods old, the age by which a Router judges a
 * node whose connection closed (router_judge.c): a killed node, whose
 * slots a Router moved after that age while our view still shows it
 * alive, must not be handed them back. A live node late with a beat only
 * gets its share at a later pass. */
#define HANDOVER_BEATS 3
static char fresh_now[BALANCE_NODES][IM_OWNER_MAX + 1];
static size_t nfresh_now;

static int
collect_fresh(const im_node_row *row, void *payload)
{
	const rolenode *rn = payload;
	uint64_t now = (uint64_t)(ev_time() * 1000.0);
	uint64_t max_age = HANDOVER_BEATS * (uint64_t)rn->c->heartbeat_ms;

	if (max_age > rn->c->dead_after_ms) {
		max_age = rn->c->dead_after_ms;
	}
	if (nfresh_now < BALANCE_NODES && row->role == rn->role &&
	    (now <= row->heartbeat_ms || now - row->heartbeat_ms <= max_age)) {
		cl_owner_of(fresh_now[nfresh_now], IM_OWNER_MAX + 1,
			    row->name, row->incarnation);
		nfresh_now++;
	}
	return 0;
}

/*
 * Is the node a handover would give a slot to alive in the store now?
 * Our view may be a reload behind (a loaded machine delays it): a node
 * that has just left (a graceful stop writes heartbeat 0 to its row, then
 * hands its slots to the others) still looks fresh there, and the plan
 * over the view would hand it slots back after it has gone, for the
 * Routers to fail over later. One read of the rows per pass settles it;
 * when the read fails, nothing is handed over this pass.
 */
static bool
handover_target_alive(balance_pass *b, const char *to)
{
	size_t i;

	if (b->checked == 0) {
		nfresh_now = 0;
		b->checked = im_store_node_list(b->rn->st, collect_fresh,
						b->rn) == IM_OK
				     ? 1
				     : -1;
	}
	for (i = 0; b->checked > 0 && i < nfresh_now; i++) {
		if (strcmp(fresh_now[i], to) == 0) {
			return true;
		}
	}
	return false;
}

static bool
balance_admit(void *payload, im_kind kind, const im_shard_move *mv,
	      const im_shard_entry *cur)
{
	balance_pass *b = payload;
	rolenode *rn = b->rn;
	bool ours = strcmp(mv->to, rn->owner) == 0;

	(void)kind;
	switch (slot_policy_node_action(rn->c->name, rn->owner, cur, mv,
					ours && owner_gone(rn, cur->owner),
					b->routers)) {
	case SLOT_NODE_TAKE:
		return true;
	case SLOT_NODE_HAND_OVER:
		/*
		 * Handover to a node that joined: a Chatter commits what is
		 * pending (acked only once stored), a Connector writes what
		 * is queued, before the CAS moves the slot. Anything of ours
		 * for the slot after that is fenced (epoch + 1).
		 */
		if (!handover_target_alive(b, mv->to)) {
			return false;
		}
		if (b->handed == 0 && rn->ch != NULL) {
			chatter_flush(rn->ch);
		} else if (b->handed == 0 && rn->cn != NULL) {
			connector_flush(rn->cn);
		}
		return rn->ch != NULL || rn->cn != NULL;
	case SLOT_NODE_SKIP:
		break;
	}
	return false;
}

static void
balance_moved(void *payload, im_kind kind, const im_shard_move *mv,
	      const im_shard_entry *cur, im_epoch epoch)
{
	balance_pass *b = payload;
	rolenode *rn = b->rn;

	(void)kind;
	(void)cur;
	(void)epoch;
	if (strcmp(mv->to, rn->owner) == 0) {
		b->claimed++;
		return;
	}
	if (rn->ch != NULL) {
		/* The new owner starts from a fresh seq segment. */
		chatter_drop_slot(rn->ch, mv->slot);
	} else {
		/* The slot's clients get a Redirect to the new owner and
		 * resume there from the store, which holds every acked
		 * message. */
		connector_drop_slot(rn->cn, mv->slot,
				    owner_address(rn, mv->to));
	}
	b->handed++;
}

/* The nodes of our role that are fresh now, as owner strings. Fresh now,
 * not only at the view's last reload: a node a Router just judged dead
 * must not get slots handed over. A node leaving is not among them. */
static size_t
live_owners(rolenode *rn, const char **nodes)
{
	static char owners[BALANCE_NODES][IM_OWNER_MAX + 1];
	size_t i, n = 0;

	for (i = 0; i < cl_member_count(rn->m) && n < BALANCE_NODES; i++) {
		const cl_node *x = cl_member_node(rn->m, i);

		/* A node leaving plans over the others only (leave()). */
		if (x->role == rn->role && cl_member_fresh(rn->m, x) &&
		    !(rn->leaving && strcmp(x->name, rn->c->name) == 0)) {
			cl_owner_of(owners[n], sizeof(owners[n]), x->name,
				    x->incarnation);
			nodes[n] = owners[n];
			n++;
		}
	}
	return n;
}

/*
 * Claim this node's fair share of the slots of its kind, among the live
 * nodes of its role, once `expect` of them are alive, and hand over what
 * the plan gives to others (slot_policy_node_action()).
 */
static void
balance(rolenode *rn)
{
	static const slot_policy_ops ops = {balance_admit, balance_moved};
	const char *nodes[BALANCE_NODES];
	im_shard_move moves[BALANCE_MOVES];
	balance_pass b = {rn, cl_link_routers_up(rn->link) > 0, 0, 0, 0};
	slot_policy_result res;
	uint32_t gained;
	size_t n = live_owners(rn, nodes);
	int rc;

	/*
	 * `expect` only holds back the first claim (so a starting cluster
	 * spreads evenly); after that a node that lost peers must go on
	 * balancing, or the dead ones' slots would never be taken over.
	 */
	if (rn->muted || rn->leaving ||
	    (!rn->balanced && n < rn->c->expect)) {
		return;
	}
	rn->balanced = true;
	if (map_reload(rn, &gained) != IM_OK || n == 0) {
		/* n == 0: not even we look fresh (we were silent: our
		 * heartbeat is old until the next one lands). */
		return;
	}
	rc = slot_policy_rebalance(rn->map, rn->st, rn->kind, nodes, n, moves,
				   BALANCE_MOVES, &ops, &b, &res);
	if (rc != IM_OK && !res.planned) {
		LOG_W("plan: %s", im_strerror(rc));
		return;
	}
	if (rc != IM_OK) {
		LOG_W("slot %u: %s (%s)", res.slot, im_strerror(rc),
		      im_store_errmsg(rn->st));
	}
	if (b.handed > 0) {
		LOG_I("%s handed %u %s slots over (now %u)", rn->owner,
		      b.handed, rn->kind == IM_KIND_USER ? "user" : "group",
		      im_shard_count(rn->map, rn->kind, rn->owner));
	}
	if (b.claimed > 0 || b.handed > 0) {
		cl_link_notify_slots(rn->link);
	}
	if (b.claimed > 0) {
		LOG_I("%s claimed %u %s slots (now %u)", rn->owner, b.claimed,
		      rn->kind == IM_KIND_USER ? "user" : "group",
		      im_shard_count(rn->map, rn->kind, rn->owner));
	}
}

/*
 * A node silent past the heartbeat timeout (paused, cut off) came back as
 * a new incarnation (cl_member re-registered it): whatever it held may
 * have been taken over, so it forgets all its group state, takes the new
 * owner name (its old slots are now "an older incarnation": fenced for
 * its writes, free to claim) and tells the Routers who it is now. Its
 * writes under the old epochs fail IM_ESTALE and are answered
 * ERR_UNAVAILABLE, never acked.
 */
static void
reincarnate(rolenode *rn)
{
	char old[IM_OWNER_MAX + 1];
	uint32_t kept = 0, shed = 0;

	snprintf(old, sizeof(old), "%s", rn->owner);
	rn->inc = cl_member_incarnation(rn->m);
	if (rn->ch != NULL) {
		chatter_flush(rn->ch); /* fenced if the slots moved */
		chatter_drop_all(rn->ch);
	}
	if (rn->cn != NULL) {
		/* Whatever is queued goes out first (user-queue appends
		 * are fenced where the slot moved). */
		connector_flush(rn->cn);
	}
	name_owner(rn);
	cl_link_set_owner(rn->link, rn->owner);
	(void)im_shard_load(rn->map, rn->st);
	if (rn->cn != NULL) {
		/*
		 * A Connector takes back at once the user slots nobody moved
		 * while it was silent: their users stay served here without
		 * a move (no deliveries went elsewhere meanwhile: the slot
		 * stayed ours). Those a Router moved are the new owners':
		 * their clients get a Redirect there and their sessions here
		 * are dropped. The balance evens the rest out by handover.
		 */
		kept = slot_policy_take_back(rn->map, rn->st, IM_KIND_USER,
					     old, rn->owner);
		shed = connector_renamed(rn->cn);
		cl_link_notify_slots(rn->link);
	}
	LOG_W("%s was silent past the heartbeat timeout: dropped its state, "
	      "now %s (kept %u user slots, %u connections sent away)",
	      old, rn->owner, kept, shed);
}

static void
on_member_change(cl_member *m, void *payload)
{
	rolenode *rn = payload;

	if (!rn->leaving && rn->link != NULL && rn->inc != 0 &&
	    cl_member_incarnation(m) != rn->inc) {
		reincarnate(rn);
	}
	cl_link_sync(rn->link);
	/* A node of our role came or went: take (or hand over) the share
	 * now rather than on the next tick, a second later at worst. */
	balance(rn);
}

/* Routers alive in the store (the view, fresh now). */
static size_t
routers_alive(const rolenode *rn)
{
	size_t i, n = 0;

	for (i = 0; i < cl_member_count(rn->m); i++) {
		const cl_node *x = cl_member_node(rn->m, i);

		n += x->role == IM_NODE_ROUTER && cl_member_fresh(rn->m, x);
	}
	return n;
}

/*
 * Liveness by ability to serve (issue 13). A node alive in the store but
 * heard by no Router (their connection slots held by others, a partition
 * between it and them while the store is reachable) keeps its slots and
 * serves nothing: the Routers move slots only of nodes silent to them AND
 * stale in the store (router.h). So such a node stops heartbeating the
 * store once no Router has shown it serves us for dead_after_ms while
 * Routers are alive there: it then meets both conditions and the Routers
 * move its slots within the failover bound, by the path every dead node
 * takes (plan over the live nodes, CAS, fencing). Why not release the
 * slots itself: the Routers' plan already puts them where every Router
 * agrees, the same for a node cut off from the store too, and a release
 * would need writes that a half-broken node may not manage. It stops
 * balancing too (no claims while it cannot serve). Once a Router serves it
 * again it heartbeats again, as a new incarnation if it was silent past
 * the timeout (cl_member reincarnate), and takes a share like a new node.
 * With no Router alive in the store at all it never mutes: the nodes then
 * take dead peers' slots themselves (the fallback).
 */
static void
judge_own_reach(rolenode *rn)
{
	ev_tstamp now = ev_now(rn->loop), last = rn->judged;
	double quiet_ms = (now - cl_link_heard(rn->link)) * 1000.0;
	size_t alive;
	bool off;

	rn->judged = now;
	/* After a stall of our own loop (a blocking store call, a pause)
	 * what the Routers sent is still unread: not their silence. Judge
	 * at the next tick, once it is read. */
	if (last > 0 && (now - last) * 1000.0 > 2.0 * rn->c->balance_ms) {
		return;
	}
	alive = routers_alive(rn);
	off = alive > 0 && quiet_ms > (double)rn->c->dead_after_ms;
	if (off == rn->muted) {
		return;
	}
	rn->muted = off;
	cl_member_mute(rn->m, off);
	if (off) {
		LOG_W("%s: no Router serves us for %.0f ms though %zu are "
		      "alive: store heartbeat stopped, so the Routers move "
		      "our slots", rn->owner, quiet_ms, alive);
	} else {
		LOG_W("%s: a Router serves us again (or none is alive): "
		      "heartbeating again", rn->owner);
	}
}

static void
on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	rolenode *rn = w->data;

	(void)loop;
	(void)revents;
	judge_own_reach(rn);
	/* After a pause this timer may fire before the membership's: let
	 * it heartbeat first, so a node silent past the timeout comes back
	 * as a new incarnation before it balances under its old name. */
	(void)cl_member_tick(rn->m);
	/* Keep the map fresh (others' claims) and our share taken. */
	balance(rn);
}

/*
 * A Router moved slots (SlotMap): reload now, not at the next tick. If we
 * gained some, tell every Router, as after a claim of our own: the other
 * Routers then stop forwarding to the dead owner now (a paused one still
 * has its connections up) instead of at their next map refresh.
 */
static void
reload_map(void *payload)
{
	rolenode *rn = payload;
	uint32_t gained;

	if (map_reload(rn, &gained) == IM_OK && gained > 0) {
		cl_link_notify_slots(rn->link);
	}
}

/*
 * The role's identity from the settings: a Connector needs a listen
 * address with a port (its clients' address, registered in the store)
 * and a token secret. Returns 0, or 2 (bad settings).
 */
static int
pick_role(rolenode *rn, srv_config *c, char *host, size_t hostlen,
	  uint16_t *port)
{
	char err[SRV_PATH_MAX + 128];

	if (strlen(c->name) > NAME_MAX_LEN) {
		fprintf(stderr, "imnode: names of connectors and chatters "
				"are at most %d bytes\n",
			NAME_MAX_LEN);
		return 2;
	}
	if (strcmp(c->role, "connector") != 0) {
		rn->role = IM_NODE_CHATTER;
		rn->kind = IM_KIND_GROUP;
		return 0;
	}
	rn->role = IM_NODE_CONNECTOR;
	rn->kind = IM_KIND_USER;
	if (!cl_split_address(c->listen, host, hostlen, port)) {
		fprintf(stderr, "imnode: a connector needs listen "
				"HOST:PORT with a port\n");
		return 2;
	}
	if (srv_config_secret(c, err, sizeof(err)) != 0) {
		fprintf(stderr, "imnode: connector: %s\n", err);
		return 2;
	}
	switch (srv_config_tls(c, &rn->tls, err, sizeof(err))) {
	case 1:
		rn->tls_on = true;
		break;
	case 0:
		break;
	default:
		fprintf(stderr, "imnode: connector: %s\n", err);
		return 2;
	}
	return 0;
}

/* SIGHUP: new clients get the TLS files as they are now; files that fail
 * to load keep the old ones (and say why). */
static void
on_sighup(struct ev_loop *loop, ev_signal *w, int revents)
{
	rolenode *rn = w->data;
	char err[SRV_PATH_MAX + 256];

	if (rn->cn == NULL || !rn->tls_on) {
		LOG_I("SIGHUP: nothing to reload (TLS is off)");
		return;
	}
	if (connector_tls_reload(rn->cn, err, sizeof(err)) != IM_OK) {
		LOG_E("SIGHUP: TLS reload failed, still serving the previous "
		      "certificate: %s", err);
		return;
	}
	LOG_I("SIGHUP: TLS certificate %s reloaded for new connections",
	      rn->c->tls_cert);
}

/* The slot map, this node's row in the store and its link to the
 * Routers. */
static int
join(rolenode *rn)
{
	const srv_config *c = rn->c;
	im_shard_opts so = IM_SHARD_OPTS_INIT;
	cl_member_opts mo = CL_MEMBER_OPTS_INIT;
	rpc_opts ro = RPC_OPTS_INIT;
	int rc;

	so.nslots = c->slots;
	if ((rc = im_shard_create(&rn->map, &so)) != IM_OK ||
	    (rc = im_shard_load(rn->map, rn->st)) != IM_OK) {
		fprintf(stderr, "imnode: slot map: %s\n", im_strerror(rc));
		return -1;
	}
	mo.heartbeat_ms = c->heartbeat_ms;
	mo.refresh_ms = c->refresh_ms;
	mo.dead_after_ms = c->dead_after_ms;
	mo.on_change = on_member_change;
	mo.payload = rn;
	/* Silent past the timeout, a node comes back as a new incarnation
	 * (reincarnate()). A Connector's routes keep its first name's id
	 * (link.h), so its clients' requests in flight still come back. */
	mo.reincarnate = true;
	rc = cl_member_create(&rn->m, rn->loop, rn->st, c->name, rn->role,
			      rn->role == IM_NODE_CONNECTOR ? c->listen : "-",
			      &mo);
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: register %s: %s (%s)\n", c->name,
			im_strerror(rc), im_store_errmsg(rn->st));
		return -1;
	}
	/* Slots are held by this incarnation: a restarted node is a new
	 * owner, and its previous life's slots are visibly someone else's. */
	name_owner(rn);
	ro.backoff_min_ms = 50;
	ro.backoff_max_ms = 1000;
	ro.seed = (uint64_t)getpid();
	rc = cl_link_create(&rn->link, rn->loop, rn->m, rn->owner,
			    rn->role == IM_NODE_CONNECTOR
				    ? imrpc_Role_ROLE_CONNECTOR
				    : imrpc_Role_ROLE_CHATTER,
			    &ro);
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: link: %s\n", im_strerror(rc));
		return -1;
	}
	cl_link_on_slot_map(rn->link, reload_map, rn);
	return 0;
}

/*
 * A Connector's client port, bound and listening before the node
 * registers or takes any slot: a node that cannot serve (the port is a
 * live node's) must not appear in the store, where the others would hand
 * it slots, nor register under a live node's name (a new incarnation
 * would fence that node off).
 */
static int
bind_port(rolenode *rn, const char *host, uint16_t port)
{
	if (rn->role != IM_NODE_CONNECTOR) {
		return 0;
	}
	if (connector_bind(host, port, &rn->lfd, NULL) != IM_OK) {
		fprintf(stderr, "imnode: cannot serve on %s:%u (see above): "
				"stopping before registering, no slot taken\n",
			host, port);
		return -1;
	}
	return 0;
}

/* The Connector (listening for clients) or the Chatter. */
static int
start_role(rolenode *rn)
{
	const srv_config *c = rn->c;
	int rc;

	if (rn->role == IM_NODE_CONNECTOR) {
		connector_opts co = c->cn;

		rc = connector_create(&rn->cn, rn->loop, rn->st, rn->map,
				      rn->owner, router_node_id(rn->owner),
				      cl_link_router(rn->link), c->secret,
				      strlen(c->secret), &co);
		if (rc == IM_OK && rn->tls_on) {
			char err[SRV_PATH_MAX + 256];

			if (connector_tls_enable(rn->cn, &rn->tls, err,
						 sizeof(err)) != IM_OK) {
				fprintf(stderr, "imnode: connector: %s\n",
					err);
				return -1;
			}
		}
		if (rc == IM_OK) {
			cl_link_set_connector(rn->link, rn->cn);
			connector_set_redirect(rn->cn, owner_address, rn);
			connector_listen_fd(rn->cn, rn->lfd);
			rn->lfd = -1;
		}
	} else {
		chatter_opts cho = c->ch;

		cho.seed = (uint64_t)getpid() << 32 ^ role_now_ms();
		rc = chatter_create(&rn->ch, rn->loop, rn->st, rn->map,
				    rn->owner, cl_link_router(rn->link), &cho);
		if (rc == IM_OK) {
			cl_link_set_chatter(rn->link, rn->ch);
		}
	}
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: %s role: %s\n", c->role,
			im_strerror(rc));
		return -1;
	}
	return 0;
}

/*
 * Graceful stop (SIGTERM or SIGINT; issue 13). A crash costs the node's
 * clients the failure detector's timeout; a stop need not: the node says
 * it is leaving, hands every slot over by CAS to the live nodes of its
 * role while it still serves, and exits once that is done, within
 * c->stop_ms (after which it exits anyway, and the Routers fail over as
 * for a crash). In order:
 *
 *  1. Leave the view: stop heartbeating and write heartbeat 0 to our row,
 *     so every node and Router sees us dead at its next view reload (no
 *     one hands us slots from then on: live_owners() skips stale rows)
 *     and no tool counts us. The Routers do not move our slots: we still
 *     answer their heartbeats (router.h: silent AND stale). A Connector
 *     stops accepting clients.
 *  2. After one view reload period (refresh_ms + a margin), every node's
 *     plan is without us: hand over. The plan over the live others
 *     (slot_policy_rebalance, the same path as a handover to a node that
 *     joined) commits what is pending (Chatter) or writes what is queued
 *     (Connector) first, moves each slot by CAS (epoch + 1: anything of
 *     ours for it later is fenced), drops our state for it and, for a
 *     Connector, sends its clients Redirect{new owner} so im_client
 *     moves at once and resumes there from the store. Then the Routers
 *     are told (SlotMap reload; they pass it on to every node, so the new
 *     owners serve at once instead of at their next tick). Repeated each
 *     step until we exit while a slot is ours (a lost CAS, a slot handed
 *     to us in the reload window; peers check the store before they hand
 *     a slot over, handover_target_alive(), so that is rare).
 *  3. Drain: wait until the calls to the Routers are answered (a
 *     Chatter's replies reach the clients) and a Connector's redirected
 *     connections are written and closed; then the loop stops and
 *     stop() flushes and closes.
 *
 * With no live node of our role there is nobody to hand over to: we exit
 * at once and the slots wait for the next node (a whole-cluster stop).
 * A second signal during this stops at once (node_main.c breaks the loop
 * again). A loop blocked in the store past the bound is ended by the
 * alarm (on_stop_alarm): a plain exit, as a crash would be.
 */
#define LEAVE_STEP_MS 10
#define LEAVE_MARGIN_MS 50

static void
on_stop_alarm(int sig)
{
	static const char msg[] = "imnode: graceful stop did not finish in "
				  "time: exiting without it\n";

	(void)sig;
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(1);
}

/* Hand every slot of ours to the live others; true once none is ours. */
static bool
leave_handover(rolenode *rn)
{
	static const slot_policy_ops ops = {balance_admit, balance_moved};
	const char *nodes[BALANCE_NODES];
	im_shard_move moves[BALANCE_MOVES];
	balance_pass b = {rn, cl_link_routers_up(rn->link) > 0, 0, 0, 0};
	slot_policy_result res;
	uint32_t gained;
	size_t n = live_owners(rn, nodes);
	int rc;

	if (map_reload(rn, &gained) != IM_OK) {
		return false;
	}
	if (im_shard_count(rn->map, rn->kind, rn->owner) == 0) {
		return true;
	}
	if (n == 0) {
		LOG_W("%s stopping: no live %s to hand %u slots to: they wait "
		      "for the next one", rn->owner, rn->c->role,
		      im_shard_count(rn->map, rn->kind, rn->owner));
		return true;
	}
	rc = slot_policy_rebalance(rn->map, rn->st, rn->kind, nodes, n, moves,
				   BALANCE_MOVES, &ops, &b, &res);
	if (rc != IM_OK) {
		LOG_W("stopping: handover: %s (%s)", im_strerror(rc),
		      im_store_errmsg(rn->st));
	}
	if (b.handed > 0) {
		cl_link_notify_slots(rn->link);
		LOG_I("%s stopping: handed %u %s slots over to %zu live "
		      "nodes", rn->owner, b.handed,
		      rn->kind == IM_KIND_USER ? "user" : "group", n);
	}
	return im_shard_count(rn->map, rn->kind, rn->owner) == 0;
}

/* Nothing of ours in flight: the Routers answered our calls and got our
 * SlotMap reload (else they would judge us by a stale map once our
 * connections close), and a Connector's redirected clients got their
 * Redirect (closed). */
static bool
leave_drained(rolenode *rn)
{
	if (!cl_link_idle(rn->link)) {
		return false;
	}
	if (rn->cn != NULL) {
		connector_stats cs;

		connector_get_stats(rn->cn, &cs);
		return cs.conns == 0;
	}
	return true;
}

static void
on_leave_step(struct ev_loop *loop, ev_timer *w, int revents)
{
	rolenode *rn = w->data;
	ev_tstamp now = ev_now(loop);

	(void)revents;
	if ((now - rn->leave_start) * 1000.0 >= (double)rn->c->stop_ms) {
		LOG_W("%s stopping: not done within %u ms (%u slots still "
		      "ours): exiting anyway", rn->owner, rn->c->stop_ms,
		      im_shard_count(rn->map, rn->kind, rn->owner));
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	if (now < rn->handover_at) {
		return;
	}
	/* Every step until we exit: a slot handed to us meanwhile (a peer
	 * that planned before it saw us leave) goes too. */
	if (!leave_handover(rn)) {
		return;
	}
	if (rn->handed_at == 0) {
		rn->handed_at = now;
	}
	if (leave_drained(rn)) {
		LOG_I("%s stopped gracefully in %.0f ms (handover %.0f ms "
		      "after the signal)", rn->owner,
		      (now - rn->leave_start) * 1000.0,
		      (rn->handed_at - rn->leave_start) * 1000.0);
		ev_break(loop, EVBREAK_ALL);
	}
}

static void
leave(rolenode *rn)
{
	const srv_config *c = rn->c;
	double step = LEAVE_STEP_MS / 1000.0;
	int rc;

	if (c->stop_ms == 0) {
		return;
	}
	signal(SIGALRM, on_stop_alarm);
	alarm((c->stop_ms + 999) / 1000 + 1);
	rn->leaving = true;
	ev_now_update(rn->loop);
	rn->leave_start = ev_now(rn->loop);
	ev_timer_stop(rn->loop, &rn->tick);
	if (rn->cn != NULL) {
		connector_stop_accepting(rn->cn);
	}
	cl_member_mute(rn->m, true);
	rc = im_store_node_heartbeat(rn->st, c->name, 0);
	if (rc != IM_OK) {
		LOG_W("stopping: leave the view: %s (%s)", im_strerror(rc),
		      im_store_errmsg(rn->st));
	}
	rn->handover_at = rn->leave_start +
			  (c->refresh_ms + LEAVE_MARGIN_MS) / 1000.0;
	LOG_I("%s stopping: leaving the view, handover in %u ms", rn->owner,
	      c->refresh_ms + LEAVE_MARGIN_MS);
	ev_timer_init(&rn->leave_timer, on_leave_step, step, step);
	rn->leave_timer.data = rn;
	ev_timer_start(rn->loop, &rn->leave_timer);
	ev_run(rn->loop, 0);
	ev_timer_stop(rn->loop, &rn->leave_timer);
}

static void
stop(rolenode *rn)
{
	ev_timer_stop(rn->loop, &rn->tick);
	ev_signal_stop(rn->loop, &rn->sighup);
	if (rn->ch != NULL) {
		chatter_stats cs;

		chatter_flush(rn->ch);
		/* The same stats line as imd's (tests read it). */
		chatter_get_stats(rn->ch, &cs);
		LOG_I("chatter: %llu messages in %llu commits, %llu "
		      "duplicates, %llu fenced commits, %u hot groups",
		      (unsigned long long)cs.msgs,
		      (unsigned long long)cs.commits,
		      (unsigned long long)cs.dups, (unsigned long long)cs.stale,
		      cs.groups);
	}
	if (rn->cn != NULL) {
		connector_stop_accepting(rn->cn);
		connector_flush(rn->cn);
	}
	/* The link first: it refers to the roles, not the other way. */
	cl_link_destroy(rn->link);
	connector_destroy(rn->cn);
	chatter_destroy(rn->ch);
	cl_member_destroy(rn->m);
	im_shard_destroy(rn->map);
	if (rn->lfd >= 0) {
		close(rn->lfd);
	}
}

static int
run(struct ev_loop *loop, im_store *st, srv_config *c)
{
	rolenode rn;
	char host[64];
	uint16_t port = 0;
	/* Fast enough that failover finishes well within 3 s. */
	double period = c->balance_ms / 1000.0;
	int ret;

	memset(&rn, 0, sizeof(rn));
	rn.loop = loop;
	rn.st = st;
	rn.c = c;
	rn.lfd = -1;
	ev_timer_init(&rn.tick, on_tick, period, period);
	rn.tick.data = &rn;
	ev_signal_init(&rn.sighup, on_sighup, SIGHUP);
	rn.sighup.data = &rn;
	if ((ret = pick_role(&rn, c, host, sizeof(host), &port)) != 0) {
		return ret;
	}
	ret = 1;
	if (bind_port(&rn, host, port) != 0 || join(&rn) != 0 ||
	    start_role(&rn) != 0) {
		goto out;
	}
	balance(&rn);
	ev_timer_start(loop, &rn.tick);
	ev_signal_start(loop, &rn.sighup);
	if (c->port_file[0] != '\0' &&
	    srv_port_file_write(c->port_file, port) != 0) {
		fprintf(stderr, "imnode: %s: %s\n", c->port_file,
			strerror(errno));
		goto out;
	}
	fprintf(stderr, "imnode: %s %s (%s) up\n", c->role, c->name,
		rn.owner);
	ev_run(loop, 0);
	leave(&rn);
	ret = 0;
out:
	stop(&rn);
	return ret;
}

/*
 * A Chatter commits on a thread of its own (commit_thread): the thread and
 * the loop (heartbeats, the slot map, the Chatter's loads) share the one
 * store connection through two handles of the store mux (libim/store/mux.h).
 */
int
node_role_run(struct ev_loop *loop, im_store *st, srv_config *c)
{
	im__store_mux *mux = NULL;
	im_store *lst = NULL, *cst = NULL;
	int ret = 1;

	if (strcmp(c->role, "chatter") != 0 || !c->ch.commit_thread) {
		return run(loop, st, c);
	}
	if (im__store_mux_create(&mux, st) != IM_OK ||
	    im__store_mux_handle(mux, &lst) != IM_OK ||
	    im__store_mux_handle(mux, &cst) != IM_OK) {
		fprintf(stderr, "imnode: store handles: out of memory\n");
	} else {
		c->ch.commit_store = cst;
		ret = run(loop, lst, c);
	}
	im_store_close(cst);
	im_store_close(lst);
	im__store_mux_destroy(mux);
	return ret;
}
