/*
 * End-to-end chat against a real imd: every test starts its own server
 * (temp database, free port) and ends it with SIGTERM, which must exit 0
 * (under the sanitizer build: also without leaks).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include <pb_encode.h>

#include "harness.h"
#include "im/frame.h"

#define T H_TIMEOUT_MS

struct fixture {
	imd_proc imd;
};

static const char *const small_segments[] = {"--seq-step", "4", "--uq-step",
                                             "4", NULL};

static int
setup_with(void **state, const char *const *extra)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL || imd_init(&f->imd, extra) != 0 ||
	    imd_start(&f->imd) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
setup(void **state)
{
	return setup_with(state, small_segments);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	int status = imd_cleanup(&f->imd);

	free(f);
	/* A clean SIGTERM exit is part of every test. */
	return status == 0 ? 0 : -1;
}

static void
login_as(struct fixture *f, tclient *c, uint64_t uid, im_ConvInfo *convs,
         size_t max, size_t *n)
{
	char tok[IM_TOKEN_BUF];

	imd_token(&f->imd, uid, 3600, tok, sizeof(tok));
	assert_int_equal(tc_connect(c, f->imd.port), 0);
	assert_int_equal(tc_login(c, tok, convs, max, n), 1);
	assert_int_equal(c->user, uid);
}

/* The next Deliver of group (skipping user events). */
static void
expect_deliver(tclient *c, uint64_t group, uint64_t seq, const char *body)
{
	tpush p;
	int i;

	for (i = 0; i < 100; i++) {
		assert_int_equal(tc_next_push(c, &p, T), 1);
		if (p.kind == im_Envelope_deliver_tag) {
			break;
		}
	}
	assert_int_equal(p.kind, im_Envelope_deliver_tag);
	assert_int_equal(p.group, group);
	assert_int_equal(p.seq, seq);
	assert_string_equal(p.body, body);
}

static void
expect_event(tclient *c, uint32_t type, uint64_t group, tpush *out)
{
	tpush p;
	int i;

	for (i = 0; i < 100; i++) {
		assert_int_equal(tc_next_push(c, &p, T), 1);
		if (p.kind == im_Envelope_user_event_tag && p.ev_type == type &&
		    p.group == group) {
			if (out != NULL) {
				*out = p;
			}
			return;
		}
	}
	fail_msg("event %u of group %llu not seen", type,
	         (unsigned long long)group);
}

static void
test_system_two_users_chat_both_ways(void **state)
{
	struct fixture *f = *state;
	tclient a, b;
	uint64_t members[] = {2};
	int64_t g, s1, s2;
	tpush p;

	login_as(f, &a, 1, NULL, 0, NULL);
	login_as(f, &b, 2, NULL, 0, NULL);
	g = tc_create_group(&a, "ab", members, 1);
	assert_true(g > 0);
	expect_event(&a, im_EventType_EV_GROUP_CREATED, (uint64_t)g, NULL);
	expect_event(&b, im_EventType_EV_GROUP_CREATED, (uint64_t)g, &p);
	assert_int_equal(p.actor, 1);

	s1 = tc_send_msg(&a, (uint64_t)g, 1, "hello b", NULL);
	assert_true(s1 > 0);
	expect_deliver(&b, (uint64_t)g, (uint64_t)s1, "hello b");
	/* The sender's own sessions get it too (unbroken prev_seq chain). */
	expect_deliver(&a, (uint64_t)g, (uint64_t)s1, "hello b");

	s2 = tc_send_msg(&b, (uint64_t)g, 1, "hello a", NULL);
	assert_true(s2 > s1);
	expect_deliver(&a, (uint64_t)g, (uint64_t)s2, "hello a");
	expect_deliver(&b, (uint64_t)g, (uint64_t)s2, "hello a");
	tc_close(&a);
	tc_close(&b);
}

static void
test_system_deliveries_chain_by_prev_seq(void **state)
{
	struct fixture *f = *state;
	tclient a, b;
	uint64_t members[] = {2};
	int64_t g, seqs[10];
	uint64_t prev = 0;
	int i;

	login_as(f, &a, 1, NULL, 0, NULL);
	login_as(f, &b, 2, NULL, 0, NULL);
	g = tc_create_group(&a, "chain", members, 1);
	assert_true(g > 0);
	for (i = 0; i < 10; i++) {
		char body[32];

		snprintf(body, sizeof(body), "m%d", i);
		seqs[i] = tc_send_msg(i % 2 ? &b : &a, (uint64_t)g,
		                      (uint64_t)(100 + i), body, NULL);
		assert_true(seqs[i] > 0);
	}
	for (i = 0; i < 10; i++) {
		tpush p;

		do {
			assert_int_equal(tc_next_push(&b, &p, T), 1);
		} while (p.kind != im_Envelope_deliver_tag);
		assert_int_equal(p.seq, seqs[i]);
		assert_int_equal(p.prev_seq, prev);
		assert_int_equal(p.ordinal, i + 1);
		prev = p.seq;
	}
	tc_close(&a);
	tc_close(&b);
}

static const im_ConvInfo *
find_conv(const im_ConvInfo *convs, size_t n, uint64_t g)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (convs[i].group == g) {
			return &convs[i];
		}
	}
	return NULL;
}

static void
test_system_offline_user_gets_exact_unread_counts_then_syncs_in_order(
        void **state)
{
	struct fixture *f = *state;
	tclient a, b;
	uint64_t members[] = {2};
	im_ConvInfo convs[8];
	const im_ConvInfo *ci;
	int64_t g, seqs[7];
	tpush got[16];
	size_t n;
	int i, k = 0, cnt;
	im_Envelope *env = calloc(1, sizeof(*env));

	assert_non_null(env);
	login_as(f, &a, 1, NULL, 0, NULL);
	g = tc_create_group(&a, "offline", members, 1);
	assert_true(g > 0);
	/* b is offline for all of it; imd restarts twice in between, each
	 * new owner takes a fresh segment (step 4), so seqs have gaps. */
	for (i = 0; i < 3; i++) {
		seqs[k] = tc_send_msg(&a, (uint64_t)g, (uint64_t)(10 + k), "x",
		                      NULL);
		assert_true(seqs[k] > 0);
		k++;
	}
	tc_close(&a);
	assert_int_equal(imd_stop(&f->imd, SIGTERM), 0);
	assert_int_equal(imd_start(&f->imd), 0);
	login_as(f, &a, 1, NULL, 0, NULL);
	for (i = 0; i < 2; i++) {
		seqs[k] = tc_send_msg(&a, (uint64_t)g, (uint64_t)(10 + k), "y",
		                      NULL);
		assert_true(seqs[k] > seqs[k - 1]);
		k++;
	}
	tc_close(&a);
	assert_int_equal(imd_stop(&f->imd, SIGKILL) & 0x7f, SIGKILL);
	assert_int_equal(imd_start(&f->imd), 0);
	login_as(f, &a, 1, NULL, 0, NULL);
	for (i = 0; i < 2; i++) {
		seqs[k] = tc_send_msg(&a, (uint64_t)g, (uint64_t)(10 + k), "z",
		                      NULL);
		assert_true(seqs[k] > seqs[k - 1]);
		k++;
	}
	/* The gaps this test is about really exist. */
	assert_true(seqs[3] > seqs[2] + 1 || seqs[5] > seqs[4] + 1);

	login_as(f, &b, 2, convs, 8, &n);
	assert_int_equal(n, 1);
	ci = find_conv(convs, n, (uint64_t)g);
	assert_non_null(ci);
	assert_string_equal(ci->name, "offline");
	assert_int_equal(ci->unread, 7);
	assert_int_equal(ci->last_seq, seqs[6]);
	assert_int_equal(ci->last_ordinal, 7);

	cnt = tc_sync_all(&b, (uint64_t)g, 0, got, 16);
	assert_int_equal(cnt, 7);
	for (i = 0; i < 7; i++) {
		assert_int_equal(got[i].seq, seqs[i]);
		assert_int_equal(got[i].prev_seq, i == 0 ? 0 : seqs[i - 1]);
		assert_int_equal(got[i].ordinal, i + 1);
	}

	/* Reading up to the 4th leaves exactly 3 unread, also after a new
	 * login (the read pointer is in the store). */
	env->which_msg = im_Envelope_mark_read_tag;
	env->msg.mark_read.group = (uint64_t)g;
	env->msg.mark_read.seq = (uint64_t)seqs[3];
	assert_int_equal(tc_simple(&b, env), im_Code_OK);
	tc_close(&b);
	login_as(f, &b, 2, convs, 8, &n);
	ci = find_conv(convs, n, (uint64_t)g);
	assert_non_null(ci);
	assert_int_equal(ci->unread, 3);
	assert_int_equal(ci->read_seq, seqs[3]);

	/* A read between two seqs (in a gap) counts what lies before. */
	env->msg.mark_read.seq = (uint64_t)seqs[6] - 1;
	assert_int_equal(tc_simple(&b, env), im_Code_OK);
	tc_close(&b);
	login_as(f, &b, 2, convs, 8, &n);
	ci = find_conv(convs, n, (uint64_t)g);
	assert_int_equal(ci->unread, 1);
	tc_close(&b);
	tc_close(&a);
	free(env);
}

