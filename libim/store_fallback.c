/* The one-at-a-time fallbacks of the batched store ops: see
 * store_fallback.h for each one's contract. */
#include "store_fallback.h"

#include <stdlib.h>
#include <string.h>

/* Slot number to its index in the caller's array, sorted for bsearch: the
 * current epochs of up to IM_STORE_CAS_MANY_MAX slots are matched against
 * the rows of slot_load in n log n, not n * rows. */
struct slot_index {
	uint32_t slot;
	size_t i;
};

struct epochs_ctx {
	const struct slot_index *index;
	size_t n;
	im_epoch *epochs_out;
};

static int
slot_index_cmp(const void *a, const void *b)
{
	const struct slot_index *x = a, *y = b;

	return (x->slot > y->slot) - (x->slot < y->slot);
}

static int
current_epoch_cb(const im_slot_row *row, void *payload)
{
	struct epochs_ctx *ec = payload;
	struct slot_index key = {row->slot, 0};
	const struct slot_index *hit;

	hit = bsearch(&key, ec->index, ec->n, sizeof(key), slot_index_cmp);
	if (hit != NULL) {
		ec->epochs_out[hit->i] = row->epoch;
	}
	return 0;
}

/* epochs_out[i] = the current epoch of slots[i] (0: never owned). */
static int
read_current_epochs(im_store *st, im_kind kind, const uint32_t *slots,
		    size_t n, im_epoch *epochs_out)
{
	struct slot_index *index = calloc(n, sizeof(*index));
	struct epochs_ctx ec = {index, n, epochs_out};
	size_t i;
	int rc;

	if (index == NULL) {
		im_store_set_error(st, "no memory to read %zu epochs", n);
		return IM_ENOMEM;
	}
	for (i = 0; i < n; i++) {
		index[i].slot = slots[i];
		index[i].i = i;
		epochs_out[i] = 0;
	}
	qsort(index, n, sizeof(*index), slot_index_cmp);
	rc = im_store_slot_load(st, kind, current_epoch_cb, &ec);
	free(index);
	return rc;
}

int
im__store_slot_cas_one_by_one(im_store *st, im_kind kind,
			      const uint32_t *slots, const im_epoch *expect,
			      size_t n, const char *owner,
			      im_epoch *epochs_out)
{
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		rc = im_store_slot_cas(st, kind, slots[i], expect[i], owner,
				       &epochs_out[i]);
		if (rc == IM_ECONFLICT) {
			/* The caller reloads its map from epochs_out and
			 * tries again: give it every slot's, as the
			 * batched op does. */
			if (read_current_epochs(st, kind, slots, n,
						epochs_out) == IM_OK) {
				im_store_set_error(st,
						   "slot %u: epoch moved from "
						   "%llu",
						   slots[i],
						   (unsigned long long)
							   expect[i]);
			}
			return IM_ECONFLICT;
		}
		if (rc != IM_OK) {
			return rc;
		}
	}
	return IM_OK;
}

/* What slot_load says of the fences' slots: fence_epoch[k] is the current
 * epoch of fences[k]'s slot (0: no row). */
struct fence_ctx {
	const im_fence *fences;
	size_t nfences;
	im_kind kind;
	im_epoch *now;
};

static int
fence_epoch_cb(const im_slot_row *row, void *payload)
{
	struct fence_ctx *fc = payload;
	size_t k;

	for (k = 0; k < fc->nfences; k++) {
		if (fc->fences[k].kind == fc->kind &&
		    fc->fences[k].slot == row->slot) {
			fc->now[k] = row->epoch;
		}
	}
	return 0;
}

