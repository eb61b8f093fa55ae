/*
 * Hostile and broken clients against a real imd: each gets a clear Error
 * and/or a close, and the server keeps serving a well-behaved client.
 * One server for the whole file (started in the group setup) so damage
 * from one case would show up in the next; it must still exit 0 on
 * SIGTERM at the end (no leaks under the sanitizer build).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>

#include <pb_encode.h>

#include "harness.h"
#include "im/frame.h"
#include "test_rng.h"

#define T H_TIMEOUT_MS

static imd_proc imd;

static const char *const quick_timeouts[] = {
        "--login-timeout", "1", "--idle-timeout", "2", "--frame-timeout", "1",
        NULL};

static int
group_setup(void **state)
{
	if (imd_init(&imd, quick_timeouts) != 0 || imd_start(&imd) != 0) {
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	return imd_cleanup(&imd) == 0 ? 0 : -1;
}

/* A well-behaved pair still chats: the server survived the last case. */
static void
assert_server_still_serves(void)
{
	char tok[IM_TOKEN_BUF];
	tclient a;
	int64_t g, s;
	tpush p;
	int i;

	imd_token(&imd, 500, 3600, tok, sizeof(tok));
	assert_int_equal(tc_connect(&a, imd.port), 0);
	assert_int_equal(tc_login(&a, tok, NULL, 0, NULL), 1);
	g = tc_create_group(&a, "still here", NULL, 0);
	assert_true(g > 0);
	s = tc_send_msg(&a, (uint64_t)g, 1, "ok", NULL);
	assert_true(s > 0);
	for (i = 0; i < 10; i++) {
		assert_int_equal(tc_next_push(&a, &p, T), 1);
		if (p.kind == im_Envelope_deliver_tag) {
			break;
		}
	}
	assert_int_equal(p.seq, s);
	tc_close(&a);
}

static void
connect_raw(tclient *c)
{
	assert_int_equal(tc_connect(c, imd.port), 0);
}

static void
expect_error_and_close(tclient *c, int code)
{
	int last = -1;

	assert_true(tc_wait_closed(c, T, &last));
	assert_int_equal(last, code);
	tc_close(c);
}

static void
test_system_oversize_length_prefix_gets_too_big_and_close(void **state)
{
	tclient c;
	uint8_t hdr[IM_FRAME_HEADER];

	connect_raw(&c);
	im_frame_put_header(hdr, 0x7fffffffu);
	assert_int_equal(tc_send_raw(&c, hdr, sizeof(hdr)), 0);
	expect_error_and_close(&c, im_Code_ERR_TOO_BIG);
	/* Just over the client limit is refused as well. */
	connect_raw(&c);
	im_frame_put_header(hdr, 8192 + 1);
	assert_int_equal(tc_send_raw(&c, hdr, sizeof(hdr)), 0);
	expect_error_and_close(&c, im_Code_ERR_TOO_BIG);
	assert_server_still_serves();
}

static void
test_system_truncated_frame_then_close_gets_bad_request(void **state)
{
	tclient c;
	uint8_t buf[IM_FRAME_HEADER + 10];

	connect_raw(&c);
	im_frame_put_header(buf, 100);
	memset(buf + IM_FRAME_HEADER, 0x08, 10);
	assert_int_equal(tc_send_raw(&c, buf, sizeof(buf)), 0);
	assert_int_equal(shutdown(c.fd, SHUT_WR), 0);
	expect_error_and_close(&c, im_Code_ERR_BAD_REQUEST);
	assert_server_still_serves();
}

static void
test_system_garbage_bytes_get_bad_request_and_close(void **state)
{
	test_rng rng = {test_seed()};
	tclient c;
	uint8_t buf[IM_FRAME_HEADER + 64];
	int round, i;

	/* A field with wire type 7 (invalid) first makes sure the decoder
	 * fails whatever random bytes follow. */
	for (round = 0; round < 20; round++) {
		connect_raw(&c);
		im_frame_put_header(buf, 64);
		buf[IM_FRAME_HEADER] = 0xff;
		for (i = 1; i < 64; i++) {
			buf[IM_FRAME_HEADER + i] = (uint8_t)test_rng_next(&rng);
		}
		assert_int_equal(tc_send_raw(&c, buf, sizeof(buf)), 0);
		expect_error_and_close(&c, im_Code_ERR_BAD_REQUEST);
	}
	/* A zero length prefix is no frame at all. */
	connect_raw(&c);
	memset(buf, 0, IM_FRAME_HEADER);
	assert_int_equal(tc_send_raw(&c, buf, IM_FRAME_HEADER), 0);
	expect_error_and_close(&c, im_Code_ERR_BAD_REQUEST);
	assert_server_still_serves();
}

