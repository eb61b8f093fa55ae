/*
 * The conformance suite over the PostgreSQL backend. Each test gets a fresh
 * schema in the database named by IM_TEST_PG (scripts/test-pg starts a
 * throwaway server); reopen opens the same schema again. No server means
 * failure, never a skip.
 */
#include "conformance.h"

#include "pg_fixture.h"

#include <stdio.h>
#include <string.h>

typedef struct pg_ctx {
	pg_fixture fx;
	bool live;
} pg_ctx;

static int
pg_fx_reopen(void *ctx, im_store **out)
{
	pg_ctx *c = ctx;
	char err[256] = "";
	int rc = im_store_pg_open(out, c->fx.conninfo, NULL, err, sizeof(err));

	if (rc != IM_OK) {
		fprintf(stderr, "# open %s: %s: %s\n", c->fx.schema,
		        im_strerror(rc), err);
	}
	return rc;
}

static int
pg_fx_open(void *ctx, im_store **out)
{
	pg_ctx *c = ctx;

	if (c->live) {
		pg_fixture_drop(&c->fx);
		c->live = false;
	}
	if (pg_fixture_create(&c->fx) != 0) {
		fprintf(stderr, "# %s\n", pg_fixture_error());
		return IM_EUNAVAIL;
	}
	c->live = true;
	return pg_fx_reopen(ctx, out);
}

static int
pg_fx_exec(void *ctx, im_store *st, const char *sql)
{
	pg_ctx *c = ctx;
	PGconn *conn;
	PGresult *res;
	int rc = IM_OK;

	(void)st;
	conn = pg_fixture_connect(&c->fx);
	if (conn == NULL) {
		fprintf(stderr, "# exec: %s\n", pg_fixture_error());
		return IM_EUNAVAIL;
	}
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "# exec %s: %s\n", sql,
		        PQresultErrorMessage(res));
		rc = IM_ERR;
	}
	PQclear(res);
	PQfinish(conn);
	return rc;
}

static void
pg_fx_cleanup(void *ctx)
{
	pg_ctx *c = ctx;

	if (c->live) {
		pg_fixture_drop(&c->fx);
		c->live = false;
	}
}

int
main(void)
{
	pg_ctx c;
	store_fixture fx = {
	        .name = "pg",
	        .ctx = &c,
	        .open = pg_fx_open,
	        .exec = pg_fx_exec,
	        .reopen = pg_fx_reopen,
	        .cleanup = pg_fx_cleanup,
	};

	memset(&c, 0, sizeof(c));
	return store_conformance_run(&fx) != 0;
}
