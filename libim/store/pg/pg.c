/*
 * The PostgreSQL backend (libpq).
 *
 * Every op is one prepared statement, sent with binary parameters and read
 * back in binary, so one op costs one round trip. Writes run as a single
 * autocommit statement: the statement is the transaction, and a commit
 * waits for the WAL flush (synchronous_commit stays on).
 *
 * Fences: msg_append and uq_append lock the fenced slot rows FOR SHARE in a
 * materialized CTE before inserting. A CAS is an UPDATE of that row, so it
 * either commits before the lock is taken (then READ COMMITTED re-reads the
 * newest row version and the append sees the new epoch, even though its
 * snapshot predates the CAS) or waits until the append committed.
 *
 * Dedup, in two steps. First the fast statement inserts the batch as given
 * (the common case: no duplicate). Its INSERT has no ON CONFLICT, so a
 * stored dedup key (or seq) makes it fail on a unique index and roll back.
 * Then the full statement probes the stored dedup keys (LATERAL ... LIMIT 1,
 * so that a generic plan never scans the table), drops the duplicates and
 * rechains the rest with window functions. It has no ON CONFLICT either: a
 * key committed concurrently after its snapshot raises a unique violation,
 * the statement rolls back and runs again, now seeing that row as a dup.
 * A seq taken twice in a row by another message is IM_ECONFLICT.
 *
 * uint64 ids are stored in BIGINT columns by their bit pattern; seq bounds
 * given to range queries are clamped to INT64_MAX.
 */
#include "im/sys/store.h"
#include "internal.h"

#include <libpq-fe.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/schema.h"

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
/* Key of the advisory lock serializing migrations ("libimsch"). */
#define PG_MIGRATE_LOCK "7821266965256128104"

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
	PG_NSTMT
};

/* The SQL reads best as written: */
/* clang-format off */
/* Fence check shared by both appends: $1..$3 are kind, slot, epoch arrays. */
#define FENCE_CTE                                                          \
	"fx AS (SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[])"    \
	" AS x(kind, slot, epoch)),"                                         \
	" f AS MATERIALIZED (SELECT s.kind::int8 AS kind,"                   \
	" s.slot::int8 AS slot, s.epoch::int8 AS epoch FROM im_slots s"      \
	" WHERE (s.kind, s.slot) IN (SELECT kind, slot FROM fx) FOR SHARE)," \
	" bad AS (SELECT fx.kind, fx.slot, coalesce(f.epoch, 0) AS cur"      \
	" FROM fx LEFT JOIN f ON f.kind = fx.kind AND f.slot = fx.slot"      \
	" WHERE f.epoch IS DISTINCT FROM fx.epoch)"

