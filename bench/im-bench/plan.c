#include "imbench.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const imb_cnt_names[IMB_C_COUNT] = {
        [IMB_C_SENT] = "sent",
        [IMB_C_ACKED] = "acked",
        [IMB_C_ACKED_WIN] = "acked_in_window",
        [IMB_C_DUP_ACKS] = "dup_acks",
        [IMB_C_DELIV] = "delivered",
        [IMB_C_DELIV_WIN] = "delivered_in_window",
        [IMB_C_DELIV_DUP] = "deliver_dups",
        [IMB_C_DELIV_GAP] = "deliver_gaps",
        [IMB_C_EVENTS] = "user_events",
        [IMB_C_LOGINS] = "logins",
        [IMB_C_CONVS] = "convs_listed",
        [IMB_C_CONV_MISMATCH] = "conv_list_mismatch",
        [IMB_C_GROUPS_MADE] = "groups_created",
        [IMB_C_MEMBERS_ADDED] = "members_added",
        [IMB_C_RESUMED] = "resumed",
        [IMB_C_RESUMED_TRUE] = "resumed_in_grace",
        [IMB_C_CAUGHT_UP] = "caught_up",
        [IMB_C_REPLAYED] = "replayed",
        [IMB_C_CONNECT_FAIL] = "connect_fail",
        [IMB_C_CLOSED] = "closed_by_server",
        [IMB_C_PROTO] = "protocol_errors",
        [IMB_C_WBUF_FULL] = "client_backlog_full",
        [IMB_C_LOGIN_TIMEOUT] = "login_timeouts",
        [IMB_C_SETUP_FAIL] = "setup_failures",
        [IMB_C_DRAIN_LEFT] = "unanswered_at_end",
        [IMB_C_NOT_CAUGHT_UP] = "not_caught_up",
        [IMB_C_OPEN_BEHIND] = "open_loop_late_sends",
        [IMB_C_REDIRECTS] = "redirects",
        [IMB_C_BAD_REDIRECT] = "bad_redirects",
        [IMB_C_TLS_FAIL] = "tls_failures",
};

const unsigned char imb_cnt_is_error[IMB_C_COUNT] = {
        [IMB_C_DELIV_GAP] = 1,     [IMB_C_CONV_MISMATCH] = 1,
        [IMB_C_CONNECT_FAIL] = 1,  [IMB_C_CLOSED] = 1,
        [IMB_C_PROTO] = 1,         [IMB_C_WBUF_FULL] = 1,
        [IMB_C_LOGIN_TIMEOUT] = 1, [IMB_C_SETUP_FAIL] = 1,
        [IMB_C_DRAIN_LEFT] = 1,    [IMB_C_NOT_CAUGHT_UP] = 1,
        [IMB_C_BAD_REDIRECT] = 1,
        [IMB_C_TLS_FAIL] = 1,
};

uint64_t
imb_now_us(const imb_plan *p)
{
	struct timespec ts;
	uint64_t ns;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	return (ns - p->epoch_ns) / 1000;
}

int
imb_is_sender(const imb_opts *o, uint32_t i)
{
	uint64_t a, b;

	if (o->senders == 0 || o->groups == 0) {
		return 0;
	}
	/* Spread evenly over the users so every worker has its share. */
	a = (uint64_t)i * o->senders / o->users;
	b = (uint64_t)(i + 1) * o->senders / o->users;
	return b > a;
}

int
imb_is_stayer(const imb_opts *o, uint32_t i)
{
	return (i % o->group_size) < o->stayers;
}

void
imb_worker_users(const imb_opts *o, uint32_t w, uint32_t *first, uint32_t *end)
{
	*first = (uint32_t)((uint64_t)o->users * w / o->procs);
	*end = (uint32_t)((uint64_t)o->users * (w + 1) / o->procs);
}

uint32_t
imb_member(const imb_opts *o, uint32_t g, uint32_t j)
{
	return (uint32_t)(((uint64_t)g * o->group_size + j) % o->users);
}

int
imb_plan_build(imb_plan *p, const imb_opts *o)
{
	uint32_t g, j, *fill = NULL;
	uint64_t total = (uint64_t)o->groups * o->group_size;

	p->o = o;
	p->uoff = calloc((size_t)o->users + 1, sizeof(*p->uoff));
	p->ulist = malloc((total ? total : 1) * sizeof(*p->ulist));
	fill = calloc((size_t)o->users, sizeof(*fill));
	if (p->uoff == NULL || p->ulist == NULL || fill == NULL ||
	    total > UINT32_MAX) {
		free(fill);
		return -1;
	}
	for (g = 0; g < o->groups; g++) {
		for (j = 0; j < o->group_size; j++) {
			p->uoff[imb_member(o, g, j) + 1]++;
		}
	}
	for (j = 0; j < o->users; j++) {
		p->uoff[j + 1] += p->uoff[j];
	}
	/* Groups ascending per user: g goes in order. */
	for (g = 0; g < o->groups; g++) {
		for (j = 0; j < o->group_size; j++) {
			uint32_t u = imb_member(o, g, j);

			p->ulist[p->uoff[u] + fill[u]++] = g;
		}
	}
	free(fill);
	return 0;
}
