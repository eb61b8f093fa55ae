#include "imbench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#ifdef IMB_HAVE_PQ
#include <libpq-fe.h>
#endif

/* The im_messages table as libim/store/schema/001_init.sql defines it, so
 * the baseline pays for the same primary key and dedup index. */
static const char ddl[] =
        "CREATE TABLE im_messages ("
        " conv BIGINT NOT NULL, seq BIGINT NOT NULL,"
        " prev_seq BIGINT NOT NULL, ordinal BIGINT NOT NULL,"
        " sender BIGINT NOT NULL, dedup_id BIGINT NOT NULL,"
        " reply_to BIGINT NOT NULL, time_ms BIGINT NOT NULL,"
        " type BIGINT NOT NULL, body BYTEA NOT NULL,"
        " PRIMARY KEY (conv, seq), UNIQUE (conv, sender, dedup_id));";

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#ifdef IMB_HAVE_PQ
static int
pg_exec(PGconn *c, const char *sql, imb_baseline *b)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
	         PQresultStatus(r) == PGRES_TUPLES_OK;

	if (!ok && b != NULL) {
		snprintf(b->err, sizeof(b->err), "pg: %s",
		         PQresultErrorMessage(r));
	}
	PQclear(r);
	return ok ? 0 : -1;
}

static void
pg_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

static void
be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++) {
		p[i] = (uint8_t)(v >> (56 - 8 * i));
	}
}

/*
 * The same rows into PostgreSQL: one prepared INSERT ... VALUES (...), ...
 * of `batch` rows with binary parameters, autocommit (one transaction, one
 * WAL flush each), into a table of im_messages' shape and indexes in a
 * schema of its own that is dropped afterwards. What a Chatter's group
 * commit of that many messages would cost without any of libim.
 */
static int
baseline_pg(const imb_opts *o, imb_baseline *b)
{
	char schema[64], sql[256], *ins = NULL;
	uint32_t groups = o->groups ? o->groups : 1, i, j;
	size_t np = (size_t)b->batch * 10, len = 0, cap = 64 + np * 8;
	const char **vals = calloc(np, sizeof(*vals));
	int *lens = calloc(np, sizeof(*lens)), *fmts = calloc(np, sizeof(*fmts));
	uint8_t *nums = calloc(np, 8), *body = malloc(o->body);
	uint64_t *seq = calloc(groups, sizeof(*seq)), commits = 0, n = 0;
	PGconn *c = PQconnectdb(o->baseline_pg);
	PGresult *r;
	double t0, t = 0;
	int rc = -1, made = 0;

	snprintf(schema, sizeof(schema), "imbench_base_%d", (int)getpid());
	ins = malloc(cap);
	if (!vals || !lens || !fmts || !nums || !body || !seq || !ins) {
		snprintf(b->err, sizeof(b->err), "out of memory");
		goto out;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(b->err, sizeof(b->err), "pg: %s", PQerrorMessage(c));
		goto out;
	}
	PQsetNoticeProcessor(c, pg_quiet, NULL);
	memset(body, 'x', o->body);
	snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
	if (pg_exec(c, sql, b) != 0) {
		goto out;
	}
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
	if (pg_exec(c, sql, b) != 0) {
		goto out;
	}
	made = 1;
	snprintf(sql, sizeof(sql), "SET search_path = %s", schema);
	if (pg_exec(c, sql, b) != 0 || pg_exec(c, ddl, b) != 0) {
		goto out;
	}
	(void)pg_exec(c, "CHECKPOINT", NULL); /* not the previous run's WAL */
	len += (size_t)snprintf(ins, cap, "INSERT INTO im_messages VALUES ");
	for (i = 0; i < b->batch; i++) {
		len += (size_t)snprintf(ins + len, cap - len, "%s(",
		                        i ? "," : "");
		for (j = 0; j < 10; j++) {
			len += (size_t)snprintf(ins + len, cap - len, "%s$%u",
			                        j ? "," : "", i * 10 + j + 1);
		}
		len += (size_t)snprintf(ins + len, cap - len, ")");
	}
	r = PQprepare(c, "base", ins, (int)np, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		snprintf(b->err, sizeof(b->err), "pg: prepare: %s",
		         PQresultErrorMessage(r));
		PQclear(r);
		goto out;
	}
	PQclear(r);
	for (i = 0; i < np; i++) {
		fmts[i] = 1;
		lens[i] = 8;
		vals[i] = (const char *)nums + 8 * i;
	}
	for (i = 0; i < b->batch; i++) {
		vals[i * 10 + 9] = (const char *)body;
		lens[i * 10 + 9] = (int)o->body;
	}
	t0 = now_s();
	do {
		for (i = 0; i < b->batch; i++, n++) {
			uint32_t g = (uint32_t)(n % groups);
			uint64_t s = ++seq[g], v[9] = {
				g + 1, s, s - 1, s, (n % 1000) + 1, n + 1, 0,
				n, 0,
			};

			for (j = 0; j < 9; j++) {
				be64(nums + 8 * ((size_t)i * 10 + j), v[j]);
			}
		}
		r = PQexecPrepared(c, "base", (int)np, vals, lens, fmts, 1);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			snprintf(b->err, sizeof(b->err), "pg: %s",
			         PQresultErrorMessage(r));
			PQclear(r);
			goto out;
		}
		PQclear(r);
		commits++;
		t = now_s() - t0;
	} while (t < o->baseline_secs);
	b->rows = n;
	b->secs = t;
	b->rows_per_s = (double)n / t;
	b->commits_per_s = (double)commits / t;
	b->pg = 1;
	rc = 0;
