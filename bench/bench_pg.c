/*
 * Append throughput of the PostgreSQL backend, next to a plain libpq
 * multi-row INSERT of the same rows into a table of the same shape.
 *
 *   bench_pg CONNINFO backend|plain BATCH WRITERS SECONDS
 *
 * WRITERS processes, each with its own connection, slot and conversation,
 * append batches of BATCH messages (64-byte bodies) for SECONDS. Prints one
 * line: mode batch writers messages commits seconds msgs_per_s.
 * Everything lives in schema "imbench", recreated on every run.
 */
#include "im/store.h"

#include <libpq-fe.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WRITERS 64
#define MAX_BATCH 4096
#define BODY_LEN 64
/* Bound on every writer's loop, besides the clock. */
#define MAX_BATCHES 10000000L

struct shared {
	pthread_barrier_t barrier;
	long msgs[MAX_WRITERS];
	long commits[MAX_WRITERS];
	double secs[MAX_WRITERS];
	int failed[MAX_WRITERS];
};

static const char *conninfo;
static char ci[2048];
static int batch, writers;
static double seconds;
static unsigned char body[BODY_LEN];

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
exec_sql(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	ExecStatusType es = PQresultStatus(res);
	int rc = 0;

	if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
		fprintf(stderr, "bench_pg: %s: %s", sql,
		        PQresultErrorMessage(res));
		rc = -1;
	}
	PQclear(res);
	return rc;
}

static void
quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* Message i of writer w: its own conv, a chain 1, 2, 3, ... */
static void
fill(im_msg *m, int w, long i)
{
	memset(m, 0, sizeof(*m));
	m->conv = 1000000 + (uint64_t)w;
	m->seq = (uint64_t)i + 1;
	m->prev_seq = (uint64_t)i;
	m->ordinal = (uint64_t)i + 1;
	m->sender = 7;
	m->dedup_id = ((uint64_t)w << 40) | (uint64_t)i;
	m->time_ms = 1700000000000ULL + (uint64_t)i;
	m->body = body;
	m->body_len = BODY_LEN;
}

static int
run_backend(struct shared *sh, int w)
{
	im_msg *msgs = calloc((size_t)batch, sizeof(*msgs));
	im_append_result *res = calloc((size_t)batch, sizeof(*res));
	im_fence f = {IM_KIND_GROUP, (uint32_t)w, 1};
	im_store *st;
	char err[256];
	long b, next = 0;
	double t0, t1;
	int rc, i;

	if (msgs == NULL || res == NULL ||
	    im_store_pg_open(&st, ci, NULL, err, sizeof(err)) != IM_OK) {
		fprintf(stderr, "bench_pg: writer %d: open failed\n", w);
		pthread_barrier_wait(&sh->barrier);
		return -1;
	}
	pthread_barrier_wait(&sh->barrier);
	t0 = now_s();
	t1 = t0;
	for (b = 0; b < MAX_BATCHES && t1 - t0 < seconds; b++) {
		for (i = 0; i < batch; i++) {
			fill(&msgs[i], w, next + i);
		}
		rc = im_store_msg_append(st, &f, 1, msgs, (size_t)batch, res);
		if (rc != IM_OK) {
			fprintf(stderr, "bench_pg: writer %d: %s: %s\n", w,
			        im_strerror(rc), im_store_errmsg(st));
			im_store_close(st);
			return -1;
		}
		next += batch;
		sh->msgs[w] += batch;
		sh->commits[w]++;
		t1 = now_s();
	}
	sh->secs[w] = t1 - t0;
	im_store_close(st);
	free(msgs);
	free(res);
	return 0;
}

/*
 * The baseline: INSERT ... VALUES (...), (...), ... with BATCH rows of
 * binary parameters, prepared once, autocommit (one transaction each).
 */
static int
run_plain(struct shared *sh, int w)
{
	size_t np = (size_t)batch * 10, len = 0, cap = 64 + np * 8;
	char *sql = malloc(cap);
	const char **vals = calloc(np, sizeof(*vals));
	int *lens = calloc(np, sizeof(*lens)),
	    *fmts = calloc(np, sizeof(*fmts));
	uint64_t *nums = calloc(np, sizeof(*nums));
	PGconn *c = PQconnectdb(ci);
	long b, next = 0;
	double t0, t1;
	size_t k;
	int i, j;

	if (sql == NULL || vals == NULL || lens == NULL || fmts == NULL ||
	    nums == NULL || PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "bench_pg: plain writer %d: setup failed\n", w);
		pthread_barrier_wait(&sh->barrier);
		return -1;
	}
	len += (size_t)snprintf(sql, cap, "INSERT INTO plain VALUES ");
	for (i = 0; i < batch; i++) {
		len += (size_t)snprintf(sql + len, cap - len, "%s(",
		                        i ? "," : "");
		for (j = 0; j < 10; j++) {
			len += (size_t)snprintf(sql + len, cap - len, "%s$%d",
			                        j ? "," : "", i * 10 + j + 1);
		}
		len += (size_t)snprintf(sql + len, cap - len, ")");
	}
	for (k = 0; k < np; k++) {
		fmts[k] = 1;
	}
	{
		PGresult *r = PQprepare(c, "plain", sql, (int)np, NULL);

		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fprintf(stderr, "bench_pg: prepare: %s",
			        PQresultErrorMessage(r));
			PQclear(r);
			pthread_barrier_wait(&sh->barrier);
			return -1;
		}
		PQclear(r);
	}
	pthread_barrier_wait(&sh->barrier);
	t0 = now_s();
	t1 = t0;
	for (b = 0; b < MAX_BATCHES && t1 - t0 < seconds; b++) {
		PGresult *r;

		for (i = 0; i < batch; i++) {
			im_msg m;
			uint64_t v[9];

			fill(&m, w, next + i);
			v[0] = m.conv;
			v[1] = m.seq;
			v[2] = m.prev_seq;
			v[3] = m.ordinal;
			v[4] = m.sender;
			v[5] = m.dedup_id;
			v[6] = m.reply_to;
			v[7] = m.time_ms;
			v[8] = m.type;
			for (j = 0; j < 9; j++) {
				uint64_t be = 0;
				unsigned char *p = (unsigned char *)&be;
				int x;

				for (x = 0; x < 8; x++) {
					p[x] = (unsigned char)(v[j] >>
					                       (56 - 8 * x));
				}
				nums[i * 10 + j] = be;
				vals[i * 10 + j] =
				        (const char *)&nums[i * 10 + j];
				lens[i * 10 + j] = 8;
			}
			vals[i * 10 + 9] = (const char *)body;
			lens[i * 10 + 9] = BODY_LEN;
		}
		r = PQexecPrepared(c, "plain", (int)np, vals, lens, fmts, 1);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fprintf(stderr, "bench_pg: plain: %s",
			        PQresultErrorMessage(r));
			PQclear(r);
			PQfinish(c);
			return -1;
		}
		PQclear(r);
		next += batch;
		sh->msgs[w] += batch;
		sh->commits[w]++;
		t1 = now_s();
	}
	sh->secs[w] = t1 - t0;
	PQfinish(c);
	free(sql);
	free(vals);
	free(lens);
	free(fmts);
	free(nums);
	return 0;
}

