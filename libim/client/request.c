/*
 * Client core: requests in flight (login, resume, gap repairs, history
 * syncs and the application's requests) in a bounded table keyed by
 * req_id, their replies, and the answer deadline they share with the
 * outbox and the creates. A request is never repeated by the client
 * except a gap repair, which is a read (a CreateGroup is, with its key:
 * creates.c).
 */
#include "core.h"
#include "internal.h"

#include <stdio.h>
#include <string.h>

uint64_t
im__cc_new_req(im__cc *cc)
{
	return ++cc->next_req;
}

/* Arm the answer deadline unless it is armed: an armed one is due no
 * later than anything sent now (its due time is at most now + timeout). */
void
im__cc_answer_arm(im__cc *cc)
{
	if (cc->send_timeout_ms == 0 ||
	    cc->due[IM__CC_T_ANSWER] != IM__CC_NEVER) {
		return;
	}
	im__cc_timer_set(cc, IM__CC_T_ANSWER, cc->now + cc->send_timeout_ms);
}

struct im__cc_pending *
im__cc_pend_new(im__cc *cc, enum im__cc_pkind kind)
{
	size_t i;

	for (i = 0; i < cc->max_pending; i++) {
		struct im__cc_pending *p = &cc->pend[i];

		if (p->kind == P_FREE) {
			memset(p, 0, sizeof(*p));
			p->kind = kind;
			p->req_id = im__cc_new_req(cc);
			p->user_req = p->req_id;
			p->sent_at = cc->now;
			im__cc_answer_arm(cc);
			return p;
		}
	}
	return NULL;
}

struct im__cc_pending *
im__cc_pend_find(im__cc *cc, uint64_t req_id)
{
	size_t i;

	if (req_id == 0) {
		return NULL;
	}
	for (i = 0; i < cc->max_pending; i++) {
		if (cc->pend[i].kind != P_FREE &&
		    cc->pend[i].req_id == req_id) {
			return &cc->pend[i];
		}
	}
	return NULL;
}

void
im__cc_emit_reply(im__cc *cc, im_client_reply *r)
{
	if (r->text == NULL) {
		r->text = "";
	}
	if (cc->wait.req != 0 && r->req_id == cc->wait.req) {
		cc->wait.done = true;
		cc->wait.err = r->err;
	}
	if (cc->cb.on_reply != NULL) {
		cc->cb.on_reply(cc->handle, r, cc->payload);
	}
}

static void
reply_error(im__cc *cc, uint64_t user_req, int err, const char *text)
{
	im_client_reply r;

	memset(&r, 0, sizeof(r));
	r.kind = IM_CLIENT_REPLY_ERROR;
	r.req_id = user_req;
	r.err = err;
	r.text = text;
	im__cc_emit_reply(cc, &r);
}

/* Ask the server for (after, until] of a group (0 = the user queue). */
int
im__cc_send_sync(im__cc *cc, struct im__cc_pending *p, im_seq after)
{
	im_Envelope *e = im__cc_env(cc, p->req_id, im_Envelope_sync_tag);

	p->sent_at = cc->now;
	e->msg.sync.group = p->group;
	e->msg.sync.after = after;
	e->msg.sync.until = p->until;
	e->msg.sync.limit = IM__CC_SYNC_PAGE_LIMIT;
	return im__cc_put(cc, e);
}

/* Members, Pong: the answer of the request it names (GroupCreated:
 * creates.c). */
void
im__cc_req_reply(im__cc *cc, const im_Envelope *e)
{
	struct im__cc_pending *p = im__cc_pend_find(cc, e->req_id);
	im_client_reply r;

	if (p == NULL) {
		return;
	}
	p->kind = P_FREE;
	memset(&r, 0, sizeof(r));
	r.req_id = p->user_req;
	if (e->which_msg == im_Envelope_members_tag) {
		r.kind = IM_CLIENT_REPLY_MEMBERS;
		r.group = e->msg.members.group;
		r.users = e->msg.members.users;
		r.nusers = e->msg.members.users_count;
		r.more = e->msg.members.more;
	} else {
		r.kind = IM_CLIENT_REPLY_PONG;
		r.server_time_ms = e->msg.pong.server_time_ms;
	}
	im__cc_emit_reply(cc, &r);
}

/* An Error{OK} for a mark read: the EV_READ echo comes later; when the
 * read reached the last message its ordinal is known already. */
static void
read_done(im__cc *cc, const struct im__cc_pending *p)
{
	im_seq last = im__cc_conv_last(cc, p->group);

	/* The list moves a read at or past its last to its last (whose
	 * ordinal it knows); one before waits for the echo's ordinal. */
	if (last != 0 && p->until >= last) {
		(void)im_convlist_read(cc->list, p->group, last, 0, NULL);
	}
}

