/*
 * Private to the PostgreSQL backend: the handle, the statement ids and the
 * one query helper every op goes through (pg_query.c), so that the op files
 * (pg_slots.c, pg_msgs.c, pg_groups.c, pg_nodes.c, pg_append.c) hold only
 * what each op asks and how it reads the answer.
 *
 * uint64 ids travel as BIGINT bit patterns in binary parameters and
 * results; the small encoders below are inline because every op uses them.
 */
#ifndef IM_STORE_PG_INTERNAL_H
#define IM_STORE_PG_INTERNAL_H

#include "im/sys/store.h"
#include "store/ops.h"
#include "internal.h"

#include <libpq-fe.h>

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Type OIDs (pg_type.h is a server header). */
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25
#define OID_BYTEA_ARR 1001
#define OID_INT8_ARR 1016
#define OID_TEXT_ARR 1009

/* Retries of a write that lost a race on a unique key or a deadlock. */
#define PG_RACE_TRIES 8
/* Upper bound of one batch, so sizes stay far from int overflow. */
#define PG_BATCH_MAX (1u << 20)
/* PostgreSQL refuses a field (one array parameter) of 1 GiB or more. */
#define PG_PARAM_BYTES_MAX ((size_t)1 << 29)
/* The most parameters of one statement (the appends). */
#define PG_PARAMS_MAX 13

enum pg_stmt {
	PG_SLOT_LOAD,
	PG_SLOT_CLAIM,
	PG_SLOT_CAS,
	PG_SLOT_GET,
	PG_SEG_TAKE,
	PG_MSG_APPEND,
	PG_MSG_APPEND_FAST,
	PG_MSG_APPEND_FAST1,
	PG_MSG_READ,
	PG_MSG_LAST,
	PG_MSG_DEDUP,
	PG_GROUP_CREATE,
	PG_GROUP_LOOKUP,
	PG_MEMBER_ADD,
	PG_MEMBER_REMOVE,
	PG_MEMBER_LIST,
	PG_CONV_LOAD,
	PG_CONV_UPDATE,
	PG_UQ_APPEND,
	PG_UQ_READ,
	/* ops version 2 */
	PG_NODE_REGISTER,
	PG_NODE_HEARTBEAT,
	PG_NODE_LIST,
	/* ops version 3 */
	PG_SLOT_CAS_MANY,
	/* ops version 4 */
	PG_GROUP_CREATE_MANY,
	PG_SEG_TAKE_MANY,
	PG_UQ_LAST,
	/* ops version 5 */
	PG_GROUP_CREATE_DEDUP,
	/* ops version 6 */
	PG_MEMBER_ADD_FENCED,
	PG_MEMBER_REMOVE_FENCED,
	PG_CONV_UPDATE_FENCED,
	PG_NSTMT
};

/* The prepared statements (pg_stmts.c), indexed by enum pg_stmt. */
struct pg_stmt_def {
	const char *name;
	const char *sql;
	int nparams;
	Oid types[PG_PARAMS_MAX];
};

extern const struct pg_stmt_def im__pg_stmts[PG_NSTMT];

struct pg_store {
	im_store base; /* first: the core casts between the two */
	PGconn *conn;
	im_store_pg_opts opts;
	bool prepared;
	/* Scratch for array parameters and batch bookkeeping; grows only. */
	unsigned char *buf;
	size_t buf_cap;
};

#define PG(st) ((struct pg_store *)(void *)(st))

/* What an op does when the connection drops or it loses a race. */
enum pg_retry {
	PG_ONCE,  /* the outcome is unknown: report IM_EUNAVAIL */
	PG_AGAIN, /* a read or idempotent write: reconnect and run again */
	/*
	 * Idempotent, and may lose a race on a unique key to a concurrent
	 * writer (ON CONFLICT DO NOTHING cannot cover every index) or
	 * deadlock: also run again on those, up to PG_RACE_TRIES.
	 */
	PG_RACES,
};

/* The binary parameters of one statement; scalars live in v. */
struct pg_params {
	const char *vals[PG_PARAMS_MAX];
	int lens[PG_PARAMS_MAX];
	unsigned char v[PG_PARAMS_MAX][8];
};

/*
 * A read's callback and payload, handed to its row fn (the row fns of the
 * reads turn a row into the caller's struct and call it).
 */
struct pg_reader {
	union {
		im_slot_cb slot;
		im_msg_cb msg;
		im_uid_cb uid;
		im_conv_cb conv;
		im_uq_cb uq;
		im_node_cb node;
	} cb;
	void *payload;
	im_kind kind; /* slot_load: the rows do not carry it */
};

/*
 * Called for row r of a result; a non-zero return stops the rows and is
 * passed back. The row is borrowed until the call returns.
 */
typedef int (*pg_row_fn)(const PGresult *res, int r, void *arg);

/* ---- binary encoding ------------------------------------------------- */

static inline void
pg_put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static inline void
pg_put_be64(unsigned char *p, uint64_t v)
{
	pg_put_be32(p, (uint32_t)(v >> 32));
	pg_put_be32(p + 4, (uint32_t)v);
}

/* A seq bound as a BIGINT: larger values mean "no bound". */
static inline uint64_t
pg_clamp_seq(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : v;
}

/* Column c of row r as uint64; every numeric column is selected ::int8. */
static inline uint64_t
pg_col_u64(const PGresult *res, int r, int c)
{
	const unsigned char *p;
	uint64_t v = 0;
	int i;

	if (PQgetisnull(res, r, c) || PQgetlength(res, r, c) != 8) {
		return 0;
	}
	p = (const unsigned char *)PQgetvalue(res, r, c);
	for (i = 0; i < 8; i++) {
		v = (v << 8) | p[i];
	}
	return v;
}

