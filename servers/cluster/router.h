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
 *   UserEvents           -> split by the user slot owner of each event.
 *   SlotMap              -> applied to the map (reload = from the store).
 *   Heartbeat            -> echoed.
 *
 * Deliveries, replies and events to Connectors are one-way: a Connector
 * that is down or too slow (IM_EFULL) loses them, which is safe because
 * everything is in the store and clients repair gaps by prev_seq and
 * resync; it is counted in the stats.
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
} router_opts;

#define ROUTER_OPTS_INIT {ROUTER_OPTS_VERSION, 256, 4096, 1000, 5000, \
			  RPC_OPTS_INIT}

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

void router_get_stats(const router *r, router_stats *out);

/* Close every connection (Forwards in flight answer ERR_UNAVAILABLE to
 * Connectors still connected) and free r. NULL is a no-op. */
void router_destroy(router *r);

/* The id a Connector puts in route.connector: FNV-1a of its node name,
 * never 0. Routers map it back to the connected node of that name. */
uint32_t router_node_id(const char *name);

#endif