static const struct {
	const char *name;
	const char *sql;
	int nparams;
	Oid types[13];
} pg_stmts[PG_NSTMT] = {
	[PG_SLOT_LOAD] = {"im_slot_load",
		"SELECT slot::int8, epoch::int8, owner FROM im_slots"
		" WHERE kind = $1 ORDER BY slot",
		1, {OID_INT8}},
	[PG_SLOT_CLAIM] = {"im_slot_claim",
		"INSERT INTO im_slots (kind, slot, owner, epoch)"
		" VALUES ($1, $2, $3, 1) ON CONFLICT (kind, slot) DO NOTHING"
		" RETURNING epoch::int8",
		3, {OID_INT8, OID_INT8, OID_TEXT}},
	[PG_SLOT_CAS] = {"im_slot_cas",
		"UPDATE im_slots SET owner = $3, epoch = $4 + 1"
		" WHERE kind = $1 AND slot = $2 AND epoch = $4"
		" RETURNING epoch::int8",
		4, {OID_INT8, OID_INT8, OID_TEXT, OID_INT8}},
	[PG_SLOT_GET] = {"im_slot_get",
		"SELECT epoch::int8 FROM im_slots WHERE kind = $1 AND slot = $2",
		2, {OID_INT8, OID_INT8}},
	/*
	 * All or nothing in one statement: lock the rows, compare every
	 * epoch, and write only if none differs (rows of kind 1 name those
	 * that do; kind 2 counts the rows written). Unowned slots are
	 * inserted without ON CONFLICT: a concurrent claim makes the whole
	 * statement fail with a unique violation, which is a conflict.
	 */
	[PG_SLOT_CAS_MANY] = {"im_slot_cas_many",
		"WITH x AS (SELECT * FROM unnest($2::int8[], $3::int8[])"
		" AS u(slot, expect)),"
		" cur AS MATERIALIZED (SELECT s.slot::int8 AS slot,"
		" s.epoch::int8 AS epoch FROM im_slots s WHERE s.kind = $1"
		" AND s.slot IN (SELECT slot FROM x) FOR UPDATE),"
		" bad AS (SELECT x.slot, coalesce(cur.epoch, 0) AS ep FROM x"
		" LEFT JOIN cur ON cur.slot = x.slot"
		" WHERE coalesce(cur.epoch, 0) <> x.expect),"
		" upd AS (UPDATE im_slots s SET owner = $4, epoch = x.expect + 1"
		" FROM x WHERE s.kind = $1 AND s.slot = x.slot AND x.expect <> 0"
		" AND s.epoch = x.expect AND NOT EXISTS (SELECT 1 FROM bad)"
		" RETURNING 1),"
		" ins AS (INSERT INTO im_slots (kind, slot, owner, epoch)"
		" SELECT $1, x.slot, $4, 1 FROM x WHERE x.expect = 0"
		" AND NOT EXISTS (SELECT 1 FROM bad) RETURNING 1)"
		" SELECT 1::int8, slot, ep FROM bad"
		" UNION ALL SELECT 2, (SELECT count(*) FROM upd)"
		" + (SELECT count(*) FROM ins), 0",
		4, {OID_INT8, OID_INT8_ARR, OID_INT8_ARR, OID_TEXT}},
	[PG_SEG_TAKE] = {"im_seg_take",
		"INSERT INTO im_segments (space, id, max_id) VALUES ($1, $2, $3)"
		" ON CONFLICT (space, id) DO UPDATE"
		" SET max_id = im_segments.max_id + EXCLUDED.max_id"
		" RETURNING max_id::int8",
		3, {OID_INT8, OID_INT8, OID_INT8}},
	[PG_MSG_APPEND] = {"im_msg_append",
		"WITH " FENCE_CTE ","
		" i AS (SELECT * FROM unnest($4::int8[], $5::int8[], $6::int8[],"
		" $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[],"
		" $12::int8[], $13::bytea[]) WITH ORDINALITY AS u(conv, seq, bprev,"
		" bord, sender, dedup_id, reply_to, time_ms, type, body, idx)),"
		" o AS MATERIALIZED (SELECT i.idx::int8 AS idx, m.seq::int8 AS seq,"
		" m.prev_seq::int8 AS prev_seq, m.ordinal::int8 AS ordinal,"
		" m.time_ms::int8 AS time_ms FROM i CROSS JOIN LATERAL"
		" (SELECT * FROM im_messages x WHERE x.conv = i.conv"
		" AND x.sender = i.sender AND x.dedup_id = i.dedup_id LIMIT 1) m),"
		" k AS (SELECT i.*, coalesce(lag(i.seq) OVER w, i.bprev) AS pseq,"
		" i.bord + row_number() OVER w AS ord FROM i"
		" WHERE NOT EXISTS (SELECT 1 FROM o WHERE o.idx = i.idx)"
		" WINDOW w AS (PARTITION BY i.conv ORDER BY i.idx)),"
		" ins AS (INSERT INTO im_messages (conv, seq, prev_seq, ordinal,"
		" sender, dedup_id, reply_to, time_ms, type, body)"
		" SELECT conv, seq, pseq, ord, sender, dedup_id, reply_to,"
		" time_ms, type, body FROM k WHERE NOT EXISTS (SELECT 1 FROM bad)"
		" RETURNING 1)"
		" SELECT 0::int8, idx, seq, prev_seq, ordinal, time_ms FROM o"
		" UNION ALL SELECT 1, kind, slot, cur, 0, 0 FROM bad"
		" UNION ALL SELECT 2, count(*), 0, 0, 0, 0 FROM ins",
		13, {OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,
		     OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,
		     OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,
		     OID_BYTEA_ARR}},
	[PG_MSG_APPEND_FAST] = {"im_msg_append_fast",
		"WITH " FENCE_CTE ","
		" ins AS (INSERT INTO im_messages (conv, seq, prev_seq, ordinal,"
		" sender, dedup_id, reply_to, time_ms, type, body)"
		" SELECT * FROM unnest($4::int8[], $5::int8[], $6::int8[],"
		" $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[],"
		" $12::int8[], $13::bytea[])"
		" WHERE NOT EXISTS (SELECT 1 FROM bad) RETURNING 1)"
		" SELECT 1::int8, kind, slot, cur FROM bad"
		" UNION ALL SELECT 2, count(*), 0, 0 FROM ins",
		13, {OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,
		     OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,
		     OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,
		     OID_BYTEA_ARR}},
	/* The same for the common single fence, without the fence arrays. */
	[PG_MSG_APPEND_FAST1] = {"im_msg_append_fast1",
		"WITH f AS MATERIALIZED (SELECT epoch::int8 AS epoch"
		" FROM im_slots WHERE kind = $1 AND slot = $2 FOR SHARE),"
		" bad AS (SELECT $1 AS kind, $2 AS slot,"
		" coalesce((SELECT epoch FROM f), 0) AS cur"
		" WHERE NOT EXISTS (SELECT 1 FROM f WHERE epoch = $3)),"
		" ins AS (INSERT INTO im_messages (conv, seq, prev_seq, ordinal,"
		" sender, dedup_id, reply_to, time_ms, type, body)"
		" SELECT * FROM unnest($4::int8[], $5::int8[], $6::int8[],"
		" $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[],"
		" $12::int8[], $13::bytea[])"
		" WHERE NOT EXISTS (SELECT 1 FROM bad) RETURNING 1)"
		" SELECT 1::int8, kind, slot, cur FROM bad"
		" UNION ALL SELECT 2, count(*), 0, 0 FROM ins",
		13, {OID_INT8, OID_INT8, OID_INT8, OID_INT8_ARR,
		     OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,
		     OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,
		     OID_BYTEA_ARR}},
	[PG_MSG_READ] = {"im_msg_read",
		"SELECT conv::int8, seq::int8, prev_seq::int8, ordinal::int8,"
		" sender::int8, dedup_id::int8, reply_to::int8, time_ms::int8,"
		" type::int8, body FROM im_messages"
		" WHERE conv = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
		4, {OID_INT8, OID_INT8, OID_INT8, OID_INT8}},
	[PG_MSG_LAST] = {"im_msg_last",
		"SELECT seq::int8, ordinal::int8 FROM im_messages"
		" WHERE conv = $1 AND seq <= $2 ORDER BY seq DESC LIMIT 1",
		2, {OID_INT8, OID_INT8}},
	[PG_MSG_DEDUP] = {"im_msg_dedup",
		"SELECT conv::int8, seq::int8, prev_seq::int8, ordinal::int8,"
		" sender::int8, dedup_id::int8, reply_to::int8, time_ms::int8,"
		" type::int8 FROM im_messages"
		" WHERE conv = $1 AND sender = $2 AND dedup_id = $3",
		3, {OID_INT8, OID_INT8, OID_INT8}},
	[PG_GROUP_CREATE] = {"im_group_create",
		"INSERT INTO im_groups (gid, creator, created_ms, name)"
		" VALUES ($1, $2, $3, $4) ON CONFLICT (gid) DO NOTHING RETURNING 1",
		4, {OID_INT8, OID_INT8, OID_INT8, OID_TEXT}},
	[PG_GROUP_LOOKUP] = {"im_group_lookup",
		"SELECT gid::int8, creator::int8, created_ms::int8, name"
		" FROM im_groups WHERE gid = $1",
		1, {OID_INT8}},
	[PG_MEMBER_ADD] = {"im_member_add",
		"WITH g AS (SELECT gid FROM im_groups WHERE gid = $1),"
		" l AS (SELECT seq, ordinal FROM im_messages WHERE conv = $1"
		" ORDER BY seq DESC LIMIT 1),"
		" ins AS (INSERT INTO im_members (gid, uid, read_seq,"
		" read_ordinal, flags, joined_ms) SELECT g.gid, $2,"
		" coalesce((SELECT seq FROM l), 0),"
		" coalesce((SELECT ordinal FROM l), 0), 0,"
		" (extract(epoch FROM clock_timestamp()) * 1000)::int8 FROM g"
		" ON CONFLICT (gid, uid) DO NOTHING RETURNING 1)"
		" SELECT (SELECT count(*) FROM g)::int8,"
		" (SELECT count(*) FROM ins)::int8",
		2, {OID_INT8, OID_INT8}},
	[PG_MEMBER_REMOVE] = {"im_member_remove",
		"DELETE FROM im_members WHERE gid = $1 AND uid = $2 RETURNING 1",
		2, {OID_INT8, OID_INT8}},
	[PG_MEMBER_LIST] = {"im_member_list",
		"SELECT uid::int8 FROM im_members WHERE gid = $1 ORDER BY uid",
		1, {OID_INT8}},
	[PG_CONV_LOAD] = {"im_conv_load",
		"SELECT m.gid::int8, m.read_seq::int8, m.read_ordinal::int8,"
		" m.flags::int8, coalesce(l.seq, 0)::int8,"
		" coalesce(l.ordinal, 0)::int8, coalesce(l.sender, 0)::int8,"
		" coalesce(l.time_ms, 0)::int8, coalesce(l.preview, ''::bytea)"
		" FROM im_members m LEFT JOIN LATERAL (SELECT seq, ordinal, sender,"
		" time_ms, substr(body, 1, " "64" ") AS preview FROM im_messages"
		" WHERE conv = m.gid ORDER BY seq DESC LIMIT 1) l ON true"
		" WHERE m.uid = $1 ORDER BY m.gid",
		1, {OID_INT8}},
	[PG_CONV_UPDATE] = {"im_conv_update",
		"UPDATE im_members SET"
		" read_ordinal = CASE WHEN $3 > read_seq THEN $4"
		" ELSE read_ordinal END,"
		" read_seq = greatest(read_seq, $3), flags = $5"
		" WHERE gid = $2 AND uid = $1 RETURNING 1",
		5, {OID_INT8, OID_INT8, OID_INT8, OID_INT8, OID_INT8}},
	[PG_UQ_APPEND] = {"im_uq_append",
		"WITH " FENCE_CTE ","
		" ins AS (INSERT INTO im_userq (uid, seq, time_ms, type, body)"
		" SELECT * FROM unnest($4::int8[], $5::int8[], $6::int8[],"
		" $7::int8[], $8::bytea[]) WHERE NOT EXISTS (SELECT 1 FROM bad)"
		" ON CONFLICT (uid, seq) DO NOTHING RETURNING 1)"
		" SELECT 1::int8, kind, slot, cur FROM bad"
		" UNION ALL SELECT 2, count(*), 0, 0 FROM ins",
		8, {OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,
		    OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_BYTEA_ARR}},
	[PG_UQ_READ] = {"im_uq_read",
		"SELECT uid::int8, seq::int8, time_ms::int8, type::int8, body"
		" FROM im_userq WHERE uid = $1 AND seq > $2 ORDER BY seq LIMIT $3",
		3, {OID_INT8, OID_INT8, OID_INT8}},
	/* ops version 2: cluster membership */
	[PG_NODE_REGISTER] = {"im_node_register",
		"INSERT INTO im_nodes (name, role, address, registered_ms,"
		" heartbeat_ms, incarnation) VALUES ($1, $2, $3, $4, $4, 1)"
		" ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role,"
		" address = EXCLUDED.address,"
		" registered_ms = EXCLUDED.registered_ms,"
		" heartbeat_ms = EXCLUDED.heartbeat_ms,"
		" incarnation = im_nodes.incarnation + 1"
		" RETURNING incarnation::int8",
		4, {OID_TEXT, OID_INT8, OID_TEXT, OID_INT8}},
	[PG_NODE_HEARTBEAT] = {"im_node_heartbeat",
		"UPDATE im_nodes SET heartbeat_ms = $2 WHERE name = $1"
		" RETURNING 1::int8",
		2, {OID_TEXT, OID_INT8}},
	/* Byte order, as sqlite's: the listing does not depend on the
	 * server's locale. */
	[PG_NODE_LIST] = {"im_node_list",
		"SELECT name, role::int8, address, registered_ms::int8,"
		" heartbeat_ms::int8, incarnation::int8 FROM im_nodes"
		" ORDER BY name COLLATE \"C\"",
		0, {0}},
	/* ops version 4. Groups whose gid exists with the same creator and
	 * created_ms are an earlier try of this batch (kept, members added);
	 * any other existing gid is a conflict (row kind 3) and, as a stale
	 * fence (kind 1), stops every insert of the statement. */
	[PG_GROUP_CREATE_MANY] = {"im_group_create_many",
		"WITH " FENCE_CTE ","
		" gi AS (SELECT * FROM unnest($4::int8[], $5::int8[], $6::int8[],"
		" $7::text[]) AS g(gid, creator, created_ms, name)),"
		" conf AS MATERIALIZED (SELECT gi.gid FROM gi JOIN im_groups x"
		" ON x.gid = gi.gid WHERE x.creator <> gi.creator"
		" OR x.created_ms <> gi.created_ms),"
		" ok AS (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM bad)"
		" AND NOT EXISTS (SELECT 1 FROM conf)),"
		" ig AS (INSERT INTO im_groups (gid, creator, created_ms, name)"
		" SELECT gid, creator, created_ms, name FROM gi"
		" WHERE EXISTS (SELECT 1 FROM ok)"
		" ON CONFLICT (gid) DO NOTHING RETURNING 1),"
		" im AS (INSERT INTO im_members (gid, uid, read_seq, read_ordinal,"
		" flags, joined_ms) SELECT m.gid, m.uid, coalesce(l.seq, 0),"
		" coalesce(l.ordinal, 0), 0,"
		" (extract(epoch FROM clock_timestamp()) * 1000)::int8"
		" FROM (SELECT DISTINCT * FROM unnest($8::int8[], $9::int8[])"
		" AS u(gid, uid)) m LEFT JOIN LATERAL (SELECT seq, ordinal"
		" FROM im_messages WHERE conv = m.gid ORDER BY seq DESC LIMIT 1)"
		" l ON true WHERE EXISTS (SELECT 1 FROM ok)"
		" ON CONFLICT (gid, uid) DO NOTHING RETURNING 1)"
		" SELECT 1::int8, kind, slot, cur FROM bad"
		" UNION ALL SELECT 3, gid, 0, 0 FROM conf"
		" UNION ALL SELECT 2, (SELECT count(*) FROM ig),"
		" (SELECT count(*) FROM im), 0",
		9, {OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,
		    OID_INT8_ARR, OID_INT8_ARR, OID_TEXT_ARR, OID_INT8_ARR,
		    OID_INT8_ARR}},
	/* Keys in (space, id) order, so two batches lock rows in the same
	 * order; the overflow of a counter raises 22003 (IM_EFULL). */
	[PG_SEG_TAKE_MANY] = {"im_seg_take_many",
		"WITH k AS (SELECT * FROM unnest($1::int8[], $2::int8[])"
		" WITH ORDINALITY AS k(space, id, idx)),"
		" up AS (INSERT INTO im_segments (space, id, max_id)"
		" SELECT space, id, $3 FROM k ORDER BY space, id"
		" ON CONFLICT (space, id) DO UPDATE"
		" SET max_id = im_segments.max_id + EXCLUDED.max_id"
		" RETURNING space, id, max_id)"
		" SELECT k.idx::int8, up.max_id::int8 FROM k JOIN up"
		" ON up.space = k.space AND up.id = k.id",
		3, {OID_INT8_ARR, OID_INT8_ARR, OID_INT8}},
	[PG_UQ_LAST] = {"im_uq_last",
		"SELECT coalesce(max(seq), 0)::int8 FROM im_userq WHERE uid = $1",
		1, {OID_INT8}},
};

