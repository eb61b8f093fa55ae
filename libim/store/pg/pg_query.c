/*
 * Running a prepared statement, for every op of the PostgreSQL backend:
 * reconnect and retry as the op allows, map SQLSTATEs to im_err, and
 * stream the rows of the answer to a callback. One place for this, so
 * that an op says what it asks and how it reads the rows, and the error
 * mapping cannot differ between ops.
 */
#include "store/pg/pg_internal.h"

#include <stdlib.h>

int
im__pg_buf_reserve(struct pg_store *s, size_t need)
{
	unsigned char *nb;
	size_t cap;

	if (need <= s->buf_cap) {
		return IM_OK;
	}
	cap = s->buf_cap > 0 ? s->buf_cap : 4096;
	while (cap < need) {
		cap *= 2;
	}
	nb = realloc(s->buf, cap);
	if (nb == NULL) {
		im_store_set_error(&s->base, "out of memory (%zu bytes)", cap);
		return IM_ENOMEM;
	}
	s->buf = nb;
	s->buf_cap = cap;
	return IM_OK;
}

bool
im__pg_sqlstate_is(const PGresult *res, const char *code)
{
	const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return st != NULL && strcmp(st, code) == 0;
}

/* A statement rolled back by a race another try resolves. */
static bool
is_race(const PGresult *res)
{
	return im__pg_sqlstate_is(res, "23505") || /* unique_violation */
	       im__pg_sqlstate_is(res, "40001") || /* serialization_failure */
	       im__pg_sqlstate_is(res, "40P01");   /* deadlock_detected */
}

int
im__pg_run(struct pg_store *s, enum pg_stmt id, const struct pg_params *p,
           enum pg_retry retry, PGresult **out)
{
	static const int fmts[PG_PARAMS_MAX] = {1, 1, 1, 1, 1, 1, 1,
	                                        1, 1, 1, 1, 1, 1};
	const struct pg_stmt_def *def = &im__pg_stmts[id];
	uint32_t tries;
	int rc;

	*out = NULL;
	for (tries = 0;; tries++) {
		PGresult *res;
		ExecStatusType es;

		if ((rc = im__pg_ensure(s)) != IM_OK) {
			return rc;
		}
		res = PQexecPrepared(s->conn, def->name, def->nparams,
		                     p != NULL ? p->vals : NULL,
		                     p != NULL ? p->lens : NULL, fmts, 1);
		es = PQresultStatus(res);
		if (es == PGRES_TUPLES_OK || es == PGRES_COMMAND_OK) {
			*out = res;
			return IM_OK;
		}
		if (PQstatus(s->conn) != CONNECTION_OK) {
			im_store_set_error(
			        &s->base, "pg: %s: connection lost: %s",
			        def->name,
			        res != NULL ? PQresultErrorMessage(res)
			                    : PQerrorMessage(s->conn));
			PQclear(res);
			if (retry != PG_ONCE &&
			    tries < s->opts.reconnect_tries) {
				continue;
			}
			return IM_EUNAVAIL;
		}
		im_store_set_error(&s->base, "pg: %s: %s", def->name,
		                   PQresultErrorMessage(res));
		if (is_race(res)) {
			*out = res;
			return IM_ECONFLICT;
		}
		if (im__pg_sqlstate_is(res, "53100")) {
			/* disk_full: the statement (its transaction) is
			 * rolled back, nothing of it stored. */
			PQclear(res);
			return IM_ENOSPC;
		}
		if (im__pg_sqlstate_is(res, "22003")) {
			/* numeric_value_out_of_range */
			PQclear(res);
			return IM_EFULL;
		}
		/* Prepared statements vanish with DISCARD ALL or a pooler. */
		if (im__pg_sqlstate_is(res, "26000") && tries == 0) {
			PQclear(res);
			s->prepared = false;
			continue;
		}
		PQclear(res);
		return IM_ERR;
	}
}

int
im__pg_rows(const PGresult *res, pg_row_fn fn, void *arg)
{
	int r, n = PQntuples(res), rc = 0;

	for (r = 0; r < n && rc == 0; r++) {
		rc = fn(res, r, arg);
	}
	return rc;
}

int
im__pg_result(struct pg_store *s, enum pg_stmt id, const struct pg_params *p,
              enum pg_retry retry, PGresult **out)
{
	int tries = retry == PG_RACES ? PG_RACE_TRIES : 1;
	int rc = IM_ECONFLICT;
	int c;

	*out = NULL;
	for (c = 0; c < tries && rc == IM_ECONFLICT; c++) {
		PQclear(*out);
		*out = NULL;
		rc = im__pg_run(s, id, p, retry == PG_RACES ? PG_AGAIN : retry,
		                out);
	}
	if (rc != IM_OK) {
		PQclear(*out);
		*out = NULL;
		return rc == IM_ECONFLICT ? IM_ERR : rc;
	}
	return IM_OK;
}

int
im__pg_exec(struct pg_store *s, enum pg_stmt id, const struct pg_params *p,
            enum pg_retry retry, pg_row_fn fn, void *arg, int *nrows_out)
{
	PGresult *res;
	int rc;

	if ((rc = im__pg_result(s, id, p, retry, &res)) != IM_OK) {
		return rc;
	}
	if (nrows_out != NULL) {
		*nrows_out = PQntuples(res);
	}
	rc = fn != NULL ? im__pg_rows(res, fn, arg) : IM_OK;
	PQclear(res);
	return rc;
}

struct first_row {
	uint64_t *cols;
	int ncols;
};

static int
first_row_u64(const PGresult *res, int r, void *arg)
{
	struct first_row *f = arg;
	int c;

	for (c = 0; r == 0 && c < f->ncols; c++) {
		f->cols[c] = pg_col_u64(res, 0, c);
	}
	return 0;
}

int
im__pg_exec_u64(struct pg_store *s, enum pg_stmt id, const struct pg_params *p,
                enum pg_retry retry, uint64_t *cols_out, int ncols,
                int *nrows_out)
{
	struct first_row f = {cols_out, ncols};
	int c;

	for (c = 0; c < ncols; c++) {
		cols_out[c] = 0;
	}
	return im__pg_exec(s, id, p, retry, first_row_u64, &f, nrows_out);
}
