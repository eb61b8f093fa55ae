/*
 * The PostgreSQL backend under concurrency: several processes, each with
 * its own connection, against the real server named by IM_TEST_PG.
 *
 * Children never call cmocka: they report through a shared mapping and
 * their exit status, and the parent asserts. Every child arms alarm() so a
 * hang fails the test instead of blocking the run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "im/store.h"
#include "pg_fixture.h"
#include "test_rng.h"

#define CHILD_ALARM_S 60
#define MAX_PROCS 16

static uint64_t seed;

/* Memory shared with the children, with a process-shared barrier. */
struct shared {
	pthread_barrier_t barrier;
	int nprocs;
	char failure[MAX_PROCS][256];
	_Alignas(16) unsigned char data[]; /* test specific */
};

static struct shared *
shared_map(int nprocs, size_t data_size)
{
	pthread_barrierattr_t attr;
	struct shared *sh;
	size_t len = sizeof(*sh) + data_size;

	sh = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	          -1, 0);
	assert_true(sh != MAP_FAILED);
	memset(sh, 0, len);
	sh->nprocs = nprocs;
	assert_int_equal(pthread_barrierattr_init(&attr), 0);
	assert_int_equal(
	        pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED),
	        0);
	assert_int_equal(
	        pthread_barrier_init(&sh->barrier, &attr, (unsigned)nprocs), 0);
	pthread_barrierattr_destroy(&attr);
	return sh;
}

static void
shared_unmap(struct shared *sh, size_t data_size)
{
	pthread_barrier_destroy(&sh->barrier);
	munmap(sh, sizeof(*sh) + data_size);
}

static void
child_fail(struct shared *sh, int id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sh->failure[id], sizeof(sh->failure[id]), fmt, ap);
	va_end(ap);
	_exit(1);
}

typedef void (*child_fn)(struct shared *sh, int id, const pg_fixture *fx);

/* Fork nprocs children running fn, wait for all, fail on any failure. */
static void
run_children(struct shared *sh, int nprocs, const pg_fixture *fx, child_fn fn)
{
	pid_t pids[MAX_PROCS];
	int i, failed = 0;

	assert_true(nprocs <= MAX_PROCS);
	fflush(NULL);
	for (i = 0; i < nprocs; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			alarm(CHILD_ALARM_S);
			fn(sh, i, fx);
			_exit(0);
		}
	}
	for (i = 0; i < nprocs; i++) {
		int status;

		while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR) {
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "# child %d failed (status %d): %s\n",
			        i, status, sh->failure[i]);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

static im_store *
child_open(struct shared *sh, int id, const pg_fixture *fx)
{
	char ci[PG_FIXTURE_CONNINFO_MAX + 64], err[256];
	im_store *st;
	int rc;

	pg_fixture_conninfo(fx, "application_name=im-child", ci, sizeof(ci));
	rc = im_store_pg_open(&st, ci, NULL, err, sizeof(err));
	if (rc != IM_OK) {
		child_fail(sh, id, "open: %d %s", rc, err);
	}
	return st;
}

