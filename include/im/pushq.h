/**
 * @file pushq.h
 * A session's outgoing queue: deliveries wait here until the client acks
 * them. Items are pushed in seq order per conversation, acked cumulatively
 * per conversation, retransmitted when due and replayed on resume.
 * The user's own queue uses conversation id IM_PUSHQ_USERQ (0).
 *
 * Bounded: at most max_items items and max_bytes payload bytes. A push that
 * would exceed either returns IM_EFULL and changes nothing; the server's
 * policy is then to drop the session and let the client resync from the
 * store (never unbounded growth).
 *
 * Memory is taken lazily (an idle session holds none) and kept for reuse.
 *
 * Thread-safety: one thread at a time per queue.
 */
#ifndef IM_PUSHQ_H
#define IM_PUSHQ_H

#include "im.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Conversation id of the user queue inside a push queue. */
#define IM_PUSHQ_USERQ 0

#define IM_PUSHQ_OPTS_VERSION 1
typedef struct im_pushq_opts {
	uint32_t version;
	uint32_t max_items;
	uint32_t max_bytes;
	uint32_t rto_ms; /**< retransmit an unacked item after this long */
	im_allocator alloc;
} im_pushq_opts;
#define IM_PUSHQ_OPTS_INIT {IM_PUSHQ_OPTS_VERSION, 1024, 1u << 20, 5000, {0, 0}}

/** An item handed to callbacks; data is borrowed until the callback returns. */
typedef struct im_pushq_item {
	im_gid conv;
	im_seq seq;
	uint64_t sent_ms;
	uint32_t tries; /**< transmissions so far, 1 after the push */
	uint32_t len;
	const void *data;
} im_pushq_item;

typedef int (*im_pushq_cb)(const im_pushq_item *item, void *payload);

/** Embeddable queue (init/finish); members are private. */
typedef struct im_pushq {
	im_pushq_opts opts;
	void *items;     /* private */
	uint32_t cap;    /* private */
	uint32_t count;  /* private */
	uint32_t head;   /* private */
	uint64_t bytes;  /* private */
	void *convs;     /* private */
	uint32_t nconvs; /* private */
	uint32_t convcap;/* private */
} im_pushq;

/** @retval IM_OK, IM_EINVAL (zero bounds or rto) */
IM_API int im_pushq_init(im_pushq *q, const im_pushq_opts *opts);
IM_API void im_pushq_finish(im_pushq *q);

/**
 * Queue a copy of data as (conv, seq), sent at now_ms. A seq not above the
 * highest pushed for conv is a duplicate: nothing is queued and *queued_out
 * (may be NULL) is false.
 * @retval IM_OK, IM_EFULL (bounds; nothing changed), IM_ENOMEM, IM_EINVAL
 */
IM_API int im_pushq_push(im_pushq *q, im_gid conv, im_seq seq,
			 const void *data, uint32_t len, uint64_t now_ms,
			 bool *queued_out);

/** Cumulative ack: drop every item of conv with seq <= seq; returns how
 *  many were dropped. */
IM_API size_t im_pushq_ack(im_pushq *q, im_gid conv, im_seq seq);

/**
 * Call cb for each item due for retransmission at now_ms (sent_ms + rto_ms
 * <= now_ms), oldest first, and mark it sent at now_ms (tries + 1). At most
 * max items per call (bounded work). A non-zero cb return stops and is
 * returned.
 */
IM_API int im_pushq_due(im_pushq *q, uint64_t now_ms, size_t max,
			im_pushq_cb cb, void *payload);

/** Earliest time an item becomes due, or UINT64_MAX if the queue is empty. */
IM_API uint64_t im_pushq_next_due(const im_pushq *q);

/**
 * Resume: call cb for every queued item of conv with seq > after, in seq
 * order, marking them sent at now_ms. conv IM_PUSHQ_ALL replays all convs.
 */
#define IM_PUSHQ_ALL UINT64_MAX
IM_API int im_pushq_replay(im_pushq *q, im_gid conv, im_seq after,
			   uint64_t now_ms, im_pushq_cb cb, void *payload);

/** Highest seq pushed for conv (0 if none since init). */
IM_API im_seq im_pushq_last_seq(const im_pushq *q, im_gid conv);

IM_API size_t im_pushq_count(const im_pushq *q);
IM_API size_t im_pushq_bytes(const im_pushq *q);

#ifdef __cplusplus
}
#endif

#endif