/* clang-format on */

struct pg_store {
	im_store base; /* first: the core casts between the two */
	PGconn *conn;
	im_store_pg_opts opts;
	bool prepared;
	/* Scratch for array parameters and batch bookkeeping; grows only. */
	unsigned char *buf;
	size_t buf_cap;
};

/* What an op does when the connection drops while it runs. */
enum pg_retry {
	PG_ONCE,  /* the outcome is unknown: report IM_EUNAVAIL */
	PG_AGAIN, /* a read or idempotent write: reconnect and run again */
};

#define PG(st) ((struct pg_store *)(void *)(st))

static const struct im_store_ops pg_ops;

/* ---- binary encoding ------------------------------------------------- */

static void
put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void
put_be64(unsigned char *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static uint64_t
get_be64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++) {
		v = (v << 8) | p[i];
	}
	return v;
}

/* A seq bound as a BIGINT: larger values mean "no bound". */
static uint64_t
clamp_seq(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : v;
}

/* Column c of row r as uint64; every numeric column is selected ::int8. */
static uint64_t
col_u64(const PGresult *res, int r, int c)
{
	if (PQgetisnull(res, r, c) || PQgetlength(res, r, c) != 8) {
		return 0;
	}
	return get_be64((const unsigned char *)PQgetvalue(res, r, c));
}

/* Header of a one-dimensional binary array of n elements. */
static unsigned char *
arr_head(unsigned char *p, uint32_t oid, uint32_t n)
{
	put_be32(p, 1);     /* ndim */
	put_be32(p + 4, 0); /* no NULLs */
	put_be32(p + 8, oid);
	put_be32(p + 12, n); /* dimension */
	put_be32(p + 16, 1); /* lower bound */
	return p + 20;
}

#define ARR_HEAD 20
#define ARR_I8 12

static unsigned char *
arr_i8(unsigned char *p, uint64_t v)
{
	put_be32(p, 8);
	put_be64(p + 4, v);
	return p + ARR_I8;
}

static unsigned char *
arr_bytes(unsigned char *p, const void *data, uint32_t len)
{
	put_be32(p, len);
	if (len > 0) {
		memcpy(p + 4, data, len);
	}
	return p + 4 + len;
}

static int
buf_reserve(struct pg_store *s, size_t need)
{
	unsigned char *nb;
	size_t cap;

	if (need <= s->buf_cap) {
		return IM_OK;
	}
	cap = s->buf_cap > 0 ? s->buf_cap : 4096;
	while (cap < need) {
		cap *= 2;
	}
	nb = realloc(s->buf, cap);
	if (nb == NULL) {
		im_store_set_error(&s->base, "out of memory (%zu bytes)", cap);
		return IM_ENOMEM;
	}
	s->buf = nb;
	s->buf_cap = cap;
	return IM_OK;
}

/* ---- connection ------------------------------------------------------ */

static void
set_pq_error(struct pg_store *s, const char *what)
{
	const char *m = PQerrorMessage(s->conn);
	size_t len = strlen(m);

	/* libpq messages end with a newline; errmsg is one line. */
	while (len > 0 && (m[len - 1] == '\n' || m[len - 1] == '\r')) {
		len--;
	}
	im_store_set_error(&s->base, "pg: %s: %.*s", what, (int)len, m);
}

static int
pg_prepare_all(struct pg_store *s)
{
	PGresult *res;
	int i;

	/*
	 * The append's custom plans cost more to make than to run (the array
	 * sizes change the estimates, so the plan cache never settles on a
	 * generic plan by itself). Every statement here is index driven, and
	 * the dedup probe is written so that a generic plan cannot scan.
	 */
	/* DEALLOCATE: re-preparing on a session that kept some of them. */
	res = PQexec(s->conn, "SET plan_cache_mode = force_generic_plan;"
	                      " DEALLOCATE ALL");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		im_store_set_error(&s->base, "pg: set plan_cache_mode: %s",
		                   PQresultErrorMessage(res));
		PQclear(res);
		return PQstatus(s->conn) == CONNECTION_OK ? IM_ERR
		                                          : IM_EUNAVAIL;
	}
	PQclear(res);

	for (i = 0; i < PG_NSTMT; i++) {
		res = PQprepare(s->conn, pg_stmts[i].name, pg_stmts[i].sql,
		                pg_stmts[i].nparams, pg_stmts[i].types);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			im_store_set_error(&s->base, "pg: prepare %s: %s",
			                   pg_stmts[i].name,
			                   PQresultErrorMessage(res));
			PQclear(res);
			return PQstatus(s->conn) == CONNECTION_OK ? IM_ERR
			                                          : IM_EUNAVAIL;
		}
		PQclear(res);
	}
	s->prepared = true;
	return IM_OK;
}

/* Notices ("relation exists, skipping") are not errors; keep stderr clean. */
static void
pg_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static void
pg_pause_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/*
 * Make the connection usable: reset it if it broke, bounded by
 * opts.reconnect_tries, and prepare the statements on a new session.
 */
static int
pg_ensure(struct pg_store *s)
{
	uint32_t tries;
	int fd;

	/*
	 * A server that restarted or killed our backend while we were idle
	 * has already sent its goodbye; read it now so that a write is not
	 * sent into a dead socket (its outcome would look unknown).
	 */
	if (PQstatus(s->conn) == CONNECTION_OK &&
	    (fd = PQsocket(s->conn)) >= 0) {
		struct pollfd pfd = {fd, POLLIN, 0};
		int i;

		/* The error message first, then the EOF: a few reads. */
		for (i = 0; i < 4 && poll(&pfd, 1, 0) > 0; i++) {
			if (!PQconsumeInput(s->conn)) {
				break;
			}
		}
	}
	for (tries = 0; PQstatus(s->conn) != CONNECTION_OK; tries++) {
		if (tries >= s->opts.reconnect_tries) {
			set_pq_error(s, "reconnect");
			return IM_EUNAVAIL;
		}
		if (tries > 0) {
			pg_pause_ms(50u << (tries < 5 ? tries : 5));
		}
		s->prepared = false;
		PQreset(s->conn);
	}
	if (!s->prepared) {
		return pg_prepare_all(s);
	}
	return IM_OK;
}

static bool
sqlstate_is(const PGresult *res, const char *code)
{
	const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return st != NULL && strcmp(st, code) == 0;
}

/* A statement rolled back by a race another try resolves. */
static bool
is_race(const PGresult *res)
{
	return sqlstate_is(res, "23505") || /* unique_violation */
	       sqlstate_is(res, "40001") || /* serialization_failure */
	       sqlstate_is(res, "40P01");   /* deadlock_detected */
}

/*
 * Run a prepared statement with binary parameters and results. On IM_OK
 * *out holds the result (caller PQclears). Unique violations and deadlocks
 * come back as IM_ECONFLICT with *out set, for the op to decide.
 */
static int
pg_run(struct pg_store *s, enum pg_stmt id, const char *const *vals,
       const int *lens, enum pg_retry retry, PGresult **out)
{
	static const int fmts[13] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
	uint32_t tries;
	int rc;

	*out = NULL;
	for (tries = 0;; tries++) {
		PGresult *res;
		ExecStatusType es;

		if ((rc = pg_ensure(s)) != IM_OK) {
			return rc;
		}
		res = PQexecPrepared(s->conn, pg_stmts[id].name,
		                     pg_stmts[id].nparams, vals, lens, fmts, 1);
		es = PQresultStatus(res);
		if (es == PGRES_TUPLES_OK || es == PGRES_COMMAND_OK) {
			*out = res;
			return IM_OK;
		}
		if (PQstatus(s->conn) != CONNECTION_OK) {
			im_store_set_error(
			        &s->base, "pg: %s: connection lost: %s",
			        pg_stmts[id].name,
			        res != NULL ? PQresultErrorMessage(res)
			                    : PQerrorMessage(s->conn));
			PQclear(res);
			if (retry == PG_AGAIN &&
			    tries < s->opts.reconnect_tries) {
				continue;
			}
			return IM_EUNAVAIL;
		}
		im_store_set_error(&s->base, "pg: %s: %s", pg_stmts[id].name,
		                   PQresultErrorMessage(res));
		if (is_race(res)) {
			*out = res;
			return IM_ECONFLICT;
		}
		if (sqlstate_is(res,
		                "22003")) { /* numeric_value_out_of_range */
			PQclear(res);
			return IM_EFULL;
		}
		/* Prepared statements vanish with DISCARD ALL or a pooler. */
		if (sqlstate_is(res, "26000") && tries == 0) {
			PQclear(res);
			s->prepared = false;
			continue;
		}
		PQclear(res);
		return IM_ERR;
	}
}

/*
 * pg_run for idempotent statements that may lose a race on a unique key
 * to a concurrent writer (ON CONFLICT DO NOTHING cannot cover every
 * index): run them again, up to PG_RACE_TRIES. On failure the result is
 * already cleared and a race that never settles is IM_ERR.
 */
