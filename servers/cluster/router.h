/*
 * The Router role of the cluster: stateless forwarding between Connectors
 * and Chatters over RPC (servers/rpc), by the slot map (im/shard.h) it
 * reloads from the store.
 *
 * Connectors and Chatters connect to every live Router (cl_peers) and say
 * Hello{node, role} first on every connection; the Router addresses them
 * by that name, which is also the owner string of their slots.
 *
 *   Forward  (Connector) -> one Forward per owning Chatter (CREATE_GROUP:
 *            any connected Chatter, by the creator's id). Answered with
 *            Ack once dispatched. Ops whose owner is unknown, not
 *            connected, refuses them (IM_EFULL) or fails/times out are
 *            answered to their Connector as Reply{code ERR_UNAVAILABLE}:
 *            the client retries with the same dedup id (exactly-once in
 *            the store).
 *   Replies  (Chatter)   -> grouped by route.connector (cl_node_id of the
 *            Connector's name), one message per Connector.
 *   Deliver  (Chatter)   -> split by the user slot owner of each member:
 *            ONE Deliver per destination Connector per batch, carrying
 *            only that Connector's members and the messages they need.
 *   UserEvents           -> split by the user slot owner of each event
 *            (kept or reloaded for, see below).
 *   SlotMap              -> applied to the map (reload = from the store).
 *   Heartbeat            -> echoed.
 *
 * Failure detection (issue 6). Every heartbeat_ms the Router calls
 * Heartbeat on each Connector and Chatter connected to it (any answer
 * counts) and judges every slot owner of its map. An owner is dead for
 * this Router when BOTH
 *   (a) it has not answered this Router for dead_after_ms: no Heartbeat
 *       answer and no Hello since then (an owner never heard of is timed
 *       from the Router's start, so a fresh Router waits a full timeout);
 *   (b) the store says so, read at that moment: no node row is that owner
 *       (the node re-registered as a newer incarnation, or its row is
 *       gone), or the row's heartbeat is older than dead_after_ms.
 * Once the owner's connection to this Router closed (after its Hello),
 * both ages are 3 * heartbeat_ms instead (when that is shorter), until it
 * is heard again: a killed process closes its sockets at once, so a crash
 * is judged in 3 periods, not dead_after_ms; a pause or a cut keeps the
 * connection open and waits the full timeout. The close alone never
 * decides: a live node heartbeats the store every period (b).
 * Silence is counted only while the Router listens: when its own loop
 * stalled (ticks more than two periods apart: a blocking store call, a
 * pause), the gap is credited to every owner.
 * Why both: (a) alone would let one Router that lost its link to a healthy
 * node (a partition between the two, the Router's own stall) take the
 * node's slots although the node still heartbeats the store and serves
 * through the other Routers: one Router's view must not decide. (b) alone
 * is what every node can see; requiring (a) too means a Router never moves
 * slots of a node that still answers it. A node that is really gone
 * (killed, paused, cut off from the store and the Routers) meets both
 * within dead_after_ms + heartbeat_ms (1500 + 100 with the defaults), a
 * killed one within 4 heartbeat periods (0.4 s).
 *
 * A dead owner's slots go where im_shard_plan() puts them over the live
 * nodes of its role (store rows with a fresh heartbeat, the same set on
 * every Router), each by im_shard_claim() (CAS, epoch + 1; the old owner
 * is fenced). Only the dead owner's slots move; evening out live nodes is
 * their own handover. Several Routers deciding at once do not fight: they
 * plan the same moves, the store's CAS lets one win each slot, and a
 * loser (IM_ECONFLICT) reloads the map and finds nothing left to do. Then
 * the Router sends SlotMap{changes, reload} to every Connector and Chatter
 * connected to it, so the new owners (and the Connectors, which route by
 * the map too) reload the map at once, and answers Forwards in flight to
 * the dead Chatter unavailable. The nodes' own claim of a dead owner's
 * slots stays as the fallback when no Router is up (servers/cluster/
 * node_main.c); the CAS makes the two safe together.
 *
 * Deliveries, replies and events to Connectors are one-way: a Connector
 * that is down or too slow (IM_EFULL) loses deliveries, which is safe
 * because every message is in the store and clients repair gaps by
 * prev_seq and resync; it is counted in the stats. User events are not in
 * the store until their owner appended them, so they are not lost that
 * way: one whose owner is not connected here (dead and not moved yet,
 * renamed) is kept (at most 1024, 10 s each) and routed again at every
 * map reload; one a Connector sends back (UserEvent.hops > 0: it does
 * not own the user, our map is stale) makes the Router reload its map
 * before routing it. A Connector that comes back as a new incarnation
 * says Hello with its new name and its first name's route id, so
 * Route.connector ids stay valid.
 *
 * Thread-safety: the loop's thread only.
 */
