/*
 * The client core (libim/client/core.h) without a server, a socket or a
 * loop: the test is the driver. It feeds encoded frames and times, reads
 * the frames the core wrote, fires timers by calling im__cc_tick() with a
 * chosen now_ms, and plays the connection's failures through a fake
 * im__cc_io. The same rules are written down for other ports in
 * docs/client-state-machine.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"
#include "fail_alloc.h"
#include "im.pb.h"
#include "im/frame.h"

#include <pb_decode.h>
#include <pb_encode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1000000u /* any start time: the core has no clock of its own */
#define MAXSEEN 32

typedef struct fx {
	im__cc *cc;
	uint64_t now;
	/* the fake driver */
	int nopen, nclose, open_rc;
	char host[256], port[8];
	bool writing;
	/* the callbacks */
	im_seq seq[MAXSEEN];
	bool hist[MAXSEEN];
	size_t ndeliv;
	int nack;
	uint64_t ack_dedup;
	im_seq ack_seq;
	bool ack_dup;
	int nerr, err;
	uint32_t code;
	uint64_t err_dedup;
	char errtext[256];
	im_client_state state;
	int nlogin, nevent, nreply;
	im_gid login_groups[MAXSEEN]; /* on_login's list, in its order */
	size_t nlogin_groups;
	im_seq evseq[MAXSEEN];
	im_client_reply reply;
	/* scratch */
	im_Envelope in, out;
	uint64_t login_req;
} fx;

/* ---- the fake driver ---- */

static int
io_open(void *ud, const char *host, const char *port, char *text, size_t len)
{
	fx *f = ud;

	f->nopen++;
	snprintf(f->host, sizeof(f->host), "%s", host);
	snprintf(f->port, sizeof(f->port), "%s", port);
	if (f->open_rc != IM_OK) {
		snprintf(text, len, "connect %s:%s: refused", host, port);
	}
	return f->open_rc;
}

static void
io_close(void *ud)
{
	((fx *)ud)->nclose++;
}

static void
io_want_write(void *ud, bool on)
{
	((fx *)ud)->writing = on;
}

static void
io_timers(void *ud)
{
	(void)ud;
}

static const im__cc_io fake_io = {io_open, io_close, io_want_write, io_timers};

/* ---- the callbacks ---- */

static void
on_deliver(im_client *cl, const im_client_msg *m, void *payload)
{
	fx *f = payload;

	if (f->ndeliv < MAXSEEN) {
		f->seq[f->ndeliv] = m->seq;
		f->hist[f->ndeliv] = m->history;
	}
	f->ndeliv++;
}

static void
on_ack(im_client *cl, im_gid group, uint64_t dedup_id, im_seq seq, bool dup,
       void *payload)
{
	fx *f = payload;

	f->nack++;
	f->ack_dedup = dedup_id;
	f->ack_seq = seq;
	f->ack_dup = dup;
}

static void
on_error(im_client *cl, const im_client_error *e, void *payload)
{
	fx *f = payload;

	f->nerr++;
	f->err = e->err;
	f->code = e->server_code;
	f->err_dedup = e->dedup_id;
	snprintf(f->errtext, sizeof(f->errtext), "%s", e->text);
}

static void
on_state(im_client *cl, im_client_state st, void *payload)
{
	((fx *)payload)->state = st;
}

static void
on_login(im_client *cl, im_uid user, const im_client_conv *convs, size_t n,
         void *payload)
{
	fx *f = payload;
	size_t i;

	f->nlogin++;
	f->nlogin_groups = n;
	for (i = 0; i < n && i < MAXSEEN; i++) {
		f->login_groups[i] = convs[i].group;
	}
}

static void
on_event(im_client *cl, const im_client_event *ev, void *payload)
{
	fx *f = payload;

	if (f->nevent < MAXSEEN) {
		f->evseq[f->nevent] = ev->seq;
	}
	f->nevent++;
}

static void
on_reply(im_client *cl, const im_client_reply *r, void *payload)
{
	fx *f = payload;

	f->nreply++;
	f->reply = *r;
}

/* ---- helpers ---- */

/* alloc NULL: the default allocator. */
static fx *
fx_new_with(uint32_t send_timeout_ms, uint32_t ping_ms,
            const im_allocator *alloc)
{
	static const char *const servers[] = {"a.example:7600",
	                                      "b.example:7601"};
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	o.token = "tok";
	o.max_outbox = 8;
	o.max_convs = 64;
	o.max_pending = 8;
	o.frame_max = 4096;
	o.backoff_min_ms = 100;
	o.backoff_max_ms = 1000;
	o.ping_ms = ping_ms;
	o.login_timeout_ms = 2000;
	o.send_timeout_ms = send_timeout_ms;
	o.seed = 42;
	o.servers = servers;
	o.nservers = 2;
	o.payload = f;
	o.cb.on_deliver = on_deliver;
	o.cb.on_ack = on_ack;
	o.cb.on_error = on_error;
	o.cb.on_state = on_state;
	o.cb.on_login = on_login;
	o.cb.on_event = on_event;
	o.cb.on_reply = on_reply;
	if (alloc != NULL) {
		o.alloc = *alloc;
	}
	f->now = T0;
	assert_int_equal(im__cc_create(&f->cc, &o, &fake_io, f, NULL), IM_OK);
	return f;
}

static fx *
fx_new(uint32_t send_timeout_ms, uint32_t ping_ms)
{
	return fx_new_with(send_timeout_ms, ping_ms, NULL);
}

static void
fx_free(fx *f)
{
	im__cc_destroy(f->cc);
	free(f);
}

static im_Envelope *
env(fx *f, uint64_t req_id, pb_size_t which)
{
	memset(&f->in, 0, sizeof(f->in));
	f->in.req_id = req_id;
	f->in.which_msg = which;
	return &f->in;
}

/* The server writes bytes: they arrive in one read. */
static void
feed_raw(fx *f, const void *buf, size_t len)
{
	size_t cap;
	uint8_t *p = im__cc_rspace(f->cc, &cap);

	assert_true(len <= cap);
	memcpy(p, buf, len);
	im__cc_received(f->cc, f->now, len);
}

static size_t
encode(const im_Envelope *e, uint8_t *buf, size_t cap)
{
	pb_ostream_t os = pb_ostream_from_buffer(buf + IM_FRAME_HEADER,
	                                         cap - IM_FRAME_HEADER);

	assert_true(pb_encode(&os, im_Envelope_fields, e));
	im_frame_put_header(buf, (uint32_t)os.bytes_written);
	return IM_FRAME_HEADER + os.bytes_written;
}