static int
pg_run_idempotent(struct pg_store *s, enum pg_stmt id,
                  const char *const *vals, const int *lens, PGresult **out)
{
	int rc = IM_ECONFLICT;
	int c;

	for (c = 0; c < PG_RACE_TRIES && rc == IM_ECONFLICT; c++) {
		PQclear(*out);
		*out = NULL;
		rc = pg_run(s, id, vals, lens, PG_AGAIN, out);
	}
	if (rc != IM_OK) {
		PQclear(*out);
		*out = NULL;
		return rc == IM_ECONFLICT ? IM_ERR : rc;
	}
	return IM_OK;
}

/* Scalar int8 parameters: up to 5 per statement. */
struct pg_params {
	unsigned char v[5][8];
	const char *vals[5];
	int lens[5];
};

/*
 * pg_run for ops where a unique violation cannot be the caller's answer:
 * on failure the result is already cleared and IM_ECONFLICT is IM_ERR.
 */
static int
pg_query(struct pg_store *s, enum pg_stmt id, const struct pg_params *p,
         enum pg_retry retry, PGresult **out)
{
	int rc = pg_run(s, id, p->vals, p->lens, retry, out);

	if (rc != IM_OK) {
		PQclear(*out);
		*out = NULL;
		return rc == IM_ECONFLICT ? IM_ERR : rc;
	}
	return IM_OK;
}


static void
param_u64(struct pg_params *p, int i, uint64_t v)
{
	put_be64(p->v[i], v);
	p->vals[i] = (const char *)p->v[i];
	p->lens[i] = 8;
}

static void
param_str(struct pg_params *p, int i, const char *str)
{
	p->vals[i] = str;
	p->lens[i] = (int)strlen(str);
}

/* ---- migrations ------------------------------------------------------ */

static int
pg_exec_simple(struct pg_store *s, const char *sql, PGresult **out)
{
	PGresult *res = PQexec(s->conn, sql);
	ExecStatusType es = PQresultStatus(res);

	if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) {
		if (out != NULL) {
			*out = res;
		} else {
			PQclear(res);
		}
		return IM_OK;
	}
	im_store_set_error(&s->base, "pg: %.40s...: %s", sql,
	                   res != NULL ? PQresultErrorMessage(res)
	                               : PQerrorMessage(s->conn));
	PQclear(res);
	return PQstatus(s->conn) == CONNECTION_OK ? IM_ERR : IM_EUNAVAIL;
}

/* One migration step: its own transaction, under the advisory lock. */
static int
pg_migrate_step(struct pg_store *s, uint32_t *cur_out, bool *done_out)
{
	const struct im__migration *m = NULL;
	PGresult *res = NULL;
	char sql[128], why[IM_STORE_ERRMSG_MAX];
	uint32_t cur;
	int rc;

	*done_out = false;
	if ((rc = pg_exec_simple(s, "BEGIN", NULL)) != IM_OK) {
		return rc;
	}
	rc = pg_exec_simple(
	        s, "SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK ")", NULL);
	if (rc == IM_OK) {
		rc = pg_exec_simple(s, im__schema_bootstrap_sql, NULL);
	}
	if (rc == IM_OK) {
		rc = pg_exec_simple(s, im__schema_version_sql, &res);
	}
	if (rc != IM_OK) {
		goto out;
	}
	cur = PQgetisnull(res, 0, 0)
	              ? 0
	              : (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	*cur_out = cur;
	why[0] = '\0';
	rc = im__schema_next(cur, &m, why, sizeof(why));
	if (rc != IM_OK) {
		im_store_set_error(&s->base, "pg: %s", why);
		rc = IM_ESCHEMA;
		goto out;
	}
	if (m == NULL) {
		*done_out = true;
		return pg_exec_simple(s, "COMMIT", NULL);
	}
	if ((rc = pg_exec_simple(s, m->sql, NULL)) != IM_OK) {
		snprintf(why, sizeof(why), "%s", s->base.errmsg);
		im_store_set_error(&s->base, "pg: migration %u (%s): %s",
		                   m->version, m->name, why);
		goto out;
	}
	if (im__schema_set_sql(sql, sizeof(sql), m->version) != IM_OK) {
		rc = IM_ERR;
		goto out;
	}
	if ((rc = pg_exec_simple(s, sql, NULL)) == IM_OK &&
	    (rc = pg_exec_simple(s, "COMMIT", NULL)) == IM_OK) {
		*cur_out = m->version;
		return IM_OK;
	}
out:
	if (PQstatus(s->conn) == CONNECTION_OK) {
		PQclear(PQexec(s->conn, "ROLLBACK"));
	}
	return rc;
}

/*
 * Concurrent openers serialize on an advisory lock, so that they neither
 * race on CREATE TABLE nor apply a step twice; each step commits alone, so
 * a crash leaves the database at some whole version.
 */
static int
pg_migrate(im_store *st, uint32_t *schema_out)
{
	struct pg_store *s = PG(st);
	uint32_t cur = 0, steps;
	bool done = false;
	int rc;

	if ((rc = pg_ensure(s)) != IM_OK) {
		return rc;
	}
	for (steps = 0; !done; steps++) {
		if (steps > im__nmigrations) {
			im_store_set_error(st,
			                   "pg: migrations do not converge");
			return IM_ERR;
		}
		rc = pg_migrate_step(s, &cur, &done);
		if (rc != IM_OK) {
			if (rc == IM_ESCHEMA) {
				*schema_out = cur;
			}
			return rc;
		}
	}
	*schema_out = cur;
	return IM_OK;
}

/* ---- slots and segments ---------------------------------------------- */

static int
pg_slot_load(im_store *st, im_kind kind, im_slot_cb cb, void *payload)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc, r, n;

	param_u64(&p, 0, (uint64_t)kind);
	if ((rc = pg_run(s, PG_SLOT_LOAD, p.vals, p.lens, PG_AGAIN, &res)) !=
	    IM_OK) {
		PQclear(res);
		return rc;
	}
	n = PQntuples(res);
	for (r = 0; r < n && rc == 0; r++) {
		im_slot_row row = {
		        .kind = kind,
		        .slot = (uint32_t)col_u64(res, r, 0),
		        .epoch = col_u64(res, r, 1),
		        .owner = PQgetvalue(res, r, 2),
		};

		rc = cb(&row, payload);
	}
	PQclear(res);
	return rc;
}

static int
pg_slot_cas(im_store *st, im_kind kind, uint32_t slot, im_epoch expect,
            const char *owner, im_epoch *epoch_out)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc;

	param_u64(&p, 0, (uint64_t)kind);
	param_u64(&p, 1, slot);
	param_str(&p, 2, owner);
	param_u64(&p, 3, expect);
	rc = pg_run(s, expect == 0 ? PG_SLOT_CLAIM : PG_SLOT_CAS, p.vals,
	            p.lens, PG_ONCE, &res);
	if (rc == IM_OK && PQntuples(res) == 1) {
		*epoch_out = col_u64(res, 0, 0);
		PQclear(res);
		return IM_OK;
	}
	PQclear(res);
	if (rc != IM_OK) {
		return rc == IM_ECONFLICT ? IM_ERR : rc;
	}
	/*
	 * Lost: read the epoch with a fresh snapshot (this statement's may
	 * predate the winner's commit).
	 */
	if ((rc = pg_run(s, PG_SLOT_GET, p.vals, p.lens, PG_AGAIN, &res)) !=
	    IM_OK) {
		PQclear(res);
		return rc;
	}
	*epoch_out = PQntuples(res) == 1 ? col_u64(res, 0, 0) : 0;
	PQclear(res);
	im_store_set_error(st, "pg: slot %u/%u: expected epoch %llu, is %llu",
	                   (unsigned)kind, slot, (unsigned long long)expect,
	                   (unsigned long long)*epoch_out);
	return IM_ECONFLICT;
}

/* After a lost slot_cas_many: every slot's epoch, read afresh. */
static int
pg_slot_epochs(struct pg_store *s, im_kind kind, const uint32_t *slots,
               size_t n, im_epoch *epochs_out)
{
	struct pg_params p;
	PGresult *res;
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		param_u64(&p, 0, (uint64_t)kind);
		param_u64(&p, 1, slots[i]);
		rc = pg_query(s, PG_SLOT_GET, &p, PG_AGAIN, &res);
		if (rc != IM_OK) {
			return rc;
		}
		epochs_out[i] = PQntuples(res) == 1 ? col_u64(res, 0, 0) : 0;
		PQclear(res);
	}
	return IM_OK;
}

/* One statement for a node's whole share (PG_SLOT_CAS_MANY). */
static int
pg_slot_cas_many(im_store *st, im_kind kind, const uint32_t *slots,
                 const im_epoch *expect, size_t n, const char *owner,
                 im_epoch *epochs_out)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	const char *vals[4];
	int lens[4], c, r, rows;
	unsigned char *q;
	size_t i;
	uint64_t written = 0;
	bool conflict = false;
	PGresult *res = NULL;
	int rc;

	if ((rc = buf_reserve(s, 2 * (ARR_HEAD + n * ARR_I8))) != IM_OK) {
		return rc;
	}
	param_u64(&p, 0, (uint64_t)kind);
	vals[0] = p.vals[0];
	lens[0] = p.lens[0];
	q = s->buf;
	for (c = 0; c < 2; c++) {
		unsigned char *start = q;

		q = arr_head(q, OID_INT8, (uint32_t)n);
		for (i = 0; i < n; i++) {
			q = arr_i8(q, c == 0 ? (uint64_t)slots[i] : expect[i]);
		}
		vals[1 + c] = (const char *)start;
		lens[1 + c] = (int)(q - start);
	}
	vals[3] = owner;
	lens[3] = (int)strlen(owner);
	/* The outcome of a statement cut by a lost connection is unknown:
	 * run once (the caller reloads the map and plans again). */
	rc = pg_run(s, PG_SLOT_CAS_MANY, vals, lens, PG_ONCE, &res);
	if (rc == IM_ECONFLICT) {
		conflict = true; /* a concurrent claim of an unowned slot */
	} else if (rc != IM_OK) {
		PQclear(res);
		return rc;
	} else {
		rows = PQntuples(res);
		for (r = 0; r < rows; r++) {
			if (col_u64(res, r, 0) == 1) {
				conflict = true;
			} else {
				written = col_u64(res, r, 1);
			}
		}
		if (!conflict && written != n) {
			/* Cannot happen with distinct slots (the rows are
			 * locked): say so rather than report a success. */
			PQclear(res);
			im_store_set_error(st, "pg: slot_cas_many wrote %llu "
			                       "of %zu slots",
			                   (unsigned long long)written, n);
			return IM_ERR;
		}
	}
	PQclear(res);
	if (!conflict) {
		for (i = 0; i < n; i++) {
			epochs_out[i] = expect[i] + 1;
		}
		return IM_OK;
	}
	/* Lost: the current epochs with a fresh snapshot. */
	if ((rc = pg_slot_epochs(s, kind, slots, n, epochs_out)) != IM_OK) {
		return rc;
	}
	for (i = 0; i < n && epochs_out[i] == expect[i]; i++) {
	}
	im_store_set_error(st, "pg: slot %u/%u: expected epoch %llu, is %llu",
	                   (unsigned)kind, i < n ? slots[i] : slots[0],
	                   (unsigned long long)(i < n ? expect[i] : expect[0]),
	                   (unsigned long long)(i < n ? epochs_out[i]
	                                              : epochs_out[0]));
	return IM_ECONFLICT;
}

