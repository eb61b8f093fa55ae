/*
 * The Chatter's private header: its state and the functions its files
 * share (chatter__*). servers/roles/chatter.h stays the role's interface.
 *
 *   chatter.c        create/destroy, chatter_submit -> the handlers
 *   handle_send.c    Send: checked, copied into the gathering batch
 *   handle_create.c  CreateGroup: queued, committed once per turn
 *   handle_member.c  AddMember/RemoveMember: at once, through the store
 *   group.c          hot group state: load, members, drop, idle expiry
 *   batch.c          one send batch: build, store, apply, answer
 *   commit.c         the pipeline: when batches commit (loop or thread)
 *   segment.c        seq segment prefetch/refill, new group ids
 *   memory.c         heap bytes by part (chatter_get_mem)
 *   test_hold.c      test builds only: hold a commit in flight
 *
 * Sends are queued as they arrive and committed in an ev_prepare watcher,
 * i.e. once per loop turn, right before the loop would block: every send of
 * the turn goes into ONE im_store_msg_append (fenced by every slot the batch
 * touches), then the senders get their acks, then the members their
 * deliveries. An ack therefore always follows a commit (acked => durable).
 *
 * The commit thread (opts.commit_thread with a commit_store). The loop
 * builds a batch (group state, dedup, seqs, fences: everything that needs
 * the hot state) and hands it to the thread, which only runs the
 * append (and the batch's one segment prefetch) through its own store
 * handle and signals with an ev_async. Meanwhile the loop gathers the next
 * batch into the other of two buffers. On completion the loop applies the
 * results to the hot state, builds and hands over the gathered batch, and
 * only then sends the acks and fan-out of the finished one, so that the
 * next fsync runs while the loop encodes deliveries. Nothing of the hot
 * state is touched by the thread except that prefetched segment, and the
 * loop neither builds nor drops groups while a batch is in flight (every
 * path that would waits for it first), so the only shared data is the
 * batch handed over, under the mutex.
 *
 * Group state is a cache of the store: it is loaded on first use, and
 * dropped whenever we are no longer sure it is right (a fenced or failed
 * commit); the next use reloads it and takes a fresh seq segment, so seqs
 * only ever grow.
 */
#ifndef IM_ROLE_CHATTER_PRIV_H
#define IM_ROLE_CHATTER_PRIV_H

#include <pthread.h>

#include "chatter.h"
#include "im/dedup.h"
#include "im/idseg.h"
#include "im/sys/store.h"
#include "store_full.h"

struct group {
	struct group *next; /* hash chain */
	im_gid gid;
	uint32_t slot;
	uint64_t epoch; /* the slot's epoch this state was loaded under */
	im_uid creator;
	im_idseg seg;
	im_seq last_seq;
	uint64_t last_ord;
	im_uid *members; /* sorted */
	uint32_t nmembers;
	uint32_t cap;
	/* batch bookkeeping, valid while batch == chatter's batch_gen */
	uint64_t batch;
	im_seq t_seq;
	uint64_t t_ord;
	uint32_t tidx;    /* index among the batch's touched groups */
	uint64_t used_ms; /* last chatter__group_get (idle expiry) */
	char name[IM_GROUP_NAME_MAX + 1];
};

struct pend {
	role_route route;
	im_uid sender;
	im_gid gid;
	uint64_t dedup_id;
	im_seq reply_to;
	uint32_t type;
	uint32_t body_len;
	void *body;
};

/*
 * One batch: the sends gathered, their bodies, and everything needed to
 * commit and answer them. Two of them with the commit thread (one
 * gathering, one in flight), one without.
 */
struct batch {
	struct pend *pend;
	uint32_t npend;
	/* Bodies of the pending sends, packed; emptied once answered.
	 * max_batch x IM_MSG_BODY_MAX bytes, so max_batch flushes first;
	 * only the pages a batch used are ever touched. */
	uint8_t *arena;
	size_t arena_used;
	/* Built on the loop thread (chatter__build_batch) */
	uint64_t gen; /* batch_gen of its groups */
	uint64_t now;
	im_msg *msgs;
	uint32_t nmsgs;
	struct group **msg_group;
	uint32_t *msg_pend;
	im_fence *fences;
	uint32_t nfences;
	struct group **touched;
	uint32_t ntouched;
	role_reply *replies;
	uint32_t nrep;
	struct group *prefetch; /* refilled after the append (thread) */
	/* Written by the committer */
	im_append_result *res;
	int rc;
	int prefetch_rc;
	char err[IM_STORE_ERRMSG_MAX];
};

/* im.EventType, named once in im.proto (chatter.h brings im.pb.h). */
enum {
	UEV_JOINED = im_EventType_EV_JOINED,
	UEV_LEFT = im_EventType_EV_LEFT,
	UEV_GROUP_CREATED = im_EventType_EV_GROUP_CREATED
};

/* A CreateGroup waiting for the loop turn's creation commit. */
struct cpend {
	role_route route;
	im_uid creator;
	uint64_t dedup_id; /* the create key, 0 = unkeyed */
	uint32_t nmembers; /* with the creator, distinct */
	im_uid members[ROLE_CREATE_MEMBERS_MAX + 1];
	char name[IM_GROUP_NAME_MAX + 1];
};

#ifdef IM_TEST_HOOKS
/* test_hold.c (meson option test_hooks): its settings, from the
 * environment at create, read-only after. */
