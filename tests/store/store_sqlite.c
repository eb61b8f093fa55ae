/*
 * The conformance suite over the sqlite backend. Built twice: with
 * STORE_SQLITE_FILE it runs on a file in a fresh temporary directory (and
 * also checks reopening), otherwise on ":memory:".
 */
#include "conformance.h"

#include "store/sqlite/sqlite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct sqlite_ctx {
	char dir[256];
	char path[300];
	unsigned serial;
} sqlite_ctx;

static int
sq_fx_open_path(sqlite_ctx *c, im_store **out)
{
	char err[256] = "";
	int rc = im_store_sqlite_open(out, c->path, NULL, err, sizeof(err));

	if (rc != IM_OK) {
		fprintf(stderr, "# open %s: %s: %s\n", c->path, im_strerror(rc),
		        err);
	}
	return rc;
}

static int
sq_fx_open(void *ctx, im_store **out)
{
	sqlite_ctx *c = ctx;

#ifdef STORE_SQLITE_FILE
	snprintf(c->path, sizeof(c->path), "%s/store-%u.db", c->dir,
	         c->serial++);
#else
	snprintf(c->path, sizeof(c->path), ":memory:");
#endif
	return sq_fx_open_path(c, out);
}

#ifdef STORE_SQLITE_FILE
static int
sq_fx_reopen(void *ctx, im_store **out)
{
	return sq_fx_open_path(ctx, out);
}
#endif

static int
sq_fx_exec(void *ctx, im_store *st, const char *sql)
{
	sqlite3 *db = im__store_sqlite_db(st);
	char *err = NULL;

	if (db == NULL || sqlite3_exec(db, sql, NULL, NULL, &err) != 0) {
		fprintf(stderr, "# exec %s: %s\n", sql,
		        err != NULL ? err : "not a sqlite store");
		sqlite3_free(err);
		return IM_ERR;
	}
	return IM_OK;
}

static void
sq_fx_cleanup(void *ctx)
{
#ifdef STORE_SQLITE_FILE
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	sqlite_ctx *c = ctx;
	char p[320];

	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", c->path, sfx[i]);
		(void)unlink(p);
	}
#else
	(void)ctx;
#endif
}

int
main(void)
{
	sqlite_ctx c = {0};
	store_fixture fx = {
	        .ctx = &c,
	        .open = sq_fx_open,
	        .exec = sq_fx_exec,
	        .cleanup = sq_fx_cleanup,
	};
	int failed;

#ifdef STORE_SQLITE_FILE
	const char *tmp = getenv("TMPDIR");

	snprintf(c.dir, sizeof(c.dir), "%s/im-store-XXXXXX",
	         tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(c.dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	fx.name = "sqlite (file)";
	fx.reopen = sq_fx_reopen;
#else
	fx.name = "sqlite (:memory:)";
#endif
	failed = store_conformance_run(&fx);
#ifdef STORE_SQLITE_FILE
	(void)rmdir(c.dir);
#endif
	return failed != 0;
}
