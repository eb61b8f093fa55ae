/*
 * The roles of a libim server (Connector, Router, Chatter) and the messages
 * they exchange. Every interaction between roles is one of the four calls of
 * role_router_ops, each carrying a batch of plain structs, so the same role
 * code runs in one process (imd: the router is direct function calls,
 * router_local.c) or in separate processes (a router that encodes these
 * batches as nanopb RPC and decodes them on the other side).
 *
 *   Connector --submit(ops)--> Router --> the Chatter owning each op's group
 *   Chatter   --reply(reps)--> Router --> the Connector named in the route
 *   Chatter   --deliver(fanouts)--> Router --> one call per destination
 *             Connector per batch, each with the members it holds
 *   anyone    --user_events(evs)--> Router --> the Connector owning the user
 *             (it allocates the user-queue seq and appends, fenced)
 *
 * Everything passed is borrowed for the call; a callee that keeps anything
 * copies it. Calls never fail towards the caller: a callee that cannot do
 * the work answers through reply() (submit) or logs and drops (deliver,
 * user_events: the data is durable in the store, clients resync).
 */
#ifndef IM_ROLE_H
#define IM_ROLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "im/im.h"
#include "im/store.h"
#include "im_code.h"

/* Wire error codes: im.Code's values under the names the role structs use
 * (ROLE_OK, ROLE_ERR_UNAVAILABLE, ...), made from proto/im_code.h's table,
 * which also gives their text and their im_err. */
#define ROLE_CODE_(name, err, text) ROLE_##name = im_Code_##name,
enum role_code { IM_CODES(ROLE_CODE_) };
#undef ROLE_CODE_

/* The text of the answer to a request whose store call failed, for the
 * code im_code_of_err gave: "store unavailable" where the client should
 * retry, else the code's own ("store full" on a full disk: certain,
 * nothing was written). */
static inline const char *
role_store_err_text(uint32_t code)
{
	return code == ROLE_ERR_UNAVAILABLE ? "store unavailable"
	                                    : im_code_text(code);
}

/* Where a reply goes: the Connector (node index in the router's table; 0
 * in imd), an opaque tag the Connector understands (connection handle) and
 * the client's req_id. */
typedef struct role_route {
	uint32_t connector;
	uint64_t tag;
	uint64_t req_id;
} role_route;

typedef enum role_op_kind {
	ROLE_OP_SEND = 1,
	ROLE_OP_CREATE_GROUP = 2,
	ROLE_OP_ADD_MEMBER = 3,
	ROLE_OP_REMOVE_MEMBER = 4,
} role_op_kind;

#define ROLE_CREATE_MEMBERS_MAX 64

/* One request from a Connector to the Chatter owning `group` (for
 * CREATE_GROUP, any Chatter: the gid does not exist yet). */
typedef struct role_op {
	role_op_kind kind;
	role_route route;
	im_uid user;  /* the acting user (sender, creator, caller) */
	im_gid group; /* 0 for CREATE_GROUP */
	/* SEND; CREATE_GROUP: the create key (0 = unkeyed) */
	uint64_t dedup_id;
	im_seq reply_to;
	uint32_t type;
	uint32_t body_len;
	const void *body;
	/* ADD_MEMBER / REMOVE_MEMBER */
	im_uid target;
	/* CREATE_GROUP */
	const char *name; /* NUL terminated, <= IM_GROUP_NAME_MAX */
	const im_uid *members;
	size_t nmembers; /* <= ROLE_CREATE_MEMBERS_MAX */
} role_op;

/* The answer to one role_op. code ROLE_OK with kind SEND is a SendAck;
 * with CREATE_GROUP a GroupCreated (dedup_id and dup as for a send: the
 * create key, and whether it named an earlier group); else a generic
 * done/error. */
typedef struct role_reply {
	role_route route;
	role_op_kind kind;
	int code;         /* enum role_code */
	const char *text; /* short reason for errors, may be NULL */
	im_gid group;
	uint64_t dedup_id;
	im_seq seq;
	uint64_t time_ms;
	bool dup;
} role_reply;

/* A group's messages committed in one batch and the members to get them.
 * msgs are in seq order; each msg's body is borrowed. */
typedef struct role_fanout {
	im_gid group;
	const im_msg *msgs;
	size_t nmsgs;
	const im_uid *members;
	size_t nmembers;
} role_fanout;

/* An event for one user's queue (im.EventType values in type). */
typedef struct role_uevent {
	im_uid user;
	uint32_t type;
	im_gid group;
	im_uid actor;
	im_seq read_seq;
	uint64_t read_ordinal;
	char name[IM_GROUP_NAME_MAX + 1];
	/* Times a Connector that did not own the user sent it back to be
	 * routed again (a stale slot map); bounded by ROLE_UEVENT_HOPS_MAX. */
	uint32_t hops;
} role_uevent;

/* Past this many bounces an event is dropped (and logged): the slot maps
 * of the Routers and the Connectors could not agree on the owner. */
#define ROLE_UEVENT_HOPS_MAX 8

typedef struct role_router role_router;

struct role_router_ops {
	/* Connector -> Chatter(s): requests for groups. */
	void (*submit)(role_router *r, const role_op *ops, size_t n);
	/* Chatter -> Connector: answers, routed by ops' routes. */
	void (*reply)(role_router *r, const role_reply *reps, size_t n);
	/* Chatter -> Connectors: one batch of committed messages. */
	void (*deliver)(role_router *r, const role_fanout *f, size_t n);
	/* any role -> the users' Connectors: user-queue events. */
	void (*user_events)(role_router *r, const role_uevent *ev, size_t n);
};

struct role_router {
	const struct role_router_ops *ops;
};

/* Logging shared by the roles and the binaries: stderr, timestamped. */
enum role_log_level {
	ROLE_LOG_ERROR = 0,
	ROLE_LOG_WARN = 1,
	ROLE_LOG_INFO = 2,
	ROLE_LOG_DEBUG = 3,
};

void role_log_set_level(int level);
int role_log_level_parse(const char *s);
bool role_log_enabled(int level);
void role_log(int level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

#define LOG_E(...) role_log(ROLE_LOG_ERROR, __VA_ARGS__)
#define LOG_W(...) role_log(ROLE_LOG_WARN, __VA_ARGS__)
#define LOG_I(...) role_log(ROLE_LOG_INFO, __VA_ARGS__)
#define LOG_D(...)                                                             \
	do {                                                                   \
		if (role_log_enabled(ROLE_LOG_DEBUG)) {                        \
			role_log(ROLE_LOG_DEBUG, __VA_ARGS__);                 \
		}                                                              \
	} while (0)

/* Wall clock in ms (the roles' only clock; the core gets it passed in). */
uint64_t role_now_ms(void);

#endif
