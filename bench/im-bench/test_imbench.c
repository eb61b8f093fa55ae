/* Unit tests of im-bench's pieces: histogram, flags and presets, the
 * fast-path codec against nanopb, tokens, the plan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pb_decode.h>
#include <pb_encode.h>

#include "im.pb.h"
#include "imbench.h"
#include "pbfast.h"

static uint64_t
seed(void)
{
	const char *s = getenv("IM_TEST_SEED");
	uint64_t v = s ? strtoull(s, NULL, 10) : 12345;

	printf("# IM_TEST_SEED=%llu\n", (unsigned long long)v);
	return v;
}

static uint64_t
rnd(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	uint64_t z = *s;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- histogram -------------------------------------------------------- */

static void
test_hist_every_value_lands_in_a_bucket_that_contains_it(void **state)
{
	uint64_t s = seed(), v;
	int i;

	(void)state;
	for (v = 0; v < 5000; v++) {
		unsigned ix = imb_hist_index(v);

		assert_true(imb_hist_low(ix) <= v && v <= imb_hist_high(ix));
	}
	for (i = 0; i < 100000; i++) {
		unsigned ix;

		v = rnd(&s) >> (rnd(&s) % 40 + 24);
		ix = imb_hist_index(v);
		assert_true(ix < IMB_HIST_BUCKETS);
		assert_true(imb_hist_low(ix) <= v && v <= imb_hist_high(ix));
		/* at most ~3% wide */
		assert_true((imb_hist_high(ix) - imb_hist_low(ix)) * 32 <=
		            imb_hist_low(ix) + 32);
	}
}

static void
test_hist_buckets_are_contiguous_and_ordered(void **state)
{
	unsigned i;

	(void)state;
	for (i = 1;
	     i < (IMB_HIST_MAX_BITS - IMB_HIST_SUB_BITS + 1) * IMB_HIST_SUB;
	     i++) {
		assert_int_equal(imb_hist_low(i), imb_hist_high(i - 1) + 1);
	}
}

static void
test_hist_percentiles_of_a_uniform_ramp_are_within_bucket_error(void **st)
{
	imb_hist h;
	uint64_t v;

	(void)st;
	imb_hist_init(&h);
	for (v = 1; v <= 100000; v++) {
		imb_hist_add(&h, v);
	}
	assert_int_equal(h.count, 100000);
	assert_int_equal(h.min, 1);
	assert_int_equal(h.max, 100000);
	assert_true(imb_hist_pct(&h, 50) >= 50000 &&
	            imb_hist_pct(&h, 50) <= 50000 * 103 / 100);
	assert_true(imb_hist_pct(&h, 99) >= 99000 &&
	            imb_hist_pct(&h, 99) <= 100000);
	assert_int_equal(imb_hist_pct(&h, 100), 100000);
}

static void
test_hist_huge_values_are_clamped_not_lost(void **state)
{
	imb_hist h;

	(void)state;
	imb_hist_init(&h);
	imb_hist_add(&h, UINT64_MAX);
	assert_int_equal(h.count, 1);
	assert_int_equal(imb_hist_pct(&h, 50), (1ull << IMB_HIST_MAX_BITS) - 1);
	assert_int_equal(imb_hist_pct(&h, 100), UINT64_MAX);
}

static void
test_hist_empty_reports_zero(void **state)
{
	imb_hist h;

	(void)state;
	imb_hist_init(&h);
	assert_int_equal(imb_hist_pct(&h, 99), 0);
}

static void
test_hist_merge_equals_adding_everything_to_one(void **state)
{
	static imb_hist a, b, all;
	uint64_t s = seed();
	int i;

	(void)state;
	imb_hist_init(&a);
	imb_hist_init(&b);
	imb_hist_init(&all);
	for (i = 0; i < 20000; i++) {
		uint64_t v = rnd(&s) % 1000000;

		imb_hist_add(i % 3 ? &a : &b, v);
		imb_hist_add(&all, v);
	}
	imb_hist_merge(&a, &b);
	assert_memory_equal(&a, &all, sizeof(a));
}

/* ---- flags ------------------------------------------------------------ */

static int
parse(imb_opts *o, const char *line, char *err)
{
	static char buf[1024];
	char *argv[64], *save = NULL, *t;
	int argc = 0, help;

	strcpy(buf, line);
	argv[argc++] = "im-bench";
	for (t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		argv[argc++] = t;
	}
	argv[argc] = NULL;
	if (imb_opts_parse(o, argc, argv, &help, err, 256) != 0) {
		return -1;
	}
	return imb_opts_finish(o, err, 256);
}

