/*
 * The user-event pipeline: events for the users this Connector owns
 * (GroupCreated, Joined, Left, Read) get a seq from the user's queue
 * segment, are appended to the user queues in one fenced transaction per
 * batch, applied to the online users' conversation lists and pushed to
 * their sessions. Events for users owned elsewhere go back to the router.
 *
 * No allocation per call: the scratch (struct uev_scratch) is allocated
 * once at create for UEV_BATCH_MAX events, and a larger call is taken in
 * chunks of that size (connector_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "connector_int.h"

_Static_assert(UEV_BATCH_MAX <= IM_STORE_SEG_MANY_MAX,
               "a chunk's first segments are taken in one call");

size_t
conn__uevent_frame(connector *cn, const im_uq_item *item, im_seq prev_seq)
{
	im_UserEvent ev = im_UserEvent_init_zero;
	pb_istream_t is = pb_istream_from_buffer(item->body, item->body_len);

	if (!pb_decode(&is, im_UserEvent_fields, &ev)) {
		return 0;
	}
	ev.seq = item->seq;
	ev.prev_seq = prev_seq;
	return conn__encode_frame(cn, 0, im_Envelope_user_event_tag,
	                          im_UserEvent_fields, &ev);
}

static void
reload_convs(connector *cn, struct user *u)
{
	if (im_convlist_load(u->convs, cn->st, u->uid) != IM_OK) {
		LOG_W("reloading conversations of %llu: %s",
		      (unsigned long long)u->uid, im_store_errmsg(cn->st));
	}
}

/*
 * A group created with u as a member: its row in the store starts at
 * {0, 0} (created with the group, before any message), so the list takes
 * that row without reading the store. Messages delivered before this event
 * already added the conversation (with the right pointer): leave it.
 */
static bool
add_new_group(struct user *u, im_gid gid)
{
	im_conv_row row;

	if (im_convlist_lookup(u->convs, gid, NULL) == IM_OK) {
		return true;
	}
	memset(&row, 0, sizeof(row));
	row.conv = gid;
	return im_convlist_apply_row(u->convs, &row) == IM_OK;
}

/* Apply a committed user event to the user's in-memory state. */
static void
apply_uevent(connector *cn, struct user *u, const role_uevent *ev)
{
	if (u->convs == NULL) {
		return;
	}
	switch (ev->type) {
	case UEV_GROUP_CREATED:
		if (add_new_group(u, ev->group)) {
			break;
		}
		/* Full or out of memory: reload (it reports why). */
		reload_convs(cn, u);
		break;
	case UEV_JOINED:
		/* Reload: the new conversation's row (read pointer at the
		 * join) comes from the store, the only source of truth. */
		reload_convs(cn, u);
		break;
	case UEV_LEFT:
		(void)im_convlist_remove(u->convs, ev->group);
		break;
	case UEV_READ:
		(void)im_convlist_read(u->convs, ev->group, ev->read_seq,
		                       ev->read_ordinal, NULL);
		break;
	default:
		break;
	}
}

/* Does the map give ev's user to this node? */
static bool
uevent_ours(connector *cn, const role_uevent *ev)
{
	im_shard_entry e = im_shard_get(cn->map, IM_KIND_USER, ev->user);

	return ev->user != 0 && e.epoch != 0 && strcmp(e.owner, cn->node) == 0;
}

/*
 * Take the first user-queue segment of every user of the batch that has
 * none yet in ONE transaction (im_store_seg_take_many), instead of one
 * seg_take (and fsync) per user: a batch of GroupCreated events reaches
 * many offline users at once (a backend without the op gets one seg_take
 * per user from the wrapper). Users it cannot serve (a failure) are left
 * to the per-user refill (uevent_seq).
 */
