/*
 * The statements of the sqlite backend and the one way every op runs
 * them: prepared once and cached, reset, bound, stepped to the end with
 * each row handed to a callback, and every failure mapped to an im_err
 * with detail. One place for this, so that an op says what it asks and
 * how it reads the rows, and no op can forget a reset or the guard
 * against being called from its own read callback.
 */
#include "store/sqlite/sqlite_internal.h"

#include <stdio.h>

static const char *const sq_sql[SQ_NSTMT] = {
        [SQ_BEGIN] = "BEGIN IMMEDIATE",
        [SQ_COMMIT] = "COMMIT",
        [SQ_ROLLBACK] = "ROLLBACK",
        [SQ_SLOT_LOAD] = "SELECT slot, epoch, owner FROM im_slots "
                         "WHERE kind = ?1 ORDER BY slot",
        [SQ_SLOT_GET] = "SELECT epoch FROM im_slots "
                        "WHERE kind = ?1 AND slot = ?2",
        [SQ_SLOT_INSERT] = "INSERT INTO im_slots (kind, slot, owner, epoch) "
                           "VALUES (?1, ?2, ?3, 1)",
        [SQ_SLOT_UPDATE] = "UPDATE im_slots SET owner = ?3, epoch = ?4 "
                           "WHERE kind = ?1 AND slot = ?2",
        /* The guard keeps max_id + step from leaving the signed range. */
        [SQ_SEG_BUMP] = "UPDATE im_segments SET max_id = max_id + ?3 "
                        "WHERE space = ?1 AND id = ?2 "
                        "AND max_id <= 9223372036854775807 - ?3 "
                        "RETURNING max_id",
        [SQ_SEG_FIRST] = "INSERT INTO im_segments (space, id, max_id) "
                         "VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        [SQ_MSG_INSERT] = "INSERT INTO im_messages (conv, seq, prev_seq, "
                          "ordinal, sender, dedup_id, reply_to, time_ms, "
                          "type, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                          "?8, ?9, ?10) ON CONFLICT DO NOTHING",
        [SQ_MSG_BY_DEDUP] = "SELECT seq, prev_seq, ordinal, reply_to, "
                            "time_ms, type FROM im_messages "
                            "WHERE conv = ?1 AND sender = ?2 "
                            "AND dedup_id = ?3",
        [SQ_MSG_READ] = "SELECT seq, prev_seq, ordinal, sender, dedup_id, "
                        "reply_to, time_ms, type, body FROM im_messages "
                        "WHERE conv = ?1 AND seq > ?2 AND seq <= ?3 "
                        "ORDER BY seq LIMIT ?4",
        [SQ_MSG_LAST] = "SELECT seq, ordinal FROM im_messages "
                        "WHERE conv = ?1 AND seq <= ?2 "
                        "ORDER BY seq DESC LIMIT 1",
        [SQ_GROUP_INSERT] = "INSERT INTO im_groups (gid, creator, "
                            "created_ms, name) VALUES (?1, ?2, ?3, ?4) "
                            "ON CONFLICT DO NOTHING",
        [SQ_GROUP_GET] = "SELECT creator, created_ms, name FROM im_groups "
                         "WHERE gid = ?1",
        [SQ_GKEY_GET] = "SELECT gid FROM im_group_keys "
                        "WHERE creator = ?1 AND dedup_id = ?2",
        [SQ_GKEY_INSERT] = "INSERT INTO im_group_keys (creator, dedup_id, "
                           "gid) VALUES (?1, ?2, ?3)",
        [SQ_MEMBER_INSERT] = "INSERT INTO im_members (gid, uid, read_seq, "
                             "read_ordinal, flags, joined_ms) "
                             "VALUES (?1, ?2, ?3, ?4, 0, ?5) "
                             "ON CONFLICT DO NOTHING",
        [SQ_MEMBER_DELETE] = "DELETE FROM im_members "
                             "WHERE gid = ?1 AND uid = ?2",
        [SQ_MEMBER_LIST] = "SELECT uid FROM im_members WHERE gid = ?1 "
                           "ORDER BY uid",
        [SQ_CONV_LOAD] = "SELECT m.gid, m.read_seq, m.read_ordinal, m.flags, "
                         "g.seq, g.ordinal, g.sender, g.time_ms, "
                         "substr(g.body, 1, ?2) "
                         "FROM im_members m LEFT JOIN im_messages g "
                         "ON g.conv = m.gid AND g.seq = (SELECT MAX(x.seq) "
                         "FROM im_messages x WHERE x.conv = m.gid) "
                         "WHERE m.uid = ?1 ORDER BY m.gid",
        /* SET sees the old row, so the ordinal follows the old read_seq. */
        [SQ_CONV_UPDATE] = "UPDATE im_members SET "
                           "read_ordinal = CASE WHEN ?3 > read_seq THEN ?4 "
                           "ELSE read_ordinal END, "
                           "read_seq = MAX(read_seq, ?3), flags = ?5 "
                           "WHERE gid = ?2 AND uid = ?1",
        /* A message is read for its sender (see msg_append). */
        [SQ_CONV_READ_OWN] = "UPDATE im_members SET read_seq = ?3, "
                             "read_ordinal = ?4 "
                             "WHERE gid = ?1 AND uid = ?2 AND read_seq < ?3",
        [SQ_UQ_INSERT] = "INSERT INTO im_userq (uid, seq, time_ms, type, "
                         "body) VALUES (?1, ?2, ?3, ?4, ?5) "
                         "ON CONFLICT DO NOTHING",
        [SQ_UQ_READ] = "SELECT seq, time_ms, type, body FROM im_userq "
                       "WHERE uid = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        [SQ_UQ_LAST] = "SELECT max(seq) FROM im_userq WHERE uid = ?1",
};

