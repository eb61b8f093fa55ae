/*
 * Role-to-role RPC over TCP (libev + nanopb): the transport under the
 * cluster's Router, Connector and Chatter processes.
 *
 * A frame is the client protocol's (im/frame.h) carrying one encoded
 * imrpc_Rpc (proto/rpc.proto). A connection (rpc_conn) is symmetric: each
 * side may call the other and answer the other's calls. Outgoing
 * connections (rpc_conn_connect) reconnect by themselves with exponential
 * backoff and jitter until destroyed; incoming ones belong to an rpc_server.
 *
 * Bounded everything, all allocated at create, nothing in the steady state:
 *  - at most max_inflight calls await an answer per connection, each with
 *    its own timeout (ev_timer);
 *  - at most out_max bytes wait for the socket per connection. A call or
 *    send that would go past either bound fails at once with IM_EFULL and
 *    queues nothing: a slow or stalled peer makes its callers fail fast, it
 *    never makes the sender's memory grow;
 *  - an incoming frame longer than frame_max is refused from its 4-byte
 *    length prefix, before its payload is read or anything is allocated,
 *    and the connection is closed (IM_ETOOBIG); a frame that does not
 *    decode closes the connection too (IM_EPROTO). The reason is in
 *    rpc_conn_errmsg() and passed to on_state.
 *
 * Every call completes exactly once through its rpc_reply_cb: IM_OK with
 * the answer, or IM_EUNAVAIL (timed out, connection lost, destroyed) with
 * NULL; the outcome of such a call is unknown, so the caller retries with
 * the same dedup keys. An answer arriving after its call timed out is
 * dropped (counted in late_replies).
 *
 * Callbacks may call any rpc function, including rpc_conn_destroy() on the
 * connection they were called for (freeing is deferred until the callback
 * returns). Messages passed to callbacks are borrowed until they return.
 *
 * Thread-safety: everything of one loop belongs to that loop's thread.
 * Addresses are numeric IPv4 (no blocking name lookups in a loop).
 */
#ifndef IM_RPC_H
#define IM_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "im/frame.h"
#include "im/im.h"
#include "rpc.pb.h"

/* Largest RPC payload: the client limit; the largest encodable imrpc_Rpc
 * fits (checked at compile time). */
#define RPC_FRAME_MAX IM_FRAME_MAX

typedef struct rpc_conn rpc_conn;
typedef struct rpc_server rpc_server;

/*
 * Completion of rpc_conn_call(): status IM_OK and the answer (borrowed), or
 * IM_EUNAVAIL and NULL when the call timed out, the connection was lost or
 * destroyed.
 */
typedef void (*rpc_reply_cb)(rpc_conn *c, int status, const imrpc_Rpc *reply,
			     void *payload);

/*
 * An incoming request (req_id != 0: answer it with rpc_conn_reply(), now or
 * later while the connection is up) or one-way message (req_id == 0).
 */
typedef void (*rpc_request_cb)(rpc_conn *c, uint64_t req_id,
			       const imrpc_Rpc *msg, void *payload);

/*
 * The connection came up (up = true) or went down: err is IM_OK when the
 * peer closed it, IM_ETOOBIG / IM_EPROTO for a bad frame, IM_ERR for a
 * socket error; why describes it. Calls in flight were completed with
 * IM_EUNAVAIL before this is called. An incoming connection is freed right
 * after its down callback; an outgoing one schedules its reconnect.
 */
typedef void (*rpc_state_cb)(rpc_conn *c, bool up, int err, const char *why,
			     void *payload);

#define RPC_OPTS_VERSION 1
typedef struct rpc_opts {
	uint32_t version;
	uint32_t max_inflight;   /* calls awaiting an answer (>= 1) */
	uint32_t out_max;        /* bytes queued for the socket */
	uint32_t frame_max;      /* largest payload accepted */
	uint32_t timeout_ms;     /* per call when the call passes 0 */
	uint32_t backoff_min_ms; /* first reconnect delay */
	uint32_t backoff_max_ms; /* reconnect delay cap */
	uint64_t seed;           /* reconnect jitter */
	im_allocator alloc;
	rpc_request_cb on_request; /* may be NULL: requests get Ack{code 2} */
	rpc_state_cb on_state;     /* may be NULL */
	void *payload;             /* passed to on_request and on_state */
} rpc_opts;

#define RPC_OPTS_INIT {RPC_OPTS_VERSION, 1024, 512u * 1024u, RPC_FRAME_MAX, \
		       5000, 50, 5000, 0, {NULL, NULL}, NULL, NULL, NULL}

typedef struct rpc_stats {
	uint32_t inflight;     /* calls awaiting an answer */
	uint32_t out_bytes;    /* bytes waiting for the socket */
	uint64_t calls;
	uint64_t replies;      /* answers matched to a call */
	uint64_t late_replies; /* answers to no call in flight (timed out) */
	uint64_t timeouts;
	uint64_t full;         /* calls/sends refused with IM_EFULL */
	uint64_t frames_in;
	uint64_t frames_out;
	uint64_t connects;     /* times the connection came up */
} rpc_stats;

/*
 * Create an outgoing connection to host:port (numeric IPv4) on loop. It
 * connects in the background and reconnects after every loss until
 * destroyed; on_state tells when it is up. opts are copied.
 * @retval IM_OK, IM_EINVAL (bad address or opts), IM_ENOMEM
 */
int rpc_conn_connect(rpc_conn **out, struct ev_loop *loop, const char *host,
		     uint16_t port, const rpc_opts *opts);