static int
setup(void **state)
{
	pg_fixture *fx = calloc(1, sizeof(*fx));

	if (fx == NULL) {
		return -1;
	}
	if (pg_fixture_create(fx) != 0) {
		fprintf(stderr, "# %s\n", pg_fixture_error());
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	pg_fixture *fx = *state;

	pg_fixture_drop(fx);
	free(fx);
	return 0;
}

/* A store on the fixture, migrated, for the parent. */
static im_store *
parent_open(const pg_fixture *fx)
{
	char err[256];
	im_store *st = NULL;
	int rc = im_store_pg_open(&st, fx->conninfo, NULL, err, sizeof(err));

	if (rc != IM_OK) {
		fail_msg("open: %d %s", rc, err);
	}
	return st;
}

/* ---- (1) segments ---------------------------------------------------- */

#define SEG_PROCS 8
#define SEG_TAKES 150

struct seg_data {
	im_seg segs[SEG_PROCS][SEG_TAKES];
	uint32_t steps[SEG_PROCS][SEG_TAKES];
};

static void
seg_child(struct shared *sh, int id, const pg_fixture *fx)
{
	struct seg_data *d = (struct seg_data *)(void *)sh->data;
	im_seg_key key = {IM_SEG_GROUP_SEQ, 4242};
	im_store *st = child_open(sh, id, fx);
	test_rng rng = {seed ^ (uint64_t)(id + 1) * 0x9e3779b97f4a7c15ULL};
	int i, rc;

	pthread_barrier_wait(&sh->barrier);
	for (i = 0; i < SEG_TAKES; i++) {
		uint32_t step = 1 + (uint32_t)test_rng_below(&rng, 64);

		rc = im_store_seg_take(st, &key, step, &d->segs[id][i]);
		if (rc != IM_OK) {
			child_fail(sh, id, "seg_take: %d %s", rc,
			           im_store_errmsg(st));
		}
		d->steps[id][i] = step;
	}
	im_store_close(st);
}

static int
seg_cmp(const void *a, const void *b)
{
	const im_seg *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

static void
test_pg_concurrent_segment_takers_never_overlap(void **state)
{
	const pg_fixture *fx = *state;
	struct shared *sh = shared_map(SEG_PROCS, sizeof(struct seg_data));
	struct seg_data *d = (struct seg_data *)(void *)sh->data;
	im_seg *all = calloc(SEG_PROCS * SEG_TAKES, sizeof(*all));
	uint64_t total = 0;
	size_t i, n = 0;
	int p, t;

	im_store_close(parent_open(fx)); /* migrate once, before the race */
	run_children(sh, SEG_PROCS, fx, seg_child);
	assert_non_null(all);
	for (p = 0; p < SEG_PROCS; p++) {
		for (t = 0; t < SEG_TAKES; t++) {
			im_seg s = d->segs[p][t];

			assert_int_equal(s.last - s.first + 1, d->steps[p][t]);
			total += d->steps[p][t];
			all[n++] = s;
		}
	}
	qsort(all, n, sizeof(*all), seg_cmp);
	/* Disjoint and, as nobody else takes from this key, gapless. */
	assert_int_equal(all[0].first, 1);
	for (i = 1; i < n; i++) {
		assert_int_equal(all[i].first, all[i - 1].last + 1);
	}
	assert_int_equal(all[n - 1].last, total);
	free(all);
	shared_unmap(sh, sizeof(struct seg_data));
}

/* ---- (2) slot CAS ---------------------------------------------------- */

#define CAS_PROCS 6
#define CAS_EPOCHS 60

struct cas_data {
	/* wins[e] = 1 + id of the process that moved the slot to epoch e */
	int wins[CAS_EPOCHS + 1][CAS_PROCS];
};

static void
cas_child(struct shared *sh, int id, const pg_fixture *fx)
{
	struct cas_data *d = (struct cas_data *)(void *)sh->data;
	im_store *st = child_open(sh, id, fx);
	char owner[32];
	im_epoch e, got;
	int rc;

	snprintf(owner, sizeof(owner), "node-%d", id);
	pthread_barrier_wait(&sh->barrier);
	for (e = 0; e < CAS_EPOCHS; e++) {
		got = 0;
		rc = im_store_slot_cas(st, IM_KIND_GROUP, 77, e, owner, &got);
		if (rc == IM_OK) {
			if (got != e + 1) {
				child_fail(sh, id, "won %llu, got %llu",
				           (unsigned long long)e,
				           (unsigned long long)got);
			}
			d->wins[e + 1][id] = 1;
		} else if (rc == IM_ECONFLICT) {
			/* Losing means someone moved the slot past e. */
			if (got <= e) {
				child_fail(sh, id, "lost %llu, epoch %llu",
				           (unsigned long long)e,
				           (unsigned long long)got);
			}
		} else {
			child_fail(sh, id, "cas: %d %s", rc,
			           im_store_errmsg(st));
		}
	}
	im_store_close(st);
}

struct slot_seen {
	im_epoch epoch;
	char owner[IM_OWNER_MAX + 1];
	int rows;
};

static int
slot_seen_cb(const im_slot_row *row, void *payload)
{
	struct slot_seen *s = payload;

	if (row->slot == 77) {
		s->epoch = row->epoch;
		snprintf(s->owner, sizeof(s->owner), "%s", row->owner);
		s->rows++;
	}
	return 0;
}

static void
test_pg_racing_slot_cas_has_exactly_one_winner_per_epoch(void **state)
{
	const pg_fixture *fx = *state;
	struct shared *sh = shared_map(CAS_PROCS, sizeof(struct cas_data));
	struct cas_data *d = (struct cas_data *)(void *)sh->data;
	struct slot_seen seen = {0};
	char owner[32];
	im_store *st;
	int e, p, last = -1;

	im_store_close(parent_open(fx));
	run_children(sh, CAS_PROCS, fx, cas_child);
	for (e = 1; e <= CAS_EPOCHS; e++) {
		int winners = 0;

		for (p = 0; p < CAS_PROCS; p++) {
			if (d->wins[e][p]) {
				winners++;
				last = p;
			}
		}
		assert_int_equal(winners, 1);
	}
	st = parent_open(fx);
	assert_int_equal(
	        im_store_slot_load(st, IM_KIND_GROUP, slot_seen_cb, &seen),
	        IM_OK);
	assert_int_equal(seen.rows, 1);
	assert_int_equal(seen.epoch, CAS_EPOCHS);
	snprintf(owner, sizeof(owner), "node-%d", last);
	assert_string_equal(seen.owner, owner);
	im_store_close(st);
	shared_unmap(sh, sizeof(struct cas_data));
}

/* ---- (2b) slot_cas_many: all or nothing under a race ------------------ */

#define MANY_SLOTS 8
#define MANY_EPOCHS 20

static void
cas_many_child(struct shared *sh, int id, const pg_fixture *fx)
{
	struct cas_data *d = (struct cas_data *)(void *)sh->data;
	im_store *st = child_open(sh, id, fx);
	uint32_t slots[MANY_SLOTS];
	im_epoch expect[MANY_SLOTS], got[MANY_SLOTS];
	char owner[32];
	im_epoch e;
	int rc, i, tries;

	snprintf(owner, sizeof(owner), "node-%d", id);
	for (i = 0; i < MANY_SLOTS; i++) {
		slots[i] = 100 + (uint32_t)i;
	}
	pthread_barrier_wait(&sh->barrier);
	for (e = 0; e < MANY_EPOCHS; e++) {
		for (tries = 0; tries < 10; tries++) {
			for (i = 0; i < MANY_SLOTS; i++) {
				expect[i] = e;
				got[i] = 0;
			}
			rc = im_store_slot_cas_many(st, IM_KIND_GROUP, slots,
			                            expect, MANY_SLOTS, owner,
			                            got);
			if (rc == IM_OK) {
				for (i = 0; i < MANY_SLOTS; i++) {
					if (got[i] != e + 1) {
						child_fail(sh, id, "won %llu, "
						           "got %llu",
						           (unsigned long long)e,
						           (unsigned long long)
						                   got[i]);
					}
				}
				d->wins[e + 1][id] = 1;
				break;
			}
			if (rc != IM_ECONFLICT) {
				child_fail(sh, id, "cas_many: %d %s", rc,
				           im_store_errmsg(st));
				break;
			}
			/* Lost: every slot moved together past e (or a
			 * deadlock victim: all still at e, try again). */
			for (i = 1; i < MANY_SLOTS; i++) {
				if ((got[i] > e) != (got[0] > e)) {
					child_fail(sh, id, "lost %llu with "
					           "slots at %llu and %llu",
					           (unsigned long long)e,
					           (unsigned long long)got[0],
					           (unsigned long long)got[i]);
				}
			}
			if (got[0] > e) {
				break;
			}
		}
	}
	im_store_close(st);
}

struct many_seen {
	im_epoch epoch[MANY_SLOTS];
	char owner[MANY_SLOTS][IM_OWNER_MAX + 1];
};

static int
many_seen_cb(const im_slot_row *row, void *payload)
{
	struct many_seen *s = payload;

	if (row->slot >= 100 && row->slot < 100 + MANY_SLOTS) {
		s->epoch[row->slot - 100] = row->epoch;
		snprintf(s->owner[row->slot - 100], sizeof(s->owner[0]), "%s",
		         row->owner);
	}
	return 0;
}

/*
 * Processes race to move the same 8 slots with slot_cas_many, epoch by
 * epoch (the first round claims them unowned): each epoch has exactly one
 * winner, a loser never sees the slots half moved, and at the end every
 * slot is at the last epoch with the last winner as owner.
 */
static void
test_pg_racing_slot_cas_many_moves_all_slots_or_none(void **state)
{
	const pg_fixture *fx = *state;
	struct shared *sh = shared_map(CAS_PROCS, sizeof(struct cas_data));
	struct cas_data *d = (struct cas_data *)(void *)sh->data;
	struct many_seen *seen = calloc(1, sizeof(*seen));
	char owner[32];
	im_store *st;
	int e, p, i, last = -1;

	assert_non_null(seen);
	im_store_close(parent_open(fx));
	run_children(sh, CAS_PROCS, fx, cas_many_child);
	for (e = 1; e <= MANY_EPOCHS; e++) {
		int winners = 0;

		for (p = 0; p < CAS_PROCS; p++) {
			if (d->wins[e][p]) {
				winners++;
				last = p;
			}
		}
		assert_int_equal(winners, 1);
	}
	st = parent_open(fx);
	assert_int_equal(
	        im_store_slot_load(st, IM_KIND_GROUP, many_seen_cb, seen),
	        IM_OK);
	snprintf(owner, sizeof(owner), "node-%d", last);
	for (i = 0; i < MANY_SLOTS; i++) {
		assert_int_equal(seen->epoch[i], MANY_EPOCHS);
		assert_string_equal(seen->owner[i], owner);
	}
	im_store_close(st);
	free(seen);
	shared_unmap(sh, sizeof(struct cas_data));
}

/* ---- (3) stale epoch ------------------------------------------------- */

struct stale_data {
	int slow; /* send an in-batch duplicate: the dedup/rechain statement */
	int rc;
	char errmsg[256];
};

static const im_fence stale_fence = {IM_KIND_GROUP, 9, 1};

static void
stale_child(struct shared *sh, int id, const pg_fixture *fx)
{
	struct stale_data *d = (struct stale_data *)(void *)sh->data;
	char ci[PG_FIXTURE_CONNINFO_MAX + 64], err[256];
	im_msg m = {.conv = 500,
	            .seq = 1,
	            .ordinal = 1,
	            .sender = 3,
	            .dedup_id = 1,
	            .time_ms = 1,
	            .body = "zombie",
	            .body_len = 6};
	im_msg batch[2];
	im_append_result res[2];
	im_store *st;
	int rc;

	batch[0] = m;
	batch[1] = m;
	batch[1].seq = 2;
	batch[1].prev_seq = 1;
	batch[1].ordinal = 2;
	pg_fixture_conninfo(fx, "application_name=im-stale-writer", ci,
	                    sizeof(ci));
	rc = im_store_pg_open(&st, ci, NULL, err, sizeof(err));
	if (rc != IM_OK) {
		child_fail(sh, id, "open: %d %s", rc, err);
	}
	/* Blocks on the slot row until the parent's CAS commits. */
	d->rc = im_store_msg_append(st, &stale_fence, 1, batch, d->slow ? 2 : 1,
	                            res);
	snprintf(d->errmsg, sizeof(d->errmsg), "%s", im_store_errmsg(st));
	im_store_close(st);
}

static void
exec_ok(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	ExecStatusType es = PQresultStatus(res);

	if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
		fail_msg("%s: %s", sql, PQresultErrorMessage(res));
	}
	PQclear(res);
}

static int
count_msgs(const im_msg *m, void *payload)
{
	(void)m;
	(*(int *)payload)++;
	return 0;
}

/* Wait (bounded) until a backend of application_name waits on a lock. */
static void
wait_blocked(PGconn *mon, const char *appname)
{
	char sql[256];
	int i;

	snprintf(sql, sizeof(sql),
	         "SELECT 1 FROM pg_stat_activity WHERE application_name = '%s'"
	         " AND wait_event_type = 'Lock'",
	         appname);
	for (i = 0; i < 1000; i++) {
		PGresult *res = PQexec(mon, sql);
		int n = PQntuples(res);

		PQclear(res);
		if (n > 0) {
			return;
		}
		usleep(10000);
	}
	fail_msg("%s never blocked on the slot row", appname);
}

static void
stale_case(const pg_fixture *fx, bool slow)
{
	struct shared *sh = shared_map(1, sizeof(struct stale_data));
	struct stale_data *d = (struct stale_data *)(void *)sh->data;
	im_epoch e;
	im_store *st = parent_open(fx);
	PGconn *cas, *mon;
	pid_t pid;
	int status, n = 0;

	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 9, 0, "old", &e),
	                 IM_OK);
	assert_int_equal(e, 1);
	cas = pg_fixture_connect(fx);
	mon = pg_fixture_connect(fx);
	if (cas == NULL || mon == NULL) {
		fail_msg("%s", pg_fixture_error());
	}
	d->slow = slow;
	/* The new owner's CAS, as im_store_slot_cas runs it, left open. */
	exec_ok(cas, "BEGIN");
	exec_ok(cas, "UPDATE im_slots SET owner = 'new', epoch = 2"
	             " WHERE kind = 1 AND slot = 9 AND epoch = 1");
	/* The zombie's append starts while the old epoch is committed. */
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(CHILD_ALARM_S);
		stale_child(sh, 0, fx);
		_exit(0);
	}
	wait_blocked(mon, "im-stale-writer");
	exec_ok(cas, "COMMIT");
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(d->rc, IM_ESTALE);
	assert_non_null(strstr(d->errmsg, "9"));
	assert_int_equal(
	        im_store_msg_read(st, 500, 0, IM_SEQ_MAX, 0, count_msgs, &n),
	        IM_OK);
	assert_int_equal(n, 0);
	PQfinish(cas);
	PQfinish(mon);
	im_store_close(st);
	shared_unmap(sh, sizeof(struct stale_data));
}

