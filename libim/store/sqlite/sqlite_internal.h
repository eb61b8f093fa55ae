/*
 * Private to the sqlite backend: the handle, the cached statements and the
 * one prepare-bind-step helper every op goes through (sqlite_query.c), so
 * that the op files (sqlite_slots.c, sqlite_msgs.c, sqlite_groups.c,
 * sqlite_nodes.c, sqlite_append.c) hold only what each op asks, in which
 * transaction, and how it reads the answer.
 */
#ifndef IM_STORE_SQLITE_INTERNAL_H
#define IM_STORE_SQLITE_INTERNAL_H

#include "store/sqlite/sqlite.h"

#include "im/sys/store.h"
#include "store/ops.h"
#include "internal.h"

#include <stdbool.h>
#include <stdint.h>

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
	SQ_CONV_READ_OWN,
	SQ_UQ_INSERT,
	SQ_UQ_READ,
	SQ_UQ_LAST,
	SQ_GKEY_GET,
	SQ_GKEY_INSERT,
	SQ_NSTMT
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
	uint32_t wal_pages; /* the WAL's checkpoint interval (sqlite_space.c) */
} sq_store;

static inline sq_store *
sq_of(im_store *st)
{
	return (sq_store *)st;
}

static inline sqlite3_int64
sq_i64(uint64_t v)
{
	return (sqlite3_int64)v;
}

/* Bounds of range reads: the stored range ends at INT64_MAX. */
static inline sqlite3_int64
sq_bound(im_seq s)
{
	return s > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)s;
}

static inline uint64_t
sq_col_u64(sqlite3_stmt *s, int col)
{
	return (uint64_t)sqlite3_column_int64(s, col);
}

static inline const char *
sq_kind_name(im_kind kind)
{
	return kind == IM_KIND_USER ? "user" : "group";
}

/* ---- statements (sqlite_query.c) ------------------------------------- */

/* One bound parameter: an integer (the uint64 bit pattern), text, a blob. */
struct sq_arg {
	enum { SQ_ARG_INT, SQ_ARG_TEXT, SQ_ARG_BLOB } type;
	uint64_t i;
	const void *p;
	uint32_t len;
};

/* clang-format off */
#define SQ_INT(v) {SQ_ARG_INT, (uint64_t)(v), NULL, 0}
#define SQ_TEXT(str) {SQ_ARG_TEXT, 0, (str), 0}
#define SQ_BLOB(data, n) {SQ_ARG_BLOB, 0, (data), (n)}
/* The args of one call, bound to ?1, ?2, ... in order: array, count. */
#define SQ_ARGS(...)                                                       \
	(const struct sq_arg[]){__VA_ARGS__},                              \
	(int)(sizeof((const struct sq_arg[]){__VA_ARGS__}) /               \
	      sizeof(struct sq_arg))
/* clang-format on */

/*
 * Called for each row the statement s steps to; a non-zero return stops
 * the rows and is passed back. Column values are borrowed until it returns.
 */
typedef int (*sq_row_fn)(sqlite3_stmt *s, void *arg);

/*
 * A read's callback and payload, handed to its row fn (the row fns of the
 * reads turn a row into the caller's struct and call it).
 */
struct sq_reader {
	union {
		im_slot_cb slot;
		im_msg_cb msg;
		im_uid_cb uid;
		im_conv_cb conv;
		im_uq_cb uq;
		im_node_cb node;
	} cb;
	void *payload;
	/* What the rows do not carry: slot_load's kind, a read's key. */
	im_kind kind;
	uint64_t key;
};

/*
 * Turn a sqlite failure into an im_err with detail. A lock still held when
 * busy_timeout ran out is IM_EUNAVAIL: the caller may retry, and for writes
 * nothing was committed. No space left on the disk is IM_ENOSPC (the write
 * is rolled back: nothing of it was committed).
 */
