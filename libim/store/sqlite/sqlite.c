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
 */
#include "store/sqlite/sqlite.h"

#include "im/sys/store.h"
#include "internal.h"
#include "store/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum sq_stmt_id {
	SQ_BEGIN,
	SQ_COMMIT,
	SQ_ROLLBACK,
	SQ_SLOT_LOAD,
	SQ_SLOT_GET,
	SQ_SLOT_INSERT,
	SQ_SLOT_UPDATE,
	SQ_SEG_BUMP,
	SQ_SEG_FIRST,
	SQ_MSG_INSERT,
	SQ_MSG_BY_DEDUP,
	SQ_MSG_READ,
	SQ_MSG_LAST,
	SQ_GROUP_INSERT,
	SQ_GROUP_GET,
	SQ_MEMBER_INSERT,
	SQ_MEMBER_DELETE,
	SQ_MEMBER_LIST,
	SQ_CONV_LOAD,
	SQ_CONV_UPDATE,
	SQ_UQ_INSERT,
	SQ_UQ_READ,
	SQ_UQ_LAST,
	SQ_NSTMT
};

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
        [SQ_UQ_INSERT] = "INSERT INTO im_userq (uid, seq, time_ms, type, "
                         "body) VALUES (?1, ?2, ?3, ?4, ?5) "
                         "ON CONFLICT DO NOTHING",
        [SQ_UQ_READ] = "SELECT seq, time_ms, type, body FROM im_userq "
                       "WHERE uid = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        [SQ_UQ_LAST] = "SELECT max(seq) FROM im_userq WHERE uid = ?1",
};

/* Where the chain of a conv stands after message i of a batch. */
struct sq_chain {
	size_t prev_idx; /* previous message of the same conv, or SIZE_MAX */
	im_seq next_prev;
	uint64_t next_ord;
};

typedef struct sq_store {
	im_store base; /* first: the wrappers see only this */
	sqlite3 *db;
	sqlite3_stmt *stmt[SQ_NSTMT];
	bool prepared;
	bool in_cb; /* a read is streaming rows to its callback */
	struct sq_chain *chain;
	size_t chain_cap;
} sq_store;

static const struct im_store_ops sq_ops;

static sq_store *
sq_of(im_store *st)
{
	return (sq_store *)st;
}

static sqlite3_int64
sq_i64(uint64_t v)
{
	return (sqlite3_int64)v;
}

/* Bounds of range reads: the stored range ends at INT64_MAX. */
static sqlite3_int64
sq_bound(im_seq s)
{
	return s > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)s;
}

static uint64_t
sq_col_u64(sqlite3_stmt *s, int col)
{
	return (uint64_t)sqlite3_column_int64(s, col);
}

static const char *
sq_kind_name(im_kind kind)
{
	return kind == IM_KIND_USER ? "user" : "group";
}

static uint64_t
sq_now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
		return 0;
	}
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * Turn a sqlite failure into an im_err with detail. A lock still held when
 * busy_timeout ran out is IM_EUNAVAIL: the caller may retry, and for writes
 * nothing was committed.
 */
static int
sq_fail(sq_store *sq, int rc, const char *what)
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
	return IM_ERR;
}

static int
sq_guard(sq_store *sq)
{
	if (sq->in_cb) {
		im_store_set_error(&sq->base, "sqlite: store called from its "
		                              "own read callback");
		return IM_ERR;
	}
	return IM_OK;
}

static sqlite3_stmt *
sq_stmt(sq_store *sq, enum sq_stmt_id id)
{
	sqlite3_stmt *s = sq->stmt[id];

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

/* Step a statement that returns no row (or whose row is not needed). */
static int
sq_exec_stmt(sq_store *sq, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		return sq_fail(sq, rc, what);
	}
	return IM_OK;
}

static int
sq_begin(sq_store *sq)
{
	return sq_exec_stmt(sq, sq_stmt(sq, SQ_BEGIN), "begin");
}

static void
sq_rollback(sq_store *sq)
{
	if (!sqlite3_get_autocommit(sq->db)) {
		(void)sqlite3_step(sq_stmt(sq, SQ_ROLLBACK));
		sqlite3_reset(sq->stmt[SQ_ROLLBACK]);
	}
}

static int
sq_commit(sq_store *sq)
{
	int rc = sq_exec_stmt(sq, sq_stmt(sq, SQ_COMMIT), "commit");

	if (rc != IM_OK) {
		sq_rollback(sq);
	}
	return rc;
}

/* Finish a write transaction: commit on success, roll back otherwise. */
static int
sq_end(sq_store *sq, int rc)
{
	if (rc == IM_OK) {
		return sq_commit(sq);
	}
	sq_rollback(sq);
	return rc;
}

static int
sq_bind_blob(sqlite3_stmt *s, int idx, const void *p, uint32_t len)
{
	/* A NULL pointer would bind SQL NULL; bodies are NOT NULL. */
	if (len == 0) {
		return sqlite3_bind_zeroblob(s, idx, 0);
	}
	return sqlite3_bind_blob(s, idx, p, (int)len, SQLITE_STATIC);
}

/* ---- schema ---------------------------------------------------------- */

static int
sq_exec_sql(sq_store *sq, const char *sql, const char *what)
{
	char *err = NULL;
	int rc = sqlite3_exec(sq->db, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		int ret = sq_fail(sq, rc, what);

		if (err != NULL) {
			im_store_set_error(&sq->base, "sqlite: %s: %s", what,
			                   err);
			sqlite3_free(err);
		}
		return ret;
	}
	return IM_OK;
}

