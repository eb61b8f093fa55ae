/**
 * @file client.h
 * The libim client: one connection to a libim server (imd or a Connector)
 * speaking the client protocol (proto/im.proto, described in docs/protocol.md;
 * the client's rules step by step: docs/client-state-machine.md).
 *
 * What it does for the caller:
 *  - login with a token, then keeps the user's conversation list (last and
 *    read positions, exact unread counts) up to date, by the rules of the
 *    server's own list (im_convlist, include/im/convlist.h);
 *  - sends with an automatic dedup id (random 64-bit from a seeded PRNG)
 *    kept in a bounded outbox until acked; unacked sends are retried after
 *    a reconnect, after ERR_UNAVAILABLE, and after opts.send_timeout_ms
 *    without an answer, always with the SAME dedup id, so the server
 *    stores them once;
 *  - reconnects automatically (exponential backoff with jitter, bounded)
 *    and resumes with the session and a cursor per known conversation;
 *    with several server addresses (opts.servers) a failed or lost
 *    connection moves on to the next address, and a Redirect is followed
 *    (falling back to the list when its target fails);
 *  - drops duplicate deliveries by (group, seq) and repairs gaps: when a
 *    delivery's prev_seq is not the last seq seen, it syncs the missing
 *    range before going on; acks deliveries cumulatively, once per batch.
 *
 * Two ways to drive it:
 *  - event driven: im_client_attach() to the caller's libev loop and use the
 *    callbacks;
 *  - blocking, for scripts and tests: im_client_run_until(),
 *    im_client_connect_wait(), im_client_send_wait(), im_client_sync_wait(),
 *    im_client_wait_reply() run the attached loop (or a private one if none
 *    was attached) until the condition holds or the timeout expires.
 *
 * Memory: one allocator per client (opts.alloc); every bound (outbox,
 * conversations, pending requests, buffers) is fixed at create. All is
 * allocated at create but the list's entries, which grow by doubling up to
 * max_convs; a conversation that finds no memory is handled as one over
 * max_convs (shown, not deduplicated).
 *
 * Callbacks run inside the loop. They may call any im_client_* function
 * except im_client_destroy() and the blocking *_wait/run_until helpers.
 * Data handed to callbacks is borrowed until the callback returns.
 *
 * Thread-safety: one thread at a time per client (the loop's thread).
 */
#ifndef IM_CLIENT_H
#define IM_CLIENT_H

#include "im.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ev_loop;

typedef struct im_client im_client;

/**
 * The default ping interval (opts.ping_ms), in ms. A server that sends
 * nothing for 3 intervals is dropped (IM_EUNAVAIL "server silent") and
 * the client reconnects: a hung server (a stopped process, whose kernel
 * still acks TCP, so no socket option notices) is left within 15 s.
 * The price is one small Ping and Pong per connection every 5 s, about
 * 200,000 of each per second for 1M idle connections. Clients on a
 * battery or a metered link should raise it (30000: left within 90 s);
 * see docs/client-state-machine.md, section 6.
 */
#define IM_CLIENT_PING_MS 5000
/** Largest message body the server accepts. */
#define IM_CLIENT_BODY_MAX 4096
/** Largest group name. */
#define IM_CLIENT_NAME_MAX 64
/** CreateGroups waiting for their answer (each kept across reconnects and
 *  sent again with its key until answered); one more is IM_EFULL. */
#define IM_CLIENT_CREATES_MAX 16
/** Largest login token. */
#define IM_CLIENT_TOKEN_MAX 256
/** Bytes of a body kept as a conversation preview. */
#define IM_CLIENT_PREVIEW_MAX 64
/** Most server addresses a client knows (opts.servers). */
#define IM_CLIENT_SERVERS_MAX 16
/** Longest "host:port" address (opts.servers, Redirect). */
#define IM_CLIENT_ADDR_MAX 263

