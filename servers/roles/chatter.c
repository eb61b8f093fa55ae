/*
 * Chatter: hot group state and the group commit.
 *
 * Sends are queued as they arrive and committed in an ev_prepare watcher,
 * i.e. once per loop turn, right before the loop would block: every send of
 * the turn goes into ONE im_store_msg_append (fenced by every slot the batch
 * touches), then the senders get their acks, then the members their
 * deliveries. An ack therefore always follows a commit (acked => durable).
 *
 * Group state is a cache of the store: it is loaded on first use, and
 * dropped whenever we are no longer sure it is right (a fenced or failed
 * commit); the next use reloads it and takes a fresh seq segment, so seqs
 * only ever grow.
 */
#include "chatter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "im/dedup.h"
#include "im/idseg.h"

struct group {
	struct group *next; /* hash chain */
	im_gid gid;
	uint32_t slot;
	uint64_t epoch; /* the slot's epoch this state was loaded under */
	im_uid creator;
	im_idseg seg;
	im_seq last_seq;
	uint64_t last_ord;
	im_uid *members; /* sorted */
	uint32_t nmembers;
	uint32_t cap;
	/* batch bookkeeping, valid while batch == chatter's batch_gen */
	uint64_t batch;
	im_seq t_seq;
	uint64_t t_ord;
	uint32_t tidx; /* index among the batch's touched groups */
	uint64_t used_ms; /* last group_get (idle expiry) */
	char name[IM_GROUP_NAME_MAX + 1];
};

struct pend {
	role_route route;
	im_uid sender;
	im_gid gid;
	uint64_t dedup_id;
	im_seq reply_to;
	uint32_t type;
	uint32_t body_len;
	void *body;
};

/* im.EventType values. */
enum { UEV_JOINED = 1, UEV_LEFT = 2, UEV_GROUP_CREATED = 3 };

/* A CreateGroup waiting for the loop turn's creation commit. */
struct cpend {
	role_route route;
	im_uid creator;
	uint32_t nmembers; /* with the creator, distinct */
	im_uid members[ROLE_CREATE_MEMBERS_MAX + 1];
	char name[IM_GROUP_NAME_MAX + 1];
};

/* Creations committed per transaction (bounds the scratch below). */
#define CREATE_BATCH_MAX 128
/* Group ids tried per creation for one that falls in a slot we own (a
 * Chatter with 1 of 64 slots needs 64 on average), and segments taken for
 * it at most. */
#define GID_TRIES 4096
#define GID_REFILLS 8

struct chatter {
	struct ev_loop *loop;
	im_store *st;
	im_shard_map *map;
	const char *node;
	role_router *router;
	chatter_opts opts;
	ev_prepare commit_w;
	ev_timer idle_w;     /* idle group expiry sweep */
	uint32_t idle_cursor; /* bucket where the next sweep starts */

	struct group **buckets;
	uint32_t nbuckets; /* power of two */
	uint32_t ngroups;
	uint32_t evict_cursor;

	im_dedup *dedup;
	im_idseg gids;
	bool gids_ready;

	/* The batch being gathered, and scratch for committing it. */
	struct pend *pend;
	uint32_t npend;
	/* Bodies of the pending sends, packed; emptied by every flush.
	 * max_batch x IM_MSG_BODY_MAX bytes, so max_batch flushes first;
	 * only the pages a batch used are ever touched. */
	uint8_t *arena;
	size_t arena_used;
	size_t arena_cap;
	uint64_t batch_gen;
	im_msg *msgs;
	struct group **msg_group;
	uint32_t *msg_pend;
	im_append_result *res;
	im_fence *fences;
	struct group **touched;
	role_reply *replies;
	im_msg *fan_msgs;
	role_fanout *fans;
	uint32_t *fan_count;

	/* The creations of this turn (one fenced transaction, committed by
	 * chatter_flush next to the sends), and their scratch. */
	struct cpend *cpend;
	uint32_t ncpend;
	im_group_new *cnew;
	uint32_t *cidx;   /* cnew[k] is cpend[cidx[k]] */
	im_fence *cfences;
	role_reply *creplies;
	role_uevent *cevs; /* CREATE_BATCH_MAX x (members + 1), malloc */

