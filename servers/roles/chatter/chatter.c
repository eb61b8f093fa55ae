/*
 * The Chatter's entry points: create/destroy, and chatter_submit routing
 * each request to its handler (handle_*.c). See chatter_priv.h for how the
 * pieces fit.
 */
#include "chatter_priv.h"

#include <stdlib.h>
#include <string.h>

void
chatter__reply_one(chatter *c, const role_op *op, int code, const char *text,
                   im_gid gid)
{
	role_reply r;

	memset(&r, 0, sizeof(r));
	r.route = op->route;
	r.kind = op->kind;
	r.code = code;
	r.text = text;
	r.group = gid;
	r.dedup_id = op->dedup_id; /* a send's or a create's key */
	c->router->ops->reply(c->router, &r, 1);
}

void
chatter_submit(chatter *c, const role_op *ops, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const role_op *op = &ops[i];

		switch (op->kind) {
		case ROLE_OP_SEND:
			chatter__queue_send(c, op);
			break;
		case ROLE_OP_CREATE_GROUP:
			/* Committed with the turn's other creations. */
			chatter__queue_create(c, op);
			break;
		case ROLE_OP_ADD_MEMBER:
		case ROLE_OP_REMOVE_MEMBER:
			chatter_flush(c);
			chatter__do_member(c, op);
			break;
		default:
			chatter__reply_one(c, op, ROLE_ERR_BAD_REQUEST,
			                   "unknown op", op->group);
			break;
		}
	}
}

void
chatter_get_stats(const chatter *c, chatter_stats *out)
{
	*out = c->stats;
	out->groups = c->ngroups;
	out->full_lines = c->full.lines;
}

/* The hash table and every bound fixed at create: nothing on the message
 * path allocates. */
static int
alloc_bufs(chatter *c)
{
	size_t mb = c->opts.max_batch;

	c->arena_cap = mb * IM_MSG_BODY_MAX;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	c->fan_msgs = calloc(mb, sizeof(*c->fan_msgs));
	c->fans = calloc(mb, sizeof(*c->fans));
	c->fan_count = calloc(mb, sizeof(*c->fan_count));
	c->cpend = calloc(CREATE_BATCH_MAX, sizeof(*c->cpend));
	c->cnew = calloc(CREATE_BATCH_MAX, sizeof(*c->cnew));
	c->cidx = calloc(CREATE_BATCH_MAX, sizeof(*c->cidx));
	c->ckeys = calloc(CREATE_BATCH_MAX, sizeof(*c->ckeys));
	c->cmade = calloc(CREATE_BATCH_MAX, sizeof(*c->cmade));
	c->cfences = calloc(CREATE_BATCH_MAX, sizeof(*c->cfences));
	c->creplies = calloc(CREATE_BATCH_MAX, sizeof(*c->creplies));
	c->cevs = malloc((size_t)CREATE_BATCH_MAX *
	                 (ROLE_CREATE_MEMBERS_MAX + 1) * sizeof(*c->cevs));
	if (c->buckets == NULL || c->fan_msgs == NULL || c->fans == NULL ||
	    c->fan_count == NULL || c->cpend == NULL || c->cnew == NULL ||
	    c->cidx == NULL || c->cfences == NULL || c->creplies == NULL ||
	    c->ckeys == NULL || c->cmade == NULL ||
	    c->cevs == NULL ||
	    chatter__batch_init(&c->bufs[0], mb, c->arena_cap) != IM_OK ||
	    (c->threaded &&
	     chatter__batch_init(&c->bufs[1], mb, c->arena_cap) != IM_OK)) {
		return IM_ENOMEM;
	}
	return IM_OK;
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
	int rc;

	if (out == NULL || loop == NULL || st == NULL || map == NULL ||
	    node == NULL || router == NULL) {
		return IM_EINVAL;
	}
	if (opts != NULL) {
		o = *opts;
	}
	if (o.max_groups == 0 || o.max_batch == 0 || o.seq_step == 0 ||
	    o.gid_step == 0 || o.max_members == 0 || o.dedup_capacity == 0 ||
	    (o.commit_store != NULL && o.commit_store == st)) {
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
	c->pin_gen = UINT64_MAX;
	/* Without a second handle the thread would race the loop's store
	 * calls: commit on the loop then. */
	c->threaded = o.commit_thread && o.commit_store != NULL;
	c->cst = o.commit_store;
	while (nb < o.max_groups && nb < (1u << 20)) {
		nb <<= 1;
	}
	c->nbuckets = nb;
	if (alloc_bufs(c) != IM_OK) {
		rc = IM_ENOMEM;
		goto fail;
	}
	c->gather = &c->bufs[0];
#ifdef IM_TEST_HOOKS
	chatter__test_hold_init(&c->hold);
#endif
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
	rc = chatter__pipeline_start(c);
	if (rc != IM_OK) {
		goto fail;
	}
	chatter__idle_start(c);
	LOG_D("chatter: commits on %s",
	      c->threaded ? "a thread of its own" : "the loop thread");
	*out = c;
	return IM_OK;
fail:
	chatter_destroy(c);
	return rc;
}

void
chatter_destroy(chatter *c)
{
	if (c == NULL) {
		return;
	}
	chatter__pipeline_stop(c);
	chatter__idle_stop(c);
	if (c->buckets != NULL) {
		chatter__groups_clear(c);
	}
	im_idseg_finish(&c->gids);
	im_dedup_destroy(c->dedup);
	free(c->buckets);
	chatter__batch_finish(&c->bufs[0]);
	chatter__batch_finish(&c->bufs[1]);
	free(c->fan_msgs);
	free(c->fans);
	free(c->fan_count);
	free(c->cpend);
	free(c->cnew);
	free(c->cidx);
	free(c->ckeys);
	free(c->cmade);
	free(c->cfences);
	free(c->creplies);
	free(c->cevs);
	free(c);
}