/** Connection state, reported through on_state. */
typedef enum im_client_state {
	IM_CLIENT_DISCONNECTED = 0, /**< no connection (waiting to retry) */
	IM_CLIENT_CONNECTING = 1,   /**< TCP connect or login in progress */
	IM_CLIENT_CONNECTED = 2,    /**< logged in or resumed; sends flow */
	IM_CLIENT_STOPPED = 3,      /**< gave up (bad token) or closed */
} im_client_state;

/** A group message as delivered (live, replayed, or synced history). */
typedef struct im_client_msg {
	im_gid group;
	im_seq seq;
	im_seq prev_seq;
	uint64_t ordinal;
	im_uid sender;
	uint64_t time_ms;
	uint64_t dedup_id;
	im_seq reply_to;
	uint32_t type;
	uint32_t body_len;
	const void *body;
	/** true for messages of an explicit im_client_sync() (history):
	 *  they are neither deduplicated nor acked. */
	bool history;
	/** the current user sent it (from any of their devices) */
	bool own;
} im_client_msg;

/** What a user-queue event says (values of the wire's EventType). */
typedef enum im_client_event_type {
	IM_CLIENT_EV_JOINED = 1,        /**< added to group by actor */
	IM_CLIENT_EV_LEFT = 2,          /**< removed from group by actor */
	IM_CLIENT_EV_GROUP_CREATED = 3, /**< a group was created with us */
	IM_CLIENT_EV_READ = 4,          /**< read up to read_seq on a device */
} im_client_event_type;

typedef struct im_client_event {
	im_seq seq;    /**< the user queue's seq */
	uint32_t type; /**< im_client_event_type */
	im_gid group;
	im_uid actor;
	im_seq read_seq;
	uint64_t read_ordinal;
	uint64_t time_ms;
	const char *name; /**< group name, "" if none */
} im_client_event;

/** One conversation as the client knows it. */
typedef struct im_client_conv {
	im_gid group;
	im_seq last_seq; /**< last seq known (delivered or listed) */
	uint64_t last_ordinal;
	/** The user's read pointer. It may be past last_seq: a read on
	 *  another device can come before the pushes it read; unread is 0
	 *  until they arrive. */
	im_seq read_seq;
	uint64_t read_ordinal;
	uint64_t unread; /**< last_ordinal - read_ordinal, never below 0 */
	im_uid last_sender;
	uint64_t last_time_ms;
	uint32_t flags;
	char name[IM_CLIENT_NAME_MAX + 1];
	uint32_t preview_len;
	uint8_t preview[IM_CLIENT_PREVIEW_MAX];
} im_client_conv;

/**
 * An error. err is an im_err (IM_EPERM for auth and membership, IM_ETOOBIG,
 * IM_EPROTO for a peer that breaks the protocol, IM_EUNAVAIL when the
 * connection was lost, ...); server_code is the wire's Code when the
 * server sent an Error (0 otherwise).
 */
typedef struct im_client_error {
	int err;
	uint32_t server_code;
	uint64_t req_id;   /**< the request it answers, 0 if none */
	im_gid group;      /**< for send failures */
	uint64_t dedup_id; /**< for send failures */
	const char *text;  /**< never NULL */
} im_client_error;

/** Kind of a request reply, see on_reply. */
typedef enum im_client_reply_kind {
	IM_CLIENT_REPLY_DONE = 0,    /**< Error{OK}: add/remove/mark read */
	IM_CLIENT_REPLY_CREATED = 1, /**< GroupCreated: group */
	IM_CLIENT_REPLY_MEMBERS = 2, /**< Members: group, users, more */
	IM_CLIENT_REPLY_SYNCED = 3,  /**< a history sync finished */
	IM_CLIENT_REPLY_PONG = 4,    /**< Pong: server_time_ms */
	IM_CLIENT_REPLY_ERROR = 5,   /**< failed: err, server_code, text */
} im_client_reply_kind;

