/*
 * Resume after the session is lost, through the real client library
 * (im_client) against a real imd (or the cluster: IM_TEST_TARGET, see
 * harness.h). User 2 goes away, the server forgets the session (a short
 * grace), more than replay_limit (256) messages or user events pile up,
 * and user 2 comes back: the server replays 256 and says where it cut
 * (ResumeOk.replay_ends); the client must Sync the rest by itself, so
 * every message and event arrives, in order, once, with no Sync asked
 * for by the test. Likewise the messages of a group created or joined
 * while away, which no cursor of the Resume covers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "im/client.h"

#define T H_TIMEOUT_MS
#define AWAY_N 300 /* over replay_limit's default of 256 */

/* The session of a client that went away is gone 0.3 s later. */
static const char *const short_grace[] = {"--grace", "0.3", NULL};

/* What one client saw. */
struct seen {
	im_gid watch; /* the group whose messages are recorded */
	size_t ndeliv, nhist;
	im_seq seqs[AWAY_N + 8];
	char bodies[AWAY_N + 8][16];
	bool chain_ok; /* every prev_seq was the seq delivered before */
	im_seq last;
	size_t nevents;
	im_seq evseqs[AWAY_N + 8];
	uint32_t evtypes[AWAY_N + 8];
	bool ev_order_ok;
	im_gid created; /* the last CREATED reply */
	size_t nreplies;
};

struct fixture {
	imd_proc imd;
	im_client *cl[2];
	struct seen seen[2];
};

static void
on_deliver(im_client *cl, const im_client_msg *m, void *payload)
{
	struct seen *s = payload;
	size_t i = s->ndeliv;

	(void)cl;
	if (m->history) {
		s->nhist++;
		return;
	}
	if (m->group != s->watch) {
		return;
	}
	if (m->prev_seq != s->last) {
		s->chain_ok = false;
	}
	s->last = m->seq;
	if (i < AWAY_N + 8) {
		s->seqs[i] = m->seq;
		snprintf(s->bodies[i], sizeof(s->bodies[i]), "%.*s",
		         (int)(m->body_len < 15 ? m->body_len : 15),
		         (const char *)m->body);
	}
	s->ndeliv++;
}

static void
on_event(im_client *cl, const im_client_event *ev, void *payload)
{
	struct seen *s = payload;
	size_t i = s->nevents;

	(void)cl;
	if (i > 0 && i < AWAY_N + 8 && ev->seq <= s->evseqs[i - 1]) {
		s->ev_order_ok = false;
	}
	if (i < AWAY_N + 8) {
		s->evseqs[i] = ev->seq;
		s->evtypes[i] = ev->type;
	}
	s->nevents++;
}

static void
on_reply(im_client *cl, const im_client_reply *r, void *payload)
{
	struct seen *s = payload;

	(void)cl;
	if (r->kind == IM_CLIENT_REPLY_CREATED) {
		s->created = r->group;
	}
	s->nreplies++;
}

static im_client *
client_for(struct fixture *f, uint64_t uid)
{
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	struct seen *s = &f->seen[uid - 1];
	char tok[IM_TOKEN_BUF];
	im_client *cl;

	imd_token(&f->imd, uid, 3600, tok, sizeof(tok));
	s->chain_ok = true;
	s->ev_order_ok = true;
	o.port = f->imd.port;
	o.token = tok;
	o.device = "test_client_resume";
	o.seed = uid;
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 500;
	o.cb.on_deliver = on_deliver;
	o.cb.on_event = on_event;
	o.cb.on_reply = on_reply;
	o.payload = s;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	assert_int_equal(im_client_connect_wait(cl, T), IM_OK);
	return cl;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL || imd_init(&f->imd, short_grace) != 0 ||
	    imd_start(&f->imd) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	int status;

	im_client_destroy(f->cl[0]);
	im_client_destroy(f->cl[1]);
	status = imd_cleanup(&f->imd);
	free(f);
	return status == 0 ? 0 : -1;
}

/* Create a group of user 1 with user 2 in it; its id. */
static im_gid
create_group(struct fixture *f, const char *name)
{
	im_uid two = 2;
	uint64_t req;
	int err = IM_ERR;

	f->seen[0].created = 0;
	assert_int_equal(
	        im_client_create_group(f->cl[0], name, &two, 1, &req), IM_OK);
	assert_int_equal(im_client_wait_reply(f->cl[0], req, T, &err), IM_OK);
	assert_int_equal(err, IM_OK);
	assert_true(f->seen[0].created != 0);
	return f->seen[0].created;
}