int im__sq_fail(sq_store *sq, int rc, const char *what);

/* IM_ERR when called from the store's own read callback. */
int im__sq_guard(sq_store *sq);

/* Prepare and cache every statement (once, after the schema is migrated). */
int im__sq_prepare_all(sq_store *sq);

/* sqlite3_exec of fixed SQL (migrations, pragmas), failures with detail. */
int im__sq_exec_sql(sq_store *sq, const char *sql, const char *what);

/*
 * The query helper of every op: bind args to s (reset first), step it to
 * the end and hand each row to fn (NULL: none) until one returns non-zero,
 * which is returned. A failed step is im__sq_fail(what). Calls from fn
 * into the store are refused meanwhile; s is reset before returning.
 */
int im__sq_run_stmt(sq_store *sq, sqlite3_stmt *s, const struct sq_arg *args,
                    int nargs, const char *what, sq_row_fn fn, void *arg);

/* im__sq_run_stmt on the cached statement id. */
int im__sq_run(sq_store *sq, enum sq_stmt_id id, const struct sq_arg *args,
               int nargs, const char *what, sq_row_fn fn, void *arg);

/*
 * im__sq_run for a statement answering at most one row of integers:
 * cols_out[0..ncols) from its first row, 0 where there is none;
 * *found_out (may be NULL) whether there was one.
 */
int im__sq_run_u64(sq_store *sq, enum sq_stmt_id id, const struct sq_arg *args,
                   int nargs, const char *what, uint64_t *cols_out, int ncols,
                   bool *found_out);

/*
 * Start a write: refuse a call from a read callback, then BEGIN IMMEDIATE
 * (the write lock up front; see sqlite.c).
 */
int im__sq_write_begin(sq_store *sq);

/* Finish a write transaction: commit on success, roll back otherwise. */
int im__sq_end(sq_store *sq, int rc);

/* ---- a full disk (sqlite_space.c) ------------------------------------ */

/* Whether a sqlite failure rc means "no space left" (IM_ENOSPC). */
bool im__sq_is_full(sq_store *sq, int rc);

/*
 * The WAL's checkpoint interval in pages: configured (0: sqlite's 1000),
 * but at most a quarter of free_bytes and at least 64 pages.
 */
uint32_t im__sq_wal_pages(uint32_t configured, uint64_t free_bytes,
                          uint64_t page_size);

/*
 * Set wal_autocheckpoint to im__sq_wal_pages(configured, the space free on
 * the database's filesystem now) and journal_size_limit to as many bytes.
 */
int im__sq_space_pragmas(sq_store *sq, uint32_t configured);

/* After a write failed full and was rolled back: give the WAL's space
 * back by a TRUNCATE checkpoint, if it can be done. */
void im__sq_space_reclaim(sq_store *sq);

/* ---- shared by the op files ------------------------------------------ */

/* Inside a write: every fence's slot must be at its epoch (IM_ESTALE). */
int im__sq_check_fences(sq_store *sq, const im_fence *fences, size_t nfences);

/* The last message of conv at or below seq at (IM_ENOTFOUND: none). */
int im__sq_last(sq_store *sq, im_gid conv, im_seq at, im_msg_pos *pos_out);

/* The message with a dedup key, without its body (IM_ENOTFOUND: none). */
int im__sq_find_dedup(sq_store *sq, im_gid conv, im_uid sender,
                      uint64_t dedup_id, im_msg *out);

/* ---- the ops (one file per area) ------------------------------------- */

/*
 * im__sq_<op> for every op of the list but migrate (which sqlite.c keeps
 * static): the prototypes come from the one op list, so they cannot drift
 * from the vtable.
 */
#define SQ_DECLARE_OP(version, op, OP, params, args)                          \
	int im__sq_##op(im_store *st, IM__UNPAREN params);
IM__STORE_OPS(SQ_DECLARE_OP)
#undef SQ_DECLARE_OP

#endif
