/*
 * The user-event pipeline: events for the users this Connector owns
 * (GroupCreated, Joined, Left, Read) get a seq from the user's queue
 * segment, are appended to the user queues in one fenced transaction per
 * batch, applied to the online users' conversation lists and pushed to
 * their sessions. Events for users owned elsewhere go back to the router.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "connector_int.h"

size_t
conn__uevent_frame(connector *cn, const im_uq_item *item)
{
	im_UserEvent ev = im_UserEvent_init_zero;
	pb_istream_t is = pb_istream_from_buffer(item->body, item->body_len);

	if (!pb_decode(&is, im_UserEvent_fields, &ev)) {
		return 0;
	}
	ev.seq = item->seq;
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

/*
 * Take the first user-queue segment of every user of the batch that has
 * none yet in ONE transaction (im_store_seg_take_many), instead of one
 * seg_take (and fsync) per user: a batch of GroupCreated events reaches
 * many offline users at once. Users it cannot serve (a backend without the
 * op, a failure) are left to the per-user refill below.
 */
static void
uq_take_first(connector *cn, const role_uevent *evs, size_t n)
{
	im_seg_key *keys = NULL;
	struct user **us = NULL;
	im_seg *segs = NULL;
	size_t i, k = 0, off;
	int rc;

	keys = malloc(n * sizeof(*keys));
	us = malloc(n * sizeof(*us));
	segs = malloc(n * sizeof(*segs));
	if (keys == NULL || us == NULL || segs == NULL) {
		goto out;
	}
	for (i = 0; i < n; i++) {
		const role_uevent *ev = &evs[i];
		im_shard_entry e =
		        im_shard_get(cn->map, IM_KIND_USER, ev->user);
		struct user *u;

		if (ev->user == 0 || e.epoch == 0 ||
		    strcmp(e.owner, cn->node) != 0 ||
		    (u = conn__user_get(cn, ev->user)) == NULL || u->uq_ready ||
		    u->uq_taking) {
			continue;
		}
		u->uq_taking = true;
		keys[k].space = IM_SEG_USER_SEQ;
		keys[k].id = u->uid;
		us[k++] = u;
	}
	for (off = 0; off < k; off += IM_STORE_SEG_MANY_MAX) {
		size_t m = k - off < IM_STORE_SEG_MANY_MAX
		                   ? k - off
		                   : IM_STORE_SEG_MANY_MAX;

		rc = im_store_seg_take_many(cn->st, keys + off, m,
		                            cn->o.uq_step, segs + off);
		for (i = off; i < off + m; i++) {
			if (rc == IM_OK &&
			    im_idseg_feed(&us[i]->uq, &segs[i]) == IM_OK) {
				us[i]->uq_ready = true;
			}
		}
		if (rc != IM_OK && rc != IM_ENOTSUP) {
			LOG_W("user queues: taking %zu segments: %s", m,
			      im_store_errmsg(cn->st));
		}
	}
	for (i = 0; i < k; i++) {
		us[i]->uq_taking = false;
	}
out:
	free(keys);
	free(us);
	free(segs);
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

static void uevents_append(connector *cn, const role_uevent *evs, size_t n,
                           bool retried);

void
connector_user_events(connector *cn, const role_uevent *evs, size_t n)
{
	uevents_append(cn, evs, n, false);
}

/* Does the map give ev's user to this node? */
static bool
uevent_ours(connector *cn, const role_uevent *ev)
{
	im_shard_entry e = im_shard_get(cn->map, IM_KIND_USER, ev->user);

	return ev->user != 0 && e.epoch != 0 && strcmp(e.owner, cn->node) == 0;
}

/*
 * Append the events of users we own to their queues (fenced by the user
 * slot) and push them; those of users we do not own (a Router or this
 * node had a stale map: a handover or failover just moved the slot) go
 * back to be routed to the owner. A fenced append (IM_ESTALE: the slot
 * moved under us) reloads the map and goes once more, so every event ends
 * in its owner's queue: nothing is dropped for a stale map.
 */
static void
uevents_append(connector *cn, const role_uevent *evs, size_t n, bool retried)
{
	im_uq_item *items = NULL;
	im_fence *fences = NULL;
	struct user **users = NULL;
	size_t *evidx = NULL;
	uint8_t *bodies = NULL;
	role_uevent *bounce = NULL;
	uint64_t now = role_now_ms();
	size_t i, k, nitems = 0, nfences = 0, nbounce = 0;
	int rc;

	if (n == 0) {
		return;
	}
	items = calloc(n, sizeof(*items));
	fences = calloc(n, sizeof(*fences));
	users = calloc(n, sizeof(*users));
	evidx = calloc(n, sizeof(*evidx));
	bodies = malloc(n * UQ_BODY_CAP);
	bounce = calloc(n, sizeof(*bounce));
	if (items == NULL || fences == NULL || users == NULL || evidx == NULL ||
	    bodies == NULL || bounce == NULL) {
		LOG_E("user events: out of memory; %zu events dropped", n);
		goto out;
	}
	/* One reload when some event is not ours by our map: it may be
	 * older than the sender's. */
	for (i = 0; i < n; i++) {
		if (evs[i].user != 0 && !uevent_ours(cn, &evs[i])) {
			if (!retried) {
				(void)im_shard_load(cn->map, cn->st);
			}
			break;
		}
	}
	if (n > 1) {
		uq_take_first(cn, evs, n);
	}
	for (i = 0; i < n; i++) {
		const role_uevent *ev = &evs[i];
		im_shard_entry e =
		        im_shard_get(cn->map, IM_KIND_USER, ev->user);
		im_UserEvent ue = im_UserEvent_init_zero;
		struct user *u;
		pb_ostream_t os;
		uint64_t seq;

		if (ev->user == 0) {
			continue;
		}
		if (!uevent_ours(cn, ev)) {
			bounce[nbounce++] = *ev;
			continue;
		}
		u = conn__user_get(cn, ev->user);
		if (u == NULL) {
			continue;
		}
		/* Our first id of this user's queue comes from a fresh
		 * segment, above anything an earlier owner handed out. */
		if (!u->uq_ready) {
			if (im_idseg_refill(&u->uq, cn->st) != IM_OK) {
				LOG_W("user queue of %llu: %s",
				      (unsigned long long)u->uid,
				      im_store_errmsg(cn->st));
				continue;
			}
			u->uq_ready = true;
		}
		if (im_idseg_next(&u->uq, &seq) != IM_OK &&
		    (im_idseg_refill(&u->uq, cn->st) != IM_OK ||
		     im_idseg_next(&u->uq, &seq) != IM_OK)) {
			LOG_W("user queue of %llu: no seq: %s",
			      (unsigned long long)u->uid,
			      im_store_errmsg(cn->st));
			continue;
		}
		ue.seq = seq;
		ue.type = (im_EventType)ev->type;
		ue.group = ev->group;
		ue.actor = ev->actor;
		ue.read_seq = ev->read_seq;
		ue.read_ordinal = ev->read_ordinal;
		ue.time_ms = now;
		snprintf(ue.name, sizeof(ue.name), "%s", ev->name);
		os = pb_ostream_from_buffer(bodies + nitems * UQ_BODY_CAP,
		                            UQ_BODY_CAP);
		if (!pb_encode(&os, im_UserEvent_fields, &ue)) {
			continue;
		}
		items[nitems].user = u->uid;
		items[nitems].seq = seq;
		items[nitems].time_ms = now;
		items[nitems].type = ev->type;
		items[nitems].body_len = (uint32_t)os.bytes_written;
		items[nitems].body = bodies + nitems * UQ_BODY_CAP;
		users[nitems] = u;
		evidx[nitems] = i;
		for (k = 0; k < nfences && fences[k].slot != e.slot; k++) {
		}
		if (k == nfences) {
			fences[nfences].kind = IM_KIND_USER;
			fences[nfences].slot = e.slot;
			fences[nfences].epoch = e.epoch;
			nfences++;
		}
		nitems++;
	}
	if (nitems == 0) {
		goto out;
	}
	rc = im_store_uq_append(cn->st, fences, nfences, items, nitems);
	if (rc != IM_OK) {
		LOG_W("user events: append of %zu failed: %s (%s)", nitems,
		      im_strerror(rc), im_store_errmsg(cn->st));
		for (i = 0; i < nitems; i++) {
			im_idseg_reset(&users[i]->uq);
			users[i]->uq_ready = false;
		}
		if (rc == IM_ESTALE && !retried) {
			/* A slot moved under us: once more by a fresh map
			 * (ours again: appended; moved: sent on). */
			(void)im_shard_load(cn->map, cn->st);
			for (i = 0; i < nitems; i++) {
				bounce[nbounce++] = evs[evidx[i]];
			}
			uevents_append(cn, bounce, nbounce, true);
			nbounce = 0;
		}
		goto out;
	}
	for (i = 0; i < nitems; i++) {
		struct user *u = users[i];
		size_t len;

		if (u->uq_last_known && items[i].seq > u->uq_last) {
			u->uq_last = items[i].seq;
		}
		if (evs[evidx[i]].type == UEV_GROUP_CREATED) {
			conn__name_put(cn, evs[evidx[i]].group,
			               evs[evidx[i]].name);
		}
		apply_uevent(cn, u, &evs[evidx[i]]);
		len = conn__uevent_frame(cn, &items[i]);
		if (len == 0) {
			continue;
		}
		conn__user_push(u, IM_PUSHQ_USERQ, items[i].seq, cn->obuf,
		                (uint32_t)len, now);
	}
out:
	if (nbounce > 0) {
		uevents_bounce(cn, bounce, nbounce);
	}
	free(items);
	free(fences);
	free(users);
	free(evidx);
	free(bodies);
	free(bounce);
}