static void
test_opts_scenario_preset_then_flags_override_it(void **state)
{
	imb_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o,
	                       "biggroup --secret 0123456789abcdef "
	                       "--group-size 300 --users 300 --senders 3",
	                       err),
	                 0);
	assert_int_equal(o.scenario, IMB_SC_BIGGROUP);
	assert_int_equal(o.groups, 1);
	assert_int_equal(o.group_size, 300);
	assert_int_equal(o.senders, 3);
	assert_int_equal(o.inflight, 2);
	assert_string_equal(o.scenario_name, "biggroup");
}

static void
test_opts_chat_derives_groups_from_users_and_size(void **state)
{
	imb_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o,
	                       "chat --secret 0123456789abcdef "
	                       "--users 1000 --group-size 10 --rate 500",
	                       err),
	                 0);
	assert_int_equal(o.groups, 100);
	assert_int_equal(o.senders, 1000);
	assert_true(o.rate == 500);
	assert_true(o.procs >= 1);
}

static void
test_opts_login_gives_each_user_its_conversations(void **state)
{
	imb_opts o;
	imb_plan p = {0};
	char err[256];
	uint32_t u;

	(void)state;
	assert_int_equal(parse(&o,
	                       "login --secret 0123456789abcdef "
	                       "--users 200 --convs 20 --group-size 10",
	                       err),
	                 0);
	assert_int_equal(o.groups, 400);
	assert_int_equal(o.senders, 0);
	assert_int_equal(imb_plan_build(&p, &o), 0);
	for (u = 0; u < o.users; u++) {
		assert_int_equal(p.uoff[u + 1] - p.uoff[u], 20);
	}
	free(p.uoff);
	free(p.ulist);
}

static void
test_opts_targets_and_sources_parse_and_stay_on_loopback(void **state)
{
	imb_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o,
	                       "--secret 0123456789abcdef --target "
	                       "127.0.0.1:7000,127.0.0.1:7001 "
	                       "--src 127.0.0.10-127.0.0.17",
	                       err),
	                 0);
	assert_int_equal(o.ntargets, 2);
	assert_int_equal(o.targets[1].port, 7001);
	assert_int_equal(o.nsrc, 8);
	assert_int_not_equal(parse(&o,
	                           "--secret 0123456789abcdef "
	                           "--target 10.0.0.1:7000",
	                           err),
	                     0);
	assert_int_not_equal(parse(&o,
	                           "--secret 0123456789abcdef "
	                           "--src 127.0.0.9-127.0.0.2",
	                           err),
	                     0);
	assert_int_not_equal(parse(&o,
	                           "--secret 0123456789abcdef "
	                           "--target 127.0.0.1:99999",
	                           err),
	                     0);
}

static void
test_opts_bad_values_are_refused_with_a_message(void **state)
{
	imb_opts o;
	char err[256];

	(void)state;
	assert_int_not_equal(parse(&o, "--secret short", err), 0);
	assert_int_not_equal(parse(&o, "nosuch --secret 0123456789abcdef", err),
	                     0);
	assert_true(strstr(err, "nosuch") != NULL);
	assert_int_not_equal(
	        parse(&o, "--secret 0123456789abcdef --users x", err), 0);
	assert_true(strstr(err, "users") != NULL);
	assert_int_not_equal(
	        parse(&o, "--secret 0123456789abcdef --body 8", err), 0);
	assert_int_not_equal(parse(&o,
	                           "--secret 0123456789abcdef "
	                           "--setup-window 0",
	                           err),
	                     0);
	assert_true(strstr(err, "setup-window") != NULL);
	assert_int_not_equal(parse(&o,
	                           "--secret 0123456789abcdef "
	                           "--target 127.0.0.1",
	                           err),
	                     0);
	assert_true(strstr(err, "target") != NULL);
	assert_int_not_equal(
	        parse(&o, "--secret 0123456789abcdef --rate -1", err), 0);
	assert_int_not_equal(
	        parse(&o, "--secret 0123456789abcdef --bogus", err), 0);
	assert_int_not_equal(parse(&o,
	                           "--secret 0123456789abcdef "
	                           "--group-size 20 --users 10",
	                           err),
	                     0);
	assert_int_not_equal(parse(&o,
	                           "--secret 0123456789abcdef "
	                           "--users 1000000 --procs 1",
	                           err),
	                     0);
}

