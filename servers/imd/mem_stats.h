/*
 * imd's memory line and heap trim: every stats_interval seconds one info
 * line with the process RSS and the parts that make it (the Connector's
 * and the Chatter's heap by part, sqlite's heap, the rest = allocator and libraries); every
 * trim_interval seconds malloc_trim(0), which hands freed heap pages back
 * to the kernel (glibc keeps them otherwise, so RSS stays at the peak
 * after a burst). 0 turns either off.
 */
#ifndef IMD_MEM_STATS_H
#define IMD_MEM_STATS_H

#include <ev.h>

#include "chatter.h"
#include "connector.h"

struct imd_mem {
	ev_timer stats_w;
	ev_timer trim_w;
	const connector *cn;
	const chatter *ch;
};

void imd_mem_start(struct imd_mem *m, struct ev_loop *loop,
                   const connector *cn, const chatter *ch, double stats_s,
                   double trim_s);
void imd_mem_stop(struct imd_mem *m, struct ev_loop *loop);
/* Resident set size of this process in bytes (0 if unknown). */
size_t imd_mem_rss(void);

#endif