/* The server sends f->in. */
static void
feed(fx *f)
{
	uint8_t buf[4096];

	feed_raw(f, buf, encode(&f->in, buf, sizeof(buf)));
}

/* The next frame the core wrote, into f->out (written: consumed). */
static bool
next_out(fx *f)
{
	size_t len, used;
	const uint8_t *p = im__cc_output(f->cc, &len), *pl;
	uint32_t plen;
	pb_istream_t is;

	if (len == 0) {
		return false;
	}
	assert_int_equal(
	        im_frame_parse(p, len, IM_FRAME_MAX, &pl, &plen, &used), IM_OK);
	memset(&f->out, 0, sizeof(f->out));
	is = pb_istream_from_buffer(pl, plen);
	assert_true(pb_decode(&is, im_Envelope_fields, &f->out));
	im__cc_wrote(f->cc, f->now, used);
	return true;
}

/* The next frame of kind which, skipping others (acks, pings). */
static void
expect_out(fx *f, pb_size_t which)
{
	while (next_out(f)) {
		if (f->out.which_msg == which) {
			return;
		}
	}
	fail_msg("no frame of kind %u in the output", (unsigned)which);
}

static void
drain(fx *f)
{
	while (next_out(f)) {
	}
}

/* A push of seq (ordinal = seq) sent at time_ms. */
static void
deliver_at(fx *f, im_gid g, im_seq seq, im_seq prev, uint64_t time_ms)
{
	im_Deliver *d = &env(f, 0, im_Envelope_deliver_tag)->msg.deliver;

	d->group = g;
	d->seq = seq;
	d->prev_seq = prev;
	d->ordinal = seq;
	d->sender = 99;
	d->time_ms = time_ms;
	d->body.size = 1;
	d->body.bytes[0] = (uint8_t)seq;
	feed(f);
}

static void
deliver(fx *f, im_gid g, im_seq seq, im_seq prev)
{
	deliver_at(f, g, seq, prev, 0);
}

/* Connect and answer the Login; returns the login's ConvPage (in f->in)
 * for the caller to fill, then login_done(). */
static im_ConvPage *
login_start(fx *f)
{
	im__cc_connect(f->cc, f->now);
	assert_int_equal(f->state, IM_CLIENT_CONNECTING);
	im__cc_connected(f->cc, f->now);
	expect_out(f, im_Envelope_login_tag);
	f->login_req = f->out.req_id;
	env(f, f->login_req, im_Envelope_login_ok_tag)->msg.login_ok.user = 7;
	f->in.msg.login_ok.session[0] = 0x5e;
	feed(f);
	return &env(f, f->login_req, im_Envelope_conv_page_tag)->msg.conv_page;
}

/* The login's last ConvPage (f->in) goes: connected. */
static void
login_done(fx *f)
{
	f->in.msg.conv_page.done = true;
	feed(f);
	assert_int_equal(f->state, IM_CLIENT_CONNECTED);
	drain(f);
}

/* Connect, then a login that lists group 10 at seq 4 (read 2). */
static void
login(fx *f)
{
	im_ConvPage *cp = login_start(f);

	cp->convs[0].group = 10;
	cp->convs[0].last_seq = 4;
	cp->convs[0].last_ordinal = 4;
	cp->convs[0].read_seq = 2;
	cp->convs[0].read_ordinal = 2;
	cp->convs[0].unread = 2;
	cp->convs_count = 1;
	login_done(f);
}

/* The server drops the connection; the retry fires; the TCP connect
 * succeeds. The client resumes: the Resume is in f->out. */
static void
reconnect(fx *f)
{
	int opened = f->nopen;

	im__cc_lost(f->cc, f->now, IM_EUNAVAIL, "connection closed by server");
	assert_int_equal(f->state, IM_CLIENT_DISCONNECTED);
	assert_true(im__cc_next_due(f->cc) != IM__CC_NEVER);
	f->now = im__cc_next_due(f->cc);
	im__cc_tick(f->cc, f->now);
	assert_int_equal(f->nopen, opened + 1);
	im__cc_connected(f->cc, f->now);
	expect_out(f, im_Envelope_resume_tag);
}

/* ---- connection and login ---- */

static void
test_core_connects_to_the_first_address_and_logs_in_once_up(void **state)
{
	fx *f = fx_new(0, 0);

	login(f);
	assert_int_equal(f->nopen, 1);
	assert_string_equal(f->host, "a.example");
	assert_string_equal(f->port, "7600");
	assert_int_equal(f->nlogin, 1);
	assert_int_equal(f->cc->user, 7);
	assert_int_equal(im__cc_cursor(f->cc, 10), 4);
	fx_free(f);
}

static void
test_core_failed_open_retries_the_next_address_after_a_backoff(void **state)
{
	fx *f = fx_new(0, 0);
	uint64_t due;

	f->open_rc = IM_EUNAVAIL;
	im__cc_connect(f->cc, f->now);
	assert_int_equal(f->nerr, 1);
	assert_int_equal(f->err, IM_EUNAVAIL);
	assert_int_equal(f->state, IM_CLIENT_DISCONNECTED);
	due = f->cc->due[IM__CC_T_RETRY];
	/* backoff_min 100 with equal jitter: 50..100 ms */
	assert_true(due >= f->now + 50 && due <= f->now + 100);
	im__cc_tick(f->cc, due - 1);
	assert_int_equal(f->nopen, 1);
	f->now = due;
	im__cc_tick(f->cc, f->now);
	assert_int_equal(f->nopen, 2);
	assert_string_equal(f->host, "b.example");
	fx_free(f);
}

static void
test_core_unanswered_login_times_out_and_schedules_a_retry(void **state)
{
	fx *f = fx_new(0, 0);

	im__cc_connect(f->cc, f->now);
	im__cc_connected(f->cc, f->now);
	drain(f);
	f->now += 2000;
	im__cc_tick(f->cc, f->now);
	assert_int_equal(f->nclose, 1);
	assert_int_equal(f->err, IM_EAGAIN);
	assert_string_equal(f->errtext, "login timed out");
	assert_int_equal(f->state, IM_CLIENT_DISCONNECTED);
	assert_true(f->cc->due[IM__CC_T_RETRY] != IM__CC_NEVER);
	fx_free(f);
}

