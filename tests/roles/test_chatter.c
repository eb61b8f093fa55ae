/*
 * The Chatter's group commit, on the loop thread and on its commit thread
 * (servers/roles/chatter/), over a real sqlite store shared through a
 * store_mux, with a recording router. What must hold in both modes: an
 * ack only ever follows the commit of its message (the message is in the
 * store when the ack is seen), acks of a batch go out before its fan-out,
 * a failed commit acks nothing. With the thread: flush, drop_slot and a
 * full batch wait for the commit in flight, and destroy joins it.
 *
 * A "gate" store (a wrap_store) holds msg_append until the test opens it,
 * so a commit can be caught in flight deterministically; a "slow" store
 * sleeps in every append so that sends pile up behind a commit.
 */
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "chatter.h"
#include "faulty_store.h"
#include "store/mux.h"
#include "store_full.h"
#include "wrap_store.h"

#define NODE "chat-1"
#define NSLOTS 16
#define NGROUPS 4
#define GID0 1001
#define MAXREP 4096
#define MAXDEDUP 4096

/* A wrap_store that can hold msg_append (gate) or slow it down. */
struct gate_store {
	wrap_store w; /* first */
	atomic_bool armed;
	atomic_int sleep_us;
	atomic_int appends; /* msg_append calls that returned */
	sem_t entered;
	sem_t open;
};

static int
gate_pre(wrap_store *w, enum store_op op)
{
	struct gate_store *g = (struct gate_store *)w;

	if (op != STORE_OP_MSG_APPEND) {
		return 0;
	}
	if (atomic_load(&g->armed)) {
		sem_post(&g->entered);
		sem_wait(&g->open);
	}
	if (atomic_load(&g->sleep_us) > 0) {
		struct timespec ts = {0, atomic_load(&g->sleep_us) * 1000L};

		nanosleep(&ts, NULL);
	}
	return 0;
}

static int
gate_post(wrap_store *w, enum store_op op, int rc)
{
	struct gate_store *g = (struct gate_store *)w;

	if (op == STORE_OP_MSG_APPEND) {
		atomic_fetch_add(&g->appends, 1);
	}
	return rc;
}

static void
gate_destroy(wrap_store *w)
{
	struct gate_store *g = (struct gate_store *)w;

	sem_destroy(&g->entered);
	sem_destroy(&g->open);
	free(g);
}

static im_store *
gate_wrap(im_store *inner)
{
	struct gate_store *g = calloc(1, sizeof(*g));

	assert_non_null(g);
	sem_init(&g->entered, 0, 0);
	sem_init(&g->open, 0, 0);
	g->w.pre = gate_pre;
	g->w.post = gate_post;
	g->w.destroy = gate_destroy;
	assert_int_equal(wrap_store_init(&g->w, inner, true), IM_OK);
	return &g->w.base;
}

struct fx;

/* The router: records replies and deliveries and checks them as they
 * come (on the loop thread). */
struct rec {
	role_router base; /* first */
	struct fx *fx;
	role_reply reps[MAXREP];
	size_t nrep;
	size_t nok;
	size_t ndelivered; /* messages */
	bool acked[MAXDEDUP];
	im_seq last_seq[NGROUPS];
	int not_durable;  /* acks of messages not (yet) in the store */
	int deliv_unacked; /* deliveries before their ack */
	int deliv_order;   /* deliveries out of seq order */
};

struct fx {
	struct ev_loop *loop;
	ev_timer tick;
	im_store *mid; /* gate or faulty store, owns the sqlite store */
	struct gate_store *gate;
	im__store_mux *mux;
	im_store *ls; /* the loop's handle */
	im_store *ts; /* the commit thread's handle */
	im_shard_map *map;
	chatter *c;
	bool threaded;
	struct rec r;
};

static im_uid
sender_of(uint64_t dedup_id)
{
	return 1 + dedup_id % 3;
}

static void
rec_reply(role_router *rr, const role_reply *reps, size_t n)
{
	struct rec *r = (struct rec *)rr;
	size_t i;

	for (i = 0; i < n; i++) {
		const role_reply *p = &reps[i];

		assert_true(r->nrep < MAXREP);
		r->reps[r->nrep++] = *p;
		if (p->kind != ROLE_OP_SEND || p->code != ROLE_OK) {
			continue;
		}
		r->nok++;
		if (p->dedup_id < MAXDEDUP) {
			r->acked[p->dedup_id] = true;
		}
		/* Acked => durable: the loop's handle waits for any commit
		 * in flight, so what it finds is committed. */
		{
			im_msg m;

			if (im_store_msg_find_dedup(r->fx->ls, p->group,
			                            sender_of(p->dedup_id),
			                            p->dedup_id,
			                            &m) != IM_OK ||
			    m.seq != p->seq) {
				r->not_durable++;
			}
		}
	}
}

