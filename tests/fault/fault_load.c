/*
 * fault_load: the load driver of the fault tests (tests/fault/README.md).
 *
 * K clients (libim's im_client, one user each) in G groups of M members
 * send with dedup ids; the client library retries (same dedup id) across
 * ERR_UNAVAILABLE, reconnects, redirects and resumes. Each client knows
 * every Connector (--ports), so a dead one's clients move on. Every send, ack,
 * delivery and state change is written with a wall-clock timestamp (ms)
 * to the history file; after the load a drain waits (bounded) until every
 * send is acked and every member caught up with the store, then the store
 * is read back through im_store_msg_read and written to the history too.
 * tests/fault/check.py proves the invariants over that file.
 *
 * History lines (space separated):
 *   G gid uid...                       a group and its members
 *   S t uid gid dedup                  a send was issued
 *   A t uid gid dedup seq dup          it was acked
 *   D t uid gid seq prev sender dedup  a delivery (after client dedup)
 *   C t uid state                      client state change
 *   E t uid err code                   a client error report
 *   X t phase                          driver phases (load, drain, done)
 *   M gid seq prev sender dedup        a message as stored
 *   B t actor gid user add|remove req  a membership change was asked
 *   K t uid gid seq req                a MarkRead was asked
 *   R t uid req code                   a request's answer (0 done, else
 *                                      the server's code, or 1000 - err
 *                                      for a request the client failed)
 *   V t uid type gid read_seq actor    a user event (1 joined, 2 left,
 *                                      3 group created, 4 read)
 *   N gid uid...                       a group's members as stored, at
 *                                      the end
 *   P uid gid read_seq read_ord last_seq last_ord
 *                                      a member's read pointer and the
 *                                      group's last message as stored,
 *                                      at the end
 *   U uid gid read_seq read_ord last_seq last_ord unread
 *                                      the same as the client sees it,
 *                                      at the end
 *
 * Membership churn (--churn N, default 2): N extra users, in no group at
 * the start, are added to a group by its creator and removed again, one
 * group after the other, each change asked again until it is answered
 * done (AddMember and RemoveMember are idempotent), so every change ends
 * acked and the store's final members follow from the history. Their
 * deliveries are not written (they are members for a while only); the
 * checker proves no member lost and no phantom member from B, R and N.
 * Every client marks a group read up to its cursor every --read-ms
 * (jittered; 0: never).
 *
 * Every wait is bounded; only the given (127.0.0.1) addresses are used.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "im/client.h"
#include "im/store.h"
#include "im/token.h"

#define FL_MAX_CLIENTS 256
#define FL_MAX_GROUPS 256
#define FL_MAX_MEMBERS 16
#define FL_MAX_PORTS 8 /* <= IM_CLIENT_SERVERS_MAX */

#define FL_MAX_CHURN 16

typedef struct fl_client {
	struct fl *fl;
	im_client *cl;
	im_uid uid;
	double next_send;
	double next_read;
	bool churner; /* one of the --churn users: deliveries not written */
	uint32_t reads_out; /* MarkReads asked and not answered yet */
	uint32_t ngroups;
	uint32_t groups[FL_MAX_GROUPS]; /* indexes into fl->gid */
} fl_client;

/* One churn user's cycle: added to group `group` by its creator, held
 * for a while, removed, then the next group. */
typedef struct fl_churn {
	uint32_t client; /* index into fl->c of the churn user */
	uint32_t group;  /* index into fl->gid */
	bool in;         /* the change asked (or done) is an add */
	bool pending;    /* asked, not answered yet */
	bool done;       /* the last change asked was answered done */
	uint64_t req;
	double next;     /* when to ask (again) */
} fl_churn;