static void
test_core_refused_token_stops_without_a_retry(void **state)
{
	fx *f = fx_new(0, 0);
	im_Error *er;

	im__cc_connect(f->cc, f->now);
	im__cc_connected(f->cc, f->now);
	expect_out(f, im_Envelope_login_tag);
	er = &env(f, f->out.req_id, im_Envelope_error_tag)->msg.error;
	er->code = im_Code_ERR_AUTH;
	feed(f);
	assert_int_equal(f->err, IM_EPERM);
	assert_true(f->cc->auth_failed);
	assert_int_equal(f->state, IM_CLIENT_STOPPED);
	assert_int_equal(im__cc_next_due(f->cc), IM__CC_NEVER);
	fx_free(f);
}

static void
test_core_silent_server_is_dropped_after_three_ping_intervals(void **state)
{
	fx *f = fx_new(0, 1000);
	int i;

	login(f);
	for (i = 1; i <= 3; i++) {
		f->now += 1000;
		im__cc_tick(f->cc, f->now);
		expect_out(f, im_Envelope_ping_tag);
		assert_int_equal(f->out.msg.ping.time_ms, f->now);
	}
	assert_int_equal(f->nclose, 0);
	f->now += 1000;
	im__cc_tick(f->cc, f->now);
	assert_int_equal(f->nclose, 1);
	assert_string_equal(f->errtext, "server silent");
	fx_free(f);
}

/* With the default options a server that sends nothing after the login
 * (hung: a stopped process whose kernel still acks) is dropped 15 s
 * after its last bytes (3 x IM_CLIENT_PING_MS), neither sooner nor
 * later. (The bound is a literal so that this test fails on a default
 * that misses it.) */
static void
test_core_default_pings_drop_a_hung_server_after_15_s(void **state)
{
	im_client_opts d = IM_CLIENT_OPTS_INIT;
	fx *f = fx_new(0, d.ping_ms);
	uint64_t t0, end;

	login(f);
	t0 = f->now;
	end = t0 + 200000;
	while (f->nclose == 0 && f->now < end) {
		uint64_t due = im__cc_next_due(f->cc);

		f->now = due > f->now && due < end ? due : f->now + 1000;
		im__cc_tick(f->cc, f->now);
		drain(f);
	}
	assert_int_equal(f->nclose, 1);
	assert_string_equal(f->errtext, "server silent");
	assert_true(f->now - t0 > 15000);
	assert_true(f->now - t0 <= 15001);
	fx_free(f);
}

/* ---- cursors and gap repair ---- */

static void
test_core_deliveries_in_chain_advance_the_cursor(void **state)
{
	fx *f = fx_new(0, 0);
	im_client_conv c;

	login(f);
	deliver(f, 10, 5, 4);
	deliver(f, 10, 7, 5); /* seqs need not be contiguous */
	assert_int_equal(f->ndeliv, 2);
	assert_int_equal(im__cc_cursor(f->cc, 10), 7);
	assert_int_equal(im__cc_conv_lookup(f->cc, 10, &c), IM_OK);
	assert_int_equal(c.last_seq, 7);
	assert_int_equal(c.unread, 7 - 2);
	fx_free(f);
}

static void
test_core_duplicate_deliveries_are_dropped_by_the_cursor(void **state)
{
	fx *f = fx_new(0, 0);

	login(f);
	deliver(f, 10, 5, 4);
	deliver(f, 10, 5, 4);
	deliver(f, 10, 4, 3);
	deliver(f, 10, 3, 2);
	assert_int_equal(f->ndeliv, 1);
	assert_int_equal(f->seq[0], 5);
	fx_free(f);
}

/* The server's Sync answer for group 10: seqs first..last, chained. */
static void
sync_page(fx *f, uint64_t req, im_seq first, im_seq last, bool more)
{
	im_SyncPage *sp =
	        &env(f, req, im_Envelope_sync_page_tag)->msg.sync_page;
	im_seq s;

	sp->group = 10;
	for (s = first; s <= last; s++) {
		im_Deliver *d = &sp->msgs[sp->msgs_count++];

		d->group = 10;
		d->seq = s;
		d->prev_seq = s - 1;
		d->ordinal = s;
	}
	sp->more = more;
	feed(f);
}

static void
test_core_gap_is_repaired_from_the_cursor_before_later_pushes(void **state)
{
	fx *f = fx_new(0, 0);
	uint64_t req;
	size_t i;

	login(f);
	deliver(f, 10, 8, 7); /* 5..7 missing */
	assert_int_equal(f->ndeliv, 0);
	expect_out(f, im_Envelope_sync_tag);
	assert_int_equal(f->out.msg.sync.group, 10);
	assert_int_equal(f->out.msg.sync.after, 4);
	req = f->out.req_id;
	deliver(f, 10, 9, 8); /* during the repair: the repair brings it */
	assert_int_equal(f->ndeliv, 0);
	sync_page(f, req, 5, 6, true);
	expect_out(f, im_Envelope_sync_tag); /* the next page */
	assert_int_equal(f->out.msg.sync.after, 6);
	sync_page(f, f->out.req_id, 7, 9, false);
	assert_int_equal(f->ndeliv, 5);
	for (i = 0; i < 5; i++) {
		assert_int_equal(f->seq[i], 5 + i);
		assert_false(f->hist[i]);
	}
	deliver(f, 10, 10, 9); /* live again */
	assert_int_equal(f->ndeliv, 6);
	assert_int_equal(im__cc_cursor(f->cc, 10), 10);
	fx_free(f);
}

static void
test_core_empty_repair_takes_the_chain_as_it_comes(void **state)
{
	fx *f = fx_new(0, 0);

	login(f);
	deliver(f, 10, 8, 7);
	expect_out(f, im_Envelope_sync_tag);
	env(f, f->out.req_id, im_Envelope_sync_page_tag)->msg.sync_page.group =
	        10;
	feed(f); /* nothing, more = false */
	deliver(f, 10, 9, 8);
	deliver(f, 10, 10, 9);
	assert_int_equal(f->ndeliv, 2);
	assert_int_equal(f->seq[0], 9);
	assert_int_equal(f->seq[1], 10);
	fx_free(f);
}

static void
test_core_unanswered_gap_repair_is_asked_again(void **state)
{
	fx *f = fx_new(500, 0);

	login(f);
	deliver(f, 10, 8, 7);
	expect_out(f, im_Envelope_sync_tag);
	f->now += 499;
	im__cc_tick(f->cc, f->now);
	assert_false(next_out(f));
	f->now += 1;
	im__cc_tick(f->cc, f->now);
	expect_out(f, im_Envelope_sync_tag);
	assert_int_equal(f->out.msg.sync.after, 4);
	assert_int_equal(f->nerr, 0);
	fx_free(f);
}