static void
test_system_random_frames_never_hurt_the_server(void **state)
{
	test_rng rng = {test_seed()};
	tclient c;
	uint8_t buf[IM_FRAME_HEADER + 256];
	int round, i;

	/* Whatever the bytes decode to, the answer is an Error and (since
	 * nobody logged in) a close, or a timeout close. */
	for (round = 0; round < 50; round++) {
		uint32_t len = 1 + (uint32_t)test_rng_below(&rng, 256);
		int last = -1;

		connect_raw(&c);
		im_frame_put_header(buf, len);
		for (i = 0; i < (int)len; i++) {
			buf[IM_FRAME_HEADER + i] = (uint8_t)test_rng_next(&rng);
		}
		assert_int_equal(tc_send_raw(&c, buf, IM_FRAME_HEADER + len),
		                 0);
		assert_true(tc_wait_closed(&c, T, &last));
		assert_true(last > 0);
		tc_close(&c);
	}
	assert_server_still_serves();
}

static void
test_system_unknown_and_wrong_typed_fields_get_bad_request(void **state)
{
	tclient c;
	/* Field 99 (varint) only: valid protobuf, but no request in it. */
	static const uint8_t unknown[] = {0, 0, 0, 3, 0x98, 0x06, 0x01};
	/* Field 2 (Login, a message) sent as a varint: wrong wire type. */
	static const uint8_t wrong[] = {0, 0, 0, 2, 0x10, 0x05};
	/* req_id (varint) sent as a length-delimited field. */
	static const uint8_t wrong2[] = {0, 0, 0, 3, 0x0a, 0x01, 0x00};
	char tok[IM_TOKEN_BUF];

	connect_raw(&c);
	assert_int_equal(tc_send_raw(&c, unknown, sizeof(unknown)), 0);
	expect_error_and_close(&c, im_Code_ERR_BAD_REQUEST);
	connect_raw(&c);
	assert_int_equal(tc_send_raw(&c, wrong, sizeof(wrong)), 0);
	expect_error_and_close(&c, im_Code_ERR_BAD_REQUEST);
	connect_raw(&c);
	assert_int_equal(tc_send_raw(&c, wrong2, sizeof(wrong2)), 0);
	expect_error_and_close(&c, im_Code_ERR_BAD_REQUEST);
	/* Unknown fields beside a real request are skipped (protobuf
	 * forward compatibility): the login works. */
	{
		im_Envelope *env = calloc(1, sizeof(*env));
		uint8_t frame[512];
		pb_ostream_t os = pb_ostream_from_buffer(frame + 4, 500);

		assert_non_null(env);
		imd_token(&imd, 8, 3600, tok, sizeof(tok));
		env->req_id = 1;
		env->which_msg = im_Envelope_login_tag;
		snprintf(env->msg.login.token, sizeof(env->msg.login.token),
		         "%s", tok);
		assert_true(pb_encode(&os, im_Envelope_fields, env));
		memcpy(frame + 4 + os.bytes_written, unknown + 4, 3);
		im_frame_put_header(frame, (uint32_t)os.bytes_written + 3);
		connect_raw(&c);
		assert_int_equal(
		        tc_send_raw(&c, frame, 4 + os.bytes_written + 3), 0);
		assert_int_equal(tc_wait_reply(&c, 1, T), 1);
		assert_int_equal(c.env->which_msg, im_Envelope_login_ok_tag);
		tc_close(&c);
		free(env);
	}
	/* After login too: a broken frame closes the connection. */
	imd_token(&imd, 7, 3600, tok, sizeof(tok));
	connect_raw(&c);
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), 1);
	assert_int_equal(tc_send_raw(&c, wrong, sizeof(wrong)), 0);
	expect_error_and_close(&c, im_Code_ERR_BAD_REQUEST);
	assert_server_still_serves();
}

