/*
 * CreateGroup: checked and queued as it arrives, then committed once per
 * loop turn for every creation of the turn (one fenced transaction), with
 * the creators' replies and the members' GroupCreated events. Its own file
 * because creations never touch the hot group state or the send batches.
 *
 * A keyed create (the client's dedup id, resent with the same id after a
 * lost answer or a reconnect) goes through im_store_group_create_dedup:
 * (creator, dedup id) is a durable unique key, so a retry, here or on
 * another Chatter after a failover, gets the first group back (dup) and
 * creates nothing. A dup answers only the creator: the members heard
 * GroupCreated when the group was made.
 */
#include "chatter_priv.h"

#include <stdio.h>
#include <string.h>

static bool
key_pending(const chatter *c, im_uid creator, uint64_t dedup_id)
{
	uint32_t i;

	for (i = 0; i < c->ncpend; i++) {
		if (c->cpend[i].creator == creator &&
		    c->cpend[i].dedup_id == dedup_id) {
			return true;
		}
	}
	return false;
}

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
	/* A batch is full, or holds this key already (a retry that came
	 * before the first try's commit): commit it first, so the keys of one
	 * store call are distinct and the retry finds the first group. */
	if (c->ncpend == CREATE_BATCH_MAX ||
	    (op->dedup_id != 0 && key_pending(c, op->user, op->dedup_id))) {
		chatter_flush(c);
	}
	p = &c->cpend[c->ncpend];
	p->route = op->route;
	p->creator = op->user;
	p->dedup_id = op->dedup_id;
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
			r->dedup_id = p->dedup_id;
			/* A gid segment that could not be taken on a full
			 * disk: certain, nothing was created. */
			r->code = store_full_on(&c->full)
			                  ? ROLE_ERR_STORE_FULL
			                  : ROLE_ERR_UNAVAILABLE;
			r->text = r->code == ROLE_ERR_STORE_FULL
			                  ? im_code_text(r->code)
			                  : "no group id in a slot served here";
			continue;
		}
		memset(g, 0, sizeof(*g));
		g->group.gid = gid;
		g->group.creator = p->creator;
		g->group.created_ms = now;
		memcpy(g->group.name, p->name, sizeof(g->group.name));
		g->members = p->members;
		g->nmembers = p->nmembers;
		c->ckeys[nnew] = p->dedup_id;
		c->cidx[nnew++] = i;
		for (k = 0; k < *nf && c->cfences[k].slot != f.slot; k++) {
		}
		if (k == *nf) {
			c->cfences[(*nf)++] = f;
		}
	}
	return nnew;
}

/*
 * Write the nnew groups of c->cnew with their keys, one fenced
 * transaction; c->cmade[k] says which group each stands for (a keyed one
 * may name the group of an earlier try). A store without keyed creation
 * (ops version < 5: IM_ENOTSUP, nothing written) creates them unkeyed,
 * as before keys existed: a retry may then make a second group.
 */
static int
creates_write(chatter *c, uint32_t nnew, uint32_t nf, int *rcs)
{
	uint32_t k;
	int rc = IM_ENOTSUP;

	for (k = 0; k < nnew && c->ckeys[k] == 0; k++) {
	}
	if (k < nnew) {
		rc = im_store_group_create_dedup(c->st, c->cfences, nf, c->cnew,
		                                 c->ckeys, nnew, c->cmade);
		for (k = 0; k < nnew && rc != IM_ENOTSUP; k++) {
			rcs[k] = rc;
		}
		if (rc == IM_ENOTSUP && !c->warned_unkeyed) {
			c->warned_unkeyed = true;
			LOG_W("chatter: the store keeps no create keys (%s): "
			      "a retried CreateGroup may make a second group",
			      im_store_errmsg(c->st));
		}
	}
	if (rc == IM_ENOTSUP) {
		rc = im_store_group_create_each(c->st, c->cfences, nf, c->cnew,
		                                nnew, rcs);
		for (k = 0; k < nnew; k++) {
			c->cmade[k].gid = c->cnew[k].group.gid;
			c->cmade[k].dup = false;
		}
	}
	return rc;
}

/* Write the nnew groups of c->cnew; code[k] tells which made it (all or
 * none with the batched op, each its own on a store without it): ROLE_OK,
 * ROLE_ERR_STORE_FULL on a full disk, else ROLE_ERR_UNAVAILABLE. */
static void
creates_store(chatter *c, uint32_t nnew, uint32_t nf, uint32_t *code)
{
	int rcs[CREATE_BATCH_MAX];
	uint32_t k;
	int rc;

	rc = creates_write(c, nnew, nf, rcs);
	c->stats.create_commits++;
	for (k = 0; k < nnew; k++) {
		code[k] = im_code_of_err(rc == IM_EINVAL ? rc : rcs[k]);
	}
	if (rc == IM_OK) {
		store_full_ok(&c->full, role_now_ms(), "chatter");
	} else if (rc == IM_ENOSPC) {
		/* The pause and one warning per 10 s (store_full.h). */
		store_full_failed(&c->full, role_now_ms(), nnew, "chatter",
		                  im_store_errmsg(c->st));
	} else {
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
creates_answer(chatter *c, uint32_t nnew, uint32_t nrep, const uint32_t *code)
{
	size_t nev = 0;
	uint32_t i, k;

	for (k = 0; k < nnew; k++) {
		const im_group_new *g = &c->cnew[k];
		role_reply *r = &c->creplies[nrep++];

		memset(r, 0, sizeof(*r));
		r->route = c->cpend[c->cidx[k]].route;
		r->kind = ROLE_OP_CREATE_GROUP;
		r->dedup_id = c->ckeys[k];
		if (code[k] != ROLE_OK) {
			r->code = code[k];
			r->text = role_store_err_text(code[k]);
			continue;
		}
		r->code = ROLE_OK;
		r->group = c->cmade[k].gid;
		r->dup = c->cmade[k].dup;
		if (r->dup) {
			c->stats.create_dups++;
			LOG_D("group %llu: create key %llu of %llu used again",
			      (unsigned long long)r->group,
			      (unsigned long long)r->dedup_id,
			      (unsigned long long)g->group.creator);
			continue;
		}
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

/* Every pending creation refused ERR_STORE_FULL, nothing tried. */
static void
creates_refuse_full(chatter *c, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++) {
		role_reply *r = &c->creplies[i];

		memset(r, 0, sizeof(*r));
		r->route = c->cpend[i].route;
		r->kind = ROLE_OP_CREATE_GROUP;
		r->dedup_id = c->cpend[i].dedup_id;
		r->code = ROLE_ERR_STORE_FULL;
		r->text = im_code_text(ROLE_ERR_STORE_FULL);
	}
	c->router->ops->reply(c->router, c->creplies, n);
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
	uint32_t code[CREATE_BATCH_MAX];

	if (n == 0) {
		return;
	}
	c->ncpend = 0;
	/* The disk is full and the pause runs: refused unwritten, the
	 * store not tried (store_full.h). */
	if (store_full_blocked(&c->full, role_now_ms(), n)) {
		creates_refuse_full(c, n);
		return;
	}
	nnew = creates_assign(c, n, &nf, &nrep);
	if (nnew > 0) {
		creates_store(c, nnew, nf, code);
	}
	creates_answer(c, nnew, nrep, code);
	chatter__gids_prefetch(c);
}
