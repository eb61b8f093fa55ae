/*
 * The Connector (servers/roles/connector/) through its public surface: a
 * real loopback client on one side, a counting router on the other, a
 * sqlite store underneath. What the router sees is what a cluster would
 * send over RPC: a READ of a user this Connector owns must not go round
 * through it, an event for a user owned elsewhere must go back to it, and
 * the user-event pipeline must take any batch size (its scratch is
 * bounded and preallocated, larger batches are taken in chunks).
 *
 * The client is a blocking socket on the test's thread; the loop is run
 * without waiting between reads, so the whole test is one thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <pb_decode.h>
#include <pb_encode.h>

#include "connector.h"
#include "faulty_store.h"
#include "im.pb.h"
#include "im/frame.h"
#include "im/shard.h"
#include "im/store.h"
#include "im/token.h"

#define NODE "conn-1"
#define OTHER "conn-2"
#define NSLOTS 16
#define OTHER_SLOT 3 /* the one user slot owned by OTHER */
#define GID 1001
#define READER 7 /* in a slot of NODE (checked in fx_new) */
#define SENDER 8
#define MAXEV 64

static const char secret[] = "0123456789abcdef0123456789abcdef";

/* The router: counts every call, keeps the first user events. */
struct rec {
	role_router base; /* first */
	int submits;
	int replies;
	int delivers;
	int uevent_calls;
	size_t nev;
	role_uevent ev[MAXEV];
	/* As imd's router: user events straight back into the Connector. */
	connector *loopback;
};

static void
rec_submit(role_router *rr, const role_op *ops, size_t n)
{
	(void)ops;
	(void)n;
	((struct rec *)rr)->submits++;
}

static void
rec_reply(role_router *rr, const role_reply *reps, size_t n)
{
	(void)reps;
	(void)n;
	((struct rec *)rr)->replies++;
}

static void
rec_deliver(role_router *rr, const role_fanout *f, size_t n)
{
	(void)f;
	(void)n;
	((struct rec *)rr)->delivers++;
}

static void
rec_user_events(role_router *rr, const role_uevent *ev, size_t n)
{
	struct rec *r = (struct rec *)rr;
	size_t i;

	r->uevent_calls++;
	for (i = 0; i < n && r->nev < MAXEV; i++) {
		r->ev[r->nev++] = ev[i];
	}
	if (r->loopback != NULL) {
		connector_user_events(r->loopback, ev, n);
	}
}

static const struct role_router_ops rec_ops = {
        .submit = rec_submit,
        .reply = rec_reply,
        .deliver = rec_deliver,
        .user_events = rec_user_events,
};

struct fx {
	struct ev_loop *loop;
	im_store *st;
	im_store *faulty; /* the Connector's: st, failing when armed */
	im_shard_map *map;
	connector *cn;
	struct rec r;
	uint16_t port;
	int fd; /* the client, -1 if none */
	uint8_t in[2 * IM_FRAME_MAX];
	size_t inlen;
	im_Envelope *env; /* the last frame received */
};

static void
fx_claim_users(struct fx *fx)
{
	uint32_t slot;

	for (slot = 0; slot < NSLOTS; slot++) {
		assert_int_equal(
		        im_shard_claim(fx->map, fx->st, IM_KIND_USER, slot,
		                       slot == OTHER_SLOT ? OTHER : NODE, NULL),
		        IM_OK);
	}
	assert_int_not_equal(im_shard_slot_of(READER, NSLOTS), OTHER_SLOT);
	assert_int_not_equal(im_shard_slot_of(SENDER, NSLOTS), OTHER_SLOT);
}

/* Group GID with READER and SENDER and three messages from SENDER. */
static void
fx_group(struct fx *fx)
{
	uint32_t slot = im_shard_slot_of(GID, NSLOTS);
	im_fence f = {IM_KIND_GROUP, slot, 0};
	im_msg m[3];
	im_append_result res[3];
	im_group g;
	int i;

	assert_int_equal(im_shard_claim(fx->map, fx->st, IM_KIND_GROUP, slot,
	                                "chat-1", &f.epoch),
	                 IM_OK);
	memset(&g, 0, sizeof(g));
	g.gid = GID;
	g.creator = SENDER;
	snprintf(g.name, sizeof(g.name), "reading club");
	assert_int_equal(im_store_group_create(fx->st, &g), IM_OK);
	assert_int_equal(im_store_member_add(fx->st, GID, READER, NULL), IM_OK);
	assert_int_equal(im_store_member_add(fx->st, GID, SENDER, NULL), IM_OK);
	memset(m, 0, sizeof(m));
	for (i = 0; i < 3; i++) {
		m[i].conv = GID;
		m[i].seq = 10u * (i + 1);
		m[i].prev_seq = 10u * i;
		m[i].ordinal = (uint64_t)i + 1;
		m[i].sender = SENDER;
		m[i].dedup_id = (uint64_t)i + 1;
		m[i].time_ms = 1000;
		m[i].body = "hi";
		m[i].body_len = 2;
	}
	assert_int_equal(im_store_msg_append(fx->st, &f, 1, m, 3, res), IM_OK);
}