static void
test_core_acks_are_cumulative_once_per_read(void **state)
{
	fx *f = fx_new(0, 0);
	uint8_t buf[3 * 512];
	size_t len = 0;
	im_seq s;

	login(f);
	for (s = 5; s <= 7; s++) {
		im_Deliver *d =
		        &env(f, 0, im_Envelope_deliver_tag)->msg.deliver;

		d->group = 10;
		d->seq = s;
		d->prev_seq = s - 1;
		d->ordinal = s;
		len += encode(&f->in, buf + len, sizeof(buf) - len);
	}
	feed_raw(f, buf, len);
	assert_int_equal(f->ndeliv, 3);
	assert_true(next_out(f));
	assert_int_equal(f->out.which_msg, im_Envelope_deliver_ack_tag);
	assert_int_equal(f->out.msg.deliver_ack.group, 10);
	assert_int_equal(f->out.msg.deliver_ack.seq, 7);
	assert_false(next_out(f));
	fx_free(f);
}

/* ---- the outbox ---- */

static void
test_core_unanswered_send_goes_again_with_the_same_dedup_id(void **state)
{
	fx *f = fx_new(1000, 0);
	uint64_t dd, first_req, retry_req;
	im_SendAck *a;

	login(f);
	assert_int_equal(im__cc_send(f->cc, f->now, 10, "hi", 2, 0, 0, 0, &dd),
	                 IM_OK);
	expect_out(f, im_Envelope_send_tag);
	assert_int_equal(f->out.msg.send.dedup_id, dd);
	first_req = f->out.req_id;
	f->now += 999;
	im__cc_tick(f->cc, f->now);
	assert_false(next_out(f));
	f->now += 1;
	im__cc_tick(f->cc, f->now);
	expect_out(f, im_Envelope_send_tag);
	assert_int_equal(f->out.msg.send.dedup_id, dd);
	retry_req = f->out.req_id;
	assert_true(retry_req != first_req);
	assert_int_equal(f->cc->resends, 1);
	/* the first try's ack comes late, then the retry's (dup) */
	a = &env(f, first_req, im_Envelope_send_ack_tag)->msg.send_ack;
	a->group = 10;
	a->dedup_id = dd;
	a->seq = 5;
	feed(f);
	a->dup = true;
	f->in.req_id = retry_req;
	feed(f);
	assert_int_equal(f->nack, 1);
	assert_int_equal(f->ack_seq, 5);
	assert_false(f->ack_dup);
	assert_int_equal(im__cc_outbox_count(f->cc), 0);
	fx_free(f);
}

static void
test_core_send_goes_again_after_a_reconnect_with_the_same_dedup_id(void **state)
{
	fx *f = fx_new(0, 0);
	uint64_t dd;
	im_Resume *r;

	login(f);
	deliver(f, 10, 5, 4);
	assert_int_equal(im__cc_send(f->cc, f->now, 10, "hi", 2, 0, 0, 0, &dd),
	                 IM_OK);
	drain(f);
	reconnect(f);
	r = &f->out.msg.resume;
	assert_int_equal(r->session[0], 0x5e);
	/* the user queue's cursor, then group 10's */
	assert_int_equal(r->cursors_count, 2);
	assert_int_equal(r->cursors[0].group, 0);
	assert_int_equal(r->cursors[1].group, 10);
	assert_int_equal(r->cursors[1].seq, 5);
	env(f, f->out.req_id, im_Envelope_resume_ok_tag)->msg.resume_ok.user =
	        7;
	feed(f);
	assert_int_equal(f->state, IM_CLIENT_CONNECTED);
	expect_out(f, im_Envelope_send_tag);
	assert_int_equal(f->out.msg.send.dedup_id, dd);
	assert_int_equal(im__cc_outbox_count(f->cc), 1);
	fx_free(f);
}

/* Logged in, one send out, the server answers it with an Error. */
static fx *
send_answered_with(im_Code code, uint64_t *dd)
{
	fx *f = fx_new(0, 0);

	login(f);
	assert_int_equal(im__cc_send(f->cc, f->now, 10, "hi", 2, 0, 0, 0, dd),
	                 IM_OK);
	expect_out(f, im_Envelope_send_tag);
	env(f, f->out.req_id, im_Envelope_error_tag)->msg.error.code = code;
	feed(f);
	return f;
}

static void
test_core_unavailable_send_waits_backoff_min_then_goes_again(void **state)
{
	uint64_t dd;
	fx *f = send_answered_with(im_Code_ERR_UNAVAILABLE, &dd);

	assert_int_equal(f->nerr, 0);
	assert_false(next_out(f));
	f->now += 100;
	im__cc_tick(f->cc, f->now);
	expect_out(f, im_Envelope_send_tag);
	assert_int_equal(f->out.msg.send.dedup_id, dd);
	fx_free(f);
}

static void
test_core_refused_send_leaves_the_outbox_with_an_error(void **state)
{
	uint64_t dd;
	fx *f = send_answered_with(im_Code_ERR_NOT_MEMBER, &dd);

	assert_int_equal(f->nerr, 1);
	assert_int_equal(f->err, IM_EPERM);
	assert_int_equal(f->err_dedup, dd);
	assert_int_equal(im__cc_outbox_count(f->cc), 0);
	fx_free(f);
}

static void
test_core_send_checks_args_and_the_outbox_bound(void **state)
{
	fx *f = fx_new(0, 0);
	int i;

	assert_int_equal(im__cc_send(f->cc, f->now, 0, "x", 1, 0, 0, 0, NULL),
	                 IM_EINVAL);
	assert_int_equal(im__cc_send(f->cc, f->now, 10, NULL, 1, 0, 0, 0, NULL),
	                 IM_EINVAL);
	assert_int_equal(im__cc_send(f->cc, f->now, 10, "x",
	                             IM_CLIENT_BODY_MAX + 1, 0, 0, 0, NULL),
	                 IM_ETOOBIG);
	for (i = 0; i < 8; i++) {
		assert_int_equal(
		        im__cc_send(f->cc, f->now, 10, "x", 1, 0, 0, 0, NULL),
		        IM_OK);
	}
	assert_int_equal(im__cc_send(f->cc, f->now, 10, "x", 1, 0, 0, 0, NULL),
	                 IM_EFULL);
	assert_int_equal(im__cc_outbox_count(f->cc), 8);
	fx_free(f);
}

