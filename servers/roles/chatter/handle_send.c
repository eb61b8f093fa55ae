/*
 * Send: checked and copied into the gathering batch as it arrives; the
 * group commit (commit.c, batch.c) stores and answers it later in the
 * loop turn. Its own file as the entry of the per-message path.
 */
#include "chatter_priv.h"

#include <string.h>

/* Queue a send for the loop turn's group commit (its body copied into
 * the batch's arena), or answer it now when it cannot be queued. */
void
chatter__queue_send(chatter *c, const role_op *op)
{
	struct batch *b;
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
	if (c->gather == NULL) {
		/* Only while answering a batch: a reentrant submit. */
		role_reply r;

		memset(&r, 0, sizeof(r));
		r.route = op->route;
		r.kind = ROLE_OP_SEND;
		r.code = ROLE_ERR_UNAVAILABLE;
		r.text = im_code_text(ROLE_ERR_UNAVAILABLE);
		r.group = op->group;
		r.dedup_id = op->dedup_id;
		c->router->ops->reply(c->router, &r, 1);
		return;
	}
	b = c->gather;
	/* A full batch (sends or body bytes) is committed first; with the
	 * commit thread it goes in flight once the one in flight is done,
	 * and this send starts the next batch. */
	if (b->npend == c->opts.max_batch ||
	    c->arena_cap - b->arena_used < op->body_len) {
		chatter__make_room(c);
		b = c->gather;
	}
	p = &b->pend[b->npend];
	memset(p, 0, sizeof(*p));
	if (op->body_len > 0) {
		p->body = b->arena + b->arena_used;
		memcpy(p->body, op->body, op->body_len);
		b->arena_used += op->body_len;
	}
	p->route = op->route;
	p->sender = op->user;
	p->gid = op->group;
	p->dedup_id = op->dedup_id;
	p->reply_to = op->reply_to;
	p->type = op->type;
	p->body_len = op->body_len;
	b->npend++;
}
