/*
 * Reading messages and user queues on sqlite: the range reads that stream
 * rows from a cached statement to the caller, the last position of a
 * conv and the dedup lookup. The writes are in sqlite_append.c.
 */
#include "store/sqlite/sqlite_internal.h"

struct dedup_row {
	im_msg *out;
	bool found;
};

/* Columns: seq, prev_seq, ordinal, reply_to, time_ms, type. */
static int
dedup_row(sqlite3_stmt *s, void *arg)
{
	struct dedup_row *d = arg;
	im_msg *m = d->out;

	if (!d->found) {
		m->seq = sq_col_u64(s, 0);
		m->prev_seq = sq_col_u64(s, 1);
		m->ordinal = sq_col_u64(s, 2);
		m->reply_to = sq_col_u64(s, 3);
		m->time_ms = sq_col_u64(s, 4);
		m->type = (uint32_t)sqlite3_column_int64(s, 5);
		d->found = true;
	}
	return 0;
}

int
im__sq_find_dedup(sq_store *sq, im_gid conv, im_uid sender, uint64_t dedup_id,
                  im_msg *out)
{
	im_msg m = {.conv = conv, .sender = sender, .dedup_id = dedup_id};
	struct dedup_row d = {&m, false};
	int rc;

	rc = im__sq_run(sq, SQ_MSG_BY_DEDUP,
	                SQ_ARGS(SQ_INT(conv), SQ_INT(sender), SQ_INT(dedup_id)),
	                "find by dedup key", dedup_row, &d);
	if (rc != IM_OK) {
		return rc;
	}
	if (!d.found) {
		return IM_ENOTFOUND;
	}
	*out = m;
	return IM_OK;
}

static int
msg_row(sqlite3_stmt *s, void *arg)
{
	struct sq_reader *l = arg;
	im_msg m = {
	        .conv = l->key,
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

	return l->cb.msg(&m, l->payload);
}

int
im__sq_msg_read(im_store *st, im_gid conv, im_seq after, im_seq until,
                uint32_t limit, im_msg_cb cb, void *payload)
{
	sq_store *sq = sq_of(st);
	struct sq_reader l = {.cb.msg = cb, .payload = payload, .key = conv};
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK) {
		return rc;
	}
	if (after >= (uint64_t)INT64_MAX) {
		return IM_OK;
	}
	return im__sq_run(sq, SQ_MSG_READ,
	                  SQ_ARGS(SQ_INT(conv), SQ_INT(sq_bound(after)),
	                          SQ_INT(sq_bound(until)), SQ_INT(limit)),
	                  "msg_read", msg_row, &l);
}

int
im__sq_last(sq_store *sq, im_gid conv, im_seq at, im_msg_pos *pos_out)
{
	uint64_t cols[2];
	bool found;
	int rc;

	rc = im__sq_run_u64(sq, SQ_MSG_LAST,
	                    SQ_ARGS(SQ_INT(conv), SQ_INT(sq_bound(at))),
	                    "msg_last", cols, 2, &found);
	pos_out->seq = cols[0];
	pos_out->ordinal = cols[1];
	if (rc == IM_OK && !found) {
		return IM_ENOTFOUND;
	}
	return rc;
}

int
im__sq_msg_last(im_store *st, im_gid conv, im_seq at, im_msg_pos *pos_out)
{
	sq_store *sq = sq_of(st);
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK) {
		return rc;
	}
	rc = im__sq_last(sq, conv, at, pos_out);
	if (rc == IM_ENOTFOUND) {
		im_store_set_error(st,
		                   "conv %llu has no message at or "
		                   "before seq %llu",
		                   (unsigned long long)conv,
		                   (unsigned long long)at);
	}
	return rc;
}

int
im__sq_msg_find_dedup(im_store *st, im_gid conv, im_uid sender,
                      uint64_t dedup_id, im_msg *msg_out)
{
	sq_store *sq = sq_of(st);
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK) {
		return rc;
	}
	rc = im__sq_find_dedup(sq, conv, sender, dedup_id, msg_out);
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

int
im__sq_uq_last(im_store *st, im_uid user, im_seq *last_out)
{
	sq_store *sq = sq_of(st);
	uint64_t last;
	bool found;
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK) {
		return rc;
	}
	rc = im__sq_run_u64(sq, SQ_UQ_LAST, SQ_ARGS(SQ_INT(user)), "uq_last",
	                    &last, 1, &found);
	if (rc != IM_OK) {
		return rc;
	}
	if (!found) {
		/* An aggregate always answers a row; say so if it did not. */
		return im__sq_fail(sq, SQLITE_DONE, "uq_last");
	}
	*last_out = last; /* NULL reads as 0 */
	return IM_OK;
}

static int
uq_row(sqlite3_stmt *s, void *arg)
{
	struct sq_reader *l = arg;
	im_uq_item it = {
	        .user = l->key,
	        .seq = sq_col_u64(s, 0),
	        .time_ms = sq_col_u64(s, 1),
	        .type = (uint32_t)sqlite3_column_int64(s, 2),
	        .body = sqlite3_column_blob(s, 3),
	        .body_len = (uint32_t)sqlite3_column_bytes(s, 3),
	};

	return l->cb.uq(&it, l->payload);
}

int
im__sq_uq_read(im_store *st, im_uid user, im_seq after, uint32_t limit,
               im_uq_cb cb, void *payload)
{
	sq_store *sq = sq_of(st);
	struct sq_reader l = {.cb.uq = cb, .payload = payload, .key = user};
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK) {
		return rc;
	}
	if (after >= (uint64_t)INT64_MAX) {
		return IM_OK;
	}
	return im__sq_run(
	        sq, SQ_UQ_READ,
	        SQ_ARGS(SQ_INT(user), SQ_INT(sq_bound(after)), SQ_INT(limit)),
	        "uq_read", uq_row, &l);
}
