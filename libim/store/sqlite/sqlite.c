/*
 * The sqlite storage backend: the embedded default and the test store.
 *
 * Durability: WAL with synchronous=FULL by default, so a commit that
 * returned survives power loss; NORMAL (opt-in) survives process crashes
 * only. Every write op is one BEGIN IMMEDIATE transaction: taking the write
 * lock up front means a busy database makes us wait (busy_timeout) at BEGIN
 * instead of failing half-way through a batch, and the fence read happens
 * under the same lock as the writes it guards.
 *
 * Statements are prepared once after the schema is migrated and cached for
 * the life of the handle, so steady-state ops never parse SQL or allocate
 * (the rechaining scratch of msg_append grows to the largest batch seen).
 *
 * Values are the uint64 bit patterns in signed 64-bit columns; seqs and
 * ordinals are below 2^63 (the wrappers check), so order is preserved, and
 * read bounds above INT64_MAX are clamped.
 *
 * A read streams rows straight from a cached statement, so its callback
 * must not call back into the same handle; the backend refuses such calls
 * with IM_ERR rather than corrupting the statement it is iterating.
 *
 * This file holds migrations, open, close and the ops table. The
 * statements and the helper every op runs them through are in
 * sqlite_query.c, the fenced appends in sqlite_append.c, and the other
 * ops in sqlite_slots.c, sqlite_msgs.c, sqlite_groups.c and
 * sqlite_nodes.c.
 */
#include "store/sqlite/sqlite_internal.h"

#include "store/schema.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- schema ---------------------------------------------------------- */

static int
sq_schema_version(sq_store *sq, uint32_t *out)
{
	sqlite3_stmt *s = NULL;
	sqlite3_int64 v;
	int rc;

	rc = sqlite3_prepare_v2(sq->db, im__schema_version_sql, -1, &s, NULL);
	if (rc != SQLITE_OK) {
		return im__sq_fail(sq, rc, "read schema version");
	}
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		int ret = im__sq_fail(sq, rc, "read schema version");

		sqlite3_finalize(s);
		return ret;
	}
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	if (v < 0 || v > (sqlite3_int64)UINT32_MAX) {
		im_store_set_error(&sq->base,
		                   "sqlite: schema version %lld "
		                   "is out of range",
		                   (long long)v);
		return IM_ESCHEMA;
	}
	*out = (uint32_t)v;
	return IM_OK;
}