static int
sq_schema_version(sq_store *sq, uint32_t *out)
{
	sqlite3_stmt *s = NULL;
	sqlite3_int64 v;
	int rc;

	rc = sqlite3_prepare_v2(sq->db, im__schema_version_sql, -1, &s, NULL);
	if (rc != SQLITE_OK) {
		return sq_fail(sq, rc, "read schema version");
	}
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		int ret = sq_fail(sq, rc, "read schema version");

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
	if ((rc = sq_exec_sql(sq, "BEGIN IMMEDIATE", "migrate")) != IM_OK) {
		return rc;
	}
	rc = sq_exec_sql(sq, im__schema_bootstrap_sql, "create im_schema");
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
		rc = sq_exec_sql(sq, m->sql, m->name);
		if (rc == IM_OK) {
			rc = im__schema_set_sql(buf, sizeof(buf), m->version);
		}
		if (rc == IM_OK) {
			rc = sq_exec_sql(sq, buf, "record schema version");
		}
		*version_out = m->version;
	}
	if (rc != IM_OK) {
		(void)sqlite3_exec(sq->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	return sq_exec_sql(sq, "COMMIT", "migrate commit");
}

static int
sq_prepare_all(sq_store *sq)
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
			return sq_fail(sq, rc, sq_sql[i]);
		}
	}
	sq->prepared = true;
	return IM_OK;
}

static int
sq_migrate(im_store *st, uint32_t *schema_out)
{
	sq_store *sq = sq_of(st);
	uint32_t version = 0;
	bool done = false;
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK) {
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
	if ((rc = sq_prepare_all(sq)) != IM_OK) {
		return rc;
	}
	*schema_out = version;
	return IM_OK;
}

/* ---- slots, segments, fences ----------------------------------------- */

static int
sq_slot_load(im_store *st, im_kind kind, im_slot_cb cb, void *payload)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s;
	int rc, ret = IM_OK;

	if ((rc = sq_guard(sq)) != IM_OK) {
		return rc;
	}
	s = sq_stmt(sq, SQ_SLOT_LOAD);
	sqlite3_bind_int64(s, 1, kind);
	sq->in_cb = true;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		im_slot_row row = {
		        .kind = kind,
		        .slot = (uint32_t)sqlite3_column_int64(s, 0),
		        .epoch = sq_col_u64(s, 1),
		        .owner = (const char *)sqlite3_column_text(s, 2),
		};

		if (row.owner == NULL) {
			row.owner = "";
		}
		if ((ret = cb(&row, payload)) != 0) {
			break;
		}
	}
	sq->in_cb = false;
	if (ret == IM_OK && rc != SQLITE_DONE) {
		ret = sq_fail(sq, rc, "slot_load");
	}
	sqlite3_reset(s);
	return ret;
}

/* The slot's epoch, 0 when no row (never owned). */
static int
sq_slot_epoch(sq_store *sq, im_kind kind, uint32_t slot, im_epoch *out)
{
	sqlite3_stmt *s = sq_stmt(sq, SQ_SLOT_GET);
	int rc;

	sqlite3_bind_int64(s, 1, kind);
	sqlite3_bind_int64(s, 2, slot);
	rc = sqlite3_step(s);
	*out = rc == SQLITE_ROW ? sq_col_u64(s, 0) : 0;
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		return sq_fail(sq, rc, "read slot epoch");
	}
	return IM_OK;
}

static int
sq_slot_cas(im_store *st, im_kind kind, uint32_t slot, im_epoch expect,
            const char *owner, im_epoch *epoch_out)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s;
	im_epoch cur;
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK || (rc = sq_begin(sq)) != IM_OK) {
		return rc;
	}
	if ((rc = sq_slot_epoch(sq, kind, slot, &cur)) != IM_OK) {
		goto out;
	}
	if (cur != expect) {
		*epoch_out = cur;
		im_store_set_error(st, "slot %s/%u is at epoch %llu, not %llu",
		                   sq_kind_name(kind), slot,
		                   (unsigned long long)cur,
		                   (unsigned long long)expect);
		rc = IM_ECONFLICT;
		goto out;
	}
	s = sq_stmt(sq, cur == 0 ? SQ_SLOT_INSERT : SQ_SLOT_UPDATE);
	sqlite3_bind_int64(s, 1, kind);
	sqlite3_bind_int64(s, 2, slot);
	sqlite3_bind_text(s, 3, owner, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, sq_i64(expect + 1));
	rc = sq_exec_stmt(sq, s, "slot_cas");
out:
	rc = sq_end(sq, rc);
	if (rc == IM_OK) {
		*epoch_out = expect + 1;
	}
	return rc;
}

/* All of them in one transaction: one fsync for a node's whole share. */
static int
sq_slot_cas_many(im_store *st, im_kind kind, const uint32_t *slots,
                 const im_epoch *expect, size_t n, const char *owner,
                 im_epoch *epochs_out)
{
	sq_store *sq = sq_of(st);
	size_t i, conflicts = 0;
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK || (rc = sq_begin(sq)) != IM_OK) {
		return rc;
	}
	for (i = 0; i < n && rc == IM_OK; i++) {
		rc = sq_slot_epoch(sq, kind, slots[i], &epochs_out[i]);
		if (rc == IM_OK && epochs_out[i] != expect[i]) {
			if (conflicts++ == 0) {
				im_store_set_error(
				        st, "slot %s/%u is at epoch %llu, not %llu",
				        sq_kind_name(kind), slots[i],
				        (unsigned long long)epochs_out[i],
				        (unsigned long long)expect[i]);
			}
		}
	}
	if (rc == IM_OK && conflicts > 0) {
		rc = IM_ECONFLICT;
	}
	for (i = 0; i < n && rc == IM_OK; i++) {
		sqlite3_stmt *s = sq_stmt(sq, expect[i] == 0 ? SQ_SLOT_INSERT
		                                             : SQ_SLOT_UPDATE);

		sqlite3_bind_int64(s, 1, kind);
		sqlite3_bind_int64(s, 2, slots[i]);
		sqlite3_bind_text(s, 3, owner, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 4, sq_i64(expect[i] + 1));
		rc = sq_exec_stmt(sq, s, "slot_cas_many");
	}
	rc = sq_end(sq, rc);
	if (rc == IM_OK) {
		for (i = 0; i < n; i++) {
			epochs_out[i] = expect[i] + 1;
		}
	}
	return rc;
}

