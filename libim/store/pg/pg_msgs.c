/*
 * Reading messages and user queues on PostgreSQL: the range reads that
 * stream rows to the caller, the last position of a conv and the dedup
 * lookup. The writes are in pg_append.c.
 */
#include "store/pg/pg_internal.h"

static void
row_msg(const PGresult *res, int r, im_msg *m, bool body)
{
	m->conv = pg_col_u64(res, r, 0);
	m->seq = pg_col_u64(res, r, 1);
	m->prev_seq = pg_col_u64(res, r, 2);
	m->ordinal = pg_col_u64(res, r, 3);
	m->sender = pg_col_u64(res, r, 4);
	m->dedup_id = pg_col_u64(res, r, 5);
	m->reply_to = pg_col_u64(res, r, 6);
	m->time_ms = pg_col_u64(res, r, 7);
	m->type = (uint32_t)pg_col_u64(res, r, 8);
	if (body) {
		m->body_len = (uint32_t)PQgetlength(res, r, 9);
		m->body = PQgetvalue(res, r, 9);
	} else {
		m->body_len = 0;
		m->body = NULL;
	}
}

static int
msg_row(const PGresult *res, int r, void *arg)
{
	struct pg_reader *l = arg;
	im_msg m;

	row_msg(res, r, &m, true);
	return l->cb.msg(&m, l->payload);
}

int
im__pg_msg_read(im_store *st, im_gid conv, im_seq after, im_seq until,
                uint32_t limit, im_msg_cb cb, void *payload)
{
	struct pg_reader l = {.cb.msg = cb, .payload = payload};
	struct pg_params p;

	if (after >= (uint64_t)INT64_MAX) {
		return IM_OK;
	}
	pg_param_u64(&p, 0, conv);
	pg_param_u64(&p, 1, pg_clamp_seq(after));
	pg_param_u64(&p, 2, pg_clamp_seq(until));
	pg_param_u64(&p, 3, limit);
	return im__pg_exec(PG(st), PG_MSG_READ, &p, PG_AGAIN, msg_row, &l,
	                   NULL);
}

int
im__pg_msg_last(im_store *st, im_gid conv, im_seq at, im_msg_pos *pos_out)
{
	struct pg_params p;
	uint64_t cols[2];
	int rc, rows;

	pg_param_u64(&p, 0, conv);
	pg_param_u64(&p, 1, pg_clamp_seq(at));
	rc = im__pg_exec_u64(PG(st), PG_MSG_LAST, &p, PG_AGAIN, cols, 2, &rows);
	if (rc != IM_OK) {
		return rc;
	}
	pos_out->seq = cols[0];
	pos_out->ordinal = cols[1];
	if (rows == 0) {
		im_store_set_error(st,
		                   "pg: no message in conv %llu at or"
		                   " below seq %llu",
		                   (unsigned long long)conv,
		                   (unsigned long long)at);
		return IM_ENOTFOUND;
	}
	return IM_OK;
}

/* The first row into arg (an im_msg), without its body. */
static int
dedup_row(const PGresult *res, int r, void *arg)
{
	if (r == 0) {
		row_msg(res, r, arg, false);
	}
	return 0;
}

int
im__pg_msg_find_dedup(im_store *st, im_gid conv, im_uid sender,
                      uint64_t dedup_id, im_msg *msg_out)
{
	struct pg_params p;
	int rc, rows;

	pg_param_u64(&p, 0, conv);
	pg_param_u64(&p, 1, sender);
	pg_param_u64(&p, 2, dedup_id);
	rc = im__pg_exec(PG(st), PG_MSG_DEDUP, &p, PG_AGAIN, dedup_row, msg_out,
	                 &rows);
	if (rc == IM_OK && rows == 0) {
		im_store_set_error(st,
		                   "pg: no message with dedup key"
		                   " %llu/%llu/%llu",
		                   (unsigned long long)conv,
		                   (unsigned long long)sender,
		                   (unsigned long long)dedup_id);
		return IM_ENOTFOUND;
	}
	return rc;
}

static int
uq_row(const PGresult *res, int r, void *arg)
{
	struct pg_reader *l = arg;
	im_uq_item it = {
	        .user = pg_col_u64(res, r, 0),
	        .seq = pg_col_u64(res, r, 1),
	        .time_ms = pg_col_u64(res, r, 2),
	        .type = (uint32_t)pg_col_u64(res, r, 3),
	        .body_len = (uint32_t)PQgetlength(res, r, 4),
	};

	it.body = PQgetvalue(res, r, 4);
	return l->cb.uq(&it, l->payload);
}

int
im__pg_uq_read(im_store *st, im_uid user, im_seq after, uint32_t limit,
               im_uq_cb cb, void *payload)
{
	struct pg_reader l = {.cb.uq = cb, .payload = payload};
	struct pg_params p;

	if (after >= (uint64_t)INT64_MAX) {
		return IM_OK;
	}
	pg_param_u64(&p, 0, user);
	pg_param_u64(&p, 1, after);
	pg_param_u64(&p, 2, limit);
	return im__pg_exec(PG(st), PG_UQ_READ, &p, PG_AGAIN, uq_row, &l, NULL);
}

int
im__pg_uq_last(im_store *st, im_uid user, im_seq *last_out)
{
	struct pg_params p;
	uint64_t last;
	int rc;

	pg_param_u64(&p, 0, user);
	rc = im__pg_exec_u64(PG(st), PG_UQ_LAST, &p, PG_AGAIN, &last, 1, NULL);
	if (rc == IM_OK) {
		*last_out = last;
	}
	return rc;
}