static bool
knows_group(im_client *cl, void *arg)
{
	return im_client_conv_lookup(cl, *(im_gid *)arg, NULL) == IM_OK;
}

/* User 2 goes away; the server forgets the session (grace 0.3 s). The
 * client keeps its session id and cursors: it resumes on the way back. */
static void
user2_away(struct fixture *f)
{
	im_client_close(f->cl[1]);
	(void)im_client_run_until(f->cl[0], 1200, NULL, NULL);
}

/* Users 1 and 2 connected, with a group of both that user 2 knows of;
 * then user 2 goes away. The group's id. */
static im_gid
group_then_user2_away(struct fixture *f)
{
	im_gid g;

	f->cl[0] = client_for(f, 1);
	f->cl[1] = client_for(f, 2);
	g = create_group(f, "before");
	assert_int_equal(im_client_run_until(f->cl[1], T, knows_group, &g),
	                 IM_OK);
	user2_away(f);
	return g;
}

static bool
delivered_all(im_client *cl, void *arg)
{
	struct seen *s = arg;

	(void)cl;
	return s->ndeliv >= AWAY_N;
}

static bool
delivered_5(im_client *cl, void *arg)
{
	(void)cl;
	return ((struct seen *)arg)->ndeliv >= 5;
}

/* Did any process of the target log needle? */
static bool
log_has(const imd_proc *p, const char *needle)
{
	const char *logs[H_NODES + 1];
	size_t n = 0, i;
	char line[1024];

	logs[n++] = p->log;
	for (i = 0; p->cluster && i < H_NODES; i++) {
		logs[n++] = p->nodes[i].log;
	}
	for (i = 0; i < n; i++) {
		FILE *fp = fopen(logs[i], "r");

		if (fp == NULL) {
			continue;
		}
		while (fgets(line, sizeof(line), fp) != NULL) {
			if (strstr(line, needle) != NULL) {
				fclose(fp);
				return true;
			}
		}
		fclose(fp);
	}
	return false;
}

static void
test_client_resume_gets_every_message_sent_while_away(void **state)
{
	struct fixture *f = *state;
	struct seen *s2 = &f->seen[1];
	char body[16];
	im_gid g;
	size_t i;

	g = group_then_user2_away(f);
	s2->watch = g;
	for (i = 0; i < AWAY_N; i++) {
		snprintf(body, sizeof(body), "m%03zu", i);
		assert_int_equal(im_client_send_wait(f->cl[0], g, body,
		                                     strlen(body), T, NULL),
		                 IM_OK);
	}
	/* Back: a Resume, and nothing else from the test. */
	assert_int_equal(im_client_connect_wait(f->cl[1], T), IM_OK);
	assert_int_equal(
	        im_client_run_until(f->cl[1], 3 * T, delivered_all, s2), IM_OK);
	(void)im_client_run_until(f->cl[1], 300, NULL, NULL); /* no more */
	assert_int_equal(s2->ndeliv, AWAY_N);
	assert_int_equal(s2->nhist, 0);
	assert_true(s2->chain_ok);
	for (i = 0; i < AWAY_N; i++) {
		snprintf(body, sizeof(body), "m%03zu", i);
		assert_string_equal(s2->bodies[i], body);
		assert_true(i == 0 || s2->seqs[i] > s2->seqs[i - 1]);
	}
	assert_int_equal(im_client_cursor(f->cl[1], g), s2->seqs[AWAY_N - 1]);
	/* It was the store's replay, cut at replay_limit, that it repaired. */
	assert_true(log_has(&f->imd, "replay cut short"));
}

static bool
events_at_least(im_client *cl, void *arg)
{
	(void)cl;
	return ((struct seen *)arg)->nevents >= AWAY_N;
}

static void
test_client_resume_gets_every_user_event_of_the_time_away(void **state)
{
	struct fixture *f = *state;
	struct seen *s2 = &f->seen[1];
	im_gid g = 0;
	char name[32];
	size_t i, before;

	(void)group_then_user2_away(f);
	before = s2->nevents;
	s2->nevents = 0;
	for (i = 0; i < AWAY_N; i++) {
		snprintf(name, sizeof(name), "g%03zu", i);
		g = create_group(f, name);
	}
	assert_int_equal(im_client_connect_wait(f->cl[1], T), IM_OK);
	assert_int_equal(
	        im_client_run_until(f->cl[1], 3 * T, events_at_least, s2),
	        IM_OK);
	(void)im_client_run_until(f->cl[1], 300, NULL, NULL); /* no more */
	assert_int_equal(s2->nevents, AWAY_N);
	assert_true(s2->ev_order_ok);
	for (i = 0; i < AWAY_N; i++) {
		assert_int_equal(s2->evtypes[i], IM_CLIENT_EV_GROUP_CREATED);
	}
	assert_true(before >= 1);
	assert_int_equal(im_client_conv_lookup(f->cl[1], g, NULL), IM_OK);
	assert_int_equal(im_client_cursor(f->cl[1], 0),
	                 s2->evseqs[AWAY_N - 1]);
	assert_true(log_has(&f->imd, "replay cut short"));
}