typedef struct im_client_reply {
	im_client_reply_kind kind;
	uint64_t req_id;
	int err; /**< IM_OK unless kind is ERROR */
	uint32_t server_code;
	const char *text; /**< never NULL */
	im_gid group;
	const im_uid *users; /**< MEMBERS */
	size_t nusers;
	bool more; /**< MEMBERS: ask again after the last user */
	uint64_t server_time_ms;
	uint64_t dedup_id; /**< CREATED, or ERROR of a create: its key */
	bool dup; /**< CREATED: a retry; group is its first try's group */
} im_client_reply;

/** Callbacks; any may be NULL. payload is opts.payload. */
typedef struct im_client_callbacks {
	/** After Login: the user and the full conversation list, in the
	 *  order of im_client_convs(). */
	void (*on_login)(im_client *cl, im_uid user,
	                 const im_client_conv *convs, size_t n, void *payload);
	/** A message, in order per group, each (group, seq) once (unless
	 *  msg->history). */
	void (*on_deliver)(im_client *cl, const im_client_msg *msg,
	                   void *payload);
	/** A send was committed by the server (dup: it was a retry). */
	void (*on_ack)(im_client *cl, im_gid group, uint64_t dedup_id,
	               im_seq seq, bool dup, void *payload);
	/** A user-queue event, in order, each once. */
	void (*on_event)(im_client *cl, const im_client_event *ev,
	                 void *payload);
	/** Connection trouble, failed sends, server errors. */
	void (*on_error)(im_client *cl, const im_client_error *err,
	                 void *payload);
	/** State changes. */
	void (*on_state)(im_client *cl, im_client_state state, void *payload);
	/** Reply to a request made with im_client_create_group() & co. */
	void (*on_reply)(im_client *cl, const im_client_reply *reply,
	                 void *payload);
} im_client_callbacks;

/*
 * Version 2 appended `servers`, `nservers` and `max_rounds`; a caller
 * compiled against version 1 passes version 1 and gets the version 1
 * behaviour (the one host/port, retried forever). Version 3 appended
 * `send_timeout_ms`; versions 1 and 2 get no answer deadline (0).
 * Version 4 appended the `tls*` fields; earlier versions get plain TCP.
 */