static void
test_pg_stale_writer_cannot_append_after_a_cas_it_started_before(void **state)
{
	stale_case(*state, false);
}

/* The same through the statement that handles duplicates. */
static void
test_pg_stale_writer_with_duplicates_cannot_append_either(void **state)
{
	stale_case(*state, true);
}

/*
 * The plain order: an append committed before the CAS stays, the same
 * writer after the CAS is fenced off.
 */
static void
test_pg_append_before_a_cas_is_kept_and_one_after_it_is_stale(void **state)
{
	const pg_fixture *fx = *state;
	im_store *st = parent_open(fx);
	im_msg m = {.conv = 501,
	            .seq = 1,
	            .ordinal = 1,
	            .sender = 3,
	            .dedup_id = 1,
	            .time_ms = 1,
	            .body = "x",
	            .body_len = 1};
	im_fence f = {IM_KIND_GROUP, 10, 1};
	im_append_result res;
	im_epoch e;
	int n = 0;

	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 10, 0, "a", &e),
	                 IM_OK);
	assert_int_equal(im_store_msg_append(st, &f, 1, &m, 1, &res), IM_OK);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 10, 1, "b", &e),
	                 IM_OK);
	m.seq = 2;
	m.prev_seq = 1;
	m.ordinal = 2;
	m.dedup_id = 2;
	assert_int_equal(im_store_msg_append(st, &f, 1, &m, 1, &res),
	                 IM_ESTALE);
	assert_int_equal(
	        im_store_msg_read(st, 501, 0, IM_SEQ_MAX, 0, count_msgs, &n),
	        IM_OK);
	assert_int_equal(n, 1);
	im_store_close(st);
}

