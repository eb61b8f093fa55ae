/*
 * Sync: one page of a group's messages (members only) or of the user's
 * own queue, read from the store.
 */
#include <string.h>

#include <pb_decode.h>

#include "connector_int.h"

#define SYNC_MSGS_MAX 12
#define SYNC_EVENTS_MAX 64

struct sync_ctx {
	im_SyncPage *p;
	uint32_t limit;
	im_seq until;
	im_seq prev; /* the user queue's chain: the seq before the next */
};

static int
sync_msg_cb(const im_msg *m, void *payload)
{
	struct sync_ctx *sc = payload;
	im_Deliver *d;

	if (sc->p->msgs_count == sc->limit) {
		sc->p->more = true;
		return 1;
	}
	d = &sc->p->msgs[sc->p->msgs_count++];
	memset(d, 0, sizeof(*d));
	conn__fill_deliver(d, m);
	return 0;
}

static int
sync_uq_cb(const im_uq_item *item, void *payload)
{
	struct sync_ctx *sc = payload;
	im_UserEvent *ev;
	pb_istream_t is;

	if (sc->until != 0 && item->seq > sc->until) {
		return 1;
	}
	if (sc->p->events_count == sc->limit) {
		sc->p->more = true;
		return 1;
	}
	ev = &sc->p->events[sc->p->events_count];
	memset(ev, 0, sizeof(*ev));
	is = pb_istream_from_buffer(item->body, item->body_len);
	if (!pb_decode(&is, im_UserEvent_fields, ev)) {
		memset(ev, 0, sizeof(*ev));
	}
	ev->seq = item->seq;
	ev->prev_seq = sc->prev;
	sc->prev = item->seq;
	ev->time_ms = ev->time_ms ? ev->time_ms : item->time_ms;
	sc->p->events_count++;
	return 0;
}

void
conn__handle_sync(struct conn *c, uint64_t req_id, const im_Sync *sy)
{
	connector *cn = c->cn;
	struct sync_ctx sc;
	int rc;

	memset(cn->page, 0, sizeof(*cn->page));
	cn->page->group = sy->group;
	sc.p = cn->page;
	sc.until = sy->until;
	sc.prev = sy->after; /* the first event read follows `after` */
	if (sy->group == 0) {
		sc.limit = sy->limit == 0 || sy->limit > SYNC_EVENTS_MAX
		                   ? SYNC_EVENTS_MAX
		                   : sy->limit;
		/* One more than the page to learn whether there is more. */
		rc = im_store_uq_read(cn->st, c->uid, sy->after, sc.limit + 1,
		                      sync_uq_cb, &sc);
	} else {
		if (!conn__is_member(c, sy->group)) {
			conn__error(c, req_id, im_Code_ERR_NOT_MEMBER,
			            "not a member of the group", sy->group, 0);
			return;
		}
		if (sy->until != 0 && sy->until <= sy->after) {
			conn__send(c, req_id, im_Envelope_sync_page_tag,
			           im_SyncPage_fields, cn->page);
			return;
		}
		sc.limit = sy->limit == 0 || sy->limit > SYNC_MSGS_MAX
		                   ? SYNC_MSGS_MAX
		                   : sy->limit;
		rc = im_store_msg_read(cn->st, sy->group, sy->after,
		                       sy->until ? sy->until : IM_SEQ_MAX,
		                       sc.limit + 1, sync_msg_cb, &sc);
	}
	if (rc < 0) {
		conn__error(c, req_id, im_Code_ERR_UNAVAILABLE,
		            "store unavailable", sy->group, 0);
		return;
	}
	conn__send(c, req_id, im_Envelope_sync_page_tag, im_SyncPage_fields,
	           cn->page);
}
