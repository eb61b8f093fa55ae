/*
 * Slots, id segments and fences on sqlite: the slot map with its epochs
 * (the compare-and-set that fences owners), the fence check every fenced
 * write runs inside its transaction, and the Leaf segment counters.
 */
#include "store/sqlite/sqlite_internal.h"

static int
slot_row(sqlite3_stmt *s, void *arg)
{
	struct sq_reader *l = arg;
	im_slot_row row = {
	        .kind = l->kind,
	        .slot = (uint32_t)sqlite3_column_int64(s, 0),
	        .epoch = sq_col_u64(s, 1),
	        .owner = (const char *)sqlite3_column_text(s, 2),
	};

	if (row.owner == NULL) {
		row.owner = "";
	}
	return l->cb.slot(&row, l->payload);
}

int
im__sq_slot_load(im_store *st, im_kind kind, im_slot_cb cb, void *payload)
{
	sq_store *sq = sq_of(st);
	struct sq_reader l = {.cb.slot = cb, .payload = payload, .kind = kind};
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK) {
		return rc;
	}
	return im__sq_run(sq, SQ_SLOT_LOAD, SQ_ARGS(SQ_INT(kind)), "slot_load",
	                  slot_row, &l);
}

/* The slot's epoch, 0 when no row (never owned). */
static int
slot_epoch(sq_store *sq, im_kind kind, uint32_t slot, im_epoch *out)
{
	return im__sq_run_u64(sq, SQ_SLOT_GET,
	                      SQ_ARGS(SQ_INT(kind), SQ_INT(slot)),
	                      "read slot epoch", out, 1, NULL);
}

/* Claim (expect 0) or move the slot to expect + 1 for owner. */
static int
slot_put(sq_store *sq, im_kind kind, uint32_t slot, im_epoch expect,
         const char *owner, const char *what)
{
	return im__sq_run(sq, expect == 0 ? SQ_SLOT_INSERT : SQ_SLOT_UPDATE,
	                  SQ_ARGS(SQ_INT(kind), SQ_INT(slot), SQ_TEXT(owner),
	                          SQ_INT(expect + 1)),
	                  what, NULL, NULL);
}

static void
slot_conflict(sq_store *sq, im_kind kind, uint32_t slot, im_epoch cur,
              im_epoch expect)
{
	im_store_set_error(&sq->base, "slot %s/%u is at epoch %llu, not %llu",
	                   sq_kind_name(kind), slot, (unsigned long long)cur,
	                   (unsigned long long)expect);
}

int
im__sq_slot_cas(im_store *st, im_kind kind, uint32_t slot, im_epoch expect,
                const char *owner, im_epoch *epoch_out)
{
	sq_store *sq = sq_of(st);
	im_epoch cur;
	int rc;

	if ((rc = im__sq_write_begin(sq)) != IM_OK) {
		return rc;
	}
	if ((rc = slot_epoch(sq, kind, slot, &cur)) != IM_OK) {
		goto out;
	}
	if (cur != expect) {
		*epoch_out = cur;
		slot_conflict(sq, kind, slot, cur, expect);
		rc = IM_ECONFLICT;
		goto out;
	}
	rc = slot_put(sq, kind, slot, expect, owner, "slot_cas");
out:
	rc = im__sq_end(sq, rc);
	if (rc == IM_OK) {
		*epoch_out = expect + 1;
	}
	return rc;
}

/* All of them in one transaction: one fsync for a node's whole share. */
int
im__sq_slot_cas_many(im_store *st, im_kind kind, const uint32_t *slots,
                     const im_epoch *expect, size_t n, const char *owner,
                     im_epoch *epochs_out)
{
	sq_store *sq = sq_of(st);
	size_t i, conflicts = 0;
	int rc;

	if ((rc = im__sq_write_begin(sq)) != IM_OK) {
		return rc;
	}
	for (i = 0; i < n && rc == IM_OK; i++) {
		rc = slot_epoch(sq, kind, slots[i], &epochs_out[i]);
		if (rc == IM_OK && epochs_out[i] != expect[i] &&
		    conflicts++ == 0) {
			slot_conflict(sq, kind, slots[i], epochs_out[i],
			              expect[i]);
		}
	}
	if (rc == IM_OK && conflicts > 0) {
		rc = IM_ECONFLICT;
	}
	for (i = 0; i < n && rc == IM_OK; i++) {
		rc = slot_put(sq, kind, slots[i], expect[i], owner,
		              "slot_cas_many");
	}
	rc = im__sq_end(sq, rc);
	if (rc == IM_OK) {
		for (i = 0; i < n; i++) {
			epochs_out[i] = expect[i] + 1;
		}
	}
	return rc;
}

int
im__sq_check_fences(sq_store *sq, const im_fence *fences, size_t nfences)
{
	im_epoch cur;
	size_t i;
	int rc;

	for (i = 0; i < nfences; i++) {
		const im_fence *f = &fences[i];

		rc = slot_epoch(sq, f->kind, f->slot, &cur);
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

/* Take one segment inside the caller's write transaction. */
static int
seg_one(sq_store *sq, const im_seg_key *key, uint32_t step, im_seg *seg_out)
{
	uint64_t max_id = 0;
	bool got = false;
	int rc;

	/* Stepped to the end, so the UPDATE ... RETURNING completes. */
	rc = im__sq_run_u64(
	        sq, SQ_SEG_BUMP,
	        SQ_ARGS(SQ_INT(key->space), SQ_INT(key->id), SQ_INT(step)),
	        "seg_take", &max_id, 1, &got);
	if (rc != IM_OK) {
		return rc;
	}
	if (!got) {
		rc = im__sq_run(sq, SQ_SEG_FIRST,
		                SQ_ARGS(SQ_INT(key->space), SQ_INT(key->id),
		                        SQ_INT(step)),
		                "seg_take", NULL, NULL);
		if (rc != IM_OK) {
			return rc;
		}
		if (sqlite3_changes(sq->db) == 0) {
			/* The row exists but the guard refused the bump. */
			im_store_set_error(
			        &sq->base, "id space %d/%llu is exhausted",
			        (int)key->space, (unsigned long long)key->id);
			return IM_EFULL;
		}
		max_id = step;
	}
	seg_out->first = max_id - step + 1;
	seg_out->last = max_id;
	return IM_OK;
}

int
im__sq_seg_take(im_store *st, const im_seg_key *key, uint32_t step,
                im_seg *seg_out)
{
	sq_store *sq = sq_of(st);
	int rc;

	if ((rc = im__sq_write_begin(sq)) != IM_OK) {
		return rc;
	}
	return im__sq_end(sq, seg_one(sq, key, step, seg_out));
}

int
im__sq_seg_take_many(im_store *st, const im_seg_key *keys, size_t n,
                     uint32_t step, im_seg *segs_out)
{
	sq_store *sq = sq_of(st);
	size_t i;
	int rc;

	if ((rc = im__sq_write_begin(sq)) != IM_OK) {
		return rc;
	}
	for (i = 0; i < n && rc == IM_OK; i++) {
		rc = seg_one(sq, &keys[i], step, &segs_out[i]);
	}
	return im__sq_end(sq, rc);
}