#define IM_CLIENT_OPTS_VERSION 4
typedef struct im_client_opts {
	uint32_t version;
	const char *host; /**< server address (copied); unused when
	                       servers is set */
	uint16_t port;
	const char *token;         /**< login token (copied), see imd token */
	const char *device;        /**< free text for the server's logs */
	uint32_t max_outbox;       /**< unacked sends kept; more is IM_EFULL */
	uint32_t max_convs;        /**< conversations tracked */
	uint32_t max_pending;      /**< requests in flight */
	uint32_t frame_max;        /**< largest incoming frame payload,
	                                <= 65536 (IM_FRAME_MAX) */
	uint32_t backoff_min_ms;   /**< first reconnect delay */
	uint32_t backoff_max_ms;   /**< reconnect delay cap */
	uint32_t ping_ms;          /**< ping interval (IM_CLIENT_PING_MS);
	                                a server silent for 3 intervals is
	                                dropped. 0 = off */
	uint32_t login_timeout_ms; /**< connect + login must finish within */
	uint64_t seed;             /**< PRNG seed: dedup ids and jitter */
	bool reconnect;            /**< reconnect automatically */
	im_client_callbacks cb;
	void *payload;
	im_allocator alloc;
	/* Fields above are valid for version 1 */
	/**
	 * Version 2. Server addresses, "host:port" or "[v6addr]:port", at
	 * most IM_CLIENT_SERVERS_MAX (copied; NULL with nservers 0 = the one
	 * host/port above). The client starts with servers[0]; a connect that
	 * fails, a login that fails with anything but a bad token, and a lost
	 * connection all move on to the next address (round robin) after the
	 * usual backoff (skipping entries equal to the address that just
	 * failed). The backoff grows per full round over the list, not per
	 * address, so a dead address costs one short delay. A Redirect goes
	 * to the address it names (any address, not only the listed ones);
	 * when that target refuses or is lost, the client goes on with the
	 * listed address after the one it was on, skipping the target.
	 */
	const char *const *servers;
	uint32_t nservers;
	/**
	 * Version 2. Give up (state STOPPED, on_error IM_EUNAVAIL) after this
	 * many full rounds over the addresses without a login; 0 = retry
	 * forever (the version 1 behaviour). A Redirect hop counts as a try.
	 */
	uint32_t max_rounds;
	/**
	 * Version 3. Answer deadline of sends and requests on a connected
	 * client, in ms; 0 = none (the version 1 and 2 behaviour: a send
	 * whose answer the server side lost waits until the connection
	 * drops). A send not acked (nor refused) within it is sent again on
	 * the same connection with the SAME dedup id, and again every
	 * send_timeout_ms after that, for as long as it is in the outbox and
	 * the client is connected: the server stores it once and answers a
	 * retry of a committed send with its first seq and dup = true, so
	 * on_ack runs once per send (with dup set when the ack that came
	 * first was a retry's). It is never failed by the client: the outbox
	 * is bounded (IM_EFULL) and a dead server is found by the pings. A
	 * gap repair (a read) not answered is asked again. The caller's
	 * requests are not repeated (a CreateGroup has no dedup id): they
	 * are answered on_reply ERROR with err IM_EUNAVAIL, "request timed
	 * out" (outcome unknown). One timer serves them all.
	 */
	uint32_t send_timeout_ms;
	/* Fields above are valid for version 3 */
	/**
	 * Version 4. Speak TLS (1.2 or 1.3) to every server address, a
	 * Redirect's too, and check its certificate: it must chain to a
	 * trusted CA, be valid now, and carry the server name. A failed
	 * handshake or check is a lost connection: on_error with err
	 * IM_EPROTO and a text saying why, e.g. "tls: certificate verify
	 * failed: Hostname mismatch" or "...: certificate has expired"
	 * (then the usual retry and backoff). The handshake counts against
	 * login_timeout_ms. There is no way to turn the check off.
	 */
	bool tls;
	/** PEM file of the CAs to trust (copied); NULL = the system's
	 *  store (OpenSSL's default paths). */
	const char *tls_ca_file;
	/** The name the server's certificate must carry (copied), a DNS
	 *  name or an IP address; NULL = the host of the address being
	 *  connected to. Also sent as SNI when it is a DNS name. */
	const char *tls_server_name;
	/** A client certificate (PEM chain) and its PEM key, for servers
	 *  that ask for one (copied); NULL = none. Both or neither. */
	const char *tls_cert_file;
	const char *tls_key_file;
} im_client_opts;

#define IM_CLIENT_OPTS_INIT                                                    \
	{                                                                      \
		IM_CLIENT_OPTS_VERSION, "127.0.0.1", 7600, NULL, "libim", 256, \
		        4096, 256, 65536, 200, 30000, IM_CLIENT_PING_MS,       \
		        10000, 0, true,                                        \
		        {0, 0, 0, 0, 0, 0, 0}, NULL, {0, 0}, NULL, 0, 0, 5000, \
		        false, NULL, NULL, NULL, NULL                          \
	}

/**
 * Create a client. Nothing happens on the network until
 * im_client_connect() (or a blocking helper).
 * @retval IM_OK, IM_EINVAL (no host/port/token, token too long, zero
 *         bounds, frame_max out of range, backoff min > max, version 0 or
 *         newer than IM_CLIENT_OPTS_VERSION; version 2: nservers over
 *         IM_CLIENT_SERVERS_MAX, servers NULL with nservers > 0, an
 *         address that is not "host:port" with a port in 1..65535 or is
 *         longer than IM_CLIENT_ADDR_MAX; version 4 with tls: a CA
 *         file, client certificate or key that does not load, a
 *         certificate without its key or a key that does not match it),
 *         IM_ENOMEM
 */
IM_API int im_client_create(im_client **out, const im_client_opts *opts);

/** Close the connection and free everything; NULL is a no-op. Must not be
 *  called from a callback. A private loop is destroyed too. */
IM_API void im_client_destroy(im_client *cl);