/* ---- (4) concurrent dedup -------------------------------------------- */

#define DUP_PROCS 4
#define DUP_ROUNDS 40

struct dup_data {
	im_append_result res[DUP_ROUNDS][DUP_PROCS];
};

static void
dup_child(struct shared *sh, int id, const pg_fixture *fx)
{
	struct dup_data *d = (struct dup_data *)(void *)sh->data;
	im_store *st = child_open(sh, id, fx);
	im_fence f = {IM_KIND_GROUP, 11, 1};
	int r, rc;

	for (r = 0; r < DUP_ROUNDS; r++) {
		/*
		 * Even rounds: same seq too (the primary key collides first);
		 * odd rounds: each process chose its own seq.
		 */
		im_msg m = {
		        .conv = 1000 + (uint64_t)r,
		        .seq = r % 2 == 0 ? 1 : 1 + (uint64_t)id,
		        .ordinal = 1,
		        .sender = 8,
		        .dedup_id = 0xfeedULL + (uint64_t)r,
		        .time_ms = 100 + (uint64_t)id,
		        .body = "same",
		        .body_len = 4,
		};

		pthread_barrier_wait(&sh->barrier);
		rc = im_store_msg_append(st, &f, 1, &m, 1, &d->res[r][id]);
		if (rc != IM_OK) {
			child_fail(sh, id, "round %d: append %d %s", r, rc,
			           im_store_errmsg(st));
		}
	}
	im_store_close(st);
}

