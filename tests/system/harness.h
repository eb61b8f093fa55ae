/*
 * System-test harness: a real imd process on 127.0.0.1 with a temp
 * database and secret, and a raw blocking client speaking nanopb frames.
 * Every wait is bounded (timeouts in ms); nothing here loops forever.
 *
 * The imd binary comes from $IMD (set by meson). Extra imd flags for every
 * start can be given to imd_start; the harness adds --db, --secret-file,
 * --port 0, --port-file, --slots 64, --sync normal, --log-level debug.
 *
 * The target comes from IM_TEST_TARGET: "imd" (the default) or "cluster".
 * A cluster is a store (the sqlite file of the temp dir, or a fresh schema
 * of the PostgreSQL database in IM_TEST_PG when that is set) and 1 Router,
 * 2 Chatters and 2 Connectors ($IMNODE processes) on free 127.0.0.1
 * ports; the extra flags (Connector/Chatter tuning keys, the same as
 * imd's) go to the Connectors and Chatters. `port` is connector-1's: a
 * client whose user belongs to connector-2 follows the Redirect (see
 * tc_recv). imd_stop signals every node (a whole-cluster crash or
 * shutdown), imd_start starts them all again on the same store and waits
 * until every slot is held by the new incarnations. Tests that only make
 * sense for one process are skipped for the cluster with a printed reason
 * (harness.c, h_cluster_skips).
 */
#ifndef IM_TEST_HARNESS_H
#define IM_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "im.pb.h"
#include "im/token.h"

#define H_TIMEOUT_MS 5000
#define H_MAX_ARGS 32
#define H_NODES 5 /* router, chatter-1, chatter-2, connector-1, -2 */

/* One imnode process of a cluster target. */
typedef struct h_node {
	pid_t pid;
	uint16_t port; /* connectors: client port; router: RPC port */
	char name[16];
	char role[16];
	char log[320];
	char port_file[320];
} h_node;

typedef struct imd_proc {
	pid_t pid;
	uint16_t port;
	char dir[256];
	char db[320];
	char secret_file[320];
	char port_file[320];
	char log[320];
	char secret[65];
	const char *extra[H_MAX_ARGS];
	int nextra;
	int starts;
	/* IM_TEST_TARGET=cluster (pid is connector-1's while it runs) */
	bool cluster;
	char store[1100]; /* sqlite path or PostgreSQL conninfo */
	char pg_schema[64];
	h_node nodes[H_NODES];
} imd_proc;

/* Make a temp dir and secret; does not start. extra: NULL-terminated
 * flags added to every start (copied pointers: keep them alive). */
int imd_init(imd_proc *p, const char *const *extra);
/* IM_TEST_TARGET=cluster? */
bool h_target_cluster(void);
/* Start (or restart) imd on the same database; waits until it listens. */
int imd_start(imd_proc *p);
/* Send sig (SIGTERM, SIGKILL) and wait (bounded) for the exit; returns the
 * wait status, or -1 if it did not exit in time (then it is killed). */
int imd_stop(imd_proc *p, int sig);
/* Stop if running (SIGTERM) and remove the temp dir. Returns the status of
 * that stop (0 if it was not running). */
int imd_cleanup(imd_proc *p);
/* Print the tail of imd's log to stderr (for failures). */
void imd_dump_log(const imd_proc *p);

/* A token for uid with the harness's secret, valid for ttl_s (negative:
 * already expired). */
void imd_token(const imd_proc *p, uint64_t uid, int64_t ttl_s, char *out,
               size_t len);

/* A push (Deliver or UserEvent) as the client saw it. */
typedef struct tpush {
	pb_size_t kind; /* im_Envelope_deliver_tag or _user_event_tag */
	uint64_t group;
	uint64_t seq;
	uint64_t prev_seq;
	uint64_t ordinal;
	uint64_t sender;
	uint64_t dedup_id;
	uint32_t ev_type;
	uint64_t actor;
	uint64_t read_seq;
	uint32_t body_len;
	char body[128];
} tpush;