/* Take one segment inside the caller's write transaction. */
static int
sq_seg_one(sq_store *sq, const im_seg_key *key, uint32_t step,
           im_seg *seg_out)
{
	sqlite3_stmt *s;
	uint64_t max_id = 0;
	bool got = false;
	int rc;

	s = sq_stmt(sq, SQ_SEG_BUMP);
	sqlite3_bind_int64(s, 1, key->space);
	sqlite3_bind_int64(s, 2, sq_i64(key->id));
	sqlite3_bind_int64(s, 3, step);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		max_id = sq_col_u64(s, 0);
		got = true;
		/* Drain so the UPDATE ... RETURNING completes. */
		rc = sqlite3_step(s);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		return sq_fail(sq, rc, "seg_take");
	}
	if (!got) {
		s = sq_stmt(sq, SQ_SEG_FIRST);
		sqlite3_bind_int64(s, 1, key->space);
		sqlite3_bind_int64(s, 2, sq_i64(key->id));
		sqlite3_bind_int64(s, 3, step);
		if ((rc = sq_exec_stmt(sq, s, "seg_take")) != IM_OK) {
			return rc;
		}
		if (sqlite3_changes(sq->db) == 0) {
			/* The row exists but the guard refused the bump. */
			im_store_set_error(&sq->base,
			                   "id space %d/%llu is exhausted",
			                   (int)key->space,
			                   (unsigned long long)key->id);
			return IM_EFULL;
		}
		max_id = step;
	}
	seg_out->first = max_id - step + 1;
	seg_out->last = max_id;
	return IM_OK;
}

static int
sq_seg_take(im_store *st, const im_seg_key *key, uint32_t step, im_seg *seg_out)
{
	sq_store *sq = sq_of(st);
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK || (rc = sq_begin(sq)) != IM_OK) {
		return rc;
	}
	return sq_end(sq, sq_seg_one(sq, key, step, seg_out));
}

static int
sq_seg_take_many(im_store *st, const im_seg_key *keys, size_t n,
                 uint32_t step, im_seg *segs_out)
{
	sq_store *sq = sq_of(st);
	size_t i;
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK || (rc = sq_begin(sq)) != IM_OK) {
		return rc;
	}
	for (i = 0; i < n && rc == IM_OK; i++) {
		rc = sq_seg_one(sq, &keys[i], step, &segs_out[i]);
	}
	return sq_end(sq, rc);
}

static int
sq_check_fences(sq_store *sq, const im_fence *fences, size_t nfences)
{
	im_epoch cur;
	size_t i;
	int rc;

	for (i = 0; i < nfences; i++) {
		const im_fence *f = &fences[i];

		rc = sq_slot_epoch(sq, f->kind, f->slot, &cur);
		if (rc != IM_OK) {
			return rc;
		}
		/* Epoch 0 is "never owned": no owner may write with it. */
		if (cur != f->epoch || cur == 0) {
			im_store_set_error(&sq->base,
			                   "fenced: slot %s/%u is at epoch "
			                   "%llu, writer holds epoch %llu",
			                   sq_kind_name(f->kind), f->slot,
			                   (unsigned long long)cur,
			                   (unsigned long long)f->epoch);
			return IM_ESTALE;
		}
	}
	return IM_OK;
}

/* ---- messages -------------------------------------------------------- */

static int
sq_chain_reserve(sq_store *sq, size_t n)
{
	struct sq_chain *c;

	if (n <= sq->chain_cap) {
		return IM_OK;
	}
	c = realloc(sq->chain, n * sizeof(*c));
	if (c == NULL) {
		im_store_set_error(&sq->base,
		                   "out of memory for a batch "
		                   "of %zu",
		                   n);
		return IM_ENOMEM;
	}
	sq->chain = c;
	sq->chain_cap = n;
	return IM_OK;
}

/*
 * Check the per-conv chains of a batch before touching the database and
 * remember, for each message, the previous one of its conv. The backward
 * scan is short for the usual batch (few convs, messages of one conv near
 * each other).
 */
static int
sq_chain_check(sq_store *sq, const im_msg *msgs, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		sq->chain[i].prev_idx = SIZE_MAX;
		for (j = i; j-- > 0;) {
			if (msgs[j].conv == msgs[i].conv) {
				sq->chain[i].prev_idx = j;
				break;
			}
		}
		j = sq->chain[i].prev_idx;
		if (j != SIZE_MAX && (msgs[i].prev_seq != msgs[j].seq ||
		                      msgs[i].ordinal != msgs[j].ordinal + 1)) {
			im_store_set_error(&sq->base,
			                   "message %zu breaks the chain of "
			                   "conv %llu (prev_seq %llu, ordinal "
			                   "%llu after seq %llu ordinal %llu)",
			                   i, (unsigned long long)msgs[i].conv,
			                   (unsigned long long)msgs[i].prev_seq,
			                   (unsigned long long)msgs[i].ordinal,
			                   (unsigned long long)msgs[j].seq,
			                   (unsigned long long)msgs[j].ordinal);
			return IM_EINVAL;
		}
	}
	return IM_OK;
}

