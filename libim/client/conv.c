/*
 * Client core: the conversations and their cursors. Deliveries and
 * user-queue events go through here: duplicates dropped by cursor, gaps
 * (prev_seq != cursor) repaired by a sync before anything later is shown,
 * the list moved (list.c), acks sent cumulatively up to the cursor once
 * per batch. Kept apart from the session because these are the rules a port
 * must follow exactly (docs/client-state-machine.md).
 */
#include "core.h"
#include "internal.h"

#include <stdio.h>
#include <string.h>

static void
mark_dirty(im__cc *cc, struct im__cc_conv *c)
{
	if (!c->dirty && cc->ndirty < cc->max_convs) {
		c->dirty = true;
		cc->dirty[cc->ndirty++] = c->group;
	}
}

/* A message in the chain (not history): the cursor and the list move. */
static void
advance(im__cc *cc, struct im__cc_conv *c, const im_Deliver *d, bool own)
{
	c->cursor = d->seq;
	c->known = true;
	im__cc_list_deliver(cc, c, d, own);
	mark_dirty(cc, c);
}

static void
apply_msg(im__cc *cc, struct im__cc_conv *c, const im_Deliver *d, bool history)
{
	im_client_msg m;

	m.group = d->group;
	m.seq = d->seq;
	m.prev_seq = d->prev_seq;
	m.ordinal = d->ordinal;
	m.sender = d->sender;
	m.time_ms = d->time_ms;
	m.dedup_id = d->dedup_id;
	m.reply_to = d->reply_to;
	m.type = d->type;
	m.body_len = d->body.size;
	m.body = d->body.bytes;
	m.history = history;
	m.own = d->sender == cc->user && cc->user != 0;
	if (!history && c != NULL) {
		advance(cc, c, d, m.own);
	}
	if (cc->cb.on_deliver != NULL) {
		cc->cb.on_deliver(cc->handle, &m, cc->payload);
	}
}

/* Repairs in flight: at most half the request slots, so that a resume
 * with many groups to catch up leaves the application room. */
static bool
repair_room(const im__cc *cc)
{
	size_t i, n = 0, cap = cc->max_pending / 2;

	for (i = 0; i < cc->max_pending && n < cap; i++) {
		n += cc->pend[i].kind == P_REPAIR;
	}
	return n < cap;
}

/* Ask for what follows the cursor of c (NULL: the user queue). Before the
 * login finished, or with no room for another repair now, it is noted and
 * asked for once connected (became_connected) or once a slot is free
 * (im__cc_repair_next). */
void
im__cc_repair(im__cc *cc, struct im__cc_conv *c)
{
	struct im__cc_pending *p = NULL;
	bool *syncing = c != NULL ? &c->syncing : &cc->uq_syncing;

	if (*syncing) {
		return;
	}
	/* A repair syncs until the server says there is no more: it takes
	 * over from a replay that was cut. */
	if (c != NULL) {
		c->replay_cut = false;
	} else {
		cc->uq_replay_cut = false;
	}
	if (cc->state == IM_CLIENT_CONNECTED && repair_room(cc)) {
		p = im__cc_pend_new(cc, P_REPAIR);
	}
	if (p == NULL) {
		if (c != NULL) {
			c->want_repair = true;
		} else {
			cc->uq_behind = true;
		}
		cc->repairs_waiting = cc->state == IM_CLIENT_CONNECTED;
		return;
	}
	p->group = c != NULL ? c->group : 0;
	if (im__cc_send_sync(cc, p, c != NULL ? c->cursor : cc->uq_cursor) !=
	    IM_OK) {
		p->kind = P_FREE;
		im__cc_conn_lost(cc, IM_EFULL, 0,
		                 "output full during gap repair");
		return;
	}
	*syncing = true;
}

/* Start the repairs that waited for a request slot, as far as there is
 * room; after each batch of input (which is what frees slots). */
