/*
 * Client core: CreateGroups until answered. Each create gets a dedup id
 * (its create key) when it is made and keeps it until the server answers
 * GroupCreated or refuses it for good; every try (after a reconnect, after
 * ERR_UNAVAILABLE, after the answer deadline) carries the same key, so the
 * server makes one group and answers a retry with that group (dup). The
 * same rule as the outbox (outbox.c) has for sends; a table of its own
 * because a create is a request answered through on_reply, not a send.
 * Bounded: IM_CLIENT_CREATES_MAX creates pending, more is IM_EFULL.
 */
#include "core.h"
#include "internal.h"

#include <stdio.h>
#include <string.h>

static struct im__cc_create *
create_find(im__cc *cc, uint64_t req_id, uint64_t dedup_id)
{
	size_t i;

	for (i = 0; i < IM_CLIENT_CREATES_MAX; i++) {
		struct im__cc_create *k = &cc->creates[i];

		if (k->user_req != 0 &&
		    ((req_id != 0 && k->req_id == req_id) ||
		     (dedup_id != 0 && k->dedup_id == dedup_id))) {
			return k;
		}
	}
	return NULL;
}

int
im__cc_create_group(im__cc *cc, uint64_t now_ms, const char *name,
                    const im_uid *members, size_t n, uint64_t *req_out)
{
	struct im__cc_create *k = NULL;
	size_t i;

	if (name == NULL || strlen(name) > IM_CLIENT_NAME_MAX ||
	    n > IM__CC_CREATE_MEMBERS_MAX || (members == NULL && n > 0)) {
		return IM_EINVAL;
	}
	for (i = 0; i < n; i++) {
		if (members[i] == 0) {
			return IM_EINVAL;
		}
	}
	cc->now = now_ms;
	if (cc->state != IM_CLIENT_CONNECTED) {
		return IM_EAGAIN;
	}
	for (i = 0; i < IM_CLIENT_CREATES_MAX && k == NULL; i++) {
		if (cc->creates[i].user_req == 0) {
			k = &cc->creates[i];
		}
	}
	if (k == NULL) {
		return IM_EFULL; /* IM_CLIENT_CREATES_MAX unanswered */
	}
	memset(k, 0, sizeof(*k));
	while (k->dedup_id == 0 || create_find(cc, 0, k->dedup_id) != NULL) {
		k->dedup_id = im__cc_rng(cc);
	}
	k->user_req = im__cc_new_req(cc);
	snprintf(k->name, sizeof(k->name), "%s", name);
	if (n > 0) {
		memcpy(k->members, members, n * sizeof(members[0]));
	}
	k->nmembers = (uint32_t)n;
	if (req_out != NULL) {
		*req_out = k->user_req;
	}
	im__cc_pump(cc);
	return IM_OK;
}

/* Send every create not on this connection yet, while the output has
 * room (the driver's drain pumps again). */
void
im__cc_creates_pump(im__cc *cc)
{
	size_t i;

	if (cc->state != IM_CLIENT_CONNECTED) {
		return;
	}
	for (i = 0; i < IM_CLIENT_CREATES_MAX; i++) {
		struct im__cc_create *k = &cc->creates[i];
		im_CreateGroup *cg;
		im_Envelope *e;
		uint64_t req;

		if (k->user_req == 0 || k->req_id != 0) {
			continue;
		}
		req = im__cc_new_req(cc);
		e = im__cc_env(cc, req, im_Envelope_create_group_tag);
		cg = &e->msg.create_group;
		snprintf(cg->name, sizeof(cg->name), "%s", k->name);
		memcpy(cg->members, k->members,
		       k->nmembers * sizeof(k->members[0]));
		cg->members_count = (pb_size_t)k->nmembers;
		cg->dedup_id = k->dedup_id;
		if (im__cc_put(cc, e) != IM_OK) {
			break;
		}
		k->req_id = req;
		k->sent_at = cc->now;
		im__cc_answer_arm(cc);
	}
}

