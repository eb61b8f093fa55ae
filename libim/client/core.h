/*
 * The client core: the whole client protocol as a state machine with no
 * sockets, no libev and no clock. The driver (client.c) owns the socket
 * and the loop; it hands the core events (connection up, bytes read,
 * bytes written, connection lost, timers due) with the time `now_ms`, and
 * the core answers with actions through im__cc_io (open or close the
 * connection, want to write, timers changed), bytes in its output buffer
 * and the application's callbacks. Everything the client decides
 * (cursors, gap repair, outbox retries with the same dedup id, resume,
 * addresses, backoff, deadlines) lives behind this header, so it is
 * tested without a server and its rules, written down in
 * docs/client-state-machine.md, can be followed by other ports.
 *
 * The client's truth per conversation is its cursor: the last seq it has
 * handed to on_deliver, with every earlier one of the chain handed too.
 * Everything else follows from it: duplicates are seq <= cursor, a gap is
 * prev_seq != cursor, a resume carries the cursors, acks are cumulative
 * up to the cursor.
 */
#ifndef IM_CLIENT_CORE_H
#define IM_CLIENT_CORE_H

#include "im/client.h"
#include "im/convlist.h"

#include "im.pb.h"
#include "im_code.h" /* the wire codes and the im_err each means */

/* Largest frame the client ever writes: a Send with a full body. */
#define IM__CC_WBUF_CAP (64u * 1024u)
/* Wire cap of cursors per Resume (im.options); the rest is synced. */
#define IM__CC_RESUME_CURSORS_MAX 128
#define IM__CC_SYNC_PAGE_LIMIT 12
/* A timer that is not armed. */
#define IM__CC_NEVER UINT64_MAX

/* The core's timers; the driver needs one real timer for all of them. */
enum im__cc_timer {
	IM__CC_T_RETRY,  /* reconnect backoff */
	IM__CC_T_LOGIN,  /* connect + login deadline */
	IM__CC_T_PING,   /* ping interval, silence check */
	IM__CC_T_RESEND, /* sends and creates refused with ERR_UNAVAILABLE */
	/* One deadline for every send and request in flight: due no later
	 * than the oldest one's (send_timeout after it went out). */
	IM__CC_T_ANSWER,
	IM__CC_T_N,
};

/* What the core asks of its driver. */
typedef struct im__cc_io {
	/* Start connecting to host:port. IM_OK: under way, the driver later
	 * calls im__cc_connected() or im__cc_lost(). Else an error with a
	 * text for on_error (the core schedules the retry). */
	int (*open)(void *ud, const char *host, const char *port, char *text,
	            size_t len);
	/* Close the connection now; no event comes back for it. */
	void (*close)(void *ud);
	/* Output is waiting in im__cc_output() (on) or all is written. */
	void (*want_write)(void *ud, bool on);
	/* A timer changed: the next due time is im__cc_next_due(). */
	void (*timers)(void *ud);
} im__cc_io;

enum im__cc_pkind {
	P_FREE = 0,
	P_LOGIN,
	P_RESUME,
	P_REPAIR, /* gap repair: applies through the cursor */
	P_HIST,   /* history for the caller: history = true */
	P_DONE, /* add, remove: Error{OK} */
	P_READ, /* mark read: Error{OK} */
	P_MEMBERS,
	P_PING,
};

struct im__cc_pending {
	enum im__cc_pkind kind;
	uint64_t req_id;   /* on the wire (changes per sync page) */
	uint64_t user_req; /* what the caller got */
	im_gid group;
	im_seq until;
	uint32_t left; /* P_HIST: messages still wanted, 0 = no limit */
	bool limited;
	uint64_t sent_at; /* now_ms when its request went out */
};

/*
 * The client's own state of one conversation: how far the chain was
 * handed over and acked, and the repairs. What the list shows (last
 * message, read pointer, unread, preview, flags, order) is cc->list's,
 * an im_convlist as the Connector keeps; this side table and the list
 * hold the same groups. The name is the client's alone.
 */
