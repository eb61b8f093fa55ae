/*
 * The SQL of the PostgreSQL backend: every statement the ops run, prepared
 * once per session (pg.c) and named by enum pg_stmt. Kept apart from the
 * code because it is most of the backend's text and is read on its own:
 * the statements are where the fencing and dedup logic of the header
 * comment in pg.c lives.
 */
#include "store/pg/pg_internal.h"

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

/* The members of a batch of new groups ($8 gids, $9 uids), each read
 * pointer at its group's last message, only when the CTE `ok` has a row;
 * the caller adds more conditions and the conflict clause. */
#define MEMBERS_INSERT_OK                                                  \
	"INSERT INTO im_members (gid, uid, read_seq, read_ordinal,"          \
	" flags, joined_ms) SELECT m.gid, m.uid, coalesce(l.seq, 0),"        \
	" coalesce(l.ordinal, 0), 0,"                                        \
	" (extract(epoch FROM clock_timestamp()) * 1000)::int8"              \
	" FROM (SELECT DISTINCT * FROM unnest($8::int8[], $9::int8[])"       \
	" AS u(gid, uid)) m LEFT JOIN LATERAL (SELECT seq, ordinal"          \
	" FROM im_messages WHERE conv = m.gid ORDER BY seq DESC LIMIT 1)"    \
	" l ON true WHERE EXISTS (SELECT 1 FROM ok)"

/* Types of the message arrays $4..$13 of the appends. */
#define MSG_ARR_TYPES                                                      \
	OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,            \
	OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,            \
	OID_INT8_ARR, OID_BYTEA_ARR

/* A message is read for its sender: the read pointer of each sender that
 * is a member moves forward to its last message inserted (ins returns
 * conv, sender, seq, ordinal), as the conversation lists count unread. */
#define OWN_READ                                                           \
	" own AS (UPDATE im_members mm SET read_seq = x.seq,"                \
	" read_ordinal = x.ord FROM (SELECT conv, sender, max(seq) AS seq,"  \
	" max(ordinal) AS ord FROM ins GROUP BY conv, sender) x"             \
	" WHERE mm.gid = x.conv AND mm.uid = x.sender"                       \
	" AND mm.read_seq < x.seq RETURNING 1)"

/* The fast appends: insert $4..$13 as given unless a fence is stale. */
#define FAST_INSERT                                                        \
	" ins AS (INSERT INTO im_messages (conv, seq, prev_seq, ordinal,"    \
	" sender, dedup_id, reply_to, time_ms, type, body)"                  \
	" SELECT * FROM unnest($4::int8[], $5::int8[], $6::int8[],"          \
	" $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[],"     \
	" $12::int8[], $13::bytea[])"                                        \
	" WHERE NOT EXISTS (SELECT 1 FROM bad)"                              \
	" RETURNING conv, sender, seq, ordinal),"                            \
	OWN_READ                                                             \
	" SELECT 1::int8, kind, slot, cur FROM bad"                          \
	" UNION ALL SELECT 2, count(*), 0, 0 FROM ins"