static int
pg_seg_take(im_store *st, const im_seg_key *key, uint32_t step, im_seg *seg_out)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	uint64_t max;
	int rc;

	param_u64(&p, 0, (uint64_t)key->space);
	param_u64(&p, 1, key->id);
	param_u64(&p, 2, step);
	/* A retry after a lost connection may waste a segment, never reuse. */
	if ((rc = pg_query(s, PG_SEG_TAKE, &p, PG_AGAIN, &res)) != IM_OK) {
		return rc;
	}
	if (PQntuples(res) != 1) {
		PQclear(res);
		im_store_set_error(st, "pg: seg_take returned no row");
		return IM_ERR;
	}
	max = col_u64(res, 0, 0);
	PQclear(res);
	if (max < step || max > (uint64_t)INT64_MAX) {
		im_store_set_error(st, "pg: segment counter out of range");
		return IM_ERR;
	}
	seg_out->first = max - step + 1;
	seg_out->last = max;
	return IM_OK;
}

/* ---- fenced appends -------------------------------------------------- */

/* Encode the fences as three int8 arrays at the start of the scratch. */
static size_t
fence_size(size_t nfences)
{
	return 3 * (ARR_HEAD + nfences * ARR_I8);
}

static unsigned char *
fence_encode(unsigned char *p, const im_fence *fences, size_t nfences,
             const char **vals, int *lens)
{
	size_t i;
	int c;

	for (c = 0; c < 3; c++) {
		unsigned char *start = p;

		p = arr_head(p, OID_INT8, (uint32_t)nfences);
		for (i = 0; i < nfences; i++) {
			uint64_t v = c == 0   ? (uint64_t)fences[i].kind
			             : c == 1 ? fences[i].slot
			                      : fences[i].epoch;

			p = arr_i8(p, v);
		}
		vals[c] = (const char *)start;
		lens[c] = (int)(p - start);
	}
	return p;
}

/* Rows of kind 1 name the fences that failed. */
static int
fence_report(struct pg_store *s, const PGresult *res)
{
	int r, n = PQntuples(res);

	for (r = 0; r < n; r++) {
		if (col_u64(res, r, 0) == 1) {
			im_store_set_error(
			        &s->base,
			        "pg: stale fence: slot %llu/%llu is"
			        " at epoch %llu",
			        (unsigned long long)col_u64(res, r, 1),
			        (unsigned long long)col_u64(res, r, 2),
			        (unsigned long long)col_u64(res, r, 3));
			return IM_ESTALE;
		}
	}
	return IM_OK;
}

static uint64_t
dedup_hash(const im_msg *m)
{
	return im__mix64(m->conv ^
	                 im__mix64(m->sender ^ im__mix64(m->dedup_id)));
}

/*
 * Batch bookkeeping in the scratch buffer: for each message the first
 * message of its conv (`head`) and, for an in-batch duplicate, the earlier
 * message with its key (`orig`, -1 if none). Checks the chains.
 */
static int
batch_scan(struct pg_store *s, const im_msg *msgs, size_t n, int32_t *head,
           int32_t *orig, int32_t *last, int32_t *tab, size_t tabn)
{
	size_t i, mask = tabn - 1;

	/* Pass 1: per conv, the chain. tab maps conv -> its head message. */
	for (i = 0; i < tabn; i++) {
		tab[i] = -1;
	}
	for (i = 0; i < n; i++) {
		size_t h = im__mix64(msgs[i].conv) & mask;

		while (tab[h] >= 0 && msgs[tab[h]].conv != msgs[i].conv) {
			h = (h + 1) & mask;
		}
		if (tab[h] < 0) {
			tab[h] = (int32_t)i;
			head[i] = (int32_t)i;
			last[i] = (int32_t)i;
			continue;
		}
		head[i] = tab[h];
		{
			const im_msg *pm = &msgs[last[head[i]]];

			if (msgs[i].prev_seq != pm->seq ||
			    msgs[i].ordinal != pm->ordinal + 1) {
				im_store_set_error(
				        &s->base,
				        "pg: broken chain in conv"
				        " %llu at seq %llu",
				        (unsigned long long)msgs[i].conv,
				        (unsigned long long)msgs[i].seq);
				return IM_EINVAL;
			}
		}
		last[head[i]] = (int32_t)i;
	}
	/* Pass 2: in-batch duplicates. tab maps a dedup key -> message. */
	for (i = 0; i < tabn; i++) {
		tab[i] = -1;
	}
	for (i = 0; i < n; i++) {
		size_t h = dedup_hash(&msgs[i]) & mask;

		orig[i] = -1;
		while (tab[h] >= 0) {
			const im_msg *a = &msgs[tab[h]], *b = &msgs[i];

			if (a->conv == b->conv && a->sender == b->sender &&
			    a->dedup_id == b->dedup_id) {
				orig[i] = tab[h];
				break;
			}
			h = (h + 1) & mask;
		}
		if (orig[i] < 0) {
			tab[h] = (int32_t)i;
		}
	}
	return IM_OK;
}

static bool
taken_seq(const PGresult *res)
{
	const char *con = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

	return sqlstate_is(res, "23505") && con != NULL &&
	       strcmp(con, "im_messages_pkey") == 0;
}

/* "Key (conv, seq)=(100, 6) already exists." names the taken seq. */
static void
seq_conflict(struct pg_store *s, const PGresult *res)
{
	const char *d = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	long long conv, seq;

	if (d != NULL &&
	    sscanf(d, "Key (conv, seq)=(%lld, %lld)", &conv, &seq) == 2) {
		im_store_set_error(&s->base,
		                   "pg: conv %llu seq %llu holds another"
		                   " message",
		                   (unsigned long long)conv,
		                   (unsigned long long)seq);
	} else {
		im_store_set_error(&s->base,
		                   "pg: a seq of the batch holds"
		                   " another message: %s",
		                   d != NULL ? d : "");
	}
}

/*
 * The 13 parameters of an append of msgs[sent[0..nsent)]. The fast
 * statement takes each message's own prev_seq and ordinal; the full one
 * takes its conv's base (the head's prev_seq and ordinal - 1) and rechains.
 */
static void
append_encode(unsigned char *p, const im_fence *fences, size_t nfences,
              const im_msg *msgs, const int32_t *sent, size_t nsent,
              const int32_t *head, bool fast, const char **vals, int *lens)
{
	unsigned char *sq;
	size_t i;
	int c;

	p = fence_encode(p, fences, nfences, vals, lens);
	for (c = 0; c < 9; c++) {
		unsigned char *start = p;

		p = arr_head(p, OID_INT8, (uint32_t)nsent);
		for (i = 0; i < nsent; i++) {
			const im_msg *m = &msgs[sent[i]];
			const im_msg *h = &msgs[head[sent[i]]];
			uint64_t v;

			switch (c) {
			case 0:
				v = m->conv;
				break;
			case 1:
				v = m->seq;
				break;
			case 2:
				v = fast ? m->prev_seq : h->prev_seq;
				break;
			case 3:
				v = fast ? m->ordinal : h->ordinal - 1;
				break;
			case 4:
				v = m->sender;
				break;
			case 5:
				v = m->dedup_id;
				break;
			case 6:
				v = m->reply_to;
				break;
			case 7:
				v = m->time_ms;
				break;
			default:
				v = m->type;
				break;
			}
			p = arr_i8(p, v);
		}
		vals[3 + c] = (const char *)start;
		lens[3 + c] = (int)(p - start);
	}
	sq = p;
	p = arr_head(p, OID_BYTEA, (uint32_t)nsent);
	for (i = 0; i < nsent; i++) {
		p = arr_bytes(p, msgs[sent[i]].body, msgs[sent[i]].body_len);
	}
	vals[12] = (const char *)sq;
	lens[12] = (int)(p - sq);
}