static void
rec_deliver(role_router *rr, const role_fanout *f, size_t n)
{
	struct rec *r = (struct rec *)rr;
	size_t i, j;

	for (i = 0; i < n; i++) {
		uint32_t gi = (uint32_t)(f[i].group - GID0);

		assert_true(gi < NGROUPS);
		for (j = 0; j < f[i].nmsgs; j++) {
			const im_msg *m = &f[i].msgs[j];

			if (m->dedup_id >= MAXDEDUP || !r->acked[m->dedup_id]) {
				r->deliv_unacked++;
			}
			if (m->seq <= r->last_seq[gi]) {
				r->deliv_order++;
			}
			r->last_seq[gi] = m->seq;
			r->ndelivered++;
		}
	}
}

static void
rec_user_events(role_router *rr, const role_uevent *ev, size_t n)
{
	(void)rr;
	(void)ev;
	(void)n;
}

static const struct role_router_ops rec_ops = {
        NULL, rec_reply, rec_deliver, rec_user_events};

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

/* kind: 'g' gate store, 'f' faulty store. */
static struct fx *
fx_new(bool threaded, char kind, uint32_t max_batch)
{
	im_store_sqlite_opts so = IM_STORE_SQLITE_OPTS_INIT;
	chatter_opts co = CHATTER_OPTS_INIT;
	struct fx *fx = calloc(1, sizeof(*fx));
	im_store *sq = NULL;
	char err[128];
	uint32_t i, slot;

	assert_non_null(fx);
	fx->threaded = threaded;
	fx->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(fx->loop);
	/* The loop never blocks for long: every test run is bounded. */
	ev_timer_init(&fx->tick, tick_cb, 0.005, 0.005);
	ev_timer_start(fx->loop, &fx->tick);
	so.exclusive = true; /* as imd: no second connection possible */
	so.sync = IM_SQLITE_SYNC_NORMAL;
	assert_int_equal(im_store_sqlite_open(&sq, ":memory:", &so, err,
	                                      sizeof(err)),
	                 IM_OK);
	if (kind == 'g') {
		fx->mid = gate_wrap(sq);
		fx->gate = (struct gate_store *)fx->mid;
	} else {
		assert_int_equal(faulty_store_wrap(&fx->mid, sq, true), IM_OK);
	}
	assert_int_equal(im__store_mux_create(&fx->mux, fx->mid), IM_OK);
	assert_int_equal(im__store_mux_handle(fx->mux, &fx->ls), IM_OK);
	assert_int_equal(im__store_mux_handle(fx->mux, &fx->ts), IM_OK);
	for (i = 0; i < NGROUPS; i++) {
		im_group g;

		memset(&g, 0, sizeof(g));
		g.gid = GID0 + i;
		g.creator = 1;
		snprintf(g.name, sizeof(g.name), "g%u", i);
		assert_int_equal(im_store_group_create(fx->ls, &g), IM_OK);
		assert_int_equal(im_store_member_add(fx->ls, g.gid, 1, NULL),
		                 IM_OK);
		assert_int_equal(im_store_member_add(fx->ls, g.gid, 2, NULL),
		                 IM_OK);
		assert_int_equal(im_store_member_add(fx->ls, g.gid, 3, NULL),
		                 IM_OK);
	}
	{
		im_shard_opts sho = IM_SHARD_OPTS_INIT;

		sho.nslots = NSLOTS;
		assert_int_equal(im_shard_create(&fx->map, &sho), IM_OK);
	}
	for (slot = 0; slot < NSLOTS; slot++) {
		assert_int_equal(im_shard_claim(fx->map, fx->ls, IM_KIND_GROUP,
		                                slot, NODE, NULL),
		                 IM_OK);
	}
	fx->r.base.ops = &rec_ops;
	fx->r.fx = fx;
	co.max_batch = max_batch;
	co.commit_thread = threaded;
	co.commit_store = threaded ? fx->ts : NULL;
	assert_int_equal(chatter_create(&fx->c, fx->loop, fx->ls, fx->map,
	                                NODE, &fx->r.base, &co),
	                 IM_OK);
	return fx;
}

static void
fx_free(struct fx *fx)
{
	chatter_destroy(fx->c);
	ev_timer_stop(fx->loop, &fx->tick);
	ev_loop_destroy(fx->loop);
	im_shard_destroy(fx->map);
	im_store_close(fx->ls);
	im_store_close(fx->ts);
	im__store_mux_destroy(fx->mux);
	im_store_close(fx->mid);
	free(fx);
}

static void
send_one(struct fx *fx, uint64_t dedup_id)
{
	role_op op;

	memset(&op, 0, sizeof(op));
	op.kind = ROLE_OP_SEND;
	op.route.tag = dedup_id;
	op.route.req_id = dedup_id;
	op.user = sender_of(dedup_id);
	op.group = GID0 + dedup_id % NGROUPS;
	op.dedup_id = dedup_id;
	op.body = "hello";
	op.body_len = 5;
	chatter_submit(fx->c, &op, 1);
}

/* Run the loop until n replies arrived; bounded (~10 s). */
static void
run_until_replies(struct fx *fx, size_t n)
{
	int i;

	for (i = 0; i < 2000 && fx->r.nrep < n; i++) {
		ev_run(fx->loop, EVRUN_ONCE);
	}
	assert_int_equal(fx->r.nrep, n);
}