/* One migration step per transaction; *done_out once up to date. */
static int
sq_migrate_step(sq_store *sq, uint32_t *version_out, bool *done_out)
{
	const struct im__migration *m;
	char buf[128];
	uint32_t cur = 0;
	int rc;

	*done_out = false;
	if ((rc = im__sq_exec_sql(sq, "BEGIN IMMEDIATE", "migrate")) != IM_OK) {
		return rc;
	}
	rc = im__sq_exec_sql(sq, im__schema_bootstrap_sql, "create im_schema");
	if (rc == IM_OK) {
		rc = sq_schema_version(sq, &cur);
	}
	if (rc == IM_OK) {
		rc = im__schema_next(cur, &m, sq->base.errmsg,
		                     sizeof(sq->base.errmsg));
	}
	if (rc == IM_OK && m == NULL) {
		*version_out = cur;
		*done_out = true;
	} else if (rc == IM_OK) {
		rc = im__sq_exec_sql(sq, m->sql, m->name);
		if (rc == IM_OK) {
			rc = im__schema_set_sql(buf, sizeof(buf), m->version);
		}
		if (rc == IM_OK) {
			rc = im__sq_exec_sql(sq, buf, "record schema version");
		}
		*version_out = m->version;
	}
	if (rc != IM_OK) {
		(void)sqlite3_exec(sq->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	return im__sq_exec_sql(sq, "COMMIT", "migrate commit");
}

static int
sq_migrate(im_store *st, uint32_t *schema_out)
{
	sq_store *sq = sq_of(st);
	uint32_t version = 0;
	bool done = false;
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK) {
		return rc;
	}
	/* Bounded: each step applies one known migration or finishes. */
	for (size_t i = 0; i <= im__nmigrations && !done; i++) {
		if ((rc = sq_migrate_step(sq, &version, &done)) != IM_OK) {
			return rc;
		}
	}
	if (!done) {
		im_store_set_error(st, "sqlite: migration did not converge");
		return IM_ERR;
	}
	if ((rc = im__sq_prepare_all(sq)) != IM_OK) {
		return rc;
	}
	*schema_out = version;
	return IM_OK;
}

/* ---- open / close ---------------------------------------------------- */

static void
sq_close(im_store *st)
{
	sq_store *sq = sq_of(st);
	int i;

	for (i = 0; i < SQ_NSTMT; i++) {
		sqlite3_finalize(sq->stmt[i]);
	}
	/* close_v2 rolls back an open transaction and never fails on busy. */
	sqlite3_close_v2(sq->db);
	free(sq->chain);
	free(sq);
}

static const struct im_store_ops sq_ops = {
        .version = IM_STORE_OPS_VERSION,
        .name = "sqlite",
        .close = sq_close,
        .migrate = sq_migrate,
        .slot_load = im__sq_slot_load,
        .slot_cas = im__sq_slot_cas,
        .slot_cas_many = im__sq_slot_cas_many,
        .seg_take = im__sq_seg_take,
        .msg_append = im__sq_msg_append,
        .msg_read = im__sq_msg_read,
        .msg_last = im__sq_msg_last,
        .msg_find_dedup = im__sq_msg_find_dedup,
        .group_create = im__sq_group_create,
        .group_lookup = im__sq_group_lookup,
        .member_add = im__sq_member_add,
        .member_remove = im__sq_member_remove,
        .member_list = im__sq_member_list,
        .conv_load = im__sq_conv_load,
        .conv_update = im__sq_conv_update,
        .uq_append = im__sq_uq_append,
        .uq_read = im__sq_uq_read,
        /* version 2 */
        .node_register = im__sq_node_register,
        .node_heartbeat = im__sq_node_heartbeat,
        .node_list = im__sq_node_list,
        /* version 4 */
        .group_create_many = im__sq_group_create_many,
        .seg_take_many = im__sq_seg_take_many,
        .uq_last = im__sq_uq_last,
        /* version 5 */
        .group_create_dedup = im__sq_group_create_dedup,
        /* version 6 */
        .member_add_fenced = im__sq_member_add_fenced,
        .member_remove_fenced = im__sq_member_remove_fenced,
        .conv_update_fenced = im__sq_conv_update_fenced,
};

static void
sq_errbuf(char *errbuf, size_t errlen, const char *msg)
{
	if (errbuf != NULL && errlen > 0) {
		snprintf(errbuf, errlen, "%s", msg);
	}
}

static int
sq_pragmas(sq_store *sq, const im_store_sqlite_opts *opts)
{
	char sql[160];
	int rc;

	sqlite3_busy_timeout(sq->db, (int)IM__MIN(opts->busy_timeout_ms,
	                                          (uint32_t)INT32_MAX));
	/* Before the first access to the WAL: then sqlite keeps its
	 * wal-index in heap memory, takes the file's exclusive lock once and
	 * no transaction calls fcntl again. Version 1 opts have no field. */
	if (opts->version >= 2 && opts->exclusive) {
		rc = im__sq_exec_sql(sq, "PRAGMA locking_mode=EXCLUSIVE",
		                     "locking_mode");
		if (rc != IM_OK) {
			return rc;
		}
	}
	/* :memory: answers "memory" here, which is what it can do. */
	rc = im__sq_exec_sql(sq, "PRAGMA journal_mode=WAL", "journal_mode");
	if (rc != IM_OK) {
		return rc;
	}
	/* The WAL's bound against the free space (sqlite_space.c). */
	rc = im__sq_space_pragmas(
	        sq, opts->version >= 2 ? IM__MIN(opts->wal_autocheckpoint,
	                                         (uint32_t)INT32_MAX)
	                               : 0);
	if (rc != IM_OK) {
		return rc;
	}
	snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s",
	         opts->sync == IM_SQLITE_SYNC_NORMAL ? "NORMAL" : "FULL");
	return im__sq_exec_sql(sq, sql, "synchronous");
}

int
im_store_sqlite_open(im_store **out, const char *path,
                     const im_store_sqlite_opts *opts, char *errbuf,
                     size_t errlen)
{
	static const im_store_sqlite_opts defaults = IM_STORE_SQLITE_OPTS_INIT;
	sq_store *sq = NULL;
	uint32_t version;
	int rc;

	if (out != NULL) {
		*out = NULL;
	}
	if (opts == NULL) {
		opts = &defaults;
	}
	if (out == NULL || path == NULL || opts->version == 0 ||
	    opts->version > IM_STORE_SQLITE_OPTS_VERSION ||
	    (opts->sync != IM_SQLITE_SYNC_FULL &&
	     opts->sync != IM_SQLITE_SYNC_NORMAL)) {
		sq_errbuf(errbuf, errlen, "invalid argument");
		return IM_EINVAL;
	}
	sq = calloc(1, sizeof(*sq));
	if (sq == NULL) {
		sq_errbuf(errbuf, errlen, "out of memory");
		return IM_ENOMEM;
	}
	rc = im_store_init(&sq->base, &sq_ops);
	if (rc != IM_OK) {
		free(sq);
		sq_errbuf(errbuf, errlen, "bad ops table");
		return rc;
	}
	rc = sqlite3_open_v2(path, &sq->db,
	                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	                             SQLITE_OPEN_NOMUTEX,
	                     NULL);
	if (rc != SQLITE_OK) {
		rc = im__sq_fail(sq, rc, path);
		goto fail;
	}
	if ((rc = sq_pragmas(sq, opts)) != IM_OK ||
	    (rc = sq_migrate(&sq->base, &version)) != IM_OK) {
		goto fail;
	}
	*out = &sq->base;
	return IM_OK;
fail:
	sq_errbuf(errbuf, errlen, sq->base.errmsg);
	sq_close(&sq->base);
	return rc == IM_EUNAVAIL || rc == IM_ESCHEMA || rc == IM_ENOMEM ||
	                       rc == IM_ENOSPC
	               ? rc
	               : IM_ERR;
}

sqlite3 *
im__store_sqlite_db(im_store *st)
{
	if (st == NULL || st->ops != &sq_ops) {
		return NULL;
	}
	return sq_of(st)->db;
}
