/*
 * CreateGroup: checked and queued as it arrives, then committed once per
 * loop turn for every creation of the turn (one fenced transaction), with
 * the creators' replies and the members' GroupCreated events. Its own file
 * because creations never touch the hot group state or the send batches.
 */
#include "chatter_priv.h"

#include <stdio.h>
#include <string.h>

/* Check a CreateGroup and queue it for this turn's creation commit. */
void
chatter__queue_create(chatter *c, const role_op *op)
{
	struct cpend *p;
	size_t i, j;

	if (op->nmembers > ROLE_CREATE_MEMBERS_MAX ||
	    (op->nmembers > 0 && op->members == NULL) ||
	    (op->name != NULL && strlen(op->name) > IM_GROUP_NAME_MAX) ||
	    op->user == 0) {
		chatter__reply_one(c, op, ROLE_ERR_BAD_REQUEST,
		                   "at most 64 members and a name of 64 bytes",
		                   0);
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

/*
 * Give each pending creation a group id in a slot we own, and collect the
 * fences of those slots (one per slot). A creation without an id gets its
 * error reply here. Returns the number of groups to write (c->cnew).
 */
static uint32_t
creates_assign(chatter *c, uint32_t n, uint32_t *nf, uint32_t *nrep)
{
	uint64_t now = role_now_ms();
	uint32_t i, k, nnew = 0;

	for (i = 0; i < n; i++) {
		struct cpend *p = &c->cpend[i];
		im_group_new *g = &c->cnew[nnew];
		im_fence f;
		im_gid gid;

		if (!chatter__new_gid(c, &gid, &f)) {
			role_reply *r = &c->creplies[(*nrep)++];

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
		for (k = 0; k < *nf && c->cfences[k].slot != f.slot; k++) {
		}
		if (k == *nf) {
			c->cfences[(*nf)++] = f;
		}
	}
	return nnew;
}

/* Write the nnew groups of c->cnew; ok[k] tells which made it (all or
 * none with the batched op, each its own on a store without it). */
static void
creates_store(chatter *c, uint32_t nnew, uint32_t nf, bool *ok)
{
	int rcs[CREATE_BATCH_MAX];
	uint32_t k;
	int rc;

	rc = im_store_group_create_each(c->st, c->cfences, nf, c->cnew, nnew,
	                                rcs);
	c->stats.create_commits++;
	for (k = 0; k < nnew; k++) {
		ok[k] = rc != IM_EINVAL && rcs[k] == IM_OK;
	}
	if (rc != IM_OK) {
		LOG_W("chatter: creating %u groups: %s (%s)", nnew,
		      im_strerror(rc), im_store_errmsg(c->st));
	}
	if (rc == IM_ESTALE) {
		c->stats.stale++;
		(void)im_shard_load(c->map, c->st);
	}
}

/* The creators' replies (after the nrep errors already in c->creplies),
 * then the members' GroupCreated events. */
static void
creates_answer(chatter *c, uint32_t nnew, uint32_t nrep, const bool *ok)
{
	size_t nev = 0;
	uint32_t i, k;

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
}

/*
 * Commit the creations of this turn: ONE im_store_group_create_many for
 * all of them (groups and members, fenced by the new gids' slots, all or
 * nothing), then the creators' replies, then ONE batch of GroupCreated
 * events for every member (the Connectors append them to the user queues,
 * one transaction per batch).
 */
void
chatter__commit_creates(chatter *c)
{
	uint32_t n = c->ncpend, nnew, nf = 0, nrep = 0;
	bool ok[CREATE_BATCH_MAX];

	if (n == 0) {
		return;
	}
	c->ncpend = 0;
	nnew = creates_assign(c, n, &nf, &nrep);
	if (nnew > 0) {
		creates_store(c, nnew, nf, ok);
	}
	creates_answer(c, nnew, nrep, ok);
	chatter__gids_prefetch(c);
}