/**
 * Use the caller's libev loop. Only before im_client_connect(); without
 * it the client makes a private loop on first use.
 * @retval IM_OK, IM_EINVAL (NULL, or already connected)
 */
IM_API int im_client_attach(im_client *cl, struct ev_loop *loop);

/** The loop in use (attached or private), NULL before first use. */
IM_API struct ev_loop *im_client_loop(const im_client *cl);

/**
 * Start connecting (asynchronously), at the address of the last
 * connection (servers[0] at first). Reconnects follow automatically when
 * opts.reconnect is set.
 * @retval IM_OK, IM_ENOMEM (no private loop)
 */
IM_API int im_client_connect(im_client *cl);

/** Close the connection and stop reconnecting (state STOPPED). The
 *  outbox is kept; im_client_connect() starts again. */
IM_API void im_client_close(im_client *cl);

/** Current state. */
IM_API im_client_state im_client_get_state(const im_client *cl);

/**
 * The address ("host:port") of the current connection, or of the last
 * one tried or about to be tried while disconnected: a listed address or
 * a Redirect's target. Never NULL; valid until the next call into the
 * client or loop iteration.
 */
IM_API const char *im_client_server(const im_client *cl);

/** The logged-in user, 0 before the first login. */
IM_API im_uid im_client_user(const im_client *cl);

/**
 * Queue a message for group. Sent when connected; retried after
 * reconnects, ERR_UNAVAILABLE and opts.send_timeout_ms without an answer,
 * with the same dedup id, until the server acks it (on_ack, once) or
 * rejects it (on_error with the group and dedup id).
 * @param dedup_out may be NULL; the dedup id chosen
 * @retval IM_OK, IM_EINVAL (group 0, body NULL with len > 0),
 *         IM_ETOOBIG (len > IM_CLIENT_BODY_MAX, the server's limit;
 *         nothing queued), IM_EFULL (outbox full; nothing queued)
 */
IM_API int im_client_send(im_client *cl, im_gid group, const void *body,
                          size_t len, uint64_t *dedup_out);

/** As im_client_send() with a reply-to seq, a type and a caller-chosen
 *  dedup id (0 = pick one). */
IM_API int im_client_send_ex(im_client *cl, im_gid group, const void *body,
                             size_t len, im_seq reply_to, uint32_t type,
                             uint64_t dedup_id, uint64_t *dedup_out);

/** Sends queued and not acked yet. */
IM_API size_t im_client_outbox_count(const im_client *cl);

/**
 * Requests. Each needs a connection (IM_EAGAIN otherwise), returns its
 * req_id through req_out (may be NULL) and is answered through on_reply.
 * A request lost with its connection, or not answered within
 * opts.send_timeout_ms, is answered with kind ERROR and err IM_EUNAVAIL
 * (not repeated: its outcome is unknown) -- except a create group:
 *
 * im_client_create_group() gives the create a dedup id (its key) and keeps
 * it, like a send in the outbox, until the server answers: lost with its
 * connection it goes again on the next one, unanswered within
 * send_timeout_ms or refused ERR_UNAVAILABLE it goes again, always with the
 * same key, so the server makes one group and answers a retry with it
 * (reply.dup). It is answered exactly once, CREATED or ERROR (refused for
 * good: bad request, store full).
 * @retval IM_OK, IM_EINVAL, IM_EAGAIN (not connected),
 *         IM_EFULL (too many requests in flight; for a create:
 *         IM_CLIENT_CREATES_MAX creates wait for their answer)
 */
IM_API int im_client_create_group(im_client *cl, const char *name,
                                  const im_uid *members, size_t n,
                                  uint64_t *req_out);
IM_API int im_client_add_member(im_client *cl, im_gid group, im_uid user,
                                uint64_t *req_out);
IM_API int im_client_remove_member(im_client *cl, im_gid group, im_uid user,
                                   uint64_t *req_out);
IM_API int im_client_list_members(im_client *cl, im_gid group,
                                  im_uid after_user, uint64_t *req_out);
