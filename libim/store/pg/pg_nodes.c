/*
 * Cluster membership on PostgreSQL (ops version 2): nodes register, beat
 * and are listed. A block of its own, as the version 2 ops are.
 */
#include "store/pg/pg_internal.h"

int
im__pg_node_register(im_store *st, const char *name, im_node_role role,
                     const char *address, uint64_t now_ms,
                     uint64_t *incarnation_out)
{
	struct pg_params p;
	uint64_t incarnation;
	int rc;

	pg_param_str(&p, 0, name);
	pg_param_u64(&p, 1, (uint64_t)role);
	pg_param_str(&p, 2, address);
	pg_param_u64(&p, 3, now_ms);
	/* Not idempotent (the incarnation moves): a lost answer is unknown. */
	rc = im__pg_exec_u64(PG(st), PG_NODE_REGISTER, &p, PG_ONCE,
	                     &incarnation, 1, NULL);
	if (rc == IM_OK) {
		*incarnation_out = incarnation;
	}
	return rc;
}

int
im__pg_node_heartbeat(im_store *st, const char *name, uint64_t now_ms)
{
	struct pg_params p;
	int rc, rows;

	pg_param_str(&p, 0, name);
	pg_param_u64(&p, 1, now_ms);
	rc = im__pg_exec(PG(st), PG_NODE_HEARTBEAT, &p, PG_AGAIN, NULL, NULL,
	                 &rows);
	if (rc == IM_OK && rows != 1) {
		im_store_set_error(st,
		                   "pg: node_heartbeat: node '%s' is not "
		                   "registered",
		                   name);
		return IM_ENOTFOUND;
	}
	return rc;
}

static int
node_row(const PGresult *res, int r, void *arg)
{
	struct pg_reader *l = arg;
	/* libpq NUL-terminates every value, binary ones too. */
	im_node_row row = {
	        .name = PQgetvalue(res, r, 0),
	        .role = (im_node_role)pg_col_u64(res, r, 1),
	        .address = PQgetvalue(res, r, 2),
	        .registered_ms = pg_col_u64(res, r, 3),
	        .heartbeat_ms = pg_col_u64(res, r, 4),
	        .incarnation = pg_col_u64(res, r, 5),
	};

	return l->cb.node(&row, l->payload);
}

int
im__pg_node_list(im_store *st, im_node_cb cb, void *payload)
{
	struct pg_reader l = {.cb.node = cb, .payload = payload};

	return im__pg_exec(PG(st), PG_NODE_LIST, NULL, PG_AGAIN, node_row, &l,
	                   NULL);
}
