/*
 * Throwaway schemas for the PostgreSQL tests: every test gets a schema of
 * its own in the database named by IM_TEST_PG (scripts/test-pg sets it),
 * and opens stores with search_path pointing there.
 *
 * A missing IM_TEST_PG or an unreachable server is a test failure, never a
 * skip: the callers fail_msg() with pg_fixture_error().
 */
#ifndef IM_TEST_PG_FIXTURE_H
#define IM_TEST_PG_FIXTURE_H

#include <libpq-fe.h>
#include <stddef.h>

#define PG_FIXTURE_CONNINFO_MAX 1024

typedef struct pg_fixture {
	char schema[64];
	/* conninfo of the base database with search_path = schema */
	char conninfo[PG_FIXTURE_CONNINFO_MAX];
} pg_fixture;

/* Create a fresh empty schema. 0 or -1 (see pg_fixture_error()). */
int pg_fixture_create(pg_fixture *fx);
/* Drop the schema and everything in it; safe after a failed create. */
void pg_fixture_drop(pg_fixture *fx);
/*
 * conninfo of fx with extra "key=value" settings appended (application_name
 * and the like). Returns out.
 */
char *pg_fixture_conninfo(const pg_fixture *fx, const char *extra, char *out,
                          size_t outlen);
/* A raw libpq connection to fx (search_path set); NULL on failure. */
PGconn *pg_fixture_connect(const pg_fixture *fx);
/* Why the last call failed. */
const char *pg_fixture_error(void);

#endif