struct im__cc_conv {
	im_gid group; /* 0: a free slot */
	im_seq cursor;
	im_seq acked;
	bool known; /* cursor is meaningful (else: take the first seen) */
	bool member;
	bool syncing;     /* a repair is in flight: drop live pushes */
	bool want_repair; /* a repair waits: for the login, or a slot */
	im_seq gap_seq;   /* the push whose prev_seq showed the gap */
	bool dirty;       /* on the ack list */
	bool in_resume;   /* its cursor went with the last Resume */
	/* The resume's replay was cut at replay_end (ResumeOk.replay_ends):
	 * once the cursor gets there, Sync the rest. */
	bool replay_cut;
	im_seq replay_end;
	/* A read pointer past the list's last message, {0, 0} if none: see
	 * read_settle() in list.c. */
	im_msg_pos read_ahead;
	char name[IM_CLIENT_NAME_MAX + 1];
};

struct im__cc_obox {
	im_gid group;
	uint64_t dedup_id;
	im_seq reply_to;
	uint32_t type;
	uint32_t len;
	uint64_t req_id;  /* 0: not on the current connection yet */
	uint64_t sent_at; /* now_ms when req_id went out */
	uint8_t body[IM_CLIENT_BODY_MAX];
};

/* A CreateGroup until answered (creates.c); user_req 0: a free entry. */
#define IM__CC_CREATE_MEMBERS_MAX 64
struct im__cc_create {
	uint64_t user_req; /* what the caller got */
	uint64_t req_id;   /* this try's; 0: not on this connection yet */
	uint64_t dedup_id; /* the create key, the same on every try */
	uint64_t sent_at;  /* now_ms when req_id went out */
	uint32_t nmembers;
	im_uid members[IM__CC_CREATE_MEMBERS_MAX];
	char name[IM_CLIENT_NAME_MAX + 1];
};

struct im__cc_addr {
	char host[256];
	char port[8];
};

/* What the blocking helpers wait for (set by acks, errors, replies). */
struct im__cc_wait {
	uint64_t dedup, req;
	bool done;
	int err;
	im_seq seq;
};

typedef struct im__cc {
	im_allocator alloc;
	im_client *handle; /* passed to the callbacks */
	const im__cc_io *io;
	void *io_ud;
	im_client_callbacks cb;
	void *payload;
	/* The listed addresses; cur is the one in use (or tried next). */
	struct im__cc_addr srv[IM_CLIENT_SERVERS_MAX];
	uint32_t nsrv, cur;
	struct im__cc_addr redir; /* a Redirect's target */
	bool use_redir;           /* the current try/connection goes to redir */
	bool follow_redir;        /* the next try goes to redir (one hop) */
	bool retry_same;          /* the next try goes to the same address */
	bool gave_up;             /* max_rounds tries without a login */
	uint32_t max_rounds;
	char addr_text[IM_CLIENT_ADDR_MAX + 1];
	char token[IM_CLIENT_TOKEN_MAX + 1];
	char device[65];
	uint32_t frame_max;
	uint32_t backoff_min, backoff_max, ping_ms, login_timeout_ms;
	bool reconnect;
	uint64_t rng;

	/* The time of the event being handled (each entry point sets it):
	 * the core's only clock, like libev's ev_now(). */
	uint64_t now;
	uint64_t due[IM__CC_T_N]; /* IM__CC_NEVER: not armed */
	uint32_t send_timeout_ms; /* 0: no answer deadline */
	uint64_t resends;         /* sends and creates tried again after the
	                             deadline */
	bool link;                /* a connection is open (or connecting) */
	bool connecting;          /* TCP connect in progress */
	uint64_t gen;             /* bumps on every close */
	uint32_t attempt; /* tries since the last login (or connect()) */
	im_client_state state;
	bool auth_failed;
	uint64_t last_rx;

	uint8_t *rbuf;
	size_t rlen;
	uint8_t *wbuf;
	size_t wlen, woff;
	im_Envelope *in, *out;

	im_uid user;
	uint8_t session[16];
	bool have_session;
	im_seq uq_cursor;
	bool uq_known;
	im_seq uq_acked;
	bool uq_dirty;
	bool uq_syncing; /* a user-queue repair is in flight */
	bool uq_behind;  /* login showed events we have not seen */
	bool uq_replay_cut; /* as replay_cut of a conversation */
	bool repairs_waiting; /* want_repair/uq_behind wait for a slot */
	/* Events up to this seq happened while the client was away (the
	 * ResumeOk's uq_last_seq): a group one of them created is synced. */
	im_seq uq_away_until;
	im_seq uq_replay_end;
	uint64_t next_req;

	/* The side table (open addressing, at least twice max_convs slots,
	 * so a probe always ends) and the list; the list bounds both. */
	struct im__cc_conv *convs;
	size_t conv_cap; /* power of two */
	size_t max_convs;
	im_convlist *list;
	im_conv_entry *entries; /* scratch for im_convlist_list */
	im_gid *dirty;
	size_t ndirty;

	struct im__cc_obox *obox;
	uint32_t *oorder; /* slots in send order */
	size_t nobox, max_outbox;
	bool *oused;

	struct im__cc_pending *pend;
	size_t max_pending;

	struct im__cc_create creates[IM_CLIENT_CREATES_MAX];

	im_client_conv *login_convs; /* scratch for on_login */

	struct im__cc_wait wait;
} im__cc;