/* An Error (OK included) answering a request other than login/resume. */
void
im__cc_req_error(im__cc *cc, struct im__cc_pending *p, const im_Error *er)
{
	enum im__cc_pkind k = p->kind;
	int err = im_code_to_err((uint32_t)er->code);
	im_client_reply r;

	p->kind = P_FREE;
	if (k == P_REPAIR) {
		im__cc_repair_end(cc, p->group,
		                  er->code == im_Code_ERR_NOT_MEMBER);
		im__cc_report(cc, err, (uint32_t)er->code, p->req_id, p->group,
		              0, er->text);
		return;
	}
	memset(&r, 0, sizeof(r));
	r.req_id = p->user_req;
	r.group = p->group;
	r.server_code = (uint32_t)er->code;
	r.text = er->text;
	if (er->code == im_Code_OK && k == P_READ) {
		read_done(cc, p);
	}
	if (er->code == im_Code_OK) {
		r.kind = k == P_HIST ? IM_CLIENT_REPLY_SYNCED
		                     : IM_CLIENT_REPLY_DONE;
	} else {
		r.kind = IM_CLIENT_REPLY_ERROR;
		r.err = err;
	}
	im__cc_emit_reply(cc, &r);
}

static bool
is_user_request(enum im__cc_pkind k)
{
	return k == P_HIST || k == P_DONE || k == P_READ ||
	       k == P_MEMBERS || k == P_PING;
}

/* The connection is gone: the caller's requests are answered as
 * unavailable (outcome unknown); login, resume and repairs just end. */
void
im__cc_req_drop(im__cc *cc)
{
	size_t i;

	for (i = 0; i < cc->max_pending; i++) {
		struct im__cc_pending *p = &cc->pend[i];
		enum im__cc_pkind k = p->kind;

		p->kind = P_FREE;
		if (is_user_request(k)) {
			reply_error(cc, p->user_req, IM_EUNAVAIL,
			            "connection lost");
		}
	}
}

/* Requests past the answer deadline: a repair is asked again, the
 * caller's requests are answered IM_EUNAVAIL. */
static void
req_expire(im__cc *cc, uint64_t *next, bool *waiting)
{
	uint64_t to = cc->send_timeout_ms, gen = cc->gen;
	size_t i;

	for (i = 0; i < cc->max_pending && cc->gen == gen; i++) {
		struct im__cc_pending *p = &cc->pend[i];
		enum im__cc_pkind k = p->kind;

		if (k == P_FREE || k == P_LOGIN || k == P_RESUME) {
			continue; /* login has its own deadline */
		}
		if (p->sent_at + to > cc->now) {
			*waiting = true;
			*next = IM__MIN(*next, p->sent_at + to);
			continue;
		}
		p->kind = P_FREE;
		if (k == P_REPAIR) {
			struct im__cc_conv *c =
			        p->group != 0 ? im__cc_conv_find(cc, p->group)
			                      : NULL;

			if (p->group == 0 || c != NULL) {
				im__cc_repair_end(cc, p->group, false);
				im__cc_repair(cc, c);
			}
		} else {
			reply_error(cc, p->user_req, IM_EUNAVAIL,
			            "request timed out");
		}
	}
}

/*
 * A send or request not answered within send_timeout on a healthy
 * connection: its answer was lost on the server side (a node restarted
 * between the hops, a reply routed to a Connector that just lost the
 * user). A send goes again on this connection with the same dedup id (the
 * server stores it once; a late answer of the first try or the retry's
 * dup=true ack both find it by dedup id, the second finds nothing). A gap
 * repair (a read) is asked again, and so is a CreateGroup, with its key
 * (creates.c). The caller's other requests are not repeated: they are
 * answered with IM_EUNAVAIL, outcome unknown. Then re-armed for the oldest
 * deadline left.
 */
void
im__cc_answer_due(im__cc *cc)
{
	uint64_t to = cc->send_timeout_ms, now = cc->now;
	uint64_t next = now + to, gen = cc->gen;
	bool resend, waiting = false;

	if (cc->state != IM_CLIENT_CONNECTED || !cc->link) {
		return; /* a new connection sends everything again */
	}
	resend = im__cc_outbox_expire(cc, &next, &waiting);
	resend |= im__cc_creates_expire(cc, &next, &waiting);
	req_expire(cc, &next, &waiting);
	if (cc->gen != gen || !cc->link) {
		return; /* a callback closed the connection */
	}
	/* The oldest deadline left is in the future (at least a bit: never
	 * a busy loop); what is resent now arms it again in the pump, due a
	 * full timeout later. Nothing in flight: the timer rests (unless a
	 * repair asked again above armed it). */
	if (waiting) {
		im__cc_timer_set(cc, IM__CC_T_ANSWER,
		                 IM__MAX(next, now + IM__MAX(to / 16, 1)));
	}
	if (resend) {
		im__cc_pump(cc);
	}
}

/* ---- the application's requests ---- */

/* Common head of the request calls: a slot and an envelope. */
static int
req_begin(im__cc *cc, uint64_t now_ms, enum im__cc_pkind kind, pb_size_t which,
          struct im__cc_pending **p_out, im_Envelope **e_out)
{
	struct im__cc_pending *p;

