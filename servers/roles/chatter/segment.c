/*
 * Segments: which group gets the next seq segment and when (at most one
 * prefetch per commit, inline only when one ran dry), and new group ids
 * from the Chatter's group-id segment. Apart from the commit because
 * every refill is a store transaction of its own, kept off the path of
 * the acks.
 */
#include "chatter_priv.h"

/*
 * The group of the batch to fetch the next seq segment for, at most one
 * per commit, after the commit (off the path of the next batch): each
 * refill is a store transaction (an fsync) of its own. The group closest
 * to running dry goes first. With seq_step well above max_batch, a group
 * that has to wait for a later commit still holds most of its segment
 * (refills start at 20 % used); one that runs dry anyway refills inline,
 * which is slower but as correct.
 */
struct group *
chatter__prefetch_pick(const struct batch *b)
{
	struct group *best = NULL;
	uint64_t best_avail = 0;
	uint32_t i;

	for (i = 0; i < b->ntouched; i++) {
		struct group *g = b->touched[i];
		uint64_t avail;

		if (!im_idseg_wants_refill(&g->seg)) {
			continue;
		}
		avail = im_idseg_available(&g->seg);
		if (best == NULL || avail < best_avail) {
			best = g;
			best_avail = avail;
		}
	}
	return best;
}

/* The segment ran dry (the prefetch fell behind): refill on the commit
 * path, a transaction before the batch's own. */
bool
chatter__refill_inline(chatter *c, struct group *g, uint64_t *seq)
{
	int rc;

	c->stats.refills++;
	c->stats.refills_inline++;
	rc = im_idseg_refill(&g->seg, c->st);
	if (rc == IM_ENOSPC) {
		store_full_failed(&c->full, role_now_ms(), 1, "chatter",
		                  im_store_errmsg(c->st));
		return false;
	}
	if (rc != IM_OK || im_idseg_next(&g->seg, seq) != IM_OK) {
		LOG_W("chatter: no seq for group %llu: %s",
		      (unsigned long long)g->gid, im_store_errmsg(c->st));
		return false;
	}
	return true;
}

/*
 * A new group id in a slot we own, with that slot's fence: the creation is
 * written under the slot's epoch like any other write to the group, so an
 * owner that lost the slot creates nothing. Ids of slots owned by others
 * are skipped (the id space is 64 bits; skipping costs nothing).
 */
bool
chatter__new_gid(chatter *c, im_gid *gid, im_fence *fence)
{
	uint32_t tries, refills = 0;
	int rc;

	for (tries = 0; tries < GID_TRIES; tries++) {
		if (im_idseg_next(&c->gids, gid) != IM_OK) {
			if (refills++ == GID_REFILLS) {
				return false;
			}
			rc = im_idseg_refill(&c->gids, c->st);
			if (rc == IM_ENOSPC) {
				/* The caller answers ERR_STORE_FULL. */
				store_full_failed(&c->full, role_now_ms(), 1,
				                  "chatter",
				                  im_store_errmsg(c->st));
			}
			if (rc != IM_OK ||
			    im_idseg_next(&c->gids, gid) != IM_OK) {
				return false;
			}
		}
		if (chatter__slot_is_ours(c, *gid, fence)) {
			return true;
		}
	}
	return false;
}

/* Without the commit thread: the batch's prefetch on the loop, after its
 * acks (with the thread, run_commit does it on the thread). */
void
chatter__prefetch_now(chatter *c, const struct batch *b)
{
	struct group *g = chatter__prefetch_pick(b);

	if (g != NULL) {
		c->stats.refills++;
		if (im_idseg_refill(&g->seg, c->st) != IM_OK) {
			LOG_W("chatter: prefetch for group %llu: %s",
			      (unsigned long long)g->gid,
			      im_store_errmsg(c->st));
		}
	}
}

/* The next segment of group ids, after a creation commit: off the path of
 * the next batch. */
void
chatter__gids_prefetch(chatter *c)
{
	if (im_idseg_wants_refill(&c->gids)) {
		(void)im_idseg_refill(&c->gids, c->st);
	}
}
