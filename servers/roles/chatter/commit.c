/*
 * The group commit pipeline: when the gathered sends are built, committed
 * (on the loop, or handed to the commit thread and taken back through an
 * ev_async), applied and answered. Separate from the batch contents
 * (batch.c) because this is the only file that knows about the thread,
 * its mutex and the two batch buffers taking turns.
 */
#include "chatter_priv.h"

/* Test builds only (meson option test_hooks): a test may hold a batch's
 * commit right before its append (test_hold.c). Otherwise the commit. */
#ifdef IM_TEST_HOOKS
#define RUN_COMMIT(c, b, st, pf)                                               \
	chatter__test_run_commit(&(c)->hold, (c)->node, (b), (st), (pf))
#else
#define RUN_COMMIT(c, b, st, pf) chatter__run_commit((b), (st), (pf))
#endif

/* Without the commit thread: everything on the loop, as one step. */
static void
flush_sync(chatter *c)
{
	struct batch *b = c->gather;
	size_t nfans;

	chatter__commit_creates(c);
	if (b == NULL || b->npend == 0) {
		return;
	}
	chatter__build_batch(c, b);
	if (b->nmsgs > 0) {
		RUN_COMMIT(c, b, c->st, false);
	}
	nfans = chatter__apply_batch(c, b);
	chatter__answer_batch(c, b, nfans);
	/* The prefetch after the acks, off their path. */
	if (b->ntouched > 0 && b->rc == IM_OK) {
		chatter__prefetch_now(c, b);
	}
	(void)im_dedup_expire(c->dedup, role_now_ms(), 64);
}

static void *
commit_main(void *arg)
{
	chatter *c = arg;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		struct batch *b;

		while (c->job == NULL && !c->quit) {
			pthread_cond_wait(&c->job_cv, &c->mu);
		}
		if (c->job == NULL) {
			break;
		}
		b = c->job;
		pthread_mutex_unlock(&c->mu);
		RUN_COMMIT(c, b, c->cst, true);
		pthread_mutex_lock(&c->mu);
		c->job = NULL;
		c->job_done = true;
		pthread_cond_broadcast(&c->done_cv);
		/* Under the lock: once destroy has seen job_done and set
		 * quit, no wake-up of the loop is left to come. */
		ev_async_send(c->loop, &c->done_w);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/*
 * Build the gathered batch and hand it to the thread (nothing in flight).
 * A batch without a message to store (all errors or known duplicates) is
 * answered at once.
 */
static void
start_commit(chatter *c)
{
	struct batch *b = c->gather;

	if (b == NULL || b->npend == 0 || c->inflight != NULL) {
		return;
	}
	chatter__build_batch(c, b);
	if (b->nmsgs == 0) {
		chatter__answer_batch(c, b, 0);
		return;
	}
	b->prefetch = chatter__prefetch_pick(b);
	c->inflight = b;
	c->gather = b == &c->bufs[0] ? &c->bufs[1] : &c->bufs[0];
	pthread_mutex_lock(&c->mu);
	c->job = b;
	c->job_done = false;
	pthread_cond_signal(&c->job_cv);
	pthread_mutex_unlock(&c->mu);
}

static bool
inflight_done(chatter *c)
{
	bool done;

	pthread_mutex_lock(&c->mu);
	done = c->job_done;
	pthread_mutex_unlock(&c->mu);
	return done;
}

static void
wait_inflight(chatter *c)
{
	pthread_mutex_lock(&c->mu);
	if (!c->job_done) {
		c->stats.waits++;
	}
	while (!c->job_done) {
		pthread_cond_wait(&c->done_cv, &c->mu);
	}
	pthread_mutex_unlock(&c->mu);
}

/*
 * The batch in flight is committed (job_done seen): apply it, hand the
 * gathered batch to the thread (start_next), then answer the finished
 * one while the next is written. The finished batch's groups stay pinned
 * until its fan-out is out (the next build must not evict them).
 */
static void
complete_inflight(chatter *c, bool start_next)
{
	struct batch *b = c->inflight;
	size_t nfans;

	c->inflight = NULL;
	c->stats.thread_commits++;
	nfans = chatter__apply_batch(c, b);
	c->pin_gen = b->gen;
	if (start_next) {
		/* The thread is idle now: the turn's creations (their own
		 * transaction on the loop) go first, or a busy pipeline
		 * would never leave them a gap. */
		chatter__commit_creates(c);
		start_commit(c);
	}
	if (c->gather == b) {
		/* The gathered batch went in flight: b gathers next, once
		 * answered (nothing may be gathered while it is). */
		c->gather = NULL;
		chatter__answer_batch(c, b, nfans);
		c->gather = b;
	} else {
		chatter__answer_batch(c, b, nfans);
	}
	c->pin_gen = UINT64_MAX;
	(void)im_dedup_expire(c->dedup, role_now_ms(), 64);
}

/* Wait for the batch in flight and answer it, starting nothing new. */
void
chatter__settle(chatter *c)
{
	if (c->threaded && c->inflight != NULL) {
		wait_inflight(c);
		complete_inflight(c, false);
	}
}

void
chatter_flush(chatter *c)
{
	if (!c->threaded) {
		flush_sync(c);
		return;
	}
	/* Bounded: every pass answers a batch or hands one over. */
	while (c->inflight != NULL ||
	       (c->gather != NULL && c->gather->npend > 0)) {
		if (c->inflight == NULL) {
			start_commit(c);
		} else {
			wait_inflight(c);
			complete_inflight(c, true);
		}
	}
	chatter__commit_creates(c);
}

static void
commit_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	chatter *c = w->data;

	(void)loop;
	(void)revents;
	if (!c->threaded) {
		flush_sync(c);
	} else if (c->inflight == NULL) {
		chatter__commit_creates(c);
		start_commit(c);
	}
}