void
im__cc_repair_next(im__cc *cc)
{
	uint64_t gen = cc->gen;
	size_t i;

	if (!cc->repairs_waiting || cc->state != IM_CLIENT_CONNECTED) {
		return;
	}
	cc->repairs_waiting = false;
	if (cc->uq_behind) {
		cc->uq_behind = false;
		im__cc_repair(cc, NULL);
	}
	for (i = 0; i < cc->conv_cap && cc->gen == gen && !cc->repairs_waiting;
	     i++) {
		struct im__cc_conv *c = &cc->convs[i];

		if (c->group != 0 && c->want_repair) {
			c->want_repair = false;
			im__cc_repair(cc, c);
		}
	}
}

/* A repair ended without its page (refused, or timed out): live pushes
 * flow again; not_member: the server says we are not in the group. */
void
im__cc_repair_end(im__cc *cc, im_gid group, bool not_member)
{
	struct im__cc_conv *c;

	if (group == 0) {
		cc->uq_syncing = false;
		return;
	}
	c = im__cc_conv_find(cc, group);
	if (c != NULL) {
		c->syncing = false;
		if (not_member) {
			c->member = false;
		}
	}
}

/* Note where the server cut the replay of each cursor (ResumeOk): the
 * client Syncs each from there once the replayed pushes reached it. */
void
im__cc_replay_ends(im__cc *cc, const im_ResumeOk *ok)
{
	pb_size_t i;

	for (i = 0; i < ok->replay_ends_count; i++) {
		const im_Cursor *e = &ok->replay_ends[i];
		struct im__cc_conv *c;

		if (e->group == 0) {
			cc->uq_replay_cut = true;
			cc->uq_replay_end = e->seq;
		} else if ((c = im__cc_conv_find(cc, e->group)) != NULL) {
			c->replay_cut = true;
			c->replay_end = e->seq;
		}
	}
}

/* Did the cut replay of c (NULL: the user queue) reach its end? */
bool
im__cc_replay_reached(const im__cc *cc, const struct im__cc_conv *c)
{
	if (c == NULL) {
		return cc->uq_replay_cut && cc->uq_cursor >= cc->uq_replay_end;
	}
	return c->replay_cut && c->cursor >= c->replay_end;
}

/* After a push: the replay of c is through, the rest comes by Sync. The
 * callback before may have closed the connection (gen moved on). */
static void
replay_check(im__cc *cc, struct im__cc_conv *c, uint64_t gen)
{
	if (cc->gen == gen && im__cc_replay_reached(cc, c)) {
		im__cc_repair(cc, c);
	}
}

void
im__cc_deliver(im__cc *cc, const im_Deliver *d)
{
	/* Looked up (and added) before the checks below, as the client
	 * always did: a Deliver with seq 0 still adds its group. */
	struct im__cc_conv *c = im__cc_conv_get(cc, d->group);
	uint64_t gen = cc->gen;

	if (d->group == 0 || d->seq == 0) {
		return;
	}
	if (c == NULL) {
		/* Over max_convs: still show it, but nothing to dedup by. */
		apply_msg(cc, NULL, d, false);
		return;
	}
	if (c->syncing) {
		return; /* the repair in flight brings it */
	}
	if (c->cursor != 0 && d->seq <= c->cursor) {
		return; /* seen: a replay or a retransmission */
	}
	if (c->known && d->prev_seq != c->cursor) {
		c->gap_seq = d->seq;
		im__cc_repair(cc, c);
		return;
	}
	apply_msg(cc, c, d, false);
	replay_check(cc, c, gen);
}

