/*
 * The Connector role: client connections (TCP, libev), token login and
 * resume, sessions with push queues (retransmit, bounded), each online
 * user's conversation list, sync, and the user queues of the users it owns
 * (it allocates their seqs and appends them, fenced by the user slot).
 * Requests for groups go to the Chatters through the router.
 */
#ifndef IM_ROLE_CONNECTOR_H
#define IM_ROLE_CONNECTOR_H

#include <ev.h>

#include "im/shard.h"
#include "role.h"

typedef struct connector connector;

typedef struct connector_opts {
	uint32_t max_conns;
	uint32_t max_sessions; /* per user (devices + sessions in grace) */
	uint32_t frame_max;    /* client frame payload limit */
	uint32_t wbuf_max;     /* bytes queued for one slow reader */
	uint32_t pushq_items;
	uint32_t pushq_bytes;
	uint32_t rto_ms;
	uint32_t max_convs;    /* conversations per user */
	uint32_t uq_step;      /* ids per user-queue segment */
	uint32_t replay_limit; /* per cursor when resuming from the store */
	double login_timeout;  /* seconds */
	double idle_timeout;
	double grace; /* keep a dropped session's queue this long */
	/* A frame begun must be complete within this many seconds, however
	 * its bytes trickle in: the idle timeout counts bytes, so without it
	 * a client sending one byte a second inside a frame would hold its
	 * connection (and a frame_max buffer) forever. Reaching it is
	 * Error{ERR_TIMEOUT} and a close. */
	double frame_timeout;
} connector_opts;

#define CONNECTOR_OPTS_INIT                                                    \
	{                                                                      \
		10000, 16, 8192, 1u << 20, 1024, 1u << 20, 5000, 4096, 100,    \
		        256, 10.0, 90.0, 60.0, 10.0                            \
	}

/*
 * Create a Connector. index is its number in the router's table (0 in
 * imd). The secret keys the Connector's token verifier (not copied
 * otherwise). loop, st, map, node, router are borrowed.
 */
int connector_create(connector **out, struct ev_loop *loop, im_store *st,
                     im_shard_map *map, const char *node, uint32_t index,
                     role_router *router, const void *secret, size_t secret_len,
                     const connector_opts *opts);

/* Listen on addr:port (port 0 = any; *port_out gets the bound port):
 * connector_bind, then connector_listen_fd. */
int connector_listen(connector *cn, const char *addr, uint16_t port,
                     uint16_t *port_out);

/*
 * Bind and listen on addr:port with no Connector yet (port 0 = any;
 * *port_out, may be NULL, gets the bound port). A server binds its client
 * port before it opens the store or takes any slot: a process that cannot
 * serve (the port is another's) must fail before it can take a live
 * server's slots. *fd_out is non-blocking and close-on-exec; clients that
 * connect before connector_listen_fd wait in the backlog. Failures are
 * logged with the reason (bad address, "Address already in use").
 * @retval IM_OK, IM_EINVAL (not an IPv4 address), IM_ERR (socket, bind,
 *         listen)
 */
int connector_bind(const char *addr, uint16_t port, int *fd_out,
                   uint16_t *port_out);

/* Accept clients on fd, a socket from connector_bind; the Connector owns
 * it from now on (closed by connector_stop_accepting or destroy). */
void connector_listen_fd(connector *cn, int fd);

/*
 * TLS on the client port. Once enabled the port speaks TLS 1.2 or 1.3
 * only (a plain-text client fails the handshake and is closed); the
 * handshake counts against login_timeout and every limit of a plain
 * connection holds. cert: PEM certificate chain, key: its PEM private
 * key; client_ca: PEM CA certificates that sign client certificates,
 * needed unless client_auth is NONE. OPTIONAL asks for a client
 * certificate and checks one that is sent; REQUIRE refuses a client
 * without one. A client certificate authenticates the transport only:
 * the Login token still names the user. Paths are copied (a reload reads
 * them again).
 */
typedef enum connector_tls_client {
	CONNECTOR_TLS_CLIENT_NONE = 0,
	CONNECTOR_TLS_CLIENT_OPTIONAL = 1,
	CONNECTOR_TLS_CLIENT_REQUIRE = 2
} connector_tls_client;

typedef struct connector_tls_opts {
	const char *cert;
	const char *key;
	const char *client_ca;
	connector_tls_client client_auth;
} connector_tls_opts;