static void
test_system_send_before_login_gets_not_logged_in_and_close(void **state)
{
	tclient c;
	im_Envelope *env = calloc(1, sizeof(*env));

	assert_non_null(env);
	connect_raw(&c);
	env->req_id = 5;
	env->which_msg = im_Envelope_send_tag;
	env->msg.send.group = 1;
	env->msg.send.dedup_id = 1;
	assert_int_equal(tc_send(&c, env), 0);
	expect_error_and_close(&c, im_Code_ERR_NOT_LOGGED_IN);
	free(env);
	assert_server_still_serves();
}

static void
test_system_bad_expired_or_missing_token_gets_auth_and_close(void **state)
{
	char tok[IM_TOKEN_BUF];
	tclient c;
	size_t n;

	imd_token(&imd, 9, -10, tok, sizeof(tok));
	connect_raw(&c);
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), -im_Code_ERR_AUTH);
	expect_error_and_close(&c, -1);

	imd_token(&imd, 9, 3600, tok, sizeof(tok));
	n = strlen(tok);
	tok[n - 1] = tok[n - 1] == 'a' ? 'b' : 'a';
	connect_raw(&c);
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), -im_Code_ERR_AUTH);
	expect_error_and_close(&c, -1);

	connect_raw(&c);
	assert_int_equal(tc_login(&c, "", NULL, 0, NULL), -im_Code_ERR_AUTH);
	expect_error_and_close(&c, -1);
	assert_server_still_serves();
}

static void
test_system_silent_connection_is_closed_by_the_login_timeout(void **state)
{
	tclient c;

	connect_raw(&c);
	expect_error_and_close(&c, im_Code_ERR_TIMEOUT);
	assert_server_still_serves();
}

static void
test_system_idle_logged_in_connection_is_closed(void **state)
{
	char tok[IM_TOKEN_BUF];
	tclient c;

	imd_token(&imd, 11, 3600, tok, sizeof(tok));
	connect_raw(&c);
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), 1);
	expect_error_and_close(&c, im_Code_ERR_TIMEOUT);
	assert_server_still_serves();
}

static void
test_system_bad_requests_after_login_keep_the_connection(void **state)
{
	char tok[IM_TOKEN_BUF];
	tclient c;
	im_Envelope *env = calloc(1, sizeof(*env));

	assert_non_null(env);
	imd_token(&imd, 12, 3600, tok, sizeof(tok));
	connect_raw(&c);
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), 1);
	/* Zero dedup id, zero group, unknown group, second login. */
	assert_int_equal(tc_send_msg(&c, 5, 0, "x", NULL),
	                 -im_Code_ERR_BAD_REQUEST);
	assert_int_equal(tc_send_msg(&c, 0, 1, "x", NULL),
	                 -im_Code_ERR_BAD_REQUEST);
	assert_int_equal(tc_send_msg(&c, 987654321, 1, "x", NULL),
	                 -im_Code_ERR_NOT_FOUND);
	env->which_msg = im_Envelope_login_tag;
	snprintf(env->msg.login.token, sizeof(env->msg.login.token), "%s", tok);
	assert_int_equal(tc_simple(&c, env), im_Code_ERR_BAD_REQUEST);
	memset(env, 0, sizeof(*env));
	env->which_msg = im_Envelope_mark_read_tag;
	env->msg.mark_read.group = 424242;
	assert_int_equal(tc_simple(&c, env), im_Code_ERR_NOT_MEMBER);
	memset(env, 0, sizeof(*env));
	env->which_msg = im_Envelope_ping_tag;
	assert_int_equal(tc_call(&c, env, T), 1);
	assert_int_equal(c.env->which_msg, im_Envelope_pong_tag);
	/* A server-only message from a client is a protocol violation. */
	memset(env, 0, sizeof(*env));
	env->which_msg = im_Envelope_deliver_tag;
	assert_int_equal(tc_send(&c, env), 0);
	expect_error_and_close(&c, im_Code_ERR_BAD_REQUEST);
	free(env);
	assert_server_still_serves();
}

/* Random but well-formed requests from a logged-in client, with random
 * ids, seqs and limits: every one gets an answer or is ignored (acks), none
 * may crash or wedge the server. */