static void
test_opts_senders_are_spread_over_the_users(void **state)
{
	imb_opts o;
	char err[256];
	uint32_t i, n = 0, first_half = 0;

	(void)state;
	assert_int_equal(parse(&o,
	                       "--secret 0123456789abcdef --users 1000 "
	                       "--senders 10",
	                       err),
	                 0);
	for (i = 0; i < o.users; i++) {
		if (imb_is_sender(&o, i)) {
			n++;
			first_half += i < 500;
		}
	}
	assert_int_equal(n, 10);
	assert_int_equal(first_half, 5);
}

static void
test_plan_workers_partition_the_users(void **state)
{
	imb_opts o;
	char err[256];
	uint32_t w, a, b, next = 0;

	(void)state;
	assert_int_equal(parse(&o,
	                       "--secret 0123456789abcdef --users 1001 "
	                       "--procs 3",
	                       err),
	                 0);
	for (w = 0; w < o.procs; w++) {
		imb_worker_users(&o, w, &a, &b);
		assert_int_equal(a, next);
		next = b;
	}
	assert_int_equal(next, 1001);
}

/* ---- codec ------------------------------------------------------------ */

static void
test_pbfast_send_decodes_with_nanopb(void **state)
{
	static uint8_t buf[8192];
	static im_Envelope e;
	uint8_t body[100];
	size_t n;
	pb_istream_t s;

	(void)state;
	memset(body, 'b', sizeof(body));
	n = imb_enc_send(buf, sizeof(buf), 0x123456789ull, 77, 1ull << 40, body,
	                 sizeof(body));
	assert_true(n > 4);
	assert_int_equal(((uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
	                  (uint32_t)buf[2] << 8 | buf[3]),
	                 n - 4);
	s = pb_istream_from_buffer(buf + 4, n - 4);
	assert_true(pb_decode(&s, im_Envelope_fields, &e));
	assert_int_equal(e.req_id, 0x123456789ull);
	assert_int_equal(e.which_msg, im_Envelope_send_tag);
	assert_int_equal(e.msg.send.group, 77);
	assert_int_equal(e.msg.send.dedup_id, 1ull << 40);
	assert_int_equal(e.msg.send.body.size, sizeof(body));
	assert_memory_equal(e.msg.send.body.bytes, body, sizeof(body));
}

static void
test_pbfast_deliver_ack_and_ping_decode_with_nanopb(void **state)
{
	static uint8_t buf[64];
	static im_Envelope e;
	size_t n;
	pb_istream_t s;

	(void)state;
	n = imb_enc_deliver_ack(buf, sizeof(buf), 0, 99);
	s = pb_istream_from_buffer(buf + 4, n - 4);
	assert_true(pb_decode(&s, im_Envelope_fields, &e));
	assert_int_equal(e.which_msg, im_Envelope_deliver_ack_tag);
	assert_int_equal(e.msg.deliver_ack.group, 0);
	assert_int_equal(e.msg.deliver_ack.seq, 99);
	n = imb_enc_ping(buf, sizeof(buf), 5, 1234);
	s = pb_istream_from_buffer(buf + 4, n - 4);
	assert_true(pb_decode(&s, im_Envelope_fields, &e));
	assert_int_equal(e.which_msg, im_Envelope_ping_tag);
	assert_int_equal(e.req_id, 5);
	assert_int_equal(e.msg.ping.time_ms, 1234);
}

static void
test_pbfast_encoders_refuse_a_short_buffer(void **state)
{
	uint8_t buf[16], body[64] = {0};

	(void)state;
	assert_int_equal(
	        imb_enc_send(buf, sizeof(buf), 1, 1, 1, body, sizeof(body)), 0);
	assert_int_equal(imb_enc_send(buf, 3, 1, 1, 1, body, 0), 0);
	assert_int_equal(imb_enc_deliver_ack(buf, 2, 1, 1), 0);
}

static size_t
nanopb_frame(uint8_t *buf, size_t cap, const im_Envelope *e)
{
	pb_ostream_t s = pb_ostream_from_buffer(buf, cap);

	assert_true(pb_encode(&s, im_Envelope_fields, e));
	return s.bytes_written;
}

static void
test_pbfast_scans_what_nanopb_encodes(void **state)
{
	static uint8_t buf[70000];
	static im_Envelope e;
	imb_msg m;
	size_t n;

	(void)state;
	memset(&e, 0, sizeof(e));
	e.req_id = 0;
	e.which_msg = im_Envelope_deliver_tag;
	e.msg.deliver.group = 5;
	e.msg.deliver.seq = 1000;
	e.msg.deliver.prev_seq = 998;
	e.msg.deliver.sender = 42;
	e.msg.deliver.dedup_id = 7;
	e.msg.deliver.body.size = 4096;
	memset(e.msg.deliver.body.bytes, 'z', 4096);
	n = nanopb_frame(buf, sizeof(buf), &e);
	assert_int_equal(imb_pb_scan(buf, n, &m), 0);
	assert_int_equal(m.kind, im_Envelope_deliver_tag);
	assert_int_equal(m.group, 5);
	assert_int_equal(m.seq, 1000);
	assert_int_equal(m.prev_seq, 998);
	assert_int_equal(m.sender, 42);
	assert_int_equal(m.dedup_id, 7);
	assert_int_equal(m.body_len, 4096);

	memset(&e, 0, sizeof(e));
	e.req_id = 99;
	e.which_msg = im_Envelope_send_ack_tag;
	e.msg.send_ack.group = 3;
	e.msg.send_ack.seq = 11;
	e.msg.send_ack.dup = true;
	n = nanopb_frame(buf, sizeof(buf), &e);
	assert_int_equal(imb_pb_scan(buf, n, &m), 0);
	assert_int_equal(m.req_id, 99);
	assert_int_equal(m.kind, im_Envelope_send_ack_tag);
	assert_int_equal(m.group, 3);
	assert_int_equal(m.seq, 11);
	assert_int_equal(m.dup, 1);

	memset(&e, 0, sizeof(e));
	e.req_id = 4;
	e.which_msg = im_Envelope_conv_page_tag;
	e.msg.conv_page.convs_count = 3;
	e.msg.conv_page.convs[1].group = 9;
	e.msg.conv_page.done = true;
	n = nanopb_frame(buf, sizeof(buf), &e);
	assert_int_equal(imb_pb_scan(buf, n, &m), 0);
	assert_int_equal(m.nconvs, 3);
	assert_int_equal(m.done, 1);

	memset(&e, 0, sizeof(e));
	e.req_id = 8;
	e.which_msg = im_Envelope_login_ok_tag;
	e.msg.login_ok.user = 1234;
	e.msg.login_ok.conv_count = 20;
	memset(e.msg.login_ok.session, 1, 16);
	n = nanopb_frame(buf, sizeof(buf), &e);
	assert_int_equal(imb_pb_scan(buf, n, &m), 0);
	assert_int_equal(m.user, 1234);
	assert_int_equal(m.conv_count, 20);
	assert_int_equal(m.session_len, 16);

	memset(&e, 0, sizeof(e));
	e.req_id = 8;
	e.which_msg = im_Envelope_error_tag;
	e.msg.error.code = im_Code_ERR_NOT_MEMBER;
	strcpy(e.msg.error.text, "nope");
	n = nanopb_frame(buf, sizeof(buf), &e);
	assert_int_equal(imb_pb_scan(buf, n, &m), 0);
	assert_int_equal(m.kind, im_Envelope_error_tag);
	assert_int_equal(m.code, im_Code_ERR_NOT_MEMBER);
	assert_int_equal(m.text_len, 4);

	/* A cluster's Connector answers a login it does not own with this. */
	memset(&e, 0, sizeof(e));
	e.req_id = 17;
	e.which_msg = im_Envelope_redirect_tag;
	strcpy(e.msg.redirect.address, "127.0.0.1:7601");
	n = nanopb_frame(buf, sizeof(buf), &e);
	assert_int_equal(imb_pb_scan(buf, n, &m), 0);
	assert_int_equal(m.req_id, 17);
	assert_int_equal(m.kind, im_Envelope_redirect_tag);
	assert_int_equal(m.text_len, strlen("127.0.0.1:7601"));
	assert_memory_equal(m.text, "127.0.0.1:7601", m.text_len);
}

static void
test_opts_other_pids_and_baseline_pg_parse(void **state)
{
	imb_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o,
	                       "--secret 0123456789abcdef --server-pid 10,11 "
	                       "--other-pid 12,13,14 --baseline-pg dbname=x",
	                       err),
	                 0);
	assert_int_equal(o.nserver_pids, 2);
	assert_int_equal(o.nother_pids, 3);
	assert_int_equal(o.other_pids[2], 14);
	assert_string_equal(o.baseline_pg, "dbname=x");
	assert_int_not_equal(parse(&o,
	                           "--secret 0123456789abcdef "
	                           "--other-pid 0",
	                           err),
	                     0);
	assert_int_not_equal(parse(&o,
	                           "--secret 0123456789abcdef "
	                           "--other-pid 1,2,3,4,5,6,7,8,9,10,11,12,"
	                           "13,14,15,16,17",
	                           err),
	                     0);
}

