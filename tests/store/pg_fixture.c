#include "pg_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef IM_TEST_PG_DEFAULT
#define IM_TEST_PG_DEFAULT ""
#endif

static char fx_err[512];
static unsigned fx_counter;

const char *
pg_fixture_error(void)
{
	return fx_err;
}

static void
quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static const char *
base_conninfo(void)
{
	const char *ci = getenv("IM_TEST_PG");

	if (ci == NULL || ci[0] == '\0') {
		ci = IM_TEST_PG_DEFAULT;
	}
	if (ci[0] == '\0') {
		snprintf(fx_err, sizeof(fx_err),
		         "IM_TEST_PG is not set: run scripts/test-pg (it "
		         "starts a throwaway server) or export a conninfo");
		return NULL;
	}
	return ci;
}

/* Append key='value' with libpq's quoting rules. */
static int
append_kv(char *out, size_t outlen, size_t *pos, const char *key,
          const char *val)
{
	int n = snprintf(out + *pos, outlen - *pos, "%s%s='", *pos ? " " : "",
	                 key);

	if (n < 0 || (size_t)n >= outlen - *pos) {
		return -1;
	}
	*pos += (size_t)n;
	for (; *val != '\0'; val++) {
		if (*pos + 3 >= outlen) {
			return -1;
		}
		if (*val == '\'' || *val == '\\') {
			out[(*pos)++] = '\\';
		}
		out[(*pos)++] = *val;
	}
	if (*pos + 2 >= outlen) {
		return -1;
	}
	out[(*pos)++] = '\'';
	out[*pos] = '\0';
	return 0;
}

/*
 * Rebuild the base conninfo (keyword or URI form) as keywords, replacing
 * `options` with one that sets search_path.
 */
static int
build_conninfo(const char *base, const char *schema, char *out, size_t outlen)
{
	PQconninfoOption *opts, *o;
	char *err = NULL;
	char options[128];
	size_t pos = 0;
	int rc = 0;

	opts = PQconninfoParse(base, &err);
	if (opts == NULL) {
		snprintf(fx_err, sizeof(fx_err), "bad IM_TEST_PG: %s",
		         err != NULL ? err : "out of memory");
		PQfreemem(err);
		return -1;
	}
	out[0] = '\0';
	for (o = opts; o->keyword != NULL && rc == 0; o++) {
		if (o->val == NULL || strcmp(o->keyword, "options") == 0) {
			continue;
		}
		rc = append_kv(out, outlen, &pos, o->keyword, o->val);
	}
	PQconninfoFree(opts);
	if (rc == 0 && schema != NULL) {
		snprintf(options, sizeof(options), "-csearch_path=%s", schema);
		rc = append_kv(out, outlen, &pos, "options", options);
	}
	if (rc != 0) {
		snprintf(fx_err, sizeof(fx_err), "conninfo too long");
	}
	return rc;
}

static int
exec_base(const char *sql)
{
	const char *base = base_conninfo();
	char ci[PG_FIXTURE_CONNINFO_MAX];
	PGconn *c;
	PGresult *res;
	int rc = 0;

	if (base == NULL || build_conninfo(base, NULL, ci, sizeof(ci)) != 0) {
		return -1;
	}
	c = PQconnectdb(ci);
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(fx_err, sizeof(fx_err),
		         "cannot connect to IM_TEST_PG (%s): %s", base,
		         PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	PQsetNoticeProcessor(c, quiet, NULL);
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(fx_err, sizeof(fx_err), "%s: %s", sql,
		         PQresultErrorMessage(res));
		rc = -1;
	}
	PQclear(res);
	PQfinish(c);
	return rc;
}

int
pg_fixture_create(pg_fixture *fx)
{
	const char *base = base_conninfo();
	char sql[256];

	memset(fx, 0, sizeof(*fx));
	if (base == NULL) {
		return -1;
	}
	snprintf(fx->schema, sizeof(fx->schema), "im_t%ld_%u", (long)getpid(),
	         fx_counter++);
	if (build_conninfo(base, fx->schema, fx->conninfo,
	                   sizeof(fx->conninfo)) != 0) {
		fx->schema[0] = '\0';
		return -1;
	}
	snprintf(sql, sizeof(sql),
	         "DROP SCHEMA IF EXISTS %s CASCADE;"
	         " CREATE SCHEMA %s",
	         fx->schema, fx->schema);
	if (exec_base(sql) != 0) {
		fx->schema[0] = '\0';
		return -1;
	}
	return 0;
}

void
pg_fixture_drop(pg_fixture *fx)
{
	char sql[256];

	if (fx->schema[0] == '\0') {
		return;
	}
	snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE",
	         fx->schema);
	(void)exec_base(sql);
	fx->schema[0] = '\0';
}

char *
pg_fixture_conninfo(const pg_fixture *fx, const char *extra, char *out,
                    size_t outlen)
{
	snprintf(out, outlen, "%s %s", fx->conninfo,
	         extra != NULL ? extra : "");
	return out;
}

PGconn *
pg_fixture_connect(const pg_fixture *fx)
{
	PGconn *c = PQconnectdb(fx->conninfo);

	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(fx_err, sizeof(fx_err), "connect: %s",
		         PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, quiet, NULL);
	return c;
}