/* ---- resume ---- */

static void
test_core_lost_session_logs_in_afresh_at_the_same_address(void **state)
{
	fx *f = fx_new(0, 0);
	im_Error *er;

	login(f);
	reconnect(f);
	er = &env(f, f->out.req_id, im_Envelope_error_tag)->msg.error;
	er->code = im_Code_ERR_SESSION;
	feed(f);
	assert_int_equal(f->err, IM_ENOTFOUND);
	assert_false(f->cc->have_session);
	f->now = im__cc_next_due(f->cc);
	im__cc_tick(f->cc, f->now);
	assert_string_equal(f->host, "b.example"); /* where it was */
	im__cc_connected(f->cc, f->now);
	expect_out(f, im_Envelope_login_tag);
	fx_free(f);
}

static void
test_core_gap_seen_during_a_resume_is_repaired_once_resumed(void **state)
{
	fx *f = fx_new(0, 0);
	uint64_t resume_req;

	login(f);
	reconnect(f);
	resume_req = f->out.req_id;
	deliver(f, 10, 8, 7); /* before ResumeOk: noted, not asked yet */
	assert_int_equal(f->ndeliv, 0);
	assert_false(next_out(f));
	env(f, resume_req, im_Envelope_resume_ok_tag);
	feed(f);
	assert_int_equal(f->state, IM_CLIENT_CONNECTED);
	expect_out(f, im_Envelope_sync_tag);
	assert_int_equal(f->out.msg.sync.group, 10);
	assert_int_equal(f->out.msg.sync.after, 4);
	fx_free(f);
}

/* Nothing but acks in the output: no Sync (nor anything else) asked. */
static void
expect_no_request(fx *f)
{
	while (next_out(f)) {
		assert_int_equal(f->out.which_msg,
		                 im_Envelope_deliver_ack_tag);
	}
}

/* A UserEvent push of the user queue: seq after prev. */
static void
uevent(fx *f, im_seq seq, im_seq prev)
{
	im_UserEvent *u = &env(f, 0, im_Envelope_user_event_tag)->msg.user_event;

	u->seq = seq;
	u->prev_seq = prev;
	u->type = im_EventType_EV_READ;
	u->group = 10;
	feed(f);
}

/* ResumeOk for the Resume in f->out, cut for one cursor at end. */
static void
resume_ok_cut(fx *f, im_gid group, im_seq end)
{
	im_ResumeOk *ok =
	        &env(f, f->out.req_id, im_Envelope_resume_ok_tag)->msg.resume_ok;

	ok->user = 7;
	ok->truncated = true;
	ok->replay_ends[0].group = group;
	ok->replay_ends[0].seq = end;
	ok->replay_ends_count = 1;
	feed(f);
	assert_int_equal(f->state, IM_CLIENT_CONNECTED);
}

static void
test_core_cut_replay_is_synced_once_the_replay_reached_its_end(void **state)
{
	fx *f = fx_new(0, 0);
	size_t i;

	login(f); /* group 10 at 4 */
	reconnect(f);
	resume_ok_cut(f, 10, 6);
	assert_false(next_out(f)); /* the replay comes first */
	deliver(f, 10, 5, 4);
	expect_no_request(f);
	deliver(f, 10, 6, 5); /* the replay's last: the rest by Sync */
	expect_out(f, im_Envelope_sync_tag);
	assert_int_equal(f->out.msg.sync.group, 10);
	assert_int_equal(f->out.msg.sync.after, 6);
	sync_page(f, f->out.req_id, 7, 8, true);
	expect_out(f, im_Envelope_sync_tag);
	assert_int_equal(f->out.msg.sync.after, 8);
	sync_page(f, f->out.req_id, 9, 9, false);
	assert_int_equal(f->ndeliv, 5);
	for (i = 0; i < 5; i++) {
		assert_int_equal(f->seq[i], 5 + i);
	}
	expect_no_request(f);
	deliver(f, 10, 10, 9); /* live again, no further Sync */
	assert_int_equal(f->ndeliv, 6);
	fx_free(f);
}

static void
test_core_cut_replay_with_nothing_replayed_syncs_at_once(void **state)
{
	fx *f = fx_new(0, 0);

	login(f);
	reconnect(f);
	resume_ok_cut(f, 10, 4); /* cut at the cursor: nothing replayed */
	expect_out(f, im_Envelope_sync_tag);
	assert_int_equal(f->out.msg.sync.group, 10);
	assert_int_equal(f->out.msg.sync.after, 4);
	fx_free(f);
}

static void
test_core_cut_user_queue_replay_is_synced_after_its_end(void **state)
{
	fx *f = fx_new(0, 0);
	im_SyncPage *sp;

	login(f); /* user queue at 0 */
	reconnect(f);
	resume_ok_cut(f, 0, 2);
	uevent(f, 1, 0);
	expect_no_request(f);
	uevent(f, 2, 1);
	expect_out(f, im_Envelope_sync_tag);
	assert_int_equal(f->out.msg.sync.group, 0);
	assert_int_equal(f->out.msg.sync.after, 2);
	sp = &env(f, f->out.req_id, im_Envelope_sync_page_tag)->msg.sync_page;
	sp->events[0].seq = 3;
	sp->events[0].prev_seq = 2;
	sp->events[0].type = im_EventType_EV_READ;
	sp->events_count = 1;
	feed(f);
	assert_int_equal(f->nevent, 3);
	assert_int_equal(f->evseq[2], 3);
	assert_int_equal(im__cc_cursor(f->cc, 0), 3);
	fx_free(f);
}