static int
sq_find_dedup(sq_store *sq, im_gid conv, im_uid sender, uint64_t dedup_id,
              im_msg *out)
{
	sqlite3_stmt *s = sq_stmt(sq, SQ_MSG_BY_DEDUP);
	int rc;

	sqlite3_bind_int64(s, 1, sq_i64(conv));
	sqlite3_bind_int64(s, 2, sq_i64(sender));
	sqlite3_bind_int64(s, 3, sq_i64(dedup_id));
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*out = (im_msg){
		        .conv = conv,
		        .seq = sq_col_u64(s, 0),
		        .prev_seq = sq_col_u64(s, 1),
		        .ordinal = sq_col_u64(s, 2),
		        .sender = sender,
		        .dedup_id = dedup_id,
		        .reply_to = sq_col_u64(s, 3),
		        .time_ms = sq_col_u64(s, 4),
		        .type = (uint32_t)sqlite3_column_int64(s, 5),
		};
	}
	sqlite3_reset(s);
	if (rc == SQLITE_ROW) {
		return IM_OK;
	}
	if (rc == SQLITE_DONE) {
		return IM_ENOTFOUND;
	}
	return sq_fail(sq, rc, "find by dedup key");
}

static int
sq_append_one(sq_store *sq, const im_msg *msgs, size_t i, im_append_result *res)
{
	const im_msg *m = &msgs[i];
	struct sq_chain *c = &sq->chain[i];
	sqlite3_stmt *s = sq_stmt(sq, SQ_MSG_INSERT);
	im_seq prev = m->prev_seq;
	uint64_t ord = m->ordinal;
	im_msg orig;
	int rc;

	if (c->prev_idx != SIZE_MAX) {
		prev = sq->chain[c->prev_idx].next_prev;
		ord = sq->chain[c->prev_idx].next_ord;
	}
	sqlite3_bind_int64(s, 1, sq_i64(m->conv));
	sqlite3_bind_int64(s, 2, sq_i64(m->seq));
	sqlite3_bind_int64(s, 3, sq_i64(prev));
	sqlite3_bind_int64(s, 4, sq_i64(ord));
	sqlite3_bind_int64(s, 5, sq_i64(m->sender));
	sqlite3_bind_int64(s, 6, sq_i64(m->dedup_id));
	sqlite3_bind_int64(s, 7, sq_i64(m->reply_to));
	sqlite3_bind_int64(s, 8, sq_i64(m->time_ms));
	sqlite3_bind_int64(s, 9, m->type);
	sq_bind_blob(s, 10, m->body, m->body_len);
	if ((rc = sq_exec_stmt(sq, s, "msg_append")) != IM_OK) {
		return rc;
	}
	if (sqlite3_changes(sq->db) == 1) {
		*res = (im_append_result){m->seq, prev, ord, m->time_ms, false};
		c->next_prev = m->seq;
		c->next_ord = ord + 1;
		return IM_OK;
	}
	/*
	 * The insert hit a unique index: only a dedup key seen before is a
	 * dup. The same seq holding another message is the owner's bug
	 * (a reused seq), refused so no message is silently lost.
	 */
	rc = sq_find_dedup(sq, m->conv, m->sender, m->dedup_id, &orig);
	if (rc == IM_ENOTFOUND) {
		im_store_set_error(&sq->base,
		                   "seq %llu of conv %llu already "
		                   "holds another message",
		                   (unsigned long long)m->seq,
		                   (unsigned long long)m->conv);
		return IM_ECONFLICT;
	}
	if (rc != IM_OK) {
		return rc;
	}
	*res = (im_append_result){orig.seq, orig.prev_seq, orig.ordinal,
	                          orig.time_ms, true};
	c->next_prev = prev;
	c->next_ord = ord;
	return IM_OK;
}

static int
sq_msg_append(im_store *st, const im_fence *fences, size_t nfences,
              const im_msg *msgs, size_t n, im_append_result *res_out)
{
	sq_store *sq = sq_of(st);
	size_t i;
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK ||
	    (rc = sq_chain_reserve(sq, n)) != IM_OK ||
	    (rc = sq_chain_check(sq, msgs, n)) != IM_OK) {
		return rc;
	}
	if ((rc = sq_begin(sq)) != IM_OK) {
		return rc;
	}
	if ((rc = sq_check_fences(sq, fences, nfences)) != IM_OK) {
		goto out;
	}
	for (i = 0; i < n; i++) {
		if ((rc = sq_append_one(sq, msgs, i, &res_out[i])) != IM_OK) {
			goto out;
		}
	}
out:
	return sq_end(sq, rc);
}

