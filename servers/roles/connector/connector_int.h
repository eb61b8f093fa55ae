/*
 * Connector internals, shared by the files of servers/roles/connector/ and
 * by nothing else (imd and imnode see only ../connector.h).
 *
 * The files, one job each:
 *   connector.c     create, destroy, the end-of-turn flush, stats
 *   conn.c          connections and framing: accept, read, frame parse,
 *                   write buffers, back-pressure, login/idle timeouts
 *   transport_*.c   the bytes on the socket: plain TCP or TLS
 *                   (transport.h, the seam conn.c reads and writes by)
 *   session.c       users and sessions: push queues, retransmit, grace
 *   slots.c         cluster handover: redirect, shed, drop a slot
 *   read_handle.c   one decoded client frame to its handler
 *   handle_*.c      the client requests, one file per family
 *   deliver.c       fan-outs of committed messages to the sessions
 *   uevents.c       the user-event pipeline (user queues)
 *   convpage.c      conversation pages at login, group-name cache
 *   memory.c        the heap by part (connector_get_mem)
 *
 * Lifetimes: connections are freed at the end of the loop turn they closed
 * in (the dead list), so a pointer taken in this turn stays valid; users
 * without sessions are freed by the same sweep (connector_flush).
 *
 * Cross-file names are conn__verb; statics carry no prefix.
 */
#ifndef IM_ROLE_CONNECTOR_INT_H
#define IM_ROLE_CONNECTOR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pb.h>

#include "connector.h"
#include "im.pb.h"
#include "im/convlist.h"
#include "im/frame.h"
#include "im/idseg.h"
#include "im/pushq.h"
#include "im/token.h"
#include "transport.h"

#define SESSION_ID_LEN 16
/* A push queue emptied by an ack gives back arrays larger than this: a
 * burst grew them, the steady state (a few deliveries in flight) fits
 * in it, so a queue that drains every round trip never reallocates. */
#define PUSHQ_KEEP_BYTES 4096
#define UQ_BODY_CAP 256
/* Largest push frame: a Deliver with a full body. */
#define PUSH_MAX (IM_FRAME_HEADER + im_Deliver_size + 16)

/* Group names for conversation lists: direct-mapped, bounded, filled by
 * lookups and by GroupCreated events. Names never change after creation,
 * so an entry is never stale; a collision only costs a store read. */
#define NAME_CACHE 65536

/*
 * The user-event pipeline works on at most this many events at a time,
 * with scratch buffers allocated once at create (struct uev_scratch,
 * about 650 KiB). A larger call (a Chatter's batch of GroupCreated events
 * in imd reaches up to 128 x 65) is taken in chunks of this size, each
 * its own user-queue transaction. Equal to IM_STORE_SEG_MANY_MAX, so the
 * first segments of a chunk's users are taken in one store call.
 */
#define UEV_BATCH_MAX 1024

/* im.EventType, named once in im.proto. */
enum {
	UEV_JOINED = im_EventType_EV_JOINED,
	UEV_LEFT = im_EventType_EV_LEFT,
	UEV_GROUP_CREATED = im_EventType_EV_GROUP_CREATED,
	UEV_READ = im_EventType_EV_READ
};

struct name_slot {
	im_gid gid; /* 0 = empty */
	uint8_t len;
	char name[IM_GROUP_NAME_MAX];
};

struct user;
struct conn;

struct session {
	struct session *next; /* in the user's list */
	struct user *user;
	struct conn *conn; /* NULL while in grace */
	connector *cn;
	uint8_t id[SESSION_ID_LEN];
	im_pushq q;
	ev_timer rto_w;
	ev_timer grace_w;
	bool backlog; /* pushes wait in q for the buffer to drain */
};

struct user {
	struct user *next;    /* hash chain */
	struct user *gc_next; /* sweep list */
	bool in_gc;
	im_uid uid;
	im_convlist *convs; /* loaded while the user is online */
	struct session *sessions;
	uint32_t nsessions;
	im_idseg uq;
	bool uq_ready; /* a segment was taken since we own it */
	bool uq_last_known;
	bool uq_taking; /* in this batch's seg_take_many already */
	im_seq uq_last;
};

