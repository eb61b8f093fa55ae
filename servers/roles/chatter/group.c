/*
 * Hot group state: the hash of groups, members, loading a group from the
 * store on first use (with a fresh seq segment), and dropping groups (slot
 * lost, node reborn, idle). A cache of the store, owned by the loop; apart
 * from the commit so that what the state is and when it is written stay
 * separate.
 */
#include "chatter_priv.h"

#include <stdlib.h>
#include <string.h>

static uint32_t
hash_gid(im_gid gid, uint32_t nbuckets)
{
	uint64_t x = gid * 0x9e3779b97f4a7c15ULL;

	x ^= x >> 29;
	return (uint32_t)x & (nbuckets - 1);
}

static struct group *
group_find(chatter *c, im_gid gid)
{
	struct group *g;

	for (g = c->buckets[hash_gid(gid, c->nbuckets)]; g != NULL;
	     g = g->next) {
		if (g->gid == gid) {
			return g;
		}
	}
	return NULL;
}

static void
group_free(struct group *g)
{
	if (g == NULL) {
		return;
	}
	im_idseg_finish(&g->seg);
	free(g->members);
	free(g);
}

static void
group_unlink(chatter *c, struct group *g)
{
	struct group **pp = &c->buckets[hash_gid(g->gid, c->nbuckets)];

	while (*pp != NULL && *pp != g) {
		pp = &(*pp)->next;
	}
	if (*pp == g) {
		*pp = g->next;
		c->ngroups--;
	}
	group_free(g);
}

/* Make room for one more group: drop one not in the batch being built. */
static bool
group_evict_one(chatter *c)
{
	uint32_t i;

	for (i = 0; i < c->nbuckets; i++) {
		uint32_t b = (c->evict_cursor + i) & (c->nbuckets - 1);
		struct group *g;

		for (g = c->buckets[b]; g != NULL; g = g->next) {
			if (g->batch != c->batch_gen &&
			    g->batch != c->pin_gen) {
				c->evict_cursor = b + 1;
				group_unlink(c, g);
				return true;
			}
		}
	}
	return false;
}

static int
member_idx(const struct group *g, im_uid u, uint32_t *pos)
{
	uint32_t lo = 0, hi = g->nmembers;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (g->members[mid] < u) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	*pos = lo;
	return lo < g->nmembers && g->members[lo] == u;
}

bool
chatter__is_member(const struct group *g, im_uid u)
{
	uint32_t pos;

	return member_idx(g, u, &pos);
}

int
chatter__member_insert(chatter *c, struct group *g, im_uid u)
{
	uint32_t pos;

	if (member_idx(g, u, &pos)) {
		return IM_OK;
	}
	if (g->nmembers >= c->opts.max_members) {
		return IM_EFULL;
	}
	if (g->nmembers == g->cap) {
		uint32_t ncap = g->cap ? g->cap * 2 : 8;
		im_uid *m = realloc(g->members, ncap * sizeof(*m));

		if (m == NULL) {
			return IM_ENOMEM;
		}
		g->members = m;
		g->cap = ncap;
	}
	memmove(g->members + pos + 1, g->members + pos,
	        (g->nmembers - pos) * sizeof(*g->members));
	g->members[pos] = u;
	g->nmembers++;
	return IM_OK;
}

void
chatter__member_erase(struct group *g, im_uid u)
{
	uint32_t pos;

	if (member_idx(g, u, &pos)) {
		memmove(g->members + pos, g->members + pos + 1,
		        (g->nmembers - pos - 1) * sizeof(*g->members));
		g->nmembers--;
	}
}

static int
load_member_cb(im_uid user, void *payload)
{
	void **ctx = payload;
	chatter *c = ctx[0];
	struct group *g = ctx[1];

	/* The store streams in uid order, so this appends. */
	return chatter__member_insert(c, g, user);
}

bool
chatter__slot_is_ours(chatter *c, im_gid gid, im_fence *fence)
{
	im_shard_entry e = im_shard_get(c->map, IM_KIND_GROUP, gid);

	if (e.epoch == 0 || strcmp(e.owner, c->node) != 0) {
		return false;
	}
	if (fence != NULL) {
		fence->kind = IM_KIND_GROUP;
		fence->slot = e.slot;
		fence->epoch = e.epoch;
	}
	return true;
}

/*
 * The hot state of gid, loading it from the store on first use. Returns a
 * role code; ROLE_OK with *out set.
 */