typedef struct fl {
	struct ev_loop *loop;
	FILE *out;
	uint32_t k, g, m;
	uint32_t nports;
	uint16_t ports[FL_MAX_PORTS];
	double interval;   /* seconds between sends of one client */
	uint32_t inflight; /* unacked sends per client */
	uint64_t rng;
	bool sending;
	uint32_t nchurn;
	double read_every; /* seconds between MarkReads of one client, 0 off */
	fl_churn churn[FL_MAX_CHURN];
	fl_client c[FL_MAX_CLIENTS + FL_MAX_CHURN];
	im_gid gid[FL_MAX_GROUPS];
	uint64_t req[FL_MAX_GROUPS];
	uint32_t members[FL_MAX_GROUPS][FL_MAX_MEMBERS];
	uint64_t sends, acks, delivers;
} fl;

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t
rnd(fl *f)
{
	f->rng ^= f->rng << 13;
	f->rng ^= f->rng >> 7;
	f->rng ^= f->rng << 17;
	return f->rng;
}

static fl_client *
of(im_client *cl, void *payload)
{
	(void)cl;
	return payload;
}

static void
on_deliver(im_client *cl, const im_client_msg *m, void *payload)
{
	fl_client *c = of(cl, payload);

	if (m->history || c->churner) {
		return;
	}
	c->fl->delivers++;
	fprintf(c->fl->out, "D %llu %llu %llu %llu %llu %llu %llu\n",
		(unsigned long long)now_ms(), (unsigned long long)c->uid,
		(unsigned long long)m->group, (unsigned long long)m->seq,
		(unsigned long long)m->prev_seq,
		(unsigned long long)m->sender,
		(unsigned long long)m->dedup_id);
}

static void
on_ack(im_client *cl, im_gid group, uint64_t dedup, im_seq seq, bool dup,
       void *payload)
{
	fl_client *c = of(cl, payload);

	c->fl->acks++;
	fprintf(c->fl->out, "A %llu %llu %llu %llu %llu %d\n",
		(unsigned long long)now_ms(), (unsigned long long)c->uid,
		(unsigned long long)group, (unsigned long long)dedup,
		(unsigned long long)seq, dup ? 1 : 0);
}

static void
on_error(im_client *cl, const im_client_error *e, void *payload)
{
	fl_client *c = of(cl, payload);

	fprintf(c->fl->out, "E %llu %llu %d %u\n",
		(unsigned long long)now_ms(), (unsigned long long)c->uid,
		e->err, e->server_code);
}

static void
on_state(im_client *cl, im_client_state st, void *payload)
{
	fl_client *c = of(cl, payload);

	fprintf(c->fl->out, "C %llu %llu %d\n", (unsigned long long)now_ms(),
		(unsigned long long)c->uid, (int)st);
}

static bool churn_answered(fl *f, fl_client *c, const im_client_reply *r);

static void
on_event(im_client *cl, const im_client_event *ev, void *payload)
{
	fl_client *c = of(cl, payload);

	fprintf(c->fl->out, "V %llu %llu %u %llu %llu %llu\n",
		(unsigned long long)now_ms(), (unsigned long long)c->uid,
		ev->type, (unsigned long long)ev->group,
		(unsigned long long)ev->read_seq,
		(unsigned long long)ev->actor);
}