static int
sq_msg_read(im_store *st, im_gid conv, im_seq after, im_seq until,
            uint32_t limit, im_msg_cb cb, void *payload)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s;
	int rc, ret = IM_OK;

	if ((rc = sq_guard(sq)) != IM_OK) {
		return rc;
	}
	if (after >= (uint64_t)INT64_MAX) {
		return IM_OK;
	}
	s = sq_stmt(sq, SQ_MSG_READ);
	sqlite3_bind_int64(s, 1, sq_i64(conv));
	sqlite3_bind_int64(s, 2, sq_bound(after));
	sqlite3_bind_int64(s, 3, sq_bound(until));
	sqlite3_bind_int64(s, 4, limit);
	sq->in_cb = true;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		im_msg m = {
		        .conv = conv,
		        .seq = sq_col_u64(s, 0),
		        .prev_seq = sq_col_u64(s, 1),
		        .ordinal = sq_col_u64(s, 2),
		        .sender = sq_col_u64(s, 3),
		        .dedup_id = sq_col_u64(s, 4),
		        .reply_to = sq_col_u64(s, 5),
		        .time_ms = sq_col_u64(s, 6),
		        .type = (uint32_t)sqlite3_column_int64(s, 7),
		        .body = sqlite3_column_blob(s, 8),
		        .body_len = (uint32_t)sqlite3_column_bytes(s, 8),
		};

		if ((ret = cb(&m, payload)) != 0) {
			break;
		}
	}
	sq->in_cb = false;
	if (ret == IM_OK && rc != SQLITE_DONE) {
		ret = sq_fail(sq, rc, "msg_read");
	}
	sqlite3_reset(s);
	return ret;
}

static int
sq_last(sq_store *sq, im_gid conv, im_seq at, im_msg_pos *pos_out)
{
	sqlite3_stmt *s = sq_stmt(sq, SQ_MSG_LAST);
	int rc;

	sqlite3_bind_int64(s, 1, sq_i64(conv));
	sqlite3_bind_int64(s, 2, sq_bound(at));
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		pos_out->seq = sq_col_u64(s, 0);
		pos_out->ordinal = sq_col_u64(s, 1);
	} else {
		pos_out->seq = 0;
		pos_out->ordinal = 0;
	}
	sqlite3_reset(s);
	if (rc == SQLITE_ROW) {
		return IM_OK;
	}
	if (rc == SQLITE_DONE) {
		return IM_ENOTFOUND;
	}
	return sq_fail(sq, rc, "msg_last");
}

static int
sq_msg_last(im_store *st, im_gid conv, im_seq at, im_msg_pos *pos_out)
{
	sq_store *sq = sq_of(st);
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK) {
		return rc;
	}
	rc = sq_last(sq, conv, at, pos_out);
	if (rc == IM_ENOTFOUND) {
		im_store_set_error(st,
		                   "conv %llu has no message at or "
		                   "before seq %llu",
		                   (unsigned long long)conv,
		                   (unsigned long long)at);
	}
	return rc;
}

static int
sq_msg_find_dedup(im_store *st, im_gid conv, im_uid sender, uint64_t dedup_id,
                  im_msg *msg_out)
{
	sq_store *sq = sq_of(st);
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK) {
		return rc;
	}
	rc = sq_find_dedup(sq, conv, sender, dedup_id, msg_out);
	if (rc == IM_ENOTFOUND) {
		im_store_set_error(st,
		                   "no message with dedup key "
		                   "(%llu, %llu, %llu)",
		                   (unsigned long long)conv,
		                   (unsigned long long)sender,
		                   (unsigned long long)dedup_id);
	}
	return rc;
}

/* ---- groups and members ---------------------------------------------- */

static int
sq_group_create(im_store *st, const im_group *group)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s;
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK || (rc = sq_begin(sq)) != IM_OK) {
		return rc;
	}
	s = sq_stmt(sq, SQ_GROUP_INSERT);
	sqlite3_bind_int64(s, 1, sq_i64(group->gid));
	sqlite3_bind_int64(s, 2, sq_i64(group->creator));
	sqlite3_bind_int64(s, 3, sq_i64(group->created_ms));
	sqlite3_bind_text(s, 4, group->name, -1, SQLITE_STATIC);
	rc = sq_exec_stmt(sq, s, "group_create");
	if (rc == IM_OK && sqlite3_changes(sq->db) == 0) {
		im_store_set_error(st, "group %llu exists",
		                   (unsigned long long)group->gid);
		rc = IM_ECONFLICT;
	}
	return sq_end(sq, rc);
}

static int
sq_group_get(sq_store *sq, im_gid gid, im_group *out)
{
	sqlite3_stmt *s = sq_stmt(sq, SQ_GROUP_GET);
	int rc;

	sqlite3_bind_int64(s, 1, sq_i64(gid));
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && out != NULL) {
		const unsigned char *name = sqlite3_column_text(s, 2);
		size_t len = (size_t)sqlite3_column_bytes(s, 2);

		memset(out, 0, sizeof(*out));
		out->gid = gid;
		out->creator = sq_col_u64(s, 0);
		out->created_ms = sq_col_u64(s, 1);
		len = IM__MIN(len, (size_t)IM_GROUP_NAME_MAX);
		if (name != NULL) {
			memcpy(out->name, name, len);
		}
	}
	sqlite3_reset(s);
	if (rc == SQLITE_ROW) {
		return IM_OK;
	}
	if (rc == SQLITE_DONE) {
		im_store_set_error(&sq->base, "no group %llu",
		                   (unsigned long long)gid);
		return IM_ENOTFOUND;
	}
	return sq_fail(sq, rc, "group_lookup");
}

static int
sq_group_lookup(im_store *st, im_gid gid, im_group *out)
{
	sq_store *sq = sq_of(st);
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK) {
		return rc;
	}
	return sq_group_get(sq, gid, out);
}