static int
fx_setup(void **state)
{
	im_store_sqlite_opts so = IM_STORE_SQLITE_OPTS_INIT;
	im_shard_opts sho = IM_SHARD_OPTS_INIT;
	connector_opts co = CONNECTOR_OPTS_INIT;
	struct fx *fx = calloc(1, sizeof(*fx));
	char err[128];

	assert_non_null(fx);
	fx->fd = -1;
	fx->env = malloc(sizeof(*fx->env));
	assert_non_null(fx->env);
	fx->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(fx->loop);
	so.sync = IM_SQLITE_SYNC_NORMAL;
	assert_int_equal(im_store_sqlite_open(&fx->st, ":memory:", &so, err,
	                                      sizeof(err)),
	                 IM_OK);
	sho.nslots = NSLOTS;
	assert_int_equal(im_shard_create(&fx->map, &sho), IM_OK);
	fx_claim_users(fx);
	fx_group(fx);
	fx->r.base.ops = &rec_ops;
	co.max_conns = 16;
	assert_int_equal(faulty_store_wrap(&fx->faulty, fx->st, false), IM_OK);
	assert_int_equal(connector_create(&fx->cn, fx->loop, fx->faulty,
	                                  fx->map, NODE, 0, &fx->r.base, secret,
	                                  sizeof(secret) - 1, &co),
	                 IM_OK);
	assert_int_equal(connector_listen(fx->cn, "127.0.0.1", 0, &fx->port),
	                 IM_OK);
	*state = fx;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *fx = *state;

	if (fx->fd >= 0) {
		close(fx->fd);
	}
	connector_destroy(fx->cn);
	ev_loop_destroy(fx->loop);
	im_shard_destroy(fx->map);
	im_store_close(fx->faulty);
	im_store_close(fx->st);
	free(fx->env);
	free(fx);
	return 0;
}

static void
client_connect(struct fx *fx)
{
	struct sockaddr_in sa;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(fx->port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fx->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fx->fd >= 0);
	assert_int_equal(connect(fx->fd, (struct sockaddr *)&sa, sizeof(sa)),
	                 0);
}

static void
client_send(struct fx *fx, const im_Envelope *env)
{
	static uint8_t buf[IM_FRAME_HEADER + IM_FRAME_MAX];
	pb_ostream_t os =
	        pb_ostream_from_buffer(buf + IM_FRAME_HEADER, IM_FRAME_MAX);

	assert_true(pb_encode(&os, im_Envelope_fields, env));
	im_frame_put_header(buf, (uint32_t)os.bytes_written);
	assert_int_equal(write(fx->fd, buf, IM_FRAME_HEADER + os.bytes_written),
	                 (ssize_t)(IM_FRAME_HEADER + os.bytes_written));
}

/* Run the loop until the next frame for the client arrived, decoded into
 * fx->env; bounded (~5 s). */
static void
client_recv(struct fx *fx)
{
	const uint8_t *payload;
	uint32_t plen;
	size_t used;
	int i;

	for (i = 0; i < 5000; i++) {
		struct timespec ms = {0, 1000000};
		ssize_t n;

		if (im_frame_parse(fx->in, fx->inlen, IM_FRAME_MAX, &payload,
		                   &plen, &used) == IM_OK) {
			pb_istream_t is = pb_istream_from_buffer(payload, plen);

			memset(fx->env, 0, sizeof(*fx->env));
			assert_true(
			        pb_decode(&is, im_Envelope_fields, fx->env));
			memmove(fx->in, fx->in + used, fx->inlen - used);
			fx->inlen -= used;
			return;
		}
		ev_run(fx->loop, EVRUN_NOWAIT);
		n = recv(fx->fd, fx->in + fx->inlen, sizeof(fx->in) - fx->inlen,
		         MSG_DONTWAIT);
		assert_true(n != 0);
		if (n > 0) {
			fx->inlen += (size_t)n;
		} else {
			assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
			nanosleep(&ms, NULL);
		}
	}
	fail_msg("no frame from the Connector");
}

