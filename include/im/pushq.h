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
 * Memory is taken lazily (an idle session holds none) and kept for reuse;
 * im_pushq_shrink gives a burst's arrays back once the queue is empty.
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

/**
 * Embeddable queue (init/finish); every member is private. Items sit in
 * push order in one array (acked ones become tombstones, compacted lazily),
 * their payloads in one byte buffer in the same order, chained per
 * conversation (seq order, for ack and replay) and in transmission order
 * (for due). Both grow by doubling, up to twice the bounds.
 */
typedef struct im_pushq {
	im_pushq_opts opts;
	void *items;        /* item slots in push order */
	uint8_t *buf;       /* payload bytes in push order */
	void *convs;        /* per-conversation records */
	uint32_t *cidx;     /* open-addressing index over convs */
	uint64_t bytes;     /* live payload bytes */
	uint64_t bcap;      /* size of buf */
	uint64_t bend;      /* bytes of buf in use, dead ones included */
	uint32_t icap;      /* item slots */
	uint32_t ihead;     /* first slot that may be live */
	uint32_t iend;      /* slots in use, tombstones included */
	uint32_t count;     /* live items */
	uint32_t ccap;      /* conversation records */
	uint32_t cused;     /* records in use */
	uint32_t cfree;     /* free record list */
	uint32_t thead;     /* least recently transmitted item */
	uint32_t ttail;     /* most recently transmitted item */
	uint32_t idle_head; /* record without items, idle longest */
	uint32_t idle_tail;
} im_pushq;

/**
 * Initialise q (caller memory); it holds no memory until the first push.
 * @retval IM_OK, IM_EINVAL (NULL, bad version, zero bounds or rto,
 *         max_items > 2^24)
 */
IM_API int im_pushq_init(im_pushq *q, const im_pushq_opts *opts);
/** Free everything q holds; q may be initialised again. A zeroed q (or
 *  one already finished) is fine. */
IM_API void im_pushq_finish(im_pushq *q);

/**
 * Queue a copy of data as (conv, seq), sent at now_ms (tries 1). A seq not
 * above the highest pushed for conv is a duplicate: nothing is queued and
 * *queued_out (may be NULL) is false. The check comes before the bounds, so
 * a duplicate is IM_OK even when the queue is full. O(1) amortized.
 * @retval IM_OK, IM_EFULL (bounds; nothing changed), IM_ENOMEM (nothing
 *         changed), IM_EINVAL (q NULL, or data NULL with len > 0)
 */
IM_API int im_pushq_push(im_pushq *q, im_gid conv, im_seq seq,
			 const void *data, uint32_t len, uint64_t now_ms,
			 bool *queued_out);

/** Cumulative ack: drop every item of conv with seq <= seq; returns how
 *  many were dropped. O(1) amortized per dropped item; never allocates.
 *  The memory is kept for reuse. */
IM_API size_t im_pushq_ack(im_pushq *q, im_gid conv, im_seq seq);

/**
 * Call cb for each item due for retransmission at now_ms (sent_ms + rto_ms
 * <= now_ms), oldest first, and mark it sent at now_ms (tries + 1). At most
 * max items per call (bounded work). "Oldest" is transmission order (push,
 * due, replay), which is sent_ms order unless the clock went backwards; the
 * walk stops at the first item not due. Each item is marked before cb sees
 * it (cb gets the new sent_ms and tries); a non-zero cb return stops the
 * walk and is returned (that item stays marked and comes due again after
 * rto_ms). cb must not modify q.
 * @retval IM_OK, IM_EINVAL (q or cb NULL), or cb's non-zero return
 */
IM_API int im_pushq_due(im_pushq *q, uint64_t now_ms, size_t max,
			im_pushq_cb cb, void *payload);

/** Earliest time an item becomes due (the least recently transmitted
 *  item's sent_ms + rto_ms, saturating), or UINT64_MAX if the queue is
 *  empty. */
IM_API uint64_t im_pushq_next_due(const im_pushq *q);

/**
 * Resume: call cb for every queued item of conv with seq > after, in seq
 * order, marking them sent at now_ms (as im_pushq_due does). conv
 * IM_PUSHQ_ALL replays every conversation (each in seq order; after applies
 * to each). An unknown conv replays nothing. cb must not modify q.
 * @retval IM_OK, IM_EINVAL (q or cb NULL), or cb's non-zero return
 */
#define IM_PUSHQ_ALL UINT64_MAX
IM_API int im_pushq_replay(im_pushq *q, im_gid conv, im_seq after,
			   uint64_t now_ms, im_pushq_cb cb, void *payload);

/**
 * Highest seq pushed for conv (0 if none since init). It is kept at least
 * while conv has queued items; when max_items conversations are known, the
 * one without items for the longest is forgotten to make room (a later
 * duplicate of it is then queued again; clients drop it by (conv, seq)).
 */
IM_API im_seq im_pushq_last_seq(const im_pushq *q, im_gid conv);

/** Items queued (unacked). Cannot fail. */
IM_API size_t im_pushq_count(const im_pushq *q);
/** Payload bytes queued (unacked), the quantity max_bytes bounds. */
IM_API size_t im_pushq_bytes(const im_pushq *q);

/**
 * Heap bytes q holds now (item slots, payload buffer, conversation records
 * and their index), live or kept for reuse. Cannot fail; 0 for NULL.
 */
IM_API size_t im_pushq_mem(const im_pushq *q);

/**
 * Give back the item and payload arrays of an empty queue when together
 * they hold more than keep bytes (a burst grew them; an idle session should
 * not keep them). A queue with items is left alone. The conversation
 * records stay (they carry the duplicate check). Never allocates; the next
 * push allocates small again. Returns the bytes released (0: nothing).
 */
IM_API size_t im_pushq_shrink(im_pushq *q, size_t keep);

#ifdef __cplusplus
}
#endif

#endif