static void
uq_take_first(connector *cn, struct uev_scratch *sc, const role_uevent *evs,
              size_t n)
{
	size_t i, k = 0;
	int rc;

	for (i = 0; i < n; i++) {
		struct user *u;

		if (!uevent_ours(cn, &evs[i]) ||
		    (u = conn__user_get(cn, evs[i].user)) == NULL ||
		    u->uq_ready || u->uq_taking) {
			continue;
		}
		u->uq_taking = true;
		sc->keys[k].space = IM_SEG_USER_SEQ;
		sc->keys[k].id = u->uid;
		sc->takers[k++] = u;
	}
	if (k == 0) {
		return;
	}
	rc = im_store_seg_take_many(cn->st, sc->keys, k, cn->o.uq_step,
	                            sc->segs);
	for (i = 0; i < k; i++) {
		if (rc == IM_OK &&
		    im_idseg_feed(&sc->takers[i]->uq, &sc->segs[i]) == IM_OK) {
			sc->takers[i]->uq_ready = true;
		}
		sc->takers[i]->uq_taking = false;
	}
	if (rc != IM_OK) {
		LOG_W("user queues: taking %zu segments: %s", k,
		      im_store_errmsg(cn->st));
	}
}

/*
 * Send events for users this Connector does not own back to the router,
 * one hop more, to be routed by a fresher map (the Router reloads its map
 * for a bounced event). Past ROLE_UEVENT_HOPS_MAX they are dropped.
 */
static void
uevents_bounce(connector *cn, role_uevent *evs, size_t n)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		if (evs[i].hops >= ROLE_UEVENT_HOPS_MAX) {
			LOG_W("user event for %llu: no owner agreed on after "
			      "%u hops, dropped",
			      (unsigned long long)evs[i].user, evs[i].hops);
			continue;
		}
		evs[k] = evs[i];
		evs[k].hops++;
		k++;
	}
	if (k > 0) {
		LOG_I("%zu user events for users not owned here sent back "
		      "to be routed again",
		      k);
		cn->router->ops->user_events(cn->router, evs, k);
	}
}

/* The next seq of u's queue. Our first one comes from a fresh segment,
 * above anything an earlier owner of the slot handed out. */
static bool
uevent_seq(connector *cn, struct user *u, im_seq *seq)
{
	if (!u->uq_ready) {
		if (im_idseg_refill(&u->uq, cn->st) != IM_OK) {
			LOG_W("user queue of %llu: %s",
			      (unsigned long long)u->uid,
			      im_store_errmsg(cn->st));
			return false;
		}
		u->uq_ready = true;
	}
	if (im_idseg_next(&u->uq, seq) != IM_OK &&
	    (im_idseg_refill(&u->uq, cn->st) != IM_OK ||
	     im_idseg_next(&u->uq, seq) != IM_OK)) {
		LOG_W("user queue of %llu: no seq: %s",
		      (unsigned long long)u->uid, im_store_errmsg(cn->st));
		return false;
	}
	return true;
}

/* The fence of the user slot of an item, once per slot. */
static void
fence_add(struct uev_scratch *sc, const im_shard_entry *e)
{
	size_t k;

	for (k = 0; k < sc->nfences && sc->fences[k].slot != e->slot; k++) {
	}
	if (k == sc->nfences) {
		sc->fences[k].kind = IM_KIND_USER;
		sc->fences[k].slot = e->slot;
		sc->fences[k].epoch = e->epoch;
		sc->nfences++;
	}
}

/* Encode ev with seq as user-queue item i of the scratch. */
static bool
stage_item(struct uev_scratch *sc, size_t i, const role_uevent *ev, im_seq seq,
           uint64_t now)
{
	im_UserEvent ue = im_UserEvent_init_zero;
	uint8_t *body = sc->bodies + i * UQ_BODY_CAP;
	pb_ostream_t os = pb_ostream_from_buffer(body, UQ_BODY_CAP);

	ue.seq = seq;
	ue.type = (im_EventType)ev->type;
	ue.group = ev->group;
	ue.actor = ev->actor;
	ue.read_seq = ev->read_seq;
	ue.read_ordinal = ev->read_ordinal;
	ue.time_ms = now;
	snprintf(ue.name, sizeof(ue.name), "%s", ev->name);
	if (!pb_encode(&os, im_UserEvent_fields, &ue)) {
		return false;
	}
	sc->items[i].user = ev->user;
	sc->items[i].seq = seq;
	sc->items[i].time_ms = now;
	sc->items[i].type = ev->type;
	sc->items[i].body_len = (uint32_t)os.bytes_written;
	sc->items[i].body = body;
	return true;
}

