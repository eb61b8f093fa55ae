/*
 * The contents of one send batch: built from the gathered sends against
 * the hot state (build), stored (run_commit, the only part that may run
 * on the commit thread), applied back to the hot state (apply) and
 * answered (acks, then fan-out). When each step runs is commit.c's job.
 */
#include "chatter_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Build the fan-outs of a committed batch: per touched group its stored
 * (non-duplicate) messages in seq order, with the group's members. */
static size_t
build_fanouts(chatter *c, const struct batch *b)
{
	uint32_t i, t, off = 0;

	memset(c->fan_count, 0, b->ntouched * sizeof(*c->fan_count));
	for (i = 0; i < b->nmsgs; i++) {
		if (!b->res[i].dup) {
			c->fan_count[b->msg_group[i]->tidx]++;
		}
	}
	for (t = 0; t < b->ntouched; t++) {
		uint32_t cnt = c->fan_count[t];

		c->fans[t].group = b->touched[t]->gid;
		c->fans[t].msgs = c->fan_msgs + off;
		c->fans[t].nmsgs = 0;
		c->fans[t].members = b->touched[t]->members;
		c->fans[t].nmembers = b->touched[t]->nmembers;
		off += cnt;
	}
	for (i = 0; i < b->nmsgs; i++) {
		role_fanout *f;
		im_msg *m;

		if (b->res[i].dup) {
			continue;
		}
		f = &c->fans[b->msg_group[i]->tidx];
		m = (im_msg *)&f->msgs[f->nmsgs++];
		*m = b->msgs[i];
		m->seq = b->res[i].seq;
		m->prev_seq = b->res[i].prev_seq;
		m->ordinal = b->res[i].ordinal;
		m->time_ms = b->res[i].time_ms;
	}
	/* Drop groups whose sends were all duplicates. */
	for (i = 0, t = 0; t < b->ntouched; t++) {
		if (c->fans[t].nmsgs > 0) {
			c->fans[i++] = c->fans[t];
		}
	}
	return i;
}

/*
 * g's first send in batch b: the group joins the batch's touched groups,
 * its seq/ordinal run starts from what is committed, and its slot's fence
 * joins the batch's fences (one per slot).
 */
static void
batch_touch(chatter *c, struct batch *b, struct group *g)
{
	/* A slot that stopped being ours since the send was queued (the map
	 * was reloaded) keeps epoch 0: the store refuses it as stale, never
	 * writes it. */
	im_fence f = {IM_KIND_GROUP, g->slot, 0};
	uint32_t k;

	g->batch = b->gen;
	g->t_seq = g->last_seq;
	g->t_ord = g->last_ord;
	g->tidx = b->ntouched;
	b->touched[b->ntouched++] = g;
	/* Fenced with the epoch the state was loaded under: state from
	 * before a lost-and-regained slot must never be written under the
	 * new epoch. */
	if (chatter__slot_is_ours(c, g->gid, &f) && f.epoch != g->epoch) {
		f.epoch = 0;
	}
	for (k = 0; k < b->nfences; k++) {
		if (b->fences[k].slot == f.slot) {
			if (b->fences[k].epoch != f.epoch) {
				b->fences[k].epoch = 0;
			}
			break;
		}
	}
	if (k == b->nfences) {
		b->fences[b->nfences++] = f;
	}
}

/* The message of pending send i of b, to g at seq. */
static void
batch_add_msg(struct batch *b, struct group *g, uint32_t i, uint64_t seq)
{
	const struct pend *p = &b->pend[i];
	im_msg *m = &b->msgs[b->nmsgs];

	memset(m, 0, sizeof(*m));
	m->conv = g->gid;
	m->seq = seq;
	m->prev_seq = g->t_seq;
	m->ordinal = g->t_ord + 1;
	m->sender = p->sender;
	m->dedup_id = p->dedup_id;
	m->reply_to = p->reply_to;
	m->time_ms = b->now;
	m->type = p->type;
	m->body_len = p->body_len;
	m->body = p->body;
	g->t_seq = seq;
	g->t_ord++;
	b->msg_group[b->nmsgs] = g;
	b->msg_pend[b->nmsgs] = i;
	b->nmsgs++;
}

/*
 * Turn the gathered sends of b into messages (loop thread, nothing in
 * flight): hot state, membership, dedup cache, seqs and fences. Sends
 * that cannot be stored get their error reply here; it is sent with the
 * acks after the commit, in the batch's order.
 */