/* A group created while user 2 was away, with messages in it: no cursor
 * of user 2 replays it, so the client Syncs it from its start. */
static void
test_client_resume_gets_the_messages_of_a_group_created_while_away(
        void **state)
{
	struct fixture *f = *state;
	struct seen *s2 = &f->seen[1];
	im_gid g;
	char body[16];
	size_t i;

	(void)group_then_user2_away(f);
	g = create_group(f, "new while away");
	s2->watch = g;
	for (i = 0; i < 5; i++) {
		snprintf(body, sizeof(body), "n%zu", i);
		assert_int_equal(im_client_send_wait(f->cl[0], g, body,
		                                     strlen(body), T, NULL),
		                 IM_OK);
	}
	assert_int_equal(im_client_connect_wait(f->cl[1], T), IM_OK);
	assert_int_equal(im_client_run_until(f->cl[1], T, delivered_5, s2),
	                 IM_OK);
	(void)im_client_run_until(f->cl[1], 300, NULL, NULL); /* no more */
	assert_int_equal(s2->ndeliv, 5);
	assert_true(s2->chain_ok);
	for (i = 0; i < 5; i++) {
		snprintf(body, sizeof(body), "n%zu", i);
		assert_string_equal(s2->bodies[i], body);
	}
}

/* A group user 2 was ADDED to while away, with messages before and after
 * the join: the client Syncs from the join's read pointer (EV_JOINED
 * carries it), so the messages after the join arrive, chained, and none
 * from before. It used to wait for the next message sent. */
static void
test_client_resume_gets_the_messages_of_a_group_joined_while_away(
        void **state)
{
	struct fixture *f = *state;
	struct seen *s2 = &f->seen[1];
	im_seq last_before = 0;
	uint64_t req;
	int err = IM_ERR;
	im_gid g;
	char body[16];
	size_t i;

	(void)group_then_user2_away(f);
	f->seen[0].created = 0;
	assert_int_equal(im_client_create_group(f->cl[0], "joined while away",
	                                        NULL, 0, &req),
	                 IM_OK);
	assert_int_equal(im_client_wait_reply(f->cl[0], req, T, &err), IM_OK);
	assert_int_equal(err, IM_OK);
	g = f->seen[0].created;
	assert_true(g != 0);
	for (i = 0; i < 3; i++) {
		snprintf(body, sizeof(body), "b%zu", i);
		assert_int_equal(im_client_send_wait(f->cl[0], g, body,
		                                     strlen(body), T,
		                                     &last_before),
		                 IM_OK);
	}
	assert_int_equal(im_client_add_member(f->cl[0], g, 2, &req), IM_OK);
	assert_int_equal(im_client_wait_reply(f->cl[0], req, T, &err), IM_OK);
	assert_int_equal(err, IM_OK);
	for (i = 0; i < 5; i++) {
		snprintf(body, sizeof(body), "n%zu", i);
		assert_int_equal(im_client_send_wait(f->cl[0], g, body,
		                                     strlen(body), T, NULL),
		                 IM_OK);
	}
	s2->watch = g;
	s2->last = last_before; /* the chain starts at the join */
	assert_int_equal(im_client_connect_wait(f->cl[1], T), IM_OK);
	assert_int_equal(im_client_run_until(f->cl[1], T, delivered_5, s2),
	                 IM_OK);
	(void)im_client_run_until(f->cl[1], 300, NULL, NULL); /* no more */
	assert_int_equal(s2->ndeliv, 5);
	assert_true(s2->chain_ok);
	for (i = 0; i < 5; i++) {
		snprintf(body, sizeof(body), "n%zu", i);
		assert_string_equal(s2->bodies[i], body);
	}
	assert_int_equal(im_client_cursor(f->cl[1], g), s2->seqs[4]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(
	                test_client_resume_gets_every_message_sent_while_away,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_client_resume_gets_every_user_event_of_the_time_away,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_client_resume_gets_the_messages_of_a_group_created_while_away,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_client_resume_gets_the_messages_of_a_group_joined_while_away,
	                setup, teardown),
	};

	return cmocka_run_group_tests_name("system_client_resume", tests, NULL,
	                                   NULL);
}