/*
 * Stage the events of users we own as user-queue items (a seq each, the
 * fences of their slots) and set the others aside in sc->bounce. Returns
 * the number of items; *nbounce gets the number set aside.
 */
static size_t
uevents_stage(connector *cn, struct uev_scratch *sc, const role_uevent *evs,
              size_t n, uint64_t now, size_t *nbounce)
{
	size_t i, nitems = 0;

	sc->nfences = 0;
	*nbounce = 0;
	for (i = 0; i < n; i++) {
		const role_uevent *ev = &evs[i];
		im_shard_entry e;
		struct user *u;
		im_seq seq;

		if (ev->user == 0) {
			continue;
		}
		if (!uevent_ours(cn, ev)) {
			sc->bounce[(*nbounce)++] = *ev;
			continue;
		}
		u = conn__user_get(cn, ev->user);
		if (u == NULL || !uevent_seq(cn, u, &seq) ||
		    !stage_item(sc, nitems, ev, seq, now)) {
			continue;
		}
		sc->users[nitems] = u;
		sc->evidx[nitems] = i;
		e = im_shard_get(cn->map, IM_KIND_USER, ev->user);
		fence_add(sc, &e);
		nitems++;
	}
	return nitems;
}

/* The items are committed: update the users' state and push. */
static void
uevents_publish(connector *cn, struct uev_scratch *sc, const role_uevent *evs,
                size_t nitems, uint64_t now)
{
	size_t i, len;

	for (i = 0; i < nitems; i++) {
		struct user *u = sc->users[i];
		const role_uevent *ev = &evs[sc->evidx[i]];
		/* The chain the client checks: the seq before this one in
		 * the user's queue. Every user with a session is online, so
		 * uq_last is known (conn__user_online); 0 otherwise, which
		 * the client takes as "not said". */
		im_seq prev = u->uq_last_known ? u->uq_last : 0;

		if (u->uq_last_known && sc->items[i].seq > u->uq_last) {
			u->uq_last = sc->items[i].seq;
		}
		if (ev->type == UEV_GROUP_CREATED) {
			conn__name_put(cn, ev->group, ev->name);
		}
		apply_uevent(cn, u, ev);
		len = conn__uevent_frame(cn, &sc->items[i], prev);
		if (len == 0) {
			continue;
		}
		conn__user_push(u, IM_PUSHQ_USERQ, sc->items[i].seq, cn->obuf,
		                (uint32_t)len, now);
	}
}

static void uevents_run(connector *cn, struct uev_scratch *sc,
                        const role_uevent *evs, size_t n, bool retried);

/*
 * The append failed: the segments in use may be behind the store, so the
 * next seq of each user comes from a fresh one. IM_ESTALE (a slot moved
 * under us) on a first try: once more by a fresh map, with the events set
 * aside as well (ours again: appended; moved: sent on). Returns true if
 * the retry took the set-aside events over.
 */
static bool
uevents_failed(connector *cn, struct uev_scratch *sc, const role_uevent *evs,
               size_t nitems, size_t nbounce, int rc, bool retried)
{
	size_t i;

	LOG_W("user events: append of %zu failed: %s (%s)", nitems,
	      im_strerror(rc), im_store_errmsg(cn->st));
	for (i = 0; i < nitems; i++) {
		im_idseg_reset(&sc->users[i]->uq);
		sc->users[i]->uq_ready = false;
	}
	if (rc != IM_ESTALE || retried) {
		return false;
	}
	(void)im_shard_load(cn->map, cn->st);
	/* sc->retry, not sc->bounce: the retry stages into the scratch. */
	memcpy(sc->retry, sc->bounce, nbounce * sizeof(*sc->retry));
	for (i = 0; i < nitems; i++) {
		sc->retry[nbounce + i] = evs[sc->evidx[i]];
	}
	uevents_run(cn, sc, sc->retry, nbounce + nitems, true);
	return true;
}

/*
 * Append the events of users we own to their queues (fenced by the user
 * slot) and push them; those of users we do not own (a Router or this
 * node had a stale map: a handover or failover just moved the slot) go
 * back to be routed to the owner. A fenced append (IM_ESTALE: the slot
 * moved under us) reloads the map and goes once more, so every event ends
 * in its owner's queue: nothing is dropped for a stale map.
 * n <= sc->cap.
 */
