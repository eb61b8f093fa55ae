/*
 * Cluster membership and peer connections for the role processes.
 *
 * cl_member: this node's entry in the store (register at create, then a
 * heartbeat every heartbeat_ms) and a view of every node, reloaded every
 * refresh_ms, with liveness judged by heartbeat age (dead_after_ms). The
 * configuration of a node names only the store and itself; everything
 * else (where the Routers are, who the Chatters are) comes from this view.
 *
 * cl_peers: one RPC connection (servers/rpc) to every live node of one
 * role in the view, kept in step with it: a node that appears is
 * connected, one that dies, leaves or moves is dropped. Connectors and
 * Chatters keep one to all Routers (and survive losing one: pick() skips
 * connections that are down); Routers keep one to every Chatter and
 * Connector and address them by node name (the slot owner string).
 *
 * Store trouble never stops a node: a failed heartbeat or reload is
 * counted, described in errmsg and retried at the next tick. A heartbeat
 * answered IM_ENOTFOUND (the row was removed) registers again, as a new
 * incarnation.
 *
 * Time: wall-clock milliseconds (heartbeats are compared across machines)
 * from opts.now_ms, so tests drive it with a fake clock and cl_member_tick().
 * Thread-safety: the loop's thread only.
 */
#ifndef IM_CLUSTER_MEMBER_H
#define IM_CLUSTER_MEMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "im/store.h"
#include "rpc.h"

typedef struct cl_member cl_member;
typedef struct cl_peers cl_peers;

/* One node as the view sees it (copied out of the store). */
typedef struct cl_node {
	char name[IM_NODE_NAME_MAX + 1];
	char address[IM_NODE_ADDR_MAX + 1];
	im_node_role role;
	uint64_t heartbeat_ms;
	uint64_t incarnation;
	bool alive;
} cl_node;

#define CL_MEMBER_OPTS_VERSION 1
typedef struct cl_member_opts {
	uint32_t version;
	uint32_t heartbeat_ms;  /* heartbeat period */
	uint32_t refresh_ms;    /* view reload period */
	uint32_t dead_after_ms; /* heartbeat age after which a node is dead */
	uint32_t max_nodes;     /* view bound; more nodes are not seen */
	bool timers;            /* run heartbeat/refresh on ev_timers */
	uint64_t (*now_ms)(void *clock); /* NULL: wall clock */
	void *clock;
	/* The view changed (a node appeared, died, came back, moved or
	 * left). May be NULL. */
	void (*on_change)(cl_member *m, void *payload);
	void *payload;
	/* Silent past dead_after_ms (paused, cut off from the store): the
	 * others may have judged us dead and taken our slots, so come back
	 * as a new incarnation (cl_member_incarnation() changes, on_change
	 * is called) instead of heartbeating as if nothing happened. */
	bool reincarnate;
} cl_member_opts;

/*
 * Defaults (include/im/store.h): a node is dead 1.5 s after its last
 * heartbeat and everyone sees it within 100 ms more (the Routers judge a
 * killed one sooner: router.h). Fifteen missed heartbeats make a node dead: a
 * busy store or a loaded machine does not kill healthy nodes (the fault
 * runs count false failovers, and require none).
 */
#define CL_MEMBER_OPTS_INIT {CL_MEMBER_OPTS_VERSION, IM_NODE_HEARTBEAT_MS, \
			     IM_NODE_HEARTBEAT_MS, IM_NODE_DEAD_AFTER_MS, \
			     1024, true, NULL, NULL, NULL, NULL, false}

/*
 * Register `name` (role, address) in st and load the view. The address is
 * where peers reach the node ("a.b.c.d:port" for those that listen: a
 * Router's RPC port, a Connector's client port) or any non-empty text.
 * loop and st are borrowed and must outlive m; strings and opts are
 * copied.
 * @retval IM_OK, IM_EINVAL, IM_ENOMEM, or the store's error on register
 *         (IM_ENOTSUP: the backend has no node ops)
 */