/* Sends issued from inside the loop while commits run, as a Connector
 * would. */
struct feeder {
	ev_timer w;
	struct fx *fx;
	uint64_t next, last;
	unsigned per_tick;
};

static void
feed_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct feeder *f = w->data;
	unsigned k;

	(void)revents;
	for (k = 0; k < f->per_tick && f->next <= f->last; k++) {
		send_one(f->fx, f->next++);
	}
	if (f->next > f->last) {
		ev_timer_stop(loop, w);
	}
}

static void
acks_follow_commits(bool threaded)
{
	struct fx *fx = fx_new(threaded, 'g', 64);
	struct feeder f;
	chatter_stats cs;
	size_t i;

	/* Every append takes 3 ms: sends pile up behind each commit. */
	atomic_store(&fx->gate->sleep_us, 3000);
	f.fx = fx;
	f.next = 1;
	f.last = 600;
	f.per_tick = 7;
	ev_timer_init(&f.w, feed_cb, 0.001, 0.001);
	f.w.data = &f;
	ev_timer_start(fx->loop, &f.w);
	run_until_replies(fx, 600);
	ev_timer_stop(fx->loop, &f.w);
	assert_int_equal(fx->r.nok, 600);
	assert_int_equal(fx->r.not_durable, 0);
	assert_int_equal(fx->r.deliv_unacked, 0);
	assert_int_equal(fx->r.deliv_order, 0);
	/* Each message goes to its group's 3 members in one fan-out entry:
	 * counted once per message here. */
	assert_int_equal(fx->r.ndelivered, 600);
	for (i = 1; i <= 600; i++) {
		assert_true(fx->r.acked[i]);
	}
	chatter_get_stats(fx->c, &cs);
	assert_int_equal(cs.msgs, 600);
	assert_true(cs.commits > 1);
	if (threaded) {
		assert_int_equal(cs.thread_commits, cs.commits);
	} else {
		assert_int_equal(cs.thread_commits, 0);
	}
	fx_free(fx);
}

static void
test_chatter_acks_only_follow_the_commit_on_the_loop(void **state)
{
	(void)state;
	acks_follow_commits(false);
}

static void
test_chatter_acks_only_follow_the_commit_on_the_thread(void **state)
{
	(void)state;
	acks_follow_commits(true);
}

static void
failed_commit(bool threaded, faulty_when when)
{
	struct fx *fx = fx_new(threaded, 'f', 64);
	faulty_plan plan = {STORE_OP_BIT(STORE_OP_MSG_APPEND), 1, false,
	                    IM_EUNAVAIL, when};
	uint64_t d;
	size_t i;

	faulty_store_arm(fx->mid, &plan);
	for (d = 1; d <= 5; d++) {
		send_one(fx, d);
	}
	run_until_replies(fx, 5);
	for (i = 0; i < 5; i++) {
		assert_int_equal(fx->r.reps[i].code, ROLE_ERR_UNAVAILABLE);
	}
	assert_int_equal(fx->r.nok, 0);
	assert_int_equal(fx->r.ndelivered, 0);
	assert_int_equal(faulty_store_faults(fx->mid), 1);
	/* The client retries with the same dedup ids: stored once. */
	for (d = 1; d <= 5; d++) {
		send_one(fx, d);
	}
	run_until_replies(fx, 10);
	assert_int_equal(fx->r.nok, 5);
	assert_int_equal(fx->r.not_durable, 0);
	for (i = 5; i < 10; i++) {
		assert_int_equal(fx->r.reps[i].code, ROLE_OK);
		/* After a commit that did happen (AFTER), the retry finds
		 * the stored messages: duplicates, not new ones. */
		assert_int_equal(fx->r.reps[i].dup, when == FAULTY_AFTER);
	}
	assert_int_equal(fx->r.ndelivered, when == FAULTY_AFTER ? 0 : 5);
	fx_free(fx);
}

static void
test_chatter_a_failed_commit_acks_nothing_on_the_loop(void **state)
{
	(void)state;
	failed_commit(false, FAULTY_BEFORE);
	failed_commit(false, FAULTY_AFTER);
}

static void
test_chatter_a_failed_commit_acks_nothing_on_the_thread(void **state)
{
	(void)state;
	failed_commit(true, FAULTY_BEFORE);
	failed_commit(true, FAULTY_AFTER);
}

/* Queue n sends and run one loop turn: the prepare watcher hands them to
 * the thread, which stops at the gate. */
static void
commit_in_flight(struct fx *fx, uint64_t first, uint64_t n)
{
	uint64_t d;

	atomic_store(&fx->gate->armed, true);
	for (d = first; d < first + n; d++) {
		send_one(fx, d);
	}
	ev_run(fx->loop, EVRUN_NOWAIT);
	sem_wait(&fx->gate->entered);
	atomic_store(&fx->gate->armed, false);
	assert_int_equal(fx->r.nrep, 0);
}

