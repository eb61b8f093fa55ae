/*
 * imd's slot watch (slot_watch.h): notice, say loudly and refuse the
 * slots another process took, never take them back.
 */
#include "slot_watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[2] = {"user", "group"};

static im_kind
kind_of(int k)
{
	return k == 0 ? IM_KIND_USER : IM_KIND_GROUP;
}

/* Append "user 0-7 -> 'imd/1a2b3c4d'" runs of lost slots to buf, a run
 * per stretch of slots with one new owner; cut with "..." when full. */
static void
describe(const slot_watch *w, char *buf, size_t len)
{
	uint32_t nslots = im_shard_nslots(w->map), s, first;
	size_t off = 0;
	int k, n;

	buf[0] = '\0';
	for (k = 0; k < 2; k++) {
		for (s = 0; s < nslots; s++) {
			im_shard_entry e, x;

			if (!w->lost[k][s] ||
			    im_shard_get_slot(w->map, kind_of(k), s, &e) !=
			            IM_OK) {
				continue;
			}
			first = s;
			while (s + 1 < nslots && w->lost[k][s + 1] &&
			       im_shard_get_slot(w->map, kind_of(k), s + 1,
			                         &x) == IM_OK &&
			       strcmp(x.owner, e.owner) == 0) {
				s++;
			}
			n = snprintf(buf + off, len - off, "%s%s %u-%u -> '%s'",
			             off > 0 ? ", " : "", kind_names[k], first,
			             s,
			             e.owner[0] != '\0' ? e.owner : "nobody");
			if (n < 0 || (size_t)n >= len - off) {
				snprintf(buf + (len > 4 ? len - 4 : 0),
				         len > 4 ? 4 : len, "...");
				return;
			}
			off += (size_t)n;
		}
	}
}

void
slot_watch_check(slot_watch *w, double now)
{
	uint32_t nslots = im_shard_nslots(w->map), s, fresh[2] = {0, 0};
	char slots[640];
	int k, rc = im_shard_load(w->map, w->st);

	if (rc != IM_OK) {
		LOG_W("slot watch: reloading the slot map: %s (%s)",
		      im_strerror(rc), im_store_errmsg(w->st));
		return;
	}
	w->nlost = 0;
	for (k = 0; k < 2; k++) {
		for (s = 0; s < nslots; s++) {
			im_shard_entry e;
			uint8_t lost;

			if (im_shard_get_slot(w->map, kind_of(k), s, &e) !=
			    IM_OK) {
				continue;
			}
			lost = strcmp(e.owner, w->owner) != 0;
			if (lost && !w->lost[k][s]) {
				fresh[k]++;
				if (k == 1) {
					/* The new owner's epoch fences our
					 * writes; forget the stale state. */
					chatter_drop_slot(w->ch, s);
				}
			}
			w->lost[k][s] = lost;
			w->nlost += lost;
		}
	}
	if (fresh[0] > 0) {
		/* Their deliveries go to the new owner now. */
		(void)connector_shed_moved(w->cn);
	}
	if (w->nlost == 0) {
		return;
	}
	if (fresh[0] + fresh[1] == 0 && now - w->logged < SLOT_WATCH_LOG_S) {
		w->quiet++;
		return;
	}
	describe(w, slots, sizeof(slots));
	LOG_E("SLOTS LOST: %u slots this imd (%s) claimed are owned by "
	      "another process on the same database: %s. Their users and "
	      "groups are refused here and not taken back; stop the other "
	      "process and restart this imd (%llu checks since the last "
	      "line)",
	      w->nlost, w->owner, slots, (unsigned long long)w->quiet);
	w->logged = now;
	w->quiet = 0;
}

static void
tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)revents;
	slot_watch_check(t->data, ev_now(loop));
}

int
slot_watch_start(slot_watch *w, struct ev_loop *loop, im_shard_map *map,
                 im_store *st, const char *owner, chatter *ch, connector *cn,
                 uint32_t interval_ms)
{
	uint32_t nslots = im_shard_nslots(map);
	double period = interval_ms / 1000.0;

	memset(w, 0, sizeof(*w));
	if (interval_ms == 0) {
		return IM_OK;
	}
	w->map = map;
	w->st = st;
	w->owner = owner;
	w->ch = ch;
	w->cn = cn;
	w->lost[0] = calloc(nslots, 1);
	w->lost[1] = calloc(nslots, 1);
	if (w->lost[0] == NULL || w->lost[1] == NULL) {
		slot_watch_stop(w, loop);
		return IM_ENOMEM;
	}
	ev_timer_init(&w->timer, tick_cb, period, period);
	w->timer.data = w;
	ev_timer_start(loop, &w->timer);
	return IM_OK;
}

void
slot_watch_stop(slot_watch *w, struct ev_loop *loop)
{
	if (loop != NULL && ev_is_active(&w->timer)) {
		ev_timer_stop(loop, &w->timer);
	}
	free(w->lost[0]);
	free(w->lost[1]);
	w->lost[0] = NULL;
	w->lost[1] = NULL;
}