/*
 * Sending is reading: a user's own message moves its read pointer, live
 * (the lists) and in the store alike, so a login after a restart (lists
 * loaded from the store, as on a new device or another Connector) counts
 * what the user sent as read, as the session that sent it did.
 */
static void
test_system_own_messages_are_read_after_a_fresh_login(void **state)
{
	struct fixture *f = *state;
	const uint64_t members[1] = {2};
	const im_ConvInfo *ci;
	im_ConvInfo convs[4];
	size_t n = 0;
	tclient a, b;
	int64_t g, s1, s2, s3;

	login_as(f, &a, 1, NULL, 0, NULL);
	login_as(f, &b, 2, NULL, 0, NULL);
	g = tc_create_group(&a, "mine", members, 1);
	assert_true(g > 0);
	s1 = tc_send_msg(&b, (uint64_t)g, 1, "from 2", NULL);
	s2 = tc_send_msg(&a, (uint64_t)g, 1, "from 1", NULL);
	s3 = tc_send_msg(&b, (uint64_t)g, 2, "from 2 again", NULL);
	assert_true(s1 > 0 && s2 > s1 && s3 > s2);
	tc_close(&a);
	tc_close(&b);
	/* A restart: the lists are loaded from the store, not kept. */
	assert_int_equal(imd_stop(&f->imd, SIGTERM), 0);
	assert_int_equal(imd_start(&f->imd), 0);
	/* User 1 read up to its own message: one unread after it. */
	login_as(f, &a, 1, convs, 4, &n);
	ci = find_conv(convs, n, (uint64_t)g);
	assert_non_null(ci);
	assert_int_equal(ci->read_seq, s2);
	assert_int_equal(ci->unread, 1);
	tc_close(&a);
	/* User 2 sent the last one: nothing unread. */
	login_as(f, &b, 2, convs, 4, &n);
	ci = find_conv(convs, n, (uint64_t)g);
	assert_non_null(ci);
	assert_int_equal(ci->read_seq, s3);
	assert_int_equal(ci->unread, 0);
	tc_close(&b);
}

struct seen {
	uint64_t last;
	int count;
	int dups;
	uint64_t seqs[256];
};

/* Client-side dedup: drop (group, seq) <= the last seen. */
static void
seen_apply(struct seen *s, const tpush *p)
{
	if (p->seq <= s->last) {
		s->dups++;
		return;
	}
	if (s->count < 256) {
		s->seqs[s->count] = p->seq;
	}
	s->count++;
	s->last = p->seq;
}

static void
resume_case(struct fixture *f, bool same_session)
{
	tclient a, b;
	uint64_t members[] = {2};
	int64_t g, acked[40];
	struct seen s;
	char tok[IM_TOKEN_BUF];
	uint8_t session[16];
	im_Envelope *env = calloc(1, sizeof(*env));
	int i, rc;

	assert_non_null(env);
	memset(&s, 0, sizeof(s));
	login_as(f, &a, 1, NULL, 0, NULL);
	login_as(f, &b, 2, NULL, 0, NULL);
	g = tc_create_group(&a, "resume", members, 1);
	assert_true(g > 0);
	for (i = 0; i < 20; i++) {
		acked[i] = tc_send_msg(&a, (uint64_t)g, (uint64_t)(1000 + i),
		                       "before", NULL);
		assert_true(acked[i] > 0);
	}
	/* b reads 10 of them and acks 5, then dies without a goodbye. */
	for (i = 0; i < 10;) {
		tpush p;

		assert_int_equal(tc_next_push(&b, &p, T), 1);
		if (p.kind == im_Envelope_deliver_tag) {
			seen_apply(&s, &p);
			i++;
			if (i == 5) {
				tc_ack(&b, p.group, p.seq);
			}
		}
	}
	memcpy(session, b.session, 16);
	tc_abort(&b);
	for (i = 20; i < 40; i++) {
		acked[i] = tc_send_msg(&a, (uint64_t)g, (uint64_t)(1000 + i),
		                       "while away", NULL);
		assert_true(acked[i] > 0);
	}

	imd_token(&f->imd, 2, 3600, tok, sizeof(tok));
	assert_int_equal(tc_connect(&b, f->imd.port), 0);
	env->which_msg = im_Envelope_resume_tag;
	snprintf(env->msg.resume.token, sizeof(env->msg.resume.token), "%s",
	         tok);
	if (same_session) {
		memcpy(env->msg.resume.session, session, 16);
	} else {
		memset(env->msg.resume.session, 0x5a, 16);
	}
	env->msg.resume.cursors_count = 1;
	env->msg.resume.cursors[0].group = (uint64_t)g;
	env->msg.resume.cursors[0].seq = s.last;
	rc = tc_call(&b, env, T);
	assert_int_equal(rc, 1);
	assert_int_equal(b.env->which_msg, im_Envelope_resume_ok_tag);
	assert_int_equal(b.env->msg.resume_ok.resumed, same_session);
	for (i = 0; i < 200 && s.count < 40; i++) {
		tpush p;

		rc = tc_next_push(&b, &p, T);
		assert_int_equal(rc, 1);
		if (p.kind == im_Envelope_deliver_tag) {
			seen_apply(&s, &p);
		}
	}
	/* Every acked message exactly once, in order, after dedup. */
	assert_int_equal(s.count, 40);
	for (i = 0; i < 40; i++) {
		assert_int_equal(s.seqs[i], acked[i]);
	}
	tc_close(&a);
	tc_close(&b);
	free(env);
}

static void
test_system_killed_client_resumes_its_session_and_gets_every_message_once(
        void **state)
{
	resume_case(*state, true);
}

static void
test_system_resume_of_an_unknown_session_replays_from_the_store(void **state)
{
	resume_case(*state, false);
}