static void
test_chatter_flush_waits_for_the_commit_in_flight(void **state)
{
	struct fx *fx = fx_new(true, 'g', 64);
	chatter_stats cs;

	(void)state;
	commit_in_flight(fx, 1, 3);
	/* More sends gather meanwhile; flush commits them too. */
	send_one(fx, 4);
	send_one(fx, 5);
	sem_post(&fx->gate->open);
	chatter_flush(fx->c);
	assert_int_equal(fx->r.nrep, 5);
	assert_int_equal(fx->r.nok, 5);
	assert_int_equal(fx->r.not_durable, 0);
	assert_int_equal(fx->r.ndelivered, 5);
	chatter_get_stats(fx->c, &cs);
	assert_int_equal(cs.commits, 2);
	assert_int_equal(cs.thread_commits, 2);
	fx_free(fx);
}

static void
test_chatter_drop_slot_waits_for_the_commit_in_flight(void **state)
{
	struct fx *fx = fx_new(true, 'g', 64);
	chatter_stats cs;

	(void)state;
	commit_in_flight(fx, 1, 4);
	sem_post(&fx->gate->open);
	chatter_drop_slot(fx->c, im_shard_slot_of(GID0, NSLOTS));
	/* Answered before the groups went: acked, delivered. */
	assert_int_equal(fx->r.nok, 4);
	assert_int_equal(fx->r.ndelivered, 4);
	chatter_get_stats(fx->c, &cs);
	assert_int_equal(cs.msgs, 4);
	chatter_drop_all(fx->c);
	chatter_get_stats(fx->c, &cs);
	assert_int_equal(cs.groups, 0);
	/* Reloaded on next use, seqs go on. */
	send_one(fx, 5);
	run_until_replies(fx, 5);
	assert_int_equal(fx->r.nok, 5);
	assert_int_equal(fx->r.deliv_order, 0);
	fx_free(fx);
}

struct opener {
	pthread_t t;
	struct gate_store *g;
};

static void *
open_later(void *arg)
{
	struct opener *o = arg;
	struct timespec ts = {0, 50 * 1000 * 1000};

	nanosleep(&ts, NULL);
	sem_post(&o->g->open);
	return NULL;
}

static void
test_chatter_destroy_waits_for_the_commit_in_flight_and_acks_nothing(
        void **state)
{
	struct fx *fx = fx_new(true, 'g', 64);
	struct opener o;
	im_msg m;

	(void)state;
	commit_in_flight(fx, 1, 3);
	send_one(fx, 4); /* gathering: dropped, never acked */
	o.g = fx->gate;
	assert_int_equal(pthread_create(&o.t, NULL, open_later, &o), 0);
	chatter_destroy(fx->c); /* blocks until the gate opens */
	fx->c = NULL;
	pthread_join(o.t, NULL);
	assert_int_equal(fx->r.nrep, 0);
	assert_int_equal(atomic_load(&fx->gate->appends), 1);
	/* The commit in flight finished: durable, though never acked. */
	assert_int_equal(im_store_msg_find_dedup(fx->ls, GID0 + 1,
	                                         sender_of(1), 1, &m),
	                 IM_OK);
	assert_int_equal(im_store_msg_find_dedup(fx->ls, GID0 + 4 % NGROUPS,
	                                         sender_of(4), 4, &m),
	                 IM_ENOTFOUND);
	fx_free(fx);
}

static void
test_chatter_a_full_batch_waits_for_the_one_in_flight(void **state)
{
	struct fx *fx = fx_new(true, 'g', 4);
	struct opener o;
	chatter_stats cs;
	uint64_t d;
	size_t i;

	(void)state;
	commit_in_flight(fx, 1, 4);
	/* Four more fill the gathering batch; the ninth must wait for the
	 * commit in flight (the gate opens 50 ms later), then the full
	 * batch goes in flight and the ninth starts the next one. */
	for (d = 5; d <= 8; d++) {
		send_one(fx, d);
	}
	assert_int_equal(fx->r.nrep, 0);
	o.g = fx->gate;
	assert_int_equal(pthread_create(&o.t, NULL, open_later, &o), 0);
	send_one(fx, 9);
	pthread_join(o.t, NULL);
	assert_int_equal(fx->r.nok, 4);
	chatter_flush(fx->c);
	assert_int_equal(fx->r.nok, 9);
	assert_int_equal(fx->r.not_durable, 0);
	/* Acks in the order of the sends. */
	for (i = 0; i < 9; i++) {
		assert_int_equal(fx->r.reps[i].dedup_id, i + 1);
	}
	chatter_get_stats(fx->c, &cs);
	assert_int_equal(cs.commits, 3);
	fx_free(fx);
}

static void
test_chatter_without_a_commit_store_commits_on_the_loop(void **state)
{
	struct fx *fx = fx_new(false, 'g', 64);
	chatter_opts co = CHATTER_OPTS_INIT;
	chatter *c2 = NULL;
	chatter_stats cs;

	(void)state;
	/* commit_thread (default) without a store: on the loop. */
	send_one(fx, 1);
	chatter_flush(fx->c);
	chatter_get_stats(fx->c, &cs);
	assert_int_equal(cs.commits, 1);
	assert_int_equal(cs.thread_commits, 0);
	/* The loop's own handle as the thread's: refused. */
	co.commit_store = fx->ls;
	assert_int_equal(chatter_create(&c2, fx->loop, fx->ls, fx->map, NODE,
	                                &fx->r.base, &co),
	                 IM_EINVAL);
	assert_null(c2);
	fx_free(fx);
}