struct conn {
	ev_io rio;
	ev_io wio;
	ev_timer timer; /* login, idle, linger */
	connector *cn;
	int fd;
	const struct conn_transport *tr;
	void *tr_state;         /* the transport's (TLS: its SSL) */
	bool read_wants_write;  /* a read waits for writability */
	bool write_wants_read;  /* a write waits for a read */
	uint32_t index;
	uint64_t tag;
	uint8_t *rbuf; /* an incomplete frame, or NULL */
	size_t rlen;
	uint8_t *wbuf;
	size_t wlen;
	size_t woff;
	size_t wcap;
	struct session *sess;
	im_uid uid; /* 0 before login */
	ev_tstamp accepted; /* the login deadline counts from here */
	ev_tstamp last_rx;
	ev_tstamp frame_t0; /* the first bytes of the frame in rbuf came */
	uint32_t inflight;  /* requests at the Chatters, not answered yet */
	bool rclosed;       /* the peer shut down its write side (EOF) */
	bool closed;
	bool closing; /* close once the write buffer is out */
	bool dirty;
	struct conn *dirty_next;
	struct conn *dead_next;
	char peer[64];
};

/*
 * Scratch of one pass of the user-event pipeline, cap entries each
 * (bodies: cap * UQ_BODY_CAP bytes). The Connector's own is allocated at
 * create; only a router that calls straight back into the pipeline while
 * it runs gets a temporary one (uevents.c).
 */
struct uev_scratch {
	size_t cap;
	im_uq_item *items;
	im_fence *fences;
	size_t nfences;
	struct user **users;  /* of items[i] */
	size_t *evidx;        /* the event of items[i] */
	uint8_t *bodies;      /* items[i].body */
	role_uevent *bounce;  /* events for users not owned here */
	role_uevent *retry;   /* a fenced-out chunk, once more */
	im_seg_key *keys;     /* first segments taken in one call */
	struct user **takers; /* of keys[i] */
	im_seg *segs;
};

struct connector {
	struct ev_loop *loop;
	im_store *st;
	im_shard_map *map;
	const char *node;
	uint32_t index;
	role_router *router;
	/* Cluster: the client address of another owner, for Redirect. */
	const char *(*redirect)(void *payload, const char *owner);
	void *redirect_payload;
	im_token_verifier *tokens; /* keyed with the secret at create */
	connector_opts o;

	int lfd;
	ev_io accept_w;
	const struct conn_transport *tr; /* of new connections */
	struct conn_tls *tls;            /* NULL: plain TCP */
	ev_prepare flush_w;

	struct conn **conns;
	uint32_t *free_idx;
	uint32_t nfree;
	uint32_t nconns;
	uint64_t tag_gen;
	struct conn *dirty;
	struct conn *dead;

	struct user **ub;
	uint32_t nub;
	uint32_t nusers;
	struct user *gc;
	uint32_t nsessions;

	uint8_t *rbuf; /* shared read buffer */
	size_t rcap;
	uint8_t *obuf; /* encode scratch: one frame */
	uint8_t *fbuf; /* encoded Delivers of one fan-out */
	size_t fcap;
	size_t *foffs; /* their offsets in fbuf; kept between fan-outs */
	size_t foffs_cap;
	im_Envelope *env;
	im_SyncPage *page;
	im_Members *members;
	im_Deliver *dl;
	im_conv_entry *entries;
	struct name_slot *names; /* group name cache, NAME_CACHE entries */
	struct uev_scratch uev;  /* UEV_BATCH_MAX entries */
	bool uev_busy;           /* the pipeline is using uev */

	connector_stats stats;
};

/* conn.c: connections and framing */

/* Encode one Envelope holding msg at oneof tag into cn->obuf as a frame;
 * returns the frame length or 0. */
size_t conn__encode_frame(connector *cn, uint64_t req_id, uint32_t tag,
                          const pb_msgdesc_t *fields, const void *msg);
/* Queue bytes for the client. A reader that lets its buffer grow past the
 * bound is dropped (its session survives in grace). */
void conn__write(struct conn *c, const void *data, size_t len);
/* Room for a push of len bytes in the write buffer (half of the bound). */
bool conn__push_room(const struct conn *c, size_t len);
void conn__send(struct conn *c, uint64_t req_id, uint32_t tag,
                const pb_msgdesc_t *fields, const void *msg);
void conn__error(struct conn *c, uint64_t req_id, int code, const char *text,
                 im_gid group, uint64_t dedup_id);