out:
	if (made) {
		snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
		(void)pg_exec(c, sql, NULL);
	}
	PQfinish(c);
	free(ins);
	free(vals);
	free(lens);
	free(fmts);
	free(nums);
	free(body);
	free(seq);
	return rc;
}
#endif

int
imb_baseline_run(const imb_opts *o, imb_baseline *b)
{
	char path[512];
	sqlite3 *db = NULL;
	sqlite3_stmt *ins = NULL;
	uint8_t *body = NULL;
	uint32_t groups = o->groups ? o->groups : 1, i;
	uint64_t *seq = NULL, commits = 0, n = 0;
	double t0, t;
	int rc = -1;

	memset(b, 0, sizeof(*b));
	b->batch = o->baseline_batch ? o->baseline_batch : 1;
	if (o->baseline_pg != NULL) {
#ifdef IMB_HAVE_PQ
		return baseline_pg(o, b);
#else
		snprintf(b->err, sizeof(b->err),
		         "built without libpq: no --baseline-pg");
		return -1;
#endif
	}
	snprintf(path, sizeof(path), "%s/im-bench-baseline-%d.db",
	         o->baseline_dir, (int)getpid());
	unlink(path);
	body = malloc(o->body);
	seq = calloc(groups, sizeof(*seq));
	if (body == NULL || seq == NULL) {
		snprintf(b->err, sizeof(b->err), "out of memory");
		goto out;
	}
	memset(body, 'x', o->body);
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db,
	                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
	                 NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, ddl, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
	                       "INSERT INTO im_messages VALUES "
	                       "(?,?,?,?,?,?,0,?,0,?)",
	                       -1, &ins, NULL) != SQLITE_OK) {
		snprintf(b->err, sizeof(b->err), "sqlite: %s",
		         db ? sqlite3_errmsg(db) : "open failed");
		goto out;
	}
	t0 = now_s();
	do {
		if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
			goto sqlerr;
		}
		for (i = 0; i < b->batch; i++, n++) {
			uint32_t g = (uint32_t)(n % groups);
			uint64_t s = ++seq[g];

			sqlite3_bind_int64(ins, 1, (sqlite3_int64)g + 1);
			sqlite3_bind_int64(ins, 2, (sqlite3_int64)s);
			sqlite3_bind_int64(ins, 3, (sqlite3_int64)s - 1);
			sqlite3_bind_int64(ins, 4, (sqlite3_int64)s);
			sqlite3_bind_int64(ins, 5,
			                   (sqlite3_int64)(n % 1000) + 1);
			sqlite3_bind_int64(ins, 6, (sqlite3_int64)n + 1);
			sqlite3_bind_int64(ins, 7, (sqlite3_int64)n);
			sqlite3_bind_blob(ins, 8, body, (int)o->body,
			                  SQLITE_STATIC);
			if (sqlite3_step(ins) != SQLITE_DONE) {
				goto sqlerr;
			}
			sqlite3_reset(ins);
		}
		if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
			goto sqlerr;
		}
		commits++;
		t = now_s() - t0;
	} while (t < o->baseline_secs);
	b->rows = n;
	b->secs = t;
	b->rows_per_s = (double)n / t;
	b->commits_per_s = (double)commits / t;
	rc = 0;
	goto out;
sqlerr:
	snprintf(b->err, sizeof(b->err), "sqlite: %s", sqlite3_errmsg(db));
out:
	sqlite3_finalize(ins);
	sqlite3_close(db);
	unlink(path);
	{
		char side[530];

		snprintf(side, sizeof(side), "%s-wal", path);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", path);
		unlink(side);
	}
	free(body);
	free(seq);
	return rc;
}