/* A membership change or a group creation, answered through rec_reply. */
static void
other_op(struct fx *fx, role_op_kind kind, uint64_t tag, im_uid target)
{
	role_op op;

	memset(&op, 0, sizeof(op));
	op.kind = kind;
	op.route.tag = tag;
	op.route.req_id = tag;
	op.user = 1; /* a member and the creator of every fixture group */
	if (kind == ROLE_OP_CREATE_GROUP) {
		op.name = "full";
	} else {
		op.group = GID0;
		op.target = target;
	}
	chatter_submit(fx->c, &op, 1);
}

/* Past the store-full pause that runs now (it grows to at most
 * STORE_FULL_BACKOFF_MAX_MS): the next write tries the store. */
static void
sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&t, NULL);
}

/* The last n replies all carry code (and, if an error, a text). */
static void
assert_last_codes(const struct fx *fx, size_t n, int code)
{
	size_t i;

	for (i = fx->r.nrep - n; i < fx->r.nrep; i++) {
		assert_int_equal(fx->r.reps[i].code, code);
		if (code == ROLE_ERR_STORE_FULL) {
			assert_string_equal(fx->r.reps[i].text, "store full");
		}
	}
}

#define FULL_OPS                                                               \
	(STORE_OP_BIT(STORE_OP_MSG_APPEND) |                                   \
	 STORE_OP_BIT(STORE_OP_MEMBER_ADD) |                                   \
	 STORE_OP_BIT(STORE_OP_MEMBER_REMOVE) |                                \
	 STORE_OP_BIT(STORE_OP_MEMBER_ADD_FENCED) |                            \
	 STORE_OP_BIT(STORE_OP_MEMBER_REMOVE_FENCED) |                         \
	 STORE_OP_BIT(STORE_OP_GROUP_CREATE) |                                 \
	 STORE_OP_BIT(STORE_OP_GROUP_CREATE_MANY) |                            \
	 STORE_OP_BIT(STORE_OP_SEG_TAKE) |                                     \
	 STORE_OP_BIT(STORE_OP_SEG_TAKE_MANY))

/*
 * A full disk: every write fails IM_ENOSPC. Every request is answered
 * ERR_STORE_FULL "store full" (certain: nothing written), not
 * ERR_UNAVAILABLE (which sends a client into retries): a batch of sends,
 * an AddMember, a CreateGroup, and all of them again while the pause
 * runs; once space returns each is done again.
 */
static void
full_disk(bool threaded)
{
	struct fx *fx = fx_new(threaded, 'f', 64);
	faulty_plan plan = {FULL_OPS, 1, true, IM_ENOSPC, FAULTY_BEFORE};
	unsigned long faults;
	uint64_t d;

	/* The groups hot with seq segments, and the gid segment taken by a
	 * first creation: what follows writes only what it must. */
	for (d = 1; d <= NGROUPS; d++) {
		send_one(fx, d);
	}
	other_op(fx, ROLE_OP_CREATE_GROUP, 100, 0);
	run_until_replies(fx, NGROUPS + 1);
	assert_last_codes(fx, NGROUPS + 1, ROLE_OK);

	/* The first failure: no pause runs yet, the store is tried. */
	faulty_store_arm(fx->mid, &plan);
	other_op(fx, ROLE_OP_ADD_MEMBER, 101, 9);
	run_until_replies(fx, NGROUPS + 2);
	assert_last_codes(fx, 1, ROLE_ERR_STORE_FULL);
	assert_int_equal(faulty_store_faults(fx->mid), 1);
	/* Past its pause (50 ms): tried again, failed again. */
	sleep_ms(STORE_FULL_BACKOFF_MIN_MS + 20);
	other_op(fx, ROLE_OP_CREATE_GROUP, 102, 0);
	run_until_replies(fx, NGROUPS + 3);
	assert_last_codes(fx, 1, ROLE_ERR_STORE_FULL);
	assert_int_equal(faulty_store_faults(fx->mid), 2);
	/* Past the next (100 ms): a batch of sends, every one answered
	 * (one commit or more, on the thread, each failed or paused). */
	sleep_ms(2 * STORE_FULL_BACKOFF_MIN_MS + 20);
	faults = faulty_store_faults(fx->mid);
	for (d = 11; d <= 15; d++) {
		send_one(fx, d);
	}
	run_until_replies(fx, NGROUPS + 8);
	assert_last_codes(fx, 5, ROLE_ERR_STORE_FULL);
	assert_true(faulty_store_faults(fx->mid) > faults);
	assert_int_equal(fx->r.ndelivered, NGROUPS);
	/* Right after a failure (the pause, or the store if this machine
	 * was slow): the same answer. */
	send_one(fx, 16);
	other_op(fx, ROLE_OP_REMOVE_MEMBER, 103, 2);
	other_op(fx, ROLE_OP_CREATE_GROUP, 104, 0);
	run_until_replies(fx, NGROUPS + 11);
	assert_last_codes(fx, 3, ROLE_ERR_STORE_FULL);

	/* Space returns: within the longest pause, everything goes. */
	faulty_store_arm(fx->mid, NULL);
	sleep_ms(STORE_FULL_BACKOFF_MAX_MS + 20);
	send_one(fx, 17);
	other_op(fx, ROLE_OP_ADD_MEMBER, 105, 9);
	other_op(fx, ROLE_OP_CREATE_GROUP, 106, 0);
	run_until_replies(fx, NGROUPS + 14);
	assert_last_codes(fx, 3, ROLE_OK);
	assert_int_equal(fx->r.not_durable, 0);
	fx_free(fx);
}