void
chatter__build_batch(chatter *c, struct batch *b)
{
	uint32_t i;

	b->now = role_now_ms();
	b->nmsgs = 0;
	b->nrep = 0;
	b->nfences = 0;
	b->ntouched = 0;
	b->prefetch = NULL;
	b->rc = IM_OK;
	b->prefetch_rc = IM_OK;
	b->err[0] = '\0';
	b->gen = ++c->batch_gen;
	for (i = 0; i < b->npend; i++) {
		struct pend *p = &b->pend[i];
		struct group *g = NULL;
		im_dedup_val dv;
		uint64_t seq;
		int code;

		code = chatter__group_get(c, p->gid, &g);
		if (code == ROLE_OK && !chatter__is_member(g, p->sender)) {
			code = ROLE_ERR_NOT_MEMBER;
		}
		if (code != ROLE_OK) {
			reply_err(&b->replies[b->nrep++], p, code,
			          im_code_text(code));
			continue;
		}
		if (im_dedup_lookup(c->dedup, p->gid, p->sender, p->dedup_id,
		                    b->now, &dv) == IM_OK) {
			role_reply *r = &b->replies[b->nrep++];

			reply_err(r, p, ROLE_OK, NULL);
			r->seq = dv.seq;
			r->time_ms = dv.time_ms;
			r->dup = true;
			c->stats.dups++;
			continue;
		}
		/* Known sends are answered above even on a full disk;
		 * new ones wait for the pause to end (store_full.h). */
		if (store_full_blocked(&c->full, b->now, 1)) {
			reply_err(&b->replies[b->nrep++], p,
			          ROLE_ERR_STORE_FULL,
			          im_code_text(ROLE_ERR_STORE_FULL));
			c->stats.full_refused++;
			continue;
		}
		if (g->batch != b->gen) {
			batch_touch(c, b, g);
		}
		if (im_idseg_next(&g->seg, &seq) != IM_OK &&
		    !chatter__refill_inline(c, g, &seq)) {
			code = store_full_on(&c->full) ? ROLE_ERR_STORE_FULL
			                               : ROLE_ERR_UNAVAILABLE;
			reply_err(&b->replies[b->nrep++], p, code,
			          im_code_text(code));
			continue;
		}
		batch_add_msg(b, g, i, seq);
	}
}

/*
 * The store part of a batch, through st: the append, then (with_prefetch)
 * the batch's segment prefetch. Runs on the commit thread, or on the loop
 * without one. Touches only b and b->prefetch's segment.
 */
void
chatter__run_commit(struct batch *b, im_store *st, bool with_prefetch)
{
	b->rc = im_store_msg_append(st, b->fences, b->nfences, b->msgs,
	                            b->nmsgs, b->res);
	if (b->rc != IM_OK) {
		snprintf(b->err, sizeof(b->err), "%s", im_store_errmsg(st));
		return;
	}
	if (with_prefetch && b->prefetch != NULL) {
		b->prefetch_rc = im_idseg_refill(&b->prefetch->seg, st);
		if (b->prefetch_rc != IM_OK) {
			snprintf(b->err, sizeof(b->err), "%s",
			         im_store_errmsg(st));
		}
	}
}

/*
 * The disk is full: the batch was rolled back, nothing of it is stored,
 * so every send is refused for certain (ERR_STORE_FULL) and the groups'
 * state stays right (their last seq did not move; the seqs the batch took
 * are skipped). The pause and the bounded warnings: store_full.h.
 */
static void
answer_full(chatter *c, struct batch *b)
{
	uint32_t i;

	store_full_failed(&c->full, role_now_ms(), b->nmsgs, "chatter",
	                  b->err);
	c->stats.full_refused += b->nmsgs;
	for (i = 0; i < b->nmsgs; i++) {
		reply_err(&b->replies[b->nrep++], &b->pend[b->msg_pend[i]],
		          ROLE_ERR_STORE_FULL,
		          im_code_text(ROLE_ERR_STORE_FULL));
	}
	b->ntouched = 0;
	b->prefetch = NULL;
}

/*
 * The results of a committed (or failed) batch, on the loop thread:
 * group state, dedup cache, stats, and the replies. Returns the number of
 * fan-outs built in c->fans.
 */