static void
on_reply(im_client *cl, const im_client_reply *r, void *payload)
{
	fl_client *c = of(cl, payload);
	uint32_t i;

	if (r->kind == IM_CLIENT_REPLY_DONE ||
	    r->kind == IM_CLIENT_REPLY_ERROR) {
		fprintf(c->fl->out, "R %llu %llu %llu %d\n",
			(unsigned long long)now_ms(),
			(unsigned long long)c->uid,
			(unsigned long long)r->req_id,
			r->kind == IM_CLIENT_REPLY_DONE ? 0
			: r->server_code != 0		? (int)r->server_code
							: 1000 - r->err);
		if (!churn_answered(c->fl, c, r) && c->reads_out > 0) {
			c->reads_out--; /* the other requests are MarkReads */
		}
	}
	if (r->kind != IM_CLIENT_REPLY_CREATED) {
		return;
	}
	for (i = 0; i < c->fl->g; i++) {
		if (c->fl->req[i] == r->req_id && c->fl->gid[i] == 0 &&
		    &c->fl->c[c->fl->members[i][0]] == c) {
			c->fl->gid[i] = r->group;
		}
	}
}

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	fl *f = w->data;
	double now = ev_now(loop);
	uint32_t i;
	char body[64];
	uint64_t dedup;
	int n;

	(void)revents;
	if (!f->sending) {
		return;
	}
	for (i = 0; i < f->k; i++) {
		fl_client *c = &f->c[i];
		im_gid gid;

		if (c->ngroups == 0 || now < c->next_send ||
		    im_client_outbox_count(c->cl) >= f->inflight) {
			continue;
		}
		gid = f->gid[c->groups[rnd(f) % c->ngroups]];
		n = snprintf(body, sizeof(body), "u%llu n%llu",
			     (unsigned long long)c->uid,
			     (unsigned long long)f->sends);
		if (im_client_send(c->cl, gid, body, (size_t)n, &dedup) !=
		    IM_OK) {
			continue;
		}
		f->sends++;
		fprintf(f->out, "S %llu %llu %llu %llu\n",
			(unsigned long long)now_ms(),
			(unsigned long long)c->uid, (unsigned long long)gid,
			(unsigned long long)dedup);
		/* jittered so clients do not move in lock step */
		c->next_send = now + f->interval * (0.5 + (double)(rnd(f) %
							   1000) / 1000.0);
	}
}

/* ---- membership churn and reads ---------------------------------------- */

/* The creator of group g: it adds and removes the churn users. */
static fl_client *
creator_of(fl *f, uint32_t g)
{
	return &f->c[f->members[g][0]];
}

/* Whether r answers a churn change (then it is taken into account). */
static bool
churn_answered(fl *f, fl_client *c, const im_client_reply *r)
{
	uint32_t i;

	for (i = 0; i < f->nchurn; i++) {
		fl_churn *ch = &f->churn[i];

		if (!ch->pending || ch->req != r->req_id ||
		    creator_of(f, ch->group) != c) {
			continue;
		}
		ch->pending = false;
		if (r->kind == IM_CLIENT_REPLY_DONE) {
			ch->done = true;
			/* held in (or out) about a second */
			ch->next = ev_now(f->loop) + 0.5 +
				   (double)(rnd(f) % 1000) / 1000.0;
		} else {
			/* not done (refused, or unknown): ask again soon */
			ch->next = ev_now(f->loop) + 0.2;
		}
		return true;
	}
	return false;
}

/* Ask a churn user's next change, or the same again after a failure.
 * Once the load stops, only a change not yet done is asked again. */
static void
churn_step(fl *f, fl_churn *ch, double now)
{
	fl_client *cr;
	uint64_t req = 0;
	int rc;

	if (ch->pending || now < ch->next || (ch->done && !f->sending)) {
		return;
	}
	if (ch->done) {
		/* the next change: out of this group, or into the next */
		if (!ch->in) {
			ch->group = (ch->group + 1) % f->g;
		}
		ch->in = !ch->in;
		ch->done = false;
	}
	cr = creator_of(f, ch->group);
	rc = ch->in ? im_client_add_member(cr->cl, f->gid[ch->group],
					   f->c[ch->client].uid, &req)
		    : im_client_remove_member(cr->cl, f->gid[ch->group],
					      f->c[ch->client].uid, &req);
	if (rc != IM_OK) {
		ch->next = now + 0.2; /* not connected: later */
		return;
	}
	ch->pending = true;
	ch->req = req;
	fprintf(f->out, "B %llu %llu %llu %llu %s %llu\n",
		(unsigned long long)now_ms(), (unsigned long long)cr->uid,
		(unsigned long long)f->gid[ch->group],
		(unsigned long long)f->c[ch->client].uid,
		ch->in ? "add" : "remove", (unsigned long long)req);
}