/*
 * Close and free c (NULL is a no-op). Calls in flight complete with
 * IM_EUNAVAIL first; on_state is not called. Inside a callback of c the
 * free happens when the callback returns.
 */
void rpc_conn_destroy(rpc_conn *c);

/*
 * Send msg as a request (its req_id and reply fields are set here) and call
 * cb once with the answer or the failure. timeout_ms 0 = opts.timeout_ms.
 * msg is encoded during the call (borrowed; its req_id and reply fields
 * are overwritten, which saves copying a large struct).
 * @retval IM_OK        queued; cb will be called exactly once, later
 * @retval IM_EUNAVAIL  not connected; nothing queued, cb not called
 * @retval IM_EFULL     max_inflight calls in flight or out_max bytes queued;
 *                      nothing queued, cb not called
 * @retval IM_ETOOBIG   msg encodes to more than frame_max
 * @retval IM_EINVAL    NULL argument or msg does not encode
 */
int rpc_conn_call(rpc_conn *c, imrpc_Rpc *msg, uint32_t timeout_ms,
		  rpc_reply_cb cb, void *payload);

/*
 * Send msg one-way (req_id 0, no answer). Same bounds and errors as
 * rpc_conn_call() except max_inflight.
 */
int rpc_conn_send(rpc_conn *c, imrpc_Rpc *msg);

/*
 * Answer the request req_id received on c with msg (req_id and reply are
 * set here). Same errors as rpc_conn_send(); IM_EINVAL for req_id 0.
 */
int rpc_conn_reply(rpc_conn *c, uint64_t req_id, imrpc_Rpc *msg);

bool rpc_conn_is_up(const rpc_conn *c);
/* Why the connection last went down or failed ("" if it never did). */
const char *rpc_conn_errmsg(const rpc_conn *c);
void rpc_conn_get_stats(const rpc_conn *c, rpc_stats *out);
/* The peer as "a.b.c.d:port". */
const char *rpc_conn_peer(const rpc_conn *c);
/* Application data per connection (incoming ones start with NULL). */
void rpc_conn_set_user(rpc_conn *c, void *user);
void *rpc_conn_user(const rpc_conn *c);

/*
 * Listen on host:port (port 0 = any free port) and accept up to max_conns
 * connections at a time, each with opts (copied); further ones are closed
 * at once. Incoming connections report through opts' callbacks.
 * @retval IM_OK, IM_EINVAL, IM_ENOMEM, IM_ERR (bind/listen failed, see
 *         errno)
 */
int rpc_server_open(rpc_server **out, struct ev_loop *loop, const char *host,
		    uint16_t port, uint32_t max_conns, const rpc_opts *opts);

/*
 * What an accepted connection must do to keep its place (issue 13: idle
 * peers that connect and never speak held all of a Router's slots, so the
 * nodes that mattered could not get in). Each breach closes the
 * connection through on_state(up = false, IM_EUNAVAIL, why) with why
 * naming the peer and the deadline:
 *  - admit_ms: the application must call rpc_conn_admit() (the Router
 *    does on Hello) within admit_ms of the accept; 0 = no deadline;
 *  - frame_ms: a frame whose first byte arrived must arrive whole within
 *    frame_ms of it (or of the previous complete frame), and bytes queued
 *    for the peer must move at least once every frame_ms (a peer that
 *    stopped reading); 0 = no deadline;
 *  - per_peer_max: connections at a time from one IPv4 address; one more
 *    is closed at once; 0 = only the server's max_conns.
 * When max_conns connections are up, a new one takes the place of the
 * oldest connection not admitted yet (closed as above); when every one is
 * admitted, the new one is closed at once. Counted in
 * rpc_server_get_stats().
 */
typedef struct rpc_server_limits {
	uint32_t admit_ms;
	uint32_t frame_ms;
	uint32_t per_peer_max;
} rpc_server_limits;

typedef struct rpc_server_stats {
	uint64_t admit_timeouts; /* closed: not admitted within admit_ms */
	uint64_t frame_timeouts; /* closed: a frame or output stalled */
	uint64_t evicted;        /* closed unadmitted to make room */
	uint64_t refused;        /* closed at accept: a bound was hit */
} rpc_server_stats;

/* Apply limits to the connections accepted from now on (and the admit
 * deadline to none already accepted). Defaults: all 0. */
void rpc_server_set_limits(rpc_server *s, const rpc_server_limits *lim);
void rpc_server_get_stats(const rpc_server *s, rpc_server_stats *out);

/* The application accepts c as a peer (rpc_server_limits.admit_ms):
 * stops its admit deadline; it is no longer evicted to make room. No-op
 * for an outgoing connection or one already admitted. */
void rpc_conn_admit(rpc_conn *c);

/*
 * The reconnect delay after `attempt` failures in a row (0 = first retry):
 * min_ms doubled per attempt, capped at max_ms, then "equal jitter": a
 * value in [d/2, d] picked by r (a random number). Pure; exposed for tests.
 */
uint32_t rpc_backoff_ms(uint32_t attempt, uint32_t min_ms, uint32_t max_ms,
			uint64_t r);

/* The bound port. */
uint16_t rpc_server_port(const rpc_server *s);

/* Connections currently accepted. */
uint32_t rpc_server_conns(const rpc_server *s);

/*
 * Stop listening and destroy every accepted connection (their calls in
 * flight complete with IM_EUNAVAIL). NULL is a no-op. Not from inside a
 * callback of one of its connections.
 */
void rpc_server_close(rpc_server *s);

#endif