static void
test_pbfast_scan_rejects_truncated_input(void **state)
{
	static uint8_t buf[256];
	static im_Envelope e;
	imb_msg m;
	size_t n, cut;

	(void)state;
	memset(&e, 0, sizeof(e));
	e.req_id = 300;
	e.which_msg = im_Envelope_send_ack_tag;
	e.msg.send_ack.group = 1ull << 50;
	e.msg.send_ack.seq = 1ull << 33;
	n = nanopb_frame(buf, sizeof(buf), &e);
	for (cut = 1; cut < n; cut++) {
		/* Either an error or a shorter, valid prefix: never a read
		 * past the end (ASan watches this). */
		uint8_t *copy = malloc(cut);

		memcpy(copy, buf, cut);
		(void)imb_pb_scan(copy, cut, &m);
		free(copy);
	}
	buf[0] = 0xff; /* a key that never ends */
	memset(buf, 0xff, 12);
	assert_int_equal(imb_pb_scan(buf, 12, &m), -1);
}

/* ---- tokens ----------------------------------------------------------- */

static void
test_token_has_the_libim_format(void **state)
{
	char tok[160];

	(void)state;
	assert_int_equal(
	        imb_token(tok, sizeof(tok), "0123456789abcdef", 42, 1700000000),
	        0);
	assert_int_equal(strncmp(tok, "42.1700000000.", 14), 0);
	assert_int_equal(strlen(tok), 14 + 64);
	/* `printf 42.1700000000 | openssl dgst -sha256 -hmac
	 * 0123456789abcdef` */
	assert_string_equal(tok + 14, "7718ee373e1d52f09c9a6ff8b193b811"
	                              "df7a17ac10e4af25c8c9477abfe90909");
	assert_int_equal(imb_token(tok, 20, "0123456789abcdef", 42, 1700000000),
	                 -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(
	                test_hist_every_value_lands_in_a_bucket_that_contains_it),
	        cmocka_unit_test(test_hist_buckets_are_contiguous_and_ordered),
	        cmocka_unit_test(
	                test_hist_percentiles_of_a_uniform_ramp_are_within_bucket_error),
	        cmocka_unit_test(test_hist_huge_values_are_clamped_not_lost),
	        cmocka_unit_test(test_hist_empty_reports_zero),
	        cmocka_unit_test(
	                test_hist_merge_equals_adding_everything_to_one),
	        cmocka_unit_test(
	                test_opts_scenario_preset_then_flags_override_it),
	        cmocka_unit_test(
	                test_opts_chat_derives_groups_from_users_and_size),
	        cmocka_unit_test(
	                test_opts_login_gives_each_user_its_conversations),
	        cmocka_unit_test(
	                test_opts_targets_and_sources_parse_and_stay_on_loopback),
	        cmocka_unit_test(
	                test_opts_bad_values_are_refused_with_a_message),
	        cmocka_unit_test(test_opts_senders_are_spread_over_the_users),
	        cmocka_unit_test(test_opts_other_pids_and_baseline_pg_parse),
	        cmocka_unit_test(test_plan_workers_partition_the_users),
	        cmocka_unit_test(test_pbfast_send_decodes_with_nanopb),
	        cmocka_unit_test(
	                test_pbfast_deliver_ack_and_ping_decode_with_nanopb),
	        cmocka_unit_test(test_pbfast_encoders_refuse_a_short_buffer),
	        cmocka_unit_test(test_pbfast_scans_what_nanopb_encodes),
	        cmocka_unit_test(test_pbfast_scan_rejects_truncated_input),
	        cmocka_unit_test(test_token_has_the_libim_format),
	};

	return cmocka_run_group_tests_name("imbench", tests, NULL, NULL);
}