/* A client marks one of its groups read up to what it has seen. */
static void
read_step(fl *f, fl_client *c, double now)
{
	uint64_t req = 0;
	im_gid gid;
	im_seq seq;

	if (f->read_every <= 0 || c->ngroups == 0 || now < c->next_read) {
		return;
	}
	c->next_read = now + f->read_every * (0.5 + (double)(rnd(f) % 1000) /
						    1000.0);
	gid = f->gid[c->groups[rnd(f) % c->ngroups]];
	seq = im_client_cursor(c->cl, gid);
	if (seq == 0 || im_client_mark_read(c->cl, gid, seq, &req) != IM_OK) {
		return;
	}
	c->reads_out++;
	fprintf(f->out, "K %llu %llu %llu %llu %llu\n",
		(unsigned long long)now_ms(), (unsigned long long)c->uid,
		(unsigned long long)gid, (unsigned long long)seq,
		(unsigned long long)req);
}

static void
churn_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	fl *f = w->data;
	double now = ev_now(loop);
	uint32_t i;

	(void)revents;
	for (i = 0; i < f->nchurn; i++) {
		churn_step(f, &f->churn[i], now);
	}
	for (i = 0; f->sending && i < f->k; i++) {
		read_step(f, &f->c[i], now);
	}
}

/* Every churn change asked was answered done. */
static bool
churn_settled(fl *f)
{
	uint32_t i;

	for (i = 0; i < f->nchurn; i++) {
		if (f->churn[i].pending || !f->churn[i].done) {
			return false;
		}
	}
	return true;
}

static int
dump_member(im_uid user, void *payload)
{
	fprintf(payload, " %llu", (unsigned long long)user);
	return 0;
}

typedef struct conv_dump {
	FILE *out;
	im_uid uid;
} conv_dump;

static int
dump_conv(const im_conv_row *row, void *payload)
{
	conv_dump *d = payload;

	fprintf(d->out, "P %llu %llu %llu %llu %llu %llu\n",
		(unsigned long long)d->uid, (unsigned long long)row->conv,
		(unsigned long long)row->read_seq,
		(unsigned long long)row->read_ordinal,
		(unsigned long long)row->last.seq,
		(unsigned long long)row->last.ordinal);
	return 0;
}

/* The end state: members per group and the read pointers as stored, and
 * the conversations as each (non-churn) client sees them. */
static int
dump_state(fl *f, im_store *st)
{
	im_client_conv cv;
	uint32_t i, j;
	int rc;

	for (i = 0; i < f->g; i++) {
		fprintf(f->out, "N %llu", (unsigned long long)f->gid[i]);
		rc = im_store_member_list(st, f->gid[i], dump_member, f->out);
		fprintf(f->out, "\n");
		if (rc != IM_OK) {
			return rc;
		}
	}
	for (i = 0; i < f->k; i++) {
		conv_dump d = {f->out, f->c[i].uid};

		if ((rc = im_store_conv_load(st, f->c[i].uid, dump_conv, &d)) !=
		    IM_OK) {
			return rc;
		}
		for (j = 0; j < f->c[i].ngroups; j++) {
			if (im_client_conv_lookup(f->c[i].cl,
						  f->gid[f->c[i].groups[j]],
						  &cv) != IM_OK) {
				continue;
			}
			fprintf(f->out,
				"U %llu %llu %llu %llu %llu %llu %llu\n",
				(unsigned long long)f->c[i].uid,
				(unsigned long long)cv.group,
				(unsigned long long)cv.read_seq,
				(unsigned long long)cv.read_ordinal,
				(unsigned long long)cv.last_seq,
				(unsigned long long)cv.last_ordinal,
				(unsigned long long)cv.unread);
		}
	}
	return IM_OK;
}

typedef bool (*fl_pred)(fl *f, void *arg);