int
chatter__group_get(chatter *c, im_gid gid, struct group **out)
{
	im_seg_key key = {IM_SEG_GROUP_SEQ, gid};
	im_idseg_opts so = {IM_IDSEG_OPTS_VERSION, c->opts.seq_step, 20};
	im_group meta;
	im_msg_pos pos = {0, 0};
	im_fence fence = {IM_KIND_GROUP, 0, 0};
	struct group *g;
	void *ctx[2];
	uint32_t b;
	int rc;

	if (!chatter__slot_is_ours(c, gid, &fence)) {
		return ROLE_ERR_UNAVAILABLE;
	}
	g = group_find(c, gid);
	if (g != NULL && g->epoch != fence.epoch && g->batch != c->batch_gen &&
	    g->batch != c->pin_gen) {
		/* The slot was lost and won back since this state was
		 * loaded: others may have committed meanwhile. Reload. */
		group_unlink(c, g);
		g = NULL;
	}
	if (g != NULL) {
		g->used_ms = role_now_ms();
		*out = g;
		return ROLE_OK;
	}
	/* Loading takes a seq segment (a write): not while the disk is
	 * full and paused (store_full.h). */
	if (store_full_blocked(&c->full, role_now_ms(), 1)) {
		return ROLE_ERR_STORE_FULL;
	}
	rc = im_store_group_lookup(c->st, gid, &meta);
	if (rc == IM_ENOTFOUND) {
		return ROLE_ERR_NOT_FOUND;
	}
	if (rc != IM_OK) {
		LOG_W("chatter: group %llu lookup: %s", (unsigned long long)gid,
		      im_store_errmsg(c->st));
		return ROLE_ERR_UNAVAILABLE;
	}
	if (c->ngroups >= c->opts.max_groups && !group_evict_one(c)) {
		return ROLE_ERR_FULL;
	}
	g = calloc(1, sizeof(*g));
	if (g == NULL) {
		return ROLE_ERR_INTERNAL;
	}
	g->gid = gid;
	g->epoch = fence.epoch;
	g->creator = meta.creator;
	memcpy(g->name, meta.name, sizeof(g->name));
	g->name[IM_GROUP_NAME_MAX] = '\0';
	g->slot = im_shard_slot_of(gid, im_shard_nslots(c->map));
	if (im_idseg_init(&g->seg, &key, &so) != IM_OK) {
		free(g);
		return ROLE_ERR_INTERNAL;
	}
	ctx[0] = c;
	ctx[1] = g;
	rc = im_store_member_list(c->st, gid, load_member_cb, ctx);
	if (rc == IM_OK) {
		rc = im_store_msg_last(c->st, gid, IM_SEQ_MAX, &pos);
		if (rc == IM_ENOTFOUND) {
			pos.seq = 0;
			pos.ordinal = 0;
			rc = IM_OK;
		}
	}
	/* A new owner always takes a fresh segment: its seqs then lie above
	 * anything a previous owner could have committed. */
	if (rc == IM_OK) {
		rc = im_idseg_refill(&g->seg, c->st);
		c->stats.refills++;
	}
	if (rc == IM_ENOSPC) {
		store_full_failed(&c->full, role_now_ms(), 1, "chatter",
		                  im_store_errmsg(c->st));
	} else if (rc != IM_OK) {
		LOG_W("chatter: loading group %llu: %s (%s)",
		      (unsigned long long)gid, im_strerror(rc),
		      im_store_errmsg(c->st));
	}
	if (rc != IM_OK) {
		group_free(g);
		return (int)im_code_of_err(rc);
	}
	g->last_seq = pos.seq;
	g->last_ord = pos.ordinal;
	g->used_ms = role_now_ms();
	b = hash_gid(gid, c->nbuckets);
	g->next = c->buckets[b];
	c->buckets[b] = g;
	c->ngroups++;
	*out = g;
	return ROLE_OK;
}

void
chatter__drop_slot_now(chatter *c, uint32_t slot)
{
	uint32_t b;

	for (b = 0; b < c->nbuckets; b++) {
		struct group **pp = &c->buckets[b];

		while (*pp != NULL) {
			struct group *g = *pp;

			if (g->slot == slot) {
				*pp = g->next;
				c->ngroups--;
				group_free(g);
			} else {
				pp = &g->next;
			}
		}
	}
}

void
chatter_drop_slot(chatter *c, uint32_t slot)
{
	chatter__settle(c);
	chatter__drop_slot_now(c, slot);
}

void
chatter_drop_all(chatter *c)
{
	chatter__settle(c);
	chatter__groups_clear(c);
}

void
chatter__groups_clear(chatter *c)
{
	uint32_t b;

	for (b = 0; b < c->nbuckets; b++) {
		while (c->buckets[b] != NULL) {
			struct group *g = c->buckets[b];

			c->buckets[b] = g->next;
			c->ngroups--;
			group_free(g);
		}
	}
}

/* ---- idle group expiry (its own functions; nothing of the commit) ---- */

uint32_t
chatter_expire_idle(chatter *c, uint64_t now_ms, uint32_t max_steps)
{
	uint32_t steps = 0, dropped = 0, visited = 0;

	if (c == NULL || c->opts.group_idle_ms == 0) {
		return 0;
	}
	/* The batch on the commit thread holds pointers to its groups (and
	 * the thread may be refilling one's segment): sweep between
	 * commits only; the next tick comes soon enough. */
	if (c->inflight != NULL) {
		return 0;
	}
	while (steps < max_steps && visited < c->nbuckets) {
		struct group **pp = &c->buckets[c->idle_cursor];

		while (*pp != NULL) {
			struct group *g = *pp;

			steps++;
			if (now_ms > g->used_ms &&
			    now_ms - g->used_ms > c->opts.group_idle_ms) {
				*pp = g->next;
				c->ngroups--;
				group_free(g);
				dropped++;
			} else {
				pp = &g->next;
			}
		}
		steps++;
		visited++;
		c->idle_cursor = (c->idle_cursor + 1) & (c->nbuckets - 1);
	}
	c->stats.expired += dropped;
	return dropped;
}

static void
idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	chatter *c = w->data;

	(void)loop;
	(void)revents;
	if (c->ngroups > 0) {
		(void)chatter_expire_idle(c, role_now_ms(), 4096);
	}
}

void
chatter__idle_start(chatter *c)
{
	double period = c->opts.group_idle_ms / 8 / 1000.0;

	ev_init(&c->idle_w, idle_cb);
	c->idle_w.data = c;
	if (c->opts.group_idle_ms == 0) {
		return;
	}
	period = period < 0.1 ? 0.1 : period > 1.0 ? 1.0 : period;
	c->idle_w.repeat = period;
	ev_timer_again(c->loop, &c->idle_w);
	/* A sweep alone never keeps the loop alive. */
	ev_unref(c->loop);
}

void
chatter__idle_stop(chatter *c)
{
	if (ev_is_active(&c->idle_w)) {
		ev_ref(c->loop);
		ev_timer_stop(c->loop, &c->idle_w);
	}
}