static void
test_system_random_requests_after_login_never_hurt_the_server(void **state)
{
	static const pb_size_t kinds[] = {
	        im_Envelope_send_tag,          im_Envelope_deliver_ack_tag,
	        im_Envelope_mark_read_tag,     im_Envelope_sync_tag,
	        im_Envelope_create_group_tag,  im_Envelope_add_member_tag,
	        im_Envelope_remove_member_tag, im_Envelope_list_members_tag,
	        im_Envelope_ping_tag,
	};
	test_rng rng = {test_seed()};
	im_Envelope *env = calloc(1, sizeof(*env));
	char tok[IM_TOKEN_BUF];
	uint64_t groups[4] = {0};
	tclient c;
	int i;

	assert_non_null(env);
	imd_token(&imd, 77, 3600, tok, sizeof(tok));
	connect_raw(&c);
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), 1);
	c.drop_pushes = true;
	for (i = 0; i < 4; i++) {
		int64_t g = tc_create_group(&c, "fuzz", NULL, 0);

		assert_true(g > 0);
		groups[i] = (uint64_t)g;
	}
	for (i = 0; i < 600; i++) {
		/* Mostly real groups and small numbers, sometimes anything. */
		uint64_t g = test_rng_below(&rng, 4)
		                     ? groups[test_rng_below(&rng, 4)]
		                     : test_rng_next(&rng);
		uint64_t x = test_rng_below(&rng, 2) ? test_rng_below(&rng, 50)
		                                     : test_rng_next(&rng);
		uint64_t y = test_rng_below(&rng, 2) ? test_rng_below(&rng, 50)
		                                     : test_rng_next(&rng);
		int rc;

		memset(env, 0, sizeof(*env));
		env->req_id = (uint64_t)(i + 100);
		env->which_msg = kinds[test_rng_below(&rng, 9)];
		switch (env->which_msg) {
		case im_Envelope_send_tag:
			env->msg.send.group = g;
			env->msg.send.dedup_id = x;
			env->msg.send.reply_to = y;
			env->msg.send.type = (uint32_t)y;
			env->msg.send.body.size =
			        (pb_size_t)test_rng_below(&rng, 4097);
			break;
		case im_Envelope_deliver_ack_tag:
			env->msg.deliver_ack.group =
			        test_rng_below(&rng, 2) ? 0 : g;
			env->msg.deliver_ack.seq = x;
			break;
		case im_Envelope_mark_read_tag:
			env->msg.mark_read.group = g;
			env->msg.mark_read.seq = x;
			break;
		case im_Envelope_sync_tag:
			env->msg.sync.group = test_rng_below(&rng, 3) ? g : 0;
			env->msg.sync.after = x;
			env->msg.sync.until = y;
			env->msg.sync.limit = (uint32_t)test_rng_next(&rng);
			break;
		case im_Envelope_create_group_tag:
			env->msg.create_group.members_count =
			        (pb_size_t)test_rng_below(&rng, 65);
			for (rc = 0; rc < env->msg.create_group.members_count;
			     rc++) {
				env->msg.create_group.members[rc] =
				        test_rng_below(&rng, 100);
			}
			break;
		case im_Envelope_add_member_tag:
			env->msg.add_member.group = g;
			env->msg.add_member.user = x;
			break;
		case im_Envelope_remove_member_tag:
			env->msg.remove_member.group = g;
			env->msg.remove_member.user =
			        test_rng_below(&rng, 2) ? 77 : x;
			break;
		case im_Envelope_list_members_tag:
			env->msg.list_members.group = g;
			env->msg.list_members.after_user = x;
			break;
		default:
			env->msg.ping.time_ms = x;
			break;
		}
		if (tc_send(&c, env) != 0) {
			break;
		}
		if (env->which_msg != im_Envelope_deliver_ack_tag) {
			rc = tc_wait_reply(&c, env->req_id, T);
			assert_int_equal(rc, 1);
		}
	}
	tc_close(&c);
	free(env);
	assert_server_still_serves();
}

/* A client that sends its request and then shuts down its write side
 * (half-close) still gets the answer: the server stops reading, answers
 * what it read, then closes. The message is stored once. */