int cl_member_create(cl_member **out, struct ev_loop *loop, im_store *st,
		     const char *name, im_node_role role, const char *address,
		     const cl_member_opts *opts);

/* Stop the timers and free m (NULL is a no-op). The row stays: the node
 * turns dead by age, which is what a crash looks like too. */
void cl_member_destroy(cl_member *m);

/*
 * Heartbeat if one is due, reload the view if due, call on_change if it
 * changed. The timers call this; tests call it with a fake clock.
 * @retval IM_OK, or the store error of this tick (also in errmsg)
 */
int cl_member_tick(cl_member *m);

/*
 * Stop (mute = true) or resume heartbeating; the view is still reloaded.
 * A muted node's row ages until the others judge it dead and move its
 * slots: what a node that can no longer serve does (node_role.c). Resumed
 * after more than dead_after_ms with opts.reincarnate, it comes back as a
 * new incarnation at its next tick.
 */
void cl_member_mute(cl_member *m, bool mute);

/* This node's incarnation (from the last register). */
uint64_t cl_member_incarnation(const cl_member *m);

/* Nodes in the view (sorted by name) and one of them. */
size_t cl_member_count(const cl_member *m);
const cl_node *cl_member_node(const cl_member *m, size_t i);
/* The node called name, or NULL. */
const cl_node *cl_member_find(const cl_member *m, const char *name);

/*
 * Alive now, not only at the last reload: alive and its heartbeat in the
 * view at most dead_after_ms old by m's clock. A node that a Router has
 * just judged dead (by a fresh read of the store) is never fresh here,
 * even if this view was loaded before its heartbeat ran out.
 */
bool cl_member_fresh(const cl_member *m, const cl_node *n);

/*
 * The slot owner string of a node incarnation: "NAME/INCARNATION" (name
 * cut at 40 bytes, incarnation as 8+ hex digits). A restarted node is a
 * new owner; its previous life's slots visibly belong to someone else.
 */
void cl_owner_of(char *out, size_t len, const char *name,
		 uint64_t incarnation);

/* Store failures seen by ticks, and the last one's description. */
uint64_t cl_member_errors(const cl_member *m);
const char *cl_member_errmsg(const cl_member *m);

/*
 * Keep an RPC connection to every live node of `role` in m's view except
 * m's own node, with opts (copied; their on_state/payload are the
 * caller's). Call cl_peers_sync() from m's on_change (or after a tick).
 * @retval IM_OK, IM_EINVAL, IM_ENOMEM
 */
int cl_peers_create(cl_peers **out, struct ev_loop *loop, cl_member *m,
		    im_node_role role, uint32_t max_peers,
		    const rpc_opts *opts);

/* Connect new live nodes, drop dead, gone or moved ones. Calls in flight
 * on a dropped connection complete with IM_EUNAVAIL. */
void cl_peers_sync(cl_peers *p);

/* Connections held (up or not), and those up. */
size_t cl_peers_count(const cl_peers *p);
size_t cl_peers_up(const cl_peers *p);

/* Call fn for every connection that is up (fn must not sync p). */
void cl_peers_each(cl_peers *p, void (*fn)(rpc_conn *c, void *payload),
		   void *payload);

/* The connection to node `name`, or NULL (none, or not up). */
rpc_conn *cl_peers_get(cl_peers *p, const char *name);

/*
 * An up connection for `key`: the same key picks the same peer while the
 * set of up peers is unchanged (a group's sends keep one path), and the
 * next up peer when that one is down. NULL if no peer is up.
 */
rpc_conn *cl_peers_pick(cl_peers *p, uint64_t key);

void cl_peers_destroy(cl_peers *p);

/* Split "a.b.c.d:port"; false if malformed. */
bool cl_split_address(const char *address, char *host, size_t hostlen,
		      uint16_t *port_out);

#endif
