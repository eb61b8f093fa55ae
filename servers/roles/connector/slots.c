/*
 * Cluster handover on the Connector's side: a user slot moved to another
 * Connector (or this node was renamed), so the connections of its users
 * are redirected or closed and their sessions dropped without a grace.
 * imd never calls these; they are the cluster's part of the role.
 */
#include <string.h>

#include "connector_int.h"

const char *
conn__owner_address(connector *cn, const char *owner)
{
	if (cn->redirect == NULL || owner[0] == '\0') {
		return NULL;
	}
	return cn->redirect(cn->redirect_payload, owner);
}

uint32_t
connector_shed_moved(connector *cn)
{
	uint32_t i, n = 0;

	for (i = 0; i < cn->o.max_conns; i++) {
		struct conn *c = cn->conns[i];
		im_shard_entry e;
		const char *addr;

		if (c == NULL || c->closed || c->closing || c->uid == 0) {
			continue;
		}
		e = im_shard_get(cn->map, IM_KIND_USER, c->uid);
		if (strcmp(e.owner, cn->node) == 0) {
			continue;
		}
		addr = conn__owner_address(cn, e.owner);
		if (addr != NULL) {
			conn__redirect(c, 0, addr);
		} else {
			conn__fail(c, 0, im_Code_ERR_UNAVAILABLE,
			           "user moved to another connector");
		}
		n++;
	}
	/*
	 * Then their sessions, without a grace period, including those in
	 * grace: the deliveries of the time the slot was elsewhere went to
	 * the other owner, so a resume from this memory would miss them. A
	 * resume here later (the slot came back) replays from the store.
	 */
	for (i = 0; i < cn->nub; i++) {
		struct user *u;

		for (u = cn->ub[i]; u != NULL; u = u->next) {
			if (strcmp(im_shard_get(cn->map, IM_KIND_USER, u->uid)
			                   .owner,
			           cn->node) == 0) {
				continue;
			}
			conn__user_drop_sessions(u);
			u->uq_ready = false;
		}
	}
	return n;
}

uint32_t
connector_renamed(connector *cn)
{
	uint32_t i;

	/* Our next user-queue seq of any user comes from a fresh segment:
	 * the slot's epoch changed even where it stayed ours. */
	for (i = 0; i < cn->nub; i++) {
		struct user *u;

		for (u = cn->ub[i]; u != NULL; u = u->next) {
			im_idseg_reset(&u->uq);
			u->uq_ready = false;
		}
	}
	return connector_shed_moved(cn);
}

void
connector_set_redirect(connector *cn,
                       const char *(*fn)(void *payload, const char *owner),
                       void *payload)
{
	cn->redirect = fn;
	cn->redirect_payload = payload;
}

uint32_t
connector_drop_slot(connector *cn, uint32_t slot, const char *address)
{
	uint32_t nslots = im_shard_nslots(cn->map), i, n = 0;

	/* Clients first: Redirect (or a close) while the session still
	 * refers to the connection, then the sessions without a grace. */
	for (i = 0; i < cn->o.max_conns; i++) {
		struct conn *c = cn->conns[i];

		if (c == NULL || c->closed || c->uid == 0 ||
		    im_shard_slot_of(c->uid, nslots) != slot) {
			continue;
		}
		if (address != NULL) {
			conn__redirect(c, 0, address);
		} else {
			conn__close(c, "user slot moved");
		}
		n++;
	}
	for (i = 0; i < cn->nub; i++) {
		struct user *u;

		for (u = cn->ub[i]; u != NULL; u = u->next) {
			if (im_shard_slot_of(u->uid, nslots) != slot) {
				continue;
			}
			conn__user_drop_sessions(u);
			/* Should the slot come back, our first user-queue
			 * seq comes from a fresh segment again. */
			u->uq_ready = false;
		}
	}
	return n;
}