static int
pg_msg_append(im_store *st, const im_fence *fences, size_t nfences,
              const im_msg *msgs, size_t n, im_append_result *res_out)
{
	struct pg_store *s = PG(st);
	const char *vals[13];
	int lens[13];
	int32_t *head, *orig, *last, *tab, *sent;
	uint64_t *run_seq, *run_ord;
	size_t i, nsent = 0, tabn = 16, body_bytes = 0, need, meta;
	PGresult *res = NULL;
	bool pkey_hit = false;
	int rc, tries, r, c;

	if (n > PG_BATCH_MAX || nfences > PG_BATCH_MAX) {
		im_store_set_error(st, "pg: batch of %zu is too large", n);
		return IM_EINVAL;
	}
	while (tabn < 2 * n) {
		tabn *= 2;
	}
	for (i = 0; i < n; i++) {
		body_bytes += msgs[i].body_len;
	}
	/* Bookkeeping first, then the parameters, in one buffer. */
	meta = (4 * n + tabn) * sizeof(int32_t) + 2 * n * sizeof(uint64_t);
	meta = (meta + 15) & ~(size_t)15;
	need = meta + fence_size(nfences) + 12 * (ARR_HEAD + n * ARR_I8) +
	       ARR_HEAD + n * 4 + body_bytes;
	if (need > PG_PARAM_BYTES_MAX) {
		im_store_set_error(st, "pg: batch of %zu bytes is too large",
		                   need);
		return IM_EINVAL;
	}
	if ((rc = buf_reserve(s, need)) != IM_OK) {
		return rc;
	}
	run_seq = (uint64_t *)(void *)s->buf;
	run_ord = run_seq + n;
	head = (int32_t *)(void *)(run_ord + n);
	orig = head + n;
	last = orig + n;
	sent = last + n;
	tab = sent + n;
	if ((rc = batch_scan(s, msgs, n, head, orig, last, tab, tabn)) !=
	    IM_OK) {
		return rc;
	}
	for (i = 0; i < n; i++) {
		if (orig[i] < 0) {
			sent[nsent++] = (int32_t)i;
		}
	}

	/*
	 * Fast path, the common case of a batch without duplicates: insert
	 * the chain as given. A dedup key (or seq) already stored makes the
	 * INSERT fail on its unique index and roll back; then the full
	 * statement finds the duplicates and rechains.
	 */
	if (nsent == n) {
		struct pg_params fp;
		enum pg_stmt id = PG_MSG_APPEND_FAST;

		append_encode(s->buf + meta, fences, nfences, msgs, sent, nsent,
		              head, true, vals, lens);
		if (nfences == 1) {
			param_u64(&fp, 0, (uint64_t)fences[0].kind);
			param_u64(&fp, 1, fences[0].slot);
			param_u64(&fp, 2, fences[0].epoch);
			for (c = 0; c < 3; c++) {
				vals[c] = fp.vals[c];
				lens[c] = fp.lens[c];
			}
			id = PG_MSG_APPEND_FAST1;
		}
		rc = pg_run(s, id, vals, lens, PG_ONCE, &res);
		if (rc == IM_OK) {
			rc = fence_report(s, res);
			PQclear(res);
			if (rc != IM_OK) {
				return rc;
			}
			for (i = 0; i < n; i++) {
				res_out[i].seq = msgs[i].seq;
				res_out[i].prev_seq = msgs[i].prev_seq;
				res_out[i].ordinal = msgs[i].ordinal;
				res_out[i].time_ms = msgs[i].time_ms;
				res_out[i].dup = false;
			}
			return IM_OK;
		}
		pkey_hit = rc == IM_ECONFLICT && taken_seq(res);
		PQclear(res);
		res = NULL;
		if (rc != IM_ECONFLICT) {
			return rc;
		}
	}
	append_encode(s->buf + meta, fences, nfences, msgs, sent, nsent, head,
	              false, vals, lens);
	for (tries = 0;; tries++) {
		rc = pg_run(s, PG_MSG_APPEND, vals, lens, PG_ONCE, &res);
		if (rc != IM_ECONFLICT) {
			break;
		}
		/*
		 * A seq taken in two attempts in a row is taken by another
		 * message (a same-key twin would be a dup by now): no retry
		 * fixes it.
		 */
		if (taken_seq(res) && pkey_hit) {
			seq_conflict(s, res);
			PQclear(res);
			return IM_ECONFLICT;
		}
		pkey_hit = taken_seq(res);
		PQclear(res);
		res = NULL;
		if (tries + 1 >= PG_RACE_TRIES) {
			im_store_set_error(st, "pg: append kept racing other"
			                       " writers");
			return IM_EUNAVAIL;
		}
	}
	if (rc != IM_OK) {
		PQclear(res);
		return rc;
	}
	if ((rc = fence_report(s, res)) != IM_OK) {
		PQclear(res);
		return rc;
	}

	/* Results: store duplicates first, then rechain in batch order. */
	for (i = 0; i < n; i++) {
		res_out[i].dup = false;
	}
	for (r = 0; r < PQntuples(res); r++) {
		uint64_t idx;

		if (col_u64(res, r, 0) != 0) {
			continue;
		}
		idx = col_u64(res, r, 1);
		if (idx < 1 || idx > nsent) {
			continue;
		}
		i = (size_t)sent[idx - 1];
		res_out[i].dup = true;
		res_out[i].seq = col_u64(res, r, 2);
		res_out[i].prev_seq = col_u64(res, r, 3);
		res_out[i].ordinal = col_u64(res, r, 4);
		res_out[i].time_ms = col_u64(res, r, 5);
	}
	PQclear(res);
	for (i = 0; i < n; i++) {
		size_t h = (size_t)head[i];

		if (h == i) {
			run_seq[h] = msgs[i].prev_seq;
			run_ord[h] = msgs[i].ordinal - 1;
		}
		if (orig[i] >= 0) {
			res_out[i] = res_out[orig[i]];
			res_out[i].dup = true;
			continue;
		}
		if (res_out[i].dup) {
			continue;
		}
		res_out[i].seq = msgs[i].seq;
		res_out[i].prev_seq = run_seq[h];
		res_out[i].ordinal = ++run_ord[h];
		res_out[i].time_ms = msgs[i].time_ms;
		run_seq[h] = msgs[i].seq;
	}
	return IM_OK;
}

static int
pg_uq_append(im_store *st, const im_fence *fences, size_t nfences,
             const im_uq_item *items, size_t n)
{
	struct pg_store *s = PG(st);
	const char *vals[8];
	int lens[8];
	unsigned char *p, *sq;
	size_t i, body_bytes = 0, need;
	PGresult *res = NULL;
	int rc, c;

	if (n > PG_BATCH_MAX || nfences > PG_BATCH_MAX) {
		im_store_set_error(st, "pg: batch of %zu is too large", n);
		return IM_EINVAL;
	}
	for (i = 0; i < n; i++) {
		body_bytes += items[i].body_len;
	}
	need = fence_size(nfences) + 4 * (ARR_HEAD + n * ARR_I8) + ARR_HEAD +
	       n * 4 + body_bytes;
	if (need > PG_PARAM_BYTES_MAX) {
		im_store_set_error(st, "pg: batch of %zu bytes is too large",
		                   need);
		return IM_EINVAL;
	}
	if ((rc = buf_reserve(s, need)) != IM_OK) {
		return rc;
	}
	p = fence_encode(s->buf, fences, nfences, vals, lens);
	for (c = 0; c < 4; c++) {
		unsigned char *start = p;

		p = arr_head(p, OID_INT8, (uint32_t)n);
		for (i = 0; i < n; i++) {
			const im_uq_item *it = &items[i];

			p = arr_i8(p, c == 0   ? it->user
			              : c == 1 ? it->seq
			              : c == 2 ? it->time_ms
			                       : it->type);
		}
		vals[3 + c] = (const char *)start;
		lens[3 + c] = (int)(p - start);
	}
	sq = p;
	p = arr_head(p, OID_BYTEA, (uint32_t)n);
	for (i = 0; i < n; i++) {
		p = arr_bytes(p, items[i].body, items[i].body_len);
	}
	vals[7] = (const char *)sq;
	lens[7] = (int)(p - sq);

	/* ON CONFLICT DO NOTHING makes a replay harmless: retry freely. */
	if ((rc = pg_run_idempotent(s, PG_UQ_APPEND, vals, lens, &res)) !=
	    IM_OK) {
		return rc;
	}
	rc = fence_report(s, res);
	PQclear(res);
	return rc;
}

/* ---- messages -------------------------------------------------------- */

static void
row_msg(const PGresult *res, int r, im_msg *m, bool body)
{
	m->conv = col_u64(res, r, 0);
	m->seq = col_u64(res, r, 1);
	m->prev_seq = col_u64(res, r, 2);
	m->ordinal = col_u64(res, r, 3);
	m->sender = col_u64(res, r, 4);
	m->dedup_id = col_u64(res, r, 5);
	m->reply_to = col_u64(res, r, 6);
	m->time_ms = col_u64(res, r, 7);
	m->type = (uint32_t)col_u64(res, r, 8);
	if (body) {
		m->body_len = (uint32_t)PQgetlength(res, r, 9);
		m->body = PQgetvalue(res, r, 9);
	} else {
		m->body_len = 0;
		m->body = NULL;
	}
}

static int
pg_msg_read(im_store *st, im_gid conv, im_seq after, im_seq until,
            uint32_t limit, im_msg_cb cb, void *payload)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc, r, n;

	param_u64(&p, 0, conv);
	param_u64(&p, 1, clamp_seq(after));
	param_u64(&p, 2, clamp_seq(until));
	param_u64(&p, 3, limit);
	if (after >= (uint64_t)INT64_MAX) {
		return IM_OK;
	}
	if ((rc = pg_query(s, PG_MSG_READ, &p, PG_AGAIN, &res)) != IM_OK) {
		return rc;
	}
	n = PQntuples(res);
	for (r = 0; r < n && rc == 0; r++) {
		im_msg m;

		row_msg(res, r, &m, true);
		rc = cb(&m, payload);
	}
	PQclear(res);
	return rc;
}