static void
test_system_retried_send_returns_the_same_seq_and_stores_one_row(void **state)
{
	struct fixture *f = *state;
	tclient a;
	int64_t g, s1, s2, s3;
	bool dup = false;
	tpush got[8];

	login_as(f, &a, 1, NULL, 0, NULL);
	g = tc_create_group(&a, "dedup", NULL, 0);
	assert_true(g > 0);
	s1 = tc_send_msg(&a, (uint64_t)g, 77, "once", &dup);
	assert_true(s1 > 0);
	assert_false(dup);
	s2 = tc_send_msg(&a, (uint64_t)g, 77, "once", &dup);
	assert_int_equal(s2, s1);
	assert_true(dup);
	/* After a restart the cache is empty: the store answers. */
	tc_close(&a);
	assert_int_equal(imd_stop(&f->imd, SIGTERM), 0);
	assert_int_equal(imd_start(&f->imd), 0);
	login_as(f, &a, 1, NULL, 0, NULL);
	dup = false;
	s3 = tc_send_msg(&a, (uint64_t)g, 77, "once", &dup);
	assert_int_equal(s3, s1);
	assert_true(dup);
	assert_int_equal(tc_sync_all(&a, (uint64_t)g, 0, got, 8), 1);
	assert_int_equal(got[0].seq, s1);
	assert_int_equal(got[0].dedup_id, 77);
	tc_close(&a);
}

static void
test_system_kill9_loses_no_acked_message_and_new_seqs_are_larger(void **state)
{
	struct fixture *f = *state;
	tclient a;
	int64_t g, fresh;
	uint64_t acked_seq[200], acked_dedup[200], max_seq = 0;
	size_t nacked = 0, i, j;
	tpush *got = calloc(400, sizeof(*got));
	im_Envelope *env = calloc(1, sizeof(*env));
	int rc, cnt;

	assert_non_null(got);
	assert_non_null(env);
	login_as(f, &a, 1, NULL, 0, NULL);
	g = tc_create_group(&a, "durable", NULL, 0);
	assert_true(g > 0);
	/* Pipeline 200 sends, kill -9 once 100 acks are in. */
	for (i = 0; i < 200; i++) {
		memset(env, 0, sizeof(*env));
		env->req_id = 10000 + i;
		env->which_msg = im_Envelope_send_tag;
		env->msg.send.group = (uint64_t)g;
		env->msg.send.dedup_id = 5000 + i;
		env->msg.send.body.size = 3;
		memcpy(env->msg.send.body.bytes, "abc", 3);
		assert_int_equal(tc_send(&a, env), 0);
	}
	while (nacked < 100) {
		rc = tc_recv(&a, T);
		assert_int_equal(rc, 1);
		if (a.env->which_msg == im_Envelope_send_ack_tag) {
			acked_seq[nacked] = a.env->msg.send_ack.seq;
			acked_dedup[nacked] = a.env->msg.send_ack.dedup_id;
			nacked++;
		}
	}
	assert_int_equal(imd_stop(&f->imd, SIGKILL) & 0x7f, SIGKILL);
	/* Acks that were already on the wire count as acked too. */
	while (tc_recv(&a, 200) == 1 && nacked < 200) {
		if (a.env->which_msg == im_Envelope_send_ack_tag) {
			acked_seq[nacked] = a.env->msg.send_ack.seq;
			acked_dedup[nacked] = a.env->msg.send_ack.dedup_id;
			nacked++;
		}
	}
	tc_close(&a);
	assert_int_equal(imd_start(&f->imd), 0);
	login_as(f, &a, 1, NULL, 0, NULL);
	cnt = tc_sync_all(&a, (uint64_t)g, 0, got, 400);
	assert_true(cnt >= (int)nacked);
	for (i = 0; i < nacked; i++) {
		for (j = 0; j < (size_t)cnt; j++) {
			if (got[j].seq == acked_seq[i]) {
				break;
			}
		}
		assert_true(j < (size_t)cnt);
		assert_int_equal(got[j].dedup_id, acked_dedup[i]);
		if (acked_seq[i] > max_seq) {
			max_seq = acked_seq[i];
		}
	}
	for (j = 1; j < (size_t)cnt; j++) {
		assert_true(got[j].seq > got[j - 1].seq);
		assert_int_equal(got[j].prev_seq, got[j - 1].seq);
	}
	fresh = tc_send_msg(&a, (uint64_t)g, 99999, "after", NULL);
	assert_true(fresh > 0);
	assert_true((uint64_t)fresh > got[cnt - 1].seq);
	assert_true((uint64_t)fresh > max_seq);
	tc_close(&a);
	free(got);
	free(env);
}

static void
test_system_read_on_one_device_reaches_the_other_as_ev_read(void **state)
{
	struct fixture *f = *state;
	tclient d1, d2, b;
	uint64_t members[] = {1};
	int64_t g, s1;
	im_Envelope *env = calloc(1, sizeof(*env));
	tpush p;

	assert_non_null(env);
	login_as(f, &d1, 1, NULL, 0, NULL);
	login_as(f, &d2, 1, NULL, 0, NULL);
	login_as(f, &b, 2, NULL, 0, NULL);
	g = tc_create_group(&b, "devices", members, 1);
	assert_true(g > 0);
	s1 = tc_send_msg(&b, (uint64_t)g, 1, "to both devices", NULL);
	assert_true(s1 > 0);
	expect_deliver(&d1, (uint64_t)g, (uint64_t)s1, "to both devices");
	expect_deliver(&d2, (uint64_t)g, (uint64_t)s1, "to both devices");
	env->which_msg = im_Envelope_mark_read_tag;
	env->msg.mark_read.group = (uint64_t)g;
	env->msg.mark_read.seq = (uint64_t)s1;
	assert_int_equal(tc_simple(&d1, env), im_Code_OK);
	expect_event(&d2, im_EventType_EV_READ, (uint64_t)g, &p);
	assert_int_equal(p.read_seq, s1);
	expect_event(&d1, im_EventType_EV_READ, (uint64_t)g, &p);
	/* The user queue is synced like a group: the events are there. */
	tc_close(&d1);
	tc_close(&d2);
	tc_close(&b);
	free(env);
}

static void
test_system_non_member_cannot_send_sync_or_list(void **state)
{
	struct fixture *f = *state;
	tclient a, c;
	uint64_t members[] = {2};
	int64_t g;
	tpush got[4];
	im_Envelope *env = calloc(1, sizeof(*env));

	assert_non_null(env);
	login_as(f, &a, 1, NULL, 0, NULL);
	login_as(f, &c, 3, NULL, 0, NULL);
	g = tc_create_group(&a, "private", members, 1);
	assert_true(g > 0);
	assert_true(tc_send_msg(&a, (uint64_t)g, 1, "secret", NULL) > 0);
	assert_int_equal(tc_send_msg(&c, (uint64_t)g, 1, "let me in", NULL),
	                 -im_Code_ERR_NOT_MEMBER);
	assert_int_equal(tc_sync_all(&c, (uint64_t)g, 0, got, 4),
	                 -im_Code_ERR_NOT_MEMBER);
	env->which_msg = im_Envelope_list_members_tag;
	env->msg.list_members.group = (uint64_t)g;
	assert_int_equal(tc_simple(&c, env), im_Code_ERR_NOT_MEMBER);
	/* Adding oneself needs membership too. */
	memset(env, 0, sizeof(*env));
	env->which_msg = im_Envelope_add_member_tag;
	env->msg.add_member.group = (uint64_t)g;
	env->msg.add_member.user = 3;
	assert_int_equal(tc_simple(&c, env), im_Code_ERR_NOT_MEMBER);
	/* The connection stays usable. */
	memset(env, 0, sizeof(*env));
	env->which_msg = im_Envelope_ping_tag;
	env->msg.ping.time_ms = 42;
	assert_int_equal(tc_call(&c, env, T), 1);
	assert_int_equal(c.env->which_msg, im_Envelope_pong_tag);
	assert_int_equal(c.env->msg.pong.time_ms, 42);
	/* A member can add c, then c can send and sync. */
	memset(env, 0, sizeof(*env));
	env->which_msg = im_Envelope_add_member_tag;
	env->msg.add_member.group = (uint64_t)g;
	env->msg.add_member.user = 3;
	assert_int_equal(tc_simple(&a, env), im_Code_OK);
	expect_event(&c, im_EventType_EV_JOINED, (uint64_t)g, NULL);
	assert_true(tc_send_msg(&c, (uint64_t)g, 2, "thanks", NULL) > 0);
	assert_int_equal(tc_sync_all(&c, (uint64_t)g, 0, got, 4), 2);
	/* Removed again: sending fails again. */
	memset(env, 0, sizeof(*env));
	env->which_msg = im_Envelope_remove_member_tag;
	env->msg.remove_member.group = (uint64_t)g;
	env->msg.remove_member.user = 3;
	assert_int_equal(tc_simple(&a, env), im_Code_OK);
	expect_event(&c, im_EventType_EV_LEFT, (uint64_t)g, NULL);
	assert_int_equal(tc_send_msg(&c, (uint64_t)g, 3, "again?", NULL),
	                 -im_Code_ERR_NOT_MEMBER);
	tc_close(&a);
	tc_close(&c);
	free(env);
}