/* GroupCreated: the answer of this try, or a late one of an earlier try
 * (found by its key). false: no create waits for it (answered already). */
bool
im__cc_creates_reply(im__cc *cc, uint64_t req_id, const im_GroupCreated *gc)
{
	struct im__cc_create *k = create_find(cc, req_id, gc->dedup_id);
	struct im__cc_conv *c;
	im_client_reply r;

	if (k == NULL) {
		return false;
	}
	memset(&r, 0, sizeof(r));
	r.kind = IM_CLIENT_REPLY_CREATED;
	r.req_id = k->user_req;
	r.group = gc->group;
	r.dedup_id = k->dedup_id;
	r.dup = gc->dup;
	k->user_req = 0;
	/* The creator is in it from now on; a group made by this answer
	 * starts empty, so its chain is known from 0 (a dup's group may have
	 * messages already: learnt as for any group). */
	c = gc->dup ? NULL : im__cc_conv_get(cc, gc->group);
	if (c != NULL && !c->known && im__cc_conv_last(cc, c->group) == 0) {
		c->known = true;
	}
	im__cc_emit_reply(cc, &r);
	return true;
}

/* An Error for a create: refused for good (on_reply with ERROR), or
 * outcome unknown (ERR_UNAVAILABLE): tried again after backoff_min with
 * the same key. The Error of an earlier try is found by its key: unknown,
 * it is ignored (the later try is in flight or queued). false: not about
 * a pending create. */
bool
im__cc_creates_error(im__cc *cc, uint64_t req_id, const im_Error *er)
{
	bool unknown =
	        er->code == im_Code_ERR_UNAVAILABLE || er->code == im_Code_OK;
	struct im__cc_create *k = create_find(cc, req_id, 0);
	im_client_reply r;

	if (k == NULL) {
		k = er->dedup_id != 0 ? create_find(cc, 0, er->dedup_id) : NULL;
		if (k == NULL || unknown) {
			return k != NULL;
		}
	}
	if (unknown) {
		k->req_id = 0;
		if (cc->due[IM__CC_T_RESEND] == IM__CC_NEVER) {
			im__cc_timer_set(cc, IM__CC_T_RESEND,
			                 cc->now + cc->backoff_min);
		}
		return true;
	}
	memset(&r, 0, sizeof(r));
	r.kind = IM_CLIENT_REPLY_ERROR;
	r.req_id = k->user_req;
	r.err = im_code_to_err((uint32_t)er->code);
	r.server_code = (uint32_t)er->code;
	r.text = er->text;
	r.dedup_id = k->dedup_id;
	k->user_req = 0;
	im__cc_emit_reply(cc, &r);
	return true;
}

/* The connection is gone: every create goes again on the next one. */
void
im__cc_creates_unsent(im__cc *cc)
{
	size_t i;

	for (i = 0; i < IM_CLIENT_CREATES_MAX; i++) {
		cc->creates[i].req_id = 0;
	}
}

/* The answer deadline: creates not answered within send_timeout go again
 * with their key (true: some do); *next and *waiting as the outbox's. */
bool
im__cc_creates_expire(im__cc *cc, uint64_t *next, bool *waiting)
{
	uint64_t to = cc->send_timeout_ms;
	bool resend = false;
	size_t i;

	for (i = 0; i < IM_CLIENT_CREATES_MAX; i++) {
		struct im__cc_create *k = &cc->creates[i];

		if (k->user_req == 0 || k->req_id == 0) {
			continue;
		}
		if (k->sent_at + to <= cc->now) {
			k->req_id = 0;
			cc->resends++;
			resend = true;
		} else {
			*waiting = true;
			*next = IM__MIN(*next, k->sent_at + to);
		}
	}
	return resend;
}

size_t
im__cc_creates_count(const im__cc *cc)
{
	size_t i, n = 0;

	for (i = 0; i < IM_CLIENT_CREATES_MAX; i++) {
		n += cc->creates[i].user_req != 0;
	}
	return n;
}