static int
sq_member_add(im_store *st, im_gid gid, im_uid user, bool *added_out)
{
	sq_store *sq = sq_of(st);
	im_msg_pos last;
	sqlite3_stmt *s;
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK || (rc = sq_begin(sq)) != IM_OK) {
		return rc;
	}
	if ((rc = sq_group_get(sq, gid, NULL)) != IM_OK) {
		goto out;
	}
	rc = sq_last(sq, gid, IM_SEQ_MAX, &last);
	if (rc != IM_OK && rc != IM_ENOTFOUND) {
		goto out;
	}
	s = sq_stmt(sq, SQ_MEMBER_INSERT);
	sqlite3_bind_int64(s, 1, sq_i64(gid));
	sqlite3_bind_int64(s, 2, sq_i64(user));
	sqlite3_bind_int64(s, 3, sq_i64(last.seq));
	sqlite3_bind_int64(s, 4, sq_i64(last.ordinal));
	sqlite3_bind_int64(s, 5, sq_i64(sq_now_ms()));
	if ((rc = sq_exec_stmt(sq, s, "member_add")) == IM_OK) {
		*added_out = sqlite3_changes(sq->db) == 1;
	}
out:
	return sq_end(sq, rc);
}

/*
 * Insert one new group's row, or accept an existing one from an earlier
 * try of the same batch (same creator and created_ms). *existed_out tells
 * which, so members of a retried group start at its last message.
 */
static int
sq_group_put(sq_store *sq, const im_group *g, bool *existed_out)
{
	sqlite3_stmt *s = sq_stmt(sq, SQ_GROUP_INSERT);
	im_group cur;
	int rc;

	sqlite3_bind_int64(s, 1, sq_i64(g->gid));
	sqlite3_bind_int64(s, 2, sq_i64(g->creator));
	sqlite3_bind_int64(s, 3, sq_i64(g->created_ms));
	sqlite3_bind_text(s, 4, g->name, -1, SQLITE_STATIC);
	if ((rc = sq_exec_stmt(sq, s, "group_create_many")) != IM_OK) {
		return rc;
	}
	*existed_out = sqlite3_changes(sq->db) == 0;
	if (!*existed_out) {
		return IM_OK;
	}
	if ((rc = sq_group_get(sq, g->gid, &cur)) != IM_OK) {
		return rc;
	}
	if (cur.creator != g->creator || cur.created_ms != g->created_ms) {
		im_store_set_error(&sq->base,
		                   "sqlite: group %llu exists (another group)",
		                   (unsigned long long)g->gid);
		return IM_ECONFLICT;
	}
	return IM_OK;
}

static int
sq_group_create_many(im_store *st, const im_fence *fences, size_t nfences,
                     const im_group_new *groups, size_t n)
{
	sq_store *sq = sq_of(st);
	uint64_t now = sq_now_ms();
	size_t i, j;
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK || (rc = sq_begin(sq)) != IM_OK) {
		return rc;
	}
	rc = sq_check_fences(sq, fences, nfences);
	for (i = 0; i < n && rc == IM_OK; i++) {
		const im_group_new *g = &groups[i];
		im_msg_pos last = {0, 0};
		bool existed = false;

		rc = sq_group_put(sq, &g->group, &existed);
		if (rc == IM_OK && existed) {
			rc = sq_last(sq, g->group.gid, IM_SEQ_MAX, &last);
			rc = rc == IM_ENOTFOUND ? IM_OK : rc;
		}
		for (j = 0; j < g->nmembers && rc == IM_OK; j++) {
			sqlite3_stmt *s = sq_stmt(sq, SQ_MEMBER_INSERT);

			sqlite3_bind_int64(s, 1, sq_i64(g->group.gid));
			sqlite3_bind_int64(s, 2, sq_i64(g->members[j]));
			sqlite3_bind_int64(s, 3, sq_i64(last.seq));
			sqlite3_bind_int64(s, 4, sq_i64(last.ordinal));
			sqlite3_bind_int64(s, 5, sq_i64(now));
			rc = sq_exec_stmt(sq, s, "group_create_many");
		}
	}
	return sq_end(sq, rc);
}

static int
sq_member_remove(im_store *st, im_gid gid, im_uid user, bool *removed_out)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s;
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK || (rc = sq_begin(sq)) != IM_OK) {
		return rc;
	}
	s = sq_stmt(sq, SQ_MEMBER_DELETE);
	sqlite3_bind_int64(s, 1, sq_i64(gid));
	sqlite3_bind_int64(s, 2, sq_i64(user));
	if ((rc = sq_exec_stmt(sq, s, "member_remove")) == IM_OK) {
		*removed_out = sqlite3_changes(sq->db) == 1;
	}
	return sq_end(sq, rc);
}

static int
sq_member_list(im_store *st, im_gid gid, im_uid_cb cb, void *payload)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s;
	int rc, ret = IM_OK;

	if ((rc = sq_guard(sq)) != IM_OK) {
		return rc;
	}
	s = sq_stmt(sq, SQ_MEMBER_LIST);
	sqlite3_bind_int64(s, 1, sq_i64(gid));
	sq->in_cb = true;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((ret = cb(sq_col_u64(s, 0), payload)) != 0) {
			break;
		}
	}
	sq->in_cb = false;
	if (ret == IM_OK && rc != SQLITE_DONE) {
		ret = sq_fail(sq, rc, "member_list");
	}
	sqlite3_reset(s);
	return ret;
}