static void
test_core_cut_replays_of_many_groups_take_half_the_slots_then_the_rest(
        void **state)
{
	fx *f = fx_new(0, 0); /* max_pending 8: repairs take 4 at most */
	im_ResumeOk *ok;
	uint64_t reqs[8];
	int k, nsync = 0;

	login(f);
	for (k = 0; k < 6; k++) {
		deliver(f, (im_gid)(20 + k), 1, 0); /* known, at 1 */
	}
	drain(f);
	reconnect(f);
	ok = &env(f, f->out.req_id, im_Envelope_resume_ok_tag)->msg.resume_ok;
	ok->truncated = true;
	for (k = 0; k < 6; k++) {
		ok->replay_ends[k].group = (im_gid)(20 + k);
		ok->replay_ends[k].seq = 1; /* nothing replayed */
	}
	ok->replay_ends_count = 6;
	feed(f);
	assert_int_equal(f->state, IM_CLIENT_CONNECTED);
	while (next_out(f)) {
		if (f->out.which_msg == im_Envelope_sync_tag) {
			assert_int_equal(f->out.msg.sync.after, 1);
			reqs[nsync++] = f->out.req_id;
		}
	}
	assert_int_equal(nsync, 4);
	assert_int_equal(f->nerr, 1); /* the reconnect's, nothing since */
	/* One ends (nothing more): a waiting one goes, and so on. */
	for (k = 0; k < 2; k++) {
		env(f, reqs[k], im_Envelope_sync_page_tag);
		feed(f);
		expect_out(f, im_Envelope_sync_tag);
		assert_int_equal(f->out.msg.sync.after, 1);
	}
	env(f, reqs[2], im_Envelope_sync_page_tag);
	feed(f);
	expect_no_request(f);
	assert_int_equal(f->nclose, 1); /* only the reconnect's */
	fx_free(f);
}

static void
test_core_group_created_while_away_is_synced_from_its_start(void **state)
{
	fx *f = fx_new(0, 0);
	im_UserEvent *u;

	login(f); /* user queue at 0 */
	reconnect(f);
	env(f, f->out.req_id, im_Envelope_resume_ok_tag)
	        ->msg.resume_ok.uq_last_seq = 1;
	feed(f);
	u = &env(f, 0, im_Envelope_user_event_tag)->msg.user_event;
	u->seq = 1;
	u->type = im_EventType_EV_GROUP_CREATED;
	u->group = 30;
	feed(f); /* replayed: 30 may have messages no cursor brings */
	assert_int_equal(f->nevent, 1);
	expect_out(f, im_Envelope_sync_tag);
	assert_int_equal(f->out.msg.sync.group, 30);
	assert_int_equal(f->out.msg.sync.after, 0);
	u = &env(f, 0, im_Envelope_user_event_tag)->msg.user_event;
	u->seq = 2;
	u->prev_seq = 1;
	u->type = im_EventType_EV_GROUP_CREATED;
	u->group = 31;
	feed(f); /* live: its messages are pushed after it */
	assert_int_equal(f->nevent, 2);
	expect_no_request(f);
	fx_free(f);
}

static void
test_core_user_event_gap_is_repaired_from_the_cursor(void **state)
{
	fx *f = fx_new(0, 0);
	im_SyncPage *sp;

	login(f);
	uevent(f, 1, 0);
	uevent(f, 4, 2); /* 2 missed (seqs need not be contiguous) */
	assert_int_equal(f->nevent, 1);
	expect_out(f, im_Envelope_sync_tag);
	assert_int_equal(f->out.msg.sync.group, 0);
	assert_int_equal(f->out.msg.sync.after, 1);
	uevent(f, 5, 4); /* during the repair: the repair brings it */
	sp = &env(f, f->out.req_id, im_Envelope_sync_page_tag)->msg.sync_page;
	sp->events[0].seq = 2;
	sp->events[0].prev_seq = 1;
	sp->events[1].seq = 4;
	sp->events[1].prev_seq = 2;
	sp->events[2].seq = 5;
	sp->events[2].prev_seq = 4;
	sp->events_count = 3;
	feed(f);
	assert_int_equal(f->nevent, 4);
	assert_int_equal(f->evseq[1], 2);
	assert_int_equal(f->evseq[3], 5);
	uevent(f, 6, 5); /* live again */
	uevent(f, 7, 0); /* an older server: prev_seq not said */
	assert_int_equal(f->nevent, 6);
	assert_int_equal(im__cc_cursor(f->cc, 0), 7);
	fx_free(f);
}

/* ---- bad input from the server ---- */

static void
test_core_oversize_frame_closes_with_a_clear_error(void **state)
{
	fx *f = fx_new(0, 0);
	static const uint8_t big[4] = {0x00, 0x10, 0x00, 0x00}; /* 1 MiB */

	login(f);
	feed_raw(f, big, sizeof(big));
	assert_int_equal(f->nclose, 1);
	assert_int_equal(f->err, IM_ETOOBIG);
	assert_string_equal(f->errtext, "incoming frame over 4096 bytes");
	assert_int_equal(f->state, IM_CLIENT_DISCONNECTED);
	fx_free(f);
}

static void
test_core_undecodable_frame_closes_with_a_protocol_error(void **state)
{
	fx *f = fx_new(0, 0);
	static const uint8_t junk[7] = {0, 0, 0, 3, 0xff, 0xff, 0xff};

	login(f);
	feed_raw(f, junk, sizeof(junk));
	assert_int_equal(f->nclose, 1);
	assert_int_equal(f->err, IM_EPROTO);
	assert_non_null(strstr(f->errtext, "bad frame"));
	fx_free(f);
}

static void
test_core_empty_frame_closes_with_a_protocol_error(void **state)
{
	fx *f = fx_new(0, 0);
	static const uint8_t empty[4] = {0, 0, 0, 0};

	login(f);
	feed_raw(f, empty, sizeof(empty));
	assert_int_equal(f->err, IM_EPROTO);
	assert_string_equal(f->errtext, "empty frame");
	fx_free(f);
}

static void
test_core_frame_split_over_reads_is_handled_once_whole(void **state)
{
	fx *f = fx_new(0, 0);
	uint8_t buf[512];
	size_t len;
	im_Deliver *d = &env(f, 0, im_Envelope_deliver_tag)->msg.deliver;

	d->group = 10;
	d->seq = 5;
	d->prev_seq = 4;
	d->ordinal = 5;
	len = encode(&f->in, buf, sizeof(buf));
	login(f);
	feed_raw(f, buf, 3);
	feed_raw(f, buf + 3, len - 4);
	assert_int_equal(f->ndeliv, 0);
	feed_raw(f, buf + len - 1, 1);
	assert_int_equal(f->ndeliv, 1);
	assert_int_equal(f->nclose, 0);
	fx_free(f);
}

static void
test_core_bad_redirect_address_closes_with_a_protocol_error(void **state)
{
	fx *f = fx_new(0, 0);

	login(f);
	snprintf(env(f, 0, im_Envelope_redirect_tag)->msg.redirect.address,
	         sizeof(f->in.msg.redirect.address), "%s", "no-port");
	feed(f);
	assert_int_equal(f->nclose, 1);
	assert_int_equal(f->err, IM_EPROTO);
	assert_int_equal(f->code, im_Code_ERR_REDIRECT);
	fx_free(f);
}