static int
pg_msg_last(im_store *st, im_gid conv, im_seq at, im_msg_pos *pos_out)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc;

	param_u64(&p, 0, conv);
	param_u64(&p, 1, clamp_seq(at));
	if ((rc = pg_query(s, PG_MSG_LAST, &p, PG_AGAIN, &res)) != IM_OK) {
		return rc;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		pos_out->seq = 0;
		pos_out->ordinal = 0;
		im_store_set_error(st,
		                   "pg: no message in conv %llu at or"
		                   " below seq %llu",
		                   (unsigned long long)conv,
		                   (unsigned long long)at);
		return IM_ENOTFOUND;
	}
	pos_out->seq = col_u64(res, 0, 0);
	pos_out->ordinal = col_u64(res, 0, 1);
	PQclear(res);
	return IM_OK;
}

static int
pg_msg_find_dedup(im_store *st, im_gid conv, im_uid sender, uint64_t dedup_id,
                  im_msg *msg_out)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc;

	param_u64(&p, 0, conv);
	param_u64(&p, 1, sender);
	param_u64(&p, 2, dedup_id);
	if ((rc = pg_query(s, PG_MSG_DEDUP, &p, PG_AGAIN, &res)) != IM_OK) {
		return rc;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		im_store_set_error(st,
		                   "pg: no message with dedup key"
		                   " %llu/%llu/%llu",
		                   (unsigned long long)conv,
		                   (unsigned long long)sender,
		                   (unsigned long long)dedup_id);
		return IM_ENOTFOUND;
	}
	row_msg(res, 0, msg_out, false);
	PQclear(res);
	return IM_OK;
}

/* ---- groups and members ---------------------------------------------- */

static int
pg_group_create(im_store *st, const im_group *group)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc;

	param_u64(&p, 0, group->gid);
	param_u64(&p, 1, group->creator);
	param_u64(&p, 2, group->created_ms);
	param_str(&p, 3, group->name);
	if ((rc = pg_query(s, PG_GROUP_CREATE, &p, PG_ONCE, &res)) != IM_OK) {
		return rc;
	}
	rc = PQntuples(res) == 1 ? IM_OK : IM_ECONFLICT;
	PQclear(res);
	if (rc == IM_ECONFLICT) {
		im_store_set_error(st, "pg: group %llu exists",
		                   (unsigned long long)group->gid);
	}
	return rc;
}

static int
pg_group_lookup(im_store *st, im_gid gid, im_group *out)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc;

	param_u64(&p, 0, gid);
	if ((rc = pg_query(s, PG_GROUP_LOOKUP, &p, PG_AGAIN, &res)) != IM_OK) {
		return rc;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		im_store_set_error(st, "pg: no group %llu",
		                   (unsigned long long)gid);
		return IM_ENOTFOUND;
	}
	out->gid = col_u64(res, 0, 0);
	out->creator = col_u64(res, 0, 1);
	out->created_ms = col_u64(res, 0, 2);
	snprintf(out->name, sizeof(out->name), "%.*s",
	         IM__MIN(PQgetlength(res, 0, 3), IM_GROUP_NAME_MAX),
	         PQgetvalue(res, 0, 3));
	PQclear(res);
	return IM_OK;
}

static int
pg_member_add(im_store *st, im_gid gid, im_uid user, bool *added_out)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc;

	param_u64(&p, 0, gid);
	param_u64(&p, 1, user);
	if ((rc = pg_query(s, PG_MEMBER_ADD, &p, PG_ONCE, &res)) != IM_OK) {
		return rc;
	}
	if (col_u64(res, 0, 0) == 0) {
		PQclear(res);
		im_store_set_error(st, "pg: no group %llu",
		                   (unsigned long long)gid);
		return IM_ENOTFOUND;
	}
	*added_out = col_u64(res, 0, 1) == 1;
	PQclear(res);
	return IM_OK;
}

static int
pg_group_create_many(im_store *st, const im_fence *fences, size_t nfences,
                     const im_group_new *groups, size_t n)
{
	struct pg_store *s = PG(st);
	const char *vals[9];
	int lens[9];
	unsigned char *p, *start;
	size_t i, j, nm = 0, names = 0, need;
	PGresult *res = NULL;
	int rc, c, r;

	for (i = 0; i < n; i++) {
		nm += groups[i].nmembers;
		names += strlen(groups[i].group.name);
	}
	need = fence_size(nfences) + 3 * (ARR_HEAD + n * ARR_I8) + ARR_HEAD +
	       n * 4 + names + 2 * (ARR_HEAD + nm * ARR_I8);
	if ((rc = buf_reserve(s, need)) != IM_OK) {
		return rc;
	}
	p = fence_encode(s->buf, fences, nfences, vals, lens);
	for (c = 0; c < 3; c++) {
		start = p;
		p = arr_head(p, OID_INT8, (uint32_t)n);
		for (i = 0; i < n; i++) {
			const im_group *g = &groups[i].group;

			p = arr_i8(p, c == 0   ? g->gid
			              : c == 1 ? g->creator
			                       : g->created_ms);
		}
		vals[3 + c] = (const char *)start;
		lens[3 + c] = (int)(p - start);
	}
	start = p;
	p = arr_head(p, OID_TEXT, (uint32_t)n);
	for (i = 0; i < n; i++) {
		p = arr_bytes(p, groups[i].group.name,
		              (uint32_t)strlen(groups[i].group.name));
	}
	vals[6] = (const char *)start;
	lens[6] = (int)(p - start);
	for (c = 0; c < 2; c++) {
		start = p;
		p = arr_head(p, OID_INT8, (uint32_t)nm);
		for (i = 0; i < n; i++) {
			for (j = 0; j < groups[i].nmembers; j++) {
				p = arr_i8(p, c == 0 ? groups[i].group.gid
				                     : groups[i].members[j]);
			}
		}
		vals[7 + c] = (const char *)start;
		lens[7 + c] = (int)(p - start);
	}
	/* Idempotent (see the statement): a lost connection or a race on a
	 * unique key is answered by running it again. */
	if ((rc = pg_run_idempotent(s, PG_GROUP_CREATE_MANY, vals, lens, &res)) !=
	    IM_OK) {
		return rc;
	}
	rc = fence_report(s, res);
	for (r = 0; rc == IM_OK && r < PQntuples(res); r++) {
		if (col_u64(res, r, 0) == 3) {
			im_store_set_error(st, "pg: group %llu exists"
			                       " (another group)",
			                   (unsigned long long)col_u64(res, r,
			                                               1));
			rc = IM_ECONFLICT;
		}
	}
	PQclear(res);
	return rc;
}

static int
pg_seg_take_many(im_store *st, const im_seg_key *keys, size_t n,
                 uint32_t step, im_seg *segs_out)
{
	struct pg_store *s = PG(st);
	const char *vals[3];
	int lens[3];
	unsigned char *p, *start, stepv[8];
	size_t i;
	PGresult *res = NULL;
	int rc, c, r;

	if ((rc = buf_reserve(s, 2 * (ARR_HEAD + n * ARR_I8))) != IM_OK) {
		return rc;
	}
	p = s->buf;
	for (c = 0; c < 2; c++) {
		start = p;
		p = arr_head(p, OID_INT8, (uint32_t)n);
		for (i = 0; i < n; i++) {
			p = arr_i8(p, c == 0 ? (uint64_t)keys[i].space
			                     : keys[i].id);
		}
		vals[c] = (const char *)start;
		lens[c] = (int)(p - start);
	}
	put_be64(stepv, step);
	vals[2] = (const char *)stepv;
	lens[2] = 8;
	/* A retry may waste segments, never reuse one; deadlocks between
	 * two batches are retried too. */
	if ((rc = pg_run_idempotent(s, PG_SEG_TAKE_MANY, vals, lens, &res)) !=
	    IM_OK) {
		return rc;
	}
	if ((size_t)PQntuples(res) != n) {
		im_store_set_error(st, "pg: seg_take_many: %d rows for %zu",
		                   PQntuples(res), n);
		PQclear(res);
		return IM_ERR;
	}
	for (r = 0; r < (int)n; r++) {
		uint64_t idx = col_u64(res, r, 0), max = col_u64(res, r, 1);

		if (idx < 1 || idx > n || max < step ||
		    max > (uint64_t)INT64_MAX) {
			PQclear(res);
			im_store_set_error(st, "pg: segment counter out of"
			                       " range");
			return IM_ERR;
		}
		segs_out[idx - 1].first = max - step + 1;
		segs_out[idx - 1].last = max;
	}
	PQclear(res);
	return IM_OK;
}

static int
pg_member_remove(im_store *st, im_gid gid, im_uid user, bool *removed_out)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc;

	param_u64(&p, 0, gid);
	param_u64(&p, 1, user);
	if ((rc = pg_query(s, PG_MEMBER_REMOVE, &p, PG_ONCE, &res)) != IM_OK) {
		return rc;
	}
	*removed_out = PQntuples(res) > 0;
	PQclear(res);
	return IM_OK;
}

static int
pg_member_list(im_store *st, im_gid gid, im_uid_cb cb, void *payload)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc, r, n;

	param_u64(&p, 0, gid);
	if ((rc = pg_query(s, PG_MEMBER_LIST, &p, PG_AGAIN, &res)) != IM_OK) {
		return rc;
	}
	n = PQntuples(res);
	for (r = 0; r < n && rc == 0; r++) {
		rc = cb(col_u64(res, r, 0), payload);
	}
	PQclear(res);
	return rc;
}

static int
pg_conv_load(im_store *st, im_uid user, im_conv_cb cb, void *payload)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc, r, n;

	param_u64(&p, 0, user);
	if ((rc = pg_query(s, PG_CONV_LOAD, &p, PG_AGAIN, &res)) != IM_OK) {
		return rc;
	}
	n = PQntuples(res);
	for (r = 0; r < n && rc == 0; r++) {
		im_conv_row row = {
		        .conv = col_u64(res, r, 0),
		        .read_seq = col_u64(res, r, 1),
		        .read_ordinal = col_u64(res, r, 2),
		        .flags = (uint32_t)col_u64(res, r, 3),
		        .last = {col_u64(res, r, 4), col_u64(res, r, 5)},
		        .last_sender = col_u64(res, r, 6),
		        .last_time_ms = col_u64(res, r, 7),
		        .preview_len = (uint32_t)IM__MIN(PQgetlength(res, r, 8),
		                                         IM_PREVIEW_MAX),
		};

		/* Never NULL, also when empty (callers memcpy it). */
		row.preview = PQgetvalue(res, r, 8);
		rc = cb(&row, payload);
	}
	PQclear(res);
	return rc;
}

