/*
 * Slots and id segments on PostgreSQL: the slot map with its epochs (the
 * compare-and-set that fences owners) and the Leaf segment counters. Apart
 * from the message ops because these are the cluster's coordination
 * points: each write is one statement whose outcome on a lost connection
 * decides whether it may run again.
 */
#include "store/pg/pg_internal.h"

static int
slot_row(const PGresult *res, int r, void *arg)
{
	struct pg_reader *l = arg;
	im_slot_row row = {
	        .kind = l->kind,
	        .slot = (uint32_t)pg_col_u64(res, r, 0),
	        .epoch = pg_col_u64(res, r, 1),
	        .owner = PQgetvalue(res, r, 2),
	};

	return l->cb.slot(&row, l->payload);
}

int
im__pg_slot_load(im_store *st, im_kind kind, im_slot_cb cb, void *payload)
{
	struct pg_reader l = {.cb.slot = cb, .payload = payload, .kind = kind};
	struct pg_params p;

	pg_param_u64(&p, 0, (uint64_t)kind);
	return im__pg_exec(PG(st), PG_SLOT_LOAD, &p, PG_AGAIN, slot_row, &l,
	                   NULL);
}

/* A slot's epoch read afresh (this statement's snapshot may postdate the
 * winner's commit); 0 when the slot has no row. */
static int
slot_epoch(struct pg_store *s, im_kind kind, uint32_t slot, im_epoch *out)
{
	struct pg_params p;
	uint64_t epoch;
	int rc;

	pg_param_u64(&p, 0, (uint64_t)kind);
	pg_param_u64(&p, 1, slot);
	rc = im__pg_exec_u64(s, PG_SLOT_GET, &p, PG_AGAIN, &epoch, 1, NULL);
	if (rc == IM_OK) {
		*out = epoch;
	}
	return rc;
}

static int
slot_lost(struct pg_store *s, im_kind kind, uint32_t slot, im_epoch expect,
          im_epoch cur)
{
	im_store_set_error(&s->base,
	                   "pg: slot %u/%u: expected epoch %llu, is %llu",
	                   (unsigned)kind, slot, (unsigned long long)expect,
	                   (unsigned long long)cur);
	return IM_ECONFLICT;
}

int
im__pg_slot_cas(im_store *st, im_kind kind, uint32_t slot, im_epoch expect,
                const char *owner, im_epoch *epoch_out)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	uint64_t epoch;
	int rc, rows;

	pg_param_u64(&p, 0, (uint64_t)kind);
	pg_param_u64(&p, 1, slot);
	pg_param_str(&p, 2, owner);
	pg_param_u64(&p, 3, expect);
	rc = im__pg_exec_u64(s, expect == 0 ? PG_SLOT_CLAIM : PG_SLOT_CAS, &p,
	                     PG_ONCE, &epoch, 1, &rows);
	if (rc != IM_OK) {
		return rc;
	}
	if (rows == 1) {
		*epoch_out = epoch;
		return IM_OK;
	}
	/* Lost: the epoch that won. */
	if ((rc = slot_epoch(s, kind, slot, epoch_out)) != IM_OK) {
		return rc;
	}
	return slot_lost(s, kind, slot, expect, *epoch_out);
}

/* The rows of PG_SLOT_CAS_MANY: kind 1 names a slot whose epoch differs,
 * kind 2 counts the rows written. */
struct cas_rows {
	bool conflict;
	uint64_t written;
};

static int
cas_row(const PGresult *res, int r, void *arg)
{
	struct cas_rows *c = arg;

	if (pg_col_u64(res, r, 0) == 1) {
		c->conflict = true;
	} else {
		c->written = pg_col_u64(res, r, 1);
	}
	return 0;
}

/* Run PG_SLOT_CAS_MANY; *conflict_out when some epoch differed. */
static int
cas_many_run(struct pg_store *s, im_kind kind, const uint32_t *slots,
             const im_epoch *expect, size_t n, const char *owner,
             bool *conflict_out)
{
	struct cas_rows c = {false, 0};
	struct pg_params p;
	unsigned char *q = s->buf;
	PGresult *res = NULL;
	size_t i;
	int rc, col;

	pg_param_u64(&p, 0, (uint64_t)kind);
	for (col = 0; col < 2; col++) {
		unsigned char *start = q;

		q = pg_arr_head(q, OID_INT8, (uint32_t)n);
		for (i = 0; i < n; i++) {
			q = pg_arr_i8(q, col == 0 ? (uint64_t)slots[i]
			                          : expect[i]);
		}
		pg_param_arr(&p, 1 + col, start, q);
	}
	pg_param_str(&p, 3, owner);
	/* The outcome of a statement cut by a lost connection is unknown:
	 * run once (the caller reloads the map and plans again). */
	rc = im__pg_run(s, PG_SLOT_CAS_MANY, &p, PG_ONCE, &res);
	if (rc == IM_OK) {
		(void)im__pg_rows(res, cas_row, &c);
	}
	PQclear(res);
	if (rc == IM_ECONFLICT) {
		c.conflict = true; /* a concurrent claim of an unowned slot */
	} else if (rc != IM_OK) {
		return rc;
	} else if (!c.conflict && c.written != n) {
		/* Cannot happen with distinct slots (the rows are locked):
		 * say so rather than report a success. */
		im_store_set_error(&s->base,
		                   "pg: slot_cas_many wrote %llu of %zu slots",
		                   (unsigned long long)c.written, n);
		return IM_ERR;
	}
	*conflict_out = c.conflict;
	return IM_OK;
}