/** Mark read up to seq (0 = the last seq known). */
IM_API int im_client_mark_read(im_client *cl, im_gid group, im_seq seq,
                               uint64_t *req_out);
/**
 * Fetch history after < seq <= until (until 0 = up to the last seq seen)
 * page by page; the messages come to on_deliver with msg->history set,
 * then on_reply with kind SYNCED. At most max_msgs messages (0 = no limit).
 * When there is nothing to fetch, on_reply runs before this returns.
 */
IM_API int im_client_sync(im_client *cl, im_gid group, im_seq after,
                          im_seq until, uint32_t max_msgs, uint64_t *req_out);
IM_API int im_client_ping(im_client *cl, uint64_t *req_out);

/**
 * Copy up to max conversations into out, in the list's order: pinned
 * (flags & 0x2, IM_CONV_PINNED of im/store.h) first, then by last activity
 * (last_time_ms), newest first, ties by group id, lower first: the order
 * im_convlist_list gives the server's list. Groups the user left are not
 * listed.
 * *n_out is the number copied. Sorts the whole list each call:
 * O(n log n) for n conversations tracked; never allocates.
 */
IM_API void im_client_convs(const im_client *cl, im_client_conv *out,
                            size_t max, size_t *n_out);

/** @retval IM_OK, IM_ENOTFOUND */
IM_API int im_client_conv_lookup(const im_client *cl, im_gid group,
                                 im_client_conv *out);

/** Last seq seen of a group (0 = the user queue), 0 if unknown. */
IM_API im_seq im_client_cursor(const im_client *cl, im_gid group);

/* ---- blocking helpers (not from callbacks) ---- */

/** Predicate for im_client_run_until(). */
typedef bool (*im_client_pred)(im_client *cl, void *arg);

/**
 * Run the loop until pred(cl, arg) is true (checked after every loop
 * iteration; pred NULL = just run for timeout_ms).
 * @retval IM_OK (pred true), IM_EAGAIN (timeout), IM_ENOMEM
 */
IM_API int im_client_run_until(im_client *cl, uint32_t timeout_ms,
                               im_client_pred pred, void *arg);

/**
 * Connect if needed and wait until connected.
 * @retval IM_OK, IM_EAGAIN (timeout), IM_EPERM (token rejected),
 *         IM_EUNAVAIL (gave up: opts.max_rounds tries failed)
 */
IM_API int im_client_connect_wait(im_client *cl, uint32_t timeout_ms);

/**
 * Send and wait for the ack.
 * @retval IM_OK (*seq_out set, may be NULL), IM_EAGAIN (timeout; the send
 *         stays queued), IM_EPERM (not a member, or the token was
 *         refused), IM_EINVAL, IM_ETOOBIG (body over IM_CLIENT_BODY_MAX),
 *         IM_EFULL, other errors the server sent
 */
IM_API int im_client_send_wait(im_client *cl, im_gid group, const void *body,
                               size_t len, uint32_t timeout_ms,
                               im_seq *seq_out);

/** Run until the request is answered; *reply_err_out (may be NULL) gets
 *  the reply's err. @retval IM_OK, IM_EAGAIN (timeout), IM_EPERM (the
 *  token was refused) */
IM_API int im_client_wait_reply(im_client *cl, uint64_t req_id,
                                uint32_t timeout_ms, int *reply_err_out);

/** im_client_sync() then im_client_wait_reply(). @retval IM_OK, the
 *  reply's error, IM_EAGAIN (timeout) */
IM_API int im_client_sync_wait(im_client *cl, im_gid group, im_seq after,
                               im_seq until, uint32_t max_msgs,
                               uint32_t timeout_ms);

/** Pure: the reconnect delay for attempt (0-based) with jitter drawn from
 *  rnd: uniform in [d/2, d] where d = min(max, min << attempt). */
IM_API uint32_t im_client_backoff_ms(uint32_t min_ms, uint32_t max_ms,
                                     uint32_t attempt, uint64_t rnd);

#ifdef __cplusplus
}
#endif

#endif