static void
test_system_half_closed_client_still_gets_its_send_ack(void **state)
{
	char tok[IM_TOKEN_BUF];
	im_Envelope *env = calloc(1, sizeof(*env));
	tclient c;
	tpush msgs[4];
	int64_t g;
	int rc, last = -1;

	assert_non_null(env);
	imd_token(&imd, 13, 3600, tok, sizeof(tok));
	connect_raw(&c);
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), 1);
	g = tc_create_group(&c, "half-close", NULL, 0);
	assert_true(g > 0);
	env->req_id = 4242;
	env->which_msg = im_Envelope_send_tag;
	env->msg.send.group = (uint64_t)g;
	env->msg.send.dedup_id = 777;
	env->msg.send.body.size = 4;
	memcpy(env->msg.send.body.bytes, "half", 4);
	assert_int_equal(tc_send(&c, env), 0);
	assert_int_equal(shutdown(c.fd, SHUT_WR), 0);
	c.drop_pushes = true;
	rc = tc_wait_reply(&c, 4242, T);
	assert_int_equal(rc, 1);
	assert_int_equal(c.env->which_msg, im_Envelope_send_ack_tag);
	assert_true(c.env->msg.send_ack.seq > 0);
	assert_false(c.env->msg.send_ack.dup);
	/* Then the server closes: nothing more is asked. */
	assert_true(tc_wait_closed(&c, T, &last));
	assert_int_equal(last, -1);
	tc_close(&c);

	/* Stored exactly once. */
	connect_raw(&c);
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), 1);
	c.drop_pushes = true;
	assert_int_equal(tc_sync_all(&c, (uint64_t)g, 0, msgs, 4), 1);
	assert_int_equal(msgs[0].dedup_id, 777);
	tc_close(&c);
	free(env);
	assert_server_still_serves();
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A logged-in client dribbling one byte at a time inside a frame that
 * never completes: every byte is traffic (the 2 s idle timeout never
 * fires), but the frame must complete within --frame-timeout (1 s). */
static void
test_system_dribbled_frame_is_closed_by_the_frame_timeout(void **state)
{
	char tok[IM_TOKEN_BUF];
	uint8_t hdr[IM_FRAME_HEADER];
	uint64_t t0;
	tclient c;
	int i, rc, last = -1;
	bool closed = false;

	imd_token(&imd, 14, 3600, tok, sizeof(tok));
	connect_raw(&c);
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), 1);
	c.drop_pushes = true;
	im_frame_put_header(hdr, 100);
	t0 = now_ms();
	assert_int_equal(tc_send_raw(&c, hdr, sizeof(hdr)), 0);
	/* 20 x 200 ms = 4 s of dribbling, twice the idle timeout. */
	for (i = 0; i < 20 && !closed; i++) {
		uint64_t until = now_ms() + 200;

		while (!closed && now_ms() < until) {
			rc = tc_recv(&c, (int)(until - now_ms()));
			if (rc < 0) {
				closed = true;
			} else if (rc == 1 &&
			           c.env->which_msg == im_Envelope_error_tag) {
				last = (int)c.env->msg.error.code;
			} else if (rc == 0) {
				break;
			}
		}
		if (!closed && tc_send_raw(&c, "\x08", 1) != 0) {
			closed = true;
		}
	}
	assert_true(closed);
	assert_int_equal(last, im_Code_ERR_TIMEOUT);
	/* Closed by the frame bound (1 s), well before 4 s of dribbling. */
	assert_true(now_ms() - t0 < 3000);
	tc_close(&c);
	assert_server_still_serves();
}

/* Append a field tag and varint (or tag, length and bytes) to a buffer:
 * a Send whose body is over the nanopb bound cannot be built in an
 * im_Envelope. */
static size_t
put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* A frame of Envelope{req_id, Send{group, dedup_id, body of len bytes}}
 * into buf (room for len + 64); returns its length. */
static size_t
oversize_send_frame(uint8_t *buf, uint64_t req_id, uint64_t group,
                    uint64_t dedup_id, size_t len)
{
	uint8_t send[64];
	size_t ns = 0, n = IM_FRAME_HEADER;

	send[ns++] = (im_Send_group_tag << 3) | 0;
	ns += put_varint(send + ns, group);
	send[ns++] = (im_Send_dedup_id_tag << 3) | 0;
	ns += put_varint(send + ns, dedup_id);
	send[ns++] = (im_Send_body_tag << 3) | 2;
	ns += put_varint(send + ns, len);
	buf[n++] = (im_Envelope_req_id_tag << 3) | 0;
	n += put_varint(buf + n, req_id);
	buf[n++] = (im_Envelope_send_tag << 3) | 2;
	n += put_varint(buf + n, ns + len);
	memcpy(buf + n, send, ns);
	n += ns;
	memset(buf + n, 'x', len);
	n += len;
	im_frame_put_header(buf, (uint32_t)(n - IM_FRAME_HEADER));
	return n;
}