static void
test_core_answers_nobody_asked_for_are_ignored(void **state)
{
	fx *f = fx_new(0, 0);
	im_SendAck *a;

	login(f);
	a = &env(f, 999, im_Envelope_send_ack_tag)->msg.send_ack;
	a->group = 10;
	a->dedup_id = 1234;
	feed(f);
	env(f, 998, im_Envelope_sync_page_tag)->msg.sync_page.group = 10;
	feed(f);
	env(f, 997, im_Envelope_pong_tag);
	feed(f);
	env(f, 996, im_Envelope_login_ok_tag)->msg.login_ok.user = 666;
	feed(f);
	deliver(f, 0, 5, 4); /* no group */
	assert_int_equal(f->nack + f->nreply + f->nerr, 0);
	assert_int_equal(f->ndeliv, 0);
	assert_int_equal(f->cc->user, 7);
	assert_int_equal(f->nclose, 0);
	fx_free(f);
}

/* ---- the conversation list (an im_convlist) ---- */

/* A login row whose ordinals are its seqs. */
static void
conv_row(im_ConvInfo *ci, im_gid g, im_seq last, im_seq read, uint64_t time_ms,
         uint32_t flags)
{
	ci->group = g;
	ci->last_seq = last;
	ci->last_ordinal = last;
	ci->read_seq = read;
	ci->read_ordinal = read;
	ci->unread = last > read ? last - read : 0;
	ci->last_time_ms = time_ms;
	ci->flags = flags;
}

/* A user-queue event of group g, chained after seq - 1. */
static void
uevent_of(fx *f, im_seq seq, im_EventType type, im_gid g, im_seq read)
{
	im_UserEvent *u =
	        &env(f, 0, im_Envelope_user_event_tag)->msg.user_event;

	u->seq = seq;
	u->prev_seq = seq - 1;
	u->type = type;
	u->group = g;
	u->read_seq = read;
	u->read_ordinal = read;
	feed(f);
}

static im_client_conv
conv_of(fx *f, im_gid g)
{
	im_client_conv c;

	assert_int_equal(im__cc_conv_lookup(f->cc, g, &c), IM_OK);
	return c;
}

static void
test_core_read_on_another_device_ahead_of_the_pushes_waits_for_them(
        void **state)
{
	fx *f = fx_new(0, 0);
	im_client_conv c;

	login(f); /* group 10: last 4, read 2 */
	/* Another device read up to 7; 5..7 are not here yet. */
	uevent_of(f, 1, im_EventType_EV_READ, 10, 7);
	c = conv_of(f, 10);
	assert_int_equal(c.last_seq, 4);
	assert_int_equal(c.read_seq, 7);
	assert_int_equal(c.read_ordinal, 7);
	assert_int_equal(c.unread, 0);
	deliver(f, 10, 5, 4);
	assert_int_equal(conv_of(f, 10).unread, 0);
	deliver(f, 10, 6, 5);
	deliver(f, 10, 7, 6);
	c = conv_of(f, 10);
	assert_int_equal(c.last_seq, 7);
	assert_int_equal(c.read_seq, 7);
	assert_int_equal(c.unread, 0);
	deliver(f, 10, 8, 7);
	uevent_of(f, 2, im_EventType_EV_READ, 10, 3); /* moves nothing back */
	c = conv_of(f, 10);
	assert_int_equal(c.read_seq, 7);
	assert_int_equal(c.read_ordinal, 7);
	assert_int_equal(c.unread, 8 - 7);
	assert_int_equal(f->ndeliv, 4);
	fx_free(f);
}

static void
test_core_login_row_read_past_its_last_counts_from_the_later_pushes(
        void **state)
{
	fx *f = fx_new(0, 0);
	im_ConvPage *cp = login_start(f);
	im_client_conv c;

	conv_row(&cp->convs[0], 10, 4, 6, 0, 0);
	cp->convs_count = 1;
	login_done(f);
	c = conv_of(f, 10);
	assert_int_equal(c.last_seq, 4);
	assert_int_equal(c.read_seq, 6);
	assert_int_equal(c.unread, 0);
	deliver(f, 10, 5, 4);
	deliver(f, 10, 6, 5);
	assert_int_equal(conv_of(f, 10).unread, 0);
	deliver(f, 10, 7, 6);
	c = conv_of(f, 10);
	assert_int_equal(c.read_seq, 6);
	assert_int_equal(c.unread, 1);
	fx_free(f);
}

/* The groups of im__cc_convs(f->cc, .., max) in order, as a string. */
static const char *
listed(fx *f, size_t max)
{
	static char s[128];
	im_client_conv out[8];
	size_t n = 0, i, len = 0;

	im__cc_convs(f->cc, out, max, &n);
	s[0] = '\0';
	for (i = 0; i < n; i++) {
		len += (size_t)snprintf(s + len, sizeof(s) - len, "%s%llu",
		                        i > 0 ? " " : "",
		                        (unsigned long long)out[i].group);
	}
	return s;
}

static void
test_core_convs_are_listed_pinned_first_then_newest_first(void **state)
{
	fx *f = fx_new(0, 0);
	im_ConvPage *cp = login_start(f);

	conv_row(&cp->convs[0], 10, 4, 4, 100, 0);
	conv_row(&cp->convs[1], 20, 4, 4, 300, 0);
	conv_row(&cp->convs[2], 30, 4, 4, 200, IM_CONV_PINNED);
	conv_row(&cp->convs[3], 40, 4, 4, 300, 0); /* tie: lower id first */
	cp->convs_count = 4;
	login_done(f);
	assert_int_equal(f->nlogin_groups, 4);
	assert_int_equal(f->login_groups[0], 30);
	assert_int_equal(f->login_groups[1], 20);
	assert_int_equal(f->login_groups[2], 40);
	assert_int_equal(f->login_groups[3], 10);
	assert_string_equal(listed(f, 8), "30 20 40 10");
	deliver_at(f, 10, 5, 4, 400); /* newest now, still after the pin */
	assert_string_equal(listed(f, 8), "30 10 20 40");
	uevent_of(f, 1, im_EventType_EV_LEFT, 20, 0); /* left: not listed */
	assert_string_equal(listed(f, 8), "30 10 40");
	assert_string_equal(listed(f, 2), "30 10");
	assert_int_equal(im__cc_conv_lookup(f->cc, 20, NULL), IM_ENOTFOUND);
	fx_free(f);
}

