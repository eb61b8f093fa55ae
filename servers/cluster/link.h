/*
 * The link of a Connector or Chatter process to the Routers: a role_router
 * (servers/roles/role.h) whose four calls become RPC to the Routers, and
 * the Routers' messages become calls of the local role. The same role code
 * runs in imd (router_local.c, direct calls) and here.
 *
 *   Connector: submit()  -> Forward to a Router (a call; on failure, and
 *                           when no Router is up, the ops are answered
 *                           ERR_UNAVAILABLE locally: the client retries
 *                           with the same dedup id)
 *              Replies, Deliver, UserEvents from Routers -> connector_*()
 *              user_events() -> UserEvents to a Router
 *   Chatter:   Forward from Routers -> chatter_submit() (answered Ack)
 *              reply(), deliver(), user_events() -> one-way messages to
 *              a Router, split to the RPC bounds (rpc.options)
 *
 * The Router for a message is picked by key (group, user or Connector id),
 * so one group's traffic keeps one path while that Router is up, and moves
 * to the next one up when it is not (cl_peers_pick). A link keeps an RPC
 * connection to every live Router of the membership view and says Hello
 * with the node's owner string on each of them.
 */
#ifndef IM_CLUSTER_LINK_H
#define IM_CLUSTER_LINK_H

#include "chatter.h"
#include "connector.h"
#include "member.h"
#include "role.h"

typedef struct cl_link cl_link;

typedef struct cl_link_stats {
	uint64_t sent;         /* messages sent to Routers */
	uint64_t unavailable;  /* ops answered ERR_UNAVAILABLE locally */
	uint64_t dropped;      /* replies/deliveries/events not sent */
	uint64_t received;     /* messages from Routers */
} cl_link_stats;

/*
 * A link for the node `owner` (the Hello name: the owner string of its
 * slots) of role (imrpc_Role_ROLE_CONNECTOR or _CHATTER), over the Routers
 * of m's view. rpc: options of each Router connection (callbacks are set
 * by the link). Strings are copied; loop and m are borrowed.
 */
int cl_link_create(cl_link **out, struct ev_loop *loop, cl_member *m,
		   const char *owner, imrpc_Role role, const rpc_opts *rpc);

/* The role_router to give to connector_create / chatter_create. */
role_router *cl_link_router(cl_link *l);

/* Where incoming messages go (set one, once the role exists). */
void cl_link_set_connector(cl_link *l, connector *cn);
void cl_link_set_chatter(cl_link *l, chatter *ch);

/* Follow the membership view (call from its on_change). */
void cl_link_sync(cl_link *l);

/* Routers connected and up. */
size_t cl_link_routers_up(const cl_link *l);

/* When (ev_now) a Router last showed it serves this node: it took our
 * Hello or sent us anything (Routers heartbeat every node they have).
 * Starts at the link's creation. Connected is not enough: a Router that
 * is paused, or full and closing what it accepts, serves nobody. */
ev_tstamp cl_link_heard(const cl_link *l);

void cl_link_get_stats(const cl_link *l, cl_link_stats *out);

/* Nothing pending towards the Routers: every call (Forwards, Replies
 * batches) answered, every byte (a SlotMap reload too) written. A node
 * stopping gracefully waits for this, within its bound. */
bool cl_link_idle(cl_link *l);

void cl_link_destroy(cl_link *l);

/* Tell every Router to reload the slot map now (after claims or a
 * handover), instead of at its next periodic refresh. */
void cl_link_notify_slots(cl_link *l);

/* This node came back as a new owner (a new incarnation): say Hello with
 * it again on every Router connection (and on later ones). The Hello keeps
 * the route id of the first owner (rpc.proto), so replies to a Connector's
 * requests routed under its earlier name still reach it. */
void cl_link_set_owner(cl_link *l, const char *owner);

/* Set when a Router asks everyone to reload the slot map. */
void cl_link_on_slot_map(cl_link *l, void (*cb)(void *payload),
			 void *payload);

#endif