const struct pg_stmt_def im__pg_stmts[PG_NSTMT] = {
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
		" RETURNING conv, sender, seq, ordinal),"
		OWN_READ
		" SELECT 0::int8, idx, seq, prev_seq, ordinal, time_ms FROM o"
		" UNION ALL SELECT 1, kind, slot, cur, 0, 0 FROM bad"
		" UNION ALL SELECT 2, count(*), 0, 0, 0, 0 FROM ins",
		13, {OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, MSG_ARR_TYPES}},
	[PG_MSG_APPEND_FAST] = {"im_msg_append_fast",
		"WITH " FENCE_CTE ","
		FAST_INSERT,
		13, {OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, MSG_ARR_TYPES}},
	/* The same for the common single fence, without the fence arrays. */
	[PG_MSG_APPEND_FAST1] = {"im_msg_append_fast1",
		"WITH f AS MATERIALIZED (SELECT epoch::int8 AS epoch"
		" FROM im_slots WHERE kind = $1 AND slot = $2 FOR SHARE),"
		" bad AS (SELECT $1 AS kind, $2 AS slot,"
		" coalesce((SELECT epoch FROM f), 0) AS cur"
		" WHERE NOT EXISTS (SELECT 1 FROM f WHERE epoch = $3)),"
		FAST_INSERT,
		13, {OID_INT8, OID_INT8, OID_INT8, MSG_ARR_TYPES}},
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
		" im AS (" MEMBERS_INSERT_OK
		" ON CONFLICT (gid, uid) DO NOTHING RETURNING 1)"
		" SELECT 1::int8, kind, slot, cur FROM bad"
		" UNION ALL SELECT 3, gid, 0, 0 FROM conf"
		" UNION ALL SELECT 2, (SELECT count(*) FROM ig),"
		" (SELECT count(*) FROM im), 0",
		9, {OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,
		    OID_INT8_ARR, OID_INT8_ARR, OID_TEXT_ARR, OID_INT8_ARR,
		    OID_INT8_ARR}},
	/* group_create_many with a create key per row ($10, 0 = none): a
	 * row whose key exists writes nothing and comes back as kind 4 (its
	 * index from 1, the key's gid). Two statements racing on one new key:
	 * the second's key insert waits for the first and fails with a unique
	 * violation (PG_RACES runs it again and it then sees the key). */
	[PG_GROUP_CREATE_DEDUP] = {"im_group_create_dedup",
		"WITH " FENCE_CTE ","
		" gi AS (SELECT * FROM unnest($4::int8[], $5::int8[], $6::int8[],"
		" $7::text[], $10::int8[]) WITH ORDINALITY"
		" AS g(gid, creator, created_ms, name, dedup_id, idx)),"
		" old AS MATERIALIZED (SELECT gi.idx, k.gid FROM gi"
		" JOIN im_group_keys k ON k.creator = gi.creator"
		" AND k.dedup_id = gi.dedup_id WHERE gi.dedup_id <> 0),"
		" gn AS MATERIALIZED (SELECT * FROM gi WHERE gi.idx NOT IN"
		" (SELECT idx FROM old)),"
		" conf AS MATERIALIZED (SELECT gn.gid FROM gn JOIN im_groups x"
		" ON x.gid = gn.gid WHERE x.creator <> gn.creator"
		" OR x.created_ms <> gn.created_ms),"
		" ok AS (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM bad)"
		" AND NOT EXISTS (SELECT 1 FROM conf)),"
		" ig AS (INSERT INTO im_groups (gid, creator, created_ms, name)"
		" SELECT gid, creator, created_ms, name FROM gn"
		" WHERE EXISTS (SELECT 1 FROM ok)"
		" ON CONFLICT (gid) DO NOTHING RETURNING 1),"
		" ik AS (INSERT INTO im_group_keys (creator, dedup_id, gid)"
		" SELECT creator, dedup_id, gid FROM gn WHERE dedup_id <> 0"
		" AND EXISTS (SELECT 1 FROM ok) RETURNING 1),"
		" im AS (" MEMBERS_INSERT_OK
		" AND m.gid IN (SELECT gid FROM gn)"
		" ON CONFLICT (gid, uid) DO NOTHING RETURNING 1)"
		" SELECT 1::int8, kind, slot, cur FROM bad"
		" UNION ALL SELECT 3, gid, 0, 0 FROM conf"
		" UNION ALL SELECT 4, idx, gid, 0 FROM old"
		" UNION ALL SELECT 2, (SELECT count(*) FROM ig),"
		" (SELECT count(*) FROM im), (SELECT count(*) FROM ik)",
		10, {OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR,
		    OID_INT8_ARR, OID_INT8_ARR, OID_TEXT_ARR, OID_INT8_ARR,
		    OID_INT8_ARR, OID_INT8_ARR}},
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
	/* ops version 6: membership and read pointers, fenced as the
	 * appends (a stale fence is a row of kind 1 and writes nothing);
	 * the row of kind 2 says what was written. */
	[PG_MEMBER_ADD_FENCED] = {"im_member_add_fenced",
		"WITH " FENCE_CTE ","
		" g AS (SELECT gid FROM im_groups WHERE gid = $4),"
		" l AS (SELECT seq, ordinal FROM im_messages WHERE conv = $4"
		" ORDER BY seq DESC LIMIT 1),"
		" ins AS (INSERT INTO im_members (gid, uid, read_seq,"
		" read_ordinal, flags, joined_ms) SELECT g.gid, $5,"
		" coalesce((SELECT seq FROM l), 0),"
		" coalesce((SELECT ordinal FROM l), 0), 0,"
		" (extract(epoch FROM clock_timestamp()) * 1000)::int8 FROM g"
		" WHERE NOT EXISTS (SELECT 1 FROM bad)"
		" ON CONFLICT (gid, uid) DO NOTHING RETURNING 1)"
		" SELECT 1::int8, kind, slot, cur FROM bad"
		" UNION ALL SELECT 2, (SELECT count(*) FROM g),"
		" (SELECT count(*) FROM ins), 0",
		5, {OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8,
		    OID_INT8}},
	[PG_MEMBER_REMOVE_FENCED] = {"im_member_remove_fenced",
		"WITH " FENCE_CTE ","
		" del AS (DELETE FROM im_members WHERE gid = $4 AND uid = $5"
		" AND NOT EXISTS (SELECT 1 FROM bad) RETURNING 1)"
		" SELECT 1::int8, kind, slot, cur FROM bad"
		" UNION ALL SELECT 2, 1, (SELECT count(*) FROM del), 0",
		5, {OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8,
		    OID_INT8}},
	[PG_CONV_UPDATE_FENCED] = {"im_conv_update_fenced",
		"WITH " FENCE_CTE ","
		" up AS (UPDATE im_members SET"
		" read_ordinal = CASE WHEN $6 > read_seq THEN $7"
		" ELSE read_ordinal END,"
		" read_seq = greatest(read_seq, $6), flags = $8"
		" WHERE gid = $5 AND uid = $4"
		" AND NOT EXISTS (SELECT 1 FROM bad) RETURNING 1)"
		" SELECT 1::int8, kind, slot, cur FROM bad"
		" UNION ALL SELECT 2, 1, (SELECT count(*) FROM up), 0",
		8, {OID_INT8_ARR, OID_INT8_ARR, OID_INT8_ARR, OID_INT8,
		    OID_INT8, OID_INT8, OID_INT8, OID_INT8}},
};

/* clang-format on */