/*
 * Turn TLS on, before connector_listen_fd. Every file is loaded and
 * checked now (the key must match the certificate).
 * @retval IM_OK, IM_EINVAL (a missing setting, a file that does not load:
 *         why in err, e.g. "tls: /path/key.pem: no such file"), IM_ENOMEM
 */
int connector_tls_enable(connector *cn, const connector_tls_opts *o, char *err,
                         size_t errlen);

/*
 * Load the TLS files again (SIGHUP): new connections get the new
 * certificate, key and client CAs; open connections go on with the ones
 * they started with. A file that does not load changes nothing (the old
 * context stays in use) and the reason is in err.
 * @retval IM_OK, IM_EINVAL (TLS is off, or a file failed)
 */
int connector_tls_reload(connector *cn, char *err, size_t errlen);

/* Stop accepting (shutdown begins). */
void connector_stop_accepting(connector *cn);

/* Router entry points (see role.h). */
void connector_reply(connector *cn, const role_reply *reps, size_t n);
void connector_deliver(connector *cn, const role_fanout *f, size_t n);
void connector_user_events(connector *cn, const role_uevent *ev, size_t n);

/*
 * Cluster: fn(payload, owner) gives the client address ("host:port") of
 * the Connector `owner` (a slot owner string), or NULL if unknown. A user
 * logging in here but owned by another live Connector then gets
 * Redirect{address} (and the connection closes) instead of
 * ERR_UNAVAILABLE. imd never sets it.
 */
void connector_set_redirect(connector *cn,
                            const char *(*fn)(void *payload, const char *owner),
                            void *payload);

/*
 * Cluster handover: user slot `slot` moved to another Connector (the CAS
 * is done). Every connection of a user of the slot gets Redirect{address}
 * (req_id 0) and is closed once it is written (address NULL: just
 * closed), and those users' sessions are dropped without a grace period:
 * the clients resume at the new owner, which replays from the store.
 * Returns the number of connections redirected or closed.
 */
uint32_t connector_drop_slot(connector *cn, uint32_t slot, const char *address);

/* Write what is queued now (shutdown). */
void connector_flush(connector *cn);

/*
 * Cluster: close the connections of users whose slot the map no longer
 * gives to this node (another Connector took it while this one could not
 * heartbeat), with Redirect{address} to the new owner when known, else
 * ERR_UNAVAILABLE: their deliveries go to the new owner now, so staying
 * here would starve them. The client resumes there from its cursors. The
 * sessions of those users (in grace too) are dropped: a later resume here
 * replays from the store, never from a push queue that missed what went
 * to the other owner. Returns how many connections were closed.
 */
uint32_t connector_shed_moved(connector *cn);

/*
 * Cluster: the node string given to connector_create (borrowed) was
 * renamed in place to a new incarnation's owner name, and the map
 * reloaded. Every user-queue segment is dropped (the next event takes a
 * fresh one) and the users of slots not owned under the new name are shed
 * as by connector_shed_moved. Routes keep the index given at create.
 * Returns how many connections were closed.
 */
uint32_t connector_renamed(connector *cn);

/*
 * User events (connector_user_events) for users the map does not give to
 * this node, after one reload of the map, are not dropped: they go back
 * through the router's user_events with hops + 1 (the Router routes them
 * by its own, reloaded, map); past ROLE_UEVENT_HOPS_MAX they are dropped
 * and logged. The READ event of a MarkRead is raised by the Connector
 * itself: for a user the map gives to this node it is applied here, never
 * sent round through the router.
 */

typedef struct connector_stats {
	uint32_t conns;
	uint32_t users;
	uint32_t sessions;
	uint64_t accepted;
	uint64_t frames_in;
	uint64_t frames_out;
	uint64_t writes;
} connector_stats;
void connector_get_stats(const connector *cn, connector_stats *out);

/*
 * Heap bytes the Connector holds, by part (docs/operations.md, "Memory"):
 * users (struct user and the hash), sessions (struct session), pushqs
 * (push queues' arrays, live or kept; pushq_live: unacked payload bytes
 * in them), convlists (conversation lists of online users), conns and
 * conn_bufs (connections, their write buffers and partial frames), fixed
 * (sized at create: connection table, scratch, group-name cache).
 * A walk over every user and connection: for a periodic line only.
 */
typedef struct connector_mem {
	size_t users, sessions, pushqs, pushq_live, convlists;
	size_t conns, conn_bufs, fixed, total;
} connector_mem;
void connector_get_mem(const connector *cn, connector_mem *out);

/* Close every connection and free everything. */
void connector_destroy(connector *cn);

#endif