static void
uevents_run(connector *cn, struct uev_scratch *sc, const role_uevent *evs,
            size_t n, bool retried)
{
	uint64_t now = role_now_ms();
	size_t i, nitems, nbounce;
	int rc;

	/* One reload when some event is not ours by our map: it may be
	 * older than the sender's. */
	for (i = 0; i < n && !retried; i++) {
		if (evs[i].user != 0 && !uevent_ours(cn, &evs[i])) {
			(void)im_shard_load(cn->map, cn->st);
			break;
		}
	}
	if (n > 1) {
		uq_take_first(cn, sc, evs, n);
	}
	nitems = uevents_stage(cn, sc, evs, n, now, &nbounce);
	if (nitems > 0) {
		rc = im_store_uq_append(cn->st, sc->fences, sc->nfences,
		                        sc->items, nitems);
		if (rc == IM_OK) {
			uevents_publish(cn, sc, evs, nitems, now);
		} else if (uevents_failed(cn, sc, evs, nitems, nbounce, rc,
		                          retried)) {
			return;
		}
	}
	if (nbounce > 0) {
		uevents_bounce(cn, sc->bounce, nbounce);
	}
}

void
connector_user_events(connector *cn, const role_uevent *evs, size_t n)
{
	struct uev_scratch tmp, *sc = &cn->uev;
	bool busy = cn->uev_busy;
	size_t off, m;

	if (n == 0) {
		return;
	}
	if (busy) {
		/* Only a router that calls straight back (imd's, with an
		 * event bounced above) gets here while the scratch is in
		 * use: this call gets its own, for its size. */
		m = n < UEV_BATCH_MAX ? n : UEV_BATCH_MAX;
		if (conn__uev_scratch_init(&tmp, m) != IM_OK) {
			LOG_E("user events: out of memory; %zu events dropped",
			      n);
			return;
		}
		sc = &tmp;
	}
	cn->uev_busy = true;
	for (off = 0; off < n; off += m) {
		m = n - off < sc->cap ? n - off : sc->cap;
		uevents_run(cn, sc, evs + off, m, false);
	}
	cn->uev_busy = busy;
	if (sc == &tmp) {
		conn__uev_scratch_finish(&tmp);
	}
}

void
conn__uevent_raise(connector *cn, const role_uevent *ev)
{
	if (uevent_ours(cn, ev)) {
		connector_user_events(cn, ev, 1);
	} else {
		cn->router->ops->user_events(cn->router, ev, 1);
	}
}

int
conn__uev_scratch_init(struct uev_scratch *sc, size_t cap)
{
	memset(sc, 0, sizeof(*sc));
	sc->cap = cap;
	sc->items = calloc(cap, sizeof(*sc->items));
	sc->fences = calloc(cap, sizeof(*sc->fences));
	sc->users = calloc(cap, sizeof(*sc->users));
	sc->evidx = calloc(cap, sizeof(*sc->evidx));
	sc->bodies = malloc(cap * UQ_BODY_CAP);
	sc->bounce = calloc(cap, sizeof(*sc->bounce));
	sc->retry = calloc(cap, sizeof(*sc->retry));
	sc->keys = calloc(cap, sizeof(*sc->keys));
	sc->takers = calloc(cap, sizeof(*sc->takers));
	sc->segs = calloc(cap, sizeof(*sc->segs));
	if (sc->items == NULL || sc->fences == NULL || sc->users == NULL ||
	    sc->evidx == NULL || sc->bodies == NULL || sc->bounce == NULL ||
	    sc->retry == NULL || sc->keys == NULL || sc->takers == NULL ||
	    sc->segs == NULL) {
		conn__uev_scratch_finish(sc);
		return IM_ENOMEM;
	}
	return IM_OK;
}

void
conn__uev_scratch_finish(struct uev_scratch *sc)
{
	free(sc->items);
	free(sc->fences);
	free(sc->users);
	free(sc->evidx);
	free(sc->bodies);
	free(sc->bounce);
	free(sc->retry);
	free(sc->keys);
	free(sc->takers);
	free(sc->segs);
	memset(sc, 0, sizeof(*sc));
}