static void
test_pg_same_dedup_key_from_two_processes_is_stored_once(void **state)
{
	const pg_fixture *fx = *state;
	struct shared *sh = shared_map(DUP_PROCS, sizeof(struct dup_data));
	struct dup_data *d = (struct dup_data *)(void *)sh->data;
	im_store *st = parent_open(fx);
	im_epoch e;
	int r, p;

	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 11, 0, "a", &e),
	                 IM_OK);
	run_children(sh, DUP_PROCS, fx, dup_child);
	for (r = 0; r < DUP_ROUNDS; r++) {
		int stored = 0, n = 0;
		im_msg found;

		for (p = 0; p < DUP_PROCS; p++) {
			if (!d->res[r][p].dup) {
				stored++;
			}
			assert_int_equal(d->res[r][p].seq, d->res[r][0].seq);
			assert_int_equal(d->res[r][p].time_ms,
			                 d->res[r][0].time_ms);
		}
		assert_int_equal(stored, 1);
		assert_int_equal(im_store_msg_read(st, 1000 + (uint64_t)r, 0,
		                                   IM_SEQ_MAX, 0, count_msgs,
		                                   &n),
		                 IM_OK);
		assert_int_equal(n, 1);
		assert_int_equal(im_store_msg_find_dedup(
		                         st, 1000 + (uint64_t)r, 8,
		                         0xfeedULL + (uint64_t)r, &found),
		                 IM_OK);
		assert_int_equal(found.seq, d->res[r][0].seq);
	}
	im_store_close(st);
	shared_unmap(sh, sizeof(struct dup_data));
}