	chatter_stats stats;
};

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
			if (g->batch != c->batch_gen) {
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

static bool
is_member(const struct group *g, im_uid u)
{
	uint32_t pos;

	return member_idx(g, u, &pos);
}

static int
member_insert(chatter *c, struct group *g, im_uid u)
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

static void
member_erase(struct group *g, im_uid u)
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
	return member_insert(c, g, user);
}

static bool
slot_is_ours(chatter *c, im_gid gid, im_fence *fence)
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
static int
group_get(chatter *c, im_gid gid, struct group **out)
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

	if (!slot_is_ours(c, gid, &fence)) {
		return ROLE_ERR_UNAVAILABLE;
	}
	g = group_find(c, gid);
	if (g != NULL && g->epoch != fence.epoch &&
	    g->batch != c->batch_gen) {
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
	if (rc != IM_OK) {
		LOG_W("chatter: loading group %llu: %s (%s)",
		      (unsigned long long)gid, im_strerror(rc),
		      im_store_errmsg(c->st));
		group_free(g);
		return rc == IM_EFULL ? ROLE_ERR_FULL : ROLE_ERR_UNAVAILABLE;
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
chatter_drop_slot(chatter *c, uint32_t slot)
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
chatter_drop_all(chatter *c)
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

static void
idle_start(chatter *c)
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

static void
reply_err(role_reply *r, const struct pend *p, int code, const char *text)
{
	memset(r, 0, sizeof(*r));
	r->route = p->route;
	r->kind = ROLE_OP_SEND;
	r->code = code;
	r->text = text;
	r->group = p->gid;
	r->dedup_id = p->dedup_id;
}

static const char *
code_text(int code)
{
	switch (code) {
	case ROLE_ERR_NOT_FOUND:
		return "no such group";
	case ROLE_ERR_NOT_MEMBER:
		return "not a member of the group";
	case ROLE_ERR_FULL:
		return "server bound reached";
	case ROLE_ERR_UNAVAILABLE:
		return "store unavailable; retry with the same dedup id";
	default:
		return "internal error";
	}
}

/* Build the fan-outs of a committed batch: per touched group its stored
 * (non-duplicate) messages in seq order, with the group's members. */
static size_t
build_fanouts(chatter *c, uint32_t nmsgs, uint32_t ntouched)
{
	uint32_t i, t, off = 0;

	memset(c->fan_count, 0, ntouched * sizeof(*c->fan_count));
	for (i = 0; i < nmsgs; i++) {
		if (!c->res[i].dup) {
			c->fan_count[c->msg_group[i]->tidx]++;
		}
	}
	for (t = 0; t < ntouched; t++) {
		uint32_t cnt = c->fan_count[t];

		c->fans[t].group = c->touched[t]->gid;
		c->fans[t].msgs = c->fan_msgs + off;
		c->fans[t].nmsgs = 0;
		c->fans[t].members = c->touched[t]->members;
		c->fans[t].nmembers = c->touched[t]->nmembers;
		off += cnt;
	}
	for (i = 0; i < nmsgs; i++) {
		role_fanout *f;
		im_msg *m;

		if (c->res[i].dup) {
			continue;
		}
		f = &c->fans[c->msg_group[i]->tidx];
		m = (im_msg *)&f->msgs[f->nmsgs++];
		*m = c->msgs[i];
		m->seq = c->res[i].seq;
		m->prev_seq = c->res[i].prev_seq;
		m->ordinal = c->res[i].ordinal;
		m->time_ms = c->res[i].time_ms;
	}
	/* Drop groups whose sends were all duplicates. */
	for (i = 0, t = 0; t < ntouched; t++) {
		if (c->fans[t].nmsgs > 0) {
			c->fans[i++] = c->fans[t];
		}
	}
	return i;
}

/*
 * Fetch the next segment of at most one group per turn, after the commit
 * and its acks, off the path of the next batch: each refill is a store
 * transaction (an fsync) of its own. The group closest to running dry
 * goes first. With seq_step well above max_batch, a group that has to
 * wait for a later turn still holds most of its segment (refills start at
 * 20 % used); one that runs dry anyway refills inline, which is slower but
 * as correct.
 */
static void
prefetch_one(chatter *c, uint32_t ntouched)
{
	struct group *best = NULL;
	uint64_t best_avail = 0;
	uint32_t i;

	for (i = 0; i < ntouched; i++) {
		struct group *g = c->touched[i];
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
	if (best == NULL) {
		return;
	}
	c->stats.refills++;
	if (im_idseg_refill(&best->seg, c->st) != IM_OK) {
		LOG_W("chatter: prefetch for group %llu: %s",
		      (unsigned long long)best->gid, im_store_errmsg(c->st));
	}
}

/* The segment ran dry (the prefetch fell behind): refill on the commit
 * path, a transaction before the batch's own. */
static bool
refill_inline(chatter *c, struct group *g, uint64_t *seq)
{
	c->stats.refills++;
	c->stats.refills_inline++;
	if (im_idseg_refill(&g->seg, c->st) != IM_OK ||
	    im_idseg_next(&g->seg, seq) != IM_OK) {
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
static bool
new_gid(chatter *c, im_gid *gid, im_fence *fence)
{
	uint32_t tries, refills = 0;

	for (tries = 0; tries < GID_TRIES; tries++) {
		if (im_idseg_next(&c->gids, gid) != IM_OK) {
			if (refills++ == GID_REFILLS ||
			    im_idseg_refill(&c->gids, c->st) != IM_OK ||
			    im_idseg_next(&c->gids, gid) != IM_OK) {
				return false;
			}
		}
		if (slot_is_ours(c, *gid, fence)) {
			return true;
		}
	}
	return false;
}

/* A store without group_create_many (ops version < 4): the old way, one
 * transaction per row, unfenced. ok[k] tells which groups made it. */
static void
create_one_by_one(chatter *c, uint32_t n, bool *ok)
{
	uint32_t k, j;

	for (k = 0; k < n; k++) {
		const im_group_new *g = &c->cnew[k];
		int rc = im_store_group_create(c->st, &g->group);

		for (j = 0; rc == IM_OK && j < g->nmembers; j++) {
			rc = im_store_member_add(c->st, g->group.gid,
			                         g->members[j], NULL);
		}
		c->stats.create_commits += 1 + j;
		ok[k] = rc == IM_OK;
		if (rc != IM_OK) {
			LOG_W("chatter: create group %llu: %s (%s)",
			      (unsigned long long)g->group.gid,
			      im_strerror(rc), im_store_errmsg(c->st));
		}
	}
}

/*
 * Commit the creations of this turn: ONE im_store_group_create_many for
 * all of them (groups and members, fenced by the new gids' slots, all or
 * nothing), then the creators' replies, then ONE batch of GroupCreated
 * events for every member (the Connectors append them to the user queues,
 * one transaction per batch).
 */
static void
commit_creates(chatter *c)
{
	uint32_t n = c->ncpend, i, k, nnew = 0, nf = 0, nrep = 0;
	size_t nev = 0;
	uint64_t now = role_now_ms();
	bool ok[CREATE_BATCH_MAX];
	int rc;

	if (n == 0) {
		return;
	}
	c->ncpend = 0;
	for (i = 0; i < n; i++) {
		struct cpend *p = &c->cpend[i];
		im_group_new *g = &c->cnew[nnew];
		im_fence f;
		im_gid gid;

		if (!new_gid(c, &gid, &f)) {
			role_reply *r = &c->creplies[nrep++];

			memset(r, 0, sizeof(*r));
			r->route = p->route;
			r->kind = ROLE_OP_CREATE_GROUP;
			r->code = ROLE_ERR_UNAVAILABLE;
			r->text = "no group id in a slot served here";
			continue;
		}
		memset(g, 0, sizeof(*g));
		g->group.gid = gid;
		g->group.creator = p->creator;
		g->group.created_ms = now;
		memcpy(g->group.name, p->name, sizeof(g->group.name));
		g->members = p->members;
		g->nmembers = p->nmembers;
		c->cidx[nnew++] = i;
		for (k = 0; k < nf && c->cfences[k].slot != f.slot; k++) {
		}
		if (k == nf) {
			c->cfences[nf++] = f;
		}
	}
	if (nnew > 0) {
		rc = im_store_group_create_many(c->st, c->cfences, nf, c->cnew,
		                                nnew);
		if (rc == IM_ENOTSUP) {
			create_one_by_one(c, nnew, ok);
		} else {
			c->stats.create_commits++;
			for (k = 0; k < nnew; k++) {
				ok[k] = rc == IM_OK;
			}
			if (rc != IM_OK) {
				LOG_W("chatter: creating %u groups: %s (%s)",
				      nnew, im_strerror(rc),
				      im_store_errmsg(c->st));
			}
			if (rc == IM_ESTALE) {
				c->stats.stale++;
				(void)im_shard_load(c->map, c->st);
			}
		}
	}
	for (k = 0; k < nnew; k++) {
		const im_group_new *g = &c->cnew[k];
		role_reply *r = &c->creplies[nrep++];

		memset(r, 0, sizeof(*r));
		r->route = c->cpend[c->cidx[k]].route;
		r->kind = ROLE_OP_CREATE_GROUP;
		if (!ok[k]) {
			r->code = ROLE_ERR_UNAVAILABLE;
			r->text = "store unavailable";
			continue;
		}
		r->code = ROLE_OK;
		r->group = g->group.gid;
		c->stats.groups_created++;
		LOG_D("group %llu created by %llu with %u members",
		      (unsigned long long)g->group.gid,
		      (unsigned long long)g->group.creator, g->nmembers);
		for (i = 0; i < g->nmembers; i++) {
			role_uevent *ev = &c->cevs[nev++];

			memset(ev, 0, sizeof(*ev));
			ev->user = g->members[i];
			ev->type = UEV_GROUP_CREATED;
			ev->group = g->group.gid;
			ev->actor = g->group.creator;
			memcpy(ev->name, g->group.name, sizeof(ev->name));
		}
	}
	/* The creator hears GroupCreated before the members' events. */
	c->router->ops->reply(c->router, c->creplies, nrep);
	if (nev > 0) {
		c->router->ops->user_events(c->router, c->cevs, nev);
	}
	/* The next segment of group ids off the path of the next batch. */
	if (im_idseg_wants_refill(&c->gids)) {
		(void)im_idseg_refill(&c->gids, c->st);
	}
}

void
chatter_flush(chatter *c)
{
	uint64_t now = role_now_ms();
	uint32_t npend = c->npend, nmsgs = 0, nrep = 0, ntouched = 0;
	uint32_t nfences = 0, i;
	size_t nfans = 0;
	int rc = IM_OK;

	commit_creates(c);
	if (npend == 0) {
		return;
	}
	c->batch_gen++;
	for (i = 0; i < npend; i++) {
		struct pend *p = &c->pend[i];
		struct group *g = NULL;
		im_dedup_val dv;
		im_msg *m;
		uint64_t seq;
		int code;

		code = group_get(c, p->gid, &g);
		if (code == ROLE_OK && !is_member(g, p->sender)) {
			code = ROLE_ERR_NOT_MEMBER;
		}
		if (code != ROLE_OK) {
			reply_err(&c->replies[nrep++], p, code,
			          code_text(code));
			continue;
		}
		if (im_dedup_lookup(c->dedup, p->gid, p->sender, p->dedup_id,
		                    now, &dv) == IM_OK) {
			role_reply *r = &c->replies[nrep++];

			reply_err(r, p, ROLE_OK, NULL);
			r->seq = dv.seq;
			r->time_ms = dv.time_ms;
			r->dup = true;
			c->stats.dups++;
			continue;
		}
		if (g->batch != c->batch_gen) {
			/* A slot that stopped being ours since the send was
			 * queued (the map was reloaded) keeps epoch 0: the
			 * store refuses it as stale, never writes it. */
			im_fence f = {IM_KIND_GROUP, g->slot, 0};
			uint32_t k;

			g->batch = c->batch_gen;
			g->t_seq = g->last_seq;
			g->t_ord = g->last_ord;
			g->tidx = ntouched;
			c->touched[ntouched++] = g;
			/* Fenced with the epoch the state was loaded under:
			 * state from before a lost-and-regained slot must
			 * never be written under the new epoch. */
			if (slot_is_ours(c, g->gid, &f) &&
			    f.epoch != g->epoch) {
				f.epoch = 0;
			}
			for (k = 0; k < nfences; k++) {
				if (c->fences[k].slot == f.slot) {
					if (c->fences[k].epoch != f.epoch) {
						c->fences[k].epoch = 0;
					}
					break;
				}
			}
			if (k == nfences) {
				c->fences[nfences++] = f;
			}
		}
		if (im_idseg_next(&g->seg, &seq) != IM_OK &&
		    !refill_inline(c, g, &seq)) {
			reply_err(&c->replies[nrep++], p, ROLE_ERR_UNAVAILABLE,
			          code_text(ROLE_ERR_UNAVAILABLE));
			continue;
		}
		m = &c->msgs[nmsgs];
		memset(m, 0, sizeof(*m));
		m->conv = g->gid;
		m->seq = seq;
		m->prev_seq = g->t_seq;
		m->ordinal = g->t_ord + 1;
		m->sender = p->sender;
		m->dedup_id = p->dedup_id;
		m->reply_to = p->reply_to;
		m->time_ms = now;
		m->type = p->type;
		m->body_len = p->body_len;
		m->body = p->body;
		g->t_seq = seq;
		g->t_ord++;
		c->msg_group[nmsgs] = g;
		c->msg_pend[nmsgs] = i;
		nmsgs++;
	}

	if (nmsgs > 0) {
		rc = im_store_msg_append(c->st, c->fences, nfences, c->msgs,
		                         nmsgs, c->res);
		c->stats.commits++;
	}
	if (nmsgs > 0 && rc == IM_OK) {
		for (i = 0; i < nmsgs; i++) {
			struct group *g = c->msg_group[i];
			const im_append_result *res = &c->res[i];
			im_dedup_val dv = {res->seq, res->time_ms};
			role_reply *r = &c->replies[nrep++];

			if (!res->dup) {
				g->last_seq = res->seq;
				g->last_ord = res->ordinal;
				c->stats.msgs++;
			} else {
				c->stats.dups++;
			}
			(void)im_dedup_insert(
			        c->dedup, g->gid, c->msgs[i].sender,
			        c->msgs[i].dedup_id, &dv, now, NULL);
			reply_err(r, &c->pend[c->msg_pend[i]], ROLE_OK, NULL);
			r->seq = res->seq;
			r->time_ms = res->time_ms;
			r->dup = res->dup;
		}
		nfans = build_fanouts(c, nmsgs, ntouched);
	} else if (nmsgs > 0) {
		/* Nothing was stored (fenced), or we cannot know (lost
		 * connection): either way our idea of these groups may be
		 * wrong, so forget it and let the next use reload. */
		LOG_W("chatter: commit of %u messages failed: %s (%s)", nmsgs,
		      im_strerror(rc), im_store_errmsg(c->st));
		if (rc == IM_ESTALE) {
			c->stats.stale++;
			(void)im_shard_load(c->map, c->st);
		}
		for (i = 0; i < nmsgs; i++) {
			reply_err(&c->replies[nrep++], &c->pend[c->msg_pend[i]],
			          ROLE_ERR_UNAVAILABLE,
			          code_text(ROLE_ERR_UNAVAILABLE));
		}
		for (i = 0; i < nfences; i++) {
			chatter_drop_slot(c, c->fences[i].slot);
		}
		ntouched = 0;
	}

	/* Acks first, then fan-out: the sender learns "stored" no later
	 * than anyone else learns the message. */
	c->router->ops->reply(c->router, c->replies, nrep);
	if (nfans > 0) {
		c->router->ops->deliver(c->router, c->fans, nfans);
	}
	/* The bodies were borrowed by the store and the fan-out until now. */
	c->npend = 0;
	c->arena_used = 0;
	prefetch_one(c, ntouched);
	(void)im_dedup_expire(c->dedup, now, 64);
}

static void
commit_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	chatter *c = w->data;

	chatter_flush(c);
}

static void
reply_one(chatter *c, const role_op *op, int code, const char *text, im_gid gid)
{
	role_reply r;

	memset(&r, 0, sizeof(r));
	r.route = op->route;
	r.kind = op->kind;
	r.code = code;
	r.text = text;
	r.group = gid;
	c->router->ops->reply(c->router, &r, 1);
}

static void
queue_send(chatter *c, const role_op *op)
{
	struct pend *p;

	if (op->group == 0 || op->dedup_id == 0 ||
	    op->body_len > IM_MSG_BODY_MAX ||
	    (op->body_len > 0 && op->body == NULL)) {
		role_reply r;

		memset(&r, 0, sizeof(r));
		r.route = op->route;
		r.kind = ROLE_OP_SEND;
		r.code = ROLE_ERR_BAD_REQUEST;
		r.text = "send needs a group, a nonzero dedup_id, a body "
		         "<= 4096 bytes";
		r.group = op->group;
		r.dedup_id = op->dedup_id;
		c->router->ops->reply(c->router, &r, 1);
		return;
	}
	/* A full batch (sends or body bytes) is committed first. */
	if (c->npend == c->opts.max_batch ||
	    c->arena_cap - c->arena_used < op->body_len) {
		chatter_flush(c);
	}
	p = &c->pend[c->npend];
	memset(p, 0, sizeof(*p));
	if (op->body_len > 0) {
		p->body = c->arena + c->arena_used;
		memcpy(p->body, op->body, op->body_len);
		c->arena_used += op->body_len;
	}
	p->route = op->route;
	p->sender = op->user;
	p->gid = op->group;
	p->dedup_id = op->dedup_id;
	p->reply_to = op->reply_to;
	p->type = op->type;
	p->body_len = op->body_len;
	c->npend++;
}

static void
emit_event(chatter *c, im_uid user, uint32_t type, const struct group *g,
           im_gid gid, const char *name, im_uid actor)
{
	role_uevent ev;

	memset(&ev, 0, sizeof(ev));
	ev.user = user;
	ev.type = type;
	ev.group = g != NULL ? g->gid : gid;
	ev.actor = actor;
	snprintf(ev.name, sizeof(ev.name), "%s", g != NULL ? g->name : name);
	c->router->ops->user_events(c->router, &ev, 1);
}

/* Check a CreateGroup and queue it for this turn's creation commit. */
static void
queue_create(chatter *c, const role_op *op)
{
	struct cpend *p;
	size_t i, j;

	if (op->nmembers > ROLE_CREATE_MEMBERS_MAX ||
	    (op->nmembers > 0 && op->members == NULL) ||
	    (op->name != NULL && strlen(op->name) > IM_GROUP_NAME_MAX) ||
	    op->user == 0) {
		reply_one(c, op, ROLE_ERR_BAD_REQUEST,
		          "at most 64 members and a name of 64 bytes", 0);
		return;
	}
	if (c->ncpend == CREATE_BATCH_MAX) {
		chatter_flush(c);
	}
	p = &c->cpend[c->ncpend];
	p->route = op->route;
	p->creator = op->user;
	p->nmembers = 0;
	p->members[p->nmembers++] = op->user;
	for (i = 0; i < op->nmembers; i++) {
		im_uid u = op->members[i];

		for (j = 0; j < p->nmembers && p->members[j] != u; j++) {
		}
		if (u != 0 && j == p->nmembers) {
			p->members[p->nmembers++] = u;
		}
	}
	snprintf(p->name, sizeof(p->name), "%s",
	         op->name != NULL ? op->name : "");
	c->ncpend++;
}

static void
do_member(chatter *c, const role_op *op)
{
	struct group *g = NULL;
	bool changed = false;
	int code, rc;

	if (op->group == 0 || op->target == 0) {
		reply_one(c, op, ROLE_ERR_BAD_REQUEST, "group and user needed",
		          op->group);
		return;
	}
	code = group_get(c, op->group, &g);
	if (code != ROLE_OK) {
		reply_one(c, op, code, code_text(code), op->group);
		return;
	}
	if (!is_member(g, op->user)) {
		reply_one(c, op, ROLE_ERR_NOT_MEMBER,
		          code_text(ROLE_ERR_NOT_MEMBER), op->group);
		return;
	}
	if (op->kind == ROLE_OP_ADD_MEMBER) {
		if (g->nmembers >= c->opts.max_members) {
			reply_one(c, op, ROLE_ERR_FULL, "group is full",
			          op->group);
			return;
		}
		rc = im_store_member_add(c->st, g->gid, op->target, &changed);
		if (rc == IM_OK && member_insert(c, g, op->target) != IM_OK) {
			/* Stored but not cached: reload on next use. */
			chatter_drop_slot(c, g->slot);
			g = NULL;
		}
	} else {
		if (op->user != op->target && op->user != g->creator) {
			reply_one(c, op, ROLE_ERR_NOT_MEMBER,
			          "only the creator or the user may remove",
			          op->group);
			return;
		}
		rc = im_store_member_remove(c->st, g->gid, op->target,
		                            &changed);
		if (rc == IM_OK) {
			member_erase(g, op->target);
		}
	}
	if (rc != IM_OK) {
		LOG_W("chatter: membership of %llu: %s (%s)",
		      (unsigned long long)op->group, im_strerror(rc),
		      im_store_errmsg(c->st));
		reply_one(c, op, ROLE_ERR_UNAVAILABLE, "store unavailable",
		          op->group);
		return;
	}
	reply_one(c, op, ROLE_OK, NULL, op->group);
	if (changed) {
		emit_event(c, op->target,
		           op->kind == ROLE_OP_ADD_MEMBER ? UEV_JOINED
		                                          : UEV_LEFT,
		           g, op->group, "", op->user);
	}
}

void
chatter_submit(chatter *c, const role_op *ops, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const role_op *op = &ops[i];

		switch (op->kind) {
		case ROLE_OP_SEND:
			queue_send(c, op);
			break;
		case ROLE_OP_CREATE_GROUP:
			/* Committed with the turn's other creations. */
			queue_create(c, op);
			break;
		case ROLE_OP_ADD_MEMBER:
		case ROLE_OP_REMOVE_MEMBER:
			chatter_flush(c);
			do_member(c, op);
			break;
		default:
			reply_one(c, op, ROLE_ERR_BAD_REQUEST, "unknown op",
			          op->group);
			break;
		}
	}
}

void
chatter_get_stats(const chatter *c, chatter_stats *out)
{
	*out = c->stats;
	out->groups = c->ngroups;
}

int
chatter_create(chatter **out, struct ev_loop *loop, im_store *st,
               im_shard_map *map, const char *node, role_router *router,
               const chatter_opts *opts)
{
	chatter_opts o = CHATTER_OPTS_INIT;
	im_dedup_opts dopts = IM_DEDUP_OPTS_INIT;
	im_seg_key gkey = {IM_SEG_GROUP_ID, 0};
	im_idseg_opts gopts = IM_IDSEG_OPTS_INIT;
	chatter *c;
	uint32_t nb = 64;
	size_t mb;
	int rc;

	if (out == NULL || loop == NULL || st == NULL || map == NULL ||
	    node == NULL || router == NULL) {
		return IM_EINVAL;
	}
	if (opts != NULL) {
		o = *opts;
	}
	if (o.max_groups == 0 || o.max_batch == 0 || o.seq_step == 0 ||
	    o.gid_step == 0 || o.max_members == 0 || o.dedup_capacity == 0) {
		return IM_EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		return IM_ENOMEM;
	}
	c->loop = loop;
	c->st = st;
	c->map = map;
	c->node = node;
	c->router = router;
	c->opts = o;
	while (nb < o.max_groups && nb < (1u << 20)) {
		nb <<= 1;
	}
	c->nbuckets = nb;
	mb = o.max_batch;
	c->buckets = calloc(nb, sizeof(*c->buckets));
	c->pend = calloc(mb, sizeof(*c->pend));
	c->msgs = calloc(mb, sizeof(*c->msgs));
	c->msg_group = calloc(mb, sizeof(*c->msg_group));
	c->msg_pend = calloc(mb, sizeof(*c->msg_pend));
	c->res = calloc(mb, sizeof(*c->res));
	c->fences = calloc(mb, sizeof(*c->fences));
	c->touched = calloc(mb, sizeof(*c->touched));
	c->replies = calloc(mb, sizeof(*c->replies));
	c->fan_msgs = calloc(mb, sizeof(*c->fan_msgs));
	c->fans = calloc(mb, sizeof(*c->fans));
	c->fan_count = calloc(mb, sizeof(*c->fan_count));
	c->cpend = calloc(CREATE_BATCH_MAX, sizeof(*c->cpend));
	c->cnew = calloc(CREATE_BATCH_MAX, sizeof(*c->cnew));
	c->cidx = calloc(CREATE_BATCH_MAX, sizeof(*c->cidx));
	c->cfences = calloc(CREATE_BATCH_MAX, sizeof(*c->cfences));
	c->creplies = calloc(CREATE_BATCH_MAX, sizeof(*c->creplies));
	c->cevs = malloc((size_t)CREATE_BATCH_MAX *
	                 (ROLE_CREATE_MEMBERS_MAX + 1) * sizeof(*c->cevs));
	/* malloc, not calloc: pages a batch never reaches stay unmapped. */
	c->arena_cap = mb * IM_MSG_BODY_MAX;
	c->arena = malloc(c->arena_cap);
	if (c->buckets == NULL || c->pend == NULL || c->msgs == NULL ||
	    c->msg_group == NULL || c->msg_pend == NULL || c->res == NULL ||
	    c->fences == NULL || c->touched == NULL || c->replies == NULL ||
	    c->fan_msgs == NULL || c->fans == NULL || c->fan_count == NULL ||
	    c->arena == NULL || c->cpend == NULL || c->cnew == NULL ||
	    c->cidx == NULL || c->cfences == NULL || c->creplies == NULL ||
	    c->cevs == NULL) {
		rc = IM_ENOMEM;
		goto fail;
	}
	dopts.capacity = o.dedup_capacity;
	dopts.ttl_ms = o.dedup_ttl_ms;
	dopts.seed = o.seed;
	rc = im_dedup_create(&c->dedup, &dopts);
	if (rc != IM_OK) {
		goto fail;
	}
	gopts.step = o.gid_step;
	rc = im_idseg_init(&c->gids, &gkey, &gopts);
	if (rc != IM_OK) {
		goto fail;
	}
	ev_prepare_init(&c->commit_w, commit_cb);
	c->commit_w.data = c;
	/* Commit before the Connector flushes its writes in the same turn
	 * (its prepare watcher runs at the lowest priority). */
	ev_set_priority(&c->commit_w, EV_MAXPRI);
	ev_prepare_start(loop, &c->commit_w);
	idle_start(c);
	*out = c;
	return IM_OK;
fail:
	chatter_destroy(c);
	return rc;
}

void
chatter_destroy(chatter *c)
{
	uint32_t b;

	if (c == NULL) {
		return;
	}
	if (ev_is_active(&c->commit_w)) {
		ev_prepare_stop(c->loop, &c->commit_w);
	}
	if (ev_is_active(&c->idle_w)) {
		ev_ref(c->loop);
		ev_timer_stop(c->loop, &c->idle_w);
	}
	for (b = 0; c->buckets != NULL && b < c->nbuckets; b++) {
		while (c->buckets[b] != NULL) {
			struct group *g = c->buckets[b];

			c->buckets[b] = g->next;
			group_free(g);
		}
	}
	im_idseg_finish(&c->gids);
	im_dedup_destroy(c->dedup);
	free(c->buckets);
	free(c->pend);
	free(c->msgs);
	free(c->msg_group);
	free(c->msg_pend);
	free(c->res);
	free(c->fences);
	free(c->touched);
	free(c->replies);
	free(c->fan_msgs);
	free(c->fans);
	free(c->fan_count);
	free(c->arena);
	free(c->cpend);
	free(c->cnew);
	free(c->cidx);
	free(c->cfences);
	free(c->creplies);
	free(c->cevs);
	free(c);
}