static int
sq_conv_load(im_store *st, im_uid user, im_conv_cb cb, void *payload)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s;
	int rc, ret = IM_OK;

	if ((rc = sq_guard(sq)) != IM_OK) {
		return rc;
	}
	s = sq_stmt(sq, SQ_CONV_LOAD);
	sqlite3_bind_int64(s, 1, sq_i64(user));
	sqlite3_bind_int64(s, 2, IM_PREVIEW_MAX);
	sq->in_cb = true;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		im_conv_row row = {
		        .conv = sq_col_u64(s, 0),
		        .read_seq = sq_col_u64(s, 1),
		        .read_ordinal = sq_col_u64(s, 2),
		        .flags = (uint32_t)sqlite3_column_int64(s, 3),
		        .last = {sq_col_u64(s, 4), sq_col_u64(s, 5)},
		        .last_sender = sq_col_u64(s, 6),
		        .last_time_ms = sq_col_u64(s, 7),
		        .preview = sqlite3_column_blob(s, 8),
		};

		row.preview_len = (uint32_t)IM__MIN(sqlite3_column_bytes(s, 8),
		                                    IM_PREVIEW_MAX);
		if ((ret = cb(&row, payload)) != 0) {
			break;
		}
	}
	sq->in_cb = false;
	if (ret == IM_OK && rc != SQLITE_DONE) {
		ret = sq_fail(sq, rc, "conv_load");
	}
	sqlite3_reset(s);
	return ret;
}

static int
sq_conv_update(im_store *st, im_uid user, im_gid conv, im_seq read_seq,
               uint64_t read_ordinal, uint32_t flags)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s;
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK || (rc = sq_begin(sq)) != IM_OK) {
		return rc;
	}
	s = sq_stmt(sq, SQ_CONV_UPDATE);
	sqlite3_bind_int64(s, 1, sq_i64(user));
	sqlite3_bind_int64(s, 2, sq_i64(conv));
	sqlite3_bind_int64(s, 3, sq_bound(read_seq));
	sqlite3_bind_int64(s, 4, sq_bound(read_ordinal));
	sqlite3_bind_int64(s, 5, flags);
	rc = sq_exec_stmt(sq, s, "conv_update");
	if (rc == IM_OK && sqlite3_changes(sq->db) == 0) {
		im_store_set_error(st, "user %llu is not a member of %llu",
		                   (unsigned long long)user,
		                   (unsigned long long)conv);
		rc = IM_ENOTFOUND;
	}
	return sq_end(sq, rc);
}

/* ---- user queues ----------------------------------------------------- */

static int
sq_uq_append(im_store *st, const im_fence *fences, size_t nfences,
             const im_uq_item *items, size_t n)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s;
	size_t i;
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK || (rc = sq_begin(sq)) != IM_OK) {
		return rc;
	}
	if ((rc = sq_check_fences(sq, fences, nfences)) != IM_OK) {
		goto out;
	}
	for (i = 0; i < n && rc == IM_OK; i++) {
		s = sq_stmt(sq, SQ_UQ_INSERT);
		sqlite3_bind_int64(s, 1, sq_i64(items[i].user));
		sqlite3_bind_int64(s, 2, sq_i64(items[i].seq));
		sqlite3_bind_int64(s, 3, sq_i64(items[i].time_ms));
		sqlite3_bind_int64(s, 4, items[i].type);
		sq_bind_blob(s, 5, items[i].body, items[i].body_len);
		rc = sq_exec_stmt(sq, s, "uq_append");
	}
out:
	return sq_end(sq, rc);
}

static int
sq_uq_last(im_store *st, im_uid user, im_seq *last_out)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s;
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK) {
		return rc;
	}
	s = sq_stmt(sq, SQ_UQ_LAST);
	sqlite3_bind_int64(s, 1, sq_i64(user));
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*last_out = sq_col_u64(s, 0); /* NULL reads as 0 */
	}
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? IM_OK : sq_fail(sq, rc, "uq_last");
}

static int
sq_uq_read(im_store *st, im_uid user, im_seq after, uint32_t limit, im_uq_cb cb,
           void *payload)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s;
	int rc, ret = IM_OK;

	if ((rc = sq_guard(sq)) != IM_OK) {
		return rc;
	}
	if (after >= (uint64_t)INT64_MAX) {
		return IM_OK;
	}
	s = sq_stmt(sq, SQ_UQ_READ);
	sqlite3_bind_int64(s, 1, sq_i64(user));
	sqlite3_bind_int64(s, 2, sq_bound(after));
	sqlite3_bind_int64(s, 3, limit);
	sq->in_cb = true;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		im_uq_item it = {
		        .user = user,
		        .seq = sq_col_u64(s, 0),
		        .time_ms = sq_col_u64(s, 1),
		        .type = (uint32_t)sqlite3_column_int64(s, 2),
		        .body = sqlite3_column_blob(s, 3),
		        .body_len = (uint32_t)sqlite3_column_bytes(s, 3),
		};

		if ((ret = cb(&it, payload)) != 0) {
			break;
		}
	}
	sq->in_cb = false;
	if (ret == IM_OK && rc != SQLITE_DONE) {
		ret = sq_fail(sq, rc, "uq_read");
	}
	sqlite3_reset(s);
	return ret;
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

/* ---- nodes (ops version 2) ------------------------------------------- */

/*
 * Cluster membership. Nodes write here about once a second, so these
 * statements are prepared per call instead of joining the cached set: it
 * keeps the version 2 ops in one block of their own.
 */
static int
sq_node_prepare(sq_store *sq, const char *sql, sqlite3_stmt **out)
{
	int rc;

	if ((rc = sq_guard(sq)) != IM_OK) {
		return rc;
	}
	rc = sqlite3_prepare_v2(sq->db, sql, -1, out, NULL);
	if (rc != SQLITE_OK) {
		return sq_fail(sq, rc, "prepare node statement");
	}
	return IM_OK;
}