static int
setup(bool plain)
{
	PGconn *c = PQconnectdb(conninfo);
	im_store *st;
	char err[256];
	int w, rc = 0;

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "bench_pg: connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	PQsetNoticeProcessor(c, quiet, NULL);
	if (exec_sql(c, "DROP SCHEMA IF EXISTS imbench CASCADE") != 0 ||
	    exec_sql(c, "CREATE SCHEMA imbench") != 0) {
		PQfinish(c);
		return -1;
	}
	if (im_store_pg_open(&st, ci, NULL, err, sizeof(err)) != IM_OK) {
		fprintf(stderr, "bench_pg: open: %s\n", err);
		PQfinish(c);
		return -1;
	}
	for (w = 0; w < writers && rc == 0; w++) {
		im_epoch e;

		rc = im_store_slot_cas(st, IM_KIND_GROUP, (uint32_t)w, 0,
		                       "bench", &e);
	}
	im_store_close(st);
	if (rc == 0 && plain) {
		rc = exec_sql(c, "CREATE TABLE imbench.plain (LIKE"
		                 " imbench.im_messages INCLUDING ALL)");
	}
	/* Start from a checkpoint so runs do not pay for each other's WAL. */
	if (rc == 0) {
		rc = exec_sql(c, "CHECKPOINT");
	}
	PQfinish(c);
	return rc;
}

int
main(int argc, char **argv)
{
	pthread_barrierattr_t attr;
	struct shared *sh;
	pid_t pids[MAX_WRITERS];
	long msgs = 0, commits = 0;
	double rate = 0, secs = 0;
	bool plain;
	int w, failed = 0;

	if (argc != 6) {
		fprintf(stderr, "usage: bench_pg CONNINFO backend|plain BATCH"
		                " WRITERS SECONDS\n");
		return 2;
	}
	conninfo = argv[1];
	plain = strcmp(argv[2], "plain") == 0;
	batch = atoi(argv[3]);
	writers = atoi(argv[4]);
	seconds = atof(argv[5]);
	if ((!plain && strcmp(argv[2], "backend") != 0) || batch < 1 ||
	    batch > MAX_BATCH || writers < 1 || writers > MAX_WRITERS ||
	    seconds <= 0 || seconds > 600) {
		fprintf(stderr, "bench_pg: bad arguments\n");
		return 2;
	}
	memset(body, 'x', sizeof(body));
	snprintf(ci, sizeof(ci), "%s options=-csearch_path=imbench", conninfo);
	if (setup(plain) != 0) {
		return 1;
	}
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
	          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		return 1;
	}
	memset(sh, 0, sizeof(*sh));
	pthread_barrierattr_init(&attr);
	pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_barrier_init(&sh->barrier, &attr, (unsigned)writers);
	fflush(NULL);
	for (w = 0; w < writers; w++) {
		pids[w] = fork();
		if (pids[w] < 0) {
			perror("fork");
			return 1;
		}
		if (pids[w] == 0) {
			alarm((unsigned)seconds + 120);
			_exit((plain ? run_plain(sh, w) : run_backend(sh, w)) ==
			                      0
			              ? 0
			              : 1);
		}
	}
	for (w = 0; w < writers; w++) {
		int status;

		while (waitpid(pids[w], &status, 0) < 0 && errno == EINTR) {
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			failed++;
		}
		msgs += sh->msgs[w];
		commits += sh->commits[w];
		secs = sh->secs[w] > secs ? sh->secs[w] : secs;
		if (sh->secs[w] > 0) {
			rate += (double)sh->msgs[w] / sh->secs[w];
		}
	}
	if (failed > 0) {
		fprintf(stderr, "bench_pg: %d writer(s) failed\n", failed);
		return 1;
	}
	printf("%s %d %d %ld %ld %.1f %.0f\n", plain ? "plain" : "backend",
	       batch, writers, msgs, commits, secs, rate);
	return 0;
}