#define TEST_HOLD_PATH_MAX 512
struct test_hold {
	bool on;
	char arm[TEST_HOLD_PATH_MAX];
	char release[TEST_HOLD_PATH_MAX];
};
#endif

/* Creations committed per transaction (bounds the scratch below). */
#define CREATE_BATCH_MAX 128
/* Group ids tried per creation for one that falls in a slot we own (a
 * Chatter with 1 of 64 slots needs 64 on average), and segments taken for
 * it at most. */
#define GID_TRIES 4096
#define GID_REFILLS 8

struct chatter {
	struct ev_loop *loop;
	im_store *st;
	im_shard_map *map;
	const char *node;
	role_router *router;
	chatter_opts opts;
	ev_prepare commit_w;
	ev_timer idle_w;      /* idle group expiry sweep */
	uint32_t idle_cursor; /* bucket where the next sweep starts */

	/* The commit thread (threaded only). job/job_done/quit under mu. */
	bool threaded;
	bool thread_started;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t job_cv;
	pthread_cond_t done_cv;
	struct batch *job;
	bool job_done;
	bool quit;
	ev_async done_w;
	im_store *cst; /* the thread's store handle */

	struct group **buckets;
	uint32_t nbuckets; /* power of two */
	uint32_t ngroups;
	uint32_t evict_cursor;

	im_dedup *dedup;
	im_idseg gids;
	bool gids_ready;

	/* gather: where sends go (NULL only while a finished batch is
	 * being answered); inflight: the batch on the commit thread. */
	struct batch bufs[2];
	struct batch *gather;
	struct batch *inflight;
	size_t arena_cap;
	uint64_t batch_gen;
	/* Groups of this batch are still referenced by the fan-out being
	 * sent (members): not evicted or reloaded. UINT64_MAX: none. */
	uint64_t pin_gen;
	/* Fan-out of the batch being answered (one at a time). */
	im_msg *fan_msgs;
	role_fanout *fans;
	uint32_t *fan_count;

	/* The creations of this turn (one fenced transaction, committed by
	 * chatter_flush next to the sends), and their scratch. */
	struct cpend *cpend;
	uint32_t ncpend;
	im_group_new *cnew;
	uint32_t *cidx; /* cnew[k] is cpend[cidx[k]] */
	uint64_t *ckeys;          /* cnew[k]'s create key */
	im_group_created *cmade;  /* what the store did with cnew[k] */
	im_fence *cfences;
	role_reply *creplies;
	role_uevent *cevs; /* CREATE_BATCH_MAX x (members + 1), malloc */

	/* The disk is full: writes paused, warnings counted. */
	store_full full;
	bool warned_unkeyed; /* the store has no create keys: said once */

	chatter_stats stats;
#ifdef IM_TEST_HOOKS
	struct test_hold hold;
#endif
};

/* chatter.c */
void chatter__reply_one(chatter *c, const role_op *op, int code,
                        const char *text, im_gid gid);

/* handle_*.c: one per request family. */
void chatter__queue_send(chatter *c, const role_op *op);
void chatter__queue_create(chatter *c, const role_op *op);
void chatter__commit_creates(chatter *c);
void chatter__do_member(chatter *c, const role_op *op);

/* group.c. group_get returns a role code, ROLE_OK with *out set. */
int chatter__group_get(chatter *c, im_gid gid, struct group **out);
bool chatter__is_member(const struct group *g, im_uid u);
int chatter__member_insert(chatter *c, struct group *g, im_uid u);
void chatter__member_erase(struct group *g, im_uid u);
bool chatter__slot_is_ours(chatter *c, im_gid gid, im_fence *fence);
void chatter__drop_slot_now(chatter *c, uint32_t slot);
void chatter__groups_clear(chatter *c);
void chatter__idle_start(chatter *c);
void chatter__idle_stop(chatter *c);

/* batch.c */
void chatter__build_batch(chatter *c, struct batch *b);
void chatter__run_commit(struct batch *b, im_store *st, bool with_prefetch);
size_t chatter__apply_batch(chatter *c, struct batch *b);
void chatter__answer_batch(chatter *c, struct batch *b, size_t nfans);
int chatter__batch_init(struct batch *b, size_t mb, size_t arena_cap);
void chatter__batch_finish(struct batch *b);

/* commit.c. make_room: the gathering batch is full; commit it (or the one
 * in flight) so that a send fits. settle: wait for the batch in flight and
 * answer it, starting nothing new. */
void chatter__make_room(chatter *c);
void chatter__settle(chatter *c);
int chatter__pipeline_start(chatter *c);
void chatter__pipeline_stop(chatter *c);

#ifdef IM_TEST_HOOKS
/* test_hold.c: init reads the environment; run_commit stands in for
 * chatter__run_commit (loop or commit thread) and may wait before it. */
void chatter__test_hold_init(struct test_hold *h);
void chatter__test_run_commit(const struct test_hold *h, const char *node,
                              struct batch *b, im_store *st,
                              bool with_prefetch);
#endif

/* segment.c */
struct group *chatter__prefetch_pick(const struct batch *b);
bool chatter__refill_inline(chatter *c, struct group *g, uint64_t *seq);
void chatter__prefetch_now(chatter *c, const struct batch *b);
bool chatter__new_gid(chatter *c, im_gid *gid, im_fence *fence);
void chatter__gids_prefetch(chatter *c);

#endif
