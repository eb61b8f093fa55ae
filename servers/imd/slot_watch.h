/*
 * imd's slot watch: every slot_watch_ms the slot map is reloaded from the
 * store. imd claimed every slot at start, so a slot now owned by anyone
 * else was taken by another process on the same database (an imd started
 * with exclusive = false). Then, at every check while that lasts, at most
 * once per SLOT_WATCH_LOG_S seconds (at once when the set of lost slots
 * grows), an ERROR names the lost slots and their new owners. The lost
 * slots are refused cleanly: their users' connections are closed with
 * ERR_UNAVAILABLE and their groups' hot state is dropped (writes under
 * the old epoch would be fenced anyway); they are never taken back: two
 * imds fighting over one database would only fence each other in turn.
 */
#ifndef IM_IMD_SLOT_WATCH_H
#define IM_IMD_SLOT_WATCH_H

#include <stdint.h>

#include <ev.h>

#include "chatter.h"
#include "connector.h"
#include "im/shard.h"
#include "im/store.h"

/* Seconds between two ERROR lines about the same lost slots. */
#define SLOT_WATCH_LOG_S 10.0

typedef struct slot_watch {
	ev_timer timer;
	im_shard_map *map;
	im_store *st;
	const char *owner; /* borrowed: this process's owner string */
	chatter *ch;
	connector *cn;
	uint8_t *lost[2]; /* per kind, one byte per slot: 1 = lost */
	uint32_t nlost;   /* slots of both kinds lost now */
	double logged;    /* when the last ERROR line was written */
	uint64_t quiet;   /* checks since then that found slots lost */
} slot_watch;

/*
 * Start watching on loop every interval_ms (0: never; returns IM_OK).
 * map, st, owner, ch, cn are borrowed and must outlive the watch.
 * @retval IM_OK, IM_ENOMEM
 */
int slot_watch_start(slot_watch *w, struct ev_loop *loop, im_shard_map *map,
                     im_store *st, const char *owner, chatter *ch,
                     connector *cn, uint32_t interval_ms);

/* One check now (the timer's work). */
void slot_watch_check(slot_watch *w, double now);

/* Stop the timer and free the watch's memory; a zeroed watch is fine. */
void slot_watch_stop(slot_watch *w, struct ev_loop *loop);

#endif
