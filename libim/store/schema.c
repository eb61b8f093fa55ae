/*
 * Which migrations a database needs. Kept out of the backends so sqlite and
 * PostgreSQL agree on it; the SQL here is portable to both.
 */
#include "store/schema.h"

#include <stdio.h>

const char im__schema_bootstrap_sql[] =
        "CREATE TABLE IF NOT EXISTS im_schema (version BIGINT NOT NULL)";

const char im__schema_version_sql[] = "SELECT MAX(version) FROM im_schema";

uint32_t
im__schema_latest(void)
{
	return im__nmigrations > 0 ? im__migrations[im__nmigrations - 1].version
	                           : 0;
}

int
im__schema_next(uint32_t current, const struct im__migration **next_out,
                char *errbuf, size_t errlen)
{
	size_t i;

	*next_out = NULL;
	if (current > im__schema_latest()) {
		if (errbuf != NULL && errlen > 0) {
			snprintf(errbuf, errlen,
			         "store schema version %u is newer than this "
			         "build of libim knows (%u); upgrade libim",
			         current, im__schema_latest());
		}
		return IM_ESCHEMA;
	}
	for (i = 0; i < im__nmigrations; i++) {
		if (im__migrations[i].version > current) {
			*next_out = &im__migrations[i];
			break;
		}
	}
	return IM_OK;
}

int
im__schema_set_sql(char *buf, size_t len, uint32_t version)
{
	int n;

	/* One row only: DELETE then INSERT keeps the runner's MAX() honest. */
	n = snprintf(buf, len,
	             "DELETE FROM im_schema; "
	             "INSERT INTO im_schema (version) VALUES (%u)",
	             version);
	if (n < 0 || (size_t)n >= len) {
		return IM_EFULL;
	}
	return IM_OK;
}