/* What a user-queue event changes in its conversation. */
static void
event_apply(im__cc *cc, struct im__cc_conv *c, const im_UserEvent *u)
{
	switch (u->type) {
	case im_EventType_EV_GROUP_CREATED:
		if (!c->known && im__cc_conv_last(cc, c->group) == 0) {
			c->known = true; /* a new group starts empty */
		}
		/* fall through */
	case im_EventType_EV_JOINED:
		if (!c->member) {
			/* back after leaving: what happened while away is
			 * not ours, take the chain from here */
			c->known = false;
		}
		if (u->type == im_EventType_EV_JOINED && !c->known &&
		    u->read_seq != 0) {
			/* The join's read pointer is where our chain starts
			 * (the group's last message then): the next push
			 * follows it, or a gap shows. */
			c->cursor = u->read_seq;
			c->known = true;
			im__cc_list_read(cc, c, u->read_seq, u->read_ordinal);
		}
		c->member = true;
		if (u->name[0] != '\0') {
			snprintf(c->name, sizeof(c->name), "%s", u->name);
		}
		break;
	case im_EventType_EV_LEFT:
		c->member = false;
		break;
	case im_EventType_EV_READ:
		im__cc_list_read(cc, c, u->read_seq, u->read_ordinal);
		break;
	default:
		break;
	}
}

void
im__cc_event(im__cc *cc, const im_UserEvent *u, bool repair)
{
	im_client_event ev;
	struct im__cc_conv *c;
	uint64_t gen = cc->gen;
	bool was_known;

	if (u->seq == 0 || (cc->uq_syncing && !repair)) {
		return; /* a repair in flight brings it, in order */
	}
	if (cc->uq_known && u->seq <= cc->uq_cursor) {
		return;
	}
	/* A push whose predecessor is not our cursor: events were missed.
	 * A Sync page's chain is the server's, gap-free; prev_seq 0 is an
	 * older server that does not say. */
	if (!repair && cc->uq_known && u->prev_seq != 0 &&
	    u->prev_seq != cc->uq_cursor) {
		im__cc_repair(cc, NULL);
		return;
	}
	cc->uq_cursor = u->seq;
	cc->uq_known = true;
	cc->uq_dirty = true;
	c = im__cc_conv_get(cc, u->group);
	was_known = c != NULL && c->known;
	if (c != NULL) {
		event_apply(cc, c, u);
	}
	ev.seq = u->seq;
	ev.type = (uint32_t)u->type;
	ev.group = u->group;
	ev.actor = u->actor;
	ev.read_seq = u->read_seq;
	ev.read_ordinal = u->read_ordinal;
	ev.time_ms = u->time_ms;
	ev.name = u->name;
	if (cc->cb.on_event != NULL) {
		cc->cb.on_event(cc->handle, &ev, cc->payload);
	}
	if (c != NULL && cc->gen == gen && !was_known &&
	    (u->type == im_EventType_EV_GROUP_CREATED ||
	     u->type == im_EventType_EV_JOINED) &&
	    (repair || u->seq <= cc->uq_away_until)) {
		/* Created or joined while we were away: its messages since
		 * were pushed to no session of ours and no cursor replays
		 * them (Sync from 0, or from the join's read pointer); a
		 * live creation or join needs nothing (its pushes follow). */
		im__cc_repair(cc, c);
	}
	if (!repair) {
		replay_check(cc, NULL, gen);
	}
}

void
im__cc_conv_info(im__cc *cc, const im_ConvInfo *ci)
{
	struct im__cc_conv *c = im__cc_conv_get(cc, ci->group);

	if (c == NULL) {
		return;
	}
	c->member = true;
	if (!c->known) {
		/* History before login is the caller's to fetch. */
		c->cursor = ci->last_seq;
		c->acked = ci->last_seq;
		c->known = true;
	}
	/* Behind the server's chain: repaired once the login is done. The
	 * server's last seq decides, not the list's (which refuses a row it
	 * cannot count from). */
	if (c->cursor < ci->last_seq) {
		c->want_repair = true;
	}
	im__cc_list_info(cc, c, ci);
	snprintf(c->name, sizeof(c->name), "%s", ci->name);
}

/* The last page of a repair: live pushes flow again. */
static void
repair_done(im__cc *cc, struct im__cc_pending *p, struct im__cc_conv *c)
{
	if (c != NULL) {
		c->syncing = false;
		if (c->cursor < c->gap_seq) {
			/* The repair did not even bring the push that showed
			 * the gap: take the server's chain as it comes rather
			 * than asking forever. */
			c->known = false;
		}
		c->gap_seq = 0;
	}
	if (p->group == 0) {
		cc->uq_syncing = false;
	}
	p->kind = P_FREE;
}