#define ARR_HEAD 20
#define ARR_I8 12

/* Header of a one-dimensional binary array of n elements. */
static inline unsigned char *
pg_arr_head(unsigned char *p, uint32_t oid, uint32_t n)
{
	pg_put_be32(p, 1);     /* ndim */
	pg_put_be32(p + 4, 0); /* no NULLs */
	pg_put_be32(p + 8, oid);
	pg_put_be32(p + 12, n); /* dimension */
	pg_put_be32(p + 16, 1); /* lower bound */
	return p + ARR_HEAD;
}

static inline unsigned char *
pg_arr_i8(unsigned char *p, uint64_t v)
{
	pg_put_be32(p, 8);
	pg_put_be64(p + 4, v);
	return p + ARR_I8;
}

static inline unsigned char *
pg_arr_bytes(unsigned char *p, const void *data, uint32_t len)
{
	pg_put_be32(p, len);
	if (len > 0) {
		memcpy(p + 4, data, len);
	}
	return p + 4 + len;
}

static inline void
pg_param_u64(struct pg_params *p, int i, uint64_t v)
{
	pg_put_be64(p->v[i], v);
	p->vals[i] = (const char *)p->v[i];
	p->lens[i] = 8;
}

static inline void
pg_param_str(struct pg_params *p, int i, const char *str)
{
	p->vals[i] = str;
	p->lens[i] = (int)strlen(str);
}

/* Parameter i is the encoded array from start up to end. */
static inline void
pg_param_arr(struct pg_params *p, int i, const unsigned char *start,
             const unsigned char *end)
{
	p->vals[i] = (const char *)start;
	p->lens[i] = (int)(end - start);
}

/* ---- the connection (pg.c) ------------------------------------------ */

/*
 * Make the connection usable: reset it if it broke, bounded by
 * opts.reconnect_tries, and prepare the statements on a new session.
 */
int im__pg_ensure(struct pg_store *s);

/* ---- running statements (pg_query.c) --------------------------------- */

/* Grow the scratch buffer to need bytes (IM_ENOMEM with errmsg). */
int im__pg_buf_reserve(struct pg_store *s, size_t need);

bool im__pg_sqlstate_is(const PGresult *res, const char *code);

/*
 * Run a prepared statement with binary parameters and results (p may be
 * NULL for a statement without any), retry PG_ONCE or PG_AGAIN. On IM_OK
 * *out holds the result (caller PQclears). Unique violations and deadlocks
 * come back as IM_ECONFLICT with *out set, for the op to decide; a value
 * out of range is IM_EFULL, a full disk (53100) IM_ENOSPC, a lost
 * connection IM_EUNAVAIL.
 */
int im__pg_run(struct pg_store *s, enum pg_stmt id, const struct pg_params *p,
               enum pg_retry retry, PGresult **out);

/* Hand rows 0.. of res to fn until one returns non-zero; that is returned. */
int im__pg_rows(const PGresult *res, pg_row_fn fn, void *arg);

/*
 * The result of statement id (caller PQclears), with PG_RACES run again
 * while it loses races (as PG_AGAIN otherwise). On failure there is
 * nothing to clear, and a race is IM_ERR: the op has no answer for it (a
 * race that never settles, or a unique violation where none can be the
 * caller's answer). For ops that look at the whole result before its rows.
 */
int im__pg_result(struct pg_store *s, enum pg_stmt id,
                  const struct pg_params *p, enum pg_retry retry,
                  PGresult **out);

/*
 * The query helper of every op: run statement id (as im__pg_result) and
 * stream its rows to fn (NULL: none) until one returns non-zero, which is
 * passed back. *nrows_out (may be NULL) is the number of rows.
 */
int im__pg_exec(struct pg_store *s, enum pg_stmt id, const struct pg_params *p,
                enum pg_retry retry, pg_row_fn fn, void *arg, int *nrows_out);

/*
 * im__pg_exec for a statement answering at most one row of int8 columns:
 * cols_out[0..ncols) from its first row, 0 where there is no row.
 */
int im__pg_exec_u64(struct pg_store *s, enum pg_stmt id,
                    const struct pg_params *p, enum pg_retry retry,
                    uint64_t *cols_out, int ncols, int *nrows_out);

/* ---- fences (pg_append.c), shared by the fenced writes --------------- */

/* Bytes the three fence arrays take. */
size_t im__pg_fence_size(size_t nfences);

/* Encode the fences as parameters 0..2 (int8 arrays kind, slot, epoch). */
unsigned char *im__pg_fence_encode(unsigned char *p, const im_fence *fences,
                                   size_t nfences, struct pg_params *par);

/* A row fn: a row of kind 1 names a stale fence (IM_ESTALE); arg is s. */
int im__pg_fence_row(const PGresult *res, int r, void *arg);

/* ---- the ops (one file per area) ------------------------------------- */

/*
 * im__pg_<op> for every op of the list but migrate (which pg.c keeps
 * static): the prototypes come from the one op list, so they cannot drift
 * from the vtable.
 */
#define PG_DECLARE_OP(version, op, OP, params, args)                          \
	int im__pg_##op(im_store *st, IM__UNPAREN params);
IM__STORE_OPS(PG_DECLARE_OP)
#undef PG_DECLARE_OP

#endif
