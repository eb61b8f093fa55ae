/*
 * Client core: the outbox. A send keeps its dedup id from the moment it is
 * queued until the server acks or refuses it; every try (after a
 * reconnect, after ERR_UNAVAILABLE, after the answer deadline) carries the
 * same id, so the server stores it once (design.md, exactly-once send).
 * Separate from the session because this is the rule a port must copy
 * exactly.
 */
#include "core.h"
#include "internal.h"

#include <string.h>

static void
obox_remove(im__cc *cc, size_t pos)
{
	uint32_t slot = cc->oorder[pos];

	cc->oused[slot] = false;
	memmove(&cc->oorder[pos], &cc->oorder[pos + 1],
	        (cc->nobox - pos - 1) * sizeof(cc->oorder[0]));
	cc->nobox--;
}

static bool
obox_find_req(const im__cc *cc, uint64_t req_id, size_t *pos_out)
{
	size_t i;

	if (req_id == 0) {
		return false;
	}
	for (i = 0; i < cc->nobox; i++) {
		if (cc->obox[cc->oorder[i]].req_id == req_id) {
			*pos_out = i;
			return true;
		}
	}
	return false;
}

static bool
obox_find_dedup(const im__cc *cc, im_gid group, uint64_t dedup_id,
                size_t *pos_out)
{
	size_t i;

	for (i = 0; i < cc->nobox; i++) {
		const struct im__cc_obox *o = &cc->obox[cc->oorder[i]];

		if (o->group == group && o->dedup_id == dedup_id) {
			*pos_out = i;
			return true;
		}
	}
	return false;
}

/* A send answered for good (acked or refused): out of the outbox, and
 * the blocking helper waiting for it is done. */
static void
obox_done(im__cc *cc, size_t pos, int err, im_seq seq)
{
	uint64_t dd = cc->obox[cc->oorder[pos]].dedup_id;

	obox_remove(cc, pos);
	if (cc->wait.dedup != 0 && cc->wait.dedup == dd) {
		cc->wait.done = true;
		cc->wait.err = err;
		if (err == IM_OK) {
			cc->wait.seq = seq;
		}
	}
}

int
im__cc_send(im__cc *cc, uint64_t now_ms, im_gid group, const void *body,
            size_t len, im_seq reply_to, uint32_t type, uint64_t dedup_id,
            uint64_t *dedup_out)
{
	struct im__cc_obox *o;
	uint32_t slot;

	if (group == 0 || (body == NULL && len > 0)) {
		return IM_EINVAL;
	}
	if (len > IM_CLIENT_BODY_MAX) {
		return IM_ETOOBIG; /* the server's limit: it would refuse it */
	}
	if (cc->nobox >= cc->max_outbox) {
		return IM_EFULL;
	}
	cc->now = now_ms;
	for (slot = 0; cc->oused[slot]; slot++) {
	}
	while (dedup_id == 0) {
		dedup_id = im__cc_rng(cc);
	}
	o = &cc->obox[slot];
	o->group = group;
	o->dedup_id = dedup_id;
	o->reply_to = reply_to;
	o->type = type;
	o->len = (uint32_t)len;
	o->req_id = 0;
	if (len > 0) {
		memcpy(o->body, body, len);
	}
	cc->oused[slot] = true;
	cc->oorder[cc->nobox++] = slot;
	if (dedup_out != NULL) {
		*dedup_out = dedup_id;
	}
	im__cc_pump(cc);
	return IM_OK;
}

/* Send every queued send not on this connection yet, in queue order,
 * then every create (creates.c), while the output has room (the driver's
 * drain pumps again). */