/* Run the loop until pred holds or timeout_s passes. */
static bool
run_until(fl *f, double timeout_s, fl_pred pred, void *arg)
{
	double end = ev_time() + timeout_s;

	while (!pred(f, arg)) {
		if (ev_time() >= end) {
			return false;
		}
		ev_run(f->loop, EVRUN_ONCE);
	}
	return true;
}

static bool
all_connected(fl *f, void *arg)
{
	uint32_t i;

	(void)arg;
	for (i = 0; i < f->k + f->nchurn; i++) {
		if (im_client_get_state(f->c[i].cl) != IM_CLIENT_CONNECTED) {
			return false;
		}
	}
	return true;
}

static bool
all_created(fl *f, void *arg)
{
	uint32_t i;

	(void)arg;
	for (i = 0; i < f->g; i++) {
		if (f->gid[i] == 0) {
			return false;
		}
	}
	return true;
}

static bool
all_know_groups(fl *f, void *arg)
{
	im_client_conv cv;
	uint32_t i, j;

	(void)arg;
	for (i = 0; i < f->k; i++) {
		for (j = 0; j < f->c[i].ngroups; j++) {
			if (im_client_conv_lookup(f->c[i].cl,
						  f->gid[f->c[i].groups[j]],
						  &cv) != IM_OK) {
				return false;
			}
		}
	}
	return true;
}

static bool
drained(fl *f, void *arg)
{
	uint32_t i;

	(void)arg;
	if (!all_connected(f, NULL)) {
		return false;
	}
	for (i = 0; i < f->k; i++) {
		if (im_client_outbox_count(f->c[i].cl) != 0 ||
		    f->c[i].reads_out != 0) {
			return false;
		}
	}
	return churn_settled(f);
}

/* every member's cursor reached the store's last seq of the group, and
 * every client's user-queue cursor its queue's last seq (uq_last, after
 * the FL_MAX_GROUPS group entries of last) */
static bool
caught_up(fl *f, void *arg)
{
	const im_seq *last = arg;
	uint32_t i, j;

	for (i = 0; i < f->k; i++) {
		if (im_client_cursor(f->c[i].cl, 0) <
		    last[FL_MAX_GROUPS + i]) {
			return false;
		}
		for (j = 0; j < f->c[i].ngroups; j++) {
			uint32_t g = f->c[i].groups[j];

			if (im_client_cursor(f->c[i].cl, f->gid[g]) <
			    last[g]) {
				return false;
			}
		}
	}
	return true;
}

typedef struct dump_ctx {
	FILE *out;
	im_seq last;
	uint32_t n;
} dump_ctx;

static int
on_msg(const im_msg *m, void *payload)
{
	dump_ctx *d = payload;

	if (d->out != NULL) {
		fprintf(d->out, "M %llu %llu %llu %llu %llu\n",
			(unsigned long long)m->conv,
			(unsigned long long)m->seq,
			(unsigned long long)m->prev_seq,
			(unsigned long long)m->sender,
			(unsigned long long)m->dedup_id);
	}
	d->last = m->seq;
	d->n++;
	return 0;
}

/* Read every message of gid (paged); out NULL only finds the last seq. */
static int
read_group(im_store *st, im_gid gid, FILE *out, im_seq *last_out)
{
	dump_ctx d = {out, 0, 0};
	int rc;

	for (;;) {
		d.n = 0;
		rc = im_store_msg_read(st, gid, d.last, IM_SEQ_MAX, 1000,
				       on_msg, &d);
		if (rc != IM_OK) {
			return rc;
		}
		if (d.n < 1000) {
			break;
		}
	}
	*last_out = d.last;
	return IM_OK;
}

static int
open_store(const char *s, im_store **st)
{
	char err[256] = "";
	int rc;

	if (strchr(s, '=') != NULL) {
		rc = im_store_pg_open(st, s, NULL, err, sizeof(err));
	} else {
		rc = im_store_sqlite_open(st, s, NULL, err, sizeof(err));
	}
	if (rc != IM_OK) {
		fprintf(stderr, "fault_load: store %s: %s %s\n", s,
			im_strerror(rc), err);
	}
	return rc;
}

