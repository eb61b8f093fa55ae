/*
 * The Router's state, shared by its two halves: routing (router.c:
 * forwarding by the slot map, parked user events, the connections) and
 * failure detection (router_judge.c: heartbeats, judging owners dead,
 * moving their slots). Private to those two files.
 */
#ifndef IM_CLUSTER_ROUTER_INT_H
#define IM_CLUSTER_ROUTER_INT_H

#include "router.h"

/* Codes of im.Code used here. */
#define CODE_BAD_REQUEST 2
#define CODE_UNAVAILABLE 8
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
	bool closed; /* its connection closed since we last heard it */
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

/* router.c: Forwards in flight to a Chatter that lost the slot of one
 * of their groups are answered unavailable now. */
void router__abandon_moved(router *r);

/* router.c: the map changed: route the parked user events again. */
void router__retry_parked(router *r);

/* router_judge.c: a node moved slots itself (a handover: to a node that
 * joined, or all of them as it stops) and asked us to reload: every other
 * Connector and Chatter reloads now too, so a new owner serves its slots
 * at once rather than at its next balance tick. */
void router__relay_reload(router *r, const rpc_conn *from);

/* router_judge.c: owner answered this Router now (Hello, Heartbeat). */
void router__heard(router *r, const char *owner);

/* router_judge.c: the connection of owner (it said Hello) closed: judged
 * by the short timeout from now on, until heard again (router.h). */
void router__closed(router *r, const char *owner);

/* router_judge.c: the clock default, the start of silence for owners
 * never heard of, and the heartbeat timer (opts.heartbeat_ms). */
void router__judge_start(router *r);
void router__judge_stop(router *r);

#endif
