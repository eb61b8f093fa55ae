/*
 * Cluster membership on sqlite (ops version 2). Nodes write here about
 * once a second, so these statements are prepared per call instead of
 * joining the cached set: it keeps the version 2 ops in a block of their
 * own.
 */
#include "store/sqlite/sqlite_internal.h"

/* Prepare sql for one call; the caller finalizes *out. */
static int
node_prepare(sq_store *sq, const char *sql, sqlite3_stmt **out)
{
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK) {
		return rc;
	}
	rc = sqlite3_prepare_v2(sq->db, sql, -1, out, NULL);
	if (rc != SQLITE_OK) {
		return im__sq_fail(sq, rc, "prepare node statement");
	}
	return IM_OK;
}

static int
incarnation_row(sqlite3_stmt *s, void *arg)
{
	*(uint64_t *)arg = sq_col_u64(s, 0);
	return 0;
}

int
im__sq_node_register(im_store *st, const char *name, im_node_role role,
                     const char *address, uint64_t now_ms,
                     uint64_t *incarnation_out)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s = NULL;
	int rc;

	rc = node_prepare(sq,
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
	rc = im__sq_run_stmt(sq, s,
	                     SQ_ARGS(SQ_TEXT(name), SQ_INT(role),
	                             SQ_TEXT(address), SQ_INT(now_ms)),
	                     "node_register", incarnation_row, incarnation_out);
	sqlite3_finalize(s);
	return rc;
}

int
im__sq_node_heartbeat(im_store *st, const char *name, uint64_t now_ms)
{
	sq_store *sq = sq_of(st);
	sqlite3_stmt *s = NULL;
	int rc;

	rc = node_prepare(sq,
	                  "UPDATE im_nodes SET heartbeat_ms = ?2 "
	                  "WHERE name = ?1",
	                  &s);
	if (rc != IM_OK) {
		return rc;
	}
	rc = im__sq_run_stmt(sq, s, SQ_ARGS(SQ_TEXT(name), SQ_INT(now_ms)),
	                     "node_heartbeat", NULL, NULL);
	if (rc == IM_OK && sqlite3_changes(sq->db) == 0) {
		im_store_set_error(st,
		                   "sqlite: node_heartbeat: node '%s' is "
		                   "not registered",
		                   name);
		rc = IM_ENOTFOUND;
	}
	sqlite3_finalize(s);
	return rc;
}

static int
node_row(sqlite3_stmt *s, void *arg)
{
	struct sq_reader *l = arg;
	im_node_row row = {
	        .name = (const char *)sqlite3_column_text(s, 0),
	        .role = (im_node_role)sqlite3_column_int64(s, 1),
	        .address = (const char *)sqlite3_column_text(s, 2),
	        .registered_ms = sq_col_u64(s, 3),
	        .heartbeat_ms = sq_col_u64(s, 4),
	        .incarnation = sq_col_u64(s, 5),
	};

	if (row.name == NULL || row.address == NULL) {
		return 0;
	}
	return l->cb.node(&row, l->payload);
}

int
im__sq_node_list(im_store *st, im_node_cb cb, void *payload)
{
	sq_store *sq = sq_of(st);
	struct sq_reader l = {.cb.node = cb, .payload = payload};
	sqlite3_stmt *s = NULL;
	int rc;

	rc = node_prepare(sq,
	                  "SELECT name, role, address, registered_ms, "
	                  "heartbeat_ms, incarnation FROM im_nodes "
	                  "ORDER BY name",
	                  &s);
	if (rc != IM_OK) {
		return rc;
	}
	rc = im__sq_run_stmt(sq, s, NULL, 0, "node_list", node_row, &l);
	sqlite3_finalize(s);
	return rc;
}