static void
test_chatter_every_write_on_a_full_disk_is_store_full_on_the_loop(void **state)
{
	(void)state;
	full_disk(false);
}

static void
test_chatter_every_write_on_a_full_disk_is_store_full_on_the_thread(
        void **state)
{
	(void)state;
	full_disk(true);
}

/* A creation whose group id segment cannot be taken on a full disk is
 * refused as store full too, not "no group id in a slot served here". */
static void
test_chatter_a_create_without_a_gid_on_a_full_disk_is_store_full(void **state)
{
	struct fx *fx = fx_new(false, 'f', 64);
	faulty_plan plan = {STORE_OP_BIT(STORE_OP_SEG_TAKE) |
	                            STORE_OP_BIT(STORE_OP_SEG_TAKE_MANY),
	                    1, true, IM_ENOSPC, FAULTY_BEFORE};

	(void)state;
	faulty_store_arm(fx->mid, &plan);
	other_op(fx, ROLE_OP_CREATE_GROUP, 1, 0);
	run_until_replies(fx, 1);
	assert_last_codes(fx, 1, ROLE_ERR_STORE_FULL);
	assert_true(faulty_store_faults(fx->mid) > 0);
	fx_free(fx);
}

/* A keyed CreateGroup by creator `user` (route tag = tag). */
static void
create_keyed(struct fx *fx, uint64_t tag, im_uid user, uint64_t dedup_id)
{
	role_op op;

	memset(&op, 0, sizeof(op));
	op.kind = ROLE_OP_CREATE_GROUP;
	op.route.tag = tag;
	op.route.req_id = tag;
	op.user = user;
	op.dedup_id = dedup_id;
	op.name = "keyed";
	chatter_submit(fx->c, &op, 1);
}

static int
count_conv(const im_conv_row *row, void *payload)
{
	(void)row;
	(*(size_t *)payload)++;
	return 0;
}

/* Groups user is a member of, as the store says. */
static size_t
groups_of(struct fx *fx, im_uid user)
{
	size_t n = 0;

	assert_int_equal(im_store_conv_load(fx->ls, user, count_conv, &n),
	                 IM_OK);
	return n;
}

/*
 * A CreateGroup retried with its key (the answer was lost): the retry in a
 * later turn, and one in the same turn as the first try, both get the
 * first group back with dup set, and the store holds one group. Another
 * creator's same dedup id is its own group; an unkeyed create (old
 * clients) creates every time, as before.
 */
static void
test_chatter_a_keyed_create_sent_twice_makes_one_group(void **state)
{
	struct fx *fx = fx_new(false, 'f', 64);
	im_gid first;
	size_t i;

	(void)state;
	create_keyed(fx, 1, 50, 777);
	run_until_replies(fx, 1);
	assert_int_equal(fx->r.reps[0].code, ROLE_OK);
	assert_false(fx->r.reps[0].dup);
	assert_int_equal(fx->r.reps[0].dedup_id, 777);
	first = fx->r.reps[0].group;
	assert_true(first != 0);
	/* The retry, a turn later. */
	create_keyed(fx, 2, 50, 777);
	run_until_replies(fx, 2);
	assert_int_equal(fx->r.reps[1].code, ROLE_OK);
	assert_int_equal(fx->r.reps[1].group, first);
	assert_true(fx->r.reps[1].dup);
	/* A new key and its retry in the same turn. */
	create_keyed(fx, 3, 50, 778);
	create_keyed(fx, 4, 50, 778);
	run_until_replies(fx, 4);
	assert_int_equal(fx->r.reps[2].code, ROLE_OK);
	assert_false(fx->r.reps[2].dup);
	assert_int_equal(fx->r.reps[3].code, ROLE_OK);
	assert_int_equal(fx->r.reps[3].group, fx->r.reps[2].group);
	assert_true(fx->r.reps[3].dup);
	assert_true(fx->r.reps[2].group != first);
	assert_int_equal(groups_of(fx, 50), 2);
	/* Another creator, the same dedup id: its own group. */
	create_keyed(fx, 5, 51, 777);
	run_until_replies(fx, 5);
	assert_false(fx->r.reps[4].dup);
	assert_true(fx->r.reps[4].group != first);
	assert_int_equal(groups_of(fx, 51), 1);
	/* Unkeyed: a group per try. */
	create_keyed(fx, 6, 52, 0);
	create_keyed(fx, 7, 52, 0);
	run_until_replies(fx, 7);
	for (i = 5; i < 7; i++) {
		assert_int_equal(fx->r.reps[i].code, ROLE_OK);
		assert_false(fx->r.reps[i].dup);
	}
	assert_int_equal(groups_of(fx, 52), 2);
	assert_int_equal(groups_of(fx, 50), 2);
	fx_free(fx);
}