/* One statement for a node's whole share (PG_SLOT_CAS_MANY). */
int
im__pg_slot_cas_many(im_store *st, im_kind kind, const uint32_t *slots,
                     const im_epoch *expect, size_t n, const char *owner,
                     im_epoch *epochs_out)
{
	struct pg_store *s = PG(st);
	bool conflict = false;
	size_t i;
	int rc;

	if ((rc = im__pg_buf_reserve(s, 2 * (ARR_HEAD + n * ARR_I8))) !=
	    IM_OK) {
		return rc;
	}
	rc = cas_many_run(s, kind, slots, expect, n, owner, &conflict);
	if (rc != IM_OK) {
		return rc;
	}
	if (!conflict) {
		for (i = 0; i < n; i++) {
			epochs_out[i] = expect[i] + 1;
		}
		return IM_OK;
	}
	/* Lost: the current epochs with a fresh snapshot. */
	for (i = 0; i < n; i++) {
		if ((rc = slot_epoch(s, kind, slots[i], &epochs_out[i])) !=
		    IM_OK) {
			return rc;
		}
	}
	for (i = 0; i < n && epochs_out[i] == expect[i]; i++) {
	}
	if (i == n) {
		i = 0;
	}
	return slot_lost(s, kind, slots[i], expect[i], epochs_out[i]);
}

/* The segment ending at max after a bump by step, if the counter is sane. */
static int
seg_from_max(struct pg_store *s, uint64_t max, uint32_t step, im_seg *seg)
{
	if (max < step || max > (uint64_t)INT64_MAX) {
		im_store_set_error(&s->base,
		                   "pg: segment counter out of range");
		return IM_ERR;
	}
	seg->first = max - step + 1;
	seg->last = max;
	return IM_OK;
}

int
im__pg_seg_take(im_store *st, const im_seg_key *key, uint32_t step,
                im_seg *seg_out)
{
	struct pg_store *s = PG(st);
	struct pg_params p;
	uint64_t max;
	int rc, rows;

	pg_param_u64(&p, 0, (uint64_t)key->space);
	pg_param_u64(&p, 1, key->id);
	pg_param_u64(&p, 2, step);
	/* A retry after a lost connection may waste a segment, never reuse. */
	rc = im__pg_exec_u64(s, PG_SEG_TAKE, &p, PG_AGAIN, &max, 1, &rows);
	if (rc != IM_OK) {
		return rc;
	}
	if (rows != 1) {
		im_store_set_error(st, "pg: seg_take returned no row");
		return IM_ERR;
	}
	return seg_from_max(s, max, step, seg_out);
}

struct seg_rows {
	struct pg_store *s;
	size_t n;
	uint32_t step;
	im_seg *segs_out;
};

/* Row: the 1-based index of the key, and its counter after the bump. */
static int
seg_row(const PGresult *res, int r, void *arg)
{
	struct seg_rows *g = arg;
	uint64_t idx = pg_col_u64(res, r, 0);

	if (idx < 1 || idx > g->n) {
		im_store_set_error(&g->s->base,
		                   "pg: segment counter out of range");
		return IM_ERR;
	}
	return seg_from_max(g->s, pg_col_u64(res, r, 1), g->step,
	                    &g->segs_out[idx - 1]);
}

int
im__pg_seg_take_many(im_store *st, const im_seg_key *keys, size_t n,
                     uint32_t step, im_seg *segs_out)
{
	struct pg_store *s = PG(st);
	struct seg_rows g = {s, n, step, segs_out};
	struct pg_params p;
	unsigned char *q, *start;
	PGresult *res = NULL;
	size_t i;
	int rc, c;

	if ((rc = im__pg_buf_reserve(s, 2 * (ARR_HEAD + n * ARR_I8))) !=
	    IM_OK) {
		return rc;
	}
	q = s->buf;
	for (c = 0; c < 2; c++) {
		start = q;
		q = pg_arr_head(q, OID_INT8, (uint32_t)n);
		for (i = 0; i < n; i++) {
			q = pg_arr_i8(q, c == 0 ? (uint64_t)keys[i].space
			                        : keys[i].id);
		}
		pg_param_arr(&p, c, start, q);
	}
	pg_param_u64(&p, 2, step);
	/* A retry may waste segments, never reuse one; deadlocks between
	 * two batches are retried too. */
	rc = im__pg_result(s, PG_SEG_TAKE_MANY, &p, PG_RACES, &res);
	if (rc != IM_OK) {
		return rc;
	}
	if ((size_t)PQntuples(res) != n) {
		im_store_set_error(st, "pg: seg_take_many: %d rows for %zu",
		                   PQntuples(res), n);
		rc = IM_ERR;
	} else {
		rc = im__pg_rows(res, seg_row, &g);
	}
	PQclear(res);
	return rc;
}