void
im__cc_pump(im__cc *cc)
{
	size_t i;

	if (cc->state != IM_CLIENT_CONNECTED) {
		return;
	}
	for (i = 0; i < cc->nobox; i++) {
		struct im__cc_obox *o = &cc->obox[cc->oorder[i]];
		im_Envelope *e;
		uint64_t req;

		if (o->req_id != 0) {
			continue;
		}
		req = im__cc_new_req(cc);
		e = im__cc_env(cc, req, im_Envelope_send_tag);
		e->msg.send.group = o->group;
		e->msg.send.dedup_id = o->dedup_id;
		e->msg.send.reply_to = o->reply_to;
		e->msg.send.type = o->type;
		e->msg.send.body.size = (pb_size_t)o->len;
		memcpy(e->msg.send.body.bytes, o->body, o->len);
		if (im__cc_put(cc, e) != IM_OK) {
			break;
		}
		o->req_id = req;
		o->sent_at = cc->now;
		im__cc_answer_arm(cc);
	}
	im__cc_creates_pump(cc);
}

void
im__cc_send_ack(im__cc *cc, uint64_t req_id, const im_SendAck *a)
{
	size_t pos;
	bool found = obox_find_req(cc, req_id, &pos);

	if (!found) {
		/* A late ack of an earlier try (an earlier connection's, or
		 * one sent again after the deadline). */
		found = obox_find_dedup(cc, a->group, a->dedup_id, &pos);
	}
	if (!found) {
		return; /* acked already: on_ack ran once */
	}
	obox_done(cc, pos, IM_OK, a->seq);
	if (cc->cb.on_ack != NULL) {
		cc->cb.on_ack(cc->handle, a->group, a->dedup_id, a->seq, a->dup,
		              cc->payload);
	}
	im__cc_pump(cc);
}

/* An Error for a send: refused for good (on_error with its group and
 * dedup id), or outcome unknown (ERR_UNAVAILABLE, or OK without an ack):
 * tried again after backoff_min with the same dedup id. false: the
 * Error is not about a send in the outbox. */
bool
im__cc_outbox_error(im__cc *cc, uint64_t req_id, const im_Error *er)
{
	bool unknown =
	        er->code == im_Code_ERR_UNAVAILABLE || er->code == im_Code_OK;
	struct im__cc_obox *o;
	size_t pos;
	im_gid g;
	uint64_t dd;

	if (!obox_find_req(cc, req_id, &pos)) {
		if (er->dedup_id == 0 ||
		    !obox_find_dedup(cc, er->group, er->dedup_id, &pos)) {
			return false;
		}
		/* The answer of an earlier try of a send still queued (it
		 * was sent again after the deadline): when its outcome is
		 * unknown the later try is in flight or queued. */
		if (unknown) {
			return true;
		}
	}
	o = &cc->obox[cc->oorder[pos]];
	if (unknown) {
		o->req_id = 0;
		if (cc->due[IM__CC_T_RESEND] == IM__CC_NEVER) {
			im__cc_timer_set(cc, IM__CC_T_RESEND,
			                 cc->now + cc->backoff_min);
		}
		return true;
	}
	g = o->group;
	dd = o->dedup_id;
	obox_done(cc, pos, im_code_to_err((uint32_t)er->code), 0);
	im__cc_report(cc, im_code_to_err((uint32_t)er->code),
	              (uint32_t)er->code, req_id, g, dd, er->text);
	im__cc_pump(cc);
	return true;
}

/* The connection is gone: every send goes again on the next one. */
void
im__cc_outbox_unsent(im__cc *cc)
{
	size_t i;

	for (i = 0; i < cc->nobox; i++) {
		cc->obox[cc->oorder[i]].req_id = 0;
	}
}

/* The answer deadline: sends not answered within send_timeout go again
 * (true: some do). *next is lowered to the earliest deadline still
 * ahead, *waiting set when there is one. */
bool
im__cc_outbox_expire(im__cc *cc, uint64_t *next, bool *waiting)
{
	uint64_t to = cc->send_timeout_ms;
	bool resend = false;
	size_t i;

	for (i = 0; i < cc->nobox; i++) {
		struct im__cc_obox *o = &cc->obox[cc->oorder[i]];

		if (o->req_id == 0) {
			continue;
		}
		if (o->sent_at + to <= cc->now) {
			o->req_id = 0;
			cc->resends++;
			resend = true;
		} else {
			*waiting = true;
			*next = IM__MIN(*next, o->sent_at + to);
		}
	}
	return resend;
}

size_t
im__cc_outbox_count(const im__cc *cc)
{
	return cc->nobox;
}