/* The same create key from several Chatters at once (a client's retry
 * racing its first try after a failover): one group, every racer answered
 * with its gid. Each racer picked its own gid, as Chatters do. */
struct ckey_data {
	im_group_created res[DUP_ROUNDS][DUP_PROCS];
};

static im_gid
ckey_gid(int round, int id)
{
	return 100000 + (im_gid)round * MAX_PROCS + (im_gid)id;
}

static void
ckey_child(struct shared *sh, int id, const pg_fixture *fx)
{
	struct ckey_data *d = (struct ckey_data *)(void *)sh->data;
	im_store *st = child_open(sh, id, fx);
	im_fence f = {IM_KIND_GROUP, 11, 1};
	static const im_uid member = 9;
	int r, rc;

	for (r = 0; r < DUP_ROUNDS; r++) {
		im_group_new g;
		uint64_t key = 0xc0deULL + (uint64_t)r;

		memset(&g, 0, sizeof(g));
		g.group.gid = ckey_gid(r, id);
		g.group.creator = 8;
		g.group.created_ms = 100 + (uint64_t)id;
		snprintf(g.group.name, sizeof(g.group.name), "race");
		g.members = &member;
		g.nmembers = 1;
		pthread_barrier_wait(&sh->barrier);
		rc = im_store_group_create_dedup(st, &f, 1, &g, &key, 1,
		                                 &d->res[r][id]);
		if (rc != IM_OK) {
			child_fail(sh, id, "round %d: create %d %s", r, rc,
			           im_store_errmsg(st));
		}
	}
	im_store_close(st);
}

static void
test_pg_same_create_key_from_racing_writers_makes_one_group(void **state)
{
	const pg_fixture *fx = *state;
	struct shared *sh = shared_map(DUP_PROCS, sizeof(struct ckey_data));
	struct ckey_data *d = (struct ckey_data *)(void *)sh->data;
	im_store *st = parent_open(fx);
	im_epoch e;
	int r, p;

	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 11, 0, "a", &e),
	                 IM_OK);
	run_children(sh, DUP_PROCS, fx, ckey_child);
	for (r = 0; r < DUP_ROUNDS; r++) {
		int made = 0, exist = 0;
		im_group g;

		for (p = 0; p < DUP_PROCS; p++) {
			made += !d->res[r][p].dup;
			assert_int_equal(d->res[r][p].gid, d->res[r][0].gid);
			exist += im_store_group_lookup(st, ckey_gid(r, p), &g) ==
			         IM_OK;
		}
		assert_int_equal(made, 1);
		assert_int_equal(exist, 1);
		assert_int_equal(im_store_group_lookup(st, d->res[r][0].gid,
		                                       &g),
		                 IM_OK);
	}
	im_store_close(st);
	shared_unmap(sh, sizeof(struct ckey_data));
}

/* ---- backend specifics: migration, reconnect ------------------------- */

static void
open_child(struct shared *sh, int id, const pg_fixture *fx)
{
	pthread_barrier_wait(&sh->barrier);
	im_store_close(child_open(sh, id, fx));
}

static void
test_pg_concurrent_openers_migrate_a_fresh_schema_once(void **state)
{
	const pg_fixture *fx = *state;
	struct shared *sh = shared_map(6, 0);
	PGconn *c;
	PGresult *res;
	uint32_t v = 0;
	im_store *st;

	run_children(sh, 6, fx, open_child);
	c = pg_fixture_connect(fx);
	assert_non_null(c);
	res = PQexec(c, "SELECT count(*), max(version) FROM im_schema");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(res, 0, 0), "1");
	PQclear(res);
	PQfinish(c);
	st = parent_open(fx);
	assert_int_equal(im_store_migrate(st, &v), IM_OK);
	assert_int_equal(v, IM_STORE_SCHEMA_VERSION);
	im_store_close(st);
	shared_unmap(sh, 0);
}

static void
test_pg_open_fails_with_eschema_on_a_newer_schema(void **state)
{
	const pg_fixture *fx = *state;
	char err[256];
	im_store *st = parent_open(fx);
	PGconn *c = pg_fixture_connect(fx);

	assert_non_null(c);
	exec_ok(c, "INSERT INTO im_schema (version) VALUES (999)");
	PQfinish(c);
	im_store_close(st);
	st = (im_store *)0x1;
	assert_int_equal(
	        im_store_pg_open(&st, fx->conninfo, NULL, err, sizeof(err)),
	        IM_ESCHEMA);
	assert_null(st);
	assert_non_null(strstr(err, "999"));
}

