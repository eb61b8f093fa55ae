/*
 * The store schema, shared by every SQL backend: the migrations embedded
 * from libim/store/schema/NNN_name.sql (generated schema_gen.c) and the
 * decision which of them a database still needs.
 *
 * How a backend migrates (each step its own transaction, so a crash leaves
 * the database at some whole version):
 *   loop:
 *     BEGIN (write-locked: sqlite BEGIN IMMEDIATE, pg LOCK im_schema)
 *     exec im__schema_bootstrap_sql
 *     current = result of im__schema_version_sql (NULL = 0)
 *     rc = im__schema_next(current, &m, errbuf)
 *     rc < 0  -> ROLLBACK, IM_ESCHEMA
 *     m NULL  -> COMMIT, done (schema_out = current)
 *     exec m->sql, exec im__schema_set_sql(m->version), COMMIT
 */
#ifndef IM_STORE_SCHEMA_H
#define IM_STORE_SCHEMA_H

#include "im/store.h"

struct im__migration {
	uint32_t version;
	const char *name;
	const char *sql;
};

/* Generated: ordered by version, versions 1..im__nmigrations. */
extern const struct im__migration im__migrations[];
extern const size_t im__nmigrations;

/* Portable SQL the runner needs besides the migrations themselves. */
extern const char im__schema_bootstrap_sql[];
extern const char im__schema_version_sql[];

/* Highest version this build knows (== IM_STORE_SCHEMA_VERSION). */
uint32_t im__schema_latest(void);

/*
 * The migration to apply to a database at version `current`: *next_out is
 * the first migration newer than current, or NULL when current is the
 * latest. A current newer than the latest returns IM_ESCHEMA and writes a
 * reason into errbuf (may be NULL).
 */
int im__schema_next(uint32_t current, const struct im__migration **next_out,
                    char *errbuf, size_t errlen);

/* Write the statement(s) recording `version` into buf; IM_EFULL if short. */
int im__schema_set_sql(char *buf, size_t len, uint32_t version);

#endif
