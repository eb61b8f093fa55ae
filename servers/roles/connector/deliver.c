/*
 * Fan-outs from the Chatters: each committed message is encoded once as a
 * Deliver frame and pushed to every session of every member online here,
 * and the members' conversation lists move on.
 */
#include <stdlib.h>
#include <string.h>

#include "connector_int.h"

void
conn__fill_deliver(im_Deliver *d, const im_msg *m)
{
	d->group = m->conv;
	d->seq = m->seq;
	d->prev_seq = m->prev_seq;
	d->ordinal = m->ordinal;
	d->sender = m->sender;
	d->time_ms = m->time_ms;
	d->reply_to = m->reply_to;
	d->type = m->type;
	d->dedup_id = m->dedup_id;
	d->body.size = (pb_size_t)(m->body_len <= sizeof(d->body.bytes)
	                                   ? m->body_len
	                                   : sizeof(d->body.bytes));
	if (d->body.size > 0) {
		memcpy(d->body.bytes, m->body, d->body.size);
	}
}

/* Room for n offsets, grown and kept: no allocation per fan-out once the
 * largest batch was seen (bounded by the Chatter's max_batch). */
static size_t *
deliver_offsets(connector *cn, size_t n)
{
	size_t ncap = cn->foffs_cap ? cn->foffs_cap : 64;
	size_t *p;

	if (n <= cn->foffs_cap) {
		return cn->foffs;
	}
	while (ncap < n) {
		ncap *= 2;
	}
	p = realloc(cn->foffs, ncap * sizeof(*p));
	if (p == NULL) {
		return NULL;
	}
	cn->foffs = p;
	cn->foffs_cap = ncap;
	return p;
}

/* Encode each message of f once into cn->fbuf, message k at offs[k],
 * ending at offs[k + 1]; returns how many fit (all, unless out of
 * memory). */
static size_t
encode_fanout(connector *cn, const role_fanout *f, size_t *offs)
{
	size_t k, total = 0;

	for (k = 0; k < f->nmsgs; k++) {
		size_t len;

		memset(cn->dl, 0, sizeof(*cn->dl));
		conn__fill_deliver(cn->dl, &f->msgs[k]);
		len = conn__encode_frame(cn, 0, im_Envelope_deliver_tag,
		                         im_Deliver_fields, cn->dl);
		if (total + len > cn->fcap) {
			size_t ncap = cn->fcap ? cn->fcap : 65536;
			uint8_t *nb;

			while (ncap < total + len) {
				ncap *= 2;
			}
			nb = realloc(cn->fbuf, ncap);
			if (nb == NULL) {
				break;
			}
			cn->fbuf = nb;
			cn->fcap = ncap;
		}
		offs[k] = total;
		memcpy(cn->fbuf + total, cn->obuf, len);
		total += len;
	}
	offs[k] = total;
	return k;
}

void
connector_deliver(connector *cn, const role_fanout *fans, size_t n)
{
	uint64_t now = role_now_ms();
	size_t i, k, j, m;

	for (i = 0; i < n; i++) {
		const role_fanout *f = &fans[i];
		size_t *offs;

		/* Encode each message once; every session gets the bytes. */
		offs = deliver_offsets(cn, f->nmsgs + 1);
		if (offs == NULL) {
			LOG_E("deliver: out of memory");
			continue;
		}
		k = encode_fanout(cn, f, offs);
		for (j = 0; j < f->nmembers; j++) {
			struct user *u = conn__user_find(cn, f->members[j]);

			if (u == NULL || u->convs == NULL) {
				continue; /* offline: the store has it */
			}
			for (m = 0; m < k; m++) {
				const im_msg *msg = &f->msgs[m];

				(void)im_convlist_deliver(
				        u->convs, msg, msg->sender == u->uid);
				conn__user_push(
				        u, msg->conv, msg->seq,
				        cn->fbuf + offs[m],
				        (uint32_t)(offs[m + 1] - offs[m]), now);
			}
		}
	}
}