static int
sq_node_register(im_store *st, const char *name, im_node_role role,
                 const char *address, uint64_t now_ms,
                 uint64_t *incarnation_out)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sq_node_prepare(sq,
	                     "INSERT INTO im_nodes (name, role, address, "
	                     "registered_ms, heartbeat_ms, incarnation) "
	                     "VALUES (?1, ?2, ?3, ?4, ?4, 1) "
	                     "ON CONFLICT (name) DO UPDATE SET "
	                     "role = excluded.role, "
	                     "address = excluded.address, "
	                     "registered_ms = excluded.registered_ms, "
	                     "heartbeat_ms = excluded.heartbeat_ms, "
	                     "incarnation = im_nodes.incarnation + 1 "
	                     "RETURNING incarnation",
	                     &s);
	if (rc != IM_OK) {
		return rc;
	}
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)role);
	sqlite3_bind_text(s, 3, address, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, sq_i64(now_ms));
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*incarnation_out = sq_col_u64(s, 0);
		rc = sqlite3_step(s);
	}
	rc = rc == SQLITE_DONE ? IM_OK : sq_fail(sq, rc, "node_register");
	sqlite3_finalize(s);
	return rc;
}

static int
sq_node_heartbeat(im_store *st, const char *name, uint64_t now_ms)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sq_node_prepare(sq,
	                     "UPDATE im_nodes SET heartbeat_ms = ?2 "
	                     "WHERE name = ?1",
	                     &s);
	if (rc != IM_OK) {
		return rc;
	}
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, sq_i64(now_ms));
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		rc = sq_fail(sq, rc, "node_heartbeat");
	} else if (sqlite3_changes(sq->db) == 0) {
		im_store_set_error(st, "sqlite: node_heartbeat: node '%s' is "
		                       "not registered",
		                   name);
		rc = IM_ENOTFOUND;
	} else {
		rc = IM_OK;
	}
	sqlite3_finalize(s);
	return rc;
}

static int
sq_node_list(im_store *st, im_node_cb cb, void *payload)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s = NULL;
	int rc, ret = IM_OK;

	rc = sq_node_prepare(sq,
	                     "SELECT name, role, address, registered_ms, "
	                     "heartbeat_ms, incarnation FROM im_nodes "
	                     "ORDER BY name",
	                     &s);
	if (rc != IM_OK) {
		return rc;
	}
	sq->in_cb = true;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		im_node_row row = {
		        .name = (const char *)sqlite3_column_text(s, 0),
		        .role = (im_node_role)sqlite3_column_int64(s, 1),
		        .address = (const char *)sqlite3_column_text(s, 2),
		        .registered_ms = sq_col_u64(s, 3),
		        .heartbeat_ms = sq_col_u64(s, 4),
		        .incarnation = sq_col_u64(s, 5),
		};

		if (row.name == NULL || row.address == NULL) {
			continue;
		}
		if ((ret = cb(&row, payload)) != 0) {
			break;
		}
	}
	sq->in_cb = false;
	if (ret == IM_OK && rc != SQLITE_DONE) {
		ret = sq_fail(sq, rc, "node_list");
	}
	sqlite3_finalize(s);
	return ret;
}

static const struct im_store_ops sq_ops = {
        .version = IM_STORE_OPS_VERSION,
        .name = "sqlite",
        .close = sq_close,
        .migrate = sq_migrate,
        .slot_load = sq_slot_load,
        .slot_cas = sq_slot_cas,
        .slot_cas_many = sq_slot_cas_many,
        .seg_take = sq_seg_take,
        .msg_append = sq_msg_append,
        .msg_read = sq_msg_read,
        .msg_last = sq_msg_last,
        .msg_find_dedup = sq_msg_find_dedup,
        .group_create = sq_group_create,
        .group_lookup = sq_group_lookup,
        .member_add = sq_member_add,
        .member_remove = sq_member_remove,
        .member_list = sq_member_list,
        .conv_load = sq_conv_load,
        .conv_update = sq_conv_update,
        .uq_append = sq_uq_append,
        .uq_read = sq_uq_read,
        /* version 2 */
        .node_register = sq_node_register,
        .node_heartbeat = sq_node_heartbeat,
        .node_list = sq_node_list,
        /* version 4 */
        .group_create_many = sq_group_create_many,
        .seg_take_many = sq_seg_take_many,
        .uq_last = sq_uq_last,
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
		rc = sq_exec_sql(sq, "PRAGMA locking_mode=EXCLUSIVE",
		                 "locking_mode");
		if (rc != IM_OK) {
			return rc;
		}
	}
	/* :memory: answers "memory" here, which is what it can do. */
	rc = sq_exec_sql(sq, "PRAGMA journal_mode=WAL", "journal_mode");
	if (rc != IM_OK) {
		return rc;
	}
	if (opts->version >= 2 && opts->wal_autocheckpoint > 0) {
		snprintf(sql, sizeof(sql), "PRAGMA wal_autocheckpoint=%u",
		         (unsigned)IM__MIN(opts->wal_autocheckpoint,
		                           (uint32_t)INT32_MAX));
		rc = sq_exec_sql(sq, sql, "wal_autocheckpoint");
		if (rc != IM_OK) {
			return rc;
		}
	}
	snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s",
	         opts->sync == IM_SQLITE_SYNC_NORMAL ? "NORMAL" : "FULL");
	return sq_exec_sql(sq, sql, "synchronous");
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
		rc = sq_fail(sq, rc, path);
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
	return rc == IM_EUNAVAIL || rc == IM_ESCHEMA || rc == IM_ENOMEM
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
