#include "mem_stats.h"

#include <malloc.h>
#include <sqlite3.h>
#include <stdio.h>
#include <unistd.h>

#include "role.h"

size_t
imd_mem_rss(void)
{
	unsigned long size = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f == NULL) {
		return 0;
	}
	if (fscanf(f, "%lu %lu", &size, &rss) != 2) {
		rss = 0;
	}
	fclose(f);
	return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

static unsigned long long
kib(size_t n)
{
	return (unsigned long long)(n + 1023) / 1024;
}

static void
stats_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct imd_mem *m = w->data;
	connector_stats st;
	connector_mem cm;
	chatter_mem hm;
	size_t rss = imd_mem_rss();
	size_t sq = (size_t)sqlite3_memory_used();
	size_t known;

	(void)loop;
	(void)revents;
	connector_get_stats(m->cn, &st);
	connector_get_mem(m->cn, &cm);
	chatter_get_mem(m->ch, &hm);
	known = cm.total + hm.total + sq;
	LOG_I("mem: rss %llu KiB; connector %llu KiB (users %llu, sessions "
	      "%llu, pushqs %llu with %llu unacked, convlists %llu, conns %llu, "
	      "conn bufs %llu, fixed %llu); chatter %llu KiB (groups %llu, "
	      "members %llu, dedup %llu, arenas %llu of %llu, fixed %llu); "
	      "sqlite %llu KiB; other %llu KiB; %u conns, %u users",
	      kib(rss), kib(cm.total), kib(cm.users), kib(cm.sessions),
	      kib(cm.pushqs), kib(cm.pushq_live), kib(cm.convlists),
	      kib(cm.conns), kib(cm.conn_bufs), kib(cm.fixed), kib(hm.total),
	      kib(hm.groups), kib(hm.members), kib(hm.dedup),
	      kib(hm.arenas_live), kib(hm.arenas_reserved), kib(hm.fixed),
	      kib(sq), rss > known ? kib(rss - known) : 0ULL, st.conns,
	      st.users);
}

static void
trim_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	(void)malloc_trim(0);
}

void
imd_mem_start(struct imd_mem *m, struct ev_loop *loop, const connector *cn,
              const chatter *ch, double stats_s, double trim_s)
{
	m->cn = cn;
	m->ch = ch;
	ev_timer_init(&m->stats_w, stats_cb, stats_s, stats_s);
	m->stats_w.data = m;
	ev_timer_init(&m->trim_w, trim_cb, trim_s, trim_s);
	m->trim_w.data = m;
	if (stats_s > 0) {
		ev_timer_start(loop, &m->stats_w);
	}
	if (trim_s > 0) {
		ev_timer_start(loop, &m->trim_w);
	}
}

void
imd_mem_stop(struct imd_mem *m, struct ev_loop *loop)
{
	ev_timer_stop(loop, &m->stats_w);
	ev_timer_stop(loop, &m->trim_w);
}