/* A keyed create on a full disk is store full like any write; once space
 * returns the retry with the same key creates the group once. */
static void
test_chatter_a_keyed_create_on_a_full_disk_is_store_full(void **state)
{
	struct fx *fx = fx_new(false, 'f', 64);
	faulty_plan plan = {STORE_OP_BIT(STORE_OP_GROUP_CREATE_DEDUP), 1, true,
	                    IM_ENOSPC, FAULTY_BEFORE};

	(void)state;
	create_keyed(fx, 1, 50, 1); /* the gid segment taken */
	run_until_replies(fx, 1);
	faulty_store_arm(fx->mid, &plan);
	create_keyed(fx, 2, 50, 2);
	run_until_replies(fx, 2);
	assert_last_codes(fx, 1, ROLE_ERR_STORE_FULL);
	assert_int_equal(faulty_store_faults(fx->mid), 1);
	faulty_store_arm(fx->mid, NULL);
	sleep_ms(STORE_FULL_BACKOFF_MAX_MS + 20);
	create_keyed(fx, 3, 50, 2);
	create_keyed(fx, 4, 50, 2);
	run_until_replies(fx, 4);
	assert_last_codes(fx, 2, ROLE_OK);
	assert_false(fx->r.reps[2].dup);
	assert_true(fx->r.reps[3].dup);
	assert_int_equal(groups_of(fx, 50), 2);
	fx_free(fx);
}

/* A store without keyed creation (ops version < 5: IM_ENOTSUP, nothing
 * written) still creates: unkeyed, as before keys existed, so a retry
 * makes a second group (logged once). */
static void
test_chatter_a_store_without_create_keys_creates_unkeyed(void **state)
{
	struct fx *fx = fx_new(false, 'f', 64);
	faulty_plan plan = {STORE_OP_BIT(STORE_OP_GROUP_CREATE_DEDUP), 1, true,
	                    IM_ENOTSUP, FAULTY_BEFORE};

	(void)state;
	faulty_store_arm(fx->mid, &plan);
	create_keyed(fx, 1, 50, 9);
	create_keyed(fx, 2, 50, 9);
	run_until_replies(fx, 2);
	assert_last_codes(fx, 2, ROLE_OK);
	assert_false(fx->r.reps[0].dup);
	assert_false(fx->r.reps[1].dup);
	assert_true(fx->r.reps[0].group != fx->r.reps[1].group);
	assert_int_equal(groups_of(fx, 50), 2);
	assert_true(faulty_store_faults(fx->mid) >= 1);
	fx_free(fx);
}

/* store_mux on its own. */
static void
test_store_mux_refuses_null_and_forwards_with_its_own_error(void **state)
{
	im_store_sqlite_opts so = IM_STORE_SQLITE_OPTS_INIT;
	im__store_mux *m = NULL;
	im_store *sq = NULL, *a = NULL, *b = NULL;
	im_group g;
	char err[128];

	(void)state;
	assert_int_equal(im__store_mux_create(NULL, NULL), IM_EINVAL);
	assert_int_equal(im__store_mux_create(&m, NULL), IM_EINVAL);
	assert_int_equal(im__store_mux_handle(NULL, &a), IM_EINVAL);
	assert_int_equal(im__store_mux_calls(NULL), 0);
	im__store_mux_destroy(NULL);
	assert_int_equal(im_store_sqlite_open(&sq, ":memory:", &so, err,
	                                      sizeof(err)),
	                 IM_OK);
	assert_int_equal(im__store_mux_create(&m, sq), IM_OK);
	assert_int_equal(im__store_mux_handle(m, NULL), IM_EINVAL);
	assert_int_equal(im__store_mux_handle(m, &a), IM_OK);
	assert_int_equal(im__store_mux_handle(m, &b), IM_OK);
	assert_string_equal(im_store_name(a), im_store_name(sq));
	memset(&g, 0, sizeof(g));
	g.gid = 7;
	g.creator = 1;
	assert_int_equal(im_store_group_create(a, &g), IM_OK);
	assert_int_equal(im_store_group_lookup(b, 7, &g), IM_OK);
	assert_int_equal(im_store_group_lookup(a, 8, &g), IM_ENOTFOUND);
	assert_int_equal(im_store_group_create(a, &g), IM_ECONFLICT);
	/* The error is a's; b's message is untouched by it. */
	assert_true(strlen(im_store_errmsg(a)) > 0);
	assert_string_equal(im_store_errmsg(b), "");
	assert_int_equal(im__store_mux_calls(m), 4);
	/* The newest ops too (an op the mux lacked would be IM_ENOTSUP and
	 * send callers to an unfenced fallback). */
	{
		im_seq last = 7;
		im_seg_key key = {IM_SEG_GROUP_SEQ, 7};
		im_seg seg;

		assert_int_equal(im_store_uq_last(a, 1, &last), IM_OK);
		assert_int_equal(last, 0);
		assert_int_equal(im_store_seg_take_many(b, &key, 1, 10, &seg),
		                 IM_OK);
	}
	im_store_close(a);
	im_store_close(b);
	im__store_mux_destroy(m);
	im_store_close(sq);
}