#ifndef IM_CLUSTER_ROUTER_H
#define IM_CLUSTER_ROUTER_H

#include <ev.h>

#include "im/shard.h"
#include "im/store.h"
#include "rpc.h"

typedef struct router router;

#define ROUTER_OPTS_VERSION 1
typedef struct router_opts {
	uint32_t version;
	uint32_t max_conns;          /* Connectors + Chatters connected */
	uint32_t max_calls;          /* Forwards to Chatters in flight */
	uint32_t refresh_ms;         /* slot map reload period; 0 = never */
	uint32_t forward_timeout_ms; /* a Chatter's Ack of a Forward */
	rpc_opts rpc;                /* per connection (callbacks are set
					by the router) */
	/* Failure detection (see above). */
	uint32_t heartbeat_ms;  /* Heartbeat period and judging tick; 0: no
				   timer (router_tick() by hand) */
	uint32_t dead_after_ms; /* silence, and store heartbeat age, after
				   which an owner is dead; 0: never */
	uint32_t max_nodes;     /* node rows read and owners watched */
	uint64_t (*now_ms)(void *clock); /* wall clock ms; NULL: ev_time() */
	void *clock;
	/* What a connection must do to keep its place (rpc.h): say Hello
	 * within admit_ms, finish a frame begun and read what it is sent
	 * within frame_ms, at most per_peer_max from one address. When
	 * max_conns are up, the oldest that has not said Hello makes room.
	 * Each connection closed so is logged on stderr. */
	rpc_server_limits limits;
} router_opts;

#define ROUTER_OPTS_INIT {ROUTER_OPTS_VERSION, 256, 4096, 1000, 5000, \
			  RPC_OPTS_INIT, IM_NODE_HEARTBEAT_MS, \
			  IM_NODE_DEAD_AFTER_MS, 1024, NULL, NULL, \
			  {2000, 5000, 64}}

typedef struct router_stats {
	uint64_t forwards;      /* Forward messages sent to Chatters */
	uint64_t ops;           /* ops forwarded */
	uint64_t unavailable;   /* ops answered ERR_UNAVAILABLE */
	uint64_t replies;       /* replies passed to Connectors */
	uint64_t delivers;      /* Deliver messages sent to Connectors */
	uint64_t events;        /* user events passed on */
	uint64_t dropped;       /* replies/members/events with no way on */
	uint64_t map_errors;    /* failed slot map reloads */
	uint32_t conns;         /* connected nodes that said Hello */
	uint64_t heartbeats;    /* Heartbeats answered */
	uint64_t dead;          /* owners judged dead (once per judgement) */
	uint64_t moved;         /* slots this Router moved off dead owners */
	uint64_t conflicts;     /* of those, CAS lost to another mover */
	uint64_t notified;      /* SlotMap messages sent to nodes */
	uint64_t detect_errors; /* store errors while judging or moving */
	uint64_t parked;        /* user events kept for an owner not
				   connected yet (routed at a map reload,
				   dropped after 10 s) */
	rpc_server_stats rpc;   /* connections closed by opts.limits */
} router_stats;

/*
 * Listen on host:port (0 = any) and serve. loop, st and map are borrowed
 * and must outlive the router; the map is reloaded from st now and every
 * refresh_ms.
 * @retval IM_OK, IM_EINVAL, IM_ENOMEM, IM_ERR (listen failed), or the
 *         store error of the first map load
 */
int router_create(router **out, struct ev_loop *loop, im_store *st,
		  im_shard_map *map, const char *host, uint16_t port,
		  const router_opts *opts);

uint16_t router_port(const router *r);

/* Reload the slot map from the store now. */
int router_reload(router *r);

/*
 * Heartbeat every connected Connector and Chatter (one call in flight per
 * connection), then judge the slot owners and move the slots of the dead
 * ones (see above). The timer calls this every heartbeat_ms; tests call it
 * with a fake clock. Moves only what the store's CAS grants.
 * @retval IM_OK, IM_EINVAL, or the store error of this judgement (also
 *         counted in detect_errors; retried at the next tick)
 */
int router_tick(router *r);

void router_get_stats(const router *r, router_stats *out);

/* Close every connection (Forwards in flight answer ERR_UNAVAILABLE to
 * Connectors still connected) and free r. NULL is a no-op. */
void router_destroy(router *r);

/* The id a Connector puts in route.connector: FNV-1a of its node name,
 * never 0. Routers map it back to the connected node of that name. */
uint32_t router_node_id(const char *name);

#endif
