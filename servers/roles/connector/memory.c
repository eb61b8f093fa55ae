/*
 * What the Connector's heap holds, part by part, for the periodic stats
 * line (imd stats_interval) and the memory bound in docs/operations.md.
 * A walk over every user and connection: O(users + conns), meant for a
 * line every few seconds, never per request.
 */
#include <string.h>

#include "connector_int.h"

void
connector_get_mem(const connector *cn, connector_mem *out)
{
	uint32_t b, i;

	memset(out, 0, sizeof(*out));
	for (b = 0; b < cn->nub; b++) {
		const struct user *u;

		for (u = cn->ub[b]; u != NULL; u = u->next) {
			const struct session *s;

			out->users += sizeof(*u);
			out->convlists += im_convlist_mem(u->convs);
			for (s = u->sessions; s != NULL; s = s->next) {
				out->sessions += sizeof(*s);
				out->pushqs += im_pushq_mem(&s->q);
				out->pushq_live += im_pushq_bytes(&s->q);
			}
		}
	}
	out->users += (size_t)cn->nub * sizeof(*cn->ub);
	for (i = 0; i < cn->o.max_conns; i++) {
		const struct conn *c = cn->conns[i];

		if (c == NULL) {
			continue;
		}
		out->conns += sizeof(*c);
		out->conn_bufs += c->wcap;
		if (c->rbuf != NULL) {
			out->conn_bufs += IM_FRAME_HEADER + cn->o.frame_max;
		}
	}
	out->fixed = (size_t)cn->o.max_conns *
	                     (sizeof(*cn->conns) + sizeof(*cn->free_idx)) +
	             cn->rcap + cn->fcap + cn->foffs_cap * sizeof(size_t) +
	             (size_t)NAME_CACHE * sizeof(struct name_slot) +
	             cn->uev.cap * (sizeof(im_uq_item) + UQ_BODY_CAP);
	out->total = out->users + out->sessions + out->pushqs +
	             out->convlists + out->conns + out->conn_bufs + out->fixed;
}