static void
done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	chatter *c = w->data;

	(void)loop;
	(void)revents;
	/* A flush may have answered it already. */
	if (c->inflight != NULL && inflight_done(c)) {
		complete_inflight(c, true);
	}
}

/* The mutex, conditions, wake-up watcher and the thread itself. */
static int
thread_start(chatter *c)
{
	if (pthread_mutex_init(&c->mu, NULL) != 0) {
		return IM_ENOMEM;
	}
	if (pthread_cond_init(&c->job_cv, NULL) != 0) {
		pthread_mutex_destroy(&c->mu);
		return IM_ENOMEM;
	}
	if (pthread_cond_init(&c->done_cv, NULL) != 0) {
		pthread_cond_destroy(&c->job_cv);
		pthread_mutex_destroy(&c->mu);
		return IM_ENOMEM;
	}
	ev_async_init(&c->done_w, done_cb);
	c->done_w.data = c;
	ev_set_priority(&c->done_w, EV_MAXPRI);
	ev_async_start(c->loop, &c->done_w);
	if (pthread_create(&c->thread, NULL, commit_main, c) != 0) {
		ev_async_stop(c->loop, &c->done_w);
		pthread_cond_destroy(&c->done_cv);
		pthread_cond_destroy(&c->job_cv);
		pthread_mutex_destroy(&c->mu);
		return IM_ENOMEM;
	}
	c->thread_started = true;
	return IM_OK;
}

static void
thread_stop(chatter *c)
{
	if (!c->thread_started) {
		return;
	}
	/* A commit cannot be taken back: let it finish (it is durable),
	 * but answer nobody, the router may be gone already. */
	if (c->inflight != NULL) {
		wait_inflight(c);
		c->inflight = NULL;
	}
	pthread_mutex_lock(&c->mu);
	c->quit = true;
	pthread_cond_signal(&c->job_cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	ev_async_stop(c->loop, &c->done_w);
	pthread_cond_destroy(&c->done_cv);
	pthread_cond_destroy(&c->job_cv);
	pthread_mutex_destroy(&c->mu);
	c->thread_started = false;
}

void
chatter__make_room(chatter *c)
{
	if (!c->threaded) {
		flush_sync(c);
	} else if (c->inflight != NULL) {
		wait_inflight(c);
		complete_inflight(c, true);
	} else {
		start_commit(c);
	}
}

int
chatter__pipeline_start(chatter *c)
{
	int rc;

	if (c->threaded && (rc = thread_start(c)) != IM_OK) {
		return rc;
	}
	ev_prepare_init(&c->commit_w, commit_cb);
	c->commit_w.data = c;
	/* Commit before the Connector flushes its writes in the same turn
	 * (its prepare watcher runs at the lowest priority). */
	ev_set_priority(&c->commit_w, EV_MAXPRI);
	ev_prepare_start(c->loop, &c->commit_w);
	return IM_OK;
}

void
chatter__pipeline_stop(chatter *c)
{
	thread_stop(c);
	if (ev_is_active(&c->commit_w)) {
		ev_prepare_stop(c->loop, &c->commit_w);
	}
}