#define TC_PUSHES 4096

/* Bytes a client sent before its login was answered: replayed to the
 * address of a Redirect. */
#define TC_REPLAY_MAX 16384

typedef struct tclient {
	int fd;
	int rcvbuf;      /* tc_connect_rcvbuf's, kept for a redirect */
	uint8_t *replay; /* sent since connecting, until LoginOk/ResumeOk */
	size_t nreplay;  /* bytes in replay (NULL: not kept, not followed) */
	int redirects;
	uint8_t *buf; /* received bytes not yet parsed */
	size_t len;
	uint64_t next_req;
	tpush *pushes; /* ring of pushes seen while waiting for replies */
	size_t phead;
	size_t pcount;
	im_Envelope *env; /* last frame received */
	uint64_t user;
	uint8_t session[16];
	bool drop_pushes; /* do not keep pushes seen while waiting */
} tclient;

int tc_connect(tclient *c, uint16_t port);
/* Same, with a small receive buffer (rcvbuf bytes): a slow reader. */
int tc_connect_rcvbuf(tclient *c, uint16_t port, int rcvbuf);
void tc_close(tclient *c);
/* Close with a TCP reset, as a killed client would leave it. */
void tc_abort(tclient *c);
int tc_send_raw(tclient *c, const void *data, size_t len);
/* Encode env as one frame (header + payload) into buf; its length, or 0
 * when it does not fit in cap. Tests build several frames in one buffer
 * to send them in one write. */
size_t tc_frame(uint8_t *buf, size_t cap, const im_Envelope *env);
/* Encode env (req_id as set) as a frame and send it. */
int tc_send(tclient *c, const im_Envelope *env);
/*
 * Receive the next frame into c->env. Returns 1, 0 on timeout, -1 when the
 * connection closed (or failed) before a frame. A Redirect answering the
 * login (cluster: the user belongs to another Connector) is followed when
 * IM_TEST_TARGET=cluster: the client connects to its address, sends again
 * what it had sent since connecting and goes on waiting, as a real client
 * library does. Otherwise the Redirect is returned like any frame.
 */
int tc_recv(tclient *c, int timeout_ms);
/*
 * Send env with a fresh req_id and wait for the first frame repeating it
 * (into c->env); pushes meanwhile go to the ring. Returns 1, 0, -1 as
 * tc_recv.
 */
int tc_call(tclient *c, im_Envelope *env, int timeout_ms);
/* Wait for the reply to req_id (into c->env), queueing pushes. */
int tc_wait_reply(tclient *c, uint64_t req_id, int timeout_ms);
/* Next push (from the ring, else the socket). 1, 0, -1. */
int tc_next_push(tclient *c, tpush *out, int timeout_ms);
/* Wait until the server closes; true if it did within the timeout.
 * Frames before the close are decoded into c->env one by one; the code of
 * the last Error seen goes to *last_error (-1 if none). */
bool tc_wait_closed(tclient *c, int timeout_ms, int *last_error);

/* Log in; fills c->user/c->session. Conversations go to convs (up to max;
 * *nconvs gets the count). Returns 1 on LoginOk, else the Error code
 * received as a negative number, or -1000 on timeout/close. */
int tc_login(tclient *c, const char *token, im_ConvInfo *convs, size_t max,
             size_t *nconvs);
/* Helpers returning the SendAck/GroupCreated/etc fields, or a negative
 * error code (-Code, -1000 for timeout/close). */
int64_t tc_create_group(tclient *c, const char *name, const uint64_t *members,
                        size_t n);
int64_t tc_send_msg(tclient *c, uint64_t group, uint64_t dedup_id,
                    const char *body, bool *dup);
int tc_simple(tclient *c, im_Envelope *env); /* returns Error code or -1000 */
void tc_ack(tclient *c, uint64_t group, uint64_t seq);
/* Sync group after..until; appends up to max messages in order; returns
 * the count or a negative error. Pages through `more`. */
int tc_sync_all(tclient *c, uint64_t group, uint64_t after, tpush *out,
                size_t max);

#endif