static void
test_pg_open_of_an_unreachable_server_is_eunavail(void **state)
{
	im_store_pg_opts opts = IM_STORE_PG_OPTS_INIT;
	char err[256];
	im_store *st = (im_store *)0x1;

	(void)state;
	opts.connect_timeout_ms = 2000;
	assert_int_equal(im_store_pg_open(&st,
	                                  "host=127.0.0.1 port=1"
	                                  " dbname=none user=none",
	                                  &opts, err, sizeof(err)),
	                 IM_EUNAVAIL);
	assert_null(st);
	assert_true(strlen(err) > 0);
}

static void
test_pg_open_rejects_bad_arguments_before_connecting(void **state)
{
	im_store_pg_opts opts = IM_STORE_PG_OPTS_INIT;
	char err[256];
	im_store *st = (im_store *)0x1;

	(void)state;
	assert_int_equal(im_store_pg_open(NULL, "", NULL, err, sizeof(err)),
	                 IM_EINVAL);
	assert_int_equal(im_store_pg_open(&st, NULL, NULL, err, sizeof(err)),
	                 IM_EINVAL);
	assert_null(st);
	assert_true(strlen(err) > 0);
	opts.version = 0;
	assert_int_equal(im_store_pg_open(&st, "", &opts, NULL, 0), IM_EINVAL);
	opts.version = IM_STORE_PG_OPTS_VERSION + 1;
	assert_int_equal(im_store_pg_open(&st, "", &opts, err, 1), IM_EINVAL);
	assert_string_equal(err, "");
}

static void
test_pg_append_with_a_broken_chain_is_einval_and_stores_nothing(void **state)
{
	const pg_fixture *fx = *state;
	im_store *st = parent_open(fx);
	im_msg m[2] = {
	        {.conv = 40,
	         .seq = 5,
	         .prev_seq = 1,
	         .ordinal = 2,
	         .sender = 3,
	         .dedup_id = 1},
	        {.conv = 40,
	         .seq = 6,
	         .prev_seq = 4,
	         .ordinal = 3,
	         .sender = 3,
	         .dedup_id = 2},
	};
	im_fence f = {IM_KIND_GROUP, 13, 1};
	im_append_result res[2];
	im_epoch e;
	int n = 0;

	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 13, 0, "a", &e),
	                 IM_OK);
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 2, res), IM_EINVAL);
	m[1].prev_seq = 5;
	m[1].ordinal = 4;
	assert_int_equal(im_store_msg_append(st, &f, 1, m, 2, res), IM_EINVAL);
	assert_int_equal(
	        im_store_msg_read(st, 40, 0, IM_SEQ_MAX, 0, count_msgs, &n),
	        IM_OK);
	assert_int_equal(n, 0);
	im_store_close(st);
}

static void
kill_backends(const pg_fixture *fx, const char *appname)
{
	PGconn *c = pg_fixture_connect(fx);
	char sql[256];

	assert_non_null(c);
	snprintf(sql, sizeof(sql),
	         "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	         " WHERE application_name = '%s'",
	         appname);
	exec_ok(c, sql);
	PQfinish(c);
	/* Let the server's goodbye reach the victim's socket. */
	usleep(100000);
}

static void
test_pg_store_reconnects_after_its_session_is_killed(void **state)
{
	const pg_fixture *fx = *state;
	char ci[PG_FIXTURE_CONNINFO_MAX + 64], err[256];
	im_store *st;
	im_seg_key key = {IM_SEG_USER_SEQ, 5};
	im_seg a, b;
	im_group g = {.gid = 31, .creator = 1, .created_ms = 2, .name = "g"};
	im_group got;
	im_msg m = {.conv = 31,
	            .seq = 1,
	            .ordinal = 1,
	            .sender = 3,
	            .dedup_id = 77,
	            .time_ms = 1,
	            .body = "k",
	            .body_len = 1};
	im_fence f = {IM_KIND_GROUP, 12, 1};
	im_append_result res;
	im_epoch e;
	int n = 0, rc;

	pg_fixture_conninfo(fx, "application_name=im-victim", ci, sizeof(ci));
	assert_int_equal(im_store_pg_open(&st, ci, NULL, err, sizeof(err)),
	                 IM_OK);
	assert_int_equal(im_store_seg_take(st, &key, 10, &a), IM_OK);
	assert_int_equal(im_store_group_create(st, &g), IM_OK);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 12, 0, "a", &e),
	                 IM_OK);

	kill_backends(fx, "im-victim");
	assert_int_equal(im_store_group_lookup(st, 31, &got), IM_OK);
	assert_string_equal(got.name, "g");

	kill_backends(fx, "im-victim");
	assert_int_equal(im_store_seg_take(st, &key, 10, &b), IM_OK);
	assert_true(b.first > a.last);

	/*
	 * A write whose outcome may be unknown answers IM_EUNAVAIL or
	 * succeeds; either way a retry with the same dedup key stores the
	 * message exactly once.
	 */
	kill_backends(fx, "im-victim");
	rc = im_store_msg_append(st, &f, 1, &m, 1, &res);
	fprintf(stderr, "# append after the kill: %s\n", im_strerror(rc));
	assert_true(rc == IM_OK || rc == IM_EUNAVAIL);
	if (rc == IM_EUNAVAIL) {
		assert_int_equal(im_store_msg_append(st, &f, 1, &m, 1, &res),
		                 IM_OK);
	}
	assert_int_equal(res.seq, 1);
	assert_int_equal(
	        im_store_msg_read(st, 31, 0, IM_SEQ_MAX, 0, count_msgs, &n),
	        IM_OK);
	assert_int_equal(n, 1);
	im_store_close(st);
}