/* ---- the driver's entry points (core.c) ---- */

/* Check opts (as im_client_create() documents) and allocate through
 * opts->alloc; nothing happens on the network until im__cc_connect().
 * io gets io_ud; handle is what the callbacks get (both may be set in
 * the struct later, before the first event). */
int im__cc_create(im__cc **out, const im_client_opts *opts, const im__cc_io *io,
                  void *io_ud, im_client *handle);
/* Free everything; does not call io (the driver closes its socket). */
void im__cc_destroy(im__cc *cc);
/* im_client_connect(): connect now unless a connection is open. */
void im__cc_connect(im__cc *cc, uint64_t now_ms);
/* im_client_close(): drop the connection, stop retrying (STOPPED). */
void im__cc_close(im__cc *cc);
/* The TCP connection the core asked for is up: log in or resume. */
void im__cc_connected(im__cc *cc, uint64_t now_ms);
/* The connection failed or broke (read/write/connect error). */
void im__cc_lost(im__cc *cc, uint64_t now_ms, int err, const char *text);
/* Where the driver reads to: *cap_out bytes free at the returned spot. */
uint8_t *im__cc_rspace(im__cc *cc, size_t *cap_out);
/* n bytes were read into im__cc_rspace(): decode and handle them. */
void im__cc_received(im__cc *cc, uint64_t now_ms, size_t n);
/* Bytes waiting to be written: *len_out at the returned spot. */
const uint8_t *im__cc_output(const im__cc *cc, size_t *len_out);
/* n bytes of im__cc_output() were written. */
void im__cc_wrote(im__cc *cc, uint64_t now_ms, size_t n);
/* Run every timer due at now_ms. */
void im__cc_tick(im__cc *cc, uint64_t now_ms);
/* The earliest due time of any timer, IM__CC_NEVER if none. */
uint64_t im__cc_next_due(const im__cc *cc);
/* "host:port" of the current (or next) connection. */
const char *im__cc_server(im__cc *cc);

/* ---- the application's calls (outbox.c, request.c, list.c) ---- */

int im__cc_send(im__cc *cc, uint64_t now_ms, im_gid group, const void *body,
                size_t len, im_seq reply_to, uint32_t type, uint64_t dedup_id,
                uint64_t *dedup_out);
int im__cc_create_group(im__cc *cc, uint64_t now_ms, const char *name,
                        const im_uid *members, size_t n, uint64_t *req_out);
int im__cc_member(im__cc *cc, uint64_t now_ms, bool add, im_gid group,
                  im_uid user, uint64_t *req_out);
int im__cc_list_members(im__cc *cc, uint64_t now_ms, im_gid group,
                        im_uid after_user, uint64_t *req_out);
int im__cc_mark_read(im__cc *cc, uint64_t now_ms, im_gid group, im_seq seq,
                     uint64_t *req_out);
int im__cc_sync(im__cc *cc, uint64_t now_ms, im_gid group, im_seq after,
                im_seq until, uint32_t max_msgs, uint64_t *req_out);
int im__cc_ping(im__cc *cc, uint64_t now_ms, uint64_t *req_out);
size_t im__cc_outbox_count(const im__cc *cc);
void im__cc_convs(const im__cc *cc, im_client_conv *out, size_t max,
                  size_t *n_out);
int im__cc_conv_lookup(const im__cc *cc, im_gid group, im_client_conv *out);
im_seq im__cc_cursor(const im__cc *cc, im_gid group);

/* ---- shared between the core's files ---- */