static void
test_system_imd_token_command_mints_a_token_the_server_accepts(void **state)
{
	struct fixture *f = *state;
	char cmd[1024], tok[IM_TOKEN_BUF + 8];
	im_uid uid = 0;
	tclient c;
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof(cmd), "'%s' token 42 --ttl 60 --secret-file '%s'",
	         getenv("IMD"), f->imd.secret_file);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(tok, sizeof(tok), p));
	assert_int_equal(pclose(p), 0);
	n = strlen(tok);
	assert_true(n > 1 && tok[n - 1] == '\n');
	tok[n - 1] = '\0';
	assert_int_equal(im_token_verify(tok, f->imd.secret,
	                                 strlen(f->imd.secret),
	                                 (uint64_t)time(NULL), &uid),
	                 IM_OK);
	assert_int_equal(uid, 42);
	assert_int_equal(tc_connect(&c, f->imd.port), 0);
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), 1);
	assert_int_equal(c.user, 42);
	tc_close(&c);
	/* Without a secret it refuses (exit status 2), prints no token. */
	snprintf(cmd, sizeof(cmd), "'%s' token 42 >/dev/null 2>&1",
	         getenv("IMD"));
	assert_int_equal(WEXITSTATUS(system(cmd)), 2);
}

static const char *const tiny_pushq[] = {"--pushq-items", "8", NULL};

static int
setup_tiny_pushq(void **state)
{
	return setup_with(state, tiny_pushq);
}

static void
test_system_push_queue_overflow_closes_with_full_and_resume_resyncs(
        void **state)
{
	struct fixture *f = *state;
	char tok[IM_TOKEN_BUF];
	uint8_t session[16];
	int64_t g, seqs[20];
	tpush got[32];
	im_Envelope *env = calloc(1, sizeof(*env));
	tclient a;
	int i, n = 0, last = -1, cnt;

	assert_non_null(env);
	login_as(f, &a, 1, NULL, 0, NULL);
	memcpy(session, a.session, 16);
	g = tc_create_group(&a, "flood", NULL, 0);
	assert_true(g > 0);
	/* Nothing is acked: the 8-item queue overflows within 9 sends. */
	for (i = 0; i < 20; i++) {
		int64_t s = tc_send_msg(&a, (uint64_t)g, (uint64_t)(i + 1),
		                        "unacked", NULL);

		if (s < 0) {
			assert_int_equal(s, -im_Code_ERR_FULL);
			break;
		}
		seqs[n++] = s;
	}
	assert_true(i < 9);
	assert_true(tc_wait_closed(&a, T, &last));
	tc_close(&a);

	/* The session is gone (resumed = false); the store has it all. */
	imd_token(&f->imd, 1, 3600, tok, sizeof(tok));
	assert_int_equal(tc_connect(&a, f->imd.port), 0);
	env->which_msg = im_Envelope_resume_tag;
	snprintf(env->msg.resume.token, sizeof(env->msg.resume.token), "%s",
	         tok);
	memcpy(env->msg.resume.session, session, 16);
	env->msg.resume.cursors_count = 1;
	env->msg.resume.cursors[0].group = (uint64_t)g;
	assert_int_equal(tc_call(&a, env, T), 1);
	assert_int_equal(a.env->which_msg, im_Envelope_resume_ok_tag);
	assert_false(a.env->msg.resume_ok.resumed);
	cnt = tc_sync_all(&a, (uint64_t)g, 0, got, 32);
	assert_true(cnt >= n);
	for (i = 0; i < n; i++) {
		assert_int_equal(got[i].seq, seqs[i]);
	}
	/* The replay did not overflow the new session: it still works. */
	memset(env, 0, sizeof(*env));
	env->which_msg = im_Envelope_ping_tag;
	assert_int_equal(tc_call(&a, env, T), 1);
	assert_int_equal(a.env->which_msg, im_Envelope_pong_tag);
	tc_close(&a);
	free(env);
}

static const char *const small_wbuf[] = {"--wbuf-max", "131072", NULL};

static int
setup_small_wbuf(void **state)
{
	return setup_with(state, small_wbuf);
}

