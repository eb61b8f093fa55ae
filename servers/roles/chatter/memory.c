/*
 * What the Chatter's heap holds, part by part, for the periodic stats line
 * (imd stats_interval) and the memory table in docs/operations.md. Hot
 * groups grow with use (bounded by max_groups and idle expiry); the dedup
 * cache and the batch buffers are sized once at create from dedup_capacity
 * and max_batch. A walk over every hot group: O(groups), meant for a line
 * every few seconds, never per request.
 */
#include <string.h>

#include "chatter_priv.h"

/* One batch's arrays (chatter__batch_init) without its body arena. */
static size_t
batch_arrays(size_t mb)
{
	const struct batch *b = NULL;

	return mb * (sizeof(*b->pend) + sizeof(*b->msgs) +
	             sizeof(*b->msg_group) + sizeof(*b->msg_pend) +
	             sizeof(*b->res) + sizeof(*b->fences) +
	             sizeof(*b->touched) + sizeof(*b->replies));
}

void
chatter_get_mem(const chatter *c, chatter_mem *out)
{
	size_t mb = c->opts.max_batch;
	size_t nbatches = c->threaded ? 2 : 1;
	uint32_t i;

	memset(out, 0, sizeof(*out));
	out->groups = (size_t)c->nbuckets * sizeof(*c->buckets);
	for (i = 0; i < c->nbuckets; i++) {
		const struct group *g;

		for (g = c->buckets[i]; g != NULL; g = g->next) {
			out->groups += sizeof(*g);
			out->members += (size_t)g->cap * sizeof(*g->members);
		}
	}
	out->dedup = im_dedup_mem(c->dedup);
	/* The arenas are malloc'd whole but only the pages a batch wrote
	 * are resident: arena_used of the gathering batch is what is live
	 * now; the reserve is the bound. */
	out->arenas_reserved = nbatches * c->arena_cap;
	for (i = 0; i < nbatches; i++) {
		out->arenas_live += c->bufs[i].arena_used;
	}
	out->fixed = nbatches * batch_arrays(mb) +
	             mb * (sizeof(*c->fan_msgs) + sizeof(*c->fans) +
	                   sizeof(*c->fan_count)) +
	             (size_t)CREATE_BATCH_MAX *
	                     (sizeof(*c->cpend) + sizeof(*c->cnew) +
	                      sizeof(*c->cidx) + sizeof(*c->cfences) +
	                      sizeof(*c->creplies) +
	                      (ROLE_CREATE_MEMBERS_MAX + 1) *
	                              sizeof(*c->cevs));
	out->total = out->groups + out->members + out->dedup +
	             out->arenas_live + out->fixed;
}