/* core.c */
uint64_t im__cc_rng(im__cc *cc);
void im__cc_timer_set(im__cc *cc, enum im__cc_timer t, uint64_t due_ms);
void im__cc_timer_stop(im__cc *cc, enum im__cc_timer t);
void im__cc_set_state(im__cc *cc, im_client_state st);
void im__cc_report(im__cc *cc, int err, uint32_t code, uint64_t req_id,
                   im_gid group, uint64_t dedup_id, const char *text);
void im__cc_conn_lost(im__cc *cc, int err, uint32_t code, const char *text);
im_Envelope *im__cc_env(im__cc *cc, uint64_t req_id, pb_size_t which);
int im__cc_put(im__cc *cc, const im_Envelope *e);

/* addr.c: the server list, where the next try goes, backoff */
bool im__cc_opts_servers(struct im__cc_addr *srv, uint32_t *n_out,
                         const im_client_opts *o);
bool im__cc_parse_addr(struct im__cc_addr *a, const char *s, size_t len);
const struct im__cc_addr *im__cc_cur_addr(const im__cc *cc);
bool im__cc_schedule_reconnect(im__cc *cc);

/* list.c: the conversations (side table and im_convlist) */
struct im__cc_conv *im__cc_conv_find(const im__cc *cc, im_gid g);
struct im__cc_conv *im__cc_conv_get(im__cc *cc, im_gid g);
im_seq im__cc_conv_last(const im__cc *cc, im_gid g);
void im__cc_list_deliver(im__cc *cc, struct im__cc_conv *c, const im_Deliver *d,
                         bool own);
void im__cc_list_read(im__cc *cc, struct im__cc_conv *c, im_seq seq,
                      uint64_t ordinal);
void im__cc_list_info(im__cc *cc, struct im__cc_conv *c, const im_ConvInfo *ci);

/* conv.c: cursors, gap repair, cumulative acks */
void im__cc_deliver(im__cc *cc, const im_Deliver *d);
void im__cc_event(im__cc *cc, const im_UserEvent *u, bool repair);
void im__cc_conv_info(im__cc *cc, const im_ConvInfo *ci);
void im__cc_repair(im__cc *cc, struct im__cc_conv *c);
void im__cc_repair_end(im__cc *cc, im_gid group, bool not_member);
void im__cc_repair_next(im__cc *cc);
void im__cc_replay_ends(im__cc *cc, const im_ResumeOk *ok);
bool im__cc_replay_reached(const im__cc *cc, const struct im__cc_conv *c);
void im__cc_sync_page(im__cc *cc, struct im__cc_pending *p,
                      const im_SyncPage *sp);
void im__cc_flush_acks(im__cc *cc);

/* outbox.c: sends until acked, retried with the same dedup id */
void im__cc_pump(im__cc *cc);
void im__cc_send_ack(im__cc *cc, uint64_t req_id, const im_SendAck *a);
bool im__cc_outbox_error(im__cc *cc, uint64_t req_id, const im_Error *er);
void im__cc_outbox_unsent(im__cc *cc);
bool im__cc_outbox_expire(im__cc *cc, uint64_t *next, bool *waiting);

/* creates.c: CreateGroups until answered, retried with the same key */
void im__cc_creates_pump(im__cc *cc);
bool im__cc_creates_reply(im__cc *cc, uint64_t req_id,
                          const im_GroupCreated *gc);
bool im__cc_creates_error(im__cc *cc, uint64_t req_id, const im_Error *er);
void im__cc_creates_unsent(im__cc *cc);
bool im__cc_creates_expire(im__cc *cc, uint64_t *next, bool *waiting);
size_t im__cc_creates_count(const im__cc *cc);

/* request.c: requests in flight and their replies */
struct im__cc_pending *im__cc_pend_new(im__cc *cc, enum im__cc_pkind kind);
struct im__cc_pending *im__cc_pend_find(im__cc *cc, uint64_t req_id);
uint64_t im__cc_new_req(im__cc *cc);
void im__cc_answer_arm(im__cc *cc);
int im__cc_send_sync(im__cc *cc, struct im__cc_pending *p, im_seq after);
void im__cc_emit_reply(im__cc *cc, im_client_reply *r);
void im__cc_req_reply(im__cc *cc, const im_Envelope *e);
void im__cc_req_error(im__cc *cc, struct im__cc_pending *p, const im_Error *er);
void im__cc_req_drop(im__cc *cc);
void im__cc_answer_due(im__cc *cc);

#endif