static void
test_system_reader_too_slow_is_closed_and_finds_everything_in_the_store(
        void **state)
{
	struct fixture *f = *state;
	char tok[IM_TOKEN_BUF];
	char body[4001];
	uint64_t members[] = {1};
	int64_t g, s = 0;
	tpush *got = calloc(700, sizeof(*got));
	tclient a, b;
	bool closed = false;
	int i, rc, last = -1;

	assert_non_null(got);
	memset(body, 'x', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	imd_token(&f->imd, 1, 3600, tok, sizeof(tok));
	assert_int_equal(tc_connect_rcvbuf(&a, f->imd.port, 4096), 0);
	assert_int_equal(tc_login(&a, tok, NULL, 0, NULL), 1);
	login_as(f, &b, 2, NULL, 0, NULL);
	b.drop_pushes = true;
	g = tc_create_group(&b, "firehose", members, 1);
	assert_true(g > 0);
	/* a reads nothing while b sends 2.4 MB its way: a's push queue
	 * (1 MiB) overflows, the server closes a, b never notices. */
	for (i = 0; i < 600; i++) {
		s = tc_send_msg(&b, (uint64_t)g, (uint64_t)(i + 1), body, NULL);
		assert_true(s > 0);
		if (i % 64 == 0) {
			tc_ack(&b, (uint64_t)g, (uint64_t)s);
		}
	}
	for (i = 0; i < 100000 && !closed; i++) {
		rc = tc_recv(&a, T);
		assert_true(rc != 0);
		if (rc < 0) {
			closed = true;
		} else if (a.env->which_msg == im_Envelope_error_tag) {
			last = (int)a.env->msg.error.code;
		}
	}
	assert_true(closed);
	assert_int_equal(last, im_Code_ERR_FULL);
	tc_close(&a);
	login_as(f, &a, 1, NULL, 0, NULL);
	rc = tc_sync_all(&a, (uint64_t)g, 0, got, 700);
	assert_int_equal(rc, 600);
	assert_int_equal(got[599].seq, s);
	tc_close(&a);
	tc_close(&b);
	free(got);
}

static void
test_system_resume_with_a_backlog_larger_than_the_write_buffer_gets_all(
        void **state)
{
	struct fixture *f = *state;
	char tok[IM_TOKEN_BUF];
	char body[901];
	uint8_t session[16];
	uint64_t members[] = {1};
	int64_t g, s = 0;
	struct seen sn;
	tclient a, b;
	im_Envelope *env = calloc(1, sizeof(*env));
	int i, rc;

	assert_non_null(env);
	memset(&sn, 0, sizeof(sn));
	memset(body, 'y', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	login_as(f, &a, 1, NULL, 0, NULL);
	memcpy(session, a.session, 16);
	login_as(f, &b, 2, NULL, 0, NULL);
	b.drop_pushes = true;
	g = tc_create_group(&b, "backlog", members, 1);
	assert_true(g > 0);
	tc_abort(&a);
	/* 900 KB wait in a's session queue; the write buffer holds 64 KB. */
	for (i = 0; i < 1000; i++) {
		s = tc_send_msg(&b, (uint64_t)g, (uint64_t)(i + 1), body, NULL);
		assert_true(s > 0);
		if (i % 64 == 0) {
			tc_ack(&b, (uint64_t)g, (uint64_t)s);
		}
	}
	imd_token(&f->imd, 1, 3600, tok, sizeof(tok));
	assert_int_equal(tc_connect(&a, f->imd.port), 0);
	env->which_msg = im_Envelope_resume_tag;
	snprintf(env->msg.resume.token, sizeof(env->msg.resume.token), "%s",
	         tok);
	memcpy(env->msg.resume.session, session, 16);
	env->msg.resume.cursors_count = 1;
	env->msg.resume.cursors[0].group = (uint64_t)g;
	assert_int_equal(tc_call(&a, env, T), 1);
	assert_int_equal(a.env->which_msg, im_Envelope_resume_ok_tag);
	assert_true(a.env->msg.resume_ok.resumed);
	a.drop_pushes = true;
	for (i = 0; i < 5000 && sn.last < (uint64_t)s; i++) {
		tpush p;

		rc = tc_next_push(&a, &p, T);
		assert_int_equal(rc, 1);
		if (p.kind == im_Envelope_deliver_tag) {
			seen_apply(&sn, &p);
			if (sn.count % 32 == 0) {
				tc_ack(&a, p.group, p.seq);
			}
		}
	}
	assert_int_equal(sn.count, 1000);
	assert_int_equal(sn.last, s);
	tc_close(&a);
	tc_close(&b);
	free(env);
}

/* The numbers of imd's shutdown stats line ("N messages in M commits"). */
static bool
read_commit_stats(const imd_proc *p, unsigned long long *msgs,
                  unsigned long long *commits)
{
	char line[512];
	bool found = false;
	FILE *f = fopen(p->log, "r");

	if (f == NULL) {
		return false;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		const char *c = strstr(line, "chatter: ");

		if (c != NULL && sscanf(c, "chatter: %llu messages in %llu",
		                        msgs, commits) == 2) {
			found = true;
		}
	}
	fclose(f);
	return found;
}

static void
test_system_sends_of_one_loop_turn_are_committed_together(void **state)
{
	struct fixture *f = *state;
	static uint8_t wire[200 * 64];
	size_t off = 0;
	unsigned long long msgs = 0, commits = 0;
	im_Envelope *env = calloc(1, sizeof(*env));
	tclient a;
	int64_t g;
	int i, acks = 0;

	assert_non_null(env);
	login_as(f, &a, 1, NULL, 0, NULL);
	g = tc_create_group(&a, "batch", NULL, 0);
	assert_true(g > 0);
	/* 200 sends in one write: they arrive in one or a few reads. */
	for (i = 0; i < 200; i++) {
		size_t fl;

		memset(env, 0, sizeof(*env));
		env->req_id = (uint64_t)(1000 + i);
		env->which_msg = im_Envelope_send_tag;
		env->msg.send.group = (uint64_t)g;
		env->msg.send.dedup_id = (uint64_t)(i + 1);
		env->msg.send.body.size = 4;
		memcpy(env->msg.send.body.bytes, "fast", 4);
		fl = tc_frame(wire + off, sizeof(wire) - off, env);
		assert_true(fl > 0);
		off += fl;
	}
	assert_int_equal(tc_send_raw(&a, wire, off), 0);
	for (i = 0; i < 2000 && acks < 200; i++) {
		assert_int_equal(tc_recv(&a, T), 1);
		if (a.env->which_msg == im_Envelope_send_ack_tag) {
			acks++;
		}
	}
	assert_int_equal(acks, 200);
	tc_close(&a);
	assert_int_equal(imd_stop(&f->imd, SIGTERM), 0);
	assert_true(read_commit_stats(&f->imd, &msgs, &commits));
	assert_int_equal(msgs, 200);
	/* One transaction per loop turn, not per send. */
	assert_true(commits <= 20);
	assert_int_equal(imd_start(&f->imd), 0);
	free(env);
}

static bool
read_create_stats(const imd_proc *p, unsigned long long *groups,
                  unsigned long long *commits)
{
	char line[512];
	bool found = false;
	FILE *f = fopen(p->log, "r");

	if (f == NULL) {
		return false;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		const char *c = strstr(line, "chatter: created ");

		if (c != NULL &&
		    sscanf(c, "chatter: created %llu groups in %llu", groups,
		           commits) == 2) {
			found = true;
		}
	}
	fclose(f);
	return found;
}

#define NCREATE 24

/*
 * CreateGroups arriving in one loop turn are committed together (one
 * transaction, not one per group and member), and every member still gets
 * GroupCreated through its user queue: online members as a push, an
 * offline one in its queue and conversation list at login. Every group
 * then works.
 */
static void
test_system_group_creations_of_one_turn_commit_together_and_reach_every_member(
        void **state)
{
	struct fixture *f = *state;
	static uint8_t wire[NCREATE * 128];
	static im_ConvInfo convs[64];
	static tpush evs[80];
	const uint64_t members[3] = {2, 3, 4};
	unsigned long long ngroups = 0, commits = 0;
	im_Envelope *env = calloc(1, sizeof(*env));
	int64_t gids[NCREATE];
	size_t off = 0, nconv = 0;
	tclient a, b, d;
	int i, got = 0, k;

	assert_non_null(env);
	login_as(f, &a, 1, NULL, 0, NULL);
	login_as(f, &b, 2, NULL, 0, NULL);
	for (i = 0; i < NCREATE; i++) {
		size_t fl;

		memset(env, 0, sizeof(*env));
		env->req_id = (uint64_t)(500 + i);
		env->which_msg = im_Envelope_create_group_tag;
		snprintf(env->msg.create_group.name,
		         sizeof(env->msg.create_group.name), "g%d", i);
		memcpy(env->msg.create_group.members, members, sizeof(members));
		env->msg.create_group.members_count = 3;
		fl = tc_frame(wire + off, sizeof(wire) - off, env);
		assert_true(fl > 0);
		off += fl;
	}
	assert_int_equal(tc_send_raw(&a, wire, off), 0);
	for (i = 0; i < 4 * NCREATE && got < NCREATE; i++) {
		assert_int_equal(tc_recv(&a, T), 1);
		if (a.env->which_msg == im_Envelope_group_created_tag) {
			k = (int)a.env->req_id - 500;
			assert_true(k >= 0 && k < NCREATE);
			gids[k] = (int64_t)a.env->msg.group_created.group;
			assert_true(gids[k] > 0);
			got++;
		} else {
			assert_int_equal(a.env->which_msg,
			                 im_Envelope_user_event_tag);
		}
	}
	assert_int_equal(got, NCREATE);
	/* The online member: one GroupCreated per group. */
	for (i = 0; i < NCREATE; i++) {
		tpush ev;

		expect_event(&b, 3, (uint64_t)gids[i], &ev);
		assert_int_equal(ev.actor, 1);
	}
	/* Every group works: a send reaches the member. */
	for (i = 0; i < NCREATE; i++) {
		char body[16];
		int64_t seq;

		snprintf(body, sizeof(body), "hi %d", i);
		seq = tc_send_msg(&a, (uint64_t)gids[i], (uint64_t)(i + 1),
		                  body, NULL);
		assert_true(seq > 0);
		expect_deliver(&b, (uint64_t)gids[i], (uint64_t)seq, body);
	}
	/* The offline member finds them at login and in its queue. */
	login_as(f, &d, 4, convs, 64, &nconv);
	assert_int_equal(nconv, NCREATE);
	for (i = 0; i < NCREATE; i++) {
		for (k = 0; k < (int)nconv &&
		            convs[k].group != (uint64_t)gids[i];
		     k++) {
		}
		assert_true(k < (int)nconv);
		assert_int_equal(convs[k].unread, 1);
	}
	assert_int_equal(tc_sync_all(&d, 0, 0, evs, 80), NCREATE);
	for (i = 0; i < NCREATE; i++) {
		assert_int_equal(evs[i].ev_type, 3);
	}
	tc_close(&a);
	tc_close(&b);
	tc_close(&d);
	if (h_target_cluster()) {
		/* The creations spread over both Chatters, whose logs
		 * imnode keeps apart: the count is imd's. */
		free(env);
		return;
	}
	assert_int_equal(imd_stop(&f->imd, SIGTERM), 0);
	assert_true(read_create_stats(&f->imd, &ngroups, &commits));
	assert_int_equal(ngroups, NCREATE);
	/* One transaction per loop turn, not 1 + 4 per group. */
	assert_true(commits <= 6);
	assert_int_equal(imd_start(&f->imd), 0);
	free(env);
}

static const char *const tiny_batch[] = {"--max-batch", "3", NULL};

static int
setup_tiny_batch(void **state)
{
	return setup_with(state, tiny_batch);
}

/* Body i: length len_of(i), bytes 'a' + (i + j) % 26. */
static uint32_t
len_of(int i)
{
	return i == 0 ? 0 : i == 1 ? 4096 : (uint32_t)(i * 613) % 4097;
}

static void
test_system_bodies_of_a_batch_over_max_batch_are_stored_intact(void **state)
{
	struct fixture *f = *state;
	static uint8_t wire[20 * (4096 + 64)];
	static tpush got[24];
	size_t off = 0;
	unsigned long long msgs = 0, commits = 0;
	im_Envelope *env = calloc(1, sizeof(*env));
	tclient a;
	int64_t g;
	int i, acks = 0, n;

	assert_non_null(env);
	login_as(f, &a, 1, NULL, 0, NULL);
	g = tc_create_group(&a, "arena", NULL, 0);
	assert_true(g > 0);
	/* 20 sends of 0..4096 bytes in one write: batches of 3 fill and
	 * commit while the rest is still being read. */
	for (i = 0; i < 20; i++) {
		size_t fl;
		uint32_t j;

		memset(env, 0, sizeof(*env));
		env->req_id = (uint64_t)(1000 + i);
		env->which_msg = im_Envelope_send_tag;
		env->msg.send.group = (uint64_t)g;
		env->msg.send.dedup_id = (uint64_t)(i + 1);
		env->msg.send.body.size = (pb_size_t)len_of(i);
		for (j = 0; j < len_of(i); j++) {
			env->msg.send.body.bytes[j] =
			        (uint8_t)('a' + (i + j) % 26);
		}
		fl = tc_frame(wire + off, sizeof(wire) - off, env);
		assert_true(fl > 0);
		off += fl;
	}
	assert_int_equal(tc_send_raw(&a, wire, off), 0);
	for (i = 0; i < 2000 && acks < 20; i++) {
		assert_int_equal(tc_recv(&a, T), 1);
		if (a.env->which_msg == im_Envelope_send_ack_tag) {
			acks++;
		}
	}
	assert_int_equal(acks, 20);
	n = tc_sync_all(&a, (uint64_t)g, 0, got, 24);
	assert_int_equal(n, 20);
	for (i = 0; i < n; i++) {
		int k = (int)got[i].dedup_id - 1;
		uint32_t j;

		assert_true(k >= 0 && k < 20);
		assert_int_equal(got[i].body_len, len_of(k));
		for (j = 0; j < len_of(k) && j < sizeof(got[i].body) - 1; j++) {
			assert_int_equal((uint8_t)got[i].body[j],
			                 'a' + (k + j) % 26);
		}
	}
	tc_close(&a);
	assert_int_equal(imd_stop(&f->imd, SIGTERM), 0);
	assert_true(read_commit_stats(&f->imd, &msgs, &commits));
	assert_int_equal(msgs, 20);
	assert_true(commits >= 7);
	assert_int_equal(imd_start(&f->imd), 0);
	free(env);
}

static void
test_system_a_second_imd_fences_off_the_first(void **state)
{
	struct fixture *f = *state;
	imd_proc second = f->imd;
	char tok[IM_TOKEN_BUF];
	tclient a, b;
	int64_t g, s1, s2;
	tpush got[8];

	login_as(f, &a, 1, NULL, 0, NULL);
	g = tc_create_group(&a, "fenced", NULL, 0);
	assert_true(g > 0);
	s1 = tc_send_msg(&a, (uint64_t)g, 1, "from the first", NULL);
	assert_true(s1 > 0);

	/* Same database, other port and log: it claims every slot. */
	second.pid = 0;
	snprintf(second.port_file, sizeof(second.port_file), "%s/port2",
	         f->imd.dir);
	snprintf(second.log, sizeof(second.log), "%s/imd2.log", f->imd.dir);
	assert_int_equal(imd_start(&second), 0);

	/* The zombie cannot commit any more; nothing it acks is lost. */
	assert_int_equal(tc_send_msg(&a, (uint64_t)g, 2, "zombie", NULL),
	                 -im_Code_ERR_UNAVAILABLE);
	assert_int_equal(tc_send_msg(&a, (uint64_t)g, 3, "zombie", NULL),
	                 -im_Code_ERR_UNAVAILABLE);

	imd_token(&second, 1, 3600, tok, sizeof(tok));
	assert_int_equal(tc_connect(&b, second.port), 0);
	assert_int_equal(tc_login(&b, tok, NULL, 0, NULL), 1);
	/* The retry on the new owner stores it once, above the old seqs. */
	s2 = tc_send_msg(&b, (uint64_t)g, 2, "zombie", NULL);
	assert_true(s2 > s1);
	assert_int_equal(tc_sync_all(&b, (uint64_t)g, 0, got, 8), 2);
	assert_int_equal(got[0].seq, s1);
	assert_int_equal(got[1].seq, s2);
	tc_close(&a);
	tc_close(&b);
	assert_int_equal(imd_stop(&second, SIGTERM), 0);
}

/*
 * A group creation is a fenced write like a send: once a second imd took
 * every slot, the first one creates no group (not even half of one: no
 * group row, no member, no event), and the creator is told to retry.
 */
static void
test_system_a_second_imd_fences_off_group_creation(void **state)
{
	struct fixture *f = *state;
	imd_proc second = f->imd;
	char tok[IM_TOKEN_BUF];
	const uint64_t members[1] = {2};
	im_ConvInfo convs[4];
	size_t n = 0;
	tclient a, b;
	int64_t g;

	login_as(f, &a, 1, NULL, 0, NULL);
	g = tc_create_group(&a, "before", members, 1);
	assert_true(g > 0);
	second.pid = 0;
	snprintf(second.port_file, sizeof(second.port_file), "%s/port2",
	         f->imd.dir);
	snprintf(second.log, sizeof(second.log), "%s/imd2.log", f->imd.dir);
	assert_int_equal(imd_start(&second), 0);

	assert_int_equal(tc_create_group(&a, "zombie", members, 1),
	                 -im_Code_ERR_UNAVAILABLE);
	imd_token(&second, 2, 3600, tok, sizeof(tok));
	assert_int_equal(tc_connect(&b, second.port), 0);
	assert_int_equal(tc_login(&b, tok, convs, 4, &n), 1);
	assert_int_equal(n, 1);
	assert_int_equal(convs[0].group, (uint64_t)g);
	/* The new owner creates. */
	assert_true(tc_create_group(&b, "after", NULL, 0) > g);
	tc_close(&a);
	tc_close(&b);
	assert_int_equal(imd_stop(&second, SIGTERM), 0);
}

/* A second imd on the fixture's database, on its own port and log: it
 * claims every slot, fencing the first off. */
static void
start_second(struct fixture *f, imd_proc *second)
{
	*second = f->imd;
	second->pid = 0;
	snprintf(second->port_file, sizeof(second->port_file), "%s/port2",
	         f->imd.dir);
	snprintf(second->log, sizeof(second->log), "%s/imd2.log", f->imd.dir);
	assert_int_equal(imd_start(second), 0);
}

static void
login_at(const imd_proc *p, tclient *c, uint64_t uid, im_ConvInfo *convs,
         size_t max, size_t *n)
{
	char tok[IM_TOKEN_BUF];

	imd_token(p, uid, 3600, tok, sizeof(tok));
	assert_int_equal(tc_connect(c, p->port), 0);
	assert_int_equal(tc_login(c, tok, convs, max, n), 1);
}

/*
 * Membership is fenced like a send: once a second imd took every slot (the
 * first one's slot watch is off, so only the store's fence can stop it),
 * the first one adds and removes nobody, and the caller is told to retry.
 */
static void
test_system_a_second_imd_fences_off_membership_changes(void **state)
{
	struct fixture *f = *state;
	imd_proc second;
	const uint64_t members[1] = {2};
	im_Envelope *env = calloc(1, sizeof(*env));
	im_ConvInfo convs[4];
	size_t n = 0;
	tclient a, b;
	int64_t g;

	assert_non_null(env);
	login_as(f, &a, 1, NULL, 0, NULL);
	g = tc_create_group(&a, "members", members, 1);
	assert_true(g > 0);
	start_second(f, &second);

	env->which_msg = im_Envelope_add_member_tag;
	env->msg.add_member.group = (uint64_t)g;
	env->msg.add_member.user = 3;
	assert_int_equal(tc_simple(&a, env), im_Code_ERR_UNAVAILABLE);
	memset(env, 0, sizeof(*env));
	env->which_msg = im_Envelope_remove_member_tag;
	env->msg.remove_member.group = (uint64_t)g;
	env->msg.remove_member.user = 2;
	assert_int_equal(tc_simple(&a, env), im_Code_ERR_UNAVAILABLE);

	/* The store holds the members from before: 3 is in no group, 2 is
	 * still in g. */
	login_at(&second, &b, 3, convs, 4, &n);
	assert_int_equal(n, 0);
	tc_close(&b);
	login_at(&second, &b, 2, convs, 4, &n);
	assert_int_equal(n, 1);
	assert_int_equal(convs[0].group, (uint64_t)g);
	tc_close(&b);
	/* The new owner changes membership. */
	login_at(&second, &b, 1, NULL, 0, NULL);
	memset(env, 0, sizeof(*env));
	env->which_msg = im_Envelope_add_member_tag;
	env->msg.add_member.group = (uint64_t)g;
	env->msg.add_member.user = 3;
	assert_int_equal(tc_simple(&b, env), im_Code_OK);
	tc_close(&b);
	tc_close(&a);
	free(env);
	assert_int_equal(imd_stop(&second, SIGTERM), 0);
}

/*
 * A read pointer is the user's owner's write: a first imd fenced off by a
 * second one moves no pointer (the unread count stays), and the client is
 * told to retry elsewhere.
 */
static void
test_system_a_second_imd_fences_off_read_pointers(void **state)
{
	struct fixture *f = *state;
	imd_proc second;
	const uint64_t members[1] = {2};
	im_Envelope *env = calloc(1, sizeof(*env));
	const im_ConvInfo *ci;
	im_ConvInfo convs[4];
	size_t n = 0;
	tclient a, b;
	int64_t g, s1;

	assert_non_null(env);
	login_as(f, &a, 1, NULL, 0, NULL);
	login_as(f, &b, 2, NULL, 0, NULL);
	g = tc_create_group(&a, "reads", members, 1);
	assert_true(g > 0);
	s1 = tc_send_msg(&a, (uint64_t)g, 1, "unread", NULL);
	assert_true(s1 > 0);
	start_second(f, &second);

	env->which_msg = im_Envelope_mark_read_tag;
	env->msg.mark_read.group = (uint64_t)g;
	env->msg.mark_read.seq = (uint64_t)s1;
	assert_int_equal(tc_simple(&b, env), im_Code_ERR_UNAVAILABLE);
	tc_close(&b);

	login_at(&second, &b, 2, convs, 4, &n);
	ci = find_conv(convs, n, (uint64_t)g);
	assert_non_null(ci);
	assert_int_equal(ci->unread, 1);
	assert_int_equal(ci->read_seq, 0);
	/* At the new owner the read counts. */
	assert_int_equal(tc_simple(&b, env), im_Code_OK);
	tc_close(&b);
	login_at(&second, &b, 2, convs, 4, &n);
	ci = find_conv(convs, n, (uint64_t)g);
	assert_non_null(ci);
	assert_int_equal(ci->unread, 0);
	assert_int_equal(ci->read_seq, (uint64_t)s1);
	tc_close(&b);
	tc_close(&a);
	free(env);
	assert_int_equal(imd_stop(&second, SIGTERM), 0);
}

/* Two imds on one file need shared locking (exclusive is the default). */
static const char *const shared_db[] = {
        "--seq-step", "4", "--uq-step", "4", "--exclusive", "false", NULL};

static int
setup_shared(void **state)
{
	return setup_with(state, shared_db);
}

/* Shared, and the first imd never reloads its slot map by itself: only
 * the store's fences stand between it and the second one's slots. */
static const char *const shared_db_unwatched[] = {
        "--seq-step", "4",     "--uq-step",       "4",
        "--exclusive", "false", "--slot_watch_ms", "0", NULL};

static int
setup_shared_unwatched(void **state)
{
	return setup_with(state, shared_db_unwatched);
}

static void
test_system_a_second_imd_cannot_open_the_database_of_an_exclusive_one(
        void **state)
{
	struct fixture *f = *state;
	imd_proc second = f->imd;
	tclient a;
	int64_t g;

	login_as(f, &a, 1, NULL, 0, NULL);
	g = tc_create_group(&a, "held", NULL, 0);
	assert_true(g > 0);
	/* A bad value is refused at once. */
	second.pid = 0;
	second.extra[second.nextra] = "--exclusive";
	second.extra[second.nextra + 1] = "maybe";
	second.nextra += 2;
	snprintf(second.port_file, sizeof(second.port_file), "%s/port2",
	         f->imd.dir);
	snprintf(second.log, sizeof(second.log), "%s/imd2.log", f->imd.dir);
	assert_int_equal(imd_start(&second), -1);
	/* The file is locked: the second one gives up after its busy
	 * timeout (5 s) without claiming anything. */
	second.nextra -= 2;
	assert_int_equal(imd_start(&second), -1);
	assert_true(tc_send_msg(&a, (uint64_t)g, 1, "still here", NULL) > 0);
	tc_close(&a);
}

static const char *const short_rto[] = {"--rto-ms", "300", NULL};

static int
setup_short_rto(void **state)
{
	return setup_with(state, short_rto);
}

static void
test_system_unacked_deliveries_are_retransmitted_acked_ones_are_not(
        void **state)
{
	struct fixture *f = *state;
	tclient a;
	int64_t g, s1, s2;
	tpush p;
	int seen1 = 0, seen2 = 0, i;

	login_as(f, &a, 1, NULL, 0, NULL);
	g = tc_create_group(&a, "rto", NULL, 0);
	assert_true(g > 0);
	tc_ack(&a, 0, IM_SEQ_MAX); /* the user queue: nothing to resend */
	s1 = tc_send_msg(&a, (uint64_t)g, 1, "acked", NULL);
	assert_true(s1 > 0);
	expect_deliver(&a, (uint64_t)g, (uint64_t)s1, "acked");
	tc_ack(&a, (uint64_t)g, (uint64_t)s1);
	s2 = tc_send_msg(&a, (uint64_t)g, 2, "not acked", NULL);
	assert_true(s2 > 0);
	/* Within ~1 s (rto 300 ms) s2 comes again, s1 never does. */
	for (i = 0; i < 100; i++) {
		int rc = tc_next_push(&a, &p, 1000);

		if (rc == 0) {
			break;
		}
		assert_int_equal(rc, 1);
		if (p.kind != im_Envelope_deliver_tag) {
			continue;
		}
		seen1 += p.seq == (uint64_t)s1;
		seen2 += p.seq == (uint64_t)s2;
		if (seen2 >= 3) {
			break;
		}
	}
	assert_int_equal(seen1, 0);
	assert_true(seen2 >= 3);
	tc_ack(&a, (uint64_t)g, (uint64_t)s2);
	tc_close(&a);
}

static void
test_system_config_file_is_read_and_flags_override_it(void **state)
{
	struct fixture *f = *state;
	char conf[400], cmd[4096], tok[IM_TOKEN_BUF];
	const char *extra[] = {"--config", conf, "--login-timeout", "1", NULL};
	tclient c;
	int last = -1;
	FILE *cf;

	assert_int_equal(imd_stop(&f->imd, SIGTERM), 0);
	snprintf(conf, sizeof(conf), "%s/imd.conf", f->imd.dir);
	cf = fopen(conf, "w");
	assert_non_null(cf);
	fprintf(cf, "# test config\n\nlogin_timeout = 30\n"
	            "idle_timeout = 1\n  log_level=info  \n");
	fclose(cf);
	f->imd.extra[0] = extra[0];
	f->imd.extra[1] = extra[1];
	f->imd.extra[2] = extra[2];
	f->imd.extra[3] = extra[3];
	f->imd.nextra = 4;
	assert_int_equal(imd_start(&f->imd), 0);
	/* The flag wins over the file: login timeout 1 s, not 30. */
	assert_int_equal(tc_connect(&c, f->imd.port), 0);
	assert_true(tc_wait_closed(&c, 4000, &last));
	assert_int_equal(last, im_Code_ERR_TIMEOUT);
	tc_close(&c);
	/* The file's idle timeout applies. */
	imd_token(&f->imd, 1, 3600, tok, sizeof(tok));
	assert_int_equal(tc_connect(&c, f->imd.port), 0);
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), 1);
	assert_true(tc_wait_closed(&c, 4000, &last));
	assert_int_equal(last, im_Code_ERR_TIMEOUT);
	tc_close(&c);
	/* A bad key is refused at start with a message, exit status 2. */
	cf = fopen(conf, "a");
	assert_non_null(cf);
	fprintf(cf, "no_such_key = 1\n");
	fclose(cf);
	snprintf(cmd, sizeof(cmd),
	         "'%s' --config '%s' --secret-file '%s' --db '%s' "
	         ">'%s/bad.out' 2>&1",
	         getenv("IMD"), conf, f->imd.secret_file, f->imd.db,
	         f->imd.dir);
	assert_int_equal(WEXITSTATUS(system(cmd)), 2);
	snprintf(cmd, sizeof(cmd), "grep -q 'unknown key' '%s/bad.out'",
	         f->imd.dir);
	assert_int_equal(system(cmd), 0);
}