static int
pg_conv_update(im_store *st, im_uid user, im_gid conv, im_seq read_seq,
               uint64_t read_ordinal, uint32_t flags)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc;

	param_u64(&p, 0, user);
	param_u64(&p, 1, conv);
	param_u64(&p, 2, clamp_seq(read_seq));
	param_u64(&p, 3, read_ordinal);
	param_u64(&p, 4, flags);
	/* A monotonic pointer and absolute flags: replaying is harmless. */
	if ((rc = pg_query(s, PG_CONV_UPDATE, &p, PG_AGAIN, &res)) != IM_OK) {
		return rc;
	}
	rc = PQntuples(res) > 0 ? IM_OK : IM_ENOTFOUND;
	PQclear(res);
	if (rc == IM_ENOTFOUND) {
		im_store_set_error(st, "pg: user %llu is not in group %llu",
		                   (unsigned long long)user,
		                   (unsigned long long)conv);
	}
	return rc;
}

static int
pg_uq_last(im_store *st, im_uid user, im_seq *last_out)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc;

	param_u64(&p, 0, user);
	if ((rc = pg_query(s, PG_UQ_LAST, &p, PG_AGAIN, &res)) != IM_OK) {
		return rc;
	}
	*last_out = PQntuples(res) == 1 ? col_u64(res, 0, 0) : 0;
	PQclear(res);
	return IM_OK;
}

static int
pg_uq_read(im_store *st, im_uid user, im_seq after, uint32_t limit, im_uq_cb cb,
           void *payload)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc, r, n;

	if (after >= (uint64_t)INT64_MAX) {
		return IM_OK;
	}
	param_u64(&p, 0, user);
	param_u64(&p, 1, after);
	param_u64(&p, 2, limit);
	if ((rc = pg_query(s, PG_UQ_READ, &p, PG_AGAIN, &res)) != IM_OK) {
		return rc;
	}
	n = PQntuples(res);
	for (r = 0; r < n && rc == 0; r++) {
		im_uq_item it = {
		        .user = col_u64(res, r, 0),
		        .seq = col_u64(res, r, 1),
		        .time_ms = col_u64(res, r, 2),
		        .type = (uint32_t)col_u64(res, r, 3),
		        .body_len = (uint32_t)PQgetlength(res, r, 4),
		};

		it.body = PQgetvalue(res, r, 4);
		rc = cb(&it, payload);
	}
	PQclear(res);
	return rc;
}

/* ---- nodes (ops version 2) ------------------------------------------ */

static int
pg_node_register(im_store *st, const char *name, im_node_role role,
                 const char *address, uint64_t now_ms,
                 uint64_t *incarnation_out)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc;

	param_str(&p, 0, name);
	param_u64(&p, 1, (uint64_t)role);
	param_str(&p, 2, address);
	param_u64(&p, 3, now_ms);
	/* Not idempotent (the incarnation moves): a lost answer is unknown. */
	if ((rc = pg_run(s, PG_NODE_REGISTER, p.vals, p.lens, PG_ONCE,
	                 &res)) != IM_OK) {
		PQclear(res);
		return rc == IM_ECONFLICT ? IM_ERR : rc;
	}
	*incarnation_out = col_u64(res, 0, 0);
	PQclear(res);
	return IM_OK;
}

static int
pg_node_heartbeat(im_store *st, const char *name, uint64_t now_ms)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	PGresult *res;
	int rc;

	param_str(&p, 0, name);
	param_u64(&p, 1, now_ms);
	if ((rc = pg_run(s, PG_NODE_HEARTBEAT, p.vals, p.lens, PG_AGAIN,
	                 &res)) != IM_OK) {
		PQclear(res);
		return rc == IM_ECONFLICT ? IM_ERR : rc;
	}
	rc = PQntuples(res) == 1 ? IM_OK : IM_ENOTFOUND;
	PQclear(res);
	if (rc == IM_ENOTFOUND) {
		im_store_set_error(st,
		                   "pg: node_heartbeat: node '%s' is not "
		                   "registered",
		                   name);
	}
	return rc;
}

static int
pg_node_list(im_store *st, im_node_cb cb, void *payload)
{
	struct pg_store *s = PG(st);
	PGresult *res;
	int rc, r, n;

	if ((rc = pg_run(s, PG_NODE_LIST, NULL, NULL, PG_AGAIN, &res)) !=
	    IM_OK) {
		PQclear(res);
		return rc == IM_ECONFLICT ? IM_ERR : rc;
	}
	n = PQntuples(res);
	for (r = 0; r < n && rc == 0; r++) {
		/* libpq NUL-terminates every value, binary ones too. */
		im_node_row row = {
		        .name = PQgetvalue(res, r, 0),
		        .role = (im_node_role)col_u64(res, r, 1),
		        .address = PQgetvalue(res, r, 2),
		        .registered_ms = col_u64(res, r, 3),
		        .heartbeat_ms = col_u64(res, r, 4),
		        .incarnation = col_u64(res, r, 5),
		};

		rc = cb(&row, payload);
	}
	PQclear(res);
	return rc;
}

/* ---- open and close -------------------------------------------------- */

static void
pg_close(im_store *st)
{
	struct pg_store *s = PG(st);

	PQfinish(s->conn);
	free(s->buf);
	free(s);
}

static const struct im_store_ops pg_ops = {
        .version = IM_STORE_OPS_VERSION,
        .name = "pg",
        .close = pg_close,
        .migrate = pg_migrate,
        .slot_load = pg_slot_load,
        .slot_cas = pg_slot_cas,
        .seg_take = pg_seg_take,
        .msg_append = pg_msg_append,
        .msg_read = pg_msg_read,
        .msg_last = pg_msg_last,
        .msg_find_dedup = pg_msg_find_dedup,
        .group_create = pg_group_create,
        .group_lookup = pg_group_lookup,
        .member_add = pg_member_add,
        .member_remove = pg_member_remove,
        .member_list = pg_member_list,
        .conv_load = pg_conv_load,
        .conv_update = pg_conv_update,
        .uq_append = pg_uq_append,
        .uq_read = pg_uq_read,
        /* version 2 */
        .node_register = pg_node_register,
        .node_heartbeat = pg_node_heartbeat,
        .node_list = pg_node_list,
        /* version 3 */
        .slot_cas_many = pg_slot_cas_many,
        /* version 4 */
        .group_create_many = pg_group_create_many,
        .seg_take_many = pg_seg_take_many,
        .uq_last = pg_uq_last,
};

static void
open_error(char *errbuf, size_t errlen, const char *msg)
{
	if (errbuf != NULL && errlen > 0) {
		snprintf(errbuf, errlen, "%s", msg);
	}
}

int
im_store_pg_open(im_store **out, const char *conninfo,
                 const im_store_pg_opts *opts, char *errbuf, size_t errlen)
{
	static const im_store_pg_opts defaults = IM_STORE_PG_OPTS_INIT;
	const char *keys[3] = {"connect_timeout", "dbname", NULL};
	const char *vals[3];
	char timeout[16];
	struct pg_store *s;
	uint32_t schema;
	int rc;

	if (out == NULL) {
		open_error(errbuf, errlen, "pg: out is NULL");
		return IM_EINVAL;
	}
	*out = NULL;
	if (conninfo == NULL) {
		open_error(errbuf, errlen, "pg: conninfo is NULL");
		return IM_EINVAL;
	}
	if (opts != NULL &&
	    (opts->version == 0 || opts->version > IM_STORE_PG_OPTS_VERSION)) {
		open_error(errbuf, errlen, "pg: unknown opts version");
		return IM_EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		open_error(errbuf, errlen, "pg: out of memory");
		return IM_ENOMEM;
	}
	s->opts = opts != NULL ? *opts : defaults;
	if (s->opts.reconnect_tries == 0) {
		s->opts.reconnect_tries = 1;
	}
	/* Never unbounded (libpq's 0); libpq counts seconds, minimum 2. */
	if (s->opts.connect_timeout_ms == 0) {
		s->opts.connect_timeout_ms = defaults.connect_timeout_ms;
	}
	snprintf(timeout, sizeof(timeout), "%u",
	         (unsigned)IM__MAX(2u, ((uint64_t)s->opts.connect_timeout_ms +
	                                999) / 1000));
	vals[0] = timeout;
	vals[1] = conninfo;
	vals[2] = NULL;
	/* Keys later in the list win: the caller's conninfo may override. */
	s->conn = PQconnectdbParams(keys, vals, 1);
	if (s->conn == NULL) {
		free(s);
		open_error(errbuf, errlen, "pg: out of memory");
		return IM_ENOMEM;
	}
	PQsetNoticeProcessor(s->conn, pg_notice, NULL);
	if (im_store_init(&s->base, &pg_ops) != IM_OK) {
		rc = IM_ERR;
		goto fail;
	}
	if (PQstatus(s->conn) != CONNECTION_OK) {
		set_pq_error(s, "connect");
		rc = IM_EUNAVAIL;
		goto fail;
	}
	/* Migrate before preparing: the statements need the tables. */
	s->prepared = true;
	if ((rc = pg_migrate(&s->base, &schema)) != IM_OK) {
		goto fail;
	}
	if ((rc = pg_prepare_all(s)) != IM_OK) {
		goto fail;
	}
	*out = &s->base;
	return IM_OK;
fail:
	open_error(errbuf, errlen, s->base.errmsg);
	pg_close(&s->base);
	return rc;
}