static void
usage(void)
{
	fprintf(stderr,
		"usage: fault_load --ports P[,P...] --secret-file F "
		"--store S --out FILE\n"
		"  [--clients K] [--groups G] [--members M] "
		"[--duration S] [--drain S]\n"
		"  [--interval-ms MS] [--inflight N] [--seed N] "
		"[--base-uid U]\n"
		"  [--churn N] [--read-ms MS]\n");
}

int
main(int argc, char **argv)
{
	static fl f;
	const char *store = NULL, *secret_file = NULL, *out = NULL;
	char secret[256] = "", tok[IM_TOKEN_BUF], *p;
	double duration = 10, drain = 20, t_end;
	uint64_t seed = 1, base_uid = 1000;
	static im_seq last[FL_MAX_GROUPS + FL_MAX_CLIENTS];
	static char addr[FL_MAX_PORTS][32];
	uint32_t i, j;
	im_store *st = NULL;
	FILE *sf;
	ev_timer tick, churn_tick;
	int rc = 1;

	f.k = 8;
	f.g = 4;
	f.m = 3;
	f.interval = 0.1;
	f.inflight = 2;
	f.nchurn = 2;
	f.read_every = 0.5;
	for (i = 1; i + 1 < (uint32_t)argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];

		if (strcmp(k, "--ports") == 0) {
			for (p = (char *)v; *p != '\0' &&
					    f.nports < FL_MAX_PORTS;) {
				f.ports[f.nports++] =
					(uint16_t)strtoul(p, &p, 10);
				if (*p == ',') {
					p++;
				}
			}
		} else if (strcmp(k, "--secret-file") == 0) {
			secret_file = v;
		} else if (strcmp(k, "--store") == 0) {
			store = v;
		} else if (strcmp(k, "--out") == 0) {
			out = v;
		} else if (strcmp(k, "--clients") == 0) {
			f.k = (uint32_t)strtoul(v, NULL, 10);
		} else if (strcmp(k, "--groups") == 0) {
			f.g = (uint32_t)strtoul(v, NULL, 10);
		} else if (strcmp(k, "--members") == 0) {
			f.m = (uint32_t)strtoul(v, NULL, 10);
		} else if (strcmp(k, "--duration") == 0) {
			duration = strtod(v, NULL);
		} else if (strcmp(k, "--drain") == 0) {
			drain = strtod(v, NULL);
		} else if (strcmp(k, "--interval-ms") == 0) {
			f.interval = strtod(v, NULL) / 1000.0;
		} else if (strcmp(k, "--inflight") == 0) {
			f.inflight = (uint32_t)strtoul(v, NULL, 10);
		} else if (strcmp(k, "--seed") == 0) {
			seed = strtoull(v, NULL, 10);
		} else if (strcmp(k, "--base-uid") == 0) {
			base_uid = strtoull(v, NULL, 10);
		} else if (strcmp(k, "--churn") == 0) {
			f.nchurn = (uint32_t)strtoul(v, NULL, 10);
		} else if (strcmp(k, "--read-ms") == 0) {
			f.read_every = strtod(v, NULL) / 1000.0;
		} else {
			usage();
			return 2;
		}
	}
	if (i != (uint32_t)argc || store == NULL || secret_file == NULL ||
	    out == NULL || f.nports == 0 || f.k == 0 ||
	    f.k > FL_MAX_CLIENTS || f.g == 0 || f.g > FL_MAX_GROUPS ||
	    f.m == 0 || f.m > FL_MAX_MEMBERS || f.m > f.k ||
	    f.inflight == 0 || f.nchurn > FL_MAX_CHURN) {
		usage();
		return 2;
	}
	sf = fopen(secret_file, "r");
	if (sf == NULL || fgets(secret, sizeof(secret), sf) == NULL) {
		fprintf(stderr, "fault_load: %s: %s\n", secret_file,
			strerror(errno));
		return 1;
	}
	fclose(sf);
	secret[strcspn(secret, "\n")] = '\0';
	f.out = fopen(out, "w");
	if (f.out == NULL) {
		fprintf(stderr, "fault_load: %s: %s\n", out, strerror(errno));
		return 1;
	}
	setvbuf(f.out, NULL, _IOLBF, 0);
	f.rng = seed * 0x9e3779b97f4a7c15ULL + 1;
	f.loop = ev_default_loop(0);
	/* group g: members (g * m + j) % k for j < m */
	for (i = 0; i < f.g; i++) {
		for (j = 0; j < f.m; j++) {
			uint32_t c = (i * f.m + j) % f.k;

			f.members[i][j] = c;
			if (f.c[c].ngroups < FL_MAX_GROUPS) {
				f.c[c].groups[f.c[c].ngroups++] = i;
			}
		}
	}
	for (i = 0; i < f.nports; i++) {
		snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%u",
			 (unsigned)f.ports[i]);
	}
	for (i = 0; i < f.nchurn; i++) {
		f.churn[i].client = f.k + i;
		f.churn[i].group = i % f.g;
		f.churn[i].in = false; /* the first change is an add */
		f.churn[i].done = true;
		f.c[f.k + i].churner = true;
	}
	for (i = 0; i < f.k + f.nchurn; i++) {
		im_client_opts o = IM_CLIENT_OPTS_INIT;
		const char *srv[FL_MAX_PORTS];

		f.c[i].fl = &f;
		f.c[i].uid = base_uid + i;
		if (im_token_mint(tok, sizeof(tok), secret, strlen(secret),
				  f.c[i].uid, (uint64_t)time(NULL) + 3600) !=
		    IM_OK) {
			fprintf(stderr, "fault_load: token\n");
			return 1;
		}
		/* Every Connector, starting at a different one per client
		 * (the owner's Connector redirects the others): clients of
		 * a dead Connector go on to the next one. */
		for (j = 0; j < f.nports; j++) {
			srv[j] = addr[(i + j) % f.nports];
		}
		o.servers = srv;
		o.nservers = f.nports;
		o.token = tok;
		o.device = "fault_load";
		o.seed = seed * 1000003u + i + 1;
		o.backoff_min_ms = 50;
		o.backoff_max_ms = 500;
		/* ping_ms: the library's default (IM_CLIENT_PING_MS), as a
		 * real client has it: a hung Connector is left within 15 s. */
		o.login_timeout_ms = 3000;
		o.cb.on_deliver = on_deliver;
		o.cb.on_ack = on_ack;
		o.cb.on_error = on_error;
		o.cb.on_state = on_state;
		o.cb.on_reply = on_reply;
		o.cb.on_event = on_event;
		o.payload = &f.c[i];
		if (im_client_create(&f.c[i].cl, &o) != IM_OK ||
		    im_client_attach(f.c[i].cl, f.loop) != IM_OK ||
		    im_client_connect(f.c[i].cl) != IM_OK) {
			fprintf(stderr, "fault_load: client %u\n", i);
			goto out;
		}
	}
	if (!run_until(&f, 30, all_connected, NULL)) {
		fprintf(stderr, "fault_load: clients did not connect\n");
		goto out;
	}
	for (i = 0; i < f.g; i++) {
		im_uid mem[FL_MAX_MEMBERS];
		char name[32];
		fl_client *cr = &f.c[f.members[i][0]];

		for (j = 0; j < f.m; j++) {
			mem[j] = f.c[f.members[i][j]].uid;
		}
		snprintf(name, sizeof(name), "fault-%u", i);
		if (im_client_create_group(cr->cl, name, mem + 1, f.m - 1,
					   &f.req[i]) != IM_OK) {
			fprintf(stderr, "fault_load: create group %u\n", i);
			goto out;
		}
	}
	if (!run_until(&f, 30, all_created, NULL)) {
		fprintf(stderr, "fault_load: groups not created\n");
		goto out;
	}
	for (i = 0; i < f.g; i++) {
		fprintf(f.out, "G %llu", (unsigned long long)f.gid[i]);
		for (j = 0; j < f.m; j++) {
			fprintf(f.out, " %llu",
				(unsigned long long)f.c[f.members[i][j]].uid);
		}
		fprintf(f.out, "\n");
	}
	if (!run_until(&f, 30, all_know_groups, NULL)) {
		fprintf(stderr, "fault_load: members did not see groups\n");
		goto out;
	}
	fprintf(f.out, "X %llu load\n", (unsigned long long)now_ms());
	fprintf(stderr, "fault_load: load for %.0f s\n", duration);
	ev_timer_init(&tick, tick_cb, 0.005, 0.005);
	tick.data = &f;
	ev_timer_start(f.loop, &tick);
	ev_timer_init(&churn_tick, churn_tick_cb, 0.05, 0.05);
	churn_tick.data = &f;
	ev_timer_start(f.loop, &churn_tick);
	for (i = 0; i < f.nchurn; i++) {
		/* the first change once the load runs, spread over 1 s */
		f.churn[i].next = ev_now(f.loop) + (double)i / f.nchurn;
		f.churn[i].group = (f.churn[i].group + f.g - 1) % f.g;
	}
	f.sending = true;
	t_end = ev_time() + duration;
	while (ev_time() < t_end) {
		ev_run(f.loop, EVRUN_ONCE);
	}
	f.sending = false;
	ev_timer_stop(f.loop, &tick);
	fprintf(f.out, "X %llu drain\n", (unsigned long long)now_ms());
	t_end = ev_time() + drain;
	if (!run_until(&f, drain, drained, NULL)) {
		fprintf(stderr, "fault_load: sends not all acked after "
				"%.0f s (the checker reports them)\n",
			drain);
	}
	if (open_store(store, &st) != IM_OK) {
		goto out;
	}
	for (i = 0; i < f.g; i++) {
		if (read_group(st, f.gid[i], NULL, &last[i]) != IM_OK) {
			fprintf(stderr, "fault_load: read: %s\n",
				im_store_errmsg(st));
			goto out;
		}
	}
	for (i = 0; i < f.k; i++) {
		if (im_store_uq_last(st, f.c[i].uid,
				     &last[FL_MAX_GROUPS + i]) != IM_OK) {
			fprintf(stderr, "fault_load: user queue: %s\n",
				im_store_errmsg(st));
			goto out;
		}
	}
	if (!run_until(&f, t_end - ev_time() > 5 ? t_end - ev_time() : 5,
		       caught_up, last)) {
		fprintf(stderr, "fault_load: members did not catch up "
				"(the checker reports them)\n");
	}
	ev_timer_stop(f.loop, &churn_tick);
	fprintf(f.out, "X %llu done\n", (unsigned long long)now_ms());
	if (dump_state(&f, st) != IM_OK) {
		fprintf(stderr, "fault_load: end state: %s\n",
			im_store_errmsg(st));
		goto out;
	}
	for (i = 0; i < f.g; i++) {
		if (read_group(st, f.gid[i], f.out, &last[i]) != IM_OK) {
			fprintf(stderr, "fault_load: read: %s\n",
				im_store_errmsg(st));
			goto out;
		}
	}
	fprintf(stderr, "fault_load: %llu sends, %llu acks, %llu delivers\n",
		(unsigned long long)f.sends, (unsigned long long)f.acks,
		(unsigned long long)f.delivers);
	rc = 0;
out:
	im_store_close(st);
	for (i = 0; i < f.k + f.nchurn; i++) {
		im_client_destroy(f.c[i].cl);
	}
	if (f.out != NULL) {
		fclose(f.out);
	}
	return rc;
}