	cc->now = now_ms;
	if (cc->state != IM_CLIENT_CONNECTED) {
		return IM_EAGAIN;
	}
	p = im__cc_pend_new(cc, kind);
	if (p == NULL) {
		return IM_EFULL;
	}
	*p_out = p;
	*e_out = im__cc_env(cc, p->req_id, which);
	return IM_OK;
}

/* Common tail: rc is what putting the request's frame out returned. */
static int
req_end(struct im__cc_pending *p, int rc, uint64_t *req_out)
{
	if (rc != IM_OK) {
		p->kind = P_FREE;
		return rc;
	}
	if (req_out != NULL) {
		*req_out = p->user_req;
	}
	return IM_OK;
}

int
im__cc_member(im__cc *cc, uint64_t now_ms, bool add, im_gid group, im_uid user,
              uint64_t *req_out)
{
	struct im__cc_pending *p;
	im_Envelope *e;
	int rc;

	if (group == 0 || user == 0) {
		return IM_EINVAL;
	}
	rc = req_begin(cc, now_ms, P_DONE,
	               add ? im_Envelope_add_member_tag
	                   : im_Envelope_remove_member_tag,
	               &p, &e);
	if (rc != IM_OK) {
		return rc;
	}
	p->group = group;
	if (add) {
		e->msg.add_member.group = group;
		e->msg.add_member.user = user;
	} else {
		e->msg.remove_member.group = group;
		e->msg.remove_member.user = user;
	}
	return req_end(p, im__cc_put(cc, e), req_out);
}

int
im__cc_list_members(im__cc *cc, uint64_t now_ms, im_gid group,
                    im_uid after_user, uint64_t *req_out)
{
	struct im__cc_pending *p;
	im_Envelope *e;
	int rc;

	if (group == 0) {
		return IM_EINVAL;
	}
	rc = req_begin(cc, now_ms, P_MEMBERS, im_Envelope_list_members_tag, &p,
	               &e);
	if (rc != IM_OK) {
		return rc;
	}
	p->group = group;
	e->msg.list_members.group = group;
	e->msg.list_members.after_user = after_user;
	return req_end(p, im__cc_put(cc, e), req_out);
}

int
im__cc_mark_read(im__cc *cc, uint64_t now_ms, im_gid group, im_seq seq,
                 uint64_t *req_out)
{
	struct im__cc_pending *p;
	im_Envelope *e;
	int rc;

	if (group == 0) {
		return IM_EINVAL;
	}
	if (seq == 0) {
		seq = im__cc_conv_last(cc, group);
		if (seq == 0) {
			return IM_EINVAL;
		}
	}
	rc = req_begin(cc, now_ms, P_READ, im_Envelope_mark_read_tag, &p, &e);
	if (rc != IM_OK) {
		return rc;
	}
	p->group = group;
	p->until = seq;
	e->msg.mark_read.group = group;
	e->msg.mark_read.seq = seq;
	return req_end(p, im__cc_put(cc, e), req_out);
}

int
im__cc_sync(im__cc *cc, uint64_t now_ms, im_gid group, im_seq after,
            im_seq until, uint32_t max_msgs, uint64_t *req_out)
{
	struct im__cc_pending *p;
	im_Envelope *e;
	struct im__cc_conv *c;
	im_client_reply r;
	int rc;

	if (until != 0 && until <= after) {
		return IM_EINVAL;
	}
	rc = req_begin(cc, now_ms, P_HIST, im_Envelope_sync_tag, &p, &e);
	if (rc != IM_OK) {
		return rc;
	}
	c = group != 0 ? im__cc_conv_find(cc, group) : NULL;
	/* Above the cursor is live traffic, not history. */
	if (until == 0 && c != NULL && c->known && c->cursor <= after) {
		/* Nothing to fetch: answered before this returns. */
		p->kind = P_FREE;
		if (req_out != NULL) {
			*req_out = p->user_req;
		}
		memset(&r, 0, sizeof(r));
		r.kind = IM_CLIENT_REPLY_SYNCED;
		r.req_id = p->user_req;
		r.group = group;
		im__cc_emit_reply(cc, &r);
		return IM_OK;
	}
	if (until == 0 && c != NULL && c->known) {
		until = c->cursor;
	}
	p->group = group;
	p->until = until;
	p->left = max_msgs;
	p->limited = max_msgs > 0;
	return req_end(p, im__cc_send_sync(cc, p, after), req_out);
}

int
im__cc_ping(im__cc *cc, uint64_t now_ms, uint64_t *req_out)
{
	struct im__cc_pending *p;
	im_Envelope *e;
	int rc;

	rc = req_begin(cc, now_ms, P_PING, im_Envelope_ping_tag, &p, &e);
	if (rc != IM_OK) {
		return rc;
	}
	e->msg.ping.time_ms = cc->now;
	return req_end(p, im__cc_put(cc, e), req_out);
}