int
im__sq_fail(sq_store *sq, int rc, const char *what)
{
	int prim = rc & 0xff;

	im_store_set_error(&sq->base, "sqlite: %s: %s (%d)", what,
	                   sqlite3_errmsg(sq->db), rc);
	if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED) {
		return IM_EUNAVAIL;
	}
	if (prim == SQLITE_NOMEM) {
		return IM_ENOMEM;
	}
	if (im__sq_is_full(sq, rc)) {
		return IM_ENOSPC;
	}
	return IM_ERR;
}

int
im__sq_guard(sq_store *sq)
{
	if (sq->in_cb) {
		im_store_set_error(&sq->base, "sqlite: store called from its "
		                              "own read callback");
		return IM_ERR;
	}
	return IM_OK;
}

int
im__sq_prepare_all(sq_store *sq)
{
	int i, rc;

	if (sq->prepared) {
		return IM_OK;
	}
	for (i = 0; i < SQ_NSTMT; i++) {
		rc = sqlite3_prepare_v3(sq->db, sq_sql[i], -1,
		                        SQLITE_PREPARE_PERSISTENT, &sq->stmt[i],
		                        NULL);
		if (rc != SQLITE_OK) {
			return im__sq_fail(sq, rc, sq_sql[i]);
		}
	}
	sq->prepared = true;
	return IM_OK;
}

int
im__sq_exec_sql(sq_store *sq, const char *sql, const char *what)
{
	char *err = NULL;
	int rc = sqlite3_exec(sq->db, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		int ret = im__sq_fail(sq, rc, what);

		if (err != NULL) {
			im_store_set_error(&sq->base, "sqlite: %s: %s", what,
			                   err);
			sqlite3_free(err);
		}
		return ret;
	}
	return IM_OK;
}

static void
bind_args(sqlite3_stmt *s, const struct sq_arg *args, int nargs)
{
	int i;

	for (i = 0; i < nargs; i++) {
		const struct sq_arg *a = &args[i];

		switch (a->type) {
		case SQ_ARG_INT:
			sqlite3_bind_int64(s, i + 1, sq_i64(a->i));
			break;
		case SQ_ARG_TEXT:
			sqlite3_bind_text(s, i + 1, a->p, -1, SQLITE_STATIC);
			break;
		case SQ_ARG_BLOB:
			/* A NULL pointer would bind SQL NULL; bodies are NOT
			 * NULL. */
			if (a->len == 0) {
				sqlite3_bind_zeroblob(s, i + 1, 0);
			} else {
				sqlite3_bind_blob(s, i + 1, a->p, (int)a->len,
				                  SQLITE_STATIC);
			}
			break;
		}
	}
}

int
im__sq_run_stmt(sq_store *sq, sqlite3_stmt *s, const struct sq_arg *args,
                int nargs, const char *what, sq_row_fn fn, void *arg)
{
	int rc, ret = IM_OK;

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	bind_args(s, args, nargs);
	sq->in_cb = true;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (fn != NULL && (ret = fn(s, arg)) != 0) {
			break;
		}
	}
	sq->in_cb = false;
	if (ret == IM_OK && rc != SQLITE_DONE) {
		ret = im__sq_fail(sq, rc, what);
	}
	sqlite3_reset(s);
	return ret;
}

int
im__sq_run(sq_store *sq, enum sq_stmt_id id, const struct sq_arg *args,
           int nargs, const char *what, sq_row_fn fn, void *arg)
{
	return im__sq_run_stmt(sq, sq->stmt[id], args, nargs, what, fn, arg);
}

struct first_row {
	uint64_t *cols;
	int ncols;
	bool found;
};

static int
first_row_u64(sqlite3_stmt *s, void *arg)
{
	struct first_row *f = arg;
	int c;

	for (c = 0; !f->found && c < f->ncols; c++) {
		f->cols[c] = sq_col_u64(s, c);
	}
	f->found = true;
	return 0;
}

int
im__sq_run_u64(sq_store *sq, enum sq_stmt_id id, const struct sq_arg *args,
               int nargs, const char *what, uint64_t *cols_out, int ncols,
               bool *found_out)
{
	struct first_row f = {cols_out, ncols, false};
	int c, rc;

	for (c = 0; c < ncols; c++) {
		cols_out[c] = 0;
	}
	rc = im__sq_run(sq, id, args, nargs, what, first_row_u64, &f);
	if (found_out != NULL) {
		*found_out = f.found;
	}
	return rc;
}

static void
sq_rollback(sq_store *sq)
{
	if (!sqlite3_get_autocommit(sq->db)) {
		sqlite3_reset(sq->stmt[SQ_ROLLBACK]);
		(void)sqlite3_step(sq->stmt[SQ_ROLLBACK]);
		sqlite3_reset(sq->stmt[SQ_ROLLBACK]);
	}
}

int
im__sq_write_begin(sq_store *sq)
{
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK) {
		return rc;
	}
	return im__sq_run(sq, SQ_BEGIN, NULL, 0, "begin", NULL, NULL);
}

int
im__sq_end(sq_store *sq, int rc)
{
	if (rc == IM_OK) {
		rc = im__sq_run(sq, SQ_COMMIT, NULL, 0, "commit", NULL, NULL);
	}
	if (rc != IM_OK) {
		sq_rollback(sq);
	}
	if (rc == IM_ENOSPC) {
		im__sq_space_reclaim(sq);
	}
	return rc;
}