static void
test_core_push_the_list_cannot_count_is_shown_and_the_list_kept(void **state)
{
	fx *f = fx_new(0, 0);
	im_Deliver *d;
	im_client_conv c;

	login(f); /* group 10: last 4 (ordinal 4), read 2 */
	d = &env(f, 0, im_Envelope_deliver_tag)->msg.deliver;
	d->group = 10;
	d->seq = 5;
	d->prev_seq = 4;
	d->ordinal = 3; /* not above the last one's: im_convlist refuses it */
	feed(f);
	assert_int_equal(f->ndeliv, 1); /* the chain took it */
	assert_int_equal(im__cc_cursor(f->cc, 10), 5);
	c = conv_of(f, 10);
	assert_int_equal(c.last_seq, 4);
	assert_int_equal(c.unread, 2);
	deliver(f, 10, 6, 5); /* the next one counts again */
	c = conv_of(f, 10);
	assert_int_equal(c.last_seq, 6);
	assert_int_equal(c.unread, 6 - 2);
	assert_int_equal(f->ndeliv, 2);
	fx_free(f);
}

static void
test_core_conversation_without_memory_is_shown_untracked(void **state)
{
	fail_alloc fa = {0, 0, 0};
	im_allocator a = fail_alloc_allocator(&fa);
	fx *f = fx_new_with(0, 0, &a);
	im_gid g;

	login(f); /* group 10 */
	/* The list's first 8 entries came with its first growth. */
	for (g = 11; g < 18; g++) {
		deliver(f, g, 5, 4);
	}
	fa.fail_at = fa.calls + 1; /* the list's next growth fails */
	deliver(f, 18, 5, 4);
	assert_int_equal(f->ndeliv, 7 + 1); /* shown */
	assert_int_equal(im__cc_conv_lookup(f->cc, 18, NULL), IM_ENOTFOUND);
	assert_int_equal(im__cc_cursor(f->cc, 18), 0);
	assert_int_equal(conv_of(f, 10).last_seq, 4); /* nothing else lost */
	assert_int_equal(conv_of(f, 17).last_seq, 5);
	/* Memory again: the same message, not deduplicated (nothing was
	 * tracked), tracks the group from it on. */
	deliver(f, 18, 5, 4);
	assert_int_equal(f->ndeliv, 7 + 2);
	assert_int_equal(conv_of(f, 18).last_seq, 5);
	assert_int_equal(im__cc_cursor(f->cc, 18), 5);
	deliver(f, 18, 5, 4);
	assert_int_equal(f->ndeliv, 7 + 2);
	fx_free(f);
	assert_int_equal(fa.live, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(
	                test_core_connects_to_the_first_address_and_logs_in_once_up),
	        cmocka_unit_test(
	                test_core_failed_open_retries_the_next_address_after_a_backoff),
	        cmocka_unit_test(
	                test_core_unanswered_login_times_out_and_schedules_a_retry),
	        cmocka_unit_test(test_core_refused_token_stops_without_a_retry),
	        cmocka_unit_test(
	                test_core_silent_server_is_dropped_after_three_ping_intervals),
	        cmocka_unit_test(
	                test_core_default_pings_drop_a_hung_server_after_15_s),
	        cmocka_unit_test(
	                test_core_deliveries_in_chain_advance_the_cursor),
	        cmocka_unit_test(
	                test_core_duplicate_deliveries_are_dropped_by_the_cursor),
	        cmocka_unit_test(
	                test_core_gap_is_repaired_from_the_cursor_before_later_pushes),
	        cmocka_unit_test(
	                test_core_empty_repair_takes_the_chain_as_it_comes),
	        cmocka_unit_test(
	                test_core_unanswered_gap_repair_is_asked_again),
	        cmocka_unit_test(test_core_acks_are_cumulative_once_per_read),
	        cmocka_unit_test(
	                test_core_unanswered_send_goes_again_with_the_same_dedup_id),
	        cmocka_unit_test(
	                test_core_send_goes_again_after_a_reconnect_with_the_same_dedup_id),
	        cmocka_unit_test(
	                test_core_unavailable_send_waits_backoff_min_then_goes_again),
	        cmocka_unit_test(
	                test_core_refused_send_leaves_the_outbox_with_an_error),
	        cmocka_unit_test(
	                test_core_send_checks_args_and_the_outbox_bound),
	        cmocka_unit_test(
	                test_core_lost_session_logs_in_afresh_at_the_same_address),
	        cmocka_unit_test(
	                test_core_gap_seen_during_a_resume_is_repaired_once_resumed),
	        cmocka_unit_test(
	                test_core_cut_replay_is_synced_once_the_replay_reached_its_end),
	        cmocka_unit_test(
	                test_core_cut_replay_with_nothing_replayed_syncs_at_once),
	        cmocka_unit_test(
	                test_core_cut_user_queue_replay_is_synced_after_its_end),
	        cmocka_unit_test(
	                test_core_cut_replays_of_many_groups_take_half_the_slots_then_the_rest),
	        cmocka_unit_test(
	                test_core_group_created_while_away_is_synced_from_its_start),
	        cmocka_unit_test(
	                test_core_user_event_gap_is_repaired_from_the_cursor),
	        cmocka_unit_test(
	                test_core_oversize_frame_closes_with_a_clear_error),
	        cmocka_unit_test(
	                test_core_undecodable_frame_closes_with_a_protocol_error),
	        cmocka_unit_test(
	                test_core_empty_frame_closes_with_a_protocol_error),
	        cmocka_unit_test(
	                test_core_frame_split_over_reads_is_handled_once_whole),
	        cmocka_unit_test(
	                test_core_bad_redirect_address_closes_with_a_protocol_error),
	        cmocka_unit_test(
	                test_core_answers_nobody_asked_for_are_ignored),
	        cmocka_unit_test(
	                test_core_read_on_another_device_ahead_of_the_pushes_waits_for_them),
	        cmocka_unit_test(
	                test_core_login_row_read_past_its_last_counts_from_the_later_pushes),
	        cmocka_unit_test(
	                test_core_convs_are_listed_pinned_first_then_newest_first),
	        cmocka_unit_test(
	                test_core_push_the_list_cannot_count_is_shown_and_the_list_kept),
	        cmocka_unit_test(
	                test_core_conversation_without_memory_is_shown_untracked),
	};

	return cmocka_run_group_tests_name("client_core", tests, NULL, NULL);
}