struct hammer {
	pthread_t t;
	im_store *h;
	im_gid gid;
	int failures;
};

static void *
hammer_main(void *arg)
{
	struct hammer *hm = arg;
	uint64_t i;

	for (i = 1; i <= 200; i++) {
		im_group g;

		if (im_store_member_add(hm->h, hm->gid, i, NULL) != IM_OK ||
		    im_store_group_lookup(hm->h, hm->gid, &g) != IM_OK) {
			hm->failures++;
		}
	}
	return NULL;
}

static int
count_cb(im_uid user, void *payload)
{
	(void)user;
	(*(unsigned long *)payload)++;
	return IM_OK;
}

static void
test_store_mux_serializes_two_threads_on_one_connection(void **state)
{
	im_store_sqlite_opts so = IM_STORE_SQLITE_OPTS_INIT;
	im__store_mux *m = NULL;
	im_store *sq = NULL;
	struct hammer hm[2];
	char err[128];
	int i;

	(void)state;
	so.sync = IM_SQLITE_SYNC_NORMAL;
	so.exclusive = true;
	assert_int_equal(im_store_sqlite_open(&sq, ":memory:", &so, err,
	                                      sizeof(err)),
	                 IM_OK);
	assert_int_equal(im__store_mux_create(&m, sq), IM_OK);
	for (i = 0; i < 2; i++) {
		im_group g;

		memset(&g, 0, sizeof(g));
		g.gid = 100 + (im_gid)i;
		g.creator = 1;
		assert_int_equal(im__store_mux_handle(m, &hm[i].h), IM_OK);
		assert_int_equal(im_store_group_create(hm[i].h, &g), IM_OK);
		hm[i].gid = g.gid;
		hm[i].failures = 0;
	}
	for (i = 0; i < 2; i++) {
		assert_int_equal(
		        pthread_create(&hm[i].t, NULL, hammer_main, &hm[i]), 0);
	}
	for (i = 0; i < 2; i++) {
		pthread_join(hm[i].t, NULL);
		assert_int_equal(hm[i].failures, 0);
	}
	for (i = 0; i < 2; i++) {
		unsigned long n = 0;

		assert_int_equal(im_store_member_list(hm[i].h, hm[i].gid,
		                                      count_cb, &n),
		                 IM_OK);
		assert_int_equal(n, 200);
	}
	assert_int_equal(im__store_mux_calls(m), 2 + 2 * 400 + 2);
	for (i = 0; i < 2; i++) {
		im_store_close(hm[i].h);
	}
	im__store_mux_destroy(m);
	im_store_close(sq);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(
	                test_chatter_acks_only_follow_the_commit_on_the_loop),
	        cmocka_unit_test(
	                test_chatter_acks_only_follow_the_commit_on_the_thread),
	        cmocka_unit_test(
	                test_chatter_a_failed_commit_acks_nothing_on_the_loop),
	        cmocka_unit_test(
	                test_chatter_a_failed_commit_acks_nothing_on_the_thread),
	        cmocka_unit_test(
	                test_chatter_flush_waits_for_the_commit_in_flight),
	        cmocka_unit_test(
	                test_chatter_drop_slot_waits_for_the_commit_in_flight),
	        cmocka_unit_test(
	                test_chatter_destroy_waits_for_the_commit_in_flight_and_acks_nothing),
	        cmocka_unit_test(
	                test_chatter_a_full_batch_waits_for_the_one_in_flight),
	        cmocka_unit_test(
	                test_chatter_without_a_commit_store_commits_on_the_loop),
	        cmocka_unit_test(
	                test_chatter_every_write_on_a_full_disk_is_store_full_on_the_loop),
	        cmocka_unit_test(
	                test_chatter_every_write_on_a_full_disk_is_store_full_on_the_thread),
	        cmocka_unit_test(
	                test_chatter_a_create_without_a_gid_on_a_full_disk_is_store_full),
	        cmocka_unit_test(
	                test_chatter_a_keyed_create_sent_twice_makes_one_group),
	        cmocka_unit_test(
	                test_chatter_a_keyed_create_on_a_full_disk_is_store_full),
	        cmocka_unit_test(
	                test_chatter_a_store_without_create_keys_creates_unkeyed),
	        cmocka_unit_test(
	                test_store_mux_refuses_null_and_forwards_with_its_own_error),
	        cmocka_unit_test(
	                test_store_mux_serializes_two_threads_on_one_connection),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