size_t
chatter__apply_batch(chatter *c, struct batch *b)
{
	uint32_t i;

	if (b->nmsgs == 0) {
		return 0;
	}
	c->stats.commits++;
	if (b->rc == IM_OK) {
		store_full_ok(&c->full, role_now_ms(), "chatter");
		for (i = 0; i < b->nmsgs; i++) {
			struct group *g = b->msg_group[i];
			const im_append_result *res = &b->res[i];
			im_dedup_val dv = {res->seq, res->time_ms};
			role_reply *r = &b->replies[b->nrep++];

			if (!res->dup) {
				g->last_seq = res->seq;
				g->last_ord = res->ordinal;
				c->stats.msgs++;
			} else {
				c->stats.dups++;
			}
			(void)im_dedup_insert(
			        c->dedup, g->gid, b->msgs[i].sender,
			        b->msgs[i].dedup_id, &dv, b->now, NULL);
			reply_err(r, &b->pend[b->msg_pend[i]], ROLE_OK, NULL);
			r->seq = res->seq;
			r->time_ms = res->time_ms;
			r->dup = res->dup;
		}
		if (b->prefetch != NULL) {
			c->stats.refills++;
			if (b->prefetch_rc != IM_OK) {
				LOG_W("chatter: prefetch for group %llu: %s",
				      (unsigned long long)b->prefetch->gid,
				      b->err);
			}
		}
		return build_fanouts(c, b);
	}
	if (b->rc == IM_ENOSPC) {
		answer_full(c, b);
		return 0;
	}
	/* Nothing was stored (fenced), or we cannot know (lost connection):
	 * either way our idea of these groups may be wrong, so forget it
	 * and let the next use reload. */
	LOG_W("chatter: commit of %u messages failed: %s (%s)", b->nmsgs,
	      im_strerror(b->rc), b->err);
	if (b->rc == IM_ESTALE) {
		c->stats.stale++;
		(void)im_shard_load(c->map, c->st);
	}
	for (i = 0; i < b->nmsgs; i++) {
		reply_err(&b->replies[b->nrep++], &b->pend[b->msg_pend[i]],
		          ROLE_ERR_UNAVAILABLE,
		          im_code_text(ROLE_ERR_UNAVAILABLE));
	}
	for (i = 0; i < b->nfences; i++) {
		chatter__drop_slot_now(c, b->fences[i].slot);
	}
	b->ntouched = 0;
	b->prefetch = NULL;
	return 0;
}

/* Acks first, then fan-out: the sender learns "stored" no later than
 * anyone else learns the message. Then the batch is empty again (its
 * bodies were borrowed by the store and the fan-out until now). */
void
chatter__answer_batch(chatter *c, struct batch *b, size_t nfans)
{
	c->router->ops->reply(c->router, b->replies, b->nrep);
	if (nfans > 0) {
		c->router->ops->deliver(c->router, c->fans, nfans);
	}
	b->npend = 0;
	b->arena_used = 0;
	b->nmsgs = 0;
	b->nrep = 0;
}

int
chatter__batch_init(struct batch *b, size_t mb, size_t arena_cap)
{
	b->pend = calloc(mb, sizeof(*b->pend));
	b->msgs = calloc(mb, sizeof(*b->msgs));
	b->msg_group = calloc(mb, sizeof(*b->msg_group));
	b->msg_pend = calloc(mb, sizeof(*b->msg_pend));
	b->res = calloc(mb, sizeof(*b->res));
	b->fences = calloc(mb, sizeof(*b->fences));
	b->touched = calloc(mb, sizeof(*b->touched));
	b->replies = calloc(mb, sizeof(*b->replies));
	/* malloc, not calloc: pages a batch never reaches stay unmapped. */
	b->arena = malloc(arena_cap);
	if (b->pend == NULL || b->msgs == NULL || b->msg_group == NULL ||
	    b->msg_pend == NULL || b->res == NULL || b->fences == NULL ||
	    b->touched == NULL || b->replies == NULL || b->arena == NULL) {
		return IM_ENOMEM;
	}
	return IM_OK;
}

void
chatter__batch_finish(struct batch *b)
{
	free(b->pend);
	free(b->msgs);
	free(b->msg_group);
	free(b->msg_pend);
	free(b->res);
	free(b->fences);
	free(b->touched);
	free(b->replies);
	free(b->arena);
}