/* Send a final Error and close once it is written. */
void conn__fail(struct conn *c, uint64_t req_id, int code, const char *text);
/* Send Redirect{address} and close once it is written. */
void conn__redirect(struct conn *c, uint64_t req_id, const char *address);
void conn__close(struct conn *c, const char *why);
void conn__flush_one(struct conn *c);
/* A request of c routed to the Chatters (conn__submit) was answered:
 * a half-closed c closes once the last answer is written. */
void conn__answered(struct conn *c);
/* The open connection of a route's tag, or NULL. */
struct conn *conn__by_tag(connector *cn, uint64_t tag);

/* session.c: users and sessions */

struct user *conn__user_find(connector *cn, im_uid uid);
/* Find or create (a new user is swept at the end of the turn unless it
 * gets a session). NULL: out of memory. */
struct user *conn__user_get(connector *cn, im_uid uid);
void conn__user_free(connector *cn, struct user *u);
/* Load what an online user needs: conversation list, end of its queue. */
int conn__user_online(connector *cn, struct user *u);
/* Destroy every session of u (no grace). */
void conn__user_drop_sessions(struct user *u);
void conn__session_destroy(struct session *s);
/* The connection went away: keep the queue for a resume. */
void conn__session_detach(struct session *s);
/* A new session of u for c's login, making room for it (the oldest one
 * in grace goes); NULL: c was failed with ERR_FULL. */
struct session *conn__session_open(struct conn *c, struct user *u,
                                   uint64_t req_id);
/* Push a frame to every session of u (a full queue drops its session). */
void conn__user_push(struct user *u, im_gid conv, im_seq seq, const void *frame,
                     uint32_t len, uint64_t now);
/* c logged in as s's user: bind them, switch to the idle timeout. */
void conn__session_attach(struct conn *c, struct session *s);
void conn__session_pump(struct session *s);
/* Queue a frame (written now if attached); false: s was destroyed. */
bool conn__session_push(struct session *s, im_gid conv, im_seq seq,
                        const void *frame, uint32_t len, uint64_t now);

/* slots.c: who owns a user */

/* The client address of the Connector `owner` when known, else NULL. */
const char *conn__owner_address(connector *cn, const char *owner);

/* read_handle.c and handle_*.c: client requests */

void conn__handle_frame(struct conn *c, const uint8_t *payload, uint32_t len);
void conn__handle_login(struct conn *c, uint64_t req_id, const im_Login *lg);
/* The token and the user's online state; on failure c is failed and NULL
 * returned. */
struct user *conn__login_user(struct conn *c, uint64_t req_id,
                              const char *token);
void conn__handle_resume(struct conn *c, uint64_t req_id, const im_Resume *rs);
void conn__handle_send(struct conn *c, uint64_t req_id, const im_Send *sd);
/* Route op (its route and user filled in here) to the Chatters. */
void conn__submit(struct conn *c, role_op *op, uint64_t req_id);
void conn__handle_create_group(struct conn *c, uint64_t req_id,
                               const im_CreateGroup *cg);
void conn__handle_member_op(struct conn *c, uint64_t req_id, role_op_kind kind,
                            im_gid g, im_uid target);
void conn__handle_list_members(struct conn *c, uint64_t req_id,
                               const im_ListMembers *lm);
/* Is g in the conversation list of c's user? */
bool conn__is_member(struct conn *c, im_gid g);
void conn__handle_sync(struct conn *c, uint64_t req_id, const im_Sync *sy);
void conn__handle_mark_read(struct conn *c, uint64_t req_id,
                            const im_MarkRead *mr);

/* deliver.c */

void conn__fill_deliver(im_Deliver *d, const im_msg *m);

/* uevents.c: the user-event pipeline */

int conn__uev_scratch_init(struct uev_scratch *sc, size_t cap);
void conn__uev_scratch_finish(struct uev_scratch *sc);
/* A user queue item as a UserEvent frame in cn->obuf; 0 if undecodable. */
size_t conn__uevent_frame(connector *cn, const im_uq_item *item,
                          im_seq prev_seq);
/* An event this Connector raised for ev->user: appended and pushed here
 * when the map gives the user to this node, else sent to the router. */
void conn__uevent_raise(connector *cn, const role_uevent *ev);

/* convpage.c */

void conn__name_put(connector *cn, im_gid gid, const char *name);
void conn__send_conv_pages(struct conn *c, struct user *u, uint64_t req_id);

#endif
