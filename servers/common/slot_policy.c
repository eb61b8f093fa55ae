/* The slot moves of imd, imnode and the Router: see slot_policy.h. */
#include "slot_policy.h"

#include <stdlib.h>
#include <string.h>

/* Every slot of kind for owner, at the epochs the map holds, in one CAS. */
static int
claim_kind_at_once(im_shard_map *map, im_store *st, im_kind kind,
                   const char *owner)
{
	uint32_t n = im_shard_nslots(map), slot;
	uint32_t *slots = calloc(n, sizeof(*slots));
	im_epoch *expect = calloc(n, sizeof(*expect));
	im_epoch *got = calloc(n, sizeof(*got));
	int rc = IM_ENOMEM;

	if (slots == NULL || expect == NULL || got == NULL) {
		goto out;
	}
	for (slot = 0; slot < n; slot++) {
		im_shard_entry e;

		(void)im_shard_get_slot(map, kind, slot, &e);
		slots[slot] = slot;
		expect[slot] = e.epoch;
	}
	rc = im_store_slot_cas_many(st, kind, slots, expect, n, owner, got);
	for (slot = 0; rc == IM_OK && slot < n; slot++) {
		rc = im_shard_apply(map, kind, slot, got[slot], owner);
	}
out:
	free(slots);
	free(expect);
	free(got);
	return rc;
}

int
slot_policy_claim_all(im_shard_map *map, im_store *st, const char *owner,
                      im_kind *failed_kind)
{
	int kind, rc = IM_OK, tries;

	for (kind = 0; kind < IM_KIND_COUNT; kind++) {
		/*
		 * All of a kind in one transaction (one fsync, not one per
		 * slot); a conflict means another node moved meanwhile: reload
		 * and try once more.
		 */
		for (tries = 0; tries < 2; tries++) {
			rc = claim_kind_at_once(map, st, (im_kind)kind, owner);
			if (rc != IM_ECONFLICT) {
				break;
			}
			if ((rc = im_shard_load(map, st)) != IM_OK) {
				break;
			}
			rc = IM_ECONFLICT;
		}
		if (rc != IM_OK) {
			if (failed_kind != NULL) {
				*failed_kind = (im_kind)kind;
			}
			return rc;
		}
	}
	return IM_OK;
}

int
slot_policy_rebalance(im_shard_map *map, im_store *st, im_kind kind,
                      const char *const *live, size_t nlive,
                      im_shard_move *moves, size_t max_moves,
                      const slot_policy_ops *ops, void *payload,
                      slot_policy_result *res)
{
	size_t nm = 0, i;
	int rc;

	memset(res, 0, sizeof(*res));
	if (map == NULL || st == NULL || ops == NULL || ops->admit == NULL ||
	    (nlive > 0 && live == NULL) || (max_moves > 0 && moves == NULL)) {
		return IM_EINVAL;
	}
	if (nlive == 0) {
		res->planned = true;
		return IM_OK; /* nobody to take anything: a later call will */
	}
	rc = im_shard_plan(map, kind, live, nlive, moves, max_moves, &nm);
	if (rc != IM_OK && rc != IM_EFULL) {
		return rc;
	}
	res->planned = true;
	if (nm > max_moves) {
		nm = max_moves;
	}
	for (i = 0; i < nm; i++) {
		im_shard_entry cur;
		im_epoch ep = 0;

		if (im_shard_get_slot(map, kind, moves[i].slot, &cur) !=
		            IM_OK ||
		    !ops->admit(payload, kind, &moves[i], &cur)) {
			continue;
		}
		rc = im_shard_claim(map, st, kind, moves[i].slot, moves[i].to,
		                    &ep);
		if (rc == IM_ECONFLICT) {
			/* Another mover was first: the CAS decided, and the
			 * map has the winner. */
			res->conflicts++;
			continue;
		}
		if (rc != IM_OK) {
			res->slot = moves[i].slot;
			return rc;
		}
		res->moved++;
		if (ops->moved != NULL) {
			ops->moved(payload, kind, &moves[i], &cur, ep);
		}
	}
	return IM_OK;
}

bool
slot_policy_earlier_self(const char *name, const char *self,
                         const char *owner)
{
	size_t len = strlen(name);

	return strncmp(owner, name, len) == 0 && owner[len] == '/' &&
	       strcmp(owner, self) != 0;
}

slot_node_action
slot_policy_node_action(const char *name, const char *self,
                        const im_shard_entry *cur, const im_shard_move *mv,
                        bool owner_gone, bool routers_up)
{
	if (strcmp(mv->to, self) == 0) {
		/* A live owner hands its slots over itself. */
		if (!owner_gone) {
			return SLOT_NODE_SKIP;
		}
		/* A dead owner's slots are the Routers' to move (they judge,
		 * plan and notify); we take them only when no Router is up.
		 * Unowned slots (a new cluster) and those of an earlier life
		 * of ours (we know it is over) we take at once. */
		if (cur->owner[0] != '\0' && routers_up &&
		    !slot_policy_earlier_self(name, self, cur->owner)) {
			return SLOT_NODE_SKIP;
		}
		return SLOT_NODE_TAKE;
	}
	return strcmp(cur->owner, self) == 0 ? SLOT_NODE_HAND_OVER
	                                     : SLOT_NODE_SKIP;
}

uint32_t
slot_policy_take_back(im_shard_map *map, im_store *st, im_kind kind,
                      const char *old_owner, const char *new_owner)
{
	uint32_t slot, nslots = im_shard_nslots(map), kept = 0;

	for (slot = 0; slot < nslots; slot++) {
		im_shard_entry e;

		if (im_shard_get_slot(map, kind, slot, &e) == IM_OK &&
		    strcmp(e.owner, old_owner) == 0 &&
		    im_shard_claim(map, st, kind, slot, new_owner, NULL) ==
		            IM_OK) {
			kept++;
		}
	}
	return kept;
}

int
slot_policy_reload(im_shard_map *map, im_store *st, im_kind kind,
                   const char *owner, uint32_t *lost, uint32_t *gained)
{
	uint32_t had = im_shard_count(map, kind, owner), now;
	int rc = im_shard_load(map, st);

	*lost = 0;
	*gained = 0;
	if (rc != IM_OK) {
		return rc;
	}
	now = im_shard_count(map, kind, owner);
	*lost = had > now ? had - now : 0;
	*gained = now > had ? now - had : 0;
	return IM_OK;
}