/*
 * A server restart under an open store: reads and writes after it work on
 * a new session (the store reconnects and prepares again), and no write is
 * lost or doubled. IM_TEST_PG_RESTART is the command (scripts/pg env).
 */
static void
test_pg_store_keeps_working_across_a_server_restart(void **state)
{
	const pg_fixture *fx = *state;
	const char *restart = getenv("IM_TEST_PG_RESTART");
	im_store *st = parent_open(fx);
	im_seg_key key = {IM_SEG_GROUP_SEQ, 6};
	im_fence f = {IM_KIND_GROUP, 14, 1};
	im_msg m = {.conv = 60,
	            .seq = 1,
	            .ordinal = 1,
	            .sender = 3,
	            .dedup_id = 5,
	            .time_ms = 1,
	            .body = "r",
	            .body_len = 1};
	im_append_result res;
	im_seg a, b;
	im_epoch e;
	int n = 0, rc;

	if (restart == NULL || restart[0] == '\0') {
		fail_msg("IM_TEST_PG_RESTART is not set (scripts/test-pg sets"
		         " it; see scripts/pg env)");
	}
	assert_int_equal(im_store_seg_take(st, &key, 5, &a), IM_OK);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 14, 0, "a", &e),
	                 IM_OK);
	fflush(NULL);
	assert_int_equal(system(restart), 0);
	assert_int_equal(im_store_seg_take(st, &key, 5, &b), IM_OK);
	assert_true(b.first > a.last);
	fflush(NULL);
	assert_int_equal(system(restart), 0);
	rc = im_store_msg_append(st, &f, 1, &m, 1, &res);
	fprintf(stderr, "# append after the restart: %s\n", im_strerror(rc));
	assert_true(rc == IM_OK || rc == IM_EUNAVAIL);
	if (rc == IM_EUNAVAIL) {
		assert_int_equal(im_store_msg_append(st, &f, 1, &m, 1, &res),
		                 IM_OK);
	}
	assert_int_equal(
	        im_store_msg_read(st, 60, 0, IM_SEQ_MAX, 0, count_msgs, &n),
	        IM_OK);
	assert_int_equal(n, 1);
	im_store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(
	                test_pg_concurrent_segment_takers_never_overlap, setup,
	                teardown),
	        cmocka_unit_test_setup_teardown(
	                test_pg_racing_slot_cas_has_exactly_one_winner_per_epoch,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_pg_racing_slot_cas_many_moves_all_slots_or_none,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_pg_stale_writer_cannot_append_after_a_cas_it_started_before,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_pg_stale_writer_with_duplicates_cannot_append_either,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_pg_append_before_a_cas_is_kept_and_one_after_it_is_stale,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_pg_same_dedup_key_from_two_processes_is_stored_once,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_pg_same_create_key_from_racing_writers_makes_one_group,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_pg_concurrent_openers_migrate_a_fresh_schema_once,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_pg_open_fails_with_eschema_on_a_newer_schema,
	                setup, teardown),
	        cmocka_unit_test(
	                test_pg_open_of_an_unreachable_server_is_eunavail),
	        cmocka_unit_test(
	                test_pg_open_rejects_bad_arguments_before_connecting),
	        cmocka_unit_test_setup_teardown(
	                test_pg_append_with_a_broken_chain_is_einval_and_stores_nothing,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_pg_store_reconnects_after_its_session_is_killed,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_pg_store_keeps_working_across_a_server_restart,
	                setup, teardown),
	};

	seed = test_seed();
	/* bench/pg-soak.sh runs one test at a time (a cmocka glob). */
	if (getenv("IM_TEST_FILTER") != NULL) {
		cmocka_set_test_filter(getenv("IM_TEST_FILTER"));
	}
	return cmocka_run_group_tests_name("store-pg-concurrency", tests, NULL,
	                                   NULL);
}
