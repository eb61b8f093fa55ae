#include "imbench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

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