/* Log in as uid and read the conversation pages to the last one. */
static void
client_login(struct fx *fx, im_uid uid)
{
	im_Envelope *env = calloc(1, sizeof(*env));
	char token[IM_TOKEN_BUF];

	assert_non_null(env);
	assert_int_equal(im_token_mint(token, sizeof(token), secret,
	                               sizeof(secret) - 1, uid,
	                               (uint64_t)time(NULL) + 3600),
	                 IM_OK);
	client_connect(fx);
	env->req_id = 1;
	env->which_msg = im_Envelope_login_tag;
	snprintf(env->msg.login.token, sizeof(env->msg.login.token), "%s",
	         token);
	client_send(fx, env);
	free(env);
	client_recv(fx);
	assert_int_equal(fx->env->which_msg, im_Envelope_login_ok_tag);
	assert_int_equal(fx->env->msg.login_ok.user, uid);
	do {
		client_recv(fx);
		assert_int_equal(fx->env->which_msg, im_Envelope_conv_page_tag);
	} while (!fx->env->msg.conv_page.done);
}

struct uq_count {
	int items;
	int reads;
	im_seq read_seq;
};

static int
uq_count_cb(const im_uq_item *item, void *payload)
{
	struct uq_count *uc = payload;
	im_UserEvent ev = im_UserEvent_init_zero;
	pb_istream_t is = pb_istream_from_buffer(item->body, item->body_len);

	uc->items++;
	if (pb_decode(&is, im_UserEvent_fields, &ev) &&
	    ev.type == im_EventType_EV_READ) {
		uc->reads++;
		uc->read_seq = ev.read_seq;
	}
	return 0;
}

static struct uq_count
uq_count(struct fx *fx, im_uid user)
{
	struct uq_count uc = {0, 0, 0};

	assert_int_equal(
	        im_store_uq_read(fx->st, user, 0, 1000, uq_count_cb, &uc),
	        IM_OK);
	return uc;
}

/* A user in OTHER_SLOT (owned by OTHER), from `from` on. */
static im_uid
user_elsewhere(im_uid from)
{
	while (im_shard_slot_of(from, NSLOTS) != OTHER_SLOT) {
		from++;
	}
	return from;
}

/* MarkRead{GID, seq} as req_id, and its answer in fx->env: an Error
 * with this req_id (code OK when done). */
static void
client_mark_read(struct fx *fx, uint64_t req_id, im_seq seq)
{
	im_Envelope *env = calloc(1, sizeof(*env));

	assert_non_null(env);
	env->req_id = req_id;
	env->which_msg = im_Envelope_mark_read_tag;
	env->msg.mark_read.group = GID;
	env->msg.mark_read.seq = seq;
	client_send(fx, env);
	free(env);
	client_recv(fx);
	assert_int_equal(fx->env->which_msg, im_Envelope_error_tag);
	assert_int_equal(fx->env->req_id, req_id);
}

static void
test_connector_read_of_an_owned_user_is_applied_without_the_router(void **state)
{
	struct fx *fx = *state;
	struct uq_count uc;

	client_login(fx, READER);
	client_mark_read(fx, 2, 20);
	assert_int_equal(fx->env->msg.error.code, im_Code_OK);
	/* The READ is in the user's queue and pushed to the session ... */
	client_recv(fx);
	assert_int_equal(fx->env->which_msg, im_Envelope_user_event_tag);
	assert_int_equal(fx->env->msg.user_event.type, im_EventType_EV_READ);
	assert_int_equal(fx->env->msg.user_event.group, GID);
	assert_int_equal(fx->env->msg.user_event.read_seq, 20);
	uc = uq_count(fx, READER);
	assert_int_equal(uc.reads, 1);
	assert_int_equal(uc.read_seq, 20);
	/* ... and never went to the router. */
	assert_int_equal(fx->r.uevent_calls, 0);
	assert_int_equal(fx->r.submits, 0);
}

/* A read pointer that cannot be written on a full disk: ERR_STORE_FULL
 * "store full" (certain, it did not move), not ERR_UNAVAILABLE; once
 * space returns the same MarkRead moves it. */