/*
 * User events chain by prev_seq like messages do: each push names the seq
 * before it in the user's queue (the first the queue's end at login), and
 * a Sync page of the queue chains from its `after`. A client tells a gap
 * by it.
 */
static void
test_system_user_events_chain_by_prev_seq(void **state)
{
	struct fixture *f = *state;
	const uint64_t two = 2;
	tpush ev, page[8];
	im_seq prev = 0; /* a new user's queue is empty at login */
	im_seq first;
	tclient a, b;
	int i, k, n;

	login_as(f, &a, 1, NULL, 0, NULL);
	login_as(f, &b, 2, NULL, 0, NULL);
	for (i = 0; i < 3; i++) {
		assert_true(tc_create_group(&a, "chain", &two, 1) > 0);
	}
	/* Live: each push after the one before. */
	for (i = 0; i < 3; i++) {
		for (k = 0; k < 100; k++) {
			assert_int_equal(tc_next_push(&b, &ev, T), 1);
			if (ev.kind == im_Envelope_user_event_tag) {
				break;
			}
		}
		assert_int_equal(ev.prev_seq, prev);
		prev = ev.seq;
	}
	/* A Sync page of the queue chains from its `after`. */
	n = tc_sync_all(&b, 0, 0, page, 8);
	assert_int_equal(n, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(page[i].prev_seq, i == 0 ? 0 : page[i - 1].seq);
	}
	first = page[0].seq;
	n = tc_sync_all(&b, 0, first, page, 8);
	assert_int_equal(n, 2);
	assert_int_equal(page[0].prev_seq, first);
	assert_int_equal(page[1].seq, prev);
	tc_close(&a);
	tc_close(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(
	                test_system_two_users_chat_both_ways, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_deliveries_chain_by_prev_seq, setup,
	                teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_offline_user_gets_exact_unread_counts_then_syncs_in_order,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_killed_client_resumes_its_session_and_gets_every_message_once,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_resume_of_an_unknown_session_replays_from_the_store,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_retried_send_returns_the_same_seq_and_stores_one_row,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_kill9_loses_no_acked_message_and_new_seqs_are_larger,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_read_on_one_device_reaches_the_other_as_ev_read,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_non_member_cannot_send_sync_or_list, setup,
	                teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_imd_token_command_mints_a_token_the_server_accepts,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_push_queue_overflow_closes_with_full_and_resume_resyncs,
	                setup_tiny_pushq, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_reader_too_slow_is_closed_and_finds_everything_in_the_store,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_resume_with_a_backlog_larger_than_the_write_buffer_gets_all,
	                setup_small_wbuf, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_sends_of_one_loop_turn_are_committed_together,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_bodies_of_a_batch_over_max_batch_are_stored_intact,
	                setup_tiny_batch, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_a_second_imd_fences_off_the_first,
	                setup_shared, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_group_creations_of_one_turn_commit_together_and_reach_every_member,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_a_second_imd_fences_off_group_creation,
	                setup_shared, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_own_messages_are_read_after_a_fresh_login,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_a_second_imd_fences_off_membership_changes,
	                setup_shared_unwatched, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_a_second_imd_fences_off_read_pointers,
	                setup_shared_unwatched, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_a_second_imd_cannot_open_the_database_of_an_exclusive_one,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_unacked_deliveries_are_retransmitted_acked_ones_are_not,
	                setup_short_rto, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_config_file_is_read_and_flags_override_it,
	                setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_system_user_events_chain_by_prev_seq, setup,
	                teardown),
	};

	return cmocka_run_group_tests_name("system_chat", tests, NULL, NULL);
}