int
im__store_fences_hold(im_store *st, const im_fence *fences, size_t nfences)
{
	im_epoch *now = calloc(nfences, sizeof(*now));
	struct fence_ctx fc = {fences, nfences, IM_KIND_USER, now};
	im_kind kinds[2] = {IM_KIND_USER, IM_KIND_GROUP};
	size_t k;
	int rc = IM_OK, i;

	if (now == NULL) {
		im_store_set_error(st, "no memory to check %zu fences",
				   nfences);
		return IM_ENOMEM;
	}
	for (i = 0; rc == IM_OK && i < 2; i++) {
		for (k = 0; k < nfences && fences[k].kind != kinds[i]; k++) {
		}
		if (k < nfences) {
			fc.kind = kinds[i];
			rc = im_store_slot_load(st, kinds[i], fence_epoch_cb,
						&fc);
		}
	}
	for (k = 0; rc == IM_OK && k < nfences; k++) {
		/* Epoch 0 is "never owned": no owner may write with it. */
		if (now[k] != fences[k].epoch || now[k] == 0) {
			im_store_set_error(st,
					   "stale fence: slot %u at epoch "
					   "%llu, not %llu",
					   fences[k].slot,
					   (unsigned long long)now[k],
					   (unsigned long long)fences[k].epoch);
			rc = IM_ESTALE;
		}
	}
	free(now);
	return rc;
}

/* One group and its members; a gid already there from an earlier try of
 * the same batch (same creator and created_ms) is not a conflict. */
static int
create_one(im_store *st, const im_group_new *g)
{
	im_group have;
	uint32_t j;
	int rc;

	rc = im_store_group_create(st, &g->group);
	if (rc == IM_ECONFLICT) {
		rc = im_store_group_lookup(st, g->group.gid, &have);
		if (rc == IM_OK && (have.creator != g->group.creator ||
				    have.created_ms != g->group.created_ms)) {
			im_store_set_error(st, "group %llu exists",
					   (unsigned long long)g->group.gid);
			rc = IM_ECONFLICT;
		}
	}
	for (j = 0; rc == IM_OK && j < g->nmembers; j++) {
		rc = im_store_member_add(st, g->group.gid, g->members[j],
					 NULL);
	}
	return rc;
}

int
im__store_group_create_one_by_one(im_store *st, const im_fence *fences,
				  size_t nfences, const im_group_new *groups,
				  size_t n, int *rcs_out)
{
	size_t k;
	int rc, first = IM_OK;

	rc = im__store_fences_hold(st, fences, nfences);
	if (rc != IM_OK) {
		for (k = 0; rcs_out != NULL && k < n; k++) {
			rcs_out[k] = rc;
		}
		return rc;
	}
	for (k = 0; k < n; k++) {
		rc = create_one(st, &groups[k]);
		if (rcs_out == NULL && rc != IM_OK) {
			return rc;
		}
		if (rcs_out != NULL) {
			rcs_out[k] = rc;
		}
		if (first == IM_OK) {
			first = rc;
		}
	}
	return first;
}

int
im__store_seg_take_one_by_one(im_store *st, const im_seg_key *keys, size_t n,
			      uint32_t step, im_seg *segs_out)
{
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		rc = im_store_seg_take(st, &keys[i], step, &segs_out[i]);
		if (rc != IM_OK) {
			return rc;
		}
	}
	return IM_OK;
}

struct uq_scan {
	im_seq last;
	uint32_t rows;
};

static int
uq_scan_cb(const im_uq_item *item, void *payload)
{
	struct uq_scan *sc = payload;

	if (item->seq > sc->last) {
		sc->last = item->seq;
	}
	sc->rows++;
	return 0;
}

int
im__store_uq_last_scan(im_store *st, im_uid user, im_seq *last_out)
{
	struct uq_scan sc = {0, 0};
	int pages = 0, rc;

	do {
		sc.rows = 0;
		rc = im_store_uq_read(st, user, sc.last,
				      IM_STORE_READ_LIMIT_MAX, uq_scan_cb, &sc);
	} while (rc == IM_OK && sc.rows == IM_STORE_READ_LIMIT_MAX &&
		 ++pages < IM__UQ_LAST_SCAN_PAGES);
	if (rc == IM_OK) {
		*last_out = sc.last;
	}
	return rc;
}