/* The messages of one page; returns the last seq seen (0: none). */
static im_seq
page_msgs(im__cc *cc, struct im__cc_pending *p, struct im__cc_conv *c,
          const im_SyncPage *sp, uint64_t gen)
{
	im_seq last = 0;
	pb_size_t i;

	for (i = 0; i < sp->msgs_count && cc->gen == gen; i++) {
		const im_Deliver *d = &sp->msgs[i];

		last = d->seq;
		if (p->kind == P_HIST) {
			if (p->limited && p->left == 0) {
				break;
			}
			apply_msg(cc, c, d, true);
			if (p->limited) {
				p->left--;
			}
		} else if (c != NULL && d->seq > c->cursor) {
			/* The server's chain is authoritative inside a page:
			 * it starts after our cursor and is gap-free. */
			apply_msg(cc, c, d, false);
		}
	}
	return last;
}

void
im__cc_sync_page(im__cc *cc, struct im__cc_pending *p, const im_SyncPage *sp)
{
	struct im__cc_conv *c =
	        p->group != 0 ? im__cc_conv_find(cc, p->group) : NULL;
	uint64_t gen = cc->gen;
	im_seq last = page_msgs(cc, p, c, sp, gen);
	pb_size_t i;
	im_client_reply r;

	for (i = 0; i < sp->events_count && cc->gen == gen; i++) {
		last = sp->events[i].seq;
		im__cc_event(cc, &sp->events[i], true);
	}
	if (cc->gen != gen) {
		return;
	}
	if (sp->more && last != 0 && !(p->limited && p->left == 0)) {
		p->req_id = im__cc_new_req(cc);
		if (im__cc_send_sync(cc, p, last) != IM_OK) {
			im__cc_conn_lost(cc, IM_EFULL, 0,
			                 "output full during sync");
		}
		return;
	}
	if (p->kind == P_REPAIR) {
		repair_done(cc, p, c);
		return;
	}
	p->kind = P_FREE;
	memset(&r, 0, sizeof(r));
	r.kind = IM_CLIENT_REPLY_SYNCED;
	r.req_id = p->user_req;
	r.group = p->group;
	im__cc_emit_reply(cc, &r);
}

/* A DeliverAck for group up to seq; false: no room in the output now. */
static bool
ack(im__cc *cc, im_gid group, im_seq seq)
{
	im_Envelope *e = im__cc_env(cc, 0, im_Envelope_deliver_ack_tag);

	e->msg.deliver_ack.group = group;
	e->msg.deliver_ack.seq = seq;
	return im__cc_put(cc, e) == IM_OK;
}

/* Acks are cumulative and sent once per batch of input (and again when
 * the output had no room), never per message. */
void
im__cc_flush_acks(im__cc *cc)
{
	size_t i, keep = 0;

	if (cc->state != IM_CLIENT_CONNECTED) {
		return;
	}
	if (cc->uq_dirty && cc->uq_cursor > cc->uq_acked &&
	    ack(cc, 0, cc->uq_cursor)) {
		cc->uq_acked = cc->uq_cursor;
		cc->uq_dirty = false;
	}
	for (i = 0; i < cc->ndirty; i++) {
		struct im__cc_conv *c = im__cc_conv_find(cc, cc->dirty[i]);

		if (c == NULL) {
			continue;
		}
		if (c->cursor > c->acked) {
			if (!ack(cc, c->group, c->cursor)) {
				cc->dirty[keep++] = cc->dirty[i];
				continue;
			}
			c->acked = c->cursor;
		}
		c->dirty = false;
	}
	cc->ndirty = keep;
}

im_seq
im__cc_cursor(const im__cc *cc, im_gid group)
{
	const struct im__cc_conv *c;

	if (group == 0) {
		return cc->uq_cursor;
	}
	c = im__cc_conv_find(cc, group);
	return c != NULL ? c->cursor : 0;
}