/* A Send whose body is over the body limit (the frame within frame_max)
 * is answered for that request with ERR_TOO_BIG naming the limit, and
 * the connection goes on. */
static void
test_system_over_long_body_gets_too_big_and_keeps_the_connection(
        void **state)
{
	char tok[IM_TOKEN_BUF];
	uint8_t *buf = malloc(5000 + 64);
	tclient c;
	int64_t g, s;
	size_t n;

	assert_non_null(buf);
	imd_token(&imd, 15, 3600, tok, sizeof(tok));
	connect_raw(&c);
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), 1);
	c.drop_pushes = true;
	g = tc_create_group(&c, "too long", NULL, 0);
	assert_true(g > 0);
	n = oversize_send_frame(buf, 9001, (uint64_t)g, 55, 5000);
	assert_true(n - IM_FRAME_HEADER <= 8192);
	assert_int_equal(tc_send_raw(&c, buf, n), 0);
	assert_int_equal(tc_wait_reply(&c, 9001, T), 1);
	assert_int_equal(c.env->which_msg, im_Envelope_error_tag);
	assert_int_equal(c.env->msg.error.code, im_Code_ERR_TOO_BIG);
	assert_non_null(strstr(c.env->msg.error.text, "4096"));
	assert_int_equal(c.env->msg.error.group, (uint64_t)g);
	assert_int_equal(c.env->msg.error.dedup_id, 55);
	/* Just over the limit too. */
	n = oversize_send_frame(buf, 9002, (uint64_t)g, 56, 4097);
	assert_int_equal(tc_send_raw(&c, buf, n), 0);
	assert_int_equal(tc_wait_reply(&c, 9002, T), 1);
	assert_int_equal(c.env->msg.error.code, im_Code_ERR_TOO_BIG);
	/* The connection is still usable; nothing was stored. */
	s = tc_send_msg(&c, (uint64_t)g, 57, "after", NULL);
	assert_true(s > 0);
	{
		tpush msgs[4];

		assert_int_equal(tc_sync_all(&c, (uint64_t)g, 0, msgs, 4), 1);
		assert_int_equal(msgs[0].dedup_id, 57);
	}
	tc_close(&c);
	free(buf);
	assert_server_still_serves();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(
	                test_system_oversize_length_prefix_gets_too_big_and_close),
	        cmocka_unit_test(
	                test_system_truncated_frame_then_close_gets_bad_request),
	        cmocka_unit_test(
	                test_system_garbage_bytes_get_bad_request_and_close),
	        cmocka_unit_test(
	                test_system_random_frames_never_hurt_the_server),
	        cmocka_unit_test(
	                test_system_unknown_and_wrong_typed_fields_get_bad_request),
	        cmocka_unit_test(
	                test_system_send_before_login_gets_not_logged_in_and_close),
	        cmocka_unit_test(
	                test_system_bad_expired_or_missing_token_gets_auth_and_close),
	        cmocka_unit_test(
	                test_system_silent_connection_is_closed_by_the_login_timeout),
	        cmocka_unit_test(
	                test_system_idle_logged_in_connection_is_closed),
	        cmocka_unit_test(
	                test_system_bad_requests_after_login_keep_the_connection),
	        cmocka_unit_test(
	                test_system_random_requests_after_login_never_hurt_the_server),
	        cmocka_unit_test(
	                test_system_half_closed_client_still_gets_its_send_ack),
	        cmocka_unit_test(
	                test_system_dribbled_frame_is_closed_by_the_frame_timeout),
	        cmocka_unit_test(
	                test_system_over_long_body_gets_too_big_and_keeps_the_connection),
	};

	return cmocka_run_group_tests_name("system_bad_input", tests,
	                                   group_setup, group_teardown);
}