static void
test_connector_read_on_a_full_disk_is_store_full(void **state)
{
	struct fx *fx = *state;
	faulty_plan plan = {STORE_OP_BIT(STORE_OP_CONV_UPDATE) |
	                            STORE_OP_BIT(STORE_OP_CONV_UPDATE_FENCED),
	                    1, true, IM_ENOSPC, FAULTY_BEFORE};

	client_login(fx, READER);
	faulty_store_arm(fx->faulty, &plan);
	client_mark_read(fx, 2, 20);
	assert_int_equal(fx->env->msg.error.code, im_Code_ERR_STORE_FULL);
	assert_string_equal(fx->env->msg.error.text, "store full");
	assert_int_equal(faulty_store_faults(fx->faulty), 1);
	assert_int_equal(uq_count(fx, READER).reads, 0);
	faulty_store_arm(fx->faulty, NULL);
	client_mark_read(fx, 3, 20);
	assert_int_equal(fx->env->msg.error.code, im_Code_OK);
	assert_int_equal(uq_count(fx, READER).reads, 1);
}

static void
test_connector_event_for_a_user_owned_elsewhere_goes_back_to_the_router(
        void **state)
{
	struct fx *fx = *state;
	role_uevent ev;
	im_uid user = user_elsewhere(1);

	memset(&ev, 0, sizeof(ev));
	ev.user = user;
	ev.type = im_EventType_EV_READ;
	ev.group = GID;
	ev.actor = user;
	connector_user_events(fx->cn, &ev, 1);
	assert_int_equal(fx->r.uevent_calls, 1);
	assert_int_equal(fx->r.nev, 1);
	assert_int_equal(fx->r.ev[0].user, user);
	assert_int_equal(fx->r.ev[0].hops, 1);
	assert_int_equal(uq_count(fx, user).items, 0);
}

static void
test_connector_user_events_beyond_one_chunk_all_reach_their_queues(void **state)
{
	struct fx *fx = *state;
	size_t n = 2500, k = 0, i;
	role_uevent *evs = calloc(n, sizeof(*evs));
	im_uid user;

	assert_non_null(evs);
	for (user = 10000; k < n; user++) {
		if (im_shard_slot_of(user, NSLOTS) == OTHER_SLOT) {
			continue;
		}
		evs[k].user = user;
		evs[k].type = im_EventType_EV_GROUP_CREATED;
		evs[k].group = GID;
		evs[k].actor = SENDER;
		snprintf(evs[k].name, sizeof(evs[k].name), "reading club");
		k++;
	}
	connector_user_events(fx->cn, evs, n);
	for (i = 0; i < n; i++) {
		struct uq_count uc = uq_count(fx, evs[i].user);

		assert_int_equal(uc.items, 1);
	}
	assert_int_equal(fx->r.uevent_calls, 0);
	free(evs);
}

static void
test_connector_bounce_into_a_router_that_calls_back_keeps_the_batch(
        void **state)
{
	struct fx *fx = *state;
	role_uevent evs[3];
	int i;

	memset(evs, 0, sizeof(evs));
	evs[0].user = READER;
	evs[1].user = user_elsewhere(100);
	evs[2].user = SENDER;
	for (i = 0; i < 3; i++) {
		evs[i].type = im_EventType_EV_READ;
		evs[i].group = GID;
		evs[i].actor = evs[i].user;
		evs[i].read_seq = 10;
		evs[i].read_ordinal = 1;
	}
	/* The bounced event comes straight back while the batch is being
	 * handled, again and again, until its hops run out. */
	fx->r.loopback = fx->cn;
	connector_user_events(fx->cn, evs, 3);
	assert_int_equal(fx->r.uevent_calls, ROLE_UEVENT_HOPS_MAX);
	assert_int_equal(fx->r.ev[0].user, evs[1].user);
	assert_int_equal(fx->r.ev[ROLE_UEVENT_HOPS_MAX - 1].hops,
	                 ROLE_UEVENT_HOPS_MAX);
	assert_int_equal(uq_count(fx, READER).reads, 1);
	assert_int_equal(uq_count(fx, SENDER).reads, 1);
	assert_int_equal(uq_count(fx, evs[1].user).items, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_connector_read_of_an_owned_user_is_applied_without_the_router),
	        T(test_connector_read_on_a_full_disk_is_store_full),
	        T(test_connector_event_for_a_user_owned_elsewhere_goes_back_to_the_router),
	        T(test_connector_user_events_beyond_one_chunk_all_reach_their_queues),
	        T(test_connector_bounce_into_a_router_that_calls_back_keeps_the_batch),
	};

	return cmocka_run_group_tests_name("connector", tests, NULL, NULL);
}
